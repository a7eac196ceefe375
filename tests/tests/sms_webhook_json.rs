//! What `messaging parse-webhook --provider smsru|smsc|smsaero|twilio` relies on: handlers built
//! without credentials (Twilio from an auth token), `Malformed` for bodies that do not match,
//! and events serialized to the shared JSON shape.

use messaging::sms::smsaero::SmsAeroWebhook;
use messaging::sms::smsc::SmscWebhook;
use messaging::sms::smsru::SmsRuWebhook;
use messaging::sms::twilio::{TwilioWebhook, compute_signature};
use messaging::webhook::{WebhookError, WebhookHandler, WebhookRequest};
use serde_json::Value;

fn handlers() -> Vec<(&'static str, Box<dyn WebhookHandler>, &'static [u8])> {
    vec![
        (
            "smsru",
            Box::new(SmsRuWebhook::new()),
            b"data%5B0%5D=sms_status%0A000000-000001%0A104%0A1794000000",
        ),
        (
            "smsc",
            Box::new(SmscWebhook::new()),
            b"id=77&phone=79123456789&status=20&err=1&ts=1794000000",
        ),
        (
            "smsaero",
            Box::new(SmsAeroWebhook::new()),
            br#"{"id": 5, "status": 2, "extendStatus": "undelivered", "number": "79123456789", "dateAnswer": 1794000000}"#,
        ),
        (
            "twilio",
            Box::new(TwilioWebhook::unverified()),
            b"MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30003&To=%2B79123456789&RawDlrDoneDate=2611211000",
        ),
    ]
}

#[test]
fn failed_reports_serialize_to_the_shared_shape() {
    let headers = http::HeaderMap::new();
    for (name, h, body) in handlers() {
        assert_eq!(h.provider(), name);
        assert_eq!(h.channel_kind(), messaging::ChannelKind::Sms);
        let ev = h
            .verify_and_parse(&WebhookRequest::post(&headers, body))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let v: Value = serde_json::to_value(&ev[0]).unwrap();
        assert_eq!(v["kind"], "delivery", "{name}");
        assert_eq!(v["channel"], "sms", "{name}");
        assert_eq!(v["status"], "failed", "{name}");
        assert!(
            v["provider_message_id"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{name}"
        );
        let at = v["at"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "{name}: {at}"
        );
        assert!(v["error"]["code"].as_str().is_some(), "{name}: {v}");
        assert!(v["error"]["message"].as_str().is_some(), "{name}: {v}");
        if name != "smsru" {
            assert!(
                v["recipient"].as_str().unwrap().contains("79123456789"),
                "{name}: {v}"
            );
        }
        if name != "smsaero" {
            // The provider's own time is kept (2026-11-21T10:00Z / 1794000000).
            assert!(at.starts_with("2026-11-"), "{name}: {at}");
        }
    }
}

#[test]
fn bodies_that_do_not_match_are_malformed() {
    let headers = http::HeaderMap::new();
    for (name, h, _) in handlers() {
        for body in [
            &b""[..],
            b"hello=world",
            b"{\"unrelated\": true}",
            b"\xff\xfe",
        ] {
            let r = h.verify_and_parse(&WebhookRequest::post(&headers, body));
            assert!(
                matches!(r, Err(WebhookError::Malformed { .. })),
                "{name} {body:?}: {r:?}"
            );
        }
    }
}

#[test]
fn twilio_from_an_auth_token_requires_the_signature() {
    let body = b"MessageSid=SM1&MessageStatus=delivered";
    let url = "https://clinic.example.com/twilio";
    let h = TwilioWebhook::new("token").url(url);
    let none = http::HeaderMap::new();
    assert!(matches!(
        h.verify_and_parse(&WebhookRequest::post(&none, body)),
        Err(WebhookError::MissingSignature("X-Twilio-Signature"))
    ));
    let mut wrong = http::HeaderMap::new();
    wrong.insert(
        "X-Twilio-Signature",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".parse().unwrap(),
    );
    assert_eq!(
        h.verify_and_parse(&WebhookRequest::post(&wrong, body)),
        Err(WebhookError::BadSignature)
    );
    let mut good = http::HeaderMap::new();
    let sig = compute_signature(
        "token",
        url,
        &[("MessageSid", "SM1"), ("MessageStatus", "delivered")],
    );
    good.insert("X-Twilio-Signature", sig.parse().unwrap());
    let ev = h
        .verify_and_parse(&WebhookRequest::post(&good, body))
        .unwrap();
    let v = serde_json::to_value(&ev[0]).unwrap();
    assert_eq!(v["status"], "delivered");
    assert!(v.get("error").is_none());
    // Without --url and without a request URL, the signature cannot be checked.
    let no_url = TwilioWebhook::new("token");
    assert!(matches!(
        no_url.verify(&WebhookRequest::post(&good, body)),
        Err(WebhookError::Malformed { .. })
    ));
}

#[test]
fn twilio_inbound_serializes_with_a_phone_address() {
    let headers = http::HeaderMap::new();
    let body = b"MessageSid=SM9&SmsStatus=received&From=%2B79123456789&To=%2B15017122661&Body=%D0%94%D0%B0";
    let ev = TwilioWebhook::unverified()
        .verify_and_parse(&WebhookRequest::post(&headers, body))
        .unwrap();
    let v = serde_json::to_value(&ev[0]).unwrap();
    assert_eq!(v["kind"], "inbound");
    assert_eq!(v["channel"], "sms");
    assert_eq!(v["from"], "+79123456789");
    assert_eq!(v["text"], "Да");
    assert_eq!(v["address"]["type"], "phone");
}
