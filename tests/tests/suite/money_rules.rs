//! Who may touch what, sessions and tokens, transfers that need acceptance, PINs, limits, and the order in which a
//! transfer's rejections are reported.

use std::time::Duration;

use futures::future::join_all;
use paycore_tests::{
    app::{error_code, spawn_app, spawn_app_with, TestApp, TestUser},
    eventually,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const BONUS: i64 = 10_000_000;

async fn put(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn login(app: &TestApp, user: &TestUser) -> Value {
    let response = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"email": user.email, "password": user.password}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

async fn settle_all(app: &TestApp) {
    eventually(
        Duration::from_secs(20),
        "every operation to settle",
        || async {
            let open: i64 = sqlx::query_scalar(
                "select count(*) from operation where status in ('pending', 'processing')",
            )
            .fetch_one(&app.db.pool)
            .await
            .expect("count");
            (open == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_user_cannot_see_freeze_spend_from_or_list_another_users_wallets_and_transfers() {
    let app = spawn_app().await;
    let (ada, bayo, eve) = (
        app.register_user("ada").await,
        app.register_user("bayo").await,
        app.register_user("eve").await,
    );
    let sent = app
        .transfer(&ada, &bayo.account_number, 5_000, json!({}))
        .await;
    let transfer: Value = sent.json().await.expect("json");
    let transfer_id = transfer["transfer_id"].as_str().expect("id");

    // Eve probes Ada's wallet and the Ada→Bayo transfer: every answer is "not found", as for ids that do not exist.
    let missing_wallet = uuid::Uuid::now_v7().to_string();
    for wallet_id in [ada.wallet_id.as_str(), missing_wallet.as_str()] {
        let read = app
            .get(&format!("/api/v1/wallets/{wallet_id}"), &eve.access_token)
            .await;
        assert_eq!(
            error_code(read, StatusCode::NOT_FOUND).await,
            "wallet_not_found"
        );
        let freeze = app
            .post(
                &format!("/api/v1/wallets/{wallet_id}/freeze"),
                Some(&eve.access_token),
                &json!({}),
            )
            .await;
        assert_eq!(
            error_code(freeze, StatusCode::NOT_FOUND).await,
            "wallet_not_found"
        );
    }
    let steal = app
        .transfer(
            &TestUser {
                wallet_id: ada.wallet_id.clone(),
                ..eve.clone()
            },
            &eve.account_number,
            1_000,
            json!({}),
        )
        .await;
    assert_eq!(
        error_code(steal, StatusCode::NOT_FOUND).await,
        "wallet_not_found"
    );
    let peek = app
        .get(
            &format!("/api/v1/transfers/{transfer_id}"),
            &eve.access_token,
        )
        .await;
    assert_eq!(
        error_code(peek, StatusCode::NOT_FOUND).await,
        "transfer_not_found"
    );
    let op = app
        .get(
            &format!("/api/v1/operations/{transfer_id}"),
            &eve.access_token,
        )
        .await;
    assert_eq!(
        error_code(op, StatusCode::NOT_FOUND).await,
        "operation_not_found"
    );
    let accept = app
        .post(
            &format!("/api/v1/transfers/{transfer_id}/accept"),
            Some(&eve.access_token),
            &json!({}),
        )
        .await;
    assert_eq!(
        error_code(accept, StatusCode::NOT_FOUND).await,
        "transfer_not_found"
    );
    let ada_entry = app
        .get_json("/api/v1/transactions", &ada.access_token)
        .await["data"][0]["transaction_id"]
        .as_str()
        .expect("entry")
        .to_owned();
    let entry = app
        .get(
            &format!("/api/v1/transactions/{ada_entry}"),
            &eve.access_token,
        )
        .await;
    assert_eq!(
        error_code(entry, StatusCode::NOT_FOUND).await,
        "transaction_not_found"
    );
    let eve_history = app
        .get_json(
            &format!("/api/v1/transactions?wallet_id={}", ada.wallet_id),
            &eve.access_token,
        )
        .await;
    assert_eq!(eve_history["data"].as_array().map(Vec::len), Some(0));
    // Both parties see the transfer; the recipient is not shown the sender's fee as their own.
    assert_eq!(
        app.get(
            &format!("/api/v1/transfers/{transfer_id}"),
            &bayo.access_token
        )
        .await
        .status(),
        StatusCode::OK
    );
    assert_eq!(app.available(&ada).await, BONUS - 5_050);
}

#[tokio::test]
async fn admins_may_freeze_any_wallet_and_a_frozen_wallet_can_neither_send_nor_receive() {
    let app = spawn_app().await;
    let (ada, bayo) = app.register_pair().await;
    let admin = app
        .admin_token(paycore_jobs::domains::identity::auth::Role::Admin)
        .await;
    let frozen = app
        .post(
            &format!("/api/v1/wallets/{}/freeze", bayo.wallet_id),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(frozen.status(), StatusCode::OK);
    let to_frozen = app
        .transfer(&ada, &bayo.account_number, 1_000, json!({}))
        .await;
    assert_eq!(
        error_code(to_frozen, StatusCode::UNPROCESSABLE_ENTITY).await,
        "recipient_wallet_frozen"
    );
    let from_frozen = app
        .transfer(&bayo, &ada.account_number, 1_000, json!({}))
        .await;
    assert_eq!(
        error_code(from_frozen, StatusCode::UNPROCESSABLE_ENTITY).await,
        "wallet_frozen"
    );
    // An admin's freeze is not the owner's to lift (issue 23: this test asserted that bayo could); an admin
    // lifts it.
    let refused = app
        .post(
            &format!("/api/v1/wallets/{}/unfreeze", bayo.wallet_id),
            Some(&bayo.access_token),
            &json!({}),
        )
        .await;
    assert_eq!(
        error_code(refused, StatusCode::FORBIDDEN).await,
        "wallet_frozen_by_admin"
    );
    let unfrozen = app
        .post(
            &format!("/api/v1/wallets/{}/unfreeze", bayo.wallet_id),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(unfrozen.status(), StatusCode::OK);
    assert_eq!(
        app.transfer(&ada, &bayo.account_number, 1_000, json!({}))
            .await
            .status(),
        StatusCode::CREATED
    );
    // A read-only admin may look at the audit but not freeze.
    let readonly = app
        .admin_token(paycore_jobs::domains::identity::auth::Role::AdminReadonly)
        .await;
    let refused = app
        .post(
            &format!("/api/v1/wallets/{}/freeze", ada.wallet_id),
            Some(&readonly),
            &json!({}),
        )
        .await;
    assert_eq!(
        error_code(refused, StatusCode::NOT_FOUND).await,
        "wallet_not_found"
    );
    // Running an audit records it: a write, which read-only means it may not do; it reads the latest one.
    let audit = app
        .post("/api/v1/admin/ledger/audit", Some(&readonly), &json!({}))
        .await;
    assert_eq!(
        error_code(audit, StatusCode::FORBIDDEN).await,
        "admin_required"
    );
    let recorded: i64 = sqlx::query_scalar("select count(*) from ledger_audit")
        .fetch_one(&app.db.pool)
        .await
        .expect("count audits");
    let admin = app
        .admin_token(paycore_jobs::domains::identity::auth::Role::Admin)
        .await;
    let audit = app
        .post("/api/v1/admin/ledger/audit", Some(&admin), &json!({}))
        .await;
    assert_eq!(audit.status(), StatusCode::OK);
    let audit: Value = audit.json().await.expect("json");
    assert_eq!(audit["clean"], true);
    let latest = app.get("/api/v1/admin/ledger/audit", &readonly).await;
    assert_eq!(latest.status(), StatusCode::OK, "read-only admins read it");
    let after: i64 = sqlx::query_scalar("select count(*) from ledger_audit")
        .fetch_one(&app.db.pool)
        .await
        .expect("count audits");
    assert_eq!(after, recorded + 1, "only the admin's audit was recorded");
    let users_cannot = app
        .get("/api/v1/admin/ledger/audit", &ada.access_token)
        .await;
    assert_eq!(
        error_code(users_cannot, StatusCode::FORBIDDEN).await,
        "admin_required"
    );
}

#[tokio::test]
async fn logout_logout_all_and_refresh_token_reuse_revoke_access() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;

    // Logout revokes only this session.
    let second = login(&app, &ada).await;
    let second_token = second["access_token"].as_str().expect("token");
    assert_eq!(
        app.post("/api/v1/auth/logout", Some(second_token), &json!({}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let after_logout = app.get("/api/v1/users/me", second_token).await;
    assert_eq!(
        error_code(after_logout, StatusCode::UNAUTHORIZED).await,
        "invalid_token"
    );
    assert_eq!(
        app.get("/api/v1/users/me", &ada.access_token)
            .await
            .status(),
        StatusCode::OK
    );

    // Refresh rotates; using the old refresh token again revokes the whole family, new tokens included.
    let rotated = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": ada.refresh_token}),
        )
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated: Value = rotated.json().await.expect("json");
    let new_access = rotated["access_token"].as_str().expect("access");
    assert_eq!(
        app.get("/api/v1/users/me", new_access).await.status(),
        StatusCode::OK
    );
    let reuse = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": ada.refresh_token}),
        )
        .await;
    assert_eq!(
        error_code(reuse, StatusCode::UNAUTHORIZED).await,
        "refresh_token_reused"
    );
    assert_eq!(
        error_code(
            app.get("/api/v1/users/me", new_access).await,
            StatusCode::UNAUTHORIZED
        )
        .await,
        "invalid_token"
    );
    let child = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": rotated["refresh_token"]}),
        )
        .await;
    assert_eq!(
        error_code(child, StatusCode::UNAUTHORIZED).await,
        "invalid_refresh_token"
    );

    // Logout-all revokes every session.
    let (third, fourth) = (login(&app, &ada).await, login(&app, &ada).await);
    let third_token = third["access_token"].as_str().expect("token");
    assert_eq!(
        app.post("/api/v1/auth/logout-all", Some(third_token), &json!({}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    for token in [third_token, fourth["access_token"].as_str().expect("token")] {
        assert_eq!(
            error_code(
                app.get("/api/v1/users/me", token).await,
                StatusCode::UNAUTHORIZED
            )
            .await,
            "invalid_token"
        );
    }
    // Garbage tokens get the same answer.
    assert_eq!(
        error_code(
            app.get("/api/v1/users/me", "not.a.jwt").await,
            StatusCode::UNAUTHORIZED
        )
        .await,
        "invalid_token"
    );
}

#[tokio::test]
async fn a_password_change_signs_out_other_sessions_and_failed_logins_are_throttled() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    let other = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"email": ada.email, "password": ada.password}),
        )
        .await;
    let other: Value = other.json().await.expect("json");
    let changed = app
        .post(
            "/api/v1/auth/password",
            Some(&ada.access_token),
            &json!({"current_password": ada.password, "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/users/me", &ada.access_token)
            .await
            .status(),
        StatusCode::OK,
        "this session stays"
    );
    let revoked = app
        .get(
            "/api/v1/users/me",
            other["access_token"].as_str().expect("token"),
        )
        .await;
    assert_eq!(
        error_code(revoked, StatusCode::UNAUTHORIZED).await,
        "invalid_token"
    );

    for _ in 0..5 {
        let wrong = app
            .post(
                "/api/v1/auth/login",
                None,
                &json!({"email": ada.email, "password": "wrong password"}),
            )
            .await;
        assert_eq!(
            error_code(wrong, StatusCode::UNAUTHORIZED).await,
            "invalid_credentials"
        );
    }
    let throttled = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"email": ada.email, "password": "a brand new password"}),
        )
        .await;
    assert_eq!(
        error_code(throttled, StatusCode::TOO_MANY_REQUESTS).await,
        "too_many_attempts"
    );
}

async fn acceptance_transfer(app: &TestApp, from: &TestUser, to: &TestUser, amount: i64) -> String {
    let response = app
        .transfer(
            from,
            &to.account_number,
            amount,
            json!({"require_acceptance": true}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "waits for the recipient"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "awaiting_acceptance");
    body["transfer_id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_transfer_needing_acceptance_holds_the_funds_until_the_recipient_accepts_or_rejects() {
    let app = spawn_app().await;
    let (ada, bayo) = app.register_pair().await;
    let accepted = acceptance_transfer(&app, &ada, &bayo, 20_000).await;
    let ada_wallet = app.wallet(&ada, &ada.wallet_id).await;
    assert_eq!(
        ada_wallet["balances"]["pending"], 20_200,
        "amount and fee held"
    );
    assert_eq!(ada_wallet["balances"]["available"], BONUS - 20_200);
    assert_eq!(
        app.wallet(&bayo, &bayo.wallet_id).await["balances"]["incoming"],
        20_000
    );

    // Only the recipient decides.
    let by_sender = app
        .post(
            &format!("/api/v1/transfers/{accepted}/accept"),
            Some(&ada.access_token),
            &json!({}),
        )
        .await;
    assert_eq!(
        error_code(by_sender, StatusCode::NOT_FOUND).await,
        "transfer_not_found"
    );
    let accept = app
        .client
        .post(app.url(&format!("/api/v1/transfers/{accepted}/accept")))
        .bearer_auth(&bayo.access_token)
        .header("Prefer", "wait=10")
        .send()
        .await
        .expect("accept");
    assert_eq!(accept.status(), StatusCode::OK);
    let body: Value = accept.json().await.expect("json");
    assert_eq!(
        (body["status"].as_str(), body["operation_status"].as_str()),
        (Some("completed"), Some("succeeded"))
    );
    assert_eq!(app.available(&bayo).await, BONUS + 20_000);
    let twice = app
        .post(
            &format!("/api/v1/transfers/{accepted}/accept"),
            Some(&bayo.access_token),
            &json!({}),
        )
        .await;
    assert_eq!(
        error_code(twice, StatusCode::CONFLICT).await,
        "transfer_not_awaiting_acceptance"
    );

    let rejected = acceptance_transfer(&app, &ada, &bayo, 30_000).await;
    let reject = app
        .post(
            &format!("/api/v1/transfers/{rejected}/reject"),
            Some(&bayo.access_token),
            &json!({}),
        )
        .await;
    assert_eq!(reject.status(), StatusCode::ACCEPTED);
    settle_all(&app).await;
    let op = app
        .get_json(&format!("/api/v1/operations/{rejected}"), &ada.access_token)
        .await;
    assert_eq!(
        (op["status"].as_str(), op["failure_code"].as_str()),
        (Some("failed"), Some("transfer_rejected"))
    );
    let ada_wallet = app.wallet(&ada, &ada.wallet_id).await;
    assert_eq!(ada_wallet["balances"]["pending"], 0);
    assert_eq!(
        ada_wallet["balances"]["available"],
        BONUS - 20_200,
        "only the accepted transfer cost anything"
    );
    assert_eq!(app.available(&bayo).await, BONUS + 20_000);
    assert!(app.audit_findings().await.is_empty());
}

#[tokio::test]
async fn an_unanswered_transfer_expires_through_the_scheduler_and_releases_the_senders_hold() {
    let app = spawn_app_with(&[("TRANSFER_ACCEPTANCE_TTL_SECONDS", "1")]).await;
    let (ada, bayo) = app.register_pair().await;
    let transfer_id = acceptance_transfer(&app, &ada, &bayo, 40_000).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let late = app
        .post(
            &format!("/api/v1/transfers/{transfer_id}/accept"),
            Some(&bayo.access_token),
            &json!({}),
        )
        .await;
    assert_eq!(
        error_code(late, StatusCode::CONFLICT).await,
        "transfer_expired"
    );
    // The scheduler fires the expiry schedule (made due now); the worker expires the transfer and voids the hold.
    let schedules = paycore_jobs::app::schedules();
    paycore_jobs::engine::scheduler::sync_schedules(&app.db.pool, &schedules)
        .await
        .expect("sync");
    sqlx::query("update cron_schedule set next_tick_at = date_trunc('second', now()) where name = 'transfers.expire'")
        .execute(&app.db.pool)
        .await
        .expect("make due");
    let fired = paycore_jobs::engine::scheduler::fire_due(&app.db.pool)
        .await
        .expect("fire");
    assert!(fired >= 1);
    eventually(
        Duration::from_secs(15),
        "the transfer to expire",
        || async {
            let op = app
                .get_json(
                    &format!("/api/v1/operations/{transfer_id}"),
                    &ada.access_token,
                )
                .await;
            (op["status"] == "failed").then_some(op)
        },
    )
    .await;
    let op = app
        .get_json(
            &format!("/api/v1/operations/{transfer_id}"),
            &ada.access_token,
        )
        .await;
    assert_eq!(op["failure_code"], "transfer_expired");
    let wallet = app.wallet(&ada, &ada.wallet_id).await;
    assert_eq!(
        (
            wallet["balances"]["pending"].as_i64(),
            wallet["balances"]["available"].as_i64()
        ),
        (Some(0), Some(BONUS))
    );
    assert_eq!(
        app.wallet(&bayo, &bayo.wallet_id).await["balances"]["incoming"],
        0
    );
    assert!(app.audit_findings().await.is_empty());
}

#[tokio::test]
async fn a_wallet_pin_is_required_checked_and_locked_after_five_wrong_entries() {
    let app = spawn_app().await;
    let (ada, bayo) = app.register_pair().await;
    let pin_path = format!("/api/v1/wallets/{}/pin", ada.wallet_id);
    for weak in ["1234", "0000", "12", "abcd"] {
        let response = put(&app, &pin_path, &ada.access_token, json!({"pin": weak})).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_pin_format",
            "{weak}"
        );
    }
    assert_eq!(
        put(&app, &pin_path, &ada.access_token, json!({"pin": "8372"}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let change_without_current =
        put(&app, &pin_path, &ada.access_token, json!({"pin": "5193"})).await;
    assert_eq!(
        error_code(change_without_current, StatusCode::UNPROCESSABLE_ENTITY).await,
        "pin_required"
    );

    let missing = app
        .transfer(&ada, &bayo.account_number, 1_000, json!({}))
        .await;
    assert_eq!(
        error_code(missing, StatusCode::UNPROCESSABLE_ENTITY).await,
        "pin_required"
    );
    for _ in 0..4 {
        let wrong = app
            .transfer(&ada, &bayo.account_number, 1_000, json!({"pin": "1111"}))
            .await;
        assert_eq!(
            error_code(wrong, StatusCode::UNPROCESSABLE_ENTITY).await,
            "invalid_pin"
        );
    }
    let fifth = app
        .transfer(&ada, &bayo.account_number, 1_000, json!({"pin": "1111"}))
        .await;
    assert_eq!(
        error_code(fifth, StatusCode::UNPROCESSABLE_ENTITY).await,
        "pin_locked"
    );
    let right_but_locked = app
        .transfer(&ada, &bayo.account_number, 1_000, json!({"pin": "8372"}))
        .await;
    assert_eq!(
        error_code(right_but_locked, StatusCode::UNPROCESSABLE_ENTITY).await,
        "pin_locked"
    );
    // After the lock passes (moved into the past here) the right PIN works again.
    sqlx::query("update wallet set pin_locked_until = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .expect("unlock");
    let right = app
        .transfer(&ada, &bayo.account_number, 1_000, json!({"pin": "8372"}))
        .await;
    assert_eq!(right.status(), StatusCode::CREATED);
    assert_eq!(app.available(&ada).await, BONUS - 1_010);
}

#[tokio::test]
async fn daily_and_monthly_limits_allow_exactly_the_limit_and_refuse_one_kobo_more() {
    let app = spawn_app().await;
    let bayo = app.register_user("bayo").await;
    // Sending 1,000 costs 1,010 with the fee.
    for (limit_field, limit, expected) in [
        ("daily_limit", 1_010, None),
        ("daily_limit", 1_011, None),
        ("daily_limit", 1_009, Some("daily_limit_exceeded")),
        ("monthly_limit", 1_010, None),
        ("monthly_limit", 1_009, Some("monthly_limit_exceeded")),
    ] {
        let user = app.register_user("limited").await;
        let set = put(
            &app,
            &format!("/api/v1/wallets/{}/limits", user.wallet_id),
            &user.access_token,
            json!({limit_field: limit}),
        )
        .await;
        assert_eq!(set.status(), StatusCode::OK);
        let response = app
            .transfer(&user, &bayo.account_number, 1_000, json!({}))
            .await;
        match expected {
            None => assert_eq!(
                response.status(),
                StatusCode::CREATED,
                "{limit_field}={limit}"
            ),
            Some(code) => assert_eq!(
                error_code(response, StatusCode::UNPROCESSABLE_ENTITY).await,
                code
            ),
        }
    }
    // Spending accumulates over the day: at the limit, one more kobo is refused.
    let user = app.register_user("daily").await;
    put(
        &app,
        &format!("/api/v1/wallets/{}/limits", user.wallet_id),
        &user.access_token,
        json!({"daily_limit": 2_020}),
    )
    .await;
    assert_eq!(
        app.transfer(&user, &bayo.account_number, 1_000, json!({}))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.transfer(&user, &bayo.account_number, 1_000, json!({}))
            .await
            .status(),
        StatusCode::CREATED
    );
    let over = app
        .transfer(&user, &bayo.account_number, 1, json!({}))
        .await;
    assert_eq!(
        error_code(over, StatusCode::UNPROCESSABLE_ENTITY).await,
        "daily_limit_exceeded"
    );
}

#[tokio::test]
async fn transfer_rejections_come_in_their_documented_order_of_precedence() {
    let app = spawn_app().await;
    let (ada, bayo) = app.register_pair().await;
    let usd = app
        .post(
            "/api/v1/wallets",
            Some(&bayo.access_token),
            &json!({"currency": "USD"}),
        )
        .await;
    assert_eq!(usd.status(), StatusCode::CREATED);
    let usd: Value = usd.json().await.expect("json");
    let duplicate = app
        .post(
            "/api/v1/wallets",
            Some(&bayo.access_token),
            &json!({"currency": "USD"}),
        )
        .await;
    assert_eq!(
        error_code(duplicate, StatusCode::CONFLICT).await,
        "wallet_exists"
    );
    let usd_number = usd["account_number"].as_str().expect("number");

    put(
        &app,
        &format!("/api/v1/wallets/{}/pin", ada.wallet_id),
        &ada.access_token,
        json!({"pin": "8372"}),
    )
    .await;
    put(
        &app,
        &format!("/api/v1/wallets/{}/limits", ada.wallet_id),
        &ada.access_token,
        json!({"daily_limit": 5_000}),
    )
    .await;
    app.post(
        &format!("/api/v1/wallets/{}/freeze", ada.wallet_id),
        Some(&ada.access_token),
        &json!({}),
    )
    .await;
    let too_much = BONUS * 2;
    let code = |response: reqwest::Response| async move {
        let status = response.status();
        error_code(response, status).await
    };
    // Each step fixes the first problem and reveals the next.
    assert_eq!(
        code(
            app.transfer(&ada, "0000000000", too_much, json!({"currency": "USD"}))
                .await
        )
        .await,
        "currencies_must_match"
    );
    assert_eq!(
        code(app.transfer(&ada, "0000000000", too_much, json!({})).await).await,
        "recipient_not_found"
    );
    assert_eq!(
        code(
            app.transfer(&ada, &ada.account_number, too_much, json!({}))
                .await
        )
        .await,
        "same_wallet"
    );
    assert_eq!(
        code(app.transfer(&ada, usd_number, too_much, json!({})).await).await,
        "currencies_must_match"
    );
    assert_eq!(
        code(
            app.transfer(&ada, &bayo.account_number, too_much, json!({}))
                .await
        )
        .await,
        "wallet_frozen"
    );
    app.post(
        &format!("/api/v1/wallets/{}/unfreeze", ada.wallet_id),
        Some(&ada.access_token),
        &json!({}),
    )
    .await;
    assert_eq!(
        code(
            app.transfer(&ada, &bayo.account_number, too_much, json!({}))
                .await
        )
        .await,
        "pin_required"
    );
    let with_pin = json!({"pin": "8372"});
    assert_eq!(
        code(
            app.transfer(&ada, &bayo.account_number, too_much, with_pin.clone())
                .await
        )
        .await,
        "daily_limit_exceeded"
    );
    // Removing a limit loosens it: the PIN is required (issue 23, item 7).
    put(
        &app,
        &format!("/api/v1/wallets/{}/limits", ada.wallet_id),
        &ada.access_token,
        json!({"pin": "8372"}),
    )
    .await;
    assert_eq!(
        code(
            app.transfer(&ada, &bayo.account_number, too_much, with_pin.clone())
                .await
        )
        .await,
        "insufficient_funds"
    );
    assert_eq!(
        app.transfer(&ada, &bayo.account_number, 1_000, with_pin)
            .await
            .status(),
        StatusCode::CREATED
    );
    let operations: i64 = sqlx::query_scalar("select count(*) from operation")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(operations, 1, "rejections record no operation");
}

#[tokio::test]
async fn a_randomized_workload_of_transfers_rejections_and_retries_keeps_the_ledger_exact() {
    let app = spawn_app().await;
    let users: Vec<TestUser> = join_all((0..6).map(|i| {
        let app = &app;
        async move { app.register_user(&format!("rand{i}")).await }
    }))
    .await;
    // A fixed seed keeps a failure reproducible.
    let mut seed: u64 = 0x5eed_1234_abcd_0001;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut batch = Vec::new();
    for round in 0..120 {
        let from = (next() % users.len() as u64) as usize;
        let to = (from + 1 + (next() % (users.len() as u64 - 1)) as usize) % users.len();
        // Mostly affordable amounts, sometimes far too much; sometimes the same key is sent twice.
        let amount = if next() % 10 == 0 {
            BONUS * 3
        } else {
            1 + (next() % 400_000) as i64
        };
        let key = format!("rand-{round}");
        let repeats = if next() % 4 == 0 { 2 } else { 1 };
        let acceptance = next() % 5 == 0;
        for _ in 0..repeats {
            batch.push((
                users[from].clone(),
                users[to].account_number.clone(),
                amount,
                key.clone(),
                acceptance,
            ));
        }
    }
    for chunk in batch.chunks(24) {
        let responses = join_all(chunk.iter().map(|(from, to, amount, key, acceptance)| {
            app.transfer_with_key(
                from,
                to,
                *amount,
                json!({"require_acceptance": acceptance}),
                key,
                None,
            )
        }))
        .await;
        for response in responses {
            let status = response.status();
            assert!(
                // A replay answers the transfer as it is now: 201 once the first request settled.
                matches!(
                    status,
                    StatusCode::ACCEPTED
                        | StatusCode::CREATED
                        | StatusCode::UNPROCESSABLE_ENTITY
                        | StatusCode::CONFLICT
                ),
                "unexpected {status}"
            );
        }
    }
    // Recipients answer half of the transfers awaiting acceptance; the rest expire later (still held now).
    let awaiting: Vec<(String, String)> = sqlx::query_as(
        "select t.transfer_id::text, w.user_id::text from transfer t join wallet w on w.wallet_id = t.to_wallet_id
         where t.status = 'awaiting_acceptance'",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("awaiting");
    for (index, (transfer_id, owner)) in awaiting.iter().enumerate() {
        let user = users.iter().find(|u| &u.user_id == owner).expect("owner");
        let action = if index % 2 == 0 { "accept" } else { "reject" };
        let response = app
            .post(
                &format!("/api/v1/transfers/{transfer_id}/{action}"),
                Some(&user.access_token),
                &json!({}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    settle_all(&app).await;
    assert!(
        app.audit_findings().await.is_empty(),
        "{:?}",
        app.audit_findings().await
    );
    let total: i64 = sqlx::query_scalar(
        "select sum(credits_posted - debits_posted)::bigint from ledger_account
         where currency = 'NGN' and (kind = 'wallet' or code = 'fee_income')",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("total");
    assert_eq!(
        total,
        BONUS * users.len() as i64,
        "wallets and fees hold exactly the bonuses issued"
    );
    let duplicates: i64 = sqlx::query_scalar(
        "select count(*) from (select user_id, idempotency_key from idempotency_key group by 1, 2 having count(*) > 1) d",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("dupes");
    assert_eq!(duplicates, 0);
}
