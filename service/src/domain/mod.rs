//! Pure decisions, free of I/O and of the clock (time is a parameter): rate-limit
//! specifications, face matching, lockout policy, tokens and template protection.

pub mod lockout;
pub mod login_policy;
pub mod matching;
pub mod oidc;
pub mod ratelimit;
pub mod templates;
pub mod tokens;
