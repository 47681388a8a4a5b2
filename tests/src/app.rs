//! `spawn_app()`: the real api on port 0, with its own database, and typed helpers for tests.

use std::sync::Arc;

use paycore_api::AppState;
use paycore_jobs::config::{Config, Env};
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio::sync::oneshot;

use crate::TestDb;

pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub client: reqwest::Client,
    pub config: Arc<Config>,
    _stop: oneshot::Sender<()>,
}

/// Configuration for tests: development defaults plus `overrides`.
pub fn test_config(database_url: &str, overrides: &[(&str, &str)]) -> Config {
    let mut pairs: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), database_url.into()),
        ("DATABASE_MAX_CONNECTIONS".into(), "20".into()),
    ];
    pairs.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let lookup = move |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    Config::from_env(&Env::new(&lookup)).expect("test configuration")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let db = TestDb::new().await.expect("test database");
    let config = test_config(&db.url, overrides);
    let state = AppState::new(db.pool.clone(), config);
    let config = Arc::clone(&state.config);
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind port 0");
    let address = acceptor
        .local_addr()
        .first()
        .and_then(|addr| addr.as_socket_addr().copied())
        .expect("bound address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(paycore_api::serve_on(acceptor, state, async move {
        let _ = stopped.await;
    }));
    TestApp {
        address: format!("http://{address}"),
        db,
        client: reqwest::Client::new(),
        config,
        _stop: stop,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }
}
