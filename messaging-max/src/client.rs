//! The Max bot client: configuration, sending ([`Channel`]), subscriptions, updates.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_core::pace::Pacer;
use messaging_core::text::split::{SplitConfig, split_texts};
use messaging_core::{
    Address, Capabilities, Channel, ChannelError, ChannelId, ChannelKind, Clock, Evidence,
    OutboundMessage, SendReceipt, SystemClock, TextUnit,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{MaxError, classify_error};
use crate::keyboard::inline_keyboard;
use crate::parse::UpdateParser;
use crate::webhook::MaxWebhookHandler;
use crate::wire::{NewMessageBody, SendMessageResult, SimpleQueryResult, opt_i64};

/// The current Max Bot API host.
pub const DEFAULT_BASE_URL: &str = "https://platform-api2.max.ru";
/// The longest text of one Max message, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// How many messages a long text may be split into by default.
pub const DEFAULT_MAX_PARTS: usize = 5;
/// Requests per second to the Max API unless configured: Max documents "the maximum number of
/// requests per second to platform-api.max.ru is 30 rps".
pub const DEFAULT_RATE_LIMIT: u32 = 30;
/// The timeout of one request unless configured (long polls add their wait).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How Max renders the text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextFormat {
    /// Plain text: no `format` field is sent (the default, so `*` and `_` in names stay literal).
    #[default]
    Plain,
    /// `format: "markdown"`.
    Markdown,
    /// `format: "html"`.
    Html,
}

impl TextFormat {
    fn wire(self) -> Option<&'static str> {
        match self {
            TextFormat::Plain => None,
            TextFormat::Markdown => Some("markdown"),
            TextFormat::Html => Some("html"),
        }
    }
}

/// Builds a [`MaxBot`].
///
/// ```
/// use messaging_max::{MaxBot, TextFormat};
/// let bot = MaxBot::builder("my-token")
///     .channel_id("max-main")
///     .format(TextFormat::Markdown)
///     .build()
///     .unwrap();
/// assert!(!format!("{bot:?}").contains("my-token"));
/// ```
pub struct MaxBotBuilder {
    token: SecretString,
    channel_id: ChannelId,
    base_url: String,
    format: TextFormat,
    max_parts: usize,
    timeout: Duration,
    rate_limit: u32,
    client: Option<reqwest::Client>,
    /// The default client's settings; holds the extra root certificates.
    client_config: messaging_http::ClientConfig,
    contact_key: Option<SecretString>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MaxBotBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaxBotBuilder")
            .field("token", &"[redacted]")
            .field("channel_id", &self.channel_id)
            .field("base_url", &self.base_url)
            .field("format", &self.format)
            .field("max_parts", &self.max_parts)
            .field("timeout", &self.timeout)
            .field("rate_limit", &self.rate_limit)
            .field("custom_client", &self.client.is_some())
            .field(
                "extra_root_certs",
                &self.client_config.extra_root_certificates(),
            )
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl MaxBotBuilder {
    /// Sets the configured channel id (default `"max"`).
    pub fn channel_id(mut self, id: impl Into<ChannelId>) -> Self {
        self.channel_id = id.into();
        self
    }

    /// Overrides the API host (default [`DEFAULT_BASE_URL`]); for tests and proxies.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Sets how the text is rendered (default [`TextFormat::Plain`]).
    pub fn format(mut self, format: TextFormat) -> Self {
        self.format = format;
        self
    }

    /// How many messages a text longer than 4000 characters may be split into (default
    /// [`DEFAULT_MAX_PARTS`]; 1 never splits).
    pub fn max_parts(mut self, n: usize) -> Self {
        self.max_parts = n.max(1);
        self
    }

    /// The timeout of one request (default [`DEFAULT_TIMEOUT`]), with your client too. Long
    /// polls add their own wait on top.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many requests per second this bot sends to the Max API at most (default
    /// [`DEFAULT_RATE_LIMIT`], the 30 that Max documents; 0 turns the pacing off).
    ///
    /// Every request (sends, `GET /me`, subscriptions, long polls) waits for its turn: requests
    /// are spaced evenly, `1/n` s apart plus a 3 % margin for network jitter, with no opening
    /// burst, so the bot reaches about 97 % of `n`. A request's turn lasts until its answer is
    /// read: one that was slow to reach Max (a new connection, a stall) holds back the requests
    /// that would otherwise land in the same second (a long poll counts from its start). The
    /// pacing is in-process and shared by clones of the bot: give each process that uses one
    /// token its share. (One 429 seen in the wild said "Limit is: 10 calls per second"; lower
    /// the rate if your bot gets those.)
    ///
    /// ```
    /// use messaging_max::MaxBot;
    /// let bot = MaxBot::builder("my-token").rate_limit(10).build().unwrap();
    /// # let _ = bot;
    /// ```
    pub fn rate_limit(mut self, n: u32) -> Self {
        self.rate_limit = n;
        self
    }

    /// Uses your own HTTP client (proxy, pools, your own TLS roots) instead of the default one.
    /// Keep TLS verification on. [`timeout`](Self::timeout) still applies to each request.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Trusts one more root certificate, given as PEM (one or more `CERTIFICATE` blocks), in
    /// addition to the system and built-in roots. Max's host may be signed by the Russian
    /// Trusted Root CA (Минцифры), which many systems do not ship. Certificate checks are never
    /// turned off.
    ///
    /// ```
    /// use messaging_max::{MaxBot, MaxError};
    /// let err = MaxBot::builder("t").add_root_certificate_pem(b"not a certificate").unwrap_err();
    /// assert!(matches!(err, MaxError::InvalidCertificate(_)));
    /// ```
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Result<Self, MaxError> {
        self.client_config = self
            .client_config
            .add_root_certificates_pem(pem)
            .map_err(MaxError::from)?;
        Ok(self)
    }

    /// Overrides the key of the contact `hash` HMAC (default: the bot token; see
    /// [`crate::contact`]).
    pub fn contact_hash_key(mut self, key: SecretString) -> Self {
        self.contact_key = Some(key);
        self
    }

    /// Reads the time from `clock` (default: the system clock): a receipt is dated by it when
    /// Max's answer carries no `timestamp`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use messaging_core::ManualClock;
    /// use messaging_max::MaxBot;
    /// let bot = MaxBot::builder("my-token")
    ///     .clock(Arc::new(ManualClock::at_unix(1_700_000_000)))
    ///     .build()
    ///     .unwrap();
    /// # let _ = bot;
    /// ```
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the bot.
    pub fn build(self) -> Result<MaxBot, MaxError> {
        if self.token.expose_secret().trim().is_empty() {
            return Err(MaxError::EmptyToken);
        }
        let base = url::Url::parse(self.base_url.trim())
            .map_err(|e| MaxError::InvalidBaseUrl(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(MaxError::InvalidBaseUrl(format!(
                "{base} is not an http(s) URL"
            )));
        }
        let http = self
            .client_config
            .timeout(self.timeout)
            .user_agent(concat!("messaging-max/", env!("CARGO_PKG_VERSION")))
            .client(self.client)?;
        let contact_key = self.contact_key.unwrap_or_else(|| self.token.clone());
        let redactor = messaging_http::Redactor::new()
            .secret(self.token.expose_secret())
            .secret(contact_key.expose_secret());
        Ok(MaxBot {
            inner: Arc::new(Inner {
                redactor,
                token: self.token,
                channel_id: self.channel_id,
                base: base.as_str().trim_end_matches('/').to_owned(),
                format: self.format,
                max_parts: self.max_parts,
                http,
                contact_key,
                pace: NonZeroU32::new(self.rate_limit).map(Pacer::per_second),
                timeout: self.timeout,
                clock: self.clock,
            }),
        })
    }
}

struct Inner {
    token: SecretString,
    channel_id: ChannelId,
    base: String,
    format: TextFormat,
    max_parts: usize,
    http: reqwest::Client,
    contact_key: SecretString,
    /// `None`: no pacing.
    pace: Option<Pacer>,
    /// Of one request; a long poll sets its own.
    timeout: Duration,
    /// Dates receipts whose answer carries no time.
    clock: Arc<dyn Clock>,
    /// The token and the contact key, scrubbed from every error (providers echo requests).
    redactor: messaging_http::Redactor,
}

/// A Max bot: a [`Channel`] that sends with `POST /messages`, plus subscriptions, updates and
/// identity helpers. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use messaging_core::{Address, ChannelExt};
/// use messaging_max::MaxBot;
/// let bot = MaxBot::builder(std::env::var("MAX_BOT_TOKEN")?).build()?;
/// let receipt = bot.send_text(Address::MaxUser(10001), "Напоминаем о приёме завтра в 10:00").await?;
/// println!("sent as {}", receipt.provider_message_id);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MaxBot {
    inner: Arc<Inner>,
}

impl fmt::Debug for MaxBot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaxBot")
            .field("channel_id", &self.inner.channel_id)
            .field("base_url", &self.inner.base)
            .field("format", &self.inner.format)
            .field("max_parts", &self.inner.max_parts)
            .field(
                "request_interval",
                &self.inner.pace.as_ref().map(Pacer::interval),
            )
            .field("token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// What `GET /me` says about the bot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct BotInfo {
    /// The bot's user id.
    #[serde(default, deserialize_with = "opt_i64")]
    pub user_id: Option<i64>,
    /// Its nick (`id7700000000_bot`), the `<bot>` of deep links.
    #[serde(default)]
    pub username: Option<String>,
    /// Its display name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Deprecated display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// One webhook subscription (`GET /subscriptions`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Subscription {
    /// The webhook URL.
    pub url: String,
    /// When it was created (Unix ms).
    #[serde(default, deserialize_with = "opt_i64")]
    pub time: Option<i64>,
    /// The update types delivered, when restricted.
    #[serde(default)]
    pub update_types: Option<Vec<String>>,
}

/// One `GET /updates` answer, parsed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpdatesBatch {
    /// Events, in order; unknown update types are not here.
    pub events: Vec<messaging_core::Event>,
    /// The marker to send next time (acknowledges this batch); `None` when Max sent none.
    pub marker: Option<i64>,
    /// How many updates were received in total (handled, skipped and malformed).
    pub received: usize,
    /// How many updates were malformed and dropped (logged with `tracing::warn!`).
    pub malformed: usize,
}

/// Splits a text into parts of at most [`MAX_TEXT_CHARS`] characters with the core splitter
/// (paragraph, line, sentence, then word boundaries; never inside a grapheme or a link).
fn split_parts(text: &str) -> Result<Vec<String>, ChannelError> {
    let config = SplitConfig::for_kind(ChannelKind::Max).max(MAX_TEXT_CHARS);
    split_texts(text, &config)
        .map_err(|e| ChannelError::invalid_content(format!("Max: cannot split the text: {e}")))
}

fn is_valid_secret(s: &str) -> bool {
    (5..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl MaxBot {
    /// Starts configuring a bot with its token (the raw token, sent as `Authorization: <token>`).
    pub fn builder(token: impl Into<String>) -> MaxBotBuilder {
        MaxBotBuilder {
            token: SecretString::from(token.into()),
            channel_id: ChannelId::new("max"),
            base_url: DEFAULT_BASE_URL.to_owned(),
            format: TextFormat::Plain,
            max_parts: DEFAULT_MAX_PARTS,
            timeout: DEFAULT_TIMEOUT,
            rate_limit: DEFAULT_RATE_LIMIT,
            client: None,
            client_config: messaging_http::ClientConfig::new(),
            contact_key: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The API base URL in use.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// A webhook handler for this bot: checks `X-Max-Bot-Api-Secret` against `secret` (none: no
    /// check), tags events with this channel id and verifies shared contacts with the contact
    /// hash key (the token unless overridden).
    pub fn webhook_handler(&self, secret: Option<SecretString>) -> MaxWebhookHandler {
        MaxWebhookHandler::new(secret).with_parser(self.parser())
    }

    /// The update parser this bot uses (channel id and contact hash key set).
    pub fn parser(&self) -> UpdateParser {
        UpdateParser::new()
            .channel_id(self.inner.channel_id.clone())
            .contact_hash_key(self.inner.contact_key.clone())
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.inner.base)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_with(method, path, &[])
    }

    /// A request to `path` with query parameters (reqwest's `query` needs a feature this
    /// workspace does not enable, so the URL is built here).
    fn request_with(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        let mut url = self.url(path);
        if !query.is_empty() {
            let encoded: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
                .finish();
            url.push('?');
            url.push_str(&encoded);
        }
        self.inner
            .http
            .request(method, url)
            .timeout(self.inner.timeout)
            .header(
                reqwest::header::AUTHORIZATION,
                self.inner.token.expose_secret(),
            )
    }

    /// Sends a request, in its turn under the configured rate, and returns the body of a 2xx
    /// answer, or the mapped error.
    async fn execute(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ChannelError> {
        self.execute_paced(req, false).await
    }

    /// [`execute`](Self::execute); a `long_poll` is held by Max before the answer, so its answer
    /// says nothing about when it arrived.
    async fn execute_paced(
        &self,
        req: reqwest::RequestBuilder,
        long_poll: bool,
    ) -> Result<Vec<u8>, ChannelError> {
        let permit = match &self.inner.pace {
            Some(pace) => Some(pace.acquire().await),
            None => None,
        };
        let result = self.execute_now(req).await;
        // Dropped once the answer is read: its time bounds when Max counted the request.
        match permit {
            Some(p) if long_poll => p.arrived_at_start(),
            p => drop(p),
        }
        result
    }

    async fn execute_now(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ChannelError> {
        self.execute_unscrubbed(req)
            .await
            .map_err(|e| self.inner.redactor.redact_error(e))
    }

    async fn execute_unscrubbed(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, ChannelError> {
        let reply = messaging_http::execute(req, "Max API", &*self.inner.clock)
            .await
            // Every failure without an answer carries the same code, for dashboards.
            .map_err(|e| e.with_provider_code("network"))?;
        if reply.status.is_success() {
            Ok(reply.body.to_vec())
        } else {
            Err(classify_error(
                reply.status.as_u16(),
                &reply.body,
                reply.retry_after,
            ))
        }
    }

    async fn json<T: for<'de> Deserialize<'de>>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, ChannelError> {
        let body = self.execute(req).await?;
        serde_json::from_slice(&body).map_err(|e| {
            // serde quotes the values it could not read, which may be echoed input.
            self.inner.redactor.redact_error(
                ChannelError::unexpected(format!("Max {what}: unreadable response: {e}"))
                    .with_provider_code("bad_response"),
            )
        })
    }

    /// `GET /me`: checks the token and returns the bot's profile.
    pub async fn get_me(&self) -> Result<BotInfo, ChannelError> {
        self.json(self.request(reqwest::Method::GET, "me"), "GET /me")
            .await
    }

    /// `POST /subscriptions`: asks Max to POST updates to `url` (HTTPS on port 443), with the
    /// `X-Max-Bot-Api-Secret` header set to `secret` when given. `update_types` empty means all
    /// ([`HANDLED_UPDATE_TYPES`](crate::HANDLED_UPDATE_TYPES) is what this crate reads).
    pub async fn subscribe(
        &self,
        url: &str,
        update_types: &[&str],
        secret: Option<&SecretString>,
    ) -> Result<(), MaxError> {
        let parsed =
            url::Url::parse(url).map_err(|e| MaxError::InvalidWebhookUrl(e.to_string()))?;
        if parsed.scheme() != "https" {
            return Err(MaxError::InvalidWebhookUrl(
                "Max only calls https:// webhooks".into(),
            ));
        }
        let mut body = serde_json::json!({ "url": url });
        if !update_types.is_empty() {
            body["update_types"] = serde_json::json!(update_types);
        }
        if let Some(s) = secret {
            if !is_valid_secret(s.expose_secret()) {
                return Err(MaxError::InvalidSecret);
            }
            body["secret"] = Value::String(s.expose_secret().to_owned());
        }
        // The webhook secret is scrubbed from what Max answers, as the token is.
        let scrub = messaging_http::Redactor::new()
            .secrets(secret.map(ExposeSecret::expose_secret))
            .merge(&self.inner.redactor);
        let res: SimpleQueryResult = self
            .json(
                self.request(reqwest::Method::POST, "subscriptions")
                    .json(&body),
                "POST /subscriptions",
            )
            .await
            .map_err(|e| scrub.redact_error(e))?;
        if res.success {
            Ok(())
        } else {
            Err(MaxError::Refused(
                scrub.redact(res.message.as_deref().unwrap_or("success: false")),
            ))
        }
    }

    /// `DELETE /subscriptions?url=`: stops webhook delivery to `url`.
    pub async fn unsubscribe(&self, url: &str) -> Result<(), MaxError> {
        let res: SimpleQueryResult = self
            .json(
                self.request_with(
                    reqwest::Method::DELETE,
                    "subscriptions",
                    &[("url", url.to_owned())],
                ),
                "DELETE /subscriptions",
            )
            .await?;
        if res.success {
            Ok(())
        } else {
            Err(MaxError::Refused(
                self.inner
                    .redactor
                    .redact(res.message.as_deref().unwrap_or("success: false")),
            ))
        }
    }

    /// `GET /subscriptions`: the active webhooks (Max drops one after 8 hours of failures, so
    /// check periodically).
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, ChannelError> {
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            subscriptions: Vec<Subscription>,
        }
        let list: List = self
            .json(
                self.request(reqwest::Method::GET, "subscriptions"),
                "GET /subscriptions",
            )
            .await?;
        Ok(list.subscriptions)
    }

    /// `GET /updates`: one long poll. `marker` acknowledges everything before it; `timeout` is
    /// how long Max may hold the request (0..=90 s); `limit` is 1..=1000. Malformed updates are
    /// dropped and counted, unknown ones skipped.
    pub async fn get_updates(
        &self,
        marker: Option<i64>,
        timeout: Duration,
        limit: u32,
        types: &[&str],
    ) -> Result<UpdatesBatch, ChannelError> {
        let secs = timeout.as_secs().min(90);
        let mut query: Vec<(&str, String)> = vec![
            ("limit", limit.clamp(1, 1000).to_string()),
            ("timeout", secs.to_string()),
        ];
        if let Some(m) = marker {
            query.push(("marker", m.to_string()));
        }
        if !types.is_empty() {
            query.push(("types", types.join(",")));
        }
        let req = self
            .request_with(reqwest::Method::GET, "updates", &query)
            .timeout(Duration::from_secs(secs + 15));
        let body = self.execute_paced(req, true).await?;
        self.parse_updates_body(&body)
    }

    fn parse_updates_body(&self, body: &[u8]) -> Result<UpdatesBatch, ChannelError> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            updates: Vec<Value>,
            #[serde(default, deserialize_with = "opt_i64")]
            marker: Option<i64>,
        }
        let raw: Raw = serde_json::from_slice(body).map_err(|e| {
            ChannelError::unexpected(format!("Max GET /updates: unreadable response: {e}"))
                .with_provider_code("bad_response")
        })?;
        let parser = self.parser();
        let mut events = Vec::new();
        let mut malformed = 0;
        for u in &raw.updates {
            match parser.parse_value(u) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => {}
                Err(e) => {
                    malformed += 1;
                    tracing::warn!(error = %e, "dropping a malformed Max update");
                }
            }
        }
        Ok(UpdatesBatch {
            events,
            marker: raw.marker,
            received: raw.updates.len(),
            malformed,
        })
    }

    async fn send_part(
        &self,
        to: (&str, i64),
        body: &NewMessageBody,
        disable_preview: bool,
    ) -> Result<(String, Option<DateTime<Utc>>), ChannelError> {
        let mut query = vec![(to.0, to.1.to_string())];
        if disable_preview {
            query.push(("disable_link_preview", "true".to_owned()));
        }
        // A 2xx that cannot be read may still have sent the message: outcome unknown.
        let unreadable = |detail: &str| {
            messaging_http::unreadable_success("Max POST /messages", detail)
                .with_provider_code("bad_response")
        };
        let body = self
            .execute(
                self.request_with(reqwest::Method::POST, "messages", &query)
                    .json(body),
            )
            .await?;
        let res: SendMessageResult =
            serde_json::from_slice(&body).map_err(|_| unreadable("not the documented JSON"))?;
        let message = res.message.unwrap_or_default();
        let mid = message
            .body
            .and_then(|b| b.mid)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| unreadable("no message.body.mid"))?;
        let at = message.timestamp.and_then(DateTime::from_timestamp_millis);
        Ok((mid, at))
    }
}

#[async_trait]
impl Channel for MaxBot {
    fn id(&self) -> &ChannelId {
        &self.inner.channel_id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Max
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(MAX_TEXT_CHARS, TextUnit::Chars, Evidence::Accepted)
            .max_parts(self.inner.max_parts)
            .buttons(true)
            .can_start_conversation(false)
    }

    /// Sends the content's Max text, split by the core splitter
    /// ([`messaging_core::text::split()`]) into parts of at most 4000 characters at paragraph,
    /// sentence or word boundaries, sent back to back (no pause: they are one notice); buttons go
    /// under the last part. The receipt's id is the first part's `mid`,
    /// further parts are in `extra_message_ids`. If a later part fails, the error is returned
    /// (earlier parts were delivered to Max). Attachments are not sent (media uploads are not
    /// supported yet).
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let to = match message.to {
            Address::MaxUser(id) => ("user_id", id),
            Address::MaxChat(id) => ("chat_id", id),
            ref other => {
                return Err(ChannelError::unreachable(format!(
                    "Max cannot send to a {} address",
                    match other {
                        Address::Phone(_) => "phone",
                        Address::WhatsApp(_) => "WhatsApp",
                        Address::Telegram(_) => "Telegram",
                        _ => "non-Max",
                    }
                ))
                .with_provider_code("address"));
            }
        };
        let content = &message.content;
        let text = content.text_for(ChannelKind::Max);
        if text.trim().is_empty() {
            return Err(ChannelError::invalid_content("Max: the text is empty"));
        }
        if !content.attachments.is_empty() {
            tracing::warn!(
                count = content.attachments.len(),
                "Max: attachments are not sent (media uploads are not supported); sending the text only"
            );
        }
        let keyboard = inline_keyboard(&content.buttons)?;
        let parts = split_parts(text)?;
        if parts.len() > self.inner.max_parts {
            return Err(ChannelError::invalid_content(format!(
                "Max: the text needs {} messages of {MAX_TEXT_CHARS} characters, at most {} allowed",
                parts.len(),
                self.inner.max_parts
            )));
        }
        let n = parts.len();
        let mut receipt: Option<SendReceipt> = None;
        for (i, part) in parts.into_iter().enumerate() {
            let attachments = match (&keyboard, i + 1 == n) {
                (Some(kb), true) => vec![kb.clone()],
                _ => Vec::new(),
            };
            let body = NewMessageBody {
                text: part,
                format: self.inner.format.wire(),
                attachments,
            };
            let (mid, at) = match self.send_part(to, &body, !content.link_preview).await {
                Ok(sent) => sent,
                Err(e) => {
                    if i > 0 {
                        tracing::warn!(part = i + 1, of = n, "Max: a later part failed");
                    }
                    return Err(e);
                }
            };
            receipt = Some(match receipt {
                None => SendReceipt::new(mid, at.unwrap_or_else(|| self.inner.clock.now())),
                Some(r) => r.extra_id(mid),
            });
        }
        let receipt =
            receipt.ok_or_else(|| ChannelError::invalid_content("Max: nothing to send"))?;
        Ok(receipt.parts(n as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        assert!(matches!(
            MaxBot::builder(" ").build(),
            Err(MaxError::EmptyToken)
        ));
        for bad in ["", "platform-api2.max.ru", "ftp://x", "http://"] {
            assert!(
                matches!(
                    MaxBot::builder("t").base_url(bad).build(),
                    Err(MaxError::InvalidBaseUrl(_))
                ),
                "{bad}"
            );
        }
        let bot = MaxBot::builder("t")
            .base_url("http://127.0.0.1:9/")
            .build()
            .unwrap();
        assert_eq!(bot.base_url(), "http://127.0.0.1:9");
        assert_eq!(bot.url("messages"), "http://127.0.0.1:9/messages");
        assert_eq!(
            MaxBot::builder("t").build().unwrap().base_url(),
            "https://platform-api2.max.ru"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_paced_under_the_rate_in_every_sliding_second() {
        let bot = MaxBot::builder("t").build().unwrap();
        let pace = bot.inner.pace.as_ref().expect("paced by default");
        assert_eq!(
            pace.interval(),
            messaging_core::pace::Limit::per_second(DEFAULT_RATE_LIMIT)
                .unwrap()
                .interval()
        );
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let bot = bot.clone();
            tasks.push(tokio::spawn(async move {
                let mut starts = Vec::new();
                for _ in 0..6 {
                    drop(bot.inner.pace.as_ref().unwrap().acquire().await);
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
        let span = starts[95].duration_since(starts[0]).as_secs_f64();
        assert!(95.0 / span >= 0.95 * 30.0, "{} per second", 95.0 / span);
        let off = MaxBot::builder("t").rate_limit(0).build().unwrap();
        assert!(off.inner.pace.is_none());
        assert!(format!("{off:?}").contains("request_interval: None"));
    }

    #[test]
    fn capabilities() {
        let c = MaxBot::builder("t").build().unwrap().capabilities();
        assert_eq!(c.max_text_len, 4000);
        assert_eq!(c.text_unit, TextUnit::Chars);
        assert_eq!(c.strongest_evidence, Evidence::Accepted);
        assert!(c.buttons);
        assert!(!c.can_start_conversation);
        assert_eq!(c.max_parts, DEFAULT_MAX_PARTS);
    }

    #[test]
    fn secrets() {
        assert!(is_valid_secret("s3cretValue_123"));
        assert!(is_valid_secret("a-b_c"));
        for bad in ["abcd", "with space", "ünïcode", &"x".repeat(257)] {
            assert!(!is_valid_secret(bad), "{bad}");
        }
    }

    const TOKEN: &str = "tok-SECRET-123456";

    #[test]
    fn token_never_printed() {
        let b = MaxBot::builder(TOKEN);
        assert!(!format!("{b:?}").contains(TOKEN));
        let bot = b.build().unwrap();
        assert!(!format!("{bot:?}").contains(TOKEN));
        assert!(!format!("{:?}", bot.parser()).contains(TOKEN));
        assert!(!format!("{:?}", bot.webhook_handler(None)).contains(TOKEN));
    }

    #[test]
    fn bad_pem_is_a_typed_error() {
        for pem in [
            &b"not a certificate"[..],
            b"",
            b"-----BEGIN CERTIFICATE-----\n!!!notbase64!!!\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(
                    MaxBot::builder("t").add_root_certificate_pem(pem),
                    Err(MaxError::InvalidCertificate(_))
                ),
                "{}",
                String::from_utf8_lossy(pem)
            );
        }
    }

    #[test]
    fn certificates_and_custom_client_conflict() {
        let b = MaxBot::builder("t")
            .add_root_certificate_pem(TEST_CA_PEM.as_bytes())
            .unwrap();
        // A valid CA builds a client that still verifies certificates.
        assert!(
            MaxBot::builder("t")
                .add_root_certificate_pem(TEST_CA_PEM.as_bytes())
                .unwrap()
                .build()
                .is_ok()
        );
        assert!(matches!(
            b.client(reqwest::Client::new()).build(),
            Err(MaxError::CertificatesWithCustomClient)
        ));
    }

    #[tokio::test]
    async fn network_errors_are_temporary_and_hold_no_token() {
        // Port 9 on loopback: nothing listens, the connection is refused.
        let bot = MaxBot::builder(TOKEN)
            .base_url("http://127.0.0.1:9")
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let e = bot.get_me().await.unwrap_err();
        assert_eq!(e.kind(), messaging_core::ErrorKind::Temporary);
        let printed = format!("{e} {e:?}");
        assert!(!printed.contains(TOKEN), "{printed}");
        assert!(!printed.contains("127.0.0.1:9/me"), "{printed}");
    }

    #[tokio::test]
    async fn non_max_addresses_and_empty_text_are_refused_without_a_request() {
        use messaging_core::{Content, ErrorKind, Purpose};
        let bot = MaxBot::builder("t")
            .base_url("http://127.0.0.1:9")
            .build()
            .unwrap();
        let e = bot
            .send(&OutboundMessage::new(
                Address::Telegram(1),
                Content::text("x"),
                Purpose::Service,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        let e = bot
            .send(&OutboundMessage::new(
                Address::MaxUser(1),
                Content::text("  "),
                Purpose::Service,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidContent);
        let long = "слово ".repeat(4000);
        let e = MaxBot::builder("t")
            .base_url("http://127.0.0.1:9")
            .max_parts(1)
            .build()
            .unwrap()
            .send(&OutboundMessage::new(
                Address::MaxUser(1),
                Content::text(long),
                Purpose::Service,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidContent);
    }

    #[test]
    fn splitting_uses_word_boundaries_and_keeps_every_word() {
        assert_eq!(split_parts("привет").unwrap(), vec!["привет"]);
        let words: Vec<String> = (0..3000).map(|i| format!("слово{i}")).collect();
        let parts = split_parts(&words.join(" ")).unwrap();
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_TEXT_CHARS));
        let rejoined: Vec<&str> = parts.iter().flat_map(|p| p.split(' ')).collect();
        assert_eq!(
            rejoined,
            words.iter().map(String::as_str).collect::<Vec<_>>()
        );
        // No whitespace at all: cut between characters.
        let parts = split_parts(&"я".repeat(9000)).unwrap();
        assert_eq!(
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            vec![4000, 4000, 1000]
        );
    }

    /// A self-signed test CA (generated for these tests; not trusted anywhere).
    const TEST_CA_PEM: &str = include_str!("../tests/data/test-ca.pem");
}
