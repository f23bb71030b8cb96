//! The generated OpenAPI document is valid OpenAPI (checked by an independent validator,
//! `openapi-spec-validator` from PyPI, installed by `scripts/platform.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use faceid_service::http::openapi::ApiDoc;
use utoipa::OpenApi;

#[test]
fn openapi_document_validates() {
    let validator = std::env::var("OPENAPI_SPEC_VALIDATOR").unwrap_or_else(|_| {
        panic!("OPENAPI_SPEC_VALIDATOR is not set: run the tests through scripts/test.sh (or `source .dev/env`)")
    });
    let doc = ApiDoc::openapi().to_pretty_json().unwrap();
    let path = std::env::temp_dir().join(format!("faceid-openapi-{}.json", std::process::id()));
    std::fs::write(&path, &doc).unwrap();
    let out = std::process::Command::new(&validator)
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_error_response_uses_the_error_envelope() {
    let doc: serde_json::Value =
        serde_json::from_str(&ApiDoc::openapi().to_json().unwrap()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                // `/ready` answers its own check report with 503, by design.
                if (status.starts_with('4') || status.starts_with('5')) && path != "/ready" {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} error responses documented");
}
