//! The text tables `clinic-reminders` prints, shared by the sandbox and the `--live` mode: one
//! line per patient (outcome, the channel that delivered, time to delivery, attempts) and one
//! line per channel (sends, deliveries, failures, cost).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::scenario::{ChannelFigures, PatientRow};

/// A duration for people: `42s`, `3m05s`, `2h10m`.
///
/// ```
/// use messaging_examples::tables::duration;
/// assert_eq!(duration(4.4), "4s");
/// assert_eq!(duration(185.0), "3m05s");
/// assert_eq!(duration(7800.0), "2h10m");
/// ```
pub fn duration(secs: f64) -> String {
    let s = secs.round() as i64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// The per-patient table: a header and the first `shown` rows, each optionally preceded by the
/// patient's name (`names` empty: no patient column), then a line saying how many were left out.
pub fn patients(rows: &[PatientRow], names: &[&str], shown: usize) -> String {
    let id_width = rows
        .iter()
        .map(|r| r.notification_id.chars().count())
        .max()
        .unwrap_or(0)
        .max(18);
    let name_width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(7);
    let by_width = rows
        .iter()
        .filter_map(|r| r.delivered_by.as_deref())
        .map(|d| d.chars().count())
        .max()
        .unwrap_or(0)
        .max(12);
    let mut out = String::new();
    let patient = |out: &mut String, name: &str| {
        if !names.is_empty() {
            let _ = write!(out, "{name:<name_width$} ");
        }
    };
    patient(&mut out, "patient");
    let _ = writeln!(
        out,
        "{:<id_width$} {:<12} {:<by_width$} {:>10} {:>9}",
        "notification", "outcome", "delivered by", "time", "attempts"
    );
    for (i, r) in rows.iter().enumerate().take(shown) {
        patient(&mut out, names.get(i).copied().unwrap_or(""));
        let _ = writeln!(
            out,
            "{:<id_width$} {:<12} {:<by_width$} {:>10} {:>9}",
            r.notification_id,
            r.outcome,
            r.delivered_by.as_deref().unwrap_or("-"),
            r.time_to_delivery_s
                .map(duration)
                .unwrap_or_else(|| "-".into()),
            r.attempts
        );
    }
    if rows.len() > shown {
        let _ = writeln!(
            out,
            "... {} more (--all shows every line)",
            rows.len() - shown
        );
    }
    out
}

/// The per-channel table with a total line; `cost_label` heads the cost column
/// (`"cost, RUB"`).
pub fn channels(
    by_channel: &BTreeMap<String, ChannelFigures>,
    delivered: usize,
    cost_total: f64,
    cost_label: &str,
) -> String {
    let width = by_channel
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0)
        .max(10);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$} {:>7} {:>10} {:>8} {:>11}",
        "channel", "sends", "delivered", "failed", cost_label
    );
    for (ch, f) in by_channel {
        let _ = writeln!(
            out,
            "{:<width$} {:>7} {:>10} {:>8} {:>11.2}",
            ch, f.sends, f.delivered, f.failed, f.cost
        );
    }
    let sends: u64 = by_channel.values().map(|f| f.sends).sum();
    let failed: u64 = by_channel.values().map(|f| f.failed).sum();
    let _ = writeln!(
        out,
        "{:<width$} {:>7} {:>10} {:>8} {:>11.2}",
        "total", sends, delivered, failed, cost_total
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, outcome: &str, by: Option<&str>, t: Option<f64>) -> PatientRow {
        PatientRow {
            notification_id: id.into(),
            outcome: outcome.into(),
            delivered_by: by.map(Into::into),
            time_to_delivery_s: t,
            attempts: 1,
        }
    }

    #[test]
    fn patient_table_matches_the_sandbox_layout() {
        let rows = [
            row("reminder-00000", "delivered", Some("whatsapp"), Some(12.0)),
            row("reminder-00001", "running", None, None),
        ];
        let t = patients(&rows, &[], 1);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "notification       outcome      delivered by       time  attempts"
        );
        assert_eq!(
            lines[1],
            "reminder-00000     delivered    whatsapp            12s         1"
        );
        assert_eq!(lines[2], "... 1 more (--all shows every line)");
        let t = patients(&rows, &["Анна", "Борис"], 2);
        assert!(t.lines().nth(2).is_some_and(|l| l.starts_with("Борис   ")));
    }

    #[test]
    fn channel_table_totals() {
        let mut by = BTreeMap::new();
        by.insert(
            "sms".to_owned(),
            ChannelFigures {
                sends: 2,
                delivered: 1,
                failed: 1,
                cost: 9.0,
            },
        );
        let t = channels(&by, 1, 9.0, "cost, RUB");
        assert_eq!(
            t.lines().last(),
            Some("total            2          1        1        9.00")
        );
    }
}
