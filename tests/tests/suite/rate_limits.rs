//! Issue 23: the general rate limiter, per user, per address and per route class, and the synchronous provider
//! look-ups under it.

use paycore_tests::app::{error_code, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header")
}

#[tokio::test]
async fn provider_look_ups_are_limited_per_user_with_retry_after_and_other_users_are_not_affected()
{
    let app = spawn_app_with(&[("RATE_LIMIT_LOOKUP", "3,100")]).await;
    let (ada, bayo) = app.register_pair().await;
    let resolve = "/api/v1/banks/resolve?bank_code=058&account_number=0123456789";
    for _ in 0..3 {
        assert_eq!(
            app.get(resolve, &ada.access_token).await.status(),
            StatusCode::OK
        );
    }
    let limited = app.get(resolve, &ada.access_token).await;
    assert!((1..=60).contains(&retry_after(&limited)));
    assert_eq!(
        error_code(limited, StatusCode::TOO_MANY_REQUESTS).await,
        "rate_limited"
    );
    // Customer validation is the same class of look-up.
    let validate = app
        .post(
            "/api/v1/bills/validate",
            Some(&ada.access_token),
            &json!({"biller_code": "BIL119", "customer_id": "45000000001"}),
        )
        .await;
    assert_eq!(
        error_code(validate, StatusCode::TOO_MANY_REQUESTS).await,
        "rate_limited"
    );
    // Other classes and other users go on.
    assert_eq!(
        app.get("/api/v1/users/me", &ada.access_token)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(resolve, &bayo.access_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_general_limiter_counts_per_address_and_answers_in_the_error_shape() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_READ", "100,4"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let ada = app.register_user("ada").await;
    let me = |from: &'static str| {
        let (app, ada) = (&app, &ada);
        async move {
            app.client
                .get(app.url("/api/v1/users/me"))
                .bearer_auth(&ada.access_token)
                .header("X-Forwarded-For", from)
                .send()
                .await
                .expect("me")
        }
    };
    for _ in 0..4 {
        assert_eq!(me("203.0.113.5").await.status(), StatusCode::OK);
    }
    let limited = me("203.0.113.5").await;
    assert!(retry_after(&limited) >= 1);
    assert_eq!(
        error_code(limited, StatusCode::TOO_MANY_REQUESTS).await,
        "rate_limited"
    );
    assert_eq!(me("198.51.100.7").await.status(), StatusCode::OK);
}
