//! # messaging-sms
//!
//! SMS channels for the messaging cascade: the guaranteed last step after WhatsApp, Telegram and
//! Max. Each provider is one [`Channel`](messaging_core::Channel) behind a cargo feature, with
//! delivery reports by callback ([`WebhookHandler`](messaging_core::webhook::WebhookHandler)) and
//! by polling ([`StatusPoller`]).
//!
//! | provider | feature | channel | callbacks | polling | sandbox |
//! |---|---|---|---|---|---|
//! | SMS.ru | `smsru` | [`smsru::SmsRuChannel`] | [`smsru::SmsRuWebhook`]: form `data[N]` lines, reply `100` | `sms/status`, 100 ids per request | `test=1` ([`SmsOptions::sandbox`]) |
//! | SMSC.ru | `smsc` | [`smsc::SmscChannel`] | [`smsc::SmscWebhook`]: form `id`, `phone`, `status`, `err` | `sys/status.php`, one per request | an account setting ("virtual sending", `err` 200) |
//! | SMS Aero | `smsaero` | [`smsaero::SmsAeroChannel`] | [`smsaero::SmsAeroWebhook`]: JSON or form `id`, `status` | `sms/status`, one per request | `sms/testsend` / `sms/teststatus` |
//! | Twilio | `twilio` | [`twilio::TwilioChannel`] | [`twilio::TwilioWebhook`]: form, `X-Twilio-Signature` checked | `Messages/{Sid}.json`, one per request | test credentials and magic numbers ([`twilio::magic`]) |
//!
//! All four features are on by default. Two SMS providers in one cascade are simply two
//! channels with their own [`ChannelId`](messaging_core::ChannelId) (`"sms-main"`,
//! `"sms-backup"`).
//!
//! ## One channel, one small trait per provider
//!
//! Each channel above is the same generic [`SmsChannel`] over the provider's [`SmsProvider`]
//! (`SmsRuChannel` is `SmsChannel<SmsRu>`, and so on). The channel does the checks, the pacing,
//! the HTTP (through the `messaging-http` kit), the receipts and the [`Channel`](messaging_core::Channel)
//! and [`StatusPoller`] impls once; a provider says only how its requests, answers, error codes
//! and callbacks look. Callbacks of providers that do not sign them go through the generic
//! [`UnsignedWebhook`]. Another provider is one more `SmsProvider` impl (see its docs).
//!
//! ## What every channel does the same way
//!
//! - **Before any HTTP request** the message is checked: the address must be
//!   [`Address::Phone`](messaging_core::Address::Phone) of a mobile number
//!   ([`Phone::is_mobile`](messaging_core::Phone::is_mobile)), else
//!   [`ErrorKind::Unreachable`](messaging_core::ErrorKind::Unreachable); the text must not be
//!   empty and must fit [`SmsOptions::max_segments`], else
//!   [`ErrorKind::InvalidContent`](messaging_core::ErrorKind::InvalidContent).
//! - The receipt carries the segment count from the core SMS encoding
//!   ([`messaging_core::text::sms::analyze`]) and a cost: the provider's when it gives one,
//!   else segments × [`SmsOptions::price_per_segment`].
//! - **Outages move the cascade on quickly**: every request has a short timeout
//!   ([`SmsOptions::timeout`], 5 s by default); timeouts, refused or dropped connections and
//!   5xx answers are [`ErrorKind::Temporary`](messaging_core::ErrorKind::Temporary) at once, with
//!   no internal retries, so the engine's retry budget decides when to move on.
//! - **Pacing** is opt-in: [`SmsOptions::rate_limit`] spaces a channel's requests
//!   evenly so that no sliding second holds more than the rate (none of the providers documents
//!   a per-second limit, so there is no default).
//! - Provider codes are mapped by tables (`status_meaning`, `send_error_kind`, …, one per
//!   provider module); unknown delivery codes are kept raw in
//!   [`ProviderError::code`](messaging_core::ProviderError) with no kind.
//! - **Time** comes from [`SmsOptions::clock`] (the system clock by default): receipts are dated
//!   by it, and so are reports and callbacks that carry no time of their own; the channel's
//!   `webhook()` handler shares the channel's clock.
//! - **Secrets** (API ids, passwords, API keys, auth tokens) are [`secrecy::SecretString`]s;
//!   `Debug` never prints them, and errors never carry URLs or request bodies.
//!
//! ## Idempotency and client-side message ids
//!
//! None of the four HTTP APIs documents an idempotency key, so a retry after a timeout whose
//! request did reach the provider may send the SMS twice. What each offers, from the sources
//! this crate was written from:
//!
//! | provider | client-side id or duplicate guard | used by this crate |
//! |---|---|---|
//! | SMS.ru | none; the provider refuses identical messages to one number too often (errors 231 per minute, 232 per day), a guard against floods, not a key | the errors are read as `RateLimited` |
//! | SMSC.ru | `id`, a client message id of 1..2147483647 sent with the message (third-party documentation), echoed in error answers; statuses are asked by id and phone | not sent: SMSC assigns the id ([`smsc::message_id`]) |
//! | SMS Aero | none documented | — |
//! | Twilio | none documented for `Messages.json` | — |
//!
//! ## Example: two providers, one cascade
//!
//! ```no_run
//! use std::sync::Arc;
//! use messaging_core::DynChannel;
//! use messaging_sms::{SmsOptions, smsru::SmsRuChannel, smsc::{SmscChannel, SmscAuth}};
//!
//! let main: DynChannel = Arc::new(SmsRuChannel::new(
//!     SmsOptions::new("sms-main").sender("Clinic").price_per_segment(4.0, "RUB"),
//!     std::env::var("SMSRU_API_ID").unwrap_or_default(),
//! ));
//! let backup: DynChannel = Arc::new(SmscChannel::new(
//!     SmsOptions::new("sms-backup").sender("Clinic"),
//!     SmscAuth::login("clinic", "password"),
//! ));
//! // CascadePolicy steps: Step::new("sms-main") then Step::new("sms-backup").
//! # let _ = (main, backup);
//! ```
//!
//! ## Transliteration
//!
//! [`SmsOptions::transliteration`] takes a [`Transliteration`] policy: `Always` or
//! `WhenCheaper` transliterate with the core before the segment count (Russian text then goes
//! as GSM-7, 160 characters per segment instead of 70); `Provider` asks SMS.ru and SMSC.ru to
//! do it on their side (`translit=1`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod channel;
// With only some providers enabled, some shared helpers have no caller.
#[cfg_attr(
    not(all(
        feature = "smsru",
        feature = "smsc",
        feature = "smsaero",
        feature = "twilio"
    )),
    allow(dead_code, unused_imports)
)]
mod shared;

#[cfg(feature = "smsaero")]
#[cfg_attr(docsrs, doc(cfg(feature = "smsaero")))]
pub mod smsaero;
#[cfg(feature = "smsc")]
#[cfg_attr(docsrs, doc(cfg(feature = "smsc")))]
pub mod smsc;
#[cfg(feature = "smsru")]
#[cfg_attr(docsrs, doc(cfg(feature = "smsru")))]
pub mod smsru;
#[cfg(feature = "twilio")]
#[cfg_attr(docsrs, doc(cfg(feature = "twilio")))]
pub mod twilio;

pub use channel::{Accepted, Endpoint, SmsChannel, SmsProvider, UnsignedWebhook};
pub use messaging_http::Reply;
pub use shared::PreparedSms;
pub use shared::{
    DEFAULT_MAX_SEGMENTS, DEFAULT_POLL_INTERVAL, DEFAULT_TIMEOUT, EventStamp, SmsOptions,
    StatusMeaning, StatusPoller, Transliteration,
};
