//! Shared helpers of the service's integration tests: a real PostgreSQL + pgvector and
//! Redis (started by `scripts/platform.sh`, settings from `.dev/env` via
//! `scripts/test.sh`), the real face engine, and requests driven through the router.
#![allow(dead_code)]

pub mod faults;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use clap::Parser;
use faceid_service::config::ServeArgs;
use faceid_service::face::FaceEngine;
use faceid_service::state::AppState;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// An environment variable the tests cannot run without.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests through scripts/test.sh (or `scripts/platform.sh start && source .dev/env`)"
        )
    })
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The test photos: `testdata/faces` in the repository, or `FACES_DIR` for a bigger set.
pub fn faces_dir() -> PathBuf {
    std::env::var_os("FACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("testdata/faces"))
}

/// Bytes of a face image, e.g. `face("genuine/george_w_bush_1.jpg")`.
pub fn face(rel: &str) -> Vec<u8> {
    let path = faces_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The face engine, loaded once per test binary (sessions are expensive to build).
pub fn engine() -> FaceEngine {
    static ENGINE: OnceLock<FaceEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            required_env("ORT_DYLIB_PATH");
            let mut config = faceid_service::face::EngineConfig::new(repo_root().join("models"));
            config.pool_size = 2;
            FaceEngine::load(config).expect("loading the face engine")
        })
        .clone()
}

/// A fresh schema name, unique per call.
pub fn unique_schema(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
    )
}

/// Serve settings for a test tenant: defaults, plus `extra` flags (`--name value`).
pub fn serve_args(schema: &str, extra: &[&str]) -> ServeArgs {
    serve_args_with_url(schema, &required_env("DATABASE_URL"), extra)
}

/// [`serve_args`] with another database URL.
pub fn serve_args_with_url(schema: &str, database_url: &str, extra: &[&str]) -> ServeArgs {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }
    let database_url = database_url.to_owned();
    let tenant = schema.replace('_', "-");
    let mut args: Vec<String> = vec![
        "faceid".into(),
        "--database-url".into(),
        database_url,
        "--database-schema".into(),
        schema.into(),
        "--tenant".into(),
        tenant,
        "--secret-key".into(),
        format!("test-secret-{schema}-0123456789abcdef"),
        "--admin-api-key".into(),
        "test-admin-key-0123456789".into(),
        "--models-dir".into(),
        repo_root().join("models").display().to_string(),
    ];
    // Tests register many users from one address: generous limits unless a test sets its own.
    // They also enrol more people than face-only login admits by default (about one at
    // tolerance 0.6) and log in face-only: the gallery-size limit has its own tests
    // (tests/login_policy.rs), which set this flag themselves.
    for (flag, value) in [
        ("--rate-limit-register", "1000/hour"),
        ("--rate-limit-login", "1000/minute"),
        ("--face-only-accept-risk", "true"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag.to_owned(), value.to_owned()]);
        }
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Cli::try_parse_from(args).expect("test serve args").serve
}

/// A running tenant: state, router and the settings it was made with.
pub struct Tenant {
    pub state: AppState,
    pub app: Router,
    pub schema: String,
}

impl Tenant {
    /// A new tenant on its own schema, migrated. `extra` are serve flags.
    pub async fn new(extra: &[&str]) -> Tenant {
        let schema = unique_schema("t");
        Self::with_schema(&schema, extra).await
    }

    /// A tenant on a given schema.
    pub async fn with_schema(schema: &str, extra: &[&str]) -> Tenant {
        Self::with_schema_and_url(schema, &required_env("DATABASE_URL"), extra).await
    }

    /// A tenant on a given schema, reaching the database through `url`.
    pub async fn with_schema_and_url(schema: &str, url: &str, extra: &[&str]) -> Tenant {
        let args = serve_args_with_url(schema, url, extra);
        let state = AppState::new(args, engine()).expect("state");
        faceid_migrations::apply(state.db(), schema)
            .await
            .expect("migrations");
        let app = faceid_service::http::app(state.clone());
        Tenant {
            state,
            app,
            schema: schema.to_owned(),
        }
    }

    /// Sends a request from client IP `ip`.
    pub async fn send(&self, mut request: Request<Body>, ip: &str) -> Reply {
        let addr = SocketAddr::new(ip.parse().expect("ip"), 40000);
        request.extensions_mut().insert(ConnectInfo(addr));
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn register(&self, username: &str, image: &[u8], ip: &str) -> Reply {
        let email = format!("{username}@example.com");
        let body = Multipart::registration(username, &email, "correct horse battery", image)
            .request("/api/v1/auth/register");
        self.send(body, ip).await
    }

    pub async fn register_with(
        &self,
        username: &str,
        email: &str,
        password: &str,
        image: &[u8],
    ) -> Reply {
        let body = Multipart::registration(username, email, password, image)
            .request("/api/v1/auth/register");
        self.send(body, "192.0.2.10").await
    }

    pub async fn login(&self, image: &[u8], username: Option<&str>, ip: &str) -> Reply {
        let mut form = Multipart::new().file("face_image", "face.jpg", image);
        if let Some(u) = username {
            form = form.text("username", u);
        }
        self.send(form.request("/api/v1/auth/login"), ip).await
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        let mut r = Request::get(path);
        if let Some(t) = bearer {
            r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(r.body(Body::empty()).expect("request"), "127.0.0.1")
            .await
    }

    pub async fn post_json(&self, path: &str, json: Value, bearer: Option<&str>) -> Reply {
        let mut r = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = bearer {
            r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(
            r.body(Body::from(json.to_string())).expect("request"),
            "127.0.0.1",
        )
        .await
    }

    /// `POST /api/v1/auth/refresh` with `{"refresh_token": token}`.
    pub async fn refresh(&self, token: &str) -> Reply {
        self.post_json(
            "/api/v1/auth/refresh",
            serde_json::json!({ "refresh_token": token }),
            None,
        )
        .await
    }

    /// Replays the already rotated refresh token `spent`: refused, and the token it was
    /// rotated into (`successor`) is revoked with it.
    pub async fn expect_replay_revokes(&self, spent: &str, successor: &str) {
        self.refresh(spent)
            .await
            .expect_error(401, "invalid_refresh_token");
        self.refresh(successor)
            .await
            .expect_error(401, "invalid_refresh_token");
    }

    /// `POST /api/v1/users/me/faces` with `image`, as the holder of `token`.
    pub async fn enrol(&self, token: &str, image: &[u8], ip: &str) -> Reply {
        let mut r = Multipart::new()
            .file("face_image", "face.jpg", image)
            .request("/api/v1/users/me/faces");
        r.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        self.send(r, ip).await
    }

    /// `DELETE /api/v1/users/me` as the holder of `token`, with `proof` as its form (none:
    /// an empty body).
    pub async fn erase(&self, token: &str, proof: Option<Multipart>, ip: &str) -> Reply {
        let mut r = match proof {
            Some(form) => form.request("/api/v1/users/me"),
            None => Request::post("/api/v1/users/me")
                .body(Body::empty())
                .expect("request"),
        };
        *r.method_mut() = axum::http::Method::DELETE;
        r.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        self.send(r, ip).await
    }

    pub async fn admin_post(&self, path: &str) -> Reply {
        let r = Request::post(path)
            .header(header::AUTHORIZATION, "Bearer test-admin-key-0123456789")
            .body(Body::empty())
            .expect("request");
        self.send(r, "127.0.0.1").await
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        self.get(path, Some("test-admin-key-0123456789")).await
    }

    /// Runs a scalar SQL query inside this tenant's schema.
    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.state.db())
            .await
            .expect(sql)
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Reply {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("<none>")
    }

    /// Asserts the status, printing the body on failure.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts a JSON error with this status and code, and the request id.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.code(), code, "body: {}", self.text);
        assert!(
            self.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            self.text
        );
        assert!(
            self.json["request_id"].as_str().is_some(),
            "no request id: {}",
            self.text
        );
        self
    }

    pub fn access_token(&self) -> String {
        self.json["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub fn refresh_token(&self) -> String {
        self.json["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned()
    }

    pub fn user_id(&self) -> String {
        self.json["user"]["id"]
            .as_str()
            .expect("user.id")
            .to_owned()
    }
}

/// A multipart/form-data body built by hand.
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    pub fn new() -> Self {
        Self {
            boundary: format!("----faceid{}", uuid::Uuid::new_v4().simple()),
            body: Vec::new(),
        }
    }

    /// The registration form: username, email, password and a face image.
    pub fn registration(username: &str, email: &str, password: &str, image: &[u8]) -> Self {
        Self::new()
            .text("username", username)
            .text("email", email)
            .text("password", password)
            .file("face_image", "face.jpg", image)
    }

    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self
    }

    pub fn file(mut self, name: &str, filename: &str, data: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn request(mut self, path: &str) -> Request<Body> {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        Request::post(path)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={}", self.boundary),
            )
            .header(header::CONTENT_LENGTH, self.body.len())
            .body(Body::from(self.body))
            .expect("request")
    }
}
