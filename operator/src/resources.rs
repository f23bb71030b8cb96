//! The desired Kubernetes objects of one tenant. Pure: built from the tenant and the
//! values read for it, never failing, unit-tested without any API.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector,
    SecurityContext, Service, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::config::{SERVICE_PORT, TenantSecrets, render_config, render_env};
use crate::crd::FaceIdTenant;

/// Annotation on the pod template holding a hash of the whole environment, so any
/// configuration or credential change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "faceid.dev/config-hash";
/// Label naming the tenant on every child object.
pub const TENANT_LABEL: &str = "faceid.dev/tenant";
/// Value of `app.kubernetes.io/managed-by` on every child object.
pub const MANAGED_BY: &str = "faceid-operator";
/// Keys of the operator-owned credentials Secret.
pub mod keys {
    /// Token signing key.
    pub const SECRET_KEY: &str = "SECRET_KEY";
    /// Admin bearer credential.
    pub const ADMIN_API_KEY: &str = "ADMIN_API_KEY";
    /// Key of the biometric template transform.
    pub const TEMPLATE_KEY: &str = "TEMPLATE_KEY";
    /// Password of the tenant's database role.
    pub const DATABASE_PASSWORD: &str = "DATABASE_PASSWORD";
    /// URL of the tenant's database role.
    pub const DATABASE_URL: &str = "DATABASE_URL";
    /// The token signing keys (`faceid_keys::KeyDocument` JSON), rotated by the operator.
    pub const SIGNING_KEYS: &str = faceid_keys::ENV;
}

/// Annotation on the credentials Secret recording whether HS256 stays on while
/// `spec.tokens.legacyHs256` is unset: `"true"` for a tenant made before signing keys
/// existed (so the upgrade changes nothing for its clients), `"false"` for one made
/// after. Decided once, when the operator first writes the signing keys, and kept even
/// when `SIGNING_KEYS` is deleted to force new keys.
pub const LEGACY_HS256_ANNOTATION: &str = "faceid.dev/legacy-hs256-default";

/// Name of the tenant's Deployment, Service, autoscaler and disruption budget.
pub fn workload_name(tenant: &FaceIdTenant) -> String {
    tenant.name_any()
}
/// Name of the tenant's ConfigMap.
pub fn config_map_name(tenant: &FaceIdTenant) -> String {
    format!("{}-config", tenant.name_any())
}
/// Name of the operator-owned Secret with the generated credentials.
pub fn secret_name(tenant: &FaceIdTenant) -> String {
    format!("{}-credentials", tenant.name_any())
}

/// Labels selecting the tenant's pods.
pub fn selector_labels(tenant: &FaceIdTenant) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "faceid".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), tenant.name_any()),
    ])
}

/// The selector as a string, for the `scale` subresource.
pub fn selector_string(tenant: &FaceIdTenant) -> String {
    selector_labels(tenant)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels on every child object.
pub fn labels(tenant: &FaceIdTenant) -> BTreeMap<String, String> {
    let mut l = selector_labels(tenant);
    l.insert("app.kubernetes.io/component".to_owned(), "api".to_owned());
    l.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        MANAGED_BY.to_owned(),
    );
    l.insert(TENANT_LABEL.to_owned(), tenant.name_any());
    l
}

/// In-cluster URL of the tenant's API.
pub fn endpoint(tenant: &FaceIdTenant) -> String {
    format!(
        "http://{}.{}.svc:80",
        workload_name(tenant),
        tenant.namespace().unwrap_or_else(|| "default".to_owned())
    )
}

/// Whether `owner_refs` make `tenant` the controller of an object.
pub fn is_controlled_by(owner_refs: &[OwnerReference], tenant: &FaceIdTenant) -> bool {
    let uid = tenant.uid();
    owner_refs
        .iter()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == uid.as_ref())
}

/// Everything the builders need besides the tenant.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Image of the service (the spec's or the operator's default).
    pub image: String,
    /// Secret values of the tenant.
    pub secrets: TenantSecrets,
    /// Password of the tenant's database role.
    pub database_password: String,
}

/// The desired child objects of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Generated credentials (operator-owned).
    pub secret: Secret,
    /// Non-secret environment.
    pub config_map: ConfigMap,
    /// The service's pods.
    pub deployment: Deployment,
    /// ClusterIP Service in front of the pods.
    pub service: Service,
    /// Autoscaler, only when `spec.workload.autoscaling` is set.
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    /// Disruption budget (at most one pod down at a time).
    pub disruption_budget: PodDisruptionBudget,
    /// Inbound traffic to the pods: the HTTP port only; `None` when disabled.
    pub network_policy: Option<NetworkPolicy>,
    /// ServiceMonitor and PrometheusRule, only when `spec.monitoring.enabled`.
    pub monitoring: Option<crate::monitoring::Monitoring>,
    /// One Secret per confidential OpenID client (`issuer`, `client_id`,
    /// `client_secret`), for the app to mount.
    pub oidc_client_secrets: Vec<Secret>,
}

/// Metadata of a child object: its name in the tenant's namespace, the tenant's labels
/// and the tenant as controller.
pub(crate) fn meta(tenant: &FaceIdTenant, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: tenant.namespace(),
        labels: Some(labels(tenant)),
        owner_references: tenant.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// SHA-256 of the complete environment (configuration and secrets), hex.
pub fn config_hash(env: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in env {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds every desired child object of `tenant`.
pub fn build(tenant: &FaceIdTenant, inputs: &Inputs) -> Desired {
    Desired {
        secret: secret(tenant, inputs),
        config_map: config_map(tenant, inputs),
        deployment: deployment(tenant, inputs),
        service: service(tenant),
        autoscaler: autoscaler(tenant),
        disruption_budget: disruption_budget(tenant),
        network_policy: network_policy(tenant),
        monitoring: crate::monitoring::build(tenant),
        oidc_client_secrets: oidc_client_secrets(tenant, inputs),
    }
}

/// The Secret of every confidential OpenID client that has a secret in `inputs`.
fn oidc_client_secrets(tenant: &FaceIdTenant, inputs: &Inputs) -> Vec<Secret> {
    let issuer = tenant.spec.oidc.issuer_url.clone().unwrap_or_default();
    tenant
        .spec
        .oidc
        .clients
        .iter()
        .filter(|c| c.is_confidential())
        .filter_map(|c| {
            let secret = inputs.secrets.oidc_client_secrets.get(&c.client_id)?;
            Some(crate::oidc::client_secret(tenant, c, secret, &issuer))
        })
        .collect()
}

/// The operator-owned credentials Secret.
pub fn secret(tenant: &FaceIdTenant, inputs: &Inputs) -> Secret {
    let s = &inputs.secrets;
    let data = BTreeMap::from([
        (
            keys::SECRET_KEY.to_owned(),
            ByteString(s.secret_key.clone().into_bytes()),
        ),
        (
            keys::ADMIN_API_KEY.to_owned(),
            ByteString(s.admin_api_key.clone().into_bytes()),
        ),
        (
            keys::TEMPLATE_KEY.to_owned(),
            ByteString(s.template_key.clone().into_bytes()),
        ),
        (
            keys::DATABASE_PASSWORD.to_owned(),
            ByteString(inputs.database_password.clone().into_bytes()),
        ),
        (
            keys::DATABASE_URL.to_owned(),
            ByteString(s.database_url.clone().into_bytes()),
        ),
        (
            keys::SIGNING_KEYS.to_owned(),
            ByteString(s.signing_keys.clone().into_bytes()),
        ),
    ]);
    let mut metadata = meta(tenant, secret_name(tenant));
    metadata.annotations = Some(BTreeMap::from([(
        LEGACY_HS256_ANNOTATION.to_owned(),
        s.legacy_hs256_default.to_string(),
    )]));
    Secret {
        metadata,
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The ConfigMap with the non-secret environment.
pub fn config_map(tenant: &FaceIdTenant, inputs: &Inputs) -> ConfigMap {
    ConfigMap {
        metadata: meta(tenant, config_map_name(tenant)),
        data: Some({
            let mut data = render_config(tenant, inputs.secrets.legacy_hs256_default);
            data.extend(crate::config::oidc_env(tenant, &inputs.secrets));
            data
        }),
        ..ConfigMap::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Requests and limits when the spec sets none: enough for the face engine.
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("250m".to_owned())),
            ("memory".to_owned(), Quantity("512Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("1Gi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// The service's Deployment.
pub fn deployment(tenant: &FaceIdTenant, inputs: &Inputs) -> Deployment {
    let spec = &tenant.spec;
    let mut annotations = spec.workload.pod_annotations.clone();
    annotations.insert(
        CONFIG_HASH_ANNOTATION.to_owned(),
        config_hash(&render_env(tenant, &inputs.secrets)),
    );
    Deployment {
        metadata: meta(tenant, workload_name(tenant)),
        spec: Some(DeploymentSpec {
            // With an autoscaler the replica count is the autoscaler's to set.
            replicas: spec
                .workload
                .autoscaling
                .is_none()
                .then_some(spec.workload.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(tenant)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(tenant)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(tenant, container(tenant, inputs))),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The service's container: its image, settings (the ConfigMap, and the secrets by
/// reference), probes and a locked-down security context.
fn container(tenant: &FaceIdTenant, inputs: &Inputs) -> Container {
    let spec = &tenant.spec;
    let mut env = vec![
        secret_env("DATABASE_URL", &secret_name(tenant), keys::DATABASE_URL),
        secret_env("SECRET_KEY", &secret_name(tenant), keys::SECRET_KEY),
        secret_env("ADMIN_API_KEY", &secret_name(tenant), keys::ADMIN_API_KEY),
        secret_env("TEMPLATE_KEY", &secret_name(tenant), keys::TEMPLATE_KEY),
        secret_env("SIGNING_KEYS", &secret_name(tenant), keys::SIGNING_KEYS),
    ];
    if let Some(redis) = &spec.redis {
        env.push(secret_env(
            "REDIS_URL",
            &redis.secret_ref.name,
            &redis.secret_ref.key,
        ));
    }
    Container {
        name: "faceid".to_owned(),
        image: Some(inputs.image.clone()),
        args: Some(vec!["serve".to_owned()]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: i32::from(SERVICE_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: config_map_name(tenant),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(env),
        resources: Some(
            spec.workload
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        startup_probe: Some(http_probe("/health", 2, 60)),
        liveness_probe: Some(http_probe("/health", 10, 3)),
        readiness_probe: Some(http_probe("/ready", 5, 2)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// The pod around `container`: non-root with the runtime's seccomp profile, no service
/// account token, a small writable `/tmp`, and the spec's scheduling fields.
fn pod_spec(tenant: &FaceIdTenant, container: Container) -> PodSpec {
    let w = &tenant.spec.workload;
    PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            fs_group: Some(65532),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![container],
        image_pull_secrets: non_empty(w.image_pull_secrets.clone()),
        node_selector: (!w.node_selector.is_empty()).then(|| w.node_selector.clone()),
        tolerations: non_empty(w.tolerations.clone()),
        topology_spread_constraints: Some(spread(tenant)),
        volumes: Some(vec![Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("64Mi".to_owned())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// The spec's spread constraints, or by default across nodes where possible (a soft
/// constraint: a one-node cluster still schedules every replica).
fn spread(tenant: &FaceIdTenant) -> Vec<TopologySpreadConstraint> {
    let given = &tenant.spec.workload.topology_spread_constraints;
    if !given.is_empty() {
        return given.clone();
    }
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "kubernetes.io/hostname".to_owned(),
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(tenant)),
            ..LabelSelector::default()
        }),
        ..TopologySpreadConstraint::default()
    }]
}

/// The pods' NetworkPolicy: inbound TCP to the `http` port only, from
/// `spec.networkPolicy.ingressFrom` (any source when empty); nothing about egress (the
/// database and Redis may be anywhere).
pub fn network_policy(tenant: &FaceIdTenant) -> Option<NetworkPolicy> {
    let spec = &tenant.spec.network_policy;
    if !spec.enabled {
        return None;
    }
    Some(NetworkPolicy {
        metadata: meta(tenant, workload_name(tenant)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(tenant)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::String("http".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..NetworkPolicyPort::default()
                }]),
                from: non_empty(spec.ingress_from.clone()),
            }]),
            ..NetworkPolicySpec::default()
        }),
    })
}

/// The ClusterIP Service (port 80 to the pods' `http` port).
pub fn service(tenant: &FaceIdTenant) -> Service {
    Service {
        metadata: meta(tenant, workload_name(tenant)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(tenant)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: 80,
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The CPU autoscaler, when the spec asks for one.
pub fn autoscaler(tenant: &FaceIdTenant) -> Option<HorizontalPodAutoscaler> {
    let a = tenant.spec.workload.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: meta(tenant, workload_name(tenant)),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: workload_name(tenant),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(a.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    })
}

/// The disruption budget: at most one pod evicted at a time. Pods that are not ready
/// (crash-looping, failing readiness) may always be evicted
/// (`unhealthyPodEvictionPolicy: AlwaysAllow`), so a broken rollout never blocks a
/// node drain.
pub fn disruption_budget(tenant: &FaceIdTenant) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(tenant, workload_name(tenant)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(tenant)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// Reads a UTF-8 value of a Secret (`data`, or `stringData` as written by a client).
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        })
}

/// The kind `K`'s name in messages.
pub fn kind_of<K: Resource<DynamicType = ()>>() -> String {
    K::kind(&()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn example(text: &str) -> FaceIdTenant {
        let mut t: FaceIdTenant = serde_saphyr::from_str(text).unwrap();
        t.metadata = ObjectMeta {
            namespace: Some("team-a".into()),
            uid: Some("uid-1".into()),
            ..t.metadata
        };
        t
    }

    fn minimal() -> FaceIdTenant {
        example(include_str!(
            "../../charts/faceid-operator/examples/minimal.yaml"
        ))
    }

    fn full() -> FaceIdTenant {
        example(include_str!(
            "../../charts/faceid-operator/examples/full.yaml"
        ))
    }

    fn inputs(redis: Option<&str>) -> Inputs {
        Inputs {
            image: "img:1".into(),
            secrets: TenantSecrets {
                database_url: "postgres://faceid_acme:pw@db/faceid".into(),
                secret_key: "k".repeat(64),
                admin_api_key: "a".repeat(48),
                template_key: "t".repeat(64),
                redis_url: redis.map(str::to_owned),
                signing_keys: r#"{"keys":[{"kid":"k1"}]}"#.into(),
                legacy_hs256_default: false,
                oidc_client_secrets: Default::default(),
            },
            database_password: "pw".into(),
        }
    }

    fn env_names(d: &Deployment) -> Vec<String> {
        let c = &d
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        c.env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.clone())
            .collect()
    }

    #[test]
    fn minimal_tenant_objects() {
        let t = minimal();
        let d = build(&t, &inputs(None));
        // Every object is controlled by the tenant and labelled.
        for meta in [
            &d.secret.metadata,
            &d.config_map.metadata,
            &d.deployment.metadata,
            &d.service.metadata,
            &d.disruption_budget.metadata,
        ] {
            assert!(is_controlled_by(
                meta.owner_references.as_deref().unwrap(),
                &t
            ));
            assert_eq!(meta.namespace.as_deref(), Some("team-a"));
            assert_eq!(
                meta.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
                MANAGED_BY
            );
        }
        assert!(d.autoscaler.is_none());
        let spec = d.deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("img:1"));
        assert_eq!(c.args.as_deref(), Some(&["serve".to_owned()][..]));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/ready")
        );
        assert_eq!(
            c.liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/health")
        );
        assert_eq!(c.resources, Some(default_resources()));
        assert_eq!(
            env_names(&d.deployment),
            [
                "DATABASE_URL",
                "SECRET_KEY",
                "ADMIN_API_KEY",
                "TEMPLATE_KEY",
                "SIGNING_KEYS"
            ]
        );
        // The signing keys are in the Secret; a new tenant gets no HS256.
        let data = d.secret.data.as_ref().unwrap();
        assert_eq!(data["SIGNING_KEYS"].0, br#"{"keys":[{"kid":"k1"}]}"#);
        assert_eq!(
            d.secret.metadata.annotations.as_ref().unwrap()[LEGACY_HS256_ANNOTATION],
            "false"
        );
        assert_eq!(
            d.config_map.data.as_ref().unwrap()["LEGACY_HS256_TOKENS"],
            "false"
        );
        // The selector matches the pod labels, the Service and the budget.
        let selector = spec.selector.match_labels.as_ref().unwrap();
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        assert_eq!(
            d.service.spec.as_ref().unwrap().selector.as_ref(),
            Some(selector)
        );
        let budget = d.disruption_budget.spec.as_ref().unwrap();
        assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            budget.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow"),
            "unready pods never block a drain"
        );
        assert_eq!(d.config_map.data.as_ref().unwrap()["TENANT"], "team-a_acme");
        assert_eq!(endpoint(&t), "http://acme.team-a.svc:80");
    }

    #[test]
    fn full_tenant_objects() {
        let t = full();
        let d = build(&t, &inputs(Some("redis://r:6379/0")));
        let hpa = d.autoscaler.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(3), 12));
        assert_eq!(
            hpa.metrics.as_ref().unwrap()[0]
                .resource
                .as_ref()
                .unwrap()
                .target
                .average_utilization,
            Some(60)
        );
        let spec = d.deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, None, "the autoscaler owns replicas");
        let template = &spec.template;
        let annotations = template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert!(annotations.contains_key(CONFIG_HASH_ANNOTATION));
        let c = &template.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("img:1"));
        assert_eq!(
            env_names(&d.deployment),
            [
                "DATABASE_URL",
                "SECRET_KEY",
                "ADMIN_API_KEY",
                "TEMPLATE_KEY",
                "SIGNING_KEYS",
                "REDIS_URL"
            ]
        );
        let redis = &c.env.as_ref().unwrap()[5];
        let sel = redis
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (sel.name.as_str(), sel.key.as_str()),
            ("shared-redis", "url")
        );
        let cm = d.config_map.data.as_ref().unwrap();
        assert_eq!(cm["FACE_RECOGNITION_TOLERANCE"], "0.55");
        assert_eq!(cm["FACE_DETECTION_MODEL"], "tiny-416");
        assert_eq!(cm["FACE_DETECTION_UPSCALE"], "false");
        assert_eq!(cm["FACE_RECOGNITION_PRECISION"], "float32");
        assert_eq!(cm["LIVENESS_THRESHOLD"], "0.8");
        assert_eq!(cm["RATE_LIMIT_LOGIN"], "20/minute");
        assert_eq!(cm["ACCESS_TOKEN_EXPIRE_MINUTES"], "15");
        assert_eq!(cm["REFRESH_TOKEN_EXPIRE_DAYS"], "14");
        assert_eq!(cm["MAX_FAILED_LOGIN_ATTEMPTS"], "5");
        assert_eq!(cm["LOCKOUT_MINUTES"], "60");
        assert_eq!(cm["FAILED_ATTEMPT_RETENTION_DAYS"], "90");
        assert_eq!(cm["HNSW_EF_SEARCH"], "200");
        assert_eq!(cm["ACCESS_TOKEN_ALGORITHM"], "ES256");
        assert_eq!(cm["LEGACY_HS256_TOKENS"], "false");
        assert_eq!(cm["MODELS_DIR"], "/models");
        assert_eq!(
            cm["CORS_ORIGINS"],
            "https://app.globex.example,https://admin.globex.example"
        );
        let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(requests["cpu"], Quantity("500m".into()));
        // The ConfigMap plus the Deployment's secret references are exactly render_env.
        let mut names: Vec<String> = cm.keys().cloned().collect();
        names.extend(env_names(&d.deployment));
        names.sort();
        let env = render_env(&t, &inputs(Some("redis://r:6379/0")).secrets);
        assert_eq!(names, env.keys().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn the_network_policy_admits_only_the_http_port() {
        let t = minimal();
        let policy = build(&t, &inputs(None)).network_policy.unwrap();
        let spec = policy.spec.unwrap();
        assert_eq!(
            spec.pod_selector.unwrap().match_labels,
            Some(selector_labels(&t))
        );
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
        let rules = spec.ingress.unwrap();
        assert_eq!(rules.len(), 1);
        let port = &rules[0].ports.as_ref().unwrap()[0];
        assert_eq!(port.port, Some(IntOrString::String("http".to_owned())));
        assert!(rules[0].from.is_none(), "any source by default");
        assert!(policy.metadata.owner_references.is_some());
        let mut off = minimal();
        off.spec.network_policy.enabled = false;
        assert!(build(&off, &inputs(None)).network_policy.is_none());
    }

    #[test]
    fn scheduling_settings_reach_the_pods() {
        let pod = |t: &FaceIdTenant| {
            build(t, &inputs(None))
                .deployment
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
        };
        // Defaults: nothing set, spread softly across nodes.
        let p = pod(&minimal());
        assert!(p.image_pull_secrets.is_none() && p.node_selector.is_none());
        assert!(p.tolerations.is_none());
        let spread = p.topology_spread_constraints.unwrap();
        assert_eq!(spread.len(), 1);
        assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
        assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
        assert_eq!(
            spread[0].label_selector.as_ref().unwrap().match_labels,
            Some(selector_labels(&minimal()))
        );
        // Given in the spec: passed through as written.
        let t = example(
            "apiVersion: faceid.dev/v1alpha1\nkind: FaceIdTenant\nmetadata: {name: acme}\n\
             spec:\n  database: {connectionSecretRef: {name: pg}, schema: acme}\n  workload:\n\
             \x20   imagePullSecrets: [{name: regcred}]\n\
             \x20   nodeSelector: {faceid.dev/vnni: \"true\"}\n\
             \x20   tolerations: [{key: dedicated, operator: Equal, value: faceid, effect: NoSchedule}]\n\
             \x20   topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}]\n",
        );
        let p = pod(&t);
        assert_eq!(p.image_pull_secrets.unwrap()[0].name, "regcred");
        assert_eq!(p.node_selector.unwrap()["faceid.dev/vnni"], "true");
        assert_eq!(p.tolerations.unwrap()[0].key.as_deref(), Some("dedicated"));
        assert_eq!(
            p.topology_spread_constraints.unwrap()[0].topology_key,
            "topology.kubernetes.io/zone"
        );
    }

    #[test]
    fn any_configuration_or_credential_change_changes_the_pod_template() {
        let t = minimal();
        let hash = |t: &FaceIdTenant, i: &Inputs| {
            deployment(t, i)
                .spec
                .unwrap()
                .template
                .metadata
                .unwrap()
                .annotations
                .unwrap()[CONFIG_HASH_ANNOTATION]
                .clone()
        };
        let base = hash(&t, &inputs(None));
        assert_eq!(base, hash(&t, &inputs(None)), "stable for the same input");
        let mut changed = t.clone();
        changed.spec.rate_limits.login = "11/minute".into();
        assert_ne!(base, hash(&changed, &inputs(None)));
        let mut other = inputs(None);
        other.secrets.secret_key = "z".repeat(64);
        assert_ne!(base, hash(&t, &other));
        assert_ne!(base, hash(&t, &inputs(Some("redis://x"))));
        // A rotated key set rolls the pods, and so does HS256 turned on.
        let mut rotated = inputs(None);
        rotated.secrets.signing_keys = r#"{"keys":[{"kid":"k2"}]}"#.into();
        assert_ne!(base, hash(&t, &rotated));
        let mut legacy = inputs(None);
        legacy.secrets.legacy_hs256_default = true;
        assert_ne!(base, hash(&t, &legacy));
    }

    #[test]
    fn secret_values_never_leave_the_secret() {
        let t = minimal();
        let i = inputs(None);
        let d = build(&t, &i);
        let everything_else = serde_json::to_string(&(
            &d.config_map,
            &d.deployment,
            &d.service,
            &d.disruption_budget,
        ))
        .unwrap();
        assert!(!everything_else.contains(&i.secrets.secret_key));
        assert!(!everything_else.contains(&i.secrets.admin_api_key));
        assert!(!everything_else.contains(&i.secrets.signing_keys));
        assert!(!everything_else.contains("postgres://"));
    }

    #[test]
    fn ownership_needs_the_controller_flag_and_the_uid() {
        let t = minimal();
        let mut r = t.controller_owner_ref(&()).unwrap();
        assert!(is_controlled_by(std::slice::from_ref(&r), &t));
        r.controller = Some(false);
        assert!(!is_controlled_by(std::slice::from_ref(&r), &t));
        r.controller = Some(true);
        r.uid = "someone-else".into();
        assert!(!is_controlled_by(&[r], &t));
        assert!(!is_controlled_by(&[], &t));
    }
}
