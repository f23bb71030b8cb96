//! `faceid`: the face-authentication service and its face-engine tools.

use clap::{Parser, Subcommand};

use faceid_service::config::ServeArgs;
use faceid_service::face::FaceCommand;

/// FaceID: face authentication for one tenant.
#[derive(Parser)]
#[command(name = "faceid", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (every setting also reads an environment variable).
    Serve(Box<ServeArgs>),
    /// Apply pending migrations to a tenant schema, then exit.
    Migrate {
        /// PostgreSQL connection URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The tenant schema.
        #[arg(long, env = "DATABASE_SCHEMA", default_value = "public")]
        database_schema: String,
    },
    /// Re-protect every stored template of a tenant from one template key to another, in
    /// one transaction (logins keep working once the service runs with the new key).
    Rekey {
        /// PostgreSQL connection URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The tenant schema.
        #[arg(long, env = "DATABASE_SCHEMA", default_value = "public")]
        database_schema: String,
        /// The signing key (only used when the old template key was derived from it).
        #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
        secret_key: String,
        /// The template key the templates are protected with now (unset: derived from SECRET_KEY).
        #[arg(long, env = "TEMPLATE_KEY", hide_env_values = true)]
        template_key: Option<String>,
        /// The new template key (at least 32 bytes).
        #[arg(long, env = "NEW_TEMPLATE_KEY", hide_env_values = true)]
        new_template_key: String,
    },
    /// Print the OpenAPI document (JSON) of the HTTP API, as a server with the default
    /// MAX_UPLOAD_BYTES serves it at /openapi.json.
    Openapi,
    #[command(flatten)]
    Face(FaceCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            runtime().and_then(|rt| rt.block_on(faceid_service::serve::run(*args)))
        }
        Command::Migrate {
            database_url,
            database_schema,
        } => runtime().and_then(|rt| rt.block_on(migrate(&database_url, &database_schema))),
        Command::Rekey {
            database_url,
            database_schema,
            secret_key,
            template_key,
            new_template_key,
        } => runtime().and_then(|rt| {
            rt.block_on(rekey(
                &database_url,
                &database_schema,
                &secret_key,
                template_key.as_deref(),
                &new_template_key,
            ))
        }),
        Command::Openapi => serde_json::to_string_pretty(&faceid_service::http::openapi::document(
            faceid_service::config::DEFAULT_MAX_UPLOAD_BYTES,
        ))
        .map(|doc| println!("{doc}"))
        .map_err(anyhow::Error::from),
        Command::Face(cmd) => match faceid_service::face::run(cmd) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn migrate(url: &str, schema: &str) -> anyhow::Result<()> {
    faceid_migrations::validate_schema_name(schema)?;
    let pool = faceid_service::store::db::connect_lazy(
        url,
        schema,
        2,
        std::time::Duration::from_secs(600),
        None,
    )?;
    let applied = faceid_migrations::apply(&pool, schema).await?;
    println!(
        "schema {schema}: version {}, newly applied {:?}",
        applied.current, applied.newly_applied
    );
    Ok(())
}

async fn rekey(
    url: &str,
    schema: &str,
    secret_key: &str,
    old: Option<&str>,
    new: &str,
) -> anyhow::Result<()> {
    use faceid_service::config::template_key;
    anyhow::ensure!(
        new.len() >= 32,
        "NEW_TEMPLATE_KEY must be at least 32 bytes"
    );
    faceid_migrations::validate_schema_name(schema)?;
    let pool = faceid_service::store::db::connect_lazy(
        url,
        schema,
        2,
        std::time::Duration::from_secs(3600),
        None,
    )?;
    let old = template_key(old, secret_key);
    let new = template_key(Some(new), secret_key);
    let done = faceid_service::store::templates::rekey(&pool, &old, &new).await?;
    println!(
        "schema {schema}: re-protected {} registration templates and {} face templates; key fingerprint {} -> {}. Restart the service with TEMPLATE_KEY set to the new key.",
        done.users,
        done.faces,
        old.fingerprint(),
        new.fingerprint()
    );
    Ok(())
}
