//! `messaging parse-webhook --provider P [--app-secret S | --secret S | --auth-token T --url URL]
//! [--header 'Name: value']... < BODY` prints the normalized events as a JSON array.
//!
//! The event shape is shared by every provider (see `messaging::Event`):
//! `{"kind":"delivery"|"inbound"|"signal","channel":"whatsapp"|"telegram"|"max"|"sms",...}`.
//! With a secret, a missing or wrong signature prints `{"error":{...}}`, no events, and exits 1;
//! a body the provider would not send does the same.

use std::io::Read;
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
    /// Twilio: the exact URL Twilio called (it is part of the signature).
    #[arg(long)]
    url: Option<String>,
    /// A request header, `Name: value`; repeat for several.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
}

fn handler(args: &Args) -> Result<Arc<dyn WebhookHandler>, String> {
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
            needs_no("--secret", args.secret.is_some())?;
            needs_no("--auth-token", args.auth_token.is_some())?;
            let mut w = messaging::waba::WabaWebhook::new();
            if let Some(s) = &args.app_secret {
                w = w.app_secret(s.clone());
            }
            Arc::new(w)
        }
        Provider::Telegram => {
            needs_no("--app-secret", args.app_secret.is_some())?;
            needs_no("--auth-token", args.auth_token.is_some())?;
            Arc::new(messaging::telegram::TelegramWebhook::new(
                args.secret.clone(),
            ))
        }
        Provider::Max => {
            needs_no("--app-secret", args.app_secret.is_some())?;
            needs_no("--auth-token", args.auth_token.is_some())?;
            Arc::new(messaging::max::MaxWebhookHandler::new(
                args.secret.clone().map(messaging::max::SecretString::from),
            ))
        }
        Provider::Smsru => Arc::new(messaging::sms::smsru::SmsRuWebhook::new()),
        Provider::Smsc => Arc::new(messaging::sms::smsc::SmscWebhook::new()),
        Provider::Smsaero => Arc::new(messaging::sms::smsaero::SmsAeroWebhook::new()),
        Provider::Twilio => {
            needs_no("--app-secret", args.app_secret.is_some())?;
            needs_no("--secret", args.secret.is_some())?;
            let w = match &args.auth_token {
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
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header {line:?} is not `Name: value`"))?;
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
