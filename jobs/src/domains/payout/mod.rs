//! Payouts to bank accounts through the payouts provider.
//!
//! The API resolves the account name first, then in one transaction checks the wallet, holds the amount (towards
//! the provider's clearing account) and the fee, and records the payout with its operation. Payouts above the
//! approval threshold wait in `requires_approval` for an admin; the others enqueue `payout.submit` at once.
//!
//! `payout.submit` calls the provider with the operation id as reference (a retried call is recognised as a
//! duplicate, never sent twice). The result arrives by webhook or by polling (`payout.sync`), whichever comes
//! first; both ask the provider for the transfer's state and apply it in one fenced transaction that locks the
//! payout row: success posts the holds, failure voids them, a reversal after success refunds the amount and the
//! fee with new transfers. Every transition is guarded by the row's current status, so duplicated and
//! out-of-order news converge on the provider's truth.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::admin_audit::{self, Actor};
use crate::domains::wallet::spend::{self, post_new_tx, SpendRejection};
use crate::engine::enqueue_to_sqlx;
use crate::engine::{enqueue_tx, Job, JobContext, JobError, NewJob, Queue};
use crate::engine::{scheduler::ScheduleDef, Registry};
use crate::ledger::{self, Flow, LedgerError, NewTransfer, SystemAccount};
use crate::money::{Amount, Currency};
use crate::notify;
use crate::operation::{self, OperationStatus};
use crate::platform::config::Config;
use crate::providers::{
    PayoutInstruction, PayoutState, PayoutStatus, ProviderError, ProviderName, Providers,
};

const SWEEP_AFTER_SECONDS: f64 = 120.0;
const SWEEP_BATCH: i64 = 200;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct PayoutRow {
    pub payout_id: Uuid,
    pub user_id: Uuid,
    pub wallet_id: Uuid,
    pub provider: String,
    pub reference: String,
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    pub bank_code: String,
    pub bank_name: String,
    pub account_number: String,
    pub account_name: String,
    pub narration: String,
    pub status: String,
    pub hold_id: Uuid,
    pub fee_hold_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub provider_transfer_code: Option<String>,
    pub provider_status: Option<String>,
    pub failure_reason: Option<String>,
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl PayoutRow {
    fn holds(&self) -> Vec<Uuid> {
        std::iter::once(self.hold_id)
            .chain(self.fee_hold_id)
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitPayout {
    pub payout_id: Uuid,
}
impl Job for SubmitPayout {
    const KIND: &'static str = "payout.submit";
    const QUEUE: Queue = Queue::Payments;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncPayout {
    pub payout_id: Uuid,
    pub webhook_event_id: Option<i64>,
}
impl Job for SyncPayout {
    const KIND: &'static str = "payout.sync";
    const QUEUE: Queue = Queue::Payments;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepPayouts {}
impl Job for SweepPayouts {
    const KIND: &'static str = "payouts.sweep";
    const QUEUE: Queue = Queue::Payments;
}

#[derive(Debug, Clone)]
pub struct PayoutRequest {
    pub wallet_id: Uuid,
    pub amount: Amount,
    pub bank_code: String,
    pub bank_name: String,
    pub account_number: String,
    pub account_name: String,
    pub narration: String,
    pub pin: Option<String>,
}

/// Checks, holds and records a payout in the caller's transaction (a rejection writes no money).
pub async fn create_tx(
    tx: &mut PgConnection,
    config: &Config,
    user_id: Uuid,
    request: &PayoutRequest,
) -> Result<Result<PayoutRow, SpendRejection>, LedgerError> {
    let fee = config.money.fees.payout_fee(request.amount);
    let needs_approval = request.amount.minor() > config.providers.payout_approval_threshold_minor;
    let intent = spend::Intent {
        user_id,
        wallet_id: request.wallet_id,
        amount: request.amount,
        fee,
        pin: request.pin.as_deref(),
        kind: "payout",
        request: serde_json::json!({"wallet_id": request.wallet_id, "amount": request.amount.minor(),
                                    "currency": "NGN", "bank_code": request.bank_code,
                                    "account_number": request.account_number}),
        provider: ProviderName::Paystack,
        code: "payout",
    };
    let (operation_id, holds) = match spend::open_tx(tx, &intent).await? {
        Ok(opened) => opened,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let status = if needs_approval {
        "requires_approval"
    } else {
        "processing"
    };
    let row: PayoutRow = sqlx::query_as!(
        PayoutRow,
        "insert into payout (payout_id, user_id, wallet_id, provider, reference, amount, fee, currency, bank_code,
             bank_name, account_number, account_name, narration, status, hold_id, fee_hold_id)
         values ($1, $2, $3, 'paystack', $4, $5, $6, 'NGN', $7, $8, $9, $10, $11, $12, $13, $14)
         returning payout_id, user_id, wallet_id, provider, reference, amount, fee, currency, bank_code, bank_name,
             account_number, account_name, narration, status, hold_id, fee_hold_id, refund_id, provider_transfer_code,
             provider_status, failure_reason, decided_by, decided_at, submitted_at, created_at, updated_at, completed_at",
        operation_id,
        user_id,
        request.wallet_id,
        operation_id.to_string(),
        request.amount.minor(),
        fee,
        request.bank_code,
        request.bank_name,
        request.account_number,
        request.account_name,
        request.narration,
        status,
        holds.hold_id,
        holds.fee_hold_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    if needs_approval {
        operation::transition_to_tx(tx, operation_id, OperationStatus::RequiresApproval).await?;
    } else {
        operation::mark_processing_tx(tx, operation_id).await?;
        enqueue_submit_tx(tx, operation_id).await?;
    }
    Ok(Ok(row))
}

async fn enqueue_submit_tx(tx: &mut PgConnection, payout_id: Uuid) -> Result<(), sqlx::Error> {
    let job = NewJob::new(&SubmitPayout { payout_id })
        .map_err(enqueue_to_sqlx)?
        .for_operation(payout_id);
    enqueue_tx(tx, job).await.map_err(enqueue_to_sqlx)?;
    Ok(())
}

pub async fn get(pool: &PgPool, payout_id: Uuid) -> Result<Option<PayoutRow>, sqlx::Error> {
    sqlx::query_as!(
        PayoutRow,
        "select payout_id, user_id, wallet_id, provider, reference, amount, fee, currency, bank_code, bank_name,
             account_number, account_name, narration, status, hold_id, fee_hold_id, refund_id, provider_transfer_code,
             provider_status, failure_reason, decided_by, decided_at, submitted_at, created_at, updated_at, completed_at
         from payout where payout_id = $1",
        payout_id,
    )
    .fetch_optional(pool)
    .await
}

pub async fn by_reference_tx(
    tx: &mut PgConnection,
    reference: &str,
) -> Result<Option<PayoutRow>, sqlx::Error> {
    sqlx::query_as!(
        PayoutRow,
        "select payout_id, user_id, wallet_id, provider, reference, amount, fee, currency, bank_code, bank_name,
             account_number, account_name, narration, status, hold_id, fee_hold_id, refund_id, provider_transfer_code,
             provider_status, failure_reason, decided_by, decided_at, submitted_at, created_at, updated_at, completed_at
         from payout where reference = $1",
        reference,
    )
    .fetch_optional(&mut *tx)
    .await
}

async fn lock_tx(tx: &mut PgConnection, payout_id: Uuid) -> Result<PayoutRow, sqlx::Error> {
    sqlx::query_as!(
        PayoutRow,
        "select payout_id, user_id, wallet_id, provider, reference, amount, fee, currency, bank_code, bank_name,
             account_number, account_name, narration, status, hold_id, fee_hold_id, refund_id, provider_transfer_code,
             provider_status, failure_reason, decided_by, decided_at, submitted_at, created_at, updated_at, completed_at
         from payout where payout_id = $1 for update",
        payout_id,
    )
    .fetch_one(&mut *tx)
    .await
}

/// What applying the provider's news did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Completed,
    Failed,
    Reversed,
    StillPending,
    NoChange,
}

impl Applied {
    fn as_str(self) -> &'static str {
        match self {
            Applied::Completed => "completed",
            Applied::Failed => "failed",
            Applied::Reversed => "reversed",
            Applied::StillPending => "pending",
            Applied::NoChange => "no_change",
        }
    }
}

/// Tells the owner how a payout ended (and warns of a low balance after a completed one).
async fn notify_result_tx(
    tx: &mut PgConnection,
    config: &Config,
    payout_id: Uuid,
    status: &'static str,
) -> Result<(), sqlx::Error> {
    let row = lock_tx(tx, payout_id).await?;
    crate::notify::notify_tx(
        tx,
        row.user_id,
        &crate::notify::Event::PayoutResult {
            status,
            amount: row.amount,
            fee: row.fee,
            account_name: row.account_name.clone(),
            bank_name: row.bank_name.clone(),
            reason: row.failure_reason.clone(),
            reference: row.payout_id,
        },
        Some(row.payout_id),
    )
    .await?;
    if status == "completed" {
        crate::notify::low_balance_tx(
            tx,
            row.wallet_id,
            row.amount.saturating_add(row.fee),
            config.notifications.low_balance_threshold_minor,
        )
        .await?;
    }
    Ok(())
}

/// Applies the provider's state of a payout and notifies its owner, in the caller's fenced transaction.
async fn apply_and_notify_tx(
    tx: &mut PgConnection,
    config: &Config,
    payout_id: Uuid,
    state: &PayoutState,
) -> Result<Applied, JobError> {
    let applied = apply_tx(tx, payout_id, state).await?;
    let status = match applied {
        Applied::Completed => Some("completed"),
        Applied::Failed => Some("failed"),
        Applied::Reversed => Some("reversed"),
        Applied::StillPending | Applied::NoChange => None,
    };
    if let Some(status) = status {
        notify_result_tx(tx, config, payout_id, status).await?;
    }
    Ok(applied)
}

/// Applies the provider's state of a payout, in the caller's fenced transaction.
async fn apply_tx(
    tx: &mut PgConnection,
    payout_id: Uuid,
    state: &PayoutState,
) -> Result<Applied, JobError> {
    let row = lock_tx(tx, payout_id).await?;
    sqlx::query!(
        "update payout set provider_status = $2, provider_transfer_code = coalesce($3, provider_transfer_code),
             submitted_at = coalesce(submitted_at, now()), updated_at = now()
         where payout_id = $1",
        payout_id,
        format!("{:?}", state.status).to_lowercase(),
        state.transfer_code,
    )
    .execute(&mut *tx)
    .await?;
    let applied = match (row.status.as_str(), state.status) {
        ("processing", PayoutStatus::Pending) => Applied::StillPending,
        ("processing", PayoutStatus::Success) => {
            spend::resolve_tx(tx, &row.holds(), true).await?;
            set_status_tx(tx, payout_id, "completed", None).await?;
            operation::succeed_tx(
                tx,
                payout_id,
                &serde_json::json!({"payout_id": payout_id, "transfer_code": state.transfer_code}),
            )
            .await?;
            Applied::Completed
        }
        ("processing", PayoutStatus::Failed) => {
            let reason = state
                .reason
                .clone()
                .unwrap_or_else(|| "the provider could not complete the payout".into());
            spend::resolve_tx(tx, &row.holds(), false).await?;
            set_status_tx(tx, payout_id, "failed", Some(&reason)).await?;
            operation::fail_tx(tx, payout_id, "payout_failed", &reason).await?;
            Applied::Failed
        }
        // A reversal is the payout's last event, whichever order its news arrives in (webhooks, polls): the
        // payout ends `reversed`, its operation `failed` with `payout_reversed`, the money back once
        // (docs/providers.md, "Payouts").
        ("processing", PayoutStatus::Reversed) => {
            // Paid and returned before we heard of the success: post, then refund.
            spend::resolve_tx(tx, &row.holds(), true).await?;
            refund_tx(tx, &row, state).await?;
            reverse_operation_tx(tx, payout_id).await?;
            Applied::Reversed
        }
        ("completed", PayoutStatus::Reversed) => {
            refund_tx(tx, &row, state).await?;
            reverse_operation_tx(tx, payout_id).await?;
            Applied::Reversed
        }
        _ => Applied::NoChange,
    };
    Ok(applied)
}

/// The operation of a reversed payout: failed with `payout_reversed`, whether it had succeeded or not.
async fn reverse_operation_tx(tx: &mut PgConnection, payout_id: Uuid) -> Result<(), sqlx::Error> {
    operation::reverse_tx(
        tx,
        payout_id,
        "payout_reversed",
        "the receiving bank returned the payout; the amount and fee were refunded",
    )
    .await?;
    Ok(())
}

async fn set_status_tx(
    tx: &mut PgConnection,
    payout_id: Uuid,
    status: &str,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update payout set status = $2, failure_reason = coalesce($3, failure_reason), updated_at = now(),
             completed_at = case when $2 = 'completed' then now() else completed_at end
         where payout_id = $1",
        payout_id,
        status,
        reason,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Returns a reversed payout's amount (from clearing) and fee (from fee income) to the wallet.
async fn refund_tx(
    tx: &mut PgConnection,
    row: &PayoutRow,
    state: &PayoutState,
) -> Result<(), JobError> {
    let currency = Currency::Ngn;
    let wallet_account: i64 = sqlx::query_scalar!(
        "select account_id from wallet where wallet_id = $1",
        row.wallet_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let clearing = ledger::system_account_tx(
        tx,
        SystemAccount::Clearing(ProviderName::Paystack),
        currency,
    )
    .await?;
    let amount = Amount::new(row.amount)
        .map_err(|e| JobError::permanent("invalid_amount", e.to_string()))?;
    let mut moves = vec![NewTransfer {
        flow: Flow::Posted(amount),
        debit: clearing,
        credit: wallet_account,
        currency,
        code: "refund",
        operation_id: Some(row.payout_id),
    }];
    if let Ok(fee) = Amount::new(row.fee) {
        let fee_account = ledger::system_account_tx(tx, SystemAccount::FeeIncome, currency).await?;
        moves.push(NewTransfer {
            flow: Flow::Posted(fee),
            debit: fee_account,
            credit: wallet_account,
            currency,
            code: "refund",
            operation_id: Some(row.payout_id),
        });
    }
    let ids = post_new_tx(tx, &moves).await?;
    let reason = state
        .reason
        .clone()
        .unwrap_or_else(|| "returned by the receiving bank".into());
    sqlx::query!(
        "update payout set status = 'reversed', refund_id = $2, failure_reason = $3, updated_at = now()
         where payout_id = $1",
        row.payout_id,
        ids[0],
        reason,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn instruction(row: &PayoutRow) -> PayoutInstruction {
    PayoutInstruction {
        reference: row.reference.clone(),
        amount_minor: row.amount,
        currency: Currency::Ngn,
        bank_code: row.bank_code.clone(),
        account_number: row.account_number.clone(),
        account_name: row.account_name.clone(),
        reason: if row.narration.is_empty() {
            "PayCore payout".into()
        } else {
            row.narration.clone()
        },
    }
}

/// Enqueues a `payout.sync` after the status poll interval.
async fn enqueue_poll_tx(
    tx: &mut PgConnection,
    config: &Config,
    payout_id: Uuid,
) -> Result<(), JobError> {
    let poll = NewJob::new(&SyncPayout {
        payout_id,
        webhook_event_id: None,
    })
    .map_err(JobError::transient)?
    .for_operation(payout_id)
    .run_at(
        Utc::now()
            + chrono::Duration::from_std(config.providers.status_poll)
                .unwrap_or(chrono::Duration::seconds(30)),
    );
    enqueue_tx(tx, poll).await.map_err(JobError::transient)?;
    Ok(())
}

/// The `payout.submit` handler.
pub async fn submit(
    ctx: JobContext,
    job: SubmitPayout,
    providers: Arc<Providers>,
    config: Arc<Config>,
) -> Result<(), JobError> {
    let Some(row) = get(&ctx.pool, job.payout_id).await? else {
        return Err(JobError::permanent("payout_not_found", "no such payout"));
    };
    if row.status != "processing" {
        return Ok(());
    }
    let result = providers.payouts.transfer(&instruction(&row)).await;
    let mut tx = ctx.begin_fenced().await?;
    let applied = match result {
        Ok(state) => apply_and_notify_tx(&mut tx, &config, row.payout_id, &state).await?,
        Err(ProviderError::Declined(reason)) => {
            let current = lock_tx(&mut tx, row.payout_id).await?;
            if current.status == "processing" {
                spend::resolve_tx(&mut tx, &current.holds(), false).await?;
                set_status_tx(&mut tx, row.payout_id, "failed", Some(&reason)).await?;
                operation::fail_tx(&mut tx, row.payout_id, "provider_declined", &reason).await?;
                notify_result_tx(&mut tx, &config, row.payout_id, "failed").await?;
                Applied::Failed
            } else {
                Applied::NoChange
            }
        }
        Err(error) => {
            drop(tx);
            return Err(JobError::transient(error));
        }
    };
    if applied == Applied::StillPending {
        // Ask again later unless a webhook settles it first.
        enqueue_poll_tx(&mut tx, &config, row.payout_id).await?;
    }
    tx.commit().await?;
    notify::announce_for_operations(&ctx.pool, &[row.payout_id]).await;
    Ok(())
}

/// The `payout.sync` handler: asks the provider for the payout's state (prompted by a webhook, the submit job's
/// poll or the sweep) and applies it.
pub async fn sync(
    ctx: JobContext,
    job: SyncPayout,
    providers: Arc<Providers>,
    config: Arc<Config>,
) -> Result<(), JobError> {
    let Some(row) = get(&ctx.pool, job.payout_id).await? else {
        return Err(JobError::permanent("payout_not_found", "no such payout"));
    };
    if !matches!(row.status.as_str(), "processing" | "completed") {
        return finish_webhook(&ctx, job.webhook_event_id, "already_settled").await;
    }
    let state = match providers.payouts.transfer_status(&row.reference).await {
        Ok(state) => state,
        // Not submitted yet (the submit job will report), or lost by the provider (the sweep and the
        // reconciliation report show it).
        Err(ProviderError::NotFound) => {
            return finish_webhook(&ctx, job.webhook_event_id, "not_at_provider").await
        }
        Err(error) => return Err(JobError::transient(error)),
    };
    let mut tx = ctx.begin_fenced().await?;
    let applied = apply_and_notify_tx(&mut tx, &config, row.payout_id, &state).await?;
    if let Some(id) = job.webhook_event_id {
        crate::providers::inbox::mark_processed_tx(&mut tx, id, applied.as_str()).await?;
    }
    tx.commit().await?;
    notify::announce_for_operations(&ctx.pool, &[row.payout_id]).await;
    if applied == Applied::StillPending && job.webhook_event_id.is_none() {
        // This run committed (its lease is done); a new poll is the sweep's or the next webhook's.
        let mut tx = ctx.pool.begin().await?;
        enqueue_poll_tx(&mut tx, &config, row.payout_id).await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn finish_webhook(
    ctx: &JobContext,
    webhook_event_id: Option<i64>,
    outcome: &str,
) -> Result<(), JobError> {
    let mut tx = ctx.begin_fenced().await?;
    if let Some(id) = webhook_event_id {
        crate::providers::inbox::mark_processed_tx(&mut tx, id, outcome).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The `payouts.sweep` handler: asks again about payouts that have been processing for a while without news.
pub async fn sweep(ctx: JobContext, _: SweepPayouts) -> Result<(), JobError> {
    let mut tx = ctx.pool.begin().await?;
    let due: Vec<Uuid> = sqlx::query_scalar!(
        "update payout set updated_at = now()
         where payout_id in (select payout_id from payout where status = 'processing'
                             and updated_at < now() - make_interval(secs => $1)
                             order by updated_at limit $2 for update skip locked)
         returning payout_id",
        SWEEP_AFTER_SECONDS,
        SWEEP_BATCH,
    )
    .fetch_all(&mut *tx)
    .await?;
    for payout_id in &due {
        let job = NewJob::new(&SyncPayout {
            payout_id: *payout_id,
            webhook_event_id: None,
        })
        .map_err(JobError::transient)?
        .for_operation(*payout_id);
        enqueue_tx(&mut tx, job)
            .await
            .map_err(JobError::transient)?;
    }
    tx.commit().await?;
    if !due.is_empty() {
        crate::engine::wake(&ctx.pool, &[Queue::Payments]).await;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionRejection {
    #[error("no such payout")]
    NotFound,
    #[error("the payout is not waiting for approval")]
    NotAwaitingApproval,
}

/// An admin approves (submits) or rejects (releases the holds of) a payout waiting for approval.
pub async fn decide(
    pool: &PgPool,
    config: &Config,
    actor: &Actor,
    payout_id: Uuid,
    decision: Decision,
    note: &str,
) -> Result<Result<PayoutRow, DecisionRejection>, JobError> {
    let mut tx = pool.begin().await?;
    let Some(row): Option<PayoutRow> = sqlx::query_as!(
        PayoutRow,
        "select payout_id, user_id, wallet_id, provider, reference, amount, fee, currency, bank_code, bank_name,
             account_number, account_name, narration, status, hold_id, fee_hold_id, refund_id, provider_transfer_code,
             provider_status, failure_reason, decided_by, decided_at, submitted_at, created_at, updated_at, completed_at
         from payout where payout_id = $1 for update",
        payout_id,
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(Err(DecisionRejection::NotFound));
    };
    if row.status != "requires_approval" {
        return Ok(Err(DecisionRejection::NotAwaitingApproval));
    }
    let (status, action) = match decision {
        Decision::Approve => ("processing", "payout.approve"),
        Decision::Reject => ("rejected", "payout.reject"),
    };
    let updated: PayoutRow = sqlx::query_as!(
        PayoutRow,
        "update payout set status = $2, decided_by = $3, decided_at = now(), updated_at = now(),
             failure_reason = case when $2 = 'rejected' then $4 else failure_reason end
         where payout_id = $1
         returning payout_id, user_id, wallet_id, provider, reference, amount, fee, currency, bank_code, bank_name,
             account_number, account_name, narration, status, hold_id, fee_hold_id, refund_id, provider_transfer_code,
             provider_status, failure_reason, decided_by, decided_at, submitted_at, created_at, updated_at, completed_at",
        payout_id,
        status,
        actor.user_id,
        if note.is_empty() {
            "rejected by an administrator"
        } else {
            note
        },
    )
    .fetch_one(&mut *tx)
    .await?;
    match decision {
        Decision::Approve => {
            operation::mark_processing_tx(&mut tx, payout_id).await?;
            enqueue_submit_tx(&mut tx, payout_id).await?;
        }
        Decision::Reject => {
            spend::resolve_tx(&mut tx, &row.holds(), false).await?;
            operation::fail_tx(
                &mut tx,
                payout_id,
                "payout_rejected",
                updated
                    .failure_reason
                    .as_deref()
                    .unwrap_or("rejected by an administrator"),
            )
            .await?;
            notify_result_tx(&mut tx, config, payout_id, "failed").await?;
        }
    }
    admin_audit::record_tx(
        &mut tx,
        actor,
        action,
        &[payout_id.to_string()],
        &serde_json::json!({"amount": row.amount, "note": note}),
    )
    .await?;
    tx.commit().await?;
    if decision == Decision::Approve {
        crate::engine::wake(pool, &[Queue::Payments]).await;
    }
    notify::announce_for_operations(pool, &[payout_id]).await;
    Ok(Ok(updated))
}

/// Adds the payout domain's job kinds: submitting a payout to the provider, syncing its status, and the sweep
/// that asks about payouts the provider has not told us about.
pub fn register(registry: &mut Registry, config: &Arc<Config>, providers: &Arc<Providers>) {
    let deps = (Arc::clone(providers), Arc::clone(config));
    registry
        .register::<SweepPayouts, _, _>(sweep)
        .register_with::<SubmitPayout, _, _, _>(deps.clone(), |ctx, job, (p, c)| {
            submit(ctx, job, p, c)
        })
        .register_with::<SyncPayout, _, _, _>(deps, |ctx, job, (p, c)| sync(ctx, job, p, c));
}

/// The payout domain's schedules.
pub fn schedules() -> Vec<ScheduleDef> {
    vec![ScheduleDef::of::<SweepPayouts>(
        "payouts.sweep",
        "45 * * * * *",
    )]
}
