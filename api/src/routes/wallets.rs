//! `/api/v1/wallets`: list, create, read, freeze and unfreeze, spending limits and the transaction PIN.
//!
//! A wallet that is not the caller's answers exactly like one that does not exist (404), so ids of other users'
//! wallets reveal nothing. Admins may freeze and unfreeze any wallet.

use paycore_jobs::domains::identity::auth;
use paycore_jobs::domains::wallet::{self, WalletError, WalletRow};
use paycore_jobs::money::{Currency, AMOUNT_MINOR_MAX};
use poem_openapi::{param::Path, payload::Json, ApiResponse, Object, OpenApi};
use sqlx::PgPool;
use uuid::Uuid;

use super::{parse_id, ApiTag, NoContent};
use crate::payload::Body;
use crate::{
    error::{ApiError, ApiResult},
    security::BearerAuth,
    AppState,
};

pub struct WalletsApi {
    pub state: AppState,
}

#[derive(Debug, Clone, Object)]
pub struct BalancesBody {
    /// Spendable now, in minor units.
    pub available: i64,
    /// Held for operations in flight.
    pub pending: i64,
    /// Settled balance.
    pub posted: i64,
    /// On its way in, waiting for this wallet's owner to accept it.
    pub incoming: i64,
}

#[derive(Debug, Clone, Object)]
pub struct WalletBody {
    pub wallet_id: String,
    pub currency: String,
    /// A 10-digit NUBAN.
    pub account_number: String,
    /// `active` or `frozen`.
    pub status: String,
    pub balances: BalancesBody,
    /// Inclusive daily spending limit in minor units (amount plus fees), if set.
    #[oai(nullable)]
    pub daily_limit: Option<i64>,
    #[oai(nullable)]
    pub monthly_limit: Option<i64>,
    pub has_pin: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl WalletBody {
    pub async fn load(pool: &PgPool, row: &WalletRow) -> Result<Self, ApiError> {
        let view = wallet::view(pool, row).await?;
        Ok(Self {
            wallet_id: view.wallet_id.to_string(),
            currency: view.currency,
            account_number: view.account_number,
            status: view.status,
            balances: BalancesBody {
                available: view.balances.available,
                pending: view.balances.pending,
                posted: view.balances.posted,
                incoming: view.balances.incoming,
            },
            daily_limit: view.daily_limit,
            monthly_limit: view.monthly_limit,
            has_pin: view.has_pin,
            created_at: view.created_at,
        })
    }
}

#[derive(Debug, Object)]
pub struct CreateWalletRequest {
    /// NGN, USD, EUR, GBP, KES or GHS.
    pub currency: String,
}

#[derive(Debug, Object)]
pub struct LimitsRequest {
    /// Minor units; null removes the limit.
    #[oai(nullable)]
    pub daily_limit: Option<i64>,
    #[oai(nullable)]
    pub monthly_limit: Option<i64>,
    /// The wallet's PIN: required to raise or remove a limit when the wallet has one.
    #[oai(nullable)]
    pub pin: Option<String>,
    /// The account's password: required to raise or remove a limit when the wallet has no PIN.
    #[oai(nullable)]
    pub password: Option<String>,
}

#[derive(Debug, Object)]
pub struct PinRequest {
    /// 4 to 6 digits, not trivially guessable.
    pub pin: String,
    /// Required when the wallet already has a PIN.
    #[oai(nullable)]
    pub current_pin: Option<String>,
}

#[derive(ApiResponse)]
pub enum CreatedWallet {
    #[oai(status = 201)]
    Created(Json<WalletBody>),
}

fn not_found() -> ApiError {
    ApiError::not_found("wallet_not_found", "No such wallet.")
}

/// Longer than any PIN: refused before hashing.
const PIN_CHARS_MAX: usize = 12;

fn wrong_password() -> ApiError {
    ApiError::rejected(
        "invalid_password",
        "The password is wrong.",
        Some("password"),
    )
}

/// The answer for a PIN check that did not pass, about request field `param`.
fn pin_rejection(check: &wallet::PinCheck, param: &str) -> Option<ApiError> {
    match check {
        wallet::PinCheck::Ok => None,
        wallet::PinCheck::Required => Some(ApiError::rejected(
            "pin_required",
            "The current PIN is required.",
            Some(param),
        )),
        wallet::PinCheck::Locked { .. } => Some(ApiError::rejected(
            "pin_locked",
            "The PIN is locked after too many wrong entries; try again later.",
            Some(param),
        )),
        wallet::PinCheck::Invalid { .. } => Some(ApiError::rejected(
            "invalid_pin",
            "The PIN is wrong.",
            Some(param),
        )),
    }
}

fn check_limit(value: Option<i64>, param: &str) -> Result<(), ApiError> {
    match value {
        Some(limit) if !(1..=AMOUNT_MINOR_MAX).contains(&limit) => Err(ApiError::invalid(
            "invalid_limit",
            "A limit must be a positive amount of minor units.",
            Some(param),
        )),
        _ => Ok(()),
    }
}

impl WalletsApi {
    /// The wallet if the caller owns it (or, with `admin`, any wallet).
    async fn find(
        &self,
        caller: &BearerAuth,
        wallet_id: &str,
        admin: bool,
    ) -> Result<WalletRow, ApiError> {
        let id = parse_id(wallet_id, "wallet_id").map_err(|_| not_found())?;
        let row = if admin && caller.0.role == auth::Role::Admin {
            wallet::by_id(&self.state.pool, id).await?
        } else {
            wallet::owned(&self.state.pool, caller.0.user_id, id).await?
        };
        row.ok_or_else(not_found)
    }

    /// Freezes (`frozen`) or unfreezes the wallet; an admin's freeze is lifted only by an admin.
    async fn set_status(
        &self,
        caller: BearerAuth,
        wallet_id: &str,
        freeze: bool,
    ) -> ApiResult<Json<WalletBody>> {
        let row = self.find(&caller, wallet_id, true).await?;
        let by = if caller.0.role == auth::Role::Admin {
            wallet::FreezeActor::Admin
        } else {
            wallet::FreezeActor::Owner
        };
        let row = if freeze {
            wallet::freeze(&self.state.pool, row.wallet_id, by).await?
        } else {
            wallet::unfreeze(&self.state.pool, row.wallet_id, by)
                .await?
                .map_err(|rejection| match rejection {
                    wallet::FreezeRejection::FrozenByAdmin => ApiError::forbidden(
                        "wallet_frozen_by_admin",
                        "An administrator froze this wallet; only an administrator can unfreeze it.",
                    ),
                })?
        };
        Ok(Json(WalletBody::load(&self.state.pool, &row).await?))
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTag::Wallets")]
impl WalletsApi {
    /// The caller's wallets.
    #[oai(path = "/wallets", method = "get")]
    async fn list(&self, caller: BearerAuth) -> ApiResult<Json<Vec<WalletBody>>> {
        let mut out = Vec::new();
        for row in wallet::list_owned(&self.state.pool, caller.0.user_id).await? {
            out.push(WalletBody::load(&self.state.pool, &row).await?);
        }
        Ok(Json(out))
    }

    /// Open a wallet in another currency (one per currency).
    #[oai(path = "/wallets", method = "post")]
    async fn create(
        &self,
        caller: BearerAuth,
        body: Body<CreateWalletRequest>,
    ) -> ApiResult<CreatedWallet> {
        let currency: Currency = super::parse_currency(&body.currency)?;
        let mut tx = self.state.pool.begin().await?;
        let row = wallet::create_tx(
            &mut tx,
            caller.0.user_id,
            currency,
            &self.state.config.money.bank_code,
        )
        .await
        .map_err(|error| match error {
            WalletError::AlreadyExists => ApiError::conflict(
                "wallet_exists",
                "You already have a wallet in this currency.",
            ),
            other => ApiError::internal(other),
        })?;
        tx.commit().await?;
        Ok(CreatedWallet::Created(Json(
            WalletBody::load(&self.state.pool, &row).await?,
        )))
    }

    /// One wallet with its balances.
    #[oai(path = "/wallets/:wallet_id", method = "get")]
    async fn get(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        wallet_id: Path<String>,
    ) -> ApiResult<Json<WalletBody>> {
        let row = self.find(&caller, &wallet_id, false).await?;
        Ok(Json(WalletBody::load(&self.state.pool, &row).await?))
    }

    /// Freeze a wallet: it can neither send nor receive until unfrozen. Owners and admins.
    #[oai(path = "/wallets/:wallet_id/freeze", method = "post")]
    async fn freeze(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        wallet_id: Path<String>,
    ) -> ApiResult<Json<WalletBody>> {
        self.set_status(caller, &wallet_id, true).await
    }

    /// Unfreeze a wallet. Owners lift their own freeze; a freeze by an admin (or compliance) only an admin can
    /// lift (403 `wallet_frozen_by_admin`).
    #[oai(path = "/wallets/:wallet_id/unfreeze", method = "post")]
    async fn unfreeze(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        wallet_id: Path<String>,
    ) -> ApiResult<Json<WalletBody>> {
        self.set_status(caller, &wallet_id, false).await
    }

    /// Set or remove the daily and monthly spending limits (inclusive; amount plus fees count).
    #[oai(path = "/wallets/:wallet_id/limits", method = "put")]
    async fn limits(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        wallet_id: Path<String>,
        body: Body<LimitsRequest>,
    ) -> ApiResult<Json<WalletBody>> {
        check_limit(body.daily_limit, "daily_limit")?;
        check_limit(body.monthly_limit, "monthly_limit")?;
        let id = self.find(&caller, &wallet_id, false).await?.wallet_id;
        let mut tx = self.state.pool.begin().await?;
        let row = wallet::lock_tx(&mut tx, id).await?.ok_or_else(not_found)?;
        let loosens = wallet::limits::loosens(row.daily_limit, body.daily_limit)
            || wallet::limits::loosens(row.monthly_limit, body.monthly_limit);
        if loosens {
            if row.pin_hash.is_some() {
                if body
                    .pin
                    .as_ref()
                    .is_some_and(|pin| pin.len() > PIN_CHARS_MAX)
                {
                    return Err(ApiError::invalid(
                        "invalid_pin_format",
                        "The PIN is 4 to 6 digits.",
                        Some("pin"),
                    ));
                }
                let check = wallet::check_pin_tx(&mut tx, &row, body.pin.as_deref()).await?;
                if let Some(rejection) = pin_rejection(&check, "pin") {
                    // The failed attempt is counted even though nothing else changes.
                    tx.commit().await?;
                    return Err(rejection);
                }
            } else {
                let Some(password) = body.password.as_deref() else {
                    return Err(ApiError::rejected(
                        "password_required",
                        "Raising or removing a limit needs your password (or the wallet's PIN, once set).",
                        Some("password"),
                    ));
                };
                if password.chars().count() > auth::PASSWORD_CHARS_MAX {
                    return Err(wrong_password());
                }
                // The wallet stays locked meanwhile, so two changes cannot interleave.
                match auth::check_current_password(&self.state.pool, caller.0.user_id, password)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return Err(wrong_password()),
                    Err(auth::AuthError::Throttled {
                        retry_after_seconds,
                    }) => {
                        return Err(ApiError::rate_limited_for(
                            "too_many_attempts",
                            format!(
                                "Too many attempts; try again in {retry_after_seconds} seconds."
                            ),
                            retry_after_seconds,
                        ))
                    }
                    Err(other) => return Err(ApiError::internal(other)),
                }
            }
        }
        let row: WalletRow = sqlx::query_as!(
            WalletRow,
            "update wallet set daily_limit = $2, monthly_limit = $3, updated_at = now() where wallet_id = $1
             returning wallet_id, user_id, currency, account_id, account_number, status, daily_limit, monthly_limit,
                       pin_hash, pin_failed_attempts, pin_locked_until, created_at",
            row.wallet_id,
            body.daily_limit,
            body.monthly_limit,
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Json(WalletBody::load(&self.state.pool, &row).await?))
    }

    /// Set the transaction PIN, or change it (then `current_pin` is required and counts toward the lockout).
    #[oai(path = "/wallets/:wallet_id/pin", method = "put")]
    async fn pin(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        wallet_id: Path<String>,
        body: Body<PinRequest>,
    ) -> ApiResult<NoContent> {
        let id = self.find(&caller, &wallet_id, false).await?.wallet_id;
        wallet::validate_pin(&body.pin)
            .map_err(|e| ApiError::invalid("invalid_pin_format", e.to_string(), Some("pin")))?;
        let mut tx = self.state.pool.begin().await?;
        let row = wallet::lock_tx(&mut tx, id).await?.ok_or_else(not_found)?;
        if row.pin_hash.is_some() {
            let check = wallet::check_pin_tx(&mut tx, &row, body.current_pin.as_deref()).await?;
            if let Some(rejection) = pin_rejection(&check, "current_pin") {
                // The failed attempt is counted even though nothing else changes.
                tx.commit().await?;
                return Err(rejection);
            }
            // The current PIN was just proved; the new one must differ, or a "change" changes nothing.
            if body.current_pin.as_deref() == Some(body.pin.as_str()) {
                return Err(ApiError::rejected(
                    "pin_unchanged",
                    "The new PIN must differ from the current one.",
                    Some("pin"),
                ));
            }
        }
        let pin = body.pin.clone();
        let hash = auth::with_hashing_permit(move || auth::hash_secret(&pin))
            .await
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("hashing task failed")))?
            .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
        sqlx::query!(
            "update wallet set pin_hash = $2, pin_failed_attempts = 0, pin_locked_until = null, updated_at = now()
             where wallet_id = $1",
            id,
            hash,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(NoContent::Done)
    }
}

/// Parses a wallet id given by a client.
pub fn wallet_id(raw: &str, param: &str) -> Result<Uuid, ApiError> {
    parse_id(raw, param)
}
