//! The inbox store conformance suite: the behaviours every [`InboxStore`] must show, checked
//! against [`MemoryInboxStore`](super::MemoryInboxStore) (the reference) and the SQLite and
//! PostgreSQL stores of `messaging-store`.
//!
//! Each check takes a fresh, empty store and panics, naming the behaviour, when the store behaves
//! differently. [`run_all`] runs every check, each on a fresh store from your factory.
//!
//! ```
//! use messaging_conversations::inbox::{MemoryInboxStore, conformance};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! conformance::run_all(|| async { MemoryInboxStore::new() }).await;
//! # });
//! ```

use std::future::Future;

use chrono::{DateTime, TimeZone, Utc};

use super::{Direction, InboxMessage, InboxStore, ThreadId};
use messaging_core::{Address, ChannelId, ChannelKind, ContactId, InboundMessage, Phone};

/// A fixed instant (2030-01-01T00:00:00Z) plus `secs` seconds.
pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .map(|b| b + chrono::Duration::seconds(secs))
        .unwrap_or_default()
}

/// A plain inbound Telegram message `id` in `thread` at `t(at)`.
pub fn message(id: &str, thread: &ThreadId, at: i64, text: &str) -> InboxMessage {
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
        edited_at: None,
        deleted_at: None,
        reaction: None,
    }
}

fn ids(v: &[InboxMessage]) -> Vec<&str> {
    v.iter().map(|m| m.id.as_str()).collect()
}

async fn append<S: InboxStore + ?Sized>(store: &S, m: &InboxMessage) {
    store
        .append(m)
        .await
        .unwrap_or_else(|e| panic!("append {} failed: {e}", m.id));
}

async fn thread<S: InboxStore + ?Sized>(store: &S, th: &ThreadId) -> Vec<InboxMessage> {
    store
        .thread(th)
        .await
        .unwrap_or_else(|e| panic!("thread {th} failed: {e}"))
}

async fn threads<S: InboxStore + ?Sized>(store: &S) -> Vec<ThreadId> {
    store
        .threads()
        .await
        .unwrap_or_else(|e| panic!("threads failed: {e}"))
}

/// A message with every field set reads back equal (contact, direction, channel id, the
/// inbound message as the adapter gave it, nanosecond time, Cyrillic and emoji text); an
/// unknown thread is empty.
pub async fn message_round_trip<S: InboxStore + ?Sized>(store: &S) {
    let anna = ContactId::from("anna");
    let th = ThreadId::contact(&anna);
    assert!(
        thread(store, &th).await.is_empty(),
        "an empty store has messages"
    );
    let at = t(0) + chrono::Duration::nanoseconds(987_654_321);
    let from = Address::WhatsApp("79123456789".into());
    let phone = Phone::parse("+79123456789").unwrap_or_else(|e| panic!("phone: {e}"));
    let mut inbound = InboundMessage::new(
        ChannelKind::WhatsApp,
        from.clone(),
        Some("СТОП 🙅 \"кавычки\"\nстрока".into()),
        at,
    )
    .provider_message_id("wamid.HBgL")
    .contact(phone, true);
    inbound.channel_id = Some(ChannelId::new("wa-main"));
    let full = InboxMessage {
        id: "m-1".into(),
        thread: th.clone(),
        contact: Some(anna),
        direction: Direction::In,
        channel: ChannelKind::WhatsApp,
        channel_id: Some(ChannelId::new("wa-main")),
        address: from,
        text: inbound.text.clone(),
        at,
        provider_message_id: Some("wamid.HBgL".into()),
        opt_out: true,
        inbound: Some(inbound),
        edited_at: Some(at + chrono::Duration::seconds(5)),
        deleted_at: Some(at + chrono::Duration::seconds(6)),
        reaction: Some("👍".into()),
    };
    let out = InboxMessage {
        id: "m-2".into(),
        direction: Direction::Out,
        text: None,
        ..message("m-2", &th, 1, "")
    };
    append(store, &full).await;
    append(store, &out).await;
    assert_eq!(
        thread(store, &th).await,
        [full, out],
        "messages must read back equal in every field"
    );
    assert!(
        thread(store, &ThreadId::address(&Address::Telegram(42)))
            .await
            .is_empty()
    );
}

/// A thread reads in time order whatever order messages were appended in (a late webhook
/// lands before later messages); messages of equal time keep their arrival order.
pub async fn thread_in_time_order<S: InboxStore + ?Sized>(store: &S) {
    let th = ThreadId::contact(&ContactId::from("anna"));
    for m in [
        message("1", &th, 10, "a"),
        message("2", &th, 20, "b"),
        message("3", &th, 5, "late webhook"),
        message("4", &th, 10, "tie after 1"),
        message("5", &th, 10, "tie after 4"),
    ] {
        append(store, &m).await;
    }
    assert_eq!(ids(&thread(store, &th).await), ["3", "1", "4", "5", "2"]);
}

/// `threads` lists every thread once, most recently active first; threads whose latest
/// messages have the same time come in descending thread id order.
pub async fn threads_most_recent_first<S: InboxStore + ?Sized>(store: &S) {
    assert!(threads(store).await.is_empty());
    let a = ThreadId::address(&Address::Telegram(7));
    let b = ThreadId::contact(&ContactId::from("anna"));
    let c = ThreadId::address(&Address::Telegram(42));
    for m in [
        message("1", &a, 30, "x"),
        message("2", &b, 10, "x"),
        message("3", &c, 20, "x"),
        message("4", &b, 40, "x"),
        message("5", &a, 1, "older"),
    ] {
        append(store, &m).await;
    }
    assert_eq!(threads(store).await, [b.clone(), a.clone(), c.clone()]);
    append(store, &message("6", &c, 40, "tie")).await;
    let mut tie = [b.clone(), c.clone()];
    tie.sort();
    tie.reverse();
    assert_eq!(
        threads(store).await,
        [tie[0].clone(), tie[1].clone(), a],
        "equal latest times order by thread id, descending"
    );
}

/// `rethread` moves every message of one thread into another, setting their thread and
/// contact, returns how many moved, and merges them in time order (moved messages after the
/// destination's on equal times); moving again, moving an unknown thread, or moving a thread
/// onto itself moves nothing.
pub async fn rethread<S: InboxStore + ?Sized>(store: &S) {
    let anna = ContactId::from("anna");
    let to = ThreadId::contact(&anna);
    let from = ThreadId::address(&Address::Telegram(42));
    for m in [
        message("c1", &to, 10, "a"),
        message("a1", &from, 5, "b"),
        message("a2", &from, 10, "c"),
        message("c2", &to, 20, "d"),
    ] {
        append(store, &m).await;
    }
    let moved = store.rethread(&from, &to, &anna).await.expect("rethread");
    assert_eq!(moved, 2, "both messages moved");
    let merged = thread(store, &to).await;
    assert_eq!(ids(&merged), ["a1", "c1", "a2", "c2"]);
    assert!(merged.iter().all(|m| m.thread == to));
    assert!(
        merged
            .iter()
            .filter(|m| m.id.starts_with('a'))
            .all(|m| m.thread == to && m.contact.as_ref() == Some(&anna)),
        "moved messages carry their new thread and the contact"
    );
    assert!(thread(store, &from).await.is_empty());
    assert_eq!(
        threads(store).await,
        std::slice::from_ref(&to),
        "the old thread is gone"
    );
    assert_eq!(
        store.rethread(&from, &to, &anna).await.expect("rethread"),
        0,
        "moving again moves nothing"
    );
    assert_eq!(
        store.rethread(&to, &to, &anna).await.expect("rethread"),
        0,
        "a thread is not moved onto itself"
    );
    assert_eq!(thread(store, &to).await.len(), 4);
}

/// `erase_thread` deletes a thread and its messages, returns how many, and leaves other
/// threads; erasing an unknown thread deletes nothing.
pub async fn erase_thread<S: InboxStore + ?Sized>(store: &S) {
    let a = ThreadId::address(&Address::Telegram(7));
    let b = ThreadId::contact(&ContactId::from("anna"));
    for m in [
        message("1", &a, 1, "x"),
        message("2", &a, 2, "y"),
        message("3", &b, 3, "z"),
    ] {
        append(store, &m).await;
    }
    assert_eq!(store.erase_thread(&a).await.expect("erase"), 2);
    assert!(thread(store, &a).await.is_empty());
    assert_eq!(threads(store).await, std::slice::from_ref(&b));
    assert_eq!(store.erase_thread(&a).await.expect("erase"), 0);
    assert_eq!(ids(&thread(store, &b).await), ["3"]);
}

/// Two rethreads of the same sender at once (two instances linking one person) move each of
/// 50 messages exactly once.
pub async fn concurrent_rethreads_move_once<S: InboxStore + ?Sized>(store: &S) {
    let from = ThreadId::address(&Address::Telegram(9));
    let boris = ContactId::from("boris");
    let to = ThreadId::contact(&boris);
    for i in 0..50 {
        append(store, &message(&format!("race-{i:02}"), &from, i, "x")).await;
    }
    let (a, b) = tokio::join!(
        store.rethread(&from, &to, &boris),
        store.rethread(&from, &to, &boris)
    );
    let moved = a.unwrap_or_else(|e| panic!("rethread failed: {e}"))
        + b.unwrap_or_else(|e| panic!("rethread failed: {e}"));
    assert_eq!(moved, 50, "each message must move exactly once");
    let merged = thread(store, &to).await;
    assert_eq!(merged.len(), 50, "no message lost or doubled");
    assert!(thread(store, &from).await.is_empty());
}

/// `replace` swaps the stored message of the same id in its thread, in place (an edit, a
/// deletion, a reaction), and returns `true`; a message not stored there replaces nothing.
pub async fn replace<S: InboxStore + ?Sized>(store: &S) {
    let th = ThreadId::contact(&ContactId::from("anna"));
    for m in [
        message("1", &th, 10, "a"),
        message("2", &th, 20, "Приду в 10"),
        message("3", &th, 30, "c"),
    ] {
        append(store, &m).await;
    }
    let edited = InboxMessage {
        text: Some("Приду в 11".into()),
        edited_at: Some(t(40)),
        reaction: Some("👍".into()),
        ..message("2", &th, 20, "")
    };
    assert!(store.replace(&edited).await.expect("replace"), "found");
    let got = thread(store, &th).await;
    assert_eq!(ids(&got), ["1", "2", "3"], "the message keeps its place");
    assert_eq!(got[1], edited, "every field replaced");
    let other = ThreadId::address(&Address::Telegram(7));
    assert!(
        !store
            .replace(&message("2", &other, 20, "x"))
            .await
            .expect("replace"),
        "not in that thread"
    );
    assert!(
        !store
            .replace(&message("9", &th, 20, "x"))
            .await
            .expect("replace"),
        "no such id"
    );
    assert_eq!(thread(store, &th).await.len(), 3);
}

/// Runs every check, each on a fresh store from `make`.
///
/// # Panics
///
/// When the store does not behave like the reference.
pub async fn run_all<S, F, Fut>(mut make: F)
where
    S: InboxStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    message_round_trip(&make().await).await;
    thread_in_time_order(&make().await).await;
    threads_most_recent_first(&make().await).await;
    rethread(&make().await).await;
    erase_thread(&make().await).await;
    concurrent_rethreads_move_once(&make().await).await;
    replace(&make().await).await;
}
