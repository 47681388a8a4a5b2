//! Operation status changes, from Postgres LISTEN/NOTIFY to whoever waits in this api process.
//!
//! One listener connection per api process follows the `paycore_operation` channel and fans the events out over a
//! broadcast channel; `Prefer: wait` requests subscribe and return as soon as their operation settles. Because the
//! events come from the database, this works whichever api process or worker changed the operation.

use std::time::Duration;

use paycore_jobs::{
    notify::NOTIFICATION_CHANNEL,
    operation::{self, Operation, OperationStatus, OPERATION_CHANNEL},
};
use serde::Deserialize;
use sqlx::{postgres::PgListener, PgPool};
use tokio::sync::broadcast;
use uuid::Uuid;

/// Longest wait a client may ask for (RFC 7240 `Prefer: wait=N`).
pub const WAIT_SECONDS_MAX: u64 = 30;
/// Events buffered per subscriber; a slow one re-reads the database instead.
const EVENT_BUFFER: usize = 4096;
/// A waiter re-reads the operation this often even without an event, in case one was missed.
const WAIT_RECHECK: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Deserialize)]
pub struct OperationEvent {
    pub operation_id: Uuid,
    pub owner_id: Option<Uuid>,
    pub status: String,
}

/// A new in-app notification (from `paycore_notification`).
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationEvent {
    pub notification_id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
}

#[derive(Clone)]
pub struct Events {
    sender: broadcast::Sender<OperationEvent>,
    notifications: broadcast::Sender<NotificationEvent>,
}

impl Events {
    /// Starts the listener task.
    pub fn start(pool: PgPool) -> Self {
        let (sender, _) = broadcast::channel(EVENT_BUFFER);
        let (notifications, _) = broadcast::channel(EVENT_BUFFER);
        let events = Self {
            sender,
            notifications,
        };
        let forward = events.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = listen(&pool, &forward).await {
                    tracing::warn!(%error, "operation listener failed; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        events
    }

    pub fn subscribe(&self) -> broadcast::Receiver<OperationEvent> {
        self.sender.subscribe()
    }

    pub fn subscribe_notifications(&self) -> broadcast::Receiver<NotificationEvent> {
        self.notifications.subscribe()
    }
}

async fn listen(pool: &PgPool, forward: &Events) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([OPERATION_CHANNEL, NOTIFICATION_CHANNEL])
        .await?;
    loop {
        let notification = listener.recv().await?;
        // No receivers is fine: nobody is waiting.
        if notification.channel() == NOTIFICATION_CHANNEL {
            if let Ok(event) = serde_json::from_str::<NotificationEvent>(notification.payload()) {
                let _ = forward.notifications.send(event);
            }
        } else if let Ok(event) = serde_json::from_str::<OperationEvent>(notification.payload()) {
            let _ = forward.sender.send(event);
        }
    }
}

/// `Prefer: wait=N` (RFC 7240), capped; `None` when the client did not ask to wait.
pub fn parse_prefer_wait(header: Option<&str>) -> Option<Duration> {
    header?
        .split(',')
        .filter_map(|pref| pref.trim().strip_prefix("wait="))
        .find_map(|seconds| seconds.trim().parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds.min(WAIT_SECONDS_MAX)))
}

/// Waits until the operation settles (succeeded, failed or cancelled) or `timeout` passes.
pub async fn wait_terminal(
    pool: &PgPool,
    events: &Events,
    operation_id: Uuid,
    timeout: Duration,
) -> Result<Option<Operation>, sqlx::Error> {
    wait_until(pool, events, operation_id, timeout, |status| {
        status.is_terminal()
    })
    .await
}

/// Waits until the operation is no longer in the engine's hands (settled, or waiting for a person:
/// `requires_action`, `requires_approval`) or `timeout` passes; returns it then, or `None` on timeout.
pub async fn wait_settled(
    pool: &PgPool,
    events: &Events,
    operation_id: Uuid,
    timeout: Duration,
) -> Result<Option<Operation>, sqlx::Error> {
    wait_until(pool, events, operation_id, timeout, |status| {
        !matches!(
            status,
            OperationStatus::Pending | OperationStatus::Processing
        )
    })
    .await
}

async fn wait_until(
    pool: &PgPool,
    events: &Events,
    operation_id: Uuid,
    timeout: Duration,
    done: impl Fn(OperationStatus) -> bool,
) -> Result<Option<Operation>, sqlx::Error> {
    let mut receiver = events.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(op) = operation::get(pool, operation_id).await? {
            if done(op.status()) {
                return Ok(Some(op));
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        let until = (now + WAIT_RECHECK).min(deadline);
        loop {
            match tokio::time::timeout_at(until, receiver.recv()).await {
                // An event that names a status the waiter does not wait for needs no re-read.
                Ok(Ok(event)) if event.operation_id == operation_id => {
                    match OperationStatus::parse(&event.status) {
                        Some(status) if !done(status) => continue,
                        _ => break,
                    }
                }
                Ok(Ok(_)) => continue,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_wait_is_parsed_and_capped() {
        assert_eq!(
            parse_prefer_wait(Some("wait=5")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_prefer_wait(Some("respond-async, wait=10")),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_prefer_wait(Some("wait=3600")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_prefer_wait(Some("return=minimal")), None);
        assert_eq!(parse_prefer_wait(Some("wait=soon")), None);
        assert_eq!(parse_prefer_wait(None), None);
    }
}
