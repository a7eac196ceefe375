//! Telegram `Update` objects to core [`Event`]s.
//!
//! | update | event |
//! |---|---|
//! | `message` with text, caption, contact or media | [`InboundMessage`]: text, `/start` payload, shared contact |
//! | `message` with `web_app_data` | [`InboundMessage`]: `button_payload` = the Web App's `data`, `text` = the button's label |
//! | `edited_message` | [`InboundMessage`] with [`InboundAction::Edit`] `{of: "<chat>:<message_id>"}` and the new text |
//! | `message_reaction` | [`InboundMessage`] with [`InboundAction::Reaction`] `{to: "<chat>:<message_id>", emoji}` (the first new reaction; none: taken back) |
//! | `business_message` / `edited_business_message` | as `message` / `edited_message`, with `extra.business_connection_id` |
//! | `deleted_business_messages` | one [`InboundMessage`] with [`InboundAction::Deletion`] per deleted message |
//! | `callback_query` | [`InboundMessage`] with `button_payload` (the callback `data`) |
//! | `my_chat_member` → `kicked` / `left` | [`Signal::Blocked`] |
//! | `my_chat_member` → `member` / `administrator` after `kicked` / `left` | [`Signal::Unblocked`] |
//! | `my_chat_member`, other changes (the bot made admin of a group, ...) | nothing (debug line) |
//! | `channel_post`, `edited_channel_post` | nothing (debug line): a channel's admins posting, not a person answering |
//! | `chat_member`, `message_reaction_count`, `chat_join_request`, `poll`, ... any other type | nothing (debug line naming the type) |
//! | service messages (group migrated, members joined, ...) | nothing (skipped) |
//!
//! Telegram tells a bot of no deletion in ordinary chats; only business connections report one.

use chrono::{DateTime, Utc};
use messaging_core::{
    Address, ChannelId, ChannelKind, ChannelSignal, Clock, Event, InboundAction, InboundMessage,
    Phone, Signal, SystemClock,
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
    #[serde(default)]
    web_app_data: Option<WebAppData>,
    #[serde(default)]
    business_connection_id: Option<String>,
}

#[derive(Deserialize)]
struct WebAppData {
    data: String,
    #[serde(default)]
    button_text: Option<String>,
}

#[derive(Deserialize)]
struct ReactionType {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    emoji: Option<String>,
    #[serde(default)]
    custom_emoji_id: Option<String>,
}

#[derive(Deserialize)]
struct MessageReactionUpdated {
    chat: Chat,
    message_id: i64,
    #[serde(default)]
    user: Option<User>,
    #[serde(default)]
    date: i64,
    #[serde(default)]
    new_reaction: Vec<ReactionType>,
}

#[derive(Deserialize)]
struct BusinessMessagesDeleted {
    business_connection_id: String,
    chat: Chat,
    message_ids: Vec<i64>,
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
    if text.is_none() && m.contact.is_none() && !m.has_media() && m.web_app_data.is_none() {
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
    if let Some(w) = &m.web_app_data {
        // A Web App's answer, sent with a keyboard button: an explicit answer.
        inbound = inbound.button_payload(w.data.clone());
        if inbound.text.is_none() {
            inbound.text = w.button_text.clone();
        }
    }
    if let Some(b) = &m.business_connection_id {
        inbound = inbound.extra(serde_json::json!({ "business_connection_id": b }));
    }
    if edited {
        // Telegram keeps the message id on an edit: the edit is about that very message.
        inbound = inbound.action(InboundAction::Edit {
            of: format!("{}:{}", m.chat.id, m.message_id).into(),
        });
    }
    Some(Event::Inbound(inbound))
}

/// A reaction of a person (not an anonymous group admin: no `user`, skipped).
fn reaction_event(r: MessageReactionUpdated) -> Option<Event> {
    let Some(user) = r.user else {
        tracing::debug!(
            kind = "message_reaction",
            "skipping an anonymous Telegram reaction"
        );
        return None;
    };
    let emoji = r.new_reaction.first().map(|t| match t.kind.as_str() {
        "emoji" => t.emoji.clone().unwrap_or_default(),
        "custom_emoji" => format!(
            "custom_emoji:{}",
            t.custom_emoji_id.as_deref().unwrap_or_default()
        ),
        other => other.to_owned(),
    });
    let mut m = InboundMessage::new(
        ChannelKind::Telegram,
        Address::Telegram(r.chat.id),
        None,
        time(r.date),
    )
    .action(InboundAction::Reaction {
        to: format!("{}:{}", r.chat.id, r.message_id).into(),
        emoji: emoji.filter(|e| !e.is_empty()),
    });
    m.from = user.id.to_string();
    if let Some(name) = user.display_name() {
        m = m.sender_name(name);
    }
    Some(Event::Inbound(m))
}

/// Messages deleted in a business chat: one deletion each, dated `at` (the update has no time).
fn business_deleted_events(d: BusinessMessagesDeleted, at: DateTime<Utc>) -> Vec<Event> {
    d.message_ids
        .iter()
        .map(|id| {
            Event::Inbound(
                InboundMessage::new(
                    ChannelKind::Telegram,
                    Address::Telegram(d.chat.id),
                    None,
                    at,
                )
                .action(InboundAction::Deletion {
                    of: format!("{}:{id}", d.chat.id).into(),
                })
                .extra(serde_json::json!({
                    "business_connection_id": d.business_connection_id
                })),
            )
        })
        .collect()
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
        tracing::debug!(
            kind = "my_chat_member",
            old = %u.old_chat_member.status,
            new = %u.new_chat_member.status,
            "ignoring a Telegram membership change of the bot"
        );
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
    } else if let Some(v) = update.get("business_message") {
        out.extend(
            typed::<Message>(v, "business_message", update_id)
                .and_then(|m| message_event(m, false)),
        );
    } else if let Some(v) = update.get("edited_business_message") {
        out.extend(
            typed::<Message>(v, "edited_business_message", update_id)
                .and_then(|m| message_event(m, true)),
        );
    } else if let Some(v) = update.get("deleted_business_messages") {
        out.extend(
            typed::<BusinessMessagesDeleted>(v, "deleted_business_messages", update_id)
                .map(|d| business_deleted_events(d, clock.now()))
                .unwrap_or_default(),
        );
    } else if let Some(v) = update.get("message_reaction") {
        out.extend(
            typed::<MessageReactionUpdated>(v, "message_reaction", update_id)
                .and_then(reaction_event),
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
    } else {
        let kind = update
            .as_object()
            .and_then(|o| o.keys().find(|k| k.as_str() != "update_id"))
            .map_or("none", String::as_str);
        // `channel_post` / `edited_channel_post`: a channel's admins posting, not a person
        // answering; `chat_member`: others joining or leaving a group; the rest carry nothing
        // for the library yet.
        tracing::debug!(update_id, kind, "ignoring a Telegram update of this type");
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

    /// Update types beyond messages, shaped as the Bot API documents them.
    #[test]
    fn edits_reactions_and_other_update_types() {
        let m = inbound(
            r#"{"update_id":10,"edited_message":{"message_id":7,"date":1767225600,"edit_date":1767225700,
            "chat":{"id":42,"type":"private"},"from":{"id":42,"first_name":"Ivan"},"text":"Приду в 11"}}"#,
        );
        assert_eq!(m.action, InboundAction::Edit { of: "42:7".into() });
        assert_eq!(m.text.as_deref(), Some("Приду в 11"));
        assert_eq!(m.at.timestamp(), 1767225700);
        assert!(!m.counts_as_reply());

        let m = inbound(
            r#"{"update_id":11,"message_reaction":{"chat":{"id":42,"type":"private"},"message_id":9,
            "user":{"id":42,"is_bot":false,"first_name":"Ivan"},"date":1767225800,
            "old_reaction":[],"new_reaction":[{"type":"emoji","emoji":"👍"}]}}"#,
        );
        assert_eq!(
            m.action,
            InboundAction::Reaction {
                to: "42:9".into(),
                emoji: Some("👍".into())
            }
        );
        assert_eq!(m.read_evidence().map(|r| r.as_str()), Some("42:9"));
        // Taken back; and a custom emoji.
        let m = inbound(
            r#"{"update_id":12,"message_reaction":{"chat":{"id":42,"type":"private"},"message_id":9,
            "user":{"id":42,"first_name":"Ivan"},"date":1767225801,
            "old_reaction":[{"type":"emoji","emoji":"👍"}],"new_reaction":[]}}"#,
        );
        assert_eq!(
            m.action,
            InboundAction::Reaction {
                to: "42:9".into(),
                emoji: None
            }
        );
        let m = inbound(
            r#"{"update_id":13,"message_reaction":{"chat":{"id":42,"type":"private"},"message_id":9,
            "user":{"id":42,"first_name":"Ivan"},"date":1767225802,"old_reaction":[],
            "new_reaction":[{"type":"custom_emoji","custom_emoji_id":"5368324170671202286"}]}}"#,
        );
        assert!(
            matches!(m.action, InboundAction::Reaction { emoji: Some(e), .. } if e == "custom_emoji:5368324170671202286")
        );
        // An anonymous admin's reaction (actor_chat, no user) is skipped.
        assert!(
            one(r#"{"update_id":14,"message_reaction":{"chat":{"id":-100,"type":"supergroup"},"message_id":9,
            "actor_chat":{"id":-100,"type":"supergroup"},"date":1,"old_reaction":[],"new_reaction":[]}}"#)
            .is_empty()
        );

        // A Web App's answer is an explicit answer, not a service message.
        let m = inbound(
            r#"{"update_id":15,"message":{"message_id":20,"date":1767225900,"chat":{"id":42,"type":"private"},
            "from":{"id":42,"first_name":"Ivan"},"web_app_data":{"data":"{\"slot\":\"10:00\"}","button_text":"Записаться"}}}"#,
        );
        assert_eq!(m.button_payload.as_deref(), Some(r#"{"slot":"10:00"}"#));
        assert_eq!(m.text.as_deref(), Some("Записаться"));
        assert!(m.counts_as_reply());

        // Business connections: messages, edits, deletions.
        let m = inbound(
            r#"{"update_id":16,"business_message":{"message_id":30,"date":1767226000,"business_connection_id":"bc1",
            "chat":{"id":77,"type":"private","first_name":"Olga"},"from":{"id":77,"first_name":"Olga"},"text":"Здравствуйте"}}"#,
        );
        assert_eq!(m.text.as_deref(), Some("Здравствуйте"));
        assert_eq!(m.extra.as_ref().unwrap()["business_connection_id"], "bc1");
        assert!(m.counts_as_reply());
        let m = inbound(
            r#"{"update_id":17,"edited_business_message":{"message_id":30,"date":1767226000,"edit_date":1767226100,
            "business_connection_id":"bc1","chat":{"id":77,"type":"private"},"from":{"id":77,"first_name":"Olga"},"text":"Добрый день"}}"#,
        );
        assert_eq!(m.action, InboundAction::Edit { of: "77:30".into() });
        let ev = one(
            r#"{"update_id":18,"deleted_business_messages":{"business_connection_id":"bc1",
            "chat":{"id":77,"type":"private"},"message_ids":[30,31]}}"#,
        );
        let dels: Vec<_> = ev
            .iter()
            .map(|e| match e {
                Event::Inbound(m) => m.action.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            dels,
            vec![
                InboundAction::Deletion { of: "77:30".into() },
                InboundAction::Deletion { of: "77:31".into() }
            ]
        );

        // Deliberately ignored, each with a debug line naming the type.
        for body in [
            r#"{"update_id":20,"channel_post":{"message_id":1,"date":1,"chat":{"id":-1001,"type":"channel","title":"News"},"text":"post"}}"#,
            r#"{"update_id":21,"edited_channel_post":{"message_id":1,"date":1,"edit_date":2,"chat":{"id":-1001,"type":"channel"},"text":"post"}}"#,
            r#"{"update_id":22,"chat_member":{"chat":{"id":-5,"type":"group"},"from":{"id":5},"date":1,
                "old_chat_member":{"status":"left","user":{"id":6}},"new_chat_member":{"status":"member","user":{"id":6}}}}"#,
            r#"{"update_id":23,"my_chat_member":{"chat":{"id":-5,"type":"group"},"from":{"id":5},"date":1,
                "old_chat_member":{"status":"member"},"new_chat_member":{"status":"administrator"}}}"#,
            r#"{"update_id":24,"message_reaction_count":{"chat":{"id":-100,"type":"channel"},"message_id":1,"date":1,"reactions":[]}}"#,
        ] {
            assert!(one(body).is_empty(), "{body}");
        }
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
