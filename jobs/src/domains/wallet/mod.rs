//! Users' wallets: registration (user, NGN wallet and welcome bonus in one transaction), wallets per currency,
//! freezing, spending limits and the transaction PIN.

pub mod limits;
pub mod spend;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Acquire, PgConnection, PgPool};
use uuid::Uuid;

use crate::domains::identity::auth::{self, Email, Role};
use crate::domains::identity::throttle;
use crate::ledger::{self, AccountId, Flow, NewTransfer, SystemAccount};
use crate::money::nuban;
use crate::money::{Amount, Currency};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WalletRow {
    pub wallet_id: Uuid,
    pub user_id: Uuid,
    pub currency: String,
    pub account_id: AccountId,
    pub account_number: String,
    pub status: String,
    pub daily_limit: Option<i64>,
    pub monthly_limit: Option<i64>,
    pub pin_hash: Option<String>,
    pub pin_failed_attempts: i32,
    pub pin_locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl WalletRow {
    pub fn currency(&self) -> Currency {
        self.currency.parse().unwrap_or(Currency::Ngn)
    }
    pub fn is_frozen(&self) -> bool {
        self.status == "frozen"
    }
}

/// A wallet with its balances, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WalletView {
    pub wallet_id: Uuid,
    pub currency: String,
    pub account_number: String,
    pub status: String,
    pub balances: ledger::Balances,
    pub daily_limit: Option<i64>,
    pub monthly_limit: Option<i64>,
    pub has_pin: bool,
    pub created_at: DateTime<Utc>,
}

pub async fn view(pool: &PgPool, wallet: &WalletRow) -> Result<WalletView, sqlx::Error> {
    Ok(WalletView {
        wallet_id: wallet.wallet_id,
        currency: wallet.currency.clone(),
        account_number: wallet.account_number.clone(),
        status: wallet.status.clone(),
        balances: ledger::balances(pool, wallet.account_id).await?,
        daily_limit: wallet.daily_limit,
        monthly_limit: wallet.monthly_limit,
        has_pin: wallet.pin_hash.is_some(),
        created_at: wallet.created_at,
    })
}

/// Who freezes or unfreezes a wallet: its owner, or an admin (or compliance, acting as an admin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeActor {
    Owner,
    Admin,
}

impl FreezeActor {
    fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
        }
    }
}

/// Why an unfreeze was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FreezeRejection {
    #[error("an administrator froze this wallet; only an administrator can unfreeze it")]
    FrozenByAdmin,
}

/// Freezes a wallet. An admin's freeze replaces an owner's; an owner freezing an admin-frozen wallet changes
/// nothing (the admin's freeze still holds).
pub async fn freeze(
    pool: &PgPool,
    wallet_id: Uuid,
    by: FreezeActor,
) -> Result<WalletRow, sqlx::Error> {
    sqlx::query_as!(
        WalletRow,
        "update wallet set status = 'frozen', updated_at = now(),
             frozen_by = case when $2 = 'admin' or (status = 'frozen' and frozen_by = 'admin') then 'admin'
                              else 'owner' end
         where wallet_id = $1
         returning wallet_id, user_id, currency, account_id, account_number, status, daily_limit, monthly_limit,
             pin_hash, pin_failed_attempts, pin_locked_until, created_at",
        wallet_id,
        by.as_str(),
    )
    .fetch_one(pool)
    .await
}

/// Unfreezes a wallet: an owner may lift only their own freeze, an admin any.
pub async fn unfreeze(
    pool: &PgPool,
    wallet_id: Uuid,
    by: FreezeActor,
) -> Result<Result<WalletRow, FreezeRejection>, sqlx::Error> {
    let row: Option<WalletRow> = sqlx::query_as!(
        WalletRow,
        "update wallet set status = 'active', frozen_by = null, updated_at = now()
         where wallet_id = $1 and ($2 = 'admin' or frozen_by is distinct from 'admin')
         returning wallet_id, user_id, currency, account_id, account_number, status, daily_limit, monthly_limit,
             pin_hash, pin_failed_attempts, pin_locked_until, created_at",
        wallet_id,
        by.as_str(),
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.ok_or(FreezeRejection::FrozenByAdmin))
}

/// The caller's wallet `wallet_id`, or `None` when it does not exist or belongs to someone else.
pub async fn owned(
    pool: &PgPool,
    user_id: Uuid,
    wallet_id: Uuid,
) -> Result<Option<WalletRow>, sqlx::Error> {
    sqlx::query_as!(
        WalletRow,
        "select wallet_id, user_id, currency, account_id, account_number, status, daily_limit, monthly_limit,
             pin_hash, pin_failed_attempts, pin_locked_until, created_at
         from wallet where wallet_id = $1 and user_id = $2",
        wallet_id,
        user_id,
    )
    .fetch_optional(pool)
    .await
}

pub async fn by_id(
    db: impl sqlx::PgExecutor<'_>,
    wallet_id: Uuid,
) -> Result<Option<WalletRow>, sqlx::Error> {
    sqlx::query_as!(
        WalletRow,
        "select wallet_id, user_id, currency, account_id, account_number, status, daily_limit, monthly_limit,
             pin_hash, pin_failed_attempts, pin_locked_until, created_at
         from wallet where wallet_id = $1",
        wallet_id,
    )
    .fetch_optional(db)
    .await
}

/// Locks a wallet row for the rest of the transaction. `for no key update`, not `for update`: transfers insert
/// rows referencing the *other* wallet, and the foreign-key check's share lock must not wait on this lock, or two
/// opposite transfers deadlock.
pub async fn lock_tx(
    tx: &mut PgConnection,
    wallet_id: Uuid,
) -> Result<Option<WalletRow>, sqlx::Error> {
    sqlx::query_as!(
        WalletRow,
        "select wallet_id, user_id, currency, account_id, account_number, status, daily_limit, monthly_limit,
             pin_hash, pin_failed_attempts, pin_locked_until, created_at
         from wallet where wallet_id = $1 for no key update",
        wallet_id,
    )
    .fetch_optional(&mut *tx)
    .await
}

pub async fn by_account_number_tx(
    tx: &mut PgConnection,
    number: &str,
) -> Result<Option<WalletRow>, sqlx::Error> {
    sqlx::query_as!(
        WalletRow,
        "select wallet_id, user_id, currency, account_id, account_number, status, daily_limit, monthly_limit,
             pin_hash, pin_failed_attempts, pin_locked_until, created_at
         from wallet where account_number = $1",
        number,
    )
    .fetch_optional(&mut *tx)
    .await
}

pub async fn list_owned(pool: &PgPool, user_id: Uuid) -> Result<Vec<WalletRow>, sqlx::Error> {
    sqlx::query_as!(
        WalletRow,
        "select wallet_id, user_id, currency, account_id, account_number, status, daily_limit, monthly_limit,
             pin_hash, pin_failed_attempts, pin_locked_until, created_at
         from wallet where user_id = $1 order by created_at",
        user_id,
    )
    .fetch_all(pool)
    .await
}

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("a wallet in this currency already exists")]
    AlreadyExists,
    #[error("no free account number could be found")]
    NoAccountNumber,
    // Not `transparent`: the sqlx error stays in the source chain, where the api recognises a lost database.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// Tries to find an unused NUBAN; a collision is retried with a new serial.
const ACCOUNT_NUMBER_TRIES: usize = 8;

/// Creates a wallet (and its ledger account) in the caller's transaction.
pub async fn create_tx(
    tx: &mut PgConnection,
    user_id: Uuid,
    currency: Currency,
    bank_code: &str,
) -> Result<WalletRow, WalletError> {
    let account_id = ledger::create_wallet_account_tx(tx, currency).await?;
    for _ in 0..ACCOUNT_NUMBER_TRIES {
        let number = nuban::generate(bank_code).ok_or(WalletError::NoAccountNumber)?;
        // A savepoint, so that a collision does not abort the caller's transaction.
        let mut savepoint = tx.begin().await?;
        let inserted = sqlx::query_as!(
            WalletRow,
            "insert into wallet (wallet_id, user_id, currency, account_id, account_number)
             values ($1, $2, $3, $4, $5)
             returning wallet_id, user_id, currency, account_id, account_number, status, daily_limit, monthly_limit,
                 pin_hash, pin_failed_attempts, pin_locked_until, created_at",
            Uuid::now_v7(),
            user_id,
            currency.code(),
            account_id,
            number,
        )
        .fetch_one(&mut *savepoint)
        .await;
        match inserted {
            Ok(row) => {
                savepoint.commit().await?;
                return Ok(row);
            }
            Err(error) => {
                let constraint = match &error {
                    sqlx::Error::Database(db) => db.constraint().map(str::to_owned),
                    _ => None,
                };
                savepoint.rollback().await?;
                match constraint.as_deref() {
                    Some("wallet_account_number_unique") => continue,
                    Some("wallet_one_per_currency") => return Err(WalletError::AlreadyExists),
                    _ => return Err(error.into()),
                }
            }
        }
    }
    Err(WalletError::NoAccountNumber)
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct UserView {
    pub user_id: Uuid,
    pub email: String,
    pub phone: Option<String>,
    pub full_name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub two_step_login: bool,
}

pub async fn user(pool: &PgPool, user_id: Uuid) -> Result<Option<UserView>, sqlx::Error> {
    sqlx::query_as!(
        UserView,
        "select user_id, email, phone, full_name, role, created_at, email_verified_at, two_step_login
         from app_user where user_id = $1",
        user_id,
    )
    .fetch_optional(pool)
    .await
}

/// A registration that passed validation.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub phone: Option<String>,
    pub password: String,
    pub full_name: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("too many registrations from this address")]
    Throttled { retry_after_seconds: u64 },
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    // Not `transparent`: the sqlx error stays in the source chain, where the api recognises a lost database.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

pub struct Registered {
    pub user: UserView,
    pub wallet: WalletRow,
}

/// Which part of a registration already belongs to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Email,
    Phone,
}

impl Taken {
    /// As the warning e-mail names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Taken::Email => "e-mail address",
            Taken::Phone => "phone number",
        }
    }
}

/// What a registration did. The caller must answer both alike (docs/security.md §10): whether an e-mail address
/// or phone number has an account is for its owner to know, not for whoever types it in.
pub enum Registration {
    /// A new user, their NGN wallet with the welcome bonus, and the verification e-mail on its way.
    Created(Box<Registered>),
    /// The e-mail address or phone number belongs to an account already. Nothing was created; that account's
    /// owner was told by e-mail that someone tried to register with it (at most once an hour).
    Taken(Taken),
}

/// At most one "someone tried to register with your address" e-mail an hour per account, so that registering
/// someone else's address over and over cannot be used to flood their mailbox.
const TAKEN_WARNING: throttle::Policy = throttle::Policy {
    free_attempts: 1,
    base_delay: std::time::Duration::from_secs(3600),
    max_delay: std::time::Duration::from_secs(3600),
    window: std::time::Duration::from_secs(3600),
};

/// Registers a user: the user, their NGN wallet, the welcome bonus from the subsidy account and the verification
/// e-mail, all in one transaction. No session is opened: the person signs in with the password they chose (and
/// verifies the address with the e-mailed code). When the e-mail address or phone number is taken, nothing is
/// created and the owner is warned instead; both paths hash the password first, so they take about as long.
pub async fn register(
    pool: &PgPool,
    config: &crate::platform::config::Config,
    new_user: NewUser,
    ip: Option<&str>,
) -> Result<Registration, RegisterError> {
    // Counted before anything else, so parallel sign-ups from one address cannot slip past (and a refusal writes
    // nothing but the count). The welcome bonus makes every account worth creating in bulk.
    let origin = ip.unwrap_or("unknown");
    let policy = throttle::registrations(config.security.registrations_per_address_per_hour);
    if let Err(refused) = throttle::reserve(
        pool,
        &[(format!("register:origin:{origin}"), policy)],
        Utc::now(),
    )
    .await?
    {
        return Err(RegisterError::Throttled {
            retry_after_seconds: refused.retry_after_seconds(),
        });
    }
    let password = new_user.password.clone();
    let password_hash = auth::with_hashing_permit(move || auth::hash_secret(&password))
        .await
        .ok_or_else(|| auth::AuthError::Hash("hashing task failed".into()))?
        .map_err(|e| auth::AuthError::Hash(e.to_string()))?;
    let user_id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    let inserted: Result<UserView, sqlx::Error> = sqlx::query_as!(
        UserView,
        "insert into app_user (user_id, email, phone, full_name, password_hash, role) values ($1, $2, $3, $4, $5, $6)
         returning user_id, email, phone, full_name, role, created_at, email_verified_at, two_step_login",
        user_id,
        new_user.email.as_str(),
        new_user.phone,
        new_user.full_name,
        password_hash,
        new_user.role.as_str(),
    )
    .fetch_one(&mut *tx)
    .await;
    let user = match inserted {
        Ok(user) => user,
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("app_user_email_unique") => {
            drop(tx);
            warn_owner(pool, &new_user, Taken::Email).await?;
            return Ok(Registration::Taken(Taken::Email));
        }
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("app_user_phone_unique") => {
            drop(tx);
            warn_owner(pool, &new_user, Taken::Phone).await?;
            return Ok(Registration::Taken(Taken::Phone));
        }
        Err(error) => return Err(error.into()),
    };
    let money = &config.money;
    let wallet = create_tx(&mut tx, user_id, Currency::Ngn, &money.bank_code).await?;
    if let Ok(bonus) = Amount::new(money.initial_bonus_minor) {
        let subsidy =
            ledger::system_account_tx(&mut tx, SystemAccount::Subsidy, Currency::Ngn).await?;
        ledger::post_tx(
            &mut tx,
            &[NewTransfer {
                flow: Flow::Posted(bonus),
                debit: subsidy,
                credit: wallet.account_id,
                currency: Currency::Ngn,
                code: "welcome_bonus",
                operation_id: None,
            }],
        )
        .await?;
    }
    // The e-mail verification code goes out with the registration (a fresh user cannot be throttled).
    if let Ok((_, code)) = crate::domains::identity::otp::issue_tx(
        &mut tx,
        config,
        user_id,
        crate::domains::identity::otp::Purpose::EmailVerification,
    )
    .await?
    {
        crate::notify::notify_tx(
            &mut tx,
            user_id,
            &crate::notify::Event::EmailVerification {
                code,
                minutes: crate::domains::identity::otp::ttl_minutes(config),
            },
            None,
        )
        .await?;
    }
    tx.commit().await?;
    crate::engine::wake(pool, &[crate::engine::Queue::Emails]).await;
    Ok(Registration::Created(Box::new(Registered { user, wallet })))
}

/// Tells the owner of the taken e-mail address or phone number that someone tried to register with it: the
/// warning goes to the account's own address, never to the one typed in.
async fn warn_owner(pool: &PgPool, new_user: &NewUser, taken: Taken) -> Result<(), RegisterError> {
    let owner: Option<Uuid> = match taken {
        Taken::Email => {
            sqlx::query_scalar("select user_id from app_user where lower(email) = lower($1)")
                .bind(new_user.email.as_str())
                .fetch_optional(pool)
                .await?
        }
        Taken::Phone => {
            sqlx::query_scalar("select user_id from app_user where phone = $1")
                .bind(&new_user.phone)
                .fetch_optional(pool)
                .await?
        }
    };
    // Gone since the insert failed (deleted in between): nobody to warn.
    let Some(owner) = owner else { return Ok(()) };
    let key = format!("register:taken-warning:{owner}");
    if throttle::reserve(pool, &[(key, TAKEN_WARNING)], Utc::now())
        .await?
        .is_err()
    {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    crate::notify::notify_tx(
        &mut tx,
        owner,
        &crate::notify::Event::RegistrationAttempt {
            what: taken.as_str(),
            at: Utc::now(),
        },
        None,
    )
    .await?;
    tx.commit().await?;
    crate::engine::wake(pool, &[crate::engine::Queue::Emails]).await;
    Ok(())
}

/// Creates an admin (without a wallet) unless a user with this email exists; true when created.
pub async fn ensure_admin(
    pool: &PgPool,
    email: &str,
    password: &str,
    role: Role,
) -> anyhow::Result<bool> {
    let email = Email::parse(email)
        .ok_or_else(|| anyhow::anyhow!("the admin email is not a valid address"))?;
    anyhow::ensure!(
        (auth::PASSWORD_CHARS_MIN..=auth::PASSWORD_CHARS_MAX).contains(&password.chars().count()),
        "the admin password must be {} to {} characters",
        auth::PASSWORD_CHARS_MIN,
        auth::PASSWORD_CHARS_MAX
    );
    let password = password.to_owned();
    let hash = auth::with_hashing_permit(move || auth::hash_secret(&password))
        .await
        .ok_or_else(|| anyhow::anyhow!("hashing task failed"))?
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    let inserted = sqlx::query!(
        "insert into app_user (user_id, email, full_name, password_hash, role) values ($1, $2, 'Administrator', $3, $4)
         on conflict do nothing",
        Uuid::now_v7(),
        email.as_str(),
        hash,
        role.as_str(),
    )
    .execute(pool)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("the PIN must be 4 to 6 digits")]
    Format,
    #[error("this PIN is too easy to guess")]
    Weak,
    #[error("the PIN cannot be a run of consecutive digits")]
    Sequential,
}

/// PINs everyone tries first.
const WEAK_PINS: [&str; 6] = ["1212", "6969", "1004", "2000", "4444", "2580"];

/// Checks a new PIN: 4–6 digits, not all one digit, not an ascending or descending run, not a well-known PIN.
pub fn validate_pin(pin: &str) -> Result<(), PinError> {
    if !(4..=6).contains(&pin.len()) || !pin.chars().all(|c| c.is_ascii_digit()) {
        return Err(PinError::Format);
    }
    let digits: Vec<i32> = pin.bytes().map(|b| i32::from(b - b'0')).collect();
    if digits.iter().all(|d| *d == digits[0]) || WEAK_PINS.contains(&pin) {
        return Err(PinError::Weak);
    }
    let steps: Vec<i32> = digits.windows(2).map(|w| w[1] - w[0]).collect();
    if steps.iter().all(|s| *s == 1) || steps.iter().all(|s| *s == -1) {
        return Err(PinError::Sequential);
    }
    Ok(())
}

/// Wrong PIN entries before the PIN locks …
pub const PIN_ATTEMPTS_MAX: i32 = 5;
/// … for this long.
pub const PIN_LOCK: chrono::Duration = chrono::Duration::minutes(15);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    Ok,
    Required,
    Locked { until: DateTime<Utc> },
    Invalid { attempts_left: i32 },
}

/// Checks `pin` against a wallet locked by the caller, counting wrong entries (commit the transaction even when
/// the check fails, so the count sticks).
pub async fn check_pin_tx(
    tx: &mut PgConnection,
    wallet: &WalletRow,
    pin: Option<&str>,
) -> Result<PinCheck, sqlx::Error> {
    let Some(hash) = wallet.pin_hash.clone() else {
        return Ok(PinCheck::Ok);
    };
    if let Some(until) = wallet.pin_locked_until.filter(|until| *until > Utc::now()) {
        return Ok(PinCheck::Locked { until });
    }
    let Some(pin) = pin else {
        return Ok(PinCheck::Required);
    };
    // The wallet row is locked by the caller, so the count read above and written below cannot be raced.
    let matches = auth::check_secret(pin, hash).await;
    if matches {
        if wallet.pin_failed_attempts > 0 {
            sqlx::query!(
                "update wallet set pin_failed_attempts = 0, pin_locked_until = null where wallet_id = $1",
                wallet.wallet_id,
            )
            .execute(&mut *tx)
            .await?;
        }
        return Ok(PinCheck::Ok);
    }
    let attempts = wallet.pin_failed_attempts + 1;
    if attempts >= PIN_ATTEMPTS_MAX {
        let until = Utc::now() + PIN_LOCK;
        sqlx::query!(
            "update wallet set pin_failed_attempts = 0, pin_locked_until = $2 where wallet_id = $1",
            wallet.wallet_id,
            until,
        )
        .execute(&mut *tx)
        .await?;
        return Ok(PinCheck::Locked { until });
    }
    sqlx::query!(
        "update wallet set pin_failed_attempts = $2 where wallet_id = $1",
        wallet.wallet_id,
        attempts,
    )
    .execute(&mut *tx)
    .await?;
    Ok(PinCheck::Invalid {
        attempts_left: PIN_ATTEMPTS_MAX - attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_four_to_six_digits() {
        assert_eq!(validate_pin("123"), Err(PinError::Format));
        assert_eq!(validate_pin("1234567"), Err(PinError::Format));
        assert_eq!(validate_pin("12a4"), Err(PinError::Format));
        assert_eq!(validate_pin("８３７２"), Err(PinError::Format));
        assert_eq!(validate_pin("8372"), Ok(()));
        assert_eq!(validate_pin("837261"), Ok(()));
    }

    #[test]
    fn weak_and_sequential_pins_are_refused() {
        for weak in ["0000", "1111", "999999", "2580", "1212"] {
            assert_eq!(validate_pin(weak), Err(PinError::Weak), "{weak}");
        }
        for run in ["1234", "4321", "0123", "3456", "987654", "56789"] {
            assert_eq!(validate_pin(run), Err(PinError::Sequential), "{run}");
        }
        assert_eq!(validate_pin("1235"), Ok(()));
    }
}
