//! Storage traits and the in-memory store.
//!
//! The engine writes every state change through [`CascadeStore::update`] **before** any side
//! effect ("about to send attempt N on step K"), with optimistic concurrency on
//! [`CascadeRecord::version`]. One `update` carries the record, its timer (`wake_at`), its
//! provider-message-id index entries and its reply keys, so a SQL backend writes them in one
//! transaction. Due work is claimed with a lease, so two engines on one database never advance
//! the same cascade at once; the version check makes a second send impossible even if they did.
//!
//! | trait | kept | in-memory | durable (`messaging-store`) |
//! |---|---|---|---|
//! | [`CascadeStore`] | cascades, timers, message index, reply index | [`MemoryStore`] | SQLite, PostgreSQL |
//! | [`WindowStore`] (from `messaging-core`) | the last inbound message per person (WhatsApp 24-hour window) | [`MemoryStore`] | SQLite, PostgreSQL |
//! | [`CascadeReports`] | (reads only) cascades running, stuck, ended by outcome and channel, cost by channel and day | [`MemoryStore`] | SQLite, PostgreSQL |

use std::any::Any;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::engine::CascadeRecord;
pub use messaging_core::StoreError;
pub use messaging_core::window::WindowStore;
use messaging_core::{NotificationId, ProviderMessageId};

mod memory;
mod parked;
pub(crate) use memory::InPlace;
pub use memory::MemoryStore;
pub mod reports;
pub use reports::{
    CascadeReports, DailyCost, EndedCount, ListQuery, OperatorReport, ReportFacts, ReportQuery,
    RunningCount, Stuck, StuckCascade,
};

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod conformance;

/// The result of [`CascadeStore::insert`].
#[derive(Debug)]
pub enum Inserted {
    /// Stored.
    New,
    /// A record with this id exists already (idempotent submit); here it is.
    Exists(Box<CascadeRecord>),
}

/// Where a provider message id points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRef {
    /// The cascade.
    pub notification_id: NotificationId,
    /// The attempt's index in the record's attempts.
    pub attempt: usize,
}

/// Cascades, their timers, and the indexes that route events back to them.
#[async_trait]
pub trait CascadeStore: Any + Send + Sync + fmt::Debug {
    /// Stores a new record (version 0), or returns the existing one with the same id.
    async fn insert(&self, record: &CascadeRecord) -> Result<Inserted, StoreError>;

    /// Reads a record.
    async fn get(&self, id: &NotificationId) -> Result<Option<CascadeRecord>, StoreError>;

    /// Replaces a record if its stored version is still `record.version`; the stored copy then
    /// has `record.version + 1`. Also replaces its timer (`wake_at`, clearing any claim), its
    /// provider-message-id entries and its reply keys. Fails with [`StoreError::Conflict`]
    /// otherwise. Returns the new version.
    async fn update(&self, record: &CascadeRecord) -> Result<u64, StoreError>;

    /// Claims up to `limit` cascades whose `wake_at <= now` and that are not claimed by someone
    /// else, for `lease`. A claimed cascade is not returned again until its lease runs out or
    /// it is updated.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<NotificationId>, StoreError>;

    /// The earliest `wake_at` of any cascade (claimed or not).
    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Finds the attempt a provider message id belongs to.
    async fn find_message(
        &self,
        provider_message_id: &ProviderMessageId,
    ) -> Result<Option<MessageRef>, StoreError>;

    /// Unfinished cascades reachable under a reply key (see [`CascadeRecord::reply_keys`]).
    async fn active_by_reply_key(&self, key: &str) -> Result<Vec<NotificationId>, StoreError>;

    /// How many cascades are unfinished.
    async fn count_active(&self) -> Result<usize, StoreError>;

    /// Deletes up to `limit` finished cascades that ended before `ended_before` (see
    /// [`CascadeRecord::ended_at`]), with their provider-message-id entries, and returns how
    /// many it deleted. Unfinished cascades are never deleted. A delivery report that arrives
    /// for a purged cascade finds nothing and is ignored.
    ///
    /// Retention is the caller's policy: [`Engine::purge_finished`](crate::Engine::purge_finished)
    /// calls this in batches. The default answers [`StoreError::Unsupported`], so stores
    /// written before this method existed still compile.
    async fn purge_finished(
        &self,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let _ = (ended_before, limit);
        Err(StoreError::Unsupported("purge_finished"))
    }
}
