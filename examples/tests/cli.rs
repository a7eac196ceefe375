//! Runs the built `messaging` binary and checks its JSON and exit status (a public contract).

use std::process::Command;

use serde_json::{Value, json};

/// Runs `messaging` with `args`; returns the parsed stdout and the exit code.
fn messaging(args: &[&str]) -> (Value, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_messaging"))
        .args(args)
        .output()
        .expect("the messaging binary runs");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON object ({e}): {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out.status.code().expect("exited normally"))
}

fn rules(v: &Value) -> Vec<String> {
    v["diagnostics"]
        .as_array()
        .expect("diagnostics is an array")
        .iter()
        .map(|d| d["rule"].as_str().expect("rule is a string").to_owned())
        .collect()
}

#[test]
fn lint_reports_errors_with_spans_and_exit_1() {
    let (v, code) = messaging(&[
        "lint",
        "--channel",
        "whatsapp",
        "--first-contact",
        "--name",
        "Анна",
        "Анна, цены тут: bit.ly/x",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        rules(&v),
        ["link-in-first-message", "shortened-link", "no-question"]
    );
    let d = &v["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["span"], json!([27, 35]));
    assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(v["diagnostics"][2]["severity"], "info");
    assert_eq!(v["diagnostics"][2]["span"], Value::Null);
}

#[test]
fn lint_clean_or_warning_only_exits_0() {
    let (v, code) = messaging(&[
        "lint",
        "--channel",
        "telegram",
        "--first-contact",
        "--name",
        "Anna",
        "Anna, your appointment is tomorrow at 10:00. Will you come?",
    ]);
    assert_eq!((v, code), (json!({ "diagnostics": [] }), 0));
    let (v, code) = messaging(&["lint", "--channel", "max", "HUGE SALE TODAY ONLY FOR YOU"]);
    assert_eq!(rules(&v), ["shouting"]);
    assert_eq!(v["diagnostics"][0]["severity"], "warning");
    assert_eq!(code, 0);
}

#[test]
fn lint_purpose_name_and_levels() {
    let (v, code) = messaging(&[
        "lint",
        "--channel",
        "sms",
        "--purpose",
        "marketing",
        "Sale 20% off",
    ]);
    assert_eq!(rules(&v), ["marketing-without-opt-out"]);
    assert_eq!(code, 1);
    let (v, code) = messaging(&[
        "lint",
        "--channel",
        "sms",
        "--purpose",
        "marketing",
        "--allow",
        "marketing-without-opt-out",
        "Sale 20% off",
    ]);
    assert_eq!((rules(&v).len(), code), (0, 0));
    let (v, _) = messaging(&[
        "lint",
        "--channel",
        "whatsapp",
        "--first-contact",
        "--name",
        "Анна",
        "Здравствуйте! Приём завтра. Придёте?",
    ]);
    assert_eq!(rules(&v), ["missing-personalization"]);
    let (v, _) = messaging(&["lint", "--channel", "sms", "Анна, приём завтра"]);
    assert_eq!(rules(&v), ["sms-unicode"]);
}

#[test]
fn lint_usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_messaging"))
        .args(["lint", "--channel", "pigeon", "x"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn segments_matches_the_reference_vectors() {
    let (v, code) = messaging(&["segments", "Привет! Ваша запись к врачу 12.03 в 10:00"]);
    assert_eq!(code, 0);
    assert_eq!(
        v,
        json!({ "encoding": "UCS-2", "segments": 1, "units": 41 })
    );
    let (v, _) = messaging(&["segments", &"€".repeat(81)]);
    assert_eq!(
        v,
        json!({ "encoding": "GSM-7", "segments": 2, "units": 162 })
    );
    let (v, _) = messaging(&["segments", &"1234567890".repeat(16)]);
    assert_eq!(
        v,
        json!({ "encoding": "GSM-7", "segments": 1, "units": 160 })
    );
    let (v, _) = messaging(&["segments", "--translit", &"я".repeat(71)]);
    assert_eq!(v["segments"], 2);
    assert_eq!(v["transliterated"]["encoding"], "GSM-7");
    assert_eq!(v["transliterated"]["segments"], 1);
}

#[test]
fn split_prints_parts() {
    let (v, code) = messaging(&[
        "split",
        "--channel",
        "whatsapp",
        "--max",
        "30",
        "Анна, приём завтра в 10:00. Кабинет 5, второй этаж. Придёте?",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        v,
        json!({ "parts": ["Анна, приём завтра в 10:00.", "Кабинет 5, второй этаж.", "Придёте?"] })
    );
    let (v, code) = messaging(&["split", "--channel", "sms", &"я".repeat(100)]);
    assert_eq!(code, 0);
    let parts = v["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].as_str().map(|s| s.chars().count()), Some(70));
    let (v, code) = messaging(&[
        "split",
        "--channel",
        "telegram",
        "--max",
        "10",
        "https://clinic.ru/a/long/path",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["parts"], json!([]));
    assert!(v["error"].as_str().is_some_and(|e| e.contains("link")));
}

#[test]
fn phone_valid_and_invalid() {
    let (v, code) = messaging(&["phone", "8 (912) 345-67-89"]);
    assert_eq!(code, 0);
    assert_eq!(
        v,
        json!({ "input": "8 (912) 345-67-89", "e164": "+79123456789", "valid": true })
    );
    let (v, code) = messaging(&["phone", "--region", "KZ", "8 701 123 45 67"]);
    assert_eq!((v["e164"].as_str(), code), (Some("+77011234567"), 0));
    let (v, code) = messaging(&["phone", "--region", "RU", "12345"]);
    assert_eq!(code, 1);
    assert_eq!(v["valid"], false);
    assert_eq!(v["input"], "12345");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(v.get("e164").is_none());
}

/// `messaging … | head -c0`: the reader is gone before the answer is written. The exit status
/// is still the answer's (0 for a positive one, 1 for a negative one), never a panic's 101.
#[test]
fn a_closed_stdout_keeps_the_documented_exit_status() {
    for (args, expected) in [
        (&["segments", "Ваша запись к врачу 12.03 в 10:00"][..], 0),
        (&["phone", "--region", "RU", "not a number"][..], 1),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_messaging"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the messaging binary runs");
        // Close the read end at once: the binary's write meets a closed pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("it exits");
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{args:?}: stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{args:?} panicked"
        );
    }
}
