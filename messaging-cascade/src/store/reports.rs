//! Questions an operator asks, answered by the store: how many cascades are running, which are
//! stuck, how the last hour's cascades ended, and what the sends cost.
//!
//! [`CascadeReports`] is the query API. [`MemoryStore`](super::MemoryStore) answers it by
//! scanning its records; the SQL stores of `messaging-store` keep the facts each answer needs
//! ([`ReportFacts`]) in indexed columns, written in the same transaction as the record. The
//! conformance suite (`conformance::run_reports`, feature `testkit`) checks every store against
//! one scripted scenario.
//!
//! | question | method | counted by |
//! |---|---|---|
//! | cascades running | [`running`](CascadeReports::running) | phase (`ready`, `sending`, `waiting`) and channel |
//! | stuck beyond their deadline | [`stuck`](CascadeReports::stuck) | the oldest first, with a total |
//! | ended in the last hour | [`ended_between`](CascadeReports::ended_between) | outcome and the channel that ended it |
//! | cost by channel and day | [`cost_by_channel_day`](CascadeReports::cost_by_channel_day) | channel, UTC day, currency |
//! | which ones, for a list on a screen | [`list`](CascadeReports::list) | running: the next due first; finished: the latest ended first |
//!
//! [`CascadeReports::report`] asks all four at once and gives an [`OperatorReport`], the JSON
//! that `messaging report` prints.
//!
//! ```
//! use messaging_cascade::store::{CascadeReports, MemoryStore, ReportQuery};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let report = store.report(&ReportQuery::at(chrono::Utc::now())).await?;
//! assert_eq!(report.running.total, 0);
//! assert_eq!(report.stuck.total, 0);
//! assert_eq!(report.ended.total, 0);
//! assert!(report.cost.by_channel_and_day.is_empty());
//! # Ok::<(), messaging_core::StoreError>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::engine::{CascadeRecord, HistoryKind, Outcome, Phase};
use messaging_core::{ChannelId, NotificationId, PolicyId, chrono_dur};

/// Unfinished cascades in one phase, on one channel.
///
/// ```
/// use messaging_cascade::store::RunningCount;
/// let c = RunningCount { phase: "waiting".into(), channel: Some("wa-main".into()), count: 12 };
/// assert_eq!(
///     serde_json::to_string(&c).unwrap(),
///     r#"{"phase":"waiting","channel":"wa-main","count":12}"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunningCount {
    /// [`Phase::name`]: `ready` (a step is to be tried, now or after a deferral), `sending` (an
    /// attempt is being sent) or `waiting` (sent; waiting for evidence until its window ends).
    pub phase: String,
    /// The channel of the current step: the attempt's when `sending` or `waiting`, the one its
    /// `step_started` history entry names when `ready`; `None` before the first step started.
    pub channel: Option<ChannelId>,
    /// How many.
    pub count: u64,
}

/// One cascade that should have moved on and has not.
///
/// An unfinished cascade is **stuck** at `now` when, by more than a grace period, either
///
/// - its **timer is overdue**: the time the store will hand it to an engine (its `wake_at`, or
///   the end of the lease of the engine that claimed it) has passed, so no engine is taking its
///   due work (none is running, or they are far behind); or
/// - it is **past its deadline**: the notification's deadline, or the end of the window it is
///   waiting in, whichever comes first, has passed. The engine ends or advances a cascade at
///   these times, so one still unfinished long after them is claimed again and again without
///   progress (a send that hangs, a store that refuses its update).
///
/// ```
/// use messaging_cascade::store::StuckCascade;
/// let t = |s: i64| chrono::DateTime::from_timestamp(1_900_000_000 + s, 0).unwrap();
/// let s = StuckCascade {
///     notification_id: "appt-1042-reminder".into(),
///     policy: "clinic".into(),
///     step: 1,
///     phase: "waiting".into(),
///     channel: Some("sms".into()),
///     created_at: t(0),
///     due_at: Some(t(3_600)),
///     deadline: Some(t(600)),
///     overdue_since: t(600),
/// };
/// assert_eq!(s.overdue_since, s.deadline.unwrap());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StuckCascade {
    /// The cascade.
    pub notification_id: NotificationId,
    /// Its policy.
    pub policy: PolicyId,
    /// Its current step.
    pub step: usize,
    /// [`Phase::name`]: `ready`, `sending` or `waiting`.
    pub phase: String,
    /// The current step's channel, as in [`RunningCount::channel`].
    pub channel: Option<ChannelId>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When the store hands it to an engine next: its `wake_at`, or the end of a claim's lease.
    pub due_at: Option<DateTime<Utc>>,
    /// The notification's deadline or the end of the window it waits in, whichever is earlier
    /// ([`ReportFacts::deadline`]).
    pub deadline: Option<DateTime<Utc>>,
    /// The earlier of `due_at` and `deadline`: since when it is overdue.
    pub overdue_since: DateTime<Utc>,
}

/// The answer of [`CascadeReports::stuck`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stuck {
    /// How many cascades are stuck.
    pub total: u64,
    /// The longest stuck, by `overdue_since` then notification id, at most the limit asked.
    pub oldest: Vec<StuckCascade>,
}

/// Cascades that ended with one outcome, through one channel.
///
/// ```
/// use messaging_cascade::store::EndedCount;
/// let c = EndedCount { outcome: "delivered".into(), channel: Some("sms".into()), count: 3 };
/// assert_eq!(
///     serde_json::to_string(&c).unwrap(),
///     r#"{"outcome":"delivered","channel":"sms","count":3}"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndedCount {
    /// [`Outcome::name`]: `delivered`, `replied`, `unconfirmed`, `exhausted`, `expired`,
    /// `cancelled`.
    pub outcome: String,
    /// The channel that ended it: the channel id for `delivered` and `unconfirmed`, the kind of
    /// messenger the person replied on for `replied` (`whatsapp`, `telegram`, `max`, `sms`),
    /// `None` for the others.
    pub channel: Option<String>,
    /// How many.
    pub count: u64,
}

/// What the sends on one channel cost on one UTC day, in one currency.
///
/// Each attempt the provider accepted with a cost estimate ([`Attempt::cost`]) counts on the
/// day it was accepted (`sent_at`). A cascade purged with
/// [`purge_finished`](super::CascadeStore::purge_finished) takes its costs with it.
///
/// [`Attempt::cost`]: crate::engine::Attempt::cost
///
/// ```
/// use messaging_cascade::store::DailyCost;
/// let c = DailyCost {
///     channel: "sms".into(),
///     day: chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap(),
///     currency: "RUB".into(),
///     amount: 7.5,
///     sends: 3,
/// };
/// assert_eq!(
///     serde_json::to_string(&c).unwrap(),
///     r#"{"channel":"sms","day":"2030-01-01","currency":"RUB","amount":7.5,"sends":3}"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DailyCost {
    /// The channel.
    pub channel: ChannelId,
    /// The UTC day.
    pub day: NaiveDate,
    /// ISO 4217 code, as the provider gave it.
    pub currency: String,
    /// The sum of the estimates.
    pub amount: f64,
    /// How many sends it covers.
    pub sends: u64,
}

/// The facts about one record that the report queries read. The in-memory store computes them
/// when asked; the SQL stores keep them in columns (`state`, `channel`, `deadline_ns` and the
/// `attempt_costs` table), written with the record.
///
/// ```
/// use messaging_cascade::store::ReportFacts;
/// use messaging_cascade::store::conformance::record;
/// let facts = ReportFacts::of(&record("n1", "+79123456789", None));
/// assert_eq!(facts.state, "ready");
/// assert_eq!(facts.channel, None);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ReportFacts {
    /// [`Phase::name`] while running, [`Outcome::name`] once finished.
    pub state: &'static str,
    /// The current step's channel while running ([`RunningCount::channel`]); the channel that
    /// ended it once finished ([`EndedCount::channel`]).
    pub channel: Option<String>,
    /// While running: the notification's deadline or the end of the window the cascade waits
    /// in, whichever is earlier. `None` once finished.
    pub deadline: Option<DateTime<Utc>>,
    /// Every attempt with a cost estimate.
    pub costs: Vec<AttemptCost>,
}

/// The cost estimate of one attempt, for [`DailyCost`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AttemptCost {
    /// The attempt's index in the record's attempts.
    pub attempt: usize,
    /// Its channel.
    pub channel: ChannelId,
    /// The UTC day it was accepted (`sent_at`, else `started_at`).
    pub day: NaiveDate,
    /// ISO 4217 code.
    pub currency: String,
    /// The estimate.
    pub amount: f64,
}

impl ReportFacts {
    /// The facts of `record`.
    pub fn of(record: &CascadeRecord) -> ReportFacts {
        let (state, channel, deadline) = match &record.phase {
            Phase::Finished(outcome) => (outcome.name(), ended_by(outcome), None),
            phase => {
                let channel = match phase {
                    Phase::Sending { attempt } | Phase::Waiting { attempt, .. } => record
                        .attempts
                        .get(*attempt)
                        .map(|a| a.channel.as_str().to_owned()),
                    _ => record.history.iter().rev().find_map(|h| match &h.kind {
                        HistoryKind::StepStarted { step, channel } if *step == record.step => {
                            Some(channel.as_str().to_owned())
                        }
                        _ => None,
                    }),
                };
                let window_end = match phase {
                    Phase::Waiting { window_end, .. } => Some(*window_end),
                    _ => None,
                };
                let deadline = match (record.notification.deadline, window_end) {
                    (Some(d), Some(w)) => Some(d.min(w)),
                    (d, w) => d.or(w),
                };
                (phase.name(), channel, deadline)
            }
        };
        let costs = record
            .attempts
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let cost = a.cost.as_ref().filter(|c| c.amount.is_finite())?;
                Some(AttemptCost {
                    attempt: i,
                    channel: a.channel.clone(),
                    day: a.sent_at.unwrap_or(a.started_at).date_naive(),
                    currency: cost.currency.clone(),
                    amount: cost.amount,
                })
            })
            .collect();
        ReportFacts {
            state,
            channel,
            deadline,
            costs,
        }
    }
}

/// The channel an outcome names ([`EndedCount::channel`]).
fn ended_by(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Delivered { channel, .. } | Outcome::Unconfirmed { channel, .. } => {
            Some(channel.as_str().to_owned())
        }
        Outcome::Replied { channel } => Some(channel.as_str().to_owned()),
        _ => None,
    }
}

/// What [`CascadeReports::report`] asks.
///
/// ```
/// use std::time::Duration;
/// use messaging_cascade::store::ReportQuery;
/// let now = chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap();
/// let q = ReportQuery::at(now).ended_since(Duration::from_secs(24 * 3600));
/// assert_eq!(q.stuck_grace, Duration::from_secs(300));
/// assert_eq!(q.cost_last_day, now.date_naive());
/// assert_eq!((q.cost_last_day - q.cost_first_day).num_days(), 6);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ReportQuery {
    /// The time the report is for (`stuck` and the end of `ended`).
    pub now: DateTime<Utc>,
    /// `ended` counts cascades that ended in `[now - ended_since, now)`. Default one hour.
    pub ended_since: Duration,
    /// How far past its time a cascade must be to count as stuck. Default five minutes.
    pub stuck_grace: Duration,
    /// How many stuck cascades to list (all are counted). Default 20.
    pub stuck_limit: usize,
    /// The first UTC day of `cost`. Default: six days before `now`'s.
    pub cost_first_day: NaiveDate,
    /// The last UTC day of `cost`, included. Default: `now`'s.
    pub cost_last_day: NaiveDate,
}

impl ReportQuery {
    /// The defaults at `now`: cascades ended in the last hour, stuck for more than five minutes
    /// (the first 20 listed), cost of the last seven days.
    pub fn at(now: DateTime<Utc>) -> Self {
        let today = now.date_naive();
        ReportQuery {
            now,
            ended_since: Duration::from_secs(3_600),
            stuck_grace: Duration::from_secs(300),
            stuck_limit: 20,
            cost_first_day: today
                .checked_sub_days(chrono::Days::new(6))
                .unwrap_or(today),
            cost_last_day: today,
        }
    }
    /// Sets how far back `ended` looks.
    pub fn ended_since(mut self, d: Duration) -> Self {
        self.ended_since = d;
        self
    }
    /// Sets the grace period of `stuck`.
    pub fn stuck_grace(mut self, d: Duration) -> Self {
        self.stuck_grace = d;
        self
    }
    /// Sets how many stuck cascades are listed.
    pub fn stuck_limit(mut self, n: usize) -> Self {
        self.stuck_limit = n;
        self
    }
    /// Sets the days of `cost`, both included.
    pub fn cost_days(mut self, first: NaiveDate, last: NaiveDate) -> Self {
        self.cost_first_day = first;
        self.cost_last_day = last;
        self
    }
}

/// Everything an operator asks at once: the answer of [`CascadeReports::report`], printed by
/// `messaging report`.
///
/// ```json
/// {
///   "at": "2030-01-01T10:00:00Z",
///   "running": {"total": 2, "by_phase_and_channel": [{"phase": "waiting", "channel": "wa", "count": 2}]},
///   "stuck": {"grace_secs": 300, "total": 1, "oldest": [{"notification_id": "n4", "...": "..."}]},
///   "ended": {"from": "2030-01-01T09:00:00Z", "to": "2030-01-01T10:00:00Z", "total": 2,
///             "by_outcome_and_channel": [{"outcome": "delivered", "channel": "sms", "count": 2}]},
///   "cost": {"first_day": "2029-12-26", "last_day": "2030-01-01",
///            "by_channel_and_day": [{"channel": "sms", "day": "2030-01-01", "currency": "RUB", "amount": 5.0, "sends": 2}],
///            "total_by_currency": [{"currency": "RUB", "amount": 5.0, "sends": 2}]}
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorReport {
    /// The time the report is for.
    pub at: DateTime<Utc>,
    /// Cascades running.
    pub running: RunningReport,
    /// Cascades stuck.
    pub stuck: StuckReport,
    /// Cascades that ended in the period.
    pub ended: EndedReport,
    /// What the sends cost.
    pub cost: CostReport,
}

/// [`OperatorReport::running`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningReport {
    /// Every unfinished cascade.
    pub total: u64,
    /// The same, by phase and channel.
    pub by_phase_and_channel: Vec<RunningCount>,
}

/// [`OperatorReport::stuck`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StuckReport {
    /// The grace period, in seconds.
    pub grace_secs: u64,
    /// How many are stuck.
    pub total: u64,
    /// The longest stuck.
    pub oldest: Vec<StuckCascade>,
}

/// [`OperatorReport::ended`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedReport {
    /// The start of the period, included.
    pub from: DateTime<Utc>,
    /// Its end, excluded.
    pub to: DateTime<Utc>,
    /// Every cascade that ended in it.
    pub total: u64,
    /// The same, by outcome and channel.
    pub by_outcome_and_channel: Vec<EndedCount>,
}

/// [`OperatorReport::cost`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// The first UTC day.
    pub first_day: NaiveDate,
    /// The last UTC day, included.
    pub last_day: NaiveDate,
    /// By channel, day and currency.
    pub by_channel_and_day: Vec<DailyCost>,
    /// The sum per currency.
    pub total_by_currency: Vec<CurrencyTotal>,
}

/// The cost of all sends in one currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurrencyTotal {
    /// ISO 4217 code.
    pub currency: String,
    /// The sum.
    pub amount: f64,
    /// How many sends.
    pub sends: u64,
}

/// Which cascades [`CascadeReports::list`] returns: running or finished ones, optionally in one
/// state and on one channel, at most `limit`.
///
/// Running ones come the next due first (a cascade with no timer last); finished ones the
/// latest ended first; ties by notification id. `state` is a [`Phase::name`] while running
/// and an [`Outcome::name`] once finished; `channel` is the current step's while running and
/// the one that ended it once finished, as in [`RunningCount`] and [`EndedCount`].
///
/// ```
/// use messaging_cascade::store::ListQuery;
/// let q = ListQuery::finished(50).state("delivered").channel("wa-main");
/// assert!(q.finished);
/// assert_eq!(q.state.as_deref(), Some("delivered"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQuery {
    /// Finished cascades (true) or running ones.
    pub finished: bool,
    /// Only cascades in this state.
    pub state: Option<String>,
    /// Only cascades on this channel.
    pub channel: Option<String>,
    /// At most this many.
    pub limit: usize,
}

impl ListQuery {
    /// Running cascades, the next due first.
    pub fn running(limit: usize) -> Self {
        ListQuery {
            finished: false,
            state: None,
            channel: None,
            limit,
        }
    }

    /// Finished cascades, the latest ended first.
    pub fn finished(limit: usize) -> Self {
        ListQuery {
            finished: true,
            ..ListQuery::running(limit)
        }
    }

    /// Only cascades in `state` (`waiting`, `delivered`, ...).
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// Only cascades on `channel`.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Whether a cascade with these facts belongs in the list (for stores that filter in
    /// memory).
    pub fn matches(&self, facts: &ReportFacts, finished: bool) -> bool {
        finished == self.finished
            && self.state.as_deref().is_none_or(|s| s == facts.state)
            && self
                .channel
                .as_deref()
                .is_none_or(|c| facts.channel.as_deref() == Some(c))
    }
}

/// The store's answers to an operator's questions. Implemented by
/// [`MemoryStore`](super::MemoryStore) and the SQL stores of `messaging-store`; checked by the
/// conformance suite's `run_reports`.
///
/// Every list comes in a stable order: `running` by phase then channel, `ended_between` by
/// outcome then channel, `cost_by_channel_day` by channel, day, currency (`None` before any
/// channel, strings by their bytes).
///
/// ```
/// use std::time::Duration;
/// use messaging_cascade::store::conformance::{record, t};
/// use messaging_cascade::store::{CascadeReports, CascadeStore, MemoryStore, RunningCount};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// store.insert(&record("n1", "+79123456789", Some(t(10)))).await?;
/// assert_eq!(
///     store.running().await?,
///     [RunningCount { phase: "ready".into(), channel: None, count: 1 }]
/// );
/// // Nobody took its due work for ten minutes.
/// let stuck = store.stuck(t(610), Duration::from_secs(300), 10).await?;
/// assert_eq!(stuck.total, 1);
/// assert_eq!(stuck.oldest[0].overdue_since, t(10));
/// # Ok::<(), messaging_core::StoreError>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait CascadeReports: Send + Sync + fmt::Debug + 'static {
    /// Unfinished cascades, counted by phase and channel.
    async fn running(&self) -> Result<Vec<RunningCount>, StoreError>;

    /// Unfinished cascades stuck at `now` by more than `grace` (see [`StuckCascade`]): how
    /// many, and the `limit` longest stuck.
    async fn stuck(
        &self,
        now: DateTime<Utc>,
        grace: Duration,
        limit: usize,
    ) -> Result<Stuck, StoreError>;

    /// Cascades that ended in `[from, to)` (by [`CascadeRecord::ended_at`]), counted by outcome
    /// and the channel that ended them.
    async fn ended_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EndedCount>, StoreError>;

    /// What the sends cost on the UTC days `first..=last`, by channel, day and currency.
    async fn cost_by_channel_day(
        &self,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Vec<DailyCost>, StoreError>;

    /// The ids of the cascades `query` asks for, in its order (see [`ListQuery`]): what a
    /// screen of cascades shows, each then read with [`CascadeStore::get`](super::CascadeStore::get).
    /// The default answers [`StoreError::Unsupported`], so stores written before this method
    /// existed still compile.
    async fn list(&self, query: &ListQuery) -> Result<Vec<NotificationId>, StoreError> {
        let _ = query;
        Err(StoreError::Unsupported("list"))
    }

    /// All four answers for `query`.
    async fn report(&self, query: &ReportQuery) -> Result<OperatorReport, StoreError> {
        let running = self.running().await?;
        let stuck = self
            .stuck(query.now, query.stuck_grace, query.stuck_limit)
            .await?;
        let from = earlier(query.now, query.ended_since);
        let ended = self.ended_between(from, query.now).await?;
        let cost = self
            .cost_by_channel_day(query.cost_first_day, query.cost_last_day)
            .await?;
        let mut totals: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
        for c in &cost {
            let t = totals.entry(&c.currency).or_default();
            t.0 += c.amount;
            t.1 += c.sends;
        }
        let total_by_currency = totals
            .into_iter()
            .map(|(currency, (amount, sends))| CurrencyTotal {
                currency: currency.to_owned(),
                amount,
                sends,
            })
            .collect();
        Ok(OperatorReport {
            at: query.now,
            running: RunningReport {
                total: running.iter().map(|r| r.count).sum(),
                by_phase_and_channel: running,
            },
            stuck: StuckReport {
                grace_secs: query.stuck_grace.as_secs(),
                total: stuck.total,
                oldest: stuck.oldest,
            },
            ended: EndedReport {
                from,
                to: query.now,
                total: ended.iter().map(|e| e.count).sum(),
                by_outcome_and_channel: ended,
            },
            cost: CostReport {
                first_day: query.cost_first_day,
                last_day: query.cost_last_day,
                by_channel_and_day: cost,
                total_by_currency,
            },
        })
    }
}

/// Counts of `(phase, channel)` keys, in the trait's order.
pub(crate) fn running_counts<'a>(
    keys: impl Iterator<Item = (&'a str, Option<String>)>,
) -> Vec<RunningCount> {
    let mut m: BTreeMap<(&str, Option<String>), u64> = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_default() += 1;
    }
    m.into_iter()
        .map(|((phase, channel), count)| RunningCount {
            phase: phase.to_owned(),
            channel: channel.map(ChannelId::from),
            count,
        })
        .collect()
}

/// Counts of `(outcome, channel)` keys, in the trait's order.
pub(crate) fn ended_counts<'a>(
    keys: impl Iterator<Item = (&'a str, Option<String>)>,
) -> Vec<EndedCount> {
    let mut m: BTreeMap<(&str, Option<String>), u64> = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_default() += 1;
    }
    m.into_iter()
        .map(|((outcome, channel), count)| EndedCount {
            outcome: outcome.to_owned(),
            channel,
            count,
        })
        .collect()
}

/// Sums of costs by `(channel, day, currency)`, in the trait's order.
pub(crate) fn daily_costs<'a>(costs: impl Iterator<Item = &'a AttemptCost>) -> Vec<DailyCost> {
    let mut m: BTreeMap<(&str, NaiveDate, &str), (f64, u64)> = BTreeMap::new();
    for c in costs {
        let e = m
            .entry((c.channel.as_str(), c.day, c.currency.as_str()))
            .or_default();
        e.0 += c.amount;
        e.1 += 1;
    }
    m.into_iter()
        .map(|((channel, day, currency), (amount, sends))| DailyCost {
            channel: ChannelId::new(channel),
            day,
            currency: currency.to_owned(),
            amount,
            sends,
        })
        .collect()
}

impl StuckCascade {
    /// The entry for `record`, whose timer in the store is `due` (its `wake_at`, or the end of
    /// a claim's lease), if the cascade is stuck at `now` by more than `grace`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use messaging_cascade::store::StuckCascade;
    /// use messaging_cascade::store::conformance::{record, t};
    ///
    /// let rec = record("n1", "+79123456789", Some(t(10)));
    /// let grace = Duration::from_secs(60);
    /// assert_eq!(StuckCascade::of(&rec, rec.wake_at, t(70), grace), None);
    /// let stuck = StuckCascade::of(&rec, rec.wake_at, t(71), grace).unwrap();
    /// assert_eq!(stuck.overdue_since, t(10));
    /// ```
    pub fn of(
        record: &CascadeRecord,
        due: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> Option<StuckCascade> {
        if record.is_finished() {
            return None;
        }
        let facts = ReportFacts::of(record);
        let since = match (due, facts.deadline) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        (since < Self::cutoff(now, grace)).then(|| StuckCascade {
            notification_id: record.id().clone(),
            policy: record.policy.clone(),
            step: record.step,
            phase: facts.state.to_owned(),
            channel: facts.channel.map(ChannelId::from),
            created_at: record.created_at,
            due_at: due,
            deadline: facts.deadline,
            overdue_since: since,
        })
    }

    /// `now - grace`: a cascade is stuck when its timer or its deadline is before this.
    pub fn cutoff(now: DateTime<Utc>, grace: Duration) -> DateTime<Utc> {
        earlier(now, grace)
    }
}

/// `t - d`, saturating at the earliest time.
fn earlier(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(chrono_dur(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
