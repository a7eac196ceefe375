//! The one SMS channel: [`SmsChannel`] does the checks, the pacing, the HTTP and the receipts;
//! an [`SmsProvider`] says only how its provider's requests, answers and callbacks look.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_core::webhook::{WebhookError, WebhookHandler, WebhookReply, WebhookRequest};
use messaging_core::{
    Capabilities, Channel, ChannelError, ChannelId, ChannelKind, Clock, Cost, DeliveryReport,
    ErrorKind, Event, OutboundMessage, ProviderMessageId, SendReceipt,
};
use messaging_http::Reply;

use crate::shared::{self, EventStamp, Pacer, PreparedSms, SmsOptions, StatusPoller};

/// How one SMS provider speaks: its send and status requests, how it answers them, and its
/// delivery callbacks. [`SmsChannel`] does everything else the same way for every provider:
/// the checks before any request, the pacing, the timeout, the transport errors, the
/// receipts and the [`Channel`] and [`StatusPoller`] impls.
///
/// Error codes are the provider's business: [`read_send`](Self::read_send) and
/// [`read_status`](Self::read_status) turn them into [`ChannelError`] kinds with the
/// provider's table (`send_error_kind`, `status_meaning`, … in each provider module).
///
/// The four providers of this crate implement it ([`smsru::SmsRu`](crate::smsru::SmsRu),
/// [`smsc::Smsc`](crate::smsc::Smsc), [`smsaero::SmsAero`](crate::smsaero::SmsAero),
/// [`twilio::Twilio`](crate::twilio::Twilio)); another provider is one more impl:
///
/// ```
/// use chrono::{DateTime, Utc};
/// use messaging_core::webhook::{WebhookError, WebhookRequest};
/// use messaging_core::{ChannelError, DeliveryReport, DeliveryStatus, ChannelKind, Event, ProviderMessageId};
/// use messaging_sms::{Accepted, Endpoint, EventStamp, PreparedSms, Reply, SmsChannel, SmsOptions, SmsProvider, UnsignedWebhook};
///
/// /// A gateway that takes `POST /send?to=…&text=…` and answers the message id as text.
/// #[derive(Debug)]
/// struct Gateway;
///
/// impl SmsProvider for Gateway {
///     const NAME: &'static str = "gateway";
///     const DEFAULT_BASE_URL: &'static str = "https://sms.example.com";
///     type Webhook = UnsignedWebhook<Self>;
///
///     fn send_request(&self, api: &Endpoint<'_>, sms: &PreparedSms) -> Result<reqwest::RequestBuilder, ChannelError> {
///         Ok(api.post("/send").form(&[("to", sms.phone.digits()), ("text", sms.text.as_str())]))
///     }
///     fn read_send(&self, reply: &Reply, _: &PreparedSms, _: DateTime<Utc>) -> Result<Accepted, ChannelError> {
///         let id = String::from_utf8_lossy(&reply.body).trim().to_owned();
///         if !reply.status.is_success() || id.is_empty() {
///             return Err(ChannelError::temporary(format!("gateway: HTTP {}", reply.status)));
///         }
///         Ok(Accepted::new(id))
///     }
///     fn status_request(&self, api: &Endpoint<'_>, ids: &[ProviderMessageId]) -> Option<reqwest::RequestBuilder> {
///         Some(api.get(&format!("/status/{}", ids.first()?.as_str())))
///     }
///     fn read_status(&self, reply: &Reply, ids: &[ProviderMessageId], now: DateTime<Utc>) -> Result<Vec<DeliveryReport>, ChannelError> {
///         let status = if &reply.body[..] == b"delivered" { DeliveryStatus::Delivered } else { DeliveryStatus::Sent };
///         Ok(ids.iter().map(|id| DeliveryReport::new(ChannelKind::Sms, id.as_str(), status, now)).collect())
///     }
///     fn parse_callback(_: &EventStamp, _: &WebhookRequest<'_>) -> Result<Vec<Event>, WebhookError> {
///         Err(WebhookError::malformed(Self::NAME, "this gateway sends no callbacks"))
///     }
///     fn webhook(&self, stamp: EventStamp) -> Self::Webhook {
///         UnsignedWebhook::with_stamp(stamp)
///     }
/// }
///
/// let sms = SmsChannel::with_provider(SmsOptions::new("sms-gateway"), Gateway);
/// assert_eq!(messaging_core::Channel::id(&sms).as_str(), "sms-gateway");
/// ```
pub trait SmsProvider: fmt::Debug + Send + Sync + Sized + 'static {
    /// The provider's short name, in error messages, logs and
    /// [`WebhookHandler::provider`] (`"smsru"`).
    const NAME: &'static str;
    /// The production API, which [`SmsChannel::base_url`] replaces.
    const DEFAULT_BASE_URL: &'static str;
    /// How many message ids one status request may carry (SMS.ru: 100; most take one).
    const STATUS_BATCH: usize = 1;

    /// The callback handler [`SmsChannel::webhook`] returns.
    type Webhook: WebhookHandler;

    /// Whether numbers that are not mobile may be sent to (Twilio's sandbox magic numbers);
    /// `false` by default.
    fn accepts_any_number(&self, options: &SmsOptions) -> bool {
        let _ = options;
        false
    }

    /// The request that sends `sms`, with the provider's credentials. A setting the provider
    /// cannot do without (Twilio's sender) is an error here, before any request.
    fn send_request(
        &self,
        api: &Endpoint<'_>,
        sms: &PreparedSms,
    ) -> Result<reqwest::RequestBuilder, ChannelError>;

    /// Reads the answer to the send request: the accepted message, or the provider's error as
    /// a [`ChannelError`] of the kind its error code means. `now` is the channel's clock.
    fn read_send(
        &self,
        reply: &Reply,
        sms: &PreparedSms,
        now: DateTime<Utc>,
    ) -> Result<Accepted, ChannelError>;

    /// The request asking for the status of `ids` (at most [`STATUS_BATCH`](Self::STATUS_BATCH)),
    /// or `None` when they are not this provider's ids (they are skipped with a warning).
    fn status_request(
        &self,
        api: &Endpoint<'_>,
        ids: &[ProviderMessageId],
    ) -> Option<reqwest::RequestBuilder>;

    /// Reads the answer to a status request into reports (without channel id), dated `now`
    /// when the answer carries no time.
    fn read_status(
        &self,
        reply: &Reply,
        ids: &[ProviderMessageId],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeliveryReport>, ChannelError>;

    /// Parses a (verified) callback into events tagged and dated by `stamp`.
    fn parse_callback(
        stamp: &EventStamp,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<Event>, WebhookError>;

    /// What the provider expects back from a callback (default `200 OK`, empty).
    fn callback_reply() -> WebhookReply {
        WebhookReply::ok()
    }

    /// The callback handler for a channel, tagged and dated by `stamp`.
    fn webhook(&self, stamp: EventStamp) -> Self::Webhook;

    /// The credentials to scrub from every error the channel returns (providers echo requests
    /// in their error text); none by default. [`SmsChannel`] asks once, when it is built.
    fn redactor(&self) -> messaging_http::Redactor {
        messaging_http::Redactor::new()
    }
}

/// What a provider said about an accepted message.
///
/// ```
/// use messaging_core::Cost;
/// let a = messaging_sms::Accepted::new("42").segments(2).cost(Cost::new(7.0, "RUB"));
/// assert_eq!((a.id.as_str(), a.segments), ("42", Some(2)));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Accepted {
    /// The provider message id, as reports will name it.
    pub id: String,
    /// The provider's segment count, when it gave one (else the channel's own count).
    pub segments: Option<u32>,
    /// The provider's price, when it gave one (else the configured estimate).
    pub cost: Option<Cost>,
}

impl Accepted {
    /// An accepted message with this id.
    pub fn new(id: impl Into<String>) -> Self {
        Accepted {
            id: id.into(),
            segments: None,
            cost: None,
        }
    }
    /// The provider's segment count (0 is ignored).
    pub fn segments(mut self, n: u32) -> Self {
        self.segments = (n > 0).then_some(n);
        self
    }
    /// The provider's price.
    pub fn cost(mut self, cost: Cost) -> Self {
        self.cost = Some(cost);
        self
    }
}

/// What a provider builds its requests with: the channel's client, base URL and options.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    client: &'a reqwest::Client,
    base_url: &'a str,
    options: &'a SmsOptions,
}

impl Endpoint<'_> {
    /// A `POST` to `path` (starting with `/`) under the base URL.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.base_url))
    }
    /// A `GET` of `path` (starting with `/`) under the base URL.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.base_url))
    }
    /// The channel's options (sender, sandbox, callback URL, …).
    pub fn options(&self) -> &SmsOptions {
        self.options
    }
}

/// An SMS provider account as a [`Channel`] and a [`StatusPoller`]; the provider modules name
/// each one ([`SmsRuChannel`](crate::smsru::SmsRuChannel),
/// [`TwilioChannel`](crate::twilio::TwilioChannel), …).
///
/// ```
/// use messaging_core::Channel;
/// use messaging_sms::{SmsOptions, smsru::SmsRuChannel};
/// let sms = SmsRuChannel::new(SmsOptions::new("sms-main"), "API-ID").base_url("http://127.0.0.1:8080/");
/// assert_eq!(sms.id().as_str(), "sms-main");
/// assert_eq!(SmsRuChannel::DEFAULT_BASE_URL, "https://sms.ru");
/// assert!(!format!("{sms:?}").contains("API-ID"));
/// ```
pub struct SmsChannel<P: SmsProvider> {
    http: HttpBase,
    provider: P,
    /// The provider's credentials, scrubbed from every error.
    redactor: messaging_http::Redactor,
}

impl<P: SmsProvider> fmt::Debug for SmsChannel<P> {
    /// The id, the provider (whose credentials redact their secrets) and the settings every
    /// channel shows; never the client.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opts = &self.http.opts;
        f.debug_struct("SmsChannel")
            .field("id", &opts.id)
            .field("provider", &self.provider)
            .field("base_url", &self.http.base_url)
            .field("sender", &opts.sender)
            .field("sandbox", &opts.sandbox)
            .field(
                "request_interval",
                &self
                    .http
                    .request_pacer
                    .as_ref()
                    .map(messaging_core::pace::Pacer::interval),
            )
            .finish_non_exhaustive()
    }
}

impl<P: SmsProvider> SmsChannel<P> {
    /// The provider's production API.
    pub const DEFAULT_BASE_URL: &'static str = P::DEFAULT_BASE_URL;

    /// A channel for `provider` (an account of it, with its credentials).
    pub fn with_provider(options: SmsOptions, provider: P) -> Self {
        SmsChannel {
            http: HttpBase::new(P::NAME, options, P::DEFAULT_BASE_URL),
            redactor: provider.redactor(),
            provider,
        }
    }

    /// Points the channel at another host (the provider's other hosts, a test server); a
    /// trailing `/` is dropped.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.http.base_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The options.
    pub fn options(&self) -> &SmsOptions {
        &self.http.opts
    }

    /// The provider (with its credentials).
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// A handler for this channel's callbacks, its events tagged with the channel id and dated
    /// by its clock.
    pub fn webhook(&self) -> P::Webhook {
        self.provider.webhook(self.http.stamp.clone())
    }
}

#[async_trait]
impl<P: SmsProvider> Channel for SmsChannel<P> {
    fn id(&self) -> &ChannelId {
        &self.http.opts.id
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }
    fn capabilities(&self) -> Capabilities {
        self.http.opts.capabilities()
    }
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        self.send_unscrubbed(message)
            .await
            .map_err(|e| self.redactor.redact_error(e))
    }
}

impl<P: SmsProvider> SmsChannel<P> {
    async fn send_unscrubbed(
        &self,
        message: &OutboundMessage,
    ) -> Result<SendReceipt, ChannelError> {
        let opts = &self.http.opts;
        let sms = shared::prepare(opts, message, self.provider.accepts_any_number(opts))?;
        let request = self.provider.send_request(&self.http.endpoint()?, &sms)?;
        let reply = self.http.execute(request).await?;
        let accepted = self
            .provider
            .read_send(&reply, &sms, self.http.stamp.now())
            .map_err(|e| {
                // A 2xx the provider module could not read (no provider code: not one of the
                // provider's refusals) may still have sent the message.
                if reply.status.is_success()
                    && e.kind() == ErrorKind::Unexpected
                    && e.provider_code().is_none()
                {
                    ChannelError::outcome_unknown(format!(
                        "{}; the provider may have accepted the message",
                        e.message()
                    ))
                } else {
                    e
                }
            })?;
        Ok(shared::receipt(
            opts,
            accepted.id,
            accepted.segments.unwrap_or(sms.segments),
            accepted.cost,
        ))
    }
}

#[async_trait]
impl<P: SmsProvider> StatusPoller for SmsChannel<P> {
    /// Up to [`SmsProvider::STATUS_BATCH`] ids per request, requests paced by
    /// [`SmsOptions::poll_interval`]; ids the provider cannot ask about are skipped.
    async fn poll_statuses(&self, ids: &[ProviderMessageId]) -> Result<Vec<Event>, ChannelError> {
        self.poll_unscrubbed(ids)
            .await
            .map_err(|e| self.redactor.redact_error(e))
    }
}

impl<P: SmsProvider> SmsChannel<P> {
    async fn poll_unscrubbed(&self, ids: &[ProviderMessageId]) -> Result<Vec<Event>, ChannelError> {
        let mut events = Vec::new();
        for chunk in ids.chunks(P::STATUS_BATCH.max(1)) {
            let Some(request) = self.provider.status_request(&self.http.endpoint()?, chunk) else {
                tracing::warn!(
                    provider = P::NAME,
                    ids = chunk.len(),
                    "not this provider's message ids; skipped"
                );
                continue;
            };
            self.http.poll_turn().await;
            let reply = self.http.execute(request).await?;
            let now = self.http.stamp.now();
            for report in self.provider.read_status(&reply, chunk, now)? {
                events.push(self.http.stamp.delivery(report));
            }
        }
        Ok(events)
    }
}

/// What every SMS channel holds besides its provider: the options, the API's base URL, the
/// HTTP client and both pacers.
struct HttpBase {
    provider: &'static str,
    opts: SmsOptions,
    base_url: String,
    /// The user's client or the kit's default; a client that could not be built makes every
    /// request fail as channel down instead of panicking in a constructor.
    client: Result<reqwest::Client, messaging_http::ClientError>,
    /// Spaces status requests [`SmsOptions::poll_interval`] apart.
    poll_pacer: Pacer,
    /// Paces every request when [`SmsOptions::rate_limit`] is set.
    request_pacer: Option<messaging_core::pace::Pacer>,
    /// The channel id and clock, handed to the channel's webhook handler too.
    stamp: EventStamp,
}

impl HttpBase {
    fn new(provider: &'static str, opts: SmsOptions, base_url: &str) -> Self {
        let client = messaging_http::ClientConfig::new()
            .timeout(opts.timeout)
            .client(opts.client.clone());
        HttpBase {
            provider,
            client,
            poll_pacer: Pacer::new(opts.poll_interval),
            request_pacer: opts.request_pacer(),
            stamp: EventStamp::new(Some(opts.id.clone()), opts.clock.clone()),
            base_url: base_url.to_owned(),
            opts,
        }
    }

    fn endpoint(&self) -> Result<Endpoint<'_>, ChannelError> {
        let client = self.client.as_ref().map_err(|e| e.clone())?;
        Ok(Endpoint {
            client,
            base_url: &self.base_url,
            options: &self.opts,
        })
    }

    /// Sends a request with the channel's timeout, in its turn under the channel's request rate
    /// when it has one, and reads the whole answer. Transport failures come from the kit:
    /// [`ErrorKind::Temporary`](messaging_core::ErrorKind::Temporary), without the URL.
    async fn execute(&self, request: reqwest::RequestBuilder) -> Result<Reply, ChannelError> {
        let permit = match &self.request_pacer {
            Some(pacer) => Some(pacer.acquire().await),
            None => None,
        };
        let reply = messaging_http::execute(
            request.timeout(self.opts.timeout),
            self.provider,
            &*self.opts.clock,
        )
        .await;
        // Dropped once the answer is read: its time bounds when the provider counted the request.
        drop(permit);
        reply
    }

    /// Waits for the next status request's turn ([`SmsOptions::poll_interval`]).
    async fn poll_turn(&self) {
        self.poll_pacer.wait().await;
    }
}

/// The callback handler of a provider that does not sign its callbacks (SMS.ru, SMSC.ru, SMS
/// Aero): nothing to verify, so a deployment protects the URL with a secret path. Parsing and
/// the reply are the provider's ([`SmsProvider::parse_callback`],
/// [`SmsProvider::callback_reply`]).
///
/// ```
/// use std::sync::Arc;
/// use messaging_core::{ChannelId, ManualClock};
/// use messaging_core::webhook::{WebhookHandler, WebhookRequest};
/// use messaging_sms::smsc::SmscWebhook;
/// let h = SmscWebhook::new()
///     .channel_id(ChannelId::new("sms-backup"))
///     .clock(Arc::new(ManualClock::at_unix(1_700_000_000)));
/// let headers = http::HeaderMap::new();
/// let ev = h.verify_and_parse(&WebhookRequest::post(&headers, b"id=1&phone=79123456789&status=1")).unwrap();
/// assert_eq!(ev[0].channel_id().unwrap().as_str(), "sms-backup");
/// assert_eq!(ev[0].at().timestamp(), 1_700_000_000);
/// assert_eq!(h.provider(), "smsc");
/// ```
pub struct UnsignedWebhook<P> {
    stamp: EventStamp,
    provider: PhantomData<fn() -> P>,
}

impl<P> Clone for UnsignedWebhook<P> {
    fn clone(&self) -> Self {
        UnsignedWebhook {
            stamp: self.stamp.clone(),
            provider: PhantomData,
        }
    }
}

impl<P: SmsProvider> Default for UnsignedWebhook<P> {
    fn default() -> Self {
        Self::with_stamp(EventStamp::default())
    }
}

impl<P: SmsProvider> fmt::Debug for UnsignedWebhook<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnsignedWebhook")
            .field("provider", &P::NAME)
            .field("channel_id", &self.stamp.channel_id())
            .finish()
    }
}

impl<P: SmsProvider> UnsignedWebhook<P> {
    /// A handler (no credentials needed), its events untagged and dated by the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handler whose events are tagged and dated by `stamp`.
    pub fn with_stamp(stamp: EventStamp) -> Self {
        UnsignedWebhook {
            stamp,
            provider: PhantomData,
        }
    }

    /// Tags events with a channel id.
    pub fn channel_id(mut self, id: ChannelId) -> Self {
        self.stamp = self.stamp.with_channel_id(id);
        self
    }

    /// Dates events the provider sends without a time by `clock` (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.stamp = self.stamp.with_clock(clock);
        self
    }
}

impl<P: SmsProvider> WebhookHandler for UnsignedWebhook<P> {
    fn provider(&self) -> &'static str {
        P::NAME
    }
    fn channel_kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }
    fn verify(&self, _request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        Ok(())
    }
    fn authenticates(&self) -> bool {
        // Nothing to check: anyone who knows the URL can post a "delivered".
        false
    }
    fn parse(&self, request: &WebhookRequest<'_>) -> Result<Vec<Event>, WebhookError> {
        P::parse_callback(&self.stamp, request)
    }
    fn reply(&self) -> WebhookReply {
        P::callback_reply()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn requests_are_paced_only_when_a_rate_is_set() {
        let paced = HttpBase::new(
            "test",
            SmsOptions::new("sms").rate_limit(10),
            "https://example.com",
        );
        assert_eq!(
            paced
                .request_pacer
                .as_ref()
                .map(messaging_core::pace::Pacer::interval),
            Some(Duration::from_millis(103))
        );
        let unpaced = HttpBase::new("test", SmsOptions::new("sms"), "https://example.com");
        assert!(unpaced.request_pacer.is_none());
    }

    #[cfg(feature = "smsru")]
    #[test]
    fn base_url_drops_a_trailing_slash() {
        let ch = crate::smsru::SmsRuChannel::new(SmsOptions::new("sms"), "id")
            .base_url("http://127.0.0.1:8080/");
        assert_eq!(ch.http.base_url, "http://127.0.0.1:8080");
        assert_eq!(
            ch.http
                .endpoint()
                .unwrap()
                .post("/sms/send")
                .build()
                .unwrap()
                .url()
                .as_str(),
            "http://127.0.0.1:8080/sms/send"
        );
    }

    #[cfg(all(
        feature = "smsru",
        feature = "smsc",
        feature = "smsaero",
        feature = "twilio"
    ))]
    #[test]
    fn every_channel_shows_its_settings_and_hides_its_secrets() {
        let opts = SmsOptions::new("sms").sender("Clinic").rate_limit(10);
        let secret = "SECRET-VALUE";
        let printed = [
            format!(
                "{:?}",
                crate::smsru::SmsRuChannel::new(opts.clone(), secret)
            ),
            format!(
                "{:?}",
                crate::smsc::SmscChannel::new(
                    opts.clone(),
                    crate::smsc::SmscAuth::login("login", secret)
                )
            ),
            format!(
                "{:?}",
                crate::smsaero::SmsAeroChannel::new(opts.clone(), "a@b.c", secret)
            ),
            format!(
                "{:?}",
                crate::twilio::TwilioChannel::new(opts.clone(), "AC1", secret)
            ),
        ];
        for p in printed {
            assert!(!p.contains(secret), "{p}");
            assert!(p.contains("[redacted]"), "{p}");
            assert!(p.contains(r#"sender: Some("Clinic")"#), "{p}");
            assert!(p.contains("request_interval: Some(103ms)"), "{p}");
        }
    }

    #[cfg(feature = "smsru")]
    #[test]
    fn receipts_and_stamps_read_the_configured_clock() {
        let clock = messaging_core::ManualClock::at_unix(1_700_000_000);
        let opts = SmsOptions::new("sms").clock(Arc::new(clock.clone()));
        let ch = crate::smsru::SmsRuChannel::new(opts, "id");
        assert_eq!(ch.http.stamp.now(), clock.now());
        clock.advance(Duration::from_secs(5));
        assert_eq!(ch.http.stamp.now().timestamp(), 1_700_000_005);
        assert_eq!(
            ch.http.stamp.channel_id().map(ChannelId::as_str),
            Some("sms")
        );
    }
}
