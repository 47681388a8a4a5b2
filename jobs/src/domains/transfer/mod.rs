//! Wallet-to-wallet transfers as durable operations.
//!
//! The API calls `create_tx`: in its transaction the source wallet is locked, the request is checked in a fixed
//! order of precedence, and the amount and the fee are **held** (pending ledger transfers) together with the
//! operation and its `payments` job. "Insufficient funds" is therefore answered synchronously and can never be
//! oversold. The worker's `transfer.settle` job posts the holds (or voids them for a rejected or expired
//! transfer) in one fenced transaction. A transfer that needs acceptance waits for the recipient; unanswered ones
//! expire through the `transfers.expire` schedule.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Acquire, PgConnection, PgPool};
use uuid::Uuid;

use crate::domains::wallet::{self, PinCheck};
use crate::engine::{enqueue_tx, EnqueueError, Job, JobContext, JobError, NewJob, Queue};
use crate::ledger::{self, Flow, LedgerError, NewTransfer, SystemAccount};
use crate::money::{Amount, Currency};
use crate::notify;
use crate::operation;
use crate::platform::config::MoneyConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Settles at once.
    Instant,
    /// Waits for the recipient to accept (posted) or reject (voided); expires after the acceptance window.
    Acceptance,
}

impl Mode {
    fn as_str(self) -> &'static str {
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
    #[error(transparent)]
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

pub mod batch;

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

/// Transfers expired per run of the sweep; a larger backlog is finished by the next runs.
const EXPIRE_BATCH: i64 = 500;

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

/// Checks, holds and records a transfer in the caller's transaction. A rejection leaves no money written (the
/// wallet's PIN counters excepted): the caller commits either way.
pub async fn create_tx(
    tx: &mut PgConnection,
    money: &MoneyConfig,
    user_id: Uuid,
    request: &TransferRequest,
) -> Result<Result<TransferRow, TransferRejection>, TransferError> {
    use TransferRejection as R;
    let Some(source) = wallet::lock_tx(tx, request.from_wallet_id)
        .await?
        .filter(|w| w.user_id == user_id)
    else {
        return Ok(Err(R::SourceWalletNotFound));
    };
    if source.currency() != request.currency {
        return Ok(Err(R::CurrenciesMustMatch { param: "currency" }));
    }
    // The recipient row is read without a lock: only its currency, status and account are needed, and the ledger
    // locks its account.
    let recipient = match &request.to {
        Recipient::Wallet(id) => wallet::by_id(&mut *tx, *id).await?,
        Recipient::AccountNumber(number) => wallet::by_account_number_tx(tx, number).await?,
    };
    let Some(recipient) = recipient else {
        return Ok(Err(R::RecipientNotFound));
    };
    if recipient.wallet_id == source.wallet_id {
        return Ok(Err(R::SameWallet));
    }
    if recipient.currency() != request.currency {
        return Ok(Err(R::CurrenciesMustMatch { param: "to" }));
    }
    if source.is_frozen() {
        return Ok(Err(R::WalletFrozen));
    }
    if recipient.is_frozen() {
        return Ok(Err(R::RecipientWalletFrozen));
    }
    match wallet::check_pin_tx(tx, &source, request.pin.as_deref()).await? {
        PinCheck::Ok => {}
        PinCheck::Required => return Ok(Err(R::PinRequired)),
        PinCheck::Locked { until } => return Ok(Err(R::PinLocked { until })),
        PinCheck::Invalid { attempts_left } => return Ok(Err(R::InvalidPin { attempts_left })),
    }
    let rule = if recipient.user_id == user_id {
        money.fees.transfer_own
    } else {
        money.fees.transfer_external
    };
    let fee = rule.fee(request.amount);
    let total = request
        .amount
        .minor()
        .checked_add(fee)
        .ok_or(LedgerError::Overflow)?;
    let now = Utc::now();
    match wallet::limits::exceeded_limit_tx(tx, &source, total).await? {
        Some(wallet::limits::SpendLimit::Daily) => return Ok(Err(R::DailyLimitExceeded)),
        Some(wallet::limits::SpendLimit::Monthly) => return Ok(Err(R::MonthlyLimitExceeded)),
        None => {}
    }

    // Everything below is all-or-nothing: a savepoint, so an overdraft caught by the ledger's CHECK leaves the
    // caller's transaction usable for recording the rejection.
    let mut savepoint = tx.begin().await?;
    let result = hold_and_record(
        &mut savepoint,
        money,
        user_id,
        request,
        &source,
        &recipient,
        fee,
        now,
    )
    .await;
    match result {
        Ok(row) => {
            savepoint.commit().await?;
            Ok(Ok(row))
        }
        Err(TransferError::Ledger(LedgerError::InsufficientFunds(_))) => {
            savepoint.rollback().await?;
            Ok(Err(R::InsufficientFunds))
        }
        Err(error) => {
            savepoint.rollback().await?;
            Err(error)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn hold_and_record(
    tx: &mut PgConnection,
    money: &MoneyConfig,
    user_id: Uuid,
    request: &TransferRequest,
    source: &wallet::WalletRow,
    recipient: &wallet::WalletRow,
    fee: i64,
    now: DateTime<Utc>,
) -> Result<TransferRow, TransferError> {
    let currency = request.currency;
    let operation_id = operation::insert_open_tx(
        tx,
        "transfer",
        Some(user_id),
        &serde_json::json!({
            "from_wallet_id": source.wallet_id, "to_wallet_id": recipient.wallet_id,
            "amount": request.amount.minor(), "currency": currency.code(), "narration": request.narration,
            "mode": request.mode.as_str(),
        }),
        match request.mode {
            Mode::Instant => operation::OperationStatus::Processing,
            Mode::Acceptance => operation::OperationStatus::RequiresAction,
        },
    )
    .await?;
    let expires_at = match request.mode {
        Mode::Instant => None,
        Mode::Acceptance => Some(
            now + chrono::Duration::from_std(money.acceptance_ttl)
                .unwrap_or(chrono::Duration::days(1)),
        ),
    };
    let mut holds = vec![NewTransfer {
        flow: Flow::Pending {
            amount: request.amount,
            expires_at,
        },
        debit: source.account_id,
        credit: recipient.account_id,
        currency,
        code: "transfer",
        operation_id: Some(operation_id),
    }];
    if let Ok(fee_amount) = Amount::new(fee) {
        let fee_account = ledger::system_account_tx(tx, SystemAccount::FeeIncome, currency).await?;
        holds.push(NewTransfer {
            flow: Flow::Pending {
                amount: fee_amount,
                expires_at,
            },
            debit: source.account_id,
            credit: fee_account,
            currency,
            code: "fee",
            operation_id: Some(operation_id),
        });
    }
    if request.mode == Mode::Instant {
        // Before the hold: the accounts' row locks, which concurrent transfers of the same wallets queue on, are
        // held from the posting to the commit, so as little as possible comes after it.
        enqueue_settle_tx(tx, operation_id).await?;
    }
    let ids = ledger::post_tx(tx, &holds).await?;
    let status = match request.mode {
        Mode::Instant => "processing",
        Mode::Acceptance => "awaiting_acceptance",
    };
    let row: TransferRow = sqlx::query_as(
        "insert into transfer (transfer_id, from_wallet_id, to_wallet_id, amount, fee, currency, narration, mode,
             status, hold_id, fee_hold_id, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) returning *",
    )
    .bind(operation_id)
    .bind(source.wallet_id)
    .bind(recipient.wallet_id)
    .bind(request.amount.minor())
    .bind(fee)
    .bind(currency.code())
    .bind(&request.narration)
    .bind(request.mode.as_str())
    .bind(status)
    .bind(ids[0])
    .bind(ids.get(1).copied())
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await?;
    if request.mode == Mode::Acceptance {
        let parties = parties_tx(tx, &row).await?;
        crate::notify::notify_tx(
            tx,
            parties.recipient_id,
            &crate::notify::Event::TransferAwaitingAcceptance {
                amount: row.amount,
                currency: row.currency.clone(),
                counterparty: parties.sender_name,
                expires_at: row.expires_at,
                reference: row.transfer_id,
            },
            Some(row.transfer_id),
        )
        .await?;
    }
    Ok(row)
}

async fn enqueue_settle_tx(tx: &mut PgConnection, transfer_id: Uuid) -> Result<(), TransferError> {
    let job = NewJob::new(&SettleTransfer { transfer_id })?.for_operation(transfer_id);
    enqueue_tx(tx, job).await?;
    Ok(())
}

pub async fn get(pool: &PgPool, transfer_id: Uuid) -> Result<Option<TransferRow>, sqlx::Error> {
    sqlx::query_as("select * from transfer where transfer_id = $1")
        .bind(transfer_id)
        .fetch_optional(pool)
        .await
}

/// The transfer if `user_id` sent or receives it.
pub async fn visible_to(
    pool: &PgPool,
    user_id: Uuid,
    transfer_id: Uuid,
) -> Result<Option<TransferRow>, sqlx::Error> {
    sqlx::query_as(
        "select t.* from transfer t
         join wallet f on f.wallet_id = t.from_wallet_id join wallet r on r.wallet_id = t.to_wallet_id
         where t.transfer_id = $1 and (f.user_id = $2 or r.user_id = $2)",
    )
    .bind(transfer_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await
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

/// The recipient accepts or rejects a transfer; settlement (post or void) runs as a job.
pub async fn decide(
    pool: &PgPool,
    user_id: Uuid,
    transfer_id: Uuid,
    decision: Decision,
) -> Result<Result<TransferRow, DecisionRejection>, TransferError> {
    let mut tx = pool.begin().await?;
    let row: Option<TransferRow> = sqlx::query_as(
        "select t.* from transfer t join wallet r on r.wallet_id = t.to_wallet_id
         where t.transfer_id = $1 and r.user_id = $2 for update of t",
    )
    .bind(transfer_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(Err(DecisionRejection::NotFound));
    };
    if row.status != "awaiting_acceptance" {
        return Ok(Err(DecisionRejection::NotAwaitingAcceptance));
    }
    if row.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Ok(Err(DecisionRejection::Expired));
    }
    let status = match decision {
        Decision::Accept => "accepted",
        Decision::Reject => "rejected",
    };
    let row: TransferRow = sqlx::query_as(
        "update transfer set status = $2, decided_at = now(), updated_at = now() where transfer_id = $1 returning *",
    )
    .bind(transfer_id)
    .bind(status)
    .fetch_one(&mut *tx)
    .await?;
    operation::mark_processing_tx(&mut tx, transfer_id).await?;
    enqueue_settle_tx(&mut tx, transfer_id).await?;
    tx.commit().await?;
    crate::engine::wake(pool, &[SettleTransfer::QUEUE]).await;
    Ok(Ok(row))
}

/// The `transfer.settle` handler: settlements run in batches (see [`batch`]).
pub async fn settle(
    ctx: JobContext,
    job: SettleTransfer,
    batcher: std::sync::Arc<batch::SettleBatcher>,
) -> Result<(), JobError> {
    batcher.settle(ctx, job.transfer_id).await
}

/// Everything settling needs, in one round trip: the transfers, their operations' status, both accounts, the fee
/// holds' account and both parties.
const SETTLING_SQL: &str =
    "select t.*, o.status as operation_status, fw.account_id as from_account, tw.account_id as to_account,
            fl.credit_account_id as fee_account,
            su.user_id as sender_id, su.full_name as sender_name, ru.user_id as recipient_id,
            ru.full_name as recipient_name, tw.account_number as recipient_account
     from transfer t
     join operation o on o.operation_id = t.transfer_id
     join wallet fw on fw.wallet_id = t.from_wallet_id join app_user su on su.user_id = fw.user_id
     join wallet tw on tw.wallet_id = t.to_wallet_id join app_user ru on ru.user_id = tw.user_id
     left join ledger_transfer fl on fl.transfer_id = t.fee_hold_id
     where t.transfer_id = any($1)";

/// Settles one transfer in its own fenced transaction: what a batch falls back to when it cannot commit as a whole.
async fn settle_one(
    ctx: &JobContext,
    transfer_id: Uuid,
    config: &crate::platform::config::Config,
) -> Result<(), JobError> {
    let Some(settling): Option<Settling> = sqlx::query_as(SETTLING_SQL)
        .bind([transfer_id])
        .fetch_optional(&ctx.pool)
        .await?
    else {
        return Err(JobError::permanent(
            "transfer_not_found",
            "no such transfer",
        ));
    };
    if settling.is_settled() {
        // Already settled by an earlier run: settling is idempotent.
        return Ok(());
    }
    let row = &settling.transfer;
    let mut tx = ctx.begin_fenced().await?;
    // Lock the transfer and read its status again inside the fenced transaction.
    let status: String =
        sqlx::query_scalar("select status from transfer where transfer_id = $1 for update")
            .bind(row.transfer_id)
            .fetch_one(&mut *tx)
            .await?;
    let Some(post) = posts(&status) else {
        return Ok(());
    };
    let moves = settling.moves(post)?;
    // The bookkeeping first and the ledger last: the accounts' row locks, which concurrent transfers of the same
    // wallets queue on, are then held only from the posting to the commit.
    let final_status = if post { "completed" } else { status.as_str() };
    sqlx::query("update transfer set status = $2, updated_at = now() where transfer_id = $1")
        .bind(row.transfer_id)
        .bind(final_status)
        .execute(&mut *tx)
        .await?;
    if post {
        operation::succeed_tx(
            &mut tx,
            row.transfer_id,
            &serde_json::json!({"transfer_id": row.transfer_id}),
        )
        .await?;
        notify_settled_tx(&mut tx, &[&settling]).await?;
    } else {
        let (code, message) = void_failure(&status);
        operation::fail_tx(&mut tx, row.transfer_id, code, message).await?;
    }
    post_moves_tx(&mut tx, &moves).await?;
    if post {
        crate::notify::low_balance_tx(
            &mut tx,
            row.from_wallet_id,
            row.amount.saturating_add(row.fee),
            config.notifications.low_balance_threshold_minor,
        )
        .await?;
    }
    tx.commit().await?;
    notify::announce_for_operations(&ctx.pool, &[row.transfer_id]).await;
    Ok(())
}

/// Whether a transfer in `status` is posted (`Some(true)`) or voided (`Some(false)`); `None`: nothing to settle.
fn posts(status: &str) -> Option<bool> {
    match status {
        "processing" | "accepted" => Some(true),
        "rejected" | "expired" => Some(false),
        _ => None,
    }
}

/// The failure of an operation whose transfer was voided in `status`.
fn void_failure(status: &str) -> (&'static str, &'static str) {
    if status == "rejected" {
        ("transfer_rejected", "the recipient rejected the transfer")
    } else {
        ("transfer_expired", "the recipient did not answer in time")
    }
}

async fn post_moves_tx(tx: &mut PgConnection, moves: &[NewTransfer]) -> Result<(), JobError> {
    match ledger::post_tx(tx, moves).await {
        Ok(_) => Ok(()),
        Err(error) if error.is_retryable() => Err(JobError::transient(error)),
        Err(error) => Err(JobError::permanent("ledger_rejected", error.to_string())),
    }
}

/// A transfer with what settling it needs.
#[derive(sqlx::FromRow)]
struct Settling {
    #[sqlx(flatten)]
    transfer: TransferRow,
    operation_status: String,
    from_account: i64,
    to_account: i64,
    fee_account: Option<i64>,
    #[sqlx(flatten)]
    parties: Parties,
}

impl Settling {
    fn is_settled(&self) -> bool {
        operation::OperationStatus::parse(&self.operation_status)
            .is_some_and(operation::OperationStatus::is_terminal)
    }

    /// The ledger moves that post (or void) this transfer's holds.
    fn moves(&self, post: bool) -> Result<Vec<NewTransfer>, JobError> {
        let row = &self.transfer;
        let currency: Currency = row.currency.parse().map_err(|_| {
            JobError::permanent("invalid_currency", "the transfer's currency is unknown")
        })?;
        if row.fee_hold_id.is_some() && self.fee_account.is_none() {
            return Err(JobError::permanent(
                "hold_not_found",
                "the transfer's fee hold is missing from the ledger",
            ));
        }
        let resolve = |pending_id: Uuid, amount: i64| -> Result<Flow, JobError> {
            Ok(if post {
                Flow::PostPending {
                    pending_id,
                    amount: Amount::new(amount)
                        .map_err(|e| JobError::permanent("invalid_amount", e.to_string()))?,
                }
            } else {
                Flow::VoidPending { pending_id }
            })
        };
        let mut moves = vec![NewTransfer {
            flow: resolve(row.hold_id, row.amount)?,
            debit: self.from_account,
            credit: self.to_account,
            currency,
            code: "transfer",
            operation_id: Some(row.transfer_id),
        }];
        if let Some((fee_hold, fee_account)) = row.fee_hold_id.zip(self.fee_account) {
            moves.push(NewTransfer {
                flow: resolve(fee_hold, row.fee)?,
                debit: self.from_account,
                credit: fee_account,
                currency,
                code: "fee",
                operation_id: Some(row.transfer_id),
            });
        }
        Ok(moves)
    }
}

#[derive(sqlx::FromRow)]
struct Parties {
    sender_id: Uuid,
    sender_name: String,
    recipient_id: Uuid,
    recipient_name: String,
    recipient_account: String,
}

async fn parties_tx(tx: &mut PgConnection, row: &TransferRow) -> Result<Parties, sqlx::Error> {
    sqlx::query_as(
        "select su.user_id as sender_id, su.full_name as sender_name, ru.user_id as recipient_id,
                ru.full_name as recipient_name, rw.account_number as recipient_account
         from wallet sw join app_user su on su.user_id = sw.user_id,
              wallet rw join app_user ru on ru.user_id = rw.user_id
         where sw.wallet_id = $1 and rw.wallet_id = $2",
    )
    .bind(row.from_wallet_id)
    .bind(row.to_wallet_id)
    .fetch_one(&mut *tx)
    .await
}

/// Tells both sides of posted transfers.
async fn notify_settled_tx(
    tx: &mut PgConnection,
    settled: &[&Settling],
) -> Result<(), sqlx::Error> {
    use crate::notify::{self, Event};
    let events: Vec<(Uuid, Event, Event)> = settled
        .iter()
        .map(|settling| {
            let (row, parties) = (&settling.transfer, &settling.parties);
            let sent = Event::TransferSent {
                amount: row.amount,
                fee: row.fee,
                currency: row.currency.clone(),
                counterparty: format!("{} ({})", parties.recipient_name, parties.recipient_account),
                reference: row.transfer_id,
            };
            let received = Event::TransferReceived {
                amount: row.amount,
                currency: row.currency.clone(),
                counterparty: parties.sender_name.clone(),
                reference: row.transfer_id,
            };
            (row.transfer_id, sent, received)
        })
        .collect();
    let items: Vec<(Uuid, &Event, Option<Uuid>)> = settled
        .iter()
        .zip(&events)
        .flat_map(|(settling, (id, sent, received))| {
            [
                (settling.parties.sender_id, sent, Some(*id)),
                (settling.parties.recipient_id, received, Some(*id)),
            ]
        })
        .collect();
    notify::notify_many_tx(tx, &items).await?;
    Ok(())
}

/// The `transfers.expire` handler.
pub async fn expire(ctx: JobContext, _: ExpireTransfers) -> Result<(), JobError> {
    let mut tx = ctx.pool.begin().await?;
    let expired: Vec<Uuid> = sqlx::query_scalar(
        "update transfer set status = 'expired', updated_at = now()
         where transfer_id in (select transfer_id from transfer where status = 'awaiting_acceptance'
                               and expires_at <= now() order by expires_at limit $1 for update skip locked)
         returning transfer_id",
    )
    .bind(EXPIRE_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    for transfer_id in &expired {
        operation::mark_processing_tx(&mut tx, *transfer_id).await?;
        enqueue_settle_tx(&mut tx, *transfer_id)
            .await
            .map_err(JobError::transient)?;
    }
    tx.commit().await?;
    if !expired.is_empty() {
        crate::engine::wake(&ctx.pool, &[SettleTransfer::QUEUE]).await;
        tracing::info!(count = expired.len(), "expired unanswered transfers");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_has_a_distinct_code() {
        let all = [
            TransferRejection::SourceWalletNotFound,
            TransferRejection::CurrenciesMustMatch { param: "to" },
            TransferRejection::RecipientNotFound,
            TransferRejection::SameWallet,
            TransferRejection::WalletFrozen,
            TransferRejection::RecipientWalletFrozen,
            TransferRejection::PinRequired,
            TransferRejection::PinLocked { until: Utc::now() },
            TransferRejection::InvalidPin { attempts_left: 1 },
            TransferRejection::DailyLimitExceeded,
            TransferRejection::MonthlyLimitExceeded,
            TransferRejection::InsufficientFunds,
        ];
        let codes: std::collections::BTreeSet<&str> = all.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), all.len());
    }
}
