//! `faceid-operator`: runs the FaceIdTenant controller, or prints its CRD.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use faceid_operator::controller::{self, Context, KubeEvents, Postgres, Settings};
use faceid_operator::leader::LeaderElector;
use faceid_operator::metrics::Metrics;
use faceid_operator::{FaceIdTenant, crd};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

/// Kubernetes operator for FaceID tenants.
#[derive(Parser, Debug)]
#[command(name = "faceid-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the FaceIdTenant CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,

    /// Service image for tenants that set no `spec.workload.image`.
    #[arg(
        long,
        env = "DEFAULT_IMAGE",
        default_value = "ghcr.io/faceid/faceid:0.1.0"
    )]
    default_image: String,

    /// Tenants reconciled at the same time.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,

    /// How long deletion cleanup (deletionPolicy Delete) is retried before the
    /// finalizer is removed anyway, in seconds.
    #[arg(long, env = "CLEANUP_TIMEOUT_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    cleanup_timeout_seconds: u64,

    /// Elect a leader through a Lease so that only one replica reconciles.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,

    /// Name of the leader election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "faceid-operator-leader")]
    lease_name: String,

    /// Namespace of the Lease (normally the operator's own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,

    /// This replica's identity in the Lease and in Events (normally the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Lease duration in seconds: how long a dead leader blocks a takeover.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    lease_duration_seconds: u64,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve_http(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { m.render() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new()?);
    let http = tokio::spawn(serve_http(args.metrics_addr, metrics.clone()));

    // Fail early and clearly when the CRD is missing.
    Api::<FaceIdTenant>::all(client.clone())
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context("cannot list FaceIdTenants: is the CRD installed (crds/faceidtenant.yaml) and may this account list them?")?;

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("faceid-operator-{}", std::process::id()));
    let elector = args.leader_election.then(|| {
        LeaderElector::new(
            Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
            &args.lease_name,
            &identity,
            Duration::from_secs(args.lease_duration_seconds),
        )
    });
    if let Some(e) = &elector {
        tokio::select! {
            () = e.acquire() => {},
            () = shutdown_signal() => return Ok(()),
        }
    }

    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Postgres::default()),
        Arc::new(KubeEvents::new(client, Some(identity))),
        metrics,
        Settings {
            default_image: args.default_image,
            cleanup_timeout: Duration::from_secs(args.cleanup_timeout_seconds),
        },
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(ctx, args.concurrency, async move {
        let _ = stop_rx.await;
    }));
    let lost = async {
        match &elector {
            Some(e) => e.hold().await,
            None => std::future::pending().await,
        }
    };
    let mut lost_leadership = false;
    tokio::select! {
        () = shutdown_signal() => tracing::info!("shutting down"),
        () = lost => lost_leadership = true,
        r = http => tracing::error!(result = ?r, "metrics server stopped"),
    }
    let _ = stop_tx.send(());
    if lost_leadership {
        // Stop at once: another replica may already be reconciling.
        anyhow::bail!("leadership lost; exiting so that this replica restarts as a candidate");
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), controller).await;
    if let Some(e) = &elector {
        e.release().await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", crd::crd_yaml()?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}
