//! The Helm chart: `helm lint` and `helm template` pass with the default values and with
//! every optional part enabled, and every rendered manifest parses as the Kubernetes
//! object it claims to be. Needs `HELM` (from `source .dev/env`; `scripts/platform.sh
//! install` installs Helm).

// Test code: a failed unwrap or panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

fn helm() -> String {
    std::env::var("HELM").expect(
        "HELM is not set: run `scripts/platform.sh install` and `source .dev/env` (it exports HELM, the path of the helm binary)",
    )
}

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/faceid-operator")
}

fn run(args: &[&str]) -> String {
    let out = Command::new(helm())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helm()));
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const ALL_ON: &[&str] = &[
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "networkPolicy.enabled=true",
];

#[test]
fn helm_lint_passes() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    run(&["lint", "--strict", chart]);
    let mut args = vec!["lint", "--strict", chart];
    args.extend_from_slice(ALL_ON);
    run(&args);
}

fn render(extra: &[&str]) -> Vec<serde_yaml::Value> {
    let chart = chart();
    let mut args = vec![
        "template",
        "faceid",
        chart.to_str().unwrap(),
        "--namespace",
        "faceid-system",
        "--include-crds",
    ];
    args.extend_from_slice(extra);
    let text = run(&args);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &serde_yaml::Value| !v.is_null())
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(doc: &serde_yaml::Value) -> T {
    serde_yaml::from_value(doc.clone()).unwrap_or_else(|e| {
        panic!(
            "{} does not parse: {e}\n{doc:?}",
            doc["kind"].as_str().unwrap_or("?")
        )
    })
}

#[test]
fn rendered_manifests_parse_as_kubernetes_objects() {
    let docs = render(ALL_ON);
    let mut kinds: Vec<String> = Vec::new();
    for doc in &docs {
        let kind = doc["kind"]
            .as_str()
            .expect("every manifest has a kind")
            .to_owned();
        assert!(doc["apiVersion"].is_string(), "{kind} has no apiVersion");
        match kind.as_str() {
            "Deployment" => {
                let d: Deployment = parse(doc);
                let spec = d.spec.unwrap();
                assert_eq!(spec.replicas, Some(2));
                let pod = spec.template.spec.unwrap();
                let c = &pod.containers[0];
                let args = c.args.clone().unwrap();
                assert!(args.contains(&"--leader-election=true".to_owned()), "{args:?}");
                let sc = c.security_context.clone().unwrap();
                assert_eq!(sc.read_only_root_filesystem, Some(true));
                assert_eq!(sc.allow_privilege_escalation, Some(false));
                assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
                assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some());
            }
            "ServiceAccount" => drop(parse::<ServiceAccount>(doc)),
            "Service" => drop(parse::<Service>(doc)),
            "ClusterRole" => {
                let role: ClusterRole = parse(doc);
                for rule in role.rules.unwrap_or_default() {
                    assert!(!rule.verbs.contains(&"*".to_owned()), "no wildcard verbs");
                    let resources = rule.resources.unwrap_or_default();
                    assert!(!resources.contains(&"*".to_owned()), "no wildcard resources");
                    if resources.contains(&"secrets".to_owned()) {
                        assert!(
                            !rule.verbs.iter().any(|v| v == "list" || v == "watch"),
                            "the operator never lists or watches Secrets"
                        );
                    }
                }
            }
            "ClusterRoleBinding" => drop(parse::<ClusterRoleBinding>(doc)),
            "Role" => drop(parse::<Role>(doc)),
            "RoleBinding" => drop(parse::<RoleBinding>(doc)),
            "PodDisruptionBudget" => drop(parse::<PodDisruptionBudget>(doc)),
            "NetworkPolicy" => drop(parse::<NetworkPolicy>(doc)),
            "CustomResourceDefinition" => drop(parse::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(doc)),
            "ServiceMonitor" => assert_eq!(doc["apiVersion"].as_str(), Some("monitoring.coreos.com/v1")),
            other => panic!("unexpected kind {other} in the chart"),
        }
        kinds.push(kind);
    }
    for expected in [
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceMonitor",
        "NetworkPolicy",
        "PodDisruptionBudget",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "{expected} missing from {kinds:?}"
        );
    }
    // Aggregated roles for namespace admins/editors and viewers.
    let aggregated = docs
        .iter()
        .filter(|d| {
            d["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"].as_str()
                == Some("true")
        })
        .count();
    assert_eq!(aggregated, 1);
}

#[test]
fn optional_parts_are_off_by_default() {
    let docs = render(&[]);
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "ServiceMonitor" || d["kind"] == "NetworkPolicy")
    );
}

#[test]
fn invalid_values_are_refused_by_the_schema() {
    let chart = chart();
    let out = Command::new(helm())
        .args([
            "template",
            "x",
            chart.to_str().unwrap(),
            "--set",
            "replicaCount=0",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "replicaCount=0 must be refused by values.schema.json"
    );
}
