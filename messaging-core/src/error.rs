//! The one error a channel returns, with a kind the engine decides from.
//!
//! | kind | example | the engine |
//! |---|---|---|
//! | [`ErrorKind::Unreachable`] | blocked the bot, not on WhatsApp, invalid number | next step now |
//! | [`ErrorKind::NeedsTemplate`] | WhatsApp 131047, outside the 24-hour window | retry with the template if the content has one, else next step |
//! | [`ErrorKind::RateLimited`] | 429, 130429 | wait `retry_after`, same channel, inside the window |
//! | [`ErrorKind::Temporary`] | network, 5xx, timeout | retry with backoff inside the window; then next step |
//! | [`ErrorKind::ChannelDown`] | bad token, account restricted | mark the channel down, next step |
//! | [`ErrorKind::InvalidContent`] | too long, bad template parameters | fail the step with the reason, next step |
//! | [`ErrorKind::OutcomeUnknown`] | timeout after the request went out, connection reset while reading the answer, a 2xx that cannot be read | the provider may have accepted it: wait for evidence until the window closes, or resend marked `possible_duplicate` (the step's policy) |
//! | [`ErrorKind::Unexpected`] | anything not understood | retried [`UNEXPECTED_RETRIES`] time, then persistent |

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// What went wrong, in the terms the cascade engine acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The person cannot be reached on this channel (blocked the bot, no account, invalid number).
    Unreachable,
    /// Only a template may be sent now (outside the WhatsApp 24-hour window).
    NeedsTemplate,
    /// Too many requests; try again after `retry_after`.
    RateLimited,
    /// A passing failure: network, 5xx, timeout.
    Temporary,
    /// The channel itself cannot send: bad token, account restricted or banned.
    ChannelDown,
    /// The content cannot be sent as it is: too long, bad template parameters, bad media.
    InvalidContent,
    /// The request was refused for a reason the adapter does not understand.
    Unexpected,
    /// The provider may have accepted the message, but its answer never arrived or could not
    /// be read: a timeout after the request was written, a connection reset while reading the
    /// answer, a 2xx whose body does not parse. Sending again may deliver it twice.
    OutcomeUnknown,
}

/// How many times the engine retries a send that failed with [`ErrorKind::Unexpected`] (an
/// answer the adapter did not understand is worth one more try, not a full retry budget).
pub const UNEXPECTED_RETRIES: u32 = 1;

impl ErrorKind {
    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::NeedsTemplate => "needs_template",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Temporary => "temporary",
            ErrorKind::ChannelDown => "channel_down",
            ErrorKind::InvalidContent => "invalid_content",
            ErrorKind::Unexpected => "unexpected",
            ErrorKind::OutcomeUnknown => "outcome_unknown",
        }
    }
}

impl ErrorKind {
    /// Whether the message may have reached the provider despite the error: only
    /// [`ErrorKind::OutcomeUnknown`]. Every other kind is a refusal: nothing was sent.
    pub fn may_have_been_sent(self) -> bool {
        self == ErrorKind::OutcomeUnknown
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether trying again can help (after opendal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryStatus {
    /// Never retry.
    Permanent,
    /// May succeed if retried.
    Temporary,
    /// Was temporary, but retries ran out.
    Persistent,
}

/// The error every [`Channel`](crate::Channel) returns.
///
/// Build one with the constructor for its kind and add what the provider said:
///
/// ```
/// use std::time::Duration;
/// use messaging_core::{ChannelError, ErrorKind};
/// let e = ChannelError::rate_limited("Too Many Requests", Some(Duration::from_secs(30)))
///     .with_provider_code("429");
/// assert_eq!(e.kind(), ErrorKind::RateLimited);
/// assert!(e.is_temporary());
/// assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
/// assert_eq!(e.provider_code(), Some("429"));
/// ```
#[derive(thiserror::Error)]
pub struct ChannelError {
    kind: ErrorKind,
    status: RetryStatus,
    message: String,
    provider_code: Option<String>,
    retry_after: Option<Duration>,
    down_until: Option<DateTime<Utc>>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ChannelError {
    /// A new error of `kind`. Rate limits and temporary failures start as [`RetryStatus::Temporary`],
    /// the rest as permanent.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let status = match kind {
            ErrorKind::RateLimited
            | ErrorKind::Temporary
            | ErrorKind::Unexpected
            | ErrorKind::OutcomeUnknown => RetryStatus::Temporary,
            _ => RetryStatus::Permanent,
        };
        ChannelError {
            kind,
            status,
            message: message.into(),
            provider_code: None,
            retry_after: None,
            down_until: None,
            source: None,
        }
    }

    /// The person cannot be reached on this channel.
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unreachable, message)
    }
    /// Only a template may be sent now.
    pub fn needs_template(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NeedsTemplate, message)
    }
    /// Rate limited, with the provider's wait when it gave one.
    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        let mut e = Self::new(ErrorKind::RateLimited, message);
        e.retry_after = retry_after;
        e
    }
    /// A passing failure.
    pub fn temporary(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Temporary, message)
    }
    /// The channel cannot send at all.
    pub fn channel_down(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ChannelDown, message)
    }
    /// The content cannot be sent as it is.
    pub fn invalid_content(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidContent, message)
    }
    /// Not understood.
    pub fn unexpected(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unexpected, message)
    }
    /// The provider may have accepted the message; its answer was lost or unreadable.
    ///
    /// ```
    /// use messaging_core::{ChannelError, ErrorKind};
    /// let e = ChannelError::outcome_unknown("WhatsApp: request timed out");
    /// assert_eq!(e.kind(), ErrorKind::OutcomeUnknown);
    /// assert!(e.kind().may_have_been_sent());
    /// ```
    pub fn outcome_unknown(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::OutcomeUnknown, message)
    }

    /// Keeps the provider's raw error code.
    pub fn with_provider_code(mut self, code: impl Into<String>) -> Self {
        self.provider_code = Some(code.into());
        self
    }
    /// Sets how long to wait before trying again.
    pub fn with_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }
    /// For [`ErrorKind::ChannelDown`]: the channel is known to be down until this time.
    pub fn with_down_until(mut self, t: DateTime<Utc>) -> Self {
        self.down_until = Some(t);
        self
    }
    /// Keeps the underlying error. Make sure it holds no secret (strip URLs from HTTP errors).
    pub fn with_source(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(e));
        self
    }
    /// Marks a temporary error whose retries ran out.
    pub fn set_persistent(mut self) -> Self {
        if self.status == RetryStatus::Temporary {
            self.status = RetryStatus::Persistent;
        }
        self
    }

    /// The kind the engine decides from.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// Whether retrying may help.
    pub fn status(&self) -> RetryStatus {
        self.status
    }
    /// Shortcut for `status() == Temporary`.
    pub fn is_temporary(&self) -> bool {
        self.status == RetryStatus::Temporary
    }
    /// What happened, in words (no secrets).
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The provider's own code (`131047`, `403`, `chat.denied`), when there was one.
    pub fn provider_code(&self) -> Option<&str> {
        self.provider_code.as_deref()
    }
    /// How long the provider asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    /// Until when the channel is known to be down.
    pub fn down_until(&self) -> Option<DateTime<Utc>> {
        self.down_until
    }
}

impl fmt::Debug for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelError")
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("message", &self.message)
            .field("provider_code", &self.provider_code)
            .field("retry_after", &self.retry_after)
            .field("down_until", &self.down_until)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(code) = &self.provider_code {
            write!(f, " (provider code {code})")?;
        }
        if let Some(d) = self.retry_after {
            write!(f, " (retry after {}s)", d.as_secs())?;
        }
        Ok(())
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record changed since it was read (another task or instance advanced it).
    #[error("cascade {0} was changed concurrently")]
    Conflict(crate::model::NotificationId),
    /// No such record.
    #[error("cascade {0} not found")]
    NotFound(crate::model::NotificationId),
    /// The backend failed.
    #[error("store backend error: {0}")]
    Backend(String),
    /// A stored record could not be read back.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// This store does not implement the operation (a store written before it existed).
    #[error("this store does not support {0}")]
    Unsupported(&'static str),
}

impl StoreError {
    /// A backend error from anything displayable.
    pub fn backend(e: impl fmt::Display) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// Scrubbing (kept apart from the constructors and getters above).
impl ChannelError {
    /// The same error with `redact` applied to every text it carries: the message, the provider
    /// code and the source chain. A source whose text (`Display` or `Debug`, down its own
    /// chain) `redact` changes is replaced by a plain error holding the redacted text; a source
    /// it leaves alone is kept, typed, so `downcast_ref` on it still works.
    ///
    /// Adapters use it with their configured secrets (`messaging_http::Redactor`) on every
    /// error they return, because providers echo requests in their error text.
    ///
    /// ```
    /// use messaging_core::{ChannelError, ErrorKind};
    /// let e = ChannelError::channel_down("Unauthorized: token 123:ABC")
    ///     .redact_with(|s| s.replace("123:ABC", "[redacted]"));
    /// assert_eq!(e.message(), "Unauthorized: token [redacted]");
    /// assert_eq!(e.kind(), ErrorKind::ChannelDown);
    /// ```
    pub fn redact_with(mut self, redact: impl Fn(&str) -> String) -> Self {
        self.message = redact(&self.message);
        self.provider_code = self.provider_code.map(|c| redact(&c));
        if let Some(source) = self.source.take() {
            let mut chain = Vec::new();
            let mut changed = false;
            let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&*source);
            while let Some(e) = next {
                let display = e.to_string();
                let debug = format!("{e:?}");
                let clean = redact(&display);
                changed |= clean != display || redact(&debug) != debug;
                chain.push(clean);
                next = e.source();
            }
            self.source = if changed {
                Some(Box::new(RedactedSource(chain.join(": "))))
            } else {
                Some(source)
            };
        }
        self
    }
}

/// A source error whose text held a secret: only its redacted text is kept.
#[derive(Debug)]
struct RedactedSource(String);

impl fmt::Display for RedactedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedactedSource {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_kind_and_can_become_persistent() {
        assert!(ChannelError::temporary("x").is_temporary());
        assert!(!ChannelError::unreachable("x").is_temporary());
        let p = ChannelError::temporary("x").set_persistent();
        assert_eq!(p.status(), RetryStatus::Persistent);
        assert_eq!(
            ChannelError::unreachable("x").set_persistent().status(),
            RetryStatus::Permanent
        );
    }

    #[test]
    fn display_carries_code() {
        let e = ChannelError::needs_template("outside window").with_provider_code("131047");
        assert_eq!(
            e.to_string(),
            "needs_template: outside window (provider code 131047)"
        );
    }

    #[test]
    fn redact_with_scrubs_message_code_and_a_leaking_source_only() {
        #[derive(Debug)]
        struct Typed(&'static str);
        impl fmt::Display for Typed {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Typed {}
        let scrub = |s: &str| s.replace("SECRET", "[redacted]");
        let e = ChannelError::unexpected("echo SECRET")
            .with_provider_code("SECRET")
            .with_source(Typed("source SECRET"))
            .redact_with(scrub);
        let text = format!("{e} {e:?} {}", std::error::Error::source(&e).unwrap());
        assert!(!text.contains("SECRET"), "{text}");
        assert_eq!(e.message(), "echo [redacted]");
        let clean = ChannelError::unexpected("x")
            .with_source(Typed("no secret"))
            .redact_with(scrub);
        assert!(
            std::error::Error::source(&clean)
                .unwrap()
                .downcast_ref::<Typed>()
                .is_some(),
            "an untouched source stays typed"
        );
    }
}
