//! What the HTTP adapters share: the client, how a failed call is classified, and amounts in major units as the
//! providers' APIs write them.

use super::capability::ProviderError;
use crate::money::Currency;
use crate::platform::config::ProvidersConfig;

pub(crate) fn http_client(config: &ProvidersConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout.min(std::time::Duration::from_secs(5)))
        .user_agent("PayCore/0.1")
        .build()
        .unwrap_or_default()
}

/// Classifies a transport error or an HTTP status into "no definite answer" or a decline.
pub fn classify_status(status: reqwest::StatusCode, message: String) -> ProviderError {
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        ProviderError::Unavailable(format!("{status}: {message}"))
    } else if status == reqwest::StatusCode::NOT_FOUND {
        ProviderError::NotFound
    } else if status == reqwest::StatusCode::UNAUTHORIZED
        || status == reqwest::StatusCode::FORBIDDEN
    {
        // Our keys are wrong: retrying will not help, but neither is it the customer's fault. Treat as
        // unavailable so the operation waits (and alerts through the dead-job list) rather than failing.
        ProviderError::Unavailable(format!("{status}: {message}"))
    } else {
        ProviderError::Declined(message)
    }
}

pub(crate) fn transport_error(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Unavailable("timed out".into())
    } else {
        ProviderError::Unavailable(error.without_url().to_string())
    }
}

/// Minor units to a decimal string of major units ("1050" kobo → "10.50").
pub fn minor_to_major_string(minor: i64, currency: Currency) -> String {
    let exponent = currency.exponent();
    if exponent == 0 {
        return minor.to_string();
    }
    let scale = 10_i64.pow(exponent);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let scale_u = scale.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale_u,
        abs % scale_u,
        width = exponent as usize
    )
}

/// A decimal amount of major units (as a JSON number or string) to minor units, refusing more precision than the
/// currency has.
pub fn major_to_minor(value: &serde_json::Value, currency: Currency) -> Option<i64> {
    let text = match value {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    let exponent = currency.exponent() as usize;
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f.trim_end_matches('0')),
        None => (text.as_str(), ""),
    };
    if whole.is_empty() || !whole.chars().all(|c| c.is_ascii_digit()) || fraction.len() > exponent {
        return None;
    }
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction_padded = format!("{fraction:0<exponent$}");
    let fraction: i64 = if exponent == 0 {
        0
    } else {
        fraction_padded.parse().ok()?
    };
    whole
        .checked_mul(10_i64.checked_pow(exponent as u32)?)?
        .checked_add(fraction)
}

/// Percent-encodes a path segment (references are our UUIDs, but a provider's may contain anything).
pub(crate) fn urlencode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_convert_between_minor_and_major_units_exactly() {
        assert_eq!(minor_to_major_string(1050, Currency::Ngn), "10.50");
        assert_eq!(minor_to_major_string(5, Currency::Ngn), "0.05");
        assert_eq!(
            major_to_minor(&serde_json::json!(10.5), Currency::Ngn),
            Some(1050)
        );
        assert_eq!(
            major_to_minor(&serde_json::json!("10.50"), Currency::Ngn),
            Some(1050)
        );
        assert_eq!(
            major_to_minor(&serde_json::json!(500), Currency::Ngn),
            Some(50000)
        );
        assert_eq!(
            major_to_minor(&serde_json::json!("1.234"), Currency::Ngn),
            None
        );
        assert_eq!(major_to_minor(&serde_json::json!(-1), Currency::Ngn), None);
        assert_eq!(
            major_to_minor(&serde_json::json!("abc"), Currency::Ngn),
            None
        );
    }
}
