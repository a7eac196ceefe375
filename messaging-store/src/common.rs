//! What both SQL stores share: time encoding and the columns derived from a record.

use std::time::Duration;

use chrono::{DateTime, Utc};
use messaging_core::NotificationId;
use messaging_core::engine::CascadeRecord;
use messaging_core::store::StoreError;

/// Unix nanoseconds: the exact key the in-memory store orders timers by. Covers 1677..2262.
pub(crate) fn to_ns(t: DateTime<Utc>, what: &str) -> Result<i64, StoreError> {
    t.timestamp_nanos_opt().ok_or_else(|| {
        StoreError::Backend(format!(
            "{what} {t} is outside the range a store can index (years 1677 to 2262)"
        ))
    })
}

/// The inverse of [`to_ns`].
pub(crate) fn from_ns(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// `now + lease` in nanoseconds, saturating.
pub(crate) fn lease_end_ns(now: i64, lease: Duration) -> i64 {
    now.saturating_add(i64::try_from(lease.as_nanos()).unwrap_or(i64::MAX))
}

/// A version as stored (SQL has no unsigned 64-bit integers).
pub(crate) fn version_to_sql(v: u64, id: &NotificationId) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Backend(format!("cascade {id}: version {v} overflows")))
}

/// A version as read back.
pub(crate) fn version_from_sql(v: i64, id: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("cascade {id}: negative version {v}")))
}

/// A record decoded from its JSON column; the `version` column is authoritative.
pub(crate) fn decode(id: &str, json: &str, version: i64) -> Result<CascadeRecord, StoreError> {
    let mut rec: CascadeRecord = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("cascade {id}: {e}")))?;
    rec.version = version_from_sql(version, id)?;
    Ok(rec)
}

/// Everything a write stores for one record, computed before the write.
#[derive(Debug)]
pub(crate) struct Row {
    /// The notification id.
    pub id: String,
    /// The version the caller read (the CAS operand); 0 for inserts.
    pub expected: i64,
    /// Whether the record has ended.
    pub finished: bool,
    /// Its timer.
    pub wake_ns: Option<i64>,
    /// The record as JSON.
    pub json: String,
    /// Reply keys (empty once finished).
    pub reply_keys: Vec<String>,
    /// Provider message ids with their attempt index, first occurrence only.
    pub messages: Vec<(String, i64)>,
}

impl Row {
    /// The columns for `rec`.
    pub(crate) fn of(rec: &CascadeRecord) -> Result<Row, StoreError> {
        let id = rec.id();
        let json = serde_json::to_string(rec)
            .map_err(|e| StoreError::Backend(format!("cascade {id}: cannot encode: {e}")))?;
        let wake_ns = rec.wake_at.map(|w| to_ns(w, "wake_at")).transpose()?;
        let mut messages: Vec<(String, i64)> = Vec::new();
        for (pmid, attempt) in rec.provider_message_ids() {
            if !messages.iter().any(|(p, _)| p == pmid.as_str()) {
                let attempt = i64::try_from(attempt).map_err(StoreError::backend)?;
                messages.push((pmid.as_str().to_owned(), attempt));
            }
        }
        Ok(Row {
            id: id.as_str().to_owned(),
            expected: version_to_sql(rec.version, id)?,
            finished: rec.is_finished(),
            wake_ns,
            json,
            reply_keys: rec.reply_keys(),
            messages,
        })
    }
}
