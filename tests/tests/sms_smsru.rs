//! SMS.ru against the fake server: the form it sends, receipts, error codes, batched polling.

use std::time::Duration;

use messaging::sms::smsru::SmsRuChannel;
use messaging::sms::{SmsOptions, StatusPoller, Transliteration};
use messaging::webhook::{WebhookHandler, WebhookRequest};
use messaging::{
    Address, Channel, ChannelExt, Content, DeliveryStatus, ErrorKind, Event, OutboundMessage,
    Phone, ProviderMessageId, Purpose,
};
use messaging_tests::sms::{Failure, FakeSms, Provider};

fn to(n: &str) -> Address {
    Address::Phone(Phone::parse(n).unwrap())
}

fn channel(fake: &FakeSms, opts: SmsOptions) -> SmsRuChannel {
    SmsRuChannel::new(opts, FakeSms::SMSRU_API_ID).base_url(fake.url())
}

#[tokio::test]
async fn send_posts_the_form_and_returns_id_segments_and_cost() {
    let fake = FakeSms::start().await;
    let sms = channel(
        &fake,
        SmsOptions::new("sms-ru")
            .sender("Clinic")
            .sandbox(true)
            .price_per_segment(3.0, "RUB"),
    );
    let text = "Анна, приём завтра в 10:00. ".repeat(3); // 84 UCS-2 units: 2 segments
    let r = sms.send_text(to("+79123456789"), &text).await.unwrap();
    assert!(r.provider_message_id.as_str().starts_with("000000-"));
    assert_eq!(r.parts, 2);
    // SMS.ru said what it costs: that wins over the estimate.
    assert_eq!(r.cost.unwrap().amount, 3.5);

    let reqs = fake.requests_for(Provider::SmsRu);
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/sms/send");
    assert_eq!(req.field("api_id").as_deref(), Some(FakeSms::SMSRU_API_ID));
    assert_eq!(req.field("to").as_deref(), Some("79123456789"));
    assert_eq!(req.field("msg").as_deref(), Some(text.as_str()));
    assert_eq!(req.field("json").as_deref(), Some("1"));
    assert_eq!(req.field("from").as_deref(), Some("Clinic"));
    assert_eq!(req.field("test").as_deref(), Some("1"));
    assert_eq!(req.field("translit"), None);
    let sent = fake.sent();
    assert!(sent[0].test);
    assert_eq!(sent[0].sender.as_deref(), Some("Clinic"));
}

#[tokio::test]
async fn transliteration_policies() {
    let fake = FakeSms::start().await;
    let provider = channel(
        &fake,
        SmsOptions::new("sms-ru").transliteration(Transliteration::Provider),
    );
    provider
        .send_text(to("+79123456789"), "Привет")
        .await
        .unwrap();
    let local = channel(
        &fake,
        SmsOptions::new("sms-ru").transliteration(Transliteration::Always),
    );
    let r = local
        .send_text(to("+79123456789"), &"Приём завтра в 10:00. ".repeat(4))
        .await
        .unwrap();
    assert_eq!(r.parts, 1, "transliterated text fits one GSM-7 segment");
    let reqs = fake.requests_for(Provider::SmsRu);
    assert_eq!(reqs[0].field("translit").as_deref(), Some("1"));
    assert_eq!(reqs[0].field("msg").as_deref(), Some("Привет"));
    assert_eq!(reqs[1].field("translit"), None);
    assert!(
        reqs[1]
            .field("msg")
            .unwrap()
            .starts_with("Priem zavtra v 10:00.")
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_any_request() {
    let fake = FakeSms::start().await;
    let sms = channel(&fake, SmsOptions::new("sms-ru").max_segments(2));
    let e = sms.send_text(to("+79123456789"), "   ").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    let e = sms
        .send_text(to("+74951234567"), "hello")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "a landline");
    let e = sms
        .send_text(Address::Telegram(42), "hello")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    let e = sms
        .send_text(to("+79123456789"), &"я".repeat(300))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent, "5 segments > 2");
    // The SMS override is what counts.
    let msg = OutboundMessage::new(
        to("+79123456789"),
        Content::text("long Telegram text").with_override(messaging::ChannelKind::Sms, ""),
        Purpose::Service,
    );
    assert_eq!(
        sms.send(&msg).await.unwrap_err().kind(),
        ErrorKind::InvalidContent
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn send_error_codes_map_to_kinds() {
    let fake = FakeSms::start().await;
    let sms = channel(&fake, SmsOptions::new("sms-ru"));
    for (code, kind) in [
        (201, ErrorKind::ChannelDown),
        (204, ErrorKind::ChannelDown),
        (202, ErrorKind::Unreachable),
        (207, ErrorKind::Unreachable),
        (220, ErrorKind::Temporary),
        (500, ErrorKind::Temporary),
        (231, ErrorKind::RateLimited),
    ] {
        fake.fail_next(Provider::SmsRu, Failure::Error(code));
        let e = sms.send_text(to("+79123456789"), "hi").await.unwrap_err();
        assert_eq!(e.kind(), kind, "{code}");
        assert_eq!(e.provider_code(), Some(code.to_string().as_str()));
    }
    // A wrong api_id is the provider's 200.
    let bad = SmsRuChannel::new(SmsOptions::new("x"), "wrong").base_url(fake.url());
    let e = bad.send_text(to("+79123456789"), "hi").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChannelDown);
    assert_eq!(e.provider_code(), Some("200"));
}

#[tokio::test]
async fn rate_limit_enforced_by_the_fake_reads_as_rate_limited() {
    let fake = FakeSms::start().await;
    fake.rate_limit(Provider::SmsRu, 2, Duration::from_secs(60));
    let sms = channel(&fake, SmsOptions::new("sms-ru"));
    sms.send_text(to("+79123456789"), "1").await.unwrap();
    sms.send_text(to("+79123456789"), "2").await.unwrap();
    let e = sms.send_text(to("+79123456789"), "3").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(60)));
}

#[tokio::test]
async fn polling_is_batched_by_100_and_maps_codes() {
    let fake = FakeSms::start().await;
    let sms = channel(
        &fake,
        SmsOptions::new("sms-ru").poll_interval(Duration::from_millis(20)),
    );
    let r = sms.send_text(to("+79123456789"), "hi").await.unwrap();
    let id = r.provider_message_id.clone();
    fake.set_status(Provider::SmsRu, id.as_str(), "103");
    let mut ids: Vec<ProviderMessageId> = (0..149)
        .map(|i| ProviderMessageId::new(format!("999999-{i}")))
        .collect();
    ids.push(id.clone());
    let t0 = std::time::Instant::now();
    let events = sms.poll_statuses(&ids).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(20), "paced");
    let status_reqs: Vec<_> = fake
        .requests_for(Provider::SmsRu)
        .into_iter()
        .filter(|r| r.path == "/sms/status")
        .collect();
    assert_eq!(status_reqs.len(), 2);
    assert_eq!(
        status_reqs[0].field("sms_id").unwrap().split(',').count(),
        100
    );
    assert_eq!(events.len(), 150);
    let ours = events
        .iter()
        .find_map(|e| match e {
            Event::Delivery(d) if d.provider_message_id == id => Some(d),
            _ => None,
        })
        .unwrap();
    assert_eq!(ours.status, DeliveryStatus::Delivered);
    assert_eq!(ours.channel_id.as_ref().unwrap().as_str(), "sms-ru");
    let unknown = events
        .iter()
        .filter(
            |e| matches!(e, Event::Delivery(d) if d.error.as_ref().is_some_and(|x| x.code == "-1")),
        )
        .count();
    assert_eq!(unknown, 149);
}

#[tokio::test]
async fn every_status_code_through_the_status_endpoint() {
    let fake = FakeSms::start().await;
    let sms = channel(
        &fake,
        SmsOptions::new("sms-ru").poll_interval(Duration::ZERO),
    );
    let r = sms.send_text(to("+79123456789"), "hi").await.unwrap();
    let id = r.provider_message_id;
    for (code, status) in [
        ("100", DeliveryStatus::Accepted),
        ("101", DeliveryStatus::Accepted),
        ("102", DeliveryStatus::Sent),
        ("103", DeliveryStatus::Delivered),
        ("104", DeliveryStatus::Failed),
        ("105", DeliveryStatus::Failed),
        ("106", DeliveryStatus::Failed),
        ("107", DeliveryStatus::Failed),
        ("108", DeliveryStatus::Failed),
        ("110", DeliveryStatus::Read),
        ("150", DeliveryStatus::Failed),
        ("123", DeliveryStatus::Accepted), // unknown: kept raw
    ] {
        fake.set_status(Provider::SmsRu, id.as_str(), code);
        let ev = sms.poll_statuses(std::slice::from_ref(&id)).await.unwrap();
        let Event::Delivery(d) = &ev[0] else { panic!() };
        assert_eq!(d.status, status, "{code}");
        if status == DeliveryStatus::Failed || code == "123" {
            assert_eq!(d.error.as_ref().unwrap().code, code);
        }
    }
}

#[tokio::test]
async fn callback_reply_is_100() {
    let fake = FakeSms::start().await;
    let sms = channel(&fake, SmsOptions::new("sms-ru"));
    let h = sms.webhook();
    let headers = http::HeaderMap::new();
    let body = "data%5B0%5D=sms_status%0A000000-10000001%0A103%0A1794000000";
    let ev = h
        .verify_and_parse(&WebhookRequest::post(&headers, body.as_bytes()))
        .unwrap();
    let Event::Delivery(d) = &ev[0] else { panic!() };
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.channel_id.as_ref().unwrap().as_str(), "sms-ru");
    assert_eq!(h.reply().body, "100");
    assert_eq!(h.reply().status, 200);
}

#[tokio::test]
async fn receipts_and_polled_reports_are_dated_by_the_injected_clock() {
    use messaging::{Clock, ManualClock};
    let fake = FakeSms::start().await;
    let clock = ManualClock::at_unix(1_700_000_000);
    let sms = channel(
        &fake,
        SmsOptions::new("sms-ru")
            .poll_interval(Duration::ZERO)
            .clock(std::sync::Arc::new(clock.clone())),
    );
    let r = sms.send_text(to("+79123456789"), "hi").await.unwrap();
    assert_eq!(r.accepted_at, clock.now());
    // `sms/status` says no time: the report is as of the clock's now.
    clock.advance(Duration::from_secs(90));
    fake.set_status(Provider::SmsRu, r.provider_message_id.as_str(), "103");
    let ev = sms
        .poll_statuses(std::slice::from_ref(&r.provider_message_id))
        .await
        .unwrap();
    let Event::Delivery(d) = &ev[0] else { panic!() };
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.at, clock.now());
    assert_eq!(d.at.timestamp(), 1_700_000_090);
}
