//! Operations: the durable intents behind every request that moves money or talks to a provider.
//!
//! The API inserts an operation and its job in one transaction; workers move it through
//! `pending → processing → succeeded | failed | cancelled`. Transitions are guarded in SQL (`where status in …`)
//! so two writers cannot both settle one operation. After committing, writers `announce` the change on
//! `paycore_operation`, so that waiting requests on any api process learn of it.

pub mod idempotency;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The Postgres channel that carries operation status changes (`{"operation_id", "owner_id", "status"}`).
pub const OPERATION_CHANNEL: &str = "paycore_operation";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    Pending,
    Processing,
    RequiresAction,
    RequiresApproval,
    Succeeded,
    Failed,
    Cancelled,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::RequiresAction => "requires_action",
            Self::RequiresApproval => "requires_approval",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Processing,
            Self::RequiresAction,
            Self::RequiresApproval,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

// The statuses from which an operation may still settle are `('pending', 'processing', 'requires_action',
// 'requires_approval')`; the guarded updates below spell that list out, since a checked query is one literal.

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Operation {
    pub operation_id: Uuid,
    pub kind: String,
    pub owner_id: Option<Uuid>,
    pub status: String,
    pub request: serde_json::Value,
    pub result: Option<serde_json::Value>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

impl Operation {
    pub fn status(&self) -> OperationStatus {
        OperationStatus::parse(&self.status).unwrap_or(OperationStatus::Pending)
    }
}

/// Records a new pending operation in the caller's transaction.
pub async fn insert_tx(
    tx: &mut PgConnection,
    kind: &str,
    owner_id: Option<Uuid>,
    request: &serde_json::Value,
) -> Result<Uuid, sqlx::Error> {
    insert_open_tx(tx, kind, owner_id, request, OperationStatus::Pending).await
}

/// [`insert_tx`] for an operation whose first step is already decided in the creating transaction: it starts in
/// `status` (an open one: `pending`, `processing` or `requires_action`), one statement instead of two.
pub async fn insert_open_tx(
    tx: &mut PgConnection,
    kind: &str,
    owner_id: Option<Uuid>,
    request: &serde_json::Value,
    status: OperationStatus,
) -> Result<Uuid, sqlx::Error> {
    debug_assert!(!status.is_terminal());
    let operation_id = Uuid::now_v7();
    sqlx::query!(
        "insert into operation (operation_id, kind, owner_id, request, status) values ($1, $2, $3, $4, $5)",
        operation_id,
        kind,
        owner_id,
        request,
        status.as_str(),
    )
    .execute(&mut *tx)
    .await?;
    Ok(operation_id)
}

pub async fn get(pool: &PgPool, operation_id: Uuid) -> Result<Option<Operation>, sqlx::Error> {
    sqlx::query_as!(
        Operation,
        "select operation_id, kind, owner_id, status, request, result, failure_code, failure_message, created_at,
             updated_at, settled_at
         from operation where operation_id = $1",
        operation_id,
    )
    .fetch_optional(pool)
    .await
}

/// Several operations at once (for lists), by id.
pub async fn get_many(
    pool: &PgPool,
    operation_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Operation>, sqlx::Error> {
    let rows: Vec<Operation> = sqlx::query_as!(
        Operation,
        "select operation_id, kind, owner_id, status, request, result, failure_code, failure_message, created_at,
             updated_at, settled_at
         from operation where operation_id = any($1)",
        operation_ids,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|op| (op.operation_id, op)).collect())
}

/// Moves an open operation to `status`; returns false if it had already settled (nothing changes then).
async fn transition_tx(
    tx: &mut PgConnection,
    operation_id: Uuid,
    status: OperationStatus,
    result: Option<&serde_json::Value>,
    failure: Option<(&str, &str)>,
) -> Result<bool, sqlx::Error> {
    let settled = status.is_terminal();
    let changed = sqlx::query!(
        "update operation set status = $2, result = coalesce($3, result), failure_code = $4,
             failure_message = left($5, 1000), updated_at = now(),
             settled_at = case when $6 then now() else null end
         where operation_id = $1 and status in ('pending', 'processing', 'requires_action', 'requires_approval')",
        operation_id,
        status.as_str(),
        result,
        failure.map(|(code, _)| code),
        failure.map(|(_, message)| message),
        settled,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    Ok(changed)
}

/// Tells every api process that these operations changed status (call it after the transaction that changed them
/// commits). Sent outside that transaction because a transaction that notifies commits serially; a missed
/// announcement only delays a waiting request until its next re-read of the operation.
///
/// This says nothing of notifications: a writer that also wrote notifications announces both in one statement
/// with `notify::announce_for_operations`. The job engine uses this one, for the operations it fails or cancels
/// with their job, which write no notification.
pub async fn announce_status(pool: &PgPool, operation_ids: &[Uuid]) {
    if operation_ids.is_empty() {
        return;
    }
    let result = sqlx::query!(
        "select pg_notify($2, json_build_object('operation_id', operation_id, 'owner_id', owner_id,
                                                'status', status)::text)
         from operation where operation_id = any($1)",
        operation_ids,
        OPERATION_CHANNEL,
    )
    .execute(pool)
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not announce operations");
    }
}

/// Moves an open operation to a non-terminal waiting status (`requires_action`, `requires_approval`).
pub async fn transition_to_tx(
    tx: &mut PgConnection,
    operation_id: Uuid,
    status: OperationStatus,
) -> Result<bool, sqlx::Error> {
    transition_tx(tx, operation_id, status, None, None).await
}

pub async fn mark_processing_tx(
    tx: &mut PgConnection,
    operation_id: Uuid,
) -> Result<bool, sqlx::Error> {
    transition_tx(tx, operation_id, OperationStatus::Processing, None, None).await
}

pub async fn succeed_tx(
    tx: &mut PgConnection,
    operation_id: Uuid,
    result: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    transition_tx(
        tx,
        operation_id,
        OperationStatus::Succeeded,
        Some(result),
        None,
    )
    .await
}

/// [`succeed_tx`] for several operations in one statement, each with its result; returns how many changed.
pub async fn succeed_many_tx(
    tx: &mut PgConnection,
    operations: &[(Uuid, serde_json::Value)],
) -> Result<u64, sqlx::Error> {
    let ids: Vec<Uuid> = operations.iter().map(|(id, _)| *id).collect();
    let results: Vec<&serde_json::Value> = operations.iter().map(|(_, result)| result).collect();
    let changed = sqlx::query!(
        "update operation o set status = 'succeeded', result = s.result, failure_code = null,
             failure_message = null, updated_at = now(), settled_at = now()
         from unnest($1::uuid[], $2::jsonb[]) as s(operation_id, result)
         where o.operation_id = s.operation_id
           and o.status in ('pending', 'processing', 'requires_action', 'requires_approval')",
        &ids,
        // `as _`: the macro's check knows no array of borrowed values; `$2::jsonb[]` types it.
        &results as _,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(changed)
}

/// Fails an open operation with a precise code. Compensations (voiding holds) belong in the same transaction.
pub async fn fail_tx(
    tx: &mut PgConnection,
    operation_id: Uuid,
    code: &str,
    message: &str,
) -> Result<bool, sqlx::Error> {
    transition_tx(
        tx,
        operation_id,
        OperationStatus::Failed,
        None,
        Some((code, message)),
    )
    .await
}

/// Fails an operation whose effect the provider later undid (a payout returned by the receiving bank after it
/// succeeded): from an open status or from `succeeded`, never from `failed` or `cancelled`. The one transition out
/// of a settled status; the compensation (the refund) belongs in the same transaction.
pub async fn reverse_tx(
    tx: &mut PgConnection,
    operation_id: Uuid,
    code: &str,
    message: &str,
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query!(
        "update operation set status = 'failed', failure_code = $2, failure_message = left($3, 1000),
             updated_at = now(), settled_at = now()
         where operation_id = $1
           and (status = 'succeeded' or status in ('pending', 'processing', 'requires_action', 'requires_approval'))",
        operation_id,
        code,
        message,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    Ok(changed)
}

pub async fn cancel_tx(tx: &mut PgConnection, operation_id: Uuid) -> Result<bool, sqlx::Error> {
    transition_tx(tx, operation_id, OperationStatus::Cancelled, None, None).await
}
