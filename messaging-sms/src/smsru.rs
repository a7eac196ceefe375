//! SMS.ru: `POST https://sms.ru/sms/send` (form, `json=1`), `sms/status` polling (100 ids per
//! request) and the `data[N]` callback that must be answered with `100`.
//!
//! ```no_run
//! use messaging_core::{Address, ChannelExt, Phone};
//! use messaging_sms::{SmsOptions, smsru::SmsRuChannel};
//! # async fn run() -> Result<(), messaging_core::ChannelError> {
//! let sms = SmsRuChannel::new(SmsOptions::new("sms-main").sender("Clinic"), "YOUR-API-ID");
//! let to = Address::Phone(Phone::parse("+79123456789").unwrap());
//! let receipt = sms.send_text(to, "Приём завтра в 10:00").await?;
//! println!("{} in {} segment(s)", receipt.provider_message_id, receipt.parts);
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use messaging_core::webhook::{WebhookError, WebhookReply, WebhookRequest};
use messaging_core::{
    ChannelError, Cost, DeliveryReport, DeliveryStatus, ErrorKind, Event, ProviderMessageId,
};
use messaging_http::Reply;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::channel::{Accepted, Endpoint, SmsChannel, SmsProvider, UnsignedWebhook};
use crate::shared::PreparedSms;
use crate::shared::{self, EventStamp, SmsOptions, StatusMeaning, Transliteration};

const PROVIDER: &str = "smsru";

/// The largest number of ids one `sms/status` request may carry.
pub const STATUS_BATCH: usize = 100;

/// How SMS.ru knows the account.
#[derive(Clone)]
pub enum SmsRuAuth {
    /// The account's `api_id`.
    ApiId(SecretString),
    /// Login and password.
    Login {
        /// The login (a phone number).
        login: String,
        /// The password.
        password: SecretString,
    },
}

impl fmt::Debug for SmsRuAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmsRuAuth::ApiId(_) => f.write_str("ApiId([redacted])"),
            SmsRuAuth::Login { login, .. } => f
                .debug_struct("Login")
                .field("login", login)
                .field("password", &"[redacted]")
                .finish(),
        }
    }
}

impl SmsRuAuth {
    fn form(&self) -> Vec<(&'static str, String)> {
        match self {
            SmsRuAuth::ApiId(k) => vec![("api_id", k.expose_secret().to_owned())],
            SmsRuAuth::Login { login, password } => vec![
                ("login", login.clone()),
                ("password", password.expose_secret().to_owned()),
            ],
        }
    }
}

/// SMS.ru as an [`SmsProvider`]: form posts with `json=1`, the credentials in the form,
/// statuses in batches of [`STATUS_BATCH`], callbacks answered `100`.
///
/// ```
/// use messaging_sms::smsru::{SmsRu, SmsRuAuth};
/// let p = SmsRu::new(SmsRuAuth::ApiId("API-ID".to_owned().into()));
/// assert_eq!(format!("{p:?}"), "SmsRu { auth: ApiId([redacted]) }");
/// ```
#[derive(Debug, Clone)]
pub struct SmsRu {
    auth: SmsRuAuth,
}

impl SmsRu {
    /// The provider with these credentials.
    pub fn new(auth: SmsRuAuth) -> Self {
        SmsRu { auth }
    }

    /// A form post to `path` with the credentials and `json=1` added.
    fn post(
        &self,
        api: &Endpoint<'_>,
        path: &str,
        mut form: Vec<(&'static str, String)>,
    ) -> reqwest::RequestBuilder {
        form.extend(self.auth.form());
        form.push(("json", "1".into()));
        api.post(path).form(&form)
    }
}

/// An SMS.ru account as a [`Channel`](messaging_core::Channel): [`SmsChannel`] over [`SmsRu`].
pub type SmsRuChannel = SmsChannel<SmsRu>;

impl SmsChannel<SmsRu> {
    /// A channel authenticated by `api_id`.
    pub fn new(opts: SmsOptions, api_id: impl Into<String>) -> Self {
        Self::with_auth(opts, SmsRuAuth::ApiId(SecretString::from(api_id.into())))
    }

    /// A channel with any form of authentication.
    pub fn with_auth(opts: SmsOptions, auth: SmsRuAuth) -> Self {
        SmsChannel::with_provider(opts, SmsRu::new(auth))
    }
}

impl SmsProvider for SmsRu {
    const NAME: &'static str = PROVIDER;
    const DEFAULT_BASE_URL: &'static str = "https://sms.ru";
    const STATUS_BATCH: usize = STATUS_BATCH;
    type Webhook = SmsRuWebhook;

    fn send_request(
        &self,
        api: &Endpoint<'_>,
        sms: &PreparedSms,
    ) -> Result<reqwest::RequestBuilder, ChannelError> {
        let opts = api.options();
        let mut form = vec![
            ("to", sms.phone.digits().to_owned()),
            ("msg", sms.text.clone()),
        ];
        if let Some(s) = &opts.sender {
            form.push(("from", s.clone()));
        }
        if opts.sandbox {
            form.push(("test", "1".into()));
        }
        if opts.transliteration == Transliteration::Provider {
            form.push(("translit", "1".into()));
        }
        Ok(self.post(api, "/sms/send", form))
    }

    fn read_send(
        &self,
        reply: &Reply,
        sms: &PreparedSms,
        now: DateTime<Utc>,
    ) -> Result<Accepted, ChannelError> {
        let accepted = parse_send(reply, sms.phone.digits())?;
        let id = accepted.sms_id.unwrap_or_else(|| {
            tracing::warn!(
                provider = PROVIDER,
                "message accepted without sms_id; reports cannot be matched"
            );
            format!(
                "smsru-noid-{}-{}",
                sms.phone.digits(),
                now.timestamp_millis()
            )
        });
        let mut a = Accepted::new(id);
        if let Some(c) = accepted.cost {
            a = a.cost(c);
        }
        Ok(a)
    }

    fn status_request(
        &self,
        api: &Endpoint<'_>,
        ids: &[ProviderMessageId],
    ) -> Option<reqwest::RequestBuilder> {
        let list = ids
            .iter()
            .map(ProviderMessageId::as_str)
            .collect::<Vec<_>>()
            .join(",");
        Some(self.post(api, "/sms/status", vec![("sms_id", list)]))
    }

    fn read_status(
        &self,
        reply: &Reply,
        _ids: &[ProviderMessageId],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeliveryReport>, ChannelError> {
        parse_status(reply, now)
    }

    fn parse_callback(
        stamp: &EventStamp,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<Event>, WebhookError> {
        parse_callback(stamp, request)
    }

    /// SMS.ru retries a callback until it is answered `100`.
    fn callback_reply() -> WebhookReply {
        WebhookReply::text("100")
    }

    fn redactor(&self) -> messaging_http::Redactor {
        match &self.auth {
            SmsRuAuth::ApiId(k) => messaging_http::Redactor::new().secret(k.expose_secret()),
            SmsRuAuth::Login { password, .. } => {
                messaging_http::Redactor::new().secret(password.expose_secret())
            }
        }
    }

    fn webhook(&self, stamp: EventStamp) -> SmsRuWebhook {
        UnsignedWebhook::with_stamp(stamp)
    }
}

/// What SMS.ru said about one accepted recipient.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SmsRuAccepted {
    pub sms_id: Option<String>,
    pub cost: Option<Cost>,
}

fn envelope(reply: &Reply) -> Result<Value, ChannelError> {
    match serde_json::from_slice::<Value>(&reply.body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(shared::unreadable(PROVIDER, reply)),
    }
}

fn top_level_error(v: &Value, reply: &Reply) -> Option<ChannelError> {
    let status = v.get("status").and_then(Value::as_str).unwrap_or_default();
    if status.eq_ignore_ascii_case("OK") {
        return None;
    }
    let code = shared::lenient_i64(v.get("status_code"));
    let text = v
        .get("status_text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(match code {
        Some(c) => code_error(c, text),
        None => shared::unreadable(PROVIDER, reply),
    })
}

/// Reads a `sms/send` answer for one recipient (matched by digits, with or without `+`, trimmed).
pub(crate) fn parse_send(reply: &Reply, digits: &str) -> Result<SmsRuAccepted, ChannelError> {
    let v = envelope(reply)?;
    if let Some(e) = top_level_error(&v, reply) {
        return Err(e);
    }
    let Some(map) = v.get("sms").and_then(Value::as_object) else {
        return Err(ChannelError::unexpected("smsru: answer without an sms map"));
    };
    let entry = map
        .iter()
        .find(|(k, _)| k.trim().trim_start_matches('+') == digits)
        .or_else(|| {
            if map.len() == 1 {
                map.iter().next()
            } else {
                None
            }
        })
        .map(|(_, e)| e);
    let Some(entry) = entry else {
        return Err(ChannelError::unexpected(
            "smsru: the answer does not mention the recipient",
        ));
    };
    let status = entry.get("status").and_then(Value::as_str).unwrap_or("OK");
    if !status.eq_ignore_ascii_case("OK") {
        let code = shared::lenient_i64(entry.get("status_code")).unwrap_or(0);
        let text = entry
            .get("status_text")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Err(code_error(code, text));
    }
    Ok(SmsRuAccepted {
        sms_id: shared::lenient_string(entry.get("sms_id")),
        cost: shared::lenient_f64(entry.get("cost")).map(|c| Cost::new(c, "RUB")),
    })
}

/// Reads a `sms/status` answer into delivery reports (without channel id), dated `now` (the
/// answer carries no time).
pub(crate) fn parse_status(
    reply: &Reply,
    now: DateTime<Utc>,
) -> Result<Vec<DeliveryReport>, ChannelError> {
    let v = envelope(reply)?;
    if let Some(e) = top_level_error(&v, reply) {
        return Err(e);
    }
    let mut out = Vec::new();
    let Some(map) = v.get("sms").and_then(Value::as_object) else {
        return Ok(out);
    };
    for (id, entry) in map {
        let Some(code) = shared::lenient_i64(entry.get("status_code")) else {
            continue;
        };
        let text = entry.get("status_text").and_then(Value::as_str);
        let mut r = shared::report_from_code(
            id.trim(),
            &code.to_string(),
            status_meaning(code),
            text,
            now,
        );
        r.cost = shared::lenient_f64(entry.get("cost")).map(|c| Cost::new(c, "RUB"));
        out.push(r);
    }
    Ok(out)
}

/// The meaning of an SMS.ru message status code (in `sms/status` and callbacks), or `None` for
/// a code this table does not know.
///
/// ```
/// use messaging_core::DeliveryStatus;
/// use messaging_sms::smsru::status_meaning;
/// assert_eq!(status_meaning(103).unwrap().status, DeliveryStatus::Delivered);
/// assert_eq!(status_meaning(104).unwrap().status, DeliveryStatus::Failed);
/// assert!(status_meaning(999).is_none());
/// ```
pub fn status_meaning(code: i64) -> Option<StatusMeaning> {
    use DeliveryStatus as S;
    use ErrorKind as K;
    Some(match code {
        -1 => StatusMeaning::failed(K::Unexpected, "message not found"),
        100 => StatusMeaning::ok(S::Accepted, "queued at SMS.ru"),
        101 => StatusMeaning::ok(S::Accepted, "being handed to the operator"),
        102 => StatusMeaning::ok(S::Sent, "sent, in transit"),
        103 => StatusMeaning::ok(S::Delivered, "delivered"),
        104 => StatusMeaning::failed(K::Unreachable, "not delivered: lifetime expired"),
        105 => StatusMeaning::failed(K::Unreachable, "not delivered: deleted by the operator"),
        106 => StatusMeaning::failed(K::Unreachable, "not delivered: phone failure"),
        107 => StatusMeaning::failed(K::Unexpected, "not delivered: unknown reason"),
        108 => StatusMeaning::failed(K::Unreachable, "not delivered: rejected"),
        110 => StatusMeaning::ok(S::Read, "read"),
        150 => StatusMeaning::failed(K::Unreachable, "not delivered: no route to the number"),
        _ => return None,
    })
}

/// How a send-time (request) error code of SMS.ru reads: the kind, and a wait for rate limits.
///
/// ```
/// use messaging_core::ErrorKind;
/// use messaging_sms::smsru::send_error_kind;
/// assert_eq!(send_error_kind(200).0, ErrorKind::ChannelDown); // bad api_id
/// assert_eq!(send_error_kind(202).0, ErrorKind::Unreachable); // bad recipient
/// assert_eq!(send_error_kind(500).0, ErrorKind::Temporary);
/// ```
pub fn send_error_kind(code: i64) -> (ErrorKind, Option<Duration>) {
    use ErrorKind as K;
    let minute = Some(Duration::from_secs(60));
    match code {
        // auth, money, sender, account
        200 | 201 | 204 | 221 | 300 | 301 | 302 => (K::ChannelDown, None),
        // daily limit of the account
        206 => (K::ChannelDown, None),
        202 | 207 | 209 | 214 | 215 | 550 => (K::Unreachable, None),
        203 | 205 | 208 | 212 | 216 | 217 => (K::InvalidContent, None),
        230 | 232 => (K::RateLimited, None),
        231 | 233 => (K::RateLimited, minute),
        501..=508 => (K::RateLimited, minute),
        220 | 304 | 305 | 500 => (K::Temporary, None),
        _ => (K::Unexpected, None),
    }
}

fn code_error(code: i64, text: &str) -> ChannelError {
    let (kind, wait) = send_error_kind(code);
    shared::coded_error(PROVIDER, kind, code, text, wait)
}

/// Verifies and parses SMS.ru callbacks: form fields `data[0]`, `data[1]`, … each holding lines
/// `sms_status` / `<sms_id>` / `<status code>` (a fourth line, a unix time, is used when present).
///
/// SMS.ru does not sign callbacks: protect the URL with a secret path. The reply is `100`, as
/// SMS.ru requires (otherwise it retries).
///
/// ```
/// use messaging_core::webhook::{WebhookHandler, WebhookRequest};
/// use messaging_sms::smsru::SmsRuWebhook;
/// let h = SmsRuWebhook::new();
/// let headers = http::HeaderMap::new();
/// let body = b"data%5B0%5D=sms_status%0A000000-000001%0A103";
/// let events = h.verify_and_parse(&WebhookRequest::post(&headers, body)).unwrap();
/// assert_eq!(events.len(), 1);
/// assert_eq!(h.reply().body, "100");
/// ```
pub type SmsRuWebhook = UnsignedWebhook<SmsRu>;

fn parse_callback(
    stamp: &EventStamp,
    request: &WebhookRequest<'_>,
) -> Result<Vec<Event>, WebhookError> {
    let fields = shared::callback_fields(request);
    let data: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k.starts_with("data[") && k.ends_with(']'))
        .map(|(_, v)| v.as_str())
        .collect();
    if data.is_empty() {
        return Err(WebhookError::malformed(PROVIDER, "no data[N] fields"));
    }
    let now = stamp.now();
    let mut out = Vec::new();
    for value in data {
        let lines: Vec<&str> = value.lines().map(str::trim).collect();
        match lines.as_slice() {
            ["sms_status", id, code, rest @ ..] if !id.is_empty() => {
                let at = rest
                    .first()
                    .and_then(|t| shared::unix_time(t))
                    .unwrap_or(now);
                let meaning = code.parse::<i64>().ok().and_then(status_meaning);
                let report = shared::report_from_code(id, code, meaning, None, at);
                out.push(stamp.delivery(report));
            }
            ["sms_status", ..] => {
                tracing::warn!(
                    provider = PROVIDER,
                    "sms_status entry without id or code skipped"
                );
            }
            // callcheck and other event types are not about messages.
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::ChannelId;
    use messaging_core::webhook::WebhookHandler;

    #[test]
    fn status_table_covers_every_documented_code() {
        use DeliveryStatus as S;
        let table: &[(i64, S, Option<ErrorKind>)] = &[
            (-1, S::Failed, Some(ErrorKind::Unexpected)),
            (100, S::Accepted, None),
            (101, S::Accepted, None),
            (102, S::Sent, None),
            (103, S::Delivered, None),
            (104, S::Failed, Some(ErrorKind::Unreachable)),
            (105, S::Failed, Some(ErrorKind::Unreachable)),
            (106, S::Failed, Some(ErrorKind::Unreachable)),
            (107, S::Failed, Some(ErrorKind::Unexpected)),
            (108, S::Failed, Some(ErrorKind::Unreachable)),
            (110, S::Read, None),
            (150, S::Failed, Some(ErrorKind::Unreachable)),
        ];
        for &(code, status, kind) in table {
            let m = status_meaning(code).unwrap_or_else(|| panic!("{code} unmapped"));
            assert_eq!(m.status, status, "{code}");
            assert_eq!(m.kind, kind, "{code}");
        }
        for unknown in [0, 99, 109, 111, 149, 151, 200] {
            assert!(status_meaning(unknown).is_none(), "{unknown}");
        }
    }

    #[test]
    fn send_error_table() {
        use ErrorKind as K;
        let table: &[(i64, K)] = &[
            (200, K::ChannelDown),
            (201, K::ChannelDown),
            (202, K::Unreachable),
            (203, K::InvalidContent),
            (204, K::ChannelDown),
            (205, K::InvalidContent),
            (206, K::ChannelDown),
            (207, K::Unreachable),
            (208, K::InvalidContent),
            (209, K::Unreachable),
            (210, K::Unexpected),
            (211, K::Unexpected),
            (212, K::InvalidContent),
            (213, K::Unexpected),
            (214, K::Unreachable),
            (215, K::Unreachable),
            (216, K::InvalidContent),
            (217, K::InvalidContent),
            (220, K::Temporary),
            (221, K::ChannelDown),
            (230, K::RateLimited),
            (231, K::RateLimited),
            (232, K::RateLimited),
            (233, K::RateLimited),
            (300, K::ChannelDown),
            (301, K::ChannelDown),
            (302, K::ChannelDown),
            (304, K::Temporary),
            (305, K::Temporary),
            (500, K::Temporary),
            (501, K::RateLimited),
            (508, K::RateLimited),
            (550, K::Unreachable),
            (999, K::Unexpected),
        ];
        for &(code, kind) in table {
            assert_eq!(send_error_kind(code).0, kind, "{code}");
        }
        assert_eq!(send_error_kind(231).1, Some(Duration::from_secs(60)));
    }

    #[test]
    fn send_answer_per_recipient_error() {
        let body = r#"{"status":"OK","status_code":100,"sms":{
            "79255070602":{"status":"OK","status_code":100,"sms_id":"000000-10000000"},
            "74993221627":{"status":"ERROR","status_code":207,"status_text":"нельзя"}},"balance":4122.56}"#;
        let ok = parse_send(&shared::test_reply(200, body), "79255070602").unwrap();
        assert_eq!(ok.sms_id.as_deref(), Some("000000-10000000"));
        let e = parse_send(&shared::test_reply(200, body), "74993221627").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        assert_eq!(e.provider_code(), Some("207"));
    }

    #[test]
    fn server_errors_and_garbage() {
        let e = parse_send(&shared::test_reply(503, "<html>down</html>"), "7").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Temporary);
        let e = parse_send(&shared::test_reply(200, "100\n000000-1"), "7").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unexpected);
    }

    #[test]
    fn callback_lines_with_time_and_other_events() {
        let h = SmsRuWebhook::new().channel_id(ChannelId::new("sms-ru"));
        let headers = http::HeaderMap::new();
        let body = "data%5B0%5D=sms_status%0A000000-1%0A106%0A1700000000&data%5B1%5D=callcheck_status%0A201%0A401&data%5B2%5D=sms_status%0A000000-2%0A103";
        let ev = h
            .verify_and_parse(&WebhookRequest::post(&headers, body.as_bytes()))
            .unwrap();
        assert_eq!(ev.len(), 2);
        let Event::Delivery(d) = &ev[0] else { panic!() };
        assert_eq!(d.provider_message_id.as_str(), "000000-1");
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert_eq!(d.at.timestamp(), 1_700_000_000);
        assert_eq!(d.error.as_ref().unwrap().code, "106");
        assert_eq!(d.channel_id.as_ref().unwrap().as_str(), "sms-ru");
        let Event::Delivery(d) = &ev[1] else { panic!() };
        assert_eq!(d.status, DeliveryStatus::Delivered);
        let e = h
            .parse(&WebhookRequest::post(&headers, b"foo=bar"))
            .unwrap_err();
        assert!(matches!(e, WebhookError::Malformed { .. }));
    }

    #[test]
    fn reports_without_a_time_are_dated_by_the_channels_clock() {
        use messaging_core::{Clock, ManualClock};
        use std::sync::Arc;
        let clock = ManualClock::at_unix(1_800_000_000);
        let opts = SmsOptions::new("sms-ru").clock(Arc::new(clock.clone()));
        let handler = SmsRuChannel::new(opts, "api-id").webhook();
        let headers = http::HeaderMap::new();
        let body = b"data%5B0%5D=sms_status%0A000000-1%0A103";
        let ev = handler
            .verify_and_parse(&WebhookRequest::post(&headers, body))
            .unwrap();
        let Event::Delivery(d) = &ev[0] else { panic!() };
        assert_eq!(d.at, clock.now());
        assert_eq!(d.channel_id.as_ref().unwrap().as_str(), "sms-ru");
        let later = ManualClock::at_unix(1_800_000_100);
        let ev = SmsRuWebhook::new()
            .clock(Arc::new(later.clone()))
            .parse(&WebhookRequest::post(&headers, body))
            .unwrap();
        assert_eq!(ev[0].at(), later.now());
        let status = shared::test_reply(
            200,
            r#"{"status":"OK","status_code":100,"sms":{"000000-1":{"status":"OK","status_code":103}}}"#,
        );
        let reports = parse_status(&status, clock.now()).unwrap();
        assert_eq!(reports[0].at, clock.now());
    }
}
