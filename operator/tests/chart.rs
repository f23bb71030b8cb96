//! The Helm chart: `helm lint` and `helm template` pass with the default values and with
//! every optional part enabled, and every rendered manifest parses as the Kubernetes
//! object it claims to be; the Deployment's flags are the binary's and its Lease is the
//! one the Role grants; several replicas need leader election. Needs `HELM` (from
//! `source .dev/env`; `scripts/platform.sh install` installs Helm).

// Test code: a failed unwrap or panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};

fn helm() -> String {
    std::env::var("HELM").expect(
        "HELM is not set: run `scripts/platform.sh install` and `source .dev/env` (it exports HELM, the path of the helm binary)",
    )
}

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/faceid-operator")
}

fn helm_output(args: &[&str]) -> std::process::Output {
    Command::new(helm())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helm()))
}

fn run(args: &[&str]) -> String {
    let out = helm_output(args);
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
    "--set",
    "grafanaDashboard.enabled=true",
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

fn render(extra: &[&str]) -> Vec<serde_json::Value> {
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
    serde_saphyr::from_multiple::<serde_json::Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(doc: &serde_json::Value) -> T {
    serde_json::from_value(doc.clone()).unwrap_or_else(|e| {
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
                    if resources.contains(&"namespaces".to_owned()) {
                        assert_eq!(rule.verbs, ["get", "list", "watch"], "namespaces: read only");
                    }
                }
            }
            "ClusterRoleBinding" => drop(parse::<ClusterRoleBinding>(doc)),
            "Role" => drop(parse::<Role>(doc)),
            "RoleBinding" => drop(parse::<RoleBinding>(doc)),
            "PodDisruptionBudget" => drop(parse::<PodDisruptionBudget>(doc)),
            "NetworkPolicy" => drop(parse::<NetworkPolicy>(doc)),
            "ConfigMap" => drop(parse::<k8s_openapi::api::core::v1::ConfigMap>(doc)),
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
    assert!(
        !docs.iter().any(|d| d["kind"] == "ConfigMap"),
        "no dashboard by default"
    );
}

/// The Grafana dashboard ships as a ConfigMap with the sidecar's label; it is valid JSON
/// and every query names a series the service or the operator really exports.
#[test]
fn the_grafana_dashboard_renders_and_queries_series_that_exist() {
    let docs = render(&["--set", "grafanaDashboard.enabled=true"]);
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("the dashboard ConfigMap");
    assert_eq!(
        cm["metadata"]["labels"]["grafana_dashboard"].as_str(),
        Some("1")
    );
    let json = cm["data"]["faceid-tenants.json"].as_str().unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(json).expect("dashboard JSON");
    assert_eq!(dashboard["uid"], "faceid-tenants");
    let exported = [
        include_str!("../../service/src/metrics.rs"),
        include_str!("../src/metrics.rs"),
    ]
    .concat();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{expr}"
            );
            for metric in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("faceid_"))
            {
                let base = metric.trim_end_matches("_bucket");
                assert!(
                    exported.contains(&format!("\"{base}\"")),
                    "{}: {base} is not exported",
                    panel["title"]
                );
            }
        }
    }
    // Renamed label: the dashboard follows another sidecar's selector.
    let docs = render(&[
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "grafanaDashboard.label=dashboards",
    ]);
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(cm["metadata"]["labels"]["dashboards"].as_str(), Some("1"));
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

fn template_args<'a>(chart: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["template", "faceid", chart, "--namespace", "faceid-system"];
    args.extend_from_slice(extra);
    args
}

#[test]
fn several_replicas_without_leader_election_are_refused() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let off = ["--set", "leaderElection.enabled=false"];
    // By the values schema first...
    let out = helm_output(&template_args(chart, &off));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("replicaCount"),
        "the schema must refuse 2 replicas without leader election: {stderr}"
    );
    // ...and by the template where the schema is skipped.
    let mut args = template_args(chart, &off);
    args.push("--skip-schema-validation");
    let out = helm_output(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("replicaCount > 1 needs leaderElection.enabled=true"),
        "the template must refuse 2 replicas without leader election: {stderr}"
    );
    // One replica without leader election is fine, and gets no Lease rights.
    let docs = render(&[
        "--set",
        "leaderElection.enabled=false",
        "--set",
        "replicaCount=1",
    ]);
    let deployment: Deployment = parse(docs.iter().find(|d| d["kind"] == "Deployment").unwrap());
    let args = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.contains(&"--leader-election=false".to_owned()),
        "{args:?}"
    );
    assert!(!docs.iter().any(|d| d["kind"] == "Role"));
}

/// The value of `--name=value` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let prefix = format!("--{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("--{name} missing from {args:?}"))
}

fn sorted(v: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

#[test]
fn the_deployment_elects_on_the_lease_the_role_grants_and_nothing_more() {
    let docs = render(&[]);
    let deployment: Deployment = parse(docs.iter().find(|d| d["kind"] == "Deployment").unwrap());
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap();
    assert_eq!(flag(&args, "leader-election"), "true");
    let lease = flag(&args, "lease-name");
    assert_eq!(lease, "faceid-faceid-operator-leader");
    assert_eq!(flag(&args, "lease-duration-seconds"), "15");
    // Identity and Lease namespace come from the downward API.
    let env = c.env.clone().unwrap();
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} unset"));
        let path = &var
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path;
        assert_eq!(path, field, "{name}");
    }

    let role: Role = parse(
        docs.iter()
            .find(|d| d["kind"] == "Role")
            .expect("a Role for the Lease"),
    );
    assert_eq!(role.metadata.namespace.as_deref(), Some("faceid-system"));
    let rules: Vec<PolicyRule> = role.rules.unwrap();
    for r in &rules {
        assert_eq!(
            r.api_groups.as_deref(),
            Some(&["coordination.k8s.io".to_owned()][..])
        );
        assert_eq!(r.resources.as_deref(), Some(&["leases".to_owned()][..]));
    }
    // get/update (the elector's read and replace) only on its own Lease; create cannot be
    // restricted by name, so it stands alone.
    let named: Vec<&PolicyRule> = rules
        .iter()
        .filter(|r| r.resource_names.is_some())
        .collect();
    assert_eq!(named.len(), 1, "{rules:?}");
    assert_eq!(
        named[0].resource_names.as_deref(),
        Some(&[lease.to_owned()][..])
    );
    assert_eq!(sorted(&named[0].verbs), ["get", "update"]);
    let unnamed: Vec<&PolicyRule> = rules
        .iter()
        .filter(|r| r.resource_names.is_none())
        .collect();
    assert_eq!(unnamed.len(), 1, "{rules:?}");
    assert_eq!(sorted(&unnamed[0].verbs), ["create"]);
    let binding: RoleBinding = parse(docs.iter().find(|d| d["kind"] == "RoleBinding").unwrap());
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
}

#[test]
fn the_binary_accepts_the_deployments_arguments_and_environment() {
    let docs = render(&[]);
    let deployment: Deployment = parse(docs.iter().find(|d| d["kind"] == "Deployment").unwrap());
    let c = deployment.spec.unwrap().template.spec.unwrap().containers[0].clone();
    let args = c.args.unwrap();
    let bin = env!("CARGO_BIN_EXE_faceid-operator");
    // Every argument parses (clap would exit 2); the run then stops at the missing
    // Kubernetes configuration.
    let out = Command::new(bin)
        .args(&args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.contains("no Kubernetes configuration"), "{stderr}");
    // Every variable the chart sets (but RUST_LOG, read by the log filter) is a flag's.
    let help = Command::new(bin).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for e in c.env.unwrap() {
        if e.name != "RUST_LOG" {
            assert!(
                help.contains(&format!("[env: {}=", e.name)),
                "{} is read by no flag",
                e.name
            );
        }
    }
}

/// The Ingress example fronts the minimal example's tenant: its Service and named port,
/// TLS for the same host, a body-size limit that lets the service's largest photo in.
#[test]
fn the_ingress_example_fronts_the_minimal_tenant_over_tls() {
    use k8s_openapi::api::networking::v1::Ingress;
    let examples = chart().join("examples");
    let ingress: Ingress =
        serde_saphyr::from_str(&std::fs::read_to_string(examples.join("ingress.yaml")).unwrap())
            .unwrap();
    let tenant: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(examples.join("minimal.yaml")).unwrap())
            .unwrap();
    let tenant_name = tenant["metadata"]["name"].as_str().unwrap();
    let spec = ingress.spec.unwrap();
    let rule = &spec.rules.as_ref().unwrap()[0];
    let host = rule.host.as_deref().unwrap();
    let backend = rule.http.as_ref().unwrap().paths[0]
        .backend
        .service
        .as_ref()
        .unwrap();
    assert_eq!(backend.name, tenant_name, "the tenant's Service");
    assert_eq!(
        backend.port.as_ref().unwrap().name.as_deref(),
        Some("http"),
        "the Service's port name the operator sets"
    );
    let tls = &spec.tls.unwrap()[0];
    assert_eq!(tls.hosts.as_deref(), Some(&[host.to_owned()][..]));
    assert!(tls.secret_name.is_some());
    let body = ingress.metadata.annotations.unwrap()["nginx.ingress.kubernetes.io/proxy-body-size"]
        .clone();
    let mib: u64 = body.trim_end_matches('m').parse().unwrap();
    assert!(
        mib >= 10,
        "the service accepts 10 MiB photos by default; the Ingress allows {body}"
    );
}
