//! The house's rules, read from the sources (`docs/architecture.md` §2): no import circle anywhere in the
//! workspace, and the floors of `paycore-jobs` import downwards only.

use std::fs;
use std::path::{Path, PathBuf};

use paycore_tests::module_graph::{
    jobs_floor, jobs_unit, unit_circles, workspace_crates, ModuleGraph,
};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

fn workspace_graph() -> ModuleGraph {
    let crates = workspace_crates(&workspace_root());
    assert!(
        crates.iter().any(|(_, name)| name == "paycore_jobs"),
        "the workspace's crates were not found: {crates:?}"
    );
    ModuleGraph::read(&crates).expect("the sources are readable")
}

#[test]
fn no_file_in_the_workspace_imports_itself_through_a_circle() {
    let graph = workspace_graph();
    let circles: Vec<String> = graph
        .file_circles()
        .iter()
        .map(|circle| {
            circle
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" -> ")
        })
        .collect();
    assert!(
        circles.is_empty(),
        "files import each other in a circle (the members of each):\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_units_of_jobs_form_no_circle_and_no_floor_imports_a_higher_one() {
    let graph = workspace_graph();
    let units = graph.units(jobs_unit);
    assert!(units.contains_key("engine") && units.contains_key("domains::transfer"));
    let circles = unit_circles(&units);
    assert!(
        circles.is_empty(),
        "units of paycore-jobs import each other in a circle: {circles:?}"
    );
    let upward: Vec<String> = units
        .iter()
        .flat_map(|(from, targets)| {
            targets
                .iter()
                .filter(|to| jobs_floor(to) > jobs_floor(from))
                .map(move |to| format!("{from} -> {to}"))
        })
        .collect();
    assert!(
        upward.is_empty(),
        "a lower floor imports a higher one: {upward:?}"
    );
}

#[test]
fn other_crates_reach_jobs_only_through_its_public_paths_and_the_sandbox_stays_out_of_production_binaries(
) {
    let graph = workspace_graph();
    for (module, imports) in &graph.imports {
        let production = ["paycore_api", "paycore_worker", "paycore_scheduler"]
            .contains(&module.krate.as_str())
            || module.krate.starts_with("paycore_api::bin");
        if production {
            let sandbox: Vec<_> = imports
                .iter()
                .filter(|target| target.krate == "paycore_sandbox")
                .collect();
            assert!(
                sandbox.is_empty(),
                "{module} links the sandbox: {sandbox:?}"
            );
        }
    }
    let api_manifest =
        fs::read_to_string(workspace_root().join("api/Cargo.toml")).expect("api's manifest");
    assert!(
        !api_manifest.contains("paycore-sandbox"),
        "the production api crate depends on the sandbox"
    );
}

/// The check itself: a tree with a deliberate circle is caught, and the same tree without it passes.
#[test]
fn a_deliberate_import_circle_is_caught() {
    let root = std::env::temp_dir().join(format!("paycore-module-graph-{}", std::process::id()));
    let src = root.join("demo/src");
    fs::create_dir_all(src.join("domains/transfer")).expect("temp tree");
    fs::write(
        root.join("demo/Cargo.toml"),
        "[package]\nname = \"paycore-demo\"\n",
    )
    .expect("manifest");
    fs::write(src.join("lib.rs"), "pub mod domains;\npub mod engine;\n").expect("lib");
    fs::write(src.join("domains/mod.rs"), "pub mod transfer;\n").expect("domains");
    fs::write(
        src.join("domains/transfer/mod.rs"),
        "pub mod batch;\nuse crate::engine::Queue;\npub fn settle() { batch::run(); }\n",
    )
    .expect("transfer");
    fs::write(
        src.join("domains/transfer/batch.rs"),
        "use super::settle;\npub fn run() {}\n",
    )
    .expect("batch");
    fs::write(src.join("engine.rs"), "pub struct Queue;\n").expect("engine");
    let crates = workspace_crates(&root);
    let graph = ModuleGraph::read(&crates).expect("read");
    let circles = graph.file_circles();
    assert_eq!(circles.len(), 1, "{circles:?}");
    let members: Vec<String> = circles[0].iter().map(ToString::to_string).collect();
    assert_eq!(
        members,
        [
            "paycore_demo::domains::transfer",
            "paycore_demo::domains::transfer::batch"
        ]
    );
    // The engine importing a domain makes a unit circle and an upward import.
    fs::write(
        src.join("engine.rs"),
        "use crate::domains::transfer::settle;\npub struct Queue;\n",
    )
    .expect("engine");
    let graph = ModuleGraph::read(&crates).expect("read");
    let units = graph.units(|id| {
        let unit = match id.path.as_slice() {
            [] => return None,
            [domains] if domains == "domains" => return None,
            [domains, domain, ..] if domains == "domains" => format!("domains::{domain}"),
            [first, ..] => first.clone(),
        };
        Some(unit)
    });
    assert_eq!(unit_circles(&units).len(), 1, "{units:?}");
    assert!(jobs_floor("domains::transfer") > jobs_floor("engine"));
    // Without the back edge, no circle is left.
    fs::write(src.join("domains/transfer/batch.rs"), "pub fn run() {}\n").expect("batch");
    fs::write(src.join("engine.rs"), "pub struct Queue;\n").expect("engine");
    let graph = ModuleGraph::read(&crates).expect("read");
    assert!(graph.file_circles().is_empty());
    let _ = fs::remove_dir_all(&root);
}
