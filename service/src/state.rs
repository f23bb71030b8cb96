//! `AppState`: what every handler shares: a cheap `Clone` of pools and `Arc`s.

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::ServeArgs;
use crate::domain::lockout::LockoutPolicy;
use crate::domain::login_policy::LoginPolicy;
use crate::domain::templates::TemplateKey;
use crate::domain::tokens::TokenService;
use crate::face::FaceEngine;
use crate::metrics::Metrics;
use crate::passwords::PasswordHasher;
use crate::store::ratelimit::{LocalLimiter, RateLimiter, RedisLimiter};
use crate::store::users::GalleryCount;

/// Shared state of one service process.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ServeArgs,
    db: PgPool,
    engine: FaceEngine,
    limiter: RateLimiter,
    tokens: TokenService,
    metrics: Metrics,
    lockout: LockoutPolicy,
    templates: TemplateKey,
    passwords: PasswordHasher,
    login: LoginPolicy,
    gallery: GalleryCount,
}

/// Failure to assemble the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database URL cannot be parsed.
    #[error("DATABASE_URL: {0}")]
    Database(#[from] sqlx::Error),
    /// The Redis URL cannot be parsed.
    #[error("REDIS_URL: {0}")]
    Redis(#[from] redis::RedisError),
    /// The token settings cannot serve.
    #[error("{0}")]
    Tokens(#[from] crate::domain::tokens::TokenConfigError),
    /// Metrics registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl AppState {
    /// Builds the state from the configuration and a loaded engine. Connections to
    /// PostgreSQL and Redis are made lazily, so a process starts (and reports not ready)
    /// while they are down.
    pub fn new(config: ServeArgs, engine: FaceEngine) -> Result<Self, StateError> {
        let db = crate::store::db::connect_lazy(
            &config.database_url,
            &config.database_schema,
            config.database_max_connections,
            std::time::Duration::from_millis(config.database_statement_timeout_ms),
            Some(config.hnsw_ef_search),
        )?;
        let limiter = match &config.redis_url {
            Some(url) if !url.is_empty() => {
                RateLimiter::Redis(Box::new(RedisLimiter::new(url, &config.tenant)?))
            }
            _ => RateLimiter::Local(LocalLimiter::default()),
        };
        let tokens = config.token_service(chrono::Utc::now())?;
        let lockout = LockoutPolicy::new(
            config.max_failed_login_attempts,
            config.lockout_minutes,
            config.account_lock_failures,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                engine,
                limiter,
                tokens,
                metrics: Metrics::new()?,
                lockout,
                templates: config.template_key(),
                passwords: PasswordHasher::new(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                ),
                login: config.login_policy(),
                gallery: GalleryCount::default(),
                config,
            }),
        })
    }

    /// Configuration.
    pub fn config(&self) -> &ServeArgs {
        &self.inner.config
    }
    /// The tenant's database pool.
    pub fn db(&self) -> &PgPool {
        &self.inner.db
    }
    /// The face engine.
    pub fn engine(&self) -> &FaceEngine {
        &self.inner.engine
    }
    /// The rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }
    /// Token issuing and verification.
    pub fn tokens(&self) -> &TokenService {
        &self.inner.tokens
    }
    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    /// The tenant's template protection.
    pub fn templates(&self) -> &TemplateKey {
        &self.inner.templates
    }
    /// The password hasher (one hash per CPU at a time).
    pub fn passwords(&self) -> &PasswordHasher {
        &self.inner.passwords
    }
    /// The tenant's login rules.
    pub fn login_policy(&self) -> &LoginPolicy {
        &self.inner.login
    }
    /// The cached size of the 1:N gallery.
    pub fn gallery(&self) -> &GalleryCount {
        &self.inner.gallery
    }
    /// Lockout policy.
    pub fn lockout(&self) -> &LockoutPolicy {
        &self.inner.lockout
    }
}
