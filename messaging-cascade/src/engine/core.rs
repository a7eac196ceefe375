//! The engine proper.

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use tracing::Instrument;

use super::decide::{
    self, Action, ChannelCondition, ChannelFacts, Decision, HealthNote, HealthView, Input, Rules,
    Unreachable,
};
use super::idmap::IdMap;
use super::observe;
use super::policy::CascadePolicy;
use super::record::{
    Attempt, AttemptState, CascadeRecord, HistoryEntry, Notification, Outcome, Phase,
};
use super::scratch;
use crate::health::{Admission, ChannelHealth, HealthConfig, HealthState, HealthTracker};
use crate::shared_health::{HealthBoard, HealthChange, HealthNotice};
use crate::store::InPlace;
use crate::store::{CascadeStore, Inserted, MemoryStore};
use messaging_core::StoreError;
use messaging_core::gate::{GateDecision, SendContext, SendGate};
use messaging_core::sink::{EventSink, SinkError};
use messaging_core::task::{Panicked, catch_panic};
use messaging_core::{
    Address, ChannelId, ChannelKind, ContactId, NotificationId, PolicyId, ProviderMessageId,
    Purpose,
};
use messaging_core::{ChannelError, ErrorKind};
use messaging_core::{Clock, SystemClock, chrono_dur};
use messaging_core::{DeliveryReport, DeliveryStatus, Event, InboundMessage, Signal};
use messaging_core::{DynChannel, OutboundMessage};

/// A hash map with foldhash: several times faster than SipHash on short ids (it is looked up
/// on every decision), and still seeded per map.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

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
    /// A step panicked (a channel's or a gate's bug); the panic message. The cascade stays in
    /// flight until its lease runs out, then is retried.
    #[error("a cascade step panicked: {0}")]
    Panicked(String),
}

/// A cascade whose step panicked, logged (never silent) and reported as a failed step: it is
/// left in flight, so its lease runs out and the next tick retries it.
fn panicked(id: &NotificationId, p: &messaging_core::task::Panicked) -> EngineError {
    tracing::error!(notification = %id, panic = %p.message, "cascade step panicked; retried when its lease runs out");
    EngineError::Panicked(p.message.clone())
}

/// Knobs of the engine that are not part of a policy.
#[derive(Clone, Debug)]
struct Settings {
    in_flight_lease: Duration,
    reply_clock_skew: Duration,
    claim_batch: usize,
    concurrency: usize,
    poll_interval: Duration,
    orphan_ttl: Duration,
    health_sync_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            in_flight_lease: Duration::from_secs(120),
            reply_clock_skew: Duration::from_secs(60),
            claim_batch: 256,
            concurrency: 32,
            poll_interval: Duration::from_secs(1),
            orphan_ttl: Duration::from_secs(600),
            health_sync_interval: Duration::from_secs(1),
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
    board: Option<Arc<dyn HealthBoard>>,
    instance: Option<String>,
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
            board: None,
            instance: None,
        }
    }
}

impl EngineBuilder {
    /// The clock (default: the system clock). Tests pass a [`ManualClock`](messaging_core::ManualClock).
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
    /// cascade. Their steps are skipped with [`SkipReason::ForeignMessengerBlocked`](super::SkipReason::ForeignMessengerBlocked).
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
    /// How much earlier than a cascade's first send a reply may be dated and still end it
    /// (default 1 min): the provider's clock and ours disagree a little, and a message written
    /// before the cascade began, replayed by a provider's retry or after a restart, must not
    /// end it.
    pub fn reply_clock_skew(mut self, d: Duration) -> Self {
        self.settings.reply_clock_skew = d;
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
    /// Shares channel health with the other instances on `board` (the service's PostgreSQL
    /// store, usually): what one instance learns about a channel reaches the others within
    /// [`health_sync_interval`](Self::health_sync_interval), and one of them sends each probe
    /// ([`shared_health`](crate::shared_health)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use messaging_cascade::{Engine, shared_health::MemoryHealthBoard};
    /// let board = Arc::new(MemoryHealthBoard::new());
    /// let a = Engine::builder().health_board(board.clone()).instance("a");
    /// let b = Engine::builder().health_board(board).instance("b");
    /// # let _ = (a, b);
    /// ```
    pub fn health_board(mut self, board: Arc<dyn HealthBoard>) -> Self {
        self.board = Some(board);
        self
    }
    /// This instance's name on the health board (default: random). Notices it posts carry it,
    /// and it skips its own when reading.
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = Some(name.into());
        self
    }
    /// How often [`Engine::run`] exchanges channel health with the board (default 1 s).
    pub fn health_sync_interval(mut self, d: Duration) -> Self {
        self.settings.health_sync_interval = d;
        self
    }

    /// Checks the configuration and builds the engine.
    pub fn build(self) -> Result<Engine, BuildError> {
        let mut channels = IdMap::default();
        for c in self.channels {
            let id = c.id().clone();
            if channels.insert(id.clone(), c).is_some() {
                return Err(BuildError::DuplicateChannel(id));
            }
        }
        let facts = |id: &ChannelId| {
            channels
                .get(id)
                .map(|c: &DynChannel| ChannelFacts::new(c.kind(), c.capabilities()))
        };
        let settings = &self.settings;
        let rules_for = |policy: CascadePolicy| {
            Rules::new(policy, facts)
                .regulated(self.regulated)
                .default_time_zone(self.default_tz)
                .in_flight_lease(settings.in_flight_lease)
                .reply_clock_skew(settings.reply_clock_skew)
                .health(self.health.clone())
                .gated(!self.gates.is_empty())
        };
        let mut rules = IdMap::default();
        for mut p in self.policies {
            if p.steps.is_empty() {
                return Err(BuildError::EmptyPolicy(p.id));
            }
            for (i, s) in p.steps.iter_mut().enumerate() {
                let Some((id, _)) = channels.get_key_value(&s.channel) else {
                    return Err(BuildError::UnknownChannel {
                        policy: p.id.clone(),
                        step: i,
                        channel: s.channel.clone(),
                    });
                };
                // One shared string per channel id: comparing two clones of it (map lookups
                // by a step's channel, several per decision) stops at the pointer.
                s.channel = id.clone();
                if s.window.is_zero() {
                    return Err(BuildError::ZeroWindow {
                        policy: p.id.clone(),
                        step: i,
                    });
                }
            }
            rules.insert(p.id.clone(), rules_for(p));
        }
        // Routes name their policy by the rules' own key, so that looking it up on every
        // submit compares pointers (see `IdMap`).
        let known = |p: PolicyId| match rules.get_key_value(&p) {
            Some((key, _)) => Ok(key.clone()),
            None => Err(BuildError::UnknownPolicy(p)),
        };
        let routes = self
            .routes
            .into_iter()
            .map(|(purpose, p)| Ok((purpose, known(p)?)))
            .collect::<Result<IdMap<_, _>, BuildError>>()?;
        let default_policy = self.default_policy.map(known).transpose()?;
        // For cascades whose policy was removed from the configuration since they started:
        // no steps, so they end as exhausted when next looked at.
        let retired = rules_for(CascadePolicy::new("", Vec::new()));
        let (events, _) = broadcast::channel(self.event_capacity);
        let books = channels
            .keys()
            .map(|id| {
                (
                    id.clone(),
                    ChannelBook {
                        health: HealthTracker::new(self.health.clone().unwrap_or_default()),
                        rate_limited_until: None,
                        shared: Some((HealthChange::Healthy, None)),
                        seen: HealthState::Healthy,
                    },
                )
            })
            .collect();
        let meters = observe::Meters::new(channels.iter().map(|(id, c)| (id, c.kind())));
        meters.publish_initial_health();
        Ok(Engine {
            inner: Arc::new(Inner {
                clock: self.clock,
                store: Store::new(
                    self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                    // Deciding in place needs no probe shared with other instances (claimed
                    // asynchronously) and no gates (asked with the record).
                    self.board.is_none() && self.gates.is_empty(),
                ),
                channels,
                rules,
                retired,
                routes,
                default_policy,
                books: Books {
                    map: Mutex::new(books),
                    calm_until: AtomicI64::new(i64::MIN),
                },
                gates: self.gates,
                regulated: self.regulated,
                settings: self.settings,
                events,
                orphans: Mutex::new(FastMap::default()),
                wake: Notify::new(),
                sharing: self.board.map(|board| Sharing {
                    board,
                    instance: self.instance.unwrap_or_else(random_instance_name),
                    outbox: Mutex::new(Vec::new()),
                    cursor: tokio::sync::Mutex::new(None),
                }),
                meters,
                next_count: Mutex::new(DateTime::<Utc>::MIN_UTC),
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
            .field("policies", &self.inner.rules.keys().collect::<Vec<_>>())
            .field("regulated", &self.inner.regulated)
            .finish_non_exhaustive()
    }
}

struct Inner {
    clock: Arc<dyn Clock>,
    store: Store,
    channels: IdMap<ChannelId, DynChannel>,
    /// What each policy's cascades are decided by.
    rules: IdMap<PolicyId, Rules>,
    /// The rules for a cascade whose policy is no longer configured.
    retired: Rules,
    routes: IdMap<Purpose, PolicyId>,
    default_policy: Option<PolicyId>,
    /// Per channel: its health and how long the provider asked us to wait.
    books: Books,
    gates: Vec<Arc<dyn SendGate>>,
    regulated: bool,
    settings: Settings,
    events: broadcast::Sender<CascadeEvent>,
    /// Delivery reports that arrived before the receipt of their send was stored.
    orphans: Mutex<FastMap<ProviderMessageId, (DeliveryReport, DateTime<Utc>)>>,
    wake: Notify,
    /// Channel health shared with other instances, when a board is configured.
    sharing: Option<Sharing>,
    /// Every channel's metric keys.
    meters: observe::Meters,
    /// When a tick next reads the number of running cascades for its gauge.
    next_count: Mutex<DateTime<Utc>>,
}

/// The cascade store as the engine calls it: `insert`, `get` and `update`, the calls of every
/// cascade, go to the default [`MemoryStore`] directly, and to any other store through its
/// trait (every other method derefs to the trait). A direct call saves the boxed future of an
/// `async_trait` call, which cost more than some whole calls; both paths run the same code
/// (`MemoryStore`'s trait methods call the functions called here).
///
/// When it can, the engine also decides on the in-memory store's records in place
/// ([`Store::in_place`]): the store keeps the only copy of a cascade, and a drive changes it
/// under the store's lock instead of copying it out and back.
struct Store {
    any: Arc<dyn CascadeStore>,
    memory: Option<Arc<MemoryStore>>,
    /// Whether `memory`'s records are decided on in place.
    in_place: bool,
}

impl Store {
    fn new(any: Arc<dyn CascadeStore>, in_place: bool) -> Self {
        let as_any: Arc<dyn std::any::Any + Send + Sync> = Arc::clone(&any) as _;
        let memory = as_any.downcast::<MemoryStore>().ok();
        let in_place = in_place && memory.is_some();
        Store {
            any,
            memory,
            in_place,
        }
    }

    /// The in-memory store, if its records are decided on in place.
    fn in_place(&self) -> Option<&MemoryStore> {
        self.memory.as_deref().filter(|_| self.in_place)
    }

    async fn insert(&self, record: &CascadeRecord) -> Result<Inserted, StoreError> {
        match &self.memory {
            Some(m) => m.insert_now(record),
            None => self.any.insert(record).await,
        }
    }

    async fn get(&self, id: &NotificationId) -> Result<Option<CascadeRecord>, StoreError> {
        match &self.memory {
            Some(m) => m.get_now(id),
            None => self.any.get(id).await,
        }
    }

    async fn update(&self, record: &CascadeRecord) -> Result<u64, StoreError> {
        match &self.memory {
            Some(m) => m.update_now(record),
            None => self.any.update(record).await,
        }
    }
}

impl std::ops::Deref for Store {
    type Target = dyn CascadeStore;
    fn deref(&self) -> &Self::Target {
        &*self.any
    }
}

/// This engine's side of the [`HealthBoard`].
struct Sharing {
    board: Arc<dyn HealthBoard>,
    instance: String,
    /// Verdicts reached here and not yet posted.
    outbox: Mutex<Vec<HealthNotice>>,
    /// The board position read up to (`None` before the first sync). Held across a sync, so
    /// two syncs never apply the same notices.
    cursor: tokio::sync::Mutex<Option<u64>>,
}

/// A verdict as compared for sharing: the change and, for `down`, when it began.
type SharedVerdict = (HealthChange, Option<DateTime<Utc>>);

/// What the engine keeps about one channel across cascades.
struct ChannelBook {
    health: HealthTracker,
    /// The provider asked us to slow down until then.
    rate_limited_until: Option<DateTime<Utc>>,
    /// The verdict last posted to or read from the health board: a new one is news.
    shared: Option<SharedVerdict>,
    /// The health state last published (events and the health gauge report changes).
    seen: HealthState,
}

/// Every channel's book, and until when all of them are calm: plainly healthy, not rate
/// limited, nothing new to publish or share, so that every send is admitted as healthy.
/// While they are, a cascade's health view is empty and costs no lock; a book only changes its
/// mind at its next evaluation (the calm ends there) or on a new fact, and every change of a
/// book goes through [`Books::change`], which ends the calm.
struct Books {
    map: Mutex<IdMap<ChannelId, ChannelBook>>,
    /// Microseconds since the Unix epoch; `i64::MIN` when not known to be calm.
    calm_until: AtomicI64,
}

impl Books {
    /// The books, to change one: the calm ends (the next health view looks at them again).
    fn change(&self) -> MutexGuard<'_, IdMap<ChannelId, ChannelBook>> {
        let books = lock(&self.map);
        self.calm_until.store(i64::MIN, Ordering::Release);
        books
    }

    /// The books, for a health view or a fact that cannot change anyone's outlook.
    fn look(&self) -> MutexGuard<'_, IdMap<ChannelId, ChannelBook>> {
        lock(&self.map)
    }

    /// Whether every book is calm at `now`.
    fn calm(&self, now: DateTime<Utc>) -> bool {
        now.timestamp_micros() < self.calm_until.load(Ordering::Acquire)
    }
}

/// `engine-` and 16 hex digits from std's per-process random hash keys (no RNG dependency for
/// one name).
fn random_instance_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("engine-{:016x}", h.finish())
}

/// Where [`Engine::drive`] starts after a submit has stored a new cascade and told its first
/// history.
struct Start<'s> {
    /// The caller's copy of the record as stored; `None` if the store has the only one (it is
    /// decided on in place).
    record: Option<CascadeRecord>,
    rules: &'s Rules,
    /// The decision the record was stored with, whose actions are still to be performed.
    decision: Option<Decision>,
    /// What that decision's send tells its span.
    facts: Option<SendFacts>,
    /// The cascade's span.
    span: tracing::Span,
}

/// What a send's span tells about its attempt, read from the record when the send was
/// decided (a record decided on in place is not at hand when the send is performed).
#[derive(Clone, Copy, Debug)]
struct SendFacts {
    attempt: usize,
    step: usize,
    number: u32,
    possible_duplicate: bool,
}

impl SendFacts {
    /// The facts of `decision`'s send (a decision sends at most once), if the cascade's span is
    /// listened to (only the send's span reads them).
    fn of(span: &tracing::Span, rec: &CascadeRecord, decision: &Decision) -> Option<SendFacts> {
        if span.is_disabled() {
            return None;
        }
        decision.actions.iter().find_map(|a| match a {
            Action::Send { attempt, .. } => Some(rec.attempts.get(*attempt).map_or(
                SendFacts {
                    attempt: *attempt,
                    step: rec.step,
                    number: 0,
                    possible_duplicate: false,
                },
                |a| SendFacts {
                    attempt: *attempt,
                    step: a.step,
                    number: a.number,
                    possible_duplicate: a.possible_duplicate,
                },
            )),
            _ => None,
        })
    }
}

/// A decision made on the in-memory store's record in place, with what the drive needs of the
/// record afterwards (it does not hold the record).
struct DecidedInPlace<'s> {
    decision: Decision,
    /// The cascade's rules.
    rules: &'s Rules,
    /// The evidence of the attempt a delivery report is for, before the report.
    evidence_before: Option<messaging_core::Evidence>,
    facts: Option<SendFacts>,
    /// The cascade's outcome if the decision leaves nothing to perform and it has ended.
    outcome: Option<Outcome>,
}

/// The evidence the attempt a delivery report is for had before it (the report's metrics
/// tell the change).
fn evidence_before(rec: &CascadeRecord, input: &Input) -> Option<messaging_core::Evidence> {
    match input {
        Input::DeliveryReport { attempt, .. } => {
            rec.attempts.get(*attempt).and_then(|a| a.evidence)
        }
        _ => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        &self.inner.store.any
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
        // A snapshot only evaluates a book that is due, when any calm has run out already.
        self.inner
            .books
            .look()
            .get_mut(channel)
            .map(|b| b.health.snapshot(now))
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
        let rules = inner
            .rules
            .get(&policy_id)
            .ok_or_else(|| SubmitError::UnknownPolicy(policy_id.clone()))?;
        match rules.unreachable(&notification) {
            None => {}
            Some(Unreachable::NoAddress) => {
                return Err(SubmitError::NoAddress(notification.id, policy_id));
            }
            Some(Unreachable::ContentTooLong) => {
                return Err(SubmitError::ContentTooLong(notification.id, policy_id));
            }
        }
        let now = self.now();
        let in_place = inner.store.in_place();
        // A record decided on in place goes into the store itself, with room for a cascade
        // that ends on its first send, not the scratch room, which it would keep for good.
        let (history, attempts) = match in_place {
            Some(_) => (
                Vec::with_capacity(decide::FIRST_SEND_HISTORY),
                Vec::with_capacity(1),
            ),
            None => (scratch::history(), scratch::attempts()),
        };
        let mut rec = decide::begin_in(Arc::new(notification), rules, now, history, attempts);
        let id = rec.id().clone();
        // The first decision is made before the record is stored, so that the insert carries
        // it (usually the intent to send the first step): one write per cascade fewer than
        // inserting, then storing the intent. Nothing is performed before the insert, and a
        // duplicate submit performs nothing. A decision that claims a channel's probe is not
        // kept: the claim would be lost if the insert found the id taken, so that cascade
        // starts from the record `begin` made, decided after it is stored.
        let health = self.health_view(rules, &rec, now);
        let actions = scratch::actions();
        let decision =
            decide::decide_into(&mut rec, rules, &health, &Input::Submitted, now, actions);
        let decision = if decision.probe(&rec).is_some() {
            let notification = Arc::clone(&rec.notification);
            let history = std::mem::take(&mut rec.history);
            let attempts = std::mem::take(&mut rec.attempts);
            rec = decide::begin_in(notification, rules, now, history, attempts);
            None
        } else {
            Some(decision)
        };
        // Its first history is told in the cascade's span, once it is stored.
        let span = observe::cascade_span(&id, &Input::Submitted);
        // In place, this is told under the store's lock before the record is indexed: a panic
        // of the application's tracing or metrics here is contained, so that the cascade is
        // stored whole and its first step still goes.
        let tell = |rec: &CascadeRecord| {
            let told = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.publish(&id, &rec.history);
                span.in_scope(|| {
                    observe::history(&self.inner.meters, || rules, rec, &rec.history);
                });
                observe::cascade_state(&span, rec);
            }));
            if told.is_err() {
                tracing::warn!(notification = %id, "telling a new cascade panicked");
            }
        };
        let facts = decision
            .as_ref()
            .and_then(|d| SendFacts::of(&span, &rec, d));
        let inserted = match in_place {
            Some(memory) => (memory.insert_owned(Box::new(rec), tell)?, None),
            None => match inner.store.insert(&rec).await? {
                Inserted::New => {
                    tell(&rec);
                    (Inserted::New, Some(rec))
                }
                exists => (exists, None),
            },
        };
        let record = match inserted {
            (Inserted::Exists(existing), _) => {
                return Ok(Submission {
                    id,
                    new: false,
                    outcome: existing.outcome().cloned(),
                });
            }
            (Inserted::New, record) => record,
        };
        // `catch_unwind` keeps the cascade's future in place: `catch_panic` would box it, an
        // allocation and two copies of a large future on every submit.
        let start = Start {
            record,
            rules,
            decision,
            facts,
            span,
        };
        let first = AssertUnwindSafe(self.drive(&id, Some(start), Input::Submitted))
            .catch_unwind()
            .await
            .unwrap_or_else(|p| Err(panicked(&id, &Panicked::from_payload(&*p))));
        let outcome = match first {
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
        // A cancel ends the cascade: there is nothing to perform after it.
        let input = Input::Cancel;
        let span = observe::cascade_span(id, &input);
        let decision = self
            .decide_and_store(id, &mut None, &mut None, &input, &mut Vec::new(), &span)
            .await?;
        Ok(decision.is_some_and(|d| d.changed))
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
        let due = self.fire_due(now).await?;
        // The count of running cascades is a store query: read every few seconds, not on
        // every tick.
        let count = {
            let mut next = lock(&self.inner.next_count);
            let due = now >= *next;
            if due {
                *next = observe::next_count(now);
            }
            due
        };
        let running = if count {
            self.inner.store.count_active().await.ok()
        } else {
            None
        };
        observe::tick_gauges(due, running);
        Ok(due)
    }

    /// Drives every cascade whose timer is due at `now`; returns how many.
    async fn fire_due(&self, now: DateTime<Utc>) -> Result<usize, EngineError> {
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
                .map(|id| async move {
                    // A panic (a channel's bug) is this cascade's alone: the others of the batch
                    // go on, and it stays in flight until its lease runs out, then is retried.
                    catch_panic(self.drive(&id, None, Input::TimerFired))
                        .await
                        .unwrap_or_else(|p| Err(panicked(&id, &p)))
                        .map(|_| ())
                })
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
        let sync_every = self.inner.settings.health_sync_interval;
        let mut next_sync = tokio::time::Instant::now();
        loop {
            let news = self
                .inner
                .sharing
                .as_ref()
                .is_some_and(|s| !lock(&s.outbox).is_empty());
            if self.inner.sharing.is_some() && (news || tokio::time::Instant::now() >= next_sync) {
                match catch_panic(self.sync_health()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "channel health sync failed"),
                    Err(p) => tracing::error!(panic = %p.message, "channel health sync panicked"),
                }
                next_sync = tokio::time::Instant::now() + sync_every;
            }
            match catch_panic(self.tick()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "engine tick failed"),
                Err(p) => tracing::error!(panic = %p.message, "engine tick panicked; going on"),
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
            if self.inner.sharing.is_some() {
                sleep = sleep.min(next_sync.saturating_duration_since(tokio::time::Instant::now()));
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

    /// A reply written at `written_at` by a person known by contact id (the inbox resolved
    /// them): ends their cascades whose first send came before it as replied. Returns how many
    /// ended.
    pub async fn handle_reply_from_contact(
        &self,
        contact: &ContactId,
        channel: ChannelKind,
        written_at: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        self.finish_replied(&format!("contact:{contact}"), channel, written_at)
            .await
    }

    /// An inbound event: a new message (or button press) ends the sender's cascades as
    /// replied. An edit, a deletion or an echo changes nothing; a reaction to a message this
    /// engine sent is read evidence for it (WhatsApp and Telegram have reactions; one can only
    /// react to a message one sees), fed as a `read` report.
    async fn handle_inbound(&self, m: &InboundMessage) -> Result<(), EngineError> {
        if let Some(target) = m.read_evidence()
            && let Some(mref) = self.inner.store.find_message(target).await?
        {
            let mut report =
                DeliveryReport::new(m.channel, target.clone(), DeliveryStatus::Read, m.at);
            report.channel_id = m.channel_id.clone();
            let input = Input::DeliveryReport {
                attempt: mref.attempt,
                report,
            };
            self.drive(&mref.notification_id, None, input).await?;
        }
        if !m.counts_as_reply() {
            tracing::debug!(
                action = m.action.name(),
                "an inbound event that is not a reply: no cascade ends"
            );
            return Ok(());
        }
        let mut keys = vec![m.address.key()];
        // WhatsApp: the sender's number (for a group message, the person, not the group).
        if m.channel == ChannelKind::WhatsApp
            && let Ok(p) = messaging_core::Phone::parse(&format!("+{}", m.from))
        {
            keys.push(Address::Phone(p).key());
        }
        for k in keys {
            self.finish_replied(&k, m.channel, m.at).await?;
        }
        Ok(())
    }

    async fn finish_replied(
        &self,
        key: &str,
        channel: ChannelKind,
        written_at: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        let ids = self.inner.store.active_by_reply_key(key).await?;
        let mut n = 0;
        let input = Input::Reply {
            channel,
            written_at,
        };
        for id in ids {
            // A reply ends the cascade (or, written before it began, changes nothing): there is
            // nothing to perform after it.
            let span = observe::cascade_span(&id, &input);
            let decision = self
                .decide_and_store(&id, &mut None, &mut None, &input, &mut Vec::new(), &span)
                .await?;
            if decision.is_some_and(|d| d.changed) {
                n += 1;
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
        let mut books = self.inner.books.change();
        for id in targets {
            let Some(b) = books.get_mut(&id) else {
                continue;
            };
            let h = &mut b.health;
            match signal {
                Signal::Quality { rating, .. } => {
                    let low = matches!(
                        rating.to_ascii_uppercase().as_str(),
                        "RED" | "LOW" | "FLAGGED" | "RESTRICTED" | "ACCOUNT_VIOLATION"
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
            self.share_verdict(&id, b, now);
            if self.health_on() {
                let state = b.health.state(now);
                self.health_seen(b, &id, state, now);
            }
        }
    }

    async fn handle_delivery(&self, report: &DeliveryReport) -> Result<(), EngineError> {
        let found = match self
            .inner
            .store
            .find_message(&report.provider_message_id)
            .await?
        {
            Some(mref) => Some((mref.notification_id, mref.attempt)),
            None => self.find_unknown_attempt(report).await?,
        };
        let Some((notification_id, attempt)) = found else {
            // The report may have overtaken the receipt of its own send; keep it a while
            // (bounded: reports for messages this engine never sent must not pile up).
            observe::orphan_report(report);
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
        let input = Input::DeliveryReport {
            attempt,
            report: report.clone(),
        };
        self.drive(&notification_id, None, input).await.map(|_| ())
    }

    /// The attempt a report with an unknown message id is about, when the provider echoed the
    /// notification id (WhatsApp's `biz_opaque_callback_data`) and that cascade has an attempt
    /// on a channel of the report's kind whose answer was lost: the latest such attempt.
    async fn find_unknown_attempt(
        &self,
        report: &DeliveryReport,
    ) -> Result<Option<(NotificationId, usize)>, EngineError> {
        let Some(id) = &report.notification_id else {
            return Ok(None);
        };
        let Some(record) = self.inner.store.get(id).await? else {
            return Ok(None);
        };
        let channels = &self.inner.channels;
        let attempt = record.attempts.iter().rposition(|a| {
            matches!(a.state, AttemptState::Unknown)
                && a.provider_message_id.is_none()
                && report.channel_id.as_ref().is_none_or(|c| *c == a.channel)
                && channels
                    .get(&a.channel)
                    .is_some_and(|c| c.kind() == report.channel)
        });
        Ok(attempt.map(|a| (id.clone(), a)))
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

    /// The rules a cascade of policy `policy` is decided by.
    fn rules(&self, policy: &PolicyId) -> &Rules {
        self.inner.rules.get(policy).unwrap_or(&self.inner.retired)
    }

    /// The one place a cascade changes: [`decide`](decide::decide) on the record in `slot` (loaded
    /// first if empty), store the new state with a compare-and-swap on its version, and publish
    /// the new history. On a conflict (another task or instance changed the cascade meanwhile)
    /// it loads the record again and decides again. Returns `None` if there is no such cascade;
    /// otherwise `slot` holds the record as stored.
    ///
    /// `rules`: the cascade's rules if the caller has looked them up already (a cascade's
    /// policy never changes); filled in otherwise, so a loop of decisions looks them up once.
    async fn decide_and_store<'s>(
        &'s self,
        id: &NotificationId,
        slot: &mut Option<CascadeRecord>,
        rules: &mut Option<&'s Rules>,
        input: &Input,
        actions: &mut Vec<Action>,
        span: &tracing::Span,
    ) -> Result<Option<Decision>, EngineError> {
        loop {
            let rec = match slot {
                Some(r) => r,
                None => match self.inner.store.get(id).await? {
                    Some(r) => slot.insert(r),
                    None => return Ok(None),
                },
            };
            let now = self.now();
            let rules = *rules.get_or_insert_with(|| self.rules(&rec.policy));
            let health = self.health_view(rules, rec, now);
            let evidence_before = evidence_before(rec, input);
            let decision =
                decide::decide_into(rec, rules, &health, input, now, std::mem::take(actions));
            if !self.claim_probe(rec, &decision, now) {
                // Another cascade took the probe since the snapshot: decide again without it.
                *slot = None;
                continue;
            }
            if !self.claim_shared_probe(rec, rules, &decision, now).await {
                // Another instance probes this channel: decide again with the channel down.
                *slot = None;
                continue;
            }
            if decision.changed {
                match self.inner.store.update(rec).await {
                    Ok(version) => rec.version = version,
                    Err(StoreError::Conflict(_)) => {
                        *slot = None;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
                span.in_scope(|| {
                    observe::history(&self.inner.meters, || rules, rec, decision.events(rec));
                });
                self.publish(id, decision.events(rec));
            }
            if let Input::DeliveryReport { attempt, report } = input {
                span.in_scope(|| {
                    let meters = &self.inner.meters;
                    observe::delivery_report(meters, rec, *attempt, report, evidence_before);
                });
            }
            observe::cascade_state(span, rec);
            return Ok(Some(decision));
        }
    }

    /// [`decide_and_store`](Self::decide_and_store) on the in-memory store's own record, under
    /// its lock: no copy out and back. Declines (the caller decides on a copy) unless every
    /// channel the cascade may use is plainly healthy: then a decision claims no probe, which
    /// another cascade could take first and which the copy path decides again without.
    fn decide_in_place<'s>(
        &'s self,
        memory: &MemoryStore,
        id: &NotificationId,
        rules: &mut Option<&'s Rules>,
        input: &Input,
        actions: &mut Vec<Action>,
        span: &tracing::Span,
    ) -> Result<InPlace<DecidedInPlace<'s>>, StoreError> {
        let known = *rules;
        let change = |rec: &mut CascadeRecord| {
            let now = self.now();
            let rules = known.unwrap_or_else(|| self.rules(&rec.policy));
            let health = self.health_view(rules, rec, now);
            if !health.is_empty() {
                return None;
            }
            let evidence_before = evidence_before(rec, input);
            let decision =
                decide::decide_into(rec, rules, &health, input, now, std::mem::take(actions));
            debug_assert!(
                decision.probe(rec).is_none(),
                "a healthy view admits no probe"
            );
            let facts = SendFacts::of(span, rec, &decision);
            let performs = (decision.actions.iter()).any(|a| !matches!(a, Action::NoteHealth(_)));
            let outcome = if performs {
                None
            } else {
                rec.outcome().cloned()
            };
            let changed = decision.changed;
            let decided = DecidedInPlace {
                decision,
                rules,
                evidence_before,
                facts,
                outcome,
            };
            Some((decided, changed))
        };
        // Told once the record and the store's indexes are complete: the application's
        // tracing and metrics run here, and may panic.
        let told = |rec: &CascadeRecord, d: &DecidedInPlace<'s>| {
            if d.decision.changed {
                let events = d.decision.events(rec);
                span.in_scope(|| {
                    observe::history(&self.inner.meters, || d.rules, rec, events);
                });
                self.publish(id, events);
            }
            if let Input::DeliveryReport { attempt, report } = input {
                span.in_scope(|| {
                    let meters = &self.inner.meters;
                    observe::delivery_report(meters, rec, *attempt, report, d.evidence_before);
                });
            }
            observe::cascade_state(span, rec);
        };
        let decided = memory.change_now(id, change, told)?;
        if let InPlace::Done(d) = &decided {
            *rules = Some(d.rules);
        }
        Ok(decided)
    }

    /// Moves a cascade on after `input`: decides and stores, then performs the decision's
    /// actions and feeds their results back, until the cascade waits for the world. Returns its
    /// outcome if it has ended. `start`: where a submit left the cascade it has just stored.
    ///
    /// A decision is made on the in-memory store's record in place when it can be
    /// ([`decide_in_place`](Self::decide_in_place)), else on a copy that is then stored
    /// ([`decide_and_store`](Self::decide_and_store)); once a drive holds a copy, it goes on
    /// with it.
    ///
    /// Each call is one `cascade` span (entered only around what it tells, never across an
    /// await: the future is not wrapped, which would cost a copy of it).
    async fn drive<'s>(
        &'s self,
        id: &NotificationId,
        start: Option<Start<'s>>,
        mut input: Input,
    ) -> Result<Option<Outcome>, EngineError> {
        let (mut slot, mut rules, mut decided, mut facts, span) = match start {
            Some(s) => (s.record, Some(s.rules), s.decision, s.facts, s.span),
            None => (None, None, None, None, observe::cascade_span(id, &input)),
        };
        let span = &span;
        // The room of the last decision's actions, for the next (see `decide_into`).
        let mut spare = Vec::new();
        // The outcome found by a decision made in place (the record is not held here then).
        let mut ended = None;
        let mut rounds = 0u32;
        loop {
            // A safety net (a cascade has few steps and few retries): past it the cascade waits
            // for its timer. A send's outcome is always recorded first, so that nothing is left
            // in flight to be resent as a possible duplicate.
            rounds += 1;
            if rounds > 64 && !matches!(input, Input::SendOutcome { .. }) {
                return Ok(None);
            }
            let decision = match decided.take() {
                // Decided before the insert, which stored it.
                Some(d) => d,
                None => {
                    let in_place = match self.inner.store.in_place() {
                        Some(m) if slot.is_none() => {
                            self.decide_in_place(m, id, &mut rules, &input, &mut spare, span)?
                        }
                        _ => InPlace::Declined,
                    };
                    match in_place {
                        InPlace::Missing => return Ok(None),
                        InPlace::Done(d) => {
                            (facts, ended) = (d.facts, d.outcome);
                            d.decision
                        }
                        InPlace::Declined => match self
                            .decide_and_store(id, &mut slot, &mut rules, &input, &mut spare, span)
                            .await?
                        {
                            Some(d) => {
                                facts = slot.as_ref().and_then(|r| SendFacts::of(span, r, &d));
                                d
                            }
                            None => return Ok(None),
                        },
                    }
                }
            };
            // Whether `input` holds the next input (written in place: it is a few hundred bytes).
            let mut moved_on = false;
            // By reference: an action is a few hundred bytes, and moving each out of the
            // vector and through its match cost more than the rest of performing a note.
            for action in &decision.actions {
                match action {
                    Action::NoteHealth(note) => self.note_health(note),
                    Action::CheckGates {
                        step,
                        channel,
                        kind,
                        message,
                    } => {
                        // Gates are asked with the record: decided in place (never with
                        // gates), it is read; the drive goes on with that copy.
                        if slot.is_none() {
                            slot = self.inner.store.get(id).await?;
                        }
                        let Some(rec) = &slot else {
                            return Ok(None);
                        };
                        let answer = self.ask_gates(rec, channel, *kind, message).await;
                        input = Input::GateAnswer {
                            step: *step,
                            answer,
                        };
                        moved_on = true;
                    }
                    Action::Send {
                        attempt,
                        channel,
                        message,
                    } => {
                        let facts = facts.filter(|f| f.attempt == *attempt);
                        let result = self.send(facts, rules, channel, message, span).await;
                        input = Input::SendOutcome {
                            attempt: *attempt,
                            result,
                        };
                        moved_on = true;
                    }
                }
            }
            // A report that overtook this receipt can be applied now that the receipt is stored.
            if !moved_on
                && decision.changed
                && let Input::SendOutcome {
                    attempt,
                    result: Ok(receipt),
                } = &input
                && let Some((report, _)) = {
                    let mut orphans = lock(&self.inner.orphans);
                    // Nearly always empty: then the receipt's id is not hashed.
                    if orphans.is_empty() {
                        None
                    } else {
                        orphans.remove(&receipt.provider_message_id)
                    }
                }
            {
                input = Input::DeliveryReport {
                    attempt: *attempt,
                    report,
                };
                moved_on = true;
            }
            spare = decision.actions;
            if !moved_on {
                let outcome = match &slot {
                    Some(rec) => rec.outcome().cloned(),
                    None => ended,
                };
                scratch::give_back(slot, spare);
                return Ok(outcome);
            }
        }
    }

    /// Hands a message to its channel, in the attempt's span if the cascade's span is listened
    /// to (`facts`: the attempt's, when it is).
    async fn send(
        &self,
        facts: Option<SendFacts>,
        rules: Option<&Rules>,
        channel: &ChannelId,
        message: &OutboundMessage,
        cascade: &tracing::Span,
    ) -> Result<messaging_core::SendReceipt, ChannelError> {
        let Some(c) = self.inner.channels.get(channel) else {
            return Err(ChannelError::new(
                ErrorKind::Unexpected,
                format!("channel {channel} is not configured"),
            ));
        };
        // The attempt's span, if its cascade's is listened to (same level and target).
        let span = match facts {
            Some(f) if !cascade.is_disabled() => {
                let awaited = rules.map_or(messaging_core::Evidence::Accepted, |r| {
                    r.evidence_awaited(f.step)
                });
                observe::send_span(
                    cascade,
                    channel,
                    c.kind(),
                    f.step,
                    f.number,
                    awaited,
                    f.possible_duplicate,
                )
            }
            _ => tracing::Span::none(),
        };
        let started = std::time::Instant::now();
        // The channel's future is boxed: wrapping it copies a pointer, not the future.
        // Instrumenting with a disabled span would still enter and leave it on every poll.
        let result = if span.is_disabled() {
            c.send(message).await
        } else {
            c.send(message).instrument(span.clone()).await
        };
        let meter = self.inner.meters.get(channel);
        observe::sent(&span, meter, started.elapsed().as_secs_f64(), &result);
        result
    }

    /// Publishes a change of a channel's health (an event and the gauge) if `state` is not
    /// what was last published.
    #[inline]
    fn health_seen(
        &self,
        book: &mut ChannelBook,
        channel: &ChannelId,
        state: HealthState,
        now: DateTime<Utc>,
    ) {
        if book.seen != state {
            self.health_changed(book, channel, state, now);
        }
    }

    #[cold]
    fn health_changed(
        &self,
        book: &mut ChannelBook,
        channel: &ChannelId,
        state: HealthState,
        now: DateTime<Utc>,
    ) {
        let from = std::mem::replace(&mut book.seen, state);
        let reason = book.health.snapshot(now).reason;
        observe::health_changed(self.inner.meters.get(channel), from, state, &reason);
    }

    /// A snapshot of the health of the channels `rec` may still use.
    fn health_view(&self, rules: &Rules, rec: &CascadeRecord, now: DateTime<Utc>) -> HealthView {
        let steps = &rules.policy().steps;
        if rec.is_finished() || rec.step >= steps.len() {
            return HealthView::new();
        }
        if self.inner.books.calm(now) {
            return HealthView::new();
        }
        let health_on = rules.health_config().is_some();
        // Only channels that are not plainly healthy are listed (the view's default): usually
        // none, so the snapshot costs no allocation.
        let mut view = HealthView::new();
        let mut books = self.inner.books.look();
        for step in &steps[rec.step..] {
            let Some(b) = books.get_mut(&step.channel) else {
                continue;
            };
            let (state, admission) = if health_on {
                let outlook = b.health.outlook(now, rec.id());
                self.share_verdict(&step.channel, b, now);
                outlook
            } else {
                (HealthState::Healthy, Admission::Healthy)
            };
            if health_on {
                self.health_seen(b, &step.channel, state, now);
            }
            let condition = ChannelCondition {
                state,
                admission,
                rate_limited_until: b.rate_limited_until.filter(|u| *u > now),
            };
            if condition != ChannelCondition::HEALTHY {
                view.set(step.channel.clone(), condition);
            }
        }
        let calm_until = books
            .values()
            .map(|b| self.calm_until(b, health_on, now))
            .min()
            .flatten();
        if let Some(until) = calm_until {
            // Under the lock, so a change made meanwhile (which ends the calm) is not undone.
            self.inner.books.calm_until.store(until, Ordering::Release);
        }
        view
    }

    /// Until when `book` is calm (see [`Books`]), in microseconds since the Unix epoch: `None`
    /// if it is not now, `i64::MAX` if it stays calm until it changes.
    fn calm_until(&self, book: &ChannelBook, health_on: bool, now: DateTime<Utc>) -> Option<i64> {
        if book.rate_limited_until.is_some_and(|u| u > now) {
            return None;
        }
        if !health_on {
            return Some(i64::MAX);
        }
        let shared =
            self.inner.sharing.is_none() || book.shared == Some((HealthChange::Healthy, None));
        match book.health.healthy_until() {
            Some(until) if until > now && shared && book.seen == HealthState::Healthy => {
                Some(until.timestamp_micros())
            }
            _ => None,
        }
    }

    /// Takes the probe for a decision that sends one. Returns `false` if it is gone.
    fn claim_probe(&self, rec: &CascadeRecord, decision: &Decision, now: DateTime<Utc>) -> bool {
        match decision.probe(rec) {
            Some(channel) => self
                .inner
                .books
                .change()
                .get_mut(channel)
                .is_some_and(|b| b.health.claim_probe(now)),
            None => true,
        }
    }

    fn note_health(&self, note: &HealthNote) {
        // A send accepted (not a probe's) opens a latency sample, which only the next
        // evaluation judges: nobody's outlook changes now.
        let changes_outlook = !matches!(
            note,
            HealthNote::Accepted { .. } | HealthNote::Sent { probe: false, .. }
        );
        let mut books = if changes_outlook {
            self.inner.books.change()
        } else {
            self.inner.books.look()
        };
        let Some(b) = books.get_mut(note.channel()) else {
            return;
        };
        let channel = self.inner.sharing.as_ref().map(|_| note.channel().clone());
        // Notes that may change the state: looked at again, to publish a change.
        let look_at = match note {
            HealthNote::Evidence { channel, at, .. }
            | HealthNote::Error { channel, at }
            | HealthNote::Down { channel, at, .. } => Some((channel.clone(), *at)),
            _ => None,
        };
        match note {
            HealthNote::Sent {
                provider_message_id,
                at,
                probe,
                ..
            } => b
                .health
                .record_sent(provider_message_id.clone(), *at, *probe),
            HealthNote::Accepted { .. } => b.health.record_accepted(),
            HealthNote::Evidence {
                provider_message_id,
                at,
                ..
            } => b.health.record_evidence(provider_message_id, *at),
            HealthNote::Error { at, .. } => b.health.record_error(*at),
            HealthNote::Down {
                at, until, reason, ..
            } => b.health.mark_down(*at, *until, reason.clone()),
            HealthNote::RateLimited { until, .. } => {
                b.rate_limited_until = b.rate_limited_until.max(Some(*until));
            }
        }
        if let Some(channel) = channel {
            self.share_verdict(&channel, b, self.now());
        }
        if let Some((channel, at)) = look_at
            && self.health_on()
        {
            let state = b.health.state(at);
            self.health_seen(b, &channel, state, at);
        }
    }

    /// Whether channel health is on (it is for every policy or for none).
    fn health_on(&self) -> bool {
        self.inner.retired.health_config().is_some()
    }

    /// Queues `book`'s verdict for the health board if it is news. Called, under the books
    /// lock, wherever a tracker may have changed its mind.
    fn share_verdict(&self, channel: &ChannelId, book: &mut ChannelBook, now: DateTime<Utc>) {
        let Some(sharing) = &self.inner.sharing else {
            return;
        };
        let Some(verdict) = book.health.shared_verdict(now) else {
            return;
        };
        if book.shared == Some(verdict) {
            return;
        }
        book.shared = Some(verdict);
        let (change, since) = verdict;
        let notice = HealthNotice::new(
            channel.clone(),
            change,
            since.unwrap_or(now),
            sharing.instance.clone(),
            book.health.reason(),
        );
        // The reason stays out of the log: it may quote a provider's error text.
        tracing::info!(channel = %channel, change = ?change, "channel health changed; sharing it");
        lock(&sharing.outbox).push(notice);
        // Post it now rather than at the next interval: `run` syncs when woken with news.
        self.inner.wake.notify_one();
    }

    /// Exchanges channel health with the other instances on the health board: posts this
    /// instance's new verdicts, then applies theirs in order (on the first call, the newest of
    /// every channel). [`run`](Self::run) calls it every
    /// [`health_sync_interval`](EngineBuilder::health_sync_interval); call it yourself when you
    /// drive the engine with [`tick`](Self::tick). Returns how many notices from others it
    /// applied; without a board, does nothing.
    pub async fn sync_health(&self) -> Result<usize, EngineError> {
        let Some(sharing) = &self.inner.sharing else {
            return Ok(0);
        };
        let mut cursor = sharing.cursor.lock().await;
        let mut applied = 0;
        if cursor.is_none() {
            let (newest, position) = sharing.board.latest().await?;
            for n in &newest {
                applied += usize::from(self.apply_notice(sharing, n));
            }
            *cursor = Some(position);
        }
        let pending = std::mem::take(&mut *lock(&sharing.outbox));
        for (i, n) in pending.iter().enumerate() {
            if let Err(e) = sharing.board.post(n).await {
                // Keep what was not posted, ahead of anything queued meanwhile.
                lock(&sharing.outbox).splice(0..0, pending[i..].iter().cloned());
                return Err(e.into());
            }
        }
        const BATCH: usize = 256;
        loop {
            let batch = sharing.board.read_after(cursor.unwrap_or(0), BATCH).await?;
            for (position, n) in &batch {
                applied += usize::from(self.apply_notice(sharing, n));
                *cursor = Some(*position);
            }
            if batch.len() < BATCH {
                return Ok(applied);
            }
        }
    }

    /// Takes another instance's notice; `false` for our own or for a channel we do not have.
    fn apply_notice(&self, sharing: &Sharing, n: &HealthNotice) -> bool {
        if n.instance == sharing.instance {
            return false;
        }
        let now = self.now();
        let mut books = self.inner.books.change();
        let Some(b) = books.get_mut(&n.channel) else {
            return false;
        };
        tracing::info!(channel = %n.channel, change = ?n.change, from = %n.instance, "channel health from another instance");
        b.health.apply_shared(
            n.change,
            n.at,
            format!("{} (seen by {})", n.reason, n.instance),
        );
        b.shared = b.health.shared_verdict(now);
        if self.health_on() {
            let state = b.health.state(now);
            self.health_seen(b, &n.channel, state, now);
        }
        true
    }

    /// Takes the board's claim on the probe `decision` sends, if it sends one and a board is
    /// configured. `false`: another instance probes; this tracker stands aside.
    async fn claim_shared_probe(
        &self,
        rec: &CascadeRecord,
        rules: &Rules,
        decision: &Decision,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(sharing) = &self.inner.sharing else {
            return true;
        };
        let Some(channel) = decision.probe(rec) else {
            return true;
        };
        let hold = rules
            .health_config()
            .map_or(HealthConfig::default().overdue_after, |c| c.overdue_after);
        match sharing
            .board
            .claim_probe(channel, &sharing.instance, now, hold)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                if let Some(b) = self.inner.books.change().get_mut(channel) {
                    b.health.probe_elsewhere();
                }
                false
            }
            Err(e) => {
                // Better two probes than none: the board is only a coordinator.
                tracing::warn!(channel = %channel, error = %e, "health board unreachable; probing without its claim");
                true
            }
        }
    }

    /// Asks the gates, in order, whether `message` may go now: the first answer other than
    /// allow, or allow.
    async fn ask_gates(
        &self,
        rec: &CascadeRecord,
        channel: &ChannelId,
        kind: ChannelKind,
        message: &OutboundMessage,
    ) -> GateDecision {
        let n = &rec.notification;
        let ctx = SendContext::new(self.now(), &n.id, channel, kind, &n.recipient, &message.to)
            .purpose(message.purpose)
            .text(message.content.text_for(kind));
        for g in &self.inner.gates {
            match g.check(&ctx).await {
                GateDecision::Allow => {}
                other => return other,
            }
        }
        GateDecision::Allow
    }
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
        written_at: DateTime<Utc>,
    ) -> Result<(), SinkError> {
        self.handle_reply_from_contact(contact, kind, written_at)
            .await
            .map(|_| ())
            .map_err(Into::into)
    }
}
