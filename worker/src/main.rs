//! `paycore-worker [--queues payments,cards]`: runs job workers. Start as many as the load needs.

/// mimalloc returns freed memory to the system; glibc's allocator kept every 19 MiB password-hashing buffer in its
/// per-thread arenas (measured: 16 MiB → 645 MiB after 64 registrations).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    paycore_jobs::runtime::worker_main(&args).await
}
