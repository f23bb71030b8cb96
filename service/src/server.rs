//! The HTTP/1.1 server loop: `axum::serve` without its blind spot for slow clients.
//!
//! `axum::serve` gives hyper no timer, so hyper never times out a request head: a client
//! that opens connections and trickles header bytes (slowloris) holds each connection,
//! and its task, for as long as it likes. Here every connection gets:
//!
//! - a **header-read timeout** (`HTTP_HEADER_READ_TIMEOUT_SECONDS`, 10 s): the whole
//!   request head must arrive within it, else the connection is closed;
//! - a **maximum age** ([`ServerLimits::max_connection_age`], 2 minutes): after it the
//!   connection is closed gracefully (the request in flight finishes, keep-alive ends),
//!   which also bounds idle keep-alive connections.
//!
//! Shutdown is graceful as before: stop accepting, let every connection finish its
//! request in flight, then return.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt as _;

/// Per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Longest a request head may take to arrive.
    pub header_read_timeout: Duration,
    /// Age after which a connection is closed gracefully.
    pub max_connection_age: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for the requests in
/// flight. Each request carries `ConnectInfo<SocketAddr>` like `axum::serve`'s.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` yields `None` once all have ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(event = "accept_failed", error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let stop = stop_rx.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, limits, stop).await;
            drop(alive);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(app.map_request(
        move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(axum::body::Body::new)
        },
    ));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let age = tokio::time::sleep(limits.max_connection_age);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(event = "connection_closed", client = %peer, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stopping| *stopping) => {}
        () = age => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
