//! Issue 23: changes that loosen what can leave a wallet need the PIN or the password, and a PIN "change" must
//! change it.

use paycore_tests::app::{error_code, spawn_app, TestApp, TestUser};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn put_limits(app: &TestApp, user: &TestUser, body: Value) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/api/v1/wallets/{}/limits", user.wallet_id)))
        .bearer_auth(&user.access_token)
        .json(&body)
        .send()
        .await
        .expect("limits")
}

#[tokio::test]
async fn raising_or_removing_a_limit_needs_the_pin_or_password_and_lowering_it_does_not() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    let set = put_limits(&app, &ada, json!({"daily_limit": 5_000})).await;
    assert_eq!(set.status(), StatusCode::OK, "setting a limit tightens");
    // Without a PIN, the password re-authenticates.
    let raise = put_limits(&app, &ada, json!({"daily_limit": 50_000})).await;
    assert_eq!(
        error_code(raise, StatusCode::UNPROCESSABLE_ENTITY).await,
        "password_required"
    );
    let wrong = put_limits(
        &app,
        &ada,
        json!({"daily_limit": 50_000, "password": "nope nope"}),
    )
    .await;
    assert_eq!(
        error_code(wrong, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_password"
    );
    let raised = put_limits(
        &app,
        &ada,
        json!({"daily_limit": 50_000, "password": ada.password}),
    )
    .await;
    assert_eq!(raised.status(), StatusCode::OK);
    // With a PIN, the PIN.
    let pin = app
        .client
        .put(app.url(&format!("/api/v1/wallets/{}/pin", ada.wallet_id)))
        .bearer_auth(&ada.access_token)
        .json(&json!({"pin": "8372"}))
        .send()
        .await
        .expect("pin");
    assert_eq!(pin.status(), StatusCode::NO_CONTENT);
    let removed = put_limits(&app, &ada, json!({"daily_limit": null})).await;
    assert_eq!(
        error_code(removed, StatusCode::UNPROCESSABLE_ENTITY).await,
        "pin_required"
    );
    let removed = put_limits(&app, &ada, json!({"daily_limit": null, "pin": "9999"})).await;
    assert_eq!(
        error_code(removed, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_pin"
    );
    let wallet = app.wallet(&ada, &ada.wallet_id).await;
    assert_eq!(wallet["daily_limit"], 50_000, "a refusal changes nothing");
    let lowered = put_limits(&app, &ada, json!({"daily_limit": 1_000})).await;
    assert_eq!(lowered.status(), StatusCode::OK, "lowering needs nothing");
    let removed = put_limits(&app, &ada, json!({"daily_limit": null, "pin": "8372"})).await;
    assert_eq!(removed.status(), StatusCode::OK);
    assert!(app.wallet(&ada, &ada.wallet_id).await["daily_limit"].is_null());
}

#[tokio::test]
async fn a_new_pin_equal_to_the_current_one_is_refused() {
    let app = spawn_app().await;
    let ada = app.register_user("ada").await;
    let pin = |body: Value| {
        let (app, ada) = (&app, &ada);
        async move {
            app.client
                .put(app.url(&format!("/api/v1/wallets/{}/pin", ada.wallet_id)))
                .bearer_auth(&ada.access_token)
                .json(&body)
                .send()
                .await
                .expect("pin")
        }
    };
    assert_eq!(
        pin(json!({"pin": "8372"})).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        error_code(
            pin(json!({"pin": "8372", "current_pin": "8372"})).await,
            StatusCode::UNPROCESSABLE_ENTITY
        )
        .await,
        "pin_unchanged"
    );
    assert_eq!(
        pin(json!({"pin": "5190", "current_pin": "8372"}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
}
