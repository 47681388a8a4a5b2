//! `paycore-bench`: PayCore's performance instrument. Timed tests are forbidden; this measures instead, and writes a
//! JSON result, a markdown summary and (for HTTP scenarios) an SVG chart under `bench-results/`.
//!
//! ```text
//! cargo build --release --bins
//! cargo run --release -p paycore-bench -- transfers [--clients 8,32,64] [--seconds 15] [--users 64] [--pgbench-seconds 20]
//! cargo run --release -p paycore-bench -- hot-wallet [--clients 32] [--seconds 15]
//! cargo run --release -p paycore-bench -- register [--clients 8,32] [--seconds 10]
//! cargo run --release -p paycore-bench -- queue [--jobs 10000] [--pickups 200] [--seconds 5] [--concurrency 64] [--batch 100]
//! ```
//! The HTTP scenarios start real `paycore-api` and `paycore-worker` processes (release builds) on a fresh database,
//! drive them like clients, and verify the ledger afterwards.

mod http;
mod queue;
mod report;
mod system;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use report::{machine, Measurement, Options, ScenarioResult};

const USAGE: &str = "\
usage: paycore-bench SCENARIO [--option value ...]   (build first: cargo build --release --bins)

  transfers   [--clients 8,32,64] [--seconds 15] [--users 64] [--pgbench-seconds 20]
  hot-wallet  [--clients 32] [--seconds 15]
  register    [--clients 8,32] [--seconds 10]
  queue       [--jobs 10000] [--pickups 200] [--seconds 5] [--concurrency 64] [--batch 100]

Results go to bench-results/ as JSON, markdown and (HTTP scenarios) an SVG chart.";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    match run(&args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}\n\n{USAGE}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> anyhow::Result<()> {
    let scenario = args.first().map(String::as_str).unwrap_or("queue");
    let options = Options::parse(&args[1.min(args.len())..])?;
    let result = match scenario {
        "queue" => queue::run(&options).await?,
        "transfers" => transfers(&options).await?,
        "hot-wallet" => hot_wallet(&options).await?,
        "register" => register(&options).await?,
        other => anyhow::bail!(
            "unknown scenario {other:?}; scenarios: transfers, hot-wallet, register, queue"
        ),
    };
    let (json_path, md_path) = report::write(scenario, &result).context("writing results")?;
    println!("\n{}", report::markdown(&result));
    println!("results: {} and {}", json_path.display(), md_path.display());
    Ok(())
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Throughput and p99 measurements of a level, against the issue's targets.
fn level_measurements(
    name: &str,
    level: &report::LevelResult,
    tps_target: Option<&str>,
    pgbench: Option<f64>,
) -> Vec<Measurement> {
    let mut out = vec![Measurement {
        name: format!("{name}, {} clients: settled/s", level.clients),
        value: level.throughput_per_s,
        unit: "/s".into(),
        target: tps_target.map(str::to_owned),
        detail: serde_json::to_value(level).unwrap_or_default(),
    }];
    if let Some(tps) = pgbench {
        out.push(Measurement {
            name: format!(
                "{name}, {} clients: share of the pgbench -N ceiling",
                level.clients
            ),
            value: 100.0 * level.throughput_per_s / tps,
            unit: "%".into(),
            target: Some("≥ 25 % at 32–64 clients".into()),
            detail: serde_json::json!({"pgbench_tps": tps}),
        });
    }
    out.push(Measurement {
        name: format!("{name}, {} clients: p99 latency", level.clients),
        value: level.latency.p99_ms,
        unit: "ms".into(),
        target: Some("≤ 100 ms".into()),
        detail: serde_json::Value::Null,
    });
    out
}

fn memory_measurement(system: &system::System) -> Measurement {
    let (api, worker) = system.peak_rss_mib();
    Measurement {
        name: "api process peak resident memory".into(),
        value: api,
        unit: "MiB".into(),
        target: Some("≤ 100 MB".into()),
        detail: serde_json::json!({"worker_peak_rss_mib": worker}),
    }
}

async fn transfers(options: &Options) -> anyhow::Result<ScenarioResult> {
    let levels = options.list("clients", &[8, 32, 64])?;
    let seconds = options.number("seconds", 15)?;
    let user_count = options.number("users", 64)? as usize;
    let started_at = chrono::Utc::now().to_rfc3339();
    let system = system::System::start(64).await?;
    let pgbench =
        system::pgbench_ceiling(&system.database_url, options.number("pgbench-seconds", 20)?)
            .await?;
    eprintln!("pgbench -N ceiling: {pgbench:.0} tps");
    let client = client()?;
    eprintln!(
        "api resident memory after start: {:.0} MiB",
        system.api_rss_mib()
    );
    let users = Arc::new(http::register_many(&client, &system.base_url, user_count).await?);
    eprintln!(
        "api resident memory after {user_count} registrations: {:.0} MiB",
        system.api_rss_mib()
    );
    let mut results = Vec::new();
    let mut measurements = Vec::new();
    let mut accepted = 0;
    for clients in levels {
        let (users, client, base) = (Arc::clone(&users), client.clone(), system.base_url.clone());
        let cpu_before = system.cpu();
        let mut level = http::drive(
            "transfers",
            clients,
            Duration::from_secs(seconds),
            move |_| {
                let (users, client, base) = (Arc::clone(&users), client.clone(), base.clone());
                async move {
                    let from = rand::random::<u32>() as usize % users.len();
                    let to = http::random_other(&users, from).to_owned();
                    http::transfer(&client, &base, &users[from], &to).await
                }
            },
        )
        .await;
        level.cpu_ms_per_settled = system.cpu().per_request_since(&cpu_before, level.settled);
        accepted += level.settled + level.accepted_unsettled;
        eprintln!(
            "api resident memory after {clients} clients: {:.0} MiB",
            system.api_rss_mib()
        );
        measurements.extend(level_measurements("transfers", &level, None, Some(pgbench)));
        results.push(level);
    }
    measurements.push(memory_measurement(&system));
    let correctness = http::verify(&system.pool, accepted).await?;
    Ok(ScenarioResult {
        scenario: "transfers".into(),
        started_at,
        machine: machine(),
        measurements,
        correctness,
        levels: results,
        pgbench_tps: Some(pgbench),
        peak_rss_mib: Some(system.peak_rss_mib()),
    })
}

async fn hot_wallet(options: &Options) -> anyhow::Result<ScenarioResult> {
    let clients = options.list("clients", &[32])?;
    let seconds = options.number("seconds", 15)?;
    let started_at = chrono::Utc::now().to_rfc3339();
    let system = system::System::start(64).await?;
    let client = client()?;
    let users = Arc::new(
        http::register_many(
            &client,
            &system.base_url,
            options.number("users", 64)? as usize,
        )
        .await?,
    );
    let mut results = Vec::new();
    let mut measurements = Vec::new();
    let mut accepted = 0;
    for clients in clients {
        for direction in ["into", "out of"] {
            let (users, client, base) =
                (Arc::clone(&users), client.clone(), system.base_url.clone());
            let inbound = direction == "into";
            let cpu_before = system.cpu();
            let mut level = http::drive(
                &format!("hot wallet, {direction}"),
                clients,
                Duration::from_secs(seconds),
                move |_| {
                    let (users, client, base) = (Arc::clone(&users), client.clone(), base.clone());
                    async move {
                        // users[0] is the merchant.
                        let other = 1 + rand::random::<u32>() as usize % (users.len() - 1);
                        if inbound {
                            http::transfer(&client, &base, &users[other], &users[0].account_number)
                                .await
                        } else {
                            http::transfer(&client, &base, &users[0], &users[other].account_number)
                                .await
                        }
                    }
                },
            )
            .await;
            level.cpu_ms_per_settled = system.cpu().per_request_since(&cpu_before, level.settled);
            accepted += level.settled + level.accepted_unsettled;
            measurements.extend(level_measurements(
                &format!("payments {direction} one merchant wallet"),
                &level,
                Some("≥ 500/s"),
                None,
            ));
            results.push(level);
        }
    }
    measurements.push(memory_measurement(&system));
    let correctness = http::verify(&system.pool, accepted).await?;
    Ok(ScenarioResult {
        scenario: "hot-wallet".into(),
        started_at,
        machine: machine(),
        measurements,
        correctness,
        levels: results,
        pgbench_tps: None,
        peak_rss_mib: Some(system.peak_rss_mib()),
    })
}

async fn register(options: &Options) -> anyhow::Result<ScenarioResult> {
    let levels = options.list("clients", &[8, 32])?;
    let seconds = options.number("seconds", 10)?;
    let started_at = chrono::Utc::now().to_rfc3339();
    let system = system::System::start(8).await?;
    let client = client()?;
    let mut results = Vec::new();
    let mut measurements = Vec::new();
    for clients in levels {
        let (client, base) = (client.clone(), system.base_url.clone());
        let cpu_before = system.cpu();
        let mut level = http::drive("register", clients, Duration::from_secs(seconds), move |_| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let email = format!("burst-{}@example.com", uuid::Uuid::new_v4().simple());
                let response = client
                    .post(format!("{base}/api/v1/auth/register"))
                    .json(&serde_json::json!({"email": email, "password": "benchmark password", "full_name": "Burst"}))
                    .send()
                    .await?;
                Ok(response.status().as_u16())
            }
        })
        .await;
        level.cpu_ms_per_settled = system.cpu().per_request_since(&cpu_before, level.settled);
        measurements.push(Measurement {
            name: format!("registrations, {clients} clients (each credits the bonus from the subsidy account)"),
            value: level.throughput_per_s,
            unit: "/s".into(),
            target: None,
            detail: serde_json::to_value(&level)?,
        });
        results.push(level);
    }
    measurements.push(memory_measurement(&system));
    let correctness = http::verify(&system.pool, 0).await?;
    Ok(ScenarioResult {
        scenario: "register".into(),
        started_at,
        machine: machine(),
        measurements,
        correctness,
        levels: results,
        pgbench_tps: None,
        peak_rss_mib: Some(system.peak_rss_mib()),
    })
}
