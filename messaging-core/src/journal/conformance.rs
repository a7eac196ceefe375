//! The webhook journal conformance suite: the behaviours every [`WebhookJournal`] must show,
//! checked against [`MemoryWebhookJournal`](super::MemoryWebhookJournal) (the reference) and the
//! SQLite and PostgreSQL stores of `messaging-store`.
//!
//! Each check takes a fresh, empty journal and panics, naming the behaviour, when the journal
//! behaves differently. [`run_all`] runs every check, each on a fresh journal from your factory.
//!
//! ```
//! use messaging_core::journal::{MemoryWebhookJournal, conformance};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! conformance::run_all(|| async { MemoryWebhookJournal::new() }).await;
//! # });
//! ```

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::{JournalEntry, JournalId, JournalRecord, WebhookJournal};
use crate::event::{
    ChannelSignal, DeliveryReport, DeliveryStatus, Event, InboundMessage, ProviderError, Signal,
};
use crate::kind::ChannelKind;
use crate::model::{Address, ChannelId};

/// A fixed instant (2030-01-01T00:00:00Z) plus `secs` seconds.
pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .map(|b| b + chrono::Duration::seconds(secs))
        .unwrap_or_default()
}

const LEASE: Duration = Duration::from_secs(60);

/// A delivery report of `id` with `status`, keyed as the webhook router keys it.
pub fn report(id: &str, status: DeliveryStatus) -> JournalRecord {
    let e = Event::Delivery(DeliveryReport::new(ChannelKind::WhatsApp, id, status, t(0)));
    JournalRecord::new(e).key(format!("dlr|test|{id}|{status:?}"))
}

fn provider_message_id(e: &JournalEntry) -> String {
    match &e.event {
        Event::Delivery(d) => d.provider_message_id.as_str().to_owned(),
        Event::Inbound(m) => m
            .provider_message_id
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        Event::Signal(s) => s.signal.name().to_owned(),
    }
}

async fn record<J: WebhookJournal + ?Sized>(
    j: &J,
    records: &[JournalRecord],
    now: DateTime<Utc>,
) -> Vec<bool> {
    j.record(records, now)
        .await
        .unwrap_or_else(|e| panic!("record failed: {e}"))
}

async fn claim<J: WebhookJournal + ?Sized>(
    j: &J,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<JournalEntry> {
    j.claim(now, limit, LEASE)
        .await
        .unwrap_or_else(|e| panic!("claim failed: {e}"))
}

async fn pending<J: WebhookJournal + ?Sized>(j: &J) -> usize {
    j.pending()
        .await
        .unwrap_or_else(|e| panic!("pending failed: {e}"))
}

fn ids(entries: &[JournalEntry]) -> Vec<String> {
    entries.iter().map(provider_message_id).collect()
}

/// An empty journal has nothing pending and nothing to claim; recording nothing is fine.
pub async fn empty_journal<J: WebhookJournal + ?Sized>(j: &J) {
    assert_eq!(pending(j).await, 0, "an empty journal has entries pending");
    assert!(claim(j, t(0), 10).await.is_empty(), "claimed from nothing");
    assert!(
        record(j, &[], t(0)).await.is_empty(),
        "no records, no answers"
    );
    assert_eq!(
        j.purge(t(1_000_000), 100)
            .await
            .unwrap_or_else(|e| panic!("purge failed: {e}")),
        0
    );
}

/// Recorded entries are claimed oldest first (recording order), each once within its lease,
/// with their events, keys, recording time and attempt count; `limit` bounds a claim.
pub async fn claims_in_recording_order<J: WebhookJournal + ?Sized>(j: &J) {
    let first = [
        report("a", DeliveryStatus::Sent),
        report("b", DeliveryStatus::Delivered),
    ];
    assert_eq!(record(j, &first, t(1)).await, [true, true]);
    assert_eq!(
        record(j, &[report("c", DeliveryStatus::Read)], t(2)).await,
        [true]
    );
    assert_eq!(pending(j).await, 3);
    assert!(
        claim(j, t(0), 10).await.is_empty(),
        "an entry is not due before it was recorded"
    );
    assert!(claim(j, t(5), 0).await.is_empty(), "limit 0 claims nothing");

    let got = claim(j, t(5), 2).await;
    assert_eq!(ids(&got), ["a", "b"], "oldest first, at most `limit`");
    assert_eq!(
        got[0].event, first[0].event,
        "the event comes back as recorded"
    );
    assert_eq!(got[0].key, first[0].key, "the key comes back as recorded");
    assert_eq!(got[0].recorded_at, t(1));
    assert_eq!(got[0].attempts, 1, "the first claim is attempt 1");
    assert!(got[0].id < got[1].id, "ids grow in recording order");

    let rest = claim(j, t(5), 10).await;
    assert_eq!(ids(&rest), ["c"], "claimed entries are not claimed again");
    assert!(
        claim(j, t(6), 10).await.is_empty(),
        "nothing left within the leases"
    );
    assert_eq!(pending(j).await, 3, "claimed entries are still pending");
}

/// A key the journal remembers is dropped, in a later call or earlier in the same call;
/// records without a key are always fresh; completing an entry keeps its key; purging it
/// forgets the key.
pub async fn repeated_keys_are_dropped<J: WebhookJournal + ?Sized>(j: &J) {
    let delivered = report("m1", DeliveryStatus::Delivered);
    assert_eq!(
        record(j, std::slice::from_ref(&delivered), t(0)).await,
        [true]
    );
    assert_eq!(
        record(j, std::slice::from_ref(&delivered), t(1)).await,
        [false],
        "a provider's retry is dropped"
    );
    let read = report("m1", DeliveryStatus::Read);
    assert_eq!(
        record(j, &[read.clone(), delivered.clone(), read.clone()], t(2)).await,
        [true, false, false],
        "a new status is news; repeats within one call are dropped"
    );
    let keyless = JournalRecord::new(delivered.event.clone());
    assert_eq!(
        record(j, &[keyless.clone(), keyless], t(3)).await,
        [true, true],
        "records without a key are never repeats"
    );
    assert_eq!(pending(j).await, 4);

    let got = claim(j, t(10), 10).await;
    assert_eq!(got.len(), 4);
    let all: Vec<JournalId> = got.iter().map(|e| e.id).collect();
    j.complete(&all, t(20))
        .await
        .unwrap_or_else(|e| panic!("complete failed: {e}"));
    assert_eq!(pending(j).await, 0);
    assert_eq!(
        record(j, std::slice::from_ref(&delivered), t(30)).await,
        [false],
        "a processed entry's key still drops replays"
    );

    let purged = j
        .purge(t(21), 100)
        .await
        .unwrap_or_else(|e| panic!("purge failed: {e}"));
    assert_eq!(purged, 4, "every entry ended before the cut-off is purged");
    assert_eq!(
        record(j, &[delivered], t(40)).await,
        [true],
        "a purged key is forgotten"
    );
}

/// A claimed entry that is neither completed nor put back (its processor crashed) is claimed
/// again when its lease ends, as a further attempt.
pub async fn expired_leases_are_claimed_again<J: WebhookJournal + ?Sized>(j: &J) {
    record(j, &[report("x", DeliveryStatus::Delivered)], t(0)).await;
    let first = claim(j, t(0), 10).await;
    assert_eq!(first.len(), 1);
    assert!(
        claim(j, t(59), 10).await.is_empty(),
        "claimed again within the lease"
    );
    let again = claim(j, t(60), 10).await;
    assert_eq!(ids(&again), ["x"], "not claimed again after the lease");
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].attempts, 2, "the second claim is attempt 2");
}

/// Completing removes an entry from the pending ones for good; completing twice, or an
/// unknown id, changes nothing.
pub async fn completed_entries_are_done<J: WebhookJournal + ?Sized>(j: &J) {
    record(
        j,
        &[
            report("p", DeliveryStatus::Sent),
            report("q", DeliveryStatus::Sent),
        ],
        t(0),
    )
    .await;
    let got = claim(j, t(0), 10).await;
    let done = |id| async move {
        j.complete(&[id], t(1))
            .await
            .unwrap_or_else(|e| panic!("complete failed: {e}"));
    };
    done(got[0].id).await;
    done(got[0].id).await;
    done(JournalId::new(i64::MAX)).await;
    assert_eq!(pending(j).await, 1, "only the completed entry left");
    let later = claim(j, t(1_000), 10).await;
    assert_eq!(
        ids(&later),
        ["q"],
        "a completed entry is never claimed again"
    );
}

/// A failed attempt put back for a retry is due again at the time given, not before, and keeps
/// counting attempts; giving up ends it for good, and it is purged like a processed one.
pub async fn retries_and_failures<J: WebhookJournal + ?Sized>(j: &J) {
    record(j, &[report("r", DeliveryStatus::Failed)], t(0)).await;
    let got = claim(j, t(0), 10).await;
    let id = got[0].id;
    j.retry(id, t(30), "sink down")
        .await
        .unwrap_or_else(|e| panic!("retry failed: {e}"));
    assert!(claim(j, t(29), 10).await.is_empty(), "retried too early");
    let again = claim(j, t(30), 10).await;
    assert_eq!(again.len(), 1, "due again at the retry time");
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].id, id);

    j.fail(id, t(31), "sink refused it 2 times")
        .await
        .unwrap_or_else(|e| panic!("fail failed: {e}"));
    assert_eq!(pending(j).await, 0, "a failed entry is not pending");
    assert!(
        claim(j, t(10_000), 10).await.is_empty(),
        "a failed entry is never claimed again"
    );
    j.retry(id, t(40), "late")
        .await
        .unwrap_or_else(|e| panic!("retry failed: {e}"));
    assert!(
        claim(j, t(10_000), 10).await.is_empty(),
        "a retry of an ended entry changes nothing"
    );
    assert_eq!(
        record(j, &[report("r", DeliveryStatus::Failed)], t(50)).await,
        [false],
        "a failed entry's key still drops replays"
    );
    let purge = |before, limit| async move {
        j.purge(before, limit)
            .await
            .unwrap_or_else(|e| panic!("purge failed: {e}"))
    };
    assert_eq!(purge(t(31), 10).await, 0, "purged before it ended");
    assert_eq!(purge(t(32), 10).await, 1);
}

/// Purging deletes only ended entries, oldest first, at most `limit`; pending entries stay,
/// even very old ones.
pub async fn purge_keeps_pending_entries<J: WebhookJournal + ?Sized>(j: &J) {
    let recs: Vec<JournalRecord> = (0..5)
        .map(|i| report(&format!("e{i}"), DeliveryStatus::Delivered))
        .collect();
    record(j, &recs, t(0)).await;
    let got = claim(j, t(0), 10).await;
    for (i, e) in got.iter().take(3).enumerate() {
        j.complete(&[e.id], t(10 + i as i64))
            .await
            .unwrap_or_else(|e| panic!("complete failed: {e}"));
    }
    let purge = |before, limit| async move {
        j.purge(before, limit)
            .await
            .unwrap_or_else(|e| panic!("purge failed: {e}"))
    };
    assert_eq!(purge(t(1_000), 2).await, 2, "at most `limit`");
    // The oldest two are gone: their keys are fresh again; the third is not.
    let fresh = record(
        j,
        &[recs[0].clone(), recs[1].clone(), recs[2].clone()],
        t(2_000),
    )
    .await;
    assert_eq!(fresh, [true, true, false], "oldest ended entries go first");
    assert_eq!(purge(t(1_000), 10).await, 1);
    assert_eq!(
        pending(j).await,
        4,
        "pending entries are never purged (2 old, 2 re-recorded)"
    );
}

/// Inbound messages, delivery reports with errors and channel signals come back equal.
pub async fn events_round_trip<J: WebhookJournal + ?Sized>(j: &J) {
    let inbound = InboundMessage::new(
        ChannelKind::Telegram,
        Address::Telegram(42),
        Some("Да, приду 👍 \"ok\" \\ \n".into()),
        t(1),
    )
    .provider_message_id("tg-7")
    .sender_name("Анна");
    let dlr = DeliveryReport::new(ChannelKind::Sms, "771", DeliveryStatus::Failed, t(2))
        .recipient("79123456789")
        .error(ProviderError {
            code: "103".into(),
            message: "no such number".into(),
            kind: None,
        })
        .channel_id(ChannelId::new("sms-main"));
    let signal = ChannelSignal::new(
        ChannelKind::WhatsApp,
        t(3),
        Signal::Quality {
            rating: "RED".into(),
            phone_number: Some("15550000000".into()),
        },
    );
    let events = [
        Event::Inbound(inbound),
        Event::Delivery(dlr),
        Event::Signal(signal),
    ];
    let recs: Vec<JournalRecord> = events
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| JournalRecord::new(e).key(format!("k|{i}|ключ")))
        .collect();
    assert_eq!(record(j, &recs, t(0)).await, [true, true, true]);
    let got = claim(j, t(0), 10).await;
    let back: Vec<Event> = got.into_iter().map(|e| e.event).collect();
    assert_eq!(back, events, "events come back exactly as recorded");
}

/// Concurrent claims never hand out one entry twice, and together they get every entry;
/// concurrent records of one key keep exactly one.
pub async fn concurrent_claims_are_disjoint<J: WebhookJournal + ?Sized>(j: &J) {
    let recs: Vec<JournalRecord> = (0..40)
        .map(|i| report(&format!("c{i}"), DeliveryStatus::Delivered))
        .collect();
    record(j, &recs, t(0)).await;
    let (a, b, c, d) = tokio::join!(
        claim(j, t(1), 15),
        claim(j, t(1), 15),
        claim(j, t(1), 15),
        claim(j, t(1), 15),
    );
    let mut seen = BTreeSet::new();
    for e in a.iter().chain(&b).chain(&c).chain(&d) {
        assert!(seen.insert(e.id), "entry {} claimed twice", e.id);
    }
    assert_eq!(seen.len(), 40, "four claims of 15 get all 40 entries");

    let same = report("dup", DeliveryStatus::Read);
    let (x, y) = tokio::join!(
        record(j, std::slice::from_ref(&same), t(2)),
        record(j, std::slice::from_ref(&same), t(2)),
    );
    let kept = x.iter().chain(&y).filter(|f| **f).count();
    assert_eq!(kept, 1, "one of two concurrent records of a key is kept");
}

/// Runs every check, each on a fresh journal from `make`.
pub async fn run_all<J, F, Fut>(mut make: F)
where
    J: WebhookJournal,
    F: FnMut() -> Fut,
    Fut: Future<Output = J>,
{
    empty_journal(&make().await).await;
    claims_in_recording_order(&make().await).await;
    repeated_keys_are_dropped(&make().await).await;
    expired_leases_are_claimed_again(&make().await).await;
    completed_entries_are_done(&make().await).await;
    retries_and_failures(&make().await).await;
    purge_keeps_pending_entries(&make().await).await;
    events_round_trip(&make().await).await;
    concurrent_claims_are_disjoint(&make().await).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::MemoryWebhookJournal;

    #[tokio::test]
    async fn memory_webhook_journal_conforms() {
        run_all(|| async { MemoryWebhookJournal::new() }).await;
    }
}
