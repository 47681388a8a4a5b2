//! Settling a transfer: posting its holds, or voiding them when it was rejected or expired, with the parties told.
//! The batcher (`batch`) settles many at once; `settle_one` is what it falls back to for one transfer alone.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::types::*;
use crate::engine::{JobContext, JobError};
use crate::ledger::{self, Flow, NewTransfer};
use crate::money::{Amount, Currency};
use crate::notify;
use crate::operation;

/// Everything settling these transfers needs, in one round trip: the transfers, their operations' status, both
/// accounts, the fee hold's account and both parties.
pub(super) async fn settlings(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Settling>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select t.transfer_id, t.from_wallet_id, t.to_wallet_id, t.amount, t.fee, t.currency, t.narration, t.mode,
                t.status, t.hold_id, t.fee_hold_id, t.expires_at, t.decided_at, t.created_at, t.updated_at,
                o.status as operation_status, fw.account_id as from_account, tw.account_id as to_account,
                fl.credit_account_id as "fee_account?",
                su.user_id as sender_id, su.full_name as sender_name, ru.user_id as recipient_id,
                ru.full_name as recipient_name, tw.account_number as recipient_account
         from transfer t
         join operation o on o.operation_id = t.transfer_id
         join wallet fw on fw.wallet_id = t.from_wallet_id join app_user su on su.user_id = fw.user_id
         join wallet tw on tw.wallet_id = t.to_wallet_id join app_user ru on ru.user_id = tw.user_id
         left join ledger_transfer fl on fl.transfer_id = t.fee_hold_id
         where t.transfer_id = any($1)"#,
        ids,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Settling {
            transfer: TransferRow {
                transfer_id: r.transfer_id,
                from_wallet_id: r.from_wallet_id,
                to_wallet_id: r.to_wallet_id,
                amount: r.amount,
                fee: r.fee,
                currency: r.currency,
                narration: r.narration,
                mode: r.mode,
                status: r.status,
                hold_id: r.hold_id,
                fee_hold_id: r.fee_hold_id,
                expires_at: r.expires_at,
                decided_at: r.decided_at,
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
            operation_status: r.operation_status,
            from_account: r.from_account,
            to_account: r.to_account,
            fee_account: r.fee_account,
            parties: Parties {
                sender_id: r.sender_id,
                sender_name: r.sender_name,
                recipient_id: r.recipient_id,
                recipient_name: r.recipient_name,
                recipient_account: r.recipient_account,
            },
        })
        .collect())
}

/// Settles one transfer in its own fenced transaction: what a batch falls back to when it cannot commit as a whole.
pub(super) async fn settle_one(
    ctx: &JobContext,
    transfer_id: Uuid,
    config: &crate::platform::config::Config,
) -> Result<(), JobError> {
    let Some(settling) = settlings(&ctx.pool, &[transfer_id]).await?.pop() else {
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
    let status = sqlx::query_scalar!(
        "select status from transfer where transfer_id = $1 for update",
        row.transfer_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let Some(post) = posts(&status) else {
        return Ok(());
    };
    let moves = settling.moves(post)?;
    // The bookkeeping first and the ledger last: the accounts' row locks, which concurrent transfers of the same
    // wallets queue on, are then held only from the posting to the commit.
    let final_status = if post { "completed" } else { status.as_str() };
    sqlx::query!(
        "update transfer set status = $2, updated_at = now() where transfer_id = $1",
        row.transfer_id,
        final_status,
    )
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
pub(super) fn posts(status: &str) -> Option<bool> {
    match status {
        "processing" | "accepted" => Some(true),
        "rejected" | "expired" => Some(false),
        _ => None,
    }
}

/// The failure of an operation whose transfer was voided in `status`.
pub(super) fn void_failure(status: &str) -> (&'static str, &'static str) {
    if status == "rejected" {
        ("transfer_rejected", "the recipient rejected the transfer")
    } else {
        ("transfer_expired", "the recipient did not answer in time")
    }
}

pub(super) async fn post_moves_tx(
    tx: &mut PgConnection,
    moves: &[NewTransfer],
) -> Result<(), JobError> {
    match ledger::post_tx(tx, moves).await {
        Ok(_) => Ok(()),
        Err(error) if error.is_retryable() => Err(JobError::transient(error)),
        Err(error) => Err(JobError::permanent("ledger_rejected", error.to_string())),
    }
}

/// A transfer with what settling it needs.
pub(super) struct Settling {
    pub(super) transfer: TransferRow,
    pub(super) operation_status: String,
    pub(super) from_account: i64,
    pub(super) to_account: i64,
    pub(super) fee_account: Option<i64>,
    pub(super) parties: Parties,
}

impl Settling {
    pub(super) fn is_settled(&self) -> bool {
        operation::OperationStatus::parse(&self.operation_status)
            .is_some_and(operation::OperationStatus::is_terminal)
    }

    /// The ledger moves that post (or void) this transfer's holds.
    pub(super) fn moves(&self, post: bool) -> Result<Vec<NewTransfer>, JobError> {
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
pub(super) struct Parties {
    pub(super) sender_id: Uuid,
    pub(super) sender_name: String,
    pub(super) recipient_id: Uuid,
    pub(super) recipient_name: String,
    pub(super) recipient_account: String,
}

pub(super) async fn parties_tx(
    tx: &mut PgConnection,
    row: &TransferRow,
) -> Result<Parties, sqlx::Error> {
    sqlx::query_as!(
        Parties,
        "select su.user_id as sender_id, su.full_name as sender_name, ru.user_id as recipient_id,
                ru.full_name as recipient_name, rw.account_number as recipient_account
         from wallet sw join app_user su on su.user_id = sw.user_id,
              wallet rw join app_user ru on ru.user_id = rw.user_id
         where sw.wallet_id = $1 and rw.wallet_id = $2",
        row.from_wallet_id,
        row.to_wallet_id,
    )
    .fetch_one(&mut *tx)
    .await
}

/// Tells both sides of posted transfers.
pub(super) async fn notify_settled_tx(
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
