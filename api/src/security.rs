//! Bearer authentication: a valid access token whose session is still live.

use paycore_jobs::domains::identity::auth::{self, Principal};
use poem::Request;
use poem_openapi::{auth::Bearer, SecurityScheme};

use crate::{error::ApiError, AppState};

/// `Authorization: Bearer <access token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "authenticate")]
pub struct BearerAuth(pub Principal);

async fn authenticate(request: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = request.data::<AppState>().ok_or_else(|| {
        poem::Error::from(ApiError::internal(anyhow::anyhow!(
            "application state missing"
        )))
    })?;
    match auth::principal(&state.pool, &state.keys, &bearer.token).await {
        Ok(Some(principal)) => Ok(principal),
        Ok(None) => Err(ApiError::unauthenticated(
            "invalid_token",
            "The access token is invalid, expired or revoked.",
        )
        .into()),
        Err(error) => Err(ApiError::internal(error).into()),
    }
}

impl BearerAuth {
    /// Admin routes: any admin role may read.
    pub fn require_admin_read(&self) -> Result<&Principal, ApiError> {
        if self.0.role.is_admin() {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(
                "admin_required",
                "This requires an admin account.",
            ))
        }
    }

    /// Admin routes that change something: the read-only admin role may not.
    pub fn require_admin_write(&self) -> Result<&Principal, ApiError> {
        if self.0.role == auth::Role::Admin {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(
                "admin_required",
                "This requires an admin account that may make changes.",
            ))
        }
    }

    /// Compliance decisions (KYC reviews, sanctions matches, held operations): compliance officers and admins.
    pub fn require_compliance(&self) -> Result<&Principal, ApiError> {
        if self.0.role.decides_compliance() {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(
                "compliance_required",
                "This requires a compliance officer or an admin account that may make changes.",
            ))
        }
    }
}
