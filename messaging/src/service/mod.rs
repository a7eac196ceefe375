//! A whole notification service from configuration (cargo feature `service`).
//!
//! [`ServiceConfig`] describes the store, the webhook listener, the channels with their
//! credentials, the cascade policies, which purpose uses which policy, and limits.
//! [`Service::build`] turns it into a running service: it opens the store, builds every channel
//! adapter, the [`Engine`], an axum [`Router`] with every provider's webhook mounted (journaled to
//! the store before the provider hears `200`), and starts the background tasks (the engine's
//! timers, Telegram and Max long polling, SMS status polling, webhook event processing), each
//! supervised: a panic is logged and the task started again.
//!
//! ```no_run
//! use messaging::service::{Service, ServiceConfig};
//! use messaging::{Content, Notification, Recipient};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // messaging.toml, with secrets from MESSAGING__… variables
//! let config = ServiceConfig::load(Some("messaging.toml".as_ref()))?;
//! let mut service = Service::build(config).await?;
//! let notice = Notification::new(
//!     "appointment-1042-reminder",
//!     Recipient::with_phone("patient-7", "+79123456789")?.name("Анна"),
//!     Content::text("Анна, напоминаем о приёме завтра в 10:00. Придёте?"),
//! );
//! service.submit(notice).await?;
//! // Serve the webhooks on listener.address until Ctrl-C, then shut down gracefully...
//! service
//!     .serve(std::future::pending::<()>()) // your shutdown signal, e.g. tokio::signal::ctrl_c()
//!     .await?;
//! // ...or nest `service.router()` in your own axum app and call `service.shutdown()` at exit.
//! # Ok(()) }
//! ```
//!
//! # The configuration file
//!
//! TOML; every duration is written like `"90s"`, `"15m"`, `"1h 30m"`; unknown keys are errors,
//! and every problem is reported at once with its path (`channels.tg.token: missing`). A fully
//! commented example is `examples/messaging.example.toml` in the repository.
//!
//! ```toml
//! default_policy = "reminders"       # purposes without a route use it (default: the first)
//! regulated = false                  # true: WhatsApp and Telegram steps are always skipped
//! time_zone = "Europe/Moscow"        # for quiet hours, when a recipient has none
//!
//! [store]
//! sqlite = "messaging.sqlite"        # or postgres = "postgres://app@db/clinic" (feature postgres)
//!
//! [listener]
//! address = "0.0.0.0:8080"
//! public_url = "https://clinic.example"
//! unsigned_secret = "…"              # SMS.ru, SMSC, SMS Aero reports: /webhooks/sms/<id>/<secret>
//!
//! [channels.whatsapp]                # the channel id; steps name it
//! provider = "waba"                  # waba, 360dialog, telegram, max, smsru, smsc, smsaero, twilio
//! phone_number_id = "106540352242922"
//! token = "…"
//! app_secret = "…"
//! webhook_path = "/webhooks/waba"    # default /webhooks/<id>
//!
//! [channels.telegram]
//! provider = "telegram"
//! token = "…"
//! webhook_secret = "…"               # without it the bot uses long polling
//!
//! [channels.sms]
//! provider = "smsru"
//! api_id = "…"
//! status_poll = "30s"
//!
//! [policies.reminders]
//! quiet_hours = "21:00-09:00"
//! deadline = "20h"
//! steps = [
//!     { channel = "whatsapp", evidence = "delivered", window = "1h" },
//!     { channel = "telegram", evidence = "accepted", window = "15m" },
//!     { channel = "sms", window = "24h", retry = { attempts = 3, backoff = "5s" } },
//! ]
//!
//! [purposes]
//! service = "reminders"
//!
//! [limits]
//! max_body = 1048576
//! max_connections = 512
//! concurrency = 32
//! ```
//!
//! # Environment variables
//!
//! [`ServiceConfig::load`] reads the file, then every variable whose name starts with
//! `MESSAGING__`: the rest of the name, split at `__` and lowercased, is the key's path, and
//! the value (a string; numbers, flags and durations are parsed from it) sets or overrides it.
//! Secrets can so stay out of the file:
//!
//! ```text
//! MESSAGING__CHANNELS__TELEGRAM__TOKEN=123456:ABC…        # channels.telegram.token
//! MESSAGING__STORE__POSTGRES=postgres://app:pw@db/clinic  # store.postgres
//! MESSAGING__POLICIES__REMINDERS__STEPS__0__WINDOW=30m    # policies.reminders.steps[0].window
//! ```
//!
//! A variable can name only lowercase keys without `-` (channel and policy ids included).
//!
//! # What the service runs
//!
//! | task | what it does |
//! |---|---|
//! | engine timers | [`Engine::run`]: closes windows, retries, sends after quiet hours |
//! | webhook processor | hands journaled webhook events to the WhatsApp numbers (their 24-hour window), the engine and your sinks ([`ServiceBuilder::sink`]) |
//! | Telegram / Max polling | for bots with `receive = "polling"` (the default without a `webhook_secret`) |
//! | SMS status polling | every `status_poll`, for the SMS messages this process sent (and those you [`track`](Service::track)) until their report, the window's end or the cascade's end |
//! | the listener | [`Service::listen`] / [`Service::serve`]: the router behind a connection limit and header and request timeouts |
//!
//! Secrets never reach `Debug`, errors or logs: they are [`SecretString`]s
//! from the moment they are read.

mod build;
mod config;
mod error;
mod watch;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use messaging_cascade::engine::{Submission, SubmitError};
use messaging_cascade::shared_health::HealthBoard;
use messaging_cascade::store::CascadeStore;
use messaging_cascade::{CascadePolicy, Engine, Notification};
use messaging_conversations::listener::{self, ListenerConfig};
use messaging_conversations::router::WebhookRouter;
use messaging_core::gate::SendGate;
use messaging_core::journal::WebhookJournal;
use messaging_core::sink::{EventSink, Sinks};
use messaging_core::task::{Supervised, catch_panic, supervise};
use messaging_core::window::WindowStore;
use messaging_core::{ChannelId, ChannelKind, NotificationId, PolicyId, Purpose};
use tokio::sync::{mpsc, oneshot, watch as signal};
use tokio::task::JoinHandle;

pub use config::{
    ChannelConfig, ConfigError, ConfigProblem, ENV_PREFIX, EngineSettings, Limits,
    ListenerSettings, MaxConfig, PolicyConfig, ProviderConfig, Receive, ServiceConfig, SmsAccount,
    SmsConfig, StoreConfig, TelegramConfig, WhatsAppAccount, WhatsAppConfig,
};
pub use error::ServiceError;

/// Webhook events the service's journal processor hands to the engine and the inbox at once,
/// unless `limits.webhook_concurrency` says otherwise. Processing must keep up with intake, or
/// the backlog grows until providers get `503`: with signed status callbacks from 64
/// connections (`tests/examples/ingest.rs`), 1 at a time took 10,900/s and answered 251,849
/// calls `503`, 32 took 18,500/s with 150,096 `503`, 64 took 23,200/s with none. Both sinks take a
/// re-applied event as a repeat, so a crash re-applying up to this many is safe.
pub const DEFAULT_WEBHOOK_CONCURRENCY: usize = 64;

/// Secrets in configurations built in code (`secrecy`'s string).
pub use secrecy::SecretString;

/// Builds a [`Service`] with extras the configuration cannot name: your event sinks and send
/// gates. Start with [`Service::builder`].
pub struct ServiceBuilder {
    config: ServiceConfig,
    sinks: Vec<Arc<dyn EventSink>>,
    gates: Vec<Arc<dyn SendGate>>,
    routes: Vec<Router>,
}

impl fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("config", &self.config)
            .field("sinks", &self.sinks.len())
            .field("gates", &self.gates.len())
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl ServiceBuilder {
    /// Also hands every webhook and polled event to `sink`, after the engine (an
    /// [`Inbox`](crate::inbox::Inbox) without its own engine, an audit log, the sender
    /// governor). Do not add a sink that forwards events to this service's engine: it has them.
    pub fn sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Serves `routes` beside the webhooks, on [`Service::listen`] and in [`Service::router`]
    /// (a health check, a `/metrics` page). Their paths must not clash with the webhooks'.
    pub fn routes(mut self, routes: Router) -> Self {
        self.routes.push(routes);
        self
    }

    /// Adds a gate the engine asks before each send (the sender governor, your own checks).
    pub fn gate(mut self, gate: Arc<dyn SendGate>) -> Self {
        self.gates.push(gate);
        self
    }

    /// Builds and starts the service: see [`Service::build`].
    pub async fn build(self) -> Result<Service, ServiceError> {
        Service::start(self).await
    }
}

/// The store as the service uses it.
struct Stores {
    cascades: Arc<dyn CascadeStore>,
    windows: Arc<dyn WindowStore>,
    journal: Arc<dyn WebhookJournal>,
    board: Option<Arc<dyn HealthBoard>>,
}

async fn open_store(config: &StoreConfig) -> Result<Stores, ServiceError> {
    match config {
        StoreConfig::Sqlite { path } => {
            let store = Arc::new(messaging_store::SqliteStore::open(path).await?);
            Ok(Stores {
                cascades: store.clone(),
                windows: store.clone(),
                journal: store,
                board: None,
            })
        }
        #[cfg(feature = "postgres")]
        StoreConfig::Postgres { url, schema } => {
            let mut options = messaging_store::PostgresOptions::default();
            if let Some(s) = schema {
                options = options.schema(s.as_str());
            }
            let store = Arc::new(
                messaging_store::PostgresStore::connect_with(
                    secrecy::ExposeSecret::expose_secret(url),
                    options,
                )
                .await?,
            );
            Ok(Stores {
                cascades: store.clone(),
                windows: store.clone(),
                journal: store.clone(),
                board: Some(store),
            })
        }
        #[allow(unreachable_patterns)]
        _ => Err(ServiceError::Config(ConfigError {
            problems: vec![ConfigProblem::new(
                "store.postgres",
                "needs the cargo feature \"postgres\" of the messaging crate, which is off",
            )],
        })),
    }
}

/// The background tasks.
#[derive(Default)]
struct Tasks {
    engine: Option<Supervised<()>>,
    processor: Option<JoinHandle<()>>,
    polling: Vec<Supervised<()>>,
    statuses: Option<Supervised<()>>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Tasks {
    fn abort_all(&mut self) {
        if let Some(t) = self.engine.take() {
            t.abort();
        }
        if let Some(t) = self.processor.take() {
            t.abort();
        }
        for t in self.polling.drain(..) {
            t.abort();
        }
        if let Some(t) = self.statuses.take() {
            t.abort();
        }
        if let Some((_, t)) = self.server.take() {
            t.abort();
        }
    }
}

/// A webhook mounted on the [router](Service::router).
#[derive(Clone)]
pub struct Webhook {
    channel: ChannelId,
    provider: &'static str,
    path: String,
    secret_path: bool,
}

impl Webhook {
    /// The channel whose events it takes.
    pub fn channel(&self) -> &ChannelId {
        &self.channel
    }
    /// The provider (`"waba"`, `"telegram"`, `"smsru"`).
    pub fn provider(&self) -> &'static str {
        self.provider
    }
    /// The path it is served at, **with the secret segment** for SMS.ru, SMSC and SMS Aero:
    /// register it at the provider, keep it out of logs.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// Whether [`path`](Self::path) ends with the secret segment.
    pub fn has_secret_path(&self) -> bool {
        self.secret_path
    }
    /// The path as it may be shown: the secret segment replaced by `[secret]`.
    pub fn shown(&self) -> String {
        if self.secret_path {
            match self.path.rsplit_once('/') {
                Some((head, _)) => format!("{head}/[secret]"),
                None => "[secret]".into(),
            }
        } else {
            self.path.clone()
        }
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("channel", &self.channel)
            .field("provider", &self.provider)
            .field("path", &self.shown())
            .finish()
    }
}

/// A running notification service: the engine, the webhook router and the background tasks,
/// built from a [`ServiceConfig`]. See the [module docs](self).
///
/// Dropping it aborts the background tasks; [`shutdown`](Self::shutdown) stops them gracefully.
pub struct Service {
    engine: Engine,
    router: Option<Router>,
    policies: Vec<PolicyConfig>,
    purposes: HashMap<Purpose, PolicyId>,
    default_policy: Option<PolicyId>,
    order: Vec<(ChannelId, ChannelKind)>,
    adapters: Vec<messaging_core::DynChannel>,
    webhooks: Vec<Webhook>,
    notes: Vec<String>,
    listener: ListenerSettings,
    listener_config: ListenerConfig,
    grace: Duration,
    local_addr: Option<SocketAddr>,
    stop: signal::Sender<bool>,
    track: mpsc::UnboundedSender<NotificationId>,
    tasks: Tasks,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("channels", &self.order)
            .field(
                "policies",
                &self
                    .policies
                    .iter()
                    .map(|p| p.policy.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("webhooks", &self.webhooks)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Service {
    /// Checks `config` ([`ServiceConfig::validate`]), opens the store, builds the channels,
    /// the engine and the webhook router, and starts the background tasks. The listener is not
    /// bound yet: call [`listen`](Self::listen) or [`serve`](Self::serve), or mount
    /// [`router`](Self::router) in your app. Must be called inside a tokio runtime.
    ///
    /// ```
    /// use messaging::service::{Service, ServiceConfig};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let config = ServiceConfig::from_toml(&format!(r#"
    /// [store]
    /// sqlite = "{}"
    /// [channels.tg]
    /// provider = "telegram"
    /// token = "123456:ABC-fake"
    /// receive = "none"
    /// [policies.p]
    /// steps = [{{ channel = "tg", evidence = "accepted", window = "15m" }}]
    /// "#, dir.path().join("s.sqlite").display())).unwrap();
    /// let service = Service::build(config).await.unwrap();
    /// assert_eq!(service.channels(), ["tg"]);
    /// service.shutdown().await;
    /// # });
    /// ```
    pub async fn build(config: ServiceConfig) -> Result<Service, ServiceError> {
        Self::builder(config).build().await
    }

    /// A builder, to add event sinks and send gates before building.
    pub fn builder(config: ServiceConfig) -> ServiceBuilder {
        ServiceBuilder {
            config,
            sinks: Vec::new(),
            gates: Vec::new(),
            routes: Vec::new(),
        }
    }

    async fn start(b: ServiceBuilder) -> Result<Service, ServiceError> {
        let config = b.config;
        config.validate()?;
        let stores = open_store(&config.store).await?;
        let built = build::build_channels(&config, stores.windows.clone()).await?;

        let mut engine = Engine::builder()
            .store(stores.cascades.clone())
            .regulated(config.regulated);
        for c in &built.channels {
            engine = engine.channel(c.clone());
        }
        for p in &config.policies {
            engine = engine.policy(p.policy.clone());
        }
        for (purpose, policy) in &config.purposes {
            engine = engine.route(*purpose, policy.clone());
        }
        if let Some(d) = config.default_policy_id() {
            engine = engine.default_policy(d.clone());
        }
        if let Some(tz) = config.time_zone {
            engine = engine.default_time_zone(tz);
        }
        if !config.engine.health {
            engine = engine.without_health();
        }
        if let Some(d) = config.engine.poll_interval {
            engine = engine.poll_interval(d);
        }
        if let Some(d) = config.engine.in_flight_lease {
            engine = engine.in_flight_lease(d);
        }
        if let Some(n) = config.limits.concurrency {
            engine = engine.concurrency(n);
        }
        if let Some(board) = &stores.board {
            engine = engine.health_board(board.clone());
        }
        if let Some(name) = &config.engine.instance {
            engine = engine.instance(name.clone());
        }
        for g in b.gates {
            engine = engine.gate(g);
        }
        let engine = engine.build()?;

        // Events go to the WhatsApp numbers first (an inbound message opens the window the
        // channel reads), then to the engine, then to the user's sinks.
        let mut sinks = Sinks::new();
        for s in built.window_sinks {
            sinks.push(s);
        }
        sinks.push(Arc::new(engine.clone()));
        for s in b.sinks {
            sinks.push(s);
        }

        let mut router = WebhookRouter::new().journal(stores.journal.clone());
        if let Some(u) = &config.listener.public_url {
            router = router.public_base_url(u.as_str());
        }
        if let Some(n) = config.limits.webhook_queue {
            router = router.queue_capacity(n);
        }
        router = router.process_concurrency(
            config
                .limits
                .webhook_concurrency
                .unwrap_or(DEFAULT_WEBHOOK_CONCURRENCY),
        );
        let mut webhooks = Vec::new();
        for m in built.mounts {
            let provider = m.handler.provider();
            let (path, secret_path) = match &m.guard {
                Some(messaging_conversations::router::UnsignedGuard::SecretPath(s)) => {
                    (format!("{}/{s}", m.path.trim_end_matches('/')), true)
                }
                _ => (m.path.clone(), false),
            };
            webhooks.push(Webhook {
                channel: m.channel,
                provider,
                path,
                secret_path,
            });
            router = match m.guard {
                Some(guard) => router.mount_unsigned(m.path, m.handler, guard),
                None => router.mount(m.path, m.handler),
            };
        }
        let mut router = router;
        // `sink` takes one at a time; the list was built above.
        router = router.sink(Arc::new(sinks.clone()));
        let (app, processor) = router.build()?;
        let app = b.routes.into_iter().fold(app, Router::merge);

        let (stop, stop_rx) = signal::channel(false);
        let mut tasks = Tasks {
            processor: Some(tokio::spawn(async move {
                if let Err(p) = catch_panic(processor.run()).await {
                    tracing::error!(panic = %p.message, "webhook processor panicked");
                }
            })),
            ..Tasks::default()
        };
        let runner = engine.clone();
        let engine_stop = stop_rx.clone();
        tasks.engine = Some(supervise("engine timers", move || {
            let (runner, mut stop) = (runner.clone(), engine_stop.clone());
            async move {
                runner
                    .run(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            }
        }));
        for (_, start) in built.polling {
            tasks.polling.push(start(sinks.clone(), stop_rx.clone()));
        }
        let (track, track_rx) = mpsc::unbounded_channel();
        if !built.status.is_empty() {
            let channels: HashMap<ChannelId, watch::Polled> = built.status.into_iter().collect();
            let watcher = Arc::new(std::sync::Mutex::new(Some((
                watch::Watcher {
                    engine: engine.clone(),
                    sinks: sinks.clone(),
                    channels,
                },
                engine.subscribe(),
                track_rx,
            ))));
            let watch_stop = stop_rx.clone();
            tasks.statuses = Some(supervise("sms status polling", move || {
                // A restart after a panic starts with what it has: a fresh subscription.
                let taken = watcher.lock().ok().and_then(|mut w| w.take());
                let stop = watch_stop.clone();
                async move {
                    if let Some((w, events, track)) = taken {
                        w.run(events, track, stop).await;
                    }
                }
            }));
        }

        let limits = &config.limits;
        let mut listener_config = ListenerConfig::default();
        if let Some(n) = limits.max_connections {
            listener_config = listener_config.max_connections(n);
        }
        if let Some(d) = limits.header_read_timeout {
            listener_config = listener_config.header_read_timeout(d);
        }
        if let Some(d) = limits.request_timeout {
            listener_config = listener_config.request_timeout(d);
        }
        if let Some(d) = limits.shutdown_grace {
            listener_config = listener_config.shutdown_grace(d);
        }
        for n in &built.notes {
            tracing::warn!(note = %n, "messaging service");
        }
        Ok(Service {
            engine,
            router: Some(app),
            purposes: config
                .purposes
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            default_policy: config.default_policy_id().cloned(),
            policies: config.policies,
            order: built.order,
            adapters: built.channels,
            webhooks,
            notes: built.notes,
            listener: config.listener,
            listener_config,
            grace: limits.shutdown_grace.unwrap_or(build::DEFAULT_GRACE),
            local_addr: None,
            stop,
            track,
            tasks,
        })
    }

    /// The cascade engine: [`submit`](Engine::submit), [`status`](Engine::status),
    /// [`subscribe`](Engine::subscribe), ...
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The webhook router, to nest in your own axum app
    /// (`Router::new().merge(service.router())`). Its events are journaled to the store before
    /// the provider's `200` and processed by the service's task.
    pub fn router(&self) -> Router {
        self.router.clone().unwrap_or_default()
    }

    /// The channel adapters the configuration built, in its order: for an
    /// [`Inbox`](crate::inbox::Inbox) that answers people on them (an operator's console), or
    /// sends of your own outside a cascade.
    ///
    /// ```no_run
    /// # async fn demo(service: messaging::service::Service) {
    /// let inbox = service
    ///     .channel_adapters()
    ///     .iter()
    ///     .fold(messaging::inbox::Inbox::builder(), |b, c| b.channel(c.clone()))
    ///     .build();
    /// # let _ = inbox; }
    /// ```
    pub fn channel_adapters(&self) -> &[messaging_core::DynChannel] {
        &self.adapters
    }

    /// The channel ids, in the order of the configuration.
    pub fn channels(&self) -> Vec<&str> {
        self.order.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The channel ids and kinds, in the order of the configuration.
    pub fn channel_kinds(&self) -> &[(ChannelId, ChannelKind)] {
        &self.order
    }

    /// The configured policy `id`.
    pub fn policy(&self, id: &PolicyId) -> Option<&CascadePolicy> {
        self.policies
            .iter()
            .find(|p| &p.policy.id == id)
            .map(|p| &p.policy)
    }

    /// The webhooks mounted on the router.
    pub fn webhooks(&self) -> &[Webhook] {
        &self.webhooks
    }

    /// What the configuration leaves unprotected or what could not be loaded (webhooks without
    /// a signature check, a template list not loaded), also logged at `warn` when built. No
    /// secret appears in them.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Submits a notification through the engine, first setting its deadline from its policy's
    /// `deadline` when it has none.
    pub async fn submit(&self, mut notification: Notification) -> Result<Submission, SubmitError> {
        if notification.deadline.is_none() {
            let policy = notification
                .policy
                .clone()
                .or_else(|| self.purposes.get(&notification.purpose).cloned())
                .or_else(|| self.default_policy.clone());
            let deadline = policy.and_then(|id| {
                self.policies
                    .iter()
                    .find(|p| p.policy.id == id)
                    .and_then(|p| p.deadline)
            });
            if let Some(d) = deadline.and_then(|d| chrono::Duration::from_std(d).ok()) {
                notification.deadline = Some(self.engine.now() + d);
            }
        }
        self.engine.submit(notification).await
    }

    /// Polls SMS statuses for a cascade sent before this process started (resumed from the
    /// store), while it waits on an SMS channel with `status_poll`. Sends made by this process
    /// are followed without asking.
    pub fn track(&self, id: &NotificationId) {
        let _ = self.track.send(id.clone());
    }

    /// Binds `listener.address` and serves the router on it (with the connection limit and
    /// timeouts of `[limits]`); returns the bound address (the port picked when asked for 0).
    pub async fn listen(&mut self) -> Result<SocketAddr, ServiceError> {
        let Some(addr) = self.listener.address else {
            return Err(ServiceError::Config(ConfigError {
                problems: vec![ConfigProblem::new(
                    "listener.address",
                    "missing: set it to serve the webhooks",
                )],
            }));
        };
        self.listen_on(addr).await
    }

    /// [`listen`](Self::listen) on `addr` instead of the configured address.
    pub async fn listen_on(&mut self, addr: SocketAddr) -> Result<SocketAddr, ServiceError> {
        if let Some(a) = self.local_addr {
            return Ok(a);
        }
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServiceError::Listen { addr, source })?;
        let local = tcp
            .local_addr()
            .map_err(|source| ServiceError::Listen { addr, source })?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = self.router();
        let config = self.listener_config;
        let task = tokio::spawn(async move {
            let served = listener::serve(tcp, app, config, async move {
                let _ = rx.await;
            })
            .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "webhook listener stopped");
            }
        });
        self.tasks.server = Some((tx, task));
        self.local_addr = Some(local);
        Ok(local)
    }

    /// The address the listener is bound to, once [`listen`](Self::listen) ran.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Serves the webhooks ([`listen`](Self::listen), unless already listening) until
    /// `shutdown` completes, then [shuts down](Self::shutdown).
    pub async fn serve(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServiceError> {
        self.listen().await?;
        shutdown.await;
        self.shutdown().await;
        Ok(())
    }

    /// Stops gracefully: the listener stops taking calls and finishes those in progress,
    /// polling stops, the webhook processor works off what was journaled (router clones you
    /// still hold keep it waiting up to `limits.shutdown_grace`, then it is stopped: the
    /// journal keeps the rest for the next start), then the engine's timer loop ends.
    pub async fn shutdown(mut self) {
        let grace = self.grace;
        if let Some((tx, task)) = self.tasks.server.take() {
            let _ = tx.send(());
            join(task, grace + self.listener_config.shutdown_grace).await;
        }
        let _ = self.stop.send(true);
        self.router = None;
        for t in self.tasks.polling.drain(..) {
            join_supervised(t, grace).await;
        }
        if let Some(t) = self.tasks.statuses.take() {
            join_supervised(t, grace).await;
        }
        if let Some(t) = self.tasks.processor.take() {
            join(t, grace).await;
        }
        if let Some(t) = self.tasks.engine.take() {
            join_supervised(t, grace.max(Duration::from_secs(30))).await;
        }
    }
}

async fn join(mut task: JoinHandle<()>, within: Duration) {
    if tokio::time::timeout(within, &mut task).await.is_err() {
        task.abort();
    }
}

async fn join_supervised(task: Supervised<()>, within: Duration) {
    let abort = task.abort_handle();
    if tokio::time::timeout(within, task.join()).await.is_err() {
        abort.abort();
    }
}
