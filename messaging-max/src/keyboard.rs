//! Core [`Button`]s as a Max `inline_keyboard` attachment, and the "share your phone" prompt.
//!
//! | [`ButtonAction`] | Max button |
//! |---|---|
//! | [`ButtonAction::Reply`] | `{"type": "callback", "text", "payload"}`: pressing it sends a `message_callback` |
//! | [`ButtonAction::Url`] | `{"type": "link", "text", "url"}` |
//! | [`ButtonAction::RequestContact`] | `{"type": "request_contact", "text"}`: pressing it sends the person's contact |
//!
//! Each button gets its own row (Max allows at most 30 rows; rows with link or request-contact
//! buttons at most 3 buttons). Limits checked before sending: button text 1..=128 characters,
//! callback payload 1..=1024 characters, link URL at most 2048 characters, at most 30 buttons.

use messaging_core::{Button, ButtonAction, ChannelError, Content};
use serde_json::{Value, json};

/// Longest button text, in characters.
pub const MAX_BUTTON_TEXT: usize = 128;
/// Longest callback payload, in characters.
pub const MAX_CALLBACK_PAYLOAD: usize = 1024;
/// Longest link URL, in characters.
pub const MAX_LINK_URL: usize = 2048;
/// Most buttons per message with one button per row (Max allows 30 rows).
pub const MAX_BUTTONS: usize = 30;

/// Builds the `inline_keyboard` attachment for `buttons`, or `None` when there are none.
///
/// ```
/// use messaging_core::Button;
/// let kb = messaging_max::inline_keyboard(&[
///     Button::reply("Приду", "yes"),
///     Button::request_contact("Поделиться номером"),
/// ]).unwrap().unwrap();
/// assert_eq!(kb["type"], "inline_keyboard");
/// assert_eq!(kb["payload"]["buttons"][0][0]["type"], "callback");
/// assert_eq!(kb["payload"]["buttons"][1][0]["type"], "request_contact");
/// ```
pub fn inline_keyboard(buttons: &[Button]) -> Result<Option<Value>, ChannelError> {
    if buttons.is_empty() {
        return Ok(None);
    }
    if buttons.len() > MAX_BUTTONS {
        return Err(ChannelError::invalid_content(format!(
            "Max: {} buttons, at most {MAX_BUTTONS} are supported",
            buttons.len()
        )));
    }
    let mut rows = Vec::with_capacity(buttons.len());
    for b in buttons {
        let len = b.title.chars().count();
        if b.title.trim().is_empty() || len > MAX_BUTTON_TEXT {
            return Err(ChannelError::invalid_content(format!(
                "Max: button text must be 1 to {MAX_BUTTON_TEXT} characters (got {len})"
            )));
        }
        let button = match &b.action {
            ButtonAction::Reply(payload) => {
                let n = payload.chars().count();
                if n == 0 || n > MAX_CALLBACK_PAYLOAD {
                    return Err(ChannelError::invalid_content(format!(
                        "Max: callback payload must be 1 to {MAX_CALLBACK_PAYLOAD} characters (got {n})"
                    )));
                }
                json!({"type": "callback", "text": b.title, "payload": payload})
            }
            ButtonAction::Url(url) => {
                if url.as_str().chars().count() > MAX_LINK_URL {
                    return Err(ChannelError::invalid_content(format!(
                        "Max: link URL longer than {MAX_LINK_URL} characters"
                    )));
                }
                json!({"type": "link", "text": b.title, "url": url.as_str()})
            }
            ButtonAction::RequestContact => json!({"type": "request_contact", "text": b.title}),
            _ => {
                return Err(ChannelError::invalid_content(
                    "Max: unsupported button action",
                ));
            }
        };
        rows.push(vec![button]);
    }
    Ok(Some(
        json!({"type": "inline_keyboard", "payload": {"buttons": rows}}),
    ))
}

/// The "share your phone number" prompt for identity linking: `text` with one
/// `request_contact` button titled `button_title`. Send it with
/// [`Channel::send`](messaging_core::Channel::send); the person's answer arrives as an inbound
/// message with `contact_phone` and `contact_is_own` (see [`crate::contact`]).
///
/// ```
/// use messaging_core::ButtonAction;
/// let c = messaging_max::share_phone_prompt(
///     "Чтобы получать напоминания здесь, поделитесь номером телефона.",
///     "Поделиться номером",
/// );
/// assert_eq!(c.buttons[0].action, ButtonAction::RequestContact);
/// ```
pub fn share_phone_prompt(text: impl Into<String>, button_title: impl Into<String>) -> Content {
    Content::text(text).with_button(Button::request_contact(button_title))
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::ErrorKind;

    #[test]
    fn shapes() {
        let url = url::Url::parse("https://clinic.example/booking/1").unwrap();
        let kb = inline_keyboard(&[
            Button::reply("Да", "yes"),
            Button::url("Open", url),
            Button::request_contact("Share"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            kb,
            json!({"type": "inline_keyboard", "payload": {"buttons": [
                [{"type": "callback", "text": "Да", "payload": "yes"}],
                [{"type": "link", "text": "Open", "url": "https://clinic.example/booking/1"}],
                [{"type": "request_contact", "text": "Share"}]]}})
        );
        assert_eq!(inline_keyboard(&[]).unwrap(), None);
    }

    #[test]
    fn limits_are_typed_errors() {
        let bad = [
            vec![Button::reply("", "p")],
            vec![Button::reply("x".repeat(129), "p")],
            vec![Button::reply("ok", "")],
            vec![Button::reply("ok", "p".repeat(1025))],
            vec![Button::url(
                "ok",
                url::Url::parse(&format!("https://e.x/{}", "a".repeat(2048))).unwrap(),
            )],
            (0..31).map(|i| Button::reply("b", i.to_string())).collect(),
        ];
        for b in bad {
            assert_eq!(
                inline_keyboard(&b).unwrap_err().kind(),
                ErrorKind::InvalidContent
            );
        }
        // Exactly at the limits is fine.
        assert!(inline_keyboard(&[Button::reply("я".repeat(128), "p".repeat(1024))]).is_ok());
    }
}
