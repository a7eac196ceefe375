//! The sender governor's counters: the conformance suite
//! (`messaging_hygiene::governor::conformance`) on SQLite and on PostgreSQL (when
//! `MESSAGING_TEST_DATABASE_URL` is set), and SQLite keeps them across a reopen.

mod common;

use messaging_core::{ChannelId, Purpose};
use messaging_hygiene::SenderCounters;
use messaging_hygiene::governor::conformance::{self, person, send, t};

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_counters_conform() {
    let files = common::SqliteFiles::temp();
    conformance::run_all(|| files.make()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_counters_survive_a_reopen() {
    use messaging_store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("counters.db");
    let wa = ChannelId::from("wa");
    let store = SqliteStore::open(&path).await.expect("open");
    store
        .record_send(&send("wa", "a", Purpose::Marketing, t(0), true))
        .await
        .expect("record_send");
    store
        .record_inbound(&wa, "phone:b", t(1))
        .await
        .expect("record_inbound");
    store
        .set_connected_at(&wa, t(-100))
        .await
        .expect("connected");
    drop(store);

    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(
        store.window(&wa, t(-60)).await.expect("window").sends,
        1,
        "sends survive a reopen"
    );
    assert_eq!(
        store
            .marketing_since(&person("a"), t(-60))
            .await
            .expect("marketing"),
        [t(0)]
    );
    assert!(store.known(&wa, &person("b")).await.expect("known"));
    assert_eq!(store.replies_since(&wa, t(0)).await.expect("replies"), 1);
    assert_eq!(
        store.connected_at(&wa).await.expect("connected_at"),
        Some(t(-100))
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_counters_conform() {
    common::run_on_postgres("gov", |pg| async move {
        conformance::run_all(|| pg.make()).await;
    })
    .await;
}
