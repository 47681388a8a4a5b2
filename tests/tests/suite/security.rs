//! Issue 23: throttles on guessable secrets and registrations, the client address behind proxies, the general
//! rate limiter, money leaving only verified accounts, re-authentication to loosen limits, and security mail.

use paycore_jobs::domains::identity::auth;
use paycore_tests::app::{error_code, spawn_app, spawn_app_with, TestApp, TestUser};
use reqwest::StatusCode;
use serde_json::{json, Value};

const BONUS: i64 = 10_000_000;

async fn login_from(
    app: &TestApp,
    email: &str,
    password: &str,
    from: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}));
    if let Some(address) = from {
        request = request.header("X-Forwarded-For", address);
    }
    request.send().await.expect("login")
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header")
}

#[tokio::test]
async fn two_hundred_parallel_wrong_sign_ins_check_the_password_at_most_five_times() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    let before = auth::secret_checks();
    let attempts = (0..200).map(|i| {
        let (app, email) = (&app, ada.email.clone());
        async move { login_from(app, &email, &format!("wrong password {i}"), None).await }
    });
    let responses = futures::future::join_all(attempts).await;
    let checked = auth::secret_checks() - before;
    assert!(
        checked <= 5,
        "{checked} password checks against a limit of 5"
    );
    let mut wrong = 0;
    for response in responses {
        match response.status() {
            StatusCode::UNAUTHORIZED => wrong += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry_after(&response) >= 1);
                assert_eq!(
                    error_code(response, StatusCode::TOO_MANY_REQUESTS).await,
                    "too_many_attempts"
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        wrong, checked,
        "every check was a wrong password answered as such"
    );
}

#[tokio::test]
async fn an_attacker_elsewhere_slows_only_himself_and_the_owner_signs_in_from_her_own_address() {
    let app = spawn_app_with(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let ada = app.register_user("ada").await;
    let attacker = Some("203.0.113.5");
    for _ in 0..5 {
        let wrong = login_from(&app, &ada.email, "not her password", attacker).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let slowed = login_from(&app, &ada.email, &ada.password, attacker).await;
    let wait = retry_after(&slowed);
    assert!(
        (1..=60).contains(&wait),
        "a delay, not a 15-minute lock: {wait}"
    );
    assert_eq!(
        error_code(slowed, StatusCode::TOO_MANY_REQUESTS).await,
        "too_many_attempts"
    );
    // The owner, at her own address, with her password.
    let owner = login_from(&app, &ada.email, &ada.password, Some("198.51.100.7")).await;
    assert_eq!(owner.status(), StatusCode::OK);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored_so_rotating_it_does_not_escape_the_throttle(
) {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    for i in 0..5 {
        let fake = format!("203.0.113.{i}");
        let wrong = login_from(&app, &ada.email, "not her password", Some(&fake)).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let refused = login_from(&app, &ada.email, "still not it", Some("192.0.2.99")).await;
    assert_eq!(
        error_code(refused, StatusCode::TOO_MANY_REQUESTS).await,
        "too_many_attempts"
    );
}

#[tokio::test]
async fn the_current_password_on_password_change_and_two_step_is_throttled_before_it_is_checked() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    let before = auth::secret_checks();
    let attempts = (0..50).map(|i| {
        let (app, token) = (&app, ada.access_token.clone());
        async move {
            app.post(
                "/api/v1/auth/password",
                Some(&token),
                &json!({"current_password": format!("guess number {i}"), "new_password": "a new password 1"}),
            )
            .await
        }
    });
    let responses = futures::future::join_all(attempts).await;
    let checked = auth::secret_checks() - before;
    assert!(checked <= 5, "{checked} checks of the current password");
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS));
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::UNPROCESSABLE_ENTITY || *s == StatusCode::TOO_MANY_REQUESTS));
    // The same guesses count for the two-step setting: it is the same secret.
    let response = app
        .client
        .put(app.url("/api/v1/auth/two-step"))
        .bearer_auth(&ada.access_token)
        .json(&json!({"enabled": false, "password": ada.password}))
        .send()
        .await
        .expect("two-step");
    assert_eq!(
        error_code(response, StatusCode::TOO_MANY_REQUESTS).await,
        "too_many_attempts"
    );
}

async fn register_from(app: &TestApp, tag: &str, from: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({
            "email": format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple()),
            "password": "correct horse battery", "full_name": "Sign Up",
        }));
    if let Some(address) = from {
        request = request.header("X-Forwarded-For", address);
    }
    request.send().await.expect("register")
}

#[tokio::test]
async fn thirty_parallel_sign_ups_from_one_address_register_only_the_allowance() {
    let app = spawn_app_with(&[
        ("REGISTRATIONS_PER_ADDRESS_PER_HOUR", "5"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let sign_ups = (0..30).map(|i| {
        let app = &app;
        async move { register_from(app, &format!("bulk{i}"), Some("203.0.113.5")).await }
    });
    let responses = futures::future::join_all(sign_ups).await;
    let created = responses
        .iter()
        .filter(|r| r.status() == StatusCode::ACCEPTED)
        .count();
    assert_eq!(created, 5);
    for response in responses {
        if response.status() != StatusCode::ACCEPTED {
            assert!(retry_after(&response) > 60);
            assert_eq!(
                error_code(response, StatusCode::TOO_MANY_REQUESTS).await,
                "too_many_registrations"
            );
        }
    }
    let users: i64 = sqlx::query_scalar("select count(*) from app_user")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(users, 5, "a refused registration writes nothing");
    let elsewhere = register_from(&app, "neighbour", Some("198.51.100.7")).await;
    assert_eq!(elsewhere.status(), StatusCode::ACCEPTED);
}

async fn post_money(app: &TestApp, path: &str, user: &TestUser, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(&user.access_token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn an_unverified_account_cannot_send_its_welcome_bonus_out_by_payout_or_bill_payment() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    let payout = json!({"wallet_id": ada.wallet_id, "amount": 5_000_000, "bank_code": "058",
                        "account_number": "0123456789", "narration": "cash out"});
    let refused = post_money(&app, "/api/v1/payouts", &ada, &payout).await;
    assert_eq!(
        error_code(refused, StatusCode::UNPROCESSABLE_ENTITY).await,
        "email_not_verified"
    );
    let bill = json!({"wallet_id": ada.wallet_id, "biller_code": "BIL099",
                      "customer_id": "08031234567", "amount": 100_000});
    let refused = post_money(&app, "/api/v1/bills/payments", &ada, &bill).await;
    assert_eq!(
        error_code(refused, StatusCode::UNPROCESSABLE_ENTITY).await,
        "email_not_verified"
    );
    assert_eq!(app.available(&ada).await, BONUS, "nothing held");
    let operations: i64 = sqlx::query_scalar("select count(*) from operation")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(operations, 0);
    // Once the address is verified, the same payout goes.
    sqlx::query("update app_user set email_verified_at = now() where user_id = $1::uuid")
        .bind(&ada.user_id)
        .execute(&app.db.pool)
        .await
        .expect("verify");
    let accepted = post_money(&app, "/api/v1/payouts", &ada, &payout).await;
    assert!(accepted.status().is_success(), "{}", accepted.status());
}

#[tokio::test]
async fn a_password_change_tells_the_owner_by_email() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    let changed = app
        .post(
            "/api/v1/auth/password",
            Some(&ada.access_token),
            &json!({"current_password": ada.password, "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let told: i64 = sqlx::query_scalar(
        "select count(*) from notification where user_id = $1::uuid and kind = 'password_changed'",
    )
    .bind(&ada.user_id)
    .fetch_one(&app.db.pool)
    .await
    .expect("count");
    assert_eq!(told, 1);
}

#[tokio::test]
async fn many_people_signing_in_from_one_office_address_are_not_slowed_by_their_successes() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    // More successful sign-ins than the address's 30 free failures.
    for _ in 0..35 {
        let response = login_from(&app, &ada.email, &ada.password, None).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}
