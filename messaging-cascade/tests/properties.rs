//! Property tests: for random channel behaviours, every submitted notification ends in exactly
//! one terminal state, no step is sent twice without a recorded reason, and nothing is sent
//! after a delivery report or a reply was handled.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use messaging_cascade::engine::{AttemptState, CascadeStatus, HistoryKind};
use messaging_cascade::testkit::{
    Latency, Outage, OutageMode, SimBehavior, SimulatedChannel, Simulation,
};
use messaging_cascade::*;
use messaging_core::*;
use proptest::prelude::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
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
    ]
}

fn behavior() -> impl Strategy<Value = SimBehavior> {
    (
        0.0f64..0.7,
        error_kind(),
        0.0f64..1.0,
        1.0f64..4000.0,
        proptest::option::of((0u32..7200, 60u32..14_400, 0u8..3)),
    )
        .prop_map(
            |(error_rate, error_kind, delivery_rate, median, outage)| SimBehavior {
                latency: Latency::LogNormal {
                    median_secs: median,
                    sigma: 0.9,
                },
                delivery_rate,
                error_rate,
                error_kind,
                outages: outage
                    .map(|(start, len, mode)| Outage {
                        start: t0() + chrono::Duration::seconds(i64::from(start)),
                        end: t0() + chrono::Duration::seconds(i64::from(start + len)),
                        mode: match mode {
                            0 => OutageMode::Silent,
                            1 => OutageMode::Refuse,
                            _ => OutageMode::Slow { extra_secs: 5000.0 },
                        },
                    })
                    .into_iter()
                    .collect(),
                ..SimBehavior::default()
            },
        )
}

#[derive(Debug, Clone)]
struct Scenario {
    behaviors: Vec<SimBehavior>,
    notifications: usize,
    /// (notification index, seconds after start) of replies from the person.
    replies: Vec<(usize, u32)>,
    health: bool,
    seed: u64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(behavior(), 4),
        1usize..25,
        proptest::collection::vec((0usize..25, 0u32..20_000), 0..6),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(behaviors, notifications, replies, health, seed)| Scenario {
                behaviors,
                notifications,
                replies,
                health,
                seed,
            },
        )
}

fn is_terminal(k: &HistoryKind) -> bool {
    matches!(
        k,
        HistoryKind::Delivered { .. }
            | HistoryKind::LateDelivery { .. }
            | HistoryKind::Replied { .. }
            | HistoryKind::Unconfirmed
            | HistoryKind::Exhausted
            | HistoryKind::Expired
            | HistoryKind::Cancelled
    )
}

fn check(st: &CascadeStatus, reply_at: Option<DateTime<Utc>>) -> Result<(), TestCaseError> {
    // Exactly one terminal state.
    prop_assert!(
        st.outcome.is_some(),
        "{} did not finish: {:?}",
        st.notification_id,
        st.phase
    );
    let terminals: Vec<_> = st.history.iter().filter(|h| is_terminal(&h.kind)).collect();
    prop_assert_eq!(terminals.len(), 1, "{:?}", st.history);
    let end = terminals[0].at;
    let end_index = st
        .history
        .iter()
        .position(|h| is_terminal(&h.kind))
        .unwrap();

    // Nothing is sent after the cascade ended (delivery report, reply, expiry).
    for (i, h) in st.history.iter().enumerate() {
        if let HistoryKind::Sending { .. } = h.kind {
            prop_assert!(i < end_index, "sent after the end: {:?}", st.history);
        }
    }
    for a in &st.attempts {
        prop_assert!(a.started_at <= end);
        if let Some(r) = reply_at {
            prop_assert!(a.started_at <= r, "sent after the reply was handled");
        }
    }

    // No step is sent twice without a recorded reason: every attempt but the last on a step
    // failed (with its error in the history) or had an unknown outcome.
    let steps: std::collections::BTreeSet<usize> = st.attempts.iter().map(|a| a.step).collect();
    for step in steps {
        let on_step: Vec<_> = st.attempts.iter().filter(|a| a.step == step).collect();
        for a in &on_step[..on_step.len() - 1] {
            prop_assert!(
                matches!(a.state, AttemptState::Failed { .. } | AttemptState::Unknown),
                "attempt {} on step {} was repeated without a reason: {:?}",
                a.number,
                step,
                st.history
            );
            let recorded = st.history.iter().any(|h| match &h.kind {
                HistoryKind::Failed {
                    step: s, attempt, ..
                }
                | HistoryKind::OutcomeUnknown {
                    step: s, attempt, ..
                } => *s == step && *attempt == a.number,
                _ => false,
            });
            prop_assert!(recorded, "no recorded reason for repeating step {}", step);
        }
    }
    Ok(())
}

fn run(s: Scenario) -> Result<(), TestCaseError> {
    let started = std::time::Instant::now();
    let n = s.notifications;
    let result = run_inner(s);
    if std::env::var_os("PROPERTIES_TIMING").is_some() {
        eprintln!("case with {n} notifications: {:?}", started.elapsed());
    }
    result
}

fn run_inner(s: Scenario) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move {
        let clock = ManualClock::new(t0());
        let kinds = [
            ChannelKind::WhatsApp,
            ChannelKind::Telegram,
            ChannelKind::Max,
            ChannelKind::Sms,
        ];
        let ids = ["wa", "tg", "max", "sms"];
        let channels: Vec<Arc<SimulatedChannel>> = (0..4)
            .map(|i| {
                Arc::new(
                    SimulatedChannel::new(ids[i], kinds[i], clock.clone(), s.seed ^ i as u64)
                        .with_behavior(s.behaviors[i].clone()),
                )
            })
            .collect();
        let mut b = Engine::builder().clock(clock.clone()).policy(
            CascadePolicy::classic_clinic("wa", "tg", "max", "sms")
                .quiet_hours(engine::QuietHours::hours(22, 8)),
        );
        for c in &channels {
            b = b.channel(c.clone());
        }
        if !s.health {
            b = b.without_health();
        }
        let engine = b.build().unwrap();
        let mut sim = Simulation::new(engine.clone(), clock.clone());
        for c in &channels {
            sim = sim.channel(c.clone());
        }
        for i in 0..s.notifications {
            let mut r = Recipient::with_phone(format!("c{i}"), "+79123456789")
                .unwrap()
                .name("Анна");
            // Distinct reply keys per person.
            r.phone = None;
            r = r
                .address(Address::WhatsApp(format!("7900000{i:04}")))
                .address(Address::Telegram(1000 + i as i64))
                .address(Address::MaxUser(2000 + i as i64));
            if i % 3 == 0 {
                r = r.address(Address::Phone(Phone::parse("+79123456789").unwrap()));
            }
            let mut n = Notification::new(
                format!("n{i}"),
                r,
                Content::text("Анна, напоминаем о приёме. Придёте?")
                    .with_template(Template::new("reminder", "ru")),
            );
            if i % 4 == 1 {
                n = n.deadline(t0() + chrono::Duration::hours(3));
            }
            engine.submit(n).await.unwrap();
        }
        let mut replies = s.replies.clone();
        replies.sort_by_key(|r| r.1);
        let mut reply_at = vec![None; s.notifications];
        for (idx, secs) in replies {
            if idx >= s.notifications {
                continue;
            }
            let at = t0() + chrono::Duration::seconds(i64::from(secs));
            sim.run_until(at).await.unwrap();
            clock.set(at);
            let st = engine
                .status(&format!("n{idx}").into())
                .await
                .unwrap()
                .unwrap();
            if st.outcome.is_none() && reply_at[idx].is_none() {
                reply_at[idx] = Some(clock.now());
            }
            engine
                .handle_event(&Event::Inbound(InboundMessage::new(
                    ChannelKind::Telegram,
                    Address::Telegram(1000 + idx as i64),
                    Some("да".into()),
                    clock.now(),
                )))
                .await
                .unwrap();
        }
        sim.run_for(Duration::from_secs(2 * 24 * 3600))
            .await
            .unwrap();
        let mut attempts = 0;
        for (i, reply) in reply_at.iter().enumerate() {
            let st = engine
                .status(&format!("n{i}").into())
                .await
                .unwrap()
                .unwrap();
            attempts += st.attempts.len() as u64;
            check(&st, *reply)?;
        }
        // Every send the channels saw is an attempt in some history: nothing hidden.
        let sends: u64 = channels.iter().map(|c| c.stats().sends).sum();
        prop_assert_eq!(sends, attempts);
        prop_assert_eq!(engine.store().count_active().await.unwrap(), 0);
        Ok(())
    })
}

proptest! {
    // PROPTEST_CASES overrides the default of 64 cases.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_cascade_ends_once_and_never_sends_after_the_end(s in scenario()) {
        run(s)?;
    }
}
