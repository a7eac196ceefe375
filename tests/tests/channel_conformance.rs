//! The `Channel` behaviour suite (`messaging::testkit::channel_suite`) for every adapter, each
//! against its in-process fake provider server: WhatsApp Cloud API, Telegram, Max, and the four
//! SMS providers.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use messaging::max::MaxBot;
use messaging::sms::SmsOptions;
use messaging::sms::smsaero::SmsAeroChannel;
use messaging::sms::smsc::{SmscAuth, SmscChannel};
use messaging::sms::smsru::SmsRuChannel;
use messaging::sms::twilio::TwilioChannel;
use messaging::telegram::TelegramChannel;
use messaging::testkit::channel_suite::{self, FakeProvider, SentRequest, SuiteConfig};
use messaging::waba::WabaChannel;
use messaging::{
    Address, ChannelKind, Clock, Event, InboundMessage, ManualClock, Phone, Template,
    TemplateComponent,
};
use messaging_tests::max::{self as max_fake, FakeMax};
use messaging_tests::sms::{self as sms_fake, FakeSms, Provider};
use messaging_tests::telegram::{self as tg_fake, FakeTelegram};
use messaging_tests::waba::{self as waba_fake, FakeGraph, Scripted};
use serde_json::{Value, json};

/// The parameter `name` of a request, as text.
fn text_of(v: &Value, name: &str) -> Option<String> {
    v.get(name).and_then(Value::as_str).map(str::to_owned)
}

// --- WhatsApp Cloud API ---------------------------------------------------------------------

const WA_PERSON: &str = "79990001122";

struct Graph(FakeGraph);

impl FakeProvider for Graph {
    fn answer_rate_limited(&self, retry_after: Duration) -> bool {
        self.0
            .script(Scripted::error(130429).retry_after(retry_after.as_secs()));
        true
    }
    fn answer_server_error(&self, status: u16) {
        self.0
            .script(Scripted::raw(status, json!("Service Unavailable")));
    }
    fn answer_unauthorized(&self) -> bool {
        self.0.script(Scripted::error(190));
        true
    }
    fn send_requests(&self) -> Vec<SentRequest> {
        self.0
            .sends()
            .iter()
            .map(|r| match text_of(&r.json["template"], "name") {
                Some(name) => SentRequest::template(name),
                None => SentRequest::text(text_of(&r.json["text"], "body")),
            })
            .collect()
    }
}

async fn whatsapp() -> (WabaChannel, Graph) {
    let fake = FakeGraph::start().await;
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap());
    let channel = WabaChannel::cloud_api("wa", "106540352242922", waba_fake::TOKEN)
        .base_url(fake.base_url())
        .clock(Arc::new(clock.clone()))
        .pair_interval(Duration::ZERO)
        .build()
        .expect("channel");
    // The person wrote first: free text may go for 24 hours.
    let hello = InboundMessage::new(
        ChannelKind::WhatsApp,
        Address::WhatsApp(WA_PERSON.into()),
        Some("Здравствуйте".into()),
        clock.now(),
    );
    channel
        .observe(&Event::Inbound(hello))
        .await
        .expect("observe");
    (channel, Graph(fake))
}

#[tokio::test]
async fn whatsapp_cloud_api_conforms() {
    let template = Template::new("appointment_reminder", "ru")
        .component(TemplateComponent::body_text(["Анна", "завтра в 10:00"]));
    let config = SuiteConfig::new(Address::WhatsApp(WA_PERSON.into()))
        .secret(waba_fake::TOKEN)
        .template(template);
    channel_suite::run_all(whatsapp, &config).await;
}

// --- Telegram -------------------------------------------------------------------------------

struct Telegram(FakeTelegram);

const TG_SENDS: [&str; 3] = ["sendMessage", "sendPhoto", "sendDocument"];

impl FakeProvider for Telegram {
    fn answer_rate_limited(&self, retry_after: Duration) -> bool {
        self.0.fail_next(
            "sendMessage",
            tg_fake::Failure::TooManyRequests(retry_after.as_secs()),
        );
        true
    }
    fn answer_server_error(&self, status: u16) {
        self.0
            .fail_next("sendMessage", tg_fake::Failure::ServerError(status));
    }
    fn answer_unauthorized(&self) -> bool {
        self.0
            .fail_next("sendMessage", tg_fake::Failure::Unauthorized);
        true
    }
    fn send_requests(&self) -> Vec<SentRequest> {
        self.0
            .requests()
            .iter()
            .filter(|r| TG_SENDS.contains(&r.method.as_str()))
            .map(|r| SentRequest::text(text_of(&r.params, "text")))
            .collect()
    }
}

async fn telegram() -> (TelegramChannel, Telegram) {
    let fake = FakeTelegram::start().await;
    let channel = TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(fake.url())
        .rate_limit(0)
        .chat_rate_limit(None)
        .part_pause(Duration::ZERO, Duration::ZERO)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("build");
    (channel, Telegram(fake))
}

#[tokio::test]
async fn telegram_conforms() {
    let config = SuiteConfig::new(Address::Telegram(42)).secret(FakeTelegram::TOKEN);
    channel_suite::run_all(telegram, &config).await;
}

// --- Max ------------------------------------------------------------------------------------

struct Max(FakeMax);

impl FakeProvider for Max {
    fn answer_rate_limited(&self, retry_after: Duration) -> bool {
        self.0.fail_next(
            "POST /messages",
            max_fake::Failure::TooManyRequests(Some(retry_after.as_secs())),
        );
        true
    }
    fn answer_server_error(&self, status: u16) {
        self.0
            .fail_next("POST /messages", max_fake::Failure::ServerError(status));
    }
    fn answer_unauthorized(&self) -> bool {
        self.0
            .fail_next("POST /messages", max_fake::Failure::InvalidToken);
        true
    }
    fn send_requests(&self) -> Vec<SentRequest> {
        self.0
            .requests_to("POST /messages")
            .iter()
            .map(|r| SentRequest::text(r.body.as_ref().and_then(|b| text_of(b, "text"))))
            .collect()
    }
}

async fn max() -> (MaxBot, Max) {
    let fake = FakeMax::start().await;
    let channel = MaxBot::builder(FakeMax::TOKEN)
        .base_url(fake.url())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("build");
    (channel, Max(fake))
}

#[tokio::test]
async fn max_conforms() {
    let config = SuiteConfig::new(Address::MaxUser(10001)).secret(FakeMax::TOKEN);
    channel_suite::run_all(max, &config).await;
}

// --- SMS ------------------------------------------------------------------------------------

/// The fake SMS server speaking as one provider.
struct Sms {
    fake: FakeSms,
    provider: Provider,
}

impl Sms {
    /// The provider's error code for "too many requests" and for wrong credentials.
    fn codes(&self) -> (i64, i64) {
        match self.provider {
            Provider::SmsRu => (231, 200),
            Provider::Smsc => (9, 2),
            Provider::SmsAero => (429, 401),
            Provider::Twilio => (20429, 20003),
        }
    }
}

impl FakeProvider for Sms {
    fn answer_rate_limited(&self, _: Duration) -> bool {
        self.fake
            .fail_next(self.provider, sms_fake::Failure::Error(self.codes().0));
        // None of the four providers' rate-limit answers states a wait the fake can set.
        false
    }
    fn answer_server_error(&self, status: u16) {
        self.fake.fail_next(
            self.provider,
            sms_fake::Failure::Http(
                status,
                "<html><body>Service Unavailable</body></html>".into(),
            ),
        );
    }
    fn answer_unauthorized(&self) -> bool {
        self.fake
            .fail_next(self.provider, sms_fake::Failure::Error(self.codes().1));
        true
    }
    fn send_requests(&self) -> Vec<SentRequest> {
        self.fake
            .requests_for(self.provider)
            .iter()
            .filter(|r| r.method == "POST" && !r.path.contains("status"))
            .map(|r| {
                SentRequest::text(match self.provider {
                    Provider::SmsRu => r.field("msg"),
                    Provider::Smsc => r.field("mes"),
                    Provider::SmsAero => r.json().and_then(|j| text_of(&j, "text")),
                    Provider::Twilio => r.field("Body"),
                })
            })
            .collect()
    }
}

fn sms_options() -> SmsOptions {
    SmsOptions::new("sms")
        .sender("+15017122661")
        .timeout(Duration::from_secs(5))
}

fn sms_config(secret: &str) -> SuiteConfig {
    SuiteConfig::new(Address::Phone(Phone::parse("+79123456789").unwrap())).secret(secret)
}

#[tokio::test]
async fn sms_ru_conforms() {
    let make = || async {
        let fake = FakeSms::start().await;
        let channel = SmsRuChannel::new(sms_options(), FakeSms::SMSRU_API_ID).base_url(fake.url());
        (
            channel,
            Sms {
                fake,
                provider: Provider::SmsRu,
            },
        )
    };
    channel_suite::run_all(make, &sms_config(FakeSms::SMSRU_API_ID)).await;
}

#[tokio::test]
async fn smsc_conforms() {
    let make = || async {
        let fake = FakeSms::start().await;
        let auth = SmscAuth::login(FakeSms::SMSC_LOGIN, FakeSms::SMSC_PASSWORD);
        let channel = SmscChannel::new(sms_options(), auth).base_url(fake.url());
        (
            channel,
            Sms {
                fake,
                provider: Provider::Smsc,
            },
        )
    };
    channel_suite::run_all(make, &sms_config(FakeSms::SMSC_PASSWORD)).await;
}

#[tokio::test]
async fn sms_aero_conforms() {
    let make = || async {
        let fake = FakeSms::start().await;
        let channel = SmsAeroChannel::new(
            sms_options(),
            FakeSms::SMSAERO_EMAIL,
            FakeSms::SMSAERO_API_KEY,
        )
        .base_url(fake.smsaero_url());
        (
            channel,
            Sms {
                fake,
                provider: Provider::SmsAero,
            },
        )
    };
    channel_suite::run_all(make, &sms_config(FakeSms::SMSAERO_API_KEY)).await;
}

#[tokio::test]
async fn twilio_conforms() {
    let make = || async {
        let fake = FakeSms::start().await;
        let channel = TwilioChannel::new(
            sms_options(),
            FakeSms::TWILIO_ACCOUNT_SID,
            FakeSms::TWILIO_AUTH_TOKEN,
        )
        .base_url(fake.url());
        (
            channel,
            Sms {
                fake,
                provider: Provider::Twilio,
            },
        )
    };
    channel_suite::run_all(make, &sms_config(FakeSms::TWILIO_AUTH_TOKEN)).await;
}
