//! Wire tests: `messaging-max` sending against the fake Max Bot API.

use std::time::Duration;

use messaging::max::{MaxBot, TextFormat};
use messaging::testkit::conformance_files;
use messaging::{
    Address, Button, Channel, ChannelExt, ChannelKind, Content, ErrorKind, OutboundMessage, Purpose,
};
use messaging_tests::max::{BOT_USERNAME, Failure, FakeMax};
use serde_json::json;

fn bot(fake: &FakeMax) -> MaxBot {
    MaxBot::builder(FakeMax::TOKEN)
        .base_url(fake.url())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn sends_text_to_a_user_with_the_raw_token_header() {
    let fake = FakeMax::start().await;
    let receipt = bot(&fake)
        .send_text(
            Address::MaxUser(10001),
            "Напоминаем о приёме завтра в 10:00",
        )
        .await
        .unwrap();
    assert!(receipt.provider_message_id.as_str().starts_with("mid."));
    assert_eq!(receipt.parts, 1);
    let sent = fake.sent_messages();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r.authorization.as_deref(), Some(FakeMax::TOKEN));
    assert_eq!(r.query.get("user_id").map(String::as_str), Some("10001"));
    assert!(!r.query.contains_key("chat_id"));
    assert!(!r.query.contains_key("access_token"));
    let body = r.body.as_ref().unwrap();
    assert_eq!(body["text"], "Напоминаем о приёме завтра в 10:00");
    assert!(body.get("format").is_none(), "plain text sends no format");
    assert!(body.get("attachments").is_none());
    // Link previews are off unless the content asks for them.
    assert_eq!(
        r.query.get("disable_link_preview").map(String::as_str),
        Some("true")
    );
    // The receipt's id is the mid the server gave.
    assert_eq!(
        fake.requests_to("POST /messages").len(),
        1,
        "exactly one request"
    );
}

#[tokio::test]
async fn sends_to_a_chat_with_format_and_big_ids() {
    let fake = FakeMax::start().await;
    let bot = MaxBot::builder(FakeMax::TOKEN)
        .base_url(fake.url())
        .format(TextFormat::Html)
        .build()
        .unwrap();
    let chat = -9_007_199_254_740_993_i64;
    let mut content = Content::text("<b>Результаты</b> готовы");
    content.link_preview = true;
    bot.send(&OutboundMessage::new(
        Address::MaxChat(chat),
        content,
        Purpose::Service,
    ))
    .await
    .unwrap();
    let r = &fake.sent_messages()[0];
    assert_eq!(
        r.query.get("chat_id").map(String::as_str),
        Some("-9007199254740993")
    );
    assert!(!r.query.contains_key("user_id"));
    assert!(!r.query.contains_key("disable_link_preview"));
    assert_eq!(r.body.as_ref().unwrap()["format"], "html");

    let md = MaxBot::builder(FakeMax::TOKEN)
        .base_url(fake.url())
        .format(TextFormat::Markdown)
        .build()
        .unwrap();
    md.send_text(Address::MaxUser(1), "**hi**").await.unwrap();
    assert_eq!(
        fake.sent_messages()[1].body.as_ref().unwrap()["format"],
        "markdown"
    );
}

#[tokio::test]
async fn keyboard_with_callback_link_and_request_contact() {
    let fake = FakeMax::start().await;
    let content = Content::text("Придёте завтра в 10:00?")
        .with_button(Button::reply("Приду", "yes:42"))
        .with_button(Button::url(
            "Перенести",
            "https://clinic.example/r/42".parse().unwrap(),
        ))
        .with_button(Button::request_contact("Поделиться номером"));
    bot(&fake)
        .send(&OutboundMessage::new(
            Address::MaxUser(10001),
            content,
            Purpose::Service,
        ))
        .await
        .unwrap();
    let body = fake.sent_messages()[0].body.clone().unwrap();
    assert_eq!(
        body["attachments"],
        json!([{"type": "inline_keyboard", "payload": {"buttons": [
            [{"type": "callback", "text": "Приду", "payload": "yes:42"}],
            [{"type": "link", "text": "Перенести", "url": "https://clinic.example/r/42"}],
            [{"type": "request_contact", "text": "Поделиться номером"}]]}}])
    );
}

#[tokio::test]
async fn share_phone_prompt_goes_out_as_request_contact() {
    let fake = FakeMax::start().await;
    let prompt = messaging::max::share_phone_prompt("Поделитесь номером", "Поделиться");
    bot(&fake)
        .send(&OutboundMessage::new(
            Address::MaxUser(5),
            prompt,
            Purpose::Conversation,
        ))
        .await
        .unwrap();
    let body = fake.sent_messages()[0].body.clone().unwrap();
    assert_eq!(
        body["attachments"][0]["payload"]["buttons"][0][0],
        json!({"type": "request_contact", "text": "Поделиться"})
    );
}

#[tokio::test]
async fn long_text_is_split_into_parts_at_words_with_buttons_on_the_last() {
    let fake = FakeMax::start().await;
    let words: Vec<String> = (0..1500).map(|i| format!("слово{i}")).collect();
    let text = words.join(" "); // ~12k characters
    let content = Content::text(text.clone()).with_button(Button::reply("OK", "ok"));
    let receipt = bot(&fake)
        .send(&OutboundMessage::new(
            Address::MaxUser(1),
            content,
            Purpose::Service,
        ))
        .await
        .unwrap();
    let sent = fake.sent_messages();
    assert!(sent.len() >= 3, "{}", sent.len());
    assert_eq!(receipt.parts as usize, sent.len());
    assert_eq!(receipt.extra_message_ids.len(), sent.len() - 1);
    let mut rejoined = Vec::new();
    for (i, r) in sent.iter().enumerate() {
        let b = r.body.as_ref().unwrap();
        let t = b["text"].as_str().unwrap();
        assert!(t.chars().count() <= 4000);
        rejoined.extend(t.split(' ').map(str::to_owned));
        assert_eq!(
            b.get("attachments").is_some(),
            i + 1 == sent.len(),
            "buttons only under the last part"
        );
    }
    assert_eq!(rejoined, words);
}

#[tokio::test]
async fn override_text_for_max_is_used() {
    let fake = FakeMax::start().await;
    let content = Content::text("default").with_override(ChannelKind::Max, "для Max");
    bot(&fake)
        .send(&OutboundMessage::new(
            Address::MaxUser(1),
            content,
            Purpose::Service,
        ))
        .await
        .unwrap();
    assert_eq!(
        fake.sent_messages()[0].body.as_ref().unwrap()["text"],
        "для Max"
    );
}

#[tokio::test]
async fn errors_over_the_wire_map_to_kinds() {
    let fake = FakeMax::start().await;
    let bot = bot(&fake);
    let cases = [
        (
            Failure::InvalidToken,
            ErrorKind::ChannelDown,
            "verify.token",
        ),
        (Failure::ChatDenied, ErrorKind::Unreachable, "chat.denied"),
        (
            Failure::ChatNotFound,
            ErrorKind::Unreachable,
            "chat.not.found",
        ),
        (
            Failure::AttachmentNotReady,
            ErrorKind::Temporary,
            "attachment.not.ready",
        ),
        (
            Failure::TooManyRequests(Some(3)),
            ErrorKind::RateLimited,
            "too.many.requests",
        ),
        (Failure::ServerError(502), ErrorKind::Temporary, "502"),
        (Failure::ServerError(503), ErrorKind::Temporary, "503"),
        (
            Failure::Raw(400, r#"{"code":"brand.new","message":"?"}"#.into()),
            ErrorKind::Unexpected,
            "brand.new",
        ),
        // A 2xx that cannot be read may still have sent the message.
        (
            Failure::Raw(200, "not json".into()),
            ErrorKind::OutcomeUnknown,
            "bad_response",
        ),
        (
            Failure::Raw(200, r#"{"message":{}}"#.into()),
            ErrorKind::OutcomeUnknown,
            "bad_response",
        ),
    ];
    for (failure, kind, code) in cases {
        fake.fail_next("POST /messages", failure.clone());
        let e = bot.send_text(Address::MaxUser(1), "x").await.unwrap_err();
        assert_eq!(e.kind(), kind, "{failure:?}");
        assert_eq!(e.provider_code(), Some(code), "{failure:?}");
        let printed = format!("{e} {e:?}");
        assert!(!printed.contains(FakeMax::TOKEN), "{printed}");
        if let Failure::TooManyRequests(Some(s)) = failure {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(s)));
        }
    }
}

#[tokio::test]
async fn an_absurd_retry_after_is_cut_to_an_hour() {
    let fake = FakeMax::start().await;
    let bot = bot(&fake);
    fake.fail_next(
        "POST /messages",
        Failure::TooManyRequests(Some(9_999_999_999_999)),
    );
    let e = bot.send_text(Address::MaxUser(1), "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    // The kit's bound (`messaging_http::MAX_RETRY_AFTER`): an hour.
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)));
}

#[tokio::test]
async fn conformance_error_bodies_over_the_wire() {
    let files: Vec<_> = conformance_files(env!("CARGO_MANIFEST_DIR"), "max", "json")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("error_"))
        })
        .collect();
    if files.is_empty() {
        println!("skipped: conformance corpus absent");
        return;
    }
    let fake = FakeMax::start().await;
    let bot = bot(&fake);
    for path in files {
        let body = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let (status, kind) = match v["code"].as_str().unwrap() {
            "verify.token" => (401, ErrorKind::ChannelDown),
            "chat.denied" => (403, ErrorKind::Unreachable),
            "attachment.not.ready" => (400, ErrorKind::Temporary),
            other => panic!("no expectation for {other}"),
        };
        fake.fail_next("POST /messages", Failure::Raw(status, body));
        let e = bot.send_text(Address::MaxUser(1), "x").await.unwrap_err();
        assert_eq!(e.kind(), kind, "{}", path.display());
    }
}

#[tokio::test]
async fn blocked_user_is_unreachable() {
    let fake = FakeMax::start().await;
    fake.block_user(666);
    let e = bot(&fake)
        .send_text(Address::MaxUser(666), "x")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    assert!(e.message().contains("dialog.suspended"));
}

#[tokio::test]
async fn wrong_token_is_channel_down_and_never_printed() {
    let fake = FakeMax::start().await;
    let secret = "wrong-token-do-not-print-77";
    let bot = MaxBot::builder(secret)
        .base_url(fake.url())
        .build()
        .unwrap();
    let e = bot.send_text(Address::MaxUser(1), "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChannelDown);
    let e2 = bot.get_me().await.unwrap_err();
    for printed in [
        format!("{e}"),
        format!("{e:?}"),
        format!("{e2:?}"),
        format!("{bot:?}"),
    ] {
        assert!(!printed.contains(secret), "{printed}");
    }
}

#[tokio::test]
async fn rate_limit_answers_429_and_maps_to_rate_limited() {
    let fake = FakeMax::start().await;
    fake.set_rate_limit(Some(5));
    fake.set_retry_after(Some(1));
    let bot = bot(&fake);
    let mut limited = None;
    for i in 0..10 {
        match bot.send_text(Address::MaxUser(1), &format!("m{i}")).await {
            Ok(_) => {}
            Err(e) => {
                limited = Some((i, e));
                break;
            }
        }
    }
    let (i, e) = limited.expect("the limit must trigger");
    assert_eq!(i, 5, "five requests pass in a second");
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.provider_code(), Some("too.many.requests"));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    bot.send_text(Address::MaxUser(1), "again").await.unwrap();
}

#[tokio::test]
async fn default_rate_limit_is_30_per_second() {
    // The fake enforces Max's 30 requests per second: a bot that does not pace itself gets its
    // 31st call within a second refused.
    let fake = FakeMax::start().await;
    let unpaced = MaxBot::builder(FakeMax::TOKEN)
        .base_url(fake.url())
        .timeout(Duration::from_secs(5))
        .rate_limit(0)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let mut results = Vec::new();
    for _ in 0..31 {
        results.push(unpaced.get_me().await.map_err(|e| e.kind()));
    }
    if started.elapsed() >= Duration::from_millis(900) {
        println!("skipped: 31 unpaced calls took over a second on this machine");
    } else {
        assert!(results[..30].iter().all(Result::is_ok), "{results:?}");
        assert_eq!(results[30], Err(ErrorKind::RateLimited));
    }
    // The bot's default pace (30 per second, evenly spaced) stays under that limit.
    let fake = FakeMax::start().await;
    let paced = bot(&fake);
    let started = std::time::Instant::now();
    for i in 0..31 {
        paced
            .get_me()
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn get_me_reads_the_bot_profile() {
    let fake = FakeMax::start().await;
    let me = bot(&fake).get_me().await.unwrap();
    assert_eq!(me.username.as_deref(), Some(BOT_USERNAME));
    assert_eq!(me.user_id, Some(messaging_tests::max::BOT_ID));
}

/// The request went out; the answer did not come back: Max may have sent it.
#[tokio::test]
async fn timeouts_are_an_unknown_outcome() {
    let fake = FakeMax::start().await;
    fake.fail_next("POST /messages", Failure::Delay(Duration::from_secs(3)));
    let bot = MaxBot::builder(FakeMax::TOKEN)
        .base_url(fake.url())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = bot.send_text(Address::MaxUser(1), "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown);
    assert!(!format!("{e:?}").contains(&fake.url()));
}

#[tokio::test]
async fn the_timeout_applies_to_a_user_supplied_client_too() {
    let fake = FakeMax::start().await;
    fake.fail_next("POST /messages", Failure::Delay(Duration::from_secs(3)));
    let bot = MaxBot::builder(FakeMax::TOKEN)
        .base_url(fake.url())
        .client(reqwest::Client::new())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let e = bot.send_text(Address::MaxUser(1), "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown);
    assert_eq!(e.provider_code(), Some("network"));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn user_supplied_client_is_used() {
    let fake = FakeMax::start().await;
    let client = reqwest::Client::builder()
        .user_agent("my-app/1.0")
        .build()
        .unwrap();
    let bot = MaxBot::builder(FakeMax::TOKEN)
        .base_url(fake.url())
        .client(client)
        .build()
        .unwrap();
    bot.send_text(Address::MaxUser(1), "x").await.unwrap();
    assert_eq!(fake.sent_messages().len(), 1);
}

#[tokio::test]
async fn fake_speaks_like_max_to_raw_clients() {
    let fake = FakeMax::start().await;
    let http = reqwest::Client::new();
    // `Bearer` and a query token are refused with the real body.
    for (auth, query) in [
        (Some(format!("Bearer {}", FakeMax::TOKEN)), ""),
        (None, "?access_token=max-fake-token-5f2a9c"),
    ] {
        let mut req = http.get(format!("{}/me{query}", fake.url()));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            body,
            json!({"code": "verify.token", "message": "Invalid access_token"})
        );
    }
    // Text over 4000 characters and a missing recipient are refused.
    for (query, text) in [
        ("?user_id=1", "x".repeat(4001)),
        ("", "x".to_owned()),
        ("?user_id=1&chat_id=2", "x".to_owned()),
    ] {
        let resp = http
            .post(format!("{}/messages{query}", fake.url()))
            .header("authorization", FakeMax::TOKEN)
            .json(&json!({ "text": text }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "proto.payload");
    }
    // Exactly 4000 characters pass: the adapter's split size is the real limit.
    let resp = http
        .post(format!("{}/messages?user_id=1", fake.url()))
        .header("authorization", FakeMax::TOKEN)
        .json(&json!({ "text": "я".repeat(4000) }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["message"]["body"]["mid"]
            .as_str()
            .unwrap()
            .starts_with("mid.")
    );
    assert!(body["message"]["body"]["seq"].as_u64().unwrap() > 1 << 53);
}

#[tokio::test]
async fn a_receipt_without_a_timestamp_is_dated_by_the_clock() {
    use messaging::{Clock, ManualClock};
    use std::sync::Arc;
    let fake = FakeMax::start().await;
    // An answer without `message.timestamp`, which the fake otherwise always gives.
    fake.fail_next(
        "POST /messages",
        Failure::Raw(
            200,
            r#"{"message":{"body":{"mid":"mid.1","text":"hi"}}}"#.into(),
        ),
    );
    let clock = ManualClock::at_unix(1_700_000_000);
    let bot = MaxBot::builder(FakeMax::TOKEN)
        .base_url(fake.url())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let r = bot.send_text(Address::MaxUser(1), "hi").await.unwrap();
    assert_eq!(r.provider_message_id.as_str(), "mid.1");
    assert_eq!(r.accepted_at, clock.now());
}
