//! Live test against the real Max Bot API. Runs only when `MAX_BOT_TOKEN` and
//! `MAX_TEST_USER_ID` (a user who has started the bot) are set; prints that it was skipped
//! otherwise. Optional: `MAX_BASE_URL`, and `MAX_ROOT_CA_PEM` (a path to an extra trusted root,
//! such as the Russian Trusted Root CA).

use messaging_core::{
    Address, Button, Channel, Content, ErrorKind, Evidence, OutboundMessage, Purpose,
};
use messaging_max::MaxBot;

fn live_bot() -> Option<(MaxBot, i64, String)> {
    let (Ok(token), Ok(user)) = (
        std::env::var("MAX_BOT_TOKEN"),
        std::env::var("MAX_TEST_USER_ID"),
    ) else {
        println!("skipped: set MAX_BOT_TOKEN and MAX_TEST_USER_ID to run the live Max test");
        return None;
    };
    let user: i64 = user
        .trim()
        .parse()
        .expect("MAX_TEST_USER_ID must be an integer");
    let mut builder = MaxBot::builder(token.clone()).channel_id("max-live");
    if let Ok(url) = std::env::var("MAX_BASE_URL") {
        builder = builder.base_url(url);
    }
    if let Ok(path) = std::env::var("MAX_ROOT_CA_PEM") {
        let pem = std::fs::read(&path).expect("MAX_ROOT_CA_PEM must be a readable file");
        builder = builder
            .add_root_certificate_pem(&pem)
            .expect("MAX_ROOT_CA_PEM must hold a PEM certificate");
    }
    Some((builder.build().expect("bot"), user, token))
}

#[tokio::test]
async fn live_send_and_token_check() {
    let Some((bot, user, token)) = live_bot() else {
        return;
    };
    let me = bot.get_me().await.expect("GET /me");
    assert!(me.user_id.is_some());
    println!("live: bot {:?} ({:?})", me.username, me.user_id);

    assert_eq!(bot.capabilities().strongest_evidence, Evidence::Accepted);
    let content = Content::text("messaging-max live test: please ignore")
        .with_button(Button::reply("OK", "live_ok"));
    let receipt = bot
        .send(&OutboundMessage::new(
            Address::MaxUser(user),
            content,
            Purpose::Service,
        ))
        .await
        .expect("send");
    assert!(receipt.provider_message_id.as_str().starts_with("mid."));

    // A wrong token is a channel-level failure and its error does not show the token.
    let bad = MaxBot::builder(format!("{token}x")).build().unwrap();
    let e = bad.get_me().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChannelDown);
    assert!(!format!("{e} {e:?}").contains(&token));
}
