//! SMS Aero against the fake server.

use std::time::Duration;

use messaging::sms::smsaero::SmsAeroChannel;
use messaging::sms::{SmsOptions, StatusPoller};
use messaging::{Address, ChannelExt, DeliveryStatus, ErrorKind, Event, Phone};
use messaging_tests::sms::{Failure, FakeSms, Provider};

fn to(n: &str) -> Address {
    Address::Phone(Phone::parse(n).unwrap())
}

fn channel(fake: &FakeSms, opts: SmsOptions) -> SmsAeroChannel {
    SmsAeroChannel::new(opts, FakeSms::SMSAERO_EMAIL, FakeSms::SMSAERO_API_KEY)
        .base_url(fake.smsaero_url())
}

#[tokio::test]
async fn send_posts_json_with_basic_auth() {
    let fake = FakeSms::start().await;
    let sms = channel(
        &fake,
        SmsOptions::new("sms-aero")
            .sender("Clinic")
            .callback_url("https://clinic.example.com/cb/aero"),
    );
    let r = sms.send_text(to("+79123456789"), "Приём").await.unwrap();
    assert_eq!(r.parts, 1);
    assert_eq!(r.cost.unwrap().amount, 2.2);
    let req = &fake.requests_for(Provider::SmsAero)[0];
    assert_eq!(req.path, "/v2/sms/send");
    assert_eq!(
        req.basic_auth(),
        Some((
            FakeSms::SMSAERO_EMAIL.to_owned(),
            FakeSms::SMSAERO_API_KEY.to_owned()
        ))
    );
    let body = req.json().unwrap();
    assert_eq!(body["number"], "79123456789");
    assert_eq!(body["text"], "Приём");
    assert_eq!(body["sign"], "Clinic");
    assert_eq!(body["callbackUrl"], "https://clinic.example.com/cb/aero");
    assert!(!fake.sent()[0].test);
}

#[tokio::test]
async fn sandbox_uses_testsend_and_teststatus() {
    let fake = FakeSms::start().await;
    let sms = channel(
        &fake,
        SmsOptions::new("sms-aero")
            .sandbox(true)
            .poll_interval(Duration::ZERO),
    );
    let r = sms.send_text(to("+79123456789"), "hi").await.unwrap();
    assert!(fake.sent()[0].test);
    assert_eq!(fake.sent()[0].sender.as_deref(), Some("SMS Aero"));
    fake.set_status(Provider::SmsAero, r.provider_message_id.as_str(), "1");
    let ev = sms
        .poll_statuses(std::slice::from_ref(&r.provider_message_id))
        .await
        .unwrap();
    assert!(matches!(&ev[0], Event::Delivery(d) if d.status == DeliveryStatus::Delivered));
    let paths: Vec<_> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v2/sms/testsend", "/v2/sms/teststatus"]);
}

#[tokio::test]
async fn polling_maps_every_status_code() {
    let fake = FakeSms::start().await;
    let sms = channel(
        &fake,
        SmsOptions::new("sms-aero").poll_interval(Duration::ZERO),
    );
    let r = sms.send_text(to("+79123456789"), "hi").await.unwrap();
    let id = r.provider_message_id;
    for (code, status) in [
        ("0", DeliveryStatus::Accepted),
        ("1", DeliveryStatus::Delivered),
        ("2", DeliveryStatus::Failed),
        ("3", DeliveryStatus::Sent),
        ("4", DeliveryStatus::Sent),
        ("6", DeliveryStatus::Failed),
        ("8", DeliveryStatus::Accepted),
        ("7", DeliveryStatus::Accepted), // unknown: kept raw
    ] {
        fake.set_status(Provider::SmsAero, id.as_str(), code);
        let ev = sms.poll_statuses(std::slice::from_ref(&id)).await.unwrap();
        let Event::Delivery(d) = &ev[0] else { panic!() };
        assert_eq!(d.status, status, "{code}");
        assert_eq!(d.recipient.as_deref(), Some("79123456789"));
        if status == DeliveryStatus::Failed || code == "7" {
            assert_eq!(d.error.as_ref().unwrap().code, code);
        }
    }
    // An unknown id: the provider's 404.
    let e = sms.poll_statuses(&["424242".into()]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unexpected);
}

#[tokio::test]
async fn errors_map_to_kinds() {
    let fake = FakeSms::start().await;
    let sms = channel(&fake, SmsOptions::new("sms-aero"));
    for (code, kind) in [
        (401, ErrorKind::ChannelDown),
        (429, ErrorKind::RateLimited),
        (500, ErrorKind::Temporary),
        (503, ErrorKind::Temporary),
    ] {
        fake.fail_next(Provider::SmsAero, Failure::Error(code));
        let e = sms.send_text(to("+79123456789"), "hi").await.unwrap_err();
        assert_eq!(e.kind(), kind, "{code}");
    }
    let bad = SmsAeroChannel::new(SmsOptions::new("x"), FakeSms::SMSAERO_EMAIL, "wrong-key")
        .base_url(fake.smsaero_url());
    let e = bad.send_text(to("+79123456789"), "hi").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChannelDown);
    assert!(!format!("{e:?}").contains("wrong-key"));
}

#[tokio::test]
async fn rate_limit_is_http_429() {
    let fake = FakeSms::start().await;
    fake.rate_limit(Provider::SmsAero, 1, Duration::from_secs(60));
    let sms = channel(&fake, SmsOptions::new("sms-aero"));
    sms.send_text(to("+79123456789"), "1").await.unwrap();
    let e = sms.send_text(to("+79123456789"), "2").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
}
