//! The platform every process stands on: typed configuration, the database pool and its migrations, the local
//! PostgreSQL for development and tests, and logging.

pub mod config;
pub mod telemetry;

// The database and the local PostgreSQL live in their own crate (see its opening comment); they are part of the
// platform all the same.
pub use paycore_db as db;
pub use paycore_db::devdb;
