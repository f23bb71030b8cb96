//! The service's environment for one tenant, rendered from its spec.
//!
//! [`render_config`] is the non-secret part (the tenant's ConfigMap); [`render_env`] adds
//! the secret values and is exactly what a pod of the tenant sees. The Deployment
//! builder uses the same functions, so a process started by hand with
//! `render_env(..)` behaves like a pod the operator runs.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::crd::FaceIdTenant;

/// Port the service listens on inside its pod.
pub const SERVICE_PORT: u16 = 8000;

/// Names of the environment variables that come from Secrets, never from the ConfigMap.
pub const SECRET_ENV: [&str; 6] = [
    "DATABASE_URL",
    "SECRET_KEY",
    "TEMPLATE_KEY",
    "ADMIN_API_KEY",
    "SIGNING_KEYS",
    "REDIS_URL",
];

/// The secret values of one tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantSecrets {
    /// URL of the tenant's own role (limited to its schema).
    pub database_url: String,
    /// Token signing key (at least 32 bytes).
    pub secret_key: String,
    /// Admin bearer credential.
    pub admin_api_key: String,
    /// Key of the tenant's biometric template transform (at least 32 bytes).
    pub template_key: String,
    /// Redis URL, when the tenant has Redis.
    pub redis_url: Option<String>,
    /// The token signing keys, the `SIGNING_KEYS` document.
    pub signing_keys: String,
    /// Whether HS256 stays on when `spec.tokens.legacyHs256` is unset: true for a
    /// tenant whose credentials were made before signing keys existed (not a secret, but
    /// read from the credentials Secret with them).
    pub legacy_hs256_default: bool,
    /// The secret of each confidential OpenID client, by client id (kept in the
    /// client's own Secret; the service gets their SHA-256 only).
    pub oidc_client_secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for TenantSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSecrets")
            .field("redis", &self.redis_url.is_some())
            .field("legacy_hs256_default", &self.legacy_hs256_default)
            .finish_non_exhaustive()
    }
}

/// The service's `TENANT` value: token audience and Redis key prefix.
///
/// `<namespace>_<name>` (Kubernetes names never contain `_`, so two tenants never share
/// one); dots become dashes. A longer result than the service's 63 characters keeps the
/// name and a hash of the whole.
pub fn tenant_id(tenant: &FaceIdTenant) -> String {
    let ns = tenant.namespace().unwrap_or_else(|| "default".to_owned());
    let full = format!("{ns}_{}", tenant.name_any()).replace('.', "-");
    if full.len() <= 63 {
        return full;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(full.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let name: String = tenant
        .name_any()
        .replace('.', "-")
        .chars()
        .take(54)
        .collect();
    format!("{name}_{hash}")
}

/// The tenant's owner key in database claims: `<namespace>/<name>`.
pub fn tenant_key(tenant: &FaceIdTenant) -> String {
    format!(
        "{}/{}",
        tenant.namespace().unwrap_or_else(|| "default".to_owned()),
        tenant.name_any()
    )
}

/// Whether the tenant's service accepts HS256 tokens: `spec.tokens.legacyHs256`, else
/// `default` (true for a tenant from before signing keys, [`TenantSecrets`]).
pub fn legacy_hs256(tenant: &FaceIdTenant, default: bool) -> bool {
    tenant.spec.tokens.legacy_hs256.unwrap_or(default)
}

/// The non-secret environment of the tenant's service (its ConfigMap's data);
/// `legacy_hs256_default` as in [`legacy_hs256`].
pub fn render_config(
    tenant: &FaceIdTenant,
    legacy_hs256_default: bool,
) -> BTreeMap<String, String> {
    let spec = &tenant.spec;
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    set("DATABASE_SCHEMA", spec.database.schema.clone());
    set("MIGRATE_ON_START", "false".to_owned());
    set("TENANT", tenant_id(tenant));
    set("HOST", "0.0.0.0".to_owned());
    set("PORT", SERVICE_PORT.to_string());
    set(
        "FACE_RECOGNITION_TOLERANCE",
        spec.recognition.tolerance.clone(),
    );
    if let Some(model) = &spec.recognition.detection_model {
        set("FACE_DETECTION_MODEL", model.clone());
    }
    if let Some(upscale) = spec.recognition.detection_upscale {
        set("FACE_DETECTION_UPSCALE", upscale.to_string());
    }
    if let Some(precision) = &spec.recognition.precision {
        set("FACE_RECOGNITION_PRECISION", precision.clone());
    }
    if let Some(allow) = spec.recognition.allow_duplicate_faces {
        set("ALLOW_DUPLICATE_FACES", allow.to_string());
    }
    if let Some(mode) = &spec.login.mode {
        set("LOGIN_MODE", mode.clone());
    }
    if let Some(max) = spec.login.face_only_max_users {
        set("FACE_ONLY_MAX_USERS", max.to_string());
    }
    set(
        "FACE_ONLY_ACCEPT_RISK",
        spec.login.accept_face_only_risk.to_string(),
    );
    set("LIVENESS_ENABLED", spec.liveness.enabled.to_string());
    set("LIVENESS_THRESHOLD", spec.liveness.threshold.clone());
    set("RATE_LIMIT_ENABLED", spec.rate_limits.enabled.to_string());
    set("RATE_LIMIT_REGISTER", spec.rate_limits.register.clone());
    set("RATE_LIMIT_LOGIN", spec.rate_limits.login.clone());
    set("RATE_LIMIT_DEFAULT", spec.rate_limits.default.clone());
    let s = &spec.security;
    set(
        "ACCESS_TOKEN_EXPIRE_MINUTES",
        s.access_token_expire_minutes.to_string(),
    );
    set(
        "REFRESH_TOKEN_EXPIRE_DAYS",
        s.refresh_token_expire_days.to_string(),
    );
    set(
        "MAX_FAILED_LOGIN_ATTEMPTS",
        s.max_failed_login_attempts.to_string(),
    );
    set("ACCOUNT_LOCK_FAILURES", s.account_lock_failures.to_string());
    set("LOCKOUT_MINUTES", s.lockout_minutes.to_string());
    set(
        "FAILED_ATTEMPT_RETENTION_DAYS",
        s.failed_attempt_retention_days.to_string(),
    );
    set(
        "LEGACY_HS256_TOKENS",
        legacy_hs256(tenant, legacy_hs256_default).to_string(),
    );
    if let Some(algorithm) = &spec.tokens.access_token_algorithm {
        set("ACCESS_TOKEN_ALGORITHM", algorithm.clone());
    }
    if let Some(dir) = &spec.workload.models_dir {
        set("MODELS_DIR", dir.clone());
    }
    set("LOG_FORMAT", "json".to_owned());
    set("CORS_ORIGINS", spec.cors_origins.join(","));
    set("TRUSTED_PROXY_HOPS", spec.trusted_proxy_hops.to_string());
    set("HNSW_EF_SEARCH", spec.database.hnsw.ef_search.to_string());
    env
}

/// The OpenID Provider's settings (`ISSUER_URL`, `OIDC_CLIENTS`): not secret, since a
/// client secret appears only as its SHA-256. Empty when the spec declares no issuer.
pub fn oidc_env(tenant: &FaceIdTenant, secrets: &TenantSecrets) -> BTreeMap<String, String> {
    let oidc = &tenant.spec.oidc;
    let mut env = BTreeMap::new();
    if let Some(issuer) = &oidc.issuer_url {
        env.insert("ISSUER_URL".to_owned(), issuer.clone());
    }
    if oidc.password_login {
        env.insert("OIDC_PASSWORD_LOGIN".to_owned(), "true".to_owned());
    }
    if !oidc.clients.is_empty() {
        env.insert(
            "OIDC_CLIENTS".to_owned(),
            crate::oidc::render_clients(&oidc.clients, &secrets.oidc_client_secrets),
        );
    }
    env
}

/// The complete environment of one service process of the tenant: [`render_config`],
/// [`oidc_env`] and the secret values.
pub fn render_env(tenant: &FaceIdTenant, secrets: &TenantSecrets) -> BTreeMap<String, String> {
    let mut env = render_config(tenant, secrets.legacy_hs256_default);
    env.extend(oidc_env(tenant, secrets));
    env.insert("DATABASE_URL".to_owned(), secrets.database_url.clone());
    env.insert("SIGNING_KEYS".to_owned(), secrets.signing_keys.clone());
    env.insert("SECRET_KEY".to_owned(), secrets.secret_key.clone());
    env.insert("ADMIN_API_KEY".to_owned(), secrets.admin_api_key.clone());
    env.insert("TEMPLATE_KEY".to_owned(), secrets.template_key.clone());
    if let Some(redis) = &secrets.redis_url {
        env.insert("REDIS_URL".to_owned(), redis.clone());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DatabaseSpec, FaceIdTenantSpec, HnswSpec, SecretKeyRef};

    fn tenant(ns: &str, name: &str) -> FaceIdTenant {
        let mut t = FaceIdTenant::new(
            name,
            FaceIdTenantSpec {
                database: DatabaseSpec {
                    connection_secret_ref: SecretKeyRef {
                        name: "pg".into(),
                        key: "url".into(),
                    },
                    schema: "acme".into(),
                    hnsw: HnswSpec::default(),
                    deletion_policy: Default::default(),
                },
                recognition: Default::default(),
                login: Default::default(),
                oidc: Default::default(),
                liveness: Default::default(),
                rate_limits: Default::default(),
                security: Default::default(),
                tokens: Default::default(),
                redis: None,
                cors_origins: vec![],
                trusted_proxy_hops: 0,
                network_policy: Default::default(),
                monitoring: Default::default(),
                workload: Default::default(),
            },
        );
        t.metadata.namespace = Some(ns.into());
        t
    }

    #[test]
    fn defaults_render_the_service_defaults() {
        let env = render_config(&tenant("team-a", "acme"), false);
        assert_eq!(env["DATABASE_SCHEMA"], "acme");
        assert_eq!(env["MIGRATE_ON_START"], "false");
        assert_eq!(env["TENANT"], "team-a_acme");
        assert_eq!(env["PORT"], "8000");
        assert_eq!(env["FACE_RECOGNITION_TOLERANCE"], "0.6");
        assert_eq!(env["LIVENESS_THRESHOLD"], "0.7");
        assert_eq!(env["RATE_LIMIT_REGISTER"], "5/hour");
        assert_eq!(env["RATE_LIMIT_LOGIN"], "10/minute");
        assert_eq!(env["RATE_LIMIT_DEFAULT"], "100/hour");
        assert_eq!(env["ACCESS_TOKEN_EXPIRE_MINUTES"], "30");
        assert_eq!(env["MAX_FAILED_LOGIN_ATTEMPTS"], "10");
        assert_eq!(env["LOCKOUT_MINUTES"], "30");
        assert_eq!(env["ACCOUNT_LOCK_FAILURES"], "100");
        assert_eq!(env["FAILED_ATTEMPT_RETENTION_DAYS"], "30");
        assert_eq!(env["LOG_FORMAT"], "json");
        assert_eq!(env["HNSW_EF_SEARCH"], "100");
        assert_eq!(env["CORS_ORIGINS"], "");
        assert_eq!(env["TRUSTED_PROXY_HOPS"], "0");
        assert!(!env.contains_key("FACE_DETECTION_MODEL"));
        assert!(!env.contains_key("FACE_DETECTION_UPSCALE"));
        assert!(!env.contains_key("FACE_RECOGNITION_PRECISION"));
        // Login rules: the service's safe defaults, the risk explicitly not accepted.
        assert!(!env.contains_key("LOGIN_MODE"));
        assert!(!env.contains_key("FACE_ONLY_MAX_USERS"));
        assert!(!env.contains_key("ALLOW_DUPLICATE_FACES"));
        assert_eq!(env["FACE_ONLY_ACCEPT_RISK"], "false");
        // A new tenant: asymmetric tokens only.
        assert_eq!(env["LEGACY_HS256_TOKENS"], "false");
        assert!(!env.contains_key("ACCESS_TOKEN_ALGORITHM"));
        for secret in SECRET_ENV {
            assert!(
                !env.contains_key(secret),
                "{secret} must not be in the ConfigMap"
            );
        }
    }

    #[test]
    fn login_rules_reach_the_service() {
        let mut t = tenant("team-a", "acme");
        t.spec.login.mode = Some("username".into());
        t.spec.login.face_only_max_users = Some(40);
        t.spec.login.accept_face_only_risk = true;
        t.spec.recognition.allow_duplicate_faces = Some(true);
        let env = render_config(&t, false);
        assert_eq!(env["LOGIN_MODE"], "username");
        assert_eq!(env["FACE_ONLY_MAX_USERS"], "40");
        assert_eq!(env["FACE_ONLY_ACCEPT_RISK"], "true");
        assert_eq!(env["ALLOW_DUPLICATE_FACES"], "true");
    }

    #[test]
    fn hs256_follows_the_spec_else_the_tenants_age() {
        let mut t = tenant("team-a", "acme");
        // Unset: off for a new tenant, on for one from before signing keys.
        assert_eq!(render_config(&t, false)["LEGACY_HS256_TOKENS"], "false");
        assert_eq!(render_config(&t, true)["LEGACY_HS256_TOKENS"], "true");
        // Set: the spec decides either way.
        t.spec.tokens.legacy_hs256 = Some(false);
        assert_eq!(render_config(&t, true)["LEGACY_HS256_TOKENS"], "false");
        t.spec.tokens.legacy_hs256 = Some(true);
        t.spec.tokens.access_token_algorithm = Some("EdDSA".into());
        let env = render_config(&t, false);
        assert_eq!(env["LEGACY_HS256_TOKENS"], "true");
        assert_eq!(env["ACCESS_TOKEN_ALGORITHM"], "EdDSA");
    }

    #[test]
    fn render_env_adds_exactly_the_secrets() {
        let t = tenant("team-a", "acme");
        let secrets = TenantSecrets {
            database_url: "postgres://r:p@h/db".into(),
            secret_key: "k".repeat(64),
            admin_api_key: "a".repeat(48),
            template_key: "t".repeat(40),
            redis_url: Some("redis://r:6379/0".into()),
            signing_keys: r#"{"keys":[]}"#.into(),
            legacy_hs256_default: false,
            oidc_client_secrets: Default::default(),
        };
        let env = render_env(&t, &secrets);
        let config = render_config(&t, false);
        let extra: Vec<&String> = env.keys().filter(|k| !config.contains_key(*k)).collect();
        assert_eq!(
            extra,
            [
                "ADMIN_API_KEY",
                "DATABASE_URL",
                "REDIS_URL",
                "SECRET_KEY",
                "SIGNING_KEYS",
                "TEMPLATE_KEY"
            ]
        );
        assert_eq!(env["REDIS_URL"], "redis://r:6379/0");
        let without_redis = render_env(
            &t,
            &TenantSecrets {
                redis_url: None,
                ..secrets
            },
        );
        assert!(!without_redis.contains_key("REDIS_URL"));
    }

    #[test]
    fn tenant_ids_differ_across_namespaces_and_fit_the_service() {
        let a = tenant_id(&tenant("a", "acme"));
        let b = tenant_id(&tenant("b", "acme"));
        assert_ne!(a, b);
        let long = tenant_id(&tenant(&"n".repeat(63), &"x".repeat(63)));
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        );
    }

    #[test]
    fn secrets_never_reach_debug_output() {
        let s = TenantSecrets {
            database_url: "postgres://r:hunter2@h/db".into(),
            secret_key: "supersecretsupersecretsupersecret".into(),
            admin_api_key: "adminadminadmin!".into(),
            template_key: "t".repeat(40),
            redis_url: None,
            signing_keys: "-----BEGIN PRIVATE KEY-----".into(),
            legacy_hs256_default: false,
            oidc_client_secrets: Default::default(),
        };
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2")
                && !shown.contains("supersecret")
                && !shown.contains("admin!")
                && !shown.contains("PRIVATE")
        );
    }
}
