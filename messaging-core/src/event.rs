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
    /// The lowercase name used in JSON and as a metric label (`"delivered"`).
    ///
    /// ```
    /// use messaging_core::DeliveryStatus;
    /// assert_eq!(DeliveryStatus::Read.as_str(), "read");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Accepted => "accepted",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
        }
    }

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
    /// What the person did: a new message (the default, left out of the JSON), an edit, a
    /// deletion or a reaction. Serialized as `"action": {"type": "edit", "of": "..."}`.
    #[serde(default, skip_serializing_if = "InboundAction::is_message")]
    pub action: InboundAction,
    /// Provider data that has no field of its own (a WhatsApp Flow's `response_json`, a
    /// location, a shared contact's raw number, the group a message was written in), as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

/// What a person did to a conversation: wrote a new message, or edited, deleted or reacted to
/// one. Serialized with a `"type"` tag:
///
/// ```json
/// {"type":"message"}
/// {"type":"edit","of":"wamid.A"}
/// {"type":"deletion","of":"wamid.A"}
/// {"type":"reaction","to":"wamid.B","emoji":"👍"}
/// {"type":"echo"}
/// ```
///
/// Only [`Message`](Self::Message) is a reply (see [`InboundMessage::counts_as_reply`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum InboundAction {
    /// A new message, a button press or another explicit answer.
    #[default]
    Message,
    /// The person changed the text of an earlier message (the new text is the message's
    /// `text`).
    Edit {
        /// The provider's id of the edited message.
        of: ProviderMessageId,
    },
    /// The person deleted an earlier message ("delete for everyone").
    Deletion {
        /// The provider's id of the deleted message.
        of: ProviderMessageId,
    },
    /// The person reacted to a message (ours or theirs) with an emoji.
    Reaction {
        /// The provider's id of the message reacted to.
        to: ProviderMessageId,
        /// The emoji; `None` when the person took their reaction back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        emoji: Option<String>,
    },
    /// A message the business wrote from another device (WhatsApp Business app echoes,
    /// `smb_message_echoes`): `address` is the person it went to, `from` the business number.
    /// Not from the person at all.
    Echo,
}

impl InboundAction {
    /// Whether this is a new message.
    pub fn is_message(&self) -> bool {
        matches!(self, InboundAction::Message)
    }

    /// The snake-case name (`"message"`, `"edit"`, `"deletion"`, `"reaction"`, `"echo"`).
    pub fn name(&self) -> &'static str {
        match self {
            InboundAction::Message => "message",
            InboundAction::Edit { .. } => "edit",
            InboundAction::Deletion { .. } => "deletion",
            InboundAction::Reaction { .. } => "reaction",
            InboundAction::Echo => "echo",
        }
    }

    /// The message this action is about (edited, deleted, reacted to), if any.
    pub fn target(&self) -> Option<&ProviderMessageId> {
        match self {
            InboundAction::Edit { of } | InboundAction::Deletion { of } => Some(of),
            InboundAction::Reaction { to, .. } => Some(to),
            InboundAction::Message | InboundAction::Echo => None,
        }
    }
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
            action: InboundAction::Message,
            extra: None,
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
    /// Sets the id of the message this one answers.
    pub fn reply_to(mut self, id: impl Into<ProviderMessageId>) -> Self {
        self.reply_to = Some(id.into());
        self
    }
    /// Sets what the person did (default: a new message).
    pub fn action(mut self, action: InboundAction) -> Self {
        self.action = action;
        self
    }
    /// Sets the provider data without a field of its own.
    pub fn extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }

    /// Whether this is the person answering: a new message, a button press, a Flow reply. An
    /// edit, a deletion, a reaction or an echo of the business's own message is not; the
    /// cascade engine and the sender governor count only these as replies.
    pub fn counts_as_reply(&self) -> bool {
        self.action.is_message()
    }

    /// Whether this shows the person read the message it is about: a reaction (one can only
    /// react to a message one sees). Returns that message's id.
    pub fn read_evidence(&self) -> Option<&ProviderMessageId> {
        match &self.action {
            InboundAction::Reaction { to, .. } => Some(to),
            _ => None,
        }
    }

    /// Whether the words of this event are the person's (a new message or an edit): stop and
    /// start words are read from these only.
    pub fn carries_words(&self) -> bool {
        matches!(
            self.action,
            InboundAction::Message | InboundAction::Edit { .. }
        )
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
    /// The person asked for messages again after an opt-out (WhatsApp marketing resume).
    OptIn {
        /// The person, as a plain string.
        from: String,
        /// The person, typed.
        address: Address,
        /// Which purpose they opted back in to (`None`: every purpose).
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
            Signal::OptIn { .. } => "opt_in",
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

    #[test]
    fn inbound_actions_serialize_and_old_json_reads_as_a_message() {
        let base = InboundMessage::new(
            ChannelKind::WhatsApp,
            Address::WhatsApp("7999".into()),
            Some("new text".into()),
            t(),
        );
        // A plain message keeps the old shape: no `action` key.
        let v = serde_json::to_value(Event::Inbound(base.clone())).unwrap();
        assert!(v.get("action").is_none());
        assert!(base.counts_as_reply() && base.carries_words());
        // JSON stored before the field existed (no `action`) reads as a new message.
        let Event::Inbound(back) = serde_json::from_value::<Event>(v).unwrap() else {
            panic!()
        };
        assert_eq!(back.action, InboundAction::Message);
        let cases = [
            (
                InboundAction::Edit {
                    of: "wamid.A".into(),
                },
                serde_json::json!({"type": "edit", "of": "wamid.A"}),
            ),
            (
                InboundAction::Deletion {
                    of: "wamid.A".into(),
                },
                serde_json::json!({"type": "deletion", "of": "wamid.A"}),
            ),
            (
                InboundAction::Reaction {
                    to: "wamid.B".into(),
                    emoji: Some("👍".into()),
                },
                serde_json::json!({"type": "reaction", "to": "wamid.B", "emoji": "👍"}),
            ),
            (
                InboundAction::Reaction {
                    to: "wamid.B".into(),
                    emoji: None,
                },
                serde_json::json!({"type": "reaction", "to": "wamid.B"}),
            ),
            (InboundAction::Echo, serde_json::json!({"type": "echo"})),
        ];
        for (action, want) in cases {
            let m = base.clone().action(action.clone());
            assert!(!m.counts_as_reply(), "{action:?}");
            assert_eq!(
                m.read_evidence().is_some(),
                matches!(action, InboundAction::Reaction { .. })
            );
            let e = Event::Inbound(m);
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(v["kind"], "inbound");
            assert_eq!(v["action"], want);
            let back: Event = serde_json::from_value(v).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn opt_in_signal_round_trips() {
        let s = Event::Signal(ChannelSignal::new(
            ChannelKind::WhatsApp,
            t(),
            Signal::OptIn {
                from: "7999".into(),
                address: Address::WhatsApp("7999".into()),
                purpose: Some(crate::model::Purpose::Marketing),
            },
        ));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["signal"], "opt_in");
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), s);
    }
}
