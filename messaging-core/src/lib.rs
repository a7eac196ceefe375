//! # messaging-core
//!
//! The contract every part of the `messaging` family shares: the model of a notice and a person,
//! the one [`Channel`] trait every messenger adapter implements, the errors a channel returns, the
//! events adapters produce, webhook verification, pacing, and the text tools every channel needs.
//! It has no engine, no web framework and no storage backend: adapters depend on this crate alone.
//!
//! Most users depend on the `messaging` facade crate instead, which re-exports this one.
//!
//! | piece | what it is |
//! |---|---|
//! | [`Channel`] | one trait every messenger adapter implements (`messaging-waba`, `-telegram`, `-max`, `-sms`) |
//! | [`ChannelError`] / [`ErrorKind`] | the one error a channel returns; callers decide from its kind |
//! | [`ChannelKind`] / [`KIND_FACTS`] | what each kind of messenger is and can do, in one table |
//! | [`Event`] | what adapters produce from webhooks and polling: reports, inbound messages, signals |
//! | [`sink`] | [`EventSink`](sink::EventSink): the one trait every consumer of events implements |
//! | [`gate`] | [`SendGate`](gate::SendGate): checks plugged in before every send (the sender governor) |
//! | [`window`] | the WhatsApp 24-hour window: its length, its key, where it is kept |
//! | [`consent`] | stop words ("СТОП", "unsubscribe") and [`OptOutStore`](consent::OptOutStore), the one opt-out record the inbox, the governor and the engine read |
//! | [`journal`] | [`WebhookJournal`](journal::WebhookJournal): verified webhook events kept until processed, and their keys to drop provider retries |
//! | [`StoreError`] | the one error every storage trait returns |
//! | [`metrics`] | the names of every metric the family records (`messaging_sends_total`, ...) and of their labels |
//! | [`task`] | background loops that survive a panic: [`catch_panic`](task::catch_panic), [`supervise`](task::supervise) (logged, restarted with a bounded backoff) |
//! | [`pace`] | client-side pacing under a provider's rate limit (overall and per key) |
//! | [`text`] | SMS encoding and segments, splitting, transliteration, links, length limits |
//! | [`webhook`] | framework-free webhook verification and parsing |
//! | `testkit` (feature) | the conformance corpus and the behaviour suite every [`Channel`] runs |
//!
//! The crate does no HTTP: adapters translate a provider to this model and nothing else.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod channel;
mod clock;
pub mod consent;
mod content;
mod error;
mod event;
pub mod gate;
pub mod journal;
mod kind;
pub mod metrics;
mod model;
pub mod pace;
mod phone;
pub mod sink;
pub mod task;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
pub mod text;
pub mod webhook;
pub mod window;

pub use channel::{
    Capabilities, Channel, ChannelExt, Cost, DynChannel, OutboundMessage, SendReceipt,
};
pub use clock::{Clock, ManualClock, SystemClock, chrono_dur};
pub use content::{
    Attachment, AttachmentKind, Button, ButtonAction, ButtonSubType, Content, MediaSource,
    Template, TemplateComponent, TemplateParameter, TemplatePart, TemplateValue,
};
pub use error::{ChannelError, ErrorKind, RetryStatus, StoreError, UNEXPECTED_RETRIES};
pub use event::{
    ChannelSignal, DeliveryReport, DeliveryStatus, Event, InboundAction, InboundMessage,
    ProviderError, Signal,
};
pub use kind::{ChannelKind, Evidence, KIND_FACTS, KindFacts};
pub use model::{
    Address, ChannelId, ContactId, Metadata, NotificationId, OptOut, PolicyId, ProviderMessageId,
    Purpose, Recipient,
};
pub use phone::{Phone, PhoneError, Region};
pub use text::TextUnit;
