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
