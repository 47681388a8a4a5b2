//! Seeing and steering jobs: filters, listings, per-queue statistics, and the retry / cancel / discard actions
//! (one job, or every job matching a filter) that the admin API and the dashboard call.
//!
//! A job's state as people see it (`pending`, `scheduled`, `running`, `retrying`, `dead`, `cancelled`, `done`) is
//! derived in SQL by `job_state(...)` from apalis's columns, so it can never disagree with what workers do.
//! Every action is recorded in `job_event`, one row per job, with who did it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::queue::Queue;
use crate::operation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Scheduled,
    Running,
    Retrying,
    Dead,
    Cancelled,
    Done,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Pending,
        JobState::Scheduled,
        JobState::Running,
        JobState::Retrying,
        JobState::Dead,
        JobState::Cancelled,
        JobState::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
            JobState::Done => "done",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == raw)
    }
}

/// The SQL expression of a job's state over `apalis.jobs` aliased `j`.
const STATE_SQL: &str = "job_state(j.status, j.attempts, j.max_attempts, j.run_at, j.last_result)";

/// Argument fields that hold secrets, at any depth: listings and details show them as [`REDACTED`] and the
/// argument search does not look into them. One-time codes travel sealed (`notify::sealed`), so this hides their
/// ciphertext, and the clear codes of e-mail jobs enqueued before codes were sealed.
pub const SECRET_ARG_FIELDS: [&str; 2] = ["code", "code_sealed"];
/// What a secret argument shows instead of its value.
pub const REDACTED: &str = "[redacted]";

/// Replaces the value of every [`SECRET_ARG_FIELDS`] field in `args`, at any depth, with [`REDACTED`].
pub fn redact_args(args: &mut serde_json::Value) {
    match args {
        serde_json::Value::Object(fields) => {
            for (name, value) in fields.iter_mut() {
                if SECRET_ARG_FIELDS.contains(&name.as_str()) {
                    *value = serde_json::Value::String(REDACTED.to_owned());
                } else {
                    redact_args(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_args),
        _ => {}
    }
}

/// The argument search's regular expression over a job's JSON text: a secret field and its value (a JSON string
/// or a bare scalar), replaced by `"<field>":"[redacted]"` before the search looks.
fn secret_fields_pattern() -> String {
    format!(
        r#""({})":("(?:[^"\\]|\\.)*"|[^,}}\]]*)"#,
        SECRET_ARG_FIELDS.join("|")
    )
}

fn redact_summary(mut job: JobSummary) -> JobSummary {
    if let Some(args) = job.args.as_mut() {
        redact_args(args);
    }
    job
}

/// Which jobs a listing or an action applies to. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub ids: Vec<String>,
    pub queue: Option<Queue>,
    pub state: Option<JobState>,
    pub kind: Option<String>,
    pub operation_id: Option<Uuid>,
    /// Case-insensitive text searched in the job's arguments.
    pub args_contains: Option<String>,
    pub run_after: Option<DateTime<Utc>>,
    pub run_before: Option<DateTime<Utc>>,
}

/// A bulk action touches at most this many jobs; a larger set is handled by repeating it.
pub const BULK_ACTION_JOBS_MAX: i64 = 10_000;
/// Listings return at most this many jobs per page.
pub const LIST_PAGE_MAX: i64 = 100;

impl JobFilter {
    pub fn by_id(id: impl Into<String>) -> Self {
        Self {
            ids: vec![id.into()],
            ..Self::default()
        }
    }

    fn push_where(&self, builder: &mut QueryBuilder<Postgres>) {
        builder.push(" where true");
        if !self.ids.is_empty() {
            builder
                .push(" and j.id = any(")
                .push_bind(self.ids.clone())
                .push(")");
        }
        if let Some(queue) = self.queue {
            builder.push(" and j.job_type = ").push_bind(queue.name());
        }
        if let Some(state) = self.state {
            builder
                .push(format!(" and {STATE_SQL} = "))
                .push_bind(state.as_str());
        }
        if let Some(kind) = &self.kind {
            builder
                .push(" and job_envelope(j.job) ->> 'kind' = ")
                .push_bind(kind.clone());
        }
        if let Some(operation_id) = self.operation_id {
            builder
                .push(" and job_envelope(j.job) ->> 'operation_id' = ")
                .push_bind(operation_id.to_string());
        }
        if let Some(text) = &self.args_contains {
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            // The search reads the job's text with its secret fields blanked, so no one can find a job, or test a
            // guess, by a secret's value.
            builder
                .push(" and regexp_replace(convert_from(j.job, 'UTF8'), ")
                .push_bind(secret_fields_pattern())
                .push(", ")
                .push_bind(format!(r#""\1":"{REDACTED}""#))
                .push(", 'g') ilike ")
                .push_bind(format!("%{escaped}%"));
        }
        if let Some(after) = self.run_after {
            builder.push(" and j.run_at >= ").push_bind(after);
        }
        if let Some(before) = self.run_before {
            builder.push(" and j.run_at < ").push_bind(before);
        }
    }
}

/// A job as listings and the detail page show it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct JobSummary {
    pub id: String,
    pub queue: String,
    pub state: String,
    pub kind: Option<String>,
    pub operation_id: Option<String>,
    pub args: Option<serde_json::Value>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub lock_by: Option<String>,
    pub lock_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
    pub last_result: Option<serde_json::Value>,
}

const SUMMARY_COLUMNS: &str = "j.id, j.job_type as queue,
    job_state(j.status, j.attempts, j.max_attempts, j.run_at, j.last_result) as state,
    job_envelope(j.job) ->> 'kind' as kind, job_envelope(j.job) ->> 'operation_id' as operation_id,
    job_envelope(j.job) -> 'args' as args, j.attempts, j.max_attempts, j.run_at, j.lock_by,
    j.lock_at, j.done_at, j.last_result";

/// Lists jobs matching `filter`, newest first (ids are ULIDs, so id order is creation order), after the
/// `starting_after` cursor. Secret arguments are redacted.
pub async fn list_jobs(
    pool: &PgPool,
    filter: &JobFilter,
    starting_after: Option<&str>,
    limit: i64,
) -> Result<Vec<JobSummary>, sqlx::Error> {
    let mut builder = QueryBuilder::new(format!("select {SUMMARY_COLUMNS} from apalis.jobs j"));
    filter.push_where(&mut builder);
    if let Some(cursor) = starting_after {
        builder.push(" and j.id < ").push_bind(cursor.to_owned());
    }
    builder
        .push(" order by j.id desc limit ")
        .push_bind(limit.clamp(1, LIST_PAGE_MAX));
    let jobs: Vec<JobSummary> = builder.build_query_as().fetch_all(pool).await?;
    Ok(jobs.into_iter().map(redact_summary).collect())
}

pub async fn count_jobs(pool: &PgPool, filter: &JobFilter) -> Result<i64, sqlx::Error> {
    let mut builder = QueryBuilder::new("select count(*) from apalis.jobs j");
    filter.push_where(&mut builder);
    builder.build_query_scalar().fetch_one(pool).await
}

/// One job, with its secret arguments redacted.
pub async fn get_job(pool: &PgPool, id: &str) -> Result<Option<JobSummary>, sqlx::Error> {
    let job: Option<JobSummary> = sqlx::query_as(AssertSqlSafe(format!(
        "select {SUMMARY_COLUMNS} from apalis.jobs j where j.id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(job.map(redact_summary))
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct AttemptRecord {
    pub attempt: i32,
    pub worker: String,
    pub outcome: String,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub retry_at: Option<DateTime<Utc>>,
}

/// Every recorded run of a job, oldest first.
pub async fn job_attempts(pool: &PgPool, id: &str) -> Result<Vec<AttemptRecord>, sqlx::Error> {
    sqlx::query_as(
        "select attempt, worker, outcome, error, started_at, finished_at, retry_at
         from job_attempt where job_id = $1 order by job_attempt_id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

/// Counts by state for one queue, with the age of its oldest due job.
#[derive(Debug, Clone, Serialize, Default)]
pub struct QueueStats {
    pub queue: String,
    pub counts: std::collections::BTreeMap<String, i64>,
    pub oldest_due_age_ms: Option<i64>,
}

pub async fn queue_stats(pool: &PgPool) -> Result<Vec<QueueStats>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
        "select j.job_type, {STATE_SQL} as state, count(*) from apalis.jobs j group by 1, 2"
    )))
    .fetch_all(pool)
    .await?;
    let ages: Vec<(String, Option<i64>)> = sqlx::query_as(
        "select job_type, (extract(epoch from now() - min(run_at)) * 1000)::bigint from apalis.jobs
         where (status = 'Pending' or (status = 'Failed' and attempts < max_attempts)) and run_at <= now()
         group by 1",
    )
    .fetch_all(pool)
    .await?;
    let mut out: Vec<QueueStats> = Queue::ALL
        .iter()
        .map(|queue| QueueStats {
            queue: queue.name().to_owned(),
            counts: JobState::ALL
                .iter()
                .map(|s| (s.as_str().to_owned(), 0))
                .collect(),
            oldest_due_age_ms: None,
        })
        .collect();
    for (queue, state, count) in rows {
        if let Some(stats) = out.iter_mut().find(|s| s.queue == queue) {
            stats.counts.insert(state, count);
        }
    }
    for (queue, age) in ages {
        if let Some(stats) = out.iter_mut().find(|s| s.queue == queue) {
            stats.oldest_due_age_ms = age;
        }
    }
    Ok(out)
}

/// What a job action did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ActionResult {
    /// Jobs the action applied to.
    pub affected: Vec<String>,
    /// Matching jobs it could not apply to (running, or in a state the action does not take).
    pub skipped: i64,
    /// Queues with jobs to run again, to wake once the action commits.
    #[serde(skip)]
    pub queues_to_wake: Vec<Queue>,
    /// Operations the action cancelled, to announce once it commits.
    #[serde(skip)]
    pub operations_changed: Vec<Uuid>,
}

impl ActionResult {
    /// Wakes workers and announces operations; call after the action's transaction commits.
    pub async fn after_commit(&self, pool: &PgPool) {
        super::enqueue::wake(pool, &self.queues_to_wake).await;
        operation::announce_status(pool, &self.operations_changed).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobAction {
    /// Run again now: dead, cancelled, retrying and scheduled jobs. A dead job gets a fresh set of attempts.
    Retry,
    /// Never run: pending, scheduled and retrying jobs; their open operation is cancelled too.
    Cancel,
    /// Delete the job row (never a running one); its attempt history and events are kept for the audit.
    Discard,
}

impl JobAction {
    pub fn parse(raw: &str) -> Option<Self> {
        [JobAction::Retry, JobAction::Cancel, JobAction::Discard]
            .into_iter()
            .find(|a| a.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobAction::Retry => "retry",
            JobAction::Cancel => "cancel",
            JobAction::Discard => "discard",
        }
    }

    fn allowed_states(self) -> &'static [&'static str] {
        match self {
            JobAction::Retry => &["dead", "cancelled", "retrying", "scheduled"],
            JobAction::Cancel => &["pending", "scheduled", "retrying"],
            JobAction::Discard => &[
                "pending",
                "scheduled",
                "retrying",
                "dead",
                "cancelled",
                "done",
            ],
        }
    }
}

/// Applies `action` to every job matching `filter` (at most `BULK_ACTION_JOBS_MAX`), in one transaction.
pub async fn apply_action(
    pool: &PgPool,
    action: JobAction,
    filter: &JobFilter,
    actor: &str,
) -> Result<ActionResult, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let result = apply_action_tx(&mut tx, action, filter, actor).await?;
    tx.commit().await?;
    result.after_commit(pool).await;
    Ok(result)
}

/// `apply_action` in the caller's transaction (so an admin action and its audit record commit together).
pub async fn apply_action_tx(
    tx: &mut sqlx::PgConnection,
    action: JobAction,
    filter: &JobFilter,
    actor: &str,
) -> Result<ActionResult, sqlx::Error> {
    // Lock the matching rows that are not in a worker's hands; the others are reported as skipped.
    let mut select = QueryBuilder::new(format!(
        "select j.id, {STATE_SQL} as state, job_envelope(j.job) ->> 'operation_id' from apalis.jobs j"
    ));
    filter.push_where(&mut select);
    select
        .push(" order by j.id limit ")
        .push_bind(BULK_ACTION_JOBS_MAX)
        .push(" for update of j skip locked");
    let matched: Vec<(String, String, Option<String>)> =
        select.build_query_as().fetch_all(&mut *tx).await?;
    let allowed = action.allowed_states();
    let (chosen, others): (Vec<_>, Vec<_>) = matched
        .into_iter()
        .partition(|(_, state, _)| allowed.contains(&state.as_str()));
    let mut ids: Vec<String> = Vec::with_capacity(chosen.len());
    let mut operations_changed = Vec::new();
    let mut skipped = i64::try_from(others.len()).unwrap_or(i64::MAX);
    for (id, _, operation_id) in chosen {
        // A job whose operation already settled must not run again: its effects (or compensations) are done.
        if action == JobAction::Retry {
            if let Some(op) = operation_id
                .as_deref()
                .and_then(|raw| Uuid::parse_str(raw).ok())
            {
                let settled: Option<String> = sqlx::query_scalar(
                    "select status from operation where operation_id = $1
                     and status in ('succeeded', 'failed', 'cancelled')",
                )
                .bind(op)
                .fetch_optional(&mut *tx)
                .await?;
                if settled.is_some() {
                    skipped += 1;
                    continue;
                }
            }
        }
        if action == JobAction::Cancel {
            if let Some(op) = operation_id
                .as_deref()
                .and_then(|raw| Uuid::parse_str(raw).ok())
            {
                if operation::cancel_tx(tx, op).await? {
                    operations_changed.push(op);
                }
            }
        }
        ids.push(id);
    }
    if !ids.is_empty() {
        match action {
            JobAction::Retry => {
                let extra_attempts = Queue::ALL
                    .iter()
                    .map(|q| format!("when '{}' then {}", q.name(), q.retry_policy().attempts_max))
                    .collect::<Vec<_>>()
                    .join(" ");
                // `extra_attempts` is built from the queue constants above, never from input.
                sqlx::query(AssertSqlSafe(format!(
                    "update apalis.jobs set status = 'Pending', run_at = now(), lock_by = null,
                         lock_at = null, done_at = null,
                         max_attempts = greatest(max_attempts,
                             attempts + case job_type {extra_attempts} else 5 end)
                     where id = any($1)"
                )))
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            }
            JobAction::Cancel => {
                sqlx::query(
                    "update apalis.jobs set status = 'Killed', done_at = now(),
                         last_result = jsonb_build_object('Cancelled', jsonb_build_object('by', $2::text))
                     where id = any($1)",
                )
                .bind(&ids)
                .bind(actor)
                .execute(&mut *tx)
                .await?;
            }
            JobAction::Discard => {
                sqlx::query("delete from apalis.jobs where id = any($1)")
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "insert into job_event (job_id, action, actor) select unnest($1::text[]), $2, $3",
        )
        .bind(&ids)
        .bind(action.as_str())
        .bind(actor)
        .execute(&mut *tx)
        .await?;
    }
    let queues_to_wake: Vec<Queue> = if action == JobAction::Retry {
        let names: Vec<String> =
            sqlx::query_scalar("select distinct job_type from apalis.jobs where id = any($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
        names.iter().filter_map(|n| n.parse().ok()).collect()
    } else {
        Vec::new()
    };
    Ok(ActionResult {
        affected: ids,
        skipped,
        queues_to_wake,
        operations_changed,
    })
}

/// A live worker process: its queues, concurrency per queue, heartbeat and the jobs it holds now.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WorkerRow {
    pub instance: String,
    pub host: String,
    pub pid: i32,
    pub queues: serde_json::Value,
    pub concurrency: serde_json::Value,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub running: i64,
}

/// Worker processes seen within the last `within_s` seconds.
pub async fn list_workers(pool: &PgPool, within_s: i64) -> Result<Vec<WorkerRow>, sqlx::Error> {
    sqlx::query_as(
        "select p.instance, p.host, p.pid, p.queues, p.concurrency, p.started_at, p.last_seen,
                (select count(*) from apalis.jobs j where j.lock_by like p.instance || '-%'
                    and j.status in ('Queued', 'Running')) as running
         from worker_process p where p.last_seen > now() - $1 * interval '1 second'
         order by p.started_at, p.instance limit 500",
    )
    .bind(within_s)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ScheduleRow {
    pub name: String,
    pub cron_expr: String,
    pub queue: String,
    pub kind: String,
    pub missed_policy: String,
    pub origin: String,
    pub enabled: bool,
    pub next_tick_at: DateTime<Utc>,
    pub last_tick_at: Option<DateTime<Utc>>,
    pub last_fired_at: Option<DateTime<Utc>>,
}

pub async fn list_schedules(pool: &PgPool) -> Result<Vec<ScheduleRow>, sqlx::Error> {
    sqlx::query_as(
        "select name, cron_expr, queue, kind, missed_policy, origin, enabled, next_tick_at, last_tick_at,
                last_fired_at from cron_schedule order by name",
    )
    .fetch_all(pool)
    .await
}

/// Jobs finished per queue per minute over the last `minutes` minutes (oldest minute first).
pub async fn throughput(
    pool: &PgPool,
    minutes: i32,
) -> Result<Vec<(String, DateTime<Utc>, i64)>, sqlx::Error> {
    sqlx::query_as(
        "select job_type, date_trunc('minute', done_at) as minute, count(*) from apalis.jobs
         where status = 'Done' and done_at > date_trunc('minute', now()) - $1 * interval '1 minute'
         group by 1, 2 order by 2, 1",
    )
    .bind(minutes)
    .fetch_all(pool)
    .await
}

/// Job events (retries, cancels, rescues, …) of a job, oldest first.
pub async fn job_events(
    pool: &PgPool,
    id: &str,
) -> Result<Vec<(String, String, Option<String>, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as("select action, actor, detail, created_at from job_event where job_id = $1 order by job_event_id")
        .bind(id)
        .fetch_all(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_arguments_are_redacted_at_any_depth_and_nothing_else_is() {
        let mut args = serde_json::json!({
            "to": "ada@example.com",
            "context": {"code_sealed": "v1.abc", "minutes": 15},
            "messages": [{"context": {"code": "123456", "name": "Ada"}}],
        });
        redact_args(&mut args);
        assert_eq!(
            args,
            serde_json::json!({
                "to": "ada@example.com",
                "context": {"code_sealed": REDACTED, "minutes": 15},
                "messages": [{"context": {"code": REDACTED, "name": "Ada"}}],
            })
        );
    }
}
