//! Notifications end to end: mail over real SMTP to a local sink (and its failures), the one-time-code flows,
//! push through a fake FCM HTTP v1 server, the in-app inbox and preferences, the development mailbox, and the
//! per-user real-time event stream.

use std::time::Duration;

use futures::StreamExt;
use paycore_sandbox::{fcm::FakeFcm, smtp::SmtpSink};
use paycore_tests::{
    app::{error_code, spawn_app, spawn_app_with, TestApp, TestUser},
    eventually,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// An app whose mail goes over SMTP to a fresh sink; `extra` settings are added.
pub(crate) async fn app_with_smtp(extra: &[(&str, &str)]) -> (TestApp, SmtpSink) {
    let (sink, port) = SmtpSink::start().await.expect("smtp sink");
    let port = port.to_string();
    let mut settings: Vec<(&str, &str)> = vec![
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", &port),
        ("SMTP_TLS", "none"),
        ("SMTP_TIMEOUT_MS", "3000"),
        ("MAIL_FROM", "PayCore <no-reply@paycore.test>"),
    ];
    settings.extend_from_slice(extra);
    (spawn_app_with(&settings).await, sink)
}

/// Waits for the `n`th message (1-based) to `address` whose subject contains `subject`.
pub(crate) async fn mail(
    sink: &SmtpSink,
    address: &str,
    subject: &str,
) -> paycore_sandbox::smtp::ReceivedMail {
    eventually(
        WAIT,
        &format!("mail to {address} about {subject:?}"),
        || async {
            sink.to(address)
                .into_iter()
                .rev()
                .find(|m| m.subject().contains(subject))
        },
    )
    .await
}

/// The six-digit code in a message's plain text ("… code is 123456.").
pub(crate) fn code_in(text: &str) -> String {
    text.match_indices("code is ")
        .map(|(at, marker)| &text[at + marker.len()..])
        .find_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (digits.len() == 6).then_some(digits)
        })
        .unwrap_or_else(|| panic!("no code in {text}"))
}

async fn post_json(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    app.post(path, token, &body).await
}

#[tokio::test]
async fn registration_mails_a_verification_code_that_verifies_the_address_once() {
    let (app, sink) = app_with_smtp(&[]).await;
    let ada = app.register_user("ada").await;
    let message = mail(&sink, &ada.email, "Verify your e-mail address").await;
    assert_eq!(message.from, "no-reply@paycore.test");
    let text = message.decoded();
    assert!(text.contains("Test ada"), "greets by name");
    assert!(
        text.contains("text/html") && text.contains("text/plain"),
        "HTML and plain text"
    );
    let code = code_in(&text);
    let me = app.get_json("/api/v1/users/me", &ada.access_token).await;
    assert_eq!(me["user"]["email_verified"], false);
    // Asking for another code at once is throttled.
    let again = post_json(
        &app,
        "/api/v1/auth/email/resend",
        Some(&ada.access_token),
        json!({}),
    )
    .await;
    assert_eq!(
        error_code(again, StatusCode::TOO_MANY_REQUESTS).await,
        "code_recently_sent"
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let response = post_json(
        &app,
        "/api/v1/auth/email/verify",
        Some(&ada.access_token),
        json!({"code": wrong}),
    )
    .await;
    assert_eq!(
        error_code(response, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_code"
    );
    let response = post_json(
        &app,
        "/api/v1/auth/email/verify",
        Some(&ada.access_token),
        json!({"code": code}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let me = app.get_json("/api/v1/users/me", &ada.access_token).await;
    assert_eq!(me["user"]["email_verified"], true);
    let response = post_json(
        &app,
        "/api/v1/auth/email/verify",
        Some(&ada.access_token),
        json!({"code": code}),
    )
    .await;
    assert_eq!(
        error_code(response, StatusCode::CONFLICT).await,
        "email_already_verified"
    );
    // The code is stored only as an HMAC.
    let stored: Vec<String> = sqlx::query_scalar("select code_hash from otp_code")
        .fetch_all(&app.db.pool)
        .await
        .expect("codes");
    assert!(stored
        .iter()
        .all(|hash| hash.len() == 64 && !hash.contains(&code)));
}

#[tokio::test]
async fn password_reset_by_code_with_lockout_expiry_and_single_use() {
    let (app, sink) = app_with_smtp(&[("OTP_RESEND_INTERVAL_SECONDS", "0")]).await;
    let ada = app.register_user("ada").await;
    // An unknown address gets the same answer and no mail.
    let unknown = post_json(
        &app,
        "/api/v1/auth/password/forgot",
        None,
        json!({"email": "nobody-here@example.com"}),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::ACCEPTED);
    let forgot = || {
        post_json(
            &app,
            "/api/v1/auth/password/forgot",
            None,
            json!({"email": ada.email}),
        )
    };
    assert_eq!(forgot().await.status(), StatusCode::ACCEPTED);
    let first = code_in(
        &mail(&sink, &ada.email, "Reset your password")
            .await
            .decoded(),
    );
    let reset = |code: String, password: &'static str| {
        post_json(
            &app,
            "/api/v1/auth/password/reset",
            None,
            json!({"email": ada.email, "code": code, "new_password": password}),
        )
    };
    // Five wrong tries lock the code; then even the right one is refused.
    let wrong = if first == "000000" {
        "111111"
    } else {
        "000000"
    };
    for attempt in 1..=5 {
        let response = reset(wrong.to_owned(), "a brand new password").await;
        let expected = if attempt < 5 {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        error_code(response, expected).await;
    }
    assert_eq!(
        error_code(
            reset(first.clone(), "a brand new password").await,
            StatusCode::TOO_MANY_REQUESTS
        )
        .await,
        "code_locked"
    );
    // An expired code is refused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(forgot().await.status(), StatusCode::ACCEPTED);
    let second = eventually(WAIT, "a second reset code", || async {
        let codes: Vec<String> = sink
            .to(&ada.email)
            .iter()
            .filter(|m| m.subject().contains("Reset"))
            .map(|m| code_in(&m.decoded()))
            .collect();
        (codes.len() >= 2).then(|| codes[codes.len() - 1].clone())
    })
    .await;
    sqlx::query("update otp_code set expires_at = now() - interval '1 second' where purpose = 'password_reset' and used_at is null")
        .execute(&app.db.pool)
        .await
        .expect("expire");
    assert_eq!(
        error_code(
            reset(second, "a brand new password").await,
            StatusCode::UNPROCESSABLE_ENTITY
        )
        .await,
        "code_expired"
    );
    // A fresh code works once, signs out every session, and cannot be used again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(forgot().await.status(), StatusCode::ACCEPTED);
    let third = eventually(WAIT, "a third reset code", || async {
        let codes: Vec<String> = sink
            .to(&ada.email)
            .iter()
            .filter(|m| m.subject().contains("Reset"))
            .map(|m| code_in(&m.decoded()))
            .collect();
        (codes.len() >= 3).then(|| codes[codes.len() - 1].clone())
    })
    .await;
    assert_eq!(
        reset(third.clone(), "a brand new password").await.status(),
        StatusCode::NO_CONTENT
    );
    let old_session = app.get("/api/v1/users/me", &ada.access_token).await;
    assert_eq!(old_session.status(), StatusCode::UNAUTHORIZED);
    let login = post_json(
        &app,
        "/api/v1/auth/login",
        None,
        json!({"email": ada.email, "password": "a brand new password"}),
    )
    .await;
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(
        error_code(
            reset(third, "another new password").await,
            StatusCode::UNPROCESSABLE_ENTITY
        )
        .await,
        "code_used"
    );
}

#[tokio::test]
async fn two_step_sign_in_needs_the_emailed_code_and_new_devices_are_reported() {
    let (app, sink) = app_with_smtp(&[]).await;
    let ada = app.register_user("ada").await;
    let enable = |password: &'static str| {
        let request = app
            .client
            .put(app.url("/api/v1/auth/two-step"))
            .bearer_auth(&ada.access_token)
            .json(&json!({"enabled": true, "password": password}));
        async move { request.send().await.expect("two-step") }
    };
    assert_eq!(
        error_code(enable("correct horse battery").await, StatusCode::CONFLICT).await,
        "email_not_verified"
    );
    let code = code_in(&mail(&sink, &ada.email, "Verify").await.decoded());
    post_json(
        &app,
        "/api/v1/auth/email/verify",
        Some(&ada.access_token),
        json!({"code": code}),
    )
    .await;
    assert_eq!(
        error_code(
            enable("wrong password!!").await,
            StatusCode::UNPROCESSABLE_ENTITY
        )
        .await,
        "invalid_current_password"
    );
    assert_eq!(
        enable("correct horse battery").await.status(),
        StatusCode::NO_CONTENT
    );

    let login = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", "PayCore-Phone/1.0")
        .json(&json!({"email": ada.email, "password": ada.password}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::ACCEPTED);
    let challenge: Value = login.json().await.expect("json");
    assert_eq!(challenge["two_step_required"], true);
    assert!(challenge.get("access_token").is_none());
    let code = code_in(&mail(&sink, &ada.email, "Your sign-in code").await.decoded());
    let verify = |code: String| {
        app.client
            .post(app.url("/api/v1/auth/login/verify"))
            .header("user-agent", "PayCore-Phone/1.0")
            .json(&json!({"challenge_id": challenge["challenge_id"], "code": code}))
            .send()
    };
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(
        error_code(
            verify(wrong.into()).await.expect("verify"),
            StatusCode::UNPROCESSABLE_ENTITY
        )
        .await,
        "invalid_code"
    );
    let tokens = verify(code.clone()).await.expect("verify");
    assert_eq!(tokens.status(), StatusCode::OK);
    let tokens: Value = tokens.json().await.expect("json");
    assert!(tokens["access_token"].is_string());
    assert_eq!(
        error_code(
            verify(code).await.expect("verify"),
            StatusCode::UNPROCESSABLE_ENTITY
        )
        .await,
        "code_used"
    );
    // That sign-in came from a device this account had not used: mailed (security) and in the inbox.
    let warning = mail(&sink, &ada.email, "New sign-in").await;
    assert!(warning.decoded().contains("PayCore-Phone/1.0"));
    let inbox = app
        .get_json(
            "/api/v1/notifications",
            tokens["access_token"].as_str().expect("token"),
        )
        .await;
    assert_eq!(inbox["data"][0]["kind"], "new_device");
}

async fn transfer(
    app: &TestApp,
    from: &TestUser,
    to: &TestUser,
    amount: i64,
    extra: Value,
) -> Value {
    let response = app.transfer(from, &to.account_number, amount, extra).await;
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("json")
}

#[tokio::test]
async fn money_events_mail_the_right_people_with_the_right_content() {
    let (app, sink) = app_with_smtp(&[("LOW_BALANCE_THRESHOLD", "5000000")]).await;
    let ada = app.register_verified_user("ada").await;
    let bob = app.register_user("bob").await;
    transfer(&app, &ada, &bob, 100_000, json!({})).await;
    assert!(mail(&sink, &ada.email, "You sent NGN 1,000.00")
        .await
        .decoded()
        .contains("Fee: NGN 10.00"));
    assert!(mail(&sink, &bob.email, "You received NGN 1,000.00")
        .await
        .decoded()
        .contains("Test ada"));
    transfer(
        &app,
        &ada,
        &bob,
        50_000,
        json!({"require_acceptance": true}),
    )
    .await;
    mail(
        &sink,
        &bob.email,
        "sent you NGN 500.00: accept or reject it",
    )
    .await;
    // A deposit.
    let deposit: Value = app
        .client
        .post(app.url("/api/v1/deposits"))
        .bearer_auth(&ada.access_token)
        .header("Idempotency-Key", "dep-1")
        .header("Prefer", "wait=10")
        .json(&json!({"wallet_id": ada.wallet_id, "amount": 500_000}))
        .send()
        .await
        .expect("deposit")
        .json()
        .await
        .expect("json");
    app.client
        .post(format!(
            "{}/pay",
            deposit["authorization_url"].as_str().expect("url")
        ))
        .send()
        .await
        .expect("pay");
    assert!(mail(&sink, &ada.email, "Deposit of NGN 5,000.00 received")
        .await
        .decoded()
        .contains("NGN 4,925.00"));
    // An electricity bill: the receipt carries the token.
    let bill: Value = app
        .client
        .post(app.url("/api/v1/bills/payments"))
        .bearer_auth(&ada.access_token)
        .header("Idempotency-Key", "bill-1")
        .header("Prefer", "wait=10")
        .json(&json!({"wallet_id": ada.wallet_id, "biller_code": "BIL119", "customer_id": "45000000001", "amount": 200_000}))
        .send()
        .await
        .expect("bill")
        .json()
        .await
        .expect("json");
    let token = bill["token"].as_str().expect("token").to_owned();
    let receipt = mail(&sink, &ada.email, "Receipt: EKEDC Prepaid NGN 2,000.00").await;
    assert!(
        receipt.decoded().contains(&token),
        "the receipt has the token"
    );
    // A payout that takes the balance under ₦50,000 (the threshold set above): the result and a warning.
    let available = app.available(&ada).await;
    let amount = available - 4_000_000;
    let payout: Value = app
        .client
        .post(app.url("/api/v1/payouts"))
        .bearer_auth(&ada.access_token)
        .header("Idempotency-Key", "payout-1")
        .json(&json!({"wallet_id": ada.wallet_id, "amount": amount, "bank_code": "058", "account_number": "0123456789"}))
        .send()
        .await
        .expect("payout")
        .json()
        .await
        .expect("json");
    assert!(payout["payout_id"].is_string(), "{payout}");
    mail(&sink, &ada.email, "was sent").await;
    mail(&sink, &ada.email, "Your NGN balance is low").await;
    let kinds: Vec<String> = app
        .get_json("/api/v1/notifications?limit=50", &ada.access_token)
        .await["data"]
        .as_array()
        .expect("inbox")
        .iter()
        .map(|n| n["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    for kind in [
        "transfer_sent",
        "deposit_credited",
        "bill_receipt",
        "payout_result",
        "low_balance",
    ] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} in {kinds:?}");
    }
    // Nobody else got Ada's mail.
    assert!(sink
        .to(&bob.email)
        .iter()
        .all(|m| !m.subject().contains("Deposit")));
}

/// Registers `nobody@paycore.test`, whose mailbox the SMTP sink refuses (550), and signs in as them.
async fn register_refused_mailbox(app: &TestApp) -> TestUser {
    let (email, password) = ("nobody@paycore.test", "correct horse battery");
    let response = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"email": email, "password": password, "full_name": "Nobody"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.sign_in_user(email, password).await
}

/// Waits for the `email.send` job of `template` to the refused mailbox to be dead; its status and attempts.
async fn dead_mail_job(app: &TestApp, template: &str) -> (String, i32) {
    eventually(WAIT, "the refused mail's job is dead", || async {
        sqlx::query_as::<_, (String, i32)>(
            "select status, attempts from apalis.jobs where job_type = 'emails'
             and job_envelope(job)->'args'->>'to' = 'nobody@paycore.test'
             and job_envelope(job)->'args'->>'template' = $1",
        )
        .bind(template)
        .fetch_optional(&app.db.pool)
        .await
        .expect("job")
        .filter(|(status, _)| status == "Killed")
    })
    .await
}

#[tokio::test]
async fn smtp_failures_are_retried_and_a_refused_mailbox_is_not() {
    let (app, sink) = app_with_smtp(&[]).await;
    sink.fail_next(2);
    let ada = app.register_user("ada").await;
    mail(&sink, &ada.email, "Verify").await;
    let transient: i64 = sqlx::query_scalar(
        "select count(*) from job_attempt where kind = 'email.send' and outcome = 'transient'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("attempts");
    assert_eq!(transient, 2, "retried after two 451s");
    // A mailbox the server says does not exist: one attempt, then dead, not retried.
    register_refused_mailbox(&app).await;
    assert_eq!(
        dead_mail_job(&app, "email_verification").await,
        ("Killed".into(), 1)
    );
    let error: String = sqlx::query_scalar(
        "select error from job_attempt where kind = 'email.send' and outcome = 'permanent'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("attempt");
    assert!(error.contains("550"), "{error}");
}

#[tokio::test]
async fn a_settlement_mails_both_sides_in_one_job_and_a_refused_message_is_retried_alone() {
    let (app, sink) = app_with_smtp(&[]).await;
    let ada = app.register_user("ada").await;
    let nobody = register_refused_mailbox(&app).await;
    let sent = app
        .transfer(&ada, &nobody.account_number, 100_000, json!({}))
        .await;
    assert!(sent.status().is_success(), "{}", sent.status());
    mail(&sink, &ada.email, "You sent NGN 1,000.00").await;
    // Both sides' mail went out in one job; the refused one was enqueued alone, tried once and is dead.
    assert_eq!(
        dead_mail_job(&app, "transfer_received").await,
        ("Killed".into(), 1)
    );
    let batches: Vec<String> = sqlx::query_scalar(
        "select outcome from job_attempt where kind = 'email.send_many' order by job_attempt_id",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("attempts");
    assert_eq!(batches, ["succeeded"], "one batch, done on its first run");
    let ada_sent = sink
        .to(&ada.email)
        .iter()
        .filter(|m| m.subject().contains("You sent"))
        .count();
    assert_eq!(ada_sent, 1, "the delivered message is not sent again");
}

#[tokio::test]
async fn preferences_mute_channels_but_never_security_mail_and_the_inbox_works() {
    let (app, sink) = app_with_smtp(&[]).await;
    let ada = app.register_user("ada").await;
    let bob = app.register_user("bob").await;
    let set = app
        .client
        .put(app.url("/api/v1/notifications/preferences"))
        .bearer_auth(&bob.access_token)
        .json(&json!({"email": false, "push": false, "in_app": true}))
        .send()
        .await
        .expect("preferences");
    assert_eq!(set.status(), StatusCode::OK);
    for amount in [10_000, 20_000, 30_000] {
        transfer(&app, &ada, &bob, amount, json!({})).await;
    }
    mail(&sink, &ada.email, "You sent NGN 300.00").await;
    assert!(
        sink.to(&bob.email)
            .iter()
            .all(|m| !m.subject().contains("You received")),
        "Bob muted e-mail"
    );
    // Security mail still goes out.
    post_json(
        &app,
        "/api/v1/auth/password/forgot",
        None,
        json!({"email": bob.email}),
    )
    .await;
    mail(&sink, &bob.email, "Reset your password").await;

    let inbox = app
        .get_json("/api/v1/notifications", &bob.access_token)
        .await;
    assert_eq!(inbox["unread_count"], 3);
    let items = inbox["data"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["title"], "Money received");
    assert!(items[0]["body"]
        .as_str()
        .expect("body")
        .contains("NGN 300.00"));
    let first = items[0]["notification_id"].as_str().expect("id").to_owned();
    let page = app
        .get_json("/api/v1/notifications?limit=2", &bob.access_token)
        .await;
    assert_eq!(page["has_more"], true);
    let rest = app
        .get_json(
            &format!(
                "/api/v1/notifications?starting_after={}",
                page["data"][1]["notification_id"].as_str().expect("id")
            ),
            &bob.access_token,
        )
        .await;
    assert_eq!(rest["data"].as_array().expect("rest").len(), 1);
    // Another user cannot touch it.
    let foreign = app
        .post(
            &format!("/api/v1/notifications/{first}/read"),
            Some(&ada.access_token),
            &json!({}),
        )
        .await;
    assert_eq!(
        error_code(foreign, StatusCode::NOT_FOUND).await,
        "notification_not_found"
    );
    let read = app
        .post(
            &format!("/api/v1/notifications/{first}/read"),
            Some(&bob.access_token),
            &json!({}),
        )
        .await;
    assert_eq!(read.status(), StatusCode::NO_CONTENT);
    let unread = app
        .get_json("/api/v1/notifications?unread=true", &bob.access_token)
        .await;
    assert_eq!(unread["data"].as_array().expect("unread").len(), 2);
    let all = app
        .post(
            "/api/v1/notifications/read-all",
            Some(&bob.access_token),
            &json!({}),
        )
        .await;
    assert_eq!(all.json::<Value>().await.expect("json")["marked"], 2);
    assert_eq!(
        app.get_json("/api/v1/notifications/unread-count", &bob.access_token)
            .await["unread_count"],
        0
    );
    let deleted = app
        .client
        .delete(app.url(&format!("/api/v1/notifications/{first}")))
        .bearer_auth(&bob.access_token)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_json("/api/v1/notifications", &bob.access_token)
            .await["data"]
            .as_array()
            .expect("items")
            .len(),
        2
    );
    // Retention: old rows go.
    sqlx::query("update notification set created_at = now() - interval '100 days' where user_id = $1::text::uuid")
        .bind(&bob.user_id)
        .execute(&app.db.pool)
        .await
        .expect("age");
    let pruned = paycore_jobs::notify::prune(&app.db.pool, app.config.notifications.retention_days)
        .await
        .expect("prune");
    assert_eq!(pruned, 2);
}

#[tokio::test]
async fn push_goes_through_fcm_http_v1_and_unregistered_tokens_are_removed() {
    let public_key = include_str!("../../fixtures/fcm-test-public.pem");
    let (fake, fcm_url) = FakeFcm::start(public_key, "paycore-test")
        .await
        .expect("fake fcm");
    let mut account: Value =
        serde_json::from_str(include_str!("../../fixtures/fcm-test-service-account.json"))
            .expect("fixture");
    account["token_uri"] = json!(format!("{fcm_url}/token"));
    let account = account.to_string();
    let app = spawn_app_with(&[
        ("FCM_SERVICE_ACCOUNT_JSON", &account),
        ("FCM_BASE_URL", &fcm_url),
    ])
    .await;
    let ada = app.register_user("ada").await;
    let bob = app.register_user("bob").await;
    for (token, platform) in [
        ("device-good-1", "android"),
        ("unregistered-old-phone", "ios"),
    ] {
        let response = app
            .post(
                "/api/v1/devices",
                Some(&bob.access_token),
                &json!({"token": token, "platform": platform}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let bad = app
        .post(
            "/api/v1/devices",
            Some(&bob.access_token),
            &json!({"token": "x", "platform": "symbian"}),
        )
        .await;
    assert_eq!(
        error_code(bad, StatusCode::BAD_REQUEST).await,
        "invalid_platform"
    );
    transfer(&app, &ada, &bob, 120_000, json!({})).await;
    let message = eventually(WAIT, "a push message at the fake FCM", || async {
        fake.messages().into_iter().next()
    })
    .await;
    assert_eq!(message["message"]["token"], "device-good-1");
    assert_eq!(
        message["message"]["notification"]["title"],
        "Money received"
    );
    assert!(message["message"]["notification"]["body"]
        .as_str()
        .expect("body")
        .contains("NGN 1,200.00"));
    assert_eq!(message["message"]["data"]["kind"], "transfer_received");
    let devices = eventually(WAIT, "the unregistered device removed", || async {
        let list = app.get_json("/api/v1/devices", &bob.access_token).await;
        (list["data"].as_array().map(Vec::len) == Some(1)).then_some(list)
    })
    .await;
    assert_eq!(devices["data"][0]["platform"], "android");
    assert!(
        fake.refused().is_empty(),
        "the fake FCM refused: {:?}",
        fake.refused()
    );
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn without_smtp_mail_lands_in_the_dev_mailbox_that_admins_read() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    let admin = app
        .admin_token(paycore_jobs::domains::identity::auth::Role::AdminReadonly)
        .await;
    let mailbox = eventually(WAIT, "the verification mail in the dev mailbox", || async {
        let list = app
            .get_json(&format!("/api/v1/admin/mailbox?to={}", ada.email), &admin)
            .await;
        (list["data"].as_array().map(Vec::len) == Some(1)).then_some(list)
    })
    .await;
    let message = &mailbox["data"][0];
    assert_eq!(message["subject"], "Verify your e-mail address");
    assert_eq!(message["template"], "email_verification");
    assert!(message["html_body"]
        .as_str()
        .expect("html")
        .contains("<!doctype html>"));
    // A settlement's mail to both sides (one `email.send_many` job) lands there too, once each.
    let bob = app.register_user("bob").await;
    let sent = app
        .transfer(&ada, &bob.account_number, 100_000, json!({}))
        .await;
    assert!(sent.status().is_success(), "{}", sent.status());
    for (user, template) in [(&ada, "transfer_sent"), (&bob, "transfer_received")] {
        eventually(WAIT, "the transfer mail in the dev mailbox", || async {
            let list = app
                .get_json(&format!("/api/v1/admin/mailbox?to={}", user.email), &admin)
                .await;
            let matching = list["data"].as_array().map(|messages| {
                messages
                    .iter()
                    .filter(|m| m["template"] == template)
                    .count()
            });
            (matching == Some(1)).then_some(())
        })
        .await;
    }
    let denied = app.get("/api/v1/admin/mailbox", &ada.access_token).await;
    assert_eq!(
        error_code(denied, StatusCode::FORBIDDEN).await,
        "admin_required"
    );
}

/// Reads server-sent events from `/api/v1/events` into a channel.
async fn event_stream(app: &TestApp, token: &str) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let response = app
        .client
        .get(app.url("/api/v1/events"))
        .bearer_auth(token)
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/event-stream"));
    let (send, receive) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                for line in block.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        if let Ok(event) = serde_json::from_str::<Value>(data) {
                            let _ = send.send(event);
                        }
                    }
                }
            }
        }
    });
    receive
}

#[tokio::test]
async fn each_user_event_stream_carries_their_own_operations_and_notifications_only() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    let bob = app.register_user("bob").await;
    let carol = app.register_user("carol").await;
    let unauthenticated = app
        .client
        .get(app.url("/api/v1/events"))
        .send()
        .await
        .expect("events");
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let mut ada_events = event_stream(&app, &ada.access_token).await;
    let mut bob_events = event_stream(&app, &bob.access_token).await;
    for events in [&mut ada_events, &mut bob_events] {
        let ready = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("ready")
            .expect("event");
        assert_eq!(ready["type"], "ready");
    }
    let sent = transfer(&app, &ada, &carol, 70_000, json!({})).await;
    let transfer_id = sent["transfer_id"].as_str().expect("id").to_owned();
    let mut seen = Vec::new();
    let settled = tokio::time::timeout(WAIT, async {
        while let Some(event) = ada_events.recv().await {
            seen.push(event.clone());
            if event["type"] == "operation"
                && event["operation_id"] == transfer_id.as_str()
                && event["status"] == "succeeded"
            {
                return;
            }
        }
    })
    .await;
    assert!(settled.is_ok(), "Ada saw her transfer settle: {seen:?}");
    // The status comes first, then the notification about it.
    let notified = tokio::time::timeout(WAIT, async {
        while let Some(event) = ada_events.recv().await {
            if event["type"] == "notification" && event["notification_kind"] == "transfer_sent" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(notified, Ok(true), "{seen:?}");
    // Bob, who is not a party, hears nothing of it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    if let Ok(event) = bob_events.try_recv() {
        panic!("Bob received another user's event: {event}");
    }
}
