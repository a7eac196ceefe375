//! What identity linking needs from Telegram: deep links, the "share your phone" prompt and the
//! own-contact check.

use messaging_core::{Button, Content, InboundMessage, Phone};

/// Why a deep link could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeepLinkError {
    /// The start payload is empty.
    #[error("the start payload is empty")]
    EmptyPayload,
    /// The start payload is longer than 64 characters.
    #[error("the start payload has {len} characters; Telegram allows at most 64")]
    PayloadTooLong {
        /// Its length.
        len: usize,
    },
    /// The start payload has a character outside `A-Z a-z 0-9 _ -`.
    #[error(
        "the start payload has {ch:?} at position {position}; only A-Z a-z 0-9 _ - are allowed"
    )]
    InvalidPayloadChar {
        /// The character.
        ch: char,
        /// Its position (in characters).
        position: usize,
    },
    /// The bot username is not 5-32 characters of `A-Z a-z 0-9 _`.
    #[error("invalid bot username {0:?}")]
    InvalidBotUsername(String),
}

/// The longest deep-link start payload.
pub const MAX_START_PAYLOAD: usize = 64;

/// Checks a start payload: 1..=64 characters of `A-Z a-z 0-9 _ -` (use base64url for
/// arbitrary bytes).
///
/// ```
/// use messaging_telegram::{validate_start_payload, DeepLinkError};
/// assert!(validate_start_payload("ord_42-x").is_ok());
/// assert_eq!(validate_start_payload(""), Err(DeepLinkError::EmptyPayload));
/// assert!(matches!(validate_start_payload("a b"), Err(DeepLinkError::InvalidPayloadChar { ch: ' ', position: 1 })));
/// ```
pub fn validate_start_payload(payload: &str) -> Result<(), DeepLinkError> {
    if payload.is_empty() {
        return Err(DeepLinkError::EmptyPayload);
    }
    let len = payload.chars().count();
    if len > MAX_START_PAYLOAD {
        return Err(DeepLinkError::PayloadTooLong { len });
    }
    if let Some((position, ch)) = payload
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(DeepLinkError::InvalidPayloadChar { ch, position });
    }
    Ok(())
}

/// The deep link `https://t.me/<bot>?start=<payload>` that opens the bot and, when the person
/// taps Start, sends `/start <payload>` (read back as `start_payload` of the inbound message).
///
/// `bot_username` may carry a leading `@`.
///
/// ```
/// let link = messaging_telegram::deep_link("@clinic_bot", "tok_123").unwrap();
/// assert_eq!(link.as_str(), "https://t.me/clinic_bot?start=tok_123");
/// assert!(messaging_telegram::deep_link("clinic_bot", &"x".repeat(65)).is_err());
/// ```
pub fn deep_link(bot_username: &str, payload: &str) -> Result<url::Url, DeepLinkError> {
    let bot = bot_username.strip_prefix('@').unwrap_or(bot_username);
    let bot_ok = (5..=32).contains(&bot.len())
        && bot.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !bot_ok {
        return Err(DeepLinkError::InvalidBotUsername(bot_username.to_owned()));
    }
    validate_start_payload(payload)?;
    url::Url::parse(&format!("https://t.me/{bot}?start={payload}"))
        .map_err(|_| DeepLinkError::InvalidBotUsername(bot_username.to_owned()))
}

/// The payload of a `/start <payload>` (or `/start@bot <payload>`) text, if there is one.
///
/// ```
/// use messaging_telegram::parse_start_payload;
/// assert_eq!(parse_start_payload("/start tok_1"), Some("tok_1"));
/// assert_eq!(parse_start_payload("/start@clinic_bot tok_1"), Some("tok_1"));
/// assert_eq!(parse_start_payload("/start"), None);
/// assert_eq!(parse_start_payload("/started x"), None);
/// ```
pub fn parse_start_payload(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("/start")?;
    let rest = match rest.strip_prefix('@') {
        Some(after_bot) => after_bot.split_once(char::is_whitespace)?.1,
        None => {
            if !rest.starts_with(char::is_whitespace) {
                return None;
            }
            rest
        }
    };
    let payload = rest.trim();
    (!payload.is_empty()).then_some(payload)
}

/// A message asking the person to share their phone number, with a one-time reply-keyboard
/// button that sends their own contact (works in private chats only).
///
/// ```
/// use messaging_core::ButtonAction;
/// let c = messaging_telegram::share_phone_prompt(
///     "Чтобы получать напоминания, поделитесь номером телефона",
///     "Поделиться номером",
/// );
/// assert_eq!(c.buttons[0].action, ButtonAction::RequestContact);
/// ```
pub fn share_phone_prompt(text: impl Into<String>, button_title: impl Into<String>) -> Content {
    Content::text(text).with_button(Button::request_contact(button_title))
}

/// The phone of a shared contact, only when it is the sender's own (the contact's `user_id`
/// equals the sender's id). A forwarded card of someone else gives `None`.
///
/// ```
/// use chrono::Utc;
/// use messaging_core::{Address, ChannelKind, InboundMessage, Phone};
/// let phone = Phone::parse("+79001234567").unwrap();
/// let own = InboundMessage::new(ChannelKind::Telegram, Address::Telegram(1), None, Utc::now())
///     .contact(phone.clone(), true);
/// assert_eq!(messaging_telegram::own_contact_phone(&own), Some(&phone));
/// let other = own.clone().contact(phone, false);
/// assert_eq!(messaging_telegram::own_contact_phone(&other), None);
/// ```
pub fn own_contact_phone(message: &InboundMessage) -> Option<&Phone> {
    match message.contact_is_own {
        Some(true) => message.contact_phone.as_ref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn payload_edges() {
        assert!(validate_start_payload(&"a".repeat(64)).is_ok());
        assert_eq!(
            validate_start_payload(&"a".repeat(65)),
            Err(DeepLinkError::PayloadTooLong { len: 65 })
        );
        assert!(matches!(
            validate_start_payload("тест"),
            Err(DeepLinkError::InvalidPayloadChar {
                ch: 'т',
                position: 0
            })
        ));
        assert!(matches!(
            validate_start_payload("a=b"),
            Err(DeepLinkError::InvalidPayloadChar { ch: '=', .. })
        ));
        assert!(matches!(
            deep_link("bot", "x"),
            Err(DeepLinkError::InvalidBotUsername(_))
        ));
        assert!(matches!(
            deep_link("evil.com/x", "x"),
            Err(DeepLinkError::InvalidBotUsername(_))
        ));
    }

    proptest! {
        #[test]
        fn valid_payloads_round_trip(p in "[A-Za-z0-9_-]{1,64}") {
            let link = deep_link("clinic_bot", &p).expect("valid");
            let start = link.query_pairs().find(|(k, _)| k == "start").map(|(_, v)| v.into_owned());
            prop_assert_eq!(start.as_deref(), Some(p.as_str()));
            let text = format!("/start {p}");
            prop_assert_eq!(parse_start_payload(&text), Some(p.as_str()));
        }

        #[test]
        fn anything_else_is_a_typed_error(p in "\\PC{0,80}") {
            let ok = !p.is_empty() && p.chars().count() <= 64
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            prop_assert_eq!(validate_start_payload(&p).is_ok(), ok);
        }
    }
}
