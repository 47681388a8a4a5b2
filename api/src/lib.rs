//! The HTTP front of PayCore: a poem-openapi service that authenticates, validates and records intents, and the
//! middleware every request goes through. `build_app` is what the binary and the tests both serve.

use std::{sync::Arc, time::Instant};

use poem::{
    http::{header, HeaderValue, StatusCode},
    listener::{Acceptor, Listener, TcpListener},
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route,
};
use poem_openapi::OpenApiService;
use sqlx::PgPool;
use tracing::Instrument;

pub mod client;
pub mod dashboard;
pub mod dev_mailbox;
pub mod error;
pub mod events;
pub mod idempotent;
pub mod metrics;
pub mod payload;
pub mod rate_limit;
pub mod route_table;
pub mod routes;
pub mod schema;
pub mod security;
pub mod system;

use paycore_jobs::domains::identity::auth::TokenKeys;
use paycore_jobs::platform::config::Config;

/// Request bodies larger than this are refused with 413 before they are parsed: every PayCore request is a small
/// JSON document.
pub const REQUEST_BODY_BYTES_MAX: usize = 1024 * 1024;
/// A client-supplied request id is echoed only if it is short and printable; otherwise a new one is made.
const REQUEST_ID_CHARS_MAX: usize = 128;

/// What every endpoint shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    pub metrics: Arc<metrics::Metrics>,
    pub keys: Arc<TokenKeys>,
    pub events: events::Events,
    pub providers: Arc<paycore_jobs::providers::Providers>,
    pub rate_limiter: Arc<rate_limit::RateLimiter>,
}

impl AppState {
    /// Builds the state and starts this process's operation-event listener (call inside the runtime).
    pub fn new(pool: PgPool, config: Config) -> Self {
        let keys = TokenKeys::new(
            config.jwt_secret.expose(),
            config.money.access_token_ttl,
            config.money.refresh_token_ttl,
        );
        Self {
            providers: Arc::new(paycore_jobs::providers::Providers::from_config(
                &config.providers,
            )),
            events: events::Events::start(pool.clone()),
            rate_limiter: Arc::new(rate_limit::RateLimiter::new(
                config.security.rate_limits.clone(),
            )),
            pool,
            config: Arc::new(config),
            metrics: Arc::new(metrics::Metrics::default()),
            keys: Arc::new(keys),
        }
    }
}

type Apis = (
    system::SystemApi,
    routes::auth::AuthApi,
    routes::wallets::WalletsApi,
    routes::transfers::TransfersApi,
    routes::transactions::TransactionsApi,
    routes::admin::AdminApi,
    routes::admin_jobs::AdminJobsApi,
    routes::deposits::DepositsApi,
    routes::payouts::PayoutsApi,
    routes::bills::BillsApi,
    routes::admin_payments::AdminPaymentsApi,
    routes::notifications::NotificationsApi,
);

/// The OpenAPI service: every documented endpoint.
pub fn api_service(state: &AppState) -> OpenApiService<Apis, ()> {
    let apis = (
        system::SystemApi {
            state: state.clone(),
        },
        routes::auth::AuthApi {
            state: state.clone(),
        },
        routes::wallets::WalletsApi {
            state: state.clone(),
        },
        routes::transfers::TransfersApi {
            state: state.clone(),
        },
        routes::transactions::TransactionsApi {
            state: state.clone(),
        },
        routes::admin::AdminApi {
            state: state.clone(),
        },
        routes::admin_jobs::AdminJobsApi {
            state: state.clone(),
        },
        routes::deposits::DepositsApi {
            state: state.clone(),
        },
        routes::payouts::PayoutsApi {
            state: state.clone(),
        },
        routes::bills::BillsApi {
            state: state.clone(),
        },
        routes::admin_payments::AdminPaymentsApi {
            state: state.clone(),
        },
        routes::notifications::NotificationsApi {
            state: state.clone(),
        },
    );
    OpenApiService::new(apis, "PayCore API", env!("CARGO_PKG_VERSION"))
        .description("Wallets, a double-entry ledger, transfers and payments, run as durable jobs.")
}

/// The whole HTTP application.
pub fn build_app(state: AppState) -> impl Endpoint<Output = Response> {
    let service = api_service(&state);
    let document = serde_json::from_str(&service.spec()).unwrap_or_default();
    let routes = Arc::new(
        route_table::RouteTable::from_openapi(&document)
            .with("/api/v1/webhooks/paystack", &["post"]),
    );
    let spec = service.spec_endpoint();
    let docs = service.swagger_ui();
    let metrics = Arc::clone(&state.metrics);
    let documented: Vec<String> = <Apis as poem_openapi::OpenApi>::meta()
        .into_iter()
        .flat_map(|api| api.paths)
        .map(|path| path.path)
        .collect();
    let templates = Arc::new(metrics::documented_templates(
        documented.iter().map(String::as_str),
    ));
    let mut route = Route::new();
    // Development only: production never serves a route that reveals a one-time code.
    if state.config.environment == paycore_jobs::platform::config::Environment::Development {
        route = route.at(
            dev_mailbox::MAILBOX_CODE_PATH,
            poem::get(dev_mailbox::mailbox_code),
        );
    }
    route
        .at("/openapi.json", spec)
        .nest("/docs", metrics::routed(docs))
        .nest("/admin", metrics::routed(dashboard::routes()))
        .at(
            "/api/v1/webhooks/paystack",
            poem::post(routes::webhooks::paystack),
        )
        .nest("/", metrics::routed(service))
        .around(|next, request| async move { Ok(limit(next, request).await) })
        .data(state)
        .around(move |next, request| {
            let (metrics, templates) = (Arc::clone(&metrics), Arc::clone(&templates));
            let routes = Arc::clone(&routes);
            async move { Ok(observe(next, request, &metrics, &templates, &routes).await) }
        })
}

/// The general rate limiter (`rate_limit`) in front of every `/api/v1` route.
async fn limit<E: Endpoint>(next: Arc<E>, request: Request) -> Response {
    if let Some(state) = request.data::<AppState>() {
        if let Some(class) = rate_limit::route_class(request.method(), request.uri().path()) {
            let user = rate_limit::bearer_user(&request, &state.keys);
            let address = client::client_address(&request, &state.config.security.trusted_proxies);
            if let Err(wait) = state
                .rate_limiter
                .check(class, user, address, Instant::now())
            {
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return error::ApiError::rate_limited_for(
                    "rate_limited",
                    format!("Too many requests; try again in {seconds} seconds."),
                    seconds,
                )
                .into_response();
            }
        }
    }
    match next.call(request).await {
        Ok(output) => output.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Request id, body limit, error shape, access log and metrics for every request.
async fn observe<E: Endpoint>(
    next: Arc<E>,
    mut request: Request,
    metrics: &metrics::Metrics,
    templates: &std::collections::HashMap<String, String>,
    routes: &route_table::RouteTable,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= REQUEST_ID_CHARS_MAX
                && id.chars().all(|c| c.is_ascii_graphic())
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = request.method().to_string();
    let method_label = metrics::method_label(request.method());
    let path = request.uri().path().to_owned();
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, path = %path);
    let (mut response, route) = async {
        let too_large = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok())
            .is_some_and(|length| length > REQUEST_BODY_BYTES_MAX);
        if too_large {
            return (
                error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The request body is too large.",
                ),
                metrics::UNMATCHED_ROUTE.to_owned(),
            );
        }
        // Bodies without a length (chunked) are read with the same limit.
        let body = request.take_body();
        match body.into_bytes_limit(REQUEST_BODY_BYTES_MAX).await {
            Ok(bytes) => request.set_body(bytes),
            Err(poem::error::ReadBodyError::PayloadTooLarge) => {
                return (
                    error_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "The request body is too large.",
                    ),
                    metrics::UNMATCHED_ROUTE.to_owned(),
                )
            }
            Err(error) => {
                return (
                    error_response(StatusCode::BAD_REQUEST, &error.to_string()),
                    metrics::UNMATCHED_ROUTE.to_owned(),
                )
            }
        }
        let response = match next.call(request).await {
            Ok(output) => output.into_response(),
            Err(error) => error.into_response(),
        };
        // Read before `normalise_error`, which may rebuild the response without the router's data.
        let route = metrics::route_label(&response, templates);
        (normalise_error(response).await, route)
    }
    .instrument(span.clone())
    .await;
    let status = response.status();
    let elapsed = started.elapsed();
    metrics.record(&route, method_label, status.as_u16(), elapsed);
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            latency_ms = elapsed.as_millis() as u64,
            "request finished"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    error::add_retry_after(&mut response);
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(allow) = routes.allow(&path) {
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
        }
    }
    response
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let body = error::ApiError::from_status(status, message);
    body.with_status(status).into_response()
}

/// Gives every error response that poem produced by itself (unknown route, wrong method, …) the error shape.
async fn normalise_error(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // JSON errors are already in shape; HTML ones are the dashboard's own pages.
    let shaped = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("text/html")
        });
    if shaped {
        return response;
    }
    let text = response.into_body().into_string().await.unwrap_or_default();
    error_response(status, &text)
}

/// Serves the app on `HOST:PORT` until `shutdown` resolves.
pub async fn serve(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = format!("{}:{}", state.config.host, state.config.port);
    let acceptor = TcpListener::bind(address.as_str()).into_acceptor().await?;
    serve_on(acceptor, state, shutdown).await
}

/// Serves the app on an already bound acceptor (tests bind port 0 and read the address first).
pub async fn serve_on<A: Acceptor + 'static>(
    acceptor: A,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(address) = acceptor.local_addr().first() {
        tracing::info!(%address, "api listening");
    }
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            build_app(state),
            shutdown,
            Some(std::time::Duration::from_secs(30)),
        )
        .await?;
    Ok(())
}

/// The api process: `paycore-api`.
pub async fn api_main() -> anyhow::Result<()> {
    let config = Config::from_process_env()?;
    paycore_jobs::platform::telemetry::init(config.log_format);
    let pool = paycore_jobs::app::connect_and_migrate(&config).await?;
    serve(
        AppState::new(pool, config),
        paycore_jobs::app::shutdown_signal(),
    )
    .await
}

impl AppState {
    /// The provider adapters.
    pub fn providers(&self) -> &paycore_jobs::providers::Providers {
        &self.providers
    }
}
