//! The API's endpoints, one struct per domain area, combined into one OpenAPI service.

use poem_openapi::{ApiResponse, Tags};
use uuid::Uuid;

use crate::error::ApiError;

pub mod admin;
pub mod admin_jobs;
pub mod auth;
pub mod transactions;
pub mod transfers;
pub mod wallets;

#[derive(Tags)]
pub enum ApiTag {
    /// Registration, sign-in and sessions.
    Auth,
    /// Multi-currency wallets.
    Wallets,
    /// Wallet-to-wallet transfers and operations.
    Transfers,
    /// Ledger entries of the caller's wallets.
    Transactions,
    /// Administration.
    Admin,
}

#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// Parses a currency code sent by a client.
pub fn parse_currency(raw: &str) -> Result<paycore_jobs::money::Currency, ApiError> {
    raw.parse()
        .map_err(|e: paycore_jobs::money::UnknownCurrency| {
            ApiError::invalid("unsupported_currency", e.to_string(), Some("currency"))
        })
}

/// Parses an id sent by a client; a malformed one is a 400 naming the parameter.
pub fn parse_id(raw: &str, param: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        ApiError::invalid(
            "invalid_id",
            format!("{param} is not a valid id."),
            Some(param),
        )
    })
}
