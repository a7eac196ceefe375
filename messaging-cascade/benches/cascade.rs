//! Submit-to-completion throughput with instant stub channels on the in-memory store, and
//! memory per pending cascade.
//!
//! `cargo bench -p messaging-core --bench cascade`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use messaging_cascade::engine::{Attempt, CascadeRecord, HistoryEntry};
use messaging_cascade::*;
use messaging_core::testkit::StubChannel;
use messaging_core::*;

fn engine(first_kind: ChannelKind) -> Engine {
    let first = StubChannel::new("first", first_kind).without_recording();
    engine_with(Arc::new(first), ManualClock::at_unix(1_767_250_800))
}

/// Two steps: `first`, then an instant SMS stub.
fn engine_with(first: Arc<StubChannel>, clock: ManualClock) -> Engine {
    Engine::builder()
        .clock(clock)
        .channel(first)
        .channel(Arc::new(
            StubChannel::new("sms", ChannelKind::Sms).without_recording(),
        ))
        .policy(CascadePolicy::new(
            "p",
            vec![Step::new("first"), Step::new("sms")],
        ))
        .build()
        .expect("valid engine")
}

fn notification(i: u64) -> Notification {
    // Distinct patients: distinct phones and Telegram chats.
    let r = Recipient::with_phone(
        format!("patient-{i}"),
        &format!("+7912{:07}", i % 10_000_000),
    )
    .expect("valid phone")
    .name("Анна Петровна")
    .address(Address::Telegram(i as i64));
    Notification::new(
        format!("appointment-{i}-reminder"),
        r,
        Content::text("Анна Петровна, напоминаем о приёме завтра в 10:00 у терапевта. Придёте?"),
    )
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("cascade");
    const BATCH: u64 = 10_000;
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    g.bench_function("submit_to_completion_instant_stub", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // A Telegram-like first step: "accepted" is the strongest evidence, so every
                // cascade completes on its first send.
                let e = engine(ChannelKind::Telegram);
                // Built outside the timed part: parsing phone numbers is the caller's work.
                let batch: Vec<Notification> = (0..BATCH).map(notification).collect();
                let start = Instant::now();
                rt.block_on(async {
                    for n in batch {
                        let s = e.submit(n).await.expect("submitted");
                        debug_assert!(s.outcome.is_some());
                    }
                });
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn memory_per_pending_cascade() {
    const N: u64 = 200_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // A WhatsApp-like first step waits for "delivered": every cascade stays pending.
    let e = engine(ChannelKind::WhatsApp);
    let before = resident_bytes();
    rt.block_on(async {
        for i in 0..N {
            e.submit(notification(i)).await.expect("submitted");
        }
        assert_eq!(e.store().count_active().await.expect("count"), N as usize);
    });
    let after = resident_bytes();
    // What a pending cascade is made of, to read the figure below against.
    println!(
        "sizes: record {} bytes, attempt {}, history entry {}, notification {} (recipient {}, content {})",
        std::mem::size_of::<CascadeRecord>(),
        std::mem::size_of::<Attempt>(),
        std::mem::size_of::<HistoryEntry>(),
        std::mem::size_of::<Notification>(),
        std::mem::size_of::<Recipient>(),
        std::mem::size_of::<Content>(),
    );
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "memory per pending cascade: {} bytes ({N} pending cascades, resident {} MiB -> {} MiB)",
            (a.saturating_sub(b)) / N,
            b / (1 << 20),
            a / (1 << 20)
        ),
        _ => println!("memory per pending cascade: skipped (no /proc/self/statm)"),
    }
}

/// Nanoseconds this thread has run on a CPU (Linux), so the figure holds on a busy machine.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// How many cascades the one-shot measurements use (`CASCADE_BENCH_N`, default 200,000), so a
/// profiler run can use fewer.
fn cascades() -> u64 {
    std::env::var("CASCADE_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000)
}

fn cpu_time_throughput() {
    let n = cascades();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let e = engine(ChannelKind::Telegram);
    // Built outside the timed part: parsing phone numbers is the caller's work, not the engine's.
    let batch: Vec<Notification> = (0..n).map(notification).collect();
    let wall = Instant::now();
    let cpu = thread_cpu_ns();
    rt.block_on(async {
        for n in batch {
            e.submit(n).await.expect("submitted");
        }
    });
    let wall = wall.elapsed().as_secs_f64();
    match (cpu, thread_cpu_ns()) {
        (Some(a), Some(b)) => println!(
            "submit to completion: {:.0} cascades per CPU-second on one core ({:.0} per wall-clock second; {n} cascades)",
            n as f64 / ((b - a) as f64 / 1e9),
            n as f64 / wall
        ),
        _ => println!(
            "submit to completion: {:.0} cascades per wall-clock second ({n} cascades)",
            n as f64 / wall
        ),
    }
}

/// The cost of a delivery report against the number of sends in channel health's sample window
/// (a WhatsApp campaign: thousands of sends within minutes, then their reports): it must not
/// grow with the window, or a campaign's reports cost the square of its size.
fn delivery_reports() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for n in [1_000u64, 10_000] {
        let clock = ManualClock::at_unix(1_767_250_800);
        let first = Arc::new(StubChannel::new("first", ChannelKind::WhatsApp).without_recording());
        let e = engine_with(first.clone(), clock.clone());
        let reports: Vec<Event> = (1..=n)
            .map(|k| {
                Event::Delivery(DeliveryReport::new(
                    ChannelKind::WhatsApp,
                    first.message_id(k),
                    DeliveryStatus::Delivered,
                    clock.now(),
                ))
            })
            .collect();
        // Wall-clock time: the scheduler's per-thread CPU count is too coarse for a few
        // milliseconds. Compare the two sizes of one run.
        let elapsed = rt.block_on(async {
            for i in 0..n {
                e.submit(notification(i)).await.expect("submitted");
            }
            let start = Instant::now();
            for r in &reports {
                e.handle_event(r).await.expect("applied");
            }
            start.elapsed()
        });
        let running = rt.block_on(e.store().count_active()).expect("count");
        assert_eq!(running, 0, "every report delivered its cascade");
        println!(
            "delivery report with {n} sends in the health window: {:.2} µs per report",
            elapsed.as_secs_f64() * 1e6 / n as f64
        );
    }
}

fn main() {
    if std::env::var_os("CASCADE_BENCH_SKIP_MEMORY").is_none() {
        memory_per_pending_cascade();
        delivery_reports();
    }
    cpu_time_throughput();
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c);
    c.final_summary();
}
