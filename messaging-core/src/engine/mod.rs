//! The cascade engine.
mod policy;
mod gate;
mod record;

pub use gate::{GateDecision, SendContext, SendGate};
pub use policy::{CascadePolicy, HealthAction, QuietHours, RetryPolicy, Step};
pub use record::{
    Attempt, AttemptState, CascadeRecord, DeferReason, HistoryEntry, HistoryKind, Notification,
    Outcome, Phase, SkipReason,
};

/// The cascade engine (being written).
#[derive(Debug)]
pub struct Engine;
/// Builds an [`Engine`] (being written).
#[derive(Debug)]
pub struct EngineBuilder;
