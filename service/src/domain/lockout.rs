//! Brute-force protection of face logins, designed so that it cannot be turned against an
//! account's owner (as Keycloak's brute-force detection, AWS Cognito's device lockout and
//! NIST SP 800-63B §5.2.2's throttling do):
//!
//! * Failures are counted per **(account, client)**, the client being its IPv4 address or
//!   IPv6 /64. After [`LockoutPolicy::free_failures`] failures a client waits before its
//!   next attempt on that account is even looked at: 1 s, then twice as long after each
//!   further failure, up to [`LockoutPolicy::max_delay`]. At
//!   [`LockoutPolicy::max_failures`] (`MAX_FAILED_LOGIN_ATTEMPTS`) within the window
//!   (1 hour) that client is locked out of the account for
//!   [`LockoutPolicy::duration`] (`LOCKOUT_MINUTES`). The owner, from their own device,
//!   is not affected: a stranger can no longer lock an owner out.
//! * Attempts refused by the delay or the lockout do no face work and are not counted,
//!   so they neither renew the lock nor write a row each.
//! * Failures from all clients together are capped too (NIST's "no more than 100"): at
//!   [`LockoutPolicy::account_max_failures`] (`ACCOUNT_LOCK_FAILURES`) within the window
//!   the account itself locks for everyone, which a distributed guesser would otherwise
//!   never meet. A locked account and a locked-out client get the same answer (423 with
//!   `Retry-After`), so a client cannot tell which it is.
//! * An admin unlock restarts every count of the account.

use chrono::{DateTime, Duration, Utc};

/// The brute-force policy of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures from one client against one account that lock that client out of it.
    pub max_failures: u32,
    /// Window the failures are counted in (one hour in the original).
    pub window: Duration,
    /// How long a lock (of a client, or of the account) lasts.
    pub duration: Duration,
    /// Failures from one client answered without delay.
    pub free_failures: u32,
    /// Longest delay between two attempts of one client on one account.
    pub max_delay: Duration,
    /// Failures from every client together that lock the account for everyone.
    pub account_max_failures: u32,
}

/// May a client try to log in to an account now?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientGate {
    /// Yes.
    Open,
    /// Not before `until`: the progressive delay after repeated failures.
    Wait {
        /// When the next attempt is looked at.
        until: DateTime<Utc>,
    },
    /// Locked out of this account until `until`.
    LockedOut {
        /// End of the lockout.
        until: DateTime<Utc>,
    },
}

impl LockoutPolicy {
    /// The policy with the original's knobs and the documented defaults for the rest.
    pub fn new(max_failures: u32, lockout_minutes: u32, account_max_failures: u32) -> Self {
        Self {
            max_failures,
            window: Duration::hours(1),
            duration: Duration::minutes(i64::from(lockout_minutes)),
            // 3 at the default 10; a tenant that allows more failures delays later too.
            free_failures: (max_failures * 3 / 10).max(3),
            max_delay: Duration::seconds(60),
            account_max_failures,
        }
    }

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

    /// Whether a client with `failures` on an account in the window (the last at
    /// `last_failure`) may try again at `now`.
    pub fn client_gate(
        &self,
        failures: u64,
        last_failure: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> ClientGate {
        let Some(last) = last_failure else {
            return ClientGate::Open;
        };
        if failures >= u64::from(self.max_failures) {
            let until = last + self.duration;
            if until > now {
                return ClientGate::LockedOut { until };
            }
            return ClientGate::Open;
        }
        if failures > u64::from(self.free_failures) {
            let until = last + self.delay_after(failures);
            if until > now {
                return ClientGate::Wait { until };
            }
        }
        ClientGate::Open
    }

    /// The wait after `failures` (more than the free ones): 1 s, doubling, capped.
    fn delay_after(&self, failures: u64) -> Duration {
        let doublings = failures.saturating_sub(u64::from(self.free_failures) + 1);
        // 2^30 s is decades: past any cap, and well inside `Duration`'s range.
        let seconds = 1i64 << doublings.min(30);
        Duration::seconds(seconds).min(self.max_delay)
    }

    /// Whether `failures` from every client in the window lock the account.
    pub fn should_lock_account(&self, failures: u64) -> bool {
        failures >= u64::from(self.account_max_failures)
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
        LockoutPolicy::new(10, 30, 100)
    }

    #[test]
    fn a_client_waits_longer_after_each_failure_then_is_locked_out() {
        let p = policy();
        let last = Utc::now();
        let gate = |failures| p.client_gate(failures, Some(last), last);
        for free in 0..=3 {
            assert_eq!(gate(free), ClientGate::Open, "{free}");
        }
        let waits: Vec<Option<i64>> = (4..10)
            .map(|f| match gate(f) {
                ClientGate::Wait { until } => Some((until - last).num_seconds()),
                _ => None,
            })
            .collect();
        let waits: Vec<i64> = waits.into_iter().flatten().collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32]);
        assert_eq!(
            gate(10),
            ClientGate::LockedOut {
                until: last + Duration::minutes(30)
            }
        );
        // The delay is capped.
        let slow = LockoutPolicy {
            max_failures: 100,
            ..policy()
        };
        assert_eq!(
            slow.client_gate(60, Some(last), last),
            ClientGate::Wait {
                until: last + Duration::seconds(60)
            }
        );
    }

    #[test]
    fn the_delay_starts_at_three_tenths_of_the_lockout_budget() {
        assert_eq!(LockoutPolicy::new(10, 30, 100).free_failures, 3);
        assert_eq!(LockoutPolicy::new(3, 30, 100).free_failures, 3);
        assert_eq!(LockoutPolicy::new(1000, 30, 100).free_failures, 300);
    }

    #[test]
    fn waits_and_lockouts_end() {
        let p = policy();
        let last = Utc::now() - Duration::minutes(31);
        assert_eq!(p.client_gate(10, Some(last), Utc::now()), ClientGate::Open);
        let last = Utc::now() - Duration::seconds(5);
        assert_eq!(p.client_gate(5, Some(last), Utc::now()), ClientGate::Open);
        assert_eq!(p.client_gate(0, None, Utc::now()), ClientGate::Open);
    }

    #[test]
    fn the_account_locks_at_the_account_wide_cap() {
        assert!(!policy().should_lock_account(99));
        assert!(policy().should_lock_account(100));
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
