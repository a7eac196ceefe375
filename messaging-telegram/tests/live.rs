//! A live test against the real Bot API. Runs only with
//!
//! - `TELEGRAM_BOT_TOKEN`: the bot's token (for the test environment, a bot made with the test
//!   server's @BotFather);
//! - `TELEGRAM_TEST_CHAT_ID`: a chat that has sent `/start` to that bot;
//! - `TELEGRAM_TEST_ENV=1` to use the test environment (`/bot<token>/test/<method>`).
//!
//! Otherwise it prints that it was skipped.

use messaging_core::{Address, Button, Channel, Content, ErrorKind, OutboundMessage, Purpose};
use messaging_telegram::{TelegramChannel, deep_link};

struct Live {
    token: String,
    chat: i64,
    test_env: bool,
}

fn live() -> Option<Live> {
    let token = std::env::var("TELEGRAM_BOT_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let chat = std::env::var("TELEGRAM_TEST_CHAT_ID")
        .ok()
        .and_then(|c| c.trim().parse().ok());
    match (token, chat) {
        (Some(token), Some(chat)) => Some(Live {
            token,
            chat,
            test_env: std::env::var("TELEGRAM_TEST_ENV").is_ok_and(|v| v == "1"),
        }),
        _ => {
            println!(
                "skipped: set TELEGRAM_BOT_TOKEN and TELEGRAM_TEST_CHAT_ID (and TELEGRAM_TEST_ENV=1 \
                 for the test environment) to run the live Telegram test"
            );
            None
        }
    }
}

#[tokio::test]
async fn live_send_and_errors() {
    let Some(cfg) = live() else {
        return;
    };
    let tg = TelegramChannel::builder("tg-live", cfg.token.clone())
        .test_environment(cfg.test_env)
        .build()
        .expect("build");
    let me = tg.get_me().await.expect("getMe");
    println!(
        "bot id {} (@{:?}), test environment: {}",
        me.id, me.username, cfg.test_env
    );
    if let Some(username) = &me.username {
        let link = deep_link(username, "live_test").expect("deep link");
        println!("deep link: {link}");
    }

    let content = Content::text("messaging-telegram live test: please ignore. https://example.com")
        .with_button(Button::reply("OK", "live:ok"));
    let receipt = tg
        .send(&OutboundMessage::new(
            Address::Telegram(cfg.chat),
            content,
            Purpose::Service,
        ))
        .await
        .expect("send");
    assert!(
        receipt
            .provider_message_id
            .as_str()
            .starts_with(&format!("{}:", cfg.chat))
    );
    println!("accepted as {}", receipt.provider_message_id);

    // A chat the bot never talked to: chat not found / can't initiate.
    let e = tg
        .send(&OutboundMessage::new(
            Address::Telegram(1),
            Content::text("x"),
            Purpose::Service,
        ))
        .await
        .expect_err("unknown chat");
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(&cfg.token), "the token leaked");
}
