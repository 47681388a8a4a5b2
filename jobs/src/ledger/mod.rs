//! The double-entry ledger (docs/architecture.md §5), in the TigerBeetle model.
//!
//! Every movement is an immutable `ledger_transfer` from a debit account to a credit account of one currency, and
//! every account keeps four counters. `post_tx` applies a batch of linked transfers in the caller's transaction:
//! all or none. Accounts are locked in id order, so concurrent batches over the same accounts queue instead of
//! deadlocking. A wallet's no-overdraft rule is a CHECK constraint; its violation becomes
//! `LedgerError::InsufficientFunds`.

pub mod audit;
pub mod history;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::money::{Amount, Currency};

pub type AccountId = i64;

/// System accounts, each a set of shards so that a hot one (every registration debits the subsidy account) does
/// not serialise the platform on one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemAccount {
    /// Funds welcome bonuses.
    Subsidy,
    /// Receives fees.
    FeeIncome,
    /// Money in transit through a payment provider: debited by deposits (the provider owes it to us), credited by
    /// payouts and bill payments (we sent it out through the provider).
    Clearing(crate::providers::ProviderName),
}

impl SystemAccount {
    pub fn code(self) -> &'static str {
        match self {
            SystemAccount::Subsidy => "subsidy",
            SystemAccount::FeeIncome => "fee_income",
            SystemAccount::Clearing(crate::providers::ProviderName::Paystack) => {
                "clearing_paystack"
            }
            SystemAccount::Clearing(crate::providers::ProviderName::Flutterwave) => {
                "clearing_flutterwave"
            }
        }
    }
}

/// Shards per system account and currency: enough that concurrent postings rarely pick the same row.
pub const SYSTEM_ACCOUNT_SHARDS: i32 = 64;

/// One movement in a batch.
#[derive(Debug, Clone)]
pub struct NewTransfer {
    pub flow: Flow,
    pub debit: AccountId,
    pub credit: AccountId,
    pub currency: Currency,
    pub code: &'static str,
    pub operation_id: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub enum Flow {
    /// Moves `amount` now.
    Posted(Amount),
    /// Reserves `amount` until posted or voided (or `expires_at`).
    Pending {
        amount: Amount,
        expires_at: Option<DateTime<Utc>>,
    },
    /// Posts `amount` (at most the held amount) of pending transfer `pending_id`; the rest is released.
    PostPending { pending_id: Uuid, amount: Amount },
    /// Releases pending transfer `pending_id`.
    VoidPending { pending_id: Uuid },
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("account {0} would be overdrawn")]
    InsufficientFunds(AccountId),
    #[error("the accounts and the transfer are not all in one currency")]
    CurrencyMismatch,
    #[error("pending transfer {0} does not exist or does not match")]
    PendingNotFound(Uuid),
    #[error("pending transfer {0} was already posted or voided")]
    AlreadyResolved(Uuid),
    #[error("posting {requested} exceeds the {held} held by pending transfer {pending_id}")]
    PostExceedsHold {
        pending_id: Uuid,
        requested: i64,
        held: i64,
    },
    #[error("a counter would overflow")]
    Overflow,
    // Not `transparent`: the sqlx error stays in the source chain, where the api recognises a lost database.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

impl LedgerError {
    /// Deadlocks and serialisation failures are worth retrying with the whole transaction.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LedgerError::Database(error) if is_retryable_db_error(error))
    }
}

pub fn is_retryable_db_error(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001") | Some("40P01")))
}

fn constraint_of(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.constraint().map(str::to_owned),
        _ => None,
    }
}

/// Creates a ledger account. Wallets get the no-overdraft rule.
pub async fn create_wallet_account_tx(
    tx: &mut PgConnection,
    currency: Currency,
) -> Result<AccountId, sqlx::Error> {
    sqlx::query_scalar!(
        "insert into ledger_account (currency, kind, debits_must_not_exceed_credits)
         values ($1, 'wallet', true) returning account_id",
        currency.code(),
    )
    .fetch_one(&mut *tx)
    .await
}

/// One shard of a system account, created on first use.
pub async fn system_account_tx(
    tx: &mut PgConnection,
    account: SystemAccount,
    currency: Currency,
) -> Result<AccountId, sqlx::Error> {
    let shard = rand::random::<u32>() % SYSTEM_ACCOUNT_SHARDS as u32;
    let shard = i32::try_from(shard).unwrap_or(0);
    if let Some(id) = sqlx::query_scalar!(
        "select account_id from ledger_account where kind = 'system' and code = $1 and currency = $2 and shard = $3",
        account.code(),
        currency.code(),
        shard,
    )
    .fetch_optional(&mut *tx)
    .await?
    {
        return Ok(id);
    }
    sqlx::query!(
        "insert into ledger_account (currency, kind, code, shard) values ($1, 'system', $2, $3)
         on conflict do nothing",
        currency.code(),
        account.code(),
        shard,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query_scalar!(
        "select account_id from ledger_account where kind = 'system' and code = $1 and currency = $2 and shard = $3",
        account.code(),
        currency.code(),
        shard,
    )
    .fetch_one(&mut *tx)
    .await
}

#[derive(Default, Clone, Copy)]
struct Delta {
    debits_pending: i64,
    debits_posted: i64,
    credits_pending: i64,
    credits_posted: i64,
}

fn add(counter: &mut i64, value: i64) -> Result<(), LedgerError> {
    *counter = counter.checked_add(value).ok_or(LedgerError::Overflow)?;
    Ok(())
}

struct PendingRow {
    transfer_id: Uuid,
    debit_account_id: AccountId,
    credit_account_id: AccountId,
    amount: i64,
    currency: String,
    resolved: bool,
}

/// A locked account's currency and what its no-overdraft rule needs.
struct LockedAccount {
    account_id: AccountId,
    currency: String,
    debits_pending: i64,
    debits_posted: i64,
    credits_posted: i64,
    debits_must_not_exceed_credits: bool,
}

impl LockedAccount {
    fn would_overdraw(&self, delta: &Delta) -> bool {
        let debits = self
            .debits_pending
            .saturating_add(delta.debits_pending)
            .saturating_add(self.debits_posted)
            .saturating_add(delta.debits_posted);
        self.debits_must_not_exceed_credits
            && debits > self.credits_posted.saturating_add(delta.credits_posted)
    }
}

/// Applies `transfers` in the caller's transaction, all or none, and returns their ids in order.
///
/// Four statements whatever the batch's size: read the holds being resolved, lock the accounts (in id order),
/// update every account's counters, insert every transfer.
pub async fn post_tx(
    tx: &mut PgConnection,
    transfers: &[NewTransfer],
) -> Result<Vec<Uuid>, LedgerError> {
    // Counter changes per account; holds being resolved add theirs below from the pending rows.
    let mut deltas: BTreeMap<AccountId, Delta> = BTreeMap::new();
    for transfer in transfers {
        if transfer.debit == transfer.credit {
            return Err(LedgerError::CurrencyMismatch);
        }
        let debit = deltas.entry(transfer.debit).or_default();
        match &transfer.flow {
            Flow::Posted(amount) => add(&mut debit.debits_posted, amount.minor())?,
            Flow::Pending { amount, .. } => add(&mut debit.debits_pending, amount.minor())?,
            Flow::PostPending { .. } | Flow::VoidPending { .. } => {}
        }
        let credit = deltas.entry(transfer.credit).or_default();
        match &transfer.flow {
            Flow::Posted(amount) => add(&mut credit.credits_posted, amount.minor())?,
            Flow::Pending { amount, .. } => add(&mut credit.credits_pending, amount.minor())?,
            Flow::PostPending { .. } | Flow::VoidPending { .. } => {}
        }
    }

    // Held amounts of the holds this batch resolves.
    let mut resolved: Vec<(Uuid, i64)> = Vec::with_capacity(transfers.len());
    let pending_ids: Vec<Uuid> = transfers
        .iter()
        .filter_map(|transfer| match &transfer.flow {
            Flow::PostPending { pending_id, .. } | Flow::VoidPending { pending_id } => {
                Some(*pending_id)
            }
            _ => None,
        })
        .collect();
    let pending_rows: Vec<PendingRow> = if pending_ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as!(
            PendingRow,
            r#"select p.transfer_id, p.debit_account_id, p.credit_account_id, p.amount, p.currency,
                    exists(select 1 from ledger_transfer r where r.pending_id = p.transfer_id) as "resolved!"
             from ledger_transfer p where p.transfer_id = any($1) and p.flow = 'pending'"#,
            &pending_ids,
        )
        .fetch_all(&mut *tx)
        .await?
    };
    for transfer in transfers {
        let (pending_id, post_amount) = match &transfer.flow {
            Flow::PostPending { pending_id, amount } => (*pending_id, Some(amount.minor())),
            Flow::VoidPending { pending_id } => (*pending_id, None),
            _ => continue,
        };
        let row = pending_rows
            .iter()
            .find(|row| row.transfer_id == pending_id)
            .ok_or(LedgerError::PendingNotFound(pending_id))?;
        if row.debit_account_id != transfer.debit
            || row.credit_account_id != transfer.credit
            || row.currency != transfer.currency.code()
        {
            return Err(LedgerError::PendingNotFound(pending_id));
        }
        if row.resolved || resolved.iter().any(|(id, _)| *id == pending_id) {
            return Err(LedgerError::AlreadyResolved(pending_id));
        }
        let moved = post_amount.unwrap_or(0);
        if moved > row.amount {
            return Err(LedgerError::PostExceedsHold {
                pending_id,
                requested: moved,
                held: row.amount,
            });
        }
        let debit = deltas.entry(row.debit_account_id).or_default();
        add(&mut debit.debits_pending, -row.amount)?;
        add(&mut debit.debits_posted, moved)?;
        let credit = deltas.entry(row.credit_account_id).or_default();
        add(&mut credit.credits_pending, -row.amount)?;
        add(&mut credit.credits_posted, moved)?;
        resolved.push((pending_id, row.amount));
    }

    // Lock every account in id order (the BTreeMap's order) and check currencies. `no key update` lets the
    // foreign-key checks of concurrent transfer inserts through.
    let ids: Vec<AccountId> = deltas.keys().copied().collect();
    let locked: Vec<LockedAccount> = sqlx::query_as!(
        LockedAccount,
        "select account_id, currency, debits_pending, debits_posted, credits_posted, debits_must_not_exceed_credits
         from ledger_account where account_id = any($1) order by account_id for no key update",
        &ids,
    )
    .fetch_all(&mut *tx)
    .await?;
    if locked.len() != ids.len() {
        return Err(LedgerError::CurrencyMismatch);
    }
    for transfer in transfers {
        for account in [transfer.debit, transfer.credit] {
            let matches = locked
                .iter()
                .any(|a| a.account_id == account && a.currency == transfer.currency.code());
            if !matches {
                return Err(LedgerError::CurrencyMismatch);
            }
        }
    }

    // Every account's counters in one statement. The CHECK constraint is what forbids an overdraft; the locked
    // counters only name the account when it fires.
    let columns = |f: fn(&Delta) -> i64| deltas.values().map(f).collect::<Vec<i64>>();
    let updated = sqlx::query!(
        r#"update ledger_account a set debits_pending = a.debits_pending + d.debits_pending,
             debits_posted = a.debits_posted + d.debits_posted,
             credits_pending = a.credits_pending + d.credits_pending,
             credits_posted = a.credits_posted + d.credits_posted
         from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
              as d(account_id, debits_pending, debits_posted, credits_pending, credits_posted)
         where a.account_id = d.account_id
         returning a.account_id, a.credits_posted - a.debits_posted as "balance!""#,
        &ids,
        &columns(|d| d.debits_pending),
        &columns(|d| d.debits_posted),
        &columns(|d| d.credits_pending),
        &columns(|d| d.credits_posted),
    )
    .fetch_all(&mut *tx)
    .await;
    let balances: BTreeMap<AccountId, i64> = match updated {
        Ok(rows) => rows
            .into_iter()
            .map(|row| (row.account_id, row.balance))
            .collect(),
        Err(error) if constraint_of(&error).as_deref() == Some("ledger_account_no_overdraft") => {
            let overdrawn = locked
                .iter()
                .find(|a| {
                    deltas
                        .get(&a.account_id)
                        .is_some_and(|d| a.would_overdraw(d))
                })
                .or_else(|| locked.iter().find(|a| a.debits_must_not_exceed_credits))
                .map(|a| a.account_id)
                .unwrap_or_default();
            return Err(LedgerError::InsufficientFunds(overdrawn));
        }
        Err(error) => return Err(error.into()),
    };

    // Every transfer in one statement.
    let mut rows = NewRows::default();
    for transfer in transfers {
        let (flow, amount, pending_id, expires_at) = match &transfer.flow {
            Flow::Posted(amount) => ("posted", amount.minor(), None, None),
            Flow::Pending { amount, expires_at } => ("pending", amount.minor(), None, *expires_at),
            Flow::PostPending { pending_id, amount } => {
                ("post_pending", amount.minor(), Some(*pending_id), None)
            }
            Flow::VoidPending { pending_id } => {
                let held = resolved
                    .iter()
                    .find(|(id, _)| id == pending_id)
                    .map(|(_, held)| *held)
                    .unwrap_or(0);
                ("void_pending", held, Some(*pending_id), None)
            }
        };
        rows.transfer_id.push(Uuid::now_v7());
        rows.flow.push(flow);
        rows.debit.push(transfer.debit);
        rows.credit.push(transfer.credit);
        rows.amount.push(amount);
        rows.currency.push(transfer.currency.code());
        rows.pending_id.push(pending_id);
        rows.code.push(transfer.code);
        rows.operation_id.push(transfer.operation_id);
        rows.expires_at.push(expires_at);
        rows.debit_balance_after
            .push(balances.get(&transfer.debit).copied().unwrap_or(0));
        rows.credit_balance_after
            .push(balances.get(&transfer.credit).copied().unwrap_or(0));
    }
    // `as _` where the macro's check knows no array of `&str` or of nullable elements; the statement's casts
    // still type those columns.
    let inserted = sqlx::query!(
        "insert into ledger_transfer (transfer_id, flow, debit_account_id, credit_account_id, amount, currency,
             pending_id, code, operation_id, expires_at, debit_balance_after, credit_balance_after)
         select n.transfer_id, n.flow, n.debit_account_id, n.credit_account_id, n.amount, n.currency,
             n.pending_id, n.code, n.operation_id, n.expires_at, n.debit_balance_after, n.credit_balance_after
         from unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[],
             $7::uuid[], $8::text[], $9::uuid[], $10::timestamptz[], $11::bigint[], $12::bigint[])
             as n(transfer_id, flow, debit_account_id, credit_account_id, amount, currency,
                  pending_id, code, operation_id, expires_at, debit_balance_after, credit_balance_after)",
        &rows.transfer_id,
        &rows.flow as _,
        &rows.debit,
        &rows.credit,
        &rows.amount,
        &rows.currency as _,
        &rows.pending_id as _,
        &rows.code as _,
        &rows.operation_id as _,
        &rows.expires_at as _,
        &rows.debit_balance_after,
        &rows.credit_balance_after,
    )
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => Ok(rows.transfer_id),
        // Two resolutions raced for one hold: the unique index lets exactly one through.
        Err(error) if constraint_of(&error).as_deref() == Some("ledger_transfer_resolved_once") => {
            Err(LedgerError::AlreadyResolved(
                pending_ids.first().copied().unwrap_or_default(),
            ))
        }
        Err(error) => Err(error.into()),
    }
}

/// The columns of a batch of new ledger transfers.
#[derive(Default)]
struct NewRows {
    transfer_id: Vec<Uuid>,
    flow: Vec<&'static str>,
    debit: Vec<AccountId>,
    credit: Vec<AccountId>,
    amount: Vec<i64>,
    currency: Vec<&'static str>,
    pending_id: Vec<Option<Uuid>>,
    code: Vec<&'static str>,
    operation_id: Vec<Option<Uuid>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    debit_balance_after: Vec<i64>,
    credit_balance_after: Vec<i64>,
}

/// A wallet account's balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Balances {
    /// Spendable now: posted credits minus posted and held debits.
    pub available: i64,
    /// Held for operations in flight.
    pub pending: i64,
    /// Settled balance.
    pub posted: i64,
    /// Credits on their way in (awaiting the recipient's acceptance).
    pub incoming: i64,
}

pub async fn balances(pool: &PgPool, account: AccountId) -> Result<Balances, sqlx::Error> {
    sqlx::query_as!(
        Balances,
        r#"select credits_posted - debits_posted - debits_pending as "available!", debits_pending as pending,
                credits_posted - debits_posted as "posted!", credits_pending as incoming
         from ledger_account where account_id = $1"#,
        account,
    )
    .fetch_one(pool)
    .await
}

/// What the audit found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AuditReport {
    pub clean: bool,
    pub findings: Vec<String>,
    pub accounts: i64,
    pub transfers: i64,
}

/// An account whose counters disagree with the sum of its transfers.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug in the finding
struct CounterDrift {
    account_id: i64,
    debits_pending: i64,
    debits_pending_expected: i64,
    debits_posted: i64,
    debits_posted_expected: i64,
    credits_pending: i64,
    credits_pending_expected: i64,
    credits_posted: i64,
    credits_posted_expected: i64,
}

/// Checks every ledger invariant over the whole ledger (docs/architecture.md §5).
pub async fn audit(pool: &PgPool) -> Result<AuditReport, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // One consistent snapshot for all checks.
    sqlx::query!("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let mut findings = Vec::new();

    // 1. Per currency, debits equal credits (pending and posted).
    let unbalanced = sqlx::query!(
        r#"select currency, sum(debits_pending)::bigint as "debits_pending!", sum(credits_pending)::bigint as "credits_pending!",
                sum(debits_posted)::bigint as "debits_posted!", sum(credits_posted)::bigint as "credits_posted!"
         from ledger_account group by currency
         having sum(debits_pending) <> sum(credits_pending) or sum(debits_posted) <> sum(credits_posted)"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    for row in unbalanced {
        let (currency, dp, cp, dpo, cpo) = (
            row.currency,
            row.debits_pending,
            row.credits_pending,
            row.debits_posted,
            row.credits_posted,
        );
        findings.push(format!(
            "{currency}: debits and credits differ (pending {dp} vs {cp}, posted {dpo} vs {cpo})"
        ));
    }

    // 2. Every account's counters equal the sum of its transfers.
    let drifted: Vec<CounterDrift> = sqlx::query_as!(
        CounterDrift,
        r#"with moves as (
             select t.debit_account_id as account_id,
                    case when t.flow = 'pending' then t.amount
                         when t.flow in ('post_pending', 'void_pending') then -p.amount else 0 end as dp,
                    case when t.flow in ('posted', 'post_pending') then t.amount else 0 end as dpo,
                    0::bigint as cp, 0::bigint as cpo
             from ledger_transfer t left join ledger_transfer p on p.transfer_id = t.pending_id
             union all
             select t.credit_account_id,
                    0, 0,
                    case when t.flow = 'pending' then t.amount
                         when t.flow in ('post_pending', 'void_pending') then -p.amount else 0 end,
                    case when t.flow in ('posted', 'post_pending') then t.amount else 0 end
             from ledger_transfer t left join ledger_transfer p on p.transfer_id = t.pending_id
         ), sums as (
             select account_id, sum(dp)::bigint dp, sum(dpo)::bigint dpo, sum(cp)::bigint cp, sum(cpo)::bigint cpo
             from moves group by account_id
         )
         select a.account_id, a.debits_pending, coalesce(s.dp, 0) as "debits_pending_expected!",
                a.debits_posted, coalesce(s.dpo, 0) as "debits_posted_expected!",
                a.credits_pending, coalesce(s.cp, 0) as "credits_pending_expected!",
                a.credits_posted, coalesce(s.cpo, 0) as "credits_posted_expected!"
         from ledger_account a left join sums s on s.account_id = a.account_id
         where a.debits_pending <> coalesce(s.dp, 0) or a.debits_posted <> coalesce(s.dpo, 0)
            or a.credits_pending <> coalesce(s.cp, 0) or a.credits_posted <> coalesce(s.cpo, 0)"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    for row in drifted {
        findings.push(format!(
            "account {}: counters differ from its transfers: {row:?}",
            row.account_id
        ));
    }

    // 3. No wallet is overdrawn (the CHECK makes this impossible; the audit proves it stayed so).
    let overdrawn: Vec<i64> = sqlx::query_scalar!(
        "select account_id from ledger_account
         where kind = 'wallet' and debits_pending + debits_posted > credits_posted",
    )
    .fetch_all(&mut *tx)
    .await?;
    for account in overdrawn {
        findings.push(format!("wallet account {account} is overdrawn"));
    }

    // 4. Every succeeded transfer operation has exactly its postings: the hold and the fee hold posted once, and
    //    every failed or cancelled one has its holds voided; no hold of a settled operation is left open.
    let open_holds = sqlx::query!(
        "select o.operation_id, o.status from operation o
         join ledger_transfer p on p.operation_id = o.operation_id and p.flow = 'pending'
         where o.status in ('succeeded', 'failed', 'cancelled')
           and not exists (select 1 from ledger_transfer r where r.pending_id = p.transfer_id)",
    )
    .fetch_all(&mut *tx)
    .await?;
    for row in open_holds {
        findings.push(format!(
            "operation {} is {} but still holds funds",
            row.operation_id, row.status
        ));
    }
    let wrong_postings = sqlx::query!(
        r#"select o.operation_id, o.status,
                count(*) filter (where r.flow = 'post_pending') as "posted!",
                count(*) filter (where r.flow = 'void_pending') as "voided!"
         from operation o
         join ledger_transfer p on p.operation_id = o.operation_id and p.flow = 'pending'
         left join ledger_transfer r on r.pending_id = p.transfer_id
         where o.kind = 'transfer' and o.status in ('succeeded', 'failed', 'cancelled')
         group by 1, 2
         having (o.status = 'succeeded' and count(*) filter (where r.flow = 'void_pending') > 0)
             or (o.status <> 'succeeded' and count(*) filter (where r.flow = 'post_pending') > 0)"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    for row in wrong_postings {
        findings.push(format!(
            "operation {} is {} with {} posted and {} voided holds",
            row.operation_id, row.status, row.posted, row.voided
        ));
    }

    // 5. No operation is stuck: every `pending` or `processing` operation has a job that can still finish it
    //    (waiting, running, or failed with attempts left). A payout in `processing` is exempt: the provider has
    //    it, and `payouts.sweep` asks about it again. Operations waiting for a person (`requires_action`,
    //    `requires_approval`) are not stuck.
    let stuck = sqlx::query!(
        r#"with live as (
             select distinct (job_envelope(job) ->> 'operation_id')::uuid as operation_id from apalis.jobs
             where status in ('Pending', 'Queued', 'Running') or (status = 'Failed' and attempts < max_attempts)
         )
         select o.operation_id, o.kind, o.status,
                exists (select 1 from apalis.jobs j
                        where job_envelope(j.job) ->> 'operation_id' = o.operation_id::text) as "had_job!"
         from operation o
         where o.status in ('pending', 'processing')
           and not (o.kind = 'payout' and o.status = 'processing')
           and not exists (select 1 from live where live.operation_id = o.operation_id)"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    for row in stuck {
        let (operation, kind, status) = (row.operation_id, row.kind, row.status);
        let why = if row.had_job {
            "its job is dead (retry it or settle the operation)"
        } else {
            "it has no job"
        };
        findings.push(format!(
            "{kind} operation {operation} is {status} and nothing can finish it: {why}"
        ));
    }

    let accounts: i64 = sqlx::query_scalar!(r#"select count(*) as "count!" from ledger_account"#)
        .fetch_one(&mut *tx)
        .await?;
    let transfers: i64 = sqlx::query_scalar!(r#"select count(*) as "count!" from ledger_transfer"#)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(AuditReport {
        clean: findings.is_empty(),
        findings,
        accounts,
        transfers,
    })
}

/// Runs the audit and records its result.
pub async fn audit_and_record(pool: &PgPool) -> Result<AuditReport, sqlx::Error> {
    let report = audit(pool).await?;
    sqlx::query!(
        "insert into ledger_audit (clean, findings) values ($1, $2)",
        report.clean,
        serde_json::json!({
            "findings": report.findings, "accounts": report.accounts, "transfers": report.transfers
        }),
    )
    .execute(pool)
    .await?;
    if !report.clean {
        tracing::error!(findings = ?report.findings, "ledger audit found broken invariants");
    }
    Ok(report)
}
