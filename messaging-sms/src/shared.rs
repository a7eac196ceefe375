//! What every SMS provider shares: options, pre-send checks, error mapping, receipts, status
//! polling and the helpers the answer and callback parsers use.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use messaging_core::text::sms::analyze;
use messaging_core::{
    Address, Capabilities, ChannelError, ChannelId, ChannelKind, Clock, Cost, DeliveryReport,
    DeliveryStatus, ErrorKind, Event, Evidence, OutboundMessage, ProviderError, ProviderMessageId,
    SendReceipt, SystemClock, TextUnit,
};
use messaging_http::Reply;
use secrecy::{ExposeSecret, SecretString};

/// The default request timeout: short, so that a provider outage moves the cascade on quickly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default maximum number of segments one message may take.
pub const DEFAULT_MAX_SEGMENTS: usize = 6;
/// The default pause between two status requests when polling.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Whether Russian text is transliterated to Latin to save segments (GSM-7 carries 160
/// characters per segment, UCS-2 only 70).
///
/// `Always` and `WhenCheaper` use the core's
/// [`transliterate`](messaging_core::text::translit::transliterate) before sending, so the
/// receipt's segment count and cost are exact. `Provider` asks the provider to do it: SMS.ru
/// and SMSC.ru support `translit=1`; SMS Aero and Twilio have no such option and send the text
/// as given (the estimate then counts the text as given, an upper bound).
///
/// ```
/// use messaging_sms::Transliteration;
/// assert_eq!(Transliteration::Always.apply("Приём завтра"), "Priem zavtra");
/// // One segment either way: nothing to save, the text stays as written.
/// assert_eq!(Transliteration::WhenCheaper.apply("Приём завтра"), "Приём завтра");
/// // 88 Cyrillic characters take 2 UCS-2 segments; in Latin they fit one.
/// let long = "Приём завтра в 10:00. ".repeat(4);
/// assert!(Transliteration::WhenCheaper.apply(&long).starts_with("Priem zavtra"));
/// assert_eq!(Transliteration::Off.apply("Приём"), "Приём");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transliteration {
    /// Send the text as written (the default).
    #[default]
    Off,
    /// Always transliterate locally.
    Always,
    /// Transliterate locally when that takes fewer segments.
    WhenCheaper,
    /// Ask the provider to transliterate (SMS.ru, SMSC.ru; ignored by SMS Aero and Twilio).
    Provider,
}

impl Transliteration {
    /// The text to send under this policy (`Provider` leaves it to the provider).
    pub fn apply(self, text: &str) -> String {
        use messaging_core::text::translit::transliterate;
        match self {
            Transliteration::Off | Transliteration::Provider => text.to_owned(),
            Transliteration::Always => transliterate(text),
            Transliteration::WhenCheaper => {
                let t = transliterate(text);
                if analyze(&t).segments < analyze(text).segments {
                    t
                } else {
                    text.to_owned()
                }
            }
        }
    }
}

/// Settings every SMS channel shares: its id, sender name, limits, timeout, price and sandbox.
///
/// ```
/// use std::time::Duration;
/// use messaging_sms::SmsOptions;
/// let opts = SmsOptions::new("sms-main")
///     .sender("Clinic")
///     .max_segments(4)
///     .timeout(Duration::from_secs(3))
///     .price_per_segment(3.5, "RUB")
///     .rate_limit(20);
/// assert_eq!(opts.max_segments, 4);
/// assert_eq!(opts.sender.as_deref(), Some("Clinic"));
/// assert_eq!(opts.rate_limit.map(|n| n.get()), Some(20));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SmsOptions {
    /// The configured channel id (`"sms-main"`, `"sms-backup"`); two providers are two ids.
    pub id: ChannelId,
    /// The sender name (alphanumeric sender id or number) as approved by the provider.
    pub sender: Option<String>,
    /// The largest number of segments one message may take (`Capabilities::max_text_len`).
    pub max_segments: usize,
    /// The timeout of one HTTP request. Keep it short: an outage must move the cascade on.
    pub timeout: Duration,
    /// The price of one segment, for the receipt's cost estimate.
    pub price_per_segment: Option<Cost>,
    /// The transliteration policy.
    pub transliteration: Transliteration,
    /// Sandbox mode: SMS.ru `test=1`, SMS Aero `sms/testsend`, Twilio magic numbers allowed.
    pub sandbox: bool,
    /// The pause between two status requests when polling (provider rate limits).
    pub poll_interval: Duration,
    /// Where the provider should post delivery reports (SMS Aero `callbackUrl`, Twilio
    /// `StatusCallback`); SMS.ru and SMSC.ru take it in the account settings.
    pub callback_url: Option<String>,
    /// The HTTP client; a default one is built when absent.
    pub client: Option<reqwest::Client>,
    /// The most requests the channel sends to the provider in any sliding second (sends and
    /// status requests alike); `None` (the default) for no pacing. See
    /// [`SmsOptions::rate_limit`].
    pub rate_limit: Option<NonZeroU32>,
    /// The clock that dates receipts, and reports that carry no time of their own (SMS.ru's
    /// status answers, Twilio's callback form); [`SystemClock`] by default. See
    /// [`SmsOptions::clock`].
    pub clock: Arc<dyn Clock>,
}

impl SmsOptions {
    /// Options with defaults: no sender name, 6 segments, a 5-second timeout, no price.
    pub fn new(id: impl Into<ChannelId>) -> Self {
        SmsOptions {
            id: id.into(),
            sender: None,
            max_segments: DEFAULT_MAX_SEGMENTS,
            timeout: DEFAULT_TIMEOUT,
            price_per_segment: None,
            transliteration: Transliteration::Off,
            sandbox: false,
            poll_interval: DEFAULT_POLL_INTERVAL,
            callback_url: None,
            client: None,
            rate_limit: None,
            clock: Arc::new(SystemClock),
        }
    }
    /// Sets the sender name.
    pub fn sender(mut self, sender: impl Into<String>) -> Self {
        self.sender = Some(sender.into());
        self
    }
    /// Sets the maximum number of segments (at least 1).
    pub fn max_segments(mut self, n: usize) -> Self {
        self.max_segments = n.max(1);
        self
    }
    /// Sets the request timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// Sets the price of one segment for cost estimates.
    pub fn price_per_segment(mut self, amount: f64, currency: impl Into<String>) -> Self {
        self.price_per_segment = Some(Cost::new(amount, currency));
        self
    }
    /// Sets the transliteration policy.
    pub fn transliteration(mut self, t: Transliteration) -> Self {
        self.transliteration = t;
        self
    }
    /// Turns sandbox mode on or off.
    pub fn sandbox(mut self, yes: bool) -> Self {
        self.sandbox = yes;
        self
    }
    /// Sets the pause between two status requests when polling.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }
    /// Sets the delivery-report URL passed with each message (SMS Aero, Twilio).
    pub fn callback_url(mut self, url: impl Into<String>) -> Self {
        self.callback_url = Some(url.into());
        self
    }
    /// Uses your own HTTP client (proxies, pools, TLS roots) instead of the default one. Keep
    /// TLS verification on. [`timeout`](Self::timeout) still applies to each request.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }
    /// Paces the channel's requests (sends and status requests) to at most `n` in any sliding
    /// second; 0 turns the pacing off (the default).
    ///
    /// None of the four providers documents a per-second figure for its HTTP API (Twilio has a
    /// rate-limit error, 20429, and SMSC.ru error 9 for "too many identical or frequent
    /// requests", without numbers), so there is no default: set the rate your contract or your
    /// provider's support gives you. Requests are spaced evenly, `1/n` s apart plus a 3 % margin
    /// for network jitter, with no opening burst, and wait their turn, so the channel reaches
    /// about 97 % of `n`. A request's turn lasts until its answer is read: one that was slow to
    /// reach the provider holds back the requests that would otherwise land in the same second.
    /// The pacing is per channel object and in-process: give each process that uses one account
    /// its share.
    ///
    /// ```
    /// use messaging_sms::SmsOptions;
    /// assert_eq!(SmsOptions::new("sms").rate_limit, None);
    /// let opts = SmsOptions::new("sms").rate_limit(30);
    /// assert_eq!(opts.rate_limit.map(|n| n.get()), Some(30));
    /// assert_eq!(opts.rate_limit(0).rate_limit, None);
    /// ```
    pub fn rate_limit(mut self, n: u32) -> Self {
        self.rate_limit = NonZeroU32::new(n);
        self
    }

    /// Reads the time from `clock` (default: the system clock): receipts are stamped with it,
    /// and so are reports and callbacks that carry no time of their own. The channel's
    /// `webhook()` handler uses the same clock.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use messaging_core::{Clock, ManualClock};
    /// use messaging_sms::SmsOptions;
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let opts = SmsOptions::new("sms").clock(Arc::new(clock.clone()));
    /// assert_eq!(opts.clock.now(), clock.now());
    /// ```
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The request pacer these options ask for, if any.
    pub(crate) fn request_pacer(&self) -> Option<messaging_core::pace::Pacer> {
        self.rate_limit.map(messaging_core::pace::Pacer::per_second)
    }

    /// The capabilities every SMS channel declares: SMS segments, up to `max_segments`,
    /// delivery reports (`Evidence::Delivered`), may write first.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities::new(
            self.max_segments,
            TextUnit::SmsSegments,
            Evidence::Delivered,
        )
        .can_start_conversation(true)
    }
}

/// Asks a provider for the status of messages sent earlier, for deployments without callbacks.
///
/// Requests are batched where the provider allows it (SMS.ru: 100 ids per request) and paced by
/// [`SmsOptions::poll_interval`]. Ids the provider does not know come back as failed reports with
/// the provider's code kept raw.
///
/// ```no_run
/// use messaging_core::{Event, ProviderMessageId};
/// use messaging_sms::{SmsOptions, StatusPoller, smsru::SmsRuChannel};
/// # async fn run(pending: Vec<ProviderMessageId>) -> Result<(), messaging_core::ChannelError> {
/// let sms = SmsRuChannel::new(SmsOptions::new("sms-main"), "API-ID");
/// for event in sms.poll_statuses(&pending).await? {
///     if let Event::Delivery(report) = event {
///         println!("{} is {:?}", report.provider_message_id, report.status);
///     }
/// }
/// # Ok(()) }
/// ```
#[async_trait]
pub trait StatusPoller: Send + Sync {
    /// The current status of each message, as delivery events of channel kind SMS.
    async fn poll_statuses(&self, ids: &[ProviderMessageId]) -> Result<Vec<Event>, ChannelError>;
}

/// Checks an outbound message before any HTTP request: a phone address, a mobile number, a
/// non-empty text within the segment limit.
pub(crate) fn prepare(
    opts: &SmsOptions,
    msg: &OutboundMessage,
    allow_any_number: bool,
) -> Result<PreparedSms, ChannelError> {
    let Address::Phone(phone) = &msg.to else {
        return Err(ChannelError::unreachable(format!(
            "SMS needs a phone address, got {}",
            msg.to.key()
        )));
    };
    let text = opts
        .transliteration
        .apply(msg.content.text_for(ChannelKind::Sms));
    if text.trim().is_empty() {
        return Err(ChannelError::invalid_content("the SMS text is empty"));
    }
    if !allow_any_number && !phone.is_mobile() {
        return Err(ChannelError::unreachable(format!(
            "{phone} is not a mobile number, an SMS cannot reach it"
        )));
    }
    let analysis = analyze(&text);
    if analysis.segments > opts.max_segments {
        return Err(ChannelError::invalid_content(format!(
            "the text needs {} SMS segments, the limit is {}",
            analysis.segments, opts.max_segments
        )));
    }
    Ok(PreparedSms {
        phone: phone.clone(),
        text,
        segments: u32::try_from(analysis.segments).unwrap_or(u32::MAX),
    })
}

/// The receipt for an accepted message: the provider's cost when it said one, else the estimate.
pub(crate) fn receipt(
    opts: &SmsOptions,
    id: impl Into<ProviderMessageId>,
    segments: u32,
    provider_cost: Option<Cost>,
) -> SendReceipt {
    let r = SendReceipt::new(id, opts.clock.now()).parts(segments.max(1));
    let estimate = opts
        .price_per_segment
        .as_ref()
        .map(|p| Cost::new(p.amount * f64::from(segments.max(1)), p.currency.clone()));
    match provider_cost.or(estimate) {
        Some(c) => r.cost(c),
        None => r,
    }
}

/// An answer with this status and body, for the answer readers' tests.
#[cfg(test)]
pub(crate) fn test_reply(status: u16, body: &str) -> Reply {
    Reply::new(
        http::StatusCode::from_u16(status).unwrap(),
        body.as_bytes().to_vec(),
    )
}

/// HTTP Basic credentials (SMS Aero: e-mail and API key; Twilio: account SID and auth token).
/// `Debug` shows the user, never the password.
#[derive(Clone)]
pub(crate) struct BasicAuth {
    pub(crate) user: String,
    pub(crate) password: SecretString,
}

impl BasicAuth {
    pub(crate) fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        BasicAuth {
            user: user.into(),
            password: SecretString::from(password.into()),
        }
    }

    /// The password and the `Authorization: Basic` credentials, to scrub from errors.
    pub(crate) fn redactor(&self) -> messaging_http::Redactor {
        messaging_http::Redactor::new().basic_auth(&self.user, self.password.expose_secret())
    }

    /// The request with these credentials in its `Authorization` header.
    pub(crate) fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.basic_auth(&self.user, Some(self.password.expose_secret()))
    }
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// What a channel or a callback handler marks its events with: the channel id, and the clock
/// that dates what the provider sent without a time.
/// [`SmsProvider::parse_callback`](crate::SmsProvider::parse_callback) builds its events with it.
///
/// ```
/// use std::sync::Arc;
/// use messaging_core::{ChannelId, ChannelKind, DeliveryReport, DeliveryStatus, ManualClock};
/// use messaging_sms::EventStamp;
/// let stamp = EventStamp::new(Some(ChannelId::new("sms-main")), Arc::new(ManualClock::at_unix(1_700_000_000)));
/// let ev = stamp.delivery(DeliveryReport::new(ChannelKind::Sms, "42", DeliveryStatus::Delivered, stamp.now()));
/// assert_eq!(ev.channel_id().unwrap().as_str(), "sms-main");
/// assert_eq!(ev.at().timestamp(), 1_700_000_000);
/// ```
#[derive(Clone, Debug)]
pub struct EventStamp {
    channel_id: Option<ChannelId>,
    clock: Arc<dyn Clock>,
}

impl Default for EventStamp {
    /// No channel id, the system clock.
    fn default() -> Self {
        EventStamp {
            channel_id: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl EventStamp {
    /// Tags with `channel_id` (when given) and dates by `clock`.
    pub fn new(channel_id: Option<ChannelId>, clock: Arc<dyn Clock>) -> Self {
        EventStamp { channel_id, clock }
    }

    /// The same stamp with this channel id.
    pub fn with_channel_id(mut self, id: ChannelId) -> Self {
        self.channel_id = Some(id);
        self
    }

    /// The same stamp with this clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The channel id events are tagged with, if any.
    pub fn channel_id(&self) -> Option<&ChannelId> {
        self.channel_id.as_ref()
    }

    /// The clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The event, tagged with the channel id when there is one.
    pub fn tag(&self, event: Event) -> Event {
        match &self.channel_id {
            Some(id) => event.with_channel_id(id.clone()),
            None => event,
        }
    }

    /// A delivery event, tagged with the channel id when there is one.
    pub fn delivery(&self, report: DeliveryReport) -> Event {
        self.tag(Event::Delivery(report))
    }
}

/// An HTTP error status with no better reading of the body: 429 rate limited, 401/403 channel
/// down, 408 and 5xx temporary, anything else unexpected.
pub(crate) fn http_status_error(
    provider: &'static str,
    reply: &Reply,
    detail: Option<&str>,
) -> ChannelError {
    let code = reply.status.as_u16();
    let msg = match detail {
        Some(d) if !d.is_empty() => format!("{provider}: HTTP {code}: {}", clip(d)),
        _ => format!("{provider}: HTTP {code}"),
    };
    let e = match messaging_http::status_kind(reply.status) {
        ErrorKind::RateLimited => ChannelError::rate_limited(msg, reply.retry_after),
        kind => ChannelError::new(kind, msg),
    };
    e.with_provider_code(format!("http {code}"))
}

/// A provider code mapped to an error kind, as a [`ChannelError`].
pub(crate) fn coded_error(
    provider: &'static str,
    kind: ErrorKind,
    code: impl fmt::Display,
    text: &str,
    retry_after: Option<Duration>,
) -> ChannelError {
    let msg = if text.is_empty() {
        format!("{provider}: error {code}")
    } else {
        format!("{provider}: error {code}: {}", clip(text))
    };
    let mut e = ChannelError::new(kind, msg).with_provider_code(code.to_string());
    if let Some(d) = retry_after {
        e = e.with_retry_after(d);
    }
    e
}

/// The answer could not be read as the provider's JSON.
pub(crate) fn unreadable(provider: &'static str, reply: &Reply) -> ChannelError {
    if !reply.status.is_success() {
        return http_status_error(provider, reply, None);
    }
    ChannelError::unexpected(format!(
        "{provider}: unreadable answer (HTTP {})",
        reply.status.as_u16()
    ))
}

/// Provider words kept in errors are clipped (no full bodies in errors).
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 200;
    let s = s.trim();
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// Spaces requests out: each call waits until `gap` after the previous one.
#[derive(Debug)]
pub(crate) struct Pacer {
    gap: Duration,
    next: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Pacer {
    pub(crate) fn new(gap: Duration) -> Self {
        Pacer {
            gap,
            next: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) async fn wait(&self) {
        let mut next = self.next.lock().await;
        let now = tokio::time::Instant::now();
        if let Some(t) = *next
            && t > now
        {
            tokio::time::sleep_until(t).await;
        }
        *next = Some(tokio::time::Instant::now() + self.gap);
    }
}

/// How a provider status code reads in the core model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusMeaning {
    /// The delivery status.
    pub status: DeliveryStatus,
    /// For failures: what the engine should make of it.
    pub kind: Option<ErrorKind>,
    /// The provider's meaning, in words.
    pub text: &'static str,
}

impl StatusMeaning {
    pub(crate) const fn ok(status: DeliveryStatus, text: &'static str) -> Self {
        StatusMeaning {
            status,
            kind: None,
            text,
        }
    }
    pub(crate) const fn failed(kind: ErrorKind, text: &'static str) -> Self {
        StatusMeaning {
            status: DeliveryStatus::Failed,
            kind: Some(kind),
            text,
        }
    }
}

/// A delivery report from a provider status code. Unknown codes are kept raw: status
/// `accepted` (no claim) and the raw code in `error` with no kind.
pub(crate) fn report_from_code(
    provider_message_id: &str,
    code: &str,
    meaning: Option<StatusMeaning>,
    provider_text: Option<&str>,
    at: DateTime<Utc>,
) -> DeliveryReport {
    match meaning {
        Some(m) => {
            let r = DeliveryReport::new(ChannelKind::Sms, provider_message_id, m.status, at);
            if m.status == DeliveryStatus::Failed {
                r.error(ProviderError {
                    code: code.to_owned(),
                    message: provider_text
                        .filter(|t| !t.trim().is_empty())
                        .map(clip)
                        .unwrap_or_else(|| m.text.to_owned()),
                    kind: m.kind,
                })
            } else {
                r
            }
        }
        None => DeliveryReport::new(
            ChannelKind::Sms,
            provider_message_id,
            DeliveryStatus::Accepted,
            at,
        )
        .error(ProviderError {
            code: code.to_owned(),
            message: provider_text
                .filter(|t| !t.trim().is_empty())
                .map(clip)
                .unwrap_or_else(|| format!("unknown status code {code}")),
            kind: None,
        }),
    }
}

/// A form body (or query string) as name/value pairs. Never fails: bad escapes are kept lossily.
pub(crate) fn form_pairs(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Form fields from the body, or from the URL's query string when the body is empty (GET callbacks).
pub(crate) fn callback_fields(
    request: &messaging_core::webhook::WebhookRequest<'_>,
) -> Vec<(String, String)> {
    let body = request.body;
    if !body.iter().all(u8::is_ascii_whitespace) {
        return form_pairs(body);
    }
    match request.url.and_then(|u| u.split_once('?')) {
        Some((_, q)) => form_pairs(q.split('#').next().unwrap_or_default().as_bytes()),
        None => Vec::new(),
    }
}

/// The first value of a form field.
pub(crate) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A unix timestamp (seconds) as a time, if plausible.
pub(crate) fn unix_time(s: &str) -> Option<DateTime<Utc>> {
    let n: i64 = s.trim().parse().ok()?;
    if n <= 0 {
        return None;
    }
    Utc.timestamp_opt(n, 0).single()
}

/// A JSON value that may be a number or a string holding one (`12.340` / `"5.00"`).
pub(crate) fn lenient_f64(v: Option<&serde_json::Value>) -> Option<f64> {
    match v? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A JSON value that may be an integer or a string holding one.
pub(crate) fn lenient_i64(v: Option<&serde_json::Value>) -> Option<i64> {
    match v? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A JSON value as a string id (numbers written out).
pub(crate) fn lenient_string(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A checked outbound SMS: a mobile number, the text as it will be sent (after
/// transliteration), and its segment count.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreparedSms {
    /// The recipient.
    pub phone: messaging_core::Phone,
    /// The text to send.
    pub text: String,
    /// Its segment count by the core's SMS encoding.
    pub segments: u32,
}

impl PreparedSms {
    /// A prepared SMS as [`SmsChannel`](crate::SmsChannel) makes one (for a provider's parser
    /// tests; the channel itself checks the number and counts the segments).
    ///
    /// ```
    /// use messaging_core::Phone;
    /// let sms = messaging_sms::PreparedSms::new(Phone::parse("+79123456789").unwrap(), "hi", 1);
    /// assert_eq!(sms.segments, 1);
    /// ```
    pub fn new(phone: messaging_core::Phone, text: impl Into<String>, segments: u32) -> Self {
        PreparedSms {
            phone,
            text: text.into(),
            segments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::{Content, Phone};

    fn msg(to: &str, text: &str) -> OutboundMessage {
        OutboundMessage::new(
            Address::Phone(Phone::parse(to).unwrap()),
            Content::text(text),
            messaging_core::Purpose::Service,
        )
    }

    #[test]
    fn refuses_empty_text_and_landlines_and_non_phone_addresses() {
        let o = SmsOptions::new("sms");
        let e = prepare(&o, &msg("+79123456789", "  \n"), false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidContent);
        let e = prepare(&o, &msg("+74951234567", "hello"), false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        let tg = OutboundMessage::new(
            Address::Telegram(42),
            Content::text("hi"),
            messaging_core::Purpose::Service,
        );
        assert_eq!(
            prepare(&o, &tg, false).unwrap_err().kind(),
            ErrorKind::Unreachable
        );
        let p = prepare(&o, &msg("+79123456789", "hello"), false).unwrap();
        assert_eq!(p.segments, 1);
        assert_eq!(p.phone.digits(), "79123456789");
    }

    #[test]
    fn segment_limit_is_enforced_and_cost_estimated() {
        let o = SmsOptions::new("sms")
            .max_segments(2)
            .price_per_segment(2.5, "RUB");
        let long = "а".repeat(500);
        let e = prepare(&o, &msg("+79123456789", &long), false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidContent);
        assert!(e.message().contains("limit is 2"), "{e}");
        let r = receipt(&o, "id", 2, None);
        assert_eq!(r.parts, 2);
        assert_eq!(r.cost, Some(Cost::new(5.0, "RUB")));
        let r = receipt(&o, "id", 2, Some(Cost::new(1.0, "USD")));
        assert_eq!(r.cost, Some(Cost::new(1.0, "USD")));
    }

    #[test]
    fn capabilities_count_segments_and_promise_delivery_reports() {
        let c = SmsOptions::new("sms").max_segments(3).capabilities();
        assert_eq!(c.text_unit, TextUnit::SmsSegments);
        assert_eq!(c.max_text_len, 3);
        assert_eq!(c.strongest_evidence, Evidence::Delivered);
        assert!(c.can_start_conversation);
    }

    #[test]
    fn unknown_codes_are_kept_raw() {
        let r = report_from_code("m1", "777", None, None, Utc::now());
        assert_eq!(r.status, DeliveryStatus::Accepted);
        let err = r.error.unwrap();
        assert_eq!(err.code, "777");
        assert_eq!(err.kind, None);
    }

    #[test]
    fn lenient_numbers() {
        use serde_json::json;
        assert_eq!(lenient_f64(Some(&json!("5.00"))), Some(5.0));
        assert_eq!(lenient_f64(Some(&json!(12.34))), Some(12.34));
        assert_eq!(lenient_i64(Some(&json!("7"))), Some(7));
        assert_eq!(lenient_string(Some(&json!(5))).as_deref(), Some("5"));
        assert_eq!(lenient_string(Some(&json!(null))), None);
        assert!(unix_time("abc").is_none());
        assert!(unix_time("1700000000").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn request_rate_holds_in_every_sliding_second() {
        assert!(SmsOptions::new("sms").request_pacer().is_none());
        let pacer = std::sync::Arc::new(
            SmsOptions::new("sms")
                .rate_limit(30)
                .request_pacer()
                .expect("paced"),
        );
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let pacer = pacer.clone();
            tasks.push(tokio::spawn(async move {
                let mut starts = Vec::new();
                for _ in 0..4 {
                    drop(pacer.acquire().await);
                    starts.push(tokio::time::Instant::now());
                }
                starts
            }));
        }
        let mut starts = Vec::new();
        for t in tasks {
            starts.extend(t.await.unwrap());
        }
        starts.sort();
        let most = messaging_core::pace::max_in_window(&starts, Duration::from_secs(1));
        assert!(most <= 30, "{most} requests in one second");
        let span = starts[127].duration_since(starts[0]).as_secs_f64();
        assert!(127.0 / span >= 0.95 * 30.0, "{} per second", 127.0 / span);
    }

    #[test]
    fn receipts_read_the_configured_clock() {
        let clock = messaging_core::ManualClock::at_unix(1_700_000_000);
        let opts = SmsOptions::new("sms").clock(Arc::new(clock.clone()));
        assert_eq!(receipt(&opts, "id", 1, None).accepted_at, clock.now());
        clock.advance(Duration::from_secs(5));
        assert_eq!(
            receipt(&opts, "id", 1, None).accepted_at.timestamp(),
            1_700_000_005
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_requests() {
        let p = Pacer::new(Duration::from_millis(100));
        let t0 = tokio::time::Instant::now();
        p.wait().await;
        p.wait().await;
        p.wait().await;
        assert!(t0.elapsed() >= Duration::from_millis(200));
    }
}
