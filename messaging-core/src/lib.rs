//! # messaging-core
//!
//! Get an important notice (an appointment reminder, "your results are ready") to a person even
//! when a messenger fails: send on the first channel, wait for proof of delivery within a window,
//! and move on to the next channel on timeout or error: WhatsApp → Telegram → Max → SMS.
//!
//! | piece | what it is |
//! |---|---|
//! | [`Channel`] | one trait every messenger adapter implements (`messaging-waba`, `-telegram`, `-max`, `-sms`) |
//! | [`ChannelError`] / [`ErrorKind`] | the one error a channel returns; the engine decides from its kind |
//! | [`Engine`] | the cascade engine: submit, events, timers, history |
//! | [`CascadePolicy`] | ordered steps: channel, evidence to wait for, window, retries |
//! | [`health`] | channel health from delivery latency and provider signals |
//! | [`hygiene`] | spam hygiene: linter, splitter, templates, SMS encoding, sender governor |
//! | [`pace`] | client-side pacing under a provider's rate limit (overall and per key), used by the adapters |
//! | [`store`] | storage traits and the in-memory store (`messaging-store` has SQLite and PostgreSQL) |
//! | [`webhook`] | framework-free webhook verification and parsing |
//! | `testkit` (feature) | stub and simulated channels for your own tests |
//!
//! Core does no HTTP: adapters translate a provider to this model and nothing else.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod channel;
mod clock;
mod content;
pub mod engine;
mod error;
mod event;
pub mod guides;
pub mod health;
pub mod hygiene;
pub mod identity;
pub mod inbox;
mod model;
pub mod pace;
mod phone;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod router;
pub mod store;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
pub mod webhook;

pub use channel::{
    Capabilities, Channel, ChannelExt, Cost, DynChannel, OutboundMessage, SendReceipt,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use content::{
    Attachment, AttachmentKind, Button, ButtonAction, ButtonSubType, Content, MediaSource,
    Template, TemplateComponent, TemplateParameter, TemplatePart, TemplateValue, TextUnit,
};
pub use engine::{CascadePolicy, Engine, EngineBuilder, Notification, Outcome, RetryPolicy, Step};
pub use error::{ChannelError, ErrorKind, RetryStatus};
pub use event::{
    ChannelSignal, DeliveryReport, DeliveryStatus, Event, InboundMessage, ProviderError, Signal,
};
pub use identity::{IdentityStore, Link, Linker, Provenance};
pub use inbox::{Inbox, InboxMessage, ThreadId};
pub use model::{
    Address, ChannelId, ChannelKind, ContactId, Evidence, Metadata, NotificationId, OptOut,
    PolicyId, ProviderMessageId, Purpose, Recipient,
};
pub use phone::{Phone, PhoneError, Region};
