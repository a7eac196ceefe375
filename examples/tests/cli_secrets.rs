//! `messaging parse-webhook` takes its secrets from flags, files or the environment, and never
//! quotes a secret or a header value in an error (before: a mistyped secret header was quoted
//! whole, and clap quoted the start of a secret that began with `-`).

use std::io::Write;
use std::process::{Command, Stdio};

const SECRET: &str = "TopSecret-4242";

/// Runs the binary; (stdout, stderr, exit code).
fn messaging(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> (String, String, i32) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_messaging"));
    for var in [
        "MESSAGING_APP_SECRET",
        "MESSAGING_WEBHOOK_SECRET",
        "MESSAGING_AUTH_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the messaging binary runs");
    // A usage error exits before reading stdin: a broken pipe here is fine.
    let _ = child.stdin.take().expect("stdin is piped").write_all(stdin);
    let out = child.wait_with_output().expect("it exits");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().expect("exited normally"),
    )
}

fn assert_no_secret(what: &str, out: &(String, String, i32), secret: &str) {
    assert!(
        !out.0.contains(secret) && !out.1.contains(secret),
        "{what} quotes the secret: stdout {:?} stderr {:?}",
        out.0,
        out.1
    );
}

const UPDATE: &[u8] = br#"{"update_id":1,"message":{"message_id":1,"date":1700000000,"chat":{"id":42,"type":"private"},"from":{"id":42,"is_bot":false,"first_name":"A"},"text":"hi"}}"#;

#[test]
fn a_mistyped_secret_header_is_not_quoted() {
    let header = format!("X-Telegram-Bot-Api-Secret-Token={SECRET}");
    let out = messaging(
        &[
            "parse-webhook",
            "--provider",
            "telegram",
            "--header",
            &header,
        ],
        &[],
        UPDATE,
    );
    assert_eq!(out.2, 1, "{out:?}");
    assert!(out.0.contains("\"usage\""), "{out:?}");
    assert_no_secret("a bad --header", &out, SECRET);
}

#[test]
fn a_usage_error_never_quotes_a_secret() {
    // A secret that starts with `-` is taken for a flag by the parser, which quotes it.
    let dashed = format!("-{SECRET}");
    let out = messaging(
        &[
            "parse-webhook",
            "--provider",
            "telegram",
            "--secret",
            &dashed,
        ],
        &[],
        UPDATE,
    );
    assert_eq!(out.2, 2, "a usage error: {out:?}");
    assert_no_secret("--secret -…", &out, &dashed[..2]);
    assert_no_secret("--secret -…", &out, SECRET);
    // A wrong provider next to a secret header.
    let header = format!("X-Hub-Signature-256: sha256={SECRET}");
    let out = messaging(
        &[
            "parse-webhook",
            "--provider",
            "nosuch",
            "--app-secret",
            SECRET,
            "--header",
            &header,
        ],
        &[],
        b"{}",
    );
    assert_eq!(out.2, 2, "{out:?}");
    assert_no_secret("a bad provider", &out, SECRET);
    // A secret given twice.
    let out = messaging(
        &[
            "parse-webhook",
            "--provider",
            "telegram",
            "--secret",
            SECRET,
            "--secret",
            SECRET,
        ],
        &[],
        UPDATE,
    );
    assert_eq!(out.2, 2, "{out:?}");
    assert_no_secret("a repeated --secret", &out, SECRET);
}

#[test]
fn secrets_come_from_a_file_or_the_environment() {
    let good = format!("X-Telegram-Bot-Api-Secret-Token: {SECRET}");
    let bad = "X-Telegram-Bot-Api-Secret-Token: wrong";
    // The environment.
    let env = [("MESSAGING_WEBHOOK_SECRET", SECRET)];
    let ok = messaging(
        &["parse-webhook", "--provider", "telegram", "--header", &good],
        &env,
        UPDATE,
    );
    assert_eq!(ok.2, 0, "{ok:?}");
    let refused = messaging(
        &["parse-webhook", "--provider", "telegram", "--header", bad],
        &env,
        UPDATE,
    );
    assert_eq!(
        refused.2, 1,
        "the secret from the environment is checked: {refused:?}"
    );
    assert!(refused.0.contains("bad_signature"), "{refused:?}");
    assert_no_secret("a refused signature", &refused, SECRET);
    // The variable of another provider does not apply (no usage error either).
    let other = messaging(
        &["parse-webhook", "--provider", "telegram"],
        &[("MESSAGING_APP_SECRET", SECRET)],
        UPDATE,
    );
    assert_eq!(other.2, 0, "{other:?}");
    // A file (its trailing newline dropped).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let file = file.to_str().unwrap();
    let ok = messaging(
        &[
            "parse-webhook",
            "--provider",
            "telegram",
            "--secret-file",
            file,
            "--header",
            &good,
        ],
        &[],
        UPDATE,
    );
    assert_eq!(ok.2, 0, "{ok:?}");
    let refused = messaging(
        &[
            "parse-webhook",
            "--provider",
            "telegram",
            "--secret-file",
            file,
            "--header",
            bad,
        ],
        &[],
        UPDATE,
    );
    assert_eq!(refused.2, 1, "{refused:?}");
    // The flag and its file together are a usage error that names neither value.
    let both = messaging(
        &[
            "parse-webhook",
            "--provider",
            "telegram",
            "--secret",
            SECRET,
            "--secret-file",
            file,
        ],
        &[],
        UPDATE,
    );
    assert_eq!(both.2, 1, "{both:?}");
    assert!(both.0.contains("not both"), "{both:?}");
    assert_no_secret("flag and file", &both, SECRET);
    // A file for a provider that does not take it.
    let wrong = messaging(
        &["parse-webhook", "--provider", "waba", "--secret-file", file],
        &[],
        b"{}",
    );
    assert_eq!(wrong.2, 1, "{wrong:?}");
    assert!(wrong.0.contains("does not apply"), "{wrong:?}");
}
