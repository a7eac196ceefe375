//! Property tests on the pure decision function, `engine::decide::decide`, with no engine, store,
//! runtime or clock: a small driver in this file plays the world (channels answering or not,
//! gates, delivery reports, replies, cancels, crashes, channel health turning bad, time passing)
//! from a generated script, and checks after every decision that
//!
//! - every cascade reaches exactly one terminal state, and nothing changes it afterwards;
//! - nothing is sent after the end, past the deadline, in quiet hours or into a rate limit;
//! - no step is sent again without a recorded reason (a failure or an unknown outcome);
//! - a send is always preceded by its recorded intent (the record the driver stores first);
//! - window ends are never before the attempt, and are what `window_end` says;
//! - `Decision::changed` is exactly "the record differs".
//!
//! `PROPTEST_CASES` overrides the number of cases (default 2,000).

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use messaging_cascade::engine::decide::{
    Action, ChannelCondition, ChannelFacts, Decision, HealthView, Input, Rules, begin, decide,
    window_end,
};
use messaging_cascade::engine::{
    self, AttemptState, CascadeRecord, HealthAction, HistoryKind, Phase, QuietHours,
};
use messaging_cascade::health::{Admission, HealthConfig, HealthState};
use messaging_cascade::{CascadePolicy, Notification, Outcome, RetryPolicy, Step, UnknownOutcome};
use messaging_core::gate::GateDecision;
use messaging_core::testkit::typical_capabilities;
use messaging_core::*;
use proptest::prelude::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn secs(n: u64) -> chrono::Duration {
    chrono::Duration::seconds(n as i64)
}

const CHANNELS: [(&str, ChannelKind); 4] = [
    ("wa", ChannelKind::WhatsApp),
    ("tg", ChannelKind::Telegram),
    ("max", ChannelKind::Max),
    ("sms", ChannelKind::Sms),
];

fn facts(id: &ChannelId) -> Option<ChannelFacts> {
    CHANNELS
        .iter()
        .find(|(c, _)| *c == id.as_str())
        .map(|(_, kind)| ChannelFacts::new(*kind, typical_capabilities(*kind)))
}

fn phone() -> Phone {
    // Parsing a phone number is slow; one will do.
    static PHONE: OnceLock<Phone> = OnceLock::new();
    PHONE
        .get_or_init(|| Phone::parse("+79123456789").unwrap())
        .clone()
}

#[derive(Debug, Clone)]
struct Setup {
    steps: Vec<(usize, Evidence, u64, RetryPolicy, Option<UnknownOutcome>)>,
    quiet: Option<(u32, u32)>,
    on_degraded: HealthAction,
    on_down: HealthAction,
    regulated: bool,
    gated: bool,
    overdue_after: Option<u64>,
    lease: u64,
    addresses: [bool; 3],
    deadline: Option<u64>,
    marketing: Option<bool>,
    template: bool,
    time_zone: usize,
}

fn health_action() -> impl Strategy<Value = HealthAction> {
    prop_oneof![
        Just(HealthAction::Proceed),
        Just(HealthAction::Skip),
        (0u64..3600).prop_map(|s| HealthAction::ShortenWindow(Duration::from_secs(s))),
    ]
}

fn retry() -> impl Strategy<Value = RetryPolicy> {
    (1u32..5, 0u64..60, 0u64..600, 0u32..6).prop_map(|(max_attempts, initial, max, waits)| {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_secs(initial),
            max_backoff: Duration::from_secs(max),
            max_rate_limit_waits: waits,
        }
    })
}

fn setup() -> impl Strategy<Value = Setup> {
    let evidence = prop_oneof![
        Just(Evidence::Accepted),
        Just(Evidence::Delivered),
        Just(Evidence::Read),
        Just(Evidence::Replied),
    ];
    (
        proptest::collection::vec(
            (
                0usize..4,
                evidence,
                1u64..7200,
                retry(),
                proptest::option::of(prop_oneof![
                    Just(UnknownOutcome::AwaitEvidence),
                    Just(UnknownOutcome::Resend)
                ]),
            ),
            1..5,
        ),
        proptest::option::of((0u32..24, 0u32..24)),
        health_action(),
        health_action(),
        (proptest::bool::weighted(0.15), any::<bool>()),
        proptest::option::weighted(0.7, 0u64..900),
        1u64..600,
        proptest::array::uniform3(proptest::bool::weighted(0.8)),
        proptest::option::of(0u64..30_000),
        proptest::option::weighted(0.15, any::<bool>()),
        any::<bool>(),
        0usize..3,
    )
        .prop_map(
            |(
                steps,
                quiet,
                on_degraded,
                on_down,
                (regulated, gated),
                overdue_after,
                lease,
                addresses,
                deadline,
                marketing,
                template,
                time_zone,
            )| Setup {
                steps,
                quiet,
                on_degraded,
                on_down,
                regulated,
                gated,
                overdue_after,
                lease,
                addresses,
                deadline,
                marketing,
                template,
                time_zone,
            },
        )
}

impl Setup {
    fn rules(&self) -> Rules {
        let steps = self
            .steps
            .iter()
            .map(|(c, wait_for, window, retry, unknown)| {
                let step = Step::new(CHANNELS[*c].0)
                    .wait_for(*wait_for)
                    .window(Duration::from_secs(*window))
                    .retry(retry.clone());
                match unknown {
                    Some(u) => step.on_unknown_outcome(*u),
                    None => step,
                }
            })
            .collect();
        let mut policy = CascadePolicy::new("p", steps)
            .on_degraded(self.on_degraded)
            .on_down(self.on_down);
        if let Some((start, end)) = self.quiet {
            policy = policy.quiet_hours(QuietHours::hours(start, end));
        }
        Rules::new(policy, facts)
            .regulated(self.regulated)
            .gated(self.gated)
            .in_flight_lease(Duration::from_secs(self.lease))
            .health(self.overdue_after.map(|s| HealthConfig {
                overdue_after: Duration::from_secs(s),
                ..HealthConfig::default()
            }))
    }

    fn notification(&self) -> Notification {
        let zones = [
            chrono_tz::Europe::Moscow,
            chrono_tz::Asia::Kamchatka,
            chrono_tz::America::New_York,
        ];
        let mut r = Recipient::new("patient").time_zone(zones[self.time_zone]);
        if self.addresses[0] {
            r = r.address(Address::Phone(phone()));
        }
        if self.addresses[1] {
            r = r.address(Address::Telegram(42));
        }
        if self.addresses[2] {
            r = r.address(Address::MaxUser(77));
        }
        let mut content = Content::text("Анна, напоминаем о приёме завтра в 10:00. Придёте?");
        if self.template {
            content = content.with_template(Template::new("reminder", "ru"));
        }
        let mut n = Notification::new("n1", r, content);
        if let Some(consent) = self.marketing {
            n = n.purpose(Purpose::Marketing);
            n.recipient.marketing_consent = consent;
        }
        if let Some(d) = self.deadline {
            n = n.deadline(t0() + secs(d));
        }
        n
    }
}

/// What the world does next.
#[derive(Debug, Clone)]
enum Event {
    /// Answer what the driver owes: the pending send (accepted, or an error) or the pending gate
    /// check. With nothing pending, the timer fires.
    Answer {
        error: Option<(ErrorKind, Option<u64>)>,
        gate: u8,
        gate_secs: u64,
    },
    /// Time passes, then the timer fires (early, on time or late).
    Tick(u64),
    /// A delivery report for one of the sent attempts.
    Report { pick: usize, status: u8 },
    /// The person replies; the message was written this many seconds ago (old messages are
    /// replayed by provider retries and after restarts).
    Reply { written_ago: u64 },
    /// The application cancels.
    Cancel,
    /// The driver stops: the pending send's outcome is lost.
    Crash,
    /// An answer for an attempt the cascade has left (it arrives after a crash, twice, ...).
    StaleAnswer { pick: usize, ok: bool },
    /// A channel's health changes.
    Health {
        channel: usize,
        condition: u8,
        rate_limited: Option<u64>,
    },
}

fn error_kind() -> impl Strategy<Value = ErrorKind> {
    prop_oneof![
        Just(ErrorKind::Temporary),
        Just(ErrorKind::Unreachable),
        Just(ErrorKind::RateLimited),
        Just(ErrorKind::ChannelDown),
        Just(ErrorKind::InvalidContent),
        Just(ErrorKind::NeedsTemplate),
        Just(ErrorKind::Unexpected),
        Just(ErrorKind::OutcomeUnknown),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        16 => (
            proptest::option::weighted(0.4, (error_kind(), proptest::option::of(0u64..5000))),
            0u8..4,
            0u64..20_000,
        )
            .prop_map(|(error, gate, gate_secs)| Event::Answer {
                error,
                gate,
                gate_secs
            }),
        12 => (0u64..5000).prop_map(Event::Tick),
        6 => (any::<usize>(), 0u8..5).prop_map(|(pick, status)| Event::Report { pick, status }),
        1 => prop_oneof![Just(0u64), 0u64..200_000]
            .prop_map(|written_ago| Event::Reply { written_ago }),
        1 => Just(Event::Cancel),
        2 => Just(Event::Crash),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Event::StaleAnswer { pick, ok }),
        4 => (0usize..4, 0u8..6, proptest::option::of(0u64..3000)).prop_map(
            |(channel, condition, rate_limited)| Event::Health {
                channel,
                condition,
                rate_limited
            }
        ),
    ]
}

/// What the driver owes the decision function.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Send { attempt: usize },
    Gates { step: usize },
}

/// The driver: the record as stored, the time, what is pending, and the health view.
struct World {
    rules: Rules,
    rec: CascadeRecord,
    now: DateTime<Utc>,
    pending: Option<Pending>,
    health: HealthView,
    decisions: usize,
}

fn is_terminal(k: &HistoryKind) -> bool {
    k.is_terminal()
}

/// When the channel accepted `a`, or, for an attempt whose outcome is unknown, when it
/// started (it may have been accepted from then on); `None` for one that was never sent.
fn may_have_been_accepted(a: &engine::Attempt) -> Option<DateTime<Utc>> {
    match (a.sent_at, &a.state) {
        (Some(t), _) => Some(t),
        (None, AttemptState::Unknown) => Some(a.started_at),
        _ => None,
    }
}

impl World {
    fn new(s: &Setup) -> Self {
        let rules = s.rules();
        let rec = begin(s.notification(), &rules, t0());
        World {
            rules,
            rec,
            now: t0(),
            pending: None,
            health: HealthView::new(),
            decisions: 0,
        }
    }

    /// One decision, checked, and what the driver then owes.
    fn step(&mut self, input: Input) -> Result<(), TestCaseError> {
        let before = self.rec.clone();
        let timer_not_due =
            matches!(input, Input::TimerFired) && before.wake_at.is_some_and(|w| self.now < w);
        let d = decide(&mut self.rec, &self.rules, &self.health, &input, self.now);
        self.decisions += 1;
        self.check(&before, &input, &d)?;
        if timer_not_due {
            prop_assert!(!d.changed && d.actions.is_empty(), "an early timer acted");
        }
        for a in &d.actions {
            match a {
                Action::Send { attempt, .. } => {
                    self.pending = Some(Pending::Send { attempt: *attempt })
                }
                Action::CheckGates { step, .. } => {
                    self.pending = Some(Pending::Gates { step: *step })
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check(
        &self,
        before: &CascadeRecord,
        input: &Input,
        d: &Decision,
    ) -> Result<(), TestCaseError> {
        let rec = &self.rec;
        let h = &rec.history;
        // `changed` is exactly "the record differs"; decisions never touch the version.
        prop_assert_eq!(
            d.changed,
            *rec != *before,
            "changed is wrong for {:?}",
            input
        );
        prop_assert_eq!(rec.version, before.version);
        prop_assert_eq!(d.first_event, before.history.len());
        prop_assert!(h.starts_with(&before.history), "history was rewritten");

        // Exactly one terminal state once finished, none before; only finished cascades have
        // no timer.
        let terminals = h.iter().filter(|e| is_terminal(&e.kind)).count();
        prop_assert_eq!(terminals, usize::from(rec.is_finished()), "{:?}", h);
        prop_assert_eq!(rec.wake_at.is_none(), rec.is_finished());
        if let Some(end) = h.iter().position(|e| is_terminal(&e.kind)) {
            prop_assert!(
                h[end..]
                    .iter()
                    .all(|e| !matches!(e.kind, HistoryKind::Sending { .. })),
                "sent after the end: {:?}",
                h
            );
        }
        if before.is_finished() {
            // After the end only late evidence and late send answers are recorded.
            prop_assert_eq!(&rec.phase, &before.phase);
            prop_assert!(
                h[before.history.len()..].iter().all(|e| matches!(
                    e.kind,
                    HistoryKind::Evidence { .. }
                        | HistoryKind::Sent { .. }
                        | HistoryKind::Failed { .. }
                        | HistoryKind::OutcomeUnknown { .. }
                )),
                "the end changed: {:?}",
                &h[before.history.len()..]
            );
        }

        // A reply ends a running cascade exactly when it was written after the first send
        // (less the default one-minute clock skew): an old message never ends it.
        if let Input::Reply { written_at, .. } = input
            && !before.is_finished()
        {
            let answers = before
                .attempts
                .first()
                .is_some_and(|a| *written_at + secs(60) >= a.started_at);
            prop_assert_eq!(
                matches!(rec.phase, Phase::Finished(Outcome::Replied { .. })),
                answers,
                "reply written at {} to a cascade first sent at {:?}",
                written_at,
                before.attempts.first().map(|a| a.started_at)
            );
        }

        // Every attempt was announced by a `Sending` entry.
        let sendings = h
            .iter()
            .filter(|e| matches!(e.kind, HistoryKind::Sending { .. }))
            .count();
        prop_assert_eq!(sendings, rec.attempts.len());

        let sends: Vec<_> = d
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { attempt, .. } => Some(*attempt),
                _ => None,
            })
            .collect();
        let gate_checks = d
            .actions
            .iter()
            .filter(|a| matches!(a, Action::CheckGates { .. }))
            .count();
        prop_assert!(sends.len() + gate_checks <= 1, "{:?}", d.actions);
        if gate_checks == 1 {
            prop_assert!(self.rules.channel_facts(rec.step).is_some());
            prop_assert!(matches!(rec.phase, Phase::Ready));
        }
        for &attempt in &sends {
            // The intent is in the record the driver stores before sending.
            prop_assert!(d.changed);
            prop_assert_eq!(attempt, rec.attempts.len() - 1);
            prop_assert_eq!(&rec.phase, &Phase::Sending { attempt });
            let a = &rec.attempts[attempt];
            prop_assert_eq!(&a.state, &AttemptState::InFlight);
            let announced = matches!(
                h.last().map(|e| &e.kind),
                Some(HistoryKind::Sending { step, attempt: n, .. }) if *step == a.step && *n == a.number
            );
            prop_assert!(announced, "the intent is not the last entry: {:?}", h);
            // Nothing is sent past the deadline, in quiet hours or into a rate limit.
            prop_assert!(rec.notification.deadline.is_none_or(|d| self.now < d));
            if let Some(q) = &self.rules.policy().quiet_hours {
                let tz = rec
                    .notification
                    .recipient
                    .time_zone
                    .unwrap_or(chrono_tz::Europe::Moscow);
                prop_assert!(!q.contains(self.now.with_timezone(&tz).time()));
            }
            prop_assert!(
                self.health
                    .condition(&a.channel)
                    .rate_limited_until
                    .is_none_or(|u| u <= self.now)
            );
            // No step is sent again without a recorded reason.
            let number = a.number;
            for earlier in rec.attempts[..attempt].iter().filter(|e| e.step == a.step) {
                prop_assert!(
                    matches!(
                        earlier.state,
                        AttemptState::Failed { .. } | AttemptState::Unknown
                    ),
                    "step {} sent again after {:?}: {:?}",
                    a.step,
                    earlier.state,
                    h
                );
                let reason = h.iter().any(|e| match &e.kind {
                    HistoryKind::Failed { step, attempt, .. }
                    | HistoryKind::OutcomeUnknown { step, attempt, .. } => {
                        *step == a.step && *attempt == earlier.number
                    }
                    _ => false,
                });
                prop_assert!(reason, "no reason recorded for resending step {}", a.step);
                prop_assert!(earlier.number < number);
            }
            let previous = rec.attempts[..attempt]
                .iter()
                .rev()
                .find(|e| e.step == a.step);
            prop_assert_eq!(
                a.possible_duplicate,
                previous.is_some_and(|e| e.state == AttemptState::Unknown)
            );
            // A step that waits for evidence never sends again after an unknown outcome: the
            // person may have the message, and a resend would be a duplicate.
            if previous.is_some_and(|e| e.state == AttemptState::Unknown) {
                let step = &self.rules.policy().steps[a.step];
                prop_assert_eq!(
                    step.unknown_outcome(self.rules.evidence_awaited(a.step)),
                    UnknownOutcome::Resend,
                    "step {} resent after an unknown outcome: {:?}",
                    a.step,
                    h
                );
            }
            // Only a passing failure (or an unknown outcome) is worth the same step again;
            // unreachable, invalid content or a channel that is down move on.
            if let Some(AttemptState::Failed { kind, .. }) = previous.map(|e| &e.state) {
                prop_assert!(
                    matches!(
                        kind,
                        ErrorKind::Temporary
                            | ErrorKind::Unexpected
                            | ErrorKind::RateLimited
                            | ErrorKind::NeedsTemplate
                    ),
                    "step {} sent again after {:?}",
                    a.step,
                    kind
                );
            }
        }

        // Window ends are never before the attempt, and are what window_end says.
        if let Phase::Waiting {
            attempt,
            window_end: end,
            ..
        } = rec.phase
        {
            let a = &rec.attempts[attempt];
            let accepted = may_have_been_accepted(a).expect("a waiting attempt may have been sent");
            prop_assert!(a.started_at <= accepted && accepted <= end);
            if !matches!(before.phase, Phase::Waiting { attempt: b, .. } if b == attempt) {
                let step = &self.rules.policy().steps[a.step];
                prop_assert_eq!(Some(end), window_end(a, step, None));
            }
        }
        // A window closes no sooner than its full length after acceptance (the step's window,
        // or the shorter one the attempt was given), unless channel health closed it early.
        for e in &h[before.history.len()..] {
            if let HistoryKind::WindowClosed { step, early, .. } = e.kind {
                let a = rec.attempts.iter().rev().find(|a| a.step == step);
                let accepted = a.and_then(may_have_been_accepted);
                prop_assert!(accepted.is_some_and(|t| t <= e.at));
                if let (Some(a), Some(accepted), false) = (a, accepted, early) {
                    let mut length = self.rules.policy().steps[step].window;
                    if let Some(short) = a.shortened_window {
                        length = length.min(short);
                    }
                    prop_assert!(
                        e.at >= accepted + chrono::Duration::from_std(length).unwrap(),
                        "the window of step {} closed early without a reason: {:?}",
                        step,
                        h
                    );
                }
            }
        }
        Ok(())
    }

    fn play(&mut self, e: &Event) -> Result<(), TestCaseError> {
        match *e {
            Event::Answer {
                error,
                gate,
                gate_secs,
            } => match self.pending.take() {
                Some(Pending::Send { attempt }) => {
                    let result = match error {
                        None => Ok(SendReceipt::new(format!("pm-{attempt}"), self.now)),
                        Some((ErrorKind::RateLimited, after)) => Err(ChannelError::rate_limited(
                            "slow down",
                            after.map(Duration::from_secs),
                        )),
                        Some((kind, _)) => Err(ChannelError::new(kind, "refused")),
                    };
                    self.step(Input::SendOutcome { attempt, result })
                }
                Some(Pending::Gates { step }) => {
                    let answer = match gate {
                        0 | 1 => GateDecision::Allow,
                        2 => GateDecision::Defer {
                            until: self.now + secs(gate_secs),
                            reason: "daily cap".into(),
                        },
                        _ => GateDecision::Deny {
                            reason: "hygiene".into(),
                        },
                    };
                    self.step(Input::GateAnswer { step, answer })
                }
                None => self.step(Input::TimerFired),
            },
            Event::Tick(s) => {
                self.now += secs(s);
                self.step(Input::TimerFired)
            }
            Event::Report { pick, status } => {
                let sent: Vec<_> = self
                    .rec
                    .attempts
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| a.provider_message_id.clone().map(|p| (i, p)))
                    .collect();
                if sent.is_empty() {
                    return Ok(());
                }
                let (attempt, pmid) = sent[pick % sent.len()].clone();
                let status = [
                    DeliveryStatus::Accepted,
                    DeliveryStatus::Sent,
                    DeliveryStatus::Delivered,
                    DeliveryStatus::Read,
                    DeliveryStatus::Failed,
                ][usize::from(status)];
                let kind = facts(&self.rec.attempts[attempt].channel).unwrap().kind;
                let report = DeliveryReport::new(kind, pmid, status, self.now);
                self.step(Input::DeliveryReport { attempt, report })
            }
            Event::Reply { written_ago } => self.step(Input::Reply {
                channel: ChannelKind::Telegram,
                written_at: self.now - secs(written_ago),
            }),
            Event::Cancel => self.step(Input::Cancel),
            Event::Crash => {
                self.pending = None;
                Ok(())
            }
            Event::StaleAnswer { pick, ok } => {
                if self.rec.attempts.is_empty() {
                    return Ok(());
                }
                let attempt = pick % self.rec.attempts.len();
                if matches!(self.pending, Some(Pending::Send { attempt: a }) if a == attempt) {
                    return Ok(()); // that one is not stale
                }
                let result = if ok {
                    Ok(SendReceipt::new(format!("stale-{attempt}"), self.now))
                } else {
                    Err(ChannelError::temporary("late 503"))
                };
                self.step(Input::SendOutcome { attempt, result })
            }
            Event::Health {
                channel,
                condition,
                rate_limited,
            } => {
                let (state, admission) = [
                    (HealthState::Healthy, Admission::Healthy),
                    (HealthState::Degraded, Admission::Degraded),
                    (HealthState::Down, Admission::Down),
                    (HealthState::Down, Admission::Probe),
                    (HealthState::Degraded, Admission::NotInRamp),
                    (HealthState::Degraded, Admission::Healthy),
                ][usize::from(condition)];
                self.health.set(
                    ChannelId::new(CHANNELS[channel].0),
                    ChannelCondition {
                        state,
                        admission,
                        rate_limited_until: rate_limited.map(|s| self.now + secs(s)),
                    },
                );
                Ok(())
            }
        }
    }

    /// The world goes quiet: every send is accepted, every gate allows, channels are healthy,
    /// and timers fire when due. The cascade must end.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        self.health = HealthView::new();
        for _ in 0..1000 {
            if self.rec.is_finished() {
                return Ok(());
            }
            match self.pending.take() {
                Some(Pending::Send { attempt }) => self.step(Input::SendOutcome {
                    attempt,
                    result: Ok(SendReceipt::new(format!("pm-{attempt}"), self.now)),
                })?,
                Some(Pending::Gates { step }) => self.step(Input::GateAnswer {
                    step,
                    answer: GateDecision::Allow,
                })?,
                None => {
                    if let Some(w) = self.rec.wake_at {
                        self.now = self.now.max(w);
                    }
                    self.step(Input::TimerFired)?;
                }
            }
        }
        prop_assert!(
            self.rec.is_finished(),
            "never ended: {:?}",
            self.rec.history
        );
        Ok(())
    }
}

fn run(s: &Setup, events: &[Event]) -> Result<usize, TestCaseError> {
    let mut w = World::new(s);
    w.step(Input::Submitted)?;
    for e in events {
        w.play(e)?;
    }
    w.finish()?;
    let terminals = w
        .rec
        .history
        .iter()
        .filter(|e| is_terminal(&e.kind))
        .count();
    prop_assert_eq!(terminals, 1);
    Ok(w.decisions)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_cascade_ends_once_and_sends_only_with_a_recorded_reason(
        s in setup(),
        events in proptest::collection::vec(event(), 0..60),
    ) {
        run(&s, &events)?;
    }
}

/// A retried step's attempt waits its full window from its own acceptance: backoff before it
/// does not eat into the wait for evidence.
#[test]
fn the_window_counts_from_acceptance_not_from_the_first_try() {
    let rules = Rules::new(
        CascadePolicy::new(
            "p",
            vec![
                Step::new("wa").window(Duration::from_secs(600)),
                Step::new("sms"),
            ],
        ),
        facts,
    );
    let n = Notification::new(
        "n1",
        Recipient::new("patient").address(Address::Phone(phone())),
        Content::text("Приём завтра в 10:00"),
    );
    let health = HealthView::new();
    let mut rec = begin(n, &rules, t0());
    let d = decide(&mut rec, &rules, &health, &Input::Submitted, t0());
    assert!(matches!(d.actions[..], [Action::Send { attempt: 0, .. }]));
    let refused = Input::SendOutcome {
        attempt: 0,
        result: Err(ChannelError::temporary("503")),
    };
    let _ = decide(&mut rec, &rules, &health, &refused, t0());
    let retry_at = rec.wake_at.unwrap();
    assert_eq!(retry_at, t0() + secs(5), "the first backoff");
    let d = decide(&mut rec, &rules, &health, &Input::TimerFired, retry_at);
    assert!(matches!(d.actions[..], [Action::Send { attempt: 1, .. }]));
    let accepted_at = retry_at + secs(2);
    let ok = Input::SendOutcome {
        attempt: 1,
        result: Ok(SendReceipt::new("wamid.2", accepted_at)),
    };
    let _ = decide(&mut rec, &rules, &health, &ok, accepted_at);
    let Phase::Waiting { window_end, .. } = rec.phase else {
        panic!("{:?}", rec.phase)
    };
    assert_eq!(window_end, accepted_at + secs(600));
    // One second before the end nothing moves; at the end the cascade moves on to SMS.
    let d = decide(
        &mut rec,
        &rules,
        &health,
        &Input::TimerFired,
        window_end - secs(1),
    );
    assert!(d.actions.is_empty());
    let d = decide(&mut rec, &rules, &health, &Input::TimerFired, window_end);
    assert!(
        matches!(&d.actions[..], [Action::Send { channel, .. }] if channel.as_str() == "sms"),
        "{:?}",
        d.actions
    );
}

/// A channel that turns degraded while a step waits on it cuts the window by the policy; the
/// cut counts from acceptance too, the next check comes when the cut window ends, and the close
/// is recorded as early.
#[test]
fn a_channel_turning_degraded_cuts_the_waiting_window() {
    let rules = Rules::new(
        CascadePolicy::new("p", vec![Step::new("wa"), Step::new("sms")])
            .on_degraded(HealthAction::ShortenWindow(Duration::from_secs(500))),
        facts,
    );
    let n = Notification::new(
        "n1",
        Recipient::new("patient").address(Address::Phone(phone())),
        Content::text("Приём завтра в 10:00"),
    );
    let healthy = HealthView::new();
    let mut rec = begin(n, &rules, t0());
    let _ = decide(&mut rec, &rules, &healthy, &Input::Submitted, t0());
    let ok = Input::SendOutcome {
        attempt: 0,
        result: Ok(SendReceipt::new("wamid.1", t0())),
    };
    let _ = decide(&mut rec, &rules, &healthy, &ok, t0());
    // Health checks back off from overdue_after (5 minutes by default).
    assert_eq!(rec.wake_at, Some(t0() + secs(300)));
    let degraded = HealthView::new().with(
        "wa",
        ChannelCondition {
            state: HealthState::Degraded,
            admission: Admission::Degraded,
            rate_limited_until: None,
        },
    );
    let d = decide(
        &mut rec,
        &rules,
        &degraded,
        &Input::TimerFired,
        t0() + secs(300),
    );
    assert!(d.actions.is_empty(), "inside the cut window");
    assert_eq!(
        rec.wake_at,
        Some(t0() + secs(500)),
        "wakes when the cut window ends"
    );
    let d = decide(
        &mut rec,
        &rules,
        &degraded,
        &Input::TimerFired,
        t0() + secs(499),
    );
    assert!(d.actions.is_empty() && !d.changed, "not due yet");
    let d = decide(
        &mut rec,
        &rules,
        &degraded,
        &Input::TimerFired,
        t0() + secs(500),
    );
    assert!(matches!(&d.actions[..], [Action::Send { channel, .. }] if channel.as_str() == "sms"));
    assert!(rec.history.iter().any(|e| matches!(
        e.kind,
        HistoryKind::WindowClosed {
            step: 0,
            early: true,
            ..
        }
    )));
}
