//! The identity store conformance suite: the behaviours every [`IdentityStore`] and
//! [`UsedTokenStore`] must show, checked against [`MemoryIdentityStore`](super::MemoryIdentityStore)
//! (the reference) and the SQLite and PostgreSQL stores of `messaging-store`.
//!
//! Each check takes a fresh, empty store and panics, naming the behaviour, when the store behaves
//! differently. [`run_identity_store`] and [`run_used_token_store`] run the checks of one trait,
//! [`run_all`] both, each check on a fresh store from your factory.
//!
//! ```
//! use messaging_conversations::identity::{MemoryIdentityStore, conformance};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! conformance::run_all(|| async { MemoryIdentityStore::new() }).await;
//! # });
//! ```

use std::future::Future;

use chrono::{DateTime, TimeZone, Utc};

use super::{IdentityStore, Link, Provenance, UsedTokenStore};
use messaging_core::{Address, ContactId, Phone};

/// A fixed instant (2030-01-01T00:00:00Z) plus `secs` seconds.
pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .map(|b| b + chrono::Duration::seconds(secs))
        .unwrap_or_default()
}

fn phone(s: &str) -> Phone {
    Phone::parse(s).unwrap_or_else(|e| panic!("conformance: bad test phone {s}: {e}"))
}

fn keys(links: &[Link]) -> Vec<String> {
    links.iter().map(|l| l.address.key()).collect()
}

async fn link<S: IdentityStore + ?Sized>(store: &S, l: &Link) -> Option<Link> {
    store
        .link(l)
        .await
        .unwrap_or_else(|e| panic!("link {} failed: {e}", l.address.key()))
}

async fn by_address<S: IdentityStore + ?Sized>(store: &S, a: &Address) -> Option<Link> {
    store
        .by_address(a)
        .await
        .unwrap_or_else(|e| panic!("by_address {} failed: {e}", a.key()))
}

async fn by_contact<S: IdentityStore + ?Sized>(store: &S, c: &str) -> Vec<Link> {
    store
        .by_contact(&ContactId::from(c))
        .await
        .unwrap_or_else(|e| panic!("by_contact {c} failed: {e}"))
}

async fn mark<S: UsedTokenStore + ?Sized>(store: &S, id: &str, expires: i64, at: i64) -> bool {
    store
        .mark_token_used(id, t(expires), t(at))
        .await
        .unwrap_or_else(|e| panic!("mark_token_used {id} failed: {e}"))
}

/// An unknown address has no link; a stored link reads back equal in every field (phone, token
/// id, provenance, nanosecond times, active); linking a new address returns `None`.
pub async fn link_round_trip<S: IdentityStore + ?Sized>(store: &S) {
    let tg = Address::Telegram(1001);
    assert_eq!(
        by_address(store, &tg).await,
        None,
        "an empty store has links"
    );
    let at = t(0) + chrono::Duration::nanoseconds(123_456_789);
    let l = Link::new(tg.clone(), "anna", Provenance::DeepLink, at)
        .with_phone(phone("+79123456789"))
        .with_token_id("tok-1");
    assert_eq!(link(store, &l).await, None, "a new link replaces nothing");
    assert_eq!(
        by_address(store, &tg).await,
        Some(l),
        "a link must read back equal in every field"
    );
    for other in [
        Address::Telegram(1002),
        Address::MaxUser(1001),
        Address::MaxChat(1001),
    ] {
        assert_eq!(
            by_address(store, &other).await,
            None,
            "{} is another address",
            other.key()
        );
    }
}

/// Linking an address again replaces its link (one address, one contact) and returns the link
/// it replaced; the old contact no longer has it.
pub async fn relink_replaces<S: IdentityStore + ?Sized>(store: &S) {
    let tg = Address::Telegram(1001);
    let first = Link::new(tg.clone(), "boris", Provenance::DeepLink, t(0)).with_token_id("tok-1");
    link(store, &first).await;
    let second = Link::new(tg.clone(), "anna", Provenance::SharedContact, t(60))
        .with_phone(phone("+79123456789"));
    assert_eq!(
        link(store, &second).await,
        Some(first),
        "relinking returns the link it replaced"
    );
    assert_eq!(by_address(store, &tg).await, Some(second));
    assert!(
        by_contact(store, "boris").await.is_empty(),
        "the old contact keeps no link to a relinked address"
    );
    assert_eq!(keys(&by_contact(store, "anna").await), [tg.key()]);
}

/// `by_phone` finds links verified with the phone and phone or WhatsApp addresses of that
/// number (with or without `+`), oldest first, equal times by address key; `by_contact` lists a
/// contact's links in the same order; unknown phones and contacts give nothing.
pub async fn lookups_by_phone_and_contact<S: IdentityStore + ?Sized>(store: &S) {
    let p = phone("+79123456789");
    let tg = Address::Telegram(1001);
    let wa = Address::WhatsApp("79123456789".into());
    let wa_plus = Address::WhatsApp("+79123456789".into());
    let sms = Address::Phone(p.clone());
    let max = Address::MaxUser(5);
    let other = Address::Telegram(2002);
    link(
        store,
        &Link::new(tg.clone(), "anna", Provenance::SharedContact, t(1)).with_phone(p.clone()),
    )
    .await;
    link(
        store,
        &Link::new(wa.clone(), "anna", Provenance::WhatsAppPhone, t(3)),
    )
    .await;
    link(
        store,
        &Link::new(sms.clone(), "anna", Provenance::Operator, t(2)),
    )
    .await;
    // Same time as `sms`: ordered by address key.
    link(
        store,
        &Link::new(max.clone(), "anna", Provenance::Operator, t(2)),
    )
    .await;
    link(
        store,
        &Link::new(wa_plus.clone(), "vera", Provenance::WhatsAppPhone, t(4)),
    )
    .await;
    link(
        store,
        &Link::new(other.clone(), "boris", Provenance::DeepLink, t(0))
            .with_phone(phone("+79990000000")),
    )
    .await;

    let found = store.by_phone(&p).await.expect("by_phone");
    assert_eq!(
        keys(&found),
        [tg.key(), sms.key(), wa.key(), wa_plus.key()],
        "by_phone: verified phone, phone address, WhatsApp ids of the number; oldest first"
    );
    assert!(
        store
            .by_phone(&phone("+79161234567"))
            .await
            .expect("by_phone")
            .is_empty(),
        "an unknown phone finds nothing"
    );
    let mut tie = [sms.key(), max.key()];
    tie.sort();
    assert_eq!(
        keys(&by_contact(store, "anna").await),
        [tg.key(), tie[0].clone(), tie[1].clone(), wa.key()],
        "by_contact: oldest first, equal times by address key"
    );
    assert!(by_contact(store, "nobody").await.is_empty());
}

/// `set_active` flips a link and stamps `updated_at` only when it changes, keeps the rest,
/// persists, and returns `None` for an unlinked address.
pub async fn set_active<S: IdentityStore + ?Sized>(store: &S) {
    let tg = Address::Telegram(1001);
    let l = Link::new(tg.clone(), "anna", Provenance::SharedContact, t(0));
    link(store, &l).await;
    let off = store
        .set_active(&tg, false, t(10))
        .await
        .expect("set_active")
        .expect("the address is linked");
    assert!(!off.active);
    assert_eq!(off.updated_at, t(10), "a change stamps updated_at");
    assert_eq!(off.linked_at, l.linked_at, "linked_at is kept");
    assert_eq!(off.contact, l.contact);
    let again = store
        .set_active(&tg, false, t(11))
        .await
        .expect("set_active")
        .expect("linked");
    assert_eq!(again.updated_at, t(10), "no change, no new updated_at");
    assert_eq!(
        by_address(store, &tg).await,
        Some(off),
        "the change is stored"
    );
    let on = store
        .set_active(&tg, true, t(12))
        .await
        .expect("set_active")
        .expect("linked");
    assert!(on.active && on.updated_at == t(12));
    assert_eq!(
        store
            .set_active(&Address::Telegram(9), true, t(13))
            .await
            .expect("set_active"),
        None,
        "an unlinked address has nothing to change"
    );
}

/// `unlink` removes one address's link and returns it; a second unlink returns `None`; other
/// links stay.
pub async fn unlink<S: IdentityStore + ?Sized>(store: &S) {
    let tg = Address::Telegram(1001);
    let sms = Address::Phone(phone("+79123456789"));
    link(
        store,
        &Link::new(tg.clone(), "anna", Provenance::Operator, t(0)),
    )
    .await;
    link(
        store,
        &Link::new(sms.clone(), "anna", Provenance::Operator, t(1)),
    )
    .await;
    let removed = store
        .unlink(&sms)
        .await
        .expect("unlink")
        .expect("was linked");
    assert_eq!(removed.address, sms);
    assert_eq!(store.unlink(&sms).await.expect("unlink"), None);
    assert_eq!(by_address(store, &sms).await, None);
    assert_eq!(keys(&by_contact(store, "anna").await), [tg.key()]);
}

/// `erase_contact` removes every link of the contact, returns them oldest first, and leaves
/// other contacts' links; erasing an unknown contact removes nothing.
pub async fn erase_contact<S: IdentityStore + ?Sized>(store: &S) {
    let tg = Address::Telegram(1001);
    let wa = Address::WhatsApp("79123456789".into());
    let other = Address::Telegram(2002);
    link(
        store,
        &Link::new(wa.clone(), "anna", Provenance::WhatsAppPhone, t(3)),
    )
    .await;
    link(
        store,
        &Link::new(tg.clone(), "anna", Provenance::Operator, t(1)),
    )
    .await;
    link(
        store,
        &Link::new(other.clone(), "boris", Provenance::DeepLink, t(2)),
    )
    .await;
    let erased = store
        .erase_contact(&ContactId::from("anna"))
        .await
        .expect("erase_contact");
    assert_eq!(
        keys(&erased),
        [tg.key(), wa.key()],
        "erased links, oldest first"
    );
    assert!(by_contact(store, "anna").await.is_empty());
    assert_eq!(by_address(store, &wa).await, None);
    assert_eq!(keys(&by_contact(store, "boris").await), [other.key()]);
    assert!(
        store
            .erase_contact(&ContactId::from("nobody"))
            .await
            .expect("erase_contact")
            .is_empty()
    );
}

/// A token id is marked used once: the first mark is `true`, every later one `false`, until
/// `purge_expired_tokens` forgets ids whose expiry is before `now` (ids expiring at `now` stay)
/// and returns how many it forgot.
pub async fn tokens_are_used_once<S: UsedTokenStore + ?Sized>(store: &S) {
    assert!(mark(store, "tok-a", 60, 0).await, "first use");
    assert!(!mark(store, "tok-a", 60, 1).await, "second use refused");
    assert!(mark(store, "tok-b", 5, 0).await);
    assert!(mark(store, "tok-c", 6, 0).await);
    assert_eq!(
        store.purge_expired_tokens(t(6)).await.expect("purge"),
        1,
        "only tok-b expired before t(6)"
    );
    assert!(!mark(store, "tok-a", 60, 7).await, "unexpired ids are kept");
    assert!(
        !mark(store, "tok-c", 6, 7).await,
        "an id expiring at `now` is kept"
    );
    assert!(mark(store, "tok-b", 5, 7).await, "a purged id is forgotten");
    assert_eq!(store.purge_expired_tokens(t(0)).await.expect("purge"), 0);
}

/// Eight concurrent marks of one token id give exactly one `true`.
pub async fn concurrent_token_use_has_one_winner<S: UsedTokenStore + ?Sized>(store: &S) {
    let m = || store.mark_token_used("tok-race", t(60), t(0));
    let r = tokio::join!(m(), m(), m(), m(), m(), m(), m(), m());
    let wins = [r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7]
        .into_iter()
        .map(|x| usize::from(x.unwrap_or_else(|e| panic!("mark_token_used failed: {e}"))))
        .sum::<usize>();
    assert_eq!(
        wins, 1,
        "two concurrent uses of one token must get one `true`"
    );
}

/// Runs every [`IdentityStore`] check, each on a fresh store from `make`.
///
/// # Panics
///
/// When the store does not behave like the reference.
pub async fn run_identity_store<S, F, Fut>(mut make: F)
where
    S: IdentityStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    link_round_trip(&make().await).await;
    relink_replaces(&make().await).await;
    lookups_by_phone_and_contact(&make().await).await;
    set_active(&make().await).await;
    unlink(&make().await).await;
    erase_contact(&make().await).await;
}

/// Runs every [`UsedTokenStore`] check, each on a fresh store from `make`.
///
/// # Panics
///
/// When the store does not behave like the reference.
pub async fn run_used_token_store<S, F, Fut>(mut make: F)
where
    S: UsedTokenStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    tokens_are_used_once(&make().await).await;
    concurrent_token_use_has_one_winner(&make().await).await;
}

/// Runs the checks of both traits, each on a fresh store from `make`.
///
/// # Panics
///
/// When the store does not behave like the reference.
pub async fn run_all<S, F, Fut>(mut make: F)
where
    S: IdentityStore + UsedTokenStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    run_identity_store(&mut make).await;
    run_used_token_store(&mut make).await;
}
