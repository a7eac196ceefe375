//! `messaging`: the command-line face of the messaging library. Every subcommand prints one JSON
//! object on stdout; the shapes are a public contract (see each module).
//!
//! ```text
//! messaging lint --channel whatsapp --first-contact --name Анна "Анна, приём завтра. Придёте?"
//! messaging segments "Привет! Ваша запись к врачу 12.03 в 10:00"
//! messaging split --channel telegram --max 500 "..."
//! messaging phone --region RU "8 (912) 345-67-89"
//! messaging parse-webhook --provider waba --app-secret S --header 'X-Hub-Signature-256: sha256=…' < body.json
//! messaging simulate --scenario whatsapp-outage --policy adaptive
//! messaging report --database /var/lib/clinic/messaging.db --since 1h
//! ```
//!
//! Exit status: 0 on success, 1 when the answer is negative (an error-level diagnostic, an invalid
//! number, a text that cannot be split), 2 on a usage error. A usage error never quotes a secret:
//! the values of `--app-secret`, `--secret`, `--auth-token`, `--header` and `--database`, the
//! secret files' contents and the `MESSAGING_*` secret variables are scrubbed from it.

mod lint;
mod parse_webhook;
mod phone;
mod report;
mod segments;
mod simulate;
mod split;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use messaging::{ChannelKind, Purpose};

/// Checks and prepares messages for WhatsApp, Telegram, Max and SMS. Prints JSON.
#[derive(Debug, Parser)]
#[command(name = "messaging", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands. Each lives in its own module with an `Args` struct and a `run` function.
#[derive(Debug, Subcommand)]
enum Command {
    /// Lints a rendered message for spam hygiene.
    Lint(lint::Args),
    /// SMS encoding, units and segment count of a text.
    Segments(segments::Args),
    /// Splits a long text into short parts for a channel.
    Split(split::Args),
    /// Reads a phone number and prints it in E.164.
    Phone(phone::Args),
    /// Verifies a provider's webhook body (stdin) and prints the normalized events.
    ParseWebhook(parse_webhook::Args),
    /// Replays a scenario of simulated providers in virtual time and prints delivery figures.
    Simulate(simulate::Args),
    /// Reads a store's database: cascades running, stuck, ended by outcome and channel, cost
    /// by channel and day.
    Report(report::Args),
}

/// What a subcommand produced: the JSON to print and whether the answer was positive.
#[derive(Debug)]
pub(crate) struct Output {
    json: serde_json::Value,
    ok: bool,
}

impl Output {
    /// A positive answer (exit status 0).
    pub(crate) fn ok(json: serde_json::Value) -> Self {
        Output { json, ok: true }
    }
    /// A negative answer (exit status 1).
    pub(crate) fn fail(json: serde_json::Value) -> Self {
        Output { json, ok: false }
    }
}

/// Reads a channel kind (`whatsapp`, `telegram`, `max`, `sms`).
pub(crate) fn parse_channel(s: &str) -> Result<ChannelKind, String> {
    s.parse()
}

/// Reads a purpose (`service`, `marketing`, `authentication`, `conversation`).
pub(crate) fn parse_purpose(s: &str) -> Result<Purpose, String> {
    s.parse()
}

/// The values of secret-bearing arguments (`--flag value` and `--flag=value`), the contents of
/// secret files and the secret environment variables: what a usage error must not quote.
fn secrets_in(args: &[String]) -> Vec<String> {
    const FLAGS: [&str; 5] = [
        "--app-secret",
        "--secret",
        "--auth-token",
        "--header",
        "--database",
    ];
    const FILES: [&str; 3] = ["--app-secret-file", "--secret-file", "--auth-token-file"];
    let mut r = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        for flag in FLAGS.iter().chain(&FILES) {
            let value = if arg == flag {
                args.get(i + 1).cloned()
            } else {
                arg.strip_prefix(&format!("{flag}=")).map(str::to_owned)
            };
            let Some(value) = value else { continue };
            if FILES.contains(flag) {
                if let Ok(s) = std::fs::read_to_string(&value) {
                    r.push(s.trim_end_matches(['\r', '\n']).to_owned());
                }
                continue;
            }
            if *flag == "--header"
                && let Some((_, v)) = value.split_once(':')
            {
                r.push(v.trim().to_owned());
            }
            if *flag == "--database" {
                r.extend(report::password_of(&value));
            }
            r.push(value);
        }
    }
    for var in parse_webhook::SECRET_ENV {
        if let Ok(v) = std::env::var(var) {
            r.push(v);
        }
    }
    if let Ok(v) = std::env::var(report::DATABASE_ENV) {
        r.extend(report::password_of(&v));
        r.push(v);
    }
    r.retain(|s| !s.is_empty());
    r
}

/// A usage error without the secrets: every form of them, and every quoted fragment (`'-S'`)
/// that is a piece of one (clap quotes the part of a secret it took for a flag).
fn scrub_usage(text: &str, secrets: &[String]) -> String {
    let text = messaging_http::Redactor::new()
        .secrets(secrets)
        .redact(text);
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split('\'');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        out.push('\'');
        // Odd parts (counted from 0) are inside quotes.
        if i % 2 == 0 && !part.is_empty() && secrets.iter().any(|s| s.contains(part)) {
            out.push_str(messaging_http::REDACTED);
        } else {
            out.push_str(part);
        }
    }
    out
}

fn main() -> ExitCode {
    messaging_examples::observability::init_tracing();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap quotes the argument it could not read, which may be a secret (`--secret -x…`).
            let args: Vec<String> = std::env::args().collect();
            let text = scrub_usage(&e.render().to_string(), &secrets_in(&args));
            let _ = if e.use_stderr() {
                write!(std::io::stderr(), "{text}")
            } else {
                write!(std::io::stdout(), "{text}")
            };
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let out = match cli.command {
        Command::Lint(a) => lint::run(a),
        Command::Segments(a) => segments::run(a),
        Command::Split(a) => split::run(a),
        Command::Phone(a) => phone::run(a),
        Command::ParseWebhook(a) => parse_webhook::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Report(a) => report::run(a),
    };
    // A reader that stops early (`messaging … | head -c1`) closes the pipe: the answer still
    // decides the exit status, never a panic on the failed write.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", out.json).and_then(|()| stdout.flush());
    if out.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
