//! The engine's own job kinds: a no-op (for drain benchmarks), a probe with a counted effect (a canary for
//! operators and the instrument of the exactly-once tests), and pruning of finished jobs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    enqueue::Job,
    handler::{JobContext, JobError, Registry},
    queue::Queue,
};

/// Does nothing; measures the engine's own overhead. Runs on any queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Noop {}

impl Job for Noop {
    const KIND: &'static str = "engine.noop";
    const QUEUE: Queue = Queue::Maintenance;
}

/// Increments the counter `key` in `engine_probe`, after sleeping `sleep_ms`; the first `fail_times` attempts
/// fail (transiently, or permanently when `permanent`). Runs on any queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub key: String,
    #[serde(default)]
    pub sleep_ms: u64,
    #[serde(default)]
    pub fail_times: u32,
    #[serde(default)]
    pub permanent: bool,
}

/// A probe never sleeps longer than this, whatever its arguments say.
const PROBE_SLEEP_MAX: Duration = Duration::from_secs(120);
/// Probe keys are short labels.
const PROBE_KEY_CHARS_MAX: usize = 200;

impl Job for Probe {
    const KIND: &'static str = "engine.probe";
    const QUEUE: Queue = Queue::Maintenance;
}

/// Deletes finished jobs (done or cancelled) older than the configured retention, with their attempt history.
/// Dead jobs are kept until someone retries or discards them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prune {}

impl Job for Prune {
    const KIND: &'static str = "engine.prune";
    const QUEUE: Queue = Queue::Maintenance;
}

/// Rows deleted per statement, so a prune never holds long locks or bloats one transaction.
const PRUNE_BATCH_ROWS: i64 = 5_000;

pub fn register(registry: &mut Registry, retention: Duration) {
    registry
        .register_any_queue::<Noop, _, _>(|_, _| async { Ok(()) })
        .register_any_queue::<Probe, _, _>(run_probe)
        .register::<Prune, _, _>(move |ctx, _| prune(ctx, retention));
}

async fn run_probe(ctx: JobContext, probe: Probe) -> Result<(), JobError> {
    if probe.key.is_empty() || probe.key.chars().count() > PROBE_KEY_CHARS_MAX {
        return Err(JobError::permanent(
            "invalid_job_arguments",
            "probe key must be 1-200 characters",
        ));
    }
    tokio::time::sleep(Duration::from_millis(probe.sleep_ms).min(PROBE_SLEEP_MAX)).await;
    if ctx.attempt() <= i32::try_from(probe.fail_times).unwrap_or(i32::MAX) {
        return Err(if probe.permanent {
            JobError::permanent(
                "probe_declined",
                format!("probe failure on attempt {}", ctx.attempt()),
            )
        } else {
            JobError::Transient(format!("probe failure on attempt {}", ctx.attempt()))
        });
    }
    let mut tx = ctx.begin_fenced().await?;
    sqlx::query(
        "insert into engine_probe (probe_key, runs) values ($1, 1)
         on conflict (probe_key) do update set runs = engine_probe.runs + 1, updated_at = now()",
    )
    .bind(&probe.key)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn prune(ctx: JobContext, retention: Duration) -> Result<(), JobError> {
    let retention_s = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let mut total = 0u64;
    loop {
        let deleted = sqlx::query(
            "with doomed as (
                 select id from apalis.jobs
                 where done_at < now() - $1 * interval '1 second'
                   and (status = 'Done' or (status = 'Killed' and last_result ? 'Cancelled'))
                 limit $2
                 for update skip locked
             ), gone_attempts as (
                 delete from job_attempt where job_id in (select id from doomed)
             )
             delete from apalis.jobs where id in (select id from doomed)",
        )
        .bind(retention_s)
        .bind(PRUNE_BATCH_ROWS)
        .execute(&ctx.pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < PRUNE_BATCH_ROWS as u64 {
            break;
        }
    }
    tracing::info!(pruned = total, "pruned finished jobs");
    Ok(())
}
