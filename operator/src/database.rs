//! A tenant's database objects: its schema (claimed by the tenant), a login role limited
//! to that schema, the migrations, and the HNSW index with the tenant's parameters.
//!
//! The reconciler calls [`provision`] on every pass and [`deprovision`] when a tenant
//! with `deletionPolicy: Delete` goes away; end-to-end tests call the same functions.
//!
//! Claims: the schema and the role carry a comment `faceid-operator tenant=<ns>/<name>`.
//! A schema or role claimed by another tenant, or existing without any claim, is never
//! touched: [`provision`] refuses it with an error naming the owner and the way out.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};

pub use faceid_migrations::{quote_ident, search_path, validate_schema_name};

/// Name of the HNSW index created by the first migration.
pub const HNSW_INDEX: &str = "face_embeddings_hnsw_idx";
const HNSW_INDEX_NEW: &str = "face_embeddings_hnsw_idx_new";
const CLAIM_PREFIX: &str = "faceid-operator tenant=";

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
        !matches!(self, Error::Database(_))
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
    /// Password of the tenant's role (16-128 alphanumeric characters), set on every call
    /// so a regenerated credential takes effect.
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

/// Outcome of [`provision`].
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
    /// Migrations applied by this call.
    pub migrations_applied: Vec<i64>,
    /// Index parameters as read back from the database after this call.
    pub index: IndexParams,
    /// Whether this call rebuilt the index.
    pub index_rebuilt: bool,
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
        .max_connections(4)
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

fn lock_key(schema: &str) -> i64 {
    let digest = Sha256::digest(format!("faceid-operator:{schema}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

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

async fn lock(conn: &mut PgConnection, schema: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock_key(schema))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Key of the cluster-wide lock around statements that update rows shared by every
/// tenant (the database's ACL in `pg_database`, roles): two tenants granting or dropping
/// at once would otherwise fail with "tuple concurrently updated".
const CATALOG_LOCK: &str = "faceid-operator:shared-catalog";

async fn unlock(conn: &mut PgConnection, schema: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock_key(schema))
        .execute(&mut *conn)
        .await?;
    Ok(())
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

/// Creates or updates everything the tenant's service needs in the database:
///
/// 1. the schema, claimed for `req.tenant` (refused when another tenant, or nobody,
///    already holds a schema of that name);
/// 2. a login role `faceid_<schema>` with `req.role_password`, allowed to use that
///    schema only (`search_path` pinned to it);
/// 3. every pending migration, inside the schema;
/// 4. the HNSW index with `req.index`, rebuilt without downtime (`CREATE INDEX
///    CONCURRENTLY`, drop the old one concurrently, rename) when its parameters differ.
///
/// Idempotent: a second call with the same request changes nothing but the password.
pub async fn provision(pool: &PgPool, req: &ProvisionRequest) -> Result<ProvisionedDatabase> {
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

    let mut conn = pool.acquire().await?;
    lock(&mut conn, schema).await?;
    let claimed = claim_schema_and_role(&mut conn, req, &role).await;
    let unlocked = unlock(&mut conn, schema).await;
    let (schema_created, role_created) = claimed?;
    unlocked?;

    let applied = faceid_migrations::apply(pool, schema).await?;

    lock(&mut conn, schema).await?;
    let indexed = grant_and_index(&mut conn, schema, &role, req.index).await;
    let unlocked = unlock(&mut conn, schema).await;
    let (index, index_rebuilt) = indexed?;
    unlocked?;
    let active_users: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {}.users WHERE is_active",
        quote_ident(schema)
    ))
    .fetch_one(&mut *conn)
    .await?;
    drop(conn);

    if schema_created || role_created || index_rebuilt || !applied.newly_applied.is_empty() {
        tracing::info!(
            schema,
            tenant,
            schema_created,
            role_created,
            index_rebuilt,
            migrations = ?applied.newly_applied,
            "tenant database provisioned"
        );
    }
    Ok(ProvisionedDatabase {
        schema: schema.to_owned(),
        role,
        schema_created,
        role_created,
        migrations_applied: applied.newly_applied,
        index,
        index_rebuilt,
        active_users,
    })
}

async fn grant_and_index(
    conn: &mut PgConnection,
    schema: &str,
    role: &str,
    want: IndexParams,
) -> Result<(IndexParams, bool)> {
    grant(conn, schema, role).await?;
    ensure_index(conn, schema, want).await
}

/// Creates or checks the claims of the schema and the role; `(schema_created, role_created)`.
async fn claim_schema_and_role(
    conn: &mut PgConnection,
    req: &ProvisionRequest,
    role: &str,
) -> Result<(bool, bool)> {
    let schema = req.schema.as_str();
    let tenant = req.tenant.as_str();
    {
        let ident = quote_ident(schema);
        let role_ident = quote_ident(role);
        let schema_created = match schema_comment(conn, schema).await? {
            None => {
                exec(conn, &format!(
                    "BEGIN; CREATE SCHEMA {ident}; COMMENT ON SCHEMA {ident} IS {}; REVOKE ALL ON SCHEMA {ident} FROM PUBLIC; COMMIT;",
                    quote_literal(&claim(tenant))
                )).await?;
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
        let role_created = match role_comment(conn, role).await? {
            None => {
                exec(conn, &format!(
                    "CREATE ROLE {role_ident} LOGIN NOINHERIT PASSWORD {}; COMMENT ON ROLE {role_ident} IS {};",
                    quote_literal(&req.role_password),
                    quote_literal(&claim(tenant))
                )).await?;
                true
            }
            Some(comment) => match claim_owner(comment.as_deref()) {
                Some(owner) if owner == tenant => {
                    exec(
                        conn,
                        &format!(
                            "ALTER ROLE {role_ident} WITH LOGIN PASSWORD {}",
                            quote_literal(&req.role_password)
                        ),
                    )
                    .await?;
                    false
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
        Ok((schema_created, role_created))
    }
}

async fn grant(conn: &mut PgConnection, schema: &str, role: &str) -> Result<()> {
    lock(conn, CATALOG_LOCK).await?;
    let result = grant_unlocked(conn, schema, role).await;
    let unlocked = unlock(conn, CATALOG_LOCK).await;
    result?;
    unlocked
}

async fn grant_unlocked(conn: &mut PgConnection, schema: &str, role: &str) -> Result<()> {
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

/// `(exists, valid, params)` of one index of the schema.
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

async fn ensure_index(
    conn: &mut PgConnection,
    schema: &str,
    want: IndexParams,
) -> Result<(IndexParams, bool)> {
    let ident = quote_ident(schema);
    // A rebuild interrupted after dropping the old index leaves only the new one.
    if read_index(conn, schema, HNSW_INDEX).await?.is_none()
        && let Some((true, _)) = read_index(conn, schema, HNSW_INDEX_NEW).await?
    {
        exec(
            conn,
            &format!("ALTER INDEX {ident}.{HNSW_INDEX_NEW} RENAME TO {HNSW_INDEX}"),
        )
        .await?;
    }
    let current = read_index(conn, schema, HNSW_INDEX).await?;
    if let Some((true, params)) = current
        && params == want
    {
        return Ok((params, false));
    }
    let opclass = format!("{}.vector_l2_ops", quote_ident(&vector_schema(conn).await?));
    // Leftover of an interrupted build: an invalid index CONCURRENTLY can not reuse.
    exec(
        conn,
        &format!("DROP INDEX CONCURRENTLY IF EXISTS {ident}.{HNSW_INDEX_NEW}"),
    )
    .await?;
    exec(conn, &format!(
        "CREATE INDEX CONCURRENTLY {HNSW_INDEX_NEW} ON {ident}.face_embeddings USING hnsw (embedding {opclass}) WITH (m = {}, ef_construction = {})",
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
    Ok((applied, true))
}

/// Drops the tenant's schema (with all its data) and its role, for
/// `deletionPolicy: Delete`.
///
/// Only objects claimed by `tenant` are dropped: a schema claimed by another tenant is
/// refused with [`Error::SchemaClaimed`], one without a claim with
/// [`Error::SchemaNotManaged`]; a schema or role that no longer exists is fine (the call
/// is idempotent). Sessions of the role are terminated first, and lock waits are bounded
/// (10 s) so the call never hangs on a busy table.
pub async fn deprovision(pool: &PgPool, tenant: &str, schema: &str) -> Result<Deprovisioned> {
    check_schema(schema)?;
    let role = role_name(schema);
    let mut conn = pool.acquire().await?;
    lock(&mut conn, schema).await?;
    let result = drop_bounded(&mut conn, tenant, schema, &role).await;
    let unlocked = unlock(&mut conn, schema).await;
    let value = result?;
    unlocked?;
    Ok(value)
}

async fn drop_bounded(
    conn: &mut PgConnection,
    tenant: &str,
    schema: &str,
    role: &str,
) -> Result<Deprovisioned> {
    sqlx::query("SET lock_timeout = '10s'")
        .execute(&mut *conn)
        .await?;
    lock(conn, CATALOG_LOCK).await?;
    let result = drop_claimed(conn, tenant, schema, role).await;
    // Release and reset whatever happened, then report the drop's own error first.
    let unlocked = unlock(conn, CATALOG_LOCK).await;
    let reset = sqlx::query("RESET lock_timeout").execute(&mut *conn).await;
    let dropped = result?;
    unlocked?;
    reset?;
    Ok(dropped)
}

async fn drop_claimed(
    conn: &mut PgConnection,
    tenant: &str,
    schema: &str,
    role: &str,
) -> Result<Deprovisioned> {
    let mut out = Deprovisioned {
        schema_dropped: false,
        role_dropped: false,
    };
    match schema_comment(conn, schema).await? {
        None => {}
        Some(comment) => match claim_owner(comment.as_deref()) {
            Some(owner) if owner == tenant => {
                sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()")
                    .bind(role)
                    .execute(&mut *conn)
                    .await?;
                exec(
                    conn,
                    &format!("DROP SCHEMA {} CASCADE", quote_ident(schema)),
                )
                .await?;
                out.schema_dropped = true;
            }
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
    }
    if let Some(comment) = role_comment(conn, role).await?
        && claim_owner(comment.as_deref()) == Some(tenant)
    {
        let role_ident = quote_ident(role);
        exec(
            conn,
            &format!("DROP OWNED BY {role_ident}; DROP ROLE {role_ident};"),
        )
        .await?;
        out.role_dropped = true;
    }
    if out.schema_dropped || out.role_dropped {
        tracing::info!(schema, tenant, ?out, "tenant database dropped");
    }
    Ok(out)
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
