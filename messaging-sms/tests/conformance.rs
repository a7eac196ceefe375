//! The shared conformance corpus, read in place: every Twilio callback parses (and verifies when
//! signed), every `X-Twilio-Signature` vector validates and a changed parameter fails, and a
//! few SMS segment vectors match the receipt's part count.

use messaging_core::testkit::{conformance_dir, conformance_files};
use messaging_core::webhook::{WebhookError, WebhookHandler, WebhookRequest};
use messaging_core::{Address, DeliveryStatus, ErrorKind, Event, Signal};
use messaging_sms::twilio::{TwilioWebhook, compute_signature, validate_signature};

const DIR: &str = env!("CARGO_MANIFEST_DIR");

fn form(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[test]
fn every_twilio_callback_parses() {
    let files = conformance_files(DIR, "sms/callbacks", "txt");
    if files.is_empty() {
        println!("skipped: no sms/callbacks in the conformance corpus");
        return;
    }
    let headers = http::HeaderMap::new();
    let mut seen = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read(path).unwrap();
        let events = TwilioWebhook::unverified()
            .verify_and_parse(&WebhookRequest::post(&headers, &body))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!events.is_empty(), "{name}");
        let first = &events[0];
        assert_eq!(first.channel(), messaging_core::ChannelKind::Sms, "{name}");
        match name.as_str() {
            "twilio_inbound_sms.txt" => {
                let Event::Inbound(m) = first else {
                    panic!("{name}: {first:?}")
                };
                assert_eq!(m.text.as_deref(), Some("Msg"));
                assert_eq!(m.from, "+14133881111");
                assert!(matches!(&m.address, Address::Phone(p) if p.as_str() == "+14133881111"));
                assert_eq!(
                    m.provider_message_id.as_ref().unwrap().as_str(),
                    "SMe287d7109a5a925f182f0e07fe5b223b"
                );
            }
            "twilio_status_delivered.txt" => {
                let Event::Delivery(d) = first else { panic!() };
                assert_eq!(d.status, DeliveryStatus::Delivered);
                assert_eq!(
                    d.provider_message_id.as_str(),
                    "SMe287d7109a5a925f182f0e07fe5b223b"
                );
                assert!(d.error.is_none());
            }
            "twilio_status_read.txt" => {
                let Event::Delivery(d) = first else { panic!() };
                assert_eq!(d.status, DeliveryStatus::Read);
            }
            "twilio_status_sent_messaging_service.txt" => {
                let Event::Delivery(d) = first else { panic!() };
                assert_eq!(d.status, DeliveryStatus::Sent);
                assert_eq!(d.recipient.as_deref(), Some("2021"));
                assert_eq!(
                    d.provider_message_id.as_str(),
                    "SM0b6e2697aae04182a9f5b5c7a8994c7f"
                );
            }
            "twilio_status_failed_21610_stop.txt" => {
                let Event::Delivery(d) = first else { panic!() };
                assert_eq!(d.status, DeliveryStatus::Failed);
                let e = d.error.as_ref().unwrap();
                assert_eq!(e.code, "21610");
                assert_eq!(e.kind, Some(ErrorKind::Unreachable));
                assert_eq!(d.recipient.as_deref(), Some("+12028831111"));
                // The person sent STOP: an opt-out signal goes with the report.
                assert!(events.iter().any(|e| matches!(
                    e,
                    Event::Signal(s) if matches!(&s.signal, Signal::OptOut { from, .. } if from == "+12028831111")
                )));
            }
            "twilio_status_failed_63018_rate_limit.txt" => {
                let Event::Delivery(d) = first else { panic!() };
                assert_eq!(d.status, DeliveryStatus::Failed);
                let e = d.error.as_ref().unwrap();
                assert_eq!(e.code, "63018");
                assert_eq!(e.kind, Some(ErrorKind::RateLimited));
            }
            other => panic!("a new callback file {other}: add its expectations"),
        }
        seen += 1;
    }
    assert_eq!(seen, files.len());
}

#[test]
fn every_twilio_callback_verifies_when_signed_and_fails_when_changed() {
    let files = conformance_files(DIR, "sms/callbacks", "txt");
    if files.is_empty() {
        println!("skipped: no sms/callbacks in the conformance corpus");
        return;
    }
    let url = "https://clinic.example.com/webhooks/twilio?channel=sms-twilio";
    let handler = TwilioWebhook::new("secret-token");
    for path in &files {
        let body = std::fs::read_to_string(path).unwrap();
        let sig = compute_signature("secret-token", url, &form(&body));
        let mut headers = http::HeaderMap::new();
        headers.insert("X-Twilio-Signature", sig.parse().unwrap());
        let req = WebhookRequest::post(&headers, body.as_bytes()).with_url(url);
        assert!(handler.verify_and_parse(&req).is_ok(), "{path:?}");
        // Twilio may have signed the URL with the default port.
        let with_port = "https://clinic.example.com:443/webhooks/twilio?channel=sms-twilio";
        let req = WebhookRequest::post(&headers, body.as_bytes()).with_url(with_port);
        assert!(handler.verify(&req).is_ok(), "{path:?} with :443");
        // A changed body fails.
        let changed = body.replacen("MessageSid=SM", "MessageSid=SX", 1);
        assert_ne!(changed, body);
        let req = WebhookRequest::post(&headers, changed.as_bytes()).with_url(url);
        assert_eq!(handler.verify(&req), Err(WebhookError::BadSignature));
        // No header: missing signature.
        let empty = http::HeaderMap::new();
        let req = WebhookRequest::post(&empty, body.as_bytes()).with_url(url);
        assert!(matches!(
            handler.verify(&req),
            Err(WebhookError::MissingSignature(_))
        ));
    }
}

struct Vector {
    url: String,
    params: Vec<(String, String)>,
    token: String,
    signature: String,
}

fn vectors() -> Vec<Vector> {
    let Some(dir) = conformance_dir(DIR) else {
        return Vec::new();
    };
    let path = dir.join("twilio/signatures.tsv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("skipped: {} not found", path.display());
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 4, "{l}");
            Vector {
                url: cols[0].to_owned(),
                params: form(cols[1]),
                token: cols[2].to_owned(),
                signature: cols[3].to_owned(),
            }
        })
        .collect()
}

#[test]
fn every_signature_vector_validates_and_a_changed_parameter_fails() {
    let vs = vectors();
    if vs.is_empty() {
        return;
    }
    assert!(vs.len() >= 14, "expected the full vector table");
    for v in &vs {
        assert_eq!(
            compute_signature(&v.token, &v.url, &v.params),
            v.signature,
            "{}",
            v.url
        );
        assert!(validate_signature(
            &v.token,
            &v.url,
            &v.params,
            &v.signature
        ));
        // A changed or added parameter fails.
        let mut changed = v.params.clone();
        match changed.first_mut() {
            Some(p) => p.1.push('0'),
            None => changed.push(("Extra".into(), "1".into())),
        }
        assert!(
            !validate_signature(&v.token, &v.url, &changed, &v.signature),
            "{}",
            v.url
        );
        // Another token fails.
        assert!(!validate_signature(
            "54321",
            &v.url,
            &v.params,
            &v.signature
        ));
    }
}

#[test]
fn signature_vectors_accept_the_url_with_or_without_the_default_port() {
    let vs = vectors();
    let Some(plain) = vs
        .iter()
        .find(|v| v.url == "https://mycompany.com/myapp.php?foo=1&bar=2" && v.params.len() == 5)
    else {
        return;
    };
    // Signed without the port, requested with it; and the reverse.
    assert!(validate_signature(
        &plain.token,
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        &plain.params,
        &plain.signature
    ));
    let with_port = vs
        .iter()
        .find(|v| v.url.starts_with("https://mycompany.com:443/"))
        .unwrap();
    assert!(validate_signature(
        &with_port.token,
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        &with_port.params,
        &with_port.signature
    ));
    // A non-default port is not interchangeable.
    assert!(!validate_signature(
        &plain.token,
        "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
        &plain.params,
        &plain.signature
    ));
}

#[test]
fn body_sha256_vectors_verify_through_the_handler() {
    let body = br#"{"property": "value", "boolean": true}"#;
    for v in vectors().iter().filter(|v| v.url.contains("bodySHA256=")) {
        let mut headers = http::HeaderMap::new();
        headers.insert("X-Twilio-Signature", v.signature.parse().unwrap());
        let h = TwilioWebhook::new(v.token.clone());
        let req = WebhookRequest::post(&headers, body).with_url(&v.url);
        assert!(h.verify(&req).is_ok(), "{}", v.url);
        let tampered = br#"{"property": "value", "boolean": false}"#;
        let req = WebhookRequest::post(&headers, tampered).with_url(&v.url);
        assert_eq!(h.verify(&req), Err(WebhookError::BadSignature));
    }
}

/// A few rows of the segment vectors, through the send path (the full table is the encoding's
/// own test): the receipt's part count is the core's segment count.
#[test]
fn a_few_segment_vectors_match_the_core_count() {
    let Some(dir) = conformance_dir(DIR) else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(dir.join("sms/segments.tsv")) else {
        println!("skipped: sms/segments.tsv not found");
        return;
    };
    let unescape = |s: &str| {
        s.replace("\\\\", "\u{0}")
            .replace("\\t", "\t")
            .replace("\\n", "\n")
            .replace("\\r", "\r")
            .replace('\u{0}', "\\")
    };
    let mut checked = 0;
    for line in text.lines().skip(1).take(6) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (t, enc, segs) = (
            unescape(cols[0]),
            cols[1],
            cols[2].parse::<usize>().unwrap(),
        );
        let a = messaging_core::text::sms::analyze(&t);
        assert_eq!(a.segments, segs, "{t:?}");
        let want = if enc == "GSM-7" {
            messaging_core::text::sms::SmsEncoding::Gsm7
        } else {
            messaging_core::text::sms::SmsEncoding::Ucs2
        };
        assert_eq!(a.encoding, want, "{t:?}");
        // The channel's capability check agrees (default limit: 6 segments).
        let caps = messaging_sms::SmsOptions::new("sms").capabilities();
        assert_eq!(caps.fits(&t), segs <= 6);
        checked += 1;
    }
    assert!(checked > 0);
}
