//! Shared pieces of the example programs: the simulated-provider scenarios used by
//! `clinic-reminders` and `messaging simulate`, the `--live` mode of `clinic-reminders` (real
//! providers configured from the environment), and the tables both modes print.
#![forbid(unsafe_code)]

pub mod live;
pub mod scenario;
pub mod tables;
