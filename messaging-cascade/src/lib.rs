//! # messaging-cascade
//!
//! Get an important notice (an appointment reminder, "your results are ready") to a person even
//! when a messenger fails: send on the first channel, wait for proof of delivery within a window,
//! and move on to the next channel on timeout or error: WhatsApp → Telegram → Max → SMS.
//!
//! | piece | what it is |
//! |---|---|
//! | [`Engine`] | the cascade engine: submit, events, timers, status and history |
//! | [`CascadePolicy`] | ordered steps: channel, evidence to wait for, window, retries |
//! | [`health`] | channel health from delivery latency and provider signals |
//! | [`store`] | the cascade store trait, the in-memory store and (feature `testkit`) its conformance suite |
//! | `testkit` (feature) | simulated channels and a simulation driver for your own tests |
//!
//! Channels, the model and the errors come from `messaging-core`; durable stores from
//! `messaging-store`. Most users depend on the `messaging` facade crate instead.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod engine;
pub mod health;
pub mod shared_health;
pub mod store;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use engine::{
    CascadePolicy, Engine, EngineBuilder, EngineError, Notification, Outcome, RetryPolicy, Step,
    UnknownOutcome,
};
