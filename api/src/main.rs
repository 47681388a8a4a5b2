//! `paycore-api`: the HTTP API. Run as many as the load needs behind a load balancer.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paycore_api::api_main().await
}
