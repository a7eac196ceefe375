//! SMSC.ru against the fake server.

use std::time::Duration;

use messaging::sms::smsc::{SmscAuth, SmscChannel, split_message_id};
use messaging::sms::{SmsOptions, StatusPoller, Transliteration};
use messaging::webhook::{WebhookHandler, WebhookRequest};
use messaging::{Address, ChannelExt, DeliveryStatus, ErrorKind, Event, Phone};
use messaging_tests::sms::{Failure, FakeSms, Provider};

fn to(n: &str) -> Address {
    Address::Phone(Phone::parse(n).unwrap())
}

fn channel(fake: &FakeSms, opts: SmsOptions) -> SmscChannel {
    SmscChannel::new(
        opts,
        SmscAuth::login(FakeSms::SMSC_LOGIN, FakeSms::SMSC_PASSWORD),
    )
    .base_url(fake.url())
}

#[tokio::test]
async fn send_posts_the_form_and_builds_a_pollable_id() {
    let fake = FakeSms::start().await;
    let sms = channel(
        &fake,
        SmsOptions::new("sms-smsc")
            .sender("Clinic")
            .transliteration(Transliteration::Provider),
    );
    let r = sms.send_text(to("+79123456789"), "Привет").await.unwrap();
    let (id, phone) = split_message_id(r.provider_message_id.as_str()).unwrap();
    assert!(!id.is_empty());
    assert_eq!(phone, "79123456789");
    assert_eq!(r.parts, 1);
    assert_eq!(r.cost.unwrap().amount, 2.5);
    let req = &fake.requests_for(Provider::Smsc)[0];
    assert_eq!(req.path, "/sys/send.php");
    assert_eq!(req.field("login").as_deref(), Some(FakeSms::SMSC_LOGIN));
    assert_eq!(req.field("psw").as_deref(), Some(FakeSms::SMSC_PASSWORD));
    assert_eq!(req.field("phones").as_deref(), Some("+79123456789"));
    assert_eq!(req.field("mes").as_deref(), Some("Привет"));
    assert_eq!(req.field("fmt").as_deref(), Some("3"));
    assert_eq!(req.field("charset").as_deref(), Some("utf-8"));
    assert_eq!(req.field("sender").as_deref(), Some("Clinic"));
    assert_eq!(req.field("translit").as_deref(), Some("1"));
}

#[tokio::test]
async fn error_codes_map_to_kinds() {
    let fake = FakeSms::start().await;
    let sms = channel(&fake, SmsOptions::new("sms-smsc"));
    for (code, kind) in [
        (1, ErrorKind::Unexpected),
        (2, ErrorKind::ChannelDown),
        (3, ErrorKind::ChannelDown),
        (4, ErrorKind::RateLimited),
        (5, ErrorKind::InvalidContent),
        (6, ErrorKind::InvalidContent),
        (7, ErrorKind::Unreachable),
        (8, ErrorKind::Unreachable),
        (9, ErrorKind::RateLimited),
    ] {
        fake.fail_next(Provider::Smsc, Failure::Error(code));
        let e = sms.send_text(to("+79123456789"), "hi").await.unwrap_err();
        assert_eq!(e.kind(), kind, "{code}");
        assert_eq!(e.provider_code(), Some(code.to_string().as_str()));
    }
    let bad = SmscChannel::new(SmsOptions::new("x"), SmscAuth::login("clinic", "wrong"))
        .base_url(fake.url());
    let e = bad.send_text(to("+79123456789"), "hi").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChannelDown);
}

#[tokio::test]
async fn rate_limit_is_error_code_9() {
    let fake = FakeSms::start().await;
    fake.rate_limit(Provider::Smsc, 1, Duration::from_secs(60));
    let sms = channel(&fake, SmsOptions::new("sms-smsc"));
    sms.send_text(to("+79123456789"), "1").await.unwrap();
    let e = sms.send_text(to("+79123456789"), "2").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.provider_code(), Some("9"));
}

#[tokio::test]
async fn polling_maps_every_status_code() {
    let fake = FakeSms::start().await;
    let sms = channel(
        &fake,
        SmsOptions::new("sms-smsc").poll_interval(Duration::ZERO),
    );
    let r = sms.send_text(to("+79123456789"), "hi").await.unwrap();
    let id = r.provider_message_id;
    for (code, status) in [
        ("-3", DeliveryStatus::Failed),
        ("-2", DeliveryStatus::Failed),
        ("-1", DeliveryStatus::Accepted),
        ("0", DeliveryStatus::Sent),
        ("1", DeliveryStatus::Delivered),
        ("2", DeliveryStatus::Read),
        ("3", DeliveryStatus::Failed),
        ("4", DeliveryStatus::Read),
        ("20:1", DeliveryStatus::Failed),
        ("22", DeliveryStatus::Failed),
        ("23", DeliveryStatus::Failed),
        ("24", DeliveryStatus::Failed),
        ("25", DeliveryStatus::Failed),
        ("21", DeliveryStatus::Accepted), // unknown: kept raw
    ] {
        fake.set_status(Provider::Smsc, id.as_str(), code);
        let ev = sms.poll_statuses(std::slice::from_ref(&id)).await.unwrap();
        let Event::Delivery(d) = &ev[0] else { panic!() };
        assert_eq!(d.status, status, "{code}");
        assert_eq!(d.provider_message_id, id);
        let raw = code.split(':').next().unwrap();
        if status == DeliveryStatus::Failed || raw == "21" {
            assert_eq!(d.error.as_ref().unwrap().code, raw, "{code}");
        }
        if code == "20:1" {
            assert!(d.error.as_ref().unwrap().message.contains("err 1"));
        }
    }
    let req = fake
        .requests_for(Provider::Smsc)
        .into_iter()
        .find(|r| r.path == "/sys/status.php")
        .unwrap();
    assert_eq!(req.field("phone").as_deref(), Some("79123456789"));
    assert_eq!(req.field("fmt").as_deref(), Some("3"));
}

#[tokio::test]
async fn callback_report_matches_the_receipt_id() {
    let fake = FakeSms::start().await;
    let sms = channel(&fake, SmsOptions::new("sms-smsc"));
    let r = sms.send_text(to("+79123456789"), "hi").await.unwrap();
    let (id, _) = split_message_id(r.provider_message_id.as_str()).unwrap();
    let body = format!("id={id}&phone=79123456789&status=1&err=0");
    let headers = http::HeaderMap::new();
    let ev = sms
        .webhook()
        .verify_and_parse(&WebhookRequest::post(&headers, body.as_bytes()))
        .unwrap();
    let Event::Delivery(d) = &ev[0] else { panic!() };
    assert_eq!(d.provider_message_id, r.provider_message_id);
    assert_eq!(d.status, DeliveryStatus::Delivered);
}
