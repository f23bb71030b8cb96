//! The `FaceIdTenant` custom resource: its Rust types are the single source of the CRD.
//!
//! `faceid-operator crd` prints [`crd_yaml`]; `crds/faceidtenant.yaml` and the chart's copy
//! are that output, checked for drift by `operator/tests/crd_drift.rs`.
//!
//! The API holds no floating-point numbers: thresholds are decimal strings validated by a
//! pattern, everything else is an integer with bounds. Rules that span fields or compare
//! with the previous object are CEL rules (`x-kubernetes-validations`); [`validate`]
//! repeats every rule in Rust so that an object admitted by an older CRD still gets a
//! clear condition instead of a broken Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of the resource.
pub const GROUP: &str = "faceid.dev";
/// API version of the resource.
pub const VERSION: &str = "v1alpha1";
/// Annotation that, set to `"true"`, pauses reconciliation of one tenant.
pub const PAUSED_ANNOTATION: &str = "faceid.dev/paused";
/// Annotation that, set to `"true"` on a tenant being deleted, removes the finalizer
/// without touching the database (an escape hatch when the database is gone for good).
pub const SKIP_CLEANUP_ANNOTATION: &str = "faceid.dev/skip-cleanup";

/// Pattern of a decimal in `[0, 1]` with at most three decimals (`"0.6"`, `"1"`, `"0.725"`).
pub const UNIT_DECIMAL_PATTERN: &str = r"^(0(\.[0-9]{1,3})?|1(\.0{1,3})?)$";
/// Pattern of a rate limit, `COUNT/UNIT`.
pub const RATE_PATTERN: &str = r"^[1-9][0-9]{0,5}/(second|minute|hour|day)$";
/// Pattern of a tenant schema name (role names add a prefix, hence at most 56 characters).
pub const SCHEMA_PATTERN: &str = r"^[a-z_][a-z0-9_]{0,55}$";
/// Longest tenant name: 51, so that the longest child name, `<name>-credentials`, is
/// still a DNS-1123 label of at most 63 characters (every child name can then also be a
/// label value or a DNS label, as tools that label or select by name need), and the name
/// itself is the Service's name (a DNS-1035 label) and the value of the
/// `app.kubernetes.io/instance` and `faceid.dev/tenant` labels.
pub const MAX_NAME_LEN: usize = 63 - "-credentials".len();
/// Annotation on a credentials Secret kept by `deletionPolicy: Retain`: the
/// `<namespace>/<name>` of the deleted tenant that a re-created tenant of that namespace
/// and name adopts it for.
pub const RETAINED_FOR_ANNOTATION: &str = "faceid.dev/retained-for";
/// Most pod annotations a tenant may set (bounds the cost of their CEL rule).
pub const MAX_POD_ANNOTATIONS: usize = 64;
/// Longest resource quantity accepted (bounds the cost of its CEL rule).
pub const MAX_QUANTITY_LEN: usize = 64;

/// A FaceID tenant: an isolated PostgreSQL schema, its secrets and a scaled Deployment
/// of the face-authentication service configured for it.
// Several printer columns share `type_ = "string"`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "faceid.dev",
    version = "v1alpha1",
    kind = "FaceIdTenant",
    plural = "faceidtenants",
    singular = "faceidtenant",
    namespaced,
    status = "FaceIdTenantStatus",
    shortname = "fit",
    category = "faceid",
    derive = "PartialEq",
    validation = Rule::new("size(self.metadata.name) <= 51 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must be a DNS-1035 label of at most 51 characters (a-z, 0-9 and '-', starting with a letter, not ending with '-'): it names the tenant's Service and its children (<name>-credentials at most 63) and is a label value"),
    validation = Rule::new("!has(self.spec.oidc) || !has(self.spec.oidc.clients) || size(self.spec.oidc.clients) == 0 || has(self.spec.oidc.issuerUrl)").message("spec.oidc.issuerUrl is required when spec.oidc.clients is set: it is the issuer apps discover and verify"),
    validation = Rule::new("!has(self.spec.tokens) || !has(self.spec.tokens.signingKeys) || !has(self.spec.tokens.signingKeys.overlapMinutes) || self.spec.tokens.signingKeys.overlapMinutes >= (has(self.spec.security) && has(self.spec.security.accessTokenExpireMinutes) ? self.spec.security.accessTokenExpireMinutes : 30)").message("spec.tokens.signingKeys.overlapMinutes must be at least spec.security.accessTokenExpireMinutes: a replaced key must keep verifying until every token it signed has expired"),
    doc = "A FaceID tenant: an isolated PostgreSQL schema with its migrations and HNSW index, generated signing and admin secrets, and a scaled Deployment of the face-authentication service configured for it.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Schema", type_ = "string", json_path = ".spec.database.schema"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    scale(
        spec_replicas_path = ".spec.workload.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FaceIdTenantSpec {
    /// Where the tenant's data lives and how its vector index is built.
    pub database: DatabaseSpec,
    /// Face matching settings.
    #[serde(default)]
    pub recognition: RecognitionSpec,
    /// Which logins the tenant accepts, and how large a gallery face-only login serves.
    #[serde(default)]
    pub login: LoginSpec,
    /// Passive liveness (anti-spoofing) settings.
    #[serde(default)]
    pub liveness: LivenessSpec,
    /// Per-IP rate limits.
    #[serde(default)]
    pub rate_limits: RateLimitSpec,
    /// Token lifetimes and lockout policy.
    #[serde(default)]
    pub security: SecuritySpec,
    /// Access-token signatures: the signing keys' rotation, the algorithm, and HS256 for
    /// the original API's clients.
    #[serde(default)]
    pub tokens: TokensSpec,
    /// The tenant as an OpenID Provider: its public address and the apps that sign users
    /// in through it (docs/INTEGRATION.md).
    #[serde(default)]
    pub oidc: OidcSpec,
    /// Redis for rate-limit counters shared by every replica. Unset: each replica limits
    /// on its own (correct for one replica only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
    /// The NetworkPolicy of the tenant's pods.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
    /// Prometheus Operator objects for the tenant (ServiceMonitor, PrometheusRule).
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    /// Proxies in front of the service that append to `X-Forwarded-For`
    /// (`TRUSTED_PROXY_HOPS`): 1 behind one ingress controller. The client address that
    /// rate limits and lockouts count is then the one the outermost trusted proxy saw;
    /// 0 (the default) uses the connection's address and ignores the header, which a
    /// client can write. Too high a value lets clients choose their address.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub trusted_proxy_hops: i32,
    /// Origins allowed by CORS (`*` for any). Empty: no CORS headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub cors_origins: Vec<String>,
    /// The Deployment running the service.
    #[serde(default)]
    pub workload: WorkloadSpec,
}

/// A key of a Secret in the tenant's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[serde(default = "default_url_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_url_key() -> String {
    "url".to_owned()
}

/// Database settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Secret key holding a PostgreSQL URL whose role may create schemas and roles
    /// (`postgres://user:password@host:5432/db`). The service never sees it: it gets a
    /// role limited to its schema.
    pub connection_secret_ref: SecretKeyRef,
    /// The tenant's schema. Immutable; `public`, `information_schema` and `pg_*` are
    /// reserved. A schema already claimed by another tenant is refused.
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,55}$"), length(min = 1, max = 56))]
    #[x_kube(
        validation = Rule::new("self != 'public' && self != 'information_schema' && !self.startsWith('pg_')").message("schema names public, information_schema and pg_* are reserved"),
        validation = Rule::new("self == oldSelf").message("schema is immutable: create a new tenant to move data")
    )]
    pub schema: String,
    /// HNSW vector index parameters.
    #[serde(default)]
    pub hnsw: HnswSpec,
    /// What happens to the schema and its role when the tenant is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// pgvector HNSW parameters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.efConstruction >= 2 * self.m").message("efConstruction must be at least 2 * m")
)]
pub struct HnswSpec {
    /// Links per node (pgvector `m`, 2..100). Changing it rebuilds the index concurrently.
    #[serde(default = "default_m")]
    #[schemars(range(min = 2, max = 100))]
    pub m: i32,
    /// Candidate list size while building (pgvector `ef_construction`, 4..1000, at
    /// least 2 * m). Changing it rebuilds the index concurrently.
    #[serde(default = "default_ef_construction")]
    #[schemars(range(min = 4, max = 1000))]
    pub ef_construction: i32,
    /// Candidate list size while searching (`hnsw.ef_search`, 1..1000).
    #[serde(default = "default_ef_search")]
    #[schemars(range(min = 1, max = 1000))]
    pub ef_search: i32,
}

fn default_m() -> i32 {
    16
}
fn default_ef_construction() -> i32 {
    64
}
fn default_ef_search() -> i32 {
    100
}

impl Default for HnswSpec {
    fn default() -> Self {
        Self {
            m: default_m(),
            ef_construction: default_ef_construction(),
            ef_search: default_ef_search(),
        }
    }
}

/// What deleting the tenant does to its database objects.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum DeletionPolicy {
    /// Keep the schema, its data, its role and the credentials Secret (released from
    /// the tenant and annotated `faceid.dev/retained-for`): a tenant of the same name
    /// and namespace adopts them again, with every credential.
    #[default]
    Retain,
    /// Drop the schema with all its data, and its role.
    Delete,
}

/// Face matching settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RecognitionSpec {
    /// Largest embedding distance accepted as the same person, a decimal in [0, 1]
    /// (lower is stricter).
    #[serde(default = "default_tolerance")]
    #[schemars(regex(pattern = r"^(0(\.[0-9]{1,3})?|1(\.0{1,3})?)$"))]
    pub tolerance: String,
    /// Face detector (`FACE_DETECTION_MODEL`): the tiny face detector at an input size of
    /// `tiny-224`, `tiny-320`, `tiny-416`, `tiny-512` or `tiny-608` (larger finds smaller
    /// faces and costs more); the original's `hog` and `cnn` mean `tiny-416` and
    /// `tiny-608`. Unset: the service's default (`tiny-416`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(tiny-(224|320|416|512|608)|hog|cnn)$"))]
    pub detection_model: Option<String>,
    /// Scale photos smaller than the detector input up to it before detection
    /// (`FACE_DETECTION_UPSCALE`): finds small second faces in small photos, at up to
    /// 2.6x the detector's work for them. Unset: the service's default (off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_upscale: Option<bool>,
    /// Recognition network precision (`FACE_RECOGNITION_PRECISION`): `int8` (2.9x faster
    /// embedding on CPUs with VNNI; embeddings 0.036 from the float32 ones at the median),
    /// `float32` (the original computation) or `auto` (int8 on x86-64 nodes with AVX-512
    /// VNNI or AVX-VNNI, float32 elsewhere). Templates stay comparable across the two;
    /// each is stored with its model version. Unset: the service's default (`auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(auto|int8|float32)$"))]
    pub precision: Option<String>,
    /// Let one face register several accounts (`ALLOW_DUPLICATE_FACES`). Unset or false: a
    /// registration whose face is within the tolerance of an enrolled template is refused
    /// `duplicate_face` and recorded as a fraud signal, since two accounts answering to one
    /// face would make face-only login pick either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_duplicate_faces: Option<bool>,
}

/// Which traffic reaches the tenant's pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create a NetworkPolicy that admits only the service's HTTP port (8000) to the
    /// pods; every other inbound connection is dropped (where the cluster's network
    /// plugin enforces NetworkPolicies).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who may reach the HTTP port (NetworkPolicy peers, e.g. the ingress controller's
    /// namespace). Empty: any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ingress_from: Vec<NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            ingress_from: Vec::new(),
        }
    }
}

/// What the tenant gives a Prometheus Operator (`monitoring.coreos.com/v1`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Create a ServiceMonitor scraping the pods' `/metrics` and a PrometheusRule with the
    /// tenant's alerts (not Ready, error rate, login latency, lockout spikes, liveness
    /// rejections). Needs the Prometheus Operator's CRDs in the cluster; without them
    /// the `Monitoring` condition says so (it never blocks `Ready`).
    #[serde(default)]
    pub enabled: bool,
    /// Labels added to both objects, e.g. the `release` label a Prometheus selects
    /// ServiceMonitors and rules by (at most 16; keys are qualified names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    #[x_kube(
        validation = Rule::new("self.all(k, k.matches('^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?([.][A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && k.matches('^[^/]{1,253}(/|$)'))").message("monitoring.labels keys must be qualified names")
    )]
    pub labels: BTreeMap<String, String>,
}

/// Login rules (docs/OPERATOR.md, "Sizing face-only login").
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoginSpec {
    /// `LOGIN_MODE`: `both` (face-only 1:N login while the gallery is within the safe
    /// size, face + username 1:1 always), `username` (1:1 only) or `face` (1:N only, a
    /// username is refused). Unset: the service's default (`both`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(both|username|face)$"))]
    pub mode: Option<String>,
    /// `FACE_ONLY_MAX_USERS`: most active users for which face-only login stays open.
    /// Unset: the size measured safe for the tolerance (1 at 0.6, 8 at 0.55, 65 at 0.5,
    /// 447 at 0.45); past it face-only logins are answered `username_required`. A larger
    /// value takes on the risk that `acceptFaceOnlyRisk` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub face_only_max_users: Option<i64>,
    /// `FACE_ONLY_ACCEPT_RISK`: keep face-only login open however many users are enrolled.
    /// **Risk**: strangers are then logged in as somebody more often than 1 in 100 (at
    /// tolerance 0.6 with 250 people, 30% of strangers on the LFW set; see
    /// docs/FACE_ENGINE.md, "1:N identification").
    #[serde(default)]
    pub accept_face_only_risk: bool,
}

/// The login modes the service accepts in `LOGIN_MODE`.
pub const LOGIN_MODES: &[&str] = &["both", "username", "face"];

/// The recognition precisions the service accepts in `FACE_RECOGNITION_PRECISION`.
pub const RECOGNITION_PRECISIONS: &[&str] = &["auto", "int8", "float32"];

/// The detector names the service accepts in `FACE_DETECTION_MODEL`.
pub const DETECTION_MODELS: &[&str] = &[
    "tiny-224", "tiny-320", "tiny-416", "tiny-512", "tiny-608", "hog", "cnn",
];

fn default_tolerance() -> String {
    "0.6".to_owned()
}

impl Default for RecognitionSpec {
    fn default() -> Self {
        Self {
            tolerance: default_tolerance(),
            detection_model: None,
            detection_upscale: None,
            precision: None,
            allow_duplicate_faces: None,
        }
    }
}

/// Passive liveness settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LivenessSpec {
    /// Check liveness on registration and login.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Lowest liveness score accepted, a decimal in [0, 1].
    #[serde(default = "default_liveness_threshold")]
    #[schemars(regex(pattern = r"^(0(\.[0-9]{1,3})?|1(\.0{1,3})?)$"))]
    pub threshold: String,
}

fn default_true() -> bool {
    true
}
fn default_liveness_threshold() -> String {
    "0.7".to_owned()
}

impl Default for LivenessSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: default_liveness_threshold(),
        }
    }
}

/// Per-IP rate limits, each `COUNT/UNIT` with unit second, minute, hour or day.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Apply rate limits.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Registrations per client IP.
    #[serde(default = "default_rate_register")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,5}/(second|minute|hour|day)$"))]
    pub register: String,
    /// Logins per client IP.
    #[serde(default = "default_rate_login")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,5}/(second|minute|hour|day)$"))]
    pub login: String,
    /// Requests per client IP to every other rate-limited endpoint.
    #[serde(default = "default_rate_default")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,5}/(second|minute|hour|day)$"))]
    pub default: String,
}

fn default_rate_register() -> String {
    "5/hour".to_owned()
}
fn default_rate_login() -> String {
    "10/minute".to_owned()
}
fn default_rate_default() -> String {
    "100/hour".to_owned()
}

impl Default for RateLimitSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            register: default_rate_register(),
            login: default_rate_login(),
            default: default_rate_default(),
        }
    }
}

/// Token lifetimes and lockout policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySpec {
    /// Access token lifetime in minutes (1..1440).
    #[serde(default = "default_access_minutes")]
    #[schemars(range(min = 1, max = 1440))]
    pub access_token_expire_minutes: i32,
    /// Refresh token lifetime in days (1..365).
    #[serde(default = "default_refresh_days")]
    #[schemars(range(min = 1, max = 365))]
    pub refresh_token_expire_days: i32,
    /// Failed logins from one client (IPv4 address or IPv6 /64) against one account within
    /// an hour that lock that client, not the owner, out of the account (1..1000); from the
    /// fourth the client also waits 1, 2, 4... seconds between attempts.
    #[serde(default = "default_max_failed")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_failed_login_attempts: i32,
    /// Failed logins from all clients together against one account within an hour that
    /// lock the account for everyone (1..100000; NIST SP 800-63B allows at most 100).
    #[serde(default = "default_account_lock_failures")]
    #[schemars(range(min = 1, max = 100_000))]
    pub account_lock_failures: i32,
    /// How long a lock (of a client out of an account, or of the account) lasts, in
    /// minutes (1..525600).
    #[serde(default = "default_lockout_minutes")]
    #[schemars(range(min = 1, max = 525_600))]
    pub lockout_minutes: i32,
    /// Failed attempts older than this many days are deleted (1..3650).
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub failed_attempt_retention_days: i32,
}

fn default_access_minutes() -> i32 {
    30
}
fn default_refresh_days() -> i32 {
    7
}
fn default_max_failed() -> i32 {
    10
}
fn default_account_lock_failures() -> i32 {
    100
}
fn default_lockout_minutes() -> i32 {
    30
}
fn default_retention_days() -> i32 {
    30
}

impl Default for SecuritySpec {
    fn default() -> Self {
        Self {
            access_token_expire_minutes: default_access_minutes(),
            refresh_token_expire_days: default_refresh_days(),
            max_failed_login_attempts: default_max_failed(),
            account_lock_failures: default_account_lock_failures(),
            lockout_minutes: default_lockout_minutes(),
            failed_attempt_retention_days: default_retention_days(),
        }
    }
}

/// How access tokens are signed (README, "Tokens").
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.accessTokenAlgorithm) || self.accessTokenAlgorithm != 'HS256' || (has(self.legacyHs256) && self.legacyHs256)").message("accessTokenAlgorithm HS256 needs legacyHs256: true")
)]
pub struct TokensSpec {
    /// Also accept HS256 access tokens signed with the tenant's SECRET_KEY, as the
    /// original API issued them (`LEGACY_HS256_TOKENS`), for existing clients that verify
    /// tokens with that shared secret. Unset: on for a tenant whose credentials were made
    /// before signing keys existed (so an operator upgrade changes nothing for its
    /// clients; recorded on its credentials Secret), off for every new tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_hs256: Option<bool>,
    /// What access tokens are signed with (`ACCESS_TOKEN_ALGORITHM`): `EdDSA`, `ES256`
    /// (for clients without EdDSA) or `HS256` (only with `legacyHs256: true`). Unset: HS256
    /// while HS256 is on, EdDSA otherwise. EdDSA with `legacyHs256: true` is the way off
    /// HS256: new tokens are asymmetric while the HS256 ones issued before still verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(EdDSA|ES256|HS256)$"))]
    pub access_token_algorithm: Option<String>,
    /// Rotation of the signing keys the operator generates and stores in the tenant's
    /// credentials Secret (`SIGNING_KEYS`).
    #[serde(default)]
    pub signing_keys: SigningKeysSpec,
}

/// OpenID Connect: the issuer and the registered clients (`ISSUER_URL`, `OIDC_CLIENTS`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OidcSpec {
    /// The tenant's public HTTPS address as apps reach it (the issuer of its ID tokens,
    /// e.g. `https://login.acme.example`; plain http only on localhost). Required when
    /// `clients` is not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(
        validation = Rule::new("self.matches('^https://[^/?#@]+(/[^?#]*)?$') || self.matches('^http://(localhost|127[.]0[.]0[.]1|[[]::1[]])(:[0-9]+)?(/[^?#]*)?$')").message("spec.oidc.issuerUrl must be an https URL without query or fragment (plain http only on localhost)")
    )]
    pub issuer_url: Option<String>,
    /// The apps that sign users in (at most 64; a map list keyed by `clientId`, which is
    /// therefore unique).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["clientId".into()]))]
    pub clients: Vec<OidcClientSpec>,
    /// Offer username + password on the login page beside the face
    /// (`OIDC_PASSWORD_LOGIN`; the ID token then says `amr: ["pwd"]`). Off: face only.
    #[serde(default)]
    pub password_login: bool,
}

/// One app signing users in through the tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.secretNamespace) || self.type == 'confidential'").message("secretNamespace is only for confidential clients: a public client has no secret")
)]
pub struct OidcClientSpec {
    /// `client_id` (1-64 of A-Z, a-z, 0-9, `.`, `_`, `-`).
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub client_id: String,
    /// `confidential` (a server-side app: the operator generates its secret into the
    /// Secret `faceid-oidc-<tenant>-<clientId>`, in `secretNamespace`) or `public` (a
    /// browser or native app: PKCE, no secret).
    #[serde(rename = "type", default = "default_client_type")]
    #[schemars(regex(pattern = r"^(confidential|public)$"))]
    pub client_type: String,
    /// The namespace the app runs in, where its Secret is written for it to mount
    /// (confidential clients; unset: the tenant's namespace). Another namespace must
    /// accept it: its annotation `faceid.dev/accept-oidc-client-secrets-from` lists the
    /// tenant's namespace (comma-separated), so a tenant cannot write into namespaces
    /// that did not ask for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub secret_namespace: Option<String>,
    /// Where the code may be sent, matched exactly: `https://...`, `http://` on a loopback
    /// host (development), or a private-use scheme with a dot (`com.example.app:/cb`,
    /// native apps); no fragment, no user information.
    #[schemars(
        length(min = 1, max = 32),
        inner(
            length(max = 2048),
            regex(
                pattern = r"^(https://[^/?#@]+([/?][^#]*)?|http://(localhost|127[.]0[.]0[.]1|\[::1\])(:[0-9]+)?([/?][^#]*)?|[a-z][a-z0-9+-]*[.][a-z0-9.+-]+:[^#]+)$"
            )
        )
    )]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may return to, matched exactly (same rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(
            length(max = 2048),
            regex(
                pattern = r"^(https://[^/?#@]+([/?][^#]*)?|http://(localhost|127[.]0[.]0[.]1|\[::1\])(:[0-9]+)?([/?][^#]*)?|[a-z][a-z0-9+-]*[.][a-z0-9.+-]+:[^#]+)$"
            )
        )
    )]
    pub post_logout_redirect_uris: Vec<String>,
    /// What its ID tokens are signed with: `EdDSA` (default) or `ES256` (for client
    /// libraries without EdDSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(EdDSA|ES256)$"))]
    pub id_token_signed_response_alg: Option<String>,
}

fn default_client_type() -> String {
    "confidential".to_owned()
}

impl OidcClientSpec {
    /// Whether the operator generates a secret for it.
    pub fn is_confidential(&self) -> bool {
        self.client_type != "public"
    }
}

/// The access-token algorithms the service accepts in `ACCESS_TOKEN_ALGORITHM`.
pub const ACCESS_TOKEN_ALGORITHMS: &[&str] = &["EdDSA", "ES256", "HS256"];

/// Rotation of the tenant's signing keys (one EdDSA and one ES256 key signing at a time).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeysSpec {
    /// Age in days at which a signing key is replaced (1..3650). The successor is
    /// published an hour before it signs.
    #[serde(default = "default_rotation_period_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub rotation_period_days: i32,
    /// Minutes a replaced key keeps verifying (and stays in the JWKS) after its
    /// successor starts signing (1..525600); at least
    /// `spec.security.accessTokenExpireMinutes`, so every token it signed has expired
    /// before it leaves.
    #[serde(default = "default_overlap_minutes")]
    #[schemars(range(min = 1, max = 525_600))]
    pub overlap_minutes: i32,
}

fn default_rotation_period_days() -> i32 {
    90
}
fn default_overlap_minutes() -> i32 {
    1440
}

impl Default for SigningKeysSpec {
    fn default() -> Self {
        Self {
            rotation_period_days: default_rotation_period_days(),
            overlap_minutes: default_overlap_minutes(),
        }
    }
}

/// Redis used for rate-limit counters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Secret key holding the Redis URL (`redis://host:6379/0`).
    pub secret_ref: SecretKeyRef,
}

/// The Deployment running the service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Container image of the service. Unset: the operator's `--default-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Replicas when `autoscaling` is unset (0..100). Also the `scale` subresource.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// Horizontal autoscaling on CPU; when set, `replicas` is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// CPU and memory requests and limits of the service container. Each quantity must
    /// be a non-negative Kubernetes quantity (`500m`, `2`, `1Gi`), at most 16 per map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// Annotations added to the service's pods (at most 64; keys are qualified names,
    /// `[prefix/]name`, as Kubernetes requires of annotation keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(
        validation = Rule::new("self.all(k, k.matches('^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?([.][A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && k.matches('^[^/]{1,253}(/|$)'))").message("podAnnotations keys must be qualified names: an optional DNS subdomain prefix of at most 253 characters and '/', then a name of at most 63 characters from A-Z, a-z, 0-9, '-', '_' and '.', starting and ending alphanumeric")
    )]
    pub pod_annotations: BTreeMap<String, String>,
    /// Directory of the ONNX models inside the image (`MODELS_DIR`). Unset: the
    /// image's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[^\x00]{0,254}$"))]
    pub models_dir: Option<String>,
    /// Secrets for pulling the image from a private registry (the pods'
    /// `imagePullSecrets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Node labels the pods must run on (the pods' `nodeSelector`), e.g. nodes with
    /// AVX-512 VNNI for the int8 network.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate (the pods' `tolerations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
    /// How the pods spread over zones or nodes (the pods' `topologySpreadConstraints`).
    /// Empty: spread across nodes where possible (`kubernetes.io/hostname`, max skew 1,
    /// `ScheduleAnyway`), so one node's loss takes at most its share of the replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
}

fn default_replicas() -> i32 {
    2
}

/// The CEL rule on one resource quantity (`x-kubernetes-int-or-string`, so `self` is an
/// integer or a string; `string(self)` covers both): it parses as a Kubernetes quantity
/// and has no minus sign. `isQuantity` is Kubernetes' CEL quantity library (CRD
/// validation from 1.29; the chart requires 1.30), which kube's client-side evaluator
/// also has (`tests/crd_drift.rs`); `type(self)`, which it has not, is avoided.
pub const QUANTITY_RULE: &str = "isQuantity(string(self)) && !string(self).startsWith('-')";

/// The schema of `spec.workload.resources`: Kubernetes' `ResourceRequirements`, with
/// every quantity of `requests` and `limits` bounded (at most 16 entries of at most
/// [`MAX_QUANTITY_LEN`] characters, which keeps the rule's cost estimate within the API
/// server's budget) and checked by [`QUANTITY_RULE`], so that a quantity the API server
/// would refuse in the Deployment is refused on the tenant already.
fn resources_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Option<ResourceRequirements>>();
    let rule = serde_json::json!([{
        "rule": QUANTITY_RULE,
        "message": "must be a non-negative resource quantity, e.g. 500m, 2 or 1Gi",
    }]);
    if let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        for map in ["requests", "limits"] {
            let Some(map) = properties
                .get_mut(map)
                .and_then(serde_json::Value::as_object_mut)
            else {
                continue;
            };
            map.insert("maxProperties".to_owned(), 16.into());
            if let Some(value) = map
                .get_mut("additionalProperties")
                .and_then(serde_json::Value::as_object_mut)
            {
                value.insert("maxLength".to_owned(), MAX_QUANTITY_LEN.into());
                value.insert("x-kubernetes-validations".to_owned(), rule.clone());
            }
        }
    }
    schema
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            image: None,
            replicas: default_replicas(),
            autoscaling: None,
            resources: None,
            pod_annotations: BTreeMap::new(),
            models_dir: None,
            image_pull_secrets: Vec::new(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            topology_spread_constraints: Vec::new(),
        }
    }
}

/// CPU-based horizontal autoscaling.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas")
)]
pub struct AutoscalingSpec {
    /// Fewest replicas (1..100).
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,
    /// Most replicas (1..100).
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Average CPU utilisation to aim for, in percent of the request (1..100).
    #[serde(
        default = "default_cpu_target",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_min_replicas() -> i32 {
    2
}
fn default_cpu_target() -> i32 {
    70
}

/// What the operator observed and did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FaceIdTenantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `SecretsReady`, `DatabaseReady`, `WorkloadReady` and `FaceOnlyLogin`: a
    /// map list keyed by `type` (one condition per type; server-side apply merges by it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The provisioned schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The PostgreSQL role the service connects as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_role: Option<String>,
    /// HNSW parameters of the index as built in the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexStatus>,
    /// In-cluster URL of the tenant's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Pods of the Deployment.
    #[serde(default)]
    pub replicas: i32,
    /// Pods passing their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pods (for the `scale` subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The operator-owned Secret with the generated credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The face-only login gallery as last counted (also the `FaceOnlyLogin` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginStatus>,
    /// The token signing keys in the credentials Secret (public facts only): which signs,
    /// which is published ahead, which verifies until when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<SigningKeyStatus>,
    /// The Secrets of the confidential OpenID clients (`issuer`, `client_id`,
    /// `client_secret`), for apps to mount: a name in the tenant's namespace, or
    /// `namespace/name` in another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oidc_client_secrets: Vec<String>,
    /// Whether the service accepts HS256 access tokens (`spec.tokens.legacyHs256`, or
    /// the default for the tenant's age).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_hs256: Option<bool>,
}

/// One token signing key as the status shows it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyStatus {
    /// Key id (the tokens' `kid` header, the JWKS entry).
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// `signing`, `next` (published, signing from `signsFrom`) or `retiring` (replaced,
    /// verifying until `expires`).
    pub state: String,
    /// When the key starts (started) signing, RFC 3339.
    pub signs_from: String,
    /// When the key stops verifying and leaves the JWKS, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// The face-only login gallery, counted by the operator at each database step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LoginStatus {
    /// Active users: the gallery a face-only login searches.
    pub active_users: i64,
    /// Most active users for which face-only login is open (`spec.login.faceOnlyMaxUsers`
    /// or the size measured safe for the tolerance).
    pub face_only_max_users: i64,
    /// Whether face-only login is open now.
    pub face_only_open: bool,
}

/// HNSW parameters read back from the database.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IndexStatus {
    /// Applied `m`.
    pub m: i32,
    /// Applied `ef_construction`.
    pub ef_construction: i32,
}

/// The CRD as YAML, exactly as committed in `crds/faceidtenant.yaml`.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    // One line per string, as kubectl prints them: folded scalars would split CEL rules.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    let body = serde_saphyr::to_string_with_options(&FaceIdTenant::crd(), options)?;
    Ok(format!(
        "# Generated by `cargo run -p faceid-operator -- crd`: do not edit by hand.\n---\n{body}"
    ))
}

/// One problem found by [`validate`], naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON path of the field, e.g. `spec.database.hnsw.efConstruction`.
    pub field: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Whether `s` is a decimal in `[0, 1]` with at most three decimals.
pub fn is_unit_decimal(s: &str) -> bool {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac_ok = frac.len() <= 3 && frac.bytes().all(|b| b.is_ascii_digit());
    let dot_ok = !s.ends_with('.');
    match int {
        "0" => frac_ok && dot_ok,
        "1" => frac_ok && dot_ok && frac.bytes().all(|b| b == b'0'),
        _ => false,
    }
}

/// Whether `s` is a rate limit `COUNT/UNIT` as the service accepts it.
pub fn is_rate(s: &str) -> bool {
    let Some((count, unit)) = s.split_once('/') else {
        return false;
    };
    let count_ok = (1..=6).contains(&count.len())
        && count.bytes().all(|b| b.is_ascii_digit())
        && !count.starts_with('0');
    count_ok && matches!(unit, "second" | "minute" | "hour" | "day")
}

/// Whether `name` is a DNS-1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`) of at most
/// [`MAX_NAME_LEN`] characters: what a tenant's name must be.
pub fn is_tenant_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Whether `name` is a DNS-1123 label (a namespace name): 1-63 of a-z, 0-9 and `-`,
/// starting and ending alphanumeric.
pub fn is_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && alnum(&b[0])
        && alnum(&b[b.len() - 1])
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// Whether `key` is a qualified name as Kubernetes requires of annotation keys: an
/// optional DNS-1123 subdomain prefix (at most 253 characters; Kubernetes lower-cases
/// annotation keys before checking) and `/`, then a name of 1-63 characters from
/// alphanumerics, `-`, `_` and `.` that starts and ends alphanumeric.
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    let name_ok = {
        let b = name.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && alnum(b[0])
            && alnum(b[b.len() - 1])
            && b.iter()
                .all(|c| alnum(*c) || matches!(c, b'-' | b'_' | b'.'))
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && alnum(b[0])
                    && alnum(b[b.len() - 1])
                    && b.iter().all(|c| alnum(*c) || *c == b'-')
            })
    });
    name_ok && prefix_ok
}

/// Whether `s` parses as a Kubernetes resource quantity (`<signedNumber><suffix>`:
/// `500m`, `1.5Gi`, `2`, `1e3`), the grammar of `k8s.io/apimachinery`'s `ParseQuantity`
/// and of CEL's `isQuantity`.
pub fn is_quantity(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        _ => suffix
            .strip_prefix(['e', 'E'])
            .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
            .is_some_and(|exp| !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit())),
    }
}

/// Whether `schema` is reserved by PostgreSQL or shared by every tenant.
pub fn is_reserved_schema(schema: &str) -> bool {
    schema == "public" || schema == "information_schema" || schema.starts_with("pg_")
}

fn in_range(
    out: &mut Vec<Invalid>,
    field: &'static str,
    value: i32,
    range: std::ops::RangeInclusive<i32>,
) {
    if !range.contains(&value) {
        out.push(Invalid {
            field,
            message: format!(
                "{value} is out of range: use {}..{}",
                range.start(),
                range.end()
            ),
        });
    }
}

/// [`validate`] plus the rule on `metadata.name` (a DNS-1035 label of at most
/// [`MAX_NAME_LEN`] characters): everything the reconciler checks before touching
/// anything.
pub fn validate_tenant(tenant: &FaceIdTenant) -> Vec<Invalid> {
    let name = tenant.metadata.name.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    if !is_tenant_name(name) {
        out.push(Invalid {
            field: "metadata.name",
            message: format!(
                "{name:?} must be a DNS-1035 label of at most {MAX_NAME_LEN} characters (a-z, 0-9 and '-', starting with a letter, not ending with '-'): it names the tenant's Service and its children (<name>-credentials at most 63) and is a label value; create the tenant again under such a name"
            ),
        });
    }
    out.extend(validate(&tenant.spec));
    out
}

/// Checks every rule of the schema and its CEL rules on the spec, except immutability
/// (which needs the previous object); [`validate_tenant`] adds the rule on the name.
/// Pure: the reconciler calls it before touching anything.
pub fn validate(spec: &FaceIdTenantSpec) -> Vec<Invalid> {
    let mut out = Vec::new();
    validate_database(&spec.database, &mut out);
    validate_recognition(spec, &mut out);
    validate_rate_limits(&spec.rate_limits, &mut out);
    validate_security_and_tokens(&spec.security, &spec.tokens, &mut out);
    validate_connections(spec, &mut out);
    validate_workload(&spec.workload, &mut out);
    validate_monitoring(&spec.monitoring, &mut out);
    validate_oidc(&spec.oidc, &mut out);
    out
}

/// `spec.database`: the connection Secret, the schema name and the HNSW parameters.
fn validate_database(db: &DatabaseSpec, out: &mut Vec<Invalid>) {
    if db.connection_secret_ref.name.is_empty() {
        out.push(Invalid {
            field: "spec.database.connectionSecretRef.name",
            message: "name the Secret holding the database URL".to_owned(),
        });
    }
    if faceid_migrations::validate_schema_name(&db.schema).is_err() || db.schema.len() > 56 {
        out.push(Invalid {
            field: "spec.database.schema",
            message: format!(
                "{:?} is not a valid schema name: use 1-56 characters from a-z, 0-9 and _, starting with a letter or _",
                db.schema
            ),
        });
    } else if is_reserved_schema(&db.schema) {
        out.push(Invalid {
            field: "spec.database.schema",
            message: format!(
                "{:?} is reserved (public, information_schema, pg_*): choose a schema of the tenant's own",
                db.schema
            ),
        });
    }
    let h = &db.hnsw;
    in_range(out, "spec.database.hnsw.m", h.m, 2..=100);
    in_range(
        out,
        "spec.database.hnsw.efConstruction",
        h.ef_construction,
        4..=1000,
    );
    in_range(out, "spec.database.hnsw.efSearch", h.ef_search, 1..=1000);
    if i64::from(h.ef_construction) < 2 * i64::from(h.m) {
        out.push(Invalid {
            field: "spec.database.hnsw.efConstruction",
            message: format!(
                "must be at least 2 * m = {} (got {})",
                2 * i64::from(h.m),
                h.ef_construction
            ),
        });
    }
}

/// `spec.recognition`, `spec.login`, `spec.trustedProxyHops` and `spec.liveness`.
fn validate_recognition(spec: &FaceIdTenantSpec, out: &mut Vec<Invalid>) {
    if !is_unit_decimal(&spec.recognition.tolerance) {
        out.push(Invalid {
            field: "spec.recognition.tolerance",
            message: format!(
                "{:?} is not a decimal in [0, 1] with at most 3 decimals",
                spec.recognition.tolerance
            ),
        });
    }
    let named = [
        (
            "spec.recognition.detectionModel",
            &spec.recognition.detection_model,
            DETECTION_MODELS,
            "detector",
        ),
        (
            "spec.recognition.precision",
            &spec.recognition.precision,
            RECOGNITION_PRECISIONS,
            "recognition precision",
        ),
        (
            "spec.login.mode",
            &spec.login.mode,
            LOGIN_MODES,
            "login mode",
        ),
    ];
    for (field, value, known, what) in named {
        if let Some(v) = value
            && !known.contains(&v.as_str())
        {
            out.push(Invalid {
                field,
                message: format!(
                    "{v:?} is not a {what} the service knows: one of {}",
                    known.join(", ")
                ),
            });
        }
    }
    in_range(
        out,
        "spec.trustedProxyHops",
        spec.trusted_proxy_hops,
        0..=10,
    );
    if spec.login.face_only_max_users.is_some_and(|n| n < 0) {
        out.push(Invalid {
            field: "spec.login.faceOnlyMaxUsers",
            message: "must be 0 or more".to_owned(),
        });
    }
    if !is_unit_decimal(&spec.liveness.threshold) {
        out.push(Invalid {
            field: "spec.liveness.threshold",
            message: format!(
                "{:?} is not a decimal in [0, 1] with at most 3 decimals",
                spec.liveness.threshold
            ),
        });
    }
}

/// `spec.rateLimits`.
fn validate_rate_limits(limits: &RateLimitSpec, out: &mut Vec<Invalid>) {
    for (field, value) in [
        ("spec.rateLimits.register", &limits.register),
        ("spec.rateLimits.login", &limits.login),
        ("spec.rateLimits.default", &limits.default),
    ] {
        if !is_rate(value) {
            out.push(Invalid {
                field,
                message: format!(
                    "{value:?} is not COUNT/UNIT (unit second, minute, hour or day), e.g. 10/minute"
                ),
            });
        }
    }
}

/// `spec.security` and `spec.tokens` (the key overlap must outlast an access token).
fn validate_security_and_tokens(s: &SecuritySpec, t: &TokensSpec, out: &mut Vec<Invalid>) {
    in_range(
        out,
        "spec.security.accessTokenExpireMinutes",
        s.access_token_expire_minutes,
        1..=1440,
    );
    in_range(
        out,
        "spec.security.refreshTokenExpireDays",
        s.refresh_token_expire_days,
        1..=365,
    );
    in_range(
        out,
        "spec.security.maxFailedLoginAttempts",
        s.max_failed_login_attempts,
        1..=1000,
    );
    in_range(
        out,
        "spec.security.accountLockFailures",
        s.account_lock_failures,
        1..=100_000,
    );
    in_range(
        out,
        "spec.security.lockoutMinutes",
        s.lockout_minutes,
        1..=525_600,
    );
    in_range(
        out,
        "spec.security.failedAttemptRetentionDays",
        s.failed_attempt_retention_days,
        1..=3650,
    );
    in_range(
        out,
        "spec.tokens.signingKeys.rotationPeriodDays",
        t.signing_keys.rotation_period_days,
        1..=3650,
    );
    in_range(
        out,
        "spec.tokens.signingKeys.overlapMinutes",
        t.signing_keys.overlap_minutes,
        1..=525_600,
    );
    if t.signing_keys.overlap_minutes < s.access_token_expire_minutes {
        out.push(Invalid {
            field: "spec.tokens.signingKeys.overlapMinutes",
            message: format!(
                "{} is shorter than spec.security.accessTokenExpireMinutes ({}): a replaced key must keep verifying until every token it signed has expired",
                t.signing_keys.overlap_minutes, s.access_token_expire_minutes
            ),
        });
    }
    if let Some(alg) = &t.access_token_algorithm {
        if !ACCESS_TOKEN_ALGORITHMS.contains(&alg.as_str()) {
            out.push(Invalid {
                field: "spec.tokens.accessTokenAlgorithm",
                message: format!(
                    "{alg:?} is not an access-token algorithm the service knows: one of {}",
                    ACCESS_TOKEN_ALGORITHMS.join(", ")
                ),
            });
        } else if alg == "HS256" && t.legacy_hs256 != Some(true) {
            out.push(Invalid {
                field: "spec.tokens.accessTokenAlgorithm",
                message: "HS256 needs legacyHs256: true".to_owned(),
            });
        }
    }
}

/// `spec.redis` and `spec.corsOrigins`.
fn validate_connections(spec: &FaceIdTenantSpec, out: &mut Vec<Invalid>) {
    if let Some(redis) = &spec.redis
        && redis.secret_ref.name.is_empty()
    {
        out.push(Invalid {
            field: "spec.redis.secretRef.name",
            message: "name the Secret holding the Redis URL".to_owned(),
        });
    }
    if spec
        .cors_origins
        .iter()
        .any(|o| o.is_empty() || o.contains(','))
    {
        out.push(Invalid {
            field: "spec.corsOrigins",
            message: "each origin must be non-empty and contain no comma".to_owned(),
        });
    }
}

/// `spec.workload`: replicas, autoscaling, paths, annotations, resources and image.
fn validate_workload(w: &WorkloadSpec, out: &mut Vec<Invalid>) {
    in_range(out, "spec.workload.replicas", w.replicas, 0..=100);
    if let Some(a) = &w.autoscaling {
        in_range(
            out,
            "spec.workload.autoscaling.minReplicas",
            a.min_replicas,
            1..=100,
        );
        in_range(
            out,
            "spec.workload.autoscaling.maxReplicas",
            a.max_replicas,
            1..=100,
        );
        in_range(
            out,
            "spec.workload.autoscaling.targetCPUUtilizationPercentage",
            a.target_cpu_utilization_percentage,
            1..=100,
        );
        if a.min_replicas > a.max_replicas {
            out.push(Invalid {
                field: "spec.workload.autoscaling",
                message: format!(
                    "minReplicas ({}) must not exceed maxReplicas ({})",
                    a.min_replicas, a.max_replicas
                ),
            });
        }
    }
    if let Some(dir) = &w.models_dir
        && (!dir.starts_with('/') || dir.len() > 255)
    {
        out.push(Invalid {
            field: "spec.workload.modelsDir",
            message: format!("{dir:?} must be an absolute path"),
        });
    }
    if w.pod_annotations.len() > MAX_POD_ANNOTATIONS {
        out.push(Invalid {
            field: "spec.workload.podAnnotations",
            message: format!("at most {MAX_POD_ANNOTATIONS} annotations"),
        });
    }
    let bad_keys: Vec<&str> = w
        .pod_annotations
        .keys()
        .map(String::as_str)
        .filter(|k| !is_qualified_name(k))
        .collect();
    if !bad_keys.is_empty() {
        out.push(Invalid {
            field: "spec.workload.podAnnotations",
            message: format!(
                "{bad_keys:?}: a key must be a qualified name, [prefix/]name, with a DNS subdomain prefix of at most 253 characters and a name of 1-63 characters from A-Z, a-z, 0-9, '-', '_' and '.', starting and ending alphanumeric"
            ),
        });
    }
    if let Some(resources) = &w.resources {
        validate_resources(resources, out);
    }
    if w.image.as_deref().is_some_and(str::is_empty) {
        out.push(Invalid {
            field: "spec.workload.image",
            message: "must not be empty (leave it unset for the operator's default)".to_owned(),
        });
    }
}

/// `spec.workload.resources`: at most 16 of each, every quantity non-negative and short.
fn validate_resources(resources: &ResourceRequirements, out: &mut Vec<Invalid>) {
    for (field, map) in [
        ("spec.workload.resources.requests", &resources.requests),
        ("spec.workload.resources.limits", &resources.limits),
    ] {
        let Some(map) = map else { continue };
        if map.len() > 16 {
            out.push(Invalid {
                field,
                message: "at most 16 resources".to_owned(),
            });
        }
        for (name, quantity) in map {
            let q = quantity.0.as_str();
            if !is_quantity(q) || q.starts_with('-') || q.len() > MAX_QUANTITY_LEN {
                out.push(Invalid {
                    field,
                    message: format!(
                        "{name}: {q:?} is not a non-negative resource quantity of at most {MAX_QUANTITY_LEN} characters, e.g. 500m, 2 or 1Gi"
                    ),
                });
            }
        }
    }
}

/// `spec.monitoring`: its labels.
fn validate_monitoring(monitoring: &MonitoringSpec, out: &mut Vec<Invalid>) {
    let bad_labels: Vec<&str> = monitoring
        .labels
        .keys()
        .map(String::as_str)
        .filter(|k| !is_qualified_name(k))
        .collect();
    if !bad_labels.is_empty() || monitoring.labels.len() > 16 {
        out.push(Invalid {
            field: "spec.monitoring.labels",
            message: format!(
                "at most 16 labels whose keys are qualified names ([prefix/]name); refused: {bad_labels:?}"
            ),
        });
    }
}

/// The rules on `spec.oidc` that decide what the operator writes where (the issuer, and
/// the namespace of each client Secret); the redirect URIs' patterns are the API
/// server's to check.
fn validate_oidc(oidc: &OidcSpec, out: &mut Vec<Invalid>) {
    if !oidc.clients.is_empty() && oidc.issuer_url.is_none() {
        out.push(Invalid {
            field: "spec.oidc.issuerUrl",
            message: "is required when spec.oidc.clients is set: it is the issuer apps discover and verify".to_owned(),
        });
    }
    for client in &oidc.clients {
        let Some(ns) = &client.secret_namespace else {
            continue;
        };
        if !client.is_confidential() {
            out.push(Invalid {
                field: "spec.oidc.clients[].secretNamespace",
                message: format!(
                    "client {:?}: secretNamespace is only for confidential clients: a public client has no secret",
                    client.client_id
                ),
            });
        } else if !is_dns_label(ns) {
            out.push(Invalid {
                field: "spec.oidc.clients[].secretNamespace",
                message: format!(
                    "client {:?}: {ns:?} is not a namespace name (1-63 of a-z, 0-9 and '-', starting and ending alphanumeric)",
                    client.client_id
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_in_the_unit_interval() {
        for ok in ["0", "0.6", "0.725", "1", "1.0", "1.000", "0.0"] {
            assert!(is_unit_decimal(ok), "{ok}");
        }
        for bad in [
            "", "0.", "1.5", "2", "0.1234", "-0.1", ".5", "0,5", "1e-1", "01",
        ] {
            assert!(!is_unit_decimal(bad), "{bad}");
        }
    }

    #[test]
    fn rates() {
        for ok in ["5/hour", "10/minute", "1/second", "999999/day"] {
            assert!(is_rate(ok), "{ok}");
        }
        for bad in [
            "",
            "0/hour",
            "05/hour",
            "10/minutes",
            "ten/minute",
            "1000000/day",
            "5",
        ] {
            assert!(!is_rate(bad), "{bad}");
        }
    }

    fn spec() -> FaceIdTenantSpec {
        serde_saphyr::from_str("database: {connectionSecretRef: {name: pg}, schema: acme}").unwrap()
    }

    fn fields(spec: &FaceIdTenantSpec) -> Vec<&'static str> {
        validate(spec).into_iter().map(|i| i.field).collect()
    }

    #[test]
    fn defaults_are_valid_and_match_the_service() {
        let s = spec();
        assert!(validate(&s).is_empty(), "{:?}", validate(&s));
        assert_eq!(
            (
                s.database.hnsw.m,
                s.database.hnsw.ef_construction,
                s.database.hnsw.ef_search
            ),
            (16, 64, 100)
        );
        assert_eq!(s.database.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(s.database.connection_secret_ref.key, "url");
        assert_eq!(s.workload.replicas, 2);
    }

    #[test]
    fn every_rule_names_its_field() {
        type Edit = fn(&mut FaceIdTenantSpec);
        let cases: &[(&str, Edit)] = &[
            ("spec.database.connectionSecretRef.name", |s| {
                s.database.connection_secret_ref.name.clear()
            }),
            ("spec.database.schema", |s| {
                s.database.schema = "public".into()
            }),
            ("spec.database.schema", |s| {
                s.database.schema = "pg_temp".into()
            }),
            ("spec.database.schema", |s| {
                s.database.schema = "information_schema".into()
            }),
            ("spec.database.schema", |s| {
                s.database.schema = "Bad-Name".into()
            }),
            ("spec.database.schema", |s| {
                s.database.schema = "x".repeat(57)
            }),
            ("spec.database.hnsw.m", |s| s.database.hnsw.m = 1),
            ("spec.database.hnsw.m", |s| {
                s.database.hnsw.m = 101;
                s.database.hnsw.ef_construction = 1000
            }),
            ("spec.database.hnsw.efConstruction", |s| {
                s.database.hnsw.ef_construction = 1001
            }),
            ("spec.database.hnsw.efConstruction", |s| {
                s.database.hnsw.m = 40;
                s.database.hnsw.ef_construction = 79
            }),
            ("spec.database.hnsw.efSearch", |s| {
                s.database.hnsw.ef_search = 0
            }),
            ("spec.database.hnsw.efSearch", |s| {
                s.database.hnsw.ef_search = 1001
            }),
            ("spec.recognition.tolerance", |s| {
                s.recognition.tolerance = "1.5".into()
            }),
            ("spec.recognition.detectionModel", |s| {
                s.recognition.detection_model = Some("Bad Model".into())
            }),
            ("spec.recognition.precision", |s| {
                s.recognition.precision = Some("int4".into())
            }),
            ("spec.login.mode", |s| {
                s.login.mode = Some("password".into())
            }),
            ("spec.trustedProxyHops", |s| s.trusted_proxy_hops = 11),
            ("spec.login.faceOnlyMaxUsers", |s| {
                s.login.face_only_max_users = Some(-1)
            }),
            ("spec.liveness.threshold", |s| {
                s.liveness.threshold = "0.7000".into()
            }),
            ("spec.rateLimits.register", |s| {
                s.rate_limits.register = "5/week".into()
            }),
            ("spec.rateLimits.login", |s| {
                s.rate_limits.login = "0/minute".into()
            }),
            ("spec.rateLimits.default", |s| {
                s.rate_limits.default = "lots".into()
            }),
            ("spec.security.accessTokenExpireMinutes", |s| {
                s.security.access_token_expire_minutes = 0
            }),
            ("spec.security.refreshTokenExpireDays", |s| {
                s.security.refresh_token_expire_days = 366
            }),
            ("spec.security.maxFailedLoginAttempts", |s| {
                s.security.max_failed_login_attempts = 0
            }),
            ("spec.security.accountLockFailures", |s| {
                s.security.account_lock_failures = 0
            }),
            ("spec.security.lockoutMinutes", |s| {
                s.security.lockout_minutes = 525_601
            }),
            ("spec.security.failedAttemptRetentionDays", |s| {
                s.security.failed_attempt_retention_days = 0
            }),
            ("spec.tokens.signingKeys.rotationPeriodDays", |s| {
                s.tokens.signing_keys.rotation_period_days = 0
            }),
            ("spec.tokens.signingKeys.overlapMinutes", |s| {
                s.tokens.signing_keys.overlap_minutes = 29
            }),
            ("spec.tokens.signingKeys.overlapMinutes", |s| {
                s.security.access_token_expire_minutes = 120;
                s.tokens.signing_keys.overlap_minutes = 119
            }),
            ("spec.tokens.accessTokenAlgorithm", |s| {
                s.tokens.access_token_algorithm = Some("RS256".into())
            }),
            ("spec.tokens.accessTokenAlgorithm", |s| {
                s.tokens.access_token_algorithm = Some("HS256".into())
            }),
            ("spec.redis.secretRef.name", |s| {
                s.redis = Some(RedisSpec {
                    secret_ref: SecretKeyRef {
                        name: String::new(),
                        key: "url".into(),
                    },
                })
            }),
            ("spec.corsOrigins", |s| s.cors_origins = vec!["a,b".into()]),
            ("spec.workload.replicas", |s| s.workload.replicas = -1),
            ("spec.workload.autoscaling", |s| {
                s.workload.autoscaling = Some(AutoscalingSpec {
                    min_replicas: 5,
                    max_replicas: 2,
                    target_cpu_utilization_percentage: 70,
                })
            }),
            (
                "spec.workload.autoscaling.targetCPUUtilizationPercentage",
                |s| {
                    s.workload.autoscaling = Some(AutoscalingSpec {
                        min_replicas: 1,
                        max_replicas: 2,
                        target_cpu_utilization_percentage: 0,
                    })
                },
            ),
            ("spec.workload.modelsDir", |s| {
                s.workload.models_dir = Some("models".into())
            }),
            ("spec.workload.image", |s| {
                s.workload.image = Some(String::new())
            }),
            ("spec.workload.podAnnotations", |s| {
                s.workload.pod_annotations = BTreeMap::from([("bad key".into(), "x".into())])
            }),
            ("spec.workload.resources.requests", |s| {
                s.workload.resources = Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "cpu".into(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity("lots".into()),
                    )])),
                    ..ResourceRequirements::default()
                })
            }),
            ("spec.workload.resources.limits", |s| {
                s.workload.resources = Some(ResourceRequirements {
                    limits: Some(BTreeMap::from([(
                        "memory".into(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity("-1Gi".into()),
                    )])),
                    ..ResourceRequirements::default()
                })
            }),
            ("spec.oidc.issuerUrl", |s| {
                s.oidc.clients = vec![oidc_client()]
            }),
            ("spec.oidc.clients[].secretNamespace", |s| {
                s.oidc.issuer_url = Some("https://login.example".into());
                s.oidc.clients = vec![OidcClientSpec {
                    client_type: "public".into(),
                    secret_namespace: Some("apps".into()),
                    ..oidc_client()
                }]
            }),
            ("spec.oidc.clients[].secretNamespace", |s| {
                s.oidc.issuer_url = Some("https://login.example".into());
                s.oidc.clients = vec![OidcClientSpec {
                    secret_namespace: Some("Apps_1".into()),
                    ..oidc_client()
                }]
            }),
        ];
        for (field, edit) in cases {
            let mut s = spec();
            edit(&mut s);
            assert!(
                fields(&s).contains(field),
                "{field}: got {:?}",
                validate(&s)
            );
        }
        // Boundaries that are allowed.
        let mut s = spec();
        s.database.hnsw.m = 100;
        s.database.hnsw.ef_construction = 200;
        s.recognition.tolerance = "1".into();
        s.liveness.threshold = "0".into();
        s.workload.replicas = 0;
        s.security.access_token_expire_minutes = 1440;
        s.tokens.signing_keys.overlap_minutes = 1440;
        s.tokens.legacy_hs256 = Some(true);
        s.tokens.access_token_algorithm = Some("HS256".into());
        s.oidc.issuer_url = Some("https://login.example".into());
        s.oidc.clients = vec![OidcClientSpec {
            secret_namespace: Some("apps-1".into()),
            ..oidc_client()
        }];
        assert!(validate(&s).is_empty(), "{:?}", validate(&s));
    }

    fn oidc_client() -> OidcClientSpec {
        OidcClientSpec {
            client_id: "shop".into(),
            client_type: "confidential".into(),
            redirect_uris: vec!["https://shop.example/cb".into()],
            post_logout_redirect_uris: Vec::new(),
            id_token_signed_response_alg: None,
            secret_namespace: None,
        }
    }

    #[test]
    fn tenant_names_are_dns_1035_labels_short_enough_for_every_child() {
        assert_eq!(MAX_NAME_LEN, 51);
        assert_eq!(format!("{}-credentials", "x".repeat(51)).len(), 63);
        for ok in ["acme", "a", "team-a1", &"x".repeat(51)] {
            assert!(is_tenant_name(ok), "{ok}");
        }
        for bad in ["", "Acme", "1acme", "acme-", "a.b", "a_b", &"x".repeat(52)] {
            assert!(!is_tenant_name(bad), "{bad}");
        }
        let mut t = FaceIdTenant::new("globex.example", spec());
        let problems = validate_tenant(&t);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "metadata.name");
        assert!(problems[0].message.contains("globex.example"));
        t.metadata.name = Some("globex".into());
        assert!(validate_tenant(&t).is_empty());
    }

    #[test]
    fn annotation_keys_are_qualified_names() {
        for ok in [
            "a",
            "prometheus.io/scrape",
            "example.com/Some_key.1",
            "Plain",
            &format!("{}/x", "a".repeat(253)),
            &"k".repeat(63),
        ] {
            assert!(is_qualified_name(ok), "{ok}");
        }
        for bad in [
            "",
            "bad key",
            "-x",
            "x-",
            "a/b/c",
            "/x",
            "a/",
            "a..b/x",
            &format!("{}/x", "a".repeat(254)),
            &"k".repeat(64),
        ] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
    }

    #[test]
    fn quantities_follow_the_kubernetes_grammar() {
        for ok in [
            "0", "2", "500m", "1.5", "1.5Gi", "768Mi", "1e3", "1E-3", "+1", "-1", ".5", "5.",
            "100n", "1u", "2k", "3Ei",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in [
            "", "lots", "1.2.3", ".", "1Kib", "1 Gi", "1e", "1e1.5", "Gi", "1gi", "--1", "1mm",
        ] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn reserved_schemas() {
        assert!(is_reserved_schema("public"));
        assert!(is_reserved_schema("information_schema"));
        assert!(is_reserved_schema("pg_catalog"));
        assert!(is_reserved_schema("pg_anything"));
        assert!(!is_reserved_schema("tenant_pg"));
    }
}
