//! The webhook listener survives hostile clients, tested from outside over TCP: connections
//! over the limit are closed at once, a client that trickles its headers is disconnected after
//! the header timeout, a slow body gets `408`, and a legitimate webhook is answered while more
//! slow clients than the limit are connected.
//!
//! Before (`axum::serve`): no limit and no header timeout, so every slow client held its
//! socket for as long as it liked and, at the process's file limit, no webhook got through.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use messaging_conversations::listener::{ListenerConfig, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(config: ListenerConfig) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let app = Router::new().route(
        "/hook",
        post(|body: axum::body::Bytes| async move { format!("got {} bytes", body.len()) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, config, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

fn config() -> ListenerConfig {
    ListenerConfig::default()
        .max_connections(8)
        .header_read_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_millis(800))
}

/// Sends one webhook; the answer's text, or `None` if the connection was closed first.
async fn webhook(addr: std::net::SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(
        b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await
    .ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    (!text.is_empty()).then_some(text)
}

/// Whether the server closed the connection within `within` (EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn slow_clients_over_the_limit_do_not_block_a_webhook() {
    let (addr, _stop) = start(config()).await;
    // 20 slow clients (the limit is 8), each trickling a request line a byte at a time.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"P").await.unwrap();
        slow.push(s);
    }
    let t0 = Instant::now();
    // A legitimate webhook is answered within about the header timeout (retrying while the
    // slots are held), not never.
    let mut answer = None;
    while t0.elapsed() < Duration::from_secs(3) {
        if let Some(a) = webhook(addr).await
            && a.contains("200 OK")
        {
            answer = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = answer.expect("the webhook was answered");
    assert!(answer.contains("got 2 bytes"), "{answer}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    // Every slow client has been disconnected by now.
    for s in &mut slow {
        assert!(closed_within(s, Duration::from_millis(800)).await);
    }
}

#[tokio::test]
async fn a_connection_over_the_limit_is_closed_at_once() {
    let (addr, _stop) = start(config().header_read_timeout(Duration::from_secs(30))).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"P").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_millis(500)).await,
        "the ninth connection is refused, not queued"
    );
    // The held ones are still open (their header timeout is 30 s).
    assert!(!closed_within(&mut held[0], Duration::from_millis(200)).await);
}

#[tokio::test]
async fn a_slow_header_client_is_disconnected_after_the_timeout() {
    let (addr, _stop) = start(config()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let t0 = Instant::now();
    // One byte every 100 ms: never a whole header.
    let mut closed = false;
    for b in b"POST /hook HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" {
        if s.write_all(&[*b]).await.is_err()
            || closed_within(&mut s, Duration::from_millis(100)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "the slow client was disconnected");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_slow_body_gets_408() {
    let (addr, _stop) = start(config()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let app = Router::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        app,
        ListenerConfig::default(),
        async move {
            let _ = rx.await;
        },
    ));
    assert!(webhook(addr).await.is_some());
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("serve returned")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}
