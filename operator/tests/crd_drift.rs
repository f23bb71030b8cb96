//! The committed CRD YAML is exactly what the Rust types generate, and the examples
//! and every schema/CEL rule behave as documented (checked with kube's client-side CEL
//! evaluator on the generated schema).

// Test code: a failed unwrap or panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use faceid_operator::crd::{FaceIdTenant, crd_yaml, validate};
use kube::core::cel::Validator;

const FIX: &str = "cargo run -q -p faceid-operator -- crd > crds/faceidtenant.yaml && cp crds/faceidtenant.yaml charts/faceid-operator/crds/faceidtenant.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(path: &str) {
    let committed = std::fs::read_to_string(root().join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}; generate it with: {FIX}"));
    let generated = crd_yaml().unwrap();
    assert!(
        committed == generated,
        "{path} is out of date with the Rust types in operator/src/crd.rs; regenerate it with:\n    {FIX}"
    );
}

#[test]
fn committed_crd_matches_the_types() {
    check("crds/faceidtenant.yaml");
}

#[test]
fn chart_crd_matches_the_types() {
    check("charts/faceid-operator/crds/faceidtenant.yaml");
}

fn schema() -> serde_json::Value {
    let crd: serde_json::Value = serde_saphyr::from_str(&crd_yaml().unwrap()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn example(name: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(root().join("charts/faceid-operator/examples").join(name)).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn cel(object: &serde_json::Value, old: Option<&serde_json::Value>) -> Vec<String> {
    match Validator::new().validate(&schema(), object, old) {
        Ok(()) => vec![],
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn examples_are_valid_tenants() {
    for name in ["minimal.yaml", "full.yaml"] {
        let value = example(name);
        let tenant: FaceIdTenant = serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("{name} does not parse as a FaceIdTenant: {e}"));
        assert!(
            validate(&tenant.spec).is_empty(),
            "{name}: {:?}",
            validate(&tenant.spec)
        );
        assert!(
            cel(&value, None).is_empty(),
            "{name}: {:?}",
            cel(&value, None)
        );
        // An update that keeps the schema passes the transition rule.
        assert!(cel(&value, Some(&value)).is_empty());
    }
}

fn with(mut value: serde_json::Value, pointer: &str, new: serde_json::Value) -> serde_json::Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let mut target = &mut value;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        if target.get(part).is_none() {
            target[part] = serde_json::json!({});
        }
        target = &mut target[part];
    }
    target[key] = new;
    value
}

#[test]
fn cel_rules_refuse_what_the_api_forbids() {
    let base = example("minimal.yaml");
    let cases = [
        (
            "/spec/database/schema",
            serde_json::json!("public"),
            "reserved",
        ),
        (
            "/spec/database/schema",
            serde_json::json!("pg_toast"),
            "reserved",
        ),
        (
            "/spec/database/schema",
            serde_json::json!("information_schema"),
            "reserved",
        ),
        (
            "/spec/database/hnsw",
            serde_json::json!({"m": 40, "efConstruction": 64}),
            "2 * m",
        ),
        (
            "/spec/workload/autoscaling",
            serde_json::json!({"minReplicas": 5, "maxReplicas": 2}),
            "minReplicas",
        ),
        // The name is the Service's name and a label value, and <name>-credentials must
        // stay within 63: a DNS-1035 label of at most 51 characters.
        ("/metadata/name", serde_json::json!("Acme"), "metadata.name"),
        (
            "/metadata/name",
            serde_json::json!("1acme"),
            "metadata.name",
        ),
        ("/metadata/name", serde_json::json!("a.b"), "metadata.name"),
        (
            "/metadata/name",
            serde_json::json!("x".repeat(52)),
            "metadata.name",
        ),
        // Pod annotation keys are qualified names.
        (
            "/spec/workload/podAnnotations",
            serde_json::json!({"bad key": "x"}),
            "qualified names",
        ),
        (
            "/spec/workload/podAnnotations",
            serde_json::json!({"a/b/c": "x"}),
            "qualified names",
        ),
        // Quantities parse (Kubernetes' CEL isQuantity) and are not negative.
        (
            "/spec/workload/resources",
            serde_json::json!({"requests": {"cpu": "lots"}}),
            "resource quantity",
        ),
        (
            "/spec/workload/resources",
            serde_json::json!({"limits": {"memory": "-1Gi"}}),
            "resource quantity",
        ),
        (
            "/spec/workload/resources",
            serde_json::json!({"requests": {"cpu": -1}}),
            "resource quantity",
        ),
        // A replaced signing key verifies at least as long as an access token lives
        // (default lifetime 30 minutes).
        (
            "/spec/tokens",
            serde_json::json!({"signingKeys": {"rotationPeriodDays": 30, "overlapMinutes": 29}}),
            "overlapMinutes",
        ),
        (
            "/spec/tokens",
            serde_json::json!({"accessTokenAlgorithm": "HS256"}),
            "legacyHs256",
        ),
        (
            "/spec/tokens",
            serde_json::json!({"accessTokenAlgorithm": "HS256", "legacyHs256": false}),
            "legacyHs256",
        ),
        // OpenID clients need an issuer; only a confidential one has a Secret to place.
        (
            "/spec/oidc",
            serde_json::json!({"clients": [{"clientId": "shop", "type": "confidential",
                "redirectUris": ["https://shop.example/cb"]}]}),
            "issuerUrl is required",
        ),
        (
            "/spec/oidc",
            serde_json::json!({"issuerUrl": "https://login.example",
                "clients": [{"clientId": "spa", "type": "public", "secretNamespace": "apps",
                    "redirectUris": ["https://spa.example/cb"]}]}),
            "only for confidential clients",
        ),
    ];
    for (pointer, value, expected) in cases {
        let object = with(base.clone(), pointer, value.clone());
        let errors = cel(&object, None);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{pointer}={value}: expected an error containing {expected:?}, got {errors:?}"
        );
    }
    // The schema name is immutable.
    let renamed = with(
        base.clone(),
        "/spec/database/schema",
        serde_json::json!("other"),
    );
    let errors = cel(&renamed, Some(&base));
    assert!(errors.iter().any(|e| e.contains("immutable")), "{errors:?}");
    // What is allowed: a 51-character name, qualified annotation keys, quantities
    // written as strings or integers.
    for (pointer, value) in [
        ("/metadata/name", serde_json::json!("x".repeat(51))),
        (
            "/spec/workload/podAnnotations",
            serde_json::json!({"example.com/Some_key.1": "x", "Plain": "y"}),
        ),
        (
            "/spec/workload/resources",
            serde_json::json!({"requests": {"cpu": "500m", "memory": "1.5Gi"}, "limits": {"cpu": 2}}),
        ),
    ] {
        let object = with(base.clone(), pointer, value.clone());
        assert!(
            cel(&object, None).is_empty(),
            "{pointer}={value}: {:?}",
            cel(&object, None)
        );
    }
    // The overlap follows a longer access-token lifetime; equal is enough; HS256 is
    // issued only with legacyHs256.
    let longer = with(
        with(
            base.clone(),
            "/spec/security",
            serde_json::json!({"accessTokenExpireMinutes": 120}),
        ),
        "/spec/tokens",
        serde_json::json!({"signingKeys": {"rotationPeriodDays": 30, "overlapMinutes": 119}}),
    );
    assert!(
        cel(&longer, None)
            .iter()
            .any(|e| e.contains("overlapMinutes"))
    );
    for ok in [
        serde_json::json!({"signingKeys": {"rotationPeriodDays": 30, "overlapMinutes": 120}}),
        serde_json::json!({"legacyHs256": true, "accessTokenAlgorithm": "HS256"}),
    ] {
        let object = with(
            with(
                base.clone(),
                "/spec/security",
                serde_json::json!({"accessTokenExpireMinutes": 120}),
            ),
            "/spec/tokens",
            ok.clone(),
        );
        assert!(
            cel(&object, None).is_empty(),
            "{ok}: {:?}",
            cel(&object, None)
        );
    }
    // efConstruction exactly 2 * m is allowed.
    let edge = with(
        base,
        "/spec/database/hnsw",
        serde_json::json!({"m": 32, "efConstruction": 64}),
    );
    assert!(cel(&edge, None).is_empty());
}

#[test]
fn schema_bounds_are_declared_for_every_numeric_and_decimal_field() {
    let s = schema();
    let spec = &s["properties"]["spec"]["properties"];
    let hnsw = &spec["database"]["properties"]["hnsw"]["properties"];
    for (field, min, max) in [
        ("m", 2.0, 100.0),
        ("efConstruction", 4.0, 1000.0),
        ("efSearch", 1.0, 1000.0),
    ] {
        assert_eq!(hnsw[field]["minimum"].as_f64(), Some(min), "{field}");
        assert_eq!(hnsw[field]["maximum"].as_f64(), Some(max), "{field}");
    }
    assert!(spec["recognition"]["properties"]["tolerance"]["pattern"].is_string());
    assert!(spec["liveness"]["properties"]["threshold"]["pattern"].is_string());
    for rate in ["register", "login", "default"] {
        assert!(
            spec["rateLimits"]["properties"][rate]["pattern"].is_string(),
            "{rate}"
        );
    }
    // The CEL rules on maps are bounded, or the API server refuses the CRD (cost).
    let workload = &spec["workload"]["properties"];
    assert_eq!(workload["podAnnotations"]["maxProperties"], 64);
    for map in ["requests", "limits"] {
        let m = &workload["resources"]["properties"][map];
        assert_eq!(m["maxProperties"], 16, "{map}");
        assert_eq!(m["additionalProperties"]["maxLength"], 64, "{map}");
    }
    // One condition per type, merged by type.
    let conditions = &s["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    // No floating-point field anywhere in the API.
    let text = serde_json::to_string(&s).unwrap();
    assert!(
        !text.contains("\"type\":\"number\""),
        "the API must not hold floats"
    );
}
