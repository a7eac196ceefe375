//! What both SQL stores share: time encoding and the columns derived from a record.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use messaging_cascade::engine::CascadeRecord;
use messaging_cascade::store::ReportFacts;
use messaging_conversations::identity::Link;
use messaging_conversations::inbox::InboxMessage;
use messaging_core::StoreError;
use messaging_core::{Address, NotificationId, Purpose};

/// Unix nanoseconds: the exact key the in-memory store orders timers by. Covers 1677..2262.
pub(crate) fn to_ns(t: DateTime<Utc>, what: &str) -> Result<i64, StoreError> {
    t.timestamp_nanos_opt().ok_or_else(|| {
        StoreError::Backend(format!(
            "{what} {t} is outside the range a store can index (years 1677 to 2262)"
        ))
    })
}

/// Unix nanoseconds, clamped to what a `BIGINT` holds: for columns that are compared, never
/// used as keys (a deadline in the year 3000 is simply far away), so that a record the store
/// could always keep is not refused for them.
pub(crate) fn saturating_ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() > 0 {
        i64::MAX
    } else {
        i64::MIN
    })
}

/// The `purpose` column of `opt_outs`: `''` for every purpose, else the purpose's name.
pub(crate) fn purpose_scope(purpose: Option<Purpose>) -> String {
    purpose.map_or_else(String::new, |p| p.as_str().to_owned())
}

/// Keys without repeats, in a stable order.
pub(crate) fn dedup_keys(keys: &[String]) -> Vec<String> {
    let mut keys = keys.to_vec();
    keys.sort();
    keys.dedup();
    keys
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
    /// When it ended ([`CascadeRecord::ended_at`]), for purging.
    pub ended_ns: Option<i64>,
    /// Its timer.
    pub wake_ns: Option<i64>,
    /// The record as JSON.
    pub json: String,
    /// The record as SQLite stores it (`sqlite::pack`); empty until the SQLite store packs it.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub packed: Vec<u8>,
    /// Reply keys (empty once finished).
    pub reply_keys: Vec<String>,
    /// Provider message ids with their attempt index, first occurrence only.
    pub messages: Vec<(String, i64)>,
    /// The report columns: `state`, `channel`, `deadline_ns`, and the `attempt_costs` rows.
    pub report: ReportRow,
}

/// The columns the report queries read ([`ReportFacts`]).
#[derive(Debug)]
pub(crate) struct ReportRow {
    /// The phase's name while running, the outcome's once finished.
    pub state: &'static str,
    /// The current step's channel, or the channel that ended the cascade.
    pub channel: Option<String>,
    /// While running: the notification's deadline or the end of the window waited in.
    pub deadline_ns: Option<i64>,
    /// Attempts with a cost.
    pub costs: Vec<CostRow>,
}

/// One row of `attempt_costs`.
#[derive(Debug)]
pub(crate) struct CostRow {
    /// The attempt's index.
    pub attempt: i64,
    /// Its channel.
    pub channel: String,
    /// The UTC day it was accepted.
    pub day: NaiveDate,
    /// ISO 4217 code.
    pub currency: String,
    /// The estimate.
    pub amount: f64,
}

impl ReportRow {
    /// The report columns of `rec`.
    pub(crate) fn of(rec: &CascadeRecord) -> Result<ReportRow, StoreError> {
        let facts = ReportFacts::of(rec);
        let costs = facts
            .costs
            .into_iter()
            .map(|c| {
                Ok(CostRow {
                    attempt: i64::try_from(c.attempt).map_err(StoreError::backend)?,
                    channel: c.channel.as_str().to_owned(),
                    day: c.day,
                    currency: c.currency,
                    amount: c.amount,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(ReportRow {
            state: facts.state,
            channel: facts.channel,
            deadline_ns: facts.deadline.map(saturating_ns),
            costs,
        })
    }
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
            ended_ns: rec.ended_at().map(|t| to_ns(t, "ended_at")).transpose()?,
            wake_ns,
            json,
            packed: Vec::new(),
            reply_keys: rec.reply_keys(),
            messages,
            report: ReportRow::of(rec)?,
        })
    }
}

/// The columns of an identity link.
#[derive(Debug)]
pub(crate) struct LinkRow {
    /// `Address::key`, the primary key.
    pub key: String,
    /// The contact id.
    pub contact: String,
    /// Digits of the link's phone, if it has one.
    pub phone_digits: Option<String>,
    /// Digits of a phone or WhatsApp address (what `Link::matches_phone` compares).
    pub address_digits: Option<String>,
    /// When it was linked, for "oldest first".
    pub linked_at_ns: i64,
    /// The link as JSON.
    pub json: String,
}

impl LinkRow {
    /// The columns for `link`.
    pub(crate) fn of(link: &Link) -> Result<LinkRow, StoreError> {
        let key = link.address.key();
        let json = serde_json::to_string(link)
            .map_err(|e| StoreError::Backend(format!("link {key}: cannot encode: {e}")))?;
        let address_digits = match &link.address {
            Address::Phone(p) => Some(p.digits().to_owned()),
            Address::WhatsApp(w) => Some(w.trim().trim_start_matches('+').to_owned()),
            _ => None,
        };
        Ok(LinkRow {
            contact: link.contact.as_str().to_owned(),
            phone_digits: link.phone.as_ref().map(|p| p.digits().to_owned()),
            address_digits,
            linked_at_ns: to_ns(link.linked_at, "linked_at")?,
            json,
            key,
        })
    }
}

/// A link decoded from its JSON column.
pub(crate) fn decode_link(json: &str) -> Result<Link, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("identity link: {e}")))
}

/// The order of `MemoryIdentityStore`: by `linked_at`, then address key.
pub(crate) fn oldest_first(mut v: Vec<Link>) -> Vec<Link> {
    v.sort_by(|a, b| {
        a.linked_at
            .cmp(&b.linked_at)
            .then_with(|| a.address.key().cmp(&b.address.key()))
    });
    v
}

/// An inbox message as stored (JSON).
pub(crate) fn encode_inbox_message(m: &InboxMessage) -> Result<String, StoreError> {
    serde_json::to_string(m)
        .map_err(|e| StoreError::Backend(format!("inbox message {}: cannot encode: {e}", m.id)))
}

/// The inverse of [`encode_inbox_message`].
pub(crate) fn decode_inbox_message(json: &str) -> Result<InboxMessage, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("inbox message: {e}")))
}
