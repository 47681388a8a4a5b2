//! The integration-test harness: a real PostgreSQL for every test, real worker and scheduler processes, and the
//! real api on port 0.
//!
//! When `DATABASE_URL` is unset the checkout's local cluster is provisioned (see `paycore_jobs::platform::devdb`). A
//! template database is migrated once per migration set, and each test gets its own database cloned from it, so
//! tests run in parallel without seeing each other.

use std::{
    future::Future,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use paycore_jobs::engine::config::EngineConfig;
use paycore_jobs::engine::{
    worker::{run_workers, WorkerOptions},
    Queue, Registry,
};
use paycore_jobs::platform::db;
use paycore_jobs::platform::devdb;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::oneshot;

pub mod app;
pub mod module_graph;

/// A no-op probe job that succeeds at once; tests adjust its fields for sleeps and failures.
pub fn probe(key: &str) -> paycore_jobs::engine::builtin::Probe {
    paycore_jobs::engine::builtin::Probe {
        key: key.into(),
        sleep_ms: 0,
        fail_times: 0,
        permanent: false,
    }
}

/// A test's own database.
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
    pub name: String,
}

/// The server to create test databases on, as a URL without a database name.
async fn server_url() -> anyhow::Result<(String, String)> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let (base, _) = url
            .rsplit_once('/')
            .context("DATABASE_URL has no database name")?;
        return Ok((base.to_owned(), url));
    }
    let local = tokio::task::spawn_blocking(devdb::ensure_local_postgres).await??;
    let admin = local.url("postgres");
    let (base, _) = admin.rsplit_once('/').context("bad local url")?;
    Ok((base.to_owned(), admin))
}

/// A fingerprint of the migrations, so a changed migration set gets a fresh template.
fn migrations_fingerprint() -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for migration in db::MIGRATOR.iter() {
        for byte in migration
            .checksum
            .iter()
            .chain(migration.version.to_le_bytes().iter())
        {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Serialises template creation across test processes.
const TEMPLATE_LOCK_KEY: i64 = 7_301_001;

impl TestDb {
    pub async fn new() -> anyhow::Result<Self> {
        paycore_jobs::platform::telemetry::init(paycore_jobs::platform::config::LogFormat::Pretty);
        let (base, admin_url) = server_url().await?;
        let template = format!("paycore_tpl_{:016x}", migrations_fingerprint());
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::query("select pg_advisory_lock($1)")
            .bind(TEMPLATE_LOCK_KEY)
            .execute(&mut admin)
            .await?;
        let exists: bool =
            sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
                .bind(&template)
                .fetch_one(&mut admin)
                .await?;
        if !exists {
            let building = format!("{template}_building");
            exec(
                &mut admin,
                &format!("drop database if exists \"{building}\""),
            )
            .await?;
            exec(&mut admin, &format!("create database \"{building}\"")).await?;
            let pool = db::connect(&format!("{base}/{building}"), 2).await?;
            db::migrate(&pool).await?;
            pool.close().await;
            exec(
                &mut admin,
                &format!("alter database \"{building}\" rename to \"{template}\""),
            )
            .await?;
            // Databases of earlier runs are dropped when the template is rebuilt.
            let stale: Vec<String> = sqlx::query_scalar(
                "select datname from pg_database where datname like 'paycore_test_%'
                 or (datname like 'paycore_tpl_%' and datname <> $1)",
            )
            .bind(&template)
            .fetch_all(&mut admin)
            .await?;
            for name in stale {
                let _ = exec(
                    &mut admin,
                    &format!("drop database if exists \"{name}\" with (force)"),
                )
                .await;
            }
        }
        drop_abandoned_databases(&mut admin).await?;
        sqlx::query("select pg_advisory_unlock($1)")
            .bind(TEMPLATE_LOCK_KEY)
            .execute(&mut admin)
            .await?;
        let name = format!(
            "paycore_test_{}_{}",
            chrono::Utc::now().timestamp(),
            uuid::Uuid::new_v4().simple()
        );
        exec(
            &mut admin,
            &format!("create database \"{name}\" template \"{template}\""),
        )
        .await?;
        admin.close().await?;
        let url = format!("{base}/{name}");
        let pool = db::connect(&url, 20).await?;
        Ok(Self { url, pool, name })
    }
}

/// Test databases live on after their test (a test process may be killed, and a failed test's database is worth
/// a look). Ones older than this are dropped as new ones are made, a few at a time, so that a developer's server
/// does not collect thousands of databases (each costs autovacuum work, even idle).
const TEST_DATABASE_LIFETIME_SECONDS: i64 = 3600;

async fn drop_abandoned_databases(admin: &mut PgConnection) -> anyhow::Result<()> {
    let names: Vec<String> =
        sqlx::query_scalar("select datname from pg_database where datname like 'paycore_test_%'")
            .fetch_all(&mut *admin)
            .await?;
    let oldest_kept = chrono::Utc::now().timestamp() - TEST_DATABASE_LIFETIME_SECONDS;
    let abandoned = names.into_iter().filter(|name| {
        // `paycore_test_{created}_{uuid}`; names without a creation time are from older versions of this code.
        name.trim_start_matches("paycore_test_")
            .split_once('_')
            .and_then(|(created, _)| created.parse::<i64>().ok())
            .is_none_or(|created| created < oldest_kept)
    });
    for name in abandoned.take(16) {
        let _ = exec(
            admin,
            &format!("drop database if exists \"{name}\" with (force)"),
        )
        .await;
    }
    Ok(())
}

async fn exec(conn: &mut PgConnection, sql: &str) -> anyhow::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .with_context(|| format!("failed: {sql}"))?;
    Ok(())
}

/// Engine settings for tests: short heartbeats and backoff so properties show in seconds, not minutes.
pub fn fast_engine() -> EngineConfig {
    EngineConfig {
        heartbeat: Duration::from_millis(500),
        missed_heartbeats: 4,
        retry_base: Some(Duration::from_millis(200)),
        shutdown_grace: Duration::from_secs(10),
        ..EngineConfig::default()
    }
}

/// Workers running inside the test process; stopped (gracefully) on drop or by `stop`.
pub struct InProcessWorkers {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcessWorkers {
    pub fn start(pool: &PgPool, queues: Vec<Queue>, engine: EngineConfig) -> Self {
        let lookup = |_: &str| None;
        let config = paycore_jobs::platform::config::Config::from_env(
            &paycore_jobs::platform::config::Env::new(&lookup),
        )
        .expect("default configuration");
        Self::start_for(pool, &config, queues, engine)
    }

    /// Workers with `config`'s provider adapters and settings.
    pub fn start_for(
        pool: &PgPool,
        config: &paycore_jobs::platform::config::Config,
        queues: Vec<Queue>,
        engine: EngineConfig,
    ) -> Self {
        let config = paycore_jobs::platform::config::Config {
            engine: engine.clone(),
            ..config.clone()
        };
        let registry = paycore_jobs::app::registry(&config);
        Self::start_with(pool, registry, queues, engine)
    }

    pub fn start_with(
        pool: &PgPool,
        registry: Arc<Registry>,
        queues: Vec<Queue>,
        engine: EngineConfig,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let options = WorkerOptions::new(queues, engine);
        let task = tokio::spawn(run_workers(pool.clone(), registry, options, async move {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for InProcessWorkers {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The path of a workspace binary (built by `cargo build --workspace --bins`, which the test command runs first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (the test command does)",
        path.display()
    );
    path
}

/// A PayCore process started by a test; killed on drop.
pub struct Process {
    pub child: Child,
    pub name: String,
}

impl Process {
    /// Starts `binary` against `database_url` with extra environment variables; its logs go to
    /// `target/test-logs/<name>.log`.
    pub fn spawn(
        binary_name: &str,
        name: &str,
        database_url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let log_dir = binary(binary_name)
            .parent()
            .map(|dir| dir.join("test-logs"))
            .expect("log dir");
        std::fs::create_dir_all(&log_dir).expect("create log dir");
        let log = std::fs::File::create(log_dir.join(format!("{name}.log"))).expect("log file");
        let mut command = Command::new(binary(binary_name));
        command
            .args(args)
            .env("DATABASE_URL", database_url)
            .env("DATABASE_MAX_CONNECTIONS", "10")
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log));
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("spawn process");
        Self {
            child,
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
