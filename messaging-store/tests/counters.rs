//! The sender governor's counters answer alike in memory, on SQLite and on PostgreSQL (when
//! `MESSAGING_TEST_DATABASE_URL` is set), and SQLite keeps them across a reopen.
#![cfg(feature = "sqlite")]

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use messaging_core::{ChannelId, Purpose};
use messaging_hygiene::governor::{SendRecord, WindowCounts};
use messaging_hygiene::{MemoryCounters, SenderCounters};
use messaging_store::SqliteStore;

fn t(min: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_250_800, 0).single().expect("time") + Duration::minutes(min)
}

fn send(ch: &str, who: &str, purpose: Purpose, at: i64, new: bool) -> SendRecord {
    SendRecord {
        channel_id: ChannelId::from(ch),
        address: format!("phone:{who}"),
        person: vec![format!("contact:{who}"), format!("phone:{who}")],
        purpose,
        at: t(at),
        new_recipient: new,
    }
}

fn person(who: &str) -> Vec<String> {
    vec![format!("phone:{who}")]
}

/// Feeds the same history to a store; returns every answer the governor may ask for.
async fn answers(s: &dyn SenderCounters) -> Vec<String> {
    let wa = ChannelId::from("wa");
    let sms = ChannelId::from("sms");
    let old = -(9 * 24 * 60); // beyond the 8-day retention
    for r in [
        send("wa", "a", Purpose::Service, old, true),
        send("wa", "a", Purpose::Marketing, 0, false),
        send("wa", "b", Purpose::Marketing, 5, true),
        send("wa", "b", Purpose::Service, 10, false),
        send("sms", "c", Purpose::Service, 7, true),
        send("wa", "a", Purpose::Marketing, 20, false),
    ] {
        s.record_send(&r).await.expect("record_send");
    }
    s.record_inbound(&wa, "phone:d", t(3))
        .await
        .expect("inbound");
    s.record_inbound(&wa, "phone:a", t(12))
        .await
        .expect("inbound");
    s.set_opted_out("phone:e", true).await.expect("opt out");
    s.set_opted_out("phone:f", true).await.expect("opt out");
    s.set_opted_out("phone:f", false).await.expect("opt in");
    s.set_connected_at(&wa, t(-100)).await.expect("connected");

    let mut out = Vec::new();
    for since in [-20_000, 0, 6, 11, 30] {
        let w: WindowCounts = s.window(&wa, t(since)).await.expect("window");
        out.push(format!("window wa {since}: {w:?}"));
        out.push(format!(
            "replies {since}: {}",
            s.replies_since(&wa, t(since)).await.expect("replies")
        ));
        for who in ["a", "b", "c"] {
            out.push(format!(
                "sent_since wa {who} {since}: {}",
                s.sent_since(&wa, &person(who), t(since))
                    .await
                    .expect("sent_since")
            ));
            out.push(format!(
                "marketing {who} {since}: {:?}",
                s.marketing_since(&[format!("contact:{who}")], t(since))
                    .await
                    .expect("marketing")
            ));
        }
    }
    for who in ["a", "b", "c", "d", "z"] {
        for ch in [&wa, &sms] {
            out.push(format!(
                "known {ch} {who}: {}",
                s.known(ch, &person(who)).await.expect("known")
            ));
        }
    }
    for who in ["e", "f", "a"] {
        out.push(format!(
            "opted_out {who}: {}",
            s.opted_out(&person(who)).await.expect("opted_out")
        ));
    }
    out.push(format!(
        "connected wa {:?}, sms {:?}",
        s.connected_at(&wa).await.expect("connected_at"),
        s.connected_at(&sms).await.expect("connected_at")
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_counters_answer_like_memory_and_survive_a_reopen() {
    let memory = answers(&MemoryCounters::new()).await;
    // The script must exercise what could differ.
    assert!(
        memory.contains(&"known wa d: true".to_owned()),
        "{memory:#?}"
    );
    assert!(memory.contains(&"opted_out e: true".to_owned()));
    assert!(memory.contains(&"opted_out f: false".to_owned()));
    assert!(
        memory
            .iter()
            .any(|l| l.starts_with("window wa -20000: WindowCounts { sends: 4,"))
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("counters.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let sqlite = answers(&store).await;
    assert_eq!(sqlite, memory);
    drop(store);

    let store = SqliteStore::open(&path).await.expect("reopen");
    let wa = ChannelId::from("wa");
    assert_eq!(
        store.window(&wa, t(-20_000)).await.expect("window").sends,
        4,
        "sends survive a reopen"
    );
    assert!(store.opted_out(&person("e")).await.expect("opted_out"));
    assert_eq!(
        store.connected_at(&wa).await.expect("connected_at"),
        Some(t(-100))
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_counters_answer_like_memory() {
    use messaging_store::{PostgresOptions, PostgresStore};
    let Some(config) = common::pg_config() else {
        return;
    };
    let store = PostgresStore::connect_with(
        &config,
        PostgresOptions::default()
            .schema(common::unique_schema("gov"))
            .pool_size(4),
    )
    .await
    .expect("connect");
    let s = store.clone();
    let result = tokio::spawn(async move {
        let memory = answers(&MemoryCounters::new()).await;
        assert_eq!(answers(&s).await, memory);
    })
    .await;
    store.drop_schema().await.expect("drop schema");
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
