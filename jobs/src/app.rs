//! What every PayCore process shares: the job registry, the schedule list, the database connection with
//! migrations, and the shutdown signal. The binaries are a few lines over these.

use std::sync::Arc;

use sqlx::PgPool;

use crate::domains::{bills, deposit, payout, reconciliation, transfer};
use crate::engine::{builtin, scheduler::ScheduleDef, Registry};
use crate::ledger;
use crate::notify;
use crate::platform::config::Config;
use crate::platform::db;
use crate::platform::devdb;
use crate::providers::Providers;

/// The name of the database the local cluster serves when `DATABASE_URL` is unset.
pub const LOCAL_DATABASE: &str = "paycore";

/// A part of PayCore that runs jobs: how it adds its job kinds to the registry, and its schedules. Each part owns
/// both; wiring a new domain is one line in [`PARTS`].
struct Part {
    register: fn(&mut Registry, &Arc<Config>, &Arc<Providers>),
    schedules: fn() -> Vec<ScheduleDef>,
}

/// Every part that runs jobs, the ground floor's first.
const PARTS: &[Part] = &[
    Part {
        register: notify::register,
        schedules: notify::schedules,
    },
    Part {
        register: ledger::audit::register,
        schedules: ledger::audit::schedules,
    },
    Part {
        register: transfer::register,
        schedules: transfer::schedules,
    },
    Part {
        register: deposit::register,
        schedules: deposit::schedules,
    },
    Part {
        register: payout::register,
        schedules: payout::schedules,
    },
    Part {
        register: bills::register,
        schedules: Vec::new,
    },
    Part {
        register: reconciliation::register,
        schedules: reconciliation::schedules,
    },
];

/// Every job kind PayCore runs, with its handler. Provider-facing handlers share one set of adapters built from
/// `config`.
pub fn registry(config: &Config) -> Arc<Registry> {
    let providers = Arc::new(Providers::from_config(&config.providers));
    let config = Arc::new(config.clone());
    let mut registry = Registry::default();
    builtin::register(&mut registry, config.engine.job_retention);
    for part in PARTS {
        (part.register)(&mut registry, &config, &providers);
    }
    Arc::new(registry)
}

/// Every schedule PayCore fires.
pub fn schedules() -> Vec<ScheduleDef> {
    let mut schedules = crate::engine::scheduler::engine_schedules();
    for part in PARTS {
        schedules.extend((part.schedules)());
    }
    schedules
}

/// Connects (provisioning a local PostgreSQL when no `DATABASE_URL` is set), applies migrations and ensures the
/// configured admin (`ADMIN_EMAIL` / `ADMIN_PASSWORD`): every process that starts on the database does both, so
/// whichever starts first (api, worker, scheduler or `paycore-dev`) creates the admin.
pub async fn connect_and_migrate(config: &Config) -> anyhow::Result<PgPool> {
    let configured = config.database_url.as_ref().map(|url| url.expose());
    let url = devdb::ensure_database_url(configured, LOCAL_DATABASE).await?;
    let pool = db::connect(&url, config.database_max_connections).await?;
    db::migrate(&pool).await?;
    ensure_configured_admin(&pool, config).await?;
    Ok(pool)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {},
        result = tokio::signal::ctrl_c() => {
            if let Err(error) = result {
                tracing::error!(%error, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
        },
    }
}

/// `--queues payments,cards` (or `WORKER_QUEUES`); every queue when neither is given.
pub fn queues_from_args(args: &[String]) -> anyhow::Result<Vec<crate::engine::Queue>> {
    let mut raw = std::env::var("WORKER_QUEUES").unwrap_or_default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if let Some(value) = arg.strip_prefix("--queues=") {
            raw = value.to_owned();
        } else if arg == "--queues" {
            raw = iter.next().cloned().unwrap_or_default();
        } else {
            anyhow::bail!(
                "unknown argument {arg:?}; usage: paycore-worker [--queues payments,emails,...]"
            );
        }
    }
    crate::engine::queue::parse_queue_list(&raw).map_err(|error| anyhow::anyhow!(error))
}

/// The worker process: serves the chosen queues until SIGTERM/SIGINT.
pub async fn worker_main(args: &[String]) -> anyhow::Result<()> {
    let config = Config::from_process_env()?;
    crate::platform::telemetry::init(config.log_format);
    let queues = queues_from_args(args)?;
    let pool = connect_and_migrate(&config).await?;
    let options = crate::engine::worker::WorkerOptions::new(queues, config.engine.clone());
    crate::engine::worker::run_workers(pool, registry(&config), options, shutdown_signal()).await
}

/// The scheduler process: fires every schedule's ticks until SIGTERM/SIGINT. Replicas are safe.
pub async fn scheduler_main() -> anyhow::Result<()> {
    let config = Config::from_process_env()?;
    crate::platform::telemetry::init(config.log_format);
    let pool = connect_and_migrate(&config).await?;
    crate::engine::scheduler::run_scheduler(
        pool,
        schedules(),
        config.engine.scheduler_poll,
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// Creates the admin named by `ADMIN_EMAIL` / `ADMIN_PASSWORD` if both are set and no user has that email.
pub async fn ensure_configured_admin(pool: &PgPool, config: &Config) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (&config.money.admin_email, &config.money.admin_password)
    else {
        return Ok(());
    };
    let created = crate::domains::wallet::ensure_admin(
        pool,
        email,
        password.expose(),
        crate::domains::identity::auth::Role::Admin,
    )
    .await?;
    if created {
        tracing::info!(email = %email, "created the configured admin");
    }
    Ok(())
}

/// The demo accounts the development command creates (once) and prints.
pub const DEMO_ADMIN: (&str, &str) = ("admin@paycore.local", "paycore-admin-demo");
pub const DEMO_USERS: [(&str, &str, &str); 2] = [
    ("ada@paycore.local", "paycore-demo-ada", "Ada Obi"),
    ("bayo@paycore.local", "paycore-demo-bayo", "Bayo Adeyemi"),
];

/// Seeds the demo data: an admin and two users whose NGN wallets hold the welcome bonus. Idempotent.
pub async fn seed_demo_data(pool: &PgPool, config: &Config) -> anyhow::Result<()> {
    crate::domains::wallet::ensure_admin(
        pool,
        DEMO_ADMIN.0,
        DEMO_ADMIN.1,
        crate::domains::identity::auth::Role::Admin,
    )
    .await?;
    for (email, password, name) in DEMO_USERS {
        // Seeded before: left as it is (registering again would warn its owner of a registration attempt).
        let exists: bool = sqlx::query_scalar(
            "select exists (select 1 from app_user where lower(email) = lower($1))",
        )
        .bind(email)
        .fetch_one(pool)
        .await?;
        if exists {
            continue;
        }
        let new_user = crate::domains::wallet::NewUser {
            email: crate::domains::identity::auth::Email::parse(email)
                .ok_or_else(|| anyhow::anyhow!("bad demo email"))?,
            phone: None,
            password: password.to_owned(),
            full_name: name.to_owned(),
            role: crate::domains::identity::auth::Role::User,
        };
        crate::domains::wallet::register(pool, config, new_user, None).await?;
    }
    // The demo accounts' addresses count as verified (their codes went to the development mailbox).
    let emails: Vec<String> = DEMO_USERS
        .iter()
        .map(|(email, _, _)| email.to_string())
        .collect();
    sqlx::query(
        "update app_user set email_verified_at = coalesce(email_verified_at, now()) where lower(email) = any($1)",
    )
    .bind(&emails)
    .execute(pool)
    .await?;
    Ok(())
}
