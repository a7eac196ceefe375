//! # messaging-telegram
//!
//! A Telegram bot as a [`Channel`](messaging_core::Channel) of the messaging cascade: it sends
//! notices through the Bot API and turns Telegram updates (webhook or long polling) into the
//! core [`Event`](messaging_core::Event) model. It translates Telegram and does nothing else.
//!
//! | piece | what it is |
//! |---|---|
//! | [`TelegramChannel`] | `sendMessage` (split past 4096 UTF-16 units), inline and reply keyboards, link previews, photos and documents, paced per bot and per chat |
//! | [`TelegramBuilder::rate_limit`] / [`TelegramBuilder::chat_rate_limit`] / [`Rate`] | the pacing: 30 messages/s per bot and 1/s per chat by default, evenly spaced, never over either limit in a sliding window |
//! | [`TelegramWebhook`] | a [`WebhookHandler`](messaging_core::webhook::WebhookHandler): `X-Telegram-Bot-Api-Secret-Token` checked in constant time |
//! | [`LongPoller`] / [`OffsetStore`] | `getUpdates` with a stored offset, committed only after a batch was handed over |
//! | [`parse_update`] | one Telegram `Update` to events: text, `/start` payload, shared contact, button press, block / unblock |
//! | [`ApiError`], [`is_blocked`], [`blocked_signal`], [`migrated_to`] | the Bot API error body, and what a failed send tells identity linking |
//! | [`deep_link`], [`share_phone_prompt`], [`own_contact_phone`] | identity linking: `t.me/<bot>?start=<token>` links, the "share your phone" keyboard, the own-contact check |
//!
//! ## Sending
//!
//! ```no_run
//! use messaging_core::{Address, ChannelExt};
//! use messaging_telegram::TelegramChannel;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let tg = TelegramChannel::builder("tg", std::env::var("TELEGRAM_BOT_TOKEN")?).build()?;
//! let receipt = tg.send_text(Address::Telegram(123456789), "Анна, приём завтра в 10:00").await?;
//! println!("accepted as {}", receipt.provider_message_id);
//! # Ok(()) }
//! ```
//!
//! ## Errors
//!
//! | Bot API answer | [`ErrorKind`](messaging_core::ErrorKind) | notes |
//! |---|---|---|
//! | 403 bot was blocked by the user, user is deactivated | `Unreachable` | [`is_blocked`] is true: mark the identity link inactive ([`blocked_signal`]) |
//! | 403 can't initiate conversation, bot was kicked, other 403 | `Unreachable` | |
//! | 400 chat not found / private chat not found | `Unreachable` | |
//! | 400 group chat was migrated / upgraded to a supergroup | `Unreachable` | the new id is in the message and in [`migrated_to`]; persist it and send again |
//! | 400 message is too long, text is empty, can't parse entities, other 400 | `InvalidContent` | the raw description is kept |
//! | 401, 404 | `ChannelDown` | bad token or bad base URL |
//! | 429 | `RateLimited` | `retry_after` from `parameters.retry_after`, else the `Retry-After` header |
//! | 5xx, network, timeout | `Temporary` | the URL (which holds the token) is stripped from transport errors |
//! | anything else | `Unexpected` | the raw description is kept |
//!
//! Every error built from a Bot API error body keeps the typed [`ApiError`] as its source;
//! `provider_code()` is the Telegram `error_code` as a string (`"403"`).
//!
//! ## Message ids
//!
//! Telegram numbers messages per chat, so provider message ids are written `"<chat_id>:<message_id>"`
//! both in [`SendReceipt`](messaging_core::SendReceipt)s and in inbound messages (`provider_message_id`, `reply_to`).
//!
//! ## Idempotency
//!
//! `sendMessage` (and the other send methods) take **no idempotency key or client-side message
//! id**: the Bot API documents none, and the `message_id` is assigned by Telegram in the answer.
//! A retry after a timeout whose request did reach Telegram sends the message twice; only the
//! synchronous `ok: true` answer proves acceptance.
//!
//! ## The bot token
//!
//! The token is part of every Bot API URL. It is held in a [`secrecy::SecretString`], never
//! printed by `Debug`, and transport errors are stripped of their URL before they are kept.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod channel;
mod error;
mod identity;
mod keyboard;
mod polling;
mod update;
mod webhook;

pub use channel::{
    ConfigError, DEFAULT_BASE_URL, DEFAULT_CHAT_RATE_LIMIT, DEFAULT_RATE_LIMIT, DEFAULT_TIMEOUT,
    Rate, TelegramBuilder, TelegramChannel, User,
};
pub use error::{ApiError, ApiErrorReason, api_error, blocked_signal, is_blocked, migrated_to};
pub use identity::{
    DeepLinkError, MAX_START_PAYLOAD, deep_link, own_contact_phone, parse_start_payload,
    share_phone_prompt, validate_start_payload,
};
pub use polling::{
    LongPoller, MemoryOffsetStore, OffsetStore, OffsetStoreError, PollConfig, PollError,
};
pub use update::{parse_update, parse_update_value, parse_updates_response};
pub use webhook::{SECRET_HEADER, TelegramWebhook};

/// The provider name used in webhook errors and on the command line.
pub const PROVIDER: &str = "telegram";

/// The longest text of one message, in UTF-16 code units.
pub const MAX_TEXT_UTF16: usize = 4096;

/// The longest media caption, in UTF-16 code units.
pub const MAX_CAPTION_UTF16: usize = 1024;
