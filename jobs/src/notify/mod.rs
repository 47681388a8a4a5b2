//! Notifications (docs/architecture.md §7): the events that tell people what happened, on the channels they chose.
//!
//! `notify_tx` runs in the transaction of the event that causes the notification, so a notification exists if and
//! only if its event committed: it writes the in-app inbox row and enqueues the e-mail (`email.send`) and push
//! (`push.send`, one job per device) jobs. Channels follow the user's preferences, except that security mail
//! (verification and sign-in codes, password resets, new-device sign-ins) is always sent. After the commit,
//! `announce_*` tells the real-time stream (`paycore_notification`) and wakes the e-mail workers.

pub mod email;
pub mod push;
pub mod sealed;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::engine::batch::Completions;
use crate::engine::scheduler::ScheduleDef;
use crate::engine::{enqueue_many_tx, Job, JobContext, JobError, NewJob, Queue, Registry};
use crate::money::Currency;
use crate::platform::config::Config;

/// The Postgres channel that carries new notifications (`{"notification_id", "user_id", "kind"}`).
pub const NOTIFICATION_CHANNEL: &str = "paycore_notification";

/// "NGN 5,000.00": amounts in e-mail subjects and push texts stay ASCII.
pub fn format_money(minor: i64, currency: &str) -> String {
    let exponent = currency
        .parse::<Currency>()
        .map(|c| c.exponent())
        .unwrap_or(2);
    let scale = 10_u64.pow(exponent);
    let abs = minor.unsigned_abs();
    let whole = (abs / scale).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if minor < 0 { "-" } else { "" };
    if exponent == 0 {
        format!("{currency} {sign}{grouped}")
    } else {
        format!(
            "{currency} {sign}{grouped}.{:0width$}",
            abs % scale,
            width = exponent as usize
        )
    }
}

/// Something that happened that a user should hear about.
#[derive(Debug, Clone)]
pub enum Event {
    // Codes are sealed before they reach an event: the event becomes job arguments, which admins can read.
    EmailVerification {
        code: sealed::SealedSecret,
        minutes: i64,
    },
    LoginCode {
        code: sealed::SealedSecret,
        minutes: i64,
    },
    PasswordReset {
        code: sealed::SealedSecret,
        minutes: i64,
    },
    NewDevice {
        ip: String,
        user_agent: String,
        at: DateTime<Utc>,
    },
    /// The password was changed (signed in) or reset (with an e-mailed code).
    PasswordChanged {
        /// `changed` or `reset`.
        how: &'static str,
        at: DateTime<Utc>,
    },
    /// Someone tried to register a new account with this account's e-mail address or phone number.
    RegistrationAttempt {
        /// `e-mail address` or `phone number`.
        what: &'static str,
        at: DateTime<Utc>,
    },
    TransferSent {
        amount: i64,
        fee: i64,
        currency: String,
        counterparty: String,
        reference: Uuid,
    },
    TransferReceived {
        amount: i64,
        currency: String,
        counterparty: String,
        reference: Uuid,
    },
    TransferAwaitingAcceptance {
        amount: i64,
        currency: String,
        counterparty: String,
        expires_at: Option<DateTime<Utc>>,
        reference: Uuid,
    },
    DepositCredited {
        amount: i64,
        fee: i64,
        currency: String,
        reference: Uuid,
    },
    PayoutResult {
        /// completed, failed or reversed.
        status: &'static str,
        amount: i64,
        fee: i64,
        account_name: String,
        bank_name: String,
        reason: Option<String>,
        reference: Uuid,
    },
    BillReceipt {
        /// completed or failed.
        status: &'static str,
        biller: String,
        customer_id: String,
        amount: i64,
        fee: i64,
        token: Option<String>,
        units: Option<String>,
        reason: Option<String>,
        reference: Uuid,
    },
    LowBalance {
        available: i64,
        currency: String,
        threshold: i64,
    },
}

impl Event {
    /// The stable name of the event, its template, and the inbox row's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::EmailVerification { .. } => "email_verification",
            Event::LoginCode { .. } => "login_code",
            Event::PasswordReset { .. } => "password_reset",
            Event::NewDevice { .. } => "new_device",
            Event::PasswordChanged { .. } => "password_changed",
            Event::RegistrationAttempt { .. } => "registration_attempt",
            Event::TransferSent { .. } => "transfer_sent",
            Event::TransferReceived { .. } => "transfer_received",
            Event::TransferAwaitingAcceptance { .. } => "transfer_awaiting_acceptance",
            Event::DepositCredited { .. } => "deposit_credited",
            Event::PayoutResult { .. } => "payout_result",
            Event::BillReceipt { .. } => "bill_receipt",
            Event::LowBalance { .. } => "low_balance",
        }
    }

    /// Security mail is sent whatever the preferences say.
    pub fn is_security(&self) -> bool {
        matches!(
            self,
            Event::EmailVerification { .. }
                | Event::LoginCode { .. }
                | Event::PasswordReset { .. }
                | Event::NewDevice { .. }
                | Event::PasswordChanged { .. }
                | Event::RegistrationAttempt { .. }
        )
    }

    /// Codes go by e-mail only (never into an inbox or a lock screen).
    fn email_only(&self) -> bool {
        matches!(
            self,
            Event::EmailVerification { .. } | Event::LoginCode { .. } | Event::PasswordReset { .. }
        )
    }

    /// The template context (the recipient's `name` is added when sending).
    pub fn context(&self) -> serde_json::Value {
        let money = format_money;
        match self {
            Event::EmailVerification { code, minutes }
            | Event::LoginCode { code, minutes }
            | Event::PasswordReset { code, minutes } => {
                json!({sealed::SEALED_CODE_FIELD: code.as_str(), "minutes": minutes})
            }
            Event::NewDevice { ip, user_agent, at } => {
                json!({"ip": ip, "user_agent": user_agent, "at": at.format("%Y-%m-%d %H:%M UTC").to_string()})
            }
            Event::PasswordChanged { how, at } => {
                json!({"how": how, "at": at.format("%Y-%m-%d %H:%M UTC").to_string()})
            }
            Event::RegistrationAttempt { what, at } => {
                json!({"what": what, "at": at.format("%Y-%m-%d %H:%M UTC").to_string()})
            }
            Event::TransferSent {
                amount,
                fee,
                currency,
                counterparty,
                reference,
            } => json!({"amount": money(*amount, currency), "fee": money(*fee, currency),
                         "counterparty": counterparty, "reference": reference}),
            Event::TransferReceived {
                amount,
                currency,
                counterparty,
                reference,
            } => json!({"amount": money(*amount, currency), "counterparty": counterparty,
                         "reference": reference}),
            Event::TransferAwaitingAcceptance {
                amount,
                currency,
                counterparty,
                expires_at,
                reference,
            } => json!({"amount": money(*amount, currency), "counterparty": counterparty,
                         "expires_at": expires_at.map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string()),
                         "reference": reference}),
            Event::DepositCredited {
                amount,
                fee,
                currency,
                reference,
            } => json!({"amount": money(*amount, currency), "fee": money(*fee, currency),
                         "credited": money(amount - fee, currency), "reference": reference}),
            Event::PayoutResult {
                status,
                amount,
                fee,
                account_name,
                bank_name,
                reason,
                reference,
            } => {
                json!({"status": status, "amount": money(*amount, "NGN"), "fee": money(*fee, "NGN"),
                         "account_name": account_name, "bank_name": bank_name, "reason": reason,
                         "reference": reference})
            }
            Event::BillReceipt {
                status,
                biller,
                customer_id,
                amount,
                fee,
                token,
                units,
                reason,
                reference,
            } => json!({"status": status, "biller": biller, "customer_id": customer_id,
                         "amount": money(*amount, "NGN"), "fee": money(*fee, "NGN"), "token": token,
                         "units": units, "reason": reason, "reference": reference}),
            Event::LowBalance {
                available,
                currency,
                threshold,
            } => json!({"available": money(*available, currency), "currency": currency,
                         "threshold": money(*threshold, currency)}),
        }
    }

    /// The inbox and push title and body.
    fn title_and_body(&self) -> (String, String) {
        let c = self.context();
        let s = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
        match self {
            Event::EmailVerification { .. }
            | Event::LoginCode { .. }
            | Event::PasswordReset { .. } => (String::new(), String::new()),
            Event::NewDevice { .. } => (
                "New sign-in".into(),
                format!(
                    "Your account was signed in to from {} ({}).",
                    s("user_agent"),
                    s("ip")
                ),
            ),
            Event::PasswordChanged { .. } => (
                "Password changed".into(),
                format!("Your password was {} at {}.", s("how"), s("at")),
            ),
            Event::RegistrationAttempt { .. } => (
                "Registration attempt".into(),
                format!(
                    "Someone tried to register a new account with your {} at {}.",
                    s("what"),
                    s("at")
                ),
            ),
            Event::TransferSent { .. } => (
                "Transfer sent".into(),
                format!("You sent {} to {}.", s("amount"), s("counterparty")),
            ),
            Event::TransferReceived { .. } => (
                "Money received".into(),
                format!("You received {} from {}.", s("amount"), s("counterparty")),
            ),
            Event::TransferAwaitingAcceptance { .. } => (
                "Transfer awaiting you".into(),
                format!(
                    "{} sent you {}. Accept or reject it.",
                    s("counterparty"),
                    s("amount")
                ),
            ),
            Event::DepositCredited { .. } => (
                "Deposit received".into(),
                format!("{} was credited to your wallet.", s("credited")),
            ),
            Event::PayoutResult { status, .. } => match *status {
                "completed" => (
                    "Payout sent".into(),
                    format!("{} was sent to {}.", s("amount"), s("account_name")),
                ),
                "reversed" => (
                    "Payout returned".into(),
                    format!("Your payout of {} was returned and refunded.", s("amount")),
                ),
                _ => (
                    "Payout failed".into(),
                    format!("Your payout of {} failed: {}", s("amount"), s("reason")),
                ),
            },
            Event::BillReceipt { status, token, .. } => match (*status, token) {
                ("completed", Some(token)) => (
                    format!("{} receipt", s("biller")),
                    format!("{} paid. Token: {token}", s("amount")),
                ),
                ("completed", None) => (
                    format!("{} receipt", s("biller")),
                    format!("{} paid for {}.", s("amount"), s("customer_id")),
                ),
                _ => (
                    format!("{} payment failed", s("biller")),
                    format!(
                        "{} for {} failed: {}",
                        s("amount"),
                        s("customer_id"),
                        s("reason")
                    ),
                ),
            },
            Event::LowBalance { .. } => (
                "Low balance".into(),
                format!("Your {} wallet has {} left.", s("currency"), s("available")),
            ),
        }
    }
}

struct Recipient {
    user_id: Uuid,
    email: String,
    full_name: String,
    notify_email: bool,
    notify_push: bool,
    notify_in_app: bool,
    devices: Vec<Uuid>,
}

/// Records and enqueues the notifications of `event` for `user_id`, in the event's own transaction. Returns the
/// inbox row's id when one was written.
pub async fn notify_tx(
    tx: &mut PgConnection,
    user_id: Uuid,
    event: &Event,
    operation_id: Option<Uuid>,
) -> Result<Option<Uuid>, sqlx::Error> {
    let ids = notify_many_tx(tx, &[(user_id, event, operation_id)]).await?;
    Ok(ids.into_iter().next().flatten())
}

/// [`notify_tx`] for several (recipient, event, operation) at once, in three statements whatever their number:
/// the recipients' preferences and devices, the inbox rows, the e-mail and push jobs. Returns each one's inbox
/// row id, in order.
pub async fn notify_many_tx(
    tx: &mut PgConnection,
    items: &[(Uuid, &Event, Option<Uuid>)],
) -> Result<Vec<Option<Uuid>>, sqlx::Error> {
    let user_ids: Vec<Uuid> = items.iter().map(|(user_id, _, _)| *user_id).collect();
    let recipients: Vec<Recipient> = sqlx::query_as!(
        Recipient,
        r#"select user_id, email, full_name, notify_email, notify_push, notify_in_app,
                coalesce((select array_agg(device_id) from push_device d where d.user_id = u.user_id), '{}') as "devices!"
         from app_user u where user_id = any($1)"#,
        &user_ids,
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut jobs = Vec::new();
    let mut emails = Vec::new();
    let mut inbox = InboxRows::default();
    let mut ids = Vec::with_capacity(items.len());
    for (user_id, event, operation_id) in items {
        let Some(recipient) = recipients.iter().find(|r| r.user_id == *user_id) else {
            ids.push(None);
            continue;
        };
        let mut context = event.context();
        context["name"] = json!(recipient.full_name);
        if event.is_security() || recipient.notify_email {
            emails.push(email::SendEmail {
                to: recipient.email.clone(),
                template: event.kind().to_owned(),
                context,
            });
        }
        if event.email_only() {
            ids.push(None);
            continue;
        }
        let (title, body) = event.title_and_body();
        let data = json!({"kind": event.kind(), "operation_id": operation_id});
        if recipient.notify_in_app {
            let id = Uuid::now_v7();
            inbox.notification_id.push(id);
            inbox.user_id.push(*user_id);
            inbox.kind.push(event.kind());
            inbox.title.push(title.clone());
            inbox.body.push(body.clone());
            inbox.data.push(data.clone());
            inbox.operation_id.push(*operation_id);
            ids.push(Some(id));
        } else {
            ids.push(None);
        }
        if recipient.notify_push {
            for device_id in &recipient.devices {
                jobs.push(
                    NewJob::new(&push::SendPush {
                        device_id: *device_id,
                        title: title.clone(),
                        body: body.clone(),
                        data: data.clone(),
                    })
                    .map_err(crate::engine::enqueue_to_sqlx)?,
                );
            }
        }
    }
    if !inbox.notification_id.is_empty() {
        // `as _` where the macro's check knows no array of `&str` or of nullable elements; the casts type them.
        sqlx::query!(
            "insert into notification (notification_id, user_id, kind, title, body, data, operation_id)
             select n.notification_id, n.user_id, n.kind, n.title, n.body, n.data, n.operation_id
             from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::uuid[])
                 as n(notification_id, user_id, kind, title, body, data, operation_id)",
            &inbox.notification_id,
            &inbox.user_id,
            &inbox.kind as _,
            &inbox.title,
            &inbox.body,
            &inbox.data,
            &inbox.operation_id as _,
        )
        .execute(&mut *tx)
        .await?;
    }
    // One message is an `email.send` job; more (both sides of a settlement batch) go in `email.send_many` jobs.
    if let [message] = emails.as_slice() {
        jobs.push(NewJob::new(message).map_err(crate::engine::enqueue_to_sqlx)?);
    } else {
        // Moved into their jobs in chunks, not cloned.
        let mut rest = emails;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(email::MESSAGES_PER_JOB));
            let messages = std::mem::replace(&mut rest, tail);
            jobs.push(
                NewJob::new(&email::SendEmails { messages })
                    .map_err(crate::engine::enqueue_to_sqlx)?,
            );
        }
    }
    if !jobs.is_empty() {
        enqueue_many_tx(tx, jobs)
            .await
            .map_err(crate::engine::enqueue_to_sqlx)?;
    }
    Ok(ids)
}

/// The columns of new inbox rows.
#[derive(Default)]
struct InboxRows {
    notification_id: Vec<Uuid>,
    user_id: Vec<Uuid>,
    kind: Vec<&'static str>,
    title: Vec<String>,
    body: Vec<String>,
    data: Vec<serde_json::Value>,
    operation_id: Vec<Option<Uuid>>,
}

/// Warns the wallet's owner when a debit of `debited` took its available balance below the threshold (once per
/// crossing), in the debit's transaction.
pub async fn low_balance_tx(
    tx: &mut PgConnection,
    wallet_id: Uuid,
    debited: i64,
    threshold: i64,
) -> Result<(), sqlx::Error> {
    low_balance_many_tx(tx, &[(wallet_id, debited)], threshold).await
}

/// [`low_balance_tx`] for several debits (a wallet may appear more than once), in one read and at most one
/// [`notify_many_tx`].
pub async fn low_balance_many_tx(
    tx: &mut PgConnection,
    debits: &[(Uuid, i64)],
    threshold: i64,
) -> Result<(), sqlx::Error> {
    let mut debited: std::collections::BTreeMap<Uuid, i64> = std::collections::BTreeMap::new();
    for (wallet_id, amount) in debits {
        let total = debited.entry(*wallet_id).or_default();
        *total = total.saturating_add(*amount);
    }
    let wallet_ids: Vec<Uuid> = debited.keys().copied().collect();
    let rows = sqlx::query!(
        r#"select w.wallet_id, w.user_id, w.currency,
                  a.credits_posted - a.debits_posted - a.debits_pending as "available!"
         from wallet w join ledger_account a on a.account_id = w.account_id where w.wallet_id = any($1)"#,
        &wallet_ids,
    )
    .fetch_all(&mut *tx)
    .await?;
    let events: Vec<(Uuid, Event)> = rows
        .into_iter()
        .map(|row| (row.wallet_id, row.user_id, row.currency, row.available))
        .filter_map(|(wallet_id, user_id, currency, available)| {
            let debited = debited.get(&wallet_id).copied().unwrap_or(0);
            (available < threshold && available.saturating_add(debited) >= threshold).then_some((
                user_id,
                Event::LowBalance {
                    available,
                    currency,
                    threshold,
                },
            ))
        })
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let items: Vec<(Uuid, &Event, Option<Uuid>)> = events
        .iter()
        .map(|(user_id, event)| (*user_id, event, None))
        .collect();
    notify_many_tx(tx, &items).await?;
    Ok(())
}

/// Which unannounced notifications to announce.
enum Announce<'a> {
    Operations(&'a [Uuid]),
    User(Uuid),
}

/// After a commit: tells the real-time streams about the operations' new status (`paycore_operation`, for
/// `Announce::Operations`) and about notifications not announced yet (`paycore_notification`), and wakes the
/// workers of the `wake` queues. Failures are logged: the inbox still has the rows, waiting requests re-read their
/// operation, and workers poll.
///
/// All of it is one statement, because each notifying transaction takes PostgreSQL's one notify lock for the
/// database: with a transaction per notice, settling a transfer queued three times for that lock, and on two
/// cores a descheduled holder stalled everyone. The statement also marks notifications announced, and a
/// transaction that writes and notifies would keep the lock until its commit is on disk; `announced_at` only says
/// what is left to announce (lost in a crash, a notification is announced again), so this commit does not wait
/// for the disk (`synchronous_commit` off for this transaction alone).
async fn announce(pool: &PgPool, which: Announce<'_>, wake: &[Queue]) {
    let (filter, operations, user) = match which {
        Announce::Operations(ids) => ("operation_id = any($1)", ids.to_vec(), None),
        Announce::User(user_id) => ("user_id = $2", Vec::new(), Some(user_id)),
    };
    let result = sqlx::query(sqlx::AssertSqlSafe(format!(
        "with operations as (
             select pg_notify($4, json_build_object('operation_id', operation_id, 'owner_id', owner_id,
                                                    'status', status)::text)
             from operation where operation_id = any($1)),
         announced as (
             update notification set announced_at = now()
             where {filter} and announced_at is null
             returning notification_id, user_id, kind),
         sent as (
             -- The status first, then its notifications: the condition makes `operations` run first.
             select pg_notify($3, json_build_object('notification_id', notification_id, 'user_id', user_id,
                                                    'kind', kind)::text)
             from announced where (select count(*) from operations) >= 0),
         woken as (select {wake} from unnest($5::text[]) as q(name))
         select set_config('synchronous_commit', 'off', true),
                (select count(*) from operations), (select count(*) from sent), (select count(*) from woken)",
        wake = crate::engine::enqueue::wake_sql("q.name", "$6")
    )))
    .bind(operations)
    .bind(user)
    .bind(NOTIFICATION_CHANNEL)
    .bind(crate::operation::OPERATION_CHANNEL)
    .bind(wake.iter().map(|queue| queue.name()).collect::<Vec<_>>())
    .bind(ulid::Ulid::generate().to_string())
    .execute(pool)
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not announce operations and notifications");
    }
}

/// After a commit: announces these operations' status and their new notifications.
pub async fn announce_for_operations(pool: &PgPool, operation_ids: &[Uuid]) {
    if operation_ids.is_empty() {
        return;
    }
    announce(pool, Announce::Operations(operation_ids), &[Queue::Emails]).await;
}

/// [`announce_for_operations`] for operations just created, waking the workers of `queues` (where the creating
/// transaction enqueued jobs; include the e-mail queue if it wrote notifications) in the same statement.
pub async fn announce_created(pool: &PgPool, operation_ids: &[Uuid], queues: &[Queue]) {
    announce(pool, Announce::Operations(operation_ids), queues).await;
}

/// After a commit: announces a user's notifications that no operation carries (sign-ins, codes, low balance).
pub async fn announce_for_user(pool: &PgPool, user_id: Uuid) {
    announce(pool, Announce::User(user_id), &[Queue::Emails]).await;
}

/// Deletes old inbox rows, used or expired codes and old development mail (daily; the retention comes from the
/// configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneNotifications {}

impl Job for PruneNotifications {
    const KIND: &'static str = "notifications.prune";
    const QUEUE: Queue = Queue::Maintenance;
}

pub async fn prune(pool: &PgPool, retention_days: i64) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The days arrive as a bigint and `make_interval` takes an int: the statements cast, as they always did.
    let deleted = sqlx::query!(
        "delete from notification where created_at < now() - make_interval(days => $1::bigint::int)",
        retention_days,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query!("delete from otp_code where expires_at < now() - interval '1 day'")
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "delete from dev_mailbox where created_at < now() - make_interval(days => $1::bigint::int)",
        retention_days,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(deleted)
}

pub async fn prune_job(
    ctx: JobContext,
    _: PruneNotifications,
    config: std::sync::Arc<Config>,
) -> Result<(), JobError> {
    let deleted = prune(&ctx.pool, config.notifications.retention_days.max(1)).await?;
    tracing::info!(deleted, "pruned old notifications");
    Ok(())
}

/// Adds the notification job kinds: e-mail (one message, or the messages of one event), push, and the daily prune.
pub fn register(
    registry: &mut Registry,
    config: &std::sync::Arc<Config>,
    _: &std::sync::Arc<crate::providers::Providers>,
) {
    use std::sync::Arc;
    let mailer = Arc::new(email::Mailer::from_config(&config.notifications));
    let key = Arc::new(sealed::SealKey::from_config(config));
    let completions = Arc::new(Completions::default());
    let deps = (mailer, key, completions);
    let fcm = config
        .notifications
        .fcm
        .clone()
        .map(|fcm| Arc::new(push::Fcm::new(fcm)));
    registry
        .register_with::<PruneNotifications, _, _, _>(Arc::clone(config), prune_job)
        .register_with::<email::SendEmail, _, _, _>(deps.clone(), |ctx, job, (m, k, c)| {
            email::send(ctx, job, m, k, c)
        })
        .register_with::<email::SendEmails, _, _, _>(deps, |ctx, job, (m, k, c)| {
            email::send_many(ctx, job, m, k, c)
        })
        .register_with::<push::SendPush, _, _, _>(fcm, push::send);
}

/// The notifications' schedules.
pub fn schedules() -> Vec<ScheduleDef> {
    vec![ScheduleDef::of::<PruneNotifications>(
        "notifications.prune",
        "0 15 3 * * *",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_formatted_in_ascii_with_grouping() {
        assert_eq!(format_money(500_000, "NGN"), "NGN 5,000.00");
        assert_eq!(format_money(123_456_789, "NGN"), "NGN 1,234,567.89");
        assert_eq!(format_money(5, "USD"), "USD 0.05");
        assert_eq!(format_money(-10_050, "NGN"), "NGN -100.50");
    }
}
