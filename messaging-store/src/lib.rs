//! # messaging-store
//!
//! Durable stores for the `messaging-core` cascade engine: they keep cascades, their timers, the
//! provider-message-id index (to route delivery reports back), the reply index (to route an
//! inbound message to the person's cascades) and WhatsApp service windows, so that no notice is
//! lost when the process stops.
//!
//! | backend | feature | when to use it |
//! |---|---|---|
//! | [`SqliteStore`] | `sqlite` (default) | one engine process; a file next to the service, nothing to run |
//! | [`PostgresStore`] | `postgres` | several engine instances sharing work, or an existing PostgreSQL |
//! | [`MemoryStore`](messaging_cascade::store::MemoryStore) | (in `messaging-core`) | tests, or services that may lose state on restart |
//!
//! All three implement [`CascadeStore`](messaging_cascade::store::CascadeStore),
//! [`WindowStore`](messaging_core::window::WindowStore) and
//! [`CascadeReports`](messaging_cascade::store::CascadeReports) with the same behaviour, checked by one
//! conformance suite (`messaging_cascade::store::conformance`). The SQL stores also keep identity
//! links and used deep-link tokens:
//! [`IdentityStore`](messaging_conversations::identity::IdentityStore) and
//! [`UsedTokenStore`](messaging_conversations::identity::UsedTokenStore), the sender
//! governor's [`SenderCounters`](messaging_hygiene::SenderCounters) (caps across restarts and
//! instances), inbox threads ([`InboxStore`](messaging_conversations::inbox::InboxStore), so every
//! instance behind a load balancer sees the same conversations) and the one opt-out record
//! ([`OptOutStore`](messaging_core::consent::OptOutStore), written by the inbox, read by the
//! governor). Each trait's conformance suite (`identity::conformance`, `inbox::conformance`,
//! `governor::conformance`, `consent::conformance`, feature `testkit` of the defining crate) runs
//! against both SQL stores in this crate's tests, as it runs against the in-memory reference in
//! its own crate.
//!
//! Both SQL stores answer an operator's questions
//! ([`CascadeReports`](messaging_cascade::store::CascadeReports): cascades running, stuck,
//! ended by outcome and channel, cost by channel and day) from indexed columns written with
//! each record; `messaging report` prints them.
//!
//! Finished cascades stay until you purge them:
//! [`CascadeStore::purge_finished`](messaging_cascade::store::CascadeStore::purge_finished), or
//! [`Engine::purge_finished`](messaging_cascade::Engine::purge_finished) with a retention period.
//!
//! ## What is stored
//!
//! | table | rows | purpose |
//! |---|---|---|
//! | `schema_version` | one per applied migration | migrations are applied on open, idempotently |
//! | `cascades` | one per notification | the record as JSON, plus `version` (the compare-and-swap operand), `finished`, `wake_at_ns`, `lease_until_ns` and `due_ns` (the timer: `wake_at`, or the end of a claim's lease); `ended_ns` (SQLite migration 5, PostgreSQL 4) for `purge_finished` |
//! | `messages` | one per provider message id | `find_message` |
//! | `reply_keys` | one per (address key, unfinished cascade) | `active_by_reply_key` |
//! | `windows` | one per (channel, address key) | the WhatsApp 24-hour window |
//! | `counters` (SQLite) | `active` | `count_active` in constant time |
//! | `links` (migration 2) | one per linked address | `IdentityStore`; indexed by contact and by phone digits |
//! | `used_tokens` (migration 2) | one per used deep-link token id | `UsedTokenStore::mark_token_used` (insert-if-absent, atomic) |
//! | `gov_sends`, `gov_replies`, `gov_marketing` (migration 3) | one per send / inbound / marketing send, kept 8 days | `SenderCounters` windows |
//! | `gov_contacted`, `gov_wrote_to_us`, `gov_connected` (migration 3) | one per (channel, person key) / key / channel | `SenderCounters` lookups |
//! | `inbox` (SQLite migration 4, PostgreSQL 4) | one per inbox message, as JSON | `InboxStore`, ordered by time then arrival |
//! | `opt_outs` (SQLite migration 6, PostgreSQL 5) | one per (key, purpose or `''` for all): opted out or back in, and when | `OptOutStore`; replaced migration 3's `gov_opt_out`, whose keys became opt-outs at the Unix epoch |
//! | `cascades.state`, `channel`, `deadline_ns` (SQLite migration 8, PostgreSQL 7) | per cascade: its phase or outcome, the channel of its step or the one that ended it, the deadline of a running one | [`CascadeReports`](messaging_cascade::store::CascadeReports): running, stuck, ended; filled from the stored records by the migration |
//! | `attempt_costs` (SQLite migration 8, PostgreSQL 7) | one per attempt with a cost estimate: channel, UTC day, currency, amount | `CascadeReports::cost_by_channel_day`; purged with its cascade |
//! | `running_counts` (SQLite migration 9) | one per (state, channel) a running cascade has been in: how many are | `CascadeReports::running` without a scan; replaced the index `cascades_running`, which every state change rewrote |
//! | `cascades.record` packed (SQLite migration 9) | per cascade | the record's JSON LZ4-compressed (about half the bytes, so half the table pages a state change rewrites); the migration packs existing records, and JSON text is still read |
//!
//! Times are Unix nanoseconds in `BIGINT` columns (years 1677 to 2262), so timers order exactly
//! as in the in-memory store. Each `update` is one transaction: the record, its timer (clearing
//! any claim), its reply keys and its provider message ids change together or not at all.
//!
//! ## Opening
//!
//! ```
//! use messaging_cascade::store::CascadeStore;
//! use messaging_store::SqliteStore;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path().join("messaging.db")).await?;
//! assert_eq!(store.next_wake().await?, None);
//! # Ok::<(), messaging_core::StoreError>(())
//! # }).unwrap();
//! ```
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn demo() -> Result<(), messaging_core::StoreError> {
//! use messaging_store::{PostgresOptions, PostgresStore};
//! let store = PostgresStore::connect_with(
//!     "postgres://app@db.internal/clinic",
//!     PostgresOptions::default().schema("messaging").pool_size(16),
//! )
//! .await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod common;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod journal_codec;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "postgres")]
mod postgres_consent;
#[cfg(feature = "postgres")]
mod postgres_counters;
#[cfg(feature = "postgres")]
mod postgres_health;
#[cfg(feature = "postgres")]
mod postgres_identity;
#[cfg(feature = "postgres")]
mod postgres_inbox;
#[cfg(feature = "postgres")]
mod postgres_journal;
#[cfg(feature = "postgres")]
mod postgres_reports;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_consent;
#[cfg(feature = "sqlite")]
mod sqlite_counters;
#[cfg(feature = "sqlite")]
mod sqlite_identity;
#[cfg(feature = "sqlite")]
mod sqlite_inbox;
#[cfg(feature = "sqlite")]
mod sqlite_journal;
#[cfg(feature = "sqlite")]
mod sqlite_reports;

#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{Durability, SqliteOptions, SqliteStore, WriterStats};
