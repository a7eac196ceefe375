//! Property tests: arbitrary bytes and mutated real payloads never make a parser panic.

use http::HeaderMap;
use messaging_core::testkit::conformance_files;
use messaging_core::webhook::{WebhookHandler, WebhookRequest};
use messaging_max::{
    MaxWebhookHandler, UpdateParser, check_contact, classify_error, deep_link, phone_from_vcard,
};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};

/// Real payload shapes: the conformance corpus when present, plus built-in samples.
fn seeds() -> Vec<Value> {
    let mut out: Vec<Value> = conformance_files(env!("CARGO_MANIFEST_DIR"), "max", "json")
        .into_iter()
        .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
        .collect();
    let vcf = "BEGIN:VCARD\r\nTEL;TYPE=cell:79990000000\r\nEND:VCARD\r\n";
    out.extend([
        json!({"update_type": "message_created", "timestamp": 1770680000000i64,
            "message": {"sender": {"user_id": 10001, "is_bot": false},
                "recipient": {"chat_id": 182182182, "chat_type": "dialog", "user_id": 10002},
                "timestamp": 1770680000000i64,
                "body": {"mid": "mid.1", "seq": 116043270574650336u64, "text": null,
                    "attachments": [{"type": "contact", "payload": {"vcf_info": vcf, "hash": "00",
                        "max_info": {"user_id": 10001}}}]},
                "link": {"type": "reply", "message": {"mid": "mid.0"}}}}),
        json!({"update_type": "bot_started", "timestamp": 1, "chat_id": 1, "user": {"user_id": 2}, "payload": "x"}),
        json!({"update_type": "message_callback", "timestamp": 1,
            "callback": {"timestamp": 2, "callback_id": "c", "payload": "p", "user": {"user_id": 3}}, "message": null}),
    ]);
    out
}

/// Applies one mutation chosen by `choice` at a position chosen by `pos`.
fn mutate(v: &mut Value, choice: u8, pos: usize, replacement: &Value) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(pos % map.len()).cloned().unwrap_or_default();
            match choice % 3 {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(key, replacement.clone());
                }
                _ => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate(child, choice / 3, pos / 7 + 1, replacement);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = pos % items.len();
            if choice.is_multiple_of(2) {
                items[i] = replacement.clone();
            } else {
                mutate(&mut items[i], choice / 2, pos / 5 + 1, replacement);
            }
        }
        other => *other = replacement.clone(),
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,40}".prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
        Just(json!({"user_id": "9999999999999999999999"})),
    ]
}

fn exercise(bytes: &[u8]) {
    let parser = UpdateParser::new().contact_hash_key(SecretString::from("k"));
    let _ = parser.parse(bytes);
    let handler = MaxWebhookHandler::new(Some(SecretString::from("secret_1")));
    let mut h = HeaderMap::new();
    h.insert(
        "x-max-bot-api-secret",
        http::HeaderValue::from_static("secret_1"),
    );
    let _ = handler.verify_and_parse(&WebhookRequest::post(&h, bytes));
    let _ = classify_error(429, bytes, None);
    let text = String::from_utf8_lossy(bytes);
    let _ = phone_from_vcard(&text);
    let _ = deep_link(&text, &text);
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        let _ = check_contact(&v, 1, Some(b"k"));
        let _ = parser.parse_value(&v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
        exercise(s.as_bytes());
    }

    #[test]
    fn mutated_real_payloads_never_panic(
        seed in any::<proptest::sample::Index>(),
        mutations in proptest::collection::vec((any::<u8>(), any::<usize>(), any_json()), 1..4),
        cut in any::<proptest::sample::Index>(),
    ) {
        let seeds = seeds();
        let mut v = seed.get(&seeds).clone();
        for (choice, pos, replacement) in &mutations {
            mutate(&mut v, *choice, *pos, replacement);
        }
        let bytes = serde_json::to_vec(&v).unwrap();
        exercise(&bytes);
        // Truncated at an arbitrary byte, too.
        let at = cut.index(bytes.len() + 1);
        exercise(&bytes[..at]);
    }
}
