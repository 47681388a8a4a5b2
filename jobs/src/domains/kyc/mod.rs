//! Know your customer: every user's tier (0 = registered … 3 = proof of address), which gates how much money they
//! may move ([`tier`]). Verification of submissions, review by compliance and tier expiry build on it.

pub mod tier;

pub use tier::Tier;
