//! PostgreSQL-specific behaviour: several instances on one schema, concurrent migrations,
//! typed errors. Skipped (with a message) unless `MESSAGING_TEST_DATABASE_URL` is set.
#![cfg(feature = "postgres")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use messaging_cascade::store::conformance::{record, t};
use messaging_cascade::store::{CascadeStore, StoreError};
use messaging_core::NotificationId;
use messaging_store::{PostgresOptions, PostgresStore};

async fn pair(tag: &str) -> Option<(PostgresStore, PostgresStore)> {
    let config = common::pg_config()?;
    let schema = common::unique_schema(tag);
    // Two pools = two engine instances; they migrate the same schema at the same time.
    let (a, b) = tokio::join!(
        PostgresStore::connect_with(
            &config,
            PostgresOptions::default().schema(&schema).pool_size(4)
        ),
        PostgresStore::connect_with(
            &config,
            PostgresOptions::default().schema(&schema).pool_size(4)
        ),
    );
    Some((a.expect("connect a"), b.expect("connect b")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_due_work_without_overlap() {
    let Some((a, b)) = pair("multi").await else {
        return;
    };
    let result = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            assert_eq!(
                a.schema_version().await.expect("version"),
                messaging_store::postgres::POSTGRES_SCHEMA_VERSION
            );
            let n = 400;
            for i in 0..n {
                a.insert(&record(
                    &format!("m-{i:04}"),
                    "+79123456789",
                    Some(t(i % 50)),
                ))
                .await
                .expect("insert");
            }
            // Each instance claims and advances (finishes) what it got, like an engine would.
            let work = |s: PostgresStore| async move {
                let mut mine = Vec::new();
                loop {
                    let ids = s
                        .claim_due(t(100), 16, Duration::from_secs(60))
                        .await
                        .expect("claim");
                    if ids.is_empty() {
                        return mine;
                    }
                    for id in ids {
                        let mut r = s.get(&id).await.expect("get").expect("present");
                        r.wake_at = None;
                        r.phase = messaging_cascade::engine::Phase::Finished(
                            messaging_cascade::Outcome::Cancelled,
                        );
                        s.update(&r).await.expect("update of a claimed cascade");
                        mine.push(id);
                    }
                }
            };
            let (x, y) = tokio::join!(work(a.clone()), work(b.clone()));
            assert!(!x.is_empty() && !y.is_empty(), "both instances got work");
            let mut seen: HashMap<NotificationId, usize> = HashMap::new();
            for id in x.into_iter().chain(y) {
                *seen.entry(id).or_default() += 1;
            }
            assert_eq!(seen.len(), n as usize, "every cascade advanced");
            assert!(seen.values().all(|&c| c == 1), "a cascade advanced twice");
            assert_eq!(a.count_active().await.expect("count"), 0);
            assert_eq!(b.next_wake().await.expect("next"), None);
        }
    })
    .await;
    a.drop_schema().await.expect("drop schema");
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_instances_one_update_wins_and_corrupt_rows_are_typed() {
    let Some((a, b)) = pair("race").await else {
        return;
    };
    let config = common::pg_config().unwrap_or_default();
    let schema = a.schema().to_owned();
    let result = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            for round in 0..20 {
                let id = format!("r-{round}");
                a.insert(&record(&id, "+79123456789", Some(t(1))))
                    .await
                    .expect("insert");
                let mut x = record(&id, "+79123456789", Some(t(2)));
                x.step = 1;
                let mut y = x.clone();
                y.step = 2;
                let (rx, ry) = tokio::join!(a.update(&x), b.update(&y));
                match (rx, ry) {
                    (Ok(1), Err(StoreError::Conflict(_)))
                    | (Err(StoreError::Conflict(_)), Ok(1)) => {}
                    other => panic!("round {round}: expected one winner, got {other:?}"),
                }
            }
            // A row someone broke by hand reads as Corrupt, not a panic.
            let (client, conn) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
                .await
                .expect("raw connect");
            tokio::spawn(conn);
            client
                .batch_execute(&format!(
                    "UPDATE \"{schema}\".cascades SET record = '[1,2]' WHERE id = 'r-0'"
                ))
                .await
                .expect("corrupt");
            match a.get(&NotificationId::new("r-0")).await {
                Err(StoreError::Corrupt(msg)) => assert!(msg.contains("r-0"), "{msg}"),
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
    })
    .await;
    a.drop_schema().await.expect("drop schema");
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn bad_schema_names_are_refused_before_connecting() {
    // Nothing listens on port 1: the name check must come first.
    match PostgresStore::connect_with(
        "host=127.0.0.1 port=1 user=nobody",
        PostgresOptions::default().schema("x; DROP SCHEMA public"),
    )
    .await
    {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("schema name"), "{msg}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
    match PostgresStore::connect("this is not a connection string").await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("postgres"), "{msg}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_backend_error() {
    match PostgresStore::connect_with(
        "host=127.0.0.1 port=1 user=nobody connect_timeout=2",
        PostgresOptions::default(),
    )
    .await
    {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("postgres"), "{msg}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
}
