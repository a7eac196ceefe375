//! # messaging-conversations
//!
//! The people side of the `messaging` family: which Telegram or Max user is which person, every
//! inbound message from every channel in one inbox, and answers on the channel a message came
//! from.
//!
//! | piece | what it is |
//! |---|---|
//! | [`identity`] | verified linking of Telegram/Max chats to contacts: shared contacts and signed deep links |
//! | [`inbox`] | one stream of inbound messages from every channel, threaded per contact |
//! | `router` (feature `axum`) | an axum router that mounts every provider's webhook endpoint |
//! | `identity::conformance`, `inbox::conformance` (feature `testkit`) | the behaviour suites every identity, used-token and inbox store runs |
//!
//! Most users depend on the `messaging` facade crate instead.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod identity;
pub mod inbox;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod listener;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod router;

pub use identity::{IdentityStore, Link, Linker, Provenance};
pub use inbox::{Inbox, InboxMessage, ThreadId};
