//! The operator process's own health: the `/healthz`, `/readyz` and `/metrics` endpoints,
//! and the supervision of the controller task.
//!
//! - `/readyz`: 200 once the process is initialized (the FaceIdTenant API answered),
//!   leader or standby alike; 503 before that and while shutting down.
//! - `/healthz`: 503 with a short reason when the controller loop has ended (returned or
//!   panicked) or when this replica leads but its Lease renewal is past the renew
//!   deadline; 200 otherwise.
//! - `/metrics`: the reconciler's [`Metrics`] and `faceid_operator_leader` (1 while this
//!   replica may write: it holds a fresh Lease, or leader election is off).
//!
//! The decisions are pure functions of a [`Snapshot`]; [`supervise`] and
//! [`stop_controller`] are what the binary runs around the controller task.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};
use tokio::task::{JoinError, JoinHandle};

use crate::leader::LeaseGuard;
use crate::metrics::Metrics;

/// State of the controller task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerState {
    /// Not started yet (standby, or starting up).
    NotStarted,
    /// Running.
    Running,
    /// Ended: returned, panicked or was cancelled.
    Stopped,
}

/// This replica's part in leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// Leader election is off: the only replica always writes.
    Disabled,
    /// Waiting for the Lease.
    Standby,
    /// Holds the Lease; `fresh`: renewed within the renew deadline.
    Leading {
        /// Renewed within the renew deadline.
        fresh: bool,
    },
}

/// Everything the endpoints decide on, read at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Start-up checks passed (the FaceIdTenant API answered).
    pub initialized: bool,
    /// A shutdown signal was received.
    pub shutting_down: bool,
    /// The controller task.
    pub controller: ControllerState,
    /// Leader election.
    pub leadership: Leadership,
}

/// `/healthz`: `Err(reason)` when the process should be restarted.
pub fn liveness(s: &Snapshot) -> Result<(), &'static str> {
    if s.shutting_down {
        // Stopping on purpose; the process exits by itself within its grace period.
        return Ok(());
    }
    if s.controller == ControllerState::Stopped {
        return Err("controller loop stopped");
    }
    if s.leadership == (Leadership::Leading { fresh: false }) {
        return Err("Lease renewal past its deadline");
    }
    Ok(())
}

/// `/readyz`: `Err(reason)` while the process should get no traffic.
pub fn readiness(s: &Snapshot) -> Result<(), &'static str> {
    if s.shutting_down {
        return Err("shutting down");
    }
    if !s.initialized {
        return Err("starting: the FaceIdTenant API has not answered yet");
    }
    Ok(())
}

/// Whether this replica may write (the `faceid_operator_leader` gauge).
pub fn is_leader(s: &Snapshot) -> bool {
    match s.leadership {
        Leadership::Disabled => true,
        Leadership::Standby => false,
        Leadership::Leading { fresh } => fresh,
    }
}

const NOT_STARTED: u8 = 0;
const RUNNING: u8 = 1;
const STOPPED: u8 = 2;

/// The process's health, shared by the binary and the HTTP handlers.
#[derive(Debug)]
pub struct Health {
    initialized: AtomicBool,
    shutting_down: AtomicBool,
    leading: AtomicBool,
    controller: AtomicU8,
    guard: Option<LeaseGuard>,
    registry: Registry,
    leader: IntGauge,
}

impl Health {
    /// Health of a process electing its leader with `guard` (`None`: leader election off).
    pub fn new(guard: Option<LeaseGuard>) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let leader = IntGauge::new(
            "faceid_operator_leader",
            "1 while this replica holds a fresh leader Lease (or runs without leader election)",
        )?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            initialized: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            leading: AtomicBool::new(false),
            controller: AtomicU8::new(NOT_STARTED),
            guard,
            registry,
            leader,
        })
    }

    /// Start-up checks passed.
    pub fn set_initialized(&self) {
        self.initialized.store(true, Ordering::Release);
    }

    /// A shutdown signal was received.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// This replica acquired the Lease.
    pub fn set_leading(&self) {
        self.leading.store(true, Ordering::Release);
    }

    /// The controller task was spawned.
    pub fn set_controller_running(&self) {
        self.controller.store(RUNNING, Ordering::Release);
    }

    /// Records how the controller task ended.
    pub fn controller_ended(&self, result: &Result<(), JoinError>) -> ControllerExit {
        self.controller.store(STOPPED, Ordering::Release);
        match result {
            Ok(()) => ControllerExit::Returned,
            Err(e) if e.is_panic() => ControllerExit::Panicked,
            Err(_) => ControllerExit::Cancelled,
        }
    }

    /// The state now.
    pub fn snapshot(&self) -> Snapshot {
        let controller = match self.controller.load(Ordering::Acquire) {
            NOT_STARTED => ControllerState::NotStarted,
            RUNNING => ControllerState::Running,
            _ => ControllerState::Stopped,
        };
        let leadership = match &self.guard {
            None => Leadership::Disabled,
            Some(_) if !self.leading.load(Ordering::Acquire) => Leadership::Standby,
            Some(g) => Leadership::Leading { fresh: g.holds() },
        };
        Snapshot {
            initialized: self.initialized.load(Ordering::Acquire),
            shutting_down: self.shutting_down.load(Ordering::Acquire),
            controller,
            leadership,
        }
    }

    /// The text exposition of this module's metrics.
    pub fn render_metrics(&self) -> String {
        self.leader.set(i64::from(is_leader(&self.snapshot())));
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// How the controller task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerExit {
    /// Its future completed.
    Returned,
    /// It panicked.
    Panicked,
    /// It was cancelled.
    Cancelled,
}

#[derive(Clone)]
struct Endpoints {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

fn answer(r: Result<(), &'static str>) -> (StatusCode, String) {
    match r {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

async fn healthz(State(e): State<Endpoints>) -> (StatusCode, String) {
    answer(liveness(&e.health.snapshot()))
}

async fn readyz(State(e): State<Endpoints>) -> (StatusCode, String) {
    answer(readiness(&e.health.snapshot()))
}

async fn metrics(State(e): State<Endpoints>) -> String {
    let mut text = e.metrics.render();
    text.push_str(&e.health.render_metrics());
    text
}

/// The HTTP endpoints.
pub fn router(health: Arc<Health>, metrics_: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Endpoints {
            health,
            metrics: metrics_,
        })
}

/// Serves `router` on `listener` until an I/O error.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// Why [`supervise`] returned.
#[derive(Debug)]
pub enum Outcome {
    /// The shutdown signal: stop gracefully.
    Shutdown,
    /// The leader lost its Lease: stop at once.
    LeadershipLost,
    /// The controller task ended on its own.
    ControllerEnded(ControllerExit),
    /// The HTTP server ended.
    ServerEnded(String),
}

/// Waits for whichever comes first: `shutdown`, the loss of leadership (`lost`), the end
/// of the controller task or of the HTTP server; records it in `health`.
pub async fn supervise(
    health: &Health,
    controller: &mut JoinHandle<()>,
    lost: impl Future<Output = ()>,
    shutdown: impl Future<Output = ()>,
    server: &mut JoinHandle<std::io::Result<()>>,
) -> Outcome {
    tokio::select! {
        () = shutdown => {
            health.set_shutting_down();
            Outcome::Shutdown
        }
        () = lost => Outcome::LeadershipLost,
        r = controller => Outcome::ControllerEnded(health.controller_ended(&r)),
        r = server => Outcome::ServerEnded(match r {
            Ok(Ok(())) => "returned".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        }),
    }
}

/// How [`stop_controller`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The controller finished its running reconciliations and returned.
    InTime,
    /// It did not finish within the grace period and was aborted.
    TimedOut,
    /// Leadership was lost meanwhile; it was aborted.
    LeadershipLost,
}

/// Stops the controller: sends `stop`, then waits up to `grace` for its running
/// reconciliations while `lost` (the leader's renewal) keeps the Lease; aborts the task
/// when the grace period ends or leadership is lost first.
pub async fn stop_controller(
    controller: &mut JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    grace: Duration,
    lost: impl Future<Output = ()>,
) -> Stopped {
    let _ = stop.send(());
    let outcome = tokio::select! {
        r = tokio::time::timeout(grace, &mut *controller) => match r {
            Ok(_) => Stopped::InTime,
            Err(_) => Stopped::TimedOut,
        },
        () = lost => Stopped::LeadershipLost,
    };
    if outcome != Stopped::InTime {
        controller.abort();
        let _ = controller.await;
    }
    outcome
}

#[cfg(test)]
#[allow(clippy::panic)] // test code: a panicking controller is what is tested
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn snap(controller: ControllerState, leadership: Leadership) -> Snapshot {
        Snapshot {
            initialized: true,
            shutting_down: false,
            controller,
            leadership,
        }
    }

    #[test]
    fn liveness_fails_when_the_controller_stopped_or_the_lease_went_stale() {
        use ControllerState::*;
        use Leadership::*;
        assert_eq!(liveness(&snap(Running, Disabled)), Ok(()));
        assert_eq!(liveness(&snap(NotStarted, Standby)), Ok(()));
        assert_eq!(liveness(&snap(Running, Leading { fresh: true })), Ok(()));
        assert_eq!(
            liveness(&snap(Stopped, Leading { fresh: true })),
            Err("controller loop stopped")
        );
        assert_eq!(
            liveness(&snap(Running, Leading { fresh: false })),
            Err("Lease renewal past its deadline")
        );
        let stopping = Snapshot {
            shutting_down: true,
            ..snap(Stopped, Leading { fresh: false })
        };
        assert_eq!(liveness(&stopping), Ok(()), "a deliberate stop is no fault");
    }

    #[test]
    fn readiness_follows_start_up_and_shutdown_not_leadership() {
        use ControllerState::*;
        use Leadership::*;
        let starting = Snapshot {
            initialized: false,
            ..snap(NotStarted, Standby)
        };
        assert!(readiness(&starting).is_err());
        assert_eq!(readiness(&snap(NotStarted, Standby)), Ok(()));
        assert_eq!(readiness(&snap(Running, Leading { fresh: true })), Ok(()));
        let stopping = Snapshot {
            shutting_down: true,
            ..snap(Running, Leading { fresh: true })
        };
        assert_eq!(readiness(&stopping), Err("shutting down"));
    }

    #[test]
    fn the_leader_gauge_follows_the_guard() {
        let guard = LeaseGuard::new(Duration::from_secs(10));
        let h = Health::new(Some(guard.clone())).unwrap();
        assert!(
            h.render_metrics().contains("faceid_operator_leader 0"),
            "standby"
        );
        guard.renewed(std::time::Instant::now());
        h.set_leading();
        assert!(h.render_metrics().contains("faceid_operator_leader 1"));
        guard.revoke();
        assert!(h.render_metrics().contains("faceid_operator_leader 0"));
        assert_eq!(
            h.snapshot().leadership,
            Leadership::Leading { fresh: false }
        );
        let single = Health::new(None).unwrap();
        assert!(single.render_metrics().contains("faceid_operator_leader 1"));
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_endpoints_answer_from_the_health_state() {
        let health = Arc::new(Health::new(None).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(
            listener,
            router(health.clone(), Arc::new(Metrics::new().unwrap())),
        ));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_initialized();
        health.set_controller_running();
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("faceid_operator_leader 1"), "{metrics}");
        assert!(
            metrics.contains("faceid_operator_tenants{ready=\"true\"} 0"),
            "{metrics}"
        );
        let dead = tokio::spawn(async { panic!("the controller blew up") });
        assert_eq!(
            health.controller_ended(&dead.await),
            ControllerExit::Panicked
        );
        let healthz = get(addr, "/healthz").await;
        assert!(healthz.starts_with("HTTP/1.1 503"), "{healthz}");
        assert!(healthz.contains("controller loop stopped"), "{healthz}");
        server.abort();
    }

    fn idle_server() -> JoinHandle<std::io::Result<()>> {
        tokio::spawn(std::future::pending())
    }

    #[tokio::test]
    async fn a_controller_that_ends_unasked_is_reported() {
        let health = Health::new(None).unwrap();
        health.set_controller_running();
        let mut server = idle_server();
        let mut returned = tokio::spawn(async {});
        let outcome = supervise(
            &health,
            &mut returned,
            std::future::pending(),
            std::future::pending(),
            &mut server,
        )
        .await;
        assert!(
            matches!(outcome, Outcome::ControllerEnded(ControllerExit::Returned)),
            "{outcome:?}"
        );
        let mut panicked = tokio::spawn(async { panic!("boom") });
        let outcome = supervise(
            &health,
            &mut panicked,
            std::future::pending(),
            std::future::pending(),
            &mut server,
        )
        .await;
        assert!(
            matches!(outcome, Outcome::ControllerEnded(ControllerExit::Panicked)),
            "{outcome:?}"
        );
        assert!(liveness(&health.snapshot()).is_err());
        server.abort();
    }

    #[tokio::test]
    async fn shutdown_and_lost_leadership_are_told_apart() {
        let health = Health::new(None).unwrap();
        let mut server = idle_server();
        let mut controller = tokio::spawn(std::future::pending::<()>());
        let outcome = supervise(
            &health,
            &mut controller,
            std::future::pending(),
            async {},
            &mut server,
        )
        .await;
        assert!(matches!(outcome, Outcome::Shutdown), "{outcome:?}");
        assert!(
            readiness(&health.snapshot()).is_err(),
            "not ready once stopping"
        );
        let outcome = supervise(
            &Health::new(None).unwrap(),
            &mut controller,
            async {},
            std::future::pending(),
            &mut server,
        )
        .await;
        assert!(matches!(outcome, Outcome::LeadershipLost), "{outcome:?}");
        controller.abort();
        server.abort();
    }

    #[tokio::test]
    async fn stopping_waits_for_the_controller_within_the_grace_period() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut obedient = tokio::spawn(async move {
            let _ = rx.await;
        });
        let r = stop_controller(
            &mut obedient,
            tx,
            Duration::from_secs(5),
            std::future::pending(),
        )
        .await;
        assert_eq!(r, Stopped::InTime);

        let (tx, _rx) = tokio::sync::oneshot::channel::<()>();
        let mut stuck = tokio::spawn(std::future::pending::<()>());
        let began = std::time::Instant::now();
        let r = stop_controller(
            &mut stuck,
            tx,
            Duration::from_millis(200),
            std::future::pending(),
        )
        .await;
        assert_eq!(r, Stopped::TimedOut);
        assert!(
            stuck.is_finished(),
            "a controller past its grace is aborted"
        );
        assert!(began.elapsed() < Duration::from_secs(2));

        let (tx, _rx) = tokio::sync::oneshot::channel::<()>();
        let mut stuck = tokio::spawn(std::future::pending::<()>());
        let r = stop_controller(&mut stuck, tx, Duration::from_secs(60), async {}).await;
        assert_eq!(r, Stopped::LeadershipLost);
        assert!(stuck.is_finished());
    }
}
