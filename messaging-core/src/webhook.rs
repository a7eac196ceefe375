//! Framework-free webhook verification and parsing.
//!
//! Each adapter implements [`WebhookHandler`] for its provider; a web framework (or a test, or
//! the `messaging parse-webhook` command) hands it the request's headers and **raw** body.
//! Signatures are checked over the raw bytes, in constant time, before anything is parsed.

use std::fmt;

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

use crate::event::Event;
use crate::kind::ChannelKind;

/// The largest body a webhook handler accepts by default (1 MiB).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// An incoming webhook request, as raw as it came.
#[derive(Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// HTTP method (`GET` for handshakes such as Meta's, `POST` otherwise).
    pub method: &'a http::Method,
    /// The full URL the provider called, as the provider saw it (Twilio signs it).
    pub url: Option<&'a str>,
    /// Headers.
    pub headers: &'a http::HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
}

impl fmt::Debug for WebhookRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers may carry secrets (X-Telegram-Bot-Api-Secret-Token); show names only.
        f.debug_struct("WebhookRequest")
            .field("method", self.method)
            .field("url", &self.url)
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl<'a> WebhookRequest<'a> {
    /// A POST with headers and body.
    pub fn post(headers: &'a http::HeaderMap, body: &'a [u8]) -> Self {
        WebhookRequest {
            method: &http::Method::POST,
            url: None,
            headers,
            body,
        }
    }

    /// Sets the URL the provider called.
    pub fn with_url(mut self, url: &'a str) -> Self {
        self.url = Some(url);
        self
    }

    /// A header's value as text, if present and readable.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a webhook was refused. The web layer answers 401/403 for the first three, 413 for a
/// body too large and 400 for the rest; nothing is processed in any case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The signature or secret header is absent.
    #[error("missing signature header {0}")]
    MissingSignature(&'static str),
    /// The signature or secret does not match.
    #[error("signature does not match")]
    BadSignature,
    /// The handshake's verify token does not match.
    #[error("verify token does not match")]
    BadVerifyToken,
    /// The body is larger than allowed.
    #[error("body of {size} bytes exceeds the limit of {limit}")]
    BodyTooLarge {
        /// The size received.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is not what this provider sends.
    #[error("malformed {provider} webhook: {reason}")]
    Malformed {
        /// The provider.
        provider: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl WebhookError {
    /// The HTTP status a server should answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            WebhookError::MissingSignature(_) => 401,
            WebhookError::BadSignature | WebhookError::BadVerifyToken => 403,
            WebhookError::BodyTooLarge { .. } => 413,
            WebhookError::Malformed { .. } => 400,
        }
    }

    /// A malformed-body error.
    pub fn malformed(provider: &'static str, reason: impl fmt::Display) -> Self {
        WebhookError::Malformed {
            provider,
            reason: reason.to_string(),
        }
    }
}

/// What to answer the provider after a webhook was accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookReply {
    /// HTTP status.
    pub status: u16,
    /// Content type of the body.
    pub content_type: &'static str,
    /// Body (SMS.ru expects `100`; Meta's handshake expects the challenge).
    pub body: String,
}

impl WebhookReply {
    /// `200 OK` with an empty body.
    pub fn ok() -> Self {
        WebhookReply {
            status: 200,
            content_type: "text/plain",
            body: String::new(),
        }
    }
    /// `200 OK` with a text body.
    pub fn text(body: impl Into<String>) -> Self {
        WebhookReply {
            status: 200,
            content_type: "text/plain",
            body: body.into(),
        }
    }
}

/// Verifies and parses one provider's webhooks.
pub trait WebhookHandler: Send + Sync + fmt::Debug {
    /// The provider's short name (`"waba"`, `"telegram"`, `"smsru"`).
    fn provider(&self) -> &'static str;

    /// The channel kind its events belong to.
    fn channel_kind(&self) -> ChannelKind;

    /// Checks the signature or secret over the raw body. Must compare in constant time.
    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError>;

    /// Whether [`verify`](Self::verify) proves that a call came from the provider (a signature
    /// or a shared secret). SMS.ru, SMSC and SMS Aero sign nothing, so their handlers answer
    /// `false`, and the router serves them only under a secret path or behind an allow-list
    /// the user vouches for (`WebhookRouter::mount_unsigned`). Default: `true`.
    fn authenticates(&self) -> bool {
        true
    }

    /// Parses a verified body into events. Unknown update types are skipped, not errors.
    fn parse(&self, request: &WebhookRequest<'_>) -> Result<Vec<Event>, WebhookError>;

    /// Answers a handshake (such as Meta's GET `hub.challenge`); `None` if this request is not one.
    fn handshake(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Option<Result<WebhookReply, WebhookError>> {
        let _ = request;
        None
    }

    /// What to answer after a successful parse.
    fn reply(&self) -> WebhookReply {
        WebhookReply::ok()
    }

    /// The largest body accepted.
    fn max_body(&self) -> usize {
        DEFAULT_MAX_BODY
    }

    /// Size check, verification and parsing in one call.
    fn verify_and_parse(&self, request: &WebhookRequest<'_>) -> Result<Vec<Event>, WebhookError> {
        if request.body.len() > self.max_body() {
            return Err(WebhookError::BodyTooLarge {
                size: request.body.len(),
                limit: self.max_body(),
            });
        }
        self.verify(request)?;
        self.parse(request)
    }
}

/// Compares two secrets in constant time (for plain secret headers).
///
/// ```
/// assert!(messaging_core::webhook::secrets_equal(b"s3cret", b"s3cret"));
/// assert!(!messaging_core::webhook::secrets_equal(b"s3cret", b"s3cre"));
/// ```
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Checks a hex HMAC-SHA256 of `body` under `key`, in constant time. `signature_hex` is the
/// hex digest without any `sha256=` prefix.
///
/// ```
/// use messaging_core::webhook::{hmac_sha256_hex, verify_hmac_sha256_hex};
/// let sig = hmac_sha256_hex(b"key", b"body");
/// assert!(verify_hmac_sha256_hex(b"key", b"body", &sig));
/// assert!(!verify_hmac_sha256_hex(b"key", b"bodY", &sig));
/// ```
pub fn verify_hmac_sha256_hex(key: &[u8], body: &[u8], signature_hex: &str) -> bool {
    let Ok(expected) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The hex HMAC-SHA256 of `body` under `key` (for tests and for signing deep-link tokens).
pub fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    hex::encode(hmac_sha256(key, body))
}

/// The raw HMAC-SHA256 of `body` under `key`.
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}
