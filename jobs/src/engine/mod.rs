//! The job engine PayCore builds on apalis: transactional enqueue, explicit queues, persisted backoff, dead jobs,
//! fencing, job control and exactly-once cron. See `docs/job-engine.md` for the design and its reasons.

pub mod batch;
pub mod builtin;
pub mod config;
pub mod control;
pub mod enqueue;
pub mod fetch;
pub mod handler;
pub mod queue;
pub mod scheduler;
pub mod worker;

pub use enqueue::{enqueue_many_tx, enqueue_to_sqlx, enqueue_tx, wake, EnqueueError, Job, NewJob};
pub use handler::{Committed, JobContext, JobError, Registry};
pub use queue::Queue;
