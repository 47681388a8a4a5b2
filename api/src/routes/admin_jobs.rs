//! `/api/v1/admin/{queues,jobs,schedules,workers,audit-log}`: the job engine for scripts, with the same actions as
//! the dashboard. Reading needs an admin role; acting needs the `admin` role and is recorded in the audit log.

use paycore_jobs::{
    admin_audit::{self, Actor},
    engine::{
        control::{self, JobAction, JobFilter, JobState},
        scheduler, Queue,
    },
};
use poem::Request;
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    Object, OpenApi,
};

use super::{parse_id, ApiTag};
use crate::payload::Body;
use crate::{
    error::{ApiError, ApiResult},
    security::BearerAuth,
    AppState,
};

pub struct AdminJobsApi {
    pub state: AppState,
}

/// The filter every job listing and bulk action takes.
#[derive(Debug, Clone, Default, Object)]
pub struct JobFilterBody {
    #[oai(nullable)]
    pub queue: Option<String>,
    /// pending, scheduled, running, retrying, dead, cancelled or done.
    #[oai(nullable)]
    pub state: Option<String>,
    #[oai(nullable)]
    pub kind: Option<String>,
    #[oai(nullable)]
    pub operation_id: Option<String>,
    /// Text searched in the job's arguments.
    #[oai(nullable)]
    pub args_contains: Option<String>,
    #[oai(nullable)]
    pub run_after: Option<chrono::DateTime<chrono::Utc>>,
    #[oai(nullable)]
    pub run_before: Option<chrono::DateTime<chrono::Utc>>,
}

/// Longest text searched for in job arguments.
const ARGS_SEARCH_CHARS_MAX: usize = 200;

impl JobFilterBody {
    pub fn parse(&self) -> Result<JobFilter, ApiError> {
        let queue = match self.queue.as_deref().filter(|q| !q.is_empty()) {
            None => None,
            Some(raw) => Some(
                raw.parse::<Queue>()
                    .map_err(|e| ApiError::invalid("invalid_parameter", e, Some("queue")))?,
            ),
        };
        let state = match self.state.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(JobState::parse(raw).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_parameter",
                    "state must be pending, scheduled, running, retrying, dead, cancelled or done.",
                    Some("state"),
                )
            })?),
        };
        let operation_id = match self.operation_id.as_deref().filter(|o| !o.is_empty()) {
            None => None,
            Some(raw) => Some(parse_id(raw, "operation_id")?),
        };
        let args_contains = self.args_contains.clone().filter(|t| !t.is_empty());
        if args_contains
            .as_ref()
            .is_some_and(|t| t.chars().count() > ARGS_SEARCH_CHARS_MAX)
        {
            return Err(ApiError::invalid(
                "invalid_parameter",
                "args_contains is too long.",
                Some("args_contains"),
            ));
        }
        Ok(JobFilter {
            ids: Vec::new(),
            queue,
            state,
            kind: self.kind.clone().filter(|k| !k.is_empty()),
            operation_id,
            args_contains,
            run_after: self.run_after,
            run_before: self.run_before,
        })
    }
}

#[derive(Debug, Object)]
pub struct JobBody {
    pub id: String,
    pub queue: String,
    pub state: String,
    #[oai(nullable)]
    pub kind: Option<String>,
    #[oai(nullable)]
    pub operation_id: Option<String>,
    #[oai(nullable)]
    pub args: Option<serde_json::Value>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: chrono::DateTime<chrono::Utc>,
    #[oai(nullable)]
    pub worker: Option<String>,
    #[oai(nullable)]
    pub locked_at: Option<chrono::DateTime<chrono::Utc>>,
    #[oai(nullable)]
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    #[oai(nullable)]
    pub last_result: Option<serde_json::Value>,
}

impl From<control::JobSummary> for JobBody {
    fn from(job: control::JobSummary) -> Self {
        Self {
            id: job.id,
            queue: job.queue,
            state: job.state,
            kind: job.kind,
            operation_id: job.operation_id,
            args: job.args,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            run_at: job.run_at,
            worker: job.lock_by,
            locked_at: job.lock_at,
            finished_at: job.done_at,
            last_result: job.last_result,
        }
    }
}

#[derive(Debug, Object)]
pub struct AttemptBody {
    pub attempt: i32,
    pub worker: String,
    pub outcome: String,
    #[oai(nullable)]
    pub error: Option<String>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    #[oai(nullable)]
    pub retry_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Object)]
pub struct JobEventBody {
    pub action: String,
    pub actor: String,
    #[oai(nullable)]
    pub detail: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Object)]
pub struct JobDetailBody {
    pub job: JobBody,
    pub attempts: Vec<AttemptBody>,
    pub events: Vec<JobEventBody>,
}

#[derive(Debug, Object)]
pub struct JobPage {
    pub data: Vec<JobBody>,
    pub has_more: bool,
    /// How many jobs match the filter in all.
    pub total: i64,
}

#[derive(Debug, Object)]
pub struct ActionResultBody {
    pub action: String,
    pub affected: Vec<String>,
    /// Matching jobs the action could not apply to (running, or in a state it does not take).
    pub skipped: i64,
}

#[derive(Debug, Object)]
pub struct BulkActionRequest {
    /// retry, cancel or discard.
    pub action: String,
    pub filter: JobFilterBody,
    /// The number of matching jobs the caller saw; if it changed, nothing is done (409).
    pub expected_count: i64,
}

#[derive(Debug, Object)]
pub struct QueueBody {
    pub queue: String,
    pub counts: std::collections::BTreeMap<String, i64>,
    #[oai(nullable)]
    pub oldest_due_job_age_ms: Option<i64>,
}

#[derive(Debug, Object)]
pub struct ScheduleBody {
    pub name: String,
    pub cron: String,
    pub queue: String,
    pub kind: String,
    pub missed_tick_policy: String,
    pub origin: String,
    pub enabled: bool,
    pub next_tick_at: chrono::DateTime<chrono::Utc>,
    #[oai(nullable)]
    pub last_tick_at: Option<chrono::DateTime<chrono::Utc>>,
    #[oai(nullable)]
    pub last_fired_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Object)]
pub struct ScheduleRunBody {
    pub schedule: String,
    pub job_id: String,
}

#[derive(Debug, Object)]
pub struct WorkerBody {
    pub instance: String,
    pub host: String,
    pub pid: i32,
    pub queues: serde_json::Value,
    pub concurrency: serde_json::Value,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub last_heartbeat_at: chrono::DateTime<chrono::Utc>,
    pub running_jobs: i64,
}

#[derive(Debug, Object)]
pub struct AuditEntryBody {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub targets: serde_json::Value,
    pub detail: serde_json::Value,
    #[oai(nullable)]
    pub ip: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Worker processes count as live for this long after their last heartbeat.
pub const WORKER_LIVE_WINDOW_S: i64 = 60;

pub fn actor(
    caller: &paycore_jobs::domains::identity::auth::Principal,
    request: &Request,
) -> Actor {
    Actor {
        user_id: caller.user_id,
        email: caller.email.clone(),
        ip: request
            .remote_addr()
            .as_socket_addr()
            .map(|a| a.ip().to_string()),
    }
}

/// Applies an action and records it in the audit log, in one transaction.
pub async fn act(
    state: &AppState,
    actor: &Actor,
    action: JobAction,
    filter: &JobFilter,
    detail: serde_json::Value,
) -> Result<control::ActionResult, ApiError> {
    let mut tx = state.pool.begin().await?;
    let result = control::apply_action_tx(&mut tx, action, filter, &actor.label()).await?;
    admin_audit::record_tx(
        &mut tx,
        actor,
        &format!("jobs.{}", action.as_str()),
        &result.affected,
        &detail,
    )
    .await?;
    tx.commit().await?;
    result.after_commit(&state.pool).await;
    Ok(result)
}

pub async fn run_schedule(state: &AppState, actor: &Actor, name: &str) -> Result<String, ApiError> {
    let job_id = scheduler::trigger_now(&state.pool, name)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("schedule_not_found", "No such schedule."))?;
    admin_audit::record(
        &state.pool,
        actor,
        "schedule.run",
        &[name.to_owned()],
        &serde_json::json!({"job_id": job_id}),
    )
    .await?;
    Ok(job_id)
}

fn parse_action(raw: &str) -> Result<JobAction, ApiError> {
    JobAction::parse(raw).ok_or_else(|| {
        ApiError::invalid(
            "invalid_parameter",
            "action must be retry, cancel or discard.",
            Some("action"),
        )
    })
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "ApiTag::Admin")]
impl AdminJobsApi {
    /// Every queue with its jobs counted by state and the age of its oldest due job.
    #[oai(path = "/queues", method = "get")]
    async fn queues(&self, caller: BearerAuth) -> ApiResult<Json<Vec<QueueBody>>> {
        caller.require_admin_read()?;
        let stats = control::queue_stats(&self.state.pool).await?;
        Ok(Json(
            stats
                .into_iter()
                .map(|q| QueueBody {
                    queue: q.queue,
                    counts: q.counts,
                    oldest_due_job_age_ms: q.oldest_due_age_ms,
                })
                .collect(),
        ))
    }

    /// Jobs matching a filter, newest first.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/jobs", method = "get")]
    async fn jobs(
        &self,
        caller: BearerAuth,
        queue: Query<Option<String>>,
        state: Query<Option<String>>,
        kind: Query<Option<String>>,
        operation_id: Query<Option<String>>,
        args_contains: Query<Option<String>>,
        run_after: Query<Option<chrono::DateTime<chrono::Utc>>>,
        run_before: Query<Option<chrono::DateTime<chrono::Utc>>>,
        starting_after: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<JobPage>> {
        caller.require_admin_read()?;
        let filter = JobFilterBody {
            queue: queue.0,
            state: state.0,
            kind: kind.0,
            operation_id: operation_id.0,
            args_contains: args_contains.0,
            run_after: run_after.0,
            run_before: run_before.0,
        }
        .parse()?;
        let limit = limit.0.unwrap_or(20);
        if !(1..=control::LIST_PAGE_MAX).contains(&limit) {
            return Err(ApiError::invalid(
                "invalid_parameter",
                "limit must be 1 to 100.",
                Some("limit"),
            ));
        }
        let mut jobs = control::list_jobs(
            &self.state.pool,
            &filter,
            starting_after.0.as_deref(),
            limit + 1,
        )
        .await?;
        let has_more = jobs.len() as i64 > limit;
        jobs.truncate(limit as usize);
        let total = control::count_jobs(&self.state.pool, &filter).await?;
        Ok(Json(JobPage {
            data: jobs.into_iter().map(Into::into).collect(),
            has_more,
            total,
        }))
    }

    /// One job with every attempt and event.
    #[oai(path = "/jobs/:job_id", method = "get")]
    async fn job(
        &self,
        caller: BearerAuth,
        job_id: Path<String>,
    ) -> ApiResult<Json<JobDetailBody>> {
        caller.require_admin_read()?;
        let pool = &self.state.pool;
        let job = control::get_job(pool, &job_id)
            .await?
            .ok_or_else(|| ApiError::not_found("job_not_found", "No such job."))?;
        let attempts = control::job_attempts(pool, &job_id).await?;
        let events = control::job_events(pool, &job_id).await?;
        Ok(Json(JobDetailBody {
            job: job.into(),
            attempts: attempts
                .into_iter()
                .map(|a| AttemptBody {
                    attempt: a.attempt,
                    worker: a.worker,
                    outcome: a.outcome,
                    error: a.error,
                    started_at: a.started_at,
                    finished_at: a.finished_at,
                    retry_at: a.retry_at,
                })
                .collect(),
            events: events
                .into_iter()
                .map(|(action, actor, detail, at)| JobEventBody {
                    action,
                    actor,
                    detail,
                    at,
                })
                .collect(),
        }))
    }

    /// Retry, cancel or discard one job.
    #[oai(path = "/jobs/:job_id/:action", method = "post")]
    async fn job_action(
        &self,
        caller: BearerAuth,
        request: &Request,
        job_id: Path<String>,
        action: Path<String>,
    ) -> ApiResult<Json<ActionResultBody>> {
        let principal = caller.require_admin_write()?;
        let action = parse_action(&action)?;
        if control::get_job(&self.state.pool, &job_id).await?.is_none() {
            return Err(ApiError::not_found("job_not_found", "No such job."));
        }
        let result = act(
            &self.state,
            &actor(principal, request),
            action,
            &JobFilter::by_id(job_id.0.clone()),
            serde_json::json!({"job_id": job_id.0}),
        )
        .await?;
        if result.affected.is_empty() {
            return Err(ApiError::conflict(
                "job_state_does_not_allow_action",
                format!("The job's state does not allow {}.", action.as_str()),
            ));
        }
        Ok(Json(ActionResultBody {
            action: action.as_str().into(),
            affected: result.affected,
            skipped: result.skipped,
        }))
    }

    /// Apply an action to every job matching a filter. `expected_count` must equal the current number of matching
    /// jobs, so that a script (like a person) confirms what it is about to change.
    #[oai(path = "/jobs/actions", method = "post")]
    async fn bulk_action(
        &self,
        caller: BearerAuth,
        request: &Request,
        body: Body<BulkActionRequest>,
    ) -> ApiResult<Json<ActionResultBody>> {
        let principal = caller.require_admin_write()?;
        let action = parse_action(&body.action)?;
        let filter = body.filter.parse()?;
        let count = control::count_jobs(&self.state.pool, &filter).await?;
        if count != body.expected_count {
            return Err(ApiError::conflict(
                "count_changed",
                format!(
                    "{count} jobs match the filter now, not {}; check and confirm again.",
                    body.expected_count
                ),
            ));
        }
        let detail = serde_json::json!({"filter": format!("{filter:?}"), "matched": count});
        let result = act(
            &self.state,
            &actor(principal, request),
            action,
            &filter,
            detail,
        )
        .await?;
        Ok(Json(ActionResultBody {
            action: action.as_str().into(),
            affected: result.affected,
            skipped: result.skipped,
        }))
    }

    /// Every cron schedule with its last and next tick.
    #[oai(path = "/schedules", method = "get")]
    async fn schedules(&self, caller: BearerAuth) -> ApiResult<Json<Vec<ScheduleBody>>> {
        caller.require_admin_read()?;
        let rows = control::list_schedules(&self.state.pool).await?;
        Ok(Json(
            rows.into_iter()
                .map(|s| ScheduleBody {
                    name: s.name,
                    cron: s.cron_expr,
                    queue: s.queue,
                    kind: s.kind,
                    missed_tick_policy: s.missed_policy,
                    origin: s.origin,
                    enabled: s.enabled,
                    next_tick_at: s.next_tick_at,
                    last_tick_at: s.last_tick_at,
                    last_fired_at: s.last_fired_at,
                })
                .collect(),
        ))
    }

    /// Enqueue a schedule's job now.
    #[oai(path = "/schedules/:name/run", method = "post")]
    async fn run_now(
        &self,
        caller: BearerAuth,
        request: &Request,
        name: Path<String>,
    ) -> ApiResult<Json<ScheduleRunBody>> {
        let principal = caller.require_admin_write()?;
        let job_id = run_schedule(&self.state, &actor(principal, request), &name).await?;
        Ok(Json(ScheduleRunBody {
            schedule: name.0,
            job_id,
        }))
    }

    /// Live worker processes, their queues, concurrency and last heartbeat.
    #[oai(path = "/workers", method = "get")]
    async fn workers(&self, caller: BearerAuth) -> ApiResult<Json<Vec<WorkerBody>>> {
        caller.require_admin_read()?;
        let rows = control::list_workers(&self.state.pool, WORKER_LIVE_WINDOW_S).await?;
        Ok(Json(
            rows.into_iter()
                .map(|w| WorkerBody {
                    instance: w.instance,
                    host: w.host,
                    pid: w.pid,
                    queues: w.queues,
                    concurrency: w.concurrency,
                    started_at: w.started_at,
                    last_heartbeat_at: w.last_seen,
                    running_jobs: w.running,
                })
                .collect(),
        ))
    }

    /// What admins did, newest first.
    #[oai(path = "/audit-log", method = "get")]
    async fn audit_log(
        &self,
        caller: BearerAuth,
        before: Query<Option<i64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<Vec<AuditEntryBody>>> {
        caller.require_admin_read()?;
        let entries = admin_audit::list(&self.state.pool, before.0, limit.0.unwrap_or(50)).await?;
        Ok(Json(
            entries
                .into_iter()
                .map(|e| AuditEntryBody {
                    id: e.admin_audit_id,
                    actor: e.actor_email,
                    action: e.action,
                    targets: e.targets,
                    detail: e.detail,
                    ip: e.ip,
                    at: e.created_at,
                })
                .collect(),
        ))
    }
}
