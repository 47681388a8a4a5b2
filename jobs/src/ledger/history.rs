//! A user's transaction history: the ledger entries of their wallets, one per movement (a hold and its later
//! posting are one entry whose status follows the hold's fate), with the fee of each outgoing transfer beside it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Entry {
    pub transaction_id: Uuid,
    pub wallet_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub direction: String,
    pub status: String,
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    pub balance_after: i64,
    pub counterparty: String,
    pub operation_id: Option<Uuid>,
    pub narration: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub wallet_id: Option<Uuid>,
    pub kind: Option<String>,
    pub status: Option<String>,
    pub direction: Option<String>,
    pub amount_min: Option<i64>,
    pub amount_max: Option<i64>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Searched in the narration and the operation id.
    pub text: Option<String>,
    pub oldest_first: bool,
    pub starting_after: Option<Uuid>,
    pub ending_before: Option<Uuid>,
    pub limit: i64,
}

/// The outer query's head: the entries' columns, read by name from the rows `ENTRIES_SQL_HEAD` and
/// `ENTRIES_SQL_TAIL` produce.
const ENTRIES_SELECT: &str =
    "select e.transaction_id, e.wallet_id, e.kind, e.direction, e.status, e.amount, e.fee,
    e.currency, e.balance_after, e.counterparty, e.operation_id, e.narration, e.created_at from (";

/// The entries of a user's wallets as rows with every derived column, for filtering in an outer query. The user id
/// goes between `ENTRIES_SQL_HEAD` and `ENTRIES_SQL_TAIL`.
const ENTRIES_SQL_HEAD: &str =
    "with mine as (select wallet_id, account_id from wallet where user_id = ";
const ENTRIES_SQL_TAIL: &str = ")
    select t.transfer_id as transaction_id,
           coalesce(md.wallet_id, mc.wallet_id) as wallet_id,
           t.code as kind,
           case when md.account_id is not null then 'debit' else 'credit' end as direction,
           case when t.flow = 'posted' or r.flow = 'post_pending' then 'posted'
                when r.flow = 'void_pending' then 'voided' else 'pending' end as status,
           coalesce(case when r.flow = 'post_pending' then r.amount end, t.amount) as amount,
           case when md.account_id is null then 0 else coalesce((
               select f.amount from ledger_transfer f
               where f.operation_id = t.operation_id and f.code = 'fee' and f.flow in ('posted', 'pending')
                 and f.debit_account_id = t.debit_account_id), 0) end as fee,
           t.currency,
           case when md.account_id is not null then coalesce(r.debit_balance_after, t.debit_balance_after)
                else coalesce(r.credit_balance_after, t.credit_balance_after) end as balance_after,
           coalesce(ow.account_number, oa.code, '') as counterparty,
           t.operation_id,
           coalesce(tr.narration, '') as narration,
           t.created_at
    from ledger_transfer t
    left join mine md on md.account_id = t.debit_account_id
    left join mine mc on mc.account_id = t.credit_account_id
    left join ledger_transfer r on r.pending_id = t.transfer_id
    left join transfer tr on tr.transfer_id = t.operation_id
    left join ledger_account oa on oa.account_id =
        case when md.account_id is not null then t.credit_account_id else t.debit_account_id end
    left join wallet ow on ow.account_id = oa.account_id
    where t.flow in ('posted', 'pending') and t.code <> 'fee'
      and (md.account_id is not null or mc.account_id is not null)";

pub async fn list(
    pool: &PgPool,
    user_id: Uuid,
    filter: &Filter,
) -> Result<Vec<Entry>, sqlx::Error> {
    let mut builder: QueryBuilder<Postgres> = QueryBuilder::new(ENTRIES_SELECT);
    builder
        .push(ENTRIES_SQL_HEAD)
        .push_bind(user_id)
        .push(ENTRIES_SQL_TAIL);
    builder.push(") e where true");
    if let Some(wallet_id) = filter.wallet_id {
        builder.push(" and e.wallet_id = ").push_bind(wallet_id);
    }
    if let Some(kind) = &filter.kind {
        builder.push(" and e.kind = ").push_bind(kind.clone());
    }
    if let Some(status) = &filter.status {
        builder.push(" and e.status = ").push_bind(status.clone());
    }
    if let Some(direction) = &filter.direction {
        builder
            .push(" and e.direction = ")
            .push_bind(direction.clone());
    }
    if let Some(min) = filter.amount_min {
        builder.push(" and e.amount >= ").push_bind(min);
    }
    if let Some(max) = filter.amount_max {
        builder.push(" and e.amount <= ").push_bind(max);
    }
    if let Some(from) = filter.created_from {
        builder.push(" and e.created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.created_to {
        builder.push(" and e.created_at < ").push_bind(to);
    }
    if let Some(text) = &filter.text {
        let escaped = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        builder
            .push(" and (e.narration ilike ")
            .push_bind(format!("%{escaped}%"))
            .push(" or e.operation_id::text = ")
            .push_bind(text.clone())
            .push(" or e.transaction_id::text = ")
            .push_bind(text.clone())
            .push(")");
    }
    // Ids are UUIDv7: their order is creation order, so they serve as the cursor.
    let (forward_cmp, backward_cmp, order) = if filter.oldest_first {
        (">", "<", "asc")
    } else {
        ("<", ">", "desc")
    };
    if let Some(cursor) = filter.starting_after {
        builder
            .push(format!(" and e.transaction_id {forward_cmp} "))
            .push_bind(cursor);
    }
    if let Some(cursor) = filter.ending_before {
        builder
            .push(format!(" and e.transaction_id {backward_cmp} "))
            .push_bind(cursor);
        // The page just before the cursor: read it in reverse order, then flip it.
        let reverse = if order == "desc" { "asc" } else { "desc" };
        builder
            .push(format!(" order by e.transaction_id {reverse} limit "))
            .push_bind(filter.limit);
        let mut rows: Vec<Entry> = builder.build_query_as().fetch_all(pool).await?;
        rows.reverse();
        return Ok(rows);
    }
    builder
        .push(format!(" order by e.transaction_id {order} limit "))
        .push_bind(filter.limit);
    builder.build_query_as().fetch_all(pool).await
}

pub async fn get(
    pool: &PgPool,
    user_id: Uuid,
    transaction_id: Uuid,
) -> Result<Option<Entry>, sqlx::Error> {
    let mut builder: QueryBuilder<Postgres> = QueryBuilder::new(ENTRIES_SELECT);
    builder
        .push(ENTRIES_SQL_HEAD)
        .push_bind(user_id)
        .push(ENTRIES_SQL_TAIL);
    builder
        .push(") e where e.transaction_id = ")
        .push_bind(transaction_id);
    builder.build_query_as().fetch_optional(pool).await
}
