//! `/api/v1/payouts` and `/api/v1/banks`: money out to bank accounts through the payouts provider.

use paycore_jobs::domains::payout::{self, PayoutRequest, PayoutRow};
use paycore_jobs::operation::{self, Operation};
use paycore_jobs::providers::Bank;
use poem_openapi::{
    param::{Header, Path, Query},
    payload::Json,
    ApiResponse, Object, OpenApi,
};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    amount_of, list_limit, parse_currency, parse_id, provider_error, spend_error, transfers::Money,
    ApiTag,
};
use crate::payload::Body;
use crate::schema::{IdText, MinorUnits};
use crate::{
    error::{ApiError, ApiResult},
    idempotent::{self, CreateAction, CreateError, Created, Finished},
    security::BearerAuth,
    AppState,
};

pub struct PayoutsApi {
    pub state: AppState,
}

const NARRATION_CHARS_MAX: usize = 100;

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct CreatePayoutRequest {
    /// An NGN wallet of the caller.
    pub wallet_id: IdText,
    /// Minor units (kobo).
    pub amount: MinorUnits,
    /// The bank's code from `GET /banks`.
    pub bank_code: String,
    /// The 10-digit NUBAN account number.
    pub account_number: String,
    #[oai(default)]
    pub narration: String,
    /// Required when the wallet has a PIN.
    #[oai(nullable)]
    pub pin: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct PayoutBody {
    pub payout_id: String,
    pub operation_id: String,
    /// requires_approval, processing, completed, failed, rejected or reversed.
    pub status: String,
    pub operation_status: String,
    #[oai(nullable)]
    pub failure_code: Option<String>,
    #[oai(nullable)]
    pub failure_message: Option<String>,
    pub wallet_id: String,
    pub amount: Money,
    pub fee: Money,
    pub bank_code: String,
    pub bank_name: String,
    pub account_number: String,
    pub account_name: String,
    pub narration: String,
    /// The provider's transfer code once it took the payout.
    #[oai(nullable)]
    pub transfer_code: Option<String>,
    /// True when a reversal was refunded to the wallet.
    pub refunded: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[oai(nullable)]
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl PayoutBody {
    pub fn new(row: &PayoutRow, op: Option<&Operation>) -> Self {
        let money = |amount| Money {
            amount,
            currency: row.currency.clone(),
        };
        Self {
            payout_id: row.payout_id.to_string(),
            operation_id: row.payout_id.to_string(),
            status: row.status.clone(),
            operation_status: op
                .map(|o| o.status.clone())
                .unwrap_or_else(|| "pending".into()),
            failure_code: op.and_then(|o| o.failure_code.clone()),
            failure_message: op
                .and_then(|o| o.failure_message.clone())
                .or_else(|| row.failure_reason.clone()),
            wallet_id: row.wallet_id.to_string(),
            amount: money(row.amount),
            fee: money(row.fee),
            bank_code: row.bank_code.clone(),
            bank_name: row.bank_name.clone(),
            account_number: row.account_number.clone(),
            account_name: row.account_name.clone(),
            narration: row.narration.clone(),
            transfer_code: row.provider_transfer_code.clone(),
            refunded: row.refund_id.is_some(),
            created_at: row.created_at,
            completed_at: row.completed_at,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct PayoutList {
    pub data: Vec<PayoutBody>,
    pub has_more: bool,
}

#[derive(Debug, Clone, Object)]
pub struct BankBody {
    pub name: String,
    pub code: String,
}

#[derive(Debug, Clone, Object)]
pub struct BankList {
    pub currency: String,
    pub data: Vec<BankBody>,
}

#[derive(Debug, Clone, Object)]
pub struct ResolvedAccount {
    pub account_number: String,
    pub account_name: String,
    pub bank_code: String,
    pub bank_name: String,
}

#[derive(ApiResponse)]
pub enum PayoutResponse {
    /// Settled (or waiting for approval) while the client waited.
    #[oai(status = 201)]
    Created(Json<PayoutBody>),
    /// Accepted: the amount and fee are held and the payout is on its way; follow it.
    #[oai(status = 202)]
    Accepted(Json<PayoutBody>),
}

struct CreatePayout {
    config: std::sync::Arc<paycore_jobs::platform::config::Config>,
    user_id: Uuid,
    request: PayoutRequest,
}

impl CreateAction for CreatePayout {
    async fn run(&self, tx: &mut PgConnection) -> Result<Result<Created, ApiError>, CreateError> {
        Ok(
            match payout::create_tx(tx, &self.config, self.user_id, &self.request).await? {
                Ok(row) => Ok(Created {
                    operation_id: row.payout_id,
                    wake: crate::idempotent::PAYMENTS_AND_EMAILS,
                    body: poem_openapi::types::ToJSON::to_json(&PayoutBody::new(&row, None))
                        .unwrap_or_default(),
                }),
                Err(rejection) => Err(spend_error(&rejection)),
            },
        )
    }
}

fn account_number_ok(number: &str) -> bool {
    number.len() == 10 && number.chars().all(|c| c.is_ascii_digit())
}

impl PayoutsApi {
    async fn banks_for(&self, currency: paycore_jobs::money::Currency) -> ApiResult<Vec<Bank>> {
        let providers = self.state.providers();
        providers
            .payouts
            .banks(currency)
            .await
            .map_err(|e| provider_error(e, "bank_list_unavailable"))
    }

    async fn bank(&self, code: &str) -> ApiResult<Bank> {
        self.banks_for(paycore_jobs::money::Currency::Ngn)
            .await?
            .into_iter()
            .find(|b| b.code == code)
            .ok_or_else(|| {
                ApiError::invalid("unknown_bank", "No bank has this code.", Some("bank_code"))
            })
    }

    async fn resolve(&self, bank_code: &str, account_number: &str) -> ApiResult<ResolvedAccount> {
        if !account_number_ok(account_number) {
            return Err(ApiError::invalid(
                "invalid_account_number",
                "An account number is 10 digits.",
                Some("account_number"),
            ));
        }
        let bank = self.bank(bank_code).await?;
        let name = self
            .state
            .providers()
            .payouts
            .resolve_account(&bank.code, account_number)
            .await
            .map_err(|e| provider_error(e, "account_not_resolved"))?;
        Ok(ResolvedAccount {
            account_number: account_number.to_owned(),
            account_name: name,
            bank_code: bank.code,
            bank_name: bank.name,
        })
    }

    async fn body_of(&self, row: &PayoutRow) -> ApiResult<PayoutBody> {
        let op = operation::get(&self.state.pool, row.payout_id).await?;
        Ok(PayoutBody::new(row, op.as_ref()))
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTag::Payouts")]
impl PayoutsApi {
    /// Banks that payouts can reach.
    #[oai(path = "/banks", method = "get")]
    async fn banks(
        &self,
        _caller: BearerAuth,
        currency: Query<Option<String>>,
    ) -> ApiResult<Json<BankList>> {
        let currency = parse_currency(currency.0.as_deref().unwrap_or("NGN"))?;
        let banks = self.banks_for(currency).await?;
        Ok(Json(BankList {
            currency: currency.code().to_owned(),
            data: banks
                .into_iter()
                .map(|b| BankBody {
                    name: b.name,
                    code: b.code,
                })
                .collect(),
        }))
    }

    /// The holder's name of a bank account, from the bank.
    #[oai(path = "/banks/resolve", method = "get")]
    async fn resolve_account(
        &self,
        _caller: BearerAuth,
        bank_code: Query<String>,
        account_number: Query<String>,
    ) -> ApiResult<Json<ResolvedAccount>> {
        Ok(Json(
            self.resolve(bank_code.0.trim(), account_number.0.trim())
                .await?,
        ))
    }

    /// Pay out to a bank account. The account name is resolved first; then the amount and fee are held and the
    /// provider is called as a job. Payouts above the approval threshold wait for an admin.
    #[oai(path = "/payouts", method = "post")]
    async fn create(
        &self,
        caller: BearerAuth,
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 255))]
        idempotency_key: Header<String>,
        #[oai(name = "Prefer")] prefer: Header<Option<String>>,
        body: Body<CreatePayoutRequest>,
    ) -> ApiResult<PayoutResponse> {
        let key = idempotent::check_key(&idempotency_key)?;
        let wallet_id = parse_id(&body.wallet_id, "wallet_id")?;
        let amount = amount_of(body.amount.0)?;
        let narration = body.narration.trim().to_owned();
        if narration.chars().count() > NARRATION_CHARS_MAX
            || narration.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                "invalid_narration",
                "The narration must be at most 100 printable characters.",
                Some("narration"),
            ));
        }
        if body.pin.as_ref().is_some_and(|pin| pin.len() > 12) {
            return Err(ApiError::invalid(
                "invalid_pin_format",
                "The PIN is 4 to 6 digits.",
                Some("pin"),
            ));
        }
        let hash = idempotent::request_hash("payouts", &body.0)?;
        let account = self
            .resolve(body.bank_code.trim(), body.account_number.trim())
            .await?;
        let action = CreatePayout {
            config: std::sync::Arc::clone(&self.state.config),
            user_id: caller.0.user_id,
            request: PayoutRequest {
                wallet_id,
                amount,
                bank_code: account.bank_code,
                bank_name: account.bank_name,
                account_number: account.account_number,
                account_name: account.account_name,
                narration,
                pin: body.pin.clone(),
            },
        };
        let outcome =
            idempotent::create(&self.state, caller.0.user_id, &key, &hash, &action).await?;
        let id = match idempotent::finish(
            &self.state,
            outcome,
            prefer.0.as_deref(),
            PayoutResponse::Accepted,
        )
        .await?
        {
            Finished::Created(id) => id,
            Finished::Replayed(response) => return Ok(response),
        };
        let row = payout::get(&self.state.pool, id)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("payout vanished")))?;
        let body = self.body_of(&row).await?;
        Ok(if row.status == "processing" {
            PayoutResponse::Accepted(Json(body))
        } else {
            PayoutResponse::Created(Json(body))
        })
    }

    /// A payout of the caller's.
    #[oai(path = "/payouts/:payout_id", method = "get")]
    async fn get(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        payout_id: Path<String>,
    ) -> ApiResult<Json<PayoutBody>> {
        let not_found = || ApiError::not_found("payout_not_found", "No such payout.");
        let id = parse_id(&payout_id, "payout_id").map_err(|_| not_found())?;
        let row = payout::get(&self.state.pool, id)
            .await?
            .filter(|p| p.user_id == caller.0.user_id)
            .ok_or_else(not_found)?;
        Ok(Json(self.body_of(&row).await?))
    }

    /// The caller's payouts, newest first.
    #[oai(path = "/payouts", method = "get")]
    async fn list(
        &self,
        caller: BearerAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<PayoutList>> {
        let (data, has_more) = list_payouts(
            self,
            Some(caller.0.user_id),
            None,
            limit.0,
            starting_after.0.as_deref(),
        )
        .await?;
        Ok(Json(PayoutList { data, has_more }))
    }
}

/// Payouts newest first, of one user or (admins) everyone, optionally of one status.
pub(crate) async fn list_payouts(
    api: &PayoutsApi,
    user_id: Option<Uuid>,
    status: Option<&str>,
    limit: Option<i64>,
    starting_after: Option<&str>,
) -> ApiResult<(Vec<PayoutBody>, bool)> {
    let limit = list_limit(limit)?;
    let after = starting_after
        .map(|id| parse_id(id, "starting_after"))
        .transpose()?;
    let rows: Vec<PayoutRow> = sqlx::query_as!(
        PayoutRow,
        "select payout_id, user_id, wallet_id, provider, reference, amount, fee, currency, bank_code, bank_name,
             account_number, account_name, narration, status, hold_id, fee_hold_id, refund_id, provider_transfer_code,
             provider_status, failure_reason, decided_by, decided_at, submitted_at, created_at, updated_at, completed_at
         from payout where ($1::uuid is null or user_id = $1) and ($2::text is null or status = $2)
           and ($3::uuid is null or (created_at, payout_id) <
                (select created_at, payout_id from payout where payout_id = $3))
         order by created_at desc, payout_id desc limit $4",
        user_id,
        status,
        after,
        limit + 1,
    )
    .fetch_all(&api.state.pool)
    .await?;
    let has_more = rows.len() as i64 > limit;
    let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.payout_id).collect();
    let ops = operation::get_many(&api.state.pool, &ids).await?;
    let data: Vec<_> = rows
        .iter()
        .map(|row| PayoutBody::new(row, ops.get(&row.payout_id)))
        .collect();
    Ok((data, has_more))
}
