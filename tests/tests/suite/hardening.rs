//! Issue 23, items 4 and 13: `/metrics` bounded and protected, registration that does not reveal who has an
//! account, deposit return URLs on an allow-list, and the dashboard's browser security headers.

use paycore_tests::app::{error_code, spawn_app, spawn_app_with, TestApp, TestUser};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn metrics_text(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("metrics")
}

async fn metrics_lines(app: &TestApp) -> usize {
    let response = metrics_text(app, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("text").lines().count()
}

/// Letters only, so that no rule that spots ids in paths could fold it.
fn random_word() -> String {
    uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .map(|c| match c.to_digit(16) {
            Some(d) => char::from(b'a' + u8::try_from(d).expect("a hex digit")),
            None => c,
        })
        .collect()
}

#[tokio::test]
async fn a_thousand_requests_to_random_paths_and_ids_leave_the_metrics_nearly_unchanged() {
    let app = spawn_app().await;
    // Every kind of request once (a scrape too), so that the series they need exist before counting.
    let wallet = format!("/api/v1/wallets/{}", uuid::Uuid::new_v4());
    for path in ["/no-such-route", "/api/v1/transfers/x", wallet.as_str()] {
        app.client.get(app.url(path)).send().await.expect("warm up");
    }
    metrics_lines(&app).await;
    let before = metrics_lines(&app).await;
    for chunk in 0..20 {
        let requests = (0..50).map(|i| {
            let word = random_word();
            let path = match (chunk * 50 + i) % 5 {
                0 => format!("/{word}"),
                1 => format!("/api/v1/{word}/{}", random_word()),
                2 => format!("/api/v1/transfers/{word}"),
                3 => format!("/admin/{word}"),
                _ => format!("/api/v1/wallets/{}", uuid::Uuid::new_v4()),
            };
            let app = &app;
            async move {
                app.client
                    .get(app.url(&path))
                    .send()
                    .await
                    .expect("random request")
                    .status()
            }
        });
        for status in futures::future::join_all(requests).await {
            assert!(status.is_client_error(), "{status}");
        }
    }
    let text = metrics_text(&app, None).await.text().await.expect("text");
    let after = text.lines().count();
    assert!(
        after <= before + 5,
        "{before} lines before, {after} after 1,000 random requests:\n{text}"
    );
    assert!(
        text.contains(
            r#"paycore_http_requests_total{route="unmatched",method="GET",status="404"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/api/v1/transfers/{transfer_id}""#),
        "{text}"
    );
}

#[tokio::test]
async fn with_a_metrics_token_configured_metrics_need_it() {
    let token = "a-metrics-token-of-some-length";
    let app = spawn_app_with(&[("METRICS_TOKEN", token)]).await;
    assert_eq!(
        error_code(metrics_text(&app, None).await, StatusCode::UNAUTHORIZED).await,
        "invalid_metrics_token"
    );
    assert_eq!(
        error_code(
            metrics_text(&app, Some("a-metrics-token-of-some-lengtH")).await,
            StatusCode::UNAUTHORIZED
        )
        .await,
        "invalid_metrics_token"
    );
    let scraped = metrics_text(&app, Some(token)).await;
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(scraped
        .text()
        .await
        .expect("text")
        .contains("paycore_http_requests_total"));
}

#[tokio::test]
async fn dashboard_pages_forbid_framing_scripts_and_content_sniffing() {
    let app = spawn_app().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for path in [
        "/admin/login",
        "/admin",
        "/admin/jobs",
        "/admin/assets/admin.css",
    ] {
        let response = no_redirects
            .get(app.url(path))
            .send()
            .await
            .expect("dashboard");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_else(|| panic!("{path} has no {name}"))
                .to_owned()
        };
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "same-origin", "{path}");
        let policy = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
    }
    let login = app
        .client
        .get(app.url("/admin/login"))
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("html");
    assert!(
        !login.contains("<style") && !login.contains("style=\""),
        "{login}"
    );
    let stylesheet = app
        .client
        .get(app.url("/admin/assets/admin.css"))
        .send()
        .await
        .expect("stylesheet");
    assert_eq!(stylesheet.status(), StatusCode::OK);
    assert!(stylesheet
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/css")));
}

async fn deposit_returning_to(
    app: &TestApp,
    user: &TestUser,
    return_url: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/deposits"))
        .bearer_auth(&user.access_token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"wallet_id": user.wallet_id, "amount": 50_000, "return_url": return_url}))
        .send()
        .await
        .expect("deposit")
}

#[tokio::test]
async fn a_deposit_may_return_the_customer_only_to_an_allowed_host() {
    let app = spawn_app_with(&[("DEPOSIT_RETURN_HOSTS", "shop.example.com,localhost")]).await;
    let ada = app.register_user("ada").await;
    for refused in [
        "https://evil.example/phish",
        "https://shop.example.com.evil.example/",
        "https://evil.example/?then=https://shop.example.com",
    ] {
        let response = deposit_returning_to(&app, &ada, refused).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "return_url_host_not_allowed",
            "{refused}"
        );
    }
    let with_credentials =
        deposit_returning_to(&app, &ada, "https://shop.example.com@evil.example/").await;
    assert_eq!(
        error_code(with_credentials, StatusCode::BAD_REQUEST).await,
        "invalid_return_url"
    );
    let deposits: i64 = sqlx::query_scalar("select count(*) from deposit")
        .fetch_one(&app.db.pool)
        .await
        .expect("count deposits");
    assert_eq!(deposits, 0, "a refused return URL records nothing");
    for allowed in [
        "https://shop.example.com/thanks",
        "http://localhost:3000/done",
    ] {
        let response = deposit_returning_to(&app, &ada, allowed).await;
        assert!(
            response.status().is_success(),
            "{allowed}: {}",
            response.status()
        );
        let body: Value = response.json().await.expect("json");
        let stored: Option<String> =
            sqlx::query_scalar("select return_url from deposit where deposit_id = $1::uuid")
                .bind(body["deposit_id"].as_str().expect("deposit id"))
                .fetch_one(&app.db.pool)
                .await
                .expect("the deposit");
        assert_eq!(stored.as_deref(), Some(allowed));
    }
}

async fn register_raw(
    app: &TestApp,
    email: &str,
    password: &str,
    phone: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({"email": email, "password": password, "full_name": "Someone"});
    if let Some(phone) = phone {
        body["phone"] = json!(phone);
    }
    let response = app.post("/api/v1/auth/register", None, &body).await;
    let status = response.status();
    (status, response.json().await.expect("json"))
}

async fn count(app: &TestApp, sql: &'static str, bind: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(bind)
        .fetch_one(&app.db.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn registration_answers_a_taken_email_or_phone_exactly_as_a_new_one_and_warns_the_owner_instead(
) {
    let app = spawn_app().await;
    let ada_email = format!("ada-{}@example.com", uuid::Uuid::new_v4().simple());
    let ada_phone = "+2348012345678";
    let (status, fresh) =
        register_raw(&app, &ada_email, "ada's own password", Some(ada_phone)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(fresh["status"], "accepted");
    assert!(
        fresh.get("tokens").is_none() && fresh.get("user").is_none(),
        "{fresh}"
    );

    let (status, taken_email) =
        register_raw(&app, &ada_email.to_uppercase(), "a password of mine", None).await;
    assert_eq!((status, &taken_email), (StatusCode::ACCEPTED, &fresh));
    let stranger = format!("stranger-{}@example.com", uuid::Uuid::new_v4().simple());
    let (status, taken_phone) =
        register_raw(&app, &stranger, "a password of mine", Some(ada_phone)).await;
    assert_eq!((status, &taken_phone), (StatusCode::ACCEPTED, &fresh));

    // Nothing was created for either, and the would-be registrants cannot sign in with their passwords.
    let users: i64 = sqlx::query_scalar("select count(*) from app_user")
        .fetch_one(&app.db.pool)
        .await
        .expect("users");
    assert_eq!(users, 1);
    for email in [ada_email.to_uppercase(), stranger.clone()] {
        let login = app
            .post(
                "/api/v1/auth/login",
                None,
                &json!({"email": email, "password": "a password of mine"}),
            )
            .await;
        assert_eq!(
            error_code(login, StatusCode::UNAUTHORIZED).await,
            "invalid_credentials"
        );
    }

    // Ada is told, at her own address, once: the second attempt within the hour does not mail her again.
    let warned = "select count(*) from dev_mailbox where to_address = $1 and template = 'registration_attempt'";
    paycore_tests::eventually(
        std::time::Duration::from_secs(20),
        "the owner's warning is mailed",
        || async { (count(&app, warned, &ada_email).await == 1).then_some(()) },
    )
    .await;
    let subject: String = sqlx::query_scalar(
        "select subject from dev_mailbox where to_address = $1 and template = 'registration_attempt'",
    )
    .bind(&ada_email)
    .fetch_one(&app.db.pool)
    .await
    .expect("the warning");
    assert!(subject.contains("e-mail address"), "{subject}");
    let queued =
        "select count(*) from notification where kind = 'registration_attempt' and user_id =
                  (select user_id from app_user where email = $1)";
    assert_eq!(count(&app, queued, &ada_email).await, 1);
    // And nothing went to the address typed in with her phone number.
    let to_stranger = "select count(*) from dev_mailbox where to_address = $1";
    assert_eq!(count(&app, to_stranger, &stranger).await, 0);
}
