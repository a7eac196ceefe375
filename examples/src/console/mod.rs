//! The operator's web console: what the library knows about each patient, in one window.
//!
//! A small axum application, server-rendered with [maud](https://maud.lambda.xyz/) (escaping
//! everything by default: a patient's message is untrusted input), with one plain JavaScript
//! file (no build step) that listens to server-sent events and refreshes the parts of the page
//! that changed. It serves from the same process, and on the same listener, as the webhook
//! router, so the inbox it shows is the one the webhooks fill.
//!
//! | page | what it shows | library calls |
//! |---|---|---|
//! | `/` conversations | threads, newest activity first, patient or "unknown Telegram user 5001", unread count, channels | [`Inbox::threads`], [`Inbox::thread`], [`Inbox::subscribe`] |
//! | `/t/<thread>` | the merged history, a badge per channel, delivery ticks, edits and deletions; the reply box | [`Inbox::reply`] on the channel of the patient's last message; a template when WhatsApp's window is closed |
//! | `/patients`, `/patients/<contact>` | patient cards with linked Telegram / Max ids and how each link was proven; link or unlink by hand with a reason | [`IdentityStore`] (`by_contact`, `link`, `unlink`), [`InboxStore::rethread`] |
//! | `/links` | unknown senders waiting to be linked | threads without a contact, [`Linker::is_pending`] |
//! | `/cascades`, `/cascades/<id>` | reminders by state and channel, each one's timeline | [`CascadeReports::list`], [`Engine::subscribe`], [`CascadeStore::get`] |
//! | every page | channel health (healthy, degraded, down, since when) | [`Engine::health`] |
//!
//! Build one with [`Console::new`] and serve [`Console::router`] beside the webhooks (for a
//! [`Service`](messaging::service::Service): `Service::builder(config).routes(console.router())`).
//! Every route except `/login` and `/static/…` needs an operator session; every `POST` checks
//! the session's CSRF token; responses carry a `Content-Security-Policy` that allows scripts
//! from this origin only.

mod auth;
pub mod configured;
pub mod demo;
mod pages;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use chrono::{DateTime, Utc};
use messaging::engine::CascadeEvent;
use messaging::identity::{IdentityStore, Linker};
use messaging::inbox::{Inbox, InboxStore, ThreadId};
use messaging::sink::{EventSink, SinkError};
use messaging::store::{CascadeReports, CascadeStore};
use messaging::{
    Address, ChannelId, ChannelKind, ContactId, DeliveryStatus, Engine, Event, NotificationId,
    Phone,
};
use serde::Serialize;
use tokio::sync::broadcast;

pub use auth::Password;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A patient as the console shows them: the clinic's own record (its CRM or patient file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PatientCard {
    /// The contact id the inbox and the identity links use.
    pub contact: ContactId,
    /// Their name.
    pub name: String,
    /// Their phone.
    pub phone: Option<Phone>,
}

/// A WhatsApp template an operator may send when the 24-hour window is closed. Its body has
/// one parameter, `{{1}}`, which gets the operator's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateOffer {
    /// The approved template's name.
    pub name: String,
    /// Its language code.
    pub language: String,
    /// Its text as approved, with `{{1}}` where the operator's text goes (shown to the operator).
    pub preview: String,
}

/// What changed, for the pages that are open (sent to browsers as server-sent events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Live {
    /// A thread got a message or one of its messages changed.
    Thread(ThreadId),
    /// A cascade moved.
    Cascade(NotificationId),
    /// A channel's health changed.
    Health,
}

/// The delivery state of a message the clinic sent, as ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tick {
    /// Accepted by the provider.
    Sent,
    /// On the patient's device.
    Delivered,
    /// Opened.
    Read,
    /// Will not be delivered.
    Failed,
}

impl Tick {
    fn of(status: DeliveryStatus) -> Option<Tick> {
        match status {
            DeliveryStatus::Delivered => Some(Tick::Delivered),
            DeliveryStatus::Read => Some(Tick::Read),
            DeliveryStatus::Failed => Some(Tick::Failed),
            DeliveryStatus::Accepted | DeliveryStatus::Sent => Some(Tick::Sent),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The name shown and used as a CSS class.
    pub fn name(self) -> &'static str {
        match self {
            Tick::Sent => "sent",
            Tick::Delivered => "delivered",
            Tick::Read => "read",
            Tick::Failed => "failed",
        }
    }
}

/// An operator's change to an identity link, kept with its reason.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// `link` or `unlink`.
    pub action: String,
    /// The address (`tg:5001`).
    pub address: String,
    /// The patient.
    pub contact: String,
    /// Why, as the operator wrote it.
    pub reason: String,
}

/// How a [`Console`] is set up.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConsoleConfig {
    /// The operators' password.
    pub password: Password,
    /// Mark the session cookie `Secure` (the console is served over HTTPS).
    pub secure_cookie: bool,
    /// The time zone times are shown in.
    pub time_zone: chrono_tz::Tz,
    /// Approved WhatsApp templates offered when the window is closed.
    pub templates: Vec<TemplateOffer>,
    /// The clinic's patients.
    pub patients: Vec<PatientCard>,
    /// Where operators' link and unlink decisions are appended (JSON lines); `None`: memory only.
    pub audit_file: Option<PathBuf>,
    /// Channels whose health is shown, in order.
    pub channels: Vec<(ChannelId, ChannelKind)>,
    /// A line shown on every page (the demo says it is one).
    pub banner: Option<String>,
}

impl fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("password", &"[redacted]")
            .field("secure_cookie", &self.secure_cookie)
            .field("time_zone", &self.time_zone)
            .field("templates", &self.templates.len())
            .field("patients", &self.patients.len())
            .field("audit_file", &self.audit_file)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl ConsoleConfig {
    /// A configuration with this password, Moscow time, no templates, no patients.
    pub fn new(password: Password) -> Self {
        ConsoleConfig {
            password,
            secure_cookie: false,
            time_zone: chrono_tz::Europe::Moscow,
            templates: Vec::new(),
            patients: Vec::new(),
            audit_file: None,
            channels: Vec::new(),
            banner: None,
        }
    }
}

/// What the library parts the console reads from.
#[derive(Clone)]
pub struct Parts {
    /// The inbox (its channels answer replies).
    pub inbox: Inbox,
    /// The inbox's store (to move an address's thread to a patient when linked by hand).
    pub inbox_store: Arc<dyn InboxStore>,
    /// The identity links.
    pub identity: Arc<dyn IdentityStore>,
    /// The cascade engine.
    pub engine: Engine,
    /// The engine's store.
    pub cascades: Arc<dyn CascadeStore>,
    /// The same store's answers to an operator: which cascades the notices page lists.
    pub reports: Arc<dyn CascadeReports>,
    /// The linker, if Telegram and Max senders are asked to share their phone.
    pub linker: Option<Arc<Linker>>,
}

impl fmt::Debug for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

/// The most cascades the console lists (newest first).
pub(crate) const MAX_CASCADES: usize = 500;

/// A channel's health state, since when, and why.
pub(crate) type HealthRow = (String, DateTime<Utc>, String);

pub(crate) struct State {
    pub(crate) parts: Parts,
    pub(crate) config: ConsoleConfig,
    pub(crate) patients: Mutex<BTreeMap<ContactId, PatientCard>>,
    /// Ticks of the messages the clinic sent, by provider message id.
    pub(crate) ticks: Mutex<HashMap<String, Tick>>,
    /// Which thread a sent message belongs to, to refresh it when its tick changes.
    pub(crate) sent_in: Mutex<HashMap<String, ThreadId>>,
    /// When the operator last opened each thread.
    pub(crate) read_at: Mutex<HashMap<ThreadId, DateTime<Utc>>>,
    /// Cascades seen, newest first.
    pub(crate) cascades: Mutex<VecDeque<NotificationId>>,
    /// Each channel's health state and since when.
    pub(crate) health: Mutex<HashMap<ChannelId, HealthRow>>,
    pub(crate) audit: Mutex<Vec<AuditEntry>>,
    pub(crate) live: broadcast::Sender<Live>,
    /// Set when the server shuts down: live streams end, so a graceful shutdown does not wait
    /// for browsers to close them.
    pub(crate) closing: tokio::sync::watch::Sender<bool>,
    pub(crate) auth: auth::Auth,
}

/// The console: state shared by its pages, and the tasks that keep it current.
///
/// ```no_run
/// # async fn demo(parts: messaging_examples::console::Parts) {
/// use messaging_examples::console::{Console, ConsoleConfig, Password};
/// let console = Console::new(parts, ConsoleConfig::new(Password::new("correct horse").unwrap()));
/// let app = console.router(); // merge with the webhook router, serve with axum
/// # let _ = app; }
/// ```
#[derive(Clone)]
pub struct Console {
    state: Arc<State>,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console over these parts. Call within a Tokio runtime: it starts the tasks that
    /// follow the inbox, the engine and channel health.
    pub fn new(parts: Parts, config: ConsoleConfig) -> Console {
        let (live, _) = broadcast::channel(256);
        let patients = config
            .patients
            .iter()
            .map(|p| (p.contact.clone(), p.clone()))
            .collect();
        let state = Arc::new(State {
            auth: auth::Auth::new(config.password.clone(), config.secure_cookie),
            parts,
            config,
            patients: Mutex::new(patients),
            ticks: Mutex::new(HashMap::new()),
            sent_in: Mutex::new(HashMap::new()),
            read_at: Mutex::new(HashMap::new()),
            cascades: Mutex::new(VecDeque::new()),
            health: Mutex::new(HashMap::new()),
            audit: Mutex::new(Vec::new()),
            live,
            closing: tokio::sync::watch::channel(false).0,
        });
        let console = Console { state };
        console.follow();
        console
    }

    /// The console's pages, to serve beside the webhooks.
    pub fn router(&self) -> Router {
        pages::router(self.state.clone())
    }

    /// An [`EventSink`] that turns delivery reports into ticks: give it to the inbox (or the
    /// service) so that replies show "delivered".
    pub fn sink(&self) -> Arc<dyn EventSink> {
        Arc::new(TickSink {
            state: self.state.clone(),
        })
    }

    /// Ends the pages' live streams: call it when the server shuts down gracefully, which
    /// otherwise waits for every open page to disconnect.
    pub fn close(&self) {
        self.state.closing.send_replace(true);
    }

    /// Notes a cascade to list (those submitted before the console started are not in the
    /// engine's event stream).
    pub fn track_cascade(&self, id: NotificationId) {
        self.state.note_cascade(&id);
    }

    /// Adds or replaces a patient.
    pub fn add_patient(&self, card: PatientCard) {
        lock(&self.state.patients).insert(card.contact.clone(), card);
    }

    fn follow(&self) {
        let state = self.state.clone();
        let mut messages = state.parts.inbox.subscribe();
        tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(m) => {
                        let _ = state.live.send(Live::Thread(m.thread));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some: tell pages to refresh anyway.
                        let _ = state.live.send(Live::Health);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let state = self.state.clone();
        let mut events = state.parts.engine.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(CascadeEvent {
                        notification_id, ..
                    }) => {
                        state.note_cascade(&notification_id);
                        // The patient's thread shows the reminder and its tick.
                        if let Ok(Some(r)) = state.parts.cascades.get(&notification_id).await
                            && let Some(c) = &r.notification.recipient.contact_id
                        {
                            let _ = state.live.send(Live::Thread(ThreadId::contact(c)));
                        }
                        let _ = state.live.send(Live::Cascade(notification_id));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(2));
            loop {
                every.tick().await;
                if state.refresh_health() {
                    let _ = state.live.send(Live::Health);
                }
            }
        });
    }
}

impl State {
    pub(crate) fn note_cascade(&self, id: &NotificationId) {
        let mut list = lock(&self.cascades);
        if list.iter().any(|x| x == id) {
            return;
        }
        list.push_front(id.clone());
        list.truncate(MAX_CASCADES);
    }

    /// Reads every channel's health; returns whether any state changed.
    fn refresh_health(&self) -> bool {
        let now = self.parts.engine.now();
        let mut map = lock(&self.health);
        let mut changed = false;
        for (id, _) in &self.config.channels {
            let (state, reason) = match self.parts.engine.health(id) {
                Some(h) => (format!("{:?}", h.state).to_lowercase(), h.reason.clone()),
                None => ("unknown".to_owned(), String::new()),
            };
            match map.get_mut(id) {
                Some(entry) if entry.0 == state => entry.2 = reason,
                _ => {
                    map.insert(id.clone(), (state, now, reason));
                    changed = true;
                }
            }
        }
        changed
    }

    pub(crate) fn patient(&self, contact: &ContactId) -> Option<PatientCard> {
        lock(&self.patients).get(contact).cloned()
    }

    /// "Анна Петрова", or "unknown Telegram user 5001".
    pub(crate) fn label(&self, contact: Option<&ContactId>, address: &Address) -> String {
        if let Some(c) = contact {
            return match self.patient(c) {
                Some(p) => p.name,
                None => format!("contact {c}"),
            };
        }
        unknown_label(address)
    }

    pub(crate) fn record_audit(&self, entry: AuditEntry) {
        if let Some(path) = &self.config.audit_file {
            use std::io::Write;
            let line = serde_json::to_string(&entry).unwrap_or_default();
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = written {
                tracing::warn!(error = %e, "console: cannot append to the audit file");
            }
        }
        lock(&self.audit).push(entry);
    }
}

/// How the console names a sender it cannot resolve.
pub fn unknown_label(address: &Address) -> String {
    match address {
        Address::Telegram(id) => format!("unknown Telegram user {id}"),
        Address::MaxUser(id) | Address::MaxChat(id) => format!("unknown Max user {id}"),
        Address::WhatsApp(w) => format!("unknown WhatsApp +{}", w.trim_start_matches('+')),
        Address::Phone(p) => format!("unknown SMS {p}"),
        #[allow(unreachable_patterns)]
        other => format!("unknown {}", other.key()),
    }
}

/// Delivery reports to ticks.
struct TickSink {
    state: Arc<State>,
}

impl fmt::Debug for TickSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("console::TickSink")
    }
}

#[async_trait]
impl EventSink for TickSink {
    async fn handle(&self, event: &Event) -> Result<(), SinkError> {
        if let Event::Delivery(r) = event
            && let Some(tick) = Tick::of(r.status)
        {
            let key = r.provider_message_id.to_string();
            {
                let mut ticks = lock(&self.state.ticks);
                let t = ticks.entry(key.clone()).or_insert(tick);
                // A report that arrives out of order never moves a tick back, except failure.
                if tick > *t {
                    *t = tick;
                }
            }
            let thread = lock(&self.state.sent_in).get(&key).cloned();
            if let Some(thread) = thread {
                let _ = self.state.live.send(Live::Thread(thread));
            }
        }
        Ok(())
    }
}

/// The channel kinds a thread used, in a fixed order.
pub(crate) fn kinds_of(kinds: &HashSet<ChannelKind>) -> Vec<ChannelKind> {
    ChannelKind::ALL
        .into_iter()
        .filter(|k| kinds.contains(k))
        .collect()
}
