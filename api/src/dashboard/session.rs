//! Dashboard sessions: the same accounts and sessions as the API, reached through an HttpOnly, SameSite=Strict
//! cookie, with a per-session CSRF token that every form must send back.

use paycore_jobs::domains::identity::account::{self, AccountError, LoginOutcome};
use paycore_jobs::domains::identity::auth::{self, Role};
use poem::{http::StatusCode, Request, Response};
use subtle_compare::constant_time_eq;
use uuid::Uuid;

use super::admin::AdminSession;
use super::render::{message_page, redirect};
use crate::AppState;

pub const COOKIE_NAME: &str = "paycore_admin";
/// Dashboard sign-ins last a working day.
const COOKIE_MAX_AGE_S: u64 = 12 * 3600;

impl AdminSession {
    pub fn actor(&self) -> paycore_jobs::admin_audit::Actor {
        paycore_jobs::admin_audit::Actor {
            user_id: self.user_id,
            email: self.email.clone(),
            ip: self.ip.clone(),
        }
    }
}

fn cookie_value(request: &Request) -> Option<String> {
    let header = request.headers().get("cookie")?.to_str().ok()?;
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
}

pub fn client_ip(request: &Request) -> Option<String> {
    crate::client::request_ip(request)
}

/// The signed-in admin, `Err` with the page to show otherwise (sign-in for visitors, 403 for non-admins).
pub async fn require_admin(state: &AppState, request: &Request) -> Result<AdminSession, Response> {
    let Some(secret) = cookie_value(request) else {
        return Err(redirect("/admin/login"));
    };
    let row: Option<(Uuid, Uuid, Option<String>, String, String)> = sqlx::query_as(
        "select s.session_id, u.user_id, s.csrf_token, u.email, u.role from session s join app_user u using (user_id)
         where s.cookie_hash = $1 and s.revoked_at is null and s.expires_at > now()",
    )
    .bind(auth::sha256_hex(&secret))
    .fetch_optional(&state.pool)
    .await
    .map_err(|error| {
        tracing::error!(%error, "dashboard session lookup failed");
        message_page(None, StatusCode::INTERNAL_SERVER_ERROR, "Error", "Something went wrong.")
    })?;
    let Some((session_id, user_id, csrf, email, role)) = row else {
        return Err(redirect("/admin/login"));
    };
    let role = Role::parse(&role).unwrap_or(Role::User);
    if !role.is_admin() {
        return Err(message_page(
            None,
            StatusCode::FORBIDDEN,
            "Forbidden",
            "This account is not an admin.",
        ));
    }
    Ok(AdminSession {
        user_id,
        session_id,
        email,
        role: role.as_str().to_owned(),
        readonly: role != Role::Admin,
        csrf: csrf.unwrap_or_default(),
        ip: client_ip(request),
    })
}

/// An admin who may change things, on a form that carries this session's CSRF token.
pub async fn require_writer(
    state: &AppState,
    request: &Request,
    form_csrf: Option<&str>,
) -> Result<AdminSession, Response> {
    let admin = require_admin(state, request).await?;
    let csrf_ok = form_csrf.is_some_and(|token| {
        !admin.csrf.is_empty() && constant_time_eq(token.as_bytes(), admin.csrf.as_bytes())
    });
    if !csrf_ok {
        return Err(message_page(
            Some(&admin),
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The form's security token is missing or wrong; reload the page and try again.",
        ));
    }
    if admin.readonly {
        return Err(message_page(
            Some(&admin),
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Read-only admins cannot change anything.",
        ));
    }
    Ok(admin)
}

/// How a dashboard sign-in step ended.
pub enum SignIn {
    /// Signed in: the Set-Cookie value.
    Cookie(String),
    /// A two-step account: a code was e-mailed; finish with `sign_in_code`.
    Code { challenge_id: uuid::Uuid },
}

fn sign_in_error(error: AccountError) -> (StatusCode, String) {
    match error {
        AccountError::Auth(auth::AuthError::Throttled { .. }) | AccountError::TooSoon { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts; try again later.".to_owned(),
        ),
        AccountError::Auth(auth::AuthError::InvalidCredentials) => (
            StatusCode::UNAUTHORIZED,
            "The email or password is wrong.".to_owned(),
        ),
        AccountError::Code(_) => (
            StatusCode::UNAUTHORIZED,
            "The code is wrong, expired or already used.".to_owned(),
        ),
        other => {
            tracing::error!(error = %other, "dashboard sign-in failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong.".to_owned(),
            )
        }
    }
}

/// Signs in with email and password; only admins get a dashboard session. Accounts with two-step sign-in get a
/// code by e-mail first.
pub async fn sign_in(
    state: &AppState,
    request: &Request,
    email: &str,
    password: &str,
) -> Result<SignIn, (StatusCode, String)> {
    let ip = client_ip(request);
    let outcome = account::login(
        &state.pool,
        &state.config,
        &state.keys,
        email,
        password,
        ip.as_deref(),
        Some(DASHBOARD_AGENT),
    )
    .await
    .map_err(sign_in_error)?;
    match outcome {
        LoginOutcome::Tokens(pair) => Ok(SignIn::Cookie(dashboard_session(state, pair).await?)),
        LoginOutcome::TwoStep { challenge_id } => Ok(SignIn::Code { challenge_id }),
    }
}

/// The second step of a two-step dashboard sign-in.
pub async fn sign_in_code(
    state: &AppState,
    request: &Request,
    challenge_id: uuid::Uuid,
    code: &str,
) -> Result<String, (StatusCode, String)> {
    let ip = client_ip(request);
    let pair = account::finish_two_step(
        &state.pool,
        &state.config,
        &state.keys,
        challenge_id,
        code,
        ip.as_deref(),
        Some(DASHBOARD_AGENT),
    )
    .await
    .map_err(sign_in_error)?;
    dashboard_session(state, pair).await
}

/// The user agent dashboard sessions record (new-device warnings compare it).
const DASHBOARD_AGENT: &str = "PayCore admin dashboard";

/// Turns a fresh session into a dashboard session (admins only): the Set-Cookie value.
async fn dashboard_session(
    state: &AppState,
    pair: auth::TokenPair,
) -> Result<String, (StatusCode, String)> {
    let claims = state.keys.verify(&pair.access_token).ok_or((
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong.".to_owned(),
    ))?;
    let internal = |error: sqlx::Error| {
        tracing::error!(%error, "dashboard session update failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong.".to_owned(),
        )
    };
    if !claims.role.is_admin() {
        let mut tx = state.pool.begin().await.map_err(internal)?;
        auth::revoke_session_tx(&mut tx, claims.sid, "not_an_admin")
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        return Err((
            StatusCode::FORBIDDEN,
            "This account is not an admin.".to_owned(),
        ));
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let csrf = hex::encode(rand::random::<[u8; 24]>());
    sqlx::query("update session set cookie_hash = $2, csrf_token = $3 where session_id = $1")
        .bind(claims.sid)
        .bind(auth::sha256_hex(&secret))
        .bind(&csrf)
        .execute(&state.pool)
        .await
        .map_err(internal)?;
    let secure =
        if state.config.environment == paycore_jobs::platform::config::Environment::Production {
            "; Secure"
        } else {
            ""
        };
    Ok(format!("{COOKIE_NAME}={secret}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE_S}{secure}"))
}

pub async fn sign_out(state: &AppState, admin: &AdminSession) -> Result<(), sqlx::Error> {
    let mut tx = state.pool.begin().await?;
    auth::revoke_session_tx(&mut tx, admin.session_id, "dashboard_logout").await?;
    tx.commit().await
}

/// A cookie that removes the session cookie.
pub fn clearing_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0")
}

mod subtle_compare {
    /// Compares in time that depends only on the lengths, so a token cannot be guessed byte by byte.
    pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}
