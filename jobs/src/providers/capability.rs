//! The capabilities PayCore needs from payment providers, as traits, and the values they exchange. The adapters
//! implement them; the domains call them through `Providers`.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::money::Currency;

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
    /// The hosted payment page of a charge started by `initialize`, when the gateway tells it.
    pub authorization_url: Option<String>,
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
