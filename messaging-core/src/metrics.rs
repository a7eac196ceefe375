//! The names of every metric the `messaging` family records, and of their labels: one list, so
//! that a dashboard, an alert and the code that records agree.
//!
//! The library records through the [`metrics`](https://docs.rs/metrics) crate's facade; you pick
//! the exporter (Prometheus, StatsD, OpenTelemetry, ...) by installing a recorder at start-up.
//! Without one, recording costs a few dozen nanoseconds and keeps nothing.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | [`SENDS`] | counter | `channel_id`, `channel_kind` | attempts handed to a channel (`Channel::send` calls) |
//! | [`DELIVERY_REPORTS`] | counter | `channel_id`, `channel_kind`, `status` | delivery reports matched to an attempt, by status (`accepted`, `sent`, `delivered`, `read`, `failed`) |
//! | [`FAILURES`] | counter | `channel_id`, `channel_kind`, `kind` | attempts that failed, by [`ErrorKind`](crate::ErrorKind) name; `outcome_unknown` when the provider may have accepted it |
//! | [`SKIPS`] | counter | `channel_id`, `channel_kind`, `reason` | steps skipped, by reason (`no_address`, `opted_out`, `channel_down`, ...) |
//! | [`OUTCOMES`] | counter | `channel_id`, `channel_kind`, `outcome` | cascades ended, by outcome (`delivered`, `replied`, `unconfirmed`, `exhausted`, `expired`, `cancelled`); the channel is the one the outcome names (delivered, unconfirmed), else the last one tried, else `none` |
//! | [`DUPLICATES`] | counter | `channel_id`, `channel_kind` | resends marked `possible_duplicate` (the person may get the notice twice) |
//! | [`TIME_TO_DELIVERY`] | histogram, seconds | `channel_id`, `channel_kind` | from the provider's acceptance of an attempt to its first `delivered` (or `read`) report |
//! | [`SEND_DURATION`] | histogram, seconds | `channel_id`, `channel_kind` | how long one `Channel::send` call took (the provider's answer, retries inside the adapter included) |
//! | [`PROVIDER_REQUEST_DURATION`] | histogram, seconds | `request`, `status` | one HTTP request to a provider (`messaging-http`): `request` names it (`telegram sendMessage`), `status` is `2xx` ... `5xx`, or `error` when no answer was read |
//! | [`CASCADES_RUNNING`] | gauge | | cascades not ended, as the store counts them (updated on every timer tick) |
//! | [`TIMERS_DUE`] | gauge | | cascades whose timer was due at the last tick (closing windows, backoffs, quiet hours ending) |
//! | [`CHANNEL_HEALTH`] | gauge | `channel_id`, `channel_kind` | the channel's health: 0 healthy, 1 degraded (or recovering), 2 down |
//!
//! Label values are ids and fixed names, never a person's address, a message text or a secret.
//!
//! ```
//! use messaging_core::metrics;
//! assert_eq!(metrics::SENDS, "messaging_sends_total");
//! assert!(metrics::ALL.iter().all(|n| n.starts_with("messaging_")));
//! ```

/// Counter: attempts handed to a channel. Labels [`CHANNEL_ID`], [`CHANNEL_KIND`].
pub const SENDS: &str = "messaging_sends_total";
/// Counter: delivery reports matched to an attempt. Labels [`CHANNEL_ID`], [`CHANNEL_KIND`],
/// [`STATUS`] (`accepted`, `sent`, `delivered`, `read`, `failed`).
pub const DELIVERY_REPORTS: &str = "messaging_delivery_reports_total";
/// Counter: failed attempts. Labels [`CHANNEL_ID`], [`CHANNEL_KIND`], [`KIND`] (the
/// [`ErrorKind`](crate::ErrorKind) name, `outcome_unknown` when the provider may have taken it).
pub const FAILURES: &str = "messaging_send_failures_total";
/// Counter: skipped steps. Labels [`CHANNEL_ID`], [`CHANNEL_KIND`], [`REASON`] (`no_address`,
/// `opted_out`, `no_consent`, `channel_down`, `channel_degraded`, `channel_recovering`,
/// `deadline_passed`, `foreign_messenger_blocked`, `unknown_channel`, `content_too_long`,
/// `refused`).
pub const SKIPS: &str = "messaging_skips_total";
/// Counter: ended cascades. Labels [`CHANNEL_ID`], [`CHANNEL_KIND`], [`OUTCOME`] (`delivered`,
/// `replied`, `unconfirmed`, `exhausted`, `expired`, `cancelled`). The channel is the one the
/// outcome names (delivered, unconfirmed), else the last one tried, else `none`.
pub const OUTCOMES: &str = "messaging_outcomes_total";
/// Counter: resends marked `possible_duplicate`. Labels [`CHANNEL_ID`], [`CHANNEL_KIND`].
pub const DUPLICATES: &str = "messaging_duplicates_marked_total";
/// Histogram, seconds: from the provider's acceptance of an attempt to its first `delivered` or
/// `read` report. Labels [`CHANNEL_ID`], [`CHANNEL_KIND`].
pub const TIME_TO_DELIVERY: &str = "messaging_time_to_delivery_seconds";
/// Histogram, seconds: one `Channel::send` call. Labels [`CHANNEL_ID`], [`CHANNEL_KIND`].
pub const SEND_DURATION: &str = "messaging_send_duration_seconds";
/// Histogram, seconds: one HTTP request to a provider. Labels [`REQUEST`], [`STATUS`] (`2xx`,
/// `3xx`, `4xx`, `5xx`, or `error` when no answer was read).
pub const PROVIDER_REQUEST_DURATION: &str = "messaging_provider_request_duration_seconds";
/// Gauge: cascades not ended, as the store counts them.
pub const CASCADES_RUNNING: &str = "messaging_cascades_running";
/// Gauge: cascades whose timer was due at the last tick.
pub const TIMERS_DUE: &str = "messaging_timers_due";
/// Gauge: a channel's health, 0 healthy, 1 degraded or recovering, 2 down. Labels
/// [`CHANNEL_ID`], [`CHANNEL_KIND`].
pub const CHANNEL_HEALTH: &str = "messaging_channel_health_state";

/// Every metric name, for a describe-all at start-up or a test.
pub const ALL: &[&str] = &[
    SENDS,
    DELIVERY_REPORTS,
    FAILURES,
    SKIPS,
    OUTCOMES,
    DUPLICATES,
    TIME_TO_DELIVERY,
    SEND_DURATION,
    PROVIDER_REQUEST_DURATION,
    CASCADES_RUNNING,
    TIMERS_DUE,
    CHANNEL_HEALTH,
];

/// Label: the channel's id as configured (`whatsapp`, `sms-backup`).
pub const CHANNEL_ID: &str = "channel_id";
/// Label: the channel's kind (`whatsapp`, `telegram`, `max`, `sms`).
pub const CHANNEL_KIND: &str = "channel_kind";
/// Label: a delivery report's status, or an HTTP status class.
pub const STATUS: &str = "status";
/// Label: an error kind.
pub const KIND: &str = "kind";
/// Label: why a step was skipped.
pub const REASON: &str = "reason";
/// Label: how a cascade ended.
pub const OUTCOME: &str = "outcome";
/// Label: which provider request (`telegram sendMessage`, `WhatsApp`).
pub const REQUEST: &str = "request";
