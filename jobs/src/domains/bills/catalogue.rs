//! What PayCore sells as bill payments: billers with their Flutterwave biller and item codes, amount ranges, fees
//! and packages (from the seed system's catalogue; docs/architecture.md §7). Fees are PayCore's, on top of the amount.

use serde::Serialize;

use crate::money::FeeRule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Airtime,
    Data,
    Electricity,
    CableTv,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Airtime,
        Category::Data,
        Category::Electricity,
        Category::CableTv,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Airtime => "airtime",
            Category::Data => "data",
            Category::Electricity => "electricity",
            Category::CableTv => "cable_tv",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Package {
    /// The provider's item code.
    pub code: &'static str,
    pub name: &'static str,
    pub amount_minor: i64,
    pub validity: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Biller {
    /// The provider's biller code.
    pub code: &'static str,
    pub name: &'static str,
    pub category: Category,
    /// The provider's item code for any-amount purchases (airtime, electricity); packages have their own.
    pub item_code: Option<&'static str>,
    /// Any-amount range in minor units (inclusive).
    pub min_minor: i64,
    pub max_minor: i64,
    #[serde(skip)]
    pub fee: FeeRule,
    /// Prepaid or postpaid, for electricity.
    pub meter_type: Option<&'static str>,
    /// The customer must be validated with the biller (meters, smart cards).
    pub requires_validation: bool,
    pub packages: &'static [Package],
}

const NAIRA: i64 = 100;

const fn flat(naira: i64) -> FeeRule {
    FeeRule {
        percent_bps: 0,
        fixed_minor: naira * NAIRA,
        cap_minor: None,
    }
}

const fn percent_capped(bps: u32, cap_naira: i64) -> FeeRule {
    FeeRule {
        percent_bps: bps,
        fixed_minor: 0,
        cap_minor: Some(cap_naira * NAIRA),
    }
}

const fn package(
    code: &'static str,
    name: &'static str,
    naira: i64,
    validity: &'static str,
) -> Package {
    Package {
        code,
        name,
        amount_minor: naira * NAIRA,
        validity,
    }
}

const fn airtime(code: &'static str, name: &'static str, item: &'static str) -> Biller {
    Biller {
        code,
        name,
        category: Category::Airtime,
        item_code: Some(item),
        min_minor: 50 * NAIRA,
        max_minor: 50_000 * NAIRA,
        fee: flat(20),
        meter_type: None,
        requires_validation: false,
        packages: &[],
    }
}

const fn data(code: &'static str, name: &'static str, packages: &'static [Package]) -> Biller {
    Biller {
        code,
        name,
        category: Category::Data,
        item_code: None,
        min_minor: 0,
        max_minor: 0,
        fee: flat(20),
        meter_type: None,
        requires_validation: false,
        packages,
    }
}

const fn electricity(
    code: &'static str,
    name: &'static str,
    item: &'static str,
    meter_type: &'static str,
) -> Biller {
    Biller {
        code,
        name,
        category: Category::Electricity,
        item_code: Some(item),
        min_minor: 500 * NAIRA,
        max_minor: 500_000 * NAIRA,
        fee: percent_capped(100, 100),
        meter_type: Some(meter_type),
        requires_validation: true,
        packages: &[],
    }
}

const fn cable(
    code: &'static str,
    name: &'static str,
    fee: FeeRule,
    packages: &'static [Package],
) -> Biller {
    Biller {
        code,
        name,
        category: Category::CableTv,
        item_code: None,
        min_minor: 0,
        max_minor: 0,
        fee,
        meter_type: None,
        requires_validation: true,
        packages,
    }
}

pub static BILLERS: &[Biller] = &[
    airtime("BIL099", "MTN Airtime", "AT099"),
    airtime("BIL102", "Airtel Airtime", "AT102"),
    airtime("BIL103", "Glo Airtime", "AT103"),
    airtime("BIL104", "9mobile Airtime", "AT104"),
    data(
        "BIL122",
        "MTN Data",
        &[
            package("MD122-1GB-D", "MTN 1GB Daily", 300, "1 day"),
            package("MD122-2GB-W", "MTN 2GB Weekly", 1_000, "7 days"),
            package("MD122-10GB-M", "MTN 10GB Monthly", 3_500, "30 days"),
            package("MD122-40GB-M", "MTN 40GB Monthly", 10_000, "30 days"),
        ],
    ),
    data(
        "BIL108",
        "Airtel Data",
        &[
            package("MD108-1GB-D", "Airtel 1GB Daily", 300, "1 day"),
            package("MD108-6GB-W", "Airtel 6GB Weekly", 1_500, "7 days"),
            package("MD108-15GB-M", "Airtel 15GB Monthly", 4_000, "30 days"),
        ],
    ),
    data(
        "BIL109",
        "Glo Data",
        &[
            package("MD109-1GB-D", "Glo 1GB Daily", 250, "1 day"),
            package("MD109-7GB-W", "Glo 7GB Weekly", 1_500, "7 days"),
            package("MD109-18GB-M", "Glo 18GB Monthly", 4_000, "30 days"),
        ],
    ),
    data(
        "BIL111",
        "9mobile Data",
        &[
            package("MD111-1GB-D", "9mobile 1GB Daily", 300, "1 day"),
            package("MD111-4GB-M", "9mobile 4.5GB Monthly", 2_000, "30 days"),
            package("MD111-11GB-M", "9mobile 11GB Monthly", 4_000, "30 days"),
        ],
    ),
    electricity("BIL119", "EKEDC Prepaid", "UB119", "prepaid"),
    electricity("BIL120", "EKEDC Postpaid", "UB120", "postpaid"),
    electricity("BIL121", "IKEDC Prepaid", "UB121", "prepaid"),
    electricity("BIL124", "IKEDC Postpaid", "UB124", "postpaid"),
    electricity("BIL123", "AEDC Prepaid", "UB123", "prepaid"),
    electricity("BIL125", "AEDC Postpaid", "UB125", "postpaid"),
    cable(
        "BIL114",
        "DStv",
        percent_capped(100, 100),
        &[
            package("CB114-PADI", "DStv Padi", 2_500, "1 month"),
            package("CB114-YANGA", "DStv Yanga", 3_500, "1 month"),
            package("CB114-CONFAM", "DStv Confam", 5_300, "1 month"),
            package("CB114-COMPACT", "DStv Compact", 10_500, "1 month"),
            package("CB114-COMPACT-PLUS", "DStv Compact Plus", 16_600, "1 month"),
            package("CB114-PREMIUM", "DStv Premium", 24_500, "1 month"),
        ],
    ),
    cable(
        "BIL115",
        "GOtv",
        percent_capped(100, 50),
        &[
            package("CB115-SMALLIE", "GOtv Smallie", 1_100, "1 month"),
            package("CB115-JINJA", "GOtv Jinja", 2_250, "1 month"),
            package("CB115-JOLLI", "GOtv Jolli", 3_300, "1 month"),
            package("CB115-MAX", "GOtv Max", 4_850, "1 month"),
        ],
    ),
    cable(
        "BIL116",
        "StarTimes",
        flat(50),
        &[
            package("CB116-NOVA", "StarTimes Nova", 1_200, "1 month"),
            package("CB116-BASIC", "StarTimes Basic", 2_100, "1 month"),
            package("CB116-SMART", "StarTimes Smart", 2_800, "1 month"),
            package("CB116-CLASSIC", "StarTimes Classic", 3_100, "1 month"),
            package("CB116-SUPER", "StarTimes Super", 5_300, "1 month"),
        ],
    ),
];

pub fn biller(code: &str) -> Option<&'static Biller> {
    BILLERS.iter().find(|b| b.code == code)
}

impl Biller {
    pub fn package(&self, code: &str) -> Option<&'static Package> {
        self.packages.iter().find(|p| p.code == code)
    }

    /// Whether `customer_id` has the shape this biller's customers have (before asking the biller).
    pub fn customer_id_shape_ok(&self, customer_id: &str) -> bool {
        let digits = customer_id.len();
        customer_id.chars().all(|c| c.is_ascii_digit())
            && match self.category {
                // A Nigerian mobile number: 11 digits starting with 0.
                Category::Airtime | Category::Data => digits == 11 && customer_id.starts_with('0'),
                Category::Electricity => (11..=13).contains(&digits),
                Category::CableTv => (10..=12).contains(&digits),
            }
    }

    pub fn customer_id_description(&self) -> &'static str {
        match self.category {
            Category::Airtime | Category::Data => "an 11-digit phone number starting with 0",
            Category::Electricity => "an 11 to 13-digit meter number",
            Category::CableTv => "a 10 to 12-digit smart card number",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Amount;

    #[test]
    fn catalogue_fees_match_the_seed_examples() {
        let mtn = biller("BIL099").expect("MTN airtime");
        assert_eq!(mtn.fee.fee(Amount::new(100_000).expect("amount")), 2_000);
        let ekedc = biller("BIL119").expect("EKEDC");
        assert_eq!(ekedc.fee.fee(Amount::new(500_000).expect("amount")), 5_000);
        assert_eq!(
            ekedc.fee.fee(Amount::new(2_000_000).expect("amount")),
            10_000
        );
        let codes: std::collections::BTreeSet<&str> = BILLERS.iter().map(|b| b.code).collect();
        assert_eq!(codes.len(), BILLERS.len());
        for category in Category::ALL {
            assert!(BILLERS.iter().any(|b| b.category == category));
        }
    }
}
