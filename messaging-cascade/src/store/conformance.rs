//! The store conformance suite: one set of behaviours every [`CascadeStore`] + [`WindowStore`]
//! must show, checked against [`MemoryStore`](super::MemoryStore) (the reference) and the durable
//! stores in `messaging-store`.
//!
//! Each check takes a fresh, empty store and panics (with a message naming the behaviour) when the
//! store behaves differently from the reference. [`run_all`] runs every check, each on a fresh
//! store from the factory you give it.
//!
//! ```
//! use messaging_cascade::store::{MemoryStore, conformance};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! conformance::run_all(|| async { MemoryStore::new() }).await;
//! # });
//! ```
//!
//! [`run_reports`] checks [`CascadeReports`] the same way, on one scripted scenario.
//!
//! Timestamps used here carry microseconds (the engine's clocks tick in microseconds), and the
//! records carry nanoseconds in their history: a store must give every field back exactly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::reports::CurrencyTotal;
use super::{
    CascadeReports, CascadeStore, DailyCost, EndedCount, Inserted, ListQuery, MessageRef,
    ReportQuery, RunningCount, StoreError, StuckCascade, WindowStore,
};
use crate::engine::{
    Attempt, AttemptState, CascadeRecord, DeferReason, HistoryEntry, HistoryKind, Notification,
    Outcome, Phase, SkipReason,
};
use messaging_core::Content;
use messaging_core::Cost;
use messaging_core::ErrorKind;
use messaging_core::{
    Address, ChannelId, ChannelKind, Evidence, NotificationId, PolicyId, ProviderMessageId,
    Purpose, Recipient,
};

/// The lease used by the timer checks.
const LEASE: Duration = Duration::from_secs(30);

/// A fixed instant (2030-01-01T00:00:00Z) plus `secs` seconds.
pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .map(|b| b + chrono::Duration::seconds(secs))
        .unwrap_or_default()
}

/// A new, active (`Ready`) record for `id`, for a person with phone `phone`, waking at `wake_at`.
///
/// # Panics
///
/// If `phone` is not a valid phone number.
pub fn record(id: &str, phone: &str, wake_at: Option<DateTime<Utc>>) -> CascadeRecord {
    let recipient = Recipient::with_phone(format!("contact-{id}"), phone)
        .unwrap_or_else(|e| panic!("conformance: bad test phone {phone}: {e}"));
    CascadeRecord {
        notification: Arc::new(Notification::new(
            id,
            recipient,
            Content::text("Анна, напоминаем: приём завтра в 10:00. Придёте?"),
        )),
        policy: PolicyId::new("clinic"),
        version: 0,
        step: 0,
        phase: Phase::Ready,
        wake_at,
        rate_limit_waits: 0,
        attempts: Vec::new(),
        history: vec![HistoryEntry {
            at: t(0),
            kind: HistoryKind::Submitted {
                policy: PolicyId::new("clinic"),
            },
        }],
        created_at: t(0),
    }
}

/// An attempt on `step` over `channel`, accepted with `provider_message_id`.
pub fn sent_attempt(step: usize, channel: &str, provider_message_id: &str) -> Attempt {
    Attempt {
        step,
        channel: ChannelId::new(channel),
        number: 1,
        started_at: t(1),
        sent_at: Some(t(2)),
        provider_message_id: Some(ProviderMessageId::new(provider_message_id)),
        evidence: None,
        evidence_at: None,
        state: AttemptState::Sent,
        possible_duplicate: false,
        forced_template: false,
        cost: None,
        shortened_window: None,
        probe: false,
    }
}

/// A record with every field set to something other than its default: a deadline, metadata,
/// several addresses, attempts in every state, a long history and a `Waiting` phase.
pub fn rich_record(id: &str) -> CascadeRecord {
    let nanos = Utc
        .timestamp_opt(1_900_000_000, 123_456_789)
        .single()
        .unwrap_or_default();
    let recipient = Recipient::with_phone("patient-7", "+79123456789")
        .unwrap_or_else(|e| panic!("conformance: bad test phone: {e}"))
        .name("Анна Петровна")
        .address(Address::Telegram(42))
        .address(Address::MaxUser(-7))
        .time_zone(chrono_tz::Europe::Moscow)
        .opt_out(Some(ChannelKind::WhatsApp), Some(Purpose::Marketing));
    let notification = Notification::new(
        id,
        recipient,
        Content::text("Анна, ваши анализы готовы ✅ \"кавычки\" \\ и\nперевод строки"),
    )
    .purpose(Purpose::Service)
    .deadline(t(86_400))
    .policy("clinic-urgent")
    .meta("appointment", "1042")
    .meta("doctor", "Иванов");
    let wa = ChannelId::new("wa-main");
    let tg = ChannelId::new("tg");
    CascadeRecord {
        notification: Arc::new(notification),
        policy: PolicyId::new("clinic-urgent"),
        version: 0,
        step: 1,
        phase: Phase::Waiting {
            attempt: 2,
            wait_for: Evidence::Delivered,
            window_end: t(3_600),
        },
        wake_at: Some(t(3_600)),
        rate_limit_waits: 3,
        attempts: vec![
            Attempt {
                step: 0,
                channel: wa.clone(),
                number: 1,
                started_at: nanos,
                sent_at: None,
                provider_message_id: None,
                evidence: None,
                evidence_at: None,
                state: AttemptState::Failed {
                    kind: ErrorKind::NeedsTemplate,
                    code: Some("131047".into()),
                    message: "Re-engagement message".into(),
                },
                possible_duplicate: false,
                forced_template: false,
                cost: None,
                shortened_window: None,
                probe: false,
            },
            Attempt {
                step: 0,
                channel: wa.clone(),
                number: 2,
                started_at: t(5),
                sent_at: Some(t(6)),
                provider_message_id: Some(ProviderMessageId::new(
                    "wamid.HBgLNzkxMjM0NTY3ODkVAgARGBI",
                )),
                evidence: Some(Evidence::Accepted),
                evidence_at: Some(t(7)),
                state: AttemptState::Unknown,
                possible_duplicate: true,
                forced_template: true,
                cost: Some(Cost::new(0.0125, "USD")),
                shortened_window: None,
                probe: false,
            },
            Attempt {
                step: 1,
                channel: tg.clone(),
                number: 1,
                started_at: t(60),
                sent_at: Some(t(61)),
                provider_message_id: Some(ProviderMessageId::new("tg:42:1001")),
                evidence: Some(Evidence::Read),
                evidence_at: Some(nanos),
                state: AttemptState::Sent,
                possible_duplicate: false,
                forced_template: false,
                cost: Some(Cost::new(0.0, "RUB")),
                // A probe on a degraded window: the fields older records lack.
                shortened_window: Some(std::time::Duration::from_millis(300_250)),
                probe: true,
            },
        ],
        history: vec![
            HistoryEntry {
                at: nanos,
                kind: HistoryKind::Submitted {
                    policy: PolicyId::new("clinic-urgent"),
                },
            },
            HistoryEntry {
                at: t(1),
                kind: HistoryKind::StepStarted {
                    step: 0,
                    channel: wa.clone(),
                },
            },
            HistoryEntry {
                at: t(1),
                kind: HistoryKind::Deferred {
                    step: 0,
                    channel: wa.clone(),
                    until: t(4),
                    reason: DeferReason::Governor("warm-up".into()),
                },
            },
            HistoryEntry {
                at: t(2),
                kind: HistoryKind::Failed {
                    step: 0,
                    channel: wa.clone(),
                    attempt: 1,
                    kind: ErrorKind::NeedsTemplate,
                    code: Some("131047".into()),
                    message: "Re-engagement message".into(),
                },
            },
            HistoryEntry {
                at: t(5),
                kind: HistoryKind::Sending {
                    step: 0,
                    channel: wa.clone(),
                    attempt: 2,
                    possible_duplicate: true,
                },
            },
            HistoryEntry {
                at: t(50),
                kind: HistoryKind::WindowClosed {
                    step: 0,
                    channel: wa,
                    early: true,
                },
            },
            HistoryEntry {
                at: t(50),
                kind: HistoryKind::Advanced {
                    from: 0,
                    to: Some(1),
                },
            },
            HistoryEntry {
                at: t(51),
                kind: HistoryKind::Skipped {
                    step: 2,
                    channel: ChannelId::new("max"),
                    reason: SkipReason::Refused("hygiene: link shortener".into()),
                },
            },
            HistoryEntry {
                at: t(61),
                kind: HistoryKind::Sent {
                    step: 1,
                    channel: tg.clone(),
                    attempt: 1,
                    provider_message_id: ProviderMessageId::new("tg:42:1001"),
                },
            },
            HistoryEntry {
                at: t(62),
                kind: HistoryKind::Evidence {
                    step: 1,
                    channel: tg,
                    evidence: Evidence::Read,
                },
            },
        ],
        created_at: nanos,
    }
}

/// Marks `rec` finished with `outcome`, clearing its timer, the way the engine does.
pub fn finish(rec: &mut CascadeRecord, outcome: Outcome) {
    rec.phase = Phase::Finished(outcome);
    rec.wake_at = None;
}

fn id(s: &str) -> NotificationId {
    NotificationId::new(s)
}

fn sorted(mut v: Vec<NotificationId>) -> Vec<NotificationId> {
    v.sort();
    v
}

async fn insert_new<S: CascadeStore + ?Sized>(store: &S, rec: &CascadeRecord) {
    match store.insert(rec).await {
        Ok(Inserted::New) => {}
        Ok(Inserted::Exists(r)) => panic!("insert {}: unexpected Exists({r:?})", rec.id()),
        Err(e) => panic!("insert {}: {e}", rec.id()),
    }
}

async fn get_some<S: CascadeStore + ?Sized>(store: &S, rid: &str) -> CascadeRecord {
    match store.get(&id(rid)).await {
        Ok(Some(r)) => r,
        Ok(None) => panic!("get {rid}: record missing"),
        Err(e) => panic!("get {rid}: {e}"),
    }
}

async fn update_ok<S: CascadeStore + ?Sized>(store: &S, rec: &CascadeRecord) -> u64 {
    store
        .update(rec)
        .await
        .unwrap_or_else(|e| panic!("update {} at version {}: {e}", rec.id(), rec.version))
}

async fn claim<S: CascadeStore + ?Sized>(
    store: &S,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<NotificationId> {
    store
        .claim_due(now, limit, LEASE)
        .await
        .unwrap_or_else(|e| panic!("claim_due({now}, {limit}): {e}"))
}

/// Insert then get gives back every field (notification, attempts, history, phase, timers),
/// with `version` 0 whatever the inserted record said; an unknown id reads as `None`.
pub async fn insert_get_round_trip<S: CascadeStore + ?Sized>(store: &S) {
    let mut rec = rich_record("round-trip");
    rec.version = 7;
    insert_new(store, &rec).await;
    let back = get_some(store, "round-trip").await;
    rec.version = 0;
    assert_eq!(back, rec, "round trip: record read back differs");
    assert_eq!(back.history.len(), 10, "round trip: history");
    assert_eq!(back.attempts.len(), 3, "round trip: attempts");

    let plain = record("plain", "+79001112233", None);
    insert_new(store, &plain).await;
    assert_eq!(
        get_some(store, "plain").await,
        plain,
        "round trip: plain record"
    );

    assert_eq!(
        store.get(&id("nobody")).await.expect("get unknown"),
        None,
        "get of an unknown id must be None"
    );
}

/// A second insert with the same id stores nothing and returns the stored record (with its
/// current version).
pub async fn idempotent_insert<S: CascadeStore + ?Sized>(store: &S) {
    let first = record("dup", "+79001112233", Some(t(10)));
    insert_new(store, &first).await;

    let mut second = record("dup", "+79005556677", Some(t(1)));
    second.step = 2;
    match store.insert(&second).await.expect("second insert") {
        Inserted::Exists(r) => assert_eq!(*r, first, "Exists must carry the stored record"),
        Inserted::New => panic!("second insert of the same id must return Exists"),
    }
    assert_eq!(
        get_some(store, "dup").await,
        first,
        "second insert changed the record"
    );
    assert_eq!(
        store.count_active().await.expect("count"),
        1,
        "count after dup"
    );
    assert_eq!(
        store.next_wake().await.expect("next_wake"),
        Some(t(10)),
        "the rejected duplicate's timer must not be scheduled"
    );
    assert!(
        store
            .active_by_reply_key("phone:+79005556677")
            .await
            .expect("reply key")
            .is_empty(),
        "the rejected duplicate's reply keys must not be indexed"
    );

    let mut cur = get_some(store, "dup").await;
    cur.step = 1;
    update_ok(store, &cur).await;
    match store.insert(&second).await.expect("third insert") {
        Inserted::Exists(r) => {
            assert_eq!(r.version, 1, "Exists carries the current version");
            assert_eq!(r.step, 1, "Exists carries the current state");
        }
        Inserted::New => panic!("insert after update must return Exists"),
    }
}

/// `update` is a compare-and-swap on `version`: it succeeds at the stored version and bumps it,
/// fails with `Conflict` at a stale version (changing nothing), and `NotFound` for an unknown id.
pub async fn update_compare_and_swap<S: CascadeStore + ?Sized>(store: &S) {
    let rec = record("cas", "+79001112233", Some(t(10)));
    insert_new(store, &rec).await;

    let mut v0 = get_some(store, "cas").await;
    assert_eq!(v0.version, 0);
    v0.step = 1;
    v0.history.push(HistoryEntry {
        at: t(3),
        kind: HistoryKind::Advanced {
            from: 0,
            to: Some(1),
        },
    });
    assert_eq!(
        update_ok(store, &v0).await,
        1,
        "first update returns version 1"
    );
    let v1 = get_some(store, "cas").await;
    assert_eq!(v1.version, 1, "stored version after one update");
    assert_eq!(v1.step, 1);
    assert_eq!(v1.history.len(), 2);

    // A writer still holding version 0 loses, and nothing of its record is kept.
    let mut stale = rec.clone();
    stale.step = 3;
    stale.wake_at = Some(t(1));
    stale.attempts.push(sent_attempt(3, "sms", "sms-stale"));
    match store.update(&stale).await {
        Err(StoreError::Conflict(cid)) => assert_eq!(cid, id("cas")),
        other => panic!("stale update must fail with Conflict, got {other:?}"),
    }
    assert_eq!(
        get_some(store, "cas").await,
        v1,
        "a conflict changed the record"
    );
    assert_eq!(
        store.next_wake().await.expect("next_wake"),
        Some(t(10)),
        "a conflict changed the timer"
    );
    assert_eq!(
        store
            .find_message(&ProviderMessageId::new("sms-stale"))
            .await
            .expect("find"),
        None,
        "a conflict indexed a provider message id"
    );

    // A version from the future is a conflict too.
    let mut ahead = v1.clone();
    ahead.version = 5;
    assert!(
        matches!(store.update(&ahead).await, Err(StoreError::Conflict(_))),
        "update at a version ahead of the stored one must conflict"
    );

    let mut next = v1.clone();
    next.rate_limit_waits = 2;
    assert_eq!(
        update_ok(store, &next).await,
        2,
        "second update returns version 2"
    );
    let v2 = get_some(store, "cas").await;
    assert_eq!(v2.version, 2);
    assert_eq!(v2.rate_limit_waits, 2);

    let ghost = record("ghost", "+79001112233", None);
    match store.update(&ghost).await {
        Err(StoreError::NotFound(gid)) => assert_eq!(gid, id("ghost")),
        other => panic!("update of an unknown id must fail with NotFound, got {other:?}"),
    }
    assert_eq!(store.get(&id("ghost")).await.expect("get"), None);
}

/// Of several writers holding the same version, exactly one wins.
pub async fn concurrent_updates_one_winner<S: CascadeStore + ?Sized>(store: &S) {
    let rec = record("race", "+79001112233", Some(t(10)));
    insert_new(store, &rec).await;
    let mk = |step: usize| {
        let mut r = rec.clone();
        r.step = step;
        r
    };
    let (a, b, c, d, e, f, g, h) = (mk(1), mk(2), mk(3), mk(4), mk(5), mk(6), mk(7), mk(8));
    let results = tokio::join!(
        store.update(&a),
        store.update(&b),
        store.update(&c),
        store.update(&d),
        store.update(&e),
        store.update(&f),
        store.update(&g),
        store.update(&h),
    );
    let results = [
        results.0, results.1, results.2, results.3, results.4, results.5, results.6, results.7,
    ];
    let mut winner = None;
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => {
                assert_eq!(*v, 1, "the winner gets version 1");
                assert!(winner.is_none(), "two writers won the same version");
                winner = Some(i + 1);
            }
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("racing update failed with {e}, not Conflict"),
        }
    }
    let winner = winner.expect("no racing update won");
    let stored = get_some(store, "race").await;
    assert_eq!(stored.version, 1);
    assert_eq!(stored.step, winner, "the stored record is the winner's");
}

/// Timers: `claim_due` returns only due records, earliest first, up to `limit`; a claimed record
/// is not returned again until its lease runs out or it is updated; `update` clears the claim and
/// reschedules; `next_wake` is the earliest timer, counting a claim as a timer at its lease end.
pub async fn timers<S: CascadeStore + ?Sized>(store: &S) {
    assert_eq!(
        store.next_wake().await.expect("next_wake"),
        None,
        "empty store"
    );
    assert!(claim(store, t(1_000), 10).await.is_empty(), "empty store");

    for (rid, wake) in [
        ("c", Some(t(3))),
        ("a", Some(t(1))),
        ("b", Some(t(2))),
        ("never", None),
        ("later", Some(t(10))),
    ] {
        insert_new(store, &record(rid, "+79001112233", wake)).await;
    }
    assert_eq!(store.next_wake().await.expect("next_wake"), Some(t(1)));

    assert!(
        claim(store, t(0), 10).await.is_empty(),
        "nothing is due yet"
    );
    assert!(
        claim(store, t(5), 0).await.is_empty(),
        "limit 0 claims nothing"
    );
    assert_eq!(
        claim(store, t(1), 10).await,
        vec![id("a")],
        "wake_at == now is due"
    );
    assert_eq!(
        claim(store, t(5), 1).await,
        vec![id("b")],
        "earliest first, up to the limit"
    );
    assert_eq!(
        claim(store, t(5), 10).await,
        vec![id("c")],
        "the rest of the due ones"
    );
    assert!(
        claim(store, t(6), 10).await.is_empty(),
        "claimed records are not returned again while their lease runs"
    );
    // Claims count as timers at their lease end: a(1+30), b(5+30), c(5+30), later(10).
    assert_eq!(store.next_wake().await.expect("next_wake"), Some(t(10)));
    assert_eq!(claim(store, t(10), 10).await, vec![id("later")]);
    assert_eq!(
        store.next_wake().await.expect("next_wake"),
        Some(t(31)),
        "next_wake counts a claim at its lease end"
    );

    // Updating a claimed record clears its claim and sets its new timer.
    let mut b = get_some(store, "b").await;
    b.wake_at = Some(t(100));
    update_ok(store, &b).await;
    // Updating to no timer: never due again.
    let mut later = get_some(store, "later").await;
    later.wake_at = None;
    update_ok(store, &later).await;

    // a's lease ended at 31, c's at 35; b is now due at 100, later never.
    assert_eq!(
        claim(store, t(31), 10).await,
        vec![id("a")],
        "a lease ran out"
    );
    assert_eq!(
        claim(store, t(40), 10).await,
        vec![id("c")],
        "c lease ran out"
    );
    assert_eq!(store.next_wake().await.expect("next_wake"), Some(t(61)));
    assert!(claim(store, t(60), 10).await.is_empty());
    assert_eq!(
        claim(store, t(1_000), 10).await,
        vec![id("a"), id("c"), id("b")],
        "ordered by timer (lease ends 61, 70, then wake 100)"
    );

    // Updating an unclaimed record moves its timer, later or earlier (a, b, c: leases end 1030).
    let mut never = get_some(store, "never").await;
    never.wake_at = Some(t(2_000));
    update_ok(store, &never).await;
    assert!(claim(store, t(1_029), 10).await.is_empty());
    never.version += 1;
    never.wake_at = Some(t(1_010));
    update_ok(store, &never).await;
    assert_eq!(claim(store, t(1_029), 10).await, vec![id("never")]);
}

/// Records due at the same instant come out in id order.
pub async fn timer_ties<S: CascadeStore + ?Sized>(store: &S) {
    for rid in ["tie-2", "tie-3", "tie-1"] {
        insert_new(store, &record(rid, "+79001112233", Some(t(5_000)))).await;
    }
    insert_new(store, &record("tie-0", "+79001112233", Some(t(5_001)))).await;
    assert_eq!(
        claim(store, t(5_001), 2).await,
        vec![id("tie-1"), id("tie-2")]
    );
    assert_eq!(
        claim(store, t(5_001), 5).await,
        vec![id("tie-3"), id("tie-0")]
    );
}

/// Two claimers at once never get the same record, and between them get every due one.
pub async fn concurrent_claims_disjoint<S: CascadeStore + ?Sized>(store: &S) {
    let n = 60;
    for i in 0..n {
        insert_new(
            store,
            &record(&format!("due-{i:03}"), "+79001112233", Some(t(i))),
        )
        .await;
    }
    let (a, b, c) = tokio::join!(
        store.claim_due(t(1_000), 25, LEASE),
        store.claim_due(t(1_000), 25, LEASE),
        store.claim_due(t(1_000), 25, LEASE),
    );
    let mut all: Vec<NotificationId> = [a, b, c]
        .into_iter()
        .flat_map(|r| r.expect("claim_due"))
        .collect();
    assert_eq!(all.len(), n as usize, "every due record claimed once");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n as usize, "a record was claimed twice");
}

/// Provider message ids from attempts are indexed by insert and update, point at the attempt's
/// index, survive later updates, and the first record to index an id keeps it.
pub async fn message_index<S: CascadeStore + ?Sized>(store: &S) {
    let pm = |s: &str| ProviderMessageId::new(s);
    let mut rec = record("msg", "+79001112233", Some(t(10)));
    insert_new(store, &rec).await;
    assert_eq!(
        store.find_message(&pm("wamid.1")).await.expect("find"),
        None
    );

    rec.attempts.push(Attempt {
        provider_message_id: None,
        state: AttemptState::InFlight,
        ..sent_attempt(0, "wa-main", "unused")
    });
    rec.attempts.push(sent_attempt(0, "wa-main", "wamid.1"));
    update_ok(store, &rec).await;
    rec.version += 1;
    assert_eq!(
        store.find_message(&pm("wamid.1")).await.expect("find"),
        Some(MessageRef {
            notification_id: id("msg"),
            attempt: 1,
        }),
        "find_message after update"
    );

    rec.attempts.push(sent_attempt(1, "tg", "tg:1"));
    finish(
        &mut rec,
        Outcome::Delivered {
            step: 1,
            channel: ChannelId::new("tg"),
            evidence: Evidence::Delivered,
            late: false,
        },
    );
    update_ok(store, &rec).await;
    assert_eq!(
        store.find_message(&pm("tg:1")).await.expect("find"),
        Some(MessageRef {
            notification_id: id("msg"),
            attempt: 2,
        })
    );
    assert_eq!(
        store.find_message(&pm("wamid.1")).await.expect("find"),
        Some(MessageRef {
            notification_id: id("msg"),
            attempt: 1,
        }),
        "entries stay after later updates and after the cascade ends"
    );

    let mut inserted = record("msg-2", "+79001112233", None);
    inserted.attempts.push(sent_attempt(0, "sms", "sms-77"));
    inserted.attempts.push(sent_attempt(0, "sms", "wamid.1"));
    insert_new(store, &inserted).await;
    assert_eq!(
        store.find_message(&pm("sms-77")).await.expect("find"),
        Some(MessageRef {
            notification_id: id("msg-2"),
            attempt: 0,
        }),
        "insert indexes provider message ids"
    );
    assert_eq!(
        store
            .find_message(&pm("wamid.1"))
            .await
            .expect("find")
            .map(|m| m.notification_id),
        Some(id("msg")),
        "the first record to index an id keeps it"
    );
}

/// Reply keys route an inbound message to the person's unfinished cascades only.
pub async fn reply_keys<S: CascadeStore + ?Sized>(store: &S) {
    let phone = "+79123456789";
    let key = "phone:+79123456789";
    let a = record("reply-a", phone, Some(t(10)));
    let mut b = record("reply-b", phone, Some(t(10)));
    b.notification = Arc::new(Notification {
        recipient: b
            .notification
            .recipient
            .clone()
            .address(Address::Telegram(4242)),
        ..(*b.notification).clone()
    });
    let mut done = record("reply-done", phone, None);
    finish(&mut done, Outcome::Exhausted);
    let other = record("reply-other", "+79990001122", Some(t(10)));
    for r in [&a, &b, &done, &other] {
        insert_new(store, r).await;
    }

    let by = |k: &'static str| async move {
        sorted(
            store
                .active_by_reply_key(k)
                .await
                .unwrap_or_else(|e| panic!("active_by_reply_key({k}): {e}")),
        )
    };
    assert_eq!(
        by(key).await,
        vec![id("reply-a"), id("reply-b")],
        "active records by phone key, not finished ones"
    );
    // No `wa:` key is derived from the phone: the engine looks WhatsApp senders up by phone.
    assert!(by("wa:79123456789").await.is_empty());
    assert_eq!(by("tg:4242").await, vec![id("reply-b")]);
    assert_eq!(by("contact:contact-reply-a").await, vec![id("reply-a")]);
    assert_eq!(
        by("contact:contact-reply-done").await,
        Vec::<NotificationId>::new()
    );
    assert_eq!(by("phone:+70000000000").await, Vec::<NotificationId>::new());

    // Finishing removes the keys; an ordinary update keeps them.
    let mut a1 = get_some(store, "reply-a").await;
    a1.step = 1;
    update_ok(store, &a1).await;
    assert_eq!(by(key).await, vec![id("reply-a"), id("reply-b")]);
    a1.version += 1;
    finish(
        &mut a1,
        Outcome::Replied {
            channel: ChannelKind::Sms,
        },
    );
    update_ok(store, &a1).await;
    assert_eq!(
        by(key).await,
        vec![id("reply-b")],
        "finished records leave the index"
    );
    assert_eq!(
        by("contact:contact-reply-a").await,
        Vec::<NotificationId>::new()
    );

    // A finished record brought back to life is reachable again.
    let mut d = get_some(store, "reply-done").await;
    d.phase = Phase::Ready;
    update_ok(store, &d).await;
    assert_eq!(by(key).await, vec![id("reply-b"), id("reply-done")]);

    // A phone given both as the recipient's phone and as an address is one key: the cascade
    // is found once, and finishing it leaves nothing behind under that key.
    let twice_phone = "+79005556677";
    let mut twice = record("reply-twice", twice_phone, Some(t(10)));
    let phone = messaging_core::Phone::parse(twice_phone).expect("valid phone");
    twice.notification = Arc::new(Notification {
        recipient: twice
            .notification
            .recipient
            .clone()
            .address(Address::Phone(phone)),
        ..(*twice.notification).clone()
    });
    insert_new(store, &twice).await;
    assert_eq!(by("phone:+79005556677").await, vec![id("reply-twice")]);
    let mut twice = get_some(store, "reply-twice").await;
    finish(&mut twice, Outcome::Cancelled);
    update_ok(store, &twice).await;
    assert!(by("phone:+79005556677").await.is_empty());
}

/// `count_active` counts unfinished records through inserts, updates that finish or revive a
/// record, duplicate inserts and conflicts.
pub async fn count_active<S: CascadeStore + ?Sized>(store: &S) {
    let count = || async { store.count_active().await.expect("count_active") };
    assert_eq!(count().await, 0);
    let mut done = record("n-done", "+79001112233", None);
    finish(&mut done, Outcome::Cancelled);
    for r in [
        record("n-1", "+79001112233", Some(t(1))),
        record("n-2", "+79001112233", None),
        done.clone(),
    ] {
        insert_new(store, &r).await;
    }
    assert_eq!(count().await, 2, "two active, one finished at insert");
    assert!(matches!(
        store.insert(&record("n-1", "+79001112233", None)).await,
        Ok(Inserted::Exists(_))
    ));
    assert_eq!(count().await, 2, "duplicate insert");

    let mut n1 = get_some(store, "n-1").await;
    finish(&mut n1, Outcome::Expired);
    update_ok(store, &n1).await;
    assert_eq!(count().await, 1, "finishing");
    n1.version += 1;
    update_ok(store, &n1).await;
    assert_eq!(count().await, 1, "updating a finished record");
    let mut stale = n1.clone();
    stale.phase = Phase::Ready;
    stale.version = 0;
    assert!(store.update(&stale).await.is_err());
    assert_eq!(count().await, 1, "a conflict");
    let mut d = done.clone();
    d.phase = Phase::Sending { attempt: 0 };
    update_ok(store, &d).await;
    assert_eq!(count().await, 2, "reviving a finished record");
}

/// The WhatsApp window store keeps the latest inbound time per channel and address, and forgets
/// it on close.
pub async fn windows<S: WindowStore + ?Sized>(store: &S) {
    let wa = ChannelId::new("wa-main");
    let wa2 = ChannelId::new("wa-bulk");
    let key = "wa:79123456789";
    let last = |c: &ChannelId, k: &'static str| {
        let c = c.clone();
        async move {
            store
                .last_inbound(&c, k)
                .await
                .unwrap_or_else(|e| panic!("last_inbound: {e}"))
        }
    };
    assert_eq!(last(&wa, key).await, None);
    store
        .record_inbound(&wa, key, t(100))
        .await
        .expect("record");
    assert_eq!(last(&wa, key).await, Some(t(100)));
    store.record_inbound(&wa, key, t(50)).await.expect("record");
    assert_eq!(
        last(&wa, key).await,
        Some(t(100)),
        "an older message keeps the latest"
    );
    let precise = t(200) + chrono::Duration::microseconds(123_456);
    store
        .record_inbound(&wa, key, precise)
        .await
        .expect("record");
    assert_eq!(
        last(&wa, key).await,
        Some(precise),
        "a newer one replaces it, exactly"
    );
    assert_eq!(last(&wa2, key).await, None, "windows are per channel");
    assert_eq!(last(&wa, "wa:70000000000").await, None, "and per address");
    store
        .record_inbound(&wa2, key, t(10))
        .await
        .expect("record");

    store.close(&wa, key).await.expect("close");
    assert_eq!(last(&wa, key).await, None, "close forgets the window");
    assert_eq!(last(&wa2, key).await, Some(t(10)), "close is per channel");
    store.close(&wa, key).await.expect("closing twice is fine");
    store.record_inbound(&wa, key, t(10)).await.expect("record");
    assert_eq!(
        last(&wa, key).await,
        Some(t(10)),
        "after close, any newer message opens it again"
    );
}

/// `purge_finished` deletes finished cascades that ended before the cutoff (by their last
/// history entry), at most `limit` per call, with their message-index entries; it never
/// deletes an unfinished cascade, one that ended at or after the cutoff, or an index entry
/// that another cascade owns.
pub async fn purge_finished<S: CascadeStore + ?Sized>(store: &S) {
    let pm = |s: &str| ProviderMessageId::new(s);
    let ended = |rid: &str, pmid: &str, at: i64| {
        let mut rec = record(rid, "+79001112233", Some(t(5)));
        rec.attempts.push(sent_attempt(0, "sms", pmid));
        rec.history.push(HistoryEntry {
            at: t(at),
            kind: HistoryKind::Delivered {
                step: 0,
                channel: ChannelId::new("sms"),
                evidence: Evidence::Delivered,
            },
        });
        finish(
            &mut rec,
            Outcome::Delivered {
                step: 0,
                channel: ChannelId::new("sms"),
                evidence: Evidence::Delivered,
                late: false,
            },
        );
        rec
    };
    // Three ended long ago, one ended at the cutoff, one is still running; "shared" is a
    // provider id first indexed by the running cascade, then seen again by an old one.
    for (rid, pmid, at) in [
        ("old-1", "m-old-1", 100),
        ("old-2", "m-old-2", 200),
        ("old-3", "m-old-3", 300),
        ("at-cutoff", "m-cutoff", 1_000),
    ] {
        insert_new(store, &ended(rid, pmid, at)).await;
    }
    let mut running = record("running", "+79001112233", Some(t(5_000)));
    running.attempts.push(sent_attempt(0, "wa-main", "shared"));
    insert_new(store, &running).await;
    let mut old_shared = ended("old-shared", "m-old-4", 400);
    old_shared.attempts.push(sent_attempt(1, "sms", "shared"));
    insert_new(store, &old_shared).await;
    // A record that was active when inserted and finished by an update.
    let mut updated = record("old-updated", "+79001112233", Some(t(5)));
    insert_new(store, &updated).await;
    updated.attempts.push(sent_attempt(0, "tg", "m-updated"));
    updated.history.push(HistoryEntry {
        at: t(500),
        kind: HistoryKind::Exhausted,
    });
    finish(&mut updated, Outcome::Exhausted);
    update_ok(store, &updated).await;

    let purge = |limit| store.purge_finished(t(1_000), limit);
    let first = purge(2).await.expect("purge_finished");
    assert_eq!(first, 2, "purge_finished deletes at most `limit` cascades");
    let rest = purge(100).await.expect("purge_finished");
    assert_eq!(
        rest, 3,
        "then the other cascades that ended before the cutoff"
    );
    assert_eq!(
        purge(100).await.expect("purge_finished"),
        0,
        "nothing is left to purge"
    );
    for rid in ["old-1", "old-2", "old-3", "old-shared", "old-updated"] {
        assert_eq!(
            store.get(&id(rid)).await.expect("get"),
            None,
            "{rid} ended before the cutoff and is purged"
        );
    }
    for pmid in ["m-old-1", "m-old-2", "m-old-3", "m-old-4", "m-updated"] {
        assert_eq!(
            store.find_message(&pm(pmid)).await.expect("find"),
            None,
            "the index entry {pmid} of a purged cascade is purged too"
        );
    }
    get_some(store, "at-cutoff").await;
    get_some(store, "running").await;
    assert_eq!(
        store
            .find_message(&pm("shared"))
            .await
            .expect("find")
            .map(|m| m.notification_id),
        Some(id("running")),
        "an index entry owned by a kept cascade stays"
    );
    assert_eq!(
        store.find_message(&pm("m-cutoff")).await.expect("find"),
        Some(MessageRef {
            notification_id: id("at-cutoff"),
            attempt: 0,
        })
    );
    assert_eq!(store.count_active().await.expect("count"), 1);
    assert_eq!(
        claim(store, t(10_000), 10).await,
        vec![id("running")],
        "the running cascade keeps its timer"
    );
    // A purged id is free again: submitting it anew is a new cascade.
    insert_new(store, &record("old-1", "+79001112233", None)).await;
}

/// Runs every check, each on a fresh store from `make`.
///
/// # Panics
///
/// When a store does not behave like the reference.
pub async fn run_all<S, F, Fut>(mut make: F)
where
    S: CascadeStore + WindowStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    insert_get_round_trip(&make().await).await;
    idempotent_insert(&make().await).await;
    update_compare_and_swap(&make().await).await;
    concurrent_updates_one_winner(&make().await).await;
    timers(&make().await).await;
    timer_ties(&make().await).await;
    concurrent_claims_disjoint(&make().await).await;
    message_index(&make().await).await;
    reply_keys(&make().await).await;
    count_active(&make().await).await;
    purge_finished(&make().await).await;
    windows(&make().await).await;
}

// ---------------------------------------------------------------------------------------------
// Reports.

/// The UTC day of [`t`]`(0)` plus `days`.
fn day(days: u64) -> NaiveDate {
    t(0).date_naive()
        .checked_add_days(chrono::Days::new(days))
        .unwrap_or_default()
}

/// `a`, accepted at `t(sent)` with a cost estimate.
fn costed(mut a: Attempt, amount: f64, currency: &str, sent: i64) -> Attempt {
    a.started_at = t(sent - 1);
    a.sent_at = Some(t(sent));
    a.cost = Some(Cost::new(amount, currency));
    a
}

fn step_started(rec: &mut CascadeRecord, step: usize, channel: &str, at: i64) {
    rec.step = step;
    rec.history.push(HistoryEntry {
        at: t(at),
        kind: HistoryKind::StepStarted {
            step,
            channel: ChannelId::new(channel),
        },
    });
}

/// A running record waiting on its first attempt, over `channel`, until `window_end`.
fn waiting(rid: &str, channel: &str, window_end: i64, wake: i64) -> CascadeRecord {
    let mut rec = record(rid, "+79001112233", Some(t(wake)));
    step_started(&mut rec, 0, channel, 1);
    rec.attempts
        .push(sent_attempt(0, channel, &format!("m-{rid}")));
    rec.phase = Phase::Waiting {
        attempt: 0,
        wait_for: Evidence::Delivered,
        window_end: t(window_end),
    };
    rec
}

/// `rec`, finished with `outcome` by a history entry at `t(at)`.
fn ended_at(mut rec: CascadeRecord, outcome: Outcome, at: i64) -> CascadeRecord {
    let kind = match &outcome {
        Outcome::Delivered {
            step,
            channel,
            evidence,
            ..
        } => HistoryKind::Delivered {
            step: *step,
            channel: channel.clone(),
            evidence: *evidence,
        },
        Outcome::Replied { channel } => HistoryKind::Replied { channel: *channel },
        Outcome::Unconfirmed { .. } => HistoryKind::Unconfirmed,
        Outcome::Exhausted => HistoryKind::Exhausted,
        Outcome::Expired => HistoryKind::Expired,
        _ => HistoryKind::Cancelled,
    };
    rec.history.push(HistoryEntry { at: t(at), kind });
    finish(&mut rec, outcome);
    rec
}

fn delivered_on(channel: &str, step: usize) -> Outcome {
    Outcome::Delivered {
        step,
        channel: ChannelId::new(channel),
        evidence: Evidence::Delivered,
        late: false,
    }
}

fn with_deadline(mut rec: CascadeRecord, deadline: i64) -> CascadeRecord {
    rec.notification = Arc::new((*rec.notification).clone().deadline(t(deadline)));
    rec
}

/// The scenario every report check reads, written through `insert`, `update` and
/// `claim_due`. At `t(1_000)`, with a grace of 60 s, seven cascades are running and four of
/// them are stuck; eight ended between `t(100)` and `t(90_100)`; eight sends have a cost on three
/// days.
///
/// | id | state | channel | timer | deadline | cost |
/// |---|---|---|---|---|---|
/// | `claimed` | ready | – | wake 20, claimed at 950 (lease to 980) | – | – |
/// | `ready-new` | ready | – | 10: stuck | – | – |
/// | `ready-deferred` | ready, step 1 | sms | 960 | – | – |
/// | `sending` | sending | wa-main | 40: stuck | – | – |
/// | `waiting-wa` | waiting (by an update) | wa-main | 3 600 | window 3 600 | 0.5 EUR, day 0 |
/// | `waiting-deadline` | waiting | tg | 5 000 | deadline 100: stuck | – |
/// | `waiting-window` | waiting | tg | 5 000 | window 500: stuck | – |
/// | `d-wa-1` | delivered at 1 200 | wa-main | | | 0.5 EUR, day 0 |
/// | `d-wa-2` | delivered at 1 300 (by two updates) | wa-main | | | 0.25 EUR, day 0 |
/// | `d-sms` | delivered at 1 500 | sms | | | 2.5 RUB, day 0 |
/// | `replied` | replied at 1 250 | telegram | | | – |
/// | `unconfirmed` | unconfirmed at 1 800 | sms | | | 1.25 RUB and 0.125 USD, day 0 |
/// | `exhausted` | exhausted at 1 100 | – | | | – |
/// | `expired` | expired at 1 000 | – | | deadline 900 | – |
/// | `old` | delivered at 100 | wa-main | | | 0.5 EUR, day −1 |
/// | `late` | cancelled at 2 000 | – | | | – |
/// | `next-day` | delivered at 90 100 | sms | | | 2.5 RUB, day 1 |
pub async fn report_scenario<S: CascadeStore + ?Sized>(store: &S) {
    // Claimed while it is the only one due: its timer becomes the end of the lease.
    insert_new(store, &record("claimed", "+79001112233", Some(t(20)))).await;
    assert_eq!(
        claim(store, t(950), 10).await,
        vec![id("claimed")],
        "report scenario: claim"
    );
    insert_new(store, &record("ready-new", "+79001112233", Some(t(10)))).await;
    let mut deferred = record("ready-deferred", "+79001112233", Some(t(960)));
    step_started(&mut deferred, 0, "wa-main", 1);
    step_started(&mut deferred, 1, "sms", 50);
    insert_new(store, &deferred).await;
    let mut sending = record("sending", "+79001112233", Some(t(40)));
    step_started(&mut sending, 0, "wa-main", 1);
    let mut in_flight = sent_attempt(0, "wa-main", "unused");
    in_flight.sent_at = None;
    in_flight.provider_message_id = None;
    in_flight.state = AttemptState::InFlight;
    sending.attempts.push(in_flight);
    sending.phase = Phase::Sending { attempt: 0 };
    insert_new(store, &sending).await;
    // Ready when inserted, waiting after an update.
    insert_new(store, &record("waiting-wa", "+79001112233", Some(t(1)))).await;
    let mut waiting_wa = waiting("waiting-wa", "wa-main", 3_600, 3_600);
    waiting_wa.attempts[0] = costed(waiting_wa.attempts[0].clone(), 0.5, "EUR", 2);
    update_ok(store, &waiting_wa).await;
    insert_new(
        store,
        &with_deadline(waiting("waiting-deadline", "tg", 3_600, 5_000), 100),
    )
    .await;
    insert_new(store, &waiting("waiting-window", "tg", 500, 5_000)).await;

    let mut d_wa_1 = waiting("d-wa-1", "wa-main", 3_600, 3_600);
    d_wa_1.attempts[0] = costed(d_wa_1.attempts[0].clone(), 0.5, "EUR", 1_100);
    insert_new(store, &ended_at(d_wa_1, delivered_on("wa-main", 0), 1_200)).await;
    // Running, then waiting with a cost, then delivered: the cost counts once.
    insert_new(store, &record("d-wa-2", "+79001112233", Some(t(1_150)))).await;
    let mut d_wa_2 = waiting("d-wa-2", "wa-main", 3_600, 3_600);
    d_wa_2.attempts[0] = costed(d_wa_2.attempts[0].clone(), 0.25, "EUR", 1_250);
    d_wa_2.version = update_ok(store, &d_wa_2).await;
    update_ok(store, &ended_at(d_wa_2, delivered_on("wa-main", 0), 1_300)).await;
    let mut d_sms = record("d-sms", "+79001112233", None);
    let mut failed = sent_attempt(0, "wa-main", "unused");
    failed.sent_at = None;
    failed.provider_message_id = None;
    failed.state = AttemptState::Failed {
        kind: ErrorKind::Unreachable,
        code: None,
        message: "not on WhatsApp".into(),
    };
    d_sms.attempts.push(failed);
    d_sms
        .attempts
        .push(costed(sent_attempt(3, "sms", "m-d-sms"), 2.5, "RUB", 1_400));
    insert_new(store, &ended_at(d_sms, delivered_on("sms", 3), 1_500)).await;
    let mut replied = waiting("replied", "tg", 3_600, 3_600);
    replied.attempts[0].sent_at = Some(t(1_200));
    insert_new(
        store,
        &ended_at(
            replied,
            Outcome::Replied {
                channel: ChannelKind::Telegram,
            },
            1_250,
        ),
    )
    .await;
    let mut unconfirmed = record("unconfirmed", "+79001112233", None);
    unconfirmed.attempts.push(costed(
        sent_attempt(3, "sms", "m-unc-1"),
        1.25,
        "RUB",
        1_700,
    ));
    unconfirmed.attempts.push(costed(
        sent_attempt(3, "sms", "m-unc-2"),
        0.125,
        "USD",
        1_750,
    ));
    insert_new(
        store,
        &ended_at(
            unconfirmed,
            Outcome::Unconfirmed {
                step: 3,
                channel: ChannelId::new("sms"),
            },
            1_800,
        ),
    )
    .await;
    insert_new(
        store,
        &ended_at(
            record("exhausted", "+79001112233", None),
            Outcome::Exhausted,
            1_100,
        ),
    )
    .await;
    insert_new(
        store,
        &ended_at(
            with_deadline(record("expired", "+79001112233", None), 900),
            Outcome::Expired,
            1_000,
        ),
    )
    .await;
    let mut old = record("old", "+79001112233", None);
    old.attempts.push(costed(
        sent_attempt(0, "wa-main", "m-old"),
        0.5,
        "EUR",
        -100,
    ));
    insert_new(store, &ended_at(old, delivered_on("wa-main", 0), 100)).await;
    insert_new(
        store,
        &ended_at(
            record("late", "+79001112233", None),
            Outcome::Cancelled,
            2_000,
        ),
    )
    .await;
    let mut next_day = record("next-day", "+79001112233", None);
    next_day
        .attempts
        .push(costed(sent_attempt(3, "sms", "m-next"), 2.5, "RUB", 90_000));
    insert_new(store, &ended_at(next_day, delivered_on("sms", 3), 90_100)).await;
}

fn running_count(phase: &str, channel: Option<&str>, count: u64) -> RunningCount {
    RunningCount {
        phase: phase.into(),
        channel: channel.map(ChannelId::new),
        count,
    }
}

fn ended_count(outcome: &str, channel: Option<&str>, count: u64) -> EndedCount {
    EndedCount {
        outcome: outcome.into(),
        channel: channel.map(str::to_owned),
        count,
    }
}

fn daily(channel: &str, d: NaiveDate, currency: &str, amount: f64, sends: u64) -> DailyCost {
    DailyCost {
        channel: ChannelId::new(channel),
        day: d,
        currency: currency.into(),
        amount,
        sends,
    }
}

/// `running` counts unfinished cascades by phase and by the current step's channel (the
/// attempt's, or the last `step_started` of the step), in order; finished ones, including one
/// that was running when inserted, are not counted.
pub async fn reports_running<S: CascadeStore + CascadeReports + ?Sized>(store: &S) {
    assert_eq!(
        store.running().await.expect("running"),
        Vec::<RunningCount>::new(),
        "an empty store runs nothing"
    );
    report_scenario(store).await;
    assert_eq!(
        store.running().await.expect("running"),
        vec![
            running_count("ready", None, 2),
            running_count("ready", Some("sms"), 1),
            running_count("sending", Some("wa-main"), 1),
            running_count("waiting", Some("tg"), 2),
            running_count("waiting", Some("wa-main"), 1),
        ],
        "running by phase and channel"
    );
}

/// `stuck` lists unfinished cascades whose timer (the lease's end once claimed) or deadline
/// (the notification's, or the end of the window waited in) is more than `grace` before `now`,
/// the longest stuck first, at most `limit`, with the total; finished cascades never.
pub async fn reports_stuck<S: CascadeStore + CascadeReports + ?Sized>(store: &S) {
    report_scenario(store).await;
    let grace = Duration::from_secs(60);
    let stuck = store.stuck(t(1_000), grace, 10).await.expect("stuck");
    let ids: Vec<&str> = stuck
        .oldest
        .iter()
        .map(|s| s.notification_id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["ready-new", "sending", "waiting-deadline", "waiting-window"],
        "stuck at t(1000) with 60 s of grace, the longest stuck first \
         (`claimed` is leased until t(980), `ready-deferred` due at t(960))"
    );
    assert_eq!(stuck.total, 4);
    assert_eq!(
        stuck.oldest[2],
        StuckCascade {
            notification_id: id("waiting-deadline"),
            policy: PolicyId::new("clinic"),
            step: 0,
            phase: "waiting".into(),
            channel: Some(ChannelId::new("tg")),
            created_at: t(0),
            due_at: Some(t(5_000)),
            deadline: Some(t(100)),
            overdue_since: t(100),
        },
        "a cascade past its deadline"
    );
    assert_eq!(
        (stuck.oldest[0].due_at, stuck.oldest[0].deadline),
        (Some(t(10)), None),
        "a cascade whose timer is overdue"
    );
    assert_eq!(
        (stuck.oldest[3].deadline, stuck.oldest[3].overdue_since),
        (Some(t(500)), t(500)),
        "a cascade past the end of the window it waits in"
    );
    let first_two = store.stuck(t(1_000), grace, 2).await.expect("stuck");
    assert_eq!(first_two.total, 4, "the total counts beyond the limit");
    assert_eq!(
        first_two.oldest,
        stuck.oldest[..2],
        "the limit keeps the oldest"
    );
    let none = store
        .stuck(t(1_000), Duration::from_secs(1_000), 10)
        .await
        .expect("stuck");
    assert_eq!(
        (none.total, none.oldest.len()),
        (0, 0),
        "nothing is overdue by more than 1000 s"
    );
    let later = store.stuck(t(10_000), grace, 100).await.expect("stuck");
    assert_eq!(
        later.total, 7,
        "at t(10000) every running cascade is stuck, no finished one"
    );
    assert_eq!(later.oldest.len(), 7);
}

/// `ended_between` counts cascades that ended in `[from, to)` by outcome and the channel that
/// ended them (a channel id, or the kind replied on), in order.
pub async fn reports_ended<S: CascadeStore + CascadeReports + ?Sized>(store: &S) {
    report_scenario(store).await;
    assert_eq!(
        store
            .ended_between(t(1_000), t(2_000))
            .await
            .expect("ended"),
        vec![
            ended_count("delivered", Some("sms"), 1),
            ended_count("delivered", Some("wa-main"), 2),
            ended_count("exhausted", None, 1),
            ended_count("expired", None, 1),
            ended_count("replied", Some("telegram"), 1),
            ended_count("unconfirmed", Some("sms"), 1),
        ],
        "ended in [t(1000), t(2000)): the start included, the end excluded"
    );
    assert_eq!(
        store.ended_between(t(100), t(101)).await.expect("ended"),
        vec![ended_count("delivered", Some("wa-main"), 1)]
    );
    assert_eq!(
        store
            .ended_between(t(2_000), t(1_000))
            .await
            .expect("ended"),
        Vec::<EndedCount>::new(),
        "an empty period"
    );
}

/// `cost_by_channel_day` sums the cost estimates of attempts by channel, UTC day of acceptance
/// and currency over the days asked (both included), in order; an attempt's cost counts once
/// however often its record is updated.
pub async fn reports_cost<S: CascadeStore + CascadeReports + ?Sized>(store: &S) {
    report_scenario(store).await;
    let (d0, d1) = (day(0), day(1));
    assert_eq!(
        store.cost_by_channel_day(d0, d1).await.expect("cost"),
        vec![
            daily("sms", d0, "RUB", 3.75, 2),
            daily("sms", d0, "USD", 0.125, 1),
            daily("sms", d1, "RUB", 2.5, 1),
            daily("wa-main", d0, "EUR", 1.25, 3),
        ],
        "cost of 2030-01-01 and 2030-01-02"
    );
    assert_eq!(
        store.cost_by_channel_day(d1, d1).await.expect("cost"),
        vec![daily("sms", d1, "RUB", 2.5, 1)]
    );
    let eve = t(-1).date_naive();
    assert_eq!(
        store.cost_by_channel_day(eve, eve).await.expect("cost"),
        vec![daily("wa-main", eve, "EUR", 0.5, 1)]
    );
    assert_eq!(
        store.cost_by_channel_day(d1, d0).await.expect("cost"),
        Vec::<DailyCost>::new(),
        "no days"
    );
}

/// Purged cascades leave the reports: their outcomes and their costs.
pub async fn reports_after_purge<S: CascadeStore + CascadeReports + ?Sized>(store: &S) {
    report_scenario(store).await;
    assert_eq!(
        store.purge_finished(t(1_150), 100).await.expect("purge"),
        3,
        "old, expired and exhausted"
    );
    assert_eq!(
        store.ended_between(t(0), t(2_000)).await.expect("ended"),
        vec![
            ended_count("delivered", Some("sms"), 1),
            ended_count("delivered", Some("wa-main"), 2),
            ended_count("replied", Some("telegram"), 1),
            ended_count("unconfirmed", Some("sms"), 1),
        ]
    );
    let eve = t(-1).date_naive();
    assert_eq!(
        store.cost_by_channel_day(eve, eve).await.expect("cost"),
        Vec::<DailyCost>::new(),
        "the cost of a purged cascade is gone"
    );
    assert_eq!(store.running().await.expect("running").len(), 5);
}

/// `report` gathers the four answers with totals.
pub async fn reports_all_at_once<S: CascadeStore + CascadeReports + ?Sized>(store: &S) {
    report_scenario(store).await;
    let q = ReportQuery::at(t(2_000))
        .ended_since(Duration::from_secs(1_000))
        .stuck_grace(Duration::from_secs(60))
        .stuck_limit(3);
    let r = store.report(&q).await.expect("report");
    assert_eq!(r.at, t(2_000));
    assert_eq!(r.running.total, 7);
    assert_eq!(r.running.by_phase_and_channel.len(), 5);
    assert_eq!(r.stuck.grace_secs, 60);
    assert_eq!(
        r.stuck.total, 6,
        "at t(2000) the claim's lease and `ready-deferred`'s timer are overdue too"
    );
    let ids: Vec<&str> = r
        .stuck
        .oldest
        .iter()
        .map(|s| s.notification_id.as_str())
        .collect();
    assert_eq!(ids, ["ready-new", "sending", "waiting-deadline"]);
    assert_eq!(
        (r.ended.from, r.ended.to, r.ended.total),
        (t(1_000), t(2_000), 7)
    );
    assert_eq!(
        (r.cost.first_day, r.cost.last_day),
        (
            day(0)
                .checked_sub_days(chrono::Days::new(6))
                .unwrap_or_default(),
            day(0)
        ),
        "the last seven days by default"
    );
    assert_eq!(r.cost.by_channel_and_day.len(), 4);
    assert_eq!(
        r.cost.total_by_currency,
        vec![
            CurrencyTotal {
                currency: "EUR".into(),
                amount: 1.75,
                sends: 4
            },
            CurrencyTotal {
                currency: "RUB".into(),
                amount: 3.75,
                sends: 2
            },
            CurrencyTotal {
                currency: "USD".into(),
                amount: 0.125,
                sends: 1
            },
        ]
    );
}

/// `list` gives running cascades the next due first and finished ones the latest ended first,
/// filtered by state and channel, at most `limit`.
pub async fn reports_list<S: CascadeStore + CascadeReports + ?Sized>(store: &S) {
    report_scenario(store).await;
    let ids = |v: &[&str]| v.iter().map(|s| id(s)).collect::<Vec<_>>();
    let list = |q: ListQuery| async move { store.list(&q).await.expect("list") };
    assert_eq!(
        list(ListQuery::running(100)).await,
        ids(&[
            "ready-new",
            "sending",
            "ready-deferred",
            "claimed",
            "waiting-wa",
            "waiting-deadline",
            "waiting-window",
        ]),
        "running: the next due first (a claim is due at the end of its lease), ties by id"
    );
    assert_eq!(
        list(ListQuery::finished(100)).await,
        ids(&[
            "next-day",
            "late",
            "unconfirmed",
            "d-sms",
            "d-wa-2",
            "replied",
            "d-wa-1",
            "exhausted",
            "expired",
            "old",
        ]),
        "finished: the latest ended first"
    );
    assert_eq!(
        list(ListQuery::finished(2).state("delivered").channel("wa-main")).await,
        ids(&["d-wa-2", "d-wa-1"]),
        "delivered on wa-main, two of three"
    );
    assert_eq!(
        list(ListQuery::running(10).channel("tg")).await,
        ids(&["waiting-deadline", "waiting-window"])
    );
    assert_eq!(
        list(ListQuery::running(10).state("ready")).await,
        ids(&["ready-new", "ready-deferred", "claimed"])
    );
    assert_eq!(
        list(ListQuery::running(10).state("delivered")).await,
        ids(&[])
    );
    assert_eq!(list(ListQuery::finished(0)).await, ids(&[]));
}

/// Runs every report check, each on a fresh store from `make`.
///
/// # Panics
///
/// When a store does not answer like the reference.
pub async fn run_reports<S, F, Fut>(mut make: F)
where
    S: CascadeStore + CascadeReports,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    reports_running(&make().await).await;
    reports_stuck(&make().await).await;
    reports_ended(&make().await).await;
    reports_cost(&make().await).await;
    reports_after_purge(&make().await).await;
    reports_all_at_once(&make().await).await;
    reports_list(&make().await).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn memory_store_conforms() {
        run_all(|| async { MemoryStore::new() }).await;
    }

    #[tokio::test]
    async fn memory_store_reports_conform() {
        run_reports(|| async { MemoryStore::new() }).await;
    }
}
