//! `/api/v1/admin/payouts` (approval of large payouts) and `/api/v1/admin/reconciliation` (provider reports).

use chrono::{DateTime, Utc};
use paycore_jobs::domains::payout::{self, Decision, DecisionRejection};
use paycore_jobs::domains::reconciliation::{self, ReportRow};
use paycore_jobs::providers::ProviderName;
use poem::Request;
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    ApiResponse, Object, OpenApi,
};

use super::{
    admin_jobs::actor,
    parse_id,
    payouts::{list_payouts, PayoutBody, PayoutList, PayoutsApi},
    ApiTag,
};
use crate::payload::Body;
use crate::{
    error::{ApiError, ApiResult},
    security::BearerAuth,
    AppState,
};

pub struct AdminPaymentsApi {
    pub state: AppState,
}

/// The longest period one reconciliation may cover.
const RECONCILIATION_DAYS_MAX: i64 = 31;

#[derive(Debug, Clone, Object)]
pub struct DecisionRequest {
    /// Why (shown to the user when rejecting).
    #[oai(default)]
    pub note: String,
}

#[derive(Debug, Clone, Object)]
pub struct ReconciliationRequest {
    /// paystack or flutterwave.
    pub provider: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, Object)]
pub struct MismatchBody {
    /// missing (we have it, the provider does not), extra (the provider has it, we do not), amount_differs or
    /// status_differs.
    pub kind: String,
    /// deposit, payout or bill_payment.
    pub record: String,
    pub reference: String,
    #[oai(nullable)]
    pub ours: Option<i64>,
    #[oai(nullable)]
    pub theirs: Option<i64>,
    pub detail: String,
}

#[derive(Debug, Clone, Object)]
pub struct ReportBody {
    pub report_id: String,
    pub provider: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// running, clean, mismatched or failed.
    pub status: String,
    pub matched: i32,
    pub mismatches: Vec<MismatchBody>,
    #[oai(nullable)]
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[oai(nullable)]
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<ReportRow> for ReportBody {
    fn from(row: ReportRow) -> Self {
        let mismatches: Vec<reconciliation::Mismatch> =
            serde_json::from_value(row.mismatches).unwrap_or_default();
        Self {
            report_id: row.report_id.to_string(),
            provider: row.provider,
            from: row.period_from,
            to: row.period_to,
            status: row.status,
            matched: row.matched,
            mismatches: mismatches
                .into_iter()
                .map(|m| MismatchBody {
                    kind: m.kind,
                    record: m.record,
                    reference: m.reference,
                    ours: m.ours,
                    theirs: m.theirs,
                    detail: m.detail,
                })
                .collect(),
            error: row.error,
            created_at: row.created_at,
            finished_at: row.finished_at,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct ReportList {
    pub data: Vec<ReportBody>,
}

#[derive(ApiResponse)]
pub enum ReportAccepted {
    /// The report is being prepared; read it with its id.
    #[oai(status = 202)]
    Accepted(Json<ReportBody>),
}

impl AdminPaymentsApi {
    fn payouts_api(&self) -> PayoutsApi {
        PayoutsApi {
            state: self.state.clone(),
        }
    }

    async fn decide(
        &self,
        caller: &BearerAuth,
        request: &Request,
        payout_id: &str,
        decision: Decision,
        note: &str,
    ) -> ApiResult<Json<PayoutBody>> {
        let principal = caller.require_admin_write()?;
        let not_found = || ApiError::not_found("payout_not_found", "No such payout.");
        let id = parse_id(payout_id, "payout_id").map_err(|_| not_found())?;
        let note = note.trim();
        if note.chars().count() > 500 {
            return Err(ApiError::invalid(
                "invalid_note",
                "A note is at most 500 characters.",
                Some("note"),
            ));
        }
        let actor = actor(principal, request);
        let row = payout::decide(
            &self.state.pool,
            &self.state.config,
            &actor,
            id,
            decision,
            note,
        )
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?
        .map_err(|rejection| match rejection {
            DecisionRejection::NotFound => not_found(),
            DecisionRejection::NotAwaitingApproval => {
                ApiError::conflict("payout_not_awaiting_approval", rejection.to_string())
            }
        })?;
        let op = paycore_jobs::operation::get(&self.state.pool, id).await?;
        Ok(Json(PayoutBody::new(&row, op.as_ref())))
    }
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "ApiTag::Admin")]
impl AdminPaymentsApi {
    /// Payouts of every user, newest first; `status=requires_approval` lists those waiting for a decision.
    #[oai(path = "/payouts", method = "get")]
    async fn payouts(
        &self,
        caller: BearerAuth,
        status: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<PayoutList>> {
        caller.require_admin_read()?;
        let (data, has_more) = list_payouts(
            &self.payouts_api(),
            None,
            status.0.as_deref(),
            limit.0,
            starting_after.0.as_deref(),
        )
        .await?;
        Ok(Json(PayoutList { data, has_more }))
    }

    /// Approve a payout waiting for approval: it is sent to the provider.
    #[oai(path = "/payouts/:payout_id/approve", method = "post")]
    async fn approve(
        &self,
        caller: BearerAuth,
        request: &Request,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        payout_id: Path<String>,
    ) -> ApiResult<Json<PayoutBody>> {
        self.decide(&caller, request, &payout_id, Decision::Approve, "")
            .await
    }

    /// Reject a payout waiting for approval: its held amount and fee are released.
    #[oai(path = "/payouts/:payout_id/reject", method = "post")]
    async fn reject(
        &self,
        caller: BearerAuth,
        request: &Request,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        payout_id: Path<String>,
        body: Body<DecisionRequest>,
    ) -> ApiResult<Json<PayoutBody>> {
        self.decide(&caller, request, &payout_id, Decision::Reject, &body.note)
            .await
    }

    /// Reconcile a provider's records for a period with the ledger (at most 31 days).
    #[oai(path = "/reconciliation", method = "post")]
    async fn reconcile(
        &self,
        caller: BearerAuth,
        body: Body<ReconciliationRequest>,
    ) -> ApiResult<ReportAccepted> {
        let principal = caller.require_admin_write()?;
        let provider = ProviderName::parse(body.provider.trim()).ok_or_else(|| {
            ApiError::invalid(
                "unknown_provider",
                "The provider is paystack or flutterwave.",
                Some("provider"),
            )
        })?;
        if body.from >= body.to
            || body.to - body.from > chrono::Duration::days(RECONCILIATION_DAYS_MAX)
        {
            return Err(ApiError::invalid(
                "invalid_period",
                "The period must end after it starts and cover at most 31 days.",
                Some("to"),
            ));
        }
        let row = reconciliation::request(
            &self.state.pool,
            provider,
            body.from,
            body.to,
            Some(principal.user_id),
        )
        .await?;
        Ok(ReportAccepted::Accepted(Json(row.into())))
    }

    /// Reconciliation reports, newest first.
    #[oai(path = "/reconciliation", method = "get")]
    async fn reports(
        &self,
        caller: BearerAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<ReportList>> {
        caller.require_admin_read()?;
        let limit = super::list_limit(limit.0)?;
        let rows = reconciliation::list(&self.state.pool, limit).await?;
        Ok(Json(ReportList {
            data: rows.into_iter().map(Into::into).collect(),
        }))
    }

    /// One reconciliation report.
    #[oai(path = "/reconciliation/:report_id", method = "get")]
    async fn report(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        report_id: Path<String>,
    ) -> ApiResult<Json<ReportBody>> {
        caller.require_admin_read()?;
        let not_found = || ApiError::not_found("report_not_found", "No such report.");
        let id = parse_id(&report_id, "report_id").map_err(|_| not_found())?;
        let row = reconciliation::get(&self.state.pool, id)
            .await?
            .ok_or_else(not_found)?;
        Ok(Json(row.into()))
    }
}
