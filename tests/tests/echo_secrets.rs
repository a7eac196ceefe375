//! Secrets never leave, even when a provider echoes them: every adapter is pointed at a fake
//! provider that puts the whole request (URL, headers, body) into its error text field, and the
//! adapter's configured secret — raw, percent-encoded or base64 — appears in no error it
//! returns (`Display`, `Debug`, the whole source chain).
//!
//! Before the scrubber (`messaging_http::Redactor`) every one of these failed: the Telegram
//! `description` quoted `/bot<TOKEN>/sendMessage`, Graph's `error.message` the `Authorization`
//! header, SMS.ru's `status_text` the form with `api_id`, Twilio's `message` the Basic header.

use base64::Engine as _;
use messaging::max::MaxBot;
use messaging::sms::smsaero::SmsAeroChannel;
use messaging::sms::smsc::{SmscAuth, SmscChannel};
use messaging::sms::smsru::SmsRuChannel;
use messaging::sms::twilio::TwilioChannel;
use messaging::sms::{SmsOptions, StatusPoller};
use messaging::telegram::TelegramChannel;
use messaging::waba::WabaChannel;
use messaging::{Address, ChannelError, ChannelExt, Phone, ProviderMessageId};
use messaging_tests::echo::EchoServer;
use serde_json::json;

/// Has characters that percent-encoding and form encoding change.
const SECRET: &str = "S3cr3t+/=&key_42";
/// A Bot API token must look like one.
const TG_TOKEN: &str = "7000000001:AAS3cr3tTokenXYZ-abcdefghijk";

fn forms(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        secret.to_owned(),
        form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        secret
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
            .replace('&', "%26"),
        b64.encode(secret),
    ]
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

/// The echo held the secret (so the test can fail), the error holds none of its forms.
fn assert_scrubbed(what: &str, echo: &EchoServer, secret_forms: &[String], e: &ChannelError) {
    let seen = echo.requests().join("\n");
    assert!(
        secret_forms.iter().any(|f| seen.contains(f.as_str())),
        "{what}: the request carried the secret, so the echo did"
    );
    let text = error_text(e);
    assert!(
        text.contains("[redacted]"),
        "{what}: the echo reached the error: {text}"
    );
    for f in secret_forms {
        assert!(!text.contains(f.as_str()), "{what} leaks {f:?}: {text}");
    }
}

fn phone() -> Address {
    Address::Phone(Phone::parse("+79123456789").unwrap())
}

#[tokio::test]
async fn telegram_description_echo() {
    let echo = EchoServer::start(|r| {
        (
            400,
            json!({"ok": false, "error_code": 400, "description": r}).to_string(),
        )
    })
    .await;
    let tg = TelegramChannel::builder("tg", TG_TOKEN)
        .base_url(echo.url())
        .build()
        .unwrap();
    let e = tg.send_text(Address::Telegram(42), "hi").await.unwrap_err();
    assert_scrubbed("telegram", &echo, &forms(TG_TOKEN), &e);
    assert!(
        messaging::telegram::api_error(&e).is_some(),
        "the typed Bot API error is still the source"
    );
    // Not a Bot API answer at all: the text is not quoted, the error still typed.
    let e = tg
        .set_webhook("https://x.example/tg", Some("wh-secret-1"))
        .await
        .unwrap_err();
    assert_scrubbed("telegram setWebhook", &echo, &forms("wh-secret-1"), &e);
}

#[tokio::test]
async fn graph_error_message_echo() {
    let echo = EchoServer::start(|r| {
        (
            400,
            json!({"error": {"message": r, "type": "OAuthException", "code": 100,
                "error_data": {"details": r}, "fbtrace_id": "x"}})
            .to_string(),
        )
    })
    .await;
    for wa in [
        WabaChannel::cloud_api("wa", "106540352242922", SECRET),
        WabaChannel::dialog360("wa", SECRET),
    ] {
        let wa = wa
            .base_url(echo.url())
            .enforce_window(false)
            .build()
            .unwrap();
        let e = wa
            .send_text(Address::WhatsApp("79123456789".into()), "hi")
            .await
            .unwrap_err();
        assert_scrubbed("waba", &echo, &forms(SECRET), &e);
    }
}

#[tokio::test]
async fn max_message_echo() {
    let echo =
        EchoServer::start(|r| (400, json!({"code": "weird", "message": r}).to_string())).await;
    let bot = MaxBot::builder(SECRET)
        .base_url(echo.url())
        .build()
        .unwrap();
    let e = bot
        .send_text(Address::MaxUser(10001), "hi")
        .await
        .unwrap_err();
    assert_scrubbed("max", &echo, &forms(SECRET), &e);
    let e = bot.get_me().await.unwrap_err();
    assert_scrubbed("max getMe", &echo, &forms(SECRET), &e);
}

#[tokio::test]
async fn smsru_status_text_echo() {
    let echo = EchoServer::start(|r| {
        (
            200,
            json!({"status": "ERROR", "status_code": 200, "status_text": r}).to_string(),
        )
    })
    .await;
    let sms = SmsRuChannel::new(SmsOptions::new("sms"), SECRET).base_url(echo.url());
    let e = sms.send_text(phone(), "hi").await.unwrap_err();
    assert_scrubbed("smsru send", &echo, &forms(SECRET), &e);
    let e = sms
        .poll_statuses(&[ProviderMessageId::new("1-2")])
        .await
        .unwrap_err();
    assert_scrubbed("smsru status", &echo, &forms(SECRET), &e);
}

#[tokio::test]
async fn smsc_error_echo() {
    let echo = EchoServer::start(|r| (200, json!({"error": r, "error_code": 9}).to_string())).await;
    for auth in [SmscAuth::login("clinic", SECRET), SmscAuth::api_key(SECRET)] {
        let sms = SmscChannel::new(SmsOptions::new("sms"), auth).base_url(echo.url());
        let e = sms.send_text(phone(), "hi").await.unwrap_err();
        assert_scrubbed("smsc", &echo, &forms(SECRET), &e);
    }
}

#[tokio::test]
async fn smsaero_message_echo() {
    let echo = EchoServer::start(|r| {
        (
            400,
            json!({"success": false, "data": {"text": [r]}, "message": r}).to_string(),
        )
    })
    .await;
    let sms = SmsAeroChannel::new(SmsOptions::new("sms"), "clinic@example.com", SECRET)
        .base_url(echo.url());
    let e = sms.send_text(phone(), "hi").await.unwrap_err();
    let mut f = forms(SECRET);
    f.push(
        base64::engine::general_purpose::STANDARD.encode(format!("clinic@example.com:{SECRET}")),
    );
    assert_scrubbed("smsaero", &echo, &f, &e);
}

#[tokio::test]
async fn twilio_message_echo() {
    let echo = EchoServer::start(|r| {
        (
            400,
            json!({"code": 21211, "message": r, "more_info": r, "status": 400}).to_string(),
        )
    })
    .await;
    let sms = TwilioChannel::new(SmsOptions::new("sms").sender("+15017122661"), "AC1", SECRET)
        .base_url(echo.url());
    let e = sms.send_text(phone(), "hi").await.unwrap_err();
    let mut f = forms(SECRET);
    f.push(base64::engine::general_purpose::STANDARD.encode(format!("AC1:{SECRET}")));
    assert_scrubbed("twilio", &echo, &f, &e);
}
