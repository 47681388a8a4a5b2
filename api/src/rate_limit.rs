//! The general rate limiter: every `/api/v1` request counts against its route class, once per signed-in user and
//! once per client address (`client::client_address`), in fixed one-minute windows; over either limit the answer
//! is `429 rate_limited` with `Retry-After`. The limits live in one place, `platform::config::RATE_LIMIT_DEFAULTS`
//! (overridable per class with `RATE_LIMIT_<CLASS>`).
//!
//! **Counted in each api process, in memory.** The limiter sees every request, transfers included, so it must
//! cost nothing next to the request: a shared PostgreSQL counter would add a contended write to every transfer
//! (the benchmark's hot path). With N api processes behind a balancer a client can get up to N times the limit;
//! that is what this limiter is for (load and scraping), and the limits that must hold exactly across processes
//! (password and code guesses, registrations) are counted in PostgreSQL by `identity::throttle`
//! (docs/security.md).

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use paycore_jobs::domains::identity::auth::TokenKeys;
use poem::http::Method;
use uuid::Uuid;

/// The counting window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Counters kept at most; past this, counters of ended windows are dropped first, so memory stays bounded
/// whatever the number of addresses.
const COUNTERS_MAX: usize = 200_000;

/// Which limits a route falls under; `None` for routes the limiter leaves alone (health, metrics, documentation,
/// the dashboard, whose sign-in goes through the sign-in throttle, and signed provider webhooks).
pub fn route_class(method: &Method, path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/api/v1/")?;
    if rest.starts_with("webhooks/") {
        return None;
    }
    let post = method == Method::POST;
    Some(match rest {
        _ if rest.starts_with("auth/") => "auth",
        "banks/resolve" | "bills/validate" => "lookup",
        "transfers" | "deposits" | "payouts" | "bills/payments" if post => "money",
        _ if method == Method::GET || method == Method::HEAD => "read",
        _ => "write",
    })
}

pub struct RateLimiter {
    limits: BTreeMap<String, (u32, u32)>,
    counters: Mutex<HashMap<(&'static str, Subject), Window>>,
}

/// A counter's window start and the requests counted in it.
type Window = (Instant, u32);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    User(Uuid),
    Address(IpAddr),
}

impl RateLimiter {
    /// `limits`: class name to (per user, per address) requests per window.
    pub fn new(limits: BTreeMap<String, (u32, u32)>) -> Self {
        Self {
            limits,
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request of `class` by `user` (when signed in) from `address`, at `now`: `Ok` or how long to wait.
    /// A refused request is not counted.
    pub fn check(
        &self,
        class: &'static str,
        user: Option<Uuid>,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(&(per_user, per_address)) = self.limits.get(class) else {
            return Ok(());
        };
        let subjects: Vec<(Subject, u32)> = user
            .map(|user| (Subject::User(user), per_user))
            .into_iter()
            .chain(address.map(|address| (Subject::Address(address), per_address)))
            .collect();
        let Ok(mut counters) = self.counters.lock() else {
            return Ok(());
        };
        if counters.len() >= COUNTERS_MAX {
            counters.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let mut wait = None;
        for (subject, limit) in &subjects {
            if let Some((start, count)) = counters.get(&(class, subject.clone())) {
                let elapsed = now.duration_since(*start);
                if elapsed < WINDOW && *count >= *limit {
                    wait = Some(wait.unwrap_or(Duration::ZERO).max(WINDOW - elapsed));
                }
            }
        }
        if let Some(wait) = wait {
            return Err(wait);
        }
        for (subject, _) in subjects {
            let entry = counters.entry((class, subject)).or_insert((now, 0));
            if now.duration_since(entry.0) >= WINDOW {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        Ok(())
    }
}

/// The user an `Authorization: Bearer` header names, if its token is valid (the session is checked later, by the
/// route; a revoked session's requests still count against its user, which is right).
pub fn bearer_user(request: &poem::Request, keys: &TokenKeys) -> Option<Uuid> {
    let header = request.headers().get("authorization")?.to_str().ok()?;
    let token = header.strip_prefix("Bearer ")?;
    keys.verify(token).map(|claims| claims.sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_into_their_classes() {
        assert_eq!(
            route_class(&Method::POST, "/api/v1/auth/login"),
            Some("auth")
        );
        assert_eq!(
            route_class(&Method::GET, "/api/v1/banks/resolve"),
            Some("lookup")
        );
        assert_eq!(
            route_class(&Method::POST, "/api/v1/bills/validate"),
            Some("lookup")
        );
        assert_eq!(
            route_class(&Method::POST, "/api/v1/transfers"),
            Some("money")
        );
        assert_eq!(route_class(&Method::GET, "/api/v1/transfers"), Some("read"));
        assert_eq!(
            route_class(&Method::PUT, "/api/v1/wallets/x/limits"),
            Some("write")
        );
        assert_eq!(
            route_class(&Method::POST, "/api/v1/webhooks/paystack"),
            None
        );
        assert_eq!(route_class(&Method::GET, "/healthz"), None);
    }

    #[test]
    fn a_subject_over_its_limit_waits_for_the_window_and_others_are_not_affected() {
        let limiter = RateLimiter::new(BTreeMap::from([("lookup".to_owned(), (2, 3))]));
        let (ada, bayo) = (Uuid::now_v7(), Uuid::now_v7());
        let office: IpAddr = "198.51.100.7".parse().expect("ip");
        let t0 = Instant::now();
        assert!(limiter.check("lookup", Some(ada), Some(office), t0).is_ok());
        assert!(limiter.check("lookup", Some(ada), Some(office), t0).is_ok());
        let wait = limiter
            .check(
                "lookup",
                Some(ada),
                Some(office),
                t0 + Duration::from_secs(20),
            )
            .expect_err("ada is over her limit");
        assert_eq!(wait, Duration::from_secs(40));
        // Bayo behind the same address has the address's last request …
        assert!(limiter
            .check("lookup", Some(bayo), Some(office), t0)
            .is_ok());
        // … and then the address is full.
        assert!(limiter
            .check("lookup", Some(bayo), Some(office), t0)
            .is_err());
        // A new window starts again; unlimited classes are not counted.
        assert!(limiter
            .check("lookup", Some(ada), None, t0 + WINDOW)
            .is_ok());
        assert!(limiter.check("read", Some(ada), Some(office), t0).is_ok());
    }
}
