//! The sender counters conformance suite: the answers every [`SenderCounters`] must give the
//! governor, checked against [`MemoryCounters`] (the reference) and the SQLite and PostgreSQL
//! stores of `messaging-store`.
//!
//! Each check takes fresh, empty counters and panics, naming the behaviour, when they answer
//! differently. [`run_all`] runs every check, each on fresh counters from your factory.
//!
//! ```
//! use messaging_hygiene::governor::{MemoryCounters, conformance};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! conformance::run_all(|| async { MemoryCounters::new() }).await;
//! # });
//! ```

use std::future::Future;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::{MemoryCounters, SendRecord, SenderCounters, WindowCounts};
use messaging_core::{ChannelId, Purpose};

/// A fixed instant (2030-01-01T00:00:00Z) plus `mins` minutes.
pub fn t(mins: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .map(|b| b + Duration::minutes(mins))
        .unwrap_or_default()
}

/// A send on `channel` to person `who` (keys `phone:<who>` first, then `contact:<who>`).
pub fn send(
    channel: &str,
    who: &str,
    purpose: Purpose,
    at: DateTime<Utc>,
    new: bool,
) -> SendRecord {
    SendRecord {
        channel_id: ChannelId::from(channel),
        address: format!("phone:{who}"),
        person: person(who),
        purpose,
        at,
        new_recipient: new,
    }
}

/// Every key of person `who`, as the governor passes them: the send's address first.
pub fn person(who: &str) -> Vec<String> {
    vec![format!("phone:{who}"), format!("contact:{who}")]
}

fn key(k: &str) -> Vec<String> {
    vec![k.to_owned()]
}

async fn record<C: SenderCounters + ?Sized>(c: &C, s: &SendRecord) {
    c.record_send(s)
        .await
        .unwrap_or_else(|e| panic!("record_send {} failed: {e}", s.address));
}

async fn window<C: SenderCounters + ?Sized>(c: &C, ch: &str, since: DateTime<Utc>) -> WindowCounts {
    c.window(&ChannelId::from(ch), since)
        .await
        .unwrap_or_else(|e| panic!("window {ch} failed: {e}"))
}

async fn inbound<C: SenderCounters + ?Sized>(c: &C, ch: &str, sender: &str, at: DateTime<Utc>) {
    c.record_inbound(&ChannelId::from(ch), sender, at)
        .await
        .unwrap_or_else(|e| panic!("record_inbound {sender} failed: {e}"));
}

async fn known<C: SenderCounters + ?Sized>(c: &C, ch: &str, keys: &[String]) -> bool {
    c.known(&ChannelId::from(ch), keys)
        .await
        .unwrap_or_else(|e| panic!("known {keys:?} failed: {e}"))
}

async fn sent_since<C: SenderCounters + ?Sized>(
    c: &C,
    ch: &str,
    keys: &[String],
    since: DateTime<Utc>,
) -> bool {
    c.sent_since(&ChannelId::from(ch), keys, since)
        .await
        .unwrap_or_else(|e| panic!("sent_since {keys:?} failed: {e}"))
}

async fn marketing<C: SenderCounters + ?Sized>(
    c: &C,
    keys: &[String],
    since: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    c.marketing_since(keys, since)
        .await
        .unwrap_or_else(|e| panic!("marketing_since {keys:?} failed: {e}"))
}

async fn replies_to<C: SenderCounters + ?Sized>(c: &C, ch: &str, since: DateTime<Utc>) -> u64 {
    c.replies_since(&ChannelId::from(ch), since)
        .await
        .unwrap_or_else(|e| panic!("replies_since {ch} failed: {e}"))
}

/// `window` counts one channel's sends at or after `since` (inclusive): how many, how many to
/// new recipients, how many distinct addresses, and the earliest time to the nanosecond, also
/// when sends were recorded out of order; a channel without sends counts zero.
pub async fn window_counts<C: SenderCounters + ?Sized>(c: &C) {
    let late = t(20) + Duration::nanoseconds(500);
    for s in [
        send("wa", "a", Purpose::Service, t(0), true),
        send("wa", "a", Purpose::Service, t(10), false),
        send("wa", "b", Purpose::Marketing, t(5), true),
        send("wa", "c", Purpose::Service, late, true),
        send("sms", "d", Purpose::Service, t(7), true),
    ] {
        record(c, &s).await;
    }
    assert_eq!(
        window(c, "wa", t(-60)).await,
        WindowCounts {
            sends: 4,
            new_recipients: 3,
            unique_recipients: 3,
            earliest: Some(t(0)),
        },
        "every send of the channel"
    );
    assert_eq!(
        window(c, "wa", t(5)).await,
        WindowCounts {
            sends: 3,
            new_recipients: 2,
            unique_recipients: 3,
            earliest: Some(t(5)),
        },
        "`since` is inclusive"
    );
    assert_eq!(
        window(c, "wa", t(20)).await,
        WindowCounts {
            sends: 1,
            new_recipients: 1,
            unique_recipients: 1,
            earliest: Some(late),
        },
        "times are kept to the nanosecond"
    );
    assert_eq!(window(c, "wa", t(21)).await, WindowCounts::default());
    assert_eq!(
        window(c, "sms", t(0)).await.sends,
        1,
        "channels count apart"
    );
    assert_eq!(window(c, "tg", t(0)).await, WindowCounts::default());
}

/// `known` is true when the channel wrote to any key of the person (on that channel only) or
/// the person wrote to us under any key (on any channel); `sent_since` is true when the channel
/// wrote to any key of the person at or after `since`, by the latest send even when an older
/// one is recorded after it.
pub async fn known_and_sent_since<C: SenderCounters + ?Sized>(c: &C) {
    record(c, &send("wa", "a", Purpose::Service, t(10), true)).await;
    assert!(known(c, "wa", &key("phone:a")).await);
    assert!(
        known(c, "wa", &key("contact:a")).await,
        "every key of the send's person is known"
    );
    assert!(
        !known(c, "sms", &key("phone:a")).await,
        "another channel never wrote to them"
    );
    assert!(!known(c, "wa", &person("z")).await, "a stranger is unknown");
    inbound(c, "sms", "phone:d", t(3)).await;
    assert!(
        known(c, "wa", &person("d")).await && known(c, "sms", &key("phone:d")).await,
        "someone who wrote to us is known on every channel"
    );

    assert!(
        sent_since(c, "wa", &key("phone:a"), t(10)).await,
        "inclusive"
    );
    assert!(!sent_since(c, "wa", &key("phone:a"), t(11)).await);
    assert!(!sent_since(c, "sms", &key("phone:a"), t(0)).await);
    record(c, &send("wa", "a", Purpose::Service, t(30), false)).await;
    record(c, &send("wa", "a", Purpose::Service, t(15), false)).await;
    assert!(
        sent_since(c, "wa", &key("contact:a"), t(20)).await,
        "the latest send counts, whatever order sends were recorded in"
    );
    assert!(
        !sent_since(c, "wa", &person("d"), t(0)).await,
        "an inbound is not a send"
    );
}

/// `marketing_since` gives the times of marketing sends to the person on any channel at or
/// after `since`, sorted, once each when several of the person's keys are asked; service sends
/// do not count; other people's do not either.
pub async fn marketing_since<C: SenderCounters + ?Sized>(c: &C) {
    for s in [
        send("wa", "a", Purpose::Marketing, t(0), true),
        send("sms", "a", Purpose::Marketing, t(20), true),
        send("wa", "a", Purpose::Service, t(5), false),
        send("wa", "b", Purpose::Marketing, t(10), true),
        send("wa", "a", Purpose::Marketing, t(15), false),
    ] {
        record(c, &s).await;
    }
    assert_eq!(
        marketing(c, &key("phone:a"), t(-60)).await,
        [t(0), t(15), t(20)],
        "marketing on every channel, sorted"
    );
    assert_eq!(
        marketing(c, &person("a"), t(-60)).await,
        [t(0), t(15), t(20)],
        "each send once when several keys of the person are asked"
    );
    assert_eq!(marketing(c, &key("phone:a"), t(15)).await, [t(15), t(20)]);
    assert_eq!(marketing(c, &key("phone:b"), t(-60)).await, [t(10)]);
    assert!(marketing(c, &key("phone:z"), t(-60)).await.is_empty());
}

/// `replies_since` counts one channel's inbound messages at or after `since` (inclusive).
pub async fn replies_since<C: SenderCounters + ?Sized>(c: &C) {
    inbound(c, "wa", "phone:x", t(1)).await;
    inbound(c, "wa", "phone:y", t(5)).await;
    inbound(c, "wa", "phone:x", t(5)).await;
    inbound(c, "sms", "phone:x", t(6)).await;
    assert_eq!(replies_to(c, "wa", t(0)).await, 3);
    assert_eq!(replies_to(c, "wa", t(5)).await, 2, "`since` is inclusive");
    assert_eq!(replies_to(c, "wa", t(6)).await, 0);
    assert_eq!(replies_to(c, "sms", t(0)).await, 1, "channels count apart");
    assert_eq!(replies_to(c, "tg", t(0)).await, 0);
}

/// `connected_at` is `None` until set, then the last time set, per channel.
pub async fn connected_at<C: SenderCounters + ?Sized>(c: &C) {
    let wa = ChannelId::from("wa");
    assert_eq!(c.connected_at(&wa).await.expect("connected_at"), None);
    c.set_connected_at(&wa, t(1))
        .await
        .expect("set_connected_at");
    assert_eq!(c.connected_at(&wa).await.expect("connected_at"), Some(t(1)));
    c.set_connected_at(&wa, t(2))
        .await
        .expect("set_connected_at");
    assert_eq!(
        c.connected_at(&wa).await.expect("connected_at"),
        Some(t(2)),
        "a second registration replaces the first"
    );
    assert_eq!(
        c.connected_at(&ChannelId::from("sms"))
            .await
            .expect("connected_at"),
        None
    );
}

/// Counters stay bounded: sends, marketing sends and replies older than
/// [`MemoryCounters::RETENTION`] before a newer one of the same channel (or person) are
/// forgotten, while whom a channel ever contacted is kept.
pub async fn old_entries_are_forgotten<C: SenderCounters + ?Sized>(c: &C) {
    let old = t(0) - MemoryCounters::RETENTION - Duration::hours(1);
    let far_past = old - Duration::days(1);
    record(c, &send("wa", "a", Purpose::Marketing, old, true)).await;
    inbound(c, "wa", "phone:x", old).await;
    record(c, &send("wa", "a", Purpose::Marketing, t(0), false)).await;
    inbound(c, "wa", "phone:x", t(0)).await;
    assert_eq!(
        window(c, "wa", far_past).await.sends,
        1,
        "a send older than the retention is forgotten"
    );
    assert_eq!(marketing(c, &key("phone:a"), far_past).await, [t(0)]);
    assert_eq!(replies_to(c, "wa", far_past).await, 1);
    record(c, &send("wa", "b", Purpose::Service, old, true)).await;
    record(c, &send("wa", "c", Purpose::Service, t(1), true)).await;
    assert!(
        known(c, "wa", &key("phone:b")).await,
        "whom the channel contacted is kept"
    );
}

/// Runs every check, each on fresh counters from `make`.
///
/// # Panics
///
/// When the counters do not answer like the reference.
pub async fn run_all<C, F, Fut>(mut make: F)
where
    C: SenderCounters,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    window_counts(&make().await).await;
    known_and_sent_since(&make().await).await;
    marketing_since(&make().await).await;
    replies_since(&make().await).await;
    connected_at(&make().await).await;
    old_entries_are_forgotten(&make().await).await;
}
