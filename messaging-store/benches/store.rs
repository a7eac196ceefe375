//! Store benchmarks, measuring what an engine feels (a plain binary, `harness = false`).
//!
//! ```text
//! cargo bench -p messaging-store --all-features --bench store -- throughput sqlite
//! cargo bench -p messaging-store --all-features --bench store -- throughput sqlite 20000 10 256
//! cargo bench -p messaging-store --all-features --bench store -- throughput sqlite-normal
//! MESSAGING_TEST_DATABASE_URL='host=127.0.0.1 user=postgres dbname=test' \
//!   cargo bench -p messaging-store --all-features --bench store -- throughput postgres
//! cargo bench -p messaging-store --all-features --bench store -- lateness sqlite
//! cargo bench -p messaging-store --all-features --bench store -- lateness postgres
//! cargo bench -p messaging-store --all-features --bench store -- memory sqlite 1000000
//! cargo bench -p messaging-store --all-features --bench store -- compare sqlite 20000 5 64
//! cargo bench -p messaging-store --all-features --bench store -- compare sqlite 20000 5 512
//! MESSAGING_TEST_DATABASE_URL='host=127.0.0.1 user=postgres dbname=test' \
//!   cargo bench -p messaging-store --all-features --bench store -- throughput postgres-2 20000 5 64
//! cargo bench -p messaging-store --all-features --bench store -- encode
//! ```
//!
//! - `compare [records] [seconds] [writers] [rounds]`: the store with `writers` tasks each advancing its
//!   own cascades, against raw SQLite running the store's own statements (`sqlite::raw`, same
//!   schema, settings and records, another file on the same disk) from one thread, replaying
//!   the store phase's writes in their order at exactly `writers` rows per commit, its records
//!   encoded ahead by a second thread. `rounds` (default two) of a store phase, then its replay. Prints state changes per second of each and their ratio,
//!   rows per commit, bytes written per state change (the process's `write`/`pwrite` bytes from
//!   `/proc/self/io`: WAL frames and checkpoints) and the stored record among them
//!   (packed JSON, from SQLite migration 9 on).
//! - `throughput postgres-2`: two store instances (two pools, one schema), the tasks split
//!   between them: the aggregate rate and the update (= commit) latency.
//! - `encode`: the CPU a writer spends advancing and encoding a record per state change.
//!
//! - `throughput [records] [seconds] [tasks]`: sustained cascade state changes per second: 64 tasks (default), each advancing its own
//!   cascades, one `update()` of a realistic record (history and attempts growing over a
//!   cascade's life) per state change, for 10 s.
//! - `lateness`: 10,000 timers falling due at 1,000 per second; a driver sleeps until
//!   `next_wake`, claims what is due and hands it to workers that advance it; lateness is the
//!   time from `wake_at` to the claim returning it.
//! - `memory`: the resident memory of the process while 1,000,000 pending cascades are inserted
//!   into SQLite and then claimed and advanced: it must stay flat (the store caches nothing).
//!
//! Run without `--bench` (as `cargo test --benches` does), it does a seconds-long smoke run.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use messaging_cascade::Outcome;
use messaging_cascade::engine::{
    Attempt, AttemptState, CascadeRecord, HistoryEntry, HistoryKind, Phase,
};
use messaging_cascade::store::conformance::record;
use messaging_cascade::store::{CascadeStore, WindowStore};
use messaging_core::{ChannelId, Evidence, NotificationId, ProviderMessageId};

trait Store: CascadeStore + WindowStore + Clone {}
impl<T: CascadeStore + WindowStore + Clone> Store for T {}

/// One state change of a cascade's life, the way the engine writes them: intent to send, sent,
/// window closed and advanced, ..., then finished; then it starts over as a fresh cascade.
fn advance(r: &mut CascadeRecord, n: u64) {
    let now = Utc::now();
    let step = r.step;
    let channel = ChannelId::new(["wa-main", "tg", "max", "sms"][step % 4]);
    match r.phase.clone() {
        Phase::Ready => {
            r.attempts.push(Attempt {
                step,
                channel: channel.clone(),
                number: 1,
                started_at: now,
                sent_at: None,
                provider_message_id: None,
                evidence: None,
                evidence_at: None,
                state: AttemptState::InFlight,
                possible_duplicate: false,
                forced_template: false,
                cost: None,
                shortened_window: None,
                probe: false,
            });
            r.history.push(HistoryEntry {
                at: now,
                kind: HistoryKind::Sending {
                    step,
                    channel,
                    attempt: 1,
                    possible_duplicate: false,
                },
            });
            r.phase = Phase::Sending {
                attempt: r.attempts.len() - 1,
            };
            r.wake_at = Some(now + chrono::Duration::seconds(30));
        }
        Phase::Sending { attempt } => {
            let pmid = ProviderMessageId::new(format!("wamid.{}.{n}", r.id()));
            if let Some(a) = r.attempts.get_mut(attempt) {
                a.state = AttemptState::Sent;
                a.sent_at = Some(now);
                a.provider_message_id = Some(pmid.clone());
            }
            r.history.push(HistoryEntry {
                at: now,
                kind: HistoryKind::Sent {
                    step,
                    channel,
                    attempt: 1,
                    provider_message_id: pmid,
                },
            });
            let window_end = now + chrono::Duration::minutes(60);
            r.phase = Phase::Waiting {
                attempt,
                wait_for: Evidence::Delivered,
                window_end,
            };
            r.wake_at = Some(window_end);
        }
        Phase::Waiting { .. } if step < 3 => {
            r.history.push(HistoryEntry {
                at: now,
                kind: HistoryKind::WindowClosed {
                    step,
                    channel,
                    early: false,
                },
            });
            r.step += 1;
            r.phase = Phase::Ready;
            r.wake_at = Some(now);
        }
        Phase::Waiting { .. } => {
            r.history.push(HistoryEntry {
                at: now,
                kind: HistoryKind::Delivered {
                    step,
                    channel: channel.clone(),
                    evidence: Evidence::Delivered,
                },
            });
            r.phase = Phase::Finished(Outcome::Delivered {
                step,
                channel,
                evidence: Evidence::Delivered,
                late: false,
            });
            r.wake_at = None;
        }
        Phase::Finished(_) => {
            // A new cascade for the same slot: reset its life, keep the row.
            let fresh = record(r.id().as_str(), "+79123456789", Some(now));
            let version = r.version;
            *r = fresh;
            r.version = version;
        }
    }
}

fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn throughput<S: Store>(
    stores: Vec<S>,
    label: &str,
    records: usize,
    workers: usize,
    secs: u64,
) {
    let store = stores[0].clone();
    let per = (records / workers).max(1);
    let changes = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        // Worker `w` writes through instance `w % n`, as requests spread over service instances.
        let store = stores[w % stores.len()].clone();
        let (changes, conflicts, stop) = (changes.clone(), conflicts.clone(), stop.clone());
        set.spawn(async move {
            let mut recs = Vec::with_capacity(per);
            for i in 0..per {
                let r = record(
                    &format!("tp-{w:03}-{i:05}"),
                    "+79123456789",
                    Some(Utc::now()),
                );
                store.insert(&r).await.expect("insert");
                recs.push(r);
            }
            let mut lat = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = &mut recs[(n as usize) % per];
                advance(r, n);
                let t0 = Instant::now();
                match store.update(r).await {
                    Ok(v) => {
                        r.version = v;
                        changes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                        eprintln!("update failed: {e}");
                    }
                }
                lat.push(t0.elapsed().as_secs_f64() * 1e3);
                n += 1;
            }
            lat
        });
    }
    // Let every worker insert its records first.
    while store.count_active().await.expect("count") < per * workers {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c0 = changes.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let c1 = changes.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    while let Some(j) = set.join_next().await {
        lat.extend(j.expect("worker"));
    }
    lat.sort_by(f64::total_cmp);
    let (rss, hwm) = rss_mib();
    println!(
        "throughput {label}: {:.0} state changes/s over {elapsed:.1} s ({workers} tasks, {} cascades, \
         {} store instance(s)); update (commit) latency p50 {:.2} ms, p99 {:.2} ms; errors {}; \
         RSS {rss:.0} MiB (peak {hwm:.0})",
        (c1 - c0) as f64 / elapsed,
        per * workers,
        stores.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        conflicts.load(Ordering::Relaxed),
    );
}

async fn lateness<S: Store>(store: S, label: &str, timers: usize, per_sec: usize) {
    // Leave time to insert every timer (64 at a time) before the first falls due.
    let head_start = Duration::from_secs(2).max(Duration::from_millis(timers as u64 * 3 / 2));
    let start = Utc::now() + chrono::Duration::from_std(head_start).unwrap_or_default();
    let spacing = chrono::Duration::microseconds(1_000_000 / per_sec as i64);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..64 {
        let store = store.clone();
        set.spawn(async move {
            let mut i = w;
            while i < timers {
                let wake = start + spacing * i as i32;
                store
                    .insert(&record(&format!("lt-{i:06}"), "+79123456789", Some(wake)))
                    .await
                    .expect("insert");
                i += 64;
            }
        });
    }
    while let Some(j) = set.join_next().await {
        j.expect("inserter");
    }
    if Utc::now() > start {
        println!("lateness {label}: warning: inserting the timers took longer than the head start");
    }
    let mut late_ms = Vec::with_capacity(timers);
    let mut workers = tokio::task::JoinSet::new();
    let lease = Duration::from_secs(30);
    while late_ms.len() < timers {
        let now = Utc::now();
        let ids = store.claim_due(now, 256, lease).await.expect("claim");
        let claimed_at = Utc::now();
        if ids.is_empty() {
            let next = store.next_wake().await.expect("next_wake");
            let wait = next
                .map(|n| (n - Utc::now()).to_std().unwrap_or_default())
                .unwrap_or(Duration::from_millis(1))
                .min(Duration::from_millis(100));
            tokio::time::sleep(wait).await;
            continue;
        }
        for id in ids {
            let idx: i64 = id.as_str()[3..].parse().expect("id");
            let wake = start + spacing * idx as i32;
            late_ms.push((claimed_at - wake).num_microseconds().unwrap_or(0) as f64 / 1e3);
            // Advance it like an engine: read, change, write (clears the claim).
            let store = store.clone();
            workers.spawn(async move {
                let mut r = store.get(&id).await.expect("get").expect("present");
                r.phase = Phase::Finished(Outcome::Cancelled);
                r.wake_at = None;
                store.update(&r).await.expect("update");
            });
        }
        while workers.try_join_next().is_some() {}
    }
    while let Some(j) = workers.join_next().await {
        j.expect("worker");
    }
    late_ms.sort_by(f64::total_cmp);
    println!(
        "lateness {label}: {timers} timers at {per_sec}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&late_ms, 0.5),
        percentile(&late_ms, 0.99),
        late_ms.last().copied().unwrap_or(f64::NAN),
    );
}

#[cfg(feature = "sqlite")]
async fn memory(path: &std::path::Path, count: usize) {
    use messaging_store::SqliteStore;
    // Durability does not change memory; NORMAL only makes filling a million rows faster.
    let store = SqliteStore::open_with(
        path,
        messaging_store::SqliteOptions::default().durability(messaging_store::Durability::Normal),
    )
    .await
    .expect("open");
    let (rss0, _) = rss_mib();
    println!("memory sqlite: before inserting: RSS {rss0:.0} MiB");
    let tasks = 64;
    let t0 = Instant::now();
    let base = Utc::now() + chrono::Duration::hours(1);
    let mut samples = Vec::new();
    let chunk = count / 10;
    for part in 0..10 {
        let mut set = tokio::task::JoinSet::new();
        for w in 0..tasks {
            let store = store.clone();
            set.spawn(async move {
                let mut i = part * chunk + w;
                while i < (part + 1) * chunk {
                    let wake = base + chrono::Duration::milliseconds(i as i64);
                    store
                        .insert(&record(&format!("mem-{i:08}"), "+79123456789", Some(wake)))
                        .await
                        .expect("insert");
                    i += tasks;
                }
            });
        }
        while let Some(j) = set.join_next().await {
            j.expect("inserter");
        }
        let (rss, hwm) = rss_mib();
        samples.push(rss);
        println!(
            "memory sqlite: {:>8} pending cascades, RSS {rss:.0} MiB (peak {hwm:.0}), {:.0} inserts/s",
            (part + 1) * chunk,
            ((part + 1) * chunk) as f64 / t0.elapsed().as_secs_f64()
        );
    }
    assert_eq!(store.count_active().await.expect("count"), chunk * 10);
    // Work through some of them: claims, reads and updates touch pages all over the file.
    let t1 = Instant::now();
    let mut advanced = 0;
    let far = base + chrono::Duration::days(30);
    let target = (count / 20).min(50_000);
    while advanced < target {
        let ids = store
            .claim_due(far, 500, Duration::from_secs(60))
            .await
            .expect("claim");
        for id in ids {
            let mut r = store.get(&id).await.expect("get").expect("present");
            advance(&mut r, advanced as u64);
            store.update(&r).await.expect("update");
            advanced += 1;
        }
    }
    let _ = store.get(&NotificationId::new("mem-00999999")).await;
    let (rss, hwm) = rss_mib();
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / (1024.0 * 1024.0);
    println!(
        "memory sqlite: after advancing {advanced} of them in {:.1} s: RSS {rss:.0} MiB, peak {hwm:.0} MiB; \
         database file {size:.0} MiB; RSS after each 10% of inserts: {:?}",
        t1.elapsed().as_secs_f64(),
        samples.iter().map(|s| s.round() as i64).collect::<Vec<_>>()
    );
}

#[cfg(feature = "postgres")]
async fn pg_store(tag: &str) -> Option<messaging_store::PostgresStore> {
    use messaging_store::{PostgresOptions, PostgresStore};
    let Ok(config) = std::env::var("MESSAGING_TEST_DATABASE_URL") else {
        println!("skipped: MESSAGING_TEST_DATABASE_URL not set");
        return None;
    };
    let schema = format!("msbench_{tag}_{}", std::process::id());
    // Each instance its own pool of 32 (two instances of `postgres-2` share the schema).
    Some(
        PostgresStore::connect_with(
            &config,
            PostgresOptions::default().schema(schema).pool_size(32),
        )
        .await
        .expect("connect"),
    )
}

/// Bytes this process has handed to `write`/`pwrite` so far (`wchar` of `/proc/self/io`): the
/// WAL frames and checkpoint pages SQLite writes, since nothing else here writes to files.
fn written_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/io")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// What one phase of `compare` measured.
#[derive(Default)]
struct Measured {
    changes: u64,
    secs: f64,
    commits: u64,
    record_bytes: u64,
    written: u64,
    lat: Vec<f64>,
    waited: f64,
    busy: f64,
    linger: f64,
}

#[cfg(feature = "sqlite")]
fn fresh_records(writers: usize, per: usize) -> Vec<Vec<CascadeRecord>> {
    (0..writers)
        .map(|w| {
            (0..per)
                .map(|i| {
                    record(
                        &format!("cp-{w:03}-{i:05}"),
                        "+79123456789",
                        Some(Utc::now()),
                    )
                })
                .collect()
        })
        .collect()
}

#[cfg(feature = "sqlite")]
async fn filled_store(
    path: &std::path::Path,
    options: messaging_store::SqliteOptions,
    recs: &[Vec<CascadeRecord>],
) -> messaging_store::SqliteStore {
    let store = messaging_store::SqliteStore::open_with(path, options)
        .await
        .expect("open sqlite");
    let mut set = tokio::task::JoinSet::new();
    for own in recs {
        let (store, own) = (store.clone(), own.clone());
        set.spawn(async move {
            for r in &own {
                store.insert(r).await.expect("insert");
            }
        });
    }
    while let Some(j) = set.join_next().await {
        j.expect("inserter");
    }
    store
}

/// Our store: `writers` tasks, each advancing its own cascades one `update` at a time. Also
/// returns the writers in the order their updates went to the store, for [`raw_phase`] to
/// replay.
#[cfg(feature = "sqlite")]
async fn store_phase(
    store: &messaging_store::SqliteStore,
    recs: Vec<Vec<CascadeRecord>>,
    secs: u64,
) -> (Measured, Vec<Vec<CascadeRecord>>, Vec<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let tickets = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for (w, mut own) in recs.into_iter().enumerate() {
        let (store, stop, errors) = (store.clone(), stop.clone(), errors.clone());
        let tickets = tickets.clone();
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut mine = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let per = own.len();
                let r = &mut own[(n as usize) % per];
                advance(r, n);
                mine.push(tickets.fetch_add(1, Ordering::Relaxed));
                let t0 = Instant::now();
                match store.update(r).await {
                    Ok(v) => r.version = v,
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("update failed: {e}");
                    }
                }
                lat.push(t0.elapsed().as_secs_f64() * 1e3);
                n += 1;
            }
            (w, own, lat, mine)
        });
    }
    // Let every writer get going before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s0, b0, t0) = (store.writer_stats(), written_bytes(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (s1, b1, elapsed) = (store.writer_stats(), written_bytes(), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    let mut back: Vec<(usize, Vec<CascadeRecord>)> = Vec::new();
    let mut lat = Vec::new();
    let mut taken = Vec::new();
    while let Some(j) = set.join_next().await {
        let (w, own, l, mine) = j.expect("writer");
        back.push((w, own));
        lat.extend(l);
        taken.push((w, mine));
    }
    // Every writer has stopped: no ticket is taken any more.
    let mut order = vec![usize::MAX; tickets.load(Ordering::Relaxed) as usize];
    for (w, mine) in taken {
        for t in mine {
            order[t as usize] = w;
        }
    }
    assert!(
        order.iter().all(|&w| w != usize::MAX),
        "every write was ordered"
    );
    back.sort_by_key(|(w, _)| *w);
    assert_eq!(errors.load(Ordering::Relaxed), 0, "updates failed");
    let phase = Measured {
        changes: s1.writes - s0.writes,
        secs: elapsed.as_secs_f64(),
        commits: s1.commits - s0.commits,
        record_bytes: s1.record_bytes - s0.record_bytes,
        written: b1.zip(b0).map_or(0, |(b1, b0)| b1 - b0),
        lat,
        waited: 0.0,
        busy: (s1.busy_nanos - s0.busy_nanos) as f64 / 1e9,
        linger: (s1.linger_nanos - s0.linger_nanos) as f64 / 1e9,
    };
    (phase, back.into_iter().map(|(_, own)| own).collect(), order)
}

/// Raw SQLite: one thread running the store's own statements (`sqlite::raw`) on a connection
/// with the store's schema and settings, replaying the writes of the store phase before it:
/// the same records through the same changes, in the order they went to the store, exactly
/// `rows` per commit. A second thread advances and encodes the records ahead of it (as the
/// store's callers do before the writer sees them), so the SQLite thread only executes
/// statements.
///
/// A replay, not every writer in step: writers in step update rows that were inserted side by
/// side (the same index of every writer), so their commits touch a quarter fewer pages than
/// writers that drift apart, as independent writers do.
#[cfg(feature = "sqlite")]
fn raw_phase(
    raw: &mut messaging_store::sqlite::raw::RawWriter,
    mut recs: Vec<Vec<CascadeRecord>>,
    order: Vec<usize>,
    rows: usize,
) -> (Measured, Vec<Vec<CascadeRecord>>) {
    use messaging_store::sqlite::raw::EncodedUpdate;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<EncodedUpdate>>(8);
    let producer = std::thread::spawn(move || {
        // Each writer's updates, counted as the store phase counted them.
        let mut n = vec![0u64; recs.len()];
        for chunk in order.chunks(rows.max(1)) {
            let mut batch = Vec::with_capacity(chunk.len());
            for &w in chunk {
                let own = &mut recs[w];
                let per = own.len();
                let r = &mut own[(n[w] as usize) % per];
                advance(r, n[w]);
                batch.push(EncodedUpdate::of(r).expect("encode"));
                r.version += 1;
                n[w] += 1;
            }
            if tx.send(batch).is_err() {
                break;
            }
        }
        recs
    });
    let mut phase = Measured::default();
    // The producer's head start, as the store phase's writers get one.
    std::thread::sleep(Duration::from_millis(200));
    let (b0, t0) = (written_bytes(), Instant::now());
    loop {
        let w0 = Instant::now();
        let Ok(batch) = rx.recv() else { break };
        let t = Instant::now();
        let ok = raw.commit(&batch).expect("raw commit");
        assert_eq!(ok, batch.len(), "raw updates failed");
        phase.waited += (t - w0).as_secs_f64();
        phase.lat.push(t.elapsed().as_secs_f64() * 1e3);
        phase.changes += ok as u64;
        phase.commits += 1;
        phase.record_bytes += batch.iter().map(|u| u.record_bytes() as u64).sum::<u64>();
    }
    phase.secs = t0.elapsed().as_secs_f64();
    phase.written = written_bytes().zip(b0).map_or(0, |(b1, b0)| b1 - b0);
    (phase, producer.join().expect("producer"))
}

/// Our store against raw SQLite doing the same statements, same schema, same records, same
/// disk, in one run: `rounds` times a store phase of `secs` seconds, then raw SQLite replaying
/// its writes.
#[cfg(feature = "sqlite")]
async fn compare(
    dir: &std::path::Path,
    durability: messaging_store::Durability,
    records: usize,
    secs: u64,
    writers: usize,
    rounds: usize,
) {
    use messaging_store::SqliteOptions;
    let per = (records / writers).max(1);
    let options = SqliteOptions::default().durability(durability);
    let sync = match durability {
        messaging_store::Durability::Full => "FULL",
        _ => "NORMAL",
    };
    let mut store_recs = fresh_records(writers, per);
    let mut raw_recs = store_recs.clone();
    let store = filled_store(&dir.join("compare-store.db"), options.clone(), &store_recs).await;
    let raw_path = dir.join("compare-raw.db");
    drop(filled_store(&raw_path, options.clone(), &raw_recs).await);
    let mut raw =
        messaging_store::sqlite::raw::RawWriter::open(&raw_path, &options).expect("open raw");
    let (mut ours, mut base) = (Measured::default(), Measured::default());
    let add = |into: &mut Measured, p: Measured| {
        into.changes += p.changes;
        into.secs += p.secs;
        into.commits += p.commits;
        into.record_bytes += p.record_bytes;
        into.written += p.written;
        into.lat.extend(p.lat);
        into.waited += p.waited;
        into.busy += p.busy;
        into.linger += p.linger;
    };
    for _ in 0..rounds {
        let (p, back, order) = store_phase(&store, store_recs, secs).await;
        store_recs = back;
        add(&mut ours, p);
        let (p, back) =
            tokio::task::block_in_place(|| raw_phase(&mut raw, raw_recs, order, writers));
        raw_recs = back;
        add(&mut base, p);
        // The replay made the same changes: every record at the same version and phase (their
        // times differ, taken from the clock as each side ran).
        let same = store_recs
            .iter()
            .flatten()
            .zip(raw_recs.iter().flatten())
            .all(|(a, b)| {
                a.id() == b.id() && a.version == b.version && a.phase.name() == b.phase.name()
            });
        assert!(same, "raw SQLite replayed other writes than the store's");
    }
    let rate = |p: &Measured| p.changes as f64 / p.secs;
    let show = |name: &str, p: &mut Measured| {
        p.lat.sort_by(f64::total_cmp);
        println!(
            "compare sqlite (synchronous={sync}) {name}: {:.0} state changes/s; {:.1} rows per commit; \
             {:.0} bytes written per state change ({:.0} of them the stored record); p99 {} {:.2} ms",
            rate(p),
            p.changes as f64 / p.commits.max(1) as f64,
            p.written as f64 / p.changes.max(1) as f64,
            p.record_bytes as f64 / p.changes.max(1) as f64,
            if name.starts_with("store") {
                "update latency"
            } else {
                "commit"
            },
            percentile(&p.lat, 0.99),
        );
    };
    show(&format!("store, {writers} writers"), &mut ours);
    show(
        &format!("raw SQLite replaying the store's writes, {writers} rows per commit"),
        &mut base,
    );
    println!(
        "compare sqlite (synchronous={sync}): the store's writer was in commit groups {:.1}% of \
         the time, {:.1}% of it waiting for writes to fill them",
        100.0 * ours.busy / ours.secs.max(f64::EPSILON),
        100.0 * ours.linger / ours.secs.max(f64::EPSILON),
    );
    println!(
        "compare sqlite (synchronous={sync}): store / raw = {:.2} ({writers} writers, {} cascades, \
         {rounds} x {secs} s of the store, each replayed by raw SQLite); raw waited for its encoder {:.1}% of the time",
        rate(&ours) / rate(&base),
        per * writers,
        100.0 * base.waited / base.secs.max(f64::EPSILON),
    );
}

async fn run(args: &[String], smoke: bool) {
    let what = args.first().map(String::as_str).unwrap_or("all");
    let backend = args.get(1).map(String::as_str).unwrap_or("sqlite");
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let dir =
        tempfile::tempdir_in(std::env::var("MESSAGING_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("tempdir");
    let (records, secs, timers, mem) = if smoke {
        (640, 1, 300, 2_000)
    } else {
        (num(2, 20_000), num(3, 10) as u64, 10_000, num(2, 1_000_000))
    };
    let workers = if smoke { 64 } else { num(4, 64) };
    #[cfg(feature = "sqlite")]
    let sqlite = |d: messaging_store::Durability| {
        let path = dir.path().join(format!("bench-{}.db", rand_tag()));
        async move {
            messaging_store::SqliteStore::open_with(
                path,
                messaging_store::SqliteOptions::default().durability(d),
            )
            .await
            .expect("open sqlite")
        }
    };
    match (what, backend) {
        #[cfg(feature = "sqlite")]
        ("throughput", "sqlite") => {
            let s = sqlite(messaging_store::Durability::Full).await;
            throughput(vec![s], "sqlite (synchronous=FULL)", records, workers, secs).await;
        }
        #[cfg(feature = "sqlite")]
        ("throughput", "sqlite-normal") => {
            let s = sqlite(messaging_store::Durability::Normal).await;
            throughput(
                vec![s],
                "sqlite (synchronous=NORMAL)",
                records,
                workers,
                secs,
            )
            .await;
        }
        #[cfg(feature = "sqlite")]
        ("lateness", "sqlite") => {
            let s = sqlite(messaging_store::Durability::Full).await;
            lateness(s, "sqlite", timers, 1_000).await;
        }
        #[cfg(feature = "sqlite")]
        ("memory", _) => memory(&dir.path().join("memory.db"), mem).await,
        #[cfg(feature = "postgres")]
        ("throughput", "postgres") => {
            if let Some(s) = pg_store("tp").await {
                throughput(vec![s.clone()], "postgres", records, workers, secs).await;
                s.drop_schema().await.expect("drop");
            }
        }
        #[cfg(feature = "postgres")]
        ("throughput", "postgres-2") => {
            // Two instances: two pools on one schema, as two service instances would have.
            if let Some(a) = pg_store("tp2").await {
                let b = pg_store("tp2").await.expect("second instance");
                throughput(vec![a.clone(), b], "postgres", records, workers, secs).await;
                a.drop_schema().await.expect("drop");
            }
        }
        #[cfg(feature = "sqlite")]
        ("encode", _) => {
            // What a writer does before each update, alone: advance a record, encode it.
            use messaging_store::sqlite::raw::EncodedUpdate;
            let mut r = record("enc-000-00001", "+79123456789", Some(Utc::now()));
            let n = 20_000u64;
            let (mut adv, mut enc, mut bytes) = (Duration::ZERO, Duration::ZERO, 0usize);
            for i in 0..n {
                let t = Instant::now();
                advance(&mut r, i);
                let t1 = Instant::now();
                let e = EncodedUpdate::of(&r).expect("encode");
                enc += t1.elapsed();
                adv += t1 - t;
                bytes += e.record_bytes();
            }
            println!(
                "encode: advance {:.1} us, encode {:.1} us, {:.0} record bytes per state change",
                adv.as_secs_f64() * 1e6 / n as f64,
                enc.as_secs_f64() * 1e6 / n as f64,
                bytes as f64 / n as f64
            );
        }
        #[cfg(feature = "sqlite")]
        ("compare", "sqlite" | "sqlite-normal") => {
            let d = if backend == "sqlite" {
                messaging_store::Durability::Full
            } else {
                messaging_store::Durability::Normal
            };
            // Rounds (optional fifth number, default 2): more of them steady the ratio against
            // the disk, whose speed varies from one phase to the next.
            let (secs, rounds) = if smoke {
                (1, 1)
            } else {
                (num(3, 5) as u64, num(5, 2))
            };
            compare(dir.path(), d, records, secs, workers, rounds).await;
        }
        #[cfg(feature = "postgres")]
        ("lateness", "postgres") => {
            if let Some(s) = pg_store("lt").await {
                lateness(s.clone(), "postgres", timers, 1_000).await;
                s.drop_schema().await.expect("drop");
            }
        }
        _ => eprintln!(
            "usage: store (throughput|lateness) (sqlite|sqlite-normal|postgres|postgres-2) \
             | compare (sqlite|sqlite-normal) [records secs writers] | memory sqlite [count]"
        ),
    }
}

fn rand_tag() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let args: Vec<String> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if smoke {
            #[cfg(feature = "sqlite")]
            {
                run(&["throughput".into(), "sqlite".into()], true).await;
                run(&["compare".into(), "sqlite".into()], true).await;
                run(&["lateness".into(), "sqlite".into()], true).await;
                run(&["memory".into(), "sqlite".into()], true).await;
            }
            return;
        }
        run(&args, false).await;
    });
}
