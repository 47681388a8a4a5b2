//! Inbound provider webhooks, routed: an event the inbox (`providers::inbox`) verified and recorded for the first
//! time is turned into the job that acts on it, in the same transaction. Jobs never trust the webhook's content:
//! they ask the provider.

use std::net::IpAddr;

use chrono::Utc;
use serde_json::Value;
use sqlx::PgPool;

use crate::domains::deposit::{self, BankTransferDeposit, VerifyDeposit};
use crate::domains::payout::{self, SyncPayout};
use crate::engine::enqueue_to_sqlx;
use crate::engine::{enqueue_tx, NewJob, Queue};
use crate::platform::config::ProvidersConfig;
use crate::providers::inbox::{self, WebhookRejection};
use crate::providers::ProviderName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAck {
    /// Recorded; its job is queued.
    Accepted { event_id: String },
    /// Seen before (a duplicate delivery or a replay): nothing changed.
    Duplicate { event_id: String },
    /// Verified but of a kind PayCore does not act on.
    Ignored { event_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Rejected(#[from] WebhookRejection),
    // Not `transparent`: the sqlx error stays in the source chain, where the api recognises a lost database.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// Verifies, records and queues a Paystack webhook.
pub async fn receive_paystack(
    pool: &PgPool,
    config: &ProvidersConfig,
    remote_ip: Option<IpAddr>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<WebhookAck, WebhookError> {
    let (event_id, event, payload) =
        inbox::verify_paystack(config, remote_ip, signature, body, Utc::now())?;
    let data = &payload["data"];
    let reference = data
        .get("reference")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut tx = pool.begin().await?;
    let inserted =
        inbox::record_tx(&mut tx, ProviderName::Paystack, &event_id, &event, &payload).await?;
    let Some(webhook_event_id) = inserted else {
        tx.commit().await?;
        return Ok(WebhookAck::Duplicate { event_id });
    };
    let job = match event.as_str() {
        "charge.success" => {
            match deposit::by_reference_tx(&mut tx, ProviderName::Paystack, &reference).await? {
                Some(found) => Some(
                    NewJob::new(&VerifyDeposit {
                        deposit_id: found.deposit_id,
                        webhook_event_id: Some(webhook_event_id),
                    })
                    .map(|job| job.for_operation(found.deposit_id)),
                ),
                None if !reference.is_empty() => Some(NewJob::new(&BankTransferDeposit {
                    reference: reference.clone(),
                    webhook_event_id: Some(webhook_event_id),
                })),
                None => None,
            }
        }
        "transfer.success" | "transfer.failed" | "transfer.reversed" => {
            match payout::by_reference_tx(&mut tx, &reference).await? {
                Some(found) => Some(
                    NewJob::new(&SyncPayout {
                        payout_id: found.payout_id,
                        webhook_event_id: Some(webhook_event_id),
                    })
                    .map(|job| job.for_operation(found.payout_id)),
                ),
                None => None,
            }
        }
        _ => None,
    };
    let ack = match job {
        Some(job) => {
            let job = job.map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            enqueue_tx(&mut tx, job).await.map_err(enqueue_to_sqlx)?;
            WebhookAck::Accepted { event_id }
        }
        None => {
            inbox::mark_processed_tx(&mut tx, webhook_event_id, "ignored").await?;
            WebhookAck::Ignored { event_id }
        }
    };
    tx.commit().await?;
    if matches!(ack, WebhookAck::Accepted { .. }) {
        crate::engine::wake(pool, &[Queue::Payments]).await;
    }
    Ok(ack)
}
