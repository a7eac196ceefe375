//! Twilio against the fake server: the form, Basic auth, magic numbers, polling, webhooks.

use std::time::Duration;

use messaging::sms::twilio::{TwilioChannel, compute_signature, magic};
use messaging::sms::{SmsOptions, StatusPoller};
use messaging::webhook::{WebhookError, WebhookHandler, WebhookRequest};
use messaging::{Address, ChannelExt, DeliveryStatus, ErrorKind, Event, Phone};
use messaging_tests::sms::{Failure, FakeSms, Provider};

fn to(n: &str) -> Address {
    Address::Phone(Phone::parse(n).unwrap())
}

fn channel(fake: &FakeSms, opts: SmsOptions) -> TwilioChannel {
    TwilioChannel::new(
        opts,
        FakeSms::TWILIO_ACCOUNT_SID,
        FakeSms::TWILIO_AUTH_TOKEN,
    )
    .base_url(fake.url())
}

#[tokio::test]
async fn send_posts_the_form_with_basic_auth() {
    let fake = FakeSms::start().await;
    let sms = channel(
        &fake,
        SmsOptions::new("sms-twilio")
            .sender("+15017122661")
            .callback_url("https://clinic.example.com/twilio"),
    );
    let r = sms.send_text(to("+447911123456"), "Hello!").await.unwrap();
    assert!(r.provider_message_id.as_str().starts_with("SM"));
    assert_eq!(r.parts, 1);
    let req = &fake.requests_for(Provider::Twilio)[0];
    assert_eq!(
        req.path,
        format!(
            "/2010-04-01/Accounts/{}/Messages.json",
            FakeSms::TWILIO_ACCOUNT_SID
        )
    );
    assert_eq!(
        req.basic_auth(),
        Some((
            FakeSms::TWILIO_ACCOUNT_SID.to_owned(),
            FakeSms::TWILIO_AUTH_TOKEN.to_owned()
        ))
    );
    assert_eq!(req.field("To").as_deref(), Some("+447911123456"));
    assert_eq!(req.field("From").as_deref(), Some("+15017122661"));
    assert_eq!(req.field("Body").as_deref(), Some("Hello!"));
    assert_eq!(
        req.field("StatusCallback").as_deref(),
        Some("https://clinic.example.com/twilio")
    );
}

#[tokio::test]
async fn messaging_service_sender() {
    let fake = FakeSms::start().await;
    let sms = channel(&fake, SmsOptions::new("t").sender("MG0123456789abcdef"));
    sms.send_text(to("+447911123456"), "hi").await.unwrap();
    let req = &fake.requests_for(Provider::Twilio)[0];
    assert_eq!(
        req.field("MessagingServiceSid").as_deref(),
        Some("MG0123456789abcdef")
    );
    assert_eq!(req.field("From"), None);
    // No sender at all: refused before any request.
    let none = channel(&fake, SmsOptions::new("t"));
    let e = none.send_text(to("+447911123456"), "hi").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChannelDown);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn sandbox_magic_numbers_give_their_errors() {
    let fake = FakeSms::start().await;
    let sms = channel(
        &fake,
        SmsOptions::new("t").sender(magic::FROM_VALID).sandbox(true),
    );
    for (number, code, kind) in [
        (magic::TO_INVALID, "21211", ErrorKind::Unreachable),
        (magic::TO_UNROUTABLE, "21612", ErrorKind::Unreachable),
        (magic::TO_NO_PERMISSION, "21408", ErrorKind::Unreachable),
        (magic::TO_BLOCKLISTED, "21610", ErrorKind::Unreachable),
        (magic::TO_NOT_SMS_CAPABLE, "21614", ErrorKind::Unreachable),
    ] {
        let e = sms.send_text(to(number), "hi").await.unwrap_err();
        assert_eq!(
            (e.kind(), e.provider_code()),
            (kind, Some(code)),
            "{number}"
        );
    }
    for (from, code, kind) in [
        (magic::FROM_INVALID, "21212", ErrorKind::ChannelDown),
        (magic::FROM_NOT_OWNED, "21606", ErrorKind::ChannelDown),
        (magic::FROM_QUEUE_FULL, "21611", ErrorKind::RateLimited),
    ] {
        let s = channel(&fake, SmsOptions::new("t").sender(from).sandbox(true));
        let e = s.send_text(to("+447911123456"), "hi").await.unwrap_err();
        assert_eq!((e.kind(), e.provider_code()), (kind, Some(code)), "{from}");
    }
    // Without sandbox the magic (non-mobile) numbers are refused locally.
    let live = channel(&fake, SmsOptions::new("t").sender(magic::FROM_VALID));
    let before = fake.requests().len();
    let e = live
        .send_text(to(magic::TO_INVALID), "hi")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    assert_eq!(fake.requests().len(), before);
}

#[tokio::test]
async fn auth_and_rate_limit_errors() {
    let fake = FakeSms::start().await;
    let bad = TwilioChannel::new(
        SmsOptions::new("t").sender("+15017122661"),
        FakeSms::TWILIO_ACCOUNT_SID,
        "wrong-token",
    )
    .base_url(fake.url());
    let e = bad.send_text(to("+447911123456"), "hi").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChannelDown);
    assert_eq!(e.provider_code(), Some("20003"));

    fake.rate_limit(Provider::Twilio, 1, Duration::from_secs(60));
    let sms = channel(&fake, SmsOptions::new("t").sender("+15017122661"));
    sms.send_text(to("+447911123456"), "1").await.unwrap();
    let e = sms.send_text(to("+447911123456"), "2").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.provider_code(), Some("20429"));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));

    fake.rate_limit(Provider::Twilio, 100, Duration::from_secs(60));
    fake.fail_next(Provider::Twilio, Failure::Error(20500));
    let e = sms.send_text(to("+447911123456"), "3").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Temporary);
}

#[tokio::test]
async fn polling_maps_statuses_and_error_codes() {
    let fake = FakeSms::start().await;
    let sms = channel(
        &fake,
        SmsOptions::new("t")
            .sender("+15017122661")
            .poll_interval(Duration::ZERO),
    );
    let r = sms.send_text(to("+447911123456"), "hi").await.unwrap();
    let id = r.provider_message_id;
    for (status, want, kind) in [
        ("queued", DeliveryStatus::Accepted, None),
        ("sent", DeliveryStatus::Sent, None),
        ("delivered", DeliveryStatus::Delivered, None),
        ("read", DeliveryStatus::Read, None),
        (
            "undelivered:30003",
            DeliveryStatus::Failed,
            Some(ErrorKind::Unreachable),
        ),
        (
            "undelivered:30008",
            DeliveryStatus::Failed,
            Some(ErrorKind::Temporary),
        ),
        (
            "failed:30007",
            DeliveryStatus::Failed,
            Some(ErrorKind::InvalidContent),
        ),
        (
            "failed",
            DeliveryStatus::Failed,
            Some(ErrorKind::Unexpected),
        ),
    ] {
        fake.set_status(Provider::Twilio, id.as_str(), status);
        let ev = sms.poll_statuses(std::slice::from_ref(&id)).await.unwrap();
        let Event::Delivery(d) = &ev[0] else { panic!() };
        assert_eq!(d.status, want, "{status}");
        assert_eq!(d.error.as_ref().and_then(|e| e.kind), kind, "{status}");
        assert_eq!(d.recipient.as_deref(), Some("+447911123456"));
    }
    let reqs = fake.requests_for(Provider::Twilio);
    assert_eq!(reqs.last().unwrap().method, "GET");
    assert!(
        reqs.last()
            .unwrap()
            .path
            .ends_with(&format!("/Messages/{id}.json"))
    );
}

#[tokio::test]
async fn signed_status_callback_round_trip() {
    let fake = FakeSms::start().await;
    let sms = channel(&fake, SmsOptions::new("sms-twilio").sender("+15017122661"));
    let r = sms.send_text(to("+447911123456"), "hi").await.unwrap();
    let url = "https://clinic.example.com/twilio/status";
    let params = [
        ("MessageSid", r.provider_message_id.as_str()),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("To", "+447911123456"),
    ];
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let sig = compute_signature(FakeSms::TWILIO_AUTH_TOKEN, url, &params);
    let mut headers = http::HeaderMap::new();
    headers.insert("X-Twilio-Signature", sig.parse().unwrap());
    let h = sms.webhook();
    let ev = h
        .verify_and_parse(&WebhookRequest::post(&headers, body.as_bytes()).with_url(url))
        .unwrap();
    let Event::Delivery(d) = &ev[0] else { panic!() };
    assert_eq!(d.provider_message_id, r.provider_message_id);
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.error.as_ref().unwrap().code, "30003");
    assert_eq!(d.channel_id.as_ref().unwrap().as_str(), "sms-twilio");
    // Tampered, unsigned, wrong token.
    let tampered = body.replace("undelivered", "delivered");
    assert_eq!(
        h.verify(&WebhookRequest::post(&headers, tampered.as_bytes()).with_url(url)),
        Err(WebhookError::BadSignature)
    );
    let none = http::HeaderMap::new();
    assert!(matches!(
        h.verify(&WebhookRequest::post(&none, body.as_bytes()).with_url(url)),
        Err(WebhookError::MissingSignature(_))
    ));
    // The URL the handler was configured with is used when the request has none.
    let configured =
        messaging::sms::twilio::TwilioWebhook::new(FakeSms::TWILIO_AUTH_TOKEN).url(url);
    assert!(
        configured
            .verify(&WebhookRequest::post(&headers, body.as_bytes()))
            .is_ok()
    );
}

#[tokio::test]
async fn status_callback_events_carry_the_clocks_instant() {
    use messaging::{Clock, ManualClock};
    let fake = FakeSms::start().await;
    let clock = ManualClock::at_unix(1_700_000_000);
    let sms = channel(
        &fake,
        SmsOptions::new("sms-twilio")
            .sender("+15017122661")
            .clock(std::sync::Arc::new(clock.clone())),
    );
    let r = sms.send_text(to("+447911123456"), "hi").await.unwrap();
    let url = "https://clinic.example.com/twilio/status";
    // The person sent STOP: a failed report and an opt-out, neither with a time in the form.
    let params = [
        ("MessageSid", r.provider_message_id.as_str()),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "21610"),
        ("To", "+447911123456"),
    ];
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut headers = http::HeaderMap::new();
    let sig = compute_signature(FakeSms::TWILIO_AUTH_TOKEN, url, &params);
    headers.insert("X-Twilio-Signature", sig.parse().unwrap());
    clock.advance(Duration::from_secs(30));
    let ev = sms
        .webhook()
        .verify_and_parse(&WebhookRequest::post(&headers, body.as_bytes()).with_url(url))
        .unwrap();
    assert_eq!(ev.len(), 2);
    for e in &ev {
        assert_eq!(e.at(), clock.now());
        assert_eq!(e.at().timestamp(), 1_700_000_030);
    }
}
