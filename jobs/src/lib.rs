//! PayCore's core library: everything but HTTP. The `api`, `worker`, `scheduler` and `dev` binaries wire it.
//!
//! It is built in floors, and imports point down only (`docs/architecture.md` §2; the `module_graph` test in the
//! `tests` crate fails on a circle or an upward import):
//!
//! * the ground floor — [`money`], [`platform`] (configuration, database, telemetry), [`engine`] (the job engine,
//!   which knows nothing of money), [`operation`] (durable intents and idempotency keys), [`admin_audit`],
//!   [`ledger`], [`providers`] and [`notify`];
//! * the domains, one folder each under [`domains`], which use the ground floor and each other's public
//!   functions;
//! * [`app`], the top floor, which gathers every domain's job kinds and schedules.

pub mod admin_audit;
pub mod app;
pub mod domains;
pub mod engine;
pub mod ledger;
pub mod money;
pub mod notify;
pub mod operation;
pub mod platform;
pub mod providers;
