//! The development-only route that reveals the one-time code of a development-mailbox message, for a developer
//! trying the code flows without an SMTP server. `build_app` mounts it only when `PAYCORE_ENV` is development, so
//! no production process serves it.

use poem::{
    handler,
    web::{Data, Json, Path},
    IntoResponse, Request, Response,
};

use crate::{error::ApiError, AppState};

/// Where the development-only code reveal is mounted (`GET`, with the message's id), outside `/api/v1` and the
/// OpenAPI document because production never serves it.
pub const MAILBOX_CODE_PATH: &str = "/dev/mailbox/:message_id/code";

/// `GET /dev/mailbox/{message_id}/code`: the one-time code of a development-mailbox message, for a developer
/// trying the code flows without an SMTP server. Admin views of the mailbox show the code hidden; this route is
/// mounted only when `PAYCORE_ENV` is development (see `build_app`) and takes an admin that may make changes.
#[handler]
pub async fn mailbox_code(
    Data(state): Data<&AppState>,
    request: &Request,
    Path(message_id): Path<String>,
) -> Response {
    let token = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    match paycore_jobs::domains::identity::auth::principal(&state.pool, &state.keys, token).await {
        Ok(Some(principal))
            if principal.role == paycore_jobs::domains::identity::auth::Role::Admin => {}
        Ok(Some(_)) => {
            return ApiError::forbidden(
                "admin_required",
                "This requires an admin account that may make changes.",
            )
            .into_response()
        }
        Ok(None) => {
            return ApiError::unauthenticated(
                "invalid_token",
                "The access token is invalid, expired or revoked.",
            )
            .into_response()
        }
        Err(error) => return ApiError::internal(error).into_response(),
    }
    let not_found = || {
        ApiError::not_found("code_not_found", "No such message, or it carries no code.")
            .into_response()
    };
    let Ok(message_id) = message_id.parse::<i64>() else {
        return not_found();
    };
    let key = paycore_jobs::notify::sealed::SealKey::from_config(&state.config);
    match paycore_jobs::notify::email::dev_mailbox_code(&state.pool, &key, message_id).await {
        Ok(Some(code)) => {
            Json(serde_json::json!({"message_id": message_id, "code": code})).into_response()
        }
        Ok(None) => not_found(),
        Err(error) => ApiError::from(error).into_response(),
    }
}
