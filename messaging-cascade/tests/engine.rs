//! Cascade engine behaviour, on the injected clock: every test runs in milliseconds.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use messaging_cascade::engine::{
    AttemptState, BuildError, GateDecision, HealthAction, HistoryKind, Phase, QuietHours,
    SendContext, SendGate, SkipReason, SubmitError,
};
use messaging_cascade::health::{HealthConfig, HealthState};
use messaging_cascade::*;
use messaging_core::testkit::StubChannel;
use messaging_core::*;

fn t0() -> DateTime<Utc> {
    // Monday 2026-03-02 12:00 Moscow time.
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

struct World {
    clock: ManualClock,
    wa: Arc<StubChannel>,
    tg: Arc<StubChannel>,
    max: Arc<StubChannel>,
    sms: Arc<StubChannel>,
}

impl World {
    fn new() -> Self {
        let clock = ManualClock::new(t0());
        let mk = |id: &str, kind| Arc::new(StubChannel::new(id, kind).with_clock(clock.clone()));
        World {
            wa: mk("wa", ChannelKind::WhatsApp),
            tg: mk("tg", ChannelKind::Telegram),
            max: mk("max", ChannelKind::Max),
            sms: mk("sms", ChannelKind::Sms),
            clock,
        }
    }

    fn builder(&self) -> EngineBuilder {
        Engine::builder()
            .clock(self.clock.clone())
            .channel(self.wa.clone())
            .channel(self.tg.clone())
            .channel(self.max.clone())
            .channel(self.sms.clone())
    }

    fn clinic(&self) -> Engine {
        self.builder()
            .policy(CascadePolicy::classic_clinic("wa", "tg", "max", "sms"))
            .build()
            .unwrap()
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

fn patient(id: &str) -> Recipient {
    Recipient::with_phone(format!("c-{id}"), "+79123456789")
        .unwrap()
        .name("Анна")
}

fn patient_everywhere(id: &str) -> Recipient {
    patient(id)
        .address(Address::Telegram(42))
        .address(Address::MaxUser(77))
}

fn reminder(id: &str, r: Recipient) -> Notification {
    Notification::new(
        id,
        r,
        Content::text("Анна, напоминаем о приёме завтра в 10:00. Придёте?"),
    )
}

async fn status(engine: &Engine, id: &str) -> engine::CascadeStatus {
    engine.status(&id.into()).await.unwrap().unwrap()
}

fn delivered(kind: ChannelKind, pmid: &str, at: DateTime<Utc>) -> Event {
    Event::Delivery(DeliveryReport::new(
        kind,
        pmid,
        DeliveryStatus::Delivered,
        at,
    ))
}

fn skipped_reasons(st: &engine::CascadeStatus) -> Vec<(String, SkipReason)> {
    st.history
        .iter()
        .filter_map(|h| match &h.kind {
            HistoryKind::Skipped {
                channel, reason, ..
            } => Some((channel.to_string(), reason.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn submit_is_idempotent_by_notification_id() {
    let w = World::new();
    let engine = w.clinic();
    let first = engine.submit(reminder("n1", patient("1"))).await.unwrap();
    assert!(first.new);
    let again = engine.submit(reminder("n1", patient("1"))).await.unwrap();
    assert!(!again.new);
    assert_eq!(w.wa.sent().len(), 1, "the second submit sent nothing");
    assert_eq!(status(&engine, "n1").await.attempts.len(), 1);
}

#[tokio::test]
async fn delivered_within_window_ends_the_cascade() {
    let w = World::new();
    let engine = w.clinic();
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    w.advance(30);
    engine
        .handle_event(&delivered(ChannelKind::WhatsApp, "wa-1", w.clock.now()))
        .await
        .unwrap();
    let st = status(&engine, "n1").await;
    assert!(matches!(
        st.outcome,
        Some(Outcome::Delivered {
            step: 0,
            evidence: Evidence::Delivered,
            late: false,
            ..
        })
    ));
    w.advance(7200);
    engine.tick().await.unwrap();
    assert!(w.tg.sent().is_empty(), "nothing is sent after delivery");
    let a = &st.attempts[0];
    assert_eq!(a.provider_message_id.as_ref().unwrap().as_str(), "wa-1");
    assert_eq!(a.evidence, Some(Evidence::Delivered));
    assert_eq!(
        a.evidence_at,
        Some(w.clock.now() - chrono::Duration::seconds(7200))
    );
}

#[tokio::test]
async fn window_timeout_moves_on_and_evidence_is_capped_by_channel() {
    let w = World::new();
    let engine = w.clinic();
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    w.advance(3599);
    engine.tick().await.unwrap();
    assert!(w.tg.sent().is_empty(), "still inside the 60-minute window");
    w.advance(2);
    engine.tick().await.unwrap();
    assert_eq!(w.tg.sent().len(), 1);
    // Telegram can only ever say "accepted": the step does not wait for "delivered".
    let st = status(&engine, "n1").await;
    assert!(matches!(
        st.outcome,
        Some(Outcome::Delivered {
            step: 1,
            evidence: Evidence::Accepted,
            ..
        })
    ));
    assert!(st.history.iter().any(|h| matches!(
        h.kind,
        HistoryKind::WindowClosed {
            step: 0,
            early: false,
            ..
        }
    )));
    assert!(w.max.sent().is_empty() && w.sms.sent().is_empty());
}

#[tokio::test]
async fn steps_are_skipped_with_reasons() {
    let w = World::new();
    let engine = w.clinic();
    // No Telegram or Max address: both skipped after WhatsApp times out; SMS is sent.
    let r = patient("1").opt_out(Some(ChannelKind::WhatsApp), None);
    engine.submit(reminder("n1", r)).await.unwrap();
    let st = status(&engine, "n1").await;
    let skips = skipped_reasons(&st);
    assert_eq!(
        skips,
        vec![
            ("wa".into(), SkipReason::OptedOut),
            ("tg".into(), SkipReason::NoAddress),
            ("max".into(), SkipReason::NoAddress),
        ]
    );
    assert_eq!(w.sms.sent().len(), 1);
    assert!(w.wa.sent().is_empty());
}

#[tokio::test]
async fn deadline_passed_skips_and_expires() {
    let w = World::new();
    let engine = w.clinic();
    let n = reminder("n1", patient("1")).deadline(t0() + chrono::Duration::minutes(30));
    engine.submit(n).await.unwrap();
    w.advance(31 * 60);
    engine.tick().await.unwrap();
    let st = status(&engine, "n1").await;
    assert_eq!(st.outcome, Some(Outcome::Expired));
    assert!(
        w.sms.sent().is_empty(),
        "nothing is sent after the deadline"
    );
    // A notification submitted after its deadline is skipped with that reason.
    let late = reminder("n2", patient("2")).deadline(t0());
    engine.submit(late).await.unwrap();
    let st = status(&engine, "n2").await;
    assert_eq!(st.outcome, Some(Outcome::Expired));
    assert!(
        skipped_reasons(&st)
            .iter()
            .any(|(_, r)| *r == SkipReason::DeadlinePassed)
    );
}

#[tokio::test]
async fn unreachable_moves_to_the_next_step_at_once() {
    let w = World::new();
    let engine = w.clinic();
    w.wa.push_error(ChannelError::unreachable("not on WhatsApp").with_provider_code("131026"));
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    assert_eq!(w.tg.sent().len(), 1, "telegram was tried without waiting");
    let st = status(&engine, "n1").await;
    assert!(matches!(
        &st.attempts[0].state,
        AttemptState::Failed { kind: ErrorKind::Unreachable, code: Some(c), .. } if &**c == "131026"
    ));
}

#[tokio::test]
async fn needs_template_retries_with_the_template_then_gives_up() {
    let w = World::new();
    let engine = w.clinic();
    w.wa.push_error(ChannelError::needs_template("outside the 24h window"));
    let n = Notification::new(
        "n1",
        patient_everywhere("1"),
        Content::text("Анна, приём завтра в 10:00")
            .with_template(Template::new("appointment_reminder", "ru")),
    );
    engine.submit(n).await.unwrap();
    let sent = w.wa.sent();
    assert_eq!(sent.len(), 2);
    assert!(!sent[0].force_template);
    assert!(sent[1].force_template, "the retry uses the template");

    // Without a template: next step at once.
    w.wa.push_error(ChannelError::needs_template("outside the 24h window"));
    engine
        .submit(reminder("n2", patient_everywhere("2")))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 3);
    assert_eq!(w.tg.sent().len(), 1);
}

#[tokio::test]
async fn rate_limited_waits_retry_after_on_the_same_channel() {
    let w = World::new();
    let engine = w.clinic();
    w.wa.push_error(ChannelError::rate_limited(
        "too many",
        Some(Duration::from_secs(30)),
    ));
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 1);
    w.advance(29);
    engine.tick().await.unwrap();
    assert_eq!(w.wa.sent().len(), 1, "waits the full retry_after");
    w.advance(1);
    engine.tick().await.unwrap();
    assert_eq!(w.wa.sent().len(), 2, "then the same channel again");
    assert!(w.tg.sent().is_empty());
    let st = status(&engine, "n1").await;
    assert!(st.history.iter().any(|h| matches!(
        &h.kind,
        HistoryKind::Deferred {
            reason: engine::DeferReason::RateLimited,
            ..
        }
    )));
}

#[tokio::test]
async fn temporary_errors_back_off_then_become_persistent() {
    let w = World::new();
    let engine = w.clinic();
    for _ in 0..3 {
        w.wa.push_error(ChannelError::temporary("503"));
    }
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 1);
    w.advance(5);
    engine.tick().await.unwrap();
    assert_eq!(w.wa.sent().len(), 2, "retried after 5 s");
    w.advance(9);
    engine.tick().await.unwrap();
    assert_eq!(w.wa.sent().len(), 2, "second backoff is 10 s");
    w.advance(1);
    engine.tick().await.unwrap();
    assert_eq!(w.wa.sent().len(), 3);
    // Retries ran out (3 attempts): next step, long before the 60-minute window.
    assert_eq!(w.tg.sent().len(), 1);
}

#[tokio::test]
async fn channel_down_marks_health_and_later_cascades_skip_it() {
    let w = World::new();
    let engine = w.clinic();
    w.wa.push_error(ChannelError::channel_down("invalid OAuth token").with_provider_code("190"));
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    assert_eq!(w.tg.sent().len(), 1);
    assert_eq!(
        engine.health(&"wa".into()).unwrap().state,
        HealthState::Down
    );
    engine
        .submit(reminder("n2", patient_everywhere("2")))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 1, "the down channel is not tried");
    let st = status(&engine, "n2").await;
    assert_eq!(
        skipped_reasons(&st)[0],
        ("wa".into(), SkipReason::ChannelDown)
    );
}

#[tokio::test]
async fn invalid_content_fails_the_step_with_its_reason() {
    let w = World::new();
    let engine = w.clinic();
    w.wa.push_error(
        ChannelError::invalid_content("template parameter count").with_provider_code("132000"),
    );
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    let st = status(&engine, "n1").await;
    assert!(st.history.iter().any(|h| matches!(
        &h.kind,
        HistoryKind::Failed { kind: ErrorKind::InvalidContent, message, .. } if &**message == "template parameter count"
    )));
    assert_eq!(w.tg.sent().len(), 1);
}

#[tokio::test]
async fn a_reply_on_any_channel_ends_the_cascade() {
    let w = World::new();
    let engine = w.clinic();
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    // The person answers in Telegram while WhatsApp is still waiting.
    let reply = Event::Inbound(InboundMessage::new(
        ChannelKind::Telegram,
        Address::Telegram(42),
        Some("Да, приду".into()),
        w.clock.now(),
    ));
    engine.handle_event(&reply).await.unwrap();
    let st = status(&engine, "n1").await;
    assert_eq!(
        st.outcome,
        Some(Outcome::Replied {
            channel: ChannelKind::Telegram
        })
    );
    w.advance(4000);
    engine.tick().await.unwrap();
    assert!(w.tg.sent().is_empty());

    // A WhatsApp reply from the phone's wa_id also counts.
    engine.submit(reminder("n2", patient("2"))).await.unwrap();
    let wa_reply = Event::Inbound(InboundMessage::new(
        ChannelKind::WhatsApp,
        Address::WhatsApp("79123456789".into()),
        Some("ок".into()),
        w.clock.now(),
    ));
    engine.handle_event(&wa_reply).await.unwrap();
    assert!(matches!(
        status(&engine, "n2").await.outcome,
        Some(Outcome::Replied { .. })
    ));
}

#[tokio::test]
async fn edits_deletions_reactions_and_echoes_are_not_replies() {
    let w = World::new();
    let engine = w.clinic();
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    let wa = |action: InboundAction| {
        Event::Inbound(
            InboundMessage::new(
                ChannelKind::WhatsApp,
                Address::WhatsApp("79123456789".into()),
                Some("СТОП".into()),
                w.clock.now(),
            )
            .action(action),
        )
    };
    for action in [
        InboundAction::Edit {
            of: "wamid.old".into(),
        },
        InboundAction::Deletion {
            of: "wamid.old".into(),
        },
        // A reaction to a message this engine never sent is not evidence of anything.
        InboundAction::Reaction {
            to: "wamid.unknown".into(),
            emoji: Some("👍".into()),
        },
        InboundAction::Echo,
    ] {
        engine.handle_event(&wa(action.clone())).await.unwrap();
        assert_eq!(status(&engine, "n1").await.outcome, None, "{action:?}");
    }
    // A message in a WhatsApp group is the person's reply (by their number in `from`).
    let mut group = InboundMessage::new(
        ChannelKind::WhatsApp,
        Address::WhatsApp("group:Y2FwaV9ncm91cDox".into()),
        Some("Да".into()),
        w.clock.now(),
    );
    group.from = "79123456789".into();
    engine.handle_event(&Event::Inbound(group)).await.unwrap();
    assert!(matches!(
        status(&engine, "n1").await.outcome,
        Some(Outcome::Replied { .. })
    ));
}

#[tokio::test]
async fn late_report_for_earlier_step_stops_later_steps() {
    let w = World::new();
    let engine = Engine::builder()
        .clock(w.clock.clone())
        .channel(w.wa.clone())
        .channel(w.sms.clone())
        .channel(w.tg.clone())
        .policy(CascadePolicy::new(
            "p",
            vec![
                Step::new("wa").window(Duration::from_secs(600)),
                Step::new("sms").window(Duration::from_secs(600)),
                Step::new("tg"),
            ],
        ))
        .without_health()
        .build()
        .unwrap();
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    w.advance(601);
    engine.tick().await.unwrap();
    assert_eq!(w.sms.sent().len(), 1, "moved on to SMS");
    // WhatsApp's report arrives late, while SMS waits.
    engine
        .handle_event(&delivered(ChannelKind::WhatsApp, "wa-1", w.clock.now()))
        .await
        .unwrap();
    let st = status(&engine, "n1").await;
    assert!(matches!(
        st.outcome,
        Some(Outcome::Delivered {
            step: 0,
            late: true,
            ..
        })
    ));
    assert!(
        st.history
            .iter()
            .any(|h| matches!(h.kind, HistoryKind::LateDelivery { step: 0, .. }))
    );
    w.advance(601);
    engine.tick().await.unwrap();
    assert!(w.tg.sent().is_empty(), "the step not yet sent is stopped");
    // A report after the end is recorded, not acted on.
    engine
        .handle_event(&delivered(ChannelKind::Sms, "sms-1", w.clock.now()))
        .await
        .unwrap();
    let st = status(&engine, "n1").await;
    assert!(matches!(
        st.history.last().unwrap().kind,
        HistoryKind::Evidence { step: 1, .. }
    ));
}

#[tokio::test]
async fn report_that_overtakes_the_receipt_is_not_lost() {
    // The provider's webhook can arrive before our HTTP call returns.
    let w = World::new();
    let engine = w.clinic();
    engine
        .handle_event(&delivered(ChannelKind::WhatsApp, "wa-1", w.clock.now()))
        .await
        .unwrap();
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    assert!(matches!(
        status(&engine, "n1").await.outcome,
        Some(Outcome::Delivered { step: 0, .. })
    ));
}

#[tokio::test]
async fn quiet_hours_wait_in_the_recipients_time_zone() {
    let w = World::new();
    let engine = w
        .builder()
        .policy(
            CascadePolicy::classic_clinic("wa", "tg", "max", "sms")
                .quiet_hours(QuietHours::hours(21, 9)),
        )
        .build()
        .unwrap();
    // 09:00 UTC is 18:00 in Vladivostok (UTC+10): not quiet, sent.
    let r = patient("1").time_zone(chrono_tz::Asia::Vladivostok);
    engine.submit(reminder("n1", r)).await.unwrap();
    assert_eq!(w.wa.sent().len(), 1);
    // 09:00 UTC is 21:00 in Kamchatka (UTC+12): quiet, waits until 09:00 local.
    let r = patient("2").time_zone(chrono_tz::Asia::Kamchatka);
    engine.submit(reminder("n2", r)).await.unwrap();
    assert_eq!(w.wa.sent().len(), 1, "deferred, not sent");
    let st = status(&engine, "n2").await;
    assert!(skipped_reasons(&st).is_empty(), "waits; is not skipped");
    let until = st
        .history
        .iter()
        .find_map(|h| match &h.kind {
            HistoryKind::Deferred {
                until,
                reason: engine::DeferReason::QuietHours,
                ..
            } => Some(*until),
            _ => None,
        })
        .unwrap();
    // 09:00 next morning in Kamchatka = 21:00 UTC today.
    assert_eq!(until, Utc.with_ymd_and_hms(2026, 3, 2, 21, 0, 0).unwrap());
    w.clock.set(until);
    engine.tick().await.unwrap();
    assert_eq!(w.wa.sent().len(), 2);
}

#[tokio::test]
async fn regulated_senders_never_use_foreign_messengers() {
    let w = World::new();
    let engine = w
        .builder()
        .policy(CascadePolicy::classic_clinic("wa", "tg", "max", "sms"))
        .regulated(true)
        .build()
        .unwrap();
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    assert!(w.wa.sent().is_empty() && w.tg.sent().is_empty());
    assert_eq!(w.max.sent().len(), 1);
    let st = status(&engine, "n1").await;
    assert_eq!(
        skipped_reasons(&st),
        vec![
            ("wa".into(), SkipReason::ForeignMessengerBlocked),
            ("tg".into(), SkipReason::ForeignMessengerBlocked)
        ]
    );
    // A person reachable only through foreign messengers cannot be accepted.
    let only_tg = Recipient::default().address(Address::Telegram(5));
    let err = engine.submit(reminder("n2", only_tg)).await.unwrap_err();
    assert!(matches!(err, SubmitError::NoAddress(..)));
}

#[tokio::test]
async fn event_stream_and_full_history() {
    let w = World::new();
    let engine = w.clinic();
    let mut events = engine.subscribe();
    w.wa.push_error(ChannelError::unreachable("131026"));
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        assert_eq!(e.notification_id.as_str(), "n1");
        seen.push(
            serde_json::to_value(&e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        seen,
        [
            "submitted",
            "step_started",
            "sending",
            "failed",
            "advanced",
            "step_started",
            "sending",
            "sent",
            "delivered"
        ]
    );
    let st = status(&engine, "n1").await;
    assert_eq!(st.attempts.len(), 2);
    assert_eq!(st.attempts[0].channel.as_str(), "wa");
    assert_eq!(st.attempts[1].channel.as_str(), "tg");
    assert_eq!(
        st.attempts[1]
            .provider_message_id
            .as_ref()
            .unwrap()
            .as_str(),
        "tg-1"
    );
    assert_eq!(st.attempts[1].sent_at, Some(t0()));
    // The status serializes for an API.
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["outcome"]["outcome"], "delivered");
}

#[tokio::test]
async fn routing_by_purpose_selects_the_policy() {
    let w = World::new();
    let wa_dialog = Arc::new(StubChannel::new("wa-dialog", ChannelKind::WhatsApp));
    let engine = w
        .builder()
        .channel(wa_dialog.clone())
        .policy(CascadePolicy::new(
            "bulk",
            vec![Step::new("wa"), Step::new("sms")],
        ))
        .policy(CascadePolicy::new("dialogue", vec![Step::new("wa-dialog")]))
        .route(Purpose::Service, "bulk")
        .route(Purpose::Conversation, "dialogue")
        .build()
        .unwrap();
    engine.submit(reminder("n1", patient("1"))).await.unwrap();
    engine
        .submit(reminder("n2", patient("2")).purpose(Purpose::Conversation))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 1);
    assert_eq!(wa_dialog.sent().len(), 1);
    assert_eq!(status(&engine, "n2").await.policy.as_str(), "dialogue");
}

#[tokio::test]
async fn bad_input_is_a_clear_error() {
    let w = World::new();
    assert!(matches!(
        w.builder()
            .policy(CascadePolicy::new("empty", vec![]))
            .build(),
        Err(BuildError::EmptyPolicy(_))
    ));
    assert!(matches!(
        w.builder()
            .policy(CascadePolicy::new("p", vec![Step::new("nope")]))
            .build(),
        Err(BuildError::UnknownChannel { step: 0, .. })
    ));
    assert!(matches!(
        w.builder()
            .policy(CascadePolicy::new("p", vec![Step::new("wa")]))
            .route(Purpose::Marketing, "missing")
            .build(),
        Err(BuildError::UnknownPolicy(_))
    ));
    let engine = w.clinic();
    let nobody = Recipient::default();
    assert!(matches!(
        engine.submit(reminder("n1", nobody)).await,
        Err(SubmitError::NoAddress(..))
    ));
    let huge = Notification::new(
        "n2",
        patient_everywhere("2"),
        Content::text("я".repeat(20_000)),
    );
    assert!(matches!(
        engine.submit(huge).await,
        Err(SubmitError::ContentTooLong(..))
    ));
    assert!(matches!(
        engine
            .submit(reminder("n3", patient("3")).policy("ghost"))
            .await,
        Err(SubmitError::UnknownPolicy(_))
    ));
    assert!(matches!(
        engine.submit(reminder("", patient("3"))).await,
        Err(SubmitError::EmptyId)
    ));
    assert_eq!(
        w.wa.send_count(),
        0,
        "nothing was sent for refused notifications"
    );
}

#[tokio::test]
async fn content_too_long_for_one_channel_skips_only_that_step() {
    let w = World::new();
    let engine = w.clinic();
    // 5,000 characters: too long for WhatsApp (4096, one part), fine for Telegram (4 parts).
    let n = Notification::new(
        "n1",
        patient_everywhere("1"),
        Content::text("a".repeat(5000)),
    );
    engine.submit(n).await.unwrap();
    let st = status(&engine, "n1").await;
    assert_eq!(
        skipped_reasons(&st)[0],
        ("wa".into(), SkipReason::ContentTooLong)
    );
    assert_eq!(w.tg.sent().len(), 1);
}

#[derive(Debug)]
struct WarmUp {
    until: DateTime<Utc>,
}

#[async_trait::async_trait]
impl SendGate for WarmUp {
    async fn check(&self, ctx: &SendContext<'_>) -> GateDecision {
        if ctx.channel_kind == ChannelKind::WhatsApp && ctx.now < self.until {
            GateDecision::Defer {
                until: self.until,
                reason: "warm-up: daily cap reached".into(),
            }
        } else if ctx.channel_kind == ChannelKind::Max {
            GateDecision::Deny {
                reason: "opted out".into(),
            }
        } else {
            GateDecision::Allow
        }
    }
}

#[tokio::test]
async fn governor_defers_never_drops_and_records_why() {
    let w = World::new();
    let engine = w
        .builder()
        .policy(CascadePolicy::classic_clinic("wa", "tg", "max", "sms"))
        .gate(Arc::new(WarmUp {
            until: t0() + chrono::Duration::hours(2),
        }))
        .build()
        .unwrap();
    engine.submit(reminder("n1", patient("1"))).await.unwrap();
    assert!(w.wa.sent().is_empty());
    let st = status(&engine, "n1").await;
    assert!(st.history.iter().any(|h| matches!(
        &h.kind,
        HistoryKind::Deferred { reason: engine::DeferReason::Governor(r), .. } if r.contains("warm-up")
    )));
    w.advance(7200);
    engine.tick().await.unwrap();
    assert_eq!(w.wa.sent().len(), 1, "sent once the governor allows");
}

/// Puts cascade `n1` back into "sending" attempt 2 on step 0, as a crash after the intent was
/// stored leaves it, and returns a new engine on the same store once the lease ran out.
async fn crashed_mid_send(
    w: &World,
    policy: CascadePolicy,
) -> (Engine, Arc<dyn store::CascadeStore>) {
    let store: Arc<dyn store::CascadeStore> = Arc::new(store::MemoryStore::new());
    let engine = w
        .builder()
        .store(store.clone())
        .policy(policy.clone())
        .build()
        .unwrap();
    engine.submit(reminder("n1", patient("1"))).await.unwrap();
    let mut rec = store.get(&"n1".into()).await.unwrap().unwrap();
    rec.phase = Phase::Sending { attempt: 1 };
    rec.attempts.push(engine::Attempt {
        state: AttemptState::InFlight,
        provider_message_id: None,
        sent_at: None,
        number: 2,
        ..rec.attempts[0].clone()
    });
    rec.wake_at = Some(w.clock.now() + chrono::Duration::minutes(2));
    store.update(&rec).await.unwrap();
    let engine2 = w
        .builder()
        .store(store.clone())
        .policy(policy)
        .build()
        .unwrap();
    w.advance(121);
    engine2.tick().await.unwrap();
    (engine2, store)
}

#[tokio::test]
async fn crash_between_intent_and_receipt_resends_marked_as_possible_duplicate() {
    let w = World::new();
    let mut policy = CascadePolicy::classic_clinic("wa", "tg", "max", "sms");
    policy.steps[0] = policy.steps[0]
        .clone()
        .on_unknown_outcome(UnknownOutcome::Resend);
    let (engine2, _) = crashed_mid_send(&w, policy).await;
    let st = status(&engine2, "n1").await;
    assert_eq!(st.attempts[1].state, AttemptState::Unknown);
    assert!(st.attempts[2].possible_duplicate);
    assert!(st.history.iter().any(|h| matches!(
        &h.kind,
        HistoryKind::OutcomeUnknown { attempt: 2, reason: Some(r), .. } if r.contains("lease")
    )));
    assert_eq!(w.wa.sent().len(), 2);
}

#[tokio::test]
async fn crash_between_intent_and_receipt_waits_for_evidence_on_a_channel_that_reports_delivery() {
    let w = World::new();
    let (engine2, _) =
        crashed_mid_send(&w, CascadePolicy::classic_clinic("wa", "tg", "max", "sms")).await;
    let st = status(&engine2, "n1").await;
    assert_eq!(st.attempts[1].state, AttemptState::Unknown);
    assert_eq!(
        st.attempts.len(),
        2,
        "no resend on WhatsApp: {:?}",
        st.history
    );
    assert_eq!(w.wa.sent().len(), 1);
    // Its window runs from when the lost attempt started; then the cascade moves on.
    w.advance(3600);
    engine2.tick().await.unwrap();
    let st = status(&engine2, "n1").await;
    assert_eq!(w.wa.sent().len(), 1, "still no second WhatsApp send");
    assert_ne!(
        st.attempts.last().unwrap().channel.as_str(),
        "wa",
        "moved on"
    );
    assert!(!st.attempts.last().unwrap().possible_duplicate);
}

#[tokio::test]
async fn degraded_channel_gets_a_shorter_window() {
    let w = World::new();
    let engine = w
        .builder()
        .policy(
            CascadePolicy::classic_clinic("wa", "tg", "max", "sms")
                .on_degraded(HealthAction::ShortenWindow(Duration::from_secs(300))),
        )
        .build()
        .unwrap();
    engine
        .handle_event(&Event::Signal(ChannelSignal::new(
            ChannelKind::WhatsApp,
            w.clock.now(),
            Signal::Quality {
                rating: "RED".into(),
                phone_number: None,
            },
        )))
        .await
        .unwrap();
    assert_eq!(
        engine.health(&"wa".into()).unwrap().state,
        HealthState::Degraded
    );
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 1, "degraded channels are still used");
    w.advance(301);
    engine.tick().await.unwrap();
    assert_eq!(w.tg.sent().len(), 1, "after 5 minutes, not 60");
}

#[tokio::test]
async fn restriction_signal_takes_the_channel_down_until_it_ends() {
    let w = World::new();
    let engine = w.clinic();
    engine
        .handle_event(&Event::Signal(ChannelSignal::new(
            ChannelKind::WhatsApp,
            w.clock.now(),
            Signal::Restriction {
                until: Some(t0() + chrono::Duration::hours(1)),
                reason: None,
            },
        )))
        .await
        .unwrap();
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    assert!(w.wa.sent().is_empty());
    w.advance(3600);
    engine
        .submit(reminder("n2", patient_everywhere("2")))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 1, "a probe once the restriction ends");
}

#[tokio::test]
async fn outage_detected_from_overdue_sends_then_probe_and_gradual_return() {
    let w = World::new();
    let cfg = HealthConfig {
        min_samples: 10,
        evaluate_every: Duration::ZERO,
        ..HealthConfig::default()
    };
    let engine = w
        .builder()
        .policy(CascadePolicy::classic_clinic("wa", "tg", "max", "sms"))
        .health(cfg)
        .build()
        .unwrap();
    // WhatsApp accepts but never delivers: 20 reminders wait.
    for i in 0..20 {
        engine
            .submit(reminder(
                &format!("a{i}"),
                patient_everywhere(&i.to_string()),
            ))
            .await
            .unwrap();
    }
    assert_eq!(w.wa.sent().len(), 20);
    // After overdue_after (5 min) the channel is judged down and waiting cascades move on,
    // long before their 60-minute windows close.
    w.advance(301);
    engine.tick().await.unwrap();
    assert_eq!(
        engine.health(&"wa".into()).unwrap().state,
        HealthState::Down
    );
    assert_eq!(w.tg.sent().len(), 20);
    let st = status(&engine, "a0").await;
    assert!(st.history.iter().any(|h| matches!(
        h.kind,
        HistoryKind::WindowClosed {
            step: 0,
            early: true,
            ..
        }
    )));
    // New notices skip WhatsApp while it is down.
    engine
        .submit(reminder("b0", patient_everywhere("b")))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 20);
    // After the probe interval one probe goes out; it is delivered; traffic returns gradually.
    w.advance(301);
    engine
        .submit(reminder("probe", patient_everywhere("p")))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 21);
    engine
        .submit(reminder("during-probe", patient_everywhere("d")))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 21, "one probe at a time");
    w.advance(10);
    engine
        .handle_event(&delivered(ChannelKind::WhatsApp, "wa-21", w.clock.now()))
        .await
        .unwrap();
    let mut on_wa = 0;
    for i in 0..100 {
        let before = w.wa.sent().len();
        engine
            .submit(reminder(&format!("r{i}"), patient_everywhere("r")))
            .await
            .unwrap();
        on_wa += w.wa.sent().len() - before;
    }
    assert!(
        (2..40).contains(&on_wa),
        "a small share at the start of the ramp, not a burst: {on_wa}"
    );
    let h = engine.health(&"wa".into()).unwrap();
    assert!(h.traffic_share < 0.5);
}

#[tokio::test]
async fn classic_clinic_cascade_reaches_sms_last() {
    let w = World::new();
    let engine = w.clinic();
    w.wa.push_error(ChannelError::unreachable("not on WhatsApp"));
    w.tg.push_error(ChannelError::unreachable("blocked"));
    w.max.push_error(ChannelError::unreachable("chat.denied"));
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    assert_eq!(w.sms.sent().len(), 1);
    // SMS waits for a delivery report; none comes in 24 h: unconfirmed, not lost.
    w.advance(24 * 3600 + 1);
    engine.tick().await.unwrap();
    let st = status(&engine, "n1").await;
    assert!(matches!(
        st.outcome,
        Some(Outcome::Unconfirmed { step: 3, .. })
    ));
    let p = CascadePolicy::classic_clinic("wa", "tg", "max", "sms");
    assert_eq!(p.steps[0].wait_for, Evidence::Delivered);
    assert_eq!(p.steps[0].window, Duration::from_secs(3600));
}

#[tokio::test]
async fn failure_report_moves_on() {
    let w = World::new();
    let engine = w.clinic();
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    engine
        .handle_event(&messaging_cascade::testkit::failed_report(
            ChannelKind::WhatsApp,
            "wa-1",
            w.clock.now(),
            "131049",
        ))
        .await
        .unwrap();
    assert_eq!(w.tg.sent().len(), 1);
    // The same failure webhook delivered again changes nothing.
    engine
        .handle_event(&messaging_cascade::testkit::failed_report(
            ChannelKind::WhatsApp,
            "wa-1",
            w.clock.now(),
            "131049",
        ))
        .await
        .unwrap();
    assert_eq!(w.tg.sent().len(), 1);
    assert_eq!(w.max.sent().len(), 0);
}

#[tokio::test]
async fn cancel_stops_a_cascade() {
    let w = World::new();
    let engine = w.clinic();
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    assert!(engine.cancel(&"n1".into()).await.unwrap());
    assert!(!engine.cancel(&"n1".into()).await.unwrap());
    w.advance(4000);
    engine.tick().await.unwrap();
    assert!(w.tg.sent().is_empty());
    assert_eq!(
        status(&engine, "n1").await.outcome,
        Some(Outcome::Cancelled)
    );
}

#[tokio::test]
async fn purge_deletes_only_cascades_past_retention_and_late_reports_for_them_are_ignored() {
    let w = World::new();
    let engine = w.clinic();
    engine
        .submit(reminder("done", patient_everywhere("1")))
        .await
        .unwrap();
    engine
        .handle_event(&delivered(ChannelKind::WhatsApp, "wa-1", w.clock.now()))
        .await
        .unwrap();
    engine
        .submit(reminder("running", patient("2")))
        .await
        .unwrap();
    let day = Duration::from_secs(86_400);

    assert_eq!(
        engine.purge_finished(day).await.unwrap(),
        0,
        "ended too recently"
    );
    w.advance(86_401);
    // "running" timed out on WhatsApp and waits on SMS: older, but not ended, so it stays.
    engine.tick().await.unwrap();
    assert_eq!(engine.purge_finished(day).await.unwrap(), 1);
    assert!(engine.status(&"done".into()).await.unwrap().is_none());
    assert!(status(&engine, "running").await.outcome.is_none());

    // A duplicate report for the purged cascade finds nothing and changes nothing.
    engine
        .handle_event(&delivered(ChannelKind::WhatsApp, "wa-1", w.clock.now()))
        .await
        .unwrap();
    assert!(engine.status(&"done".into()).await.unwrap().is_none());
    assert_eq!(engine.store().count_active().await.unwrap(), 1);
}

/// A store that counts writes and, on each, notes whether the channel had sent yet.
#[derive(Debug)]
struct WatchedStore {
    inner: store::MemoryStore,
    channel: Arc<StubChannel>,
    /// (which write, the record's phase, sends the channel had made when it was written)
    writes: std::sync::Mutex<Vec<(&'static str, &'static str, usize)>>,
}

#[async_trait::async_trait]
impl store::CascadeStore for WatchedStore {
    async fn insert(&self, r: &engine::CascadeRecord) -> Result<store::Inserted, StoreError> {
        let sent = self.channel.sent().len();
        self.writes
            .lock()
            .unwrap()
            .push(("insert", r.phase.name(), sent));
        self.inner.insert(r).await
    }
    async fn get(&self, id: &NotificationId) -> Result<Option<engine::CascadeRecord>, StoreError> {
        self.inner.get(id).await
    }
    async fn update(&self, r: &engine::CascadeRecord) -> Result<u64, StoreError> {
        let sent = self.channel.sent().len();
        self.writes
            .lock()
            .unwrap()
            .push(("update", r.phase.name(), sent));
        self.inner.update(r).await
    }
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<NotificationId>, StoreError> {
        self.inner.claim_due(now, limit, lease).await
    }
    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_wake().await
    }
    async fn find_message(
        &self,
        id: &ProviderMessageId,
    ) -> Result<Option<store::MessageRef>, StoreError> {
        self.inner.find_message(id).await
    }
    async fn active_by_reply_key(&self, key: &str) -> Result<Vec<NotificationId>, StoreError> {
        self.inner.active_by_reply_key(key).await
    }
    async fn count_active(&self) -> Result<usize, StoreError> {
        self.inner.count_active().await
    }
}

/// A new cascade's insert carries the intent to send, stored before the channel is called; a
/// cascade that ends on its first send is then written once more, and a repeat submit
/// writes and sends nothing.
#[tokio::test]
async fn the_insert_carries_the_intent_and_a_first_send_costs_two_writes() {
    let w = World::new();
    let watched = Arc::new(WatchedStore {
        inner: store::MemoryStore::new(),
        channel: w.tg.clone(),
        writes: std::sync::Mutex::new(Vec::new()),
    });
    let engine = w
        .builder()
        .store(watched.clone())
        .policy(CascadePolicy::new("tg-only", vec![Step::new("tg")]))
        .build()
        .unwrap();
    let patient = Recipient::new("c-1").address(Address::Telegram(42));
    let s = engine
        .submit(reminder("n1", patient.clone()))
        .await
        .unwrap();
    assert!(matches!(s.outcome, Some(Outcome::Delivered { .. })));
    assert_eq!(
        *watched.writes.lock().unwrap(),
        vec![("insert", "sending", 0), ("update", "finished", 1)],
        "the intent is stored before the send, then the end"
    );
    let again = engine.submit(reminder("n1", patient)).await.unwrap();
    assert!(!again.new);
    assert_eq!(w.tg.sent().len(), 1, "a repeat sends nothing");
    assert_eq!(
        watched.writes.lock().unwrap().len(),
        3,
        "a repeat only tries the insert"
    );
}

/// Channel health's quick path (every channel calm: no lock, an empty view) ends with the
/// first new fact: a cascade submitted after another one's send was rate limited, with every
/// channel calm before it, waits for the channel too; once the wait is over, both go out.
#[tokio::test]
async fn a_rate_limit_reaches_the_next_cascade_while_channels_were_calm() {
    let w = World::new();
    let engine = w.clinic();
    // A first cascade while all is calm: delivered at once.
    engine
        .submit(reminder("n0", patient_everywhere("0")))
        .await
        .unwrap();
    engine
        .handle_event(&delivered(
            ChannelKind::WhatsApp,
            &w.wa.message_id(1),
            w.clock.now(),
        ))
        .await
        .unwrap();
    w.wa.push_error(ChannelError::rate_limited(
        "too many",
        Some(Duration::from_secs(30)),
    ));
    engine
        .submit(reminder("n1", patient_everywhere("1")))
        .await
        .unwrap();
    engine
        .submit(reminder("n2", patient_everywhere("2")))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 2, "n2 does not send into the rate limit");
    let st = status(&engine, "n2").await;
    assert!(st.history.iter().any(|h| matches!(
        &h.kind,
        HistoryKind::Deferred {
            reason: engine::DeferReason::RateLimited,
            ..
        }
    )));
    w.advance(30);
    engine.tick().await.unwrap();
    assert_eq!(w.wa.sent().len(), 4, "both go out once the wait is over");
}
