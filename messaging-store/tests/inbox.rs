//! Inbox threads behave alike in memory, on SQLite and on PostgreSQL; the SQL stores keep them
//! across a reopen, and two PostgreSQL instances moving one thread at once move it once.
#![cfg(feature = "sqlite")]

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use messaging_conversations::inbox::{
    Direction, InboxMessage, InboxStore, MemoryInboxStore, ThreadId,
};
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

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inbox_behaves_like_memory_and_is_shared_by_instances() {
    use messaging_store::{PostgresOptions, PostgresStore};
    let Some(config) = common::pg_config() else {
        return;
    };
    let memory = script(&MemoryInboxStore::new()).await;
    let schema = common::unique_schema("inbox");
    let connect = || {
        PostgresStore::connect_with(
            &config,
            PostgresOptions::default().schema(&schema).pool_size(4),
        )
    };
    let a = connect().await.expect("connect a");
    let b = connect().await.expect("connect b");
    let result = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            assert_eq!(script(&a).await, memory);
            // The other instance sees the same threads.
            let anna = ThreadId::contact(&ContactId::from("anna"));
            assert_eq!(
                b.thread(&anna).await.expect("thread").len(),
                5,
                "instance b reads what instance a wrote"
            );

            // Both instances link the same sender at once: every message moves exactly once.
            let from = ThreadId::address(&Address::Telegram(9));
            let to = ThreadId::contact(&ContactId::from("boris"));
            for i in 0..50 {
                a.append(&msg(&format!("race-{i}"), &from, i, "x"))
                    .await
                    .expect("append");
            }
            let boris = ContactId::from("boris");
            let (ma, mb) = tokio::join!(
                a.rethread(&from, &to, &boris),
                b.rethread(&from, &to, &boris)
            );
            assert_eq!(
                ma.expect("rethread a") + mb.expect("rethread b"),
                50,
                "each message moved once"
            );
            let moved = a.thread(&to).await.expect("thread");
            assert_eq!(moved.len(), 50);
            assert!(
                moved
                    .iter()
                    .all(|m| m.contact.as_ref() == Some(&boris) && m.thread == to)
            );
            assert!(a.thread(&from).await.expect("thread").is_empty());
        }
    })
    .await;
    a.drop_schema().await.expect("drop schema");
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
