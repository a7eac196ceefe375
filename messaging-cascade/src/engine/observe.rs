//! What the driver tells the outside world about a cascade: `tracing` spans and events, and
//! metrics through the `metrics` facade ([`messaging_core::metrics`] lists every name).
//!
//! The pure decision function stays silent: everything here is read from what the driver holds
//! (the record as stored, the new history entries, the input, a send's result).
//!
//! Spans (target `messaging_cascade::engine::observe`, level INFO):
//!
//! - `cascade`: one each time the engine moves a cascade on (submit, timer, delivery report,
//!   reply, cancel). Fields `notification.id`, `cascade.policy`, `cascade.input`,
//!   `cascade.step`, `outcome` (once ended).
//! - `send`: one per attempt, a child of `cascade`, around `Channel::send`. Fields after
//!   OpenTelemetry's messaging conventions (`messaging.system` = the channel kind,
//!   `messaging.operation.name` / `messaging.operation.type` = `send`,
//!   `messaging.destination.name` = the channel id, `messaging.message.id` = the provider's
//!   message id, `error.type` = the error kind, `otel.kind` = `producer`,
//!   `otel.status_code`) and ours (`channel.id`, `channel.kind`, `cascade.step`,
//!   `cascade.attempt`, `evidence.awaited`, `possible_duplicate`, `outcome` = `sent`, `failed`
//!   or `outcome_unknown`).
//!
//! Events, one per history entry (DEBUG for the routine, INFO for what changes the course:
//! skips, failures, window expiry, reroutes, the end; WARN for unknown outcomes and marked
//! duplicates), plus channel health changes and delivery reports. No field ever holds a message
//! text, an address or a secret: ids, names, numbers and the provider's error code only.

use chrono::{DateTime, Utc};

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, SharedString, counter};
use tracing::Span;
use tracing::field::Empty;

use super::decide::{Input, Rules};
use super::idmap::IdMap;
use super::record::{CascadeRecord, HistoryEntry, HistoryKind, Outcome};
use crate::health::HealthState;
use messaging_core::metrics as names;
use messaging_core::{
    ChannelError, ChannelId, ChannelKind, DeliveryReport, DeliveryStatus, Evidence, NotificationId,
    SendReceipt,
};

/// Where the engine's metrics are registered from: the macros' default (this module, INFO).
static META: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The outcome names, in [`outcome_index`] order.
const OUTCOMES: [&str; 6] = Outcome::NAMES;

/// The delivery statuses, in [`status_index`] order.
const STATUSES: [DeliveryStatus; 5] = [
    DeliveryStatus::Accepted,
    DeliveryStatus::Sent,
    DeliveryStatus::Delivered,
    DeliveryStatus::Read,
    DeliveryStatus::Failed,
];

fn outcome_index(name: &str) -> usize {
    OUTCOMES.iter().position(|o| *o == name).unwrap_or(0)
}

fn status_index(s: DeliveryStatus) -> usize {
    STATUSES.iter().position(|x| *x == s).unwrap_or(0)
}

/// A channel's metric keys, made once when the engine is built: recording then costs no
/// allocation and no hashing, and still goes to whatever recorder is installed at the time
/// (a global one installed after the engine was built, or a thread's local one).
#[derive(Clone, Debug)]
pub(super) struct ChannelMeter {
    id: SharedString,
    kind: &'static str,
    sends: Key,
    send_duration: Key,
    duplicates: Key,
    time_to_delivery: Key,
    health: Key,
    outcomes: [Key; 6],
    reports: [Key; 5],
}

impl ChannelMeter {
    fn new(id: &str, kind: &'static str) -> Self {
        let id = SharedString::from_shared(std::sync::Arc::from(id));
        let key = |name: &'static str, extra: Option<(&'static str, &'static str)>| {
            let mut labels = vec![
                Label::new(names::CHANNEL_ID, id.clone()),
                Label::new(names::CHANNEL_KIND, kind),
            ];
            if let Some((k, v)) = extra {
                labels.push(Label::new(k, v));
            }
            Key::from_parts(name, labels)
        };
        ChannelMeter {
            sends: key(names::SENDS, None),
            send_duration: key(names::SEND_DURATION, None),
            duplicates: key(names::DUPLICATES, None),
            time_to_delivery: key(names::TIME_TO_DELIVERY, None),
            health: key(names::CHANNEL_HEALTH, None),
            outcomes: OUTCOMES.map(|o| key(names::OUTCOMES, Some((names::OUTCOME, o)))),
            reports: STATUSES
                .map(|s| key(names::DELIVERY_REPORTS, Some((names::STATUS, s.as_str())))),
            id,
            kind,
        }
    }

    /// A counter with this channel's labels and one more.
    fn counter_with(
        &self,
        name: &'static str,
        label: &'static str,
        value: &'static str,
    ) -> Counter {
        counter!(
            name,
            names::CHANNEL_ID => self.id.clone(),
            names::CHANNEL_KIND => self.kind,
            label => value
        )
    }
}

fn counter(key: &Key) -> Counter {
    metrics::with_recorder(|r| r.register_counter(key, &META))
}

fn histogram(key: &Key) -> Histogram {
    metrics::with_recorder(|r| r.register_histogram(key, &META))
}

fn gauge(key: &Key) -> Gauge {
    metrics::with_recorder(|r| r.register_gauge(key, &META))
}

/// Every channel's meter.
#[derive(Debug)]
pub(super) struct Meters {
    channels: IdMap<ChannelId, ChannelMeter>,
    /// For an outcome with no channel (nothing was tried).
    none: ChannelMeter,
    /// For a channel the engine no longer has (its policy step outlived the configuration).
    unknown: ChannelMeter,
}

impl Meters {
    /// Meters for these channels.
    pub(super) fn new<'a>(
        channels: impl IntoIterator<Item = (&'a ChannelId, ChannelKind)>,
    ) -> Self {
        Meters {
            channels: channels
                .into_iter()
                .map(|(id, kind)| (id.clone(), ChannelMeter::new(id.as_str(), kind.as_str())))
                .collect(),
            none: ChannelMeter::new("none", "none"),
            unknown: ChannelMeter::new("unknown", "unknown"),
        }
    }

    /// The meter of `id` (a channel the engine no longer has: id and kind `unknown`).
    pub(super) fn get(&self, id: &ChannelId) -> &ChannelMeter {
        self.channels.get(id).unwrap_or(&self.unknown)
    }

    /// Sets every channel's health gauge to healthy, so that the series exist from the start.
    pub(super) fn publish_initial_health(&self) {
        for m in self.channels.values() {
            gauge(&m.health).set(health_value(HealthState::Healthy));
        }
    }
}

fn input_name(input: &Input) -> &'static str {
    match input {
        Input::Submitted => "submitted",
        Input::TimerFired => "timer",
        Input::SendOutcome { .. } => "send_outcome",
        Input::GateAnswer { .. } => "gate_answer",
        Input::DeliveryReport { .. } => "delivery_report",
        Input::Reply { .. } => "reply",
        Input::Cancel => "cancel",
    }
}

/// The span of one move of a cascade.
pub(super) fn cascade_span(id: &NotificationId, input: &Input) -> Span {
    tracing::info_span!(
        "cascade",
        notification.id = %id,
        cascade.policy = Empty,
        cascade.input = input_name(input),
        cascade.step = Empty,
        outcome = Empty,
    )
}

/// Records where the cascade stands on its span.
pub(super) fn cascade_state(span: &Span, rec: &CascadeRecord) {
    if span.is_disabled() {
        return;
    }
    span.record("cascade.policy", rec.policy.as_str());
    span.record("cascade.step", rec.step);
    if let Some(o) = rec.outcome() {
        span.record("outcome", o.name());
    }
}

/// The span of one attempt, around `Channel::send`, in the cascade's span `parent`.
pub(super) fn send_span(
    parent: &Span,
    channel: &ChannelId,
    kind: ChannelKind,
    step: usize,
    attempt: u32,
    awaited: Evidence,
    possible_duplicate: bool,
) -> Span {
    tracing::info_span!(
        parent: parent,
        "send",
        otel.kind = "producer",
        otel.status_code = Empty,
        messaging.system = kind.as_str(),
        messaging.operation.name = "send",
        messaging.operation.type = "send",
        messaging.destination.name = %channel,
        messaging.message.id = Empty,
        channel.id = %channel,
        channel.kind = kind.as_str(),
        cascade.step = step,
        cascade.attempt = attempt,
        evidence.awaited = %awaited,
        possible_duplicate,
        outcome = Empty,
        error.type = Empty,
    )
}

/// Counts a send and its duration; records its result on its span.
pub(super) fn sent(
    span: &Span,
    meter: &ChannelMeter,
    seconds: f64,
    result: &Result<SendReceipt, ChannelError>,
) {
    counter(&meter.sends).increment(1);
    histogram(&meter.send_duration).record(seconds);
    if span.is_disabled() {
        return;
    }
    match result {
        Ok(receipt) => {
            span.record("messaging.message.id", receipt.provider_message_id.as_str());
            span.record("outcome", "sent");
        }
        Err(e) => {
            span.record("error.type", e.kind().as_str());
            span.record("otel.status_code", "ERROR");
            span.record(
                "outcome",
                if e.kind() == messaging_core::ErrorKind::OutcomeUnknown {
                    "outcome_unknown"
                } else {
                    "failed"
                },
            );
        }
    }
}

/// A delivery report matched to attempt `attempt` of `rec` (stored, if it changed anything):
/// counts it and, when it is the attempt's first proof of delivery, the time to delivery.
pub(super) fn delivery_report(
    meters: &Meters,
    rec: &CascadeRecord,
    attempt: usize,
    report: &DeliveryReport,
    evidence_before: Option<Evidence>,
) {
    let Some(a) = rec.attempts.get(attempt) else {
        return;
    };
    let meter = meters.get(&a.channel);
    tracing::debug!(
        messaging.message.id = report.provider_message_id.as_str(),
        channel.id = a.channel.as_str(),
        cascade.step = a.step,
        status = report.status.as_str(),
        "delivery report"
    );
    counter(&meter.reports[status_index(report.status)]).increment(1);
    let delivered = |e: Option<Evidence>| e.is_some_and(|e| e >= Evidence::Delivered);
    if !delivered(evidence_before)
        && delivered(a.evidence)
        && let (Some(sent), Some(at)) = (a.sent_at, a.evidence_at)
    {
        let seconds = ((at - sent).num_milliseconds() as f64 / 1000.0).max(0.0);
        histogram(&meter.time_to_delivery).record(seconds);
    }
}

/// A delivery report for a message no cascade knows (yet): kept a while for its receipt.
pub(super) fn orphan_report(report: &DeliveryReport) {
    tracing::debug!(
        messaging.message.id = report.provider_message_id.as_str(),
        channel.kind = report.channel.as_str(),
        status = report.status.as_str(),
        "delivery report for a message no cascade knows (yet); kept a while for its receipt"
    );
}

/// The new history of a cascade, as stored: one event each, and the counters.
///
/// `rules` gives the cascade's rules, asked only for a reroute (to name the next channel).
pub(super) fn history<'r>(
    meters: &Meters,
    rules: impl Fn() -> &'r Rules,
    rec: &CascadeRecord,
    entries: &[HistoryEntry],
) {
    for e in entries {
        entry(meters, &rules, rec, &e.kind);
    }
}

fn entry<'r>(
    meters: &Meters,
    rules: &impl Fn() -> &'r Rules,
    rec: &CascadeRecord,
    kind: &HistoryKind,
) {
    use tracing::{debug, info, warn};
    match kind {
        HistoryKind::Submitted { policy } => {
            debug!(cascade.policy = policy.as_str(), "cascade submitted");
        }
        HistoryKind::StepStarted { step, channel } => {
            debug!(
                cascade.step = step,
                channel.id = channel.as_str(),
                "step started"
            );
        }
        HistoryKind::Skipped {
            step,
            channel,
            reason,
        } => {
            info!(
                cascade.step = step,
                channel.id = channel.as_str(),
                reason = reason.name(),
                "step skipped"
            );
            meters
                .get(channel)
                .counter_with(names::SKIPS, names::REASON, reason.name())
                .increment(1);
        }
        HistoryKind::Deferred {
            step,
            channel,
            until,
            reason,
        } => {
            debug!(
                cascade.step = step,
                channel.id = channel.as_str(),
                until = %until,
                reason = defer_reason(reason),
                "step deferred"
            );
        }
        HistoryKind::Sending {
            step,
            channel,
            attempt,
            possible_duplicate,
        } => {
            if *possible_duplicate {
                warn!(
                    cascade.step = step,
                    channel.id = channel.as_str(),
                    cascade.attempt = attempt,
                    "sending again after an unknown outcome, marked possible duplicate"
                );
                counter(&meters.get(channel).duplicates).increment(1);
            } else {
                debug!(
                    cascade.step = step,
                    channel.id = channel.as_str(),
                    cascade.attempt = attempt,
                    "sending"
                );
            }
        }
        HistoryKind::Sent {
            step,
            channel,
            attempt,
            provider_message_id,
        } => {
            debug!(
                cascade.step = step,
                channel.id = channel.as_str(),
                cascade.attempt = attempt,
                messaging.message.id = provider_message_id.as_str(),
                "accepted by the provider"
            );
        }
        HistoryKind::Failed {
            step,
            channel,
            attempt,
            kind,
            code,
            ..
        } => {
            // The provider's words stay in the history: they may quote what was sent.
            info!(
                cascade.step = step,
                channel.id = channel.as_str(),
                cascade.attempt = attempt,
                error.type = kind.as_str(),
                error.code = code.as_deref(),
                "attempt failed"
            );
            failure(meters, channel, kind.as_str());
        }
        HistoryKind::OutcomeUnknown {
            step,
            channel,
            attempt,
            ..
        } => {
            warn!(
                cascade.step = step,
                channel.id = channel.as_str(),
                cascade.attempt = attempt,
                error.type = "outcome_unknown",
                "attempt outcome unknown: the provider may have accepted it"
            );
            failure(meters, channel, "outcome_unknown");
        }
        HistoryKind::Evidence {
            step,
            channel,
            evidence,
        } => {
            if rec.is_finished() {
                info!(
                    cascade.step = step,
                    channel.id = channel.as_str(),
                    evidence = %evidence,
                    "late report: evidence after the cascade ended"
                );
            } else {
                debug!(
                    cascade.step = step,
                    channel.id = channel.as_str(),
                    evidence = %evidence,
                    "evidence"
                );
            }
        }
        HistoryKind::WindowClosed {
            step,
            channel,
            early,
        } => {
            info!(
                cascade.step = step,
                channel.id = channel.as_str(),
                early,
                "window expired without the awaited evidence"
            );
        }
        HistoryKind::Advanced { from, to } => {
            let next = to
                .and_then(|to| rules().policy().steps.get(to))
                .map(|s| s.channel.as_str());
            info!(
                cascade.step = from,
                cascade.next_step = to,
                channel.id = next.unwrap_or(""),
                "reroute to the next step"
            );
        }
        HistoryKind::Delivered {
            step,
            channel,
            evidence,
        } => {
            info!(
                cascade.step = step,
                channel.id = channel.as_str(),
                evidence = %evidence,
                outcome = "delivered",
                "cascade ended: delivered"
            );
            outcome(meters, rec, "delivered");
        }
        HistoryKind::LateDelivery {
            step,
            channel,
            evidence,
        } => {
            info!(
                cascade.step = step,
                channel.id = channel.as_str(),
                evidence = %evidence,
                outcome = "delivered",
                "late report: cascade ended, delivered by an earlier step"
            );
            outcome(meters, rec, "delivered");
        }
        HistoryKind::Replied { channel } => {
            info!(
                channel.kind = channel.as_str(),
                outcome = "replied",
                "cascade ended: the person replied"
            );
            outcome(meters, rec, "replied");
        }
        HistoryKind::Unconfirmed => ended(meters, rec, "unconfirmed"),
        HistoryKind::Exhausted => ended(meters, rec, "exhausted"),
        HistoryKind::Expired => ended(meters, rec, "expired"),
        HistoryKind::Cancelled => ended(meters, rec, "cancelled"),
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

fn ended(meters: &Meters, rec: &CascadeRecord, name: &'static str) {
    tracing::info!(outcome = name, "cascade ended: {name}");
    outcome(meters, rec, name);
}

fn defer_reason(r: &super::record::DeferReason) -> &'static str {
    use super::record::DeferReason;
    match r {
        DeferReason::QuietHours => "quiet_hours",
        DeferReason::RateLimited => "rate_limited",
        DeferReason::Backoff => "backoff",
        DeferReason::Governor(_) => "governor",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

fn failure(meters: &Meters, channel: &ChannelId, kind: &'static str) {
    meters
        .get(channel)
        .counter_with(names::FAILURES, names::KIND, kind)
        .increment(1);
}

/// Counts an ended cascade under the channel its outcome names, else the last one tried.
fn outcome(meters: &Meters, rec: &CascadeRecord, name: &'static str) {
    let named = match rec.outcome() {
        Some(Outcome::Delivered { channel, .. } | Outcome::Unconfirmed { channel, .. }) => {
            Some(channel)
        }
        _ => None,
    };
    let meter = named
        .or_else(|| rec.attempts.last().map(|a| &a.channel))
        .map_or(&meters.none, |c| meters.get(c));
    counter(&meter.outcomes[outcome_index(name)]).increment(1);
}

fn health_value(state: HealthState) -> f64 {
    match state {
        HealthState::Healthy => 0.0,
        HealthState::Degraded => 1.0,
        HealthState::Down => 2.0,
    }
}

fn health_name(state: HealthState) -> &'static str {
    match state {
        HealthState::Healthy => "healthy",
        HealthState::Degraded => "degraded",
        HealthState::Down => "down",
    }
}

/// A channel's health changed from `from` to `to`, for `reason` (the tracker's words: its
/// own, or a provider's signal name and rating; never a message).
pub(super) fn health_changed(
    meter: &ChannelMeter,
    from: HealthState,
    to: HealthState,
    reason: &str,
) {
    gauge(&meter.health).set(health_value(to));
    if to == HealthState::Down {
        tracing::warn!(
            channel.id = &*meter.id,
            channel.kind = meter.kind,
            from = health_name(from),
            to = health_name(to),
            reason,
            "channel health changed"
        );
    } else {
        tracing::info!(
            channel.id = &*meter.id,
            channel.kind = meter.kind,
            from = health_name(from),
            to = health_name(to),
            reason,
            "channel health changed"
        );
    }
}

/// The gauges a tick updates: timers that were due, and (when `running` is known) cascades
/// not ended.
pub(super) fn tick_gauges(due: usize, running: Option<usize>) {
    metrics::gauge!(names::TIMERS_DUE).set(due as f64);
    if let Some(n) = running {
        metrics::gauge!(names::CASCADES_RUNNING).set(n as f64);
    }
}

/// When the running-cascades gauge is next read from the store.
pub(super) fn next_count(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::seconds(5)
}
