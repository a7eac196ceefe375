//! Secrets never show: not in `Debug` of channels and handlers, not in errors (auth errors,
//! transport errors whose request carried the secret in its form body).

use std::time::Duration;

use messaging::sms::SmsOptions;
use messaging::sms::smsaero::SmsAeroChannel;
use messaging::sms::smsc::{SmscAuth, SmscChannel};
use messaging::sms::smsru::{SmsRuAuth, SmsRuChannel};
use messaging::sms::twilio::{TwilioChannel, TwilioWebhook};
use messaging::{Address, ChannelError, ChannelExt, Phone};
use messaging_tests::sms::{Failure, FakeSms, Provider};

const SECRET: &str = "S3CRET-never-print-me";

fn to() -> Address {
    Address::Phone(Phone::parse("+79123456789").unwrap())
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} leaks the secret: {text}");
}

fn error_text(e: &ChannelError) -> String {
    let mut s = format!("{e} {e:?}");
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(&format!(" {x} {x:?}"));
        src = x.source();
    }
    s
}

#[test]
fn debug_never_prints_secrets() {
    let opts = SmsOptions::new("sms");
    assert_clean(
        "smsru",
        &format!("{:?}", SmsRuChannel::new(opts.clone(), SECRET)),
    );
    assert_clean(
        "smsru login",
        &format!(
            "{:?}",
            SmsRuChannel::with_auth(
                opts.clone(),
                SmsRuAuth::Login {
                    login: "l".into(),
                    password: SECRET.to_owned().into()
                }
            )
        ),
    );
    assert_clean(
        "smsc",
        &format!(
            "{:?}",
            SmscChannel::new(opts.clone(), SmscAuth::login("l", SECRET))
        ),
    );
    assert_clean(
        "smsc key",
        &format!(
            "{:?}",
            SmscChannel::new(opts.clone(), SmscAuth::api_key(SECRET))
        ),
    );
    assert_clean(
        "smsaero",
        &format!("{:?}", SmsAeroChannel::new(opts.clone(), "a@b.c", SECRET)),
    );
    let tw = TwilioChannel::new(opts, "AC1", SECRET);
    assert_clean("twilio", &format!("{tw:?}"));
    assert_clean("twilio webhook", &format!("{:?}", tw.webhook()));
    assert_clean(
        "twilio webhook",
        &format!("{:?}", TwilioWebhook::new(SECRET)),
    );
}

#[tokio::test]
async fn auth_errors_do_not_carry_secrets() {
    let fake = FakeSms::start().await;
    let opts = SmsOptions::new("sms").sender("+15017122661");
    let e = SmsRuChannel::new(opts.clone(), SECRET)
        .base_url(fake.url())
        .send_text(to(), "hi")
        .await
        .unwrap_err();
    assert_clean("smsru", &error_text(&e));
    let e = SmscChannel::new(opts.clone(), SmscAuth::login("clinic", SECRET))
        .base_url(fake.url())
        .send_text(to(), "hi")
        .await
        .unwrap_err();
    assert_clean("smsc", &error_text(&e));
    let e = SmsAeroChannel::new(opts.clone(), FakeSms::SMSAERO_EMAIL, SECRET)
        .base_url(fake.smsaero_url())
        .send_text(to(), "hi")
        .await
        .unwrap_err();
    assert_clean("smsaero", &error_text(&e));
    let e = TwilioChannel::new(opts, FakeSms::TWILIO_ACCOUNT_SID, SECRET)
        .base_url(fake.url())
        .send_text(to(), "hi")
        .await
        .unwrap_err();
    assert_clean("twilio", &error_text(&e));
}

#[tokio::test]
async fn transport_errors_do_not_carry_urls_bodies_or_secrets() {
    let fake = FakeSms::start().await;
    // The secret in the URL path too, as a careless base URL might hold it.
    let opts = SmsOptions::new("sms").timeout(Duration::from_millis(200));
    fake.fail_next(Provider::SmsRu, Failure::Delay(Duration::from_secs(5)));
    let e = SmsRuChannel::new(opts.clone(), SECRET)
        .base_url(format!("{}/{SECRET}/..", fake.url()))
        .send_text(to(), "hi")
        .await
        .unwrap_err();
    let text = error_text(&e);
    assert_clean("smsru timeout", &text);
    assert!(!text.contains("127.0.0.1"), "no URL in errors: {text}");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = SmscChannel::new(opts.clone(), SmscAuth::login("clinic", SECRET))
        .base_url(format!("http://{closed}"))
        .send_text(to(), "hi")
        .await
        .unwrap_err();
    assert_clean("smsc refused", &error_text(&e));
    fake.fail_next(Provider::Smsc, Failure::DropConnection);
    let e = SmscChannel::new(opts, SmscAuth::api_key(SECRET))
        .base_url(fake.url())
        .send_text(to(), "hi")
        .await
        .unwrap_err();
    assert_clean("smsc dropped", &error_text(&e));
}
