//! Payment providers behind capability traits (ARCHITECTURE §6).
//!
//! Each capability is a trait: [`PaymentGateway`] (deposits through a hosted page, verification),
//! [`PayoutProvider`] (banks, account-name resolution, transfers and their status) and [`BillsProvider`]
//! (catalogue, customer validation, vending and its status). The real adapters speak HTTP with `reqwest`:
//! [`paystack::Paystack`] (the gateway and payouts) and [`flutterwave::Flutterwave`] (bills). Their base URLs and
//! keys come from the configuration; in development and in the tests they point at the sandbox providers, which
//! speak the same APIs.
//!
//! Every call that moves money carries our operation id as the provider-side reference, so a retried call is
//! recognised by the provider instead of charging twice.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::money::Currency;
use crate::platform::config::ProvidersConfig;

pub mod flutterwave;
pub mod inbox;
pub mod paystack;
pub mod signature;

/// How a provider call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// No definite answer: the network failed, the call timed out, or the provider answered 5xx or 429. The call
    /// may or may not have taken effect; retry with the same reference, or ask for the status.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// A definite refusal (the provider answered 4xx with a reason).
    #[error("the provider declined: {0}")]
    Declined(String),
    /// The provider does not know this reference.
    #[error("the provider does not know this reference")]
    NotFound,
    /// The provider's answer could not be understood.
    #[error("unexpected answer from the provider: {0}")]
    Protocol(String),
}

impl ProviderError {
    /// Whether retrying (with the same reference) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::Unavailable(_) | ProviderError::Protocol(_)
        )
    }
}

pub type ProviderResult<T> = Result<T, ProviderError>;

/// A provider's name as stored on deposits, payouts, bill payments and reconciliation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ProviderName {
    Paystack,
    Flutterwave,
}

impl ProviderName {
    pub const ALL: [ProviderName; 2] = [ProviderName::Paystack, ProviderName::Flutterwave];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::Paystack => "paystack",
            ProviderName::Flutterwave => "flutterwave",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Payment gateway (deposits)

#[derive(Debug, Clone)]
pub struct DepositInit {
    pub reference: String,
    pub email: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub callback_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DepositSession {
    pub authorization_url: String,
    pub access_code: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeStatus {
    /// Paid.
    Success,
    /// Declined by the bank or the card network.
    Failed,
    /// The customer left the payment page.
    Abandoned,
    /// Not finished yet.
    Pending,
}

/// What the gateway says about a charge when asked.
#[derive(Debug, Clone)]
pub struct Charge {
    pub reference: String,
    pub status: ChargeStatus,
    pub amount_minor: i64,
    pub currency: String,
    pub channel: String,
    /// The receiving account number for bank transfers into a dedicated (virtual) account.
    pub receiver_account_number: Option<String>,
    pub gateway_response: String,
    pub paid_at: Option<DateTime<Utc>>,
}

pub trait PaymentGateway: Send + Sync {
    fn name(&self) -> ProviderName;
    /// Starts a hosted-page payment; the customer completes it at `authorization_url`.
    fn initialize(&self, init: &DepositInit) -> BoxFuture<'_, ProviderResult<DepositSession>>;
    /// Asks the gateway for the charge's current state (the source of truth; webhooks only prompt this).
    fn verify<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, ProviderResult<Charge>>;
    /// Successful charges in a period, for reconciliation.
    fn settled_charges(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, ProviderResult<Vec<SettlementRecord>>>;
}

// ---------------------------------------------------------------------------------------------------------------
// Payouts

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bank {
    pub name: String,
    pub code: String,
}

#[derive(Debug, Clone)]
pub struct PayoutInstruction {
    pub reference: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub bank_code: String,
    pub account_number: String,
    pub account_name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    Pending,
    Success,
    Failed,
    /// Paid, then returned by the receiving bank.
    Reversed,
}

#[derive(Debug, Clone)]
pub struct PayoutState {
    pub reference: String,
    pub status: PayoutStatus,
    pub amount_minor: i64,
    pub transfer_code: Option<String>,
    pub reason: Option<String>,
}

pub trait PayoutProvider: Send + Sync {
    fn name(&self) -> ProviderName;
    fn banks(&self, currency: Currency) -> BoxFuture<'_, ProviderResult<Vec<Bank>>>;
    /// The account holder's name; `Declined` when the account does not exist.
    fn resolve_account<'a>(
        &'a self,
        bank_code: &'a str,
        account_number: &'a str,
    ) -> BoxFuture<'a, ProviderResult<String>>;
    /// Sends money. A reference the provider has seen before is not sent again: its current state is returned.
    fn transfer<'a>(
        &'a self,
        instruction: &'a PayoutInstruction,
    ) -> BoxFuture<'a, ProviderResult<PayoutState>>;
    fn transfer_status<'a>(
        &'a self,
        reference: &'a str,
    ) -> BoxFuture<'a, ProviderResult<PayoutState>>;
    /// Transfers that left in a period (successful or reversed), for reconciliation.
    fn settled_transfers(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, ProviderResult<Vec<SettlementRecord>>>;
}

// ---------------------------------------------------------------------------------------------------------------
// Bills

/// One product the bills provider sells, as its catalogue lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BillItem {
    pub biller_code: String,
    pub item_code: String,
    pub name: String,
    /// Fixed price in minor units, or 0 for any amount.
    pub amount_minor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BillCustomer {
    pub customer_id: String,
    pub name: String,
    pub address: Option<String>,
}

#[derive(Debug, Clone)]
pub struct VendInstruction {
    pub reference: String,
    pub biller_code: String,
    pub item_code: String,
    pub customer_id: String,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VendStatus {
    Pending,
    Success,
    Failed,
}

#[derive(Debug, Clone)]
pub struct VendState {
    pub reference: String,
    pub status: VendStatus,
    pub provider_reference: Option<String>,
    pub amount_minor: i64,
    /// Electricity token, when one was issued.
    pub token: Option<String>,
    pub units: Option<String>,
    pub message: Option<String>,
}

pub trait BillsProvider: Send + Sync {
    fn name(&self) -> ProviderName;
    fn catalogue(&self) -> BoxFuture<'_, ProviderResult<Vec<BillItem>>>;
    /// Checks a customer (meter, smart card, phone number) with the biller; `Declined` when it is not valid.
    fn validate<'a>(
        &'a self,
        biller_code: &'a str,
        item_code: &'a str,
        customer_id: &'a str,
    ) -> BoxFuture<'a, ProviderResult<BillCustomer>>;
    fn vend<'a>(
        &'a self,
        instruction: &'a VendInstruction,
    ) -> BoxFuture<'a, ProviderResult<VendState>>;
    /// The state of an earlier vend; `NotFound` when the provider never received it.
    fn vend_status<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, ProviderResult<VendState>>;
    fn settled_vends(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, ProviderResult<Vec<SettlementRecord>>>;
}

/// One line of a provider's settlement report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SettlementRecord {
    pub reference: String,
    pub amount_minor: i64,
    pub currency: String,
    /// `success` or `reversed`.
    pub status: String,
}

/// The configured adapters, one per capability.
#[derive(Clone)]
pub struct Providers {
    pub gateway: Arc<dyn PaymentGateway>,
    pub payouts: Arc<dyn PayoutProvider>,
    pub bills: Arc<dyn BillsProvider>,
}

impl Providers {
    pub fn from_config(config: &ProvidersConfig) -> Self {
        let http = http_client(config);
        let paystack = Arc::new(paystack::Paystack::new(
            http.clone(),
            &config.paystack_base_url,
            config.paystack_secret_key.expose(),
        ));
        let flutterwave = Arc::new(flutterwave::Flutterwave::new(
            http,
            &config.flutterwave_base_url,
            config.flutterwave_secret_key.expose(),
        ));
        Self {
            gateway: paystack.clone(),
            payouts: paystack,
            bills: flutterwave,
        }
    }
}

fn http_client(config: &ProvidersConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout.min(std::time::Duration::from_secs(5)))
        .user_agent("PayCore/0.1")
        .build()
        .unwrap_or_default()
}

/// Classifies a transport error or an HTTP status into "no definite answer" or a decline.
pub(crate) fn classify_status(status: reqwest::StatusCode, message: String) -> ProviderError {
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        ProviderError::Unavailable(format!("{status}: {message}"))
    } else if status == reqwest::StatusCode::NOT_FOUND {
        ProviderError::NotFound
    } else if status == reqwest::StatusCode::UNAUTHORIZED
        || status == reqwest::StatusCode::FORBIDDEN
    {
        // Our keys are wrong: retrying will not help, but neither is it the customer's fault. Treat as
        // unavailable so the operation waits (and alerts through the dead-job list) rather than failing.
        ProviderError::Unavailable(format!("{status}: {message}"))
    } else {
        ProviderError::Declined(message)
    }
}

pub(crate) fn transport_error(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Unavailable("timed out".into())
    } else {
        ProviderError::Unavailable(error.without_url().to_string())
    }
}

/// Minor units to a decimal string of major units ("1050" kobo → "10.50").
pub fn minor_to_major_string(minor: i64, currency: Currency) -> String {
    let exponent = currency.exponent();
    if exponent == 0 {
        return minor.to_string();
    }
    let scale = 10_i64.pow(exponent);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let scale_u = scale.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale_u,
        abs % scale_u,
        width = exponent as usize
    )
}

/// A decimal amount of major units (as a JSON number or string) to minor units, refusing more precision than the
/// currency has.
pub fn major_to_minor(value: &serde_json::Value, currency: Currency) -> Option<i64> {
    let text = match value {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    let exponent = currency.exponent() as usize;
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f.trim_end_matches('0')),
        None => (text.as_str(), ""),
    };
    if whole.is_empty() || !whole.chars().all(|c| c.is_ascii_digit()) || fraction.len() > exponent {
        return None;
    }
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction_padded = format!("{fraction:0<exponent$}");
    let fraction: i64 = if exponent == 0 {
        0
    } else {
        fraction_padded.parse().ok()?
    };
    whole
        .checked_mul(10_i64.checked_pow(exponent as u32)?)?
        .checked_add(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_convert_between_minor_and_major_units_exactly() {
        assert_eq!(minor_to_major_string(1050, Currency::Ngn), "10.50");
        assert_eq!(minor_to_major_string(5, Currency::Ngn), "0.05");
        assert_eq!(
            major_to_minor(&serde_json::json!(10.5), Currency::Ngn),
            Some(1050)
        );
        assert_eq!(
            major_to_minor(&serde_json::json!("10.50"), Currency::Ngn),
            Some(1050)
        );
        assert_eq!(
            major_to_minor(&serde_json::json!(500), Currency::Ngn),
            Some(50000)
        );
        assert_eq!(
            major_to_minor(&serde_json::json!("1.234"), Currency::Ngn),
            None
        );
        assert_eq!(major_to_minor(&serde_json::json!(-1), Currency::Ngn), None);
        assert_eq!(
            major_to_minor(&serde_json::json!("abc"), Currency::Ngn),
            None
        );
    }
}
