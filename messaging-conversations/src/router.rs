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
//!    reports);
//! 6. the events are stored and the provider gets its answer ([`WebhookHandler::reply`]:
//!    SMS.ru's `100`, an empty `200` for others); a [`WebhookProcessor`] task hands them to the
//!    [`EventSink`]s (the [`Inbox`](crate::inbox::Inbox), the [`Engine`](crate::Engine)).
//!
//! ## Acknowledged means durable: the journal
//!
//! With a [`WebhookJournal`] ([`WebhookRouter::journal`]; `SqliteStore` and `PostgresStore` of
//! `messaging-store` are journals) the events of a verified call are written to it, each with
//! its dedupe key, **before** the provider hears `2xx`. Providers never resend an acknowledged
//! webhook, so this is what makes a crash right after the `200` lose nothing:
//!
//! * the answer is `2xx` only once the journal returned `Ok`; when it fails (the database is
//!   down) the answer is `503` with `Retry-After`, and the provider retries;
//! * repeats are dropped by the journal's keys, durably: a provider's retry days later, or a
//!   replay after a restart, is not processed twice (keys are kept for
//!   [`retention`](WebhookRouter::retention), 8 days by default: Meta retries for 7);
//! * the processor claims pending entries from the journal (woken after each call, and every
//!   [`poll_interval`](WebhookRouter::poll_interval) for entries left by a crash or recorded by
//!   another instance), hands each to the sinks and marks it processed. A sink error puts the
//!   entry back for a retry with exponential backoff; after
//!   [`max_attempts`](WebhookRouter::max_attempts) it is marked failed in the journal, with the
//!   error, and logged at `error` level. Processing is at least once: an entry whose sinks ran
//!   just before a crash, before it was marked, is handed to them again after the restart.
//!   By default one entry is in the sinks at a time and is marked before the next starts (a
//!   crash hands at most that one over again); with
//!   [`process_concurrency`](WebhookRouter::process_concurrency)`(n)` up to `n` are, and the
//!   entries finished together are marked in one write, so processing keeps up with a burst
//!   of callbacks (a crash then hands up to `n` over again);
//! * a panic in a sink counts as a sink error: the entry is retried, the processor goes on.
//!
//! Without a journal the events go to a bounded in-memory queue and the answer does not wait
//! for any storage: fast, but **a crash loses every event acknowledged and not yet processed**,
//! and repeats are recognised only in bounded memory (until a restart). Use it for tests and
//! services that can afford that. In both modes, when too many events wait for processing
//! ([`queue_capacity`](WebhookRouter::queue_capacity)) the answer is `503`, so the provider
//! retries later.
//!
//! ```no_run
//! use std::sync::Arc;
//! use messaging_conversations::inbox::Inbox;
//! use messaging_conversations::router::WebhookRouter;
//! # use messaging_core::webhook::WebhookHandler;
//! # use messaging_core::journal::WebhookJournal;
//! # async fn demo(
//! #     inbox: Inbox,
//! #     store: Arc<dyn WebhookJournal>,
//! #     telegram: Arc<dyn WebhookHandler>,
//! #     waba: Arc<dyn WebhookHandler>,
//! # ) -> std::io::Result<()> {
//! let (app, _processing) = WebhookRouter::new()
//!     .public_base_url("https://clinic.example")
//!     .mount("/webhooks/telegram", telegram)
//!     .mount("/webhooks/waba", waba)
//!     .journal(store) // e.g. Arc::new(sqlite_store.clone())
//!     .sink(Arc::new(inbox))
//!     .spawn()
//!     .expect("valid mount paths");
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tower_http::limit::RequestBodyLimitLayer;

use crate::inbox::RecentSet;
use chrono::Utc;
use messaging_core::journal::{JournalEntry, JournalId, JournalRecord, WebhookJournal};
use messaging_core::sink::{EventSink, SinkError, Sinks};
use messaging_core::webhook::{WebhookError, WebhookHandler, WebhookReply, WebhookRequest};
use messaging_core::{Event, StoreError};

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
    /// A handler that cannot tell the provider's calls from forged ones (it
    /// [`authenticates`](WebhookHandler::authenticates) nothing) was mounted with
    /// [`WebhookRouter::mount`]; use [`WebhookRouter::mount_unsigned`].
    #[error(
        "{provider} webhooks are not signed: mount {path:?} under a secret path or behind an allow-list (mount_unsigned)"
    )]
    Unguarded {
        /// The path.
        path: String,
        /// The handler's provider.
        provider: &'static str,
    },
    /// A secret path segment shorter than 16 characters or with characters other than
    /// `A-Z a-z 0-9 - _` (the secret itself is not repeated here).
    #[error("the secret path segment under {0:?} must be at least 16 of A-Z a-z 0-9 - _")]
    WeakSecret(String),
}

/// How a handler that authenticates nothing (SMS.ru, SMSC and SMS Aero delivery reports) is
/// kept from forged calls. See [`WebhookRouter::mount_unsigned`].
#[derive(Clone)]
#[non_exhaustive]
pub enum UnsignedGuard {
    /// Served at `{path}/{secret}`: only who knows the URL (the provider you registered it
    /// with) can call it. At least 16 of `A-Z a-z 0-9 - _`; generate it, keep it out of logs.
    SecretPath(String),
    /// Served at `path` as it is: you restrict who can reach it (an allow-list of the
    /// provider's addresses in your proxy or firewall); the router takes your word for it.
    AllowList,
}

impl fmt::Debug for UnsignedGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsignedGuard::SecretPath(_) => f.write_str("SecretPath([redacted])"),
            UnsignedGuard::AllowList => f.write_str("AllowList"),
        }
    }
}

/// One handler and where it is served.
struct MountSpec {
    /// The path as the user gave it (without a secret segment).
    path: String,
    handler: Arc<dyn WebhookHandler>,
    guard: Option<UnsignedGuard>,
}

impl MountSpec {
    /// The path the route is served at.
    fn served_at(&self) -> String {
        match &self.guard {
            Some(UnsignedGuard::SecretPath(s)) => {
                format!("{}/{s}", self.path.trim_end_matches('/'))
            }
            _ => self.path.clone(),
        }
    }
    /// The path as it may be shown (`Debug`, errors): the secret replaced.
    fn shown(&self) -> String {
        match &self.guard {
            Some(UnsignedGuard::SecretPath(_)) => {
                format!("{}/[secret]", self.path.trim_end_matches('/'))
            }
            _ => self.path.clone(),
        }
    }
}

/// Builds the webhook router. See the [module docs](crate::router).
pub struct WebhookRouter {
    mounts: Vec<MountSpec>,
    public_base_url: Option<String>,
    sinks: Sinks,
    /// `None`: the mode's default.
    queue_capacity: Option<usize>,
    dedupe_capacity: usize,
    journal: Option<Arc<dyn WebhookJournal>>,
    settings: JournalSettings,
}

/// How the processor works a journal.
#[derive(Clone, Copy, Debug)]
struct JournalSettings {
    max_attempts: u32,
    retry_delay: Duration,
    poll_interval: Duration,
    lease: Duration,
    retention: Duration,
    claim_batch: usize,
    concurrency: usize,
}

impl Default for JournalSettings {
    fn default() -> Self {
        JournalSettings {
            max_attempts: 10,
            retry_delay: Duration::from_secs(1),
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(8 * 24 * 3600),
            claim_batch: 32,
            concurrency: 1,
        }
    }
}

/// Webhook calls the in-memory queue holds by default.
const QUEUE_CAPACITY: usize = 1024;
/// Journal entries that may wait for processing by default: on disk, a few hundred bytes each.
const JOURNAL_BACKLOG: usize = 100_000;

/// The longest wait between two attempts of one entry.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);
/// How often ended journal entries older than the retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// The most entries one purge statement deletes.
const PURGE_BATCH: usize = 10_000;

impl fmt::Debug for WebhookRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRouter")
            .field(
                "mounts",
                &self
                    .mounts
                    .iter()
                    .map(|m| (m.shown(), m.handler.provider()))
                    .collect::<Vec<_>>(),
            )
            .field("public_base_url", &self.public_base_url)
            .field("sinks", &self.sinks.len())
            .field("queue_capacity", &self.queue_capacity)
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

impl Default for WebhookRouter {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookRouter {
    /// A router with nothing mounted, no journal (events queued in memory), a queue of 1024
    /// (100 000 events with a journal) and 100 000 remembered deliveries.
    pub fn new() -> Self {
        WebhookRouter {
            mounts: Vec::new(),
            public_base_url: None,
            sinks: Sinks::new(),
            queue_capacity: None,
            dedupe_capacity: 100_000,
            journal: None,
            settings: JournalSettings::default(),
        }
    }

    /// Serves `handler` under `path` (`"/webhooks/waba"`): any method, so GET handshakes and
    /// POST deliveries alike. A handler that authenticates nothing is refused at
    /// [`build`](Self::build): mount it with [`mount_unsigned`](Self::mount_unsigned).
    pub fn mount(mut self, path: impl Into<String>, handler: Arc<dyn WebhookHandler>) -> Self {
        self.mounts.push(MountSpec {
            path: path.into(),
            handler,
            guard: None,
        });
        self
    }

    /// Serves a handler that cannot tell the provider's calls from forged ones (SMS.ru, SMSC
    /// and SMS Aero sign nothing: anyone who finds the URL could post a "delivered") behind
    /// `guard`: under a secret path segment, or behind an allow-list you enforce.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use messaging_conversations::router::{UnsignedGuard, WebhookRouter};
    /// # use messaging_core::webhook::WebhookHandler;
    /// # fn demo(smsru: Arc<dyn WebhookHandler>) {
    /// // Register https://clinic.example/webhooks/smsru/<secret> at SMS.ru.
    /// let secret = std::env::var("SMS_WEBHOOK_SECRET").expect("a generated secret");
    /// let router = WebhookRouter::new()
    ///     .mount_unsigned("/webhooks/smsru", smsru, UnsignedGuard::SecretPath(secret));
    /// # }
    /// ```
    pub fn mount_unsigned(
        mut self,
        path: impl Into<String>,
        handler: Arc<dyn WebhookHandler>,
        guard: UnsignedGuard,
    ) -> Self {
        self.mounts.push(MountSpec {
            path: path.into(),
            handler,
            guard: Some(guard),
        });
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

    /// Writes every verified event to `journal` before answering the provider, and processes
    /// events from there: nothing acknowledged is lost in a crash, and repeats are dropped
    /// durably. Give the store the engine uses (`SqliteStore` writes the journal in the same
    /// group commits as the engine). See [Acknowledged means durable](crate::router#acknowledged-means-durable-the-journal).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use messaging_conversations::router::WebhookRouter;
    /// use messaging_core::journal::MemoryWebhookJournal;
    /// let router = WebhookRouter::new().journal(Arc::new(MemoryWebhookJournal::new()));
    /// # let _ = router;
    /// ```
    pub fn journal(mut self, journal: Arc<dyn WebhookJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// How many events may wait for processing: without a journal, accepted webhook calls in
    /// the in-memory queue (default 1024); with one, events this process recorded and has not
    /// finished (default 100 000: they wait on disk, not in memory, so a burst such as the
    /// status callbacks of a campaign is taken in full and worked off). Past it the provider
    /// gets `503` and retries.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = Some(n.max(1));
        self
    }

    /// How many delivery hashes and event keys are remembered in memory to drop repeats
    /// (default 100 000). With a journal this only spares it work: its keys decide.
    pub fn dedupe_capacity(mut self, n: usize) -> Self {
        self.dedupe_capacity = n;
        self
    }

    /// With a journal: how many times an event is handed to the sinks before it is marked
    /// failed (default 10, at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.settings.max_attempts = n.max(1);
        self
    }

    /// With a journal: the wait before the second attempt of an event whose sink failed
    /// (default 1 s); it doubles with every attempt, up to 10 minutes.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.settings.retry_delay = delay;
        self
    }

    /// With a journal: how often it is read for events no call woke the processor for
    /// (left by a crash, recorded by another instance, due for a retry). Default 1 s.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.settings.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// With a journal: how long a claimed event is reserved for this processor (default 60 s).
    /// An event this long in the sinks may be claimed by another instance too; events a crashed
    /// process had claimed are processed again this long after it died.
    pub fn claim_lease(mut self, lease: Duration) -> Self {
        self.settings.lease = lease;
        self
    }

    /// With a journal: how many events are handed to the sinks at once (default 1, at least 1).
    ///
    /// With 1, events are handed over one at a time, oldest first, and each is marked
    /// processed before the next one starts: a crash hands at most one event to the sinks
    /// again. With `n`, up to `n` events are in the sinks or waiting to be marked at once, in
    /// no particular order between them, and the events whose sinks returned together are
    /// marked processed in one write: the sinks keep up with a burst (one store commit serves
    /// many events) and a crash hands at most `n` events to them again. Sinks must then accept
    /// events concurrently and out of order, as the [`Inbox`](crate::inbox::Inbox) and the
    /// engine do (providers send them out of order anyway).
    ///
    /// ```
    /// use messaging_conversations::router::WebhookRouter;
    /// let router = WebhookRouter::new().process_concurrency(64);
    /// # let _ = router;
    /// ```
    pub fn process_concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n.max(1);
        self
    }

    /// With a journal: how long processed and failed events (and so their dedupe keys) are
    /// kept (default 8 days: longer than any provider retries, Meta's 7 days included).
    pub fn retention(mut self, keep: Duration) -> Self {
        self.settings.retention = keep;
        self
    }

    /// The axum router and the processor that must run for events to be handled.
    pub fn build(self) -> Result<(Router, WebhookProcessor), RouterError> {
        let mut seen_paths = std::collections::HashSet::new();
        for m in &self.mounts {
            let p = &m.path;
            if !p.starts_with('/') || p.contains(['{', '}', '*']) {
                return Err(RouterError::InvalidPath(m.shown()));
            }
            match &m.guard {
                None if !m.handler.authenticates() => {
                    return Err(RouterError::Unguarded {
                        path: p.clone(),
                        provider: m.handler.provider(),
                    });
                }
                Some(UnsignedGuard::SecretPath(s))
                    if s.len() < 16
                        || !s
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) =>
                {
                    return Err(RouterError::WeakSecret(p.clone()));
                }
                _ => {}
            }
            if !seen_paths.insert(m.served_at()) {
                return Err(RouterError::DuplicatePath(m.shown()));
            }
        }
        let seen = Arc::new(Mutex::new(RecentSet::new(self.dedupe_capacity)));
        let (intake, source) = match self.journal {
            None => {
                let (tx, rx) = mpsc::channel(self.queue_capacity.unwrap_or(QUEUE_CAPACITY));
                (Intake::Queue(tx), Source::Queue(rx))
            }
            Some(journal) => {
                // A wake-up is one slot: a call while the processor works leaves it set.
                let (wake, woken) = mpsc::channel(1);
                let backlog = Arc::new(AtomicUsize::new(0));
                (
                    Intake::Journal {
                        journal: journal.clone(),
                        wake,
                        backlog: backlog.clone(),
                        capacity: self.queue_capacity.unwrap_or(JOURNAL_BACKLOG),
                    },
                    Source::Journal {
                        journal,
                        woken,
                        backlog,
                        settings: self.settings,
                    },
                )
            }
        };
        let mut router = Router::new();
        for spec in self.mounts {
            let path = spec.served_at();
            let handler = spec.handler;
            let limit = handler.max_body();
            let mount = Arc::new(Mount {
                path: path.clone(),
                handler,
                public_base_url: self.public_base_url.clone(),
                intake: intake.clone(),
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
                source,
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

/// Hands webhook events to the sinks: from the in-memory queue, or claimed from the journal.
/// Runs until every router clone is dropped (with a journal, after working off what is due).
pub struct WebhookProcessor {
    source: Source,
    sinks: Sinks,
}

enum Source {
    Queue(mpsc::Receiver<Vec<Event>>),
    Journal {
        journal: Arc<dyn WebhookJournal>,
        woken: mpsc::Receiver<()>,
        backlog: Arc<AtomicUsize>,
        settings: JournalSettings,
    },
}

impl fmt::Debug for WebhookProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("WebhookProcessor");
        d.field("sinks", &self.sinks);
        if let Source::Journal { journal, .. } = &self.source {
            d.field("journal", journal);
        }
        d.finish_non_exhaustive()
    }
}

impl WebhookProcessor {
    /// Processes events until the router is gone: queued batches in arrival order, or journal
    /// entries oldest first.
    pub async fn run(self) {
        match self.source {
            Source::Queue(mut rx) => {
                while let Some(batch) = rx.recv().await {
                    for event in &batch {
                        // `Sinks` hands the event to every sink and logs each failure.
                        let _ = self.sinks.handle(event).await;
                    }
                }
            }
            Source::Journal {
                journal,
                mut woken,
                backlog,
                settings,
            } => {
                let worker = JournalWorker {
                    journal,
                    backlog,
                    settings,
                    sinks: Arc::new(self.sinks),
                };
                worker.run(&mut woken).await;
            }
        }
    }
}

struct JournalWorker {
    journal: Arc<dyn WebhookJournal>,
    backlog: Arc<AtomicUsize>,
    settings: JournalSettings,
    sinks: Arc<Sinks>,
}

/// What a sink task hands back: the entry and what its sinks said.
type Handled = (JournalEntry, Result<(), SinkError>);

/// A completion write in flight, with its entries.
type Completing = (Vec<JournalId>, JoinHandle<Result<(), StoreError>>);
/// A claim in flight, with the number it asked for.
type Claiming = (usize, JoinHandle<Result<Vec<JournalEntry>, StoreError>>);

/// The processor's work in progress.
#[derive(Default)]
struct Pipeline {
    /// Claimed, not yet handed to the sinks (oldest first).
    queue: VecDeque<JournalEntry>,
    /// Entries in their sinks, one task each.
    handling: JoinSet<Handled>,
    /// The entry of each sink task, to name it if the task panics.
    tasks: HashMap<tokio::task::Id, (JournalId, u32)>,
    /// Handled, waiting for the next completion write.
    handled: Vec<JournalId>,
    /// The completion write in flight, with its entries.
    completing: Option<Completing>,
    /// The claim in flight, with the number it asked for.
    claiming: Option<Claiming>,
    /// The last claim found fewer entries than it asked for: claim again when woken or polled.
    drained: bool,
}

impl Pipeline {
    /// Entries handed to the sinks and not yet durably completed: what a crash now could hand
    /// to the sinks again.
    fn in_flight(&self) -> usize {
        self.handling.len() + self.handled.len() + self.completing.as_ref().map_or(0, |c| c.0.len())
    }

    fn idle(&self) -> bool {
        self.queue.is_empty()
            && self.handling.is_empty()
            && self.handled.is_empty()
            && self.completing.is_none()
            && self.claiming.is_none()
    }
}

/// The spawned journal call in `slot`, awaited; never ready when there is none.
async fn joined<T, R>(slot: &mut Option<(T, JoinHandle<R>)>) -> Result<R, tokio::task::JoinError> {
    match slot {
        Some((_, handle)) => handle.await,
        None => std::future::pending().await,
    }
}

/// What woke the processor.
enum Step {
    Handled(Box<Result<(tokio::task::Id, Handled), tokio::task::JoinError>>),
    Claimed(Result<Result<Vec<JournalEntry>, StoreError>, tokio::task::JoinError>),
    Completed(Result<Result<(), StoreError>, tokio::task::JoinError>),
    Woken(bool),
}

impl JournalWorker {
    /// Claims, hands to the sinks and completes in a pipeline: up to `concurrency` entries are
    /// in their sinks or waiting for their completion at once; the entries whose sinks returned
    /// while a completion was being written are completed together in the next one. With a
    /// concurrency of 1 each entry is completed before the next is handed to the sinks.
    async fn run(&self, woken: &mut mpsc::Receiver<()>) {
        let s = self.settings;
        let mut p = Pipeline::default();
        let mut closed = false;
        let mut next_purge = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_purge {
                self.purge().await;
                next_purge = tokio::time::Instant::now() + PURGE_EVERY;
            }
            // Claim ahead while the sinks work, so they never wait for a claim under load.
            if p.claiming.is_none() && !p.drained && p.queue.len() < s.concurrency {
                let limit = s.claim_batch.max(s.concurrency);
                let journal = self.journal.clone();
                let lease = s.lease;
                p.claiming = Some((
                    limit,
                    tokio::spawn(async move { journal.claim(Utc::now(), limit, lease).await }),
                ));
            }
            while p.in_flight() < s.concurrency
                && let Some(entry) = p.queue.pop_front()
            {
                let sinks = self.sinks.clone();
                let (id, attempts) = (entry.id, entry.attempts);
                let task = p.handling.spawn(async move {
                    let result = sinks.handle(&entry.event).await;
                    (entry, result)
                });
                p.tasks.insert(task.id(), (id, attempts));
            }
            if p.completing.is_none() && !p.handled.is_empty() {
                let ids = std::mem::take(&mut p.handled);
                let journal = self.journal.clone();
                let written = ids.clone();
                p.completing = Some((
                    ids,
                    tokio::spawn(async move { journal.complete(&written, Utc::now()).await }),
                ));
            }
            if p.idle() {
                if closed {
                    return;
                }
                tokio::select! {
                    w = woken.recv() => closed = w.is_none(),
                    () = tokio::time::sleep(s.poll_interval) => {}
                }
                p.drained = false;
                continue;
            }
            let step = tokio::select! {
                Some(h) = p.handling.join_next_with_id() => Step::Handled(Box::new(h)),
                c = joined(&mut p.claiming) => Step::Claimed(c),
                c = joined(&mut p.completing) => Step::Completed(c),
                w = woken.recv(), if !closed => Step::Woken(w.is_some()),
            };
            match step {
                Step::Handled(h) => self.handled(&mut p, *h).await,
                Step::Claimed(c) => {
                    let limit = p.claiming.take().map_or(0, |c| c.0);
                    match c.map_err(StoreError::backend).and_then(|r| r) {
                        Ok(entries) => {
                            p.drained = entries.len() < limit;
                            p.queue.extend(entries);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "webhook journal: cannot claim events; retrying");
                            p.drained = true;
                            if !closed {
                                tokio::time::sleep(s.poll_interval.min(Duration::from_secs(1)))
                                    .await;
                            }
                        }
                    }
                }
                Step::Completed(c) => {
                    let ids = p.completing.take().map(|c| c.0).unwrap_or_default();
                    match c.map_err(StoreError::backend).and_then(|r| r) {
                        Ok(()) => self.ended(ids.len()),
                        Err(e) => {
                            // The sinks ran; the entries come back after their lease (at least
                            // once).
                            tracing::warn!(entries = ids.len(), first = ?ids.first().map(|i| i.get()), error = %e, "webhook journal: cannot mark events processed; they will be handed to the sinks again");
                        }
                    }
                }
                Step::Woken(open) => {
                    closed = !open;
                    p.drained = false;
                }
            }
        }
    }

    /// A sink task ended: its entry waits for completion, or goes back for a retry, or fails.
    async fn handled(
        &self,
        p: &mut Pipeline,
        h: Result<(tokio::task::Id, Handled), tokio::task::JoinError>,
    ) {
        let (id, attempts, result, event) = match h {
            Ok((task, (entry, result))) => {
                p.tasks.remove(&task);
                (entry.id, entry.attempts, result, Some(entry.event))
            }
            Err(e) => {
                let Some((id, attempts)) = p.tasks.remove(&e.id()) else {
                    return;
                };
                let why = if e.is_panic() {
                    "a sink panicked"
                } else {
                    "a sink was cancelled"
                };
                (id, attempts, Err(SinkError::from(why.to_owned())), None)
            }
        };
        let now = Utc::now();
        match result {
            Ok(()) => p.handled.push(id),
            Err(e) if attempts >= self.settings.max_attempts => {
                let reason = e.to_string();
                tracing::error!(
                    entry = %id,
                    attempts,
                    event = ?event,
                    error = %reason,
                    "webhook journal: giving up on an event its sinks keep refusing; kept as failed"
                );
                if let Err(e) = self.journal.fail(id, now, &reason).await {
                    tracing::warn!(entry = %id, error = %e, "webhook journal: cannot mark an event failed");
                }
                self.ended(1);
            }
            Err(e) => {
                let delay = backoff(self.settings.retry_delay, attempts);
                let at = chrono::Duration::from_std(delay)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .unwrap_or(now);
                tracing::warn!(entry = %id, attempts, retry_in = ?delay, error = %e, "webhook journal: a sink failed; retrying the event later");
                if let Err(e) = self.journal.retry(id, at, &e.to_string()).await {
                    tracing::warn!(entry = %id, error = %e, "webhook journal: cannot schedule a retry; the event comes back after its lease");
                }
            }
        }
    }

    /// `n` entries left the backlog.
    fn ended(&self, n: usize) {
        // Saturating: entries recorded by another process or run were never counted here.
        let _ = self
            .backlog
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(n))
            });
    }

    async fn purge(&self) {
        let Some(before) = chrono::Duration::from_std(self.settings.retention)
            .ok()
            .and_then(|d| Utc::now().checked_sub_signed(d))
        else {
            return;
        };
        loop {
            match self.journal.purge(before, PURGE_BATCH).await {
                Ok(n) if n >= PURGE_BATCH => {}
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook journal: cannot purge old events");
                    return;
                }
            }
        }
    }
}

/// The wait before attempt `attempts + 1`: `first`, doubling, at most [`MAX_RETRY_DELAY`].
fn backoff(first: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    first.saturating_mul(1u32 << doublings).min(MAX_RETRY_DELAY)
}

/// Where a mount puts verified events.
#[derive(Clone)]
enum Intake {
    Queue(mpsc::Sender<Vec<Event>>),
    Journal {
        journal: Arc<dyn WebhookJournal>,
        wake: mpsc::Sender<()>,
        backlog: Arc<AtomicUsize>,
        capacity: usize,
    },
}

struct Mount {
    path: String,
    handler: Arc<dyn WebhookHandler>,
    public_base_url: Option<String>,
    intake: Intake,
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

    fn seen(&self) -> std::sync::MutexGuard<'_, RecentSet> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
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

/// `503` with `Retry-After`: the provider keeps the webhook and calls again.
fn retry_later() -> Response {
    let mut resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        Body::from("busy, retry later"),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    resp
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
    match &mount.intake {
        Intake::Queue(queue) => enqueue(&mount, queue, provider, body_key, events),
        Intake::Journal {
            journal,
            wake,
            backlog,
            capacity,
        } => {
            let intake = JournalIntake {
                journal: journal.as_ref(),
                wake,
                backlog,
                capacity: *capacity,
            };
            intake.record(&mount, provider, body_key, events).await
        }
    }
}

/// Without a journal: remembered in memory, queued in memory.
fn enqueue(
    mount: &Mount,
    queue: &mpsc::Sender<Vec<Event>>,
    provider: &'static str,
    body_key: String,
    events: Vec<Event>,
) -> Response {
    let handler = &mount.handler;
    let (fresh, keys) = {
        let mut seen = mount.seen();
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
    if queue.try_send(fresh).is_err() {
        // Not accepted: forget it so the provider's retry is processed.
        let mut seen = mount.seen();
        for k in &keys {
            seen.remove(k);
        }
        tracing::warn!(provider, "webhook queue full; asking the provider to retry");
        return retry_later();
    }
    reply_response(handler.reply())
}

struct JournalIntake<'a> {
    journal: &'a dyn WebhookJournal,
    wake: &'a mpsc::Sender<()>,
    backlog: &'a AtomicUsize,
    capacity: usize,
}

impl JournalIntake<'_> {
    /// With a journal: durable before the answer. Memory only caches keys already durable.
    async fn record(
        &self,
        mount: &Mount,
        provider: &'static str,
        body_key: String,
        events: Vec<Event>,
    ) -> Response {
        let handler = &mount.handler;
        let records: Vec<JournalRecord> = {
            let seen = mount.seen();
            if seen.contains(&body_key) {
                return reply_response(handler.reply());
            }
            events
                .into_iter()
                .enumerate()
                .map(|(i, event)| {
                    // An event without a provider id is recognised in a replay of its body.
                    let key =
                        event_key(provider, &event).unwrap_or_else(|| format!("{body_key}|{i}"));
                    JournalRecord::new(event).key(key)
                })
                .filter(|r| r.key.as_deref().is_none_or(|k| !seen.contains(k)))
                .collect()
        };
        if !records.is_empty() {
            if self.backlog.load(Ordering::Relaxed) >= self.capacity {
                tracing::warn!(
                    provider,
                    "webhook backlog full; asking the provider to retry"
                );
                return retry_later();
            }
            let fresh = match self.journal.record(&records, Utc::now()).await {
                Ok(fresh) => fresh.into_iter().filter(|f| *f).count(),
                Err(e) => {
                    tracing::warn!(provider, error = %e, "cannot record a webhook; asking the provider to retry");
                    return retry_later();
                }
            };
            if fresh > 0 {
                self.backlog.fetch_add(fresh, Ordering::Relaxed);
                // Full means a wake-up is already pending; closed means no processor.
                let _ = self.wake.try_send(());
            }
        }
        let mut seen = mount.seen();
        seen.insert(body_key);
        for k in records.into_iter().filter_map(|r| r.key) {
            seen.insert(k);
        }
        reply_response(handler.reply())
    }
}
