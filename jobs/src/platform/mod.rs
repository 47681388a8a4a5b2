//! The platform every process stands on: typed configuration, the database pool and its migrations, the local
//! PostgreSQL for development and tests, and logging.

pub mod config;
pub mod db;
pub mod devdb;
pub mod telemetry;
