//! [`HealthBoard`] on PostgreSQL (tables `health_notices` and `probe_claims`, migration 8):
//! channel health shared by every instance on one database.
//!
//! Readers follow `position` with a cursor, which is only safe if a position never becomes
//! visible after a higher one: posts therefore take a transaction-scoped advisory lock, so they
//! commit in the order of their positions. Health changes are rare (a few per outage), so the
//! lock costs nothing that matters. A short poll (the engine's `health_sync_interval`, 1 s by
//! default) rather than LISTEN/NOTIFY: a notice reaches the other instances within one
//! interval either way, polling needs no dedicated connection out of the pool, and a notice
//! posted while an instance was restarting is read all the same.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_cascade::shared_health::{HealthBoard, HealthNotice};
use messaging_core::{ChannelId, StoreError};

use crate::common::{lease_end_ns, to_ns};
use crate::postgres::{PostgresStore, col, pg_err};

/// Notices older than this are deleted when a new one is posted, except each channel's newest.
const KEEP_NS: i64 = 7 * 24 * 3600 * 1_000_000_000;

fn decode(position: i64, json: &str) -> Result<(u64, HealthNotice), StoreError> {
    let notice = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("postgres: health notice {position}: {e}")))?;
    let position = u64::try_from(position)
        .map_err(|_| StoreError::Corrupt(format!("postgres: health notice {position}")))?;
    Ok((position, notice))
}

#[async_trait]
impl HealthBoard for PostgresStore {
    async fn post(&self, notice: &HealthNotice) -> Result<u64, StoreError> {
        let e = pg_err("posting a health notice");
        let json = serde_json::to_string(notice)
            .map_err(|x| StoreError::Backend(format!("postgres: health notice: {x}")))?;
        let now = to_ns(Utc::now(), "now")?;
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(&e)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(714652, hashtext($1))",
            &[&self.schema()],
        )
        .await
        .map_err(&e)?;
        let table = self.t("health_notices");
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO {table} (channel, notice, posted_ns) VALUES ($1, $2, $3)
                     RETURNING position"
                ),
                &[&notice.channel.as_str(), &json, &now],
            )
            .await
            .map_err(&e)?;
        let position: i64 = col(&row, 0, "posting a health notice")?;
        tx.execute(
            &format!(
                "DELETE FROM {table} WHERE posted_ns < $1
                 AND position NOT IN (SELECT max(position) FROM {table} GROUP BY channel)"
            ),
            &[&(now - KEEP_NS)],
        )
        .await
        .map_err(&e)?;
        tx.commit().await.map_err(&e)?;
        u64::try_from(position)
            .map_err(|_| StoreError::Corrupt(format!("postgres: health notice {position}")))
    }

    async fn read_after(
        &self,
        position: u64,
        limit: usize,
    ) -> Result<Vec<(u64, HealthNotice)>, StoreError> {
        let ctx = "reading health notices";
        let after = i64::try_from(position).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT position, notice FROM {} WHERE position > $1 ORDER BY position LIMIT $2",
            self.t("health_notices")
        );
        let rows = self.query(&sql, &[&after, &limit], ctx).await?;
        rows.iter()
            .map(|r| decode(col(r, 0, ctx)?, &col::<String>(r, 1, ctx)?))
            .collect()
    }

    async fn latest(&self) -> Result<(Vec<HealthNotice>, u64), StoreError> {
        let ctx = "reading the newest health notices";
        let table = self.t("health_notices");
        let sql = format!(
            "SELECT position, notice FROM {table}
             WHERE position IN (SELECT max(position) FROM {table} GROUP BY channel)
             ORDER BY position"
        );
        let rows = self.query(&sql, &[], ctx).await?;
        let mut newest = Vec::with_capacity(rows.len());
        let mut last = 0;
        for r in &rows {
            let (position, notice) = decode(col(r, 0, ctx)?, &col::<String>(r, 1, ctx)?)?;
            newest.push(notice);
            last = last.max(position);
        }
        // The cursor is the newest position of all, not only of the newest per channel (they
        // are the same: the overall newest is some channel's newest).
        Ok((newest, last))
    }

    async fn claim_probe(
        &self,
        channel: &ChannelId,
        instance: &str,
        now: DateTime<Utc>,
        hold: Duration,
    ) -> Result<bool, StoreError> {
        let ctx = "claiming a probe";
        let now = to_ns(now, "now")?;
        let until = lease_end_ns(now, hold);
        // One statement: the row is taken if absent or if its hold has ended, atomically.
        let sql = format!(
            "INSERT INTO {t} (channel, instance, held_until_ns) VALUES ($1, $2, $3)
             ON CONFLICT (channel) DO UPDATE
                 SET instance = EXCLUDED.instance, held_until_ns = EXCLUDED.held_until_ns
                 WHERE {t}.held_until_ns <= $4
             RETURNING instance",
            t = self.t("probe_claims")
        );
        let rows = self
            .query(&sql, &[&channel.as_str(), &instance, &until, &now], ctx)
            .await?;
        Ok(!rows.is_empty())
    }
}
