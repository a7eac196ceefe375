//! Load test: 10,000 notifications through the real HTTP adapters to the in-process fake
//! providers, each fake enforcing its provider's rate limit.
//!
//! ```text
//! cargo run --release -p messaging-tests --example load
//! ```
//!
//! The four channels run in parallel, each sized to take about a minute at its allowed rate, and
//! every channel is paced by its adapter:
//!
//! | channel | adapter | allowed rate (the fake enforces it in a sliding second) | adapter setting |
//! |---|---|---|---|
//! | WhatsApp | `WabaChannel` (Cloud API) | 80 msg/s per number | `rate_limit(80)` (the default) |
//! | Telegram | `TelegramChannel` | 30 msg/s per bot, 1 msg/s per chat, 100 chats | `rate_limit(30)`, `chat_rate_limit(Some(Rate::per_second(1)))` (the defaults) |
//! | Max | `MaxBot` | 30 requests/s (Max's documented limit) | `rate_limit(30)` (the default) |
//! | SMS | `SmsRuChannel` | 30 requests/s (a configured value: SMS.ru documents none) | `SmsOptions::rate_limit(30)` |
//!
//! The adapters space requests evenly, `1/rate` apart plus a 3 % margin for jitter, with no
//! opening burst, and hold each request's turn until its answer is read, so that a request that
//! arrived late (the first ones open connections) holds back the ones that would share its
//! window: they reach about 97 % of the allowed rate and never exceed it in any sliding second
//! as the fakes count it. Each channel is driven by a pool of concurrent workers that call
//! `Channel::send` back to back; the harness adds no pacing of its own, so the achieved rate and
//! the rate-limit errors are the adapters'. Rate-limit errors are counted from the adapters'
//! answers (`ErrorKind::RateLimited`) and, where the fake counts them, by the fake.
//!
//! Prints one JSON line (`{"load": ...}`) and a table. Exits non-zero if any message failed.
//! `LOAD_SCALE` (a float, default 1.0) scales the message counts for a quicker run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use messaging::max::MaxBot;
use messaging::sms::SmsOptions;
use messaging::sms::smsru::SmsRuChannel;
use messaging::telegram::{Rate, TelegramChannel};
use messaging::waba::WabaChannel;
use messaging::{Address, Channel, ChannelExt, ErrorKind, Phone};
use messaging_tests::max::FakeMax;
use messaging_tests::sms::{FakeSms, Provider};
use messaging_tests::telegram::{FakeRateLimits, FakeTelegram};
use messaging_tests::waba::{FakeGraph, TOKEN};
use serde_json::json;

const WORKERS: usize = 64;

#[derive(Debug)]
struct Outcome {
    name: &'static str,
    allowed: f64,
    sent: usize,
    ok: usize,
    rate_limited: usize,
    other_errors: usize,
    fake_rate_limited: Option<usize>,
    elapsed: Duration,
}

impl Outcome {
    fn achieved(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

struct Counts {
    ok: AtomicUsize,
    rate_limited: AtomicUsize,
    other: AtomicUsize,
}

/// Sends `n` messages through `channel` with `WORKERS` concurrent workers; `address(i)` is the
/// address of message `i`.
async fn drive(
    channel: Arc<dyn Channel>,
    n: usize,
    address: impl Fn(usize) -> Address + Send + Sync + 'static,
) -> (Counts, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new(Counts {
        ok: AtomicUsize::new(0),
        rate_limited: AtomicUsize::new(0),
        other: AtomicUsize::new(0),
    });
    let address = Arc::new(address);
    let start = tokio::time::Instant::now();
    let mut workers = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        let (channel, next, counts, address) = (
            channel.clone(),
            next.clone(),
            counts.clone(),
            address.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let text = format!("Reminder {i}: your appointment is tomorrow at 10:00.");
                // A rate-limited send is counted and retried after `retry_after` (1 s when the
                // provider gives none), as the engine would: every message goes out in the end.
                loop {
                    match channel.send_text(address(i), &text).await {
                        Ok(_) => {
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(e) if e.kind() == ErrorKind::RateLimited => {
                            counts.rate_limited.fetch_add(1, Ordering::Relaxed);
                            let wait = e.retry_after().unwrap_or(Duration::from_secs(1));
                            tokio::time::sleep(wait).await;
                        }
                        Err(e) => {
                            eprintln!("{}: message {i} failed: {e}", channel.id());
                            counts.other.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker panicked");
    }
    let elapsed = start.elapsed();
    let counts = Arc::try_unwrap(counts).unwrap_or_else(|_| unreachable!("workers finished"));
    (counts, elapsed)
}

fn outcome(
    name: &'static str,
    allowed: f64,
    n: usize,
    (counts, elapsed): (Counts, Duration),
    fake_rate_limited: Option<usize>,
) -> Outcome {
    Outcome {
        name,
        allowed,
        sent: n,
        ok: counts.ok.into_inner(),
        rate_limited: counts.rate_limited.into_inner(),
        other_errors: counts.other.into_inner(),
        fake_rate_limited,
        elapsed,
    }
}

fn phone(i: usize) -> Address {
    let number = format!("+7912{:07}", i);
    Address::Phone(Phone::parse(&number).expect("valid Russian mobile number"))
}

fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64 * scale).round() as usize).max(1)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let scale: f64 = std::env::var("LOAD_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    // About 60 s per channel at its allowed rate; 10,000 in all at scale 1.
    let (n_wa, n_tg, n_max, n_sms) = (
        scaled(4_800, scale),
        scaled(1_800, scale),
        scaled(1_800, scale),
        scaled(1_600, scale),
    );
    let (wa_rate, tg_rate, max_rate, sms_rate) = (80u32, 30u32, 30u32, 30u32);
    const TG_CHATS: usize = 100;

    // WhatsApp: the fake allows 80 sends per second per number; the adapter paces at 80/s.
    let graph = FakeGraph::start().await;
    graph.set_rate_limit(Some(wa_rate));
    let wa = WabaChannel::cloud_api("wa", "1065000000000001", TOKEN)
        .base_url(graph.base_url())
        .rate_limit(wa_rate)
        // Every message goes to a different person, and the load test sends free text.
        .enforce_window(false)
        .build()
        .expect("WhatsApp channel");

    // Telegram: 30 per second per bot, one per second per chat, on both sides.
    let telegram = FakeTelegram::start().await;
    telegram.rate_limit(Some(FakeRateLimits::default()));
    let tg = TelegramChannel::builder("tg", FakeTelegram::TOKEN)
        .base_url(telegram.url())
        .rate_limit(30)
        .chat_rate_limit(Some(Rate::per_second(1)))
        .build()
        .expect("Telegram channel");

    // Max: the fake enforces Max's documented 30 requests per second; the adapter paces at 30/s.
    let max = FakeMax::start().await;
    max.set_rate_limit(Some(max_rate));
    let mx = MaxBot::builder(FakeMax::TOKEN)
        .base_url(max.url())
        .rate_limit(max_rate)
        .build()
        .expect("Max bot");

    // SMS.ru: the fake allows 30 requests per second; the adapter paces at 30/s.
    let sms = FakeSms::start().await;
    sms.rate_limit(Provider::SmsRu, sms_rate as usize, Duration::from_secs(1));
    let sm = SmsRuChannel::new(
        SmsOptions::new("sms").rate_limit(sms_rate),
        FakeSms::SMSRU_API_ID,
    )
    .base_url(sms.url());

    println!(
        "sending {} notifications: WhatsApp {n_wa}, Telegram {n_tg}, Max {n_max}, SMS {n_sms} ...",
        n_wa + n_tg + n_max + n_sms
    );
    let started = Instant::now();
    let (r_wa, r_tg, r_max, r_sms) = tokio::join!(
        drive(Arc::new(wa), n_wa, phone),
        drive(Arc::new(tg), n_tg, |i| Address::Telegram(
            1_000 + (i % TG_CHATS) as i64
        )),
        drive(Arc::new(mx), n_max, |i| Address::MaxUser(10_000 + i as i64)),
        drive(Arc::new(sm), n_sms, phone),
    );
    let wall = started.elapsed();

    let max_fake_429 = max.requests().iter().filter(|r| r.status == 429).count();
    let outcomes = [
        outcome("whatsapp", f64::from(wa_rate), n_wa, r_wa, None),
        outcome(
            "telegram",
            f64::from(tg_rate),
            n_tg,
            r_tg,
            Some(telegram.rate_limited_count()),
        ),
        outcome("max", f64::from(max_rate), n_max, r_max, Some(max_fake_429)),
        outcome("sms", f64::from(sms_rate), n_sms, r_sms, None),
    ];

    let total_sent: usize = outcomes.iter().map(|o| o.sent).sum();
    let total_ok: usize = outcomes.iter().map(|o| o.ok).sum();
    let total_429: usize = outcomes.iter().map(|o| o.rate_limited).sum();
    let total_other: usize = outcomes.iter().map(|o| o.other_errors).sum();
    let worst_ratio = outcomes
        .iter()
        .map(|o| o.achieved() / o.allowed)
        .fold(f64::INFINITY, f64::min);

    let channels: Vec<_> = outcomes
        .iter()
        .map(|o| {
            json!({
                "channel": o.name,
                "sent": o.sent,
                "ok": o.ok,
                "allowed_per_s": o.allowed,
                "achieved_per_s": (o.achieved() * 100.0).round() / 100.0,
                "ratio": (o.achieved() / o.allowed * 1000.0).round() / 1000.0,
                "rate_limit_errors": o.rate_limited,
                "fake_counted_rate_limited": o.fake_rate_limited,
                "other_errors": o.other_errors,
                "elapsed_s": (o.elapsed.as_secs_f64() * 100.0).round() / 100.0,
            })
        })
        .collect();
    println!(
        "{}",
        json!({"load": {
            "notifications": total_sent,
            "ok": total_ok,
            "rate_limit_errors": total_429,
            "other_errors": total_other,
            "worst_ratio": (worst_ratio * 1000.0).round() / 1000.0,
            "wall_s": (wall.as_secs_f64() * 100.0).round() / 100.0,
            "channels": channels,
        }})
    );

    println!();
    println!(
        "| channel  | sent  | ok    | allowed/s | achieved/s | ratio | 429s | other errors | seconds |"
    );
    println!(
        "|----------|-------|-------|-----------|------------|-------|------|--------------|---------|"
    );
    for o in &outcomes {
        println!(
            "| {:<8} | {:>5} | {:>5} | {:>9.1} | {:>10.2} | {:>5.3} | {:>4} | {:>12} | {:>7.1} |",
            o.name,
            o.sent,
            o.ok,
            o.allowed,
            o.achieved(),
            o.achieved() / o.allowed,
            o.rate_limited,
            o.other_errors,
            o.elapsed.as_secs_f64()
        );
    }
    println!(
        "| total    | {:>5} | {:>5} |           |            | {:>5.3} | {:>4} | {:>12} | {:>7.1} |",
        total_sent,
        total_ok,
        worst_ratio,
        total_429,
        total_other,
        wall.as_secs_f64()
    );
    println!(
        "\ntarget: ratio >= 0.95 on every channel ({}), 0 rate-limit errors ({})",
        if worst_ratio >= 0.95 {
            "met"
        } else {
            "NOT met"
        },
        if total_429 == 0 { "met" } else { "NOT met" },
    );
    if total_other > 0 {
        std::process::exit(1);
    }
}
