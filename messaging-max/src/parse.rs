//! Max updates to core [`Event`]s.
//!
//! | `update_type` | event |
//! |---|---|
//! | `message_created` (dialog) | [`Event::Inbound`] from `sender.user_id`, answered at [`Address::MaxUser`] |
//! | `message_created` (group chat, `chat_type` `chat`/`channel`) | [`Event::Inbound`] from `sender.user_id`, answered at [`Address::MaxChat`] |
//! | `message_created` with a `contact` attachment | the above plus `contact_phone` / `contact_is_own` (see [`crate::contact`]) |
//! | `bot_started` | [`Event::Inbound`] with `start_payload` (the deep-link payload) when there is one |
//! | `message_callback` | [`Event::Inbound`] with `button_payload`; `reply_to` is the message the button was under |
//! | `message_edited` | [`Event::Inbound`] as `message_created`, with [`InboundAction::Edit`] `{of: body.mid}` and the new text |
//! | `message_removed` | [`Event::Inbound`] with [`InboundAction::Deletion`] `{of: message_id}`, from `user_id` |
//! | `bot_stopped`, `dialog_removed` | [`Signal::Blocked`] for [`Address::MaxUser`] |
//! | `user_removed` | [`Signal::Blocked`] for the user, with the group chat as the address ([`Address::MaxChat`]) |
//! | `bot_removed` | [`Signal::Blocked`] for the group chat ([`Address::MaxChat`]): the bot can no longer write there |
//! | `bot_added`, `user_added` | skipped (debug line): membership, nobody wrote anything |
//! | `dialog_muted`, `dialog_unmuted` | skipped (debug line): the person silenced notifications, messages still arrive |
//! | anything else (`chat_title_changed`, `dialog_cleared`, ...) | skipped (debug line naming the type; no event, no error) |
//!
//! Messages from bots (`sender.is_bot`) are skipped. Timestamps are Unix milliseconds.

use chrono::{DateTime, Utc};
use messaging_core::webhook::WebhookError;
use messaging_core::{
    Address, ChannelId, ChannelKind, ChannelSignal, Event, InboundAction, InboundMessage, Signal,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::contact::check_wire;
use crate::wire::{ContactPayloadWire, Message, RawUpdate, User};

pub(crate) const PROVIDER: &str = "max";

/// Update types this crate turns into events (pass them to
/// [`MaxBot::subscribe`](crate::MaxBot::subscribe) or a poller).
pub const HANDLED_UPDATE_TYPES: &[&str] = &[
    "message_created",
    "message_callback",
    "bot_started",
    "bot_stopped",
    "dialog_removed",
    "user_removed",
    "message_edited",
    "message_removed",
    "bot_removed",
];

/// Turns Max update JSON into core events.
///
/// ```
/// use messaging_max::UpdateParser;
/// let body = br#"{"update_type":"bot_started","timestamp":1573226679188,"chat_id":1,
///   "user":{"user_id":10001,"first_name":"Ivan"},"payload":"ord_42"}"#;
/// let events = UpdateParser::new().parse(body).unwrap();
/// let json = serde_json::to_value(&events[0]).unwrap();
/// assert_eq!(json["kind"], "inbound");
/// assert_eq!(json["from"], "10001");
/// assert_eq!(json["start_payload"], "ord_42");
/// ```
#[derive(Clone, Default)]
pub struct UpdateParser {
    contact_key: Option<SecretString>,
    channel_id: Option<ChannelId>,
}

impl std::fmt::Debug for UpdateParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateParser")
            .field(
                "contact_key",
                &self.contact_key.as_ref().map(|_| "[redacted]"),
            )
            .field("channel_id", &self.channel_id)
            .finish()
    }
}

impl UpdateParser {
    /// A parser with no contact hash key (shared contacts are never reported as own) and no
    /// channel id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key of the contact `hash` HMAC (see [`crate::contact`]).
    pub fn contact_hash_key(mut self, key: SecretString) -> Self {
        self.contact_key = Some(key);
        self
    }

    /// Tags every event with this configured channel id.
    pub fn channel_id(mut self, id: ChannelId) -> Self {
        self.channel_id = Some(id);
        self
    }

    /// Parses one webhook body: a single `Update` object (what Max POSTs), or for convenience a
    /// whole `GET /updates` response (`{"updates": [...], "marker": ...}`).
    ///
    /// Anything that is not JSON, not an object, or has no `update_type` (and no `updates`) is
    /// [`WebhookError::Malformed`]; a known update type whose required fields are missing is
    /// malformed too; unknown update types give no event.
    pub fn parse(&self, body: &[u8]) -> Result<Vec<Event>, WebhookError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| WebhookError::malformed(PROVIDER, format!("not JSON: {e}")))?;
        let Value::Object(obj) = &value else {
            return Err(WebhookError::malformed(PROVIDER, "not a JSON object"));
        };
        if obj.contains_key("update_type") {
            return Ok(self.parse_value(&value)?.into_iter().collect());
        }
        match obj.get("updates") {
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    out.extend(self.parse_value(item)?);
                }
                Ok(out)
            }
            _ => Err(WebhookError::malformed(
                PROVIDER,
                "neither an update (no update_type) nor an updates list",
            )),
        }
    }

    /// Parses one `Update` JSON value: `Ok(None)` for update types that carry nothing for the
    /// cascade (or messages from bots).
    pub fn parse_value(&self, update: &Value) -> Result<Option<Event>, WebhookError> {
        let Some(kind) = update.get("update_type").and_then(Value::as_str) else {
            return Err(WebhookError::malformed(PROVIDER, "no update_type"));
        };
        if !HANDLED_UPDATE_TYPES.contains(&kind) {
            tracing::debug!(kind, "ignoring a Max update of this type");
            return Ok(None);
        }
        let raw: RawUpdate = serde_json::from_value(update.clone())
            .map_err(|e| WebhookError::malformed(PROVIDER, format!("{kind}: {e}")))?;
        let event = match kind {
            "message_created" => self.message_created(&raw)?,
            "message_edited" => self.message_edited(&raw)?,
            "message_removed" => {
                let Some(mid) = raw.message_id.as_deref().filter(|m| !m.is_empty()) else {
                    return Err(WebhookError::malformed(
                        PROVIDER,
                        "message_removed: no message_id",
                    ));
                };
                let address = match (user_id_of(&raw), raw.chat_id) {
                    (Some(user), _) => Address::MaxUser(user),
                    (None, Some(chat)) => Address::MaxChat(chat),
                    (None, None) => {
                        return Err(WebhookError::malformed(
                            PROVIDER,
                            "message_removed: neither user_id nor chat_id",
                        ));
                    }
                };
                let m =
                    InboundMessage::new(ChannelKind::Max, address, None, at(raw.timestamp, kind)?)
                        .action(InboundAction::Deletion { of: mid.into() });
                Some(Event::Inbound(m))
            }
            "bot_removed" => {
                let chat = raw
                    .chat_id
                    .ok_or_else(|| WebhookError::malformed(PROVIDER, "bot_removed: no chat_id"))?;
                let from = user_id_of(&raw).map_or_else(|| chat.to_string(), |u| u.to_string());
                Some(Event::Signal(ChannelSignal::new(
                    ChannelKind::Max,
                    at(raw.timestamp, kind)?,
                    Signal::Blocked {
                        from,
                        address: Address::MaxChat(chat),
                    },
                )))
            }
            "message_callback" => self.message_callback(&raw)?,
            "bot_started" => self.bot_started(&raw)?,
            "bot_stopped" | "dialog_removed" => {
                let user = user_id_of(&raw)
                    .ok_or_else(|| WebhookError::malformed(PROVIDER, format!("{kind}: no user")))?;
                Some(blocked(
                    user,
                    Address::MaxUser(user),
                    at(raw.timestamp, kind)?,
                ))
            }
            "user_removed" => {
                let user = user_id_of(&raw)
                    .ok_or_else(|| WebhookError::malformed(PROVIDER, "user_removed: no user"))?;
                let address = match raw.chat_id {
                    Some(chat) => Address::MaxChat(chat),
                    None => Address::MaxUser(user),
                };
                Some(blocked(user, address, at(raw.timestamp, kind)?))
            }
            _ => None,
        };
        Ok(event.map(|e| match &self.channel_id {
            Some(id) => e.with_channel_id(id.clone()),
            None => e,
        }))
    }

    fn message_created(&self, raw: &RawUpdate) -> Result<Option<Event>, WebhookError> {
        let msg = raw
            .message
            .as_ref()
            .ok_or_else(|| WebhookError::malformed(PROVIDER, "message_created: no message"))?;
        let Some(sender) = msg.sender.as_ref() else {
            // Channel posts have no sender: nothing a person wrote.
            return Ok(None);
        };
        if sender.is_bot == Some(true) {
            return Ok(None);
        }
        let user = sender.user_id.ok_or_else(|| {
            WebhookError::malformed(PROVIDER, "message_created: sender has no user_id")
        })?;
        let at = at(msg.timestamp.or(raw.timestamp), "message_created")?;
        let body = msg.body.clone().unwrap_or_default();
        let text = body.text.clone().filter(|t| !t.is_empty());
        let mut m = InboundMessage::new(ChannelKind::Max, reply_address(msg, user), text, at);
        m.from = user.to_string();
        if let Some(mid) = body.mid.as_deref().filter(|s| !s.is_empty()) {
            m = m.provider_message_id(mid);
        }
        if let Some(name) = sender.display_name() {
            m = m.sender_name(name);
        }
        if let Some(link) = &msg.link
            && link.kind.as_deref() == Some("reply")
            && let Some(mid) = link.message.as_ref().and_then(|b| b.mid.as_deref())
        {
            m.reply_to = Some(mid.into());
        }
        for att in body.attachments.iter().flatten() {
            if att.get("type").and_then(Value::as_str) != Some("contact") {
                continue;
            }
            let wire: ContactPayloadWire = att
                .get("payload")
                .cloned()
                .and_then(|p| serde_json::from_value(p).ok())
                .unwrap_or_default();
            let key = self
                .contact_key
                .as_ref()
                .map(|k| k.expose_secret().as_bytes());
            let check = check_wire(&wire, user, key);
            if let Some(phone) = check.phone {
                m = m.contact(phone, check.is_own);
                break;
            }
        }
        Ok(Some(Event::Inbound(m)))
    }

    /// `message_edited`: the message as it is now; its `mid` is the edited message's.
    fn message_edited(&self, raw: &RawUpdate) -> Result<Option<Event>, WebhookError> {
        let Some(Event::Inbound(m)) = self.message_created(raw)? else {
            return Ok(None);
        };
        let Some(of) = m.provider_message_id.clone() else {
            tracing::debug!(
                kind = "message_edited",
                "skipping a Max edit that names no message"
            );
            return Ok(None);
        };
        Ok(Some(Event::Inbound(m.action(InboundAction::Edit { of }))))
    }

    fn message_callback(&self, raw: &RawUpdate) -> Result<Option<Event>, WebhookError> {
        let cb = raw
            .callback
            .as_ref()
            .ok_or_else(|| WebhookError::malformed(PROVIDER, "message_callback: no callback"))?;
        let user_obj = cb.user.clone().unwrap_or_default();
        let user = user_obj.user_id.ok_or_else(|| {
            WebhookError::malformed(PROVIDER, "message_callback: callback has no user")
        })?;
        let at = at(cb.timestamp.or(raw.timestamp), "message_callback")?;
        let address = match &raw.message {
            Some(msg) => reply_address(msg, user),
            None => Address::MaxUser(user),
        };
        let mut m = InboundMessage::new(ChannelKind::Max, address, None, at);
        m.from = user.to_string();
        if let Some(p) = &cb.payload {
            m = m.button_payload(p.clone());
        }
        if let Some(name) = user_obj.display_name() {
            m = m.sender_name(name);
        }
        if let Some(mid) = raw
            .message
            .as_ref()
            .and_then(|msg| msg.body.as_ref())
            .and_then(|b| b.mid.as_deref())
        {
            m.reply_to = Some(mid.into());
        }
        Ok(Some(Event::Inbound(m)))
    }

    fn bot_started(&self, raw: &RawUpdate) -> Result<Option<Event>, WebhookError> {
        let user = user_id_of(raw)
            .ok_or_else(|| WebhookError::malformed(PROVIDER, "bot_started: no user"))?;
        let at = at(raw.timestamp, "bot_started")?;
        let mut m = InboundMessage::new(ChannelKind::Max, Address::MaxUser(user), None, at);
        if let Some(p) = raw.payload.as_deref().filter(|p| !p.is_empty()) {
            m = m.start_payload(p);
        }
        if let Some(name) = raw.user.as_ref().and_then(User::display_name) {
            m = m.sender_name(name);
        }
        Ok(Some(Event::Inbound(m)))
    }
}

/// Where to answer a message: the group chat for group messages, else the user.
fn reply_address(msg: &Message, user: i64) -> Address {
    let recipient = msg.recipient.clone().unwrap_or_default();
    match (recipient.chat_type.as_deref(), recipient.chat_id) {
        (Some("chat" | "channel"), Some(chat)) => Address::MaxChat(chat),
        _ => Address::MaxUser(user),
    }
}

fn user_id_of(raw: &RawUpdate) -> Option<i64> {
    raw.user.as_ref().and_then(|u| u.user_id).or(raw.user_id)
}

fn blocked(user: i64, address: Address, at: DateTime<Utc>) -> Event {
    Event::Signal(ChannelSignal::new(
        ChannelKind::Max,
        at,
        Signal::Blocked {
            from: user.to_string(),
            address,
        },
    ))
}

/// A Unix-milliseconds timestamp as a time.
fn at(ms: Option<i64>, kind: &str) -> Result<DateTime<Utc>, WebhookError> {
    let ms =
        ms.ok_or_else(|| WebhookError::malformed(PROVIDER, format!("{kind}: no timestamp")))?;
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        WebhookError::malformed(PROVIDER, format!("{kind}: timestamp {ms} out of range"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::webhook::hmac_sha256_hex;
    use serde_json::json;

    fn one(v: Value) -> Event {
        UpdateParser::new()
            .parse(v.to_string().as_bytes())
            .unwrap()
            .pop()
            .unwrap()
    }

    #[test]
    fn dialog_message() {
        let e = one(json!({
            "update_type": "message_created", "timestamp": 1770679787821i64,
            "message": {"sender": {"user_id": 10001, "first_name": "Ivan", "last_name": "", "is_bot": false},
                        "recipient": {"chat_id": 182182182, "chat_type": "dialog", "user_id": 10002},
                        "timestamp": 1770679787821i64,
                        "body": {"mid": "mid.1", "seq": 116043270574650336u64, "text": "hello"}}}));
        let Event::Inbound(m) = e else { panic!() };
        assert_eq!(m.address, Address::MaxUser(10001));
        assert_eq!(m.from, "10001");
        assert_eq!(m.text.as_deref(), Some("hello"));
        assert_eq!(m.sender_name.as_deref(), Some("Ivan"));
        assert_eq!(m.provider_message_id.unwrap().as_str(), "mid.1");
        assert_eq!(m.at.timestamp_millis(), 1_770_679_787_821);
    }

    #[test]
    fn group_message_answers_in_chat_and_big_ids_survive() {
        let big: i64 = -9_007_199_254_740_993;
        let e = one(json!({
            "update_type": "message_created", "timestamp": 1,
            "message": {"sender": {"user_id": 9_007_199_254_740_995i64},
                        "recipient": {"chat_id": big, "chat_type": "chat"},
                        "timestamp": 2, "body": {"mid": "m", "text": "hi"},
                        "link": {"type": "reply", "message": {"mid": "mid.orig"}}}}));
        let Event::Inbound(m) = e else { panic!() };
        assert_eq!(m.address, Address::MaxChat(big));
        assert_eq!(m.from, "9007199254740995");
        assert_eq!(m.reply_to.unwrap().as_str(), "mid.orig");
        assert_eq!(m.at.timestamp_millis(), 2);
    }

    #[test]
    fn bots_and_unknown_types_are_skipped() {
        let p = UpdateParser::new();
        let bot = json!({"update_type": "message_created", "timestamp": 1,
            "message": {"sender": {"user_id": 1, "is_bot": true}, "timestamp": 1, "body": {"text": "x"}}});
        assert!(p.parse(bot.to_string().as_bytes()).unwrap().is_empty());
        for t in [
            "user_added",
            "bot_added",
            "dialog_muted",
            "dialog_unmuted",
            "chat_title_changed",
            "something_new",
        ] {
            let v = json!({"update_type": t, "timestamp": "not even a number", "message": 5});
            assert!(p.parse(v.to_string().as_bytes()).unwrap().is_empty(), "{t}");
        }
    }

    /// Edits, deletions and the membership updates, shaped as the Max Bot API schema shows them.
    #[test]
    fn edits_deletions_and_membership() {
        let e = one(json!({
            "update_type": "message_edited", "timestamp": 1770679800000i64,
            "message": {"sender": {"user_id": 10001, "first_name": "Ivan", "is_bot": false},
                        "recipient": {"chat_id": 182182182, "chat_type": "dialog", "user_id": 10002},
                        "timestamp": 1770679787821i64,
                        "body": {"mid": "mid.1", "seq": 1, "text": "hello, edited"}}}));
        let Event::Inbound(m) = e else { panic!() };
        assert_eq!(m.action, InboundAction::Edit { of: "mid.1".into() });
        assert_eq!(m.text.as_deref(), Some("hello, edited"));
        assert_eq!(m.address, Address::MaxUser(10001));
        assert!(!m.counts_as_reply());

        let e = one(
            json!({"update_type": "message_removed", "timestamp": 1770679900000i64,
            "message_id": "mid.1", "chat_id": 182182182, "user_id": 10001, "user_locale": "ru"}),
        );
        let Event::Inbound(m) = e else { panic!() };
        assert_eq!(m.action, InboundAction::Deletion { of: "mid.1".into() });
        assert_eq!(m.address, Address::MaxUser(10001));
        assert_eq!(m.text, None);
        assert!(!m.counts_as_reply());
        let v = serde_json::to_value(Event::Inbound(m)).unwrap();
        assert_eq!(v["action"], json!({"type": "deletion", "of": "mid.1"}));

        let e = one(
            json!({"update_type": "bot_removed", "timestamp": 5, "chat_id": -77,
            "user": {"user_id": 8, "first_name": "Admin"}, "is_channel": false}),
        );
        let Event::Signal(s) = e else { panic!() };
        assert_eq!(
            s.signal,
            Signal::Blocked {
                from: "8".into(),
                address: Address::MaxChat(-77)
            }
        );

        let p = UpdateParser::new();
        for v in [
            json!({"update_type": "bot_added", "timestamp": 5, "chat_id": -77, "user": {"user_id": 8}, "is_channel": false}),
            json!({"update_type": "user_added", "timestamp": 5, "chat_id": -77, "user": {"user_id": 9}, "inviter_id": 8, "is_channel": false}),
            json!({"update_type": "dialog_muted", "timestamp": 5, "chat_id": 182182182, "user": {"user_id": 10001}, "muted_until": 1770779900000i64, "user_locale": "ru"}),
        ] {
            assert!(p.parse(v.to_string().as_bytes()).unwrap().is_empty(), "{v}");
        }
        for bad in [
            json!({"update_type": "message_removed", "timestamp": 5, "chat_id": 1, "user_id": 2}),
            json!({"update_type": "message_removed", "timestamp": 5, "message_id": "mid.1"}),
            json!({"update_type": "bot_removed", "timestamp": 5}),
        ] {
            assert!(
                matches!(
                    p.parse(bad.to_string().as_bytes()),
                    Err(WebhookError::Malformed { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn contact_attachment() {
        let vcf = "BEGIN:VCARD\r\nTEL;TYPE=cell:79990000000\r\nEND:VCARD\r\n";
        let body = |sender: i64| {
            json!({"update_type": "message_created", "timestamp": 1770680000000i64,
              "message": {"sender": {"user_id": sender}, "recipient": {"chat_type": "dialog"},
                "timestamp": 1770680000000i64,
                "body": {"mid": "m", "text": null, "attachments": [
                  {"type": "image", "payload": {"url": "x"}},
                  {"type": "contact", "payload": {"vcf_info": vcf, "hash": hmac_sha256_hex(b"tok", vcf.as_bytes()),
                     "max_info": {"user_id": 10001}}}]}}})
            .to_string()
        };
        let keyed = UpdateParser::new().contact_hash_key(SecretString::from("tok"));
        let events = keyed.parse(body(10001).as_bytes()).unwrap();
        let v = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(v["contact_phone"], "+79990000000");
        assert_eq!(v["contact_is_own"], true);
        assert!(v["text"].is_null());
        let v = serde_json::to_value(&keyed.parse(body(10002).as_bytes()).unwrap()[0]).unwrap();
        assert_eq!(v["contact_is_own"], false);
        let v =
            serde_json::to_value(&UpdateParser::new().parse(body(10001).as_bytes()).unwrap()[0])
                .unwrap();
        assert_eq!(v["contact_phone"], "+79990000000");
        assert_eq!(v["contact_is_own"], false);
    }

    #[test]
    fn callback_and_signals() {
        let e = one(json!({"update_type": "message_callback", "timestamp": 5,
            "callback": {"timestamp": 6, "callback_id": "c", "payload": "yes", "user": {"user_id": 7}},
            "message": {"recipient": {"chat_id": 1, "chat_type": "dialog"}, "timestamp": 1, "body": {"mid": "mid.q"}}}));
        let Event::Inbound(m) = e else { panic!() };
        assert_eq!(m.button_payload.as_deref(), Some("yes"));
        assert_eq!(m.address, Address::MaxUser(7));
        assert_eq!(m.reply_to.unwrap().as_str(), "mid.q");
        assert_eq!(m.at.timestamp_millis(), 6);

        for t in ["bot_stopped", "dialog_removed"] {
            let e = one(
                json!({"update_type": t, "timestamp": 9, "chat_id": 3, "user": {"user_id": 8}}),
            );
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(v["kind"], "signal");
            assert_eq!(v["channel"], "max");
            assert_eq!(v["signal"], "blocked");
            assert_eq!(v["from"], "8");
            assert_eq!(v["address"], json!({"type": "max_user", "value": 8}));
        }
        let e = one(
            json!({"update_type": "user_removed", "timestamp": 9, "chat_id": -3, "user": {"user_id": 8}}),
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["address"], json!({"type": "max_chat", "value": -3}));
    }

    #[test]
    fn malformed() {
        let p = UpdateParser::new();
        for body in [
            &b"not json"[..],
            b"[]",
            b"42",
            b"{}",
            br#"{"object":"whatsapp_business_account","entry":[]}"#,
            br#"{"update_id":1,"message":{"text":"telegram"}}"#,
            br#"{"update_type":"bot_started","timestamp":1}"#,
            br#"{"update_type":"bot_stopped","user":{"user_id":1}}"#,
            br#"{"update_type":"bot_stopped","timestamp":1e300,"user":{"user_id":1}}"#,
            br#"{"update_type":"bot_stopped","timestamp":9223372036854775807,"user":{"user_id":1}}"#,
            br#"{"update_type":"message_created","timestamp":1}"#,
            br#"{"update_type":5}"#,
        ] {
            assert!(
                matches!(p.parse(body), Err(WebhookError::Malformed { .. })),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn updates_list_and_channel_id() {
        let p = UpdateParser::new().channel_id(ChannelId::new("max-main"));
        let body = json!({"updates": [
            {"update_type": "bot_stopped", "timestamp": 1, "user": {"user_id": 1}},
            {"update_type": "user_added", "timestamp": 1},
            {"update_type": "bot_started", "timestamp": 1, "user_id": 2}], "marker": 5});
        let events = p.parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|e| e.channel_id().map(ChannelId::as_str) == Some("max-main"))
        );
    }
}
