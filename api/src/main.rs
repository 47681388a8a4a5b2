//! `paycore-api`: the HTTP API. Run as many as the load needs behind a load balancer.

/// mimalloc returns freed memory to the system; glibc's allocator kept every 19 MiB password-hashing buffer in its
/// per-thread arenas (measured: 16 MiB → 645 MiB after 64 registrations).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paycore_api::api_main().await
}
