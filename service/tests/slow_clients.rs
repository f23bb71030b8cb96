//! Slow clients against the real server loop (`faceid_service::server`): a client that
//! trickles its request head (slowloris) is cut off at the header-read timeout, while
//! other clients are served.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

mod common;

use std::time::{Duration, Instant};

use common::Tenant;
use faceid_service::server::{ServerLimits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_and_others_are_served() {
    let t = Tenant::new(&[]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        max_connection_age: Duration::from_secs(120),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, t.app.clone(), limits, async move {
        let _ = stop_rx.await;
    }));

    // The slow client: a byte of header every 200 ms, for up to 10 s.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let trickle = async {
        for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            .iter()
            .cycle()
        {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut buf = [0u8; 256];
            let read = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await;
            if let Ok(Ok(0) | Err(_)) = read {
                break;
            }
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
    };
    // Meanwhile an ordinary client is served.
    let ordinary = async {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        c.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    let ((), answer) = tokio::join!(trickle, ordinary);
    let cut_after = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        cut_after < Duration::from_secs(4),
        "the slow client was still connected after {cut_after:?} (header-read timeout 1 s)"
    );

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops")
        .unwrap();
}
