//! Engine properties that need real processes: crashes, signals and scheduler replicas.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use paycore_jobs::engine::{
    builtin::Probe,
    control::{self, JobState},
    enqueue_tx, NewJob,
};
use paycore_tests::{eventually, Process, TestDb};
use sqlx::PgPool;

async fn enqueue_probe(pool: &PgPool, key: &str, sleep_ms: u64) -> String {
    let mut tx = pool.begin().await.expect("begin");
    let job = NewJob::new(&Probe {
        key: key.into(),
        sleep_ms,
        fail_times: 0,
        permanent: false,
    })
    .expect("job");
    let id = enqueue_tx(&mut tx, job).await.expect("enqueue");
    tx.commit().await.expect("commit");
    paycore_jobs::engine::wake(pool, &[paycore_jobs::engine::Queue::Maintenance]).await;
    id
}

async fn probe_runs(pool: &PgPool, key: &str) -> i64 {
    sqlx::query_scalar("select runs from engine_probe where probe_key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
        .expect("runs")
        .unwrap_or(0)
}

/// The worker holding job `id`, once it is running.
async fn running_on(pool: &PgPool, id: &str) -> String {
    eventually(
        Duration::from_secs(15),
        "the job to start running",
        || async {
            let job = control::get_job(pool, id).await.expect("get")?;
            (job.state == "running").then_some(job.lock_by).flatten()
        },
    )
    .await
}

#[tokio::test]
async fn a_worker_killed_mid_job_is_rescued_by_another_worker_and_the_effect_commits_exactly_once()
{
    let db = TestDb::new().await.expect("db");
    // Production heartbeat settings (1 s × 12 missed): the rescue window is what operators get.
    let victim = Process::spawn(
        "paycore-worker",
        "kill-victim",
        &db.url,
        &["--queues", "maintenance"],
        &[],
    );
    let id = enqueue_probe(&db.pool, "killed", 5_000).await;
    let holder = running_on(&db.pool, &id).await;
    let survivor = Process::spawn(
        "paycore-worker",
        "kill-survivor",
        &db.url,
        &["--queues", "maintenance"],
        &[],
    );
    victim.signal("KILL");
    let killed_at = Instant::now();

    eventually(
        Duration::from_secs(40),
        "the rescued job to complete",
        || async { (probe_runs(&db.pool, "killed").await == 1).then_some(()) },
    )
    .await;
    let rescued_in = killed_at.elapsed();
    let job = control::get_job(&db.pool, &id)
        .await
        .expect("get")
        .expect("job");
    assert_eq!(job.state, "done");
    assert_ne!(
        job.lock_by.as_deref(),
        Some(holder.as_str()),
        "another worker finished it"
    );
    // The job slept 5 s after pickup; rescue must come within ~15 s of the crash.
    assert!(
        rescued_in < Duration::from_secs(25),
        "rescued and finished after {rescued_in:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        probe_runs(&db.pool, "killed").await,
        1,
        "the effect committed exactly once"
    );
    drop(survivor);
}

#[tokio::test]
async fn sigterm_during_a_running_job_lets_it_finish_and_leaves_nothing_running() {
    let db = TestDb::new().await.expect("db");
    let mut worker = Process::spawn(
        "paycore-worker",
        "sigterm",
        &db.url,
        &["--queues", "maintenance"],
        &[],
    );
    let id = enqueue_probe(&db.pool, "graceful", 2_000).await;
    running_on(&db.pool, &id).await;
    worker.signal("TERM");
    let status = worker
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("the worker exits");
    assert!(status.success(), "clean exit: {status:?}");
    assert_eq!(
        probe_runs(&db.pool, "graceful").await,
        1,
        "the in-flight job finished and committed"
    );
    let job = control::get_job(&db.pool, &id)
        .await
        .expect("get")
        .expect("job");
    assert_eq!(job.state, "done");
    let running = control::count_jobs(
        &db.pool,
        &control::JobFilter {
            state: Some(JobState::Running),
            ..Default::default()
        },
    )
    .await
    .expect("count");
    assert_eq!(running, 0);
}

/// The ticks (unix seconds) for which schedule `name` enqueued a job, with how many jobs each.
async fn ticks_of(pool: &PgPool, name: &str) -> Vec<(i64, i64)> {
    sqlx::query_as(
        "select split_part(idempotency_key, ':', 3)::bigint as tick, count(*) from apalis.jobs
         where idempotency_key like $1 group by 1 order by 1",
    )
    .bind(format!("cron:{name}:%"))
    .fetch_all(pool)
    .await
    .expect("ticks")
}

async fn add_per_second_schedule(pool: &PgPool, name: &str, policy: &str) {
    sqlx::query(
        "insert into cron_schedule (name, cron_expr, queue, kind, missed_policy, origin, next_tick_at)
         values ($1, '* * * * * *', 'maintenance', 'engine.noop', $2, 'admin', date_trunc('second', now()) + interval '1 second')",
    )
    .bind(name)
    .bind(policy)
    .execute(pool)
    .await
    .expect("schedule");
}

fn spawn_schedulers(db: &TestDb, tag: &str, count: usize) -> Vec<Process> {
    (0..count)
        .map(|i| {
            Process::spawn(
                "paycore-scheduler",
                &format!("scheduler-{tag}-{i}"),
                &db.url,
                &[],
                &[("SCHEDULER_POLL_MS", "100")],
            )
        })
        .collect()
}

#[tokio::test]
async fn three_scheduler_replicas_fire_each_tick_exactly_once_and_respect_missed_tick_policies() {
    let db = TestDb::new().await.expect("db");
    add_per_second_schedule(&db.pool, "every", "every_tick").await;
    add_per_second_schedule(&db.pool, "once", "catch_up_once").await;
    add_per_second_schedule(&db.pool, "skip", "skip").await;

    let replicas = spawn_schedulers(&db, "a", 3);
    eventually(Duration::from_secs(60), "32 ticks", || async {
        (ticks_of(&db.pool, "every").await.len() >= 32).then_some(())
    })
    .await;
    // An outage of every replica, long enough to miss several ticks.
    drop(replicas);
    let outage_start = chrono::Utc::now().timestamp();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let outage_end = chrono::Utc::now().timestamp();
    let replicas = spawn_schedulers(&db, "b", 3);
    eventually(
        Duration::from_secs(30),
        "ticks after the outage",
        || async {
            let ticks = ticks_of(&db.pool, "every").await;
            (ticks.last().map(|(t, _)| *t).unwrap_or(0) >= outage_end + 3).then_some(())
        },
    )
    .await;
    drop(replicas);

    for name in ["every", "once", "skip"] {
        let ticks = ticks_of(&db.pool, name).await;
        assert!(
            ticks.iter().all(|(_, jobs)| *jobs == 1),
            "{name}: one job per tick: {ticks:?}"
        );
    }
    // every_tick: contiguous, across the outage too.
    let every: Vec<i64> = ticks_of(&db.pool, "every")
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let (first, last) = (every[0], every[every.len() - 1]);
    assert_eq!(
        every,
        (first..=last).collect::<Vec<_>>(),
        "every tick fired once, none missing"
    );
    assert!(every.len() >= 38);

    // The ticks strictly inside the outage, that no replica could fire on time.
    let missed: BTreeSet<i64> = ((outage_start + 1)..outage_end.saturating_sub(1)).collect();
    assert!(missed.len() >= 3);
    let once: BTreeSet<i64> = ticks_of(&db.pool, "once")
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let skip: BTreeSet<i64> = ticks_of(&db.pool, "skip")
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert!(
        once.intersection(&missed).count() <= 1,
        "catch_up_once fires at most one job for the outage"
    );
    let catch_up_args: Vec<serde_json::Value> = sqlx::query_scalar(
        "select job_envelope(job) -> 'args' from apalis.jobs
         where idempotency_key like 'cron:once:%' and job_envelope(job) -> 'args' ? 'missed_ticks'",
    )
    .fetch_all(&db.pool)
    .await
    .expect("catch-up job");
    assert_eq!(
        catch_up_args.len(),
        1,
        "exactly one catch-up job: {catch_up_args:?}"
    );
    assert!(catch_up_args[0]["missed_ticks"].as_i64().unwrap_or(0) >= 3);
    assert!(
        skip.intersection(&missed).next().is_none(),
        "skip fires none of the missed ticks"
    );
}

/// A payout whose worker dies while the provider call is in flight: another worker takes the job over, learns
/// from the provider that the transfer was already made (same reference), and settles it exactly once.
#[tokio::test]
async fn a_worker_killed_during_a_provider_call_leaves_the_payout_settled_exactly_once() {
    use paycore_tests::app::spawn_api_only;
    use serde_json::{json, Value};

    let app = spawn_api_only(&[]).await;
    let paystack = format!("{}/paystack", app.sandbox_url);
    let flutterwave = format!("{}/flutterwave/v3", app.sandbox_url);
    let env = [
        ("PAYSTACK_BASE_URL", paystack.as_str()),
        ("FLUTTERWAVE_BASE_URL", flutterwave.as_str()),
        // Longer than the sandbox holds its answer, so the victim is still waiting when it dies.
        ("PROVIDER_TIMEOUT_MS", "20000"),
        ("PROVIDER_STATUS_POLL_MS", "500"),
    ];
    let victim = Process::spawn(
        "paycore-worker",
        "payout-victim",
        &app.db.url,
        &["--queues", "payments"],
        &env,
    );
    let ada = app.register_verified_user("ada").await;
    // 0000000004: the sandbox takes the transfer, then holds its answer.
    let payout: Value = app
        .client
        .post(app.url("/api/v1/payouts"))
        .bearer_auth(&ada.access_token)
        .header("Idempotency-Key", "killed-payout")
        .json(
            &json!({"wallet_id": ada.wallet_id, "amount": 250_000, "bank_code": "058",
                      "account_number": "0000000004"}),
        )
        .send()
        .await
        .expect("payout")
        .json()
        .await
        .expect("json");
    let payout_id = payout["payout_id"].as_str().expect("id").to_owned();
    let provider_has_it = || async {
        let body: Value = app
            .client
            .get(format!("{paystack}/transfer/verify/{payout_id}"))
            .bearer_auth(app.config.providers.paystack_secret_key.expose())
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (body["data"]["status"] == "success").then_some(())
    };
    eventually(
        Duration::from_secs(20),
        "the provider to take the transfer",
        provider_has_it,
    )
    .await;
    victim.signal("KILL");
    let _survivor = Process::spawn(
        "paycore-worker",
        "payout-survivor",
        &app.db.url,
        &["--queues", "payments"],
        &env,
    );
    let path = format!("/api/v1/payouts/{payout_id}");
    let done = eventually(
        Duration::from_secs(45),
        "the payout to settle after the rescue",
        || async {
            let body = app.get_json(&path, &ada.access_token).await;
            (body["status"] == "completed").then_some(body)
        },
    )
    .await;
    assert_eq!(done["operation_status"], "succeeded");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let wallet = app.wallet(&ada, &ada.wallet_id).await;
    // ₦2,500 and the ₦50 fee, once.
    assert_eq!(wallet["balances"]["posted"], 10_000_000 - 255_000);
    assert_eq!(wallet["balances"]["available"], 10_000_000 - 255_000);
    let resolutions: i64 = sqlx::query_scalar(
        "select count(*) from ledger_transfer where flow = 'post_pending' and operation_id = $1::text::uuid",
    )
    .bind(&payout_id)
    .fetch_one(&app.db.pool)
    .await
    .expect("count");
    assert_eq!(resolutions, 2, "amount and fee posted once each");
    assert!(app.audit_findings().await.is_empty());
}
