//! No channel can panic the engine or leave a cascade stuck: a panic inside a send is caught,
//! logged and confined to its own cascade; the others go on, and the panicking one stays in
//! flight only until its lease runs out, when the next tick sends it again.
//!
//! Before: the panic unwound out of `Engine::submit` (and out of `tick`, taking every other
//! cascade of the batch and the `run` loop with it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use messaging_cascade::engine::Phase;
use messaging_cascade::*;
use messaging_core::testkit::StubChannel;
use messaging_core::*;

/// A Telegram channel that panics on the first `panics[chat]` sends to a chat and fails the
/// first `fails[chat]` temporarily; everything else goes to the stub.
#[derive(Debug)]
struct Flaky {
    stub: StubChannel,
    panics: Mutex<HashMap<i64, u32>>,
    fails: Mutex<HashMap<i64, u32>>,
}

fn chat(m: &OutboundMessage) -> i64 {
    match m.to {
        Address::Telegram(c) => c,
        _ => 0,
    }
}

fn take(map: &Mutex<HashMap<i64, u32>>, chat: i64) -> bool {
    let mut m = map.lock().unwrap();
    match m.get_mut(&chat) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

#[async_trait]
impl Channel for Flaky {
    fn id(&self) -> &ChannelId {
        self.stub.id()
    }
    fn kind(&self) -> ChannelKind {
        self.stub.kind()
    }
    fn capabilities(&self) -> Capabilities {
        self.stub.capabilities()
    }
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let c = chat(message);
        if take(&self.panics, c) {
            panic!("a bug in the channel for chat {c}");
        }
        if take(&self.fails, c) {
            return Err(ChannelError::temporary("503"));
        }
        self.stub.send(message).await
    }
}

fn notice(id: &str, chat: i64) -> Notification {
    Notification::new(
        id,
        Recipient::new(format!("c-{id}")).address(Address::Telegram(chat)),
        Content::text("Приём завтра в 10:00"),
    )
}

fn sent_to(stub: &StubChannel, chat: i64) -> usize {
    stub.sent()
        .iter()
        .filter(|m| m.to == Address::Telegram(chat))
        .count()
}

#[tokio::test]
async fn a_panicking_send_is_confined_to_its_cascade_and_retried_after_the_lease() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap());
    let flaky = Arc::new(Flaky {
        stub: StubChannel::new("tg", ChannelKind::Telegram).with_clock(clock.clone()),
        panics: Mutex::new(HashMap::from([(13, 2)])),
        fails: Mutex::new(HashMap::from([(16, 1)])),
    });
    let engine = Engine::builder()
        .clock(clock.clone())
        .channel(flaky.clone())
        .policy(CascadePolicy::new("p", vec![Step::new("tg")]))
        .in_flight_lease(Duration::from_secs(120))
        .build()
        .unwrap();

    // The first send of `a` panics inside submit: submit returns, `a` is left in flight.
    let a = engine
        .submit(notice("a", 13))
        .await
        .expect("submit survives the panic");
    assert!(a.new && a.outcome.is_none());
    let st = engine.status(&"a".into()).await.unwrap().unwrap();
    assert!(matches!(st.phase, Phase::Sending { .. }), "{:?}", st.phase);
    // The others are not affected.
    engine.submit(notice("b", 14)).await.unwrap();
    assert_eq!(sent_to(&flaky.stub, 14), 1);
    engine.submit(notice("e", 16)).await.unwrap(); // fails once, retried on a timer
    assert_eq!(sent_to(&flaky.stub, 16), 0);

    // The lease runs out: one tick takes `a` (which panics again) and `e` (which goes out).
    clock.advance(Duration::from_secs(121));
    engine.tick().await.expect("the tick survives the panic");
    assert_eq!(
        sent_to(&flaky.stub, 16),
        1,
        "e was sent in the tick where a panicked"
    );
    let st = engine.status(&"a".into()).await.unwrap().unwrap();
    assert!(matches!(st.phase, Phase::Sending { .. }), "{:?}", st.phase);

    // Next lease: `a` finally goes out; nothing stays in flight.
    clock.advance(Duration::from_secs(121));
    engine.tick().await.unwrap();
    assert_eq!(
        sent_to(&flaky.stub, 13),
        1,
        "a was sent after its lease ran out"
    );
    for id in ["a", "b", "e"] {
        let st = engine.status(&id.into()).await.unwrap().unwrap();
        assert!(
            !matches!(st.phase, Phase::Sending { .. } | Phase::Ready),
            "{id} is stuck: {:?}",
            st.phase
        );
    }
}

#[tokio::test]
async fn the_run_loop_keeps_going_after_a_panic() {
    let flaky = Arc::new(Flaky {
        stub: StubChannel::new("tg", ChannelKind::Telegram),
        panics: Mutex::new(HashMap::from([(13, 1)])),
        fails: Mutex::new(HashMap::new()),
    });
    let engine = Engine::builder()
        .channel(flaky.clone())
        .policy(CascadePolicy::new("p", vec![Step::new("tg")]))
        .in_flight_lease(Duration::from_secs(1))
        .build()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = engine.clone();
    let run = tokio::spawn(async move {
        runner
            .run(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    engine.submit(notice("a", 13)).await.unwrap();
    // The system clock: wait (at most 5 s) for the lease to run out and the loop to tick.
    for _ in 0..50 {
        if sent_to(&flaky.stub, 13) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sent_to(&flaky.stub, 13),
        1,
        "the loop retried a after its lease"
    );
    let _ = stop_tx.send(());
    run.await.expect("the run loop ended normally");
}
