//! `faceid serve`: load the models, migrate, serve until SIGINT/SIGTERM, then finish
//! in-flight requests before exiting.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use crate::config::ServeArgs;
use crate::face::FaceEngine;
use crate::state::AppState;

/// Age after which a connection is closed gracefully (bounds idle keep-alive ones).
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);

/// How often the user gauges are refreshed and old attempts deleted.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

/// Runs the service.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    crate::telemetry::init(args.log_format);
    tracing::info!(config = ?args, "starting");
    let engine_config = args.engine.config();
    let engine = tokio::task::spawn_blocking(move || FaceEngine::load(engine_config))
        .await
        .context("model loading task")?
        .context("loading the face models")?;
    tracing::info!(model_version = engine.model_version(), "face models loaded");

    let state = AppState::new(args.clone(), engine).context("building the service state")?;
    let tokens = state.tokens();
    if tokens.keys().is_ephemeral() {
        tracing::warn!(
            event = "ephemeral_signing_key",
            kid = tokens
                .keys()
                .jwks(chrono::Utc::now())
                .first()
                .map(|k| k.kid.as_str()),
            "SIGNING_KEYS is unset: signing tokens with Ed25519 and P-256 keys generated for this process; its tokens will not survive a restart and other replicas will not share the key (set SIGNING_KEYS, as the operator does)"
        );
    }
    tracing::info!(
        access_algorithm = ?tokens.access_algorithm(),
        legacy_hs256 = tokens.accepts_hs256(),
        kids = ?tokens.keys().jwks(chrono::Utc::now()).iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        "token keys loaded"
    );
    if args.migrate_on_start {
        let applied = faceid_migrations::apply(state.db(), &args.database_schema)
            .await
            .with_context(|| {
                format!(
                    "migrating schema {:?} (DATABASE_URL, DATABASE_SCHEMA)",
                    args.database_schema
                )
            })?;
        tracing::info!(schema = %args.database_schema, newly_applied = ?applied.newly_applied, version = applied.current, "schema up to date");
    }

    check_template_key(&state).await?;

    let housekeeping = tokio::spawn({
        let state = state.clone();
        async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
            loop {
                tick.tick().await;
                if let Err(e) = crate::flows::housekeeping(&state).await {
                    tracing::warn!(event = "housekeeping_failed", error = %e, "housekeeping failed");
                }
            }
        }
    });

    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} (HOST, PORT)"))?;
    tracing::info!(%addr, tenant = %args.tenant, "serving");
    let limits = crate::server::ServerLimits {
        header_read_timeout: Duration::from_secs(args.http_header_read_timeout_seconds),
        max_connection_age: MAX_CONNECTION_AGE,
    };
    crate::server::serve(listener, crate::http::app(state), limits, shutdown_signal()).await;
    housekeeping.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Refuses to serve with a template key other than the one protecting the stored
/// templates: every login would fail without a word.
async fn check_template_key(state: &AppState) -> anyhow::Result<()> {
    use crate::store::templates::{KeyCheck, check_or_record};
    let key = state.templates();
    if state.config().template_key.is_none() {
        tracing::warn!(
            "TEMPLATE_KEY is unset: templates are protected with a key derived from SECRET_KEY, which therefore cannot be rotated without `faceid rekey`"
        );
    }
    match check_or_record(state.db(), key).await {
        Ok(KeyCheck::Recorded) => {
            tracing::info!(fingerprint = key.fingerprint(), "template key recorded")
        }
        Ok(KeyCheck::Upgraded) => tracing::info!(
            fingerprint = key.fingerprint(),
            "template key matches; its recorded fingerprint now covers the derived matrix"
        ),
        Ok(KeyCheck::Matches) => tracing::info!(
            fingerprint = key.fingerprint(),
            "template key matches the stored templates"
        ),
        Ok(KeyCheck::Mismatch(stored)) => anyhow::bail!(
            "TEMPLATE_KEY (fingerprint {}) is not the key protecting this schema's templates (fingerprint {stored}); \
             use the original key, or move the templates with `faceid rekey`",
            key.fingerprint()
        ),
        // The database may be down at start-up: /ready reports it; check again later.
        Err(e) => tracing::warn!(error = %e, "could not check the template key yet"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}
