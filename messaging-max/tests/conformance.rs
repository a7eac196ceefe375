//! Every file of the shared conformance corpus under `max/` must parse, read in place
//! (`MESSAGING_CONFORMANCE_DIR`, default `../shared/conformance`); skipped with a notice when the
//! corpus is absent.

use std::path::Path;

use messaging_core::testkit::conformance_files;
use messaging_core::{Address, ErrorKind, Event, Signal};
use messaging_max::{BotInfo, UpdateParser, check_contact, classify_error, verify_contact_hash};
use serde_json::Value;

fn files() -> Vec<std::path::PathBuf> {
    conformance_files(env!("CARGO_MANIFEST_DIR"), "max", "json")
}

fn name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn folder(p: &Path) -> &str {
    p.parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("")
}

/// The HTTP status Max answers with for an error code (as far as the sources say).
fn status_for(code: &str) -> u16 {
    match code {
        "verify.token" => 401,
        "chat.denied" | "access.denied" => 403,
        "chat.not.found" | "dialog.not.found" => 404,
        "too.many.requests" => 429,
        _ => 400,
    }
}

#[test]
fn every_max_file_parses() {
    let files = files();
    if files.is_empty() {
        println!("skipped: no Max conformance files");
        return;
    }
    let parser = UpdateParser::new();
    let mut checked = 0;
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let json: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        match folder(path) {
            "updates" => {
                parser
                    .parse(&bytes)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            "responses" if name(path).starts_with("error_") => {
                let code = json["code"].as_str().unwrap();
                let e = classify_error(status_for(code), &bytes, None);
                assert_eq!(e.provider_code(), Some(code), "{}", path.display());
                assert_ne!(e.kind(), ErrorKind::Unexpected, "{}", path.display());
            }
            "responses" if json.get("updates").is_some() => {
                let events = parser
                    .parse(&bytes)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(
                    events.len(),
                    json["updates"].as_array().unwrap().len(),
                    "{}",
                    path.display()
                );
            }
            "responses" => {
                let info: BotInfo = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(info.user_id.is_some(), "{}", path.display());
            }
            "fragments" => {
                let c = check_contact(&json, 7, Some(b"secret"));
                assert!(c.hash_valid.is_some(), "{}", path.display());
            }
            other => panic!("unexpected folder {other} for {}", path.display()),
        }
        checked += 1;
    }
    assert_eq!(checked, files.len());
}

fn events_of(file: &str) -> Option<Vec<Event>> {
    let path = files().into_iter().find(|p| name(p) == file)?;
    Some(
        UpdateParser::new()
            .parse(&std::fs::read(path).unwrap())
            .unwrap(),
    )
}

fn json_of(e: &Event) -> Value {
    serde_json::to_value(e).unwrap()
}

#[test]
fn update_files_mean_what_they_say() {
    let Some(ev) = events_of("message_created_dialog.json") else {
        println!("skipped: conformance corpus absent");
        return;
    };
    let v = json_of(&ev[0]);
    assert_eq!(v["kind"], "inbound");
    assert_eq!(v["channel"], "max");
    assert_eq!(v["from"], "10001");
    assert_eq!(v["text"], "вапва");
    assert_eq!(v["at"], "2026-02-09T23:29:47.821Z");
    assert_eq!(
        v["provider_message_id"],
        "mid.0000000008a53b9b019c44bd612d33e0"
    );
    assert_eq!(
        v["address"],
        serde_json::json!({"type": "max_user", "value": 10001})
    );

    let ev = events_of("message_created_chat_forward_link.json").unwrap();
    let Event::Inbound(m) = &ev[0] else { panic!() };
    assert_eq!(m.address, Address::MaxChat(-70_801_090_403_050));
    assert_eq!(m.from, "123456789");
    assert_eq!(m.reply_to, None, "a forward is not a reply");

    let ev = events_of("bot_started_with_payload_schema_example.json").unwrap();
    let v = json_of(&ev[0]);
    assert_eq!(v["start_payload"], "any data meaningful to bot");
    assert_eq!(v["from"], "1234567890");
    let ev = events_of("bot_started_no_payload.json").unwrap();
    assert!(json_of(&ev[0]).get("start_payload").is_none());

    let ev = events_of("message_callback.json").unwrap();
    let v = json_of(&ev[0]);
    assert_eq!(v["button_payload"], "picture");
    assert_eq!(v["from"], "123456789");
    assert_eq!(v["reply_to"], "mid.000000000adf429c019d47d58f2b3d9e");
    let ev = events_of("message_callback_with_keyboard_and_markup.json").unwrap();
    assert_eq!(json_of(&ev[0])["button_payload"], "utm_view_6");

    for f in ["bot_stopped.json", "dialog_removed.json"] {
        let ev = events_of(f).unwrap();
        let Event::Signal(s) = &ev[0] else {
            panic!("{f}")
        };
        assert_eq!(
            s.signal,
            Signal::Blocked {
                from: "123456789".into(),
                address: Address::MaxUser(123_456_789)
            },
            "{f}"
        );
        let v = json_of(&ev[0]);
        assert_eq!(v["signal"], "blocked");
        assert_eq!(v["at"], "2026-04-01T06:40:04.499Z");
    }
    let ev = events_of("user_removed.json").unwrap();
    let Event::Signal(s) = &ev[0] else { panic!() };
    assert!(matches!(
        &s.signal,
        Signal::Blocked {
            address: Address::MaxChat(-70_801_090_403_050),
            ..
        }
    ));
    assert!(events_of("user_added_channel.json").unwrap().is_empty());
}

#[test]
fn error_files_map_to_their_kinds() {
    let files: Vec<_> = files()
        .into_iter()
        .filter(|p| name(p).starts_with("error_"))
        .collect();
    if files.is_empty() {
        println!("skipped: conformance corpus absent");
        return;
    }
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let want = match name(&path) {
            n if n.contains("verify_token") => ErrorKind::ChannelDown,
            n if n.contains("attachment_not_ready") => ErrorKind::Temporary,
            n if n.contains("chat_denied") => ErrorKind::Unreachable,
            n => panic!("no expectation for {n}; add one"),
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let code = v["code"].as_str().unwrap();
        assert_eq!(classify_error(status_for(code), &bytes, None).kind(), want);
        // The code decides even when the HTTP status is a generic 400.
        assert_eq!(
            classify_error(400, &bytes, None).kind(),
            want,
            "{}",
            path.display()
        );
    }
}

#[test]
fn contact_fragment_hash_is_checked() {
    let Some(path) = files()
        .into_iter()
        .find(|p| name(p) == "contact_attachment_payload_hmac_secret.json")
    else {
        println!("skipped: conformance corpus absent");
        return;
    };
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let vcf = v["vcf_info"].as_str().unwrap();
    let hash = v["hash"].as_str().unwrap();
    assert!(verify_contact_hash(b"secret", vcf, hash));
    assert!(!verify_contact_hash(b"Secret", vcf, hash));
    let c = check_contact(&v, 7, Some(b"secret"));
    assert_eq!(c.hash_valid, Some(true));
    assert_eq!(c.user_id_matches, Some(true));
    // "+1 (234) 567-890" is not a valid number, so nothing can be linked.
    assert_eq!(c.phone, None);
    assert!(!c.is_own);
    assert_eq!(
        check_contact(&v, 8, Some(b"secret")).user_id_matches,
        Some(false)
    );
}
