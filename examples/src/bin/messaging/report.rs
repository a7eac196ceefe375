//! `messaging report --database <SQLite file | PostgreSQL URL>` answers an operator's questions
//! from the store a service writes, and prints
//! `{"database":{...},"at":"...","running":{...},"stuck":{...},"ended":{...},"cost":{...}}`: the
//! [`OperatorReport`](messaging::store::OperatorReport) of `messaging::store::CascadeReports`,
//! with the database it read (a PostgreSQL password shows as `[redacted]`).
//!
//! ```text
//! messaging report --database /var/lib/clinic/messaging.db
//! messaging report --database postgres://app@db.internal/clinic --schema messaging --since 24h
//! MESSAGING_DATABASE_URL=postgres://app:…@db/clinic messaging report --day-from 2030-01-01 --day-to 2030-01-31
//! ```
//!
//! - `running`: unfinished cascades, `total` and `by_phase_and_channel`;
//! - `stuck`: unfinished cascades whose timer or deadline passed more than `--stuck-grace` ago
//!   (default 5m), `total` and the `oldest` (`--stuck-limit`, default 20);
//! - `ended`: cascades that ended in the last `--since` (default 1h), `total` and
//!   `by_outcome_and_channel`;
//! - `cost`: cost estimates by channel, UTC day and currency from `--day-from` to `--day-to`
//!   (default the last seven days), with `total_by_currency`.
//!
//! Opening the database applies the store's migrations, as the service does. Exit status 1 with
//! `{"error":{"kind":"database","message":"..."}}` when the database cannot be read.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use messaging::store::{
    CascadeReports, PostgresOptions, PostgresStore, ReportQuery, SqliteStore, StoreError,
};
use serde_json::{Value, json};

use crate::Output;

/// The environment variable read when `--database` is absent; scrubbed from usage errors.
pub(crate) const DATABASE_ENV: &str = "MESSAGING_DATABASE_URL";

/// Arguments of `messaging report`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A SQLite file, or a PostgreSQL connection string (`postgres://user@host/db` or
    /// `host=… user=… dbname=…`). Default: `$MESSAGING_DATABASE_URL`.
    #[arg(long)]
    database: Option<String>,
    /// The PostgreSQL schema holding the tables.
    #[arg(long, default_value = "messaging")]
    schema: String,
    /// How far back `ended` looks: `90s`, `15m`, `1h`, `2d`, `1h30m`, or seconds.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    since: Duration,
    /// How long past its time a cascade must be to count as stuck.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    stuck_grace: Duration,
    /// How many stuck cascades to list (all are counted).
    #[arg(long, default_value_t = 20)]
    stuck_limit: usize,
    /// The first UTC day of `cost` (YYYY-MM-DD). Default: six days before `--day-to`.
    #[arg(long)]
    day_from: Option<NaiveDate>,
    /// The last UTC day of `cost`, included (YYYY-MM-DD). Default: today (of `--at`).
    #[arg(long)]
    day_to: Option<NaiveDate>,
    /// The time the report is for (RFC 3339). Default: now.
    #[arg(long)]
    at: Option<DateTime<Utc>>,
}

/// Reads `90s`, `15m`, `1h`, `2d`, `1h30m`, or a number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (examples: 90s, 15m, 1h, 2d, 1h30m)");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Whether `database` names a PostgreSQL database rather than a SQLite file.
fn is_postgres(database: &str) -> bool {
    let d = database.trim_start();
    d.starts_with("postgres://")
        || d.starts_with("postgresql://")
        || (d.contains('=')
            && (d.contains("host=") || d.contains("dbname=") || d.contains("user=")))
}

/// The password in a connection string (URL userinfo, `?password=` or `password=` key), if any.
pub(crate) fn password_of(database: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some((_, rest)) = database.split_once("://") {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, pass)) = userinfo.split_once(':')
        {
            found.push(pass.to_owned());
            if let Ok(decoded) = percent_decode(pass) {
                found.push(decoded);
            }
        }
        if let Some((_, query)) = rest.split_once('?') {
            for pair in query.split('&') {
                if let Some(v) = pair.strip_prefix("password=") {
                    found.push(v.to_owned());
                    if let Ok(decoded) = percent_decode(v) {
                        found.push(decoded);
                    }
                }
            }
        }
    } else {
        // libpq key=value: `password=secret` or `password = 'it''s secret'`.
        let mut rest = database;
        while let Some(i) = rest.find("password") {
            let after = rest[i + "password".len()..].trim_start();
            rest = &rest[i + "password".len()..];
            let Some(value) = after.strip_prefix('=') else {
                continue;
            };
            let value = value.trim_start();
            let v = if let Some(quoted) = value.strip_prefix('\'') {
                // The value unescaped, and as written (up to the closing quote).
                let mut out = String::new();
                let mut end = quoted.len();
                let mut chars = quoted.char_indices().peekable();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => out.extend(chars.next().map(|(_, c)| c)),
                        '\'' if chars.peek().is_some_and(|(_, c)| *c == '\'') => {
                            chars.next();
                            out.push('\'');
                        }
                        '\'' => {
                            end = i;
                            break;
                        }
                        c => out.push(c),
                    }
                }
                found.push(quoted[..end].to_owned());
                out
            } else {
                value.split_whitespace().next().unwrap_or("").to_owned()
            };
            found.push(v);
        }
    }
    found.retain(|s| !s.is_empty());
    found.sort();
    found.dedup();
    found
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// `text` without any form of the passwords.
fn scrub(text: &str, passwords: &[String]) -> String {
    messaging_http::Redactor::new()
        .secrets(passwords)
        .redact(text)
}

fn error(kind: &str, message: String) -> Output {
    Output::fail(json!({ "error": { "kind": kind, "message": message } }))
}

/// Reads the reports.
pub(crate) fn run(args: Args) -> Output {
    let database = match args
        .database
        .clone()
        .or_else(|| std::env::var(DATABASE_ENV).ok())
        .filter(|d| !d.trim().is_empty())
    {
        Some(d) => d,
        None => {
            return error(
                "usage",
                format!("name the database with --database or {DATABASE_ENV}"),
            );
        }
    };
    let passwords = password_of(&database);
    let at = args.at.unwrap_or_else(Utc::now);
    let day_to = args.day_to.unwrap_or_else(|| at.date_naive());
    let day_from = args.day_from.unwrap_or_else(|| {
        day_to
            .checked_sub_days(chrono::Days::new(6))
            .unwrap_or(day_to)
    });
    if day_from > day_to {
        return error(
            "usage",
            format!("--day-from {day_from} is after --day-to {day_to}"),
        );
    }
    let query = ReportQuery::at(at)
        .ended_since(args.since)
        .stuck_grace(args.stuck_grace)
        .stuck_limit(args.stuck_limit)
        .cost_days(day_from, day_to);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return error("runtime", e.to_string()),
    };
    let postgres = is_postgres(&database);
    let described = if postgres {
        json!({
            "kind": "postgres",
            "connection": scrub(&database, &passwords),
            "schema": args.schema,
        })
    } else {
        json!({ "kind": "sqlite", "path": database })
    };
    let answer = rt.block_on(async {
        if postgres {
            let opts = PostgresOptions::default().schema(&args.schema).pool_size(2);
            let store = PostgresStore::connect_with(&database, opts).await?;
            store.report(&query).await
        } else {
            // Never create a database where the operator mistyped a path.
            if !std::path::Path::new(&database).is_file() {
                return Err(StoreError::Backend(format!(
                    "no SQLite database at {database}"
                )));
            }
            let store = SqliteStore::open(&database).await?;
            store.report(&query).await
        }
    });
    match answer.and_then(|r| serde_json::to_value(r).map_err(StoreError::backend)) {
        Ok(Value::Object(mut report)) => {
            let mut out = serde_json::Map::new();
            out.insert("database".into(), described);
            out.append(&mut report);
            Output::ok(Value::Object(out))
        }
        Ok(other) => error("internal", format!("unexpected report shape: {other}")),
        Err(e) => error("database", scrub(&e.to_string(), &passwords)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "1x", "1h30", "-5m", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn which_database() {
        assert!(is_postgres("postgres://app@db/clinic"));
        assert!(is_postgres("postgresql://app@db/clinic"));
        assert!(is_postgres("host=127.0.0.1 user=postgres dbname=test"));
        assert!(!is_postgres("/var/lib/clinic/messaging.db"));
        assert!(!is_postgres("messaging.db"));
    }

    #[test]
    fn passwords_are_found_in_every_form() {
        assert_eq!(
            password_of("postgres://app:s3cr%40t@db:5432/clinic?sslmode=disable"),
            ["s3cr%40t", "s3cr@t"]
        );
        assert_eq!(
            password_of("postgres://app@db/clinic?password=hunter2&x=1"),
            ["hunter2"]
        );
        assert_eq!(
            password_of("host=db user=app password=hunter2 dbname=clinic"),
            ["hunter2"]
        );
        assert!(
            password_of("host=db password = 'it''s a secret' dbname=clinic")
                .contains(&"it's a secret".to_owned())
        );
        assert!(password_of("postgres://app@db/clinic").is_empty());
        let pw = password_of("postgres://app:hunter2@db/clinic");
        assert_eq!(
            scrub("postgres://app:hunter2@db/clinic", &pw),
            "postgres://app:[redacted]@db/clinic"
        );
    }
}
