//! Test doubles for your own tests and ours: a simulated channel with latency, failures and
//! outages on the injected clock, a simulation driver, and (re-exported from `messaging-core`) the
//! stub channel and the conformance corpus helpers.

mod simulated;

pub use messaging_core::testkit::{StubChannel, conformance_dir, conformance_files};
pub use simulated::{
    Latency, Outage, OutageMode, SimBehavior, SimStats, SimulatedChannel, Simulation, failed_report,
};
