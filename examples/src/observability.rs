//! Seeing what the demo programs do: logs through `tracing-subscriber`, metrics through
//! `metrics-exporter-prometheus`.
//!
//! The library crates only emit (`tracing` spans and events, `metrics` counters, histograms and
//! gauges, names in `messaging::metrics`); a program picks where they go. These are the demo's
//! choices:
//!
//! - [`init_tracing`]: human-readable lines on stderr, filtered by `RUST_LOG` (default `warn`).
//!   `RUST_LOG=messaging=debug` tells the story of each notice: a `cascade` span per move of a
//!   cascade, a `send` span per attempt, an event per step (sent, window expired, rerouted,
//!   delivered, late report, channel health changed).
//! - [`install_prometheus`]: a Prometheus recorder for the whole process; `clinic-reminders
//!   --live --metrics` serves its page at `/metrics` on the webhook listener.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs a `tracing` subscriber that writes to stderr, filtered by `RUST_LOG` (default
/// `warn`). Does nothing if the process already has one.
///
/// ```
/// messaging_examples::observability::init_tracing();
/// tracing::debug!("shown only with RUST_LOG=debug");
/// ```
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Installs a Prometheus recorder as the process's `metrics` recorder and returns the handle
/// that renders its page (set it as [`LiveConfig::metrics`](crate::live::LiveConfig::metrics)
/// to serve it at `/metrics`). Fails if a recorder is already installed.
///
/// ```
/// let handle = messaging_examples::observability::install_prometheus().unwrap();
/// metrics::counter!(messaging::metrics::SENDS, "channel_id" => "sms", "channel_kind" => "sms")
///     .increment(1);
/// assert!(handle.render().contains("messaging_sends_total{channel_id=\"sms\",channel_kind=\"sms\"} 1"));
/// ```
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))
}

/// The Prometheus page of `handle`, after the upkeep its histograms need.
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}
