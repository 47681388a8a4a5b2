//! Payment providers behind capability traits (docs/architecture.md §7).
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

use crate::platform::config::ProvidersConfig;

pub mod capability;
pub mod flutterwave;
pub mod http;
pub mod inbox;
pub mod paystack;
pub mod signature;

// The capabilities are the providers' public face: callers name them `providers::PaymentGateway`.
pub use capability::*;
use http::http_client;

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
