//! `messaging parse-webhook` and `messaging simulate`: JSON shapes and exit codes (a public
//! contract). Provider bodies come from the shared conformance corpus, read in place.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use messaging::webhook::hmac_sha256_hex;
use serde_json::Value;

fn messaging(args: &[&str], stdin: &[u8]) -> (Value, i32) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_messaging"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the messaging binary runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("body written");
    let out = child.wait_with_output().expect("it exits");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON value ({e}): {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out.status.code().expect("exited normally"))
}

fn corpus(rel: &str) -> Option<Vec<u8>> {
    let dir: PathBuf = messaging::testkit::conformance_dir(env!("CARGO_MANIFEST_DIR"))?;
    Some(std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")))
}

#[test]
fn waba_inbound_text_parses_to_the_shared_shape() {
    let Some(body) = corpus("waba/webhooks/meta_text.json") else {
        return;
    };
    let (v, code) = messaging(&["parse-webhook", "--provider", "waba"], &body);
    assert_eq!(code, 0, "{v}");
    let events = v.as_array().expect("an array of events");
    let inbound = events
        .iter()
        .find(|e| e["kind"] == "inbound")
        .expect("an inbound event");
    assert_eq!(inbound["channel"], "whatsapp");
    assert!(inbound["from"].as_str().is_some_and(|f| !f.is_empty()));
    assert!(inbound["at"].as_str().is_some_and(|t| t.contains('T')));
    assert!(inbound.get("text").is_some());
}

#[test]
fn waba_signature_is_checked_with_an_app_secret() {
    let Some(body) = corpus("waba/webhooks/status_delivered_cbp.json") else {
        return;
    };
    let good = format!(
        "X-Hub-Signature-256: sha256={}",
        hmac_sha256_hex(b"app-secret", &body)
    );
    let (v, code) = messaging(
        &[
            "parse-webhook",
            "--provider",
            "waba",
            "--app-secret",
            "app-secret",
            "--header",
            &good,
        ],
        &body,
    );
    assert_eq!(code, 0, "{v}");
    let d = &v[0];
    assert_eq!(d["kind"], "delivery");
    assert_eq!(d["status"], "delivered");
    assert!(d["provider_message_id"].as_str().is_some());

    let wrong = format!(
        "X-Hub-Signature-256: sha256={}",
        hmac_sha256_hex(b"another-secret", &body)
    );
    for headers in [vec!["--header", wrong.as_str()], vec![]] {
        let mut args = vec![
            "parse-webhook",
            "--provider",
            "waba",
            "--app-secret",
            "app-secret",
        ];
        args.extend(headers);
        let (v, code) = messaging(&args, &body);
        assert_eq!(code, 1);
        assert!(v.get("error").is_some(), "a JSON error: {v}");
        assert!(!v.is_array(), "no events are printed");
    }
}

#[test]
fn a_body_that_is_not_a_whatsapp_webhook_is_an_error() {
    let (v, code) = messaging(
        &["parse-webhook", "--provider", "waba"],
        b"{\"update_id\":1}",
    );
    assert_eq!(code, 1);
    assert_eq!(v["error"]["kind"], "malformed");
    let (_, code) = messaging(&["parse-webhook", "--provider", "waba"], b"not json");
    assert_eq!(code, 1);
}

#[test]
fn telegram_start_payload_contact_and_secret() {
    let Some(body) = corpus("telegram/updates/start_command_official_docs.json") else {
        return;
    };
    let (v, code) = messaging(&["parse-webhook", "--provider", "telegram"], &body);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v[0]["kind"], "inbound");
    assert_eq!(v[0]["channel"], "telegram");

    let (v, code) = messaging(
        &[
            "parse-webhook",
            "--provider",
            "telegram",
            "--secret",
            "s3cret",
        ],
        &body,
    );
    assert_eq!(code, 1, "a missing secret header is refused");
    assert_eq!(v["error"]["kind"], "missing_signature");
    let (v, code) = messaging(
        &[
            "parse-webhook",
            "--provider",
            "telegram",
            "--secret",
            "s3cret",
            "--header",
            "X-Telegram-Bot-Api-Secret-Token: wrong",
        ],
        &body,
    );
    assert_eq!(code, 1);
    assert_eq!(v["error"]["kind"], "bad_signature");
    let (_, code) = messaging(
        &[
            "parse-webhook",
            "--provider",
            "telegram",
            "--secret",
            "s3cret",
            "--header",
            "X-Telegram-Bot-Api-Secret-Token: s3cret",
        ],
        &body,
    );
    assert_eq!(code, 0);

    let Some(blocked) = corpus("telegram/updates/my_chat_member_kicked_user_blocked_bot.json")
    else {
        return;
    };
    let (v, code) = messaging(&["parse-webhook", "--provider", "telegram"], &blocked);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v[0]["kind"], "signal");
    assert_eq!(v[0]["signal"], "blocked");
}

#[test]
fn max_bot_started_has_its_start_payload() {
    let Some(body) = corpus("max/updates/bot_started_with_payload_schema_example.json") else {
        return;
    };
    let (v, code) = messaging(&["parse-webhook", "--provider", "max"], &body);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v[0]["kind"], "inbound");
    assert_eq!(v[0]["channel"], "max");
    assert!(v[0]["start_payload"].as_str().is_some(), "{v}");
    let (_, code) = messaging(
        &["parse-webhook", "--provider", "max", "--secret", "abc"],
        &body,
    );
    assert_eq!(code, 1);
}

#[test]
fn twilio_signature_over_url_and_params() {
    let Some(body) = corpus("sms/callbacks/twilio_status_delivered.txt") else {
        return;
    };
    let url = "https://clinic.example/webhooks/twilio";
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let sig = messaging::sms::twilio::compute_signature("token", url, &params);
    let header = format!("X-Twilio-Signature: {sig}");
    let (v, code) = messaging(
        &[
            "parse-webhook",
            "--provider",
            "twilio",
            "--auth-token",
            "token",
            "--url",
            url,
            "--header",
            &header,
        ],
        &body,
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v[0]["kind"], "delivery");
    assert_eq!(v[0]["channel"], "sms");
    assert_eq!(v[0]["status"], "delivered");

    let mut tampered = body.clone();
    tampered.extend_from_slice(b"&Extra=1");
    let (v, code) = messaging(
        &[
            "parse-webhook",
            "--provider",
            "twilio",
            "--auth-token",
            "token",
            "--url",
            url,
            "--header",
            &header,
        ],
        &tampered,
    );
    assert_eq!(code, 1);
    assert_eq!(v["error"]["kind"], "bad_signature");
    let (_, code) = messaging(
        &[
            "parse-webhook",
            "--provider",
            "twilio",
            "--auth-token",
            "token",
            "--url",
            url,
        ],
        &body,
    );
    assert_eq!(code, 1, "a missing signature is refused");
}

fn simulate(scenario: &str, policy: &str, n: &str) -> Value {
    let (v, code) = messaging(
        &[
            "simulate",
            "--scenario",
            scenario,
            "--policy",
            policy,
            "--notifications",
            n,
        ],
        b"",
    );
    assert_eq!(code, 0, "{v}");
    for key in [
        "notifications",
        "delivered",
        "p50_time_to_delivery_s",
        "p90_time_to_delivery_s",
        "cost_total",
        "by_channel",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    v
}

#[test]
fn adaptive_routing_beats_fixed_windows_during_a_whatsapp_outage() {
    let fixed = simulate("whatsapp-outage", "fixed", "600");
    let adaptive = simulate("whatsapp-outage", "adaptive", "600");
    let f = fixed["p50_time_to_delivery_s"].as_f64().unwrap_or(0.0);
    let a = adaptive["p50_time_to_delivery_s"]
        .as_f64()
        .unwrap_or(f64::MAX);
    assert!(f >= 1800.0, "fixed windows wait on the dead channel: {f}");
    assert!(a <= f / 10.0, "adaptive p50 {a} vs fixed {f}");
    assert_eq!(adaptive["delivered"], 600);
}

#[test]
fn adaptive_costs_no_more_when_channels_are_healthy() {
    let fixed = simulate("healthy", "fixed", "400");
    let adaptive = simulate("healthy", "adaptive", "400");
    let f = fixed["cost_total"].as_f64().unwrap_or(0.0);
    let a = adaptive["cost_total"].as_f64().unwrap_or(f64::MAX);
    assert!(f > 0.0);
    assert!(a <= f * 1.05, "adaptive {a} vs fixed {f}");
}

#[test]
fn unknown_scenario_is_an_error() {
    let (v, code) = messaging(
        &[
            "simulate",
            "--scenario",
            "no-such-scenario",
            "--policy",
            "fixed",
        ],
        b"",
    );
    assert_eq!(code, 1);
    assert_eq!(v["error"]["kind"], "scenario");
}
