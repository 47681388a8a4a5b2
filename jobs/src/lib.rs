//! PayCore's core library: configuration, storage, the job engine, operations the money domain, the provider
//! adapters and the flows through them. Nothing here knows about HTTP; the `api`, `worker` and `scheduler` binaries wire it.

pub mod account;
pub mod admin_audit;
pub mod audit;
pub mod auth;
pub mod bill_catalogue;
pub mod bills;
pub mod config;
pub mod db;
pub mod deposit;
pub mod devdb;
pub mod engine;
pub mod history;
pub mod idempotency;
pub mod ledger;
pub mod money;
pub mod notify;
pub mod nuban;
pub mod operation;
pub mod otp;
pub mod payout;
pub mod providers;
pub mod reconciliation;
pub mod runtime;
pub mod spend;
pub mod telemetry;
pub mod transfer;
pub mod wallet;
pub mod webhook;
