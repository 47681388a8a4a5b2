//! PayCore's domains, one folder each. A domain uses the ground floor (`money`, `platform`, `engine`,
//! `operation`, `ledger`, `providers`, `notify`) and other domains' public functions, never their internals, and
//! adds its job kinds and schedules through its own `register`.

pub mod bills;
pub mod deposit;
pub mod identity;
pub mod kyc;
pub mod payout;
pub mod reconciliation;
pub mod transfer;
pub mod wallet;
pub mod webhook;
