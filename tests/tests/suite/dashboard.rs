//! The admin dashboard and admin API: a real headless Chromium drives the pages (tests/browser/dashboard.mjs);
//! plain HTTP checks CSRF, access control and the audit log.

use std::time::Duration;

use paycore_jobs::domains::identity::auth::Role;
use paycore_jobs::engine::{builtin::Probe, control, enqueue_tx, NewJob, Queue};
use paycore_tests::{
    app::{error_code, repo_root, spawn_app, TestApp},
    eventually, probe,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

async fn enqueue(app: &TestApp, job: NewJob) -> String {
    let queue = job.queue;
    let mut tx = app.db.pool.begin().await.expect("begin");
    let id = enqueue_tx(&mut tx, job).await.expect("enqueue");
    tx.commit().await.expect("commit");
    paycore_jobs::engine::wake(&app.db.pool, &[queue]).await;
    id
}

pub(crate) async fn admin(app: &TestApp, role: Role) -> String {
    let email = format!(
        "{}-{}@example.com",
        role.as_str(),
        uuid::Uuid::new_v4().simple()
    );
    paycore_jobs::domains::wallet::ensure_admin(&app.db.pool, &email, PASSWORD, role)
        .await
        .expect("admin");
    email
}

/// A dead job whose retry succeeds: its first attempt fails permanently.
async fn dead_job(app: &TestApp, key: &str) -> String {
    let id = enqueue(
        app,
        NewJob::new(&Probe {
            fail_times: 1,
            permanent: true,
            ..probe(key)
        })
        .expect("job"),
    )
    .await;
    eventually(Duration::from_secs(10), "the job to die", || async {
        let job = control::get_job(&app.db.pool, &id).await.expect("job")?;
        (job.state == "dead").then_some(())
    })
    .await;
    id
}

#[tokio::test]
async fn an_admin_finds_retries_and_bulk_cancels_jobs_in_a_real_browser_and_read_only_admins_cannot(
) {
    let app = spawn_app().await;
    let admin_email = admin(&app, Role::Admin).await;
    let readonly_email = admin(&app, Role::AdminReadonly).await;
    let user = app.register_user("plain").await;
    let dead = dead_job(&app, "dead-marker").await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    for i in 0..3 {
        enqueue(
            &app,
            NewJob::new(&probe(&format!("bulk-marker-{i}")))
                .expect("job")
                .run_at(later),
        )
        .await;
    }
    // A scheduled job that does not match the filter must survive the bulk cancel.
    let bystander = enqueue(
        &app,
        NewJob::new(&probe("bystander")).expect("job").run_at(later),
    )
    .await;

    // Some finished work, so the overview's throughput has something to show.
    let mut finished = Vec::new();
    for (i, queue) in [
        Queue::Payments,
        Queue::Emails,
        Queue::Cards,
        Queue::Payments,
        Queue::Kyc,
    ]
    .iter()
    .enumerate()
    {
        finished.push(
            enqueue(
                &app,
                NewJob::new(&probe(&format!("warm-{i}")))
                    .expect("job")
                    .on_queue(*queue),
            )
            .await,
        );
    }
    for id in &finished {
        eventually(Duration::from_secs(10), "warm-up jobs", || async {
            let job = control::get_job(&app.db.pool, id).await.expect("job")?;
            (job.state == "done").then_some(())
        })
        .await;
    }

    let screenshot = repo_root().join("docs/screenshots/overview.png");
    std::fs::create_dir_all(screenshot.parent().expect("dir")).expect("screenshot dir");
    let browser_dir = repo_root().join("tests/browser");
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg(browser_dir.join("dashboard.mjs"))
            .current_dir(&browser_dir)
            .env("BASE_URL", &app.address)
            .env("ADMIN_EMAIL", &admin_email)
            .env("READONLY_EMAIL", &readonly_email)
            .env("USER_EMAIL", &user.email)
            .env("PASSWORD", PASSWORD)
            .env("DEAD_JOB_ID", &dead)
            .env("BULK_MARKER", "bulk-marker")
            .env("BULK_COUNT", "3")
            .env("SCREENSHOT", &screenshot)
            .output(),
    )
    .await
    .expect("the browser run finishes in time")
    .expect("node runs (the test command installs Chromium and tests/browser's packages)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all dashboard checks passed"), "{stdout}");

    // What the browser did is in the database.
    assert_eq!(
        control::get_job(&app.db.pool, &dead)
            .await
            .expect("job")
            .expect("exists")
            .state,
        "done"
    );
    assert_eq!(
        control::get_job(&app.db.pool, &bystander)
            .await
            .expect("job")
            .expect("exists")
            .state,
        "scheduled"
    );
    let actions: Vec<(String, String, Value)> = sqlx::query_as(
        "select action, actor_email, targets from admin_audit order by admin_audit_id",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("audit");
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(
        (actions[0].0.as_str(), actions[0].1.as_str()),
        ("jobs.retry", admin_email.as_str())
    );
    assert_eq!(actions[0].2, json!([dead]));
    assert_eq!(actions[1].0, "jobs.cancel");
    assert_eq!(actions[1].2.as_array().map(Vec::len), Some(3));
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG"),
        "the overview screenshot is a PNG"
    );
}

pub(crate) async fn dashboard_session(app: &TestApp, email: &str) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = client
        .post(app.url("/admin/login"))
        .form(&[("email", email), ("password", PASSWORD)])
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    (client, cookie.split(';').next().expect("pair").to_owned())
}

#[tokio::test]
async fn a_dashboard_action_without_the_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let email = admin(&app, Role::Admin).await;
    let dead = dead_job(&app, "csrf").await;
    let (client, cookie) = dashboard_session(&app, &email).await;
    for form in [vec![], vec![("csrf", "forged-token")]] {
        let response = client
            .post(app.url(&format!("/admin/jobs/{dead}/retry")))
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(
        control::get_job(&app.db.pool, &dead)
            .await
            .expect("job")
            .expect("exists")
            .state,
        "dead"
    );
    let audited: i64 = sqlx::query_scalar("select count(*) from admin_audit")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(audited, 0);
    // With the page's token it works.
    let page = client
        .get(app.url(&format!("/admin/jobs/{dead}")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("token in page");
    let response = client
        .post(app.url(&format!("/admin/jobs/{dead}/retry")))
        .header("cookie", &cookie)
        .form(&[("csrf", token)])
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // A signed-out session's cookie no longer works.
    client
        .post(app.url("/admin/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", token)])
        .send()
        .await
        .expect("logout");
    let after = client
        .get(app.url("/admin/jobs"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_admin_api_is_closed_to_users_and_visitors_and_audits_every_action() {
    let app = spawn_app().await;
    let user = app.register_user("plain").await;
    let readonly = app.admin_token(Role::AdminReadonly).await;
    let admin = app.admin_token(Role::Admin).await;
    for path in [
        "/api/v1/admin/queues",
        "/api/v1/admin/jobs",
        "/api/v1/admin/schedules",
        "/api/v1/admin/workers",
        "/api/v1/admin/audit-log",
    ] {
        let anonymous = app.client.get(app.url(path)).send().await.expect("request");
        assert_eq!(
            error_code(anonymous, StatusCode::UNAUTHORIZED).await,
            "unauthenticated",
            "{path}"
        );
        let as_user = app.get(path, &user.access_token).await;
        assert_eq!(
            error_code(as_user, StatusCode::FORBIDDEN).await,
            "admin_required",
            "{path}"
        );
        assert_eq!(
            app.get(path, &readonly).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
    let dead = dead_job(&app, "api-dead").await;
    let refused = app
        .post(
            &format!("/api/v1/admin/jobs/{dead}/retry"),
            Some(&readonly),
            &json!({}),
        )
        .await;
    assert_eq!(
        error_code(refused, StatusCode::FORBIDDEN).await,
        "admin_required"
    );

    let listed = app
        .get_json("/api/v1/admin/jobs?state=dead&queue=maintenance", &admin)
        .await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["data"][0]["id"], dead.as_str());
    let detail = app
        .get_json(&format!("/api/v1/admin/jobs/{dead}"), &admin)
        .await;
    assert_eq!(detail["attempts"][0]["outcome"], "permanent");

    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    for i in 0..2 {
        enqueue(
            &app,
            NewJob::new(&probe(&format!("api-bulk-{i}")))
                .expect("job")
                .on_queue(Queue::Emails)
                .run_at(later),
        )
        .await;
    }
    let stale = app
        .post(
            "/api/v1/admin/jobs/actions",
            Some(&admin),
            &json!({"action": "cancel", "filter": {"queue": "emails", "state": "scheduled"}, "expected_count": 5}),
        )
        .await;
    assert_eq!(
        error_code(stale, StatusCode::CONFLICT).await,
        "count_changed"
    );
    let done = app
        .post(
            "/api/v1/admin/jobs/actions",
            Some(&admin),
            &json!({"action": "cancel", "filter": {"queue": "emails", "state": "scheduled"}, "expected_count": 2}),
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    let done: Value = done.json().await.expect("json");
    assert_eq!(done["affected"].as_array().map(Vec::len), Some(2));
    let retried = app
        .post(
            &format!("/api/v1/admin/jobs/{dead}/retry"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(retried.status(), StatusCode::OK);
    let run = app
        .post(
            "/api/v1/admin/schedules/engine.prune/run",
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(
        run.status(),
        StatusCode::NOT_FOUND,
        "schedules exist once a scheduler has synced them"
    );
    paycore_jobs::engine::scheduler::sync_schedules(&app.db.pool, &paycore_jobs::app::schedules())
        .await
        .expect("sync");
    let run = app
        .post(
            "/api/v1/admin/schedules/engine.prune/run",
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(run.status(), StatusCode::OK);

    let audit = app.get_json("/api/v1/admin/audit-log", &readonly).await;
    let actions: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["schedule.run", "jobs.retry", "jobs.cancel"]);
    let removed = sqlx::query("delete from admin_audit")
        .execute(&app.db.pool)
        .await;
    assert!(removed.is_err(), "the audit log is append-only");
}

#[tokio::test]
async fn the_dashboard_shows_the_development_mailbox() {
    let app = spawn_app().await;
    let email = admin(&app, Role::AdminReadonly).await;
    let user = app.register_user("mailbox").await;
    let (client, cookie) = dashboard_session(&app, &email).await;
    let page = paycore_tests::eventually(
        std::time::Duration::from_secs(20),
        "the verification mail on the mailbox page",
        || async {
            let html = client
                .get(app.url("/admin/mailbox"))
                .header("cookie", &cookie)
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("html");
            html.contains(&user.email).then_some(html)
        },
    )
    .await;
    assert!(page.contains("Verify your e-mail address"));
    // Not for visitors.
    let visitor = client
        .get(app.url("/admin/mailbox"))
        .send()
        .await
        .expect("page");
    assert_ne!(visitor.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_admin_with_two_step_sign_in_needs_the_emailed_code_for_the_dashboard_too() {
    let app = spawn_app().await;
    let email = admin(&app, Role::Admin).await;
    sqlx::query(
        "update app_user set two_step_login = true, email_verified_at = now() where email = $1",
    )
    .bind(&email)
    .execute(&app.db.pool)
    .await
    .expect("two-step");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let first = client
        .post(app.url("/admin/login"))
        .form(&[("email", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .expect("login");
    assert_eq!(first.status(), StatusCode::OK, "no session before the code");
    assert!(first.headers().get("set-cookie").is_none());
    let html = first.text().await.expect("html");
    let challenge = html
        .split("name=\"challenge_id\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("challenge id")
        .to_owned();
    // The mailbox keeps the code sealed beside the message (admins see it hidden); the test holds the server secret.
    let sealed: String = paycore_tests::eventually(
        std::time::Duration::from_secs(20),
        "the sign-in code in the dev mailbox",
        || async {
            sqlx::query_scalar::<_, String>(
                "select code_sealed from dev_mailbox where to_address = $1 and template = 'login_code'",
            )
            .bind(&email)
            .fetch_optional(&app.db.pool)
            .await
            .expect("mail")
        },
    )
    .await;
    let key = paycore_jobs::notify::sealed::SealKey::from_config(&app.config);
    let code = paycore_jobs::notify::sealed::open(&key, &sealed).expect("the sealed code opens");
    let wrong = client
        .post(app.url("/admin/login/code"))
        .form(&[("challenge_id", challenge.as_str()), ("code", "000000")])
        .send()
        .await
        .expect("code");
    if code != "000000" {
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let signed_in = client
        .post(app.url("/admin/login/code"))
        .form(&[
            ("challenge_id", challenge.as_str()),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .expect("code");
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert!(signed_in.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .contains("HttpOnly"));
}
