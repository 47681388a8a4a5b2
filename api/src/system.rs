//! Health, readiness and metrics: what load balancers, orchestrators and Prometheus ask.

use paycore_jobs::platform::config::Environment;
use paycore_jobs::providers::signature;
use poem::{http::header, Request};
use poem_openapi::{payload::Json, payload::PlainText, ApiResponse, Object, OpenApi, Tags};

use crate::{
    error::{ApiError, ApiResult},
    AppState,
};

#[derive(Tags)]
pub enum SystemTag {
    /// Health, readiness and metrics.
    System,
}

pub struct SystemApi {
    pub state: AppState,
}

#[derive(Debug, Object)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Object)]
pub struct QueueLag {
    pub queue: String,
    /// How long the oldest job that is due has been waiting, in milliseconds (0 when none is due).
    pub oldest_due_job_age_ms: i64,
}

#[derive(Debug, Object)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    pub database: String,
    pub migrations: String,
    pub queues: Vec<QueueLag>,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Ready to serve.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// Not ready: the database is unreachable or migrations are behind.
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

#[OpenApi(tag = "SystemTag::System")]
impl SystemApi {
    /// The process is up.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
        })
    }

    /// The process can serve: database reachable, migrations current; reports each queue's lag.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self) -> ReadyResponse {
        let pool = &self.state.pool;
        let database_ok = sqlx::query("select 1").execute(pool).await.is_ok();
        let migrations_ok = database_ok
            && paycore_jobs::platform::db::migrations_current(pool)
                .await
                .unwrap_or(false);
        let queues = if database_ok {
            paycore_jobs::engine::control::queue_stats(pool)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|q| QueueLag {
                    queue: q.queue,
                    oldest_due_job_age_ms: q.oldest_due_age_ms.unwrap_or(0),
                })
                .collect()
        } else {
            Vec::new()
        };
        let readiness = Readiness {
            status: if migrations_ok { "ready" } else { "not_ready" }.into(),
            database: if database_ok { "ok" } else { "unreachable" }.into(),
            migrations: if migrations_ok {
                "current"
            } else {
                "behind_or_unknown"
            }
            .into(),
            queues,
        };
        if migrations_ok {
            ReadyResponse::Ready(Json(readiness))
        } else {
            ReadyResponse::NotReady(Json(readiness))
        }
    }

    /// Prometheus metrics (text exposition format). With `METRICS_TOKEN` set, only for
    /// `Authorization: Bearer <METRICS_TOKEN>`; without it, open in development and closed in production.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(&self, request: &Request) -> ApiResult<PlainText<String>> {
        self.authorize_scrape(request)?;
        let text = self
            .state
            .metrics
            .render(&self.state.pool)
            .await
            .map_err(ApiError::internal)?;
        Ok(PlainText(text))
    }
}

impl SystemApi {
    /// The metrics reveal traffic and queue sizes: a scrape shows the configured token (docs/security.md §7).
    fn authorize_scrape(&self, request: &Request) -> Result<(), ApiError> {
        let config = &self.state.config;
        let Some(expected) = config.security.metrics_token.as_ref() else {
            return if config.environment == Environment::Production {
                Err(ApiError::unauthenticated(
                    "metrics_token_required",
                    "Metrics are served only with METRICS_TOKEN configured.",
                ))
            } else {
                Ok(())
            };
        };
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(given) if signature::secrets_equal(given, expected.expose()) => Ok(()),
            _ => Err(ApiError::unauthenticated(
                "invalid_metrics_token",
                "Metrics need Authorization: Bearer with the metrics token.",
            )),
        }
    }
}
