//! A webhook listener that survives hostile clients: [`serve`] runs an axum [`Router`] (the
//! [`WebhookRouter`](crate::router::WebhookRouter)'s, or any) with a connection limit, a
//! header read timeout and a per-request deadline, and shuts down gracefully.
//!
//! `axum::serve` has none of these: a thousand clients that open a connection and send nothing
//! (or one byte a second) hold a thousand sockets, and at the process's file limit no provider's
//! webhook gets through. Here a connection over [`ListenerConfig::max_connections`] is closed at
//! once (never queued), a client that has not sent its headers within
//! [`ListenerConfig::header_read_timeout`] is disconnected, and a request not answered within
//! [`ListenerConfig::request_timeout`] (a slow body included) gets `408` and its connection is
//! closed.
//!
//! ```no_run
//! use messaging_conversations::listener::{ListenerConfig, serve};
//! # async fn run(app: axum::Router, stop: tokio::sync::oneshot::Receiver<()>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! let config = ListenerConfig::default().max_connections(256);
//! serve(listener, app, config, async {
//!     let _ = stop.await; // or tokio::signal::ctrl_c()
//! })
//! .await
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// The listener's limits. The defaults suit a webhook endpoint: providers send small bodies
/// and expect an answer within seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerConfig {
    /// Open connections at most (default 512, well under the usual 1,024-file limit); one more
    /// is closed as soon as it is accepted.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, on a new connection or an idle
    /// kept-alive one (default 10 s); then it is disconnected.
    pub header_read_timeout: Duration,
    /// How long one request may take from its headers to its answer, reading the body included
    /// (default 30 s); then it is answered `408 Request Timeout` and the connection closed.
    pub request_timeout: Duration,
    /// How long a graceful shutdown waits for requests in progress (default 10 s).
    pub shutdown_grace: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ListenerConfig {
    /// Sets [`max_connections`](Self::max_connections) (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }
    /// Sets [`header_read_timeout`](Self::header_read_timeout).
    pub fn header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }
    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// Sets [`shutdown_grace`](Self::shutdown_grace).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = d;
        self
    }
}

/// `app` with a deadline: an answer not ready in time is `408` with `Connection: close`.
async fn with_deadline(app: Router, deadline: Duration, req: Request) -> Response {
    match tokio::time::timeout(deadline, app.oneshot(req)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(never)) => match never {},
        Err(_) => (
            http::StatusCode::REQUEST_TIMEOUT,
            [(http::header::CONNECTION, "close")],
            "request timed out",
        )
            .into_response(),
    }
}

/// Serves `app` on `listener` until `shutdown` completes, within `config`'s limits (see the
/// [module docs](self)). On shutdown it stops accepting, lets requests in progress finish for
/// up to [`ListenerConfig::shutdown_grace`], and returns. Accept errors (a full file table) are
/// logged and retried after a short pause, never fatal.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ListenerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limit = config.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(limit));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: wait for connections to close instead of spinning.
                tracing::warn!(error = %e, "webhook listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit, "webhook listener: too many connections; closed one");
            drop(stream);
            continue;
        };
        let app = app.clone();
        let deadline = config.request_timeout;
        let header_timeout = config.header_read_timeout;
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        Ok::<_, Infallible>(with_deadline(app, deadline, req.map(Body::new)).await)
                    }
                });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
                    }
                }
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every slot back: every connection ended (or the grace ran out).
    let all = u32::try_from(limit).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(config.shutdown_grace, slots.acquire_many(all)).await;
    Ok(())
}
