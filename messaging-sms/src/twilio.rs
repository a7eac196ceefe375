//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`
//! (form, HTTP Basic), `GET …/Messages/{Sid}.json` polling, status callbacks and inbound SMS
//! with `X-Twilio-Signature` validation.
//!
//! The sender ([`SmsOptions::sender`]) is a `From` number, or a Messaging Service when it starts
//! with `MG`. With [`SmsOptions::sandbox`] on, the mobile-number check is skipped so that
//! Twilio's test credentials can be used with the [`magic`] numbers.
//!
//! WhatsApp senders on Twilio post to the same webhook with `From=whatsapp:+…` (inbound) and
//! `To=whatsapp:+…` (status callbacks). [`TwilioWebhook`] reads them as WhatsApp events: channel
//! kind [`ChannelKind::WhatsApp`], the person at [`Address::WhatsApp`] (their `WaId` digits),
//! the profile name, a quick-reply `ButtonPayload`, a shared location and media URLs in `extra`;
//! the handler's channel id (the Twilio channel) stays on them. Sending WhatsApp messages
//! through Twilio is not part of this crate.
//!
//! ```no_run
//! use messaging_core::{Address, ChannelExt, Phone};
//! use messaging_sms::{SmsOptions, twilio::TwilioChannel};
//! # async fn run() -> Result<(), messaging_core::ChannelError> {
//! let sms = TwilioChannel::new(
//!     SmsOptions::new("sms-twilio").sender("+15017122661").callback_url("https://example.com/twilio"),
//!     "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
//!     "auth-token",
//! );
//! let to = Address::Phone(Phone::parse("+447911123456").unwrap());
//! sms.send_text(to, "Your appointment is tomorrow at 10:00").await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use messaging_core::webhook::{WebhookError, WebhookHandler, WebhookRequest};
use messaging_core::{
    Address, ChannelError, ChannelId, ChannelKind, ChannelSignal, Clock, Cost, DeliveryReport,
    DeliveryStatus, ErrorKind, Event, InboundMessage, Phone, ProviderError, ProviderMessageId,
    Signal,
};
use messaging_http::Reply;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::channel::{Accepted, Endpoint, SmsChannel, SmsProvider};
use crate::shared::PreparedSms;
use crate::shared::{self, BasicAuth, EventStamp, SmsOptions, StatusMeaning};

const PROVIDER: &str = "twilio";

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Twilio's magic numbers for test credentials (no charge, no delivery).
pub mod magic {
    /// `From`: a valid sender, the send succeeds.
    pub const FROM_VALID: &str = "+15005550006";
    /// `From`: invalid number, error 21212.
    pub const FROM_INVALID: &str = "+15005550001";
    /// `From`: not owned by the account or cannot send SMS, error 21606.
    pub const FROM_NOT_OWNED: &str = "+15005550007";
    /// `From`: SMS queue full, error 21611.
    pub const FROM_QUEUE_FULL: &str = "+15005550008";
    /// `To`: invalid number, error 21211.
    pub const TO_INVALID: &str = "+15005550001";
    /// `To`: cannot be routed, error 21612.
    pub const TO_UNROUTABLE: &str = "+15005550002";
    /// `To`: no international permission, error 21408.
    pub const TO_NO_PERMISSION: &str = "+15005550003";
    /// `To`: blocklisted (the person sent STOP), error 21610.
    pub const TO_BLOCKLISTED: &str = "+15005550004";
    /// `To`: cannot receive SMS, error 21614.
    pub const TO_NOT_SMS_CAPABLE: &str = "+15005550009";
}

/// Twilio as an [`SmsProvider`]: form posts to the account's Messages resource with HTTP
/// Basic (account SID and auth token), one `GET Messages/{Sid}.json` per status, signed
/// callbacks ([`TwilioWebhook`]).
///
/// ```
/// use messaging_sms::twilio::Twilio;
/// let p = Twilio::new("AC123", "auth-token");
/// assert!(!format!("{p:?}").contains("auth-token"));
/// ```
#[derive(Debug, Clone)]
pub struct Twilio {
    /// The account SID and auth token (which also signs the webhooks).
    auth: BasicAuth,
}

impl Twilio {
    /// The provider for an account (live or test credentials).
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Twilio {
            auth: BasicAuth::new(account_sid, auth_token),
        }
    }

    /// The Messages resource of the account, relative to the base URL.
    fn messages_path(&self) -> String {
        format!("/2010-04-01/Accounts/{}/Messages", self.auth.user)
    }

    /// An authenticated request for a JSON answer.
    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        self.auth
            .apply(req)
            .header(http::header::ACCEPT, "application/json")
    }
}

/// A Twilio account as a [`Channel`](messaging_core::Channel): [`SmsChannel`] over [`Twilio`].
pub type TwilioChannel = SmsChannel<Twilio>;

impl SmsChannel<Twilio> {
    /// A channel for an account (live or test credentials).
    pub fn new(
        opts: SmsOptions,
        account_sid: impl Into<String>,
        auth_token: impl Into<String>,
    ) -> Self {
        SmsChannel::with_provider(opts, Twilio::new(account_sid, auth_token))
    }
}

impl SmsProvider for Twilio {
    const NAME: &'static str = PROVIDER;
    const DEFAULT_BASE_URL: &'static str = "https://api.twilio.com";
    type Webhook = TwilioWebhook;

    /// In sandbox mode Twilio's magic test numbers are allowed.
    fn accepts_any_number(&self, options: &SmsOptions) -> bool {
        options.sandbox
    }

    fn send_request(
        &self,
        api: &Endpoint<'_>,
        sms: &PreparedSms,
    ) -> Result<reqwest::RequestBuilder, ChannelError> {
        let opts = api.options();
        let mut form = vec![
            ("To", sms.phone.as_str().to_owned()),
            ("Body", sms.text.clone()),
        ];
        match opts.sender.as_deref() {
            Some(s) if s.starts_with("MG") => form.push(("MessagingServiceSid", s.to_owned())),
            Some(s) => form.push(("From", s.to_owned())),
            None => {
                return Err(ChannelError::channel_down(
                    "twilio: no sender configured (a From number or an MG… Messaging Service)",
                ));
            }
        }
        if let Some(url) = &opts.callback_url {
            form.push(("StatusCallback", url.clone()));
        }
        Ok(self
            .authorized(api.post(&format!("{}.json", self.messages_path())))
            .form(&form))
    }

    fn read_send(
        &self,
        reply: &Reply,
        _sms: &PreparedSms,
        now: DateTime<Utc>,
    ) -> Result<Accepted, ChannelError> {
        let v = read_resource(reply)?;
        let Some(sid) = shared::lenient_string(v.get("sid")) else {
            return Err(ChannelError::unexpected("twilio: answer without a sid"));
        };
        if let Some(r) = report_from_resource(&v, now)
            && r.status == DeliveryStatus::Failed
        {
            let e = r.error.unwrap_or(ProviderError {
                code: "failed".into(),
                message: "failed".into(),
                kind: None,
            });
            return Err(ChannelError::new(
                e.kind.unwrap_or(ErrorKind::Unexpected),
                format!("twilio: message failed: {}", shared::clip(&e.message)),
            )
            .with_provider_code(e.code));
        }
        let mut a = Accepted::new(sid);
        if let Some(n) =
            shared::lenient_i64(v.get("num_segments")).and_then(|n| u32::try_from(n).ok())
        {
            a = a.segments(n);
        }
        if let Some(amount) = shared::lenient_f64(v.get("price")) {
            let unit = v.get("price_unit").and_then(Value::as_str).unwrap_or("USD");
            a = a.cost(Cost::new(amount.abs(), unit));
        }
        Ok(a)
    }

    /// One `GET Messages/{Sid}.json` per message; ids that are not sids are skipped. Test
    /// credentials cannot read messages (Twilio answers 403).
    fn status_request(
        &self,
        api: &Endpoint<'_>,
        ids: &[ProviderMessageId],
    ) -> Option<reqwest::RequestBuilder> {
        let sid = ids.first()?.as_str();
        if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let path = format!("{}/{sid}.json", self.messages_path());
        Some(self.authorized(api.get(&path)))
    }

    fn read_status(
        &self,
        reply: &Reply,
        _ids: &[ProviderMessageId],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeliveryReport>, ChannelError> {
        let v = read_resource(reply)?;
        Ok(report_from_resource(&v, now).into_iter().collect())
    }

    /// Parses the form without checking the signature ([`TwilioWebhook`] checks it first).
    fn parse_callback(
        stamp: &EventStamp,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<Event>, WebhookError> {
        parse_callback(stamp, request)
    }

    /// A handler that checks signatures with this account's auth token.
    fn redactor(&self) -> messaging_http::Redactor {
        self.auth.redactor()
    }

    fn webhook(&self, stamp: EventStamp) -> TwilioWebhook {
        TwilioWebhook {
            auth_token: Some(self.auth.password.clone()),
            url: None,
            stamp,
        }
    }
}

/// Reads a Message resource, or a typed error from a legacy (`{code, message}`) or RFC 9457
/// (`{type, title, status, code, detail}`) error body.
fn read_resource(reply: &Reply) -> Result<Value, ChannelError> {
    let v = serde_json::from_slice::<Value>(&reply.body).ok();
    if reply.status.is_success() {
        return match v {
            Some(v) if v.is_object() => Ok(v),
            _ => Err(shared::unreadable(PROVIDER, reply)),
        };
    }
    let Some(v) = v.filter(Value::is_object) else {
        return Err(shared::http_status_error(PROVIDER, reply, None));
    };
    Err(api_error(reply, &v))
}

fn api_error(reply: &Reply, v: &Value) -> ChannelError {
    let status = reply.status.as_u16();
    let text = v
        .get("message")
        .or_else(|| v.get("detail"))
        .or_else(|| v.get("title"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(code) = shared::lenient_i64(v.get("code")) else {
        return shared::http_status_error(PROVIDER, reply, Some(text));
    };
    let mut kind = error_kind(code);
    if kind == ErrorKind::Unexpected {
        // Fall back on the HTTP status for codes the table does not know.
        kind = match status {
            429 => ErrorKind::RateLimited,
            401 => ErrorKind::ChannelDown,
            500..=599 => ErrorKind::Temporary,
            _ => ErrorKind::Unexpected,
        };
    }
    let wait = (kind == ErrorKind::RateLimited)
        .then_some(reply.retry_after)
        .flatten();
    shared::coded_error(PROVIDER, kind, code, text, wait)
}

/// The kind of a Twilio error code (REST error or a callback's `ErrorCode`).
///
/// ```
/// use messaging_core::ErrorKind;
/// use messaging_sms::twilio::error_kind;
/// assert_eq!(error_kind(20003), ErrorKind::ChannelDown); // authentication
/// assert_eq!(error_kind(21211), ErrorKind::Unreachable); // invalid To
/// assert_eq!(error_kind(20429), ErrorKind::RateLimited);
/// assert_eq!(error_kind(30008), ErrorKind::Temporary);
/// ```
pub fn error_kind(code: i64) -> ErrorKind {
    use ErrorKind as K;
    match code {
        20003 | 20005 | 21212 | 21606 | 30002 | 30032 | 30034 => K::ChannelDown,
        20429 | 21611 | 30001 | 30022 | 63018 => K::RateLimited,
        20500 | 20503 | 30008 | 30009 => K::Temporary,
        21211 | 21408 | 21608 | 21610 | 21612 | 21614 | 30003 | 30004 | 30005 | 30006 => {
            K::Unreachable
        }
        21602 | 21617 | 30007 | 30019 => K::InvalidContent,
        // WhatsApp through Twilio: outside the 24-hour window; not a WhatsApp number.
        63016 => K::NeedsTemplate,
        63003 => K::Unreachable,
        _ => K::Unexpected,
    }
}

/// The meaning of a Twilio message status, or `None` for an unknown or inbound status. Failed
/// statuses get their kind from the `ErrorCode` ([`error_kind`]) when there is one.
///
/// ```
/// use messaging_core::DeliveryStatus;
/// use messaging_sms::twilio::status_meaning;
/// assert_eq!(status_meaning("delivered").unwrap().status, DeliveryStatus::Delivered);
/// assert_eq!(status_meaning("undelivered").unwrap().status, DeliveryStatus::Failed);
/// assert!(status_meaning("received").is_none());
/// ```
pub fn status_meaning(status: &str) -> Option<StatusMeaning> {
    use DeliveryStatus as S;
    use ErrorKind as K;
    Some(match status {
        "queued" | "accepted" | "scheduled" | "sending" => StatusMeaning::ok(S::Accepted, "queued"),
        "sent" | "partially_delivered" => StatusMeaning::ok(S::Sent, "sent"),
        "delivered" => StatusMeaning::ok(S::Delivered, "delivered"),
        "read" => StatusMeaning::ok(S::Read, "read"),
        "undelivered" => StatusMeaning::failed(K::Unreachable, "undelivered"),
        "failed" => StatusMeaning::failed(K::Unexpected, "failed"),
        "canceled" => StatusMeaning::failed(K::Unexpected, "canceled"),
        _ => return None,
    })
}

/// A report from a status word, an optional error code and message.
fn report(
    sid: &str,
    status: &str,
    error_code: Option<&str>,
    error_message: Option<&str>,
    at: DateTime<Utc>,
) -> DeliveryReport {
    let meaning = status_meaning(status);
    let code = error_code.map(str::trim).filter(|c| !c.is_empty());
    let mut r = match (meaning, code) {
        (Some(m), Some(code)) if m.status == DeliveryStatus::Failed => {
            let kind = code.parse::<i64>().ok().map(error_kind).or(m.kind);
            DeliveryReport::new(ChannelKind::Sms, sid, m.status, at).error(ProviderError {
                code: code.to_owned(),
                message: error_message
                    .filter(|t| !t.trim().is_empty())
                    .map(shared::clip)
                    .unwrap_or_else(|| format!("{status} (error {code})")),
                kind,
            })
        }
        _ => shared::report_from_code(sid, status, meaning, error_message, at),
    };
    if meaning.is_none() {
        // Unknown status kept raw; an error code, if any, goes with it.
        if let (Some(e), Some(c)) = (r.error.as_mut(), code) {
            e.message = format!("{} (error {c})", e.message);
        }
    }
    r.at = at;
    r
}

/// A report from a Message resource, dated by its `date_updated`, else `now`.
fn report_from_resource(v: &Value, now: DateTime<Utc>) -> Option<DeliveryReport> {
    let sid = shared::lenient_string(v.get("sid"))?;
    let status = v.get("status").and_then(Value::as_str)?;
    let code = shared::lenient_string(v.get("error_code"));
    let msg = v.get("error_message").and_then(Value::as_str);
    let at = v
        .get("date_updated")
        .and_then(Value::as_str)
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or(now);
    let mut r = report(&sid, status, code.as_deref(), msg, at);
    if let Some(to) = v.get("to").and_then(Value::as_str) {
        r = r.recipient(to);
    }
    Some(r)
}

/// Computes `X-Twilio-Signature` for a URL and form parameters: HMAC-SHA1 (key: the auth token)
/// over the URL followed by every parameter name and value, sorted by name then value, with
/// duplicates removed; base64.
///
/// ```
/// use messaging_sms::twilio::compute_signature;
/// let params = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"),
///     ("Digits", "1234"), ("From", "+14158675309"), ("To", "+18005551212")];
/// assert_eq!(
///     compute_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
///     "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
/// );
/// ```
pub fn compute_signature<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    // HMAC takes keys of any length; new_from_slice cannot fail.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL with the scheme's default port added (when absent) or removed (when present);
/// `None` when neither applies (another port, an unknown scheme).
fn port_variant(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host_at = authority.rfind('@').map_or(0, |i| i + 1);
    let (userinfo, hostport) = authority.split_at(host_at);
    let port_at = hostport.rfind(':').filter(|&i| {
        let after = hostport.get(i + 1..).unwrap_or_default();
        !after.is_empty() && after.chars().all(|c| c.is_ascii_digit())
    });
    match port_at {
        Some(i) => {
            let (host, port) = (hostport.get(..i)?, hostport.get(i + 1..)?);
            (port == default).then(|| format!("{scheme}://{userinfo}{host}{tail}"))
        }
        None if hostport.ends_with(':') => None,
        None => Some(format!("{scheme}://{userinfo}{hostport}:{default}{tail}")),
    }
}

/// The value of a query parameter of `url`.
fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    let q = q.split('#').next().unwrap_or_default();
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Checks `X-Twilio-Signature` in constant time, accepting the URL with or without the default
/// port (Twilio is inconsistent about it). `params` are the form parameters (empty for JSON
/// bodies, whose hash travels in the URL's `bodySHA256`).
///
/// ```
/// use messaging_sms::twilio::{compute_signature, validate_signature};
/// let url = "https://example.com/sms?x=1";
/// let params = [("MessageSid", "SM1"), ("MessageStatus", "delivered")];
/// let sig = compute_signature("token", url, &params);
/// assert!(validate_signature("token", "https://example.com:443/sms?x=1", &params, &sig));
/// assert!(!validate_signature("token", url, &[("MessageSid", "SM1"), ("MessageStatus", "failed")], &sig));
/// ```
pub fn validate_signature<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    let given = signature.trim().as_bytes();
    let mut ok = false;
    for candidate in std::iter::once(url.to_owned()).chain(port_variant(url)) {
        let expected = compute_signature(auth_token, &candidate, params);
        // Evaluate every candidate; no early exit on a match.
        ok |= bool::from(expected.as_bytes().ct_eq(given));
    }
    ok
}

/// Verifies and parses Twilio webhooks: status callbacks (`MessageSid`, `MessageStatus`,
/// `ErrorCode`, …) become delivery reports, inbound SMS (`SmsStatus=received`, `From`, `Body`)
/// become inbound messages with [`Address::Phone`]. A failure with error 21610 (the person sent
/// STOP) and an inbound `OptOutType=STOP` also give a [`Signal::OptOut`].
///
/// Built from an auth token, it requires a valid `X-Twilio-Signature` over the request URL
/// ([`WebhookRequest::url`], or the one set with [`url`](Self::url)); built with
/// [`unverified`](Self::unverified) it checks nothing (for tests and the CLI).
///
/// ```
/// use messaging_core::webhook::{WebhookError, WebhookHandler, WebhookRequest};
/// use messaging_sms::twilio::{TwilioWebhook, compute_signature};
/// let url = "https://example.com/twilio";
/// let body = b"MessageSid=SM1&MessageStatus=delivered";
/// let sig = compute_signature("token", url, &[("MessageSid", "SM1"), ("MessageStatus", "delivered")]);
/// let mut headers = http::HeaderMap::new();
/// headers.insert("X-Twilio-Signature", sig.parse().unwrap());
/// let h = TwilioWebhook::new("token");
/// assert_eq!(h.verify_and_parse(&WebhookRequest::post(&headers, body).with_url(url)).unwrap().len(), 1);
/// let no_sig = http::HeaderMap::new();
/// assert!(matches!(
///     h.verify(&WebhookRequest::post(&no_sig, body).with_url(url)),
///     Err(WebhookError::MissingSignature(_))
/// ));
/// ```
#[derive(Clone)]
pub struct TwilioWebhook {
    auth_token: Option<SecretString>,
    url: Option<String>,
    stamp: EventStamp,
}

impl fmt::Debug for TwilioWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioWebhook")
            .field("verifies", &self.auth_token.is_some())
            .field("url", &self.url)
            .field("channel_id", &self.stamp.channel_id())
            .finish()
    }
}

impl TwilioWebhook {
    /// A handler that checks signatures with `auth_token`.
    pub fn new(auth_token: impl Into<String>) -> Self {
        TwilioWebhook {
            auth_token: Some(SecretString::from(auth_token.into())),
            url: None,
            stamp: EventStamp::default(),
        }
    }
    /// A handler that checks no signature (tests, the CLI without `--auth-token`).
    pub fn unverified() -> Self {
        TwilioWebhook {
            auth_token: None,
            url: None,
            stamp: EventStamp::default(),
        }
    }
    /// The public URL Twilio calls, used when the request does not carry one.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Tags events with a channel id.
    pub fn channel_id(mut self, id: ChannelId) -> Self {
        self.stamp = self.stamp.with_channel_id(id);
        self
    }

    /// Dates events by `clock` (default: the system clock): Twilio's form carries no time, so
    /// inbound messages, opt-outs and reports without `RawDlrDoneDate` get the clock's.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.stamp = self.stamp.with_clock(clock);
        self
    }
}

/// `RawDlrDoneDate` (`YYMMDDhhmm`, UTC) as a time.
fn dlr_done_date(s: &str) -> Option<chrono::DateTime<Utc>> {
    let s = s.trim();
    if s.len() != 10 || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let t = NaiveDateTime::parse_from_str(&format!("20{s}00"), "%Y%m%d%H%M%S").ok()?;
    Utc.from_local_datetime(&t).single()
}

impl WebhookHandler for TwilioWebhook {
    fn provider(&self) -> &'static str {
        PROVIDER
    }
    fn channel_kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        let Some(token) = &self.auth_token else {
            return Ok(());
        };
        let Some(sig) = request.header(SIGNATURE_HEADER) else {
            return Err(WebhookError::MissingSignature(SIGNATURE_HEADER));
        };
        let Some(url) = request.url.or(self.url.as_deref()) else {
            return Err(WebhookError::malformed(
                PROVIDER,
                "the request URL is needed to check X-Twilio-Signature",
            ));
        };
        let token = token.expose_secret();
        let ok = match query_param(url, "bodySHA256") {
            Some(hash) => {
                let body_hash = hex::encode(sha2::Sha256::digest(request.body));
                let body_ok: bool = body_hash
                    .as_bytes()
                    .ct_eq(hash.to_ascii_lowercase().as_bytes())
                    .into();
                let no_params: [(&str, &str); 0] = [];
                validate_signature(token, url, &no_params, sig) && body_ok
            }
            None => {
                let params = shared::form_pairs(request.body);
                validate_signature(token, url, &params, sig)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(WebhookError::BadSignature)
        }
    }

    fn parse(&self, request: &WebhookRequest<'_>) -> Result<Vec<Event>, WebhookError> {
        parse_callback(&self.stamp, request)
    }
}

/// The prefix Twilio puts on WhatsApp addresses (`whatsapp:+14155238886`).
const WHATSAPP_PREFIX: &str = "whatsapp:";

/// The digits of a Twilio WhatsApp address (`whatsapp:+14155238886` → `14155238886`), `None`
/// when it is not one.
fn whatsapp_digits(v: &str) -> Option<&str> {
    let rest = v.trim().strip_prefix(WHATSAPP_PREFIX)?;
    Some(rest.trim().trim_start_matches('+'))
}

/// An inbound WhatsApp message forwarded by Twilio: `From=whatsapp:+…`, the sender's `WaId`
/// and `ProfileName`, a quick-reply `ButtonPayload`, a shared location, media URLs.
fn whatsapp_inbound(
    f: &[(String, String)],
    sid: &str,
    from: &str,
    now: DateTime<Utc>,
) -> Result<InboundMessage, WebhookError> {
    let get = |k: &str| shared::field(f, k).map(str::trim).filter(|v| !v.is_empty());
    let digits = get("WaId")
        .or_else(|| whatsapp_digits(from))
        .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| {
            WebhookError::malformed(PROVIDER, "WhatsApp From without a number after whatsapp:")
        })?;
    let text = shared::field(f, "Body")
        .filter(|b| !b.is_empty())
        .map(str::to_owned);
    let mut m = InboundMessage::new(
        ChannelKind::WhatsApp,
        Address::WhatsApp(digits.to_owned()),
        text,
        now,
    )
    .provider_message_id(sid);
    if let Some(name) = get("ProfileName") {
        m = m.sender_name(name);
    }
    if let Some(p) = get("ButtonPayload") {
        m = m.button_payload(p);
        if m.text.is_none() {
            m.text = get("ButtonText").map(str::to_owned);
        }
    }
    if let Some(r) = get("OriginalRepliedMessageSid") {
        m = m.reply_to(r);
    }
    let mut extra = serde_json::Map::new();
    if let (Some(lat), Some(lon)) = (get("Latitude"), get("Longitude")) {
        extra.insert(
            "location".into(),
            serde_json::json!({"latitude": lat, "longitude": lon, "address": get("Address"), "label": get("Label")}),
        );
    }
    let media: Vec<Value> = (0..get("NumMedia").and_then(|n| n.parse::<usize>().ok()).unwrap_or(0).min(10))
        .filter_map(|i| {
            let url = get(&format!("MediaUrl{i}"))?;
            Some(serde_json::json!({"url": url, "content_type": get(&format!("MediaContentType{i}"))}))
        })
        .collect();
    if !media.is_empty() {
        extra.insert("media".into(), Value::Array(media));
    }
    if !extra.is_empty() {
        m = m.extra(Value::Object(extra));
    }
    Ok(m)
}

/// Reads a (verified) status callback or inbound SMS form.
///
/// WhatsApp through Twilio (`From=whatsapp:+…` inbound, `To=whatsapp:+…` on a status
/// callback) gives events of channel kind [`ChannelKind::WhatsApp`]: an inbound message at
/// [`Address::WhatsApp`] (the `WaId` digits), reports whose recipient is Twilio's
/// `whatsapp:+…` string. They keep the handler's channel id: the Twilio channel they came
/// through.
fn parse_callback(
    stamp: &EventStamp,
    request: &WebhookRequest<'_>,
) -> Result<Vec<Event>, WebhookError> {
    let f = shared::form_pairs(request.body);
    let get = |k: &str| {
        shared::field(&f, k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let sid = get("MessageSid").or_else(|| get("SmsSid"));
    let status = get("MessageStatus").or_else(|| get("SmsStatus"));
    let (Some(sid), Some(status)) = (sid, status) else {
        return Err(WebhookError::malformed(
            PROVIDER,
            "expected MessageSid and MessageStatus (or SmsSid and SmsStatus)",
        ));
    };
    // The form says nothing of when: the time is the handler's clock.
    let now = stamp.now();
    if matches!(status, "received" | "receiving") {
        let from = get("From")
            .ok_or_else(|| WebhookError::malformed(PROVIDER, "inbound SMS without From"))?;
        let (kind, inbound) = if whatsapp_digits(from).is_some() {
            (ChannelKind::WhatsApp, whatsapp_inbound(&f, sid, from, now)?)
        } else {
            let phone = Phone::parse(from)
                .map_err(|e| WebhookError::malformed(PROVIDER, format!("From: {e}")))?;
            let text = shared::field(&f, "Body").map(str::to_owned);
            (
                ChannelKind::Sms,
                InboundMessage::new(ChannelKind::Sms, Address::Phone(phone), text, now)
                    .provider_message_id(sid),
            )
        };
        let address = inbound.address.clone();
        let mut out = vec![stamp.tag(Event::Inbound(inbound))];
        if get("OptOutType").is_some_and(|t| t.eq_ignore_ascii_case("STOP")) {
            out.push(stamp.tag(Event::Signal(ChannelSignal::new(
                kind,
                now,
                Signal::OptOut {
                    from: address.to_string(),
                    address,
                    purpose: None,
                },
            ))));
        }
        return Ok(out);
    }
    let at = get("RawDlrDoneDate").and_then(dlr_done_date).unwrap_or(now);
    let mut r = report(sid, status, get("ErrorCode"), get("ErrorMessage"), at);
    if let Some(to) = get("To") {
        r = r.recipient(to);
    }
    if get("To").is_some_and(|t| whatsapp_digits(t).is_some())
        || get("ChannelPrefix").is_some_and(|p| p.eq_ignore_ascii_case("whatsapp"))
    {
        r.channel = ChannelKind::WhatsApp;
    }
    let mut out = vec![stamp.tag(Event::Delivery(r))];
    if get("ErrorCode") == Some("21610")
        && let Some(phone) = get("To").and_then(|t| Phone::parse(t).ok())
    {
        let address = Address::Phone(phone);
        out.push(stamp.tag(Event::Signal(ChannelSignal::new(
            ChannelKind::Sms,
            at,
            Signal::OptOut {
                from: address.to_string(),
                address,
                purpose: None,
            },
        ))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_variants() {
        assert_eq!(
            port_variant("https://a.com/x?y=1").as_deref(),
            Some("https://a.com:443/x?y=1")
        );
        assert_eq!(
            port_variant("https://a.com:443/x").as_deref(),
            Some("https://a.com/x")
        );
        assert_eq!(
            port_variant("HTTP://u:p@a.com:80").as_deref(),
            Some("HTTP://u:p@a.com")
        );
        assert_eq!(
            port_variant("http://u:p@a.com/").as_deref(),
            Some("http://u:p@a.com:80/")
        );
        assert_eq!(port_variant("http://a.com:1234/x"), None);
        assert_eq!(port_variant("ftp://a.com/x"), None);
        assert_eq!(port_variant("nonsense"), None);
    }

    #[test]
    fn status_words() {
        use DeliveryStatus as S;
        for (w, s) in [
            ("queued", S::Accepted),
            ("accepted", S::Accepted),
            ("scheduled", S::Accepted),
            ("sending", S::Accepted),
            ("sent", S::Sent),
            ("delivered", S::Delivered),
            ("read", S::Read),
            ("undelivered", S::Failed),
            ("failed", S::Failed),
            ("canceled", S::Failed),
        ] {
            assert_eq!(status_meaning(w).unwrap().status, s, "{w}");
        }
        assert!(status_meaning("receiving").is_none());
        let r = report("SM1", "teleported", Some("123"), None, Utc::now());
        assert_eq!(r.status, S::Accepted);
        assert_eq!(r.error.as_ref().unwrap().code, "teleported");
        assert!(r.error.unwrap().message.contains("123"));
    }

    #[test]
    fn error_code_table() {
        use ErrorKind as K;
        for (code, kind) in [
            (20003, K::ChannelDown),
            (20005, K::ChannelDown),
            (21212, K::ChannelDown),
            (21606, K::ChannelDown),
            (30002, K::ChannelDown),
            (30034, K::ChannelDown),
            (20429, K::RateLimited),
            (21611, K::RateLimited),
            (30001, K::RateLimited),
            (30022, K::RateLimited),
            (63018, K::RateLimited),
            (20500, K::Temporary),
            (30008, K::Temporary),
            (21211, K::Unreachable),
            (21408, K::Unreachable),
            (21610, K::Unreachable),
            (21612, K::Unreachable),
            (21614, K::Unreachable),
            (30003, K::Unreachable),
            (30004, K::Unreachable),
            (30005, K::Unreachable),
            (30006, K::Unreachable),
            (21602, K::InvalidContent),
            (21617, K::InvalidContent),
            (30007, K::InvalidContent),
            (20001, K::Unexpected),
        ] {
            assert_eq!(error_kind(code), kind, "{code}");
        }
    }

    #[test]
    fn failed_with_code_takes_the_codes_kind() {
        let r = report("SM1", "undelivered", Some("30008"), None, Utc::now());
        assert_eq!(r.error.as_ref().unwrap().kind, Some(ErrorKind::Temporary));
        let r = report("SM1", "failed", None, None, Utc::now());
        assert_eq!(r.error.as_ref().unwrap().kind, Some(ErrorKind::Unexpected));
    }

    #[test]
    fn dlr_dates() {
        let t = dlr_done_date("2401311530").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-31T15:30:00+00:00");
        assert!(dlr_done_date("99999999999").is_none());
        assert!(dlr_done_date("2413311530").is_none());
    }

    #[test]
    fn body_sha256_url() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let url = "https://mycompany.com/myapp.php?bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        let mut headers = http::HeaderMap::new();
        headers.insert(
            SIGNATURE_HEADER,
            "y77kIzt2vzLz71DgmJGsen2scGs=".parse().unwrap(),
        );
        let h = TwilioWebhook::new("12345");
        assert!(
            h.verify(&WebhookRequest::post(&headers, body).with_url(url))
                .is_ok()
        );
        assert_eq!(
            h.verify(&WebhookRequest::post(&headers, b"{}").with_url(url)),
            Err(WebhookError::BadSignature)
        );
    }

    /// WhatsApp through Twilio, shaped as Twilio's WhatsApp webhook docs show it.
    #[test]
    fn whatsapp_through_twilio() {
        let headers = http::HeaderMap::new();
        let h = TwilioWebhook::unverified().channel_id(ChannelId::new("twilio"));
        let parse = |body: &[u8]| h.parse(&WebhookRequest::post(&headers, body));
        let ev = parse(
            b"SmsMessageSid=SM1&NumMedia=1&ProfileName=Anna&MessageType=image&SmsSid=SM1&WaId=14155550123\
              &SmsStatus=received&Body=%D0%94%D0%B0&To=whatsapp%3A%2B14155238886&NumSegments=1\
              &MediaUrl0=https%3A%2F%2Fapi.twilio.com%2Fm%2FME1&MediaContentType0=image%2Fjpeg\
              &MessageSid=SM1&AccountSid=AC1&From=whatsapp%3A%2B14155550123&ApiVersion=2010-04-01\
              &OriginalRepliedMessageSid=SM0",
        )
        .unwrap();
        assert_eq!(ev.len(), 1);
        let Event::Inbound(m) = &ev[0] else { panic!() };
        assert_eq!(m.channel, ChannelKind::WhatsApp);
        assert_eq!(m.address, Address::WhatsApp("14155550123".into()));
        assert_eq!(m.from, "14155550123");
        assert_eq!(m.text.as_deref(), Some("Да"));
        assert_eq!(m.sender_name.as_deref(), Some("Anna"));
        assert_eq!(m.reply_to.as_ref().unwrap().as_str(), "SM0");
        assert_eq!(
            m.extra.as_ref().unwrap()["media"][0]["content_type"],
            "image/jpeg"
        );
        assert_eq!(ev[0].channel_id().unwrap().as_str(), "twilio");
        let v = serde_json::to_value(&ev[0]).unwrap();
        assert_eq!(v["channel"], "whatsapp");

        // A quick-reply button, a location, no WaId.
        let ev = parse(
            b"MessageSid=SM2&SmsStatus=received&From=whatsapp%3A%2B447911123456&To=whatsapp%3A%2B14155238886\
              &Body=&ButtonText=Yes&ButtonPayload=confirm-42&Latitude=51.5&Longitude=-0.12",
        )
        .unwrap();
        let Event::Inbound(m) = &ev[0] else { panic!() };
        assert_eq!(m.address, Address::WhatsApp("447911123456".into()));
        assert_eq!(m.button_payload.as_deref(), Some("confirm-42"));
        assert_eq!(m.text.as_deref(), Some("Yes"));
        assert_eq!(m.extra.as_ref().unwrap()["location"]["latitude"], "51.5");

        // A STOP over WhatsApp opts out on WhatsApp.
        let ev = parse(
            b"MessageSid=SM3&SmsStatus=received&From=whatsapp%3A%2B447911123456&Body=STOP&OptOutType=STOP",
        )
        .unwrap();
        let Event::Signal(s) = &ev[1] else { panic!() };
        assert_eq!(s.channel, ChannelKind::WhatsApp);
        assert!(
            matches!(&s.signal, Signal::OptOut { address, .. } if *address == Address::WhatsApp("447911123456".into()))
        );

        // Status callbacks.
        let ev = parse(
            b"MessageSid=SM4&MessageStatus=read&ChannelToAddress=%2B1415555&To=whatsapp%3A%2B14155550123\
              &From=whatsapp%3A%2B14155238886&ChannelPrefix=whatsapp&AccountSid=AC1",
        )
        .unwrap();
        let Event::Delivery(r) = &ev[0] else { panic!() };
        assert_eq!(r.channel, ChannelKind::WhatsApp);
        assert_eq!(r.status, DeliveryStatus::Read);
        assert_eq!(r.recipient.as_deref(), Some("whatsapp:+14155550123"));
        let ev = parse(
            b"MessageSid=SM5&MessageStatus=undelivered&ErrorCode=63016&To=whatsapp%3A%2B14155550123",
        )
        .unwrap();
        assert_eq!(ev.len(), 1);
        let Event::Delivery(r) = &ev[0] else { panic!() };
        assert_eq!(
            r.error.as_ref().unwrap().kind,
            Some(ErrorKind::NeedsTemplate)
        );

        // Bad WhatsApp senders are a typed error, not a panic.
        for body in [
            &b"MessageSid=SM6&SmsStatus=received&From=whatsapp%3A&Body=x"[..],
            b"MessageSid=SM6&SmsStatus=received&From=whatsapp%3A%2Bnot-a-number&Body=x",
        ] {
            assert!(
                matches!(parse(body), Err(WebhookError::Malformed { .. })),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // SMS stays SMS.
        let ev = parse(b"MessageSid=SM7&SmsStatus=received&From=%2B447911123456&Body=hi").unwrap();
        assert_eq!(ev[0].channel(), ChannelKind::Sms);
    }

    #[test]
    fn callbacks_are_dated_by_the_clock_since_the_form_has_no_time() {
        use messaging_core::{Clock, ManualClock};
        use std::sync::Arc;
        let clock = ManualClock::at_unix(1_800_000_000);
        let opts = SmsOptions::new("sms-twilio").clock(Arc::new(clock.clone()));
        let handler = TwilioChannel::new(opts, "AC123", "token").webhook();
        let headers = http::HeaderMap::new();
        let status = b"MessageSid=SM1&MessageStatus=undelivered&ErrorCode=21610&To=%2B447911123456";
        let inbound =
            b"MessageSid=SM2&SmsStatus=received&From=%2B447911123456&Body=STOP&OptOutType=STOP";
        for body in [&status[..], &inbound[..]] {
            let ev = handler
                .parse(&WebhookRequest::post(&headers, body))
                .unwrap();
            assert_eq!(ev.len(), 2, "an event and an opt-out");
            for e in &ev {
                assert_eq!(e.at(), clock.now());
                assert_eq!(e.channel_id().unwrap().as_str(), "sms-twilio");
            }
        }
        // `RawDlrDoneDate`, when given, wins over the clock.
        let ev = TwilioWebhook::unverified()
            .clock(Arc::new(clock.clone()))
            .parse(&WebhookRequest::post(
                &headers,
                b"MessageSid=SM1&MessageStatus=delivered&RawDlrDoneDate=2401311530",
            ))
            .unwrap();
        assert_eq!(ev[0].at().to_rfc3339(), "2024-01-31T15:30:00+00:00");
    }
}
