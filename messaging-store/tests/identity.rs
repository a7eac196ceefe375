//! Identity links and used deep-link tokens: the conformance suite
//! (`messaging_conversations::identity::conformance`) on SQLite and on PostgreSQL (when
//! `MESSAGING_TEST_DATABASE_URL` is set), and SQLite keeps them across a reopen.

mod common;

use messaging_conversations::identity::conformance::{self, t};
use messaging_conversations::identity::{IdentityStore, Link, Provenance, UsedTokenStore};
use messaging_core::{Address, ContactId};

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_identity_store_conforms() {
    let files = common::SqliteFiles::temp();
    conformance::run_all(|| files.make()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_identity_store_survives_a_reopen() {
    use messaging_store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("identity.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let link = Link::new(Address::Telegram(42), "boris", Provenance::DeepLink, t(0))
        .with_token_id("tok-1");
    store.link(&link).await.expect("link");
    assert!(
        store
            .mark_token_used("tok-1", t(60), t(0))
            .await
            .expect("mark")
    );
    drop(store);
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(
        store
            .by_contact(&ContactId::from("boris"))
            .await
            .expect("by_contact"),
        [link],
        "links survive a reopen"
    );
    assert!(
        !store
            .mark_token_used("tok-1", t(60), t(1))
            .await
            .expect("mark"),
        "used tokens survive a reopen"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_identity_store_conforms() {
    common::run_on_postgres("ident", |pg| async move {
        conformance::run_all(|| pg.make()).await;
    })
    .await;
}
