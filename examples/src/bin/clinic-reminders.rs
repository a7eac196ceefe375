//! Clinic reminders: the main demo.
//!
//! Runs a day of appointment reminders through the classic clinic cascade
//! (WhatsApp → Telegram → Max → SMS) over a built-in sandbox of simulated providers, in virtual
//! time, and prints what happened: per patient the channel that delivered and how long it took,
//! per channel the sends, deliveries, failures and cost.
//!
//! In the sandbox WhatsApp is slowed down for part of the patients, blocked (not on WhatsApp) for
//! some, and stops delivering for 40 minutes in the middle of the run; some patients have no
//! Telegram; SMS is the last resort.
//!
//! ```text
//! cargo run -p messaging-examples --bin clinic-reminders
//! cargo run -p messaging-examples --bin clinic-reminders -- --patients 500 --seed 7
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use clap::Parser;
use messaging_core::engine::{CascadeStatus, HistoryKind};
use messaging_core::testkit::{
    Latency, Outage, OutageMode, SimBehavior, SimulatedChannel, Simulation,
};
use messaging_core::*;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Appointment reminders through WhatsApp, Telegram, Max and SMS, in a sandbox")]
struct Args {
    /// How many patients get a reminder.
    #[arg(long, default_value_t = 120)]
    patients: usize,
    /// Seed of the sandbox's randomness (same seed, same run).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print every patient's row (default: the first 20 and a summary).
    #[arg(long)]
    all: bool,
}

fn start() -> DateTime<Utc> {
    // 09:00 Moscow time.
    Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0)
        .single()
        .unwrap_or_default()
}

struct Sandbox {
    clock: ManualClock,
    channels: Vec<Arc<SimulatedChannel>>,
}

fn sandbox(patients: usize, seed: u64) -> Sandbox {
    let clock = ManualClock::new(start());
    let mut wa = SimBehavior {
        latency: Latency::LogNormal {
            median_secs: 15.0,
            sigma: 0.8,
        },
        cost_per_message: 0.9,
        outages: vec![Outage {
            start: start() + chrono::Duration::minutes(50),
            end: start() + chrono::Duration::minutes(90),
            mode: OutageMode::Silent,
        }],
        ..SimBehavior::default()
    };
    // Every 7th patient is not on WhatsApp; every 5th reads WhatsApp only after hours.
    for i in 0..patients {
        let key = Address::Phone(patient_phone(i)).key();
        if i % 7 == 3 {
            wa.unreachable.insert(key);
        } else if i % 5 == 1 {
            wa.silent.insert(key);
        }
    }
    let tg = SimBehavior {
        latency: Latency::fixed(Duration::from_secs(1)),
        error_rate: 0.02,
        cost_per_message: 0.0,
        ..SimBehavior::default()
    };
    let max = SimBehavior {
        latency: Latency::fixed(Duration::from_secs(1)),
        cost_per_message: 0.0,
        ..SimBehavior::default()
    };
    let sms = SimBehavior {
        latency: Latency::LogNormal {
            median_secs: 8.0,
            sigma: 0.5,
        },
        cost_per_message: 4.5,
        ..SimBehavior::default()
    };
    let mk = |id: &str, kind, b: SimBehavior, s: u64| {
        Arc::new(SimulatedChannel::new(id, kind, clock.clone(), s).with_behavior(b))
    };
    Sandbox {
        channels: vec![
            mk("wa", ChannelKind::WhatsApp, wa, seed),
            mk("tg", ChannelKind::Telegram, tg, seed + 1),
            mk("max", ChannelKind::Max, max, seed + 2),
            mk("sms", ChannelKind::Sms, sms, seed + 3),
        ],
        clock,
    }
}

fn patient_phone(i: usize) -> Phone {
    // Numbers in the +7 912 range, all valid mobile numbers.
    Phone::parse(&format!("+7912{:07}", 1_000_000 + i)).unwrap_or_else(|_| {
        Phone::parse("+79120000000").unwrap_or_else(|e| panic!("sandbox phone: {e}"))
    })
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

fn patient(i: usize) -> Recipient {
    let mut r = Recipient::default().name(NAMES[i % NAMES.len()]);
    r.contact_id = Some(ContactId::new(format!("patient-{i:04}")));
    r.phone = Some(patient_phone(i));
    // Two thirds have Telegram; half of the rest have Max.
    if i % 3 != 2 {
        r = r.address(Address::Telegram(100_000 + i as i64));
    } else if i.is_multiple_of(2) {
        r = r.address(Address::MaxUser(500_000 + i as i64));
    }
    r
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let sb = sandbox(args.patients, args.seed);
    let mut builder = Engine::builder()
        .clock(sb.clock.clone())
        .policy(CascadePolicy::classic_clinic("wa", "tg", "max", "sms"));
    for c in &sb.channels {
        builder = builder.channel(c.clone());
    }
    let engine = builder.build()?;
    let mut sim = Simulation::new(engine.clone(), sb.clock.clone());
    for c in &sb.channels {
        sim = sim.channel(c.clone());
    }

    println!(
        "Clinic reminders: {} patients, cascade WhatsApp (delivered, 60 min) -> Telegram -> Max -> SMS",
        args.patients
    );
    println!(
        "Sandbox: WhatsApp silent 50-90 min into the run, some patients not on WhatsApp or never reading it.\n"
    );

    // Reminders go out through the morning, one every 30 seconds.
    let mut submitted_at = BTreeMap::new();
    for i in 0..args.patients {
        let at = start() + chrono::Duration::seconds(30 * i as i64);
        sim.run_until(at).await?;
        sb.clock.set(at);
        let r = patient(i);
        let name = r.name.clone().unwrap_or_default();
        let n = Notification::new(
            format!("reminder-{i:04}"),
            r,
            Content::text(format!(
                "{name}, напоминаем о приёме завтра в 10:00. Придёте? Ответьте ДА или НЕТ."
            )),
        )
        .deadline(at + chrono::Duration::hours(20));
        engine.submit(n).await?;
        submitted_at.insert(format!("reminder-{i:04}"), at);
        if (i + 1).is_multiple_of(40) {
            println!(
                "  [{}] {} reminders submitted, {} cascades still running",
                sb.clock.now().format("%H:%M"),
                i + 1,
                engine.store().count_active().await?
            );
        }
    }
    sim.run_for(Duration::from_secs(30 * 3600)).await?;
    println!(
        "  [{}] all cascades finished: {} running\n",
        sb.clock.now().format("%H:%M"),
        engine.store().count_active().await?
    );

    let mut rows = Vec::new();
    for (id, at) in &submitted_at {
        if let Some(st) = engine.status(&id.as_str().into()).await? {
            rows.push((st, *at));
        }
    }
    print_patients(&rows, args.all);
    print_channels(&rows);
    Ok(())
}

fn delivered_by(st: &CascadeStatus) -> (String, Option<DateTime<Utc>>) {
    match &st.outcome {
        Some(Outcome::Delivered { channel, .. }) => {
            let at = st.history.iter().rev().find_map(|h| match h.kind {
                HistoryKind::Delivered { .. } | HistoryKind::LateDelivery { .. } => Some(h.at),
                _ => None,
            });
            (channel.to_string(), at)
        }
        Some(o) => (o.name().to_string(), None),
        None => ("running".into(), None),
    }
}

fn minutes(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn print_patients(rows: &[(CascadeStatus, DateTime<Utc>)], all: bool) {
    println!(
        "{:<14} {:<12} {:>12} {:>9}",
        "notification", "delivered by", "time", "attempts"
    );
    for (st, at) in rows.iter().take(if all { usize::MAX } else { 20 }) {
        let (by, when) = delivered_by(st);
        let time = when.map(|w| minutes(w - *at)).unwrap_or_else(|| "-".into());
        println!(
            "{:<14} {:<12} {:>12} {:>9}",
            st.notification_id.as_str(),
            by,
            time,
            st.attempts.len()
        );
    }
    if !all && rows.len() > 20 {
        println!("... {} more (use --all)", rows.len() - 20);
    }
    let mut times: Vec<i64> = rows
        .iter()
        .filter_map(|(st, at)| delivered_by(st).1.map(|w| (w - *at).num_seconds()))
        .collect();
    times.sort_unstable();
    let pct = |p: usize| {
        times
            .get((times.len() * p / 100).min(times.len().saturating_sub(1)))
            .map(|s| minutes(chrono::Duration::seconds(*s)))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "\ndelivered: {} of {}; time to delivery p50 {}, p90 {}\n",
        times.len(),
        rows.len(),
        pct(50),
        pct(90)
    );
}

fn print_channels(rows: &[(CascadeStatus, DateTime<Utc>)]) {
    #[derive(Default)]
    struct Row {
        sends: usize,
        delivered: usize,
        failed: usize,
        cost: f64,
    }
    let mut by: BTreeMap<String, Row> = BTreeMap::new();
    for (st, _) in rows {
        for a in &st.attempts {
            let r = by.entry(a.channel.to_string()).or_default();
            r.sends += 1;
            if matches!(a.state, messaging_core::engine::AttemptState::Failed { .. }) {
                r.failed += 1;
            }
            r.cost += a.cost.as_ref().map(|c| c.amount).unwrap_or(0.0);
        }
        if let Some(Outcome::Delivered { channel, .. }) = &st.outcome {
            by.entry(channel.to_string()).or_default().delivered += 1;
        }
    }
    println!(
        "{:<8} {:>6} {:>10} {:>8} {:>10}",
        "channel", "sends", "delivered", "failed", "cost, RUB"
    );
    let mut total = Row::default();
    for (ch, r) in &by {
        println!(
            "{:<8} {:>6} {:>10} {:>8} {:>10.2}",
            ch, r.sends, r.delivered, r.failed, r.cost
        );
        total.sends += r.sends;
        total.delivered += r.delivered;
        total.failed += r.failed;
        total.cost += r.cost;
    }
    println!(
        "{:<8} {:>6} {:>10} {:>8} {:>10.2}",
        "total", total.sends, total.delivered, total.failed, total.cost
    );
}
