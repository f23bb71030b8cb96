//! The service's configuration: one `clap` struct whose every field reads an environment
//! variable. Its doc comments are `faceid serve --help`. The variable names are the
//! original service's, and the operator renders exactly these for each tenant.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::domain::login_policy::{LoginMode, LoginPolicy};
use crate::domain::ratelimit::RateSpec;
use crate::domain::tokens::{AccessAlgorithm, KeySet, TokenConfigError, TokenService};
use crate::face::EngineArgs;
use faceid_keys::KeyDocument;

/// The default of `MAX_UPLOAD_BYTES`: 10 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;

/// Settings of `faceid serve`.
#[derive(Args, Clone)]
pub struct ServeArgs {
    /// PostgreSQL connection URL (the database holding the tenant schema).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// The tenant's schema: every query runs with `search_path` set to it.
    #[arg(long, env = "DATABASE_SCHEMA", default_value = "public", value_parser = parse_schema)]
    pub database_schema: String,

    /// Apply pending migrations to the schema at start-up (the operator sets false and
    /// migrates itself).
    #[arg(long, env = "MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,

    /// Most connections this process opens to PostgreSQL.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,

    /// Longest a single SQL statement may run before it is cancelled, in milliseconds.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub database_statement_timeout_ms: u64,

    /// Redis URL for rate-limit counters shared by every replica. Unset: an in-process
    /// limiter (correct for one replica only).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// What rate-limited endpoints do while Redis is configured but unreachable:
    /// `closed` refuses with 503, `open` lets the request through (logged and counted).
    /// Login and registration default to closed, everything else to open.
    #[arg(long, env = "RATE_LIMIT_REDIS_FAILURE", value_enum, default_value_t = RedisFailurePolicy::ClosedForAuth)]
    pub rate_limit_redis_failure: RedisFailurePolicy,

    /// Tenant name: the tokens' audience, the Redis key prefix and a label in logs.
    #[arg(long, env = "TENANT", default_value = "default", value_parser = parse_tenant)]
    pub tenant: String,

    /// The tenant's secret: at least 32 bytes. Signs HS256 access tokens while
    /// LEGACY_HS256_TOKENS is on, and derives the template key when TEMPLATE_KEY is unset.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true, value_parser = parse_secret_key)]
    pub secret_key: String,

    /// The token signing keys: a JSON document `{"keys": [{"kid", "alg" (EdDSA or
    /// ES256), "private_key" (PKCS#8 PEM), "created", "not_before"?, "expires"?}]}`
    /// (README, "Tokens"); the operator writes and rotates it. Unset: an Ed25519 and a
    /// P-256 key are generated at start-up, which no other replica shares and a restart
    /// forgets (every access token they signed stops working).
    // Parsed at start-up (`token_service`), not by clap, whose errors print the value.
    #[arg(long, env = "SIGNING_KEYS", hide_env_values = true)]
    pub signing_keys: Option<String>,

    /// What access tokens are signed with: `EdDSA`, `ES256` (a key of that algorithm
    /// must sign now) or `HS256` (with SECRET_KEY; needs LEGACY_HS256_TOKENS). Unset:
    /// HS256 while LEGACY_HS256_TOKENS is on, EdDSA otherwise.
    #[arg(long, env = "ACCESS_TOKEN_ALGORITHM", value_enum)]
    pub access_token_algorithm: Option<AccessAlgorithm>,

    /// Accept HS256 access tokens signed with SECRET_KEY, as the original API issued them
    /// (for existing clients that verify tokens with the shared secret). Off, only tokens
    /// of the SIGNING_KEYS key set verify.
    #[arg(long, env = "LEGACY_HS256_TOKENS", default_value_t = false, action = clap::ArgAction::Set)]
    pub legacy_hs256_tokens: bool,

    /// Secret from which the tenant's template transform is derived (embeddings are
    /// stored rotated by a key-derived orthogonal matrix). At least 32 bytes. Unset: derived
    /// from SECRET_KEY, which then cannot be rotated without `faceid rekey`; set it
    /// explicitly in production (the operator does).
    #[arg(long, env = "TEMPLATE_KEY", hide_env_values = true, value_parser = parse_secret_key)]
    pub template_key: Option<String>,

    /// The tenant's public base URL, as apps reach it (`https://login.acme.example`): the
    /// OpenID Provider's issuer, the `iss` of its ID tokens and the base of the URLs in
    /// `/.well-known/openid-configuration`. Unset: `http://localhost:<PORT>`, for a
    /// developer's machine only (certified OpenID clients refuse plain http elsewhere).
    #[arg(long, env = "ISSUER_URL", value_parser = parse_issuer_url)]
    pub issuer_url: Option<String>,

    /// The tenant's OpenID Connect clients, a JSON array of
    /// `{"client_id", "redirect_uris": [...], "post_logout_redirect_uris": [...],
    /// "secret_sha256"}` (a confidential client's secret as hex SHA-256; none for a public
    /// client). The operator renders it from `spec.oidc.clients`. Empty: no client can
    /// start an authorization.
    #[arg(long, env = "OIDC_CLIENTS", default_value = "", value_parser = parse_oidc_clients)]
    pub oidc_clients: crate::domain::oidc::ClientRegistry,

    /// Offer username + password on the OpenID login page beside the face (`amr: ["pwd"]`
    /// in the ID token; the same lockout as a face login). Off: face only.
    #[arg(long, env = "OIDC_PASSWORD_LOGIN", default_value_t = false, action = clap::ArgAction::Set)]
    pub oidc_password_login: bool,

    /// Bearer credential for the admin endpoints: at least 16 bytes.
    #[arg(long, env = "ADMIN_API_KEY", hide_env_values = true, value_parser = parse_admin_key)]
    pub admin_api_key: String,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// Check liveness (anti-spoofing) on registration and login.
    #[arg(long, env = "LIVENESS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub liveness_enabled: bool,

    /// 1:N login refuses a match whose runner-up (another user) is within this many
    /// distance units of the best match: such a probe does not single out one person.
    #[arg(long, env = "MATCH_AMBIGUITY_MARGIN", default_value_t = 0.05, value_parser = parse_margin)]
    pub match_ambiguity_margin: f32,

    /// Which logins the tenant accepts: `both` (face-only 1:N while the gallery is within
    /// the safe size, and face + username 1:1 always), `username` (1:1 only) or `face`
    /// (1:N only: a username is refused).
    #[arg(long, env = "LOGIN_MODE", value_enum, default_value_t = LoginMode::Both)]
    pub login_mode: LoginMode,

    /// Most active users for which face-only (1:N) login stays open; past it a face-only
    /// login is answered `username_required`. Unset: the safe size measured for
    /// FACE_RECOGNITION_TOLERANCE (docs/OPERATOR.md, "Sizing face-only login").
    #[arg(long, env = "FACE_ONLY_MAX_USERS")]
    pub face_only_max_users: Option<u64>,

    /// Keep face-only login open past the safe size, accepting that strangers are
    /// logged in as somebody more often than 1 in 100 (the rates by gallery size are in
    /// docs/FACE_ENGINE.md, "1:N identification").
    #[arg(long, env = "FACE_ONLY_ACCEPT_RISK", default_value_t = false, action = clap::ArgAction::Set)]
    pub face_only_accept_risk: bool,

    /// Let one face register several accounts. Off (the default), a registration whose
    /// face is within FACE_RECOGNITION_TOLERANCE of any enrolled template, active account
    /// or not, is refused `duplicate_face` and recorded as a fraud signal: two accounts
    /// answering to one face would make face-only login pick either.
    #[arg(long, env = "ALLOW_DUPLICATE_FACES", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_duplicate_faces: bool,

    /// Apply rate limits.
    #[arg(long, env = "RATE_LIMIT_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub rate_limit_enabled: bool,

    /// Registrations per client IP, as COUNT/UNIT (unit: second, minute, hour, day).
    #[arg(long, env = "RATE_LIMIT_REGISTER", default_value = "5/hour")]
    pub rate_limit_register: RateSpec,

    /// Logins per client IP.
    #[arg(long, env = "RATE_LIMIT_LOGIN", default_value = "10/minute")]
    pub rate_limit_login: RateSpec,

    /// Requests per client IP to every other rate-limited endpoint.
    #[arg(long, env = "RATE_LIMIT_DEFAULT", default_value = "100/hour")]
    pub rate_limit_default: RateSpec,

    /// Read the client IP from `X-Forwarded-For`, trusting this many proxy hops in front
    /// of the service (0: use the socket address and ignore the header).
    #[arg(long, env = "TRUSTED_PROXY_HOPS", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=10))]
    pub trusted_proxy_hops: u8,

    /// Access token lifetime in minutes.
    #[arg(long, env = "ACCESS_TOKEN_EXPIRE_MINUTES", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub access_token_expire_minutes: u32,

    /// Refresh token lifetime in days.
    #[arg(long, env = "REFRESH_TOKEN_EXPIRE_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
    pub refresh_token_expire_days: u32,

    /// Failed logins from one client (IPv4 address or IPv6 /64) against one account within
    /// an hour that lock that client out of the account for LOCKOUT_MINUTES; past three
    /// tenths of this number (at least 3) the client also waits 1 s, 2 s, 4 s... (at most
    /// 60 s) between attempts. The owner's own device is not affected (docs/SECURITY.md, "Lockout").
    #[arg(long, env = "MAX_FAILED_LOGIN_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_failed_login_attempts: u32,

    /// Failed logins from all clients together against one account within an hour that
    /// lock the account for everyone, for LOCKOUT_MINUTES (the cap on a distributed
    /// guesser; NIST SP 800-63B allows at most 100).
    #[arg(long, env = "ACCOUNT_LOCK_FAILURES", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub account_lock_failures: u32,

    /// How long a lock (of a client out of an account, or of the account) lasts, in minutes.
    #[arg(long, env = "LOCKOUT_MINUTES", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=525_600))]
    pub lockout_minutes: u32,

    /// Failed attempts older than this many days are deleted.
    #[arg(long, env = "FAILED_ATTEMPT_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub failed_attempt_retention_days: u32,

    /// HNSW search breadth (`hnsw.ef_search`): higher finds the true nearest face more
    /// often at some cost in latency.
    #[arg(long, env = "HNSW_EF_SEARCH", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub hnsw_ef_search: u32,

    /// Largest accepted request body in bytes (larger: 413 before the body is read).
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = DEFAULT_MAX_UPLOAD_BYTES, value_parser = clap::value_parser!(u64).range(1024..=100 * 1024 * 1024))]
    pub max_upload_bytes: u64,

    /// Longest a client may take to send a request's head (request line and headers), in
    /// seconds; slower connections are closed (slowloris).
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub http_header_read_timeout_seconds: u64,

    /// Longest a request may take before it is answered 503, in seconds.
    #[arg(long, env = "REQUEST_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub request_timeout_seconds: u64,

    /// Origins allowed by CORS, comma-separated (`*` for any). Empty: no CORS headers.
    #[arg(long, env = "CORS_ORIGINS", default_value = "", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Log format: `json` (one JSON object per line) or `text`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// The face engine's settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl std::fmt::Debug for ServeArgs {
    // Secrets and URLs with passwords never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("database_schema", &self.database_schema)
            .field("tenant", &self.tenant)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("redis", &self.redis_url.is_some())
            .field("signing_keys", &self.signing_keys.is_some())
            .field("legacy_hs256_tokens", &self.legacy_hs256_tokens)
            .field("access_algorithm", &self.access_algorithm())
            .finish_non_exhaustive()
    }
}

impl ServeArgs {
    /// The tenant's template transform: from TEMPLATE_KEY, else derived from SECRET_KEY.
    pub fn template_key(&self) -> crate::domain::templates::TemplateKey {
        template_key(self.template_key.as_deref(), &self.secret_key)
    }

    /// The tenant's login rules.
    pub fn login_policy(&self) -> LoginPolicy {
        LoginPolicy::new(
            self.login_mode,
            self.engine.face_recognition_tolerance,
            self.face_only_max_users,
            self.face_only_accept_risk,
        )
    }

    /// What access tokens are signed with: ACCESS_TOKEN_ALGORITHM, else HS256 while
    /// LEGACY_HS256_TOKENS is on, else EdDSA.
    pub fn access_algorithm(&self) -> AccessAlgorithm {
        self.access_token_algorithm
            .unwrap_or(if self.legacy_hs256_tokens {
                AccessAlgorithm::Hs256
            } else {
                AccessAlgorithm::EdDsa
            })
    }

    /// The token service: SIGNING_KEYS (or an ephemeral key pair when unset), HS256 with
    /// SECRET_KEY while LEGACY_HS256_TOKENS is on.
    pub fn token_service(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<TokenService, TokenConfigError> {
        let keys = match self.signing_keys.as_deref().map(str::trim) {
            Some(json) if !json.is_empty() => KeyDocument::parse(json)
                .and_then(|document| KeySet::from_document(&document))
                .map_err(TokenConfigError::SigningKeys)?,
            _ => KeySet::ephemeral(now),
        };
        TokenService::with_keys(
            &self.tenant,
            keys,
            self.legacy_hs256_tokens
                .then_some(self.secret_key.as_bytes()),
            self.access_algorithm(),
            self.access_ttl(),
            now,
        )
        .map(|tokens| tokens.with_oidc_issuer(&self.issuer()))
    }

    /// The OpenID Provider's issuer: `ISSUER_URL`, else `http://localhost:<PORT>`.
    pub fn issuer(&self) -> String {
        self.issuer_url
            .clone()
            .unwrap_or_else(|| format!("http://localhost:{}", self.port))
    }

    /// Access-token lifetime.
    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.access_token_expire_minutes) * 60)
    }
    /// Refresh-token lifetime.
    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.refresh_token_expire_days) * 86_400)
    }
}

/// The template transform from an explicit key, or derived from the signing key.
pub fn template_key(
    explicit: Option<&str>,
    secret_key: &str,
) -> crate::domain::templates::TemplateKey {
    match explicit {
        Some(key) => crate::domain::templates::TemplateKey::derive(key.as_bytes()),
        None => {
            let mut derived = b"derived-from-SECRET_KEY\0".to_vec();
            derived.extend_from_slice(secret_key.as_bytes());
            crate::domain::templates::TemplateKey::derive(&derived)
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Behaviour of rate-limited endpoints while Redis is configured but down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RedisFailurePolicy {
    /// Refuse login and registration (503), let other endpoints through.
    ClosedForAuth,
    /// Refuse every rate-limited endpoint (503).
    Closed,
    /// Let every request through.
    Open,
}

fn parse_schema(s: &str) -> Result<String, String> {
    faceid_migrations::validate_schema_name(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_tenant(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err("use 1-63 characters from a-z, 0-9, - and _".to_owned())
    }
}

fn parse_issuer_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("ISSUER_URL must be an absolute URL: {e}"))?;
    let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && local) {
        return Err("ISSUER_URL must be https (plain http only on localhost)".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("ISSUER_URL must not have a query or fragment".to_owned());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn parse_oidc_clients(s: &str) -> Result<crate::domain::oidc::ClientRegistry, String> {
    crate::domain::oidc::ClientRegistry::from_json(s)
}

fn parse_secret_key(s: &str) -> Result<String, String> {
    if s.len() < 32 {
        Err(format!(
            "must be at least 32 bytes (got {}); generate one with `openssl rand -base64 48`",
            s.len()
        ))
    } else {
        Ok(s.to_owned())
    }
}

fn parse_admin_key(s: &str) -> Result<String, String> {
    if s.len() < 16 {
        Err(format!("must be at least 16 bytes (got {})", s.len()))
    } else {
        Ok(s.to_owned())
    }
}

fn parse_margin(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut args = vec!["faceid", "--database-url", "postgres://x@localhost/db"];
        if !extra.contains(&"--secret-key") {
            args.extend(["--secret-key", "0123456789abcdef0123456789abcdef"]);
        }
        args.extend(["--admin-api-key", "0123456789abcdef"]);
        args.extend_from_slice(extra);
        Cli::try_parse_from(args).map(|c| c.serve)
    }

    #[test]
    fn defaults_match_the_original_service() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.port, 8000);
        assert_eq!(a.rate_limit_register.to_string(), "5/hour");
        assert_eq!(a.rate_limit_login.to_string(), "10/minute");
        assert_eq!(a.rate_limit_default.to_string(), "100/hour");
        assert_eq!(a.max_failed_login_attempts, 10);
        assert_eq!(a.lockout_minutes, 30);
        assert_eq!(a.access_token_expire_minutes, 30);
        assert_eq!(a.failed_attempt_retention_days, 30);
        assert!(a.liveness_enabled && a.rate_limit_enabled && a.migrate_on_start);
        assert_eq!(a.database_schema, "public");
        let login = a.login_policy();
        assert_eq!(login.mode, LoginMode::Both);
        assert!(!login.accept_risk);
        assert_eq!(
            login.face_only_max_users,
            faceid_limits::safe_face_only_gallery(0.6)
        );
    }

    #[test]
    fn short_secret_key_is_refused_with_the_variable_named() {
        let err = parse(&["--secret-key", "short"]).err().unwrap().to_string();
        assert!(
            err.contains("SECRET_KEY") || err.contains("secret-key"),
            "{err}"
        );
        assert!(err.contains("32 bytes"), "{err}");
    }

    #[test]
    fn invalid_values_are_refused() {
        assert!(parse(&["--database-schema", "Bad;Name"]).is_err());
        assert!(parse(&["--rate-limit-login", "ten/minute"]).is_err());
        assert!(parse(&["--tenant", "Tenant A"]).is_err());
        assert!(parse(&["--max-failed-login-attempts", "0"]).is_err());
        assert!(parse(&["--match-ambiguity-margin", "2"]).is_err());
    }

    #[test]
    fn token_settings_default_to_eddsa_and_refuse_what_cannot_serve() {
        let now = chrono::Utc::now();
        let a = parse(&[]).unwrap();
        assert_eq!(a.access_algorithm(), AccessAlgorithm::EdDsa);
        let tokens = a.token_service(now).unwrap();
        assert!(tokens.keys().is_ephemeral());
        assert!(!tokens.accepts_hs256());
        let legacy = parse(&["--legacy-hs256-tokens", "true"]).unwrap();
        assert_eq!(legacy.access_algorithm(), AccessAlgorithm::Hs256);
        assert!(legacy.token_service(now).unwrap().accepts_hs256());
        let migrating = parse(&[
            "--legacy-hs256-tokens",
            "true",
            "--access-token-algorithm",
            "EdDSA",
        ])
        .unwrap();
        assert_eq!(migrating.access_algorithm(), AccessAlgorithm::EdDsa);
        let hs_off = parse(&["--access-token-algorithm", "HS256"]).unwrap();
        assert_eq!(
            hs_off.token_service(now).err(),
            Some(TokenConfigError::Hs256Off)
        );
        // The ephemeral set has keys of both algorithms.
        let es = parse(&["--access-token-algorithm", "ES256"]).unwrap();
        assert!(es.token_service(now).is_ok());
        // ES256 with SIGNING_KEYS of no ES256 key: refused at start-up, naming the variables.
        let only_eddsa = KeyDocument {
            keys: vec![faceid_keys::KeyEntry::generate(
                faceid_keys::Alg::EdDsa,
                now,
                None,
            )],
        };
        let es = parse(&[
            "--access-token-algorithm",
            "ES256",
            "--signing-keys",
            &only_eddsa.to_json(),
        ])
        .unwrap();
        let err = es.token_service(now).err().unwrap().to_string();
        assert!(err.contains("SIGNING_KEYS"), "{err}");
        assert!(parse(&["--access-token-algorithm", "RS256"]).is_err());
    }

    #[test]
    fn a_bad_signing_key_document_is_refused_without_printing_it() {
        let now = chrono::Utc::now();
        let entry = faceid_keys::KeyEntry::generate(faceid_keys::Alg::EdDsa, now, None);
        let mut doc = KeyDocument { keys: vec![entry] };
        let good = parse(&["--signing-keys", &doc.to_json()]).unwrap();
        let tokens = good.token_service(now).unwrap();
        assert!(!tokens.keys().is_ephemeral());
        assert!(!format!("{good:?}").contains("PRIVATE"));
        doc.keys[0].alg = faceid_keys::Alg::Es256;
        let bad = parse(&["--signing-keys", &doc.to_json()]).unwrap();
        let err = bad.token_service(now).err().unwrap().to_string();
        assert!(err.starts_with("SIGNING_KEYS:"), "{err}");
        assert!(!err.contains("PRIVATE"), "{err}");
        let not_json = parse(&["--signing-keys", "{nope"]).unwrap();
        assert!(not_json.token_service(now).is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let a = parse(&[]).unwrap();
        let shown = format!("{a:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(!shown.contains("postgres://"), "{shown}");
    }
}
