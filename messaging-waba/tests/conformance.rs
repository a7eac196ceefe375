//! Every file of the shared conformance corpus (`../shared/conformance/waba/`) parses into the
//! events it holds, read in place; the `errors/` files map to the expected kinds.

use std::path::{Path, PathBuf};

use messaging_core::testkit::conformance_files;
use messaging_core::{ErrorKind, Event, InboundAction, Signal};
use messaging_waba::{GraphError, WabaWebhook};

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A one-line summary of an event, for comparing with the expectations below.
fn summary(e: &Event) -> String {
    let or = |o: Option<&str>| o.unwrap_or("-").to_owned();
    match e {
        Event::Inbound(m) => {
            let action = match &m.action {
                InboundAction::Message => String::new(),
                InboundAction::Reaction { to, emoji } => {
                    format!(" action=reaction:{to}:{}", or(emoji.as_deref()))
                }
                other => format!(
                    " action={}:{}",
                    other.name(),
                    or(other.target().map(|t| t.as_str()))
                ),
            };
            format!(
                "in from={} text={} payload={} name={}{action}",
                m.from,
                or(m.text.as_deref()),
                or(m.button_payload.as_deref()),
                or(m.sender_name.as_deref())
            )
        }
        Event::Delivery(d) => format!(
            "dlv id={} status={} to={} nid={} err={}",
            d.provider_message_id,
            serde_json::to_value(d.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            or(d.recipient.as_deref()),
            or(d.notification_id.as_ref().map(|n| n.as_str())),
            d.error
                .as_ref()
                .map(|e| format!("{}:{}", e.code, e.kind.map(|k| k.as_str()).unwrap_or("-")))
                .unwrap_or_else(|| "-".into())
        ),
        Event::Signal(s) => match &s.signal {
            Signal::Quality {
                rating,
                phone_number,
            } => format!("quality {rating} phone={}", or(phone_number.as_deref())),
            Signal::Restriction { until, reason } => format!(
                "restriction until={} reason={}",
                until.map(|u| u.to_rfc3339()).unwrap_or_else(|| "-".into()),
                or(reason.as_deref())
            ),
            Signal::TemplateStatus {
                name,
                language,
                status,
                reason,
            } => format!(
                "template {name} {} {status} reason={}",
                or(language.as_deref()),
                or(reason.as_deref())
            ),
            Signal::Tier { limit, name } => format!(
                "tier {} {}",
                limit
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "unlimited".into()),
                or(name.as_deref())
            ),
            other => format!("signal {}", other.name()),
        },
        _ => "other".into(),
    }
}

fn expected(file: &str) -> Option<Vec<&'static str>> {
    Some(match file {
        "account_update_restriction.json" => vec![
            "restriction until=2022-01-04T21:08:18+00:00 reason=RESTRICTED_BIZ_INITIATED_MESSAGING",
        ],
        "batch_one_entry_two_changes.json" => vec![
            "in from=PHONE_NUMBER text=MESSAGE_BODY payload=- name=NAME",
            "in from=PHONE_NUMBER text=MESSAGE_BODY2 payload=- name=NAME",
        ],
        "button_template_quick_reply.json" => {
            vec!["in from=972987654321 text=title payload=callback_data name=Test Name"]
        }
        // The shared numbers (+1 555-555-5555, ...) are fictional: when the phone parser refuses
        // them the first is kept raw as the text (see the test below), else it is the contact.
        "contacts.json" => vec!["in from=972987654321 text=- payload=- name=Test Name"],
        "courier_status_failed_131014_int_expiration.json" => {
            vec!["dlv id=external_id status=failed to=5678 nid=- err=131014:unexpected"]
        }
        // A value-level system error (code 0) is not a person's message or a report.
        "courier_value_errors_system.json" => vec![],
        "document_forwarded.json" => {
            vec!["in from=972987654321 text=caption payload=- name=Test Name"]
        }
        "image.json" => vec!["in from=972987654321 text=- payload=- name=Test Name"],
        "interactive_button_reply.json" | "interactive_list_reply.json" => {
            vec!["in from=972987654321 text=title payload=callback_data name=Test Name"]
        }
        "location_forwarded.json" => vec!["in from=972987654321 text=- payload=- name=Test Name"],
        "message_template_status_update_approved.json" => {
            vec!["template order_confirmation en_US APPROVED reason=-"]
        }
        "message_template_status_update_rejected.json" => {
            vec!["template abandoned_cart en REJECTED reason=INVALID_FORMAT"]
        }
        "meta_phone_number_quality_update_flagged.json" => vec![
            "quality FLAGGED phone=124545784358810",
            "tier 10000 TIER_10K",
        ],
        "meta_phone_number_quality_update_throughput_upgrade.json" => {
            vec!["tier unlimited TIER_UNLIMITED"]
        }
        "meta_status_failed_131049.json" => vec![
            "dlv id=wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA status=failed to=16505551234 nid=- err=131049:unreachable",
        ],
        "meta_status_sent_pmp.json" | "meta_status_sent_v24_no_conversation_no_pricing.json" => {
            vec![
                "dlv id=wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA= status=sent to=16505551234 nid=- err=-",
            ]
        }
        "meta_text.json" => vec![
            "in from=16505551234 text=Does it come in another color? payload=- name=Sheena Nelson",
        ],
        "reaction.json" => vec![
            "in from=972987654321 text=- payload=- name=Test Name action=reaction:wamid.yzxyzx=:\u{1f62e}",
        ],
        "reaction_removed_empty_emoji.json" => {
            vec![
                "in from=972987654321 text=- payload=- name=Test Name action=reaction:wamid.yzxyzx=:-",
            ]
        }
        "status_delivered_cbp.json" => {
            vec!["dlv id=wamid.xyzxyz status=delivered to=972987654321 nid=- err=-"]
        }
        "status_failed_130472.json" => {
            vec!["dlv id=wamid.xyzxyz status=failed to=972987654321 nid=- err=130472:unreachable"]
        }
        "status_read_cbp.json" => {
            vec!["dlv id=wamid.xyzxyz status=read to=972987654321 nid=- err=-"]
        }
        "status_sent_biz_opaque_callback_data.json" => {
            vec!["dlv id=wamid.xyzxyz status=sent to=972987654321 nid=some data err=-"]
        }
        "status_sent_cbp_conversation.json" => {
            vec!["dlv id=wamid.xyzxyz status=sent to=972987654321 nid=- err=-"]
        }
        // `user_changed_number` is WhatsApp speaking, not the person.
        "system_user_changed_number.json" => vec![],
        "text_with_bsuid.json" => {
            vec!["in from=972987654321 text=Body Text payload=- name=Test Name"]
        }
        "unsupported_with_errors_131051.json" => {
            vec!["in from=972987654321 text=- payload=- name=Test Name"]
        }
        _ => return None,
    })
}

fn webhook_files() -> Vec<PathBuf> {
    conformance_files(env!("CARGO_MANIFEST_DIR"), "waba/webhooks", "json")
}

#[test]
fn every_webhook_file_parses_into_its_events() {
    let files = webhook_files();
    if files.is_empty() {
        println!("skipped: no waba webhook files in the conformance corpus");
        return;
    }
    let handler = WabaWebhook::new();
    let mut unexpected = Vec::new();
    for f in &files {
        let body = std::fs::read(f).expect("read corpus file");
        let events = handler
            .parse_body(&body)
            .unwrap_or_else(|e| panic!("{}: {e}", name(f)));
        let mut got: Vec<String> = events.iter().map(summary).collect();
        if name(f) == "contacts.json" {
            for g in &mut got {
                *g = g.replace("text=+1 555-555-5555", "text=-");
            }
            if let Some(Event::Inbound(m)) = events.first() {
                assert!(
                    m.contact_phone.is_some() || m.text.as_deref() == Some("+1 555-555-5555"),
                    "a shared contact never vanishes: {m:?}"
                );
            }
        }
        match expected(&name(f)) {
            Some(want) => assert_eq!(got, want, "{}", name(f)),
            None => unexpected.push(format!("{}: {got:?}", name(f))),
        }
        // Every event serializes to the shared shape.
        for e in &events {
            let v = serde_json::to_value(e).expect("serialize");
            assert_eq!(v["channel"], "whatsapp", "{}", name(f));
            assert!(
                v["at"].as_str().is_some_and(|a| a.contains('T')),
                "{}",
                name(f)
            );
            match e {
                Event::Delivery(_) => {
                    assert_eq!(v["kind"], "delivery");
                    assert!(v["provider_message_id"].is_string());
                }
                Event::Inbound(_) => {
                    assert_eq!(v["kind"], "inbound");
                    assert!(v["from"].is_string());
                    assert!(v["text"].is_string() || v["text"].is_null());
                }
                Event::Signal(_) => {
                    assert_eq!(v["kind"], "signal");
                    assert!(v["signal"].is_string());
                }
                _ => {}
            }
        }
    }
    assert!(
        unexpected.is_empty(),
        "corpus files without expectations (add them): {unexpected:#?}"
    );
}

#[test]
fn every_webhook_file_passes_a_signature_made_over_its_raw_bytes() {
    let handler = WabaWebhook::new().app_secret("corpus-secret");
    for f in webhook_files() {
        let body = std::fs::read(&f).expect("read corpus file");
        let mut headers = http::HeaderMap::new();
        let sig = format!(
            "sha256={}",
            messaging_core::webhook::hmac_sha256_hex(b"corpus-secret", &body)
        );
        headers.insert("x-hub-signature-256", sig.parse().expect("header"));
        let req = messaging_core::webhook::WebhookRequest::post(&headers, &body);
        use messaging_core::webhook::WebhookHandler;
        handler
            .verify_and_parse(&req)
            .unwrap_or_else(|e| panic!("{}: {e}", name(&f)));
    }
}

#[test]
fn every_error_file_maps_to_its_kind() {
    let files = conformance_files(env!("CARGO_MANIFEST_DIR"), "waba/errors", "json");
    if files.is_empty() {
        println!("skipped: no waba error files in the conformance corpus");
        return;
    }
    for f in &files {
        let n = name(f);
        let code: i64 = n
            .split('_')
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{n}: file name starts with the code"));
        let want = match code {
            100 | 131009 | 131053 => ErrorKind::InvalidContent,
            130429 | 131056 | 613 => ErrorKind::RateLimited,
            131047 => ErrorKind::NeedsTemplate,
            190 | 368 => ErrorKind::ChannelDown,
            other => panic!("{n}: no expectation for code {other}"),
        };
        let body = std::fs::read(f).expect("read corpus file");
        let g = GraphError::from_body(&body).unwrap_or_else(|| panic!("{n}: not a Graph error"));
        assert_eq!(g.code, code, "{n}");
        // Decided by code whatever the HTTP status.
        for status in [400, 401, 403, 429, 500] {
            let e = messaging_waba::error::error_from_response(status, None, &body);
            assert_eq!(e.kind(), want, "{n} with HTTP {status}");
            assert_eq!(e.provider_code(), Some(code.to_string().as_str()), "{n}");
        }
        if want == ErrorKind::RateLimited {
            assert!(g.to_channel_error(None).retry_after().is_some(), "{n}");
        }
    }
}

#[test]
fn webhook_shaped_error_objects_map_inside_a_failed_status() {
    let files = conformance_files(env!("CARGO_MANIFEST_DIR"), "waba/errors", "json");
    let objects: Vec<_> = files
        .iter()
        .filter(|f| name(f).ends_with("_error_object.json"))
        .collect();
    if objects.is_empty() {
        println!("skipped: no *_error_object.json files in the conformance corpus");
        return;
    }
    for f in objects {
        let error: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f).expect("read")).expect("json");
        let code = error["code"].as_i64().expect("code");
        let body = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "statuses": [{"id": "wamid.X", "status": "failed", "timestamp": "1700000000", "recipient_id": "1", "errors": [error]}]}}]}]});
        let events = WabaWebhook::new()
            .parse_body(body.to_string().as_bytes())
            .expect("parse");
        let Some(Event::Delivery(d)) = events.first() else {
            panic!("{}: {events:?}", name(f))
        };
        let e = d.error.as_ref().expect("error");
        assert_eq!(e.code, code.to_string());
        assert_eq!(
            e.kind,
            Some(messaging_waba::error::kind_for_code(code)),
            "{}",
            name(f)
        );
        assert!(!e.message.is_empty());
    }
}
