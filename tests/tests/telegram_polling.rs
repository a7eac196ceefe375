//! Long polling against the fake Bot API server: offsets, restarts, failures and backoff.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging::telegram::{
    LongPoller, MemoryOffsetStore, OffsetStore, PollConfig, PollError, TelegramChannel,
};
use messaging::{ErrorKind, Event, Signal};
use messaging_tests::telegram::{Failure, FakeTelegram};
use serde_json::json;

fn channel(fake: &FakeTelegram) -> TelegramChannel {
    TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(fake.url())
        .rate_limit(0)
        .chat_rate_limit(None)
        .build()
        .expect("build")
}

fn config() -> PollConfig {
    PollConfig::default()
        .timeout(Duration::from_secs(1))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Inbound(m) => m.text.clone(),
            _ => None,
        })
        .collect()
}

type Seen = Arc<Mutex<Vec<Event>>>;

fn collector(
    seen: &Seen,
) -> impl FnMut(Vec<Event>) -> std::future::Ready<Result<(), String>> + use<> {
    let seen = seen.clone();
    move |events| {
        seen.lock().expect("lock").extend(events);
        std::future::ready(Ok(()))
    }
}

#[tokio::test]
async fn offsets_are_committed_after_hand_over_and_survive_restarts() {
    let fake = FakeTelegram::start().await;
    fake.long_poll_cap(Duration::from_millis(100));
    let store = MemoryOffsetStore::default();
    let first = fake.push_text(1, "one");
    fake.push_text(2, "two");
    let last = fake.push_text(3, "three");

    let seen: Seen = Arc::default();
    let mut poller = LongPoller::new(channel(&fake), store.clone()).with_config(config());
    let n = poller.poll_once(collector(&seen)).await.expect("poll");
    assert_eq!(n, 3);
    assert_eq!(texts(&seen.lock().expect("lock")), ["one", "two", "three"]);
    assert_eq!(store.load().await.expect("load"), Some(last + 1));
    let p = &fake.calls("getUpdates")[0].params;
    assert!(
        p.get("offset").is_none(),
        "first call without a stored offset: {p}"
    );
    assert_eq!(p["timeout"], 1);
    assert!(
        p["allowed_updates"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("my_chat_member")))
    );

    // The next call confirms the batch.
    let n = poller.poll_once(collector(&seen)).await.expect("poll");
    assert_eq!(n, 0);
    assert_eq!(fake.calls("getUpdates")[1].params["offset"], last + 1);
    assert_eq!(fake.pending_updates(), 0);
    assert!(first < last);

    // A "restart": a new poller with the same store neither repeats nor loses anything.
    drop(poller);
    fake.push_text(4, "four");
    let seen2: Seen = Arc::default();
    let mut restarted = LongPoller::new(channel(&fake), store.clone()).with_config(config());
    restarted.poll_once(collector(&seen2)).await.expect("poll");
    assert_eq!(texts(&seen2.lock().expect("lock")), ["four"]);
    assert_eq!(fake.calls("getUpdates")[2].params["offset"], last + 1);
}

#[tokio::test]
async fn a_failing_handler_gets_the_same_batch_again() {
    let fake = FakeTelegram::start().await;
    fake.long_poll_cap(Duration::from_millis(100));
    let store = MemoryOffsetStore::default();
    fake.push_text(1, "hello");
    let mut poller = LongPoller::new(channel(&fake), store.clone()).with_config(config());
    let err = poller
        .poll_once(|_events| async { Err::<(), _>("database is down") })
        .await
        .expect_err("handler failed");
    assert!(matches!(err, PollError::Handler(ref m) if m.contains("database is down")));
    assert_eq!(store.load().await.expect("load"), None);

    let seen: Seen = Arc::default();
    poller.poll_once(collector(&seen)).await.expect("poll");
    assert_eq!(texts(&seen.lock().expect("lock")), ["hello"]);
    assert!(store.load().await.expect("load").is_some());
}

#[tokio::test]
async fn unknown_update_types_are_skipped_but_confirmed() {
    let fake = FakeTelegram::start().await;
    fake.long_poll_cap(Duration::from_millis(100));
    let store = MemoryOffsetStore::default();
    let id = fake.push_update(json!({"poll": {"id": "1", "question": "?", "options": []}}));
    let blocked = fake.push_update(json!({"my_chat_member": {
        "chat": {"id": 5, "type": "private", "first_name": "A"},
        "from": {"id": 5, "is_bot": false, "first_name": "A"},
        "date": 1767225700,
        "old_chat_member": {"user": {"id": 1, "is_bot": true, "first_name": "B"}, "status": "member"},
        "new_chat_member": {"user": {"id": 1, "is_bot": true, "first_name": "B"}, "status": "kicked", "until_date": 0}
    }}));
    let seen: Seen = Arc::default();
    let mut poller = LongPoller::new(channel(&fake), store.clone()).with_config(config());
    assert_eq!(poller.poll_once(collector(&seen)).await.expect("poll"), 1);
    let events = seen.lock().expect("lock").clone();
    match events.as_slice() {
        [Event::Signal(s)] => {
            assert!(matches!(s.signal, Signal::Blocked { .. }));
            assert_eq!(s.channel_id.as_ref().map(|c| c.as_str()), Some("tg"));
        }
        other => panic!("{other:?}"),
    }
    assert!(id < blocked);
    assert_eq!(store.load().await.expect("load"), Some(blocked + 1));
}

#[tokio::test]
async fn polled_button_presses_are_dated_by_the_channels_clock() {
    use messaging::{Clock, ManualClock};
    let fake = FakeTelegram::start().await;
    fake.long_poll_cap(Duration::from_millis(100));
    fake.push_update(json!({"callback_query": {
        "id": "cb-7", "from": {"id": 9, "is_bot": false, "first_name": "A"},
        "chat_instance": "x", "data": "confirm:42"
    }}));
    let clock = ManualClock::at_unix(1_700_000_000);
    let tg = TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(fake.url())
        .rate_limit(0)
        .chat_rate_limit(None)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("build");
    let seen: Seen = Arc::default();
    let mut poller = LongPoller::new(tg, MemoryOffsetStore::default()).with_config(config());
    assert_eq!(poller.poll_once(collector(&seen)).await.expect("poll"), 1);
    let events = seen.lock().expect("lock").clone();
    match events.as_slice() {
        [Event::Inbound(m)] => {
            assert_eq!(m.button_payload.as_deref(), Some("confirm:42"));
            assert_eq!(m.at, clock.now());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn run_recovers_from_failures_with_backoff() {
    let fake = FakeTelegram::start().await;
    fake.long_poll_cap(Duration::from_millis(50));
    fake.fail_next("getUpdates", Failure::ServerError(502));
    fake.fail_next(
        "getUpdates",
        Failure::Raw {
            status: 500,
            body: "oops".into(),
            retry_after_header: None,
        },
    );
    fake.fail_next("getUpdates", Failure::Raw { status: 409, body: r#"{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"}"#.into(), retry_after_header: None });
    fake.push_text(1, "after the outage");

    let store = MemoryOffsetStore::default();
    let seen: Seen = Arc::default();
    let poller = LongPoller::new(channel(&fake), store.clone()).with_config(config());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(poller.run(collector(&seen), async move {
        let _ = stop_rx.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen.lock().expect("lock").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no events after failures"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(());
    task.await.expect("join").expect("clean stop");
    assert_eq!(texts(&seen.lock().expect("lock")), ["after the outage"]);
    assert!(fake.calls("getUpdates").len() >= 4);
    assert!(store.load().await.expect("load").is_some());
}

#[tokio::test]
async fn run_honours_retry_after() {
    let fake = FakeTelegram::start().await;
    fake.long_poll_cap(Duration::from_millis(50));
    fake.fail_next("getUpdates", Failure::TooManyRequests(1));
    fake.push_text(1, "later");
    let seen: Seen = Arc::default();
    let poller =
        LongPoller::new(channel(&fake), MemoryOffsetStore::default()).with_config(config());
    let started = tokio::time::Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(poller.run(collector(&seen), async move {
        let _ = stop_rx.await;
    }));
    while seen.lock().expect("lock").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The backoff is 20 ms; Telegram asked for a second.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let _ = stop_tx.send(());
    task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn run_stops_on_a_bad_token() {
    let fake = FakeTelegram::start().await;
    let tg = TelegramChannel::builder("tg", "999:WRONG")
        .base_url(fake.url())
        .build()
        .expect("build");
    let poller = LongPoller::new(tg, MemoryOffsetStore::default()).with_config(config());
    let seen: Seen = Arc::default();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        poller.run(collector(&seen), std::future::pending::<()>()),
    )
    .await
    .expect("returns");
    match r {
        Err(PollError::Api(e)) => {
            assert_eq!(e.kind(), ErrorKind::ChannelDown);
            assert!(!e.to_string().contains("WRONG"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn test_environment_has_its_own_queue() {
    let fake = FakeTelegram::start().await;
    fake.long_poll_cap(Duration::from_millis(50));
    fake.push_text(1, "production");
    fake.push_update_in(true, json!({"message": {"message_id": 1, "date": 1, "chat": {"id": 2, "type": "private"}, "text": "test dc"}}));
    let tg = TelegramChannel::builder("tg-test", FakeTelegram::TOKEN)
        .base_url(fake.url())
        .test_environment(true)
        .build()
        .expect("build");
    let seen: Seen = Arc::default();
    let mut poller = LongPoller::new(tg, MemoryOffsetStore::default()).with_config(config());
    poller.poll_once(collector(&seen)).await.expect("poll");
    assert_eq!(texts(&seen.lock().expect("lock")), ["test dc"]);
    assert!(fake.calls("getUpdates").iter().all(|r| r.test_env));
}

#[tokio::test]
async fn long_poll_waits_for_a_late_update() {
    let fake = Arc::new(FakeTelegram::start().await);
    let seen: Seen = Arc::default();
    let mut poller = LongPoller::new(channel(&fake), MemoryOffsetStore::default())
        .with_config(PollConfig::default().timeout(Duration::from_secs(5)));
    let f = fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        f.push_text(1, "late");
    });
    let started = tokio::time::Instant::now();
    let n = poller.poll_once(collector(&seen)).await.expect("poll");
    assert_eq!(n, 1);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn webhook_admin_calls_and_the_polling_conflict() {
    let fake = FakeTelegram::start().await;
    let tg = channel(&fake);
    tg.set_webhook("https://clinic.example/tg", Some("s3cret"))
        .await
        .expect("setWebhook");
    assert_eq!(fake.webhook().as_deref(), Some("https://clinic.example/tg"));
    assert_eq!(fake.calls("setWebhook")[0].params["secret_token"], "s3cret");

    // Telegram refuses getUpdates while a webhook is set: 409, retried by `run`, not fatal.
    let mut poller =
        LongPoller::new(tg.clone(), MemoryOffsetStore::default()).with_config(config());
    let e = poller
        .poll_once(|_| async { Ok::<_, String>(()) })
        .await
        .expect_err("conflict");
    match e {
        PollError::Api(e) => {
            assert_eq!(e.kind(), ErrorKind::Unexpected);
            assert_eq!(e.provider_code(), Some("409"));
        }
        other => panic!("{other:?}"),
    }

    tg.delete_webhook().await.expect("deleteWebhook");
    assert_eq!(fake.webhook(), None);
    fake.long_poll_cap(Duration::from_millis(50));
    assert_eq!(
        poller
            .poll_once(|_| async { Ok::<_, String>(()) })
            .await
            .expect("polls"),
        0
    );
    tg.answer_callback_query("cb-1", Some("Спасибо!"))
        .await
        .expect("answerCallbackQuery");
    assert_eq!(
        fake.calls("answerCallbackQuery")[0].params["callback_query_id"],
        "cb-1"
    );
}
