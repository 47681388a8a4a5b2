//! `/api/v1/transfers` and `/api/v1/operations/{id}`.
//!
//! Creating a transfer is idempotent (`Idempotency-Key` required): the key, the checks, the holds, the operation
//! and its job are one transaction, and the stored answer is replayed for the same key and request.

use std::time::Duration;

use paycore_jobs::domains::transfer::{
    self, Decision, DecisionRejection, Mode, Recipient, TransferRejection, TransferRequest,
    TransferRow,
};
use paycore_jobs::money::{Amount, AmountError, Currency};
use paycore_jobs::operation::{self, Operation};
use poem_openapi::{
    param::{Header, Path},
    payload::Json,
    types::ToJSON,
    ApiResponse, Object, OpenApi,
};
use uuid::Uuid;

use super::{parse_id, ApiTag};
use crate::payload::Body;
use crate::schema::{IdText, MinorUnits};
use crate::{
    error::{ApiError, ApiResult},
    events, idempotent,
    security::BearerAuth,
    AppState,
};

pub struct TransfersApi {
    pub state: AppState,
}

/// A narration is a short note shown on both sides' statements.
const NARRATION_CHARS_MAX: usize = 140;
/// The longest PIN string accepted before checking it.
const PIN_CHARS_MAX: usize = 12;

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct CreateTransferRequest {
    pub from_wallet_id: IdText,
    /// The recipient's 10-digit account number; or give `to_wallet_id`.
    #[oai(nullable)]
    pub to_account_number: Option<String>,
    #[oai(nullable)]
    pub to_wallet_id: Option<IdText>,
    /// Minor units (kobo, cents), a positive whole number.
    pub amount: MinorUnits,
    pub currency: String,
    #[oai(default)]
    pub narration: String,
    /// Required when the source wallet has a PIN.
    #[oai(nullable)]
    pub pin: Option<String>,
    /// When true the recipient must accept the transfer; until then the funds are held.
    #[oai(default)]
    pub require_acceptance: bool,
}

#[derive(Debug, Clone, Object)]
pub struct Money {
    /// Minor units.
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Clone, Object)]
pub struct TransferBody {
    pub transfer_id: String,
    pub operation_id: String,
    /// processing, awaiting_acceptance, accepted, rejected, expired, completed or failed.
    pub status: String,
    /// The operation's status: pending, processing, requires_action, succeeded, failed or cancelled.
    pub operation_status: String,
    #[oai(nullable)]
    pub failure_code: Option<String>,
    /// instant or acceptance.
    pub mode: String,
    pub from_wallet_id: String,
    pub to_wallet_id: String,
    pub amount: Money,
    pub fee: Money,
    pub narration: String,
    #[oai(nullable)]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl TransferBody {
    fn new(row: &TransferRow, op: Option<&Operation>) -> Self {
        Self {
            transfer_id: row.transfer_id.to_string(),
            operation_id: row.transfer_id.to_string(),
            status: row.status.clone(),
            operation_status: op
                .map(|o| o.status.clone())
                .unwrap_or_else(|| "pending".into()),
            failure_code: op.and_then(|o| o.failure_code.clone()),
            mode: row.mode.clone(),
            from_wallet_id: row.from_wallet_id.to_string(),
            to_wallet_id: row.to_wallet_id.to_string(),
            amount: Money {
                amount: row.amount,
                currency: row.currency.clone(),
            },
            fee: Money {
                amount: row.fee,
                currency: row.currency.clone(),
            },
            narration: row.narration.clone(),
            expires_at: row.expires_at,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct OperationBody {
    pub operation_id: String,
    pub kind: String,
    pub status: String,
    #[oai(nullable)]
    pub failure_code: Option<String>,
    #[oai(nullable)]
    pub failure_message: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[oai(nullable)]
    pub settled_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<Operation> for OperationBody {
    fn from(op: Operation) -> Self {
        Self {
            operation_id: op.operation_id.to_string(),
            kind: op.kind,
            status: op.status,
            failure_code: op.failure_code,
            failure_message: op.failure_message,
            created_at: op.created_at,
            settled_at: op.settled_at,
        }
    }
}

#[derive(ApiResponse)]
pub enum TransferResponse {
    /// Settled while the client waited (`Prefer: wait`).
    #[oai(status = 200)]
    Settled(Json<TransferBody>),
    /// Created and settled while the client waited.
    #[oai(status = 201)]
    Created(Json<TransferBody>),
    /// Accepted: the funds are held and the transfer settles shortly; follow the operation.
    #[oai(status = 202)]
    Accepted(Json<TransferBody>),
}

fn invalid(code: &str, message: &str, param: &str) -> ApiError {
    ApiError::invalid(code, message, Some(param))
}

/// Turns the request body into a domain request, or the first problem with it.
fn parse_request(body: &CreateTransferRequest) -> Result<TransferRequest, ApiError> {
    let from_wallet_id = parse_id(&body.from_wallet_id, "from_wallet_id")?;
    let to = match (&body.to_account_number, &body.to_wallet_id) {
        (Some(number), None) => {
            let number = number.trim();
            if number.len() != 10 || !number.chars().all(|c| c.is_ascii_digit()) {
                return Err(invalid(
                    "invalid_account_number",
                    "An account number is 10 digits.",
                    "to_account_number",
                ));
            }
            Recipient::AccountNumber(number.to_owned())
        }
        (None, Some(wallet_id)) => Recipient::Wallet(parse_id(wallet_id, "to_wallet_id")?),
        _ => {
            return Err(invalid(
                "recipient_required",
                "Give exactly one of to_account_number and to_wallet_id.",
                "to_account_number",
            ))
        }
    };
    let amount = Amount::new(body.amount.0).map_err(|error| match error {
        AmountError::NotPositive => invalid(
            "invalid_amount",
            "The amount must be a positive number of minor units.",
            "amount",
        ),
        AmountError::TooLarge => invalid(
            "amount_too_large",
            "The amount is larger than the maximum.",
            "amount",
        ),
    })?;
    let currency: Currency = super::parse_currency(&body.currency)?;
    let narration = body.narration.trim().to_owned();
    if narration.chars().count() > NARRATION_CHARS_MAX || narration.chars().any(char::is_control) {
        return Err(invalid(
            "invalid_narration",
            "The narration must be at most 140 printable characters.",
            "narration",
        ));
    }
    if body
        .pin
        .as_ref()
        .is_some_and(|pin| pin.len() > PIN_CHARS_MAX)
    {
        return Err(invalid(
            "invalid_pin_format",
            "The PIN is 4 to 6 digits.",
            "pin",
        ));
    }
    Ok(TransferRequest {
        from_wallet_id,
        to,
        amount,
        currency,
        narration,
        pin: body.pin.clone(),
        mode: if body.require_acceptance {
            Mode::Acceptance
        } else {
            Mode::Instant
        },
    })
}

fn rejection_error(rejection: &TransferRejection) -> ApiError {
    match rejection {
        TransferRejection::SourceWalletNotFound => {
            ApiError::not_found("wallet_not_found", "No such wallet.")
        }
        other => ApiError::rejected(other.code(), other.to_string(), other.param()),
    }
}

fn replay(status: u16, body: serde_json::Value) -> ApiResult<TransferResponse> {
    if status >= 300 {
        return Err(idempotent::replay_error(status, body));
    }
    let transfer: TransferBody = idempotent::replay_body(body)?;
    Ok(match status {
        200 => TransferResponse::Settled(Json(transfer)),
        201 => TransferResponse::Created(Json(transfer)),
        _ => TransferResponse::Accepted(Json(transfer)),
    })
}

/// Checks, holds and records one transfer inside the idempotent create transaction.
struct CreateTransfer<'a> {
    money: &'a paycore_jobs::platform::config::MoneyConfig,
    user_id: Uuid,
    request: TransferRequest,
}

impl idempotent::CreateAction for CreateTransfer<'_> {
    async fn run(
        &self,
        tx: &mut sqlx::PgConnection,
    ) -> Result<Result<idempotent::Created, ApiError>, idempotent::CreateError> {
        let outcome = transfer::create_tx(tx, self.money, self.user_id, &self.request)
            .await
            .map_err(|error| idempotent::CreateError {
                retryable: error.is_retryable(),
                source: error.into(),
            })?;
        Ok(match outcome {
            Ok(row) => {
                let op = operation::Operation {
                    operation_id: row.transfer_id,
                    kind: "transfer".into(),
                    owner_id: Some(self.user_id),
                    status: if row.mode == "instant" {
                        "processing"
                    } else {
                        "requires_action"
                    }
                    .into(),
                    request: serde_json::Value::Null,
                    result: None,
                    failure_code: None,
                    failure_message: None,
                    created_at: row.created_at,
                    updated_at: row.created_at,
                    settled_at: None,
                };
                Ok(idempotent::Created {
                    operation_id: row.transfer_id,
                    // An instant transfer's settlement job; or the e-mail asking the recipient to accept.
                    wake: if row.mode == "instant" {
                        &[paycore_jobs::engine::Queue::Payments]
                    } else {
                        &[paycore_jobs::engine::Queue::Emails]
                    },
                    body: TransferBody::new(&row, Some(&op))
                        .to_json()
                        .unwrap_or_default(),
                })
            }
            Err(rejection) => Err(rejection_error(&rejection)),
        })
    }
}

impl TransfersApi {
    async fn body_of(&self, row: &TransferRow) -> ApiResult<TransferBody> {
        let op = operation::get(&self.state.pool, row.transfer_id).await?;
        Ok(TransferBody::new(row, op.as_ref()))
    }

    /// Waits for the transfer's operation to settle when the client asked to; the answer to send. `unsettled` is
    /// the transfer as the caller has it, answered if it does not settle in time (it is read otherwise).
    async fn respond(
        &self,
        transfer_id: Uuid,
        unsettled: Option<TransferRow>,
        wait: Option<Duration>,
        settled_status: u16,
    ) -> ApiResult<TransferResponse> {
        if let Some(wait) = wait {
            let settled =
                events::wait_settled(&self.state.pool, &self.state.events, transfer_id, wait)
                    .await?;
            if let Some(op) = settled.filter(|op| op.status().is_terminal()) {
                let body = TransferBody::new(&self.stored(transfer_id).await?, Some(&op));
                return Ok(if settled_status == 201 {
                    TransferResponse::Created(Json(body))
                } else {
                    TransferResponse::Settled(Json(body))
                });
            }
        }
        let row = match unsettled {
            Some(row) => row,
            None => self.stored(transfer_id).await?,
        };
        Ok(TransferResponse::Accepted(Json(self.body_of(&row).await?)))
    }

    async fn stored(&self, transfer_id: Uuid) -> ApiResult<TransferRow> {
        transfer::get(&self.state.pool, transfer_id)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("transfer vanished")))
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTag::Transfers")]
impl TransfersApi {
    /// Send money to another wallet (same currency). The funds are held at once and the transfer settles as a
    /// job; send `Prefer: wait=N` (N ≤ 30) to wait for the final state.
    #[oai(path = "/transfers", method = "post")]
    async fn create(
        &self,
        caller: BearerAuth,
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 255))]
        idempotency_key: Header<String>,
        #[oai(name = "Prefer")] prefer: Header<Option<String>>,
        body: Body<CreateTransferRequest>,
    ) -> ApiResult<TransferResponse> {
        let key = idempotent::check_key(&idempotency_key)?;
        let request = parse_request(&body)?;
        let request_hash = idempotent::request_hash("transfers", &body.0)?;
        let wait = events::parse_prefer_wait(prefer.0.as_deref());
        let action = CreateTransfer {
            money: &self.state.config.money,
            user_id: caller.0.user_id,
            request,
        };
        match idempotent::create(&self.state, caller.0.user_id, &key, &request_hash, &action)
            .await?
        {
            idempotent::Outcome::Created(created) => {
                self.respond(created.operation_id, None, wait, 201).await
            }
            // A replayed success answers the transfer as it is now (settled: 201), never a stale snapshot.
            idempotent::Outcome::Stored { status, body } if status < 300 => {
                match idempotent::stored_operation_id(&body) {
                    Some(transfer_id) => {
                        self.respond(transfer_id, None, Some(wait.unwrap_or(Duration::ZERO)), 201)
                            .await
                    }
                    None => replay(status, body),
                }
            }
            idempotent::Outcome::Stored { status, body } => replay(status, body),
        }
    }

    /// A transfer the caller sent or receives.
    #[oai(path = "/transfers/:transfer_id", method = "get")]
    async fn get(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        transfer_id: Path<String>,
    ) -> ApiResult<Json<TransferBody>> {
        let id = parse_id(&transfer_id, "transfer_id").map_err(|_| transfer_not_found())?;
        let row = transfer::visible_to(&self.state.pool, caller.0.user_id, id)
            .await?
            .ok_or_else(transfer_not_found)?;
        Ok(Json(self.body_of(&row).await?))
    }

    /// Accept a transfer sent to you that awaits acceptance; the held funds are posted to your wallet.
    #[oai(path = "/transfers/:transfer_id/accept", method = "post")]
    async fn accept(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        transfer_id: Path<String>,
        #[oai(name = "Prefer")] prefer: Header<Option<String>>,
    ) -> ApiResult<TransferResponse> {
        self.decide(caller, &transfer_id, Decision::Accept, prefer.0.as_deref())
            .await
    }

    /// Reject a transfer sent to you that awaits acceptance; the sender's held funds are released.
    #[oai(path = "/transfers/:transfer_id/reject", method = "post")]
    async fn reject(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        transfer_id: Path<String>,
        #[oai(name = "Prefer")] prefer: Header<Option<String>>,
    ) -> ApiResult<TransferResponse> {
        self.decide(caller, &transfer_id, Decision::Reject, prefer.0.as_deref())
            .await
    }

    /// An operation the caller owns.
    #[oai(path = "/operations/:operation_id", method = "get")]
    async fn operation(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        operation_id: Path<String>,
    ) -> ApiResult<Json<OperationBody>> {
        let not_found = || ApiError::not_found("operation_not_found", "No such operation.");
        let id: Uuid = parse_id(&operation_id, "operation_id").map_err(|_| not_found())?;
        let op = operation::get(&self.state.pool, id)
            .await?
            .filter(|op| op.owner_id == Some(caller.0.user_id))
            .ok_or_else(not_found)?;
        Ok(Json(op.into()))
    }
}

fn transfer_not_found() -> ApiError {
    ApiError::not_found("transfer_not_found", "No such transfer.")
}

impl TransfersApi {
    async fn decide(
        &self,
        caller: BearerAuth,
        transfer_id: &str,
        decision: Decision,
        prefer: Option<&str>,
    ) -> ApiResult<TransferResponse> {
        let id = parse_id(transfer_id, "transfer_id").map_err(|_| transfer_not_found())?;
        let outcome = transfer::decide(&self.state.pool, caller.0.user_id, id, decision)
            .await
            .map_err(ApiError::internal)?;
        let row = outcome.map_err(|rejection| match rejection {
            DecisionRejection::NotFound => transfer_not_found(),
            DecisionRejection::NotAwaitingAcceptance => {
                ApiError::conflict("transfer_not_awaiting_acceptance", rejection.to_string())
            }
            DecisionRejection::Expired => {
                ApiError::conflict("transfer_expired", rejection.to_string())
            }
        })?;
        self.respond(
            row.transfer_id,
            Some(row),
            events::parse_prefer_wait(prefer),
            200,
        )
        .await
    }
}
