//! The generated OpenAPI document is valid OpenAPI (checked by an independent validator,
//! `openapi-spec-validator` from PyPI, installed by `scripts/platform.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use faceid_service::config::DEFAULT_MAX_UPLOAD_BYTES;
use faceid_service::http::openapi::document;

#[test]
fn openapi_document_validates() {
    let validator = std::env::var("OPENAPI_SPEC_VALIDATOR").unwrap_or_else(|_| {
        panic!("OPENAPI_SPEC_VALIDATOR is not set: run the tests through scripts/test.sh (or `source .dev/env`)")
    });
    let doc = serde_json::to_string_pretty(&document(DEFAULT_MAX_UPLOAD_BYTES)).unwrap();
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
    let doc: serde_json::Value = document(DEFAULT_MAX_UPLOAD_BYTES);
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

#[test]
fn every_image_field_declares_the_upload_limit() {
    let doc: serde_json::Value = document(4096);
    let mut fields = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        for (field, property) in schema["properties"].as_object().into_iter().flatten() {
            if property["format"] == "binary" {
                assert_eq!(property["maxLength"], 4096, "{name}.{field}");
                assert_eq!(
                    property["minLength"], 1,
                    "{name}.{field}: an empty file is refused"
                );
                let description = property["description"].as_str().unwrap();
                assert!(description.contains("413"), "{name}.{field}: {description}");
                fields.push(format!("{name}.{field}"));
            }
        }
    }
    fields.sort();
    assert_eq!(
        fields,
        [
            "EraseForm.face_image",
            "FaceForm.face_image",
            "LoginForm.face_image",
            "RegisterForm.face_image"
        ]
    );
}

#[test]
fn path_ids_are_uuids_and_ids_returned_link_to_the_operations_using_them() {
    let doc: serde_json::Value = document(DEFAULT_MAX_UPLOAD_BYTES);
    let mut operations = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["name"].as_str().unwrap().ends_with("_id") {
                    assert_eq!(param["schema"]["format"], "uuid", "{method} {path}");
                }
            }
            operations.insert(op["operationId"].as_str().unwrap().to_owned(), op.clone());
        }
    }
    let link = |from: &str, status: &str, name: &str| -> serde_json::Value {
        let l = operations[from]["responses"][status]["links"][name].clone();
        assert!(l.is_object(), "{from} {status} has no link {name}");
        assert!(
            operations.contains_key(l["operationId"].as_str().unwrap()),
            "{from} -> {l}"
        );
        l
    };
    for (from, status, user_id) in [
        ("register", "201", "$response.body#/user/id"),
        ("login", "200", "$response.body#/user/id"),
        ("unlock", "200", "$response.body#/id"),
        ("deactivate", "200", "$response.body#/id"),
        ("activate", "200", "$response.body#/id"),
    ] {
        for to in ["unlock", "deactivate", "activate"] {
            assert_eq!(link(from, status, to)["parameters"]["user_id"], user_id);
        }
    }
    for (from, status) in [("register", "201"), ("login", "200"), ("refresh", "200")] {
        for to in ["refresh", "logout"] {
            assert_eq!(
                link(from, status, to)["requestBody"]["refresh_token"],
                "$response.body#/refresh_token"
            );
        }
    }
}
