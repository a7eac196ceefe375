//! The operator's web console: every patient's messages from WhatsApp, Telegram, Max and SMS
//! as one history, replies on the channel the patient last wrote from, identity links, and
//! each reminder's cascade as it happened.
//!
//! ```text
//! cargo run -p messaging-examples --bin messaging-console -- --demo --listen 127.0.0.1:8090
//! MESSAGING_CONSOLE_PASSWORD=… cargo run -p messaging-examples --bin messaging-console -- --listen 127.0.0.1:8090
//! MESSAGING_CONSOLE_PASSWORD=… cargo run -p messaging-examples --bin messaging-console -- \
//!     --config messaging.toml --patients patients.csv --template clinic_message:ru:"Клиника: {{1}}"
//! ```
//!
//! - With no configuration it runs on simulated providers and a SQLite file
//!   (`messaging-console-demo.sqlite`, created afresh), with reminders and patients' messages
//!   generated. The password comes from `MESSAGING_CONSOLE_PASSWORD`; `--demo` allows running
//!   without it and prints a generated one.
//! - `--config FILE` builds the [service](messaging::service) from the library's configuration
//!   (real providers, the configured store) and serves the console beside its webhooks on
//!   `--listen` (default: the configuration's `listener.address`). The password must be set in
//!   `MESSAGING_CONSOLE_PASSWORD` (at least 8 characters): without it the console refuses to
//!   start.
//!
//! See `messaging_examples::console` for the pages and how to build your own.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use messaging_examples::console::{Password, TemplateOffer, configured, demo};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "The clinic operators' web console (inbox, replies, identity, notices)")]
struct Args {
    /// Where to serve the console and the webhooks (default 127.0.0.1:8090, or with --config
    /// the configuration's listener.address).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Run on simulated providers with generated traffic; prints a generated password when
    /// MESSAGING_CONSOLE_PASSWORD is not set.
    #[arg(long, conflicts_with = "config")]
    demo: bool,
    /// The service's configuration file (see messaging::service).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// --config: the clinic's patients (name,phone[,telegram chat id[,max user id]]).
    #[arg(long, value_name = "FILE")]
    patients: Option<PathBuf>,
    /// --config: an approved WhatsApp template offered when the 24-hour window is closed, as
    /// NAME:LANGUAGE[:TEXT] (its body's {{1}} gets the operator's text); repeatable.
    #[arg(long, value_name = "NAME:LANG[:TEXT]")]
    template: Vec<String>,
    /// --demo: the SQLite file (created afresh).
    #[arg(long, default_value = "messaging-console-demo.sqlite")]
    db: PathBuf,
    /// --demo: no generated traffic (only the seeded conversations).
    #[arg(long)]
    quiet: bool,
    /// Mark the session cookie Secure (serve behind HTTPS).
    #[arg(long)]
    secure_cookie: bool,
}

fn fail(code: i32, message: impl std::fmt::Display) -> ! {
    eprintln!("messaging-console: {message}");
    std::process::exit(code);
}

fn template(spec: &str) -> Result<TemplateOffer, String> {
    let mut parts = spec.splitn(3, ':');
    let name = parts.next().unwrap_or_default().trim();
    let language = parts.next().unwrap_or_default().trim();
    if name.is_empty() || language.is_empty() {
        return Err(format!(
            "--template {spec:?}: expected NAME:LANGUAGE[:TEXT]"
        ));
    }
    Ok(TemplateOffer {
        name: name.into(),
        language: language.into(),
        preview: parts.next().unwrap_or("{{1}}").into(),
    })
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    messaging_examples::observability::init_tracing();
    let password = match std::env::var("MESSAGING_CONSOLE_PASSWORD") {
        Ok(p) if !p.is_empty() => {
            Password::new(p).unwrap_or_else(|e| fail(2, format!("MESSAGING_CONSOLE_PASSWORD: {e}")))
        }
        _ if args.demo => {
            let p = Password::generate();
            println!(
                "operator password (generated for this demo): {}",
                p.reveal()
            );
            p
        }
        _ => fail(
            2,
            format!(
                "set MESSAGING_CONSOLE_PASSWORD (at least {} characters), or run with --demo",
                Password::MIN_LEN
            ),
        ),
    };
    let mut service = None;
    let mut webhook_note = None;
    let (app, listen, console) = if let Some(path) = &args.config {
        let mut options = configured::ConfiguredOptions::new(path);
        options.patients = args.patients.clone();
        options.templates = args
            .template
            .iter()
            .map(|t| template(t))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| fail(2, e));
        options.secure_cookie = args.secure_cookie;
        options.listen = args.listen;
        let c = configured::start(password, options)
            .await
            .unwrap_or_else(|e| fail(2, e));
        for w in c.service.webhooks() {
            println!("webhook: {} {}", w.provider(), w.shown());
        }
        let listen = c.listen.unwrap_or_else(|| {
            fail(
                2,
                "no --listen and no listener.address in the configuration",
            )
        });
        let (app, console) = (c.app.clone(), c.console.clone());
        service = Some(c.service);
        (app, listen, console)
    } else {
        let mut options = demo::DemoOptions::new(&args.db);
        options.traffic = !args.quiet;
        options.secure_cookie = args.secure_cookie;
        let d = demo::start(password, options)
            .await
            .unwrap_or_else(|e| fail(1, e));
        webhook_note = Some(d.telegram_secret.clone());
        let listen = args
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8090)));
        (d.app, listen, d.console)
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| fail(1, format!("cannot listen on {listen}: {e}")));
    let addr = listener.local_addr().unwrap_or(listen);
    println!("messaging-console: listening on http://{addr}/");
    if let Some(secret) = webhook_note {
        println!("telegram webhook: http://{addr}/webhooks/telegram secret: {secret}");
    }
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = tokio::signal::ctrl_c().await;
        // Open pages' live streams would otherwise keep the graceful shutdown waiting.
        console.close();
    });
    if let Err(e) = serve.await {
        eprintln!("messaging-console: {e}");
    }
    if let Some(s) = service {
        s.shutdown().await;
    }
}
