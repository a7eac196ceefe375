//! Every span and event of a scripted run of cascades ([`common::run`]), captured by a small
//! `tracing` layer: a `cascade` span per move of each cascade and a `send` span per attempt,
//! with their ids; events for window expiry, reroutes, late reports, health changes; and no
//! message text, token or phone number in any field.
//!
//! Alone in its test binary: `tracing` caches per call site whether anyone listens, and a test
//! on another thread without a subscriber could race with this one's.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use common::*;
use messaging_cascade::Outcome;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event as TracingEvent, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Debug, Default)]
struct Captured {
    /// `span` or `event`.
    what: &'static str,
    /// The span's name, or the event's target.
    name: String,
    fields: BTreeMap<String, String>,
    /// For an event: the notification id of the `cascade` span it happened in.
    cascade: Option<String>,
}

#[derive(Default)]
struct Capture {
    records: Mutex<Vec<Captured>>,
    spans: Mutex<HashMap<u64, usize>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

#[derive(Clone)]
struct CaptureLayer(Arc<Capture>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for CaptureLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        let mut c = Captured {
            what: "span",
            name: attrs.metadata().name().to_owned(),
            ..Captured::default()
        };
        attrs.record(&mut Fields(&mut c.fields));
        let mut records = self.0.records.lock().unwrap();
        self.0
            .spans
            .lock()
            .unwrap()
            .insert(id.into_u64(), records.len());
        records.push(c);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some(&i) = self.0.spans.lock().unwrap().get(&id.into_u64()) {
            values.record(&mut Fields(&mut self.0.records.lock().unwrap()[i].fields));
        }
    }

    fn on_event(&self, event: &TracingEvent<'_>, ctx: Context<'_, S>) {
        let mut c = Captured {
            what: "event",
            name: event.metadata().target().to_owned(),
            ..Captured::default()
        };
        event.record(&mut Fields(&mut c.fields));
        let spans = self.0.spans.lock().unwrap();
        let mut records = self.0.records.lock().unwrap();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if span.name() == "cascade"
                    && let Some(&i) = spans.get(&span.id().into_u64())
                {
                    c.cascade = records[i].fields.get("notification.id").cloned();
                    break;
                }
            }
        }
        records.push(c);
    }
}

fn captured_run() -> (Vec<Captured>, BTreeMap<&'static str, Option<Outcome>>) {
    let capture = Arc::new(Capture::default());
    let subscriber = tracing_subscriber::registry().with(CaptureLayer(capture.clone()));
    let outcomes = tracing::subscriber::with_default(subscriber, || {
        block_on(async {
            let w = world();
            run(&w).await
        })
    });
    let records = capture.records.lock().unwrap().clone();
    (records, outcomes)
}

fn spans<'a>(records: &'a [Captured], name: &str) -> Vec<&'a Captured> {
    records
        .iter()
        .filter(|r| r.what == "span" && r.name == name)
        .collect()
}

fn field<'a>(r: &'a Captured, name: &str) -> &'a str {
    r.fields
        .get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no field {name} in {r:?}"))
}

fn events_with<'a>(records: &'a [Captured], message: &str) -> Vec<&'a Captured> {
    records
        .iter()
        .filter(|r| {
            r.what == "event"
                && r.fields
                    .get("message")
                    .is_some_and(|m| m.starts_with(message))
        })
        .collect()
}

#[test]
fn every_cascade_and_attempt_has_a_span_and_no_field_holds_text_or_secret() {
    let (records, outcomes) = captured_run();
    check_outcomes(&outcomes);

    // No text, no secret, no phone number, anywhere.
    for r in &records {
        for (k, v) in &r.fields {
            for marker in [TEXT_MARKER, TOKEN_MARKER, "9123456789", "напоминаем"] {
                assert!(
                    !v.contains(marker),
                    "{} {} field {k} holds {marker}: {v}",
                    r.what,
                    r.name
                );
            }
        }
    }

    // A cascade span per move of each cascade, with its id, policy, step and (once ended)
    // outcome.
    let cascades = spans(&records, "cascade");
    for id in ["n1", "n2", "n3", "n4", "n5", "n6"] {
        let mine: Vec<_> = cascades
            .iter()
            .filter(|s| field(s, "notification.id") == id)
            .collect();
        assert!(!mine.is_empty(), "no cascade span for {id}");
        assert!(mine.iter().all(|s| field(s, "cascade.policy") == "clinic"));
        assert!(mine.iter().all(|s| s.fields.contains_key("cascade.step")));
        assert!(
            mine.iter()
                .any(|s| s.fields.get("outcome").map(String::as_str) == Some("delivered")),
            "{id}: {mine:?}"
        );
    }
    let n3_inputs: Vec<&str> = cascades
        .iter()
        .filter(|s| field(s, "notification.id") == "n3")
        .map(|s| field(s, "cascade.input"))
        .collect();
    assert_eq!(
        n3_inputs,
        ["submitted", "timer", "delivery_report", "delivery_report"]
    );

    // A send span per attempt: 6 on WhatsApp (n4 twice), 3 on Telegram, 1 on SMS.
    let sends = spans(&records, "send");
    let count = |ch: &str| {
        sends
            .iter()
            .filter(|s| field(s, "channel.id") == ch)
            .count()
    };
    assert_eq!((count("wa"), count("tg"), count("sms")), (6, 3, 1));
    for s in &sends {
        assert_eq!(field(s, "messaging.operation.name"), "send");
        assert_eq!(field(s, "messaging.operation.type"), "send");
        assert_eq!(
            field(s, "messaging.destination.name"),
            field(s, "channel.id")
        );
        assert_eq!(field(s, "messaging.system"), field(s, "channel.kind"));
        let outcome = field(s, "outcome");
        if outcome == "sent" {
            assert!(s.fields.contains_key("messaging.message.id"), "{s:?}");
        } else {
            assert!(s.fields.contains_key("error.type"), "{s:?}");
        }
    }
    let wa: Vec<_> = sends
        .iter()
        .filter(|s| field(s, "channel.id") == "wa")
        .collect();
    assert!(wa.iter().all(|s| field(s, "channel.kind") == "whatsapp"
        && field(s, "evidence.awaited") == "delivered"
        && field(s, "cascade.step") == "0"));
    let wa_outcomes: Vec<(&str, &str)> = wa
        .iter()
        .map(|s| {
            (
                field(s, "outcome"),
                s.fields.get("error.type").map_or("", String::as_str),
            )
        })
        .collect();
    assert_eq!(
        wa_outcomes,
        [
            ("sent", ""),
            ("failed", "unreachable"),
            ("outcome_unknown", "outcome_unknown"),
            ("sent", ""),
            ("sent", ""),
            ("failed", "channel_down"),
        ]
    );
    assert_eq!(
        wa.iter()
            .filter(|s| field(s, "possible_duplicate") == "true")
            .count(),
        1
    );
    let first_wa = wa[0];
    assert_eq!(field(first_wa, "messaging.message.id"), "wa-1");
    let tg = sends
        .iter()
        .find(|s| field(s, "channel.id") == "tg")
        .unwrap();
    assert_eq!(field(tg, "evidence.awaited"), "accepted");

    // The events tell the story.
    let of = |message: &str| -> Vec<Option<String>> {
        events_with(&records, message)
            .iter()
            .map(|e| e.cascade.clone())
            .collect()
    };
    assert_eq!(
        of("window expired"),
        [Some("n3".to_owned())],
        "window expiry"
    );
    let reroutes = of("reroute");
    for id in ["n2", "n3", "n5"] {
        assert!(reroutes.contains(&Some(id.into())), "{id}: {reroutes:?}");
    }
    assert_eq!(of("late report"), [Some("n3".to_owned())], "late report");
    assert_eq!(of("step skipped").len(), 2);
    assert_eq!(
        of("sending again after an unknown outcome"),
        [Some("n4".to_owned())]
    );
    let health = events_with(&records, "channel health changed");
    assert_eq!(health.len(), 1, "{health:?}");
    assert_eq!(field(health[0], "channel.id"), "wa");
    assert_eq!(field(health[0], "to"), "down");
    let failed = events_with(&records, "attempt failed");
    assert!(
        failed
            .iter()
            .any(|e| e.fields.get("error.type").map(String::as_str) == Some("unreachable"))
    );
    assert!(
        events_with(&records, "cascade ended: delivered").len() >= 5,
        "every delivery is told"
    );
}
