//! Deposits: money in through the payment gateway.
//!
//! * Hosted page (`channel = card`): the API records the deposit and its operation and enqueues
//!   `deposit.initialize`, which asks the gateway for a payment page (reference = the operation id) and moves the
//!   operation to `requires_action` with the URL. The customer pays or abandons it there.
//! * Bank transfer into the user's account number (`channel = bank_transfer`): the gateway's signed webhook names
//!   the receiving account; `deposit.bank_transfer` creates the deposit.
//!
//! Either way a webhook only **prompts** a check: the wallet is credited by `deposit.verify` after the gateway,
//! asked directly, confirms the charge. The credit (amount minus the deposit fee, from the provider's clearing
//! account) and the status change commit in one fenced transaction that locks the deposit row, so duplicated,
//! replayed or reordered deliveries converge on exactly one credit. `deposits.sweep` re-checks deposits whose
//! webhook never came and expires the ones never paid.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domains::wallet;
use crate::domains::wallet::spend::post_new_tx;
use crate::engine::enqueue_to_sqlx;
use crate::engine::{enqueue_tx, Job, JobContext, JobError, NewJob, Queue};
use crate::engine::{scheduler::ScheduleDef, Registry};
use crate::ledger::{self, Flow, NewTransfer, SystemAccount};
use crate::money::{Amount, Currency};
use crate::notify;
use crate::operation;
use crate::platform::config::Config;
use crate::providers::{ChargeStatus, DepositInit, ProviderError, ProviderName, Providers};

/// A deposit never paid is given up after this long.
pub const DEPOSIT_TTL: chrono::Duration = chrono::Duration::hours(24);
/// Deposits waiting for payment are re-checked with the gateway after this long without news.
const SWEEP_AFTER: chrono::Duration = chrono::Duration::minutes(2);
const SWEEP_BATCH: i64 = 200;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DepositRow {
    pub deposit_id: Uuid,
    pub user_id: Uuid,
    pub wallet_id: Uuid,
    pub provider: String,
    pub channel: String,
    pub reference: String,
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    pub status: String,
    pub authorization_url: Option<String>,
    pub return_url: Option<String>,
    pub provider_status: Option<String>,
    pub failure_reason: Option<String>,
    pub credit_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitializeDeposit {
    pub deposit_id: Uuid,
}
impl Job for InitializeDeposit {
    const KIND: &'static str = "deposit.initialize";
    const QUEUE: Queue = Queue::Payments;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyDeposit {
    pub deposit_id: Uuid,
    /// The webhook that prompted the check, if any.
    pub webhook_event_id: Option<i64>,
}
impl Job for VerifyDeposit {
    const KIND: &'static str = "deposit.verify";
    const QUEUE: Queue = Queue::Payments;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BankTransferDeposit {
    /// The gateway's reference of the charge.
    pub reference: String,
    pub webhook_event_id: Option<i64>,
}
impl Job for BankTransferDeposit {
    const KIND: &'static str = "deposit.bank_transfer";
    const QUEUE: Queue = Queue::Payments;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepDeposits {}
impl Job for SweepDeposits {
    const KIND: &'static str = "deposits.sweep";
    const QUEUE: Queue = Queue::Payments;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepositRejection {
    #[error("the wallet does not exist")]
    WalletNotFound,
    #[error("deposits through the gateway are in NGN only")]
    CurrencyNotSupported,
    #[error("the wallet is frozen")]
    WalletFrozen,
}

impl DepositRejection {
    pub fn code(&self) -> &'static str {
        match self {
            Self::WalletNotFound => "wallet_not_found",
            Self::CurrencyNotSupported => "unsupported_currency",
            Self::WalletFrozen => "wallet_frozen",
        }
    }
}

/// The longest return URL accepted.
pub const RETURN_URL_CHARS_MAX: usize = 500;

/// Why a deposit's `return_url` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReturnUrlRejection {
    #[error("the return URL must be an http(s) URL of at most 500 characters")]
    Malformed,
    #[error("the return URL's host is not on the allow-list")]
    HostNotAllowed,
}

impl ReturnUrlRejection {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "invalid_return_url",
            Self::HostNotAllowed => "return_url_host_not_allowed",
        }
    }
}

/// Checks where the gateway may send the customer after the payment page: an absolute http(s) URL, without
/// credentials, whose host is on `DEPOSIT_RETURN_HOSTS` (docs/security.md §9). The payment page redirects there
/// with our name on it, so any other host would make PayCore an open redirect for phishing. The URL is parsed,
/// never matched as text, so `https://localhost@evil.example` or `https://localhost.evil.example` are not taken
/// for localhost. Returns the URL as parsed (normalised).
pub fn check_return_url(config: &Config, raw: &str) -> Result<String, ReturnUrlRejection> {
    let raw = raw.trim();
    if raw.chars().count() > RETURN_URL_CHARS_MAX
        || raw.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ReturnUrlRejection::Malformed);
    }
    let url = reqwest::Url::parse(raw).map_err(|_| ReturnUrlRejection::Malformed)?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(ReturnUrlRejection::Malformed);
    }
    let host = url
        .host_str()
        .ok_or(ReturnUrlRejection::Malformed)?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if config
        .providers
        .deposit_return_hosts
        .iter()
        .any(|allowed| host_allowed(allowed, &host))
    {
        Ok(url.to_string())
    } else {
        Err(ReturnUrlRejection::HostNotAllowed)
    }
}

/// `allowed` is a host (`shop.example.com`) or every subdomain of one (`*.example.com`, not the bare domain).
fn host_allowed(allowed: &str, host: &str) -> bool {
    match allowed.strip_prefix("*.") {
        Some(parent) => host
            .strip_suffix(parent)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => host == allowed,
    }
}

/// The deposit fee on `amount`, never the whole amount.
pub fn fee_for(config: &Config, amount: Amount) -> i64 {
    config
        .money
        .fees
        .deposit
        .fee(amount)
        .min(amount.minor() - 1)
        .max(0)
}

/// Records a hosted-page deposit (with the fee it will cost if paid in full) and enqueues its initialisation, in
/// the caller's transaction.
pub async fn create_tx(
    tx: &mut PgConnection,
    user_id: Uuid,
    wallet_id: Uuid,
    amount: Amount,
    fee: i64,
    return_url: Option<&str>,
) -> Result<Result<DepositRow, DepositRejection>, sqlx::Error> {
    let Some(target) = wallet::lock_tx(tx, wallet_id)
        .await?
        .filter(|w| w.user_id == user_id)
    else {
        return Ok(Err(DepositRejection::WalletNotFound));
    };
    if target.currency() != Currency::Ngn {
        return Ok(Err(DepositRejection::CurrencyNotSupported));
    }
    if target.is_frozen() {
        return Ok(Err(DepositRejection::WalletFrozen));
    }
    let operation_id = operation::insert_tx(
        tx,
        "deposit",
        Some(user_id),
        &serde_json::json!({"wallet_id": wallet_id, "amount": amount.minor(), "currency": "NGN",
                            "channel": "card"}),
    )
    .await?;
    let row: DepositRow = sqlx::query_as(
        "insert into deposit (deposit_id, user_id, wallet_id, provider, channel, reference, amount, fee, currency,
             status, return_url)
         values ($1, $2, $3, $4, 'card', $5, $6, $8, 'NGN', 'initializing', $7) returning *",
    )
    .bind(operation_id)
    .bind(user_id)
    .bind(wallet_id)
    .bind(ProviderName::Paystack.as_str())
    .bind(operation_id.to_string())
    .bind(amount.minor())
    .bind(return_url)
    .bind(fee)
    .fetch_one(&mut *tx)
    .await?;
    let job = NewJob::new(&InitializeDeposit {
        deposit_id: operation_id,
    })
    .map_err(enqueue_to_sqlx)?
    .for_operation(operation_id);
    enqueue_tx(tx, job).await.map_err(enqueue_to_sqlx)?;
    Ok(Ok(row))
}

pub async fn get(pool: &PgPool, deposit_id: Uuid) -> Result<Option<DepositRow>, sqlx::Error> {
    sqlx::query_as("select * from deposit where deposit_id = $1")
        .bind(deposit_id)
        .fetch_optional(pool)
        .await
}

pub async fn by_reference_tx(
    tx: &mut PgConnection,
    provider: ProviderName,
    reference: &str,
) -> Result<Option<DepositRow>, sqlx::Error> {
    sqlx::query_as("select * from deposit where provider = $1 and reference = $2")
        .bind(provider.as_str())
        .bind(reference)
        .fetch_optional(&mut *tx)
        .await
}

/// The `deposit.initialize` handler: asks the gateway for the payment page.
pub async fn initialize(
    ctx: JobContext,
    job: InitializeDeposit,
    providers: Arc<Providers>,
    config: Arc<Config>,
) -> Result<(), JobError> {
    let Some(deposit) = get(&ctx.pool, job.deposit_id).await? else {
        return Err(JobError::permanent("deposit_not_found", "no such deposit"));
    };
    if deposit.status != "initializing" {
        return Ok(());
    }
    let email: String = sqlx::query_scalar("select email from app_user where user_id = $1")
        .bind(deposit.user_id)
        .fetch_one(&ctx.pool)
        .await?;
    let init = DepositInit {
        reference: deposit.reference.clone(),
        email,
        amount_minor: deposit.amount,
        currency: Currency::Ngn,
        callback_url: deposit
            .return_url
            .clone()
            .or_else(|| config.providers.deposit_return_url.clone()),
    };
    let session = match providers.gateway.initialize(&init).await {
        Ok(session) => Ok(session),
        // A rescued or retried run whose earlier call reached the gateway gets that call's page back from the
        // adapter (it looks the reference up). A duplicate left here is a reference the gateway holds for another
        // payment, or one no longer payable: the customer starts a new deposit.
        Err(ProviderError::Declined(message)) if message.to_lowercase().contains("duplicate") => {
            Err(("deposit_unavailable", message))
        }
        Err(ProviderError::Declined(message)) => Err(("provider_declined", message)),
        Err(error) => return Err(JobError::transient(error)),
    };
    let mut tx = ctx.begin_fenced().await?;
    match session {
        Ok(session) => {
            let updated = sqlx::query(
                "update deposit set status = 'requires_action', authorization_url = $2, updated_at = now()
                 where deposit_id = $1 and status = 'initializing'",
            )
            .bind(deposit.deposit_id)
            .bind(&session.authorization_url)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
                operation::transition_to_tx(
                    &mut tx,
                    deposit.deposit_id,
                    operation::OperationStatus::RequiresAction,
                )
                .await?;
            }
        }
        Err((code, message)) => {
            fail_tx(&mut tx, &deposit, code, &message).await?;
        }
    }
    tx.commit().await?;
    notify::announce_for_operations(&ctx.pool, &[deposit.deposit_id]).await;
    Ok(())
}

async fn fail_tx(
    tx: &mut PgConnection,
    deposit: &DepositRow,
    code: &str,
    message: &str,
) -> Result<(), sqlx::Error> {
    let updated = sqlx::query(
        "update deposit set status = 'failed', failure_reason = left($2, 500), updated_at = now()
         where deposit_id = $1 and status in ('initializing', 'requires_action')",
    )
    .bind(deposit.deposit_id)
    .bind(message)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 1 {
        operation::fail_tx(tx, deposit.deposit_id, code, message).await?;
    }
    Ok(())
}

async fn mark_webhook_tx(
    tx: &mut PgConnection,
    webhook_event_id: Option<i64>,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    if let Some(id) = webhook_event_id {
        crate::providers::inbox::mark_processed_tx(tx, id, outcome).await?;
    }
    Ok(())
}

/// Credits a confirmed deposit: the wallet gets `amount - fee` and fee income `fee`, both from the provider's
/// clearing account. The caller has locked the deposit row and checked it is still open.
async fn credit_tx(
    tx: &mut PgConnection,
    config: &Config,
    deposit: &DepositRow,
    paid_minor: i64,
    provider_status: &str,
) -> Result<(), JobError> {
    let amount = Amount::new(paid_minor)
        .map_err(|e| JobError::permanent("invalid_amount", e.to_string()))?;
    let fee = fee_for(config, amount);
    let currency = Currency::Ngn;
    let wallet_account: i64 =
        sqlx::query_scalar("select account_id from wallet where wallet_id = $1")
            .bind(deposit.wallet_id)
            .fetch_one(&mut *tx)
            .await?;
    let clearing = ledger::system_account_tx(
        tx,
        SystemAccount::Clearing(ProviderName::Paystack),
        currency,
    )
    .await?;
    let net = Amount::new(paid_minor - fee)
        .map_err(|e| JobError::permanent("invalid_amount", e.to_string()))?;
    let mut moves = vec![NewTransfer {
        flow: Flow::Posted(net),
        debit: clearing,
        credit: wallet_account,
        currency,
        code: "deposit",
        operation_id: Some(deposit.deposit_id),
    }];
    if let Ok(fee_amount) = Amount::new(fee) {
        let fee_account = ledger::system_account_tx(tx, SystemAccount::FeeIncome, currency).await?;
        moves.push(NewTransfer {
            flow: Flow::Posted(fee_amount),
            debit: clearing,
            credit: fee_account,
            currency,
            code: "fee",
            operation_id: Some(deposit.deposit_id),
        });
    }
    let ids = post_new_tx(tx, &moves).await?;
    sqlx::query(
        "update deposit set status = 'completed', amount = $2, fee = $3, credit_id = $4, provider_status = $5,
             completed_at = now(), updated_at = now()
         where deposit_id = $1",
    )
    .bind(deposit.deposit_id)
    .bind(paid_minor)
    .bind(fee)
    .bind(ids[0])
    .bind(provider_status)
    .execute(&mut *tx)
    .await?;
    operation::succeed_tx(
        tx,
        deposit.deposit_id,
        &serde_json::json!({"deposit_id": deposit.deposit_id, "credited": paid_minor - fee, "fee": fee}),
    )
    .await?;
    crate::notify::notify_tx(
        tx,
        deposit.user_id,
        &crate::notify::Event::DepositCredited {
            amount: paid_minor,
            fee,
            currency: deposit.currency.clone(),
            reference: deposit.deposit_id,
        },
        Some(deposit.deposit_id),
    )
    .await?;
    Ok(())
}

/// The `deposit.verify` handler: asks the gateway and applies its answer.
pub async fn verify(
    ctx: JobContext,
    job: VerifyDeposit,
    providers: Arc<Providers>,
    config: Arc<Config>,
) -> Result<(), JobError> {
    let Some(deposit) = get(&ctx.pool, job.deposit_id).await? else {
        return Err(JobError::permanent("deposit_not_found", "no such deposit"));
    };
    let open = matches!(deposit.status.as_str(), "initializing" | "requires_action");
    let charge = if open {
        match providers.gateway.verify(&deposit.reference).await {
            Ok(charge) => Some(charge),
            // The gateway has not heard of it yet (initialisation still running): nothing to do.
            Err(ProviderError::NotFound) => None,
            Err(error) if error.is_transient() => return Err(JobError::transient(error)),
            Err(error) => return Err(JobError::transient(error)),
        }
    } else {
        None
    };
    let mut tx = ctx.begin_fenced().await?;
    let status: String =
        sqlx::query_scalar("select status from deposit where deposit_id = $1 for update")
            .bind(deposit.deposit_id)
            .fetch_one(&mut *tx)
            .await?;
    let still_open = matches!(status.as_str(), "initializing" | "requires_action");
    let outcome = match (&charge, still_open) {
        (_, false) => "already_settled",
        (None, true) => "not_at_provider",
        (Some(charge), true) => match charge.status {
            ChargeStatus::Success if charge.currency == deposit.currency => {
                credit_tx(&mut tx, &config, &deposit, charge.amount_minor, "success").await?;
                "credited"
            }
            ChargeStatus::Success => {
                fail_tx(
                    &mut tx,
                    &deposit,
                    "currency_mismatch",
                    "the gateway settled the deposit in another currency; support will contact you",
                )
                .await?;
                "currency_mismatch"
            }
            ChargeStatus::Failed => {
                let reason = if charge.gateway_response.is_empty() {
                    "the payment was declined".to_owned()
                } else {
                    charge.gateway_response.clone()
                };
                fail_tx(&mut tx, &deposit, "payment_declined", &reason).await?;
                "declined"
            }
            ChargeStatus::Abandoned => {
                fail_tx(
                    &mut tx,
                    &deposit,
                    "payment_abandoned",
                    "the payment page was left without paying",
                )
                .await?;
                "abandoned"
            }
            ChargeStatus::Pending if Utc::now() - deposit.created_at > DEPOSIT_TTL => {
                fail_tx(
                    &mut tx,
                    &deposit,
                    "deposit_expired",
                    "the payment was not completed in time",
                )
                .await?;
                "expired"
            }
            ChargeStatus::Pending => {
                sqlx::query("update deposit set updated_at = now() where deposit_id = $1")
                    .bind(deposit.deposit_id)
                    .execute(&mut *tx)
                    .await?;
                "pending"
            }
        },
    };
    mark_webhook_tx(&mut tx, job.webhook_event_id, outcome).await?;
    tx.commit().await?;
    notify::announce_for_operations(&ctx.pool, &[deposit.deposit_id]).await;
    Ok(())
}

/// The `deposit.bank_transfer` handler: a transfer into a user's account number, confirmed with the gateway.
pub async fn bank_transfer(
    ctx: JobContext,
    job: BankTransferDeposit,
    providers: Arc<Providers>,
    config: Arc<Config>,
) -> Result<(), JobError> {
    let charge = match providers.gateway.verify(&job.reference).await {
        Ok(charge) => charge,
        Err(ProviderError::NotFound) => {
            return finish_unmatched(&ctx, job.webhook_event_id, "not_at_provider").await
        }
        Err(error) => return Err(JobError::transient(error)),
    };
    if charge.status != ChargeStatus::Success {
        return finish_unmatched(&ctx, job.webhook_event_id, "not_successful").await;
    }
    let Some(account_number) = charge.receiver_account_number.clone() else {
        return finish_unmatched(&ctx, job.webhook_event_id, "no_receiving_account").await;
    };
    let mut tx = ctx.begin_fenced().await?;
    if by_reference_tx(&mut tx, ProviderName::Paystack, &charge.reference)
        .await?
        .is_some()
    {
        mark_webhook_tx(&mut tx, job.webhook_event_id, "already_settled").await?;
        tx.commit().await?;
        return Ok(());
    }
    let Some(target) = wallet::by_account_number_tx(&mut tx, &account_number).await? else {
        // Money arrived for an account we do not have: it stays in clearing for support to return.
        tracing::error!(reference = %charge.reference, "bank transfer to an unknown account number");
        mark_webhook_tx(&mut tx, job.webhook_event_id, "unknown_account").await?;
        tx.commit().await?;
        return Ok(());
    };
    if target.currency() != Currency::Ngn || charge.currency != "NGN" {
        mark_webhook_tx(&mut tx, job.webhook_event_id, "currency_mismatch").await?;
        tx.commit().await?;
        return Ok(());
    }
    let operation_id = operation::insert_tx(
        &mut tx,
        "deposit",
        Some(target.user_id),
        &serde_json::json!({"wallet_id": target.wallet_id, "amount": charge.amount_minor, "currency": "NGN",
                            "channel": "bank_transfer", "reference": charge.reference}),
    )
    .await?;
    let deposit: DepositRow = sqlx::query_as(
        "insert into deposit (deposit_id, user_id, wallet_id, provider, channel, reference, amount, currency,
             status)
         values ($1, $2, $3, 'paystack', 'bank_transfer', $4, $5, 'NGN', 'requires_action') returning *",
    )
    .bind(operation_id)
    .bind(target.user_id)
    .bind(target.wallet_id)
    .bind(&charge.reference)
    .bind(charge.amount_minor)
    .fetch_one(&mut *tx)
    .await?;
    credit_tx(&mut tx, &config, &deposit, charge.amount_minor, "success").await?;
    mark_webhook_tx(&mut tx, job.webhook_event_id, "credited").await?;
    tx.commit().await?;
    notify::announce_for_operations(&ctx.pool, &[operation_id]).await;
    Ok(())
}

async fn finish_unmatched(
    ctx: &JobContext,
    webhook_event_id: Option<i64>,
    outcome: &str,
) -> Result<(), JobError> {
    let mut tx = ctx.begin_fenced().await?;
    mark_webhook_tx(&mut tx, webhook_event_id, outcome).await?;
    tx.commit().await?;
    Ok(())
}

/// Enqueues a check of a deposit with the gateway.
pub async fn request_verification(pool: &PgPool, deposit_id: Uuid) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let job = NewJob::new(&VerifyDeposit {
        deposit_id,
        webhook_event_id: None,
    })
    .map_err(enqueue_to_sqlx)?
    .for_operation(deposit_id);
    enqueue_tx(&mut tx, job).await.map_err(enqueue_to_sqlx)?;
    tx.commit().await?;
    crate::engine::wake(pool, &[Queue::Payments]).await;
    Ok(())
}

/// The `deposits.sweep` handler: re-checks deposits whose webhook has not come.
pub async fn sweep(ctx: JobContext, _: SweepDeposits) -> Result<(), JobError> {
    let mut tx = ctx.pool.begin().await?;
    let due: Vec<Uuid> = sqlx::query_scalar(
        "update deposit set updated_at = now()
         where deposit_id in (select deposit_id from deposit where status = 'requires_action'
                              and updated_at < now() - make_interval(secs => $1)
                              order by updated_at limit $2 for update skip locked)
         returning deposit_id",
    )
    .bind(SWEEP_AFTER.num_seconds() as f64)
    .bind(SWEEP_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    for deposit_id in &due {
        let job = NewJob::new(&VerifyDeposit {
            deposit_id: *deposit_id,
            webhook_event_id: None,
        })
        .map_err(JobError::transient)?
        .for_operation(*deposit_id);
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

/// Adds the deposit domain's job kinds: starting a deposit at the gateway, verifying it, crediting a bank
/// transfer, and the sweep that checks or expires deposits nobody told us about.
pub fn register(registry: &mut Registry, config: &Arc<Config>, providers: &Arc<Providers>) {
    let deps = (Arc::clone(providers), Arc::clone(config));
    registry
        .register::<SweepDeposits, _, _>(sweep)
        .register_with::<InitializeDeposit, _, _, _>(deps.clone(), |ctx, job, (p, c)| {
            initialize(ctx, job, p, c)
        })
        .register_with::<VerifyDeposit, _, _, _>(deps.clone(), |ctx, job, (p, c)| {
            verify(ctx, job, p, c)
        })
        .register_with::<BankTransferDeposit, _, _, _>(deps, |ctx, job, (p, c)| {
            bank_transfer(ctx, job, p, c)
        });
}

/// The deposit domain's schedules.
pub fn schedules() -> Vec<ScheduleDef> {
    vec![ScheduleDef::of::<SweepDeposits>(
        "deposits.sweep",
        "30 * * * * *",
    )]
}

#[cfg(test)]
mod tests {
    use super::{check_return_url, ReturnUrlRejection};
    use crate::platform::config::{Config, Env};

    fn config(pairs: &[(&str, &str)]) -> Config {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        Config::from_env(&Env::new(&lookup)).expect("configuration")
    }

    #[test]
    fn by_default_only_this_machine_is_a_return_destination() {
        let config = config(&[]);
        for ok in [
            "http://localhost:3000/done",
            "https://127.0.0.1/deposits?x=1",
            "HTTP://LOCALHOST./x",
        ] {
            assert!(check_return_url(&config, ok).is_ok(), "{ok}");
        }
        for refused in [
            "https://evil.example/phish",
            "https://localhost.evil.example/",
            "https://evil.example/?next=localhost",
            "https://evil.example\\@localhost/",
        ] {
            assert_eq!(
                check_return_url(&config, refused),
                Err(ReturnUrlRejection::HostNotAllowed),
                "{refused}"
            );
        }
        for malformed in [
            "javascript:alert(1)",
            "//evil.example/",
            "ftp://localhost/",
            "https://user:pass@localhost/",
            "https://localhost@evil.example/",
            "localhost/done",
        ] {
            assert_eq!(
                check_return_url(&config, malformed),
                Err(ReturnUrlRejection::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn configured_hosts_and_the_default_return_urls_host_are_allowed_and_wildcards_cover_subdomains_only(
    ) {
        let config = config(&[
            (
                "DEPOSIT_RETURN_HOSTS",
                "shop.example.com, *.Merchant.example",
            ),
            ("DEPOSIT_RETURN_URL", "https://pay.paycore.example/return"),
        ]);
        for ok in [
            "https://shop.example.com/thanks",
            "https://a.merchant.example/x",
            "https://b.a.merchant.example/x",
            "https://pay.paycore.example/other",
        ] {
            assert!(check_return_url(&config, ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://localhost/",
            "https://merchant.example/",
            "https://evilmerchant.example/",
            "https://shop.example.com.evil.io/",
        ] {
            assert_eq!(
                check_return_url(&config, refused),
                Err(ReturnUrlRejection::HostNotAllowed),
                "{refused}"
            );
        }
    }
}
