//! The Telegram [`Channel`]: configuration, pacing and sending.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_core::pace::{KeyedPacer, Limit};
use messaging_core::text::split::{SplitConfig, split};
use messaging_core::{
    Address, AttachmentKind, Capabilities, Channel, ChannelError, ChannelId, ChannelKind, Clock,
    Content, Evidence, MediaSource, OutboundMessage, SendReceipt, SystemClock, TextUnit,
};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::api::BotApi;
use crate::keyboard::reply_markup;
use crate::{MAX_CAPTION_UTF16, MAX_TEXT_UTF16};

/// The production Bot API server.
pub const DEFAULT_BASE_URL: &str = "https://api.telegram.org";
/// Messages per second per bot unless configured (Telegram's guidance for bulk notices).
pub const DEFAULT_RATE_LIMIT: u32 = 30;
/// Messages in one chat unless configured: one per second (Telegram's guidance).
pub const DEFAULT_CHAT_RATE_LIMIT: Rate = Rate::per_second(1);
/// The timeout of one request unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A limit: at most `count` messages in any window of `per`.
///
/// The channel keeps under it by spacing messages evenly, `per / count` apart plus a 3 % margin
/// for network jitter, with no burst, so it reaches about 97 % of the rate. A message's turn
/// lasts until its answer is read: one that was slow to reach Telegram (a new connection, a
/// stall) holds back the messages that would otherwise land in the same window. A zero `count`
/// or `per` means no limit.
///
/// ```
/// use std::time::Duration;
/// use messaging_telegram::Rate;
/// let r = Rate::per_second(30);
/// assert_eq!(r.count, 30);
/// assert_eq!(r.per, Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// How many messages.
    pub count: u32,
    /// In what time.
    pub per: Duration,
}

impl Rate {
    /// `count` messages per second.
    pub const fn per_second(count: u32) -> Self {
        Rate {
            count,
            per: Duration::from_secs(1),
        }
    }

    /// `count` messages per minute (Telegram asks for at most 20 per minute in a group).
    pub const fn per_minute(count: u32) -> Self {
        Rate {
            count,
            per: Duration::from_secs(60),
        }
    }

    /// The limit the pacer keeps (`None`: no limit).
    fn limit(self) -> Option<Limit> {
        Limit::new(self.count, self.per)
    }
}

/// Why a channel could not be built. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The token is empty or has characters a Bot API token never has (it goes into the URL path).
    #[error("the Telegram bot token is malformed (expected something like 123456:ABC-DEF...)")]
    InvalidToken,
    /// The base URL is not an absolute http(s) URL.
    #[error("invalid Bot API base URL {0:?}")]
    InvalidBaseUrl(String),
    /// The default HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Builds a [`TelegramChannel`]; see [`TelegramChannel::builder`].
pub struct TelegramBuilder {
    id: ChannelId,
    token: SecretString,
    token_ok: bool,
    client: Option<reqwest::Client>,
    base_url: String,
    test_environment: bool,
    rate_limit: u32,
    chat_rate_limit: Option<Rate>,
    timeout: Duration,
    max_parts: usize,
    part_pause: (Duration, Duration),
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for TelegramBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramBuilder")
            .field("id", &self.id)
            .field("token", &"[redacted]")
            .field("base_url", &self.base_url)
            .field("test_environment", &self.test_environment)
            .field("rate_limit", &self.rate_limit)
            .field("chat_rate_limit", &self.chat_rate_limit)
            .field("timeout", &self.timeout)
            .field("max_parts", &self.max_parts)
            .field("part_pause", &self.part_pause)
            .field("clock", &self.clock)
            .finish()
    }
}

impl TelegramBuilder {
    /// Uses your own HTTP client (proxies, pools, TLS roots) instead of the default one. Keep
    /// TLS verification on. [`timeout`](Self::timeout) still applies to each request.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The Bot API server (default [`DEFAULT_BASE_URL`]); a local Bot API server or a fake one.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Talks to Telegram's test environment (`/bot<token>/test/<method>`): a separate set of
    /// users and bots, for trying things without real recipients.
    pub fn test_environment(mut self, yes: bool) -> Self {
        self.test_environment = yes;
        self
    }

    /// Messages per second through this bot, across all chats (default
    /// [`DEFAULT_RATE_LIMIT`], Telegram's 30); 0 turns this pacing off.
    ///
    /// The send waits for its turn rather than failing. Messages are spaced evenly (see
    /// [`Rate`]) and a message's start time satisfies this limit and the chat's
    /// ([`chat_rate_limit`](Self::chat_rate_limit)) at once, so a message held back by its
    /// chat's pace does not hold up other chats. The pacing is in-process and shared by clones
    /// of the channel: several instances of one bot share Telegram's limit, so give each a
    /// share; the 429 `retry_after` still applies.
    ///
    /// ```
    /// use messaging_telegram::TelegramChannel;
    /// let tg = TelegramChannel::builder("tg", "123456:ABC-DEF").rate_limit(10).build().unwrap();
    /// assert!(format!("{tg:?}").contains("rate_limit: 10"));
    /// ```
    pub fn rate_limit(mut self, n: u32) -> Self {
        self.rate_limit = n;
        self
    }

    /// Messages in one chat (default [`DEFAULT_CHAT_RATE_LIMIT`], one per second; Telegram asks
    /// for at most 20 per minute in a group: [`Rate::per_minute`]`(20)`); `None` turns this
    /// pacing off.
    ///
    /// ```
    /// use messaging_telegram::{Rate, TelegramChannel};
    /// let groups = TelegramChannel::builder("tg", "123456:ABC-DEF")
    ///     .chat_rate_limit(Some(Rate::per_minute(20)))
    ///     .build()
    ///     .unwrap();
    /// # let _ = groups;
    /// ```
    pub fn chat_rate_limit(mut self, rate: Option<Rate>) -> Self {
        self.chat_rate_limit = rate;
        self
    }

    /// The timeout of one request (default [`DEFAULT_TIMEOUT`]), with your client too; long
    /// polls wait their own time on top.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many messages one long text may become (default 10).
    pub fn max_parts(mut self, n: usize) -> Self {
        self.max_parts = n.max(1);
        self
    }

    /// The pause between the parts of a split text, moved by up to `jitter` either way
    /// (default none: the per-chat pace already spaces them).
    pub fn part_pause(mut self, pause: Duration, jitter: Duration) -> Self {
        self.part_pause = (pause, jitter);
        self
    }

    /// Reads the time from `clock` (default: the system clock): a receipt is dated by it when
    /// Telegram's answer carries no `date`, and so are button presses the [`LongPoller`]
    /// receives (a `callback_query` has no time of its own).
    ///
    /// [`LongPoller`]: crate::LongPoller
    ///
    /// ```
    /// use std::sync::Arc;
    /// use messaging_core::ManualClock;
    /// use messaging_telegram::TelegramChannel;
    /// let tg = TelegramChannel::builder("tg", "123456:ABC-DEF")
    ///     .clock(Arc::new(ManualClock::at_unix(1_700_000_000)))
    ///     .build()
    ///     .unwrap();
    /// # let _ = tg;
    /// ```
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the channel.
    pub fn build(self) -> Result<TelegramChannel, ConfigError> {
        if !self.token_ok {
            return Err(ConfigError::InvalidToken);
        }
        let parsed = url::Url::parse(&self.base_url)
            .map_err(|_| ConfigError::InvalidBaseUrl(self.base_url.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(ConfigError::InvalidBaseUrl(self.base_url));
        }
        // No overall timeout on the default client: each call sets its own (long polls wait).
        let client = messaging_http::ClientConfig::new()
            .client(self.client)
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(TelegramChannel {
            inner: Arc::new(Inner {
                id: self.id,
                api: BotApi::new(
                    client,
                    self.base_url,
                    self.token,
                    self.test_environment,
                    self.clock.clone(),
                ),
                pace: KeyedPacer::new(
                    Rate::per_second(self.rate_limit).limit(),
                    self.chat_rate_limit.and_then(Rate::limit),
                ),
                rate_limit: self.rate_limit,
                chat_rate_limit: self.chat_rate_limit,
                timeout: self.timeout,
                max_parts: self.max_parts,
                split: SplitConfig::for_kind(ChannelKind::Telegram)
                    .max(MAX_TEXT_UTF16)
                    .pause(self.part_pause.0, self.part_pause.1),
                clock: self.clock,
            }),
        })
    }
}

fn token_looks_valid(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

struct Inner {
    id: ChannelId,
    api: BotApi,
    pace: KeyedPacer<i64>,
    rate_limit: u32,
    chat_rate_limit: Option<Rate>,
    timeout: Duration,
    max_parts: usize,
    split: SplitConfig,
    /// Dates what Telegram sends without a time.
    clock: Arc<dyn Clock>,
}

/// A Telegram bot as a cascade [`Channel`]. Cheap to clone; clones share the pacing.
///
/// ```no_run
/// use messaging_core::{Address, Button, Channel, Content, OutboundMessage, Purpose};
/// use messaging_telegram::TelegramChannel;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let tg = TelegramChannel::builder("tg", "123456:ABC-DEF").build()?;
/// let content = Content::text("Анна, приём завтра в 10:00. Придёте?")
///     .with_button(Button::reply("Да", "confirm:42"))
///     .with_button(Button::reply("Нет", "cancel:42"));
/// let receipt = tg
///     .send(&OutboundMessage::new(Address::Telegram(123456789), content, Purpose::Service))
///     .await?;
/// # let _ = receipt; Ok(()) }
/// ```
#[derive(Clone)]
pub struct TelegramChannel {
    inner: Arc<Inner>,
}

impl fmt::Debug for TelegramChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramChannel")
            .field("id", &self.inner.id)
            .field("api", &self.inner.api)
            .field("rate_limit", &self.inner.rate_limit)
            .field("chat_rate_limit", &self.inner.chat_rate_limit)
            .field("max_parts", &self.inner.max_parts)
            .finish()
    }
}

/// The bot itself, as `getMe` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// The bot's user id.
    pub id: i64,
    /// The bot's display name.
    pub first_name: String,
    /// The bot's `@username`, without the `@` (what deep links use).
    pub username: Option<String>,
}

/// One Bot API request of a send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiRequest {
    pub(crate) method: &'static str,
    pub(crate) body: Value,
    /// The pause before this request (the splitter's rhythm between parts).
    pub(crate) delay: Duration,
}

fn media_ref(source: &MediaSource) -> String {
    match source {
        MediaSource::Link(u) => u.as_str().to_owned(),
        MediaSource::Id(id) => id.clone(),
    }
}

/// The Bot API requests that send `content` to `chat_id`: the text (split by the core splitter
/// past 4096 UTF-16 units), then one request per attachment. The markup goes on the last text
/// part, or on the last attachment when there is no text.
pub(crate) fn plan_send(
    content: &Content,
    chat_id: i64,
    max_parts: usize,
    split_config: &SplitConfig,
) -> Result<Vec<ApiRequest>, ChannelError> {
    let text = content.text_for(ChannelKind::Telegram);
    let markup = reply_markup(&content.buttons)?;
    let mut requests = Vec::new();
    if !text.trim().is_empty() {
        let parts = split(text, split_config).map_err(|e| {
            ChannelError::invalid_content(format!("cannot split the text for Telegram: {e}"))
        })?;
        if parts.len() > max_parts {
            return Err(ChannelError::invalid_content(format!(
                "text of {} UTF-16 units needs {} Telegram messages, more than the {max_parts} allowed",
                text.encode_utf16().count(),
                parts.len()
            )));
        }
        for part in parts {
            let mut body = json!({ "chat_id": chat_id, "text": part.text });
            if !content.link_preview {
                body["link_preview_options"] = json!({ "is_disabled": true });
            }
            requests.push(ApiRequest {
                method: "sendMessage",
                body,
                delay: part.delay,
            });
        }
    }
    for a in &content.attachments {
        let (method, field) = match a.kind {
            AttachmentKind::Image => ("sendPhoto", "photo"),
            AttachmentKind::Document => ("sendDocument", "document"),
            _ => {
                return Err(ChannelError::invalid_content(
                    "an attachment kind Telegram does not support",
                ));
            }
        };
        let mut body = json!({ "chat_id": chat_id, field: media_ref(&a.source) });
        if let Some(c) = a.caption.as_deref().filter(|c| !c.is_empty()) {
            if c.encode_utf16().count() > MAX_CAPTION_UTF16 {
                return Err(ChannelError::invalid_content(format!(
                    "a Telegram caption holds at most {MAX_CAPTION_UTF16} UTF-16 units"
                )));
            }
            body["caption"] = json!(c);
        }
        requests.push(ApiRequest {
            method,
            body,
            delay: Duration::ZERO,
        });
    }
    if requests.is_empty() {
        return Err(ChannelError::invalid_content(
            "nothing to send: the text is empty and there are no attachments",
        ));
    }
    if let Some(markup) = markup {
        let text_parts = requests
            .iter()
            .filter(|r| r.method == "sendMessage")
            .count();
        let idx = if text_parts > 0 {
            text_parts - 1
        } else {
            requests.len() - 1
        };
        if let Some(r) = requests.get_mut(idx) {
            r.body["reply_markup"] = markup;
        }
    }
    Ok(requests)
}

fn message_id(result: &Value) -> Option<i64> {
    result.get("message_id").and_then(Value::as_i64)
}

impl TelegramChannel {
    /// Starts configuring a bot: its channel id (`"tg"`) and its token from @BotFather.
    ///
    /// ```
    /// use std::time::Duration;
    /// use messaging_telegram::TelegramChannel;
    /// let tg = TelegramChannel::builder("tg", "123456:ABC-DEF")
    ///     .test_environment(true)
    ///     .rate_limit(30)
    ///     .timeout(Duration::from_secs(10))
    ///     .build()
    ///     .unwrap();
    /// assert!(!format!("{tg:?}").contains("ABC-DEF"));
    /// assert!(TelegramChannel::builder("tg", "bad/token").build().is_err());
    /// ```
    pub fn builder(id: impl Into<ChannelId>, token: impl Into<String>) -> TelegramBuilder {
        let token: String = token.into();
        let token_ok = token_looks_valid(&token);
        TelegramBuilder {
            id: id.into(),
            token: SecretString::from(token),
            token_ok,
            client: None,
            base_url: DEFAULT_BASE_URL.to_owned(),
            test_environment: false,
            rate_limit: DEFAULT_RATE_LIMIT,
            chat_rate_limit: Some(DEFAULT_CHAT_RATE_LIMIT),
            timeout: DEFAULT_TIMEOUT,
            max_parts: 10,
            part_pause: (Duration::ZERO, Duration::ZERO),
            clock: Arc::new(SystemClock),
        }
    }

    /// The Bot API base URL in use (without the token).
    pub fn base_url(&self) -> &str {
        self.inner.api.base()
    }

    /// Whether the channel talks to Telegram's test environment.
    pub fn is_test_environment(&self) -> bool {
        self.inner.api.test_env()
    }

    /// Calls any Bot API method with a JSON body and returns its `result`, mapping failures like
    /// `send` does. Not paced: use it for administrative calls.
    pub async fn call(
        &self,
        method: &str,
        params: &Value,
        timeout: Duration,
    ) -> Result<Value, ChannelError> {
        self.inner.api.call(method, params, timeout).await
    }

    /// The clock that dates what Telegram sends without a time.
    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// `getMe`: checks the token and tells the bot's username (for deep links).
    pub async fn get_me(&self) -> Result<User, ChannelError> {
        let r = self.call("getMe", &json!({}), self.inner.timeout).await?;
        let id = r
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| ChannelError::unexpected("getMe answered without a user id"))?;
        Ok(User {
            id,
            first_name: r
                .get("first_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            username: r.get("username").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// `setWebhook`: Telegram will POST updates to `url`, with `secret` in the
    /// `X-Telegram-Bot-Api-Secret-Token` header when given (1-256 of `A-Z a-z 0-9 _ -`).
    pub async fn set_webhook(&self, url: &str, secret: Option<&str>) -> Result<(), ChannelError> {
        let mut params = json!({ "url": url });
        if let Some(s) = secret {
            params["secret_token"] = json!(s);
        }
        let scrub = messaging_http::Redactor::new().secrets(secret);
        self.call("setWebhook", &params, self.inner.timeout)
            .await
            .map(|_| ())
            .map_err(|e| scrub.redact_error(e))
    }

    /// `deleteWebhook` (long polling does not work while a webhook is set).
    pub async fn delete_webhook(&self) -> Result<(), ChannelError> {
        self.call("deleteWebhook", &json!({}), self.inner.timeout)
            .await
            .map(|_| ())
    }

    /// `answerCallbackQuery`: stops the spinner on a pressed inline button. The callback id is
    /// the `provider_message_id` of the inbound button press.
    pub async fn answer_callback_query(
        &self,
        callback_query_id: &str,
        text: Option<&str>,
    ) -> Result<(), ChannelError> {
        let mut params = json!({ "callback_query_id": callback_query_id });
        if let Some(t) = text {
            params["text"] = json!(t);
        }
        self.call("answerCallbackQuery", &params, self.inner.timeout)
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Channel for TelegramChannel {
    fn id(&self) -> &ChannelId {
        &self.inner.id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(MAX_TEXT_UTF16, TextUnit::Utf16, Evidence::Accepted)
            .max_parts(self.inner.max_parts)
            .can_start_conversation(false)
            .buttons(true)
            .media(true)
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let chat_id = match &message.to {
            Address::Telegram(id) => *id,
            other => {
                return Err(ChannelError::unreachable(format!(
                    "no Telegram chat id for this person (got a {} address)",
                    match other {
                        Address::Phone(_) => "phone",
                        Address::WhatsApp(_) => "WhatsApp",
                        _ => "non-Telegram",
                    }
                )));
            }
        };
        let requests = plan_send(
            &message.content,
            chat_id,
            self.inner.max_parts,
            &self.inner.split,
        )?;
        let total = requests.len();
        let mut ids = Vec::with_capacity(total);
        let mut accepted_at: Option<DateTime<Utc>> = None;
        for (i, req) in requests.into_iter().enumerate() {
            if !req.delay.is_zero() {
                tokio::time::sleep(req.delay).await;
            }
            // Held until the answer is read: its time bounds when Telegram counted the message.
            let permit = self.inner.pace.acquire(chat_id).await;
            let answer = self
                .inner
                .api
                .call(req.method, &req.body, self.inner.timeout)
                .await;
            drop(permit);
            let result = match answer {
                Ok(r) => r,
                Err(err) if i > 0 => {
                    tracing::warn!(
                        channel = %self.inner.id,
                        sent = i,
                        total,
                        kind = %err.kind(),
                        "telegram send failed after some parts were accepted"
                    );
                    // The person has part of the message: sending it again repeats those
                    // parts, so the engine must treat it as possibly sent, not as refused.
                    return Err(ChannelError::outcome_unknown(format!(
                        "{i} of {total} parts were accepted before: {}",
                        err.message()
                    )));
                }
                Err(err) => return Err(err),
            };
            let Some(mid) = message_id(&result) else {
                return Err(messaging_http::unreadable_success(
                    &format!("telegram {}", req.method),
                    "ok without a message_id",
                ));
            };
            if accepted_at.is_none() {
                accepted_at = result
                    .get("date")
                    .and_then(Value::as_i64)
                    .and_then(|d| DateTime::from_timestamp(d, 0));
            }
            ids.push(format!("{chat_id}:{mid}"));
        }
        let mut ids = ids.into_iter();
        let first = ids
            .next()
            .ok_or_else(|| ChannelError::unexpected("nothing was sent"))?;
        let accepted_at = accepted_at.unwrap_or_else(|| self.inner.clock.now());
        let mut receipt = SendReceipt::new(first, accepted_at).parts(total as u32);
        for id in ids {
            receipt = receipt.extra_id(id);
        }
        tracing::debug!(channel = %self.inner.id, parts = total, "telegram message accepted");
        Ok(receipt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::{Attachment, Button, ErrorKind};

    fn cfg() -> SplitConfig {
        SplitConfig::for_kind(ChannelKind::Telegram)
            .max(MAX_TEXT_UTF16)
            .pause(Duration::ZERO, Duration::ZERO)
    }

    #[test]
    fn plan_plain_text_disables_previews() {
        let r = plan_send(&Content::text("hi https://example.com"), 42, 10, &cfg()).expect("plan");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].method, "sendMessage");
        assert_eq!(r[0].body["chat_id"], 42);
        assert_eq!(r[0].body["link_preview_options"]["is_disabled"], true);
        let mut c = Content::text("hi https://example.com");
        c.link_preview = true;
        let r = plan_send(&c, 42, 10, &cfg()).expect("plan");
        assert!(r[0].body.get("link_preview_options").is_none());
    }

    #[test]
    fn plan_long_text_puts_markup_on_the_last_part() {
        let c = Content::text("word ".repeat(2000)).with_button(Button::reply("Yes", "y"));
        let r = plan_send(&c, 1, 10, &cfg()).expect("plan");
        assert_eq!(r.len(), 3);
        assert!(r[0].body.get("reply_markup").is_none());
        assert!(r[2].body.get("reply_markup").is_some());
        for req in &r {
            let t = req.body["text"].as_str().expect("text");
            assert!(t.encode_utf16().count() <= MAX_TEXT_UTF16);
        }
        let too_many = plan_send(&c, 1, 2, &cfg()).expect_err("too many parts");
        assert_eq!(too_many.kind(), ErrorKind::InvalidContent);
    }

    #[test]
    fn plan_media_and_empty() {
        let url = url::Url::parse("https://example.com/result.pdf").expect("url");
        let mut c = Content::text("");
        c.attachments.push(Attachment {
            kind: AttachmentKind::Document,
            source: MediaSource::Link(url),
            caption: Some("Your results".into()),
            filename: None,
        });
        let r = plan_send(&c, 7, 10, &cfg()).expect("plan");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].method, "sendDocument");
        assert_eq!(r[0].body["document"], "https://example.com/result.pdf");
        assert_eq!(r[0].body["caption"], "Your results");
        let empty = plan_send(&Content::text("  "), 7, 10, &cfg()).expect_err("empty");
        assert_eq!(empty.kind(), ErrorKind::InvalidContent);
    }

    #[test]
    fn split_parts_carry_the_configured_pause() {
        let c = Content::text("word ".repeat(2000));
        let paused = SplitConfig::for_kind(ChannelKind::Telegram)
            .max(MAX_TEXT_UTF16)
            .pause(Duration::from_secs(2), Duration::ZERO);
        let r = plan_send(&c, 1, 10, &paused).expect("plan");
        assert_eq!(r[0].delay, Duration::ZERO);
        assert!(r[1..].iter().all(|x| x.delay == Duration::from_secs(2)));
        let r = plan_send(&c, 1, 10, &cfg()).expect("plan");
        assert!(r.iter().all(|x| x.delay.is_zero()));
    }

    #[test]
    fn rate_limit() {
        assert!(Rate::per_second(0).limit().is_none());
        assert!(
            Rate {
                count: 1,
                per: Duration::ZERO
            }
            .limit()
            .is_none()
        );
        assert_eq!(
            Rate::per_second(30).limit().map(Limit::interval),
            Some(Duration::from_nanos(34_333_333))
        );
        assert_eq!(
            Rate::per_minute(20).limit().map(Limit::interval),
            Some(Duration::from_millis(3090))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn default_pacing_keeps_telegrams_limits_in_every_sliding_second() {
        let tg = TelegramChannel::builder("tg", "1:A")
            .build()
            .expect("build");
        assert_eq!(
            tg.inner.pace.limits(),
            (Rate::per_second(30).limit(), Rate::per_second(1).limit())
        );
        let mut tasks = Vec::new();
        for w in 0..40i64 {
            let tg = tg.clone();
            tasks.push(tokio::spawn(async move {
                let mut sent = Vec::new();
                for k in 0..3 {
                    // 40 workers, 3 messages each, to 20 chats: chats get several messages.
                    let chat = (w + k * 7) % 20;
                    drop(tg.inner.pace.acquire(chat).await);
                    sent.push((tokio::time::Instant::now(), chat));
                }
                sent
            }));
        }
        let mut sent = Vec::new();
        for t in tasks {
            sent.extend(t.await.expect("task"));
        }
        sent.sort();
        let starts: Vec<_> = sent.iter().map(|(t, _)| *t).collect();
        let most = messaging_core::pace::max_in_window(&starts, Duration::from_secs(1));
        assert!(most <= 30, "{most} messages in one second");
        let mut last = std::collections::HashMap::new();
        for (t, chat) in &sent {
            if let Some(prev) = last.insert(*chat, *t) {
                assert!(
                    t.duration_since(prev) >= Duration::from_secs(1),
                    "chat {chat}"
                );
            }
        }
        let unlimited = TelegramChannel::builder("tg", "1:A")
            .rate_limit(0)
            .chat_rate_limit(None)
            .build()
            .expect("build");
        assert_eq!(unlimited.inner.pace.limits(), (None, None));
    }

    #[test]
    fn builder_refuses_bad_input_without_echoing_the_token() {
        let e = TelegramChannel::builder("tg", "12345:secret/../x")
            .build()
            .expect_err("bad token");
        assert!(!e.to_string().contains("secret"));
        assert!(!format!("{e:?}").contains("secret"));
        assert!(matches!(
            TelegramChannel::builder("tg", "1:A")
                .base_url("ftp://x")
                .build(),
            Err(ConfigError::InvalidBaseUrl(_))
        ));
        let b = TelegramChannel::builder("tg", "1:SECRETTOKEN");
        assert!(!format!("{b:?}").contains("SECRETTOKEN"));
    }

    #[test]
    fn capabilities() {
        let tg = TelegramChannel::builder("tg", "1:A")
            .build()
            .expect("build");
        let c = tg.capabilities();
        assert_eq!(c.max_text_len, 4096);
        assert_eq!(c.text_unit, TextUnit::Utf16);
        assert_eq!(c.strongest_evidence, Evidence::Accepted);
        assert!(!c.can_start_conversation);
        assert!(c.buttons);
    }
}
