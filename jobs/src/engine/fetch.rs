//! The worker's job source: apalis's fetch loop (`Persisted`) over `apalis.jobs`, fetching only when there may be
//! work.
//!
//! apalis-postgres's own backend fetches whenever its worker task is polled with an empty buffer, and that task is
//! polled on every wake-up of any kind: each finished job, each insert event, each heartbeat. In the benchmark that
//! was seven fetches per transfer, each a `BEGIN`, a `get_jobs` and a `COMMIT`, for about two jobs. Here a fetch
//! runs only when
//!
//! * the queue was woken since this loop's last fetch began (an insert event for the queue, see
//!   [`crate::engine::wake`]),
//! * the last fetch filled a whole batch (more are probably waiting): then the next batch is fetched at once, while
//!   this one runs, and handed back if the loop stops before it needs it,
//! * or nothing woke the loop for `idle_poll` (a delayed retry became due, or a wake-up was lost): the poll.
//!
//! Otherwise the fetch future waits, inside apalis's fetch state, for one of those. The wait is bounded by
//! `idle_poll` (the heartbeat), so heartbeats and shutdown are never held up for longer than that; shutdown drops the
//! waiting future at once. One listener per worker process receives the insert events for all its queues, instead
//! of one listening connection per fetch loop.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use apalis::prelude::{Backend, WorkerContext};
use apalis_codec::json::JsonCodec;
use apalis_core::backend::{
    finalize::Durable,
    persistence::{Persisted, Persistence, State, TaskEvent, TaskPersistLayer},
    BackendConfig, WireFormatBackend,
};
use apalis_postgres::{queries, Config, Error, PgTask};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{oneshot, Notify};

use super::queue::Queue;

/// How long a listener that lost its connection waits before it connects again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Wake-ups of one queue in this process: a counter of insert events and a signal for the loops waiting on them.
#[derive(Default)]
struct QueueWakes {
    generation: AtomicU64,
    signal: Notify,
}

impl QueueWakes {
    /// One waiting loop fetches (a queue with several loops would otherwise send them all to fetch the same
    /// jobs); a loop that was busy fetches when it comes back, having missed the wake-up it did not see.
    fn wake(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.signal.notify_one();
    }

    /// Every loop fetches.
    fn wake_every_loop(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.signal.notify_waiters();
    }
}

/// The insert events of a worker process's queues, received on one connection.
pub struct Wakes {
    queues: HashMap<&'static str, Arc<QueueWakes>>,
}

impl Wakes {
    /// Starts listening for the insert events of `queues`; the listener task ends when the returned handle is
    /// aborted.
    pub fn listen(pool: PgPool, queues: &[Queue]) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let wakes = Arc::new(Self {
            queues: queues
                .iter()
                .map(|queue| (queue.name(), Arc::default()))
                .collect(),
        });
        let task = tokio::spawn(listen(pool, Arc::clone(&wakes)));
        (wakes, task)
    }

    fn of(&self, queue: Queue) -> Arc<QueueWakes> {
        self.queues.get(queue.name()).cloned().unwrap_or_default()
    }

    fn wake_all(&self) {
        self.queues
            .values()
            .for_each(|queue| queue.wake_every_loop());
    }
}

#[derive(serde::Deserialize)]
struct InsertEvent {
    job_type: String,
}

async fn listen(pool: PgPool, wakes: Arc<Wakes>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "could not connect the job listener; retrying");
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        if let Err(error) = listener.listen("apalis::job::insert").await {
            tracing::warn!(%error, "could not listen for job inserts; retrying");
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        }
        // Events sent while the listener was away are lost: every loop fetches once.
        wakes.wake_all();
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let Ok(event) = serde_json::from_str::<InsertEvent>(notification.payload())
                    else {
                        continue;
                    };
                    if let Some(queue) = wakes.queues.get(event.job_type.as_str()) {
                        queue.wake();
                    }
                }
                // The connection was lost; `try_recv` reconnects on the next call.
                Ok(None) => wakes.wake_all(),
                Err(error) => {
                    tracing::warn!(%error, "the job listener failed; reconnecting");
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    break;
                }
            }
        }
    }
}

/// What one fetch loop remembers between fetches (apalis clones the persistence for each call).
struct LoopState {
    /// The queue's wake-up count when the last fetch began.
    seen: AtomicU64,
    /// Fetch without waiting: at start, and after a fetch that filled its batch.
    fetch_at_once: AtomicBool,
    /// The next batch, fetched while the last full one runs.
    ahead: Mutex<Option<Prefetch>>,
}

impl LoopState {
    fn take_ahead(&self) -> Option<Prefetch> {
        self.ahead
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

type Fetched = Result<Vec<PgTask>, Error>;

/// Runs `get_jobs` for `worker` in its own task. `get_jobs` is one statement: no transaction around it. If the
/// answer is no longer wanted when it arrives (its receiver was dropped: shutdown), the jobs it locked are handed
/// back instead of staying locked until a rescue.
fn spawn_fetch(
    pool: &PgPool,
    config: &Config,
    worker: &WorkerContext,
) -> oneshot::Receiver<Fetched> {
    let (pool, config, worker) = (pool.clone(), config.clone(), worker.clone());
    let (answer, fetched) = oneshot::channel();
    tokio::spawn(async move {
        let result = match pool.acquire().await {
            Ok(mut conn) => queries::fetch_next(&mut *conn, &config, &worker).await,
            Err(error) => Err(error.into()),
        };
        if let Err(Ok(tasks)) = answer.send(result) {
            hand_back(&pool, &config, worker.name(), &tasks).await;
        }
    });
    fetched
}

async fn received(fetched: &mut oneshot::Receiver<Fetched>) -> Fetched {
    fetched
        .await
        .map_err(|_| Error::Database(sqlx::Error::WorkerCrashed))?
}

/// A fetch started before its jobs are needed. Its jobs are locked by this loop as soon as it lands, so whoever
/// drops it unused hands them back ([`Prefetch::hand_back`] at shutdown; `Drop` as the last resort).
struct Prefetch {
    fetched: oneshot::Receiver<Fetched>,
    pool: PgPool,
    config: Config,
    worker: String,
}

impl Prefetch {
    fn start(pool: &PgPool, config: &Config, worker: &WorkerContext) -> Self {
        Self {
            fetched: spawn_fetch(pool, config, worker),
            pool: pool.clone(),
            config: config.clone(),
            worker: worker.name().to_owned(),
        }
    }

    async fn result(mut self) -> Fetched {
        received(&mut self.fetched).await
    }

    /// Waits for the fetch and returns its jobs to the queue.
    async fn hand_back(mut self) {
        if let Ok(tasks) = received(&mut self.fetched).await {
            hand_back(&self.pool, &self.config, &self.worker, &tasks).await;
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // A fetch still running finds its receiver closed and hands back itself; one that landed is handed back
        // here.
        self.fetched.close();
        let Ok(Ok(tasks)) = self.fetched.try_recv() else {
            return;
        };
        let (pool, config, worker) = (self.pool.clone(), self.config.clone(), self.worker.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { hand_back(&pool, &config, &worker, &tasks).await });
            }
            Err(_) => tracing::warn!(
                count = tasks.len(),
                "jobs fetched ahead were dropped outside the runtime; they run again after a rescue"
            ),
        }
    }
}

#[derive(Clone)]
struct Fetcher {
    pool: PgPool,
    config: Config,
    wakes: Arc<QueueWakes>,
    idle_poll: Duration,
    state: Arc<LoopState>,
}

impl Fetcher {
    /// Records that a fetch begins: wake-ups from now on are news to it.
    fn began_fetch(&self) {
        self.state.seen.store(
            self.wakes.generation.load(Ordering::Acquire),
            Ordering::Release,
        );
    }

    /// Waits until a fetch may find something: a wake-up since the last fetch began, a full last batch, or
    /// `idle_poll` without either.
    async fn until_worth_fetching(&self) {
        if self.state.fetch_at_once.load(Ordering::Acquire) {
            return;
        }
        let signalled = self.wakes.signal.notified();
        tokio::pin!(signalled);
        // Registered before the counter is read, so a wake-up between the two is not missed.
        signalled.as_mut().enable();
        if self.wakes.generation.load(Ordering::Acquire) != self.state.seen.load(Ordering::Acquire)
        {
            return;
        }
        let _ = tokio::time::timeout(self.idle_poll, signalled).await;
    }
}

impl Persistence for Fetcher {
    type Compact = Vec<u8>;
    type Response = Value;
    type Error = Error;

    async fn register(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let queue = self.config.queue.as_ref();
        queries::reenqueue_orphaned(&mut *tx, queue, self.config.orphaned_duration().as_secs())
            .await?;
        // apalis-postgres's `register_worker`, whose timestamp type is private to that crate.
        let registered = sqlx::query(
            "insert into apalis.workers (id, worker_type, storage_name, layers, last_seen)
             values ($1, $2, $3, $4, now())
             on conflict (id) do update set worker_type = excluded.worker_type,
                 storage_name = excluded.storage_name, layers = excluded.layers, last_seen = now()
             where pg_try_advisory_lock(hashtext(workers.id))",
        )
        .bind(worker.name())
        .bind(queue)
        .bind("PgStorage")
        .bind(worker.get_service())
        .execute(&mut *tx)
        .await?;
        if registered.rows_affected() == 0 {
            return Err(Error::WorkerAlreadyExists(worker.name().to_owned()));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn heartbeat(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let queue = self.config.queue.as_ref();
        queries::keep_alive(&mut *tx, queue, worker).await?;
        queries::reenqueue_orphaned(&mut *tx, queue, self.config.orphaned_duration().as_secs())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn fetch_next(&mut self, worker: &WorkerContext) -> Result<Vec<PgTask>, Error> {
        let tasks = match self.state.take_ahead() {
            Some(ahead) => ahead.result().await?,
            None => {
                self.until_worth_fetching().await;
                self.began_fetch();
                received(&mut spawn_fetch(&self.pool, &self.config, worker)).await?
            }
        };
        let full = tasks.len() >= self.config.batch_size;
        self.state.fetch_at_once.store(full, Ordering::Release);
        if full {
            // More are probably waiting: fetch them now, while this batch runs, so that the loop's jobs do not all
            // sit finished while it fetches the next batch (measured with the no-op drain).
            self.began_fetch();
            let ahead = Prefetch::start(&self.pool, &self.config, worker);
            *self
                .state
                .ahead
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ahead);
        }
        Ok(tasks)
    }

    async fn reenqueue_abandoned(
        &mut self,
        tasks: Vec<PgTask>,
        worker: &WorkerContext,
    ) -> Result<u64, Error> {
        let ids = task_ids(&tasks);
        let mut tx = self.pool.begin().await?;
        let count =
            queries::reenqueue_abandoned(&mut *tx, self.config.queue.as_ref(), worker.name(), &ids)
                .await?;
        tx.commit().await?;
        Ok(count)
    }

    async fn handle_events(
        &mut self,
        _events: Vec<TaskEvent<Value>>,
        _worker: &WorkerContext,
    ) -> Result<(), Error> {
        // apalis's lock and acknowledgement events are switched off (see `worker::storage_for`): the worker records
        // every outcome itself.
        Ok(())
    }

    async fn push_tasks(&mut self, tasks: Vec<PgTask>) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        queries::push_tasks(&mut *tx, self.config.queue.as_ref(), tasks).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn task_ids(tasks: &[PgTask]) -> Vec<String> {
    tasks
        .iter()
        .filter_map(|task| task.task_id().map(ToString::to_string))
        .collect()
}

/// Returns jobs fetched for a loop that is gone to the queue.
async fn hand_back(pool: &PgPool, config: &Config, worker: &str, tasks: &[PgTask]) {
    let ids = task_ids(tasks);
    if ids.is_empty() {
        return;
    }
    let result = match pool.acquire().await {
        Ok(mut conn) => {
            queries::reenqueue_abandoned(&mut *conn, config.queue.as_ref(), worker, &ids).await
        }
        Err(error) => Err(error.into()),
    };
    if let Err(error) = result {
        tracing::warn!(%error, count = ids.len(), "could not hand back jobs fetched during shutdown");
    }
}

/// One fetch loop's job source for apalis's worker.
pub struct JobSource {
    persistence: Persisted<Fetcher>,
    codec: JsonCodec,
    state: Arc<LoopState>,
    /// At shutdown: handing back the jobs fetched ahead. (In a mutex only so that the source is `Sync`; it is
    /// reached through `&mut self`, never locked.)
    closing: Mutex<Option<futures::future::BoxFuture<'static, ()>>>,
}

impl Clone for JobSource {
    fn clone(&self) -> Self {
        Self {
            persistence: self.persistence.clone(),
            codec: self.codec.clone(),
            state: Arc::clone(&self.state),
            closing: Mutex::new(None),
        }
    }
}

impl JobSource {
    /// A fetch loop of `config.queue`, woken by `wakes` and polling every `idle_poll` when nothing wakes it.
    pub fn new(
        pool: &PgPool,
        config: Config,
        queue: Queue,
        wakes: &Wakes,
        idle_poll: Duration,
    ) -> Self {
        let state = Arc::new(LoopState {
            seen: AtomicU64::new(0),
            fetch_at_once: AtomicBool::new(true),
            ahead: Mutex::new(None),
        });
        Self {
            persistence: Persisted::new(Fetcher {
                pool: pool.clone(),
                config,
                wakes: wakes.of(queue),
                idle_poll,
                state: Arc::clone(&state),
            }),
            codec: JsonCodec::default(),
            state,
            closing: Mutex::new(None),
        }
    }
}

impl Backend for JobSource {
    type Task = PgTask;
    type Error = Error;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Error>> {
        let heartbeat = self.persistence.config.heartbeat_interval;
        self.persistence.poll_ready(cx, worker, heartbeat)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<PgTask, Error>>> {
        let next = self.persistence.poll_next(cx, worker);
        if next.is_pending() && matches!(self.persistence.state(), State::Ready) {
            // A fetch came back empty and apalis parked the loop until some other wake-up. Be polled again at once
            // instead: the heartbeat runs if it is due, and the next fetch waits (see `until_worth_fetching`).
            cx.waker().wake_by_ref();
        }
        next
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Error>> {
        // apalis hands back the buffered jobs; then the jobs fetched ahead go back too.
        if let Err(error) = std::task::ready!(self.persistence.poll_close(cx, worker)) {
            return Poll::Ready(Err(error));
        }
        let closing = self
            .closing
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if closing.is_none() {
            let Some(ahead) = self.state.take_ahead() else {
                return Poll::Ready(Ok(()));
            };
            *closing = Some(Box::pin(ahead.hand_back()));
        }
        if let Some(handing_back) = closing.as_mut() {
            std::task::ready!(handing_back.as_mut().poll(cx));
        }
        *closing = None;
        Poll::Ready(Ok(()))
    }
}

impl BackendConfig for JobSource {
    type Args = Value;
    type Kind = Durable;
    type Id = ulid::Ulid;
    type Config = Config;
    type Layer = TaskPersistLayer<JsonCodec<Value>, Value>;

    fn config(&self) -> &Config {
        &self.persistence.config
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        let batch_size = self.persistence.config.batch_size;
        self.persistence
            .layer(JsonCodec::<Value>::default(), batch_size)
            .persist_results(false)
            .lock_tasks(false)
    }
}

impl WireFormatBackend for JobSource {
    type Codec = JsonCodec;
    type Compact = Vec<u8>;

    fn codec(&self) -> &JsonCodec {
        &self.codec
    }
}
