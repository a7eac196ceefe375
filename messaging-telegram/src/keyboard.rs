//! Core buttons to Telegram `reply_markup`.

use messaging_core::{Button, ButtonAction, ChannelError};
use serde_json::{Value, json};

/// The longest `callback_data`, in bytes.
const MAX_CALLBACK_DATA: usize = 64;

/// The `reply_markup` for `buttons`, one button per row; `None` when there are none.
///
/// Reply and link buttons become an inline keyboard. Request-contact buttons exist only on a
/// reply keyboard (Telegram has no inline equivalent), so a message with one carries a one-time
/// reply keyboard, and mixing it with inline buttons is refused: a message has one markup.
pub(crate) fn reply_markup(buttons: &[Button]) -> Result<Option<Value>, ChannelError> {
    if buttons.is_empty() {
        return Ok(None);
    }
    for b in buttons {
        if b.title.trim().is_empty() {
            return Err(ChannelError::invalid_content(
                "a Telegram button needs a non-empty title",
            ));
        }
    }
    let contact = buttons
        .iter()
        .filter(|b| matches!(b.action, ButtonAction::RequestContact))
        .count();
    if contact > 0 {
        if contact != buttons.len() {
            return Err(ChannelError::invalid_content(
                "a Telegram message carries either inline buttons or a reply keyboard: \
                 a request-contact button cannot be mixed with reply or link buttons",
            ));
        }
        let rows: Vec<Value> = buttons
            .iter()
            .map(|b| json!([{ "text": b.title, "request_contact": true }]))
            .collect();
        return Ok(Some(json!({
            "keyboard": rows,
            "resize_keyboard": true,
            "one_time_keyboard": true,
        })));
    }
    let mut rows = Vec::with_capacity(buttons.len());
    for b in buttons {
        let button = match &b.action {
            ButtonAction::Reply(payload) => {
                if payload.is_empty() || payload.len() > MAX_CALLBACK_DATA {
                    return Err(ChannelError::invalid_content(format!(
                        "Telegram callback data must be 1..=64 bytes, button {:?} has {}",
                        b.title,
                        payload.len()
                    )));
                }
                json!({ "text": b.title, "callback_data": payload })
            }
            ButtonAction::Url(url) => json!({ "text": b.title, "url": url.as_str() }),
            ButtonAction::RequestContact => {
                return Err(ChannelError::invalid_content(
                    "request-contact buttons need a reply keyboard",
                ));
            }
            _ => {
                return Err(ChannelError::invalid_content(format!(
                    "button {:?} has an action Telegram does not support",
                    b.title
                )));
            }
        };
        rows.push(json!([button]));
    }
    Ok(Some(json!({ "inline_keyboard": rows })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::ErrorKind;

    #[test]
    fn inline_keyboard_rows() {
        let url = url::Url::parse("https://example.com/t/42").expect("url");
        let m = reply_markup(&[
            Button::reply("Confirm", "confirm:42"),
            Button::url("Track", url),
        ])
        .expect("ok")
        .expect("some");
        assert_eq!(
            m,
            json!({"inline_keyboard": [
                [{"text": "Confirm", "callback_data": "confirm:42"}],
                [{"text": "Track", "url": "https://example.com/t/42"}]
            ]})
        );
    }

    #[test]
    fn request_contact_is_a_one_time_reply_keyboard() {
        let m = reply_markup(&[Button::request_contact("Share phone number")])
            .expect("ok")
            .expect("some");
        assert_eq!(m["keyboard"][0][0]["request_contact"], true);
        assert_eq!(m["keyboard"][0][0]["text"], "Share phone number");
        assert_eq!(m["one_time_keyboard"], true);
        assert!(m.get("inline_keyboard").is_none());
    }

    #[test]
    fn refusals() {
        let mixed = reply_markup(&[Button::request_contact("Share"), Button::reply("Yes", "y")]);
        assert_eq!(
            mixed.map(|_| ()).unwrap_err().kind(),
            ErrorKind::InvalidContent
        );
        let long = reply_markup(&[Button::reply("Yes", "x".repeat(65))]);
        assert_eq!(
            long.map(|_| ()).unwrap_err().kind(),
            ErrorKind::InvalidContent
        );
        let empty = reply_markup(&[Button::reply("Yes", "")]);
        assert!(empty.is_err());
        let untitled = reply_markup(&[Button::reply(" ", "y")]);
        assert!(untitled.is_err());
        assert_eq!(reply_markup(&[]).expect("ok"), None);
        assert!(reply_markup(&[Button::reply("Yes", "x".repeat(64))]).is_ok());
    }
}
