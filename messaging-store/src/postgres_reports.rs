//! [`CascadeReports`] on PostgreSQL: counts from the `state`, `channel`, `deadline_ns` and
//! `ended_ns` columns of `cascades` and from `attempt_costs` (migration 7), one statement each.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use messaging_cascade::store::{
    CascadeReports, DailyCost, EndedCount, ListQuery, RunningCount, StoreError, Stuck, StuckCascade,
};
use messaging_core::{ChannelId, NotificationId};

use crate::common::{decode, from_ns, saturating_ns};
use crate::postgres::{PostgresStore, col};

fn count(row: &tokio_postgres::Row, i: usize) -> Result<u64, StoreError> {
    let n: i64 = col(row, i, "count")?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("postgres: negative count {n}")))
}

#[async_trait]
impl CascadeReports for PostgresStore {
    async fn running(&self) -> Result<Vec<RunningCount>, StoreError> {
        let sql = format!(
            "SELECT state, channel, count(*) FROM {} WHERE NOT finished GROUP BY state, channel",
            self.t("cascades")
        );
        let rows = self.query(&sql, &[], "counting running cascades").await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(RunningCount {
                    phase: col(r, 0, "state")?,
                    channel: col::<Option<String>>(r, 1, "channel")?.map(ChannelId::from),
                    count: count(r, 2)?,
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
        let t = self.t("cascades");
        // The total comes with the list (a window over the rows before LIMIT); alone when the
        // list is empty.
        let list = format!(
            "SELECT id, record, version, due_ns, count(*) OVER () FROM {t}
             WHERE NOT finished AND (due_ns < $1 OR deadline_ns < $1)
             ORDER BY LEAST(due_ns, deadline_ns), id
             LIMIT $2"
        );
        let rows = self
            .query(&list, &[&cut, &limit], "finding stuck cascades")
            .await?;
        let total = match rows.first() {
            Some(r) => count(r, 4)?,
            None => {
                let sql = format!(
                    "SELECT count(*) FROM {t}
                     WHERE NOT finished AND (due_ns < $1 OR deadline_ns < $1)"
                );
                let rows = self.query(&sql, &[&cut], "counting stuck cascades").await?;
                match rows.first() {
                    Some(r) => count(r, 0)?,
                    None => 0,
                }
            }
        };
        let mut oldest = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = col(r, 0, "id")?;
            let json: String = col(r, 1, "record")?;
            let version: i64 = col(r, 2, "version")?;
            let due: Option<i64> = col(r, 3, "due_ns")?;
            let rec = decode(&id, &json, version)?;
            oldest.extend(StuckCascade::of(&rec, due.map(from_ns), now, grace));
        }
        Ok(Stuck { total, oldest })
    }

    async fn ended_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EndedCount>, StoreError> {
        let (from, to) = (saturating_ns(from), saturating_ns(to));
        let sql = format!(
            "SELECT state, channel, count(*) FROM {}
             WHERE ended_ns >= $1 AND ended_ns < $2
             GROUP BY state, channel",
            self.t("cascades")
        );
        let rows = self
            .query(&sql, &[&from, &to], "counting ended cascades")
            .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(EndedCount {
                    outcome: col(r, 0, "state")?,
                    channel: col(r, 1, "channel")?,
                    count: count(r, 2)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort();
        Ok(out)
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<NotificationId>, StoreError> {
        let order = if query.finished {
            "ended_ns DESC, id COLLATE \"C\""
        } else {
            "due_ns ASC NULLS LAST, id COLLATE \"C\""
        };
        let sql = format!(
            "SELECT id FROM {} WHERE finished = $1
             AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR channel = $3)
             ORDER BY {order} LIMIT $4",
            self.t("cascades")
        );
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                &sql,
                &[&query.finished, &query.state, &query.channel, &limit],
                "listing cascades",
            )
            .await?;
        rows.iter()
            .map(|r| col::<String>(r, 0, "id").map(NotificationId::new))
            .collect()
    }

    async fn cost_by_channel_day(
        &self,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Vec<DailyCost>, StoreError> {
        let sql = format!(
            "SELECT channel, day, currency, sum(amount), count(*) FROM {}
             WHERE day >= $1 AND day <= $2
             GROUP BY channel, day, currency",
            self.t("attempt_costs")
        );
        let rows = self.query(&sql, &[&first, &last], "summing costs").await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(DailyCost {
                    channel: ChannelId::from(col::<String>(r, 0, "channel")?),
                    day: col(r, 1, "day")?,
                    currency: col(r, 2, "currency")?,
                    amount: col(r, 3, "amount")?,
                    sends: count(r, 4)?,
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
