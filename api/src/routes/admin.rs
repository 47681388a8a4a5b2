//! `/api/v1/admin/*`: the ledger audit (and, with the dashboard, the job engine's controls).

use poem_openapi::{payload::Json, Object, OpenApi};

use super::ApiTag;
use crate::{
    error::{ApiError, ApiResult},
    security::BearerAuth,
    AppState,
};

pub struct AdminApi {
    pub state: AppState,
}

#[derive(Debug, Object)]
pub struct AuditBody {
    pub clean: bool,
    pub findings: Vec<String>,
    pub ran_at: chrono::DateTime<chrono::Utc>,
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "ApiTag::Admin")]
impl AdminApi {
    /// The latest ledger audit (run every 5 minutes by the scheduler).
    #[oai(path = "/ledger/audit", method = "get")]
    async fn latest_audit(&self, caller: BearerAuth) -> ApiResult<Json<AuditBody>> {
        caller.require_admin_read()?;
        let row: Option<(bool, serde_json::Value, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "select clean, findings, ran_at from ledger_audit order by ledger_audit_id desc limit 1",
        )
        .fetch_optional(&self.state.pool)
        .await?;
        let (clean, findings, ran_at) = row.ok_or_else(|| {
            ApiError::not_found("no_audit_yet", "The ledger has not been audited yet.")
        })?;
        Ok(Json(AuditBody {
            clean,
            findings: findings["findings"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|f| f.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            ran_at,
        }))
    }

    /// Audit the ledger now and return the result. It records the audit (a write), so the read-only admin role
    /// may not; it reads the latest one with `GET`.
    #[oai(path = "/ledger/audit", method = "post")]
    async fn run_audit(&self, caller: BearerAuth) -> ApiResult<Json<AuditBody>> {
        caller.require_admin_write()?;
        let report = paycore_jobs::ledger::audit_and_record(&self.state.pool).await?;
        Ok(Json(AuditBody {
            clean: report.clean,
            findings: report.findings,
            ran_at: chrono::Utc::now(),
        }))
    }
}
