//! The reconciler against an in-process mocked API server (`tower-test`, the pattern of
//! kube-rs `controller-rs` `fixtures.rs`): every expected API call is checked in order
//! (method, path, field manager, body), and nothing else may be called. The database and
//! the Event sink are in-memory fakes; the real database steps are `tests/database.rs`.

// Test code: a failed unwrap or panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faceid_keys::{Alg, KeyDocument, KeyEntry};
use faceid_operator::conditions::{self, reasons, types};
use faceid_operator::controller::{
    Context, EventSink, FINALIZER, Settings, TenantDatabase, TenantEvent, error_policy, reconcile,
};
use faceid_operator::crd::{FaceIdTenant, FaceIdTenantStatus};
use faceid_operator::database::{
    self, Deprovisioned, IndexParams, IndexRebuild, ProvisionRequest, ProvisionedDatabase,
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

struct FakeDb {
    calls: Mutex<Vec<String>>,
    fail: Mutex<Option<fn() -> database::Error>>,
    /// The index's parameters (pgvector's defaults until a rebuild changes them).
    index: Mutex<IndexParams>,
    /// A rebuild finishes when the test adds a permit.
    rebuild_gate: tokio::sync::Semaphore,
    fail_rebuild: Mutex<bool>,
}

impl Default for FakeDb {
    fn default() -> Self {
        Self {
            calls: Mutex::default(),
            fail: Mutex::default(),
            index: Mutex::new(IndexParams::default()),
            rebuild_gate: tokio::sync::Semaphore::new(0),
            fail_rebuild: Mutex::default(),
        }
    }
}

impl FakeDb {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
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
            let index = *self.index.lock().unwrap();
            Ok(ProvisionedDatabase {
                schema: req.schema.clone(),
                role: database::role_name(&req.schema),
                schema_created: true,
                role_created: true,
                password_set: true,
                migrations_applied: vec![1],
                index,
                index_rebuilt: false,
                index_wanted: (index != req.index).then_some(req.index),
                active_users: 0,
            })
        })
    }
    fn rebuild_index<'a>(
        &'a self,
        _admin_url: &'a str,
        schema: &'a str,
        want: IndexParams,
    ) -> BoxFuture<'a, database::Result<IndexRebuild>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!(
                "rebuild {schema} m={} ef={}",
                want.m, want.ef_construction
            ));
            self.rebuild_gate.acquire().await.unwrap().forget();
            if *self.fail_rebuild.lock().unwrap() {
                return Err(unavailable());
            }
            *self.index.lock().unwrap() = want;
            Ok(IndexRebuild {
                index: want,
                rebuilt: true,
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
                sessions_terminated: 2,
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
            ("SIGNING_KEYS", &stored_keys().to_json()),
        ],
        true,
    )
}

/// One EdDSA and one ES256 key made a day before [`now`], the same for the whole test
/// binary (a Secret the operator stored earlier).
fn stored_keys() -> KeyDocument {
    static KEYS: std::sync::OnceLock<KeyDocument> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let created = chrono_of(now()) - chrono::Duration::days(1);
        KeyDocument {
            keys: vec![
                KeyEntry::generate(Alg::EdDsa, created, None),
                KeyEntry::generate(Alg::Es256, created, None),
            ],
        }
    })
    .clone()
}

fn chrono_of(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.as_second(), 0).unwrap()
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
    /// An error answer of the API server: HTTP `code`, a `Status` with `reason` and
    /// `message`.
    Status(u16, &'static str, String),
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

/// JSON merge patch (RFC 7386): `b` over `a`, a `null` removing the key.
fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// Answers `calls` in order; `done` fires when the reconciliation has returned. Gives
/// the handle back for the next pass.
async fn serve(
    mut handle: Handle,
    calls: Vec<Call>,
    mut done: tokio::sync::oneshot::Receiver<()>,
) -> (Handle, Vec<Seen>) {
    let mut seen = Vec::new();
    for expected in calls {
        let next = tokio::select! {
            biased;
            next = tokio::time::timeout(Duration::from_secs(5), handle.next_request()) => next,
            _ = &mut done => panic!(
                "the reconciler stopped before {} {}; calls: {seen:#?}",
                expected.method, expected.path
            ),
        };
        let (request, send) = next
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
            Reply::Status(code, reason, message) => (
                StatusCode::from_u16(code).unwrap(),
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": reason, "code": code, "message": message}),
            ),
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
    // Nothing else until the reconciliation returns.
    tokio::select! {
        biased;
        _ = &mut done => {}
        request = handle.next_request() => {
            if let Some((request, _)) = request {
                panic!(
                    "unexpected extra API call {} {}; calls before: {seen:#?}",
                    request.method(),
                    request.uri()
                );
            }
        }
    }
    (handle, seen)
}

/// One operator (one [`Context`], kept across passes like the real one) against the
/// mocked API server, the fake database and the Event recorder.
struct Harness {
    db: Arc<FakeDb>,
    events: Arc<Events>,
    ctx: Arc<Context>,
    handle: Mutex<Option<Handle>>,
    clock: Arc<Mutex<Timestamp>>,
    jitter: Arc<Mutex<f64>>,
    leader: Arc<Mutex<bool>>,
}

impl Harness {
    fn new() -> Self {
        let db = Arc::new(FakeDb::default());
        let events = Arc::new(Events::default());
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let clock = Arc::new(Mutex::new(now()));
        let jitter = Arc::new(Mutex::new(1.0));
        let leader = Arc::new(Mutex::new(true));
        let (c, j, l) = (clock.clone(), jitter.clone(), leader.clone());
        let ctx = Context::new(
            Client::new(service, NS),
            db.clone(),
            events.clone(),
            Arc::new(Metrics::new().unwrap()),
            Settings {
                default_image: "ghcr.io/faceid/faceid:test".into(),
                cleanup_timeout: Duration::from_secs(300),
            },
        )
        .with_clock(move || *c.lock().unwrap())
        .with_jitter(move || *j.lock().unwrap())
        .with_write_guard(move || *l.lock().unwrap());
        Self {
            db,
            events,
            ctx: Arc::new(ctx),
            handle: Mutex::new(Some(handle)),
            clock,
            jitter,
            leader,
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
        let handle = self
            .handle
            .lock()
            .unwrap()
            .take()
            .expect("a previous pass failed");
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(serve(handle, calls, done_rx));
        *self.clock.lock().unwrap() = at;
        let result = reconcile(Arc::new(tenant), self.ctx.clone()).await;
        let _ = done.send(());
        let (handle, seen) = server.await.unwrap();
        *self.handle.lock().unwrap() = Some(handle);
        (result, seen, self.ctx.clone())
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
    // Exponential backoff per tenant, with equal jitter: between half the ceiling (the
    // jitter source at 0) and the ceiling (at 1).
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
        error_policy(t.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(20))
    );
    *h.jitter.lock().unwrap() = 0.0;
    assert_eq!(
        error_policy(t.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(20)),
        "the fourth failure waits between 20 and 40 s"
    );
    *h.jitter.lock().unwrap() = 0.5;
    assert_eq!(
        error_policy(t, &err, ctx),
        Action::requeue(Duration::from_secs(60)),
        "the fifth failure waits between 40 and 80 s"
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
async fn deletion_with_retain_keeps_the_database_and_the_credentials_secret() {
    let h = Harness::new();
    let t = deleting(minimal(), "Retain", now());
    let mut own = own_secret();
    own.metadata.resource_version = Some("7".into());
    let (result, seen) = h
        .run(
            t,
            vec![
                call(
                    "GET",
                    path("Secret", "acme-credentials"),
                    Reply::Json(json!(own)),
                ),
                call(
                    "PATCH",
                    path("Secret", "acme-credentials"),
                    Reply::Patched(json!(own)),
                ),
                remove_finalizer(),
            ],
        )
        .await;
    assert!(result.is_ok());
    // The Secret loses the tenant's owner reference (the garbage collector keeps it) and
    // is marked for a tenant of the same namespace and name; conditional on its version.
    let release = &seen[1];
    assert_eq!(release.content_type, "application/merge-patch+json");
    let meta = &release.body["metadata"];
    assert_eq!(meta["ownerReferences"], json!([]), "{}", release.body);
    assert_eq!(
        meta["annotations"]["faceid.dev/retained-for"],
        "team-a/acme"
    );
    assert_eq!(meta["resourceVersion"], "7");
    assert!(release.body.get("data").is_none(), "values untouched");
    assert!(
        seen[2].body.to_string().contains("remove"),
        "{}",
        seen[2].body
    );
    assert!(h.db.calls().is_empty(), "Retain never touches the database");
    assert_eq!(h.events.reasons(), ["SchemaRetained"]);
    let note = h.events.0.lock().unwrap()[0].note.clone();
    assert!(note.contains("acme-credentials"), "{note}");
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
            deleting(provisioned(), "Delete", deleted_at),
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
            deleting(provisioned(), "Delete", deleted_at),
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

/// A tenant whose database step succeeded at least once (`status.schema` recorded).
fn provisioned() -> FaceIdTenant {
    let mut t = minimal();
    t.status = Some(FaceIdTenantStatus {
        schema: Some("acme".into()),
        ..FaceIdTenantStatus::default()
    });
    t
}

#[tokio::test]
async fn a_never_provisioned_tenant_with_an_unreachable_database_is_released_at_once() {
    // Deleting its namespace must not wait out the cleanup timeout for a database that
    // never held anything of it.
    let h = Harness::new();
    *h.db.fail.lock().unwrap() = Some(unavailable);
    let (result, _) = h
        .run(
            deleting(minimal(), "Delete", now()),
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
    assert!(result.is_ok(), "{result:?}");
    let abandoned = h.events.0.lock().unwrap().last().cloned().unwrap();
    assert!(abandoned.warning && abandoned.reason == "CleanupAbandoned");
    assert!(
        abandoned.note.contains("never finished provisioning")
            && abandoned.note.contains("DROP SCHEMA \"acme\" CASCADE"),
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
    // A new Deployment: nothing to hand over.
    calls.insert(4, call("GET", path("Deployment", "acme"), Reply::NotFound));
    let (result, seen) = h.run(t, calls).await;
    assert!(result.is_ok());
    let d = &seen
        .iter()
        .find(|s| s.path == path("Deployment", "acme") && s.method == "PATCH")
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

fn body_of<'a>(seen: &'a [Seen], method: &str, p: &str) -> &'a Value {
    &seen
        .iter()
        .find(|s| s.method == method && s.path == p)
        .unwrap_or_else(|| panic!("no {method} {p}"))
        .body
}

fn data_of(secret: &Value, key: &str) -> String {
    let s: Secret = serde_json::from_value(secret.clone()).unwrap();
    String::from_utf8(s.data.unwrap()[key].0.clone()).unwrap()
}

#[tokio::test]
async fn an_invalid_name_is_refused_naming_metadata_name() {
    let h = Harness::new();
    let mut t = minimal();
    t.metadata.name = Some("acme.example".into());
    let (result, seen) = h
        .run(
            t,
            vec![call(
                "PATCH",
                "/apis/faceid.dev/v1alpha1/namespaces/team-a/faceidtenants/acme.example/status",
                Reply::Patched(json!(minimal())),
            )],
        )
        .await;
    assert!(matches!(result, Ok(a) if a == Action::await_change()));
    let ready = condition(&status_of(&seen), types::READY).clone();
    assert_eq!(ready.reason, reasons::INVALID_SPEC);
    assert!(ready.message.contains("metadata.name"), "{}", ready.message);
    assert!(h.db.calls().is_empty(), "nothing touched");
}

/// A full pass whose Deployment apply the API server answers with `reply`.
fn pass_failing_at_the_deployment(reply: Reply) -> Vec<Call> {
    let mut calls = full_pass(Some(own_secret()), reply, false);
    calls.truncate(5);
    calls
}

#[tokio::test]
async fn a_refused_apply_becomes_a_condition_and_a_warning_not_a_hot_loop() {
    let h = Harness::new();
    let message = "Deployment.apps \"acme\" is invalid: spec.template.spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\": quantities must match the regular expression";
    let mut calls =
        pass_failing_at_the_deployment(Reply::Status(422, "Invalid", message.to_owned()));
    calls.push(status_patch());
    let (result, seen) = h.run(minimal(), calls).await;
    // A slow re-check, not an error (which would retry with a fast backoff).
    assert!(
        matches!(result, Ok(ref a) if *a == Action::requeue(Duration::from_secs(300))),
        "{result:?}"
    );
    let status = status_of(&seen);
    let w = condition(&status, types::WORKLOAD_READY);
    assert_eq!(
        (w.status.as_str(), w.reason.as_str()),
        ("False", reasons::APPLY_REFUSED)
    );
    for part in ["Deployment", "\"acme\"", "resources.requests[cpu]", "422"] {
        assert!(w.message.contains(part), "{part}: {}", w.message);
    }
    let ready = condition(&status, types::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reasons::APPLY_REFUSED)
    );
    assert!(
        h.events.0.lock().unwrap().iter().any(|e| e.warning
            && e.reason == reasons::APPLY_REFUSED
            && e.note.contains("requests[cpu]")),
        "{:?}",
        h.events.0.lock().unwrap()
    );
    // The database step ran, so DatabaseReady says so.
    assert_eq!(condition(&status, types::DATABASE_READY).status, "True");

    // Refused again with a different field: the status says which, and a new Warning.
    let mut again = minimal();
    again.status = Some(status);
    let other = "PodDisruptionBudget.policy \"acme\" is invalid: metadata.name: Invalid value";
    let mut calls = full_pass(Some(own_secret()), ready_deployment_status(2), false);
    calls.truncate(7);
    calls.insert(
        7,
        call(
            "PATCH",
            path("PodDisruptionBudget", "acme"),
            Reply::Status(400, "BadRequest", other.to_owned()),
        ),
    );
    calls.push(status_patch());
    let (result, seen) = h.run(again, calls).await;
    assert!(result.is_ok());
    let w = condition(&status_of(&seen), types::WORKLOAD_READY).clone();
    assert!(w.message.contains("PodDisruptionBudget"), "{}", w.message);
    let warnings = h
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.warning && e.reason == reasons::APPLY_REFUSED)
        .count();
    assert_eq!(warnings, 2);
}

#[tokio::test]
async fn transient_apply_errors_go_to_backoff() {
    for (code, reason) in [
        (500, "InternalError"),
        (409, "Conflict"),
        (429, "TooManyRequests"),
    ] {
        let h = Harness::new();
        let calls = pass_failing_at_the_deployment(Reply::Status(code, reason, "try again".into()));
        // No status write: the error policy retries with backoff.
        let (result, _) = h.run(minimal(), calls).await;
        let err = result.unwrap_err();
        assert_eq!(err.category(), "kubernetes", "{code}");
    }
}

#[tokio::test]
async fn the_database_step_runs_only_when_something_asks_for_it() {
    let h = Harness::new();
    let provisions = |h: &Harness| {
        h.db.calls()
            .iter()
            .filter(|c| c.starts_with("provision"))
            .count()
    };
    let (_, first) = h
        .run(
            minimal(),
            full_pass(Some(own_secret()), ready_deployment_status(2), true),
        )
        .await;
    assert_eq!(provisions(&h), 1);
    let status = status_of(&first);
    let url = data_of(
        body_of(&first, "PATCH", &path("Secret", "acme-credentials")),
        "DATABASE_URL",
    );

    // A Deployment status change triggers a pass: same generation, database ready,
    // within the resync: no database step, and the children get the same credentials.
    let mut same = minimal();
    same.status = Some(status.clone());
    let (result, second) = h
        .run(
            same.clone(),
            full_pass(Some(own_secret()), ready_deployment_status(2), false),
        )
        .await;
    assert!(matches!(result, Ok(a) if a == Action::requeue(Duration::from_secs(300))));
    assert_eq!(provisions(&h), 1, "skipped: {:?}", h.db.calls());
    let again = data_of(
        body_of(&second, "PATCH", &path("Secret", "acme-credentials")),
        "DATABASE_URL",
    );
    assert_eq!(again, url);

    // A new generation: runs.
    let mut edited = same.clone();
    edited.metadata.generation = Some(2);
    h.run(
        edited,
        full_pass(Some(own_secret()), ready_deployment_status(2), true),
    )
    .await
    .0
    .unwrap();
    assert_eq!(provisions(&h), 2);

    // The resync timer: runs again once RESYNC has passed since the last step.
    let mut two = same.clone();
    two.metadata.generation = Some(2);
    two.status.as_mut().unwrap().observed_generation = Some(2);
    let later = now()
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(299))
        .unwrap();
    let calls = full_pass(Some(own_secret()), ready_deployment_status(2), true);
    h.run_at(two.clone(), calls, later).await.0.unwrap();
    assert_eq!(provisions(&h), 2, "within the resync");
    let later = now()
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(300))
        .unwrap();
    let calls = full_pass(Some(own_secret()), ready_deployment_status(2), true);
    h.run_at(two.clone(), calls, later).await.0.unwrap();
    assert_eq!(provisions(&h), 3, "resync");

    // DatabaseReady not True: runs.
    let mut not_ready = two;
    let conditions = &mut not_ready.status.as_mut().unwrap().conditions;
    conditions::set(
        conditions,
        types::DATABASE_READY,
        conditions::Status::False,
        reasons::DATABASE_UNAVAILABLE,
        "down",
        Some(2),
        now(),
    );
    let calls = full_pass(Some(own_secret()), ready_deployment_status(2), true);
    h.run_at(not_ready, calls, later).await.0.unwrap();
    assert_eq!(provisions(&h), 4, "not ready");
}

#[tokio::test]
async fn an_index_rebuild_runs_in_the_background_and_is_reported() {
    let h = Harness::new();
    let t = tenant(
        json!({"database": {"connectionSecretRef": {"name": "acme-postgres"}, "schema": "acme",
                            "hnsw": {"m": 32, "efConstruction": 128}}}),
    );
    // The pass starts the rebuild and returns without waiting for it.
    let (result, seen) = tokio::time::timeout(
        Duration::from_secs(10),
        h.run(
            t.clone(),
            full_pass(Some(own_secret()), ready_deployment_status(2), true),
        ),
    )
    .await
    .expect("the pass waited for the rebuild");
    assert!(matches!(result, Ok(a) if a == Action::requeue(Duration::from_secs(15))));
    let status = status_of(&seen);
    let d = condition(&status, types::DATABASE_READY);
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", reasons::INDEX_REBUILDING)
    );
    assert!(d.message.contains("m=32"), "{}", d.message);
    assert_eq!(
        condition(&status, types::READY).status,
        "True",
        "the old index serves"
    );
    assert_eq!(
        status.index.map(|i| (i.m, i.ef_construction)),
        Some((16, 64))
    );

    // While it runs, a pass neither provisions nor starts a second rebuild.
    let mut running = t.clone();
    running.status = Some(status.clone());
    h.run(
        running.clone(),
        full_pass(Some(own_secret()), ready_deployment_status(2), false),
    )
    .await
    .0
    .unwrap();
    assert_eq!(
        h.db.calls()
            .iter()
            .filter(|c| c.starts_with("rebuild"))
            .count(),
        1,
        "{:?}",
        h.db.calls()
    );
    // An edit meanwhile provisions (a rotated password must not wait for the index),
    // still without a second rebuild.
    let mut edited = running.clone();
    edited.metadata.generation = Some(2);
    let (result, seen) = h
        .run(
            edited,
            full_pass(Some(own_secret()), ready_deployment_status(2), true),
        )
        .await;
    assert!(matches!(result, Ok(a) if a == Action::requeue(Duration::from_secs(15))));
    assert_eq!(
        condition(&status_of(&seen), types::DATABASE_READY).reason,
        reasons::INDEX_REBUILDING
    );
    assert_eq!(h.db.calls().len(), 3, "{:?}", h.db.calls());

    // Done: the next pass reports it and reads the new parameters back.
    h.db.rebuild_gate.add_permits(1);
    for _ in 0..100 {
        if *h.db.index.lock().unwrap() != IndexParams::default() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (result, seen) = h
        .run(
            running,
            full_pass(Some(own_secret()), ready_deployment_status(2), true),
        )
        .await;
    assert!(matches!(result, Ok(a) if a == Action::requeue(Duration::from_secs(300))));
    let status = status_of(&seen);
    let d = condition(&status, types::DATABASE_READY);
    assert_eq!(d.reason, reasons::SCHEMA_PROVISIONED);
    assert_eq!(
        status.index.map(|i| (i.m, i.ef_construction)),
        Some((32, 128))
    );
    assert!(h.events.reasons().contains(&"IndexRebuilt".to_owned()));
    let provision = format!("provision {ADMIN_URL} team-a/acme acme m=32 ef=128");
    assert_eq!(
        h.db.calls(),
        [
            provision.clone(),
            "rebuild acme m=32 ef=128".to_owned(),
            provision.clone(),
            provision,
        ]
    );
}

#[tokio::test]
async fn a_failed_index_rebuild_is_reported_and_not_retried_before_the_resync() {
    let h = Harness::new();
    *h.db.fail_rebuild.lock().unwrap() = true;
    let t = tenant(
        json!({"database": {"connectionSecretRef": {"name": "acme-postgres"}, "schema": "acme",
                            "hnsw": {"m": 32, "efConstruction": 128}}}),
    );
    let (_, seen) = h
        .run(
            t.clone(),
            full_pass(Some(own_secret()), ready_deployment_status(2), true),
        )
        .await;
    h.db.rebuild_gate.add_permits(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut t2 = t.clone();
    t2.status = Some(status_of(&seen));
    let (result, seen) = h
        .run(
            t2,
            full_pass(Some(own_secret()), ready_deployment_status(2), true),
        )
        .await;
    assert!(matches!(result, Ok(a) if a == Action::requeue(Duration::from_secs(300))));
    let d = condition(&status_of(&seen), types::DATABASE_READY).clone();
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", reasons::INDEX_REBUILD_FAILED)
    );
    assert!(
        h.events
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.warning && e.reason == "IndexRebuildFailed")
    );
    let rebuilds =
        h.db.calls()
            .iter()
            .filter(|c| c.starts_with("rebuild"))
            .count();
    assert_eq!(rebuilds, 1, "no hot loop of rebuilds");
}

fn retained_secret(for_tenant: &str) -> Secret {
    let mut s = secret(
        "acme-credentials",
        &[
            ("SECRET_KEY", &"k".repeat(64)),
            ("ADMIN_API_KEY", &"a".repeat(48)),
            ("TEMPLATE_KEY", &"t".repeat(64)),
            ("DATABASE_PASSWORD", &"p".repeat(32)),
            ("SIGNING_KEYS", &stored_keys().to_json()),
        ],
        false,
    );
    s.metadata.annotations = Some(BTreeMap::from([
        ("faceid.dev/retained-for".into(), for_tenant.into()),
        ("faceid.dev/legacy-hs256-default".into(), "false".into()),
    ]));
    s.metadata.resource_version = Some("42".into());
    s
}

#[tokio::test]
async fn a_recreated_tenant_adopts_its_retained_secret_and_reuses_every_value() {
    let h = Harness::new();
    let mut t = minimal();
    t.metadata.uid = Some("uid-of-the-new-tenant".into());
    let kept = retained_secret("team-a/acme");
    let mut calls = full_pass(Some(kept.clone()), ready_deployment_status(2), true);
    calls.insert(
        2,
        call(
            "PATCH",
            path("Secret", "acme-credentials"),
            Reply::Patched(json!(kept)),
        ),
    );
    let (result, seen) = h.run(t, calls).await;
    assert!(result.is_ok(), "{result:?}");
    // Adoption: a conditional merge patch adds the new tenant's controller reference and
    // removes the mark.
    let adopt = &seen[2];
    assert_eq!(adopt.content_type, "application/merge-patch+json");
    let meta = &adopt.body["metadata"];
    assert_eq!(meta["resourceVersion"], "42");
    assert_eq!(meta["ownerReferences"][0]["uid"], "uid-of-the-new-tenant");
    assert_eq!(meta["ownerReferences"][0]["controller"], true);
    assert!(meta["annotations"]["faceid.dev/retained-for"].is_null());
    // Every value is reused: enrolled faces (TEMPLATE_KEY) and the role's password.
    // The server-side apply that follows (the second PATCH of the Secret).
    let applied = &seen
        .iter()
        .filter(|s| s.method == "PATCH" && s.path == path("Secret", "acme-credentials"))
        .nth(1)
        .unwrap()
        .body;
    assert_eq!(
        applied["metadata"]["ownerReferences"][0]["uid"],
        "uid-of-the-new-tenant"
    );
    for (key, value) in [
        ("SECRET_KEY", "k".repeat(64)),
        ("ADMIN_API_KEY", "a".repeat(48)),
        ("TEMPLATE_KEY", "t".repeat(64)),
        ("DATABASE_PASSWORD", "p".repeat(32)),
    ] {
        assert_eq!(data_of(applied, key), value, "{key}");
    }
    assert!(data_of(applied, "DATABASE_URL").contains(&"p".repeat(32)));
    // The signing keys too: tokens signed before the deletion still verify.
    assert_eq!(
        KeyDocument::parse(&data_of(applied, "SIGNING_KEYS")).unwrap(),
        stored_keys()
    );
    let reasons = h.events.reasons();
    assert!(
        reasons.contains(&"CredentialsAdopted".to_owned()),
        "{reasons:?}"
    );
    assert!(
        !reasons.contains(&"CredentialsGenerated".to_owned()),
        "{reasons:?}"
    );
    assert!(
        !reasons.iter().any(|r| r.starts_with("SigningKey")),
        "{reasons:?}"
    );
    assert_eq!(
        condition(&status_of(&seen), types::SECRETS_READY).status,
        "True"
    );
}

#[tokio::test]
async fn a_secret_retained_for_another_tenant_stays_refused() {
    for foreign in [
        retained_secret("team-b/acme"),
        secret("acme-credentials", &[("SECRET_KEY", "theirs")], false),
    ] {
        let h = Harness::new();
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
        assert!(matches!(result, Ok(a) if a == Action::requeue(Duration::from_secs(300))));
        let s = condition(&status_of(&seen), types::SECRETS_READY).clone();
        assert_eq!(s.reason, reasons::SECRET_NOT_OWNED);
        assert!(
            s.message.contains("faceid.dev/retained-for=team-a/acme"),
            "{}",
            s.message
        );
        assert!(h.db.calls().is_empty());
    }
}

/// A live Deployment whose `spec.replicas` (5) was last applied by `manager`.
fn live_deployment(manager: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "acme", "namespace": NS, "generation": 3, "managedFields": [{
            "manager": manager, "operation": "Apply", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}
        }]},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {}, "spec": {"containers": []}}},
    })
}

fn autoscaled() -> FaceIdTenant {
    tenant(
        json!({"database": {"connectionSecretRef": {"name": "acme-postgres"}, "schema": "acme"},
               "workload": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}}),
    )
}

#[tokio::test]
async fn turning_autoscaling_on_hands_replicas_over_without_dropping_them() {
    let h = Harness::new();
    let mut calls = full_pass(Some(own_secret()), ready_deployment_status(5), true);
    calls[6] = call(
        "PATCH",
        path("HorizontalPodAutoscaler", "acme"),
        Reply::Echo(json!({})),
    );
    // The operator's manager owns spec.replicas (applied while autoscaling was off):
    // the current count is applied under the handover manager first.
    calls.insert(
        4,
        call(
            "GET",
            path("Deployment", "acme"),
            Reply::Json(live_deployment("faceid-operator")),
        ),
    );
    calls.insert(
        5,
        call(
            "PATCH",
            path("Deployment", "acme"),
            Reply::Json(live_deployment("faceid-operator")),
        ),
    );
    let (result, seen) = h.run(autoscaled(), calls).await;
    assert!(result.is_ok(), "{result:?}");
    let handover = &seen[5];
    assert_eq!(handover.content_type, "application/apply-patch+yaml");
    assert!(
        handover
            .query
            .contains("fieldManager=faceid-operator-autoscaling-handover"),
        "{}",
        handover.query
    );
    assert_eq!(
        handover.body["spec"],
        json!({"replicas": 5}),
        "{}",
        handover.body
    );
    let main = &seen[6];
    assert!(
        main.query
            .split('&')
            .any(|p| p == "fieldManager=faceid-operator"),
        "{}",
        main.query
    );
    assert!(main.body["spec"].get("replicas").is_none(), "{}", main.body);
    assert!(main.body["spec"]["template"].is_object());
}

#[tokio::test]
async fn no_handover_once_the_operator_no_longer_sets_replicas() {
    let h = Harness::new();
    let mut calls = full_pass(Some(own_secret()), ready_deployment_status(5), true);
    calls[6] = call(
        "PATCH",
        path("HorizontalPodAutoscaler", "acme"),
        Reply::Echo(json!({})),
    );
    calls.insert(
        4,
        call(
            "GET",
            path("Deployment", "acme"),
            Reply::Json(live_deployment("kube-controller-manager")),
        ),
    );
    let (result, seen) = h.run(autoscaled(), calls).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        seen.iter()
            .filter(|s| s.path == path("Deployment", "acme") && s.method == "PATCH")
            .count(),
        1
    );
}

#[tokio::test]
async fn turning_autoscaling_off_sets_replicas_again_and_removes_the_autoscaler() {
    let h = Harness::new();
    let mut calls = full_pass(Some(own_secret()), ready_deployment_status(2), true);
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "acme", "namespace": NS, "ownerReferences": [{
            "apiVersion": "faceid.dev/v1alpha1", "kind": "FaceIdTenant", "name": NAME,
            "uid": UID, "controller": true}]},
        "spec": {"maxReplicas": 6, "scaleTargetRef": {"kind": "Deployment", "name": "acme"}}});
    calls[6] = call(
        "GET",
        path("HorizontalPodAutoscaler", "acme"),
        Reply::Json(hpa.clone()),
    );
    calls.insert(
        7,
        call(
            "DELETE",
            path("HorizontalPodAutoscaler", "acme"),
            Reply::Json(hpa),
        ),
    );
    let (result, seen) = h.run(minimal(), calls).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        body_of(&seen, "PATCH", &path("Deployment", "acme"))["spec"]["replicas"],
        2
    );
}

#[tokio::test]
async fn a_replica_that_lost_the_lease_writes_nothing() {
    let h = Harness::new();
    *h.leader.lock().unwrap() = false;
    let (result, seen) = h.run(minimal(), vec![]).await;
    assert_eq!(result.unwrap_err().category(), "leadership");
    assert!(seen.is_empty());
    assert!(h.db.calls().is_empty());
}

// ---------- signing keys ----------

fn credentials_with(keys: &KeyDocument, annotations: Option<(&str, &str)>) -> Secret {
    let mut s = secret(
        "acme-credentials",
        &[
            ("SECRET_KEY", &"k".repeat(64)),
            ("ADMIN_API_KEY", &"a".repeat(48)),
            ("TEMPLATE_KEY", &"t".repeat(64)),
            ("DATABASE_PASSWORD", &"p".repeat(32)),
            ("SIGNING_KEYS", &keys.to_json()),
        ],
        true,
    );
    s.metadata.annotations =
        annotations.map(|(k, v)| BTreeMap::from([(k.to_owned(), v.to_owned())]));
    s
}

fn applied_keys(seen: &[Seen]) -> KeyDocument {
    KeyDocument::parse(&data_of(
        body_of(seen, "PATCH", &path("Secret", "acme-credentials")),
        "SIGNING_KEYS",
    ))
    .unwrap()
}

fn config_of(seen: &[Seen]) -> &Value {
    &body_of(seen, "PATCH", &path("ConfigMap", "acme-config"))["data"]
}

#[tokio::test]
async fn a_new_tenant_gets_signing_keys_and_no_hs256() {
    let h = Harness::new();
    let (result, seen) = h
        .run(minimal(), full_pass(None, ready_deployment_status(2), true))
        .await;
    assert!(result.is_ok());
    let keys = applied_keys(&seen);
    let algs: Vec<Alg> = keys.keys.iter().map(|k| k.alg).collect();
    assert_eq!(algs, [Alg::EdDsa, Alg::Es256]);
    // The service reads them from the Secret, never from the ConfigMap.
    let env = &body_of(&seen, "PATCH", &path("Deployment", "acme"))["spec"]["template"]["spec"]["containers"]
        [0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "SIGNING_KEYS"
                && e["valueFrom"]["secretKeyRef"]["key"] == "SIGNING_KEYS")
    );
    assert!(!config_of(&seen).to_string().contains("PRIVATE"));
    assert_eq!(config_of(&seen)["LEGACY_HS256_TOKENS"], "false");
    let secret = body_of(&seen, "PATCH", &path("Secret", "acme-credentials"));
    assert_eq!(
        secret["metadata"]["annotations"]["faceid.dev/legacy-hs256-default"],
        "false"
    );
    let status = status_of(&seen);
    assert_eq!(status.legacy_hs256, Some(false));
    let states: Vec<(&str, &str)> = status
        .signing_keys
        .iter()
        .map(|k| (k.alg.as_str(), k.state.as_str()))
        .collect();
    assert_eq!(states, [("EdDSA", "signing"), ("ES256", "signing")]);
    assert!(!serde_json::to_string(&status).unwrap().contains("PRIVATE"));
}

#[tokio::test]
async fn a_tenant_from_before_signing_keys_keeps_hs256_across_the_upgrade() {
    let h = Harness::new();
    let mut t = minimal();
    t.status = Some(FaceIdTenantStatus::default());
    // Its credentials Secret as an operator without signing keys left it.
    let old = secret(
        "acme-credentials",
        &[
            ("SECRET_KEY", &"k".repeat(64)),
            ("ADMIN_API_KEY", &"a".repeat(48)),
            ("TEMPLATE_KEY", &"t".repeat(64)),
            ("DATABASE_PASSWORD", &"p".repeat(32)),
        ],
        true,
    );
    let (result, seen) = h
        .run(
            t.clone(),
            full_pass(Some(old), ready_deployment_status(2), true),
        )
        .await;
    assert!(result.is_ok(), "{result:?}");
    let keys = applied_keys(&seen);
    assert_eq!(keys.keys.len(), 2);
    assert_eq!(config_of(&seen)["LEGACY_HS256_TOKENS"], "true");
    let secret = body_of(&seen, "PATCH", &path("Secret", "acme-credentials"));
    assert_eq!(
        secret["metadata"]["annotations"]["faceid.dev/legacy-hs256-default"],
        "true"
    );
    assert_eq!(data_of(secret, "SECRET_KEY"), "k".repeat(64), "kept");
    assert_eq!(
        h.events.reasons(),
        ["SigningKeyCreated", "SigningKeyCreated", "TenantReady"]
    );

    // The next pass reads the keys and the mark back: same keys, HS256 still on.
    let stored = credentials_with(&keys, Some(("faceid.dev/legacy-hs256-default", "true")));
    t.status = Some(status_of(&seen));
    let (_, again) = h
        .run(
            t.clone(),
            full_pass(Some(stored.clone()), ready_deployment_status(2), false),
        )
        .await;
    assert_eq!(applied_keys(&again), keys);
    assert_eq!(config_of(&again)["LEGACY_HS256_TOKENS"], "true");

    // The spec decides once it says: legacyHs256 false turns HS256 off.
    t.spec.tokens.legacy_hs256 = Some(false);
    let (_, off) = h
        .run(t, full_pass(Some(stored), ready_deployment_status(2), true))
        .await;
    assert_eq!(config_of(&off)["LEGACY_HS256_TOKENS"], "false");
    assert_eq!(status_of(&off).legacy_hs256, Some(false));
}

#[tokio::test]
async fn deleting_the_keys_gives_new_ones_and_leaves_hs256_as_it_was() {
    let h = Harness::new();
    let mut t = minimal();
    t.status = Some(FaceIdTenantStatus::default());
    // A new tenant's Secret without its keys (deleted by hand to replace them).
    let mut stored = credentials_with(
        &stored_keys(),
        Some(("faceid.dev/legacy-hs256-default", "false")),
    );
    stored.data.as_mut().unwrap().remove("SIGNING_KEYS");
    let (result, seen) = h
        .run(t, full_pass(Some(stored), ready_deployment_status(2), true))
        .await;
    assert!(result.is_ok(), "{result:?}");
    let keys = applied_keys(&seen);
    assert_eq!(keys.keys.len(), 2);
    assert!(
        keys.keys
            .iter()
            .all(|k| stored_keys().keys.iter().all(|s| s.kid != k.kid))
    );
    assert_eq!(config_of(&seen)["LEGACY_HS256_TOKENS"], "false");
    assert_eq!(
        h.events.reasons(),
        ["SigningKeyCreated", "SigningKeyCreated", "TenantReady"]
    );
}

#[tokio::test]
async fn an_unreadable_key_document_is_refused_not_replaced() {
    let h = Harness::new();
    let mut broken = own_secret();
    broken.data.as_mut().unwrap().insert(
        "SIGNING_KEYS".into(),
        ByteString(br#"{"keys": [{"kid": "x"}]}"#.to_vec()),
    );
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
                    Reply::Json(json!(broken)),
                ),
                status_patch(),
            ],
        )
        .await;
    assert!(matches!(result, Ok(a) if a == Action::requeue(Duration::from_secs(300))));
    let c = condition(&status_of(&seen), types::SECRETS_READY).clone();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "InvalidSigningKeys")
    );
    assert!(c.message.contains("SIGNING_KEYS"), "{}", c.message);
    assert!(!c.message.contains("PRIVATE"), "{}", c.message);
}

/// A rotation as the operator runs it, with the real service's token code reading each
/// key document the operator stored: the successor is published an hour ahead, signs
/// from then on, and a token the old key signed verifies through the overlap and is
/// refused once the overlap has passed and the old key is dropped.
#[tokio::test]
async fn a_rotation_keeps_old_tokens_valid_through_the_overlap_then_drops_the_key() {
    use faceid_service::domain::tokens::{AccessAlgorithm, KeySet, TokenError, TokenService};
    let h = Harness::new();
    let mut t = minimal();
    // Rotate daily; replaced keys verify for 60 minutes, the access-token lifetime.
    t.spec.tokens.signing_keys.rotation_period_days = 1;
    t.spec.tokens.signing_keys.overlap_minutes = 60;
    t.spec.security.access_token_expire_minutes = 60;
    t.status = Some(FaceIdTenantStatus::default());
    let t0 = now(); // the stored keys are a day old: due now
    let at = |minutes: i64| t0 + k8s_openapi::jiff::SignedDuration::from_mins(minutes);
    let service = |doc: &KeyDocument, when: Timestamp| {
        TokenService::with_keys(
            "team-a_acme",
            KeySet::from_document(doc).unwrap(),
            None,
            AccessAlgorithm::EdDsa,
            Duration::from_secs(3600),
            chrono_of(when),
        )
        .unwrap()
    };
    let before = stored_keys();
    let old_kid = before
        .signing(Alg::EdDsa, chrono_of(t0))
        .unwrap()
        .kid
        .clone();

    // Pass 1, at the rotation instant: successors published, not signing yet.
    let (result, seen, _) = h
        .run_at(
            t.clone(),
            full_pass(
                Some(credentials_with(&before, None)),
                ready_deployment_status(2),
                true,
            ),
            t0,
        )
        .await;
    assert!(result.is_ok(), "{result:?}");
    let rotated = applied_keys(&seen);
    assert_eq!(rotated.keys.len(), 4);
    let new_kid = rotated.keys[2].kid.clone();
    let status = status_of(&seen);
    let state = |s: &FaceIdTenantStatus, kid: &str| {
        s.signing_keys
            .iter()
            .find(|k| k.kid == kid)
            .unwrap()
            .state
            .clone()
    };
    assert_eq!(state(&status, &old_kid), "signing");
    assert_eq!(state(&status, &new_kid), "next");
    assert_eq!(
        h.events.reasons()[..2],
        [
            "SigningKeyRotated".to_owned(),
            "SigningKeyRotated".to_owned()
        ]
    );
    // Until the switch (an hour later) the old key signs: the last token it signs...
    let last_old = service(&rotated, at(59))
        .issue_access(uuid_of(1), 0, chrono_of(at(59)))
        .unwrap();
    assert!(last_old.contains('.'));
    // ...and from the switch on the new one, with the same stored document.
    let first_new = service(&rotated, at(60))
        .issue_access(uuid_of(2), 0, chrono_of(at(60)))
        .unwrap();
    let kid_of = |token: &str| {
        let header = token.split('.').next().unwrap();
        let json: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .unwrap(),
        )
        .unwrap();
        json["kid"].as_str().unwrap().to_owned()
    };
    assert_eq!(kid_of(&last_old), old_kid);
    assert_eq!(kid_of(&first_new), new_kid);

    // Pass 2, at the switch: nothing stored changes; the status says who signs.
    let mut t2 = t.clone();
    t2.status = Some(status);
    let (result, seen, _) = h
        .run_at(
            t2.clone(),
            full_pass(
                Some(credentials_with(&rotated, None)),
                ready_deployment_status(2),
                true,
            ),
            at(60),
        )
        .await;
    assert!(result.is_ok());
    assert_eq!(applied_keys(&seen), rotated);
    let status = status_of(&seen);
    assert_eq!(state(&status, &new_kid), "signing");
    assert_eq!(state(&status, &old_kid), "retiring");

    // During the overlap the old key's last token still verifies.
    let during = service(&rotated, at(60));
    assert!(
        during
            .verify_access_at(&last_old, chrono_of(at(119)))
            .is_ok()
    );

    // Shortly before the end of the overlap the operator asks to be woken at it.
    t2.status = Some(status);
    let (result, _, _) = h
        .run_at(
            t2.clone(),
            full_pass(
                Some(credentials_with(&rotated, None)),
                ready_deployment_status(2),
                false,
            ),
            at(120) - k8s_openapi::jiff::SignedDuration::from_secs(100),
        )
        .await;
    assert!(
        matches!(&result, Ok(a) if *a == Action::requeue(Duration::from_secs(100))),
        "{result:?}"
    );

    // Pass 3, when the overlap has passed: the old keys are dropped.
    let (result, seen, _) = h
        .run_at(
            t2,
            full_pass(
                Some(credentials_with(&rotated, None)),
                ready_deployment_status(2),
                true,
            ),
            at(120),
        )
        .await;
    assert!(result.is_ok());
    let after = applied_keys(&seen);
    assert_eq!(after.keys.len(), 2);
    assert!(after.keys.iter().all(|k| k.kid != old_kid));
    assert!(h.events.reasons().contains(&"SigningKeyDropped".to_owned()));
    // The old key's token is refused, by the pods still on the rotated document (the
    // key expired) and by those on the new one (the key is gone); the new key's token
    // still verifies.
    for doc in [&rotated, &after] {
        let s = service(&after, at(120));
        assert_eq!(
            service(doc, at(120)).verify_access_at(&last_old, chrono_of(at(120))),
            Err(TokenError::Invalid)
        );
        assert!(s.verify_access_at(&first_new, chrono_of(at(120))).is_ok());
    }
}

fn uuid_of(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}
