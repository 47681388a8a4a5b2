//! Push notifications through FCM HTTP v1 (`POST {base}/v1/projects/{project}/messages:send`), authenticated
//! with a service account: a short RS256-signed JWT is exchanged at the account's `token_uri` for an OAuth2 access
//! token, cached until shortly before it expires. (The legacy FCM API was shut down in 2024.) A device whose token
//! FCM reports as `UNREGISTERED` is removed. One `push.send` job per device, on the `emails` queue.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::engine::{Job, JobContext, JobError, Queue};
use crate::platform::config::FcmConfig;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendPush {
    pub device_id: Uuid,
    pub title: String,
    pub body: String,
    pub data: Value,
}

impl Job for SendPush {
    const KIND: &'static str = "push.send";
    const QUEUE: Queue = Queue::Emails;
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the device token is no longer registered")]
    Unregistered,
    #[error("FCM is unavailable: {0}")]
    Transient(String),
    #[error("FCM refused the message: {0}")]
    Permanent(String),
}

pub struct Fcm {
    http: reqwest::Client,
    config: FcmConfig,
    token: Mutex<Option<(String, Instant)>>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl Fcm {
    pub fn new(config: FcmConfig) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap_or_default(),
            config,
            token: Mutex::new(None),
        }
    }

    async fn access_token(&self) -> Result<String, PushError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: &self.config.client_email,
            scope: SCOPE,
            aud: &self.config.token_uri,
            iat: now,
            exp: now + 3600,
        };
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(self.config.private_key.expose().as_bytes())
                .map_err(|e| {
                    PushError::Permanent(format!("the service account key is invalid: {e}"))
                })?;
        let assertion = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .map_err(|e| PushError::Permanent(format!("cannot sign the token request: {e}")))?;
        let response = self
            .http
            .post(&self.config.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| PushError::Transient(e.without_url().to_string()))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(if status.is_server_error() {
                PushError::Transient(format!("token endpoint answered {status}"))
            } else {
                PushError::Permanent(format!(
                    "token endpoint refused the service account: {body}"
                ))
            });
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| PushError::Transient("no access_token in the token answer".into()))?
            .to_owned();
        let lifetime = body["expires_in"].as_u64().unwrap_or(3600);
        *cached = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(1)),
        ));
        Ok(token)
    }

    /// Sends one message to one device token.
    pub async fn send(
        &self,
        token: &str,
        title: &str,
        body: &str,
        data: &Value,
    ) -> Result<(), PushError> {
        let access = self.access_token().await?;
        let data: serde_json::Map<String, Value> = data
            .as_object()
            .map(|fields| {
                fields
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| {
                        let text = v
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string());
                        (k.clone(), Value::String(text))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let message = json!({"message": {"token": token, "notification": {"title": title, "body": body},
                                          "data": data}});
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.config.base_url, self.config.project_id
        );
        let response = self
            .http
            .post(url)
            .bearer_auth(&access)
            .json(&message)
            .send()
            .await
            .map_err(|e| PushError::Transient(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body: Value = response.json().await.unwrap_or_default();
        let unregistered = body["error"]["details"]
            .as_array()
            .is_some_and(|details| details.iter().any(|d| d["errorCode"] == "UNREGISTERED"))
            || body["error"]["status"] == "NOT_FOUND";
        if unregistered {
            return Err(PushError::Unregistered);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // The cached token was revoked or expired early: fetch a new one next time.
            *self.token.lock().await = None;
            return Err(PushError::Transient("FCM refused the access token".into()));
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(PushError::Transient(format!("FCM answered {status}")));
        }
        Err(PushError::Permanent(format!("{status}: {body}")))
    }
}

/// The `push.send` handler.
pub async fn send(ctx: JobContext, job: SendPush, fcm: Option<Arc<Fcm>>) -> Result<(), JobError> {
    let token: Option<String> = sqlx::query_scalar!(
        "select token from push_device where device_id = $1",
        job.device_id,
    )
    .fetch_optional(&ctx.pool)
    .await?;
    let Some(token) = token else {
        // The device was removed since: nothing to send.
        return Ok(());
    };
    let Some(fcm) = fcm else {
        tracing::info!(device_id = %job.device_id, "push not configured; notification not sent");
        return Ok(());
    };
    match fcm.send(&token, &job.title, &job.body, &job.data).await {
        Ok(()) => Ok(()),
        Err(PushError::Unregistered) => {
            let mut tx = ctx.begin_fenced().await?;
            sqlx::query!(
                "delete from push_device where device_id = $1",
                job.device_id
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(device_id = %job.device_id, "removed a device FCM reports as unregistered");
            Ok(())
        }
        Err(PushError::Transient(message)) => Err(JobError::transient(message)),
        Err(PushError::Permanent(message)) => Err(JobError::permanent("push_rejected", message)),
    }
}
