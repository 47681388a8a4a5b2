//! `/api/v1/auth/*` and `/api/v1/users/me`: registration, sign-in, token refresh, sign-out, password change.

use paycore_jobs::{
    auth::{self, AuthError, Email, Role, TokenPair, PASSWORD_CHARS_MAX, PASSWORD_CHARS_MIN},
    wallet::{self, NewUser, RegisterError},
};
use poem::Request;
use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};

use super::{wallets::WalletBody, ApiTag, NoContent};
use crate::{
    error::{ApiError, ApiResult},
    security::BearerAuth,
    AppState,
};

pub struct AuthApi {
    pub state: AppState,
}

#[derive(Debug, Object)]
pub struct RegisterRequest {
    pub email: String,
    pub phone: Option<String>,
    pub password: String,
    pub full_name: String,
}

#[derive(Debug, Object)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Object)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Object)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Object, serde::Serialize)]
pub struct TokensBody {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<TokenPair> for TokensBody {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: pair.token_type.to_owned(),
            expires_in: pair.expires_in,
        }
    }
}

#[derive(Debug, Object)]
pub struct UserBody {
    pub user_id: String,
    pub email: String,
    pub phone: Option<String>,
    pub full_name: String,
    pub role: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<wallet::UserView> for UserBody {
    fn from(user: wallet::UserView) -> Self {
        Self {
            user_id: user.user_id.to_string(),
            email: user.email,
            phone: user.phone,
            full_name: user.full_name,
            role: user.role,
            created_at: user.created_at,
        }
    }
}

#[derive(Debug, Object)]
pub struct RegisteredBody {
    pub user: UserBody,
    pub wallet: WalletBody,
    pub tokens: TokensBody,
}

#[derive(Debug, Object)]
pub struct MeBody {
    pub user: UserBody,
    pub wallets: Vec<WalletBody>,
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// Registered: the user, their NGN wallet (with the welcome bonus) and a first session.
    #[oai(status = 201)]
    Created(Json<RegisteredBody>),
}

fn client_ip(request: &Request) -> Option<String> {
    request
        .remote_addr()
        .as_socket_addr()
        .map(|addr| addr.ip().to_string())
}

fn user_agent(request: &Request) -> Option<String> {
    request
        .headers()
        .get("user-agent")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Phone numbers in E.164 shape: `+`, then 8 to 15 digits.
fn parse_phone(raw: &str) -> Option<String> {
    let phone = raw.trim();
    let digits = phone.strip_prefix('+')?;
    ((8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| phone.to_owned())
}

fn check_password(password: &str, param: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&chars) {
        return Err(ApiError::invalid(
            "invalid_password",
            format!(
                "The password must be {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters."
            ),
            Some(param),
        ));
    }
    Ok(())
}

fn auth_error(error: AuthError) -> ApiError {
    match error {
        AuthError::InvalidCredentials => {
            ApiError::unauthenticated("invalid_credentials", "The email or password is wrong.")
        }
        AuthError::Throttled => ApiError::rate_limited(
            "too_many_attempts",
            "Too many failed sign-in attempts; try again in 15 minutes.",
        ),
        AuthError::InvalidRefreshToken => ApiError::unauthenticated(
            "invalid_refresh_token",
            "The refresh token is invalid or expired.",
        ),
        AuthError::RefreshTokenReused => ApiError::unauthenticated(
            "refresh_token_reused",
            "This refresh token was already used; its session has been revoked. Sign in again.",
        ),
        other => ApiError::internal(other),
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTag::Auth")]
impl AuthApi {
    /// Register: creates the user, an NGN wallet credited with the welcome bonus, and a session.
    #[oai(path = "/auth/register", method = "post")]
    async fn register(
        &self,
        request: &Request,
        body: Json<RegisterRequest>,
    ) -> ApiResult<RegisterResponse> {
        let body = body.0;
        let email = Email::parse(&body.email).ok_or_else(|| {
            ApiError::invalid(
                "invalid_email",
                "The email address is not valid.",
                Some("email"),
            )
        })?;
        let phone = match body.phone.as_deref().filter(|p| !p.trim().is_empty()) {
            None => None,
            Some(raw) => Some(parse_phone(raw).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_phone",
                    "The phone number must look like +2348012345678.",
                    Some("phone"),
                )
            })?),
        };
        check_password(&body.password, "password")?;
        let full_name = body.full_name.trim().to_owned();
        if full_name.is_empty() || full_name.chars().count() > 100 {
            return Err(ApiError::invalid(
                "invalid_full_name",
                "The full name must be 1 to 100 characters.",
                Some("full_name"),
            ));
        }
        let state = &self.state;
        let new_user = NewUser {
            email,
            phone,
            password: body.password,
            full_name,
            role: Role::User,
        };
        let registered = wallet::register(
            &state.pool,
            &state.config.money,
            &state.keys,
            new_user,
            client_ip(request).as_deref(),
            user_agent(request).as_deref(),
        )
        .await
        .map_err(|error| match error {
            RegisterError::EmailTaken => {
                ApiError::conflict("email_taken", "This email is already registered.")
            }
            RegisterError::PhoneTaken => {
                ApiError::conflict("phone_taken", "This phone number is already registered.")
            }
            other => ApiError::internal(other),
        })?;
        let wallet = WalletBody::load(&state.pool, &registered.wallet).await?;
        Ok(RegisterResponse::Created(Json(RegisteredBody {
            user: registered.user.into(),
            wallet,
            tokens: registered.tokens.into(),
        })))
    }

    /// Sign in with email and password.
    #[oai(path = "/auth/login", method = "post")]
    async fn login(
        &self,
        request: &Request,
        body: Json<LoginRequest>,
    ) -> ApiResult<Json<TokensBody>> {
        if body.password.chars().count() > PASSWORD_CHARS_MAX {
            return Err(auth_error(AuthError::InvalidCredentials));
        }
        let (_, pair) = auth::login(
            &self.state.pool,
            &self.state.keys,
            &body.email,
            &body.password,
            client_ip(request).as_deref(),
            user_agent(request).as_deref(),
        )
        .await
        .map_err(auth_error)?;
        Ok(Json(pair.into()))
    }

    /// Exchange a refresh token for a new pair. Each refresh token works once; reusing one revokes its session.
    #[oai(path = "/auth/refresh", method = "post")]
    async fn refresh(&self, body: Json<RefreshRequest>) -> ApiResult<Json<TokensBody>> {
        let pair = auth::refresh(&self.state.pool, &self.state.keys, &body.refresh_token)
            .await
            .map_err(auth_error)?;
        Ok(Json(pair.into()))
    }

    /// Sign out this session.
    #[oai(path = "/auth/logout", method = "post")]
    async fn logout(&self, caller: BearerAuth) -> ApiResult<NoContent> {
        let mut tx = self.state.pool.begin().await?;
        auth::revoke_session_tx(&mut tx, caller.0.session_id, "logout").await?;
        tx.commit().await?;
        Ok(NoContent::Done)
    }

    /// Sign out every session of this user.
    #[oai(path = "/auth/logout-all", method = "post")]
    async fn logout_all(&self, caller: BearerAuth) -> ApiResult<NoContent> {
        let mut tx = self.state.pool.begin().await?;
        auth::revoke_user_sessions_tx(&mut tx, caller.0.user_id, None, "logout_all").await?;
        tx.commit().await?;
        Ok(NoContent::Done)
    }

    /// Change the password; every other session is signed out.
    #[oai(path = "/auth/password", method = "post")]
    async fn change_password(
        &self,
        caller: BearerAuth,
        body: Json<ChangePasswordRequest>,
    ) -> ApiResult<NoContent> {
        check_password(&body.new_password, "new_password")?;
        let pool = &self.state.pool;
        let hash: String =
            sqlx::query_scalar("select password_hash from app_user where user_id = $1")
                .bind(caller.0.user_id)
                .fetch_one(pool)
                .await?;
        let current = body.current_password.clone();
        let verified = auth::with_hashing_permit(move || auth::verify_secret(&current, &hash))
            .await
            .unwrap_or(false);
        if !verified {
            return Err(ApiError::rejected(
                "invalid_current_password",
                "The current password is wrong.",
                Some("current_password"),
            ));
        }
        let new_password = body.new_password.clone();
        let new_hash = auth::with_hashing_permit(move || auth::hash_secret(&new_password))
            .await
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("hashing task failed")))?
            .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
        let mut tx = pool.begin().await?;
        sqlx::query(
            "update app_user set password_hash = $2, updated_at = now() where user_id = $1",
        )
        .bind(caller.0.user_id)
        .bind(new_hash)
        .execute(&mut *tx)
        .await?;
        auth::revoke_user_sessions_tx(
            &mut tx,
            caller.0.user_id,
            Some(caller.0.session_id),
            "password_changed",
        )
        .await?;
        tx.commit().await?;
        Ok(NoContent::Done)
    }

    /// The signed-in user and their wallets.
    #[oai(path = "/users/me", method = "get")]
    async fn me(&self, caller: BearerAuth) -> ApiResult<Json<MeBody>> {
        let pool = &self.state.pool;
        let user = wallet::user(pool, caller.0.user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("user_not_found", "No such user."))?;
        let mut wallets = Vec::new();
        for row in wallet::list_owned(pool, caller.0.user_id).await? {
            wallets.push(WalletBody::load(pool, &row).await?);
        }
        Ok(Json(MeBody {
            user: user.into(),
            wallets,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_phone;

    #[test]
    fn phones_must_be_e164() {
        assert_eq!(
            parse_phone(" +2348012345678 ").as_deref(),
            Some("+2348012345678")
        );
        assert!(parse_phone("08012345678").is_none());
        assert!(parse_phone("+234-801").is_none());
        assert!(parse_phone("+1234567890123456").is_none());
    }
}
