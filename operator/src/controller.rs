//! The reconciler of `FaceIdTenant`, as steps:
//!
//! 1. **dereference**: read the Secrets the spec refers to and the operator's own
//!    credentials Secret (refusing one it does not own);
//! 2. **validate** (pure, [`crate::crd::validate`]): an invalid spec becomes a condition
//!    and the tenant waits for a change;
//! 3. **database**: schema, role, migrations and index ([`TenantDatabase`]);
//! 4. **build** the desired objects (pure, [`crate::resources::build`]);
//! 5. **apply** them with server-side apply under one field manager;
//! 6. **status**: conditions, schema, index, endpoint and replicas, written only when
//!    they changed.
//!
//! Deletion goes through a finalizer that honours `deletionPolicy` and always finishes:
//! after `cleanup_timeout` of failures (or with the skip annotation) it gives up with a
//! Warning Event that says what to drop by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;

use crate::conditions::{self, Status, reasons, types};
use crate::config::{TenantSecrets, tenant_key};
use crate::crd::{
    DeletionPolicy, FaceIdTenant, FaceIdTenantStatus, IndexStatus, PAUSED_ANNOTATION,
    SKIP_CLEANUP_ANNOTATION, validate,
};
use crate::database::{
    self, Deprovisioned, ProvisionRequest, ProvisionedDatabase, generate_secret, role_database_url,
    role_name,
};
use crate::metrics::{Metrics, Readiness};
use crate::resources::{self, Inputs, is_controlled_by, keys, secret_value};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "faceid-operator";
/// The finalizer on every tenant.
pub const FINALIZER: &str = "faceid.dev/cleanup";

/// How long a tenant whose referenced Secret is missing waits before the next look.
pub const MISSING_SECRET_RETRY: Duration = Duration::from_secs(60);
/// How long a refused tenant (claimed schema, foreign Secret) waits before a re-check.
pub const REFUSED_RETRY: Duration = Duration::from_secs(300);
/// Periodic re-check of a healthy tenant (database drift, index parameters).
pub const RESYNC: Duration = Duration::from_secs(300);

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
    #[error("cleanup of schema {schema:?} failed (retrying until {deadline}): {message}")]
    CleanupPending {
        /// Tenant schema.
        schema: String,
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
    /// [`database::provision`] on the database of `admin_url`.
    fn provision<'a>(
        &'a self,
        admin_url: &'a str,
        req: &'a ProvisionRequest,
    ) -> BoxFuture<'a, database::Result<ProvisionedDatabase>>;
    /// [`database::deprovision`] on the database of `admin_url`.
    fn deprovision<'a>(
        &'a self,
        admin_url: &'a str,
        tenant: &'a str,
        schema: &'a str,
    ) -> BoxFuture<'a, database::Result<Deprovisioned>>;
}

/// [`TenantDatabase`] on real PostgreSQL servers, one small pool per admin URL.
#[derive(Default)]
pub struct Postgres {
    pools: Mutex<HashMap<String, PgPool>>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

impl Postgres {
    async fn pool(&self, admin_url: &str) -> database::Result<PgPool> {
        if let Ok(pools) = self.pools.lock()
            && let Some(pool) = pools.get(admin_url)
        {
            return Ok(pool.clone());
        }
        let pool = database::connect(admin_url).await?;
        if let Ok(mut pools) = self.pools.lock() {
            pools.insert(admin_url.to_owned(), pool.clone());
        }
        Ok(pool)
    }
}

impl TenantDatabase for Postgres {
    fn provision<'a>(
        &'a self,
        admin_url: &'a str,
        req: &'a ProvisionRequest,
    ) -> BoxFuture<'a, database::Result<ProvisionedDatabase>> {
        Box::pin(async move { database::provision(&self.pool(admin_url).await?, req).await })
    }
    fn deprovision<'a>(
        &'a self,
        admin_url: &'a str,
        tenant: &'a str,
        schema: &'a str,
    ) -> BoxFuture<'a, database::Result<Deprovisioned>> {
        Box::pin(async move {
            database::deprovision(&self.pool(admin_url).await?, tenant, schema).await
        })
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
    failures: Mutex<HashMap<String, u32>>,
    admin_urls: Mutex<HashMap<String, String>>,
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
            failures: Mutex::new(HashMap::new()),
            admin_urls: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.now = Arc::new(now);
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

    fn forget(&self, key: &str) {
        if let Ok(mut m) = self.admin_urls.lock() {
            m.remove(key);
        }
        self.metrics.set_tenant(key, None);
    }

    /// Delay before retrying a tenant after its `n`-th consecutive failure: 5 s doubling
    /// up to 5 minutes.
    pub fn backoff(n: u32) -> Duration {
        let secs = 5u64.saturating_mul(1u64 << n.saturating_sub(1).min(10));
        Duration::from_secs(secs.min(300))
    }
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
/// exponential backoff.
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
    let delay = Context::backoff(n);
    tracing::warn!(
        tenant = %tenant_key(&tenant),
        category = error.category(),
        error = %error,
        retry_in_s = delay.as_secs(),
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
/// `Ready` changes status or reason.
async fn write_status(
    api: &Api<FaceIdTenant>,
    tenant: &FaceIdTenant,
    status: FaceIdTenantStatus,
    ctx: &Context,
) -> Result<()> {
    let old = tenant.status.clone().unwrap_or_default();
    if old == status {
        return Ok(());
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
    }
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
    }
}

fn database_reason(e: &database::Error) -> &'static str {
    use database::Error as E;
    match e {
        E::SchemaClaimed { .. } | E::RoleClaimed { .. } => reasons::SCHEMA_CLAIMED,
        E::SchemaNotManaged { .. } | E::RoleNotManaged { .. } => reasons::SCHEMA_NOT_MANAGED,
        E::InvalidUrl(_) => reasons::INVALID_DATABASE_URL,
        E::Migrations(faceid_migrations::Error::Database(_)) | E::Database(_) => {
            reasons::DATABASE_UNAVAILABLE
        }
        E::Migrations(_) => reasons::MIGRATION_FAILED,
        E::InvalidSchema(_) | E::InvalidPassword => reasons::INVALID_SPEC,
    }
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

async fn server_side_apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// Applies an optional child (`Some`), or deletes the tenant's own one of that kind when
/// the spec no longer asks for it (`None`); an object of that name it does not control is
/// left alone.
async fn apply_or_remove<K>(api: &Api<K>, tenant: &FaceIdTenant, desired: Option<&K>) -> Result<()>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    if let Some(obj) = desired {
        server_side_apply(api, obj).await?;
        return Ok(());
    }
    let name = resources::workload_name(tenant);
    if let Some(old) = api.get_opt(&name).await?
        && is_controlled_by(old.owner_references(), tenant)
    {
        api.delete(&name, &Default::default()).await?;
    }
    Ok(())
}

async fn apply(api: &Api<FaceIdTenant>, tenant: &FaceIdTenant, ctx: &Context) -> Result<Action> {
    let now = (ctx.now)();
    let generation = tenant.meta().generation;
    let key = tenant_key(tenant);
    let ns = tenant.namespace().ok_or(Error::NoNamespace)?;
    let mut status = tenant.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let all_after_secrets = [types::DATABASE_READY, types::WORKLOAD_READY];

    // Validate (pure).
    let problems = validate(&tenant.spec);
    if !problems.is_empty() {
        let message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        conditions::set(
            &mut status.conditions,
            types::READY,
            Status::False,
            reasons::INVALID_SPEC,
            format!("{message}. Fix the spec; nothing was changed."),
            generation,
            now,
        );
        ctx.metrics.failed("invalid_spec");
        ctx.metrics.set_tenant(&key, Some(Readiness::NotReady));
        write_status(api, tenant, status, ctx).await?;
        return Ok(Action::await_change());
    }

    // Dereference.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let db_ref = &tenant.spec.database.connection_secret_ref;
    let mut refused = None;
    let admin_url = match read_ref(
        &secrets,
        &db_ref.name,
        &db_ref.key,
        "database connection",
        reasons::DATABASE_SECRET_NOT_FOUND,
        reasons::DATABASE_SECRET_KEY_MISSING,
    )
    .await?
    {
        Ok(url) => Some(url),
        Err(r) => {
            refused = Some(r);
            None
        }
    };
    let mut redis_url = None;
    if refused.is_none()
        && let Some(redis) = &tenant.spec.redis
    {
        match read_ref(
            &secrets,
            &redis.secret_ref.name,
            &redis.secret_ref.key,
            "Redis",
            reasons::REDIS_SECRET_NOT_FOUND,
            reasons::REDIS_SECRET_KEY_MISSING,
        )
        .await?
        {
            Ok(url) => redis_url = Some(url),
            Err(r) => refused = Some(r),
        }
    }
    let own_secret = if refused.is_none() {
        let own = secrets.get_opt(&resources::secret_name(tenant)).await?;
        if let Some(s) = &own
            && !is_controlled_by(s.owner_references(), tenant)
        {
            refused = Some(Refused {
                reason: reasons::SECRET_NOT_OWNED,
                message: format!(
                    "Secret {:?} exists and is not owned by this FaceIdTenant; the operator never overwrites it: rename or delete it",
                    resources::secret_name(tenant)
                ),
            });
        }
        own
    } else {
        None
    };
    let (Some(admin_url), None) = (admin_url, &refused) else {
        let r = refused.unwrap_or(Refused {
            reason: reasons::DATABASE_SECRET_NOT_FOUND,
            message: "database connection Secret unreadable".to_owned(),
        });
        let retry = if r.reason == reasons::SECRET_NOT_OWNED {
            REFUSED_RETRY
        } else {
            MISSING_SECRET_RETRY
        };
        conditions::set(
            &mut status.conditions,
            types::SECRETS_READY,
            Status::False,
            r.reason,
            r.message,
            generation,
            now,
        );
        mark_waiting(&mut status, &all_after_secrets, generation, now);
        conditions::set_ready(&mut status.conditions, generation, now);
        ctx.metrics.failed("secret");
        ctx.metrics.set_tenant(&key, Some(Readiness::NotReady));
        write_status(api, tenant, status, ctx).await?;
        return Ok(Action::requeue(retry));
    };
    ctx.remember_admin_url(&key, &admin_url);
    let creds = credentials(own_secret.as_ref());
    if creds.generated {
        ctx.events
            .publish(
                tenant,
                TenantEvent {
                    warning: false,
                    reason: "CredentialsGenerated".to_owned(),
                    action: "GenerateCredentials",
                    note: format!(
                        "generated SECRET_KEY, ADMIN_API_KEY, TEMPLATE_KEY and the database password in Secret {}",
                        resources::secret_name(tenant)
                    ),
                },
            )
            .await;
    }
    conditions::set(
        &mut status.conditions,
        types::SECRETS_READY,
        Status::True,
        reasons::SECRETS_AVAILABLE,
        format!(
            "connection read from Secret {:?}; credentials in Secret {:?}",
            db_ref.name,
            resources::secret_name(tenant)
        ),
        generation,
        now,
    );

    // Database.
    let schema = tenant.spec.database.schema.clone();
    let role = role_name(&schema);
    let provisioned = match role_database_url(&admin_url, &role, &creds.database_password) {
        Err(e) => Err(e),
        Ok(url) => {
            let req = ProvisionRequest::for_tenant(tenant, &creds.database_password);
            ctx.database
                .provision(&admin_url, &req)
                .await
                .map(|p| (p, url))
        }
    };
    let (provisioned, database_url) = match provisioned {
        Ok(p) => p,
        Err(e) => {
            let reason = database_reason(&e);
            let permanent = e.is_permanent();
            conditions::set(
                &mut status.conditions,
                types::DATABASE_READY,
                Status::False,
                reason,
                if permanent {
                    e.to_string()
                } else {
                    format!("{e}; retrying with backoff")
                },
                generation,
                now,
            );
            mark_waiting(&mut status, &[types::WORKLOAD_READY], generation, now);
            conditions::set_ready(&mut status.conditions, generation, now);
            ctx.metrics.set_tenant(&key, Some(Readiness::NotReady));
            write_status(api, tenant, status, ctx).await?;
            if permanent {
                ctx.metrics.failed("database_refused");
                return Ok(Action::requeue(REFUSED_RETRY));
            }
            return Err(Error::Database(e));
        }
    };
    if provisioned.index_rebuilt && !provisioned.schema_created {
        ctx.events
            .publish(
                tenant,
                TenantEvent {
                    warning: false,
                    reason: "IndexRebuilt".to_owned(),
                    action: "RebuildIndex",
                    note: format!(
                        "HNSW index rebuilt concurrently with m={} ef_construction={}",
                        provisioned.index.m, provisioned.index.ef_construction
                    ),
                },
            )
            .await;
    }
    conditions::set(
        &mut status.conditions,
        types::DATABASE_READY,
        Status::True,
        reasons::SCHEMA_PROVISIONED,
        format!(
            "schema {:?} migrated, role {:?}, HNSW m={} ef_construction={}",
            provisioned.schema,
            provisioned.role,
            provisioned.index.m,
            provisioned.index.ef_construction
        ),
        generation,
        now,
    );
    let face_only = crate::login::face_only_login(&tenant.spec, provisioned.active_users);
    conditions::set(
        &mut status.conditions,
        types::FACE_ONLY_LOGIN,
        face_only.condition,
        face_only.reason,
        face_only.message,
        generation,
        now,
    );
    status.login = Some(face_only.status);
    status.schema = Some(provisioned.schema.clone());
    status.database_role = Some(provisioned.role.clone());
    status.index = Some(IndexStatus {
        m: provisioned.index.m,
        ef_construction: provisioned.index.ef_construction,
    });

    // Build (pure) and apply.
    let inputs = Inputs {
        image: tenant
            .spec
            .workload
            .image
            .clone()
            .unwrap_or_else(|| ctx.settings.default_image.clone()),
        secrets: TenantSecrets {
            database_url,
            secret_key: creds.secret_key,
            admin_api_key: creds.admin_api_key,
            template_key: creds.template_key,
            redis_url,
        },
        database_password: creds.database_password,
    };
    let desired = resources::build(tenant, &inputs);
    let client = ctx.client.clone();
    server_side_apply(&secrets, &desired.secret).await?;
    server_side_apply(
        &Api::<ConfigMap>::namespaced(client.clone(), &ns),
        &desired.config_map,
    )
    .await?;
    let deployment = server_side_apply(
        &Api::<Deployment>::namespaced(client.clone(), &ns),
        &desired.deployment,
    )
    .await?;
    server_side_apply(
        &Api::<Service>::namespaced(client.clone(), &ns),
        &desired.service,
    )
    .await?;
    apply_or_remove(
        &Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns),
        tenant,
        desired.autoscaler.as_ref(),
    )
    .await?;
    server_side_apply(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
        &desired.disruption_budget,
    )
    .await?;
    apply_or_remove(
        &Api::<NetworkPolicy>::namespaced(client, &ns),
        tenant,
        desired.network_policy.as_ref(),
    )
    .await?;

    // Status.
    workload_condition(&mut status, tenant, &deployment, now);
    status.endpoint = Some(resources::endpoint(tenant));
    status.selector = Some(resources::selector_string(tenant));
    status.secret_name = Some(resources::secret_name(tenant));
    conditions::set_ready(&mut status.conditions, generation, now);
    let ready = conditions::is_true(&status.conditions, types::READY);
    ctx.metrics.set_tenant(
        &key,
        Some(if ready {
            Readiness::Ready
        } else {
            Readiness::NotReady
        }),
    );
    write_status(api, tenant, status, ctx).await?;
    Ok(Action::requeue(RESYNC))
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

async fn cleanup(api: &Api<FaceIdTenant>, tenant: &FaceIdTenant, ctx: &Context) -> Result<Action> {
    let key = tenant_key(tenant);
    let schema = tenant.spec.database.schema.clone();
    let event = |warning: bool, reason: &str, note: String| TenantEvent {
        warning,
        reason: reason.to_owned(),
        action: "Cleanup",
        note,
    };
    if tenant.spec.database.deletion_policy == DeletionPolicy::Retain {
        ctx.events
            .publish(
                tenant,
                event(
                    false,
                    "SchemaRetained",
                    format!(
                        "deletionPolicy Retain: schema {schema:?} and role {:?} kept",
                        role_name(&schema)
                    ),
                ),
            )
            .await;
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    let manual = format!(
        "drop it by hand if it must go: DROP SCHEMA \"{schema}\" CASCADE; DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\";",
        role = role_name(&schema)
    );
    if annotation_true(tenant, SKIP_CLEANUP_ANNOTATION) {
        ctx.events
            .publish(
                tenant,
                event(
                    true,
                    "CleanupSkipped",
                    format!(
                        "{SKIP_CLEANUP_ANNOTATION} is set: schema {schema:?} not dropped; {manual}"
                    ),
                ),
            )
            .await;
        ctx.forget(&key);
        return Ok(Action::await_change());
    }

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
    let outcome = match url {
        Some(url) => ctx
            .database
            .deprovision(url.trim(), &key, &schema)
            .await
            .map_err(|e| (e.is_permanent(), e.to_string())),
        None => Err((
            false,
            format!(
                "database connection Secret {:?} is gone and no connection is cached",
                db_ref.name
            ),
        )),
    };
    match outcome {
        Ok(d) => {
            ctx.events
                .publish(
                    tenant,
                    event(
                        false,
                        "SchemaDropped",
                        format!(
                            "deletionPolicy Delete: schema {schema:?} {} and role {}",
                            if d.schema_dropped {
                                "dropped"
                            } else {
                                "was already gone"
                            },
                            if d.role_dropped {
                                "dropped"
                            } else {
                                "was already gone"
                            }
                        ),
                    ),
                )
                .await;
            ctx.forget(&key);
            Ok(Action::await_change())
        }
        Err((permanent, message)) => {
            let now = (ctx.now)();
            let deleted_at = tenant
                .meta()
                .deletion_timestamp
                .as_ref()
                .map_or(now, |t| t.0);
            let timeout = SignedDuration::try_from(ctx.settings.cleanup_timeout)
                .unwrap_or(SignedDuration::from_secs(300));
            let deadline = deleted_at.checked_add(timeout).unwrap_or(deleted_at);
            if permanent || now >= deadline {
                ctx.events
                    .publish(
                        tenant,
                        event(
                            true,
                            "CleanupAbandoned",
                            format!("gave up dropping schema {schema:?}: {message}; {manual}"),
                        ),
                    )
                    .await;
                ctx.forget(&key);
                return Ok(Action::await_change());
            }
            let mut status = tenant.status.clone().unwrap_or_default();
            conditions::set(
                &mut status.conditions,
                types::READY,
                Status::False,
                reasons::CLEANUP_FAILED,
                format!(
                    "dropping schema {schema:?} failed: {message}; retrying until {deadline}, then the finalizer is removed anyway; set the annotation {SKIP_CLEANUP_ANNOTATION}=true to stop now"
                ),
                tenant.meta().generation,
                now,
            );
            if let Err(e) = write_status(api, tenant, status, ctx).await {
                tracing::warn!(error = %e, "could not record cleanup failure");
            }
            Err(Error::CleanupPending {
                schema,
                deadline,
                message,
            })
        }
    }
}

/// Runs the controller until `shutdown` resolves.
///
/// Children are watched (label-filtered) so that a deleted or edited Deployment,
/// ConfigMap, Service, autoscaler or disruption budget is repaired at once. Secrets are
/// deliberately not watched: that would need `list`/`watch` on every Secret of the
/// cluster; the operator's own Secret is re-checked on the periodic resync instead.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=faceid-operator");
    Controller::new(
        Api::<FaceIdTenant>::all(client.clone()),
        watcher::Config::default(),
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
