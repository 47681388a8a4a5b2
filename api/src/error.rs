//! The API's one error type and its JSON shape (docs/architecture.md §6):
//! `{"error": {"type", "code", "message", "param"}}` with the matching status.
//!
//! Endpoints return `ApiError`; parse failures of poem-openapi come through `bad_request`; anything else poem
//! produces on its own (unknown route, wrong method, oversize body) is reshaped by the `observe` middleware with
//! `from_status`. A 500 never carries its cause: the cause chain is logged with the request id.

use poem::{error::ResponseError, http::StatusCode, IntoResponse};
use poem_openapi::{payload::Json, ApiResponse, Object};

#[derive(Debug, Clone, Object)]
pub struct ErrorDetail {
    /// `invalid_request`, `authentication`, `permission`, `not_found`, `conflict`, `rate_limit` or `api`.
    #[oai(rename = "type")]
    pub kind: String,
    /// A precise, stable, machine-readable code such as `insufficient_funds`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The request field the error is about, when there is one.
    #[oai(skip_serializing_if_is_none)]
    #[oai(nullable)]
    pub param: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum ApiError {
    /// The request is malformed or invalid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or invalid credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Authenticated, but not allowed.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such resource (or not yours).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the current state, or one with the same idempotency key is in flight.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is not JSON (`Content-Type` missing or another media type).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Well-formed but refused by a business rule.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests: try again after `Retry-After` seconds, when given.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] Option<u64>),
    /// Something went wrong on our side.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency is unavailable.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A body field whose JSON type is not the one documented.
#[derive(Debug)]
pub struct FieldTypeError {
    /// The field's path in the body, such as `email` or `items[2].amount`; empty for the body itself.
    pub field: String,
    pub expected: &'static str,
}

impl std::fmt::Display for FieldTypeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(formatter, "The body must be {}.", self.expected)
        } else {
            write!(formatter, "`{}` must be {}.", self.field, self.expected)
        }
    }
}

impl std::error::Error for FieldTypeError {}

impl FieldTypeError {
    /// The error in the API's shape: `400 malformed_body`, naming the field.
    pub fn to_api_error(&self) -> ApiError {
        let param = (!self.field.is_empty()).then_some(self.field.as_str());
        ApiError::BadRequest(body(
            "invalid_request",
            "malformed_body",
            self.to_string(),
            param,
        ))
    }
}

impl ResponseError for FieldTypeError {
    fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    fn as_response(&self) -> poem::Response {
        self.to_api_error().into_response()
    }
}

fn body(
    kind: &str,
    code: &str,
    message: impl Into<String>,
    param: Option<&str>,
) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: ErrorDetail {
            kind: kind.to_owned(),
            code: code.to_owned(),
            message: message.into(),
            param: param.map(str::to_owned),
        },
    })
}

impl ApiError {
    pub fn invalid(code: &str, message: impl Into<String>, param: Option<&str>) -> Self {
        Self::BadRequest(body("invalid_request", code, message, param))
    }
    pub fn unauthenticated(code: &str, message: impl Into<String>) -> Self {
        Self::Unauthorized(body("authentication", code, message, None))
    }
    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::Forbidden(body("permission", code, message, None))
    }
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::NotFound(body("not_found", code, message, None))
    }
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::Conflict(body("conflict", code, message, None))
    }
    pub fn rejected(code: &str, message: impl Into<String>, param: Option<&str>) -> Self {
        Self::Unprocessable(body("invalid_request", code, message, param))
    }
    pub fn rate_limited(code: &str, message: impl Into<String>) -> Self {
        Self::TooManyRequests(body("rate_limit", code, message, None), None)
    }
    /// A 429 that says when to try again (`Retry-After`, whole seconds).
    pub fn rate_limited_for(
        code: &str,
        message: impl Into<String>,
        retry_after_seconds: u64,
    ) -> Self {
        Self::TooManyRequests(
            body("rate_limit", code, message, None),
            Some(retry_after_seconds.max(1)),
        )
    }
    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        Self::Unavailable(body("api", code, message, None))
    }

    /// An infrastructure failure: logged in full, answered generically. A lost database (connection refused,
    /// pool timeout, the server shutting down or restarting) is a 503 `database_unavailable` with `Retry-After`:
    /// nothing was committed, and the client retries with the same Idempotency-Key.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        let error = error.into();
        if database_unavailable(&error) {
            tracing::warn!(error = format!("{error:#}"), "database unavailable");
            return Self::Unavailable(body(
                "api",
                "database_unavailable",
                "The service is briefly unavailable; retry the request with the same Idempotency-Key.",
                None,
            ));
        }
        tracing::error!(error = format!("{error:#}"), "internal error");
        Self::Internal(body(
            "api",
            "internal_error",
            "An internal error occurred.",
            None,
        ))
    }

    /// The error shape for a status that poem produced by itself, keeping its message when it is safe to show.
    pub fn from_status(status: StatusCode, poem_message: &str) -> Json<ErrorBody> {
        let message = if poem_message.trim().is_empty() || status.is_server_error() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            poem_message.trim().to_owned()
        };
        match status {
            StatusCode::NOT_FOUND => body("not_found", "route_not_found", "No such route.", None),
            StatusCode::METHOD_NOT_ALLOWED => body(
                "invalid_request",
                "method_not_allowed",
                "This method is not allowed on this route.",
                None,
            ),
            StatusCode::PAYLOAD_TOO_LARGE => {
                body("invalid_request", "payload_too_large", message, None)
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                body("invalid_request", "unsupported_content_type", message, None)
            }
            StatusCode::UNAUTHORIZED => body(
                "authentication",
                "unauthenticated",
                "A valid bearer token is required.",
                None,
            ),
            StatusCode::FORBIDDEN => body("permission", "forbidden", message, None),
            StatusCode::CONFLICT => body("conflict", "conflict", message, None),
            StatusCode::TOO_MANY_REQUESTS => body("rate_limit", "rate_limited", message, None),
            status if status.is_server_error() => {
                body("api", "internal_error", "An internal error occurred.", None)
            }
            _ => {
                let (code, param) = classify_parse_error(&message);
                body("invalid_request", code, message.clone(), param.as_deref())
            }
        }
    }
}

/// Seconds a client is asked to wait (`Retry-After`) before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// Whether an error means the database could not be reached: a connection refused, reset or closed, the pool
/// timing out or closed, or the server refusing connections while it shuts down or starts (SQLSTATE class 08,
/// `57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now).
pub fn database_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(error) = cause.downcast_ref::<sqlx::Error>() {
            return match error {
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_) => true,
                sqlx::Error::Database(database) => database.code().is_some_and(|code| {
                    code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
                }),
                _ => false,
            };
        }
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::NotConnected
                    | std::io::ErrorKind::UnexpectedEof
            )
        })
    })
}

/// Every 503 tells the client when to retry.
pub fn add_retry_after(response: &mut poem::Response) {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE
        && !response
            .headers()
            .contains_key(poem::http::header::RETRY_AFTER)
    {
        response.headers_mut().insert(
            poem::http::header::RETRY_AFTER,
            poem::http::HeaderValue::from(RETRY_AFTER_SECONDS),
        );
    }
}

/// poem-openapi reports request parsing failures as text; these are its messages (see its `error.rs`).
fn classify_parse_error(message: &str) -> (&'static str, Option<String>) {
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if message.starts_with("parse request payload error") {
        ("malformed_body", None)
    } else if message.contains("`Content-Type`") {
        ("unsupported_content_type", None)
    } else if let Some(name) = named("failed to parse parameter `") {
        ("invalid_parameter", Some(name))
    } else if let Some(name) = named("failed to parse path `") {
        ("invalid_parameter", Some(name))
    } else {
        ("invalid_request", None)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(error)
    }
}

/// poem-openapi's parse errors (bad JSON, wrong content type, missing or invalid parameters) in our shape.
fn bad_request(error: poem::Error) -> ApiError {
    let message = error.to_string();
    let status = error.status();
    if status == StatusCode::UNAUTHORIZED {
        return ApiError::unauthenticated("unauthenticated", "A valid bearer token is required.");
    }
    // The bearer check's own failures (the session lookup could not reach the database) keep their status.
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return ApiError::unavailable(
            "database_unavailable",
            "The service is briefly unavailable; retry the request with the same Idempotency-Key.",
        );
    }
    if status.is_server_error() {
        return ApiError::Internal(body(
            "api",
            "internal_error",
            "An internal error occurred.",
            None,
        ));
    }
    if let Some(mismatch) = error.downcast_ref::<FieldTypeError>() {
        return mismatch.to_api_error();
    }
    if error.is::<poem_openapi::error::ContentTypeError>() {
        return ApiError::UnsupportedMediaType(body(
            "invalid_request",
            "unsupported_content_type",
            format!("{message}; send JSON with `Content-Type: application/json`."),
            None,
        ));
    }
    let param = error
        .downcast_ref::<poem_openapi::error::ParseParamError>()
        .map(|e| e.name.to_owned());
    let code = if error.is::<poem_openapi::error::ParseRequestPayloadError>() {
        "malformed_body"
    } else if param.is_some() {
        "invalid_parameter"
    } else {
        "invalid_request"
    };
    ApiError::BadRequest(body("invalid_request", code, message, param.as_deref()))
}
