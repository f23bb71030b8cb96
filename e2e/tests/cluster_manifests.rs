//! The dry parts of the real-cluster suite (`e2e/cluster.sh`): the manifests it applies
//! parse as the Kubernetes types they claim to be, the tenants pass the operator's own
//! validation, the images it expects are the ones the Dockerfiles build, the chart
//! renders with those images, and the script skips cleanly without a cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::Command;

use faceid_e2e::{repo_root, required_env};
use faceid_operator::crd::{FaceIdTenant, validate};

fn documents(path: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    text.split("\n---")
        .map(|d| serde_saphyr::from_str::<serde_json::Value>(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn suite_tenants_are_valid() {
    let tenants = documents("e2e/cluster/tenants.yaml");
    assert_eq!(tenants.len(), 2);
    for doc in tenants {
        let t: FaceIdTenant = serde_json::from_value(doc).unwrap();
        let problems = validate(&t.spec);
        assert!(problems.is_empty(), "{:?}: {problems:?}", t.metadata.name);
    }
}

#[test]
fn suite_stores_are_well_formed_and_pinned() {
    let docs = documents("e2e/cluster/stores.yaml");
    let mut images = Vec::new();
    for doc in docs {
        match doc["kind"].as_str().unwrap() {
            "Deployment" => {
                let d: k8s_openapi::api::apps::v1::Deployment =
                    serde_json::from_value(doc).unwrap();
                for c in d.spec.unwrap().template.spec.unwrap().containers {
                    let image = c.image.unwrap();
                    assert!(
                        image.contains(':') && !image.ends_with(":latest"),
                        "{image} is not pinned"
                    );
                    assert!(
                        c.readiness_probe.is_some(),
                        "{image} has no readiness probe"
                    );
                    images.push(image);
                }
            }
            "Service" => {
                let _: k8s_openapi::api::core::v1::Service = serde_json::from_value(doc).unwrap();
            }
            "Secret" => {
                let _: k8s_openapi::api::core::v1::Secret = serde_json::from_value(doc).unwrap();
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    assert!(
        images.iter().any(|i| i.starts_with("pgvector/pgvector:")),
        "{images:?}"
    );
    assert!(images.iter().any(|i| i.starts_with("redis:")), "{images:?}");
}

#[test]
fn dockerfiles_build_what_the_suite_expects() {
    let service = std::fs::read_to_string(repo_root().join("service/Dockerfile")).unwrap();
    assert!(service.contains("--bin faceid"));
    assert!(service.contains("COPY models/*.onnx /models/"));
    assert!(service.contains("ORT_DYLIB_PATH=") && service.contains("onnxruntime==1.31.1"));
    assert!(
        service
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root")),
        "service image must not run as root"
    );
    let operator = std::fs::read_to_string(repo_root().join("operator/Dockerfile")).unwrap();
    assert!(operator.contains("-p faceid-operator"));
    assert!(
        operator
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root")),
        "operator image must not run as root"
    );
    let script = std::fs::read_to_string(repo_root().join("e2e/cluster.sh")).unwrap();
    assert!(script.contains("service/Dockerfile") && script.contains("operator/Dockerfile"));
}

#[test]
fn chart_renders_with_the_suite_images() {
    let helm = required_env("HELM").unwrap();
    let out = Command::new(helm)
        .args(["template", "faceid-operator"])
        .arg(repo_root().join("charts/faceid-operator"))
        .args([
            "--namespace",
            "faceid-system",
            "--set",
            "image.repository=faceid-operator",
            "--set",
            "image.tag=dev",
            "--set",
            "defaultTenantImage=faceid:dev",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    assert!(
        rendered.contains("image: \"faceid-operator:dev\"")
            || rendered.contains("image: faceid-operator:dev"),
        "operator image not rendered"
    );
    assert!(
        rendered.contains("faceid:dev"),
        "tenant image not passed to the operator"
    );
}

#[test]
fn without_a_cluster_the_suite_says_it_is_skipped() {
    let out = Command::new("bash")
        .arg(repo_root().join("e2e/cluster.sh"))
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SKIPPED"), "{stdout}");
}
