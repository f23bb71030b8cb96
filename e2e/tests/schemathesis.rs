//! Generated API tests: schemathesis (PyPI, installed by `scripts/platform.sh`) reads the
//! service's own `/openapi.json` and sends generated valid and invalid requests (examples,
//! coverage, fuzzing and stateful phases, a bounded number per operation) to a real
//! `faceid serve` on loopback. Every check but `positive_data_acceptance` must pass: no
//! 5xx, every response matches its documented status, content type, headers and schema,
//! invalid input is refused, and authentication is never ignored. `positive_data_acceptance`
//! is left out because a schema cannot say "a photo with one live face": schema-valid
//! random bytes are rightly refused with 400.
//!
//! Two runs: the signed-in user's operations with a real user's access token, then every
//! operation with the admin key. Afterwards the service's own metrics must show no
//! 5xx at all.
//!
//! The stateful phase follows the document's `links` (a returned user id into the admin
//! operations on that user, a returned refresh token into refresh and logout). The admin
//! run is given a real user's id for `unlock` (a schemathesis config file), so its 200
//! answer leads, through the links, to `activate` and `deactivate` on a real account;
//! the run must report the declared links and cover some of them.
//!
//! Settings: `SCHEMATHESIS` (the CLI; required), `SCHEMATHESIS_MAX_EXAMPLES` (default 25),
//! `SCHEMATHESIS_SEED` (default 20260101).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

use std::process::Stdio;
use std::time::{Duration, Instant};

use faceid_e2e::{ServiceProcess, faces_dir, free_port, required_env, service_env};

const ADMIN_KEY: &str = "schemathesis-admin-key-0123456789";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Runs the schemathesis CLI against `url` with `auth`, `extra` arguments and, when
/// given, `config` as its `schemathesis.toml`; panics with its output unless it passes;
/// returns the output.
async fn schemathesis(
    cli: &str,
    url: &str,
    auth: &str,
    extra: &[&str],
    config: Option<&str>,
    label: &str,
) -> String {
    let work = std::env::temp_dir().join(format!(
        "faceid-schemathesis-{label}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&work).unwrap();
    let config_file = work.join("schemathesis.toml");
    std::fs::write(&config_file, config.unwrap_or_default()).unwrap();
    let max_examples = env_or("SCHEMATHESIS_MAX_EXAMPLES", "25");
    let seed = env_or("SCHEMATHESIS_SEED", "20260101");
    let mut cmd = tokio::process::Command::new(cli);
    cmd.arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(format!("{url}/openapi.json"))
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            &max_examples,
            "--seed",
            &seed,
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--no-color",
            "-H",
            &format!("Authorization: Bearer {auth}"),
        ])
        .args(extra)
        // Hypothesis keeps its example database in the working directory: not the repo.
        .current_dir(&work)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(150), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ({label}) ran past 150 s"))
        .unwrap_or_else(|e| panic!("running {cli}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&work);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" generated, "))
        .collect();
    eprintln!(
        "schemathesis {label}: {} in {:.1}s",
        summary.join(" | ").trim(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.status.success(),
        "schemathesis ({label}) found failures:\n{text}"
    );
    text
}

/// The stateful phase's `API Links: C covered / S selected / T total (I inferred)` line
/// as (covered, total, inferred).
fn links_line(text: &str) -> Option<(u32, u32, u32)> {
    let line = text.lines().find(|l| l.contains("API Links:"))?;
    let numbers: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [covered, _selected, total, inferred] => Some((covered, total, inferred)),
        _ => None,
    }
}

#[tokio::test]
async fn generated_requests_find_no_5xx_and_no_schema_violation() {
    let cli = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| {
        panic!(
            "SCHEMATHESIS is not set: run the tests through scripts/test.sh (scripts/platform.sh installs schemathesis into .dev/venv and writes SCHEMATHESIS to .dev/env)"
        )
    });
    let schema = format!("st_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let env = service_env(
        &schema,
        &schema.replace('_', "-"),
        ADMIN_KEY,
        &[
            // Generated requests all come from 127.0.0.1: limits high enough that the
            // handlers, not the limiter, answer them (429 stays documented and checked).
            ("RATE_LIMIT_REGISTER", "100000/hour"),
            ("RATE_LIMIT_LOGIN", "100000/minute"),
            ("RATE_LIMIT_DEFAULT", "100000/hour"),
            ("FACE_POOL_SIZE", "2"),
        ],
    )
    .unwrap();
    let service = ServiceProcess::start(&env, free_port().unwrap(), "schemathesis")
        .await
        .unwrap();

    // A real user, so the user endpoints are tested past authentication.
    let client = reqwest::Client::new();
    let photo = std::fs::read(faces_dir().join("genuine/colin_powell_1.jpg")).unwrap();
    let form = reqwest::multipart::Form::new()
        .text("username", "schemathesis")
        .text("email", "schemathesis@example.com")
        .text("password", "correct horse battery")
        .part(
            "face_image",
            reqwest::multipart::Part::bytes(photo).file_name("face.jpg"),
        );
    let reg = client
        .post(format!("{}/api/v1/auth/register", service.url))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(reg.status().as_u16(), 201);
    let reg: serde_json::Value = reg.json().await.unwrap();
    let user_token = reg["access_token"].as_str().unwrap().to_owned();
    let user_id = reg["user"]["id"].as_str().unwrap().to_owned();

    // The user's operations first: the admin run below may deactivate the account,
    // which revokes its tokens.
    schemathesis(
        &cli,
        &service.url,
        &user_token,
        &[
            "--include-path-regex",
            "/me",
            "--phases",
            "examples,coverage,fuzzing",
        ],
        None,
        "user",
    )
    .await;
    // `unlock` gets the real user's id; the links carry it to the other admin operations.
    let config = format!(
        "[[operations]]\ninclude-operation-id = \"unlock\"\nparameters = {{ user_id = \"{user_id}\" }}\n"
    );
    let admin = schemathesis(
        &cli,
        &service.url,
        ADMIN_KEY,
        &["--phases", "examples,coverage,fuzzing,stateful"],
        Some(&config),
        "admin",
    )
    .await;
    let (covered, total, inferred) =
        links_line(&admin).unwrap_or_else(|| panic!("the stateful phase did not run:\n{admin}"));
    eprintln!("stateful links: {covered} covered of {total} ({inferred} inferred)");
    assert!(
        total >= inferred + 21,
        "the document's 21 declared links were not read:\n{admin}"
    );
    assert!(
        covered >= 3,
        "the stateful phase followed only {covered} links:\n{admin}"
    );

    // The service itself saw no server error.
    let metrics = service.metrics().await.unwrap();
    let server_errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("faceid_http_requests_total") && l.contains("5xx"))
        .collect();
    assert!(
        server_errors.is_empty(),
        "5xx answered: {server_errors:?}\n{}",
        service.log_tail()
    );
    let served: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("faceid_http_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    eprintln!("the service answered {served} requests, none 5xx");
    assert!(served > 100.0, "schemathesis sent only {served} requests");

    let pool = sqlx::PgPool::connect(&required_env("DATABASE_URL").unwrap())
        .await
        .unwrap();
    drop(service);
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}
