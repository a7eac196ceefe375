//! Client-side pacing under Telegram's limits: per bot and per chat.
//!
//! Telegram counts messages in a sliding window. A token bucket that starts full lets a whole
//! second's quota out at once, and the next second's messages then land in the same window as
//! that burst. This pacer works in two steps, each over both limits at once:
//!
//! 1. **Even spacing.** A message gets the earliest start time that is at least one bot
//!    interval from every other reserved start and one chat interval after the previous message
//!    to its chat; intervals are `per / count` stretched by [`MARGIN_PERMILLE`], with no burst.
//!    A message held back by its chat's pace does not hold up messages to other chats, and a
//!    wait for the bot-wide pace does not let two messages to one chat start closer than the
//!    chat interval. Start times are reserved in advance, so a waiter that wakes a little late
//!    does not push the following ones back.
//! 2. **A sliding-window guard on arrival times.** Telegram counts a message when it *arrives*,
//!    which may be well after it was started (a new connection, a stalled thread). A message
//!    holds a [`Permit`] until its answer is read; its arrival is then known to be no later than
//!    the answer's time minus the usual round trip (the shortest of the recent ones; none is
//!    assumed until enough were seen). A message starts only when fewer than `count` earlier
//!    messages may have arrived in the last `per`, bot-wide and in its chat, counting those
//!    still in flight. In steady state the spacing keeps the guard idle; after a stall it holds
//!    the next messages back instead of letting them land in the stalled message's window.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How much the spacing is stretched beyond `per / count`, in thousandths (3 %): any `count + 1`
/// consecutive messages span at least `per` plus 3 % of it, which absorbs that much jitter, and
/// the pace reaches about 97 % of the limit.
pub(crate) const MARGIN_PERMILLE: u32 = 30;

/// How many answered messages the usual round trip is taken from (the shortest of them).
const ROUND_TRIPS: usize = 64;
/// How many answered messages are needed before a round trip is assumed at all.
const MIN_ROUND_TRIPS: usize = 16;
/// How often a guard blocked by messages still in flight looks again.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(5);
/// How many reservations pass between two sweeps of the per-chat tables.
const SWEEP_EVERY: u64 = 1024;

/// The spacing that keeps at most `count` messages in any window of `per`, with the margin.
pub(crate) fn spacing(count: NonZeroU32, per: Duration) -> Duration {
    per * (1000 + MARGIN_PERMILLE) / 1000 / count.get()
}

/// At most `count` messages in any sliding window of `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limit {
    count: NonZeroU32,
    per: Duration,
}

impl Limit {
    /// `None` when `count` or `per` is zero (no limit).
    pub(crate) fn new(count: u32, per: Duration) -> Option<Limit> {
        let count = NonZeroU32::new(count)?;
        (!spacing(count, per).is_zero()).then_some(Limit { count, per })
    }

    /// The time between two start times under this limit.
    pub(crate) fn interval(self) -> Duration {
        spacing(self.count, self.per)
    }

    fn window(self) -> Window {
        Window {
            limit: self.count.get() as usize,
            width: self.per,
            entries: VecDeque::new(),
            first: 0,
        }
    }
}

/// One message in a [`Window`].
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The latest time it may have arrived at Telegram; `None` while it is in flight.
    arrived_by: Option<Instant>,
}

/// The messages that may still count in one of Telegram's sliding windows.
#[derive(Debug)]
struct Window {
    limit: usize,
    width: Duration,
    entries: VecDeque<Entry>,
    /// The sequence number of `entries[0]`.
    first: u64,
}

impl Window {
    /// Forgets the oldest messages that no longer count; whether none is left.
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

    /// Whether a message may start at `now`: `Ok`, or `Err` with the time to look again.
    fn check(&mut self, now: Instant) -> Result<(), Instant> {
        self.prune(now);
        let counts = |e: &Entry| e.arrived_by.is_none_or(|t| t + self.width > now);
        let count = self.entries.iter().filter(|e| counts(e)).count();
        if count < self.limit {
            return Ok(());
        }
        // The earliest time enough of the answered messages have left the window.
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

    /// Records a message started now, in flight; its sequence number.
    fn push(&mut self) -> u64 {
        self.entries.push_back(Entry { arrived_by: None });
        self.first + self.entries.len() as u64 - 1
    }

    /// Records that message `seq` arrived at `arrived_by` at the latest.
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
    /// The round trip a message surely took at least (zero until enough were seen).
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
    /// Reserved bot-wide start times that may still constrain a new one.
    bot_slots: BTreeSet<Instant>,
    /// The earliest next start time per chat.
    chat_next: HashMap<i64, Instant>,
    reservations: u64,
    bot_window: Option<Window>,
    chat_windows: HashMap<i64, Window>,
    round_trips: RoundTrips,
}

/// Paces messages under a bot-wide and a per-chat limit (either may be off).
#[derive(Debug)]
pub(crate) struct Scheduler {
    bot: Option<Limit>,
    chat: Option<Limit>,
    state: Mutex<State>,
}

/// The right to send one message. Hold it until the answer has been read (drop it then): the
/// time of the answer bounds the time the message arrived.
#[derive(Debug)]
#[must_use = "hold the permit until the answer has been read"]
pub(crate) struct Permit<'a> {
    scheduler: &'a Scheduler,
    chat_id: i64,
    bot_seq: Option<u64>,
    chat_seq: Option<u64>,
    start: Instant,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.bot_seq.is_none() && self.chat_seq.is_none() {
            return;
        }
        let now = Instant::now();
        let mut s = self.scheduler.lock();
        let took = now.saturating_duration_since(self.start);
        let usual = s.round_trips.usual();
        s.round_trips.record(took);
        let arrived_by = now - usual.min(took);
        if let (Some(seq), Some(w)) = (self.bot_seq, s.bot_window.as_mut()) {
            w.answered(seq, arrived_by);
        }
        if let (Some(seq), Some(w)) = (self.chat_seq, s.chat_windows.get_mut(&self.chat_id)) {
            w.answered(seq, arrived_by);
        }
    }
}

impl Scheduler {
    /// Paces under `bot` across all chats and `chat` in each chat.
    pub(crate) fn new(bot: Option<Limit>, chat: Option<Limit>) -> Self {
        Scheduler {
            bot,
            chat,
            state: Mutex::new(State {
                bot_slots: BTreeSet::new(),
                chat_next: HashMap::new(),
                reservations: 0,
                bot_window: bot.map(Limit::window),
                chat_windows: HashMap::new(),
                round_trips: RoundTrips::default(),
            }),
        }
    }

    /// The bot-wide and the per-chat limit.
    #[cfg(test)]
    pub(crate) fn limits(&self) -> (Option<Limit>, Option<Limit>) {
        (self.bot, self.chat)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves the earliest evenly spaced start time at or after `now` for `chat_id`.
    fn reserve(&self, chat_id: i64, now: Instant) -> Instant {
        let mut s = self.lock();
        let s = &mut *s;
        let mut slot = now;
        if self.chat.is_some()
            && let Some(next) = s.chat_next.get(&chat_id)
        {
            slot = slot.max(*next);
        }
        if let Some(bot) = self.bot {
            let gap = bot.interval();
            // Start times a full gap in the past constrain nothing any more.
            while s.bot_slots.first().is_some_and(|first| *first + gap <= now) {
                s.bot_slots.pop_first();
            }
            // The earliest time at or after `slot` at least `gap` from every reserved one.
            for &r in &s.bot_slots {
                if r + gap <= slot {
                    continue;
                }
                if slot + gap <= r {
                    break;
                }
                slot = r + gap;
            }
            s.bot_slots.insert(slot);
        }
        if let Some(chat) = self.chat {
            s.chat_next.insert(chat_id, slot + chat.interval());
            s.reservations += 1;
            if s.reservations.is_multiple_of(SWEEP_EVERY) {
                s.chat_next.retain(|_, next| *next > now);
                s.chat_windows.retain(|_, w| !w.prune(now));
            }
        }
        slot
    }

    /// Waits for the turn of a message to `chat_id`. A waiter that is dropped leaves its turn
    /// unused (capacity is lost, no limit is ever exceeded).
    pub(crate) async fn acquire(&self, chat_id: i64) -> Permit<'_> {
        let now = Instant::now();
        if self.bot.is_none() && self.chat.is_none() {
            return Permit {
                scheduler: self,
                chat_id,
                bot_seq: None,
                chat_seq: None,
                start: now,
            };
        }
        let slot = self.reserve(chat_id, now);
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
        loop {
            let now = Instant::now();
            let retry = {
                let mut s = self.lock();
                let s = &mut *s;
                let bot = s.bot_window.as_mut().map(|w| w.check(now));
                let chat = match self.chat {
                    Some(limit) => Some(
                        s.chat_windows
                            .entry(chat_id)
                            .or_insert_with(|| limit.window())
                            .check(now),
                    ),
                    None => None,
                };
                match (bot, chat) {
                    (Some(Err(a)), Some(Err(b))) => a.max(b),
                    (Some(Err(a)), _) | (_, Some(Err(a))) => a,
                    _ => {
                        let bot_seq = s.bot_window.as_mut().map(Window::push);
                        let chat_seq = self
                            .chat
                            .and_then(|_| s.chat_windows.get_mut(&chat_id))
                            .map(Window::push);
                        return Permit {
                            scheduler: self,
                            chat_id,
                            bot_seq,
                            chat_seq,
                            start: now,
                        };
                    }
                }
            };
            tokio::time::sleep_until(retry).await;
        }
    }

    #[cfg(test)]
    fn tracked_chats(&self) -> (usize, usize) {
        let s = self.lock();
        (s.chat_next.len(), s.chat_windows.len())
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

    fn second(n: u32) -> Option<Limit> {
        Limit::new(n, Duration::from_secs(1))
    }

    /// Sends `n` messages from `tasks` concurrent tasks, message `i` to chat `chat(i)`,
    /// arriving and answered `delay(i)` after it starts; every (arrival, chat), sorted.
    async fn run(
        s: Arc<Scheduler>,
        tasks: usize,
        n: usize,
        chat: fn(usize) -> i64,
        delay: fn(usize) -> Duration,
    ) -> Vec<(Instant, i64)> {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (s, next) = (s.clone(), next.clone());
            handles.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let permit = s.acquire(chat(i)).await;
                    tokio::time::sleep(delay(i)).await;
                    mine.push((Instant::now(), chat(i)));
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

    fn no_delay(_: usize) -> Duration {
        Duration::ZERO
    }

    fn check_limits(sent: &[(Instant, i64)], bot: usize, chat_gap: Duration) {
        let times: Vec<Instant> = sent.iter().map(|(t, _)| *t).collect();
        let most = max_in_window(&times, Duration::from_secs(1));
        assert!(most <= bot, "{most} messages in one second, limit {bot}");
        let mut last: HashMap<i64, Instant> = HashMap::new();
        for (t, chat) in sent {
            if let Some(prev) = last.insert(*chat, *t) {
                assert!(
                    t.duration_since(prev) >= chat_gap,
                    "chat {chat}: two messages {:?} apart",
                    t.duration_since(prev)
                );
            }
        }
    }

    fn rate(sent: &[(Instant, i64)]) -> f64 {
        let span = sent[sent.len() - 1].0.duration_since(sent[0].0);
        (sent.len() - 1) as f64 / span.as_secs_f64()
    }

    #[tokio::test(start_paused = true)]
    async fn bot_and_chat_limits_hold_in_every_sliding_second_at_close_to_the_bot_rate() {
        let s = Arc::new(Scheduler::new(second(30), second(1)));
        // 100 chats in turn, as a mass mailing goes: the bot-wide pace binds.
        let sent = run(s, 64, 300, |i| 1_000 + (i % 100) as i64, no_delay).await;
        assert_eq!(sent.len(), 300);
        // The margin holds even for windows stretched by 2.5 % (25 ms of jitter).
        check_limits(&sent, 30, Duration::from_millis(1025));
        let times: Vec<Instant> = sent.iter().map(|(t, _)| *t).collect();
        assert!(max_in_window(&times, Duration::from_millis(1025)) <= 30);
        assert!(rate(&sent) >= 0.95 * 30.0, "{} per second", rate(&sent));
    }

    #[tokio::test(start_paused = true)]
    async fn few_chats_many_messages_keep_both_limits() {
        // Five chats, 60 messages: the per-chat pace binds; the bot-wide one still holds.
        let s = Arc::new(Scheduler::new(second(3), second(1)));
        let sent = run(s, 16, 60, |i| (i % 5) as i64, no_delay).await;
        assert_eq!(sent.len(), 60);
        check_limits(&sent, 3, Duration::from_millis(1025));
        // Only the bot-wide pace: no chat spacing required, the bot limit holds.
        let s = Arc::new(Scheduler::new(second(30), None));
        let sent = run(s, 16, 120, |_| 7, no_delay).await;
        check_limits(&sent, 30, Duration::ZERO);
        // Only the per-chat pace.
        let s = Arc::new(Scheduler::new(None, second(1)));
        let sent = run(s, 16, 20, |i| (i % 2) as i64, no_delay).await;
        check_limits(&sent, 20, Duration::from_millis(1025));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_arrivals_hold_back_the_messages_that_would_share_their_windows() {
        // The first messages take 200 ms to arrive (a cold connection), far beyond the margin;
        // later ones 1 ms. Spacing alone would put the 31st arrival 0.83 s after the 1st.
        let s = Arc::new(Scheduler::new(second(30), second(1)));
        let sent = run(
            s,
            64,
            150,
            |i| (i % 40) as i64,
            |i| Duration::from_millis(if i < 3 { 200 } else { 1 }),
        )
        .await;
        check_limits(&sent, 30, Duration::from_secs(1));
        assert!(rate(&sent) >= 0.95 * 30.0, "{}", rate(&sent));
        // A stall in the middle of the run, once the usual round trip is known; one chat only
        // after the stalled message, to test the per-chat guard.
        let s = Arc::new(Scheduler::new(second(30), second(1)));
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

    #[test]
    fn a_chat_waiting_for_its_pace_does_not_hold_up_other_chats() {
        let s = Scheduler::new(second(30), second(1));
        let t0 = Instant::now();
        let bot = second(30).unwrap().interval();
        let chat = second(1).unwrap().interval();
        assert_eq!(s.reserve(1, t0), t0);
        // Chat 1 again: a chat interval later.
        assert_eq!(s.reserve(1, t0), t0 + chat);
        // Chat 2 takes the next bot-wide slot, long before chat 1's second message.
        assert_eq!(s.reserve(2, t0), t0 + bot);
        assert_eq!(s.reserve(3, t0), t0 + bot * 2);
        // A bot-wide slot right before chat 1's second message is still free...
        let before = t0 + chat - bot;
        assert_eq!(s.reserve(4, before), before);
        // ...but the one right after it is taken by chat 1's second message.
        assert_eq!(s.reserve(5, t0 + chat), t0 + chat + bot);
    }

    #[tokio::test(start_paused = true)]
    async fn the_per_chat_tables_are_swept() {
        let s = Scheduler::new(None, second(1));
        for i in 0..SWEEP_EVERY as i64 - 1 {
            drop(s.acquire(i).await);
        }
        assert_eq!(
            s.tracked_chats(),
            (SWEEP_EVERY as usize - 1, SWEEP_EVERY as usize - 1)
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s.acquire(-1).await);
        // Chat -1's own window is created after the sweep.
        assert_eq!(s.tracked_chats(), (1, 1));
    }

    #[test]
    fn limits_and_spacing() {
        assert_eq!(
            second(1).map(Limit::interval),
            Some(Duration::from_millis(1030))
        );
        assert_eq!(
            Limit::new(20, Duration::from_secs(60)).map(Limit::interval),
            Some(Duration::from_millis(3090))
        );
        assert_eq!(Limit::new(0, Duration::from_secs(1)), None);
        assert_eq!(Limit::new(1, Duration::ZERO), None);
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
