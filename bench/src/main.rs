//! `paycore-bench`: PayCore's performance instrument. Timed tests are forbidden; this measures instead, and writes
//! a JSON result and a markdown summary under `bench-results/`.
//!
//! `cargo run --release -p paycore-bench -- queue [--jobs N] [--pickups N] [--seconds S]`

mod queue;
mod report;

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("queue");
    let options = report::Options::parse(&args[1.min(args.len())..])?;
    let result = match scenario {
        "queue" => queue::run(&options).await?,
        other => anyhow::bail!("unknown scenario {other:?}; scenarios: queue"),
    };
    let (json_path, md_path) = report::write(scenario, &result).context("writing results")?;
    println!("\n{}", report::markdown(&result));
    println!("results: {} and {}", json_path.display(), md_path.display());
    Ok(())
}
