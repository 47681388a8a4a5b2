//! Fenced completions committed in batches.
//!
//! A run that has nothing of its own to commit but the proof that it ran (an e-mail handed to the mail server) still
//! needs a fenced transaction and a commit, a WAL flush each. [`Completions`] gathers the runs of one process that
//! complete at the same moment and marks them done in one fenced transaction (see
//! [`JobContext::begin_fenced_many`]), together with each one's small [`Effect`], if it has one. A batch that
//! cannot commit as a whole is completed run by run, each alone, so one failing effect changes no other run's
//! outcome.

use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use sqlx::PgConnection;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use super::handler::{JobContext, JobError};

/// The most runs completed in one transaction.
pub const MAX_COMPLETIONS: usize = 256;

/// Batches committing at once. One at a time, every run waited for the batch ahead of it to commit before its own
/// could start, and a queue's throughput was its concurrency divided by two commits' time (measured with the
/// benchmark's no-op drain). The batches hold disjoint job rows, so they never wait on each other's locks.
const BATCHES_IN_FLIGHT: usize = 4;

/// Runs waiting before a batch starts beside one still committing. Fewer wait for that one to finish and go in the
/// next batch together: a commit for every few runs cost the transfers benchmark about a sixth more CPU per transfer
/// (its e-mails trickle in), while a backlog (the no-op drain) still commits in parallel.
const RUNS_FOR_ANOTHER_BATCH: usize = 16;

/// A run's own writes, made in the transaction that completes it. It may run twice (once in a batch that then
/// fails, once alone), never committed twice.
pub type Effect = Arc<
    dyn for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<(), sqlx::Error>> + Send + Sync,
>;

struct Completion {
    ctx: JobContext,
    effect: Option<Effect>,
    reply: oneshot::Sender<Result<(), JobError>>,
}

/// One process's batcher of fenced completions; its task starts with the first completion.
#[derive(Default)]
pub struct Completions {
    sender: OnceLock<mpsc::UnboundedSender<Completion>>,
}

impl Completions {
    /// Marks the run done, with its effect, in the next batch; `LeaseLost` if another worker took the job over.
    pub async fn complete(&self, ctx: JobContext, effect: Option<Effect>) -> Result<(), JobError> {
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(run(receiver));
            sender
        });
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(completion)) =
            sender.send(Completion { ctx, effect, reply })
        {
            // The batching task is gone (its runtime shut down): complete alone.
            return complete_alone(&completion.ctx, completion.effect.as_ref()).await;
        }
        answer.await.unwrap_or_else(|_| {
            Err(JobError::Transient(
                "the completion batch ended without an answer".into(),
            ))
        })
    }
}

/// `first` and whatever else is waiting in `receiver` right now, at most `max` in all.
pub(crate) fn gather<T>(first: T, receiver: &mut mpsc::UnboundedReceiver<T>, max: usize) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < max {
        match receiver.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    batch
}

async fn run(mut receiver: mpsc::UnboundedReceiver<Completion>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let finished = Arc::new(Notify::new());
    let mut waiting: Vec<Completion> = Vec::new();
    loop {
        if waiting.is_empty() {
            match receiver.recv().await {
                Some(first) => waiting.push(first),
                None => return,
            }
        }
        while waiting.len() < MAX_COMPLETIONS {
            match receiver.try_recv() {
                Ok(completion) => waiting.push(completion),
                Err(_) => break,
            }
        }
        let idle = in_flight.available_permits() == BATCHES_IN_FLIGHT;
        if !idle && waiting.len() < RUNS_FOR_ANOTHER_BATCH {
            // Gather until a batch finishes or enough runs wait.
            tokio::select! {
                () = finished.notified() => {}
                completion = receiver.recv() => match completion {
                    Some(completion) => waiting.push(completion),
                    None => return,
                },
            }
            continue;
        }
        let Ok(slot) = Arc::clone(&in_flight).try_acquire_owned() else {
            // Every slot is taken: wait for one, gathering meanwhile.
            finished.notified().await;
            continue;
        };
        let batch = std::mem::take(&mut waiting);
        let finished = Arc::clone(&finished);
        tokio::spawn(async move {
            complete_batch(batch).await;
            drop(slot);
            finished.notify_one();
        });
    }
}

async fn complete_batch(batch: Vec<Completion>) {
    match try_batch(&batch).await {
        Ok(held) => {
            for (completion, held) in batch.into_iter().zip(held) {
                let outcome = if held {
                    completion.ctx.committed.set();
                    Ok(())
                } else {
                    Err(JobError::LeaseLost)
                };
                // A run that stopped waiting (its worker shutting down) needs no answer.
                let _ = completion.reply.send(outcome);
            }
        }
        Err(error) => {
            tracing::info!(%error, size = batch.len(),
                "a completion batch could not commit as a whole; completing its runs one by one");
            futures::future::join_all(batch.into_iter().map(|completion| async move {
                let outcome = complete_alone(&completion.ctx, completion.effect.as_ref()).await;
                if outcome.is_ok() {
                    completion.ctx.committed.set();
                }
                let _ = completion.reply.send(outcome);
            }))
            .await;
        }
    }
}

async fn try_batch(batch: &[Completion]) -> Result<Vec<bool>, JobError> {
    let Some(first) = batch.first() else {
        return Ok(Vec::new());
    };
    let runs: Vec<&JobContext> = batch.iter().map(|completion| &completion.ctx).collect();
    if batch.iter().all(|completion| completion.effect.is_none()) {
        // Nothing to write but the completions: their one statement, committed on its own.
        let mut conn = first.ctx.pool.acquire().await?;
        return JobContext::fence_many(&mut conn, &runs).await;
    }
    let (mut tx, held) = JobContext::begin_fenced_many(&first.ctx.pool, &runs).await?;
    for (completion, held) in batch.iter().zip(&held) {
        if let (true, Some(effect)) = (*held, &completion.effect) {
            effect(&mut tx).await?;
        }
    }
    tx.commit().await?;
    Ok(held)
}

async fn complete_alone(ctx: &JobContext, effect: Option<&Effect>) -> Result<(), JobError> {
    let mut tx = ctx.begin_fenced().await?;
    if let Some(effect) = effect {
        effect(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
