//! The engine proper.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};

use super::policy::{CascadePolicy, HealthAction};
use super::record::{
    Attempt, AttemptState, CascadeRecord, DeferReason, HistoryEntry, HistoryKind, Notification,
    Outcome, Phase, SkipReason,
};
use crate::health::{Admission, ChannelHealth, HealthConfig, HealthState, HealthTracker};
use crate::store::{CascadeStore, Inserted, MemoryStore};
use messaging_core::StoreError;
use messaging_core::gate::{GateDecision, SendContext, SendGate};
use messaging_core::sink::{EventSink, SinkError};
use messaging_core::{
    Address, ChannelId, ChannelKind, ContactId, Evidence, NotificationId, PolicyId,
    ProviderMessageId, Purpose,
};
use messaging_core::{ChannelError, ErrorKind};
use messaging_core::{Clock, SystemClock, chrono_dur};
use messaging_core::{DeliveryReport, Event, InboundMessage, Signal};
use messaging_core::{DynChannel, OutboundMessage, SendReceipt};

/// How many early delivery reports are kept waiting for their receipt.
const MAX_ORPHANS: usize = 100_000;

/// Something that happened to a cascade, as published on [`Engine::subscribe`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CascadeEvent {
    /// The notification.
    pub notification_id: NotificationId,
    /// What happened, and when.
    #[serde(flatten)]
    pub entry: HistoryEntry,
}

/// A notification's status and full history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CascadeStatus {
    /// The notification.
    pub notification_id: NotificationId,
    /// The policy used.
    pub policy: PolicyId,
    /// The current (or last) step index.
    pub step: usize,
    /// Where it stands.
    pub phase: Phase,
    /// The outcome, once finished.
    pub outcome: Option<Outcome>,
    /// Every attempt: channel, times, provider message id, outcome and reason.
    pub attempts: Vec<Attempt>,
    /// Everything that happened.
    pub history: Vec<HistoryEntry>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
}

impl From<CascadeRecord> for CascadeStatus {
    fn from(r: CascadeRecord) -> Self {
        let outcome = r.outcome().cloned();
        CascadeStatus {
            notification_id: r.notification.id.clone(),
            policy: r.policy,
            step: r.step,
            outcome,
            phase: r.phase,
            attempts: r.attempts,
            history: r.history,
            created_at: r.created_at,
        }
    }
}

/// The answer to [`Engine::submit`].
#[derive(Clone, Debug, PartialEq)]
pub struct Submission {
    /// The notification.
    pub id: NotificationId,
    /// `false` when a notification with this id had been submitted before: nothing new was sent.
    pub new: bool,
    /// The outcome, if the cascade already ended (an instant channel, or a duplicate submit).
    pub outcome: Option<Outcome>,
}

/// Why a notification was refused at submit. Nothing was stored or sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// No policy was named and none is routed for this purpose.
    #[error(
        "no cascade policy for purpose {0} (route one with EngineBuilder::route or name one on the notification)"
    )]
    NoPolicy(Purpose),
    /// The named policy is not configured.
    #[error("unknown cascade policy {0}")]
    UnknownPolicy(PolicyId),
    /// No step of the policy has an address for this person.
    #[error("notification {0}: no step of policy {1} has an address for this recipient")]
    NoAddress(NotificationId, PolicyId),
    /// The content is too long for every channel of the policy.
    #[error("notification {0}: the content is too long for every channel of policy {1}")]
    ContentTooLong(NotificationId, PolicyId),
    /// The notification id is empty.
    #[error("the notification id is empty")]
    EmptyId,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the engine could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A policy has no steps.
    #[error("cascade policy {0} has no steps")]
    EmptyPolicy(PolicyId),
    /// A step names a channel that was not added.
    #[error("cascade policy {policy} step {step} names unknown channel {channel}")]
    UnknownChannel {
        /// The policy.
        policy: PolicyId,
        /// The step index.
        step: usize,
        /// The channel id.
        channel: ChannelId,
    },
    /// Two channels share an id.
    #[error("two channels have the id {0}")]
    DuplicateChannel(ChannelId),
    /// A route or the default names a policy that was not added.
    #[error("route to unknown cascade policy {0}")]
    UnknownPolicy(PolicyId),
    /// A step's window is zero.
    #[error("cascade policy {policy} step {step} has a zero window")]
    ZeroWindow {
        /// The policy.
        policy: PolicyId,
        /// The step index.
        step: usize,
    },
}

/// A failure while handling an event or a timer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Knobs of the engine that are not part of a policy.
#[derive(Clone, Debug)]
struct Settings {
    in_flight_lease: Duration,
    claim_batch: usize,
    concurrency: usize,
    poll_interval: Duration,
    orphan_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            in_flight_lease: Duration::from_secs(120),
            claim_batch: 256,
            concurrency: 32,
            poll_interval: Duration::from_secs(1),
            orphan_ttl: Duration::from_secs(600),
        }
    }
}

/// Builds an [`Engine`].
///
/// ```
/// use std::sync::Arc;
/// use messaging_cascade::*;
/// use messaging_core::*;
/// use messaging_core::testkit::StubChannel;
///
/// let engine = Engine::builder()
///     .channel(Arc::new(StubChannel::new("wa", ChannelKind::WhatsApp)))
///     .channel(Arc::new(StubChannel::new("sms", ChannelKind::Sms)))
///     .policy(CascadePolicy::new("reminders", vec![Step::new("wa"), Step::new("sms")]))
///     .route(Purpose::Service, "reminders")
///     .build()
///     .unwrap();
/// # let _ = engine;
/// ```
pub struct EngineBuilder {
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn CascadeStore>>,
    channels: Vec<DynChannel>,
    policies: Vec<CascadePolicy>,
    routes: HashMap<Purpose, PolicyId>,
    default_policy: Option<PolicyId>,
    health: Option<HealthConfig>,
    gates: Vec<Arc<dyn SendGate>>,
    regulated: bool,
    default_tz: chrono_tz::Tz,
    settings: Settings,
    event_capacity: usize,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("channels", &self.channels.len())
            .field("policies", &self.policies.len())
            .finish_non_exhaustive()
    }
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            clock: Arc::new(SystemClock),
            store: None,
            channels: Vec::new(),
            policies: Vec::new(),
            routes: HashMap::new(),
            default_policy: None,
            health: Some(HealthConfig::default()),
            gates: Vec::new(),
            regulated: false,
            default_tz: chrono_tz::Europe::Moscow,
            settings: Settings::default(),
            event_capacity: 4096,
        }
    }
}

impl EngineBuilder {
    /// The clock (default: the system clock). Tests pass a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// The store (default: a fresh [`MemoryStore`]).
    pub fn store(mut self, store: Arc<dyn CascadeStore>) -> Self {
        self.store = Some(store);
        self
    }
    /// Adds a channel.
    pub fn channel(mut self, channel: DynChannel) -> Self {
        self.channels.push(channel);
        self
    }
    /// Adds a policy. The first policy added is the default for purposes without a route.
    pub fn policy(mut self, policy: CascadePolicy) -> Self {
        if self.default_policy.is_none() {
            self.default_policy = Some(policy.id.clone());
        }
        self.policies.push(policy);
        self
    }
    /// Routes a purpose to a policy: bulk service notices through the official WhatsApp number,
    /// conversation through another channel instance, and so on.
    pub fn route(mut self, purpose: Purpose, policy: impl Into<PolicyId>) -> Self {
        self.routes.insert(purpose, policy.into());
        self
    }
    /// The policy for purposes without a route.
    pub fn default_policy(mut self, policy: impl Into<PolicyId>) -> Self {
        self.default_policy = Some(policy.into());
        self
    }
    /// Channel health thresholds (health is on by default).
    pub fn health(mut self, config: HealthConfig) -> Self {
        self.health = Some(config);
        self
    }
    /// Turns channel health off: fixed windows, no routing around slow channels.
    pub fn without_health(mut self) -> Self {
        self.health = None;
        self
    }
    /// Adds a gate consulted before each send (the sender governor, a hygiene check).
    pub fn gate(mut self, gate: Arc<dyn SendGate>) -> Self {
        self.gates.push(gate);
        self
    }
    /// For regulated senders: removes foreign messengers (WhatsApp, Telegram) from every
    /// cascade. Their steps are skipped with [`SkipReason::ForeignMessengerBlocked`].
    pub fn regulated(mut self, yes: bool) -> Self {
        self.regulated = yes;
        self
    }
    /// The time zone for quiet hours when the recipient has none (default Europe/Moscow).
    pub fn default_time_zone(mut self, tz: chrono_tz::Tz) -> Self {
        self.default_tz = tz;
        self
    }
    /// How long a send may be in flight before its outcome counts as unknown (default 2 min).
    /// Keep it longer than any channel's request timeout.
    pub fn in_flight_lease(mut self, d: Duration) -> Self {
        self.settings.in_flight_lease = d;
        self
    }
    /// How many cascades one tick processes at once (default 32).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n.max(1);
        self
    }
    /// How many due cascades one tick claims (default 256).
    pub fn claim_batch(mut self, n: usize) -> Self {
        self.settings.claim_batch = n.max(1);
        self
    }
    /// How often [`Engine::run`] looks for due work when nothing wakes it (default 1 s).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.settings.poll_interval = d;
        self
    }
    /// Capacity of the event stream (default 4096; slow subscribers miss events, never block).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(1);
        self
    }

    /// Checks the configuration and builds the engine.
    pub fn build(self) -> Result<Engine, BuildError> {
        let mut channels = HashMap::new();
        for c in self.channels {
            let id = c.id().clone();
            if channels.insert(id.clone(), c).is_some() {
                return Err(BuildError::DuplicateChannel(id));
            }
        }
        let mut policies = HashMap::new();
        for p in self.policies {
            if p.steps.is_empty() {
                return Err(BuildError::EmptyPolicy(p.id));
            }
            for (i, s) in p.steps.iter().enumerate() {
                if !channels.contains_key(&s.channel) {
                    return Err(BuildError::UnknownChannel {
                        policy: p.id.clone(),
                        step: i,
                        channel: s.channel.clone(),
                    });
                }
                if s.window.is_zero() {
                    return Err(BuildError::ZeroWindow {
                        policy: p.id.clone(),
                        step: i,
                    });
                }
            }
            policies.insert(p.id.clone(), Arc::new(p));
        }
        for p in self.routes.values().chain(self.default_policy.iter()) {
            if !policies.contains_key(p) {
                return Err(BuildError::UnknownPolicy(p.clone()));
            }
        }
        let (events, _) = broadcast::channel(self.event_capacity);
        let health = channels
            .keys()
            .map(|id| {
                (
                    id.clone(),
                    HealthTracker::new(self.health.clone().unwrap_or_default()),
                )
            })
            .collect();
        Ok(Engine {
            inner: Arc::new(Inner {
                clock: self.clock,
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                channels,
                policies,
                routes: self.routes,
                default_policy: self.default_policy,
                health_config: self.health,
                health: Mutex::new(health),
                rate_limited_until: Mutex::new(HashMap::new()),
                gates: self.gates,
                regulated: self.regulated,
                default_tz: self.default_tz,
                settings: self.settings,
                events,
                orphans: Mutex::new(HashMap::new()),
                wake: Notify::new(),
            }),
        })
    }
}

/// The cascade engine. Cheap to clone; clones share everything.
///
/// ```
/// use std::sync::Arc;
/// use messaging_cascade::*;
/// use messaging_core::*;
/// use messaging_core::testkit::StubChannel;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let clock = ManualClock::at_unix(1_767_250_800);
/// let wa = Arc::new(StubChannel::new("wa", ChannelKind::WhatsApp));
/// let sms = Arc::new(StubChannel::new("sms", ChannelKind::Sms));
/// let engine = Engine::builder()
///     .clock(clock.clone())
///     .channel(wa.clone())
///     .channel(sms.clone())
///     .policy(CascadePolicy::new("p", vec![Step::new("wa"), Step::new("sms")]))
///     .build()
///     .unwrap();
///
/// let n = Notification::new(
///     "appt-1",
///     Recipient::with_phone("patient-1", "+79123456789").unwrap().name("Анна"),
///     Content::text("Анна, напоминаем о приёме завтра в 10:00. Придёте?"),
/// );
/// engine.submit(n).await.unwrap();
/// assert_eq!(wa.sent().len(), 1);
///
/// // No delivery report within the window: the engine moves on to SMS.
/// clock.advance(std::time::Duration::from_secs(3601));
/// engine.tick().await.unwrap();
/// assert_eq!(sms.sent().len(), 1);
/// # });
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("channels", &self.inner.channels.keys().collect::<Vec<_>>())
            .field("policies", &self.inner.policies.keys().collect::<Vec<_>>())
            .field("regulated", &self.inner.regulated)
            .finish_non_exhaustive()
    }
}

struct Inner {
    clock: Arc<dyn Clock>,
    store: Arc<dyn CascadeStore>,
    channels: HashMap<ChannelId, DynChannel>,
    policies: HashMap<PolicyId, Arc<CascadePolicy>>,
    routes: HashMap<Purpose, PolicyId>,
    default_policy: Option<PolicyId>,
    health_config: Option<HealthConfig>,
    health: Mutex<HashMap<ChannelId, HealthTracker>>,
    rate_limited_until: Mutex<HashMap<ChannelId, DateTime<Utc>>>,
    gates: Vec<Arc<dyn SendGate>>,
    regulated: bool,
    default_tz: chrono_tz::Tz,
    settings: Settings,
    events: broadcast::Sender<CascadeEvent>,
    /// Delivery reports that arrived before the receipt of their send was stored.
    orphans: Mutex<HashMap<ProviderMessageId, (DeliveryReport, DateTime<Utc>)>>,
    wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What to do after planning a cascade's next move.
enum Plan {
    /// Nothing changed.
    Idle,
    /// Save the record and stop.
    Save,
    /// Save the record (intent), then send.
    Send(Box<PendingSend>),
}

struct PendingSend {
    attempt: usize,
    channel: DynChannel,
    message: OutboundMessage,
    probe: bool,
    shorten_to: Option<Duration>,
}

/// The evidence a step can actually get: what it waits for, capped at what its channel gives.
fn capped(wanted: Evidence, strongest: Evidence) -> Evidence {
    if wanted == Evidence::Replied {
        Evidence::Replied
    } else {
        wanted.min(strongest)
    }
}

fn push(rec: &mut CascadeRecord, at: DateTime<Utc>, kind: HistoryKind) {
    rec.history.push(HistoryEntry { at, kind });
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The engine's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn CascadeStore> {
        &self.inner.store
    }

    /// A stream of cascade events (step started, sent, skipped, failed, advanced, delivered,
    /// late delivery, exhausted, expired, ...). A subscriber that falls behind by more than the
    /// capacity misses events (`RecvError::Lagged`); the store keeps the full history.
    pub fn subscribe(&self) -> broadcast::Receiver<CascadeEvent> {
        self.inner.events.subscribe()
    }

    /// The status and full history of a notification.
    pub async fn status(&self, id: &NotificationId) -> Result<Option<CascadeStatus>, EngineError> {
        Ok(self.inner.store.get(id).await?.map(CascadeStatus::from))
    }

    /// The health of a channel now (`None` for an unknown channel id).
    pub fn health(&self, channel: &ChannelId) -> Option<ChannelHealth> {
        let now = self.now();
        lock(&self.inner.health)
            .get_mut(channel)
            .map(|h| h.snapshot(now))
    }

    /// Accepts a notification and starts its cascade; sends the first step now unless it must
    /// wait. Submitting an id again sends nothing new and returns `new: false`.
    pub async fn submit(&self, notification: Notification) -> Result<Submission, SubmitError> {
        let inner = &self.inner;
        if notification.id.as_str().is_empty() {
            return Err(SubmitError::EmptyId);
        }
        let policy_id = match &notification.policy {
            Some(p) => p.clone(),
            None => inner
                .routes
                .get(&notification.purpose)
                .or(inner.default_policy.as_ref())
                .cloned()
                .ok_or(SubmitError::NoPolicy(notification.purpose))?,
        };
        let policy = inner
            .policies
            .get(&policy_id)
            .ok_or_else(|| SubmitError::UnknownPolicy(policy_id.clone()))?;
        let mut any_address = false;
        let mut any_fits = false;
        for step in &policy.steps {
            let Some(ch) = inner.channels.get(&step.channel) else {
                continue;
            };
            if inner.regulated && ch.kind().is_foreign_messenger() {
                continue;
            }
            if notification.recipient.has_address_for(ch.kind()) {
                any_address = true;
                let content = step.content.as_ref().unwrap_or(&notification.content);
                if ch.capabilities().fits(content.text_for(ch.kind())) {
                    any_fits = true;
                    break;
                }
            }
        }
        if !any_address {
            return Err(SubmitError::NoAddress(notification.id, policy_id));
        }
        if !any_fits {
            return Err(SubmitError::ContentTooLong(notification.id, policy_id));
        }

        let now = self.now();
        let first_channel = policy.steps[0].channel.clone();
        let mut rec = CascadeRecord {
            notification: Arc::new(notification),
            policy: policy_id.clone(),
            version: 0,
            step: 0,
            phase: Phase::Ready,
            // Due at once, so that a crash before the first send still leaves a timer.
            wake_at: Some(now),
            rate_limit_waits: 0,
            attempts: Vec::new(),
            history: Vec::with_capacity(6),
            created_at: now,
        };
        push(&mut rec, now, HistoryKind::Submitted { policy: policy_id });
        push(
            &mut rec,
            now,
            HistoryKind::StepStarted {
                step: 0,
                channel: first_channel,
            },
        );
        let id = rec.id().clone();
        match inner.store.insert(&rec).await? {
            Inserted::Exists(existing) => {
                return Ok(Submission {
                    id,
                    new: false,
                    outcome: existing.outcome().cloned(),
                });
            }
            Inserted::New => self.publish(&id, &rec.history),
        }
        let outcome = match self.drive_from(&id, Some(rec)).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // Accepted and stored with a due timer: the next tick picks it up again.
                tracing::warn!(notification = %id, error = %e, "first step failed; retried on tick");
                None
            }
        };
        Ok(Submission {
            id,
            new: true,
            outcome,
        })
    }

    /// Cancels a cascade that has not ended. Returns whether it was cancelled.
    pub async fn cancel(&self, id: &NotificationId) -> Result<bool, EngineError> {
        loop {
            let Some(mut rec) = self.inner.store.get(id).await? else {
                return Ok(false);
            };
            if rec.is_finished() {
                return Ok(false);
            }
            let now = self.now();
            let before = rec.history.len();
            finish(&mut rec, now, Outcome::Cancelled);
            match self.save(&mut rec, before).await {
                Ok(()) => return Ok(true),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Deletes the cascades that ended more than `older_than` ago (by the engine's clock), with
    /// their history and message-index entries, and returns how many it deleted. Unfinished
    /// cascades are never touched. Call it from a daily job with your retention period: medical
    /// and personal-data rules usually say how long a record of who was told what may be kept.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use messaging_cascade::*;
    /// use messaging_core::*;
    /// use messaging_core::testkit::StubChannel;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let clock = ManualClock::at_unix(1_767_250_800);
    /// let engine = Engine::builder()
    ///     .clock(clock.clone())
    ///     .channel(Arc::new(StubChannel::new("tg", ChannelKind::Telegram)))
    ///     .policy(CascadePolicy::new("p", vec![Step::new("tg")]))
    ///     .build()
    ///     .unwrap();
    /// let patient = Recipient::new("patient-1").address(Address::Telegram(42));
    /// engine.submit(Notification::new("appt-1", patient, Content::text("Приём завтра в 10:00"))).await.unwrap();
    ///
    /// let thirty_days = Duration::from_secs(30 * 86_400);
    /// assert_eq!(engine.purge_finished(thirty_days).await.unwrap(), 0); // too recent
    /// clock.advance(thirty_days + Duration::from_secs(1));
    /// assert_eq!(engine.purge_finished(thirty_days).await.unwrap(), 1);
    /// assert!(engine.status(&"appt-1".into()).await.unwrap().is_none());
    /// # });
    /// ```
    pub async fn purge_finished(&self, older_than: Duration) -> Result<usize, EngineError> {
        // Batches keep each store transaction short, so sends are not held up behind a purge.
        const BATCH: usize = 500;
        let cutoff = self.now() - chrono_dur(older_than);
        let mut total = 0;
        loop {
            let n = self.inner.store.purge_finished(cutoff, BATCH).await?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    /// Fires due timers: closes windows, retries after backoff, sends after quiet hours.
    /// Returns how many cascades were looked at.
    pub async fn tick(&self) -> Result<usize, EngineError> {
        let now = self.now();
        self.expire_orphans(now);
        let mut total = 0;
        loop {
            let due = self
                .inner
                .store
                .claim_due(
                    now,
                    self.inner.settings.claim_batch,
                    self.inner.settings.in_flight_lease,
                )
                .await?;
            if due.is_empty() {
                return Ok(total);
            }
            total += due.len();
            let n = due.len();
            let results: Vec<Result<(), EngineError>> = futures::stream::iter(due)
                .map(|id| async move { self.drive(&id).await.map(|_| ()) })
                .buffer_unordered(self.inner.settings.concurrency)
                .collect()
                .await;
            for r in results {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cascade step failed; it stays due and is retried");
                }
            }
            if n < self.inner.settings.claim_batch {
                return Ok(total);
            }
        }
    }

    /// The earliest time a timer falls due.
    pub async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        Ok(self.inner.store.next_wake().await?)
    }

    /// Runs [`tick`](Self::tick) in a loop until `shutdown` resolves. Meant for the system clock:
    /// with a manual clock, call `tick` yourself.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "engine tick failed");
            }
            let now = self.now();
            let mut sleep = self.inner.settings.poll_interval;
            if let Ok(Some(next)) = self.next_wake().await {
                if let Ok(d) = (next - now).to_std() {
                    sleep = sleep.min(d);
                } else {
                    sleep = Duration::ZERO;
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(sleep) => {}
                _ = self.inner.wake.notified() => {}
            }
        }
    }

    /// Handles one event from an adapter.
    pub async fn handle_event(&self, event: &Event) -> Result<(), EngineError> {
        match event {
            Event::Delivery(d) => self.handle_delivery(d).await,
            Event::Inbound(m) => self.handle_inbound(m).await,
            Event::Signal(s) => {
                self.handle_signal(s.channel, s.channel_id.as_ref(), &s.signal);
                Ok(())
            }
            #[allow(unreachable_patterns)]
            _ => Ok(()),
        }
    }

    /// A reply from a person known by contact id (the inbox resolved them): ends their
    /// cascades as replied.
    pub async fn handle_reply_from_contact(
        &self,
        contact: &ContactId,
        channel: ChannelKind,
    ) -> Result<usize, EngineError> {
        self.finish_replied(&format!("contact:{contact}"), channel)
            .await
    }

    async fn handle_inbound(&self, m: &InboundMessage) -> Result<(), EngineError> {
        let mut keys = vec![m.address.key()];
        if let Address::WhatsApp(digits) = &m.address
            && let Ok(p) = messaging_core::Phone::parse(&format!("+{digits}"))
        {
            keys.push(Address::Phone(p).key());
        }
        for k in keys {
            self.finish_replied(&k, m.channel).await?;
        }
        Ok(())
    }

    async fn finish_replied(&self, key: &str, channel: ChannelKind) -> Result<usize, EngineError> {
        let ids = self.inner.store.active_by_reply_key(key).await?;
        let mut n = 0;
        for id in ids {
            loop {
                let Some(mut rec) = self.inner.store.get(&id).await? else {
                    break;
                };
                if rec.is_finished() {
                    break;
                }
                let now = self.now();
                let before = rec.history.len();
                finish(&mut rec, now, Outcome::Replied { channel });
                match self.save(&mut rec, before).await {
                    Ok(()) => {
                        n += 1;
                        break;
                    }
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(n)
    }

    fn handle_signal(&self, kind: ChannelKind, channel_id: Option<&ChannelId>, signal: &Signal) {
        let now = self.now();
        let targets: Vec<ChannelId> = match channel_id {
            Some(id) if self.inner.channels.contains_key(id) => vec![id.clone()],
            _ => self
                .inner
                .channels
                .iter()
                .filter(|(_, c)| c.kind() == kind)
                .map(|(id, _)| id.clone())
                .collect(),
        };
        let mut health = lock(&self.inner.health);
        for id in targets {
            let Some(h) = health.get_mut(&id) else {
                continue;
            };
            match signal {
                Signal::Quality { rating, .. } => {
                    let low = matches!(
                        rating.to_ascii_uppercase().as_str(),
                        "RED" | "LOW" | "FLAGGED" | "RESTRICTED"
                    );
                    h.set_provider_degraded(low, format!("provider quality {rating}"));
                }
                Signal::Restriction { until, reason } if until.is_none_or(|u| u > now) => {
                    h.mark_down(
                        now,
                        *until,
                        format!(
                            "account restricted{}",
                            reason
                                .as_deref()
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        ),
                    );
                }
                _ => {}
            }
        }
    }

    async fn handle_delivery(&self, report: &DeliveryReport) -> Result<(), EngineError> {
        let Some(mref) = self
            .inner
            .store
            .find_message(&report.provider_message_id)
            .await?
        else {
            // The report may have overtaken the receipt of its own send; keep it a while
            // (bounded: reports for messages this engine never sent must not pile up).
            let mut orphans = lock(&self.inner.orphans);
            if orphans.len() >= MAX_ORPHANS {
                return Ok(());
            }
            orphans.insert(
                report.provider_message_id.clone(),
                (report.clone(), self.now()),
            );
            return Ok(());
        };
        loop {
            let Some(mut rec) = self.inner.store.get(&mref.notification_id).await? else {
                return Ok(());
            };
            let now = self.now();
            let before = rec.history.len();
            if !self.apply_report(&mut rec, mref.attempt, report, now) {
                return Ok(());
            }
            match self.save(&mut rec, before).await {
                Ok(()) => break,
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.drive(&mref.notification_id).await.map(|_| ())
    }

    /// Applies a delivery report to a record. Returns whether anything changed.
    fn apply_report(
        &self,
        rec: &mut CascadeRecord,
        attempt_idx: usize,
        report: &DeliveryReport,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(attempt) = rec.attempts.get(attempt_idx) else {
            return false;
        };
        let step = attempt.step;
        let channel = attempt.channel.clone();
        let number = attempt.number;
        match report.status.evidence() {
            None => {
                // A failure report. Repeated reports change nothing.
                if matches!(attempt.state, AttemptState::Failed { .. }) {
                    return false;
                }
                let (kind, code, message): (_, Option<Box<str>>, Box<str>) = match &report.error {
                    Some(e) => (
                        e.kind.unwrap_or(ErrorKind::Unreachable),
                        Some(e.code.as_str().into()),
                        e.message.as_str().into(),
                    ),
                    None => (
                        ErrorKind::Unreachable,
                        None,
                        "the provider reported the message as failed".into(),
                    ),
                };
                if let Some(a) = rec.attempts.get_mut(attempt_idx) {
                    a.state = AttemptState::Failed {
                        kind,
                        code: code.clone(),
                        message: message.clone(),
                    };
                }
                push(
                    rec,
                    now,
                    HistoryKind::Failed {
                        step,
                        channel,
                        attempt: number,
                        kind,
                        code,
                        message,
                    },
                );
                if let Phase::Waiting { attempt, .. } = rec.phase
                    && attempt == attempt_idx
                {
                    self.advance(rec, now);
                }
                true
            }
            Some(evidence) => {
                if attempt.evidence.is_some_and(|e| e >= evidence) {
                    return false; // a repeated or weaker report
                }
                if let Some(a) = rec.attempts.get_mut(attempt_idx) {
                    a.evidence = Some(evidence);
                    a.evidence_at = Some(report.at);
                }
                if evidence > Evidence::Accepted
                    && let Some(h) = lock(&self.inner.health).get_mut(&channel)
                {
                    h.record_evidence(&report.provider_message_id, report.at);
                }
                let wanted = self.step_evidence(rec, step);
                if rec.is_finished() || evidence < wanted {
                    push(
                        rec,
                        now,
                        HistoryKind::Evidence {
                            step,
                            channel,
                            evidence,
                        },
                    );
                    return true;
                }
                let late = step < rec.step;
                finish(
                    rec,
                    now,
                    Outcome::Delivered {
                        step,
                        channel,
                        evidence,
                        late,
                    },
                );
                true
            }
        }
    }

    /// The evidence step `step` of a record's policy waits for, capped by its channel.
    fn step_evidence(&self, rec: &CascadeRecord, step: usize) -> Evidence {
        let Some(s) = self
            .inner
            .policies
            .get(&rec.policy)
            .and_then(|p| p.steps.get(step))
        else {
            return Evidence::Delivered;
        };
        let strongest = self
            .inner
            .channels
            .get(&s.channel)
            .map(|c| c.capabilities().strongest_evidence)
            .unwrap_or(Evidence::Accepted);
        capped(s.wait_for, strongest)
    }

    fn expire_orphans(&self, now: DateTime<Utc>) {
        let ttl = chrono_dur(self.inner.settings.orphan_ttl);
        let mut o = lock(&self.inner.orphans);
        if !o.is_empty() {
            o.retain(|_, (_, at)| now - *at < ttl);
        }
    }

    fn publish(&self, id: &NotificationId, entries: &[HistoryEntry]) {
        if self.inner.events.receiver_count() == 0 {
            return;
        }
        for e in entries {
            let _ = self.inner.events.send(CascadeEvent {
                notification_id: id.clone(),
                entry: e.clone(),
            });
        }
    }

    /// Saves a record and publishes the history entries added since `before`.
    /// On success `rec` carries the new version, so it can be used again without a reload.
    async fn save(&self, rec: &mut CascadeRecord, before: usize) -> Result<(), StoreError> {
        rec.version = self.inner.store.update(rec).await?;
        self.publish(rec.id(), &rec.history[before.min(rec.history.len())..]);
        Ok(())
    }

    /// Moves a cascade forward as far as it can go now. Returns its outcome if it has ended.
    async fn drive(&self, id: &NotificationId) -> Result<Option<Outcome>, EngineError> {
        self.drive_from(id, None).await
    }

    /// [`drive`](Self::drive), starting from a copy of the record as stored, when the caller
    /// has one (saves a read).
    async fn drive_from(
        &self,
        id: &NotificationId,
        mut stored: Option<CascadeRecord>,
    ) -> Result<Option<Outcome>, EngineError> {
        // Bounded: every round either stops, or records a send, a skip or a state change.
        for _ in 0..64 {
            let mut rec = match stored.take() {
                Some(r) => r,
                None => match self.inner.store.get(id).await? {
                    Some(r) => r,
                    None => return Ok(None),
                },
            };
            let now = self.now();
            let before = rec.history.len();
            match self.plan(&mut rec, now).await {
                Plan::Idle => return Ok(rec.outcome().cloned()),
                Plan::Save => match self.save(&mut rec, before).await {
                    Ok(()) => return Ok(rec.outcome().cloned()),
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                },
                Plan::Send(send) => {
                    match self.save(&mut rec, before).await {
                        Ok(()) => {}
                        Err(StoreError::Conflict(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                    let result = send.channel.send(&send.message).await;
                    match self.record_result(id, &send, result, Some(rec)).await? {
                        Settled::Again => {}
                        Settled::Stop(outcome) => return Ok(outcome),
                    }
                }
            }
        }
        Ok(None)
    }

    /// Stores a send's result. Returns whether the cascade should be driven on at once.
    async fn record_result(
        &self,
        id: &NotificationId,
        send: &PendingSend,
        result: Result<SendReceipt, ChannelError>,
        mut stored: Option<CascadeRecord>,
    ) -> Result<Settled, EngineError> {
        let sent_pmid = result.as_ref().ok().map(|r| r.provider_message_id.clone());
        let mut health_noted = false;
        loop {
            // The intent's copy is current unless an event changed the record meanwhile, in
            // which case the save below conflicts and the loop reads it again.
            let mut rec = match stored.take() {
                Some(r) => r,
                None => match self.inner.store.get(id).await? {
                    Some(r) => r,
                    None => return Ok(Settled::Stop(None)),
                },
            };
            let now = self.now();
            let before = rec.history.len();
            let Some(attempt) = rec.attempts.get(send.attempt).cloned() else {
                return Ok(Settled::Stop(rec.outcome().cloned()));
            };
            if !matches!(attempt.state, AttemptState::InFlight) {
                // Someone else already settled this attempt (a lease ran out meanwhile).
                return Ok(Settled::Stop(rec.outcome().cloned()));
            }
            let current =
                matches!(rec.phase, Phase::Sending { attempt } if attempt == send.attempt);
            match &result {
                Ok(receipt) => {
                    let wanted = self.step_evidence(&rec, attempt.step);
                    if !health_noted {
                        health_noted = true;
                        let mut health = lock(&self.inner.health);
                        if let Some(h) = health.get_mut(&attempt.channel) {
                            if wanted > Evidence::Accepted && wanted != Evidence::Replied {
                                h.record_sent(receipt.provider_message_id.clone(), now, send.probe);
                            } else {
                                h.record_accepted();
                            }
                        }
                    }
                    if let Some(a) = rec.attempts.get_mut(send.attempt) {
                        a.state = AttemptState::Sent;
                        a.sent_at = Some(now);
                        a.provider_message_id = Some(receipt.provider_message_id.clone());
                        a.evidence = Some(Evidence::Accepted);
                        a.evidence_at = Some(receipt.accepted_at);
                        a.cost = receipt.cost.clone();
                    }
                    push(
                        &mut rec,
                        now,
                        HistoryKind::Sent {
                            step: attempt.step,
                            channel: attempt.channel.clone(),
                            attempt: attempt.number,
                            provider_message_id: receipt.provider_message_id.clone(),
                        },
                    );
                    if current {
                        if wanted <= Evidence::Accepted {
                            finish(
                                &mut rec,
                                now,
                                Outcome::Delivered {
                                    step: attempt.step,
                                    channel: attempt.channel.clone(),
                                    evidence: Evidence::Accepted,
                                    late: false,
                                },
                            );
                        } else {
                            let step_window = self
                                .inner
                                .policies
                                .get(&rec.policy)
                                .and_then(|p| p.steps.get(attempt.step))
                                .map(|s| s.window)
                                .unwrap_or(Duration::from_secs(3600));
                            let mut window = step_window;
                            if let Some(d) = send.shorten_to {
                                window = window.min(d);
                            }
                            let window_end = now + chrono_dur(window);
                            rec.phase = Phase::Waiting {
                                attempt: send.attempt,
                                wait_for: wanted,
                                window_end,
                            };
                            rec.wake_at = Some(self.next_check(&rec, now, window_end));
                        }
                    }
                }
                Err(err) => {
                    if !health_noted {
                        health_noted = true;
                        self.note_error_health(&attempt.channel, err, now);
                    }
                    if let Some(a) = rec.attempts.get_mut(send.attempt) {
                        a.state = AttemptState::Failed {
                            kind: err.kind(),
                            code: err.provider_code().map(Into::into),
                            message: err.message().into(),
                        };
                    }
                    push(
                        &mut rec,
                        now,
                        HistoryKind::Failed {
                            step: attempt.step,
                            channel: attempt.channel.clone(),
                            attempt: attempt.number,
                            kind: err.kind(),
                            code: err.provider_code().map(Into::into),
                            message: err.message().into(),
                        },
                    );
                    if current {
                        self.after_error(&mut rec, &attempt, err, now);
                    }
                }
            }
            match self.save(&mut rec, before).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            // A report that overtook this receipt can be applied now.
            if let Some(pmid) = &sent_pmid {
                let orphan = lock(&self.inner.orphans).remove(pmid);
                if let Some((report, _)) = orphan {
                    self.handle_delivery_boxed(report).await?;
                    return Ok(Settled::Stop(None));
                }
            }
            if matches!(rec.phase, Phase::Ready) && rec.wake_at.is_none_or(|w| w <= now) {
                return Ok(Settled::Again);
            }
            return Ok(Settled::Stop(rec.outcome().cloned()));
        }
    }

    fn handle_delivery_boxed(
        &self,
        report: DeliveryReport,
    ) -> futures::future::BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move { self.handle_delivery(&report).await })
    }

    fn note_error_health(&self, channel: &ChannelId, err: &ChannelError, now: DateTime<Utc>) {
        let mut health = lock(&self.inner.health);
        let Some(h) = health.get_mut(channel) else {
            return;
        };
        match err.kind() {
            ErrorKind::ChannelDown => h.mark_down(now, err.down_until(), err.to_string()),
            ErrorKind::Temporary | ErrorKind::Unexpected => h.record_error(now),
            ErrorKind::RateLimited => {
                let until = now + chrono_dur(err.retry_after().unwrap_or(Duration::from_secs(1)));
                drop(health);
                let mut rl = lock(&self.inner.rate_limited_until);
                let e = rl.entry(channel.clone()).or_insert(until);
                if *e < until {
                    *e = until;
                }
            }
            _ => {}
        }
    }

    /// Decides what a failed send means for the cascade (see the table in the module docs).
    fn after_error(
        &self,
        rec: &mut CascadeRecord,
        attempt: &Attempt,
        err: &ChannelError,
        now: DateTime<Utc>,
    ) {
        let Some(step) = self
            .inner
            .policies
            .get(&rec.policy)
            .and_then(|p| p.steps.get(attempt.step))
            .cloned()
        else {
            self.advance(rec, now);
            return;
        };
        let step_start = rec
            .attempts
            .iter()
            .find(|a| a.step == attempt.step)
            .map(|a| a.started_at)
            .unwrap_or(now);
        let step_end = step_start + chrono_dur(step.window);
        let mut step_end_or_deadline = step_end;
        if let Some(d) = rec.notification.deadline {
            step_end_or_deadline = step_end_or_deadline.min(d);
        }
        match err.kind() {
            ErrorKind::NeedsTemplate => {
                let content = step.content.as_ref().unwrap_or(&rec.notification.content);
                if content.template.is_some() && !attempt.forced_template {
                    // Retry at once with the template.
                    rec.phase = Phase::Ready;
                    rec.wake_at = Some(now);
                } else {
                    self.advance(rec, now);
                }
            }
            ErrorKind::RateLimited => {
                let wait = err
                    .retry_after()
                    .unwrap_or_else(|| step.retry.backoff(rec.rate_limit_waits + 1));
                let until = now + chrono_dur(wait);
                if rec.rate_limit_waits < step.retry.max_rate_limit_waits
                    && until < step_end_or_deadline
                {
                    rec.rate_limit_waits += 1;
                    self.defer(rec, now, until, DeferReason::RateLimited, &step.channel);
                } else {
                    self.advance(rec, now);
                }
            }
            ErrorKind::Temporary | ErrorKind::Unexpected => {
                let tries = rec.attempts_on(attempt.step);
                let until = now + chrono_dur(step.retry.backoff(tries));
                if tries < step.retry.max_attempts && until < step_end_or_deadline {
                    self.defer(rec, now, until, DeferReason::Backoff, &step.channel);
                } else {
                    self.advance(rec, now);
                }
            }
            _ => self.advance(rec, now),
        }
    }

    fn defer(
        &self,
        rec: &mut CascadeRecord,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        reason: DeferReason,
        channel: &ChannelId,
    ) {
        rec.phase = Phase::Ready;
        rec.wake_at = Some(until);
        let step = rec.step;
        push(
            rec,
            now,
            HistoryKind::Deferred {
                step,
                channel: channel.clone(),
                until,
                reason,
            },
        );
    }

    /// When to look at a waiting cascade next: the window's end, or earlier with channel health
    /// on, so that a channel that turns degraded or down releases its waiting cascades.
    fn next_check(
        &self,
        rec: &CascadeRecord,
        now: DateTime<Utc>,
        window_end: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let mut t = window_end;
        if let Some(d) = rec.notification.deadline {
            t = t.min(d);
        }
        if let Some(h) = &self.inner.health_config {
            // Checks back off: after overdue_after, then doubling since the send, so a long
            // window costs a handful of wakes while an outage still releases waiting cascades
            // within about one check interval of being noticed.
            let sent = match rec.phase {
                Phase::Waiting { attempt, .. } => rec
                    .attempts
                    .get(attempt)
                    .and_then(|a| a.sent_at)
                    .unwrap_or(now),
                _ => now,
            };
            let base = chrono_dur(h.overdue_after.max(Duration::from_secs(1)));
            let gap = (now - sent).max(base);
            t = t.min(now + gap);
        }
        t.max(now)
    }

    fn advance(&self, rec: &mut CascadeRecord, now: DateTime<Utc>) {
        let from = rec.step;
        let steps = self
            .inner
            .policies
            .get(&rec.policy)
            .map(|p| p.steps.len())
            .unwrap_or(0);
        rec.step += 1;
        rec.rate_limit_waits = 0;
        rec.phase = Phase::Ready;
        rec.wake_at = Some(now);
        if rec.step < steps {
            let channel = self.inner.policies[&rec.policy].steps[rec.step]
                .channel
                .clone();
            push(
                rec,
                now,
                HistoryKind::Advanced {
                    from,
                    to: Some(rec.step),
                },
            );
            let step = rec.step;
            push(rec, now, HistoryKind::StepStarted { step, channel });
        } else {
            push(rec, now, HistoryKind::Advanced { from, to: None });
            let last_sent = rec
                .attempts
                .iter()
                .rev()
                .find(|a| a.sent_at.is_some())
                .map(|a| (a.step, a.channel.clone()));
            let outcome = match last_sent {
                Some((step, channel)) => Outcome::Unconfirmed { step, channel },
                None => Outcome::Exhausted,
            };
            finish(rec, now, outcome);
        }
    }

    fn skip(
        &self,
        rec: &mut CascadeRecord,
        now: DateTime<Utc>,
        channel: ChannelId,
        reason: SkipReason,
    ) {
        let step = rec.step;
        push(
            rec,
            now,
            HistoryKind::Skipped {
                step,
                channel,
                reason,
            },
        );
        self.advance(rec, now);
    }

    /// Decides a cascade's next move and applies it to `rec` (not yet saved).
    async fn plan(&self, rec: &mut CascadeRecord, now: DateTime<Utc>) -> Plan {
        let inner = &self.inner;
        let Some(policy) = inner.policies.get(&rec.policy).cloned() else {
            // The policy was removed from the configuration since this cascade started.
            finish(rec, now, Outcome::Exhausted);
            return Plan::Save;
        };
        let mut changed = false;
        for _ in 0..(policy.steps.len() * 2 + 4) {
            match rec.phase.clone() {
                Phase::Finished(_) => break,
                Phase::Sending { attempt } => {
                    if rec.wake_at.is_some_and(|w| now < w) {
                        break;
                    }
                    // The engine stopped while this attempt was in flight: outcome unknown.
                    if let Some(a) = rec.attempts.get_mut(attempt) {
                        a.state = AttemptState::Unknown;
                    }
                    let (step, channel, number) = rec
                        .attempts
                        .get(attempt)
                        .map(|a| (a.step, a.channel.clone(), a.number))
                        .unwrap_or((rec.step, policy.steps[0].channel.clone(), 0));
                    push(
                        rec,
                        now,
                        HistoryKind::OutcomeUnknown {
                            step,
                            channel,
                            attempt: number,
                        },
                    );
                    rec.phase = Phase::Ready;
                    rec.wake_at = Some(now);
                    changed = true;
                }
                Phase::Waiting {
                    attempt,
                    window_end,
                    ..
                } => {
                    if rec.wake_at.is_some_and(|w| now < w) {
                        break;
                    }
                    if rec.notification.deadline.is_some_and(|d| now >= d) {
                        finish(rec, now, Outcome::Expired);
                        return Plan::Save;
                    }
                    let channel = policy.steps[rec.step.min(policy.steps.len() - 1)]
                        .channel
                        .clone();
                    let early =
                        now < window_end && self.should_close_early(rec, attempt, &policy, now);
                    if now >= window_end || early {
                        let step = rec.step;
                        push(
                            rec,
                            now,
                            HistoryKind::WindowClosed {
                                step,
                                channel,
                                early,
                            },
                        );
                        self.advance(rec, now);
                        changed = true;
                    } else {
                        let next = self.next_check(rec, now, window_end);
                        if rec.wake_at != Some(next) {
                            rec.wake_at = Some(next);
                            changed = true;
                        }
                        break;
                    }
                }
                Phase::Ready => {
                    if rec.wake_at.is_some_and(|w| now < w) {
                        break;
                    }
                    match self.plan_step(rec, &policy, now).await {
                        StepPlan::Changed => changed = true,
                        StepPlan::Stop => return Plan::Save,
                        StepPlan::Send(s) => return Plan::Send(s),
                    }
                }
            }
        }
        if changed { Plan::Save } else { Plan::Idle }
    }

    fn should_close_early(
        &self,
        rec: &CascadeRecord,
        attempt: usize,
        policy: &CascadePolicy,
        now: DateTime<Utc>,
    ) -> bool {
        if self.inner.health_config.is_none() {
            return false;
        }
        let Some(a) = rec.attempts.get(attempt) else {
            return false;
        };
        let state = lock(&self.inner.health)
            .get_mut(&a.channel)
            .map(|h| h.state(now))
            .unwrap_or(HealthState::Healthy);
        let action = match state {
            HealthState::Healthy => return false,
            HealthState::Degraded => policy.on_degraded,
            HealthState::Down => policy.on_down,
        };
        let sent = a.sent_at.unwrap_or(a.started_at);
        match action {
            HealthAction::Proceed => false,
            HealthAction::Skip => true,
            HealthAction::ShortenWindow(d) => now >= sent + chrono_dur(d),
        }
    }

    async fn plan_step(
        &self,
        rec: &mut CascadeRecord,
        policy: &CascadePolicy,
        now: DateTime<Utc>,
    ) -> StepPlan {
        let inner = &self.inner;
        if rec.step >= policy.steps.len() {
            // Only after a configuration change; treat as no steps left.
            finish(rec, now, Outcome::Exhausted);
            return StepPlan::Stop;
        }
        if rec.notification.deadline.is_some_and(|d| now >= d) {
            let channel = policy.steps[rec.step].channel.clone();
            let step = rec.step;
            push(
                rec,
                now,
                HistoryKind::Skipped {
                    step,
                    channel,
                    reason: SkipReason::DeadlinePassed,
                },
            );
            finish(rec, now, Outcome::Expired);
            return StepPlan::Stop;
        }
        let step = &policy.steps[rec.step];
        let Some(channel) = inner.channels.get(&step.channel).cloned() else {
            self.skip(rec, now, step.channel.clone(), SkipReason::UnknownChannel);
            return StepPlan::Changed;
        };
        let kind = channel.kind();
        let n = rec.notification.clone();
        if inner.regulated && kind.is_foreign_messenger() {
            self.skip(
                rec,
                now,
                step.channel.clone(),
                SkipReason::ForeignMessengerBlocked,
            );
            return StepPlan::Changed;
        }
        let Some(address) = n.recipient.address_for(kind) else {
            self.skip(rec, now, step.channel.clone(), SkipReason::NoAddress);
            return StepPlan::Changed;
        };
        if n.recipient.has_opted_out(kind, n.purpose) {
            self.skip(rec, now, step.channel.clone(), SkipReason::OptedOut);
            return StepPlan::Changed;
        }
        if n.purpose == Purpose::Marketing && !n.recipient.marketing_consent {
            self.skip(rec, now, step.channel.clone(), SkipReason::NoConsent);
            return StepPlan::Changed;
        }
        let content = step.content.clone().unwrap_or_else(|| n.content.clone());
        let text = content.text_for(kind);
        if !channel.capabilities().fits(text) {
            self.skip(rec, now, step.channel.clone(), SkipReason::ContentTooLong);
            return StepPlan::Changed;
        }
        let mut probe = false;
        let mut shorten_to = None;
        if let Some(hc) = &inner.health_config {
            let admission = lock(&inner.health)
                .get_mut(&step.channel)
                .map(|h| h.admit(now, &n.id))
                .unwrap_or(Admission::Healthy);
            let action = match admission {
                Admission::Healthy => HealthAction::Proceed,
                Admission::Degraded => policy.on_degraded,
                Admission::Down => policy.on_down,
                Admission::Probe => {
                    probe = true;
                    shorten_to = Some(hc.overdue_after);
                    HealthAction::Proceed
                }
                Admission::NotInRamp => {
                    self.skip(
                        rec,
                        now,
                        step.channel.clone(),
                        SkipReason::ChannelRecovering,
                    );
                    return StepPlan::Changed;
                }
            };
            match action {
                HealthAction::Proceed => {}
                HealthAction::ShortenWindow(d) => shorten_to = Some(d),
                HealthAction::Skip => {
                    let reason = if admission == Admission::Down {
                        SkipReason::ChannelDown
                    } else {
                        SkipReason::ChannelDegraded
                    };
                    self.skip(rec, now, step.channel.clone(), reason);
                    return StepPlan::Changed;
                }
            }
        }
        if let Some(q) = &policy.quiet_hours {
            let tz = n.recipient.time_zone.unwrap_or(inner.default_tz);
            let local = now.with_timezone(&tz);
            if q.contains(local.time()) {
                let until = quiet_end(q, local, now);
                self.defer(rec, now, until, DeferReason::QuietHours, &step.channel);
                return StepPlan::Stop;
            }
        }
        let limited = lock(&inner.rate_limited_until)
            .get(&step.channel)
            .copied()
            .filter(|u| *u > now);
        if let Some(until) = limited {
            self.defer(rec, now, until, DeferReason::RateLimited, &step.channel);
            return StepPlan::Stop;
        }
        if !inner.gates.is_empty() {
            let ctx = SendContext::new(now, &n.id, &step.channel, kind, &n.recipient, &address)
                .purpose(n.purpose)
                .text(text);
            for g in &inner.gates {
                match g.check(&ctx).await {
                    GateDecision::Allow => {}
                    GateDecision::Defer { until, reason } => {
                        let until = until.max(now + chrono::Duration::seconds(1));
                        self.defer(
                            rec,
                            now,
                            until,
                            DeferReason::Governor(reason),
                            &step.channel,
                        );
                        return StepPlan::Stop;
                    }
                    GateDecision::Deny { reason } => {
                        self.skip(rec, now, step.channel.clone(), SkipReason::Refused(reason));
                        return StepPlan::Changed;
                    }
                }
            }
        }

        // Record the intent before the side effect.
        let previous = rec.attempts.iter().rev().find(|a| a.step == rec.step);
        let possible_duplicate = previous.is_some_and(|a| matches!(a.state, AttemptState::Unknown));
        let force_template = previous.is_some_and(|a| {
            matches!(
                a.state,
                AttemptState::Failed {
                    kind: ErrorKind::NeedsTemplate,
                    ..
                }
            )
        }) || previous
            .is_some_and(|a| a.forced_template && possible_duplicate);
        let number = rec.attempts_on(rec.step) + 1;
        let attempt_idx = rec.attempts.len();
        rec.attempts.push(Attempt {
            step: rec.step,
            channel: step.channel.clone(),
            number,
            started_at: now,
            sent_at: None,
            provider_message_id: None,
            evidence: None,
            evidence_at: None,
            state: AttemptState::InFlight,
            possible_duplicate,
            forced_template: force_template,
            cost: None,
        });
        let step_idx = rec.step;
        push(
            rec,
            now,
            HistoryKind::Sending {
                step: step_idx,
                channel: step.channel.clone(),
                attempt: number,
                possible_duplicate,
            },
        );
        rec.phase = Phase::Sending {
            attempt: attempt_idx,
        };
        rec.wake_at = Some(now + chrono_dur(inner.settings.in_flight_lease));
        let message = OutboundMessage::new(address, content, n.purpose)
            .for_notification(n.id.clone())
            .force_template(force_template);
        StepPlan::Send(Box::new(PendingSend {
            attempt: attempt_idx,
            channel,
            message,
            probe,
            shorten_to,
        }))
    }
}

/// What happens after a send's result is stored.
enum Settled {
    /// Drive the cascade on at once (a retry or the next step is due now).
    Again,
    /// Stop; the cascade's outcome if it ended.
    Stop(Option<Outcome>),
}

enum StepPlan {
    /// The record changed (a skip); plan again.
    Changed,
    /// The record changed and the cascade waits (deferred or finished).
    Stop,
    /// Send.
    Send(Box<PendingSend>),
}

fn finish(rec: &mut CascadeRecord, now: DateTime<Utc>, outcome: Outcome) {
    let entry = match &outcome {
        Outcome::Delivered {
            step,
            channel,
            evidence,
            late,
        } => {
            if *late {
                HistoryKind::LateDelivery {
                    step: *step,
                    channel: channel.clone(),
                    evidence: *evidence,
                }
            } else {
                HistoryKind::Delivered {
                    step: *step,
                    channel: channel.clone(),
                    evidence: *evidence,
                }
            }
        }
        Outcome::Replied { channel } => HistoryKind::Replied { channel: *channel },
        Outcome::Unconfirmed { .. } => HistoryKind::Unconfirmed,
        Outcome::Exhausted => HistoryKind::Exhausted,
        Outcome::Expired => HistoryKind::Expired,
        Outcome::Cancelled => HistoryKind::Cancelled,
    };
    push(rec, now, entry);
    rec.phase = Phase::Finished(outcome);
    rec.wake_at = None;
}

/// The UTC instant quiet hours end, given the local time inside them.
fn quiet_end<Tz: chrono::TimeZone>(
    q: &super::policy::QuietHours,
    local: DateTime<Tz>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let today = local.date_naive();
    let end_date = if q.start > q.end && local.time() >= q.start {
        today.succ_opt().unwrap_or(today)
    } else {
        today
    };
    let naive = end_date.and_time(q.end);
    local
        .timezone()
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        // A DST gap swallowed the end time: try an hour later.
        .or_else(|| {
            local
                .timezone()
                .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        })
        .unwrap_or(now + chrono::Duration::hours(1))
}

#[async_trait::async_trait]
impl EventSink for Engine {
    async fn handle(&self, event: &Event) -> Result<(), SinkError> {
        self.handle_event(event).await.map_err(Into::into)
    }

    async fn contact_replied(
        &self,
        contact: &ContactId,
        kind: ChannelKind,
    ) -> Result<(), SinkError> {
        self.handle_reply_from_contact(contact, kind)
            .await
            .map(|_| ())
            .map_err(Into::into)
    }
}
