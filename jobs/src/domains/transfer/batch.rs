//! Settling transfers in batches.
//!
//! Settling one transfer is one fenced transaction: it locks the job, the transfer and both wallets' accounts,
//! writes the operation, the notifications and the ledger, and commits (a WAL flush). Settled one by one, the
//! worker paid that whole round of statements and a commit per transfer, and PostgreSQL's CPU was what bounded
//! throughput. The batcher gathers the `transfer.settle` runs that are waiting at the same moment in this process
//! (at most [`MAX_BATCH`]) and settles them in one fenced transaction: one lease check for all their jobs, one
//! status read, one update of the transfers, the operations and the inbox each, one ledger posting (each account's
//! counters updated once however many of the transfers touch it) and one commit.
//!
//! A run whose lease was lost is left out (`LeaseLost`, as alone). When the batch cannot commit as a whole (a
//! posting the ledger rejects, a deadlock, a transfer that cannot be settled), nothing of it is kept and its
//! transfers are settled one by one, so one bad transfer neither holds up nor changes the others' outcome.

use std::sync::{Arc, OnceLock};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::settle::{
    notify_settled_tx, post_moves_tx, posts, settle_one, settlings, void_failure, Settling,
};
use super::types::SettleTransfer;
use crate::engine::{JobContext, JobError};
use crate::notify;
use crate::operation;
use crate::platform::config::Config;

/// The most settlements committed together. Larger batches lock more accounts at once, and the api's holds on
/// those accounts wait for the batch's commit.
pub const MAX_BATCH: usize = 64;

/// One waiting `transfer.settle` run.
struct Request {
    ctx: JobContext,
    transfer_id: Uuid,
    reply: oneshot::Sender<Result<(), JobError>>,
}

/// Gathers a worker process's concurrent settlements into batches. Its task starts with the first settlement.
pub struct SettleBatcher {
    config: Arc<Config>,
    sender: OnceLock<mpsc::UnboundedSender<Request>>,
}

impl SettleBatcher {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            config,
            sender: OnceLock::new(),
        }
    }

    /// Settles `transfer_id` in the next batch and returns this run's outcome.
    pub async fn settle(&self, ctx: JobContext, transfer_id: Uuid) -> Result<(), JobError> {
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(run(receiver, Arc::clone(&self.config)));
            sender
        });
        let (reply, answer) = oneshot::channel();
        let request = Request {
            ctx,
            transfer_id,
            reply,
        };
        if let Err(mpsc::error::SendError(request)) = sender.send(request) {
            // The batching task is gone (its runtime shut down): settle alone.
            return settle_one(&request.ctx, transfer_id, &self.config).await;
        }
        answer.await.unwrap_or_else(|_| {
            Err(JobError::Transient(
                "the settlement batch ended without an answer".into(),
            ))
        })
    }
}

/// The batching task: takes whatever settlements are waiting, settles them together, and again.
async fn run(mut receiver: mpsc::UnboundedReceiver<Request>, config: Arc<Config>) {
    while let Some(first) = receiver.recv().await {
        let batch = crate::engine::batch::gather(first, &mut receiver, MAX_BATCH);
        settle_batch(batch, &config).await;
    }
}

async fn settle_batch(batch: Vec<Request>, config: &Config) {
    let Some(pool) = batch.first().map(|request| request.ctx.pool.clone()) else {
        return;
    };
    match try_batch(&pool, &batch, config).await {
        Ok(outcomes) => {
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                // A run that stopped waiting (its worker shutting down) needs no answer.
                let _ = request.reply.send(outcome);
            }
        }
        Err(error) => {
            tracing::info!(%error, size = batch.len(),
                "a settlement batch could not commit as a whole; settling its transfers one by one");
            futures::future::join_all(batch.into_iter().map(|request| async move {
                let outcome = settle_one(&request.ctx, request.transfer_id, config).await;
                let _ = request.reply.send(outcome);
            }))
            .await;
        }
    }
}

/// Settles the batch in one fenced transaction and returns each run's outcome, in order; an error means nothing
/// was committed.
async fn try_batch(
    pool: &PgPool,
    batch: &[Request],
    config: &Config,
) -> Result<Vec<Result<(), JobError>>, JobError> {
    let ids: Vec<Uuid> = batch.iter().map(|request| request.transfer_id).collect();
    let settlings = settlings(pool, &ids).await?;
    let mut outcomes: Vec<Option<Result<(), JobError>>> = batch.iter().map(|_| None).collect();
    let mut open: Vec<(usize, &Settling)> = Vec::new();
    for (index, request) in batch.iter().enumerate() {
        let settling = settlings
            .iter()
            .find(|s| s.transfer.transfer_id == request.transfer_id);
        match settling {
            None => {
                outcomes[index] = Some(Err(JobError::permanent(
                    "transfer_not_found",
                    "no such transfer",
                )))
            }
            // Already settled by an earlier run: settling is idempotent.
            Some(settling) if settling.is_settled() => outcomes[index] = Some(Ok(())),
            Some(settling) => open.push((index, settling)),
        }
    }
    if !open.is_empty() {
        settle_open(pool, batch, &open, &mut outcomes, config).await?;
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Ok(())))
        .collect())
}

/// The fenced part of [`try_batch`]: settles the open transfers whose runs still hold their leases.
async fn settle_open(
    pool: &PgPool,
    batch: &[Request],
    open: &[(usize, &Settling)],
    outcomes: &mut [Option<Result<(), JobError>>],
    config: &Config,
) -> Result<(), JobError> {
    let runs: Vec<&JobContext> = open.iter().map(|(index, _)| &batch[*index].ctx).collect();
    let (mut tx, held) = JobContext::begin_fenced_many(pool, &runs).await?;
    let mut leased: Vec<(usize, &Settling)> = Vec::with_capacity(open.len());
    for (&(index, settling), held) in open.iter().zip(held) {
        if held {
            leased.push((index, settling));
        } else {
            outcomes[index] = Some(Err(JobError::LeaseLost));
        }
    }
    if leased.is_empty() {
        return Ok(());
    }
    // Lock the transfers (in id order) and read their status again inside the fenced transaction.
    let leased_ids: Vec<Uuid> = leased.iter().map(|(_, s)| s.transfer.transfer_id).collect();
    let statuses: Vec<(Uuid, String)> = sqlx::query!(
        "select transfer_id, status from transfer where transfer_id = any($1) order by transfer_id for update",
        &leased_ids,
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|row| (row.transfer_id, row.status))
    .collect();
    let mut settled: Vec<(&Settling, bool, &str)> = Vec::with_capacity(leased.len());
    for &(index, settling) in &leased {
        let status = statuses
            .iter()
            .find(|(id, _)| *id == settling.transfer.transfer_id)
            .map(|(_, status)| status.as_str())
            .unwrap_or_default();
        outcomes[index] = Some(Ok(()));
        if let Some(post) = posts(status) {
            settled.push((settling, post, status));
        }
    }
    let committed = |batch: &[Request]| {
        for (index, _) in &leased {
            batch[*index].ctx.committed.set();
        }
    };
    if settled.is_empty() {
        tx.commit().await?;
        committed(batch);
        return Ok(());
    }
    let mut moves = Vec::with_capacity(settled.len() * 2);
    for (settling, post, _) in &settled {
        moves.extend(settling.moves(*post)?);
    }
    // The bookkeeping first and the ledger last, as when settling one (the accounts' locks are held the least).
    let final_status = |post: bool, status: &str| {
        if post {
            "completed".to_owned()
        } else {
            status.to_owned()
        }
    };
    let settled_ids: Vec<Uuid> = settled
        .iter()
        .map(|(s, _, _)| s.transfer.transfer_id)
        .collect();
    let settled_statuses: Vec<String> = settled
        .iter()
        .map(|(_, post, status)| final_status(*post, status))
        .collect();
    sqlx::query!(
        "update transfer t set status = u.status, updated_at = now()
         from unnest($1::uuid[], $2::text[]) as u(transfer_id, status) where t.transfer_id = u.transfer_id",
        &settled_ids,
        &settled_statuses,
    )
    .execute(&mut *tx)
    .await?;
    let posted: Vec<&Settling> = settled
        .iter()
        .filter(|(_, post, _)| *post)
        .map(|(s, _, _)| *s)
        .collect();
    let results: Vec<(Uuid, serde_json::Value)> = posted
        .iter()
        .map(|s| {
            let id = s.transfer.transfer_id;
            (id, serde_json::json!({"transfer_id": id}))
        })
        .collect();
    operation::succeed_many_tx(&mut tx, &results).await?;
    for (settling, _, status) in settled.iter().filter(|(_, post, _)| !*post) {
        let (code, message) = void_failure(status);
        operation::fail_tx(&mut tx, settling.transfer.transfer_id, code, message).await?;
    }
    if !posted.is_empty() {
        notify_settled_tx(&mut tx, &posted).await?;
    }
    post_moves_tx(&mut tx, &moves).await?;
    let debits: Vec<(Uuid, i64)> = posted
        .iter()
        .map(|s| {
            let row = &s.transfer;
            (row.from_wallet_id, row.amount.saturating_add(row.fee))
        })
        .collect();
    if !debits.is_empty() {
        crate::notify::low_balance_many_tx(
            &mut tx,
            &debits,
            config.notifications.low_balance_threshold_minor,
        )
        .await?;
    }
    tx.commit().await?;
    committed(batch);
    let announced: Vec<Uuid> = settled
        .iter()
        .map(|(s, _, _)| s.transfer.transfer_id)
        .collect();
    notify::announce_for_operations(pool, &announced).await;
    Ok(())
}

/// The `transfer.settle` handler: settlements run in batches (see [`SettleBatcher`]).
pub async fn settle(
    ctx: JobContext,
    job: SettleTransfer,
    batcher: std::sync::Arc<SettleBatcher>,
) -> Result<(), JobError> {
    batcher.settle(ctx, job.transfer_id).await
}
