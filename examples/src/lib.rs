//! Shared pieces of the example programs: the simulated-provider scenarios used by
//! `clinic-reminders` and `messaging simulate`, the `--live` mode of `clinic-reminders` (real
//! providers configured from the environment), the tables both modes print, and where their
//! logs and metrics go (`observability`).
#![forbid(unsafe_code)]

pub mod console;
pub mod live;
pub mod observability;
pub mod scenario;
pub mod tables;

/// The repository README's Rust code, compiled and run as doctests so the quick start cannot
/// rot. Only under `cfg(doctest)`: a packaged crate does not carry the workspace README.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
