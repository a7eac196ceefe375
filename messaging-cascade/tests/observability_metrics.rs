//! Every metric of a scripted run of cascades ([`common::run`]), read from `metrics-util`'s
//! debugging recorder: the counters match the run's known outcomes, and every name is one of
//! [`messaging_core::metrics::ALL`].

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use messaging_cascade::Outcome;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

type Series = BTreeMap<(String, Vec<(String, String)>), DebugValue>;

fn metered_run() -> (Series, BTreeMap<&'static str, Option<Outcome>>) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let outcomes = ::metrics::with_local_recorder(&recorder, || {
        block_on(async {
            let w = world();
            run(&w).await
        })
    });
    let series = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), value)
        })
        .collect();
    (series, outcomes)
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

fn channel(id: &str) -> Vec<(&'static str, &str)> {
    let kind = match id {
        "wa" => "whatsapp",
        "tg" => "telegram",
        "sms" => "sms",
        _ => "none",
    };
    vec![("channel_id", id), ("channel_kind", kind)]
}

fn counter(series: &Series, name: &str, ch: &str, extra: &[(&str, &str)]) -> u64 {
    let mut l = channel(ch);
    l.extend_from_slice(extra);
    match series.get(&(name.to_owned(), labels(&l))) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        Some(other) => panic!("{name} is not a counter: {other:?}"),
    }
}

#[test]
fn counters_match_the_scripted_run() {
    use messaging_core::metrics as m;
    let (series, outcomes) = metered_run();
    check_outcomes(&outcomes);

    // Every series is one of the documented names, with no text or secret in a label.
    for (name, labels) in series.keys() {
        assert!(
            m::ALL.contains(&name.as_str()),
            "undocumented metric {name}"
        );
        for (_, v) in labels {
            assert!(!v.contains(TEXT_MARKER) && !v.contains(TOKEN_MARKER));
        }
    }

    // Sends: n1, n2, n4 twice, n3, n5 on WhatsApp; n2, n5, n6 on Telegram; n3 on SMS.
    assert_eq!(counter(&series, m::SENDS, "wa", &[]), 6);
    assert_eq!(counter(&series, m::SENDS, "tg", &[]), 3);
    assert_eq!(counter(&series, m::SENDS, "sms", &[]), 1);
    // Failures by kind.
    for (kind, n) in [
        ("unreachable", 1),
        ("outcome_unknown", 1),
        ("channel_down", 1),
        ("temporary", 0),
    ] {
        assert_eq!(
            counter(&series, m::FAILURES, "wa", &[("kind", kind)]),
            n,
            "{kind}"
        );
    }
    // Skips by reason: Telegram for n3 (no chat), WhatsApp for n6 (down).
    assert_eq!(
        counter(&series, m::SKIPS, "tg", &[("reason", "no_address")]),
        1
    );
    assert_eq!(
        counter(&series, m::SKIPS, "wa", &[("reason", "channel_down")]),
        1
    );
    // Outcomes by the channel that delivered.
    let delivered = |ch| counter(&series, m::OUTCOMES, ch, &[("outcome", "delivered")]);
    assert_eq!(
        (delivered("wa"), delivered("tg"), delivered("sms")),
        (2, 3, 1)
    );
    assert_eq!(counter(&series, m::DUPLICATES, "wa", &[]), 1);
    // Delivery reports: n1, n4 and n3's late one on WhatsApp, n3 on SMS.
    assert_eq!(
        counter(
            &series,
            m::DELIVERY_REPORTS,
            "wa",
            &[("status", "delivered")]
        ),
        3
    );
    assert_eq!(
        counter(
            &series,
            m::DELIVERY_REPORTS,
            "sms",
            &[("status", "delivered")]
        ),
        1
    );

    // Histograms: a time to delivery per report that first proved delivery; n1's is 45 s.
    let hist = |name: &str, ch: &str| match series.get(&(name.to_owned(), labels(&channel(ch)))) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|f| f.into_inner()).collect::<Vec<_>>(),
        None => Vec::new(),
        Some(other) => panic!("{name} is not a histogram: {other:?}"),
    };
    let wa_ttd = hist(m::TIME_TO_DELIVERY, "wa");
    assert_eq!(wa_ttd.len(), 3, "{wa_ttd:?}");
    assert_eq!(wa_ttd[0], 45.0);
    assert_eq!(hist(m::TIME_TO_DELIVERY, "sms"), [30.0]);
    assert_eq!(hist(m::SEND_DURATION, "wa").len(), 6);

    // Gauges: WhatsApp is down; after the last tick nothing runs and no timer was due.
    let gauge = |name: &str, l: Vec<(String, String)>| match series.get(&(name.to_owned(), l)) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(gauge(m::CHANNEL_HEALTH, labels(&channel("wa"))), 2.0);
    assert_eq!(gauge(m::CHANNEL_HEALTH, labels(&channel("tg"))), 0.0);
    assert_eq!(gauge(m::CASCADES_RUNNING, Vec::new()), 0.0);
    assert_eq!(gauge(m::TIMERS_DUE, Vec::new()), 0.0);
}

#[test]
fn the_running_and_due_gauges_follow_the_store() {
    use messaging_core::metrics as m;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let gauges = || -> (f64, f64) {
        let mut running = f64::NAN;
        let mut due = f64::NAN;
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            if let DebugValue::Gauge(v) = value {
                match key.key().name() {
                    n if n == m::CASCADES_RUNNING => running = v.into_inner(),
                    n if n == m::TIMERS_DUE => due = v.into_inner(),
                    _ => {}
                }
            }
        }
        (running, due)
    };
    ::metrics::with_local_recorder(&recorder, || {
        block_on(async {
            let w = world();
            for i in 0..3 {
                w.engine
                    .submit(notice(&format!("p{i}"), false))
                    .await
                    .unwrap();
            }
            w.engine.tick().await.unwrap();
            assert_eq!(gauges(), (3.0, 0.0), "three wait on WhatsApp");
            // The windows close: three timers due, each cascade now waits on SMS.
            w.clock.advance(Duration::from_secs(3601));
            w.engine.tick().await.unwrap();
            assert_eq!(gauges(), (3.0, 3.0));
            assert_eq!(w.sms.sent().len(), 3);
            assert!(w.tg.sent().is_empty());
        })
    });
}
