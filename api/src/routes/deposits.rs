//! `/api/v1/deposits`: money in through the payment gateway's hosted page. Deposits by bank transfer into a
//! wallet's account number arrive by the gateway's signed webhook and are listed here too.

use paycore_jobs::domains::deposit::{self, DepositRejection, DepositRow, ReturnUrlRejection};
use paycore_jobs::money::Amount;
use paycore_jobs::operation::{self, Operation};
use poem_openapi::{
    param::{Header, Path, Query},
    payload::Json,
    ApiResponse, Object, OpenApi,
};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{amount_of, list_limit, parse_id, transfers::Money, ApiTag};
use crate::payload::Body;
use crate::schema::{IdText, MinorUnits};
use crate::{
    error::{ApiError, ApiResult},
    events,
    idempotent::{self, CreateAction, CreateError, Created, Finished},
    security::BearerAuth,
    AppState,
};

pub struct DepositsApi {
    pub state: AppState,
}

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct CreateDepositRequest {
    /// An NGN wallet of the caller.
    pub wallet_id: IdText,
    /// Minor units (kobo), at least 10000 (₦100).
    pub amount: MinorUnits,
    /// Where the payment page sends the customer afterwards: an http(s) URL on a host the platform allows
    /// (`DEPOSIT_RETURN_HOSTS`), else 400 `return_url_host_not_allowed`.
    #[oai(nullable)]
    pub return_url: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct DepositBody {
    pub deposit_id: String,
    pub operation_id: String,
    /// initializing, requires_action (pay at `authorization_url`), completed or failed.
    pub status: String,
    pub operation_status: String,
    #[oai(nullable)]
    pub failure_code: Option<String>,
    #[oai(nullable)]
    pub failure_message: Option<String>,
    /// card (hosted page) or bank_transfer (into the wallet's account number).
    pub channel: String,
    pub wallet_id: String,
    /// What was paid.
    pub amount: Money,
    /// The deposit fee (1.5 %, at most ₦2,000); the wallet is credited `amount - fee`.
    pub fee: Money,
    /// The gateway's hosted payment page.
    #[oai(nullable)]
    pub authorization_url: Option<String>,
    /// The gateway's reference.
    pub reference: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[oai(nullable)]
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl DepositBody {
    pub fn new(row: &DepositRow, op: Option<&Operation>) -> Self {
        let money = |amount| Money {
            amount,
            currency: row.currency.clone(),
        };
        Self {
            deposit_id: row.deposit_id.to_string(),
            operation_id: row.deposit_id.to_string(),
            status: row.status.clone(),
            operation_status: op
                .map(|o| o.status.clone())
                .unwrap_or_else(|| "pending".into()),
            failure_code: op.and_then(|o| o.failure_code.clone()),
            failure_message: op.and_then(|o| o.failure_message.clone()),
            channel: row.channel.clone(),
            wallet_id: row.wallet_id.to_string(),
            amount: money(row.amount),
            fee: money(row.fee),
            authorization_url: row.authorization_url.clone(),
            reference: row.reference.clone(),
            created_at: row.created_at,
            completed_at: row.completed_at,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct DepositList {
    pub data: Vec<DepositBody>,
    pub has_more: bool,
}

#[derive(ApiResponse)]
pub enum DepositResponse {
    /// The payment page is ready (or the deposit already settled) while the client waited.
    #[oai(status = 201)]
    Created(Json<DepositBody>),
    /// Accepted: the payment page is being prepared; follow the deposit or the operation.
    #[oai(status = 202)]
    Accepted(Json<DepositBody>),
}

struct CreateDeposit {
    fee: i64,
    user_id: Uuid,
    wallet_id: Uuid,
    amount: Amount,
    return_url: Option<String>,
}

impl CreateAction for CreateDeposit {
    async fn run(&self, tx: &mut PgConnection) -> Result<Result<Created, ApiError>, CreateError> {
        let outcome = deposit::create_tx(
            tx,
            self.user_id,
            self.wallet_id,
            self.amount,
            self.fee,
            self.return_url.as_deref(),
        )
        .await?;
        Ok(match outcome {
            Ok(row) => {
                let body = DepositBody::new(&row, None);
                Ok(Created {
                    operation_id: row.deposit_id,
                    wake: crate::idempotent::PAYMENTS_AND_EMAILS,
                    body: poem_openapi::types::ToJSON::to_json(&body).unwrap_or_default(),
                })
            }
            Err(rejection) => Err(match rejection {
                DepositRejection::WalletNotFound => {
                    ApiError::not_found("wallet_not_found", "No such wallet.")
                }
                other => ApiError::rejected(other.code(), other.to_string(), Some("wallet_id")),
            }),
        })
    }
}

impl DepositsApi {
    /// The caller's deposit `raw_id`, or 404.
    async fn owned(&self, caller: &BearerAuth, raw_id: &str) -> ApiResult<DepositRow> {
        let not_found = || ApiError::not_found("deposit_not_found", "No such deposit.");
        let id = parse_id(raw_id, "deposit_id").map_err(|_| not_found())?;
        deposit::get(&self.state.pool, id)
            .await?
            .filter(|d| d.user_id == caller.0.user_id)
            .ok_or_else(not_found)
    }

    async fn body_of(&self, row: &DepositRow) -> ApiResult<DepositBody> {
        let op = operation::get(&self.state.pool, row.deposit_id).await?;
        Ok(DepositBody::new(row, op.as_ref()))
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTag::Deposits")]
impl DepositsApi {
    /// Start a deposit through the gateway's hosted payment page. The answer (or, with `Prefer: wait=N`, the
    /// answer after the page is ready) carries `authorization_url`; the wallet is credited once the gateway
    /// confirms the payment.
    #[oai(path = "/deposits", method = "post")]
    async fn create(
        &self,
        caller: BearerAuth,
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 255))]
        idempotency_key: Header<String>,
        #[oai(name = "Prefer")] prefer: Header<Option<String>>,
        body: Body<CreateDepositRequest>,
    ) -> ApiResult<DepositResponse> {
        let key = idempotent::check_key(&idempotency_key)?;
        let wallet_id = parse_id(&body.wallet_id, "wallet_id")?;
        let amount = amount_of(body.amount.0)?;
        if amount.minor() < 10_000 {
            return Err(ApiError::invalid(
                "amount_too_small",
                "The smallest deposit is ₦100 (10000 kobo).",
                Some("amount"),
            ));
        }
        let return_url = match body.return_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => Some(deposit::check_return_url(&self.state.config, url).map_err(
                |rejection| {
                    let message = match rejection {
                        ReturnUrlRejection::Malformed => {
                            "The return URL must be an http(s) URL of at most 500 characters."
                        }
                        ReturnUrlRejection::HostNotAllowed => {
                            "The return URL's host is not one this platform returns customers to."
                        }
                    };
                    ApiError::invalid(rejection.code(), message, Some("return_url"))
                },
            )?),
        };
        let hash = idempotent::request_hash("deposits", &body.0)?;
        let action = CreateDeposit {
            fee: deposit::fee_for(&self.state.config, amount),
            user_id: caller.0.user_id,
            wallet_id,
            amount,
            return_url,
        };
        let outcome =
            idempotent::create(&self.state, caller.0.user_id, &key, &hash, &action).await?;
        let id = match idempotent::finish(
            &self.state,
            outcome,
            prefer.0.as_deref(),
            DepositResponse::Accepted,
        )
        .await?
        {
            Finished::Created(id) => id,
            Finished::Replayed(response) => return Ok(response),
        };
        let row = deposit::get(&self.state.pool, id)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("deposit vanished")))?;
        let body = self.body_of(&row).await?;
        Ok(if row.status == "initializing" {
            DepositResponse::Accepted(Json(body))
        } else {
            DepositResponse::Created(Json(body))
        })
    }

    /// A deposit of the caller's.
    #[oai(path = "/deposits/:deposit_id", method = "get")]
    async fn get(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        deposit_id: Path<String>,
    ) -> ApiResult<Json<DepositBody>> {
        let row = self.owned(&caller, &deposit_id).await?;
        Ok(Json(self.body_of(&row).await?))
    }

    /// Ask the gateway about this deposit now (for example when the customer returns from the payment page);
    /// the answer is applied as a job, like a webhook's.
    #[oai(path = "/deposits/:deposit_id/verify", method = "post")]
    async fn verify(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        deposit_id: Path<String>,
        #[oai(name = "Prefer")] prefer: Header<Option<String>>,
    ) -> ApiResult<Json<DepositBody>> {
        let row = self.owned(&caller, &deposit_id).await?;
        let id = row.deposit_id;
        if row.status == "requires_action" {
            deposit::request_verification(&self.state.pool, id).await?;
            if let Some(wait) = events::parse_prefer_wait(prefer.0.as_deref()) {
                events::wait_terminal(&self.state.pool, &self.state.events, id, wait).await?;
            }
        }
        let row = deposit::get(&self.state.pool, id).await?.unwrap_or(row);
        Ok(Json(self.body_of(&row).await?))
    }

    /// The caller's deposits, newest first.
    #[oai(path = "/deposits", method = "get")]
    async fn list(
        &self,
        caller: BearerAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<DepositList>> {
        let limit = list_limit(limit.0)?;
        let after = starting_after
            .0
            .as_deref()
            .map(|id| parse_id(id, "starting_after"))
            .transpose()?;
        let rows: Vec<DepositRow> = sqlx::query_as(
            "select * from deposit where user_id = $1
               and ($2::uuid is null or (created_at, deposit_id) <
                    (select created_at, deposit_id from deposit where deposit_id = $2 and user_id = $1))
             order by created_at desc, deposit_id desc limit $3",
        )
        .bind(caller.0.user_id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&self.state.pool)
        .await?;
        let has_more = rows.len() as i64 > limit;
        let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
        let ids: Vec<Uuid> = rows.iter().map(|row| row.deposit_id).collect();
        let ops = operation::get_many(&self.state.pool, &ids).await?;
        let data: Vec<_> = rows
            .iter()
            .map(|row| DepositBody::new(row, ops.get(&row.deposit_id)))
            .collect();
        Ok(Json(DepositList { data, has_more }))
    }
}
