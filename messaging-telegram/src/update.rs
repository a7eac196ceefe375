//! Telegram `Update` objects to core [`Event`]s.
//!
//! | update | event |
//! |---|---|
//! | `message`, `edited_message` with text, caption, contact or media | [`InboundMessage`]: text, `/start` payload, shared contact |
//! | `callback_query` | [`InboundMessage`] with `button_payload` (the callback `data`) |
//! | `my_chat_member` → `kicked` / `left` | [`Signal::Blocked`] |
//! | `my_chat_member` → `member` / `administrator` after `kicked` / `left` | [`Signal::Unblocked`] |
//! | service messages (group migrated, members joined, ...), any other update type | nothing (skipped) |

use chrono::{DateTime, Utc};
use messaging_core::{
    Address, ChannelId, ChannelKind, ChannelSignal, Clock, Event, InboundMessage, Phone, Signal,
    SystemClock,
};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::PROVIDER;
use crate::identity::parse_start_payload;
use messaging_core::webhook::WebhookError;

#[derive(Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

impl User {
    fn display_name(&self) -> Option<String> {
        let name = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        (!name.is_empty()).then_some(name)
    }
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

#[derive(Deserialize)]
struct Contact {
    phone_number: String,
    #[serde(default)]
    user_id: Option<i64>,
}

#[derive(Deserialize)]
struct MessageRef {
    message_id: i64,
}

#[derive(Deserialize)]
struct Message {
    message_id: i64,
    #[serde(default)]
    date: i64,
    chat: Chat,
    #[serde(default)]
    from: Option<User>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    contact: Option<Contact>,
    #[serde(default)]
    edit_date: Option<i64>,
    #[serde(default)]
    reply_to_message: Option<MessageRef>,
    #[serde(default)]
    photo: Option<IgnoredAny>,
    #[serde(default)]
    document: Option<IgnoredAny>,
    #[serde(default)]
    audio: Option<IgnoredAny>,
    #[serde(default)]
    voice: Option<IgnoredAny>,
    #[serde(default)]
    video: Option<IgnoredAny>,
    #[serde(default)]
    video_note: Option<IgnoredAny>,
    #[serde(default)]
    animation: Option<IgnoredAny>,
    #[serde(default)]
    sticker: Option<IgnoredAny>,
    #[serde(default)]
    location: Option<IgnoredAny>,
    #[serde(default)]
    venue: Option<IgnoredAny>,
}

impl Message {
    fn has_media(&self) -> bool {
        [
            &self.photo,
            &self.document,
            &self.audio,
            &self.voice,
            &self.video,
            &self.video_note,
            &self.animation,
            &self.sticker,
            &self.location,
            &self.venue,
        ]
        .iter()
        .any(|m| m.is_some())
    }
}

#[derive(Deserialize)]
struct CallbackMessage {
    #[serde(default)]
    message_id: Option<i64>,
    #[serde(default)]
    chat: Option<Chat>,
}

#[derive(Deserialize)]
struct CallbackQuery {
    id: String,
    from: User,
    #[serde(default)]
    message: Option<CallbackMessage>,
    #[serde(default)]
    data: Option<String>,
}

#[derive(Deserialize)]
struct Member {
    status: String,
}

#[derive(Deserialize)]
struct ChatMemberUpdated {
    chat: Chat,
    #[serde(default)]
    date: i64,
    old_chat_member: Member,
    new_chat_member: Member,
}

fn time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

fn chat_name(chat: &Chat) -> Option<String> {
    chat.title.clone().or_else(|| {
        User {
            id: chat.id,
            first_name: chat.first_name.clone(),
            last_name: chat.last_name.clone(),
        }
        .display_name()
    })
}

/// A shared contact's number in E.164. Telegram writes it in international form, often without
/// the `+`, so that reading comes first; then the number as written (national, default region).
fn contact_phone(raw: &str) -> Option<Phone> {
    let trimmed = raw.trim();
    if !trimmed.starts_with('+') {
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        if !digits.is_empty()
            && let Ok(p) = Phone::parse(&format!("+{digits}"))
        {
            return Some(p);
        }
    }
    Phone::parse(trimmed).ok()
}

fn message_event(m: Message, edited: bool) -> Option<Event> {
    let text = m.text.clone().or_else(|| m.caption.clone());
    if text.is_none() && m.contact.is_none() && !m.has_media() {
        // A service message (group migrated, member joined, pinned, ...): nobody wrote anything.
        return None;
    }
    let at = time(if edited {
        m.edit_date.unwrap_or(m.date)
    } else {
        m.date
    });
    let address = Address::Telegram(m.chat.id);
    let mut inbound = InboundMessage::new(ChannelKind::Telegram, address, text.clone(), at)
        .provider_message_id(format!("{}:{}", m.chat.id, m.message_id));
    if let Some(name) = m
        .from
        .as_ref()
        .and_then(User::display_name)
        .or_else(|| chat_name(&m.chat))
    {
        inbound = inbound.sender_name(name);
    }
    if let Some(payload) = text.as_deref().and_then(parse_start_payload) {
        inbound = inbound.start_payload(payload);
    }
    if let Some(c) = &m.contact {
        let is_own = match (c.user_id, m.from.as_ref()) {
            (Some(uid), Some(from)) => uid == from.id,
            _ => false,
        };
        match contact_phone(&c.phone_number) {
            Some(phone) => inbound = inbound.contact(phone, is_own),
            None => {
                // Keep what was shared so that a person can read it.
                inbound.contact_is_own = Some(is_own);
                if inbound.text.is_none() {
                    inbound.text = Some(c.phone_number.clone());
                }
            }
        }
    }
    if let Some(r) = &m.reply_to_message {
        inbound.reply_to = Some(format!("{}:{}", m.chat.id, r.message_id).into());
    }
    Some(Event::Inbound(inbound))
}

/// A button press; dated `at`, since a `CallbackQuery` carries no time of its own.
fn callback_event(q: CallbackQuery, at: DateTime<Utc>) -> Option<Event> {
    // A button press is the person's own action: answer them privately (their user id is their
    // private chat id), even when the button was under a channel or group post.
    let address = Address::Telegram(q.from.id);
    let mut inbound = InboundMessage::new(ChannelKind::Telegram, address, None, at)
        .provider_message_id(q.id.clone());
    if let Some(name) = q.from.display_name() {
        inbound = inbound.sender_name(name);
    }
    if let Some(data) = q.data {
        inbound = inbound.button_payload(data);
    }
    if let Some(CallbackMessage {
        chat: Some(chat),
        message_id: Some(mid),
    }) = &q.message
    {
        inbound.reply_to = Some(format!("{}:{}", chat.id, mid).into());
    }
    Some(Event::Inbound(inbound))
}

fn member_event(u: ChatMemberUpdated) -> Option<Event> {
    let gone = |s: &str| matches!(s, "kicked" | "left");
    let present = |s: &str| matches!(s, "member" | "administrator" | "creator" | "restricted");
    let from = u.chat.id.to_string();
    let address = Address::Telegram(u.chat.id);
    let signal = if gone(&u.new_chat_member.status) && !gone(&u.old_chat_member.status) {
        Signal::Blocked { from, address }
    } else if present(&u.new_chat_member.status) && gone(&u.old_chat_member.status) {
        Signal::Unblocked { from, address }
    } else {
        return None;
    };
    Some(Event::Signal(ChannelSignal::new(
        ChannelKind::Telegram,
        time(u.date),
        signal,
    )))
}

fn typed<T: for<'de> Deserialize<'de>>(v: &Value, what: &str, update_id: i64) -> Option<T> {
    match T::deserialize(v) {
        Ok(t) => Some(t),
        Err(e) => {
            // The error's text may quote the person's message: log only where it failed.
            tracing::warn!(
                update_id,
                what,
                category = ?e.classify(),
                "skipping a Telegram update that does not fit the documented shape"
            );
            None
        }
    }
}

/// The events in one parsed `Update` object; `None` when it is not an update at all (no
/// integer `update_id`). Unknown update types, service messages and payloads that do not fit
/// the documented shape give no events.
pub fn parse_update_value(update: &Value) -> Option<Vec<Event>> {
    parse_update_value_with_clock(update, &SystemClock)
}

/// [`parse_update_value`], with button presses (which carry no time) dated by `clock`.
fn parse_update_value_with_clock(update: &Value, clock: &dyn Clock) -> Option<Vec<Event>> {
    let update_id = update.get("update_id")?.as_i64()?;
    let mut out = Vec::new();
    if let Some(v) = update.get("message") {
        out.extend(typed::<Message>(v, "message", update_id).and_then(|m| message_event(m, false)));
    } else if let Some(v) = update.get("edited_message") {
        out.extend(
            typed::<Message>(v, "edited_message", update_id).and_then(|m| message_event(m, true)),
        );
    } else if let Some(v) = update.get("callback_query") {
        out.extend(
            typed::<CallbackQuery>(v, "callback_query", update_id)
                .and_then(|q| callback_event(q, clock.now())),
        );
    } else if let Some(v) = update.get("my_chat_member") {
        out.extend(
            typed::<ChatMemberUpdated>(v, "my_chat_member", update_id).and_then(member_event),
        );
    }
    Some(out)
}

/// Parses one raw `Update` (a webhook body) into events, tagged with `channel_id` when given.
///
/// ```
/// use messaging_core::Event;
/// let body = br#"{"update_id":1,"message":{"message_id":5,"date":1767225600,
///   "chat":{"id":42,"type":"private","first_name":"Ivan"},
///   "from":{"id":42,"is_bot":false,"first_name":"Ivan"},"text":"/start ord_42"}}"#;
/// let events = messaging_telegram::parse_update(body, None).unwrap();
/// let Event::Inbound(m) = &events[0] else { panic!() };
/// assert_eq!(m.start_payload.as_deref(), Some("ord_42"));
/// assert_eq!(m.from, "42");
/// ```
pub fn parse_update(
    body: &[u8],
    channel_id: Option<&ChannelId>,
) -> Result<Vec<Event>, WebhookError> {
    parse_update_with_clock(body, channel_id, &SystemClock)
}

/// [`parse_update`], with button presses (which carry no time) dated by `clock`.
pub(crate) fn parse_update_with_clock(
    body: &[u8],
    channel_id: Option<&ChannelId>,
    clock: &dyn Clock,
) -> Result<Vec<Event>, WebhookError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::malformed(PROVIDER, format!("not JSON: {e}")))?;
    let events = if let Some(events) = parse_update_value_with_clock(&v, clock) {
        events
    } else if v.get("ok").is_some() && v.get("result").is_some_and(Value::is_array) {
        parse_updates_response_with_clock(&v, clock)?.1
    } else {
        return Err(WebhookError::malformed(
            PROVIDER,
            "not a Telegram update (no integer update_id)",
        ));
    };
    Ok(tag(events, channel_id))
}

fn tag(events: Vec<Event>, channel_id: Option<&ChannelId>) -> Vec<Event> {
    match channel_id {
        Some(id) => events
            .into_iter()
            .map(|e| e.with_channel_id(id.clone()))
            .collect(),
        None => events,
    }
}

/// Reads a `getUpdates` answer (`{"ok":true,"result":[Update, ...]}`): the highest `update_id`
/// seen (so the next offset is that plus one) and the events of every update.
pub fn parse_updates_response(v: &Value) -> Result<(Option<i64>, Vec<Event>), WebhookError> {
    parse_updates_response_with_clock(v, &SystemClock)
}

/// [`parse_updates_response`], with button presses (which carry no time) dated by `clock`.
pub(crate) fn parse_updates_response_with_clock(
    v: &Value,
    clock: &dyn Clock,
) -> Result<(Option<i64>, Vec<Event>), WebhookError> {
    let Some(items) = v.get("result").and_then(Value::as_array) else {
        return Err(WebhookError::malformed(
            PROVIDER,
            "getUpdates answer without a result array",
        ));
    };
    let mut last = None;
    let mut events = Vec::new();
    for item in items {
        let Some(id) = item.get("update_id").and_then(Value::as_i64) else {
            tracing::warn!("skipping a getUpdates item without an update_id");
            continue;
        };
        last = Some(last.map_or(id, |l: i64| l.max(id)));
        events.extend(parse_update_value_with_clock(item, clock).unwrap_or_default());
    }
    Ok((last, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Vec<Event> {
        parse_update(body.as_bytes(), None).expect("parses")
    }

    fn inbound(body: &str) -> InboundMessage {
        match one(body).into_iter().next() {
            Some(Event::Inbound(m)) => m,
            other => panic!("expected inbound, got {other:?}"),
        }
    }

    #[test]
    fn own_contact_is_normalized() {
        let m = inbound(
            r#"{"update_id":2,"message":{"message_id":55,"from":{"id":123456789,"is_bot":false,"first_name":"Ivan"},
            "chat":{"id":123456789,"first_name":"Ivan","type":"private"},"date":1767225660,
            "contact":{"phone_number":"79001234567","first_name":"Ivan","user_id":123456789}}}"#,
        );
        assert_eq!(
            m.contact_phone.as_ref().map(Phone::as_str),
            Some("+79001234567")
        );
        assert_eq!(m.contact_is_own, Some(true));
        assert_eq!(m.text, None);
        assert_eq!(
            m.provider_message_id.as_ref().map(|p| p.as_str()),
            Some("123456789:55")
        );
    }

    #[test]
    fn someone_elses_contact_is_not_own() {
        let m = inbound(
            r#"{"update_id":2,"message":{"message_id":55,"from":{"id":1,"first_name":"Ivan"},
            "chat":{"id":1,"type":"private"},"date":1767225660,
            "contact":{"phone_number":"+44 7911 123456","first_name":"Bob","user_id":2}}}"#,
        );
        assert_eq!(
            m.contact_phone.as_ref().map(Phone::as_str),
            Some("+447911123456")
        );
        assert_eq!(m.contact_is_own, Some(false));
    }

    #[test]
    fn unparsable_contact_keeps_the_number_as_text() {
        let m = inbound(
            r#"{"update_id":2,"message":{"message_id":55,"from":{"id":1,"first_name":"Ivan"},
            "chat":{"id":1,"type":"private"},"date":1767225660,
            "contact":{"phone_number":"12","first_name":"Bob","user_id":1}}}"#,
        );
        assert_eq!(m.contact_phone, None);
        assert_eq!(m.text.as_deref(), Some("12"));
        assert_eq!(m.contact_is_own, Some(true));
    }

    #[test]
    fn unblock_and_other_member_changes() {
        let ev = one(
            r#"{"update_id":3,"my_chat_member":{"chat":{"id":5,"type":"private"},"from":{"id":5},
            "date":1,"old_chat_member":{"status":"kicked"},"new_chat_member":{"status":"member"}}}"#,
        );
        assert!(
            matches!(&ev[..], [Event::Signal(s)] if matches!(s.signal, Signal::Unblocked { .. }))
        );
        let ev = one(
            r#"{"update_id":3,"my_chat_member":{"chat":{"id":-5,"type":"group"},"from":{"id":5},
            "date":1,"old_chat_member":{"status":"member"},"new_chat_member":{"status":"administrator"}}}"#,
        );
        assert!(ev.is_empty());
    }

    #[test]
    fn callback_payload_and_reply_to() {
        let m = inbound(
            r#"{"update_id":4,"callback_query":{"id":"cb1","from":{"id":9,"first_name":"A","last_name":"B"},
            "message":{"message_id":7,"chat":{"id":9,"type":"private"},"date":1},"chat_instance":"x","data":"confirm:42"}}"#,
        );
        assert_eq!(m.button_payload.as_deref(), Some("confirm:42"));
        assert_eq!(m.address, Address::Telegram(9));
        assert_eq!(m.sender_name.as_deref(), Some("A B"));
        assert_eq!(m.reply_to.as_ref().map(|r| r.as_str()), Some("9:7"));
        assert_eq!(
            m.provider_message_id.as_ref().map(|r| r.as_str()),
            Some("cb1")
        );
    }

    #[test]
    fn malformed_and_unknown() {
        assert!(matches!(
            parse_update(b"[1,2]", None),
            Err(WebhookError::Malformed { .. })
        ));
        assert!(matches!(
            parse_update(b"{\"object\":\"whatsapp_business_account\"}", None),
            Err(WebhookError::Malformed { .. })
        ));
        assert!(matches!(
            parse_update(b"\xff", None),
            Err(WebhookError::Malformed { .. })
        ));
        assert!(one(r#"{"update_id":1,"poll":{"id":"1"}}"#).is_empty());
        // A known type with a payload of the wrong shape is skipped, not an error.
        assert!(one(r#"{"update_id":1,"message":{"message_id":"x"}}"#).is_empty());
    }

    #[test]
    fn channel_id_is_tagged() {
        let id = ChannelId::new("tg");
        let ev = parse_update(
            br#"{"update_id":1,"message":{"message_id":1,"date":1,"chat":{"id":1,"type":"private"},"text":"hi"}}"#,
            Some(&id),
        )
        .expect("parses");
        assert_eq!(ev[0].channel_id(), Some(&id));
    }
}
