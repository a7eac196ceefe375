//! The webhook journal: the conformance suite (`messaging_core::journal::conformance`) on SQLite
//! and on PostgreSQL (when `MESSAGING_TEST_DATABASE_URL` is set); SQLite keeps pending entries
//! and keys across a reopen; databases of the previous schema are upgraded; two PostgreSQL
//! instances never process one entry twice.

mod common;

use std::time::Duration;

use messaging_core::DeliveryStatus;
use messaging_core::journal::WebhookJournal;
use messaging_core::journal::conformance::{self, report, t};

const LEASE: Duration = Duration::from_secs(60);

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_webhook_journal_conforms() {
    let files = common::SqliteFiles::temp();
    conformance::run_all(|| files.make()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_journal_survives_a_reopen() {
    use messaging_store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let recs = [
        report("a", DeliveryStatus::Delivered),
        report("b", DeliveryStatus::Delivered),
    ];
    assert_eq!(
        store.record(&recs, t(0)).await.expect("record"),
        [true, true]
    );
    let claimed = store.claim(t(0), 1, LEASE).await.expect("claim");
    store
        .complete(&[claimed[0].id], t(1))
        .await
        .expect("complete");
    drop(store);

    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(
        store.record(&recs, t(2)).await.expect("record"),
        [false, false],
        "keys survive a reopen, processed or not"
    );
    assert_eq!(store.pending().await.expect("pending"), 1);
    let left = store.claim(t(2), 10, LEASE).await.expect("claim");
    assert_eq!(left.len(), 1, "the unprocessed entry is still there");
    assert_eq!(left[0].event, recs[1].event);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrades_a_schema_6_database() {
    use messaging_cascade::store::CascadeStore;
    use messaging_store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v6.db");
    drop(SqliteStore::open(&path).await.expect("open"));
    // What a version-6 build left behind: no journal.
    let c = rusqlite::Connection::open(&path).expect("raw open");
    c.execute_batch(
        "DROP TABLE webhook_journal; DELETE FROM schema_version WHERE version >= 7;
         INSERT INTO opt_outs (key, purpose, opted_out, at_ns) VALUES ('tg:1', '', 1, 0);",
    )
    .expect("downgrade to v6");
    drop(c);

    let store = SqliteStore::open(&path).await.expect("open v6 database");
    assert_eq!(
        store.schema_version().await.expect("version"),
        messaging_store::sqlite::SQLITE_SCHEMA_VERSION
    );
    assert_eq!(messaging_store::sqlite::SQLITE_SCHEMA_VERSION, 9);
    assert_eq!(store.count_active().await.expect("count"), 0);
    let rec = [report("x", DeliveryStatus::Read)];
    assert_eq!(store.record(&rec, t(0)).await.expect("record"), [true]);
    drop(store);
    // Opening again applies nothing twice.
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(store.record(&rec, t(0)).await.expect("record"), [false]);
    assert_eq!(store.pending().await.expect("pending"), 1);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_webhook_journal_conforms() {
    common::run_on_postgres("journal", |pg| async move {
        conformance::run_all(|| pg.make()).await;
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrades_a_schema_5_database_and_instances_share_the_journal() {
    use messaging_store::{PostgresOptions, PostgresStore};
    common::run_on_postgres("journal_up", |pg| async move {
        let old = pg.make().await;
        let schema = old.schema().to_owned();
        let (client, conn) = tokio_postgres::connect(pg.config(), tokio_postgres::NoTls)
            .await
            .expect("raw connect");
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "DROP TABLE \"{schema}\".webhook_journal;
                 DELETE FROM \"{schema}\".schema_version WHERE version >= 6;"
            ))
            .await
            .expect("downgrade to v5");
        let open = || {
            PostgresStore::connect_with(
                pg.config(),
                PostgresOptions::default().schema(&schema).pool_size(4),
            )
        };
        let a = open().await.expect("open v5 schema");
        assert_eq!(
            a.schema_version().await.expect("version"),
            messaging_store::postgres::POSTGRES_SCHEMA_VERSION
        );
        assert_eq!(messaging_store::postgres::POSTGRES_SCHEMA_VERSION, 8);
        let b = open().await.expect("second instance");

        // Instance A records; instance B sees the keys and claims what A has not.
        let recs: Vec<_> = (0..50)
            .map(|i| report(&format!("m{i}"), DeliveryStatus::Delivered))
            .collect();
        assert!(
            a.record(&recs, t(0))
                .await
                .expect("record")
                .iter()
                .all(|f| *f)
        );
        assert!(
            b.record(&recs, t(1))
                .await
                .expect("record")
                .iter()
                .all(|f| !*f),
            "a retry reaching another instance is dropped"
        );
        let (x, y) = tokio::join!(a.claim(t(2), 30, LEASE), b.claim(t(2), 30, LEASE));
        let (x, y) = (x.expect("claim a"), y.expect("claim b"));
        assert_eq!(
            x.len() + y.len(),
            50,
            "both instances together claim everything"
        );
        let mut ids: Vec<_> = x.iter().chain(&y).map(|e| e.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 50, "no entry claimed by both instances");
        // A dies; B claims A's entries when their lease ends.
        let y_ids: Vec<_> = y.iter().map(|e| e.id).collect();
        b.complete(&y_ids, t(3)).await.expect("complete");
        assert!(b.claim(t(4), 100, LEASE).await.expect("claim").is_empty());
        let again = b.claim(t(62), 100, LEASE).await.expect("claim");
        assert_eq!(again.len(), x.len(), "a dead instance's entries come back");
        assert!(again.iter().all(|e| e.attempts == 2));
    })
    .await;
}
