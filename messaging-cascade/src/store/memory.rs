//! The in-memory store: always there, for tests and for services that can lose state on restart.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::reports::{
    self, CascadeReports, DailyCost, EndedCount, ListQuery, ReportFacts, RunningCount,
};
use super::{CascadeStore, Inserted, MessageRef, StoreError, Stuck, StuckCascade, WindowStore};
use crate::engine::CascadeRecord;
use messaging_core::chrono_dur;
use messaging_core::window::MemoryWindowStore;
use messaging_core::{ChannelId, NotificationId, ProviderMessageId, Recipient};

/// Everything in process memory. Cheap to create; `Default` gives an empty store.
///
/// ```
/// use messaging_cascade::store::{CascadeStore, MemoryStore};
/// # tokio_test_block(async {
/// let store = MemoryStore::new();
/// assert_eq!(store.count_active().await.unwrap(), 0);
/// # });
/// # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    windows: MemoryWindowStore,
}

/// A hash map with foldhash: several times faster than SipHash on short ids, and still seeded
/// per map, so crafted ids cannot be aimed at one bucket.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct Inner {
    /// Boxed: a small bucket keeps the table's unused capacity cheap.
    records: FastMap<NotificationId, Box<Slot>>,
    /// (wake_at, id) of unclaimed timers.
    timers: BTreeSet<(DateTime<Utc>, NotificationId)>,
    messages: FastMap<ProviderMessageId, MessageRef>,
    /// Reply keys by 64-bit hash (no string per key); hits are checked against the record.
    reply_index: FastMap<u64, Ids>,
    active: usize,
}

/// The cascades under one reply key: nearly always one, so no set for that case; a set when a
/// person has many cascades at once, so removal stays cheap.
#[derive(Debug)]
enum Ids {
    One(NotificationId),
    // Boxed on purpose: keeps every entry of the index small; the set is rare.
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<NotificationId>>),
}

impl Ids {
    fn push(&mut self, id: NotificationId) {
        match self {
            // The same key twice for one cascade (a phone given twice) indexes it once.
            Ids::One(first) if *first == id => {}
            Ids::One(first) => {
                *self = Ids::Many(Box::new(HashSet::from([first.clone(), id])));
            }
            Ids::Many(set) => {
                set.insert(id);
            }
        }
    }

    /// Removes `id`; returns whether the set is now empty.
    fn remove(&mut self, id: &NotificationId) -> bool {
        match self {
            Ids::One(x) => x == id,
            Ids::Many(set) => {
                set.remove(id);
                set.is_empty()
            }
        }
    }

    fn to_vec(&self) -> Vec<NotificationId> {
        match self {
            Ids::One(x) => vec![x.clone()],
            Ids::Many(set) => set.iter().cloned().collect(),
        }
    }
}

#[derive(Debug)]
struct Slot {
    record: CascadeRecord,
    /// The key this record has in `timers`: its `wake_at`, or the end of a claim's lease.
    timer: Option<DateTime<Utc>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the process; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn index_messages(&mut self, record: &CascadeRecord) {
        for (pmid, attempt) in record.provider_message_ids() {
            self.messages
                .entry(pmid.clone())
                .or_insert_with(|| MessageRef {
                    notification_id: record.id().clone(),
                    attempt,
                });
        }
    }

    /// Indexes an unfinished record under its reply keys (see [`CascadeRecord::reply_keys`]).
    fn add_reply_keys(&mut self, record: &CascadeRecord) {
        if record.is_finished() {
            return;
        }
        let index = &mut self.reply_index;
        record
            .notification
            .recipient
            .each_address_key(|k| match index.entry(KeyHash::of(k)) {
                Entry::Occupied(mut e) => e.get_mut().push(record.id().clone()),
                Entry::Vacant(e) => {
                    e.insert(Ids::One(record.id().clone()));
                }
            });
    }

    /// Takes `id` out of the index under every key of `recipient`.
    fn remove_reply_keys(&mut self, id: &NotificationId, recipient: &Recipient) {
        let index = &mut self.reply_index;
        recipient.each_address_key(|k| {
            if let Entry::Occupied(mut e) = index.entry(KeyHash::of(k))
                && e.get_mut().remove(id)
            {
                e.remove();
            }
        });
    }
}

/// A stable 64-bit hash of a reply key (FNV-1a), fed by the key's formatting so no string is
/// built for it.
struct KeyHash(u64);

impl KeyHash {
    fn of(key: fmt::Arguments<'_>) -> u64 {
        let mut h = KeyHash(0xcbf2_9ce4_8422_2325);
        // Writing to a hasher cannot fail.
        let _ = fmt::Write::write_fmt(&mut h, key);
        h.0
    }
}

impl fmt::Write for KeyHash {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        Ok(())
    }
}

fn key_hash(key: &str) -> u64 {
    KeyHash::of(format_args!("{key}"))
}

#[async_trait]
impl CascadeStore for MemoryStore {
    async fn insert(&self, record: &CascadeRecord) -> Result<Inserted, StoreError> {
        let mut g = self.lock();
        if let Some(slot) = g.records.get(record.id()) {
            return Ok(Inserted::Exists(Box::new(slot.record.clone())));
        }
        let mut rec = record.clone();
        rec.version = 0;
        g.index_messages(&rec);
        // Reply keys only change when a cascade starts or ends: the notification is immutable.
        g.add_reply_keys(&rec);
        if let Some(w) = rec.wake_at {
            g.timers.insert((w, rec.id().clone()));
        }
        if !rec.is_finished() {
            g.active += 1;
        }
        g.records.insert(
            rec.id().clone(),
            Box::new(Slot {
                timer: rec.wake_at,
                record: rec,
            }),
        );
        Ok(Inserted::New)
    }

    async fn get(&self, id: &NotificationId) -> Result<Option<CascadeRecord>, StoreError> {
        Ok(self.lock().records.get(id).map(|s| s.record.clone()))
    }

    async fn update(&self, record: &CascadeRecord) -> Result<u64, StoreError> {
        let mut guard = self.lock();
        let g = &mut *guard;
        let slot = g
            .records
            .get_mut(record.id())
            .ok_or_else(|| StoreError::NotFound(record.id().clone()))?;
        if slot.record.version != record.version {
            return Err(StoreError::Conflict(record.id().clone()));
        }
        let was_active = !slot.record.is_finished();
        let old_timer = slot.timer.take();
        let mut rec = record.clone();
        rec.version += 1;
        let version = rec.version;
        let now_active = !rec.is_finished();
        slot.timer = rec.wake_at;
        slot.record = rec;
        if let Some(w) = old_timer {
            g.timers.remove(&(w, record.id().clone()));
        }
        if let Some(w) = record.wake_at {
            g.timers.insert((w, record.id().clone()));
        }
        g.index_messages(record);
        match (was_active, now_active) {
            (true, false) => {
                g.active -= 1;
                // The notification, and so its keys, never changes.
                g.remove_reply_keys(record.id(), &record.notification.recipient);
            }
            (false, true) => {
                g.active += 1;
                g.add_reply_keys(record);
            }
            _ => {}
        }
        Ok(version)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<NotificationId>, StoreError> {
        let mut guard = self.lock();
        let g = &mut *guard;
        let mut out = Vec::new();
        let mut requeue = Vec::new();
        while out.len() < limit {
            let Some(first) = g.timers.first().cloned() else {
                break;
            };
            if first.0 > now {
                break;
            }
            g.timers.pop_first();
            if let Some(slot) = g.records.get_mut(&first.1) {
                // The timer comes back when the lease runs out, unless the record is updated.
                let until = now + chrono_dur(lease);
                slot.timer = Some(until);
                requeue.push((until, first.1.clone()));
                out.push(first.1);
            }
        }
        g.timers.extend(requeue);
        Ok(out)
    }

    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.lock().timers.first().map(|(t, _)| *t))
    }

    async fn find_message(
        &self,
        provider_message_id: &ProviderMessageId,
    ) -> Result<Option<MessageRef>, StoreError> {
        Ok(self.lock().messages.get(provider_message_id).cloned())
    }

    async fn active_by_reply_key(&self, key: &str) -> Result<Vec<NotificationId>, StoreError> {
        let g = self.lock();
        let Some(ids) = g.reply_index.get(&key_hash(key)) else {
            return Ok(Vec::new());
        };
        // Two keys may share a hash: keep only cascades that really have this key.
        Ok(ids
            .to_vec()
            .into_iter()
            .filter(|id| {
                g.records.get(id).is_some_and(|slot| {
                    !slot.record.is_finished()
                        && slot
                            .record
                            .notification
                            .recipient
                            .address_keys()
                            .iter()
                            .any(|k| k == key)
                })
            })
            .collect())
    }

    async fn count_active(&self) -> Result<usize, StoreError> {
        Ok(self.lock().active)
    }

    async fn purge_finished(
        &self,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut guard = self.lock();
        let g = &mut *guard;
        // A scan: the in-memory store keeps no index by end time, so that finished cascades
        // cost nothing extra until they are purged.
        let gone: Vec<NotificationId> = g
            .records
            .iter()
            .filter(|(_, slot)| slot.record.ended_at().is_some_and(|t| t < ended_before))
            .map(|(id, _)| id.clone())
            .take(limit)
            .collect();
        for id in &gone {
            let Some(slot) = g.records.remove(id) else {
                continue;
            };
            for (pmid, _) in slot.record.provider_message_ids() {
                if let Entry::Occupied(e) = g.messages.entry(pmid.clone())
                    && e.get().notification_id == *id
                {
                    e.remove();
                }
            }
            if let Some(w) = slot.timer {
                g.timers.remove(&(w, id.clone()));
            }
        }
        Ok(gone.len())
    }
}

/// Scans every record: the in-memory store keeps no index for reports, so that they cost
/// nothing until asked.
#[async_trait]
impl CascadeReports for MemoryStore {
    async fn running(&self) -> Result<Vec<RunningCount>, StoreError> {
        let g = self.lock();
        let facts: Vec<ReportFacts> = g
            .records
            .values()
            .filter(|s| !s.record.is_finished())
            .map(|s| ReportFacts::of(&s.record))
            .collect();
        Ok(reports::running_counts(
            facts.into_iter().map(|f| (f.state, f.channel)),
        ))
    }

    async fn stuck(
        &self,
        now: DateTime<Utc>,
        grace: Duration,
        limit: usize,
    ) -> Result<Stuck, StoreError> {
        let g = self.lock();
        let mut all: Vec<StuckCascade> = g
            .records
            .values()
            .filter_map(|s| StuckCascade::of(&s.record, s.timer, now, grace))
            .collect();
        all.sort_by(|a, b| {
            (a.overdue_since, &a.notification_id).cmp(&(b.overdue_since, &b.notification_id))
        });
        let total = all.len() as u64;
        all.truncate(limit);
        Ok(Stuck { total, oldest: all })
    }

    async fn ended_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EndedCount>, StoreError> {
        let g = self.lock();
        let facts: Vec<ReportFacts> = g
            .records
            .values()
            .filter(|s| s.record.ended_at().is_some_and(|t| from <= t && t < to))
            .map(|s| ReportFacts::of(&s.record))
            .collect();
        Ok(reports::ended_counts(
            facts.into_iter().map(|f| (f.state, f.channel)),
        ))
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<NotificationId>, StoreError> {
        let g = self.lock();
        let mut hits: Vec<(Option<DateTime<Utc>>, &NotificationId)> = g
            .records
            .values()
            .filter(|s| query.matches(&ReportFacts::of(&s.record), s.record.is_finished()))
            .map(|s| {
                let at = if query.finished {
                    s.record.ended_at()
                } else {
                    s.timer
                };
                (at, s.record.id())
            })
            .collect();
        if query.finished {
            hits.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        } else {
            // The next due first, no timer last.
            hits.sort_by(|a, b| (a.0.is_none(), a.0, a.1).cmp(&(b.0.is_none(), b.0, b.1)));
        }
        Ok(hits
            .into_iter()
            .take(query.limit)
            .map(|(_, id)| id.clone())
            .collect())
    }

    async fn cost_by_channel_day(
        &self,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Vec<DailyCost>, StoreError> {
        let g = self.lock();
        let costs: Vec<reports::AttemptCost> = g
            .records
            .values()
            .filter(|s| s.record.attempts.iter().any(|a| a.cost.is_some()))
            .flat_map(|s| ReportFacts::of(&s.record).costs)
            .filter(|c| first <= c.day && c.day <= last)
            .collect();
        Ok(reports::daily_costs(costs.iter()))
    }
}

#[async_trait]
impl WindowStore for MemoryStore {
    async fn record_inbound(
        &self,
        channel: &ChannelId,
        address_key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.windows.record_inbound(channel, address_key, at).await
    }

    async fn last_inbound(
        &self,
        channel: &ChannelId,
        address_key: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.windows.last_inbound(channel, address_key).await
    }

    async fn close(&self, channel: &ChannelId, address_key: &str) -> Result<(), StoreError> {
        self.windows.close(channel, address_key).await
    }
}
