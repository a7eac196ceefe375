//! Shared pieces of the example programs: the simulated-provider scenarios used by
//! `clinic-reminders` and `messaging simulate`.
#![forbid(unsafe_code)]

pub mod scenario;
