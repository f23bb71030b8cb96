//! The generated CRD against the real kube-apiserver of the local control plane
//! (`scripts/kube.sh start`, which `scripts/test.sh` runs; `FACEID_KUBECONFIG` or
//! `.dev/kube/admin.kubeconfig`): OpenAPI validation and defaulting, the CEL rules,
//! schema immutability, the status and scale subresources, printer columns, server-side
//! apply of status under the operator's field manager, and finalizers. No operator runs
//! here: the reconciler against the same control plane is `e2e/tests/control_plane.rs`.

// Test code: a failed unwrap or panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use faceid_operator::crd::{FaceIdTenant, crd_yaml};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

const MANAGER: &str = "faceid-operator";

async fn client() -> Client {
    let path = std::env::var_os("FACEID_KUBECONFIG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev/kube/admin.kubeconfig")
        });
    assert!(
        path.exists(),
        "{} missing: start the local control plane (`scripts/kube.sh start`; scripts/test.sh does)",
        path.display()
    );
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&crd_yaml().unwrap()).unwrap();
    crds.patch(
        "faceidtenants.faceid.dev",
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    // Wait until the resource is served.
    let tenants: Api<FaceIdTenant> = Api::namespaced(client.clone(), "probe");
    for _ in 0..100 {
        if tenants.list(&Default::default()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the FaceIdTenant CRD was not established");
}

fn tenant(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "faceid.dev/v1alpha1",
        "kind": "FaceIdTenant",
        "metadata": { "name": name },
        "spec": spec,
    })
}

fn database(schema: &str, hnsw: serde_json::Value) -> serde_json::Value {
    json!({ "connectionSecretRef": { "name": "pg", "key": "url" }, "schema": schema, "hnsw": hnsw })
}

async fn create(
    api: &Api<FaceIdTenant>,
    object: serde_json::Value,
) -> Result<FaceIdTenant, String> {
    let t: FaceIdTenant = match serde_json::from_value(object.clone()) {
        Ok(t) => t,
        // Objects the Rust types cannot even hold go through as raw JSON.
        Err(_) => {
            let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
                api.clone().into_client(),
                "e2e",
                &kube::api::ApiResource::erase::<FaceIdTenant>(&()),
            );
            let obj: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
            return raw
                .create(&PostParams::default(), &obj)
                .await
                .map(|_| unreachable!("raw objects are only used for invalid input"))
                .map_err(|e| e.to_string());
        }
    };
    api.create(&PostParams::default(), &t)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_crd_behaves_as_documented_on_a_real_apiserver() {
    let client = client().await;
    install_crd(&client).await;
    let ns = format!("t{}", std::process::id());
    let namespace: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap();
    Api::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), &ns);

    // Valid: defaults filled in by the server.
    let made = create(
        &api,
        tenant("acme", json!({ "database": database("acme", json!({})) })),
    )
    .await
    .unwrap();
    assert_eq!(made.spec.database.hnsw.m, 16);
    assert_eq!(made.spec.database.hnsw.ef_construction, 64);
    assert_eq!(made.spec.recognition.tolerance, "0.6");

    // Refused by the schema or the CEL rules, each with its message.
    let cases = [
        ("m-low", database("s_a", json!({ "m": 1 })), "m"),
        (
            "efc-low",
            database("s_b", json!({ "m": 40, "efConstruction": 64 })),
            "efConstruction",
        ),
        (
            "efs-high",
            database("s_c", json!({ "efSearch": 5000 })),
            "efSearch",
        ),
        ("reserved", database("public", json!({})), "schema"),
        ("pg-prefix", database("pg_catalog2", json!({})), "schema"),
        ("bad-chars", database("Drop;Table", json!({})), "schema"),
    ];
    for (name, db, field) in cases {
        let err = create(&api, tenant(name, json!({ "database": db })))
            .await
            .unwrap_err();
        assert!(err.contains(field), "{name}: {err}");
    }
    let err = create(
        &api,
        tenant("tolerance", json!({ "database": database("s_d", json!({})), "recognition": { "tolerance": "1.5" } })),
    )
    .await
    .unwrap_err();
    assert!(err.contains("tolerance"), "{err}");

    // The schema name is immutable.
    let err = api
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "database": { "schema": "other" } } })),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("immutable"), "{err}");

    // Status through server-side apply under the operator's field manager, as the
    // reconciler writes it; printer columns read it.
    let status = json!({
        "apiVersion": "faceid.dev/v1alpha1", "kind": "FaceIdTenant",
        "status": {
            "observedGeneration": 1, "schema": "acme", "replicas": 2, "readyReplicas": 2,
            "conditions": [{ "type": "Ready", "status": "True", "reason": "Reconciled",
                             "message": "all good", "lastTransitionTime": "2026-01-01T00:00:00Z",
                             "observedGeneration": 1 }]
        }
    });
    api.patch_status(
        "acme",
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&status),
    )
    .await
    .unwrap();
    let read = api.get("acme").await.unwrap();
    let status = read.status.unwrap();
    assert_eq!(status.conditions[0].type_, "Ready");
    let managed = read.metadata.managed_fields.unwrap();
    assert!(
        managed
            .iter()
            .any(|m| m.manager.as_deref() == Some(MANAGER)
                && m.subresource.as_deref() == Some("status")),
        "{managed:?}"
    );
    let table: serde_json::Value = client
        .request(
            http::Request::get(format!(
                "/apis/faceid.dev/v1alpha1/namespaces/{ns}/faceidtenants"
            ))
            .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())
            .unwrap(),
        )
        .await
        .unwrap();
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for expected in ["Ready", "Reason", "Schema", "Replicas", "Age"] {
        assert!(columns.contains(&expected), "{columns:?}");
    }
    let row = &table["rows"][0]["cells"];
    assert_eq!(row[1], "True", "{row}");

    // The scale subresource.
    let scale = api.get_scale("acme").await.unwrap();
    assert_eq!(scale.status.unwrap().replicas, 2);
    api.patch_scale(
        "acme",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": 3 } })),
    )
    .await
    .unwrap();
    assert_eq!(api.get("acme").await.unwrap().spec.workload.replicas, 3);

    // A finalizer holds deletion until it is removed.
    api.patch(
        "acme",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": ["faceid.dev/cleanup"] } })),
    )
    .await
    .unwrap();
    api.delete("acme", &DeleteParams::default()).await.unwrap();
    let held = api.get("acme").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    api.patch(
        "acme",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .unwrap();
    for _ in 0..50 {
        if api.get_opt("acme").await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the tenant was not deleted after its finalizer was removed");
}
