//! How the cost of running cascades grows with the number of pending ones (a plain binary,
//! `harness = false`).
//!
//! ```text
//! cargo bench -p messaging-store --all-features --bench scale -- sqlite
//! cargo bench -p messaging-store --all-features --bench scale -- sqlite 100000
//! MESSAGING_TEST_DATABASE_URL='host=127.0.0.1 user=postgres dbname=test' \
//!   cargo bench -p messaging-store --all-features --bench scale -- postgres
//! ```
//!
//! The store is filled to 10^3, 10^4, 10^5 and 10^6 pending cascades (up to the optional
//! second argument). The pending ones are scheduled for tomorrow, as reminders are: they sit in
//! the tables and the due index while the engine works. At each size it measures, through a
//! real [`Engine`] on the durable store (fsync on every commit) with instant stub channels:
//!
//! - **cascades per second**: 5,000 new cascades submitted by 64 tasks and run to completion
//!   (the insert carrying "about to send", then sent and finished: two commits each);
//! - **resident memory** of the process (the stores cache nothing: it must stay flat);
//! - **time per timer tick**: an idle `Engine::tick` (nothing due: the due-index lookup at this
//!   size), and a tick that finds 1,000 cascades due and sends each of them, per cascade.
//!
//! At the largest size it then measures **timer lateness**: 10,000 cascades fall due at 1,000
//! per second while `Engine::run` drives them on the system clock; lateness is the time from a
//! cascade's `wake_at` to the engine's "sending" entry for it. Last, the **store size per
//! finished cascade** before and after `purge_finished`: SQLite's live pages (page count less
//! free pages), PostgreSQL's relation sizes after `VACUUM FULL` of the store's tables.
//!
//! Run without `--bench` (as `cargo test --benches` does), it is a seconds-long smoke run.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use messaging_cascade::engine::HistoryKind;
use messaging_cascade::store::CascadeStore;
use messaging_cascade::store::conformance::record;
use messaging_cascade::{CascadePolicy, Engine, Notification, Step};
use messaging_core::testkit::StubChannel;
use messaging_core::{Address, ChannelKind, Content, Recipient};

/// The store's size on disk, as honestly as each backend can say it.
#[async_trait::async_trait]
trait Measured: Send + Sync {
    fn store(&self) -> Arc<dyn CascadeStore>;
    /// Bytes the store's tables and indexes take.
    async fn bytes(&self) -> u64;
    async fn cleanup(&self) {}
}

#[cfg(feature = "sqlite")]
struct Sqlite {
    store: messaging_store::SqliteStore,
    _dir: tempfile::TempDir,
}

#[cfg(feature = "sqlite")]
#[async_trait::async_trait]
impl Measured for Sqlite {
    fn store(&self) -> Arc<dyn CascadeStore> {
        Arc::new(self.store.clone())
    }
    async fn bytes(&self) -> u64 {
        // Live pages: the file itself does not shrink without VACUUM, its free pages are reused.
        let c = rusqlite::Connection::open(self.store.path()).expect("open for size");
        let q = |p: &str| -> u64 {
            c.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0))
                .expect("pragma") as u64
        };
        (q("page_count") - q("freelist_count")) * q("page_size")
    }
}

#[cfg(feature = "postgres")]
struct Postgres {
    store: messaging_store::PostgresStore,
    config: String,
}

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl Measured for Postgres {
    fn store(&self) -> Arc<dyn CascadeStore> {
        Arc::new(self.store.clone())
    }
    async fn bytes(&self) -> u64 {
        let (client, conn) = tokio_postgres::connect(&self.config, tokio_postgres::NoTls)
            .await
            .expect("connect for size");
        tokio::spawn(conn);
        let schema = self.store.schema();
        let tables = client
            .query(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind = 'r'",
                &[&schema],
            )
            .await
            .expect("tables");
        let mut total = 0i64;
        for t in tables {
            let name: String = t.get(0);
            let qualified = format!("\"{schema}\".\"{name}\"");
            // Dead row versions stay in the files until VACUUM FULL rewrites them.
            client
                .batch_execute(&format!("VACUUM FULL {qualified}"))
                .await
                .expect("vacuum");
            let row = client
                .query_one(
                    &format!("SELECT pg_total_relation_size('{qualified}'::regclass)"),
                    &[],
                )
                .await
                .expect("size");
            total += row.get::<_, i64>(0);
        }
        total as u64
    }
    async fn cleanup(&self) {
        self.store.drop_schema().await.expect("drop schema");
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// One policy, "clinic" (the name the conformance records carry): an SMS step that waits for
/// a delivery report (pending cascades and timers stay pending), after a Telegram step that
/// completes on acceptance (submitted cascades run to completion at once).
fn engine(store: Arc<dyn CascadeStore>) -> Engine {
    Engine::builder()
        .store(store)
        .channel(Arc::new(
            StubChannel::new("tg", ChannelKind::Telegram).without_recording(),
        ))
        .channel(Arc::new(
            StubChannel::new("sms", ChannelKind::Sms).without_recording(),
        ))
        .policy(CascadePolicy::new(
            "clinic",
            vec![Step::new("tg"), Step::new("sms")],
        ))
        .event_capacity(1 << 15)
        .build()
        .expect("engine")
}

/// Inserts cascades `from..to` with `wake(i)` as their timers, from 64 tasks.
async fn insert_range(
    store: &Arc<dyn CascadeStore>,
    prefix: &str,
    from: usize,
    to: usize,
    wake: impl Fn(usize) -> DateTime<Utc> + Clone + Send + 'static,
) {
    const TASKS: usize = 64;
    let prefix: Arc<str> = prefix.into();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..TASKS {
        let (store, wake, prefix) = (store.clone(), wake.clone(), prefix.clone());
        set.spawn(async move {
            let mut i = from + w;
            while i < to {
                store
                    .insert(&record(
                        &format!("{prefix}-{i:08}"),
                        "+79123456789",
                        Some(wake(i)),
                    ))
                    .await
                    .expect("insert");
                i += TASKS;
            }
        });
    }
    while let Some(j) = set.join_next().await {
        j.expect("inserter");
    }
}

/// Cascades per second: `n` new ones submitted by 64 tasks, each run to completion.
async fn submit_rate(engine: &Engine, level: usize, n: usize) -> f64 {
    const TASKS: usize = 64;
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..TASKS {
        let engine = engine.clone();
        set.spawn(async move {
            let mut i = w;
            while i < n {
                let mut r =
                    Recipient::with_phone(format!("p-{level}-{i}"), "+79123456789").expect("phone");
                r.addresses.push(Address::Telegram(5_000 + i as i64));
                let s = engine
                    .submit(Notification::new(
                        format!("run-{level}-{i}"),
                        r,
                        Content::text("Анна, напоминаем: приём завтра в 10:00. Придёте?"),
                    ))
                    .await
                    .expect("submit");
                assert!(
                    s.outcome.is_some(),
                    "a Telegram acceptance ends the cascade"
                );
                i += TASKS;
            }
        });
    }
    while let Some(j) = set.join_next().await {
        j.expect("submitter");
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Microseconds per idle tick, and per due cascade in a tick that finds `due` of them.
async fn tick_cost(
    engine: &Engine,
    store: &Arc<dyn CascadeStore>,
    level: usize,
    due: usize,
) -> (f64, f64) {
    const IDLE: u32 = 200;
    let t0 = Instant::now();
    for _ in 0..IDLE {
        assert_eq!(engine.tick().await.expect("tick"), 0, "nothing is due");
    }
    let idle = t0.elapsed().as_secs_f64() * 1e6 / f64::from(IDLE);
    let past = Utc::now() - chrono::Duration::seconds(1);
    insert_range(store, &format!("due{level}"), 0, due, move |_| past).await;
    let t1 = Instant::now();
    let mut fired = 0;
    while fired < due {
        fired += engine.tick().await.expect("tick");
    }
    let per_due = t1.elapsed().as_secs_f64() * 1e6 / due as f64;
    (idle, per_due)
}

/// Timer lateness with `timers` cascades falling due at `per_sec`, driven by `Engine::run`.
async fn lateness(
    engine: &Engine,
    store: &Arc<dyn CascadeStore>,
    timers: usize,
    per_sec: usize,
) -> (f64, f64, f64) {
    let head_start = Duration::from_secs(3).max(Duration::from_millis(timers as u64 * 2 / 3));
    let start = Utc::now() + chrono::Duration::from_std(head_start).expect("duration");
    let spacing = chrono::Duration::microseconds(1_000_000 / per_sec as i64);
    let wake = move |i: usize| start + spacing * i as i32;
    insert_range(store, "late", 0, timers, wake).await;
    if Utc::now() > start {
        println!("  warning: inserting the timers took longer than the head start");
    }
    let mut events = engine.subscribe();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .run(async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let mut late_ms = Vec::with_capacity(timers);
    let deadline =
        Instant::now() + head_start + Duration::from_secs((timers / per_sec) as u64 + 60);
    while late_ms.len() < timers && Instant::now() < deadline {
        // Quiet until the first timer falls due, then never more than 5 s between sends.
        let quiet = (start - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(5);
        match tokio::time::timeout(quiet, events.recv()).await {
            Ok(Ok(e)) => {
                let id = e.notification_id.as_str();
                if let (Some(i), HistoryKind::Sending { .. }) =
                    (id.strip_prefix("late-"), &e.entry.kind)
                {
                    let i: usize = i.parse().expect("index");
                    late_ms
                        .push((e.entry.at - wake(i)).num_microseconds().unwrap_or(0) as f64 / 1e3);
                }
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                println!("  warning: {n} engine events lagged and were not counted")
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let _ = stop.send(());
    runner.await.expect("engine run");
    if late_ms.len() < timers {
        println!("  warning: only {} of {timers} timers fired", late_ms.len());
    }
    late_ms.sort_by(f64::total_cmp);
    (
        percentile(&late_ms, 0.5),
        percentile(&late_ms, 0.99),
        late_ms.last().copied().unwrap_or(f64::NAN),
    )
}

async fn purge_all(store: &Arc<dyn CascadeStore>, ended_before: DateTime<Utc>) -> usize {
    let mut purged = 0;
    loop {
        match store
            .purge_finished(ended_before, 10_000)
            .await
            .expect("purge")
        {
            0 => return purged,
            n => purged += n,
        }
    }
}

async fn run(
    backend: &dyn Measured,
    label: &str,
    levels: &[usize],
    (batch, due, timers): (usize, usize, usize),
) {
    let store = backend.store();
    let engine = engine(store.clone());
    // Tomorrow, spread over an hour: never due while the benchmark runs.
    let tomorrow = Utc::now() + chrono::Duration::days(1);
    println!(
        "scale {label}: | pending | fill/s | cascades/s | RSS MiB | idle tick µs | per due cascade in a tick µs |"
    );
    // Pending cascades in the store, and how many of them are the `pending-*` fill.
    let (mut pending, mut filled) = (0, 0);
    for &level in levels {
        let t0 = Instant::now();
        let add = level.saturating_sub(pending);
        insert_range(&store, "pending", filled, filled + add, move |i| {
            tomorrow + chrono::Duration::milliseconds((i % 3_600_000) as i64)
        })
        .await;
        let fill = add as f64 / t0.elapsed().as_secs_f64();
        (pending, filled) = (pending + add, filled + add);
        let rate = submit_rate(&engine, level, batch).await;
        let (idle, per_due) = tick_cost(&engine, &store, level, due).await;
        println!(
            "scale {label}: | {pending} | {fill:.0} | {rate:.0} | {:.0} | {idle:.0} | {per_due:.0} |",
            rss_mib()
        );
        pending += due; // the due ones now wait for an SMS report
    }
    let (p50, p99, max) = lateness(&engine, &store, timers, 1_000).await;
    pending += timers;
    println!(
        "scale {label}: timer lateness with {pending} pending, {timers} timers at 1,000/s: \
         p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
    // Size per finished cascade: from a store holding only pending cascades, `batch` more
    // finish; then they are purged.
    let cutoff = || Utc::now() + chrono::Duration::seconds(1);
    purge_all(&store, cutoff()).await;
    let b0 = backend.bytes().await;
    submit_rate(&engine, 0, batch).await; // ids `run-0-*`: no size level is 0
    let b1 = backend.bytes().await;
    let purged = purge_all(&store, cutoff()).await;
    let b2 = backend.bytes().await;
    println!(
        "scale {label}: store bytes per finished cascade: {:.0} before purge, {:.0} after \
         (purged {purged}); {:.1} MiB with {pending} pending",
        (b1 as f64 - b0 as f64) / batch as f64,
        (b2 as f64 - b0 as f64) / batch as f64,
        b2 as f64 / (1 << 20) as f64,
    );
    backend.cleanup().await;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let args: Vec<String> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
    let backend = args.first().cloned().unwrap_or_else(|| "sqlite".into());
    let max: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let (levels, sizes): (Vec<usize>, _) = if smoke {
        (vec![100, 1_000], (200, 50, 300))
    } else {
        (
            [1_000, 10_000, 100_000, 1_000_000]
                .into_iter()
                .filter(|&l| l <= max)
                .collect(),
            (5_000, 1_000, 10_000),
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match backend.as_str() {
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                let dir = tempfile::tempdir_in(
                    std::env::var("MESSAGING_BENCH_DIR").unwrap_or_else(|_| ".".into()),
                )
                .expect("tempdir");
                let store = messaging_store::SqliteStore::open(dir.path().join("scale.db"))
                    .await
                    .expect("open sqlite");
                let b = Sqlite { store, _dir: dir };
                run(&b, "sqlite", &levels, sizes).await;
            }
            #[cfg(feature = "postgres")]
            "postgres" => {
                let Ok(config) = std::env::var("MESSAGING_TEST_DATABASE_URL") else {
                    println!("skipped: MESSAGING_TEST_DATABASE_URL not set");
                    return;
                };
                let store = messaging_store::PostgresStore::connect_with(
                    &config,
                    messaging_store::PostgresOptions::default()
                        .schema(format!("msscale_{}", std::process::id()))
                        .pool_size(32),
                )
                .await
                .expect("connect");
                run(&Postgres { store, config }, "postgres", &levels, sizes).await;
            }
            other => eprintln!("usage: scale (sqlite|postgres) [max pending]; unknown {other}"),
        }
    });
}
