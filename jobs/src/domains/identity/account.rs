//! The account flows that carry one-time codes: sign-in (with new-device warnings and optional two-step login),
//! e-mail verification, and password reset. Each code and its e-mail are written in one transaction.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domains::identity::auth::{self, AuthError, Role, TokenKeys, TokenPair};
use crate::domains::identity::otp::{self, Check, IssueRefusal, Purpose};
use crate::notify::{self, sealed, Event};
use crate::platform::config::Config;

/// How a sign-in went.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Signed in.
    Tokens(TokenPair),
    /// The password was right; a code was e-mailed. Finish with `finish_two_step`.
    TwoStep { challenge_id: Uuid },
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    // Not `transparent`: the sqlx error stays in the source chain, where the api recognises a lost database.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("the code is not valid")]
    Code(Check),
    #[error("a code was sent recently")]
    TooSoon { retry_after_seconds: i64 },
    #[error("the e-mail address is already verified")]
    AlreadyVerified,
    #[error("verify the e-mail address first")]
    EmailNotVerified,
    #[error("the password is wrong")]
    WrongPassword,
}

impl From<IssueRefusal> for AccountError {
    fn from(refusal: IssueRefusal) -> Self {
        match refusal {
            IssueRefusal::TooSoon {
                retry_after_seconds,
            } => AccountError::TooSoon {
                retry_after_seconds,
            },
        }
    }
}

/// Issues a code of `purpose` and e-mails it (the event built by `event`), in the caller's transaction.
async fn send_code_tx(
    tx: &mut PgConnection,
    config: &Config,
    user_id: Uuid,
    purpose: Purpose,
    event: fn(sealed::SealedSecret, i64) -> Event,
) -> Result<Result<Uuid, IssueRefusal>, sqlx::Error> {
    let (otp_id, code) = match otp::issue_tx(tx, config, user_id, purpose).await? {
        Ok(issued) => issued,
        Err(refusal) => return Ok(Err(refusal)),
    };
    notify::notify_tx(tx, user_id, &event(code, otp::ttl_minutes(config)), None).await?;
    Ok(Ok(otp_id))
}

fn verification(code: sealed::SealedSecret, minutes: i64) -> Event {
    Event::EmailVerification { code, minutes }
}

fn login_code(code: sealed::SealedSecret, minutes: i64) -> Event {
    Event::LoginCode { code, minutes }
}

fn password_reset(code: sealed::SealedSecret, minutes: i64) -> Event {
    Event::PasswordReset { code, minutes }
}

/// Opens a session and, when it comes from a device this user has not signed in from before, warns them.
async fn open_session_and_warn_tx(
    tx: &mut PgConnection,
    keys: &TokenKeys,
    user_id: Uuid,
    role: Role,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<TokenPair, AccountError> {
    let (sessions, known): (i64, bool) = sqlx::query_as(
        "select count(*), coalesce(bool_or(user_agent is not distinct from left($2, 300)), false)
         from session where user_id = $1",
    )
    .bind(user_id)
    .bind(user_agent)
    .fetch_one(&mut *tx)
    .await?;
    let pair = auth::open_session_tx(tx, keys, user_id, role, ip, user_agent).await?;
    if sessions > 0 && !known {
        notify::notify_tx(
            tx,
            user_id,
            &Event::NewDevice {
                ip: ip.unwrap_or("unknown").to_owned(),
                user_agent: user_agent.unwrap_or("an unknown device").to_owned(),
                at: chrono::Utc::now(),
            },
            None,
        )
        .await?;
    }
    Ok(pair)
}

/// Signs in with email and password: tokens, or (two-step users) a challenge whose code was e-mailed.
pub async fn login(
    pool: &PgPool,
    config: &Config,
    keys: &TokenKeys,
    email: &str,
    password: &str,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<LoginOutcome, AccountError> {
    let (user_id, role) = auth::verify_credentials(pool, email, password, ip).await?;
    let two_step: bool =
        sqlx::query_scalar("select two_step_login from app_user where user_id = $1")
            .bind(user_id)
            .fetch_one(pool)
            .await?;
    let mut tx = pool.begin().await?;
    let outcome = if two_step {
        let challenge_id =
            send_code_tx(&mut tx, config, user_id, Purpose::Login, login_code).await??;
        LoginOutcome::TwoStep { challenge_id }
    } else {
        LoginOutcome::Tokens(
            open_session_and_warn_tx(&mut tx, keys, user_id, role, ip, user_agent).await?,
        )
    };
    tx.commit().await?;
    notify::announce_for_user(pool, user_id).await;
    Ok(outcome)
}

/// The second step of a two-step sign-in: the e-mailed code for `challenge_id`.
pub async fn finish_two_step(
    pool: &PgPool,
    config: &Config,
    keys: &TokenKeys,
    challenge_id: Uuid,
    code: &str,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<TokenPair, AccountError> {
    let owner: Option<(Uuid, String)> = sqlx::query_as(
        "select u.user_id, u.role from otp_code o join app_user u on u.user_id = o.user_id
         where o.otp_id = $1 and o.purpose = 'login'",
    )
    .bind(challenge_id)
    .fetch_optional(pool)
    .await?;
    let Some((user_id, role)) = owner else {
        return Err(AccountError::Code(Check::NotFound));
    };
    let mut tx = pool.begin().await?;
    let check = otp::verify_tx(
        &mut tx,
        config.jwt_secret.expose(),
        user_id,
        Purpose::Login,
        Some(challenge_id),
        code,
    )
    .await?;
    if check != Check::Valid {
        tx.commit().await?;
        return Err(AccountError::Code(check));
    }
    let role = Role::parse(&role).unwrap_or(Role::User);
    let pair = open_session_and_warn_tx(&mut tx, keys, user_id, role, ip, user_agent).await?;
    tx.commit().await?;
    notify::announce_for_user(pool, user_id).await;
    Ok(pair)
}

/// Confirms the e-mail address with the code sent to it.
pub async fn verify_email(
    pool: &PgPool,
    config: &Config,
    user_id: Uuid,
    code: &str,
) -> Result<(), AccountError> {
    let mut tx = pool.begin().await?;
    let verified: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select email_verified_at from app_user where user_id = $1 for update")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
    if verified.is_some() {
        return Err(AccountError::AlreadyVerified);
    }
    let check = otp::verify_tx(
        &mut tx,
        config.jwt_secret.expose(),
        user_id,
        Purpose::EmailVerification,
        None,
        code,
    )
    .await?;
    if check == Check::Valid {
        sqlx::query(
            "update app_user set email_verified_at = now(), updated_at = now() where user_id = $1",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    match check {
        Check::Valid => Ok(()),
        other => Err(AccountError::Code(other)),
    }
}

/// Sends a new e-mail verification code (throttled).
pub async fn resend_verification(
    pool: &PgPool,
    config: &Config,
    user_id: Uuid,
) -> Result<(), AccountError> {
    let mut tx = pool.begin().await?;
    let verified: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select email_verified_at from app_user where user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
    if verified.is_some() {
        return Err(AccountError::AlreadyVerified);
    }
    send_code_tx(
        &mut tx,
        config,
        user_id,
        Purpose::EmailVerification,
        verification,
    )
    .await??;
    tx.commit().await?;
    crate::engine::wake(pool, &[crate::engine::Queue::Emails]).await;
    Ok(())
}

/// The user whose address this is, compared without case.
async fn user_id_by_email(pool: &PgPool, email: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("select user_id from app_user where lower(email) = lower($1)")
        .bind(email.trim())
        .fetch_optional(pool)
        .await
}

/// Starts a password reset: a code goes to the address if it belongs to a user. The answer never says whether
/// it does (and a throttled request is silently dropped for the same reason).
pub async fn forgot_password(
    pool: &PgPool,
    config: &Config,
    email: &str,
) -> Result<(), AccountError> {
    let user = user_id_by_email(pool, email).await?;
    let Some(user_id) = user else {
        return Ok(());
    };
    let mut tx = pool.begin().await?;
    if send_code_tx(
        &mut tx,
        config,
        user_id,
        Purpose::PasswordReset,
        password_reset,
    )
    .await?
    .is_err()
    {
        return Ok(());
    }
    tx.commit().await?;
    crate::engine::wake(pool, &[crate::engine::Queue::Emails]).await;
    Ok(())
}

/// Finishes a password reset: with the right code the password changes, every session is signed out, and the
/// address counts as verified (its owner just read mail sent to it).
pub async fn reset_password(
    pool: &PgPool,
    config: &Config,
    email: &str,
    code: &str,
    new_password: &str,
) -> Result<(), AccountError> {
    let user = user_id_by_email(pool, email).await?;
    let Some(user_id) = user else {
        return Err(AccountError::Code(Check::NotFound));
    };
    let password = new_password.to_owned();
    let new_hash = auth::with_hashing_permit(move || auth::hash_secret(&password))
        .await
        .ok_or_else(|| AuthError::Hash("hashing task failed".into()))?
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    let mut tx = pool.begin().await?;
    let check = otp::verify_tx(
        &mut tx,
        config.jwt_secret.expose(),
        user_id,
        Purpose::PasswordReset,
        None,
        code,
    )
    .await?;
    if check == Check::Valid {
        sqlx::query(
            "update app_user set password_hash = $2, email_verified_at = coalesce(email_verified_at, now()),
                 updated_at = now()
             where user_id = $1",
        )
        .bind(user_id)
        .bind(new_hash)
        .execute(&mut *tx)
        .await?;
        auth::revoke_user_sessions_tx(&mut tx, user_id, None, "password_reset").await?;
        notify::notify_tx(
            &mut tx,
            user_id,
            &Event::PasswordChanged {
                how: "reset",
                at: chrono::Utc::now(),
            },
            None,
        )
        .await?;
    }
    tx.commit().await?;
    if check == Check::Valid {
        notify::announce_for_user(pool, user_id).await;
    }
    match check {
        Check::Valid => Ok(()),
        other => Err(AccountError::Code(other)),
    }
}

/// Changes a signed-in user's password: the current one confirms it (throttled, `auth::check_current_password`),
/// every other session is signed out, and the owner is told by e-mail.
pub async fn change_password(
    pool: &PgPool,
    user_id: Uuid,
    session_id: Uuid,
    current_password: &str,
    new_password: &str,
) -> Result<(), AccountError> {
    if !auth::check_current_password(pool, user_id, current_password).await? {
        return Err(AccountError::WrongPassword);
    }
    let password = new_password.to_owned();
    let new_hash = auth::with_hashing_permit(move || auth::hash_secret(&password))
        .await
        .ok_or_else(|| AuthError::Hash("hashing task failed".into()))?
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    let mut tx = pool.begin().await?;
    sqlx::query("update app_user set password_hash = $2, updated_at = now() where user_id = $1")
        .bind(user_id)
        .bind(new_hash)
        .execute(&mut *tx)
        .await?;
    auth::revoke_user_sessions_tx(&mut tx, user_id, Some(session_id), "password_changed").await?;
    notify::notify_tx(
        &mut tx,
        user_id,
        &Event::PasswordChanged {
            how: "changed",
            at: chrono::Utc::now(),
        },
        None,
    )
    .await?;
    tx.commit().await?;
    notify::announce_for_user(pool, user_id).await;
    Ok(())
}

/// Turns two-step sign-in on or off (the password confirms it; turning it on needs a verified address).
pub async fn set_two_step(
    pool: &PgPool,
    user_id: Uuid,
    password: &str,
    enabled: bool,
) -> Result<(), AccountError> {
    if !auth::check_current_password(pool, user_id, password).await? {
        return Err(AccountError::WrongPassword);
    }
    let verified: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select email_verified_at from app_user where user_id = $1")
            .bind(user_id)
            .fetch_one(pool)
            .await?;
    if enabled && verified.is_none() {
        return Err(AccountError::EmailNotVerified);
    }
    sqlx::query("update app_user set two_step_login = $2, updated_at = now() where user_id = $1")
        .bind(user_id)
        .bind(enabled)
        .execute(pool)
        .await?;
    Ok(())
}
