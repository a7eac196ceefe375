//! # messaging-http
//!
//! The adapter kit: the HTTP plumbing every messenger adapter of the `messaging` family
//! (`messaging-waba`, `-telegram`, `-max`, `-sms`) needs, written once so that all four behave
//! the same. `messaging-core` stays free of HTTP; this crate is where `reqwest` meets the core's
//! [`ChannelError`](messaging_core::ChannelError).
//!
//! | piece | what it does |
//! |---|---|
//! | [`transport_error`] | a `reqwest::Error` as a `ChannelError` with the right [`ErrorKind`](messaging_core::ErrorKind) (timeouts, refused and dropped connections are `Temporary`, a request that cannot be built is `ChannelDown`), with the URL stripped (Telegram's holds the bot token) |
//! | [`execute`] / [`Reply`] | send a request and read the whole answer, its status and its bounded `Retry-After`; transport failures through [`transport_error`] |
//! | [`parse_retry_after`] / [`retry_after`] | `Retry-After` as delta-seconds or an HTTP date, relative to the adapter's [`Clock`](messaging_core::Clock), never longer than [`MAX_RETRY_AFTER`] (one hour) |
//! | [`status_kind`] | the kind an HTTP error status means when the body says nothing better (429, 401/403, 408/5xx) |
//! | [`retry_after_secs`] | the same bound for seconds a provider puts in its body (Telegram's `parameters.retry_after`) |
//! | [`Redactor`] | the adapter's secrets scrubbed from text a provider echoes (raw, percent-encoded, base64), and from a [`ChannelError`](messaging_core::ChannelError) |
//! | [`ClientConfig`] | the user's own `reqwest::Client`, or a default one: rustls, certificates always verified, a connect timeout, optional extra roots and `User-Agent` |
//!
//! Adapters keep what is theirs: reading a provider's error bodies, its codes, its pacing.
//!
//! ```no_run
//! use std::time::Duration;
//! use messaging_core::{ChannelError, SystemClock};
//! use messaging_http::{ClientConfig, execute};
//!
//! # async fn run(own: Option<reqwest::Client>) -> Result<(), ChannelError> {
//! // The user's client if they gave one, else the default.
//! let client = ClientConfig::new().timeout(Duration::from_secs(30)).client(own)?;
//! let request = client
//!     .post("https://api.example.com/messages")
//!     .timeout(Duration::from_secs(5));
//! let reply = execute(request, "example", &SystemClock).await?;
//! if reply.status == http::StatusCode::TOO_MANY_REQUESTS {
//!     return Err(ChannelError::rate_limited("example: HTTP 429", reply.retry_after));
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod retry_after;
mod scrub;
mod transport;

pub use client::{ClientConfig, ClientError, DEFAULT_CONNECT_TIMEOUT};
pub use retry_after::{MAX_RETRY_AFTER, parse_retry_after, retry_after, retry_after_secs};
pub use scrub::{REDACTED, Redactor};
pub use transport::{Reply, execute, status_kind, transport_error, unreadable_success};
