//! Property tests: no callback parser panics, whatever the body, URL or signature header.

use messaging_core::webhook::{WebhookHandler, WebhookRequest};
use messaging_sms::smsaero::SmsAeroWebhook;
use messaging_sms::smsc::SmscWebhook;
use messaging_sms::smsru::SmsRuWebhook;
use messaging_sms::twilio::TwilioWebhook;
use proptest::prelude::*;

fn handlers() -> Vec<Box<dyn WebhookHandler>> {
    vec![
        Box::new(SmsRuWebhook::new()),
        Box::new(SmscWebhook::new()),
        Box::new(SmsAeroWebhook::new()),
        Box::new(TwilioWebhook::unverified()),
        Box::new(TwilioWebhook::new("token")),
    ]
}

fn run_all(body: &[u8], url: Option<&str>, sig: Option<&str>) {
    let mut headers = http::HeaderMap::new();
    if let Some(v) = sig.and_then(|s| http::HeaderValue::from_str(s).ok()) {
        headers.insert("X-Twilio-Signature", v);
    }
    for h in handlers() {
        let mut req = WebhookRequest::post(&headers, body);
        if let Some(u) = url {
            req = req.with_url(u);
        }
        let _ = h.verify_and_parse(&req);
        let _ = h.parse(&req);
    }
}

/// Form-like bodies built from the field names the parsers look at.
fn formish() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("data[0]".to_owned()),
        Just("data[1]".to_owned()),
        Just("id".to_owned()),
        Just("phone".to_owned()),
        Just("status".to_owned()),
        Just("err".to_owned()),
        Just("mes".to_owned()),
        Just("ts".to_owned()),
        Just("extendStatus".to_owned()),
        Just("MessageSid".to_owned()),
        Just("MessageStatus".to_owned()),
        Just("SmsStatus".to_owned()),
        Just("ErrorCode".to_owned()),
        Just("From".to_owned()),
        Just("To".to_owned()),
        Just("Body".to_owned()),
        Just("RawDlrDoneDate".to_owned()),
        Just("OptOutType".to_owned()),
        "\\PC{0,8}",
    ];
    let value = prop_oneof![
        Just("sms_status\n000000-1\n103".to_owned()),
        Just("sms_status\n\n".to_owned()),
        Just("received".to_owned()),
        Just("failed".to_owned()),
        Just("21610".to_owned()),
        Just("+79123456789".to_owned()),
        Just("-3".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("2413311530".to_owned()),
        "\\PC{0,16}",
    ];
    proptest::collection::vec((key, value), 0..8).prop_map(|pairs| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512),
                                   url in proptest::option::of("\\PC{0,40}"),
                                   sig in proptest::option::of("[A-Za-z0-9+/=]{0,40}")) {
        run_all(&body, url.as_deref(), sig.as_deref());
    }

    #[test]
    fn form_like_bodies_never_panic(body in formish(),
                                    url in proptest::option::of(prop_oneof![
                                        Just("https://a.example/cb?x=1".to_owned()),
                                        Just("http://a.example:80".to_owned()),
                                        Just("https://a.example/cb?bodySHA256=00".to_owned()),
                                        Just("https://[::1]:443/x".to_owned()),
                                        "\\PC{0,30}",
                                    ])) {
        run_all(body.as_bytes(), url.as_deref(), Some("bm90IGEgc2lnbmF0dXJl"));
        run_all(b"", url.as_deref(), None);
    }

    #[test]
    fn json_like_bodies_never_panic(id in any::<i64>(), status in any::<i64>(), word in "\\PC{0,10}") {
        let body = serde_json::json!({"data": [{"id": id, "status": status, "extendStatus": word, "dateAnswer": status}]});
        run_all(body.to_string().as_bytes(), None, None);
        let body = serde_json::json!({"id": word, "status": word});
        run_all(body.to_string().as_bytes(), None, None);
    }
}
