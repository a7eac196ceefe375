//! A provider outage must be known quickly, after one request, within the short request
//! timeout: 5xx and refused connections are `Temporary` (nothing was sent); a timeout or a
//! connection dropped once it was up is `OutcomeUnknown` (the request may have been taken: the
//! step's policy waits or resends marked as a possible duplicate, never resends blindly).

use std::sync::Arc;
use std::time::{Duration, Instant};

use messaging::sms::SmsOptions;
use messaging::sms::smsaero::SmsAeroChannel;
use messaging::sms::smsc::{SmscAuth, SmscChannel};
use messaging::sms::smsru::SmsRuChannel;
use messaging::sms::twilio::TwilioChannel;
use messaging::{Address, ChannelExt, DynChannel, ErrorKind, Phone};
use messaging_tests::sms::{Failure, FakeSms, Provider};

const TIMEOUT: Duration = Duration::from_millis(300);

fn to() -> Address {
    Address::Phone(Phone::parse("+447911123456").unwrap())
}

fn channels(base: &str, aero_base: &str) -> Vec<(Provider, DynChannel)> {
    let opts = |id: &str| SmsOptions::new(id).timeout(TIMEOUT).sender("+15017122661");
    let list: Vec<(Provider, DynChannel)> = vec![
        (
            Provider::SmsRu,
            Arc::new(SmsRuChannel::new(opts("sms-ru"), FakeSms::SMSRU_API_ID).base_url(base)),
        ),
        (
            Provider::Smsc,
            Arc::new(
                SmscChannel::new(
                    opts("sms-smsc"),
                    SmscAuth::login(FakeSms::SMSC_LOGIN, FakeSms::SMSC_PASSWORD),
                )
                .base_url(base),
            ),
        ),
        (
            Provider::SmsAero,
            Arc::new(
                SmsAeroChannel::new(
                    opts("sms-aero"),
                    FakeSms::SMSAERO_EMAIL,
                    FakeSms::SMSAERO_API_KEY,
                )
                .base_url(aero_base),
            ),
        ),
        (
            Provider::Twilio,
            Arc::new(
                TwilioChannel::new(
                    opts("sms-twilio"),
                    FakeSms::TWILIO_ACCOUNT_SID,
                    FakeSms::TWILIO_AUTH_TOKEN,
                )
                .base_url(base),
            ),
        ),
    ];
    list
}

#[tokio::test]
async fn http_503_is_temporary_after_one_request() {
    let fake = FakeSms::start().await;
    for (p, ch) in channels(&fake.url(), &fake.smsaero_url()) {
        fake.outage(p, true);
        let before = fake.requests_for(p).len();
        let e = ch.send_text(to(), "hi").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Temporary, "{p:?}: {e}");
        assert_eq!(
            fake.requests_for(p).len(),
            before + 1,
            "{p:?}: no internal retry"
        );
        fake.outage(p, false);
        ch.send_text(to(), "back").await.unwrap();
    }
}

#[tokio::test]
async fn a_hanging_provider_times_out_quickly() {
    let fake = FakeSms::start().await;
    for (p, ch) in channels(&fake.url(), &fake.smsaero_url()) {
        fake.fail_next(p, Failure::Delay(Duration::from_secs(30)));
        let t0 = Instant::now();
        let e = ch.send_text(to(), "hi").await.unwrap_err();
        let took = t0.elapsed();
        assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{p:?}");
        assert!(e.message().contains("timed out"), "{p:?}: {e}");
        assert!(took < Duration::from_secs(3), "{p:?} took {took:?}");
    }
}

#[tokio::test]
async fn a_dropped_connection_is_an_unknown_outcome() {
    let fake = FakeSms::start().await;
    for (p, ch) in channels(&fake.url(), &fake.smsaero_url()) {
        fake.fail_next(p, Failure::DropConnection);
        let e = ch.send_text(to(), "hi").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{p:?}: {e}");
    }
}

#[tokio::test]
async fn connections_dropped_on_accept_are_an_unknown_outcome() {
    let fake = FakeSms::start().await;
    for (_, ch) in channels(&fake.url(), &fake.smsaero_url()) {
        // A fresh channel has a fresh client, so the request opens a new connection. Once the
        // connection was up the client cannot tell whether the request was read.
        fake.drop_next_connections(1);
        let e = ch.send_text(to(), "hi").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
    }
}

#[tokio::test]
async fn a_refused_connection_is_temporary_at_once() {
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let base = format!("http://{closed}");
    for (p, ch) in channels(&base, &format!("{base}/v2")) {
        let t0 = Instant::now();
        let e = ch.send_text(to(), "hi").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Temporary, "{p:?}");
        assert!(e.message().contains("connect"), "{p:?}: {e}");
        assert!(t0.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn two_sms_providers_are_two_channel_ids() {
    let fake = FakeSms::start().await;
    let all = channels(&fake.url(), &fake.smsaero_url());
    let ids: Vec<&str> = all.iter().map(|(_, c)| c.id().as_str()).collect();
    assert_eq!(ids, ["sms-ru", "sms-smsc", "sms-aero", "sms-twilio"]);
    // The primary is down; the backup still sends.
    fake.outage(Provider::SmsRu, true);
    let primary = &all[0].1;
    let backup = &all[1].1;
    assert_eq!(
        primary.send_text(to(), "hi").await.unwrap_err().kind(),
        ErrorKind::Temporary
    );
    let r = backup.send_text(to(), "hi").await.unwrap();
    assert!(r.provider_message_id.as_str().contains(':'));
    for (_, c) in &all {
        let caps = c.capabilities();
        assert_eq!(caps.text_unit, messaging::TextUnit::SmsSegments);
        assert_eq!(caps.max_text_len, messaging::sms::DEFAULT_MAX_SEGMENTS);
        assert_eq!(caps.strongest_evidence, messaging::Evidence::Delivered);
        assert!(caps.can_start_conversation);
        assert_eq!(c.kind(), messaging::ChannelKind::Sms);
    }
}
