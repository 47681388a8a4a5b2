//! Idempotent creation of money operations (Stripe semantics, docs/architecture.md §6), shared by deposits, payouts and
//! bill payments: the `Idempotency-Key` claim, the checks and writes, and the stored answer commit in one
//! transaction, retried on deadlocks and serialisation failures; the same key with the same request replays the
//! stored answer, with another request it is a 422, and while the first is in flight a 409.

use std::{future::Future, time::Duration};

use paycore_jobs::domains::identity::auth::sha256_hex;
use paycore_jobs::engine::Queue;
use paycore_jobs::ledger::{is_retryable_db_error, LedgerError};
use paycore_jobs::operation::idempotency::{self, Claim, IDEMPOTENCY_KEY_CHARS_MAX};
use poem_openapi::types::{ParseFromJSON, ToJSON};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    error::{ApiError, ErrorBody},
    AppState,
};

/// Attempts at the create transaction when it meets a deadlock or a serialisation failure.
const TRANSACTION_TRIES: u32 = 5;

/// A failure inside the create transaction; `retryable` ones are tried again from the start.
#[derive(Debug)]
pub struct CreateError {
    pub retryable: bool,
    pub source: anyhow::Error,
}

impl From<sqlx::Error> for CreateError {
    fn from(error: sqlx::Error) -> Self {
        Self {
            retryable: is_retryable_db_error(&error),
            source: error.into(),
        }
    }
}

impl From<LedgerError> for CreateError {
    fn from(error: LedgerError) -> Self {
        Self {
            retryable: error.is_retryable(),
            source: error.into(),
        }
    }
}

/// What a successful create wrote.
pub struct Created {
    pub operation_id: Uuid,
    /// The resource as answered (and stored for replays) with status 202.
    pub body: serde_json::Value,
    /// The queues the create enqueued jobs on, woken after the commit.
    pub wake: &'static [Queue],
}

/// What most creates enqueue: the operation's job on the payments queue, and perhaps a notification's e-mail.
pub const PAYMENTS_AND_EMAILS: &[Queue] = &[Queue::Payments, Queue::Emails];

/// One create: checks and writes in the caller's transaction. `Ok(Err(_))` is a refusal, stored and answered.
pub trait CreateAction: Sync {
    fn run<'a>(
        &'a self,
        tx: &'a mut PgConnection,
    ) -> impl Future<Output = Result<Result<Created, ApiError>, CreateError>> + Send + 'a;
}

pub enum Outcome {
    /// Written now; the operation's job is queued.
    Created(Created),
    /// The stored answer of an earlier request with this key (or a refusal stored just now).
    Stored {
        status: u16,
        body: serde_json::Value,
    },
}

/// Checks the `Idempotency-Key` header's value.
pub fn check_key(raw: &str) -> Result<String, ApiError> {
    let key = raw.trim().to_owned();
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_CHARS_MAX {
        return Err(ApiError::invalid(
            "invalid_idempotency_key",
            "The Idempotency-Key must be 1 to 255 characters.",
            Some("Idempotency-Key"),
        ));
    }
    Ok(key)
}

/// The hash that ties a key to its request: the endpoint and the request's JSON.
pub fn request_hash(endpoint: &str, body: &impl serde::Serialize) -> Result<String, ApiError> {
    let json = serde_json::to_string(body).map_err(ApiError::internal)?;
    Ok(sha256_hex(&format!("{endpoint}\n{json}")))
}

pub async fn create<A: CreateAction>(
    state: &AppState,
    user_id: Uuid,
    key: &str,
    request_hash: &str,
    action: &A,
) -> Result<Outcome, ApiError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match create_once(state, user_id, key, request_hash, action).await {
            Ok(outcome) => return outcome,
            Err(error) if error.retryable && attempt < TRANSACTION_TRIES => {
                let pause_ms = 5 * u64::from(attempt) + u64::from(rand::random::<u8>() % 20);
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            Err(error) => return Err(ApiError::internal(error.source)),
        }
    }
}

async fn create_once<A: CreateAction>(
    state: &AppState,
    user_id: Uuid,
    key: &str,
    request_hash: &str,
    action: &A,
) -> Result<Result<Outcome, ApiError>, CreateError> {
    let mut tx = state.pool.begin().await?;
    match idempotency::claim_tx(&mut tx, user_id, key, request_hash).await? {
        Claim::Fresh => {}
        Claim::Replay { status, body } => return Ok(Ok(Outcome::Stored { status, body })),
        Claim::Mismatch => {
            return Ok(Err(ApiError::rejected(
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request.",
                Some("Idempotency-Key"),
            )))
        }
        Claim::InFlight => {
            return Ok(Err(ApiError::conflict(
                "idempotency_key_in_flight",
                "A request with this Idempotency-Key is still being processed.",
            )))
        }
    }
    let outcome = match action.run(&mut tx).await? {
        Ok(created) => {
            idempotency::store_tx(&mut tx, user_id, key, 202, &created.body).await?;
            Outcome::Created(created)
        }
        Err(refusal) => {
            if matches!(refusal, ApiError::Internal(_)) {
                return Ok(Err(refusal));
            }
            let (status, body) = error_parts(&refusal);
            idempotency::store_tx(&mut tx, user_id, key, status, &body).await?;
            Outcome::Stored { status, body }
        }
    };
    tx.commit().await?;
    if let Outcome::Created(created) = &outcome {
        paycore_jobs::notify::announce_created(&state.pool, &[created.operation_id], created.wake)
            .await;
    }
    Ok(Ok(outcome))
}

/// How a create ends for the route: a new operation (after waiting for it when the client asked), or the replay
/// of a stored success.
pub enum Finished<R> {
    /// The operation to answer in its current state (new, or replayed).
    Created(Uuid),
    Replayed(R),
}

/// Waits for a new operation to leave the engine's hands when the client sent `Prefer: wait=N`, or turns a stored
/// answer back into the route's `accepted` response (or its stored error).
pub async fn finish<T: ParseFromJSON, R>(
    state: &AppState,
    outcome: Outcome,
    prefer: Option<&str>,
    accepted: impl FnOnce(poem_openapi::payload::Json<T>) -> R,
) -> Result<Finished<R>, ApiError> {
    match outcome {
        Outcome::Created(created) => {
            if let Some(wait) = crate::events::parse_prefer_wait(prefer) {
                crate::events::wait_settled(&state.pool, &state.events, created.operation_id, wait)
                    .await?;
            }
            Ok(Finished::Created(created.operation_id))
        }
        // A replayed success answers the resource as it is now, as the first answer would have if it came now:
        // a replay after the operation settled answers the settled state, not the stored `processing` snapshot.
        Outcome::Stored { status, body } if status < 300 => match stored_operation_id(&body) {
            Some(operation_id) => {
                if let Some(wait) = crate::events::parse_prefer_wait(prefer) {
                    crate::events::wait_settled(&state.pool, &state.events, operation_id, wait)
                        .await?;
                }
                Ok(Finished::Created(operation_id))
            }
            None => Ok(Finished::Replayed(accepted(poem_openapi::payload::Json(
                replay_body(body)?,
            )))),
        },
        Outcome::Stored { status, body } => Err(replay_error(status, body)),
    }
}

/// The operation a stored success answered (every money resource carries its `operation_id`).
pub fn stored_operation_id(body: &serde_json::Value) -> Option<Uuid> {
    body.get("operation_id")?.as_str()?.parse().ok()
}

/// The stored form of an error, for idempotent replay.
pub fn error_parts(error: &ApiError) -> (u16, serde_json::Value) {
    let (status, body) = match error {
        ApiError::BadRequest(body) => (400, body),
        ApiError::Unauthorized(body) => (401, body),
        ApiError::Forbidden(body) => (403, body),
        ApiError::NotFound(body) => (404, body),
        ApiError::Conflict(body) => (409, body),
        ApiError::UnsupportedMediaType(body) => (415, body),
        ApiError::Unprocessable(body) => (422, body),
        ApiError::TooManyRequests(body, _) => (429, body),
        ApiError::Internal(body) => (500, body),
        ApiError::Unavailable(body) => (503, body),
    };
    (status, body.0.to_json().unwrap_or_default())
}

/// A stored error answer, as the error to send again.
pub fn replay_error(status: u16, body: serde_json::Value) -> ApiError {
    let body = match ErrorBody::parse_from_json(Some(body)) {
        Ok(body) => poem_openapi::payload::Json(body),
        Err(e) => {
            return ApiError::internal(anyhow::anyhow!(
                "stored error unreadable: {}",
                e.into_message()
            ))
        }
    };
    match status {
        404 => ApiError::NotFound(body),
        409 => ApiError::Conflict(body),
        400 => ApiError::BadRequest(body),
        403 => ApiError::Forbidden(body),
        503 => ApiError::Unavailable(body),
        _ => ApiError::Unprocessable(body),
    }
}

/// A stored success answer, as the resource type.
pub fn replay_body<T: ParseFromJSON>(body: serde_json::Value) -> Result<T, ApiError> {
    T::parse_from_json(Some(body)).map_err(|e| {
        ApiError::internal(anyhow::anyhow!(
            "stored response unreadable: {}",
            e.into_message()
        ))
    })
}
