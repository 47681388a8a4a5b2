//! Idempotency keys with Stripe semantics, kept in the same transaction as the work they protect.
//!
//! The key is claimed by inserting its row first thing in the request's transaction and the response is stored in
//! that same transaction. A concurrent request with the same key waits on the row until the first commits and then
//! replays its response; if the first rolled back, the second proceeds as if it were first. A key reused with a
//! different request is refused. Keys live for `IDEMPOTENCY_KEY_TTL`.

use sqlx::PgConnection;
use uuid::Uuid;

/// How long a key and its response are kept (docs/architecture.md §6: at least 24 h).
pub const IDEMPOTENCY_KEY_TTL: chrono::Duration = chrono::Duration::hours(48);
/// Keys are opaque strings of at most this many characters.
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 255;

#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This request owns the key: do the work and `store_tx` the response.
    Fresh,
    /// The same request was answered before: send this again.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
    /// The key was used for a different request.
    Mismatch,
    /// Another request with this key has not finished (only possible if it committed without a response).
    InFlight,
}

pub async fn claim_tx(
    tx: &mut PgConnection,
    user_id: Uuid,
    key: &str,
    request_hash: &str,
) -> Result<Claim, sqlx::Error> {
    // One statement: a new key is inserted, an expired one is taken over as if new (a concurrent claim of the same
    // expired key waits for this row and then finds it live).
    let claimed = sqlx::query!(
        "insert into idempotency_key (user_id, idempotency_key, request_hash, expires_at)
         values ($1, $2, $3, now() + $4 * interval '1 second')
         on conflict (user_id, idempotency_key) do update
             set request_hash = excluded.request_hash, response_status = null, response_body = null,
                 created_at = now(), expires_at = excluded.expires_at
             where idempotency_key.expires_at < now()",
        user_id,
        key,
        request_hash,
        // PostgreSQL types a number times an interval as double precision; a whole number of seconds is exact.
        IDEMPOTENCY_KEY_TTL.num_seconds() as f64,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if claimed {
        return Ok(Claim::Fresh);
    }
    let stored = sqlx::query!(
        "select request_hash, response_status, response_body from idempotency_key
         where user_id = $1 and idempotency_key = $2",
        user_id,
        key,
    )
    .fetch_one(&mut *tx)
    .await?;
    if stored.request_hash != request_hash {
        return Ok(Claim::Mismatch);
    }
    Ok(match (stored.response_status, stored.response_body) {
        (Some(status), Some(body)) => Claim::Replay {
            status: u16::try_from(status).unwrap_or(200),
            body,
        },
        _ => Claim::InFlight,
    })
}

pub async fn store_tx(
    tx: &mut PgConnection,
    user_id: Uuid,
    key: &str,
    status: u16,
    body: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update idempotency_key set response_status = $3, response_body = $4 where user_id = $1 and idempotency_key = $2",
        user_id,
        key,
        i32::from(status),
        body,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
