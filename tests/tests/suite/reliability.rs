//! Issue 23: defects found by outside testing (including chaos runs that killed workers and restarted
//! PostgreSQL). Each test failed before its fix.

use std::time::Duration;

use paycore_tests::{
    app::{error_code, spawn_app, TestApp, TestUser},
    eventually,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const BONUS: i64 = 10_000_000;
const SETTLE: Duration = Duration::from_secs(30);

/// POSTs with the given Idempotency-Key and `Prefer: wait=10`.
async fn post_keyed(
    app: &TestApp,
    path: &str,
    user: &TestUser,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(&user.access_token)
        .header("Idempotency-Key", key)
        .header("Prefer", "wait=10")
        .json(body)
        .send()
        .await
        .expect("request")
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.db.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_payout_or_bill_payment_refused_for_insufficient_funds_writes_no_operation() {
    let app = spawn_app().await;
    let (ada, bayo) = (
        app.register_verified_user("ada").await,
        app.register_verified_user("bayo").await,
    );
    // Ada sends most of her bonus away (₦98,000 and its 1 % fee), keeping ₦1,020.
    let sent = app
        .transfer(&ada, &bayo.account_number, 9_800_000, json!({}))
        .await;
    assert_eq!(sent.status(), StatusCode::CREATED);
    let left = BONUS - 9_800_000 - 98_000;
    assert_eq!(app.available(&ada).await, left);
    let operations_before = count(&app, "select count(*) from operation").await;
    let payout = json!({"wallet_id": ada.wallet_id, "amount": 500_000, "bank_code": "058",
                        "account_number": "0000000001", "narration": "rent"});
    let bill = json!({"wallet_id": ada.wallet_id, "biller_code": "BIL099", "customer_id": "08031234567",
                      "amount": 500_000});
    for (path, body) in [
        ("/api/v1/payouts", &payout),
        ("/api/v1/bills/payments", &bill),
    ] {
        let key = uuid::Uuid::new_v4().to_string();
        let first = post_keyed(&app, path, &ada, &key, body).await;
        assert_eq!(
            error_code(first, StatusCode::UNPROCESSABLE_ENTITY).await,
            "insufficient_funds",
            "{path}"
        );
        // The refusal is replayed under its key, still writing nothing.
        let again = post_keyed(&app, path, &ada, &key, body).await;
        assert_eq!(
            error_code(again, StatusCode::UNPROCESSABLE_ENTITY).await,
            "insufficient_funds",
            "{path} replayed"
        );
    }
    assert_eq!(
        count(&app, "select count(*) from operation").await,
        operations_before,
        "a refused payout or bill payment leaves no operation behind"
    );
    assert_eq!(count(&app, "select count(*) from payout").await, 0);
    assert_eq!(count(&app, "select count(*) from bill_payment").await, 0);
    assert_eq!(app.available(&ada).await, left);
    let findings = app.audit_findings().await;
    assert!(findings.is_empty(), "ledger audit: {findings:?}");
}

#[tokio::test]
async fn the_audit_reports_an_open_operation_that_no_job_can_finish() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let clean = app.audit_findings().await;
    assert!(clean.is_empty(), "{clean:?}");
    let stuck: uuid::Uuid = sqlx::query_scalar(
        "insert into operation (operation_id, kind, owner_id, request, status)
         values (gen_random_uuid(), 'bill_payment', $1::text::uuid, '{}', 'pending') returning operation_id",
    )
    .bind(&ada.user_id)
    .fetch_one(&app.db.pool)
    .await
    .expect("operation");
    let findings = app.audit_findings().await;
    assert!(
        findings
            .iter()
            .any(|f| f.contains(&stuck.to_string()) && f.contains("no job")),
        "{findings:?}"
    );
}

#[tokio::test]
async fn initialising_a_deposit_twice_with_one_reference_recovers_the_first_page() {
    use paycore_jobs::money::Currency;
    use paycore_jobs::providers::capability::DepositInit;
    let app = spawn_app().await;
    let gateway = app.providers().gateway;
    let init = DepositInit {
        reference: uuid::Uuid::new_v4().to_string(),
        email: "ada@example.com".into(),
        amount_minor: 500_000,
        currency: Currency::Ngn,
        callback_url: None,
    };
    // The first call reached the gateway but (in the chaos run) its answer was lost with the killed worker.
    let first = gateway.initialize(&init).await.expect("first initialise");
    // The rescued job asks again with the same reference: the same page, not "Duplicate Transaction Reference".
    let again = gateway
        .initialize(&init)
        .await
        .expect("repeated initialise");
    assert_eq!(again.authorization_url, first.authorization_url);
    // Another payment under a used reference is still refused.
    let other = DepositInit {
        amount_minor: 600_000,
        ..init.clone()
    };
    assert!(gateway.initialize(&other).await.is_err());
}

#[tokio::test]
async fn a_deposit_whose_initialisation_runs_twice_still_reaches_its_payment_page() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let key = uuid::Uuid::new_v4().to_string();
    let deposit: Value = post_keyed(
        &app,
        "/api/v1/deposits",
        &ada,
        &key,
        &json!({"wallet_id": ada.wallet_id, "amount": 500_000}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(deposit["status"], "requires_action", "{deposit}");
    let deposit_id: uuid::Uuid = deposit["deposit_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    // The job's run is repeated as after a rescue: the deposit goes back to `initializing` and the job runs
    // again, so the gateway sees the same reference a second time.
    sqlx::query("update deposit set status = 'initializing', authorization_url = null where deposit_id = $1")
        .bind(deposit_id)
        .execute(&app.db.pool)
        .await
        .expect("reset");
    sqlx::query("update operation set status = 'pending' where operation_id = $1")
        .bind(deposit_id)
        .execute(&app.db.pool)
        .await
        .expect("reset");
    let mut tx = app.db.pool.begin().await.expect("tx");
    let job =
        paycore_jobs::engine::NewJob::new(&paycore_jobs::domains::deposit::InitializeDeposit {
            deposit_id,
        })
        .expect("job")
        .for_operation(deposit_id);
    paycore_jobs::engine::enqueue_tx(&mut tx, job)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    paycore_jobs::engine::wake(&app.db.pool, &[paycore_jobs::engine::Queue::Payments]).await;
    let path = format!("/api/v1/deposits/{deposit_id}");
    let again = eventually(SETTLE, "the deposit is payable again", || async {
        let body = app.get_json(&path, &ada.access_token).await;
        (body["status"] != "initializing").then_some(body)
    })
    .await;
    assert_eq!(again["status"], "requires_action", "{again}");
    assert_eq!(again["authorization_url"], deposit["authorization_url"]);
}

/// A payout to the sandbox account whose transfer succeeds and is then returned by the receiving bank.
async fn reversed_payout(app: &TestApp, ada: &TestUser) -> Value {
    let body: Value = post_keyed(
        app,
        "/api/v1/payouts",
        ada,
        &uuid::Uuid::new_v4().to_string(),
        &json!({"wallet_id": ada.wallet_id, "amount": 2_000_000, "bank_code": "058",
                "account_number": "0000000003", "narration": "rent"}),
    )
    .await
    .json()
    .await
    .expect("json");
    let path = format!(
        "/api/v1/payouts/{}",
        body["payout_id"].as_str().expect("id")
    );
    eventually(SETTLE, "the payout is reversed", || async {
        let payout = app.get_json(&path, &ada.access_token).await;
        (payout["status"] == "reversed").then_some(payout)
    })
    .await
}

async fn assert_reversed_once(app: &TestApp, ada: &TestUser, payout: &Value) {
    assert_eq!(payout["status"], "reversed", "{payout}");
    assert_eq!(payout["refunded"], true, "{payout}");
    assert_eq!(payout["operation_status"], "failed", "{payout}");
    assert_eq!(payout["failure_code"], "payout_reversed", "{payout}");
    let refunds = sqlx::query_scalar::<_, i64>(
        "select count(*) from ledger_transfer where code = 'refund' and operation_id = $1::text::uuid",
    )
    .bind(payout["payout_id"].as_str().expect("id"))
    .fetch_one(&app.db.pool)
    .await
    .expect("refunds");
    assert_eq!(refunds, 2, "amount and fee, once");
    assert_eq!(app.available(ada).await, BONUS);
    let findings = app.audit_findings().await;
    assert!(findings.is_empty(), "ledger audit: {findings:?}");
}

#[tokio::test]
async fn a_payout_reversed_after_its_success_was_applied_ends_reversed_with_its_money_back_once() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    // The success webhook is applied first (the payout completes), the reversal later.
    let payout = reversed_payout(&app, &ada).await;
    let success_events: i64 = count(
        &app,
        "select count(*) from webhook_event where event_type = 'transfer.success'",
    )
    .await;
    assert_eq!(success_events, 1);
    assert_reversed_once(&app, &ada, &payout).await;
}

#[tokio::test]
async fn a_payout_whose_reversal_is_the_first_news_ends_in_the_same_state() {
    // Webhooks are refused (not from an allowed address) and the status poll comes after the reversal, so the
    // first thing we learn is that the payout was reversed.
    let app = paycore_tests::app::spawn_app_with(&[
        ("WEBHOOK_ALLOWED_IPS", "203.0.113.7"),
        ("PROVIDER_STATUS_POLL_MS", "2500"),
    ])
    .await;
    let ada = app.register_verified_user("ada").await;
    let payout = reversed_payout(&app, &ada).await;
    assert_eq!(
        count(&app, "select count(*) from webhook_event").await,
        0,
        "no webhook was applied"
    );
    assert_reversed_once(&app, &ada, &payout).await;
}

async fn wallet_action(
    app: &TestApp,
    wallet_id: &str,
    action: &str,
    token: &str,
) -> reqwest::Response {
    app.post(
        &format!("/api/v1/wallets/{wallet_id}/{action}"),
        Some(token),
        &json!({}),
    )
    .await
}

#[tokio::test]
async fn an_owner_lifts_their_own_freeze_but_not_one_an_administrator_placed() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let admin = app
        .admin_token(paycore_jobs::domains::identity::auth::Role::Admin)
        .await;
    let token = ada.access_token.clone();
    // The owner's own freeze is theirs to lift.
    assert_eq!(
        wallet_action(&app, &ada.wallet_id, "freeze", &token)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        wallet_action(&app, &ada.wallet_id, "unfreeze", &token)
            .await
            .status(),
        StatusCode::OK
    );
    // An admin's freeze holds against the owner, even when the owner froze first or freezes again.
    assert_eq!(
        wallet_action(&app, &ada.wallet_id, "freeze", &token)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        wallet_action(&app, &ada.wallet_id, "freeze", &admin)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        wallet_action(&app, &ada.wallet_id, "freeze", &token)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        error_code(
            wallet_action(&app, &ada.wallet_id, "unfreeze", &token).await,
            StatusCode::FORBIDDEN
        )
        .await,
        "wallet_frozen_by_admin"
    );
    assert_eq!(app.wallet(&ada, &ada.wallet_id).await["status"], "frozen");
    let lifted = wallet_action(&app, &ada.wallet_id, "unfreeze", &admin).await;
    assert_eq!(lifted.status(), StatusCode::OK);
    assert_eq!(app.wallet(&ada, &ada.wallet_id).await["status"], "active");
}

#[tokio::test]
async fn a_replay_after_the_operation_settled_answers_the_settled_state() {
    let app = spawn_app().await;
    let (ada, bayo) = (
        app.register_verified_user("ada").await,
        app.register_verified_user("bayo").await,
    );
    let key = uuid::Uuid::new_v4().to_string();
    let first = app
        .transfer_with_key(&ada, &bayo.account_number, 1_000, json!({}), &key, Some(10))
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["status"], "completed", "{first}");
    for wait in [None, Some(5)] {
        let replay = app
            .transfer_with_key(&ada, &bayo.account_number, 1_000, json!({}), &key, wait)
            .await;
        assert_eq!(replay.status(), StatusCode::CREATED, "wait {wait:?}");
        let replay: Value = replay.json().await.expect("json");
        assert_eq!(replay["status"], "completed", "{replay}");
        assert_eq!(replay["transfer_id"], first["transfer_id"]);
    }
    assert_eq!(app.transfer_count().await, 1);

    // The same for a payout, settled through the provider.
    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({"wallet_id": ada.wallet_id, "amount": 100_000, "bank_code": "058",
                      "account_number": "0000000001", "narration": "rent"});
    let first = post_keyed(&app, "/api/v1/payouts", &ada, &key, &body).await;
    assert!(first.status().is_success());
    let first: Value = first.json().await.expect("json");
    let path = format!(
        "/api/v1/payouts/{}",
        first["payout_id"].as_str().expect("id")
    );
    eventually(SETTLE, "the payout completes", || async {
        (app.get_json(&path, &ada.access_token).await["status"] == "completed").then_some(())
    })
    .await;
    let replay = app
        .client
        .post(app.url("/api/v1/payouts"))
        .bearer_auth(&ada.access_token)
        .header("Idempotency-Key", &key)
        .json(&body)
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), StatusCode::CREATED);
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(replay["status"], "completed", "{replay}");
    assert_eq!(replay["payout_id"], first["payout_id"]);
}

#[tokio::test]
async fn a_lost_database_answers_503_with_retry_after_and_the_request_id() {
    let app = paycore_tests::app::spawn_api_only(&[]).await;
    let ada = app.register_verified_user("ada").await;
    // The api's connections go away, as while PostgreSQL restarts.
    app.db.pool.close().await;
    let requests = [
        app.client
            .get(app.url("/api/v1/wallets"))
            .bearer_auth(&ada.access_token),
        app.client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": ada.email, "password": ada.password})),
        app.client
            .post(app.url("/api/v1/transfers"))
            .bearer_auth(&ada.access_token)
            .header("Idempotency-Key", "during-the-restart")
            .json(
                &json!({"from_wallet_id": ada.wallet_id, "to_account_number": ada.account_number,
                          "amount": 1_000, "currency": "NGN"}),
            ),
    ];
    for request in requests {
        let response = request
            .header("x-request-id", "req-during-restart")
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.headers()["x-request-id"],
            "req-during-restart",
            "the client keeps the request id to report and retry"
        );
        let retry_after = response.headers().get("retry-after").cloned();
        assert_eq!(
            error_code(response, StatusCode::SERVICE_UNAVAILABLE).await,
            "database_unavailable"
        );
        assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"2"[..]));
    }
}

#[tokio::test]
async fn paycore_api_creates_the_admin_named_by_admin_email_and_admin_password() {
    let db = paycore_tests::TestDb::new().await.expect("test database");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("address").port()
    };
    let port_text = port.to_string();
    let _api = paycore_tests::Process::spawn(
        "paycore-api",
        "reliability-api-admin",
        &db.url,
        &[],
        &[
            ("HOST", "127.0.0.1"),
            ("PORT", &port_text),
            ("ADMIN_EMAIL", "ops@example.com"),
            ("ADMIN_PASSWORD", "configured admin pw"),
        ],
    );
    let client = reqwest::Client::new();
    let login = eventually(SETTLE, "the configured admin signs in", || async {
        let response = client
            .post(format!("http://127.0.0.1:{port}/api/v1/auth/login"))
            .json(&json!({"email": "ops@example.com", "password": "configured admin pw"}))
            .send()
            .await
            .ok()?;
        (response.status() == StatusCode::OK).then_some(response)
    })
    .await;
    let body: Value = login.json().await.expect("json");
    assert!(body["access_token"].is_string(), "{body}");
    let role: String =
        sqlx::query_scalar("select role from app_user where email = 'ops@example.com'")
            .fetch_one(&db.pool)
            .await
            .expect("admin row");
    assert_eq!(role, "admin");
}
