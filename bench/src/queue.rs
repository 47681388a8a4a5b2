//! The `queue` scenario: the job engine alone, in this process, against a fresh database on the same PostgreSQL.
//!
//! 1. Transactional enqueue rate: clients loop `begin; enqueue_tx(one job); commit`, at 1 and 8 clients.
//! 2. Drain rate: N no-op jobs are inserted on each queue, then that queue's worker is started and timed until
//!    every job is done.
//! 3. Idle pickup latency: one probe job at a time is committed to an idle worker; its latency is the time from
//!    the commit to the moment its handler started (recorded by the job itself).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use apalis::prelude::{TaskBuilder, TaskId};
use paycore_jobs::app;
use paycore_jobs::engine::config::EngineConfig;
use paycore_jobs::engine::{
    builtin::{Noop, Probe},
    enqueue::Envelope,
    enqueue_tx,
    worker::{run_workers, WorkerOptions},
    NewJob, Queue,
};
use sqlx::PgPool;
use tokio::sync::oneshot;

use crate::report::{machine, percentiles, Measurement, Options, ScenarioResult};

/// Rows per insert statement when preparing a drain.
const DRAIN_INSERT_BATCH: usize = 1_000;

struct Workers {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start_workers(pool: &PgPool, queue: Queue, engine: &EngineConfig) -> Workers {
    let (stop, stopped) = oneshot::channel::<()>();
    let options = WorkerOptions::new(vec![queue], engine.clone());
    let task = tokio::spawn(run_workers(
        pool.clone(),
        app::registry(&paycore_jobs::platform::config::Config {
            engine: engine.clone(),
            ..default_config()
        }),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    Workers { stop, task }
}

impl Workers {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

pub async fn run(options: &Options) -> anyhow::Result<ScenarioResult> {
    let jobs = options.number("jobs", 10_000)? as usize;
    let pickups = options.number("pickups", 200)? as usize;
    let seconds = options.number("seconds", 5)?;
    let (pool, _) = crate::system::fresh_database().await?;
    // The worker configuration of the HTTP scenarios (`system.rs`: payments=64, batch 100), on every queue.
    let concurrency = options.number("concurrency", 64)? as usize;
    let engine = EngineConfig {
        batch_size: options.number("batch", 100)? as usize,
        concurrency: Queue::ALL.iter().map(|q| (*q, concurrency)).collect(),
        ..EngineConfig::default()
    };
    let started_at = chrono::Utc::now().to_rfc3339();
    let mut measurements = Vec::new();

    for clients in [1u64, 8] {
        let rate = enqueue_rate(&pool, clients, Duration::from_secs(seconds)).await?;
        eprintln!("enqueue: {clients} client(s): {rate:.0} jobs/s");
        measurements.push(Measurement {
            name: format!("transactional single enqueue, {clients} client(s)"),
            value: rate,
            unit: "jobs/s".into(),
            target: None,
            detail: serde_json::json!({"clients": clients, "seconds": seconds}),
        });
    }
    sqlx::query("delete from apalis.jobs")
        .execute(&pool)
        .await?;

    let drain_queues: Vec<Queue> = if jobs == 0 {
        Vec::new()
    } else {
        Queue::ALL.to_vec()
    };
    let drains_began = crate::system::MachineTicks::now();
    for queue in drain_queues {
        // Each queue starts from an empty table, as after a prune and the vacuum that follows it, so results do not
        // depend on the order (nor on when autovacuum last came by).
        sqlx::query("delete from apalis.jobs where status = 'Done'")
            .execute(&pool)
            .await?;
        sqlx::raw_sql("vacuum apalis.jobs").execute(&pool).await?;
        let rate = drain_rate(&pool, queue, jobs, &engine).await?;
        eprintln!("drain: {queue}: {rate:.0} jobs/s");
        measurements.push(Measurement {
            name: format!("drain of {jobs} no-op jobs, queue {queue}, concurrency {concurrency}"),
            value: rate,
            unit: "jobs/s".into(),
            target: Some("≥ 5,000 jobs/s".into()),
            detail: serde_json::json!({"jobs": jobs, "batch_size": engine.batch_size,
                "concurrency": concurrency}),
        });
    }

    if jobs > 0 {
        let stolen = crate::system::MachineTicks::now().stolen_percent_since(&drains_began);
        eprintln!("drains: {stolen:.0} % of the machine's CPU time was stolen by the hypervisor");
        measurements.push(Measurement {
            name: "CPU time stolen by the hypervisor during the drains".into(),
            value: stolen,
            unit: "%".into(),
            target: None,
            detail: serde_json::json!({}),
        });
    }

    let latency = pickup_latency(&pool, pickups, &engine).await?;
    eprintln!(
        "pickup: p50 {:.1} ms, p99 {:.1} ms",
        latency.p50_ms, latency.p99_ms
    );
    measurements.push(Measurement {
        name: "idle pickup latency p50".into(),
        value: latency.p50_ms,
        unit: "ms".into(),
        target: None,
        detail: serde_json::to_value(&latency)?,
    });
    measurements.push(Measurement {
        name: "idle pickup latency p99".into(),
        value: latency.p99_ms,
        unit: "ms".into(),
        target: Some("≤ 50 ms".into()),
        detail: serde_json::to_value(&latency)?,
    });

    let left: i64 = sqlx::query_scalar("select count(*) from apalis.jobs where status <> 'Done'")
        .fetch_one(&pool)
        .await?;
    let correctness = vec![format!("jobs not done after the run: {left} (expected 0)")];
    Ok(ScenarioResult {
        scenario: "queue".into(),
        started_at,
        machine: machine(),
        measurements,
        correctness,
        levels: Vec::new(),
        pgbench_tps: None,
        peak_rss_mib: None,
    })
}

async fn enqueue_rate(pool: &PgPool, clients: u64, duration: Duration) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let pool = pool.clone();
        let count = Arc::clone(&count);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let mut tx = pool.begin().await?;
                enqueue_tx(&mut tx, NewJob::new(&Noop {})?.on_queue(Queue::Payments)).await?;
                tx.commit().await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / duration.as_secs_f64())
}

async fn drain_rate(
    pool: &PgPool,
    queue: Queue,
    jobs: usize,
    engine: &EngineConfig,
) -> anyhow::Result<f64> {
    let payload = serde_json::to_vec(&Envelope {
        kind: "engine.noop".into(),
        operation_id: None,
        args: serde_json::json!({}),
    })?;
    let mut remaining = jobs;
    while remaining > 0 {
        let batch = remaining.min(DRAIN_INSERT_BATCH);
        let tasks = (0..batch)
            .map(|_| {
                TaskBuilder::new(payload.clone())
                    .task_id(TaskId::from_ulid(ulid::Ulid::generate()))
                    .build()
            })
            .collect();
        let mut tx = pool.begin().await?;
        apalis_postgres::queries::push_tasks(&mut *tx, queue.name(), tasks).await?;
        tx.commit().await?;
        remaining -= batch;
    }
    // Both ends of the drain are read from the database's clock: the start just before the worker starts, the end
    // from the last job's `done_at`. So the check for the end can be rare: checked every 20 ms, its count of the
    // unfinished jobs took more of the server than the drain it measured.
    let started = Instant::now();
    let started_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(pool)
        .await?;
    let workers = start_workers(pool, queue, engine);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let left: i64 = sqlx::query_scalar(
            "select count(*) from apalis.jobs where job_type = $1 and status <> 'Done'",
        )
        .bind(queue.name())
        .fetch_one(pool)
        .await?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "drain of {queue} did not finish"
        );
    }
    let finished_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select max(done_at) from apalis.jobs where job_type = $1")
            .bind(queue.name())
            .fetch_one(pool)
            .await?;
    workers.stop().await?;
    let elapsed = (finished_at - started_at).to_std()?;
    Ok(jobs as f64 / elapsed.as_secs_f64())
}

async fn pickup_latency(
    pool: &PgPool,
    samples: usize,
    engine: &EngineConfig,
) -> anyhow::Result<crate::report::Percentiles> {
    let workers = start_workers(pool, Queue::Maintenance, engine);
    // Let the worker register and settle into its idle wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies = Vec::with_capacity(samples);
    for index in 0..samples {
        let key = format!("pickup-{index}");
        let mut tx = pool.begin().await?;
        let id = enqueue_tx(
            &mut tx,
            NewJob::new(&Probe {
                key,
                sleep_ms: 0,
                fail_times: 0,
                permanent: false,
            })?,
        )
        .await?;
        tx.commit().await?;
        let committed = chrono::Utc::now();
        paycore_jobs::engine::wake(pool, &[Queue::Maintenance]).await;
        let started = loop {
            let started: Option<chrono::DateTime<chrono::Utc>> =
                sqlx::query_scalar("select started_at from job_attempt where job_id = $1")
                    .bind(&id)
                    .fetch_optional(pool)
                    .await?;
            if let Some(started) = started {
                break started;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        latencies.push((started - committed).to_std().unwrap_or(Duration::ZERO));
        // Idle again before the next sample.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    workers.stop().await?;
    Ok(percentiles(latencies))
}

/// Development defaults (no provider is called by the no-op jobs this scenario runs).
fn default_config() -> paycore_jobs::platform::config::Config {
    let lookup = |_: &str| None;
    paycore_jobs::platform::config::Config::from_env(&paycore_jobs::platform::config::Env::new(
        &lookup,
    ))
    .unwrap_or_else(|error| panic!("the default configuration is valid: {error}"))
}
