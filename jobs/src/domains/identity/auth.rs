//! Users, passwords, sessions and tokens.
//!
//! Passwords are hashed with argon2id. A sign-in creates a session (the family of its refresh tokens); access
//! tokens are short-lived JWTs naming their session, and every request checks the session is still live, so
//! logout, logout-all, a password change or a detected refresh-token reuse refuses outstanding access tokens at
//! once. Refresh tokens are random, stored hashed, and single-use: presenting a used one revokes its session.

use std::time::Duration;

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, SaltString},
    Argon2,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domains::identity::throttle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
    /// Sees everything an admin sees and can change nothing.
    AdminReadonly,
    /// A compliance officer: reads what admins read and decides compliance reviews (KYC, sanctions, held
    /// operations); changes nothing else.
    Compliance,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::AdminReadonly => "admin_readonly",
            Role::Compliance => "compliance",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Role::User,
            Role::Admin,
            Role::AdminReadonly,
            Role::Compliance,
        ]
        .into_iter()
        .find(|r| r.as_str() == raw)
    }

    pub fn is_admin(self) -> bool {
        matches!(self, Role::Admin | Role::AdminReadonly | Role::Compliance)
    }

    /// Who decides compliance reviews: compliance officers and full admins.
    pub fn decides_compliance(self) -> bool {
        matches!(self, Role::Admin | Role::Compliance)
    }
}

/// Passwords: at least this long (NIST SP 800-63B) …
pub const PASSWORD_CHARS_MIN: usize = 8;
/// … and at most this long, so hashing cost is bounded.
pub const PASSWORD_CHARS_MAX: usize = 128;

/// Password hashing is memory-hard by design (19 MiB per hash) and CPU-heavy: at most this many run at once per
/// process, so a burst of registrations or sign-ins queues instead of exhausting memory and starving requests.
static HASHING_PERMITS: std::sync::LazyLock<(usize, tokio::sync::Semaphore)> =
    std::sync::LazyLock::new(|| {
        let permits = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        (permits, tokio::sync::Semaphore::new(permits))
    });

/// Runs `work` (hashing or verifying a secret) on the blocking pool, within the hashing limit.
pub async fn with_hashing_permit<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let _permit = HASHING_PERMITS.1.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// argon2's working memory, kept and reused: one 19 MiB area per hashing permit. Allocating it for every hash
/// let the allocator keep a stray copy per thread arena, so a registration burst pushed the api past 100 MB.
static HASHING_MEMORY: std::sync::Mutex<Vec<Vec<argon2::Block>>> =
    std::sync::Mutex::new(Vec::new());

/// Runs `hash` with `blocks` blocks of working memory: a kept area when the size is the standard one (it always
/// is, except for hashes made with other parameters), otherwise a fresh one.
fn with_hashing_memory<T>(blocks: usize, hash: impl FnOnce(&mut [argon2::Block]) -> T) -> T {
    let standard = Argon2::default().params().block_count();
    let kept = (blocks == standard)
        .then(|| HASHING_MEMORY.lock().ok().and_then(|mut kept| kept.pop()))
        .flatten();
    let mut memory = kept.unwrap_or_else(|| vec![argon2::Block::default(); blocks]);
    let out = hash(&mut memory);
    if blocks == standard {
        if let Ok(mut kept) = HASHING_MEMORY.lock() {
            if kept.len() < HASHING_PERMITS.0 {
                kept.push(memory);
            }
        }
    }
    out
}

/// The hash `PasswordHasher::hash_password` computes, in kept working memory.
fn argon2_output(
    argon: &Argon2<'_>,
    secret: &[u8],
    salt: argon2::password_hash::Salt<'_>,
) -> Result<argon2::password_hash::Output, argon2::password_hash::Error> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let params = argon.params();
    argon2::password_hash::Output::init_with(
        params
            .output_len()
            .unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN),
        |out| {
            with_hashing_memory(params.block_count(), |memory| {
                argon.hash_password_into_with_memory(secret, salt_bytes, out, memory)
            })
            .map_err(argon2::password_hash::Error::from)
        },
    )
}

/// An argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of `secret` with a fresh salt.
pub fn hash_secret(secret: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let argon = Argon2::default();
    let output = argon2_output(&argon, secret.as_bytes(), salt.as_salt())?;
    Ok(PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: argon2::password_hash::ParamsString::try_from(argon.params())?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// Whether `secret` matches a PHC string, whatever argon2 variant and parameters made it.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let argon = argon2::Algorithm::try_from(parsed.algorithm).and_then(|algorithm| {
        let version = parsed
            .version
            .map(argon2::Version::try_from)
            .transpose()?
            .unwrap_or_default();
        let params = argon2::Params::try_from(&parsed)?;
        Ok(Argon2::new(algorithm, version, params))
    });
    argon
        .and_then(|argon| argon2_output(&argon, secret.as_bytes(), salt))
        // `Output`'s equality is constant-time.
        .is_ok_and(|computed| computed == expected)
}

/// An email address in the shape PayCore accepts: trimmed, one `@`, a dot in the domain, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Option<Self> {
        let email = raw.trim();
        let (local, domain) = email.split_once('@')?;
        let ok = (3..=254).contains(&email.len())
            && !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.contains(char::is_whitespace)
            && !domain.contains('@');
        ok.then(|| Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Access-token claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
}

/// The token settings.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &str, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        Self {
            encoding: jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            decoding: jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
            access_ttl,
            refresh_ttl,
        }
    }

    pub fn access_token(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        role: Role,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            sid: session_id,
            role,
            iat: now,
            exp: now + i64::try_from(self.access_ttl.as_secs()).unwrap_or(900),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.encoding,
        )
    }

    /// Verifies the signature and expiry; the caller still checks the session.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// A new refresh token: 32 random bytes, URL-safe base64. Only its SHA-256 is stored.
fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("too many failed attempts")]
    Throttled { retry_after_seconds: u64 },
    #[error("the refresh token is invalid or expired")]
    InvalidRefreshToken,
    #[error("the refresh token was already used; its session has been revoked")]
    RefreshTokenReused,
    #[error("token signing failed")]
    Token(#[from] jsonwebtoken::errors::Error),
    #[error("password hashing failed")]
    Hash(String),
    // Not `transparent`: the sqlx error stays in the source chain, where the api recognises a lost database.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// Opens a session and returns its first token pair.
pub async fn open_session_tx(
    tx: &mut PgConnection,
    keys: &TokenKeys,
    user_id: Uuid,
    role: Role,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<TokenPair, AuthError> {
    let session_id = Uuid::now_v7();
    let expires_at = Utc::now()
        + chrono::Duration::from_std(keys.refresh_ttl).unwrap_or(chrono::Duration::days(30));
    sqlx::query(
        "insert into session (session_id, user_id, expires_at, ip, user_agent) values ($1, $2, $3, $4, left($5, 300))",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(expires_at)
    .bind(ip)
    .bind(user_agent)
    .execute(&mut *tx)
    .await?;
    issue_pair_tx(tx, keys, user_id, session_id, role, expires_at).await
}

async fn issue_pair_tx(
    tx: &mut PgConnection,
    keys: &TokenKeys,
    user_id: Uuid,
    session_id: Uuid,
    role: Role,
    expires_at: DateTime<Utc>,
) -> Result<TokenPair, AuthError> {
    let refresh_token = new_refresh_token();
    sqlx::query(
        "insert into refresh_token (token_hash, session_id, expires_at) values ($1, $2, $3)",
    )
    .bind(sha256_hex(&refresh_token))
    .bind(session_id)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    Ok(TokenPair {
        access_token: keys.access_token(user_id, session_id, role)?,
        refresh_token,
        token_type: "Bearer",
        expires_in: keys.access_ttl.as_secs(),
    })
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    session_id: Uuid,
    used_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    user_id: Uuid,
    role: String,
    revoked_at: Option<DateTime<Utc>>,
}

/// Exchanges a refresh token for a new pair. A token used twice revokes its whole session.
pub async fn refresh(
    pool: &PgPool,
    keys: &TokenKeys,
    refresh_token: &str,
) -> Result<TokenPair, AuthError> {
    let mut tx = pool.begin().await?;
    let row: Option<RefreshRow> = sqlx::query_as(
        "select r.session_id, r.used_at, r.expires_at, s.user_id, u.role, s.revoked_at
         from refresh_token r join session s using (session_id) join app_user u using (user_id)
         where r.token_hash = $1 for update of r, s",
    )
    .bind(sha256_hex(refresh_token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(RefreshRow {
        session_id,
        used_at,
        expires_at,
        user_id,
        role,
        revoked_at,
    }) = row
    else {
        return Err(AuthError::InvalidRefreshToken);
    };
    if used_at.is_some() {
        revoke_session_tx(&mut tx, session_id, "refresh_token_reused").await?;
        tx.commit().await?;
        tracing::warn!(%session_id, %user_id, "refresh token reuse detected; session revoked");
        return Err(AuthError::RefreshTokenReused);
    }
    if revoked_at.is_some() || expires_at <= Utc::now() {
        return Err(AuthError::InvalidRefreshToken);
    }
    sqlx::query("update refresh_token set used_at = now() where token_hash = $1")
        .bind(sha256_hex(refresh_token))
        .execute(&mut *tx)
        .await?;
    sqlx::query("update session set last_used_at = now() where session_id = $1")
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
    let role = Role::parse(&role).unwrap_or(Role::User);
    let pair = issue_pair_tx(&mut tx, keys, user_id, session_id, role, expires_at).await?;
    tx.commit().await?;
    Ok(pair)
}

pub async fn revoke_session_tx(
    tx: &mut PgConnection,
    session_id: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update session set revoked_at = now(), revoked_reason = $2 where session_id = $1 and revoked_at is null",
    )
    .bind(session_id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Revokes every live session of a user, except `keep` if given.
pub async fn revoke_user_sessions_tx(
    tx: &mut PgConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "update session set revoked_at = now(), revoked_reason = $3
         where user_id = $1 and revoked_at is null and ($2::uuid is null or session_id <> $2)",
    )
    .bind(user_id)
    .bind(keep)
    .bind(reason)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}

/// Who a valid access token belongs to, if its session is live.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
    pub email: String,
}

pub async fn principal(
    pool: &PgPool,
    keys: &TokenKeys,
    token: &str,
) -> Result<Option<Principal>, sqlx::Error> {
    let Some(claims) = keys.verify(token) else {
        return Ok(None);
    };
    let row: Option<(String, String)> = sqlx::query_as(
        "select u.role, u.email from session s join app_user u using (user_id)
         where s.session_id = $1 and s.user_id = $2 and s.revoked_at is null and s.expires_at > now()",
    )
    .bind(claims.sid)
    .bind(claims.sub)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(role, email)| Principal {
        user_id: claims.sub,
        session_id: claims.sid,
        // The role is read from the user row: a demoted admin loses access without waiting for token expiry.
        role: Role::parse(&role).unwrap_or(Role::User),
        email,
    }))
}

/// The throttle keys of a sign-in to `email_key` from `origin` (the client's address, if known).
fn login_keys(email_key: &str, origin: Option<&str>) -> [(String, throttle::Policy); 3] {
    let origin = origin.unwrap_or("unknown");
    [
        (
            format!("login:account-origin:{email_key}|{origin}"),
            throttle::LOGIN_PER_ACCOUNT_AND_ORIGIN,
        ),
        (format!("login:origin:{origin}"), throttle::LOGIN_PER_ORIGIN),
        (
            format!("login:account:{email_key}"),
            throttle::LOGIN_PER_ACCOUNT,
        ),
    ]
}

/// Checks an email and password, throttled per account and origin, per origin and per account
/// (`throttle`); the user and role. The attempt is counted before the password is checked.
pub async fn verify_credentials(
    pool: &PgPool,
    email: &str,
    password: &str,
    ip: Option<&str>,
) -> Result<(Uuid, Role), AuthError> {
    let email_key = email.trim().to_lowercase();
    let keys = login_keys(&email_key, ip);
    if let Err(refused) = throttle::reserve(pool, &keys, Utc::now()).await? {
        return Err(AuthError::Throttled {
            retry_after_seconds: refused.retry_after_seconds(),
        });
    }
    let user: Option<(Uuid, String, String)> =
        sqlx::query_as("select user_id, password_hash, role from app_user where lower(email) = $1")
            .bind(&email_key)
            .fetch_optional(pool)
            .await?;
    // The hash is verified even for unknown emails, so timing does not reveal which emails exist.
    let (user_id, hash, role) =
        user.unwrap_or_else(|| (Uuid::nil(), DUMMY_HASH.clone(), "user".to_owned()));
    let verified = check_secret(password, hash).await;
    if !verified || user_id.is_nil() {
        return Err(AuthError::InvalidCredentials);
    }
    // The owner proved themselves: their own keys start again. The origin's key may front others and keeps its
    // failures, but a success is not one: an office of many people signing in from one address is not slowed.
    let [(account_origin, _), (origin, origin_policy), (account, _)] = keys;
    throttle::clear(pool, &[account_origin, account]).await?;
    throttle::refund(pool, &origin, &origin_policy).await?;
    Ok((user_id, Role::parse(&role).unwrap_or(Role::User)))
}

/// Checks the current password of a signed-in user, throttled per user (`throttle::CURRENT_PASSWORD`) and counted
/// before the check: `Ok(true)` when right, `Ok(false)` when wrong.
pub async fn check_current_password(
    pool: &PgPool,
    user_id: Uuid,
    password: &str,
) -> Result<bool, AuthError> {
    let key = format!("password:user:{user_id}");
    if let Err(refused) = throttle::reserve(
        pool,
        &[(key.clone(), throttle::CURRENT_PASSWORD)],
        Utc::now(),
    )
    .await?
    {
        return Err(AuthError::Throttled {
            retry_after_seconds: refused.retry_after_seconds(),
        });
    }
    let hash: String = sqlx::query_scalar("select password_hash from app_user where user_id = $1")
        .bind(user_id)
        .fetch_one(pool)
        .await?;
    let verified = check_secret(password, hash).await;
    if verified {
        throttle::clear(pool, &[key]).await?;
    }
    Ok(verified)
}

/// Whether the user proved their e-mail address (with the code sent to it, or a password reset).
pub async fn email_verified_tx(tx: &mut PgConnection, user_id: Uuid) -> Result<bool, sqlx::Error> {
    let verified: Option<bool> =
        sqlx::query_scalar("select email_verified_at is not null from app_user where user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(verified.unwrap_or(false))
}

/// Guessable secrets (passwords, PINs) checked against their hash by this process since it started: the
/// `paycore_secret_checks_total` metric, and what the tests count to prove a throttle holds under concurrency.
static SECRET_CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn secret_checks() -> u64 {
    SECRET_CHECKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Verifies `secret` against `hash` within the hashing limit, counting the check.
pub async fn check_secret(secret: &str, hash: String) -> bool {
    SECRET_CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let secret = secret.to_owned();
    with_hashing_permit(move || verify_secret(&secret, &hash))
        .await
        .unwrap_or(false)
}

/// A real argon2id hash of a random string, verified against when the email is unknown so that the time taken
/// is the same as for a wrong password.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let random: [u8; 16] = rand::random();
    hash_secret(&hex::encode(random)).unwrap_or_default()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_only_against_their_own_hash() {
        let hash = hash_secret("correct horse").expect("hash");
        assert!(verify_secret("correct horse", &hash));
        assert!(!verify_secret("correct horsf", &hash));
        assert!(!verify_secret("anything", "not a hash"));
        assert!(!verify_secret("anything", &DUMMY_HASH));
    }

    #[test]
    fn hashes_in_kept_memory_are_the_standard_phc_hashes() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours verify with the argon2 crate's own verifier, and its hashes (as stored before) verify with ours …
        let ours = hash_secret("correct horse").expect("hash");
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).expect("phc");
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"battery staple", &salt)
            .expect("hash")
            .to_string();
        assert!(verify_secret("battery staple", &theirs));
        assert!(!verify_secret("battery stapler", &theirs));
        // … including hashes made with other parameters or variants.
        let other = Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x13,
            argon2::Params::new(4096, 3, 1, None).expect("params"),
        )
        .hash_password(b"staple", &salt)
        .expect("hash")
        .to_string();
        assert!(verify_secret("staple", &other));
        assert!(!verify_secret("stapler", &other));
        // The kept memory is reused, never more areas than hashing permits.
        for _ in 0..4 {
            hash_secret("again").expect("hash");
        }
        let kept = HASHING_MEMORY.lock().expect("lock").len();
        assert!((1..=HASHING_PERMITS.0).contains(&kept), "{kept}");
    }

    #[test]
    fn emails_are_parsed_strictly_enough() {
        assert!(Email::parse(" Ada@Example.com ").is_some());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn access_tokens_round_trip_and_reject_tampering_and_other_keys() {
        let keys = TokenKeys::new(
            "k".repeat(40).as_str(),
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        let user = Uuid::now_v7();
        let session = Uuid::now_v7();
        let token = keys
            .access_token(user, session, Role::Admin)
            .expect("token");
        let claims = keys.verify(&token).expect("valid");
        assert_eq!(
            (claims.sub, claims.sid, claims.role),
            (user, session, Role::Admin)
        );
        let other = TokenKeys::new(
            "x".repeat(40).as_str(),
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        assert!(other.verify(&token).is_none());
        assert!(keys.verify(&format!("{token}x")).is_none());
        let expired = TokenKeys::new(
            "k".repeat(40).as_str(),
            Duration::ZERO,
            Duration::from_secs(600),
        );
        let old = expired
            .access_token(user, session, Role::User)
            .expect("token");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(keys.verify(&old).is_none());
    }
}
