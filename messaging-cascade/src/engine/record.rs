//! The durable state of one cascade: what was asked, where it stands, and everything that happened.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use messaging_core::Content;
use messaging_core::Cost;
use messaging_core::ErrorKind;
use messaging_core::{
    ChannelId, ChannelKind, Evidence, Metadata, NotificationId, PolicyId, ProviderMessageId,
    Purpose, Recipient,
};

/// A notice to get through to one person.
///
/// ```
/// use messaging_cascade::Notification;
/// use messaging_core::{Content, Purpose, Recipient};
/// let n = Notification::new(
///     "appt-1042-reminder",
///     Recipient::with_phone("patient-7", "+79123456789").unwrap().name("Анна"),
///     Content::text("Анна, напоминаем: приём завтра в 10:00. Придёте?"),
/// )
/// .purpose(Purpose::Service);
/// assert_eq!(n.id.as_str(), "appt-1042-reminder");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The idempotency key.
    pub id: NotificationId,
    /// Who.
    pub recipient: Recipient,
    /// What.
    pub content: Content,
    /// Why.
    pub purpose: Purpose,
    /// After this, no more steps: the notice is useless (the appointment has passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// The policy to use; `None` routes by purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyId>,
    /// The application's own data, returned in status queries.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

impl Notification {
    /// A service notification routed by purpose.
    pub fn new(id: impl Into<NotificationId>, recipient: Recipient, content: Content) -> Self {
        Notification {
            id: id.into(),
            recipient,
            content,
            purpose: Purpose::Service,
            deadline: None,
            policy: None,
            metadata: Metadata::new(),
        }
    }
    /// Sets the purpose.
    pub fn purpose(mut self, p: Purpose) -> Self {
        self.purpose = p;
        self
    }
    /// Sets the deadline.
    pub fn deadline(mut self, t: DateTime<Utc>) -> Self {
        self.deadline = Some(t);
        self
    }
    /// Chooses a policy explicitly.
    pub fn policy(mut self, p: impl Into<PolicyId>) -> Self {
        self.policy = Some(p.into());
        self
    }
    /// Adds metadata.
    pub fn meta(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.metadata.insert(k.into(), v.into());
        self
    }
}

/// How a cascade ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// A step got the evidence it waited for.
    Delivered {
        /// The step that delivered.
        step: usize,
        /// Its channel.
        channel: ChannelId,
        /// The evidence.
        evidence: Evidence,
        /// Whether the evidence came for an earlier step after its window closed.
        late: bool,
    },
    /// The person wrote back, on any channel.
    Replied {
        /// The channel kind of the reply.
        channel: ChannelKind,
    },
    /// The last step that sent got only "accepted" and its window closed without proof.
    Unconfirmed {
        /// The last step that sent.
        step: usize,
        /// Its channel.
        channel: ChannelId,
    },
    /// Every step failed or was skipped.
    Exhausted,
    /// The deadline passed first.
    Expired,
    /// The application cancelled it.
    Cancelled,
}

impl Outcome {
    /// Every outcome's [`name`](Self::name), in declaration order.
    ///
    /// ```
    /// use messaging_cascade::Outcome;
    /// for o in [Outcome::Exhausted, Outcome::Expired, Outcome::Cancelled] {
    ///     assert!(Outcome::NAMES.contains(&o.name()));
    /// }
    /// ```
    pub const NAMES: [&'static str; 6] = [
        "delivered",
        "replied",
        "unconfirmed",
        "exhausted",
        "expired",
        "cancelled",
    ];

    /// A short name (`"delivered"`).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Replied { .. } => "replied",
            Outcome::Unconfirmed { .. } => "unconfirmed",
            Outcome::Exhausted => "exhausted",
            Outcome::Expired => "expired",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Where a cascade stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// The current step is to be tried (now, or at `wake_at` after a deferral).
    Ready,
    /// Intent recorded: attempt `attempt` is being sent. If the engine finds this phase after
    /// `wake_at`, the outcome is unknown (a crash) and the attempt is sent again, marked as a
    /// possible duplicate.
    Sending {
        /// The attempt's index in [`CascadeRecord::attempts`].
        attempt: usize,
    },
    /// Sent; waiting for evidence until `window_end`
    /// ([`window_end`](super::decide::window_end) of the attempt, computed when it was accepted).
    Waiting {
        /// The attempt's index in [`CascadeRecord::attempts`].
        attempt: usize,
        /// The evidence that ends the cascade (already capped by the channel).
        wait_for: Evidence,
        /// When the window closes.
        window_end: DateTime<Utc>,
    },
    /// Ended.
    Finished(Outcome),
}

impl Phase {
    /// A short name: `"ready"`, `"sending"`, `"waiting"`, `"finished"`.
    ///
    /// ```
    /// use messaging_cascade::engine::Phase;
    ///
    /// assert_eq!(Phase::Ready.name(), "ready");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Ready => "ready",
            Phase::Sending { .. } => "sending",
            Phase::Waiting { .. } => "waiting",
            Phase::Finished(_) => "finished",
        }
    }
}

/// How one attempt went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AttemptState {
    /// Being sent.
    InFlight,
    /// The provider accepted it.
    Sent,
    /// The provider refused it, or a report said it failed.
    Failed {
        /// The error kind.
        kind: ErrorKind,
        /// The provider's code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<Box<str>>,
        /// The reason in words.
        message: Box<str>,
    },
    /// The engine stopped while it was in flight; it may or may not have gone out.
    Unknown,
}

/// One try at sending on one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The step index.
    pub step: usize,
    /// The channel.
    pub channel: ChannelId,
    /// 1-based number of this attempt on its step.
    pub number: u32,
    /// When sending began.
    pub started_at: DateTime<Utc>,
    /// When the provider accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// The provider's message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<ProviderMessageId>,
    /// The strongest evidence seen for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// When that evidence arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_at: Option<DateTime<Utc>>,
    /// How it went.
    pub state: AttemptState,
    /// This attempt repeats one whose outcome was unknown after a crash: the person may get
    /// the message twice.
    #[serde(default)]
    pub possible_duplicate: bool,
    /// Whether the WhatsApp template was forced.
    #[serde(default)]
    pub forced_template: bool,
    /// Cost estimate from the receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// A window shorter than its step's, given when the attempt was admitted: its channel was
    /// degraded (the policy's [`ShortenWindow`](super::HealthAction::ShortenWindow)) or this
    /// attempt is the channel's probe. `None`: the step's window. See
    /// [`window_end`](super::decide::window_end).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::policy::opt_secs"
    )]
    pub shortened_window: Option<Duration>,
    /// This attempt is the probe of a channel that was down: its evidence, in time or not,
    /// decides whether the channel recovers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
}

/// Why a step was skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// No address for this person on this channel.
    NoAddress,
    /// The person opted out of this purpose or channel.
    OptedOut,
    /// Marketing without the person's consent.
    NoConsent,
    /// The channel is down.
    ChannelDown,
    /// The channel is degraded and the policy skips degraded channels.
    ChannelDegraded,
    /// The channel is recovering and this notice is not in the share of traffic it takes yet.
    ChannelRecovering,
    /// The deadline passed.
    DeadlinePassed,
    /// A regulated sender may not use foreign messengers (WhatsApp, Telegram).
    ForeignMessengerBlocked,
    /// The step names a channel the engine does not have.
    UnknownChannel,
    /// The content is too long for this channel.
    ContentTooLong,
    /// The sender governor or hygiene check refused it.
    Refused(String),
}

impl SkipReason {
    /// The snake-case name, as in JSON and the `reason` label of
    /// [`metrics::SKIPS`](messaging_core::metrics::SKIPS) (`"channel_down"`; `"refused"` without
    /// its detail).
    ///
    /// ```
    /// use messaging_cascade::engine::SkipReason;
    ///
    /// assert_eq!(SkipReason::ChannelDown.name(), "channel_down");
    /// assert_eq!(SkipReason::Refused("daily cap".into()).name(), "refused");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            SkipReason::NoAddress => "no_address",
            SkipReason::OptedOut => "opted_out",
            SkipReason::NoConsent => "no_consent",
            SkipReason::ChannelDown => "channel_down",
            SkipReason::ChannelDegraded => "channel_degraded",
            SkipReason::ChannelRecovering => "channel_recovering",
            SkipReason::DeadlinePassed => "deadline_passed",
            SkipReason::ForeignMessengerBlocked => "foreign_messenger_blocked",
            SkipReason::UnknownChannel => "unknown_channel",
            SkipReason::ContentTooLong => "content_too_long",
            SkipReason::Refused(_) => "refused",
        }
    }
}

impl std::fmt::Display for SkipReason {
    /// A short phrase for logs and reports: "no address", "opted out", "refused: …".
    ///
    /// ```
    /// use messaging_cascade::engine::SkipReason;
    ///
    /// assert_eq!(SkipReason::ChannelDown.to_string(), "the channel is down");
    /// assert_eq!(SkipReason::Refused("daily cap".into()).to_string(), "refused: daily cap");
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SkipReason::NoAddress => "no address on this channel",
            SkipReason::OptedOut => "opted out",
            SkipReason::NoConsent => "no consent",
            SkipReason::ChannelDown => "the channel is down",
            SkipReason::ChannelDegraded => "the channel is degraded",
            SkipReason::ChannelRecovering => "the channel is recovering",
            SkipReason::DeadlinePassed => "the deadline passed",
            SkipReason::ForeignMessengerBlocked => "foreign messengers are off",
            SkipReason::UnknownChannel => "unknown channel",
            SkipReason::ContentTooLong => "the text is too long for this channel",
            SkipReason::Refused(why) => return write!(f, "refused: {why}"),
        })
    }
}

/// Why a step waits before sending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeferReason {
    /// Quiet hours in the recipient's time zone.
    QuietHours,
    /// The provider asked us to slow down.
    RateLimited,
    /// Backoff after a temporary failure.
    Backoff,
    /// The sender governor holds it back (warm-up, daily cap, frequency cap).
    Governor(String),
}

/// Something that happened to a cascade. Recorded in its history and published on the event stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HistoryKind {
    /// Accepted by the engine.
    Submitted {
        /// The policy used.
        policy: PolicyId,
    },
    /// A step begins.
    StepStarted {
        /// Step index.
        step: usize,
        /// Channel.
        channel: ChannelId,
    },
    /// A step was skipped.
    Skipped {
        /// Step index.
        step: usize,
        /// Channel.
        channel: ChannelId,
        /// Why.
        #[serde(flatten)]
        reason: SkipReason,
    },
    /// A step waits before sending.
    Deferred {
        /// Step index.
        step: usize,
        /// Channel.
        channel: ChannelId,
        /// Until when.
        until: DateTime<Utc>,
        /// Why.
        #[serde(flatten)]
        reason: DeferReason,
    },
    /// About to send (recorded before the send).
    Sending {
        /// Step index.
        step: usize,
        /// Channel.
        channel: ChannelId,
        /// Attempt number on this step.
        attempt: u32,
        /// Whether this repeats an attempt whose outcome was unknown.
        possible_duplicate: bool,
    },
    /// The provider accepted it.
    Sent {
        /// Step index.
        step: usize,
        /// Channel.
        channel: ChannelId,
        /// Attempt number on this step.
        attempt: u32,
        /// The provider's id.
        provider_message_id: ProviderMessageId,
    },
    /// An attempt failed.
    Failed {
        /// Step index.
        step: usize,
        /// Channel.
        channel: ChannelId,
        /// Attempt number on this step.
        attempt: u32,
        /// Error kind.
        kind: ErrorKind,
        /// Provider code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<Box<str>>,
        /// Reason.
        message: Box<str>,
    },
    /// The outcome of an attempt is unknown: the provider may have accepted it (its answer
    /// was lost or unreadable, or the engine stopped while sending). What follows is the
    /// step's [`UnknownOutcome`](super::UnknownOutcome) policy; a resend is marked
    /// `possible_duplicate`.
    OutcomeUnknown {
        /// Step index.
        step: usize,
        /// Channel.
        channel: ChannelId,
        /// Attempt number on this step.
        attempt: u32,
        /// Why the outcome is unknown (absent in records written before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Box<str>>,
    },
    /// Evidence arrived that does not end the cascade (weaker than awaited, or after the end).
    Evidence {
        /// Step index.
        step: usize,
        /// Channel.
        channel: ChannelId,
        /// Evidence.
        evidence: Evidence,
    },
    /// The step's window closed without its evidence.
    WindowClosed {
        /// Step index.
        step: usize,
        /// Channel.
        channel: ChannelId,
        /// Whether it was closed early because the channel turned degraded or down.
        early: bool,
    },
    /// The cascade moves to another step.
    Advanced {
        /// From this step.
        from: usize,
        /// To this one (`None`: no steps left).
        to: Option<usize>,
    },
    /// Ended: delivered.
    Delivered {
        /// Step index.
        step: usize,
        /// Channel.
        channel: ChannelId,
        /// Evidence.
        evidence: Evidence,
    },
    /// Ended: evidence for an earlier step came late; later steps not yet sent are stopped.
    LateDelivery {
        /// Step index.
        step: usize,
        /// Channel.
        channel: ChannelId,
        /// Evidence.
        evidence: Evidence,
    },
    /// Ended: the person replied.
    Replied {
        /// Channel kind of the reply.
        channel: ChannelKind,
    },
    /// Ended: sent, but never confirmed.
    Unconfirmed,
    /// Ended: every step failed or was skipped.
    Exhausted,
    /// Ended: the deadline passed.
    Expired,
    /// Ended: cancelled by the application.
    Cancelled,
}

impl HistoryKind {
    /// Whether this entry ends the cascade (its last entry, unless the application revives it).
    ///
    /// ```
    /// use messaging_cascade::engine::HistoryKind;
    ///
    /// assert!(HistoryKind::Exhausted.is_terminal());
    /// assert!(!HistoryKind::Advanced { from: 0, to: Some(1) }.is_terminal());
    /// ```
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            HistoryKind::Delivered { .. }
                | HistoryKind::LateDelivery { .. }
                | HistoryKind::Replied { .. }
                | HistoryKind::Unconfirmed
                | HistoryKind::Exhausted
                | HistoryKind::Expired
                | HistoryKind::Cancelled
        )
    }
}

/// One history line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    #[serde(flatten)]
    pub kind: HistoryKind,
}

/// The durable state of one cascade, as stores keep it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CascadeRecord {
    /// The notification (shared: records are cloned on every change).
    pub notification: Arc<Notification>,
    /// The policy in use.
    pub policy: PolicyId,
    /// Optimistic-concurrency version; stores bump it on every update.
    pub version: u64,
    /// The current step index.
    pub step: usize,
    /// Where the cascade stands.
    pub phase: Phase,
    /// When the engine must look at this cascade again (`None`: only on an event).
    pub wake_at: Option<DateTime<Utc>>,
    /// Rate-limit waits used on the current step.
    pub rate_limit_waits: u32,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
    /// Everything that happened.
    pub history: Vec<HistoryEntry>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
}

impl CascadeRecord {
    /// The notification id.
    pub fn id(&self) -> &NotificationId {
        &self.notification.id
    }

    /// The outcome, once finished.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.phase {
            Phase::Finished(o) => Some(o),
            _ => None,
        }
    }

    /// Whether the cascade has ended.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    /// When the cascade ended, once finished: the time of its last history entry (a late
    /// delivery report recorded after the end moves it forward). Stores purge by it
    /// ([`CascadeStore::purge_finished`](crate::store::CascadeStore::purge_finished)).
    pub fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.is_finished().then(|| {
            self.history
                .last()
                .map_or(self.created_at, |h| h.at.max(self.created_at))
        })
    }

    /// Attempts on step `step`.
    pub fn attempts_on(&self, step: usize) -> u32 {
        self.attempts.iter().filter(|a| a.step == step).count() as u32
    }

    /// Every provider message id, with the attempt it belongs to (for the message index).
    pub fn provider_message_ids(&self) -> impl Iterator<Item = (&ProviderMessageId, usize)> {
        self.attempts
            .iter()
            .enumerate()
            .flat_map(|(i, a)| a.provider_message_id.as_ref().map(|id| (id, i)))
    }

    /// The keys under which an inbound reply finds this cascade (empty once finished).
    pub fn reply_keys(&self) -> Vec<String> {
        if self.is_finished() {
            Vec::new()
        } else {
            self.notification.recipient.address_keys()
        }
    }
}
