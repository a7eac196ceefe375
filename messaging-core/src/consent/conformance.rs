//! The opt-out store conformance suite: the behaviours every [`OptOutStore`] must show, checked
//! against [`MemoryOptOutStore`](super::MemoryOptOutStore) (the reference) and the SQLite and
//! PostgreSQL stores of `messaging-store`.
//!
//! Each check takes a fresh, empty store and panics, naming the behaviour, when the store behaves
//! differently. [`run_all`] runs every check, each on a fresh store from your factory.
//!
//! ```
//! use messaging_core::consent::{MemoryOptOutStore, conformance};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! conformance::run_all(|| async { MemoryOptOutStore::new() }).await;
//! # });
//! ```

use std::future::Future;

use chrono::{DateTime, TimeZone, Utc};

use super::OptOutStore;
use crate::model::Purpose;

/// A fixed instant (2030-01-01T00:00:00Z) plus `secs` seconds.
pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .map(|b| b + chrono::Duration::seconds(secs))
        .unwrap_or_default()
}

fn keys(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| (*s).to_owned()).collect()
}

async fn opted_out<S: OptOutStore + ?Sized>(store: &S, k: &[&str], purpose: Purpose) -> bool {
    store
        .is_opted_out(&keys(k), purpose)
        .await
        .unwrap_or_else(|e| panic!("is_opted_out({k:?}) failed: {e}"))
}

async fn out<S: OptOutStore + ?Sized>(
    store: &S,
    k: &[&str],
    purpose: Option<Purpose>,
    at: DateTime<Utc>,
) {
    store
        .opt_out(&keys(k), purpose, at)
        .await
        .unwrap_or_else(|e| panic!("opt_out({k:?}) failed: {e}"));
}

async fn back_in<S: OptOutStore + ?Sized>(
    store: &S,
    k: &[&str],
    purpose: Option<Purpose>,
    at: DateTime<Utc>,
) {
    store
        .opt_in(&keys(k), purpose, at)
        .await
        .unwrap_or_else(|e| panic!("opt_in({k:?}) failed: {e}"));
}

/// An empty store opts nobody out; an empty key list is never opted out.
pub async fn empty_store_allows_everyone<S: OptOutStore + ?Sized>(store: &S) {
    assert!(
        !opted_out(store, &["tg:1", "contact:anna"], Purpose::Service).await,
        "an empty store opted someone out"
    );
    out(store, &["tg:1"], None, t(0)).await;
    assert!(
        !opted_out(store, &[], Purpose::Service).await,
        "no keys must read as not opted out"
    );
}

/// An opt-out holds for any of the keys it was recorded under, alone or among other keys of
/// the person, for every purpose; other keys are not affected; recording it twice changes
/// nothing; an opt-in under the same keys lifts it.
pub async fn opt_out_and_back_in<S: OptOutStore + ?Sized>(store: &S) {
    out(store, &["wa:79123456789", "contact:anna"], None, t(10)).await;
    for purpose in [
        Purpose::Service,
        Purpose::Marketing,
        Purpose::Authentication,
        Purpose::Conversation,
    ] {
        assert!(
            opted_out(store, &["wa:79123456789"], purpose).await,
            "an opt-out of everything must cover {purpose}"
        );
    }
    assert!(
        opted_out(store, &["contact:anna"], Purpose::Service).await,
        "every key of an opt-out is opted out"
    );
    assert!(
        opted_out(
            store,
            &["phone:+79990000000", "contact:anna"],
            Purpose::Service
        )
        .await,
        "one opted-out key among the person's keys opts the person out"
    );
    assert!(
        !opted_out(store, &["tg:42", "contact:boris"], Purpose::Service).await,
        "other people are not opted out"
    );
    out(store, &["wa:79123456789", "contact:anna"], None, t(10)).await;
    assert!(opted_out(store, &["contact:anna"], Purpose::Service).await);
    back_in(store, &["wa:79123456789", "contact:anna"], None, t(20)).await;
    assert!(
        !opted_out(store, &["wa:79123456789", "contact:anna"], Purpose::Service).await,
        "an opt-in under the same keys lifts the opt-out"
    );
}

/// Among the keys of a person the latest statement decides: an opt-in said later on another
/// address lifts an earlier opt-out, and an opt-out said later wins over an earlier opt-in.
/// Each key keeps its own statement.
pub async fn latest_statement_across_keys_decides<S: OptOutStore + ?Sized>(store: &S) {
    out(store, &["wa:1"], None, t(10)).await;
    back_in(store, &["tg:2"], None, t(20)).await;
    assert!(
        !opted_out(store, &["wa:1", "tg:2"], Purpose::Service).await,
        "a later opt-in on another key of the person decides"
    );
    assert!(
        opted_out(store, &["wa:1"], Purpose::Service).await,
        "a key keeps its own statement"
    );
    out(store, &["max:3"], None, t(30)).await;
    assert!(
        opted_out(store, &["wa:1", "tg:2", "max:3"], Purpose::Service).await,
        "a later opt-out on another key of the person decides"
    );
}

/// A statement older than the one stored for a key is ignored (webhooks arrive out of order);
/// a newer one replaces it. Times are compared to the nanosecond.
pub async fn older_statements_are_ignored<S: OptOutStore + ?Sized>(store: &S) {
    out(store, &["tg:1"], None, t(20)).await;
    back_in(store, &["tg:1"], None, t(10)).await;
    assert!(
        opted_out(store, &["tg:1"], Purpose::Service).await,
        "an older opt-in must not lift a newer opt-out"
    );
    back_in(store, &["tg:1"], None, t(30)).await;
    assert!(!opted_out(store, &["tg:1"], Purpose::Service).await);
    out(store, &["tg:1"], None, t(25)).await;
    assert!(
        !opted_out(store, &["tg:1"], Purpose::Service).await,
        "an older opt-out must not undo a newer opt-in"
    );

    let late = t(40) + chrono::Duration::nanoseconds(1);
    out(store, &["tg:2"], None, late).await;
    back_in(store, &["tg:2"], None, t(40)).await;
    assert!(
        opted_out(store, &["tg:2"], Purpose::Service).await,
        "times must be kept to the nanosecond: an opt-in 1 ns older is older"
    );
}

/// At the same instant, a later call replaces the statement of the same key, and across keys
/// an opt-out wins the tie.
pub async fn ties<S: OptOutStore + ?Sized>(store: &S) {
    out(store, &["tg:1"], None, t(10)).await;
    back_in(store, &["tg:1"], None, t(10)).await;
    assert!(
        !opted_out(store, &["tg:1"], Purpose::Service).await,
        "for one key at one instant, the later call wins"
    );
    out(store, &["wa:2"], None, t(20)).await;
    back_in(store, &["tg:3"], None, t(20)).await;
    assert!(
        opted_out(store, &["tg:3", "wa:2"], Purpose::Service).await,
        "across keys at one instant, the opt-out wins"
    );
}

/// An opt-out of one purpose covers only that purpose; an opt-out of everything covers every
/// purpose; an opt-in of one purpose lifts only that purpose's opt-out, an opt-in of everything
/// lifts both when it is the latest statement.
pub async fn purposes<S: OptOutStore + ?Sized>(store: &S) {
    let k = ["wa:79123456789"];
    out(store, &k, Some(Purpose::Marketing), t(10)).await;
    assert!(opted_out(store, &k, Purpose::Marketing).await);
    assert!(
        !opted_out(store, &k, Purpose::Service).await,
        "a marketing opt-out must not stop service messages"
    );
    out(store, &k, None, t(20)).await;
    assert!(
        opted_out(store, &k, Purpose::Service).await,
        "an opt-out of everything covers service"
    );
    back_in(store, &k, Some(Purpose::Marketing), t(30)).await;
    assert!(
        !opted_out(store, &k, Purpose::Marketing).await,
        "the latest statement covering marketing is the marketing opt-in"
    );
    assert!(
        opted_out(store, &k, Purpose::Service).await,
        "a marketing opt-in leaves the opt-out of everything for service"
    );
    out(store, &k, Some(Purpose::Marketing), t(40)).await;
    back_in(store, &k, None, t(50)).await;
    assert!(!opted_out(store, &k, Purpose::Service).await);
    assert!(
        !opted_out(store, &k, Purpose::Marketing).await,
        "a later opt-in to everything lifts a marketing opt-out"
    );
}

/// Many keys at once (a person with many addresses): one opted-out key among 60 is found, and
/// keys holding SQL metacharacters are taken literally.
pub async fn many_and_odd_keys<S: OptOutStore + ?Sized>(store: &S) {
    let many: Vec<String> = (0..60).map(|i| format!("tg:{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    back_in(store, &refs, None, t(1)).await;
    assert!(!opted_out(store, &refs, Purpose::Service).await);
    out(store, &["tg:59"], None, t(2)).await;
    assert!(
        opted_out(store, &refs, Purpose::Service).await,
        "the one opted-out key among 60 must be found"
    );
    let odd = "contact:o'brien%_\"; --";
    out(store, &[odd], None, t(3)).await;
    assert!(opted_out(store, &[odd], Purpose::Service).await);
    assert!(
        !opted_out(store, &["contact:o'brien"], Purpose::Service).await,
        "keys are compared literally"
    );
}

/// Concurrent writers for different people all land.
pub async fn concurrent_writers<S: OptOutStore + ?Sized>(store: &S) {
    let (a, b, c, d) = (
        keys(&["tg:100"]),
        keys(&["tg:101"]),
        keys(&["tg:102"]),
        keys(&["tg:103"]),
    );
    let results = tokio::join!(
        store.opt_out(&a, None, t(1)),
        store.opt_out(&b, None, t(1)),
        store.opt_in(&c, None, t(1)),
        store.opt_out(&d, Some(Purpose::Marketing), t(1)),
    );
    for r in [results.0, results.1, results.2, results.3] {
        r.unwrap_or_else(|e| panic!("a concurrent write failed: {e}"));
    }
    assert!(opted_out(store, &["tg:100"], Purpose::Service).await);
    assert!(opted_out(store, &["tg:101"], Purpose::Service).await);
    assert!(!opted_out(store, &["tg:102"], Purpose::Service).await);
    assert!(opted_out(store, &["tg:103"], Purpose::Marketing).await);
}

/// Runs every check, each on a fresh store from `make`.
///
/// # Panics
///
/// When a store does not behave like the reference.
pub async fn run_all<S, F, Fut>(mut make: F)
where
    S: OptOutStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    empty_store_allows_everyone(&make().await).await;
    opt_out_and_back_in(&make().await).await;
    latest_statement_across_keys_decides(&make().await).await;
    older_statements_are_ignored(&make().await).await;
    ties(&make().await).await;
    purposes(&make().await).await;
    many_and_odd_keys(&make().await).await;
    concurrent_writers(&make().await).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::MemoryOptOutStore;

    #[tokio::test]
    async fn memory_opt_out_store_conforms() {
        run_all(|| async { MemoryOptOutStore::new() }).await;
    }
}
