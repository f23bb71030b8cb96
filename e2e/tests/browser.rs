//! Browser end-to-end: real Chromium, a fake camera fed from a face photo, the camera
//! page served by a real `faceid serve` process, at a desktop and a phone viewport:
//! register (consent required), log in with the camera, log in with an uploaded photo
//! when the camera is denied, and the page's camera, tab and screen-reader behaviour
//! (`e2e/browser/camera.cjs` lists its checks). The screenshots are kept in
//! `e2e/artifacts/` (git-ignored); with `UPDATE_SCREENSHOTS=1` they are also copied to
//! `docs/screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::Command;

use faceid_e2e::{
    ServiceProcess, faces_dir, free_port, repo_root, required_env, service_env, write_y4m,
};

#[tokio::test]
async fn camera_page_registers_and_logs_in_in_chromium() {
    let chromium = required_env("CHROMIUM").unwrap();
    let node_path = required_env("NODE_PATH").unwrap();
    let schema = format!(
        "browser_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let env = service_env(
        &schema,
        "browser",
        "browser-e2e-admin-key",
        &[("LOG_FORMAT", "json")],
    )
    .unwrap();
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
    let photo = faces_dir().join("genuine/jim_parsons_1.png");
    let screenshots = [
        "camera-desktop.png",
        "camera-desktop-register.png",
        "camera-phone.png",
        "camera-phone-denied.png",
    ];
    for name in screenshots {
        let _ = std::fs::remove_file(artifacts.join(name));
    }

    let out = Command::new("node")
        .arg(repo_root().join("e2e/browser/camera.cjs"))
        .args([
            format!("{}/", service.url),
            video.display().to_string(),
            artifacts.display().to_string(),
            "sheldon".to_owned(),
            photo.display().to_string(),
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
    for key in ["login", "phone_login", "upload_login"] {
        assert!(
            summary[key].as_str().unwrap().contains("Confidence score"),
            "{key}: {stdout}"
        );
    }
    // The behaviours the issue asked for were each checked, not skipped.
    let checks: Vec<&str> = summary["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for expected in [
        "front camera asked for",
        "Start camera again does not open a second stream",
        "preview mirrored, snapshot not",
        "camera off while the page is hidden",
        "camera off after capture",
        "captured photo is not mirrored",
        "no enrolment without consent",
        "tablist has two tabs",
        "ArrowRight selects and focuses Register",
        "results and errors are live regions",
        "autocomplete attributes for password managers",
        "camera off when switching to upload",
        "the page runs within its Content-Security-Policy",
        "phone: one stream for repeated Start camera",
        "phone: nothing wider than the screen",
        "phone: error in the alert region",
        "phone: login with the fake camera",
        "denied: clear message in an alert",
        "denied: upload input for a front-camera photo, focused",
        "denied: login with an uploaded photo",
        "no camera: the page starts on the upload fallback",
    ] {
        assert!(
            checks.contains(&expected),
            "not checked: {expected}\n{stdout}"
        );
    }
    let docs = repo_root().join("docs/screenshots");
    let update = std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1");
    for name in screenshots {
        let shot = artifacts.join(name);
        assert!(
            std::fs::metadata(&shot).map_or(0, |m| m.len()) > 10_000,
            "screenshot {name} missing"
        );
        if update {
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::copy(&shot, docs.join(name)).unwrap();
        }
    }
    let _ = std::fs::remove_file(&video);
}
