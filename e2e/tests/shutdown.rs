//! Graceful shutdown under load: the real `faceid serve` process gets SIGTERM while
//! registrations are in flight. Every request it had accepted completes with a non-5xx
//! answer, connections after the signal are refused (not answered 5xx), the process exits
//! 0 promptly, and no user is half-written: users rows == 201 answers, each with its
//! template and its refresh token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faceid_e2e::{
    Guarded, faceid_binary, faces_dir, free_port, repo_root, required_env, spawn_guarded,
};

/// Starts `faceid serve` for a fresh schema under a watchdog (killed however the test
/// ends); returns the process, its URL and log path.
fn start(schema: &str, port: u16) -> (Guarded, String, std::path::PathBuf) {
    let log = std::env::temp_dir().join(format!("faceid-e2e-shutdown-{}.log", std::process::id()));
    let out = std::fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let child = spawn_guarded(faceid_binary().unwrap(), |cmd| {
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", required_env("DATABASE_URL").unwrap())
            .env("DATABASE_SCHEMA", schema)
            .env("TENANT", schema.replace('_', "-"))
            .env("SECRET_KEY", "shutdown-test-secret-0123456789abcdef")
            .env("ADMIN_API_KEY", "shutdown-admin-key-0123456789")
            .env("MODELS_DIR", repo_root().join("models"))
            .env("ORT_DYLIB_PATH", required_env("ORT_DYLIB_PATH").unwrap())
            .env("RATE_LIMIT_REGISTER", "1000/hour")
            .env("FACE_POOL_SIZE", "2")
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .stdout(out)
            .stderr(err)
            .stdin(Stdio::null());
    })
    .unwrap();
    (child, format!("http://127.0.0.1:{port}"), log)
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(faces_dir().join("genuine").join(name)).unwrap()
}

async fn register(
    client: &reqwest::Client,
    url: &str,
    username: &str,
    image: Vec<u8>,
) -> Result<u16, reqwest::Error> {
    let form = reqwest::multipart::Form::new()
        .text("username", username.to_owned())
        .text("email", format!("{username}@example.com"))
        .text("password", "correct horse battery")
        .part(
            "face_image",
            reqwest::multipart::Part::bytes(image).file_name("face.jpg"),
        );
    let r = client
        .post(format!("{url}/api/v1/auth/register"))
        .multipart(form)
        .send()
        .await?;
    Ok(r.status().as_u16())
}

#[tokio::test]
async fn sigterm_under_load_finishes_in_flight_requests_and_loses_nothing() {
    let schema = format!("sd_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let port = free_port().unwrap();
    let (mut child, url, log) = start(&schema, port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // Ready?
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "faceid exited with {status}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if let Ok(r) = client.get(format!("{url}/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "faceid not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let photos = [
        "george_w_bush_1.jpg",
        "colin_powell_1.jpg",
        "barack_obama_1.jpg",
        "hugo_chavez_1.jpg",
        "tony_blair_1.jpg",
        "jacques_chirac_1.jpg",
    ];
    // Sixteen registrations at once: the engine pool runs two at a time, so when the
    // first answer arrives most are still being processed. The signal is sent then,
    // whatever the machine's speed.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let in_flight: Vec<_> = (0..16)
        .map(|i| {
            let (client, url, image) =
                (client.clone(), url.clone(), photo(photos[i % photos.len()]));
            let done = done_tx.clone();
            tokio::spawn(async move {
                let r = register(&client, &url, &format!("inflight{i}"), image).await;
                let _ = done.send(());
                (r, Instant::now())
            })
        })
        .collect();
    done_rx.recv().await.unwrap();
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    // After the signal new connections are refused, never answered 5xx.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = register(&client, &url, "late", photo("george_w_bush_3.jpg")).await;
    match &late {
        Ok(status) => assert!(*status < 500, "a request after SIGTERM got {status}"),
        Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
    }

    let mut answered = Vec::new();
    let mut after_signal = 0;
    for h in in_flight {
        let (reply, at) = h.await.unwrap();
        after_signal += usize::from(at > signalled);
        answered.push(reply);
    }
    assert!(
        after_signal > 0,
        "every request finished before SIGTERM: nothing was in flight"
    );
    eprintln!("answers ({after_signal} completed after SIGTERM): {answered:?}");
    for (i, a) in answered.iter().enumerate() {
        match a {
            Ok(status) => assert!(*status < 500, "in-flight request {i} answered {status}"),
            Err(e) => panic!(
                "in-flight request {i} was dropped: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    }

    // The process exits by itself, cleanly and promptly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill();
            panic!("faceid did not exit within 30 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status}:\n{log_text}");
    assert!(log_text.contains("shutdown requested"), "{log_text}");
    eprintln!(
        "exited {:.1}s after SIGTERM",
        signalled.elapsed().as_secs_f64()
    );

    // No half-written user: rows == 201 answers, each complete.
    let created = answered
        .iter()
        .chain(std::iter::once(&late))
        .filter(|a| matches!(a, Ok(201)))
        .count() as i64;
    let pool = sqlx::PgPool::connect(&required_env("DATABASE_URL").unwrap())
        .await
        .unwrap();
    let count = |table: &str| {
        let sql = format!("SELECT count(*) FROM \"{schema}\".{table}");
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let users = count("users").await;
    let templates = count("face_embeddings").await;
    let tokens = count("refresh_tokens").await;
    eprintln!(
        "201 answers {created}, users {users}, templates {templates}, refresh tokens {tokens}"
    );
    assert!(created > 0, "no registration completed: {answered:?}");
    assert_eq!(users, created, "users rows == 201 answers");
    assert_eq!(templates, created, "every user has its template");
    assert_eq!(tokens, created, "every user got its refresh token");
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    let _ = std::fs::remove_file(&log);
}
