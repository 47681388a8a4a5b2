//! One-time codes stay secret from everyone but their recipient: not in job arguments, admin API answers, dashboard
//! pages or the development mailbox as admins see it; production does not start without a way to mail them unless
//! told to; and only development serves the route that reveals a development-mailbox code.

use std::time::Duration;

use paycore_jobs::domains::identity::auth::Role;
use paycore_tests::{
    app::{error_code, spawn_app, spawn_app_with, TestApp},
    eventually, Process, TestDb,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{
    dashboard::{admin, dashboard_session},
    notifications::{app_with_smtp, code_in, mail},
};

const WAIT: Duration = Duration::from_secs(20);

/// Whether `code` shows in `text` as a number of its own. Occurrences right after a digit or a `.` are inside a
/// longer number, such as the fraction of a timestamp, where six given digits turn up by chance.
fn shows(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(at, _)| {
        !text[..at]
            .chars()
            .next_back()
            .is_some_and(|before| before.is_ascii_digit() || before == '.')
    })
}

fn assert_hidden(what: &str, text: &str, codes: &[(&str, String)]) {
    for (name, code) in codes {
        assert!(
            !shows(text, code),
            "the {name} code {code} shows in {what}: {text}"
        );
    }
}

/// A verification, a two-step sign-in and a password reset code, as the recipient read them from the SMTP sink.
async fn three_codes(
    app: &TestApp,
    sink: &paycore_sandbox::smtp::SmtpSink,
) -> Vec<(&'static str, String)> {
    let ada = app.register_user("ada").await;
    let verification = code_in(
        &mail(sink, &ada.email, "Verify your e-mail address")
            .await
            .decoded(),
    );
    let verified = app
        .post(
            "/api/v1/auth/email/verify",
            Some(&ada.access_token),
            &json!({"code": verification}),
        )
        .await;
    assert_eq!(verified.status(), StatusCode::NO_CONTENT);
    let enabled = app
        .client
        .put(app.url("/api/v1/auth/two-step"))
        .bearer_auth(&ada.access_token)
        .json(&json!({"enabled": true, "password": ada.password}))
        .send()
        .await
        .expect("two-step");
    assert_eq!(enabled.status(), StatusCode::NO_CONTENT);
    let login = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"email": ada.email, "password": ada.password}),
        )
        .await;
    assert_eq!(login.status(), StatusCode::ACCEPTED);
    let two_step = code_in(&mail(sink, &ada.email, "Your sign-in code").await.decoded());
    let forgot = app
        .post(
            "/api/v1/auth/password/forgot",
            None,
            &json!({"email": ada.email}),
        )
        .await;
    assert_eq!(forgot.status(), StatusCode::ACCEPTED);
    let reset = code_in(
        &mail(sink, &ada.email, "Reset your password")
            .await
            .decoded(),
    );
    vec![
        ("verification", verification),
        ("two-step", two_step),
        ("reset", reset),
    ]
}

#[tokio::test]
async fn reset_verification_and_two_step_codes_never_appear_in_job_arguments() {
    let (app, sink) = app_with_smtp(&[("OTP_RESEND_INTERVAL_SECONDS", "0")]).await;
    let codes = three_codes(&app, &sink).await;
    let jobs: Vec<(Option<String>, String)> = sqlx::query_as(
        "select job_envelope(job) -> 'args' ->> 'template', convert_from(job, 'UTF8') from apalis.jobs",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("jobs");
    for template in ["email_verification", "login_code", "password_reset"] {
        assert!(
            jobs.iter().any(|(t, _)| t.as_deref() == Some(template)),
            "the {template} e-mail job is there to look at"
        );
    }
    for (_, text) in &jobs {
        assert_hidden("a job's stored arguments", text, &codes);
    }
}

#[tokio::test]
async fn codes_never_appear_in_the_admin_jobs_list_its_search_or_the_job_details() {
    let (app, sink) = app_with_smtp(&[("OTP_RESEND_INTERVAL_SECONDS", "0")]).await;
    let codes = three_codes(&app, &sink).await;
    let admin = app.admin_token(Role::AdminReadonly).await;
    for (name, code) in &codes {
        let found = app
            .get_json(&format!("/api/v1/admin/jobs?args_contains={code}"), &admin)
            .await;
        assert_eq!(
            (
                found["total"].as_i64(),
                found["data"].as_array().map(Vec::len)
            ),
            (Some(0), Some(0)),
            "searching the arguments for the {name} code finds nothing: {found}"
        );
    }
    // The search itself works: the same e-mails are found by their address.
    let list = app
        .get_json("/api/v1/admin/jobs?queue=emails&limit=100", &admin)
        .await;
    assert_hidden("the admin jobs list", &list.to_string(), &codes);
    let jobs = list["data"].as_array().expect("jobs").clone();
    let to = jobs
        .iter()
        .find_map(|job| job["args"]["to"].as_str())
        .expect("an e-mail job");
    let by_address = app
        .get_json(&format!("/api/v1/admin/jobs?args_contains={to}"), &admin)
        .await;
    assert!(
        by_address["total"].as_i64().unwrap_or(0) >= 3,
        "{by_address}"
    );
    let mut redacted = 0;
    for job in &jobs {
        let id = job["id"].as_str().expect("id");
        let detail: Value = app
            .get_json(&format!("/api/v1/admin/jobs/{id}"), &admin)
            .await;
        assert_hidden("a job's detail", &detail.to_string(), &codes);
        if detail["job"]["args"]["context"]["code_sealed"] == "[redacted]" {
            redacted += 1;
        }
    }
    assert_eq!(redacted, 3, "each code's job shows it redacted");
}

#[tokio::test]
async fn codes_never_appear_on_the_dashboard_job_pages_or_its_search() {
    let (app, sink) = app_with_smtp(&[("OTP_RESEND_INTERVAL_SECONDS", "0")]).await;
    let codes = three_codes(&app, &sink).await;
    let email = admin(&app, Role::AdminReadonly).await;
    let (client, cookie) = dashboard_session(&app, &email).await;
    let page = |path: String| {
        let request = client.get(app.url(&path)).header("cookie", &cookie);
        async move {
            let response = request.send().await.expect("page");
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            response.text().await.expect("html")
        }
    };
    for (name, code) in &codes {
        let html = page(format!("/admin/jobs?q={code}")).await;
        assert!(
            html.contains("id=\"no-jobs\""),
            "searching for the {name} code finds no job"
        );
    }
    let ids: Vec<String> = sqlx::query_scalar(
        "select id from apalis.jobs where job_envelope(job) ->> 'kind' like 'email.%'",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("ids");
    assert!(ids.len() >= 3, "the code e-mails' jobs");
    for id in ids {
        let html = page(format!("/admin/jobs/{id}")).await;
        assert_hidden("a dashboard job page", &html, &codes);
    }
}

#[tokio::test]
async fn without_smtp_admins_see_development_mail_with_the_code_hidden_and_only_development_reveals_it(
) {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    let reader = app.admin_token(Role::AdminReadonly).await;
    let mailbox = eventually(WAIT, "the verification mail in the dev mailbox", || async {
        let list = app
            .get_json(&format!("/api/v1/admin/mailbox?to={}", ada.email), &reader)
            .await;
        (list["data"].as_array().map(Vec::len) == Some(1)).then_some(list)
    })
    .await;
    let message_id = mailbox["data"][0]["message_id"].as_i64().expect("id");
    let reveal = format!("/dev/mailbox/{message_id}/code");
    // A read-only admin may read the mailbox but not the code; a visitor neither.
    assert_eq!(
        app.get(&reveal, &reader).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.client
            .get(app.url(&reveal))
            .send()
            .await
            .expect("reveal")
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let writer = app.admin_token(Role::Admin).await;
    let revealed = app.get_json(&reveal, &writer).await;
    let code = revealed["code"].as_str().expect("code").to_owned();
    let verified = app
        .post(
            "/api/v1/auth/email/verify",
            Some(&ada.access_token),
            &json!({"code": code}),
        )
        .await;
    assert_eq!(verified.status(), StatusCode::NO_CONTENT, "the real code");
    let codes = [("verification", code)];
    let message = &mailbox["data"][0];
    assert!(message["text_body"]
        .as_str()
        .expect("text")
        .contains("[hidden]"));
    assert_hidden("the admin mailbox", &mailbox.to_string(), &codes);
    let stored: Vec<String> =
        sqlx::query_scalar("select text_body || subject || html_body from dev_mailbox")
            .fetch_all(&app.db.pool)
            .await
            .expect("mail");
    assert_hidden("stored development mail", &stored.concat(), &codes);
    let email = admin(&app, Role::AdminReadonly).await;
    let (client, cookie) = dashboard_session(&app, &email).await;
    let html = client
        .get(app.url("/admin/mailbox"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains(&ada.email));
    assert_hidden("the dashboard mailbox", &html, &codes);
}

/// What production needs besides mail, for the sandbox's providers.
const PRODUCTION: [(&str, &str); 4] = [
    ("PAYCORE_ENV", "production"),
    ("JWT_SECRET", "a-production-secret-of-forty-characters!"),
    ("PAYSTACK_SECRET_KEY", "sk_test_paycore_sandbox"),
    ("FLUTTERWAVE_SECRET_KEY", "FLWSECK_TEST-paycore-sandbox"),
];

#[tokio::test]
async fn in_production_with_the_development_mailbox_chosen_codes_stay_hidden_and_no_route_reveals_them(
) {
    let mut settings = PRODUCTION.to_vec();
    settings.push(("ALLOW_DEV_MAILBOX_IN_PRODUCTION", "true"));
    let app = spawn_app_with(&settings).await;
    let ada = app.register_user("ada").await;
    let writer = app.admin_token(Role::Admin).await;
    let mailbox = eventually(WAIT, "the verification mail in the dev mailbox", || async {
        let list = app
            .get_json(&format!("/api/v1/admin/mailbox?to={}", ada.email), &writer)
            .await;
        (list["data"].as_array().map(Vec::len) == Some(1)).then_some(list)
    })
    .await;
    assert!(mailbox["data"][0]["text_body"]
        .as_str()
        .expect("text")
        .contains("[hidden]"));
    let message_id = mailbox["data"][0]["message_id"].as_i64().expect("id");
    let reveal = app
        .get(&format!("/dev/mailbox/{message_id}/code"), &writer)
        .await;
    // Not mounted at all: the same answer as any unknown path.
    assert_eq!(
        error_code(reveal, StatusCode::NOT_FOUND).await,
        "route_not_found"
    );
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

#[tokio::test]
async fn production_without_smtp_refuses_to_start_and_starts_with_the_explicit_opt_in() {
    let db = TestDb::new().await.expect("db");
    let port = free_port().to_string();
    let mut env = PRODUCTION.to_vec();
    env.extend_from_slice(&[
        ("PAYSTACK_BASE_URL", "http://127.0.0.1:9/paystack"),
        ("FLUTTERWAVE_BASE_URL", "http://127.0.0.1:9/flutterwave/v3"),
        ("HOST", "127.0.0.1"),
        ("PORT", &port),
    ]);
    let name = "production-without-smtp";
    let mut refused = Process::spawn("paycore-api", name, &db.url, &[], &env);
    let status = refused
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("the api exits instead of serving");
    assert!(!status.success());
    let log_path = paycore_tests::binary("paycore-api")
        .parent()
        .map(|dir| dir.join("test-logs").join(format!("{name}.log")))
        .expect("log path");
    let log = std::fs::read_to_string(log_path).expect("log");
    assert!(
        log.contains("SMTP_HOST must be set") && log.contains("ALLOW_DEV_MAILBOX_IN_PRODUCTION"),
        "the refusal says why and how to opt in: {log}"
    );
    env.push(("ALLOW_DEV_MAILBOX_IN_PRODUCTION", "true"));
    let _started = Process::spawn("paycore-api", "production-opted-in", &db.url, &[], &env);
    let client = reqwest::Client::new();
    let health = format!("http://127.0.0.1:{port}/healthz");
    eventually(
        Duration::from_secs(30),
        "the opted-in api to serve",
        || async {
            let response = client.get(&health).send().await.ok()?;
            (response.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
}
