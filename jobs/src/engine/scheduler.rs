//! Cron schedules that fire each tick exactly once, however many scheduler replicas run.
//!
//! apalis-cron fires every tick in every replica. PayCore keeps each schedule's next tick in `cron_schedule` and
//! claims a tick by compare-and-set on `next_tick_at` in the same transaction that enqueues the tick's job: the
//! replica whose update matched enqueues, the others see zero rows and move on. Each job also carries the
//! idempotency key `cron:<name>:<tick>`, so even a bug in the claim could not enqueue a tick twice.
//!
//! After an outage, the ticks between the last claimed one and now are "missed", and each schedule says what to do:
//! fire once for all of them, fire every one, or skip them.

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::{
    enqueue::{enqueue_tx, EnqueueError, Envelope, NewJob},
    queue::Queue,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedTickPolicy {
    /// One job for all missed ticks (for work that covers "everything up to now", like pruning or an audit).
    CatchUpOnce,
    /// One job per missed tick (for work that is per period, like daily interest).
    EveryTick,
    /// Missed ticks are dropped; only a tick that is due now fires.
    Skip,
}

impl MissedTickPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CatchUpOnce => "catch_up_once",
            Self::EveryTick => "every_tick",
            Self::Skip => "skip",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::CatchUpOnce, Self::EveryTick, Self::Skip]
            .into_iter()
            .find(|p| p.as_str() == raw)
    }
}

/// A tick is "due now" rather than "missed" while it is at most this late. It covers the poll interval and a
/// slow transaction, and is far below any real schedule's period.
pub const TICK_LATENESS_GRACE: chrono::Duration = chrono::Duration::seconds(2);
/// An `every_tick` schedule fires at most this many missed ticks at once; older ones are dropped and logged.
pub const MISSED_TICKS_MAX: usize = 1_000;

/// A schedule declared in code.
#[derive(Debug, Clone)]
pub struct ScheduleDef {
    pub name: &'static str,
    /// Six fields with seconds: `sec min hour day-of-month month day-of-week`.
    pub cron: &'static str,
    pub queue: Queue,
    pub kind: &'static str,
    pub policy: MissedTickPolicy,
}

impl ScheduleDef {
    /// A schedule that enqueues job kind `J` on its own queue at every `cron` tick and, after downtime, runs a
    /// missed tick once.
    pub fn of<J: super::Job>(name: &'static str, cron: &'static str) -> Self {
        Self {
            name,
            cron,
            queue: J::QUEUE,
            kind: J::KIND,
            policy: MissedTickPolicy::CatchUpOnce,
        }
    }
}

/// The engine's own schedules; the ground floor's and the domains' come from their own `schedules()`.
pub fn engine_schedules() -> Vec<ScheduleDef> {
    vec![ScheduleDef {
        name: "engine.prune",
        cron: "0 17 * * * *",
        queue: Queue::Maintenance,
        kind: <super::builtin::Prune as super::enqueue::Job>::KIND,
        policy: MissedTickPolicy::CatchUpOnce,
    }]
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression {expr:?}: {reason}")]
    InvalidCron { expr: String, reason: String },
    #[error("the cron expression {0:?} has no future tick")]
    NoFutureTick(String),
    // Not `transparent`: the sqlx error stays in the source chain, where the api recognises a lost database.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Enqueue(#[from] EnqueueError),
}

pub fn parse_cron(expr: &str) -> Result<cron::Schedule, ScheduleError> {
    cron::Schedule::from_str(expr).map_err(|error| ScheduleError::InvalidCron {
        expr: expr.to_owned(),
        reason: error.to_string(),
    })
}

fn next_after(
    schedule: &cron::Schedule,
    expr: &str,
    after: DateTime<Utc>,
) -> Result<DateTime<Utc>, ScheduleError> {
    schedule
        .after(&after)
        .next()
        .ok_or_else(|| ScheduleError::NoFutureTick(expr.to_owned()))
}

/// Makes `cron_schedule` hold exactly the schedules declared in code (admin-added rows are left alone). A
/// schedule whose expression changed starts again from its next tick.
pub async fn sync_schedules(pool: &PgPool, defs: &[ScheduleDef]) -> Result<(), ScheduleError> {
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    for def in defs {
        let schedule = parse_cron(def.cron)?;
        let next = next_after(&schedule, def.cron, now)?;
        sqlx::query(
            "insert into cron_schedule (name, cron_expr, queue, kind, missed_policy, origin, next_tick_at)
             values ($1, $2, $3, $4, $5, 'code', $6)
             on conflict (name) do update set
                 next_tick_at = case when cron_schedule.cron_expr = excluded.cron_expr
                                     then cron_schedule.next_tick_at else excluded.next_tick_at end,
                 cron_expr = excluded.cron_expr, queue = excluded.queue, kind = excluded.kind,
                 missed_policy = excluded.missed_policy, updated_at = now()
             where (cron_schedule.cron_expr, cron_schedule.queue, cron_schedule.kind,
                    cron_schedule.missed_policy)
                   is distinct from (excluded.cron_expr, excluded.queue, excluded.kind, excluded.missed_policy)",
        )
        .bind(def.name)
        .bind(def.cron)
        .bind(def.queue.name())
        .bind(def.kind)
        .bind(def.policy.as_str())
        .bind(next)
        .execute(&mut *tx)
        .await?;
    }
    let names: Vec<&str> = defs.iter().map(|d| d.name).collect();
    sqlx::query("delete from cron_schedule where origin = 'code' and name <> all($1)")
        .bind(&names)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct DueSchedule {
    name: String,
    cron_expr: String,
    queue: String,
    kind: String,
    args: serde_json::Value,
    missed_policy: String,
    next_tick_at: DateTime<Utc>,
}

/// Which of the due ticks to fire, by policy. `due` is sorted and non-empty.
pub fn ticks_to_fire(
    policy: MissedTickPolicy,
    due: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let Some(&last) = due.last() else {
        return Vec::new();
    };
    match policy {
        MissedTickPolicy::EveryTick => due
            .iter()
            .rev()
            .take(MISSED_TICKS_MAX)
            .rev()
            .copied()
            .collect(),
        MissedTickPolicy::CatchUpOnce => vec![last],
        MissedTickPolicy::Skip if now - last <= TICK_LATENESS_GRACE => vec![last],
        MissedTickPolicy::Skip => Vec::new(),
    }
}

/// Claims and fires every due tick once. Returns the number of jobs enqueued by this replica.
pub async fn fire_due(pool: &PgPool) -> Result<usize, ScheduleError> {
    let now = Utc::now();
    let due: Vec<DueSchedule> = sqlx::query_as(
        "select name, cron_expr, queue, kind, args, missed_policy, next_tick_at
         from cron_schedule where enabled and next_tick_at <= $1",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut fired = 0;
    for schedule in due {
        match fire_schedule(pool, &schedule, now).await {
            Ok(count) => fired += count,
            // One broken schedule (a bad expression typed by an admin) must not stop the others.
            Err(error) => {
                tracing::error!(schedule = %schedule.name, %error, "schedule could not fire")
            }
        }
    }
    Ok(fired)
}

async fn fire_schedule(
    pool: &PgPool,
    schedule: &DueSchedule,
    now: DateTime<Utc>,
) -> Result<usize, ScheduleError> {
    let cron = parse_cron(&schedule.cron_expr)?;
    let queue: Queue = schedule
        .queue
        .parse()
        .map_err(|reason| ScheduleError::InvalidCron {
            expr: schedule.queue.clone(),
            reason,
        })?;
    let policy = MissedTickPolicy::parse(&schedule.missed_policy).unwrap_or(MissedTickPolicy::Skip);
    let mut due = vec![schedule.next_tick_at];
    let mut dropped = 0usize;
    for tick in cron.after(&schedule.next_tick_at) {
        if tick > now {
            break;
        }
        due.push(tick);
        if due.len() > MISSED_TICKS_MAX {
            due.remove(0);
            dropped += 1;
        }
    }
    if dropped > 0 {
        tracing::warn!(schedule = %schedule.name, dropped, "more missed ticks than are ever fired at once");
    }
    let next = next_after(&cron, &schedule.cron_expr, now)?;
    let to_fire = ticks_to_fire(policy, &due, now);
    let last_tick = due.last().copied();

    let mut tx = pool.begin().await?;
    // The claim: only the replica that still sees the old next_tick_at moves it on.
    let claimed = sqlx::query(
        "update cron_schedule set next_tick_at = $3, last_tick_at = $4,
             last_fired_at = case when $5 then now() else last_fired_at end, updated_at = now()
         where name = $1 and next_tick_at = $2",
    )
    .bind(&schedule.name)
    .bind(schedule.next_tick_at)
    .bind(next)
    .bind(last_tick)
    .bind(!to_fire.is_empty())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        return Ok(0);
    }
    let missed = due.len().saturating_sub(1);
    for tick in &to_fire {
        let mut args = match &schedule.args {
            serde_json::Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        args.insert("tick".into(), serde_json::json!(tick.to_rfc3339()));
        if policy == MissedTickPolicy::CatchUpOnce && missed > 0 {
            args.insert("missed_ticks".into(), serde_json::json!(missed));
        }
        let job = NewJob {
            queue,
            envelope: Envelope {
                kind: schedule.kind.clone(),
                operation_id: None,
                args: serde_json::Value::Object(args),
            },
            run_at: None,
            idempotency_key: Some(format!("cron:{}:{}", schedule.name, tick.timestamp())),
            priority: 0,
            attempts_max: None,
        };
        enqueue_tx(&mut tx, job).await?;
    }
    tx.commit().await?;
    if !to_fire.is_empty() {
        super::enqueue::wake(pool, &[queue]).await;
    }
    if missed > 0 {
        tracing::info!(schedule = %schedule.name, missed, fired = to_fire.len(), policy = policy.as_str(),
            "fired a schedule after missed ticks");
    }
    Ok(to_fire.len())
}

/// Enqueues a schedule's job now, outside its cadence ("run now" on the dashboard).
pub async fn trigger_now(pool: &PgPool, name: &str) -> Result<Option<String>, ScheduleError> {
    let row: Option<(String, String, serde_json::Value)> =
        sqlx::query_as("select queue, kind, args from cron_schedule where name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    let Some((queue, kind, args)) = row else {
        return Ok(None);
    };
    let queue: Queue = queue.parse().map_err(|reason| ScheduleError::InvalidCron {
        expr: queue.clone(),
        reason,
    })?;
    let mut tx = pool.begin().await?;
    let job = NewJob {
        queue,
        envelope: Envelope {
            kind,
            operation_id: None,
            args,
        },
        run_at: None,
        idempotency_key: None,
        priority: 0,
        attempts_max: None,
    };
    let id = enqueue_tx(&mut tx, job).await?;
    tx.commit().await?;
    super::enqueue::wake(pool, &[queue]).await;
    Ok(Some(id))
}

/// Runs the scheduler loop until `shutdown` resolves.
pub async fn run_scheduler(
    pool: PgPool,
    defs: Vec<ScheduleDef>,
    poll: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ScheduleError> {
    sync_schedules(&pool, &defs).await?;
    tracing::info!(schedules = defs.len(), "scheduler started");
    tokio::pin!(shutdown);
    let mut interval = tokio::time::interval(poll);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = interval.tick() => {
                if let Err(error) = fire_due(&pool).await {
                    tracing::error!(%error, "scheduler tick failed; trying again at the next poll");
                }
            }
        }
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("valid timestamp")
    }

    #[test]
    fn on_time_tick_fires_under_every_policy() {
        for policy in [
            MissedTickPolicy::CatchUpOnce,
            MissedTickPolicy::EveryTick,
            MissedTickPolicy::Skip,
        ] {
            assert_eq!(ticks_to_fire(policy, &[at(10)], at(10)), vec![at(10)]);
        }
    }

    #[test]
    fn missed_ticks_follow_the_policy() {
        let due: Vec<_> = (0..=5).map(at).collect();
        assert_eq!(ticks_to_fire(MissedTickPolicy::EveryTick, &due, at(5)), due);
        assert_eq!(
            ticks_to_fire(MissedTickPolicy::CatchUpOnce, &due, at(5)),
            vec![at(5)]
        );
        assert_eq!(
            ticks_to_fire(MissedTickPolicy::Skip, &due, at(5)),
            vec![at(5)]
        );
        // The latest due tick is itself stale: skip drops everything, catch-up still fires once.
        assert!(ticks_to_fire(MissedTickPolicy::Skip, &due, at(60)).is_empty());
        assert_eq!(
            ticks_to_fire(MissedTickPolicy::CatchUpOnce, &due, at(60)),
            vec![at(5)]
        );
    }

    #[test]
    fn engine_schedules_parse() {
        for def in engine_schedules() {
            parse_cron(def.cron).expect(def.name);
        }
        assert!(parse_cron("every now and then").is_err());
    }
}
