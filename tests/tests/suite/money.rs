//! The money spine through the HTTP API, settled by real workers: registration and the welcome bonus, transfers
//! under concurrency, idempotency, and the ledger audit after each.

use futures::future::join_all;
use paycore_tests::app::{error_code, spawn_app, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const BONUS: i64 = 10_000_000;

async fn subsidy_and_wallet_totals(app: &TestApp) -> (i64, i64, i64) {
    sqlx::query_as(
        "select coalesce(sum(case when code = 'subsidy' then debits_posted - credits_posted end), 0)::bigint,
                coalesce(sum(case when kind = 'wallet' then credits_posted - debits_posted end), 0)::bigint,
                coalesce(sum(case when code = 'fee_income' then credits_posted - debits_posted end), 0)::bigint
         from ledger_account where currency = 'NGN'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("totals")
}

#[tokio::test]
async fn registration_credits_the_bonus_from_the_subsidy_account_and_leaves_the_ledger_balanced() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    let wallet = app.wallet(&ada, &ada.wallet_id).await;
    assert_eq!(wallet["currency"], "NGN");
    assert_eq!(wallet["balances"]["available"], BONUS);
    assert_eq!(wallet["balances"]["posted"], BONUS);
    let number = wallet["account_number"].as_str().expect("number");
    assert!(
        paycore_jobs::money::nuban::is_valid(&app.config.money.bank_code, number),
        "{number} is a NUBAN"
    );
    let (subsidy_out, wallets, _) = subsidy_and_wallet_totals(&app).await;
    assert_eq!((subsidy_out, wallets), (BONUS, BONUS));
    assert!(app.audit_findings().await.is_empty());
    let history = app
        .get_json("/api/v1/transactions", &ada.access_token)
        .await;
    assert_eq!(history["data"][0]["type"], "welcome_bonus");
    assert_eq!(history["data"][0]["direction"], "credit");
    assert_eq!(history["data"][0]["balance_after"], BONUS);
}

#[tokio::test]
async fn the_welcome_bonus_is_configurable_and_zero_disables_it() {
    let app = paycore_tests::app::spawn_app_with(&[("INITIAL_BONUS", "0")]).await;
    let user = app.register_user("nobonus").await;
    assert_eq!(app.available(&user).await, 0);
    assert!(app.audit_findings().await.is_empty());
}

#[tokio::test]
async fn emails_are_unique_regardless_of_case() {
    let app = spawn_app().await;
    let first = app.register_user("case").await;
    let response = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"email": first.email.to_uppercase(), "password": "another password", "full_name": "Copy"}),
        )
        .await;
    // Accepted like any registration (docs/security.md §10), but nothing is created.
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let users: i64 =
        sqlx::query_scalar("select count(*) from app_user where lower(email) = lower($1)")
            .bind(&first.email)
            .fetch_one(&app.db.pool)
            .await
            .expect("count");
    assert_eq!(users, 1);
}

#[tokio::test]
async fn an_instant_transfer_moves_the_amount_and_charges_the_fee_to_fee_income() {
    let app = spawn_app().await;
    let (ada, bayo) = app.register_pair().await;
    let response = app
        .transfer(&ada, &bayo.account_number, 100_000, json!({}))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "settled while waiting"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["operation_status"], "succeeded");
    assert_eq!(body["fee"]["amount"], 1_000, "1 % between different users");
    assert_eq!(app.available(&ada).await, BONUS - 101_000);
    assert_eq!(app.available(&bayo).await, BONUS + 100_000);
    let (_, _, fees) = subsidy_and_wallet_totals(&app).await;
    assert_eq!(fees, 1_000);
    // The operation and the transfer are readable by the sender; the history shows the entry with its fee.
    let op = app
        .get_json(
            &format!(
                "/api/v1/operations/{}",
                body["operation_id"].as_str().expect("op")
            ),
            &ada.access_token,
        )
        .await;
    assert_eq!(op["status"], "succeeded");
    let history = app
        .get_json("/api/v1/transactions?type=transfer", &ada.access_token)
        .await;
    let entry = &history["data"][0];
    assert_eq!(
        (
            entry["direction"].as_str(),
            entry["amount"].as_i64(),
            entry["fee"].as_i64()
        ),
        (Some("debit"), Some(100_000), Some(1_000))
    );
    assert_eq!(entry["status"], "posted");
    assert_eq!(entry["counterparty"], bayo.account_number.as_str());
    assert_eq!(entry["balance_after"], BONUS - 101_000);
    assert!(app.audit_findings().await.is_empty());
}

#[tokio::test]
async fn without_waiting_a_transfer_is_accepted_with_its_funds_held_then_settles() {
    let app = spawn_app().await;
    let (ada, bayo) = app.register_pair().await;
    let response = app
        .transfer_with_key(
            &ada,
            &bayo.account_number,
            50_000,
            json!({}),
            "no-wait-1",
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("json");
    let operation_path = format!(
        "/api/v1/operations/{}",
        body["operation_id"].as_str().expect("op")
    );
    paycore_tests::eventually(
        std::time::Duration::from_secs(10),
        "the transfer to settle",
        || async {
            let op = app.get_json(&operation_path, &ada.access_token).await;
            (op["status"] == "succeeded").then_some(())
        },
    )
    .await;
    assert_eq!(app.available(&bayo).await, BONUS + 50_000);
}

#[tokio::test]
async fn fifty_concurrent_transfers_from_a_wallet_that_affords_thirty_settle_exactly_thirty() {
    let app = spawn_app().await;
    let payer = app.register_user("payer").await;
    let payees = join_all((0..5).map(|i| {
        let app = &app;
        async move { app.register_user(&format!("payee{i}")).await }
    }))
    .await;
    // 330,033 kobo plus its 1 % fee (3,300) is 333,333: thirty cost 9,999,990, thirty-one would cost more than 10M.
    let amount = 330_033;
    let responses = join_all((0..50).map(|i| {
        let to = payees[i % payees.len()].account_number.clone();
        let payer = payer.clone();
        let app = &app;
        async move { app.transfer(&payer, &to, amount, json!({})).await }
    }))
    .await;
    let mut accepted = 0;
    let mut refused = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED | StatusCode::ACCEPTED => accepted += 1,
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(
                    error_code(response, StatusCode::UNPROCESSABLE_ENTITY).await,
                    "insufficient_funds"
                );
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((accepted, refused), (30, 20));
    paycore_tests::eventually(
        std::time::Duration::from_secs(20),
        "every transfer to settle",
        || async {
            let open: i64 = sqlx::query_scalar(
                "select count(*) from operation where status not in ('succeeded', 'failed')",
            )
            .fetch_one(&app.db.pool)
            .await
            .expect("count");
            (open == 0).then_some(())
        },
    )
    .await;
    let wallet = app.wallet(&payer, &payer.wallet_id).await;
    assert_eq!(wallet["balances"]["posted"], BONUS - 30 * 333_333);
    assert_eq!(wallet["balances"]["pending"], 0);
    assert!(wallet["balances"]["available"].as_i64().expect("available") >= 0);
    assert!(app.audit_findings().await.is_empty());
}

#[tokio::test]
async fn opposite_transfers_between_many_pairs_at_once_never_surface_a_deadlock() {
    let app = spawn_app().await;
    let users = join_all((0..8).map(|i| {
        let app = &app;
        async move { app.register_user(&format!("pair{i}")).await }
    }))
    .await;
    let mut requests = Vec::new();
    for round in 0..4 {
        for pair in users.chunks(2) {
            let (a, b) = (&pair[0], &pair[1]);
            requests.push((a.clone(), b.account_number.clone(), 1_000 + round));
            requests.push((b.clone(), a.account_number.clone(), 2_000 + round));
        }
    }
    let responses = join_all(
        requests
            .iter()
            .map(|(from, to, amount)| app.transfer(from, to, *amount, json!({}))),
    )
    .await;
    for response in responses {
        assert!(
            matches!(
                response.status(),
                StatusCode::CREATED | StatusCode::ACCEPTED
            ),
            "every transfer goes through: {}",
            response.status()
        );
    }
    paycore_tests::eventually(std::time::Duration::from_secs(20), "settlement", || async {
        let open: i64 =
            sqlx::query_scalar("select count(*) from operation where status <> 'succeeded'")
                .fetch_one(&app.db.pool)
                .await
                .expect("count");
        (open == 0).then_some(())
    })
    .await;
    assert!(app.audit_findings().await.is_empty());
}

#[tokio::test]
async fn the_same_idempotency_key_replays_the_first_answer_and_a_different_body_is_refused() {
    let app = spawn_app().await;
    let (ada, bayo) = app.register_pair().await;
    let first = app
        .transfer_with_key(&ada, &bayo.account_number, 10_000, json!({}), "key-1", None)
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.expect("json");
    let again = app
        .transfer_with_key(&ada, &bayo.account_number, 10_000, json!({}), "key-1", None)
        .await;
    // The replay answers the operation as it stands: still pending (202), or settled (201) if the
    // worker finished it between the two requests.
    assert!(
        [StatusCode::ACCEPTED, StatusCode::CREATED].contains(&again.status()),
        "the replay answers the same operation, got {}",
        again.status()
    );
    let again: Value = again.json().await.expect("json");
    assert_eq!(first["transfer_id"], again["transfer_id"]);
    let different = app
        .transfer_with_key(&ada, &bayo.account_number, 10_001, json!({}), "key-1", None)
        .await;
    assert_eq!(
        error_code(different, StatusCode::UNPROCESSABLE_ENTITY).await,
        "idempotency_key_reused"
    );
    // Rejections are answers too: the same key replays the same refusal even after funds arrive.
    let too_much = app
        .transfer_with_key(&ada, &bayo.account_number, BONUS, json!({}), "key-2", None)
        .await;
    assert_eq!(
        error_code(too_much, StatusCode::UNPROCESSABLE_ENTITY).await,
        "insufficient_funds"
    );
    let replayed = app
        .transfer_with_key(&ada, &bayo.account_number, BONUS, json!({}), "key-2", None)
        .await;
    assert_eq!(
        error_code(replayed, StatusCode::UNPROCESSABLE_ENTITY).await,
        "insufficient_funds"
    );
    assert_eq!(app.transfer_count().await, 1);
}

#[tokio::test]
async fn an_expired_idempotency_key_is_a_new_key() {
    let app = spawn_app().await;
    let (ada, bayo) = app.register_pair().await;
    let first = app
        .transfer_with_key(
            &ada,
            &bayo.account_number,
            10_000,
            json!({}),
            "old-key",
            None,
        )
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.expect("json");
    sqlx::query("update idempotency_key set expires_at = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .expect("expire the key");
    // Past its expiry the key is claimed afresh, even for a different request.
    let send_second = || {
        app.transfer_with_key(
            &ada,
            &bayo.account_number,
            10_001,
            json!({}),
            "old-key",
            None,
        )
    };
    let second = send_second().await;
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    let second: Value = second.json().await.expect("json");
    assert_ne!(first["transfer_id"], second["transfer_id"]);
    let (hash_rows, live): (i64, bool) = sqlx::query_as(
        "select count(*), bool_and(expires_at > now() and response_status = 202) from idempotency_key",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("keys");
    assert_eq!((hash_rows, live), (1, true), "the key's row was taken over");
    // And it replays the new answer now.
    let again = send_second().await;
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["transfer_id"], second["transfer_id"]);
    assert_eq!(app.transfer_count().await, 2);
}

#[tokio::test]
async fn the_same_idempotency_key_sent_concurrently_makes_exactly_one_transfer() {
    let app = spawn_app().await;
    let (ada, bayo) = app.register_pair().await;
    let responses = join_all((0..8).map(|_| {
        app.transfer_with_key(
            &ada,
            &bayo.account_number,
            7_000,
            json!({}),
            "same-key",
            None,
        )
    }))
    .await;
    let mut ids = std::collections::BTreeSet::new();
    for response in responses {
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::CREATED => {
                let body: Value = response.json().await.expect("json");
                ids.insert(body["transfer_id"].as_str().expect("id").to_owned());
            }
            StatusCode::CONFLICT => {
                assert_eq!(
                    error_code(response, StatusCode::CONFLICT).await,
                    "idempotency_key_in_flight"
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ids.len(), 1, "every success names the same transfer");
    assert_eq!(app.transfer_count().await, 1);
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let app = spawn_app().await;
    let (ada, bayo) = app.register_pair().await;
    let valid = json!({
        "from_wallet_id": ada.wallet_id, "to_account_number": bayo.account_number, "amount": 1000, "currency": "NGN",
    });
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().expect("object").remove(field);
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "negative amount",
            with("amount", json!(-5)),
            "invalid_amount",
        ),
        ("zero amount", with("amount", json!(0)), "invalid_amount"),
        (
            "fractional string amount",
            with("amount", json!("100.5")),
            "malformed_body",
        ),
        (
            "fractional amount",
            with("amount", json!(100.5)),
            "malformed_body",
        ),
        ("huge amount", with("amount", json!(1e20)), "malformed_body"),
        (
            "too large amount",
            with("amount", json!(i64::MAX)),
            "amount_too_large",
        ),
        (
            "unknown currency",
            with("currency", json!("XYZ")),
            "unsupported_currency",
        ),
        (
            "malformed wallet id",
            with("from_wallet_id", json!("not-a-uuid")),
            "invalid_id",
        ),
        (
            "malformed account number",
            with("to_account_number", json!("12ab")),
            "invalid_account_number",
        ),
        ("missing amount", without("amount"), "malformed_body"),
        (
            "missing recipient",
            without("to_account_number"),
            "recipient_required",
        ),
        ("missing currency", without("currency"), "malformed_body"),
        (
            "long narration",
            with("narration", json!("x".repeat(200))),
            "invalid_narration",
        ),
    ];
    for (name, body, code) in cases {
        let response = app
            .client
            .post(app.url("/api/v1/transfers"))
            .bearer_auth(&ada.access_token)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            code,
            "{name}"
        );
    }
    let send =
        |builder: reqwest::RequestBuilder| async move { builder.send().await.expect("request") };
    let url = app.url("/api/v1/transfers");
    let malformed = send(
        app.client
            .post(&url)
            .bearer_auth(&ada.access_token)
            .header("Idempotency-Key", "k1")
            .header("content-type", "application/json")
            .body("{\"amount\": "),
    )
    .await;
    assert_eq!(
        error_code(malformed, StatusCode::BAD_REQUEST).await,
        "malformed_body"
    );
    let wrong_type = send(
        app.client
            .post(&url)
            .bearer_auth(&ada.access_token)
            .header("Idempotency-Key", "k2")
            .header("content-type", "text/plain")
            .body(valid.to_string()),
    )
    .await;
    let status = wrong_type.status();
    assert!(
        matches!(
            status,
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE
        ),
        "{status}"
    );
    assert_eq!(
        error_code(wrong_type, status).await,
        "unsupported_content_type"
    );
    let no_key = send(
        app.client
            .post(&url)
            .bearer_auth(&ada.access_token)
            .json(&valid),
    )
    .await;
    let code = error_code(no_key, StatusCode::BAD_REQUEST).await;
    assert!(
        code == "invalid_parameter" || code == "invalid_request",
        "{code}"
    );
    let no_token = send(
        app.client
            .post(&url)
            .header("Idempotency-Key", "k3")
            .json(&valid),
    )
    .await;
    assert_eq!(
        error_code(no_token, StatusCode::UNAUTHORIZED).await,
        "unauthenticated"
    );

    let operations: i64 = sqlx::query_scalar("select count(*) from operation")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(operations, 0, "no bad request created anything");
    assert_eq!(app.available(&ada).await, BONUS);
}

/// Sends `count` transfers of `amount` from `from` to `to` without waiting; returns their operation ids.
async fn accepted_transfers(
    app: &TestApp,
    from: &paycore_tests::app::TestUser,
    to: &paycore_tests::app::TestUser,
    count: usize,
    amount: i64,
) -> Vec<uuid::Uuid> {
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let response = app
            .transfer_with_key(
                from,
                &to.account_number,
                amount,
                json!({}),
                &format!("batch-{}-{n}", from.wallet_id),
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.expect("json");
        ids.push(
            body["operation_id"]
                .as_str()
                .expect("op")
                .parse()
                .expect("uuid"),
        );
    }
    ids
}

#[tokio::test]
async fn settle_runs_waiting_together_commit_in_one_batch_and_one_bad_transfer_fails_alone() {
    use paycore_jobs::engine::Queue;
    use paycore_tests::{fast_engine, InProcessWorkers};
    // The api alone first, so that the settle jobs wait together for the worker.
    let app = paycore_tests::app::spawn_api_only(&[]).await;
    let (ada, bayo) = app.register_pair().await;
    let good = accepted_transfers(&app, &ada, &bayo, 8, 1_000).await;
    let workers = InProcessWorkers::start_for(
        &app.db.pool,
        &app.config,
        vec![Queue::Payments],
        fast_engine(),
    );
    let settled_in = |ids: Vec<uuid::Uuid>| {
        let pool = app.db.pool.clone();
        async move {
            paycore_tests::eventually(
                std::time::Duration::from_secs(20),
                "the transfers to settle",
                || {
                    let (pool, ids) = (pool.clone(), ids.clone());
                    async move {
                        let open: i64 = sqlx::query_scalar(
                            "select count(*) from operation where operation_id = any($1)
                             and status not in ('succeeded', 'failed')",
                        )
                        .bind(&ids)
                        .fetch_one(&pool)
                        .await
                        .expect("count");
                        (open == 0).then_some(())
                    }
                },
            )
            .await;
            // Rows written in one transaction share its timestamp.
            let transactions: i64 = sqlx::query_scalar(
                "select count(distinct updated_at) from transfer where transfer_id = any($1)",
            )
            .bind(&ids)
            .fetch_one(&pool)
            .await
            .expect("transactions");
            transactions
        }
    };
    let transactions = settled_in(good.clone()).await;
    assert!(
        transactions < 8,
        "8 settle runs waiting together committed in {transactions} transactions"
    );
    workers.stop().await.expect("workers stop");

    // One transfer pointing at another transfer's (settled) hold: its batch cannot commit, every other transfer still settles,
    // and only that one fails.
    let more = accepted_transfers(&app, &bayo, &ada, 6, 2_000).await;
    sqlx::query(
        "update transfer set hold_id = (select hold_id from transfer where transfer_id = $2) where transfer_id = $1",
    )
    .bind(more[0])
    .bind(good[0])
        .execute(&app.db.pool)
        .await
        .expect("corrupt");
    let _workers = InProcessWorkers::start_for(
        &app.db.pool,
        &app.config,
        vec![Queue::Payments],
        fast_engine(),
    );
    settled_in(more.clone()).await;
    let outcomes: Vec<(uuid::Uuid, String, Option<String>)> = sqlx::query_as(
        "select operation_id, status, failure_code from operation where operation_id = any($1)",
    )
    .bind(&more)
    .fetch_all(&app.db.pool)
    .await
    .expect("outcomes");
    for (id, status, failure) in outcomes {
        if id == more[0] {
            assert_eq!(
                (status.as_str(), failure.as_deref()),
                ("failed", Some("ledger_rejected"))
            );
        } else {
            assert_eq!((status.as_str(), failure), ("succeeded", None));
        }
    }
    // Ada sent 8 × 1,000 and received 5 × 2,000, each sender paying its fee (transfers between users).
    let ops_succeeded: i64 = sqlx::query_scalar(
        "select count(*) from operation where kind = 'transfer' and status = 'succeeded'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("count");
    assert_eq!(ops_succeeded, 13);
    let (_, wallets, fees) = subsidy_and_wallet_totals(&app).await;
    assert_eq!(wallets + fees, 2 * BONUS);
}

/// One worked example: the request line, its headers and its JSON body, as a reader copies them.
struct Example {
    path: String,
    idempotency_key: String,
    body: Value,
}

/// The ```http examples of docs/money.md's "Money in requests and responses", with the development server's ids
/// replaced by the test users'.
fn documented_examples(wallet_id: &str, account_number: &str) -> Vec<Example> {
    let text = std::fs::read_to_string(paycore_tests::app::repo_root().join("docs/money.md"))
        .expect("docs/money.md");
    let section = text
        .split("## Money in requests and responses")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the money convention section");
    section
        .split("```http\n")
        .skip(1)
        .map(|block| {
            let block = block.split("```").next().expect("a closed block");
            let (head, body) = block
                .split_once("\n\n")
                .expect("headers, a blank line, a body");
            let mut lines = head.lines();
            let path = lines
                .next()
                .and_then(|line| line.strip_prefix("POST "))
                .expect("a POST line")
                .to_owned();
            let idempotency_key = lines
                .find_map(|line| line.strip_prefix("Idempotency-Key: "))
                .expect("an Idempotency-Key")
                .to_owned();
            let body = body
                .replace("01a24683-9a49-770a-9cf4-f7c8e34f14ae", wallet_id)
                .replace("9205756445", account_number);
            Example {
                path,
                idempotency_key,
                body: serde_json::from_str(&body).expect("the example's body is JSON"),
            }
        })
        .collect()
}

async fn send_example(app: &TestApp, user_token: &str, example: &Example) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(&example.path))
        .bearer_auth(user_token)
        .header("Idempotency-Key", &example.idempotency_key)
        .header("Prefer", "wait=5")
        .json(&example.body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn the_worked_money_examples_of_the_readme_and_the_docs_are_accepted_as_written() {
    let app = spawn_app().await;
    let ada = app.register_verified_user("ada").await;
    let bayo = app.register_user("bayo").await;
    let examples = documented_examples(&ada.wallet_id, &bayo.account_number);
    let paths: Vec<&str> = examples.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/transfers",
            "/api/v1/deposits",
            "/api/v1/payouts",
            "/api/v1/bills/payments"
        ],
        "one example per money endpoint"
    );
    for example in &examples {
        let (status, body) = send_example(&app, &ada.access_token, example).await;
        assert!(
            [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&status),
            "{} as documented: {status} {body}",
            example.path
        );
        // Answers nest money with its currency, the requests' flat amount inside.
        assert_eq!(
            body["amount"]["amount"], example.body["amount"],
            "{}",
            example.path
        );
        assert_eq!(body["amount"]["currency"], "NGN", "{}", example.path);
        assert_eq!(body["fee"]["currency"], "NGN", "{}", example.path);
    }

    // The README's first transfer, with its two placeholders filled in.
    let readme = std::fs::read_to_string(paycore_tests::app::repo_root().join("README.md"))
        .expect("README.md");
    let body = readme
        .split("A first transfer:")
        .nth(1)
        .and_then(|rest| rest.split("-d '").nth(1))
        .and_then(|rest| rest.split('\'').next())
        .expect("the README's first transfer")
        .replace("<your wallet_id>", &ada.wallet_id)
        .replace("<their account_number>", &bayo.account_number);
    let example = Example {
        path: "/api/v1/transfers".into(),
        idempotency_key: "first-transfer".into(),
        body: serde_json::from_str(&body).expect("the README's body is JSON"),
    };
    let (status, answer) = send_example(&app, &ada.access_token, &example).await;
    assert!(
        [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&status),
        "the README's transfer: {status} {answer}"
    );
    assert_eq!(answer["amount"]["currency"], "NGN");
}
