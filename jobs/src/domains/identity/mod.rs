//! Identity and sign-in: users, passwords, roles and tokens (`auth`); the account flows that carry one-time codes
//! — sign-in with two-step verification, e-mail verification, password reset (`account`); the codes themselves
//! (`otp`); the throttles on guessable secrets and on registration (`throttle`).

pub mod account;
pub mod auth;
pub mod otp;
pub mod throttle;
