//! One request, start to end: send it, read the whole answer and its `Retry-After`, and turn a
//! transport failure into a [`ChannelError`] that carries no URL.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use messaging_core::{ChannelError, Clock, ErrorKind};
use tracing::Instrument;

/// An HTTP answer, read in full. What it means is the adapter's business: a 4xx with a JSON body
/// is often the provider's error, which only the adapter can read.
///
/// `Debug` shows the body's length, not the body.
///
/// ```
/// use messaging_http::Reply;
/// let r = Reply::new(http::StatusCode::OK, r#"{"ok":true}"#);
/// assert!(r.status.is_success());
/// assert_eq!(r.retry_after, None);
/// assert_eq!(&r.body[..], br#"{"ok":true}"#);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Reply {
    /// The HTTP status.
    pub status: http::StatusCode,
    /// The `Retry-After` header, bounded ([`retry_after`](crate::retry_after)).
    pub retry_after: Option<Duration>,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// An answer with this status and body and no `Retry-After` (adapters' parser tests).
    pub fn new(status: http::StatusCode, body: impl Into<Bytes>) -> Self {
        Reply {
            status,
            retry_after: None,
            body: body.into(),
        }
    }

    /// The same answer with this `Retry-After`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let r = messaging_http::Reply::new(http::StatusCode::TOO_MANY_REQUESTS, "")
    ///     .with_retry_after(Some(Duration::from_secs(3)));
    /// assert_eq!(r.retry_after, Some(Duration::from_secs(3)));
    /// ```
    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("retry_after", &self.retry_after)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Sends `request` and reads the whole answer, whatever its status. `Retry-After` is read with
/// [`retry_after`](crate::retry_after), dates relative to `clock`. A failure to send or to read
/// the answer is [`transport_error`]`(context, …)`.
///
/// Timeouts are the request's own: set them on `request` (`RequestBuilder::timeout`) or on the
/// client.
///
/// Each request is timed into the histogram
/// [`PROVIDER_REQUEST_DURATION`](messaging_core::metrics::PROVIDER_REQUEST_DURATION), labelled
/// `request` = `context` and `status` = the answer's class (`2xx` ... `5xx`, or `error` when no
/// answer was read), and runs in a DEBUG span `provider request` with the fields `request` and
/// `http.response.status_code` (never the URL: it may hold a token).
///
/// ```no_run
/// use messaging_core::SystemClock;
/// # async fn run() -> Result<(), messaging_core::ChannelError> {
/// let client = messaging_http::ClientConfig::new().build()?;
/// let reply = messaging_http::execute(client.get("https://example.com/"), "example", &SystemClock).await?;
/// println!("HTTP {}, {} bytes", reply.status, reply.body.len());
/// # Ok(()) }
/// ```
pub async fn execute(
    request: reqwest::RequestBuilder,
    context: &str,
    clock: &dyn Clock,
) -> Result<Reply, ChannelError> {
    let span = tracing::debug_span!(
        "provider request",
        request = context,
        http.response.status_code = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let result = read_answer(request, context, clock)
        .instrument(span.clone())
        .await;
    let class = match &result {
        Ok(reply) => {
            span.record("http.response.status_code", reply.status.as_u16());
            status_class(reply.status)
        }
        Err(_) => "error",
    };
    metrics::histogram!(
        messaging_core::metrics::PROVIDER_REQUEST_DURATION,
        messaging_core::metrics::REQUEST => context.to_owned(),
        messaging_core::metrics::STATUS => class,
    )
    .record(started.elapsed().as_secs_f64());
    result
}

async fn read_answer(
    request: reqwest::RequestBuilder,
    context: &str,
    clock: &dyn Clock,
) -> Result<Reply, ChannelError> {
    let resp = request
        .send()
        .await
        .map_err(|e| transport_error(context, e))?;
    let status = resp.status();
    let retry_after = crate::retry_after(resp.headers(), clock.now());
    let body = resp
        .bytes()
        .await
        .map_err(|e| transport_error(context, e))?;
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

/// The class of an HTTP status, as the `status` label of the request histogram.
fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A `reqwest` failure as a [`ChannelError`] whose message is `"{context}: {what happened}"`.
///
/// The URL is stripped first (Telegram's holds the bot token, SMS.ru's query may hold the API
/// id), and the message never includes a request body; the stripped error is kept as the
/// source. The kind says what the engine should do:
///
/// Once the connection is up the request may have reached the provider, so a failure after
/// that point is [`ErrorKind::OutcomeUnknown`]: the provider may have accepted the message and
/// only its answer was lost. Sending again could deliver it twice, so the engine decides by the
/// step's policy instead of retrying blindly.
///
/// | failure | kind | message |
/// |---|---|---|
/// | refused or failed connection, TLS handshake, timeout while connecting | [`ErrorKind::Temporary`] | `could not connect` |
/// | timeout waiting for the answer | [`ErrorKind::OutcomeUnknown`] | `request timed out; the provider may have accepted it` |
/// | connection dropped while reading the body | [`ErrorKind::OutcomeUnknown`] | `connection dropped while reading the answer; the provider may have accepted it` |
/// | the request could not be built (bad URL or header value from the configuration) | [`ErrorKind::ChannelDown`] | `could not build the request` |
/// | a redirect loop | [`ErrorKind::Unexpected`] | `too many redirects` |
/// | anything else on the way (connection reset after it was up) | [`ErrorKind::OutcomeUnknown`] | `request failed (connection dropped?); the provider may have accepted it` |
///
/// ```no_run
/// use messaging_core::ErrorKind;
/// # async fn run() {
/// let client = reqwest::Client::new();
/// let e = client.get("http://127.0.0.1:9/bot123:SECRET/getMe").send().await.unwrap_err();
/// let e = messaging_http::transport_error("telegram getMe", e);
/// assert_eq!(e.kind(), ErrorKind::Temporary); // nothing listens on port 9: nothing was sent
/// assert!(!format!("{e} {e:?}").contains("SECRET"));
/// # }
/// ```
pub fn transport_error(context: &str, error: reqwest::Error) -> ChannelError {
    let error = error.without_url();
    // Connect failures first: a connect timeout is also a timeout, but nothing was sent.
    let (kind, what) = if error.is_connect() {
        (ErrorKind::Temporary, "could not connect")
    } else if error.is_timeout() {
        (
            ErrorKind::OutcomeUnknown,
            "request timed out; the provider may have accepted it",
        )
    } else if error.is_body() || error.is_decode() {
        (
            ErrorKind::OutcomeUnknown,
            "connection dropped while reading the answer; the provider may have accepted it",
        )
    } else if error.is_builder() {
        // Every request of this channel would fail the same way: a configuration error.
        (ErrorKind::ChannelDown, "could not build the request")
    } else if error.is_redirect() {
        (ErrorKind::Unexpected, "too many redirects")
    } else {
        (
            ErrorKind::OutcomeUnknown,
            "request failed (connection dropped?); the provider may have accepted it",
        )
    };
    ChannelError::new(kind, format!("{context}: {what}")).with_source(error)
}

/// What an HTTP error status says when the body says nothing better: 429 rate limited, 401 and
/// 403 the channel's credentials or account (channel down), 408 and 5xx a passing failure,
/// anything else not understood.
///
/// Providers whose statuses mean something else (Max answers 403 when the person blocked the bot)
/// map their own.
///
/// ```
/// use messaging_core::ErrorKind;
/// use messaging_http::status_kind;
/// assert_eq!(status_kind(http::StatusCode::TOO_MANY_REQUESTS), ErrorKind::RateLimited);
/// assert_eq!(status_kind(http::StatusCode::UNAUTHORIZED), ErrorKind::ChannelDown);
/// assert_eq!(status_kind(http::StatusCode::BAD_GATEWAY), ErrorKind::Temporary);
/// assert_eq!(status_kind(http::StatusCode::BAD_REQUEST), ErrorKind::Unexpected);
/// ```
pub fn status_kind(status: http::StatusCode) -> ErrorKind {
    match status.as_u16() {
        429 => ErrorKind::RateLimited,
        401 | 403 => ErrorKind::ChannelDown,
        408 | 500..=599 => ErrorKind::Temporary,
        _ => ErrorKind::Unexpected,
    }
}

/// A 2xx answer to a send that could not be read as the provider's success (no JSON, no
/// message id): the provider most likely accepted the message, but we cannot tell its id, so
/// the outcome is [`ErrorKind::OutcomeUnknown`], never a refusal. `detail` says what was wrong
/// with the answer; it must hold no body text (a body may echo a secret).
///
/// ```
/// use messaging_core::ErrorKind;
/// let e = messaging_http::unreadable_success("telegram sendMessage", "no message_id");
/// assert_eq!(e.kind(), ErrorKind::OutcomeUnknown);
/// assert_eq!(
///     e.message(),
///     "telegram sendMessage: the provider answered success but the answer could not be read (no message_id); it may have accepted the message"
/// );
/// ```
pub fn unreadable_success(context: &str, detail: impl fmt::Display) -> ChannelError {
    ChannelError::outcome_unknown(format!(
        "{context}: the provider answered success but the answer could not be read ({detail}); it may have accepted the message"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::ManualClock;
    use std::error::Error as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const SECRET: &str = "123456:SECRET-token";

    /// Everything an error shows: `Display`, `Debug` and each source in the chain.
    fn everything(e: &ChannelError) -> String {
        let mut out = format!("{e} {e:?}");
        let mut src = e.source();
        while let Some(s) = src {
            out.push_str(&format!(" {s} {s:?}"));
            src = s.source();
        }
        out
    }

    /// No token or path anywhere in the chain (a connect error's source may name the socket
    /// address, which is no secret), and no address in what the error itself prints.
    fn assert_clean(e: &ChannelError) {
        let all = everything(e);
        assert!(!all.contains("SECRET"), "{all}");
        assert!(!all.contains("/bot"), "{all}");
        let own = format!("{e} {e:?}");
        assert!(!own.contains("127.0.0.1"), "{own}");
    }

    /// A server that answers every connection with `answer` (raw HTTP) after `delay`, then
    /// closes it.
    async fn server(answer: &'static str, delay: Duration) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        format!("http://{addr}/bot{SECRET}/sendMessage")
    }

    #[test]
    fn status_kinds() {
        for (code, kind) in [
            (429, ErrorKind::RateLimited),
            (401, ErrorKind::ChannelDown),
            (403, ErrorKind::ChannelDown),
            (408, ErrorKind::Temporary),
            (500, ErrorKind::Temporary),
            (599, ErrorKind::Temporary),
            (400, ErrorKind::Unexpected),
            (404, ErrorKind::Unexpected),
            (200, ErrorKind::Unexpected),
        ] {
            assert_eq!(
                status_kind(http::StatusCode::from_u16(code).unwrap()),
                kind,
                "{code}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_temporary_and_holds_no_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let e = reqwest::Client::new()
            .get(format!("http://{addr}/bot{SECRET}/getMe"))
            .send()
            .await
            .unwrap_err();
        let e = transport_error("telegram getMe", e);
        assert_eq!(e.kind(), ErrorKind::Temporary);
        assert_eq!(e.message(), "telegram getMe: could not connect");
        assert!(e.source().is_some());
        assert_clean(&e);
    }

    #[tokio::test]
    async fn a_timeout_waiting_for_the_answer_is_an_unknown_outcome() {
        let url = server("HTTP/1.1 200 OK\r\n\r\n", Duration::from_secs(5)).await;
        let e = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_millis(100))
            .send()
            .await
            .unwrap_err();
        let e = transport_error("smsru", e);
        assert_eq!(e.kind(), ErrorKind::OutcomeUnknown);
        assert_eq!(
            e.message(),
            "smsru: request timed out; the provider may have accepted it"
        );
        assert_clean(&e);
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_unknown_outcome() {
        let url = server(
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly a few bytes",
            Duration::ZERO,
        )
        .await;
        let e = execute(
            reqwest::Client::new().get(url),
            "max",
            &ManualClock::at_unix(0),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutcomeUnknown);
        assert_eq!(
            e.message(),
            "max: connection dropped while reading the answer; the provider may have accepted it"
        );
        assert_clean(&e);
    }

    #[tokio::test]
    async fn a_connection_closed_after_the_request_was_read_is_an_unknown_outcome() {
        // The provider read the whole request (and may have acted on it), then hung up.
        let url = server("", Duration::ZERO).await;
        let e = execute(
            reqwest::Client::new().post(url).body("{}"),
            "waba",
            &ManualClock::at_unix(0),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
        assert!(e.kind().may_have_been_sent());
        assert_clean(&e);
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_built_is_a_configuration_error() {
        let e = reqwest::Client::new()
            .get(format!("http://[::1/bot{SECRET}"))
            .send()
            .await
            .unwrap_err();
        let e = transport_error("waba", e);
        assert_eq!(e.kind(), ErrorKind::ChannelDown);
        assert_eq!(e.message(), "waba: could not build the request");
        assert!(!everything(&e).contains("SECRET"), "{}", everything(&e));
    }

    #[tokio::test]
    async fn execute_reads_any_status_its_body_and_a_bounded_retry_after() {
        let url = server(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 99999999999\r\ncontent-length: 11\r\n\r\n{\"ok\":false",
            Duration::ZERO,
        )
        .await;
        let r = execute(
            reqwest::Client::new().post(url),
            "tg",
            &ManualClock::at_unix(0),
        )
        .await
        .unwrap();
        assert_eq!(r.status, http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.retry_after, Some(crate::MAX_RETRY_AFTER));
        assert_eq!(&r.body[..], b"{\"ok\":false");
        assert_eq!(
            format!("{r:?}"),
            "Reply { status: 429, retry_after: Some(3600s), body_len: 11 }"
        );
    }

    #[test]
    fn execute_times_each_request_by_its_context_and_status_class() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            rt.block_on(async {
                let ok = server(
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
                    Duration::ZERO,
                )
                .await;
                let gone = server("", Duration::ZERO).await;
                let clock = ManualClock::at_unix(0);
                let client = reqwest::Client::new();
                execute(client.post(&ok), "telegram sendMessage", &clock)
                    .await
                    .unwrap();
                execute(client.post(&ok), "telegram sendMessage", &clock)
                    .await
                    .unwrap();
                execute(client.post(&gone), "telegram sendMessage", &clock)
                    .await
                    .unwrap_err();
            })
        });
        let mut seen: Vec<(String, usize)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                assert_eq!(
                    key.name(),
                    messaging_core::metrics::PROVIDER_REQUEST_DURATION
                );
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                // The URL (and its token) is no label.
                assert!(!labels.join(",").contains("SECRET"));
                let DebugValue::Histogram(v) = value else {
                    panic!("a histogram")
                };
                (labels.join(","), v.len())
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("request=telegram sendMessage,status=2xx".to_owned(), 2),
                ("request=telegram sendMessage,status=error".to_owned(), 1),
            ]
        );
    }

    #[tokio::test]
    async fn execute_dates_retry_after_by_the_clock() {
        let url = server(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: Thu, 01 Jan 1970 00:02:00 GMT\r\ncontent-length: 0\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let clock = ManualClock::at_unix(60);
        let r = execute(reqwest::Client::new().get(url), "x", &clock)
            .await
            .unwrap();
        assert_eq!(r.status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.retry_after, Some(Duration::from_secs(60)));
    }
}
