//! One axum router for the webhooks of every provider (cargo feature `axum`).
//!
//! Each [`WebhookHandler`] is mounted under a path; the router serves them all alike:
//!
//! 1. bodies larger than the handler's [`max_body`](WebhookHandler::max_body) get `413`
//!    (tower-http `RequestBodyLimit`) before anything is read;
//! 2. a handshake (Meta's `GET ?hub.challenge=...`) is answered by the handler;
//! 3. the signature is verified over the raw body with the full URL the provider called
//!    (Twilio signs it: set [`WebhookRouter::public_base_url`] behind a proxy): `401`/`403`
//!    ([`WebhookError::http_status`]) and nothing is processed;
//! 4. the body is parsed: `400` for a malformed one, nothing processed;
//! 5. a repeated delivery (providers retry for days) is dropped: by a hash of provider and raw
//!    body, and per event by provider message id (inbound) or (message id, status) (delivery
//!    reports), in bounded memory;
//! 6. the events are queued to a bounded channel, and the provider gets its answer
//!    ([`WebhookHandler::reply`]: SMS.ru's `100`, an empty `200` for others) at once; a
//!    [`WebhookProcessor`] task hands them to the [`EventSink`]s (the [`Inbox`](crate::inbox::Inbox),
//!    the [`Engine`](crate::Engine)). When the queue is full the answer is `503`, so the
//!    provider retries later.
//!
//! ```no_run
//! use std::sync::Arc;
//! use messaging_conversations::inbox::Inbox;
//! use messaging_conversations::router::WebhookRouter;
//! # use messaging_core::webhook::WebhookHandler;
//! # async fn demo(inbox: Inbox, telegram: Arc<dyn WebhookHandler>, waba: Arc<dyn WebhookHandler>) -> std::io::Result<()> {
//! let (app, _processing) = WebhookRouter::new()
//!     .public_base_url("https://clinic.example")
//!     .mount("/webhooks/telegram", telegram)
//!     .mount("/webhooks/waba", waba)
//!     .sink(Arc::new(inbox))
//!     .spawn()
//!     .expect("valid mount paths");
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tower_http::limit::RequestBodyLimitLayer;

use crate::inbox::RecentSet;
use messaging_core::Event;
use messaging_core::sink::{EventSink, Sinks};
use messaging_core::webhook::{WebhookError, WebhookHandler, WebhookReply, WebhookRequest};

/// Why a router could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// A mount path must start with `/` and have no `{`, `}` or `*`.
    #[error("invalid mount path {0:?}")]
    InvalidPath(String),
    /// Two handlers under one path.
    #[error("path {0:?} is mounted twice")]
    DuplicatePath(String),
}

/// Builds the webhook router. See the [module docs](crate::router).
pub struct WebhookRouter {
    mounts: Vec<(String, Arc<dyn WebhookHandler>)>,
    public_base_url: Option<String>,
    sinks: Sinks,
    queue_capacity: usize,
    dedupe_capacity: usize,
}

impl fmt::Debug for WebhookRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRouter")
            .field(
                "mounts",
                &self
                    .mounts
                    .iter()
                    .map(|(p, h)| (p.as_str(), h.provider()))
                    .collect::<Vec<_>>(),
            )
            .field("public_base_url", &self.public_base_url)
            .field("sinks", &self.sinks.len())
            .field("queue_capacity", &self.queue_capacity)
            .finish()
    }
}

impl Default for WebhookRouter {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookRouter {
    /// A router with nothing mounted, a queue of 1024 batches and 100 000 remembered deliveries.
    pub fn new() -> Self {
        WebhookRouter {
            mounts: Vec::new(),
            public_base_url: None,
            sinks: Sinks::new(),
            queue_capacity: 1024,
            dedupe_capacity: 100_000,
        }
    }

    /// Serves `handler` under `path` (`"/webhooks/waba"`): any method, so GET handshakes and
    /// POST deliveries alike.
    pub fn mount(mut self, path: impl Into<String>, handler: Arc<dyn WebhookHandler>) -> Self {
        self.mounts.push((path.into(), handler));
        self
    }

    /// The public URL of this server as providers call it (`https://clinic.example`, with any
    /// prefix a proxy adds). The full URL handed to handlers is this plus the request's path and
    /// query; without it, `http://<Host header><path>` is used, which Twilio's signature check
    /// will fail behind a TLS-terminating proxy.
    pub fn public_base_url(mut self, url: impl Into<String>) -> Self {
        self.public_base_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Hands every event to this sink, in the order sinks were added. Give the
    /// [`Inbox`](crate::inbox::Inbox) (it forwards every event to its engine), or the engine
    /// alone when there is no inbox.
    pub fn sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// How many accepted webhook calls may wait for processing (default 1024); past it the
    /// provider gets `503` and retries.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }

    /// How many delivery hashes and event keys are remembered to drop repeats (default 100 000).
    pub fn dedupe_capacity(mut self, n: usize) -> Self {
        self.dedupe_capacity = n;
        self
    }

    /// The axum router and the processor that must run for events to be handled.
    pub fn build(self) -> Result<(Router, WebhookProcessor), RouterError> {
        let mut seen_paths = std::collections::HashSet::new();
        for (p, _) in &self.mounts {
            if !p.starts_with('/') || p.contains(['{', '}', '*']) {
                return Err(RouterError::InvalidPath(p.clone()));
            }
            if !seen_paths.insert(p.clone()) {
                return Err(RouterError::DuplicatePath(p.clone()));
            }
        }
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let seen = Arc::new(Mutex::new(RecentSet::new(self.dedupe_capacity)));
        let mut router = Router::new();
        for (path, handler) in self.mounts {
            let limit = handler.max_body();
            let mount = Arc::new(Mount {
                path: path.clone(),
                handler,
                public_base_url: self.public_base_url.clone(),
                queue: tx.clone(),
                seen: seen.clone(),
            });
            let route = Router::new()
                .route(&path, any(serve))
                .with_state(mount)
                // The tower-http limit answers 413 by Content-Length before the body is read and
                // while streaming; axum's own 2 MB default would override larger handler limits.
                .layer(DefaultBodyLimit::disable())
                .layer(RequestBodyLimitLayer::new(limit));
            router = router.merge(route);
        }
        Ok((
            router,
            WebhookProcessor {
                rx,
                sinks: self.sinks,
            },
        ))
    }

    /// [`build`](Self::build), with the processor spawned on the current tokio runtime.
    pub fn spawn(self) -> Result<(Router, tokio::task::JoinHandle<()>), RouterError> {
        let (router, processor) = self.build()?;
        Ok((router, tokio::spawn(processor.run())))
    }
}

/// Hands queued webhook events to the sinks. Runs until every router clone is dropped.
pub struct WebhookProcessor {
    rx: mpsc::Receiver<Vec<Event>>,
    sinks: Sinks,
}

impl fmt::Debug for WebhookProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookProcessor")
            .field("sinks", &self.sinks)
            .finish_non_exhaustive()
    }
}

impl WebhookProcessor {
    /// Processes batches in arrival order until the router is gone.
    pub async fn run(mut self) {
        while let Some(batch) = self.rx.recv().await {
            for event in &batch {
                // `Sinks` hands the event to every sink and logs each failure.
                let _ = self.sinks.handle(event).await;
            }
        }
    }
}

struct Mount {
    path: String,
    handler: Arc<dyn WebhookHandler>,
    public_base_url: Option<String>,
    queue: mpsc::Sender<Vec<Event>>,
    seen: Arc<Mutex<RecentSet>>,
}

impl Mount {
    fn full_url(&self, uri: &Uri, headers: &HeaderMap) -> String {
        let pq = uri
            .path_and_query()
            .map_or(self.path.as_str(), |p| p.as_str());
        match &self.public_base_url {
            Some(base) => format!("{base}{pq}"),
            None => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost");
                format!("http://{host}{pq}")
            }
        }
    }
}

fn reply_response(reply: WebhookReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let mut resp = (status, reply.body).into_response();
    if let Ok(ct) = HeaderValue::from_str(reply.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

fn error_response(e: &WebhookError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    // The error text names headers and reasons, never secrets.
    (status, e.to_string()).into_response()
}

/// The key that makes a repeated event recognisable, if it has one.
fn event_key(provider: &str, event: &Event) -> Option<String> {
    match event {
        Event::Inbound(m) => {
            let id = m.provider_message_id.as_ref()?;
            let channel = m
                .channel_id
                .as_ref()
                .map_or_else(|| m.channel.to_string(), ToString::to_string);
            Some(format!("in|{provider}|{channel}|{id}"))
        }
        Event::Delivery(d) => Some(format!(
            "dlr|{provider}|{}|{:?}",
            d.provider_message_id, d.status
        )),
        _ => None,
    }
}

async fn serve(
    State(mount): State<Arc<Mount>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url = mount.full_url(&uri, &headers);
    let request = WebhookRequest {
        method: &method,
        url: Some(&url),
        headers: &headers,
        body: &body,
    };
    let handler = &mount.handler;
    if let Some(answer) = handler.handshake(&request) {
        return match answer {
            Ok(reply) => reply_response(reply),
            Err(e) => error_response(&e),
        };
    }
    let events = match handler.verify_and_parse(&request) {
        Ok(events) => events,
        Err(e) => {
            tracing::info!(provider = handler.provider(), status = e.http_status(), error = %e, "webhook refused");
            return error_response(&e);
        }
    };

    let provider = handler.provider();
    let body_key = {
        let mut h = Sha256::new();
        h.update(provider.as_bytes());
        h.update([0]);
        h.update(mount.path.as_bytes());
        h.update([0]);
        h.update(&body);
        format!("body|{}", hex::encode(h.finalize()))
    };
    let (fresh, keys) = {
        let mut seen = mount.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.insert(body_key.clone()) {
            return reply_response(handler.reply());
        }
        let mut keys = vec![body_key];
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
            match event_key(provider, &event) {
                Some(k) if !seen.insert(k.clone()) => {}
                Some(k) => {
                    keys.push(k);
                    fresh.push(event);
                }
                None => fresh.push(event),
            }
        }
        (fresh, keys)
    };
    if fresh.is_empty() {
        return reply_response(handler.reply());
    }
    if mount.queue.try_send(fresh).is_err() {
        // Not accepted: forget it so the provider's retry is processed.
        let mut seen = mount.seen.lock().unwrap_or_else(|e| e.into_inner());
        for k in &keys {
            seen.remove(k);
        }
        tracing::warn!(provider, "webhook queue full; asking the provider to retry");
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            Body::from("busy, retry later"),
        )
            .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return resp;
    }
    reply_response(handler.reply())
}
