//! Enqueueing jobs, always inside the caller's transaction.
//!
//! `enqueue_tx` is the only way PayCore puts work on a queue. It writes through apalis-postgres's `push_tasks`
//! on the caller's connection, so the job becomes visible exactly when the intent that caused it commits, and
//! disappears with it on rollback. apalis's own `push` opens a separate transaction and is never used.

use apalis::prelude::{TaskBuilder, TaskId};
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use super::queue::Queue;

/// A job's arguments are small: ids, never snapshots of entities. Anything larger is a bug.
pub const JOB_ARGS_BYTES_MAX: usize = 16 * 1024;

/// A job kind: a stable name, the queue it runs on and its arguments' shape.
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// Stored in every job row; renaming a kind is a migration.
    const KIND: &'static str;
    const QUEUE: Queue;
}

/// What is stored in `apalis.jobs.job`: the kind, the operation the job serves (if any) and the arguments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<Uuid>,
    #[serde(default)]
    pub args: serde_json::Value,
}

/// A job about to be enqueued.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub queue: Queue,
    pub envelope: Envelope,
    pub run_at: Option<DateTime<Utc>>,
    /// Unique per queue: a second enqueue with the same key is rejected by the database.
    pub idempotency_key: Option<String>,
    pub priority: usize,
    pub attempts_max: Option<u32>,
}

impl NewJob {
    pub fn new<J: Job>(job: &J) -> Result<Self, EnqueueError> {
        let args = serde_json::to_value(job).map_err(EnqueueError::Serialize)?;
        Ok(Self {
            queue: J::QUEUE,
            envelope: Envelope {
                kind: J::KIND.to_owned(),
                operation_id: None,
                args,
            },
            run_at: None,
            idempotency_key: None,
            priority: 0,
            attempts_max: None,
        })
    }

    pub fn for_operation(mut self, operation_id: Uuid) -> Self {
        self.envelope.operation_id = Some(operation_id);
        self
    }

    /// Puts the job on another queue than its kind's own; only kinds registered for any queue run there.
    pub fn on_queue(mut self, queue: Queue) -> Self {
        self.queue = queue;
        self
    }

    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn attempts_max(mut self, attempts: u32) -> Self {
        self.attempts_max = Some(attempts);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("job arguments could not be serialised")]
    Serialize(#[source] serde_json::Error),
    #[error("job arguments are {0} bytes, over the {JOB_ARGS_BYTES_MAX}-byte limit")]
    TooLarge(usize),
    #[error("a job with this idempotency key is already on the queue")]
    Duplicate,
    #[error("the job could not be written")]
    Database(#[source] apalis_postgres::Error),
}

/// An enqueue failure as a `sqlx::Error`, for storage functions whose callers handle database errors only. apalis
/// builds on its own sqlx, so its database errors are carried as text.
pub fn enqueue_to_sqlx(error: EnqueueError) -> sqlx::Error {
    sqlx::Error::Protocol(error.to_string())
}

/// The id of a job: a ULID as text, as apalis stores it.
pub type JobId = String;

/// Enqueues `job` on the caller's transaction and returns its id.
pub async fn enqueue_tx(tx: &mut PgConnection, job: NewJob) -> Result<JobId, EnqueueError> {
    let queue = job.queue;
    let (id, task) = task_of(job)?;
    push(tx, queue, vec![task]).await?;
    Ok(id)
}

/// Enqueues several jobs in the caller's transaction with one insert per queue.
pub async fn enqueue_many_tx(
    tx: &mut PgConnection,
    jobs: Vec<NewJob>,
) -> Result<Vec<JobId>, EnqueueError> {
    let mut ids = Vec::with_capacity(jobs.len());
    let mut by_queue: Vec<(Queue, Vec<_>)> = Vec::new();
    for job in jobs {
        let queue = job.queue;
        let (id, task) = task_of(job)?;
        ids.push(id);
        match by_queue.iter_mut().find(|(q, _)| *q == queue) {
            Some((_, tasks)) => tasks.push(task),
            None => by_queue.push((queue, vec![task])),
        }
    }
    for (queue, tasks) in by_queue {
        push(tx, queue, tasks).await?;
    }
    Ok(ids)
}

type Task = apalis_postgres::PgTask<Vec<u8>>;

fn task_of(job: NewJob) -> Result<(JobId, Task), EnqueueError> {
    let bytes = serde_json::to_vec(&job.envelope).map_err(EnqueueError::Serialize)?;
    if bytes.len() > JOB_ARGS_BYTES_MAX {
        return Err(EnqueueError::TooLarge(bytes.len()));
    }
    let id = ulid::Ulid::generate();
    let policy = job.queue.retry_policy();
    let mut builder = TaskBuilder::new(bytes)
        .task_id(TaskId::from_ulid(id))
        .priority(job.priority)
        .max_attempts(job.attempts_max.unwrap_or(policy.attempts_max) as usize);
    if let Some(at) = job.run_at {
        builder = builder.run_at_timestamp(u64::try_from(at.timestamp()).unwrap_or(0));
    }
    if let Some(key) = &job.idempotency_key {
        builder = builder.idempotency_key(key);
    }
    Ok((id.to_string(), builder.build()))
}

async fn push(tx: &mut PgConnection, queue: Queue, tasks: Vec<Task>) -> Result<(), EnqueueError> {
    apalis_postgres::queries::push_tasks(&mut *tx, queue.name(), tasks)
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                EnqueueError::Duplicate
            } else {
                EnqueueError::Database(error)
            }
        })
}

/// The SQL expression that wakes a queue's apalis workers: the insert event their listeners wait for, naming the
/// queue (`queue`, a text expression) and a fresh id (`id`, which matches no job, so they fetch).
pub(crate) fn wake_sql(queue: &str, id: &str) -> String {
    format!(
        "pg_notify('apalis::job::insert', json_build_object('job_type', {queue}::text, 'id', {id}::text, \
         'run_at', now())::text)"
    )
}

/// Wakes the workers of `queues` (call it right after the transaction that enqueued their jobs commits). Sent
/// outside that transaction because a transaction that notifies commits serially (see the migration
/// `wake_after_commit`). A failure is only logged: workers find the jobs on their next heartbeat anyway.
pub async fn wake(pool: &sqlx::PgPool, queues: &[Queue]) {
    for queue in queues {
        let result = sqlx::query(sqlx::AssertSqlSafe(format!(
            "select {}",
            wake_sql("$1", "$2")
        )))
        .bind(queue.name())
        .bind(ulid::Ulid::generate().to_string())
        .execute(pool)
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, queue = queue.name(), "could not wake the queue's workers");
        }
    }
}

fn is_unique_violation(error: &apalis_postgres::Error) -> bool {
    match error {
        apalis_postgres::Error::Database(sqlx::Error::Database(db)) => {
            db.code().as_deref() == Some("23505")
        }
        _ => false,
    }
}
