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

/// Parses a provider's JSON answer without letting any number pass through `f64`. serde_json (without its
/// workspace-wide `arbitrary_precision` feature, which would change how every crate's JSON behaves) reads a
/// number with a fraction or an exponent into an `f64`, which cannot hold `0.1`, and silently rounds
/// `1234567890123456.7`. So such numbers are read as strings holding their exact text (`"10.50"`), which
/// [`major_to_minor`] converts exactly; integers stay numbers, which serde_json keeps exact in `i64`/`u64`.
pub fn parse_exact(text: &str) -> serde_json::Result<serde_json::Value> {
    serde_json::from_str(&quote_non_integers(text))
}

/// Wraps every JSON number literal that has a fraction or an exponent in quotes. JSON numbers occur only outside
/// strings, so it is enough to skip strings (minding escapes) and look at each run of number characters.
fn quote_non_integers(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '"' {
            out.push(c);
            let mut escaped = false;
            for (_, c) in chars.by_ref() {
                out.push(c);
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => break,
                    _ => {}
                }
            }
        } else if c == '-' || c.is_ascii_digit() {
            let mut end = start + c.len_utf8();
            while let Some(&(index, next)) = chars.peek() {
                if next.is_ascii_digit() || matches!(next, '.' | 'e' | 'E' | '+' | '-') {
                    end = index + next.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let literal = &text[start..end];
            if literal.contains(['.', 'e', 'E']) {
                out.push('"');
                out.push_str(literal);
                out.push('"');
            } else {
                out.push_str(literal);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A decimal amount of major units to minor units, exactly: a JSON integer, or the exact text of a decimal (a
/// string, as the provider sent it or as [`parse_exact`] keeps it). Refuses (`None`) negative amounts, exponents,
/// and more decimals than the currency has: `10.505` naira is an error in the provider's answer, never rounded.
/// A JSON number that is not an integer is refused too: it has been through an `f64` already.
pub fn major_to_minor(value: &serde_json::Value, currency: Currency) -> Option<i64> {
    let text = match value {
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
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

/// The amount in major units at `key`: `None` when absent or null, an error when present but not an exact amount
/// of `currency` (a provider's malformed answer is never read as zero or rounded).
pub fn major_amount_at(
    value: &serde_json::Value,
    key: &str,
    currency: Currency,
) -> Result<Option<i64>, ProviderError> {
    match value.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(amount) => major_to_minor(amount, currency).map(Some).ok_or_else(|| {
            ProviderError::Protocol(format!(
                "{key} {amount} is not an exact amount of {}",
                currency.code()
            ))
        }),
    }
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
        // A number that is not an integer has been through an f64: refused, never trusted.
        assert_eq!(
            major_to_minor(&serde_json::json!(10.5), Currency::Ngn),
            None
        );
    }

    fn amount_in(answer: &str) -> Option<i64> {
        let value = parse_exact(answer).expect("valid JSON");
        major_to_minor(&value["amount"], Currency::Ngn)
    }

    #[test]
    fn provider_amounts_are_parsed_from_their_exact_text() {
        assert_eq!(amount_in(r#"{"amount": 10.50}"#), Some(1050));
        assert_eq!(amount_in(r#"{"amount": 0.3}"#), Some(30));
        assert_eq!(amount_in(r#"{"amount": 0.1}"#), Some(10));
        assert_eq!(amount_in(r#"{"amount": 500}"#), Some(50000));
        assert_eq!(
            amount_in(r#"{"amount": 12345678901234.57}"#),
            Some(1_234_567_890_123_457)
        );
        // Through an f64 this becomes 1234567890123456.75, printed back as 1234567890123456.8: 80 kobo, not 70.
        assert_eq!(
            amount_in(r#"{"amount": 1234567890123456.7}"#),
            Some(123_456_789_012_345_670)
        );
    }

    #[test]
    fn amounts_with_more_precision_than_the_currency_or_in_exponent_form_are_refused() {
        for answer in [
            r#"{"amount": 0.30000000000000004}"#,
            r#"{"amount": 1e-7}"#,
            r#"{"amount": 1E2}"#,
            r#"{"amount": 10.505}"#,
            r#"{"amount": -5.00}"#,
            r#"{"amount": 0.001}"#,
        ] {
            assert_eq!(amount_in(answer), None, "{answer}");
        }
        let bad = parse_exact(r#"{"amount": 10.505}"#).expect("json");
        assert!(matches!(
            major_amount_at(&bad, "amount", Currency::Ngn),
            Err(ProviderError::Protocol(_))
        ));
        let none = parse_exact(r#"{"amount": null}"#).expect("json");
        assert_eq!(
            major_amount_at(&none, "amount", Currency::Ngn).ok(),
            Some(None)
        );
    }

    #[test]
    fn only_numbers_outside_strings_are_rewritten() {
        let value = parse_exact(
            r#"{"a": "x 1.5 \"2.5\" \\", "b": [1, -2.50, 3e2, true, null], "c": {"d": 7}}"#,
        )
        .expect("json");
        assert_eq!(value["a"], "x 1.5 \"2.5\" \\");
        assert_eq!(
            value["b"],
            serde_json::json!([1, "-2.50", "3e2", true, null])
        );
        assert_eq!(value["c"]["d"], 7);
        assert!(parse_exact(r#"{"a": 1.5"#).is_err());
    }

    #[test]
    fn amounts_we_send_round_trip_through_a_json_number() {
        // A request body's amount is a serde_json number (an f64): exact for every valid amount, whose major
        // units have at most 15 significant digits.
        for minor in [
            1,
            10,
            30,
            1050,
            99_999_999_999,
            crate::money::AMOUNT_MINOR_MAX,
        ] {
            let text = minor_to_major_string(minor, Currency::Ngn);
            let number: serde_json::Number = text.parse().expect("a number");
            let sent = serde_json::to_string(&number).expect("json");
            let received = parse_exact(&format!(r#"{{"amount": {sent}}}"#)).expect("json");
            assert_eq!(
                major_to_minor(&received["amount"], Currency::Ngn),
                Some(minor),
                "{text} sent as {sent}"
            );
        }
    }
}
