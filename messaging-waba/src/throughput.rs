//! Throughput: the per-number rate, the pair rate and the messaging-limit tier.
//!
//! | limit | Meta's rule | here |
//! |---|---|---|
//! | per number | 80 messages per second by default (error 130429) | a pacer in front of every message request ([`WabaBuilder::rate_limit`](crate::WabaBuilder::rate_limit)): evenly spaced, never more than the rate in any sliding second; the send waits |
//! | pair | about one message per 6 seconds to the same person (error 131056) | [`PairLimiter`]: a send sooner fails with `RateLimited` and the wait, before any request |
//! | messaging-limit tier | 250 / 2,000 / 10,000 / 100,000 / unlimited unique people per moving 24 hours, per business portfolio, outside the customer service window | [`TierTracker`]: the tier from webhooks, the count from sends; exposed, not enforced |

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A messaging-limit tier: how many unique people a business portfolio may reach outside the
/// customer service window in a moving 24 hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessagingTier {
    /// At most this many unique people.
    Limited(u64),
    /// No limit.
    Unlimited,
}

impl MessagingTier {
    /// Reads Meta's tier: `TIER_250`, `TIER_2K`, `TIER_10K`, `TIER_100K`, `TIER_UNLIMITED` (also the
    /// old `TIER_50`, `TIER_1K`), or a number (`2000`, `-1` for unlimited). `TIER_NOT_SET` and
    /// anything unreadable give `None`.
    ///
    /// ```
    /// use messaging_waba::MessagingTier;
    /// assert_eq!(MessagingTier::from_provider("TIER_2K"), Some(MessagingTier::Limited(2_000)));
    /// assert_eq!(MessagingTier::from_provider("TIER_UNLIMITED"), Some(MessagingTier::Unlimited));
    /// assert_eq!(MessagingTier::from_provider("TIER_NOT_SET"), None);
    /// ```
    pub fn from_provider(s: &str) -> Option<MessagingTier> {
        let s = s.trim().to_ascii_uppercase();
        if let Ok(n) = s.parse::<i64>() {
            return match n {
                n if n < 0 => Some(MessagingTier::Unlimited),
                0 => None,
                n => Some(MessagingTier::Limited(n.unsigned_abs())),
            };
        }
        let rest = s.strip_prefix("TIER_")?;
        if rest == "UNLIMITED" {
            return Some(MessagingTier::Unlimited);
        }
        let (digits, mult) = match rest.strip_suffix('K') {
            Some(d) => (d, 1_000),
            None => (rest, 1),
        };
        let n: u64 = digits.parse().ok()?;
        (n > 0).then_some(MessagingTier::Limited(n * mult))
    }

    /// Reads a tier from JSON: a string or a number.
    pub fn from_value(v: &Value) -> Option<MessagingTier> {
        match v {
            Value::String(s) => Self::from_provider(s),
            Value::Number(n) => Self::from_provider(&n.to_string()),
            _ => None,
        }
    }

    /// The limit for a sender governor: `Some(n)` unique people per 24 hours, `None` unlimited
    /// (the shape of `set_daily_unique_limit(channel_id, Option<u64>)`).
    pub fn daily_unique_limit(self) -> Option<u64> {
        match self {
            MessagingTier::Limited(n) => Some(n),
            MessagingTier::Unlimited => None,
        }
    }

    /// Meta's name for the tier (`TIER_2K`).
    pub fn provider_name(self) -> String {
        match self {
            MessagingTier::Unlimited => "TIER_UNLIMITED".to_owned(),
            MessagingTier::Limited(n) if n >= 1_000 && n % 1_000 == 0 => {
                format!("TIER_{}K", n / 1_000)
            }
            MessagingTier::Limited(n) => format!("TIER_{n}"),
        }
    }
}

impl fmt::Display for MessagingTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.provider_name())
    }
}

const DAY: chrono::TimeDelta = chrono::TimeDelta::hours(24);

#[derive(Debug, Default)]
struct TierInner {
    tier: Option<MessagingTier>,
    /// Last business-initiated send per person.
    recent: HashMap<String, DateTime<Utc>>,
}

/// The messaging-limit tier and the unique people reached outside the window in the last 24
/// hours. The tier belongs to the business portfolio: give every channel of one portfolio the
/// same tracker (it is cheap to clone; clones share state).
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use messaging_waba::{MessagingTier, TierTracker};
/// let t = TierTracker::new();
/// t.set_tier(Some(MessagingTier::Limited(250)));
/// let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
/// t.record_business_initiated("wa:79990001122", now);
/// t.record_business_initiated("wa:79990001122", now);
/// assert_eq!(t.unique_recipients_24h(now), 1);
/// assert_eq!(t.remaining(now), Some(249));
/// ```
#[derive(Clone, Default)]
pub struct TierTracker {
    inner: Arc<Mutex<TierInner>>,
}

impl fmt::Debug for TierTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.lock();
        f.debug_struct("TierTracker")
            .field("tier", &g.tier)
            .field("tracked", &g.recent.len())
            .finish()
    }
}

impl TierTracker {
    /// A tracker with no known tier.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TierInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current tier, when known (from a webhook or set by hand).
    pub fn tier(&self) -> Option<MessagingTier> {
        self.lock().tier
    }

    /// Sets the tier.
    pub fn set_tier(&self, tier: Option<MessagingTier>) {
        self.lock().tier = tier;
    }

    /// Counts a business-initiated message (a template outside the window) to `person`.
    pub fn record_business_initiated(&self, person: &str, at: DateTime<Utc>) {
        let mut g = self.lock();
        let e = g.recent.entry(person.to_owned()).or_insert(at);
        if *e < at {
            *e = at;
        }
        if g.recent.len() > 1024 {
            g.recent.retain(|_, t| at - *t < DAY);
        }
    }

    /// Unique people reached outside the window in the 24 hours before `now`.
    pub fn unique_recipients_24h(&self, now: DateTime<Utc>) -> u64 {
        let g = self.lock();
        g.recent.values().filter(|t| now - **t < DAY).count() as u64
    }

    /// How many more unique people may be reached now; `None` when the tier is unknown or unlimited.
    pub fn remaining(&self, now: DateTime<Utc>) -> Option<u64> {
        let limit = self.tier()?.daily_unique_limit()?;
        Some(limit.saturating_sub(self.unique_recipients_24h(now)))
    }
}

/// Spaces messages to the same person (Meta's pair rate, about one per 6 seconds).
#[derive(Debug)]
pub struct PairLimiter {
    interval: Duration,
    last: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl PairLimiter {
    /// A limiter letting one message per `interval` through to each person (zero: no limit).
    pub fn new(interval: Duration) -> Self {
        PairLimiter {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Takes the slot for `person` at `now`, or says how long until the next one.
    pub fn try_acquire(&self, person: &str, now: DateTime<Utc>) -> Result<(), Duration> {
        if self.interval.is_zero() {
            return Ok(());
        }
        let interval = chrono::TimeDelta::from_std(self.interval).unwrap_or(chrono::TimeDelta::MAX);
        let mut g = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(prev) = g.get(person) {
            let next = *prev + interval;
            if next > now {
                return Err((next - now).to_std().unwrap_or(self.interval));
            }
        }
        g.insert(person.to_owned(), now);
        if g.len() > 4096 {
            g.retain(|_, t| now - *t < interval);
        }
        Ok(())
    }

    /// Gives the slot back (the send did not go out).
    pub fn release(&self, person: &str, at: DateTime<Utc>) {
        let mut g = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if g.get(person) == Some(&at) {
            g.remove(person);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn tiers_read_every_spelling() {
        for (s, t) in [
            ("TIER_50", Some(MessagingTier::Limited(50))),
            ("TIER_250", Some(MessagingTier::Limited(250))),
            ("TIER_1K", Some(MessagingTier::Limited(1_000))),
            ("TIER_2K", Some(MessagingTier::Limited(2_000))),
            ("TIER_10K", Some(MessagingTier::Limited(10_000))),
            ("TIER_100K", Some(MessagingTier::Limited(100_000))),
            ("tier_unlimited", Some(MessagingTier::Unlimited)),
            ("TIER_NOT_SET", None),
            ("2000", Some(MessagingTier::Limited(2_000))),
            ("-1", Some(MessagingTier::Unlimited)),
            ("TIER_XK", None),
            ("", None),
        ] {
            assert_eq!(MessagingTier::from_provider(s), t, "{s}");
        }
        assert_eq!(
            MessagingTier::from_value(&serde_json::json!(100000)),
            Some(MessagingTier::Limited(100_000))
        );
        assert_eq!(MessagingTier::Limited(2_000).provider_name(), "TIER_2K");
        assert_eq!(MessagingTier::Limited(250).provider_name(), "TIER_250");
        assert_eq!(MessagingTier::Unlimited.daily_unique_limit(), None);
    }

    #[test]
    fn unique_people_move_with_the_window() {
        let t = TierTracker::new();
        assert_eq!(t.remaining(t0()), None);
        t.set_tier(Some(MessagingTier::Limited(2)));
        t.record_business_initiated("a", t0());
        t.record_business_initiated("b", t0() + chrono::TimeDelta::hours(12));
        assert_eq!(
            t.unique_recipients_24h(t0() + chrono::TimeDelta::hours(13)),
            2
        );
        assert_eq!(t.remaining(t0() + chrono::TimeDelta::hours(13)), Some(0));
        // "a" falls out of the moving window after 24 hours.
        assert_eq!(
            t.unique_recipients_24h(t0() + chrono::TimeDelta::hours(24)),
            1
        );
        // Clones share state.
        let c = t.clone();
        c.set_tier(Some(MessagingTier::Unlimited));
        assert_eq!(t.tier(), Some(MessagingTier::Unlimited));
    }

    #[test]
    fn pair_limit_spaces_messages_per_person() {
        let p = PairLimiter::new(Duration::from_secs(6));
        p.try_acquire("a", t0()).unwrap();
        let wait = p
            .try_acquire("a", t0() + chrono::TimeDelta::seconds(2))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(4));
        p.try_acquire("b", t0() + chrono::TimeDelta::seconds(2))
            .unwrap();
        p.try_acquire("a", t0() + chrono::TimeDelta::seconds(6))
            .unwrap();
        // Released slots can be taken at once.
        let t = t0() + chrono::TimeDelta::seconds(100);
        p.try_acquire("c", t).unwrap();
        p.release("c", t);
        p.try_acquire("c", t).unwrap();
        let off = PairLimiter::new(Duration::ZERO);
        off.try_acquire("a", t0()).unwrap();
        off.try_acquire("a", t0()).unwrap();
    }
}
