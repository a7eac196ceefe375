//! The `Channel` behaviour suite: what every adapter must do, checked against the adapter's fake
//! provider server. You give it a channel wired to a fake server and a small handle to script
//! that server ([`FakeProvider`]); it sends through the public [`Channel`] API and asserts on
//! what comes back and on what the server saw.
//!
//! | check | what it asserts |
//! |---|---|
//! | [`sends_text`] | a text gives a receipt with a provider message id, one part, one request carrying the text |
//! | [`sends_template`] | (channels with templates) a forced template goes as that template and gives a receipt |
//! | [`splits_long_text`] | a text longer than one message goes in parts within `max_parts`, each part within `max_text_len`, nothing lost; SMS: one request, `parts` = segments |
//! | [`refuses_text_beyond_capacity`] | a text that does not fit `capabilities()` is refused as `InvalidContent` without a request |
//! | [`rate_limit_is_rate_limited`] | the provider's rate-limit answer gives `RateLimited`, temporary, with the wait it stated |
//! | [`server_error_is_temporary`] | a 5xx gives `Temporary`; the next send goes through |
//! | [`bad_credentials_are_channel_down`] | (fakes that can) the provider's auth refusal gives `ChannelDown` |
//! | [`secrets_stay_hidden`] | no secret in the channel's `Debug`, nor in `Display`/`Debug`/sources of any error above |
//!
//! Configure the channel so that the checks reach the server at once: no client-side pacing
//! between parts or per person, a short request timeout, and (WhatsApp) an open 24-hour window
//! for [`SuiteConfig::to`] or window enforcement off. Each check of [`run_all`] gets a fresh
//! channel and server from your factory.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use messaging_core::testkit::StubChannel;
//! use messaging_core::testkit::channel_suite::{self, FakeProvider, SentRequest, SuiteConfig};
//! use messaging_core::*;
//!
//! /// A "server" for the stub channel: it scripts the stub and reads back what the stub sent.
//! struct Stub(Arc<StubChannel>);
//!
//! impl FakeProvider for Stub {
//!     fn answer_rate_limited(&self, wait: Duration) -> bool {
//!         self.0.push_error(ChannelError::rate_limited("429", Some(wait)));
//!         true
//!     }
//!     fn answer_server_error(&self, status: u16) {
//!         self.0.push_error(ChannelError::temporary(format!("HTTP {status}")));
//!     }
//!     fn send_requests(&self) -> Vec<SentRequest> {
//!         self.0.sent().iter().map(|m| SentRequest::text(m.content.text.to_string())).collect()
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = SuiteConfig::new(Address::Telegram(42));
//! let tg = Arc::new(StubChannel::new("tg", ChannelKind::Telegram));
//! let fake = Stub(tg.clone());
//! channel_suite::sends_text(&*tg, &fake, &config).await;
//! channel_suite::server_error_is_temporary(&*tg, &fake, &config).await;
//! # });
//! ```

use std::future::Future;
use std::time::Duration;

use crate::channel::{Channel, OutboundMessage, SendReceipt};
use crate::content::{Content, Template};
use crate::error::{ChannelError, ErrorKind};
use crate::model::{Address, Purpose};
use crate::text::TextUnit;

/// One send request the fake server received, reduced to what the suite compares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentRequest {
    /// The message text (or SMS body) the request carried, if any.
    pub text: Option<String>,
    /// The name of the template the request carried, if any.
    pub template: Option<String>,
}

impl SentRequest {
    /// A request carrying `text` (`None`: no text).
    pub fn text(text: impl Into<Option<String>>) -> Self {
        SentRequest {
            text: text.into(),
            template: None,
        }
    }

    /// A request carrying the template `name`.
    pub fn template(name: impl Into<String>) -> Self {
        SentRequest {
            text: None,
            template: Some(name.into()),
        }
    }
}

/// The handle on an adapter's fake provider server the suite scripts and reads back. Implement
/// it over your fake (an axum server, a mock): each method scripts the **next send request**
/// only; later requests are answered normally.
pub trait FakeProvider: Send + Sync {
    /// Makes the next send request get the provider's rate-limit answer, stating a wait of
    /// `retry_after` where the provider's answer can state one. Returns whether it did (when
    /// `false`, only the kind of the error is checked).
    fn answer_rate_limited(&self, retry_after: Duration) -> bool;

    /// Makes the next send request get a server error with HTTP `status` (a 5xx).
    fn answer_server_error(&self, status: u16);

    /// Makes the next send request get the provider's answer to wrong credentials. Returns
    /// `false` when the fake cannot (the check is then skipped). Default: `false`.
    fn answer_unauthorized(&self) -> bool {
        false
    }

    /// Every send request received so far, oldest first, answered or refused (one per part
    /// when a text goes in parts).
    fn send_requests(&self) -> Vec<SentRequest>;
}

/// Who the suite sends to, the secrets that must never show, and (channels with templates) a
/// template the fake accepts.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SuiteConfig {
    /// The address every check sends to.
    pub to: Address,
    /// Tokens, passwords and keys the channel was built with.
    pub secrets: Vec<String>,
    /// A template for [`sends_template`] (required when the channel declares templates).
    pub template: Option<Template>,
}

impl SuiteConfig {
    /// Sends to `to`; no secrets, no template.
    pub fn new(to: Address) -> Self {
        SuiteConfig {
            to,
            secrets: Vec::new(),
            template: None,
        }
    }

    /// Adds a secret that must never show in `Debug` or errors.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// Sets the template [`sends_template`] sends.
    pub fn template(mut self, template: Template) -> Self {
        self.template = Some(template);
        self
    }
}

fn message(config: &SuiteConfig, content: Content) -> OutboundMessage {
    OutboundMessage::new(config.to.clone(), content, Purpose::Service)
}

fn error_text(e: &ChannelError) -> String {
    let mut s = format!("{e} {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(x) = source {
        s.push_str(&format!(" {x} {x:?}"));
        source = x.source();
    }
    s
}

fn assert_hidden(what: &str, text: &str, config: &SuiteConfig) {
    for secret in config.secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !text.contains(secret.as_str()),
            "{what} shows a secret: {text}"
        );
    }
}

fn assert_receipt(what: &str, r: &SendReceipt) {
    assert!(
        !r.provider_message_id.as_str().trim().is_empty(),
        "{what}: the receipt has no provider message id"
    );
    assert!(r.parts >= 1, "{what}: a receipt counts at least one part");
}

async fn send<C: Channel + ?Sized>(channel: &C, what: &str, msg: &OutboundMessage) -> SendReceipt {
    match channel.send(msg).await {
        Ok(r) => r,
        Err(e) => panic!("{what}: the send failed: {e}"),
    }
}

async fn refused<C: Channel + ?Sized>(
    channel: &C,
    config: &SuiteConfig,
    what: &str,
    msg: &OutboundMessage,
) -> ChannelError {
    match channel.send(msg).await {
        Ok(r) => panic!("{what}: expected an error, got a receipt {r:?}"),
        Err(e) => {
            assert_hidden(&format!("{what}: the error"), &error_text(&e), config);
            e
        }
    }
}

/// The requests the server got since `before` of them.
fn new_requests<P: FakeProvider + ?Sized>(fake: &P, before: usize) -> Vec<SentRequest> {
    fake.send_requests().into_iter().skip(before).collect()
}

/// A text of `n` units of `unit` or more (whole words, Cyrillic, so SMS counts UCS-2).
fn words_of_at_least(unit: TextUnit, n: usize) -> String {
    const WORD: &str = " приём";
    let mut text = String::from("Анна,");
    if unit != TextUnit::SmsSegments {
        // Characters and UTF-16 units add up word by word: no need to measure each step.
        let missing = n.saturating_sub(unit.measure(&text));
        text.push_str(&WORD.repeat(missing.div_ceil(unit.measure(WORD))));
    }
    while unit.measure(&text) < n {
        text.push_str(WORD);
    }
    text
}

/// Sends a short text: a receipt with a provider message id and one part, no extra ids, and
/// exactly one request carrying the text as given.
pub async fn sends_text<C, P>(channel: &C, fake: &P, config: &SuiteConfig)
where
    C: Channel + ?Sized,
    P: FakeProvider + ?Sized,
{
    let text = "Анна, напоминаем: приём завтра в 10:00. Придёте?";
    let before = fake.send_requests().len();
    let r = send(
        channel,
        "a short text",
        &message(config, Content::text(text)),
    )
    .await;
    assert_receipt("a short text", &r);
    assert_eq!(r.parts, 1, "a short text is one part");
    assert!(
        r.extra_message_ids.is_empty(),
        "a short text has no extra ids"
    );
    let sent = new_requests(fake, before);
    assert_eq!(sent.len(), 1, "a short text is one request: {sent:?}");
    assert_eq!(
        sent[0].text.as_deref(),
        Some(text),
        "the request carries the text as given"
    );
}

/// For a channel whose capabilities declare templates: content with [`SuiteConfig::template`]
/// sent with `force_template` goes as that template, in one request, and gives a receipt.
/// Channels without templates pass.
///
/// # Panics
///
/// Also when the channel declares templates and the config has none.
pub async fn sends_template<C, P>(channel: &C, fake: &P, config: &SuiteConfig)
where
    C: Channel + ?Sized,
    P: FakeProvider + ?Sized,
{
    if !channel.capabilities().templates {
        return;
    }
    let template = config
        .template
        .clone()
        .expect("the channel declares templates: give the suite one (SuiteConfig::template)");
    let name = template.name.clone();
    let before = fake.send_requests().len();
    let content = Content::text("Анна, приём завтра в 10:00").with_template(template);
    let r = send(
        channel,
        "a template",
        &message(config, content).force_template(true),
    )
    .await;
    assert_receipt("a template", &r);
    let sent = new_requests(fake, before);
    assert_eq!(sent.len(), 1, "a template is one request: {sent:?}");
    assert_eq!(
        sent[0].template.as_deref(),
        Some(name.as_str()),
        "the request carries the template"
    );
}

/// A text longer than one message goes in parts within the channel's capabilities:
///
/// * counted in characters or UTF-16 units, with `max_parts` ≥ 2: a text of one and a half
///   messages goes as 2..=`max_parts` requests, one per part, each within `max_text_len`, their
///   words together the text's words in order; the receipt counts the parts and lists one
///   distinct extra id per further part;
/// * counted in SMS segments: a text of two segments goes in one request (the operator joins the
///   segments) and the receipt counts the segments;
/// * channels of one part: a text of exactly `max_text_len` goes in one request.
pub async fn splits_long_text<C, P>(channel: &C, fake: &P, config: &SuiteConfig)
where
    C: Channel + ?Sized,
    P: FakeProvider + ?Sized,
{
    let caps = channel.capabilities();
    let unit = caps.text_unit;
    let before = fake.send_requests().len();
    if unit == TextUnit::SmsSegments {
        if caps.max_text_len < 2 {
            return;
        }
        let text = words_of_at_least(unit, 2);
        let segments = unit.measure(&text);
        assert!(segments >= 2, "the test text is {segments} segments");
        let r = send(
            channel,
            "a long SMS",
            &message(config, Content::text(&text)),
        )
        .await;
        assert_receipt("a long SMS", &r);
        assert_eq!(
            r.parts as usize, segments,
            "the receipt counts the SMS segments"
        );
        let sent = new_requests(fake, before);
        assert_eq!(sent.len(), 1, "an SMS of several segments is one request");
        assert_eq!(sent[0].text.as_deref(), Some(text.as_str()));
        return;
    }
    if caps.max_parts < 2 {
        let text = "я".repeat(caps.max_text_len);
        assert_eq!(unit.measure(&text), caps.max_text_len);
        let r = send(
            channel,
            "a text of exactly max_text_len",
            &message(config, Content::text(&text)),
        )
        .await;
        assert_receipt("a text of exactly max_text_len", &r);
        assert_eq!(r.parts, 1);
        assert_eq!(new_requests(fake, before).len(), 1);
        return;
    }
    let text = words_of_at_least(unit, caps.max_text_len + caps.max_text_len / 2);
    let r = send(
        channel,
        "a long text",
        &message(config, Content::text(&text)),
    )
    .await;
    assert_receipt("a long text", &r);
    let parts = r.parts as usize;
    assert!(
        (2..=caps.max_parts).contains(&parts),
        "a text of 1.5 messages went in {parts} parts (max_parts {})",
        caps.max_parts
    );
    assert_eq!(
        r.extra_message_ids.len(),
        parts - 1,
        "one extra id per further part"
    );
    let mut ids: Vec<&str> = std::iter::once(&r.provider_message_id)
        .chain(&r.extra_message_ids)
        .map(|i| i.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), parts, "every part has its own id");
    let sent = new_requests(fake, before);
    assert_eq!(sent.len(), parts, "one request per part");
    let mut words = Vec::new();
    for (i, req) in sent.iter().enumerate() {
        let part = req
            .text
            .as_deref()
            .unwrap_or_else(|| panic!("part {i} has no text"));
        assert!(
            unit.measure(part) <= caps.max_text_len,
            "part {i} is {} units, over max_text_len {}",
            unit.measure(part),
            caps.max_text_len
        );
        words.extend(part.split_whitespace().map(str::to_owned));
    }
    let expected: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words, expected, "the parts together are the text");
}

/// A text the channel's capabilities say does not fit (more than `max_text_len` ×
/// `max_parts`, or more SMS segments than `max_text_len`) is refused as `InvalidContent` before
/// any request.
pub async fn refuses_text_beyond_capacity<C, P>(channel: &C, fake: &P, config: &SuiteConfig)
where
    C: Channel + ?Sized,
    P: FakeProvider + ?Sized,
{
    let caps = channel.capabilities();
    let unit = caps.text_unit;
    let capacity = match unit {
        TextUnit::SmsSegments => caps.max_text_len,
        _ => caps.max_text_len.saturating_mul(caps.max_parts),
    };
    // Half a message over: no splitter can squeeze it in.
    let text = words_of_at_least(unit, capacity + caps.max_text_len.div_ceil(2).max(1));
    assert!(!caps.fits(&text), "the test text fits the capabilities");
    let before = fake.send_requests().len();
    let e = refused(
        channel,
        config,
        "a text beyond capacity",
        &message(config, Content::text(&text)),
    )
    .await;
    assert_eq!(
        e.kind(),
        ErrorKind::InvalidContent,
        "a text beyond capacity: {e}"
    );
    assert!(
        new_requests(fake, before).is_empty(),
        "a text beyond capacity must be refused before any request"
    );
}

/// The provider's rate-limit answer gives `RateLimited`, a temporary error, carrying the wait
/// the answer stated (when it could state one); the request did reach the server.
pub async fn rate_limit_is_rate_limited<C, P>(channel: &C, fake: &P, config: &SuiteConfig)
where
    C: Channel + ?Sized,
    P: FakeProvider + ?Sized,
{
    let wait = Duration::from_secs(7);
    let stated = fake.answer_rate_limited(wait);
    let before = fake.send_requests().len();
    let e = refused(
        channel,
        config,
        "a rate-limit answer",
        &message(config, Content::text("Приём завтра в 10:00")),
    )
    .await;
    assert_eq!(e.kind(), ErrorKind::RateLimited, "a rate-limit answer: {e}");
    assert!(e.is_temporary(), "a rate limit is temporary: {e:?}");
    if stated {
        assert_eq!(
            e.retry_after(),
            Some(wait),
            "the error carries the wait the provider stated"
        );
    }
    assert!(
        !new_requests(fake, before).is_empty(),
        "the rate-limit answer must come from the server"
    );
}

/// A server error (HTTP 503) gives `Temporary`, a temporary error; the next send goes through.
pub async fn server_error_is_temporary<C, P>(channel: &C, fake: &P, config: &SuiteConfig)
where
    C: Channel + ?Sized,
    P: FakeProvider + ?Sized,
{
    fake.answer_server_error(503);
    let e = refused(
        channel,
        config,
        "a 503",
        &message(config, Content::text("Приём завтра в 10:00")),
    )
    .await;
    assert_eq!(e.kind(), ErrorKind::Temporary, "a 503: {e}");
    assert!(e.is_temporary(), "a 503 is temporary: {e:?}");
    let r = send(
        channel,
        "a send after a 503",
        &message(config, Content::text("Приём завтра в 10:00")),
    )
    .await;
    assert_receipt("a send after a 503", &r);
}

/// The provider's answer to wrong credentials gives `ChannelDown` (the channel cannot send at
/// all), when the fake can give that answer.
pub async fn bad_credentials_are_channel_down<C, P>(channel: &C, fake: &P, config: &SuiteConfig)
where
    C: Channel + ?Sized,
    P: FakeProvider + ?Sized,
{
    if !fake.answer_unauthorized() {
        return;
    }
    let e = refused(
        channel,
        config,
        "an auth refusal",
        &message(config, Content::text("Приём завтра в 10:00")),
    )
    .await;
    assert_eq!(e.kind(), ErrorKind::ChannelDown, "an auth refusal: {e}");
}

/// No secret of [`SuiteConfig::secrets`] shows in the channel's `Debug` (errors are checked by
/// every check that gets one).
pub async fn secrets_stay_hidden<C, P>(channel: &C, fake: &P, config: &SuiteConfig)
where
    C: Channel + ?Sized,
    P: FakeProvider + ?Sized,
{
    let _ = fake;
    assert_hidden("the channel's Debug", &format!("{channel:?}"), config);
    assert_hidden("the channel's Debug", &format!("{channel:#?}"), config);
}

/// Runs every check, each on a fresh channel and fake server from `make`.
///
/// # Panics
///
/// When the channel does not behave as the checks say.
pub async fn run_all<C, P, F, Fut>(mut make: F, config: &SuiteConfig)
where
    C: Channel,
    P: FakeProvider,
    F: FnMut() -> Fut,
    Fut: Future<Output = (C, P)>,
{
    macro_rules! check {
        ($check:ident) => {{
            let (channel, fake) = make().await;
            $check(&channel, &fake, config).await;
        }};
    }
    check!(secrets_stay_hidden);
    check!(sends_text);
    check!(sends_template);
    check!(splits_long_text);
    check!(refuses_text_beyond_capacity);
    check!(rate_limit_is_rate_limited);
    check!(server_error_is_temporary);
    check!(bad_credentials_are_channel_down);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::kind::ChannelKind;
    use crate::testkit::StubChannel;

    /// Scripts a stub channel as if it were a server.
    struct Stub(Arc<StubChannel>);

    impl FakeProvider for Stub {
        fn answer_rate_limited(&self, wait: Duration) -> bool {
            self.0
                .push_error(ChannelError::rate_limited("429", Some(wait)));
            true
        }
        fn answer_server_error(&self, status: u16) {
            self.0
                .push_error(ChannelError::temporary(format!("HTTP {status}")));
        }
        fn answer_unauthorized(&self) -> bool {
            self.0.push_error(ChannelError::channel_down("401"));
            true
        }
        fn send_requests(&self) -> Vec<SentRequest> {
            self.0
                .sent()
                .iter()
                .map(|m| SentRequest::text(m.content.text.to_string()))
                .collect()
        }
    }

    fn stub(id: &str) -> (Arc<StubChannel>, Stub) {
        let ch = Arc::new(StubChannel::new(id, ChannelKind::Telegram));
        (ch.clone(), Stub(ch))
    }

    #[tokio::test]
    async fn a_well_behaved_channel_passes_the_error_and_text_checks() {
        let config = SuiteConfig::new(Address::Telegram(42)).secret("s3cret");
        let (ch, fake) = stub("tg");
        sends_text(&*ch, &fake, &config).await;
        rate_limit_is_rate_limited(&*ch, &fake, &config).await;
        server_error_is_temporary(&*ch, &fake, &config).await;
        bad_credentials_are_channel_down(&*ch, &fake, &config).await;
        secrets_stay_hidden(&*ch, &fake, &config).await;
    }

    #[tokio::test]
    #[should_panic(expected = "shows a secret")]
    async fn a_secret_in_debug_fails() {
        let config = SuiteConfig::new(Address::Telegram(42)).secret("s3cret");
        let (ch, fake) = stub("tg-s3cret");
        secrets_stay_hidden(&*ch, &fake, &config).await;
    }

    #[tokio::test]
    #[should_panic(expected = "shows a secret")]
    async fn a_secret_in_an_error_fails() {
        let config = SuiteConfig::new(Address::Telegram(42)).secret("s3cret");
        let (ch, fake) = stub("tg");
        ch.push_error(ChannelError::temporary("GET /bots3cret/sendMessage: 503"));
        server_error_is_temporary(&*ch, &fake, &config).await;
    }

    #[tokio::test]
    #[should_panic(expected = "expected an error")]
    async fn a_channel_that_sends_what_does_not_fit_fails() {
        let config = SuiteConfig::new(Address::Telegram(42));
        let (ch, fake) = stub("tg");
        refuses_text_beyond_capacity(&*ch, &fake, &config).await;
    }

    #[tokio::test]
    #[should_panic(expected = "carries the wait")]
    async fn a_lost_retry_after_fails() {
        let config = SuiteConfig::new(Address::Telegram(42));
        let (ch, fake) = stub("tg");
        struct Forgetful<'a>(&'a Stub);
        impl FakeProvider for Forgetful<'_> {
            fn answer_rate_limited(&self, _: Duration) -> bool {
                self.0.0.push_error(ChannelError::rate_limited("429", None));
                true
            }
            fn answer_server_error(&self, status: u16) {
                self.0.answer_server_error(status);
            }
            fn send_requests(&self) -> Vec<SentRequest> {
                self.0.send_requests()
            }
        }
        rate_limit_is_rate_limited(&*ch, &Forgetful(&fake), &config).await;
    }
}
