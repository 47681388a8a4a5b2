//! The admin job dashboard at `/admin`: server-rendered pages over the job engine's controls, for admins signed
//! in with their PayCore account. Read-only admins see everything with the buttons disabled, and the server
//! refuses their actions too. Every action needs the session's CSRF token and is written to the audit log.

use std::collections::HashMap;

use paycore_jobs::{
    admin_audit,
    engine::{
        control::{self, JobAction, JobFilter, JobState},
        Queue,
    },
    operation,
};
use poem::{
    get, handler,
    http::{HeaderValue, StatusCode},
    post,
    web::{Data, Form, Path, Query},
    Endpoint, EndpointExt, Request, Response, Route,
};
use serde_json::json;

use crate::{routes::admin_jobs, AppState};

mod admin;
mod render;
mod session;

use admin::AdminSession;
use render::{message_page, page, redirect};
use session::{require_admin, require_writer};

type Params = HashMap<String, String>;

/// Minutes of history in the overview's throughput column and chart.
const THROUGHPUT_MINUTES: i32 = 15;
/// Jobs per dashboard page.
const JOBS_PAGE: i64 = 50;

/// What every dashboard answer tells the browser (docs/security.md §8): never inside a frame (clickjacking), only
/// this origin's stylesheet and forms, no scripts at all, no guessing of content types, and no full URLs (which
/// carry job filters and ids) in the `Referer` of links that leave the dashboard.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
];

/// The dashboard's pages, each answer with [`SECURITY_HEADERS`].
pub fn routes() -> impl Endpoint<Output = Response> {
    pages().after(|result| async move {
        let mut response = result.unwrap_or_else(|error| error.into_response());
        for (name, value) in SECURITY_HEADERS {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        Ok(response)
    })
}

/// The one stylesheet, compiled in like the templates.
#[handler]
fn stylesheet() -> Response {
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .header("cache-control", "public, max-age=300")
        .body(include_str!("../../../templates/admin/admin.css"))
}

fn pages() -> Route {
    Route::new()
        .at("/", get(overview))
        .at("/assets/admin.css", get(stylesheet))
        .at("/login", get(login_page).post(login_submit))
        .at("/login/code", post(login_code))
        .at("/logout", post(logout))
        .at("/jobs", get(jobs_page))
        .at("/jobs/bulk", post(bulk_preview))
        .at("/jobs/bulk/confirm", post(bulk_confirm))
        .at("/jobs/:id", get(job_page))
        .at("/jobs/:id/:action", post(job_action))
        .at("/schedules", get(schedules_page))
        .at("/schedules/:name/run", post(schedule_run))
        .at("/workers", get(workers_page))
        .at("/mailbox", get(mailbox_page))
        .at("/operations", get(operations_page))
        .at("/audit", get(audit_page))
}

fn get_param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The job filter named by query or form parameters.
fn filter_from(params: &Params) -> Result<JobFilter, String> {
    let time = |name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
        get_param(params, name)
            .map(|raw| {
                chrono::DateTime::parse_from_rfc3339(raw)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| format!("{name} must be a time like 2026-11-21T09:00:00Z"))
            })
            .transpose()
    };
    admin_jobs::JobFilterBody {
        queue: get_param(params, "queue").map(str::to_owned),
        state: get_param(params, "state").map(str::to_owned),
        kind: get_param(params, "kind").map(str::to_owned),
        operation_id: get_param(params, "operation_id").map(str::to_owned),
        args_contains: get_param(params, "q").map(str::to_owned),
        run_after: time("run_after")?,
        run_before: time("run_before")?,
    }
    .parse()
    .map_err(|error| match error {
        crate::error::ApiError::BadRequest(body) => body.0.error.message,
        _ => "The filter is not valid.".to_owned(),
    })
}

/// The filter's parameters, to carry through forms and links.
fn filter_pairs(params: &Params) -> Vec<(String, String)> {
    [
        "queue",
        "state",
        "kind",
        "operation_id",
        "q",
        "run_after",
        "run_before",
    ]
    .iter()
    .filter_map(|name| get_param(params, name).map(|v| ((*name).to_owned(), v.to_owned())))
    .collect()
}

fn query_string(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn failure(admin: Option<&AdminSession>, error: impl std::fmt::Display) -> Response {
    tracing::error!(error = %error, "dashboard request failed");
    message_page(
        admin,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Error",
        "Something went wrong; the details are in the log.",
    )
}

macro_rules! admin_or_return {
    ($expr:expr) => {
        match $expr {
            Ok(admin) => admin,
            Err(response) => return response,
        }
    };
}

/// The sign-in page with `context` (an error, a two-step challenge).
fn login_view(status: StatusCode, context: serde_json::Value) -> Response {
    page(status, "login.html", None, "login", context)
}

#[handler]
async fn login_page() -> Response {
    login_view(StatusCode::OK, json!({}))
}

#[handler]
async fn login_submit(
    state: Data<&AppState>,
    request: &Request,
    Form(form): Form<Params>,
) -> Response {
    let email = form.get("email").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    match session::sign_in(&state, request, email, password).await {
        Ok(session::SignIn::Cookie(cookie)) => signed_in(&cookie),
        Ok(session::SignIn::Code { challenge_id }) => login_view(
            StatusCode::OK,
            json!({"challenge_id": challenge_id.to_string()}),
        ),
        Err((status, message)) => login_view(status, json!({"error": message})),
    }
}

fn signed_in(cookie: &str) -> Response {
    let mut response = redirect("/admin");
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert("set-cookie", value);
    }
    response
}

#[handler]
async fn login_code(
    state: Data<&AppState>,
    request: &Request,
    Form(form): Form<Params>,
) -> Response {
    let challenge = form
        .get("challenge_id")
        .and_then(|id| uuid::Uuid::parse_str(id).ok());
    let code = form.get("code").map(|c| c.trim()).unwrap_or("");
    let Some(challenge_id) = challenge else {
        return login_view(StatusCode::BAD_REQUEST, json!({"error": "Sign in again."}));
    };
    match session::sign_in_code(&state, request, challenge_id, code).await {
        Ok(cookie) => signed_in(&cookie),
        Err((status, message)) => login_view(
            status,
            json!({"error": message, "challenge_id": challenge_id.to_string()}),
        ),
    }
}

#[handler]
async fn logout(state: Data<&AppState>, request: &Request, Form(form): Form<Params>) -> Response {
    let admin = admin_or_return!(require_admin(&state, request).await);
    if form.get("csrf").map(String::as_str) != Some(admin.csrf.as_str()) {
        return message_page(
            Some(&admin),
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The form's security token is wrong.",
        );
    }
    if let Err(error) = session::sign_out(&state, &admin).await {
        return failure(Some(&admin), error);
    }
    let mut response = redirect("/admin/login");
    if let Ok(value) = session::clearing_cookie().parse() {
        response.headers_mut().insert("set-cookie", value);
    }
    response
}

#[handler]
async fn overview(
    state: Data<&AppState>,
    request: &Request,
    Query(params): Query<Params>,
) -> Response {
    let admin = admin_or_return!(require_admin(&state, request).await);
    let stats = match control::queue_stats(&state.pool).await {
        Ok(stats) => stats,
        Err(error) => return failure(Some(&admin), error),
    };
    let throughput = match control::throughput(&state.pool, THROUGHPUT_MINUTES).await {
        Ok(rows) => rows,
        Err(error) => return failure(Some(&admin), error),
    };
    let now_minute = chrono::Utc::now().timestamp() / 60;
    let mut per_minute: Vec<(String, i64)> = (0..THROUGHPUT_MINUTES)
        .rev()
        .map(|ago| {
            let minute = chrono::DateTime::from_timestamp((now_minute - i64::from(ago)) * 60, 0)
                .unwrap_or_default();
            (minute.format("%H:%M").to_string(), 0)
        })
        .collect();
    for (_, minute, count) in &throughput {
        let label = minute.format("%H:%M").to_string();
        if let Some(slot) = per_minute.iter_mut().find(|(l, _)| *l == label) {
            slot.1 += count;
        }
    }
    let queues: Vec<serde_json::Value> = stats
        .iter()
        .map(|q| {
            let recent: i64 = throughput
                .iter()
                .filter(|(queue, _, _)| *queue == q.queue)
                .map(|(_, _, c)| c)
                .sum();
            let oldest = q
                .oldest_due_age_ms
                .map(|ms| format!("{}.{:01} s", ms / 1000, (ms % 1000) / 100))
                .unwrap_or_else(|| "—".into());
            json!({"name": q.queue, "counts": q.counts, "recent": recent, "oldest_due": oldest})
        })
        .collect();
    let states: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
    let live = params.get("live").map(String::as_str) != Some("0");
    page(
        StatusCode::OK,
        "overview.html",
        Some(&admin),
        "overview",
        json!({"queues": queues, "states": states, "minutes": THROUGHPUT_MINUTES, "chart": render::chart(&per_minute), "live": live}),
    )
}

#[handler]
async fn jobs_page(
    state: Data<&AppState>,
    request: &Request,
    Query(params): Query<Params>,
) -> Response {
    let admin = admin_or_return!(require_admin(&state, request).await);
    let filter = match filter_from(&params) {
        Ok(filter) => filter,
        Err(message) => {
            return message_page(
                Some(&admin),
                StatusCode::BAD_REQUEST,
                "Invalid filter",
                &message,
            )
        }
    };
    let cursor = get_param(&params, "after");
    let (jobs, total) = match tokio::try_join!(
        control::list_jobs(&state.pool, &filter, cursor, JOBS_PAGE + 1),
        control::count_jobs(&state.pool, &filter)
    ) {
        Ok(found) => found,
        Err(error) => return failure(Some(&admin), error),
    };
    let has_more = jobs.len() as i64 > JOBS_PAGE;
    let jobs: Vec<serde_json::Value> = jobs
        .into_iter()
        .take(JOBS_PAGE as usize)
        .map(|job| {
            let last = job
                .last_result
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default();
            let mut value = serde_json::to_value(&job).unwrap_or_default();
            value["last_result_text"] = json!(last.chars().take(120).collect::<String>());
            value
        })
        .collect();
    let pairs = filter_pairs(&params);
    let next_cursor = has_more.then(|| {
        jobs.last()
            .and_then(|j| j["id"].as_str())
            .unwrap_or_default()
            .to_owned()
    });
    let mut next_pairs = pairs.clone();
    if let Some(cursor) = &next_cursor {
        next_pairs.push(("after".into(), cursor.clone()));
    }
    let filter_view: HashMap<String, String> = pairs.iter().cloned().collect();
    page(
        StatusCode::OK,
        "jobs.html",
        Some(&admin),
        "jobs",
        json!({
            "jobs": jobs, "total": total, "filter": filter_view, "filter_pairs": pairs,
            "states": JobState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "queue_names": Queue::ALL.iter().map(|q| q.name()).collect::<Vec<_>>(),
            "next_cursor": next_cursor, "next_query": query_string(&next_pairs),
            "flash": get_param(&params, "flash"),
        }),
    )
}

fn describe(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        "every job".to_owned()
    } else {
        pairs
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A bulk action form, checked: who, which action, which jobs, how many match now.
struct BulkRequest {
    admin: AdminSession,
    action: JobAction,
    filter: JobFilter,
    count: i64,
}

async fn bulk_request(
    state: &AppState,
    request: &Request,
    form: &Params,
) -> Result<BulkRequest, Response> {
    let admin = require_writer(state, request, form.get("csrf").map(String::as_str)).await?;
    let Some(action) = form.get("action").and_then(|a| JobAction::parse(a)) else {
        return Err(message_page(
            Some(&admin),
            StatusCode::BAD_REQUEST,
            "Invalid action",
            "Choose retry, cancel or discard.",
        ));
    };
    let filter = filter_from(form).map_err(|message| {
        message_page(
            Some(&admin),
            StatusCode::BAD_REQUEST,
            "Invalid filter",
            &message,
        )
    })?;
    let count = control::count_jobs(&state.pool, &filter)
        .await
        .map_err(|error| failure(Some(&admin), error))?;
    Ok(BulkRequest {
        admin,
        action,
        filter,
        count,
    })
}

#[handler]
async fn bulk_preview(
    state: Data<&AppState>,
    request: &Request,
    Form(form): Form<Params>,
) -> Response {
    let bulk = match bulk_request(&state, request, &form).await {
        Ok(bulk) => bulk,
        Err(response) => return response,
    };
    let (admin, action, count) = (bulk.admin, bulk.action, bulk.count);
    let pairs = filter_pairs(&form);
    page(
        StatusCode::OK,
        "confirm.html",
        Some(&admin),
        "jobs",
        json!({"action": action.as_str(), "count": count, "filter_pairs": pairs, "description": describe(&pairs),
               "back_query": query_string(&pairs)}),
    )
}

#[handler]
async fn bulk_confirm(
    state: Data<&AppState>,
    request: &Request,
    Form(form): Form<Params>,
) -> Response {
    let bulk = match bulk_request(&state, request, &form).await {
        Ok(bulk) => bulk,
        Err(response) => return response,
    };
    let (admin, action, filter, count) = (bulk.admin, bulk.action, bulk.filter, bulk.count);
    let expected: Option<i64> = form.get("expected_count").and_then(|c| c.parse().ok());
    let pairs = filter_pairs(&form);
    if Some(count) != expected {
        return message_page(
            Some(&admin),
            StatusCode::CONFLICT,
            "The matching jobs changed",
            &format!("{count} jobs match now, not {}; nothing was done. Review the list and confirm again.", expected.unwrap_or(0)),
        );
    }
    let detail = json!({"filter": describe(&pairs), "matched": count});
    let result = match admin_jobs::act(&state, &admin.actor(), action, &filter, detail).await {
        Ok(result) => result,
        Err(error) => return failure(Some(&admin), format!("{error:?}")),
    };
    let mut back = pairs;
    back.push((
        "flash".into(),
        format!(
            "{}: {} job(s) done, {} skipped.",
            action.as_str(),
            result.affected.len(),
            result.skipped
        ),
    ));
    redirect(&format!("/admin/jobs?{}", query_string(&back)))
}

#[handler]
async fn job_page(
    state: Data<&AppState>,
    request: &Request,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let admin = admin_or_return!(require_admin(&state, request).await);
    let job = match control::get_job(&state.pool, &id).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            return message_page(
                Some(&admin),
                StatusCode::NOT_FOUND,
                "Not found",
                "No such job.",
            )
        }
        Err(error) => return failure(Some(&admin), error),
    };
    let (attempts, events) = match tokio::try_join!(
        control::job_attempts(&state.pool, &id),
        control::job_events(&state.pool, &id)
    ) {
        Ok(found) => found,
        Err(error) => return failure(Some(&admin), error),
    };
    let allowed: Vec<&str> = [JobAction::Retry, JobAction::Cancel, JobAction::Discard]
        .into_iter()
        .filter(|a| action_allowed(*a, &job.state))
        .map(JobAction::as_str)
        .collect();
    let args_json = serde_json::to_string_pretty(&job.args).unwrap_or_default();
    page(
        StatusCode::OK,
        "job.html",
        Some(&admin),
        "jobs",
        json!({"job": job, "attempts": attempts, "events": events, "allowed": allowed, "args_json": args_json,
               "flash": get_param(&params, "flash")}),
    )
}

/// Mirrors `JobAction`'s allowed states, to disable buttons that would do nothing.
fn action_allowed(action: JobAction, state: &str) -> bool {
    match action {
        JobAction::Retry => matches!(state, "dead" | "cancelled" | "retrying" | "scheduled"),
        JobAction::Cancel => matches!(state, "pending" | "scheduled" | "retrying"),
        JobAction::Discard => state != "running",
    }
}

#[handler]
async fn job_action(
    state: Data<&AppState>,
    request: &Request,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Params>,
) -> Response {
    let admin = admin_or_return!(
        require_writer(&state, request, form.get("csrf").map(String::as_str)).await
    );
    let Some(action) = JobAction::parse(&action) else {
        return message_page(
            Some(&admin),
            StatusCode::NOT_FOUND,
            "Not found",
            "No such action.",
        );
    };
    let result = match admin_jobs::act(
        &state,
        &admin.actor(),
        action,
        &JobFilter::by_id(id.clone()),
        json!({"job_id": id}),
    )
    .await
    {
        Ok(result) => result,
        Err(error) => return failure(Some(&admin), format!("{error:?}")),
    };
    let flash = if result.affected.is_empty() {
        format!("{}: the job's state does not allow it.", action.as_str())
    } else {
        format!("{}: done.", action.as_str())
    };
    if action == JobAction::Discard && !result.affected.is_empty() {
        return redirect(&format!("/admin/jobs?flash={}", urlencode(&flash)));
    }
    redirect(&format!(
        "/admin/jobs/{}?flash={}",
        urlencode(&id),
        urlencode(&flash)
    ))
}

/// A page that lists rows: template `<name>.html`, the rows under `<name>`, navigation tab `<name>`.
fn list_page<T: serde::Serialize>(
    admin: &AdminSession,
    name: &str,
    rows: Result<Vec<T>, sqlx::Error>,
) -> Response {
    match rows {
        Ok(rows) => page(
            StatusCode::OK,
            &format!("{name}.html"),
            Some(admin),
            name,
            json!({ name: rows }),
        ),
        Err(error) => failure(Some(admin), error),
    }
}

#[handler]
async fn schedules_page(state: Data<&AppState>, request: &Request) -> Response {
    let admin = admin_or_return!(require_admin(&state, request).await);
    let schedules = control::list_schedules(&state.pool).await;
    list_page(&admin, "schedules", schedules)
}

#[handler]
async fn schedule_run(
    state: Data<&AppState>,
    request: &Request,
    Path(name): Path<String>,
    Form(form): Form<Params>,
) -> Response {
    let admin = admin_or_return!(
        require_writer(&state, request, form.get("csrf").map(String::as_str)).await
    );
    match admin_jobs::run_schedule(&state, &admin.actor(), &name).await {
        Ok(job_id) => redirect(&format!(
            "/admin/jobs/{}?flash={}",
            urlencode(&job_id),
            urlencode(&format!("{name} enqueued."))
        )),
        Err(crate::error::ApiError::NotFound(_)) => message_page(
            Some(&admin),
            StatusCode::NOT_FOUND,
            "Not found",
            "No such schedule.",
        ),
        Err(error) => failure(Some(&admin), format!("{error:?}")),
    }
}

#[handler]
async fn workers_page(state: Data<&AppState>, request: &Request) -> Response {
    let admin = admin_or_return!(require_admin(&state, request).await);
    let workers = control::list_workers(&state.pool, admin_jobs::WORKER_LIVE_WINDOW_S).await;
    list_page(&admin, "workers", workers)
}

#[handler]
async fn mailbox_page(state: Data<&AppState>, request: &Request) -> Response {
    let admin = admin_or_return!(require_admin(&state, request).await);
    let mail = paycore_jobs::notify::email::dev_mailbox(&state.pool, None, 100).await;
    list_page(&admin, "mailbox", mail)
}

#[handler]
async fn operations_page(
    state: Data<&AppState>,
    request: &Request,
    Query(params): Query<Params>,
) -> Response {
    let admin = admin_or_return!(require_admin(&state, request).await);
    let id = get_param(&params, "id").map(str::to_owned);
    let Some(raw) = id.clone() else {
        return page(
            StatusCode::OK,
            "operation.html",
            Some(&admin),
            "operations",
            json!({}),
        );
    };
    let Ok(operation_id) = uuid::Uuid::parse_str(&raw) else {
        return page(
            StatusCode::OK,
            "operation.html",
            Some(&admin),
            "operations",
            json!({"id": raw}),
        );
    };
    let found = match operation::get(&state.pool, operation_id).await {
        Ok(found) => found,
        Err(error) => return failure(Some(&admin), error),
    };
    let filter = JobFilter {
        operation_id: Some(operation_id),
        ..JobFilter::default()
    };
    let jobs = match control::list_jobs(&state.pool, &filter, None, control::LIST_PAGE_MAX).await {
        Ok(jobs) => jobs,
        Err(error) => return failure(Some(&admin), error),
    };
    let request_json = found
        .as_ref()
        .map(|op| serde_json::to_string_pretty(&op.request).unwrap_or_default());
    page(
        StatusCode::OK,
        "operation.html",
        Some(&admin),
        "operations",
        json!({"id": raw, "operation": found, "jobs": jobs, "request_json": request_json}),
    )
}

#[handler]
async fn audit_page(state: Data<&AppState>, request: &Request) -> Response {
    let admin = admin_or_return!(require_admin(&state, request).await);
    match admin_audit::list(&state.pool, None, 200).await {
        Ok(entries) => {
            let entries: Vec<serde_json::Value> = entries
                .into_iter()
                .map(|e| {
                    let mut value = serde_json::to_value(&e).unwrap_or_default();
                    let targets = e.targets.as_array().map(|t| t.len()).unwrap_or(0);
                    let first: Vec<String> = e
                        .targets
                        .as_array()
                        .into_iter()
                        .flatten()
                        .take(3)
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect();
                    value["targets_text"] = json!(if targets > 3 {
                        format!("{} … ({targets} in all)", first.join(", "))
                    } else {
                        first.join(", ")
                    });
                    value["detail_text"] = json!(e.detail.to_string());
                    value
                })
                .collect();
            page(
                StatusCode::OK,
                "audit.html",
                Some(&admin),
                "audit",
                json!({"entries": entries}),
            )
        }
        Err(error) => failure(Some(&admin), error),
    }
}
