//! Graph API errors and the table that maps their codes to [`ErrorKind`].
//!
//! Meta asks clients to decide from `error.code`, never from the HTTP status or the deprecated
//! `error_subcode`; this module does exactly that. The HTTP status is used only when the body is
//! not a Graph error at all (a proxy's 502 page, 360dialog's own 401).
//!
//! | class (reference §2.3) | [`ErrorKind`] | codes |
//! |---|---|---|
//! | fatal config / account | `ChannelDown` | 0, 3, 10, 33, 190, 200–299, 368, 131005, 131031, 131037, 131042, 131045, 131048, 131064, 133010 |
//! | recipient cannot be reached | `Unreachable` | 130403, 130472, 130497, 131021, 131026, 131030, 131049, 131050 |
//! | outside the 24-hour window | `NeedsTemplate` | 131047 |
//! | throughput | `RateLimited` | 4, 613, 80007, 130429, 131056, 132069 |
//! | passing failure | `Temporary` | 1, 2, 131000, 131016, 131057, 133004 |
//! | bad request or template | `InvalidContent` | 100, 131008, 131009, 131051, 131052, 131053, 131063, 132000, 132001, 132005, 132007, 132012, 132015, 132016, 132068, 135000, 2388xxx |
//! | anything else | `Unexpected` (the raw code is kept) | |

use std::fmt;
use std::time::Duration;

use messaging_core::{ChannelError, ErrorKind, ProviderError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kind given to a code that is not in the table. The raw code is kept on the error
/// ([`ChannelError::provider_code`]).
pub const UNKNOWN_CODE_KIND: ErrorKind = ErrorKind::Unexpected;

/// Every code the adapter knows, with its kind and Meta's meaning. Codes 200–299 are matched as
/// a range by [`kind_for_code`] and listed here by their first member.
pub const ERROR_TABLE: &[(i64, ErrorKind, &str)] = &[
    (
        0,
        ErrorKind::ChannelDown,
        "unable to authenticate the app user",
    ),
    (
        1,
        ErrorKind::Temporary,
        "invalid request or possible server error",
    ),
    (2, ErrorKind::Temporary, "temporary downtime or overload"),
    (3, ErrorKind::ChannelDown, "capability or permission issue"),
    (
        4,
        ErrorKind::RateLimited,
        "app reached its Graph API call rate limit",
    ),
    (
        10,
        ErrorKind::ChannelDown,
        "permission not granted or removed",
    ),
    (33, ErrorKind::ChannelDown, "business phone number deleted"),
    (
        100,
        ErrorKind::InvalidContent,
        "invalid or unsupported parameter",
    ),
    (
        190,
        ErrorKind::ChannelDown,
        "access token expired or invalid",
    ),
    (
        200,
        ErrorKind::ChannelDown,
        "permission not granted or removed (200-299)",
    ),
    (
        368,
        ErrorKind::ChannelDown,
        "temporarily blocked for policy violations",
    ),
    (613, ErrorKind::RateLimited, "API call rate limit exceeded"),
    (
        80007,
        ErrorKind::RateLimited,
        "WhatsApp Business Account rate limit",
    ),
    (
        130403,
        ErrorKind::Unreachable,
        "the business has blocked this user",
    ),
    (
        130429,
        ErrorKind::RateLimited,
        "Cloud API message throughput reached",
    ),
    (
        130472,
        ErrorKind::Unreachable,
        "user's number is part of an experiment",
    ),
    (
        130497,
        ErrorKind::Unreachable,
        "business may not message users in this country",
    ),
    (
        131000,
        ErrorKind::Temporary,
        "something went wrong (unknown error)",
    ),
    (
        131005,
        ErrorKind::ChannelDown,
        "access denied: permission not granted or removed",
    ),
    (
        131008,
        ErrorKind::InvalidContent,
        "required parameter is missing",
    ),
    (
        131009,
        ErrorKind::InvalidContent,
        "parameter value is not valid",
    ),
    (
        131016,
        ErrorKind::Temporary,
        "service temporarily unavailable",
    ),
    (
        131021,
        ErrorKind::Unreachable,
        "sender and recipient are the same number",
    ),
    (
        131026,
        ErrorKind::Unreachable,
        "message undeliverable (not on WhatsApp, old client, terms not accepted)",
    ),
    (
        131030,
        ErrorKind::Unreachable,
        "recipient is not in the allowed list of a test number",
    ),
    (131031, ErrorKind::ChannelDown, "business account locked"),
    (
        131037,
        ErrorKind::ChannelDown,
        "number lacks an approved display name",
    ),
    (
        131042,
        ErrorKind::ChannelDown,
        "business eligibility or payment issue",
    ),
    (
        131045,
        ErrorKind::ChannelDown,
        "phone number registration error",
    ),
    (
        131047,
        ErrorKind::NeedsTemplate,
        "re-engagement: more than 24 hours since the person last wrote",
    ),
    (
        131048,
        ErrorKind::ChannelDown,
        "spam rate limit: the number is restricted",
    ),
    (
        131049,
        ErrorKind::Unreachable,
        "not delivered to maintain healthy ecosystem engagement",
    ),
    (
        131050,
        ErrorKind::Unreachable,
        "the person stopped marketing messages",
    ),
    (
        131051,
        ErrorKind::InvalidContent,
        "unsupported message type",
    ),
    (
        131052,
        ErrorKind::InvalidContent,
        "media download error (media sent by the person)",
    ),
    (131053, ErrorKind::InvalidContent, "media upload error"),
    (
        131056,
        ErrorKind::RateLimited,
        "pair rate limit: too many messages to this person",
    ),
    (131057, ErrorKind::Temporary, "account in maintenance mode"),
    (
        131063,
        ErrorKind::InvalidContent,
        "marketing templates are disabled on this account",
    ),
    (
        131064,
        ErrorKind::ChannelDown,
        "messaging limited for template classification violations",
    ),
    (
        132000,
        ErrorKind::InvalidContent,
        "template parameter count mismatch",
    ),
    (
        132001,
        ErrorKind::InvalidContent,
        "template does not exist in this language or is not approved",
    ),
    (
        132005,
        ErrorKind::InvalidContent,
        "template hydrated text too long",
    ),
    (
        132007,
        ErrorKind::InvalidContent,
        "template format character policy violated",
    ),
    (
        132012,
        ErrorKind::InvalidContent,
        "template parameter format mismatch",
    ),
    (
        132015,
        ErrorKind::InvalidContent,
        "template is paused for low quality",
    ),
    (132016, ErrorKind::InvalidContent, "template is disabled"),
    (132068, ErrorKind::InvalidContent, "flow is blocked"),
    (132069, ErrorKind::RateLimited, "flow is throttled"),
    (
        133004,
        ErrorKind::Temporary,
        "server temporarily unavailable",
    ),
    (
        133010,
        ErrorKind::ChannelDown,
        "phone number not registered",
    ),
    (
        135000,
        ErrorKind::InvalidContent,
        "generic user error in request parameters",
    ),
    (
        2388019,
        ErrorKind::InvalidContent,
        "template creation: limit exceeded",
    ),
];

/// The kind for a Graph error code, or `None` when the code is not in the table.
///
/// ```
/// use messaging_core::ErrorKind;
/// use messaging_waba::error::kind_for_known_code;
/// assert_eq!(kind_for_known_code(131047), Some(ErrorKind::NeedsTemplate));
/// assert_eq!(kind_for_known_code(250), Some(ErrorKind::ChannelDown));
/// assert_eq!(kind_for_known_code(999_999), None);
/// ```
pub fn kind_for_known_code(code: i64) -> Option<ErrorKind> {
    if (200..=299).contains(&code) {
        return Some(ErrorKind::ChannelDown);
    }
    // Template creation errors (2388xxx): never retry the same request.
    if (2_388_000..2_389_000).contains(&code) {
        return Some(ErrorKind::InvalidContent);
    }
    ERROR_TABLE
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, kind, _)| *kind)
}

/// The kind for a Graph error code; unknown codes get [`UNKNOWN_CODE_KIND`].
pub fn kind_for_code(code: i64) -> ErrorKind {
    kind_for_known_code(code).unwrap_or(UNKNOWN_CODE_KIND)
}

/// How long to wait after a throughput error when the server gave no `Retry-After`.
pub fn default_retry_after(code: i64) -> Option<Duration> {
    match code {
        130429 => Some(Duration::from_secs(1)),
        131056 => Some(Duration::from_secs(6)),
        4 | 613 | 80007 | 132069 => Some(Duration::from_secs(60)),
        _ => None,
    }
}

/// `error_data`: an object on the messaging endpoints, a plain string on some management ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorData {
    /// `{"messaging_product": "whatsapp", "details": "..."}`.
    Object {
        /// Meta's explanation.
        #[serde(default)]
        details: Option<String>,
    },
    /// A bare string.
    Text(String),
    /// Anything else, kept as it came.
    Other(Value),
}

impl ErrorData {
    /// The details text, when there is one.
    pub fn details(&self) -> Option<&str> {
        match self {
            ErrorData::Object { details } => details.as_deref(),
            ErrorData::Text(s) => Some(s),
            ErrorData::Other(_) => None,
        }
    }
}

/// A Graph API error object: the `error` of a failed request, or one element of a webhook's
/// `errors[]`. The code is read leniently (some BSPs send it as a string).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphError {
    /// The code the adapter decides from.
    #[serde(deserialize_with = "lenient_code")]
    pub code: i64,
    /// `"(#130429) Rate limit hit"`.
    #[serde(default)]
    pub message: Option<String>,
    /// The title (webhook errors).
    #[serde(default)]
    pub title: Option<String>,
    /// `OAuthException`.
    #[serde(default, rename = "type")]
    pub error_type: Option<String>,
    /// Deprecated; kept for logs only.
    #[serde(default, deserialize_with = "lenient_opt_code")]
    pub error_subcode: Option<i64>,
    /// Details.
    #[serde(default)]
    pub error_data: Option<ErrorData>,
    /// Meta's trace id, for support tickets.
    #[serde(default)]
    pub fbtrace_id: Option<String>,
}

fn code_from_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    code_from_value(&v).ok_or_else(|| serde::de::Error::custom("error code is not a number"))
}

fn lenient_opt_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref().and_then(code_from_value))
}

impl GraphError {
    /// Reads an error from a response body: `{"error": {...}}` or a bare error object.
    ///
    /// ```
    /// use messaging_waba::error::GraphError;
    /// let e = GraphError::from_body(br#"{"error":{"message":"(#131056) pair rate limit hit","code":"131056"}}"#).unwrap();
    /// assert_eq!(e.code, 131056);
    /// ```
    pub fn from_body(body: &[u8]) -> Option<GraphError> {
        let v: Value = serde_json::from_slice(body).ok()?;
        Self::from_value(&v)
    }

    /// Reads an error from parsed JSON: `{"error": {...}}` or a bare error object.
    pub fn from_value(v: &Value) -> Option<GraphError> {
        let inner = v.get("error").unwrap_or(v);
        serde_json::from_value(inner.clone()).ok()
    }

    /// The kind the engine acts on.
    pub fn kind(&self) -> ErrorKind {
        kind_for_code(self.code)
    }

    /// The provider's words: message (or title) and details, never a secret.
    pub fn text(&self) -> String {
        let head = self
            .message
            .as_deref()
            .or(self.title.as_deref())
            .unwrap_or("WhatsApp error");
        match self.error_data.as_ref().and_then(ErrorData::details) {
            Some(d) if !d.is_empty() && d != head => format!("{head}: {d}"),
            _ => head.to_owned(),
        }
    }

    /// The error as a [`ChannelError`], with the raw code kept and a default wait for
    /// throughput errors. `retry_after` (an HTTP `Retry-After`) wins over the default.
    pub fn to_channel_error(&self, retry_after: Option<Duration>) -> ChannelError {
        let mut text = self.text();
        if let Some(trace) = &self.fbtrace_id {
            text.push_str(&format!(" (fbtrace_id {trace})"));
        }
        let mut e = ChannelError::new(self.kind(), text).with_provider_code(self.code.to_string());
        if self.kind() == ErrorKind::RateLimited
            && let Some(d) = retry_after.or_else(|| default_retry_after(self.code))
        {
            e = e.with_retry_after(d);
        }
        e
    }

    /// The error as attached to a delivery report.
    pub fn to_provider_error(&self) -> ProviderError {
        ProviderError {
            code: self.code.to_string(),
            message: self.text(),
            kind: Some(self.kind()),
        }
    }
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WhatsApp error {}: {}", self.code, self.text())
    }
}

/// Turns a failed HTTP response into a [`ChannelError`]: by `error.code` when the body is a
/// Graph error, else by HTTP status (5xx temporary, 429 rate limited, 401/403 channel down).
///
/// ```
/// use messaging_core::ErrorKind;
/// use messaging_waba::error::error_from_response;
/// let e = error_from_response(400, None, br#"{"error":{"message":"(#131047) Re-engagement message","code":131047}}"#);
/// assert_eq!(e.kind(), ErrorKind::NeedsTemplate);
/// assert_eq!(e.provider_code(), Some("131047"));
/// assert_eq!(error_from_response(502, None, b"<html>Bad Gateway</html>").kind(), ErrorKind::Temporary);
/// ```
pub fn error_from_response(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ChannelError {
    if let Some(g) = GraphError::from_body(body) {
        return g.to_channel_error(retry_after);
    }
    let message = format!("HTTP {status} without a WhatsApp error body");
    let kind = http::StatusCode::from_u16(status)
        .map_or(ErrorKind::Unexpected, messaging_http::status_kind);
    match kind {
        ErrorKind::RateLimited => {
            ChannelError::rate_limited(message, retry_after.or(Some(Duration::from_secs(1))))
        }
        kind => ChannelError::new(kind, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code named in the issue and the reference, with the kind the cascade needs.
    #[test]
    fn every_code_maps_to_its_kind() {
        use ErrorKind::*;
        let expected: &[(i64, ErrorKind)] = &[
            (131047, NeedsTemplate),
            (131026, Unreachable),
            (131048, ChannelDown),
            (131049, Unreachable),
            (131050, Unreachable),
            (131051, InvalidContent),
            (131052, InvalidContent),
            (131053, InvalidContent),
            (131056, RateLimited),
            (130429, RateLimited),
            (130472, Unreachable),
            (131000, Temporary),
            (131005, ChannelDown),
            (131008, InvalidContent),
            (131009, InvalidContent),
            (131016, Temporary),
            (131021, Unreachable),
            (131031, ChannelDown),
            (131042, ChannelDown),
            (132000, InvalidContent),
            (132001, InvalidContent),
            (132005, InvalidContent),
            (132007, InvalidContent),
            (132012, InvalidContent),
            (132015, InvalidContent),
            (132016, InvalidContent),
            (133010, ChannelDown),
            (100, InvalidContent),
            (190, ChannelDown),
            (368, ChannelDown),
            (4, RateLimited),
            (80007, RateLimited),
            (613, RateLimited),
            (0, ChannelDown),
            (1, Temporary),
            (2, Temporary),
            (3, ChannelDown),
            (10, ChannelDown),
            (200, ChannelDown),
            (299, ChannelDown),
            (33, ChannelDown),
            (130403, Unreachable),
            (130497, Unreachable),
            (131030, Unreachable),
            (131037, ChannelDown),
            (131045, ChannelDown),
            (131057, Temporary),
            (131063, InvalidContent),
            (131064, ChannelDown),
            (132068, InvalidContent),
            (132069, RateLimited),
            (133004, Temporary),
            (135000, InvalidContent),
            (2388293, InvalidContent),
        ];
        for (code, kind) in expected {
            assert_eq!(kind_for_code(*code), *kind, "code {code}");
        }
        // The table and the expectations agree on every listed code.
        for (code, kind, meaning) in ERROR_TABLE {
            assert!(!meaning.is_empty());
            assert_eq!(kind_for_known_code(*code), Some(*kind));
        }
    }

    #[test]
    fn unknown_code_is_unexpected_and_keeps_the_code() {
        for code in [131014, 300, 999_999, -5] {
            assert_eq!(kind_for_known_code(code), None, "{code}");
            let e = GraphError::from_body(format!(r#"{{"error":{{"code":{code}}}}}"#).as_bytes())
                .unwrap()
                .to_channel_error(None);
            assert_eq!(e.kind(), ErrorKind::Unexpected);
            assert_eq!(e.provider_code(), Some(code.to_string().as_str()));
        }
    }

    #[test]
    fn decided_by_code_not_by_http_status() {
        let body = br#"{"error":{"message":"(#131026) Message Undeliverable","code":131026}}"#;
        for status in [200, 400, 403, 429, 500] {
            assert_eq!(
                error_from_response(status, None, body).kind(),
                ErrorKind::Unreachable
            );
        }
    }

    #[test]
    fn throughput_errors_carry_a_wait() {
        let e = error_from_response(
            400,
            None,
            br#"{"error":{"message":"(#130429) Rate limit hit","code":130429}}"#,
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
        let e = error_from_response(
            400,
            Some(Duration::from_secs(9)),
            br#"{"error":{"message":"pair","code":"131056"}}"#,
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(9)));
        let e = error_from_response(400, None, br#"{"error":{"code":131056}}"#);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(6)));
    }

    #[test]
    fn non_graph_bodies_fall_back_to_status() {
        assert_eq!(
            error_from_response(401, None, b"").kind(),
            ErrorKind::ChannelDown
        );
        assert_eq!(
            error_from_response(503, None, b"busy").kind(),
            ErrorKind::Temporary
        );
        assert_eq!(
            error_from_response(429, None, b"{}").kind(),
            ErrorKind::RateLimited
        );
        assert_eq!(
            error_from_response(418, None, b"[]").kind(),
            ErrorKind::Unexpected
        );
        assert_eq!(error_from_response(400, None, b"{}").provider_code(), None);
    }

    #[test]
    fn error_data_as_string_and_text() {
        let e = GraphError::from_body(
            br#"{"error":{"message":"Invalid parameter","code":100,"error_data":"Template name does not exist"}}"#,
        )
        .unwrap();
        assert_eq!(e.text(), "Invalid parameter: Template name does not exist");
        let p = e.to_provider_error();
        assert_eq!(p.code, "100");
        assert_eq!(p.kind, Some(ErrorKind::InvalidContent));
    }
}
