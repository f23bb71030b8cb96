//! Kubernetes-style status conditions: types, reasons, and the transition rule
//! (`lastTransitionTime` changes only when `status` does).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types.
pub mod types {
    /// Everything below is true: the tenant's API serves.
    pub const READY: &str = "Ready";
    /// The referenced Secrets were read and the operator's own Secret is in place.
    pub const SECRETS_READY: &str = "SecretsReady";
    /// Schema, role, migrations and index are in place.
    pub const DATABASE_READY: &str = "DatabaseReady";
    /// The Deployment has its ready replicas.
    pub const WORKLOAD_READY: &str = "WorkloadReady";
    /// Face-only (1:N) login is open: informational, it never blocks `Ready`.
    pub const FACE_ONLY_LOGIN: &str = "FaceOnlyLogin";
    /// The tenant's ServiceMonitor and PrometheusRule (informational: never blocks
    /// `Ready`; absent while `spec.monitoring.enabled` is false).
    pub const MONITORING: &str = "Monitoring";
}

/// Condition reasons (CamelCase, stable: alerts and scripts may match on them).
pub mod reasons {
    /// Ready: every component is ready.
    pub const TENANT_READY: &str = "TenantReady";
    /// Ready: the spec breaks a rule; the message names the field.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Ready: reconciliation is paused by annotation.
    pub const PAUSED: &str = "Paused";
    /// Ready: the tenant is being deleted.
    pub const DELETING: &str = "Deleting";
    /// Ready: the database cleanup on deletion keeps failing.
    pub const CLEANUP_FAILED: &str = "CleanupFailed";
    /// SecretsReady: every Secret is in place.
    pub const SECRETS_AVAILABLE: &str = "SecretsAvailable";
    /// SecretsReady: the database connection Secret does not exist.
    pub const DATABASE_SECRET_NOT_FOUND: &str = "DatabaseSecretNotFound";
    /// SecretsReady: the database connection Secret lacks the key.
    pub const DATABASE_SECRET_KEY_MISSING: &str = "DatabaseSecretKeyMissing";
    /// SecretsReady: the Redis Secret does not exist.
    pub const REDIS_SECRET_NOT_FOUND: &str = "RedisSecretNotFound";
    /// SecretsReady: the Redis Secret lacks the key.
    pub const REDIS_SECRET_KEY_MISSING: &str = "RedisSecretKeyMissing";
    /// SecretsReady: a Secret with the credentials' name exists and is not ours.
    pub const SECRET_NOT_OWNED: &str = "SecretNotOwned";
    /// SecretsReady: an OpenID client's `secretNamespace` is missing or does not accept
    /// client Secrets from the tenant's namespace.
    pub const SECRET_NAMESPACE_NOT_ACCEPTED: &str = "SecretNamespaceNotAccepted";
    /// The stored token signing keys do not parse (never overwritten).
    pub const INVALID_SIGNING_KEYS: &str = "InvalidSigningKeys";
    /// DatabaseReady: schema, role, migrations and index are in place.
    pub const SCHEMA_PROVISIONED: &str = "SchemaProvisioned";
    /// DatabaseReady: another tenant claims the schema or role.
    pub const SCHEMA_CLAIMED: &str = "SchemaClaimedByAnotherTenant";
    /// DatabaseReady: the schema or role exists without any claim.
    pub const SCHEMA_NOT_MANAGED: &str = "SchemaNotManaged";
    /// DatabaseReady: the connection URL is malformed.
    pub const INVALID_DATABASE_URL: &str = "InvalidDatabaseUrl";
    /// DatabaseReady: a migration was refused (edited or newer than the operator).
    pub const MIGRATION_FAILED: &str = "MigrationFailed";
    /// DatabaseReady: the database could not be reached or failed (retried).
    pub const DATABASE_UNAVAILABLE: &str = "DatabaseUnavailable";
    /// DatabaseReady True: the HNSW index is being rebuilt in the background with new
    /// parameters; the previous index serves meanwhile.
    pub const INDEX_REBUILDING: &str = "IndexRebuilding";
    /// DatabaseReady True: the background rebuild of the HNSW index failed; the previous
    /// index serves, the rebuild is tried again at the next resync.
    pub const INDEX_REBUILD_FAILED: &str = "IndexRebuildFailed";
    /// DatabaseReady / WorkloadReady: waiting for an earlier step.
    pub const WAITING: &str = "WaitingForDependencies";
    /// WorkloadReady: every desired replica is ready.
    pub const DEPLOYMENT_AVAILABLE: &str = "DeploymentAvailable";
    /// WorkloadReady: replicas are starting or failing their readiness probe.
    pub const DEPLOYMENT_PROGRESSING: &str = "DeploymentProgressing";
    /// The Deployment's rollout exceeded its `progressDeadlineSeconds`
    /// (the Deployment's own `Progressing=False ProgressDeadlineExceeded`).
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// ServiceMonitor and PrometheusRule applied.
    pub const MONITORING_CONFIGURED: &str = "MonitoringConfigured";
    /// The cluster does not serve `monitoring.coreos.com/v1` (no Prometheus Operator).
    pub const PROMETHEUS_OPERATOR_MISSING: &str = "PrometheusOperatorMissing";
    /// WorkloadReady: the API server refused a child object (an invalid quantity, an
    /// annotation key, a name too long...); the message names the object and the field.
    pub const APPLY_REFUSED: &str = "ApplyRefused";
    /// WorkloadReady: the tenant is scaled to zero replicas.
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    /// FaceOnlyLogin True: the gallery is within the safe size for the tolerance.
    pub const WITHIN_SAFE_SIZE: &str = "WithinSafeGallerySize";
    /// FaceOnlyLogin False: past the safe size, face-only logins are asked for the username.
    pub const PAST_SAFE_SIZE: &str = "PastSafeGallerySize";
    /// FaceOnlyLogin True: open past the safe size because the spec accepts the risk.
    pub const RISK_ACCEPTED: &str = "RiskAccepted";
    /// FaceOnlyLogin False: the tenant takes usernames only (`login.mode: username`).
    pub const USERNAME_MODE: &str = "UsernameRequiredByMode";
}

/// Condition status values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `"True"`.
    True,
    /// `"False"`.
    False,
    /// `"Unknown"`.
    Unknown,
}

impl Status {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// Sets condition `type_` in `conditions`. `lastTransitionTime` becomes `now` only when
/// the condition is new or its status changes; reason, message and
/// `observedGeneration` are always updated.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: Status,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let message = message.into();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status.as_str() {
            c.last_transition_time = Time(now);
            c.status = status.as_str().to_owned();
        }
        c.reason = reason.to_owned();
        c.message = message;
        c.observed_generation = generation;
    } else {
        conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.as_str().to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        });
    }
}

/// The condition of type `type_`, if present.
/// Removes condition `type_` (a condition that no longer applies).
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The condition of `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether condition `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Derives `Ready` from the three component conditions: true when all are, otherwise
/// false with the reason and message of the first component that is not.
pub fn set_ready(conditions: &mut Vec<Condition>, generation: Option<i64>, now: Timestamp) {
    let blocking = [
        types::SECRETS_READY,
        types::DATABASE_READY,
        types::WORKLOAD_READY,
    ]
    .iter()
    .find_map(|t| match get(conditions, t) {
        Some(c) if c.status == "True" => None,
        Some(c) => Some((c.reason.clone(), format!("{}: {}", c.type_, c.message))),
        None => Some((reasons::WAITING.to_owned(), format!("{t} not yet known"))),
    });
    match blocking {
        None => set(
            conditions,
            types::READY,
            Status::True,
            reasons::TENANT_READY,
            "the tenant's API is serving",
            generation,
            now,
        ),
        Some((reason, message)) => set(
            conditions,
            types::READY,
            Status::False,
            &reason,
            message,
            generation,
            now,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut c = Vec::new();
        set(
            &mut c,
            "DatabaseReady",
            Status::False,
            "DatabaseUnavailable",
            "down",
            Some(1),
            t(0),
        );
        assert_eq!(c[0].last_transition_time, Time(t(0)));
        // Same status, new reason and message: time stays.
        set(
            &mut c,
            "DatabaseReady",
            Status::False,
            "SchemaNotManaged",
            "other",
            Some(2),
            t(10),
        );
        assert_eq!(c[0].last_transition_time, Time(t(0)));
        assert_eq!(c[0].reason, "SchemaNotManaged");
        assert_eq!(c[0].message, "other");
        assert_eq!(c[0].observed_generation, Some(2));
        // Status flips: time moves.
        set(
            &mut c,
            "DatabaseReady",
            Status::True,
            "SchemaProvisioned",
            "ok",
            Some(2),
            t(20),
        );
        assert_eq!(c[0].last_transition_time, Time(t(20)));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn ready_summarises_the_first_blocking_component() {
        let mut c = Vec::new();
        set_ready(&mut c, Some(1), t(0));
        assert_eq!(get(&c, "Ready").unwrap().status, "False");
        assert_eq!(get(&c, "Ready").unwrap().reason, reasons::WAITING);

        set(
            &mut c,
            types::SECRETS_READY,
            Status::True,
            reasons::SECRETS_AVAILABLE,
            "ok",
            Some(1),
            t(1),
        );
        set(
            &mut c,
            types::DATABASE_READY,
            Status::False,
            reasons::SCHEMA_CLAIMED,
            "schema taken",
            Some(1),
            t(1),
        );
        set(
            &mut c,
            types::WORKLOAD_READY,
            Status::True,
            reasons::DEPLOYMENT_AVAILABLE,
            "ok",
            Some(1),
            t(1),
        );
        set_ready(&mut c, Some(1), t(1));
        let ready = get(&c, "Ready").unwrap();
        assert_eq!(ready.reason, reasons::SCHEMA_CLAIMED);
        assert!(ready.message.contains("schema taken"), "{}", ready.message);
        assert_eq!(ready.last_transition_time, Time(t(0)));

        set(
            &mut c,
            types::DATABASE_READY,
            Status::True,
            reasons::SCHEMA_PROVISIONED,
            "ok",
            Some(1),
            t(2),
        );
        set_ready(&mut c, Some(1), t(2));
        assert!(is_true(&c, "Ready"));
        assert_eq!(get(&c, "Ready").unwrap().last_transition_time, Time(t(2)));
    }
}
