//! The reconciler of `FaceIdTenant`, as a sequence of steps:
//!
//! 1. **validate** (pure, [`crate::crd::validate_tenant`]): an invalid spec or name
//!    becomes a condition and the tenant waits for a change;
//! 2. **secrets**: read the Secrets the spec refers to and the operator's own
//!    credentials Secret (refusing one it does not own, adopting one kept for this
//!    tenant by `deletionPolicy: Retain`);
//! 3. **database**: schema, role, migrations and index ([`TenantDatabase`]), run when
//!    the generation changed, the resync timer elapsed or the database is not ready (not
//!    on every reconciliation a child's status change triggers); an HNSW rebuild runs in
//!    the background;
//! 4. **workload**: build the desired objects (pure, [`crate::resources::build`]) and
//!    server-side apply them under one field manager; a refused apply is a condition;
//! 5. **status**: conditions, schema, index, endpoint and replicas, written only when
//!    they changed.
//!
//! Each step either continues with its output or stops with one `Blocked` outcome
//! (condition, reason, message, Event, requeue), which `resolve` turns into conditions,
//! a status write, an Event and the requeue in one place.
//!
//! Deletion goes through a finalizer that honours `deletionPolicy` and always finishes:
//! after `cleanup_timeout` of failures (or with the skip annotation) it gives up with a
//! Warning Event that says what to do by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::conditions::{self, Status, reasons, types};
use crate::config::{TenantSecrets, tenant_key};
use crate::crd::{
    DeletionPolicy, FaceIdTenant, FaceIdTenantStatus, IndexStatus, PAUSED_ANNOTATION,
    RETAINED_FOR_ANNOTATION, SKIP_CLEANUP_ANNOTATION, SigningKeyStatus, validate_tenant,
};
use crate::database::{
    self, Deprovisioned, IndexParams, IndexRebuild, ProvisionRequest, ProvisionedDatabase,
    generate_secret, role_database_url, role_name,
};
use crate::metrics::{Metrics, Readiness};
use crate::oidc;
use crate::resources::{self, Desired, Inputs, is_controlled_by, keys, secret_value};
use crate::signing_keys::{self, Change};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "faceid-operator";
/// The field manager that keeps a Deployment's `spec.replicas` while autoscaling takes
/// it over: before the first apply without `spec.replicas`, the operator applies the
/// current count under this manager, so the field is not removed (and the Deployment
/// not dropped to 1 replica) before the autoscaler writes it.
pub const HANDOVER_FIELD_MANAGER: &str = "faceid-operator-autoscaling-handover";
/// The finalizer on every tenant.
pub const FINALIZER: &str = "faceid.dev/cleanup";

/// How long a tenant whose referenced Secret is missing waits before the next look.
pub const MISSING_SECRET_RETRY: Duration = Duration::from_secs(60);
/// How long a refused tenant (claimed schema, foreign Secret, an apply the API server
/// refused) waits before a re-check.
pub const REFUSED_RETRY: Duration = Duration::from_secs(300);
/// Periodic re-check of a healthy tenant; also the longest the database step is skipped
/// (database drift, index parameters, the active-user count).
pub const RESYNC: Duration = Duration::from_secs(300);
/// How often a tenant whose HNSW index is being rebuilt in the background is looked at.
pub const INDEX_REBUILD_POLL: Duration = Duration::from_secs(15);

/// A reconciliation failure. Every variant maps to a short static category used for
/// metric labels.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// A database step failed (transient; retried with backoff).
    #[error(transparent)]
    Database(#[from] database::Error),
    /// Adding or removing the finalizer, or the wrapped reconcile, failed.
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Deletion cleanup failed; retried until the deadline, then abandoned.
    #[error("cleanup of tenant {tenant} failed (retrying until {deadline}): {message}")]
    CleanupPending {
        /// `<namespace>/<name>` of the tenant.
        tenant: String,
        /// When the operator stops retrying and removes the finalizer anyway.
        deadline: Timestamp,
        /// The last failure.
        message: String,
    },
    /// The object has no namespace (the resource is namespaced; should never happen).
    #[error("FaceIdTenant has no namespace")]
    NoNamespace,
    /// This replica no longer knows itself the leader (a lease it could not renew in
    /// time, a process that was frozen): it writes nothing more.
    #[error("not the leader: this replica writes nothing until it holds the Lease again")]
    NotLeader,
}

impl Error {
    /// Static category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kubernetes",
            Error::Database(_) => "database",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.category(),
                _ => "finalizer",
            },
            Error::CleanupPending { .. } => "cleanup",
            Error::NoNamespace => "internal",
            Error::NotLeader => "leadership",
        }
    }
}

/// Result alias of the reconciler.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The database steps, behind a trait so the reconciler can be tested without
/// PostgreSQL. [`Postgres`] is the real implementation.
pub trait TenantDatabase: Send + Sync {
    /// [`database::provision_schema`] on the database of `admin_url`: everything but a
    /// rebuild of the HNSW index, which it reports in `index_wanted`.
    fn provision<'a>(
        &'a self,
        admin_url: &'a str,
        req: &'a ProvisionRequest,
    ) -> BoxFuture<'a, database::Result<ProvisionedDatabase>>;
    /// [`database::rebuild_index`] on the database of `admin_url` (minutes on a large
    /// gallery: the reconciler runs it as a background task).
    fn rebuild_index<'a>(
        &'a self,
        admin_url: &'a str,
        schema: &'a str,
        want: IndexParams,
    ) -> BoxFuture<'a, database::Result<IndexRebuild>>;
    /// [`database::deprovision`] on the database of `admin_url`.
    fn deprovision<'a>(
        &'a self,
        admin_url: &'a str,
        tenant: &'a str,
        schema: &'a str,
    ) -> BoxFuture<'a, database::Result<Deprovisioned>>;
}

/// [`TenantDatabase`] on real PostgreSQL servers: one small pool per admin URL
/// ([`database::POOL_SIZE`] connections), and as many provisioning or cleanup calls at
/// once per URL as the pool has connections (the others queue here, not in the pool, so
/// none of them waits out the pool's acquire timeout however many tenants reconcile at
/// once). Index rebuilds use connections of their own.
#[derive(Default)]
pub struct Postgres {
    pools: Mutex<HashMap<String, AdminPool>>,
}

#[derive(Clone)]
struct AdminPool {
    pool: PgPool,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

impl Postgres {
    async fn pool(&self, admin_url: &str) -> database::Result<AdminPool> {
        if let Ok(pools) = self.pools.lock()
            && let Some(pool) = pools.get(admin_url)
        {
            return Ok(pool.clone());
        }
        let pool = AdminPool {
            pool: database::connect(admin_url).await?,
            permits: Arc::new(Semaphore::new(database::POOL_SIZE as usize)),
        };
        if let Ok(mut pools) = self.pools.lock() {
            // Two first calls at once: keep the first pool.
            return Ok(pools.entry(admin_url.to_owned()).or_insert(pool).clone());
        }
        Ok(pool)
    }
}

/// Runs `f` on the pool of `admin_url` holding one of its permits.
async fn with_permit<T, F, Fut>(db: &Postgres, admin_url: &str, f: F) -> database::Result<T>
where
    F: FnOnce(PgPool) -> Fut,
    Fut: std::future::Future<Output = database::Result<T>>,
{
    let admin = db.pool(admin_url).await?;
    let _permit = admin
        .permits
        .acquire()
        .await
        .map_err(|_| database::Error::Database(sqlx::Error::PoolClosed))?;
    f(admin.pool).await
}

impl TenantDatabase for Postgres {
    fn provision<'a>(
        &'a self,
        admin_url: &'a str,
        req: &'a ProvisionRequest,
    ) -> BoxFuture<'a, database::Result<ProvisionedDatabase>> {
        Box::pin(with_permit(self, admin_url, move |pool| async move {
            database::provision_schema(&pool, req).await
        }))
    }
    fn rebuild_index<'a>(
        &'a self,
        admin_url: &'a str,
        schema: &'a str,
        want: IndexParams,
    ) -> BoxFuture<'a, database::Result<IndexRebuild>> {
        Box::pin(async move {
            let admin = self.pool(admin_url).await?;
            database::rebuild_index(&admin.pool, schema, want).await
        })
    }
    fn deprovision<'a>(
        &'a self,
        admin_url: &'a str,
        tenant: &'a str,
        schema: &'a str,
    ) -> BoxFuture<'a, database::Result<Deprovisioned>> {
        Box::pin(with_permit(self, admin_url, move |pool| async move {
            database::deprovision(&pool, tenant, schema).await
        }))
    }
}

/// One Event about a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantEvent {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// CamelCase action the operator took.
    pub action: &'static str,
    /// Human-readable note.
    pub note: String,
}

/// Where Events go: [`KubeEvents`] in a cluster, a recorder in tests.
pub trait EventSink: Send + Sync {
    /// Publishes one Event about `tenant`; failures are logged, never fatal.
    fn publish<'a>(&'a self, tenant: &'a FaceIdTenant, event: TenantEvent) -> BoxFuture<'a, ()>;
}

/// [`EventSink`] writing `events.k8s.io/v1` Events.
#[derive(Clone)]
pub struct KubeEvents {
    recorder: Recorder,
}

impl std::fmt::Debug for KubeEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEvents").finish_non_exhaustive()
    }
}

impl KubeEvents {
    /// Events reported as `faceid-operator` from `instance` (the pod name).
    pub fn new(client: Client, instance: Option<String>) -> Self {
        Self {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: FIELD_MANAGER.to_owned(),
                    instance,
                },
            ),
        }
    }
}

impl EventSink for KubeEvents {
    fn publish<'a>(&'a self, tenant: &'a FaceIdTenant, event: TenantEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let ev = KubeEvent {
                type_: if event.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: event.reason,
                note: Some(event.note.chars().take(1000).collect()),
                action: event.action.to_owned(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&ev, &tenant.object_ref(&())).await {
                tracing::warn!(error = %e, "could not publish event");
            }
        })
    }
}

/// Operator settings the reconciler needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Image used when a tenant sets none.
    pub default_image: String,
    /// How long deletion cleanup is retried before the finalizer is removed anyway.
    pub cleanup_timeout: Duration,
}

/// The last successful database step of one tenant: what makes the next one due.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DatabaseMemo {
    uid: Option<String>,
    generation: Option<i64>,
    at: Timestamp,
    /// SHA-256 of the admin URL and the role password it provisioned with.
    fingerprint: [u8; 32],
}

/// The background HNSW rebuild of one tenant.
#[derive(Debug)]
enum Rebuild {
    /// Building; aborted when the tenant goes away.
    Running {
        want: IndexParams,
        task: tokio::task::AbortHandle,
    },
    /// Done, not yet reported.
    Finished {
        want: IndexParams,
        result: Result<IndexParams, String>,
    },
    /// Reported as failed: not started again for these parameters before [`RESYNC`].
    Failed {
        want: IndexParams,
        at: Timestamp,
        message: String,
    },
}

/// Everything a reconciliation needs, shared by all of them.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Database steps.
    pub database: Arc<dyn TenantDatabase>,
    /// Event sink.
    pub events: Arc<dyn EventSink>,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Settings,
    /// The clock (fixed in tests).
    pub now: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// Whether this replica may write to the API now (leader election's guard; always
    /// true without leader election). Checked before every write of a reconciliation.
    write_guard: Arc<dyn Fn() -> bool + Send + Sync>,
    /// A number in [0, 1] for the backoff's jitter (random; fixed in tests).
    jitter: Arc<dyn Fn() -> f64 + Send + Sync>,
    failures: Mutex<HashMap<String, u32>>,
    admin_urls: Mutex<HashMap<String, String>>,
    databases: Mutex<HashMap<String, DatabaseMemo>>,
    rebuilds: Arc<Mutex<HashMap<String, Rebuild>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context with the system clock.
    pub fn new(
        client: Client,
        database: Arc<dyn TenantDatabase>,
        events: Arc<dyn EventSink>,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        Self {
            client,
            database,
            events,
            metrics,
            settings,
            now: Arc::new(Timestamp::now),
            write_guard: Arc::new(|| true),
            jitter: Arc::new(rand::random::<f64>),
            failures: Mutex::new(HashMap::new()),
            admin_urls: Mutex::new(HashMap::new()),
            databases: Mutex::new(HashMap::new()),
            rebuilds: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.now = Arc::new(now);
        self
    }

    /// Replaces the source of the backoff's jitter (a number in [0, 1]; random by
    /// default).
    pub fn with_jitter(mut self, jitter: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.jitter = Arc::new(jitter);
        self
    }

    /// Makes every write of a reconciliation first ask `guard` (leader election: "do I
    /// still hold the Lease, judged on my own clock?"); a `false` stops the
    /// reconciliation with [`Error::NotLeader`] before anything is written.
    pub fn with_write_guard(mut self, guard: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.write_guard = Arc::new(guard);
        self
    }

    /// `Ok` while this replica may write to the API.
    pub fn may_write(&self) -> Result<()> {
        if (self.write_guard)() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    fn remember_admin_url(&self, key: &str, url: &str) {
        if let Ok(mut m) = self.admin_urls.lock() {
            m.insert(key.to_owned(), url.to_owned());
        }
    }

    fn cached_admin_url(&self, key: &str) -> Option<String> {
        self.admin_urls
            .lock()
            .ok()
            .and_then(|m| m.get(key).cloned())
    }

    /// Drops everything remembered about a tenant that is gone, and stops its index
    /// rebuild.
    fn forget(&self, key: &str) {
        if let Ok(mut m) = self.admin_urls.lock() {
            m.remove(key);
        }
        self.forget_database(key);
        self.abort_rebuild(key);
        self.metrics.set_tenant(key, None);
    }

    /// Whether the database step of `tenant` must run: nothing remembered (a new
    /// tenant, a restarted operator), another generation or object, other credentials,
    /// [`RESYNC`] elapsed since the last successful step, or `DatabaseReady` not `True`.
    fn database_due(&self, tenant: &FaceIdTenant, fingerprint: &[u8; 32], now: Timestamp) -> bool {
        let ready = tenant
            .status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, types::DATABASE_READY));
        let memo = self
            .databases
            .lock()
            .ok()
            .and_then(|m| m.get(&tenant_key(tenant)).cloned());
        !ready
            || memo.is_none_or(|m| {
                m.uid != tenant.uid()
                    || m.generation != tenant.meta().generation
                    || m.fingerprint != *fingerprint
                    || elapsed(now, m.at) >= RESYNC
            })
    }

    fn forget_database(&self, key: &str) {
        if let Ok(mut m) = self.databases.lock() {
            m.remove(key);
        }
    }

    fn remember_database(&self, tenant: &FaceIdTenant, fingerprint: [u8; 32], now: Timestamp) {
        if let Ok(mut m) = self.databases.lock() {
            m.insert(
                tenant_key(tenant),
                DatabaseMemo {
                    uid: tenant.uid(),
                    generation: tenant.meta().generation,
                    at: now,
                    fingerprint,
                },
            );
        }
    }

    /// The parameters of the tenant's running rebuild, if one runs.
    fn rebuild_running(&self, key: &str) -> Option<IndexParams> {
        match self.rebuilds.lock().ok()?.get(key)? {
            Rebuild::Running { want, .. } => Some(*want),
            _ => None,
        }
    }

    /// Takes the result of a finished rebuild (a failure is kept as [`Rebuild::Failed`]).
    fn take_finished_rebuild(
        &self,
        key: &str,
        now: Timestamp,
    ) -> Option<(IndexParams, Result<IndexParams, String>)> {
        let mut m = self.rebuilds.lock().ok()?;
        if !matches!(m.get(key), Some(Rebuild::Finished { .. })) {
            return None;
        }
        let Some(Rebuild::Finished { want, result }) = m.remove(key) else {
            return None;
        };
        if let Err(message) = &result {
            m.insert(
                key.to_owned(),
                Rebuild::Failed {
                    want,
                    at: now,
                    message: message.clone(),
                },
            );
        }
        Some((want, result))
    }

    /// The failure of a rebuild to `want` less than [`RESYNC`] ago.
    fn recent_rebuild_failure(
        &self,
        key: &str,
        want: IndexParams,
        now: Timestamp,
    ) -> Option<String> {
        match self.rebuilds.lock().ok()?.get(key)? {
            Rebuild::Failed {
                want: w,
                at,
                message,
            } if *w == want && elapsed(now, *at) < RESYNC => Some(message.clone()),
            _ => None,
        }
    }

    /// Starts the tenant's index rebuild as a background task (one per tenant: the
    /// caller checked that none runs); its result is picked up by a later pass.
    fn start_rebuild(&self, key: &str, admin_url: &str, schema: &str, want: IndexParams) {
        let Ok(mut m) = self.rebuilds.lock() else {
            return;
        };
        let (db, rebuilds) = (self.database.clone(), self.rebuilds.clone());
        let (url, schema, task_key) = (admin_url.to_owned(), schema.to_owned(), key.to_owned());
        // Spawned while the map is locked: the task records its result only after the
        // `Running` entry below is in place.
        let task = tokio::spawn(async move {
            let result = db
                .rebuild_index(&url, &schema, want)
                .await
                .map(|r| r.index)
                .map_err(|e| e.to_string());
            if let Ok(mut m) = rebuilds.lock() {
                m.insert(task_key, Rebuild::Finished { want, result });
            }
        });
        m.insert(
            key.to_owned(),
            Rebuild::Running {
                want,
                task: task.abort_handle(),
            },
        );
    }

    fn abort_rebuild(&self, key: &str) {
        if let Ok(mut m) = self.rebuilds.lock()
            && let Some(Rebuild::Running { task, .. }) = m.remove(key)
        {
            task.abort();
        }
    }

    /// Ceiling of the delay after a tenant's `n`-th consecutive failure: 5 s doubling up
    /// to 5 minutes.
    pub fn backoff_ceiling(n: u32) -> Duration {
        let secs = 5u64.saturating_mul(1u64 << n.saturating_sub(1).min(10));
        Duration::from_secs(secs.min(300))
    }

    /// Delay before retrying a tenant after its `n`-th consecutive failure, with "equal
    /// jitter": half the ceiling ([`Context::backoff_ceiling`]) plus `unit` (in [0, 1])
    /// times the other half. Tenants that failed together (one database down for all of
    /// them) spread their retries over the upper half instead of retrying in lockstep.
    pub fn backoff(n: u32, unit: f64) -> Duration {
        let ceiling = Self::backoff_ceiling(n);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// `now - at`, zero when `at` is in the future.
fn elapsed(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(at)).unwrap_or(Duration::ZERO)
}

/// Reconciles one tenant (the function the Controller runs).
pub async fn reconcile(tenant: Arc<FaceIdTenant>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let key = tenant_key(&tenant);
    let result = reconcile_inner(tenant, &ctx).await;
    ctx.metrics
        .reconciled(result.is_ok(), start.elapsed().as_secs_f64());
    if result.is_ok()
        && let Ok(mut f) = ctx.failures.lock()
    {
        f.remove(&key);
    }
    result
}

/// What the Controller does after a failed reconciliation: count it and retry with
/// jittered exponential backoff ([`Context::backoff`]).
pub fn error_policy(tenant: Arc<FaceIdTenant>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(error.category());
    let n = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(tenant_key(&tenant)).or_insert(0);
            *n += 1;
            *n
        })
        .unwrap_or(1);
    let delay = Context::backoff(n, (ctx.jitter)());
    tracing::warn!(
        tenant = %tenant_key(&tenant),
        category = error.category(),
        error = %error,
        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        "reconciliation failed"
    );
    Action::requeue(delay)
}

fn annotation_true(tenant: &FaceIdTenant, key: &str) -> bool {
    tenant
        .annotations()
        .get(key)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

async fn reconcile_inner(tenant: Arc<FaceIdTenant>, ctx: &Context) -> Result<Action> {
    // Also the guard of the finalizer's addition, the first write of a new tenant.
    ctx.may_write()?;
    let ns = tenant.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<FaceIdTenant> = Api::namespaced(ctx.client.clone(), &ns);
    if tenant.meta().deletion_timestamp.is_none() && annotation_true(&tenant, PAUSED_ANNOTATION) {
        return paused(&api, &tenant, ctx).await;
    }
    finalizer(&api, FINALIZER, tenant, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&api, &t, ctx).await,
            Finalizer::Cleanup(t) => cleanup(&api, &t, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn paused(api: &Api<FaceIdTenant>, tenant: &FaceIdTenant, ctx: &Context) -> Result<Action> {
    let mut status = tenant.status.clone().unwrap_or_default();
    conditions::set(
        &mut status.conditions,
        types::READY,
        Status::Unknown,
        reasons::PAUSED,
        format!("reconciliation is paused: remove the annotation {PAUSED_ANNOTATION} to resume"),
        tenant.meta().generation,
        (ctx.now)(),
    );
    ctx.metrics
        .set_tenant(&tenant_key(tenant), Some(Readiness::Paused));
    write_status(api, tenant, status, ctx).await?;
    Ok(Action::await_change())
}

/// Patches the status when it differs from the tenant's, publishing an Event when
/// `Ready` changes status or reason; whether it published that Event.
async fn write_status(
    api: &Api<FaceIdTenant>,
    tenant: &FaceIdTenant,
    status: FaceIdTenantStatus,
    ctx: &Context,
) -> Result<bool> {
    let old = tenant.status.clone().unwrap_or_default();
    if old == status {
        return Ok(false);
    }
    ctx.may_write()?;
    let before = conditions::get(&old.conditions, types::READY).cloned();
    let after = conditions::get(&status.conditions, types::READY).cloned();
    api.patch_status(
        &tenant.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await?;
    if let Some(after) = after
        && before
            .as_ref()
            .is_none_or(|b| b.status != after.status || b.reason != after.reason)
    {
        ctx.events
            .publish(
                tenant,
                TenantEvent {
                    warning: after.status == "False",
                    reason: after.reason.clone(),
                    action: "Reconcile",
                    note: after.message.clone(),
                },
            )
            .await;
        return Ok(true);
    }
    Ok(false)
}

/// What one step of a reconciliation produced: its output, or the one reason the
/// tenant cannot go further now.
enum Step<T> {
    /// Go on with the next step.
    Continue(T),
    /// Stop here; [`resolve`] reports it.
    Blocked(Blocked),
}

/// The output of a step, or an early return of its [`Blocked`] outcome.
macro_rules! step {
    ($step:expr) => {
        match $step {
            Step::Continue(value) => value,
            Step::Blocked(blocked) => return Ok(Step::Blocked(blocked)),
        }
    };
}

/// Why a reconciliation stops, and when it is tried again.
#[derive(Debug)]
struct Blocked {
    /// The condition that says so: a component (`SecretsReady`, `DatabaseReady`,
    /// `WorkloadReady`, set `False`, `Ready` derived from it), or `Ready` itself for an
    /// invalid spec.
    condition: &'static str,
    /// CamelCase reason of the condition and of the Event.
    reason: &'static str,
    /// What is wrong and what to do.
    message: String,
    /// Whether it needs a person (a Warning Event also when only the message changed).
    warning: bool,
    /// When to look again.
    requeue: Requeue,
    /// Metric category of the refusal; `None` when the error policy counts it.
    category: Option<&'static str>,
}

/// When a blocked tenant is reconciled again.
#[derive(Debug)]
enum Requeue {
    /// After a fixed delay (a missing Secret, a refusal someone must fix).
    After(Duration),
    /// Only when the tenant changes (an invalid spec).
    AwaitChange,
    /// As a failed reconciliation, with the error policy's backoff (transient faults).
    Backoff(Error),
}

/// The components after `condition`, in the order the steps set them.
fn later_components(condition: &str) -> &'static [&'static str] {
    match condition {
        types::SECRETS_READY => &[types::DATABASE_READY, types::WORKLOAD_READY],
        types::DATABASE_READY => &[types::WORKLOAD_READY],
        _ => &[],
    }
}

/// Turns a [`Blocked`] outcome into the tenant's conditions, one status write, an Event
/// and the requeue: the one place every step's refusal is reported.
async fn resolve(
    api: &Api<FaceIdTenant>,
    tenant: &FaceIdTenant,
    ctx: &Context,
    mut status: FaceIdTenantStatus,
    blocked: Blocked,
) -> Result<Action> {
    let (now, generation) = ((ctx.now)(), tenant.meta().generation);
    let before = conditions::get(&status.conditions, blocked.condition).cloned();
    conditions::set(
        &mut status.conditions,
        blocked.condition,
        Status::False,
        blocked.reason,
        blocked.message.clone(),
        generation,
        now,
    );
    if blocked.condition != types::READY {
        mark_waiting(
            &mut status,
            later_components(blocked.condition),
            generation,
            now,
        );
        conditions::set_ready(&mut status.conditions, generation, now);
    }
    if let Some(category) = blocked.category {
        ctx.metrics.failed(category);
    }
    ctx.metrics
        .set_tenant(&tenant_key(tenant), Some(Readiness::NotReady));
    let published = write_status(api, tenant, status, ctx).await?;
    let changed = before.is_none_or(|b| {
        b.status != "False" || b.reason != blocked.reason || b.message != blocked.message
    });
    if blocked.warning && changed && !published {
        publish(
            ctx,
            tenant,
            true,
            blocked.reason,
            "Reconcile",
            blocked.message,
        )
        .await;
    }
    match blocked.requeue {
        Requeue::After(delay) => Ok(Action::requeue(delay)),
        Requeue::AwaitChange => Ok(Action::await_change()),
        Requeue::Backoff(error) => Err(error),
    }
}

async fn publish(
    ctx: &Context,
    tenant: &FaceIdTenant,
    warning: bool,
    reason: &str,
    action: &'static str,
    note: String,
) {
    // A replica that no longer knows itself the leader publishes nothing either.
    if ctx.may_write().is_err() {
        return;
    }
    ctx.events
        .publish(
            tenant,
            TenantEvent {
                warning,
                reason: reason.to_owned(),
                action,
                note,
            },
        )
        .await;
}

/// A successful pass: the applied Deployment and when to look again.
struct Done {
    deployment: Deployment,
    requeue: Duration,
}

async fn apply(api: &Api<FaceIdTenant>, tenant: &FaceIdTenant, ctx: &Context) -> Result<Action> {
    let mut status = tenant.status.clone().unwrap_or_default();
    status.observed_generation = tenant.meta().generation;
    match steps(tenant, ctx, &mut status).await? {
        Step::Blocked(blocked) => resolve(api, tenant, ctx, status, blocked).await,
        Step::Continue(done) => finish(api, tenant, ctx, status, done).await,
    }
}

/// The steps of a pass, each continuing or blocking; `status` collects their
/// conditions.
async fn steps(
    tenant: &FaceIdTenant,
    ctx: &Context,
    status: &mut FaceIdTenantStatus,
) -> Result<Step<Done>> {
    step!(validate_step(tenant));
    let found = step!(secrets_step(tenant, ctx, status).await?);
    let keys_due = found.credentials.keys_due;
    let database = step!(database_step(tenant, ctx, &found, status).await?);
    let desired = resources::build(tenant, &inputs(tenant, ctx, found, database.url));
    let deployment = step!(workload_step(tenant, ctx, &desired).await?);
    step!(oidc_secrets_step(tenant, ctx, &desired.oidc_client_secrets, status).await?);
    monitoring_step(tenant, ctx, desired.monitoring.as_ref(), status).await?;
    Ok(Step::Continue(Done {
        deployment,
        requeue: keys_due.map_or(database.requeue, |due| due.min(database.requeue)),
    }))
}

/// The status step: the workload condition and what the tenant's users need to know.
async fn finish(
    api: &Api<FaceIdTenant>,
    tenant: &FaceIdTenant,
    ctx: &Context,
    mut status: FaceIdTenantStatus,
    done: Done,
) -> Result<Action> {
    let now = (ctx.now)();
    workload_condition(&mut status, tenant, &done.deployment, now);
    status.endpoint = Some(resources::endpoint(tenant));
    status.selector = Some(resources::selector_string(tenant));
    status.secret_name = Some(resources::secret_name(tenant));
    conditions::set_ready(&mut status.conditions, tenant.meta().generation, now);
    let ready = conditions::is_true(&status.conditions, types::READY);
    ctx.metrics.set_tenant(
        &tenant_key(tenant),
        Some(if ready {
            Readiness::Ready
        } else {
            Readiness::NotReady
        }),
    );
    write_status(api, tenant, status, ctx).await?;
    Ok(Action::requeue(done.requeue))
}

/// Step 1 (pure): every rule of the schema, its CEL rules and the name's.
fn validate_step(tenant: &FaceIdTenant) -> Step<()> {
    let problems = validate_tenant(tenant);
    if problems.is_empty() {
        return Step::Continue(());
    }
    let message = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Step::Blocked(Blocked {
        condition: types::READY,
        reason: reasons::INVALID_SPEC,
        message: format!("{message}. Fix the spec; nothing was changed."),
        warning: true,
        requeue: Requeue::AwaitChange,
        category: Some("invalid_spec"),
    })
}

/// What the secrets step read.
struct Found {
    admin_url: String,
    redis_url: Option<String>,
    credentials: Credentials,
    /// The secret of each confidential OpenID client, by client id.
    oidc_client_secrets: std::collections::BTreeMap<String, String>,
}

/// Step 2: the referenced Secrets and the tenant's own credentials Secret.
async fn secrets_step(
    tenant: &FaceIdTenant,
    ctx: &Context,
    status: &mut FaceIdTenantStatus,
) -> Result<Step<Found>> {
    let ns = tenant.namespace().ok_or(Error::NoNamespace)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let (admin_url, redis_url) = step!(read_references(tenant, &secrets).await?);
    let credentials = step!(own_credentials(tenant, ctx, &secrets).await?);
    let oidc_client_secrets = step!(oidc_client_secrets(tenant, ctx).await?);
    ctx.remember_admin_url(&tenant_key(tenant), &admin_url);
    status.signing_keys = credentials.key_status.clone();
    status.legacy_hs256 = Some(crate::config::legacy_hs256(
        tenant,
        credentials.legacy_hs256_default,
    ));
    conditions::set(
        &mut status.conditions,
        types::SECRETS_READY,
        Status::True,
        reasons::SECRETS_AVAILABLE,
        format!(
            "connection read from Secret {:?}; credentials in Secret {:?}",
            tenant.spec.database.connection_secret_ref.name,
            resources::secret_name(tenant)
        ),
        tenant.meta().generation,
        (ctx.now)(),
    );
    Ok(Step::Continue(Found {
        admin_url,
        redis_url,
        credentials,
        oidc_client_secrets,
    }))
}

/// The secret of each confidential OpenID client: the one its Secret holds, a new one
/// for a client without a Secret (written by the workload step). A Secret of that name
/// the tenant does not control is never touched, nor a namespace that did not accept the
/// tenant's Secrets: the tenant waits, saying so.
async fn oidc_client_secrets(
    tenant: &FaceIdTenant,
    ctx: &Context,
) -> Result<Step<std::collections::BTreeMap<String, String>>> {
    let mut out = std::collections::BTreeMap::new();
    for client in tenant
        .spec
        .oidc
        .clients
        .iter()
        .filter(|c| c.is_confidential())
    {
        let at = oidc::SecretRef::of(tenant, client);
        if at.is_elsewhere(tenant) {
            step!(secret_namespace_accepts(tenant, ctx, &client.client_id, &at).await?);
        }
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &at.namespace);
        let existing = secrets.get_opt(&at.name).await?;
        if let Some(secret) = &existing
            && !oidc::is_of(secret, tenant)
        {
            return Ok(secret_blocked(
                reasons::SECRET_NOT_OWNED,
                format!(
                    "Secret {at} for OpenID client {:?} exists and is not this FaceIdTenant's; the operator never overwrites it: rename or delete it",
                    client.client_id
                ),
                REFUSED_RETRY,
            ));
        }
        let value = existing
            .as_ref()
            .and_then(oidc::stored_secret)
            .unwrap_or_else(|| generate_secret(48));
        out.insert(client.client_id.clone(), value);
    }
    Ok(Step::Continue(out))
}

/// Whether the namespace of client Secret `at` (not the tenant's) exists and accepts
/// the tenant's client Secrets ([`oidc::ACCEPT_ANNOTATION`]).
async fn secret_namespace_accepts(
    tenant: &FaceIdTenant,
    ctx: &Context,
    client_id: &str,
    at: &oidc::SecretRef,
) -> Result<Step<()>> {
    let own = tenant.namespace().ok_or(Error::NoNamespace)?;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let problem = match namespaces.get_opt(&at.namespace).await? {
        Some(ns) if oidc::accepts(&ns, &own) => return Ok(Step::Continue(())),
        Some(_) => format!(
            "namespace {:?} does not accept OpenID client Secrets from namespace {own:?}: its owner annotates it {}={own} (comma-separated with others)",
            at.namespace,
            oidc::ACCEPT_ANNOTATION
        ),
        None => format!("namespace {:?} does not exist", at.namespace),
    };
    Ok(secret_blocked(
        reasons::SECRET_NAMESPACE_NOT_ACCEPTED,
        format!(
            "Secret {at} for OpenID client {client_id:?} not written: {problem}; re-checked when that namespace or the tenant changes"
        ),
        REFUSED_RETRY,
    ))
}

fn secret_blocked<T>(reason: &'static str, message: String, retry: Duration) -> Step<T> {
    Step::Blocked(Blocked {
        condition: types::SECRETS_READY,
        reason,
        message,
        warning: true,
        requeue: Requeue::After(retry),
        category: Some("secret"),
    })
}

/// The database URL and the Redis URL (when the spec names Redis) from the Secrets the
/// spec refers to.
async fn read_references(
    tenant: &FaceIdTenant,
    secrets: &Api<Secret>,
) -> Result<Step<(String, Option<String>)>> {
    let db_ref = &tenant.spec.database.connection_secret_ref;
    let admin_url = match read_ref(
        secrets,
        &db_ref.name,
        &db_ref.key,
        "database connection",
        reasons::DATABASE_SECRET_NOT_FOUND,
        reasons::DATABASE_SECRET_KEY_MISSING,
    )
    .await?
    {
        Ok(url) => url,
        Err(r) => return Ok(secret_blocked(r.reason, r.message, MISSING_SECRET_RETRY)),
    };
    let Some(redis) = &tenant.spec.redis else {
        return Ok(Step::Continue((admin_url, None)));
    };
    match read_ref(
        secrets,
        &redis.secret_ref.name,
        &redis.secret_ref.key,
        "Redis",
        reasons::REDIS_SECRET_NOT_FOUND,
        reasons::REDIS_SECRET_KEY_MISSING,
    )
    .await?
    {
        Ok(url) => Ok(Step::Continue((admin_url, Some(url)))),
        Err(r) => Ok(secret_blocked(r.reason, r.message, MISSING_SECRET_RETRY)),
    }
}

/// The credentials of the tenant's own Secret: its values when the tenant owns it (or
/// adopts it, kept by `deletionPolicy: Retain`), generated ones when there is none; a
/// Secret of that name that is anybody else's is refused.
async fn own_credentials(
    tenant: &FaceIdTenant,
    ctx: &Context,
    secrets: &Api<Secret>,
) -> Result<Step<Credentials>> {
    let name = resources::secret_name(tenant);
    let own = secrets.get_opt(&name).await?;
    match own.as_ref().map(|s| (s, ownership(s, tenant))) {
        None | Some((_, Ownership::Owned)) => {}
        Some((secret, Ownership::RetainedForThis)) => {
            adopt_credentials(secrets, tenant, secret, ctx).await?;
            publish(ctx, tenant, false, "CredentialsAdopted", "AdoptCredentials", format!(
                "adopted Secret {name} kept by deletionPolicy Retain: SECRET_KEY, ADMIN_API_KEY, TEMPLATE_KEY and the database password are reused, so enrolled faces and logins keep working"
            ))
            .await;
        }
        Some((_, Ownership::Foreign)) => {
            return Ok(secret_blocked(
                reasons::SECRET_NOT_OWNED,
                format!(
                    "Secret {name:?} exists and is not owned by this FaceIdTenant (nor kept for it by deletionPolicy Retain: annotation {RETAINED_FOR_ANNOTATION}={}); the operator never overwrites it: rename or delete it",
                    tenant_key(tenant)
                ),
                REFUSED_RETRY,
            ));
        }
    }
    let mut credentials = credentials(own.as_ref());
    let now = chrono_time((ctx.now)());
    let keys = match signing_keys(tenant, own.as_ref(), now) {
        Ok(keys) => keys,
        Err(message) => {
            return Ok(secret_blocked(
                reasons::INVALID_SIGNING_KEYS,
                format!(
                    "Secret {name:?}: {}: {message}; the operator never replaces stored keys: repair the document or delete the key {} (new keys are then generated, and every access token signed before stops verifying)",
                    keys::SIGNING_KEYS,
                    keys::SIGNING_KEYS
                ),
                REFUSED_RETRY,
            ));
        }
    };
    if credentials.generated && own.is_none() {
        publish(ctx, tenant, false, "CredentialsGenerated", "GenerateCredentials", format!(
            "generated SECRET_KEY, ADMIN_API_KEY, TEMPLATE_KEY, the database password and the token signing keys ({}) in Secret {name}",
            kids(&keys.plan.document)
        ))
        .await;
    } else {
        if credentials.generated {
            publish(ctx, tenant, false, "CredentialsGenerated", "GenerateCredentials", format!(
                "generated SECRET_KEY, ADMIN_API_KEY, TEMPLATE_KEY and the database password in Secret {name}"
            ))
            .await;
        }
        for change in &keys.plan.changes {
            let reason = match change {
                Change::Created { .. } => "SigningKeyCreated",
                Change::Rotated { .. } => "SigningKeyRotated",
                Change::Dropped { .. } => "SigningKeyDropped",
            };
            publish(
                ctx,
                tenant,
                false,
                reason,
                "RotateSigningKeys",
                format!("{change} (Secret {name})"),
            )
            .await;
        }
    }
    credentials.keys_due = keys.plan.next.map(|next| {
        (next - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(1))
    });
    credentials.key_status = key_status(&keys.plan.document, now);
    credentials.signing_keys = keys.plan.document.to_json();
    credentials.legacy_hs256_default = keys.legacy_hs256_default;
    Ok(Step::Continue(credentials))
}

/// Whose the existing credentials Secret is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// Controlled by this tenant.
    Owned,
    /// Kept by `deletionPolicy: Retain` for a tenant of this namespace and name, and
    /// controlled by nothing.
    RetainedForThis,
    /// Anything else: never touched.
    Foreign,
}

fn ownership(secret: &Secret, tenant: &FaceIdTenant) -> Ownership {
    if is_controlled_by(secret.owner_references(), tenant) {
        return Ownership::Owned;
    }
    let marked = secret.annotations().get(RETAINED_FOR_ANNOTATION) == Some(&tenant_key(tenant));
    let controlled = secret
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true));
    if marked && !controlled {
        Ownership::RetainedForThis
    } else {
        Ownership::Foreign
    }
}

/// Adopts a credentials Secret kept for this tenant: adds its controller owner
/// reference and removes the retained-for mark (a merge patch conditional on the
/// Secret's `resourceVersion`). Its values are reused as they are.
async fn adopt_credentials(
    secrets: &Api<Secret>,
    tenant: &FaceIdTenant,
    secret: &Secret,
    ctx: &Context,
) -> Result<()> {
    let mut refs = secret.owner_references().to_vec();
    refs.extend(tenant.controller_owner_ref(&()));
    ctx.may_write()?;
    secrets
        .patch(
            &secret.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {
                "resourceVersion": secret.resource_version(),
                "ownerReferences": refs,
                "annotations": {RETAINED_FOR_ANNOTATION: null},
            }})),
        )
        .await?;
    Ok(())
}

/// Why a referenced Secret could not be used.
struct Refused {
    reason: &'static str,
    message: String,
}

/// Reads `name`/`key` of a referenced Secret.
async fn read_ref(
    secrets: &Api<Secret>,
    name: &str,
    key: &str,
    what: &str,
    not_found: &'static str,
    key_missing: &'static str,
) -> Result<Result<String, Refused>> {
    let Some(secret) = secrets.get_opt(name).await? else {
        return Ok(Err(Refused {
            reason: not_found,
            message: format!(
                "{what} Secret {name:?} not found in the tenant's namespace: create it with the key {key:?}"
            ),
        }));
    };
    match secret_value(&secret, key) {
        Some(v) if !v.trim().is_empty() => Ok(Ok(v.trim().to_owned())),
        _ => Ok(Err(Refused {
            reason: key_missing,
            message: format!("{what} Secret {name:?} has no non-empty key {key:?}"),
        })),
    }
}

/// The tenant's existing generated credentials, or new ones.
struct Credentials {
    secret_key: String,
    admin_api_key: String,
    template_key: String,
    database_password: String,
    generated: bool,
    /// The `SIGNING_KEYS` document to store.
    signing_keys: String,
    /// Whether HS256 stays on while the spec leaves it unset.
    legacy_hs256_default: bool,
    /// Until the next key change, when there is one.
    keys_due: Option<Duration>,
    /// The keys as the status shows them.
    key_status: Vec<SigningKeyStatus>,
}

/// The signing keys to store, and whether the tenant predates them.
struct SigningKeys {
    plan: signing_keys::Plan,
    legacy_hs256_default: bool,
}

/// The tenant's signing keys at `now`: the stored ones rotated as the spec declares
/// ([`signing_keys::plan`]), generated ones for a Secret without any; an error for a
/// stored document that does not parse (never overwritten). Whether HS256 stays on by
/// default is what the Secret's annotation recorded; without one, whether the Secret
/// was made before signing keys existed (SECRET_KEY but no keys).
fn signing_keys(
    tenant: &FaceIdTenant,
    existing: Option<&Secret>,
    now: chrono::DateTime<chrono::Utc>,
) -> std::result::Result<SigningKeys, String> {
    let stored = existing
        .and_then(|s| secret_value(s, keys::SIGNING_KEYS))
        .filter(|v| !v.trim().is_empty());
    let document = stored
        .as_deref()
        .map(faceid_keys::KeyDocument::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    let recorded = existing
        .and_then(|s| s.annotations().get(resources::LEGACY_HS256_ANNOTATION))
        .and_then(|v| v.parse::<bool>().ok());
    let predates_keys =
        existing.is_some_and(|s| secret_value(s, keys::SECRET_KEY).is_some()) && document.is_none();
    let plan = signing_keys::plan(
        document.as_ref(),
        signing_keys::Rotation::of(&tenant.spec),
        now,
        &mut |alg, created, not_before| faceid_keys::KeyEntry::generate(alg, created, not_before),
    );
    Ok(SigningKeys {
        plan,
        legacy_hs256_default: recorded.unwrap_or(predates_keys),
    })
}

/// The keys' ids, `alg:kid`, comma-separated.
fn kids(document: &faceid_keys::KeyDocument) -> String {
    document
        .keys
        .iter()
        .map(|k| format!("{}:{}", k.alg, k.kid))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The keys as `status.signingKeys` shows them.
fn key_status(
    document: &faceid_keys::KeyDocument,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<SigningKeyStatus> {
    document
        .keys
        .iter()
        .map(|k| SigningKeyStatus {
            kid: k.kid.clone(),
            alg: k.alg.to_string(),
            state: signing_keys::state(document, k, now).to_owned(),
            signs_from: k
                .signs_from()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            expires: k
                .expires
                .map(|e| e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        })
        .collect()
}

/// The operator's clock as chrono's time.
fn chrono_time(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().unsigned_abs())
        .unwrap_or_default()
}

fn credentials(existing: Option<&Secret>) -> Credentials {
    let read = |k: &str, min: usize| {
        existing
            .and_then(|s| secret_value(s, k))
            .filter(|v| v.len() >= min)
    };
    let secret_key = read(keys::SECRET_KEY, 32);
    let admin_api_key = read(keys::ADMIN_API_KEY, 32);
    let template_key = read(keys::TEMPLATE_KEY, 32);
    let database_password =
        read(keys::DATABASE_PASSWORD, 16).filter(|p| p.bytes().all(|b| b.is_ascii_alphanumeric()));
    let generated = secret_key.is_none()
        || admin_api_key.is_none()
        || template_key.is_none()
        || database_password.is_none();
    Credentials {
        secret_key: secret_key.unwrap_or_else(|| generate_secret(64)),
        admin_api_key: admin_api_key.unwrap_or_else(|| generate_secret(48)),
        template_key: template_key.unwrap_or_else(|| generate_secret(64)),
        database_password: database_password.unwrap_or_else(|| generate_secret(32)),
        generated,
        signing_keys: String::new(),
        legacy_hs256_default: false,
        keys_due: None,
        key_status: Vec::new(),
    }
}

fn inputs(tenant: &FaceIdTenant, ctx: &Context, found: Found, database_url: String) -> Inputs {
    let c = found.credentials;
    Inputs {
        image: tenant
            .spec
            .workload
            .image
            .clone()
            .unwrap_or_else(|| ctx.settings.default_image.clone()),
        secrets: TenantSecrets {
            database_url,
            secret_key: c.secret_key,
            admin_api_key: c.admin_api_key,
            template_key: c.template_key,
            redis_url: found.redis_url,
            signing_keys: c.signing_keys,
            legacy_hs256_default: c.legacy_hs256_default,
            oidc_client_secrets: found.oidc_client_secrets,
        },
        database_password: c.database_password,
    }
}

fn database_reason(e: &database::Error) -> &'static str {
    use database::Error as E;
    match e {
        E::SchemaClaimed { .. } | E::RoleClaimed { .. } => reasons::SCHEMA_CLAIMED,
        E::SchemaNotManaged { .. } | E::RoleNotManaged { .. } => reasons::SCHEMA_NOT_MANAGED,
        E::InvalidUrl(_) => reasons::INVALID_DATABASE_URL,
        E::Migrations(faceid_migrations::Error::Database(_))
        | E::Database(_)
        | E::IndexBusy { .. } => reasons::DATABASE_UNAVAILABLE,
        E::Migrations(_) => reasons::MIGRATION_FAILED,
        E::InvalidSchema(_) | E::InvalidPassword => reasons::INVALID_SPEC,
    }
}

fn database_blocked(e: database::Error) -> Blocked {
    let reason = database_reason(&e);
    if e.is_permanent() {
        Blocked {
            condition: types::DATABASE_READY,
            reason,
            message: e.to_string(),
            warning: true,
            requeue: Requeue::After(REFUSED_RETRY),
            category: Some("database_refused"),
        }
    } else {
        Blocked {
            condition: types::DATABASE_READY,
            reason,
            message: format!("{e}; retrying with backoff"),
            warning: false,
            requeue: Requeue::Backoff(Error::Database(e)),
            category: None,
        }
    }
}

/// What the database step gives the next ones.
struct DatabaseOut {
    /// `DATABASE_URL` of the tenant's role.
    url: String,
    /// When to look again after a successful pass.
    requeue: Duration,
}

/// SHA-256 of what the database step provisions with besides the spec; kept in memory
/// only.
fn fingerprint(admin_url: &str, password: &str) -> [u8; 32] {
    Sha256::digest(format!("{admin_url}\0{password}").as_bytes()).into()
}

/// Step 3: schema, role, migrations and index, when due ([`Context::database_due`], or
/// a background index rebuild finished); a rebuild the index needs is started in the
/// background (one at a time per tenant) and reported while it runs.
async fn database_step(
    tenant: &FaceIdTenant,
    ctx: &Context,
    found: &Found,
    status: &mut FaceIdTenantStatus,
) -> Result<Step<DatabaseOut>> {
    let (key, now) = (tenant_key(tenant), (ctx.now)());
    let schema = tenant.spec.database.schema.as_str();
    let password = found.credentials.database_password.as_str();
    let url = match role_database_url(&found.admin_url, &role_name(schema), password) {
        Ok(url) => url,
        Err(e) => return Ok(Step::Blocked(database_blocked(e))),
    };
    if let Some((want, result)) = ctx.take_finished_rebuild(&key, now) {
        report_rebuild(ctx, tenant, want, result).await;
        // Read the result back: the next step below is due.
        ctx.forget_database(&key);
    }
    let print = fingerprint(&found.admin_url, password);
    if !ctx.database_due(tenant, &print, now) {
        let requeue = match ctx.rebuild_running(&key) {
            Some(_) => INDEX_REBUILD_POLL,
            None => RESYNC,
        };
        return Ok(Step::Continue(DatabaseOut { url, requeue }));
    }
    let req = ProvisionRequest::for_tenant(tenant, password);
    let provisioned = match ctx.database.provision(&found.admin_url, &req).await {
        Ok(p) => p,
        Err(e) => return Ok(Step::Blocked(database_blocked(e))),
    };
    let (reason, message, requeue) = index_outcome(ctx, &key, &found.admin_url, &provisioned, now);
    set_database_ready(tenant, status, now, reason, message);
    record_provisioned(tenant, status, &provisioned, now);
    ctx.remember_database(tenant, print, now);
    Ok(Step::Continue(DatabaseOut { url, requeue }))
}

/// `DatabaseReady`'s reason and message after a provisioning, and when to look again:
/// starts the index rebuild it asks for, unless one to the same parameters failed less
/// than [`RESYNC`] ago.
fn index_outcome(
    ctx: &Context,
    key: &str,
    admin_url: &str,
    p: &ProvisionedDatabase,
    now: Timestamp,
) -> (&'static str, String, Duration) {
    let Some(want) = p.index_wanted else {
        return (
            reasons::SCHEMA_PROVISIONED,
            format!(
                "schema {:?} migrated, role {:?}, HNSW m={} ef_construction={}",
                p.schema, p.role, p.index.m, p.index.ef_construction
            ),
            RESYNC,
        );
    };
    if let Some(running) = ctx.rebuild_running(key) {
        // One rebuild at a time: a newer `want` follows when this one is done.
        return (
            reasons::INDEX_REBUILDING,
            rebuilding_message(p.index, running),
            INDEX_REBUILD_POLL,
        );
    }
    if let Some(failure) = ctx.recent_rebuild_failure(key, want, now) {
        return (
            reasons::INDEX_REBUILD_FAILED,
            format!(
                "schema {:?} migrated, role {:?}; rebuilding the HNSW index with m={} ef_construction={} failed: {failure}; the index with m={} ef_construction={} serves, the rebuild is tried again at the next resync",
                p.schema, p.role, want.m, want.ef_construction, p.index.m, p.index.ef_construction
            ),
            RESYNC,
        );
    }
    ctx.start_rebuild(key, admin_url, &p.schema, want);
    (
        reasons::INDEX_REBUILDING,
        rebuilding_message(p.index, want),
        INDEX_REBUILD_POLL,
    )
}

/// The face-only login judgement and what the status says about the database.
fn record_provisioned(
    tenant: &FaceIdTenant,
    status: &mut FaceIdTenantStatus,
    p: &ProvisionedDatabase,
    now: Timestamp,
) {
    let face_only = crate::login::face_only_login(&tenant.spec, p.active_users);
    conditions::set(
        &mut status.conditions,
        types::FACE_ONLY_LOGIN,
        face_only.condition,
        face_only.reason,
        face_only.message,
        tenant.meta().generation,
        now,
    );
    status.login = Some(face_only.status);
    status.schema = Some(p.schema.clone());
    status.database_role = Some(p.role.clone());
    status.index = Some(IndexStatus {
        m: p.index.m,
        ef_construction: p.index.ef_construction,
    });
}

fn rebuilding_message(index: IndexParams, want: IndexParams) -> String {
    format!(
        "HNSW index being rebuilt concurrently with m={} ef_construction={} (minutes on a large gallery); the index with m={} ef_construction={} serves meanwhile",
        want.m, want.ef_construction, index.m, index.ef_construction
    )
}

fn set_database_ready(
    tenant: &FaceIdTenant,
    status: &mut FaceIdTenantStatus,
    now: Timestamp,
    reason: &str,
    message: String,
) {
    conditions::set(
        &mut status.conditions,
        types::DATABASE_READY,
        Status::True,
        reason,
        message,
        tenant.meta().generation,
        now,
    );
}

/// The Event of a finished background rebuild.
async fn report_rebuild(
    ctx: &Context,
    tenant: &FaceIdTenant,
    want: IndexParams,
    result: Result<IndexParams, String>,
) {
    match result {
        Ok(index) => {
            publish(
                ctx,
                tenant,
                false,
                "IndexRebuilt",
                "RebuildIndex",
                format!(
                    "HNSW index rebuilt concurrently with m={} ef_construction={}",
                    index.m, index.ef_construction
                ),
            )
            .await;
        }
        Err(message) => {
            publish(ctx, tenant, true, "IndexRebuildFailed", "RebuildIndex", format!(
                "rebuilding the HNSW index with m={} ef_construction={} failed: {message}; the previous index serves, the rebuild is tried again at the next resync",
                want.m, want.ef_construction
            ))
            .await;
        }
    }
}

/// Step 4: server-side apply of every child, in dependency order; the applied
/// Deployment.
async fn workload_step(
    tenant: &FaceIdTenant,
    ctx: &Context,
    desired: &Desired,
) -> Result<Step<Deployment>> {
    let ns = tenant.namespace().ok_or(Error::NoNamespace)?;
    let client = || ctx.client.clone();
    step!(apply_child(ctx, &Api::namespaced(client(), &ns), &desired.secret).await?);
    step!(apply_child(ctx, &Api::namespaced(client(), &ns), &desired.config_map).await?);
    let deployments: Api<Deployment> = Api::namespaced(client(), &ns);
    if tenant.spec.workload.autoscaling.is_some() {
        let name = resources::workload_name(tenant);
        step!(hand_over_replicas(ctx, &deployments, &name).await?);
    }
    let deployment = step!(apply_child(ctx, &deployments, &desired.deployment).await?);
    step!(apply_child(ctx, &Api::namespaced(client(), &ns), &desired.service).await?);
    let autoscalers = Api::<HorizontalPodAutoscaler>::namespaced(client(), &ns);
    step!(apply_or_remove(ctx, &autoscalers, tenant, desired.autoscaler.as_ref()).await?);
    let budget = &desired.disruption_budget;
    step!(apply_child(ctx, &Api::namespaced(client(), &ns), budget).await?);
    let policies = Api::<NetworkPolicy>::namespaced(client(), &ns);
    step!(apply_or_remove(ctx, &policies, tenant, desired.network_policy.as_ref()).await?);
    Ok(Step::Continue(deployment))
}

/// Applies the Secret of every confidential OpenID client (in its namespace), and deletes
/// the tenant's own ones that the last status listed for clients no longer declared as
/// confidential, or moved (by name: the operator may get, patch and delete Secrets,
/// never list them).
async fn oidc_secrets_step(
    tenant: &FaceIdTenant,
    ctx: &Context,
    desired: &[Secret],
    status: &mut FaceIdTenantStatus,
) -> Result<Step<()>> {
    let in_namespace = |ns: &str| Api::<Secret>::namespaced(ctx.client.clone(), ns);
    let before = tenant
        .status
        .as_ref()
        .map(|s| s.oidc_client_secrets.clone())
        .unwrap_or_default();
    let mut entries = Vec::with_capacity(desired.len());
    for secret in desired {
        let at = oidc::SecretRef {
            namespace: secret.namespace().unwrap_or_default(),
            name: secret.name_any(),
        };
        let applied = apply_child(ctx, &in_namespace(&at.namespace), secret).await?;
        if let Step::Blocked(blocked) = applied {
            // What was written so far stays recorded (with what was there before), so
            // that a Secret in another namespace is never left behind unrecorded.
            status.oidc_client_secrets = before.iter().chain(&entries).cloned().collect();
            status.oidc_client_secrets.sort();
            status.oidc_client_secrets.dedup();
            return Ok(Step::Blocked(blocked));
        }
        entries.push(at.status_entry(tenant));
    }
    for entry in before.iter().filter(|e| !entries.contains(e)) {
        let stale = oidc::SecretRef::from_status_entry(tenant, entry);
        if let Some(blocked) = delete_client_secret(ctx, tenant, &stale).await? {
            return Ok(Step::Blocked(blocked));
        }
        publish(ctx, tenant, false, "OidcClientSecretDeleted", "DeleteClientSecret", format!(
            "deleted Secret {stale}: its OpenID client is no longer declared as confidential with that namespace in spec.oidc.clients"
        ))
        .await;
    }
    status.oidc_client_secrets = entries;
    Ok(Step::Continue(()))
}

/// Deletes client Secret `at` if it is the tenant's (gone already, or not its own: left
/// alone); a refused deletion as the outcome that blocks.
async fn delete_client_secret(
    ctx: &Context,
    tenant: &FaceIdTenant,
    at: &oidc::SecretRef,
) -> Result<Option<Blocked>> {
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &at.namespace);
    let Some(secret) = secrets.get_opt(&at.name).await? else {
        return Ok(None);
    };
    if !oidc::is_of(&secret, tenant) {
        return Ok(None);
    }
    ctx.may_write()?;
    match secrets.delete(&at.name, &Default::default()).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Ok(Some(refused_or_error::<Secret>(&at.to_string(), e)?)),
    }
}

/// Whether the API server's answer `code` refuses the object itself (invalid, bad
/// request, forbidden, unknown kind...): retrying the same object cannot help. Timeouts
/// (408), conflicts (409) and throttling (429) are transient, as is every 5xx.
fn is_refusal(code: u16) -> bool {
    (400..500).contains(&code) && !matches!(code, 408 | 409 | 429)
}

/// A refused write as a [`Blocked`] outcome naming the object and carrying the API
/// server's message (which names the field); any other error as the error itself.
fn refused_or_error<K: Resource<DynamicType = ()>>(name: &str, e: kube::Error) -> Result<Blocked> {
    match e {
        kube::Error::Api(s) if is_refusal(s.code) => Ok(Blocked {
            condition: types::WORKLOAD_READY,
            reason: reasons::APPLY_REFUSED,
            message: format!(
                "the API server refused {} {name:?} ({} {}): {}; fix the spec field it names (nothing else was applied after it), re-checked every {} minutes",
                resources::kind_of::<K>(),
                s.code,
                s.reason,
                s.message,
                REFUSED_RETRY.as_secs() / 60
            ),
            warning: true,
            requeue: Requeue::After(REFUSED_RETRY),
            category: Some("apply_refused"),
        }),
        e => Err(Error::Kube(e)),
    }
}

/// Server-side apply of one child under [`FIELD_MANAGER`].
async fn apply_child<K>(ctx: &Context, api: &Api<K>, obj: &K) -> Result<Step<K>>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    ctx.may_write()?;
    match api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
    {
        Ok(applied) => Ok(Step::Continue(applied)),
        Err(e) => Ok(Step::Blocked(refused_or_error::<K>(&name, e)?)),
    }
}

/// Applies an optional child (`Some`), or deletes the tenant's own one of that kind when
/// the spec no longer asks for it (`None`); an object of that name it does not control is
/// left alone.
async fn apply_or_remove<K>(
    ctx: &Context,
    api: &Api<K>,
    tenant: &FaceIdTenant,
    desired: Option<&K>,
) -> Result<Step<()>>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    if let Some(obj) = desired {
        step!(apply_child(ctx, api, obj).await?);
        return Ok(Step::Continue(()));
    }
    let name = resources::workload_name(tenant);
    if let Some(old) = api.get_opt(&name).await?
        && is_controlled_by(old.owner_references(), tenant)
    {
        ctx.may_write()?;
        if let Err(e) = api.delete(&name, &Default::default()).await {
            return Ok(Step::Blocked(refused_or_error::<K>(&name, e)?));
        }
    }
    Ok(Step::Continue(()))
}

/// Applies the tenant's ServiceMonitor and PrometheusRule (`desired`), or deletes its own
/// when monitoring is off; reported in the informational `Monitoring` condition, which
/// never blocks `Ready`: a cluster without the Prometheus Operator (the API is not
/// served) or a refused object is said there and in a Warning Event on the change.
async fn monitoring_step(
    tenant: &FaceIdTenant,
    ctx: &Context,
    desired: Option<&crate::monitoring::Monitoring>,
    status: &mut FaceIdTenantStatus,
) -> Result<()> {
    use crate::monitoring::{api_resource, controlled_by, name};
    let ns = tenant.namespace().ok_or(Error::NoNamespace)?;
    let api = |kind: &str| {
        Api::<kube::api::DynamicObject>::namespaced_with(
            ctx.client.clone(),
            &ns,
            &api_resource(kind),
        )
    };
    let Some(objects) = desired else {
        // Only a tenant whose status says monitoring was on can have objects to delete:
        // the others cost no API call here.
        if conditions::get(&status.conditions, types::MONITORING).is_none() {
            return Ok(());
        }
        for kind in ["ServiceMonitor", "PrometheusRule"] {
            let api = api(kind);
            // A cluster without the API has nothing of ours to delete.
            if let Ok(Some(old)) = api.get_opt(&name(tenant)).await
                && controlled_by(&old, tenant)
            {
                ctx.may_write()?;
                api.delete(&name(tenant), &Default::default()).await?;
            }
        }
        conditions::remove(&mut status.conditions, types::MONITORING);
        return Ok(());
    };
    let mut outcome = Ok(());
    for (kind, obj) in [
        ("ServiceMonitor", &objects.service_monitor),
        ("PrometheusRule", &objects.prometheus_rule),
    ] {
        ctx.may_write()?;
        let applied = api(kind)
            .patch(
                &name(tenant),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await;
        match applied {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                outcome = Err((
                    reasons::PROMETHEUS_OPERATOR_MISSING,
                    "the cluster does not serve monitoring.coreos.com/v1 ServiceMonitor and PrometheusRule: install the Prometheus Operator's CRDs, or set spec.monitoring.enabled false".to_owned(),
                ));
                break;
            }
            Err(kube::Error::Api(e)) if is_refusal(e.code) => {
                outcome = Err((
                    reasons::APPLY_REFUSED,
                    format!(
                        "the API server refused {kind} {:?} ({}): {}",
                        name(tenant),
                        e.code,
                        e.message
                    ),
                ));
                break;
            }
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    let (st, reason, message) = match outcome {
        Ok(()) => (
            Status::True,
            reasons::MONITORING_CONFIGURED,
            format!(
                "ServiceMonitor and PrometheusRule {:?} applied",
                name(tenant)
            ),
        ),
        Err((reason, message)) => (Status::False, reason, message),
    };
    let before = conditions::get(&status.conditions, types::MONITORING).map(|c| c.reason.clone());
    if st == Status::False && before.as_deref() != Some(reason) {
        publish(
            ctx,
            tenant,
            true,
            reason,
            "ApplyMonitoring",
            message.clone(),
        )
        .await;
    }
    let now = (ctx.now)();
    conditions::set(
        &mut status.conditions,
        types::MONITORING,
        st,
        reason,
        message,
        tenant.meta().generation,
        now,
    );
    Ok(())
}

/// Whether `manager`'s server-side apply owns the Deployment's `spec.replicas`.
fn applies_replicas(deployment: &Deployment, manager: &str) -> bool {
    deployment.managed_fields().iter().any(|m| {
        m.manager.as_deref() == Some(manager)
            && m.operation.as_deref() == Some("Apply")
            && m.fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|spec| spec.get("f:replicas"))
                .is_some()
    })
}

/// Before the first apply without `spec.replicas` (autoscaling turned on): when
/// [`FIELD_MANAGER`] owns that field, apply the Deployment's current count under
/// [`HANDOVER_FIELD_MANAGER`] first. The field then has a second owner and survives the
/// apply that drops it, instead of being removed and defaulted to 1 replica before the
/// autoscaler acts; the autoscaler's own writes take it over afterwards.
async fn hand_over_replicas(
    ctx: &Context,
    deployments: &Api<Deployment>,
    name: &str,
) -> Result<Step<()>> {
    let Some(live) = deployments.get_opt(name).await? else {
        return Ok(Step::Continue(()));
    };
    if !applies_replicas(&live, FIELD_MANAGER) {
        return Ok(Step::Continue(()));
    }
    let replicas = live.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    ctx.may_write()?;
    let keep = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    if let Err(e) = deployments
        .patch(
            name,
            &PatchParams::apply(HANDOVER_FIELD_MANAGER).force(),
            &Patch::Apply(&keep),
        )
        .await
    {
        return Ok(Step::Blocked(refused_or_error::<Deployment>(name, e)?));
    }
    tracing::info!(
        deployment = name,
        replicas,
        "replicas handed over to the autoscaler"
    );
    Ok(Step::Continue(()))
}

/// Marks the components after `from` as waiting, unless they already have a state.
fn mark_waiting(
    status: &mut FaceIdTenantStatus,
    from: &[&str],
    generation: Option<i64>,
    now: Timestamp,
) {
    for t in from {
        if conditions::get(&status.conditions, t).is_none() {
            conditions::set(
                &mut status.conditions,
                t,
                Status::Unknown,
                reasons::WAITING,
                "waiting for an earlier step",
                generation,
                now,
            );
        }
    }
}
/// Sets `WorkloadReady` and the replica counts from the applied Deployment.
pub fn workload_condition(
    status: &mut FaceIdTenantStatus,
    tenant: &FaceIdTenant,
    deployment: &Deployment,
    now: Timestamp,
) {
    let generation = tenant.meta().generation;
    let d_status = deployment.status.clone().unwrap_or_default();
    let ready = d_status.ready_replicas.unwrap_or(0);
    let updated = d_status.updated_replicas.unwrap_or(0);
    status.replicas = d_status.replicas.unwrap_or(0);
    status.ready_replicas = ready;
    let wanted = match &tenant.spec.workload.autoscaling {
        Some(a) => deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(a.min_replicas)
            .max(a.min_replicas),
        None => tenant.spec.workload.replicas,
    };
    let observed =
        d_status.observed_generation.unwrap_or(0) >= deployment.meta().generation.unwrap_or(0);
    let name = resources::workload_name(tenant);
    let (st, reason, message) = if wanted == 0 {
        (
            Status::False,
            reasons::SCALED_TO_ZERO,
            "spec.workload.replicas is 0: scale up to serve".to_owned(),
        )
    } else if let Some(stuck) = deadline_exceeded(deployment) {
        (
            Status::False,
            reasons::PROGRESS_DEADLINE_EXCEEDED,
            format!(
                "rollout stuck: {stuck} ({ready}/{wanted} replicas ready, {updated} updated); see `kubectl describe deployment {name}` and the new pods' events and logs"
            ),
        )
    } else if observed && ready >= wanted && updated >= wanted {
        (
            Status::True,
            reasons::DEPLOYMENT_AVAILABLE,
            format!("{ready}/{wanted} replicas ready"),
        )
    } else {
        (
            Status::False,
            reasons::DEPLOYMENT_PROGRESSING,
            format!(
                "{ready}/{wanted} replicas ready ({updated} updated); if this persists see `kubectl describe deployment {name}` and the pods' logs"
            ),
        )
    };
    conditions::set(
        &mut status.conditions,
        types::WORKLOAD_READY,
        st,
        reason,
        message,
        generation,
        now,
    );
}

/// The Deployment controller's message when the current rollout exceeded its progress
/// deadline (`Progressing=False`, reason `ProgressDeadlineExceeded`).
fn deadline_exceeded(deployment: &Deployment) -> Option<String> {
    let status = deployment.status.as_ref()?;
    let observed =
        status.observed_generation.unwrap_or(0) >= deployment.meta().generation.unwrap_or(0);
    status
        .conditions
        .as_deref()?
        .iter()
        .find(|c| {
            observed
                && c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
        .map(|c| {
            c.message
                .clone()
                .unwrap_or_else(|| "progress deadline exceeded".to_owned())
        })
}

/// Why deletion cleanup did not finish, and what to do by hand if it never does.
struct CleanupFailure {
    /// Retrying cannot help (a schema claimed by another tenant).
    permanent: bool,
    /// The failure.
    message: String,
    /// What a person does when the operator gives up.
    manual: String,
}

async fn cleanup(api: &Api<FaceIdTenant>, tenant: &FaceIdTenant, ctx: &Context) -> Result<Action> {
    let key = tenant_key(tenant);
    ctx.abort_rebuild(&key);
    let skip = annotation_true(tenant, SKIP_CLEANUP_ANNOTATION);
    if let Err(failure) = delete_client_secrets_elsewhere(tenant, ctx).await? {
        return cleanup_failed(api, tenant, ctx, failure, skip).await;
    }
    let outcome = match tenant.spec.database.deletion_policy {
        DeletionPolicy::Retain => retain(tenant, ctx).await?,
        DeletionPolicy::Delete if skip => {
            let schema = &tenant.spec.database.schema;
            publish(
                ctx,
                tenant,
                true,
                "CleanupSkipped",
                "Cleanup",
                format!(
                    "{SKIP_CLEANUP_ANNOTATION} is set: schema {schema:?} not dropped; {}",
                    manual_drop(schema)
                ),
            )
            .await;
            Ok(())
        }
        DeletionPolicy::Delete => drop_database(tenant, ctx).await?,
    };
    match outcome {
        Ok(()) => {
            ctx.forget(&key);
            // The finalizer's removal follows.
            ctx.may_write()?;
            Ok(Action::await_change())
        }
        Err(failure) => cleanup_failed(api, tenant, ctx, failure, skip).await,
    }
}

fn manual_drop(schema: &str) -> String {
    format!(
        "drop it by hand if it must go: DROP SCHEMA \"{schema}\" CASCADE; DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\";",
        role = role_name(schema)
    )
}

/// Deletes the tenant's OpenID client Secrets outside its namespace (whatever the
/// deletion policy: those in its namespace go with it by their owner reference), by the
/// names its status recorded.
async fn delete_client_secrets_elsewhere(
    tenant: &FaceIdTenant,
    ctx: &Context,
) -> Result<Result<(), CleanupFailure>> {
    let recorded = tenant
        .status
        .as_ref()
        .map(|s| s.oidc_client_secrets.clone())
        .unwrap_or_default();
    for entry in recorded {
        let at = oidc::SecretRef::from_status_entry(tenant, &entry);
        if !at.is_elsewhere(tenant) {
            continue;
        }
        let failed = match delete_client_secret(ctx, tenant, &at).await {
            Ok(None) => continue,
            Ok(Some(blocked)) => blocked.message,
            Err(Error::NotLeader) => return Err(Error::NotLeader),
            Err(e) => e.to_string(),
        };
        return Ok(Err(CleanupFailure {
            permanent: false,
            message: format!("could not delete OpenID client Secret {at}: {failed}"),
            manual: format!(
                "delete it by hand: kubectl delete secret -n {} {}",
                at.namespace, at.name
            ),
        }));
    }
    Ok(Ok(()))
}

/// `deletionPolicy: Retain`: the database is not touched, and the credentials Secret is
/// released from the tenant so the garbage collector keeps it.
async fn retain(tenant: &FaceIdTenant, ctx: &Context) -> Result<Result<(), CleanupFailure>> {
    let schema = &tenant.spec.database.schema;
    let (name, key) = (resources::secret_name(tenant), tenant_key(tenant));
    let kept = match release_credentials(tenant, ctx).await {
        Ok(kept) => kept,
        Err(Error::NotLeader) => return Err(Error::NotLeader),
        Err(e) => {
            return Ok(Err(CleanupFailure {
                permanent: false,
                message: format!("could not keep Secret {name:?}: {e}"),
                manual: format!(
                    "Secret {name:?} is garbage-collected with the tenant: back it up first (kubectl get secret {name} -o yaml), since without its TEMPLATE_KEY every stored face is unusable"
                ),
            }));
        }
    };
    let secret = if kept {
        format!(
            " and Secret {name:?} (annotated {RETAINED_FOR_ANNOTATION}={key}, with every credential)"
        )
    } else {
        String::new()
    };
    publish(ctx, tenant, false, "SchemaRetained", "Cleanup", format!(
        "deletionPolicy Retain: schema {schema:?}, role {:?}{secret} kept; a tenant created again as {key} adopts them and its users still log in",
        role_name(schema)
    ))
    .await;
    Ok(Ok(()))
}

/// Removes the tenant's owner reference from its credentials Secret and marks it
/// [`RETAINED_FOR_ANNOTATION`] (a merge patch conditional on the Secret's
/// `resourceVersion`); whether there was one of the tenant's to keep.
async fn release_credentials(tenant: &FaceIdTenant, ctx: &Context) -> Result<bool> {
    let ns = tenant.namespace().ok_or(Error::NoNamespace)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = resources::secret_name(tenant);
    let Some(secret) = secrets.get_opt(&name).await? else {
        return Ok(false);
    };
    if !is_controlled_by(secret.owner_references(), tenant) {
        return Ok(false);
    }
    let uid = tenant.uid();
    let others: Vec<_> = secret
        .owner_references()
        .iter()
        .filter(|r| Some(&r.uid) != uid.as_ref())
        .cloned()
        .collect();
    ctx.may_write()?;
    secrets
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {
                "resourceVersion": secret.resource_version(),
                "ownerReferences": others,
                "annotations": {RETAINED_FOR_ANNOTATION: tenant_key(tenant)},
            }})),
        )
        .await?;
    Ok(true)
}

/// `deletionPolicy: Delete`: drops the schema and the role ([`database::deprovision`]).
async fn drop_database(tenant: &FaceIdTenant, ctx: &Context) -> Result<Result<(), CleanupFailure>> {
    let key = tenant_key(tenant);
    let schema = tenant.spec.database.schema.as_str();
    let ns = tenant.namespace().ok_or(Error::NoNamespace)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let db_ref = &tenant.spec.database.connection_secret_ref;
    let url = match secrets.get_opt(&db_ref.name).await {
        Ok(Some(s)) => secret_value(&s, &db_ref.key),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the database Secret during cleanup");
            None
        }
    }
    .or_else(|| ctx.cached_admin_url(&key));
    // A tenant that never finished provisioning (no `status.schema`) left nothing known
    // in the database: when the database cannot be reached either, waiting for it would
    // only hold up the deletion (of its namespace too), so the first failure is final.
    let never_provisioned = tenant.status.as_ref().is_none_or(|s| s.schema.is_none());
    let failure = |permanent: bool, message: String| CleanupFailure {
        permanent: permanent || never_provisioned,
        message: if never_provisioned {
            format!(
                "{message} (the tenant never finished provisioning: nothing of it is known to be in the database)"
            )
        } else {
            message
        },
        manual: manual_drop(schema),
    };
    let Some(url) = url else {
        return Ok(Err(failure(
            false,
            format!(
                "database connection Secret {:?} is gone and no connection is cached",
                db_ref.name
            ),
        )));
    };
    let d = match ctx.database.deprovision(url.trim(), &key, schema).await {
        Ok(d) => d,
        Err(e) => {
            return Ok(Err(failure(
                e.is_permanent(),
                format!("dropping schema {schema:?} failed: {e}"),
            )));
        }
    };
    let gone = |dropped: bool| {
        if dropped {
            "dropped"
        } else {
            "was already gone"
        }
    };
    publish(
        ctx,
        tenant,
        false,
        "SchemaDropped",
        "Cleanup",
        format!(
            "deletionPolicy Delete: schema {schema:?} {} and role {} ({} sessions terminated)",
            gone(d.schema_dropped),
            gone(d.role_dropped),
            d.sessions_terminated
        ),
    )
    .await;
    Ok(Ok(()))
}

/// A cleanup that did not finish: retried with backoff (the status says why) until
/// `cleanup_timeout` after the deletion request, then abandoned with a Warning Event
/// saying what to do by hand, at once when retrying cannot help or the skip annotation
/// is set.
async fn cleanup_failed(
    api: &Api<FaceIdTenant>,
    tenant: &FaceIdTenant,
    ctx: &Context,
    failure: CleanupFailure,
    skip: bool,
) -> Result<Action> {
    let now = (ctx.now)();
    let deleted_at = tenant
        .meta()
        .deletion_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let timeout = SignedDuration::try_from(ctx.settings.cleanup_timeout)
        .unwrap_or(SignedDuration::from_secs(300));
    let deadline = deleted_at.checked_add(timeout).unwrap_or(deleted_at);
    let CleanupFailure {
        permanent,
        message,
        manual,
    } = failure;
    if permanent || skip || now >= deadline {
        publish(
            ctx,
            tenant,
            true,
            "CleanupAbandoned",
            "Cleanup",
            format!("gave up: {message}; {manual}"),
        )
        .await;
        ctx.forget(&tenant_key(tenant));
        ctx.may_write()?;
        return Ok(Action::await_change());
    }
    let mut status = tenant.status.clone().unwrap_or_default();
    conditions::set(
        &mut status.conditions,
        types::READY,
        Status::False,
        reasons::CLEANUP_FAILED,
        format!(
            "{message}; retrying until {deadline}, then the finalizer is removed anyway; set the annotation {SKIP_CLEANUP_ANNOTATION}=true to stop now"
        ),
        tenant.meta().generation,
        now,
    );
    if let Err(e) = write_status(api, tenant, status, ctx).await {
        tracing::warn!(error = %e, "could not record cleanup failure");
    }
    Err(Error::CleanupPending {
        tenant: tenant_key(tenant),
        deadline,
        message,
    })
}

/// Runs the controller until `shutdown` resolves.
///
/// Children are watched (label-filtered) so that a deleted or edited Deployment,
/// ConfigMap, Service, autoscaler or disruption budget is repaired at once. Secrets are
/// deliberately not watched: that would need `list`/`watch` on every Secret of the
/// cluster; the operator's own Secret is re-checked on the periodic resync instead.
/// Namespaces are watched (read-only) for the tenants whose OpenID client Secrets wait
/// for a namespace to accept them.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=faceid-operator");
    let controller = Controller::new(
        Api::<FaceIdTenant>::all(client.clone()),
        watcher::Config::default(),
    );
    let tenants = controller.store();
    controller
        .watches(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
            move |ns| {
                tenants_placing_secrets_in(
                    tenants.state().iter().map(AsRef::as_ref),
                    &ns.name_any(),
                )
            },
        )
        .owns(Api::<Deployment>::all(client.clone()), managed.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), managed.clone())
        .owns(Api::<Service>::all(client.clone()), managed.clone())
        .owns(
            Api::<PodDisruptionBudget>::all(client.clone()),
            managed.clone(),
        )
        .owns(Api::<NetworkPolicy>::all(client.clone()), managed.clone())
        .owns(Api::<HorizontalPodAutoscaler>::all(client), managed)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, action)) => tracing::debug!(tenant = %obj, ?action, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
}

/// The tenants with a confidential OpenID client whose Secret goes into namespace `ns`:
/// a change of that namespace (its acceptance annotation) is acted on at once.
fn tenants_placing_secrets_in<'a>(
    tenants: impl IntoIterator<Item = &'a FaceIdTenant>,
    ns: &str,
) -> Vec<ObjectRef<FaceIdTenant>> {
    tenants
        .into_iter()
        .filter(|t| {
            t.namespace().as_deref() != Some(ns)
                && t.spec
                    .oidc
                    .clients
                    .iter()
                    .any(|c| c.is_confidential() && c.secret_namespace.as_deref() == Some(ns))
        })
        .map(ObjectRef::from_obj)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_change_concerns_the_tenants_placing_client_secrets_there() {
        let tenant = |name: &str, ns: &str, clients: serde_json::Value| -> FaceIdTenant {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "faceid.dev/v1alpha1", "kind": "FaceIdTenant",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"database": {"connectionSecretRef": {"name": "pg"}, "schema": name},
                    "oidc": {"issuerUrl": "https://login.example", "clients": clients}}
            }))
            .unwrap()
        };
        let client = |ty: &str, ns: Option<&str>| {
            serde_json::json!({"clientId": "web", "type": ty, "secretNamespace": ns,
                "redirectUris": ["https://shop.example/cb"]})
        };
        let tenants = [
            tenant(
                "shop",
                "idp",
                serde_json::json!([client("confidential", Some("apps"))]),
            ),
            tenant(
                "own",
                "idp",
                serde_json::json!([client("confidential", None)]),
            ),
            tenant("spa", "idp", serde_json::json!([client("public", None)])),
            tenant(
                "other",
                "idp",
                serde_json::json!([client("confidential", Some("billing"))]),
            ),
        ];
        let names = |ns: &str| -> Vec<String> {
            tenants_placing_secrets_in(&tenants, ns)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names("apps"), ["shop"]);
        assert_eq!(names("billing"), ["other"]);
        assert!(
            names("idp").is_empty(),
            "its own namespace is not watched for it"
        );
        assert!(names("elsewhere").is_empty());
    }

    #[test]
    fn backoff_is_jittered_between_half_the_ceiling_and_the_ceiling() {
        let ceilings: Vec<u64> = (1..=12)
            .map(|n| Context::backoff_ceiling(n).as_secs())
            .collect();
        assert_eq!(
            ceilings,
            [5, 10, 20, 40, 80, 160, 300, 300, 300, 300, 300, 300]
        );
        for n in 1..=12 {
            let ceiling = Context::backoff_ceiling(n);
            assert_eq!(Context::backoff(n, 0.0), ceiling / 2);
            assert_eq!(Context::backoff(n, 1.0), ceiling);
            // Out-of-range jitter is clamped.
            assert_eq!(Context::backoff(n, 7.0), ceiling);
            assert_eq!(Context::backoff(n, -1.0), ceiling / 2);
            for _ in 0..100 {
                let d = Context::backoff(n, rand::random::<f64>());
                assert!(d >= ceiling / 2 && d <= ceiling, "{n}: {d:?}");
            }
        }
        // Random draws do spread: 100 retries after one failure are not all equal.
        let draws: std::collections::BTreeSet<Duration> = (0..100)
            .map(|_| Context::backoff(1, rand::random::<f64>()))
            .collect();
        assert!(draws.len() > 10, "{draws:?}");
    }

    #[test]
    fn refusals_are_the_client_errors_retrying_cannot_fix() {
        for code in [400, 403, 404, 413, 415, 422] {
            assert!(is_refusal(code), "{code}");
        }
        for code in [408, 409, 429, 500, 502, 503, 504, 200] {
            assert!(!is_refusal(code), "{code}");
        }
    }

    fn deployment_managed_by(
        manager: &str,
        operation: &str,
        fields: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "acme", "managedFields": [{
                "manager": manager, "operation": operation, "fieldsType": "FieldsV1",
                "fieldsV1": fields,
            }]},
        }))
        .unwrap()
    }

    #[test]
    fn replicas_ownership_is_read_from_the_managed_fields() {
        let replicas = serde_json::json!({"f:spec": {"f:replicas": {}}});
        let other = serde_json::json!({"f:spec": {"f:template": {}}});
        assert!(applies_replicas(
            &deployment_managed_by(FIELD_MANAGER, "Apply", replicas.clone()),
            FIELD_MANAGER
        ));
        assert!(!applies_replicas(
            &deployment_managed_by(FIELD_MANAGER, "Apply", other),
            FIELD_MANAGER
        ));
        assert!(!applies_replicas(
            &deployment_managed_by(FIELD_MANAGER, "Update", replicas.clone()),
            FIELD_MANAGER
        ));
        assert!(!applies_replicas(
            &deployment_managed_by("kube-controller-manager", "Apply", replicas),
            FIELD_MANAGER
        ));
    }

    fn tenant() -> FaceIdTenant {
        let mut t: FaceIdTenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "faceid.dev/v1alpha1", "kind": "FaceIdTenant",
            "metadata": {"name": "acme", "namespace": "team-a", "uid": "uid-1"},
            "spec": {"database": {"connectionSecretRef": {"name": "pg"}, "schema": "acme"}},
        }))
        .unwrap();
        t.metadata.generation = Some(1);
        t
    }

    fn secret(annotation: Option<&str>, owner: Option<(&str, bool)>) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "acme-credentials",
                "annotations": annotation.map(|a| serde_json::json!({RETAINED_FOR_ANNOTATION: a})),
                "ownerReferences": owner.map(|(uid, controller)| serde_json::json!([{
                    "apiVersion": "faceid.dev/v1alpha1", "kind": "FaceIdTenant", "name": "acme",
                    "uid": uid, "controller": controller}])),
            },
        }))
        .unwrap()
    }

    #[test]
    fn only_a_secret_kept_for_this_tenant_is_adopted() {
        let t = tenant();
        assert_eq!(
            ownership(&secret(None, Some(("uid-1", true))), &t),
            Ownership::Owned
        );
        assert_eq!(
            ownership(&secret(Some("team-a/acme"), None), &t),
            Ownership::RetainedForThis
        );
        // A non-controller reference (someone's backup tool) does not prevent it.
        assert_eq!(
            ownership(&secret(Some("team-a/acme"), Some(("uid-9", false))), &t),
            Ownership::RetainedForThis
        );
        for foreign in [
            secret(None, None),
            secret(Some("team-b/acme"), None),
            secret(Some("team-a/acme"), Some(("uid-9", true))),
            secret(None, Some(("uid-9", true))),
        ] {
            assert_eq!(ownership(&foreign, &t), Ownership::Foreign, "{foreign:?}");
        }
    }

    #[test]
    #[allow(clippy::panic)] // test code: a panic is a failed assertion
    fn an_invalid_tenant_blocks_on_ready_and_waits_for_a_change() {
        let mut t = tenant();
        assert!(matches!(validate_step(&t), Step::Continue(())));
        t.spec.database.hnsw.m = 1;
        let Step::Blocked(b) = validate_step(&t) else {
            panic!("not blocked")
        };
        assert_eq!(
            (b.condition, b.reason),
            (types::READY, reasons::INVALID_SPEC)
        );
        assert!(b.message.contains("spec.database.hnsw.m"), "{}", b.message);
        assert!(matches!(b.requeue, Requeue::AwaitChange));
        assert!(b.warning);
    }
}
