//! Rate-limit counters: fixed windows, counted atomically in Redis (shared by every
//! replica of a tenant, keys prefixed with the tenant), or in process when no Redis is
//! configured (correct for a single replica).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::RwLock;

use crate::domain::ratelimit::{RateDecision, RateSpec};

/// Redis could not answer.
#[derive(Debug, thiserror::Error)]
#[error("rate-limit store unavailable: {0}")]
pub struct LimiterUnavailable(pub String);

/// INCR the window's counter, set its expiry on the first hit, return (hits, ttl ms).
/// One script, so the increment and the expiry can never be separated.
const FIXED_WINDOW: &str = r"
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {hits, ttl}
";

/// The limiter of one tenant.
#[derive(Debug)]
pub enum RateLimiter {
    /// Shared counters in Redis.
    Redis(Box<RedisLimiter>),
    /// Counters in this process.
    Local(LocalLimiter),
}

impl RateLimiter {
    /// Counts one request of `client` at `endpoint` against `spec`.
    pub async fn hit(
        &self,
        endpoint: &str,
        client: &str,
        spec: RateSpec,
    ) -> Result<RateDecision, LimiterUnavailable> {
        match self {
            Self::Redis(r) => r.hit(endpoint, client, spec).await,
            Self::Local(l) => Ok(l.hit(endpoint, client, spec, Instant::now())),
        }
    }

    /// Whether the store answers (for `/ready`); `None` when there is no external store.
    pub async fn ping(&self) -> Option<Result<(), LimiterUnavailable>> {
        match self {
            Self::Redis(r) => Some(r.ping().await),
            Self::Local(_) => None,
        }
    }
}

/// Counters in Redis. The connection is made on first use and re-made after failures,
/// so the service starts and recovers without Redis being up first.
pub struct RedisLimiter {
    client: redis::Client,
    prefix: String,
    conn: RwLock<Option<ConnectionManager>>,
    script: redis::Script,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// How long one Redis round trip may take before the limiter reports Redis as down.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

impl RedisLimiter {
    /// A limiter for `tenant` on the Redis at `url` (not contacted yet).
    pub fn new(url: &str, tenant: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefix: format!("faceid:{tenant}:rl"),
            conn: RwLock::new(None),
            script: redis::Script::new(FIXED_WINDOW),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, LimiterUnavailable> {
        if let Some(c) = self.conn.read().await.as_ref() {
            return Ok(c.clone());
        }
        let mut slot = self.conn.write().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let manager = tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| LimiterUnavailable("connect timed out".to_owned()))?
        .map_err(|e| LimiterUnavailable(e.to_string()))?;
        *slot = Some(manager.clone());
        Ok(manager)
    }

    async fn hit(
        &self,
        endpoint: &str,
        client: &str,
        spec: RateSpec,
    ) -> Result<RateDecision, LimiterUnavailable> {
        let mut conn = self.connection().await?;
        let window_ms = u64::try_from(spec.window.as_millis()).unwrap_or(u64::MAX);
        let key = format!("{}:{endpoint}:{client}", self.prefix);
        let mut invocation = self.script.key(&key);
        invocation.arg(window_ms);
        let call = invocation.invoke_async::<(u64, i64)>(&mut conn);
        let (hits, ttl_ms) = tokio::time::timeout(REDIS_TIMEOUT, call)
            .await
            .map_err(|_| LimiterUnavailable("timed out".to_owned()))?
            .map_err(|e| LimiterUnavailable(e.to_string()))?;
        let ttl = Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0));
        Ok(RateDecision::from_hits(spec, hits, ttl))
    }

    async fn ping(&self) -> Result<(), LimiterUnavailable> {
        let mut conn = self.connection().await?;
        let ping = redis::cmd("PING");
        let call = ping.query_async::<String>(&mut conn);
        tokio::time::timeout(REDIS_TIMEOUT, call)
            .await
            .map_err(|_| LimiterUnavailable("timed out".to_owned()))?
            .map_err(|e| LimiterUnavailable(e.to_string()))?;
        Ok(())
    }
}

/// Counters in this process, swept of expired windows as it goes.
#[derive(Debug, Default)]
pub struct LocalLimiter {
    windows: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LocalLimiter {
    /// Counts one request at `now`.
    pub fn hit(&self, endpoint: &str, client: &str, spec: RateSpec, now: Instant) -> RateDecision {
        let mut windows = match self.windows.lock() {
            Ok(w) => w,
            // A panic while holding the lock cannot leave the map inconsistent: keep going.
            Err(poisoned) => poisoned.into_inner(),
        };
        if windows.len() > 100_000 {
            windows
                .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(86_400));
        }
        let key = format!("{endpoint}:{client}");
        let entry = windows.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= spec.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        let ttl = spec.window.saturating_sub(now.duration_since(entry.0));
        RateDecision::from_hits(spec, entry.1, ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_windows_count_and_reset() {
        let l = LocalLimiter::default();
        let spec: RateSpec = "2/minute".parse().unwrap();
        let t0 = Instant::now();
        assert!(l.hit("login", "1.2.3.4", spec, t0).allowed);
        assert!(l.hit("login", "1.2.3.4", spec, t0).allowed);
        let refused = l.hit("login", "1.2.3.4", spec, t0 + Duration::from_secs(20));
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_secs(), 40);
        // Other clients and endpoints have their own windows.
        assert!(l.hit("login", "5.6.7.8", spec, t0).allowed);
        assert!(l.hit("register", "1.2.3.4", spec, t0).allowed);
        // A new window opens after the old one ends.
        assert!(
            l.hit("login", "1.2.3.4", spec, t0 + Duration::from_secs(61))
                .allowed
        );
    }
}
