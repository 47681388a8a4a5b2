//! Logging: `tracing` with JSON lines by default, so every line carries the request, operation and job fields
//! of the spans it was written in.

use tracing_subscriber::{fmt, EnvFilter};

use crate::platform::config::LogFormat;

/// Installs the global subscriber once; later calls (tests starting several apps) are ignored.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,apalis=warn,apalis_core=warn,apalis_postgres=warn")
    });
    let result = match format {
        LogFormat::Json => fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter)
            .try_init(),
        LogFormat::Pretty => fmt().with_env_filter(filter).try_init(),
    };
    drop(result);
}
