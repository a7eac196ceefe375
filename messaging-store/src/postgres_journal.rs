//! [`WebhookJournal`] on PostgreSQL (table `webhook_journal`, migration 6), shared by every
//! instance: a webhook recorded by one instance is processed by whichever claims it first;
//! claims take `FOR UPDATE SKIP LOCKED` and a lease, so two instances never hold one entry at
//! once, and the entries of an instance that died are claimed again when their lease ends.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_core::StoreError;
use messaging_core::journal::{JournalEntry, JournalId, JournalRecord, WebhookJournal};

use crate::common::{from_ns, lease_end_ns, to_ns};
use crate::journal_codec::{journal_event, journal_json};
use crate::postgres::{PostgresStore, col};

fn limit_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl WebhookJournal for PostgresStore {
    async fn record(
        &self,
        records: &[JournalRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let now = to_ns(now, "webhook record time")?;
        // A key twice in one call: only its first record is sent.
        let mut in_call = HashSet::new();
        let mut sent = Vec::with_capacity(records.len());
        let (mut keys, mut events) = (Vec::new(), Vec::new());
        for r in records {
            let first = r.key.as_ref().is_none_or(|k| in_call.insert(k.as_str()));
            sent.push(first);
            if first {
                keys.push(r.key.clone());
                events.push(journal_json(&r.event)?);
            }
        }
        if keys.is_empty() {
            return Ok(sent);
        }
        // One statement: all rows or none. Rows keep the call's order (and so their ids).
        let sql = format!(
            "INSERT INTO {} (key, event, recorded_ns, due_ns)
             SELECT x.k, x.e, $3, $3
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(k, e, n)
             ORDER BY x.n
             ON CONFLICT (key) DO NOTHING
             RETURNING key",
            self.t("webhook_journal")
        );
        let ctx = "recording webhook events";
        let rows = self.query(&sql, &[&keys, &events, &now], ctx).await?;
        let mut inserted = HashSet::with_capacity(rows.len());
        for r in &rows {
            if let Some(k) = col::<Option<String>>(r, 0, ctx)? {
                inserted.insert(k);
            }
        }
        Ok(records
            .iter()
            .zip(sent)
            .map(|(r, first)| first && r.key.as_ref().is_none_or(|k| inserted.contains(k)))
            .collect())
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
        let t = self.t("webhook_journal");
        let sql = format!(
            "WITH due AS (
                 SELECT id, due_ns FROM {t} WHERE due_ns <= $1
                 ORDER BY due_ns, id LIMIT $2
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE {t} j SET due_ns = $3, attempts = j.attempts + 1
             FROM due WHERE j.id = due.id
             RETURNING j.id, j.key, j.event, j.attempts, j.recorded_ns, due.due_ns"
        );
        let ctx = "claiming webhook events";
        let rows = self
            .query(&sql, &[&now, &limit_sql(limit), &until], ctx)
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        let mut corrupt = Vec::new();
        for r in &rows {
            let id: i64 = col(r, 0, ctx)?;
            let event: Option<String> = col(r, 2, ctx)?;
            let due: i64 = col(r, 5, ctx)?;
            match journal_event(id, event.as_deref()) {
                Ok(event) => {
                    let attempts: i32 = col(r, 3, ctx)?;
                    let mut e =
                        JournalEntry::new(JournalId::new(id), event, from_ns(col(r, 4, ctx)?));
                    e.key = col(r, 1, ctx)?;
                    e.attempts = u32::try_from(attempts).unwrap_or(0);
                    claimed.push((due, e));
                }
                Err(e) => corrupt.push((id, e)),
            }
        }
        for (id, e) in corrupt {
            tracing::error!(entry = id, error = %e, "messaging-store: a webhook journal entry cannot be read; marked failed");
            self.fail(JournalId::new(id), from_ns(now), &e.to_string())
                .await?;
        }
        // RETURNING has no order: oldest due first, then recording order.
        claimed.sort_by_key(|(due, e)| (*due, e.id));
        Ok(claimed.into_iter().map(|(_, e)| e).collect())
    }

    async fn complete(&self, ids: &[JournalId], now: DateTime<Utc>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = to_ns(now, "completion time")?;
        let ids: Vec<i64> = ids.iter().map(|i| i.get()).collect();
        let sql = format!(
            "UPDATE {} SET due_ns = NULL, event = NULL, ended_ns = $2, error = NULL
             WHERE id = ANY($1) AND due_ns IS NOT NULL",
            self.t("webhook_journal")
        );
        self.query(&sql, &[&ids, &now], "completing webhook events")
            .await
            .map(|_| ())
    }

    async fn retry(&self, id: JournalId, at: DateTime<Utc>, error: &str) -> Result<(), StoreError> {
        let at = to_ns(at, "retry time")?;
        let sql = format!(
            "UPDATE {} SET due_ns = $2, error = $3 WHERE id = $1 AND due_ns IS NOT NULL",
            self.t("webhook_journal")
        );
        self.query(&sql, &[&id.get(), &at, &error], "retrying a webhook event")
            .await
            .map(|_| ())
    }

    async fn fail(&self, id: JournalId, now: DateTime<Utc>, error: &str) -> Result<(), StoreError> {
        let now = to_ns(now, "failure time")?;
        let sql = format!(
            "UPDATE {} SET due_ns = NULL, ended_ns = $2, error = $3
             WHERE id = $1 AND due_ns IS NOT NULL",
            self.t("webhook_journal")
        );
        self.query(&sql, &[&id.get(), &now, &error], "failing a webhook event")
            .await
            .map(|_| ())
    }

    async fn purge(&self, ended_before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let before = to_ns(ended_before, "ended_before")?;
        let t = self.t("webhook_journal");
        let sql = format!(
            "WITH gone AS (
                 DELETE FROM {t} WHERE id IN (
                     SELECT id FROM {t} WHERE ended_ns < $1
                     ORDER BY ended_ns, id LIMIT $2)
                 RETURNING 1
             )
             SELECT count(*) FROM gone"
        );
        let ctx = "purging webhook events";
        let rows = self.query(&sql, &[&before, &limit_sql(limit)], ctx).await?;
        let n: i64 = rows.first().map_or(Ok(0), |r| col(r, 0, ctx))?;
        usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("purged count is {n}")))
    }

    async fn pending(&self) -> Result<usize, StoreError> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE due_ns IS NOT NULL",
            self.t("webhook_journal")
        );
        let ctx = "counting pending webhook events";
        let rows = self.query(&sql, &[], ctx).await?;
        let n: i64 = rows.first().map_or(Ok(0), |r| col(r, 0, ctx))?;
        usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("pending count is {n}")))
    }
}
