//! `paycore-dev`: the whole system in one process for development (api, workers on every queue, scheduler).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paycore_api::dev::dev_main().await
}
