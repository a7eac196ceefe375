//! Every fact has one owner: a definition that two crates once each kept a copy of (and the
//! copies disagreed) now exists once, and this test fails when a second copy appears in any
//! library crate's sources. Behaviour tests check that the owner is right; this one checks that
//! there is only one, which no behaviour test can (two copies agree until one is changed).

use std::path::Path;

use messaging_tests::rust_files;

/// (what is defined, the only file that may define it).
const OWNED: &[(&str, &str)] = &[
    // The WhatsApp window: its key and its length (the inbox and the adapter once disagreed).
    ("fn whatsapp_window_key", "messaging-core/src/window.rs"),
    ("fn window_key", "messaging-core/src/window.rs"),
    ("WHATSAPP_WINDOW: ", "messaging-core/src/window.rs"),
    ("SERVICE_WINDOW", "messaging-core/src/window.rs"),
    ("trait WindowStore", "messaging-core/src/window.rs"),
    // Stop words: the list and the matcher (the governor once kept a copy of the list).
    ("\"отписаться\"", "messaging-core/src/consent/mod.rs"),
    ("fn is_stop_word", "messaging-core/src/consent/mod.rs"),
    // Opt-outs: one record (there were three).
    ("trait OptOutStore", "messaging-core/src/consent/mod.rs"),
    ("trait OptOutList", "messaging-core/src/consent/mod.rs"),
    // Storage errors: one type.
    ("enum StoreError", "messaging-core/src/error.rs"),
    ("struct CounterError", "messaging-core/src/error.rs"),
    // Where events go.
    ("trait EventSink", "messaging-core/src/sink.rs"),
    // What a kind of messenger can do.
    ("KIND_FACTS: ", "messaging-core/src/kind.rs"),
    // The adapter kit (there were four copies of each).
    ("fn transport_error", "messaging-http/src/transport.rs"),
    ("fn parse_retry_after", "messaging-http/src/retry_after.rs"),
    // Metric names: one list, so that dashboards and the code that records agree.
    ("\"messaging_sends_total\"", "messaging-core/src/metrics.rs"),
    (
        "\"messaging_delivery_reports_total\"",
        "messaging-core/src/metrics.rs",
    ),
    (
        "\"messaging_send_failures_total\"",
        "messaging-core/src/metrics.rs",
    ),
    ("\"messaging_skips_total\"", "messaging-core/src/metrics.rs"),
    (
        "\"messaging_outcomes_total\"",
        "messaging-core/src/metrics.rs",
    ),
    (
        "\"messaging_duplicates_marked_total\"",
        "messaging-core/src/metrics.rs",
    ),
    (
        "\"messaging_time_to_delivery_seconds\"",
        "messaging-core/src/metrics.rs",
    ),
    (
        "\"messaging_send_duration_seconds\"",
        "messaging-core/src/metrics.rs",
    ),
    (
        "\"messaging_provider_request_duration_seconds\"",
        "messaging-core/src/metrics.rs",
    ),
    (
        "\"messaging_cascades_running\"",
        "messaging-core/src/metrics.rs",
    ),
    ("\"messaging_timers_due\"", "messaging-core/src/metrics.rs"),
    (
        "\"messaging_channel_health_state\"",
        "messaging-core/src/metrics.rs",
    ),
];

const CRATES: &[&str] = &[
    "messaging-core",
    "messaging-http",
    "messaging-cascade",
    "messaging-hygiene",
    "messaging-conversations",
    "messaging-waba",
    "messaging-telegram",
    "messaging-max",
    "messaging-sms",
    "messaging-store",
    "messaging",
];

#[test]
fn each_owned_definition_exists_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = Vec::new();
    for krate in CRATES {
        let mut files = Vec::new();
        rust_files(&root.join(krate).join("src"), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).expect("readable source");
            let rel = f
                .strip_prefix(&root)
                .expect("under the workspace")
                .to_string_lossy()
                .replace('\\', "/");
            // Only code: doc comments and comments may name an item anywhere.
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            sources.push((rel, code));
        }
    }
    assert!(sources.len() > 50, "the sources were read");
    let mut wrong = Vec::new();
    for (needle, owner) in OWNED {
        for (file, code) in &sources {
            if code.contains(needle) && file != owner {
                wrong.push(format!(
                    "`{needle}` is defined in {file}; its owner is {owner}"
                ));
            }
        }
    }
    // Those that were removed outright have no owner left; the rest must be where they belong.
    const GONE: &[&str] = &[
        "fn window_key",
        "SERVICE_WINDOW",
        "trait OptOutList",
        "struct CounterError",
    ];
    for (needle, owner) in OWNED.iter().filter(|(n, _)| !GONE.contains(n)) {
        let found = sources
            .iter()
            .any(|(f, c)| f == owner && c.contains(needle));
        if !found {
            wrong.push(format!("`{needle}` is missing from its owner {owner}"));
        }
    }
    assert!(wrong.is_empty(), "second copies:\n{}", wrong.join("\n"));
}
