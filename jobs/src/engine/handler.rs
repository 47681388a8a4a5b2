//! What a job handler sees and returns: its context (with the fenced transaction), its failure classes, and
//! the registry that maps stable job kinds to handlers.
//!
//! Fencing: a worker holds a job's lease while `apalis.jobs.lock_by` names it and `attempts` is unchanged since
//! it fetched the job. A rescue (after missed heartbeats) clears `lock_by` and bumps `attempts`, so a worker that
//! was presumed dead but is still running can no longer commit: `begin_fenced` locks the job row and checks both
//! before any effect is written. The same transaction marks the job done, so a crash after the commit but before
//! apalis's asynchronous acknowledgement can never make the job run again.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{
    enqueue::{Envelope, Job},
    queue::{Queue, RetryPolicy},
};

/// The precise reason an operation failed permanently, as stored in `operation.failure_code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCode(pub &'static str);

/// How a handler run ended when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Retrying cannot help (declined, invalid, not found). The job goes dead at once and its operation fails
    /// with `code`.
    #[error("permanent failure ({}): {message}", code.0)]
    Permanent { code: FailureCode, message: String },
    /// Might work later (timeouts, 5xx, lost connections): retried with exponential backoff.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The other side said when to come back.
    #[error("retry after {after:?}: {message}")]
    RetryAfter { after: Duration, message: String },
    /// Another worker took the job over; this run's effects were not committed.
    #[error("the job's lease was lost to another worker")]
    LeaseLost,
}

impl JobError {
    pub fn permanent(code: &'static str, message: impl Into<String>) -> Self {
        Self::Permanent {
            code: FailureCode(code),
            message: message.into(),
        }
    }
    pub fn transient(error: impl std::fmt::Display) -> Self {
        Self::Transient(error.to_string())
    }
}

impl From<sqlx::Error> for JobError {
    /// Database errors during a handler are transient: the connection, a deadlock or a serialisation failure
    /// will not be there next time, and every handler is idempotent.
    fn from(error: sqlx::Error) -> Self {
        Self::Transient(format!("database: {error}"))
    }
}

/// Everything a handler knows about the run it is in.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub pool: PgPool,
    pub job_id: String,
    pub queue: Queue,
    pub kind: String,
    pub operation_id: Option<Uuid>,
    pub worker: String,
    /// The number of earlier runs, as stored in the row when this run fetched it.
    pub attempts_before: i32,
    pub started_at: DateTime<Utc>,
    /// How this job's queue backs off after a transient failure.
    pub retry_policy: RetryPolicy,
    /// Set by a batcher once this run's fenced transaction has committed.
    pub committed: Committed,
}

/// Whether a run's fenced transaction has committed: the job is then marked done, and the worker skips its own
/// `record_success` statement. Shared by the clones of one run's [`JobContext`]; never set for a run whose
/// handler only opened a fenced transaction (it may have rolled it back).
#[derive(Debug, Clone, Default)]
pub struct Committed(Arc<AtomicBool>);

impl Committed {
    /// Call only after the fenced transaction in which this run's lease held has committed.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl JobContext {
    /// This run's 1-based attempt number.
    pub fn attempt(&self) -> i32 {
        self.attempts_before.saturating_add(1)
    }

    /// Opens the transaction in which a handler commits its effects. It fails with `LeaseLost` if another
    /// worker has taken the job over, and it marks the job done, so commit it only on success.
    pub async fn begin_fenced(&self) -> Result<Transaction<'static, Postgres>, JobError> {
        let mut tx = self.pool.begin().await?;
        // One round trip: lock the job row by primary key and check the lease (as `check_lease_tx` does), mark the
        // job done and record the attempt only if the lease holds.
        let held: Option<bool> = sqlx::query_scalar(
            "with lease as (
                 select id, coalesce(lock_by = $2 and attempts = $3 and status in ('Queued', 'Running'), false)
                        as held
                 from apalis.jobs where id = $1 for update
             ), done as (
                 update apalis.jobs j set status = 'Done', attempts = $4, done_at = now(),
                     last_result = '{\"Ok\": null}'::jsonb
                 from lease where j.id = lease.id and lease.held
                 returning j.id
             ), attempt as (
                 insert into job_attempt (job_id, queue, kind, attempt, worker, outcome, started_at)
                 select id, $5, $6, $4, $2, 'succeeded', $7 from done
             )
             select held from lease",
        )
        .bind(&self.job_id)
        .bind(&self.worker)
        .bind(self.attempts_before)
        .bind(self.attempt())
        .bind(self.queue.name())
        .bind(&self.kind)
        .bind(self.started_at)
        .fetch_optional(&mut *tx)
        .await?;
        match held {
            Some(true) => Ok(tx),
            _ => Err(JobError::LeaseLost),
        }
    }

    /// [`Self::begin_fenced`] for several runs in one transaction (a batch that commits their effects together).
    /// Returns the transaction and, in order, whether each run's lease held; the runs whose lease held are marked
    /// done in it, the others are untouched (leave their effects out). Job rows are locked in id order.
    pub async fn begin_fenced_many(
        pool: &PgPool,
        runs: &[&JobContext],
    ) -> Result<(Transaction<'static, Postgres>, Vec<bool>), JobError> {
        let mut tx = pool.begin().await?;
        let held = Self::fence_many(&mut tx, runs).await?;
        Ok((tx, held))
    }

    /// Checks the leases of `runs` and marks done, with their attempt records, those that hold; returns, in order,
    /// whether each held. One statement: on a connection outside a transaction it commits on its own, so runs with
    /// nothing else to commit are completed in one round trip.
    pub(crate) async fn fence_many(
        conn: &mut sqlx::PgConnection,
        runs: &[&JobContext],
    ) -> Result<Vec<bool>, JobError> {
        let column = |f: fn(&JobContext) -> String| runs.iter().map(|c| f(c)).collect::<Vec<_>>();
        let held: Vec<(String, bool)> = sqlx::query_as(
            "with run as (
                 select * from unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::timestamptz[])
                     as r(id, worker, attempts, queue, kind, started_at)
             ), lease as (
                 select j.id, coalesce(j.lock_by = r.worker and j.attempts = r.attempts
                                       and j.status in ('Queued', 'Running'), false) as held
                 from apalis.jobs j join run r on r.id = j.id order by j.id for update of j
             ), done as (
                 update apalis.jobs j set status = 'Done', attempts = r.attempts + 1, done_at = now(),
                     last_result = '{\"Ok\": null}'::jsonb
                 from lease join run r on r.id = lease.id
                 where j.id = lease.id and lease.held
                 returning j.id
             ), attempt as (
                 insert into job_attempt (job_id, queue, kind, attempt, worker, outcome, started_at)
                 select r.id, r.queue, r.kind, r.attempts + 1, r.worker, 'succeeded', r.started_at
                 from done join run r on r.id = done.id
             )
             select id, held from lease",
        )
        .bind(column(|c| c.job_id.clone()))
        .bind(column(|c| c.worker.clone()))
        .bind(runs.iter().map(|c| c.attempts_before).collect::<Vec<i32>>())
        .bind(column(|c| c.queue.name().to_owned()))
        .bind(column(|c| c.kind.clone()))
        .bind(runs.iter().map(|c| c.started_at).collect::<Vec<DateTime<Utc>>>())
        .fetch_all(&mut *conn)
        .await?;
        Ok(runs
            .iter()
            .map(|run| held.iter().any(|(id, held)| *held && *id == run.job_id))
            .collect())
    }

    /// Locks the job row and checks that this run still holds its lease; returns the job's attempt limit.
    pub(crate) async fn check_lease_tx(
        &self,
        tx: &mut sqlx::PgConnection,
    ) -> Result<i32, JobError> {
        // Found by primary key only, the lease compared in the select list: with the lease in the where clause the
        // planner may walk every row this worker ever locked through the lock_by index.
        let row: Option<(i32, bool)> = sqlx::query_as(
            "select max_attempts,
                    coalesce(lock_by = $2 and attempts = $3 and status in ('Queued', 'Running'), false)
             from apalis.jobs where id = $1 for update",
        )
        .bind(&self.job_id)
        .bind(&self.worker)
        .bind(self.attempts_before)
        .fetch_optional(&mut *tx)
        .await?;
        match row {
            Some((max_attempts, true)) => Ok(max_attempts),
            _ => Err(JobError::LeaseLost),
        }
    }
}

pub(crate) async fn insert_attempt_tx(
    tx: &mut sqlx::PgConnection,
    ctx: &JobContext,
    outcome: &str,
    error: Option<&str>,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into job_attempt (job_id, queue, kind, attempt, worker, outcome, error, started_at, retry_at)
         values ($1, $2, $3, $4, $5, $6, left($7, 4000), $8, $9)",
    )
    .bind(&ctx.job_id)
    .bind(ctx.queue.name())
    .bind(&ctx.kind)
    .bind(ctx.attempt())
    .bind(&ctx.worker)
    .bind(outcome)
    .bind(error)
    .bind(ctx.started_at)
    .bind(retry_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;
type ErasedHandler = Arc<dyn Fn(JobContext, serde_json::Value) -> BoxFuture + Send + Sync>;

/// Where a job kind may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRule {
    /// Only on its own queue (every business job).
    Only(Queue),
    /// On any queue (the engine's canaries: a probe on a queue proves that queue is served).
    Any,
}

/// Maps stable job kinds to their handlers. Built once at start-up.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, (QueueRule, ErasedHandler)>,
}

impl Registry {
    /// Registers the handler of job kind `J`. Arguments that do not decode into `J` fail the job permanently.
    pub fn register<J, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        J: Job,
        F: Fn(JobContext, J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.register_with_rule::<J, F, Fut>(QueueRule::Only(J::QUEUE), handler)
    }

    /// Registers the handler of job kind `J` that also takes `deps` (shared adapters, configuration), cloned into
    /// every run.
    pub fn register_with<J, D, F, Fut>(&mut self, deps: D, handler: F) -> &mut Self
    where
        J: Job,
        D: Clone + Send + Sync + 'static,
        F: Fn(JobContext, J, D) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.register::<J, _, _>(move |ctx, job| handler(ctx, job, deps.clone()))
    }

    /// Registers a job kind that may be enqueued on any queue (`NewJob::on_queue`).
    pub fn register_any_queue<J, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        J: Job,
        F: Fn(JobContext, J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.register_with_rule::<J, F, Fut>(QueueRule::Any, handler)
    }

    fn register_with_rule<J, F, Fut>(&mut self, rule: QueueRule, handler: F) -> &mut Self
    where
        J: Job,
        F: Fn(JobContext, J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: ErasedHandler = Arc::new(move |ctx, args| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let args: J = decode_args(args)?;
                handler(ctx, args).await
            })
        });
        self.handlers.insert(J::KIND, (rule, erased));
        self
    }

    pub(crate) fn handler(&self, kind: &str) -> Option<&(QueueRule, ErasedHandler)> {
        self.handlers.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = (&'static str, QueueRule)> + '_ {
        self.handlers.iter().map(|(kind, (rule, _))| (*kind, *rule))
    }
}

fn decode_args<J: DeserializeOwned>(args: serde_json::Value) -> Result<J, JobError> {
    serde_json::from_value(args).map_err(|error| {
        JobError::permanent(
            "invalid_job_arguments",
            format!("job arguments do not match the job kind: {error}"),
        )
    })
}

/// Decodes the stored payload of a job into its envelope.
pub(crate) fn decode_envelope(payload: serde_json::Value) -> Result<Envelope, String> {
    serde_json::from_value(payload)
        .map_err(|error| format!("job payload is not a valid envelope: {error}"))
}
