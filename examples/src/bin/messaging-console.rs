//! The operator's web console: every patient's messages from WhatsApp, Telegram, Max and SMS
//! as one history, replies on the channel the patient last wrote from, identity links, and
//! each reminder's cascade as it happened.
//!
//! ```text
//! MESSAGING_CONSOLE_PASSWORD=… cargo run -p messaging-examples --bin messaging-console -- --demo
//! cargo run -p messaging-examples --bin messaging-console -- --demo --listen 127.0.0.1:8090
//! ```
//!
//! `--demo` runs on simulated providers and a SQLite file (`messaging-console-demo.sqlite`,
//! created afresh), with reminders and patients' messages generated, and prints a generated
//! operator password unless `MESSAGING_CONSOLE_PASSWORD` is set. Without `--demo` the password
//! must be set: the console refuses to start without one. See `messaging_examples::console`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use messaging_examples::console::{Password, demo};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "The clinic operators' web console (inbox, replies, identity, notices)")]
struct Args {
    /// Where to serve the console and the webhooks.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Run on simulated providers with generated traffic; prints a generated password when
    /// MESSAGING_CONSOLE_PASSWORD is not set.
    #[arg(long)]
    demo: bool,
    /// The demo's SQLite file (created afresh).
    #[arg(long, default_value = "messaging-console-demo.sqlite")]
    db: PathBuf,
    /// --demo: no generated traffic (only the seeded conversations).
    #[arg(long)]
    quiet: bool,
    /// Mark the session cookie Secure (serve behind HTTPS).
    #[arg(long)]
    secure_cookie: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    messaging_examples::observability::init_tracing();
    let password = match std::env::var("MESSAGING_CONSOLE_PASSWORD") {
        Ok(p) if !p.is_empty() => match Password::new(p) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("messaging-console: MESSAGING_CONSOLE_PASSWORD: {e}");
                std::process::exit(2);
            }
        },
        _ if args.demo => {
            let p = Password::generate();
            println!(
                "operator password (generated for this demo): {}",
                p.reveal()
            );
            p
        }
        _ => {
            eprintln!(
                "messaging-console: set MESSAGING_CONSOLE_PASSWORD (at least {} characters), or run with --demo",
                Password::MIN_LEN
            );
            std::process::exit(2);
        }
    };
    if !args.demo {
        eprintln!(
            "messaging-console: only --demo is available in this version (simulated providers); \
             to use real providers, build the console into your service: see messaging_examples::console"
        );
        std::process::exit(2);
    }
    let mut options = demo::DemoOptions::new(&args.db);
    options.traffic = !args.quiet;
    options.secure_cookie = args.secure_cookie;
    let demo = match demo::start(password, options).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("messaging-console: {e}");
            std::process::exit(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("messaging-console: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    println!("messaging-console: listening on http://{addr}/");
    println!(
        "telegram webhook: http://{addr}/webhooks/telegram secret: {}",
        demo.telegram_secret
    );
    let serve = axum::serve(listener, demo.app.clone()).with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    if let Err(e) = serve.await {
        eprintln!("messaging-console: {e}");
        std::process::exit(1);
    }
}
