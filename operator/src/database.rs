//! A tenant's database objects: its schema (claimed by the tenant), a login role limited
//! to that schema, the migrations, and the HNSW index with the tenant's parameters.
//!
//! The reconciler calls [`provision_schema`] at each database step (then
//! [`rebuild_index`] in the background when the HNSW parameters changed) and
//! [`deprovision`] when a tenant with `deletionPolicy: Delete` goes away; end-to-end
//! tests call [`provision`], which is both in one call.
//!
//! Concurrency: every function holds at most one connection of the admin pool at a time
//! (the index rebuild and the role's login check use connections of their own), and
//! every lock is either a transaction-level advisory lock with a bounded wait or a
//! session lock on a connection of its own, so many tenants provisioned at once on one
//! admin URL queue for connections instead of deadlocking, and a cancelled call never
//! leaves a lock behind on a pooled connection.
//!
//! Claims: the schema and the role carry a comment `faceid-operator tenant=<ns>/<name>`.
//! A schema or role claimed by another tenant, or existing without any claim, is never
//! touched: [`provision`] refuses it with an error naming the owner and the way out.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Row};

pub use faceid_migrations::{quote_ident, search_path, validate_schema_name};

/// Name of the HNSW index the migrations create (over half-precision copies of the
/// templates since migration 0003; rebuilds keep that form).
pub const HNSW_INDEX: &str = "face_embeddings_hnsw_idx";
const HNSW_INDEX_NEW: &str = "face_embeddings_hnsw_idx_new";
const CLAIM_PREFIX: &str = "faceid-operator tenant=";
/// Connections of the pool of one admin URL ([`connect`]).
pub const POOL_SIZE: u32 = 4;
/// Lock waits of the provisioning transactions.
const LOCK_TIMEOUT: &str = "30s";
/// Lock waits of deletion cleanup ([`deprovision`]).
const CLEANUP_LOCK_TIMEOUT: &str = "10s";
/// Each statement of deletion cleanup.
const CLEANUP_STATEMENT_TIMEOUT: &str = "30s";
/// How long [`deprovision`] waits for each terminated session to end, in milliseconds.
const TERMINATE_WAIT_MS: i64 = 5000;
/// Longest wait for the role's login check ([`can_log_in`]).
const LOGIN_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong while provisioning or deprovisioning a tenant's database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The schema name is unsafe or reserved.
    #[error("invalid schema name {0:?}")]
    InvalidSchema(String),
    /// Another tenant owns the schema.
    #[error(
        "schema {schema:?} is already claimed by tenant {owner}; choose another schema name or delete that tenant"
    )]
    SchemaClaimed {
        /// Schema name.
        schema: String,
        /// `<namespace>/<name>` of the owner.
        owner: String,
    },
    /// The schema exists but no tenant claims it.
    #[error(
        "schema {schema:?} already exists and is not managed by the operator; to adopt it run: COMMENT ON SCHEMA {schema} IS '{CLAIM_PREFIX}{tenant}'"
    )]
    SchemaNotManaged {
        /// Schema name.
        schema: String,
        /// The tenant asking for it.
        tenant: String,
    },
    /// Another tenant owns the role.
    #[error("role {role:?} is already claimed by tenant {owner}")]
    RoleClaimed {
        /// Role name.
        role: String,
        /// `<namespace>/<name>` of the owner.
        owner: String,
    },
    /// The role exists but no tenant claims it.
    #[error(
        "role {role:?} already exists and is not managed by the operator; to adopt it run: COMMENT ON ROLE {role} IS '{CLAIM_PREFIX}{tenant}'"
    )]
    RoleNotManaged {
        /// Role name.
        role: String,
        /// The tenant asking for it.
        tenant: String,
    },
    /// The generated role password is not plain alphanumeric text.
    #[error("role password must be 16-128 alphanumeric characters")]
    InvalidPassword,
    /// Another session (another operator replica, or a rebuild still running) holds the
    /// schema's index lock; retried later.
    #[error(
        "the HNSW index of schema {schema:?} is being rebuilt by another session; retrying later"
    )]
    IndexBusy {
        /// Schema name.
        schema: String,
    },
    /// The admin connection URL cannot be parsed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// Applying the migrations failed.
    #[error(transparent)]
    Migrations(#[from] faceid_migrations::Error),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// Whether retrying cannot help until someone changes something (spec, database).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Error::Database(_) | Error::IndexBusy { .. })
            && !matches!(
                self,
                Error::Migrations(faceid_migrations::Error::Database(_))
            )
    }
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// HNSW build parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexParams {
    /// pgvector `m`.
    pub m: i32,
    /// pgvector `ef_construction`.
    pub ef_construction: i32,
}

impl Default for IndexParams {
    /// pgvector's defaults, which the first migration uses.
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 64,
        }
    }
}

/// What [`provision`] needs to know about a tenant.
#[derive(Clone)]
pub struct ProvisionRequest {
    /// Owner key `<namespace>/<name>` written into the claims.
    pub tenant: String,
    /// Tenant schema.
    pub schema: String,
    /// Password of the tenant's role (16-128 alphanumeric characters): set when the role
    /// is created, and afterwards only when the role cannot log in with it.
    pub role_password: String,
    /// HNSW parameters wanted.
    pub index: IndexParams,
}

impl ProvisionRequest {
    /// What the reconciler asks of the database for `tenant`: its schema, its claim key,
    /// the role password from its credentials Secret and the HNSW parameters of its spec.
    pub fn for_tenant(tenant: &crate::crd::FaceIdTenant, role_password: &str) -> Self {
        Self {
            tenant: crate::config::tenant_key(tenant),
            schema: tenant.spec.database.schema.clone(),
            role_password: role_password.to_owned(),
            index: IndexParams {
                m: tenant.spec.database.hnsw.m,
                ef_construction: tenant.spec.database.hnsw.ef_construction,
            },
        }
    }
}

impl std::fmt::Debug for ProvisionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionRequest")
            .field("tenant", &self.tenant)
            .field("schema", &self.schema)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Outcome of [`provision`] and [`provision_schema`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedDatabase {
    /// Tenant schema.
    pub schema: String,
    /// The login role limited to the schema.
    pub role: String,
    /// Whether this call created the schema.
    pub schema_created: bool,
    /// Whether this call created the role.
    pub role_created: bool,
    /// Whether this call wrote the role's password (a new role, or one that could not
    /// log in with the requested password).
    pub password_set: bool,
    /// Migrations applied by this call.
    pub migrations_applied: Vec<i64>,
    /// Index parameters as read back from the database after this call (while
    /// `index_wanted` is set: the ones the index has now, or the wanted ones when there is
    /// no index yet).
    pub index: IndexParams,
    /// Whether this call rebuilt the index ([`provision`] only).
    pub index_rebuilt: bool,
    /// The parameters asked for, when the index does not have them yet:
    /// [`provision_schema`] leaves that rebuild to [`rebuild_index`].
    pub index_wanted: Option<IndexParams>,
    /// Active users in the schema: the face-only (1:N) gallery.
    pub active_users: i64,
}

/// Outcome of [`deprovision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprovisioned {
    /// Whether the schema existed and was dropped.
    pub schema_dropped: bool,
    /// Whether the role existed and was dropped.
    pub role_dropped: bool,
    /// Sessions terminated before the drop (the role's, and an index rebuild's).
    pub sessions_terminated: i64,
}

/// The login role of a schema: `faceid_<schema>`.
pub fn role_name(schema: &str) -> String {
    format!("faceid_{schema}")
}

/// A random alphanumeric string of `len` characters (for passwords and keys).
pub fn generate_secret(len: usize) -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// `admin_url` with its user and password replaced by the tenant role's.
pub fn role_database_url(admin_url: &str, role: &str, password: &str) -> Result<String> {
    let mut url = url::Url::parse(admin_url).map_err(|e| Error::InvalidUrl(format!("{e}")))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(Error::InvalidUrl(format!(
            "scheme {:?} is not postgres",
            url.scheme()
        )));
    }
    url.set_username(role)
        .map_err(|()| Error::InvalidUrl("URL has no host".to_owned()))?;
    url.set_password(Some(password))
        .map_err(|()| Error::InvalidUrl("URL has no host".to_owned()))?;
    Ok(url.to_string())
}

/// A small pool on an admin URL, with bounded connect and statement times.
pub async fn connect(admin_url: &str) -> Result<PgPool> {
    let options: PgConnectOptions = admin_url
        .parse()
        .map_err(|e: sqlx::Error| Error::InvalidUrl(e.to_string()))?;
    let options = options.application_name("faceid-operator");
    Ok(PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options))
}

fn claim(tenant: &str) -> String {
    format!("{CLAIM_PREFIX}{tenant}")
}

/// The owner recorded in a claim comment, if the comment is a claim.
fn claim_owner(comment: Option<&str>) -> Option<&str> {
    comment.and_then(|c| c.strip_prefix(CLAIM_PREFIX))
}

fn advisory_key(what: &str) -> i64 {
    let digest = Sha256::digest(format!("faceid-operator:{what}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// The advisory lock of one schema's claims, grants and drop.
fn lock_key(schema: &str) -> i64 {
    advisory_key(schema)
}

/// The advisory lock of one schema's HNSW index: held (session-level, on its own
/// connection) by [`rebuild_index`] for the whole rebuild, tried by [`provision_schema`]
/// before it repairs an interrupted one.
fn index_lock_key(schema: &str) -> i64 {
    advisory_key(&format!("index:{schema}"))
}

/// Key of the cluster-wide lock around statements that update rows shared by every
/// tenant (the database's ACL in `pg_database`, roles): two tenants granting or dropping
/// at once would otherwise fail with "tuple concurrently updated".
const CATALOG_LOCK: &str = "faceid-operator:shared-catalog";

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn check_schema(schema: &str) -> Result<()> {
    validate_schema_name(schema).map_err(|_| Error::InvalidSchema(schema.to_owned()))?;
    if crate::crd::is_reserved_schema(schema) || schema.len() > 56 {
        return Err(Error::InvalidSchema(schema.to_owned()));
    }
    Ok(())
}

/// Runs SQL through the `Executor` trait: `raw_sql(..).execute(conn)` yields a future
/// that is not `Send` for every lifetime, which a spawned reconciler cannot hold.
async fn exec(conn: &mut PgConnection, sql: &str) -> Result<()> {
    use sqlx::Executor;
    conn.execute(sqlx::raw_sql(sql)).await?;
    Ok(())
}

/// Takes a transaction-level advisory lock: released by the commit or the rollback, so a
/// cancelled call can never leave it held on a pooled connection.
async fn lock_xact(conn: &mut PgConnection, key: i64) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Bounds the lock waits (and, with `statement`, every statement) of the current
/// transaction.
async fn bound(conn: &mut PgConnection, lock: &str, statement: Option<&str>) -> Result<()> {
    let mut sql = format!("SET LOCAL lock_timeout = {}", quote_literal(lock));
    if let Some(s) = statement {
        sql.push_str(&format!(
            "; SET LOCAL statement_timeout = {}",
            quote_literal(s)
        ));
    }
    exec(conn, &sql).await
}

/// `None` when the schema does not exist, else its comment.
async fn schema_comment(conn: &mut PgConnection, schema: &str) -> Result<Option<Option<String>>> {
    let row = sqlx::query(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
    )
    .bind(schema)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        None => None,
        Some(r) => Some(r.try_get::<Option<String>, _>(0)?),
    })
}

/// `None` when the role does not exist, else its comment.
async fn role_comment(conn: &mut PgConnection, role: &str) -> Result<Option<Option<String>>> {
    let row =
        sqlx::query("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match row {
        None => None,
        Some(r) => Some(r.try_get::<Option<String>, _>(0)?),
    })
}

/// Which tenant claims `schema`: `Ok(None)` when it does not exist or nobody claims it.
pub async fn schema_owner(pool: &PgPool, schema: &str) -> Result<Option<String>> {
    let mut conn = pool.acquire().await?;
    let comment = schema_comment(&mut conn, schema).await?;
    Ok(comment
        .flatten()
        .as_deref()
        .and_then(|c| claim_owner(Some(c)))
        .map(str::to_owned))
}

/// Whether `role` logs in with `password` on the server and database of `pool`: a
/// connection of its own, never one of the pool. Any failure (wrong password, no such
/// role, `NOLOGIN`, a refusal by `pg_hba.conf`, a timeout) is `false`.
pub async fn can_log_in(pool: &PgPool, role: &str, password: &str) -> bool {
    let options = (*pool.connect_options())
        .clone()
        .username(role)
        .password(password);
    match tokio::time::timeout(LOGIN_CHECK_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            true
        }
        _ => false,
    }
}

/// [`provision_schema`], then the index rebuild it leaves out ([`rebuild_index`]) in the
/// same call: everything the tenant's service needs, for callers that can wait for a
/// rebuild (end-to-end tests, tools). The reconciler calls the two separately and runs
/// the rebuild in the background.
///
/// Idempotent: a second call with the same request changes nothing.
pub async fn provision(pool: &PgPool, req: &ProvisionRequest) -> Result<ProvisionedDatabase> {
    let mut out = provision_schema(pool, req).await?;
    if let Some(want) = out.index_wanted {
        let rebuilt = rebuild_index(pool, &req.schema, want).await?;
        out.index = rebuilt.index;
        out.index_rebuilt = rebuilt.rebuilt;
        out.index_wanted = None;
    }
    Ok(out)
}

/// Creates or updates everything the tenant's service needs in the database, but a
/// rebuild of the HNSW index:
///
/// 1. the schema, claimed for `req.tenant` (refused when another tenant, or nobody,
///    already holds a schema of that name);
/// 2. a login role `faceid_<schema>` with `req.role_password`, allowed to use that
///    schema only (`search_path` pinned to it). The password is set when the role is
///    created, and afterwards only when the role cannot log in with it ([`can_log_in`],
///    checked on a connection of its own): a rotated password takes effect, an
///    unchanged one is never written again (no catalog write, nothing in the server's
///    statement log);
/// 3. every pending migration, inside the schema;
/// 4. the HNSW index checked against `req.index`: an interrupted rebuild is repaired,
///    and different parameters are reported in `index_wanted` for [`rebuild_index`].
///
/// Holds at most one connection of `pool` at a time, and every lock it takes is a
/// transaction lock with a bounded wait, so any number of concurrent calls on one pool
/// queue for connections and never deadlock.
pub async fn provision_schema(
    pool: &PgPool,
    req: &ProvisionRequest,
) -> Result<ProvisionedDatabase> {
    let schema = req.schema.as_str();
    check_schema(schema)?;
    if req.role_password.len() < 16
        || req.role_password.len() > 128
        || !req.role_password.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(Error::InvalidPassword);
    }
    let role = role_name(schema);
    let tenant = req.tenant.as_str();
    // Before any pooled connection is taken: the check uses a connection of the role.
    let password_works = can_log_in(pool, &role, &req.role_password).await;

    let mut tx = pool.begin().await?;
    bound(&mut tx, LOCK_TIMEOUT, None).await?;
    lock_xact(&mut tx, lock_key(schema)).await?;
    let claimed = claim_schema_and_role(&mut tx, req, &role, password_works).await?;
    tx.commit().await?;

    let applied = faceid_migrations::apply(pool, schema).await?;

    let mut tx = pool.begin().await?;
    bound(&mut tx, LOCK_TIMEOUT, None).await?;
    lock_xact(&mut tx, lock_key(schema)).await?;
    lock_xact(&mut tx, advisory_key(CATALOG_LOCK)).await?;
    grant(&mut tx, schema, &role).await?;
    tx.commit().await?;

    let mut conn = pool.acquire().await?;
    let (index, index_wanted) = inspect_index(&mut conn, schema, req.index).await?;
    let active_users: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {}.users WHERE is_active",
        quote_ident(schema)
    ))
    .fetch_one(&mut *conn)
    .await?;
    drop(conn);

    let Claimed {
        schema_created,
        role_created,
        password_set,
    } = claimed;
    if schema_created || role_created || password_set || !applied.newly_applied.is_empty() {
        tracing::info!(
            schema,
            tenant,
            schema_created,
            role_created,
            password_set,
            migrations = ?applied.newly_applied,
            "tenant database provisioned"
        );
    }
    Ok(ProvisionedDatabase {
        schema: schema.to_owned(),
        role,
        schema_created,
        role_created,
        password_set,
        migrations_applied: applied.newly_applied,
        index,
        index_rebuilt: false,
        index_wanted,
        active_users,
    })
}

/// What [`claim_schema_and_role`] did.
struct Claimed {
    schema_created: bool,
    role_created: bool,
    password_set: bool,
}

/// Creates or checks the claims of the schema and the role, inside the caller's
/// transaction; the password is written only when the role is new or
/// `password_works` is false.
async fn claim_schema_and_role(
    conn: &mut PgConnection,
    req: &ProvisionRequest,
    role: &str,
    password_works: bool,
) -> Result<Claimed> {
    let schema = req.schema.as_str();
    let tenant = req.tenant.as_str();
    let ident = quote_ident(schema);
    let role_ident = quote_ident(role);
    let schema_created = match schema_comment(conn, schema).await? {
        None => {
            exec(
                conn,
                &format!(
                    "CREATE SCHEMA {ident}; COMMENT ON SCHEMA {ident} IS {}; REVOKE ALL ON SCHEMA {ident} FROM PUBLIC;",
                    quote_literal(&claim(tenant))
                ),
            )
            .await?;
            true
        }
        Some(comment) => match claim_owner(comment.as_deref()) {
            Some(owner) if owner == tenant => false,
            Some(owner) => {
                return Err(Error::SchemaClaimed {
                    schema: schema.to_owned(),
                    owner: owner.to_owned(),
                });
            }
            None => {
                return Err(Error::SchemaNotManaged {
                    schema: schema.to_owned(),
                    tenant: tenant.to_owned(),
                });
            }
        },
    };
    let (role_created, password_set) = match role_comment(conn, role).await? {
        None => {
            exec(
                conn,
                &format!(
                    "CREATE ROLE {role_ident} LOGIN NOINHERIT PASSWORD {}; COMMENT ON ROLE {role_ident} IS {};",
                    quote_literal(&req.role_password),
                    quote_literal(&claim(tenant))
                ),
            )
            .await?;
            (true, true)
        }
        Some(comment) => match claim_owner(comment.as_deref()) {
            Some(owner) if owner == tenant && password_works => (false, false),
            Some(owner) if owner == tenant => {
                exec(
                    conn,
                    &format!(
                        "ALTER ROLE {role_ident} WITH LOGIN PASSWORD {}",
                        quote_literal(&req.role_password)
                    ),
                )
                .await?;
                (false, true)
            }
            Some(owner) => {
                return Err(Error::RoleClaimed {
                    role: role.to_owned(),
                    owner: owner.to_owned(),
                });
            }
            None => {
                return Err(Error::RoleNotManaged {
                    role: role.to_owned(),
                    tenant: tenant.to_owned(),
                });
            }
        },
    };
    Ok(Claimed {
        schema_created,
        role_created,
        password_set,
    })
}

/// The role's privileges, inside the caller's transaction (which holds the catalog lock).
async fn grant(conn: &mut PgConnection, schema: &str, role: &str) -> Result<()> {
    let ident = quote_ident(schema);
    let role_ident = quote_ident(role);
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut *conn)
        .await?;
    exec(conn, &format!(
        "GRANT CONNECT ON DATABASE {db} TO {role_ident};
         GRANT USAGE ON SCHEMA {ident} TO {role_ident};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {ident} TO {role_ident};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {ident} TO {role_ident};
         REVOKE INSERT, UPDATE, DELETE ON {ident}.schema_migrations FROM {role_ident};
         ALTER DEFAULT PRIVILEGES IN SCHEMA {ident} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role_ident};
         ALTER DEFAULT PRIVILEGES IN SCHEMA {ident} GRANT USAGE, SELECT ON SEQUENCES TO {role_ident};
         ALTER ROLE {role_ident} SET search_path = {path};",
        db = quote_ident(&database),
        path = search_path(schema),
    )).await?;
    Ok(())
}

/// `(valid, params)` of one index of the schema, `None` when it does not exist.
async fn read_index(
    conn: &mut PgConnection,
    schema: &str,
    index: &str,
) -> Result<Option<(bool, IndexParams)>> {
    let row = sqlx::query(
        "SELECT i.indisvalid, c.reloptions
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_index i ON i.indexrelid = c.oid
          WHERE n.nspname = $1 AND c.relname = $2",
    )
    .bind(schema)
    .bind(index)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let valid: bool = row.try_get(0)?;
    let options: Option<Vec<String>> = row.try_get(1)?;
    Ok(Some((
        valid,
        parse_reloptions(&options.unwrap_or_default()),
    )))
}

/// HNSW parameters from `reloptions` (pgvector's defaults where unset).
pub fn parse_reloptions(options: &[String]) -> IndexParams {
    let mut params = IndexParams::default();
    for option in options {
        if let Some((k, v)) = option.split_once('=')
            && let Ok(v) = v.parse::<i32>()
        {
            match k {
                "m" => params.m = v,
                "ef_construction" => params.ef_construction = v,
                _ => {}
            }
        }
    }
    params
}

/// Current HNSW parameters of the tenant's index, `None` when it does not exist.
pub async fn index_params(pool: &PgPool, schema: &str) -> Result<Option<IndexParams>> {
    let mut conn = pool.acquire().await?;
    Ok(read_index(&mut conn, schema, HNSW_INDEX)
        .await?
        .map(|(_, p)| p))
}

async fn vector_schema(conn: &mut PgConnection) -> Result<String> {
    Ok(sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
    )
    .fetch_one(&mut *conn)
    .await?)
}

/// A rebuild interrupted after dropping the old index leaves only the new one: renames it.
async fn repair_interrupted_rebuild(conn: &mut PgConnection, schema: &str) -> Result<()> {
    if read_index(conn, schema, HNSW_INDEX).await?.is_none()
        && let Some((true, _)) = read_index(conn, schema, HNSW_INDEX_NEW).await?
    {
        exec(
            conn,
            &format!(
                "ALTER INDEX {}.{HNSW_INDEX_NEW} RENAME TO {HNSW_INDEX}",
                quote_ident(schema)
            ),
        )
        .await?;
    }
    Ok(())
}

/// The index's parameters, and `want` when it needs a rebuild to get them. Repairs an
/// interrupted rebuild unless one is running (its lock is taken).
async fn inspect_index(
    conn: &mut PgConnection,
    schema: &str,
    want: IndexParams,
) -> Result<(IndexParams, Option<IndexParams>)> {
    let mut tx = conn.begin().await?;
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(index_lock_key(schema))
        .fetch_one(&mut *tx)
        .await?;
    if free {
        repair_interrupted_rebuild(&mut tx, schema).await?;
    }
    let current = read_index(&mut tx, schema, HNSW_INDEX).await?;
    tx.commit().await?;
    Ok(match current {
        Some((true, params)) if params == want => (params, None),
        Some((_, params)) => (params, Some(want)),
        None => (want, Some(want)),
    })
}

/// What [`rebuild_index`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRebuild {
    /// The index's parameters as read back afterwards.
    pub index: IndexParams,
    /// Whether an index was built (false: it already had the parameters).
    pub rebuilt: bool,
}

/// Rebuilds the tenant's HNSW index with `want` without downtime: `CREATE INDEX
/// CONCURRENTLY` a new one, `DROP INDEX CONCURRENTLY` the old one, rename. Minutes on a
/// large gallery, so it runs on a connection of its own (never one of `pool`'s), holding
/// the schema's index lock for the whole build: a second rebuild of the same schema,
/// from this process or another, fails at once with [`Error::IndexBusy`]. Dropping the
/// future closes the connection, which ends the build and releases the lock (the server
/// notices within 10 s where it supports `client_connection_check_interval`); a build
/// interrupted that way is cleaned up by the next call.
pub async fn rebuild_index(pool: &PgPool, schema: &str, want: IndexParams) -> Result<IndexRebuild> {
    check_schema(schema)?;
    let options = (*pool.connect_options())
        .clone()
        .application_name("faceid-operator-index-rebuild");
    let mut conn = PgConnection::connect_with(&options).await?;
    // PostgreSQL 14+: notice a closed client during the long CREATE INDEX (best effort).
    let _ = exec(&mut conn, "SET client_connection_check_interval = '10s'").await;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(index_lock_key(schema))
        .fetch_one(&mut conn)
        .await?;
    let result = if locked {
        ensure_index(&mut conn, schema, want).await
    } else {
        Err(Error::IndexBusy {
            schema: schema.to_owned(),
        })
    };
    // Closing the session releases the lock.
    let _ = conn.close().await;
    result
}

async fn ensure_index(
    conn: &mut PgConnection,
    schema: &str,
    want: IndexParams,
) -> Result<IndexRebuild> {
    let ident = quote_ident(schema);
    repair_interrupted_rebuild(conn, schema).await?;
    let current = read_index(conn, schema, HNSW_INDEX).await?;
    if let Some((true, params)) = current
        && params == want
    {
        return Ok(IndexRebuild {
            index: params,
            rebuilt: false,
        });
    }
    let vector = quote_ident(&vector_schema(conn).await?);
    // Leftover of an interrupted build: an invalid index CONCURRENTLY can not reuse.
    exec(
        conn,
        &format!("DROP INDEX CONCURRENTLY IF EXISTS {ident}.{HNSW_INDEX_NEW}"),
    )
    .await?;
    exec(conn, &format!(
        "CREATE INDEX CONCURRENTLY {HNSW_INDEX_NEW} ON {ident}.face_embeddings USING hnsw ((embedding::{vector}.halfvec(128)) {vector}.halfvec_l2_ops) WITH (m = {}, ef_construction = {})",
        want.m, want.ef_construction
    )).await?;
    if current.is_some() {
        exec(
            conn,
            &format!("DROP INDEX CONCURRENTLY IF EXISTS {ident}.{HNSW_INDEX}"),
        )
        .await?;
    }
    exec(
        conn,
        &format!("ALTER INDEX {ident}.{HNSW_INDEX_NEW} RENAME TO {HNSW_INDEX}"),
    )
    .await?;
    let (_, applied) = read_index(conn, schema, HNSW_INDEX)
        .await?
        .ok_or(Error::Database(sqlx::Error::RowNotFound))?;
    tracing::info!(
        schema,
        m = applied.m,
        ef_construction = applied.ef_construction,
        "HNSW index rebuilt"
    );
    Ok(IndexRebuild {
        index: applied,
        rebuilt: true,
    })
}

/// Drops the tenant's schema (with all its data) and its role, for
/// `deletionPolicy: Delete`, in an order that finishes while the tenant's pods still
/// connect:
///
/// 1. `ALTER ROLE ... NOLOGIN` (committed: no new session of the role starts);
/// 2. the role's sessions, and a rebuild of the schema's index, are terminated (waiting
///    up to 5 s for each to end; needs superuser or `pg_signal_backend` for the role's
///    sessions, and when that is missing it goes on without);
/// 3. `DROP SCHEMA ... CASCADE`, `DROP OWNED BY` and `DROP ROLE`.
///
/// Its own time is bounded: lock waits by `lock_timeout` (10 s) and statements by
/// `statement_timeout` (30 s), set on its one connection for its own transactions only.
///
/// Only objects claimed by `tenant` are dropped: a schema claimed by another tenant is
/// refused with [`Error::SchemaClaimed`], one without a claim with
/// [`Error::SchemaNotManaged`]; a schema or role that no longer exists is fine (the call
/// is idempotent).
pub async fn deprovision(pool: &PgPool, tenant: &str, schema: &str) -> Result<Deprovisioned> {
    check_schema(schema)?;
    let role = role_name(schema);
    let role_ident = quote_ident(&role);
    let mut conn = pool.acquire().await?;

    let mut tx = conn.begin().await?;
    bound(
        &mut tx,
        CLEANUP_LOCK_TIMEOUT,
        Some(CLEANUP_STATEMENT_TIMEOUT),
    )
    .await?;
    lock_xact(&mut tx, lock_key(schema)).await?;
    let (drop_schema, drop_role) = claims_to_drop(&mut tx, tenant, schema, &role).await?;
    if drop_role {
        exec(&mut tx, &format!("ALTER ROLE {role_ident} NOLOGIN")).await?;
    }
    tx.commit().await?;

    let sessions_terminated = terminate_sessions(&mut conn, &role, schema).await;

    let mut tx = conn.begin().await?;
    bound(
        &mut tx,
        CLEANUP_LOCK_TIMEOUT,
        Some(CLEANUP_STATEMENT_TIMEOUT),
    )
    .await?;
    lock_xact(&mut tx, lock_key(schema)).await?;
    lock_xact(&mut tx, advisory_key(CATALOG_LOCK)).await?;
    if drop_schema {
        exec(
            &mut tx,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(schema)),
        )
        .await?;
    }
    if drop_role {
        exec(
            &mut tx,
            &format!("DROP OWNED BY {role_ident}; DROP ROLE {role_ident};"),
        )
        .await?;
    }
    tx.commit().await?;
    let out = Deprovisioned {
        schema_dropped: drop_schema,
        role_dropped: drop_role,
        sessions_terminated,
    };
    if drop_schema || drop_role {
        tracing::info!(schema, tenant, ?out, "tenant database dropped");
    }
    Ok(out)
}

/// Which of the schema and the role `tenant` may drop: `(schema, role)`. A schema of
/// another tenant, or of nobody, is refused; a role that is not the tenant's is left.
async fn claims_to_drop(
    conn: &mut PgConnection,
    tenant: &str,
    schema: &str,
    role: &str,
) -> Result<(bool, bool)> {
    let drop_schema = match schema_comment(conn, schema).await? {
        None => false,
        Some(comment) => match claim_owner(comment.as_deref()) {
            Some(owner) if owner == tenant => true,
            Some(owner) => {
                return Err(Error::SchemaClaimed {
                    schema: schema.to_owned(),
                    owner: owner.to_owned(),
                });
            }
            None => {
                return Err(Error::SchemaNotManaged {
                    schema: schema.to_owned(),
                    tenant: tenant.to_owned(),
                });
            }
        },
    };
    let drop_role = role_comment(conn, role)
        .await?
        .is_some_and(|comment| claim_owner(comment.as_deref()) == Some(tenant));
    Ok((drop_schema, drop_role))
}

/// Terminates the role's sessions and whoever holds the schema's index lock (a
/// rebuild), waiting up to 5 s for each; how many ended. Best effort: without the
/// right to signal them (superuser or `pg_signal_backend`) it logs and returns 0, and the
/// drop that follows waits for their locks within its `lock_timeout`.
async fn terminate_sessions(conn: &mut PgConnection, role: &str, schema: &str) -> i64 {
    let key = index_lock_key(schema).cast_unsigned();
    let result: Result<i64> = async {
        let mut tx = conn.begin().await?;
        bound(
            &mut tx,
            CLEANUP_LOCK_TIMEOUT,
            Some(CLEANUP_STATEMENT_TIMEOUT),
        )
        .await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, $4))
               FROM pg_stat_activity
              WHERE pid <> pg_backend_pid()
                AND (usename = $1
                     OR pid IN (SELECT pid FROM pg_locks
                                 WHERE locktype = 'advisory' AND objsubid = 1
                                   AND classid::bigint = $2 AND objid::bigint = $3))",
        )
        .bind(role)
        .bind((key >> 32).cast_signed())
        .bind((key & 0xffff_ffff).cast_signed())
        .bind(TERMINATE_WAIT_MS)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n)
    }
    .await;
    match result {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(role, error = %e, "could not terminate the role's sessions; dropping anyway");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloptions_parse_with_defaults() {
        assert_eq!(parse_reloptions(&[]), IndexParams::default());
        assert_eq!(
            parse_reloptions(&["m=32".into(), "ef_construction=200".into()]),
            IndexParams {
                m: 32,
                ef_construction: 200
            }
        );
    }

    #[test]
    fn role_url_replaces_only_the_credentials() {
        let url = role_database_url(
            "postgres://admin:secret@db.example:5432/faceid?sslmode=require",
            "faceid_acme",
            "pw123",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://faceid_acme:pw123@db.example:5432/faceid?sslmode=require"
        );
        assert!(role_database_url("mysql://x@h/db", "r", "p").is_err());
        assert!(role_database_url("not a url", "r", "p").is_err());
    }

    #[test]
    fn claims_are_recognised() {
        assert_eq!(claim_owner(Some(&claim("ns/a"))), Some("ns/a"));
        assert_eq!(claim_owner(Some("someone else's schema")), None);
        assert_eq!(claim_owner(None), None);
    }

    #[test]
    fn generated_secrets_are_alphanumeric_and_distinct() {
        let a = generate_secret(48);
        let b = generate_secret(48);
        assert_eq!(a.len(), 48);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
