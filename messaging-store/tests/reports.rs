//! The operator's reports on a database written before they existed: the migration that adds
//! their columns (SQLite 8, PostgreSQL 7) fills them from the stored records, so the answers
//! equal the in-memory reference's on the same scenario.

mod common;

use std::time::Duration;

use chrono::NaiveDate;
use messaging_cascade::store::conformance::{report_scenario, t};
use messaging_cascade::store::{
    CascadeReports, DailyCost, EndedCount, MemoryStore, RunningCount, Stuck,
};

type Answers = (Vec<RunningCount>, Stuck, Vec<EndedCount>, Vec<DailyCost>);

async fn answers<S: CascadeReports + ?Sized>(s: &S) -> Answers {
    let day = |m, d| NaiveDate::from_ymd_opt(2030, m, d).expect("date");
    let first = NaiveDate::from_ymd_opt(2029, 12, 1).expect("date");
    (
        s.running().await.expect("running"),
        s.stuck(t(1_000), Duration::from_secs(60), 100)
            .await
            .expect("stuck"),
        s.ended_between(t(0), t(100_000)).await.expect("ended"),
        s.cost_by_channel_day(first, day(2, 1)).await.expect("cost"),
    )
}

/// The reference: the scenario on the in-memory store.
async fn expected() -> Answers {
    let memory = MemoryStore::new();
    report_scenario(&memory).await;
    let a = answers(&memory).await;
    assert_eq!(
        (a.0.len(), a.1.total, a.2.len(), a.3.len()),
        (5, 4, 7, 5),
        "the scenario has something in every report"
    );
    a
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrade_fills_the_report_columns_from_the_records() {
    use messaging_store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v7.db");
    {
        let s = SqliteStore::open(&path).await.expect("open");
        report_scenario(&s).await;
    }
    // What a version-7 build left behind: no report columns, no costs, no running counts.
    let c = rusqlite::Connection::open(&path).expect("raw open");
    c.execute_batch(
        "DROP TABLE running_counts; DROP INDEX cascades_deadline;
         ALTER TABLE cascades DROP COLUMN state; ALTER TABLE cascades DROP COLUMN channel;
         ALTER TABLE cascades DROP COLUMN deadline_ns; DROP TABLE attempt_costs;
         DELETE FROM schema_version WHERE version >= 8;",
    )
    .expect("downgrade to v7");
    drop(c);

    let s = SqliteStore::open(&path).await.expect("open v7 database");
    assert_eq!(
        s.schema_version().await.expect("version"),
        messaging_store::sqlite::SQLITE_SCHEMA_VERSION
    );
    assert_eq!(answers(&s).await, expected().await);
    drop(s);
    // Migration 8 again over its own result (a half-downgraded file) changes nothing.
    let c = rusqlite::Connection::open(&path).expect("raw open");
    c.execute_batch("DELETE FROM schema_version WHERE version >= 8;")
        .expect("forget migration 8");
    drop(c);
    let s = SqliteStore::open(&path).await.expect("open again");
    assert_eq!(answers(&s).await, expected().await);
}

/// Migration 9 replaces the index of running cascades with counts kept by every write: a
/// version-8 file gets them from its rows, keeps its records, and keeps them counted.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrade_counts_the_running_cascades_of_a_version_8_file() {
    use messaging_cascade::store::CascadeStore;
    use messaging_cascade::store::conformance::record;
    use messaging_core::NotificationId;
    use messaging_store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v8.db");
    let ids: Vec<NotificationId>;
    {
        let s = SqliteStore::open(&path).await.expect("open");
        report_scenario(&s).await;
        ids = s
            .list(&messaging_cascade::store::ListQuery::running(100))
            .await
            .expect("list");
        assert!(!ids.is_empty(), "the scenario has running cascades");
    }
    // What a version-8 build left behind: the index, no counts.
    let c = rusqlite::Connection::open(&path).expect("raw open");
    c.execute_batch(
        "DROP TABLE running_counts;
         CREATE INDEX cascades_running ON cascades (state, channel) WHERE finished = 0;
         DELETE FROM schema_version WHERE version >= 9;",
    )
    .expect("downgrade to v8");
    drop(c);

    let s = SqliteStore::open(&path).await.expect("open v8 database");
    assert_eq!(
        s.schema_version().await.expect("version"),
        messaging_store::sqlite::SQLITE_SCHEMA_VERSION
    );
    assert_eq!(answers(&s).await, expected().await);
    for id in &ids {
        let r = s.get(id).await.expect("get").expect("the record is kept");
        assert_eq!(r.id(), id);
    }
    // Written after the upgrade: a new running cascade is counted.
    let before: u64 = s
        .running()
        .await
        .expect("running")
        .iter()
        .map(|r| r.count)
        .sum();
    s.insert(&record("after-upgrade", "+79123456789", Some(t(5))))
        .await
        .expect("insert");
    let after: u64 = s
        .running()
        .await
        .expect("running")
        .iter()
        .map(|r| r.count)
        .sum();
    assert_eq!(after, before + 1);
    assert_eq!(
        usize::try_from(after).expect("count"),
        s.count_active().await.expect("active")
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrade_fills_the_report_columns_from_the_records() {
    use messaging_store::{PostgresOptions, PostgresStore};
    common::run_on_postgres("reports_up", |pg| async move {
        let old = pg.make().await;
        report_scenario(&old).await;
        let schema = old.schema().to_owned();
        let (client, conn) = tokio_postgres::connect(pg.config(), tokio_postgres::NoTls)
            .await
            .expect("raw connect");
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "ALTER TABLE \"{schema}\".cascades DROP COLUMN state, DROP COLUMN channel,
                     DROP COLUMN deadline_ns;
                 DROP TABLE \"{schema}\".attempt_costs;
                 DELETE FROM \"{schema}\".schema_version WHERE version >= 7;"
            ))
            .await
            .expect("downgrade to v6");
        let open = || {
            PostgresStore::connect_with(
                pg.config(),
                PostgresOptions::default().schema(&schema).pool_size(2),
            )
        };
        let s = open().await.expect("open v6 schema");
        assert_eq!(
            s.schema_version().await.expect("version"),
            messaging_store::postgres::POSTGRES_SCHEMA_VERSION
        );
        assert_eq!(answers(&s).await, expected().await);
        client
            .batch_execute(&format!(
                "DELETE FROM \"{schema}\".schema_version WHERE version >= 7;"
            ))
            .await
            .expect("forget migration 7");
        let s = open().await.expect("open again");
        assert_eq!(answers(&s).await, expected().await);
    })
    .await;
}
