//! The append-only record of admin actions (who, what, which objects, when, from where).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Who acted, as the audit records them.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Uuid,
    pub email: String,
    pub ip: Option<String>,
}

impl Actor {
    /// The actor's name in job events.
    pub fn label(&self) -> String {
        self.email.clone()
    }
}

pub async fn record_tx(
    tx: &mut PgConnection,
    actor: &Actor,
    action: &str,
    targets: &[String],
    detail: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into admin_audit (actor_user_id, actor_email, action, targets, detail, ip)
         values ($1, $2, $3, $4, $5, $6)",
        actor.user_id,
        actor.email,
        action,
        serde_json::json!(targets),
        detail,
        actor.ip,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn record(
    pool: &PgPool,
    actor: &Actor,
    action: &str,
    targets: &[String],
    detail: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    record_tx(&mut tx, actor, action, targets, detail).await?;
    tx.commit().await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub admin_audit_id: i64,
    pub actor_email: String,
    pub action: String,
    pub targets: serde_json::Value,
    pub detail: serde_json::Value,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Newest first, before the `before` cursor.
pub async fn list(
    pool: &PgPool,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    sqlx::query_as!(
        AuditEntry,
        "select admin_audit_id, actor_email, action, targets, detail, ip, created_at from admin_audit
         where ($1::bigint is null or admin_audit_id < $1) order by admin_audit_id desc limit $2",
        before,
        limit.clamp(1, 200),
    )
    .fetch_all(pool)
    .await
}
