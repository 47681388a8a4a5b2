//! The HTTP front's conventions: health, readiness, metrics, documentation, request ids and the error shape.

use paycore_tests::app::spawn_app;
use reqwest::StatusCode;
use serde_json::Value;

/// Asserts the documented error shape and returns `error.code`.
async fn error_code(response: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = response.json().await.expect("json body");
    let error = &body["error"];
    for field in ["type", "code", "message"] {
        assert!(error[field].is_string(), "error.{field} missing in {body}");
    }
    error["code"].as_str().expect("code").to_owned()
}

#[tokio::test]
async fn health_and_readiness_report_the_database_migrations_and_queue_lag() {
    let app = spawn_app().await;
    let health: Value = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(response.status(), StatusCode::OK);
    let ready: Value = response.json().await.expect("json");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["migrations"], "current");
    let queues: Vec<&str> = ready["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .filter_map(|q| q["queue"].as_str())
        .collect();
    for queue in [
        "payments",
        "emails",
        "cards",
        "reconciliation",
        "kyc",
        "loan-schedules",
    ] {
        assert!(queues.contains(&queue), "{queue} in {queues:?}");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_jobs_by_queue_and_state() {
    let app = spawn_app().await;
    app.client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    app.client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .expect("404");
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(
            r#"paycore_http_requests_total{route="/healthz",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"status="404""#));
    assert!(text.contains("paycore_http_request_duration_seconds_bucket"));
    assert!(text.contains(r#"paycore_jobs{queue="payments",state="dead"} 0"#));
    assert!(text.contains("paycore_queue_oldest_due_job_age_seconds"));
}

#[tokio::test]
async fn the_openapi_document_and_the_offline_swagger_ui_are_served() {
    let app = spawn_app().await;
    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    assert!(spec["openapi"].as_str().unwrap_or("").starts_with("3."));
    assert!(spec["paths"]["/readyz"].is_object());
    let docs = app.client.get(app.url("/docs")).send().await.expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await.expect("html");
    assert!(html.contains("swagger"), "Swagger UI page");
    assert!(
        !html.contains("cdn.") && !html.contains("unpkg"),
        "no CDN: the UI works offline"
    );
}

#[tokio::test]
async fn a_request_id_is_echoed_when_sane_and_generated_otherwise() {
    let app = spawn_app().await;
    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("req");
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    let generated = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("req");
    assert_eq!(
        generated.headers()["x-request-id"]
            .to_str()
            .expect("id")
            .len(),
        36
    );
    let hostile = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .expect("req");
    assert_eq!(
        hostile.headers()["x-request-id"]
            .to_str()
            .expect("id")
            .len(),
        36
    );
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_oversized_bodies_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let unknown = app
        .client
        .get(app.url("/api/v1/nothing-here"))
        .send()
        .await
        .expect("req");
    assert_eq!(
        error_code(unknown, StatusCode::NOT_FOUND).await,
        "route_not_found"
    );
    let wrong_method = app
        .client
        .delete(app.url("/healthz"))
        .send()
        .await
        .expect("req");
    assert_eq!(
        error_code(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
    let big = vec![b'a'; paycore_api::REQUEST_BODY_BYTES_MAX + 1];
    let oversized = app
        .client
        .post(app.url("/healthz"))
        .body(big.clone())
        .send()
        .await
        .expect("req");
    assert_eq!(
        error_code(oversized, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );
    // A chunked body has no length to check up front; it is cut off while being read.
    let stream = futures::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let chunked = app
        .client
        .post(app.url("/healthz"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("req");
    assert_eq!(
        error_code(chunked, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );
}

#[tokio::test]
async fn a_body_field_of_another_json_type_is_refused_by_name_not_coerced() {
    let app = spawn_app().await;
    // poem-openapi alone would read the number 123 as the e-mail "123".
    let response = app
        .post(
            "/api/v1/auth/login",
            None,
            &serde_json::json!({"email": 123, "password": "whatever password"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "malformed_body");
    assert_eq!(body["error"]["param"], "email");

    let user = app.register_user("types").await;
    let before = app.transfer_count().await;
    let response = app
        .transfer_with_key(
            &user,
            &user.account_number,
            100,
            serde_json::json!({"narration": 5}),
            "typed-narration",
            None,
        )
        .await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "malformed_body", "{body}");
    assert_eq!(body["error"]["param"], "narration");
    assert_eq!(app.transfer_count().await, before, "nothing was written");
}

#[tokio::test]
async fn a_wrong_method_names_the_allowed_ones_and_a_missing_content_type_is_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/api/v1/transfers"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(
        error_code(response, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
    let response = app
        .client
        .put(app.url("/api/v1/wallets"))
        .send()
        .await
        .expect("put");
    assert_eq!(response.headers()["allow"], "GET, HEAD, POST");

    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .body("email=a@b.c")
        .send()
        .await
        .expect("login");
    assert_eq!(
        error_code(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await,
        "unsupported_content_type"
    );
}

#[tokio::test]
async fn the_document_states_the_limits_the_server_enforces_and_which_fields_may_be_null() {
    let app = spawn_app().await;
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let schemas = &document["components"]["schemas"];
    for (schema, field) in [
        ("WalletBody", "daily_limit"),
        ("WalletBody", "monthly_limit"),
        ("TransactionBody", "reference"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["nullable"], true,
            "{schema}.{field}"
        );
    }
    let transfer = &schemas["CreateTransferRequest"]["properties"];
    assert_eq!(transfer["from_wallet_id"]["format"], "uuid");
    assert_eq!(transfer["amount"]["minimum"], 1.0);

    let create = &document["paths"]["/api/v1/transfers"]["post"];
    let parameters = create["parameters"].as_array().expect("parameters");
    let key = parameters
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("Idempotency-Key");
    assert_eq!(key["schema"]["minLength"], 1);
    assert_eq!(key["schema"]["maxLength"], 255);
    assert!(create["responses"]["415"].is_object());
    assert!(create["responses"]["429"].is_object());

    let list = &document["paths"]["/api/v1/payouts"]["get"]["parameters"];
    let limit = list
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("limit");
    assert_eq!(limit["schema"]["minimum"], 1.0);
    assert_eq!(limit["schema"]["maximum"], 100.0);
}
