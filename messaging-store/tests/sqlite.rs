//! SQLite-specific behaviour: durability across reopen, migrations, group commit under load,
//! several handles on one file, and typed errors for corrupt rows.
#![cfg(feature = "sqlite")]

use std::sync::Arc;
use std::time::Duration;

use messaging_cascade::store::conformance::{record, sent_attempt, t};
use messaging_cascade::store::{CascadeStore, Inserted, MessageRef, StoreError, WindowStore};
use messaging_core::{ChannelId, NotificationId, ProviderMessageId};
use messaging_store::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.db");
    {
        let s = SqliteStore::open(&path).await.expect("open");
        let mut r = record("keep", "+79123456789", Some(t(10)));
        s.insert(&r).await.expect("insert");
        r.attempts.push(sent_attempt(0, "wa-main", "wamid.keep"));
        s.update(&r).await.expect("update");
        s.insert(&record("due", "+79123456789", Some(t(5))))
            .await
            .expect("insert");
        assert_eq!(
            s.claim_due(t(5), 10, Duration::from_secs(60))
                .await
                .expect("claim"),
            vec![NotificationId::new("due")]
        );
        s.record_inbound(&ChannelId::new("wa"), "wa:79123456789", t(3))
            .await
            .expect("inbound");
    }
    let s = SqliteStore::open(&path).await.expect("reopen");
    let r = s
        .get(&NotificationId::new("keep"))
        .await
        .expect("get")
        .expect("record kept");
    assert_eq!(r.version, 1);
    assert_eq!(r.attempts.len(), 1);
    assert_eq!(s.count_active().await.expect("count"), 2);
    assert_eq!(
        s.find_message(&ProviderMessageId::new("wamid.keep"))
            .await
            .expect("find"),
        Some(MessageRef {
            notification_id: NotificationId::new("keep"),
            attempt: 0
        })
    );
    // The claim survived too: "due" is leased until 65, "keep" wakes at 10.
    assert_eq!(s.next_wake().await.expect("next"), Some(t(10)));
    assert_eq!(
        s.claim_due(t(64), 10, Duration::from_secs(60))
            .await
            .expect("claim"),
        vec![NotificationId::new("keep")]
    );
    assert_eq!(
        s.active_by_reply_key("phone:+79123456789")
            .await
            .expect("keys"),
        vec![NotificationId::new("due"), NotificationId::new("keep")]
    );
    assert_eq!(
        s.last_inbound(&ChannelId::new("wa"), "wa:79123456789")
            .await
            .expect("window"),
        Some(t(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_newer_schemas_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.db");
    let a = SqliteStore::open(&path).await.expect("open");
    let b = SqliteStore::open(&path)
        .await
        .expect("open again while open");
    let latest = messaging_store::sqlite::SQLITE_SCHEMA_VERSION;
    assert_eq!(latest, 9);
    assert_eq!(a.schema_version().await.expect("version"), latest);
    assert_eq!(b.schema_version().await.expect("version"), latest);
    drop((a, b));

    let c = rusqlite::Connection::open(&path).expect("raw open");
    let rows: i64 = c
        .query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, i64::from(latest), "each migration recorded once");
    c.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (99, 0)",
        [],
    )
    .expect("fake a newer schema");
    drop(c);
    match SqliteStore::open(&path).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("opening a newer schema must fail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_upgraded_in_place() {
    use messaging_conversations::identity::{IdentityStore, UsedTokenStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v1.db");
    {
        let s = SqliteStore::open(&path).await.expect("open");
        s.insert(&record("old", "+79123456789", Some(t(1))))
            .await
            .expect("insert");
    }
    // Turn it back into what a version-1 build left behind.
    let c = rusqlite::Connection::open(&path).expect("raw open");
    c.execute_batch(
        "DROP TABLE links; DROP TABLE used_tokens; DELETE FROM schema_version WHERE version >= 2;
         DROP TABLE gov_sends; DROP TABLE gov_contacted; DROP TABLE gov_wrote_to_us;
         DROP TABLE gov_marketing; DROP TABLE gov_replies; DROP TABLE opt_outs;
         DROP TABLE gov_connected; DROP TABLE inbox;
         DROP INDEX cascades_ended; ALTER TABLE cascades DROP COLUMN ended_ns;",
    )
    .expect("downgrade to v1");
    drop(c);

    let s = SqliteStore::open(&path).await.expect("open v1 database");
    assert_eq!(
        s.schema_version().await.expect("version"),
        messaging_store::sqlite::SQLITE_SCHEMA_VERSION
    );
    assert!(
        s.get(&NotificationId::new("old"))
            .await
            .expect("get")
            .is_some(),
        "version-1 data kept"
    );
    assert!(
        s.mark_token_used("tok", t(60), t(0))
            .await
            .expect("the v2 tables exist")
    );
    assert_eq!(
        s.by_address(&messaging_core::Address::Telegram(1))
            .await
            .expect("links table"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascades_that_ended_before_version_5_are_kept_for_the_full_retention() {
    use messaging_cascade::engine::{Outcome, Phase};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v4.db");
    {
        let s = SqliteStore::open(&path).await.expect("open");
        let mut r = record("ended-long-ago", "+79123456789", None);
        r.attempts.push(sent_attempt(0, "sms", "sms-1"));
        r.phase = Phase::Finished(Outcome::Exhausted);
        s.insert(&r).await.expect("insert");
    }
    // What a version-4 build left behind: no end times.
    let c = rusqlite::Connection::open(&path).expect("raw open");
    c.execute_batch(
        "DROP INDEX cascades_ended; ALTER TABLE cascades DROP COLUMN ended_ns;
         DROP TABLE opt_outs;
         CREATE TABLE gov_opt_out (key TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;
         DELETE FROM schema_version WHERE version >= 5;",
    )
    .expect("downgrade to v4");
    drop(c);

    let s = SqliteStore::open(&path).await.expect("open v4 database");
    // The record says it ended in 2030 (t(0)); the column says: at the upgrade, now.
    let now = chrono::Utc::now();
    assert_eq!(
        s.purge_finished(now - chrono::Duration::minutes(5), 10)
            .await
            .expect("purge"),
        0,
        "an upgraded database purges nothing before the retention has passed since the upgrade"
    );
    assert_eq!(
        s.purge_finished(now + chrono::Duration::minutes(5), 10)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(
        s.find_message(&ProviderMessageId::new("sms-1"))
            .await
            .expect("find"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_grouped_and_each_write_is_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(
        SqliteStore::open(dir.path().join("m.db"))
            .await
            .expect("open"),
    );
    let tasks = 32;
    let per = 20u64;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..tasks {
        let s = Arc::clone(&s);
        set.spawn(async move {
            let mut r = record(&format!("w-{i}"), "+79123456789", Some(t(i)));
            assert!(matches!(s.insert(&r).await, Ok(Inserted::New)));
            for n in 0..per {
                r.rate_limit_waits = n as u32;
                let v = s.update(&r).await.expect("update");
                assert_eq!(v, n + 1);
                r.version = v;
            }
        });
    }
    while let Some(j) = set.join_next().await {
        j.expect("writer task");
    }
    for i in 0..tasks {
        let r = s
            .get(&NotificationId::new(format!("w-{i}")))
            .await
            .expect("get")
            .expect("present");
        assert_eq!(r.version, per);
        assert_eq!(r.rate_limit_waits, per as u32 - 1);
    }
    assert_eq!(s.count_active().await.expect("count"), tasks as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_never_claim_the_same_cascade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.db");
    let a = SqliteStore::open(&path).await.expect("open a");
    let b = SqliteStore::open(&path).await.expect("open b");
    for i in 0..200 {
        a.insert(&record(&format!("d-{i:03}"), "+79123456789", Some(t(i))))
            .await
            .expect("insert");
    }
    let lease = Duration::from_secs(60);
    let claim = |s: SqliteStore| async move {
        let mut got = Vec::new();
        loop {
            let batch = s.claim_due(t(1_000), 7, lease).await.expect("claim");
            if batch.is_empty() {
                return got;
            }
            got.extend(batch);
        }
    };
    let (x, y) = tokio::join!(claim(a.clone()), claim(b.clone()));
    let mut all: Vec<_> = x.into_iter().chain(y).collect();
    assert_eq!(all.len(), 200);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200, "a cascade was claimed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.db");
    let s = SqliteStore::open(&path).await.expect("open");
    s.insert(&record("bad", "+79123456789", None))
        .await
        .expect("insert");
    let c = rusqlite::Connection::open(&path).expect("raw open");
    c.execute(
        "UPDATE cascades SET record = '{\"not\": \"a record\"}' WHERE id = 'bad'",
        [],
    )
    .expect("corrupt");
    drop(c);
    match s.get(&NotificationId::new("bad")).await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("bad"), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    match s.insert(&record("bad", "+79123456789", None)).await {
        Err(StoreError::Corrupt(_)) => {}
        other => panic!("expected Corrupt from a duplicate insert, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_out_of_range_are_refused_not_mangled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SqliteStore::open(dir.path().join("m.db"))
        .await
        .expect("open");
    let far = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    match s.insert(&record("far", "+79123456789", Some(far))).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("wake_at"), "{msg}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
    assert_eq!(s.count_active().await.expect("count"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_an_unwritable_path_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no-such-dir").join("m.db");
    match SqliteStore::open(&path).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("sqlite"), "{msg}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
}

/// Many writers each waiting for its last write: the writer groups them (fewer commits than
/// writes), every write is still applied once, and the stats count what was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("group.db"))
        .await
        .expect("open");
    let before = store.writer_stats();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..32 {
        let store = store.clone();
        set.spawn(async move {
            let mut r = record(&format!("g-{w:02}"), "+79123456789", Some(t(100)));
            store.insert(&r).await.expect("insert");
            for i in 0..10 {
                r.wake_at = Some(t(200 + i));
                r.version = store.update(&r).await.expect("update");
            }
            r.version
        });
    }
    while let Some(v) = set.join_next().await {
        assert_eq!(v.expect("writer"), 10);
    }
    let after = store.writer_stats();
    assert_eq!(after.writes - before.writes, 32 * 11);
    assert!(after.commits - before.commits < 32 * 11, "{after:?}");
    assert!(after.record_bytes > before.record_bytes);
    assert_eq!(store.count_active().await.expect("count"), 32);
    let r = store
        .get(&NotificationId::new("g-07"))
        .await
        .expect("get")
        .expect("present");
    assert_eq!((r.version, r.wake_at), (10, Some(t(209))));
}

/// Migration 9 stores records packed (LZ4-compressed JSON): a version-8 file, its records JSON
/// text, has them converted when opened, and reads back the same cascades, counts and indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_8_database_has_its_records_packed_and_reads_them_back() {
    use messaging_cascade::engine::{Outcome, Phase};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v8.db");
    let mut kept = Vec::new();
    {
        let s = SqliteStore::open(&path).await.expect("open");
        let mut running = record("running", "+79123456789", Some(t(100)));
        running.attempts.push(sent_attempt(0, "wa-main", "wamid-1"));
        s.insert(&running).await.expect("insert");
        let mut ended = record("ended", "+79123456789", None);
        ended.attempts.push(sent_attempt(0, "sms", "sms-1"));
        ended.phase = Phase::Finished(Outcome::Exhausted);
        s.insert(&ended).await.expect("insert");
        s.insert(&record("fresh", "+79000000000", Some(t(5))))
            .await
            .expect("insert");
        for id in ["running", "ended", "fresh"] {
            kept.push(
                s.get(&NotificationId::new(id))
                    .await
                    .expect("get")
                    .expect("stored"),
            );
        }
    }
    // What a version-8 build left behind: records as JSON text, the running index, no counts.
    let c = rusqlite::Connection::open(&path).expect("raw open");
    for r in &kept {
        let json = serde_json::to_string(r).expect("json");
        c.execute(
            "UPDATE cascades SET record = ?2 WHERE id = ?1",
            rusqlite::params![r.id().as_str(), json],
        )
        .expect("store as text");
    }
    c.execute_batch(
        "DROP TABLE running_counts;
         CREATE INDEX cascades_running ON cascades (state, channel) WHERE finished = 0;
         DELETE FROM schema_version WHERE version >= 9;",
    )
    .expect("downgrade to v8");
    let text: i64 = c
        .query_row(
            "SELECT count(*) FROM cascades WHERE typeof(record) = 'text'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(text, 3);
    drop(c);

    let s = SqliteStore::open(&path).await.expect("open v8 database");
    assert_eq!(
        s.schema_version().await.expect("version"),
        messaging_store::sqlite::SQLITE_SCHEMA_VERSION
    );
    for r in &kept {
        assert_eq!(
            s.get(r.id()).await.expect("get").as_ref(),
            Some(r),
            "the record reads back"
        );
    }
    assert_eq!(s.count_active().await.expect("active"), 2);
    assert_eq!(
        s.find_message(&ProviderMessageId::new("wamid-1"))
            .await
            .expect("find")
            .map(|m| m.notification_id),
        Some(NotificationId::new("running"))
    );
    drop(s);
    let c = rusqlite::Connection::open(&path).expect("raw open");
    let packed: i64 = c
        .query_row(
            "SELECT count(*) FROM cascades WHERE typeof(record) = 'blob'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(packed, 3, "every record is packed");
}
