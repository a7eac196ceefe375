//! Inbox threads: the conformance suite (`messaging_conversations::inbox::conformance`) on
//! SQLite and on PostgreSQL; SQLite keeps them across a reopen, and two PostgreSQL instances
//! share threads and move one thread at once exactly once.

mod common;

use messaging_conversations::inbox::conformance::{self, message};
use messaging_conversations::inbox::{InboxStore, ThreadId};
use messaging_core::{Address, ContactId};

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_inbox_store_conforms() {
    let files = common::SqliteFiles::temp();
    conformance::run_all(|| files.make()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_inbox_survives_a_reopen() {
    use messaging_store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("inbox.db");
    let anna = ThreadId::contact(&ContactId::from("anna"));
    let store = SqliteStore::open(&path).await.expect("open");
    for (id, at) in [("1", 10), ("2", 5), ("3", 10)] {
        store
            .append(&message(id, &anna, at, "x"))
            .await
            .expect("append");
    }
    drop(store);
    let store = SqliteStore::open(&path).await.expect("reopen");
    let kept: Vec<String> = store
        .thread(&anna)
        .await
        .expect("thread")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        kept,
        ["2", "1", "3"],
        "messages and their order survive a reopen"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inbox_store_conforms() {
    common::run_on_postgres("inbox", |pg| async move {
        conformance::run_all(|| pg.make()).await;
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_share_threads_and_move_one_thread_once() {
    use messaging_store::{PostgresOptions, PostgresStore};
    common::run_on_postgres("inbox2", |pg| async move {
        let a = pg.make().await;
        // A second pool on the same schema: another instance behind the load balancer.
        let b = PostgresStore::connect_with(
            pg.config(),
            PostgresOptions::default().schema(a.schema()).pool_size(4),
        )
        .await
        .expect("connect b");
        let anna = ThreadId::contact(&ContactId::from("anna"));
        a.append(&message("1", &anna, 1, "x"))
            .await
            .expect("append");
        assert_eq!(
            b.thread(&anna).await.expect("thread").len(),
            1,
            "instance b reads what instance a wrote"
        );

        let from = ThreadId::address(&Address::Telegram(9));
        let boris = ContactId::from("boris");
        let to = ThreadId::contact(&boris);
        for i in 0..50 {
            a.append(&message(&format!("race-{i}"), &from, i, "x"))
                .await
                .expect("append");
        }
        let (ma, mb) = tokio::join!(
            a.rethread(&from, &to, &boris),
            b.rethread(&from, &to, &boris)
        );
        assert_eq!(
            ma.expect("rethread a") + mb.expect("rethread b"),
            50,
            "each message moved once"
        );
        assert_eq!(b.thread(&to).await.expect("thread").len(), 50);
        assert!(a.thread(&from).await.expect("thread").is_empty());
    })
    .await;
}
