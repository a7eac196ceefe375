//! How long a provider asks us to wait: the `Retry-After` header (delta-seconds or an HTTP
//! date, RFC 9110 §10.2.3) and the seconds some providers put in their JSON bodies (Telegram's
//! `parameters.retry_after`), always bounded by [`MAX_RETRY_AFTER`].
//!
//! The bound matters: a wait goes into `now + wait` in the engine's timers, and
//! `Instant + Duration` panics on overflow. A broken or hostile answer (`Retry-After:
//! 9999999999999`) must not be able to do that, nor park a channel for years.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// The longest wait any provider answer can ask for: one hour. Longer waits are cut to it.
///
/// An hour is far beyond any rate-limit window the providers document (Telegram's
/// `retry_after` is seconds to minutes, WhatsApp's pair limit 6 s) and still short enough that
/// the cascade's own deadlines, not a provider's number, decide when to give up.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Reads one `Retry-After` value: delta-seconds (`"120"`) or an HTTP date (`"Wed, 21 Oct 2015
/// 07:28:00 GMT"`, also the obsolete RFC 850 and asctime forms), relative to `now`.
///
/// The result is at most [`MAX_RETRY_AFTER`]: a longer wait, even one too large for any
/// integer type, is cut to it. A date in the past is a zero wait. Anything else (empty,
/// negative, fractional, garbage) is `None`. Never panics.
///
/// ```
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use messaging_http::{MAX_RETRY_AFTER, parse_retry_after};
/// let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(60)));
/// assert_eq!(parse_retry_after("9999999999999", now), Some(MAX_RETRY_AFTER));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits too many for a u64 are still a (very long) wait: cut, not refused.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(bounded(secs));
    }
    let at = http_date(value)?;
    let wait = at.signed_duration_since(now);
    // A negative wait (a date in the past) fails to convert: retry now.
    Some(
        wait.to_std()
            .map_or(Duration::ZERO, |d| d.min(MAX_RETRY_AFTER)),
    )
}

/// The `Retry-After` header of an answer, read by [`parse_retry_after`]; `None` when absent or
/// unreadable (not UTF-8, not a number or a date).
///
/// ```
/// use std::time::Duration;
/// use chrono::Utc;
/// let mut headers = http::HeaderMap::new();
/// headers.insert(http::header::RETRY_AFTER, "5".parse().unwrap());
/// assert_eq!(messaging_http::retry_after(&headers, Utc::now()), Some(Duration::from_secs(5)));
/// ```
pub fn retry_after(headers: &http::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// A wait a provider gave as a number of seconds in its body (Telegram's
/// `parameters.retry_after`), bounded by [`MAX_RETRY_AFTER`]; negative numbers are `None`.
///
/// ```
/// use std::time::Duration;
/// use messaging_http::{MAX_RETRY_AFTER, retry_after_secs};
/// assert_eq!(retry_after_secs(35), Some(Duration::from_secs(35)));
/// assert_eq!(retry_after_secs(i64::MAX), Some(MAX_RETRY_AFTER));
/// assert_eq!(retry_after_secs(-1), None);
/// ```
pub fn retry_after_secs(secs: i64) -> Option<Duration> {
    u64::try_from(secs).ok().map(bounded)
}

fn bounded(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_RETRY_AFTER)
}

/// An HTTP date in any of the three forms RFC 9110 §5.6.7 says a recipient must accept.
fn http_date(s: &str) -> Option<DateTime<Utc>> {
    // IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT` (an RFC 2822 date).
    if let Ok(d) = DateTime::parse_from_rfc2822(s) {
        return Some(d.with_timezone(&Utc));
    }
    // RFC 850, `Sunday, 06-Nov-94 08:49:37 GMT`; asctime, `Sun Nov  6 08:49:37 1994`.
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(1994, 11, 6, 8, 48, 37).unwrap()
    }

    #[test]
    fn delta_seconds() {
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 30 ", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("3600", now()), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("3601", now()), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999999", now()),
            Some(MAX_RETRY_AFTER)
        );
        for bad in ["", " ", "-1", "+1", "1.5", "1e3", "1 2", "abc", "٣"] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad:?}");
        }
    }

    #[test]
    fn the_three_http_date_forms() {
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(form, now()),
                Some(Duration::from_secs(60)),
                "{form}"
            );
        }
        // In the past: retry now. Far ahead: cut to the bound.
        assert_eq!(
            parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now()),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("Sun, 32 Nov 1994 08:49:37 GMT", now()),
            None
        );
    }

    #[test]
    fn header_lookup() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h, now()), None);
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(7)));
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(retry_after(&h, now()), None);
    }

    #[test]
    fn body_seconds() {
        assert_eq!(retry_after_secs(0), Some(Duration::ZERO));
        assert_eq!(retry_after_secs(5), Some(Duration::from_secs(5)));
        assert_eq!(retry_after_secs(9_999_999_999_999), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after_secs(i64::MIN), None);
    }

    /// A wait that `now + wait` can take, for both clocks the engine uses.
    fn fits(d: Duration) -> bool {
        d <= MAX_RETRY_AFTER
            && std::time::Instant::now().checked_add(d).is_some()
            && now()
                .checked_add_signed(chrono::TimeDelta::from_std(d).unwrap())
                .is_some()
    }

    proptest! {
        #[test]
        fn any_header_value_is_bounded_and_never_panics(s in "\\PC*") {
            if let Some(d) = parse_retry_after(&s, now()) {
                prop_assert!(fits(d), "{s:?} gave {d:?}");
            }
        }

        #[test]
        fn any_digits_are_a_bounded_wait(s in "[0-9]{1,40}") {
            let d = parse_retry_after(&s, now());
            prop_assert!(d.is_some());
            prop_assert!(fits(d.unwrap()));
        }

        #[test]
        fn any_date_is_a_bounded_wait(secs in -2_000_000_000i64..253_000_000_000i64) {
            let at = Utc.timestamp_opt(secs, 0).unwrap();
            let value = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            let d = parse_retry_after(&value, now());
            prop_assert!(d.is_some(), "{value}");
            prop_assert!(fits(d.unwrap()));
        }

        #[test]
        fn any_raw_header_bytes_are_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                let mut h = http::HeaderMap::new();
                h.insert(http::header::RETRY_AFTER, v);
                if let Some(d) = retry_after(&h, now()) {
                    prop_assert!(fits(d));
                }
            }
        }

        #[test]
        fn any_body_seconds_are_bounded(secs in any::<i64>()) {
            match retry_after_secs(secs) {
                Some(d) => prop_assert!(secs >= 0 && fits(d)),
                None => prop_assert!(secs < 0),
            }
        }
    }
}
