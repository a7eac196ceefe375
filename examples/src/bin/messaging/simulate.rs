//! `messaging simulate --scenario <name|file.json> --policy <fixed|adaptive>` replays a scenario
//! in virtual time and prints
//! `{"notifications":N,"delivered":N,"p50_time_to_delivery_s":x,"p90_time_to_delivery_s":x,"cost_total":x,"by_channel":{...}}`.
//!
//! Built-in scenarios: `healthy` and `whatsapp-outage`; the file format is documented in
//! `messaging_examples::scenario`.

use messaging_examples::scenario::{PolicyMode, Scenario};
use serde_json::json;

use crate::Output;

/// Arguments of `messaging simulate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A built-in scenario (`healthy`, `whatsapp-outage`) or a path to a scenario JSON file.
    #[arg(long)]
    scenario: String,
    /// `fixed`: 60-minute windows without channel health; `adaptive`: channel health on.
    #[arg(long, value_parser = parse_policy)]
    policy: PolicyMode,
    /// Override the number of notifications.
    #[arg(long)]
    notifications: Option<usize>,
}

fn parse_policy(s: &str) -> Result<PolicyMode, String> {
    match s {
        "fixed" => Ok(PolicyMode::Fixed),
        "adaptive" => Ok(PolicyMode::Adaptive),
        other => Err(format!(
            "unknown policy {other:?} (expected fixed or adaptive)"
        )),
    }
}

fn load(name: &str) -> Result<Scenario, String> {
    if let Some(s) = Scenario::builtin(name) {
        return Ok(s);
    }
    let text = std::fs::read_to_string(name).map_err(|e| {
        format!(
            "{name:?} is neither a built-in scenario ({}) nor a readable file: {e}",
            Scenario::BUILTIN.join(", ")
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("scenario file {name:?}: {e}"))
}

/// Runs the simulation.
pub(crate) fn run(args: Args) -> Output {
    let mut scenario = match load(&args.scenario) {
        Ok(s) => s,
        Err(e) => return Output::fail(json!({ "error": { "kind": "scenario", "message": e } })),
    };
    if let Some(n) = args.notifications {
        scenario.notifications = n;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            return Output::fail(
                json!({ "error": { "kind": "runtime", "message": e.to_string() } }),
            );
        }
    };
    match rt.block_on(messaging_examples::scenario::run(&scenario, args.policy)) {
        Ok(report) => match serde_json::to_value(&report) {
            Ok(v) => Output::ok(v),
            Err(e) => {
                Output::fail(json!({ "error": { "kind": "internal", "message": e.to_string() } }))
            }
        },
        Err(e) => {
            Output::fail(json!({ "error": { "kind": "simulation", "message": e.to_string() } }))
        }
    }
}
