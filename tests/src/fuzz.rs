//! One function per parser, fed arbitrary bytes: the bodies of the cargo-fuzz targets in
//! `fuzz/` and of the seed test (`tests/fuzz_seeds.rs`), so CI compiles and runs what the fuzzer
//! runs.
//!
//! Each function must not panic on any input, and checks what must hold whenever the parser
//! accepts: a parsed webhook's events survive the webhook journal's JSON round trip unchanged
//! (the journal stores them before the 2xx), a correctly signed body parses to the same events
//! as the unsigned parse, a parsed phone number is E.164 and parses back to itself, and a
//! provider's answer always yields an error of some kind rather than a panic.
//!
//! ```
//! messaging_tests::fuzz::waba_webhook(br#"{"object":"whatsapp_business_account","entry":[]}"#);
//! messaging_tests::fuzz::phone("8 (912) 345-67-89".as_bytes());
//! ```

use chrono::{TimeZone, Utc};
use http::{HeaderMap, HeaderValue, StatusCode};
use messaging::core::webhook::{WebhookError, WebhookHandler, WebhookRequest, hmac_sha256_hex};
use messaging::sms::smsaero::SmsAero;
use messaging::sms::smsc::{Smsc, SmscAuth};
use messaging::sms::smsru::{SmsRu, SmsRuAuth};
use messaging::sms::twilio::Twilio;
use messaging::sms::{PreparedSms, Reply, SmsProvider};
use messaging::{Event, Phone, ProviderMessageId, Region};

/// A fuzz target's body: any bytes in, a panic only on a bug.
pub type FuzzBody = fn(&[u8]);

/// The parsers with a fuzz target, by target name (the file names under `fuzz/fuzz_targets/`).
pub const TARGETS: &[(&str, FuzzBody)] = &[
    ("waba_webhook", waba_webhook),
    ("telegram_update", telegram_update),
    ("max_update", max_update),
    ("smsru_callback", smsru_callback),
    ("smsc_callback", smsc_callback),
    ("smsaero_callback", smsaero_callback),
    ("twilio_callback", twilio_callback),
    ("phone", phone),
    ("provider_answer", provider_answer),
    ("sms_answer", sms_answer),
];

/// What every accepted webhook must satisfy: the events round-trip through JSON as the journal
/// stores them, and the signed path agrees with the unsigned one.
fn check_events(parser: &str, events: &[Event]) {
    for event in events {
        let json = serde_json::to_string(event)
            .unwrap_or_else(|e| panic!("{parser}: an event does not serialize: {e}"));
        let back: Event = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("{parser}: {json} does not deserialize: {e}"));
        assert_eq!(
            &back, event,
            "{parser}: the journal's round trip changed the event"
        );
    }
}

fn same_outcome(
    parser: &str,
    signed: &Result<Vec<Event>, WebhookError>,
    unsigned: &Result<Vec<Event>, WebhookError>,
) {
    match (signed, unsigned) {
        (Ok(a), Ok(b)) => assert_eq!(
            a.len(),
            b.len(),
            "{parser}: signed and unsigned parses disagree"
        ),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("{parser}: signed {a:?} but unsigned {b:?}"),
    }
}

/// WhatsApp Cloud API (and 360dialog) webhook bodies, verified with `X-Hub-Signature-256`.
pub fn waba_webhook(data: &[u8]) {
    let headers = HeaderMap::new();
    let unsigned = messaging::waba::WabaWebhook::new().parse(&WebhookRequest::post(&headers, data));
    if let Ok(events) = &unsigned {
        check_events("waba", events);
    }
    let mut signed_headers = HeaderMap::new();
    let signature = format!("sha256={}", hmac_sha256_hex(b"fuzz-app-secret", data));
    signed_headers.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&signature).expect("hex is a valid header"),
    );
    let signed = messaging::waba::WabaWebhook::new()
        .app_secret("fuzz-app-secret")
        .verify_and_parse(&WebhookRequest::post(&signed_headers, data));
    same_outcome("waba", &signed, &unsigned);
    // A wrong signature is always refused, whatever the body.
    let wrong = messaging::waba::WabaWebhook::new()
        .app_secret("another-secret")
        .verify_and_parse(&WebhookRequest::post(&signed_headers, data));
    assert!(wrong.is_err(), "waba: a body passed with the wrong secret");
}

/// Telegram updates as a webhook delivers them, and `getUpdates` answers as long polling reads
/// them.
pub fn telegram_update(data: &[u8]) {
    let headers = HeaderMap::new();
    let unsigned = messaging::telegram::TelegramWebhook::new(None)
        .parse(&WebhookRequest::post(&headers, data));
    if let Ok(events) = &unsigned {
        check_events("telegram", events);
    }
    let mut secret_headers = HeaderMap::new();
    secret_headers.insert(
        messaging::telegram::SECRET_HEADER,
        HeaderValue::from_static("fuzz-secret-token"),
    );
    let signed = messaging::telegram::TelegramWebhook::new(Some("fuzz-secret-token".into()))
        .verify_and_parse(&WebhookRequest::post(&secret_headers, data));
    same_outcome("telegram", &signed, &unsigned);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok((_, events)) = messaging::telegram::parse_updates_response(&value) {
            check_events("telegram getUpdates", &events);
        }
        if let Some(events) = messaging::telegram::parse_update_value(&value) {
            check_events("telegram update", &events);
        }
    }
}

/// Max bot updates (webhook bodies and `GET /updates` answers), and the vCard a shared contact
/// carries.
pub fn max_update(data: &[u8]) {
    let headers = HeaderMap::new();
    let unsigned =
        messaging::max::MaxWebhookHandler::new(None).parse(&WebhookRequest::post(&headers, data));
    if let Ok(events) = &unsigned {
        check_events("max", events);
    }
    let mut secret_headers = HeaderMap::new();
    secret_headers.insert(
        messaging::max::SECRET_HEADER,
        HeaderValue::from_static("fuzz-secret-token"),
    );
    let signed = messaging::max::MaxWebhookHandler::new(Some("fuzz-secret-token".into()))
        .verify_and_parse(&WebhookRequest::post(&secret_headers, data));
    same_outcome("max", &signed, &unsigned);
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(p) = messaging::max::phone_from_vcard(text)
    {
        check_phone("max vcard", &p);
    }
}

fn unsigned_callback(parser: &str, handler: &dyn WebhookHandler, data: &[u8]) {
    let headers = HeaderMap::new();
    let request = WebhookRequest::post(&headers, data).with_url("https://example.org/sms/hook");
    if let Ok(events) = handler.verify_and_parse(&request) {
        check_events(parser, &events);
    }
    // The same fields in the query string, as SMS.ru and SMSC can also call back with GET.
    if let Ok(query) = std::str::from_utf8(data) {
        let url = format!("https://example.org/sms/hook?{query}");
        let empty: &[u8] = b"";
        if let Ok(events) = handler.parse(&WebhookRequest::post(&headers, empty).with_url(&url)) {
            check_events(parser, &events);
        }
    }
}

/// SMS.ru delivery callbacks (`data[N]` form fields).
pub fn smsru_callback(data: &[u8]) {
    unsigned_callback("smsru", &messaging::sms::smsru::SmsRuWebhook::new(), data);
}

/// SMSC.ru delivery callbacks.
pub fn smsc_callback(data: &[u8]) {
    unsigned_callback("smsc", &messaging::sms::smsc::SmscWebhook::new(), data);
}

/// SMS Aero delivery callbacks.
pub fn smsaero_callback(data: &[u8]) {
    unsigned_callback(
        "smsaero",
        &messaging::sms::smsaero::SmsAeroWebhook::new(),
        data,
    );
}

/// Twilio status callbacks and inbound SMS/WhatsApp messages, with and without a valid
/// `X-Twilio-Signature`.
pub fn twilio_callback(data: &[u8]) {
    const URL: &str = "https://example.org/sms/twilio";
    let headers = HeaderMap::new();
    let unsigned = messaging::sms::twilio::TwilioWebhook::unverified()
        .verify_and_parse(&WebhookRequest::post(&headers, data).with_url(URL));
    if let Ok(events) = &unsigned {
        check_events("twilio", events);
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let signature = messaging::sms::twilio::compute_signature("fuzz-auth-token", URL, &params);
    let mut signed_headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&signature) {
        signed_headers.insert("x-twilio-signature", v);
        let signed = messaging::sms::twilio::TwilioWebhook::new("fuzz-auth-token")
            .verify_and_parse(&WebhookRequest::post(&signed_headers, data).with_url(URL));
        same_outcome("twilio", &signed, &unsigned);
    }
}

fn check_phone(parser: &str, p: &Phone) {
    let s = p.as_str();
    // libphonenumber's bound (a country code of up to 3 digits and up to 17 national digits)
    // is above E.164's 15 digits: German numbers reach 16, and they are real.
    assert!(
        s.starts_with('+')
            && (4..=21).contains(&s.len())
            && !s.starts_with("+0")
            && s[1..].bytes().all(|b| b.is_ascii_digit()),
        "{parser}: {s:?} is not a plus sign and digits"
    );
    assert_eq!(
        Phone::parse(s).as_ref(),
        Ok(p),
        "{parser}: {s} does not parse back to itself"
    );
}

/// Phone numbers as people paste them, read in a few regions.
pub fn phone(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for region in ["RU", "KZ", "US", "DE", "GB", "CN"] {
        let region: Region = region.parse().expect("a known region");
        if let Ok(p) = Phone::parse_in(text, region) {
            check_phone("phone", &p);
        }
    }
}

fn status_from(byte: u8) -> u16 {
    // Mostly the statuses providers really answer with, sometimes any valid status.
    const COMMON: [u16; 12] = [200, 201, 202, 400, 401, 403, 404, 409, 429, 500, 502, 503];
    COMMON
        .get(usize::from(byte % 16))
        .copied()
        .unwrap_or(100 + u16::from(byte) * 2)
}

/// The error and rate-limit answers of WhatsApp's Graph API, Telegram's Bot API and Max's API,
/// with the `Retry-After` header they may carry. The first byte picks the HTTP status, the
/// second the header's length.
pub fn provider_answer(data: &[u8]) {
    let [status_byte, header_len, rest @ ..] = data else {
        return;
    };
    let status = status_from(*status_byte);
    let split = usize::from(*header_len).min(rest.len());
    let (header, body) = rest.split_at(split);
    let header = std::str::from_utf8(header).ok();
    let now = Utc
        .with_ymd_and_hms(2026, 12, 6, 12, 0, 0)
        .single()
        .expect("a valid date");
    let wait = header.and_then(|h| messaging_http::parse_retry_after(h, now));
    if let Some(w) = wait {
        assert!(
            w <= messaging_http::MAX_RETRY_AFTER,
            "Retry-After {header:?} gave an unbounded wait {w:?}"
        );
    }
    let _ = messaging::waba::GraphError::from_body(body).map(|g| g.kind());
    let _ = messaging::waba::error::error_from_response(status, wait, body).kind();
    let _ = messaging::telegram::ApiError::from_response(status, header, body).into_channel_error();
    let _ = messaging::max::classify_error(status, body, wait).kind();
}

/// The answers SMS.ru, SMSC, SMS Aero and Twilio give to a send and to a status request. The
/// first byte picks the HTTP status.
pub fn sms_answer(data: &[u8]) {
    let [status_byte, body @ ..] = data else {
        return;
    };
    let Ok(status) = StatusCode::from_u16(status_from(*status_byte)) else {
        return;
    };
    let reply = Reply::new(status, body.to_vec());
    let phone = Phone::parse("+79123456789").expect("a valid number");
    let sms = PreparedSms::new(phone, "Приём завтра в 10:00", 1);
    let ids = [
        ProviderMessageId::new("000000-10000000"),
        ProviderMessageId::new("SMe287d7109a5a925f182f0e07fe5b223b"),
    ];
    fn both<P: SmsProvider>(p: &P, reply: &Reply, sms: &PreparedSms, ids: &[ProviderMessageId]) {
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).single();
        let now = now.expect("a valid date");
        let _ = p.read_send(reply, sms, now);
        let _ = p.read_status(reply, ids, now);
    }
    both(
        &SmsRu::new(SmsRuAuth::ApiId("fuzz".to_owned().into())),
        &reply,
        &sms,
        &ids,
    );
    both(
        &Smsc::new(SmscAuth::ApiKey("fuzz".to_owned().into())),
        &reply,
        &sms,
        &ids,
    );
    both(
        &SmsAero::new("fuzz@example.org", "fuzz"),
        &reply,
        &sms,
        &ids,
    );
    both(&Twilio::new("ACfuzz", "fuzz"), &reply, &sms, &ids);
}

/// The starting inputs for `target`: the conformance corpus's real payloads for that parser
/// (read in place, skipped with a notice when absent), the phone corpus, the hand-written seeds
/// and every crash input ever found (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`).
/// Answer targets get each payload behind their selector bytes (HTTP 200 and 400).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let here = env!("CARGO_MANIFEST_DIR");
    let read = |sub: &str, ext: &str| -> Vec<Vec<u8>> {
        messaging::testkit::conformance_files(here, sub, ext)
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .collect()
    };
    let answers = |prefixes: &[&[u8]], bodies: Vec<Vec<u8>>| -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for body in bodies {
            for prefix in prefixes {
                out.push([*prefix, &body].concat());
            }
        }
        out
    };
    let mut out = match target {
        "waba_webhook" => read("waba/webhooks", "json"),
        "telegram_update" => [
            read("telegram/updates", "json"),
            read("telegram/responses", "json"),
        ]
        .concat(),
        "max_update" => [read("max/updates", "json"), read("max/responses", "json")].concat(),
        "twilio_callback" => [read("sms/callbacks", "txt"), read("twilio", "txt")].concat(),
        // HTTP 200 and 400 with no Retry-After; HTTP 429 with "30".
        "provider_answer" => {
            let bodies = [
                read("waba/errors", "json"),
                read("telegram/responses", "json"),
                read("max/responses", "json"),
            ]
            .concat();
            answers(&[&[0, 0], &[3, 0], b"\x08\x0230"], bodies)
        }
        "sms_answer" => answers(&[&[0], &[3]], read("sms/responses", "json")),
        "phone" => {
            let corpus =
                std::path::Path::new(here).join("../messaging-core/tests/data/phones/corpus.jsonl");
            std::fs::read_to_string(corpus)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| serde_json::from_str::<(String, String, String)>(l).ok())
                .map(|(input, _, _)| input.into_bytes())
                .collect()
        }
        _ => Vec::new(),
    };
    for kind in ["seeds", "regressions"] {
        let dir = std::path::Path::new(here)
            .join("../fuzz")
            .join(kind)
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        out.extend(files.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    out
}
