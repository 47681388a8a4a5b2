//! `/api/v1/auth/*` and `/api/v1/users/me`: registration, sign-in, token refresh, sign-out, password change.

use paycore_jobs::domains::identity::account::{self, AccountError, LoginOutcome};
use paycore_jobs::domains::identity::auth::{
    self, AuthError, Email, Role, TokenPair, PASSWORD_CHARS_MAX, PASSWORD_CHARS_MIN,
};
use paycore_jobs::domains::identity::otp::Check;
use paycore_jobs::domains::wallet::{self, NewUser, RegisterError};
use poem::Request;
use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};

use super::{wallets::WalletBody, ApiTag, NoContent};
use crate::payload::Body;
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
    #[oai(nullable)]
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
pub struct TwoStepVerifyRequest {
    pub challenge_id: String,
    /// The 6-digit code from the e-mail.
    pub code: String,
}

#[derive(Debug, Object)]
pub struct TwoStepChallengeBody {
    pub two_step_required: bool,
    /// Send it back with the e-mailed code to `POST /auth/login/verify`.
    pub challenge_id: String,
}

#[derive(ApiResponse)]
pub enum LoginResponse {
    /// Signed in.
    #[oai(status = 200)]
    Tokens(Json<TokensBody>),
    /// The password was right and a code was e-mailed: finish at `POST /auth/login/verify`.
    #[oai(status = 202)]
    TwoStep(Json<TwoStepChallengeBody>),
}

#[derive(Debug, Object)]
pub struct CodeRequest {
    /// The 6-digit code from the e-mail.
    pub code: String,
}

#[derive(Debug, Object)]
pub struct ForgotPasswordRequest {
    pub email: String,
}

#[derive(Debug, Object)]
pub struct ResetPasswordRequest {
    pub email: String,
    pub code: String,
    pub new_password: String,
}

#[derive(Debug, Object)]
pub struct TwoStepSettingRequest {
    pub enabled: bool,
    /// The current password, to confirm.
    pub password: String,
}

#[derive(ApiResponse)]
pub enum Accepted {
    /// Accepted: if the address belongs to an account, a code was e-mailed to it.
    #[oai(status = 202)]
    Accepted,
}

fn code_shape_ok(code: &str) -> bool {
    let code = code.trim();
    code.len() == 6 && code.chars().all(|c| c.is_ascii_digit())
}

fn invalid_code_format() -> ApiError {
    ApiError::invalid("invalid_code_format", "A code is 6 digits.", Some("code"))
}

fn invalid_current_password() -> ApiError {
    ApiError::rejected(
        "invalid_current_password",
        "The current password is wrong.",
        Some("current_password"),
    )
}

fn account_error(error: AccountError) -> ApiError {
    match error {
        AccountError::Auth(error) => auth_error(error),
        AccountError::Database(error) => error.into(),
        AccountError::Code(check) => match check {
            Check::Invalid { attempts_left } => ApiError::rejected(
                "invalid_code",
                format!("The code is wrong; {attempts_left} tries left."),
                Some("code"),
            ),
            Check::Expired => ApiError::rejected(
                "code_expired",
                "The code has expired; ask for a new one.",
                Some("code"),
            ),
            Check::Used => ApiError::rejected(
                "code_used",
                "The code was already used; ask for a new one.",
                Some("code"),
            ),
            Check::Locked => {
                ApiError::rate_limited("code_locked", "Too many wrong codes; ask for a new one.")
            }
            Check::NotFound | Check::Valid => {
                ApiError::rejected("invalid_code", "The code is wrong.", Some("code"))
            }
        },
        AccountError::TooSoon {
            retry_after_seconds,
        } => ApiError::rate_limited_for(
            "code_recently_sent",
            format!("A code was sent recently; ask again in {retry_after_seconds} seconds."),
            u64::try_from(retry_after_seconds).unwrap_or(1),
        ),
        AccountError::AlreadyVerified => ApiError::conflict(
            "email_already_verified",
            "The e-mail address is already verified.",
        ),
        AccountError::EmailNotVerified => ApiError::conflict(
            "email_not_verified",
            "Verify your e-mail address before turning on two-step sign-in.",
        ),
        AccountError::WrongPassword => ApiError::rejected(
            "invalid_current_password",
            "The password is wrong.",
            Some("password"),
        ),
    }
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
    #[oai(nullable)]
    pub phone: Option<String>,
    pub full_name: String,
    pub role: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Whether the e-mail address was confirmed with the code sent to it.
    pub email_verified: bool,
    /// Whether sign-in asks for an e-mailed code after the password.
    pub two_step_login: bool,
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
            email_verified: user.email_verified_at.is_some(),
            two_step_login: user.two_step_login,
        }
    }
}

/// The answer to every accepted registration, whether or not the address already had an account.
#[derive(Debug, Object)]
pub struct RegistrationAcceptedBody {
    /// Always `accepted`.
    pub status: String,
    pub message: String,
}

#[derive(Debug, Object)]
pub struct MeBody {
    pub user: UserBody,
    pub wallets: Vec<WalletBody>,
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// Accepted: the same answer whether the account was created or the e-mail address or phone number already
    /// had one (its owner is told by e-mail). Sign in with the e-mail address and password to continue.
    #[oai(status = 202)]
    Accepted(Json<RegistrationAcceptedBody>),
}

/// What every accepted registration is told (docs/security.md §10).
const REGISTRATION_ACCEPTED: &str =
    "Check your e-mail: we sent a verification code to the address, or a note if \
     it already has an account. Then sign in with your e-mail address and password.";

fn client_ip(request: &Request) -> Option<String> {
    crate::client::request_ip(request)
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
        AuthError::Throttled {
            retry_after_seconds,
        } => ApiError::rate_limited_for(
            "too_many_attempts",
            format!("Too many attempts; try again in {retry_after_seconds} seconds."),
            retry_after_seconds,
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
    /// Register: creates the user and an NGN wallet credited with the welcome bonus, and e-mails a verification
    /// code; then sign in. A taken e-mail address or phone number gets the same answer, and its owner an e-mail.
    #[oai(path = "/auth/register", method = "post")]
    async fn register(
        &self,
        request: &Request,
        body: Body<RegisterRequest>,
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
        // Created or taken, the answer is the same (docs/security.md §10).
        wallet::register(&state.pool, &state.config, new_user, client_ip(request).as_deref())
            .await
            .map_err(|error| match error {
                RegisterError::Throttled {
                    retry_after_seconds,
                } => ApiError::rate_limited_for(
                    "too_many_registrations",
                    format!(
                        "Too many registrations from this address; try again in {retry_after_seconds} seconds."
                    ),
                    retry_after_seconds,
                ),
                other => ApiError::internal(other),
            })?;
        Ok(RegisterResponse::Accepted(Json(RegistrationAcceptedBody {
            status: "accepted".into(),
            message: REGISTRATION_ACCEPTED.into(),
        })))
    }

    /// Sign in with email and password. Accounts with two-step sign-in get `202` and an e-mailed code instead
    /// of tokens. A sign-in from a new device is reported to the account's owner.
    #[oai(path = "/auth/login", method = "post")]
    async fn login(&self, request: &Request, body: Body<LoginRequest>) -> ApiResult<LoginResponse> {
        if body.password.chars().count() > PASSWORD_CHARS_MAX {
            return Err(auth_error(AuthError::InvalidCredentials));
        }
        let outcome = account::login(
            &self.state.pool,
            &self.state.config,
            &self.state.keys,
            &body.email,
            &body.password,
            client_ip(request).as_deref(),
            user_agent(request).as_deref(),
        )
        .await
        .map_err(account_error)?;
        Ok(match outcome {
            LoginOutcome::Tokens(pair) => LoginResponse::Tokens(Json(pair.into())),
            LoginOutcome::TwoStep { challenge_id } => {
                LoginResponse::TwoStep(Json(TwoStepChallengeBody {
                    two_step_required: true,
                    challenge_id: challenge_id.to_string(),
                }))
            }
        })
    }

    /// The second step of a two-step sign-in: the challenge and the e-mailed code.
    #[oai(path = "/auth/login/verify", method = "post")]
    async fn login_verify(
        &self,
        request: &Request,
        body: Body<TwoStepVerifyRequest>,
    ) -> ApiResult<Json<TokensBody>> {
        let challenge_id = super::parse_id(&body.challenge_id, "challenge_id")?;
        if !code_shape_ok(&body.code) {
            return Err(invalid_code_format());
        }
        let pair = account::finish_two_step(
            &self.state.pool,
            &self.state.config,
            &self.state.keys,
            challenge_id,
            &body.code,
            client_ip(request).as_deref(),
            user_agent(request).as_deref(),
        )
        .await
        .map_err(account_error)?;
        Ok(Json(pair.into()))
    }

    /// Confirm the e-mail address with the code e-mailed at registration.
    #[oai(path = "/auth/email/verify", method = "post")]
    async fn verify_email(
        &self,
        caller: BearerAuth,
        body: Body<CodeRequest>,
    ) -> ApiResult<NoContent> {
        if !code_shape_ok(&body.code) {
            return Err(invalid_code_format());
        }
        account::verify_email(
            &self.state.pool,
            &self.state.config,
            caller.0.user_id,
            &body.code,
        )
        .await
        .map_err(account_error)?;
        Ok(NoContent::Done)
    }

    /// Send a new e-mail verification code (at most one a minute, five an hour).
    #[oai(path = "/auth/email/resend", method = "post")]
    async fn resend_verification(&self, caller: BearerAuth) -> ApiResult<Accepted> {
        account::resend_verification(&self.state.pool, &self.state.config, caller.0.user_id)
            .await
            .map_err(account_error)?;
        Ok(Accepted::Accepted)
    }

    /// Start a password reset: a code is e-mailed if the address belongs to an account (the answer is the same
    /// either way).
    #[oai(path = "/auth/password/forgot", method = "post")]
    async fn forgot_password(&self, body: Body<ForgotPasswordRequest>) -> ApiResult<Accepted> {
        if body.email.len() > 254 {
            return Err(ApiError::invalid(
                "invalid_email",
                "The email address is not valid.",
                Some("email"),
            ));
        }
        account::forgot_password(&self.state.pool, &self.state.config, &body.email)
            .await
            .map_err(account_error)?;
        Ok(Accepted::Accepted)
    }

    /// Finish a password reset with the e-mailed code; every session is signed out.
    #[oai(path = "/auth/password/reset", method = "post")]
    async fn reset_password(&self, body: Body<ResetPasswordRequest>) -> ApiResult<NoContent> {
        check_password(&body.new_password, "new_password")?;
        if !code_shape_ok(&body.code) {
            return Err(invalid_code_format());
        }
        account::reset_password(
            &self.state.pool,
            &self.state.config,
            &body.email,
            &body.code,
            &body.new_password,
        )
        .await
        .map_err(account_error)?;
        Ok(NoContent::Done)
    }

    /// Turn two-step sign-in (password, then an e-mailed code) on or off.
    #[oai(path = "/auth/two-step", method = "put")]
    async fn set_two_step(
        &self,
        caller: BearerAuth,
        body: Body<TwoStepSettingRequest>,
    ) -> ApiResult<NoContent> {
        if body.password.chars().count() > PASSWORD_CHARS_MAX {
            return Err(account_error(AccountError::WrongPassword));
        }
        account::set_two_step(
            &self.state.pool,
            caller.0.user_id,
            &body.password,
            body.enabled,
        )
        .await
        .map_err(account_error)?;
        Ok(NoContent::Done)
    }

    /// Exchange a refresh token for a new pair. Each refresh token works once; reusing one revokes its session.
    #[oai(path = "/auth/refresh", method = "post")]
    async fn refresh(&self, body: Body<RefreshRequest>) -> ApiResult<Json<TokensBody>> {
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
        body: Body<ChangePasswordRequest>,
    ) -> ApiResult<NoContent> {
        check_password(&body.new_password, "new_password")?;
        if body.current_password.chars().count() > PASSWORD_CHARS_MAX {
            return Err(invalid_current_password());
        }
        account::change_password(
            &self.state.pool,
            caller.0.user_id,
            caller.0.session_id,
            &body.current_password,
            &body.new_password,
        )
        .await
        .map_err(|error| match error {
            AccountError::WrongPassword => invalid_current_password(),
            other => account_error(other),
        })?;
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
