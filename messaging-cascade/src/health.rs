//! Channel health: healthy, degraded or down, per channel id, from delivery latency, the share
//! of sends overdue, errors and provider signals, with hysteresis and a gradual recovery.
//!
//! ```text
//!            overdue share ≥ degrade            overdue share ≥ down, N errors in a row,
//!   Healthy ─────────────────────────▶ Degraded ───────── bad token, restriction ──────▶ Down
//!      ▲   ◀───────────────────────── (≤ recover share)                                   │
//!      │                                                             probe_interval later  │
//!      └──── ramp done ◀── Recovering (share of traffic ramps up) ◀── probe delivered ◀────┘
//! ```
//!
//! A send is *overdue* when its evidence has not arrived `overdue_after` after it was sent. The
//! common advice "if the delay regularly exceeds an hour, the channel is failing" is
//! `overdue_after = 1h`; the default (5 minutes) notices an outage within minutes.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use messaging_core::chrono_dur;
use messaging_core::{NotificationId, ProviderMessageId};

/// Thresholds. Every field is configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// Samples older than this are forgotten.
    #[serde(with = "crate::engine::secs")]
    pub sample_window: Duration,
    /// A send without its evidence after this long is overdue.
    #[serde(with = "crate::engine::secs")]
    pub overdue_after: Duration,
    /// Judged sends (delivered or overdue) needed before latency can change the state.
    pub min_samples: usize,
    /// Overdue share at which a healthy channel becomes degraded.
    pub degrade_share: f64,
    /// Overdue share at which a channel is down.
    pub down_share: f64,
    /// Overdue share under which a degraded channel is healthy again (hysteresis).
    pub recover_share: f64,
    /// Failed sends in a row (temporary errors) that mark a channel down.
    pub errors_in_a_row_down: u32,
    /// How long a down channel rests before a probe is sent.
    #[serde(with = "crate::engine::secs")]
    pub probe_interval: Duration,
    /// How long traffic takes to return fully after a successful probe.
    #[serde(with = "crate::engine::secs")]
    pub ramp: Duration,
    /// The share of traffic a recovering channel takes at the start of the ramp.
    pub ramp_start_share: f64,
    /// How often the state is recomputed from samples (cheap, but not free).
    #[serde(with = "crate::engine::secs")]
    pub evaluate_every: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            sample_window: Duration::from_secs(20 * 60),
            overdue_after: Duration::from_secs(5 * 60),
            min_samples: 20,
            degrade_share: 0.25,
            down_share: 0.6,
            recover_share: 0.1,
            errors_in_a_row_down: 10,
            probe_interval: Duration::from_secs(5 * 60),
            ramp: Duration::from_secs(10 * 60),
            ramp_start_share: 0.1,
            evaluate_every: Duration::from_secs(10),
        }
    }
}

/// A channel's health as instances tell each other ([`shared_health`](crate::shared_health)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HealthChange {
    /// Working as expected.
    Healthy,
    /// Slow or warned by the provider: policies shorten windows or skip the step.
    Degraded,
    /// Not delivering: no sends until `until` (when the provider said how long) or a probe.
    Down {
        /// When the provider lifts its restriction, if it said.
        until: Option<DateTime<Utc>>,
    },
    /// A probe got through at `since`; traffic ramps back from then.
    Recovering {
        /// When the probe was delivered: the start of the shared ramp.
        since: DateTime<Utc>,
    },
}

/// The state of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Working as expected.
    Healthy,
    /// Slow: evidence arrives late for a noticeable share of sends, or the provider warned us.
    Degraded,
    /// Not delivering, or refusing to send.
    Down,
}

/// A snapshot of one channel's health.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelHealth {
    /// The state.
    pub state: HealthState,
    /// The share of new traffic the channel takes (below 1 while recovering).
    pub traffic_share: f64,
    /// Overdue share among judged sends in the sample window.
    pub overdue_share: f64,
    /// Median send-to-evidence latency among delivered sends in the window.
    #[serde(with = "crate::engine::secs")]
    pub median_latency: Duration,
    /// Judged sends in the window.
    pub judged: usize,
    /// Why it is in this state, in words.
    pub reason: String,
}

/// What the engine may do with a send on a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send as usual.
    Healthy,
    /// The channel is degraded: the policy decides (shorter window or skip).
    Degraded,
    /// The channel is down.
    Down,
    /// The channel is down but due a probe: send this one, as the probe.
    Probe,
    /// The channel is recovering and this notice is outside the share it takes now.
    NotInRamp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Normal(HealthState),
    Down {
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    },
    Probing {
        sent_at: DateTime<Utc>,
    },
    Recovering {
        since: DateTime<Utc>,
    },
}

#[derive(Debug, Clone)]
struct Sample {
    id: ProviderMessageId,
    sent_at: DateTime<Utc>,
    evidence_at: Option<DateTime<Utc>>,
}

/// The health book of one channel.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    config: HealthConfig,
    mode: Mode,
    samples: VecDeque<Sample>,
    /// The sequence number of `samples`' first entry (each sample's is its place in the order
    /// sent), so that evidence finds its sample at once rather than by a scan of the window: a
    /// campaign's reports would otherwise cost the square of its size.
    first_seq: u64,
    /// The sequence number of each sample still awaiting its evidence.
    open: HashMap<ProviderMessageId, u64, foldhash::fast::RandomState>,
    errors_in_a_row: u32,
    provider_degraded: bool,
    /// Another instance said the channel is degraded (until it says healthy).
    shared_degraded: bool,
    /// Another instance holds this channel's probe: our own claim stands aside.
    probing_elsewhere: bool,
    /// A down that began then was only inferred from another instance's probe: not news.
    quiet_down: Option<DateTime<Utc>>,
    /// When the state is next recomputed (`None`: at the next look). A deadline rather than
    /// the last time, so the check on every look is a comparison, not a subtraction.
    eval_due: Option<DateTime<Utc>>,
    cached: (f64, Duration, usize),
    probe_id: Option<ProviderMessageId>,
    reason: String,
}

impl HealthTracker {
    /// A healthy channel.
    pub fn new(config: HealthConfig) -> Self {
        HealthTracker {
            config,
            mode: Mode::Normal(HealthState::Healthy),
            samples: VecDeque::new(),
            first_seq: 0,
            open: HashMap::default(),
            errors_in_a_row: 0,
            provider_degraded: false,
            shared_degraded: false,
            probing_elsewhere: false,
            quiet_down: None,
            eval_due: None,
            cached: (0.0, Duration::ZERO, 0),
            probe_id: None,
            reason: "no problems seen".into(),
        }
    }

    /// A send was accepted and its evidence (beyond "accepted") is awaited.
    pub fn record_sent(&mut self, id: ProviderMessageId, at: DateTime<Utc>, probe: bool) {
        self.errors_in_a_row = 0;
        if probe {
            self.probing_elsewhere = false;
            self.probe_id = Some(id.clone());
            self.mode = Mode::Probing { sent_at: at };
        }
        let seq = self.first_seq + self.samples.len() as u64;
        self.open.insert(id.clone(), seq);
        self.samples.push_back(Sample {
            id,
            sent_at: at,
            evidence_at: None,
        });
    }

    /// A send was accepted by a channel that gives no further evidence (resets the error count).
    pub fn record_accepted(&mut self) {
        self.errors_in_a_row = 0;
    }

    /// Evidence arrived for a send.
    pub fn record_evidence(&mut self, id: &ProviderMessageId, at: DateTime<Utc>) {
        let Some(seq) = self.open.remove(id) else {
            return;
        };
        let index = seq
            .checked_sub(self.first_seq)
            .and_then(|i| usize::try_from(i).ok());
        let Some(sample) = index.and_then(|i| self.samples.get_mut(i)) else {
            return;
        };
        sample.evidence_at = Some(at);
        let sent_at = sample.sent_at;
        if self.probe_id.as_ref() == Some(id) {
            self.probe_id = None;
            if at - sent_at <= chrono_dur(self.config.overdue_after) {
                // The probe got through in time: forget the outage and ramp traffic back up.
                self.forget_samples();
                self.mode = Mode::Recovering { since: at };
                self.reason = "probe delivered; ramping traffic back".into();
            }
        }
        // Evidence can only make a channel look better. A troubled one is judged again at the
        // next look, so that it recovers promptly; a healthy one at its usual time (a judgement
        // is a pass over the window's samples: once per report would cost the square of a
        // campaign's size).
        if self.healthy_until().is_none() {
            self.eval_due = None;
        }
    }

    /// A send failed with a temporary error (network, 5xx, timeout).
    pub fn record_error(&mut self, at: DateTime<Utc>) {
        self.errors_in_a_row += 1;
        if self.errors_in_a_row >= self.config.errors_in_a_row_down {
            self.mark_down(
                at,
                None,
                format!("{} failed sends in a row", self.errors_in_a_row),
            );
        }
    }

    /// The channel cannot send (bad token, restriction) until `until` (or until a probe works).
    pub fn mark_down(&mut self, at: DateTime<Utc>, until: Option<DateTime<Utc>>, reason: String) {
        self.mode = Mode::Down { since: at, until };
        self.probe_id = None;
        self.reason = reason;
    }

    /// A provider said the channel's quality is low (WhatsApp RED) or fine again.
    pub fn set_provider_degraded(&mut self, degraded: bool, reason: String) {
        self.provider_degraded = degraded;
        self.reason = reason;
        self.eval_due = None;
    }

    /// The verdict other instances are told ([`shared_health`](crate::shared_health)), with
    /// when a `down` began (two outages with the same end are different news). `None` while a
    /// probe is out: its result is the next news.
    pub fn shared_verdict(
        &mut self,
        now: DateTime<Utc>,
    ) -> Option<(HealthChange, Option<DateTime<Utc>>)> {
        self.evaluate(now);
        match self.mode {
            Mode::Normal(HealthState::Healthy) => Some((HealthChange::Healthy, None)),
            Mode::Normal(_) => Some((HealthChange::Degraded, None)),
            Mode::Down { since, .. } if self.quiet_down == Some(since) => None,
            Mode::Down { since, until } => Some((HealthChange::Down { until }, Some(since))),
            Mode::Recovering { since } => Some((HealthChange::Recovering { since }, None)),
            Mode::Probing { .. } => None,
        }
    }

    /// Takes another instance's verdict (a [`HealthNotice`](crate::shared_health::HealthNotice)
    /// posted at `at`) as if this tracker had reached it: down from `at`, recovering on the
    /// shared ramp, degraded until a healthy notice, or healthy.
    pub fn apply_shared(&mut self, change: HealthChange, at: DateTime<Utc>, reason: String) {
        self.reason = reason;
        self.eval_due = None;
        self.probing_elsewhere = false;
        match change {
            HealthChange::Healthy => {
                self.shared_degraded = false;
                self.errors_in_a_row = 0;
                if !matches!(self.mode, Mode::Normal(_)) {
                    self.probe_id = None;
                    self.mode = Mode::Normal(HealthState::Healthy);
                }
            }
            HealthChange::Degraded => {
                self.shared_degraded = true;
                if let Mode::Normal(_) = self.mode {
                    self.mode = Mode::Normal(HealthState::Degraded);
                }
            }
            HealthChange::Down { until } => {
                self.mode = Mode::Down { since: at, until };
                self.probe_id = None;
            }
            HealthChange::Recovering { since } => {
                // Another instance's probe got through: the outage's samples are history.
                self.forget_samples();
                self.probe_id = None;
                self.shared_degraded = false;
                self.mode = Mode::Recovering { since };
            }
        }
    }

    /// The probe this tracker claimed belongs to another instance (it won the board's claim):
    /// the channel stays down here until that instance tells how its probe went.
    pub fn probe_elsewhere(&mut self) {
        if matches!(self.mode, Mode::Probing { .. }) {
            self.probing_elsewhere = true;
            self.reason = "another instance is probing".into();
        }
    }

    /// Until when this tracker's outlook is plainly healthy for every send, if it is now: its
    /// next evaluation (only an evaluation or a new fact can change its mind). `None` when it
    /// is anything but healthy, or due for an evaluation.
    pub(crate) fn healthy_until(&self) -> Option<DateTime<Utc>> {
        match self.mode {
            Mode::Normal(HealthState::Healthy)
                if !self.provider_degraded && !self.shared_degraded =>
            {
                self.eval_due
            }
            _ => None,
        }
    }

    /// Drops every sample (an outage's are history once a probe got through).
    fn forget_samples(&mut self) {
        self.first_seq += self.samples.len() as u64;
        self.samples.clear();
        self.open.clear();
    }

    /// Why the channel is in its state, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn evaluate(&mut self, now: DateTime<Utc>) {
        if self.eval_due.is_some_and(|due| now < due) {
            return;
        }
        self.eval_due = now.checked_add_signed(chrono_dur(self.config.evaluate_every));
        let horizon = now - chrono_dur(self.config.sample_window);
        while self.samples.front().is_some_and(|s| s.sent_at < horizon) {
            if let Some(s) = self.samples.pop_front() {
                // A later send with the same id keeps its own entry.
                if self.open.get(&s.id) == Some(&self.first_seq) {
                    self.open.remove(&s.id);
                }
                self.first_seq += 1;
            }
        }
        let overdue_after = chrono_dur(self.config.overdue_after);
        let mut overdue = 0usize;
        let mut latencies = Vec::new();
        for s in &self.samples {
            match s.evidence_at {
                Some(e) if e - s.sent_at <= overdue_after => latencies.push(e - s.sent_at),
                Some(_) => overdue += 1,
                None if now - s.sent_at > overdue_after => overdue += 1,
                None => {}
            }
        }
        let judged = overdue + latencies.len();
        latencies.sort_unstable();
        let median = latencies
            .get(latencies.len() / 2)
            .and_then(|d| d.to_std().ok())
            .unwrap_or_default();
        let share = if judged == 0 {
            0.0
        } else {
            overdue as f64 / judged as f64
        };
        self.cached = (share, median, judged);
        let enough = judged >= self.config.min_samples;
        match self.mode {
            Mode::Normal(state) => {
                let next = if enough && share >= self.config.down_share {
                    self.mode = Mode::Down {
                        since: now,
                        until: None,
                    };
                    self.reason = format!("{:.0}% of sends overdue", share * 100.0);
                    return;
                } else if (enough && share >= self.config.degrade_share)
                    || self.provider_degraded
                    || self.shared_degraded
                {
                    HealthState::Degraded
                } else if state == HealthState::Degraded
                    && enough
                    && share > self.config.recover_share
                {
                    // Hysteresis: stay degraded until the overdue share is well below the threshold.
                    HealthState::Degraded
                } else {
                    HealthState::Healthy
                };
                if next != state {
                    self.reason = if self.provider_degraded {
                        "provider reported low quality".into()
                    } else {
                        format!("{:.0}% of sends overdue", share * 100.0)
                    };
                }
                self.mode = Mode::Normal(next);
            }
            Mode::Probing { sent_at } => {
                if now - sent_at > overdue_after {
                    self.probe_id = None;
                    self.mode = Mode::Down {
                        since: now,
                        until: None,
                    };
                    if std::mem::take(&mut self.probing_elsewhere) {
                        // No news from the instance that probed: still down here, but that is
                        // not a verdict of ours to share.
                        self.quiet_down = Some(now);
                        self.reason = "another instance's probe brought no news".into();
                    } else {
                        self.reason = "probe not delivered in time".into();
                    }
                }
            }
            Mode::Recovering { since } => {
                if enough && share >= self.config.down_share {
                    self.mode = Mode::Down {
                        since: now,
                        until: None,
                    };
                    self.reason = "relapsed while recovering".into();
                } else if now - since >= chrono_dur(self.config.ramp) {
                    self.mode = Mode::Normal(HealthState::Healthy);
                    self.reason = "recovered".into();
                }
            }
            Mode::Down { .. } => {}
        }
    }

    fn traffic_share(&self, now: DateTime<Utc>) -> f64 {
        match self.mode {
            Mode::Recovering { since } => {
                let ramp = self.config.ramp.as_secs_f64().max(1.0);
                let done =
                    ((now - since).num_milliseconds() as f64 / 1000.0 / ramp).clamp(0.0, 1.0);
                self.config.ramp_start_share + (1.0 - self.config.ramp_start_share) * done
            }
            Mode::Down { .. } | Mode::Probing { .. } => 0.0,
            Mode::Normal(_) => 1.0,
        }
    }

    /// Whether a send of `notification` may go on this channel now; a probe that is due is
    /// taken at once ([`admission`](Self::admission) then [`claim_probe`](Self::claim_probe)).
    pub fn admit(&mut self, now: DateTime<Utc>, notification: &NotificationId) -> Admission {
        let admission = self.admission(now, notification);
        if admission == Admission::Probe {
            self.claim_probe(now);
        }
        admission
    }

    /// Whether a send of `notification` may go on this channel now, without taking anything:
    /// [`Admission::Probe`] says a probe is due, and the send that goes out as the probe must
    /// [`claim_probe`](Self::claim_probe) it first. The engine asks before it decides and claims
    /// only once it has decided to send, so a cascade that then waits (quiet hours, a gate)
    /// does not use up the probe.
    pub fn admission(&mut self, now: DateTime<Utc>, notification: &NotificationId) -> Admission {
        self.evaluate(now);
        self.admission_now(now, notification)
    }

    /// [`state`](Self::state) and [`admission`](Self::admission) together, evaluating once.
    pub fn outlook(
        &mut self,
        now: DateTime<Utc>,
        notification: &NotificationId,
    ) -> (HealthState, Admission) {
        self.evaluate(now);
        (self.state_now(), self.admission_now(now, notification))
    }

    fn admission_now(&self, now: DateTime<Utc>, notification: &NotificationId) -> Admission {
        match self.mode {
            Mode::Normal(HealthState::Healthy) => Admission::Healthy,
            Mode::Normal(_) => Admission::Degraded,
            Mode::Down { .. } if self.probe_due(now) => Admission::Probe,
            Mode::Down { .. } | Mode::Probing { .. } => Admission::Down,
            Mode::Recovering { .. } => {
                if ramp_position(notification) < self.traffic_share(now) {
                    Admission::Healthy
                } else {
                    Admission::NotInRamp
                }
            }
        }
    }

    /// Takes the probe of a channel that is down and has rested long enough. Returns `false` if
    /// no probe is due (another send took it): one probe at a time, so later sends see the
    /// channel as down until the probe is delivered or overdue.
    pub fn claim_probe(&mut self, now: DateTime<Utc>) -> bool {
        self.evaluate(now);
        if matches!(self.mode, Mode::Down { .. }) && self.probe_due(now) {
            self.mode = Mode::Probing { sent_at: now };
            true
        } else {
            false
        }
    }

    fn probe_due(&self, now: DateTime<Utc>) -> bool {
        match self.mode {
            Mode::Down { since, until } => match until {
                Some(u) => now >= u,
                None => now - since >= chrono_dur(self.config.probe_interval),
            },
            _ => false,
        }
    }

    /// The state now.
    pub fn state(&mut self, now: DateTime<Utc>) -> HealthState {
        self.evaluate(now);
        self.state_now()
    }

    fn state_now(&self) -> HealthState {
        match self.mode {
            Mode::Normal(s) => s,
            Mode::Down { .. } | Mode::Probing { .. } => HealthState::Down,
            Mode::Recovering { .. } => HealthState::Degraded,
        }
    }

    /// A snapshot.
    pub fn snapshot(&mut self, now: DateTime<Utc>) -> ChannelHealth {
        let state = self.state(now);
        let (overdue_share, median_latency, judged) = self.cached;
        ChannelHealth {
            state,
            traffic_share: self.traffic_share(now),
            overdue_share,
            median_latency,
            judged,
            reason: self.reason.clone(),
        }
    }
}

/// A stable position in [0, 1) for a notification, so that during a ramp the same notices keep
/// (or keep not) getting the recovering channel, and the share grows smoothly.
fn ramp_position(id: &NotificationId) -> f64 {
    // FNV-1a, stable across runs and platforms (unlike std's RandomState), then a 64-bit
    // finalizer: FNV alone leaves the high bits of short, similar ids badly spread.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
    }
    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }
    fn cfg() -> HealthConfig {
        HealthConfig {
            min_samples: 10,
            evaluate_every: Duration::ZERO,
            ..HealthConfig::default()
        }
    }
    fn nid(i: usize) -> NotificationId {
        NotificationId::new(format!("n{i}"))
    }

    #[test]
    fn ramp_positions_are_spread_evenly() {
        let below = (0..10_000)
            .filter(|i| ramp_position(&nid(*i)) < 0.1)
            .count();
        assert!((800..1200).contains(&below), "{below} of 10000 below 0.1");
    }

    /// Evidence finds its own send by sequence number, after older sends left the window and
    /// when a provider reuses an id: the latencies judged are each send's own.
    #[test]
    fn evidence_finds_its_send_across_the_window() {
        let mut h = HealthTracker::new(cfg());
        let id = |i: i64| ProviderMessageId::new(format!("m{i}"));
        // 0..30 sent a second apart; 0..10 then leave the window (20 minutes).
        for i in 0..30 {
            h.record_sent(id(i), t0() + secs(i), false);
        }
        let later = t0() + secs(20 * 60 + 10);
        let snap = h.snapshot(later);
        assert_eq!(snap.judged, 20, "the first ten left the window");
        assert_eq!(snap.overdue_share, 1.0, "the rest are overdue");
        // Evidence for a send that left the window changes nothing.
        h.record_evidence(&id(3), later);
        // The rest are delivered 40 s after their own send, in reverse order.
        for i in (10..30).rev() {
            h.record_evidence(&id(i), t0() + secs(i + 40));
        }
        let snap = h.snapshot(later);
        assert_eq!(snap.judged, 20);
        assert_eq!(snap.overdue_share, 0.0);
        assert_eq!(snap.median_latency, Duration::from_secs(40));
        // A reused id: evidence belongs to the latest send with it.
        let reuse = later + secs(1);
        h.record_sent(id(29), reuse, false);
        h.record_evidence(&id(29), reuse + secs(5));
        let snap = h.snapshot(reuse + secs(10));
        assert_eq!(
            snap.judged, 10,
            "sends 21 to 29 are in the window, and the new one"
        );
        assert_eq!(snap.overdue_share, 0.0);
    }

    #[test]
    fn healthy_while_deliveries_are_fast() {
        let mut h = HealthTracker::new(cfg());
        for i in 0..30 {
            let id = ProviderMessageId::new(format!("m{i}"));
            h.record_sent(id.clone(), t0() + secs(i), false);
            h.record_evidence(&id, t0() + secs(i + 20));
        }
        assert_eq!(h.state(t0() + secs(600)), HealthState::Healthy);
        assert_eq!(h.admit(t0() + secs(600), &nid(1)), Admission::Healthy);
        let snap = h.snapshot(t0() + secs(600));
        assert_eq!(snap.median_latency, Duration::from_secs(20));
    }

    #[test]
    fn outage_goes_down_then_probe_then_ramp_then_healthy() {
        let mut h = HealthTracker::new(cfg());
        for i in 0..30 {
            h.record_sent(
                ProviderMessageId::new(format!("m{i}")),
                t0() + secs(i),
                false,
            );
        }
        // Not judged yet: nothing is overdue before overdue_after.
        assert_eq!(h.state(t0() + secs(60)), HealthState::Healthy);
        let later = t0() + secs(400);
        assert_eq!(h.state(later), HealthState::Down);
        assert_eq!(h.admit(later, &nid(1)), Admission::Down);
        // After the probe interval, one probe is allowed.
        let probe_time = later + secs(301);
        assert_eq!(h.admit(probe_time, &nid(1)), Admission::Probe);
        let probe = ProviderMessageId::new("probe");
        h.record_sent(probe.clone(), probe_time, true);
        assert_eq!(h.admit(probe_time + secs(1), &nid(2)), Admission::Down);
        h.record_evidence(&probe, probe_time + secs(30));
        // Ramp: only part of traffic at first.
        let ramp_start = probe_time + secs(31);
        let admitted = (0..1000)
            .filter(|i| h.admit(ramp_start, &nid(*i)) == Admission::Healthy)
            .count();
        assert!((50..200).contains(&admitted), "admitted {admitted}");
        let mid = ramp_start + secs(300);
        let admitted_mid = (0..1000)
            .filter(|i| h.admit(mid, &nid(*i)) == Admission::Healthy)
            .count();
        assert!(
            admitted_mid > admitted + 200,
            "{admitted} -> {admitted_mid}"
        );
        assert_eq!(h.state(ramp_start + secs(601)), HealthState::Healthy);
    }

    #[test]
    fn failed_probe_goes_back_down() {
        let mut h = HealthTracker::new(cfg());
        h.mark_down(t0(), None, "bad token".into());
        let pt = t0() + secs(301);
        assert_eq!(h.admit(pt, &nid(0)), Admission::Probe);
        h.record_sent(ProviderMessageId::new("p"), pt, true);
        assert_eq!(h.state(pt + secs(301)), HealthState::Down);
        assert_eq!(h.admit(pt + secs(302), &nid(0)), Admission::Down);
    }

    #[test]
    fn admission_only_looks_and_the_probe_is_claimed_once() {
        let mut h = HealthTracker::new(cfg());
        h.mark_down(t0(), None, "bad token".into());
        let pt = t0() + secs(301);
        assert_eq!(h.admission(pt, &nid(0)), Admission::Probe);
        assert_eq!(
            h.admission(pt, &nid(1)),
            Admission::Probe,
            "looking takes nothing"
        );
        assert!(h.claim_probe(pt));
        assert!(!h.claim_probe(pt), "one probe at a time");
        assert_eq!(h.admission(pt, &nid(2)), Admission::Down);
        assert_eq!(h.outlook(pt, &nid(2)), (HealthState::Down, Admission::Down));
    }

    #[test]
    fn degraded_has_hysteresis() {
        let mut h = HealthTracker::new(cfg());
        // 30% overdue: degraded.
        for i in 0..20 {
            let id = ProviderMessageId::new(format!("a{i}"));
            h.record_sent(id.clone(), t0() + secs(i), false);
            if i % 10 >= 3 {
                h.record_evidence(&id, t0() + secs(i + 10));
            }
        }
        assert_eq!(h.state(t0() + secs(400)), HealthState::Degraded);
        // Add fast deliveries until the share is 0.2: still above recover (0.1), stays degraded
        // although it is below the degrade threshold (0.25).
        for i in 20..30 {
            let id = ProviderMessageId::new(format!("a{i}"));
            h.record_sent(id.clone(), t0() + secs(i), false);
            h.record_evidence(&id, t0() + secs(i + 10));
        }
        assert_eq!(h.state(t0() + secs(401)), HealthState::Degraded);
        for i in 30..80 {
            let id = ProviderMessageId::new(format!("a{i}"));
            h.record_sent(id.clone(), t0() + secs(i), false);
            h.record_evidence(&id, t0() + secs(i + 10));
        }
        assert_eq!(h.state(t0() + secs(402)), HealthState::Healthy);
    }

    #[test]
    fn restriction_until_and_errors_in_a_row() {
        let mut h = HealthTracker::new(cfg());
        h.mark_down(t0(), Some(t0() + secs(3600)), "restricted".into());
        assert_eq!(h.admit(t0() + secs(3000), &nid(0)), Admission::Down);
        assert_eq!(h.admit(t0() + secs(3600), &nid(0)), Admission::Probe);

        let mut h = HealthTracker::new(cfg());
        for _ in 0..9 {
            h.record_error(t0());
        }
        assert_eq!(h.state(t0()), HealthState::Healthy);
        h.record_error(t0());
        assert_eq!(h.state(t0()), HealthState::Down);
    }

    #[test]
    fn provider_quality_signal_degrades() {
        let mut h = HealthTracker::new(cfg());
        h.set_provider_degraded(true, "quality RED".into());
        assert_eq!(h.admit(t0(), &nid(0)), Admission::Degraded);
        h.set_provider_degraded(false, "quality GREEN".into());
        assert_eq!(h.admit(t0() + secs(1), &nid(0)), Admission::Healthy);
    }
}
