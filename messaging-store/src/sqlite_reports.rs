//! [`CascadeReports`] on SQLite: counts from the `state`, `channel`, `deadline_ns` and
//! `ended_ns` columns of `cascades` and from `attempt_costs` (migration 8) and `running_counts`
//! (migration 9), each read on a reader connection in one snapshot.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use messaging_cascade::store::{
    CascadeReports, DailyCost, EndedCount, ListQuery, RunningCount, StoreError, Stuck, StuckCascade,
};
use messaging_core::{ChannelId, NotificationId};
use rusqlite::params;

use crate::common::{decode, from_ns, saturating_ns};
use crate::sqlite::{SqliteStore, StoredJson, sql_err};

fn count(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("sqlite: negative count {n}")))
}

fn parse_day(s: &str) -> Result<NaiveDate, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("sqlite: attempt_costs: bad day {s:?}: {e}")))
}

#[async_trait]
impl CascadeReports for SqliteStore {
    async fn running(&self) -> Result<Vec<RunningCount>, StoreError> {
        let rows: Vec<(String, Option<String>, i64)> = self
            .read(|c| {
                // Kept by every write (migration 9): a few rows, not a scan of the cascades.
                c.prepare_cached("SELECT state, channel, n FROM running_counts WHERE n > 0")
                    .and_then(|mut s| {
                        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                            .collect()
                    })
                    .map_err(sql_err("counting running cascades"))
            })
            .await?;
        let mut out = rows
            .into_iter()
            .map(|(phase, channel, n)| {
                Ok(RunningCount {
                    phase,
                    channel: channel.map(ChannelId::from),
                    count: count(n)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort();
        Ok(out)
    }

    async fn stuck(
        &self,
        now: DateTime<Utc>,
        grace: Duration,
        limit: usize,
    ) -> Result<Stuck, StoreError> {
        let cut = saturating_ns(StuckCascade::cutoff(now, grace));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (total, rows) = self
            .read(move |c| {
                let e = sql_err("finding stuck cascades");
                // One snapshot for the count and the list.
                let tx = c.unchecked_transaction().map_err(&e)?;
                let total: i64 = tx
                    .prepare_cached(
                        "SELECT count(*) FROM cascades
                         WHERE finished = 0 AND (due_ns < ?1 OR deadline_ns < ?1)",
                    )
                    .and_then(|mut s| s.query_row([cut], |r| r.get(0)))
                    .map_err(&e)?;
                let rows: Vec<(String, String, i64, Option<i64>)> = tx
                    .prepare_cached(
                        "SELECT id, record, version, due_ns FROM cascades
                         WHERE finished = 0 AND (due_ns < ?1 OR deadline_ns < ?1)
                         ORDER BY min(coalesce(due_ns, 9223372036854775807),
                                      coalesce(deadline_ns, 9223372036854775807)), id
                         LIMIT ?2",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![cut, limit], |r| {
                            Ok((
                                r.get(0)?,
                                r.get::<_, StoredJson>(1)?.0,
                                r.get(2)?,
                                r.get(3)?,
                            ))
                        })?
                        .collect()
                    })
                    .map_err(&e)?;
                Ok((total, rows))
            })
            .await?;
        let mut oldest = Vec::with_capacity(rows.len());
        for (id, json, version, due) in rows {
            let rec = decode(&id, &json, version)?;
            oldest.extend(StuckCascade::of(&rec, due.map(from_ns), now, grace));
        }
        Ok(Stuck {
            total: count(total)?,
            oldest,
        })
    }

    async fn ended_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EndedCount>, StoreError> {
        let (from, to) = (saturating_ns(from), saturating_ns(to));
        let rows: Vec<(String, Option<String>, i64)> = self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT state, channel, count(*) FROM cascades
                     WHERE ended_ns >= ?1 AND ended_ns < ?2
                     GROUP BY state, channel",
                )
                .and_then(|mut s| {
                    s.query_map([from, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect()
                })
                .map_err(sql_err("counting ended cascades"))
            })
            .await?;
        let mut out = rows
            .into_iter()
            .map(|(outcome, channel, n)| {
                Ok(EndedCount {
                    outcome,
                    channel,
                    count: count(n)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort();
        Ok(out)
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<NotificationId>, StoreError> {
        let order = if query.finished {
            "ended_ns DESC, id"
        } else {
            "due_ns IS NULL, due_ns, id"
        };
        let sql = format!(
            "SELECT id FROM cascades
             WHERE finished = ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR channel = ?3)
             ORDER BY {order} LIMIT ?4"
        );
        let q = query.clone();
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let ids: Vec<String> = self
            .read(move |c| {
                c.prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(params![q.finished, q.state, q.channel, limit], |r| r.get(0))?
                            .collect()
                    })
                    .map_err(sql_err("listing cascades"))
            })
            .await?;
        Ok(ids.into_iter().map(NotificationId::new).collect())
    }

    async fn cost_by_channel_day(
        &self,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Vec<DailyCost>, StoreError> {
        let (first, last) = (first.to_string(), last.to_string());
        let rows: Vec<(String, String, String, f64, i64)> = self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT channel, day, currency, sum(amount), count(*) FROM attempt_costs
                     WHERE day >= ?1 AND day <= ?2
                     GROUP BY channel, day, currency",
                )
                .and_then(|mut s| {
                    s.query_map([first, last], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })?
                    .collect()
                })
                .map_err(sql_err("summing costs"))
            })
            .await?;
        let mut out = rows
            .into_iter()
            .map(|(channel, day, currency, amount, n)| {
                Ok(DailyCost {
                    channel: ChannelId::from(channel),
                    day: parse_day(&day)?,
                    currency,
                    amount,
                    sends: count(n)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by(|a, b| {
            (a.channel.as_str(), a.day, a.currency.as_str()).cmp(&(
                b.channel.as_str(),
                b.day,
                b.currency.as_str(),
            ))
        });
        Ok(out)
    }
}
