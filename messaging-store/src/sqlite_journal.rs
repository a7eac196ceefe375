//! [`WebhookJournal`] on SQLite (table `webhook_journal`, migration 7). Every write goes through
//! the store's writer thread, so a webhook's record is committed in the same group commits as
//! the engine's own writes and is durable (fsynced under [`Durability::Full`]) when `record`
//! returns.
//!
//! [`Durability::Full`]: crate::sqlite::Durability::Full

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_core::journal::{JournalEntry, JournalId, JournalRecord, WebhookJournal};
use messaging_core::{Event, StoreError};
use rusqlite::params;

use crate::common::{from_ns, lease_end_ns, to_ns};
use crate::journal_codec::{journal_event, journal_json};
use crate::sqlite::{SqliteStore, sql_err};

/// A claimed row as read, before its event is decoded.
type ClaimedRow = (i64, Option<String>, Option<String>, i64, i64);

fn limit_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl WebhookJournal for SqliteStore {
    async fn record(
        &self,
        records: &[JournalRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let now = to_ns(now, "webhook record time")?;
        let rows = records
            .iter()
            .map(|r| Ok((r.key.clone(), journal_json(&r.event)?)))
            .collect::<Result<Vec<(Option<String>, String)>, StoreError>>()?;
        self.run(move |c| {
            // A key already present (or earlier in this call) inserts nothing.
            let mut ins = c.prepare_cached(
                "INSERT INTO webhook_journal (key, event, recorded_ns, due_ns)
                 VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (key) DO NOTHING",
            )?;
            let mut fresh = Vec::with_capacity(rows.len());
            for (key, event) in &rows {
                fresh.push(ins.execute(params![key, event, now])? == 1);
            }
            Ok(Ok(fresh))
        })
        .await
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = to_ns(now, "now")?;
        let until = lease_end_ns(now, lease);
        let limit = limit_sql(limit);
        self.run(move |c| {
            let rows: Vec<ClaimedRow> = c
                .prepare_cached(
                    "SELECT id, key, event, attempts, recorded_ns FROM webhook_journal
                     WHERE due_ns <= ?1 ORDER BY due_ns, id LIMIT ?2",
                )?
                .query_map(params![now, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut lease = c.prepare_cached(
                "UPDATE webhook_journal SET due_ns = ?2, attempts = attempts + 1 WHERE id = ?1",
            )?;
            let mut corrupt = c.prepare_cached(
                "UPDATE webhook_journal SET due_ns = NULL, ended_ns = ?2, error = ?3
                 WHERE id = ?1",
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for (id, key, event, attempts, recorded_ns) in rows {
                match journal_event(id, event.as_deref()) {
                    Ok(event) => {
                        lease.execute(params![id, until])?;
                        out.push(entry(id, key, event, attempts, recorded_ns));
                    }
                    Err(e) => {
                        tracing::error!(entry = id, error = %e, "messaging-store: a webhook journal entry cannot be read; marked failed");
                        corrupt.execute(params![id, now, e.to_string()])?;
                    }
                }
            }
            Ok(Ok(out))
        })
        .await
    }

    async fn complete(&self, ids: &[JournalId], now: DateTime<Utc>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = to_ns(now, "completion time")?;
        let ids: Vec<i64> = ids.iter().map(|i| i.get()).collect();
        self.run(move |c| {
            let mut up = c.prepare_cached(
                "UPDATE webhook_journal
                 SET due_ns = NULL, event = NULL, ended_ns = ?2, error = NULL
                 WHERE id = ?1 AND due_ns IS NOT NULL",
            )?;
            for id in &ids {
                up.execute(params![id, now])?;
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn retry(&self, id: JournalId, at: DateTime<Utc>, error: &str) -> Result<(), StoreError> {
        let at = to_ns(at, "retry time")?;
        let (id, error) = (id.get(), error.to_owned());
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE webhook_journal SET due_ns = ?2, error = ?3
                 WHERE id = ?1 AND due_ns IS NOT NULL",
            )?
            .execute(params![id, at, error])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn fail(&self, id: JournalId, now: DateTime<Utc>, error: &str) -> Result<(), StoreError> {
        let now = to_ns(now, "failure time")?;
        let (id, error) = (id.get(), error.to_owned());
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE webhook_journal SET due_ns = NULL, ended_ns = ?2, error = ?3
                 WHERE id = ?1 AND due_ns IS NOT NULL",
            )?
            .execute(params![id, now, error])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn purge(&self, ended_before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let before = to_ns(ended_before, "ended_before")?;
        let limit = limit_sql(limit);
        self.run(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM webhook_journal WHERE id IN (
                         SELECT id FROM webhook_journal WHERE ended_ns < ?1
                         ORDER BY ended_ns, id LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
            Ok(Ok(n))
        })
        .await
    }

    async fn pending(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .read(|c| {
                c.prepare_cached("SELECT count(*) FROM webhook_journal WHERE due_ns IS NOT NULL")
                    .and_then(|mut s| s.query_row([], |r| r.get(0)))
                    .map_err(sql_err("counting pending webhook events"))
            })
            .await?;
        usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("pending count is {n}")))
    }
}

fn entry(
    id: i64,
    key: Option<String>,
    event: Event,
    attempts: i64,
    recorded_ns: i64,
) -> JournalEntry {
    let mut e = JournalEntry::new(JournalId::new(id), event, from_ns(recorded_ns));
    e.key = key;
    e.attempts = u32::try_from(attempts.saturating_add(1)).unwrap_or(u32::MAX);
    e
}
