//! Ambiguous send outcomes and old replies, through real adapters over real sockets.
//!
//! A fault-injecting proxy ([`FaultyProxy`]) sits between each adapter and its fake provider:
//! the provider accepts the message, then the answer is lost, cut short or spoiled. Before
//! these outcomes were first-class, such sends were retried as `temporary` and sent again
//! unmarked (with a third of requests faulted, a third of the patients got the reminder twice
//! on one channel and the records said the sends had failed).
//!
//! The guarantees checked here:
//! - on a channel that reports delivery (WhatsApp), an unknown outcome is never resent on that
//!   channel, and the delivery report (which carries the notification id) still ends the
//!   cascade as delivered;
//! - on a channel whose only evidence is acceptance (Telegram), the resend is marked
//!   `possible_duplicate` with the reason: nobody gets a message twice unmarked;
//! - a reply dated before a cascade's first send (an old message replayed) does not end it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use messaging::engine::{AttemptState, HistoryKind, Phase};
use messaging::telegram::{SECRET_HEADER, TelegramChannel, TelegramWebhook};
use messaging::testkit::StubChannel;
use messaging::waba::WabaChannel;
use messaging::webhook::{WebhookHandler, WebhookRequest, hmac_sha256_hex};
use messaging::{
    Address, CascadePolicy, Clock, Content, Engine, Evidence, ManualClock, Notification, Outcome,
    Recipient, Step, Template, TemplateComponent,
};
use messaging_tests::faults::{Fault, FaultyProxy};
use messaging_tests::telegram::FakeTelegram;
use messaging_tests::waba::{FakeGraph, TOKEN};

const PATIENTS: usize = 60;
const APP_SECRET: &str = "app-secret-for-tests";

fn clock() -> ManualClock {
    ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap())
}

fn addr_of(base_url: &str) -> SocketAddr {
    base_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("loopback address")
}

/// A third of the sends faulted after the provider acted on them, in three ways.
fn script_faults(proxy: &FaultyProxy) {
    for i in 0..PATIENTS {
        proxy.next(match i % 9 {
            0 => Fault::DropAnswer,
            3 => Fault::CutAnswer,
            6 => Fault::GarbageAnswer,
            _ => Fault::None,
        });
    }
}

fn phone(i: usize) -> String {
    format!("+7999{:07}", 1_000_000 + i)
}

async fn run_until_quiet(engine: &Engine, clock: &ManualClock, step_secs: u64, rounds: usize) {
    for _ in 0..rounds {
        engine.tick().await.expect("tick");
        clock.advance(Duration::from_secs(step_secs));
    }
    engine.tick().await.expect("tick");
}

#[tokio::test]
async fn whatsapp_never_resends_an_unknown_outcome_and_its_report_still_counts() {
    let fake = FakeGraph::start().await;
    let proxy = FaultyProxy::start(addr_of(&fake.base_url())).await;
    let clock = clock();
    let wa = WabaChannel::cloud_api("wa", "106540352242922", TOKEN)
        .base_url(proxy.base_url())
        .clock(Arc::new(clock.clone()))
        .pair_interval(Duration::ZERO)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("channel");
    let webhook = wa.webhook().app_secret(APP_SECRET);
    let sms = Arc::new(StubChannel::new("sms", messaging::ChannelKind::Sms));
    let engine = Engine::builder()
        .clock(clock.clone())
        .channel(Arc::new(wa))
        .channel(sms.clone())
        .policy(CascadePolicy::new(
            "reminders",
            vec![
                Step::new("wa"),
                Step::new("sms").wait_for(Evidence::Accepted),
            ],
        ))
        .default_policy("reminders")
        // A third of sends timing out would make WhatsApp look degraded and shorten the
        // windows; this test is about the sends themselves.
        .without_health()
        .build()
        .expect("engine");
    script_faults(&proxy);

    let template = Template::new("appointment_reminder", "ru")
        .component(TemplateComponent::body_text(["Анна", "завтра в 10:00"]));
    for i in 0..PATIENTS {
        let patient = Recipient::with_phone(format!("p{i}"), &phone(i)).expect("phone");
        let content = Content::text("Приём завтра в 10:00").with_template(template.clone());
        engine
            .submit(Notification::new(format!("n{i}"), patient, content))
            .await
            .expect("submit");
    }
    run_until_quiet(&engine, &clock, 60, 10).await;

    // Every patient's message reached WhatsApp exactly once.
    let sends: Vec<_> = fake.accepted();
    let mut per_phone: HashMap<String, usize> = HashMap::new();
    for (_, body) in &sends {
        *per_phone
            .entry(body["to"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    let faulted = proxy.log().iter().filter(|f| **f != Fault::None).count();
    assert_eq!(faulted, PATIENTS / 3, "{:?}", proxy.log());
    assert_eq!(per_phone.len(), PATIENTS, "every patient was sent to");
    let twice: Vec<_> = per_phone.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice on WhatsApp: {twice:?}");
    assert!(sms.sent().is_empty(), "nothing moved on to SMS yet");

    // The records say "outcome unknown" for the faulted sends, never "failed".
    let mut unknown = 0;
    for i in 0..PATIENTS {
        let st = engine
            .status(&format!("n{i}").into())
            .await
            .expect("status")
            .expect("exists");
        assert!(
            !st.history
                .iter()
                .any(|h| matches!(h.kind, HistoryKind::Failed { .. })),
            "n{i}: {:?}",
            st.history
        );
        if st.attempts[0].state == AttemptState::Unknown {
            unknown += 1;
            assert!(st.history.iter().any(|h| matches!(
                &h.kind,
                HistoryKind::OutcomeUnknown { reason: Some(r), .. } if r.contains("may have accepted")
            )));
            assert!(
                matches!(st.phase, Phase::Waiting { .. }),
                "n{i}: {:?}",
                st.phase
            );
        }
    }
    assert_eq!(unknown, PATIENTS / 3);

    // Meta reports each message delivered, with the notification id it was tagged with: the
    // reports for sends whose answers were lost find their cascades too.
    let ts = clock.now().timestamp();
    let statuses: Vec<serde_json::Value> = sends
        .iter()
        .map(|(wamid, body)| {
            serde_json::json!({
                "id": wamid,
                "status": "delivered",
                "timestamp": ts.to_string(),
                "recipient_id": body["to"].as_str().unwrap_or_default().trim_start_matches('+'),
                "biz_opaque_callback_data": body["biz_opaque_callback_data"],
            })
        })
        .collect();
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": statuses,
        }}]}],
    })
    .to_string();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-hub-signature-256",
        format!(
            "sha256={}",
            hmac_sha256_hex(APP_SECRET.as_bytes(), body.as_bytes())
        )
        .parse()
        .unwrap(),
    );
    let events = webhook
        .verify_and_parse(&WebhookRequest {
            method: &http::Method::POST,
            url: None,
            headers: &headers,
            body: body.as_bytes(),
        })
        .expect("signed status webhook");
    assert_eq!(events.len(), PATIENTS);
    for e in &events {
        engine.handle_event(e).await.expect("report");
    }
    for i in 0..PATIENTS {
        let st = engine
            .status(&format!("n{i}").into())
            .await
            .expect("status")
            .expect("exists");
        assert!(
            matches!(
                &st.phase,
                Phase::Finished(Outcome::Delivered { channel, evidence: Evidence::Delivered, .. })
                    if channel.as_str() == "wa"
            ),
            "n{i}: {:?}",
            st.history
        );
    }
    assert!(sms.sent().is_empty(), "no SMS was needed");
}

#[tokio::test]
async fn telegram_resends_an_unknown_outcome_marked_as_a_possible_duplicate() {
    let fake = FakeTelegram::start().await;
    let proxy = FaultyProxy::start(addr_of(&fake.url())).await;
    let clock = clock();
    let tg = TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(proxy.base_url())
        .rate_limit(0)
        .chat_rate_limit(None)
        .timeout(Duration::from_secs(5))
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("channel");
    let engine = Engine::builder()
        .clock(clock.clone())
        .channel(Arc::new(tg))
        .policy(CascadePolicy::new(
            "reminders",
            vec![Step::new("tg").wait_for(Evidence::Accepted)],
        ))
        .default_policy("reminders")
        .build()
        .expect("engine");
    script_faults(&proxy);
    for i in 0..PATIENTS {
        let patient = Recipient::new(format!("p{i}")).address(Address::Telegram(1000 + i as i64));
        engine
            .submit(Notification::new(
                format!("n{i}"),
                patient,
                Content::text("Приём завтра в 10:00"),
            ))
            .await
            .expect("submit");
    }
    run_until_quiet(&engine, &clock, 30, 10).await;

    let mut per_chat: HashMap<i64, usize> = HashMap::new();
    for m in fake.sent() {
        *per_chat.entry(m.chat_id).or_default() += 1;
    }
    assert_eq!(per_chat.len(), PATIENTS);
    let mut twice = 0;
    for i in 0..PATIENTS {
        let st = engine
            .status(&format!("n{i}").into())
            .await
            .expect("status")
            .expect("exists");
        assert!(
            matches!(st.phase, Phase::Finished(Outcome::Delivered { .. })),
            "n{i}: {:?}",
            st.history
        );
        let received = per_chat[&(1000 + i as i64)];
        let marked = st.attempts.iter().filter(|a| a.possible_duplicate).count();
        // Every message beyond the first is a marked attempt: nobody got it twice unmarked.
        assert_eq!(
            received - 1,
            marked,
            "n{i}: received {received} times: {:?}",
            st.history
        );
        if received > 1 {
            twice += 1;
            assert!(st.history.iter().any(|h| matches!(
                &h.kind,
                HistoryKind::OutcomeUnknown { reason: Some(r), .. } if !r.is_empty()
            )));
        }
    }
    // The provider acted on every faulted request, so each of those patients got it twice.
    assert_eq!(twice, PATIENTS / 3);
}

#[tokio::test]
async fn an_old_telegram_message_does_not_end_a_new_cascade() {
    let fake = FakeTelegram::start().await;
    let clock = clock();
    let tg = TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(fake.url())
        .rate_limit(0)
        .chat_rate_limit(None)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("channel");
    let engine = Engine::builder()
        .clock(clock.clone())
        .channel(Arc::new(tg))
        .policy(CascadePolicy::new(
            "reminders",
            vec![Step::new("tg").wait_for(Evidence::Replied)],
        ))
        .default_policy("reminders")
        .build()
        .expect("engine");
    let patient = Recipient::new("p1").address(Address::Telegram(5001));
    engine
        .submit(Notification::new("n1", patient, Content::text("Придёте?")))
        .await
        .expect("submit");
    assert_eq!(fake.sent().len(), 1);

    let webhook = TelegramWebhook::new(Some("hook-secret".into()));
    let update = |update_id: i64, date: i64| {
        serde_json::json!({
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": date,
                "chat": {"id": 5001, "type": "private", "first_name": "Анна"},
                "from": {"id": 5001, "is_bot": false, "first_name": "Анна"},
                "text": "Да"
            }
        })
        .to_string()
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(SECRET_HEADER, "hook-secret".parse().unwrap());
    let deliver = |body: String| {
        let events = webhook
            .verify_and_parse(&WebhookRequest {
                method: &http::Method::POST,
                url: None,
                headers: &headers,
                body: body.as_bytes(),
            })
            .expect("authenticated update");
        let engine = engine.clone();
        async move {
            for e in &events {
                engine.handle_event(e).await.expect("handled");
            }
        }
    };
    let running = |engine: Engine| async move {
        let st = engine.status(&"n1".into()).await.unwrap().unwrap();
        !matches!(st.phase, Phase::Finished(_))
    };

    // Authenticated, but written in 2020: a replay, not an answer.
    let in_2020 = Utc
        .with_ymd_and_hms(2020, 1, 1, 12, 0, 0)
        .unwrap()
        .timestamp();
    deliver(update(1, in_2020)).await;
    assert!(
        running(engine.clone()).await,
        "a 2020 message ended a 2026 cascade"
    );
    // Written ten minutes before the reminder went out: not an answer to it either.
    deliver(update(2, clock.now().timestamp() - 600)).await;
    assert!(running(engine.clone()).await);

    // Written after the reminder: the answer.
    clock.advance(Duration::from_secs(300));
    deliver(update(3, clock.now().timestamp())).await;
    let st = engine.status(&"n1".into()).await.unwrap().unwrap();
    assert!(
        matches!(st.phase, Phase::Finished(Outcome::Replied { .. })),
        "{:?}",
        st.history
    );
}
