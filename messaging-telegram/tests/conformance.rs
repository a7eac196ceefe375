//! Every Telegram payload of the shared conformance corpus parses, read in place; the known ones
//! give exactly the expected events and error kinds.

use std::path::Path;
use std::time::Duration;

use messaging_core::testkit::conformance_files;
use messaging_core::{Address, ErrorKind, Event, InboundAction, Signal};
use messaging_telegram::{ApiError, is_blocked, migrated_to, parse_update, parse_updates_response};
use serde_json::Value;

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn every_update_parses_and_known_ones_match() {
    let files = conformance_files(env!("CARGO_MANIFEST_DIR"), "telegram/updates", "json");
    if files.is_empty() {
        println!("skipped: no telegram/updates conformance files");
        return;
    }
    let mut checked = 0;
    for f in &files {
        let body = read(f);
        let events = parse_update(&body, None)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", f.display()));
        let n = name(f);
        let inbound = || match events.as_slice() {
            [Event::Inbound(m)] => m.clone(),
            other => panic!("{n}: expected one inbound message, got {other:?}"),
        };
        match n.as_str() {
            "callback_query_channel_message.json" => {
                let m = inbound();
                assert_eq!(m.button_payload.as_deref(), Some("test"));
                assert_eq!(m.address, Address::Telegram(900963191));
                assert_eq!(
                    m.reply_to.as_ref().map(|r| r.as_str()),
                    Some("-1001254477603:58")
                );
                checked += 1;
            }
            "contact_without_user_id.json" => {
                let m = inbound();
                // No user_id: it cannot be the sender's own.
                assert_eq!(m.contact_is_own, Some(false));
                assert!(m.contact_phone.is_some() || m.text.as_deref() == Some("0788531373"));
                checked += 1;
            }
            "edited_message_official_docs.json" => {
                let m = inbound();
                assert_eq!(m.text.as_deref(), Some("Edited text"));
                assert_eq!(m.at.timestamp(), 1441646600);
                assert_eq!(
                    m.sender_name.as_deref(),
                    Some("Test Firstname Test Lastname")
                );
                // An edit of message 1365, not a new message.
                assert_eq!(
                    m.action,
                    InboundAction::Edit {
                        of: "1111111:1365".into()
                    }
                );
                assert!(!m.counts_as_reply());
                checked += 1;
            }
            "message_reaction.json" => {
                let m = inbound();
                assert_eq!(
                    m.action,
                    InboundAction::Reaction {
                        to: "-1002184233434:35".into(),
                        emoji: Some("\u{1f32d}".into())
                    }
                );
                assert_eq!(m.from, "1459074222");
                assert_eq!(m.address, Address::Telegram(-1002184233434));
                assert_eq!(m.at.timestamp(), 1721306082);
                assert!(!m.counts_as_reply());
                checked += 1;
            }
            "group_migrate_to_chat_id.json" => {
                assert!(events.is_empty(), "{n}: {events:?}");
                checked += 1;
            }
            "my_chat_member_kicked_user_blocked_bot.json" => {
                match events.as_slice() {
                    [Event::Signal(s)] => assert_eq!(
                        s.signal,
                        Signal::Blocked {
                            from: "0".into(),
                            address: Address::Telegram(0)
                        }
                    ),
                    other => panic!("{n}: {other:?}"),
                }
                let v = serde_json::to_value(&events[0]).expect("serializes");
                assert_eq!(v["kind"], "signal");
                assert_eq!(v["signal"], "blocked");
                checked += 1;
            }
            "start_command_official_docs.json" => {
                let m = inbound();
                assert_eq!(m.text.as_deref(), Some("/start"));
                assert_eq!(m.start_payload, None);
                assert_eq!(m.from, "1111111");
                checked += 1;
            }
            "supergroup_bot_command_reply_thread.json" => {
                let m = inbound();
                assert_eq!(m.text.as_deref(), Some("/report"));
                assert_eq!(m.address, Address::Telegram(-1001293752024));
                assert_eq!(
                    m.reply_to.as_ref().map(|r| r.as_str()),
                    Some("-1001293752024:134545")
                );
                checked += 1;
            }
            "text_private_link_preview_options.json" => {
                assert_eq!(inbound().text.as_deref(), Some("hello there"));
                checked += 1;
            }
            "text_private_plain.json" => {
                let m = inbound();
                assert_eq!(m.text.as_deref(), Some("4"));
                assert_eq!(
                    m.provider_message_id.as_ref().map(|r| r.as_str()),
                    Some("408258968:154")
                );
                checked += 1;
            }
            other => println!(
                "{other}: parsed into {} event(s), no expectations",
                events.len()
            ),
        }
    }
    println!(
        "{} update files parsed, {checked} checked in detail",
        files.len()
    );
    assert!(checked >= 9, "only {checked} known files found");
}

struct Expect {
    kind: ErrorKind,
    code: &'static str,
    blocked: bool,
    retry_after: Option<u64>,
    migrated: Option<i64>,
}

fn expectation(file: &str) -> Option<Expect> {
    let e = |kind, code, blocked, retry_after, migrated| Expect {
        kind,
        code,
        blocked,
        retry_after,
        migrated,
    };
    Some(match file {
        "400_chat_not_found.json" | "400_chat_not_found_frankenstein.json" => {
            e(ErrorKind::Unreachable, "400", false, None, None)
        }
        "400_group_chat_migrated.json" => {
            e(ErrorKind::Unreachable, "400", false, None, Some(-123456789))
        }
        "401_unauthorized.json" => e(ErrorKind::ChannelDown, "401", false, None, None),
        "403_bot_blocked_by_user.json" | "403_user_deactivated.json" => {
            e(ErrorKind::Unreachable, "403", true, None, None)
        }
        "403_cant_initiate_conversation.json" => {
            e(ErrorKind::Unreachable, "403", false, None, None)
        }
        "429_too_many_requests_placeholder.json" => {
            e(ErrorKind::RateLimited, "429", false, Some(123), None)
        }
        "429_too_many_requests_retry_after_30.json" => {
            e(ErrorKind::RateLimited, "429", false, Some(30), None)
        }
        "error_without_error_code.json" => e(ErrorKind::Unreachable, "403", true, None, None),
        _ => return None,
    })
}

#[test]
fn every_response_parses_and_errors_map_by_table() {
    let files = conformance_files(env!("CARGO_MANIFEST_DIR"), "telegram/responses", "json");
    if files.is_empty() {
        println!("skipped: no telegram/responses conformance files");
        return;
    }
    let mut checked = 0;
    for f in &files {
        let body = read(f);
        let n = name(f);
        let v: Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{n} is not JSON: {e}"));
        if v["ok"] == Value::Bool(true) {
            match n.as_str() {
                "getUpdates_ok.json" => {
                    let (last, events) = parse_updates_response(&v).expect("updates");
                    assert_eq!(last, Some(379656753));
                    assert!(
                        matches!(&events[..], [Event::Inbound(m)] if m.text.as_deref() == Some("dsaf"))
                    );
                    checked += 1;
                }
                "sendMessage_ok.json" => {
                    assert_eq!(v["result"]["message_id"], 2746);
                    checked += 1;
                }
                _ => println!("{n}: a success body, no expectations"),
            }
            continue;
        }
        // The HTTP status equals error_code on the real server; a body without one came with
        // an unknown status.
        let status = v["error_code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(0);
        let api = ApiError::from_response(status, None, &body);
        let err = api.clone().into_channel_error();
        assert_eq!(messaging_telegram::api_error(&err), Some(&api));
        match expectation(&n) {
            Some(x) => {
                assert_eq!(err.kind(), x.kind, "{n}");
                assert_eq!(err.provider_code(), Some(x.code), "{n}");
                assert_eq!(is_blocked(&err), x.blocked, "{n}");
                assert_eq!(
                    err.retry_after(),
                    x.retry_after.map(Duration::from_secs),
                    "{n}"
                );
                assert_eq!(migrated_to(&err), x.migrated, "{n}");
                assert!(!err.message().is_empty());
                checked += 1;
            }
            None => println!("{n}: mapped to {} with no expectations", err.kind()),
        }
    }
    println!(
        "{} response files parsed, {checked} checked in detail",
        files.len()
    );
    assert!(checked >= 12, "only {checked} known files found");
}
