//! `faceid-operator`: runs the FaceIdTenant controller, or prints its CRD.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use faceid_operator::controller::{self, Context, KubeEvents, Postgres, Settings};
use faceid_operator::health::{self, Health, Outcome, Stopped};
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

    /// This replica's identity in the Lease and in Events (normally the pod name; when
    /// unset, the host name with a random suffix).
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

/// This replica's identity when `POD_NAME` is unset: the host name and a random suffix,
/// so that two processes never share one (a process id alone is 1 in every container).
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "faceid-operator".to_owned());
    format!("{host}_{:08x}", rand::random::<u32>())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not
/// when the future is first polled, so an early SIGTERM is not lost.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// How long running reconciliations may finish after SIGTERM (the chart's
/// terminationGracePeriodSeconds is 30: this, plus the release, fits).
const CONTROLLER_STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound of the Lease release on shutdown.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Releases the Lease (when leading) so that a standby takes over at once; only called
/// once the controller task has ended, so nothing of ours is written afterwards.
async fn release(elector: Option<&LeaderElector>) {
    let Some(e) = elector else {
        return;
    };
    match tokio::time::timeout(RELEASE_TIMEOUT, e.release()).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "could not release the Lease"),
        Err(_) => tracing::warn!("could not release the Lease in time"),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let shutdown = shutdown_signal()?;
    tokio::pin!(shutdown);
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new()?);
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let elector = args.leader_election.then(|| {
        LeaderElector::new(
            Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
            &args.lease_name,
            &identity,
            Duration::from_secs(args.lease_duration_seconds),
        )
    });
    let health = Arc::new(Health::new(elector.as_ref().map(LeaderElector::guard))?);
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    let mut server = tokio::spawn(health::serve(
        listener,
        health::router(health.clone(), metrics.clone()),
    ));

    // Fail early and clearly when the CRD is missing; ready (leader or standby) after.
    Api::<FaceIdTenant>::all(client.clone())
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context("cannot list FaceIdTenants: is the CRD installed (crds/faceidtenant.yaml) and may this account list them?")?;
    health.set_initialized();

    if let Some(e) = &elector {
        tracing::info!(lease = %args.lease_name, namespace = %args.lease_namespace, %identity, "waiting for leadership");
        tokio::select! {
            () = e.acquire() => health.set_leading(),
            () = &mut shutdown => {
                health.set_shutting_down();
                tracing::info!("shutting down (standby)");
                return Ok(());
            }
            r = &mut server => anyhow::bail!("HTTP server stopped: {r:?}"),
        }
    }

    let mut ctx = Context::new(
        client.clone(),
        Arc::new(Postgres::default()),
        Arc::new(KubeEvents::new(client, Some(identity))),
        metrics,
        Settings {
            default_image: args.default_image,
            cleanup_timeout: Duration::from_secs(args.cleanup_timeout_seconds),
        },
    );
    if let Some(guard) = elector.as_ref().map(LeaderElector::guard) {
        ctx = ctx.with_write_guard(move || guard.holds());
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut controller = tokio::spawn(controller::run(
        Arc::new(ctx),
        args.concurrency,
        async move {
            let _ = stop_rx.await;
        },
    ));
    health.set_controller_running();
    let lost = async {
        match &elector {
            Some(e) => e.hold().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(lost);

    let outcome = health::supervise(
        &health,
        &mut controller,
        &mut lost,
        &mut shutdown,
        &mut server,
    )
    .await;
    conclude(outcome, controller, stop_tx, lost, elector.as_ref()).await
}

/// Acts on why the operator stops: a shutdown stops the controller within its grace and
/// releases the Lease; anything else ends the process with the reason (so that it
/// restarts), releasing the Lease unless leadership was lost.
async fn conclude(
    outcome: Outcome,
    mut controller: tokio::task::JoinHandle<()>,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    lost: impl std::future::Future<Output = ()>,
    elector: Option<&LeaderElector>,
) -> anyhow::Result<()> {
    match outcome {
        Outcome::Shutdown => {
            tracing::info!("shutting down: stopping the controller");
            match health::stop_controller(&mut controller, stop_tx, CONTROLLER_STOP_TIMEOUT, lost)
                .await
            {
                Stopped::InTime => {}
                Stopped::TimedOut => tracing::warn!(
                    timeout = ?CONTROLLER_STOP_TIMEOUT,
                    "running reconciliations did not finish in time; aborted"
                ),
                Stopped::LeadershipLost => {
                    anyhow::bail!("leadership lost while shutting down");
                }
            }
            release(elector).await;
            tracing::info!("stopped");
            Ok(())
        }
        Outcome::LeadershipLost => {
            // Stop at once: another replica may already be reconciling (the write guard
            // already refuses every write).
            controller.abort();
            anyhow::bail!("leadership lost; exiting so that this replica restarts as a candidate")
        }
        Outcome::ControllerEnded(exit) => {
            tracing::error!(?exit, "the controller loop ended unexpectedly");
            release(elector).await;
            anyhow::bail!("the controller loop ended unexpectedly ({exit:?})")
        }
        Outcome::ServerEnded(why) => {
            tracing::error!(reason = %why, "the HTTP server stopped");
            controller.abort();
            let _ = (&mut controller).await;
            release(elector).await;
            anyhow::bail!("the HTTP server stopped: {why}")
        }
    }
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
