//! [`SenderCounters`] on PostgreSQL (tables `gov_*`, migration 3): caps hold across restarts
//! and are shared by every instance.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_core::StoreError;
use messaging_core::{ChannelId, Purpose};
use messaging_hygiene::governor::{SendRecord, WindowCounts};
use messaging_hygiene::{MemoryCounters, SenderCounters};

use crate::common::{from_ns, to_ns};
use crate::postgres::{PostgresStore, col, pg_err};

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PostgresStore {
    async fn exists(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        context: &'static str,
    ) -> Result<bool, StoreError> {
        let rows = self.query(sql, params, context).await?;
        Ok(!rows.is_empty())
    }
}

#[async_trait]
impl SenderCounters for PostgresStore {
    async fn record_send(&self, send: &SendRecord) -> Result<(), StoreError> {
        let channel = send.channel_id.as_str();
        let at = to_ns(send.at, "send time")?;
        let horizon = to_ns(send.at - MemoryCounters::RETENTION, "send time")?;
        let e = pg_err("recording a send");
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(&e)?;
        let (sends, contacted, marketing) = (
            self.t("gov_sends"),
            self.t("gov_contacted"),
            self.t("gov_marketing"),
        );
        tx.execute(
            &format!("DELETE FROM {sends} WHERE channel = $1 AND at_ns < $2"),
            &[&channel, &horizon],
        )
        .await
        .map_err(&e)?;
        tx.execute(
            &format!(
                "INSERT INTO {sends} (channel, at_ns, address, new_recipient) VALUES ($1, $2, $3, $4)"
            ),
            &[&channel, &at, &send.address, &send.new_recipient],
        )
        .await
        .map_err(&e)?;
        tx.execute(
            &format!(
                "INSERT INTO {contacted} (channel, key, last_sent_ns)
                 SELECT $1, k, $3 FROM unnest($2::text[]) AS k
                 ON CONFLICT (channel, key)
                 DO UPDATE SET last_sent_ns = greatest({contacted}.last_sent_ns, excluded.last_sent_ns)"
            ),
            &[&channel, &send.person, &at],
        )
        .await
        .map_err(&e)?;
        if send.purpose == Purpose::Marketing
            && let Some(k) = send.person.first()
        {
            tx.execute(
                &format!("DELETE FROM {marketing} WHERE key = $1 AND at_ns < $2"),
                &[k, &horizon],
            )
            .await
            .map_err(&e)?;
            tx.execute(
                &format!("INSERT INTO {marketing} (key, at_ns) VALUES ($1, $2)"),
                &[k, &at],
            )
            .await
            .map_err(&e)?;
        }
        tx.commit().await.map_err(&e)
    }

    async fn window(
        &self,
        channel: &ChannelId,
        since: DateTime<Utc>,
    ) -> Result<WindowCounts, StoreError> {
        let sql = format!(
            "SELECT count(*), count(*) FILTER (WHERE new_recipient), count(DISTINCT address),
                    min(at_ns)
             FROM {} WHERE channel = $1 AND at_ns >= $2",
            self.t("gov_sends")
        );
        let ctx = "reading send counts";
        let rows = self
            .query(&sql, &[&channel.as_str(), &to_ns(since, "since")?], ctx)
            .await?;
        let Some(r) = rows.first() else {
            return Ok(WindowCounts::default());
        };
        Ok(WindowCounts {
            sends: count(col(r, 0, ctx)?),
            new_recipients: count(col(r, 1, ctx)?),
            unique_recipients: count(col(r, 2, ctx)?),
            earliest: col::<Option<i64>>(r, 3, ctx)?.map(from_ns),
        })
    }

    async fn known(&self, channel: &ChannelId, person: &[String]) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT 1 FROM {} WHERE key = ANY($2)
             UNION ALL SELECT 1 FROM {} WHERE channel = $1 AND key = ANY($2) LIMIT 1",
            self.t("gov_wrote_to_us"),
            self.t("gov_contacted")
        );
        self.exists(&sql, &[&channel.as_str(), &person], "reading contacts")
            .await
    }

    async fn sent_since(
        &self,
        channel: &ChannelId,
        person: &[String],
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT 1 FROM {} WHERE channel = $1 AND key = ANY($2) AND last_sent_ns >= $3 LIMIT 1",
            self.t("gov_contacted")
        );
        self.exists(
            &sql,
            &[&channel.as_str(), &person, &to_ns(since, "since")?],
            "reading last sends",
        )
        .await
    }

    async fn marketing_since(
        &self,
        person: &[String],
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let sql = format!(
            "SELECT at_ns FROM {} WHERE key = ANY($1) AND at_ns >= $2 ORDER BY at_ns",
            self.t("gov_marketing")
        );
        let ctx = "reading marketing sends";
        self.query(&sql, &[&person, &to_ns(since, "since")?], ctx)
            .await?
            .iter()
            .map(|r| col::<i64>(r, 0, ctx).map(from_ns))
            .collect()
    }

    async fn record_inbound(
        &self,
        channel: &ChannelId,
        sender: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let horizon = to_ns(at - MemoryCounters::RETENTION, "inbound time")?;
        let at = to_ns(at, "inbound time")?;
        let e = pg_err("recording an inbound message");
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(&e)?;
        let replies = self.t("gov_replies");
        tx.execute(
            &format!(
                "INSERT INTO {} (key) VALUES ($1) ON CONFLICT DO NOTHING",
                self.t("gov_wrote_to_us")
            ),
            &[&sender],
        )
        .await
        .map_err(&e)?;
        tx.execute(
            &format!("DELETE FROM {replies} WHERE channel = $1 AND at_ns < $2"),
            &[&channel.as_str(), &horizon],
        )
        .await
        .map_err(&e)?;
        tx.execute(
            &format!("INSERT INTO {replies} (channel, at_ns) VALUES ($1, $2)"),
            &[&channel.as_str(), &at],
        )
        .await
        .map_err(&e)?;
        tx.commit().await.map_err(&e)
    }

    async fn replies_since(
        &self,
        channel: &ChannelId,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE channel = $1 AND at_ns >= $2",
            self.t("gov_replies")
        );
        let ctx = "counting replies";
        let rows = self
            .query(&sql, &[&channel.as_str(), &to_ns(since, "since")?], ctx)
            .await?;
        match rows.first() {
            Some(r) => Ok(count(col(r, 0, ctx)?)),
            None => Ok(0),
        }
    }

    async fn connected_at(&self, channel: &ChannelId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sql = format!(
            "SELECT at_ns FROM {} WHERE channel = $1",
            self.t("gov_connected")
        );
        let ctx = "reading connected_at";
        let rows = self.query(&sql, &[&channel.as_str()], ctx).await?;
        rows.first()
            .map(|r| col::<i64>(r, 0, ctx).map(from_ns))
            .transpose()
    }

    async fn set_connected_at(
        &self,
        channel: &ChannelId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (channel, at_ns) VALUES ($1, $2)
             ON CONFLICT (channel) DO UPDATE SET at_ns = excluded.at_ns",
            self.t("gov_connected")
        );
        self.query(
            &sql,
            &[&channel.as_str(), &to_ns(at, "connected_at")?],
            "storing connected_at",
        )
        .await
        .map(|_| ())
    }
}
