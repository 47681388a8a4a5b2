//! The HTTP scenarios: clients that behave like PayCore's users, against real processes, followed by correctness
//! checks on the ledger.

use std::{
    io::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rand::Rng;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::report::{percentiles, LevelResult};
use crate::system::BENCH_BONUS_MINOR;

#[derive(Debug, Clone)]
pub struct User {
    pub token: String,
    pub wallet_id: String,
    pub account_number: String,
}

/// Amount of each benchmark transfer, in kobo.
const TRANSFER_MINOR: i64 = 100;

/// Registers a user and signs in as them (registration answers `202` without tokens, docs/security.md §10).
pub async fn register(client: &reqwest::Client, base: &str) -> anyhow::Result<User> {
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "benchmark password";
    let response = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": email, "password": password, "full_name": "Bench User"}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().as_u16() == 202,
        "registration failed: {}",
        response.status()
    );
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().as_u16() == 200,
        "sign-in failed: {}",
        response.status()
    );
    let tokens: Value = response.json().await?;
    let token = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let me: Value = client
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let wallet = &me["wallets"][0];
    Ok(User {
        token,
        wallet_id: wallet["wallet_id"].as_str().unwrap_or_default().to_owned(),
        account_number: wallet["account_number"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

pub async fn register_many(
    client: &reqwest::Client,
    base: &str,
    count: usize,
) -> anyhow::Result<Vec<User>> {
    let mut users = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(16) {
        let batch = futures::future::join_all(chunk.iter().map(|_| register(client, base))).await;
        for user in batch {
            users.push(user?);
        }
    }
    Ok(users)
}

/// One transfer, waiting for its settlement: the status code.
pub async fn transfer(
    client: &reqwest::Client,
    base: &str,
    from: &User,
    to: &str,
) -> Result<u16, reqwest::Error> {
    let response = client
        .post(format!("{base}/api/v1/transfers"))
        .bearer_auth(&from.token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .header("Prefer", "wait=10")
        .json(&json!({"from_wallet_id": from.wallet_id, "to_account_number": to, "amount": TRANSFER_MINOR, "currency": "NGN"}))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// Runs `clients` loops of `request` for `duration`, printing progress every second.
pub async fn drive<F, Fut>(
    label: &str,
    clients: usize,
    duration: Duration,
    request: F,
) -> LevelResult
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u16, reqwest::Error>> + Send,
{
    let request = Arc::new(request);
    let counters = Arc::new([
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ]);
    let started = Instant::now();
    let deadline = started + duration;
    let progress = {
        let counters = Arc::clone(&counters);
        let label = label.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let elapsed = started.elapsed().as_secs_f64();
                let done = counters[0].load(Ordering::Relaxed);
                eprint!(
                    "\r[{label} · {clients} clients] {elapsed:5.1}/{:.0} s  {done} done  {:.0}/s  {} errors   ",
                    duration.as_secs_f64(),
                    done as f64 / elapsed.max(0.001),
                    counters[3].load(Ordering::Relaxed)
                );
                let _ = std::io::stderr().flush();
            }
        })
    };
    let tasks: Vec<_> = (0..clients)
        .map(|client_index| {
            let request = Arc::clone(&request);
            let counters = Arc::clone(&counters);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let outcome = request(client_index).await;
                    latencies.push(sent.elapsed());
                    match outcome {
                        Ok(200) | Ok(201) => counters[0].fetch_add(1, Ordering::Relaxed),
                        Ok(202) => counters[1].fetch_add(1, Ordering::Relaxed),
                        Ok(status) if (400..500).contains(&status) => {
                            counters[2].fetch_add(1, Ordering::Relaxed)
                        }
                        _ => counters[3].fetch_add(1, Ordering::Relaxed),
                    };
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_default());
    }
    progress.abort();
    eprintln!();
    let seconds = started.elapsed().as_secs_f64();
    let [settled, accepted, rejected, errors] =
        [0, 1, 2, 3].map(|i| counters[i].load(Ordering::Relaxed));
    LevelResult {
        clients,
        seconds,
        requests: settled + accepted + rejected + errors,
        settled,
        accepted_unsettled: accepted,
        rejected,
        errors,
        throughput_per_s: settled as f64 / seconds,
        latency: percentiles(latencies),
        cpu_ms_per_settled: None,
    }
}

/// A uniformly random other user's account number.
pub fn random_other(users: &[User], from: usize) -> &str {
    let mut to = rand::thread_rng().gen_range(0..users.len() - 1);
    if to >= from {
        to += 1;
    }
    &users[to].account_number
}

/// After a scenario: nothing left open, the audit clean, money conserved, one operation per accepted request.
pub async fn verify(pool: &PgPool, accepted_requests: u64) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let open = loop {
        let open: i64 = sqlx::query_scalar(
            "select count(*) from operation where status in ('pending', 'processing')",
        )
        .fetch_one(pool)
        .await?;
        if open == 0 || Instant::now() > deadline {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut checks = Vec::new();
    let mark = |ok: bool| if ok { "✅" } else { "❌" };
    checks.push(format!(
        "{} operations left pending or processing: {open} (expected 0)",
        mark(open == 0)
    ));
    let report = paycore_jobs::ledger::audit(pool).await?;
    checks.push(format!(
        "{} ledger audit: {}",
        mark(report.clean),
        if report.clean {
            "clean".to_owned()
        } else {
            report.findings.join("; ")
        }
    ));
    let (users, held): (i64, i64) = sqlx::query_as(
        "select (select count(*) from wallet where currency = 'NGN'),
                coalesce((select sum(credits_posted - debits_posted) from ledger_account
                          where currency = 'NGN' and (kind = 'wallet' or code = 'fee_income')), 0)::bigint",
    )
    .fetch_one(pool)
    .await?;
    let expected = users * BENCH_BONUS_MINOR;
    checks.push(format!(
        "{} NGN in wallets and fee income: {held} = {users} bonuses of {BENCH_BONUS_MINOR} ({expected})",
        mark(held == expected)
    ));
    let operations: i64 =
        sqlx::query_scalar("select count(*) from operation where kind = 'transfer'")
            .fetch_one(pool)
            .await?;
    checks.push(format!(
        "{} transfer operations: {operations} = accepted requests {accepted_requests}",
        mark(operations == i64::try_from(accepted_requests).unwrap_or(-1))
    ));
    let succeeded: i64 = sqlx::query_scalar(
        "select count(*) from operation where kind = 'transfer' and status = 'succeeded'",
    )
    .fetch_one(pool)
    .await?;
    checks.push(format!(
        "{} every transfer operation succeeded: {succeeded} of {operations}",
        mark(succeeded == operations)
    ));
    Ok(checks)
}
