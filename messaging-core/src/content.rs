//! What a notification says: text, per-channel overrides, a WhatsApp template, buttons, attachments.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::kind::ChannelKind;

/// The content of a notification.
///
/// ```
/// use messaging_core::{ChannelKind, Content};
/// let c = Content::text("Анна, напоминаем о приёме завтра в 10:00. Придёте?")
///     .with_override(ChannelKind::Sms, "Anna, priem zavtra v 10:00. Otvette DA/NET");
/// assert!(c.text_for(ChannelKind::Sms).starts_with("Anna"));
/// assert!(c.text_for(ChannelKind::Telegram).starts_with("Анна"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Content {
    /// The rendered text, shared: every attempt's message carries it, and a clone costs a
    /// reference count rather than a copy of the text.
    pub text: Arc<str>,
    /// Text to use instead on a given channel kind (a shorter SMS, a transliterated one, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<ChannelKind, String>,
    /// The WhatsApp template to use outside the 24-hour window (boxed: most content has none,
    /// and content is kept for every pending cascade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Box<Template>>,
    /// Buttons under the message, where the channel has them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
    /// Media sent with (or as) the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Whether links in the text may show a preview (Telegram, WhatsApp).
    #[serde(default)]
    pub link_preview: bool,
}

impl Content {
    /// Plain text content.
    pub fn text(text: impl Into<String>) -> Self {
        Content {
            text: Arc::from(text.into()),
            ..Content::default()
        }
    }

    /// Adds a text override for a channel kind.
    pub fn with_override(mut self, kind: ChannelKind, text: impl Into<String>) -> Self {
        self.overrides.insert(kind, text.into());
        self
    }

    /// Attaches a WhatsApp template.
    pub fn with_template(mut self, template: Template) -> Self {
        self.template = Some(Box::new(template));
        self
    }

    /// Adds a button.
    pub fn with_button(mut self, button: Button) -> Self {
        self.buttons.push(button);
        self
    }

    /// The text to send on a channel of `kind`.
    pub fn text_for(&self, kind: ChannelKind) -> &str {
        self.overrides.get(&kind).map_or(&self.text, |t| t)
    }
}

/// A WhatsApp message template reference with its parameters.
///
/// ```
/// use messaging_core::{Template, TemplateComponent};
/// let t = Template::new("appointment_reminder", "ru")
///     .component(TemplateComponent::body_text(["Анна", "10:00"]));
/// assert_eq!(t.components.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// The template name as approved.
    pub name: String,
    /// The language code (`ru`, `en_US`).
    pub language: String,
    /// Header, body and button parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<TemplateComponent>,
}

impl Template {
    /// A template with no parameters.
    pub fn new(name: impl Into<String>, language: impl Into<String>) -> Self {
        Template {
            name: name.into(),
            language: language.into(),
            components: Vec::new(),
        }
    }

    /// Adds a component.
    pub fn component(mut self, c: TemplateComponent) -> Self {
        self.components.push(c);
        self
    }
}

/// Which part of a template a set of parameters fills.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TemplatePart {
    /// The header (text or media).
    Header,
    /// The body.
    Body,
    /// A button, by its index in the template.
    Button {
        /// Position of the button (0-based).
        index: u8,
        /// Quick reply or URL.
        sub_type: ButtonSubType,
    },
}

/// The kind of a template button.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonSubType {
    /// Sends a payload back as an inbound button message.
    QuickReply,
    /// Opens a URL with a dynamic suffix.
    Url,
}

/// One component's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateComponent {
    /// Which part.
    pub part: TemplatePart,
    /// The values, positional (`name: None`) or named.
    pub parameters: Vec<TemplateParameter>,
}

impl TemplateComponent {
    /// Positional text parameters for the body (`{{1}}`, `{{2}}`, ...).
    pub fn body_text<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TemplateComponent {
            part: TemplatePart::Body,
            parameters: values
                .into_iter()
                .map(|v| TemplateParameter {
                    name: None,
                    value: TemplateValue::Text(v.into()),
                })
                .collect(),
        }
    }

    /// Named text parameters for the body (`{{patient_name}}`).
    pub fn body_named<I, K, V>(values: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        TemplateComponent {
            part: TemplatePart::Body,
            parameters: values
                .into_iter()
                .map(|(k, v)| TemplateParameter {
                    name: Some(k.into()),
                    value: TemplateValue::Text(v.into()),
                })
                .collect(),
        }
    }
}

/// One template parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateParameter {
    /// The name, for templates with named parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The value.
    pub value: TemplateValue,
}

/// A template parameter value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum TemplateValue {
    /// Text.
    Text(String),
    /// A quick-reply payload.
    Payload(String),
    /// Media for a header.
    Media(MediaSource),
}

/// A button under a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Button {
    /// What the person sees.
    pub title: String,
    /// What it does.
    pub action: ButtonAction,
}

impl Button {
    /// A reply button that sends `payload` back.
    pub fn reply(title: impl Into<String>, payload: impl Into<String>) -> Self {
        Button {
            title: title.into(),
            action: ButtonAction::Reply(payload.into()),
        }
    }
    /// A link button.
    pub fn url(title: impl Into<String>, url: url::Url) -> Self {
        Button {
            title: title.into(),
            action: ButtonAction::Url(url),
        }
    }
    /// A "share my phone number" button (Telegram reply keyboard, Max request_contact).
    pub fn request_contact(title: impl Into<String>) -> Self {
        Button {
            title: title.into(),
            action: ButtonAction::RequestContact,
        }
    }
}

/// What a button does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ButtonAction {
    /// Sends this payload back as an inbound message or callback.
    Reply(String),
    /// Opens a link.
    Url(url::Url),
    /// Asks the person to share their phone number.
    RequestContact,
}

/// Where media comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum MediaSource {
    /// A public HTTPS link the provider fetches.
    Link(url::Url),
    /// An id of media already uploaded to the provider.
    Id(String),
}

/// A file sent with a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Image or document.
    pub kind: AttachmentKind,
    /// Link or uploaded media id.
    pub source: MediaSource,
    /// Shown under the media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// File name for documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// The kind of an attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttachmentKind {
    /// A picture.
    Image,
    /// A file (PDF lab results, ...).
    Document,
}
