//! Pure decisions, free of I/O and of the clock (time is a parameter): rate-limit
//! specifications, face matching, lockout policy and tokens.

pub mod lockout;
pub mod matching;
pub mod ratelimit;
pub mod tokens;
