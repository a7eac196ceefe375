//! Injected time. The engine never reads the system clock directly, so tests and simulations
//! run in virtual time, deterministically and fast.

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to; cheap to clone, clones share the time.
///
/// ```
/// use std::time::Duration;
/// use messaging_core::{Clock, ManualClock};
/// let clock = ManualClock::at_unix(1_700_000_000);
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now().timestamp(), 1_700_000_060);
/// ```
#[derive(Clone)]
pub struct ManualClock {
    // The time itself rather than a count of microseconds: reading is the hot path (twice per
    // cascade in simulations and benchmarks), and turning a count into a `DateTime` costs
    // chrono's calendar arithmetic, several times an uncontended lock. Whole microseconds, as
    // `set` rounds.
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock set to `t`.
    pub fn new(t: DateTime<Utc>) -> Self {
        let micros = DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or_default();
        ManualClock {
            now: Arc::new(Mutex::new(micros)),
        }
    }

    /// A clock set to a Unix time in seconds.
    pub fn at_unix(secs: i64) -> Self {
        Self::new(Utc.timestamp_opt(secs, 0).single().unwrap_or_default())
    }

    /// Moves time forward.
    pub fn advance(&self, d: std::time::Duration) {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let mut now = self.lock();
        *now = now
            .checked_add_signed(chrono::Duration::microseconds(micros))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    /// Sets the time (never backwards). The clock counts microseconds; a time between two
    /// ticks rounds up, so that whatever is due at `t` is due once the clock is set to `t`.
    pub fn set(&self, t: DateTime<Utc>) {
        let mut micros = t.timestamp_micros();
        if !t.timestamp_subsec_nanos().is_multiple_of(1_000) {
            micros += 1;
        }
        if let Some(t) = DateTime::from_timestamp_micros(micros) {
            let mut now = self.lock();
            *now = (*now).max(t);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // A time cannot be left half-written: a poisoned lock still holds a valid one.
        self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManualClock({})", self.now())
    }
}

/// Converts a std duration to chrono's, saturating.
pub fn chrono_dur(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_past_the_end_of_time_stays_there() {
        let c = ManualClock::at_unix(1_700_000_000);
        c.advance(std::time::Duration::from_secs(60));
        assert_eq!(c.now().timestamp(), 1_700_000_060);
        c.advance(std::time::Duration::MAX);
        assert_eq!(c.now(), DateTime::<Utc>::MAX_UTC);
        c.set(DateTime::from_timestamp(0, 0).unwrap());
        assert_eq!(c.now(), DateTime::<Utc>::MAX_UTC, "never backwards");
    }

    #[test]
    fn set_rounds_up_to_the_next_microsecond() {
        let c = ManualClock::at_unix(0);
        let t = DateTime::from_timestamp(5, 270_738_953).unwrap();
        c.set(t);
        assert!(c.now() >= t);
        assert_eq!(c.now().timestamp_subsec_micros(), 270_739);
    }
}
