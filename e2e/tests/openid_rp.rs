//! OpenID Connect with a real relying party: two tenants (two `faceid serve` processes,
//! each with its own generated keys and its own registered user), and a certified client
//! library (npm `openid-client`) driving discovery, authorization code + PKCE through the
//! face-login page in headless Chromium with a fake camera, the token exchange with ID
//! token validation against the JWKS, userinfo, introspection, refresh, RP-initiated
//! logout, and the refusals (replayed code, wrong state, nonce or verifier, another
//! client, unregistered redirect URI, `alg: none`, HS256 keyed with a public key, the
//! other tenant's keys). `e2e/browser/oidc_rp.mjs` lists its checks. A second test runs
//! docs/INTEGRATION.md's Python examples as written (Flask + Authlib, PyJWT) against two
//! tenants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::Command;

use faceid_e2e::{
    ServiceProcess, faces_dir, free_port, repo_root, required_env, service_env, write_y4m,
};
use serde_json::json;
use sha2::{Digest, Sha256};

const PHOTO: &str = "genuine/jim_parsons_1.png";

struct Tenant {
    service: ServiceProcess,
    issuer: String,
    secret: String,
    username: String,
}

async fn start_tenant(name: &str) -> Tenant {
    let schema = format!(
        "oidc_{name}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let port = free_port().unwrap();
    let issuer = format!("http://127.0.0.1:{port}");
    let secret = format!("{name}-client-secret-{}", uuid::Uuid::new_v4().simple());
    let hash: String = Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let alg = if name == "a" { "EdDSA" } else { "ES256" };
    let clients = format!(
        r#"[{{"client_id":"app-{name}","redirect_uris":["http://localhost:3000/callback"],
             "post_logout_redirect_uris":["http://localhost:3000/signed-out"],
             "secret_sha256":"{hash}","id_token_signed_response_alg":"{alg}"}}]"#
    );
    let env = service_env(
        &schema,
        &format!("oidc-{name}"),
        "oidc-e2e-admin-key-0123",
        &[
            ("ISSUER_URL", issuer.as_str()),
            ("OIDC_CLIENTS", clients.as_str()),
            ("LOG_FORMAT", "json"),
        ],
    )
    .unwrap();
    let service = ServiceProcess::start(&env, port, &format!("oidc-{name}"))
        .await
        .unwrap();
    let username = format!("sheldon_{name}");
    let form = reqwest::multipart::Form::new()
        .text("username", username.clone())
        .text("email", format!("{username}@example.org"))
        .text("password", "correct horse battery")
        .part(
            "face_image",
            reqwest::multipart::Part::bytes(std::fs::read(faces_dir().join(PHOTO)).unwrap())
                .file_name("face.png"),
        );
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/register", service.url))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    Tenant {
        service,
        issuer,
        secret,
        username,
    }
}

/// What a relying-party script needs of tenant `t` and its client `app-<name>` (ID tokens
/// signed `alg`), with the script's own `extra` fields.
fn client_json(t: &Tenant, name: &str, alg: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({
        "issuer": t.issuer,
        "client_id": format!("app-{name}"),
        "client_secret": t.secret,
        "redirect_uri": "http://localhost:3000/callback",
        "id_token_alg": alg,
    });
    if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    v
}

/// Runs a relying-party script (`what`, for messages) to its end: the names of the checks
/// it passed (its last line of output, `{"ok", "checks"}`) and its whole output; fails the
/// test with the tenants' logs when it failed.
fn run_relying_party(
    mut command: Command,
    what: &str,
    tenants: [&Tenant; 2],
) -> (Vec<String>, String) {
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} run failed:\n{stdout}\n{}\ntenant A log:\n{}\ntenant B log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tenants[0].service.log_tail(),
        tenants[1].service.log_tail()
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["ok"], true, "{stdout}");
    let checks = summary["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    (checks, stdout)
}

#[tokio::test]
async fn a_certified_client_signs_in_to_two_tenants_by_face() {
    let chromium = required_env("CHROMIUM").unwrap();
    let node_path = required_env("NODE_PATH").unwrap();
    let a = start_tenant("a").await;
    let b = start_tenant("b").await;

    let artifacts = repo_root().join("e2e/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let video = artifacts.join("oidc-camera.y4m");
    write_y4m(&faces_dir().join(PHOTO), &video, 640, 480, 30).unwrap();
    let tenant_json = |t: &Tenant, name: &str, alg: &str| {
        client_json(
            t,
            name,
            alg,
            json!({
                "post_logout_redirect_uri": "http://localhost:3000/signed-out",
                "username": t.username,
            }),
        )
    };
    for shot in ["oidc-login-desktop.png", "oidc-login-phone.png"] {
        let _ = std::fs::remove_file(artifacts.join(shot));
    }
    let config = serde_json::json!({
        "video": video.display().to_string(),
        "artifacts": artifacts.display().to_string(),
        "tenants": [tenant_json(&a, "a", "EdDSA"), tenant_json(&b, "b", "ES256")],
    });
    let config_path = artifacts.join("oidc-rp.json");
    std::fs::write(&config_path, config.to_string()).unwrap();

    let mut node = Command::new("node");
    node.arg(repo_root().join("e2e/browser/oidc_rp.mjs"))
        .arg(&config_path)
        .env("CHROMIUM", chromium)
        .env("NODE_PATH", node_path);
    let (checks, stdout) = &run_relying_party(node, "relying-party", [&a, &b]);
    let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
    // Every behaviour was checked, for both tenants, not skipped.
    for tenant in ["tenant A", "tenant B"] {
        for what in [
            "redirected back with code, state and iss",
            "ID token validated by openid-client (signature via JWKS, iss, aud, nonce)",
            "amr face, auth_time, liveness claim",
            "userinfo for the same subject",
            "access token verifies at a resource server with the JWKS",
            "introspection says active",
            "replayed code refused",
            "a replayed code revokes what it bought",
            "signed in by keyboard on a phone viewport",
            "wrong state refused by the client",
            "wrong PKCE verifier refused",
            "wrong nonce refused by the client",
            "a code for another client refused",
            "unregistered redirect URI shown an error, not redirected",
            "refresh rotates the refresh token and returns an ID token",
            "the spent refresh token is refused",
            "RP-initiated logout returns to the app with its state",
            "after logout introspection says inactive",
            "after logout userinfo refuses the access token",
            "after logout the refresh token is refused",
            "alg none refused at userinfo",
            "HS256 keyed with the public key refused at userinfo",
            "HS256 forgery inactive at introspection",
        ] {
            let name = format!("{tenant}: {what}");
            assert!(
                checks.contains(&name.as_str()),
                "not checked: {name}\n{stdout}"
            );
        }
    }
    for name in [
        "tenant A: ID token signed EdDSA",
        "tenant B: ID token signed ES256",
        "tenant A's access token refused by tenant B's JWKS",
        "tenant B's ID token refused by tenant A's JWKS",
        "the two tenants publish different keys",
        "an ID token checked against another issuer is refused",
        "an ID token checked for another audience is refused",
        "the same ID token verifies for its own issuer and audience",
    ] {
        assert!(checks.contains(&name), "not checked: {name}\n{stdout}");
    }
    // The login page as a user sees it, kept for the docs (`UPDATE_SCREENSHOTS=1`).
    let update = std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1");
    for shot in ["oidc-login-desktop.png", "oidc-login-phone.png"] {
        let file = artifacts.join(shot);
        assert!(
            std::fs::metadata(&file).map_or(0, |m| m.len()) > 10_000,
            "screenshot {shot} missing"
        );
        if update {
            std::fs::copy(&file, repo_root().join("docs/screenshots").join(shot)).unwrap();
        }
    }
    let _ = std::fs::remove_file(&video);
}

/// docs/INTEGRATION.md's Python examples, run as written: the Flask app signing in with
/// Authlib (EdDSA at one tenant, ES256 at the other), and the resource server verifying
/// the access token with PyJWT and introspection (`e2e/python/oidc_authlib.py`).
#[tokio::test]
async fn the_documented_python_app_signs_in_with_authlib() {
    let python = required_env("FACEID_PYTHON").unwrap();
    let a = start_tenant("a").await;
    let b = start_tenant("b").await;
    let tenant_json = |t: &Tenant, name: &str, alg: &str| {
        let photo = faces_dir().join(PHOTO).display().to_string();
        client_json(t, name, alg, json!({"photo": photo}))
    };
    let config = serde_json::json!({
        "tenants": [tenant_json(&a, "a", "EdDSA"), tenant_json(&b, "b", "ES256")],
    });
    let artifacts = repo_root().join("e2e/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let config_path = artifacts.join("oidc-authlib.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let mut authlib = Command::new(python);
    authlib
        .arg(repo_root().join("e2e/python/oidc_authlib.py"))
        .arg(&config_path);
    let (checks, stdout) = &run_relying_party(authlib, "Authlib", [&a, &b]);
    let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
    for (tenant, alg) in [("tenant A", "EdDSA"), ("tenant B", "ES256")] {
        for what in [
            "Authlib sends PKCE S256, state and nonce".to_owned(),
            "the login page is served".to_owned(),
            "redirected to the registered callback".to_owned(),
            "Authlib's callback accepts the code".to_owned(),
            format!("ID token verified by Authlib ({alg})"),
            "amr face and the liveness claim".to_owned(),
            "PyJWT verifies the access token with the JWKS".to_owned(),
            "the other tenant's JWKS refuses it".to_owned(),
            "introspection says active".to_owned(),
            "a revoked refresh token is refused".to_owned(),
            "a revoked access token is inactive at once".to_owned(),
        ] {
            let name = format!("{tenant}: {what}");
            assert!(
                checks.contains(&name.as_str()),
                "not checked: {name}\n{stdout}"
            );
        }
    }
}
