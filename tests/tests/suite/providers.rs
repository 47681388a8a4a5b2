//! Money in and out through the real provider adapters, over HTTP to the sandbox providers, settled by real
//! workers: deposits (hosted page and bank transfer), their webhooks (forged, stale, replayed, duplicated,
//! reordered, early), payouts (success, failure, reversal, timeouts, 5xx, declines, polling, approval), bill
//! payments (tokens, failures, vend timeouts), beneficiaries and reconciliation. The ledger audit runs after each.

use std::time::Duration;

use chrono::Utc;
use futures::{future::join_all, StreamExt};
use paycore_jobs::providers::signature::hmac_sha512_hex;
use paycore_tests::{
    app::{error_code, spawn_app, spawn_app_with, TestApp, TestUser},
    eventually,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const BONUS: i64 = 10_000_000;
const SETTLE: Duration = Duration::from_secs(30);

/// POSTs with a fresh Idempotency-Key and `Prefer: wait=10`.
async fn post_money(app: &TestApp, path: &str, user: &TestUser, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(&user.access_token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .header("Prefer", "wait=10")
        .json(body)
        .send()
        .await
        .expect("request")
}

/// Polls a resource until `field` is one of `values`; returns the resource.
async fn wait_field(app: &TestApp, path: &str, token: &str, field: &str, values: &[&str]) -> Value {
    eventually(SETTLE, &format!("{path} {field} in {values:?}"), || async {
        let body = app.get_json(path, token).await;
        values.iter().any(|v| body[field] == *v).then_some(body)
    })
    .await
}

async fn balances(app: &TestApp, user: &TestUser) -> (i64, i64) {
    let wallet = app.wallet(user, &user.wallet_id).await;
    (
        wallet["balances"]["available"].as_i64().expect("available"),
        wallet["balances"]["posted"].as_i64().expect("posted"),
    )
}

async fn assert_audit_clean(app: &TestApp) {
    let findings = app.audit_findings().await;
    assert!(findings.is_empty(), "ledger audit: {findings:?}");
}

/// Sends a webhook body signed with the gateway's secret (or `secret`).
async fn send_webhook(app: &TestApp, body: &Value, secret: Option<&str>) -> reqwest::Response {
    let raw = body.to_string();
    let key = secret.unwrap_or(app.config.providers.paystack_secret_key.expose());
    app.client
        .post(app.url("/api/v1/webhooks/paystack"))
        .header("content-type", "application/json")
        .header("x-paystack-signature", hmac_sha512_hex(key, raw.as_bytes()))
        .body(raw)
        .send()
        .await
        .expect("webhook")
}

async fn webhook_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from webhook_event")
        .fetch_one(&app.db.pool)
        .await
        .expect("count")
}

async fn start_deposit(app: &TestApp, user: &TestUser, amount: i64) -> Value {
    let response = post_money(
        app,
        "/api/v1/deposits",
        user,
        &json!({"wallet_id": user.wallet_id, "amount": amount}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "requires_action", "{body}");
    assert_eq!(body["operation_status"], "requires_action");
    assert!(
        body["fee"]["amount"].as_i64().expect("fee") > 0,
        "the fee is shown up front"
    );
    body
}

/// Completes (`pay`) or abandons (`cancel`) the hosted payment page like a customer's browser.
async fn checkout(app: &TestApp, deposit: &Value, action: &str) {
    let url = deposit["authorization_url"].as_str().expect("url");
    let page = app.client.get(url).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains("id=pay"));
    let done = app
        .client
        .post(format!("{url}/{action}"))
        .send()
        .await
        .expect("checkout");
    assert!(done.status().is_success(), "{}", done.status());
}

#[tokio::test]
async fn a_hosted_page_deposit_is_credited_once_minus_the_fee_after_the_gateway_confirms_it() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let deposit = start_deposit(&app, &ada, 500_000).await;
    assert!(deposit["authorization_url"]
        .as_str()
        .expect("url")
        .starts_with(&app.sandbox_url));
    // Nothing is credited before payment.
    assert_eq!(balances(&app, &ada).await, (BONUS, BONUS));
    checkout(&app, &deposit, "pay").await;
    let path = format!(
        "/api/v1/deposits/{}",
        deposit["deposit_id"].as_str().expect("id")
    );
    let done = wait_field(&app, &path, &ada.access_token, "status", &["completed"]).await;
    // 1.5 % of ₦5,000.
    assert_eq!(done["fee"]["amount"], 7_500);
    assert_eq!(done["operation_status"], "succeeded");
    assert_eq!(
        balances(&app, &ada).await,
        (BONUS + 492_500, BONUS + 492_500)
    );
    // The gateway's webhook delivered again (as gateways retry), and replayed: acknowledged, nothing changes.
    let payload: Value = sqlx::query_scalar("select payload from webhook_event limit 1")
        .fetch_one(&app.db.pool)
        .await
        .expect("recorded webhook");
    let again = send_webhook(&app, &payload, None).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        again.json::<Value>().await.expect("json")["status"],
        "duplicate"
    );
    let listed = app.get_json("/api/v1/deposits", &ada.access_token).await;
    assert_eq!(listed["data"].as_array().expect("list").len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        balances(&app, &ada).await,
        (BONUS + 492_500, BONUS + 492_500)
    );
    assert_audit_clean(&app).await;
    // Another user cannot see it.
    let bob = app.register_verified_user("bob").await;
    let response = app.get(&path, &bob.access_token).await;
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "deposit_not_found"
    );
}

#[tokio::test]
async fn declined_and_abandoned_deposits_credit_nothing_and_say_why() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    // Amounts ending in 01 kobo are declined by the sandbox's card issuer.
    let declined = start_deposit(&app, &ada, 500_001).await;
    checkout(&app, &declined, "pay").await;
    let abandoned = start_deposit(&app, &ada, 600_000).await;
    checkout(&app, &abandoned, "cancel").await;
    // No webhook comes for these; the customer's return (or the sweep) asks the gateway.
    for (deposit, code) in [
        (&declined, "payment_declined"),
        (&abandoned, "payment_abandoned"),
    ] {
        let id = deposit["deposit_id"].as_str().expect("id");
        let checked: Value = app
            .client
            .post(app.url(&format!("/api/v1/deposits/{id}/verify")))
            .bearer_auth(&ada.access_token)
            .header("Prefer", "wait=10")
            .send()
            .await
            .expect("verify")
            .json()
            .await
            .expect("json");
        assert_eq!(checked["status"], "failed", "{checked}");
        assert_eq!(checked["failure_code"], code);
    }
    assert_eq!(balances(&app, &ada).await, (BONUS, BONUS));
    assert_audit_clean(&app).await;
}

#[tokio::test]
async fn forged_stale_and_unconfirmed_webhooks_change_nothing() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let deposit = start_deposit(&app, &ada, 500_000).await;
    let reference = deposit["reference"].as_str().expect("reference");
    let event = |at: chrono::DateTime<Utc>, id: i64| {
        json!({"event": "charge.success", "data": {"id": id, "reference": reference, "status": "success",
               "amount": 500_000, "currency": "NGN", "paid_at": at.to_rfc3339()}})
    };
    // A forged signature, a missing one, and a stale timestamp are refused before anything is recorded.
    let forged = send_webhook(&app, &event(Utc::now(), 1), Some("sk_attacker")).await;
    assert_eq!(
        error_code(forged, StatusCode::UNAUTHORIZED).await,
        "invalid_signature"
    );
    let unsigned = app
        .client
        .post(app.url("/api/v1/webhooks/paystack"))
        .json(&event(Utc::now(), 2))
        .send()
        .await
        .expect("webhook");
    assert_eq!(
        error_code(unsigned, StatusCode::UNAUTHORIZED).await,
        "invalid_signature"
    );
    let stale = send_webhook(
        &app,
        &event(Utc::now() - chrono::Duration::hours(2), 3),
        None,
    )
    .await;
    assert_eq!(
        error_code(stale, StatusCode::BAD_REQUEST).await,
        "stale_webhook"
    );
    let garbage = send_webhook(&app, &json!({"hello": "world"}), None).await;
    assert_eq!(
        error_code(garbage, StatusCode::BAD_REQUEST).await,
        "invalid_payload"
    );
    assert_eq!(webhook_events(&app).await, 0);
    // Correctly signed, but the customer never paid: the gateway, asked directly, does not confirm it.
    let early = send_webhook(&app, &event(Utc::now(), 4), None).await;
    assert_eq!(early.status(), StatusCode::OK);
    eventually(SETTLE, "the webhook processed", || async {
        let processed: Option<String> = sqlx::query_scalar(
            "select outcome from webhook_event where event_id = 'charge.success:4' and processed_at is not null",
        )
        .fetch_optional(&app.db.pool)
        .await
        .expect("query");
        processed
    })
    .await;
    let path = format!(
        "/api/v1/deposits/{}",
        deposit["deposit_id"].as_str().expect("id")
    );
    assert_eq!(
        app.get_json(&path, &ada.access_token).await["status"],
        "requires_action"
    );
    assert_eq!(balances(&app, &ada).await, (BONUS, BONUS));
    assert_audit_clean(&app).await;
}

#[tokio::test]
async fn a_bank_transfer_into_the_account_number_is_credited_once_even_when_delivered_concurrently()
{
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let sent: Value = app
        .client
        .post(format!("{}/paystack/_sandbox/bank_transfer", app.sandbox_url))
        .json(&json!({"account_number": ada.account_number, "amount": 1_000_000, "sender_name": "Grace Hopper"}))
        .send()
        .await
        .expect("bank transfer")
        .json()
        .await
        .expect("json");
    let listed = eventually(SETTLE, "the bank transfer deposit", || async {
        let list = app.get_json("/api/v1/deposits", &ada.access_token).await;
        (list["data"][0]["status"] == "completed").then_some(list)
    })
    .await;
    let deposit = &listed["data"][0];
    assert_eq!(deposit["channel"], "bank_transfer");
    assert_eq!(deposit["fee"]["amount"], 15_000);
    assert_eq!(deposit["reference"], sent["data"]["reference"]);
    // The same event delivered eight more times at once: recorded once, credited once.
    let payload: Value = sqlx::query_scalar("select payload from webhook_event limit 1")
        .fetch_one(&app.db.pool)
        .await
        .expect("webhook");
    let mut fresh = payload.clone();
    fresh["data"]["paid_at"] = json!(Utc::now().to_rfc3339());
    let answers = join_all((0..8).map(|_| send_webhook(&app, &payload, None))).await;
    assert!(answers.iter().all(|r| r.status() == StatusCode::OK));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(balances(&app, &ada).await.1, BONUS + 985_000);
    let deposits: i64 = sqlx::query_scalar("select count(*) from deposit")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(deposits, 1);
    assert_audit_clean(&app).await;
}

// ------------------------------------------------------------------------------------------------------------
// Payouts

async fn payout(
    app: &TestApp,
    user: &TestUser,
    amount: i64,
    account_number: &str,
) -> reqwest::Response {
    post_money(
        app,
        "/api/v1/payouts",
        user,
        &json!({"wallet_id": user.wallet_id, "amount": amount, "bank_code": "058",
                "account_number": account_number, "narration": "rent"}),
    )
    .await
}

async fn payout_until(app: &TestApp, user: &TestUser, body: &Value, statuses: &[&str]) -> Value {
    let path = format!(
        "/api/v1/payouts/{}",
        body["payout_id"].as_str().expect("id")
    );
    wait_field(app, &path, &user.access_token, "status", statuses).await
}

/// Transfers the sandbox holds for a reference (exactly one means never sent twice).
async fn provider_transfer(app: &TestApp, reference: &str) -> Value {
    let response: Value = app
        .client
        .get(format!(
            "{}/paystack/transfer/verify/{reference}",
            app.sandbox_url
        ))
        .bearer_auth(app.config.providers.paystack_secret_key.expose())
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    response["data"].clone()
}

#[tokio::test]
async fn banks_and_account_names_come_from_the_provider() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let banks = app.get_json("/api/v1/banks", &ada.access_token).await;
    assert!(banks["data"]
        .as_array()
        .expect("banks")
        .iter()
        .any(|b| b["code"] == "058"));
    let resolved = app
        .get_json(
            "/api/v1/banks/resolve?bank_code=058&account_number=0123456789",
            &ada.access_token,
        )
        .await;
    assert!(!resolved["account_name"].as_str().expect("name").is_empty());
    assert_eq!(resolved["bank_name"], "Guaranty Trust Bank");
    let unknown = app
        .get(
            "/api/v1/banks/resolve?bank_code=058&account_number=0000000000",
            &ada.access_token,
        )
        .await;
    assert_eq!(
        error_code(unknown, StatusCode::UNPROCESSABLE_ENTITY).await,
        "account_not_resolved"
    );
    let bad_bank = app
        .get(
            "/api/v1/banks/resolve?bank_code=999&account_number=0123456789",
            &ada.access_token,
        )
        .await;
    assert_eq!(
        error_code(bad_bank, StatusCode::BAD_REQUEST).await,
        "unknown_bank"
    );
    // A payout to an account that does not resolve holds nothing.
    let refused = payout(&app, &ada, 100_000, "0000000000").await;
    assert_eq!(
        error_code(refused, StatusCode::UNPROCESSABLE_ENTITY).await,
        "account_not_resolved"
    );
    assert_eq!(balances(&app, &ada).await, (BONUS, BONUS));
}

#[tokio::test]
async fn a_payout_holds_at_once_and_posts_when_the_provider_confirms_by_webhook() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let response = payout(&app, &ada, 1_000_000, "0123456789").await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert!(
        status == StatusCode::ACCEPTED || status == StatusCode::CREATED,
        "{status} {body}"
    );
    // ₦10,000 → ₦50 + 1 %, capped at ₦100.
    assert_eq!(body["fee"]["amount"], 10_000);
    assert!(!body["account_name"].as_str().expect("name").is_empty());
    let done = payout_until(&app, &ada, &body, &["completed"]).await;
    assert_eq!(done["operation_status"], "succeeded");
    assert!(done["transfer_code"]
        .as_str()
        .expect("code")
        .starts_with("TRF_"));
    assert_eq!(
        balances(&app, &ada).await,
        (BONUS - 1_010_000, BONUS - 1_010_000)
    );
    assert_audit_clean(&app).await;
}

#[tokio::test]
async fn a_failed_payout_releases_the_hold_and_says_why() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let body: Value = payout(&app, &ada, 300_000, "0000000002")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["fee"]["amount"], 5_000);
    let done = payout_until(&app, &ada, &body, &["failed"]).await;
    assert_eq!(done["failure_code"], "payout_failed");
    assert_eq!(done["failure_message"], "Account is dormant");
    assert_eq!(balances(&app, &ada).await, (BONUS, BONUS));
    // A success event for it later (out of order, and false): the provider, asked, still says failed.
    let reference = body["payout_id"].as_str().expect("id");
    let late = send_webhook(
        &app,
        &json!({"event": "transfer.success", "data": {"id": 987_654, "reference": reference,
                "status": "success", "amount": 300_000, "updated_at": Utc::now().to_rfc3339()}}),
        None,
    )
    .await;
    assert_eq!(late.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let path = format!("/api/v1/payouts/{reference}");
    assert_eq!(
        app.get_json(&path, &ada.access_token).await["status"],
        "failed"
    );
    assert_eq!(balances(&app, &ada).await, (BONUS, BONUS));
    assert_audit_clean(&app).await;
}

#[tokio::test]
async fn a_reversal_after_success_refunds_the_amount_and_fee_with_new_transfers() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let body: Value = payout(&app, &ada, 2_000_000, "0000000003")
        .await
        .json()
        .await
        .expect("json");
    payout_until(&app, &ada, &body, &["completed", "reversed"]).await;
    let done = payout_until(&app, &ada, &body, &["reversed"]).await;
    assert_eq!(done["refunded"], true);
    assert_eq!(balances(&app, &ada).await, (BONUS, BONUS));
    let refunds: i64 = sqlx::query_scalar(
        "select count(*) from ledger_transfer where code = 'refund' and operation_id = $1::text::uuid",
    )
    .bind(body["payout_id"].as_str().expect("id"))
    .fetch_one(&app.db.pool)
    .await
    .expect("refunds");
    assert_eq!(refunds, 2, "amount and fee");
    // The reversal delivered again changes nothing.
    let payload: Value = sqlx::query_scalar(
        "select payload from webhook_event where event_type = 'transfer.reversed'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("reversal webhook");
    send_webhook(&app, &payload, None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(balances(&app, &ada).await, (BONUS, BONUS));
    assert_audit_clean(&app).await;
}

#[tokio::test]
async fn timeouts_5xx_and_silent_providers_still_settle_each_payout_exactly_once() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    // 0004: the provider takes the transfer but answers after our timeout; 0005: two 500s first;
    // 0006: pending until asked twice, no webhook; 0007: succeeds without a webhook.
    let accounts = ["0000000004", "0000000005", "0000000006", "0000000007"];
    let mut bodies = Vec::new();
    for account in accounts {
        let body: Value = payout(&app, &ada, 100_000, account)
            .await
            .json()
            .await
            .expect("json");
        bodies.push(body);
    }
    for body in &bodies {
        let done = payout_until(&app, &ada, body, &["completed", "failed"]).await;
        assert_eq!(done["status"], "completed", "{done}");
        let at_provider = provider_transfer(&app, body["payout_id"].as_str().expect("id")).await;
        assert_eq!(at_provider["status"], "success");
        assert_eq!(at_provider["amount"], 100_000);
    }
    // Fees: ₦50 each for payouts of at most ₦5,000.
    assert_eq!(balances(&app, &ada).await.1, BONUS - 4 * 105_000);
    // The timed-out and the 5xx payouts were retried with backoff.
    let retried: i64 = sqlx::query_scalar(
        "select count(distinct a.job_id) from job_attempt a where a.kind = 'payout.submit' and a.outcome = 'transient'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("attempts");
    assert!(retried >= 2, "retried submits: {retried}");
    assert_audit_clean(&app).await;
}

#[tokio::test]
async fn webhooks_that_race_the_submitting_job_still_settle_each_payout_exactly_once() {
    let app = spawn_app().await;
    // Webhooks leave the provider the moment a transfer is taken, before the job has recorded the answer.
    app.sandbox.set_webhook_delay(Duration::ZERO);
    let ada = app.register_verified_user("ada").await;
    let bodies: Vec<Value> = join_all((0..6).map(|i| {
        let account = if i % 2 == 0 {
            "0123456789"
        } else {
            "0000000002"
        };
        payout(&app, &ada, 100_000, account)
    }))
    .await
    .into_iter()
    .map(|r| async move { r.json::<Value>().await.expect("json") })
    .collect::<futures::stream::FuturesOrdered<_>>()
    .collect()
    .await;
    for (i, body) in bodies.iter().enumerate() {
        let done = payout_until(&app, &ada, body, &["completed", "failed"]).await;
        let expected = if i % 2 == 0 { "completed" } else { "failed" };
        assert_eq!(done["status"], expected, "{done}");
    }
    assert_eq!(
        balances(&app, &ada).await,
        (BONUS - 3 * 105_000, BONUS - 3 * 105_000)
    );
    let resolutions: i64 = sqlx::query_scalar(
        "select count(*) from ledger_transfer where flow in ('post_pending', 'void_pending')",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("count");
    assert_eq!(
        resolutions, 12,
        "each payout's two holds resolved exactly once"
    );
    assert_audit_clean(&app).await;
}

#[tokio::test]
async fn a_declined_payout_voids_the_hold_and_out_of_order_news_cannot_undo_a_success() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let declined: Value = payout(&app, &ada, 100_000, "0000000008")
        .await
        .json()
        .await
        .expect("json");
    let done = payout_until(&app, &ada, &declined, &["failed"]).await;
    assert_eq!(done["failure_code"], "provider_declined");
    assert_eq!(
        done["failure_message"],
        "The receiving bank declined the transfer"
    );
    let ok: Value = payout(&app, &ada, 100_000, "0123456789")
        .await
        .json()
        .await
        .expect("json");
    payout_until(&app, &ada, &ok, &["completed"]).await;
    // A failure event after the success: re-verified with the provider, which says success.
    let late = send_webhook(
        &app,
        &json!({"event": "transfer.failed", "data": {"id": 55_555, "reference": ok["payout_id"],
                "status": "failed", "amount": 100_000, "updated_at": Utc::now().to_rfc3339()}}),
        None,
    )
    .await;
    assert_eq!(late.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let path = format!("/api/v1/payouts/{}", ok["payout_id"].as_str().expect("id"));
    assert_eq!(
        app.get_json(&path, &ada.access_token).await["status"],
        "completed"
    );
    assert_eq!(
        balances(&app, &ada).await,
        (BONUS - 105_000, BONUS - 105_000)
    );
    assert_audit_clean(&app).await;
}

#[tokio::test]
async fn payouts_above_the_threshold_wait_for_an_admin_who_approves_or_rejects_them() {
    let app = spawn_app_with(&[("PAYOUT_APPROVAL_THRESHOLD", "1000000")]).await;
    let ada = app.register_verified_user("ada").await;
    let big: Value = payout(&app, &ada, 2_000_000, "0123456789")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(big["status"], "requires_approval");
    assert_eq!(big["operation_status"], "requires_approval");
    let other: Value = payout(&app, &ada, 3_000_000, "0123456789")
        .await
        .json()
        .await
        .expect("json");
    // Held while waiting.
    assert_eq!(balances(&app, &ada).await.0, BONUS - 2_010_000 - 3_010_000);
    let admin = app
        .admin_token(paycore_jobs::domains::identity::auth::Role::Admin)
        .await;
    let readonly = app
        .admin_token(paycore_jobs::domains::identity::auth::Role::AdminReadonly)
        .await;
    let waiting = app
        .get_json("/api/v1/admin/payouts?status=requires_approval", &admin)
        .await;
    assert_eq!(waiting["data"].as_array().expect("list").len(), 2);
    let approve = |token: String, id: &str| {
        let url = app.url(&format!("/api/v1/admin/payouts/{id}/approve"));
        let client = app.client.clone();
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("approve")
        }
    };
    let big_id = big["payout_id"].as_str().expect("id");
    assert_eq!(
        error_code(
            approve(ada.access_token.clone(), big_id).await,
            StatusCode::FORBIDDEN
        )
        .await,
        "admin_required"
    );
    assert_eq!(
        error_code(approve(readonly, big_id).await, StatusCode::FORBIDDEN).await,
        "admin_required"
    );
    let approved = approve(admin.clone(), big_id).await;
    assert_eq!(approved.status(), StatusCode::OK);
    assert_eq!(
        error_code(approve(admin.clone(), big_id).await, StatusCode::CONFLICT).await,
        "payout_not_awaiting_approval"
    );
    payout_until(&app, &ada, &big, &["completed"]).await;
    let rejected = app
        .client
        .post(app.url(&format!(
            "/api/v1/admin/payouts/{}/reject",
            other["payout_id"].as_str().expect("id")
        )))
        .bearer_auth(&admin)
        .json(&json!({"note": "Please verify your identity first."}))
        .send()
        .await
        .expect("reject");
    assert_eq!(rejected.status(), StatusCode::OK);
    let done = payout_until(&app, &ada, &other, &["rejected"]).await;
    assert_eq!(done["failure_code"], "payout_rejected");
    assert_eq!(
        done["failure_message"],
        "Please verify your identity first."
    );
    assert_eq!(
        balances(&app, &ada).await,
        (BONUS - 2_010_000, BONUS - 2_010_000)
    );
    let audited: i64 = sqlx::query_scalar(
        "select count(*) from admin_audit where action in ('payout.approve', 'payout.reject')",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("audit");
    assert_eq!(audited, 2);
    assert_audit_clean(&app).await;
}

#[tokio::test]
async fn payout_requests_are_idempotent_and_refused_cleanly() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let body = json!({"wallet_id": ada.wallet_id, "amount": 100_000, "bank_code": "058",
                      "account_number": "0123456789"});
    let send = |key: &'static str, body: Value| {
        let request = app
            .client
            .post(app.url("/api/v1/payouts"))
            .bearer_auth(&ada.access_token)
            .header("Idempotency-Key", key)
            .json(&body);
        async move { request.send().await.expect("payout") }
    };
    let answers = join_all((0..5).map(|_| send("same-key", body.clone()))).await;
    let created: Vec<_> = answers
        .iter()
        .filter(|r| r.status() == StatusCode::ACCEPTED || r.status() == StatusCode::CREATED)
        .collect();
    assert!(!created.is_empty());
    assert!(answers
        .iter()
        .all(|r| r.status().is_success() || r.status() == StatusCode::CONFLICT));
    let mut other = body.clone();
    other["amount"] = json!(200_000);
    assert_eq!(
        error_code(
            send("same-key", other).await,
            StatusCode::UNPROCESSABLE_ENTITY
        )
        .await,
        "idempotency_key_reused"
    );
    let count: i64 = sqlx::query_scalar("select count(*) from payout")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
    let mut too_much = body.clone();
    too_much["amount"] = json!(BONUS);
    assert_eq!(
        error_code(
            send("too-much", too_much).await,
            StatusCode::UNPROCESSABLE_ENTITY
        )
        .await,
        "insufficient_funds"
    );
    for (bad, code) in [
        (
            json!({"wallet_id": "nope", "amount": 1, "bank_code": "058", "account_number": "0123456789"}),
            "invalid_id",
        ),
        (
            json!({"wallet_id": ada.wallet_id, "amount": -5, "bank_code": "058", "account_number": "0123456789"}),
            "invalid_amount",
        ),
        (
            json!({"wallet_id": ada.wallet_id, "amount": 5, "bank_code": "058", "account_number": "12"}),
            "invalid_account_number",
        ),
    ] {
        assert_eq!(
            error_code(send("bad", bad).await, StatusCode::BAD_REQUEST).await,
            code
        );
    }
    let payouts = eventually(SETTLE, "the payout settles", || async {
        let list = app.get_json("/api/v1/payouts", &ada.access_token).await;
        (list["data"][0]["status"] == "completed").then_some(list)
    })
    .await;
    assert_eq!(payouts["data"].as_array().expect("list").len(), 1);
    assert_audit_clean(&app).await;
}

// ------------------------------------------------------------------------------------------------------------
// Bills

async fn pay_bill(app: &TestApp, user: &TestUser, body: Value) -> reqwest::Response {
    let mut body = body;
    body["wallet_id"] = json!(user.wallet_id);
    post_money(app, "/api/v1/bills/payments", user, &body).await
}

async fn bill_until(app: &TestApp, user: &TestUser, body: &Value, statuses: &[&str]) -> Value {
    let path = format!(
        "/api/v1/bills/payments/{}",
        body["payment_id"].as_str().expect("id")
    );
    wait_field(app, &path, &user.access_token, "status", statuses).await
}

#[tokio::test]
async fn the_catalogue_lists_every_category_with_packages_and_fees() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let all = app
        .get_json("/api/v1/bills/billers", &ada.access_token)
        .await;
    let names: Vec<&str> = all["data"]
        .as_array()
        .expect("billers")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    for name in [
        "MTN Airtime",
        "Airtel Airtime",
        "Glo Airtime",
        "9mobile Airtime",
        "MTN Data",
        "DStv",
        "GOtv",
        "StarTimes",
        "EKEDC Prepaid",
        "IKEDC Postpaid",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let dstv = app
        .get_json("/api/v1/bills/billers/BIL114", &ada.access_token)
        .await;
    assert_eq!(dstv["fee"], "1 %, at most ₦100");
    assert!(dstv["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .any(|p| p["code"] == "CB114-COMPACT"));
    let electricity = app
        .get_json(
            "/api/v1/bills/billers?category=electricity",
            &ada.access_token,
        )
        .await;
    assert!(electricity["data"]
        .as_array()
        .expect("list")
        .iter()
        .all(|b| b["category"] == "electricity"));
    // The adapter reads the provider's catalogue too.
    let items = app.providers().bills.catalogue().await.expect("catalogue");
    assert!(items
        .iter()
        .any(|i| i.item_code == "CB114-COMPACT" && i.amount_minor == 1_050_000));
}

#[tokio::test]
async fn bills_are_held_vended_and_posted_with_the_electricity_token() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let validated: Value = app
        .post(
            "/api/v1/bills/validate",
            Some(&ada.access_token),
            &json!({"biller_code": "BIL119", "customer_id": "45000000001"}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(validated["valid"], true);
    assert!(validated["address"].is_string());
    let invalid = app
        .post(
            "/api/v1/bills/validate",
            Some(&ada.access_token),
            &json!({"biller_code": "BIL119", "customer_id": "45000009999"}),
        )
        .await;
    assert_eq!(
        error_code(invalid, StatusCode::UNPROCESSABLE_ENTITY).await,
        "customer_validation_failed"
    );

    let airtime: Value = pay_bill(
        &app,
        &ada,
        json!({"biller_code": "BIL099", "customer_id": "08031234567", "amount": 100_000}),
    )
    .await
    .json()
    .await
    .expect("json");
    let airtime = bill_until(&app, &ada, &airtime, &["completed"]).await;
    assert_eq!(airtime["fee"]["amount"], 2_000);
    let power: Value = pay_bill(
        &app,
        &ada,
        json!({"biller_code": "BIL119", "customer_id": "45000000001", "amount": 2_000_000,
               "beneficiary_nickname": "Home meter"}),
    )
    .await
    .json()
    .await
    .expect("json");
    let power = bill_until(&app, &ada, &power, &["completed"]).await;
    assert_eq!(power["fee"]["amount"], 10_000, "1 % capped at ₦100");
    let token = power["token"].as_str().expect("token");
    assert_eq!(token.len(), 24, "{token}");
    assert_eq!(power["token_units"], "20000.00 kWh");
    assert!(power["customer_name"].is_string());
    let tv: Value = pay_bill(
        &app,
        &ada,
        json!({"biller_code": "BIL115", "customer_id": "7012345678", "package_code": "CB115-MAX"}),
    )
    .await
    .json()
    .await
    .expect("json");
    let tv = bill_until(&app, &ada, &tv, &["completed"]).await;
    assert_eq!(
        (
            tv["amount"]["amount"].as_i64(),
            tv["fee"]["amount"].as_i64()
        ),
        (Some(485_000), Some(4_850))
    );
    let spent = 102_000 + 2_010_000 + 489_850;
    assert_eq!(balances(&app, &ada).await, (BONUS - spent, BONUS - spent));
    // History with filters, and the beneficiary saved by the payment.
    let electricity = app
        .get_json(
            "/api/v1/bills/payments?category=electricity",
            &ada.access_token,
        )
        .await;
    assert_eq!(electricity["data"].as_array().expect("list").len(), 1);
    let saved = app
        .get_json("/api/v1/bills/beneficiaries", &ada.access_token)
        .await;
    assert_eq!(saved["data"][0]["nickname"], "Home meter");
    assert_eq!(saved["data"][0]["usage_count"], 1);
    assert_audit_clean(&app).await;
}

#[tokio::test]
async fn a_failed_vend_releases_the_hold_and_a_timed_out_vend_is_resolved_by_status_not_vended_twice(
) {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let failed: Value = pay_bill(
        &app,
        &ada,
        json!({"biller_code": "BIL099", "customer_id": "08030000002", "amount": 50_000}),
    )
    .await
    .json()
    .await
    .expect("json");
    let failed = bill_until(&app, &ada, &failed, &["failed"]).await;
    assert_eq!(failed["failure_code"], "provider_declined");
    let timeout: Value = pay_bill(
        &app,
        &ada,
        json!({"biller_code": "BIL121", "customer_id": "45000000003", "amount": 500_000}),
    )
    .await
    .json()
    .await
    .expect("json");
    let flaky: Value = pay_bill(
        &app,
        &ada,
        json!({"biller_code": "BIL102", "customer_id": "08020000005", "amount": 50_000}),
    )
    .await
    .json()
    .await
    .expect("json");
    let slow: Value = pay_bill(
        &app,
        &ada,
        json!({"biller_code": "BIL103", "customer_id": "08050000006", "amount": 50_000}),
    )
    .await
    .json()
    .await
    .expect("json");
    let timeout = bill_until(&app, &ada, &timeout, &["completed", "failed"]).await;
    assert_eq!(timeout["status"], "completed", "{timeout}");
    assert!(timeout["token"].is_string());
    for body in [&flaky, &slow] {
        let done = bill_until(&app, &ada, body, &["completed", "failed"]).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    // The timed-out vend and the 503s were retried, each reference vended at the provider once.
    let retried: i64 = sqlx::query_scalar(
        "select count(*) from job_attempt where kind = 'bill.vend' and outcome = 'transient'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("attempts");
    assert!(retried >= 3, "transient vend attempts: {retried}");
    // ₦5,000 of electricity (1 % fee) and two ₦500 airtime purchases (₦20 each); the failed one costs nothing.
    let spent = 500_000 + 5_000 + 2 * (50_000 + 2_000);
    assert_eq!(balances(&app, &ada).await, (BONUS - spent, BONUS - spent));
    assert_audit_clean(&app).await;
}

#[tokio::test]
async fn beneficiaries_are_saved_listed_and_deleted_by_their_owner_only() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let bob = app.register_verified_user("bob").await;
    let created = app
        .post(
            "/api/v1/bills/beneficiaries",
            Some(&ada.access_token),
            &json!({"biller_code": "BIL114", "customer_id": "7012345678", "nickname": "Mum's DStv"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let id = created["beneficiary_id"].as_str().expect("id");
    assert_eq!(created["usage_count"], 0);
    let bad = app
        .post(
            "/api/v1/bills/beneficiaries",
            Some(&ada.access_token),
            &json!({"biller_code": "BIL114", "customer_id": "12", "nickname": "x"}),
        )
        .await;
    assert_eq!(
        error_code(bad, StatusCode::BAD_REQUEST).await,
        "invalid_customer_id"
    );
    let delete = |token: &str| {
        app.client
            .delete(app.url(&format!("/api/v1/bills/beneficiaries/{id}")))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        error_code(
            delete(&bob.access_token).await.expect("delete"),
            StatusCode::NOT_FOUND
        )
        .await,
        "beneficiary_not_found"
    );
    assert_eq!(
        delete(&ada.access_token).await.expect("delete").status(),
        StatusCode::NO_CONTENT
    );
    let listed = app
        .get_json("/api/v1/bills/beneficiaries", &ada.access_token)
        .await;
    assert!(listed["data"].as_array().expect("list").is_empty());
}

// ------------------------------------------------------------------------------------------------------------
// Reconciliation

async fn reconcile(app: &TestApp, admin: &str, provider: &str) -> Value {
    let from = Utc::now() - chrono::Duration::hours(1);
    let to = Utc::now() + chrono::Duration::hours(1);
    let response = app
        .post(
            "/api/v1/admin/reconciliation",
            Some(admin),
            &json!({"provider": provider, "from": from.to_rfc3339(), "to": to.to_rfc3339()}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let report: Value = response.json().await.expect("json");
    let path = format!(
        "/api/v1/admin/reconciliation/{}",
        report["report_id"].as_str().expect("id")
    );
    wait_field(
        app,
        &path,
        admin,
        "status",
        &["clean", "mismatched", "failed"],
    )
    .await
}

#[tokio::test]
async fn reconciliation_matches_the_providers_records_and_reports_missing_extra_and_different_amounts(
) {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let admin = app
        .admin_token(paycore_jobs::domains::identity::auth::Role::Admin)
        .await;
    let deposit = start_deposit(&app, &ada, 500_000).await;
    checkout(&app, &deposit, "pay").await;
    wait_field(
        &app,
        &format!(
            "/api/v1/deposits/{}",
            deposit["deposit_id"].as_str().expect("id")
        ),
        &ada.access_token,
        "status",
        &["completed"],
    )
    .await;
    let mut payouts = Vec::new();
    for _ in 0..2 {
        let body: Value = payout(&app, &ada, 100_000, "0123456789")
            .await
            .json()
            .await
            .expect("json");
        payout_until(&app, &ada, &body, &["completed"]).await;
        payouts.push(body["payout_id"].as_str().expect("id").to_owned());
    }
    let bill: Value = pay_bill(
        &app,
        &ada,
        json!({"biller_code": "BIL099", "customer_id": "08031234567", "amount": 100_000}),
    )
    .await
    .json()
    .await
    .expect("json");
    bill_until(&app, &ada, &bill, &["completed"]).await;

    let clean = reconcile(&app, &admin, "paystack").await;
    assert_eq!(clean["status"], "clean", "{clean}");
    assert_eq!(clean["matched"], 3);
    assert_eq!(
        reconcile(&app, &admin, "flutterwave").await["status"],
        "clean"
    );

    let tamper = |body: Value| {
        let url = format!("{}/paystack/_sandbox/tamper", app.sandbox_url);
        let client = app.client.clone();
        async move {
            assert!(client
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("tamper")
                .status()
                .is_success())
        }
    };
    tamper(json!({"kind": "transfer", "reference": payouts[0], "action": "forget"})).await;
    tamper(json!({"kind": "charge", "reference": deposit["reference"], "action": "amount", "amount": 400_000})).await;
    tamper(
        json!({"kind": "transfer", "reference": "TRF-NOT-OURS", "action": "add", "amount": 70_000}),
    )
    .await;
    let report = reconcile(&app, &admin, "paystack").await;
    assert_eq!(report["status"], "mismatched");
    let mut kinds: Vec<(String, String)> = report["mismatches"]
        .as_array()
        .expect("mismatches")
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap_or("").to_owned(),
                m["record"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("amount_differs".to_owned(), "deposit".to_owned()),
            ("extra".to_owned(), "payout".to_owned()),
            ("missing".to_owned(), "payout".to_owned()),
        ]
    );
    let listed = app.get_json("/api/v1/admin/reconciliation", &admin).await;
    assert_eq!(listed["data"].as_array().expect("list").len(), 3);
    let refused = app
        .post(
            "/api/v1/admin/reconciliation",
            Some(&ada.access_token),
            &json!({"provider": "paystack", "from": Utc::now().to_rfc3339(), "to": Utc::now().to_rfc3339()}),
        )
        .await;
    assert_eq!(
        error_code(refused, StatusCode::FORBIDDEN).await,
        "admin_required"
    );
}

#[tokio::test]
async fn the_daily_schedule_reconciles_yesterday_for_every_provider_once() {
    let app = spawn_app().await;
    let daily = paycore_jobs::engine::NewJob::new(
        &paycore_jobs::domains::reconciliation::DailyReconciliation {},
    )
    .expect("job");
    for _ in 0..2 {
        let mut tx = app.db.pool.begin().await.expect("tx");
        paycore_jobs::engine::enqueue_tx(&mut tx, daily.clone())
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
    }
    paycore_jobs::engine::wake(&app.db.pool, &[paycore_jobs::engine::Queue::Reconciliation]).await;
    let reports = eventually(SETTLE, "two finished daily reports", || async {
        let rows: Vec<(String, String, chrono::DateTime<Utc>)> = sqlx::query_as(
            "select provider, status, period_to from reconciliation_report order by provider",
        )
        .fetch_all(&app.db.pool)
        .await
        .expect("reports");
        (rows.len() == 2 && rows.iter().all(|r| r.1 == "clean")).then_some(rows)
    })
    .await;
    assert_eq!(
        (reports[0].0.as_str(), reports[1].0.as_str()),
        ("flutterwave", "paystack")
    );
    assert_eq!(
        reports[0].2,
        Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
    );
}

#[tokio::test]
async fn a_provider_that_is_down_is_retried_with_backoff_until_it_answers_and_the_bill_settles_once(
) {
    // Reserve a port, then free it: the bills provider is "down" there until a sandbox starts on it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr").port()
    };
    let app = spawn_app_with(&[(
        "FLUTTERWAVE_BASE_URL",
        &format!("http://127.0.0.1:{port}/flutterwave/v3"),
    )])
    .await;
    let ada = app.register_verified_user("ada").await;
    let bill: Value = pay_bill(
        &app,
        &ada,
        json!({"biller_code": "BIL099", "customer_id": "08031234567", "amount": 100_000}),
    )
    .await
    .json()
    .await
    .expect("json");
    let id = bill["payment_id"].as_str().expect("id").to_owned();
    eventually(SETTLE, "two failed vend attempts", || async {
        let failures: i64 = sqlx::query_scalar(
            "select count(*) from job_attempt where kind = 'bill.vend' and outcome = 'transient'",
        )
        .fetch_one(&app.db.pool)
        .await
        .expect("attempts");
        (failures >= 2).then_some(())
    })
    .await;
    assert_eq!(
        balances(&app, &ada).await.0,
        BONUS - 102_000,
        "held while the provider is down"
    );
    let (_up, _) = paycore_sandbox::start(paycore_sandbox::SandboxOptions::default(), port)
        .await
        .expect("provider back");
    let done = bill_until(&app, &ada, &json!({"payment_id": id}), &["completed"]).await;
    assert_eq!(done["operation_status"], "succeeded");
    assert_eq!(
        balances(&app, &ada).await,
        (BONUS - 102_000, BONUS - 102_000)
    );
    assert_audit_clean(&app).await;
}
