//! `paycore-scheduler`: fires cron schedules. Any number of replicas fire each tick exactly once.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paycore_jobs::app::scheduler_main().await
}
