//! PayCore's core library: configuration, storage, the job engine, operations and (in later modules) the money
//! domain and provider adapters. Nothing here knows about HTTP; the `api`, `worker` and `scheduler` binaries wire it.

pub mod admin_audit;
pub mod audit;
pub mod bill_catalogue;
pub mod auth;
pub mod config;
pub mod db;
pub mod devdb;
pub mod engine;
pub mod history;
pub mod idempotency;
pub mod ledger;
pub mod money;
pub mod nuban;
pub mod operation;
pub mod providers;
pub mod runtime;
pub mod telemetry;
pub mod transfer;
pub mod wallet;
