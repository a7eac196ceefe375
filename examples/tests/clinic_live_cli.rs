//! Runs the built `clinic-reminders` binary in `--live` mode with configuration mistakes: it must
//! exit 2 with a clear message, send nothing and never print a token. (Sending through the
//! fake providers is tested end to end in `messaging-tests`, `tests/live_demo.rs`.)

use std::process::{Command, Output};

/// Runs `clinic-reminders` with exactly these environment variables.
fn clinic(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clinic-reminders"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the clinic-reminders binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn live_without_credentials_exits_2_and_lists_the_variables() {
    for args in [&["--live"][..], &["--live", "--recipients", "patients.csv"]] {
        let out = clinic(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("needs at least one provider configured in the environment"),
            "{err}"
        );
        for var in [
            "WABA_TOKEN",
            "WABA_PHONE_NUMBER_ID",
            "META_APP_SECRET",
            "TELEGRAM_BOT_TOKEN",
            "MAX_BOT_TOKEN",
            "SMSRU_API_ID",
            "SMSC_LOGIN",
            "SMSAERO_API_KEY",
            "TWILIO_AUTH_TOKEN",
        ] {
            assert!(err.contains(var), "{var} is not listed: {err}");
        }
        assert!(text(&out.stdout).is_empty(), "nothing runs");
    }
}

#[test]
fn live_with_a_token_but_no_recipients_file_exits_2() {
    let out = clinic(
        &["--live"],
        &[("TELEGRAM_BOT_TOKEN", "123456:tg-token-xyz")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--recipients"), "{err}");
    assert!(!err.contains("tg-token-xyz"));
}

#[test]
fn live_with_a_bad_recipients_line_exits_2_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("patients.csv");
    std::fs::write(
        &csv,
        "name,phone,telegram\nАнна,+79123456789,42\nБорис,12345\nВера,+79120000003\n",
    )
    .expect("write");
    let csv = csv.to_str().expect("UTF-8 path");
    let out = clinic(
        &["--live", "--recipients", csv],
        &[("TELEGRAM_BOT_TOKEN", "123456:tg-token-xyz")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("patients.csv line 3: bad phone"), "{err}");
    assert!(!err.contains("tg-token-xyz") && !text(&out.stdout).contains("tg-token-xyz"));

    let out = clinic(
        &["--live", "--recipients", "/nonexistent/patients.csv"],
        &[("SMSRU_API_ID", "smsru-secret")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/patients.csv"));
}

#[test]
fn incomplete_credentials_exit_2_without_echoing_them() {
    let out = clinic(&["--live"], &[("WABA_TOKEN", "EAAG-secret-token")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("WABA_TOKEN is set but WABA_PHONE_NUMBER_ID is not"),
        "{err}"
    );
    assert!(!err.contains("EAAG-secret-token"));
}

#[test]
fn help_documents_the_recipients_format_and_the_variables() {
    let out = clinic(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for needle in [
        "--recipients <FILE>",
        "--listen <ADDR>",
        "--window-secs <SECS>",
        "--wait-secs <SECS>",
        "name,phone[,telegram chat id[,max user id]]",
        "WABA_TOKEN + WABA_PHONE_NUMBER_ID",
        "TELEGRAM_BASE_URL",
        "SMSRU_BASE_URL",
    ] {
        assert!(
            help.contains(needle),
            "{needle:?} missing from --help:\n{help}"
        );
    }
}
