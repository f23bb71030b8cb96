//! The reconciler against an in-process mocked API server (`tower-test`, the pattern of
//! kube-rs `controller-rs` `fixtures.rs`): every expected API call is checked in order
//! (method, path, field manager, body), and nothing else may be called. The database and
//! the Event sink are in-memory fakes; the real database steps are `tests/database.rs`.

// Test code: a failed unwrap or panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faceid_operator::conditions::{self, reasons, types};
use faceid_operator::controller::{
    Context, EventSink, FINALIZER, Settings, TenantDatabase, TenantEvent, error_policy, reconcile,
};
use faceid_operator::crd::{FaceIdTenant, FaceIdTenantStatus};
use faceid_operator::database::{
    self, Deprovisioned, IndexParams, ProvisionRequest, ProvisionedDatabase,
};
use faceid_operator::metrics::Metrics;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

const NS: &str = "team-a";
const NAME: &str = "acme";
const UID: &str = "0d7c-uid-acme";
const ADMIN_URL: &str = "postgres://admin:pw@db.example:5432/faceid";

fn now() -> Timestamp {
    Timestamp::from_second(1_750_000_000).unwrap()
}

// ---------- fakes ----------

#[derive(Default)]
struct FakeDb {
    calls: Mutex<Vec<String>>,
    fail: Mutex<Option<fn() -> database::Error>>,
}

impl TenantDatabase for FakeDb {
    fn provision<'a>(
        &'a self,
        admin_url: &'a str,
        req: &'a ProvisionRequest,
    ) -> BoxFuture<'a, database::Result<ProvisionedDatabase>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!(
                "provision {admin_url} {} {} m={} ef={}",
                req.tenant, req.schema, req.index.m, req.index.ef_construction
            ));
            if let Some(f) = *self.fail.lock().unwrap() {
                return Err(f());
            }
            Ok(ProvisionedDatabase {
                schema: req.schema.clone(),
                role: database::role_name(&req.schema),
                schema_created: true,
                role_created: true,
                migrations_applied: vec![1],
                index: IndexParams {
                    m: req.index.m,
                    ef_construction: req.index.ef_construction,
                },
                index_rebuilt: false,
                active_users: 0,
            })
        })
    }
    fn deprovision<'a>(
        &'a self,
        admin_url: &'a str,
        tenant: &'a str,
        schema: &'a str,
    ) -> BoxFuture<'a, database::Result<Deprovisioned>> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push(format!("deprovision {admin_url} {tenant} {schema}"));
            if let Some(f) = *self.fail.lock().unwrap() {
                return Err(f());
            }
            Ok(Deprovisioned {
                schema_dropped: true,
                role_dropped: true,
            })
        })
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<TenantEvent>>);

impl EventSink for Events {
    fn publish<'a>(&'a self, _: &'a FaceIdTenant, event: TenantEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.0.lock().unwrap().push(event) })
    }
}

impl Events {
    fn reasons(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.reason.clone())
            .collect()
    }
}

fn unavailable() -> database::Error {
    database::Error::Database(sqlx::Error::PoolTimedOut)
}

fn claimed() -> database::Error {
    database::Error::SchemaClaimed {
        schema: "acme".into(),
        owner: "team-b/acme".into(),
    }
}

// ---------- fixtures ----------

fn tenant(spec: Value) -> FaceIdTenant {
    let mut t: FaceIdTenant = serde_json::from_value(json!({
        "apiVersion": "faceid.dev/v1alpha1",
        "kind": "FaceIdTenant",
        "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": 1,
                     "finalizers": [FINALIZER]},
        "spec": spec,
    }))
    .unwrap();
    t.metadata.resource_version = Some("100".into());
    t
}

fn minimal() -> FaceIdTenant {
    tenant(
        json!({"database": {"connectionSecretRef": {"name": "acme-postgres"}, "schema": "acme"}}),
    )
}

fn deleting(mut t: FaceIdTenant, policy: &str, at: Timestamp) -> FaceIdTenant {
    t.spec.database.deletion_policy = serde_json::from_value(json!(policy)).unwrap();
    t.metadata.deletion_timestamp = Some(Time(at));
    t
}

fn secret(name: &str, data: &[(&str, &str)], owned: bool) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            owner_references: owned.then(|| {
                vec![OwnerReference {
                    api_version: "faceid.dev/v1alpha1".into(),
                    kind: "FaceIdTenant".into(),
                    name: NAME.into(),
                    uid: UID.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

fn db_secret() -> Secret {
    secret("acme-postgres", &[("url", ADMIN_URL)], false)
}

fn own_secret() -> Secret {
    secret(
        "acme-credentials",
        &[
            ("SECRET_KEY", &"k".repeat(64)),
            ("ADMIN_API_KEY", &"a".repeat(48)),
            ("DATABASE_PASSWORD", &"p".repeat(32)),
        ],
        true,
    )
}

// ---------- the mocked API server ----------

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One expected API call and the answer to give.
struct Call {
    method: &'static str,
    path: String,
    reply: Reply,
}

enum Reply {
    Json(Value),
    NotFound,
    /// Answer with the request's body (what server-side apply returns, roughly), merged
    /// with `extra`.
    Echo(Value),
    /// Answer with `base`, the request's (merge patch) body merged over it.
    Patched(Value),
}

fn call(method: &'static str, path: impl Into<String>, reply: Reply) -> Call {
    Call {
        method,
        path: path.into(),
        reply,
    }
}

/// A request as seen by the server.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

async fn serve(mut handle: Handle, calls: Vec<Call>) -> Vec<Seen> {
    let mut seen = Vec::new();
    for expected in calls {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out waiting for {} {}; calls so far: {seen:#?}",
                    expected.method, expected.path
                )
            })
            .unwrap_or_else(|| {
                panic!(
                    "the reconciler stopped before {} {}; calls: {seen:#?}",
                    expected.method, expected.path
                )
            });
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let content_type = request
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        assert_eq!(
            (method.as_str(), path.as_str()),
            (expected.method, expected.path.as_str()),
            "unexpected API call (body {body})"
        );
        let (status, reply) = match expected.reply {
            Reply::Json(v) => (StatusCode::OK, v),
            Reply::NotFound => (
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "NotFound", "code": 404, "message": "not found"}),
            ),
            Reply::Patched(base) => {
                let mut v = base;
                if body.is_object() {
                    merge(&mut v, &body);
                }
                (StatusCode::OK, v)
            }
            Reply::Echo(extra) => {
                let mut v = body.clone();
                merge(&mut v, &extra);
                (StatusCode::OK, v)
            }
        };
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        seen.push(Seen {
            method,
            path,
            query,
            content_type,
            body,
        });
    }
    // Nothing else: once the reconciler is done and the client dropped, the channel closes.
    if let Ok(Some((request, _))) =
        tokio::time::timeout(Duration::from_secs(2), handle.next_request()).await
    {
        panic!(
            "unexpected extra API call {} {}",
            request.method(),
            request.uri()
        );
    }
    seen
}

struct Harness {
    db: Arc<FakeDb>,
    events: Arc<Events>,
}

impl Harness {
    fn new() -> Self {
        Self {
            db: Arc::new(FakeDb::default()),
            events: Arc::new(Events::default()),
        }
    }

    /// Runs one reconciliation of `tenant` against `calls` at time `at`.
    async fn run_at(
        &self,
        tenant: FaceIdTenant,
        calls: Vec<Call>,
        at: Timestamp,
    ) -> (
        Result<Action, faceid_operator::controller::Error>,
        Vec<Seen>,
        Arc<Context>,
    ) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, NS);
        let server = tokio::spawn(serve(handle, calls));
        let ctx = Arc::new(
            Context::new(
                client,
                self.db.clone(),
                self.events.clone(),
                Arc::new(Metrics::new().unwrap()),
                Settings {
                    default_image: "ghcr.io/faceid/faceid:test".into(),
                    cleanup_timeout: Duration::from_secs(300),
                },
            )
            .with_clock(move || at),
        );
        let result = reconcile(Arc::new(tenant), ctx.clone()).await;
        // Keep a context without the client for error_policy checks.
        let keep = ctx.clone();
        drop(ctx);
        let seen = match Arc::try_unwrap(keep) {
            Ok(ctx) => {
                drop(ctx);
                server.await.unwrap()
            }
            Err(_) => panic!("context still shared"),
        };
        let ctx = Arc::new(Context::new(
            Client::new(
                tower_test::mock::pair::<Request<Body>, Response<Body>>().0,
                NS,
            ),
            self.db.clone(),
            self.events.clone(),
            Arc::new(Metrics::new().unwrap()),
            Settings {
                default_image: "x".into(),
                cleanup_timeout: Duration::from_secs(300),
            },
        ));
        (result, seen, ctx)
    }

    async fn run(
        &self,
        tenant: FaceIdTenant,
        calls: Vec<Call>,
    ) -> (
        Result<Action, faceid_operator::controller::Error>,
        Vec<Seen>,
    ) {
        let (r, s, _) = self.run_at(tenant, calls, now()).await;
        (r, s)
    }
}

fn path(kind: &str, name: &str) -> String {
    let (prefix, plural) = match kind {
        "Secret" => ("/api/v1", "secrets"),
        "ConfigMap" => ("/api/v1", "configmaps"),
        "Service" => ("/api/v1", "services"),
        "Deployment" => ("/apis/apps/v1", "deployments"),
        "HorizontalPodAutoscaler" => ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
        "PodDisruptionBudget" => ("/apis/policy/v1", "poddisruptionbudgets"),
        "NetworkPolicy" => ("/apis/networking.k8s.io/v1", "networkpolicies"),
        "FaceIdTenant" => ("/apis/faceid.dev/v1alpha1", "faceidtenants"),
        other => panic!("{other}"),
    };
    format!("{prefix}/namespaces/{NS}/{plural}/{name}")
}

fn ready_deployment_status(replicas: i32) -> Reply {
    Reply::Echo(json!({"metadata": {"generation": 1}, "status": {
        "observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
        "updatedReplicas": replicas, "availableReplicas": replicas}}))
}

/// The calls of a full successful pass, the own Secret existing or not.
fn full_pass(own: Option<Secret>, deployment: Reply, with_status: bool) -> Vec<Call> {
    let mut calls = vec![
        call(
            "GET",
            path("Secret", "acme-postgres"),
            Reply::Json(json!(db_secret())),
        ),
        call(
            "GET",
            path("Secret", "acme-credentials"),
            own.map_or(Reply::NotFound, |s| Reply::Json(json!(s))),
        ),
        call(
            "PATCH",
            path("Secret", "acme-credentials"),
            Reply::Echo(json!({})),
        ),
        call(
            "PATCH",
            path("ConfigMap", "acme-config"),
            Reply::Echo(json!({})),
        ),
        call("PATCH", path("Deployment", "acme"), deployment),
        call("PATCH", path("Service", "acme"), Reply::Echo(json!({}))),
        call(
            "GET",
            path("HorizontalPodAutoscaler", "acme"),
            Reply::NotFound,
        ),
        call(
            "PATCH",
            path("PodDisruptionBudget", "acme"),
            Reply::Echo(json!({})),
        ),
        call(
            "PATCH",
            path("NetworkPolicy", "acme"),
            Reply::Echo(json!({})),
        ),
    ];
    if with_status {
        calls.push(status_patch());
    }
    calls
}

fn status_patch() -> Call {
    call(
        "PATCH",
        format!("{}/status", path("FaceIdTenant", NAME)),
        Reply::Patched(json!(minimal())),
    )
}

fn status_of(seen: &[Seen]) -> FaceIdTenantStatus {
    let patch = seen
        .iter()
        .find(|s| s.path.ends_with("/status"))
        .expect("no status patch");
    assert_eq!(patch.content_type, "application/merge-patch+json");
    serde_json::from_value(patch.body["status"].clone()).unwrap()
}

fn condition<'a>(
    status: &'a FaceIdTenantStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions::get(&status.conditions, t).unwrap_or_else(|| panic!("no {t} condition"))
}

// ---------- tests ----------

#[tokio::test]
async fn creates_every_child_and_reports_ready() {
    let h = Harness::new();
    let (result, seen) = h
        .run(minimal(), full_pass(None, ready_deployment_status(2), true))
        .await;
    assert!(matches!(result, Ok(a) if a == Action::requeue(Duration::from_secs(300))));

    // Every write is a server-side apply by one field manager, with an owner reference.
    for s in seen
        .iter()
        .filter(|s| s.method == "PATCH" && !s.path.ends_with("/status"))
    {
        assert_eq!(s.content_type, "application/apply-patch+yaml", "{}", s.path);
        assert!(
            s.query.contains("fieldManager=faceid-operator"),
            "{}",
            s.query
        );
        assert!(s.query.contains("force=true"), "{}", s.query);
        let owner = &s.body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], UID, "{}", s.path);
        assert_eq!(owner["controller"], true);
    }
    let body = |p: &str| {
        &seen
            .iter()
            .find(|s| s.method == "PATCH" && s.path == p)
            .unwrap()
            .body
    };
    // Generated credentials: long enough, base64 in the Secret.
    let secret: Secret =
        serde_json::from_value(body(&path("Secret", "acme-credentials")).clone()).unwrap();
    let data = secret.data.unwrap();
    assert!(data["SECRET_KEY"].0.len() >= 32);
    assert!(data["ADMIN_API_KEY"].0.len() >= 32);
    let url = String::from_utf8(data["DATABASE_URL"].0.clone()).unwrap();
    assert!(
        url.starts_with("postgres://faceid_acme:"),
        "the service gets its own role: {url}"
    );
    // ConfigMap: the service's variables.
    let cm = body(&path("ConfigMap", "acme-config"));
    assert_eq!(cm["data"]["DATABASE_SCHEMA"], "acme");
    assert_eq!(cm["data"]["MIGRATE_ON_START"], "false");
    // Deployment: probes, config hash, default image.
    let d = body(&path("Deployment", "acme"));
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "ghcr.io/faceid/faceid:test");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert!(d["spec"]["template"]["metadata"]["annotations"]["faceid.dev/config-hash"].is_string());
    assert_eq!(d["spec"]["replicas"], 2);

    assert_eq!(
        h.db.calls.lock().unwrap().as_slice(),
        [format!("provision {ADMIN_URL} team-a/acme acme m=16 ef=64")]
    );
    let status = status_of(&seen);
    assert_eq!(status.observed_generation, Some(1));
    for t in [
        types::READY,
        types::SECRETS_READY,
        types::DATABASE_READY,
        types::WORKLOAD_READY,
    ] {
        assert_eq!(
            condition(&status, t).status,
            "True",
            "{t}: {:?}",
            condition(&status, t)
        );
    }
    assert_eq!(
        condition(&status, types::READY).reason,
        reasons::TENANT_READY
    );
    assert_eq!(status.schema.as_deref(), Some("acme"));
    assert_eq!(
        status.index.map(|i| (i.m, i.ef_construction)),
        Some((16, 64))
    );
    assert_eq!(
        status.endpoint.as_deref(),
        Some("http://acme.team-a.svc:80")
    );
    assert_eq!((status.replicas, status.ready_replicas), (2, 2));
    assert!(
        status
            .selector
            .unwrap()
            .contains("app.kubernetes.io/instance=acme")
    );
    assert_eq!(h.events.reasons(), ["CredentialsGenerated", "TenantReady"]);
}

#[tokio::test]
async fn a_second_pass_with_nothing_changed_writes_no_status_and_keeps_credentials() {
    let h = Harness::new();
    let (_, first) = h
        .run(minimal(), full_pass(None, ready_deployment_status(2), true))
        .await;
    let status = status_of(&first);
    let own: Secret = serde_json::from_value(
        first
            .iter()
            .find(|s| s.path == path("Secret", "acme-credentials") && s.method == "PATCH")
            .unwrap()
            .body
            .clone(),
    )
    .unwrap();
    let mut own = own;
    own.metadata.owner_references = own_secret().metadata.owner_references;

    let mut again = minimal();
    again.status = Some(status);
    // No status patch expected: `serve` fails on any call beyond the list.
    let (result, second) = h
        .run(
            again,
            full_pass(Some(own.clone()), ready_deployment_status(2), false),
        )
        .await;
    assert!(result.is_ok());
    // The same objects are applied again (server-side apply of identical content is a
    // no-op on the server), with the same credentials: nothing rotates.
    for p in [
        path("Secret", "acme-credentials"),
        path("ConfigMap", "acme-config"),
        path("Deployment", "acme"),
    ] {
        let a = &first
            .iter()
            .find(|s| s.path == p && s.method == "PATCH")
            .unwrap()
            .body;
        let b = &second
            .iter()
            .find(|s| s.path == p && s.method == "PATCH")
            .unwrap()
            .body;
        assert_eq!(a, b, "{p} changed between two identical passes");
    }
    assert_eq!(
        h.events.reasons(),
        ["CredentialsGenerated", "TenantReady"],
        "no new Events"
    );
}

#[tokio::test]
async fn a_deleted_deployment_is_recreated_on_the_next_pass() {
    // The Deployment watch triggers a pass; server-side apply of the full desired object
    // recreates it (the API answers 201 Created to an apply of a missing object).
    let h = Harness::new();
    let mut t = minimal();
    t.status = Some(FaceIdTenantStatus::default());
    let mut calls = full_pass(
        Some(own_secret()),
        Reply::Echo(json!({"metadata": {"generation": 1}})),
        true,
    );
    calls[4] = call(
        "PATCH",
        path("Deployment", "acme"),
        Reply::Echo(json!({"metadata": {"generation": 1}, "status": {}})),
    );
    let (_, seen) = h.run(t, calls).await;
    let d = &seen
        .iter()
        .find(|s| s.path == path("Deployment", "acme"))
        .unwrap()
        .body;
    assert_eq!(d["kind"], "Deployment");
    assert!(d["spec"]["template"]["spec"]["containers"][0]["image"].is_string());
    let status = status_of(&seen);
    let w = condition(&status, types::WORKLOAD_READY);
    assert_eq!(
        (w.status.as_str(), w.reason.as_str()),
        ("False", reasons::DEPLOYMENT_PROGRESSING)
    );
    assert!(w.message.contains("0/2"), "{}", w.message);
    assert_eq!(
        condition(&status, types::READY).reason,
        reasons::DEPLOYMENT_PROGRESSING
    );
}

#[tokio::test]
async fn an_invalid_spec_becomes_a_condition_and_waits_for_a_change() {
    let h = Harness::new();
    let t = tenant(
        json!({"database": {"connectionSecretRef": {"name": "acme-postgres"}, "schema": "acme",
                                      "hnsw": {"m": 40, "efConstruction": 64}}}),
    );
    let (result, seen) = h.run(t, vec![status_patch()]).await;
    assert!(matches!(result, Ok(a) if a == Action::await_change()));
    let ready = condition(&status_of(&seen), types::READY).clone();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reasons::INVALID_SPEC)
    );
    assert!(
        ready.message.contains("spec.database.hnsw.efConstruction"),
        "{}",
        ready.message
    );
    assert!(h.db.calls.lock().unwrap().is_empty(), "nothing touched");
    assert_eq!(h.events.reasons(), [reasons::INVALID_SPEC]);
}

#[tokio::test]
async fn a_missing_database_secret_is_reported_and_retried() {
    let h = Harness::new();
    let (result, seen) = h
        .run(
            minimal(),
            vec![
                call("GET", path("Secret", "acme-postgres"), Reply::NotFound),
                status_patch(),
            ],
        )
        .await;
    assert!(matches!(result, Ok(a) if a == Action::requeue(Duration::from_secs(60))));
    let status = status_of(&seen);
    let s = condition(&status, types::SECRETS_READY);
    assert_eq!(
        (s.status.as_str(), s.reason.as_str()),
        ("False", reasons::DATABASE_SECRET_NOT_FOUND)
    );
    assert!(s.message.contains("acme-postgres"), "{}", s.message);
    assert_eq!(condition(&status, types::DATABASE_READY).status, "Unknown");
    assert_eq!(
        condition(&status, types::READY).reason,
        reasons::DATABASE_SECRET_NOT_FOUND
    );
}

#[tokio::test]
async fn a_secret_the_operator_does_not_own_is_never_overwritten() {
    let h = Harness::new();
    let foreign = secret("acme-credentials", &[("SECRET_KEY", "theirs")], false);
    let (result, seen) = h
        .run(
            minimal(),
            vec![
                call(
                    "GET",
                    path("Secret", "acme-postgres"),
                    Reply::Json(json!(db_secret())),
                ),
                call(
                    "GET",
                    path("Secret", "acme-credentials"),
                    Reply::Json(json!(foreign)),
                ),
                status_patch(),
            ],
        )
        .await;
    assert!(result.is_ok());
    let status = status_of(&seen);
    assert_eq!(
        condition(&status, types::SECRETS_READY).reason,
        reasons::SECRET_NOT_OWNED
    );
    assert!(h.db.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_schema_claimed_by_another_tenant_is_refused() {
    let h = Harness::new();
    *h.db.fail.lock().unwrap() = Some(claimed);
    let (result, seen) = h
        .run(
            minimal(),
            vec![
                call(
                    "GET",
                    path("Secret", "acme-postgres"),
                    Reply::Json(json!(db_secret())),
                ),
                call("GET", path("Secret", "acme-credentials"), Reply::NotFound),
                status_patch(),
            ],
        )
        .await;
    // Permanent: no error (no hot retry loop), a slow re-check.
    assert!(matches!(result, Ok(a) if a == Action::requeue(Duration::from_secs(300))));
    let status = status_of(&seen);
    let d = condition(&status, types::DATABASE_READY);
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("False", reasons::SCHEMA_CLAIMED)
    );
    assert!(d.message.contains("team-b/acme"), "{}", d.message);
    assert_eq!(
        condition(&status, types::READY).reason,
        reasons::SCHEMA_CLAIMED
    );
    assert!(
        h.events
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.warning && e.reason == reasons::SCHEMA_CLAIMED)
    );
}

#[tokio::test]
async fn a_database_outage_is_reported_and_retried_with_backoff() {
    let h = Harness::new();
    *h.db.fail.lock().unwrap() = Some(unavailable);
    let t = minimal();
    let (result, seen, ctx) = h
        .run_at(
            t.clone(),
            vec![
                call(
                    "GET",
                    path("Secret", "acme-postgres"),
                    Reply::Json(json!(db_secret())),
                ),
                call(
                    "GET",
                    path("Secret", "acme-credentials"),
                    Reply::Json(json!(own_secret())),
                ),
                status_patch(),
            ],
            now(),
        )
        .await;
    let err = result.unwrap_err();
    assert_eq!(err.category(), "database");
    let d = condition(&status_of(&seen), types::DATABASE_READY).clone();
    assert_eq!(d.reason, reasons::DATABASE_UNAVAILABLE);
    assert!(d.message.contains("retrying"), "{}", d.message);
    // Exponential backoff per tenant.
    let t = Arc::new(t);
    assert_eq!(
        error_policy(t.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(t.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    assert_eq!(
        error_policy(t, &err, ctx),
        Action::requeue(Duration::from_secs(20))
    );
}

#[tokio::test]
async fn the_finalizer_is_added_first() {
    let h = Harness::new();
    let mut t = minimal();
    t.metadata.finalizers = None;
    let (result, seen) = h
        .run(
            t,
            vec![call(
                "PATCH",
                path("FaceIdTenant", NAME),
                Reply::Patched(json!(minimal())),
            )],
        )
        .await;
    assert!(matches!(result, Ok(a) if a == Action::await_change()));
    assert_eq!(seen[0].content_type, "application/json-patch+json");
    assert!(
        seen[0].body.to_string().contains(FINALIZER),
        "{}",
        seen[0].body
    );
}

fn remove_finalizer() -> Call {
    call(
        "PATCH",
        path("FaceIdTenant", NAME),
        Reply::Patched(json!(minimal())),
    )
}

#[tokio::test]
async fn deletion_with_retain_keeps_the_database() {
    let h = Harness::new();
    let t = deleting(minimal(), "Retain", now());
    let (result, seen) = h.run(t, vec![remove_finalizer()]).await;
    assert!(result.is_ok());
    assert!(
        seen[0].body.to_string().contains("remove"),
        "{}",
        seen[0].body
    );
    assert!(
        h.db.calls.lock().unwrap().is_empty(),
        "Retain never touches the database"
    );
    assert_eq!(h.events.reasons(), ["SchemaRetained"]);
}

#[tokio::test]
async fn deletion_with_delete_drops_the_database() {
    let h = Harness::new();
    let t = deleting(minimal(), "Delete", now());
    let (result, seen) = h
        .run(
            t,
            vec![
                call(
                    "GET",
                    path("Secret", "acme-postgres"),
                    Reply::Json(json!(db_secret())),
                ),
                remove_finalizer(),
            ],
        )
        .await;
    assert!(result.is_ok());
    assert_eq!(seen[1].content_type, "application/json-patch+json");
    assert_eq!(
        h.db.calls.lock().unwrap().as_slice(),
        [format!("deprovision {ADMIN_URL} team-a/acme acme")]
    );
    assert_eq!(h.events.reasons(), ["SchemaDropped"]);
}

#[tokio::test]
async fn a_failing_delete_cleanup_retries_then_gives_up_without_blocking_deletion() {
    let h = Harness::new();
    *h.db.fail.lock().unwrap() = Some(unavailable);
    let deleted_at = now();
    // Within the cleanup timeout: the finalizer stays, status says why, error → backoff.
    let (result, seen) = h
        .run(
            deleting(minimal(), "Delete", deleted_at),
            vec![
                call(
                    "GET",
                    path("Secret", "acme-postgres"),
                    Reply::Json(json!(db_secret())),
                ),
                status_patch(),
            ],
        )
        .await;
    assert_eq!(result.unwrap_err().category(), "cleanup");
    let ready = condition(&status_of(&seen), types::READY).clone();
    assert_eq!(ready.reason, reasons::CLEANUP_FAILED);
    assert!(
        ready.message.contains("faceid.dev/skip-cleanup"),
        "{}",
        ready.message
    );

    // Past the timeout: the finalizer goes, with a Warning saying what to drop by hand.
    let later = deleted_at
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(301))
        .unwrap();
    let (result, _, _) = h
        .run_at(
            deleting(minimal(), "Delete", deleted_at),
            vec![
                call("GET", path("Secret", "acme-postgres"), Reply::NotFound),
                remove_finalizer(),
            ],
            later,
        )
        .await;
    assert!(result.is_ok());
    let abandoned = h.events.0.lock().unwrap().last().cloned().unwrap();
    assert!(abandoned.warning && abandoned.reason == "CleanupAbandoned");
    assert!(
        abandoned.note.contains("DROP SCHEMA \"acme\" CASCADE"),
        "{}",
        abandoned.note
    );
}

#[tokio::test]
async fn the_skip_cleanup_annotation_releases_a_tenant_at_once() {
    let h = Harness::new();
    let mut t = deleting(minimal(), "Delete", now());
    t.metadata.annotations = Some(BTreeMap::from([(
        "faceid.dev/skip-cleanup".into(),
        "true".into(),
    )]));
    let (result, _) = h.run(t, vec![remove_finalizer()]).await;
    assert!(result.is_ok());
    assert!(h.db.calls.lock().unwrap().is_empty());
    assert_eq!(h.events.reasons(), ["CleanupSkipped"]);
}

#[tokio::test]
async fn the_pause_annotation_stops_reconciliation() {
    let h = Harness::new();
    let mut t = minimal();
    t.metadata.annotations = Some(BTreeMap::from([(
        "faceid.dev/paused".into(),
        "true".into(),
    )]));
    let (result, seen) = h.run(t, vec![status_patch()]).await;
    assert!(matches!(result, Ok(a) if a == Action::await_change()));
    assert_eq!(
        condition(&status_of(&seen), types::READY).reason,
        reasons::PAUSED
    );
    assert!(h.db.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn autoscaling_creates_an_autoscaler_and_leaves_replicas_to_it() {
    let h = Harness::new();
    let t = tenant(
        json!({"database": {"connectionSecretRef": {"name": "acme-postgres"}, "schema": "acme"},
                          "workload": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}}),
    );
    let mut calls = full_pass(Some(own_secret()), ready_deployment_status(2), true);
    calls[6] = call(
        "PATCH",
        path("HorizontalPodAutoscaler", "acme"),
        Reply::Echo(json!({})),
    );
    let (result, seen) = h.run(t, calls).await;
    assert!(result.is_ok());
    let d = &seen
        .iter()
        .find(|s| s.path == path("Deployment", "acme"))
        .unwrap()
        .body;
    assert!(
        d["spec"].get("replicas").is_none(),
        "the autoscaler owns replicas: {d}"
    );
    let hpa = &seen
        .iter()
        .find(|s| s.path == path("HorizontalPodAutoscaler", "acme"))
        .unwrap()
        .body;
    assert_eq!(hpa["spec"]["maxReplicas"], 6);
}
