//! Clinic reminders: the main demo.
//!
//! Sends a morning of appointment reminders through the classic clinic cascade
//! (WhatsApp → Telegram → Max → SMS) over a built-in sandbox of simulated providers, with the
//! SQLite store in a local file and virtual time sped up, and prints what happened: per patient
//! the channel that delivered and the time to delivery; per channel sends, deliveries, failures
//! and cost; totals.
//!
//! In the sandbox WhatsApp is slowed down for a while and then stops delivering, some patients
//! are not on WhatsApp or never receive its messages, some have no Telegram, and SMS is the last
//! resort.
//!
//! ```text
//! cargo run -p messaging-examples --bin clinic-reminders
//! cargo run -p messaging-examples --bin clinic-reminders -- --patients 2000 --all
//! ```
//!
//! # Sending for real (`--live`)
//!
//! With provider credentials in the environment and `--live`, the same cascade sends for real
//! to the patients of a CSV file, over the configured channels only (in the classic order), on
//! the system clock, with the SQLite store in `--db` (default `clinic-reminders-live.sqlite`,
//! kept between runs) and the engine running:
//!
//! ```text
//! export TELEGRAM_BOT_TOKEN=… SMSRU_API_ID=…
//! cargo run -p messaging-examples --bin clinic-reminders -- --live \
//!     --recipients patients.csv --listen 127.0.0.1:8080 --wait-secs 1800
//! ```
//!
//! - Channels: WhatsApp with `WABA_TOKEN` + `WABA_PHONE_NUMBER_ID` (or `D360_API_KEY`),
//!   Telegram with `TELEGRAM_BOT_TOKEN`, Max with `MAX_BOT_TOKEN`, SMS with `SMSRU_API_ID`,
//!   `SMSC_LOGIN` + `SMSC_PASSWORD`, `SMSAERO_EMAIL` + `SMSAERO_API_KEY` or
//!   `TWILIO_ACCOUNT_SID` + `TWILIO_AUTH_TOKEN` + `TWILIO_FROM`; each has a `…_BASE_URL`
//!   override, and webhook secrets (`META_APP_SECRET`, `TELEGRAM_WEBHOOK_SECRET`,
//!   `MAX_WEBHOOK_SECRET`). The full list is in `--help`. With none set, `--live` exits 2 and
//!   lists them. Tokens are never printed.
//! - WhatsApp cannot start a conversation with free text: the reminder goes as the template
//!   `WABA_TEMPLATE` (default `hello_world`, `en_US`, as Meta's test numbers allow); set your
//!   approved utility template and its body parameters (`WABA_TEMPLATE_PARAMS`, `{name}` is the
//!   patient's name).
//! - Recipients (`--recipients`): one patient per line, `name,phone[,telegram chat id[,max user
//!   id]]`; `#` comments, blank lines and a `name,phone,…` header are skipped; fields may be
//!   quoted; semicolons work as separators too. A bad line is reported with its number and
//!   nothing is sent (exit 2).
//! - Evidence: `--listen` serves the providers' webhooks on `/webhooks/waba`,
//!   `/webhooks/telegram`, `/webhooks/max`, `/webhooks/twilio` and, for the SMS providers that
//!   sign nothing (SMS.ru, SMSC, SMS Aero), `/webhooks/sms/<provider>/<secret>` (WhatsApp
//!   statuses, replies, SMS callbacks); the secret comes from `--sms-webhook-secret` or
//!   `SMS_WEBHOOK_SECRET` (at least 16 of `A-Z a-z 0-9 - _`), else one is generated for the run;
//!   the URL to register is printed at start. SMS statuses are also polled every `--poll-secs`.
//! - `--window-secs` replaces every step's window (policy: WhatsApp 60 min, Telegram and Max
//!   15 min, SMS 24 h); `--wait-secs` bounds the run (default 600). Cascades still running then
//!   are reported as running and stay in the store: run again with the same `--db` and
//!   `--batch` (default: today's date) to follow them up; nothing is sent twice.
//! - `--metrics` (or `MESSAGING_METRICS=1`) serves the engine's and the adapters' metrics in
//!   Prometheus' text format at `/metrics` on the `--listen` address (sends, delivery reports,
//!   failures, skips and outcomes per channel, time to delivery, provider request latency,
//!   channel health; the names are in `messaging::metrics`).
//!
//! # Logs
//!
//! `RUST_LOG` filters what is logged to stderr (default `warn`): `RUST_LOG=messaging=debug`
//! tells the story of each notice (a `cascade` span per move, a `send` span per attempt, an
//! event per step: sent, window expired, rerouted, delivered, late report, health changes).

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use messaging::store::{Durability, SqliteOptions, SqliteStore};
use messaging::testkit::OutageMode;
use messaging_examples::live::{self, LiveConfig, LiveError, Providers};
use messaging_examples::scenario::{self, OutageSpec, PolicyMode, Population, Scenario};
use messaging_examples::tables;

const AFTER_HELP: &str = "\
Recipients file (--live --recipients FILE): one patient per line,
  name,phone[,telegram chat id[,max user id]]
for example
  # name, phone, telegram chat id, max user id
  name,phone,telegram,max
  Анна Петрова,+7 912 345-67-89,123456789,
  \"Борис, старший\",8 912 000-00-02,,987654
UTF-8; '#' comments, blank lines and a header line are skipped; fields may be double-quoted;
semicolons work as separators too. Phones are read as Russian when national. A bad line is
reported with its number and nothing is sent.

Environment for --live (only the configured providers take part, in the order
WhatsApp -> Telegram -> Max -> SMS):";

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    about = "Appointment reminders through WhatsApp, Telegram, Max and SMS: in a sandbox, or for real with --live",
    after_help = format!("{AFTER_HELP}\n{}", live::ENV_HELP)
)]
struct Args {
    /// How many patients get a reminder (sandbox).
    #[arg(long, default_value_t = 300)]
    patients: usize,
    /// Seed of the sandbox's randomness (same seed, same run).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The SQLite file: created afresh for each sandbox run (default clinic-reminders.sqlite);
    /// kept between --live runs (default clinic-reminders-live.sqlite).
    #[arg(long)]
    db: Option<std::path::PathBuf>,
    /// Fixed 60-minute windows instead of routing around slow channels (sandbox).
    #[arg(long)]
    fixed: bool,
    /// Print every patient's line (default: the first 15).
    #[arg(long)]
    all: bool,
    /// Send for real through the providers configured in the environment (see below).
    #[arg(long)]
    live: bool,
    /// --live: the recipients CSV file (format below).
    #[arg(long, value_name = "FILE")]
    recipients: Option<std::path::PathBuf>,
    /// --live: serve the providers' webhooks (delivery statuses, replies) on this address,
    /// e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// --live: the public URL providers call the listener at (`https://clinic.example`), for
    /// Twilio's signature check and SMS status callback URLs.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// --live: the secret path segment of the unsigned SMS delivery-report endpoints
    /// (`/webhooks/sms/smsru/<secret>`); also `SMS_WEBHOOK_SECRET`. Default: generated per run.
    #[arg(long, value_name = "SECRET")]
    sms_webhook_secret: Option<String>,
    /// --live: every step's window in seconds (default: the policy's, WhatsApp 3600, Telegram
    /// and Max 900, SMS 86400).
    #[arg(long, value_name = "SECS")]
    window_secs: Option<u64>,
    /// --live: how long to wait for the cascades after the reminders went out.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    wait_secs: u64,
    /// --live: how often SMS delivery statuses are polled.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    poll_secs: u64,
    /// --live: the reminder text; {name} becomes the patient's name.
    #[arg(long, default_value = live::DEFAULT_TEXT)]
    text: String,
    /// --live: the batch id, part of every notification id (default: today's date); the same
    /// batch and --db never send twice.
    #[arg(long)]
    batch: Option<String>,
    /// --live: serve metrics in Prometheus' format at /metrics on the --listen address (also
    /// MESSAGING_METRICS=1).
    #[arg(long)]
    metrics: bool,
}

fn sandbox(patients: usize, seed: u64) -> Scenario {
    Scenario {
        name: "clinic-sandbox".into(),
        notifications: patients,
        // Reminders go out through the morning, 09:00 to 12:00.
        submit_over_secs: 3 * 3600,
        horizon_secs: 36 * 3600,
        seed,
        population: Population {
            telegram_share: 0.55,
            max_share: 0.5,
            whatsapp_unreachable_share: 0.08,
            whatsapp_silent_share: 0.1,
        },
        outages: vec![
            OutageSpec {
                channel: "whatsapp".into(),
                start_secs: 1800,
                end_secs: 3600,
                mode: OutageMode::Slow { extra_secs: 1500.0 },
            },
            OutageSpec {
                channel: "whatsapp".into(),
                start_secs: 3600,
                end_secs: 7200,
                mode: OutageMode::Silent,
            },
        ],
        ..Scenario::default()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    messaging_examples::observability::init_tracing();
    if args.live {
        if let Err(e) = live_mode(args).await {
            eprintln!("clinic-reminders: {e}");
            std::process::exit(e.exit_code());
        }
        return Ok(());
    }
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| "clinic-reminders.sqlite".into());
    let s = sandbox(args.patients, args.seed);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let store =
        SqliteStore::open_with(&db, SqliteOptions::default().durability(Durability::Normal))
            .await?;
    let policy = if args.fixed {
        PolicyMode::Fixed
    } else {
        PolicyMode::Adaptive
    };

    println!(
        "Clinic reminders: {} patients, WhatsApp (delivered, 60 min) -> Telegram -> Max -> SMS, {} windows",
        args.patients,
        if args.fixed { "fixed" } else { "adaptive" }
    );
    println!(
        "Sandbox: WhatsApp slow 09:30-10:00 and silent 10:00-11:00; some patients not on WhatsApp or never reading it; store {}\n",
        db.display()
    );
    let tz = chrono_tz::Europe::Moscow;
    let run = scenario::run_on(
        &s,
        policy,
        Some(Arc::new(store)),
        |now, submitted, active| {
            println!(
                "  [{}] {submitted:>5} reminders submitted, {active:>5} cascades running",
                now.with_timezone(&tz).format("%H:%M")
            );
        },
    )
    .await?;

    println!();
    let shown = if args.all { run.rows.len() } else { 15 };
    print!("{}", tables::patients(&run.rows, &[], shown));

    let rep = &run.report;
    println!();
    print!(
        "{}",
        tables::channels(&rep.by_channel, rep.delivered, rep.cost_total, "cost, RUB")
    );
    println!(
        "\ndelivered {} of {} reminders; time to delivery p50 {}, p90 {}; outcomes {:?}",
        rep.delivered,
        rep.notifications,
        tables::duration(rep.p50_time_to_delivery_s),
        tables::duration(rep.p90_time_to_delivery_s),
        rep.outcomes
    );
    Ok(())
}

/// `--live`: checks the environment first (so `--live` alone says what to set), then reads the
/// recipients, sends, waits and prints the report.
async fn live_mode(args: Args) -> Result<(), LiveError> {
    let providers = Providers::from_env()?;
    if providers.is_empty() {
        return Err(LiveError::NoChannels);
    }
    let Some(path) = &args.recipients else {
        return Err(LiveError::Config(
            "--live needs --recipients FILE (one patient per line: name,phone[,telegram chat id[,max user id]]; see --help)".into(),
        ));
    };
    let patients = live::read_recipients(path)?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| "clinic-reminders-live.sqlite".into());
    let mut config = LiveConfig::new(providers, patients, db);
    config.listen = args.listen;
    config.public_url = args.public_url.clone();
    config.sms_webhook_secret = args.sms_webhook_secret.clone().or_else(|| {
        std::env::var("SMS_WEBHOOK_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
    });
    config.window = args.window_secs.map(Duration::from_secs);
    config.wait = Duration::from_secs(args.wait_secs);
    config.poll_interval = Duration::from_secs(args.poll_secs.max(1));
    config.text = args.text.clone();
    if let Some(b) = &args.batch {
        config.batch = b.clone();
    }
    config.progress = Some(Arc::new(|line: &str| println!("  {line}")));
    if args.metrics || std::env::var("MESSAGING_METRICS").is_ok_and(|v| v == "1") {
        if config.listen.is_none() {
            return Err(LiveError::Config(
                "--metrics serves /metrics on the webhook listener: set --listen too".into(),
            ));
        }
        let handle =
            messaging_examples::observability::install_prometheus().map_err(LiveError::Config)?;
        config.metrics = Some(handle);
    }
    let windows: Vec<String> = config
        .providers
        .policy(config.window)
        .steps
        .iter()
        .map(|s| {
            format!(
                "{} ({})",
                s.channel,
                tables::duration(s.window.as_secs_f64())
            )
        })
        .collect();
    println!(
        "Clinic reminders, live: {} patients from {}, batch {}, store {}",
        config.patients.len(),
        path.display(),
        config.batch,
        config.db.display()
    );
    println!("Cascade: {}", windows.join(" -> "));

    let config_metrics = config.metrics.is_some();
    let run = live::start(config).await?;
    match run.local_addr() {
        Some(addr) => println!(
            "Webhooks: {}",
            run.webhook_paths()
                .iter()
                .map(|p| format!("http://{addr}{p}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => println!("Webhooks: none (no --listen)"),
    }
    if let (Some(addr), true) = (run.local_addr(), config_metrics) {
        println!("Metrics: http://{addr}/metrics");
    }
    for note in run.notes() {
        println!("Note: {note}");
    }
    println!(
        "Waiting up to {} for the cascades (Ctrl-C reports at once)\n",
        tables::duration(args.wait_secs as f64)
    );
    let report = run
        .finish_or(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!();
    print!("{}", report.render(args.all));
    Ok(())
}
