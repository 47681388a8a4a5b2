//! The queues PayCore runs, by explicit and stable name, with their retry policies.
//!
//! apalis-postgres names a queue after the Rust type of its arguments unless told otherwise; that name would
//! change with a refactor and strand jobs, so every queue here has a fixed string that is also stored in
//! `apalis.jobs.job_type`. Renaming one is a migration.

use std::{fmt, str::FromStr, time::Duration};

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Queue {
    Payments,
    Emails,
    Cards,
    Reconciliation,
    Kyc,
    LoanSchedules,
    /// Engine housekeeping (pruning, expiry sweeps). Kept apart so that a long prune never delays a
    /// reconciliation run or a payment.
    Maintenance,
}

/// How a queue retries a transiently failing job: exponential backoff from `base`, doubled each attempt, capped
/// at `cap`, with ±25 % jitter so that jobs failing together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts_max: u32,
    pub base: Duration,
    pub cap: Duration,
}

/// Jitter keeps the delay within these percentages of the exact exponential value.
const JITTER_PERCENT: std::ops::RangeInclusive<u64> = 75..=125;

impl RetryPolicy {
    /// The delay before the attempt after `attempt` (1-based: the delay after the first failure is ~`base`).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        let raw_ms = u64::try_from(raw.as_millis()).unwrap_or(u64::MAX);
        let percent = rand::thread_rng().gen_range(JITTER_PERCENT);
        Duration::from_millis(raw_ms.saturating_mul(percent) / 100)
    }
}

impl Queue {
    pub const ALL: [Queue; 7] = [
        Queue::Payments,
        Queue::Emails,
        Queue::Cards,
        Queue::Reconciliation,
        Queue::Kyc,
        Queue::LoanSchedules,
        Queue::Maintenance,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Queue::Payments => "payments",
            Queue::Emails => "emails",
            Queue::Cards => "cards",
            Queue::Reconciliation => "reconciliation",
            Queue::Kyc => "kyc",
            Queue::LoanSchedules => "loan-schedules",
            Queue::Maintenance => "maintenance",
        }
    }

    /// Per-queue retry policy. Money movements retry for longer (a provider outage of an hour must not fail a
    /// payout) while e-mails give up sooner; every queue caps its delay so a recovered provider is used quickly.
    pub const fn retry_policy(self) -> RetryPolicy {
        const fn secs(s: u64) -> Duration {
            Duration::from_secs(s)
        }
        match self {
            Queue::Payments | Queue::Cards => RetryPolicy {
                attempts_max: 20,
                base: secs(2),
                cap: secs(15 * 60),
            },
            Queue::Emails => RetryPolicy {
                attempts_max: 10,
                base: secs(5),
                cap: secs(30 * 60),
            },
            Queue::Kyc | Queue::LoanSchedules => RetryPolicy {
                attempts_max: 15,
                base: secs(5),
                cap: secs(30 * 60),
            },
            Queue::Reconciliation | Queue::Maintenance => RetryPolicy {
                attempts_max: 5,
                base: secs(30),
                cap: secs(30 * 60),
            },
        }
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Queue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Queue::ALL
            .into_iter()
            .find(|queue| queue.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Queue::ALL.iter().map(|q| q.name()).collect();
                format!("unknown queue {s:?}; known queues: {}", known.join(", "))
            })
    }
}

/// Parses `--queues payments,cards`; an empty list means every queue.
pub fn parse_queue_list(raw: &str) -> Result<Vec<Queue>, String> {
    let mut queues = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let queue: Queue = name.parse()?;
        if !queues.contains(&queue) {
            queues.push(queue);
        }
    }
    if queues.is_empty() {
        return Ok(Queue::ALL.to_vec());
    }
    Ok(queues)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_name_round_trips() {
        for queue in Queue::ALL {
            assert_eq!(queue.name().parse::<Queue>(), Ok(queue));
        }
        assert!("Payments".parse::<Queue>().is_err());
    }

    #[test]
    fn backoff_grows_then_caps_and_stays_within_jitter() {
        let policy = Queue::Payments.retry_policy();
        for attempt in 1..=40 {
            let exact = policy
                .base
                .saturating_mul(1u32 << (attempt - 1).min(30))
                .min(policy.cap);
            let delay = policy.delay_after(attempt);
            assert!(
                delay >= exact.mul_f64(0.75) && delay <= exact.mul_f64(1.25),
                "attempt {attempt}"
            );
        }
        assert!(policy.delay_after(40) <= policy.cap.mul_f64(1.25));
    }

    #[test]
    fn queue_lists_parse_deduplicate_and_default_to_all() {
        assert_eq!(parse_queue_list("").unwrap(), Queue::ALL.to_vec());
        assert_eq!(
            parse_queue_list("payments, cards,payments").unwrap(),
            vec![Queue::Payments, Queue::Cards]
        );
        assert!(parse_queue_list("payments,bogus").is_err());
    }
}
