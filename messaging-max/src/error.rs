//! Errors: the crate's own configuration/operation error, and the table that maps Max API
//! error bodies (`{"code": "...", "message": "..."}`) to [`messaging_core::ErrorKind`].
//!
//! | HTTP | `code` | [`ErrorKind`] | why |
//! |---|---|---|---|
//! | 401 (any code) | `verify.token` | [`ErrorKind::ChannelDown`] | bad or revoked token: nothing this bot sends can succeed |
//! | 403 (any code) | `chat.denied`, `error.dialog.suspended` in the message, `access.denied` | [`ErrorKind::Unreachable`] | the person stopped, blocked or deleted the bot |
//! | 404 | `chat.not.found`, `dialog.not.found`, `user.not.found` | [`ErrorKind::Unreachable`] | unknown user or chat |
//! | 429 (any code) | `too.many.requests` | [`ErrorKind::RateLimited`] | `Retry-After` is honoured when sent |
//! | any | `attachment.not.ready` | [`ErrorKind::Temporary`] | the upload is still being processed; retry |
//! | 5xx, network, timeout | — | [`ErrorKind::Temporary`] | passing failure |
//! | 400 | `proto.payload`, `text.too.long` | [`ErrorKind::InvalidContent`] | the request itself is wrong |
//! | anything else | kept raw | [`ErrorKind::Unexpected`] | retried once by the engine, then persistent |
//!
//! The provider code (or, without one, the HTTP status) is always kept in
//! [`ChannelError::provider_code`].

use std::time::Duration;

use messaging_core::{ChannelError, ErrorKind};
use serde::Deserialize;

/// Errors of this crate outside [`Channel::send`](messaging_core::Channel::send): building a
/// client, subscribing, polling.
///
/// Never contains the bot token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaxError {
    /// The bot token is empty.
    #[error("the Max bot token is empty")]
    EmptyToken,
    /// The base URL is not an absolute `http(s)` URL.
    #[error("invalid Max base URL: {0}")]
    InvalidBaseUrl(String),
    /// An extra root certificate could not be read as PEM.
    #[error("invalid root certificate: {0}")]
    InvalidCertificate(String),
    /// Root certificates and a ready-made `reqwest::Client` were both given; certificates can only
    /// be added to a client this crate builds.
    #[error(
        "extra root certificates cannot be added to a user-supplied reqwest::Client; add them to that client instead"
    )]
    CertificatesWithCustomClient,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// A webhook secret does not match Max's pattern `^[a-zA-Z0-9_-]{5,256}$`.
    #[error("webhook secret must be 5 to 256 characters of A-Z, a-z, 0-9, '_' and '-'")]
    InvalidSecret,
    /// A webhook URL is not an absolute `https` URL.
    #[error("invalid webhook URL: {0}")]
    InvalidWebhookUrl(String),
    /// Max answered `{"success": false, ...}`.
    #[error("Max refused the request: {0}")]
    Refused(String),
    /// The API call failed; the kind says whether to retry.
    #[error(transparent)]
    Api(#[from] ChannelError),
    /// The marker store failed.
    #[error("marker store: {0}")]
    MarkerStore(String),
    /// A poll panicked (a bug); the panic message. [`Poller::run`](crate::Poller::run) logs it,
    /// backs off and polls again.
    #[error("polling panicked: {0}")]
    Panicked(String),
}

impl From<messaging_http::ClientError> for MaxError {
    fn from(e: messaging_http::ClientError) -> Self {
        use messaging_http::ClientError as C;
        match e {
            C::InvalidCertificate(why) => MaxError::InvalidCertificate(why),
            C::CertificatesWithOwnClient => MaxError::CertificatesWithCustomClient,
            other => MaxError::HttpClient(other.to_string()),
        }
    }
}

/// The body of a Max error response.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ApiErrorBody {
    /// The machine-readable key (`verify.token`, `chat.denied`).
    #[serde(default)]
    pub code: Option<String>,
    /// The provider's words.
    #[serde(default)]
    pub message: Option<String>,
    /// An optional extra error string.
    #[serde(default)]
    pub error: Option<String>,
}

impl ApiErrorBody {
    /// Reads an error body; anything unreadable gives an empty body (the HTTP status still counts).
    pub fn parse(body: &[u8]) -> ApiErrorBody {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

const MAX_MESSAGE_CHARS: usize = 300;

fn short(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE_CHARS {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX_MESSAGE_CHARS).collect();
        t.push('…');
        t
    }
}

/// Maps one Max error response to a [`ChannelError`], following the table in the
/// [module docs](self).
///
/// ```
/// use messaging_core::ErrorKind;
/// use messaging_max::classify_error;
/// let e = classify_error(403, br#"{"code":"chat.denied","message":"Key: error.dialog.suspended"}"#, None);
/// assert_eq!(e.kind(), ErrorKind::Unreachable);
/// assert_eq!(e.provider_code(), Some("chat.denied"));
/// ```
pub fn classify_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> ChannelError {
    let parsed = ApiErrorBody::parse(body);
    let code = parsed
        .code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let text = parsed
        .message
        .as_deref()
        .or(parsed.error.as_deref())
        .unwrap_or("");
    let kind = kind_for(status, code, text);
    let message = match code {
        Some(c) if text.is_empty() => format!("Max API HTTP {status}: {c}"),
        Some(c) => format!("Max API HTTP {status}: {c}: {}", short(text)),
        None if text.is_empty() => format!("Max API HTTP {status}"),
        None => format!("Max API HTTP {status}: {}", short(text)),
    };
    let provider_code = code.map_or_else(|| status.to_string(), str::to_owned);
    let e = match kind {
        ErrorKind::RateLimited => ChannelError::rate_limited(message, retry_after),
        other => ChannelError::new(other, message),
    };
    e.with_provider_code(provider_code)
}

fn kind_for(status: u16, code: Option<&str>, text: &str) -> ErrorKind {
    let lower_text = text.to_ascii_lowercase();
    match code {
        Some("verify.token") => return ErrorKind::ChannelDown,
        Some("attachment.not.ready") => return ErrorKind::Temporary,
        Some("too.many.requests") => return ErrorKind::RateLimited,
        Some(
            "chat.denied" | "access.denied" | "chat.not.found" | "dialog.not.found"
            | "user.not.found",
        ) => return ErrorKind::Unreachable,
        _ => {}
    }
    if lower_text.contains("dialog.suspended") {
        return ErrorKind::Unreachable;
    }
    match status {
        401 => ErrorKind::ChannelDown,
        403 => ErrorKind::Unreachable,
        429 => ErrorKind::RateLimited,
        500..=599 => ErrorKind::Temporary,
        // A 408 is a server-side timeout.
        408 => ErrorKind::Temporary,
        400 if matches!(code, Some("proto.payload" | "text.too.long")) => ErrorKind::InvalidContent,
        _ => ErrorKind::Unexpected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(u16, &str, ErrorKind, &str)] = &[
            (
                401,
                r#"{"code":"verify.token","message":"Invalid access_token"}"#,
                ErrorKind::ChannelDown,
                "verify.token",
            ),
            (401, "", ErrorKind::ChannelDown, "401"),
            (
                403,
                r#"{"code":"chat.denied","message":"Key: error.dialog.suspended, args: [1,]."}"#,
                ErrorKind::Unreachable,
                "chat.denied",
            ),
            (
                400,
                r#"{"code":"weird","message":"Key: error.dialog.suspended"}"#,
                ErrorKind::Unreachable,
                "weird",
            ),
            (
                404,
                r#"{"code":"chat.not.found","message":"x"}"#,
                ErrorKind::Unreachable,
                "chat.not.found",
            ),
            (
                429,
                r#"{"code":"too.many.requests","message":"Too many requests"}"#,
                ErrorKind::RateLimited,
                "too.many.requests",
            ),
            (429, "<html>", ErrorKind::RateLimited, "429"),
            (
                400,
                r#"{"code":"attachment.not.ready","message":""}"#,
                ErrorKind::Temporary,
                "attachment.not.ready",
            ),
            (502, "Bad gateway", ErrorKind::Temporary, "502"),
            (
                503,
                r#"{"code":"service.unavailable"}"#,
                ErrorKind::Temporary,
                "service.unavailable",
            ),
            (
                400,
                r#"{"code":"proto.payload","message":"bad"}"#,
                ErrorKind::InvalidContent,
                "proto.payload",
            ),
            (
                405,
                r#"{"code":"method.not.allowed","message":"no"}"#,
                ErrorKind::Unexpected,
                "method.not.allowed",
            ),
            (418, "", ErrorKind::Unexpected, "418"),
        ];
        for (status, body, kind, code) in cases {
            let e = classify_error(*status, body.as_bytes(), None);
            assert_eq!(e.kind(), *kind, "{status} {body}");
            assert_eq!(e.provider_code(), Some(*code), "{status} {body}");
        }
    }

    #[test]
    fn retry_after_only_for_rate_limits() {
        let d = Some(Duration::from_secs(7));
        assert_eq!(classify_error(429, b"", d).retry_after(), d);
        assert_eq!(classify_error(500, b"", d).retry_after(), None);
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "x".repeat(10_000);
        let body = serde_json::json!({"code": "c", "message": long}).to_string();
        let e = classify_error(400, body.as_bytes(), None);
        assert!(e.message().chars().count() < 400);
    }
}
