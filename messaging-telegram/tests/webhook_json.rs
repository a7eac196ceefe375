//! What `messaging parse-webhook --provider telegram` prints: the handler built from an optional
//! secret, and the events' shared JSON shape.

use http::HeaderMap;
use messaging_core::webhook::{WebhookError, WebhookHandler, WebhookRequest};
use messaging_telegram::{SECRET_HEADER, TelegramWebhook};
use serde_json::{Value, json};

fn parse(
    hook: &TelegramWebhook,
    headers: &HeaderMap,
    body: &str,
) -> Result<Vec<Value>, WebhookError> {
    let events = hook.verify_and_parse(&WebhookRequest::post(headers, body.as_bytes()))?;
    Ok(events
        .iter()
        .map(|e| serde_json::to_value(e).expect("serializes"))
        .collect())
}

const START: &str = r#"{"update_id": 900000000,
 "message": {"message_id": 54,
   "from": {"id": 123456789, "is_bot": false, "first_name": "Ivan", "language_code": "ru"},
   "chat": {"id": 123456789, "first_name": "Ivan", "type": "private"},
   "date": 1767225600,
   "text": "/start ord_42",
   "entities": [{"offset": 0, "length": 6, "type": "bot_command"}]}}"#;

const CONTACT: &str = r#"{"update_id": 900000001,
 "message": {"message_id": 55,
   "from": {"id": 123456789, "is_bot": false, "first_name": "Ivan"},
   "chat": {"id": 123456789, "first_name": "Ivan", "type": "private"},
   "date": 1767225660,
   "contact": {"phone_number": "79001234567", "first_name": "Ivan", "user_id": 123456789}}}"#;

const BLOCKED: &str = r#"{"update_id": 900000002,
 "my_chat_member": {
   "chat": {"id": 123456789, "first_name": "Ivan", "type": "private"},
   "from": {"id": 123456789, "is_bot": false, "first_name": "Ivan"},
   "date": 1767225700,
   "old_chat_member": {"user": {"id": 7000000001, "is_bot": true, "first_name": "ShopBot"}, "status": "member"},
   "new_chat_member": {"user": {"id": 7000000001, "is_bot": true, "first_name": "ShopBot"}, "status": "kicked", "until_date": 0}}}"#;

#[test]
fn start_payload_contact_and_block_shapes() {
    let hook = TelegramWebhook::new(None);
    let none = HeaderMap::new();

    let v = parse(&hook, &none, START).expect("start");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["kind"], "inbound");
    assert_eq!(v[0]["channel"], "telegram");
    assert_eq!(v[0]["from"], "123456789");
    assert_eq!(
        v[0]["address"],
        json!({"type": "telegram", "value": 123456789})
    );
    assert_eq!(v[0]["text"], "/start ord_42");
    assert_eq!(v[0]["start_payload"], "ord_42");
    assert_eq!(v[0]["at"], "2026-01-01T00:00:00Z");
    assert_eq!(v[0]["sender_name"], "Ivan");

    let v = parse(&hook, &none, CONTACT).expect("contact");
    assert_eq!(v[0]["contact_phone"], "+79001234567");
    assert_eq!(v[0]["contact_is_own"], true);
    assert!(v[0]["text"].is_null());

    let v = parse(&hook, &none, BLOCKED).expect("blocked");
    assert_eq!(v[0]["kind"], "signal");
    assert_eq!(v[0]["signal"], "blocked");
    assert_eq!(v[0]["channel"], "telegram");
    assert_eq!(v[0]["from"], "123456789");
    assert_eq!(v[0]["at"], "2026-01-01T00:01:40Z");
}

#[test]
fn built_from_an_optional_secret() {
    let none = HeaderMap::new();
    // No secret: verification passes without the header.
    assert!(parse(&TelegramWebhook::new(None), &none, START).is_ok());

    let hook = TelegramWebhook::new(Some("s3cret_token-1".into())).channel_id("tg");
    assert_eq!(
        parse(&hook, &none, START).expect_err("no header"),
        WebhookError::MissingSignature(SECRET_HEADER)
    );
    let mut wrong = HeaderMap::new();
    wrong.insert(SECRET_HEADER, "s3cret_token-2".parse().expect("value"));
    assert_eq!(
        parse(&hook, &wrong, START).expect_err("wrong"),
        WebhookError::BadSignature
    );
    let mut right = HeaderMap::new();
    // Header names are case-insensitive, as `--header 'x-telegram-bot-api-secret-token: ...'` gives.
    right.insert(
        "x-telegram-bot-api-secret-token",
        "s3cret_token-1".parse().expect("value"),
    );
    let v = parse(&hook, &right, START).expect("verified");
    assert_eq!(v[0]["channel_id"], "tg");
}

#[test]
fn non_telegram_bodies_are_malformed() {
    let hook = TelegramWebhook::new(None);
    let none = HeaderMap::new();
    for body in [
        r#"{"object":"whatsapp_business_account","entry":[]}"#,
        r#"{"update_type":"message_created","timestamp":1}"#,
        "To=%2B15551234567&Body=hi",
        "",
        "[]",
        r#"{"update_id":"1"}"#,
    ] {
        let e = parse(&hook, &none, body).expect_err(body);
        assert!(
            matches!(
                e,
                WebhookError::Malformed {
                    provider: "telegram",
                    ..
                }
            ),
            "{body}: {e:?}"
        );
    }
    // A getUpdates answer is accepted too (handy with `messaging parse-webhook`).
    let wrapped = format!(r#"{{"ok":true,"result":[{START},{CONTACT}]}}"#);
    assert_eq!(parse(&hook, &none, &wrapped).expect("updates").len(), 2);
}
