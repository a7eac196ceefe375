//! Wire-level tests of the WhatsApp adapter against the in-process fake Graph API: request shapes
//! for both providers, the 24-hour window, 131047 fallback to the template, templates checked
//! before any request, throughput limits, cost, tier and secrets.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use messaging::waba::{
    MessagingTier, PriceTable, PricingCategory, TemplateDefinition, TemplateStatus, WabaBuilder,
    WabaChannel,
};
use messaging::{
    Address, Attachment, AttachmentKind, Button, ButtonSubType, Channel, ChannelKind,
    ChannelSignal, Clock, Content, ErrorKind, Event, InboundMessage, ManualClock, MediaSource,
    OutboundMessage, Purpose, Signal, Template, TemplateComponent, TemplateParameter, TemplatePart,
    TemplateValue,
};
use messaging_tests::waba::{API_KEY, FakeGraph, Scripted, TOKEN};
use serde_json::json;

const PHONE_ID: &str = "106540352242922";
const PERSON: &str = "79990001122";

fn clock() -> ManualClock {
    ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
            .single()
            .expect("time"),
    )
}

fn cloud(fake: &FakeGraph, clock: &ManualClock) -> WabaBuilder {
    WabaChannel::cloud_api("wa-test", PHONE_ID, TOKEN)
        .base_url(fake.base_url())
        .clock(Arc::new(clock.clone()))
        .pair_interval(Duration::ZERO)
}

async fn open_window(ch: &WabaChannel, clock: &ManualClock, wa_id: &str) {
    let inbound = InboundMessage::new(
        ChannelKind::WhatsApp,
        Address::WhatsApp(wa_id.into()),
        Some("Здравствуйте".into()),
        clock.now(),
    );
    ch.observe(&Event::Inbound(inbound)).await.expect("observe");
}

fn to() -> Address {
    Address::WhatsApp(PERSON.into())
}

fn reminder() -> Template {
    Template::new("appointment_reminder", "ru")
        .component(TemplateComponent::body_text(["Анна", "завтра в 10:00"]))
}

fn msg(content: Content) -> OutboundMessage {
    OutboundMessage::new(to(), content, Purpose::Service).for_notification("appt-42".into())
}

#[tokio::test]
async fn text_inside_the_window_goes_as_text_with_bearer_and_callback_data() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c).build().expect("channel");
    open_window(&ch, &c, PERSON).await;
    let r = ch
        .send(&msg(
            Content::text("Анна, ждём вас завтра в 10:00.").with_template(reminder())
        ))
        .await
        .expect("sent");
    assert_eq!(r.provider_message_id.as_str(), "wamid.FAKE000001");
    assert_eq!(r.parts, 1);
    let sends = fake.sends();
    assert_eq!(sends.len(), 1);
    let req = &sends[0];
    assert_eq!(req.path, format!("/v24.0/{PHONE_ID}/messages"));
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(req.json["type"], "text");
    assert_eq!(req.json["to"], PERSON);
    assert_eq!(req.json["messaging_product"], "whatsapp");
    assert_eq!(req.json["text"]["body"], "Анна, ждём вас завтра в 10:00.");
    assert_eq!(req.json["biz_opaque_callback_data"], "appt-42");
}

#[tokio::test]
async fn outside_the_window_the_template_goes() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c)
        .api_version("v23.0")
        .build()
        .expect("channel");
    ch.send(&msg(Content::text("free text").with_template(reminder())))
        .await
        .expect("sent");
    let req = &fake.sends()[0];
    assert_eq!(req.path, format!("/v23.0/{PHONE_ID}/messages"));
    assert_eq!(req.json["type"], "template");
    assert_eq!(req.json["template"]["name"], "appointment_reminder");
    assert_eq!(req.json["template"]["language"]["code"], "ru");
    assert_eq!(
        req.json["template"]["components"][0],
        json!({"type": "body", "parameters": [{"type": "text", "text": "Анна"}, {"type": "text", "text": "завтра в 10:00"}]})
    );
    assert_eq!(req.json["biz_opaque_callback_data"], "appt-42");
}

#[tokio::test]
async fn the_window_closes_after_24_hours() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c).build().expect("channel");
    open_window(&ch, &c, PERSON).await;
    // A phone address and the WhatsApp id of the same person share the window.
    let phone = Address::Phone(messaging::Phone::parse("+79990001122").expect("phone"));
    assert!(ch.is_window_open(&phone).await);
    c.advance(Duration::from_secs(23 * 3600));
    assert!(ch.is_window_open(&to()).await);
    c.advance(Duration::from_secs(3600));
    assert!(!ch.is_window_open(&to()).await);
    ch.send(&msg(Content::text("x").with_template(reminder())))
        .await
        .expect("sent");
    assert_eq!(fake.sends()[0].json["type"], "template");
}

#[tokio::test]
async fn free_text_without_template_outside_the_window_needs_a_template_without_a_request() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c).build().expect("channel");
    let e = ch
        .send(&msg(Content::text("hi")))
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::NeedsTemplate);
    assert!(fake.requests().is_empty());

    // force_template without a template is the same.
    open_window(&ch, &c, PERSON).await;
    let e = ch
        .send(&msg(Content::text("hi")).force_template(true))
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::NeedsTemplate);
    assert!(fake.requests().is_empty());

    // Without enforcement the text is tried and Meta decides.
    let lax = cloud(&fake, &c)
        .enforce_window(false)
        .build()
        .expect("channel");
    lax.send(&msg(Content::text("hi"))).await.expect("sent");
    assert_eq!(fake.sends().len(), 1);
}

#[tokio::test]
async fn force_template_sends_the_template_inside_the_window() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c).build().expect("channel");
    open_window(&ch, &c, PERSON).await;
    ch.send(&msg(Content::text("x").with_template(reminder())).force_template(true))
        .await
        .expect("sent");
    assert_eq!(fake.sends()[0].json["type"], "template");
}

#[tokio::test]
async fn error_131047_closes_the_window_and_retries_with_the_template() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c).build().expect("channel");
    open_window(&ch, &c, PERSON).await;
    fake.script_error(131047);
    let r = ch
        .send(&msg(Content::text("x").with_template(reminder())))
        .await
        .expect("template after 131047");
    let sends = fake.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].json["type"], "text");
    assert_eq!(sends[1].json["type"], "template");
    assert_eq!(sends[1].json["biz_opaque_callback_data"], "appt-42");
    assert_eq!(r.provider_message_id.as_str(), "wamid.FAKE000001");
    assert!(!ch.is_window_open(&to()).await, "131047 closed the window");

    // Without a template: the needs-template kind, one request.
    open_window(&ch, &c, PERSON).await;
    fake.script_error(131047);
    let e = ch
        .send(&msg(Content::text("x")))
        .await
        .expect_err("needs template");
    assert_eq!(e.kind(), ErrorKind::NeedsTemplate);
    assert_eq!(e.provider_code(), Some("131047"));
    assert_eq!(fake.sends().len(), 3);
    assert!(!ch.is_window_open(&to()).await);
}

#[tokio::test]
async fn a_failed_status_with_131047_closes_the_window() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c).build().expect("channel");
    open_window(&ch, &c, PERSON).await;
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "statuses": [{"id": "wamid.X", "status": "failed", "timestamp": "1772355600", "recipient_id": PERSON,
                      "errors": [{"code": 131047, "title": "Re-engagement message"}]}]}}]}]});
    for e in ch
        .webhook()
        .parse_body(body.to_string().as_bytes())
        .expect("parse")
    {
        ch.observe(&e).await.expect("observe");
    }
    assert!(!ch.is_window_open(&to()).await);
}

#[tokio::test]
async fn inbound_webhooks_open_the_window_only_for_their_channel() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c).build().expect("channel");
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "contacts": [{"profile": {"name": "Анна"}, "wa_id": PERSON}],
        "messages": [{"from": PERSON, "id": "wamid.in", "timestamp": c.now().timestamp().to_string(), "type": "text", "text": {"body": "Да"}}]}}]}]});
    let other = messaging::waba::WabaWebhook::new().channel_id("wa-other");
    for e in other
        .parse_body(body.to_string().as_bytes())
        .expect("parse")
    {
        ch.observe(&e).await.expect("observe");
    }
    assert!(!ch.is_window_open(&to()).await, "another number's inbound");
    for e in ch
        .webhook()
        .parse_body(body.to_string().as_bytes())
        .expect("parse")
    {
        ch.observe(&e).await.expect("observe");
    }
    assert!(ch.is_window_open(&to()).await);
    ch.send(&msg(Content::text("Спасибо!")))
        .await
        .expect("text now allowed");
}

#[tokio::test]
async fn named_parameters_header_and_buttons_on_the_wire() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c).build().expect("channel");
    let t = Template::new("visit_named", "en_US")
        .component(TemplateComponent {
            part: TemplatePart::Header,
            parameters: vec![TemplateParameter {
                name: None,
                value: TemplateValue::Media(MediaSource::Id("1037543291543636".into())),
            }],
        })
        .component(TemplateComponent::body_named([
            ("first_name", "Ann"),
            ("time", "10:00"),
        ]))
        .component(TemplateComponent {
            part: TemplatePart::Button {
                index: 0,
                sub_type: ButtonSubType::QuickReply,
            },
            parameters: vec![TemplateParameter {
                name: None,
                value: TemplateValue::Payload("CONFIRM:42".into()),
            }],
        })
        .component(TemplateComponent {
            part: TemplatePart::Button {
                index: 1,
                sub_type: ButtonSubType::Url,
            },
            parameters: vec![TemplateParameter {
                name: None,
                value: TemplateValue::Text("42".into()),
            }],
        });
    ch.templates().insert(
        TemplateDefinition::approved(
            "visit_named",
            "en_US",
            "Hi {{first_name}}, see you at {{time}}",
        )
        .header(messaging::waba::ComponentParams {
            media: Some("DOCUMENT".into()),
            ..Default::default()
        })
        .button("QUICK_REPLY", false)
        .button("URL", true),
    );
    ch.send(&msg(Content::text("x").with_template(t)))
        .await
        .expect("sent");
    let comps = &fake.sends()[0].json["template"]["components"];
    assert_eq!(
        comps[0],
        json!({"type": "header", "parameters": [{"type": "document", "document": {"id": "1037543291543636"}}]})
    );
    assert_eq!(
        comps[1]["parameters"][0],
        json!({"type": "text", "text": "Ann", "parameter_name": "first_name"})
    );
    assert_eq!(
        comps[2],
        json!({"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "CONFIRM:42"}]})
    );
    assert_eq!(
        comps[3],
        json!({"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "42"}]})
    );
}

#[tokio::test]
async fn reply_buttons_and_media() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c).build().expect("channel");
    open_window(&ch, &c, PERSON).await;
    let content = Content::text("Придёте завтра в 10:00?")
        .with_button(Button::reply("Да", "yes"))
        .with_button(Button::reply("Нет", "no"));
    ch.send(&msg(content)).await.expect("buttons");
    let i = &fake.sends()[0].json;
    assert_eq!(i["type"], "interactive");
    assert_eq!(i["interactive"]["type"], "button");
    assert_eq!(i["interactive"]["body"]["text"], "Придёте завтра в 10:00?");
    assert_eq!(
        i["interactive"]["action"]["buttons"][0],
        json!({"type": "reply", "reply": {"id": "yes", "title": "Да"}})
    );

    let mut content = Content::text("Ваши результаты");
    content.attachments.push(Attachment {
        kind: AttachmentKind::Document,
        source: MediaSource::Id("555".into()),
        caption: None,
        filename: Some("results.pdf".into()),
    });
    content.attachments.push(Attachment {
        kind: AttachmentKind::Image,
        source: MediaSource::Link("https://clinic.example/map.png".parse().expect("url")),
        caption: Some("Как пройти".into()),
        filename: None,
    });
    let r = ch.send(&msg(content)).await.expect("media");
    let sends = fake.sends();
    assert_eq!(sends[1].json["type"], "document");
    assert_eq!(
        sends[1].json["document"],
        json!({"id": "555", "caption": "Ваши результаты", "filename": "results.pdf"})
    );
    assert_eq!(sends[2].json["type"], "image");
    assert_eq!(
        sends[2].json["image"],
        json!({"link": "https://clinic.example/map.png", "caption": "Как пройти"})
    );
    assert_eq!(r.parts, 2);
    assert_eq!(r.extra_message_ids.len(), 1);

    // Too many buttons: refused before any request.
    let four = Content::text("?")
        .with_button(Button::reply("1", "1"))
        .with_button(Button::reply("2", "2"))
        .with_button(Button::reply("3", "3"))
        .with_button(Button::reply("4", "4"));
    let e = ch.send(&msg(four)).await.expect_err("four buttons");
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    assert_eq!(fake.sends().len(), 3);
}

#[tokio::test]
async fn dialog360_uses_its_path_and_key_header() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = WabaChannel::dialog360("wa-360", API_KEY)
        .base_url(fake.base_url())
        .clock(Arc::new(c.clone()))
        .build()
        .expect("channel");
    ch.send(&msg(Content::text("x").with_template(reminder())))
        .await
        .expect("sent");
    let req = &fake.sends()[0];
    assert_eq!(req.path, "/messages");
    assert_eq!(req.header("d360-api-key"), Some(API_KEY));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.json["messaging_product"], "whatsapp");

    let bad = WabaChannel::dialog360("wa-360", "wrong-key")
        .base_url(fake.base_url())
        .build()
        .expect("channel");
    let e = bad
        .send(&msg(Content::text("x").with_template(reminder())))
        .await
        .expect_err("bad key");
    assert_eq!(e.kind(), ErrorKind::ChannelDown);
    assert!(!format!("{e} {e:?}").contains("wrong-key"));
}

#[tokio::test]
async fn every_error_code_over_the_wire_maps_by_code() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c)
        .enforce_window(false)
        .build()
        .expect("channel");
    let codes = [
        131047, 131026, 131048, 131049, 131050, 131051, 131052, 131053, 131056, 130429, 130472,
        131000, 131005, 131008, 131009, 131016, 131021, 131031, 131042, 132000, 132001, 132005,
        132007, 132012, 132015, 132016, 133010, 100, 190, 368, 4, 80007, 424242,
    ];
    for code in codes {
        fake.script_error(code);
        let e = ch
            .send(&msg(Content::text("x")))
            .await
            .expect_err("scripted error");
        assert_eq!(
            e.kind(),
            messaging::waba::error::kind_for_code(code),
            "code {code}"
        );
        assert_eq!(
            e.provider_code(),
            Some(code.to_string().as_str()),
            "code {code}"
        );
        assert!(!format!("{e} {e:?}").contains(TOKEN), "code {code}");
    }
    assert_eq!(
        messaging::waba::error::kind_for_code(424242),
        ErrorKind::Unexpected
    );
    // A Retry-After header wins over the default wait.
    fake.script(Scripted::error(130429).retry_after(7));
    let e = ch
        .send(&msg(Content::text("x")))
        .await
        .expect_err("rate limited");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    // An absurd one is cut to the kit's hour, so `now + wait` cannot overflow in the engine.
    fake.script(Scripted::error(130429).retry_after(9_999_999_999_999));
    let e = ch
        .send(&msg(Content::text("x")))
        .await
        .expect_err("rate limited");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)));
    // A non-JSON 502 is temporary.
    fake.script(Scripted::raw(502, json!("Bad Gateway")));
    let e = ch.send(&msg(Content::text("x"))).await.expect_err("502");
    assert_eq!(e.kind(), ErrorKind::Temporary);
}

#[tokio::test]
async fn the_fake_rate_limit_answers_130429() {
    let fake = FakeGraph::start().await;
    fake.set_rate_limit(Some(2));
    let c = clock();
    let ch = cloud(&fake, &c)
        .enforce_window(false)
        .build()
        .expect("channel");
    ch.send(&msg(Content::text("1"))).await.expect("1");
    ch.send(&msg(Content::text("2"))).await.expect("2");
    let e = ch.send(&msg(Content::text("3"))).await.expect_err("3");
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.provider_code(), Some("130429"));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn the_per_number_limiter_keeps_under_the_servers_limit() {
    let fake = FakeGraph::start().await;
    fake.set_rate_limit(Some(10));
    let c = clock();
    let ch = cloud(&fake, &c)
        .enforce_window(false)
        .rate_limit(5)
        .build()
        .expect("channel");
    let started = std::time::Instant::now();
    for i in 0..12 {
        ch.send(&msg(Content::text(format!("{i}"))))
            .await
            .expect("under the limit");
    }
    // A burst of 5, then 5 per second: the last 7 need at least 1.2 s.
    assert!(
        started.elapsed() >= Duration::from_millis(1100),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.sends().len(), 12);
}

#[tokio::test]
async fn the_pair_limit_refuses_before_any_request() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c)
        .enforce_window(false)
        .pair_interval(Duration::from_secs(6))
        .build()
        .expect("channel");
    ch.send(&msg(Content::text("1"))).await.expect("first");
    c.advance(Duration::from_secs(2));
    let e = ch
        .send(&msg(Content::text("2")))
        .await
        .expect_err("too soon");
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(4)));
    assert_eq!(fake.sends().len(), 1);
    // Someone else is not affected.
    let other = OutboundMessage::new(
        Address::WhatsApp("79990003344".into()),
        Content::text("x"),
        Purpose::Service,
    );
    ch.send(&other).await.expect("other person");
    c.advance(Duration::from_secs(4));
    ch.send(&msg(Content::text("3"))).await.expect("after 6 s");
    // A send that failed before reaching the person gives the slot back.
    c.advance(Duration::from_secs(10));
    fake.script_error(131000);
    ch.send(&msg(Content::text("4")))
        .await
        .expect_err("server error");
    ch.send(&msg(Content::text("5")))
        .await
        .expect("slot given back");
}

#[tokio::test]
async fn templates_are_synced_and_checked_before_any_request() {
    let fake = FakeGraph::start().await;
    fake.set_page_size(1);
    fake.set_templates(vec![
        json!({"name": "appointment_reminder", "language": "ru", "status": "APPROVED", "category": "UTILITY", "id": "1",
               "components": [{"type": "BODY", "text": "{{1}}, напоминаем о приёме {{2}}."}]}),
        json!({"name": "promo", "language": "ru", "status": "PAUSED", "category": "MARKETING", "id": "2",
               "components": [{"type": "BODY", "text": "Скидка"}]}),
        json!({"name": "old", "language": "ru", "status": "REJECTED", "category": "UTILITY", "id": "3", "components": []}),
    ]);
    let c = clock();
    let ch = cloud(&fake, &c)
        .waba_id("102290129340398")
        .build()
        .expect("channel");
    assert_eq!(ch.sync_templates().await.expect("sync"), 3);
    let lists: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/message_templates"))
        .collect();
    assert_eq!(lists.len(), 3, "three pages");
    assert_eq!(lists[0].path, "/v24.0/102290129340398/message_templates");
    assert_eq!(lists[1].query.as_deref(), Some("limit=100&after=p1"));
    assert_eq!(
        ch.templates().get("promo", "ru").map(|d| d.status),
        Some(TemplateStatus::Paused)
    );

    for (t, why) in [
        (Template::new("promo", "ru"), "PAUSED"),
        (Template::new("old", "ru"), "REJECTED"),
        (Template::new("unknown", "ru"), "not among"),
        (
            Template::new("appointment_reminder", "ru")
                .component(TemplateComponent::body_text(["Анна"])),
            "takes 2 parameter(s), 1 given",
        ),
    ] {
        let e = ch
            .send(&msg(Content::text("x").with_template(t)))
            .await
            .expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidContent);
        assert!(e.message().contains(why), "{e}");
    }
    assert!(fake.sends().is_empty());
    ch.send(&msg(Content::text("x").with_template(reminder())))
        .await
        .expect("good template");

    // A webhook pauses it; the next send is refused; REINSTATED lets it through again.
    let pause = Event::Signal(ChannelSignal::new(
        ChannelKind::WhatsApp,
        c.now(),
        Signal::TemplateStatus {
            name: "appointment_reminder".into(),
            language: Some("ru".into()),
            status: "PAUSED".into(),
            reason: None,
        },
    ));
    ch.observe(&pause).await.expect("observe");
    assert!(
        ch.send(&msg(Content::text("x").with_template(reminder())))
            .await
            .is_err()
    );
    let back = Event::Signal(ChannelSignal::new(
        ChannelKind::WhatsApp,
        c.now(),
        Signal::TemplateStatus {
            name: "appointment_reminder".into(),
            language: Some("ru".into()),
            status: "REINSTATED".into(),
            reason: None,
        },
    ));
    ch.observe(&back).await.expect("observe");
    ch.send(&msg(Content::text("x").with_template(reminder())))
        .await
        .expect("reinstated");
    assert_eq!(fake.sends().len(), 2);
}

#[tokio::test]
async fn dialog360_template_list() {
    let fake = FakeGraph::start().await;
    fake.set_templates(vec![
        json!({"name": "a", "language": "ru", "status": "APPROVED", "components": []}),
    ]);
    let ch = WabaChannel::dialog360("wa-360", API_KEY)
        .base_url(fake.base_url())
        .build()
        .expect("channel");
    assert_eq!(ch.sync_templates().await.expect("sync"), 1);
    assert_eq!(fake.requests()[0].path, "/v1/configs/templates");
}

#[tokio::test]
async fn cost_tier_and_unique_people() {
    let fake = FakeGraph::start().await;
    let c = clock();
    let ch = cloud(&fake, &c)
        .price_table(
            PriceTable::new("USD")
                .price(PricingCategory::Utility, 0.008)
                .price(PricingCategory::Marketing, 0.0625),
        )
        .build()
        .expect("channel");
    // A utility template outside the window is charged.
    let r = ch
        .send(&msg(Content::text("x").with_template(reminder())))
        .await
        .expect("sent");
    let cost = r.cost.expect("cost");
    assert_eq!((cost.amount, cost.currency.as_str()), (0.008, "USD"));
    // A marketing template by purpose.
    let m = OutboundMessage::new(
        Address::WhatsApp("79990005566".into()),
        Content::text("x").with_template(Template::new("promo", "ru")),
        Purpose::Marketing,
    );
    assert_eq!(
        ch.send(&m).await.expect("sent").cost.map(|c| c.amount),
        Some(0.0625)
    );
    // Free text inside the window is free.
    open_window(&ch, &c, PERSON).await;
    let r = ch.send(&msg(Content::text("Спасибо"))).await.expect("sent");
    assert_eq!(r.cost.map(|c| c.amount), Some(0.0));
    // Two people reached outside the window; the text inside it does not count.
    assert_eq!(ch.unique_recipients_24h(), 2);
    c.advance(Duration::from_secs(25 * 3600));
    assert_eq!(ch.unique_recipients_24h(), 0);

    assert_eq!(ch.tier(), None);
    let tier = Event::Signal(ChannelSignal::new(
        ChannelKind::WhatsApp,
        c.now(),
        Signal::Tier {
            limit: Some(2000),
            name: Some("TIER_2K".into()),
        },
    ));
    ch.observe(&tier).await.expect("observe");
    assert_eq!(ch.tier(), Some(MessagingTier::Limited(2000)));
    assert_eq!(
        ch.tier().and_then(MessagingTier::daily_unique_limit),
        Some(2000)
    );
}

#[tokio::test]
async fn tokens_never_leak() {
    let fake = FakeGraph::start().await;
    let secret = "EAAGsecret-token-value";
    let ch = WabaChannel::cloud_api("wa-test", PHONE_ID, secret)
        .base_url(fake.base_url())
        .enforce_window(false)
        .build()
        .expect("channel");
    assert!(!format!("{ch:?}").contains(secret));
    let e = ch
        .send(&msg(Content::text("x")))
        .await
        .expect_err("bad token");
    assert_eq!(e.kind(), ErrorKind::ChannelDown);
    assert_eq!(e.provider_code(), Some("190"));
    assert!(!format!("{e} {e:?}").contains(secret));

    // A transport error: nothing listens on the port.
    drop(fake);
    let dead = WabaChannel::cloud_api("wa-test", PHONE_ID, secret)
        .base_url("http://127.0.0.1:9/")
        .enforce_window(false)
        .build()
        .expect("channel");
    let e = dead
        .send(&msg(Content::text("x")))
        .await
        .expect_err("no server");
    assert_eq!(e.kind(), ErrorKind::Temporary);
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains(secret) && !shown.contains("127.0.0.1:9"),
        "{shown}"
    );
}

#[tokio::test]
async fn the_timeout_applies_to_each_request() {
    // A server that takes the connection and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            open.push(conn);
        }
    });
    let ch = WabaChannel::cloud_api("wa-test", PHONE_ID, TOKEN)
        .base_url(format!("http://{addr}/"))
        .enforce_window(false)
        .timeout(Duration::from_millis(300))
        .build()
        .expect("channel");
    let started = std::time::Instant::now();
    let e = ch
        .send(&msg(Content::text("x")))
        .await
        .expect_err("times out");
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown);
    assert!(e.message().contains("timed out"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    hold.abort();
}
