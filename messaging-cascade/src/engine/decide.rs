//! The cascade's decisions as one pure function, [`decide`].
//!
//! `decide` takes a cascade's stored state, the [`Rules`] it runs by, a [`HealthView`] (a plain
//! snapshot of its channels' health), one [`Input`] (it was submitted, a timer fell due, a
//! channel answered a send, a gate answered, a delivery report or a reply came in) and the
//! time. It brings the record to the cascade's new state, in place, and returns a [`Decision`]:
//! the [`Action`]s that follow from it. It does no I/O, takes no lock and reads no clock, so the
//! same arguments always give the same decision, and tests can run thousands of cascades a
//! second through it.
//!
//! The record is changed in place (like `quinn-proto`'s `Connection`) rather than moved in and
//! out: a record is a couple of hundred bytes, and moving it through every decision and the
//! driver's futures cost about a thousand instructions per cascade in the engine's benchmark.
//!
//! Everything the engine decides is here: what to send on which step, when a step's window
//! ends ([`window_end`], the only place), what a send's error, a delivery report or a reply
//! means, when to move on, skips, deferrals (quiet hours, rate limits, backoff, gates), the
//! deadline, late reports, and what channel health does to a step (skip it, shorten its
//! window, probe a channel that is down).
//!
//! # The driver's side
//!
//! [`Engine`](super::Engine) is the driver; another one (a simulation, a test) must keep the
//! same contract:
//!
//! 1. Store the record (when [`Decision::changed`]) before performing any action, with a
//!    compare-and-swap on its version. On a conflict, load the record again and decide again:
//!    the decision was made on stale state. This is what makes "about to send attempt N"
//!    durable before the channel is called.
//! 2. Publish [`Decision::events`], the history entries the decision added.
//! 3. Perform the actions in order. Feed the result of [`Action::Send`] back as
//!    [`Input::SendOutcome`] and the answer to [`Action::CheckGates`] as [`Input::GateAnswer`].
//! 4. Call again with [`Input::TimerFired`] once the record's `wake_at` has come.
//!
//! If the driver stops between storing a send's intent and feeding back its outcome, the
//! attempt stays `Sending` until `wake_at` (the in-flight lease); the next decision marks it
//! [`AttemptState::Unknown`], like a send that failed with
//! [`ErrorKind::OutcomeUnknown`](messaging_core::ErrorKind::OutcomeUnknown), and the step's
//! [`UnknownOutcome`] policy decides: wait for the attempt's evidence until its window closes,
//! or send again, marked `possible_duplicate`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use chrono::{TimeZone, Utc};
//! use messaging_cascade::engine::decide::{
//!     Action, ChannelFacts, HealthView, Input, Rules, begin, decide,
//! };
//! use messaging_cascade::engine::Phase;
//! use messaging_cascade::{CascadePolicy, Notification, Step};
//! use messaging_core::*;
//!
//! let rules = Rules::new(
//!     CascadePolicy::new("p", vec![Step::new("wa"), Step::new("sms")]),
//!     |channel| {
//!         let kind = if channel.as_str() == "wa" { ChannelKind::WhatsApp } else { ChannelKind::Sms };
//!         Some(ChannelFacts::new(kind, Capabilities::new(4096, TextUnit::Chars, Evidence::Delivered)))
//!     },
//! );
//! let health = HealthView::new(); // every channel healthy
//! let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
//! let patient = Recipient::with_phone("patient-1", "+79123456789").unwrap();
//! let n = Notification::new("appt-1", patient, Content::text("Приём завтра в 10:00"));
//!
//! // Submitted: send on WhatsApp. The intent is in the record: store it, then send.
//! let mut cascade = begin(n, &rules, t0);
//! let d = decide(&mut cascade, &rules, &health, &Input::Submitted, t0);
//! let [Action::Send { attempt, channel, .. }] = &d.actions[..] else { panic!() };
//! assert_eq!(channel.as_str(), "wa");
//! assert!(matches!(cascade.phase, Phase::Sending { .. }));
//!
//! // WhatsApp accepted it: wait an hour (the step's window) for "delivered".
//! let receipt = SendReceipt::new("wamid.1", t0);
//! let input = Input::SendOutcome { attempt: *attempt, result: Ok(receipt) };
//! let _ = decide(&mut cascade, &rules, &health, &input, t0);
//! let Phase::Waiting { window_end, .. } = cascade.phase else { panic!() };
//! assert_eq!(window_end, t0 + chrono::Duration::hours(1));
//!
//! // No report within the window: move on to SMS.
//! let d = decide(&mut cascade, &rules, &health, &Input::TimerFired, window_end);
//! assert!(matches!(&d.actions[..], [Action::Send { channel, .. }] if channel.as_str() == "sms"));
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::policy::{CascadePolicy, HealthAction, QuietHours, Step, UnknownOutcome};
use super::record::{
    Attempt, AttemptState, CascadeRecord, DeferReason, HistoryEntry, HistoryKind, Notification,
    Outcome, Phase, SkipReason,
};
use crate::health::{Admission, HealthConfig, HealthState};
use messaging_core::gate::GateDecision;
use messaging_core::{
    Capabilities, ChannelError, ChannelId, ChannelKind, DeliveryReport, ErrorKind, Evidence,
    OutboundMessage, ProviderMessageId, Purpose, SendReceipt, UNEXPECTED_RETRIES, chrono_dur,
};

/// What a step's channel is and can do, as the decisions need it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelFacts {
    /// The kind of messenger.
    pub kind: ChannelKind,
    /// What it can carry and the strongest evidence it can give.
    pub capabilities: Capabilities,
}

impl ChannelFacts {
    /// Facts about a channel.
    pub fn new(kind: ChannelKind, capabilities: Capabilities) -> Self {
        ChannelFacts { kind, capabilities }
    }
}

/// What a cascade is decided by, besides its own state: its policy, what each step's channel
/// can do, and the engine's settings. Built once per policy.
#[derive(Clone, Debug)]
pub struct Rules {
    policy: Arc<CascadePolicy>,
    /// By step index; `None`: the step names a channel the engine does not have.
    channels: Vec<Option<ChannelFacts>>,
    regulated: bool,
    default_time_zone: chrono_tz::Tz,
    in_flight_lease: Duration,
    reply_clock_skew: Duration,
    health: Option<HealthConfig>,
    gated: bool,
}

impl Rules {
    /// Rules for `policy`, with `facts` telling what each step's channel is. The settings are
    /// the engine's defaults: not regulated, quiet hours in Europe/Moscow for recipients without
    /// a time zone, a 2-minute in-flight lease, a 1-minute reply clock skew, channel health
    /// on, no gates.
    pub fn new(
        policy: impl Into<Arc<CascadePolicy>>,
        facts: impl Fn(&ChannelId) -> Option<ChannelFacts>,
    ) -> Self {
        let policy = policy.into();
        let channels = policy.steps.iter().map(|s| facts(&s.channel)).collect();
        Rules {
            policy,
            channels,
            regulated: false,
            default_time_zone: chrono_tz::Europe::Moscow,
            in_flight_lease: Duration::from_secs(120),
            reply_clock_skew: Duration::from_secs(60),
            health: Some(HealthConfig::default()),
            gated: false,
        }
    }

    /// A regulated sender: steps on foreign messengers (WhatsApp, Telegram) are skipped.
    pub fn regulated(mut self, yes: bool) -> Self {
        self.regulated = yes;
        self
    }
    /// The time zone for quiet hours when the recipient has none.
    pub fn default_time_zone(mut self, tz: chrono_tz::Tz) -> Self {
        self.default_time_zone = tz;
        self
    }
    /// How long a send may be in flight before its outcome counts as unknown.
    pub fn in_flight_lease(mut self, d: Duration) -> Self {
        self.in_flight_lease = d;
        self
    }
    /// How much earlier than the cascade's first send a reply may be dated and still end it
    /// (the provider's clock and ours disagree a little). A message written before that is
    /// not an answer to this cascade: an old message replayed by a provider retry or after a
    /// restart does not end it.
    pub fn reply_clock_skew(mut self, d: Duration) -> Self {
        self.reply_clock_skew = d;
        self
    }
    /// Channel health on (with its thresholds) or off (`None`: fixed windows, nothing skipped
    /// for health).
    pub fn health(mut self, config: Option<HealthConfig>) -> Self {
        self.health = config;
        self
    }
    /// Whether gates must be asked before each send ([`Action::CheckGates`]).
    pub fn gated(mut self, yes: bool) -> Self {
        self.gated = yes;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &CascadePolicy {
        &self.policy
    }

    /// The health thresholds, when channel health is on.
    pub fn health_config(&self) -> Option<&HealthConfig> {
        self.health.as_ref()
    }

    /// Facts about the channel of step `step`.
    pub fn channel_facts(&self, step: usize) -> Option<&ChannelFacts> {
        self.channels.get(step).and_then(Option::as_ref)
    }

    /// The evidence step `step` waits for: its policy's, capped at what its channel can give
    /// (a reply is always possible).
    pub fn evidence_awaited(&self, step: usize) -> Evidence {
        let Some(s) = self.policy.steps.get(step) else {
            return Evidence::Delivered;
        };
        let strongest = self
            .channel_facts(step)
            .map_or(Evidence::Accepted, |c| c.capabilities.strongest_evidence);
        if s.wait_for == Evidence::Replied {
            Evidence::Replied
        } else {
            s.wait_for.min(strongest)
        }
    }

    /// Why no step could ever carry `n`, if none can: checked at submit, so that a notice
    /// nobody can receive is refused instead of stored.
    pub(crate) fn unreachable(&self, n: &Notification) -> Option<Unreachable> {
        let mut any_address = false;
        for (step, facts) in self.policy.steps.iter().zip(&self.channels) {
            let Some(facts) = facts else { continue };
            if self.regulated && facts.kind.is_foreign_messenger() {
                continue;
            }
            if n.recipient.has_address_for(facts.kind) {
                any_address = true;
                let content = step.content.as_ref().unwrap_or(&n.content);
                if facts.capabilities.fits(content.text_for(facts.kind)) {
                    return None;
                }
            }
        }
        Some(if any_address {
            Unreachable::ContentTooLong
        } else {
            Unreachable::NoAddress
        })
    }
}

/// Why no step of a policy can carry a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unreachable {
    /// No step's channel has an address for the person.
    NoAddress,
    /// The content is too long for every channel that has one.
    ContentTooLong,
}

/// One channel's health as a decision sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelCondition {
    /// Healthy, degraded or down: a step waiting on a channel that turns bad has its window
    /// cut by the policy's `on_degraded` / `on_down`.
    pub state: HealthState,
    /// Whether a new send of this cascade may go on the channel now.
    pub admission: Admission,
    /// The provider asked us to slow down on this channel until then (all cascades wait).
    pub rate_limited_until: Option<DateTime<Utc>>,
}

impl ChannelCondition {
    /// A healthy channel, not rate limited.
    pub const HEALTHY: ChannelCondition = ChannelCondition {
        state: HealthState::Healthy,
        admission: Admission::Healthy,
        rate_limited_until: None,
    };
}

impl Default for ChannelCondition {
    fn default() -> Self {
        ChannelCondition::HEALTHY
    }
}

/// A plain snapshot of the health of the channels a cascade may use, taken by the driver just
/// before a decision. Channels not in it are healthy. It is per cascade: a recovering channel
/// admits some notifications and not others.
#[derive(Clone, Debug, Default)]
pub struct HealthView {
    channels: Vec<(ChannelId, ChannelCondition)>,
}

impl HealthView {
    /// Every channel healthy, nothing rate limited.
    pub fn new() -> Self {
        HealthView::default()
    }
    /// An empty view with room for `n` channels.
    pub fn with_capacity(n: usize) -> Self {
        HealthView {
            channels: Vec::with_capacity(n),
        }
    }
    /// Sets a channel's condition.
    pub fn set(&mut self, channel: ChannelId, condition: ChannelCondition) {
        match self.channels.iter_mut().find(|(c, _)| *c == channel) {
            Some((_, old)) => *old = condition,
            None => self.channels.push((channel, condition)),
        }
    }
    /// With a channel's condition set.
    pub fn with(mut self, channel: impl Into<ChannelId>, condition: ChannelCondition) -> Self {
        self.set(channel.into(), condition);
        self
    }
    /// Whether every channel is healthy and nothing is rate limited.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
    /// A channel's condition (healthy if unknown).
    pub fn condition(&self, channel: &ChannelId) -> ChannelCondition {
        // A linear scan: a cascade has a handful of channels.
        self.channels
            .iter()
            .find(|(c, _)| c == channel)
            .map_or(ChannelCondition::HEALTHY, |(_, cond)| *cond)
    }
}

/// Something that happened to a cascade, for [`decide`] to act on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// The cascade was just stored by submit.
    Submitted,
    /// Its `wake_at` has come (a window closing, a backoff or deferral over, a lease run out),
    /// or the driver just looks again.
    TimerFired,
    /// The channel answered [`Action::Send`] of attempt `attempt`.
    SendOutcome {
        /// The attempt's index in [`CascadeRecord::attempts`].
        attempt: usize,
        /// The channel's answer.
        result: Result<SendReceipt, ChannelError>,
    },
    /// The gates answered [`Action::CheckGates`] for step `step`: the first answer other than
    /// allow, or allow.
    GateAnswer {
        /// The step asked about.
        step: usize,
        /// The answer.
        answer: GateDecision,
    },
    /// A delivery report for attempt `attempt` (found by its provider message id).
    DeliveryReport {
        /// The attempt's index in [`CascadeRecord::attempts`].
        attempt: usize,
        /// The report.
        report: DeliveryReport,
    },
    /// The person wrote back, on a channel of this kind. It ends the cascade only if it was
    /// written after the cascade's first send (less the rules' reply clock skew).
    Reply {
        /// Where the reply came from.
        channel: ChannelKind,
        /// When the person wrote it, by the provider's clock.
        written_at: DateTime<Utc>,
    },
    /// The application cancelled the cascade.
    Cancel,
}

/// What the driver must do once the decision's record is stored.
#[derive(Debug)]
#[non_exhaustive]
pub enum Action {
    /// Ask the gates whether `message` may go on step `step` now; answer with
    /// [`Input::GateAnswer`]. Nothing is recorded until they answer.
    CheckGates {
        /// The step.
        step: usize,
        /// Its channel.
        channel: ChannelId,
        /// The channel's kind.
        kind: ChannelKind,
        /// What would be sent.
        message: OutboundMessage,
    },
    /// Send attempt `attempt` (its intent is in the record) and feed the outcome back as
    /// [`Input::SendOutcome`].
    Send {
        /// The attempt's index in [`CascadeRecord::attempts`].
        attempt: usize,
        /// The channel.
        channel: ChannelId,
        /// The message.
        message: OutboundMessage,
    },
    /// Tell channel health what happened.
    NoteHealth(HealthNote),
}

/// A fact for channel health (see [`HealthTracker`](crate::health::HealthTracker)).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum HealthNote {
    /// The channel accepted a send whose evidence is awaited: a latency sample opens.
    Sent {
        /// The channel.
        channel: ChannelId,
        /// The provider's id of the message.
        provider_message_id: ProviderMessageId,
        /// When it was accepted.
        at: DateTime<Utc>,
        /// Whether it is the channel's probe.
        probe: bool,
    },
    /// The channel accepted a send that will give no further evidence.
    Accepted {
        /// The channel.
        channel: ChannelId,
    },
    /// Evidence beyond "accepted" arrived for a send.
    Evidence {
        /// The channel.
        channel: ChannelId,
        /// The provider's id of the message.
        provider_message_id: ProviderMessageId,
        /// When the provider says it happened.
        at: DateTime<Utc>,
    },
    /// A send failed with a passing error.
    Error {
        /// The channel.
        channel: ChannelId,
        /// When.
        at: DateTime<Utc>,
    },
    /// The channel cannot send (bad token, restriction).
    Down {
        /// The channel.
        channel: ChannelId,
        /// When it was noticed.
        at: DateTime<Utc>,
        /// Until when, if the provider said.
        until: Option<DateTime<Utc>>,
        /// Why, in words.
        reason: String,
    },
    /// The provider asked us to slow down: no cascade sends on the channel before `until`.
    RateLimited {
        /// The channel.
        channel: ChannelId,
        /// Until when.
        until: DateTime<Utc>,
    },
}

impl HealthNote {
    /// The channel it is about.
    pub fn channel(&self) -> &ChannelId {
        match self {
            HealthNote::Sent { channel, .. }
            | HealthNote::Accepted { channel }
            | HealthNote::Evidence { channel, .. }
            | HealthNote::Error { channel, .. }
            | HealthNote::Down { channel, .. }
            | HealthNote::RateLimited { channel, .. } => channel,
        }
    }
}

/// What follows from [`decide`], besides the record's new state.
#[derive(Debug)]
#[must_use = "the record must be stored, then the actions performed"]
pub struct Decision {
    /// What to do once the record is stored, in order.
    pub actions: Vec<Action>,
    /// Whether the record changed (only then must it be stored).
    pub changed: bool,
    /// The index in the record's history of the first entry this decision added.
    pub first_event: usize,
}

impl Decision {
    /// The channel whose probe this decision sends, if it sends one: the driver claims the
    /// probe before it stores the record, and decides again without it if it is gone.
    pub(crate) fn probe<'d>(&'d self, record: &CascadeRecord) -> Option<&'d ChannelId> {
        self.actions.iter().find_map(|a| match a {
            Action::Send {
                attempt, channel, ..
            } if record.attempts.get(*attempt).is_some_and(|a| a.probe) => Some(channel),
            _ => None,
        })
    }

    /// The history entries this decision added to `record`: publish them once it is stored.
    pub fn events<'r>(&self, record: &'r CascadeRecord) -> &'r [HistoryEntry] {
        let h = &record.history;
        &h[self.first_event.min(h.len())..]
    }
}

/// A new cascade for `notification` under `rules`, ready for its first step now. Store it,
/// then [`decide`] with [`Input::Submitted`].
pub fn begin(notification: Notification, rules: &Rules, now: DateTime<Utc>) -> CascadeRecord {
    begin_in(Arc::new(notification), rules, now, Vec::new(), Vec::new())
}

/// Room for the history of a cascade that ends on its first send (submitted, step started,
/// sending, sent, and its end), so that it never grows.
pub(crate) const FIRST_SEND_HISTORY: usize = 6;

/// [`begin`] for a notification already shared (the driver starts over from it when it
/// cannot keep a decision it made before storing the record), with its history and attempts
/// in the vectors given (emptied first): the driver reuses their room.
pub(crate) fn begin_in(
    notification: Arc<Notification>,
    rules: &Rules,
    now: DateTime<Utc>,
    mut history: Vec<HistoryEntry>,
    mut attempts: Vec<Attempt>,
) -> CascadeRecord {
    let policy = rules.policy.id.clone();
    history.clear();
    attempts.clear();
    history.reserve(FIRST_SEND_HISTORY);
    history.push(HistoryEntry {
        at: now,
        kind: HistoryKind::Submitted {
            policy: policy.clone(),
        },
    });
    if let Some(first) = rules.policy.steps.first() {
        history.push(HistoryEntry {
            at: now,
            kind: HistoryKind::StepStarted {
                step: 0,
                channel: first.channel.clone(),
            },
        });
    }
    CascadeRecord {
        notification,
        policy,
        version: 0,
        step: 0,
        phase: Phase::Ready,
        // Due at once, so that a crash before the first send still leaves a timer.
        wake_at: Some(now),
        rate_limit_waits: 0,
        attempts,
        history,
        created_at: now,
    }
}

/// When the wait for evidence on `attempt` (of step `step`) ends; `None` before the channel
/// accepted it (or, for an attempt whose outcome is unknown, from when it started: it may have
/// been accepted then). The only place a window end is computed.
///
/// The window is counted **from the moment the channel accepted the attempt** (`sent_at`):
/// evidence can only follow acceptance, so this measures what the window is about, the
/// channel's delivery latency, and the same span channel health judges as overdue. Time spent
/// before acceptance (backoff, rate-limit waits, quiet hours, gates, a slow request) does not
/// eat into the wait, and the end is never before the attempt.
///
/// The length is the step's window, cut to the attempt's
/// [`shortened_window`](Attempt::shortened_window) (set when it was admitted on a degraded
/// channel, or as a probe), and to `health_cut` (the policy's answer to the channel turning
/// degraded or down while the attempt waits).
///
/// ```
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use messaging_cascade::Step;
/// use messaging_cascade::engine::{Attempt, AttemptState, decide::window_end};
///
/// let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
/// let step = Step::new("wa").window(Duration::from_secs(3600));
/// let attempt = Attempt {
///     step: 0, channel: "wa".into(), number: 1, started_at: t0,
///     sent_at: Some(t0 + chrono::Duration::seconds(2)),
///     provider_message_id: None, evidence: None, evidence_at: None,
///     state: AttemptState::Sent, possible_duplicate: false, forced_template: false, cost: None,
///     shortened_window: None, probe: false,
/// };
/// let accepted = t0 + chrono::Duration::seconds(2);
/// assert_eq!(window_end(&attempt, &step, None), Some(accepted + chrono::Duration::hours(1)));
/// let cut = Some(Duration::from_secs(600)); // the channel turned degraded
/// assert_eq!(window_end(&attempt, &step, cut), Some(accepted + chrono::Duration::minutes(10)));
/// ```
pub fn window_end(
    attempt: &Attempt,
    step: &Step,
    health_cut: Option<Duration>,
) -> Option<DateTime<Utc>> {
    // An attempt whose outcome is unknown may have been accepted from when it started.
    let accepted = match (attempt.sent_at, &attempt.state) {
        (Some(sent), _) => sent.max(attempt.started_at),
        (None, AttemptState::Unknown) => attempt.started_at,
        (None, _) => return None,
    };
    let window = [attempt.shortened_window, health_cut]
        .into_iter()
        .flatten()
        .fold(step.window, Duration::min);
    Some(later(accepted, window))
}

/// Why an attempt's outcome is unknown when the driver stopped while sending it.
const LEASE_RAN_OUT: &str = "the engine stopped while sending (in-flight lease ran out)";

/// `t + d`, saturating instead of overflowing on absurd durations.
fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(chrono_dur(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Decides what `input` means for the cascade in `record` at `now`, and moves the cascade on as
/// far as it can go without the outside world: through skips, closed windows and steps, up to
/// a send, a gate check, a wait or the end. `record` is left in the new state. See the
/// [module docs](self) for the driver's side.
pub fn decide(
    record: &mut CascadeRecord,
    rules: &Rules,
    health: &HealthView,
    input: &Input,
    now: DateTime<Utc>,
) -> Decision {
    decide_into(record, rules, health, input, now, Vec::new())
}

/// [`decide`], with its actions in `actions` (emptied first): the driver hands back the room
/// of its last decision's actions, so that a cascade's decisions share one allocation.
pub(crate) fn decide_into(
    record: &mut CascadeRecord,
    rules: &Rules,
    health: &HealthView,
    input: &Input,
    now: DateTime<Utc>,
    mut actions: Vec<Action>,
) -> Decision {
    actions.clear();
    let first_event = record.history.len();
    let wake_before = record.wake_at;
    let mut c = Cascade {
        rec: record,
        rules,
        health,
        now,
        actions,
    };
    let mut gate_answer = None;
    match input {
        Input::Submitted | Input::TimerFired => {}
        Input::SendOutcome { attempt, result } => c.settle_send(*attempt, result),
        Input::GateAnswer { step, answer } => gate_answer = Some((*step, answer)),
        Input::DeliveryReport { attempt, report } => c.apply_report(*attempt, report),
        Input::Reply {
            channel,
            written_at,
        } => {
            if c.answers_this_cascade(*written_at) {
                c.end(Outcome::Replied { channel: *channel });
            }
        }
        Input::Cancel => c.end(Outcome::Cancelled),
    }
    c.move_on(gate_answer);
    // Every change of state adds a history entry, except rescheduling a waiting cascade's
    // health check-back, which only moves wake_at.
    let changed = c.rec.history.len() != first_event || c.rec.wake_at != wake_before;
    Decision {
        actions: c.actions,
        changed,
        first_event,
    }
}

/// One decision in progress.
struct Cascade<'a> {
    rec: &'a mut CascadeRecord,
    rules: &'a Rules,
    health: &'a HealthView,
    now: DateTime<Utc>,
    actions: Vec<Action>,
}

impl<'a> Cascade<'a> {
    fn step(&self, i: usize) -> Option<&'a Step> {
        self.rules.policy.steps.get(i)
    }

    fn push(&mut self, kind: HistoryKind) {
        self.rec.history.push(HistoryEntry { at: self.now, kind });
    }

    fn note_health(&mut self, note: HealthNote) {
        self.actions.push(Action::NoteHealth(note));
    }

    /// Moves the cascade on from where it stands, until it must wait for the world.
    fn move_on(&mut self, mut gate_answer: Option<(usize, &GateDecision)>) {
        let steps = self.rules.policy.steps.len();
        // Bounded: every round but the last moves the cascade to a later step or out of an
        // in-flight send, which happens at most once per step.
        for _ in 0..(2 * steps + 4) {
            match self.rec.phase {
                Phase::Finished(_) => return,
                // The policy lost steps (or was removed) since this cascade started.
                _ if self.rec.step >= steps => {
                    self.finish(Outcome::Exhausted);
                    return;
                }
                _ if self.rec.wake_at.is_some_and(|w| self.now < w) => return,
                Phase::Sending { attempt } => self.lease_ran_out(attempt),
                Phase::Waiting {
                    attempt,
                    window_end,
                    ..
                } => {
                    if !self.check_window(attempt, window_end) {
                        return;
                    }
                }
                Phase::Ready => {
                    if !self.try_step(gate_answer.take()) {
                        return;
                    }
                }
            }
        }
    }

    /// The driver stopped while attempt `idx` was in flight: its outcome is unknown, and the
    /// step's [`UnknownOutcome`] policy decides. A resend after a lost driver goes at once
    /// and does not use up the step's retries: the provider did not fail.
    fn lease_ran_out(&mut self, idx: usize) {
        if self.rec.attempts.get(idx).is_none() {
            let step = self.rec.step;
            let channel = self.rules.policy.steps[step].channel.clone();
            self.push(HistoryKind::OutcomeUnknown {
                step,
                channel,
                attempt: 0,
                reason: Some(LEASE_RAN_OUT.into()),
            });
            self.rec.phase = Phase::Ready;
            self.rec.wake_at = Some(self.now);
            return;
        }
        self.outcome_unknown(idx, LEASE_RAN_OUT.into(), true, false);
    }

    /// Attempt `idx` may have been sent, but its outcome is unknown (`reason`). Marks it so;
    /// when it is the cascade's `current` attempt, follows the step's [`UnknownOutcome`]
    /// policy: wait for its evidence until its window closes, or resend (after a backoff
    /// within the step's retries when the `provider_failed`, at once when the driver did).
    fn outcome_unknown(
        &mut self,
        idx: usize,
        reason: Box<str>,
        current: bool,
        provider_failed: bool,
    ) {
        let a = &mut self.rec.attempts[idx];
        a.state = AttemptState::Unknown;
        let (i, channel, number) = (a.step, a.channel.clone(), a.number);
        self.push(HistoryKind::OutcomeUnknown {
            step: i,
            channel,
            attempt: number,
            reason: Some(reason),
        });
        if !current {
            return;
        }
        let Some(step) = self.step(i) else {
            self.advance();
            return;
        };
        let awaited = self.rules.evidence_awaited(i);
        match step.unknown_outcome(awaited) {
            UnknownOutcome::AwaitEvidence => {
                let a = &self.rec.attempts[idx];
                let end = window_end(a, step, None).unwrap_or(self.now);
                let started = a.started_at;
                self.rec.phase = Phase::Waiting {
                    attempt: idx,
                    wait_for: awaited,
                    window_end: end,
                };
                self.rec.wake_at = Some(self.next_check(started, end));
            }
            UnknownOutcome::Resend if provider_failed => self.retry_or_advance(i, step),
            UnknownOutcome::Resend => {
                self.rec.phase = Phase::Ready;
                self.rec.wake_at = Some(self.now);
            }
        }
    }

    /// After a passing failure on step `i`: try again after a backoff when the step's retries
    /// and window allow, else move on.
    fn retry_or_advance(&mut self, i: usize, step: &Step) {
        let tries = self.rec.attempts_on(i);
        let limit = match self.rec.attempts.last().map(|a| &a.state) {
            Some(AttemptState::Failed {
                kind: ErrorKind::Unexpected,
                ..
            }) => step.retry.max_attempts.min(1 + UNEXPECTED_RETRIES),
            _ => step.retry.max_attempts,
        };
        let wait = step.retry.backoff(tries);
        let until = later(self.now, wait);
        if tries < limit && self.worth_waiting(step, wait, until) {
            self.defer(until, DeferReason::Backoff);
        } else {
            self.advance();
        }
    }

    /// A wait as long as the step's window costs more than moving on would (the next
    /// channel would have been tried by then), and none may outlast the deadline.
    fn worth_waiting(&self, step: &Step, wait: Duration, until: DateTime<Utc>) -> bool {
        wait < step.window && self.rec.notification.deadline.is_none_or(|d| until < d)
    }

    /// Whether a reply written at `written_at` answers this cascade: it was written after the
    /// cascade's first send, less the clock skew the rules allow. Before any send nothing was
    /// asked, so nothing is answered.
    fn answers_this_cascade(&self, written_at: DateTime<Utc>) -> bool {
        self.rec
            .attempts
            .first()
            .is_some_and(|first| later(written_at, self.rules.reply_clock_skew) >= first.started_at)
    }

    /// A due check on a waiting cascade. Returns whether it moved on (the window closed).
    /// `closes_at` is the attempt's window end, fixed when it was accepted.
    fn check_window(&mut self, idx: usize, closes_at: DateTime<Utc>) -> bool {
        if self
            .rec
            .notification
            .deadline
            .is_some_and(|d| self.now >= d)
        {
            self.finish(Outcome::Expired);
            return true;
        }
        let i = self.rec.step;
        let rules = self.rules;
        let step = &rules.policy.steps[i];
        let attempt = self.rec.attempts.get(idx);
        // The channel turned degraded or down while we wait: the policy may cut the window.
        let cut = attempt.and_then(|a| self.health_cut(&a.channel));
        let end = match (attempt, cut) {
            (Some(a), Some(_)) => window_end(a, step, cut).map_or(closes_at, |e| e.min(closes_at)),
            _ => closes_at,
        };
        if self.now >= end {
            let early = self.now < closes_at;
            self.push(HistoryKind::WindowClosed {
                step: i,
                channel: step.channel.clone(),
                early,
            });
            self.advance();
            return true;
        }
        let sent = attempt.and_then(|a| a.sent_at).unwrap_or(self.now);
        let next = self.next_check(sent, end);
        self.rec.wake_at = Some(next);
        false
    }

    /// How a channel's health cuts the window of a step waiting on it, by the policy.
    fn health_cut(&self, channel: &ChannelId) -> Option<Duration> {
        self.rules.health.as_ref()?;
        let action = match self.health.condition(channel).state {
            HealthState::Healthy => return None,
            HealthState::Degraded => self.rules.policy.on_degraded,
            HealthState::Down => self.rules.policy.on_down,
        };
        match action {
            HealthAction::Proceed => None,
            HealthAction::ShortenWindow(d) => Some(d),
            HealthAction::Skip => Some(Duration::ZERO),
        }
    }

    /// When to look at a waiting cascade next: its window's end (or the deadline), or earlier
    /// with channel health on, so that a channel that turns degraded or down releases its
    /// waiting cascades.
    fn next_check(&self, sent: DateTime<Utc>, end: DateTime<Utc>) -> DateTime<Utc> {
        let mut t = end;
        if let Some(d) = self.rec.notification.deadline {
            t = t.min(d);
        }
        if let Some(h) = &self.rules.health {
            // Checks back off: after overdue_after, then doubling since the send, so a long
            // window costs a handful of wakes while an outage still releases waiting cascades
            // within about one check interval of being noticed.
            let base = chrono_dur(h.overdue_after.max(Duration::from_secs(1)));
            let gap = (self.now - sent).max(base);
            t = t.min(self.now.checked_add_signed(gap).unwrap_or(t));
        }
        t.max(self.now)
    }

    /// Tries the current step: skip it, wait, ask the gates, or record the intent to send and
    /// send. Returns whether the cascade moved on to another step (decide again at once).
    fn try_step(&mut self, gate_answer: Option<(usize, &GateDecision)>) -> bool {
        let i = self.rec.step;
        let rules = self.rules;
        let step = &rules.policy.steps[i];
        let now = self.now;
        let n = Arc::clone(&self.rec.notification);
        if n.deadline.is_some_and(|d| now >= d) {
            self.push(HistoryKind::Skipped {
                step: i,
                channel: step.channel.clone(),
                reason: SkipReason::DeadlinePassed,
            });
            self.finish(Outcome::Expired);
            return false;
        }
        let Some(facts) = self.rules.channel_facts(i) else {
            return self.skip(SkipReason::UnknownChannel);
        };
        let kind = facts.kind;
        if self.rules.regulated && kind.is_foreign_messenger() {
            return self.skip(SkipReason::ForeignMessengerBlocked);
        }
        let Some(address) = n.recipient.address_for(kind) else {
            return self.skip(SkipReason::NoAddress);
        };
        if n.recipient.has_opted_out(kind, n.purpose) {
            return self.skip(SkipReason::OptedOut);
        }
        if n.purpose == Purpose::Marketing && !n.recipient.marketing_consent {
            return self.skip(SkipReason::NoConsent);
        }
        let content = step.content.as_ref().unwrap_or(&n.content);
        if !facts.capabilities.fits(content.text_for(kind)) {
            return self.skip(SkipReason::ContentTooLong);
        }

        let condition = self.health.condition(&step.channel);
        let mut probe = false;
        let mut shortened_window = None;
        if let Some(hc) = &self.rules.health {
            let action = match condition.admission {
                Admission::Healthy => HealthAction::Proceed,
                Admission::Degraded => self.rules.policy.on_degraded,
                Admission::Down => self.rules.policy.on_down,
                Admission::Probe => {
                    // The probe's evidence must come within overdue_after to count.
                    probe = true;
                    shortened_window = Some(hc.overdue_after);
                    HealthAction::Proceed
                }
                Admission::NotInRamp => return self.skip(SkipReason::ChannelRecovering),
            };
            match action {
                HealthAction::Proceed => {}
                HealthAction::ShortenWindow(d) => shortened_window = Some(d),
                HealthAction::Skip => {
                    return self.skip(if condition.admission == Admission::Down {
                        SkipReason::ChannelDown
                    } else {
                        SkipReason::ChannelDegraded
                    });
                }
            }
        }
        if let Some(q) = &self.rules.policy.quiet_hours {
            let tz = n
                .recipient
                .time_zone
                .unwrap_or(self.rules.default_time_zone);
            let local = now.with_timezone(&tz);
            if q.contains(local.time()) {
                self.defer(quiet_end(q, local, now), DeferReason::QuietHours);
                return false;
            }
        }
        if let Some(until) = condition.rate_limited_until.filter(|u| *u > now) {
            self.defer(until, DeferReason::RateLimited);
            return false;
        }

        let previous = self.rec.attempts.iter().rev().find(|a| a.step == i);
        let possible_duplicate = previous.is_some_and(|a| matches!(a.state, AttemptState::Unknown));
        let force_template = previous.is_some_and(|a| {
            matches!(
                a.state,
                AttemptState::Failed {
                    kind: ErrorKind::NeedsTemplate,
                    ..
                }
            ) || (a.forced_template && possible_duplicate)
        });
        let message = OutboundMessage::new(address, content.clone(), n.purpose)
            .for_notification(n.id.clone())
            .force_template(force_template);

        if self.rules.gated {
            match gate_answer.filter(|(s, _)| *s == i).map(|(_, a)| a) {
                None => {
                    self.actions.push(Action::CheckGates {
                        step: i,
                        channel: step.channel.clone(),
                        kind,
                        message,
                    });
                    return false;
                }
                Some(GateDecision::Allow) => {}
                Some(GateDecision::Defer { until, reason }) => {
                    // Never "until now": that would ask again at once, forever.
                    let until = (*until).max(now + chrono::Duration::seconds(1));
                    self.defer(until, DeferReason::Governor(reason.clone()));
                    return false;
                }
                Some(GateDecision::Deny { reason }) => {
                    return self.skip(SkipReason::Refused(reason.clone()));
                }
            }
        }

        // Record the intent before the side effect: the driver stores this, then sends.
        let number = self.rec.attempts_on(i) + 1;
        let attempt = self.rec.attempts.len();
        // Room for this one only: a first push would make room for four (an attempt is large)
        // and most cascades make one or two.
        self.rec.attempts.reserve_exact(1);
        self.rec.attempts.push(Attempt {
            step: i,
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
            shortened_window,
            probe,
        });
        self.push(HistoryKind::Sending {
            step: i,
            channel: step.channel.clone(),
            attempt: number,
            possible_duplicate,
        });
        self.rec.phase = Phase::Sending { attempt };
        self.rec.wake_at = Some(later(now, self.rules.in_flight_lease));
        self.actions.push(Action::Send {
            attempt,
            channel: step.channel.clone(),
            message,
        });
        false
    }

    /// What the channel's answer to attempt `idx` means.
    fn settle_send(&mut self, idx: usize, result: &Result<SendReceipt, ChannelError>) {
        let Some(attempt) = self.rec.attempts.get(idx) else {
            return;
        };
        if !matches!(attempt.state, AttemptState::InFlight) {
            // Already settled: its lease ran out meanwhile and it counts as unknown.
            return;
        }
        let (i, channel, number, probe) = (
            attempt.step,
            attempt.channel.clone(),
            attempt.number,
            attempt.probe,
        );
        // A late answer for an attempt the cascade has left (it ended meanwhile) is recorded,
        // not acted on.
        let current = matches!(self.rec.phase, Phase::Sending { attempt } if attempt == idx);
        let now = self.now;
        match result {
            Ok(receipt) => {
                let wanted = self.rules.evidence_awaited(i);
                self.note_health(
                    if wanted > Evidence::Accepted && wanted != Evidence::Replied {
                        HealthNote::Sent {
                            channel: channel.clone(),
                            provider_message_id: receipt.provider_message_id.clone(),
                            at: now,
                            probe,
                        }
                    } else {
                        HealthNote::Accepted {
                            channel: channel.clone(),
                        }
                    },
                );
                let a = &mut self.rec.attempts[idx];
                a.state = AttemptState::Sent;
                a.sent_at = Some(now);
                a.provider_message_id = Some(receipt.provider_message_id.clone());
                a.evidence = Some(Evidence::Accepted);
                a.evidence_at = Some(receipt.accepted_at);
                a.cost = receipt.cost.clone();
                self.push(HistoryKind::Sent {
                    step: i,
                    channel: channel.clone(),
                    attempt: number,
                    provider_message_id: receipt.provider_message_id.clone(),
                });
                if !current {
                    return;
                }
                if wanted <= Evidence::Accepted {
                    self.finish(Outcome::Delivered {
                        step: i,
                        channel,
                        evidence: Evidence::Accepted,
                        late: false,
                    });
                    return;
                }
                let Some(step) = self.step(i) else {
                    // The policy lost this step meanwhile: nothing to wait by.
                    self.advance();
                    return;
                };
                let window_end = window_end(&self.rec.attempts[idx], step, None).unwrap_or(now);
                self.rec.phase = Phase::Waiting {
                    attempt: idx,
                    wait_for: wanted,
                    window_end,
                };
                self.rec.wake_at = Some(self.next_check(now, window_end));
            }
            Err(err) => {
                if let Some(note) = error_health_note(&channel, err, now) {
                    self.note_health(note);
                }
                if err.kind().may_have_been_sent() {
                    self.outcome_unknown(idx, err.message().into(), current, true);
                    return;
                }
                self.fail_attempt(
                    idx,
                    err.kind(),
                    err.provider_code().map(Into::into),
                    err.message().into(),
                );
                if current {
                    self.after_error(idx, err);
                }
            }
        }
    }

    /// Marks attempt `idx` failed and records why, in the attempt and the history.
    fn fail_attempt(
        &mut self,
        idx: usize,
        kind: ErrorKind,
        code: Option<Box<str>>,
        message: Box<str>,
    ) {
        let a = &mut self.rec.attempts[idx];
        a.state = AttemptState::Failed {
            kind,
            code: code.clone(),
            message: message.clone(),
        };
        let (step, channel, attempt) = (a.step, a.channel.clone(), a.number);
        self.push(HistoryKind::Failed {
            step,
            channel,
            attempt,
            kind,
            code,
            message,
        });
    }

    /// What a failed send means for the cascade (see the table in the engine's docs).
    fn after_error(&mut self, idx: usize, err: &ChannelError) {
        let (i, forced_template) = {
            let a = &self.rec.attempts[idx];
            (a.step, a.forced_template)
        };
        let Some(step) = self.step(i) else {
            self.advance();
            return;
        };
        let now = self.now;
        match err.kind() {
            ErrorKind::NeedsTemplate => {
                let content = step
                    .content
                    .as_ref()
                    .unwrap_or(&self.rec.notification.content);
                if content.template.is_some() && !forced_template {
                    // Again at once, with the template.
                    self.rec.phase = Phase::Ready;
                    self.rec.wake_at = Some(now);
                } else {
                    self.advance();
                }
            }
            ErrorKind::RateLimited => {
                let wait = err
                    .retry_after()
                    .unwrap_or_else(|| step.retry.backoff(self.rec.rate_limit_waits + 1));
                let until = later(now, wait);
                if self.rec.rate_limit_waits < step.retry.max_rate_limit_waits
                    && self.worth_waiting(step, wait, until)
                {
                    self.rec.rate_limit_waits += 1;
                    self.defer(until, DeferReason::RateLimited);
                } else {
                    self.advance();
                }
            }
            ErrorKind::Temporary | ErrorKind::Unexpected => self.retry_or_advance(i, step),
            _ => self.advance(),
        }
    }

    /// What a delivery report for attempt `idx` means.
    fn apply_report(&mut self, idx: usize, report: &DeliveryReport) {
        let Some(attempt) = self.rec.attempts.get(idx) else {
            return;
        };
        let (i, channel) = (attempt.step, attempt.channel.clone());
        match report.status.evidence() {
            None => {
                // A failure report. Repeated reports change nothing.
                if matches!(attempt.state, AttemptState::Failed { .. }) {
                    return;
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
                self.fail_attempt(idx, kind, code, message);
                if matches!(self.rec.phase, Phase::Waiting { attempt, .. } if attempt == idx) {
                    self.advance();
                }
            }
            Some(evidence) => {
                if attempt.evidence.is_some_and(|e| e >= evidence) {
                    return; // a repeated or weaker report
                }
                let a = &mut self.rec.attempts[idx];
                a.evidence = Some(evidence);
                a.evidence_at = Some(report.at);
                if a.provider_message_id.is_none() {
                    // An attempt whose answer was lost, found by the notification id the
                    // provider echoed: later reports find it by this id.
                    a.provider_message_id = Some(report.provider_message_id.clone());
                }
                if evidence > Evidence::Accepted {
                    self.note_health(HealthNote::Evidence {
                        channel: channel.clone(),
                        provider_message_id: report.provider_message_id.clone(),
                        at: report.at,
                    });
                }
                if self.rec.is_finished() || evidence < self.rules.evidence_awaited(i) {
                    self.push(HistoryKind::Evidence {
                        step: i,
                        channel,
                        evidence,
                    });
                    return;
                }
                // Evidence for an earlier step, after its window closed, still ends the
                // cascade: later steps not yet sent are stopped.
                let late = i < self.rec.step;
                self.finish(Outcome::Delivered {
                    step: i,
                    channel,
                    evidence,
                    late,
                });
            }
        }
    }

    /// Waits on the current step until `until`.
    fn defer(&mut self, until: DateTime<Utc>, reason: DeferReason) {
        let step = self.rec.step;
        let channel = self.rules.policy.steps[step].channel.clone();
        self.rec.phase = Phase::Ready;
        self.rec.wake_at = Some(until);
        self.push(HistoryKind::Deferred {
            step,
            channel,
            until,
            reason,
        });
    }

    /// Skips the current step with its reason. Returns `true`: the cascade moved on.
    fn skip(&mut self, reason: SkipReason) -> bool {
        let step = self.rec.step;
        let channel = self.rules.policy.steps[step].channel.clone();
        self.push(HistoryKind::Skipped {
            step,
            channel,
            reason,
        });
        self.advance();
        true
    }

    /// Moves to the next step now, or ends the cascade after the last.
    fn advance(&mut self) {
        let from = self.rec.step;
        self.rec.step += 1;
        self.rec.rate_limit_waits = 0;
        self.rec.phase = Phase::Ready;
        self.rec.wake_at = Some(self.now);
        if let Some(next) = self.step(self.rec.step) {
            let step = self.rec.step;
            self.push(HistoryKind::Advanced {
                from,
                to: Some(step),
            });
            self.push(HistoryKind::StepStarted {
                step,
                channel: next.channel.clone(),
            });
        } else {
            self.push(HistoryKind::Advanced { from, to: None });
            let last_sent = self
                .rec
                .attempts
                .iter()
                .rev()
                .find(|a| a.sent_at.is_some())
                .map(|a| (a.step, a.channel.clone()));
            self.finish(match last_sent {
                Some((step, channel)) => Outcome::Unconfirmed { step, channel },
                None => Outcome::Exhausted,
            });
        }
    }

    /// Ends the cascade unless it has ended already (a reply, a cancel).
    fn end(&mut self, outcome: Outcome) {
        if !self.rec.is_finished() {
            self.finish(outcome);
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        let entry = match &outcome {
            Outcome::Delivered {
                step,
                channel,
                evidence,
                late: true,
            } => HistoryKind::LateDelivery {
                step: *step,
                channel: channel.clone(),
                evidence: *evidence,
            },
            Outcome::Delivered {
                step,
                channel,
                evidence,
                ..
            } => HistoryKind::Delivered {
                step: *step,
                channel: channel.clone(),
                evidence: *evidence,
            },
            Outcome::Replied { channel } => HistoryKind::Replied { channel: *channel },
            Outcome::Unconfirmed { .. } => HistoryKind::Unconfirmed,
            Outcome::Exhausted => HistoryKind::Exhausted,
            Outcome::Expired => HistoryKind::Expired,
            Outcome::Cancelled => HistoryKind::Cancelled,
        };
        self.push(entry);
        self.rec.phase = Phase::Finished(outcome);
        self.rec.wake_at = None;
    }
}

/// What a send's error tells channel health.
fn error_health_note(
    channel: &ChannelId,
    err: &ChannelError,
    now: DateTime<Utc>,
) -> Option<HealthNote> {
    let channel = channel.clone();
    match err.kind() {
        ErrorKind::ChannelDown => Some(HealthNote::Down {
            channel,
            at: now,
            until: err.down_until(),
            reason: err.to_string(),
        }),
        ErrorKind::Temporary | ErrorKind::Unexpected | ErrorKind::OutcomeUnknown => {
            Some(HealthNote::Error { channel, at: now })
        }
        ErrorKind::RateLimited => Some(HealthNote::RateLimited {
            channel,
            until: later(now, err.retry_after().unwrap_or(Duration::from_secs(1))),
        }),
        _ => None,
    }
}

/// The UTC instant quiet hours end, given the local time inside them.
fn quiet_end<Tz: chrono::TimeZone>(
    q: &QuietHours,
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
