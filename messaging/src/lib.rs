//! # messaging
//!
//! Get an important notice (an appointment reminder, "your results are ready") to a person even
//! when a messenger fails: send on the first channel, wait for proof of delivery within a window,
//! and move on to the next channel on timeout or error: WhatsApp → Telegram → Max → SMS.
//!
//! This is the crate to depend on: it re-exports the family behind features.
//!
//! | module | crate | feature | what it is |
//! |---|---|---|---|
//! | [`prelude`] | | | the names a service uses every day |
//! | [`core`] | `messaging-core` | always | model, [`Channel`](crate::Channel) trait, errors, events, webhook verification, pacing, text tools |
//! | [`cascade`] | `messaging-cascade` | always | the cascade [`Engine`](crate::Engine), policies, channel health, the store trait and in-memory store |
//! | [`hygiene`] | `messaging-hygiene` | always | linter, templates, sender governor |
//! | [`conversations`] | `messaging-conversations` | always (`axum` for the router) | identity linking, the inbox, the webhook router |
//! | `store` | `messaging-store` | `sqlite` (default), `postgres` | durable stores |
//! | `waba` | `messaging-waba` | `waba` | WhatsApp Business: Cloud API, 360dialog |
//! | `telegram` | `messaging-telegram` | `telegram` | Telegram bots |
//! | `max` | `messaging-max` | `max` | Max bots |
//! | `sms` | `messaging-sms` | `sms-smsru`, `sms-smsc`, `sms-smsaero`, `sms-twilio` | SMS providers |
//! | `testkit` | all of the above | `testkit` | stub and simulated channels, conformance suites |
//! | `service` | all of the above | `service` | a whole service from a TOML file or environment variables: channels, store, engine, webhook router, background tasks |
//!
//! A Telegram + SQLite service needs `cargo add messaging --features telegram,sqlite` and nothing
//! else.
//!
//! ```
//! use std::sync::Arc;
//! use messaging::prelude::*;
//! use messaging::testkit::StubChannel; // your real channels: messaging::waba, ::telegram, ::max, ::sms
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder()
//!     .channel(Arc::new(StubChannel::new("wa", ChannelKind::WhatsApp)))
//!     .channel(Arc::new(StubChannel::new("tg", ChannelKind::Telegram)))
//!     .channel(Arc::new(StubChannel::new("max", ChannelKind::Max)))
//!     .channel(Arc::new(StubChannel::new("sms", ChannelKind::Sms)))
//!     .policy(CascadePolicy::classic_clinic("wa", "tg", "max", "sms"))
//!     .build()?;
//! let patient = Recipient::with_phone("patient-7", "+79123456789")?.name("Анна");
//! engine
//!     .submit(Notification::new(
//!         "appointment-1042-reminder", // the idempotency key
//!         patient,
//!         Content::text("Анна, напоминаем о приёме завтра в 10:00. Придёте?"),
//!     ))
//!     .await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod guides;

#[cfg(feature = "service")]
#[cfg_attr(docsrs, doc(cfg(feature = "service")))]
pub mod service;

/// The contract: model, channel trait, errors, events, webhook verification, pacing, text tools
/// (`messaging-core`).
pub use messaging_core as core;
pub use messaging_core::*;

/// The cascade engine, policies, channel health and the cascade store (`messaging-cascade`).
pub use messaging_cascade as cascade;
pub use messaging_cascade::{
    CascadePolicy, Engine, EngineBuilder, EngineError, Notification, Outcome, RetryPolicy, Step,
    UnknownOutcome, engine, health,
};

/// Spam hygiene: linter, templates, sender governor (`messaging-hygiene`).
pub use messaging_hygiene as hygiene;

/// Identity linking, the inbox and the webhook router (`messaging-conversations`).
pub use messaging_conversations as conversations;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use messaging_conversations::router;
pub use messaging_conversations::{identity, inbox};

/// Storage: the cascade store trait and the in-memory store, and (features `sqlite`,
/// `postgres`) the durable stores of `messaging-store`.
pub mod store {
    pub use messaging_cascade::store::*;
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
    pub use messaging_store::*;
}

/// WhatsApp Business: Cloud API and 360dialog (`messaging-waba`).
#[cfg(feature = "waba")]
#[cfg_attr(docsrs, doc(cfg(feature = "waba")))]
pub use messaging_waba as waba;

/// Telegram bots (`messaging-telegram`).
#[cfg(feature = "telegram")]
#[cfg_attr(docsrs, doc(cfg(feature = "telegram")))]
pub use messaging_telegram as telegram;

/// Max bots (`messaging-max`).
#[cfg(feature = "max")]
#[cfg_attr(docsrs, doc(cfg(feature = "max")))]
pub use messaging_max as max;

/// SMS providers (`messaging-sms`): SMS.ru, SMSC.ru, SMS Aero, Twilio, each behind its feature.
#[cfg(any(
    feature = "sms-smsru",
    feature = "sms-smsc",
    feature = "sms-smsaero",
    feature = "sms-twilio"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(
        feature = "sms-smsru",
        feature = "sms-smsc",
        feature = "sms-smsaero",
        feature = "sms-twilio"
    )))
)]
pub use messaging_sms as sms;

/// Test doubles and conformance suites from every crate of the family.
///
/// Every trait you may implement has a suite of public async checks that take your
/// implementation and panic, naming the behaviour, where it differs from the reference:
///
/// | suite | trait | reference |
/// |---|---|---|
/// | [`channel_suite`](testkit::channel_suite) | [`Channel`], against your fake provider server | the adapters of the family |
/// | [`cascade_store`](testkit::cascade_store) | [`CascadeStore`](crate::store::CascadeStore) + [`WindowStore`](crate::window::WindowStore) | [`MemoryStore`](crate::store::MemoryStore) |
/// | [`identity_store`](testkit::identity_store) | [`IdentityStore`](crate::identity::IdentityStore), [`UsedTokenStore`](crate::identity::UsedTokenStore) | [`MemoryIdentityStore`](crate::identity::MemoryIdentityStore) |
/// | [`inbox_store`](testkit::inbox_store) | [`InboxStore`](crate::inbox::InboxStore) | [`MemoryInboxStore`](crate::inbox::MemoryInboxStore) |
/// | [`sender_counters`](testkit::sender_counters) | [`SenderCounters`](crate::hygiene::SenderCounters) | [`MemoryCounters`](crate::hygiene::MemoryCounters) |
/// | [`opt_out_store`](testkit::opt_out_store) | [`OptOutStore`](crate::consent::OptOutStore) | [`MemoryOptOutStore`](crate::consent::MemoryOptOutStore) |
/// | [`webhook_journal`](testkit::webhook_journal) | [`WebhookJournal`](crate::journal::WebhookJournal) | [`MemoryWebhookJournal`](crate::journal::MemoryWebhookJournal) |
///
/// ```
/// use messaging::consent::MemoryOptOutStore;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// messaging::testkit::opt_out_store::run_all(|| async { MemoryOptOutStore::new() }).await;
/// # });
/// ```
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit {
    /// The channel health board conformance suite.
    pub use messaging_cascade::shared_health::conformance as health_board;
    /// The cascade store conformance suite.
    pub use messaging_cascade::store::conformance as cascade_store;
    pub use messaging_cascade::testkit::*;
    /// The identity and used-token store conformance suite.
    pub use messaging_conversations::identity::conformance as identity_store;
    /// The inbox store conformance suite.
    pub use messaging_conversations::inbox::conformance as inbox_store;
    /// The opt-out store conformance suite.
    pub use messaging_core::consent::conformance as opt_out_store;
    /// The webhook journal conformance suite.
    pub use messaging_core::journal::conformance as webhook_journal;
    pub use messaging_core::testkit::channel_suite;
    pub use messaging_core::testkit::*;
    /// The sender counters conformance suite.
    pub use messaging_hygiene::governor::conformance as sender_counters;
}

/// The names a service uses every day: `use messaging::prelude::*;`.
pub mod prelude {
    pub use messaging_cascade::{CascadePolicy, Engine, Notification, Outcome, RetryPolicy, Step};
    pub use messaging_conversations::{Inbox, InboxMessage, Link, Linker, Provenance};
    pub use messaging_core::sink::EventSink;
    pub use messaging_core::{
        Address, Channel, ChannelError, ChannelExt, ChannelId, ChannelKind, Clock, Content,
        DeliveryStatus, ErrorKind, Event, Evidence, NotificationId, Phone, Purpose, Recipient,
        SendReceipt, SystemClock, Template,
    };
    #[cfg(feature = "postgres")]
    pub use messaging_store::PostgresStore;
    #[cfg(feature = "sqlite")]
    pub use messaging_store::SqliteStore;
}
