//! [`OptOutStore`] on SQLite (table `opt_outs`, migration 6): the one opt-out record, kept
//! across restarts. Migration 6 moved the governor's old `gov_opt_out` keys into it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_core::consent::OptOutStore;
use messaging_core::{Purpose, StoreError};
use rusqlite::params;

use crate::common::{dedup_keys, purpose_scope, to_ns};
use crate::sqlite::{SqliteStore, sql_err};

impl SqliteStore {
    async fn state(
        &self,
        keys: &[String],
        purpose: Option<Purpose>,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let keys = dedup_keys(keys);
        let scope = purpose_scope(purpose);
        let at = to_ns(at, "opt-out time")?;
        self.run(move |c| {
            // An older statement never replaces a newer one (webhooks arrive out of order).
            let mut up = c.prepare_cached(
                "INSERT INTO opt_outs (key, purpose, opted_out, at_ns) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key, purpose) DO UPDATE
                 SET opted_out = excluded.opted_out, at_ns = excluded.at_ns
                 WHERE excluded.at_ns >= opt_outs.at_ns",
            )?;
            for k in &keys {
                up.execute(params![k, scope, opted_out, at])?;
            }
            Ok(Ok(()))
        })
        .await
    }
}

#[async_trait]
impl OptOutStore for SqliteStore {
    async fn opt_out(
        &self,
        keys: &[String],
        purpose: Option<Purpose>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.state(keys, purpose, true, at).await
    }

    async fn opt_in(
        &self,
        keys: &[String],
        purpose: Option<Purpose>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.state(keys, purpose, false, at).await
    }

    async fn is_opted_out(&self, keys: &[String], purpose: Purpose) -> Result<bool, StoreError> {
        let keys = keys.to_vec();
        let scope = purpose_scope(Some(purpose));
        self.read(move |c| {
            let e = sql_err("reading the opt-out record");
            let mut q = c
                .prepare_cached(
                    "SELECT at_ns, opted_out FROM opt_outs
                     WHERE key = ?1 AND purpose IN ('', ?2)",
                )
                .map_err(&e)?;
            // The latest statement decides; at the same instant an opt-out wins.
            let mut decisive: Option<(i64, bool)> = None;
            for k in &keys {
                let rows = q
                    .query_map(params![k, scope], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(&e)?;
                for row in rows {
                    let row = row.map_err(&e)?;
                    decisive = decisive.max(Some(row));
                }
            }
            Ok(decisive.is_some_and(|(_, out)| out))
        })
        .await
    }
}
