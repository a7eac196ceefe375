//! The one trait every messenger adapter implements.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::content::Content;
use crate::error::ChannelError;
use crate::kind::{ChannelKind, Evidence};
use crate::model::{Address, ChannelId, NotificationId, ProviderMessageId, Purpose};
use crate::text::TextUnit;

/// What a channel can do. The engine reads it to cap waits and check content.
///
/// ```
/// use messaging_core::{Capabilities, Evidence, TextUnit};
/// let telegram = Capabilities::new(4096, TextUnit::Utf16, Evidence::Accepted);
/// assert_eq!(telegram.strongest_evidence, Evidence::Accepted);
/// assert!(telegram.fits("hello"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Longest text of one message, in `text_unit`.
    pub max_text_len: usize,
    /// How `max_text_len` is counted.
    pub text_unit: TextUnit,
    /// How many messages a long text may be split into (1: never split).
    pub max_parts: usize,
    /// The strongest evidence this channel can ever give. Telegram and Max bots: `Accepted`.
    pub strongest_evidence: Evidence,
    /// Whether the channel may write to a person who never wrote first (bots cannot).
    pub can_start_conversation: bool,
    /// Whether the channel has message templates (WhatsApp).
    pub templates: bool,
    /// Whether buttons are supported.
    pub buttons: bool,
    /// Whether images and documents are supported.
    pub media: bool,
}

impl Capabilities {
    /// Capabilities with a text limit and the strongest evidence; everything else off, one part.
    pub fn new(max_text_len: usize, text_unit: TextUnit, strongest_evidence: Evidence) -> Self {
        Capabilities {
            max_text_len,
            text_unit,
            max_parts: 1,
            strongest_evidence,
            can_start_conversation: true,
            templates: false,
            buttons: false,
            media: false,
        }
    }

    /// Sets how many parts a long text may be split into.
    pub fn max_parts(mut self, n: usize) -> Self {
        self.max_parts = n.max(1);
        self
    }
    /// Sets whether the channel may write first.
    pub fn can_start_conversation(mut self, yes: bool) -> Self {
        self.can_start_conversation = yes;
        self
    }
    /// Sets template support.
    pub fn templates(mut self, yes: bool) -> Self {
        self.templates = yes;
        self
    }
    /// Sets button support.
    pub fn buttons(mut self, yes: bool) -> Self {
        self.buttons = yes;
        self
    }
    /// Sets media support.
    pub fn media(mut self, yes: bool) -> Self {
        self.media = yes;
        self
    }

    /// Whether `text` can be sent on this channel, split into at most `max_parts` parts.
    pub fn fits(&self, text: &str) -> bool {
        // Characters and UTF-16 units never outnumber UTF-8 bytes: a text no longer in bytes
        // than the limit fits without being measured (the usual case: limits run to thousands).
        if self.text_unit != TextUnit::SmsSegments
            && text.len() <= self.max_text_len.saturating_mul(self.max_parts)
        {
            return true;
        }
        let len = self.text_unit.measure(text);
        match self.text_unit {
            // SMS limits count segments of the whole text.
            TextUnit::SmsSegments => len <= self.max_text_len,
            _ => len <= self.max_text_len.saturating_mul(self.max_parts),
        }
    }
}

/// One message for a channel to send.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OutboundMessage {
    /// The notification this message belongs to, for routing delivery reports back
    /// (WhatsApp `biz_opaque_callback_data`, SMS callback tags).
    pub notification_id: Option<NotificationId>,
    /// Where to.
    pub to: Address,
    /// What.
    pub content: Content,
    /// Why (WhatsApp template category, cost).
    pub purpose: Purpose,
    /// Ask the channel to use the content's template even if it would send free text
    /// (set by the engine after a `NeedsTemplate` error).
    pub force_template: bool,
}

impl OutboundMessage {
    /// A message to `to`.
    pub fn new(to: Address, content: Content, purpose: Purpose) -> Self {
        OutboundMessage {
            notification_id: None,
            to,
            content,
            purpose,
            force_template: false,
        }
    }

    /// Tags the message with its notification id.
    pub fn for_notification(mut self, id: NotificationId) -> Self {
        self.notification_id = Some(id);
        self
    }

    /// Sets `force_template`.
    pub fn force_template(mut self, yes: bool) -> Self {
        self.force_template = yes;
        self
    }
}

/// A cost estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Amount in `currency` units (an estimate; providers bill on their side).
    pub amount: f64,
    /// ISO 4217 code.
    pub currency: String,
}

impl Cost {
    /// A cost.
    pub fn new(amount: f64, currency: impl Into<String>) -> Self {
        Cost {
            amount,
            currency: currency.into(),
        }
    }
}

/// What a provider said when it took a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SendReceipt {
    /// The provider's id for the message; delivery reports refer to it. With several parts,
    /// the id of the first part.
    pub provider_message_id: ProviderMessageId,
    /// Ids of further parts, if the text was split.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_message_ids: Vec<ProviderMessageId>,
    /// When the provider accepted it.
    pub accepted_at: DateTime<Utc>,
    /// Parts or SMS segments.
    pub parts: u32,
    /// Estimated cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
}

impl SendReceipt {
    /// A receipt for one part.
    pub fn new(id: impl Into<ProviderMessageId>, accepted_at: DateTime<Utc>) -> Self {
        SendReceipt {
            provider_message_id: id.into(),
            extra_message_ids: Vec::new(),
            accepted_at,
            parts: 1,
            cost: None,
        }
    }
    /// Sets the part count.
    pub fn parts(mut self, n: u32) -> Self {
        self.parts = n;
        self
    }
    /// Sets the cost estimate.
    pub fn cost(mut self, c: Cost) -> Self {
        self.cost = Some(c);
        self
    }
    /// Adds the id of a further part.
    pub fn extra_id(mut self, id: impl Into<ProviderMessageId>) -> Self {
        self.extra_message_ids.push(id.into());
        self
    }
}

/// One configured messenger: a WhatsApp number, a bot, an SMS provider account.
///
/// Object safe; the engine holds channels as `Arc<dyn Channel>`. Webhook verification and
/// parsing live apart, in [`WebhookHandler`](crate::webhook::WebhookHandler), because they are
/// synchronous and framework-free.
///
/// ```
/// use async_trait::async_trait;
/// use messaging_core::*;
///
/// #[derive(Debug)]
/// struct Pigeon;
///
/// #[async_trait]
/// impl Channel for Pigeon {
///     fn id(&self) -> &ChannelId { static ID: std::sync::OnceLock<ChannelId> = std::sync::OnceLock::new(); ID.get_or_init(|| ChannelId::new("pigeon")) }
///     fn kind(&self) -> ChannelKind { ChannelKind::Sms }
///     fn capabilities(&self) -> Capabilities { Capabilities::new(160, TextUnit::Chars, Evidence::Accepted) }
///     async fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
///         Err(ChannelError::temporary("the pigeon is tired"))
///     }
/// }
/// ```
#[async_trait]
pub trait Channel: Send + Sync + fmt::Debug + 'static {
    /// The configured id (`"wa-main"`).
    fn id(&self) -> &ChannelId;
    /// The messenger kind.
    fn kind(&self) -> ChannelKind;
    /// What the channel can do.
    fn capabilities(&self) -> Capabilities;
    /// Sends one message (splitting it if the channel does), or says why not.
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError>;
}

/// A shared channel.
pub type DynChannel = Arc<dyn Channel>;

/// Conveniences over [`Channel`].
#[async_trait]
pub trait ChannelExt: Channel {
    /// Sends plain text to an address as a service message.
    async fn send_text(&self, to: Address, text: &str) -> Result<SendReceipt, ChannelError> {
        self.send(&OutboundMessage::new(
            to,
            Content::text(text),
            Purpose::Service,
        ))
        .await
    }

    /// Whether this channel can carry `content` for this kind, by length.
    fn fits(&self, content: &Content) -> bool {
        self.capabilities().fits(content.text_for(self.kind()))
    }
}

impl<T: Channel + ?Sized> ChannelExt for T {}
