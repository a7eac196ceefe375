//! `messaging parse-webhook --provider P [--app-secret S | --secret S | --auth-token T --url URL]
//! [--header 'Name: value']... < BODY` prints the normalized events as a JSON array.
//!
//! Each secret may also come from a file (`--app-secret-file`, `--secret-file`,
//! `--auth-token-file`; a trailing newline is dropped) or from the environment
//! (`MESSAGING_APP_SECRET`, `MESSAGING_WEBHOOK_SECRET`, `MESSAGING_AUTH_TOKEN`, read only for
//! the providers they apply to), so that it need not appear in the command line. A flag wins
//! over its file, which is a usage error to give together; both win over the environment.
//! No error message ever quotes a secret or a header value.
//!
//! The event shape is shared by every provider (see `messaging::Event`):
//! `{"kind":"delivery"|"inbound"|"signal","channel":"whatsapp"|"telegram"|"max"|"sms",...}`.
//! With a secret, a missing or wrong signature prints `{"error":{...}}`, no events, and exits 1;
//! a body the provider would not send does the same.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use messaging::webhook::{WebhookError, WebhookHandler, WebhookRequest};
use serde_json::json;

use crate::Output;

/// The providers whose webhooks can be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Provider {
    /// WhatsApp Business Platform (Cloud API or 360dialog).
    Waba,
    /// Telegram Bot API.
    Telegram,
    /// Max Bot API.
    Max,
    /// SMS.ru delivery reports.
    Smsru,
    /// SMSC.ru delivery reports.
    Smsc,
    /// SMS Aero delivery reports.
    Smsaero,
    /// Twilio status callbacks and inbound SMS.
    Twilio,
}

/// Arguments of `messaging parse-webhook`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Which provider sent the body.
    #[arg(long, value_enum)]
    provider: Provider,
    /// WhatsApp: the app secret; X-Hub-Signature-256 is then required and checked.
    #[arg(long)]
    app_secret: Option<String>,
    /// Telegram or Max: the webhook secret; the secret header is then required and checked.
    #[arg(long)]
    secret: Option<String>,
    /// Twilio: the auth token; X-Twilio-Signature is then required and checked (needs --url).
    #[arg(long)]
    auth_token: Option<String>,
    /// WhatsApp: a file holding the app secret (instead of --app-secret; env MESSAGING_APP_SECRET).
    #[arg(long, value_name = "PATH")]
    app_secret_file: Option<PathBuf>,
    /// Telegram or Max: a file holding the webhook secret (env MESSAGING_WEBHOOK_SECRET).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Twilio: a file holding the auth token (env MESSAGING_AUTH_TOKEN).
    #[arg(long, value_name = "PATH")]
    auth_token_file: Option<PathBuf>,
    /// Twilio: the exact URL Twilio called (it is part of the signature).
    #[arg(long)]
    url: Option<String>,
    /// A request header, `Name: value`; repeat for several.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
}

/// The environment variables the secrets may come from.
pub(crate) const SECRET_ENV: [&str; 3] = [
    "MESSAGING_APP_SECRET",
    "MESSAGING_WEBHOOK_SECRET",
    "MESSAGING_AUTH_TOKEN",
];

/// The secrets, wherever they came from: the flag, its file, or the environment.
#[derive(Default)]
struct Secrets {
    app_secret: Option<String>,
    secret: Option<String>,
    auth_token: Option<String>,
}

/// One secret: `--flag`, else `--flag-file`, else `env` when the provider takes it. Giving the
/// flag or the file to a provider that does not take it is left to [`handler`] to refuse.
fn secret(
    flag: &str,
    value: &Option<String>,
    file: &Option<PathBuf>,
    env: &str,
    applies: bool,
) -> Result<Option<String>, String> {
    match (value, file) {
        (Some(_), Some(_)) => Err(format!("give --{flag} or --{flag}-file, not both")),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| format!("cannot read --{flag}-file {}: {e}", path.display())),
        (None, None) if applies => Ok(std::env::var(env).ok().filter(|s| !s.is_empty())),
        (None, None) => Ok(None),
    }
}

fn secrets(args: &Args) -> Result<Secrets, String> {
    let p = args.provider;
    Ok(Secrets {
        app_secret: secret(
            "app-secret",
            &args.app_secret,
            &args.app_secret_file,
            SECRET_ENV[0],
            p == Provider::Waba,
        )?,
        secret: secret(
            "secret",
            &args.secret,
            &args.secret_file,
            SECRET_ENV[1],
            matches!(p, Provider::Telegram | Provider::Max),
        )?,
        auth_token: secret(
            "auth-token",
            &args.auth_token,
            &args.auth_token_file,
            SECRET_ENV[2],
            p == Provider::Twilio,
        )?,
    })
}

fn handler(args: &Args) -> Result<Arc<dyn WebhookHandler>, String> {
    let given = secrets(args)?;
    let explicit = |v: &Option<String>, f: &Option<PathBuf>| v.is_some() || f.is_some();
    let app_secret_given = explicit(&args.app_secret, &args.app_secret_file);
    let secret_given = explicit(&args.secret, &args.secret_file);
    let auth_token_given = explicit(&args.auth_token, &args.auth_token_file);
    let needs_no = |flag: &str, given: bool| {
        if given {
            Err(format!(
                "{flag} does not apply to provider {:?}",
                args.provider
            ))
        } else {
            Ok(())
        }
    };
    Ok(match args.provider {
        Provider::Waba => {
            needs_no("--secret", secret_given)?;
            needs_no("--auth-token", auth_token_given)?;
            let mut w = messaging::waba::WabaWebhook::new();
            if let Some(s) = &given.app_secret {
                w = w.app_secret(s.clone());
            }
            Arc::new(w)
        }
        Provider::Telegram => {
            needs_no("--app-secret", app_secret_given)?;
            needs_no("--auth-token", auth_token_given)?;
            Arc::new(messaging::telegram::TelegramWebhook::new(
                given.secret.clone(),
            ))
        }
        Provider::Max => {
            needs_no("--app-secret", app_secret_given)?;
            needs_no("--auth-token", auth_token_given)?;
            Arc::new(messaging::max::MaxWebhookHandler::new(
                given.secret.clone().map(messaging::max::SecretString::from),
            ))
        }
        Provider::Smsru => Arc::new(messaging::sms::smsru::SmsRuWebhook::new()),
        Provider::Smsc => Arc::new(messaging::sms::smsc::SmscWebhook::new()),
        Provider::Smsaero => Arc::new(messaging::sms::smsaero::SmsAeroWebhook::new()),
        Provider::Twilio => {
            needs_no("--app-secret", app_secret_given)?;
            needs_no("--secret", secret_given)?;
            let w = match &given.auth_token {
                Some(t) => messaging::sms::twilio::TwilioWebhook::new(t.clone()),
                None => messaging::sms::twilio::TwilioWebhook::unverified(),
            };
            Arc::new(match &args.url {
                Some(u) => w.url(u.clone()),
                None => w,
            })
        }
    })
}

fn headers(lines: &[String]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for line in lines {
        // The line is not quoted: it may be a secret header typed wrong.
        let (name, value) = line.split_once(':').ok_or_else(|| {
            "a --header is not `Name: value` (the line is not shown: it may hold a secret)"
                .to_owned()
        })?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("header name {:?}: {e}", name.trim()))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| format!("header value for {name}: {e}"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn error_output(kind: &str, message: String, status: Option<u16>) -> Output {
    let mut error = json!({ "kind": kind, "message": message });
    if let Some(s) = status {
        error["http_status"] = json!(s);
    }
    Output::fail(json!({ "error": error }))
}

fn webhook_error(e: &WebhookError) -> Output {
    let kind = match e {
        WebhookError::MissingSignature(_) => "missing_signature",
        WebhookError::BadSignature => "bad_signature",
        WebhookError::BadVerifyToken => "bad_verify_token",
        WebhookError::BodyTooLarge { .. } => "body_too_large",
        WebhookError::Malformed { .. } => "malformed",
        _ => "rejected",
    };
    error_output(kind, e.to_string(), Some(e.http_status()))
}

/// Reads the body from standard input, verifies it and prints the events.
pub(crate) fn run(args: Args) -> Output {
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        return error_output("io", format!("cannot read the body from stdin: {e}"), None);
    }
    let handler = match handler(&args) {
        Ok(h) => h,
        Err(e) => return error_output("usage", e, None),
    };
    let headers = match headers(&args.headers) {
        Ok(h) => h,
        Err(e) => return error_output("usage", e, None),
    };
    let mut request = WebhookRequest::post(&headers, &body);
    if let Some(u) = &args.url {
        request = request.with_url(u);
    }
    match handler.verify_and_parse(&request) {
        Ok(events) => match serde_json::to_value(&events) {
            Ok(v) => Output::ok(v),
            Err(e) => error_output("internal", e.to_string(), None),
        },
        Err(e) => webhook_error(&e),
    }
}
