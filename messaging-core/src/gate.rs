//! Checks the engine makes before each send: the sender governor and hygiene plug in here.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::kind::ChannelKind;
use crate::model::{Address, ChannelId, NotificationId, Purpose, Recipient};

/// What a gate is asked about: one send about to happen.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SendContext<'a> {
    /// Now, by the engine's clock.
    pub now: DateTime<Utc>,
    /// The notification.
    pub notification_id: &'a NotificationId,
    /// The channel about to send.
    pub channel_id: &'a ChannelId,
    /// Its kind.
    pub channel_kind: ChannelKind,
    /// The person.
    pub recipient: &'a Recipient,
    /// The address on this channel.
    pub address: &'a Address,
    /// The purpose.
    pub purpose: Purpose,
    /// The text about to be sent on this channel.
    pub text: &'a str,
}

impl<'a> SendContext<'a> {
    /// A context for a service message with no text; set the rest with [`purpose`](Self::purpose)
    /// and [`text`](Self::text). The engine builds these itself; this is for testing your own
    /// [`SendGate`]s.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use messaging_core::gate::SendContext;
    /// use messaging_core::*;
    ///
    /// let anna = Recipient::with_phone("anna", "+79123456789").unwrap();
    /// let id = NotificationId::from("reminder-1");
    /// let channel = ChannelId::new("sms");
    /// let address = Address::Phone(anna.phone.clone().unwrap());
    /// let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    /// let ctx = SendContext::new(now, &id, &channel, ChannelKind::Sms, &anna, &address)
    ///     .purpose(Purpose::Marketing)
    ///     .text("Скидка 10% на анализы");
    /// assert_eq!(ctx.purpose, Purpose::Marketing);
    /// assert_eq!(ctx.text, "Скидка 10% на анализы");
    /// ```
    pub fn new(
        now: DateTime<Utc>,
        notification_id: &'a NotificationId,
        channel_id: &'a ChannelId,
        channel_kind: ChannelKind,
        recipient: &'a Recipient,
        address: &'a Address,
    ) -> Self {
        SendContext {
            now,
            notification_id,
            channel_id,
            channel_kind,
            recipient,
            address,
            purpose: Purpose::Service,
            text: "",
        }
    }

    /// Sets the purpose.
    pub fn purpose(mut self, purpose: Purpose) -> Self {
        self.purpose = purpose;
        self
    }

    /// Sets the text about to be sent.
    pub fn text(mut self, text: &'a str) -> Self {
        self.text = text;
        self
    }
}

/// A gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    /// Send.
    Allow,
    /// Not now: the engine waits until `until` (it never drops the send) and records why.
    Defer {
        /// When to ask again.
        until: DateTime<Utc>,
        /// Why, in words.
        reason: String,
    },
    /// Not on this channel: the engine skips the step and records why.
    Deny {
        /// Why, in words.
        reason: String,
    },
}

/// Consulted by the engine before every send (after address, consent, health and quiet hours).
///
/// ```
/// use async_trait::async_trait;
/// use messaging_core::gate::{GateDecision, SendContext, SendGate};
///
/// /// Refuses marketing on SMS.
/// #[derive(Debug)]
/// struct NoMarketingSms;
///
/// #[async_trait]
/// impl SendGate for NoMarketingSms {
///     async fn check(&self, ctx: &SendContext<'_>) -> GateDecision {
///         if ctx.purpose == messaging_core::Purpose::Marketing
///             && ctx.channel_kind == messaging_core::ChannelKind::Sms
///         {
///             GateDecision::Deny { reason: "no marketing by SMS".into() }
///         } else {
///             GateDecision::Allow
///         }
///     }
/// }
/// ```
#[async_trait]
pub trait SendGate: Send + Sync + fmt::Debug + 'static {
    /// Whether this send may go now.
    async fn check(&self, ctx: &SendContext<'_>) -> GateDecision;

    /// Told after the provider accepted the send (for counters). Default: nothing.
    async fn record_sent(&self, ctx: &SendContext<'_>) {
        let _ = ctx;
    }
}
