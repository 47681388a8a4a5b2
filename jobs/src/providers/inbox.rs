//! The inbox of provider webhooks: each event verified and recorded once, then marked processed by the job that
//! acted on it. What an event sets in motion is the domains' business (`domains::webhook` routes them).
//!
//! Verification, in order: the optional IP allow-list; the signature (Paystack: hex HMAC-SHA512 of the raw body
//! under the secret key, `x-paystack-signature`, compared in constant time); the payload's shape; its signed
//! timestamp (the event's own `paid_at` / `updated_at` / `created_at`, inside the body the signature covers), which
//! must lie within the tolerance window; and replay protection by event id (`<event>:<data.id>`), unique per
//! provider in `webhook_event`.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use crate::platform::config::ProvidersConfig;
use crate::providers::{signature::verify_hmac_sha512_hex, ProviderName};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    #[error("webhooks are not accepted from this address")]
    IpNotAllowed,
    #[error("the signature is missing or does not match the body")]
    InvalidSignature,
    #[error("the body is not a webhook event: {0}")]
    InvalidPayload(String),
    #[error("the event carries no timestamp")]
    MissingTimestamp,
    #[error("the event's timestamp is outside the accepted window")]
    StaleTimestamp,
}

impl WebhookRejection {
    pub fn code(&self) -> &'static str {
        match self {
            Self::IpNotAllowed => "webhook_ip_not_allowed",
            Self::InvalidSignature => "invalid_signature",
            Self::InvalidPayload(_) => "invalid_payload",
            Self::MissingTimestamp => "missing_timestamp",
            Self::StaleTimestamp => "stale_webhook",
        }
    }
}

fn event_time(data: &Value) -> Option<DateTime<Utc>> {
    [
        "paid_at",
        "updated_at",
        "updatedAt",
        "created_at",
        "createdAt",
    ]
    .iter()
    .filter_map(|key| data.get(*key).and_then(Value::as_str))
    .find_map(|raw| DateTime::parse_from_rfc3339(raw).ok())
    .map(|at| at.with_timezone(&Utc))
}

/// Checks a Paystack webhook and returns `(event_id, event_type, payload)`.
pub fn verify_paystack(
    config: &ProvidersConfig,
    remote_ip: Option<IpAddr>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(String, String, Value), WebhookRejection> {
    if !config.webhook_allowed_ips.is_empty()
        && !remote_ip.is_some_and(|ip| config.webhook_allowed_ips.contains(&ip))
    {
        return Err(WebhookRejection::IpNotAllowed);
    }
    let signature = signature.ok_or(WebhookRejection::InvalidSignature)?;
    if !verify_hmac_sha512_hex(config.paystack_secret_key.expose(), body, signature) {
        return Err(WebhookRejection::InvalidSignature);
    }
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookRejection::InvalidPayload(e.to_string()))?;
    let event = payload
        .get("event")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty() && e.len() <= 100)
        .ok_or_else(|| WebhookRejection::InvalidPayload("no event name".into()))?
        .to_owned();
    let data = payload
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| WebhookRejection::InvalidPayload("no data object".into()))?;
    let id = match data.get("id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 100 => s.clone(),
        _ => return Err(WebhookRejection::InvalidPayload("no data.id".into())),
    };
    let at = event_time(data).ok_or(WebhookRejection::MissingTimestamp)?;
    let tolerance = chrono::Duration::from_std(config.webhook_tolerance)
        .unwrap_or(chrono::Duration::minutes(5));
    if (now - at).abs() > tolerance {
        return Err(WebhookRejection::StaleTimestamp);
    }
    Ok((format!("{event}:{id}"), event, payload))
}

/// Records a verified event in the caller's transaction: its `webhook_event_id`, or `None` when the provider sent
/// this event before (a duplicate delivery or a replay).
pub async fn record_tx(
    tx: &mut PgConnection,
    provider: ProviderName,
    event_id: &str,
    event: &str,
    payload: &Value,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "insert into webhook_event (provider, event_id, event_type, payload) values ($1, $2, $3, $4)
         on conflict (provider, event_id) do nothing returning webhook_event_id",
    )
    .bind(provider.as_str())
    .bind(event_id)
    .bind(event)
    .bind(payload)
    .fetch_optional(&mut *tx)
    .await
}

pub async fn mark_processed_tx(
    tx: &mut PgConnection,
    webhook_event_id: i64,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update webhook_event set processed_at = now(), outcome = $2 where webhook_event_id = $1",
    )
    .bind(webhook_event_id)
    .bind(outcome)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::config::{Config, Env};
    use crate::providers::signature::hmac_sha512_hex;

    fn config() -> ProvidersConfig {
        let lookup = |_: &str| None;
        Config::from_env(&Env::new(&lookup))
            .expect("config")
            .providers
    }

    #[test]
    fn only_signed_fresh_events_with_an_id_pass() {
        let config = config();
        let now = Utc::now();
        let body = serde_json::json!({"event": "charge.success",
            "data": {"id": 7, "reference": "r", "paid_at": now.to_rfc3339()}})
        .to_string();
        let secret = config.paystack_secret_key.expose().to_owned();
        let good = hmac_sha512_hex(&secret, body.as_bytes());
        let (id, event, _) =
            verify_paystack(&config, None, Some(&good), body.as_bytes(), now).expect("valid");
        assert_eq!(
            (id.as_str(), event.as_str()),
            ("charge.success:7", "charge.success")
        );
        assert_eq!(
            verify_paystack(
                &config,
                None,
                Some(&hmac_sha512_hex("other", body.as_bytes())),
                body.as_bytes(),
                now
            ),
            Err(WebhookRejection::InvalidSignature)
        );
        assert_eq!(
            verify_paystack(&config, None, None, body.as_bytes(), now),
            Err(WebhookRejection::InvalidSignature)
        );
        let later = now + chrono::Duration::hours(1);
        assert_eq!(
            verify_paystack(&config, None, Some(&good), body.as_bytes(), later),
            Err(WebhookRejection::StaleTimestamp)
        );
        let mut restricted = config.clone();
        restricted.webhook_allowed_ips = vec!["10.0.0.1".parse().expect("ip")];
        assert_eq!(
            verify_paystack(
                &restricted,
                Some("127.0.0.1".parse().expect("ip")),
                Some(&good),
                body.as_bytes(),
                now
            ),
            Err(WebhookRejection::IpNotAllowed)
        );
    }
}
