//! PayCore's integration tests, linked into one binary: each test binary links the whole product, so one binary
//! instead of nine keeps a cold build's linking time and disk use down. cargo-nextest still runs every test in its
//! own process.

mod api_basics;
mod contract;
mod dashboard;
mod engine;
mod hardening;
mod ledger;
mod module_graph;
mod money;

mod money_rules;
mod notifications;
mod otp_secrets;
mod processes;
mod providers;
mod rate_limits;
mod reauth;
mod reliability;
mod security;
