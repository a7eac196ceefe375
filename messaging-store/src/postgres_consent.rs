//! [`OptOutStore`] on PostgreSQL (table `opt_outs`, migration 5): the one opt-out record,
//! shared by every instance. Migration 5 moved the governor's old `gov_opt_out` keys into it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_core::consent::OptOutStore;
use messaging_core::{Purpose, StoreError};

use crate::common::{dedup_keys, purpose_scope, to_ns};
use crate::postgres::{PostgresStore, col};

impl PostgresStore {
    async fn state(
        &self,
        keys: &[String],
        purpose: Option<Purpose>,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // One statement for every key; a key twice would make ON CONFLICT touch a row twice.
        let keys = dedup_keys(keys);
        let scope = purpose_scope(purpose);
        let at = to_ns(at, "opt-out time")?;
        // An older statement never replaces a newer one (webhooks arrive out of order).
        let sql = format!(
            "INSERT INTO {} AS o (key, purpose, opted_out, at_ns)
             SELECT k, $2, $3, $4 FROM unnest($1::text[]) AS k
             ON CONFLICT (key, purpose) DO UPDATE
             SET opted_out = excluded.opted_out, at_ns = excluded.at_ns
             WHERE excluded.at_ns >= o.at_ns",
            self.t("opt_outs")
        );
        self.query(
            &sql,
            &[&keys, &scope, &opted_out, &at],
            "recording an opt-out",
        )
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl OptOutStore for PostgresStore {
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
        // The latest statement decides; at the same instant an opt-out wins.
        let sql = format!(
            "SELECT opted_out FROM {} WHERE key = ANY($1) AND purpose IN ('', $2)
             ORDER BY at_ns DESC, opted_out DESC LIMIT 1",
            self.t("opt_outs")
        );
        let ctx = "reading the opt-out record";
        let rows = self
            .query(&sql, &[&keys, &purpose_scope(Some(purpose))], ctx)
            .await?;
        match rows.first() {
            Some(r) => col(r, 0, ctx),
            None => Ok(false),
        }
    }
}
