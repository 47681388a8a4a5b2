//! The API's endpoints, one struct per domain area, combined into one OpenAPI service.

use poem_openapi::{ApiResponse, Tags};
use uuid::Uuid;

use crate::error::ApiError;

pub mod admin;
pub mod admin_jobs;
pub mod admin_payments;
pub mod auth;
pub mod bills;
pub mod deposits;
pub mod notifications;
pub mod payouts;
pub mod transactions;
pub mod transfers;
pub mod wallets;
pub mod webhooks;

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
    /// Money in through the payment gateway.
    Deposits,
    /// Money out to bank accounts.
    Payouts,
    /// Airtime, data, electricity and cable TV.
    Bills,
    /// The in-app inbox, notification preferences, push devices and the real-time event stream.
    Notifications,
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

/// Parses an amount in minor units.
pub fn amount_of(minor: i64) -> Result<paycore_jobs::money::Amount, ApiError> {
    use paycore_jobs::money::{Amount, AmountError};
    Amount::new(minor).map_err(|error| match error {
        AmountError::NotPositive => ApiError::invalid(
            "invalid_amount",
            "The amount must be a positive number of minor units.",
            Some("amount"),
        ),
        AmountError::TooLarge => ApiError::invalid(
            "amount_too_large",
            "The amount is larger than the maximum.",
            Some("amount"),
        ),
    })
}

/// A list's `limit`: 1 to 100, 20 when absent.
pub fn list_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(20),
        Some(limit) if (1..=100).contains(&limit) => Ok(limit),
        Some(_) => Err(ApiError::invalid(
            "invalid_limit",
            "limit must be between 1 and 100.",
            Some("limit"),
        )),
    }
}

/// A provider's answer to a request the API made synchronously (bank lists, account names, customer checks).
pub fn provider_error(
    error: paycore_jobs::providers::ProviderError,
    declined_code: &str,
) -> ApiError {
    use paycore_jobs::providers::ProviderError;
    match error {
        ProviderError::Declined(message) => ApiError::rejected(declined_code, message, None),
        ProviderError::NotFound => {
            ApiError::rejected(declined_code, "The provider found no such record.", None)
        }
        ProviderError::Unavailable(_) | ProviderError::Protocol(_) => {
            tracing::warn!(%error, "provider unavailable");
            ApiError::unavailable(
                "provider_unavailable",
                "The payment provider is unavailable; try again shortly.",
            )
        }
    }
}

/// A refused debit (payouts, bill payments).
pub fn spend_error(rejection: &paycore_jobs::domains::wallet::spend::SpendRejection) -> ApiError {
    use paycore_jobs::domains::wallet::spend::SpendRejection;
    match rejection {
        SpendRejection::WalletNotFound => {
            ApiError::not_found("wallet_not_found", "No such wallet.")
        }
        other => ApiError::rejected(other.code(), other.to_string(), Some(other.param())),
    }
}
