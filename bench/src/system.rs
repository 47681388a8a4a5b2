//! The system under test: real `paycore-api` and `paycore-worker` processes (release builds) on a fresh database,
//! their peak memory, and PostgreSQL's own commit ceiling measured with `pgbench -N` on the same server.

use paycore_jobs::platform::{db, devdb};
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
        let (pool, database_url) = fresh_database().await?;
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
                // Every benchmark client comes from 127.0.0.1: per-address limits would measure the limiter,
                // not the system. The per-user limits and the limiter's cost stay as in production.
                .env("REGISTRATIONS_PER_ADDRESS_PER_HOUR", "1000000")
                .env("RATE_LIMIT_AUTH", "30,1000000")
                .env("RATE_LIMIT_MONEY", "300,1000000")
                .env("RATE_LIMIT_READ", "1200,1000000")
                .env("RATE_LIMIT_WRITE", "300,1000000")
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

    /// CPU time used so far by the api, the worker, PostgreSQL's processes, this benchmark, and the whole machine.
    pub fn cpu(&self) -> CpuTicks {
        CpuTicks {
            api: process_ticks(self.api.id()),
            worker: process_ticks(self.worker.id()),
            postgres: postgres_ticks(),
            bench: process_ticks(std::process::id()),
            machine: MachineTicks::now(),
        }
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

/// Cumulative CPU clock ticks (user + system) of the processes that matter.
#[derive(Debug, Clone, Copy)]
pub struct CpuTicks {
    api: u64,
    worker: u64,
    postgres: u64,
    bench: u64,
    machine: MachineTicks,
}

/// CPU milliseconds per settled request, by process, between two readings.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CpuSplit {
    pub api: f64,
    pub worker: f64,
    pub postgres: f64,
    pub bench: f64,
    /// Everything else on the machine (the kernel's own threads, other processes).
    pub other: f64,
    pub total: f64,
    /// The share of the machine's CPU time the hypervisor gave to other guests meanwhile (in `other` and `total`).
    pub stolen_percent: f64,
}

/// Linux's USER_HZ, the unit of /proc's CPU times, is 100 on every architecture Rust targets here.
const MS_PER_TICK: f64 = 10.0;

impl CpuTicks {
    pub fn per_request_since(&self, earlier: &CpuTicks, requests: u64) -> Option<CpuSplit> {
        if requests == 0 {
            return None;
        }
        let per =
            |now: u64, then: u64| now.saturating_sub(then) as f64 * MS_PER_TICK / requests as f64;
        let api = per(self.api, earlier.api);
        let worker = per(self.worker, earlier.worker);
        let postgres = per(self.postgres, earlier.postgres);
        let bench = per(self.bench, earlier.bench);
        let total = per(self.machine.busy, earlier.machine.busy);
        Some(CpuSplit {
            api,
            worker,
            postgres,
            bench,
            other: (total - api - worker - postgres - bench).max(0.0),
            total,
            stolen_percent: self.machine.stolen_percent_since(&earlier.machine),
        })
    }
}

/// utime + stime of one process, from /proc/<pid>/stat (fields 14 and 15, after the parenthesised name).
fn process_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// CPU ticks of every running PostgreSQL process (backends, WAL writer, checkpointer, …). Backends that exited
/// between readings are not counted; the benchmark's processes hold their connections for the whole run.
fn postgres_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "postgres")
        })
        .map(process_ticks)
        .sum()
}

/// The whole machine's CPU ticks, from the first line of /proc/stat.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineTicks {
    /// Everything but idle and iowait (steal included).
    busy: u64,
    /// Taken by the hypervisor for other guests.
    steal: u64,
    all: u64,
}

impl MachineTicks {
    pub fn now() -> Self {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let line = stat.lines().next()?;
                let values: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal
                let all: u64 = values.iter().take(8).sum();
                Some(Self {
                    busy: all.checked_sub(values.get(3)? + values.get(4)?)?,
                    steal: *values.get(7)?,
                    all,
                })
            })
            .unwrap_or_default()
    }

    /// Steal as a percentage of all CPU time since `earlier`: on a shared machine, how much of it this run did not
    /// get (the benchmark's absolute numbers drift with it).
    pub fn stolen_percent_since(&self, earlier: &MachineTicks) -> f64 {
        let all = self.all.saturating_sub(earlier.all);
        if all == 0 {
            return 0.0;
        }
        self.steal.saturating_sub(earlier.steal) as f64 * 100.0 / all as f64
    }
}

/// Drops the databases of earlier benchmark runs (their results are in `bench-results/`): left in place, they
/// accumulate, and autovacuum's visits to idle databases become load on the next measurement.
async fn drop_earlier_runs(url: &str, current: &str) -> anyhow::Result<()> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
    let earlier: Vec<String> = sqlx::query_scalar(
        "select datname from pg_database where datname like 'paycore_bench_%' and datname <> $1",
    )
    .bind(current)
    .fetch_all(&mut conn)
    .await?;
    for name in earlier {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database if exists \"{name}\" with (force)"
        )))
        .execute(&mut conn)
        .await?;
    }
    // The test suite keeps its databases for an hour (for a look at a failure). Autovacuum visits every one of
    // them, so a run right after the tests measures less: say so rather than drop what someone may be reading.
    let tests: i64 =
        sqlx::query_scalar("select count(*) from pg_database where datname like 'paycore_test_%'")
            .fetch_one(&mut conn)
            .await?;
    if tests > 10 {
        eprintln!(
            "warning: {tests} test databases on this server; autovacuum's visits to them slow this run \
             (they are dropped an hour after the tests made them)"
        );
    }
    Ok(())
}

pub async fn fresh_database() -> anyhow::Result<(PgPool, String)> {
    let name = format!(
        "paycore_bench_{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S")
    );
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let (base, _) = url
                .rsplit_once('/')
                .ok_or_else(|| anyhow::anyhow!("DATABASE_URL has no database name"))?;
            let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("create database \"{name}\"")))
                .execute(&mut admin)
                .await?;
            format!("{base}/{name}")
        }
        Err(_) => {
            let local = tokio::task::spawn_blocking(devdb::ensure_local_postgres).await??;
            devdb::create_database_if_missing(&local, &name).await?;
            local.url(&name)
        }
    };
    drop_earlier_runs(&url, &name).await?;
    let pool = db::connect(&url, 40).await?;
    db::migrate(&pool).await?;
    Ok((pool, url))
}
