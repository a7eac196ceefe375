//! Cascade policies: ordered steps, each a channel, the evidence to wait for and a window.

use std::time::Duration;

use chrono::NaiveTime;
use serde::{Deserialize, Serialize};

use messaging_core::Content;
use messaging_core::{ChannelId, Evidence, PolicyId};

/// How often and how fast to retry a step whose channel refused the send (temporary failures,
/// rate limits). Each wait must be shorter than the step's window: a longer one would cost
/// more than moving on to the next channel.
///
/// ```
/// use std::time::Duration;
/// use messaging_cascade::RetryPolicy;
/// let r = RetryPolicy::default();
/// assert_eq!(r.backoff(1), Duration::from_secs(5));
/// assert_eq!(r.backoff(2), Duration::from_secs(10));
/// assert!(r.backoff(30) <= r.max_backoff);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts on one step, the first included.
    pub max_attempts: u32,
    /// Wait after the first failure.
    #[serde(with = "secs")]
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    #[serde(with = "secs")]
    pub max_backoff: Duration,
    /// Rate-limit waits allowed on one step before moving on.
    pub max_rate_limit_waits: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(120),
            max_rate_limit_waits: 5,
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt per step.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait after failed attempt number `attempt` (1-based): exponential, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What to do with a step whose channel is degraded or down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "window_secs")]
pub enum HealthAction {
    /// Send as usual.
    Proceed,
    /// Send, but wait at most this long for evidence.
    #[serde(with = "secs")]
    ShortenWindow(Duration),
    /// Skip the step (recorded).
    Skip,
}

/// What a step does when a send's outcome is unknown: the provider may have accepted the
/// message, but its answer was lost (a timeout after the request went out, a connection reset
/// while reading the answer, a 2xx that cannot be read, or the engine stopped mid-send).
///
/// No provider this library supports takes an idempotency key on send, so a resend can
/// deliver the message twice; the policy chooses between waiting and a marked resend.
///
/// ```
/// use messaging_cascade::{Step, UnknownOutcome};
/// use messaging_core::Evidence;
/// let step = Step::new("wa");
/// // A channel that reports delivery waits for the report (or a reply) by default...
/// assert_eq!(step.unknown_outcome(Evidence::Delivered), UnknownOutcome::AwaitEvidence);
/// // ...one whose only evidence is acceptance resends, marked as a possible duplicate.
/// assert_eq!(step.unknown_outcome(Evidence::Accepted), UnknownOutcome::Resend);
/// // The policy can say otherwise.
/// let step = step.on_unknown_outcome(UnknownOutcome::Resend);
/// assert_eq!(step.unknown_outcome(Evidence::Delivered), UnknownOutcome::Resend);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownOutcome {
    /// Treat the attempt as possibly sent and wait for its evidence (a delivery report that
    /// names the notification, such as WhatsApp's `biz_opaque_callback_data`, or a reply)
    /// until the step's window closes, counted from when the attempt started; then move on.
    /// Never sends twice on the step.
    AwaitEvidence,
    /// Send again within the step's retry budget; the new attempt is marked
    /// `possible_duplicate`, with the reason in the history's `outcome_unknown` entry.
    Resend,
}

/// One step of a cascade.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The channel to send on.
    pub channel: ChannelId,
    /// The evidence that ends the cascade. Capped at what the channel can give.
    pub wait_for: Evidence,
    /// How long to wait for it, from the moment the channel accepted the message (see
    /// [`window_end`](super::decide::window_end)).
    #[serde(with = "secs")]
    pub window: Duration,
    /// Retries of refused sends (temporary failures, rate limits).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Content to send instead of the notification's on this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// What to do when a send's outcome is unknown; `None`: [`UnknownOutcome::AwaitEvidence`]
    /// when the step waits for more than acceptance, else [`UnknownOutcome::Resend`] (see
    /// [`Step::unknown_outcome`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unknown_outcome: Option<UnknownOutcome>,
}

impl Step {
    /// A step on `channel` waiting for `Delivered` for 60 minutes, with default retries.
    pub fn new(channel: impl Into<ChannelId>) -> Self {
        Step {
            channel: channel.into(),
            wait_for: Evidence::Delivered,
            window: Duration::from_secs(3600),
            retry: RetryPolicy::default(),
            content: None,
            on_unknown_outcome: None,
        }
    }
    /// Sets the evidence to wait for.
    pub fn wait_for(mut self, e: Evidence) -> Self {
        self.wait_for = e;
        self
    }
    /// Sets the window.
    pub fn window(mut self, d: Duration) -> Self {
        self.window = d;
        self
    }
    /// Sets the retry policy.
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }
    /// Sets a content override for this step.
    pub fn content(mut self, c: Content) -> Self {
        self.content = Some(c);
        self
    }
    /// Sets what to do when a send's outcome is unknown.
    pub fn on_unknown_outcome(mut self, o: UnknownOutcome) -> Self {
        self.on_unknown_outcome = Some(o);
        self
    }
    /// What this step does when a send's outcome is unknown, given the evidence it really
    /// awaits (`wait_for` capped at what its channel gives): the configured choice, else
    /// waiting when that is more than acceptance (a report or reply can still come, so a
    /// resend would only risk a duplicate), else a marked resend.
    pub fn unknown_outcome(&self, awaited: Evidence) -> UnknownOutcome {
        self.on_unknown_outcome
            .unwrap_or(if awaited > Evidence::Accepted {
                UnknownOutcome::AwaitEvidence
            } else {
                UnknownOutcome::Resend
            })
    }
}

/// Hours in which no message is sent, in the recipient's time zone. The step waits; it is not
/// skipped. `start > end` wraps midnight (21:00–09:00).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// Local time quiet hours begin.
    pub start: NaiveTime,
    /// Local time they end.
    pub end: NaiveTime,
}

impl QuietHours {
    /// Quiet hours from `start_hour`:00 to `end_hour`:00 local time.
    pub fn hours(start_hour: u32, end_hour: u32) -> Self {
        QuietHours {
            start: NaiveTime::from_hms_opt(start_hour % 24, 0, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(end_hour % 24, 0, 0).unwrap_or_default(),
        }
    }

    /// Whether local time `t` is quiet.
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start <= self.end {
            t >= self.start && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

/// An ordered list of steps and what to do around them.
///
/// ```
/// use messaging_cascade::CascadePolicy;
/// let p = CascadePolicy::classic_clinic("wa", "tg", "max", "sms");
/// assert_eq!(p.steps.len(), 4);
/// assert_eq!(p.steps[0].window.as_secs(), 3600);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CascadePolicy {
    /// The policy's name.
    pub id: PolicyId,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Quiet hours, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// What to do on a degraded channel.
    #[serde(default = "default_on_degraded")]
    pub on_degraded: HealthAction,
    /// What to do on a channel that is down.
    #[serde(default = "default_on_down")]
    pub on_down: HealthAction,
}

fn default_on_degraded() -> HealthAction {
    HealthAction::ShortenWindow(Duration::from_secs(600))
}
fn default_on_down() -> HealthAction {
    HealthAction::Skip
}

impl CascadePolicy {
    /// A policy with these steps, no quiet hours, degraded channels get a 10-minute window and
    /// channels that are down are skipped.
    pub fn new(id: impl Into<PolicyId>, steps: Vec<Step>) -> Self {
        CascadePolicy {
            id: id.into(),
            steps,
            quiet_hours: None,
            on_degraded: default_on_degraded(),
            on_down: default_on_down(),
        }
    }

    /// The classic clinic cascade: WhatsApp (delivered, 60 minutes) → Telegram → Max → SMS (final).
    ///
    /// Telegram and Max bots only ever say "accepted", so their steps end the cascade once the
    /// bot API took the message; they get 15 minutes for retries. SMS waits 24 hours for a
    /// delivery report and is the last resort.
    pub fn classic_clinic(
        whatsapp: impl Into<ChannelId>,
        telegram: impl Into<ChannelId>,
        max: impl Into<ChannelId>,
        sms: impl Into<ChannelId>,
    ) -> Self {
        CascadePolicy::new(
            "classic-clinic",
            vec![
                Step::new(whatsapp),
                Step::new(telegram).window(Duration::from_secs(900)),
                Step::new(max).window(Duration::from_secs(900)),
                Step::new(sms).window(Duration::from_secs(24 * 3600)),
            ],
        )
    }

    /// Sets quiet hours.
    pub fn quiet_hours(mut self, q: QuietHours) -> Self {
        self.quiet_hours = Some(q);
        self
    }
    /// Sets what to do on a degraded channel.
    pub fn on_degraded(mut self, a: HealthAction) -> Self {
        self.on_degraded = a;
        self
    }
    /// Sets what to do on a channel that is down.
    pub fn on_down(mut self, a: HealthAction) -> Self {
        self.on_down = a;
        self
    }
    /// Renames the policy.
    pub fn with_id(mut self, id: impl Into<PolicyId>) -> Self {
        self.id = id.into();
        self
    }
}

/// Serde helper: durations as (fractional) seconds.
#[doc(hidden)]
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    /// Deserializes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

/// Serde helper: optional durations as (fractional) seconds.
pub(crate) mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
    /// Deserializes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|v| Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom))
            .transpose()
    }
}
