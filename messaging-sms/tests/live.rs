//! Live tests against the real providers. Each runs only when its credentials are in the
//! environment and prints that it was skipped otherwise. They use the sandboxes where the
//! provider has one, so nothing is charged:
//!
//! | provider | variables | what runs |
//! |---|---|---|
//! | SMS.ru | `SMSRU_API_ID`, `SMS_TEST_PHONE` | send with `test=1`, then poll the status |
//! | SMSC.ru | `SMSC_LOGIN`, `SMSC_PASSWORD`, `SMS_TEST_PHONE` | a status request (checks the credentials, sends nothing); a real send only with `SMSC_LIVE_SEND=1` |
//! | SMS Aero | `SMSAERO_EMAIL`, `SMSAERO_API_KEY`, `SMS_TEST_PHONE` | `sms/testsend` and `sms/teststatus` |
//! | Twilio | `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`, `TWILIO_FROM` (`SMS_TEST_PHONE`) | a send; with test credentials and `TWILIO_FROM=+15005550006`, also the magic-number errors |

#![allow(unused_imports)] // each provider's test is behind its feature

use messaging_core::{Address, ChannelExt, ErrorKind, Phone};
use messaging_sms::{SmsOptions, StatusPoller};

#[allow(dead_code)]
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[allow(dead_code)]
fn phone(default: Option<&str>) -> Option<Address> {
    let raw = env("SMS_TEST_PHONE").or(default.map(str::to_owned))?;
    Some(Address::Phone(
        Phone::parse(&raw).expect("SMS_TEST_PHONE is a phone number"),
    ))
}

#[cfg(feature = "smsru")]
#[tokio::test]
async fn live_smsru_sandbox_send_and_status() {
    let (Some(api_id), Some(to)) = (env("SMSRU_API_ID"), phone(None)) else {
        println!("skipped: set SMSRU_API_ID and SMS_TEST_PHONE to run the SMS.ru live test");
        return;
    };
    let sms = messaging_sms::smsru::SmsRuChannel::new(
        SmsOptions::new("sms-ru-live").sandbox(true),
        api_id,
    );
    let r = sms.send_text(to, "messaging-sms live test").await.unwrap();
    println!(
        "SMS.ru accepted {} ({} segment(s))",
        r.provider_message_id, r.parts
    );
    let ev = sms.poll_statuses(&[r.provider_message_id]).await.unwrap();
    println!("SMS.ru status: {ev:?}");
}

#[cfg(feature = "smsc")]
#[tokio::test]
async fn live_smsc_credentials_and_optional_send() {
    use messaging_sms::smsc::{SmscAuth, SmscChannel, message_id};
    let (Some(login), Some(password), Some(to)) =
        (env("SMSC_LOGIN"), env("SMSC_PASSWORD"), phone(None))
    else {
        println!(
            "skipped: set SMSC_LOGIN, SMSC_PASSWORD and SMS_TEST_PHONE to run the SMSC.ru live test"
        );
        return;
    };
    let sms = SmscChannel::new(
        SmsOptions::new("sms-smsc-live"),
        SmscAuth::login(login, password),
    );
    let Address::Phone(p) = &to else {
        unreachable!()
    };
    match sms
        .poll_statuses(&[message_id("1", p.as_str()).into()])
        .await
    {
        Ok(ev) => println!("SMSC.ru status of a made-up id: {ev:?}"),
        Err(e) => assert_ne!(e.kind(), ErrorKind::ChannelDown, "credentials refused: {e}"),
    }
    if env("SMSC_LIVE_SEND").as_deref() == Some("1") {
        let r = sms.send_text(to, "messaging-sms live test").await.unwrap();
        println!("SMSC.ru accepted {}", r.provider_message_id);
    } else {
        println!("SMSC.ru send skipped (no per-request sandbox; set SMSC_LIVE_SEND=1 to send)");
    }
}

#[cfg(feature = "smsaero")]
#[tokio::test]
async fn live_smsaero_testsend_and_teststatus() {
    let (Some(email), Some(key), Some(to)) =
        (env("SMSAERO_EMAIL"), env("SMSAERO_API_KEY"), phone(None))
    else {
        println!(
            "skipped: set SMSAERO_EMAIL, SMSAERO_API_KEY and SMS_TEST_PHONE to run the SMS Aero live test"
        );
        return;
    };
    let sms = messaging_sms::smsaero::SmsAeroChannel::new(
        SmsOptions::new("sms-aero-live").sandbox(true),
        email,
        key,
    );
    let r = sms.send_text(to, "messaging-sms live test").await.unwrap();
    println!("SMS Aero (testsend) accepted {}", r.provider_message_id);
    let ev = sms.poll_statuses(&[r.provider_message_id]).await.unwrap();
    println!("SMS Aero status: {ev:?}");
}

#[cfg(feature = "twilio")]
#[tokio::test]
async fn live_twilio_send_and_magic_numbers() {
    use messaging_sms::twilio::{TwilioChannel, magic};
    let (Some(sid), Some(token), Some(from)) = (
        env("TWILIO_ACCOUNT_SID"),
        env("TWILIO_AUTH_TOKEN"),
        env("TWILIO_FROM"),
    ) else {
        println!(
            "skipped: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM to run the Twilio live test"
        );
        return;
    };
    let test_credentials = from == magic::FROM_VALID;
    let sms = TwilioChannel::new(
        SmsOptions::new("sms-twilio-live")
            .sender(from)
            .sandbox(test_credentials),
        sid,
        token,
    );
    let Some(to) = phone(test_credentials.then_some("+14155552671")) else {
        println!("skipped: set SMS_TEST_PHONE for a live Twilio send");
        return;
    };
    let r = sms.send_text(to, "messaging-sms live test").await.unwrap();
    println!("Twilio accepted {}", r.provider_message_id);
    if test_credentials {
        let bad = Address::Phone(Phone::parse(magic::TO_INVALID).unwrap());
        let e = sms.send_text(bad, "x").await.unwrap_err();
        assert_eq!(e.provider_code(), Some("21211"));
        assert_eq!(e.kind(), ErrorKind::Unreachable);
    }
}
