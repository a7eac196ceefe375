//! No provider answer can panic an adapter: arbitrary HTTP statuses, `Retry-After` values and
//! bodies — random bytes, and JSON shaped like each provider's answers with random field values
//! (huge and negative numbers, floats, wrong types, nesting) — go through every adapter's answer
//! mapping, which returns a typed result, with any wait bounded by `MAX_RETRY_AFTER`.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use messaging::sms::smsaero::SmsAero;
use messaging::sms::smsc::{Smsc, SmscAuth};
use messaging::sms::smsru::{SmsRu, SmsRuAuth};
use messaging::sms::twilio::Twilio;
use messaging::sms::{PreparedSms, Reply, SmsProvider};
use messaging::{ChannelError, Phone, ProviderMessageId};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Any JSON leaf a hostile or broken provider could put in a field.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(i64::MAX),
            Just(i64::MIN),
            Just(-1i64),
            Just(0),
            Just(9_999_999_999_999),
            Just(429),
            Just(131047),
        ]
        .prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("9999999999999"),
            Just("-5"),
            Just("1e400"),
            Just("NaN"),
            Just(""),
            Just("ERROR"),
            Just("OK"),
            Just("Too Many Requests: retry after 99999999999999999999"),
            Just("Forbidden: bot was blocked by the user"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

/// A leaf, or a small array or object of leaves (a wrong type where a scalar is expected).
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with (some of) these keys, each a random value.
fn shaped(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec((any::<bool>(), value()), keys.len()).prop_map(move |vals| {
        let mut m = Map::new();
        for (k, (present, v)) in keys.iter().zip(vals) {
            if present {
                m.insert((*k).to_owned(), v);
            }
        }
        Value::Object(m)
    })
}

/// A body: random bytes, or JSON of the provider's shape (possibly nested under `wrap`).
fn body(
    top: &'static [&'static str],
    nested: &'static [(&'static str, &'static [&'static str])],
) -> impl Strategy<Value = Vec<u8>> {
    let json = (
        shaped(top),
        prop::collection::vec(shaped_any(), nested.len()),
    )
        .prop_map(move |(mut v, inner)| {
            for ((key, _), iv) in nested.iter().zip(inner) {
                v[*key] = iv;
            }
            v
        });
    let json = (json, prop::sample::select(nested.to_vec()), any::<bool>()).prop_map(
        |(mut v, (key, keys), fill)| {
            // Give one nested object the provider's own keys.
            if fill {
                let mut m = Map::new();
                for k in keys {
                    m.insert((*k).to_owned(), json!(9_999_999_999_999i64));
                }
                v[key] = Value::Object(m);
            }
            serde_json::to_vec(&v).unwrap()
        },
    );
    prop_oneof![
        2 => json,
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => "\\PC{0,80}".prop_map(String::into_bytes),
    ]
}

fn shaped_any() -> impl Strategy<Value = Value> {
    value()
}

/// A `Retry-After` header value: numbers of every size, dates, garbage.
fn retry_after_header() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("9999999999999".to_owned()),
        Just("99999999999999999999999999".to_owned()),
        Just("Wed, 21 Oct 2015 07:28:00 GMT".to_owned()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_owned()),
        Just("1.5".to_owned()),
        "[ -~]{0,30}",
    ])
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![100u16..=999, Just(200), Just(400), Just(429), Just(500)]
}

/// The reply an adapter sees: the status, the header read by the kit, the body.
fn reply(status: u16, header: &Option<String>, body: &[u8]) -> Reply {
    let mut headers = http::HeaderMap::new();
    if let Some(h) = header
        && let Ok(v) = http::HeaderValue::from_str(h)
    {
        headers.insert(http::header::RETRY_AFTER, v);
    }
    let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let wait = messaging_http::retry_after(&headers, now);
    Reply::new(http::StatusCode::from_u16(status).unwrap(), body.to_vec()).with_retry_after(wait)
}

fn check(e: &ChannelError) {
    assert!(e.retry_after().is_none_or(|d| d <= MAX_WAIT), "{e:?}");
    let _ = format!("{e} {e:?}");
}

fn check_result<T>(r: Result<T, ChannelError>) {
    if let Err(e) = r {
        check(&e);
    }
}

fn sms() -> PreparedSms {
    PreparedSms::new(Phone::parse("+79123456789").unwrap(), "hi", 1)
}

fn run_sms<P: SmsProvider>(p: &P, ids: &[&str], r: &Reply) {
    let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    check_result(p.read_send(r, &sms(), now));
    let ids: Vec<ProviderMessageId> = ids.iter().map(ProviderMessageId::new).collect();
    check_result(p.read_status(r, &ids, now));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn telegram(status in status(), header in retry_after_header(),
                body in body(&["ok", "error_code", "description", "result"],
                             &[("parameters", &["retry_after", "migrate_to_chat_id"])])) {
        let e = messaging::telegram::ApiError::from_response(status, header.as_deref(), &body);
        assert!(e.retry_after.is_none_or(|s| s <= MAX_WAIT.as_secs()), "{e:?}");
        let _ = e.kind();
        check(&e.into_channel_error());
    }

    #[test]
    fn whatsapp(status in status(), header in retry_after_header(),
                body in body(&["messages", "contacts"],
                             &[("error", &["message", "type", "code", "error_subcode",
                                           "error_user_msg", "error_data", "fbtrace_id"])])) {
        let r = reply(status, &header, &body);
        check(&messaging::waba::error::error_from_response(status, r.retry_after, &r.body));
        if let Some(g) = messaging::waba::GraphError::from_body(&body) {
            let _ = (g.kind(), g.text());
            check(&g.to_channel_error(r.retry_after));
        }
    }

    #[test]
    fn max(status in status(), header in retry_after_header(),
           body in body(&["code", "message", "error", "success"], &[("message", &["text"])])) {
        let r = reply(status, &header, &body);
        check(&messaging::max::classify_error(status, &r.body, r.retry_after));
    }

    #[test]
    fn smsru(status in status(), header in retry_after_header(),
             body in body(&["status", "status_code", "status_text", "balance"],
                          &[("sms", &["79123456789", "1-2"])])) {
        let r = reply(status, &header, &body);
        run_sms(&SmsRu::new(SmsRuAuth::ApiId("k".to_owned().into())), &["1-2", "3"], &r);
        // The per-recipient entries, with the provider's own keys and random values.
        if let Ok(Value::Object(mut v)) = serde_json::from_slice::<Value>(&body) {
            v.insert("status".into(), json!("OK"));
            v.insert("sms".into(), json!({"79123456789": v.get("balance").cloned().unwrap_or(json!({}))}));
            let r = reply(status, &header, &serde_json::to_vec(&v).unwrap());
            run_sms(&SmsRu::new(SmsRuAuth::ApiId("k".to_owned().into())), &["1-2"], &r);
        }
    }

    #[test]
    fn smsc(status in status(), header in retry_after_header(),
            body in body(&["error", "error_code", "id", "cnt", "cost", "balance", "status",
                           "last_date", "last_timestamp", "err", "phone"],
                         &[("sms", &["id", "status"])])) {
        let r = reply(status, &header, &body);
        run_sms(&Smsc::new(SmscAuth::api_key("k")), &["42:79123456789", "x"], &r);
    }

    #[test]
    fn smsaero(status in status(), header in retry_after_header(),
               body in body(&["success", "message"],
                            &[("data", &["id", "status", "extendStatus", "cost", "number",
                                         "dateCreate", "dateSend"])])) {
        let r = reply(status, &header, &body);
        run_sms(&SmsAero::new("a@b.c", "k"), &["42", "-1"], &r);
    }

    #[test]
    fn twilio(status in status(), header in retry_after_header(),
              body in body(&["code", "message", "status", "sid", "error_code", "error_message",
                             "num_segments", "price", "price_unit", "date_sent", "date_updated",
                             "more_info"],
                           &[("subresource_uris", &["media"])])) {
        let r = reply(status, &header, &body);
        run_sms(&Twilio::new("AC1", "tok"), &["SM0123456789abcdef0123456789abcdef"], &r);
    }

    #[test]
    fn retry_after_headers_are_bounded(header in retry_after_header()) {
        let r = reply(429, &header, b"");
        assert!(r.retry_after.is_none_or(|d| d <= MAX_WAIT));
    }
}
