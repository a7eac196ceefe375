//! The parsers never panic: arbitrary bytes, and real payloads mutated byte- and value-wise.

use messaging_core::testkit::conformance_files;
use messaging_telegram::{ApiError, parse_update, parse_updates_response};
use proptest::prelude::*;
use serde_json::Value;

/// Real payloads from the corpus, plus a few written from the documented shapes so that the
/// mutation tests have material when the corpus is absent.
fn corpus() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = conformance_files(env!("CARGO_MANIFEST_DIR"), "telegram", "json")
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    out.push(br#"{"update_id":900000001,"message":{"message_id":55,"from":{"id":123456789,"is_bot":false,"first_name":"Ivan"},"chat":{"id":123456789,"first_name":"Ivan","type":"private"},"date":1767225660,"contact":{"phone_number":"79001234567","first_name":"Ivan","user_id":123456789}}}"#.to_vec());
    out.push(br#"{"update_id":900000000,"message":{"message_id":54,"from":{"id":123456789,"is_bot":false,"first_name":"Ivan"},"chat":{"id":123456789,"type":"private"},"date":1767225600,"text":"/start ord_42","entities":[{"offset":0,"length":6,"type":"bot_command"}]}}"#.to_vec());
    out.push(br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 35","parameters":{"retry_after":35}}"#.to_vec());
    out
}

fn mutate_value(v: &mut Value, seed: &mut u64, replacement: &Value) {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    match v {
        Value::Object(map) if !map.is_empty() => {
            let idx = (*seed >> 33) as usize % map.len();
            if let Some(key) = map.keys().nth(idx).cloned()
                && let Some(child) = map.get_mut(&key)
            {
                if (*seed >> 20).is_multiple_of(3) {
                    *child = replacement.clone();
                } else {
                    mutate_value(child, seed, replacement);
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let idx = (*seed >> 33) as usize % items.len();
            if let Some(child) = items.get_mut(idx) {
                mutate_value(child, seed, replacement);
            }
        }
        other => *other = replacement.clone(),
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,20}".prop_map(Value::String),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!({"id": "x", "status": 5})),
    ]
}

fn exercise(bytes: &[u8]) {
    let _ = parse_update(bytes, None);
    for status in [0u16, 200, 400, 403, 429, 500] {
        let e = ApiError::from_response(status, Some("3"), bytes);
        let _ = e.clone().into_channel_error();
        let _ = e.to_string();
    }
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        let _ = parse_updates_response(&v);
        let _ = parse_updates_response(&serde_json::json!({"ok": true, "result": [v]}));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn byte_mutations_of_real_payloads(idx in any::<usize>(), edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let corpus = corpus();
        let mut bytes = corpus[idx % corpus.len()].clone();
        for (pos, b) in edits {
            if !bytes.is_empty() {
                let len = bytes.len();
                bytes[pos % len] = b;
            }
        }
        exercise(&bytes);
        let len = bytes.len();
        bytes.truncate(cut % (len + 1));
        exercise(&bytes);
    }

    #[test]
    fn value_mutations_of_real_payloads(idx in any::<usize>(), seed in any::<u64>(), replacement in any_json(), rounds in 1usize..4) {
        let corpus = corpus();
        let Ok(mut v) = serde_json::from_slice::<Value>(&corpus[idx % corpus.len()]) else {
            return Ok(());
        };
        let mut seed = seed;
        for _ in 0..rounds {
            mutate_value(&mut v, &mut seed, &replacement);
        }
        let bytes = serde_json::to_vec(&v).expect("serializes");
        exercise(&bytes);
    }
}
