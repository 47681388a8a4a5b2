//! Worker processes: one apalis worker per served queue, all dispatching through the same registry.
//!
//! apalis runs the fetch loop, heartbeats, concurrency limits and graceful shutdown; `fetch.rs` decides when a loop
//! fetches and wakes it. This module adds what apalis-postgres 1.0 lacks: decoding failures that kill only the job, persisted backoff (the job's
//! `run_at` is moved in the database), permanent failures that fail the operation, an attempt history, and the
//! fenced completion described in `handler.rs`.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use apalis::prelude::{
    AbortError, Attempt, BoxDynError, Data, Monitor, TaskId, WorkerBuilder, WorkerBuilderExt,
    WorkerContext,
};
use apalis_postgres::Config as ApalisConfig;
use chrono::Utc;
use futures::FutureExt;
use sqlx::PgPool;
use tracing::Instrument;

use super::config::EngineConfig;
use super::{
    batch::Completions,
    fetch::{JobSource, Wakes},
    handler::{decode_envelope, insert_attempt_tx, JobContext, JobError, Registry},
    queue::Queue,
};
use crate::operation;

/// What each queue's apalis worker shares.
struct Dispatcher {
    pool: PgPool,
    registry: Arc<Registry>,
    queue: Queue,
    retry_policy: super::queue::RetryPolicy,
    /// Marks done, in batches, the runs whose handler returned without a fenced commit of its own.
    completions: Arc<Completions>,
}

/// Concurrent jobs per apalis fetch loop; a queue configured for more runs more loops. apalis's own loops each
/// fetched on every wake-up, so more loops than needed were a thundering herd: at 8 jobs per loop, a 64-job payments
/// queue ran 8 loops and a settled transfer cost 15–20 % more CPU than with 2 (measured with the bench). A wake-up
/// now sends one waiting loop to fetch, but a loop that was busy still fetches once when it comes back.
const JOBS_PER_FETCH_LOOP: usize = 32;

/// How long a failed worker waits before it restarts.
const WORKER_RESTART_PAUSE: Duration = Duration::from_millis(500);

/// Options of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queues: Vec<Queue>,
    pub engine: EngineConfig,
    /// A prefix that makes this process's worker names unique across hosts and processes.
    pub instance: String,
}

impl WorkerOptions {
    pub fn new(queues: Vec<Queue>, engine: EngineConfig) -> Self {
        Self {
            queues,
            engine,
            instance: default_instance_name(),
        }
    }
}

/// `host-pid-random`: unique per process, readable on the dashboard.
pub fn default_instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into());
    let suffix: u32 = rand::random::<u32>() % 100_000;
    format!("{host}-{}-{suffix:05}", std::process::id())
}

/// The apalis job source of one fetch loop of `queue`, configured with PayCore's heartbeat and rescue window.
///
/// The arguments are taken as any JSON value and decoded by the dispatcher: apalis decodes before the handler
/// runs, and a decoding error there ends the whole worker, so only our code may reject a payload. (Payloads that
/// are not JSON at all cannot be inserted: `apalis.jobs` has a CHECK for that.)
fn source_for(pool: &PgPool, queue: Queue, engine: &EngineConfig, wakes: &Wakes) -> JobSource {
    let config = ApalisConfig::default()
        .queue(queue.name())
        .batch_size(engine.batch_size)
        .heartbeat_interval(engine.heartbeat)
        .missed_heartbeats(engine.missed_heartbeats)
        // apalis would mark each fetched job `Running` and later acknowledge its result: two more updates of the
        // job row, sent from the fetch loop, which waited on the row lock of the handler's fenced transaction before
        // it could fetch again. The fenced commit and `finish` already record every outcome (a fetched job is
        // `Queued` under our lock, which the lease check and rescue treat like `Running`).
        .lock_tasks(false)
        .persist_results(false);
    JobSource::new(pool, config, queue, wakes, engine.heartbeat)
}

/// Runs workers for `options.queues` until `shutdown` resolves, then stops fetching, lets in-flight jobs finish
/// within the grace period and hands back jobs that were fetched but not started.
pub async fn run_workers(
    pool: PgPool,
    registry: Arc<Registry>,
    options: WorkerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut monitor = Monitor::new()
        .shutdown_timeout(options.engine.shutdown_grace)
        .should_restart(|worker, error| {
            // A worker's loop ends on a backend error (the database restarting, a lost connection). Restart it
            // after a pause, so an outage is ridden out rather than spun on. The callback is synchronous; the
            // pause blocks one runtime thread briefly, only while the database is unreachable.
            tracing::error!(worker = worker.name(), %error, "worker stopped on an error; restarting it");
            std::thread::sleep(WORKER_RESTART_PAUSE);
            true
        });
    let (wakes, listener) = Wakes::listen(pool.clone(), &options.queues);
    let completions = Arc::new(Completions::default());
    for queue in options.queues.iter().copied() {
        let dispatcher = Arc::new(Dispatcher {
            pool: pool.clone(),
            registry: Arc::clone(&registry),
            queue,
            retry_policy: options.engine.retry_policy(queue),
            completions: Arc::clone(&completions),
        });
        // One apalis worker runs one fetch loop, and its handlers run on that loop's task; a queue with high
        // concurrency gets several loops, so that its jobs run on more than one thread.
        let concurrency = options.engine.concurrency_of(queue);
        let fetchers = concurrency.div_ceil(JOBS_PER_FETCH_LOOP).max(1);
        for fetcher in 0..fetchers {
            let share = concurrency / fetchers + usize::from(fetcher < concurrency % fetchers);
            let source = source_for(&pool, queue, &options.engine, &wakes);
            let name = format!("{}-{}-{fetcher}", options.instance, queue.name());
            let dispatcher = Arc::clone(&dispatcher);
            monitor = monitor.register(move |index| {
                WorkerBuilder::new(format!("{name}-{index}"))
                    .backend(source.clone())
                    .data(Arc::clone(&dispatcher))
                    .concurrency(share.max(1))
                    .build(run_job)
            });
        }
    }
    tracing::info!(queues = ?options.queues, instance = %options.instance, "workers starting");
    let presence = tokio::spawn(announce_presence(pool.clone(), options.clone()));
    let result = monitor
        .run_with_signal(async move {
            shutdown.await;
            tracing::info!("shutdown requested: no new jobs are fetched; in-flight jobs finish");
            Ok(())
        })
        .await
        .map_err(|error| anyhow::anyhow!("worker monitor stopped: {error}"));
    presence.abort();
    listener.abort();
    if let Err(error) = sqlx::query("delete from worker_process where instance = $1")
        .bind(&options.instance)
        .execute(&pool)
        .await
    {
        tracing::warn!(%error, "could not deregister the worker process");
    }
    result?;
    tracing::info!("workers stopped");
    Ok(())
}

/// Keeps this process's `worker_process` row fresh, every heartbeat, for the dashboard.
async fn announce_presence(pool: PgPool, options: WorkerOptions) {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let queues: Vec<&str> = options.queues.iter().map(|q| q.name()).collect();
    let concurrency: serde_json::Map<String, serde_json::Value> = options
        .queues
        .iter()
        .map(|q| {
            (
                q.name().to_owned(),
                serde_json::json!(options.engine.concurrency_of(*q)),
            )
        })
        .collect();
    let mut interval = tokio::time::interval(options.engine.heartbeat);
    loop {
        interval.tick().await;
        let result = sqlx::query(
            "insert into worker_process (instance, host, pid, queues, concurrency) values ($1, $2, $3, $4, $5)
             on conflict (instance) do update set last_seen = now()",
        )
        .bind(&options.instance)
        .bind(&host)
        .bind(i32::try_from(std::process::id()).unwrap_or(0))
        .bind(serde_json::json!(queues))
        .bind(serde_json::Value::Object(concurrency.clone()))
        .execute(&pool)
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "worker presence heartbeat failed");
        }
    }
}

/// The apalis service of every queue: decode, dispatch, classify.
async fn run_job(
    payload: serde_json::Value,
    task_id: TaskId,
    attempt: Attempt,
    worker: WorkerContext,
    dispatcher: Data<Arc<Dispatcher>>,
) -> Result<(), BoxDynError> {
    // apalis counts this run before the handler starts; the row still holds the earlier count until the ack.
    let attempts_before = i32::try_from(attempt.current().saturating_sub(1)).unwrap_or(i32::MAX);
    let mut ctx = JobContext {
        pool: dispatcher.pool.clone(),
        job_id: task_id.to_string(),
        queue: dispatcher.queue,
        kind: String::from("(undecodable)"),
        operation_id: None,
        worker: worker.name().to_owned(),
        attempts_before,
        started_at: Utc::now(),
        retry_policy: dispatcher.retry_policy,
        committed: Default::default(),
    };
    let span = tracing::info_span!(
        "job", job_id = %ctx.job_id, queue = %ctx.queue, attempt = ctx.attempt(),
        kind = tracing::field::Empty, operation_id = tracing::field::Empty
    );
    async move {
        let outcome = dispatch(&dispatcher, &mut ctx, payload).await;
        finish(&ctx, outcome, &dispatcher.completions).await
    }
    .instrument(span)
    .await
}

async fn dispatch(
    dispatcher: &Dispatcher,
    ctx: &mut JobContext,
    payload: serde_json::Value,
) -> Result<(), JobError> {
    let envelope = decode_envelope(payload).map_err(|message| JobError::Permanent {
        code: super::handler::FailureCode("undecodable_job"),
        message,
    })?;
    ctx.kind = envelope.kind.clone();
    ctx.operation_id = envelope.operation_id;
    let span = tracing::Span::current();
    span.record("kind", ctx.kind.as_str());
    if let Some(operation_id) = ctx.operation_id {
        span.record("operation_id", tracing::field::display(operation_id));
    }
    let Some((rule, handler)) = dispatcher.registry.handler(&envelope.kind) else {
        return Err(JobError::permanent(
            "unknown_job_kind",
            format!("no handler is registered for job kind {:?}", envelope.kind),
        ));
    };
    let wrong_queue = match *rule {
        super::handler::QueueRule::Only(queue) => (queue != dispatcher.queue).then_some(queue),
        super::handler::QueueRule::Any => None,
    };
    if let Some(queue) = wrong_queue {
        return Err(JobError::permanent(
            "wrong_queue",
            format!(
                "job kind {:?} belongs on queue {queue}, not {}",
                envelope.kind, dispatcher.queue
            ),
        ));
    }
    // A panicking handler is a bug; it must not take the worker down. The job is retried like a transient
    // failure so that, once fixed, nothing was lost; the panic message goes into its error history.
    match AssertUnwindSafe(handler(ctx.clone(), envelope.args))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "handler panicked".into());
            Err(JobError::Transient(format!("handler panicked: {message}")))
        }
    }
}

/// Records how a run ended, in a fenced transaction, and tells apalis what to store.
async fn finish(
    ctx: &JobContext,
    outcome: Result<(), JobError>,
    completions: &Completions,
) -> Result<(), BoxDynError> {
    let error = match outcome {
        Ok(()) => {
            tracing::debug!("job succeeded");
            // A batcher's fenced commit already marked the job done.
            if !ctx.committed.is_set() {
                record_retrying(ctx, None, completions).await;
            }
            return Ok(());
        }
        Err(error) => error,
    };
    if matches!(error, JobError::LeaseLost) {
        tracing::warn!("job lease lost to another worker; this run's effects were rolled back");
        return Err(Box::new(error));
    }
    record_retrying(ctx, Some(&error), completions).await;
    match error {
        JobError::Permanent { .. } => {
            tracing::warn!(error = %error, "job failed permanently");
            Err(Box::new(AbortError::new(error)))
        }
        other => {
            tracing::info!(error = %other, "job failed; it will be retried");
            Err(Box::new(other))
        }
    }
}

/// Records a run's outcome (`None`: success), trying again a few times while the database is unreachable. If it
/// still fails, the row stays locked by this worker until a rescue makes it runnable again (handlers are
/// idempotent).
///
/// A success is marked done with the other runs of this process that succeed at the same moment, in one fenced
/// transaction ([`Completions`]): one commit for a batch of runs instead of one each.
async fn record_retrying(ctx: &JobContext, error: Option<&JobError>, completions: &Completions) {
    let mut tries = 0;
    loop {
        let recorded = match error {
            None => completions.complete(ctx.clone(), None).await,
            Some(error) => record_failure(ctx, error).await,
        };
        match recorded {
            Ok(()) => return,
            // After a success, the usual reason: the handler's own fenced commit already marked the job done.
            Err(JobError::LeaseLost) if error.is_none() => return,
            Err(JobError::LeaseLost) => {
                tracing::warn!("job lease lost before its outcome could be recorded");
                return;
            }
            Err(record_error) if tries < RECORD_TRIES => {
                tries += 1;
                tracing::warn!(error = %record_error, "recording a job's outcome failed; trying again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
            }
            Err(record_error) => {
                tracing::error!(error = %record_error, "could not record a job's outcome");
                return;
            }
        }
    }
}

/// Recording an outcome is itself retried a few times (the database may be restarting).
const RECORD_TRIES: u32 = 5;

async fn record_failure(ctx: &JobContext, error: &JobError) -> Result<(), JobError> {
    let mut tx = ctx.pool.begin().await?;
    let attempts_max = ctx.check_lease_tx(&mut tx).await?;
    let message = error.to_string();
    match error {
        JobError::Permanent { code, .. } => {
            let outcome = if code.0 == "undecodable_job" {
                "undecodable"
            } else {
                "permanent"
            };
            sqlx::query(
                "update apalis.jobs set status = 'Killed', attempts = $2, done_at = now(),
                     last_result = jsonb_build_object('Err', $3::text)
                 where id = $1",
            )
            .bind(&ctx.job_id)
            .bind(ctx.attempt())
            .bind(&message)
            .execute(&mut *tx)
            .await?;
            insert_attempt_tx(&mut tx, ctx, outcome, Some(&message), None).await?;
            if let Some(operation_id) = ctx.operation_id {
                operation::fail_tx(&mut tx, operation_id, code.0, &message).await?;
            }
        }
        JobError::Transient(_) | JobError::RetryAfter { .. } => {
            let (outcome, delay) = match error {
                JobError::RetryAfter { after, .. } => ("retry_after", *after),
                _ => {
                    let attempt = u32::try_from(ctx.attempt()).unwrap_or(u32::MAX);
                    ("transient", ctx.retry_policy.delay_after(attempt))
                }
            };
            let exhausted = ctx.attempt() >= attempts_max;
            // The next run is due `delay` after this transaction's time, which is also the attempt's finishing
            // time: the stored backoff is exactly the policy's, however long the lock above took.
            let delay_seconds = (!exhausted).then_some(delay.as_secs_f64());
            let retry_at: Option<chrono::DateTime<Utc>> = sqlx::query_scalar(
                "update apalis.jobs set status = 'Failed', attempts = $2, done_at = now(),
                     run_at = coalesce(now() + $3::float8 * interval '1 second', run_at),
                     last_result = jsonb_build_object('Err', $4::text)
                 where id = $1
                 returning case when $3::float8 is null then null else run_at end",
            )
            .bind(&ctx.job_id)
            .bind(ctx.attempt())
            .bind(delay_seconds)
            .bind(&message)
            .fetch_one(&mut *tx)
            .await?;
            insert_attempt_tx(&mut tx, ctx, outcome, Some(&message), retry_at).await?;
            if exhausted {
                tracing::error!(
                    "job exhausted its attempts and is dead; retry it from the dashboard"
                );
            }
        }
        JobError::LeaseLost => return Err(JobError::LeaseLost),
    }
    tx.commit().await?;
    if let (JobError::Permanent { .. }, Some(operation_id)) = (error, ctx.operation_id) {
        operation::announce_status(&ctx.pool, &[operation_id]).await;
    }
    Ok(())
}
