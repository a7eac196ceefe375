//! Live tests against a real WhatsApp test number. They run only when `WABA_TOKEN`,
//! `WABA_PHONE_NUMBER_ID` and `WABA_TEST_RECIPIENT` are set (optionally `WABA_API_VERSION`,
//! `WABA_ID` for the template list, `WABA_TEMPLATE` / `WABA_TEMPLATE_LANGUAGE`, default
//! `hello_world` / `en_US`), and print that they were skipped otherwise.

use messaging_core::{Address, Channel, Content, ErrorKind, OutboundMessage, Purpose, Template};
use messaging_waba::WabaChannel;

struct Live {
    channel: WabaChannel,
    to: String,
}

fn live() -> Option<Live> {
    let (Ok(token), Ok(phone), Ok(to)) = (
        std::env::var("WABA_TOKEN"),
        std::env::var("WABA_PHONE_NUMBER_ID"),
        std::env::var("WABA_TEST_RECIPIENT"),
    ) else {
        println!(
            "skipped: set WABA_TOKEN, WABA_PHONE_NUMBER_ID and WABA_TEST_RECIPIENT to run the live WhatsApp tests"
        );
        return None;
    };
    let mut b = WabaChannel::cloud_api("wa-live", phone, token).enforce_window(false);
    if let Ok(v) = std::env::var("WABA_API_VERSION") {
        b = b.api_version(v);
    }
    if let Ok(w) = std::env::var("WABA_ID") {
        b = b.waba_id(w);
    }
    Some(Live {
        channel: b.build().expect("live channel"),
        to,
    })
}

fn template() -> Template {
    Template::new(
        std::env::var("WABA_TEMPLATE").unwrap_or_else(|_| "hello_world".into()),
        std::env::var("WABA_TEMPLATE_LANGUAGE").unwrap_or_else(|_| "en_US".into()),
    )
}

#[tokio::test]
async fn live_template_is_accepted() {
    let Some(l) = live() else { return };
    let msg = OutboundMessage::new(
        Address::WhatsApp(l.to.clone()),
        Content::text("messaging-waba live test").with_template(template()),
        Purpose::Service,
    )
    .for_notification("live-test".into())
    .force_template(true);
    let r = l.channel.send(&msg).await.expect("template accepted");
    assert!(r.provider_message_id.as_str().starts_with("wamid."));
}

#[tokio::test]
async fn live_text_is_accepted_or_needs_template() {
    let Some(l) = live() else { return };
    let msg = OutboundMessage::new(
        Address::WhatsApp(l.to.clone()),
        Content::text("messaging-waba live test: free text"),
        Purpose::Conversation,
    );
    match l.channel.send(&msg).await {
        Ok(r) => assert!(r.provider_message_id.as_str().starts_with("wamid.")),
        Err(e) => assert_eq!(e.kind(), ErrorKind::NeedsTemplate, "{e}"),
    }
}

#[tokio::test]
async fn live_bad_token_is_channel_down_and_not_echoed() {
    let Some(l) = live() else { return };
    let phone = std::env::var("WABA_PHONE_NUMBER_ID").unwrap_or_default();
    let bad = WabaChannel::cloud_api("wa-bad", phone, "EAAGbad-token-for-test")
        .enforce_window(false)
        .build()
        .expect("channel");
    let msg = OutboundMessage::new(
        Address::WhatsApp(l.to),
        Content::text("x").with_template(template()),
        Purpose::Service,
    )
    .force_template(true);
    let e = bad.send(&msg).await.expect_err("bad token refused");
    assert_eq!(e.kind(), ErrorKind::ChannelDown, "{e}");
    assert!(!format!("{e} {e:?}").contains("EAAGbad-token-for-test"));
}

#[tokio::test]
async fn live_template_list() {
    let Some(l) = live() else { return };
    if std::env::var("WABA_ID").is_err() {
        println!("skipped: set WABA_ID to fetch the template list");
        return;
    }
    let n = l.channel.sync_templates().await.expect("template list");
    assert!(n > 0, "the account has at least hello_world");
}
