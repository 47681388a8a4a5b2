//! `/api/v1/transactions`: the ledger entries of the caller's wallets, filtered, ordered and paginated.

use paycore_jobs::ledger::history::{self, Entry, Filter};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    Object, OpenApi,
};

use super::{parse_id, ApiTag};
use crate::{
    error::{ApiError, ApiResult},
    security::BearerAuth,
    AppState,
};

pub struct TransactionsApi {
    pub state: AppState,
}

/// Page sizes: 1 to 100, 20 by default.
const PAGE_DEFAULT: i64 = 20;
const PAGE_MAX: i64 = 100;

#[derive(Debug, Object)]
pub struct TransactionBody {
    pub transaction_id: String,
    pub wallet_id: String,
    /// transfer, welcome_bonus, …
    #[oai(rename = "type")]
    pub kind: String,
    /// debit (money out) or credit (money in).
    pub direction: String,
    /// pending, posted or voided.
    pub status: String,
    pub amount: i64,
    /// The fee charged with this entry (outgoing transfers).
    pub fee: i64,
    pub currency: String,
    /// The wallet's posted balance right after this entry.
    pub balance_after: i64,
    /// The other side: an account number, or a platform account.
    pub counterparty: String,
    /// The operation the entry belongs to; also its reference.
    #[oai(nullable)]
    pub reference: Option<String>,
    pub narration: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Entry> for TransactionBody {
    fn from(entry: Entry) -> Self {
        Self {
            transaction_id: entry.transaction_id.to_string(),
            wallet_id: entry.wallet_id.to_string(),
            kind: entry.kind,
            direction: entry.direction,
            status: entry.status,
            amount: entry.amount,
            fee: entry.fee,
            currency: entry.currency,
            balance_after: entry.balance_after,
            counterparty: entry.counterparty,
            reference: entry.operation_id.map(|id| id.to_string()),
            narration: entry.narration,
            created_at: entry.created_at,
        }
    }
}

#[derive(Debug, Object)]
pub struct TransactionPage {
    pub data: Vec<TransactionBody>,
    /// True when another page follows in this direction.
    pub has_more: bool,
}

fn one_of(
    value: Option<String>,
    allowed: &[&str],
    param: &str,
) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::invalid(
            "invalid_parameter",
            format!("{param} must be one of: {}", allowed.join(", ")),
            Some(param),
        )),
        other => Ok(other),
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTag::Transactions")]
impl TransactionsApi {
    /// The caller's ledger entries, newest first unless `order=asc`.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/transactions", method = "get")]
    async fn list(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        wallet_id: Query<Option<String>>,
        #[oai(name = "type")] kind: Query<Option<String>>,
        status: Query<Option<String>>,
        direction: Query<Option<String>>,
        amount_min: Query<Option<i64>>,
        amount_max: Query<Option<i64>>,
        created_from: Query<Option<chrono::DateTime<chrono::Utc>>>,
        created_to: Query<Option<chrono::DateTime<chrono::Utc>>>,
        q: Query<Option<String>>,
        order: Query<Option<String>>,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        starting_after: Query<Option<String>>,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        ending_before: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<TransactionPage>> {
        let limit = limit.0.unwrap_or(PAGE_DEFAULT);
        if !(1..=PAGE_MAX).contains(&limit) {
            return Err(ApiError::invalid(
                "invalid_parameter",
                "limit must be 1 to 100.",
                Some("limit"),
            ));
        }
        let order = one_of(order.0, &["asc", "desc"], "order")?;
        let text = q.0.filter(|t| !t.trim().is_empty());
        if text.as_ref().is_some_and(|t| t.chars().count() > 100) {
            return Err(ApiError::invalid(
                "invalid_parameter",
                "q must be at most 100 characters.",
                Some("q"),
            ));
        }
        let filter = Filter {
            wallet_id: wallet_id.0.map(|w| parse_id(&w, "wallet_id")).transpose()?,
            kind: kind.0,
            status: one_of(status.0, &["pending", "posted", "voided"], "status")?,
            direction: one_of(direction.0, &["debit", "credit"], "direction")?,
            amount_min: amount_min.0,
            amount_max: amount_max.0,
            created_from: created_from.0,
            created_to: created_to.0,
            text,
            oldest_first: order.as_deref() == Some("asc"),
            starting_after: starting_after
                .0
                .map(|c| parse_id(&c, "starting_after"))
                .transpose()?,
            ending_before: ending_before
                .0
                .map(|c| parse_id(&c, "ending_before"))
                .transpose()?,
            limit: limit + 1,
        };
        let mut entries = history::list(&self.state.pool, caller.0.user_id, &filter).await?;
        let has_more = entries.len() as i64 > limit;
        if has_more {
            if filter.ending_before.is_some() {
                entries.remove(0);
            } else {
                entries.truncate(limit as usize);
            }
        }
        Ok(Json(TransactionPage {
            data: entries.into_iter().map(Into::into).collect(),
            has_more,
        }))
    }

    /// One ledger entry of the caller's wallets.
    #[oai(path = "/transactions/:transaction_id", method = "get")]
    async fn get(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        transaction_id: Path<String>,
    ) -> ApiResult<Json<TransactionBody>> {
        let not_found = || ApiError::not_found("transaction_not_found", "No such transaction.");
        let id = parse_id(&transaction_id, "transaction_id").map_err(|_| not_found())?;
        let entry = history::get(&self.state.pool, caller.0.user_id, id)
            .await?
            .ok_or_else(not_found)?;
        Ok(Json(entry.into()))
    }
}
