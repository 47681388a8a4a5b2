//! The workspace's module graph, read from the sources: which file imports which, and on which floor each module
//! of `paycore-jobs` stands. The `module_graph` tests hold the house to its rules (`docs/architecture.md` §2): no
//! import circle between files anywhere in the workspace, none between the units of `jobs` (a ground-floor module
//! or a domain folder), and no import from a lower floor to a higher one.
//!
//! It reads imports as text, not as the compiler resolves them: `use crate::…`, `use super::…`, `use self::…`,
//! another workspace crate's `paycore_x::…`, the same paths written inline, and a child module named by its bare
//! name (`batch::SettleBatcher` in the file that declares `mod batch`). Comments and the `#[cfg(test)] mod tests`
//! block at the end of a file are left out: a file's own unit tests may use whatever they test.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module: its crate (`paycore_jobs`) and its path inside the crate (`["domains", "transfer", "batch"]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId {
    pub krate: String,
    pub path: Vec<String>,
}

impl std::fmt::Display for ModuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.krate)
        } else {
            write!(f, "{}::{}", self.krate, self.path.join("::"))
        }
    }
}

/// Every module of the workspace (one per file) and the modules each one imports.
#[derive(Debug, Default)]
pub struct ModuleGraph {
    pub files: BTreeMap<ModuleId, PathBuf>,
    pub imports: BTreeMap<ModuleId, BTreeSet<ModuleId>>,
}

/// The workspace's crates: `(directory, name used in paths)`. Binaries under `src/bin/` are crates of their own
/// that only import the others.
pub fn workspace_crates(root: &Path) -> Vec<(PathBuf, String)> {
    let mut crates = Vec::new();
    let Ok(entries) = fs::read_dir(root) else {
        return crates;
    };
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else {
            continue;
        };
        let Some(name) = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("name = \""))
            .and_then(|rest| rest.strip_suffix('"'))
        else {
            continue;
        };
        if entry.path().join("src").is_dir() {
            crates.push((entry.path(), name.replace('-', "_")));
        }
    }
    crates.sort();
    crates
}

impl ModuleGraph {
    /// Reads `src/` of every crate in `crates`.
    pub fn read(crates: &[(PathBuf, String)]) -> std::io::Result<Self> {
        let mut graph = ModuleGraph::default();
        let mut sources = Vec::new();
        for (dir, krate) in crates {
            let src = dir.join("src");
            for file in rust_files(&src)? {
                let relative = file.strip_prefix(&src).unwrap_or(&file).to_path_buf();
                let (krate, path) = module_of(krate, &relative);
                let id = ModuleId { krate, path };
                sources.push((id.clone(), fs::read_to_string(&file)?));
                graph.files.insert(id, file);
            }
        }
        let names: BTreeSet<String> = crates.iter().map(|(_, name)| name.clone()).collect();
        for (id, source) in sources {
            let imports = imports_of(&id, &source, &names, &graph.files);
            graph.imports.insert(id, imports);
        }
        Ok(graph)
    }

    /// Every circle of files importing each other, each as its members in order.
    pub fn file_circles(&self) -> Vec<Vec<ModuleId>> {
        strongly_connected(&self.imports)
    }

    /// The import graph between units: `unit_of` names a module's unit, or `None` to leave the module out.
    pub fn units(
        &self,
        unit_of: impl Fn(&ModuleId) -> Option<String>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut units: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, targets) in &self.imports {
            let Some(from_unit) = unit_of(from) else {
                continue;
            };
            let entry = units.entry(from_unit.clone()).or_default();
            for target in targets {
                if let Some(to_unit) = unit_of(target).filter(|to| *to != from_unit) {
                    entry.insert(to_unit);
                }
            }
        }
        units
    }
}

/// The unit of a `paycore_jobs` module: its ground-floor module (`engine`), its domain (`domains::transfer`), or
/// `app`.
pub fn jobs_unit(id: &ModuleId) -> Option<String> {
    if id.krate != "paycore_jobs" {
        return None;
    }
    match id.path.as_slice() {
        [] => None,
        [domains] if domains == "domains" => None,
        [domains, domain, ..] if domains == "domains" => Some(format!("domains::{domain}")),
        [first, ..] => Some(first.clone()),
    }
}

/// The floor of a unit of `paycore_jobs`: 0 the ground floor, 1 the domains, 2 the top (`app`).
pub fn jobs_floor(unit: &str) -> u8 {
    if unit == "app" {
        2
    } else if unit.starts_with("domains::") {
        1
    } else {
        0
    }
}

/// Circles in a unit graph.
pub fn unit_circles(units: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    strongly_connected(units)
}

fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `domains/transfer/batch.rs` → `["domains", "transfer", "batch"]`; `lib.rs`, `main.rs` and `mod.rs` stand for
/// their folder; `bin/dev.rs` is the crate `<crate>::bin::dev`.
fn module_of(krate: &str, relative: &Path) -> (String, Vec<String>) {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.first().is_some_and(|first| first == "bin") && parts.len() == 2 {
        return (format!("{krate}::bin::{}", parts[1]), Vec::new());
    }
    if parts.last().is_some_and(|last| {
        last == "mod" || (parts.len() == 1 && (last == "lib" || last == "main"))
    }) {
        parts.pop();
    }
    (krate.to_owned(), parts)
}

/// The source without comments and without the trailing unit-test module.
fn code_of(source: &str) -> String {
    let cut = source
        .find("#[cfg(test)]\nmod tests")
        .unwrap_or(source.len());
    source[..cut]
        .lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string (a URL) cuts the line short; an import is never written after one.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let (prefix, rest) = tree.split_at(open);
    let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
        // Not a well-formed tree (a `use` in a string, say): it names nothing.
        return Vec::new();
    };
    let mut parts = Vec::new();
    let (mut depth, mut current) = (0_i32, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .into_iter()
        .filter(|part| !part.is_empty())
        .flat_map(|part| expand(&part))
        .map(|path| format!("{prefix}{path}"))
        .collect()
}

/// The paths a file names: every `use` tree expanded, and every inline path that starts at a crate, `crate`,
/// `super`, `self` or a child module.
fn paths_in(code: &str, roots: &BTreeSet<String>) -> Vec<String> {
    let mut paths = Vec::new();
    // `use` declarations start a line (after `pub` or `pub(…)`) and end at the next `;`.
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim_start();
        let declaration = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|prefix| trimmed.strip_prefix(prefix));
        let Some(tree) = declaration else {
            continue;
        };
        let tree_start = start + (line.len() - tree.len());
        if let Some(end) = code[tree_start..].find(';') {
            paths.extend(expand(&code[tree_start..tree_start + end]));
        }
    }
    let bytes = code.as_bytes();
    for root in roots {
        let needle = format!("{root}::");
        let mut from = 0;
        while let Some(found) = code[from..].find(&needle) {
            let start = from + found;
            from = start + needle.len();
            let before = start.checked_sub(1).map(|i| bytes[i]);
            // `a::crate::` or `my_crate::` are not paths that start here.
            if before.is_some_and(|b| b == b':' || b.is_ascii_alphanumeric() || b == b'_') {
                continue;
            }
            let end = code[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| start + e);
            let path = code[start..end].trim_end_matches(':');
            // `super::{…}` is a `use` tree, read above; a root alone names no module.
            if path.contains("::") {
                paths.push(path.to_owned());
            }
        }
    }
    paths
}

/// The modules a file imports, resolved to the longest module path that is a file of the workspace.
fn imports_of(
    id: &ModuleId,
    source: &str,
    crate_names: &BTreeSet<String>,
    files: &BTreeMap<ModuleId, PathBuf>,
) -> BTreeSet<ModuleId> {
    let code = code_of(source);
    let children: BTreeSet<String> = code
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("pub ").unwrap_or(line);
            let line = line
                .strip_prefix("pub(crate) ")
                .or_else(|| line.strip_prefix("pub(super) "))
                .unwrap_or(line);
            line.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_owned)
        })
        .collect();
    let mut roots: BTreeSet<String> = ["crate", "super", "self"].map(String::from).into();
    roots.extend(crate_names.iter().cloned());
    roots.extend(children.iter().cloned());
    // A folder module (`mod.rs`) is the parent of its children; `super` of a file is its folder's module.
    let is_folder_module = files.get(id).is_some_and(|file| {
        file.file_name()
            .is_some_and(|name| name == "mod.rs" || name == "lib.rs" || name == "main.rs")
    });
    let mut imports = BTreeSet::new();
    for path in paths_in(&code, &roots) {
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let Some((first, rest)) = segments.split_first() else {
            continue;
        };
        let (krate, mut base): (String, Vec<String>) = match *first {
            "crate" => (id.krate.clone(), Vec::new()),
            "self" => (id.krate.clone(), id.path.clone()),
            "super" => {
                let mut base = id.path.clone();
                if !is_folder_module || !base.is_empty() {
                    base.pop();
                }
                (id.krate.clone(), base)
            }
            name if crate_names.contains(name) => (name.to_owned(), Vec::new()),
            name if children.contains(name) => {
                let mut base = id.path.clone();
                base.push(name.to_owned());
                (id.krate.clone(), base)
            }
            _ => continue,
        };
        let mut rest = rest.iter();
        // `super::super::x`.
        let mut pending: Vec<&str> = Vec::new();
        for segment in rest.by_ref() {
            if *segment == "super" && pending.is_empty() {
                base.pop();
            } else {
                pending.push(segment);
            }
        }
        let mut candidate = base.clone();
        let mut resolved = ModuleId {
            krate: krate.clone(),
            path: base,
        };
        for segment in pending {
            candidate.push(segment.to_owned());
            let probe = ModuleId {
                krate: krate.clone(),
                path: candidate.clone(),
            };
            if files.contains_key(&probe) {
                resolved = probe;
            } else {
                break;
            }
        }
        // A path to the importing file itself, or up to its own folder module for a child, is not an import of
        // another file unless it names that module's contents.
        if resolved != *id && files.contains_key(&resolved) {
            imports.insert(resolved);
        }
    }
    imports
}

/// Tarjan's strongly connected components with more than one member: the circles of a directed graph.
fn strongly_connected<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on_stack: BTreeSet<N>,
        next: usize,
        circles: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Clone>(node: &N, graph: &BTreeMap<N, BTreeSet<N>>, s: &mut State<N>) {
        s.index.insert(node.clone(), s.next);
        s.low.insert(node.clone(), s.next);
        s.next += 1;
        s.stack.push(node.clone());
        s.on_stack.insert(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if !s.index.contains_key(next) {
                visit(next, graph, s);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node.clone(), low);
            } else if s.on_stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node.clone(), low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut members = Vec::new();
            while let Some(member) = s.stack.pop() {
                s.on_stack.remove(&member);
                let done = member == *node;
                members.push(member);
                if done {
                    break;
                }
            }
            if members.len() > 1 {
                members.reverse();
                s.circles.push(members);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        circles: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node) {
            visit(node, graph, &mut state);
        }
    }
    state.circles
}
