//! Wallet-to-wallet transfers as durable operations.
//!
//! The API calls `create_tx`: in its transaction the source wallet is locked, the request is checked in a fixed
//! order of precedence, and the amount and the fee are **held** (pending ledger transfers) together with the
//! operation and its `payments` job. "Insufficient funds" is therefore answered synchronously and can never be
//! oversold. The worker's `transfer.settle` job posts the holds (or voids them for a rejected or expired
//! transfer) in one fenced transaction. A transfer that needs acceptance waits for the recipient; unanswered ones
//! expire through the `transfers.expire` schedule.

use chrono::{DateTime, Utc};
use sqlx::{Acquire, PgConnection, PgPool};
use uuid::Uuid;

use self::settle::parties_tx;
use crate::domains::wallet::{self, PinCheck};
use crate::engine::{enqueue_tx, Job, JobContext, JobError, NewJob};
use crate::engine::{scheduler::ScheduleDef, Registry};
use crate::ledger::{self, Flow, LedgerError, NewTransfer, SystemAccount};
use crate::money::Amount;
use crate::operation;
use crate::platform::config::Config;
use crate::platform::config::MoneyConfig;
use crate::providers::Providers;
use std::sync::Arc;

pub mod batch;
pub mod settle;
pub mod types;

// The types are the domain's public face: callers name them `transfer::TransferRequest`.
pub use types::*;

/// Transfers expired per run of the sweep; a larger backlog is finished by the next runs.
const EXPIRE_BATCH: i64 = 500;
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
    let row = sqlx::query_as!(
        TransferRow,
        "insert into transfer (transfer_id, from_wallet_id, to_wallet_id, amount, fee, currency, narration, mode,
             status, hold_id, fee_hold_id, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         returning transfer_id, from_wallet_id, to_wallet_id, amount, fee, currency, narration, mode, status, hold_id, fee_hold_id,
             expires_at, decided_at, created_at, updated_at",
        operation_id,
        source.wallet_id,
        recipient.wallet_id,
        request.amount.minor(),
        fee,
        currency.code(),
        request.narration,
        request.mode.as_str(),
        status,
        ids[0],
        ids.get(1).copied(),
        expires_at,
    )
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
    sqlx::query_as!(
        TransferRow,
        "select transfer_id, from_wallet_id, to_wallet_id, amount, fee, currency, narration, mode, status, hold_id, fee_hold_id,
             expires_at, decided_at, created_at, updated_at
         from transfer where transfer_id = $1",
        transfer_id,
    )
    .fetch_optional(pool)
    .await
}

/// The transfer if `user_id` sent or receives it.
pub async fn visible_to(
    pool: &PgPool,
    user_id: Uuid,
    transfer_id: Uuid,
) -> Result<Option<TransferRow>, sqlx::Error> {
    sqlx::query_as!(
        TransferRow,
        "select t.transfer_id, t.from_wallet_id, t.to_wallet_id, t.amount, t.fee, t.currency, t.narration, t.mode, t.status,
                t.hold_id, t.fee_hold_id, t.expires_at, t.decided_at, t.created_at, t.updated_at
         from transfer t
         join wallet f on f.wallet_id = t.from_wallet_id join wallet r on r.wallet_id = t.to_wallet_id
         where t.transfer_id = $1 and (f.user_id = $2 or r.user_id = $2)",
        transfer_id,
        user_id,
    )
    .fetch_optional(pool)
    .await
}

/// The recipient accepts or rejects a transfer; settlement (post or void) runs as a job.
pub async fn decide(
    pool: &PgPool,
    user_id: Uuid,
    transfer_id: Uuid,
    decision: Decision,
) -> Result<Result<TransferRow, DecisionRejection>, TransferError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query_as!(
        TransferRow,
        "select t.transfer_id, t.from_wallet_id, t.to_wallet_id, t.amount, t.fee, t.currency, t.narration, t.mode, t.status,
                t.hold_id, t.fee_hold_id, t.expires_at, t.decided_at, t.created_at, t.updated_at
         from transfer t join wallet r on r.wallet_id = t.to_wallet_id
         where t.transfer_id = $1 and r.user_id = $2 for update of t",
        transfer_id,
        user_id,
    )
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
    let row = sqlx::query_as!(
        TransferRow,
        "update transfer set status = $2, decided_at = now(), updated_at = now() where transfer_id = $1
         returning transfer_id, from_wallet_id, to_wallet_id, amount, fee, currency, narration, mode, status, hold_id, fee_hold_id,
             expires_at, decided_at, created_at, updated_at",
        transfer_id,
        status,
    )
    .fetch_one(&mut *tx)
    .await?;
    operation::mark_processing_tx(&mut tx, transfer_id).await?;
    enqueue_settle_tx(&mut tx, transfer_id).await?;
    tx.commit().await?;
    crate::engine::wake(pool, &[SettleTransfer::QUEUE]).await;
    Ok(Ok(row))
}

/// The `transfers.expire` handler.
pub async fn expire(ctx: JobContext, _: ExpireTransfers) -> Result<(), JobError> {
    let mut tx = ctx.pool.begin().await?;
    let expired: Vec<Uuid> = sqlx::query_scalar!(
        "update transfer set status = 'expired', updated_at = now()
         where transfer_id in (select transfer_id from transfer where status = 'awaiting_acceptance'
                               and expires_at <= now() order by expires_at limit $1 for update skip locked)
         returning transfer_id",
        EXPIRE_BATCH,
    )
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

/// Adds the transfer domain's job kinds: settlement, in batches, and the expiry of unanswered transfers.
pub fn register(registry: &mut Registry, config: &Arc<Config>, _: &Arc<Providers>) {
    let batcher = Arc::new(batch::SettleBatcher::new(Arc::clone(config)));
    registry
        .register_with::<SettleTransfer, _, _, _>(batcher, batch::settle)
        .register::<ExpireTransfers, _, _>(expire);
}

/// The transfer domain's schedules.
pub fn schedules() -> Vec<ScheduleDef> {
    vec![ScheduleDef::of::<ExpireTransfers>(
        "transfers.expire",
        "0 * * * * *",
    )]
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
