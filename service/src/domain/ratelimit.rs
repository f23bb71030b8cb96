//! Rate-limit specifications (`10/minute`) and the fixed-window arithmetic shared by the
//! Redis and the in-process limiters.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// `COUNT/UNIT`: at most `count` requests per window of one `unit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSpec {
    /// Requests allowed per window.
    pub count: u32,
    /// Window length.
    pub window: Duration,
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("{s:?} is not COUNT/UNIT, e.g. 10/minute (units: second, minute, hour, day)")
        };
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("{s:?}: the count must be at least 1"));
        }
        let secs = match unit.trim().to_ascii_lowercase().trim_end_matches('s') {
            "second" | "sec" => 1,
            "minute" | "min" => 60,
            "hour" => 3600,
            "day" => 86_400,
            _ => return Err(bad()),
        };
        Ok(Self {
            count,
            window: Duration::from_secs(secs),
        })
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.window.as_secs() {
            1 => "second",
            60 => "minute",
            3600 => "hour",
            86_400 => "day",
            other => return write!(f, "{}/{}s", self.count, other),
        };
        write!(f, "{}/{}", self.count, unit)
    }
}

/// The limiter's answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Time until the window resets (`Retry-After` when refused).
    pub reset_after: Duration,
    /// This is the window's first refused request (the fraud record keeps one row per
    /// client and window, not one per request of a burst).
    pub first_refusal: bool,
}

impl RateDecision {
    /// Decision for the `hits`-th request of a window with `ttl` left.
    pub fn from_hits(spec: RateSpec, hits: u64, ttl: Duration) -> Self {
        let limit = u64::from(spec.count);
        Self {
            allowed: hits <= limit,
            reset_after: if ttl.is_zero() { spec.window } else { ttl },
            first_refusal: hits == limit + 1,
        }
    }

    /// `Retry-After` in whole seconds, never 0 (a client must wait at least a second).
    pub fn retry_after_secs(&self) -> u64 {
        self.reset_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_original_formats() {
        let s: RateSpec = "10/minute".parse().unwrap();
        assert_eq!((s.count, s.window.as_secs()), (10, 60));
        let s: RateSpec = "5/hour".parse().unwrap();
        assert_eq!((s.count, s.window.as_secs()), (5, 3600));
        let s: RateSpec = " 100 / Hours ".parse().unwrap();
        assert_eq!((s.count, s.window.as_secs()), (100, 3600));
        assert_eq!("3/day".parse::<RateSpec>().unwrap().to_string(), "3/day");
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "10",
            "ten/minute",
            "0/minute",
            "10/fortnight",
            "-1/hour",
        ] {
            assert!(bad.parse::<RateSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn decisions_count_down_and_refuse_past_the_limit() {
        let spec: RateSpec = "2/minute".parse().unwrap();
        let ttl = Duration::from_millis(59_200);
        let d1 = RateDecision::from_hits(spec, 1, ttl);
        assert!(d1.allowed);
        let d3 = RateDecision::from_hits(spec, 3, ttl);
        assert!(!d3.allowed);
        assert!(d3.first_refusal && !d1.first_refusal);
        assert_eq!(d3.retry_after_secs(), 60);
        let d = RateDecision::from_hits(spec, 3, Duration::from_millis(10));
        assert_eq!(d.retry_after_secs(), 1);
    }
}
