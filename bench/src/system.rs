//! The system under test: real `paycore-api` and `paycore-worker` processes (release builds) on a fresh database,
//! their peak memory, and PostgreSQL's own commit ceiling measured with `pgbench -N` on the same server.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use sqlx::PgPool;

/// Welcome bonus in the benchmark: large, so that wallets never run dry and every transfer is a real one.
pub const BENCH_BONUS_MINOR: i64 = 1_000_000_000_000;

pub struct System {
    pub base_url: String,
    pub pool: PgPool,
    pub database_url: String,
    api: Child,
    worker: Child,
    peak_rss_kb: Arc<(AtomicU64, AtomicU64)>,
    sampler: tokio::task::JoinHandle<()>,
}

fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("binary directory")?;
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `cargo build --release --bins` first",
        path.display()
    );
    Ok(path)
}

/// Resident memory of a process in KiB (from /proc; 0 where unavailable).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0)
}

impl System {
    pub async fn start(worker_concurrency: usize) -> anyhow::Result<Self> {
        let (pool, database_url) = crate::queue::fresh_database().await?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let spawn = |name: &str, extra: &[(&str, String)]| -> anyhow::Result<Child> {
            let mut command = Command::new(release_binary(name)?);
            command
                .env("DATABASE_URL", &database_url)
                .env("PORT", port.to_string())
                .env("RUST_LOG", "warn")
                .env("INITIAL_BONUS", BENCH_BONUS_MINOR.to_string())
                .env("DATABASE_MAX_CONNECTIONS", "40")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            for (key, value) in extra {
                command.env(key, value);
            }
            Ok(command.spawn()?)
        };
        let api = spawn("paycore-api", &[])?;
        let worker = spawn(
            "paycore-worker",
            &[
                (
                    "WORKER_CONCURRENCY",
                    format!("payments={worker_concurrency}"),
                ),
                ("WORKER_BATCH_SIZE", "100".into()),
            ],
        )?;
        let base_url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{base_url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let peak_rss_kb = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let (api_pid, worker_pid) = (api.id(), worker.id());
        let peaks = Arc::clone(&peak_rss_kb);
        let sampler = tokio::spawn(async move {
            loop {
                peaks.0.fetch_max(rss_kb(api_pid), Ordering::Relaxed);
                peaks.1.fetch_max(rss_kb(worker_pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(Self {
            base_url,
            pool,
            database_url,
            api,
            worker,
            peak_rss_kb,
            sampler,
        })
    }

    /// The api process's resident memory now, in MiB.
    pub fn api_rss_mib(&self) -> f64 {
        rss_kb(self.api.id()) as f64 / 1024.0
    }

    /// Peak resident memory of (api, worker) in MiB since start.
    pub fn peak_rss_mib(&self) -> (f64, f64) {
        (
            self.peak_rss_kb.0.load(Ordering::Relaxed) as f64 / 1024.0,
            self.peak_rss_kb.1.load(Ordering::Relaxed) as f64 / 1024.0,
        )
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.sampler.abort();
        let _ = self.api.kill();
        let _ = self.worker.kill();
        let _ = self.api.wait();
        let _ = self.worker.wait();
    }
}

fn pgbench_binary() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin/pgbench")))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// `pgbench -N` (8 clients, 2 threads, `seconds`) on a scratch database of the same server: transactions per second.
pub async fn pgbench_ceiling(database_url: &str, seconds: u64) -> anyhow::Result<f64> {
    let binary =
        pgbench_binary().context("pgbench is not installed (PostgreSQL server package)")?;
    let (base, _) = database_url.rsplit_once('/').context("database url")?;
    let scratch = format!("paycore_pgbench_{}", std::process::id());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(database_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "create database \"{scratch}\""
    )))
    .execute(&mut admin)
    .await?;
    let url = format!("{base}/{scratch}");
    let run = move |args: &[&str]| -> anyhow::Result<String> {
        let output = Command::new(&binary).args(args).arg(&url).output()?;
        anyhow::ensure!(
            output.status.success(),
            "pgbench failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let result = tokio::task::spawn_blocking({
        let seconds = seconds.to_string();
        move || -> anyhow::Result<String> {
            run(&["-i", "-q", "-s", "10"])?;
            run(&["-N", "-c", "8", "-j", "2", "-T", &seconds])
        }
    })
    .await??;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database \"{scratch}\" with (force)"
    )))
    .execute(&mut admin)
    .await?;
    result
        .lines()
        .find(|line| line.starts_with("tps ="))
        .and_then(|line| line.split_whitespace().nth(2))
        .and_then(|tps| tps.parse().ok())
        .context("pgbench printed no tps")
}
