//! Identity links and used deep-link tokens behave the same in memory, on SQLite and on
//! PostgreSQL (when `MESSAGING_TEST_DATABASE_URL` is set), and survive a reopen.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use messaging_conversations::identity::Provenance;
use messaging_conversations::identity::{IdentityStore, Link, MemoryIdentityStore, UsedTokenStore};
use messaging_core::{Address, ContactId, Phone};

fn t(min: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_250_800, 0).single().expect("time") + Duration::minutes(min)
}

fn phone(s: &str) -> Phone {
    Phone::parse(s).expect("phone")
}

/// Every behaviour of the two traits that a caller relies on.
async fn identity_behaves<S: IdentityStore + UsedTokenStore>(s: Arc<S>) {
    let anna = ContactId::from("anna");
    let boris = ContactId::from("boris");
    let tg = Address::Telegram(1001);
    let wa = Address::WhatsApp("79123456789".into());
    let sms = Address::Phone(phone("+79123456789"));
    let other = Address::Telegram(2002);

    // link / by_address / replace
    assert_eq!(s.by_address(&tg).await.expect("by_address"), None);
    let first = Link::new(tg.clone(), "boris", Provenance::DeepLink, t(0)).with_token_id("tok-1");
    assert_eq!(s.link(&first).await.expect("link"), None);
    assert_eq!(
        s.by_address(&tg).await.expect("by_address"),
        Some(first.clone())
    );
    let relinked = Link::new(tg.clone(), "anna", Provenance::SharedContact, t(1))
        .with_phone(phone("+79123456789"));
    assert_eq!(
        s.link(&relinked).await.expect("relink"),
        Some(first.clone()),
        "relinking returns the link it replaced"
    );
    assert!(s.by_contact(&boris).await.expect("by_contact").is_empty());
    s.link(&Link::new(
        wa.clone(),
        "anna",
        Provenance::WhatsAppPhone,
        t(3),
    ))
    .await
    .expect("link wa");
    s.link(&Link::new(sms.clone(), "anna", Provenance::Operator, t(2)))
        .await
        .expect("link sms");
    s.link(&Link::new(
        other.clone(),
        "boris",
        Provenance::DeepLink,
        t(4),
    ))
    .await
    .expect("link other");

    // by_phone matches the phone of a link and phone or WhatsApp addresses, oldest first.
    let by_phone = s.by_phone(&phone("+79123456789")).await.expect("by_phone");
    let keys: Vec<String> = by_phone.iter().map(|l| l.address.key()).collect();
    assert_eq!(keys, vec![tg.key(), sms.key(), wa.key()]);
    assert!(
        s.by_phone(&phone("+79990000000"))
            .await
            .expect("by_phone")
            .is_empty()
    );
    let anna_links = s.by_contact(&anna).await.expect("by_contact");
    assert_eq!(anna_links.len(), 3);
    assert!(
        anna_links
            .windows(2)
            .all(|w| w[0].linked_at <= w[1].linked_at)
    );

    // set_active changes updated_at only on a change.
    let off = s
        .set_active(&tg, false, t(10))
        .await
        .expect("set_active")
        .expect("linked");
    assert!(!off.active);
    assert_eq!(off.updated_at, t(10));
    let again = s
        .set_active(&tg, false, t(11))
        .await
        .expect("set_active")
        .expect("linked");
    assert_eq!(again.updated_at, t(10), "no change, no new updated_at");
    assert_eq!(s.by_address(&tg).await.expect("by_address"), Some(off));
    assert_eq!(
        s.set_active(&Address::Telegram(9), true, t(12))
            .await
            .expect("set_active"),
        None
    );

    // unlink
    let removed = s.unlink(&sms).await.expect("unlink").expect("was linked");
    assert_eq!(removed.address, sms);
    assert_eq!(s.unlink(&sms).await.expect("unlink"), None);
    assert_eq!(s.by_address(&sms).await.expect("by_address"), None);

    // erase_contact removes only that contact's links.
    let erased = s.erase_contact(&anna).await.expect("erase");
    let keys: Vec<String> = erased.iter().map(|l| l.address.key()).collect();
    assert_eq!(keys, vec![tg.key(), wa.key()]);
    assert!(s.by_contact(&anna).await.expect("by_contact").is_empty());
    assert_eq!(s.by_contact(&boris).await.expect("by_contact").len(), 1);

    // Tokens: used once, atomically; purged after expiry.
    assert!(s.mark_token_used("tok-a", t(60), t(0)).await.expect("mark"));
    assert!(!s.mark_token_used("tok-a", t(60), t(1)).await.expect("mark"));
    assert!(s.mark_token_used("tok-b", t(5), t(0)).await.expect("mark"));
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let s = Arc::clone(&s);
        racers.spawn(async move { s.mark_token_used("tok-race", t(60), t(0)).await });
    }
    let mut wins = 0;
    while let Some(r) = racers.join_next().await {
        wins += usize::from(r.expect("task").expect("mark"));
    }
    assert_eq!(wins, 1, "two concurrent uses of one token get one `true`");
    assert_eq!(s.purge_expired_tokens(t(6)).await.expect("purge"), 1);
    assert!(!s.mark_token_used("tok-a", t(60), t(7)).await.expect("mark"));
    assert!(
        s.mark_token_used("tok-b", t(5), t(7)).await.expect("mark"),
        "a purged id is forgotten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_identity_store_behaves() {
    identity_behaves(Arc::new(MemoryIdentityStore::new())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_identity_store_behaves_and_survives_a_reopen() {
    use messaging_store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("identity.db");
    let store = SqliteStore::open(&path).await.expect("open");
    identity_behaves(Arc::new(store.clone())).await;
    drop(store);
    let store = SqliteStore::open(&path).await.expect("reopen");
    let boris = store
        .by_contact(&ContactId::from("boris"))
        .await
        .expect("by_contact");
    assert_eq!(boris.len(), 1, "links survive a reopen");
    assert!(
        !store
            .mark_token_used("tok-race", t(60), t(8))
            .await
            .expect("mark"),
        "used tokens survive a reopen"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_identity_store_behaves() {
    use messaging_store::{PostgresOptions, PostgresStore};
    let Some(config) = common::pg_config() else {
        return;
    };
    let store = PostgresStore::connect_with(
        &config,
        PostgresOptions::default()
            .schema(common::unique_schema("ident"))
            .pool_size(4),
    )
    .await
    .expect("connect");
    let result = tokio::spawn(identity_behaves(Arc::new(store.clone()))).await;
    store.drop_schema().await.expect("drop schema");
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
