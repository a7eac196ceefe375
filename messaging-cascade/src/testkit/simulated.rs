//! A simulated channel whose delivery reports arrive after configurable latency, with failure
//! rates and outage periods, all on the injected clock; and a driver that runs an engine over
//! simulated channels in virtual time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use messaging_core::testkit::typical_capabilities;
use messaging_core::{Capabilities, Channel, Cost, OutboundMessage, SendReceipt};
use messaging_core::{ChannelError, ErrorKind};
use messaging_core::{ChannelId, ChannelKind, Evidence};
use messaging_core::{Clock, ManualClock, chrono_dur};
use messaging_core::{DeliveryReport, DeliveryStatus, Event, ProviderError};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long delivery takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Latency {
    /// Always the same.
    Fixed {
        /// Seconds.
        secs: f64,
    },
    /// Uniform between two bounds.
    Uniform {
        /// Lower bound, seconds.
        min_secs: f64,
        /// Upper bound, seconds.
        max_secs: f64,
    },
    /// Log-normal around a median (long tail, like real messengers).
    LogNormal {
        /// Median, seconds.
        median_secs: f64,
        /// Spread (sigma of the underlying normal); 0.5 to 1.0 is realistic.
        sigma: f64,
    },
}

impl Latency {
    /// Fixed latency.
    pub fn fixed(d: Duration) -> Self {
        Latency::Fixed {
            secs: d.as_secs_f64(),
        }
    }

    fn sample(&self, rng: &mut SmallRng) -> Duration {
        let secs = match *self {
            Latency::Fixed { secs } => secs,
            Latency::Uniform { min_secs, max_secs } => {
                if max_secs > min_secs {
                    rng.random_range(min_secs..max_secs)
                } else {
                    min_secs
                }
            }
            Latency::LogNormal { median_secs, sigma } => {
                match LogNormal::new(median_secs.max(1e-3).ln(), sigma.max(0.0)) {
                    Ok(d) => d.sample(rng),
                    Err(_) => median_secs,
                }
            }
        };
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::ZERO)
    }
}

/// What a channel does during an outage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageMode {
    /// Accepts messages but never delivers them (the WhatsApp "sent, never delivered" case).
    Silent,
    /// Refuses with temporary errors (5xx, timeouts).
    Refuse,
    /// Delivers, but this many seconds later than usual.
    Slow {
        /// Extra seconds.
        extra_secs: f64,
    },
}

/// A period in which a channel misbehaves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// How.
    pub mode: OutageMode,
}

/// How a simulated channel behaves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimBehavior {
    /// Send-to-delivered latency.
    pub latency: Latency,
    /// Share of accepted messages that are eventually delivered (the rest stay "sent").
    pub delivery_rate: f64,
    /// Share of sends refused at once.
    pub error_rate: f64,
    /// The kind of those refusals.
    pub error_kind: ErrorKind,
    /// Outage periods.
    pub outages: Vec<Outage>,
    /// Address keys (`"phone:+7..."`, `"tg:42"`) the channel cannot reach (not on WhatsApp, ...).
    #[serde(default)]
    pub unreachable: HashSet<String>,
    /// Address keys whose messages are accepted but never delivered (a person who never reads).
    #[serde(default)]
    pub silent: HashSet<String>,
    /// Cost per accepted message.
    pub cost_per_message: f64,
}

impl Default for SimBehavior {
    fn default() -> Self {
        SimBehavior {
            latency: Latency::LogNormal {
                median_secs: 20.0,
                sigma: 0.8,
            },
            delivery_rate: 1.0,
            error_rate: 0.0,
            error_kind: ErrorKind::Temporary,
            outages: Vec::new(),
            unreachable: HashSet::new(),
            silent: HashSet::new(),
            cost_per_message: 0.0,
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due(DateTime<Utc>, u64);

/// Reports waiting for their time: a min-heap of (due, sequence) and the reports by sequence.
type ReportQueue = (
    BinaryHeap<Reverse<Due>>,
    std::collections::HashMap<u64, Event>,
);

/// A channel whose delivery reports arrive on the injected clock after a sampled latency.
///
/// ```
/// use std::time::Duration;
/// use messaging_cascade::*;
/// use messaging_core::*;
/// use messaging_cascade::testkit::{Latency, SimBehavior, SimulatedChannel};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let clock = ManualClock::at_unix(1_767_250_800);
/// let wa = SimulatedChannel::new("wa", ChannelKind::WhatsApp, clock.clone(), 7)
///     .with_behavior(SimBehavior { latency: Latency::fixed(Duration::from_secs(30)), ..Default::default() });
/// wa.send_text(Address::WhatsApp("79123456789".into()), "hi").await.unwrap();
/// assert!(wa.due_events(clock.now()).is_empty());
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(wa.due_events(clock.now()).len(), 1);
/// # });
/// ```
pub struct SimulatedChannel {
    id: ChannelId,
    kind: ChannelKind,
    capabilities: Capabilities,
    clock: Arc<dyn Clock>,
    behavior: Mutex<SimBehavior>,
    rng: Mutex<SmallRng>,
    queue: Mutex<ReportQueue>,
    counter: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    delivered_reports: AtomicU64,
}

impl fmt::Debug for SimulatedChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedChannel")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Counters of a simulated channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub struct SimStats {
    /// Sends attempted.
    pub sends: u64,
    /// Sends accepted.
    pub accepted: u64,
    /// Sends refused.
    pub refused: u64,
    /// Delivery reports produced.
    pub delivered: u64,
}

impl SimulatedChannel {
    /// A channel of `kind` with typical capabilities, default behaviour and a seeded random source.
    pub fn new(id: impl Into<ChannelId>, kind: ChannelKind, clock: impl Clock, seed: u64) -> Self {
        SimulatedChannel {
            id: id.into(),
            kind,
            capabilities: typical_capabilities(kind),
            clock: Arc::new(clock),
            behavior: Mutex::new(SimBehavior::default()),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            queue: Mutex::new((BinaryHeap::new(), std::collections::HashMap::new())),
            counter: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            delivered_reports: AtomicU64::new(0),
        }
    }

    /// Sets the behaviour.
    pub fn with_behavior(self, b: SimBehavior) -> Self {
        *lock(&self.behavior) = b;
        self
    }

    /// Replaces the capabilities.
    pub fn with_capabilities(mut self, c: Capabilities) -> Self {
        self.capabilities = c;
        self
    }

    /// Changes the behaviour while running.
    pub fn set_behavior(&self, b: SimBehavior) {
        *lock(&self.behavior) = b;
    }

    /// Counters.
    pub fn stats(&self) -> SimStats {
        SimStats {
            sends: self.counter.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            delivered: self.delivered_reports.load(Ordering::Relaxed),
        }
    }

    /// Delivery reports due at or before `now`, in time order (removed from the queue).
    pub fn due_events(&self, now: DateTime<Utc>) -> Vec<Event> {
        let mut q = lock(&self.queue);
        let mut out = Vec::new();
        while q.0.peek().is_some_and(|Reverse(d)| d.0 <= now) {
            if let Some(Reverse(d)) = q.0.pop()
                && let Some(e) = q.1.remove(&d.1)
            {
                out.push(e);
            }
        }
        self.delivered_reports
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// When the next report is due.
    pub fn next_event_at(&self) -> Option<DateTime<Utc>> {
        lock(&self.queue).0.peek().map(|Reverse(d)| d.0)
    }
}

#[async_trait]
impl Channel for SimulatedChannel {
    fn id(&self) -> &ChannelId {
        &self.id
    }
    fn kind(&self) -> ChannelKind {
        self.kind
    }
    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let now = self.clock.now();
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let b = lock(&self.behavior).clone();
        let key = message.to.key();
        let outage = b.outages.iter().find(|o| o.start <= now && now < o.end);
        if matches!(outage.map(|o| o.mode), Some(OutageMode::Refuse)) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(
                ChannelError::temporary("simulated outage: 503 Service Unavailable")
                    .with_provider_code("503"),
            );
        }
        if b.unreachable.contains(&key) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(
                ChannelError::unreachable("simulated: recipient not on this messenger")
                    .with_provider_code("unreachable"),
            );
        }
        let (refuse, deliver, latency) = {
            let mut rng = lock(&self.rng);
            let refuse = rng.random_bool(b.error_rate.clamp(0.0, 1.0));
            let deliver = rng.random_bool(b.delivery_rate.clamp(0.0, 1.0));
            (refuse, deliver, b.latency.sample(&mut rng))
        };
        if refuse {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ChannelError::new(b.error_kind, "simulated refusal"));
        }
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let pmid = format!("{}-{n}", self.id);
        let mut receipt = SendReceipt::new(pmid.clone(), now);
        if b.cost_per_message > 0.0 {
            receipt = receipt.cost(Cost::new(b.cost_per_message, "RUB"));
        }
        let can_report = self.capabilities.strongest_evidence > Evidence::Accepted;
        let silent =
            matches!(outage.map(|o| o.mode), Some(OutageMode::Silent)) || b.silent.contains(&key);
        if can_report && deliver && !silent {
            let extra = match outage.map(|o| o.mode) {
                Some(OutageMode::Slow { extra_secs }) => {
                    Duration::try_from_secs_f64(extra_secs.max(0.0)).unwrap_or_default()
                }
                _ => Duration::ZERO,
            };
            let at = now + chrono_dur(latency + extra);
            let mut report = DeliveryReport::new(self.kind, pmid, DeliveryStatus::Delivered, at)
                .recipient(message.to.to_string())
                .channel_id(self.id.clone());
            if let Some(id) = &message.notification_id {
                report = report.notification_id(id.clone());
            }
            let mut q = lock(&self.queue);
            q.0.push(Reverse(Due(at, n)));
            q.1.insert(n, Event::Delivery(report));
        }
        Ok(receipt)
    }
}

/// A failed delivery report, for tests that script one.
pub fn failed_report(
    kind: ChannelKind,
    provider_message_id: &str,
    at: DateTime<Utc>,
    code: &str,
) -> Event {
    Event::Delivery(
        DeliveryReport::new(kind, provider_message_id, DeliveryStatus::Failed, at).error(
            ProviderError {
                code: code.to_owned(),
                message: "simulated failure".to_owned(),
                kind: Some(ErrorKind::Unreachable),
            },
        ),
    )
}

/// Runs an engine over simulated channels in virtual time: jumps the clock to the next timer or
/// report, hands reports to the engine, fires timers.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use messaging_cascade::*;
/// use messaging_core::*;
/// use messaging_cascade::testkit::{SimulatedChannel, Simulation};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let clock = ManualClock::at_unix(1_767_250_800);
/// let wa = Arc::new(SimulatedChannel::new("wa", ChannelKind::WhatsApp, clock.clone(), 1));
/// let engine = Engine::builder()
///     .clock(clock.clone())
///     .channel(wa.clone())
///     .policy(CascadePolicy::new("p", vec![Step::new("wa")]))
///     .build()
///     .unwrap();
/// let sim = Simulation::new(engine.clone(), clock.clone()).channel(wa);
/// engine.submit(Notification::new("n1",
///     Recipient::with_phone("c1", "+79123456789").unwrap(), Content::text("Hi"))).await.unwrap();
/// sim.run_for(Duration::from_secs(7200)).await.unwrap();
/// let st = engine.status(&"n1".into()).await.unwrap().unwrap();
/// assert_eq!(st.outcome.unwrap().name(), "delivered");
/// # });
/// ```
#[derive(Debug)]
pub struct Simulation {
    engine: Engine,
    clock: ManualClock,
    channels: Vec<Arc<SimulatedChannel>>,
}

impl Simulation {
    /// A simulation of `engine`, whose clock must be `clock`.
    pub fn new(engine: Engine, clock: ManualClock) -> Self {
        Simulation {
            engine,
            clock,
            channels: Vec::new(),
        }
    }

    /// Adds a simulated channel whose reports are fed to the engine.
    pub fn channel(mut self, c: Arc<SimulatedChannel>) -> Self {
        self.channels.push(c);
        self
    }

    /// The time of the next thing that happens (a timer or a report).
    pub async fn next_at(&self) -> Result<Option<DateTime<Utc>>, crate::engine::EngineError> {
        let mut next = self.engine.next_wake().await?;
        for c in &self.channels {
            if let Some(t) = c.next_event_at() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        Ok(next)
    }

    /// Hands due reports to the engine and fires due timers at the current time.
    pub async fn step(&self) -> Result<(), crate::engine::EngineError> {
        let now = self.clock.now();
        for c in &self.channels {
            for e in c.due_events(now) {
                self.engine.handle_event(&e).await?;
            }
        }
        self.engine.tick().await?;
        Ok(())
    }

    /// Runs until virtual time `end` (or until nothing is left to happen before it).
    pub async fn run_until(&self, end: DateTime<Utc>) -> Result<(), crate::engine::EngineError> {
        // Bounded so that a bug cannot spin forever.
        for _ in 0..10_000_000u64 {
            let Some(next) = self.next_at().await? else {
                return Ok(());
            };
            if next > end {
                self.clock.set(end);
                return Ok(());
            }
            self.clock.set(next);
            self.step().await?;
        }
        Ok(())
    }

    /// Runs for a span of virtual time.
    pub async fn run_for(&self, d: Duration) -> Result<(), crate::engine::EngineError> {
        let end = self.clock.now() + chrono_dur(d);
        self.run_until(end).await
    }
}
