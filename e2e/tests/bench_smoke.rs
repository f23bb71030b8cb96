//! The benchmarks' smoke modes (tiny sizes, a few requests), so `faceid-bench` does not
//! rot: each subcommand runs end to end against the debug `faceid` built beside this test
//! and must print its tables. The Python reference is skipped here (installing it takes
//! minutes); `faceid-bench side-by-side` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::Command;

use faceid_e2e::{ServiceProcess, faceid_binary, free_port, repo_root, required_env};

fn bench(args: &[&str]) -> String {
    bench_with_progress(args).0
}

/// [`bench`], with what it printed on stderr (progress).
fn bench_with_progress(args: &[&str]) -> (String, String) {
    let faceid = faceid_binary().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_faceid-bench"))
        .arg("--smoke")
        .arg("--faceid")
        .arg(&faceid)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "faceid-bench {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The environment the benches need; missing settings fail loudly (run through
/// scripts/test.sh, which sources .dev/env).
fn platform() -> (String, String) {
    (
        required_env("DATABASE_URL").unwrap(),
        required_env("ORT_DYLIB_PATH").unwrap(),
    )
}

#[test]
fn pipeline_smoke() {
    platform();
    let out = bench(&["pipeline"]);
    assert!(out.contains("## Pipeline"), "{out}");
    assert!(out.contains("GFLOP/s"), "{out}");
    // A thin wrapper: arguments after `--` reach `faceid bench`.
    let out = bench(&["pipeline", "--", "--face-recognition-precision", "float32"]);
    assert!(
        out.contains("## Pipeline (`faceid bench --runs 1 --face-recognition-precision float32`)"),
        "{out}"
    );
    assert!(out.contains("float32"), "{out}");
}

#[tokio::test]
async fn http_smoke_against_a_running_service() {
    let (database_url, ort) = platform();
    let schema = format!(
        "bench_http_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let env = [
        ("DATABASE_URL", database_url.as_str()),
        ("DATABASE_SCHEMA", &schema),
        ("SECRET_KEY", "bench-smoke-secret-key-0123456789abcdef-0123"),
        ("ADMIN_API_KEY", "bench-smoke-admin-key-0123456789"),
        ("RATE_LIMIT_ENABLED", "false"),
        // The bench logs in face-only against a gallery past the safe size and registers
        // repeated photos: both guards opened, as in `Platform::service_env`.
        ("FACE_ONLY_ACCEPT_RISK", "true"),
        ("ALLOW_DUPLICATE_FACES", "true"),
        ("ORT_DYLIB_PATH", &ort),
        ("MODELS_DIR", &repo_root().join("models").to_string_lossy()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let svc = ServiceProcess::start(&env, free_port().unwrap(), "bench-http")
        .await
        .unwrap();
    let url = svc.url.clone();
    let out = tokio::task::spawn_blocking(move || bench(&["http", "--url", &url, "--register"]))
        .await
        .unwrap();
    drop(svc);
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    for case in [
        "| match | 1 |",
        "| nonmatch | 2 |",
        "| noface | 1 |",
        "| register | 2 |",
    ] {
        assert!(out.contains(case), "no row {case}:\n{out}");
    }
    // every matching login found its person, every registration succeeded
    let row = |case: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(case))
            .unwrap()
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect()
    };
    let m = row("| match | 1 |");
    assert_eq!(m[3], m[10], "matching logins not all correct: {m:?}");
    let r = row("| register | 1 |");
    assert_eq!(r[3], r[10], "registrations not all 201: {r:?}");
}

#[test]
fn http_refuses_a_non_loopback_target() {
    let out = Command::new(env!("CARGO_BIN_EXE_faceid-bench"))
        .args(["--smoke", "http", "--url", "http://192.0.2.1:8000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn side_by_side_smoke_without_the_reference() {
    platform();
    let out = bench(&["side-by-side"]);
    assert!(out.contains("### ours (faceid, Rust)"), "{out}");
    assert!(out.contains("| match | 2 |"), "{out}");
}

#[test]
fn vectors_smoke() {
    platform();
    let (out, progress) = bench_with_progress(&["vectors"]);
    assert!(out.contains("## 1:N search at scale"), "{out}");
    // Each size's tables come under its own heading, printed as they are measured, with
    // progress counts on stderr.
    assert!(out.contains("### N = 300"), "{out}");
    for step in [
        "generating: 300/300",
        ".users: 300/300",
        ".face_embeddings: 300/300",
        "HNSW build: done",
    ] {
        assert!(
            progress.contains(step),
            "no progress line {step:?}:\n{progress}"
        );
    }
    assert!(out.contains("| 300 | HNSW ef_search=40"), "{out}");
    assert!(out.contains("real (calibration)"), "{out}");
    // the synthetic identities reproduce the calibrated distances roughly
    assert!(out.contains("**Targets at N = 300:**"), "{out}");
    // the face-only decision table, at the shipped and the stricter tolerance
    assert!(
        out.contains("**Face-only login against gallery size**"),
        "{out}"
    );
    assert!(out.contains("| 300 | 0.6 | "), "{out}");
    assert!(out.contains("| 300 | 0.5 | "), "{out}");
}

#[test]
fn footprint_smoke() {
    platform();
    let out = bench(&["footprint"]);
    assert!(out.contains("time to /ready 200"), "{out}");
    assert!(out.contains("**Targets:**"), "{out}");
}

#[test]
fn operator_scale_smoke() {
    platform();
    // The operator built beside this test, on the control plane of scripts/kube.sh.
    let operator = faceid_e2e::control_plane::operator_binary().unwrap();
    let out = bench(&["operator-scale", "--operator", operator.to_str().unwrap()]);
    assert!(out.contains("## Operator at scale"), "{out}");
    assert!(out.contains("| 3 |"), "{out}");
}
