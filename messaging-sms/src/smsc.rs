//! SMSC.ru (same platform as smscentre.com and smsc.kz): `POST /sys/send.php` (form, `fmt=3`
//! JSON answers), `sys/status.php` polling and the callback set in the account settings.
//!
//! SMSC.ru's status request needs the phone as well as the message id, so this channel's
//! [`ProviderMessageId`]s are `"<id>:<phone digits>"` ([`message_id`]); callback reports are
//! built the same way, so they match the receipt.
//!
//! Test mode ("virtual sending") is an account setting at SMSC.ru; such messages report `err`
//! 200. There is no per-request sandbox flag.
//!
//! ```no_run
//! use messaging_core::{Address, ChannelExt, Phone};
//! use messaging_sms::{SmsOptions, smsc::{SmscAuth, SmscChannel}};
//! # async fn run() -> Result<(), messaging_core::ChannelError> {
//! let sms = SmscChannel::new(SmsOptions::new("sms-backup"), SmscAuth::login("clinic", "secret"));
//! let to = Address::Phone(Phone::parse("+79123456789").unwrap());
//! let receipt = sms.send_text(to, "Приём завтра в 10:00").await?;
//! assert!(receipt.provider_message_id.as_str().ends_with(":79123456789"));
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use messaging_core::webhook::{WebhookError, WebhookRequest};
use messaging_core::{
    Address, ChannelError, ChannelKind, Cost, DeliveryReport, DeliveryStatus, ErrorKind, Event,
    InboundMessage, Phone, ProviderMessageId,
};
use messaging_http::Reply;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::channel::{Accepted, Endpoint, SmsChannel, SmsProvider, UnsignedWebhook};
use crate::shared::PreparedSms;
use crate::shared::{self, EventStamp, SmsOptions, StatusMeaning, Transliteration};

const PROVIDER: &str = "smsc";

/// How SMSC.ru knows the account.
#[derive(Clone)]
pub enum SmscAuth {
    /// Login and password (`login`, `psw`).
    Login {
        /// The login.
        login: String,
        /// The password.
        password: SecretString,
    },
    /// An API key (`apikey`).
    ApiKey(SecretString),
}

impl SmscAuth {
    /// Login and password.
    pub fn login(login: impl Into<String>, password: impl Into<String>) -> Self {
        SmscAuth::Login {
            login: login.into(),
            password: SecretString::from(password.into()),
        }
    }
    /// An API key.
    pub fn api_key(key: impl Into<String>) -> Self {
        SmscAuth::ApiKey(SecretString::from(key.into()))
    }
    fn form(&self) -> Vec<(&'static str, String)> {
        match self {
            SmscAuth::Login { login, password } => vec![
                ("login", login.clone()),
                ("psw", password.expose_secret().to_owned()),
            ],
            SmscAuth::ApiKey(k) => vec![("apikey", k.expose_secret().to_owned())],
        }
    }
}

impl fmt::Debug for SmscAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmscAuth::Login { login, .. } => f
                .debug_struct("Login")
                .field("login", login)
                .field("password", &"[redacted]")
                .finish(),
            SmscAuth::ApiKey(_) => f.write_str("ApiKey([redacted])"),
        }
    }
}

/// The message id this channel uses: SMSC's id and the phone digits, `"<id>:<digits>"`.
///
/// ```
/// assert_eq!(messaging_sms::smsc::message_id("42", "+7 912 345-67-89"), "42:79123456789");
/// ```
pub fn message_id(id: &str, phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        id.trim().to_owned()
    } else {
        format!("{}:{digits}", id.trim())
    }
}

/// Splits a [`message_id`] into SMSC's id and the phone digits.
pub fn split_message_id(id: &str) -> Option<(&str, &str)> {
    let (a, b) = id.split_once(':')?;
    (!a.is_empty() && !b.is_empty()).then_some((a, b))
}

/// SMSC.ru as an [`SmsProvider`]: form posts with `fmt=3` (JSON answers) and the
/// credentials in the form; one status request per message, by id and phone.
///
/// ```
/// use messaging_sms::smsc::{Smsc, SmscAuth};
/// let p = Smsc::new(SmscAuth::api_key("KEY"));
/// assert_eq!(format!("{p:?}"), "Smsc { auth: ApiKey([redacted]) }");
/// ```
#[derive(Debug, Clone)]
pub struct Smsc {
    auth: SmscAuth,
}

impl Smsc {
    /// The provider with these credentials.
    pub fn new(auth: SmscAuth) -> Self {
        Smsc { auth }
    }

    /// A form post to `path` with the credentials, `fmt=3` and UTF-8 added.
    fn post(
        &self,
        api: &Endpoint<'_>,
        path: &str,
        mut form: Vec<(&'static str, String)>,
    ) -> reqwest::RequestBuilder {
        form.extend(self.auth.form());
        form.push(("fmt", "3".into()));
        form.push(("charset", "utf-8".into()));
        api.post(path).form(&form)
    }
}

/// An SMSC.ru account as a [`Channel`](messaging_core::Channel): [`SmsChannel`] over [`Smsc`]
/// (`https://www2.smsc.ru` is the backup host; smscentre.com and smsc.kz are the same platform,
/// reached with [`base_url`](SmsChannel::base_url)).
pub type SmscChannel = SmsChannel<Smsc>;

impl SmsChannel<Smsc> {
    /// A channel.
    pub fn new(opts: SmsOptions, auth: SmscAuth) -> Self {
        SmsChannel::with_provider(opts, Smsc::new(auth))
    }
}

impl SmsProvider for Smsc {
    const NAME: &'static str = PROVIDER;
    const DEFAULT_BASE_URL: &'static str = "https://smsc.ru";
    type Webhook = SmscWebhook;

    fn send_request(
        &self,
        api: &Endpoint<'_>,
        sms: &PreparedSms,
    ) -> Result<reqwest::RequestBuilder, ChannelError> {
        let opts = api.options();
        let mut form = vec![
            // With a leading '+' SMSC does not "correct" the number.
            ("phones", sms.phone.as_str().to_owned()),
            ("mes", sms.text.clone()),
            ("cost", "3".into()),
        ];
        if let Some(s) = &opts.sender {
            form.push(("sender", s.clone()));
        }
        if opts.transliteration == Transliteration::Provider {
            form.push(("translit", "1".into()));
        }
        Ok(self.post(api, "/sys/send.php", form))
    }

    fn read_send(
        &self,
        reply: &Reply,
        sms: &PreparedSms,
        _now: DateTime<Utc>,
    ) -> Result<Accepted, ChannelError> {
        let v = read_answer(reply)?;
        let Some(id) = shared::lenient_string(v.get("id")) else {
            return Err(ChannelError::unexpected(
                "smsc: answer without a message id",
            ));
        };
        let mut a = Accepted::new(message_id(&id, sms.phone.digits()));
        if let Some(n) = shared::lenient_i64(v.get("cnt")).and_then(|n| u32::try_from(n).ok()) {
            a = a.segments(n);
        }
        if let Some(c) = shared::lenient_f64(v.get("cost")) {
            a = a.cost(Cost::new(c, "RUB"));
        }
        Ok(a)
    }

    /// One `sys/status.php` request per message; ids not in [`message_id`] form are skipped.
    fn status_request(
        &self,
        api: &Endpoint<'_>,
        ids: &[ProviderMessageId],
    ) -> Option<reqwest::RequestBuilder> {
        let (id, phone) = split_message_id(ids.first()?.as_str())?;
        let form = vec![("phone", phone.to_owned()), ("id", id.to_owned())];
        Some(self.post(api, "/sys/status.php", form))
    }

    fn read_status(
        &self,
        reply: &Reply,
        ids: &[ProviderMessageId],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeliveryReport>, ChannelError> {
        let v = read_answer(reply)?;
        Ok(ids
            .first()
            .and_then(|pmid| status_report(pmid.as_str(), &v, now))
            .into_iter()
            .collect())
    }

    fn parse_callback(
        stamp: &EventStamp,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<Event>, WebhookError> {
        parse_callback(stamp, request)
    }

    fn redactor(&self) -> messaging_http::Redactor {
        match &self.auth {
            SmscAuth::ApiKey(k) => messaging_http::Redactor::new().secret(k.expose_secret()),
            SmscAuth::Login { password, .. } => {
                messaging_http::Redactor::new().secret(password.expose_secret())
            }
        }
    }

    fn webhook(&self, stamp: EventStamp) -> SmscWebhook {
        UnsignedWebhook::with_stamp(stamp)
    }
}

/// Reads an SMSC JSON answer; `{"error": …, "error_code": N}` becomes a typed error.
fn read_answer(reply: &Reply) -> Result<Value, ChannelError> {
    let v = match serde_json::from_slice::<Value>(&reply.body) {
        Ok(v) if v.is_object() => v,
        _ => return Err(shared::unreadable(PROVIDER, reply)),
    };
    if let Some(code) = shared::lenient_i64(v.get("error_code")) {
        let text = v.get("error").and_then(Value::as_str).unwrap_or_default();
        let (kind, wait) = send_error_kind(code);
        return Err(shared::coded_error(PROVIDER, kind, code, text, wait));
    }
    if let Some(text) = v.get("error").and_then(Value::as_str) {
        return Err(ChannelError::unexpected(format!(
            "{PROVIDER}: {}",
            shared::clip(text)
        )));
    }
    if !reply.status.is_success() {
        return Err(shared::http_status_error(PROVIDER, reply, None));
    }
    Ok(v)
}

/// A report from a `sys/status.php` answer, dated `now` when it carries no time.
fn status_report(pmid: &str, v: &Value, now: DateTime<Utc>) -> Option<DeliveryReport> {
    let code = shared::lenient_i64(v.get("status"))?;
    let at = shared::lenient_i64(v.get("last_timestamp"))
        .and_then(|t| shared::unix_time(&t.to_string()))
        .unwrap_or(now);
    let err = shared::lenient_i64(v.get("err")).filter(|e| *e != 0);
    Some(report(pmid, code, err, at))
}

fn report(pmid: &str, code: i64, err: Option<i64>, at: DateTime<Utc>) -> DeliveryReport {
    let meaning = status_meaning(code);
    let detail = err.map(|e| match meaning {
        Some(m) => format!("{} (err {e})", m.text),
        None => format!("unknown status {code} (err {e})"),
    });
    shared::report_from_code(pmid, &code.to_string(), meaning, detail.as_deref(), at)
}

/// The meaning of an SMSC.ru message status code, or `None` for a code this table does not know.
///
/// ```
/// use messaging_core::DeliveryStatus;
/// use messaging_sms::smsc::status_meaning;
/// assert_eq!(status_meaning(1).unwrap().status, DeliveryStatus::Delivered);
/// assert_eq!(status_meaning(20).unwrap().status, DeliveryStatus::Failed);
/// assert!(status_meaning(21).is_none());
/// ```
pub fn status_meaning(code: i64) -> Option<StatusMeaning> {
    use DeliveryStatus as S;
    use ErrorKind as K;
    Some(match code {
        -3 => StatusMeaning::failed(K::Unexpected, "message not found"),
        -2 => StatusMeaning::failed(K::Unexpected, "stopped"),
        -1 => StatusMeaning::ok(S::Accepted, "waiting to be sent"),
        0 => StatusMeaning::ok(S::Sent, "handed to the operator"),
        1 => StatusMeaning::ok(S::Delivered, "delivered"),
        2 => StatusMeaning::ok(S::Read, "read"),
        3 => StatusMeaning::failed(K::Unreachable, "expired"),
        4 => StatusMeaning::ok(S::Read, "delivered, link clicked"),
        20 => StatusMeaning::failed(K::Unreachable, "impossible to deliver"),
        22 => StatusMeaning::failed(K::Unreachable, "wrong number format"),
        23 => StatusMeaning::failed(K::InvalidContent, "prohibited"),
        24 => StatusMeaning::failed(K::ChannelDown, "insufficient funds"),
        25 => StatusMeaning::failed(K::Unreachable, "unavailable number"),
        _ => return None,
    })
}

/// How an SMSC.ru request error code (`error_code`) reads: the kind, and a wait for rate limits.
///
/// ```
/// use messaging_core::ErrorKind;
/// use messaging_sms::smsc::send_error_kind;
/// assert_eq!(send_error_kind(2).0, ErrorKind::ChannelDown);
/// assert_eq!(send_error_kind(9).0, ErrorKind::RateLimited);
/// ```
pub fn send_error_kind(code: i64) -> (ErrorKind, Option<Duration>) {
    use ErrorKind as K;
    match code {
        1 => (K::Unexpected, None),
        2 | 3 => (K::ChannelDown, None),
        4 => (K::RateLimited, Some(Duration::from_secs(60))),
        5 | 6 => (K::InvalidContent, None),
        7 | 8 => (K::Unreachable, None),
        9 => (K::RateLimited, Some(Duration::from_secs(60))),
        _ => (K::Unexpected, None),
    }
}

/// Parses SMSC.ru callbacks (form or query fields): a status report carries `id`, `phone`,
/// `status` and `err` (and `ts`/`time` when given); an incoming SMS carries `phone` and `mes`.
///
/// SMSC.ru's callback field list and its optional signature are not fully documented in the
/// sources this crate was written from; no signature is checked, so protect the URL with a
/// secret path.
///
/// ```
/// use messaging_core::{Event, DeliveryStatus, webhook::{WebhookHandler, WebhookRequest}};
/// use messaging_sms::smsc::SmscWebhook;
/// let headers = http::HeaderMap::new();
/// let body = b"id=42&phone=79123456789&status=1&err=0";
/// let ev = SmscWebhook::new().verify_and_parse(&WebhookRequest::post(&headers, body)).unwrap();
/// let Event::Delivery(d) = &ev[0] else { panic!() };
/// assert_eq!(d.provider_message_id.as_str(), "42:79123456789");
/// assert_eq!(d.status, DeliveryStatus::Delivered);
/// ```
pub type SmscWebhook = UnsignedWebhook<Smsc>;

fn parse_callback(
    stamp: &EventStamp,
    request: &WebhookRequest<'_>,
) -> Result<Vec<Event>, WebhookError> {
    let f = shared::callback_fields(request);
    let get = |k: &str| {
        shared::field(&f, k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let at = get("ts")
        .or_else(|| get("time"))
        .and_then(shared::unix_time)
        .unwrap_or_else(|| stamp.now());
    if let (Some(id), Some(status)) = (get("id"), get("status")) {
        let Ok(code) = status.parse::<i64>() else {
            return Err(WebhookError::malformed(PROVIDER, "status is not a number"));
        };
        let err = get("err")
            .and_then(|e| e.parse::<i64>().ok())
            .filter(|e| *e != 0);
        let pmid = message_id(id, get("phone").unwrap_or_default());
        let mut r = report(&pmid, code, err, at);
        if let Some(phone) = get("phone") {
            r = r.recipient(phone);
        }
        return Ok(vec![stamp.delivery(r)]);
    }
    if let (Some(phone), Some(text)) = (get("phone"), shared::field(&f, "mes")) {
        let phone = Phone::parse(phone)
            .map_err(|e| WebhookError::malformed(PROVIDER, format!("sender: {e}")))?;
        let mut m = InboundMessage::new(
            ChannelKind::Sms,
            Address::Phone(phone),
            Some(text.to_owned()),
            at,
        );
        if let Some(id) = get("id") {
            m = m.provider_message_id(id);
        }
        return Ok(vec![stamp.tag(Event::Inbound(m))]);
    }
    Err(WebhookError::malformed(
        PROVIDER,
        "expected id and status (a report) or phone and mes (an incoming SMS)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::webhook::WebhookHandler;

    #[test]
    fn status_table_covers_every_documented_code() {
        use DeliveryStatus as S;
        use ErrorKind as K;
        let table: &[(i64, S, Option<K>)] = &[
            (-3, S::Failed, Some(K::Unexpected)),
            (-2, S::Failed, Some(K::Unexpected)),
            (-1, S::Accepted, None),
            (0, S::Sent, None),
            (1, S::Delivered, None),
            (2, S::Read, None),
            (3, S::Failed, Some(K::Unreachable)),
            (4, S::Read, None),
            (20, S::Failed, Some(K::Unreachable)),
            (22, S::Failed, Some(K::Unreachable)),
            (23, S::Failed, Some(K::InvalidContent)),
            (24, S::Failed, Some(K::ChannelDown)),
            (25, S::Failed, Some(K::Unreachable)),
        ];
        for &(code, status, kind) in table {
            let m = status_meaning(code).unwrap_or_else(|| panic!("{code} unmapped"));
            assert_eq!((m.status, m.kind), (status, kind), "{code}");
        }
        for unknown in [-4, 5, 19, 21, 26] {
            assert!(status_meaning(unknown).is_none(), "{unknown}");
            let r = report("1:7", unknown, None, Utc::now());
            assert_eq!(r.error.unwrap().code, unknown.to_string());
        }
    }

    #[test]
    fn send_error_table() {
        use ErrorKind as K;
        for (code, kind) in [
            (1, K::Unexpected),
            (2, K::ChannelDown),
            (3, K::ChannelDown),
            (4, K::RateLimited),
            (5, K::InvalidContent),
            (6, K::InvalidContent),
            (7, K::Unreachable),
            (8, K::Unreachable),
            (9, K::RateLimited),
            (77, K::Unexpected),
        ] {
            assert_eq!(send_error_kind(code).0, kind, "{code}");
        }
    }

    #[test]
    fn ids_round_trip() {
        let id = message_id("1234", "+79123456789");
        assert_eq!(split_message_id(&id), Some(("1234", "79123456789")));
        assert_eq!(split_message_id("1234"), None);
        assert_eq!(split_message_id(":7"), None);
    }

    #[test]
    fn failed_report_keeps_err_detail() {
        let headers = http::HeaderMap::new();
        let body = b"id=7&phone=%2B79123456789&status=20&err=1&ts=1700000000";
        let ev = SmscWebhook::new()
            .parse(&WebhookRequest::post(&headers, body))
            .unwrap();
        let Event::Delivery(d) = &ev[0] else { panic!() };
        assert_eq!(d.provider_message_id.as_str(), "7:79123456789");
        assert_eq!(d.status, DeliveryStatus::Failed);
        let e = d.error.as_ref().unwrap();
        assert_eq!(e.code, "20");
        assert!(e.message.contains("err 1"), "{}", e.message);
        assert_eq!(e.kind, Some(ErrorKind::Unreachable));
        assert_eq!(d.at.timestamp(), 1_700_000_000);
    }

    #[test]
    fn get_callbacks_and_inbound() {
        let headers = http::HeaderMap::new();
        let req = WebhookRequest {
            method: &http::Method::GET,
            url: Some("https://example.com/cb/smsc?id=9&phone=79123456789&status=0"),
            headers: &headers,
            body: b"",
        };
        let ev = SmscWebhook::new().parse(&req).unwrap();
        assert!(matches!(&ev[0], Event::Delivery(d) if d.status == DeliveryStatus::Sent));
        let ev = SmscWebhook::new()
            .parse(&WebhookRequest::post(
                &headers,
                b"phone=79123456789&mes=%D0%94%D0%B0",
            ))
            .unwrap();
        let Event::Inbound(m) = &ev[0] else { panic!() };
        assert_eq!(m.text.as_deref(), Some("Да"));
        assert!(
            SmscWebhook::new()
                .parse(&WebhookRequest::post(&headers, b"id=1&status=x"))
                .is_err()
        );
    }

    #[test]
    fn reports_without_a_time_are_dated_by_the_channels_clock() {
        use messaging_core::{Clock, ManualClock};
        use std::sync::Arc;
        let clock = ManualClock::at_unix(1_800_000_000);
        let opts = SmsOptions::new("smsc").clock(Arc::new(clock.clone()));
        let handler = SmscChannel::new(opts, SmscAuth::login("l", "p")).webhook();
        let headers = http::HeaderMap::new();
        for body in [
            &b"id=7&phone=79123456789&status=1&err=0"[..],
            b"phone=79123456789&mes=Da",
        ] {
            let ev = handler
                .parse(&WebhookRequest::post(&headers, body))
                .unwrap();
            assert_eq!(ev[0].at(), clock.now());
            assert_eq!(ev[0].channel_id().unwrap().as_str(), "smsc");
        }
        let r = status_report("7:79123456789", &json_status(), clock.now()).unwrap();
        assert_eq!(r.at, clock.now());
    }

    fn json_status() -> Value {
        serde_json::json!({"status": 1, "err": 0})
    }
}
