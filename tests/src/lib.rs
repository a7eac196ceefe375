//! In-process fake provider servers that speak each provider's real JSON, for wire-level tests
//! and the load example. Each module starts an axum server on a random loopback port.
#![forbid(unsafe_code)]

pub mod max;
pub mod sms;
pub mod telegram;
pub mod waba;
