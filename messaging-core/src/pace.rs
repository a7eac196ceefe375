//! Client-side pacing under a provider's rate limit: [`Pacer`] for one limit, [`KeyedPacer`] for
//! an overall limit and one per key at once (Telegram: per bot and per chat).
//!
//! Providers count requests in a sliding window. A token bucket that starts full lets the whole
//! quota out at once, and the next window's requests then land in the same window as that burst.
//! A pacer works in two steps, over every limit it keeps:
//!
//! 1. **Even spacing.** A request gets the earliest start time that is at least one overall
//!    [`interval`](Limit::interval) from every other reserved start and one per-key interval
//!    after the previous request with its key; intervals are `per / count` stretched by
//!    [`MARGIN_PERMILLE`], with no burst. A request held back by its key's pace does not hold up
//!    requests with other keys, and a wait for the overall pace does not let two requests with
//!    one key start closer than the per-key interval. Start times are reserved in advance, so a
//!    waiter that wakes a little late does not push the following ones back: the pace does not
//!    drift below the rate.
//! 2. **A sliding-window guard on arrival times.** The provider counts a request when it
//!    *arrives*, which may be well after it was started (a new connection, a stalled thread). A
//!    request holds a [`Permit`] until its answer is read; its arrival is then known to be no
//!    later than the answer's time minus the usual round trip (the shortest of the recent ones;
//!    none is assumed until enough were seen). A request starts only when fewer than `count`
//!    earlier requests may have arrived in the last `per`, overall and with its key, counting
//!    those still in flight. In steady state the spacing keeps the guard idle; after a stall it
//!    holds the next requests back instead of letting them land in the stalled request's window.
//!
//! A pacer is in-process and uses [`tokio::time`]: it runs on tokio's paused clock in tests.
//! Several processes that share one provider limit must each be given a share of it.
//!
//! ```
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use messaging_core::pace::Pacer;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let pacer = Pacer::per_second(NonZeroU32::new(1000).unwrap());
//! let started = tokio::time::Instant::now();
//! for _ in 0..3 {
//!     let permit = pacer.acquire().await;
//!     // Send the request and read its answer, then let the permit go.
//!     drop(permit);
//! }
//! // No burst: the third request started two intervals after the first.
//! assert!(started.elapsed() >= pacer.interval() * 2);
//! # });
//! ```

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How much the spacing is stretched beyond `per / count`, in thousandths (3 %): any `count + 1`
/// consecutive requests span at least `per` plus 3 % of it, which absorbs that much jitter, and
/// the pace reaches about 97 % of the limit.
///
/// ```
/// use std::time::Duration;
/// use messaging_core::pace::{Limit, MARGIN_PERMILLE};
/// let limit = Limit::per_second(20).unwrap();
/// assert_eq!(limit.interval(), Duration::from_secs(1) * (1000 + MARGIN_PERMILLE) / 1000 / 20);
/// ```
pub const MARGIN_PERMILLE: u32 = 30;

/// How many answered requests the usual round trip is taken from (the shortest of them).
const ROUND_TRIPS: usize = 64;
/// How many answered requests are needed before a round trip is assumed at all.
const MIN_ROUND_TRIPS: usize = 16;
/// How often a guard blocked by requests still in flight looks again.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(5);
/// How many reservations pass between two sweeps of the per-key tables.
const SWEEP_EVERY: u64 = 1024;

/// A rate limit: at most `count` requests in any sliding window of `per`.
///
/// ```
/// use std::time::Duration;
/// use messaging_core::pace::Limit;
/// let group = Limit::new(20, Duration::from_secs(60)).unwrap();
/// assert_eq!(group.count().get(), 20);
/// assert_eq!(group.interval(), Duration::from_millis(3090));
/// // A zero count or a zero window is no limit.
/// assert_eq!(Limit::per_second(0), None);
/// assert_eq!(Limit::new(1, Duration::ZERO), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    count: NonZeroU32,
    per: Duration,
}

impl Limit {
    /// At most `count` requests in any sliding window of `per`; `None` (no limit) when `count`
    /// is zero or `per` is too short to space requests (`per / count` under a nanosecond).
    pub fn new(count: u32, per: Duration) -> Option<Limit> {
        let limit = Limit {
            count: NonZeroU32::new(count)?,
            per,
        };
        (!limit.interval().is_zero()).then_some(limit)
    }

    /// At most `count` requests in any sliding second; `None` (no limit) when `count` is zero.
    pub fn per_second(count: u32) -> Option<Limit> {
        Limit::new(count, Duration::from_secs(1))
    }

    /// How many requests the window holds.
    pub fn count(self) -> NonZeroU32 {
        self.count
    }

    /// The width of the sliding window.
    pub fn per(self) -> Duration {
        self.per
    }

    /// The time between two start times: `per / count`, stretched by [`MARGIN_PERMILLE`].
    pub fn interval(self) -> Duration {
        self.per * (1000 + MARGIN_PERMILLE) / 1000 / self.count.get()
    }
}

/// The largest number of `times` (sorted) in any half-open window of `per`, the way a provider
/// counts requests: to check a pacer, or a log of request times against a limit.
///
/// ```
/// use std::time::Duration;
/// use messaging_core::pace::max_in_window;
/// let t0 = tokio::time::Instant::now();
/// let ms = |n| t0 + Duration::from_millis(n);
/// // Half-open windows: [0 ms, 1000 ms) and [400 ms, 1400 ms) hold three each.
/// let times = [ms(0), ms(400), ms(999), ms(1000), ms(1400)];
/// assert_eq!(max_in_window(&times, Duration::from_secs(1)), 3);
/// ```
pub fn max_in_window(times: &[Instant], per: Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi].duration_since(times[lo]) >= per {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// One request in a [`Window`].
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The latest time it may have arrived at the provider; `None` while it is in flight.
    arrived_by: Option<Instant>,
}

/// The requests that may still count in one of the provider's sliding windows.
#[derive(Debug)]
struct Window {
    limit: usize,
    width: Duration,
    entries: VecDeque<Entry>,
    /// The sequence number of `entries[0]`.
    first: u64,
}

impl Window {
    fn new(limit: Limit) -> Self {
        Window {
            limit: limit.count.get() as usize,
            width: limit.per,
            entries: VecDeque::new(),
            first: 0,
        }
    }

    /// Forgets the oldest requests that no longer count; whether none is left.
    fn prune(&mut self, now: Instant) -> bool {
        while self
            .entries
            .front()
            .and_then(|e| e.arrived_by)
            .is_some_and(|t| t + self.width <= now)
        {
            self.entries.pop_front();
            self.first += 1;
        }
        self.entries.is_empty()
    }

    /// Whether a request may start at `now`: `Ok`, or `Err` with the time to look again.
    fn check(&mut self, now: Instant) -> Result<(), Instant> {
        self.prune(now);
        let counts = |e: &Entry| e.arrived_by.is_none_or(|t| t + self.width > now);
        let count = self.entries.iter().filter(|e| counts(e)).count();
        if count < self.limit {
            return Ok(());
        }
        // The earliest time enough of the answered requests have left the window.
        let mut arrived: Vec<Instant> = self
            .entries
            .iter()
            .filter(|e| counts(e))
            .filter_map(|e| e.arrived_by)
            .collect();
        arrived.sort_unstable();
        let must_leave = count + 1 - self.limit;
        Err(arrived
            .get(must_leave - 1)
            .map_or(now + IN_FLIGHT_POLL, |t| *t + self.width))
    }

    /// Records a request started now, in flight; its sequence number.
    fn push(&mut self) -> u64 {
        self.entries.push_back(Entry { arrived_by: None });
        self.first + self.entries.len() as u64 - 1
    }

    /// Records that request `seq` arrived at `arrived_by` at the latest.
    fn answered(&mut self, seq: u64, arrived_by: Instant) {
        if let Some(e) = seq
            .checked_sub(self.first)
            .and_then(|i| self.entries.get_mut(usize::try_from(i).ok()?))
        {
            e.arrived_by = Some(arrived_by);
        }
    }
}

/// The usual round trip: the shortest of the recent ones.
#[derive(Debug, Default)]
struct RoundTrips(VecDeque<Duration>);

impl RoundTrips {
    /// The round trip a request surely took at least (zero until enough were seen).
    fn usual(&self) -> Duration {
        if self.0.len() < MIN_ROUND_TRIPS {
            return Duration::ZERO;
        }
        self.0.iter().min().copied().unwrap_or_default()
    }

    fn record(&mut self, d: Duration) {
        if self.0.len() == ROUND_TRIPS {
            self.0.pop_front();
        }
        self.0.push_back(d);
    }
}

struct State<K> {
    /// Reserved start times under the overall limit that may still constrain a new one.
    slots: BTreeSet<Instant>,
    /// The earliest next start time per key.
    key_next: HashMap<K, Instant>,
    reservations: u64,
    window: Option<Window>,
    key_windows: HashMap<K, Window>,
    round_trips: RoundTrips,
}

/// Paces requests under an overall limit and a limit per key (either may be off): no sliding
/// window ever holds more than the overall count of requests, nor more than the per-key count
/// of requests with one key. Share it (`Arc`, or inside a shared client) between everything
/// that counts against the same limits.
///
/// ```
/// use std::time::Duration;
/// use messaging_core::pace::{KeyedPacer, Limit};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // Like Telegram: 30 messages per second per bot, 1 per second in one chat.
/// let pacer = KeyedPacer::new(Limit::per_second(30), Limit::per_second(1));
/// let chat: i64 = 42;
/// let permit = pacer.acquire(chat).await;
/// // Send the message to `chat` and read the answer, then let the permit go.
/// drop(permit);
/// // Another chat goes next, one bot-wide interval later; chat 42 waits a second.
/// let started = tokio::time::Instant::now();
/// drop(pacer.acquire(7).await);
/// assert!(started.elapsed() < Duration::from_millis(500));
/// # });
/// ```
pub struct KeyedPacer<K: Eq + Hash> {
    overall: Option<Limit>,
    per_key: Option<Limit>,
    state: Mutex<State<K>>,
}

impl<K: Eq + Hash> fmt::Debug for KeyedPacer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedPacer")
            .field("overall", &self.overall)
            .field("per_key", &self.per_key)
            .finish_non_exhaustive()
    }
}

/// The right to send one request. Hold it until the answer has been read (drop it then): the
/// time of the answer bounds the time the request arrived.
#[must_use = "hold the permit until the answer has been read"]
pub struct Permit<'a, K: Eq + Hash = ()> {
    pacer: &'a KeyedPacer<K>,
    key: K,
    overall_seq: Option<u64>,
    key_seq: Option<u64>,
    start: Instant,
    /// Whether the answer's time says when the request arrived (not for a long poll).
    timed: bool,
}

impl<K: Eq + Hash> fmt::Debug for Permit<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash> Permit<'_, K> {
    /// Lets the permit go for a request the provider holds before answering (a long poll): its
    /// answer's time says nothing about its arrival, so it is counted as having arrived when it
    /// started.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use messaging_core::pace::Pacer;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let pacer = Pacer::per_second(NonZeroU32::new(1000).unwrap());
    /// let poll = pacer.acquire().await;
    /// // `GET /updates?timeout=30`: the provider answers when it has something.
    /// poll.arrived_at_start();
    /// # });
    /// ```
    pub fn arrived_at_start(mut self) {
        self.timed = false;
    }
}

impl<K: Eq + Hash> Drop for Permit<'_, K> {
    fn drop(&mut self) {
        if self.overall_seq.is_none() && self.key_seq.is_none() {
            return;
        }
        let now = Instant::now();
        let mut s = self.pacer.lock();
        let s = &mut *s;
        let arrived_by = if self.timed {
            let took = now.saturating_duration_since(self.start);
            let usual = s.round_trips.usual();
            s.round_trips.record(took);
            now - usual.min(took)
        } else {
            self.start
        };
        if let (Some(seq), Some(w)) = (self.overall_seq, s.window.as_mut()) {
            w.answered(seq, arrived_by);
        }
        if let (Some(seq), Some(w)) = (self.key_seq, s.key_windows.get_mut(&self.key)) {
            w.answered(seq, arrived_by);
        }
    }
}

impl<K: Eq + Hash> KeyedPacer<K> {
    /// Paces under `overall` across all keys and `per_key` for each key (`None`: no limit).
    pub fn new(overall: Option<Limit>, per_key: Option<Limit>) -> Self {
        KeyedPacer {
            overall,
            per_key,
            state: Mutex::new(State {
                slots: BTreeSet::new(),
                key_next: HashMap::new(),
                reservations: 0,
                window: overall.map(Window::new),
                key_windows: HashMap::new(),
                round_trips: RoundTrips::default(),
            }),
        }
    }

    /// The overall and the per-key limit.
    pub fn limits(&self) -> (Option<Limit>, Option<Limit>) {
        (self.overall, self.per_key)
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Eq + Hash + Clone> KeyedPacer<K> {
    /// Reserves the earliest evenly spaced start time at or after `now` for `key`.
    fn reserve(&self, key: &K, now: Instant) -> Instant {
        let mut s = self.lock();
        let s = &mut *s;
        let mut slot = now;
        if self.per_key.is_some()
            && let Some(next) = s.key_next.get(key)
        {
            slot = slot.max(*next);
        }
        if let Some(overall) = self.overall {
            let gap = overall.interval();
            // Start times a full gap in the past constrain nothing any more.
            while s.slots.first().is_some_and(|first| *first + gap <= now) {
                s.slots.pop_first();
            }
            // The earliest time at or after `slot` at least `gap` from every reserved one (those
            // a gap or more before `slot` do not constrain it).
            let from = slot
                .checked_sub(gap)
                .map_or(Bound::Unbounded, Bound::Excluded);
            for &r in s.slots.range((from, Bound::Unbounded)) {
                if slot + gap <= r {
                    break;
                }
                slot = r + gap;
            }
            s.slots.insert(slot);
        }
        if let Some(per_key) = self.per_key {
            s.key_next.insert(key.clone(), slot + per_key.interval());
            s.reservations += 1;
            if s.reservations.is_multiple_of(SWEEP_EVERY) {
                s.key_next.retain(|_, next| *next > now);
                s.key_windows.retain(|_, w| !w.prune(now));
            }
        }
        slot
    }

    /// Waits for the turn of a request with `key`. A waiter that is dropped leaves its turn
    /// unused (capacity is lost, no limit is ever exceeded).
    pub async fn acquire(&self, key: K) -> Permit<'_, K> {
        let now = Instant::now();
        if self.overall.is_none() && self.per_key.is_none() {
            return Permit {
                pacer: self,
                key,
                overall_seq: None,
                key_seq: None,
                start: now,
                timed: true,
            };
        }
        let slot = self.reserve(&key, now);
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
        loop {
            let now = Instant::now();
            let retry = {
                let mut s = self.lock();
                let s = &mut *s;
                let overall = s.window.as_mut().map(|w| w.check(now));
                let per_key = self.per_key.map(|limit| {
                    s.key_windows
                        .entry(key.clone())
                        .or_insert_with(|| Window::new(limit))
                        .check(now)
                });
                match (overall, per_key) {
                    (Some(Err(a)), Some(Err(b))) => a.max(b),
                    (Some(Err(a)), _) | (_, Some(Err(a))) => a,
                    _ => {
                        let overall_seq = s.window.as_mut().map(Window::push);
                        let key_seq = self
                            .per_key
                            .and_then(|_| s.key_windows.get_mut(&key))
                            .map(Window::push);
                        return Permit {
                            pacer: self,
                            key,
                            overall_seq,
                            key_seq,
                            start: now,
                            timed: true,
                        };
                    }
                }
            };
            tokio::time::sleep_until(retry).await;
        }
    }
}

/// Paces requests under one limit: no sliding window of `per` ever holds more than `count` of
/// them. A [`KeyedPacer`] without a per-key limit; share it between everything that counts
/// against the limit.
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use messaging_core::pace::{Limit, Pacer};
/// let pacer = Pacer::per_second(NonZeroU32::new(80).unwrap());
/// assert_eq!(pacer.limit(), Limit::per_second(80).unwrap());
/// assert_eq!(pacer.interval(), Duration::from_nanos(12_875_000));
/// let slow = Pacer::new(Limit::new(20, Duration::from_secs(60)).unwrap());
/// assert_eq!(slow.interval(), Duration::from_millis(3090));
/// ```
pub struct Pacer {
    limit: Limit,
    inner: KeyedPacer<()>,
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pacer")
            .field("limit", &self.limit)
            .field("interval", &self.interval())
            .finish_non_exhaustive()
    }
}

impl Pacer {
    /// Paces under `limit`.
    pub fn new(limit: Limit) -> Self {
        Pacer {
            limit,
            inner: KeyedPacer::new(Some(limit), None),
        }
    }

    /// At most `count` requests in any sliding second.
    pub fn per_second(count: NonZeroU32) -> Self {
        Self::new(Limit {
            count,
            per: Duration::from_secs(1),
        })
    }

    /// The limit it keeps.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// The time between two start times.
    pub fn interval(&self) -> Duration {
        self.limit.interval()
    }

    /// Waits for this request's turn. A waiter that is dropped leaves its turn unused (capacity
    /// is lost, the limit is never exceeded).
    pub async fn acquire(&self) -> Permit<'_> {
        self.inner.acquire(()).await
    }
}

#[cfg(test)]
impl<K: Eq + Hash> KeyedPacer<K> {
    fn tracked_keys(&self) -> (usize, usize) {
        let s = self.lock();
        (s.key_next.len(), s.key_windows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::Arc;

    /// A pacer the test harness can drive: [`Pacer`] ignores the key.
    trait Acquire: Send + Sync + 'static {
        type Key: Eq + Hash + Clone + Ord + Send + Sync + 'static;
        fn take(&self, key: Self::Key) -> impl Future<Output = Permit<'_, Self::Key>> + Send;
    }

    impl Acquire for Pacer {
        type Key = ();
        fn take(&self, _: ()) -> impl Future<Output = Permit<'_>> + Send {
            self.acquire()
        }
    }

    impl Acquire for KeyedPacer<i64> {
        type Key = i64;
        fn take(&self, key: i64) -> impl Future<Output = Permit<'_, i64>> + Send {
            self.acquire(key)
        }
    }

    fn second(n: u32) -> Option<Limit> {
        Limit::per_second(n)
    }

    fn per_second(n: u32) -> Arc<Pacer> {
        Arc::new(Pacer::per_second(NonZeroU32::new(n).unwrap()))
    }

    /// Runs `n` requests from `tasks` concurrent tasks; request `i` has key `key(i)`, reaches
    /// the provider `delay(i)` after it starts and is answered then. Every (arrival, key),
    /// sorted.
    async fn run<P: Acquire>(
        pacer: Arc<P>,
        tasks: usize,
        n: usize,
        key: fn(usize) -> P::Key,
        delay: fn(usize) -> Duration,
    ) -> Vec<(Instant, P::Key)> {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (pacer, next) = (pacer.clone(), next.clone());
            handles.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let permit = pacer.take(key(i)).await;
                    tokio::time::sleep(delay(i)).await;
                    mine.push((Instant::now(), key(i)));
                    drop(permit);
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.expect("task"));
        }
        all.sort();
        all
    }

    /// [`run`] for a [`Pacer`]: the sorted arrival times.
    async fn arrivals(
        pacer: Arc<Pacer>,
        tasks: usize,
        n: usize,
        delay: fn(usize) -> Duration,
    ) -> Vec<Instant> {
        times(&run(pacer, tasks, n, |_| (), delay).await)
    }

    fn no_delay(_: usize) -> Duration {
        Duration::ZERO
    }

    fn times<K>(sent: &[(Instant, K)]) -> Vec<Instant> {
        sent.iter().map(|(t, _)| *t).collect()
    }

    fn rate(times: &[Instant]) -> f64 {
        let span = times[times.len() - 1].duration_since(times[0]);
        (times.len() - 1) as f64 / span.as_secs_f64()
    }

    /// At most `overall` requests in any sliding second, and requests with one key `key_gap`
    /// apart or more.
    fn check_limits(sent: &[(Instant, i64)], overall: usize, key_gap: Duration) {
        let most = max_in_window(&times(sent), Duration::from_secs(1));
        assert!(
            most <= overall,
            "{most} requests in one second, limit {overall}"
        );
        let mut last: HashMap<i64, Instant> = HashMap::new();
        for (t, key) in sent {
            if let Some(prev) = last.insert(*key, *t) {
                assert!(
                    t.duration_since(prev) >= key_gap,
                    "key {key}: two requests {:?} apart",
                    t.duration_since(prev)
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_sliding_second_and_close_to_it() {
        for limit in [1u32, 7, 80] {
            let n = limit as usize * 5;
            let s = arrivals(per_second(limit), 64, n, no_delay).await;
            assert_eq!(s.len(), n);
            let most = max_in_window(&s, Duration::from_secs(1));
            assert!(
                most <= limit as usize,
                "limit {limit}: {most} in one second"
            );
            // The margin is kept even for a window stretched by 2.5 % (jitter of 25 ms).
            assert!(max_in_window(&s, Duration::from_millis(1025)) <= limit as usize);
            let achieved = rate(&s);
            assert!(
                achieved >= 0.95 * f64::from(limit),
                "limit {limit}: achieved {achieved}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn overall_and_per_key_limits_hold_in_every_sliding_second_at_close_to_the_rate() {
        let s = Arc::new(KeyedPacer::new(second(30), second(1)));
        // 100 keys in turn, as a mass mailing goes: the overall pace binds.
        let sent = run(s, 64, 300, |i| 1_000 + (i % 100) as i64, no_delay).await;
        assert_eq!(sent.len(), 300);
        // The margin holds even for windows stretched by 2.5 % (25 ms of jitter).
        check_limits(&sent, 30, Duration::from_millis(1025));
        assert!(max_in_window(&times(&sent), Duration::from_millis(1025)) <= 30);
        let achieved = rate(&times(&sent));
        assert!(achieved >= 0.95 * 30.0, "{achieved} per second");
    }

    #[tokio::test(start_paused = true)]
    async fn few_keys_many_requests_keep_both_limits() {
        // Five keys, 60 requests: the per-key pace binds; the overall one still holds.
        let s = Arc::new(KeyedPacer::new(second(3), second(1)));
        let sent = run(s, 16, 60, |i| (i % 5) as i64, no_delay).await;
        assert_eq!(sent.len(), 60);
        check_limits(&sent, 3, Duration::from_millis(1025));
        // Only the overall pace: no per-key spacing required, the overall limit holds.
        let s = Arc::new(KeyedPacer::new(second(30), None));
        let sent = run(s, 16, 120, |_| 7, no_delay).await;
        check_limits(&sent, 30, Duration::ZERO);
        // Only the per-key pace.
        let s = Arc::new(KeyedPacer::new(None, second(1)));
        let sent = run(s, 16, 20, |i| (i % 2) as i64, no_delay).await;
        check_limits(&sent, 20, Duration::from_millis(1025));
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_no_wait() {
        let s = Arc::new(KeyedPacer::new(None, None));
        assert_eq!(s.limits(), (None, None));
        let sent = run(s, 4, 100, |_| 1, no_delay).await;
        assert_eq!(sent[0].0, sent[99].0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_arrival_holds_back_the_requests_that_would_share_its_window() {
        // The first requests take 200 ms to arrive (a cold connection), far beyond the margin;
        // later ones 1 ms. Spacing alone would put the 31st arrival 0.83 s after the 1st.
        let s = arrivals(per_second(30), 64, 150, |i| {
            Duration::from_millis(if i < 3 { 200 } else { 1 })
        })
        .await;
        let most = max_in_window(&s, Duration::from_secs(1));
        assert!(most <= 30, "{most} arrivals in one second");
        assert!(rate(&s) >= 0.95 * 30.0, "{}", rate(&s));
        // A stall in the middle of the run (once the usual round trip is known).
        let s = arrivals(per_second(30), 64, 150, |i| {
            Duration::from_millis(if (40..43).contains(&i) { 300 } else { 2 })
        })
        .await;
        let most = max_in_window(&s, Duration::from_secs(1));
        assert!(most <= 30, "{most} arrivals in one second");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_arrivals_hold_back_the_requests_that_would_share_their_keyed_windows() {
        // Cold start over 40 keys, both limits at once.
        let s = Arc::new(KeyedPacer::new(second(30), second(1)));
        let sent = run(
            s,
            64,
            150,
            |i| (i % 40) as i64,
            |i| Duration::from_millis(if i < 3 { 200 } else { 1 }),
        )
        .await;
        check_limits(&sent, 30, Duration::from_secs(1));
        let achieved = rate(&times(&sent));
        assert!(achieved >= 0.95 * 30.0, "{achieved}");
        // A stall in the middle of the run, once the usual round trip is known; one key only
        // after the stalled request, to test the per-key guard.
        let s = Arc::new(KeyedPacer::new(second(30), second(1)));
        let sent = run(
            s,
            64,
            100,
            |i| if i < 40 { i as i64 } else { 7 },
            |i| Duration::from_millis(if i == 40 { 600 } else { 2 }),
        )
        .await;
        check_limits(&sent, 30, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_counts_until_its_answer_bounds_its_arrival() {
        let pacer = per_second(2);
        let first = pacer.acquire().await;
        let second = pacer.acquire().await;
        assert_eq!(second.start - first.start, pacer.interval());
        // Both stay in flight for 3 s: a third request waits for them to be answered, then for
        // one of them to leave the window (it may have arrived just before its answer).
        let p = pacer.clone();
        let third = tokio::spawn(async move {
            let permit = p.acquire().await;
            let start = permit.start;
            drop(permit);
            start
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let answered = Instant::now();
        drop(first);
        drop(second);
        let third = third.await.unwrap();
        assert!(
            third >= answered + Duration::from_secs(1),
            "{:?}",
            third - answered
        );
        assert!(third <= answered + Duration::from_millis(1010));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_poll_counts_from_its_start() {
        let pacer = Pacer::per_second(NonZeroU32::new(1).unwrap());
        let poll = pacer.acquire().await;
        let started = poll.start;
        tokio::time::sleep(Duration::from_secs(30)).await;
        poll.arrived_at_start();
        // Its answer came 30 s later, but it counted when it started: no wait now.
        let next = pacer.acquire().await;
        assert_eq!(next.start, started + Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn no_burst_after_idle_time() {
        let pacer = per_second(10);
        let mut s = arrivals(pacer.clone(), 4, 10, no_delay).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        s.extend(arrivals(pacer, 16, 30, no_delay).await);
        s.sort();
        assert!(max_in_window(&s, Duration::from_secs(1)) <= 10);
        for w in s.windows(2) {
            assert!(w[1].duration_since(w[0]) >= Duration::from_millis(102));
        }
    }

    #[test]
    fn a_late_waker_does_not_push_the_pace_back() {
        let pacer = Pacer::per_second(NonZeroU32::new(10).unwrap());
        let t0 = Instant::now();
        let slots: Vec<Instant> = (0..10).map(|_| pacer.inner.reserve(&(), t0)).collect();
        // Reservations follow the schedule, whenever the waiters actually wake up.
        for (i, s) in slots.iter().enumerate() {
            assert_eq!(s.duration_since(t0), pacer.interval() * i as u32);
        }
        // A waiter that comes later than its predecessors' slots starts at once.
        let late = t0 + pacer.interval() * 12;
        assert_eq!(pacer.inner.reserve(&(), late), late);
        assert_eq!(pacer.inner.reserve(&(), late), late + pacer.interval());
    }

    #[test]
    fn a_key_waiting_for_its_pace_does_not_hold_up_other_keys() {
        let s = KeyedPacer::new(second(30), second(1));
        let t0 = Instant::now();
        let overall = second(30).unwrap().interval();
        let per_key = second(1).unwrap().interval();
        assert_eq!(s.reserve(&1, t0), t0);
        // Key 1 again: a per-key interval later.
        assert_eq!(s.reserve(&1, t0), t0 + per_key);
        // Key 2 takes the next overall slot, long before key 1's second request.
        assert_eq!(s.reserve(&2, t0), t0 + overall);
        assert_eq!(s.reserve(&3, t0), t0 + overall * 2);
        // An overall slot right before key 1's second request is still free...
        let before = t0 + per_key - overall;
        assert_eq!(s.reserve(&4, before), before);
        // ...but the one right after it is taken by key 1's second request.
        assert_eq!(s.reserve(&5, t0 + per_key), t0 + per_key + overall);
    }

    #[tokio::test(start_paused = true)]
    async fn the_per_key_tables_are_swept() {
        let s = KeyedPacer::new(None, second(1));
        for i in 0..SWEEP_EVERY as i64 - 1 {
            drop(s.acquire(i).await);
        }
        assert_eq!(
            s.tracked_keys(),
            (SWEEP_EVERY as usize - 1, SWEEP_EVERY as usize - 1)
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s.acquire(-1).await);
        // Key -1's own window is created after the sweep.
        assert_eq!(s.tracked_keys(), (1, 1));
    }

    #[test]
    fn limits_and_spacing() {
        for (count, nanos) in [
            (1, 1_030_000_000),
            (10, 103_000_000),
            (30, 34_333_333),
            (80, 12_875_000),
        ] {
            let interval = second(count).map(Limit::interval);
            assert_eq!(interval, Some(Duration::from_nanos(nanos)), "{count}/s");
        }
        assert_eq!(
            Limit::new(20, Duration::from_secs(60)).map(Limit::interval),
            Some(Duration::from_millis(3090))
        );
        assert_eq!(Limit::new(0, Duration::from_secs(1)), None);
        assert_eq!(Limit::new(1, Duration::ZERO), None);
        assert_eq!(Limit::new(2, Duration::from_nanos(1)), None);
        let pacer = Pacer::per_second(NonZeroU32::new(7).unwrap());
        assert_eq!(pacer.limit(), second(7).unwrap());
        assert_eq!(pacer.inner.limits(), (second(7), None));
    }

    #[test]
    fn max_in_window_counts_half_open_windows() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let second = Duration::from_secs(1);
        assert_eq!(max_in_window(&[], second), 0);
        assert_eq!(max_in_window(&[at(0), at(1000), at(2000)], second), 1);
        assert_eq!(max_in_window(&[at(0), at(999), at(1000)], second), 2);
        assert_eq!(max_in_window(&[at(5), at(5), at(5)], second), 3);
    }

    #[test]
    fn the_usual_round_trip_is_the_shortest_recent_one_once_enough_were_seen() {
        let mut r = RoundTrips::default();
        for ms in 0..MIN_ROUND_TRIPS as u64 - 1 {
            r.record(Duration::from_millis(40 - ms));
        }
        assert_eq!(r.usual(), Duration::ZERO);
        r.record(Duration::from_millis(30));
        assert_eq!(r.usual(), Duration::from_millis(26));
        for _ in 0..ROUND_TRIPS {
            r.record(Duration::from_millis(50));
        }
        assert_eq!(r.usual(), Duration::from_millis(50));
    }

    #[test]
    fn pacers_and_permits_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Pacer>();
        send_sync::<KeyedPacer<i64>>();
        send_sync::<Permit<'static>>();
        send_sync::<Permit<'static, i64>>();
        let pacer = Pacer::per_second(NonZeroU32::new(1).unwrap());
        fn send<T: Send>(_: &T) {}
        send(&pacer.acquire());
        send(&KeyedPacer::<i64>::new(None, None).acquire(1));
    }
}
