//! Money: integer minor units beside an ISO-4217 currency, checked arithmetic, and the fee schedule.
//!
//! Amounts never pass through floats. Fees are a percentage in basis points plus a fixed part, capped, rounded to
//! the minor unit half-to-even (banker's rounding) so that rounding does not drift in the platform's favour.

pub mod nuban;

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Currency {
    #[serde(rename = "NGN")]
    Ngn,
    #[serde(rename = "USD")]
    Usd,
    #[serde(rename = "EUR")]
    Eur,
    #[serde(rename = "GBP")]
    Gbp,
    #[serde(rename = "KES")]
    Kes,
    #[serde(rename = "GHS")]
    Ghs,
}

impl Currency {
    pub const ALL: [Currency; 6] = [
        Currency::Ngn,
        Currency::Usd,
        Currency::Eur,
        Currency::Gbp,
        Currency::Kes,
        Currency::Ghs,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            Currency::Ngn => "NGN",
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Gbp => "GBP",
            Currency::Kes => "KES",
            Currency::Ghs => "GHS",
        }
    }

    /// Digits after the decimal point: every supported currency has 2 (kobo, cents, pence, …).
    pub const fn exponent(self) -> u32 {
        2
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported currency {0:?}; supported: NGN, USD, EUR, GBP, KES, GHS")]
pub struct UnknownCurrency(pub String);

impl FromStr for Currency {
    type Err = UnknownCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code() == s)
            .ok_or_else(|| UnknownCurrency(s.to_owned()))
    }
}

/// The largest amount one operation may move: 10^13 minor units (₦100 billion). Far above any real payment and
/// far below where sums of many amounts could overflow an i64.
pub const AMOUNT_MINOR_MAX: i64 = 10_000_000_000_000;

/// A strictly positive amount of minor units, at most `AMOUNT_MINOR_MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Amount(i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount is larger than the maximum of {AMOUNT_MINOR_MAX} minor units")]
    TooLarge,
}

impl Amount {
    pub fn new(minor: i64) -> Result<Self, AmountError> {
        if minor <= 0 {
            Err(AmountError::NotPositive)
        } else if minor > AMOUNT_MINOR_MAX {
            Err(AmountError::TooLarge)
        } else {
            Ok(Self(minor))
        }
    }

    pub fn minor(self) -> i64 {
        self.0
    }
}

/// Integer division rounding half to even.
fn div_round_half_even(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    let remainder = numerator % denominator;
    let twice = remainder * 2;
    if twice > denominator || (twice == denominator && quotient % 2 != 0) {
        quotient + 1
    } else {
        quotient
    }
}

/// How an operation kind is charged: `percent_bps` basis points of the amount plus `fixed_minor`, at most
/// `cap_minor` when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRule {
    pub percent_bps: u32,
    pub fixed_minor: i64,
    pub cap_minor: Option<i64>,
}

impl FeeRule {
    pub const FREE: FeeRule = FeeRule {
        percent_bps: 0,
        fixed_minor: 0,
        cap_minor: None,
    };

    /// The fee on `amount`, in minor units; never negative, never more than the cap.
    pub fn fee(&self, amount: Amount) -> i64 {
        let percent = div_round_half_even(
            i128::from(amount.minor()) * i128::from(self.percent_bps),
            10_000,
        );
        let total = percent.saturating_add(i128::from(self.fixed_minor.max(0)));
        let capped = match self.cap_minor {
            Some(cap) => total.min(i128::from(cap.max(0))),
            None => total,
        };
        i64::try_from(capped).unwrap_or(i64::MAX)
    }
}

/// The fees PayCore charges, per operation kind (configurable; defaults from the seed systems).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSchedule {
    /// A transfer to a wallet of another user (PayCore: 1 %, no cap).
    pub transfer_external: FeeRule,
    /// A transfer between two wallets of the same user.
    pub transfer_own: FeeRule,
    /// A deposit through the gateway or by bank transfer (1.5 %, capped at ₦2,000: the gateway's own pricing, which
    /// the seed's provider helper computed; the seed's uncapped 1.5 % on account deposits is not repeated).
    pub deposit: FeeRule,
    /// A payout above `payout_small_max_minor` (₦50 + 1 %, capped at ₦100).
    pub payout: FeeRule,
    /// A payout of at most `payout_small_max_minor` (₦50 flat).
    pub payout_small: FeeRule,
    pub payout_small_max_minor: i64,
}

impl FeeSchedule {
    pub fn payout_fee(&self, amount: Amount) -> i64 {
        if amount.minor() <= self.payout_small_max_minor {
            self.payout_small.fee(amount)
        } else {
            self.payout.fee(amount)
        }
    }
}

impl Default for FeeSchedule {
    fn default() -> Self {
        Self {
            transfer_external: FeeRule {
                percent_bps: 100,
                fixed_minor: 0,
                cap_minor: None,
            },
            transfer_own: FeeRule::FREE,
            deposit: FeeRule {
                percent_bps: 150,
                fixed_minor: 0,
                cap_minor: Some(200_000),
            },
            payout: FeeRule {
                percent_bps: 100,
                fixed_minor: 5_000,
                cap_minor: Some(10_000),
            },
            payout_small: FeeRule {
                percent_bps: 0,
                fixed_minor: 5_000,
                cap_minor: None,
            },
            payout_small_max_minor: 500_000,
        }
    }
}

impl FromStr for FeeRule {
    type Err = String;
    /// `bps:100,fixed:0,cap:200000` (any part may be left out).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut rule = FeeRule::FREE;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once(':')
                .ok_or_else(|| format!("expected name:value, got {part:?}"))?;
            let number: i64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{value:?} is not a whole number"))?;
            if number < 0 {
                return Err(format!("{name} cannot be negative"));
            }
            match name.trim() {
                "bps" if number <= 10_000 => rule.percent_bps = number as u32,
                "bps" => return Err("bps must be at most 10000 (100 %)".into()),
                "fixed" => rule.fixed_minor = number,
                "cap" => rule.cap_minor = Some(number),
                other => return Err(format!("unknown fee part {other:?}; use bps, fixed, cap")),
            }
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_must_be_positive_and_bounded() {
        assert_eq!(Amount::new(0), Err(AmountError::NotPositive));
        assert_eq!(Amount::new(-5), Err(AmountError::NotPositive));
        assert_eq!(
            Amount::new(AMOUNT_MINOR_MAX + 1),
            Err(AmountError::TooLarge)
        );
        assert_eq!(Amount::new(1).map(Amount::minor), Ok(1));
    }

    #[test]
    fn one_percent_of_a_thousand_naira_is_ten_naira() {
        let fee = FeeSchedule::default()
            .transfer_external
            .fee(Amount::new(100_000).unwrap());
        assert_eq!(fee, 1_000);
    }

    #[test]
    fn fees_round_half_to_even() {
        let rule = FeeRule {
            percent_bps: 100,
            fixed_minor: 0,
            cap_minor: None,
        };
        // 1 % of 50 = 0.5 → 0 (even); of 150 = 1.5 → 2; of 250 = 2.5 → 2; of 251 = 2.51 → 3.
        let fee = |minor| rule.fee(Amount::new(minor).unwrap());
        assert_eq!(
            (fee(50), fee(150), fee(250), fee(251), fee(249)),
            (0, 2, 2, 3, 2)
        );
    }

    #[test]
    fn fees_are_capped_and_include_the_fixed_part() {
        let rule: FeeRule = "bps:150,fixed:1000,cap:200000".parse().unwrap();
        assert_eq!(rule.fee(Amount::new(100_000).unwrap()), 1_500 + 1_000);
        assert_eq!(rule.fee(Amount::new(AMOUNT_MINOR_MAX).unwrap()), 200_000);
        assert!("bps:-1".parse::<FeeRule>().is_err());
        assert!("bps:20000".parse::<FeeRule>().is_err());
        assert!("percent:5".parse::<FeeRule>().is_err());
    }

    #[test]
    fn a_fee_never_exceeds_the_amount_it_is_charged_on_under_the_default_schedule() {
        let schedule = FeeSchedule::default();
        for minor in [1, 2, 49, 50, 51, 99, 100, 12_345, AMOUNT_MINOR_MAX] {
            let amount = Amount::new(minor).unwrap();
            let fee = schedule.transfer_external.fee(amount);
            assert!((0..=minor).contains(&fee), "{minor} → {fee}");
        }
    }

    #[test]
    fn currencies_parse_by_code_only() {
        assert_eq!("NGN".parse::<Currency>(), Ok(Currency::Ngn));
        assert!("ngn".parse::<Currency>().is_err());
        assert!("XYZ".parse::<Currency>().is_err());
    }
}
