//! Spending from a wallet to the outside world (payouts, bill payments): the checks every debit passes, the holds
//! that reserve the amount and the fee, and their resolution.
//!
//! The checks run in a fixed order of precedence on the wallet row locked by the caller's transaction; the holds
//! are placed under a savepoint so that "insufficient funds" (the ledger's CHECK) leaves the transaction usable
//! for recording the rejection. Resolution reads the holds back from the ledger, so a job needs only their ids.

use serde::Serialize;
use sqlx::{Acquire, PgConnection};
use uuid::Uuid;

use crate::domains::identity::auth;
use crate::domains::wallet::{self, PinCheck, WalletRow};
use crate::engine::JobError;
use crate::ledger::{self, AccountId, Flow, LedgerError, NewTransfer, SystemAccount};
use crate::money::{Amount, Currency};

/// Why a debit was refused, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum SpendRejection {
    #[error("the wallet does not exist")]
    WalletNotFound,
    #[error("the amount's currency is not the wallet's")]
    CurrencyNotSupported,
    #[error("the wallet is frozen")]
    WalletFrozen,
    /// Money leaves the platform only from accounts whose owner proved the e-mail address (docs/security.md).
    #[error("verify your e-mail address before sending money out")]
    EmailNotVerified,
    #[error("this wallet requires its PIN")]
    PinRequired,
    #[error("the PIN is locked after too many wrong entries; try again later")]
    PinLocked,
    #[error("the PIN is wrong")]
    InvalidPin,
    #[error("the amount and fee exceed the wallet's daily spending limit")]
    DailyLimitExceeded,
    #[error("the amount and fee exceed the wallet's monthly spending limit")]
    MonthlyLimitExceeded,
    #[error("the wallet's available balance does not cover the amount and the fee")]
    InsufficientFunds,
}

impl SpendRejection {
    pub fn code(&self) -> &'static str {
        match self {
            Self::WalletNotFound => "wallet_not_found",
            Self::CurrencyNotSupported => "unsupported_currency",
            Self::WalletFrozen => "wallet_frozen",
            Self::EmailNotVerified => "email_not_verified",
            Self::PinRequired => "pin_required",
            Self::PinLocked => "pin_locked",
            Self::InvalidPin => "invalid_pin",
            Self::DailyLimitExceeded => "daily_limit_exceeded",
            Self::MonthlyLimitExceeded => "monthly_limit_exceeded",
            Self::InsufficientFunds => "insufficient_funds",
        }
    }

    pub fn param(&self) -> &'static str {
        match self {
            Self::WalletNotFound | Self::WalletFrozen | Self::CurrencyNotSupported => "wallet_id",
            Self::EmailNotVerified => "email",
            Self::PinRequired | Self::PinLocked | Self::InvalidPin => "pin",
            Self::DailyLimitExceeded | Self::MonthlyLimitExceeded | Self::InsufficientFunds => {
                "amount"
            }
        }
    }
}

/// Locks the caller's wallet and runs the checks for spending `total` (amount plus fee) in `currency`.
pub async fn check_tx(
    tx: &mut PgConnection,
    user_id: Uuid,
    wallet_id: Uuid,
    currency: Currency,
    pin: Option<&str>,
    total: i64,
) -> Result<Result<WalletRow, SpendRejection>, sqlx::Error> {
    use SpendRejection as R;
    let Some(source) = wallet::lock_tx(tx, wallet_id)
        .await?
        .filter(|w| w.user_id == user_id)
    else {
        return Ok(Err(R::WalletNotFound));
    };
    if source.currency() != currency {
        return Ok(Err(R::CurrencyNotSupported));
    }
    if source.is_frozen() {
        return Ok(Err(R::WalletFrozen));
    }
    if !auth::email_verified_tx(tx, user_id).await? {
        return Ok(Err(R::EmailNotVerified));
    }
    match wallet::check_pin_tx(tx, &source, pin).await? {
        PinCheck::Ok => {}
        PinCheck::Required => return Ok(Err(R::PinRequired)),
        PinCheck::Locked { .. } => return Ok(Err(R::PinLocked)),
        PinCheck::Invalid { .. } => return Ok(Err(R::InvalidPin)),
    }
    match wallet::limits::exceeded_limit_tx(tx, &source, total).await? {
        Some(wallet::limits::SpendLimit::Daily) => return Ok(Err(R::DailyLimitExceeded)),
        Some(wallet::limits::SpendLimit::Monthly) => return Ok(Err(R::MonthlyLimitExceeded)),
        None => {}
    }
    Ok(Ok(source))
}

/// The holds of one debit: the amount towards `counterparty`, the fee towards fee income.
#[derive(Debug, Clone, Copy)]
pub struct Holds {
    pub hold_id: Uuid,
    pub fee_hold_id: Option<Uuid>,
}

/// Holds `amount` (to `counterparty`, code `code`) and `fee` (to fee income) from `wallet`, under a savepoint:
/// `Ok(Err(InsufficientFunds))` when the wallet cannot cover both, with nothing written.
pub async fn hold_tx(
    tx: &mut PgConnection,
    wallet: &WalletRow,
    counterparty: AccountId,
    code: &'static str,
    amount: Amount,
    fee: i64,
    operation_id: Uuid,
) -> Result<Result<Holds, SpendRejection>, LedgerError> {
    let currency = wallet.currency();
    let mut savepoint = tx.begin().await?;
    let mut holds = vec![NewTransfer {
        flow: Flow::Pending {
            amount,
            expires_at: None,
        },
        debit: wallet.account_id,
        credit: counterparty,
        currency,
        code,
        operation_id: Some(operation_id),
    }];
    if let Ok(fee_amount) = Amount::new(fee) {
        let fee_account =
            ledger::system_account_tx(&mut savepoint, SystemAccount::FeeIncome, currency).await?;
        holds.push(NewTransfer {
            flow: Flow::Pending {
                amount: fee_amount,
                expires_at: None,
            },
            debit: wallet.account_id,
            credit: fee_account,
            currency,
            code: "fee",
            operation_id: Some(operation_id),
        });
    }
    match ledger::post_tx(&mut savepoint, &holds).await {
        Ok(ids) => {
            savepoint.commit().await?;
            Ok(Ok(Holds {
                hold_id: ids[0],
                fee_hold_id: ids.get(1).copied(),
            }))
        }
        Err(LedgerError::InsufficientFunds(_)) => {
            savepoint.rollback().await?;
            Ok(Err(SpendRejection::InsufficientFunds))
        }
        Err(error) => {
            savepoint.rollback().await?;
            Err(error)
        }
    }
}

/// A debit towards a payment provider: who spends what from which wallet, for which operation.
pub struct Intent<'a> {
    pub user_id: Uuid,
    pub wallet_id: Uuid,
    pub amount: Amount,
    pub fee: i64,
    pub pin: Option<&'a str>,
    /// The operation's kind and recorded request.
    pub kind: &'static str,
    pub request: serde_json::Value,
    /// The provider whose clearing account receives the amount.
    pub provider: crate::providers::ProviderName,
    /// The ledger code of the amount's hold.
    pub code: &'static str,
}

/// Checks the wallet, records the operation and holds the amount (towards the provider's clearing account) and
/// the fee, in the caller's transaction: the operation id and the holds, or why not (nothing written then).
pub async fn open_tx(
    tx: &mut PgConnection,
    intent: &Intent<'_>,
) -> Result<Result<(Uuid, Holds), SpendRejection>, LedgerError> {
    let total = intent
        .amount
        .minor()
        .checked_add(intent.fee)
        .ok_or(LedgerError::Overflow)?;
    let source = match check_tx(
        tx,
        intent.user_id,
        intent.wallet_id,
        Currency::Ngn,
        intent.pin,
        total,
    )
    .await?
    {
        Ok(source) => source,
        Err(rejection) => return Ok(Err(rejection)),
    };
    // The operation and its holds stand or fall together: a refusal of the holds (insufficient funds) rolls the
    // operation back with them, so a rejected request leaves no operation behind (docs/money.md).
    let mut savepoint = tx.begin().await?;
    let operation_id = crate::operation::insert_tx(
        &mut savepoint,
        intent.kind,
        Some(intent.user_id),
        &intent.request,
    )
    .await?;
    let clearing = ledger::system_account_tx(
        &mut savepoint,
        SystemAccount::Clearing(intent.provider),
        Currency::Ngn,
    )
    .await?;
    match hold_tx(
        &mut savepoint,
        &source,
        clearing,
        intent.code,
        intent.amount,
        intent.fee,
        operation_id,
    )
    .await?
    {
        Ok(holds) => {
            savepoint.commit().await?;
            Ok(Ok((operation_id, holds)))
        }
        Err(rejection) => {
            savepoint.rollback().await?;
            Ok(Err(rejection))
        }
    }
}

struct HoldRow {
    transfer_id: Uuid,
    debit_account_id: AccountId,
    credit_account_id: AccountId,
    amount: i64,
    currency: String,
    code: String,
    operation_id: Option<Uuid>,
}

/// The static name of a ledger code read back from the database.
fn static_code(code: &str) -> &'static str {
    match code {
        "payout" => "payout",
        "bill_payment" => "bill_payment",
        "fee" => "fee",
        "transfer" => "transfer",
        "deposit" => "deposit",
        "refund" => "refund",
        _ => "other",
    }
}

/// Posts (`post`) or voids the given holds in one batch, in the caller's (fenced) transaction.
pub async fn resolve_tx(
    tx: &mut PgConnection,
    hold_ids: &[Uuid],
    post: bool,
) -> Result<(), JobError> {
    let rows: Vec<HoldRow> = sqlx::query_as!(
        HoldRow,
        "select transfer_id, debit_account_id, credit_account_id, amount, currency, code, operation_id
         from ledger_transfer where transfer_id = any($1) and flow = 'pending' order by transfer_id",
        hold_ids,
    )
    .fetch_all(&mut *tx)
    .await?;
    if rows.len() != hold_ids.len() {
        return Err(JobError::permanent(
            "hold_not_found",
            "a hold of this operation is missing from the ledger",
        ));
    }
    let mut moves = Vec::with_capacity(rows.len());
    for row in rows {
        let currency: Currency = row
            .currency
            .parse()
            .map_err(|_| JobError::permanent("invalid_currency", "unknown currency on a hold"))?;
        let flow = if post {
            Flow::PostPending {
                pending_id: row.transfer_id,
                amount: Amount::new(row.amount)
                    .map_err(|e| JobError::permanent("invalid_amount", e.to_string()))?,
            }
        } else {
            Flow::VoidPending {
                pending_id: row.transfer_id,
            }
        };
        moves.push(NewTransfer {
            flow,
            debit: row.debit_account_id,
            credit: row.credit_account_id,
            currency,
            code: static_code(&row.code),
            operation_id: row.operation_id,
        });
    }
    ledger_result(ledger::post_tx(tx, &moves).await).map(|_| ())
}

/// Maps a ledger error inside a job: deadlocks retry, anything else is a defect that must not be retried blindly.
pub fn ledger_result<T>(result: Result<T, LedgerError>) -> Result<T, JobError> {
    match result {
        Ok(value) => Ok(value),
        Err(error) if error.is_retryable() => Err(JobError::transient(error)),
        Err(LedgerError::Database(error)) => Err(JobError::from(error)),
        Err(error) => Err(JobError::permanent("ledger_rejected", error.to_string())),
    }
}

/// Posts `moves` of fresh money (deposits, refunds) in the caller's transaction.
pub async fn post_new_tx(
    tx: &mut PgConnection,
    moves: &[NewTransfer],
) -> Result<Vec<Uuid>, JobError> {
    ledger_result(ledger::post_tx(tx, moves).await)
}
