//! Client-side pacing under a provider's rate limit.
//!
//! Providers count requests in a sliding window. A token bucket that starts full lets the whole
//! quota out at once, and the next second's requests then land in the same window as that burst.
//! This pacer works in two steps:
//!
//! 1. **Even spacing.** Start times are handed out `per / count` apart, stretched by
//!    [`MARGIN_PERMILLE`], with no burst. They are reserved in advance, so a waiter that wakes a
//!    little late does not push the following ones back: the pace does not drift below the rate.
//! 2. **A sliding-window guard on arrival times.** The provider counts a request when it
//!    *arrives*, which may be well after it was started (a new connection, a stalled thread). A
//!    request holds a [`Permit`] until its answer is read; its arrival is then known to be no
//!    later than the answer's time minus the usual round trip (the shortest of the recent
//!    ones; none is assumed until enough were seen). A request starts only when fewer than
//!    `count` earlier requests may have arrived in the last `per`, counting those still in
//!    flight. In steady state the spacing keeps the guard idle; after a stall it holds the next
//!    requests back instead of letting them land in the stalled request's window.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How much the spacing is stretched beyond `per / count`, in thousandths (3 %): any `count + 1`
/// consecutive requests span at least `per` plus 3 % of it, which absorbs that much jitter, and
/// the pace reaches about 97 % of the limit.
pub(crate) const MARGIN_PERMILLE: u32 = 30;

/// How many answered requests the usual round trip is taken from (the shortest of them).
const ROUND_TRIPS: usize = 64;
/// How many answered requests are needed before a round trip is assumed at all.
const MIN_ROUND_TRIPS: usize = 16;
/// How often a guard blocked by requests still in flight looks again.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(5);

/// The spacing that keeps at most `count` requests in any window of `per`, with the margin.
pub(crate) fn spacing(count: NonZeroU32, per: Duration) -> Duration {
    per * (1000 + MARGIN_PERMILLE) / 1000 / count.get()
}

/// One request in a [`Window`].
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The latest time it may have arrived at the provider; `None` while it is in flight.
    arrived_by: Option<Instant>,
}

/// The requests that may still count in the provider's sliding window.
#[derive(Debug)]
struct Window {
    limit: usize,
    width: Duration,
    entries: VecDeque<Entry>,
    /// The sequence number of `entries[0]`.
    first: u64,
}

impl Window {
    fn new(limit: NonZeroU32, width: Duration) -> Self {
        Window {
            limit: limit.get() as usize,
            width,
            entries: VecDeque::new(),
            first: 0,
        }
    }

    /// Whether a request may start at `now`: `Ok`, or `Err` with the time to look again.
    fn check(&mut self, now: Instant) -> Result<(), Instant> {
        while self
            .entries
            .front()
            .and_then(|e| e.arrived_by)
            .is_some_and(|t| t + self.width <= now)
        {
            self.entries.pop_front();
            self.first += 1;
        }
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

#[derive(Debug)]
struct State {
    /// The next free start time of the even spacing.
    next: Option<Instant>,
    window: Window,
    round_trips: RoundTrips,
}

/// Paces requests so that no sliding window of `per` ever holds more than `count` of them.
#[derive(Debug)]
pub(crate) struct Pacer {
    interval: Duration,
    state: Mutex<State>,
}

/// The right to send one request. Hold it until the answer has been read (drop it then): the
/// time of the answer bounds the time the request arrived.
#[derive(Debug)]
#[must_use = "hold the permit until the answer has been read"]
pub(crate) struct Permit<'a> {
    pacer: &'a Pacer,
    seq: u64,
    start: Instant,
    /// Whether the answer's time says when the request arrived (not for a long poll).
    timed: bool,
}

impl Permit<'_> {
    /// For a request the provider holds before answering (a long poll): its answer's time says
    /// nothing about its arrival, so it is counted as having arrived when it started.
    pub(crate) fn arrived_at_start(mut self) {
        self.timed = false;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut s = self.pacer.lock();
        let arrived_by = if self.timed {
            let took = now.saturating_duration_since(self.start);
            let usual = s.round_trips.usual();
            s.round_trips.record(took);
            now - usual.min(took)
        } else {
            self.start
        };
        s.window.answered(self.seq, arrived_by);
    }
}

impl Pacer {
    /// At most `count` requests in any sliding window of `per`.
    pub(crate) fn new(count: NonZeroU32, per: Duration) -> Self {
        Pacer {
            interval: spacing(count, per),
            state: Mutex::new(State {
                next: None,
                window: Window::new(count, per),
                round_trips: RoundTrips::default(),
            }),
        }
    }

    /// At most `count` requests in any sliding second.
    pub(crate) fn per_second(count: NonZeroU32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// The time between two start times.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves the earliest free start time of the even spacing at or after `now`.
    fn reserve(&self, now: Instant) -> Instant {
        let mut s = self.lock();
        let slot = s.next.map_or(now, |n| n.max(now));
        s.next = Some(slot + self.interval);
        slot
    }

    /// Waits for this request's turn. A waiter that is dropped leaves its turn unused (capacity
    /// is lost, the limit is never exceeded).
    pub(crate) async fn acquire(&self) -> Permit<'_> {
        let now = Instant::now();
        let slot = self.reserve(now);
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
        loop {
            let now = Instant::now();
            let retry = {
                let mut s = self.lock();
                match s.window.check(now) {
                    Ok(()) => {
                        let seq = s.window.push();
                        return Permit {
                            pacer: self,
                            seq,
                            start: now,
                            timed: true,
                        };
                    }
                    Err(at) => at,
                }
            };
            tokio::time::sleep_until(retry).await;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    /// The largest number of `times` (sorted) in any half-open window of `per`, the way a
    /// provider counts them.
    pub(crate) fn max_in_window(times: &[Instant], per: Duration) -> usize {
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

    /// Runs `n` requests from `tasks` concurrent tasks; request `i` reaches the provider
    /// `delay(i)` after it starts and is answered then. The sorted arrival times.
    async fn arrivals(
        pacer: Arc<Pacer>,
        tasks: usize,
        n: usize,
        delay: fn(usize) -> Duration,
    ) -> Vec<Instant> {
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
                    let permit = pacer.acquire().await;
                    tokio::time::sleep(delay(i)).await;
                    mine.push(Instant::now());
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

    fn rate(times: &[Instant]) -> f64 {
        let span = times[times.len() - 1].duration_since(times[0]);
        (times.len() - 1) as f64 / span.as_secs_f64()
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_sliding_second_and_close_to_it() {
        for limit in [1u32, 7, 80] {
            let pacer = Arc::new(Pacer::per_second(NonZeroU32::new(limit).unwrap()));
            let n = limit as usize * 5;
            let s = arrivals(pacer, 64, n, |_| Duration::ZERO).await;
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
    async fn a_slow_arrival_holds_back_the_requests_that_would_share_its_window() {
        // The first requests take 200 ms to arrive (a cold connection), far beyond the margin;
        // later ones 1 ms. Spacing alone would put the 31st arrival 0.83 s after the 1st.
        let pacer = Arc::new(Pacer::per_second(NonZeroU32::new(30).unwrap()));
        let s = arrivals(pacer, 64, 150, |i| {
            Duration::from_millis(if i < 3 { 200 } else { 1 })
        })
        .await;
        let most = max_in_window(&s, Duration::from_secs(1));
        assert!(most <= 30, "{most} arrivals in one second");
        assert!(rate(&s) >= 0.95 * 30.0, "{}", rate(&s));
        // A stall in the middle of the run (once the usual round trip is known).
        let pacer = Arc::new(Pacer::per_second(NonZeroU32::new(30).unwrap()));
        let s = arrivals(pacer, 64, 150, |i| {
            Duration::from_millis(if (40..43).contains(&i) { 300 } else { 2 })
        })
        .await;
        let most = max_in_window(&s, Duration::from_secs(1));
        assert!(most <= 30, "{most} arrivals in one second");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_counts_until_its_answer_bounds_its_arrival() {
        let pacer = Arc::new(Pacer::per_second(NonZeroU32::new(2).unwrap()));
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
        let pacer = Arc::new(Pacer::per_second(NonZeroU32::new(10).unwrap()));
        let mut s = arrivals(pacer.clone(), 4, 10, |_| Duration::ZERO).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        s.extend(arrivals(pacer, 16, 30, |_| Duration::ZERO).await);
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
        let slots: Vec<Instant> = (0..10).map(|_| pacer.reserve(t0)).collect();
        // Reservations follow the schedule, whenever the waiters actually wake up.
        for (i, s) in slots.iter().enumerate() {
            assert_eq!(s.duration_since(t0), pacer.interval() * i as u32);
        }
        assert_eq!(pacer.interval(), Duration::from_millis(103));
        assert_eq!(
            spacing(NonZeroU32::new(80).unwrap(), Duration::from_secs(1)),
            Duration::from_nanos(12_875_000)
        );
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
}
