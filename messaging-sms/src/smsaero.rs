//! SMS Aero API v2: `POST https://gate.smsaero.ru/v2/sms/send` (JSON, HTTP Basic with the
//! account e-mail and API key), `sms/status` polling, the sandbox `sms/testsend` /
//! `sms/teststatus` ([`SmsOptions::sandbox`]) and delivery callbacks to `callbackUrl`.
//!
//! ```no_run
//! use messaging_core::{Address, ChannelExt, Phone};
//! use messaging_sms::{SmsOptions, smsaero::SmsAeroChannel};
//! # async fn run() -> Result<(), messaging_core::ChannelError> {
//! let sms = SmsAeroChannel::new(
//!     SmsOptions::new("sms-aero").sender("Clinic").sandbox(true),
//!     "clinic@example.com",
//!     "API-KEY",
//! );
//! let to = Address::Phone(Phone::parse("+79123456789").unwrap());
//! sms.send_text(to, "Приём завтра в 10:00").await?;
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use messaging_core::webhook::{WebhookError, WebhookRequest};
use messaging_core::{
    ChannelError, Cost, DeliveryReport, DeliveryStatus, ErrorKind, Event, ProviderMessageId,
};
use messaging_http::Reply;
use serde_json::{Value, json};

use crate::channel::{Accepted, Endpoint, SmsChannel, SmsProvider, UnsignedWebhook};
use crate::shared::PreparedSms;
use crate::shared::{self, BasicAuth, EventStamp, SmsOptions, StatusMeaning};

const PROVIDER: &str = "smsaero";

/// The free sender name SMS Aero uses when none is configured.
pub const DEFAULT_SIGN: &str = "SMS Aero";

/// SMS Aero as an [`SmsProvider`]: JSON posts with HTTP Basic (the account e-mail and API
/// key), the sandbox methods when [`SmsOptions::sandbox`] is on, one status request per
/// message.
///
/// ```
/// use messaging_sms::smsaero::SmsAero;
/// let p = SmsAero::new("clinic@example.com", "API-KEY");
/// assert!(!format!("{p:?}").contains("API-KEY"));
/// ```
#[derive(Debug, Clone)]
pub struct SmsAero {
    /// The account e-mail and API key.
    auth: BasicAuth,
}

impl SmsAero {
    /// The provider for the account `email` with its API key.
    pub fn new(email: impl Into<String>, api_key: impl Into<String>) -> Self {
        SmsAero {
            auth: BasicAuth::new(email, api_key),
        }
    }

    /// A call of `method` (`sms/send`, `sms/status`), the sandbox's `sms/test…` in sandbox mode.
    fn call(&self, api: &Endpoint<'_>, method: &str, body: &Value) -> reqwest::RequestBuilder {
        let method = if api.options().sandbox {
            method.replacen("sms/", "sms/test", 1)
        } else {
            method.to_owned()
        };
        self.auth.apply(api.post(&format!("/{method}"))).json(body)
    }
}

/// An SMS Aero account as a [`Channel`](messaging_core::Channel): [`SmsChannel`] over
/// [`SmsAero`]. The official SDKs fail over to `gate.smsaero.org/v2` and
/// `gate.smsaero.net/v2`; point [`base_url`](SmsChannel::base_url) there (a base URL ending in
/// `/v2`) if needed.
pub type SmsAeroChannel = SmsChannel<SmsAero>;

impl SmsChannel<SmsAero> {
    /// A channel for the account `email` with its API key.
    pub fn new(opts: SmsOptions, email: impl Into<String>, api_key: impl Into<String>) -> Self {
        SmsChannel::with_provider(opts, SmsAero::new(email, api_key))
    }
}

impl SmsProvider for SmsAero {
    const NAME: &'static str = PROVIDER;
    const DEFAULT_BASE_URL: &'static str = "https://gate.smsaero.ru/v2";
    type Webhook = SmsAeroWebhook;

    fn send_request(
        &self,
        api: &Endpoint<'_>,
        sms: &PreparedSms,
    ) -> Result<reqwest::RequestBuilder, ChannelError> {
        let opts = api.options();
        let mut body = json!({
            "number": sms.phone.digits(),
            "text": sms.text,
            "sign": opts.sender.as_deref().unwrap_or(DEFAULT_SIGN),
        });
        if let (Some(url), Some(obj)) = (&opts.callback_url, body.as_object_mut()) {
            obj.insert("callbackUrl".into(), Value::String(url.clone()));
        }
        Ok(self.call(api, "sms/send", &body))
    }

    fn read_send(
        &self,
        reply: &Reply,
        _sms: &PreparedSms,
        _now: DateTime<Utc>,
    ) -> Result<Accepted, ChannelError> {
        let data = read_envelope(reply)?;
        let item = match &data {
            Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        let Some(id) = shared::lenient_string(item.get("id")) else {
            return Err(ChannelError::unexpected(
                "smsaero: answer without a message id",
            ));
        };
        let mut a = Accepted::new(id);
        if let Some(c) = shared::lenient_f64(item.get("cost")) {
            a = a.cost(Cost::new(c, "RUB"));
        }
        Ok(a)
    }

    /// One `sms/status` request per message.
    fn status_request(
        &self,
        api: &Endpoint<'_>,
        ids: &[ProviderMessageId],
    ) -> Option<reqwest::RequestBuilder> {
        let pmid = ids.first()?.as_str();
        let id = match pmid.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => json!(pmid),
        };
        Some(self.call(api, "sms/status", &json!({ "id": id })))
    }

    fn read_status(
        &self,
        reply: &Reply,
        ids: &[ProviderMessageId],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeliveryReport>, ChannelError> {
        let data = read_envelope(reply)?;
        let fallback = ids.first().map(ProviderMessageId::as_str);
        Ok(report_from_item(&data, fallback, now).into_iter().collect())
    }

    fn parse_callback(
        stamp: &EventStamp,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<Event>, WebhookError> {
        parse_callback(stamp, request)
    }

    fn redactor(&self) -> messaging_http::Redactor {
        self.auth.redactor()
    }

    fn webhook(&self, stamp: EventStamp) -> SmsAeroWebhook {
        UnsignedWebhook::with_stamp(stamp)
    }
}

/// Reads the `{"success", "data", "message"}` envelope; returns `data` or a typed error.
fn read_envelope(reply: &Reply) -> Result<Value, ChannelError> {
    let code = reply.status.as_u16();
    let v = match serde_json::from_slice::<Value>(&reply.body) {
        Ok(v) if v.is_object() => v,
        _ => return Err(shared::unreadable(PROVIDER, reply)),
    };
    let message = v.get("message").and_then(Value::as_str).unwrap_or_default();
    if code == 429 || (500..=599).contains(&code) {
        return Err(shared::http_status_error(PROVIDER, reply, Some(message)));
    }
    // The Python SDK's legacy shapes.
    match v.get("result").and_then(Value::as_str) {
        Some("no credits") => {
            return Err(shared::coded_error(
                PROVIDER,
                ErrorKind::ChannelDown,
                "no credits",
                "no credits",
                None,
            ));
        }
        Some("reject") => {
            let reason = v.get("reason").and_then(Value::as_str).unwrap_or_default();
            return Err(shared::coded_error(
                PROVIDER,
                ErrorKind::Unexpected,
                "reject",
                reason,
                None,
            ));
        }
        _ => {}
    }
    if v.get("success").and_then(Value::as_bool) == Some(true) && reply.status.is_success() {
        return Ok(v.get("data").cloned().unwrap_or(Value::Null));
    }
    Err(envelope_error(code, message, v.get("data")))
}

/// The kind of an SMS Aero failure, read from the HTTP status, the message and the fields the
/// validation error names (`data.number` → unreachable, `data.text` → content, `data.sign` →
/// channel down).
///
/// ```
/// use messaging_core::ErrorKind;
/// use messaging_sms::smsaero::error_kind;
/// let data = serde_json::json!({"number": ["incorrect"]});
/// assert_eq!(error_kind(400, "Validation error.", Some(&data)), ErrorKind::Unreachable);
/// assert_eq!(error_kind(401, "Your request was made with invalid credentials.", None), ErrorKind::ChannelDown);
/// ```
pub fn error_kind(http_status: u16, message: &str, data: Option<&Value>) -> ErrorKind {
    let m = message.to_ascii_lowercase();
    if http_status == 429 || m.contains("too many") {
        return ErrorKind::RateLimited;
    }
    if (500..=599).contains(&http_status) {
        return ErrorKind::Temporary;
    }
    if http_status == 401
        || http_status == 403
        || m.contains("credential")
        || m.contains("balance")
        || m.contains("money")
        || m.contains("no credits")
    {
        return ErrorKind::ChannelDown;
    }
    if let Some(d) = data.and_then(Value::as_object) {
        if d.contains_key("number") || d.contains_key("numbers") {
            return ErrorKind::Unreachable;
        }
        if d.contains_key("sign") {
            return ErrorKind::ChannelDown;
        }
        if d.contains_key("text") {
            return ErrorKind::InvalidContent;
        }
    }
    ErrorKind::Unexpected
}

fn envelope_error(http_status: u16, message: &str, data: Option<&Value>) -> ChannelError {
    let kind = error_kind(http_status, message, data);
    let fields = data
        .and_then(Value::as_object)
        .map(|d| d.keys().cloned().collect::<Vec<_>>().join(", "))
        .filter(|s| !s.is_empty());
    let text = match fields {
        Some(f) => format!("{message} ({f})"),
        None => message.to_owned(),
    };
    shared::coded_error(PROVIDER, kind, format!("http {http_status}"), &text, None)
}

/// The meaning of an SMS Aero status code, or `None` for a code this table does not know.
///
/// The table follows the PHP client's constants (0 queue, 1 delivered, 2 not delivered,
/// 3 transmitted, 4 waiting for status, 6 rejected, 8 on moderation); the Go SDK's comment
/// "3: rejected" disagrees and is not followed.
///
/// ```
/// use messaging_core::DeliveryStatus;
/// use messaging_sms::smsaero::status_meaning;
/// assert_eq!(status_meaning(1).unwrap().status, DeliveryStatus::Delivered);
/// assert_eq!(status_meaning(2).unwrap().status, DeliveryStatus::Failed);
/// ```
pub fn status_meaning(code: i64) -> Option<StatusMeaning> {
    use DeliveryStatus as S;
    use ErrorKind as K;
    Some(match code {
        0 => StatusMeaning::ok(S::Accepted, "queue"),
        1 => StatusMeaning::ok(S::Delivered, "delivered"),
        2 => StatusMeaning::failed(K::Unreachable, "not delivered"),
        3 => StatusMeaning::ok(S::Sent, "transmitted"),
        4 => StatusMeaning::ok(S::Sent, "waiting for status"),
        6 => StatusMeaning::failed(K::Unexpected, "rejected"),
        8 => StatusMeaning::ok(S::Accepted, "on moderation"),
        _ => return None,
    })
}

/// The status code an `extendStatus` word stands for, when only the word is given.
fn code_from_word(word: &str) -> Option<i64> {
    Some(match word.trim().to_ascii_lowercase().as_str() {
        "queue" => 0,
        "delivery" | "delivered" => 1,
        "undelivered" | "not delivered" => 2,
        "transmitted" | "sent" => 3,
        "wait status" | "waiting" => 4,
        "reject" | "rejected" => 6,
        "moderation" => 8,
        _ => return None,
    })
}

/// A report from a message object (`{"id", "status", "extendStatus", "number", "cost", …}`),
/// dated `now` when the object carries no time.
fn report_from_item(
    item: &Value,
    fallback_id: Option<&str>,
    now: DateTime<Utc>,
) -> Option<DeliveryReport> {
    let id = shared::lenient_string(item.get("id")).or_else(|| fallback_id.map(str::to_owned))?;
    let word = item.get("extendStatus").and_then(Value::as_str);
    let code = shared::lenient_i64(item.get("status")).or_else(|| word.and_then(code_from_word))?;
    let at = shared::lenient_i64(item.get("dateAnswer"))
        .or_else(|| shared::lenient_i64(item.get("dateSend")))
        .and_then(|t| shared::unix_time(&t.to_string()))
        .unwrap_or(now);
    let mut r = shared::report_from_code(&id, &code.to_string(), status_meaning(code), word, at);
    if let Some(n) = shared::lenient_string(item.get("number")) {
        r = r.recipient(n);
    }
    r.cost = shared::lenient_f64(item.get("cost")).map(|c| Cost::new(c, "RUB"));
    Some(r)
}

/// Parses SMS Aero delivery callbacks sent to `callbackUrl`.
///
/// The callback format is not documented in the sources this crate was written from; the
/// handler accepts the message object SMS Aero returns from `sms/status` (`id`, `status`,
/// `extendStatus`, `number`, …), as JSON (alone, in a list, or in a `{"data": …}` envelope) or
/// as form fields. No signature is known: protect the URL with a secret path.
///
/// ```
/// use messaging_core::{Event, DeliveryStatus, webhook::{WebhookHandler, WebhookRequest}};
/// use messaging_sms::smsaero::SmsAeroWebhook;
/// let headers = http::HeaderMap::new();
/// let body = br#"{"id": 5, "status": 1, "extendStatus": "delivery", "number": "79990000000"}"#;
/// let ev = SmsAeroWebhook::new().verify_and_parse(&WebhookRequest::post(&headers, body)).unwrap();
/// let Event::Delivery(d) = &ev[0] else { panic!() };
/// assert_eq!(d.status, DeliveryStatus::Delivered);
/// ```
pub type SmsAeroWebhook = UnsignedWebhook<SmsAero>;

fn parse_callback(
    stamp: &EventStamp,
    request: &WebhookRequest<'_>,
) -> Result<Vec<Event>, WebhookError> {
    let items: Vec<Value> = match serde_json::from_slice::<Value>(request.body) {
        Ok(v) => {
            let v = match v.get("data") {
                Some(d) if !d.is_null() => d.clone(),
                _ => v,
            };
            match v {
                Value::Array(a) => a,
                o @ Value::Object(_) => vec![o],
                _ => return Err(WebhookError::malformed(PROVIDER, "not a message object")),
            }
        }
        Err(_) => {
            let f = shared::callback_fields(request);
            let obj: serde_json::Map<String, Value> =
                f.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            vec![Value::Object(obj)]
        }
    };
    let now = stamp.now();
    let mut out = Vec::new();
    for item in &items {
        match report_from_item(item, None, now) {
            Some(r) => out.push(stamp.delivery(r)),
            None => {
                return Err(WebhookError::malformed(
                    PROVIDER,
                    "expected a message with id and status",
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(WebhookError::malformed(PROVIDER, "no messages"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::webhook::WebhookHandler;

    #[test]
    fn status_table() {
        use DeliveryStatus as S;
        use ErrorKind as K;
        let table: &[(i64, S, Option<K>)] = &[
            (0, S::Accepted, None),
            (1, S::Delivered, None),
            (2, S::Failed, Some(K::Unreachable)),
            (3, S::Sent, None),
            (4, S::Sent, None),
            (6, S::Failed, Some(K::Unexpected)),
            (8, S::Accepted, None),
        ];
        for &(code, status, kind) in table {
            let m = status_meaning(code).unwrap();
            assert_eq!((m.status, m.kind), (status, kind), "{code}");
        }
        for unknown in [5, 7, 9, -1] {
            assert!(status_meaning(unknown).is_none());
        }
    }

    #[test]
    fn envelope_errors() {
        let e = read_envelope(&shared::test_reply(
            401,
            r#"{"success":false,"data":null,"message":"Your request was made with invalid credentials."}"#,
        ))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChannelDown);
        let e = read_envelope(&shared::test_reply(
            400,
            r#"{"success":false,"data":{"text":["too long"]},"message":"Validation error."}"#,
        ))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidContent);
        let e = read_envelope(&shared::test_reply(200, r#"{"result":"no credits"}"#)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChannelDown);
        let e = read_envelope(&shared::test_reply(502, "bad gateway")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Temporary);
        let e = read_envelope(&shared::test_reply(
            429,
            r#"{"success":false,"message":"Too Many Requests"}"#,
        ))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
    }

    #[test]
    fn callbacks_in_several_shapes() {
        let h = SmsAeroWebhook::new();
        let headers = http::HeaderMap::new();
        let ev = h
            .parse(&WebhookRequest::post(
                &headers,
                b"id=5&status=2&extendStatus=undelivered",
            ))
            .unwrap();
        let Event::Delivery(d) = &ev[0] else { panic!() };
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert_eq!(d.error.as_ref().unwrap().code, "2");
        let ev = h
            .parse(&WebhookRequest::post(
                &headers,
                br#"{"success":true,"data":[{"id":1,"extendStatus":"delivery"},{"id":2,"status":3}]}"#,
            ))
            .unwrap();
        assert_eq!(ev.len(), 2);
        assert!(h.parse(&WebhookRequest::post(&headers, b"[]")).is_err());
        assert!(h.parse(&WebhookRequest::post(&headers, b"foo=1")).is_err());
    }

    #[test]
    fn reports_without_a_time_are_dated_by_the_channels_clock() {
        use messaging_core::{Clock, ManualClock};
        use std::sync::Arc;
        let clock = ManualClock::at_unix(1_800_000_000);
        let opts = SmsOptions::new("aero").clock(Arc::new(clock.clone()));
        let handler = SmsAeroChannel::new(opts, "a@b.c", "key").webhook();
        let headers = http::HeaderMap::new();
        let ev = handler
            .parse(&WebhookRequest::post(
                &headers,
                br#"{"id": 5, "status": 1}"#,
            ))
            .unwrap();
        assert_eq!(ev[0].at(), clock.now());
        assert_eq!(ev[0].channel_id().unwrap().as_str(), "aero");
        // A time of its own wins.
        let ev = handler
            .parse(&WebhookRequest::post(
                &headers,
                br#"{"id": 5, "status": 1, "dateAnswer": 1700000000}"#,
            ))
            .unwrap();
        assert_eq!(ev[0].at().timestamp(), 1_700_000_000);
    }
}
