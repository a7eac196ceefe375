//! What adapters produce from webhooks or polling: delivery reports, inbound messages and
//! channel signals, in one normalized shape shared by every provider.
//!
//! The JSON form is a public contract (the `messaging parse-webhook` output):
//!
//! ```json
//! {"kind":"delivery","channel":"whatsapp","provider_message_id":"wamid...","status":"delivered","at":"2026-01-01T10:00:00Z","recipient":"79123456789"}
//! {"kind":"inbound","channel":"telegram","from":"42","text":"Да","at":"2026-01-01T10:00:00Z"}
//! {"kind":"signal","channel":"whatsapp","signal":"quality","at":"2026-01-01T10:00:00Z","rating":"RED"}
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::channel::Cost;
use crate::kind::{ChannelKind, Evidence};
use crate::model::{Address, ChannelId, NotificationId, ProviderMessageId};
use crate::phone::Phone;

/// One thing a provider told us.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A status change of a message we sent.
    Delivery(DeliveryReport),
    /// A message from a person.
    Inbound(InboundMessage),
    /// Something about the account or channel: quality, restriction, template status, a block.
    Signal(ChannelSignal),
}

impl Event {
    /// The channel kind it came from.
    pub fn channel(&self) -> ChannelKind {
        match self {
            Event::Delivery(d) => d.channel,
            Event::Inbound(m) => m.channel,
            Event::Signal(s) => s.channel,
        }
    }

    /// The configured channel id, when the handler knew it.
    pub fn channel_id(&self) -> Option<&ChannelId> {
        match self {
            Event::Delivery(d) => d.channel_id.as_ref(),
            Event::Inbound(m) => m.channel_id.as_ref(),
            Event::Signal(s) => s.channel_id.as_ref(),
        }
    }

    /// Sets the configured channel id (webhook handlers know which channel they serve).
    pub fn with_channel_id(mut self, id: ChannelId) -> Self {
        match &mut self {
            Event::Delivery(d) => d.channel_id = Some(id),
            Event::Inbound(m) => m.channel_id = Some(id),
            Event::Signal(s) => s.channel_id = Some(id),
        }
        self
    }

    /// When it happened, by the provider's clock.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Event::Delivery(d) => d.at,
            Event::Inbound(m) => m.at,
            Event::Signal(s) => s.at,
        }
    }
}

/// A provider's delivery status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Queued or accepted by the provider.
    Accepted,
    /// Handed to the network / messenger servers.
    Sent,
    /// On the person's device.
    Delivered,
    /// Opened (WhatsApp `read` and `played`).
    Read,
    /// Will not be delivered.
    Failed,
}

impl DeliveryStatus {
    /// The evidence this status is, or `None` for a failure.
    pub fn evidence(self) -> Option<Evidence> {
        match self {
            DeliveryStatus::Accepted | DeliveryStatus::Sent => Some(Evidence::Accepted),
            DeliveryStatus::Delivered => Some(Evidence::Delivered),
            DeliveryStatus::Read => Some(Evidence::Read),
            DeliveryStatus::Failed => None,
        }
    }
}

/// An error a provider attached to a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderError {
    /// The provider's code, as a string (`"131049"`, `"30007"`, `"103"`).
    pub code: String,
    /// The provider's words.
    pub message: String,
    /// The engine's reading of it, when the adapter mapped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::error::ErrorKind>,
}

/// A status change of a message we sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeliveryReport {
    /// The channel kind.
    pub channel: ChannelKind,
    /// The configured channel, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<ChannelId>,
    /// The id the provider gave the message when we sent it.
    pub provider_message_id: ProviderMessageId,
    /// The new status.
    pub status: DeliveryStatus,
    /// When.
    pub at: DateTime<Utc>,
    /// The recipient as the provider writes it.
    pub recipient: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ProviderError>,
    /// The notification id we tagged the message with, when the provider echoes it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<NotificationId>,
    /// What the provider says it cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
}

impl DeliveryReport {
    /// A report.
    pub fn new(
        channel: ChannelKind,
        provider_message_id: impl Into<ProviderMessageId>,
        status: DeliveryStatus,
        at: DateTime<Utc>,
    ) -> Self {
        DeliveryReport {
            channel,
            channel_id: None,
            provider_message_id: provider_message_id.into(),
            status,
            at,
            recipient: None,
            error: None,
            notification_id: None,
            cost: None,
        }
    }
    /// Sets the recipient.
    pub fn recipient(mut self, r: impl Into<String>) -> Self {
        self.recipient = Some(r.into());
        self
    }
    /// Sets the error.
    pub fn error(mut self, e: ProviderError) -> Self {
        self.error = Some(e);
        self
    }
    /// Sets the echoed notification id.
    pub fn notification_id(mut self, id: NotificationId) -> Self {
        self.notification_id = Some(id);
        self
    }
    /// Sets the channel id.
    pub fn channel_id(mut self, id: ChannelId) -> Self {
        self.channel_id = Some(id);
        self
    }
}

/// A message from a person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InboundMessage {
    /// The channel kind.
    pub channel: ChannelKind,
    /// The configured channel, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<ChannelId>,
    /// The sender as a plain string (`"79123456789"`, `"42"`).
    pub from: String,
    /// The sender as a typed address, to answer on.
    pub address: Address,
    /// The text, if any (`null` for media without caption, a contact, a location).
    pub text: Option<String>,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// The provider's id of this message (for de-duplication and replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<ProviderMessageId>,
    /// The sender's display name as the messenger shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    /// The payload of a Telegram `/start <payload>` or a Max `bot_started`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_payload: Option<String>,
    /// A shared contact's phone, in E.164.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_phone: Option<Phone>,
    /// Whether the shared contact is the sender's own (checked by the adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_is_own: Option<bool>,
    /// The payload of a pressed button (quick reply, callback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button_payload: Option<String>,
    /// The provider's id of the message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ProviderMessageId>,
}

impl InboundMessage {
    /// An inbound message from `address`.
    pub fn new(
        channel: ChannelKind,
        address: Address,
        text: Option<String>,
        at: DateTime<Utc>,
    ) -> Self {
        InboundMessage {
            channel,
            channel_id: None,
            from: address.to_string(),
            address,
            text,
            at,
            provider_message_id: None,
            sender_name: None,
            start_payload: None,
            contact_phone: None,
            contact_is_own: None,
            button_payload: None,
            reply_to: None,
        }
    }
    /// Sets the provider's message id.
    pub fn provider_message_id(mut self, id: impl Into<ProviderMessageId>) -> Self {
        self.provider_message_id = Some(id.into());
        self
    }
    /// Sets the sender's display name.
    pub fn sender_name(mut self, n: impl Into<String>) -> Self {
        self.sender_name = Some(n.into());
        self
    }
    /// Sets the start payload.
    pub fn start_payload(mut self, p: impl Into<String>) -> Self {
        self.start_payload = Some(p.into());
        self
    }
    /// Sets a shared contact.
    pub fn contact(mut self, phone: Phone, is_own: bool) -> Self {
        self.contact_phone = Some(phone);
        self.contact_is_own = Some(is_own);
        self
    }
    /// Sets a button payload.
    pub fn button_payload(mut self, p: impl Into<String>) -> Self {
        self.button_payload = Some(p.into());
        self
    }
}

/// Something about an account or channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChannelSignal {
    /// The channel kind.
    pub channel: ChannelKind,
    /// The configured channel, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<ChannelId>,
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    #[serde(flatten)]
    pub signal: Signal,
}

impl ChannelSignal {
    /// A signal.
    pub fn new(channel: ChannelKind, at: DateTime<Utc>, signal: Signal) -> Self {
        ChannelSignal {
            channel,
            channel_id: None,
            at,
            signal,
        }
    }
}

/// The kinds of channel signal. Serialized with a `"signal"` tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Signal {
    /// The number's quality rating changed (WhatsApp GREEN / YELLOW / RED; FLAGGED, ...).
    Quality {
        /// The provider's rating.
        rating: String,
        /// The phone number the rating is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone_number: Option<String>,
    },
    /// The account may not send until a time (or indefinitely).
    Restriction {
        /// Until when; `None` for indefinite.
        until: Option<DateTime<Utc>>,
        /// The provider's words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A template was approved, rejected, paused, disabled; or its quality changed.
    TemplateStatus {
        /// Template name.
        name: String,
        /// Language code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
        /// New status (`APPROVED`, `REJECTED`, `PAUSED`, `DISABLED`, or a quality score).
        status: String,
        /// Why, when the provider said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The person asked for no more messages (WhatsApp marketing stop, an SMS STOP).
    OptOut {
        /// The person, as a plain string.
        from: String,
        /// The person, typed.
        address: Address,
        /// Which purpose they opted out of (`None`: every purpose).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purpose: Option<crate::model::Purpose>,
    },
    /// The person blocked the bot (Telegram `kicked`, Max `bot_stopped`).
    Blocked {
        /// The person, as a plain string.
        from: String,
        /// The person, typed.
        address: Address,
    },
    /// The person unblocked or restarted the bot.
    Unblocked {
        /// The person, as a plain string.
        from: String,
        /// The person, typed.
        address: Address,
    },
    /// The messaging-limit tier changed (unique people per 24 hours; `None` = unlimited).
    Tier {
        /// The new limit.
        limit: Option<u64>,
        /// The provider's name of the tier (`TIER_1K`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

impl Signal {
    /// The snake-case name of the signal (`"quality"`, `"blocked"`).
    pub fn name(&self) -> &'static str {
        match self {
            Signal::Quality { .. } => "quality",
            Signal::Restriction { .. } => "restriction",
            Signal::TemplateStatus { .. } => "template_status",
            Signal::OptOut { .. } => "opt_out",
            Signal::Blocked { .. } => "blocked",
            Signal::Unblocked { .. } => "unblocked",
            Signal::Tier { .. } => "tier",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap()
    }

    #[test]
    fn normalized_json_shapes() {
        let d = Event::Delivery(
            DeliveryReport::new(
                ChannelKind::WhatsApp,
                "wamid.1",
                DeliveryStatus::Delivered,
                t(),
            )
            .recipient("79123456789"),
        );
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["kind"], "delivery");
        assert_eq!(v["channel"], "whatsapp");
        assert_eq!(v["status"], "delivered");
        assert_eq!(v["provider_message_id"], "wamid.1");
        assert_eq!(v["at"], "2026-01-01T10:00:00Z");
        assert_eq!(v["recipient"], "79123456789");
        assert!(v.get("error").is_none());

        let i = Event::Inbound(InboundMessage::new(
            ChannelKind::Telegram,
            Address::Telegram(42),
            None,
            t(),
        ));
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(v["kind"], "inbound");
        assert_eq!(v["from"], "42");
        assert!(v["text"].is_null());

        let s = Event::Signal(ChannelSignal::new(
            ChannelKind::Telegram,
            t(),
            Signal::Blocked {
                from: "42".into(),
                address: Address::Telegram(42),
            },
        ));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["kind"], "signal");
        assert_eq!(v["signal"], "blocked");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
