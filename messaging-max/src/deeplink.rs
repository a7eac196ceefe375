//! Deep links `https://max.ru/<bot>?start=<payload>`: the payload arrives as
//! `bot_started.payload`, i.e. [`InboundMessage::start_payload`](messaging_core::InboundMessage).
//!
//! Max's sources disagree on the payload limit (128 characters on dev.max.ru/help/deeplinks, 512
//! in the schema) and document no alphabet, so links are built for the portable subset: 1 to
//! [`MAX_START_PAYLOAD`] characters of `A-Z a-z 0-9 _ -` (base64url without padding fits, and so
//! do the signed, expiring tokens of `messaging_core::identity`, at most 64 such characters).
//! Sign the payload (or make it an opaque random id): the payload alone proves nothing about who
//! tapped the link.

use url::Url;

/// The longest start payload accepted, in characters (the stricter of Max's two documented limits).
pub const MAX_START_PAYLOAD: usize = 128;

/// Why a deep link could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeepLinkError {
    /// The bot name is empty or has characters other than `A-Z a-z 0-9 _ . -`.
    #[error("invalid Max bot name {0:?}")]
    InvalidBotName(String),
    /// The payload is empty.
    #[error("the start payload is empty")]
    EmptyPayload,
    /// The payload is longer than [`MAX_START_PAYLOAD`].
    #[error("the start payload has {len} characters, at most {max} are allowed")]
    PayloadTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload has a character outside `A-Z a-z 0-9 _ -`.
    #[error(
        "the start payload has {ch:?} at position {position}; only A-Z, a-z, 0-9, '_' and '-' are allowed"
    )]
    InvalidPayloadChar {
        /// The character.
        ch: char,
        /// Its position (in characters).
        position: usize,
    },
}

/// Builds `https://max.ru/<bot_name>?start=<payload>`.
///
/// `bot_name` is the bot's nick (`id7700000000_bot`), with or without a leading `@`.
///
/// ```
/// use messaging_max::{deep_link, DeepLinkError};
/// let url = deep_link("id7700000000_bot", "ord_42").unwrap();
/// assert_eq!(url.as_str(), "https://max.ru/id7700000000_bot?start=ord_42");
/// assert!(matches!(deep_link("bot", "a b"), Err(DeepLinkError::InvalidPayloadChar { ch: ' ', .. })));
/// assert!(matches!(deep_link("bot", &"x".repeat(129)), Err(DeepLinkError::PayloadTooLong { .. })));
/// ```
pub fn deep_link(bot_name: &str, payload: &str) -> Result<Url, DeepLinkError> {
    let name = bot_name.strip_prefix('@').unwrap_or(bot_name);
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(DeepLinkError::InvalidBotName(bot_name.to_owned()));
    }
    validate_start_payload(payload)?;
    Url::parse(&format!("https://max.ru/{name}?start={payload}"))
        .map_err(|_| DeepLinkError::InvalidBotName(bot_name.to_owned()))
}

/// Checks a start payload: 1 to [`MAX_START_PAYLOAD`] characters of `A-Z a-z 0-9 _ -`.
pub fn validate_start_payload(payload: &str) -> Result<(), DeepLinkError> {
    if payload.is_empty() {
        return Err(DeepLinkError::EmptyPayload);
    }
    if let Some((position, ch)) = payload
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(DeepLinkError::InvalidPayloadChar { ch, position });
    }
    let len = payload.chars().count();
    if len > MAX_START_PAYLOAD {
        return Err(DeepLinkError::PayloadTooLong {
            len,
            max: MAX_START_PAYLOAD,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(
            deep_link("@clinic_bot", &"a".repeat(128)).unwrap().as_str(),
            format!("https://max.ru/clinic_bot?start={}", "a".repeat(128))
        );
        assert_eq!(deep_link("b", ""), Err(DeepLinkError::EmptyPayload));
        assert_eq!(
            deep_link("b", "ab=c"),
            Err(DeepLinkError::InvalidPayloadChar {
                ch: '=',
                position: 2
            })
        );
        assert!(matches!(
            deep_link("b", "пр"),
            Err(DeepLinkError::InvalidPayloadChar { ch: 'п', .. })
        ));
        for bad in ["", "@", "a/b", "a?b", "бот"] {
            assert!(
                matches!(deep_link(bad, "x"), Err(DeepLinkError::InvalidBotName(_))),
                "{bad}"
            );
        }
        assert_eq!(
            deep_link("b", &"x".repeat(129)),
            Err(DeepLinkError::PayloadTooLong { len: 129, max: 128 })
        );
    }

    proptest::proptest! {
        #[test]
        fn built_links_round_trip(p in "[A-Za-z0-9_-]{1,128}") {
            let url = deep_link("bot", &p).unwrap();
            let start = url.query_pairs().find(|(k, _)| k == "start").unwrap().1.into_owned();
            proptest::prop_assert_eq!(start, p);
        }

        #[test]
        fn never_panics(name in "\\PC{0,20}", p in "\\PC{0,200}") {
            let _ = deep_link(&name, &p);
        }
    }
}
