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
    /// Print the OpenAPI document (JSON) of the HTTP API.
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
        Command::Openapi => {
            use utoipa::OpenApi;
            faceid_service::http::openapi::ApiDoc::openapi()
                .to_pretty_json()
                .map(|doc| println!("{doc}"))
                .map_err(anyhow::Error::from)
        }
        Command::Face(cmd) => faceid_service::face::run(cmd),
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
    )?;
    let applied = faceid_migrations::apply(&pool, schema).await?;
    println!(
        "schema {schema}: version {}, newly applied {:?}",
        applied.current, applied.newly_applied
    );
    Ok(())
}
