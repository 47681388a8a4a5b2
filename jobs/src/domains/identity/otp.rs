//! One-time codes: e-mail verification, password reset and two-step sign-in.
//!
//! Codes are six random digits, stored only as an HMAC (keyed with the server secret, so a leaked table cannot be
//! brute-forced offline), used at most once, expire after `OTP_TTL_SECONDS` (15 minutes), and lock after five
//! wrong tries. A new code supersedes the older ones of its purpose; asking again is throttled
//! (`OTP_RESEND_INTERVAL_SECONDS`, and at most five codes an hour). The clear code is handed out only sealed.

use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::notify::sealed::{SealKey, SealedSecret};
use crate::platform::config::Config;
use crate::providers::signature::hmac_sha256_hex;

pub const ATTEMPTS_MAX: i32 = 5;
/// Codes of one purpose one user may be sent in an hour.
pub const CODES_PER_HOUR_MAX: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    EmailVerification,
    PasswordReset,
    Login,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::EmailVerification => "email_verification",
            Purpose::PasswordReset => "password_reset",
            Purpose::Login => "login",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueRefusal {
    /// Asked again too soon.
    TooSoon { retry_after_seconds: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Valid,
    Invalid { attempts_left: i32 },
    Expired,
    Locked,
    Used,
    NotFound,
}

fn hash(secret: &str, otp_id: Uuid, code: &str) -> String {
    hmac_sha256_hex(secret, format!("{otp_id}:{code}").as_bytes())
}

/// Issues a new code in the caller's transaction: `(otp_id, code)` to send, or why not now. The code comes back
/// sealed: in clear it exists only here and in the mailer, never in a job's arguments (see `notify::sealed`).
pub async fn issue_tx(
    tx: &mut PgConnection,
    config: &Config,
    user_id: Uuid,
    purpose: Purpose,
) -> Result<Result<(Uuid, SealedSecret), IssueRefusal>, sqlx::Error> {
    // Serialise issuing per user, so the throttle cannot be raced.
    sqlx::query("select 1 from app_user where user_id = $1 for update")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let (last, recent): (Option<DateTime<Utc>>, i64) = sqlx::query_as(
        "select max(created_at), count(*) filter (where created_at > now() - interval '1 hour')
         from otp_code where user_id = $1 and purpose = $2",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let interval = chrono::Duration::from_std(config.notifications.otp_resend_interval)
        .unwrap_or(chrono::Duration::seconds(60));
    if let Some(last) = last {
        let next = last + interval;
        if next > Utc::now() {
            return Ok(Err(IssueRefusal::TooSoon {
                retry_after_seconds: (next - Utc::now()).num_seconds().max(1),
            }));
        }
    }
    if recent >= CODES_PER_HOUR_MAX {
        return Ok(Err(IssueRefusal::TooSoon {
            retry_after_seconds: 3600,
        }));
    }
    sqlx::query(
        "update otp_code set used_at = now() where user_id = $1 and purpose = $2 and used_at is null",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .execute(&mut *tx)
    .await?;
    let otp_id = Uuid::now_v7();
    let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32));
    let ttl = chrono::Duration::from_std(config.notifications.otp_ttl)
        .unwrap_or(chrono::Duration::minutes(15));
    sqlx::query(
        "insert into otp_code (otp_id, user_id, purpose, code_hash, expires_at) values ($1, $2, $3, $4, $5)",
    )
    .bind(otp_id)
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(hash(config.jwt_secret.expose(), otp_id, &code))
    .bind(Utc::now() + ttl)
    .execute(&mut *tx)
    .await?;
    Ok(Ok((
        otp_id,
        SealedSecret::seal(&SealKey::from_config(config), &code),
    )))
}

/// Minutes a code lives, for the e-mail.
pub fn ttl_minutes(config: &Config) -> i64 {
    i64::try_from(config.notifications.otp_ttl.as_secs() / 60).unwrap_or(15)
}

#[derive(sqlx::FromRow)]
struct Row {
    otp_id: Uuid,
    code_hash: String,
    attempts: i32,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
}

/// Checks `code` against the user's latest code of `purpose` (or the code `otp_id`), counting a wrong try. The
/// caller commits whatever the answer, so that tries count.
pub async fn verify_tx(
    tx: &mut PgConnection,
    secret: &str,
    user_id: Uuid,
    purpose: Purpose,
    otp_id: Option<Uuid>,
    code: &str,
) -> Result<Check, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "select otp_id, code_hash, attempts, expires_at, used_at from otp_code
         where user_id = $1 and purpose = $2 and ($3::uuid is null or otp_id = $3)
         order by created_at desc limit 1 for update",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(otp_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(Check::NotFound);
    };
    if row.attempts >= ATTEMPTS_MAX {
        return Ok(Check::Locked);
    }
    if row.used_at.is_some() {
        return Ok(Check::Used);
    }
    if row.expires_at <= Utc::now() {
        return Ok(Check::Expired);
    }
    let expected = hash(secret, row.otp_id, code.trim());
    let matches = expected.len() == row.code_hash.len()
        && expected
            .bytes()
            .zip(row.code_hash.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if matches {
        sqlx::query("update otp_code set used_at = now() where otp_id = $1")
            .bind(row.otp_id)
            .execute(&mut *tx)
            .await?;
        return Ok(Check::Valid);
    }
    let attempts = row.attempts + 1;
    sqlx::query("update otp_code set attempts = $2 where otp_id = $1")
        .bind(row.otp_id)
        .bind(attempts)
        .execute(&mut *tx)
        .await?;
    Ok(if attempts >= ATTEMPTS_MAX {
        Check::Locked
    } else {
        Check::Invalid {
            attempts_left: ATTEMPTS_MAX - attempts,
        }
    })
}
