//! The webhook parser never panics: arbitrary bytes, arbitrary JSON in the envelope, and real
//! payloads (the conformance corpus, else built-in samples) with parts replaced or bytes flipped.

use messaging_core::testkit::conformance_files;
use messaging_waba::WabaWebhook;
use proptest::prelude::*;
use serde_json::{Value, json};

fn samples() -> Vec<Value> {
    let mut out: Vec<Value> =
        conformance_files(env!("CARGO_MANIFEST_DIR"), "waba/webhooks", "json")
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
    out.push(json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "contacts": [{"profile": {"name": "A"}, "wa_id": "1"}],
        "messages": [{"from": "1", "id": "w", "timestamp": "1", "type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "a", "title": "b"}}}],
        "statuses": [{"id": "w", "status": "failed", "timestamp": "1", "errors": [{"code": 131047}], "pricing": {"category": "utility"}}]}}]}]}));
    out.push(json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "time": 1, "changes": [
        {"field": "user_preferences", "value": {"user_preferences": [{"wa_id": "1", "category": "marketing_messages", "value": "stop", "timestamp": 1}]}},
        {"field": "account_update", "value": {"event": "ACCOUNT_RESTRICTION", "restriction_info": [{"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": 1}]}},
        {"field": "business_capability_update", "value": {"max_daily_conversation_per_phone": 250}}]}]}));
    out
}

/// Every node of a JSON value, as a path of keys and indexes.
fn paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let mut p = prefix.clone();
                p.push(k.clone());
                paths(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let mut p = prefix.clone();
                p.push(i.to_string());
                paths(x, p, out);
            }
        }
        _ => {}
    }
}

fn replace(v: &mut Value, path: &[String], with: Value) {
    let mut cur = v;
    for p in path {
        let next = match cur {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    *cur = with;
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("failed")),
        Just(json!("text")),
        Just(json!(u64::MAX)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = WabaWebhook::new().parse_body(&bytes);
    }

    #[test]
    fn arbitrary_json_in_the_envelope(value in arb_json(), field in prop_oneof![
        Just("messages".to_owned()), Just("message_template_status_update".to_owned()),
        Just("message_template_quality_update".to_owned()), Just("phone_number_quality_update".to_owned()),
        Just("business_capability_update".to_owned()), Just("account_update".to_owned()),
        Just("user_preferences".to_owned()), "[a-z_]{1,10}"]) {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": field, "value": value}]}]});
        let _ = WabaWebhook::new().parse_body(body.to_string().as_bytes());
    }

    #[test]
    fn mutated_real_payloads(pick in any::<usize>(), node in any::<usize>(), with in arb_json(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4)) {
        let all = samples();
        let mut v = all[pick % all.len()].clone();
        let mut ps = Vec::new();
        paths(&v, Vec::new(), &mut ps);
        let path = ps[node % ps.len()].clone();
        replace(&mut v, &path, with);
        let h = WabaWebhook::new();
        let mut bytes = v.to_string().into_bytes();
        let _ = h.parse_body(&bytes);
        for (at, b) in flips {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = b;
            }
        }
        let _ = h.parse_body(&bytes);
    }
}
