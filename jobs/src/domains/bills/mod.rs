//! Bill payments: airtime, data, electricity and cable TV through the bills provider.
//!
//! The API validates the customer with the biller (meters, smart cards), then in one transaction checks the
//! wallet, holds the amount (towards the provider's clearing account) and the biller's fee, records the payment
//! and enqueues `bill.vend`. The job vends with the payment id as reference and posts the holds on success (keeping
//! the electricity token), or voids them when the provider declines. A vend whose answer was lost (a timeout, a
//! 5xx) is never sent again blindly: every later attempt first asks the provider for the status of that
//! reference and vends only if the provider never received it.

pub mod catalogue;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domains::bills::catalogue::{Biller, Package};
use crate::domains::wallet::spend::{self, SpendRejection};
use crate::engine::enqueue_to_sqlx;
use crate::engine::Registry;
use crate::engine::{enqueue_tx, Job, JobContext, JobError, NewJob, Queue};
use crate::ledger::LedgerError;
use crate::money::Amount;
use crate::notify;
use crate::operation;
use crate::platform::config::Config;
use crate::providers::{
    ProviderError, ProviderName, Providers, VendInstruction, VendState, VendStatus,
};

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct BillPaymentRow {
    pub payment_id: Uuid,
    pub user_id: Uuid,
    pub wallet_id: Uuid,
    pub provider: String,
    pub biller_code: String,
    pub category: String,
    pub package_code: Option<String>,
    pub customer_id: String,
    pub customer_name: Option<String>,
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    pub status: String,
    pub hold_id: Uuid,
    pub fee_hold_id: Option<Uuid>,
    pub provider_reference: Option<String>,
    pub token: Option<String>,
    pub token_units: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl BillPaymentRow {
    fn holds(&self) -> Vec<Uuid> {
        std::iter::once(self.hold_id)
            .chain(self.fee_hold_id)
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VendBill {
    pub payment_id: Uuid,
}
impl Job for VendBill {
    const KIND: &'static str = "bill.vend";
    const QUEUE: Queue = Queue::Payments;
}

#[derive(Debug, Clone)]
pub struct BillRequest {
    pub wallet_id: Uuid,
    pub biller: &'static Biller,
    pub package: Option<&'static Package>,
    pub amount: Amount,
    pub customer_id: String,
    pub customer_name: Option<String>,
    pub pin: Option<String>,
    /// Save (or refresh) the customer as a beneficiary under this nickname.
    pub save_as: Option<String>,
}

impl BillRequest {
    pub fn item_code(&self) -> &'static str {
        self.package
            .map(|p| p.code)
            .or(self.biller.item_code)
            .unwrap_or_default()
    }
}

/// Checks, holds and records a bill payment in the caller's transaction (a rejection writes no money).
pub async fn create_tx(
    tx: &mut PgConnection,
    user_id: Uuid,
    request: &BillRequest,
) -> Result<Result<BillPaymentRow, SpendRejection>, LedgerError> {
    let fee = request.biller.fee.fee(request.amount);
    let intent = spend::Intent {
        user_id,
        wallet_id: request.wallet_id,
        amount: request.amount,
        fee,
        pin: request.pin.as_deref(),
        kind: "bill_payment",
        request: serde_json::json!({"wallet_id": request.wallet_id, "biller_code": request.biller.code,
                                    "package_code": request.package.map(|p| p.code),
                                    "customer_id": request.customer_id, "amount": request.amount.minor(),
                                    "currency": "NGN"}),
        provider: ProviderName::Flutterwave,
        code: "bill_payment",
    };
    let (operation_id, holds) = match spend::open_tx(tx, &intent).await? {
        Ok(opened) => opened,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let row: BillPaymentRow = sqlx::query_as!(
        BillPaymentRow,
        "insert into bill_payment (payment_id, user_id, wallet_id, provider, biller_code, category, package_code,
             customer_id, customer_name, amount, fee, currency, status, hold_id, fee_hold_id)
         values ($1, $2, $3, 'flutterwave', $4, $5, $6, $7, $8, $9, $10, 'NGN', 'processing', $11, $12)
         returning payment_id, user_id, wallet_id, provider, biller_code, category, package_code, customer_id,
             customer_name, amount, fee, currency, status, hold_id, fee_hold_id, provider_reference, token, token_units,
             failure_reason, created_at, updated_at, completed_at",
        operation_id,
        user_id,
        request.wallet_id,
        request.biller.code,
        request.biller.category.as_str(),
        request.package.map(|p| p.code),
        request.customer_id,
        request.customer_name,
        request.amount.minor(),
        fee,
        holds.hold_id,
        holds.fee_hold_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    if let Some(nickname) = &request.save_as {
        save_beneficiary_tx(
            tx,
            user_id,
            request.biller.code,
            &request.customer_id,
            nickname,
            request.customer_name.as_deref(),
        )
        .await?;
    }
    sqlx::query!(
        "update bill_beneficiary set usage_count = usage_count + 1, last_used_at = now()
         where user_id = $1 and biller_code = $2 and customer_id = $3",
        user_id,
        request.biller.code,
        request.customer_id,
    )
    .execute(&mut *tx)
    .await?;
    operation::mark_processing_tx(tx, operation_id).await?;
    let job = NewJob::new(&VendBill {
        payment_id: operation_id,
    })
    .map_err(enqueue_to_sqlx)?
    .for_operation(operation_id);
    enqueue_tx(tx, job).await.map_err(enqueue_to_sqlx)?;
    Ok(Ok(row))
}

pub async fn get(pool: &PgPool, payment_id: Uuid) -> Result<Option<BillPaymentRow>, sqlx::Error> {
    sqlx::query_as!(
        BillPaymentRow,
        "select payment_id, user_id, wallet_id, provider, biller_code, category, package_code, customer_id,
             customer_name, amount, fee, currency, status, hold_id, fee_hold_id, provider_reference, token, token_units,
             failure_reason, created_at, updated_at, completed_at
         from bill_payment where payment_id = $1",
        payment_id,
    )
    .fetch_optional(pool)
    .await
}

/// Sends the receipt (or the failure) of a settled bill payment, and warns of a low balance.
async fn notify_tx(
    tx: &mut PgConnection,
    config: &Config,
    payment_id: Uuid,
) -> Result<(), sqlx::Error> {
    let row: BillPaymentRow = sqlx::query_as!(
        BillPaymentRow,
        "select payment_id, user_id, wallet_id, provider, biller_code, category, package_code, customer_id,
             customer_name, amount, fee, currency, status, hold_id, fee_hold_id, provider_reference, token, token_units,
             failure_reason, created_at, updated_at, completed_at
         from bill_payment where payment_id = $1",
        payment_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let completed = row.status == "completed";
    crate::notify::notify_tx(
        tx,
        row.user_id,
        &crate::notify::Event::BillReceipt {
            status: if completed { "completed" } else { "failed" },
            biller: crate::domains::bills::catalogue::biller(&row.biller_code)
                .map(|b| b.name.to_owned())
                .unwrap_or_else(|| row.biller_code.clone()),
            customer_id: row.customer_id.clone(),
            amount: row.amount,
            fee: row.fee,
            token: row.token.clone(),
            units: row.token_units.clone(),
            reason: row.failure_reason.clone(),
            reference: row.payment_id,
        },
        Some(row.payment_id),
    )
    .await?;
    if completed {
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

/// What applying a vend's state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// Still pending at the provider.
    Pending,
    /// Settled by this run.
    Settled,
    /// Settled before.
    AlreadySettled,
}

/// Applies the provider's state of a vend in the caller's fenced transaction.
async fn apply_tx(
    tx: &mut PgConnection,
    payment_id: Uuid,
    state: &VendState,
) -> Result<Applied, JobError> {
    let row: BillPaymentRow = sqlx::query_as!(
        BillPaymentRow,
        "select payment_id, user_id, wallet_id, provider, biller_code, category, package_code, customer_id,
             customer_name, amount, fee, currency, status, hold_id, fee_hold_id, provider_reference, token, token_units,
             failure_reason, created_at, updated_at, completed_at
         from bill_payment where payment_id = $1 for update",
        payment_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    if row.status != "processing" {
        return Ok(Applied::AlreadySettled);
    }
    match state.status {
        VendStatus::Pending => {
            sqlx::query!(
                "update bill_payment set provider_reference = coalesce($2, provider_reference), updated_at = now()
                 where payment_id = $1",
                payment_id,
                state.provider_reference,
            )
            .execute(&mut *tx)
            .await?;
            Ok(Applied::Pending)
        }
        VendStatus::Success => {
            spend::resolve_tx(tx, &row.holds(), true).await?;
            sqlx::query!(
                "update bill_payment set status = 'completed', provider_reference = $2, token = $3, token_units = $4,
                     completed_at = now(), updated_at = now()
                 where payment_id = $1",
                payment_id,
                state.provider_reference,
                state.token,
                state.units,
            )
            .execute(&mut *tx)
            .await?;
            operation::succeed_tx(
                tx,
                payment_id,
                &serde_json::json!({"payment_id": payment_id, "token": state.token, "units": state.units}),
            )
            .await?;
            Ok(Applied::Settled)
        }
        VendStatus::Failed => {
            let reason = state
                .message
                .clone()
                .unwrap_or_else(|| "the biller could not deliver the purchase".into());
            fail_tx(tx, &row, "bill_vend_failed", &reason).await?;
            Ok(Applied::Settled)
        }
    }
}

async fn fail_tx(
    tx: &mut PgConnection,
    row: &BillPaymentRow,
    code: &str,
    reason: &str,
) -> Result<(), JobError> {
    spend::resolve_tx(tx, &row.holds(), false).await?;
    sqlx::query!(
        "update bill_payment set status = 'failed', failure_reason = left($2, 500), updated_at = now()
         where payment_id = $1",
        row.payment_id,
        reason,
    )
    .execute(&mut *tx)
    .await?;
    operation::fail_tx(tx, row.payment_id, code, reason).await?;
    Ok(())
}

/// The `bill.vend` handler.
pub async fn vend(
    ctx: JobContext,
    job: VendBill,
    providers: Arc<Providers>,
    config: Arc<Config>,
) -> Result<(), JobError> {
    let Some(row) = get(&ctx.pool, job.payment_id).await? else {
        return Err(JobError::permanent(
            "bill_payment_not_found",
            "no such bill payment",
        ));
    };
    if row.status != "processing" {
        return Ok(());
    }
    let Some(biller) = crate::domains::bills::catalogue::biller(&row.biller_code) else {
        return Err(JobError::permanent(
            "unknown_biller",
            "the biller left the catalogue",
        ));
    };
    let item_code = row
        .package_code
        .clone()
        .or(biller.item_code.map(str::to_owned))
        .unwrap_or_default();
    // After the first attempt the provider may already have the vend: ask before vending.
    let known = if ctx.attempt() > 1 || row.provider_reference.is_some() {
        match providers
            .bills
            .vend_status(&row.payment_id.to_string())
            .await
        {
            Ok(state) => Some(Ok(state)),
            Err(ProviderError::NotFound) => None,
            Err(error) => return Err(JobError::transient(error)),
        }
    } else {
        None
    };
    let outcome = match known {
        Some(state) => state,
        None => {
            let instruction = VendInstruction {
                reference: row.payment_id.to_string(),
                biller_code: row.biller_code.clone(),
                item_code,
                customer_id: row.customer_id.clone(),
                amount_minor: row.amount,
            };
            match providers.bills.vend(&instruction).await {
                Ok(state) => Ok(state),
                Err(ProviderError::Declined(message))
                    if message.to_lowercase().contains("duplicate") =>
                {
                    return Err(JobError::transient(
                        "the provider already has this vend; its status decides",
                    ))
                }
                Err(ProviderError::Declined(message)) => Err(message),
                Err(error) => return Err(JobError::transient(error)),
            }
        }
    };
    let mut tx = ctx.begin_fenced().await?;
    let settled = match outcome {
        Ok(state) => apply_tx(&mut tx, row.payment_id, &state).await?,
        Err(reason) => {
            let current: BillPaymentRow = sqlx::query_as!(
                BillPaymentRow,
                "select payment_id, user_id, wallet_id, provider, biller_code, category, package_code, customer_id,
                     customer_name, amount, fee, currency, status, hold_id, fee_hold_id, provider_reference, token, token_units,
                     failure_reason, created_at, updated_at, completed_at
                 from bill_payment where payment_id = $1 for update",
                row.payment_id,
            )
            .fetch_one(&mut *tx)
            .await?;
            if current.status == "processing" {
                fail_tx(&mut tx, &current, "provider_declined", &reason).await?;
                Applied::Settled
            } else {
                Applied::AlreadySettled
            }
        }
    };
    if settled == Applied::Settled {
        notify_tx(&mut tx, &config, row.payment_id).await?;
    } else if settled == Applied::Pending {
        // Pending at the provider: roll back this run's bookkeeping and come back for the status.
        drop(tx);
        return Err(JobError::RetryAfter {
            after: config.providers.status_poll,
            message: "the provider reports the vend as pending".into(),
        });
    }
    tx.commit().await?;
    notify::announce_for_operations(&ctx.pool, &[row.payment_id]).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Beneficiaries

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Beneficiary {
    pub beneficiary_id: Uuid,
    pub user_id: Uuid,
    pub biller_code: String,
    pub customer_id: String,
    pub nickname: String,
    pub customer_name: Option<String>,
    pub usage_count: i32,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub async fn save_beneficiary_tx(
    tx: &mut PgConnection,
    user_id: Uuid,
    biller_code: &str,
    customer_id: &str,
    nickname: &str,
    customer_name: Option<&str>,
) -> Result<Beneficiary, sqlx::Error> {
    sqlx::query_as!(
        Beneficiary,
        "insert into bill_beneficiary (beneficiary_id, user_id, biller_code, customer_id, nickname, customer_name)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (user_id, biller_code, customer_id)
             do update set nickname = excluded.nickname,
                           customer_name = coalesce(excluded.customer_name, bill_beneficiary.customer_name)
         returning beneficiary_id, user_id, biller_code, customer_id, nickname, customer_name, usage_count, last_used_at,
             created_at",
        Uuid::now_v7(),
        user_id,
        biller_code,
        customer_id,
        nickname,
        customer_name,
    )
    .fetch_one(&mut *tx)
    .await
}

pub async fn beneficiaries(pool: &PgPool, user_id: Uuid) -> Result<Vec<Beneficiary>, sqlx::Error> {
    sqlx::query_as!(
        Beneficiary,
        "select beneficiary_id, user_id, biller_code, customer_id, nickname, customer_name, usage_count, last_used_at,
             created_at
         from bill_beneficiary where user_id = $1
         order by last_used_at desc nulls last, created_at desc",
        user_id,
    )
    .fetch_all(pool)
    .await
}

pub async fn delete_beneficiary(
    pool: &PgPool,
    user_id: Uuid,
    beneficiary_id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "delete from bill_beneficiary where beneficiary_id = $1 and user_id = $2",
        beneficiary_id,
        user_id,
    )
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// Adds the bills domain's job kind: vending a bill payment through the provider.
pub fn register(registry: &mut Registry, config: &Arc<Config>, providers: &Arc<Providers>) {
    let deps = (Arc::clone(providers), Arc::clone(config));
    registry.register_with::<VendBill, _, _, _>(deps, |ctx, job, (p, c)| vend(ctx, job, p, c));
}
