//! [`SenderCounters`] on SQLite (tables `gov_*`, migration 3): the sender governor's caps hold
//! across restarts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_core::StoreError;
use messaging_core::{ChannelId, Purpose};
use messaging_hygiene::governor::{SendRecord, WindowCounts};
use messaging_hygiene::{MemoryCounters, SenderCounters};
use rusqlite::{OptionalExtension, params};

use crate::common::{from_ns, to_ns};
use crate::sqlite::{SqliteStore, sql_err};

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl SenderCounters for SqliteStore {
    async fn record_send(&self, send: &SendRecord) -> Result<(), StoreError> {
        let channel = send.channel_id.as_str().to_owned();
        let address = send.address.clone();
        let person = send.person.clone();
        let at = to_ns(send.at, "send time")?;
        let horizon = to_ns(send.at - MemoryCounters::RETENTION, "send time")?;
        let marketing = send.purpose == Purpose::Marketing;
        let new_recipient = send.new_recipient;
        self.run(move |c| {
            c.prepare_cached("DELETE FROM gov_sends WHERE channel = ?1 AND at_ns < ?2")?
                .execute(params![channel, horizon])?;
            c.prepare_cached(
                "INSERT INTO gov_sends (channel, at_ns, address, new_recipient)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![channel, at, address, new_recipient])?;
            let mut up = c.prepare_cached(
                "INSERT INTO gov_contacted (channel, key, last_sent_ns) VALUES (?1, ?2, ?3)
                 ON CONFLICT (channel, key)
                 DO UPDATE SET last_sent_ns = max(last_sent_ns, excluded.last_sent_ns)",
            )?;
            for k in &person {
                up.execute(params![channel, k, at])?;
            }
            if marketing && let Some(k) = person.first() {
                c.prepare_cached("DELETE FROM gov_marketing WHERE key = ?1 AND at_ns < ?2")?
                    .execute(params![k, horizon])?;
                c.prepare_cached("INSERT INTO gov_marketing (key, at_ns) VALUES (?1, ?2)")?
                    .execute(params![k, at])?;
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn window(
        &self,
        channel: &ChannelId,
        since: DateTime<Utc>,
    ) -> Result<WindowCounts, StoreError> {
        let channel = channel.as_str().to_owned();
        let since = to_ns(since, "since")?;
        let (sends, new, unique, earliest) = self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT count(*), coalesce(sum(new_recipient), 0), count(DISTINCT address),
                            min(at_ns)
                     FROM gov_sends WHERE channel = ?1 AND at_ns >= ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![channel, since], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                        ))
                    })
                })
                .map_err(sql_err("reading send counts"))
            })
            .await?;
        Ok(WindowCounts {
            sends: count(sends),
            new_recipients: count(new),
            unique_recipients: count(unique),
            earliest: earliest.map(from_ns),
        })
    }

    async fn known(&self, channel: &ChannelId, person: &[String]) -> Result<bool, StoreError> {
        let channel = channel.as_str().to_owned();
        let person = person.to_vec();
        self.read(move |c| {
            let e = sql_err("reading contacts");
            let mut wrote = c
                .prepare_cached("SELECT 1 FROM gov_wrote_to_us WHERE key = ?1")
                .map_err(&e)?;
            let mut sent = c
                .prepare_cached("SELECT 1 FROM gov_contacted WHERE channel = ?1 AND key = ?2")
                .map_err(&e)?;
            for k in &person {
                if wrote.exists([k]).map_err(&e)? || sent.exists(params![channel, k]).map_err(&e)? {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
    }

    async fn sent_since(
        &self,
        channel: &ChannelId,
        person: &[String],
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let channel = channel.as_str().to_owned();
        let person = person.to_vec();
        let since = to_ns(since, "since")?;
        self.read(move |c| {
            let e = sql_err("reading last sends");
            let mut q = c
                .prepare_cached(
                    "SELECT 1 FROM gov_contacted
                     WHERE channel = ?1 AND key = ?2 AND last_sent_ns >= ?3",
                )
                .map_err(&e)?;
            for k in &person {
                if q.exists(params![channel, k, since]).map_err(&e)? {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
    }

    async fn marketing_since(
        &self,
        person: &[String],
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let person = person.to_vec();
        let since = to_ns(since, "since")?;
        let mut out: Vec<DateTime<Utc>> = self
            .read(move |c| {
                let e = sql_err("reading marketing sends");
                let mut q = c
                    .prepare_cached(
                        "SELECT at_ns FROM gov_marketing WHERE key = ?1 AND at_ns >= ?2",
                    )
                    .map_err(&e)?;
                let mut out = Vec::new();
                for k in &person {
                    for t in q
                        .query_map(params![k, since], |r| r.get::<_, i64>(0))
                        .map_err(&e)?
                    {
                        out.push(from_ns(t.map_err(&e)?));
                    }
                }
                Ok(out)
            })
            .await?;
        out.sort();
        Ok(out)
    }

    async fn record_inbound(
        &self,
        channel: &ChannelId,
        sender: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let channel = channel.as_str().to_owned();
        let sender = sender.to_owned();
        let horizon = to_ns(at - MemoryCounters::RETENTION, "inbound time")?;
        let at = to_ns(at, "inbound time")?;
        self.run(move |c| {
            c.prepare_cached("INSERT OR IGNORE INTO gov_wrote_to_us (key) VALUES (?1)")?
                .execute([&sender])?;
            c.prepare_cached("DELETE FROM gov_replies WHERE channel = ?1 AND at_ns < ?2")?
                .execute(params![channel, horizon])?;
            c.prepare_cached("INSERT INTO gov_replies (channel, at_ns) VALUES (?1, ?2)")?
                .execute(params![channel, at])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn replies_since(
        &self,
        channel: &ChannelId,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let channel = channel.as_str().to_owned();
        let since = to_ns(since, "since")?;
        let n = self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT count(*) FROM gov_replies WHERE channel = ?1 AND at_ns >= ?2",
                )
                .and_then(|mut s| s.query_row(params![channel, since], |r| r.get::<_, i64>(0)))
                .map_err(sql_err("counting replies"))
            })
            .await?;
        Ok(count(n))
    }

    async fn connected_at(&self, channel: &ChannelId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let channel = channel.as_str().to_owned();
        let at = self
            .read(move |c| {
                c.prepare_cached("SELECT at_ns FROM gov_connected WHERE channel = ?1")
                    .and_then(|mut s| s.query_row([&channel], |r| r.get::<_, i64>(0)).optional())
                    .map_err(sql_err("reading connected_at"))
            })
            .await?;
        Ok(at.map(from_ns))
    }

    async fn set_connected_at(
        &self,
        channel: &ChannelId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let channel = channel.as_str().to_owned();
        let at = to_ns(at, "connected_at")?;
        self.run(move |c| {
            c.prepare_cached(
                "INSERT INTO gov_connected (channel, at_ns) VALUES (?1, ?2)
                 ON CONFLICT (channel) DO UPDATE SET at_ns = excluded.at_ns",
            )?
            .execute(params![channel, at])?;
            Ok(Ok(()))
        })
        .await
    }
}
