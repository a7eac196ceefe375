//! WhatsApp webhooks: the GET verification handshake, the `X-Hub-Signature-256` check over the
//! raw body, and parsing every change into core [`Event`]s.
//!
//! | `field` / message `type` | events |
//! |---|---|
//! | `messages[]`: `text`, `button`, `interactive` (`button_reply`, `list_reply`) | [`Event::Inbound`], a new message; a button's payload in `button_payload` |
//! | `messages[]`: `interactive` `nfm_reply` (a Flow) | [`Event::Inbound`] with `text` = the `response_json` and `extra.flow` = `{name, response}` (parsed) |
//! | `messages[]`: `image`, `video`, `document`, `audio`, `sticker` | [`Event::Inbound`], the caption as `text`, the media object in `extra.media` |
//! | `messages[]`: `location`, `order` | [`Event::Inbound`] with `extra.location` / `extra.order` |
//! | `messages[]`: `contacts` | [`Event::Inbound`] with `contact_phone`; a number that does not validate is kept raw in `text` |
//! | `messages[]`: `edit` | [`Event::Inbound`] with [`InboundAction::Edit`] `{of: edit.original_message_id}` and the new text |
//! | `messages[]`: `revoke` | [`Event::Inbound`] with [`InboundAction::Deletion`] `{of: revoke.original_message_id}` |
//! | `messages[]`: `reaction` | [`Event::Inbound`] with [`InboundAction::Reaction`] `{to, emoji}` (`emoji` absent: reaction removed) |
//! | `messages[]` with `group_id` | as above, answered at `Address::WhatsApp("group:<id>")` (sent with `recipient_type: group`) |
//! | `messages[]`: `unsupported` | [`Event::Inbound`] without text (`extra.unsupported`); an `unsupported` edit, revoke or reaction is skipped |
//! | `messages[]`: `system`, `request_welcome` | nothing (WhatsApp speaking, not the person) |
//! | `messages` / `statuses[]` | [`Event::Delivery`]: sent, delivered, read, played (as read), failed with its error |
//! | `smb_message_echoes` | [`Event::Inbound`] with [`InboundAction::Echo`]: the business's own words, to `to` |
//! | `message_template_status_update` | [`Signal::TemplateStatus`] with the event (`APPROVED`, `PAUSED`, ...) |
//! | `message_template_quality_update` | [`Signal::TemplateStatus`] with the new quality score |
//! | `template_category_update` | nothing (a category changes the price, not whether a template can be sent) |
//! | `phone_number_quality_update` | [`Signal::Quality`] (`FLAGGED`, `UNFLAGGED`, ...) and [`Signal::Tier`] |
//! | `business_capability_update` | [`Signal::Tier`] |
//! | `account_update` | [`Signal::Restriction`] per messaging restriction, and for a disabled or deleted account; [`Signal::Quality`] `ACCOUNT_VIOLATION` for a violation |
//! | `user_preferences` | [`Signal::OptOut`] on a marketing stop, [`Signal::OptIn`] on a resume (purpose marketing) |
//!
//! Anything else (unknown fields, value-level `errors[]`, statuses such as `deleted`) is skipped
//! with a `tracing` debug line naming it, as are single items that cannot be read; the rest of
//! the batch is kept.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use messaging_core::webhook::{
    WebhookError, WebhookHandler, WebhookReply, WebhookRequest, secrets_equal,
    verify_hmac_sha256_hex,
};
use messaging_core::{
    Address, ChannelId, ChannelKind, ChannelSignal, Clock, DeliveryReport, DeliveryStatus, Event,
    InboundAction, InboundMessage, NotificationId, Phone, ProviderError, ProviderMessageId,
    Purpose, Signal, SystemClock,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::cost::PriceTable;
use crate::error::GraphError;
use crate::throughput::MessagingTier;

/// The signature header Meta sends.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

const PROVIDER: &str = "waba";

/// Verifies and parses WhatsApp Business Platform webhooks (Meta Cloud API; 360dialog forwards the
/// same envelope).
///
/// Without an app secret, [`verify`](WebhookHandler::verify) passes every request: use that only
/// behind another check (360dialog: a custom header you registered) or for offline parsing.
///
/// ```
/// use messaging_core::webhook::{WebhookHandler, WebhookRequest, hmac_sha256_hex};
/// use messaging_core::Event;
/// use messaging_waba::WabaWebhook;
///
/// let handler = WabaWebhook::new().app_secret("app-secret");
/// let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
///   "messaging_product":"whatsapp","metadata":{"phone_number_id":"10"},
///   "contacts":[{"profile":{"name":"Anna"},"wa_id":"79990001122"}],
///   "messages":[{"from":"79990001122","id":"wamid.1","timestamp":"1767261600","type":"text","text":{"body":"Да"}}]}}]}]}"#
///     .as_bytes();
/// let mut headers = http::HeaderMap::new();
/// let sig = format!("sha256={}", hmac_sha256_hex(b"app-secret", body));
/// headers.insert("x-hub-signature-256", sig.parse().unwrap());
/// let events = handler.verify_and_parse(&WebhookRequest::post(&headers, body)).unwrap();
/// let Event::Inbound(m) = &events[0] else { panic!() };
/// assert_eq!(m.text.as_deref(), Some("Да"));
/// assert_eq!(m.sender_name.as_deref(), Some("Anna"));
/// ```
#[derive(Clone)]
pub struct WabaWebhook {
    app_secret: Option<SecretString>,
    verify_token: Option<SecretString>,
    channel_id: Option<ChannelId>,
    prices: Option<PriceTable>,
    max_body: usize,
}

impl fmt::Debug for WabaWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WabaWebhook")
            .field(
                "app_secret",
                &self.app_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "verify_token",
                &self.verify_token.as_ref().map(|_| "[redacted]"),
            )
            .field("channel_id", &self.channel_id)
            .field("prices", &self.prices)
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl Default for WabaWebhook {
    fn default() -> Self {
        Self::new()
    }
}

impl WabaWebhook {
    /// A handler with no secrets: verification passes, the handshake is refused.
    pub fn new() -> Self {
        WabaWebhook {
            app_secret: None,
            verify_token: None,
            channel_id: None,
            prices: None,
            // Meta's payloads are up to 3 MB.
            max_body: 3 * 1024 * 1024,
        }
    }

    /// The Meta app secret that signs `X-Hub-Signature-256`.
    pub fn app_secret(mut self, secret: impl Into<String>) -> Self {
        self.app_secret = Some(SecretString::from(secret.into()));
        self
    }

    /// The verify token you entered in the app dashboard (for the GET handshake).
    pub fn verify_token(mut self, token: impl Into<String>) -> Self {
        self.verify_token = Some(SecretString::from(token.into()));
        self
    }

    /// Tags every event with the configured channel id.
    pub fn channel_id(mut self, id: impl Into<ChannelId>) -> Self {
        self.channel_id = Some(id.into());
        self
    }

    /// Puts a cost on delivery reports that carry a `pricing` object.
    pub fn price_table(mut self, prices: PriceTable) -> Self {
        self.prices = Some(prices);
        self
    }

    /// Sets the largest accepted body (default 3 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Parses a raw body without a request (the `messaging parse-webhook` command, tests).
    pub fn parse_body(&self, body: &[u8]) -> Result<Vec<Event>, WebhookError> {
        let root: Value =
            serde_json::from_slice(body).map_err(|e| WebhookError::malformed(PROVIDER, e))?;
        let object = root.get("object").and_then(Value::as_str);
        if object != Some("whatsapp_business_account") {
            return Err(WebhookError::malformed(
                PROVIDER,
                format!(
                    "object is {:?}, not \"whatsapp_business_account\"",
                    object.unwrap_or("absent")
                ),
            ));
        }
        let entries = root
            .get("entry")
            .and_then(Value::as_array)
            .ok_or_else(|| WebhookError::malformed(PROVIDER, "no entry array"))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry_time = entry.get("time").and_then(unix_time);
            let changes = entry
                .get("changes")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for change in changes {
                let field = change.get("field").and_then(Value::as_str).unwrap_or("");
                let Some(value) = change.get("value") else {
                    continue;
                };
                let ctx = Ctx {
                    entry_time,
                    prices: self.prices.as_ref(),
                };
                match field {
                    "messages" => ctx.messages(value, &mut out),
                    "message_template_status_update" => ctx.template_status(value, &mut out),
                    "message_template_quality_update" => ctx.template_quality(value, &mut out),
                    "phone_number_quality_update" => ctx.phone_quality(value, &mut out),
                    "business_capability_update" => ctx.capability(value, &mut out),
                    "account_update" => ctx.account_update(value, &mut out),
                    "user_preferences" => ctx.user_preferences(value, &mut out),
                    "smb_message_echoes" => ctx.echoes(value, &mut out),
                    // A new category changes a template's price, not whether it can be sent;
                    // the template registry learns it at the next sync.
                    "template_category_update" => tracing::debug!(
                        field,
                        template = ?value.get("message_template_name"),
                        new_category = ?value.get("new_category"),
                        "ignoring a WhatsApp template category update"
                    ),
                    other => tracing::debug!(field = other, "skipping WhatsApp webhook change"),
                }
            }
        }
        if let Some(id) = &self.channel_id {
            out = out
                .into_iter()
                .map(|e| e.with_channel_id(id.clone()))
                .collect();
        }
        Ok(out)
    }
}

impl WebhookHandler for WabaWebhook {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn channel_kind(&self) -> ChannelKind {
        ChannelKind::WhatsApp
    }

    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        let Some(secret) = &self.app_secret else {
            return Ok(());
        };
        let header = request
            .header(SIGNATURE_HEADER)
            .ok_or(WebhookError::MissingSignature(SIGNATURE_HEADER))?;
        let hex = header
            .trim()
            .strip_prefix("sha256=")
            .ok_or(WebhookError::BadSignature)?;
        if verify_hmac_sha256_hex(secret.expose_secret().as_bytes(), request.body, hex) {
            Ok(())
        } else {
            Err(WebhookError::BadSignature)
        }
    }

    fn parse(&self, request: &WebhookRequest<'_>) -> Result<Vec<Event>, WebhookError> {
        self.parse_body(request.body)
    }

    fn handshake(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Option<Result<WebhookReply, WebhookError>> {
        if request.method != http::Method::GET {
            return None;
        }
        let query = request
            .url
            .and_then(|u| u.split_once('?'))
            .map(|(_, q)| q)?;
        let mut mode = None;
        let mut token = None;
        let mut challenge = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "hub.mode" => mode = Some(v.into_owned()),
                "hub.verify_token" => token = Some(v.into_owned()),
                "hub.challenge" => challenge = Some(v.into_owned()),
                _ => {}
            }
        }
        if mode.is_none() && challenge.is_none() && token.is_none() {
            return None;
        }
        let ok = mode.as_deref() == Some("subscribe")
            && match (&self.verify_token, &token) {
                (Some(want), Some(got)) => {
                    secrets_equal(want.expose_secret().as_bytes(), got.as_bytes())
                }
                _ => false,
            };
        Some(match (ok, challenge) {
            (true, Some(c)) => Ok(WebhookReply::text(c)),
            _ => Err(WebhookError::BadVerifyToken),
        })
    }

    fn max_body(&self) -> usize {
        self.max_body
    }
}

/// Unix seconds, as a number or a string.
fn unix_time(v: &Value) -> Option<DateTime<Utc>> {
    let secs = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    Utc.timestamp_opt(secs, 0).single()
}

fn string_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The person's words in a message of type `kind`: the text, a button's label, a caption, a
/// Flow's `response_json` (the answers, not the fixed label "Sent").
fn content_text(m: &Value, kind: &str) -> Option<String> {
    let text = match kind {
        "text" => str_at(m, &["text", "body"]),
        "button" => str_at(m, &["button", "text"]),
        "interactive" => {
            let i = m.get("interactive")?;
            let ty = i.get("type").and_then(Value::as_str).unwrap_or_default();
            let reply = i.get(ty)?;
            if ty == "nfm_reply" {
                reply.get("response_json").and_then(Value::as_str)
            } else {
                reply
                    .get("title")
                    .or_else(|| reply.get("body"))
                    .and_then(Value::as_str)
            }
        }
        "image" | "video" | "document" | "audio" | "sticker" => str_at(m, &[kind, "caption"]),
        "order" => str_at(m, &["order", "text"]),
        _ => None,
    };
    text.map(str::to_owned)
}

/// The payload of a pressed button (template quick reply) or chosen reply (button, list).
fn button_payload(m: &Value, kind: &str) -> Option<String> {
    match kind {
        "button" => str_at(m, &["button", "payload"]).map(str::to_owned),
        "interactive" => {
            let i = m.get("interactive")?;
            let ty = i.get("type").and_then(Value::as_str).unwrap_or_default();
            i.get(ty)?
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
        _ => None,
    }
}

/// What a message carries besides its words, for [`InboundMessage::extra`]: a Flow's answers
/// (`flow`), a location, shared contacts, a media object (`media`, with its `type`), an order,
/// the ad a person came from (`referral`), the real type of an `unsupported` message.
fn content_extra(m: &Value, kind: &str) -> Option<Value> {
    let mut extra = serde_json::Map::new();
    match kind {
        "interactive" => {
            if let Some(flow) = m.get("interactive").and_then(|i| i.get("nfm_reply")) {
                let response = flow
                    .get("response_json")
                    .and_then(Value::as_str)
                    .map(|raw| {
                        serde_json::from_str::<Value>(raw)
                            .unwrap_or_else(|_| Value::String(raw.to_owned()))
                    })
                    .unwrap_or(Value::Null);
                extra.insert(
                    "flow".into(),
                    serde_json::json!({"name": flow.get("name"), "response": response}),
                );
            }
        }
        "location" | "contacts" | "order" | "unsupported" => {
            if let Some(v) = m.get(kind) {
                extra.insert(kind.into(), v.clone());
            }
        }
        "image" | "video" | "document" | "audio" | "sticker" => {
            if let Some(Value::Object(o)) = m.get(kind) {
                let mut media = o.clone();
                media.remove("caption");
                media.insert("type".into(), Value::String(kind.to_owned()));
                extra.insert("media".into(), Value::Object(media));
            }
        }
        _ => {}
    }
    if let Some(r) = m.get("referral") {
        extra.insert("referral".into(), r.clone());
    }
    (!extra.is_empty()).then_some(Value::Object(extra))
}

struct Ctx<'a> {
    entry_time: Option<DateTime<Utc>>,
    prices: Option<&'a PriceTable>,
}

impl Ctx<'_> {
    fn at(&self, v: Option<&Value>) -> DateTime<Utc> {
        v.and_then(unix_time)
            .or(self.entry_time)
            .unwrap_or_else(|| SystemClock.now())
    }

    fn signal(&self, at: DateTime<Utc>, s: Signal) -> Event {
        Event::Signal(ChannelSignal::new(ChannelKind::WhatsApp, at, s))
    }

    fn messages(&self, value: &Value, out: &mut Vec<Event>) {
        let contacts = array(value, "contacts");
        for m in array(value, "messages") {
            match self.inbound(m, contacts) {
                Some(e) => out.push(e),
                None => {
                    tracing::debug!("skipping a WhatsApp message that is not a person's message")
                }
            }
        }
        let value_errors = array(value, "errors");
        for s in array(value, "statuses") {
            match self.status(s, value_errors) {
                Some(e) => out.push(e),
                None => tracing::debug!("skipping an unreadable WhatsApp status"),
            }
        }
        for e in value_errors {
            if array(value, "statuses").is_empty() {
                tracing::warn!(error = %e, "WhatsApp webhook carries a system error");
            }
        }
    }

    fn inbound(&self, m: &Value, contacts: &[Value]) -> Option<Event> {
        let kind = m.get("type").and_then(Value::as_str).unwrap_or("unknown");
        if kind == "system" || kind == "request_welcome" {
            tracing::debug!(
                kind,
                "skipping a WhatsApp message that WhatsApp itself wrote"
            );
            return None;
        }
        if kind == "unsupported" {
            // Older API versions show an edit or a deletion as `unsupported` with the real type
            // inside, and no id of the message it changed: nothing can be applied, and it is
            // not the person writing.
            let inner = str_at(m, &["unsupported", "type"]).unwrap_or_default();
            if matches!(inner, "edit" | "revoke" | "reaction") {
                tracing::debug!(
                    kind,
                    inner,
                    "skipping an unsupported WhatsApp edit, deletion or reaction"
                );
                return None;
            }
        }
        let from = m
            .get("from")
            .and_then(Value::as_str)
            .or_else(|| m.get("from_user_id").and_then(Value::as_str))
            .filter(|s| !s.is_empty())?
            .to_owned();
        let at = self.at(m.get("timestamp"));
        // A group message is answered in the group (`group:<id>`, sent with
        // `recipient_type: group`), not privately.
        let address = match m.get("group_id").and_then(Value::as_str) {
            Some(g) if !g.is_empty() => Address::WhatsApp(format!("group:{g}")),
            _ => Address::WhatsApp(from.clone()),
        };
        let mut msg = match kind {
            "edit" => {
                let edit = m.get("edit").unwrap_or(&Value::Null);
                let Some(of) = str_at(edit, &["original_message_id"])
                    .or_else(|| str_at(edit, &["message_id"]))
                    .or_else(|| str_at(m, &["context", "id"]))
                else {
                    tracing::debug!(kind, "skipping a WhatsApp edit that names no message");
                    return None;
                };
                // The new content: `edit.message` is shaped like a message.
                let content = edit.get("message").unwrap_or(edit);
                let inner_kind = content
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("text");
                let text = content_text(content, inner_kind);
                InboundMessage::new(ChannelKind::WhatsApp, address, text, at).action(
                    InboundAction::Edit {
                        of: ProviderMessageId::new(of),
                    },
                )
            }
            "revoke" => {
                let Some(of) = str_at(m, &["revoke", "original_message_id"])
                    .or_else(|| str_at(m, &["revoke", "message_id"]))
                    .or_else(|| str_at(m, &["context", "id"]))
                else {
                    tracing::debug!(kind, "skipping a WhatsApp deletion that names no message");
                    return None;
                };
                InboundMessage::new(ChannelKind::WhatsApp, address, None, at).action(
                    InboundAction::Deletion {
                        of: ProviderMessageId::new(of),
                    },
                )
            }
            "reaction" => {
                let Some(to) = str_at(m, &["reaction", "message_id"]) else {
                    tracing::debug!(kind, "skipping a WhatsApp reaction that names no message");
                    return None;
                };
                let emoji = str_at(m, &["reaction", "emoji"])
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned);
                InboundMessage::new(ChannelKind::WhatsApp, address, None, at).action(
                    InboundAction::Reaction {
                        to: ProviderMessageId::new(to),
                        emoji,
                    },
                )
            }
            _ => {
                let text = content_text(m, kind);
                let mut msg = InboundMessage::new(ChannelKind::WhatsApp, address, text, at);
                if let Some(p) = button_payload(m, kind) {
                    msg = msg.button_payload(p);
                }
                if let Some(extra) = content_extra(m, kind) {
                    msg = msg.extra(extra);
                }
                msg
            }
        };
        msg.from = from.clone();
        if let Some(id) = m.get("id").and_then(Value::as_str) {
            msg = msg.provider_message_id(id);
        }
        let name = contacts
            .iter()
            .find(|c| {
                c.get("wa_id").and_then(Value::as_str) == Some(&from)
                    || c.get("user_id").and_then(Value::as_str) == Some(&from)
            })
            .or(if contacts.len() == 1 {
                contacts.first()
            } else {
                None
            })
            .and_then(|c| str_at(c, &["profile", "name"]));
        if let Some(n) = name {
            msg = msg.sender_name(n);
        }
        if kind == "contacts" {
            // The first shared phone that reads as a number; it is the sender's own when its
            // WhatsApp id or digits are the sender's. A number that does not read as one is kept
            // raw in the text, so that a person can still read it.
            let phones: Vec<&Value> = array(m, "contacts")
                .iter()
                .flat_map(|c| array(c, "phones"))
                .collect();
            let shared = phones.iter().find_map(|p| {
                let phone = Phone::parse(p.get("phone").and_then(Value::as_str)?).ok()?;
                Some((phone, p.get("wa_id").and_then(Value::as_str)))
            });
            match shared {
                Some((phone, wa)) => {
                    let own = phone.digits() == from || wa == Some(from.as_str());
                    msg = msg.contact(phone, own);
                }
                None => {
                    let raw = phones
                        .iter()
                        .find_map(|p| p.get("phone").and_then(Value::as_str))
                        .filter(|r| !r.trim().is_empty());
                    if let Some(raw) = raw {
                        let own = phones
                            .iter()
                            .any(|p| p.get("wa_id").and_then(Value::as_str) == Some(&from));
                        msg.contact_is_own = Some(own);
                        if msg.text.is_none() {
                            msg.text = Some(raw.to_owned());
                        }
                    }
                }
            }
        }
        if let Some(r) = str_at(m, &["context", "id"]) {
            msg = msg.reply_to(r);
        }
        Some(Event::Inbound(msg))
    }

    /// `smb_message_echoes`: messages the business wrote in the WhatsApp Business app (a
    /// number on the Cloud API and the app at once). They are the business's words, addressed
    /// to `to`: inbound events with [`InboundAction::Echo`], never replies.
    fn echoes(&self, value: &Value, out: &mut Vec<Event>) {
        for m in array(value, "message_echoes") {
            let (Some(from), Some(to)) = (
                m.get("from").and_then(Value::as_str),
                m.get("to")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty()),
            ) else {
                tracing::debug!("skipping a WhatsApp message echo without from or to");
                continue;
            };
            let kind = m.get("type").and_then(Value::as_str).unwrap_or("unknown");
            let mut msg = InboundMessage::new(
                ChannelKind::WhatsApp,
                Address::WhatsApp(to.to_owned()),
                content_text(m, kind),
                self.at(m.get("timestamp")),
            )
            .action(InboundAction::Echo);
            msg.from = from.to_owned();
            if let Some(id) = m.get("id").and_then(Value::as_str) {
                msg = msg.provider_message_id(id);
            }
            if let Some(extra) = content_extra(m, kind) {
                msg = msg.extra(extra);
            }
            out.push(Event::Inbound(msg));
        }
    }

    fn status(&self, s: &Value, value_errors: &[Value]) -> Option<Event> {
        let id = s.get("id").and_then(Value::as_str)?;
        let status = match s.get("status").and_then(Value::as_str)? {
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" | "played" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            "accepted" => DeliveryStatus::Accepted,
            _ => return None,
        };
        let at = self.at(s.get("timestamp"));
        let mut r = DeliveryReport::new(ChannelKind::WhatsApp, id, status, at);
        if let Some(to) = s
            .get("recipient_id")
            .and_then(Value::as_str)
            .or_else(|| s.get("recipient_user_id").and_then(Value::as_str))
        {
            r = r.recipient(to);
        }
        if let Some(cb) = s
            .get("biz_opaque_callback_data")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
        {
            r = r.notification_id(NotificationId::new(cb));
        }
        let errors = array(s, "errors");
        let first = errors.first().or(if status == DeliveryStatus::Failed {
            value_errors.first()
        } else {
            None
        });
        if let Some(e) = first {
            r = r.error(provider_error(e));
        }
        if let (Some(prices), Some(p)) = (self.prices, s.get("pricing")) {
            r.cost = Some(prices.from_pricing(
                p.get("category").and_then(Value::as_str),
                p.get("type").and_then(Value::as_str),
                p.get("billable").and_then(Value::as_bool),
            ));
        }
        Some(Event::Delivery(r))
    }

    fn template_status(&self, v: &Value, out: &mut Vec<Event>) {
        let Some(name) = v.get("message_template_name").and_then(Value::as_str) else {
            return;
        };
        let Some(event) = v.get("event").and_then(Value::as_str) else {
            return;
        };
        let reason = v
            .get("reason")
            .and_then(Value::as_str)
            .filter(|r| !r.eq_ignore_ascii_case("NONE"))
            .or_else(|| str_at(v, &["other_info", "title"]))
            .map(str::to_owned);
        out.push(self.signal(
            self.at(None),
            Signal::TemplateStatus {
                name: name.to_owned(),
                language: string_of(v.get("message_template_language")),
                status: event.to_owned(),
                reason,
            },
        ));
    }

    fn template_quality(&self, v: &Value, out: &mut Vec<Event>) {
        let (Some(name), Some(score)) = (
            v.get("message_template_name").and_then(Value::as_str),
            v.get("new_quality_score").and_then(Value::as_str),
        ) else {
            return;
        };
        let reason = v
            .get("previous_quality_score")
            .and_then(Value::as_str)
            .map(|p| format!("quality {p} -> {score}"));
        out.push(self.signal(
            self.at(None),
            Signal::TemplateStatus {
                name: name.to_owned(),
                language: string_of(v.get("message_template_language")),
                status: score.to_owned(),
                reason,
            },
        ));
    }

    fn tier_signal(&self, v: &Value, out: &mut Vec<Event>) {
        let raw = [
            "max_daily_conversations_per_business",
            "current_limit",
            "max_daily_conversation_per_phone",
        ]
        .iter()
        .find_map(|k| v.get(*k).filter(|x| MessagingTier::from_value(x).is_some()));
        if let Some(raw) = raw
            && let Some(tier) = MessagingTier::from_value(raw)
        {
            out.push(self.signal(
                self.at(None),
                Signal::Tier {
                    limit: tier.daily_unique_limit(),
                    name: Some(match raw {
                        Value::String(s) => s.clone(),
                        _ => tier.provider_name(),
                    }),
                },
            ));
        }
    }

    fn phone_quality(&self, v: &Value, out: &mut Vec<Event>) {
        let event = v.get("event").and_then(Value::as_str).unwrap_or_default();
        // ONBOARDING and THROUGHPUT_UPGRADE are not about quality; FLAGGED, UNFLAGGED, UPGRADE,
        // DOWNGRADE (and anything new) are passed on as the rating.
        if !event.is_empty() && !matches!(event, "ONBOARDING" | "THROUGHPUT_UPGRADE") {
            out.push(self.signal(
                self.at(None),
                Signal::Quality {
                    rating: event.to_owned(),
                    phone_number: string_of(v.get("display_phone_number")),
                },
            ));
        }
        self.tier_signal(v, out);
    }

    fn capability(&self, v: &Value, out: &mut Vec<Event>) {
        self.tier_signal(v, out);
    }

    fn account_update(&self, v: &Value, out: &mut Vec<Event>) {
        let event = v.get("event").and_then(Value::as_str).unwrap_or_default();
        for r in array(v, "restriction_info") {
            let Some(kind) = r.get("restriction_type").and_then(Value::as_str) else {
                continue;
            };
            // Restrictions that do not stop messages (adding numbers, calling) are not signals.
            if kind.contains("ADD_PHONE_NUMBER") || kind.contains("CALL") {
                continue;
            }
            let until = r.get("expiration").and_then(|e| {
                unix_time(e).or_else(|| {
                    e.as_str()
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .map(|d| d.with_timezone(&Utc))
                })
            });
            out.push(self.signal(
                self.at(None),
                Signal::Restriction {
                    until,
                    reason: Some(kind.to_owned()),
                },
            ));
        }
        if event == "ACCOUNT_VIOLATION" || v.get("violation_info").is_some() {
            // A policy violation lowers the account's standing: passed on as a quality rating
            // (the engine marks the channel degraded), with the violation type logged.
            tracing::debug!(
                violation = ?str_at(v, &["violation_info", "violation_type"]),
                "WhatsApp account violation"
            );
            out.push(self.signal(
                self.at(None),
                Signal::Quality {
                    rating: "ACCOUNT_VIOLATION".to_owned(),
                    phone_number: string_of(v.get("phone_number")),
                },
            ));
        }
        let banned = str_at(v, &["ban_info", "waba_ban_state"]) == Some("DISABLE");
        if banned || matches!(event, "ACCOUNT_DELETED" | "ACCOUNT_OFFBOARDED") {
            out.push(self.signal(
                self.at(None),
                Signal::Restriction {
                    until: None,
                    reason: Some(if banned {
                        "DISABLED_UPDATE".to_owned()
                    } else {
                        event.to_owned()
                    }),
                },
            ));
        }
    }

    fn user_preferences(&self, v: &Value, out: &mut Vec<Event>) {
        for p in array(v, "user_preferences") {
            let category = p
                .get("category")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let value = p.get("value").and_then(Value::as_str).unwrap_or_default();
            let Some(wa_id) = p.get("wa_id").and_then(Value::as_str) else {
                continue;
            };
            if !category.starts_with("marketing") {
                tracing::debug!(category, "ignoring a WhatsApp user preference");
                continue;
            }
            let (from, address) = (wa_id.to_owned(), Address::WhatsApp(wa_id.to_owned()));
            let purpose = Some(Purpose::Marketing);
            let signal = if value.eq_ignore_ascii_case("stop") {
                Signal::OptOut {
                    from,
                    address,
                    purpose,
                }
            } else if value.eq_ignore_ascii_case("resume") {
                Signal::OptIn {
                    from,
                    address,
                    purpose,
                }
            } else {
                tracing::debug!(value, "ignoring a WhatsApp marketing preference");
                continue;
            };
            out.push(self.signal(self.at(p.get("timestamp")), signal));
        }
    }
}

/// A webhook `errors[]` element as a report's error, mapped through the error table.
fn provider_error(e: &Value) -> ProviderError {
    match GraphError::from_value(e) {
        Some(g) => g.to_provider_error(),
        None => ProviderError {
            code: string_of(e.get("code")).unwrap_or_else(|| "unknown".to_owned()),
            message: e
                .get("title")
                .or_else(|| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("unreadable WhatsApp error")
                .to_owned(),
            kind: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::ErrorKind;
    use messaging_core::webhook::hmac_sha256_hex;
    use serde_json::json;

    fn wrap(field: &str, value: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "time": 1_700_000_000, "changes": [{"field": field, "value": value}]}]})).unwrap()
    }

    fn parse(field: &str, value: Value) -> Vec<Event> {
        WabaWebhook::new().parse_body(&wrap(field, value)).unwrap()
    }

    #[test]
    fn not_a_whatsapp_webhook_is_malformed() {
        let h = WabaWebhook::new();
        for body in [
            &b"not json"[..],
            br#"{"object":"page","entry":[]}"#,
            br#"{"entry":[]}"#,
            br#"{"object":"whatsapp_business_account"}"#,
            b"[]",
        ] {
            assert!(
                matches!(h.parse_body(body), Err(WebhookError::Malformed { .. })),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            h.parse_body(br#"{"object":"whatsapp_business_account","entry":[]}"#)
                .unwrap(),
            vec![]
        );
    }

    #[test]
    fn signature_checks() {
        let h = WabaWebhook::new().app_secret("s3cret");
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let good = format!("sha256={}", hmac_sha256_hex(b"s3cret", body));
        let check = |value: Option<&str>, body: &[u8]| {
            let mut headers = http::HeaderMap::new();
            if let Some(v) = value {
                headers.insert("x-hub-signature-256", v.parse().unwrap());
            }
            h.verify(&WebhookRequest::post(&headers, body))
        };
        assert_eq!(check(Some(&good), body), Ok(()));
        assert_eq!(
            check(
                Some(&good),
                br#"{"object":"whatsapp_business_account","entry":[ ]}"#
            ),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            check(None, body),
            Err(WebhookError::MissingSignature(SIGNATURE_HEADER))
        );
        assert_eq!(
            check(Some(&good.replace("sha256=", "sha1=")), body),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            check(Some(good.trim_start_matches("sha256=")), body),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            check(Some("sha256=zz"), body),
            Err(WebhookError::BadSignature)
        );
        // Without a secret everything passes.
        assert_eq!(
            WabaWebhook::new().verify(&WebhookRequest::post(&http::HeaderMap::new(), body)),
            Ok(())
        );
    }

    #[test]
    fn handshake() {
        let h = WabaWebhook::new().verify_token("tok en");
        let get = http::Method::GET;
        let headers = http::HeaderMap::new();
        let req = |url: &'static str| WebhookRequest {
            method: &get,
            url: Some(url),
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            h.handshake(&req(
                "/wa?hub.mode=subscribe&hub.verify_token=tok%20en&hub.challenge=1158201444"
            )),
            Some(Ok(WebhookReply::text("1158201444")))
        );
        assert_eq!(
            h.handshake(&req(
                "https://x.example/wa?hub.mode=subscribe&hub.verify_token=bad&hub.challenge=1"
            )),
            Some(Err(WebhookError::BadVerifyToken))
        );
        assert_eq!(
            h.handshake(&req(
                "/wa?hub.mode=unsubscribe&hub.verify_token=tok+en&hub.challenge=1"
            )),
            Some(Err(WebhookError::BadVerifyToken))
        );
        assert_eq!(h.handshake(&req("/wa?x=1")), None);
        assert_eq!(h.handshake(&req("/wa")), None);
        assert_eq!(
            WabaWebhook::new().handshake(&req(
                "/wa?hub.mode=subscribe&hub.verify_token=&hub.challenge=1"
            )),
            Some(Err(WebhookError::BadVerifyToken))
        );
        let headers2 = http::HeaderMap::new();
        assert_eq!(
            h.handshake(&WebhookRequest::post(&headers2, b"{}").with_url("/wa?hub.mode=subscribe")),
            None
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let h = WabaWebhook::new()
            .app_secret("topsecret")
            .verify_token("tokentoken");
        let d = format!("{h:?}");
        assert!(!d.contains("topsecret") && !d.contains("tokentoken"), "{d}");
        assert!(d.contains("redacted"));
    }

    #[test]
    fn inbound_kinds() {
        let contacts = json!([{"profile": {"name": "Anna"}, "wa_id": "79990001122"}]);
        let msgs = json!([
            {"from": "79990001122", "id": "w1", "timestamp": "1700000000", "type": "text", "text": {"body": "Да"}},
            {"from": "79990001122", "id": "w2", "timestamp": "1700000001", "type": "button", "button": {"text": "Приду", "payload": "yes"}, "context": {"id": "wamid.tpl"}},
            {"from": "79990001122", "id": "w3", "timestamp": 1700000002, "type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "no", "title": "Нет"}}},
            {"from": "79990001122", "id": "w4", "timestamp": "1700000003", "type": "image", "image": {"id": "1", "caption": "фото"}},
            {"from": "79990001122", "id": "w5", "timestamp": "1700000004", "type": "location", "location": {"latitude": 1.0}},
            {"from": "79990001122", "id": "w6", "timestamp": "1700000005", "type": "system", "system": {"body": "changed"}},
            {"id": "w7", "type": "text", "text": {"body": "no sender"}},
            {"from": "79990001122", "id": "w8", "timestamp": "1700000006", "type": "brand_new_type", "brand_new_type": {}}
        ]);
        let ev = parse("messages", json!({"contacts": contacts, "messages": msgs}));
        let inbound: Vec<_> = ev
            .iter()
            .map(|e| match e {
                Event::Inbound(m) => m,
                _ => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(inbound.len(), 6);
        assert_eq!(inbound[0].text.as_deref(), Some("Да"));
        assert_eq!(inbound[0].address, Address::WhatsApp("79990001122".into()));
        assert_eq!(inbound[0].sender_name.as_deref(), Some("Anna"));
        assert_eq!(inbound[0].at.timestamp(), 1_700_000_000);
        assert_eq!(inbound[1].button_payload.as_deref(), Some("yes"));
        assert_eq!(inbound[1].text.as_deref(), Some("Приду"));
        assert_eq!(
            inbound[1].reply_to.as_ref().map(|r| r.as_str()),
            Some("wamid.tpl")
        );
        assert_eq!(inbound[2].text.as_deref(), Some("Нет"));
        assert_eq!(inbound[2].button_payload.as_deref(), Some("no"));
        assert_eq!(inbound[3].text.as_deref(), Some("фото"));
        assert_eq!(
            inbound[3].extra.as_ref().unwrap()["media"],
            json!({"type": "image", "id": "1"})
        );
        assert_eq!(inbound[4].text, None);
        assert_eq!(
            inbound[4].extra.as_ref().unwrap()["location"]["latitude"],
            1.0
        );
        assert_eq!(inbound[5].text, None);
        // An unknown type from a person is still their message.
        assert!(inbound.iter().all(|m| m.counts_as_reply()));
        assert_eq!(
            inbound[5].provider_message_id.as_ref().map(|r| r.as_str()),
            Some("w8")
        );
    }

    fn inbound_of(e: &Event) -> &InboundMessage {
        match e {
            Event::Inbound(m) => m,
            other => panic!("{other:?}"),
        }
    }

    /// Edits, deletions and reactions, shaped as Meta's messages webhook reference shows them.
    #[test]
    fn edits_deletions_and_reactions_are_not_new_messages() {
        let contacts = json!([{"profile": {"name": "Anna"}, "wa_id": "79990001122"}]);
        let msgs = json!([
            {"from": "79990001122", "id": "wamid.EDIT", "timestamp": "1700000010", "type": "edit",
             "edit": {"original_message_id": "wamid.ORIG", "message": {"type": "text", "text": {"body": "Приду в 11"}}}},
            {"from": "79990001122", "id": "wamid.REVOKE", "timestamp": "1700000011", "type": "revoke",
             "revoke": {"original_message_id": "wamid.ORIG"}},
            {"from": "79990001122", "id": "wamid.R1", "timestamp": "1700000012", "type": "reaction",
             "reaction": {"message_id": "wamid.OURS", "emoji": "👍"}},
            {"from": "79990001122", "id": "wamid.R2", "timestamp": "1700000013", "type": "reaction",
             "reaction": {"message_id": "wamid.OURS", "emoji": ""}},
            // Older versions: an edit as `unsupported`, naming no message.
            {"from": "79990001122", "id": "wamid.U", "timestamp": "1700000014", "type": "unsupported",
             "unsupported": {"type": "edit"}, "errors": [{"code": 131051, "title": "Message type unknown"}]},
            // An edit or deletion naming no message cannot be applied.
            {"from": "79990001122", "id": "wamid.E2", "timestamp": "1700000015", "type": "edit", "edit": {}},
            {"from": "79990001122", "id": "wamid.D2", "timestamp": "1700000016", "type": "revoke"},
            {"from": "79990001122", "id": "wamid.R3", "timestamp": "1700000017", "type": "reaction", "reaction": {"emoji": "👍"}}
        ]);
        let ev = parse("messages", json!({"contacts": contacts, "messages": msgs}));
        assert_eq!(ev.len(), 4, "{ev:?}");
        let edit = inbound_of(&ev[0]);
        assert_eq!(
            edit.action,
            InboundAction::Edit {
                of: "wamid.ORIG".into()
            }
        );
        assert_eq!(edit.text.as_deref(), Some("Приду в 11"));
        assert_eq!(edit.sender_name.as_deref(), Some("Anna"));
        assert!(!edit.counts_as_reply());
        let del = inbound_of(&ev[1]);
        assert_eq!(
            del.action,
            InboundAction::Deletion {
                of: "wamid.ORIG".into()
            }
        );
        assert_eq!(del.text, None);
        assert!(!del.counts_as_reply());
        let r = inbound_of(&ev[2]);
        assert_eq!(
            r.action,
            InboundAction::Reaction {
                to: "wamid.OURS".into(),
                emoji: Some("👍".into())
            }
        );
        assert_eq!(r.read_evidence().map(|i| i.as_str()), Some("wamid.OURS"));
        assert!(!r.counts_as_reply());
        assert_eq!(
            inbound_of(&ev[3]).action,
            InboundAction::Reaction {
                to: "wamid.OURS".into(),
                emoji: None
            }
        );
        let v = serde_json::to_value(&ev[0]).unwrap();
        assert_eq!(v["action"], json!({"type": "edit", "of": "wamid.ORIG"}));
        let v = serde_json::to_value(&ev[1]).unwrap();
        assert_eq!(v["action"], json!({"type": "deletion", "of": "wamid.ORIG"}));
    }

    /// Flow replies, locations, contacts, media, groups, shaped as Meta documents them.
    #[test]
    fn other_message_types() {
        let contacts = json!([{"profile": {"name": "Anna"}, "wa_id": "79990001122"}]);
        let msgs = json!([
            {"from": "79990001122", "id": "w1", "timestamp": "1700000000", "type": "interactive",
             "context": {"from": "15550001111", "id": "wamid.FLOW"},
             "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                 "response_json": "{\"flow_token\":\"t1\",\"date\":\"2026-01-02\"}"}}},
            {"from": "79990001122", "id": "w2", "timestamp": "1700000001", "type": "location",
             "location": {"latitude": 55.75, "longitude": 37.61, "name": "Клиника", "address": "Москва"}},
            {"from": "79990001122", "id": "w3", "timestamp": "1700000002", "type": "contacts",
             "contacts": [{"name": {"formatted_name": "Ivan"}, "phones": [{"phone": "12", "type": "CELL"}]}]},
            {"from": "79990001122", "id": "w4", "timestamp": "1700000003", "type": "contacts",
             "contacts": [{"name": {"formatted_name": "Me"}, "phones": [{"phone": "+7 999 000-11-22", "wa_id": "79990001122", "type": "CELL"}]}]},
            {"from": "79990001122", "id": "w5", "timestamp": "1700000004", "type": "document",
             "document": {"caption": "анализы", "filename": "a.pdf", "mime_type": "application/pdf", "sha256": "x", "id": "m5"}},
            {"from": "79990001122", "id": "w6", "timestamp": "1700000005", "type": "text",
             "group_id": "Y2FwaV9ncm91cDox", "text": {"body": "всем привет"}}
        ]);
        let ev = parse("messages", json!({"contacts": contacts, "messages": msgs}));
        assert_eq!(ev.len(), 6);
        let flow = inbound_of(&ev[0]);
        assert_eq!(
            flow.text.as_deref(),
            Some("{\"flow_token\":\"t1\",\"date\":\"2026-01-02\"}")
        );
        assert_eq!(
            flow.extra.as_ref().unwrap()["flow"],
            json!({"name": "flow", "response": {"flow_token": "t1", "date": "2026-01-02"}})
        );
        assert_eq!(flow.reply_to.as_ref().unwrap().as_str(), "wamid.FLOW");
        assert!(flow.counts_as_reply(), "a Flow reply is an explicit answer");
        let loc = inbound_of(&ev[1]);
        assert_eq!(loc.extra.as_ref().unwrap()["location"]["name"], "Клиника");
        // A number that does not validate is kept raw.
        let bad = inbound_of(&ev[2]);
        assert_eq!(bad.contact_phone, None);
        assert_eq!(bad.text.as_deref(), Some("12"));
        assert_eq!(bad.contact_is_own, Some(false));
        let own = inbound_of(&ev[3]);
        assert_eq!(own.contact_phone.as_ref().unwrap().as_str(), "+79990001122");
        assert_eq!(own.contact_is_own, Some(true));
        let doc = inbound_of(&ev[4]);
        assert_eq!(doc.text.as_deref(), Some("анализы"));
        assert_eq!(doc.extra.as_ref().unwrap()["media"]["filename"], "a.pdf");
        let group = inbound_of(&ev[5]);
        assert_eq!(
            group.address,
            Address::WhatsApp("group:Y2FwaV9ncm91cDox".into())
        );
        assert_eq!(group.from, "79990001122");
    }

    /// `smb_message_echoes`: what the business wrote in the Business app.
    #[test]
    fn business_app_echoes_are_not_replies() {
        let ev = parse(
            "smb_message_echoes",
            json!({"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "10"},
            "message_echoes": [
                {"from": "15550001111", "to": "79990001122", "id": "wamid.ECHO", "timestamp": "1700000020",
                 "type": "text", "text": {"body": "Ждём вас завтра"}},
                {"from": "15550001111", "id": "wamid.NOTO", "type": "text", "text": {"body": "?"}}
            ]}),
        );
        assert_eq!(ev.len(), 1);
        let e = inbound_of(&ev[0]);
        assert_eq!(e.action, InboundAction::Echo);
        assert_eq!(e.address, Address::WhatsApp("79990001122".into()));
        assert_eq!(e.from, "15550001111");
        assert_eq!(e.text.as_deref(), Some("Ждём вас завтра"));
        assert!(!e.counts_as_reply());
    }

    #[test]
    fn marketing_resume_violation_and_category_update() {
        let ev = parse(
            "user_preferences",
            json!({"messaging_product": "whatsapp", "contacts": [], "user_preferences": [
                {"wa_id": "7998", "detail": "User requested to resume marketing messages", "category": "marketing_messages", "value": "resume", "timestamp": 1700000100},
                {"wa_id": "7997", "category": "something_else", "value": "stop", "timestamp": 1700000100}
            ]}),
        );
        assert_eq!(ev.len(), 1);
        let Event::Signal(s) = &ev[0] else { panic!() };
        assert_eq!(
            s.signal,
            Signal::OptIn {
                from: "7998".into(),
                address: Address::WhatsApp("7998".into()),
                purpose: Some(Purpose::Marketing)
            }
        );

        let ev = parse(
            "account_update",
            json!({"phone_number": "15550783881", "event": "ACCOUNT_VIOLATION",
                   "violation_info": {"violation_type": "ADULT"}}),
        );
        assert_eq!(ev.len(), 1);
        let Event::Signal(s) = &ev[0] else { panic!() };
        assert_eq!(
            s.signal,
            Signal::Quality {
                rating: "ACCOUNT_VIOLATION".into(),
                phone_number: Some("15550783881".into())
            }
        );

        // Deliberately ignored.
        assert!(
            parse(
                "template_category_update",
                json!({"message_template_id": 1, "message_template_name": "r", "message_template_language": "ru",
                       "previous_category": "UTILITY", "new_category": "MARKETING"}),
            )
            .is_empty()
        );
        assert!(parse("account_update", json!({"event": "PARTNER_ADDED"})).is_empty());
    }

    #[test]
    fn statuses_map_to_reports() {
        let ev = parse(
            "messages",
            json!({"statuses": [
                {"id": "w1", "status": "sent", "timestamp": "1700000000", "recipient_id": "7999", "biz_opaque_callback_data": "notif-1",
                 "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility"}},
                {"id": "w1", "status": "played", "timestamp": "1700000001", "recipient_id": "7999"},
                {"id": "w1", "status": "failed", "timestamp": "1700000002", "recipient_id": "7999", "errors": [{"code": 131047, "title": "Re-engagement message"}]},
                {"id": "w1", "status": "deleted", "timestamp": "1700000003"},
                {"status": "sent"}
            ]}),
        );
        assert_eq!(ev.len(), 3);
        let Event::Delivery(sent) = &ev[0] else {
            panic!()
        };
        assert_eq!(sent.status, DeliveryStatus::Sent);
        assert_eq!(
            sent.notification_id.as_ref().map(|n| n.as_str()),
            Some("notif-1")
        );
        assert_eq!(sent.recipient.as_deref(), Some("7999"));
        assert_eq!(sent.cost, None);
        let Event::Delivery(read) = &ev[1] else {
            panic!()
        };
        assert_eq!(read.status, DeliveryStatus::Read);
        let Event::Delivery(failed) = &ev[2] else {
            panic!()
        };
        let err = failed.error.as_ref().unwrap();
        assert_eq!(err.code, "131047");
        assert_eq!(err.kind, Some(ErrorKind::NeedsTemplate));
        let v = serde_json::to_value(&ev[2]).unwrap();
        assert_eq!(v["kind"], "delivery");
        assert_eq!(v["channel"], "whatsapp");
        assert_eq!(v["status"], "failed");
        assert_eq!(v["error"]["code"], "131047");
        assert_eq!(v["at"], "2023-11-14T22:13:22Z");

        // A failed status without its own errors takes the value-level ones.
        let ev = parse(
            "messages",
            json!({"statuses": [{"id": "w", "status": "failed", "timestamp": "1"}], "errors": [{"code": 131026, "title": "Undeliverable"}]}),
        );
        let Event::Delivery(r) = &ev[0] else { panic!() };
        assert_eq!(r.error.as_ref().unwrap().kind, Some(ErrorKind::Unreachable));
    }

    #[test]
    fn pricing_with_a_price_table_becomes_cost() {
        let h = WabaWebhook::new()
            .price_table(PriceTable::new("USD").price(crate::PricingCategory::Marketing, 0.05));
        let body = wrap(
            "messages",
            json!({"statuses": [
                {"id": "a", "status": "sent", "timestamp": "1", "pricing": {"pricing_model": "PMP", "type": "regular", "category": "marketing"}},
                {"id": "b", "status": "sent", "timestamp": "1", "pricing": {"pricing_model": "CBP", "billable": false, "category": "marketing"}}
            ]}),
        );
        let ev = h.parse_body(&body).unwrap();
        let costs: Vec<f64> = ev
            .iter()
            .map(|e| match e {
                Event::Delivery(d) => d.cost.as_ref().unwrap().amount,
                _ => panic!(),
            })
            .collect();
        assert_eq!(costs, vec![0.05, 0.0]);
    }

    #[test]
    fn account_signals() {
        let ev = parse(
            "phone_number_quality_update",
            json!({"display_phone_number": "15550783881", "event": "DOWNGRADE", "current_limit": "TIER_1K", "max_daily_conversations_per_business": "TIER_2K"}),
        );
        assert_eq!(ev.len(), 2);
        let Event::Signal(q) = &ev[0] else { panic!() };
        assert_eq!(
            q.signal,
            Signal::Quality {
                rating: "DOWNGRADE".into(),
                phone_number: Some("15550783881".into())
            }
        );
        let Event::Signal(t) = &ev[1] else { panic!() };
        assert_eq!(
            t.signal,
            Signal::Tier {
                limit: Some(2000),
                name: Some("TIER_2K".into())
            }
        );
        assert_eq!(t.at.timestamp(), 1_700_000_000);

        let ev = parse(
            "business_capability_update",
            json!({"max_daily_conversation_per_phone": 100000, "max_phone_numbers_per_business": 2}),
        );
        let Event::Signal(t) = &ev[0] else { panic!() };
        assert_eq!(
            t.signal,
            Signal::Tier {
                limit: Some(100_000),
                name: Some("TIER_100K".into())
            }
        );

        let ev = parse(
            "account_update",
            json!({"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": "DISABLE", "waba_ban_date": "x"}}),
        );
        let Event::Signal(r) = &ev[0] else { panic!() };
        assert!(matches!(&r.signal, Signal::Restriction { until: None, .. }));

        let ev = parse(
            "account_update",
            json!({"event": "ACCOUNT_RESTRICTION", "restriction_info": [{"restriction_type": "RESTRICTED_CUSTOMER_INITIATED_MESSAGING", "expiration": "2026-01-02T00:00:00Z"}]}),
        );
        let Event::Signal(r) = &ev[0] else { panic!() };
        assert_eq!(
            r.signal,
            Signal::Restriction {
                until: Some(Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap()),
                reason: Some("RESTRICTED_CUSTOMER_INITIATED_MESSAGING".into())
            }
        );

        let ev = parse(
            "user_preferences",
            json!({"messaging_product": "whatsapp", "contacts": [], "user_preferences": [
                {"wa_id": "7999", "detail": "User requested to stop marketing messages", "category": "marketing_messages", "value": "stop", "timestamp": 1700000100},
                {"wa_id": "7998", "category": "marketing_messages", "value": "resume", "timestamp": 1700000100}
            ]}),
        );
        // The stop, and the resume (an opt-in; see `marketing_resume_violation_and_category_update`).
        assert_eq!(ev.len(), 2);
        let Event::Signal(o) = &ev[0] else { panic!() };
        assert_eq!(
            o.signal,
            Signal::OptOut {
                from: "7999".into(),
                address: Address::WhatsApp("7999".into()),
                purpose: Some(Purpose::Marketing)
            }
        );
        let v = serde_json::to_value(&ev[0]).unwrap();
        assert_eq!(v["signal"], "opt_out");

        let ev = parse(
            "message_template_quality_update",
            json!({"previous_quality_score": "GREEN", "new_quality_score": "YELLOW", "message_template_id": 1, "message_template_name": "r", "message_template_language": "ru"}),
        );
        let Event::Signal(s) = &ev[0] else { panic!() };
        assert!(
            matches!(&s.signal, Signal::TemplateStatus { status, language: Some(l), .. } if status == "YELLOW" && l == "ru")
        );

        assert!(parse("security", json!({"x": 1})).is_empty());
        assert!(parse("messages", json!("not an object")).is_empty());
    }

    #[test]
    fn channel_id_is_set() {
        let h = WabaWebhook::new().channel_id("wa-main");
        let ev = h.parse_body(&wrap("messages", json!({"messages": [{"from": "1", "type": "text", "text": {"body": "x"}, "timestamp": "1"}]}))).unwrap();
        assert_eq!(ev[0].channel_id().map(|c| c.as_str()), Some("wa-main"));
    }
}
