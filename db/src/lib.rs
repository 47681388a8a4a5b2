//! Connecting to PostgreSQL and bringing its schema up to date, and (`devdb`) the local PostgreSQL that development
//! and the tests provision when `DATABASE_URL` is unset. A crate of its own, below `paycore-jobs`, so that the tool
//! which prepares the database for sqlx's compile-time query checks builds without those checks
//! (`scripts/sqlx-prepare`).
//!
//! Two migration sets run at start-up, both idempotent and safe to run from several processes at once (each takes
//! sqlx's advisory lock): apalis-postgres's own (schema `apalis`, history in `apalis._sqlx_migrations`) and then
//! PayCore's (`migrations/`).

use std::{str::FromStr, time::Duration};

use anyhow::Context;

pub mod devdb;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};

/// PayCore's migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How long a request may wait for a pooled connection before it is an error rather than a queue.
const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        // Every statement is prepared once per connection and then executed with new parameters. PostgreSQL's
        // default keeps re-planning a statement for each execution while a custom plan looks cheaper, which cost
        // about 7 % of the server's CPU under load; the key lookups PayCore runs plan the same for any value.
        .options([("plan_cache_mode", "force_generic_plan")]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .context("could not connect to PostgreSQL (DATABASE_URL)")
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    apalis_postgres::PostgresStorage::setup(pool)
        .await
        .context("apalis-postgres migrations failed")?;
    MIGRATOR
        .run(pool)
        .await
        .context("PayCore migrations failed")?;
    Ok(())
}

/// True when every embedded migration has been applied (for `/readyz`).
pub async fn migrations_current(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> =
        sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| applied.contains(&m.version)))
}
