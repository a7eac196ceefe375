//! # messaging-max
//!
//! A [Max](https://dev.max.ru) (VK) Bot API adapter for the `messaging` cascade: the bot step of
//! WhatsApp → Telegram → **Max** → SMS. It translates Max to the `messaging-core` model and
//! nothing else.
//!
//! | piece | what it is |
//! |---|---|
//! | [`MaxBot`] / [`MaxBotBuilder`] | the [`Channel`](messaging_core::Channel): `POST /messages` with `Authorization: <token>`, text split at 4000 characters, markdown/html, inline keyboards; `GET /me`; webhook subscriptions; every request paced under Max's 30 requests per second ([`MaxBotBuilder::rate_limit`]) |
//! | [`classify_error`] | the `{code, message}` error table → [`ErrorKind`](messaging_core::ErrorKind) (see [`error`]) |
//! | [`MaxWebhookHandler`] | [`WebhookHandler`](messaging_core::webhook::WebhookHandler): `X-Max-Bot-Api-Secret` in constant time, one `Update` per POST |
//! | [`UpdateParser`] | updates → [`Event`](messaging_core::Event)s: messages, `bot_started` payloads, callbacks, blocks (table: [`parse`]) |
//! | [`Poller`] / [`MarkerStore`] | long polling with backoff and a marker committed only after hand-over ([`polling`]) |
//! | [`check_contact`] / [`share_phone_prompt`] | identity linking by shared contact (what is checked: [`contact`]; buttons: [`keyboard`]) |
//! | [`deep_link`] | `https://max.ru/<bot>?start=<payload>` with the payload rules enforced |
//!
//! | capability | value |
//! |---|---|
//! | `max_text_len` | 4000 ([`TextUnit::Chars`](messaging_core::TextUnit::Chars)), split into up to 5 messages |
//! | strongest evidence | [`Evidence::Accepted`](messaging_core::Evidence::Accepted): Max reports no delivery or read status for bots |
//! | buttons | yes (callback, link, request_contact) |
//! | can start a conversation | no: the person must start the bot first |
//!
//! ## Sending
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use messaging_core::{Address, Button, Channel, Content, OutboundMessage, Purpose};
//! use messaging_max::{MaxBot, TextFormat};
//!
//! let bot = MaxBot::builder(std::env::var("MAX_BOT_TOKEN")?)
//!     .channel_id("max")
//!     .format(TextFormat::Markdown)
//!     // Max's host may need the Russian Trusted Root CA:
//!     // .add_root_certificate_pem(&std::fs::read("russian_trusted_root_ca.pem")?)?
//!     .build()?;
//! let content = Content::text("Анна, напоминаем о приёме завтра в 10:00. Придёте?")
//!     .with_button(Button::reply("Приду", "yes"))
//!     .with_button(Button::reply("Перенести", "reschedule"));
//! let receipt = bot
//!     .send(&OutboundMessage::new(Address::MaxUser(10001), content, Purpose::Service))
//!     .await?;
//! println!("accepted as {}", receipt.provider_message_id);
//! # Ok(()) }
//! ```
//!
//! ## Receiving
//!
//! ```
//! use http::HeaderMap;
//! use messaging_core::webhook::{WebhookHandler, WebhookRequest};
//! use messaging_max::MaxWebhookHandler;
//!
//! let handler = MaxWebhookHandler::new(None); // no secret: verify() passes
//! let body = r#"{"update_type":"message_created","timestamp":1770679787821,
//!   "message":{"sender":{"user_id":10001,"first_name":"Ivan"},
//!              "recipient":{"chat_id":182182182,"chat_type":"dialog"},
//!              "timestamp":1770679787821,"body":{"mid":"mid.1","text":"Да"}}}"#;
//! let headers = HeaderMap::new();
//! let events = handler.verify_and_parse(&WebhookRequest::post(&headers, body.as_bytes())).unwrap();
//! let json = serde_json::to_value(&events[0]).unwrap();
//! assert_eq!(json["kind"], "inbound");
//! assert_eq!(json["channel"], "max");
//! assert_eq!(json["from"], "10001");
//! assert_eq!(json["text"], "Да");
//! assert_eq!(json["at"], "2026-02-09T23:29:47.821Z");
//! ```
//!
//! ## Idempotency
//!
//! `POST /messages` takes **no idempotency key or client-side message id** in the sources this
//! crate was written from (the official schema and the Go and TypeScript clients): the message
//! id (`body.mid`) is assigned by Max in the answer. A retry after a timeout whose request did
//! reach Max sends the message twice.
//!
//! ## Security
//!
//! The token lives in a [`secrecy::SecretString`]; every `Debug` is written by hand and redacts
//! it; it is sent only in the `Authorization` header, never in URLs, and transport errors are
//! stripped of URLs. Extra root certificates are *added* to the trusted set; certificate checks
//! are never turned off.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
pub mod contact;
pub mod deeplink;
pub mod error;
pub mod keyboard;
pub mod parse;
pub mod polling;
mod webhook;
mod wire;

pub use client::{
    BotInfo, DEFAULT_BASE_URL, DEFAULT_MAX_PARTS, DEFAULT_RATE_LIMIT, DEFAULT_TIMEOUT,
    MAX_TEXT_CHARS, MaxBot, MaxBotBuilder, Subscription, TextFormat, UpdatesBatch,
};
pub use contact::{ContactCheck, check_contact, phone_from_vcard, verify_contact_hash};
pub use deeplink::{DeepLinkError, MAX_START_PAYLOAD, deep_link, validate_start_payload};
pub use error::{ApiErrorBody, MaxError, classify_error};
pub use keyboard::{
    MAX_BUTTON_TEXT, MAX_BUTTONS, MAX_CALLBACK_PAYLOAD, MAX_LINK_URL, inline_keyboard,
    share_phone_prompt,
};
pub use parse::{HANDLED_UPDATE_TYPES, UpdateParser};
pub use polling::{InMemoryMarkerStore, MarkerStore, Poller};
pub use webhook::{MaxWebhookHandler, SECRET_HEADER};

/// Re-exported so callers can pass tokens and secrets without depending on `secrecy`.
pub use secrecy::SecretString;
