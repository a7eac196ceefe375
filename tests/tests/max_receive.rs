//! Wire tests: `messaging-max` receiving (long polling with markers, webhook subscriptions)
//! against the fake Max Bot API.

use std::sync::Arc;
use std::time::Duration;

use messaging::max::SecretString;
use messaging::max::{InMemoryMarkerStore, MarkerStore, MaxBot, MaxError, Poller};
use messaging::webhook::{WebhookHandler, WebhookRequest, hmac_sha256_hex};
use messaging::{Address, Event};
use messaging_tests::max::{Failure, FakeMax, MARKER_BASE};
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn bot(fake: &FakeMax) -> MaxBot {
    MaxBot::builder(FakeMax::TOKEN)
        .base_url(fake.url())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn text_update(user: i64, text: &str) -> Value {
    json!({"update_type": "message_created", "timestamp": 1770679787821i64, "user_locale": "ru",
        "message": {"sender": {"user_id": user, "first_name": "Ivan", "is_bot": false},
            "recipient": {"chat_id": 182182182, "chat_type": "dialog", "user_id": 10002},
            "timestamp": 1770679787821i64,
            "body": {"mid": format!("mid.{text}"), "seq": 116043270574650336u64, "text": text}}})
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

#[tokio::test]
async fn poll_once_commit_and_restart_lose_and_repeat_nothing() {
    let fake = FakeMax::start().await;
    for t in ["a", "b", "c"] {
        fake.push_update(text_update(1, t));
    }
    fake.push_update(
        json!({"update_type": "user_added", "timestamp": 1, "chat_id": -1,
        "user": {"user_id": 3}}),
    );
    let store = InMemoryMarkerStore::new();
    let poller = Poller::new(bot(&fake), Arc::new(store.clone()))
        .limit(2)
        .timeout(Duration::ZERO);

    // A batch fetched but not committed (a crash before hand-over) comes again.
    let b1 = poller.poll_once().await.unwrap();
    assert_eq!(texts(&b1.events), ["a", "b"]);
    assert_eq!(b1.marker, Some(MARKER_BASE + 2));
    assert_eq!(store.load().await.unwrap(), None);
    let again = poller.poll_once().await.unwrap();
    assert_eq!(texts(&again.events), ["a", "b"]);

    // Committed: a "restarted" poller with the same store continues after it.
    poller.commit(&again).await.unwrap();
    assert_eq!(store.load().await.unwrap(), Some(MARKER_BASE + 2));
    let restarted = Poller::new(bot(&fake), Arc::new(store.clone()))
        .limit(10)
        .timeout(Duration::ZERO);
    let b2 = restarted.poll_once().await.unwrap();
    assert_eq!(texts(&b2.events), ["c"], "user_added is skipped");
    assert_eq!(b2.received, 2);
    restarted.commit(&b2).await.unwrap();
    let b3 = restarted.poll_once().await.unwrap();
    assert!(b3.events.is_empty());

    // The marker was sent as a query parameter, with timeout and limit, and the handled types.
    let polls = fake.requests_to("GET /updates");
    let last = polls.last().unwrap();
    assert_eq!(
        last.query.get("marker").map(String::as_str),
        Some((MARKER_BASE + 4).to_string().as_str())
    );
    assert_eq!(last.query.get("timeout").map(String::as_str), Some("0"));
    assert_eq!(last.query.get("limit").map(String::as_str), Some("10"));
    assert!(last.query["types"].contains("message_created"));
    assert!(!polls[0].query.contains_key("marker"));
}

#[tokio::test]
async fn run_hands_over_recovers_from_errors_and_commits() {
    let fake = FakeMax::start().await;
    fake.fail_next("GET /updates", Failure::ServerError(502));
    fake.fail_next("GET /updates", Failure::TooManyRequests(None));
    fake.fail_next("GET /updates", Failure::Raw(200, "{\"updates\": 5}".into()));
    fake.push_update(text_update(7, "первое"));
    fake.push_update(
        json!({"update_type": "bot_stopped", "timestamp": 1775025604499i64,
        "chat_id": 1, "user": {"user_id": 7}}),
    );
    // A malformed update is dropped, not fatal.
    fake.push_update(json!({"update_type": "bot_started"}));
    let store = InMemoryMarkerStore::new();
    let poller = Poller::new(bot(&fake), Arc::new(store.clone()))
        .timeout(Duration::from_secs(1))
        .backoff(Duration::from_millis(10), Duration::from_millis(40));
    let (tx, mut rx) = mpsc::channel(10);
    let task = tokio::spawn(async move { poller.run(tx).await });

    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let Event::Inbound(m) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(m.text.as_deref(), Some("первое"));
    let second = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(serde_json::to_value(&second).unwrap()["signal"], "blocked");

    // A later update arrives through the waiting long poll.
    fake.push_update(text_update(7, "второе"));
    let third = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let Event::Inbound(m) = &third else { panic!() };
    assert_eq!(m.text.as_deref(), Some("второе"));

    // Wait for the commit of the last batch, then stop by dropping the receiver.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.load().await.unwrap() != Some(MARKER_BASE + 4) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "marker not committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(rx);
    let r = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(r.is_ok());
    let statuses: Vec<u16> = fake
        .requests_to("GET /updates")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(&statuses[..3], &[502, 429, 200], "{statuses:?}");
}

#[tokio::test]
async fn run_does_not_commit_what_was_not_handed_over() {
    let fake = FakeMax::start().await;
    fake.push_update(text_update(1, "x"));
    fake.push_update(text_update(1, "y"));
    let store = InMemoryMarkerStore::new();
    let poller = Poller::new(bot(&fake), Arc::new(store.clone())).timeout(Duration::ZERO);
    // A receiver that takes one event and goes away.
    let (tx, mut rx) = mpsc::channel(1);
    let task = tokio::spawn(async move { poller.run(tx).await });
    let first = rx.recv().await.unwrap();
    assert!(matches!(first, Event::Inbound(_)));
    drop(rx);
    task.await.unwrap().unwrap();
    assert_eq!(store.load().await.unwrap(), None, "nothing committed");
}

#[tokio::test]
async fn a_bad_token_stops_the_poller() {
    let fake = FakeMax::start().await;
    let bot = MaxBot::builder("not-the-token")
        .base_url(fake.url())
        .build()
        .unwrap();
    let poller = Poller::new(bot, Arc::new(InMemoryMarkerStore::new()))
        .backoff(Duration::from_millis(5), Duration::from_millis(5));
    let (tx, _rx) = mpsc::channel(1);
    let r = tokio::time::timeout(Duration::from_secs(5), poller.run(tx))
        .await
        .unwrap();
    let Err(MaxError::Api(e)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(e.kind(), messaging::ErrorKind::ChannelDown);
}

#[tokio::test]
async fn subscribe_list_and_unsubscribe() {
    let fake = FakeMax::start().await;
    let bot = bot(&fake);
    let secret = SecretString::from("s3cretValue_123");
    bot.subscribe(
        "https://clinic.example/max/webhook",
        messaging::max::HANDLED_UPDATE_TYPES,
        Some(&secret),
    )
    .await
    .unwrap();
    let subs = fake.subscriptions();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["secret"], "s3cretValue_123");
    assert_eq!(subs[0]["update_types"][0], "message_created");
    let listed = bot.subscriptions().await.unwrap();
    assert_eq!(listed[0].url, "https://clinic.example/max/webhook");

    // Refusals: a bad secret is caught before sending; plain http is refused locally.
    assert!(matches!(
        bot.subscribe(
            "https://x.example/h",
            &[],
            Some(&SecretString::from("bad secret!"))
        )
        .await,
        Err(MaxError::InvalidSecret)
    ));
    assert!(matches!(
        bot.subscribe("http://x.example/h", &[], None).await,
        Err(MaxError::InvalidWebhookUrl(_))
    ));
    // {"success": false} is a typed refusal.
    fake.fail_next(
        "POST /subscriptions",
        Failure::Raw(200, r#"{"success":false,"message":"nope"}"#.into()),
    );
    assert!(matches!(
        bot.subscribe("https://clinic.example/other", &[], None).await,
        Err(MaxError::Refused(m)) if m == "nope"
    ));

    bot.unsubscribe("https://clinic.example/max/webhook")
        .await
        .unwrap();
    assert!(fake.subscriptions().is_empty());
    let del = &fake.requests_to("DELETE /subscriptions")[0];
    assert_eq!(
        del.query.get("url").map(String::as_str),
        Some("https://clinic.example/max/webhook")
    );
}

#[tokio::test]
async fn webhook_round_trip_with_secret_and_verified_contact() {
    // What Max would POST after subscribe(): one Update per body, the secret in a header.
    let fake = FakeMax::start().await;
    let bot = bot(&fake);
    let handler = bot.webhook_handler(Some(SecretString::from("s3cretValue_123")));
    let vcf = "BEGIN:VCARD\r\nVERSION:3.0\r\nTEL;TYPE=cell:79123456789\r\nFN:Ivan\r\nEND:VCARD\r\n";
    // The bot's default contact hash key is its token.
    let hash = hmac_sha256_hex(FakeMax::TOKEN.as_bytes(), vcf.as_bytes());
    let body = json!({"update_type": "message_created", "timestamp": 1770680000000i64,
        "message": {"sender": {"user_id": 10001, "first_name": "Ivan", "is_bot": false},
            "recipient": {"chat_id": 182182182, "chat_type": "dialog", "user_id": 10002},
            "timestamp": 1770680000000i64,
            "body": {"mid": "mid.c", "seq": 1, "text": null, "attachments": [{"type": "contact",
                "payload": {"vcf_info": vcf, "hash": hash,
                    "max_info": {"user_id": 10001, "first_name": "Ivan"}}}]}}})
    .to_string();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-max-bot-api-secret", "s3cretValue_123".parse().unwrap());
    let events = handler
        .verify_and_parse(&WebhookRequest::post(&headers, body.as_bytes()))
        .unwrap();
    let v = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(v["kind"], "inbound");
    assert_eq!(v["channel"], "max");
    assert_eq!(v["channel_id"], "max");
    assert_eq!(v["from"], "10001");
    assert_eq!(v["contact_phone"], "+79123456789");
    assert_eq!(v["contact_is_own"], true);
    assert_eq!(v["at"], "2026-02-09T23:33:20Z");
    let Event::Inbound(m) = &events[0] else {
        panic!()
    };
    assert_eq!(m.address, Address::MaxUser(10001));

    // The answer goes back to the same address through the fake.
    use messaging::ChannelExt;
    bot.send_text(m.address.clone(), "Спасибо, номер привязан")
        .await
        .unwrap();
    assert_eq!(
        fake.sent_messages()[0]
            .query
            .get("user_id")
            .map(String::as_str),
        Some("10001")
    );
}

#[tokio::test]
async fn conformance_updates_through_the_poller() {
    let files =
        messaging::testkit::conformance_files(env!("CARGO_MANIFEST_DIR"), "max/updates", "json");
    if files.is_empty() {
        println!("skipped: conformance corpus absent");
        return;
    }
    let fake = FakeMax::start().await;
    for f in &files {
        fake.push_update(serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap());
    }
    let poller = bot(&fake)
        .poller(Arc::new(InMemoryMarkerStore::new()))
        .types(Vec::<String>::new())
        .limit(1000)
        .timeout(Duration::ZERO);
    let batch = poller.poll_once().await.unwrap();
    assert_eq!(batch.received, files.len());
    assert_eq!(batch.malformed, 0);
    // Only user_added carries nothing for the cascade.
    assert_eq!(batch.events.len(), files.len() - 1);
    assert!(
        batch
            .events
            .iter()
            .all(|e| e.channel_id().map(|c| c.as_str()) == Some("max"))
    );
    assert!(
        !fake.requests_to("GET /updates")[0]
            .query
            .contains_key("types")
    );
}
