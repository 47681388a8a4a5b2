//! The engine's settings. The platform's configuration reads them from the environment; the engine only uses them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::queue::Queue;

/// Settings of the job engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Jobs that each worker process runs at once, per queue.
    pub concurrency: BTreeMap<Queue, usize>,
    /// How often a worker proves it is alive; a crashed worker's jobs are rescued after
    /// `heartbeat × missed_heartbeats`.
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
    /// Jobs fetched per round trip.
    pub batch_size: usize,
    /// How long a stopping worker waits for in-flight jobs before it exits.
    pub shutdown_grace: Duration,
    /// Finished (done, cancelled) jobs older than this are pruned; their attempt history goes with them.
    pub job_retention: Duration,
    /// How often the scheduler looks for due ticks.
    pub scheduler_poll: Duration,
    /// Replaces every queue's first backoff delay (the curve keeps its shape and caps). For tests and drills.
    pub retry_base: Option<Duration>,
}

impl EngineConfig {
    pub fn concurrency_of(&self, queue: Queue) -> usize {
        self.concurrency
            .get(&queue)
            .copied()
            .unwrap_or(DEFAULT_QUEUE_CONCURRENCY)
    }

    /// The retry policy of `queue`, with the configured base delay if one is set.
    pub fn retry_policy(&self, queue: Queue) -> super::queue::RetryPolicy {
        let mut policy = queue.retry_policy();
        if let Some(base) = self.retry_base {
            policy.base = base;
        }
        policy
    }

    /// After this long without a heartbeat a worker is presumed dead and its jobs are rescued.
    pub fn rescue_after(&self) -> Duration {
        self.heartbeat
            .saturating_mul(u32::try_from(self.missed_heartbeats).unwrap_or(u32::MAX))
    }
}

/// Jobs per queue per worker process when `WORKER_CONCURRENCY` does not say otherwise: enough to overlap
/// provider round trips on a 2-core machine without exhausting the connection pool.
pub const DEFAULT_QUEUE_CONCURRENCY: usize = 8;

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            concurrency: BTreeMap::new(),
            // The heartbeat is also the poll that picks up delayed retries and any job whose wake-up was missed,
            // so it is short; twelve missed ones (12 s) mean the worker is gone and its jobs are rescued.
            heartbeat: Duration::from_secs(1),
            missed_heartbeats: 12,
            batch_size: 50,
            shutdown_grace: Duration::from_secs(30),
            job_retention: Duration::from_secs(7 * 24 * 3600),
            scheduler_poll: Duration::from_millis(250),
            retry_base: None,
        }
    }
}
