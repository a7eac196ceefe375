//! The WhatsApp [`Channel`]: configuration, the send path and the 24-hour window.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_core::StoreError;
use messaging_core::pace::Pacer;
use messaging_core::window::{self, MemoryWindowStore, WindowStore, whatsapp_window_key};
use messaging_core::{
    Address, Capabilities, Channel, ChannelError, ChannelId, ChannelKind, Clock, Content,
    DeliveryStatus, ErrorKind, Event, Evidence, OutboundMessage, SendReceipt, Signal, SystemClock,
    Template, TextUnit,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::cost::{PriceTable, PricingCategory};
use crate::error::error_from_response;
use crate::payload::{self, Buttons};
use crate::templates::TemplateRegistry;
use crate::throughput::{MessagingTier, PairLimiter, TierTracker};
use crate::webhook::WabaWebhook;

/// The Graph API version used unless configured (Graph versions expire: keep it current).
pub const DEFAULT_API_VERSION: &str = "v24.0";
/// Meta's Graph API.
pub const CLOUD_API_BASE_URL: &str = "https://graph.facebook.com/";
/// 360dialog's Cloud API proxy.
pub const DIALOG360_BASE_URL: &str = "https://waba-v2.360dialog.io/";
/// Messages per second per business number unless configured (Meta's default throughput).
pub const DEFAULT_RATE_LIMIT: u32 = 80;
/// The timeout of one request unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The pair rate unless configured: one message per 6 seconds to the same person.
pub const DEFAULT_PAIR_INTERVAL: Duration = Duration::from_secs(6);

/// Who carries the messages.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provider {
    /// Meta's Cloud API: `POST {base}/{version}/{phone_number_id}/messages`, `Authorization: Bearer`.
    CloudApi {
        /// The Graph id of the business number (not the number itself).
        phone_number_id: String,
    },
    /// 360dialog: `POST {base}/messages`, `D360-API-KEY` (one key per number).
    Dialog360,
}

/// Why a channel could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base URL cannot carry a path.
    #[error("base URL {0} cannot be used")]
    BaseUrl(String),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Invalid(&'static str),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

/// Builds a [`WabaChannel`]; start with [`WabaChannel::cloud_api`] or [`WabaChannel::dialog360`].
pub struct WabaBuilder {
    id: ChannelId,
    provider: Provider,
    token: SecretString,
    base_url: Option<String>,
    api_version: String,
    client: Option<reqwest::Client>,
    windows: Option<Arc<dyn WindowStore>>,
    clock: Arc<dyn Clock>,
    rate_limit: u32,
    timeout: Duration,
    pair_interval: Duration,
    tier: TierTracker,
    templates: TemplateRegistry,
    prices: Option<PriceTable>,
    waba_id: Option<String>,
    enforce_window: bool,
}

impl fmt::Debug for WabaBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WabaBuilder")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("token", &"[redacted]")
            .field("base_url", &self.base_url)
            .field("api_version", &self.api_version)
            .field("rate_limit", &self.rate_limit)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WabaBuilder {
    /// Overrides the base URL (a fake server in tests, 360dialog's sandbox).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
    /// Sets the Graph API version (default [`DEFAULT_API_VERSION`]; unused by 360dialog).
    pub fn api_version(mut self, v: impl Into<String>) -> Self {
        self.api_version = v.into();
        self
    }
    /// Uses your HTTP client (proxies, pools, TLS roots) instead of the default one. Keep TLS
    /// verification on. [`timeout`](Self::timeout) still applies to each request.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }
    /// Where the last inbound message per person is kept (default: a fresh [`MemoryWindowStore`]).
    pub fn window_store(mut self, store: Arc<dyn WindowStore>) -> Self {
        self.windows = Some(store);
        self
    }
    /// The clock for the window, the pair limit and the tier count (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Messages per second through this number (default [`DEFAULT_RATE_LIMIT`], Meta's 80; set
    /// what Meta granted the number, up to 1,000); 0 turns the pacing off (a limiter outside
    /// this crate).
    ///
    /// The channel keeps Meta's count of any sliding second at `n` or less: it spaces messages
    /// evenly, `1/n` s apart plus a 3 % margin for network jitter, with no opening burst, and
    /// concurrent sends wait their turn, so it reaches about 97 % of `n`. A message's turn lasts
    /// until its answer is read: one that was slow to reach Meta (a new connection, a stall)
    /// holds back the messages that would otherwise land in the same second. The pacing is per
    /// channel and in-process: give each process that sends through one number its share.
    ///
    /// ```
    /// use messaging_waba::WabaChannel;
    /// let wa = WabaChannel::cloud_api("wa", "106540352242922", "token")
    ///     .rate_limit(200)
    ///     .build()
    ///     .unwrap();
    /// assert!(format!("{wa:?}").contains("message_interval: Some(5.15ms)"));
    /// let unpaced = WabaChannel::cloud_api("wa", "1", "t").rate_limit(0).build().unwrap();
    /// assert!(format!("{unpaced:?}").contains("message_interval: None"));
    /// ```
    pub fn rate_limit(mut self, n: u32) -> Self {
        self.rate_limit = n;
        self
    }
    /// The timeout of one request (default [`DEFAULT_TIMEOUT`]), with your client too. A request
    /// that times out is [`ErrorKind::Temporary`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use messaging_waba::WabaChannel;
    /// let wa = WabaChannel::dialog360("wa", "key").timeout(Duration::from_secs(5)).build().unwrap();
    /// # let _ = wa;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Least time between two messages to one person (default 6 s; zero turns it off).
    pub fn pair_interval(mut self, d: Duration) -> Self {
        self.pair_interval = d;
        self
    }
    /// Shares a tier tracker (give all numbers of one business portfolio the same one).
    pub fn tier_tracker(mut self, t: TierTracker) -> Self {
        self.tier = t;
        self
    }
    /// Sets the known tier.
    pub fn tier(self, tier: MessagingTier) -> Self {
        self.tier.set_tier(Some(tier));
        self
    }
    /// Shares a template registry.
    pub fn templates(mut self, r: TemplateRegistry) -> Self {
        self.templates = r;
        self
    }
    /// Puts cost estimates on receipts.
    pub fn price_table(mut self, p: PriceTable) -> Self {
        self.prices = Some(p);
        self
    }
    /// The WhatsApp Business Account id, for [`WabaChannel::sync_templates`] on the Cloud API.
    pub fn waba_id(mut self, id: impl Into<String>) -> Self {
        self.waba_id = Some(id.into());
        self
    }
    /// Whether free text without a template is refused (with `NeedsTemplate`, no request) when the
    /// window store knows of no open window (default `true`). Turn off only if inbound messages
    /// are not fed to [`WabaChannel::observe`].
    pub fn enforce_window(mut self, yes: bool) -> Self {
        self.enforce_window = yes;
        self
    }

    /// Builds the channel.
    pub fn build(self) -> Result<WabaChannel, ConfigError> {
        let default_base = match self.provider {
            Provider::CloudApi { .. } => CLOUD_API_BASE_URL,
            Provider::Dialog360 => DIALOG360_BASE_URL,
        };
        let base_str = self.base_url.as_deref().unwrap_or(default_base);
        let base = Url::parse(base_str).map_err(|_| ConfigError::BaseUrl(base_str.to_owned()))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(ConfigError::BaseUrl(base_str.to_owned()));
        }
        if let Provider::CloudApi { phone_number_id } = &self.provider
            && phone_number_id.trim().is_empty()
        {
            return Err(ConfigError::Invalid("phone number id is empty"));
        }
        if self.api_version.trim().is_empty() || self.api_version.contains('/') {
            return Err(ConfigError::Invalid("API version must look like v24.0"));
        }
        let client = messaging_http::ClientConfig::new()
            .timeout(self.timeout)
            .client(self.client)
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        let messages_url = match &self.provider {
            Provider::CloudApi { phone_number_id } => join(
                &base,
                &[
                    self.api_version.as_str(),
                    phone_number_id.as_str(),
                    "messages",
                ],
            ),
            Provider::Dialog360 => join(&base, &["messages"]),
        }
        .ok_or_else(|| ConfigError::BaseUrl(base_str.to_owned()))?;
        Ok(WabaChannel {
            redactor: messaging_http::Redactor::new().secret(self.token.expose_secret()),
            id: self.id,
            provider: self.provider,
            token: self.token,
            base,
            api_version: self.api_version,
            messages_url,
            client,
            windows: self
                .windows
                .unwrap_or_else(|| Arc::new(MemoryWindowStore::new())),
            clock: self.clock,
            limiter: NonZeroU32::new(self.rate_limit).map(Pacer::per_second),
            timeout: self.timeout,
            pair: PairLimiter::new(self.pair_interval),
            tier: self.tier,
            templates: self.templates,
            prices: self.prices,
            waba_id: self.waba_id,
            enforce_window: self.enforce_window,
        })
    }
}

fn join(base: &Url, segments: &[&str]) -> Option<Url> {
    let mut u = base.clone();
    u.path_segments_mut().ok()?.pop_if_empty().extend(segments);
    Some(u)
}

/// A WhatsApp Business number as a cascade [`Channel`], on Meta's Cloud API or 360dialog.
///
/// What it does on [`send`](Channel::send):
///
/// 1. picks free text or the template by the 24-hour window (the template when
///    [`OutboundMessage::force_template`] is set, or when the window is closed);
/// 2. checks a template against the [`TemplateRegistry`] (status, parameters) before any request;
/// 3. keeps the pair rate (one message per 6 s per person) and the per-number rate;
/// 4. sends with the notification id in `biz_opaque_callback_data`;
/// 5. on error 131047 closes the window and resends the template, if the content has one;
/// 6. returns a receipt with the wamid and a cost estimate, or a [`ChannelError`] whose kind
///    comes from the error-code table.
///
/// Feed it webhook events through [`observe`](WabaChannel::observe): inbound messages open the
/// window, template and tier updates keep the registry and the tier current.
///
/// ```no_run
/// use std::sync::Arc;
/// use messaging_core::{Address, Channel, Content, OutboundMessage, Purpose, Template, TemplateComponent};
/// use messaging_waba::WabaChannel;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let wa = WabaChannel::cloud_api("wa-main", "106540352242922", std::env::var("WABA_TOKEN")?)
///     .waba_id("102290129340398")
///     .build()?;
/// wa.sync_templates().await?;
/// let content = Content::text("Анна, напоминаем о приёме завтра в 10:00.")
///     .with_template(Template::new("appointment_reminder", "ru")
///         .component(TemplateComponent::body_text(["Анна", "завтра в 10:00"])));
/// let msg = OutboundMessage::new(Address::WhatsApp("79123456789".into()), content, Purpose::Service)
///     .for_notification("appt-42".into());
/// let receipt = wa.send(&msg).await?;
/// println!("sent {}", receipt.provider_message_id);
/// # Ok(()) }
/// ```
pub struct WabaChannel {
    id: ChannelId,
    provider: Provider,
    token: SecretString,
    base: Url,
    api_version: String,
    messages_url: Url,
    client: reqwest::Client,
    windows: Arc<dyn WindowStore>,
    clock: Arc<dyn Clock>,
    /// `None`: no pacing.
    limiter: Option<Pacer>,
    timeout: Duration,
    pair: PairLimiter,
    tier: TierTracker,
    templates: TemplateRegistry,
    prices: Option<PriceTable>,
    waba_id: Option<String>,
    enforce_window: bool,
    /// The token, scrubbed from every error (Graph echoes requests in `error.message`).
    redactor: messaging_http::Redactor,
}

impl fmt::Debug for WabaChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WabaChannel")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("token", &"[redacted]")
            .field("messages_url", &self.messages_url.as_str())
            .field(
                "message_interval",
                &self.limiter.as_ref().map(Pacer::interval),
            )
            .field("pair_interval", &self.pair.interval())
            .field("tier", &self.tier)
            .field("templates", &self.templates)
            .finish_non_exhaustive()
    }
}

fn recipient(address: &Address) -> Result<String, ChannelError> {
    match address {
        Address::Phone(p) => Ok(p.as_str().to_owned()),
        Address::WhatsApp(w) if !w.trim().is_empty() => Ok(w.trim().to_owned()),
        other => Err(ChannelError::unreachable(format!(
            "address {} is not a WhatsApp address",
            other.key()
        ))),
    }
}

enum Mode<'a> {
    FreeForm,
    Template(&'a Template),
}

impl WabaChannel {
    /// A Meta Cloud API number: its phone number id and a system-user access token.
    pub fn cloud_api(
        id: impl Into<ChannelId>,
        phone_number_id: impl Into<String>,
        token: impl Into<String>,
    ) -> WabaBuilder {
        Self::builder(
            id.into(),
            Provider::CloudApi {
                phone_number_id: phone_number_id.into(),
            },
            token.into(),
        )
    }

    /// A 360dialog number: its `D360-API-KEY`.
    pub fn dialog360(id: impl Into<ChannelId>, api_key: impl Into<String>) -> WabaBuilder {
        Self::builder(id.into(), Provider::Dialog360, api_key.into())
    }

    fn builder(id: ChannelId, provider: Provider, token: String) -> WabaBuilder {
        WabaBuilder {
            id,
            provider,
            token: SecretString::from(token),
            base_url: None,
            api_version: DEFAULT_API_VERSION.to_owned(),
            client: None,
            windows: None,
            clock: Arc::new(SystemClock),
            rate_limit: DEFAULT_RATE_LIMIT,
            timeout: DEFAULT_TIMEOUT,
            pair_interval: DEFAULT_PAIR_INTERVAL,
            tier: TierTracker::new(),
            templates: TemplateRegistry::new(),
            prices: None,
            waba_id: None,
            enforce_window: true,
        }
    }

    /// The provider.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The configured Graph API version.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The URL messages are posted to.
    pub fn messages_url(&self) -> &Url {
        &self.messages_url
    }

    /// The template registry (shared; updated by [`observe`](Self::observe) and
    /// [`sync_templates`](Self::sync_templates)).
    pub fn templates(&self) -> &TemplateRegistry {
        &self.templates
    }

    /// The messaging-limit tier, when known.
    pub fn tier(&self) -> Option<MessagingTier> {
        self.tier.tier()
    }

    /// Unique people reached with business-initiated messages in the last 24 hours.
    pub fn unique_recipients_24h(&self) -> u64 {
        self.tier.unique_recipients_24h(self.clock.now())
    }

    /// The tier tracker (to share with other numbers of the portfolio or a sender governor).
    pub fn tier_tracker(&self) -> &TierTracker {
        &self.tier
    }

    /// A webhook handler for this number: tagged with its channel id and using its price table.
    pub fn webhook(&self) -> WabaWebhook {
        let mut h = WabaWebhook::new().channel_id(self.id.clone());
        if let Some(p) = &self.prices {
            h = h.price_table(p.clone());
        }
        h
    }

    /// When the window with this person closes, if it is open now.
    pub async fn window_closes_at(&self, to: &Address) -> Option<DateTime<Utc>> {
        let key = whatsapp_window_key(to)?;
        let last = match self.windows.last_inbound(&self.id, &key).await {
            Ok(l) => l?,
            Err(e) => {
                tracing::warn!(channel = %self.id, error = %e, "window store failed; treating the window as closed");
                return None;
            }
        };
        let closes = window::closes_at(last);
        (closes > self.clock.now()).then_some(closes)
    }

    /// Whether the customer service window with this person is open now.
    pub async fn is_window_open(&self, to: &Address) -> bool {
        self.window_closes_at(to).await.is_some()
    }

    /// Takes in a webhook event: an inbound message opens the window; a failed status with 131047
    /// closes it; template status and quality update the registry; a tier signal sets the tier.
    /// Events of other channel kinds, or tagged with another channel id, are ignored.
    pub async fn observe(&self, event: &Event) -> Result<(), StoreError> {
        if event.channel() != ChannelKind::WhatsApp {
            return Ok(());
        }
        if event.channel_id().is_some_and(|c| *c != self.id) {
            return Ok(());
        }
        match event {
            Event::Inbound(m) => {
                if let Some(key) = whatsapp_window_key(&m.address) {
                    self.windows.record_inbound(&self.id, &key, m.at).await?;
                }
            }
            Event::Delivery(d) => {
                let closed = d.status == DeliveryStatus::Failed
                    && d.error.as_ref().is_some_and(|e| e.code == "131047");
                if closed
                    && let Some(r) = &d.recipient
                    && let Some(key) = whatsapp_window_key(&Address::WhatsApp(r.clone()))
                {
                    self.windows.close(&self.id, &key).await?;
                }
            }
            Event::Signal(s) => match &s.signal {
                Signal::TemplateStatus { .. } => {
                    self.templates.apply_signal(&s.signal);
                }
                Signal::Tier { limit, .. } => self.tier.set_tier(Some(match limit {
                    Some(n) => MessagingTier::Limited(*n),
                    None => MessagingTier::Unlimited,
                })),
                _ => {}
            },
            _ => {}
        }
        Ok(())
    }

    /// Fetches the account's templates from the management API (Cloud API:
    /// `GET /{version}/{waba_id}/message_templates`, every page; 360dialog:
    /// `GET /v1/configs/templates`) and makes them the registry's full list. Returns how many.
    pub async fn sync_templates(&self) -> Result<usize, ChannelError> {
        let mut pages = Vec::new();
        match &self.provider {
            Provider::CloudApi { .. } => {
                let waba = self.waba_id.as_deref().ok_or_else(|| {
                    ChannelError::invalid_content(
                        "sync_templates needs the WABA id (builder.waba_id)",
                    )
                })?;
                let url = join(
                    &self.base,
                    &[self.api_version.as_str(), waba, "message_templates"],
                )
                .ok_or_else(|| ChannelError::unexpected("bad base URL"))?;
                let mut after: Option<String> = None;
                for _ in 0..100 {
                    let mut u = url.clone();
                    u.query_pairs_mut().append_pair("limit", "100");
                    if let Some(a) = &after {
                        u.query_pairs_mut().append_pair("after", a);
                    }
                    let page = self.get_json(u).await?;
                    after = page
                        .get("paging")
                        .filter(|p| p.get("next").is_some())
                        .and_then(|p| p.get("cursors"))
                        .and_then(|c| c.get("after"))
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    pages.push(page);
                    if after.is_none() {
                        break;
                    }
                }
            }
            Provider::Dialog360 => {
                let mut u = join(&self.base, &["v1", "configs", "templates"])
                    .ok_or_else(|| ChannelError::unexpected("bad base URL"))?;
                u.query_pairs_mut().append_pair("limit", "1000");
                pages.push(self.get_json(u).await?);
            }
        }
        let n = self.templates.load_graph_list(&pages);
        tracing::info!(channel = %self.id, templates = n, "WhatsApp templates synced");
        Ok(n)
    }

    fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ChannelError> {
        let (name, value) = match self.provider {
            Provider::CloudApi { .. } => (
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token.expose_secret()),
            ),
            Provider::Dialog360 => (
                http::HeaderName::from_static("d360-api-key"),
                self.token.expose_secret().to_owned(),
            ),
        };
        let mut value = http::HeaderValue::from_str(&value).map_err(|_| {
            ChannelError::channel_down("the access token is not a valid header value")
        })?;
        value.set_sensitive(true);
        Ok(req.header(name, value))
    }

    /// Sends `req` and reads the JSON answer. `sending`: the request sends a message, so a 2xx
    /// that cannot be read means it may have been accepted (outcome unknown), not a refusal.
    async fn execute(
        &self,
        req: reqwest::RequestBuilder,
        sending: bool,
    ) -> Result<Value, ChannelError> {
        let req = self.authorize(req)?.timeout(self.timeout);
        let reply = messaging_http::execute(req, "WhatsApp", &*self.clock).await?;
        let status = reply.status;
        if !status.is_success() {
            return Err(error_from_response(
                status.as_u16(),
                reply.retry_after,
                &reply.body,
            ));
        }
        serde_json::from_slice(&reply.body).map_err(|e| {
            if sending {
                messaging_http::unreadable_success("WhatsApp", format_args!("HTTP {status}: {e}"))
            } else {
                ChannelError::unexpected(format!("HTTP {status} with an unreadable body: {e}"))
            }
        })
    }

    async fn get_json(&self, url: Url) -> Result<Value, ChannelError> {
        self.execute(self.client.get(url), false)
            .await
            .map_err(|e| self.redactor.redact_error(e))
    }

    /// Posts one message; the wamid on success.
    async fn post_message(&self, body: &Value) -> Result<String, ChannelError> {
        // Held until the answer is read: its time bounds when Meta counted the message.
        let permit = match &self.limiter {
            Some(limiter) => Some(limiter.acquire().await),
            None => None,
        };
        let v = self
            .execute(self.client.post(self.messages_url.clone()).json(body), true)
            .await;
        drop(permit);
        let v = v?;
        if v.get("error").is_some()
            && let Some(g) = crate::error::GraphError::from_value(&v)
        {
            return Err(g.to_channel_error(None));
        }
        let msg = v
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.first());
        if let Some(status) = msg
            .and_then(|m| m.get("message_status"))
            .and_then(Value::as_str)
            && status != "accepted"
        {
            tracing::warn!(channel = %self.id, message_status = status, "WhatsApp held the template message");
        }
        msg.and_then(|m| m.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| messaging_http::unreadable_success("WhatsApp", "no messages[0].id"))
    }

    fn free_form_payloads(
        &self,
        to: &str,
        content: &Content,
        cb: Option<&str>,
    ) -> Result<Vec<Value>, ChannelError> {
        let text = content.text_for(ChannelKind::WhatsApp);
        let atts = &content.attachments;
        let mut out = Vec::new();
        match payload::classify_buttons(&content.buttons)? {
            Buttons::Reply(list) => {
                let header = if atts.len() == 1 { atts.first() } else { None };
                if header.is_none() {
                    for a in atts {
                        out.push(payload::media(to, a, None, cb)?);
                    }
                }
                out.push(payload::reply_buttons(to, text, &list, header, cb)?);
            }
            Buttons::Url(title, url) => {
                for a in atts {
                    out.push(payload::media(to, a, None, cb)?);
                }
                out.push(payload::cta_url(to, text, title, url, cb)?);
            }
            Buttons::None => {
                let caption_fits =
                    !text.trim().is_empty() && text.chars().count() <= payload::MAX_CAPTION;
                if atts.is_empty() || (!text.trim().is_empty() && !caption_fits) {
                    out.push(payload::text(to, text, content.link_preview, cb)?);
                }
                for (i, a) in atts.iter().enumerate() {
                    let caption = (i == 0 && caption_fits).then_some(text);
                    out.push(payload::media(to, a, caption, cb)?);
                }
            }
        }
        Ok(out)
    }

    async fn send_all(&self, payloads: &[Value]) -> Result<Vec<String>, ChannelError> {
        let mut ids = Vec::with_capacity(payloads.len());
        for p in payloads {
            ids.push(self.post_message(p).await?);
        }
        Ok(ids)
    }

    async fn send_template(
        &self,
        to: &str,
        t: &Template,
        cb: Option<&str>,
    ) -> Result<Vec<String>, ChannelError> {
        self.templates.check(t)?;
        let header_format = self
            .templates
            .get(&t.name, &t.language)
            .and_then(|d| d.header)
            .and_then(|h| h.media);
        let body = payload::template(to, t, header_format.as_deref(), cb)?;
        self.send_all(std::slice::from_ref(&body)).await
    }

    fn receipt(
        &self,
        ids: Vec<String>,
        cost: Option<messaging_core::Cost>,
    ) -> Result<SendReceipt, ChannelError> {
        let mut it = ids.into_iter();
        let first = it
            .next()
            .ok_or_else(|| ChannelError::unexpected("nothing was sent"))?;
        let mut r = SendReceipt::new(first, self.clock.now());
        let mut parts = 1;
        for id in it {
            r = r.extra_id(id);
            parts += 1;
        }
        r = r.parts(parts);
        if let Some(c) = cost {
            r = r.cost(c);
        }
        Ok(r)
    }

    fn template_cost(
        &self,
        t: &Template,
        purpose: messaging_core::Purpose,
        window_open: bool,
    ) -> Option<messaging_core::Cost> {
        let prices = self.prices.as_ref()?;
        let category = self
            .templates
            .get(&t.name, &t.language)
            .and_then(|d| d.category)
            .unwrap_or_else(|| PricingCategory::for_purpose(purpose));
        Some(prices.estimate(category, true, window_open))
    }

    async fn send_inner(
        &self,
        message: &OutboundMessage,
        to: &str,
        key: &str,
        window_open: bool,
    ) -> Result<SendReceipt, ChannelError> {
        let cb = message
            .notification_id
            .as_ref()
            .map(|n| n.as_str())
            .filter(|n| n.chars().count() <= payload::MAX_CALLBACK_DATA);
        if cb.is_none() && message.notification_id.is_some() {
            tracing::warn!(channel = %self.id, "notification id longer than 512 characters; reports will not carry it");
        }
        let content = &message.content;
        let template = content.template.as_ref();
        let mode = if message.force_template || !window_open {
            match template {
                Some(t) => Mode::Template(t),
                None if message.force_template => {
                    return Err(ChannelError::needs_template(
                        "a template is required but the content has none",
                    ));
                }
                None if self.enforce_window => {
                    return Err(ChannelError::needs_template(
                        "the 24-hour customer service window is closed and the content has no template",
                    ));
                }
                None => Mode::FreeForm,
            }
        } else {
            Mode::FreeForm
        };
        match mode {
            Mode::Template(t) => {
                let ids = self.send_template(to, t, cb).await?;
                if !window_open {
                    self.tier.record_business_initiated(key, self.clock.now());
                }
                self.receipt(ids, self.template_cost(t, message.purpose, window_open))
            }
            Mode::FreeForm => {
                let payloads = self.free_form_payloads(to, content, cb)?;
                match self.send_all(&payloads).await {
                    Ok(ids) => {
                        let cost = self
                            .prices
                            .as_ref()
                            .map(|p| p.estimate(PricingCategory::Service, false, true));
                        self.receipt(ids, cost)
                    }
                    Err(e) if e.kind() == ErrorKind::NeedsTemplate => {
                        if let Err(se) = self.windows.close(&self.id, key).await {
                            tracing::warn!(channel = %self.id, error = %se, "could not close the window");
                        }
                        let Some(t) = template else { return Err(e) };
                        tracing::info!(channel = %self.id, "window closed (131047); sending the template");
                        let ids = self.send_template(to, t, cb).await?;
                        self.tier.record_business_initiated(key, self.clock.now());
                        self.receipt(ids, self.template_cost(t, message.purpose, false))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}

#[async_trait]
impl Channel for WabaChannel {
    fn id(&self) -> &ChannelId {
        &self.id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::WhatsApp
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(payload::MAX_TEXT, TextUnit::Chars, Evidence::Read)
            .can_start_conversation(true)
            .templates(true)
            .buttons(true)
            .media(true)
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let to = recipient(&message.to)?;
        let key = whatsapp_window_key(&message.to)
            .ok_or_else(|| ChannelError::unreachable("no WhatsApp address"))?;
        let now = self.clock.now();
        let window_open = self.is_window_open(&message.to).await;
        if let Err(wait) = self.pair.try_acquire(&key, now) {
            return Err(ChannelError::rate_limited(
                "pair rate: too soon after the last message to this person",
                Some(wait),
            ));
        }
        let result = self
            .send_inner(message, &to, &key, window_open)
            .await
            .map_err(|e| self.redactor.redact_error(e));
        if let Err(e) = &result {
            if e.provider_code() != Some("131056") {
                self.pair.release(&key, now);
            }
            tracing::debug!(channel = %self.id, error = %e, "WhatsApp send failed");
        }
        result
    }
}

/// The channel as an event sink: give it to the webhook router (or the inbox) so that inbound
/// messages open the 24-hour window and 131047-style signals close it ([`WabaChannel::observe`]).
#[async_trait]
impl messaging_core::sink::EventSink for WabaChannel {
    async fn handle(&self, event: &Event) -> Result<(), messaging_core::sink::SinkError> {
        self.observe(event).await.map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_checks_settings_and_builds_urls() {
        let ch = WabaChannel::cloud_api("wa", "1055", "tok").build().unwrap();
        assert_eq!(
            ch.messages_url().as_str(),
            "https://graph.facebook.com/v24.0/1055/messages"
        );
        assert_eq!(ch.api_version(), DEFAULT_API_VERSION);
        let ch = WabaChannel::cloud_api("wa", "1055", "tok")
            .base_url("http://127.0.0.1:1/prefix")
            .api_version("v25.0")
            .build()
            .unwrap();
        assert_eq!(
            ch.messages_url().as_str(),
            "http://127.0.0.1:1/prefix/v25.0/1055/messages"
        );
        let d = WabaChannel::dialog360("wa", "key").build().unwrap();
        assert_eq!(
            d.messages_url().as_str(),
            "https://waba-v2.360dialog.io/messages"
        );
        assert!(matches!(
            WabaChannel::cloud_api("wa", "1", "t")
                .base_url("mailto:x@y")
                .build(),
            Err(ConfigError::BaseUrl(_))
        ));
        assert!(matches!(
            WabaChannel::cloud_api("wa", "1", "t")
                .base_url("not a url")
                .build(),
            Err(ConfigError::BaseUrl(_))
        ));
        assert!(
            WabaChannel::cloud_api("wa", "1", "t")
                .rate_limit(0)
                .build()
                .unwrap()
                .limiter
                .is_none()
        );
        assert!(matches!(
            WabaChannel::cloud_api("wa", " ", "t").build(),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            WabaChannel::cloud_api("wa", "1", "t")
                .api_version("v1/x")
                .build(),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_per_number_pace_never_exceeds_the_rate_in_a_sliding_second() {
        let ch = WabaChannel::cloud_api("wa", "1055", "tok")
            .rate_limit(20)
            .build()
            .unwrap();
        let limiter = ch.limiter.as_ref().unwrap();
        assert_eq!(
            limiter.interval(),
            Duration::from_secs(1) * (1000 + messaging_core::pace::MARGIN_PERMILLE) / 1000 / 20
        );
        let ch = Arc::new(ch);
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let ch = ch.clone();
            tasks.push(tokio::spawn(async move {
                let mut starts = Vec::new();
                for _ in 0..3 {
                    drop(ch.limiter.as_ref().unwrap().acquire().await);
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
        assert_eq!(starts.len(), 96);
        let most = messaging_core::pace::max_in_window(&starts, Duration::from_secs(1));
        assert!(most <= 20, "{most} messages in one second");
        let span = starts[95].duration_since(starts[0]).as_secs_f64();
        assert!(95.0 / span >= 0.95 * 20.0, "{} per second", 95.0 / span);
    }

    #[test]
    fn debug_never_prints_the_token() {
        let b = WabaChannel::cloud_api("wa", "1055", "EAAGsecret");
        assert!(!format!("{b:?}").contains("EAAGsecret"));
        let ch = b.build().unwrap();
        let d = format!("{ch:?}");
        assert!(!d.contains("EAAGsecret") && d.contains("redacted"), "{d}");
    }

    #[test]
    fn capabilities_and_recipients() {
        let ch = WabaChannel::dialog360("wa", "k").build().unwrap();
        let c = ch.capabilities();
        assert_eq!(c.max_text_len, 4096);
        assert_eq!(c.strongest_evidence, Evidence::Read);
        assert!(c.templates && c.buttons && c.media);
        assert_eq!(ch.kind(), ChannelKind::WhatsApp);
        assert!(recipient(&Address::Telegram(1)).is_err());
        assert!(recipient(&Address::WhatsApp(" ".into())).is_err());
        assert_eq!(
            whatsapp_window_key(&Address::WhatsApp("US.1349".into())).as_deref(),
            Some("wa:US.1349")
        );
    }
}
