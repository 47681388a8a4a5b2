//! `paycore-devdb migrated-url NAME`: makes sure the local PostgreSQL runs (provisioning it in `.data/` as the
//! tests and `paycore-dev` do), creates database NAME if it is missing, applies every migration and prints the
//! database's URL. `scripts/sqlx-prepare` uses it to give sqlx's compile-time checks a schema to check against.

use anyhow::{bail, Context};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, name] = args.as_slice() else {
        bail!("usage: paycore-devdb migrated-url NAME");
    };
    if command != "migrated-url" {
        bail!("unknown command {command:?}; usage: paycore-devdb migrated-url NAME");
    }
    let local = tokio::task::spawn_blocking(paycore_db::devdb::ensure_local_postgres)
        .await
        .context("provisioning the local PostgreSQL")??;
    paycore_db::devdb::create_database_if_missing(&local, name).await?;
    let url = local.url(name);
    let pool = paycore_db::connect(&url, 2).await?;
    paycore_db::migrate(&pool).await?;
    println!("{url}");
    Ok(())
}
