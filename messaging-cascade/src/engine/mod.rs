//! The cascade engine: send on the first channel, wait for evidence within a window, move on.
//!
//! The engine is driven by time and by events:
//! - [`Engine::submit`] accepts a [`Notification`] (idempotent by id) and starts its cascade;
//! - [`Engine::handle_event`] takes delivery reports, inbound messages and channel signals from
//!   the adapters' webhooks or polling;
//! - [`Engine::tick`] fires due timers (windows closing, backoffs, quiet hours ending);
//!   [`Engine::run`] calls it in a loop for services that want a background task.
//!
//! What the engine does is decided by one pure function, [`decide::decide`]: no I/O, no clock, no
//! lock. [`Engine`] is its driver: it loads a cascade, decides, stores the new state, then
//! performs the decision's actions (sends, gate checks, health notes) and feeds their results
//! back in.
//!
//! Every state change is written to the [`CascadeStore`](crate::store::CascadeStore) before any
//! side effect: "about to send attempt N of step K" is stored, then the channel is called, then
//! the receipt is stored. If the engine stops between the first two, the attempt's outcome is
//! unknown; when the in-flight lease runs out the engine marks it
//! [`AttemptState::Unknown`] and sends again, marking the new attempt `possible_duplicate`.
//! Duplicates are therefore possible only for attempts in flight at a crash, and always counted.
//!
//! | error kind | what the engine does |
//! |---|---|
//! | unreachable | next step now |
//! | needs template | retry once at once with the template, if the content has one; else next step |
//! | rate limited | wait `retry_after` on the same channel (a wait shorter than the step's window, up to `max_rate_limit_waits` times), then next step |
//! | temporary | retry with exponential backoff (each wait shorter than the step's window); when retries run out, next step |
//!
//! A step's window is counted from the moment its channel accepted the attempt; see
//! [`decide::window_end`], the one place it is computed.
//! | channel down | mark the channel down (health), next step |
//! | invalid content | fail the step with the reason, next step |
mod core;
pub mod decide;
mod idmap;
mod observe;
mod policy;
mod record;
mod scratch;

pub use self::core::{
    BuildError, CascadeEvent, CascadeStatus, Engine, EngineBuilder, EngineError, Submission,
    SubmitError,
};
pub use messaging_core::gate::{GateDecision, SendContext, SendGate};
#[doc(hidden)]
pub use policy::secs;
pub use policy::{CascadePolicy, HealthAction, QuietHours, RetryPolicy, Step, UnknownOutcome};
pub use record::{
    Attempt, AttemptState, CascadeRecord, DeferReason, HistoryEntry, HistoryKind, Notification,
    Outcome, Phase, SkipReason,
};
