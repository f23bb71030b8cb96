//! Account lockout policy: `max_failures` failed logins within `window` lock the account
//! for `duration`. Failures before the last lock or unlock do not count again.

use chrono::{DateTime, Duration, Utc};

/// The lockout policy of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures that lock the account.
    pub max_failures: u32,
    /// Window the failures are counted in (one hour in the original).
    pub window: Duration,
    /// How long the lock lasts.
    pub duration: Duration,
}

impl LockoutPolicy {
    /// Start of the window in which failures count at `now`, given the last reset
    /// (lock or unlock) of the account.
    pub fn counting_since(
        &self,
        now: DateTime<Utc>,
        last_reset: Option<DateTime<Utc>>,
    ) -> DateTime<Utc> {
        let start = now - self.window;
        match last_reset {
            Some(reset) if reset > start => reset,
            _ => start,
        }
    }

    /// Whether `failures` in the window lock the account.
    pub fn should_lock(&self, failures: u64) -> bool {
        failures >= u64::from(self.max_failures)
    }

    /// When a lock taken at `now` ends.
    pub fn locked_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.duration
    }
}

/// Whether an account flagged locked is still locked at `now` (locks expire by themselves).
pub fn is_locked(is_locked: bool, locked_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    is_locked && locked_until.is_none_or(|until| until > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            max_failures: 10,
            window: Duration::hours(1),
            duration: Duration::minutes(30),
        }
    }

    #[test]
    fn locks_at_the_threshold() {
        assert!(!policy().should_lock(9));
        assert!(policy().should_lock(10));
    }

    #[test]
    fn window_starts_after_the_last_reset() {
        let now = Utc::now();
        assert_eq!(policy().counting_since(now, None), now - Duration::hours(1));
        let reset = now - Duration::minutes(5);
        assert_eq!(policy().counting_since(now, Some(reset)), reset);
        let old = now - Duration::hours(3);
        assert_eq!(
            policy().counting_since(now, Some(old)),
            now - Duration::hours(1)
        );
    }

    #[test]
    fn locks_expire() {
        let now = Utc::now();
        let until = policy().locked_until(now);
        assert!(is_locked(true, Some(until), now));
        assert!(!is_locked(true, Some(until), now + Duration::minutes(31)));
        assert!(
            is_locked(true, None, now),
            "an admin lock without end stays"
        );
        assert!(!is_locked(false, Some(until), now));
    }
}
