//! The bot token (part of every Bot API URL) never shows in errors or Debug output.

use std::error::Error as _;
use std::time::Duration;

use messaging::telegram::{LongPoller, MemoryOffsetStore, TelegramChannel};
use messaging::{Address, ChannelError, ChannelExt, ErrorKind};
use messaging_tests::telegram::{Failure, FakeTelegram};

const SECRET_PART: &str = "AAFakeTokenForTests_do-not-leak";

/// Everything an error can print: Display, Debug, and the whole source chain.
fn all_output(e: &ChannelError) -> String {
    let mut out = format!("{e}\n{e:?}\n{e:#?}\n");
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(&format!("{s}\n{s:?}\n"));
        src = s.source();
    }
    out
}

fn channel(base: &str) -> TelegramChannel {
    TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(base)
        .rate_limit(0)
        .chat_rate_limit(None)
        .timeout(Duration::from_millis(300))
        .build()
        .expect("build")
}

#[tokio::test]
async fn connection_errors_do_not_carry_the_token() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let tg = channel(&format!("http://127.0.0.1:{port}"));
    let e = tg
        .send_text(Address::Telegram(1), "hi")
        .await
        .expect_err("nobody listens");
    assert_eq!(e.kind(), ErrorKind::Temporary);
    assert!(e.source().is_some(), "the transport error is kept");
    let out = all_output(&e);
    assert!(!out.contains(SECRET_PART), "{out}");
    assert!(!out.contains("/bot"), "{out}");
}

#[tokio::test]
async fn timeouts_do_not_carry_the_token() {
    let fake = FakeTelegram::start().await;
    fake.fail_next("sendMessage", Failure::Delay(Duration::from_secs(2)));
    let tg = channel(&fake.url());
    let e = tg
        .send_text(Address::Telegram(1), "hi")
        .await
        .expect_err("times out");
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown);
    assert!(e.message().contains("timed out"), "{e}");
    let out = all_output(&e);
    assert!(!out.contains(SECRET_PART), "{out}");
}

#[tokio::test]
async fn api_errors_and_debug_output_do_not_carry_the_token() {
    let fake = FakeTelegram::start().await;
    let tg = channel(&fake.url());
    for f in [
        Failure::Unauthorized,
        Failure::Blocked,
        Failure::ServerError(500),
    ] {
        fake.fail_next("sendMessage", f);
        let e = tg
            .send_text(Address::Telegram(1), "hi")
            .await
            .expect_err("fails");
        let out = all_output(&e);
        assert!(!out.contains(SECRET_PART), "{out}");
    }
    // The requests did carry it, in the path: the fake saw the real token.
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.token == FakeTelegram::TOKEN)
    );

    let builder = TelegramChannel::builder("tg", FakeTelegram::TOKEN);
    let poller = LongPoller::new(tg.clone(), MemoryOffsetStore::default());
    for dbg in [
        format!("{tg:?}"),
        format!("{tg:#?}"),
        format!("{builder:?}"),
        format!("{poller:?}"),
    ] {
        assert!(!dbg.contains(SECRET_PART), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
    }
}

#[tokio::test]
async fn polling_errors_do_not_carry_the_token() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let mut poller = LongPoller::new(
        channel(&format!("http://127.0.0.1:{port}")),
        MemoryOffsetStore::default(),
    );
    let e = poller
        .poll_once(|_| async { Ok::<_, String>(()) })
        .await
        .expect_err("nobody listens");
    let out = format!("{e}\n{e:?}");
    assert!(!out.contains(SECRET_PART), "{out}");
}
