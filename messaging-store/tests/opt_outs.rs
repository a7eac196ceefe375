//! The one opt-out record: the conformance suite (`messaging_core::consent::conformance`) on
//! SQLite and on PostgreSQL (when `MESSAGING_TEST_DATABASE_URL` is set); SQLite keeps it across
//! a reopen; the governor's opt-out list of older schemas is still read after the upgrade; the
//! inbox and the governor share one SQL store.

mod common;

use messaging_core::Purpose;
use messaging_core::consent::OptOutStore;
use messaging_core::consent::conformance::{self, t};

fn keys(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_opt_out_store_conforms() {
    let files = common::SqliteFiles::temp();
    conformance::run_all(|| files.make()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_opt_outs_survive_a_reopen() {
    use messaging_store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("consent.db");
    let store = SqliteStore::open(&path).await.expect("open");
    store
        .opt_out(&keys(&["tg:1"]), None, t(10))
        .await
        .expect("opt_out");
    store
        .opt_out(&keys(&["tg:2"]), Some(Purpose::Marketing), t(10))
        .await
        .expect("opt_out");
    drop(store);
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert!(
        store
            .is_opted_out(&keys(&["tg:1"]), Purpose::Service)
            .await
            .expect("read")
    );
    assert!(
        store
            .is_opted_out(&keys(&["tg:2"]), Purpose::Marketing)
            .await
            .expect("read")
    );
    assert!(
        !store
            .is_opted_out(&keys(&["tg:2"]), Purpose::Service)
            .await
            .expect("read"),
        "the purpose survives a reopen"
    );
    // The stored time survives too: an older opt-in is still ignored.
    store
        .opt_in(&keys(&["tg:1"]), None, t(5))
        .await
        .expect("opt_in");
    assert!(
        store
            .is_opted_out(&keys(&["tg:1"]), Purpose::Service)
            .await
            .expect("read")
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_governors_old_opt_out_list_through_the_upgrade() {
    use messaging_store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v5.db");
    drop(SqliteStore::open(&path).await.expect("open"));
    // What a version-5 build left behind: the governor's own list of opted-out keys.
    let c = rusqlite::Connection::open(&path).expect("raw open");
    c.execute_batch(
        "DROP TABLE opt_outs; DELETE FROM schema_version WHERE version >= 6;
         CREATE TABLE gov_opt_out (key TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;
         INSERT INTO gov_opt_out (key) VALUES ('phone:+79123456789'), ('tg:42');",
    )
    .expect("downgrade to v5");
    drop(c);

    let store = SqliteStore::open(&path).await.expect("open v5 database");
    assert_eq!(
        store.schema_version().await.expect("version"),
        messaging_store::sqlite::SQLITE_SCHEMA_VERSION
    );
    for k in ["phone:+79123456789", "tg:42"] {
        assert!(
            store
                .is_opted_out(&keys(&[k]), Purpose::Service)
                .await
                .expect("read"),
            "{k} opted out before the upgrade and still is"
        );
    }
    assert!(
        !store
            .is_opted_out(&keys(&["tg:7"]), Purpose::Service)
            .await
            .expect("read")
    );
    // Anything said after the upgrade is newer than the old list.
    store
        .opt_in(&keys(&["tg:42"]), None, t(0))
        .await
        .expect("opt_in");
    assert!(
        !store
            .is_opted_out(&keys(&["tg:42"]), Purpose::Service)
            .await
            .expect("read")
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_opt_out_store_conforms() {
    common::run_on_postgres("consent", |pg| async move {
        conformance::run_all(|| pg.make()).await;
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_governors_old_opt_out_list_through_the_upgrade() {
    use messaging_store::{PostgresOptions, PostgresStore};
    common::run_on_postgres("consent_up", |pg| async move {
        let old = pg.make().await;
        let schema = old.schema().to_owned();
        // What a version-4 build left behind: the governor's own list of opted-out keys.
        let (client, conn) = tokio_postgres::connect(pg.config(), tokio_postgres::NoTls)
            .await
            .expect("raw connect");
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "DROP TABLE \"{schema}\".opt_outs;
                 DELETE FROM \"{schema}\".schema_version WHERE version >= 5;
                 CREATE TABLE \"{schema}\".gov_opt_out (key TEXT PRIMARY KEY);
                 INSERT INTO \"{schema}\".gov_opt_out (key) VALUES ('phone:+79123456789');"
            ))
            .await
            .expect("downgrade to v4");
        let store = PostgresStore::connect_with(
            pg.config(),
            PostgresOptions::default().schema(&schema).pool_size(2),
        )
        .await
        .expect("open v4 schema");
        assert_eq!(
            store.schema_version().await.expect("version"),
            messaging_store::postgres::POSTGRES_SCHEMA_VERSION
        );
        assert!(
            store
                .is_opted_out(&keys(&["phone:+79123456789"]), Purpose::Service)
                .await
                .expect("read"),
            "opted out before the upgrade and still is"
        );
        // Another instance sees what this one records.
        store
            .opt_out(&keys(&["tg:9"]), None, t(1))
            .await
            .expect("opt_out");
        assert!(
            old.is_opted_out(&keys(&["tg:9"]), Purpose::Service)
                .await
                .expect("read")
        );
    })
    .await;
}

/// The inbox records "СТОП" in the SQL store; the governor, reading the same store, refuses.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_the_inbox_records_in_sqlite_stops_the_governor() {
    use std::sync::Arc;

    use messaging_conversations::inbox::Inbox;
    use messaging_core::gate::{GateDecision, SendContext, SendGate};
    use messaging_core::{
        Address, ChannelId, ChannelKind, Event, InboundMessage, NotificationId, Recipient,
    };
    use messaging_hygiene::governor::{Governor, GovernorConfig};
    use messaging_store::SqliteStore;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("shared.db"))
        .await
        .expect("open");
    let shared: Arc<dyn OptOutStore> = Arc::new(store.clone());
    let governor = Governor::with_counters(GovernorConfig::default(), store.clone())
        .with_opt_outs(shared.clone());
    let inbox = Inbox::builder().opt_out_store(shared).build();

    let anna = Recipient::with_phone("anna", "+79123456789").expect("phone");
    let sms = anna.address_for(ChannelKind::Sms).expect("address");
    let (id, channel) = (NotificationId::from("n-1"), ChannelId::new("sms"));
    let ctx = SendContext::new(t(10), &id, &channel, ChannelKind::Sms, &anna, &sms);
    assert_eq!(governor.check(&ctx).await, GateDecision::Allow);

    let stop = InboundMessage::new(
        ChannelKind::WhatsApp,
        Address::WhatsApp("79123456789".into()),
        Some("СТОП".into()),
        t(5),
    );
    inbox
        .handle_event(&Event::Inbound(stop))
        .await
        .expect("inbox");
    assert!(matches!(
        governor.check(&ctx).await,
        GateDecision::Deny { .. }
    ));
}
