//! `paycore-worker [--queues payments,cards]`: runs job workers. Start as many as the load needs.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    paycore_jobs::app::worker_main(&args).await
}
