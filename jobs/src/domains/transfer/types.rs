//! The transfer domain's types: requests and their modes, rejections and errors, the stored row, the recipient's
//! decision, and the job kinds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::engine::{EnqueueError, Job, Queue};
use crate::ledger::{self, LedgerError};
use crate::money::{Amount, Currency};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Settles at once.
    Instant,
    /// Waits for the recipient to accept (posted) or reject (voided); expires after the acceptance window.
    Acceptance,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Instant => "instant",
            Mode::Acceptance => "acceptance",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recipient {
    Wallet(Uuid),
    AccountNumber(String),
}

/// A transfer request that passed parsing.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    pub from_wallet_id: Uuid,
    pub to: Recipient,
    pub amount: Amount,
    pub currency: Currency,
    pub narration: String,
    pub pin: Option<String>,
    pub mode: Mode,
}

/// Why a transfer was refused, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferRejection {
    #[error("the source wallet does not exist")]
    SourceWalletNotFound,
    #[error("the transfer currency must match both wallets' currency")]
    CurrenciesMustMatch { param: &'static str },
    #[error("the recipient wallet does not exist")]
    RecipientNotFound,
    #[error("a wallet cannot send to itself")]
    SameWallet,
    #[error("the source wallet is frozen")]
    WalletFrozen,
    #[error("the recipient wallet is frozen")]
    RecipientWalletFrozen,
    #[error("this wallet requires its PIN")]
    PinRequired,
    #[error("the PIN is locked after too many wrong entries; try again later")]
    PinLocked { until: DateTime<Utc> },
    #[error("the PIN is wrong")]
    InvalidPin { attempts_left: i32 },
    #[error("the amount and fee exceed the wallet's daily spending limit")]
    DailyLimitExceeded,
    #[error("the amount and fee exceed the wallet's monthly spending limit")]
    MonthlyLimitExceeded,
    #[error("the wallet's available balance does not cover the amount and the fee")]
    InsufficientFunds,
}

impl TransferRejection {
    pub fn code(&self) -> &'static str {
        match self {
            Self::SourceWalletNotFound => "wallet_not_found",
            Self::CurrenciesMustMatch { .. } => "currencies_must_match",
            Self::RecipientNotFound => "recipient_not_found",
            Self::SameWallet => "same_wallet",
            Self::WalletFrozen => "wallet_frozen",
            Self::RecipientWalletFrozen => "recipient_wallet_frozen",
            Self::PinRequired => "pin_required",
            Self::PinLocked { .. } => "pin_locked",
            Self::InvalidPin { .. } => "invalid_pin",
            Self::DailyLimitExceeded => "daily_limit_exceeded",
            Self::MonthlyLimitExceeded => "monthly_limit_exceeded",
            Self::InsufficientFunds => "insufficient_funds",
        }
    }

    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::SourceWalletNotFound | Self::WalletFrozen => Some("from_wallet_id"),
            Self::CurrenciesMustMatch { param } => Some(param),
            Self::RecipientNotFound | Self::SameWallet | Self::RecipientWalletFrozen => Some("to"),
            Self::PinRequired | Self::PinLocked { .. } | Self::InvalidPin { .. } => Some("pin"),
            Self::DailyLimitExceeded | Self::MonthlyLimitExceeded | Self::InsufficientFunds => {
                Some("amount")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    // Not `transparent`: the sqlx error stays in the source chain, where the api recognises a lost database.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Enqueue(#[from] EnqueueError),
}

impl TransferError {
    pub fn is_retryable(&self) -> bool {
        match self {
            TransferError::Database(error) => ledger::is_retryable_db_error(error),
            TransferError::Ledger(error) => error.is_retryable(),
            TransferError::Enqueue(_) => false,
        }
    }
}

/// Settles one transfer: posts its holds, or voids them when it was rejected or expired.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettleTransfer {
    pub transfer_id: Uuid,
}

impl Job for SettleTransfer {
    const KIND: &'static str = "transfer.settle";
    const QUEUE: Queue = Queue::Payments;
}

/// Marks unanswered acceptance transfers expired and enqueues their settlement (which voids the holds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpireTransfers {}

impl Job for ExpireTransfers {
    const KIND: &'static str = "transfers.expire";
    const QUEUE: Queue = Queue::Payments;
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct TransferRow {
    pub transfer_id: Uuid,
    pub from_wallet_id: Uuid,
    pub to_wallet_id: Uuid,
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    pub narration: String,
    pub mode: String,
    pub status: String,
    pub hold_id: Uuid,
    pub fee_hold_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionRejection {
    #[error("no such transfer awaits your acceptance")]
    NotFound,
    #[error("the transfer is not awaiting acceptance")]
    NotAwaitingAcceptance,
    #[error("the transfer expired before it was answered")]
    Expired,
}
