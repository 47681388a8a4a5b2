//! `spawn_app()`: the real api on port 0, with its own database, in-process workers on every queue, and typed
//! helpers for tests.

use std::sync::Arc;

use paycore_api::AppState;
use paycore_jobs::engine::Queue;
use paycore_jobs::platform::config::{Config, Env};
use poem::listener::{Acceptor, Listener, TcpListener};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::{fast_engine, InProcessWorkers, TestDb};

pub struct TestApp {
    pub address: String,
    /// The sandbox providers this app's adapters talk to, and their base URL.
    pub sandbox: paycore_sandbox::Sandbox,
    pub sandbox_url: String,
    pub db: TestDb,
    pub client: reqwest::Client,
    pub config: Arc<Config>,
    pub workers: Option<InProcessWorkers>,
    _stop: oneshot::Sender<()>,
}

/// Configuration for tests: development defaults plus `overrides`.
pub fn test_config(database_url: &str, overrides: &[(&str, &str)]) -> Config {
    let mut pairs: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), database_url.into()),
        ("DATABASE_MAX_CONNECTIONS".into(), "40".into()),
        // Every test client is 127.0.0.1 and a test may register and sign in dozens of users: the per-address
        // throttles and limits are raised here, and the tests of those limits set them back down.
        ("REGISTRATIONS_PER_ADDRESS_PER_HOUR".into(), "100000".into()),
        ("RATE_LIMIT_AUTH".into(), "100000,100000".into()),
        ("RATE_LIMIT_LOOKUP".into(), "100000,100000".into()),
        ("RATE_LIMIT_MONEY".into(), "100000,100000".into()),
        ("RATE_LIMIT_WRITE".into(), "100000,100000".into()),
        ("RATE_LIMIT_READ".into(), "100000,100000".into()),
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

/// The api with workers on every queue.
/// The repository's root folder.
pub fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let app = spawn_api_only(overrides).await;
    let workers = InProcessWorkers::start_for(
        &app.db.pool,
        &app.config,
        Queue::ALL.to_vec(),
        fast_engine(),
    );
    TestApp {
        workers: Some(workers),
        ..app
    }
}

/// The api without workers: operations stay where the api leaves them.
pub async fn spawn_api_only(overrides: &[(&str, &str)]) -> TestApp {
    let db = TestDb::new().await.expect("test database");
    let options = paycore_sandbox::SandboxOptions {
        webhook_delay: std::time::Duration::from_millis(200),
        hang: std::time::Duration::from_secs(4),
        ..paycore_sandbox::SandboxOptions::default()
    };
    let (sandbox, sandbox_url) = paycore_sandbox::start(options, 0)
        .await
        .expect("sandbox providers");
    let paystack = format!("{sandbox_url}/paystack");
    let flutterwave = format!("{sandbox_url}/flutterwave/v3");
    let mut settings: Vec<(&str, &str)> = vec![
        ("PAYSTACK_BASE_URL", &paystack),
        ("FLUTTERWAVE_BASE_URL", &flutterwave),
        ("PROVIDER_TIMEOUT_MS", "1500"),
        ("PROVIDER_STATUS_POLL_MS", "500"),
    ];
    settings.extend_from_slice(overrides);
    let config = test_config(&db.url, &settings);
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
    sandbox.set_paystack_webhook_url(&format!("http://{address}/api/v1/webhooks/paystack"));
    TestApp {
        sandbox,
        sandbox_url,
        address: format!("http://{address}"),
        db,
        client: reqwest::Client::new(),
        config,
        workers: None,
        _stop: stop,
    }
}

/// A registered user with their session and default NGN wallet.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub email: String,
    pub password: String,
    pub user_id: String,
    pub access_token: String,
    pub refresh_token: String,
    pub wallet_id: String,
    pub account_number: String,
}

impl TestApp {
    /// Provider adapters configured like the app's (talking to its sandbox).
    pub fn providers(&self) -> paycore_jobs::providers::Providers {
        paycore_jobs::providers::Providers::from_config(&self.config.providers)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        let response = self.get(path, token).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }

    /// Registers a new user (`202`, no tokens: registration answers alike for new and taken addresses), then
    /// signs in as them, as a client does.
    pub async fn register_user(&self, tag: &str) -> TestUser {
        let email = format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple());
        let password = "correct horse battery".to_owned();
        let response = self
            .post(
                "/api/v1/auth/register",
                None,
                &json!({"email": email, "password": password, "full_name": format!("Test {tag}")}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "register");
        self.sign_in_user(&email, &password).await
    }

    /// Signs in with a password and reads the user's id and first wallet.
    pub async fn sign_in_user(&self, email: &str, password: &str) -> TestUser {
        let response = self
            .post(
                "/api/v1/auth/login",
                None,
                &json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "sign in as {email}");
        let tokens: Value = response.json().await.expect("json");
        let access_token = tokens["access_token"].as_str().expect("token").to_owned();
        let me = self.get_json("/api/v1/users/me", &access_token).await;
        let text = |value: &Value, what: &str| value.as_str().expect(what).to_owned();
        TestUser {
            email: email.to_owned(),
            password: password.to_owned(),
            user_id: text(&me["user"]["user_id"], "user id"),
            access_token,
            refresh_token: text(&tokens["refresh_token"], "refresh token"),
            wallet_id: text(&me["wallets"][0]["wallet_id"], "wallet"),
            account_number: text(&me["wallets"][0]["account_number"], "account number"),
        }
    }

    /// A registered user whose e-mail address counts as verified, as money leaving the platform requires. The
    /// verification flow itself is tested with the codes (`notifications`, `otp_secrets`); this marks the row.
    pub async fn register_verified_user(&self, tag: &str) -> TestUser {
        let user = self.register_user(tag).await;
        sqlx::query("update app_user set email_verified_at = now() where user_id = $1::uuid")
            .bind(&user.user_id)
            .execute(&self.db.pool)
            .await
            .expect("mark the e-mail verified");
        user
    }

    /// Two registered users, `ada` and `bayo`, each with a funded wallet.
    pub async fn register_pair(&self) -> (TestUser, TestUser) {
        (
            self.register_user("ada").await,
            self.register_user("bayo").await,
        )
    }

    /// How many transfers exist.
    pub async fn transfer_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from transfer")
            .fetch_one(&self.db.pool)
            .await
            .expect("count transfers")
    }

    /// Sends a transfer with a fresh idempotency key and the given extra fields.
    pub async fn transfer(
        &self,
        from: &TestUser,
        to_account_number: &str,
        amount: i64,
        extra: Value,
    ) -> reqwest::Response {
        self.transfer_with_key(
            from,
            to_account_number,
            amount,
            extra,
            &uuid::Uuid::new_v4().to_string(),
            Some(10),
        )
        .await
    }

    pub async fn transfer_with_key(
        &self,
        from: &TestUser,
        to_account_number: &str,
        amount: i64,
        extra: Value,
        key: &str,
        wait_seconds: Option<u64>,
    ) -> reqwest::Response {
        let mut body = json!({
            "from_wallet_id": from.wallet_id, "to_account_number": to_account_number,
            "amount": amount, "currency": "NGN", "narration": "test transfer",
        });
        if let (Some(map), Value::Object(extra)) = (body.as_object_mut(), extra) {
            map.extend(extra);
        }
        let mut request = self
            .client
            .post(self.url("/api/v1/transfers"))
            .bearer_auth(&from.access_token)
            .header("Idempotency-Key", key)
            .json(&body);
        if let Some(wait) = wait_seconds {
            request = request.header("Prefer", format!("wait={wait}"));
        }
        request.send().await.expect("transfer request")
    }

    pub async fn wallet(&self, user: &TestUser, wallet_id: &str) -> Value {
        self.get_json(&format!("/api/v1/wallets/{wallet_id}"), &user.access_token)
            .await
    }

    pub async fn available(&self, user: &TestUser) -> i64 {
        self.wallet(user, &user.wallet_id).await["balances"]["available"]
            .as_i64()
            .expect("available")
    }

    /// Runs the ledger audit directly and returns its findings (empty when clean).
    pub async fn audit_findings(&self) -> Vec<String> {
        paycore_jobs::ledger::audit(&self.db.pool)
            .await
            .expect("audit")
            .findings
    }

    /// An admin account's access token.
    pub async fn admin_token(&self, role: paycore_jobs::domains::identity::auth::Role) -> String {
        let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
        paycore_jobs::domains::wallet::ensure_admin(
            &self.db.pool,
            &email,
            "admin password 1",
            role,
        )
        .await
        .expect("admin");
        let response = self
            .post(
                "/api/v1/auth/login",
                None,
                &json!({"email": email, "password": "admin password 1"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }
}

/// The `error.code` of an error response, after checking its status and shape.
pub async fn error_code(response: reqwest::Response, status: StatusCode) -> String {
    let actual = response.status();
    let body: Value = response.json().await.expect("error body is json");
    assert_eq!(actual, status, "unexpected status; body {body}");
    for field in ["type", "code", "message"] {
        assert!(
            body["error"][field].is_string(),
            "error.{field} missing in {body}"
        );
    }
    body["error"]["code"].as_str().expect("code").to_owned()
}
