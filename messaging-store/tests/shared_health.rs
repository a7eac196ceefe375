//! Channel health shared through PostgreSQL (`HealthBoard` on `PostgresStore`): the board
//! conformance suite; two engines on two connection pools to one schema (an outage one sees
//! reroutes the other, one probe between them, one ramp); and, on the system clock with the
//! engines' own `run` loops, how long a verdict takes to reach the second instance. Skipped
//! unless `MESSAGING_TEST_DATABASE_URL` is set.
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use messaging_cascade::health::HealthState;
use messaging_cascade::shared_health;
use messaging_cascade::{CascadePolicy, Engine, Notification, Step};
use messaging_core::testkit::StubChannel;
use messaging_core::{Address, ChannelError, ChannelKind, Content, Recipient};
use messaging_store::{PostgresOptions, PostgresStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_health_board_conforms() {
    common::run_on_postgres("health", |pg| async move {
        let store = pg.make().await;
        shared_health::conformance::run_all(&store).await;
    })
    .await;
}

/// A second store on the schema of `first`, with its own pool: another instance.
async fn second_instance(config: &str, first: &PostgresStore) -> PostgresStore {
    PostgresStore::connect_with(
        config,
        PostgresOptions::default()
            .schema(first.schema())
            .pool_size(2),
    )
    .await
    .expect("connect the second instance")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_postgres_share_an_outage_a_probe_and_a_ramp() {
    common::run_on_postgres("health2", |pg| async move {
        let a = pg.make().await;
        let b = second_instance(pg.config(), &a).await;
        let applied = shared_health::conformance::two_engines(Arc::new(a), Arc::new(b)).await;
        assert!(applied >= 2, "{applied}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_reaches_the_second_instance_within_its_sync_interval() {
    common::run_on_postgres("health3", |pg| async move {
        let store_a = pg.make().await;
        let store_b = second_instance(pg.config(), &store_a).await;
        let build = |board: PostgresStore, name: &str| {
            let wa = Arc::new(StubChannel::new("wa", ChannelKind::WhatsApp));
            let tg = Arc::new(StubChannel::new("tg", ChannelKind::Telegram));
            let engine = Engine::builder()
                .channel(wa.clone())
                .channel(tg.clone())
                .policy(CascadePolicy::new(
                    "reminder",
                    vec![Step::new("wa"), Step::new("tg")],
                ))
                .default_policy("reminder")
                .health_board(Arc::new(board))
                .instance(name)
                .build()
                .expect("engine");
            (engine, wa, tg)
        };
        let (a, a_wa, _) = build(store_a, "a");
        let (b, b_wa, b_tg) = build(store_b, "b");
        // Both run as a service would: `run` syncs health every second (the default).
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut loops = Vec::new();
        for e in [a.clone(), b.clone()] {
            let mut stopped = stopped.clone();
            loops.push(tokio::spawn(async move {
                e.run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let patient = |id: &str| {
            Notification::new(
                id,
                Recipient::with_phone(format!("p-{id}"), "+79123456789")
                    .expect("phone")
                    .address(Address::Telegram(42)),
                Content::text("Напоминаем о приёме"),
            )
        };
        a_wa.push_error(ChannelError::channel_down("invalid OAuth token"));
        let seen_at = Instant::now();
        a.submit(patient("a-1")).await.expect("submit");
        let wa = "wa".into();
        assert_eq!(a.health(&wa).expect("wa").state, HealthState::Down);
        let reached = loop {
            if b.health(&wa).expect("wa").state == HealthState::Down {
                break seen_at.elapsed();
            }
            assert!(
                seen_at.elapsed() < Duration::from_secs(10),
                "the outage did not reach b in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        println!(
            "an outage seen by instance a reached instance b in {} ms (sync interval 1 s)",
            reached.as_millis()
        );
        // a posts at once (its loop wakes on news); b reads within its interval.
        assert!(reached < Duration::from_millis(1_500), "{reached:?}");
        b.submit(patient("b-1")).await.expect("submit");
        assert_eq!(b_wa.send_count(), 0, "b never sent on WhatsApp");
        assert_eq!(b_tg.send_count(), 1);
        let _ = stop.send(true);
        for l in loops {
            l.await.expect("engine loop");
        }
    })
    .await;
}
