//! The job engine's properties, each against a real PostgreSQL with real apalis workers.

use std::time::Duration;

use paycore_jobs::{
    engine::{
        builtin::Probe,
        control::{self, JobAction, JobFilter, JobState},
        enqueue_tx, JobContext, JobError, NewJob, Queue,
    },
    operation,
};
use paycore_tests::{eventually, fast_engine, probe, InProcessWorkers, TestDb};
use sqlx::PgPool;

async fn enqueue(pool: &PgPool, job: NewJob) -> String {
    let queue = job.queue;
    let mut tx = pool.begin().await.expect("begin");
    let id = enqueue_tx(&mut tx, job).await.expect("enqueue");
    tx.commit().await.expect("commit");
    paycore_jobs::engine::wake(pool, &[queue]).await;
    id
}

async fn probe_runs(pool: &PgPool, key: &str) -> i64 {
    sqlx::query_scalar("select runs from engine_probe where probe_key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
        .expect("probe runs")
        .unwrap_or(0)
}

/// How many probes whose key starts with `prefix` ran exactly once, and how many ran more often.
async fn probes_run(pool: &PgPool, prefix: &str) -> (i64, i64) {
    sqlx::query_as(
        "select count(*) filter (where runs = 1), count(*) filter (where runs > 1)
         from engine_probe where starts_with(probe_key, $1)",
    )
    .bind(prefix)
    .fetch_one(pool)
    .await
    .expect("probe counts")
}

async fn state_of(pool: &PgPool, id: &str) -> String {
    control::get_job(pool, id)
        .await
        .expect("get job")
        .expect("job exists")
        .state
}

async fn wait_for_state(pool: &PgPool, id: &str, state: JobState, timeout: Duration) {
    eventually(
        timeout,
        &format!("job {id} to be {}", state.as_str()),
        || async { (state_of(pool, id).await == state.as_str()).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_runs_and_a_committed_one_runs_once() {
    let db = TestDb::new().await.expect("db");
    let workers = InProcessWorkers::start(&db.pool, vec![Queue::Maintenance], fast_engine());

    let mut tx = db.pool.begin().await.expect("begin");
    enqueue_tx(&mut tx, NewJob::new(&probe("rolled-back")).expect("job"))
        .await
        .expect("enqueue");
    tx.rollback().await.expect("rollback");
    let committed = enqueue(&db.pool, NewJob::new(&probe("committed")).expect("job")).await;

    wait_for_state(
        &db.pool,
        &committed,
        JobState::Done,
        Duration::from_secs(10),
    )
    .await;
    // Give a wrongly visible job every chance to run before asserting it did not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(probe_runs(&db.pool, "committed").await, 1);
    assert_eq!(probe_runs(&db.pool, "rolled-back").await, 0);
    let jobs: i64 = sqlx::query_scalar("select count(*) from apalis.jobs")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(jobs, 1, "the rolled-back job left no row");
    workers.stop().await.expect("stop");
}

/// A worker fetches only when woken, after a full batch, or on its idle poll; none of those may strand a job.
#[tokio::test]
async fn a_burst_larger_than_a_fetch_batch_runs_after_one_wake_up_and_an_unannounced_job_runs_on_the_poll(
) {
    let db = TestDb::new().await.expect("db");
    let engine = paycore_jobs::engine::config::EngineConfig {
        batch_size: 4,
        ..fast_engine()
    };
    let workers = InProcessWorkers::start(&db.pool, vec![Queue::Maintenance], engine);

    // 23 jobs, one wake-up: the loop keeps fetching while its batches come back full.
    let mut tx = db.pool.begin().await.expect("begin");
    let keys: Vec<String> = (0..23).map(|i| format!("burst-{i}")).collect();
    let jobs = keys
        .iter()
        .map(|key| NewJob::new(&probe(key)).expect("job"))
        .collect();
    paycore_jobs::engine::enqueue_many_tx(&mut tx, jobs)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    paycore_jobs::engine::wake(&db.pool, &[Queue::Maintenance]).await;
    eventually(
        Duration::from_secs(20),
        "every burst job to run",
        || async { (probes_run(&db.pool, "burst-").await == (23, 0)).then_some(()) },
    )
    .await;

    // Enqueued with no wake-up at all (as by code that forgot it): found by the idle poll.
    let mut tx = db.pool.begin().await.expect("begin");
    let quiet = enqueue_tx(&mut tx, NewJob::new(&probe("quiet")).expect("job"))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    wait_for_state(&db.pool, &quiet, JobState::Done, Duration::from_secs(20)).await;
    assert_eq!(probe_runs(&db.pool, "quiet").await, 1);
    workers.stop().await.expect("stop");
}

/// After a full batch a loop fetches the next one while the first runs. A worker that stops then holds jobs it
/// never started, in its buffer and fetched ahead: all of them go back to the queue at once (no waiting for a
/// rescue), and each job still runs exactly once.
#[tokio::test]
async fn a_stopping_worker_hands_back_the_jobs_it_buffered_and_fetched_ahead() {
    let db = TestDb::new().await.expect("db");
    let engine = paycore_jobs::engine::config::EngineConfig {
        batch_size: 4,
        concurrency: [(Queue::Maintenance, 1)].into_iter().collect(),
        ..fast_engine()
    };
    let mut tx = db.pool.begin().await.expect("begin");
    let jobs = (0..20)
        .map(|i| {
            NewJob::new(&Probe {
                sleep_ms: 300,
                ..probe(&format!("ahead-{i}"))
            })
            .expect("job")
        })
        .collect();
    paycore_jobs::engine::enqueue_many_tx(&mut tx, jobs)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    let workers = InProcessWorkers::start(&db.pool, vec![Queue::Maintenance], engine.clone());
    // One job running, three buffered, four fetched ahead.
    eventually(Duration::from_secs(10), "a second fetch", || async {
        let locked: i64 = sqlx::query_scalar(
            "select count(*) from apalis.jobs where status = 'Queued' and lock_by is not null",
        )
        .fetch_one(&db.pool)
        .await
        .expect("count");
        (locked >= 8).then_some(())
    })
    .await;
    workers.stop().await.expect("stop");

    let (locked, ran): (i64, i64) = sqlx::query_as(
        "select (select count(*) from apalis.jobs where status in ('Queued', 'Running')),
                (select count(*) from engine_probe where probe_key like 'ahead-%')",
    )
    .fetch_one(&db.pool)
    .await
    .expect("counts");
    assert_eq!(locked, 0, "no job stays locked by the stopped worker");
    let handed_back: i64 =
        sqlx::query_scalar("select count(*) from job_event where action = 'handback'")
            .fetch_one(&db.pool)
            .await
            .expect("events");
    assert!(
        handed_back >= 4,
        "at least the batch fetched ahead was handed back ({handed_back} were; {ran} jobs ran)"
    );

    let workers = InProcessWorkers::start(&db.pool, vec![Queue::Maintenance], fast_engine());
    paycore_jobs::engine::wake(&db.pool, &[Queue::Maintenance]).await;
    eventually(Duration::from_secs(30), "every job to run", || async {
        let (once, _) = probes_run(&db.pool, "ahead-").await;
        (once == 20).then_some(())
    })
    .await;
    assert_eq!(
        probes_run(&db.pool, "ahead-").await,
        (20, 0),
        "every job ran, none twice"
    );
    workers.stop().await.expect("stop");
}

#[tokio::test]
async fn a_transiently_failing_job_is_retried_with_growing_delays_then_succeeds() {
    let db = TestDb::new().await.expect("db");
    let workers = InProcessWorkers::start(&db.pool, vec![Queue::Maintenance], fast_engine());
    let id = enqueue(
        &db.pool,
        NewJob::new(&Probe {
            fail_times: 3,
            ..probe("flaky")
        })
        .expect("job"),
    )
    .await;

    wait_for_state(&db.pool, &id, JobState::Done, Duration::from_secs(30)).await;
    assert_eq!(probe_runs(&db.pool, "flaky").await, 1);
    let attempts = control::job_attempts(&db.pool, &id)
        .await
        .expect("attempts");
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["transient", "transient", "transient", "succeeded"]
    );
    // The backoff is persisted: each failure stored when the next attempt may run, and the delays grow
    // (200 ms base doubling, ±25 % jitter: the ranges do not overlap).
    let delays: Vec<i64> = attempts[..3]
        .iter()
        .map(|a| (a.retry_at.expect("retry_at") - a.finished_at).num_milliseconds())
        .collect();
    assert!(
        delays[0] < delays[1] && delays[1] < delays[2],
        "delays must grow: {delays:?}"
    );
    assert!(
        (150..=250).contains(&delays[0]),
        "first delay near the base: {delays:?}"
    );
    // No attempt started before its stored retry time.
    for pair in attempts.windows(2) {
        assert!(
            pair[1].started_at
                >= pair[0].retry_at.expect("retry_at") - chrono::Duration::milliseconds(5)
        );
    }
    workers.stop().await.expect("stop");
}

#[tokio::test]
async fn a_permanently_failing_job_is_not_retried_and_fails_its_operation_with_its_code() {
    let db = TestDb::new().await.expect("db");
    let workers = InProcessWorkers::start(&db.pool, vec![Queue::Maintenance], fast_engine());
    let mut tx = db.pool.begin().await.expect("begin");
    let operation_id = operation::insert_tx(&mut tx, "probe", None, &serde_json::json!({}))
        .await
        .expect("operation");
    let job = NewJob::new(&Probe {
        fail_times: 10,
        permanent: true,
        ..probe("declined")
    })
    .expect("job")
    .for_operation(operation_id);
    let id = enqueue_tx(&mut tx, job).await.expect("enqueue");
    tx.commit().await.expect("commit");

    wait_for_state(&db.pool, &id, JobState::Dead, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = control::job_attempts(&db.pool, &id)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 1, "a permanent failure is never retried");
    assert_eq!(attempts[0].outcome, "permanent");
    let op = operation::get(&db.pool, operation_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(op.status, "failed");
    assert_eq!(op.failure_code.as_deref(), Some("probe_declined"));
    assert!(op.settled_at.is_some());
    // Retrying a job whose operation has settled would redo settled work: it is refused.
    let retried = control::apply_action(&db.pool, JobAction::Retry, &JobFilter::by_id(&id), "test")
        .await
        .expect("retry");
    assert_eq!((retried.affected.len(), retried.skipped), (0, 1));
    workers.stop().await.expect("stop");
}

#[tokio::test]
async fn a_job_that_exhausts_its_attempts_is_dead_shows_its_errors_and_runs_again_after_a_retry() {
    let db = TestDb::new().await.expect("db");
    let workers = InProcessWorkers::start(&db.pool, vec![Queue::Maintenance], fast_engine());
    let job = NewJob::new(&Probe {
        fail_times: 2,
        ..probe("exhausted")
    })
    .expect("job")
    .attempts_max(2);
    let id = enqueue(&db.pool, job).await;

    wait_for_state(&db.pool, &id, JobState::Dead, Duration::from_secs(20)).await;
    let attempts = control::job_attempts(&db.pool, &id)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 2);
    for (index, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.attempt, i32::try_from(index + 1).expect("small"));
        assert!(attempt
            .error
            .as_deref()
            .unwrap_or("")
            .contains("probe failure on attempt"));
    }
    let dead = control::list_jobs(
        &db.pool,
        &JobFilter {
            state: Some(JobState::Dead),
            queue: Some(Queue::Maintenance),
            ..JobFilter::default()
        },
        None,
        20,
    )
    .await
    .expect("list");
    assert_eq!(
        dead.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    assert_eq!(probe_runs(&db.pool, "exhausted").await, 0);

    let retried = control::apply_action(
        &db.pool,
        JobAction::Retry,
        &JobFilter::by_id(&id),
        "admin@test",
    )
    .await
    .expect("retry");
    assert_eq!(retried.affected, vec![id.clone()]);
    wait_for_state(&db.pool, &id, JobState::Done, Duration::from_secs(10)).await;
    assert_eq!(probe_runs(&db.pool, "exhausted").await, 1);
    let events: Vec<(String, String)> = sqlx::query_as(
        "select action, actor from job_event where job_id = $1 order by job_event_id",
    )
    .bind(&id)
    .fetch_all(&db.pool)
    .await
    .expect("events");
    assert_eq!(events, vec![("retry".to_owned(), "admin@test".to_owned())]);
    workers.stop().await.expect("stop");
}

#[tokio::test]
async fn a_worker_whose_lease_was_taken_over_cannot_commit() {
    let db = TestDb::new().await.expect("db");
    let id = enqueue(&db.pool, NewJob::new(&probe("fenced")).expect("job")).await;
    // Worker A fetched the job (no workers run in this test: the lease is set as apalis sets it).
    sqlx::query(
        "insert into apalis.workers (id, worker_type, storage_name, layers, last_seen)
         values ('worker-a', 'maintenance', 'PgStorage', '', now()), ('worker-b', 'maintenance', 'PgStorage', '', now())",
    )
    .execute(&db.pool)
    .await
    .expect("workers");
    sqlx::query("update apalis.jobs set status = 'Running', lock_by = 'worker-a', lock_at = now() where id = $1")
        .bind(&id)
        .execute(&db.pool)
        .await
        .expect("lease to a");
    let ctx_a = JobContext {
        pool: db.pool.clone(),
        job_id: id.clone(),
        queue: Queue::Maintenance,
        kind: "engine.probe".into(),
        operation_id: None,
        worker: "worker-a".into(),
        attempts_before: 0,
        started_at: chrono::Utc::now(),
        retry_policy: Queue::Maintenance.retry_policy(),
        committed: Default::default(),
    };
    // While A holds the lease it can open its fenced transaction.
    ctx_a
        .begin_fenced()
        .await
        .expect("a holds the lease")
        .rollback()
        .await
        .expect("rollback");

    // A stalls; its job is rescued (apalis clears the lock and counts the attempt) and worker B takes it.
    sqlx::query(
        "update apalis.jobs set status = 'Running', lock_by = 'worker-b', attempts = attempts + 1 where id = $1",
    )
    .bind(&id)
    .execute(&db.pool)
    .await
    .expect("lease to b");
    assert!(matches!(
        ctx_a.begin_fenced().await,
        Err(JobError::LeaseLost)
    ));
    // The same worker name with a stale attempt count is just as stale.
    sqlx::query("update apalis.jobs set lock_by = 'worker-a' where id = $1")
        .bind(&id)
        .execute(&db.pool)
        .await
        .expect("lease back to a name");
    assert!(matches!(
        ctx_a.begin_fenced().await,
        Err(JobError::LeaseLost)
    ));
    assert_eq!(
        state_of(&db.pool, &id).await,
        "running",
        "the stale worker changed nothing"
    );
}

#[tokio::test]
async fn a_job_whose_arguments_cannot_be_decoded_goes_dead_and_the_worker_keeps_serving() {
    let db = TestDb::new().await.expect("db");
    let workers = InProcessWorkers::start(&db.pool, vec![Queue::Maintenance], fast_engine());
    // Bytes that are not JSON cannot even be inserted: that would end the worker that fetched them.
    let mut tx = db.pool.begin().await.expect("begin");
    let garbage = apalis::prelude::TaskBuilder::new(b"\xff not json".to_vec()).build();
    assert!(
        apalis_postgres::queries::push_tasks(&mut *tx, "maintenance", vec![garbage])
            .await
            .is_err()
    );
    tx.rollback().await.expect("rollback");
    // JSON that is not an envelope, and an envelope whose arguments do not fit its kind.
    let mut tx = db.pool.begin().await.expect("begin");
    let not_envelope = apalis::prelude::TaskBuilder::new(br#"{"hello": "world"}"#.to_vec()).build();
    apalis_postgres::queries::push_tasks(&mut *tx, "maintenance", vec![not_envelope])
        .await
        .expect("push");
    tx.commit().await.expect("commit");
    let mut mismatched = NewJob::new(&probe("x")).expect("job");
    mismatched.envelope.args = serde_json::json!({"key": 42});
    let mismatched = enqueue(&db.pool, mismatched).await;
    let good = enqueue(&db.pool, NewJob::new(&probe("after-garbage")).expect("job")).await;

    wait_for_state(&db.pool, &good, JobState::Done, Duration::from_secs(10)).await;
    wait_for_state(
        &db.pool,
        &mismatched,
        JobState::Dead,
        Duration::from_secs(10),
    )
    .await;
    let dead = control::list_jobs(
        &db.pool,
        &JobFilter {
            state: Some(JobState::Dead),
            ..JobFilter::default()
        },
        None,
        10,
    )
    .await
    .expect("list");
    assert_eq!(dead.len(), 2);
    let errors: Vec<String> =
        sqlx::query_scalar("select error from job_attempt where outcome <> 'succeeded' order by 1")
            .fetch_all(&db.pool)
            .await
            .expect("errors");
    assert!(
        errors.iter().any(|e| e.contains("not a valid envelope")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("invalid_job_arguments")),
        "{errors:?}"
    );
    workers.stop().await.expect("stop");
}

#[tokio::test]
async fn cancelling_by_filter_stops_pending_jobs_and_their_operations_but_not_others() {
    let db = TestDb::new().await.expect("db");
    let mut tx = db.pool.begin().await.expect("begin");
    let operation_id = operation::insert_tx(&mut tx, "probe", None, &serde_json::json!({}))
        .await
        .expect("op");
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let with_op = enqueue_tx(
        &mut tx,
        NewJob::new(&probe("c1"))
            .expect("job")
            .for_operation(operation_id)
            .run_at(later),
    )
    .await
    .expect("enqueue");
    let plain = enqueue_tx(
        &mut tx,
        NewJob::new(&probe("c2")).expect("job").run_at(later),
    )
    .await
    .expect("enqueue");
    let other = enqueue_tx(&mut tx, NewJob::new(&probe("keep")).expect("job"))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");

    let filter = JobFilter {
        state: Some(JobState::Scheduled),
        kind: Some("engine.probe".into()),
        ..JobFilter::default()
    };
    assert_eq!(
        control::count_jobs(&db.pool, &filter).await.expect("count"),
        2
    );
    let result = control::apply_action(&db.pool, JobAction::Cancel, &filter, "ops")
        .await
        .expect("cancel");
    let mut affected = result.affected.clone();
    affected.sort();
    let mut expected = vec![with_op.clone(), plain.clone()];
    expected.sort();
    assert_eq!(affected, expected);
    assert_eq!(state_of(&db.pool, &with_op).await, "cancelled");
    assert_eq!(state_of(&db.pool, &other).await, "pending");
    let op = operation::get(&db.pool, operation_id)
        .await
        .expect("get")
        .expect("op");
    assert_eq!(op.status, "cancelled");

    // Discarding removes the rows but keeps what happened to them.
    let discarded = control::apply_action(
        &db.pool,
        JobAction::Discard,
        &JobFilter {
            state: Some(JobState::Cancelled),
            ..JobFilter::default()
        },
        "ops",
    )
    .await
    .expect("discard");
    assert_eq!(discarded.affected.len(), 2);
    assert!(control::get_job(&db.pool, &plain)
        .await
        .expect("get")
        .is_none());
    let events: i64 = sqlx::query_scalar("select count(*) from job_event where job_id = $1")
        .bind(&plain)
        .fetch_one(&db.pool)
        .await
        .expect("events");
    assert_eq!(events, 2, "cancel and discard are both on record");
}

#[tokio::test]
async fn pruning_deletes_old_finished_jobs_and_keeps_dead_and_recent_ones() {
    let db = TestDb::new().await.expect("db");
    let old_done = enqueue(&db.pool, NewJob::new(&probe("p1")).expect("job")).await;
    let old_dead = enqueue(&db.pool, NewJob::new(&probe("p2")).expect("job")).await;
    let recent_done = enqueue(&db.pool, NewJob::new(&probe("p3")).expect("job")).await;
    sqlx::query("update apalis.jobs set status = 'Done', done_at = now() - interval '10 days' where id = $1")
        .bind(&old_done)
        .execute(&db.pool)
        .await
        .expect("age");
    sqlx::query("update apalis.jobs set status = 'Killed', done_at = now() - interval '10 days' where id = $1")
        .bind(&old_dead)
        .execute(&db.pool)
        .await
        .expect("age");
    sqlx::query("update apalis.jobs set status = 'Done', done_at = now() where id = $1")
        .bind(&recent_done)
        .execute(&db.pool)
        .await
        .expect("age");
    let workers = InProcessWorkers::start(&db.pool, vec![Queue::Maintenance], fast_engine());
    let prune = enqueue(
        &db.pool,
        NewJob::new(&paycore_jobs::engine::builtin::Prune {}).expect("job"),
    )
    .await;
    wait_for_state(&db.pool, &prune, JobState::Done, Duration::from_secs(10)).await;
    assert!(control::get_job(&db.pool, &old_done)
        .await
        .expect("get")
        .is_none());
    assert!(control::get_job(&db.pool, &old_dead)
        .await
        .expect("get")
        .is_some());
    assert!(control::get_job(&db.pool, &recent_done)
        .await
        .expect("get")
        .is_some());
    workers.stop().await.expect("stop");
}
