//! The in-memory store: always there, for tests and for services that can lose state on restart.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::parked::Parked;
use super::reports::{
    self, CascadeReports, DailyCost, EndedCount, ListQuery, ReportFacts, RunningCount,
};
use super::{CascadeStore, Inserted, MessageRef, StoreError, Stuck, StuckCascade, WindowStore};
use crate::engine::{CascadeRecord, Phase};
use messaging_core::chrono_dur;
use messaging_core::window::MemoryWindowStore;
use messaging_core::{ChannelId, NotificationId, ProviderMessageId, Recipient};

/// Everything in process memory. Cheap to create; `Default` gives an empty store.
///
/// A cascade that waits for its evidence or its timer is kept in a compact form of a few
/// hundred bytes (a campaign keeps hundreds of thousands of them) and read back when it is
/// next touched; every record reads back exactly.
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
    records: FastMap<NotificationId, Slot>,
    /// Timers, earliest first. An entry is live while its record's `timer` is still its
    /// time; a record whose timer moves leaves the old entry behind, dropped when it comes up
    /// (see [`Inner::first_timer`]): pushing onto a heap costs a fraction of keeping a sorted
    /// set, where every move was a removal and an insertion.
    timers: BinaryHeap<Reverse<(DateTime<Utc>, NotificationId)>>,
    messages: FastMap<ProviderMessageId, MessageRef>,
    /// Reply keys by 64-bit hash (no string per key); hits are checked against the record.
    reply_index: HashMap<u64, Ids, BuildHasherDefault<KeyHashed>>,
    /// The seed of those hashes (per store, so crafted keys cannot be aimed at one entry).
    key_seed: foldhash::fast::RandomState,
    active: usize,
}

/// The hasher of a map whose keys are hashes already (the reply index: seeded per store, so
/// crafted keys still cannot be aimed at one bucket): the key is its own hash. Hashing it
/// again cost a third of every insertion, and of moving every entry when the map grows. Ten
/// lines, so no crate for it.
#[derive(Default)]
struct KeyHashed(u64);

impl Hasher for KeyHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys use this hasher; anything else still hashes (FNV-1a), not panics.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
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

    /// Keeps only the ids `keep` accepts (a lone id it refuses gives way to `id`, which the
    /// caller pushes next).
    fn retain(&mut self, keep: impl Fn(&NotificationId) -> bool, id: &NotificationId) {
        match self {
            Ids::One(x) => {
                if !keep(x) {
                    *x = id.clone();
                }
            }
            Ids::Many(set) => set.retain(|x| keep(x)),
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
    /// The key this record has in `timers`: its `wake_at`, or the end of a claim's lease.
    timer: Option<DateTime<Utc>>,
    held: Held,
}

/// How a record is kept: as it is, or parked while its cascade waits (see `store/parked.rs`).
#[derive(Debug)]
enum Held {
    /// Boxed: a small bucket keeps the table's unused capacity cheap.
    Live(Box<CascadeRecord>),
    /// Only unfinished cascades are parked.
    Parked(Parked),
}

impl Slot {
    /// A slot for `record`, parked if its cascade waits.
    fn new(record: Box<CascadeRecord>, timer: Option<DateTime<Utc>>) -> Slot {
        let held = if parks(&record) {
            Held::Parked(Parked::park(&record))
        } else {
            Held::Live(record)
        };
        Slot { timer, held }
    }

    /// The record, read back if it is parked.
    fn record(&self, id: &NotificationId) -> Result<Cow<'_, CascadeRecord>, StoreError> {
        match &self.held {
            Held::Live(r) => Ok(Cow::Borrowed(r)),
            Held::Parked(p) => p.unpark(id).map(Cow::Owned).map_err(|_| corrupt(id)),
        }
    }

    /// The record to change: one that was parked is read back and kept as it is.
    fn live(&mut self, id: &NotificationId) -> Result<&mut CascadeRecord, StoreError> {
        if let Held::Parked(p) = &self.held {
            let record = p.unpark(id).map_err(|_| corrupt(id))?;
            self.held = Held::Live(Box::new(record));
        }
        match &mut self.held {
            Held::Live(r) => Ok(r),
            Held::Parked(_) => Err(corrupt(id)),
        }
    }

    /// Parks the record if its cascade now waits.
    fn settle(&mut self) {
        if let Held::Live(r) = &self.held
            && parks(r)
        {
            self.held = Held::Parked(Parked::park(r));
        }
    }

    /// The record if it is finished (a parked one is not).
    fn finished(&self) -> Option<&CascadeRecord> {
        match &self.held {
            Held::Live(r) if r.is_finished() => Some(r),
            _ => None,
        }
    }

    fn is_running(&self) -> bool {
        self.finished().is_none()
    }
}

/// Whether a record is parked: its cascade waits for its evidence or its timer, maybe for
/// days. One that is being sent, or has ended, is kept as it is: it changes again soon, or it
/// is read by reports until it is purged.
fn parks(record: &CascadeRecord) -> bool {
    matches!(record.phase, Phase::Waiting { .. } | Phase::Ready)
}

fn corrupt(id: &NotificationId) -> StoreError {
    StoreError::Corrupt(format!(
        "cascade {id} did not read back from its parked form"
    ))
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
    /// When the earliest live timer falls due, dropping the dead entries before it (so that it
    /// is then the heap's top).
    fn first_timer(&mut self) -> Option<DateTime<Utc>> {
        loop {
            let Reverse((at, id)) = self.timers.peek()?;
            if self.records.get(id).is_some_and(|s| s.timer == Some(*at)) {
                return Some(*at);
            }
            self.timers.pop();
        }
    }

    /// Adds a timer; rebuilds the heap from the live timers when dead entries (timers that
    /// moved or records that ended before them) outnumber the records, so they stay bounded.
    fn push_timer(&mut self, at: DateTime<Utc>, id: NotificationId) {
        self.timers.push(Reverse((at, id)));
        self.compact_timers();
    }

    /// Rebuilds the heap from the live timers when dead entries outnumber the records.
    fn compact_timers(&mut self) {
        if self.timers.len() > 2 * self.records.len() + 1024 {
            self.timers = self
                .records
                .iter()
                .filter_map(|(id, s)| s.timer.map(|t| Reverse((t, id.clone()))))
                .collect();
        }
    }

    /// Indexes an unfinished cascade `id` under the reply keys of its `recipient` (see
    /// [`CascadeRecord::reply_keys`]).
    ///
    /// A cascade that ends keeps its entries (lookups skip finished cascades): taking them out
    /// would hash every key again on the hot path. They go when the next cascade is indexed
    /// under the same key (below), or when the record is purged, so that an entry holds at
    /// most the person's running cascades and those that ended since their last one began.
    fn add_reply_keys(&mut self, id: &NotificationId, recipient: &Recipient) {
        let (index, seed, records) = (&mut self.reply_index, &self.key_seed, &self.records);
        let running = |x: &NotificationId| x == id || records.get(x).is_some_and(Slot::is_running);
        recipient.each_address_key_parts(|prefix, value| {
            match index.entry(key_hash(seed, prefix, value)) {
                Entry::Occupied(mut e) => {
                    let ids = e.get_mut();
                    ids.retain(running, id);
                    ids.push(id.clone());
                }
                Entry::Vacant(e) => {
                    e.insert(Ids::One(id.clone()));
                }
            }
        });
    }

    /// Takes `id` out of the index under every key of `recipient`.
    fn remove_reply_keys(&mut self, id: &NotificationId, recipient: &Recipient) {
        let (index, seed) = (&mut self.reply_index, &self.key_seed);
        recipient.each_address_key_parts(|prefix, value| {
            if let Entry::Occupied(mut e) = index.entry(key_hash(seed, prefix, value))
                && e.get_mut().remove(id)
            {
                e.remove();
            }
        });
    }
}

/// Indexes the provider message ids of `record`'s attempts from `first` on (those before it
/// are indexed already); the first entry for an id wins.
fn index_messages(
    messages: &mut FastMap<ProviderMessageId, MessageRef>,
    record: &CascadeRecord,
    first: usize,
) {
    for (i, a) in record.attempts.iter().enumerate().skip(first) {
        if let Some(pmid) = &a.provider_message_id {
            // A key clone is a reference count, cheaper than hashing the id twice.
            messages.entry(pmid.clone()).or_insert_with(|| MessageRef {
                notification_id: record.id().clone(),
                attempt: i,
            });
        }
    }
}

/// The 64-bit hash of the reply key `prefix` + `value`, hashed in its two pieces with the
/// store's seed, so that a key costs no allocation, no formatting and no copy. Every prefix
/// ends with its only `:`, so a whole key ([`whole_key_hash`]) splits back into the same pieces.
fn key_hash(seed: &foldhash::fast::RandomState, prefix: &str, value: &str) -> u64 {
    let mut h = seed.build_hasher();
    h.write(prefix.as_bytes());
    h.write(value.as_bytes());
    h.finish()
}

/// [`key_hash`] of a whole key as a lookup gives it (`"tg:42"`): split after its first `:`.
fn whole_key_hash(seed: &foldhash::fast::RandomState, key: &str) -> u64 {
    let (prefix, value) = key.find(':').map_or((key, ""), |i| key.split_at(i + 1));
    key_hash(seed, prefix, value)
}

/// A new record's stored copy, with room for what its first update usually adds (the receipt,
/// and the end for a channel whose receipt is the proof: two history entries), so that it
/// writes in place instead of growing the vectors. A cascade that then waits for its evidence
/// gives the spare room back (see `update`).
fn stored_copy(record: &CascadeRecord) -> CascadeRecord {
    let mut attempts = Vec::with_capacity(record.attempts.len().max(1));
    attempts.extend_from_slice(&record.attempts);
    let mut history = Vec::with_capacity(record.history.len() + 2);
    history.extend_from_slice(&record.history);
    CascadeRecord {
        notification: Arc::clone(&record.notification),
        policy: record.policy.clone(),
        version: record.version,
        step: record.step,
        phase: record.phase.clone(),
        wake_at: record.wake_at,
        rate_limit_waits: record.rate_limit_waits,
        attempts,
        history,
        created_at: record.created_at,
    }
}

/// Makes `dst` a copy of `src`, reusing `dst`'s buffers: an update rewrites a stored record
/// that differs from the new one by a few history entries, and a fresh clone (two vectors
/// allocated, the old ones freed) cost more than the rest of the update. Every field is
/// named, so a new field cannot be forgotten.
fn copy_record(dst: &mut CascadeRecord, src: &CascadeRecord) {
    let CascadeRecord {
        notification,
        policy,
        version,
        step,
        phase,
        wake_at,
        rate_limit_waits,
        attempts,
        history,
        created_at,
    } = src;
    if !Arc::ptr_eq(&dst.notification, notification) {
        dst.notification = Arc::clone(notification);
    }
    dst.policy.clone_from(policy);
    dst.version = *version;
    dst.step = *step;
    dst.phase.clone_from(phase);
    dst.wake_at = *wake_at;
    dst.rate_limit_waits = *rate_limit_waits;
    copy_vec(&mut dst.attempts, attempts);
    copy_vec(&mut dst.history, history);
    dst.created_at = *created_at;
}

/// `dst.clone_from(src)`, but growing to the exact length: a stored record keeps no spare room
/// (it may wait for days, and memory per pending cascade counts).
fn copy_vec<T: Clone + PartialEq>(dst: &mut Vec<T>, src: &[T]) {
    dst.truncate(src.len());
    let (same, more) = src.split_at(dst.len());
    for (d, s) in dst.iter_mut().zip(same) {
        // History only grows: the entries already stored are nearly always equal, and
        // comparing them (shared strings compare by pointer first) is cheaper than replacing.
        if d != s {
            d.clone_from(s);
        }
    }
    dst.reserve_exact(more.len());
    dst.extend_from_slice(more);
}

impl MemoryStore {
    /// [`CascadeStore::insert`], without a future: the engine calls the default store directly
    /// (a boxed `async_trait` future per call cost more than the rest of some calls).
    pub(crate) fn insert_now(&self, record: &CascadeRecord) -> Result<Inserted, StoreError> {
        self.insert_owned(Box::new(stored_copy(record)), |_| {})
    }

    /// Inserts `record` itself, not a copy: the engine hands over a new cascade it then
    /// decides on in place ([`change_now`](Self::change_now)). `told` sees a new record under
    /// the store's lock, before anyone else can (the engine tells its first history there),
    /// and before it is stored: if `told` panics, nothing is.
    pub(crate) fn insert_owned(
        &self,
        mut record: Box<CascadeRecord>,
        told: impl FnOnce(&CascadeRecord),
    ) -> Result<Inserted, StoreError> {
        let mut guard = self.lock();
        let g = &mut *guard;
        let id = record.id().clone();
        // One lookup both tells a duplicate and makes the new record's place.
        let place = match g.records.entry(id.clone()) {
            Entry::Occupied(e) => {
                let existing = e.get().record(e.key())?.into_owned();
                return Ok(Inserted::Exists(Box::new(existing)));
            }
            Entry::Vacant(place) => place,
        };
        record.version = 0;
        let wake_at = record.wake_at;
        // The indexes below need the map while the new record is in it: they take what they
        // need of it first (the notification is shared, so that is a reference count).
        let active = !record.is_finished();
        let notification = active.then(|| Arc::clone(&record.notification));
        told(&record);
        index_messages(&mut g.messages, &record, 0);
        place.insert(Slot::new(record, wake_at));
        // Reply keys only change when a cascade starts or ends: the notification is immutable.
        if let Some(n) = notification {
            g.add_reply_keys(&id, &n.recipient);
            g.active += 1;
        }
        if let Some(w) = wake_at {
            g.push_timer(w, id);
        }
        Ok(Inserted::New)
    }

    /// Changes a stored record in place, under the store's lock: `change` decides on it and
    /// returns what it found with whether the record changed (then its version moves on and
    /// the indexes follow), or `None` to decline, leaving it untouched. The engine decides on
    /// the in-memory store's records this way: a copy out and back cost more than the decision.
    /// `told` then sees the record as stored, under the lock (the engine tells what changed).
    ///
    /// `change` must not panic once it has changed the record: the record would stay
    /// half-changed (a decision is a pure function of the record, proptested not to panic).
    /// `told` may (it runs the application's tracing and metrics): the record and the indexes
    /// are complete by then.
    pub(crate) fn change_now<R>(
        &self,
        id: &NotificationId,
        change: impl FnOnce(&mut CascadeRecord) -> Option<(R, bool)>,
        told: impl FnOnce(&CascadeRecord, &R),
    ) -> Result<InPlace<R>, StoreError> {
        let mut guard = self.lock();
        let g = &mut *guard;
        let Some(slot) = g.records.get_mut(id) else {
            return Ok(InPlace::Missing);
        };
        let record = slot.live(id)?;
        let was_active = !record.is_finished();
        // A message id is only ever set on an attempt that had none (when its send or a
        // report settles it): attempts before the first without one are indexed already.
        let unindexed = record
            .attempts
            .iter()
            .position(|a| a.provider_message_id.is_none())
            .unwrap_or(record.attempts.len());
        let Some((found, changed)) = change(record) else {
            slot.settle();
            return Ok(InPlace::Declined);
        };
        if !changed {
            told(record, &found);
            slot.settle();
            return Ok(InPlace::Done(found));
        }
        record.version += 1;
        let (wake_at, finished) = (record.wake_at, record.is_finished());
        index_messages(&mut g.messages, record, unindexed);
        let revived = match (was_active, finished) {
            (true, true) => {
                g.active -= 1;
                None
            }
            (false, false) => Some(Arc::clone(&record.notification)),
            _ => None,
        };
        let old_timer = std::mem::replace(&mut slot.timer, wake_at);
        // Straight onto the heap (the slot is still borrowed); it is compacted below.
        if old_timer != wake_at
            && let Some(w) = wake_at
        {
            g.timers.push(Reverse((w, id.clone())));
        }
        let slot = match revived {
            None => slot,
            // Rare (an application revives an ended cascade): its reply keys need the map, so
            // the slot is found again after them.
            Some(n) => {
                g.active += 1;
                g.add_reply_keys(id, &n.recipient);
                g.records.get_mut(id).ok_or_else(|| corrupt(id))?
            }
        };
        if let Held::Live(record) = &slot.held {
            told(record, &found);
        }
        slot.settle();
        g.compact_timers();
        Ok(InPlace::Done(found))
    }

    /// [`CascadeStore::get`], without a future (see [`insert_now`](Self::insert_now)).
    pub(crate) fn get_now(&self, id: &NotificationId) -> Result<Option<CascadeRecord>, StoreError> {
        let g = self.lock();
        let Some(slot) = g.records.get(id) else {
            return Ok(None);
        };
        Ok(Some(slot.record(id)?.into_owned()))
    }

    /// [`CascadeStore::update`], without a future (see [`insert_now`](Self::insert_now)).
    pub(crate) fn update_now(&self, record: &CascadeRecord) -> Result<u64, StoreError> {
        let mut guard = self.lock();
        let g = &mut *guard;
        let slot = g
            .records
            .get_mut(record.id())
            .ok_or_else(|| StoreError::NotFound(record.id().clone()))?;
        let old_timer = slot.timer.take();
        let stored = slot.live(record.id())?;
        if stored.version != record.version {
            slot.timer = old_timer;
            slot.settle();
            return Err(StoreError::Conflict(record.id().clone()));
        }
        let was_active = !stored.is_finished();
        // Attempts before this one have the message ids they had when last stored: indexed.
        let unindexed = stored
            .attempts
            .iter()
            .zip(&record.attempts)
            .position(|(old, new)| old.provider_message_id != new.provider_message_id)
            .unwrap_or(stored.attempts.len());
        copy_record(stored, record);
        let version = record.version + 1;
        stored.version = version;
        let now_active = !record.is_finished();
        slot.timer = record.wake_at;
        slot.settle();
        // An unchanged timer (a claim's lease differs from wake_at) keeps its entry; a moved
        // one leaves its old entry dead (the slot's timer no longer names it).
        if old_timer != record.wake_at
            && let Some(w) = record.wake_at
        {
            g.push_timer(w, record.id().clone());
        }
        index_messages(&mut g.messages, record, unindexed);
        match (was_active, now_active) {
            // Its reply keys stay until they are reused or purged (see `add_reply_keys`).
            (true, false) => g.active -= 1,
            (false, true) => {
                g.active += 1;
                g.add_reply_keys(record.id(), &record.notification.recipient);
            }
            _ => {}
        }
        Ok(version)
    }
}

/// What [`MemoryStore::change_now`] did.
pub(crate) enum InPlace<R> {
    /// No record has that id.
    Missing,
    /// The change declined: the record is untouched.
    Declined,
    /// The change ran; what it found.
    Done(R),
}

#[async_trait]
impl CascadeStore for MemoryStore {
    async fn insert(&self, record: &CascadeRecord) -> Result<Inserted, StoreError> {
        self.insert_now(record)
    }

    async fn get(&self, id: &NotificationId) -> Result<Option<CascadeRecord>, StoreError> {
        self.get_now(id)
    }

    async fn update(&self, record: &CascadeRecord) -> Result<u64, StoreError> {
        self.update_now(record)
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
        let until = now + chrono_dur(lease);
        while out.len() < limit {
            if g.first_timer().is_none_or(|at| at > now) {
                break;
            }
            let Some(Reverse((_, id))) = g.timers.pop() else {
                break;
            };
            if let Some(slot) = g.records.get_mut(&id) {
                // The timer comes back when the lease runs out, unless the record is updated.
                slot.timer = Some(until);
                out.push(id);
            }
        }
        for id in &out {
            g.push_timer(until, id.clone());
        }
        Ok(out)
    }

    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.lock().first_timer())
    }

    async fn find_message(
        &self,
        provider_message_id: &ProviderMessageId,
    ) -> Result<Option<MessageRef>, StoreError> {
        Ok(self.lock().messages.get(provider_message_id).cloned())
    }

    async fn active_by_reply_key(&self, key: &str) -> Result<Vec<NotificationId>, StoreError> {
        let g = self.lock();
        let Some(ids) = g.reply_index.get(&whole_key_hash(&g.key_seed, key)) else {
            return Ok(Vec::new());
        };
        // Two keys may share a hash: keep only cascades that really have this key.
        ids.to_vec()
            .into_iter()
            .filter_map(|id| {
                let slot = g.records.get(&id)?;
                if !slot.is_running() {
                    return None;
                }
                let record = match slot.record(&id) {
                    Ok(r) => r,
                    Err(e) => return Some(Err(e)),
                };
                let keys = record.notification.recipient.address_keys();
                keys.iter().any(|k| k == key).then_some(Ok(id))
            })
            .collect()
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
            .filter(|(_, slot)| {
                (slot.finished()).is_some_and(|r| r.ended_at().is_some_and(|t| t < ended_before))
            })
            .map(|(id, _)| id.clone())
            .take(limit)
            .collect();
        for id in &gone {
            let Some(Slot {
                held: Held::Live(record),
                ..
            }) = g.records.remove(id)
            else {
                continue;
            };
            for (pmid, _) in record.provider_message_ids() {
                if let Entry::Occupied(e) = g.messages.entry(pmid.clone())
                    && e.get().notification_id == *id
                {
                    e.remove();
                }
            }
            // Its timer entry, if any, is dead now: dropped when it comes up.
            g.remove_reply_keys(id, &record.notification.recipient);
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
            .iter()
            .filter(|(_, s)| s.is_running())
            .map(|(id, s)| Ok(ReportFacts::of(&*s.record(id)?)))
            .collect::<Result<_, StoreError>>()?;
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
            .iter()
            .map(|(id, s)| Ok(StuckCascade::of(&*s.record(id)?, s.timer, now, grace)))
            .filter_map(Result::transpose)
            .collect::<Result<_, StoreError>>()?;
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
            .filter_map(Slot::finished)
            .filter(|r| r.ended_at().is_some_and(|t| from <= t && t < to))
            .map(ReportFacts::of)
            .collect();
        Ok(reports::ended_counts(
            facts.into_iter().map(|f| (f.state, f.channel)),
        ))
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<NotificationId>, StoreError> {
        let g = self.lock();
        let mut hits = Vec::new();
        for (id, s) in &g.records {
            let record = s.record(id)?;
            if query.matches(&ReportFacts::of(&record), record.is_finished()) {
                let at = if query.finished {
                    record.ended_at()
                } else {
                    s.timer
                };
                hits.push((at, id));
            }
        }
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
        let mut costs: Vec<reports::AttemptCost> = Vec::new();
        for (id, s) in &g.records {
            let record = s.record(id)?;
            if record.attempts.iter().any(|a| a.cost.is_some()) {
                let facts = ReportFacts::of(&record).costs;
                costs.extend(
                    facts
                        .into_iter()
                        .filter(|c| first <= c.day && c.day <= last),
                );
            }
        }
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

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::engine::Outcome;
    use crate::store::conformance::{finish, record, t};

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    /// A key hashed in its pieces, as cascades are indexed, hashes as the whole key a lookup
    /// gives, for every kind of address and for a contact id with a `:` of its own.
    #[test]
    fn reply_keys_hash_alike_in_pieces_and_whole() {
        use messaging_core::{Address, Recipient};
        let seed = foldhash::fast::RandomState::default();
        let r = Recipient::with_phone("clinic:patient:7", "+79123456789")
            .expect("phone")
            .address(Address::Telegram(-1_001_234_567_890))
            .address(Address::MaxUser(42))
            .address(Address::MaxChat(7))
            .address(Address::WhatsApp("79123456789".into()));
        let mut pieces = Vec::new();
        r.each_address_key_parts(|p, v| pieces.push(key_hash(&seed, p, v)));
        let mut whole = Vec::new();
        r.each_address_key(|k| whole.push(whole_key_hash(&seed, &k.to_string())));
        assert_eq!(pieces.len(), 6);
        assert_eq!(pieces, whole);
        // The split matters: the same bytes cut elsewhere are another key.
        assert_ne!(key_hash(&seed, "tg:", "42"), key_hash(&seed, "tg:4", "2"));
    }

    /// An ended cascade's reply keys stay until the key is reused or the record purged, and
    /// lookups never return it meanwhile.
    #[test]
    fn ended_cascades_leave_the_reply_index_on_reuse_or_purge() {
        block(async {
            let store = MemoryStore::new();
            let phone = "phone:+79123456789";
            let mut a = record("a", "+79123456789", Some(t(10)));
            store.insert(&a).await.expect("insert a");
            finish(&mut a, Outcome::Exhausted);
            store.update(&a).await.expect("finish a");
            assert!(
                store
                    .active_by_reply_key(phone)
                    .await
                    .expect("lookup")
                    .is_empty()
            );
            // Phone and contact keys of `a`, not taken out yet.
            assert_eq!(store.lock().reply_index.len(), 2);

            let mut b = record("b", "+79123456789", Some(t(10)));
            store.insert(&b).await.expect("insert b");
            let ids = store.active_by_reply_key(phone).await.expect("lookup");
            assert_eq!(ids, vec![NotificationId::new("b")]);
            {
                let g = store.lock();
                let key = whole_key_hash(&g.key_seed, phone);
                assert!(
                    matches!(g.reply_index.get(&key), Some(Ids::One(x)) if x.as_str() == "b"),
                    "reusing the key dropped the ended cascade"
                );
            }

            finish(&mut b, Outcome::Exhausted);
            store.update(&b).await.expect("finish b");
            let purged = store.purge_finished(t(1_000_000), 10).await.expect("purge");
            assert_eq!(purged, 2);
            assert!(
                store.lock().reply_index.is_empty(),
                "purge empties the index"
            );
        });
    }

    /// A timer moved many times leaves dead heap entries behind; they stay bounded, and the
    /// earliest live timer is still the one returned and claimed.
    #[test]
    fn moved_timers_leave_bounded_dead_entries() {
        block(async {
            let store = MemoryStore::new();
            let mut a = record("a", "+79123456789", Some(t(1_000_000)));
            store.insert(&a).await.expect("insert a");
            let b = record("b", "+79123456788", Some(t(500)));
            store.insert(&b).await.expect("insert b");
            // `a` moves from before `b` to after it, one second at a time: dead entries in
            // front of `b`'s.
            for i in 0..5_000 {
                a.wake_at = Some(t(i));
                a.version = store.update(&a).await.expect("move a");
            }
            assert!(
                store.lock().timers.len() <= 2 * 2 + 1024 + 1,
                "dead entries compacted"
            );
            assert_eq!(store.next_wake().await.expect("next"), Some(t(500)));
            a.wake_at = Some(t(600));
            store.update(&a).await.expect("move a");
            assert_eq!(store.next_wake().await.expect("next"), Some(t(500)));
            let lease = Duration::from_secs(30);
            let due = store.claim_due(t(700), 10, lease).await.expect("claim");
            assert_eq!(
                due,
                vec![NotificationId::new("b"), NotificationId::new("a")]
            );
            // Both now wake at the lease's end, and nothing else is left live.
            assert_eq!(
                store.next_wake().await.expect("next"),
                Some(t(700) + chrono_dur(lease))
            );
            assert!(
                store
                    .claim_due(t(701), 10, lease)
                    .await
                    .expect("claim")
                    .is_empty()
            );
        });
    }
}
