//! Rendering dashboard pages from `templates/admin/` (minijinja, HTML autoescaped), and the throughput chart.

use std::sync::LazyLock;

use poem::{http::StatusCode, IntoResponse, Response};

use super::admin::AdminSession;

/// The templates are compiled into the binary so the dashboard always matches the code serving it.
static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    for (name, source) in [
        (
            "base.html",
            include_str!("../../../templates/admin/base.html"),
        ),
        (
            "login.html",
            include_str!("../../../templates/admin/login.html"),
        ),
        (
            "message.html",
            include_str!("../../../templates/admin/message.html"),
        ),
        (
            "overview.html",
            include_str!("../../../templates/admin/overview.html"),
        ),
        (
            "jobs.html",
            include_str!("../../../templates/admin/jobs.html"),
        ),
        (
            "confirm.html",
            include_str!("../../../templates/admin/confirm.html"),
        ),
        (
            "job.html",
            include_str!("../../../templates/admin/job.html"),
        ),
        (
            "schedules.html",
            include_str!("../../../templates/admin/schedules.html"),
        ),
        (
            "workers.html",
            include_str!("../../../templates/admin/workers.html"),
        ),
        (
            "mailbox.html",
            include_str!("../../../templates/admin/mailbox.html"),
        ),
        (
            "operation.html",
            include_str!("../../../templates/admin/operation.html"),
        ),
        (
            "audit.html",
            include_str!("../../../templates/admin/audit.html"),
        ),
    ] {
        if let Err(error) = env.add_template(name, source) {
            tracing::error!(%error, template = name, "dashboard template does not compile");
        }
    }
    env
});

/// Renders `template` with `context` (a JSON object; `admin`, `csrf` and `page` are added).
pub fn page(
    status: StatusCode,
    template: &str,
    admin: Option<&AdminSession>,
    page: &str,
    mut context: serde_json::Value,
) -> Response {
    if let Some(map) = context.as_object_mut() {
        map.insert(
            "admin".into(),
            serde_json::to_value(admin).unwrap_or_default(),
        );
        map.insert(
            "csrf".into(),
            serde_json::json!(admin.map(|a| a.csrf.clone()).unwrap_or_default()),
        );
        map.insert(
            "readonly".into(),
            serde_json::json!(admin.is_none_or(|a| a.readonly)),
        );
        map.insert("page".into(), serde_json::json!(page));
    }
    let rendered = TEMPLATES
        .get_template(template)
        .and_then(|t| t.render(context));
    match rendered {
        Ok(html) => poem::web::Html(html).with_status(status).into_response(),
        Err(error) => {
            tracing::error!(%error, template, "dashboard page failed to render");
            poem::web::Html("<h1>Error</h1><p>The page could not be rendered.</p>".to_owned())
                .with_status(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
    }
}

pub fn message_page(
    admin: Option<&AdminSession>,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    page(
        status,
        "message.html",
        admin,
        "",
        serde_json::json!({"title": title, "message": message}),
    )
}

pub fn redirect(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header("location", location)
        .finish()
}

/// Bars of jobs finished per minute; `values` are (label, count), oldest first.
pub fn chart(values: &[(String, i64)]) -> serde_json::Value {
    const WIDTH: i64 = 640;
    const HEIGHT: i64 = 120;
    let max = values.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let count = i64::try_from(values.len()).unwrap_or(1).max(1);
    let slot = WIDTH / count;
    let bars: Vec<serde_json::Value> = values
        .iter()
        .enumerate()
        .map(|(i, (label, value))| {
            let h = value * (HEIGHT - 16) / max;
            serde_json::json!({
                "x": i64::try_from(i).unwrap_or(0) * slot + 2, "y": HEIGHT - h, "w": (slot - 4).max(1), "h": h,
                "label": label, "value": value,
            })
        })
        .collect();
    serde_json::json!({"width": WIDTH, "height": HEIGHT, "max": max, "bars": bars})
}
