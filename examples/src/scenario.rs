//! Scenarios: a population of patients, four simulated channels with latency, failures and
//! outage timelines, replayed through the cascade engine in virtual time.
//!
//! # Scenario file format (JSON)
//!
//! ```json
//! {
//!   "name": "whatsapp-outage",
//!   "notifications": 10000,
//!   "submit_over_secs": 14400,
//!   "horizon_secs": 172800,
//!   "seed": 1,
//!   "population": { "telegram_share": 0.6, "max_share": 0.5,
//!                   "whatsapp_unreachable_share": 0.05, "whatsapp_silent_share": 0.03 },
//!   "channels": {
//!     "whatsapp": { "latency": {"type": "log_normal", "median_secs": 15, "sigma": 0.8},
//!                   "cost_per_message": 0.9 },
//!     "telegram": { "latency": {"type": "fixed", "secs": 1} },
//!     "max": { "latency": {"type": "fixed", "secs": 1} },
//!     "sms": { "latency": {"type": "log_normal", "median_secs": 8, "sigma": 0.5},
//!              "cost_per_message": 4.5 }
//!   },
//!   "outages": [ { "channel": "whatsapp", "start_secs": 1800, "end_secs": 12600, "mode": "silent" } ]
//! }
//! ```
//!
//! - `notifications` reminders are submitted evenly over `submit_over_secs`, then the run goes on
//!   until `horizon_secs` after the start (virtual time; it takes seconds of real time).
//! - `population`: the share of patients with a Telegram chat; of the others, the share with a Max
//!   chat; the share not on WhatsApp (the send fails at once) and the share who never get
//!   WhatsApp messages delivered (phone off, app removed). Everyone has a phone for SMS.
//! - `channels.*` is a [`SimBehavior`]: `latency` (`fixed` with `secs`, `uniform` with
//!   `min_secs`/`max_secs`, `log_normal` with `median_secs`/`sigma`), `delivery_rate`,
//!   `error_rate`, `error_kind` (`temporary`, `unreachable`, `rate_limited`, `channel_down`, ...),
//!   `cost_per_message`. Every field has a default.
//! - `outages`: `channel` (`whatsapp`, `telegram`, `max`, `sms`), start and end in seconds from
//!   the start, `mode`: `"silent"` (accepts, never delivers), `"refuse"` (5xx errors) or
//!   `{"slow": {"extra_secs": 3600}}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use messaging::engine::{AttemptState, HistoryKind};
use messaging::store::CascadeStore;
use messaging::testkit::{Outage, OutageMode, SimBehavior, SimulatedChannel, Simulation};
use messaging::*;
use serde::{Deserialize, Serialize};

/// The channel ids every scenario uses, in cascade order.
pub const CHANNELS: [(&str, ChannelKind); 4] = [
    ("whatsapp", ChannelKind::WhatsApp),
    ("telegram", ChannelKind::Telegram),
    ("max", ChannelKind::Max),
    ("sms", ChannelKind::Sms),
];

/// Who the patients are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Population {
    /// Share of patients with a Telegram chat with the clinic's bot.
    pub telegram_share: f64,
    /// Of those without Telegram, the share with a Max chat.
    pub max_share: f64,
    /// Share of patients not on WhatsApp.
    pub whatsapp_unreachable_share: f64,
    /// Share of patients whose WhatsApp messages are never delivered.
    pub whatsapp_silent_share: f64,
}

impl Default for Population {
    fn default() -> Self {
        Population {
            telegram_share: 0.6,
            max_share: 0.5,
            whatsapp_unreachable_share: 0.05,
            whatsapp_silent_share: 0.03,
        }
    }
}

/// An outage of one channel, relative to the start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutageSpec {
    /// `whatsapp`, `telegram`, `max` or `sms`.
    pub channel: String,
    /// Seconds after the start.
    pub start_secs: u64,
    /// Seconds after the start.
    pub end_secs: u64,
    /// What the channel does meanwhile.
    pub mode: OutageMode,
}

/// The four channels' behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Channels {
    /// WhatsApp.
    pub whatsapp: SimBehavior,
    /// Telegram.
    pub telegram: SimBehavior,
    /// Max.
    pub max: SimBehavior,
    /// SMS.
    pub sms: SimBehavior,
}

impl Default for Channels {
    fn default() -> Self {
        use messaging::testkit::Latency;
        Channels {
            whatsapp: SimBehavior {
                latency: Latency::LogNormal {
                    median_secs: 15.0,
                    sigma: 0.8,
                },
                cost_per_message: 0.9,
                ..SimBehavior::default()
            },
            telegram: SimBehavior {
                latency: Latency::Fixed { secs: 1.0 },
                ..SimBehavior::default()
            },
            max: SimBehavior {
                latency: Latency::Fixed { secs: 1.0 },
                ..SimBehavior::default()
            },
            sms: SimBehavior {
                latency: Latency::LogNormal {
                    median_secs: 8.0,
                    sigma: 0.5,
                },
                cost_per_message: 4.5,
                ..SimBehavior::default()
            },
        }
    }
}

/// A scenario to replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scenario {
    /// A name for reports.
    pub name: String,
    /// How many reminders.
    pub notifications: usize,
    /// Over how long they are submitted (evenly).
    pub submit_over_secs: u64,
    /// How long the run lasts, from the start.
    pub horizon_secs: u64,
    /// Seed of the channels' randomness.
    pub seed: u64,
    /// Who the patients are.
    pub population: Population,
    /// How the channels behave.
    pub channels: Channels,
    /// Outage timelines.
    pub outages: Vec<OutageSpec>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "healthy".into(),
            notifications: 10_000,
            submit_over_secs: 4 * 3600,
            horizon_secs: 48 * 3600,
            seed: 1,
            population: Population::default(),
            channels: Channels::default(),
            outages: Vec::new(),
        }
    }
}

impl Scenario {
    /// A built-in scenario by name: `healthy`, or `whatsapp-outage` (10,000 reminders over four
    /// hours; WhatsApp accepts but stops delivering for three hours, from 30 minutes in).
    pub fn builtin(name: &str) -> Option<Scenario> {
        match name {
            "healthy" => Some(Scenario::default()),
            "whatsapp-outage" => Some(Scenario {
                name: "whatsapp-outage".into(),
                outages: vec![OutageSpec {
                    channel: "whatsapp".into(),
                    start_secs: 1800,
                    end_secs: 1800 + 3 * 3600,
                    mode: OutageMode::Silent,
                }],
                ..Scenario::default()
            }),
            _ => None,
        }
    }

    /// Names of the built-in scenarios.
    pub const BUILTIN: [&'static str; 2] = ["healthy", "whatsapp-outage"];
}

/// Fixed windows without channel health, or channel health on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    /// Fixed 60-minute windows, no channel health: what common cascade services do.
    Fixed,
    /// Channel health routes around slow channels.
    Adaptive,
}

/// Per-channel figures of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChannelFigures {
    /// Sends attempted.
    pub sends: u64,
    /// Cascades this channel delivered.
    pub delivered: u64,
    /// Sends that failed.
    pub failed: u64,
    /// Estimated cost.
    pub cost: f64,
}

/// The result of a run (`messaging simulate` prints it as JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// `fixed` or `adaptive`.
    pub policy: PolicyMode,
    /// Reminders submitted.
    pub notifications: usize,
    /// Reminders delivered (proof from a channel).
    pub delivered: usize,
    /// Median time from submit to delivery, seconds.
    pub p50_time_to_delivery_s: f64,
    /// 90th percentile time to delivery, seconds.
    pub p90_time_to_delivery_s: f64,
    /// Estimated total cost.
    pub cost_total: f64,
    /// Figures per channel id.
    pub by_channel: BTreeMap<String, ChannelFigures>,
    /// How many cascades ended each way.
    pub outcomes: BTreeMap<String, usize>,
}

fn to_cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

fn at(secs: u64) -> DateTime<Utc> {
    start() + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2))
}

/// The virtual start: 09:00 Moscow time on a Monday.
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A patient's phone (valid Russian mobile numbers).
pub fn patient_phone(i: usize) -> Result<Phone, PhoneError> {
    Phone::parse(&format!("+7912{:07}", i % 10_000_000))
}

/// Stable per-patient draw in [0, 1), so populations do not depend on the channels' randomness.
fn draw(i: usize, salt: u64) -> f64 {
    let mut h = (i as u64) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

const NAMES: [&str; 8] = [
    "Анна",
    "Борис",
    "Вера",
    "Глеб",
    "Дарья",
    "Егор",
    "Жанна",
    "Илья",
];

/// Patient `i` of a population.
pub fn patient(i: usize, p: &Population) -> Result<Recipient, PhoneError> {
    let mut r = Recipient::default().name(NAMES[i % NAMES.len()]);
    r.contact_id = Some(ContactId::new(format!("patient-{i:05}")));
    r.phone = Some(patient_phone(i)?);
    if draw(i, 1) < p.telegram_share {
        r = r.address(Address::Telegram(100_000 + i as i64));
    } else if draw(i, 2) < p.max_share {
        r = r.address(Address::MaxUser(500_000 + i as i64));
    }
    Ok(r)
}

/// The simulated channels of a scenario, on `clock`.
pub fn channels(s: &Scenario, clock: &ManualClock) -> Result<Vec<Arc<SimulatedChannel>>, String> {
    let mut behaviors = [
        s.channels.whatsapp.clone(),
        s.channels.telegram.clone(),
        s.channels.max.clone(),
        s.channels.sms.clone(),
    ];
    for o in &s.outages {
        let idx = CHANNELS
            .iter()
            .position(|(id, _)| *id == o.channel)
            .ok_or_else(|| format!("outage on unknown channel {:?}", o.channel))?;
        behaviors[idx].outages.push(Outage {
            start: at(o.start_secs),
            end: at(o.end_secs),
            mode: o.mode,
        });
    }
    for i in 0..s.notifications {
        let key = Address::Phone(patient_phone(i).map_err(|e| e.to_string())?).key();
        if draw(i, 3) < s.population.whatsapp_unreachable_share {
            behaviors[0].unreachable.insert(key);
        } else if draw(i, 4) < s.population.whatsapp_silent_share {
            behaviors[0].silent.insert(key);
        }
    }
    Ok(CHANNELS
        .iter()
        .zip(behaviors)
        .enumerate()
        .map(|(n, ((id, kind), b))| {
            Arc::new(
                SimulatedChannel::new(*id, *kind, clock.clone(), s.seed.wrapping_add(n as u64))
                    .with_behavior(b),
            )
        })
        .collect())
}

/// One patient's line of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatientRow {
    /// The notification.
    pub notification_id: String,
    /// How the cascade ended (`delivered`, `unconfirmed`, ...).
    pub outcome: String,
    /// The channel that delivered, if one did.
    pub delivered_by: Option<String>,
    /// Seconds from submit to delivery.
    pub time_to_delivery_s: Option<f64>,
    /// Sends made for this notification.
    pub attempts: usize,
}

/// A report and the per-patient lines behind it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    /// The totals.
    pub report: Report,
    /// One line per notification, in submit order.
    pub rows: Vec<PatientRow>,
}

/// Runs a scenario on the in-memory store and reports.
pub async fn run(s: &Scenario, policy: PolicyMode) -> Result<Report, Box<dyn std::error::Error>> {
    Ok(run_on(s, policy, None, |_, _, _| {}).await?.report)
}

/// Runs a scenario on `store` (in-memory when `None`), calling
/// `progress(virtual time, submitted, still running)` from time to time.
pub async fn run_on(
    s: &Scenario,
    policy: PolicyMode,
    store: Option<Arc<dyn CascadeStore>>,
    mut progress: impl FnMut(DateTime<Utc>, usize, usize),
) -> Result<Run, Box<dyn std::error::Error>> {
    let clock = ManualClock::new(start());
    let chans = channels(s, &clock)?;
    let mut b = Engine::builder()
        .clock(clock.clone())
        .policy(CascadePolicy::classic_clinic(
            "whatsapp", "telegram", "max", "sms",
        ))
        .concurrency(64);
    if let Some(st) = store {
        b = b.store(st);
    }
    for c in &chans {
        b = b.channel(c.clone());
    }
    if policy == PolicyMode::Fixed {
        b = b.without_health();
    }
    let engine = b.build()?;
    let mut sim = Simulation::new(engine.clone(), clock.clone());
    for c in &chans {
        sim = sim.channel(c.clone());
    }
    let n = s.notifications.max(1);
    let mut submitted = Vec::with_capacity(s.notifications);
    let report_every = (s.notifications / 10).max(1);
    for i in 0..s.notifications {
        let when = at(s.submit_over_secs.saturating_mul(i as u64) / n as u64);
        sim.run_until(when).await?;
        clock.set(when);
        let r = patient(i, &s.population)?;
        let name = r.name.clone().unwrap_or_default();
        let id = format!("reminder-{i:05}");
        engine
            .submit(
                Notification::new(
                    id.as_str(),
                    r,
                    Content::text(format!(
                        "{name}, напоминаем о приёме завтра в 10:00. Придёте? Ответьте ДА или НЕТ."
                    )),
                )
                .deadline(when + chrono::Duration::hours(24)),
            )
            .await?;
        submitted.push((NotificationId::new(id), when));
        if (i + 1).is_multiple_of(report_every) || i + 1 == s.notifications {
            progress(clock.now(), i + 1, engine.store().count_active().await?);
        }
    }
    sim.run_until(at(s.horizon_secs)).await?;
    progress(
        clock.now(),
        s.notifications,
        engine.store().count_active().await?,
    );

    let mut by_channel: BTreeMap<String, ChannelFigures> = CHANNELS
        .iter()
        .map(|(id, _)| (id.to_string(), ChannelFigures::default()))
        .collect();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut times = Vec::new();
    let mut rows = Vec::with_capacity(submitted.len());
    for (id, when) in &submitted {
        let Some(st) = engine.status(id).await? else {
            continue;
        };
        let mut row = PatientRow {
            notification_id: id.to_string(),
            outcome: st
                .outcome
                .as_ref()
                .map(|o| o.name())
                .unwrap_or("running")
                .to_owned(),
            delivered_by: None,
            time_to_delivery_s: None,
            attempts: st.attempts.len(),
        };
        for a in &st.attempts {
            let f = by_channel.entry(a.channel.to_string()).or_default();
            f.sends += 1;
            if matches!(a.state, AttemptState::Failed { .. }) {
                f.failed += 1;
            }
            f.cost += a.cost.as_ref().map(|c| c.amount).unwrap_or(0.0);
        }
        let name = st.outcome.as_ref().map(|o| o.name()).unwrap_or("running");
        *outcomes.entry(name.to_string()).or_default() += 1;
        if let Some(Outcome::Delivered { channel, .. }) = &st.outcome {
            by_channel.entry(channel.to_string()).or_default().delivered += 1;
            row.delivered_by = Some(channel.to_string());
            if let Some(t) = st.history.iter().rev().find_map(|h| match h.kind {
                HistoryKind::Delivered { .. } | HistoryKind::LateDelivery { .. } => Some(h.at),
                _ => None,
            }) {
                let secs = (t - *when).num_milliseconds() as f64 / 1000.0;
                times.push(secs);
                row.time_to_delivery_s = Some(secs);
            }
        }
        rows.push(row);
    }
    // Costs are money: sums of per-message prices in f64 drift (8531.9999999985), so the
    // report carries them in cents.
    for f in by_channel.values_mut() {
        f.cost = to_cents(f.cost);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: usize| -> f64 {
        if times.is_empty() {
            0.0
        } else {
            times[(times.len() * p / 100).min(times.len() - 1)]
        }
    };
    let report = Report {
        scenario: s.name.clone(),
        policy,
        notifications: s.notifications,
        delivered: times.len(),
        p50_time_to_delivery_s: pct(50),
        p90_time_to_delivery_s: pct(90),
        cost_total: to_cents(by_channel.values().map(|f| f.cost).sum()),
        by_channel,
        outcomes,
    };
    Ok(Run { report, rows })
}
