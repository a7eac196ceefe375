//! The webhook journal: verified webhook events written to the store before the provider hears
//! `2xx`, processed from there, and remembered by key so that a provider's retries and replays
//! after a restart are dropped durably.
//!
//! Providers resend a webhook only when it was not acknowledged (Telegram for up to 24 hours,
//! Meta for up to 7 days); after a `200` they never do. An event that is only queued in memory
//! when the `200` goes out is lost if the process dies before it is processed. With a journal the
//! webhook router (`messaging-conversations`, feature `axum`) instead:
//!
//! 1. [`record`](WebhookJournal::record)s the verified events, each with its dedupe key
//!    ([`JournalRecord::key`]: provider, channel and provider message id of an inbound message;
//!    provider message id and status of a delivery report), in one atomic write, and answers
//!    `2xx` only once it returned `Ok`; when the store fails it answers `503` and the provider
//!    retries;
//! 2. [`claim`](WebhookJournal::claim)s pending entries oldest first under a lease, hands each to
//!    the event sinks and marks it [`complete`](WebhookJournal::complete) (the event body is
//!    dropped, the key stays); a sink failure puts it back for a [`retry`](WebhookJournal::retry)
//!    with backoff, and after the last attempt it is marked [`fail`](WebhookJournal::fail)ed with
//!    the reason (and logged). Entries a crashed process had claimed are claimed again when their
//!    lease ends; two instances on one PostgreSQL database never hold the same entry at once;
//! 3. [`purge`](WebhookJournal::purge)s entries that ended before a retention period, which must
//!    outlive the providers' retries (the router keeps 8 days: Meta retries for 7).
//!
//! Processing is at least once: an entry whose sinks ran but whose completion was not yet
//! written when the process died is handed to the sinks again after the restart (one entry per
//! crash with the router's processor, which by default completes each entry before handing the
//! next to the sinks; at most `n` with its `process_concurrency(n)`, which completes the entries
//! whose sinks returned together in one call).
//!
//! | implementation | where |
//! |---|---|
//! | [`MemoryWebhookJournal`] | here: tests, or a process that may lose events on a crash |
//! | `SqliteStore` | `messaging-store`, table `webhook_journal`, written in the same group commits as the engine's writes |
//! | `PostgresStore` | `messaging-store`, table `webhook_journal`, claimed with `FOR UPDATE SKIP LOCKED` |
//!
//! Every implementation passes the same `conformance` suite (feature `testkit`).
//!
//! ```
//! use std::time::Duration;
//! use chrono::Utc;
//! use messaging_core::journal::{JournalRecord, MemoryWebhookJournal, WebhookJournal};
//! use messaging_core::{ChannelKind, DeliveryReport, DeliveryStatus, Event};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let journal = MemoryWebhookJournal::new();
//! let now = Utc::now();
//! let report = Event::Delivery(DeliveryReport::new(
//!     ChannelKind::WhatsApp, "wamid.1", DeliveryStatus::Delivered, now,
//! ));
//! let record = JournalRecord::new(report.clone()).key("dlr|waba|wamid.1|Delivered");
//! // The provider's first call is fresh; its retry is dropped.
//! assert_eq!(journal.record(&[record.clone()], now).await?, [true]);
//! assert_eq!(journal.record(&[record], now).await?, [false]);
//!
//! let claimed = journal.claim(now, 16, Duration::from_secs(60)).await?;
//! assert_eq!(claimed.len(), 1);
//! assert_eq!(claimed[0].event, report);
//! journal.complete(&[claimed[0].id], now).await?;
//! assert_eq!(journal.pending().await?, 0);
//! # Ok::<(), messaging_core::StoreError>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::event::Event;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod conformance;

/// The id a journal gave an entry: increasing in the order entries were recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JournalId(i64);

impl JournalId {
    /// The id a store keeps (a positive `BIGINT`).
    pub fn new(id: i64) -> Self {
        JournalId(id)
    }

    /// The stored number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for JournalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event to record, with the key that makes a repeat of it recognisable.
///
/// ```
/// use chrono::Utc;
/// use messaging_core::journal::JournalRecord;
/// use messaging_core::{ChannelKind, DeliveryReport, DeliveryStatus, Event};
/// let e = Event::Delivery(DeliveryReport::new(
///     ChannelKind::Sms, "771", DeliveryStatus::Delivered, Utc::now(),
/// ));
/// let r = JournalRecord::new(e).key("dlr|smsru|771|Delivered");
/// assert_eq!(r.key.as_deref(), Some("dlr|smsru|771|Delivered"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JournalRecord {
    /// The dedupe key: a second record with a key the journal still remembers is dropped.
    /// `None`: never a repeat.
    pub key: Option<String>,
    /// The verified event.
    pub event: Event,
}

impl JournalRecord {
    /// A record without a key.
    pub fn new(event: Event) -> Self {
        JournalRecord { key: None, event }
    }

    /// Sets the dedupe key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

/// A claimed entry, to hand to the sinks and then [`complete`](WebhookJournal::complete),
/// [`retry`](WebhookJournal::retry) or [`fail`](WebhookJournal::fail).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JournalEntry {
    /// The entry's id.
    pub id: JournalId,
    /// The dedupe key it was recorded with.
    pub key: Option<String>,
    /// The event.
    pub event: Event,
    /// How many times it was claimed, this claim included (1 on the first).
    pub attempts: u32,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

impl JournalEntry {
    /// An entry on its first claim, without a key (for implementations of
    /// [`WebhookJournal`]; set the public fields for the rest).
    pub fn new(id: JournalId, event: Event, recorded_at: DateTime<Utc>) -> Self {
        JournalEntry {
            id,
            key: None,
            event,
            attempts: 1,
            recorded_at,
        }
    }
}

/// Where verified webhook events are kept until processed, and their keys until purged. See the
/// [module docs](self).
///
/// Implementations must give the same answers as [`MemoryWebhookJournal`]; `conformance`
/// (feature `testkit`) checks that. Object safe: use as `Arc<dyn WebhookJournal>`.
#[async_trait]
pub trait WebhookJournal: Send + Sync + fmt::Debug + 'static {
    /// Records `records` at `now`, all or none: each one whose key is absent from the journal
    /// (and from the records before it in `records`) becomes a pending entry, due at once; the
    /// others are dropped. Returns, per record, whether it was fresh. Durable when it returns
    /// `Ok`.
    async fn record(
        &self,
        records: &[JournalRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;

    /// Claims up to `limit` pending entries due at `now`, oldest due first (recording order for
    /// entries never retried): each is not due again until `now + lease`, so another claim
    /// does not return it meanwhile, and its [`attempts`](JournalEntry::attempts) grows by one.
    /// An entry whose event cannot be read back is marked failed instead of returned.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<JournalEntry>, StoreError>;

    /// Marks pending entries processed at `now`: they are never claimed again, their events
    /// are dropped, their keys stay until [`purge`](Self::purge). Unknown or already ended
    /// entries are ignored.
    async fn complete(&self, ids: &[JournalId], now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Puts a pending entry back, due at `at` (a retry with backoff), with the reason it
    /// failed. Unknown or ended entries are ignored.
    async fn retry(&self, id: JournalId, at: DateTime<Utc>, error: &str) -> Result<(), StoreError>;

    /// Gives up on a pending entry at `now`: it is never claimed again and keeps its event and
    /// `error` for inspection until [`purge`](Self::purge). Unknown or ended entries are ignored.
    async fn fail(&self, id: JournalId, now: DateTime<Utc>, error: &str) -> Result<(), StoreError>;

    /// Deletes up to `limit` entries (processed or failed) that ended before `ended_before`,
    /// oldest first, and with them their keys. Pending entries are never purged. Returns how
    /// many were deleted.
    async fn purge(&self, ended_before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError>;

    /// How many entries are pending (claimed or not).
    async fn pending(&self) -> Result<usize, StoreError>;
}

#[async_trait]
impl<T: WebhookJournal + ?Sized> WebhookJournal for Arc<T> {
    async fn record(
        &self,
        records: &[JournalRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        (**self).record(records, now).await
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        (**self).claim(now, limit, lease).await
    }

    async fn complete(&self, ids: &[JournalId], now: DateTime<Utc>) -> Result<(), StoreError> {
        (**self).complete(ids, now).await
    }

    async fn retry(&self, id: JournalId, at: DateTime<Utc>, error: &str) -> Result<(), StoreError> {
        (**self).retry(id, at, error).await
    }

    async fn fail(&self, id: JournalId, now: DateTime<Utc>, error: &str) -> Result<(), StoreError> {
        (**self).fail(id, now, error).await
    }

    async fn purge(&self, ended_before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        (**self).purge(ended_before, limit).await
    }

    async fn pending(&self) -> Result<usize, StoreError> {
        (**self).pending().await
    }
}

/// `at + lease`, saturating at the latest representable instant.
fn after(at: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[derive(Debug)]
struct MemEntry {
    key: Option<String>,
    event: Option<Event>,
    recorded_at: DateTime<Utc>,
    /// `Some` while pending.
    due: Option<DateTime<Utc>>,
    attempts: u32,
    /// `Some` once processed or failed.
    ended: Option<DateTime<Utc>>,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct MemState {
    next_id: i64,
    entries: BTreeMap<i64, MemEntry>,
    keys: HashMap<String, i64>,
}

impl MemState {
    fn pending_mut(&mut self, id: JournalId) -> Option<&mut MemEntry> {
        self.entries.get_mut(&id.0).filter(|e| e.due.is_some())
    }
}

/// The webhook journal in process memory: the reference implementation, for tests and for
/// services that accept losing unprocessed events (and their dedupe keys) on a crash.
/// `messaging-store` keeps it in SQLite or PostgreSQL.
///
/// ```
/// use chrono::Utc;
/// use messaging_core::journal::{MemoryWebhookJournal, WebhookJournal};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let journal = MemoryWebhookJournal::new();
/// assert_eq!(journal.pending().await.unwrap(), 0);
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryWebhookJournal {
    state: Mutex<MemState>,
}

impl MemoryWebhookJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        // No change can panic half-way: a poisoned lock still holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl WebhookJournal for MemoryWebhookJournal {
    async fn record(
        &self,
        records: &[JournalRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut s = self.state();
        let mut fresh = Vec::with_capacity(records.len());
        for r in records {
            if r.key.as_ref().is_some_and(|k| s.keys.contains_key(k)) {
                fresh.push(false);
                continue;
            }
            s.next_id += 1;
            let id = s.next_id;
            if let Some(k) = &r.key {
                s.keys.insert(k.clone(), id);
            }
            s.entries.insert(
                id,
                MemEntry {
                    key: r.key.clone(),
                    event: Some(r.event.clone()),
                    recorded_at: now,
                    due: Some(now),
                    attempts: 0,
                    ended: None,
                    error: None,
                },
            );
            fresh.push(true);
        }
        Ok(fresh)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let mut s = self.state();
        let mut due: Vec<(DateTime<Utc>, i64)> = s
            .entries
            .iter()
            .filter_map(|(id, e)| e.due.filter(|d| *d <= now).map(|d| (d, *id)))
            .collect();
        due.sort_unstable();
        due.truncate(limit);
        let until = after(now, lease);
        let mut out = Vec::with_capacity(due.len());
        for (_, id) in due {
            if let Some(e) = s.entries.get_mut(&id) {
                e.due = Some(until);
                e.attempts = e.attempts.saturating_add(1);
                if let Some(event) = &e.event {
                    out.push(JournalEntry {
                        id: JournalId(id),
                        key: e.key.clone(),
                        event: event.clone(),
                        attempts: e.attempts,
                        recorded_at: e.recorded_at,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn complete(&self, ids: &[JournalId], now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut s = self.state();
        for id in ids {
            if let Some(e) = s.pending_mut(*id) {
                e.due = None;
                e.event = None;
                e.ended = Some(now);
                e.error = None;
            }
        }
        Ok(())
    }

    async fn retry(&self, id: JournalId, at: DateTime<Utc>, error: &str) -> Result<(), StoreError> {
        if let Some(e) = self.state().pending_mut(id) {
            e.due = Some(at);
            e.error = Some(error.to_owned());
        }
        Ok(())
    }

    async fn fail(&self, id: JournalId, now: DateTime<Utc>, error: &str) -> Result<(), StoreError> {
        if let Some(e) = self.state().pending_mut(id) {
            e.due = None;
            e.ended = Some(now);
            e.error = Some(error.to_owned());
        }
        Ok(())
    }

    async fn purge(&self, ended_before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        let mut s = self.state();
        let mut gone: Vec<(DateTime<Utc>, i64)> = s
            .entries
            .iter()
            .filter_map(|(id, e)| e.ended.filter(|t| *t < ended_before).map(|t| (t, *id)))
            .collect();
        gone.sort_unstable();
        gone.truncate(limit);
        for (_, id) in &gone {
            if let Some(e) = s.entries.remove(id)
                && let Some(k) = e.key
            {
                s.keys.remove(&k);
            }
        }
        Ok(gone.len())
    }

    async fn pending(&self) -> Result<usize, StoreError> {
        Ok(self
            .state()
            .entries
            .values()
            .filter(|e| e.due.is_some())
            .count())
    }
}
