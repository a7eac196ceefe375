//! Sending through the Telegram adapter against the fake Bot API server.

use std::time::{Duration, Instant};

use chrono::Utc;
use messaging::telegram::{
    Rate, TelegramChannel, blocked_signal, is_blocked, migrated_to, share_phone_prompt,
};
use messaging::{
    Address, Attachment, AttachmentKind, Button, Channel, ChannelError, ChannelExt, Content,
    ErrorKind, Event, MediaSource, OutboundMessage, Purpose, Signal,
};
use messaging_tests::telegram::{BOT_USERNAME, Failure, FakeRateLimits, FakeTelegram};

fn channel(fake: &FakeTelegram) -> TelegramChannel {
    TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(fake.url())
        .rate_limit(0)
        .chat_rate_limit(None)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("build")
}

fn msg(chat: i64, content: Content) -> OutboundMessage {
    OutboundMessage::new(Address::Telegram(chat), content, Purpose::Service)
}

#[tokio::test]
async fn plain_text_with_link_preview_disabled() {
    let fake = FakeTelegram::start().await;
    let tg = channel(&fake);
    let r = tg
        .send_text(
            Address::Telegram(42),
            "Анна, приём завтра в 10:00 https://clinic.example/a",
        )
        .await
        .expect("sent");
    assert_eq!(r.provider_message_id.as_str(), "42:1");
    assert_eq!(r.parts, 1);
    assert!(r.extra_message_ids.is_empty());
    let calls = fake.calls("sendMessage");
    assert_eq!(calls.len(), 1);
    let p = &calls[0].params;
    assert_eq!(p["chat_id"], 42);
    assert!(p["text"].as_str().is_some_and(|t| t.starts_with("Анна")));
    assert_eq!(
        p["link_preview_options"],
        serde_json::json!({"is_disabled": true})
    );
    assert!(!calls[0].test_env);
    assert_eq!(
        calls[0]
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );

    let mut with_preview = Content::text("see https://clinic.example/a");
    with_preview.link_preview = true;
    let r = tg.send(&msg(42, with_preview)).await.expect("sent");
    assert_eq!(r.provider_message_id.as_str(), "42:2");
    assert!(
        fake.calls("sendMessage")[1]
            .params
            .get("link_preview_options")
            .is_none()
    );
}

#[tokio::test]
async fn inline_keyboard_and_request_contact_keyboard() {
    let fake = FakeTelegram::start().await;
    let tg = channel(&fake);
    let url = "https://clinic.example/a/42".parse().expect("url");
    let content = Content::text("Приём завтра в 10:00. Придёте?")
        .with_button(Button::reply("Да", "confirm:42"))
        .with_button(Button::url("Подробнее", url));
    tg.send(&msg(42, content)).await.expect("sent");
    let markup = fake.sent()[0].reply_markup.clone().expect("markup");
    assert_eq!(
        markup,
        serde_json::json!({"inline_keyboard": [
            [{"text": "Да", "callback_data": "confirm:42"}],
            [{"text": "Подробнее", "url": "https://clinic.example/a/42"}]
        ]})
    );

    let prompt = share_phone_prompt("Поделитесь номером телефона", "Поделиться номером");
    tg.send(&msg(42, prompt)).await.expect("sent");
    let markup = fake.sent()[1].reply_markup.clone().expect("markup");
    assert_eq!(markup["keyboard"][0][0]["text"], "Поделиться номером");
    assert_eq!(markup["keyboard"][0][0]["request_contact"], true);
    assert_eq!(markup["one_time_keyboard"], true);

    // Callback data over 64 bytes is refused before any request.
    let bad = Content::text("x").with_button(Button::reply("Да", "x".repeat(65)));
    let e = tg.send(&msg(42, bad)).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    assert_eq!(fake.calls("sendMessage").len(), 2);
}

#[tokio::test]
async fn long_text_is_split_into_several_messages() {
    let fake = FakeTelegram::start().await;
    let tg = channel(&fake);
    // 3000 words of "приём " = 18000 UTF-16 units -> 5 parts; emoji count twice.
    let text = format!("{}👍 конец", "приём ".repeat(3000));
    let content = Content::text(text.clone()).with_button(Button::reply("Ок", "ok"));
    let r = tg.send(&msg(7, content)).await.expect("sent");
    let sent = fake.sent();
    assert_eq!(sent.len(), 5);
    assert_eq!(r.parts, 5);
    assert_eq!(r.provider_message_id.as_str(), "7:1");
    let extra: Vec<&str> = r.extra_message_ids.iter().map(|i| i.as_str()).collect();
    assert_eq!(extra, vec!["7:2", "7:3", "7:4", "7:5"]);
    for s in &sent {
        let t = s.text.as_deref().expect("text");
        assert!(t.encode_utf16().count() <= 4096);
    }
    // Only the last part carries the keyboard.
    assert!(sent[..4].iter().all(|s| s.reply_markup.is_none()));
    assert!(sent[4].reply_markup.is_some());
    let joined: Vec<String> = sent.iter().filter_map(|s| s.text.clone()).collect();
    assert_eq!(joined.join(" "), text);
}

#[tokio::test]
async fn photos_and_documents() {
    let fake = FakeTelegram::start().await;
    let tg = channel(&fake);
    let mut content = Content::text("Ваши результаты готовы");
    content.attachments.push(Attachment {
        kind: AttachmentKind::Document,
        source: MediaSource::Link("https://clinic.example/r.pdf".parse().expect("url")),
        caption: Some("Анализы".into()),
        filename: None,
    });
    content.attachments.push(Attachment {
        kind: AttachmentKind::Image,
        source: MediaSource::Id("AgACAgIAAx0".into()),
        caption: None,
        filename: None,
    });
    let r = tg.send(&msg(5, content)).await.expect("sent");
    assert_eq!(r.parts, 3);
    let methods: Vec<String> = fake.sent().iter().map(|s| s.method.clone()).collect();
    assert_eq!(methods, ["sendMessage", "sendDocument", "sendPhoto"]);
    assert_eq!(
        fake.calls("sendDocument")[0].params["document"],
        "https://clinic.example/r.pdf"
    );
    assert_eq!(fake.calls("sendPhoto")[0].params["photo"], "AgACAgIAAx0");
}

#[tokio::test]
async fn test_environment_uses_the_test_path() {
    let fake = FakeTelegram::start().await;
    let tg = TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(format!("{}/", fake.url()))
        .test_environment(true)
        .rate_limit(0)
        .chat_rate_limit(None)
        .build()
        .expect("build");
    assert!(tg.is_test_environment());
    tg.send_text(Address::Telegram(1), "hi")
        .await
        .expect("sent");
    let me = tg.get_me().await.expect("getMe");
    assert_eq!(me.username.as_deref(), Some(BOT_USERNAME));
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.test_env), "{reqs:?}");
    assert!(fake.sent()[0].test_env);
}

struct Case {
    failure: Failure,
    kind: ErrorKind,
    code: &'static str,
    blocked: bool,
    retry_after: Option<u64>,
}

#[tokio::test]
async fn error_mapping_over_the_wire() {
    let fake = FakeTelegram::start().await;
    let tg = channel(&fake);
    let cases = [
        Case { failure: Failure::Blocked, kind: ErrorKind::Unreachable, code: "403", blocked: true, retry_after: None },
        Case { failure: Failure::Deactivated, kind: ErrorKind::Unreachable, code: "403", blocked: true, retry_after: None },
        Case { failure: Failure::CantInitiate, kind: ErrorKind::Unreachable, code: "403", blocked: false, retry_after: None },
        Case { failure: Failure::ChatNotFound, kind: ErrorKind::Unreachable, code: "400", blocked: false, retry_after: None },
        Case { failure: Failure::Migrated(-1001234567890), kind: ErrorKind::Unreachable, code: "400", blocked: false, retry_after: None },
        Case { failure: Failure::TooManyRequests(17), kind: ErrorKind::RateLimited, code: "429", blocked: false, retry_after: Some(17) },
        // Only the header tells the wait.
        Case { failure: Failure::Raw { status: 429, body: r#"{"ok":false,"error_code":429,"description":"Too Many Requests"}"#.into(), retry_after_header: Some("9".into()) }, kind: ErrorKind::RateLimited, code: "429", blocked: false, retry_after: Some(9) },
        // Absurd waits, in the body or as a far-off date, are cut to the kit's hour.
        Case { failure: Failure::TooManyRequests(9_999_999_999_999), kind: ErrorKind::RateLimited, code: "429", blocked: false, retry_after: Some(3600) },
        Case { failure: Failure::Raw { status: 429, body: "Too Many Requests".into(), retry_after_header: Some("Fri, 31 Dec 9999 23:59:59 GMT".into()) }, kind: ErrorKind::RateLimited, code: "429", blocked: false, retry_after: Some(3600) },
        Case { failure: Failure::Unauthorized, kind: ErrorKind::ChannelDown, code: "401", blocked: false, retry_after: None },
        Case { failure: Failure::ServerError(500), kind: ErrorKind::Temporary, code: "500", blocked: false, retry_after: None },
        Case { failure: Failure::ServerError(503), kind: ErrorKind::Temporary, code: "503", blocked: false, retry_after: None },
        Case { failure: Failure::Raw { status: 502, body: "<html>502 Bad Gateway</html>".into(), retry_after_header: None }, kind: ErrorKind::Temporary, code: "502", blocked: false, retry_after: None },
        Case { failure: Failure::Raw { status: 400, body: r#"{"ok":false,"error_code":400,"description":"Bad Request: BUTTON_DATA_INVALID"}"#.into(), retry_after_header: None }, kind: ErrorKind::InvalidContent, code: "400", blocked: false, retry_after: None },
        Case { failure: Failure::Raw { status: 420, body: r#"{"ok":false,"error_code":420,"description":"FLOOD_WAIT_X"}"#.into(), retry_after_header: None }, kind: ErrorKind::Unexpected, code: "420", blocked: false, retry_after: None },
    ];
    for c in cases {
        fake.fail_next("sendMessage", c.failure.clone());
        let e = tg
            .send_text(Address::Telegram(42), "hi")
            .await
            .expect_err("scripted failure");
        assert_eq!(e.kind(), c.kind, "{:?}: {e}", c.failure);
        assert_eq!(e.provider_code(), Some(c.code), "{:?}", c.failure);
        assert_eq!(is_blocked(&e), c.blocked, "{:?}", c.failure);
        assert_eq!(
            e.retry_after().map(|d| d.as_secs()),
            c.retry_after,
            "{:?}",
            c.failure
        );
        if let Failure::Migrated(id) = c.failure {
            assert_eq!(migrated_to(&e), Some(id));
            assert!(e.message().contains(&id.to_string()));
        }
        if let Failure::Raw { status: 420, .. } = c.failure {
            assert_eq!(e.message(), "FLOOD_WAIT_X");
        }
    }
}

#[tokio::test]
async fn a_blocked_chat_yields_the_blocked_signal() {
    let fake = FakeTelegram::start().await;
    let tg = channel(&fake);
    fake.block_chat(77);
    let to = Address::Telegram(77);
    let e = tg.send_text(to.clone(), "hi").await.expect_err("blocked");
    assert!(is_blocked(&e));
    match blocked_signal(&e, &to, Utc::now()) {
        Some(Event::Signal(s)) => {
            assert_eq!(
                s.signal,
                Signal::Blocked {
                    from: "77".into(),
                    address: to.clone()
                }
            )
        }
        other => panic!("{other:?}"),
    }
    fake.unblock_chat(77);
    fake.forget_chat(78);
    let e = tg
        .send_text(Address::Telegram(78), "hi")
        .await
        .expect_err("unknown");
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    assert!(!is_blocked(&e));
    tg.send_text(to, "hi again").await.expect("unblocked");
}

#[tokio::test]
async fn non_telegram_address_is_unreachable_without_a_request() {
    let fake = FakeTelegram::start().await;
    let tg = channel(&fake);
    let phone = messaging::Phone::parse("+79123456789").expect("phone");
    let e = tg
        .send(&OutboundMessage::new(
            Address::Phone(phone),
            Content::text("x"),
            Purpose::Service,
        ))
        .await
        .expect_err("no chat id");
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn pacing_per_chat_avoids_429s() {
    let fake = FakeTelegram::start().await;
    fake.rate_limit(Some(FakeRateLimits {
        per_bot_per_second: 0,
        per_chat_interval: Duration::from_millis(300),
    }));
    // Without pacing, the second message to one chat is refused with the real 429.
    let unpaced = channel(&fake);
    unpaced
        .send_text(Address::Telegram(1), "a")
        .await
        .expect("first");
    let e = unpaced
        .send_text(Address::Telegram(1), "b")
        .await
        .expect_err("too fast");
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(fake.rate_limited_count(), 1);

    // With pacing at the fake's limit, every message goes through, spread out in time.
    let paced = TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(fake.url())
        .rate_limit(0)
        .chat_rate_limit(Some(Rate {
            count: 1,
            per: Duration::from_millis(350),
        }))
        .build()
        .expect("build");
    let start = Instant::now();
    for i in 0..4 {
        paced
            .send_text(Address::Telegram(2), &format!("m{i}"))
            .await
            .expect("paced send");
    }
    assert!(
        start.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    // Other chats are not held up by chat 2's pace.
    let start = Instant::now();
    for chat in 10..14 {
        paced
            .send_text(Address::Telegram(chat), "x")
            .await
            .expect("send");
    }
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(fake.rate_limited_count(), 1);
}

#[tokio::test]
async fn pacing_per_bot_avoids_429s() {
    let fake = FakeTelegram::start().await;
    fake.rate_limit(Some(FakeRateLimits {
        per_bot_per_second: 8,
        per_chat_interval: Duration::ZERO,
    }));
    let paced = TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(fake.url())
        .rate_limit(4)
        .chat_rate_limit(None)
        .build()
        .expect("build");
    let start = Instant::now();
    let sends = (0..10).map(|chat| {
        let tg = paced.clone();
        async move { tg.send_text(Address::Telegram(chat), "x").await }
    });
    let results: Vec<Result<_, ChannelError>> = futures::future::join_all(sends).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(fake.rate_limited_count(), 0);
    // 4 at once, then one every 250 ms: the tenth waits about 1.5 s.
    assert!(
        start.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_receipt_without_a_date_is_dated_by_the_clock() {
    use messaging::{Clock, ManualClock};
    use std::sync::Arc;
    let fake = FakeTelegram::start().await;
    // A message without `date`, which the fake otherwise always gives.
    fake.fail_next(
        "sendMessage",
        Failure::Raw {
            status: 200,
            body: r#"{"ok":true,"result":{"message_id":5,"chat":{"id":42,"type":"private"},"text":"hi"}}"#.into(),
            retry_after_header: None,
        },
    );
    let clock = ManualClock::at_unix(1_700_000_000);
    let tg = TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(fake.url())
        .rate_limit(0)
        .chat_rate_limit(None)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("build");
    let r = tg
        .send_text(Address::Telegram(42), "hi")
        .await
        .expect("send");
    assert_eq!(r.provider_message_id.as_str(), "42:5");
    assert_eq!(r.accepted_at, clock.now());
}
