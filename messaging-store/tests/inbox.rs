//! Inbox threads behave alike in memory and on SQLite, and SQLite keeps them across a reopen.
#![cfg(feature = "sqlite")]

use chrono::{DateTime, Duration, TimeZone, Utc};
use messaging_core::inbox::{Direction, InboxMessage, InboxStore, MemoryInboxStore, ThreadId};
use messaging_core::{Address, ChannelKind, ContactId};
use messaging_store::SqliteStore;

fn t(min: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_250_800, 0).single().expect("time") + Duration::minutes(min)
}

fn msg(id: &str, thread: &ThreadId, at: i64, text: &str) -> InboxMessage {
    InboxMessage {
        id: id.into(),
        thread: thread.clone(),
        contact: None,
        direction: Direction::In,
        channel: ChannelKind::Telegram,
        channel_id: None,
        address: Address::Telegram(42),
        text: Some(text.into()),
        at: t(at),
        provider_message_id: None,
        opt_out: false,
        inbound: None,
    }
}

/// Runs one script; returns everything read back.
async fn script(s: &dyn InboxStore) -> Vec<String> {
    let anna = ContactId::from("anna");
    let by_contact = ThreadId::contact(&anna);
    let by_address = ThreadId::address(&Address::Telegram(42));
    let other = ThreadId::address(&Address::Telegram(7));
    let mut out = Vec::new();
    for m in [
        msg("1", &by_contact, 10, "a"),
        msg("2", &by_address, 5, "b"),
        msg("3", &by_address, 10, "c"),
        msg("4", &by_contact, 3, "late webhook"),
        msg("5", &other, 1, "x"),
        msg("6", &by_contact, 10, "tie after 1"),
    ] {
        s.append(&m).await.expect("append");
    }
    let ids = |v: Vec<InboxMessage>| -> String {
        v.iter()
            .map(|m| format!("{}@{}:{:?}", m.id, m.thread.as_str(), m.contact))
            .collect::<Vec<_>>()
            .join(",")
    };
    out.push(ids(s.thread(&by_contact).await.expect("thread")));
    out.push(format!("{:?}", s.threads().await.expect("threads")));
    out.push(format!(
        "moved {}",
        s.rethread(&by_address, &by_contact, &anna)
            .await
            .expect("rethread")
    ));
    out.push(format!(
        "moved again {}",
        s.rethread(&by_address, &by_contact, &anna)
            .await
            .expect("rethread")
    ));
    out.push(ids(s.thread(&by_contact).await.expect("thread")));
    out.push(ids(s.thread(&by_address).await.expect("thread")));
    out.push(format!("{:?}", s.threads().await.expect("threads")));
    out.push(format!(
        "erased {}",
        s.erase_thread(&other).await.expect("erase")
    ));
    out.push(format!("{:?}", s.threads().await.expect("threads")));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_inbox_behaves_like_memory_and_survives_a_reopen() {
    let memory = script(&MemoryInboxStore::new()).await;
    assert!(memory[0].starts_with("4@"), "time order: {memory:?}");
    assert_eq!(memory[2], "moved 2");
    assert_eq!(memory[3], "moved again 0");
    assert_eq!(memory[7], "erased 1");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("inbox.db");
    let store = SqliteStore::open(&path).await.expect("open");
    assert_eq!(script(&store).await, memory);
    drop(store);
    let store = SqliteStore::open(&path).await.expect("reopen");
    let anna = ThreadId::contact(&ContactId::from("anna"));
    let kept = store.thread(&anna).await.expect("thread");
    assert_eq!(kept.len(), 5, "messages survive a reopen");
    assert!(kept.windows(2).all(|w| w[0].at <= w[1].at));
}
