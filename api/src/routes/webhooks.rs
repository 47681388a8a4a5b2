//! `POST /api/v1/webhooks/paystack`: the payment gateway's signed events. A plain endpoint (not a JSON API
//! operation) because the signature covers the exact raw body.

use paycore_jobs::domains::webhook::{self, WebhookAck, WebhookError};
use paycore_jobs::providers::inbox::WebhookRejection;
use poem::{handler, http::StatusCode, web::Data, Body, IntoResponse, Request, Response};

use crate::{error::ApiError, AppState};

#[handler]
pub async fn paystack(Data(state): Data<&AppState>, request: &Request, body: Body) -> Response {
    let bytes = match body.into_bytes_limit(crate::REQUEST_BODY_BYTES_MAX).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::invalid("invalid_payload", "The body could not be read.", None)
                .into_response()
        }
    };
    let remote_ip = request.remote_addr().as_socket_addr().map(|a| a.ip());
    let signature = request.header("x-paystack-signature");
    match webhook::receive_paystack(
        &state.pool,
        &state.config.providers,
        remote_ip,
        signature,
        &bytes,
    )
    .await
    {
        Ok(ack) => {
            let (status, event_id) = match ack {
                WebhookAck::Accepted { event_id } => ("accepted", event_id),
                WebhookAck::Duplicate { event_id } => ("duplicate", event_id),
                WebhookAck::Ignored { event_id } => ("ignored", event_id),
            };
            poem::web::Json(serde_json::json!({"status": status, "event_id": event_id}))
                .with_status(StatusCode::OK)
                .into_response()
        }
        Err(WebhookError::Rejected(rejection)) => {
            tracing::warn!(code = rejection.code(), "webhook rejected");
            let message = rejection.to_string();
            match rejection {
                WebhookRejection::IpNotAllowed => ApiError::forbidden(rejection.code(), message),
                WebhookRejection::InvalidSignature => {
                    ApiError::unauthenticated(rejection.code(), message)
                }
                _ => ApiError::invalid(rejection.code(), message, None),
            }
            .into_response()
        }
        Err(WebhookError::Database(error)) => ApiError::internal(error).into_response(),
    }
}
