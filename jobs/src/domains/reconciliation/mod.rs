//! Provider reconciliation: each provider's own records for a period compared with ours.
//!
//! For Paystack, its successful charges are compared with our completed deposits (by reference, gross amount)
//! and its successful or reversed transfers with our submitted payouts; for Flutterwave, its successful vends with
//! our completed bill payments. A record only we have is `missing` (at the provider), one only the provider has is
//! `extra`, and one with another amount or outcome is `amount_differs` / `status_differs`. Reports are stored in
//! `reconciliation_report`; the `reconciliation.daily` schedule reconciles yesterday for every provider, and admins
//! run any period on demand.

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::engine::enqueue_to_sqlx;
use crate::engine::{enqueue_tx, Job, JobContext, JobError, NewJob, Queue};
use crate::engine::{scheduler::ScheduleDef, Registry};
use crate::platform::config::Config;
use crate::providers::{ProviderError, ProviderName, Providers, SettlementRecord};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReconciliation {
    pub report_id: Uuid,
}
impl Job for RunReconciliation {
    const KIND: &'static str = "reconciliation.run";
    const QUEUE: Queue = Queue::Reconciliation;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DailyReconciliation {}
impl Job for DailyReconciliation {
    const KIND: &'static str = "reconciliation.daily";
    const QUEUE: Queue = Queue::Reconciliation;
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ReportRow {
    pub report_id: Uuid,
    pub provider: String,
    pub period_from: DateTime<Utc>,
    pub period_to: DateTime<Utc>,
    pub status: String,
    pub requested_by: Option<Uuid>,
    pub matched: i32,
    pub mismatches: serde_json::Value,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mismatch {
    /// missing, extra, amount_differs or status_differs.
    pub kind: String,
    /// deposit, payout or bill_payment.
    pub record: String,
    pub reference: String,
    pub ours: Option<i64>,
    pub theirs: Option<i64>,
    pub detail: String,
}

/// Records a report and enqueues its run.
pub async fn request(
    pool: &PgPool,
    provider: ProviderName,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    requested_by: Option<Uuid>,
) -> Result<ReportRow, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Scheduled reports (no requester) are unique per provider and period: a second request finds the first.
    let inserted = sqlx::query_as!(
        ReportRow,
        "insert into reconciliation_report (report_id, provider, period_from, period_to, requested_by)
         values ($1, $2, $3, $4, $5)
         on conflict (provider, period_from, period_to) where requested_by is null do nothing
         returning report_id, provider, period_from, period_to, status, requested_by, matched, mismatches, error, created_at, finished_at",
        Uuid::now_v7(),
        provider.as_str(),
        from,
        to,
        requested_by,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = inserted else {
        drop(tx);
        return sqlx::query_as!(
            ReportRow,
            "select report_id, provider, period_from, period_to, status, requested_by, matched, mismatches, error, created_at, finished_at
             from reconciliation_report where provider = $1 and period_from = $2 and period_to = $3
               and requested_by is null",
            provider.as_str(),
            from,
            to,
        )
        .fetch_one(pool)
        .await;
    };
    let job = NewJob::new(&RunReconciliation {
        report_id: row.report_id,
    })
    .map_err(enqueue_to_sqlx)?;
    enqueue_tx(&mut tx, job).await.map_err(enqueue_to_sqlx)?;
    tx.commit().await?;
    crate::engine::wake(pool, &[Queue::Reconciliation]).await;
    Ok(row)
}

pub async fn get(pool: &PgPool, report_id: Uuid) -> Result<Option<ReportRow>, sqlx::Error> {
    sqlx::query_as!(
        ReportRow,
        "select report_id, provider, period_from, period_to, status, requested_by, matched, mismatches, error, created_at, finished_at
         from reconciliation_report where report_id = $1",
        report_id,
    )
    .fetch_optional(pool)
    .await
}

pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<ReportRow>, sqlx::Error> {
    sqlx::query_as!(
        ReportRow,
        "select report_id, provider, period_from, period_to, status, requested_by, matched, mismatches, error, created_at, finished_at
         from reconciliation_report order by created_at desc limit $1",
        limit,
    )
    .fetch_all(pool)
    .await
}

/// Compares two sets of records by reference.
pub fn compare(
    record: &str,
    ours: &[SettlementRecord],
    theirs: &[SettlementRecord],
) -> (i32, Vec<Mismatch>) {
    let ours: BTreeMap<&str, &SettlementRecord> =
        ours.iter().map(|r| (r.reference.as_str(), r)).collect();
    let theirs: BTreeMap<&str, &SettlementRecord> =
        theirs.iter().map(|r| (r.reference.as_str(), r)).collect();
    let mut matched = 0;
    let mut mismatches = Vec::new();
    let mismatch =
        |kind: &str, reference: &str, o: Option<i64>, t: Option<i64>, detail: String| Mismatch {
            kind: kind.into(),
            record: record.into(),
            reference: reference.into(),
            ours: o,
            theirs: t,
            detail,
        };
    for (reference, our) in &ours {
        match theirs.get(reference) {
            None => mismatches.push(mismatch(
                "missing",
                reference,
                Some(our.amount_minor),
                None,
                "recorded by PayCore, unknown to the provider".into(),
            )),
            Some(their) if their.amount_minor != our.amount_minor => mismatches.push(mismatch(
                "amount_differs",
                reference,
                Some(our.amount_minor),
                Some(their.amount_minor),
                "the amounts differ".into(),
            )),
            Some(their) if their.status != our.status => mismatches.push(mismatch(
                "status_differs",
                reference,
                Some(our.amount_minor),
                Some(their.amount_minor),
                format!("PayCore has {}, the provider {}", our.status, their.status),
            )),
            Some(_) => matched += 1,
        }
    }
    for (reference, their) in &theirs {
        if !ours.contains_key(reference) {
            mismatches.push(mismatch(
                "extra",
                reference,
                None,
                Some(their.amount_minor),
                "reported by the provider, unknown to PayCore".into(),
            ));
        }
    }
    (matched, mismatches)
}

async fn ours(
    pool: &PgPool,
    sql: &'static str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<SettlementRecord>, sqlx::Error> {
    let rows: Vec<(String, i64, String, String)> = sqlx::query_as(sql)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(reference, amount_minor, currency, status)| SettlementRecord {
                reference,
                amount_minor,
                currency,
                status,
            },
        )
        .collect())
}

async fn reconcile(
    pool: &PgPool,
    providers: &Providers,
    provider: ProviderName,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(i32, Vec<Mismatch>), ReconcileError> {
    let mut matched = 0;
    let mut mismatches = Vec::new();
    match provider {
        ProviderName::Paystack => {
            let their_charges = providers.gateway.settled_charges(from, to).await?;
            let our_deposits = ours(
                pool,
                "select reference, amount, currency, 'success' from deposit
                 where provider = 'paystack' and status = 'completed' and completed_at >= $1 and completed_at < $2",
                from,
                to,
            )
            .await?;
            let (m, mut list) = compare("deposit", &our_deposits, &their_charges);
            matched += m;
            mismatches.append(&mut list);
            let their_transfers = providers.payouts.settled_transfers(from, to).await?;
            let our_payouts = ours(
                pool,
                "select reference, amount, currency, case status when 'reversed' then 'reversed' else 'success' end
                 from payout where provider = 'paystack' and status in ('completed', 'reversed')
                   and submitted_at >= $1 and submitted_at < $2",
                from,
                to,
            )
            .await?;
            let (m, mut list) = compare("payout", &our_payouts, &their_transfers);
            matched += m;
            mismatches.append(&mut list);
        }
        ProviderName::Flutterwave => {
            let their_vends = providers.bills.settled_vends(from, to).await?;
            let our_bills = ours(
                pool,
                "select payment_id::text, amount, currency, 'success' from bill_payment
                 where provider = 'flutterwave' and status = 'completed' and created_at >= $1 and created_at < $2",
                from,
                to,
            )
            .await?;
            let (m, mut list) = compare("bill_payment", &our_bills, &their_vends);
            matched += m;
            mismatches.append(&mut list);
        }
    }
    Ok((matched, mismatches))
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    // Not `transparent`: the sqlx error stays in the source chain, where the api recognises a lost database.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// The `reconciliation.run` handler.
pub async fn run(
    ctx: JobContext,
    job: RunReconciliation,
    providers: Arc<Providers>,
) -> Result<(), JobError> {
    let Some(report) = get(&ctx.pool, job.report_id).await? else {
        return Err(JobError::permanent("report_not_found", "no such report"));
    };
    if report.status != "running" {
        return Ok(());
    }
    let Some(provider) = ProviderName::parse(&report.provider) else {
        return Err(JobError::permanent("unknown_provider", "unknown provider"));
    };
    let result = reconcile(
        &ctx.pool,
        &providers,
        provider,
        report.period_from,
        report.period_to,
    )
    .await;
    let last_attempt = ctx.attempt() >= i32::try_from(ctx.retry_policy.attempts_max).unwrap_or(5);
    let mut tx = ctx.begin_fenced().await?;
    match result {
        Ok((matched, mismatches)) => {
            let status = if mismatches.is_empty() {
                "clean"
            } else {
                "mismatched"
            };
            if !mismatches.is_empty() {
                tracing::warn!(
                    provider = provider.as_str(),
                    count = mismatches.len(),
                    "reconciliation found mismatches"
                );
            }
            sqlx::query!(
                "update reconciliation_report set status = $2, matched = $3, mismatches = $4, finished_at = now()
                 where report_id = $1",
                report.report_id,
                status,
                matched,
                serde_json::to_value(&mismatches).unwrap_or_default(),
            )
            .execute(&mut *tx)
            .await?;
        }
        Err(error) if !last_attempt => {
            drop(tx);
            return Err(JobError::transient(error));
        }
        Err(error) => {
            sqlx::query!(
                "update reconciliation_report set status = 'failed', error = left($2, 1000), finished_at = now()
                 where report_id = $1",
                report.report_id,
                error.to_string(),
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The `reconciliation.daily` handler: yesterday (UTC), every provider.
pub async fn daily(ctx: JobContext, _: DailyReconciliation) -> Result<(), JobError> {
    let today = Utc::now().date_naive();
    let to = Utc
        .from_local_datetime(&today.and_hms_opt(0, 0, 0).unwrap_or_default())
        .single()
        .unwrap_or_else(Utc::now);
    let from = to - Duration::days(1);
    for provider in ProviderName::ALL {
        request(&ctx.pool, provider, from, to, None).await?;
    }
    Ok(())
}

/// Adds the reconciliation domain's job kinds: one provider's report, and the daily run over every provider.
pub fn register(registry: &mut Registry, _: &Arc<Config>, providers: &Arc<Providers>) {
    registry
        .register::<DailyReconciliation, _, _>(daily)
        .register_with::<RunReconciliation, _, _, _>(Arc::clone(providers), run);
}

/// The reconciliation domain's schedules.
pub fn schedules() -> Vec<ScheduleDef> {
    vec![ScheduleDef::of::<DailyReconciliation>(
        "reconciliation.daily",
        "0 30 1 * * *",
    )]
}
