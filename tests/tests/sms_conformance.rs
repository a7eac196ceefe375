//! Every provider response in the conformance corpus (`sms/responses/`), served by the fake
//! server exactly as published, read through the public send and poll API.

use std::time::Duration;

use messaging::sms::smsaero::SmsAeroChannel;
use messaging::sms::smsru::SmsRuChannel;
use messaging::sms::twilio::TwilioChannel;
use messaging::sms::{SmsOptions, StatusPoller};
use messaging::testkit::conformance_files;
use messaging::{Address, ChannelExt, DeliveryStatus, ErrorKind, Event, Phone};
use messaging_tests::sms::{Failure, FakeSms, Provider};

fn to(n: &str) -> Address {
    Address::Phone(Phone::parse(n).unwrap())
}

#[tokio::test]
async fn every_response_file_is_read() {
    let files = conformance_files(env!("CARGO_MANIFEST_DIR"), "sms/responses", "json");
    if files.is_empty() {
        println!("skipped: no sms/responses in the conformance corpus");
        return;
    }
    let fake = FakeSms::start().await;
    let opts = || {
        SmsOptions::new("sms")
            .sender("+14155552345")
            .poll_interval(Duration::ZERO)
    };
    let smsru = SmsRuChannel::new(opts(), FakeSms::SMSRU_API_ID).base_url(fake.url());
    let aero = SmsAeroChannel::new(opts(), FakeSms::SMSAERO_EMAIL, FakeSms::SMSAERO_API_KEY)
        .base_url(fake.smsaero_url());
    let twilio = TwilioChannel::new(
        opts(),
        FakeSms::TWILIO_ACCOUNT_SID,
        FakeSms::TWILIO_AUTH_TOKEN,
    )
    .base_url(fake.url());
    let ru_phone = to("+79251234567");
    let mut seen = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read_to_string(path).unwrap();
        let serve =
            |p: Provider, status: u16| fake.fail_next(p, Failure::Http(status, body.clone()));
        match name.as_str() {
            "smsru_send_ok.json" => {
                serve(Provider::SmsRu, 200);
                let r = smsru.send_text(ru_phone.clone(), "hi").await.unwrap();
                assert_eq!(r.provider_message_id.as_str(), "abc123");
            }
            "smsru_send_string_balance_padded_key.json" => {
                // Accepted, but without sms_id: a receipt all the same (never a resend).
                serve(Provider::SmsRu, 200);
                let r = smsru.send_text(ru_phone.clone(), "hi").await.unwrap();
                assert!(
                    r.provider_message_id
                        .as_str()
                        .starts_with("smsru-noid-79251234567")
                );
            }
            "smsru_error_invalid_api_id.json" => {
                serve(Provider::SmsRu, 200);
                let e = smsru.send_text(ru_phone.clone(), "hi").await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ChannelDown);
                assert_eq!(e.provider_code(), Some("200"));
                assert!(e.message().contains("Invalid api_id"));
            }
            "smsru_status_delivered.json" => {
                serve(Provider::SmsRu, 200);
                let ev = smsru
                    .poll_statuses(&["000000-000001".into()])
                    .await
                    .unwrap();
                let Event::Delivery(d) = &ev[0] else { panic!() };
                assert_eq!(d.status, DeliveryStatus::Delivered);
                assert_eq!(d.cost.as_ref().unwrap().amount, 0.5);
            }
            "smsru_status_mixed_not_found.json" => {
                serve(Provider::SmsRu, 200);
                let ids = ["000000-000001".into(), "000000-000002".into()];
                let ev = smsru.poll_statuses(&ids).await.unwrap();
                assert_eq!(ev.len(), 2);
                for e in &ev {
                    let Event::Delivery(d) = e else { panic!() };
                    match d.provider_message_id.as_str() {
                        "000000-000001" => assert_eq!(d.status, DeliveryStatus::Delivered),
                        "000000-000002" => {
                            assert_eq!(d.status, DeliveryStatus::Failed);
                            let err = d.error.as_ref().unwrap();
                            assert_eq!(err.code, "-1");
                            assert_eq!(err.message, "Message not found");
                        }
                        other => panic!("{other}"),
                    }
                }
            }
            "smsaero_send_ok.json" | "smsaero_send_multiple_ok.json" => {
                serve(Provider::SmsAero, 200);
                let r = aero
                    .send_text(to("+79990000000"), "Test text")
                    .await
                    .unwrap();
                assert_eq!(r.provider_message_id.as_str(), "5");
                assert_eq!(r.cost.unwrap().amount, 2.2);
            }
            "smsaero_auth_error.json" => {
                serve(Provider::SmsAero, 401);
                let e = aero.send_text(to("+79990000000"), "x").await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ChannelDown);
                // The same body with 200 still reads as an auth failure.
                serve(Provider::SmsAero, 200);
                let e = aero.send_text(to("+79990000000"), "x").await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ChannelDown);
            }
            "smsaero_send_validation_error.json" => {
                serve(Provider::SmsAero, 400);
                let e = aero.send_text(to("+79990000000"), "x").await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Unreachable);
                assert!(e.message().contains("number"));
            }
            "twilio_error_legacy_20001.json" | "twilio_error_rfc9457.json" => {
                serve(Provider::Twilio, 400);
                let e = twilio.send_text(to("+14155552345"), "x").await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Unexpected);
                assert_eq!(e.provider_code(), Some("20001"));
                if name.contains("rfc9457") {
                    assert!(e.message().contains("PhoneNumber"), "{e}");
                }
            }
            "twilio_error_legacy_21211_minimal.json" => {
                serve(Provider::Twilio, 400);
                let e = twilio.send_text(to("+14155552345"), "x").await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Unreachable);
                assert_eq!(e.provider_code(), Some("21211"));
            }
            "twilio_message_create_queued.json" | "twilio_message_create_sent.json" => {
                serve(Provider::Twilio, 201);
                let r = twilio
                    .send_text(to("+14155552345"), "Hello! 👍")
                    .await
                    .unwrap();
                assert_eq!(
                    r.provider_message_id.as_str(),
                    "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                );
                assert_eq!(r.parts, 1);
                // And the same resource read by polling.
                serve(Provider::Twilio, 200);
                let ev = twilio
                    .poll_statuses(std::slice::from_ref(&r.provider_message_id))
                    .await
                    .unwrap();
                let Event::Delivery(d) = &ev[0] else { panic!() };
                let want = if name.contains("queued") {
                    DeliveryStatus::Accepted
                } else {
                    DeliveryStatus::Sent
                };
                assert_eq!(d.status, want);
                assert_eq!(d.recipient.as_deref(), Some("+14155552345"));
            }
            other => panic!("a new response file {other}: add its expectations"),
        }
        seen += 1;
    }
    assert_eq!(seen, files.len());
}
