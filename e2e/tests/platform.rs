//! The local platform end to end, as numbered steps: two tenants provisioned by the
//! operator's own database and configuration code, one real `faceid serve` process per
//! tenant started with exactly the environment the operator renders, real faces.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeMap;

use faceid_e2e::{ServiceProcess, faces_dir, free_port, repo_root, required_env};
use faceid_operator::config::{TenantSecrets, render_env};
use faceid_operator::crd::FaceIdTenant;
use faceid_operator::database::{self, ProvisionRequest};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

/// The people enrolled in each tenant: (username, registration photo, login photo). The
/// login photos pass the liveness check (docs/FACE_ENGINE.md lists the genuine photos that
/// do not: `kunal_nayyar_3.png` is one since small photos are detected at their own size).
const PEOPLE_A: &[(&str, &str, &str)] = &[
    ("bush", "george_w_bush_1.jpg", "george_w_bush_3.jpg"),
    ("powell", "colin_powell_1.jpg", "colin_powell_2.jpg"),
    ("parsons", "jim_parsons_1.png", "jim_parsons_2.png"),
];
const PEOPLE_B: &[(&str, &str, &str)] = &[
    ("cuoco", "kaley_cuoco_1.png", "kaley_cuoco_2.png"),
    ("nayyar", "kunal_nayyar_1.png", "kunal_nayyar_2.png"),
];

fn tenant(name: &str, schema: &str, extra_spec: &str) -> FaceIdTenant {
    let yaml = format!(
        r#"
apiVersion: faceid.dev/v1alpha1
kind: FaceIdTenant
metadata: {{ name: {name}, namespace: e2e }}
spec:
  database:
    connectionSecretRef: {{ name: pg, key: url }}
    schema: {schema}
    deletionPolicy: Delete
  workload:
    modelsDir: {models}
{extra_spec}
"#,
        models = repo_root().join("models").display()
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(faces_dir().join(name)).unwrap()
}

struct Api {
    url: String,
    client: reqwest::Client,
    admin_key: String,
}

impl Api {
    async fn post_form(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        image: Vec<u8>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut form = Form::new().part("face_image", Part::bytes(image).file_name("face.jpg"));
        for (k, v) in fields {
            form = form.text((*k).to_owned(), (*v).to_owned());
        }
        let r = self
            .client
            .post(format!("{}{path}", self.url))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    async fn register(&self, username: &str, image: Vec<u8>) -> (u16, Value) {
        let email = format!("{username}@example.com");
        let (s, v, _) = self
            .post_form(
                "/api/v1/auth/register",
                &[
                    ("username", username),
                    ("email", &email),
                    ("password", "correct horse battery"),
                ],
                image,
            )
            .await;
        (s, v)
    }

    async fn login(
        &self,
        image: Vec<u8>,
        username: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let fields: Vec<(&str, &str)> = username.map(|u| ("username", u)).into_iter().collect();
        self.post_form("/api/v1/auth/login", &fields, image).await
    }

    async fn get(&self, path: &str, bearer: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let r = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin_key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of one Prometheus sample line `name{labels} value`.
fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn two_tenants_on_one_platform() {
    // 1. PostgreSQL + pgvector and Redis come from scripts/platform.sh (via scripts/test.sh).
    let admin_url = required_env("DATABASE_URL").unwrap();
    let redis_url = required_env("REDIS_URL").unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    // 2. Provision two tenants with the operator's own code, with different thresholds
    //    and rate limits.
    let a = tenant(
        &format!("acme-{run}"),
        &format!("acme_{run}"),
        // Three people log in face-only at the shipped tolerance, past its safe size (1):
        // this tenant raises the size explicitly (tenant B's 0.55 serves 8 by default).
        "  recognition: { tolerance: \"0.6\" }\n  login: { faceOnlyMaxUsers: 3 }\n  security: { maxFailedLoginAttempts: 3, lockoutMinutes: 10 }\n  rateLimits: { login: 100/minute, register: 50/hour }",
    );
    let b = tenant(
        &format!("globex-{run}"),
        &format!("globex_{run}"),
        "  recognition: { tolerance: \"0.55\" }\n  liveness: { threshold: \"0.7\" }\n  rateLimits: { login: 4/minute, register: 50/hour }",
    );
    let pool = database::connect(&admin_url).await.unwrap();
    let mut envs = Vec::new();
    for t in [&a, &b] {
        let password = database::generate_secret(32);
        let provisioned = database::provision(&pool, &ProvisionRequest::for_tenant(t, &password))
            .await
            .unwrap();
        assert_eq!(provisioned.migrations_applied, vec![1, 2, 3, 4]);
        let secrets = TenantSecrets {
            database_url: database::role_database_url(&admin_url, &provisioned.role, &password)
                .unwrap(),
            secret_key: database::generate_secret(48),
            admin_api_key: database::generate_secret(32),
            template_key: database::generate_secret(48),
            redis_url: Some(redis_url.clone()),
            // The keys the operator generates for a new tenant (and HS256 off).
            signing_keys: faceid_operator::signing_keys::plan(
                None,
                faceid_operator::signing_keys::Rotation::of(&t.spec),
                chrono::Utc::now(),
                &mut |alg, created, not_before| {
                    faceid_keys::KeyEntry::generate(alg, created, not_before)
                },
            )
            .document
            .to_json(),
            legacy_hs256_default: false,
            oidc_client_secrets: Default::default(),
        };
        let mut env: BTreeMap<String, String> = render_env(t, &secrets);
        // What the container image provides beside the rendered environment.
        env.insert(
            "ORT_DYLIB_PATH".into(),
            required_env("ORT_DYLIB_PATH").unwrap(),
        );
        envs.push(env);
    }

    // 3. One service process per tenant, with exactly that environment.
    let svc_a = ServiceProcess::start(&envs[0], free_port().unwrap(), "tenant-a")
        .await
        .unwrap();
    let svc_b = ServiceProcess::start(&envs[1], free_port().unwrap(), "tenant-b")
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let api_a = Api {
        url: svc_a.url.clone(),
        client: client.clone(),
        admin_key: envs[0]["ADMIN_API_KEY"].clone(),
    };
    let api_b = Api {
        url: svc_b.url.clone(),
        client: client.clone(),
        admin_key: envs[1]["ADMIN_API_KEY"].clone(),
    };

    // 4. Register people in each tenant; each logs in with a different photo.
    let mut tokens_a = BTreeMap::new();
    for (api, people, tokens) in [
        (&api_a, PEOPLE_A, Some(&mut tokens_a)),
        (&api_b, PEOPLE_B, None),
    ] {
        let mut ids = BTreeMap::new();
        for (user, reg, _) in people {
            let (s, v) = api.register(user, photo(&format!("genuine/{reg}"))).await;
            assert_eq!(s, 201, "register {user}: {v}");
            ids.insert(*user, v["user"]["id"].as_str().unwrap().to_owned());
        }
        for (user, _, login) in people {
            let (s, v, _) = api.login(photo(&format!("genuine/{login}")), None).await;
            assert_eq!(s, 200, "login {user}: {v}");
            assert_eq!(
                v["user"]["id"].as_str().unwrap(),
                ids[user],
                "{user} logged in as someone else"
            );
        }
        if let Some(tokens) = tokens {
            let (_, v, _) = api
                .login(photo("genuine/george_w_bush_3.jpg"), Some("bush"))
                .await;
            tokens.insert("bush", v["access_token"].as_str().unwrap().to_owned());
        }
    }
    // An enrolled person at the other tenant, and someone never enrolled.
    let (s, v, _) = api_b
        .login(photo("genuine/george_w_bush_3.jpg"), None)
        .await;
    assert_eq!(s, 401, "{v}");
    let (s, v, _) = api_a.login(photo("genuine/tony_blair_1.jpg"), None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("face_not_recognized")),
        "{v}"
    );
    // No face at registration; a malformed file.
    let (s, v) = api_a.register("nobody", photo("noface/dogs.jpg")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("no_face")),
        "{v}"
    );
    let (s, v) = api_a
        .register("broken", photo("bad/truncated_half.jpg"))
        .await;
    assert!((400..500).contains(&s), "malformed file: {s} {v}");
    // Spoof samples: the outcome is recorded, whichever it is.
    let mut spoof_outcomes = Vec::new();
    for entry in std::fs::read_dir(faces_dir().join("spoof/attack")).unwrap() {
        let path = entry.unwrap().path();
        let (s, v, _) = api_a.login(std::fs::read(&path).unwrap(), None).await;
        assert!(s < 500, "{}: {s} {v}", path.display());
        spoof_outcomes.push(format!(
            "{}: {s} {}",
            path.file_name().unwrap().to_string_lossy(),
            v["error"]["code"]
        ));
    }
    println!("spoof samples at tenant A: {spoof_outcomes:?}");

    // 5. Rate limit at B (4/minute), lockout and unlock at A, fraud views.
    let mut refused = None;
    for _ in 0..6 {
        let (s, v, h) = api_b.login(photo("noface/text_only.png"), None).await;
        if s == 429 {
            refused = Some((v, h));
            break;
        }
    }
    let (v, h) = refused.expect("tenant B never rate limited logins");
    assert_eq!(v["error"]["code"], "rate_limited");
    assert!(h.get("retry-after").is_some());
    for _ in 0..3 {
        let (s, v, _) = api_a
            .login(photo("genuine/hugo_chavez_1.jpg"), Some("powell"))
            .await;
        assert_eq!(s, 401, "{v}");
    }
    let (s, v, _) = api_a.login(photo("genuine/colin_powell_3.jpg"), None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (423, Some("account_locked")),
        "{v}"
    );
    let (_, attempts) = api_a
        .admin(
            reqwest::Method::GET,
            "/api/v1/admin/failed-attempts?hours=1",
        )
        .await;
    let powell_id = attempts["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a["user_id"].as_str().map(str::to_owned))
        .expect("a failed attempt against powell");
    let (s, _) = api_a
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/admin/users/{powell_id}/unlock"),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v, _) = api_a.login(photo("genuine/colin_powell_3.jpg"), None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api_a
        .admin(
            reqwest::Method::GET,
            "/api/v1/admin/suspicious-activity?threshold=3",
        )
        .await;
    assert_eq!(s, 200);
    assert!(!v["suspicious_ips"].as_array().unwrap().is_empty(), "{v}");

    // 6. A's token at B; the metrics of each process count what happened there. A's
    // token names a key of A's JWKS, which B's does not hold.
    let (s, _) = api_b.get("/api/v1/auth/me", &tokens_a["bush"]).await;
    assert_eq!(s, 401);
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            tokens_a["bush"].split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA", "{header}");
    let kids = |jwks: &Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let (s, jwks_a) = api_a.get("/.well-known/jwks.json", "").await;
    assert_eq!(s, 200);
    let (_, jwks_b) = api_b.get("/.well-known/jwks.json", "").await;
    assert!(kids(&jwks_a).contains(&header["kid"].as_str().unwrap().to_owned()));
    assert!(!kids(&jwks_b).contains(&header["kid"].as_str().unwrap().to_owned()));
    assert_eq!(
        kids(&jwks_a).len(),
        2,
        "one EdDSA and one ES256 key: {jwks_a}"
    );
    let (s, _) = api_a.get("/api/v1/auth/me", &tokens_a["bush"]).await;
    assert_eq!(s, 200);
    let (ma, mb) = (api_a.metrics().await, api_b.metrics().await);
    assert_eq!(
        sample(
            &ma,
            r#"faceid_registration_attempts_total{status="success"}"#
        ),
        3.0
    );
    assert_eq!(
        sample(
            &mb,
            r#"faceid_registration_attempts_total{status="success"}"#
        ),
        2.0
    );
    assert!(
        sample(
            &ma,
            r#"faceid_login_attempts_total{reason="none",status="success"}"#
        ) >= 5.0
    );
    assert!(sample(&mb, r#"faceid_rate_limit_hits_total{endpoint="login"}"#) >= 1.0);
    assert_eq!(
        sample(&ma, r#"faceid_rate_limit_hits_total{endpoint="login"}"#),
        0.0
    );

    // No password, token, key or embedding reaches the logs of either process.
    for (svc, env) in [(&svc_a, &envs[0]), (&svc_b, &envs[1])] {
        let log = svc.log_text();
        assert!(
            log.lines().count() > 10,
            "the service logged almost nothing"
        );
        let mut secrets: Vec<&str> = vec![
            "correct horse battery",
            &env["SECRET_KEY"],
            &env["ADMIN_API_KEY"],
        ];
        let db_password = url::Url::parse(&env["DATABASE_URL"])
            .unwrap()
            .password()
            .unwrap()
            .to_owned();
        secrets.push(&db_password);
        secrets.extend(tokens_a.values().map(String::as_str));
        for secret in secrets {
            assert!(!log.contains(secret), "a secret appears in the service log");
        }
        assert!(
            !log.contains("PRIVATE KEY") && !log.contains(&env["SIGNING_KEYS"]),
            "a signing key appears in the service log"
        );
        assert!(
            !log.contains("embedding\":["),
            "an embedding appears in the service log"
        );
        for line in log.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
            assert!(
                v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string(),
                "{line}"
            );
        }
    }

    // 7. Delete tenant B (policy Delete): its schema is gone; A still logs in.
    drop(svc_b);
    let gone = database::deprovision(
        &pool,
        &faceid_operator::config::tenant_key(&b),
        &b.spec.database.schema,
    )
    .await
    .unwrap();
    assert!(gone.schema_dropped && gone.role_dropped);
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&b.spec.database.schema)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!exists);
    let (s, v, _) = api_a.login(photo("genuine/jim_parsons_3.png"), None).await;
    assert_eq!(s, 200, "{v}");
    drop(svc_a);
    database::deprovision(
        &pool,
        &faceid_operator::config::tenant_key(&a),
        &a.spec.database.schema,
    )
    .await
    .unwrap();
}
