//! Two engine instances on one PostgreSQL schema share cascades with timers: every cascade
//! finishes, and no step is sent twice. Skipped unless `MESSAGING_TEST_DATABASE_URL` is set.
//!
//! 5,000 cascades, the figure (about 35 s in a debug build on a loaded 2-core machine);
//! `MESSAGING_MULTI_INSTANCE_CASCADES` sets another count.
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use messaging_cascade::store::CascadeStore;
use messaging_cascade::testkit::{Latency, SimBehavior, SimulatedChannel};
use messaging_cascade::{CascadePolicy, Engine, Notification, Step};
use messaging_core::{
    ChannelKind, Clock, Content, Evidence, ManualClock, NotificationId, Recipient,
};
use messaging_store::{PostgresOptions, PostgresStore};

fn cascades() -> usize {
    std::env::var("MESSAGING_MULTI_INSTANCE_CASCADES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_share_cascades_without_sending_a_step_twice() {
    let Some(config) = common::pg_config() else {
        return;
    };
    // This test checks sharing, not durability: commits need not wait for the disk.
    let config = if config.contains("://") {
        let sep = if config.contains('?') { '&' } else { '?' };
        format!("{config}{sep}options=-c%20synchronous_commit%3Doff")
    } else {
        format!("{config} options='-c synchronous_commit=off'")
    };
    let store = PostgresStore::connect_with(
        &config,
        PostgresOptions::default()
            .schema(common::unique_schema("engines"))
            .pool_size(32),
    )
    .await
    .expect("connect");
    let result = tokio::spawn(run(store.clone())).await;
    store.drop_schema().await.expect("drop schema");
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn run(store: PostgresStore) {
    let total = cascades();
    let clock = ManualClock::at_unix(1_767_250_800);
    // WhatsApp delivers 70% within minutes; the rest time out after the window and go to SMS.
    let wa = Arc::new(
        SimulatedChannel::new("wa", ChannelKind::WhatsApp, clock.clone(), 11).with_behavior(
            SimBehavior {
                latency: Latency::fixed(Duration::from_secs(40)),
                delivery_rate: 0.7,
                ..SimBehavior::default()
            },
        ),
    );
    let sms = Arc::new(
        SimulatedChannel::new("sms", ChannelKind::Sms, clock.clone(), 12).with_behavior(
            SimBehavior {
                latency: Latency::fixed(Duration::from_secs(10)),
                ..SimBehavior::default()
            },
        ),
    );
    let policy = CascadePolicy::new(
        "p",
        vec![
            Step::new("wa")
                .wait_for(Evidence::Delivered)
                .window(Duration::from_secs(600)),
            Step::new("sms")
                .wait_for(Evidence::Delivered)
                .window(Duration::from_secs(600)),
        ],
    );
    let shared: Arc<dyn CascadeStore> = Arc::new(store.clone());
    let engine = || {
        Engine::builder()
            .clock(clock.clone())
            .store(Arc::clone(&shared))
            .channel(wa.clone())
            .channel(sms.clone())
            .policy(policy.clone())
            .without_health()
            .concurrency(32)
            .claim_batch(500)
            .build()
            .expect("engine")
    };
    let engines = [engine(), engine()];

    let started = std::time::Instant::now();
    let mut submits = tokio::task::JoinSet::new();
    for t in 0..64 {
        let engine = engines[t % 2].clone();
        submits.spawn(async move {
            for i in (t..total).step_by(64) {
                let n = Notification::new(
                    format!("mi-{i:05}"),
                    Recipient::with_phone(format!("p-{i}"), &format!("+7912{i:07}"))
                        .expect("phone"),
                    Content::text("Напоминаем: приём завтра в 10:00."),
                );
                engine.submit(n).await.expect("submit");
            }
        });
    }
    while let Some(j) = submits.join_next().await {
        j.expect("submit task");
    }
    let submitted = started.elapsed();

    // Virtual time: jump to the next timer or report, hand reports to alternating engines,
    // and let both engines fire due timers at the same moment.
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 100_000, "the simulation does not settle");
        let mut next = store.next_wake().await.expect("next_wake");
        for c in [&wa, &sms] {
            if let Some(t) = c.next_event_at() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let Some(next) = next else { break };
        clock.set(next);
        let now = clock.now();
        let events: Vec<_> = wa
            .due_events(now)
            .into_iter()
            .chain(sms.due_events(now))
            .collect();
        for (i, e) in events.iter().enumerate() {
            engines[i % 2].handle_event(e).await.expect("handle_event");
        }
        let (a, b) = tokio::join!(engines[0].tick(), engines[1].tick());
        a.expect("tick 0");
        b.expect("tick 1");
        if store.count_active().await.expect("count") == 0
            && wa.next_event_at().is_none()
            && sms.next_event_at().is_none()
        {
            break;
        }
    }

    assert_eq!(
        store.count_active().await.expect("count"),
        0,
        "every cascade finished"
    );
    let (wa_s, sms_s) = (wa.stats(), sms.stats());
    assert_eq!(
        wa_s.sends, total as u64,
        "WhatsApp step sent once per cascade"
    );
    let mut sms_expected = 0;
    for i in 0..total {
        let r = store
            .get(&NotificationId::new(format!("mi-{i:05}")))
            .await
            .expect("get")
            .expect("record present");
        let outcome = r
            .outcome()
            .unwrap_or_else(|| panic!("mi-{i:05} not finished"));
        assert_eq!(outcome.name(), "delivered", "mi-{i:05}: {outcome:?}");
        for step in 0..2 {
            assert!(
                r.attempts_on(step) <= 1,
                "mi-{i:05}: step {step} sent {} times",
                r.attempts_on(step)
            );
        }
        assert!(r.attempts.iter().all(|a| !a.possible_duplicate));
        sms_expected += usize::from(r.attempts_on(1) == 1);
    }
    assert_eq!(
        sms_s.sends, sms_expected as u64,
        "SMS sends match SMS attempts"
    );
    assert!(
        sms_expected > total / 10,
        "the WhatsApp timeouts should have moved many cascades to SMS ({sms_expected})"
    );
    println!(
        "two engines: {total} cascades finished in {rounds} rounds; WhatsApp sends {}, SMS sends {}; \
         submitted in {submitted:?}, all done in {:?}",
        wa_s.sends,
        sms_s.sends,
        started.elapsed()
    );
}
