//! Throttles for guessable secrets and for registrations, shared by every api process through PostgreSQL.
//!
//! Each throttled thing has a key (`login:account-origin:<email>|<address>`, `password:user:<id>`, …) and a
//! `Policy`. An attempt is *reserved* before the secret is checked: one upsert per key counts it and refuses while
//! the key is blocked, all keys in one transaction, so two hundred parallel guesses get exactly the free attempts
//! and a refused attempt writes nothing. After `free_attempts`, each attempt blocks the key for `base_delay`
//! doubled per further attempt, up to `max_delay`: an exponential delay, never a flat lock-out. A key quiet for
//! `window` starts again; a success clears the keys that name the person. The rules are in docs/security.md.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts allowed back to back before any delay.
    pub free_attempts: i32,
    /// The delay after the last free attempt; it doubles with each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A key with no attempt for this long counts from zero again.
    pub window: Duration,
}

/// Wrong passwords for one account from one client address: five tries back to back, then one a minute, two,
/// four, … up to an hour. This is what stops guessing; it never touches the owner at another address.
pub const LOGIN_PER_ACCOUNT_AND_ORIGIN: Policy = Policy {
    free_attempts: 5,
    base_delay: Duration::from_secs(60),
    max_delay: Duration::from_secs(3600),
    window: Duration::from_secs(24 * 3600),
};
/// Sign-ins from one client address across accounts (one address may front a whole office): thirty, then the
/// same doubling. Slows one machine spraying many accounts.
pub const LOGIN_PER_ORIGIN: Policy = Policy {
    free_attempts: 30,
    base_delay: Duration::from_secs(60),
    max_delay: Duration::from_secs(3600),
    window: Duration::from_secs(24 * 3600),
};
/// Sign-ins to one account from every address together: a guesser spread over many addresses is slowed to one
/// try every 30 seconds after fifty, and the delay never exceeds 30 seconds, so the owner is slowed, never locked
/// out.
pub const LOGIN_PER_ACCOUNT: Policy = Policy {
    free_attempts: 50,
    base_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(30),
    window: Duration::from_secs(24 * 3600),
};
/// The current password asked for by signed-in changes (password change, two-step setting): the thief of a
/// session gets five tries, then the same doubling as sign-in.
pub const CURRENT_PASSWORD: Policy = LOGIN_PER_ACCOUNT_AND_ORIGIN;

/// Registrations from one client address: `per_hour` of them, then an hour's wait, doubling.
pub fn registrations(per_hour: i32) -> Policy {
    Policy {
        free_attempts: per_hour,
        base_delay: Duration::from_secs(3600),
        max_delay: Duration::from_secs(24 * 3600),
        window: Duration::from_secs(3600),
    }
}

/// Doublings are capped so the arithmetic stays finite; `max_delay` binds long before.
const DOUBLINGS_MAX: i32 = 30;

/// How long `attempts` (counted so far, this one included) block a key: nothing before the last free attempt.
pub fn delay_after(policy: &Policy, attempts: i32) -> Duration {
    if attempts < policy.free_attempts {
        return Duration::ZERO;
    }
    let doublings = (attempts - policy.free_attempts).clamp(0, DOUBLINGS_MAX);
    let delay = policy.base_delay.saturating_mul(1u32 << doublings);
    delay.min(policy.max_delay)
}

/// A refused attempt: wait this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

impl Refused {
    /// Whole seconds, at least one, for `Retry-After`.
    pub fn retry_after_seconds(&self) -> u64 {
        self.retry_after.as_secs().max(1) + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

/// Counts one attempt on every key, or none if any key is blocked at `now` (then: how long to wait).
pub async fn reserve(
    pool: &PgPool,
    keys: &[(String, Policy)],
    now: DateTime<Utc>,
) -> Result<Result<(), Refused>, sqlx::Error> {
    let mut keys: Vec<&(String, Policy)> = keys.iter().collect();
    // A fixed order, so two reservations over the same keys queue instead of deadlocking.
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tx = pool.begin().await?;
    for (key, policy) in keys {
        // The new count is 1 for a new key or one quiet for its window, else one more; the block follows from it
        // as in `delay_after`, and an unblocked key is blocked until minus infinity, not until `now`: parallel
        // attempts read the clock in any order. The `where` refuses while blocked, and then no row comes back.
        let counted: Option<i32> = sqlx::query_scalar(
            "insert into auth_throttle as t (throttle_key, attempts, blocked_until, updated_at)
             values ($1, 1, case when 1 >= $3 then $2 + make_interval(secs => least($5, $4))
                                 else '-infinity'::timestamptz end, $2)
             on conflict (throttle_key) do update set
                 attempts = case when t.updated_at <= $2 - make_interval(secs => $6) then 1 else t.attempts + 1 end,
                 blocked_until = case
                     when (case when t.updated_at <= $2 - make_interval(secs => $6) then 1 else t.attempts + 1 end) >= $3
                     then $2 + make_interval(secs => least($5, $4 * power(2::float8, least($7,
                         (case when t.updated_at <= $2 - make_interval(secs => $6) then 1 else t.attempts + 1 end) - $3))))
                     else '-infinity'::timestamptz end,
                 updated_at = $2
             where t.blocked_until <= $2
             returning attempts",
        )
        .bind(key)
        .bind(now)
        .bind(policy.free_attempts)
        .bind(policy.base_delay.as_secs_f64())
        .bind(policy.max_delay.as_secs_f64())
        .bind(policy.window.as_secs_f64())
        .bind(DOUBLINGS_MAX)
        .fetch_optional(&mut *tx)
        .await?;
        if counted.is_none() {
            let until: DateTime<Utc> = sqlx::query_scalar(
                "select blocked_until from auth_throttle where throttle_key = $1",
            )
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            tx.rollback().await?;
            let retry_after = (until - now).to_std().unwrap_or(Duration::from_secs(1));
            return Ok(Err(Refused { retry_after }));
        }
    }
    tx.commit().await?;
    Ok(Ok(()))
}

/// Gives back the attempt a success reserved on `key` (a shared key, such as an address's, that counts failures
/// only): one fewer, and unblocked when that leaves it within its free attempts.
pub async fn refund(pool: &PgPool, key: &str, policy: &Policy) -> Result<(), sqlx::Error> {
    sqlx::query(
        "with gone as (delete from auth_throttle where throttle_key = $1 and attempts <= 1)
         update auth_throttle set attempts = attempts - 1,
             blocked_until = case when attempts - 1 >= $2 then blocked_until else '-infinity'::timestamptz end
         where throttle_key = $1 and attempts > 1",
    )
    .bind(key)
    .bind(policy.free_attempts)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets `keys` (after a success: the person proved who they are).
pub async fn clear(pool: &PgPool, keys: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query("delete from auth_throttle where throttle_key = any($1)")
        .bind(keys)
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_starts_at_the_last_free_attempt_and_doubles_up_to_the_cap() {
        let p = LOGIN_PER_ACCOUNT_AND_ORIGIN;
        assert_eq!(delay_after(&p, 1), Duration::ZERO);
        assert_eq!(delay_after(&p, 4), Duration::ZERO);
        assert_eq!(delay_after(&p, 5), Duration::from_secs(60));
        assert_eq!(delay_after(&p, 6), Duration::from_secs(120));
        assert_eq!(delay_after(&p, 10), Duration::from_secs(1920));
        assert_eq!(delay_after(&p, 11), Duration::from_secs(3600));
        assert_eq!(delay_after(&p, i32::MAX), Duration::from_secs(3600));
        let spread = LOGIN_PER_ACCOUNT;
        assert_eq!(delay_after(&spread, 49), Duration::ZERO);
        assert!(delay_after(&spread, 10_000) <= Duration::from_secs(30));
    }
}
