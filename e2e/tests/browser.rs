//! Browser end-to-end: real Chromium, a fake camera fed from a face photo, the camera
//! page served by a real `faceid serve` process: register, log in, see success. The
//! screenshot is kept in `e2e/artifacts/` (git-ignored).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeMap;
use std::process::Command;

use faceid_e2e::{ServiceProcess, faces_dir, free_port, repo_root, required_env, write_y4m};

#[tokio::test]
async fn camera_page_registers_and_logs_in_in_chromium() {
    let chromium = required_env("CHROMIUM").unwrap();
    let node_path = required_env("NODE_PATH").unwrap();
    let schema = format!(
        "browser_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let env: BTreeMap<String, String> = [
        ("DATABASE_URL", required_env("DATABASE_URL").unwrap()),
        ("DATABASE_SCHEMA", schema.clone()),
        ("ORT_DYLIB_PATH", required_env("ORT_DYLIB_PATH").unwrap()),
        (
            "MODELS_DIR",
            repo_root().join("models").display().to_string(),
        ),
        ("TENANT", "browser".to_owned()),
        (
            "SECRET_KEY",
            "browser-e2e-secret-key-0123456789abcdef".to_owned(),
        ),
        ("ADMIN_API_KEY", "browser-e2e-admin-key".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let service = ServiceProcess::start(&env, free_port().unwrap(), "browser")
        .await
        .unwrap();

    let artifacts = repo_root().join("e2e/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let video = artifacts.join("camera.y4m");
    write_y4m(
        &faces_dir().join("genuine/jim_parsons_1.png"),
        &video,
        640,
        480,
        30,
    )
    .unwrap();
    let screenshot = artifacts.join("camera-login.png");
    let _ = std::fs::remove_file(&screenshot);

    let out = Command::new("node")
        .arg(repo_root().join("e2e/browser/camera.cjs"))
        .args([
            format!("{}/", service.url),
            video.display().to_string(),
            screenshot.display().to_string(),
            "sheldon".to_owned(),
        ])
        .env("CHROMIUM", chromium)
        .env("NODE_PATH", node_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser run failed:\n{stdout}\n{}\nservice log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        service.log_tail()
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["ok"], true, "{stdout}");
    assert!(
        summary["login"]
            .as_str()
            .unwrap()
            .contains("Confidence score"),
        "{stdout}"
    );
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "screenshot missing"
    );
    let _ = std::fs::remove_file(&video);
}
