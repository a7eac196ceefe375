//! Bot API error bodies and their mapping to [`ChannelError`].

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use messaging_core::{Address, ChannelError, ChannelKind, ChannelSignal, ErrorKind, Event, Signal};
use serde_json::Value;

/// What a Bot API error was about, read from `error_code` first and `description` second.
///
/// Description texts come from the server and are not a stable contract, so every reason has a
/// safe fallback by code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiErrorReason {
    /// 403 `Forbidden: bot was blocked by the user`.
    BotBlocked,
    /// 403 `Forbidden: user is deactivated` (the account was deleted).
    UserDeactivated,
    /// 403 `Forbidden: bot can't initiate conversation with a user` (no /start yet).
    CantInitiateConversation,
    /// 403 `Forbidden: bot was kicked from the ... chat` or `bot is not a member of ...`.
    BotKicked,
    /// Any other 403.
    Forbidden,
    /// 400 `Bad Request: chat not found` or `private chat not found`.
    ChatNotFound,
    /// 400 `Bad Request: group chat was migrated/upgraded to a supergroup chat`.
    GroupMigrated,
    /// 400 `Bad Request: message is too long`.
    MessageTooLong,
    /// 400 `Bad Request: message text is empty`.
    MessageTextEmpty,
    /// 400 `Bad Request: can't parse entities: ...`.
    CantParseEntities,
    /// Any other 400.
    BadRequest,
    /// 401 `Unauthorized`: the token is wrong or revoked.
    Unauthorized,
    /// 404 `Not Found`: a bad path (malformed token, wrong base URL, unknown method).
    NotFound,
    /// 409 `Conflict`: another `getUpdates` or an active webhook.
    Conflict,
    /// 429 `Too Many Requests`.
    TooManyRequests,
    /// 5xx.
    ServerError,
    /// Anything else.
    Other,
}

/// A Bot API error, as the server sent it.
///
/// Every [`ChannelError`] this crate builds from an error body keeps one as its
/// [`source`](std::error::Error::source); read it back with [`api_error`].
///
/// ```
/// use messaging_core::ErrorKind;
/// use messaging_telegram::{ApiError, ApiErrorReason};
/// let body = br#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#;
/// let e = ApiError::from_response(403, None, body);
/// assert_eq!(e.reason, ApiErrorReason::BotBlocked);
/// let ce = e.into_channel_error();
/// assert_eq!(ce.kind(), ErrorKind::Unreachable);
/// assert!(messaging_telegram::is_blocked(&ce));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The code the error is classified by: `error_code` from the body, else the HTTP status,
    /// else one read from the description's prefix (`Forbidden:` is 403). `None` when nothing tells.
    pub code: Option<i64>,
    /// The HTTP status, when the error came over HTTP.
    pub http_status: Option<u16>,
    /// The server's `description`, unchanged (or a note saying the body was not a Bot API answer).
    pub description: String,
    /// Seconds to wait: `parameters.retry_after`, else the `Retry-After` header, else the
    /// description's `retry after N`; never more than
    /// [`messaging_http::MAX_RETRY_AFTER`] (an hour).
    pub retry_after: Option<u64>,
    /// `parameters.migrate_to_chat_id`: the supergroup a group became.
    pub migrate_to_chat_id: Option<i64>,
    /// What it is about.
    pub reason: ApiErrorReason,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(c) => write!(f, "telegram error {c}: {}", self.description)?,
            None => write!(f, "telegram error: {}", self.description)?,
        }
        if let Some(id) = self.migrate_to_chat_id {
            write!(f, " (migrate_to_chat_id={id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

fn int_of(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn code_from_description(desc: &str) -> Option<i64> {
    let d = desc.trim_start().to_ascii_lowercase();
    [
        ("forbidden", 403),
        ("bad request", 400),
        ("unauthorized", 401),
        ("too many requests", 429),
        ("not found", 404),
        ("conflict", 409),
        ("internal server error", 500),
        ("bad gateway", 502),
        ("gateway timeout", 504),
    ]
    .iter()
    .find(|(p, _)| d.starts_with(p))
    .map(|&(_, c)| c)
}

fn retry_after_from_description(desc: &str) -> Option<Duration> {
    let lower = desc.to_ascii_lowercase();
    let idx = lower.find("retry after")?;
    let rest = lower.get(idx + "retry after".len()..)?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    // Digits only, so no date: the time is never read.
    messaging_http::parse_retry_after(&digits, DateTime::<Utc>::UNIX_EPOCH)
}

/// The `Retry-After` header of an answer, read by the kit (bounded; a date relative to the
/// system clock).
fn header_wait(header: Option<&str>) -> Option<Duration> {
    header.and_then(|h| {
        messaging_http::parse_retry_after(
            h,
            messaging_core::Clock::now(&messaging_core::SystemClock),
        )
    })
}

fn classify(code: Option<i64>, description: &str) -> ApiErrorReason {
    let d = description.to_ascii_lowercase();
    match code {
        Some(403) => {
            if d.contains("blocked by the user") {
                ApiErrorReason::BotBlocked
            } else if d.contains("deactivated") {
                ApiErrorReason::UserDeactivated
            } else if d.contains("initiate conversation") {
                ApiErrorReason::CantInitiateConversation
            } else if d.contains("was kicked") || d.contains("not a member") {
                ApiErrorReason::BotKicked
            } else {
                ApiErrorReason::Forbidden
            }
        }
        Some(400) => {
            if d.contains("chat not found") {
                ApiErrorReason::ChatNotFound
            } else if d.contains("supergroup") && (d.contains("migrated") || d.contains("upgraded"))
            {
                ApiErrorReason::GroupMigrated
            } else if d.contains("too long") {
                ApiErrorReason::MessageTooLong
            } else if d.contains("text is empty") {
                ApiErrorReason::MessageTextEmpty
            } else if d.contains("can't parse entities") {
                ApiErrorReason::CantParseEntities
            } else {
                ApiErrorReason::BadRequest
            }
        }
        Some(401) => ApiErrorReason::Unauthorized,
        Some(404) => ApiErrorReason::NotFound,
        Some(409) => ApiErrorReason::Conflict,
        Some(429) => ApiErrorReason::TooManyRequests,
        Some(c) if (500..600).contains(&c) => ApiErrorReason::ServerError,
        _ => ApiErrorReason::Other,
    }
}

impl ApiError {
    /// Reads an error from an HTTP answer: its status, its `Retry-After` header (if any) and its
    /// raw body. Never fails: a body that is not a Bot API answer becomes an error that says so.
    pub fn from_response(http_status: u16, retry_after_header: Option<&str>, body: &[u8]) -> Self {
        Self::from_answer(http_status, header_wait(retry_after_header), body)
    }

    /// [`from_response`](Self::from_response) with the header already read.
    pub(crate) fn from_answer(
        http_status: u16,
        header_wait: Option<Duration>,
        body: &[u8],
    ) -> Self {
        let status = (http_status != 0).then_some(http_status);
        match serde_json::from_slice::<Value>(body) {
            Ok(v @ Value::Object(_)) => Self::from_parsed(status, header_wait, &v),
            _ => {
                let code = status.filter(|s| !(200..300).contains(s)).map(i64::from);
                let description = match status {
                    Some(s) => format!("not a Bot API answer (HTTP {s}, {} bytes)", body.len()),
                    None => format!("not a Bot API answer ({} bytes)", body.len()),
                };
                ApiError {
                    code,
                    http_status: status,
                    retry_after: header_wait.map(|d| d.as_secs()),
                    migrate_to_chat_id: None,
                    reason: classify(code, ""),
                    description,
                }
            }
        }
    }

    /// Reads an error from an already parsed body (`{"ok":false,"error_code":..,"description":..}`).
    pub fn from_body(
        http_status: Option<u16>,
        retry_after_header: Option<&str>,
        body: &Value,
    ) -> Self {
        Self::from_parsed(http_status, header_wait(retry_after_header), body)
    }

    /// [`from_body`](Self::from_body) with the header already read.
    pub(crate) fn from_parsed(
        http_status: Option<u16>,
        header_wait: Option<Duration>,
        body: &Value,
    ) -> Self {
        let description = body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let code = int_of(body.get("error_code"))
            .or_else(|| {
                http_status
                    .filter(|s| !(200..300).contains(s))
                    .map(i64::from)
            })
            .or_else(|| code_from_description(&description));
        let params = body.get("parameters");
        let retry_after = int_of(params.and_then(|p| p.get("retry_after")))
            .and_then(messaging_http::retry_after_secs)
            .or(header_wait)
            .or_else(|| {
                if code == Some(429) {
                    retry_after_from_description(&description)
                } else {
                    None
                }
            })
            .map(|d| d.as_secs());
        let migrate_to_chat_id = int_of(params.and_then(|p| p.get("migrate_to_chat_id")));
        let mut reason = classify(code, &description);
        if migrate_to_chat_id.is_some() && matches!(reason, ApiErrorReason::BadRequest) {
            reason = ApiErrorReason::GroupMigrated;
        }
        ApiError {
            code,
            http_status,
            description,
            retry_after,
            migrate_to_chat_id,
            reason,
        }
    }

    /// The [`ErrorKind`] the cascade engine acts on (see the crate docs' table).
    pub fn kind(&self) -> ErrorKind {
        use ApiErrorReason as R;
        match self.reason {
            R::BotBlocked
            | R::UserDeactivated
            | R::CantInitiateConversation
            | R::BotKicked
            | R::Forbidden
            | R::ChatNotFound
            | R::GroupMigrated => ErrorKind::Unreachable,
            R::MessageTooLong | R::MessageTextEmpty | R::CantParseEntities | R::BadRequest => {
                ErrorKind::InvalidContent
            }
            R::Unauthorized | R::NotFound => ErrorKind::ChannelDown,
            R::TooManyRequests => ErrorKind::RateLimited,
            R::ServerError => ErrorKind::Temporary,
            R::Conflict | R::Other => ErrorKind::Unexpected,
        }
    }

    /// Whether the person blocked the bot or deleted their account (the identity link should
    /// be marked inactive).
    pub fn is_blocked(&self) -> bool {
        matches!(
            self.reason,
            ApiErrorReason::BotBlocked
                | ApiErrorReason::UserDeactivated
                | ApiErrorReason::BotKicked
        )
    }

    /// The [`ChannelError`] for this error, keeping `self` as its source.
    pub fn into_channel_error(self) -> ChannelError {
        let mut message = if self.description.is_empty() {
            "telegram error without description".to_owned()
        } else {
            self.description.clone()
        };
        if let Some(id) = self.migrate_to_chat_id {
            message.push_str(&format!(" (migrate_to_chat_id={id})"));
        }
        let code = self
            .code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        let mut e = ChannelError::new(self.kind(), message).with_provider_code(code);
        if let Some(s) = self.retry_after {
            // Bounded again: the field is public and may have been set by hand.
            e = e.with_retry_after(Duration::from_secs(s).min(messaging_http::MAX_RETRY_AFTER));
        }
        e.with_source(self)
    }
}

/// The Bot API error behind a [`ChannelError`], if it came from an error body.
pub fn api_error(err: &ChannelError) -> Option<&ApiError> {
    std::error::Error::source(err)?.downcast_ref::<ApiError>()
}

/// Whether a failed send says the person blocked the bot (403 `bot was blocked by the user`),
/// deleted their account (403 `user is deactivated`) or removed the bot from the chat.
///
/// ```
/// use messaging_core::ChannelError;
/// use messaging_telegram::{ApiError, is_blocked};
/// let blocked = ApiError::from_response(403, None,
///     br#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#);
/// assert!(is_blocked(&blocked.into_channel_error()));
/// assert!(!is_blocked(&ChannelError::unreachable("not a Telegram error")));
/// ```
pub fn is_blocked(err: &ChannelError) -> bool {
    api_error(err).is_some_and(ApiError::is_blocked)
}

/// The `Signal::Blocked` event a failed send implies for `address`, so that the identity link
/// is marked inactive; `None` when the error does not say the person blocked the bot.
pub fn blocked_signal(err: &ChannelError, address: &Address, at: DateTime<Utc>) -> Option<Event> {
    if !is_blocked(err) {
        return None;
    }
    Some(Event::Signal(ChannelSignal::new(
        ChannelKind::Telegram,
        at,
        Signal::Blocked {
            from: address.to_string(),
            address: address.clone(),
        },
    )))
}

/// The supergroup id a group chat became, when a send failed with 400 "group chat was migrated".
/// Persist it as the chat's new address and send again.
pub fn migrated_to(err: &ChannelError) -> Option<i64> {
    api_error(err).and_then(|e| e.migrate_to_chat_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, header: Option<&str>, body: &str) -> ChannelError {
        ApiError::from_response(status, header, body.as_bytes()).into_channel_error()
    }

    #[test]
    fn synthetic_table() {
        struct Case {
            status: u16,
            header: Option<&'static str>,
            body: &'static str,
            kind: ErrorKind,
            code: &'static str,
            blocked: bool,
            retry: Option<u64>,
        }
        let cases = [
            Case {
                status: 403,
                header: None,
                body: r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#,
                kind: ErrorKind::Unreachable,
                code: "403",
                blocked: true,
                retry: None,
            },
            Case {
                status: 403,
                header: None,
                body: r#"{"ok":false,"error_code":403,"description":"Forbidden: user is deactivated"}"#,
                kind: ErrorKind::Unreachable,
                code: "403",
                blocked: true,
                retry: None,
            },
            Case {
                status: 403,
                header: None,
                body: r#"{"ok":false,"error_code":403,"description":"Forbidden: bot can't initiate conversation with a user"}"#,
                kind: ErrorKind::Unreachable,
                code: "403",
                blocked: false,
                retry: None,
            },
            Case {
                status: 403,
                header: None,
                body: r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was kicked from the supergroup chat"}"#,
                kind: ErrorKind::Unreachable,
                code: "403",
                blocked: true,
                retry: None,
            },
            Case {
                status: 400,
                header: None,
                body: r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
                kind: ErrorKind::Unreachable,
                code: "400",
                blocked: false,
                retry: None,
            },
            Case {
                status: 400,
                header: None,
                body: r#"{"ok":false,"error_code":400,"description":"Bad Request: private chat not found"}"#,
                kind: ErrorKind::Unreachable,
                code: "400",
                blocked: false,
                retry: None,
            },
            Case {
                status: 400,
                header: None,
                body: r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890}}"#,
                kind: ErrorKind::Unreachable,
                code: "400",
                blocked: false,
                retry: None,
            },
            Case {
                status: 400,
                header: None,
                body: r#"{"ok":false,"error_code":400,"description":"Bad Request: message is too long"}"#,
                kind: ErrorKind::InvalidContent,
                code: "400",
                blocked: false,
                retry: None,
            },
            Case {
                status: 400,
                header: None,
                body: r#"{"ok":false,"error_code":400,"description":"Bad Request: can't parse entities: unexpected end"}"#,
                kind: ErrorKind::InvalidContent,
                code: "400",
                blocked: false,
                retry: None,
            },
            Case {
                status: 401,
                header: None,
                body: r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
                kind: ErrorKind::ChannelDown,
                code: "401",
                blocked: false,
                retry: None,
            },
            Case {
                status: 404,
                header: None,
                body: r#"{"ok":false,"error_code":404,"description":"Not Found"}"#,
                kind: ErrorKind::ChannelDown,
                code: "404",
                blocked: false,
                retry: None,
            },
            Case {
                status: 429,
                header: Some("7"),
                body: r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7"}"#,
                kind: ErrorKind::RateLimited,
                code: "429",
                blocked: false,
                retry: Some(7),
            },
            Case {
                status: 429,
                header: Some("99"),
                body: r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5","parameters":{"retry_after":5}}"#,
                kind: ErrorKind::RateLimited,
                code: "429",
                blocked: false,
                retry: Some(5),
            },
            Case {
                status: 429,
                header: None,
                body: r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 12"}"#,
                kind: ErrorKind::RateLimited,
                code: "429",
                blocked: false,
                retry: Some(12),
            },
            Case {
                status: 500,
                header: None,
                body: r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#,
                kind: ErrorKind::Temporary,
                code: "500",
                blocked: false,
                retry: None,
            },
            Case {
                status: 502,
                header: None,
                body: "<html>Bad Gateway</html>",
                kind: ErrorKind::Temporary,
                code: "502",
                blocked: false,
                retry: None,
            },
            Case {
                status: 409,
                header: None,
                body: r#"{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request"}"#,
                kind: ErrorKind::Unexpected,
                code: "409",
                blocked: false,
                retry: None,
            },
            Case {
                status: 418,
                header: None,
                body: r#"{"ok":false,"error_code":418,"description":"I'm a teapot"}"#,
                kind: ErrorKind::Unexpected,
                code: "418",
                blocked: false,
                retry: None,
            },
            Case {
                status: 200,
                header: None,
                body: "not json",
                kind: ErrorKind::Unexpected,
                code: "unknown",
                blocked: false,
                retry: None,
            },
            Case {
                status: 200,
                header: None,
                body: r#"{"ok":false}"#,
                kind: ErrorKind::Unexpected,
                code: "unknown",
                blocked: false,
                retry: None,
            },
        ];
        for c in cases {
            let e = map(c.status, c.header, c.body);
            assert_eq!(e.kind(), c.kind, "{}", c.body);
            assert_eq!(e.provider_code(), Some(c.code), "{}", c.body);
            assert_eq!(is_blocked(&e), c.blocked, "{}", c.body);
            assert_eq!(e.retry_after().map(|d| d.as_secs()), c.retry, "{}", c.body);
        }
    }

    #[test]
    fn unknown_error_keeps_the_raw_description() {
        let e = map(
            418,
            None,
            r#"{"ok":false,"error_code":418,"description":"I'm a teapot"}"#,
        );
        assert_eq!(e.message(), "I'm a teapot");
        assert_eq!(
            api_error(&e).map(|a| a.description.as_str()),
            Some("I'm a teapot")
        );
    }

    #[test]
    fn migration_carries_the_new_chat_id() {
        let e = map(
            400,
            None,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890}}"#,
        );
        assert_eq!(migrated_to(&e), Some(-1001234567890));
        assert!(e.message().contains("-1001234567890"));
    }

    #[test]
    fn blocked_signal_only_for_blocks() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let blocked = map(
            403,
            None,
            r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#,
        );
        let ev = blocked_signal(&blocked, &Address::Telegram(42), at).expect("a signal");
        let v = serde_json::to_value(&ev).expect("serializes");
        assert_eq!(v["kind"], "signal");
        assert_eq!(v["signal"], "blocked");
        assert_eq!(v["from"], "42");
        let other = map(
            400,
            None,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
        );
        assert!(blocked_signal(&other, &Address::Telegram(42), at).is_none());
    }

    #[test]
    fn description_prefix_gives_the_code_when_error_code_is_missing() {
        let e = map(
            0,
            None,
            r#"{"ok":false,"description":"Forbidden: bot was blocked by the user"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        assert!(is_blocked(&e));
    }

    #[test]
    fn absurd_waits_are_cut_to_the_kits_bound() {
        let hour = Some(messaging_http::MAX_RETRY_AFTER);
        let e = map(
            429,
            None,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests","parameters":{"retry_after":9999999999999}}"#,
        );
        assert_eq!(e.retry_after(), hour);
        let e = map(429, Some("99999999999999999999999"), "not json");
        assert_eq!(e.retry_after(), hour);
        let e = map(
            429,
            None,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 99999999999999999999"}"#,
        );
        assert_eq!(e.retry_after(), hour);
        // A negative wait is no wait; the header then counts.
        let e = map(
            429,
            Some("3"),
            r#"{"ok":false,"error_code":429,"description":"x","parameters":{"retry_after":-5}}"#,
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }
}
