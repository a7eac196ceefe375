//! Webhook ingest benchmark: signed WhatsApp status callbacks from `wrk` on loopback, through
//! the real webhook router in journal mode on a SQLite store (fsync on every commit group), to a
//! sink that records what was applied; compared in the same run with raw SQLite appending the
//! same bodies.
//!
//! ```text
//! apt-get install wrk    # the load generator; without it the benchmark says so and exits 0
//! cargo run --release -p messaging-tests --example ingest
//! ```
//!
//! What it does:
//!
//! 1. opens a [`SqliteStore`] (default options: [`Durability::Full`], so every commit group is
//!    fsynced before any of its writers hears back) on a file in a temporary directory;
//! 2. serves the [`WebhookRouter`] with the WhatsApp handler ([`WabaWebhook`], real app secret,
//!    `X-Hub-Signature-256` checked over the raw body) in journal mode, its processor running and
//!    a sink that records every applied report, behind the hardened listener
//!    ([`listener::serve`]) on `127.0.0.1:0`;
//! 3. writes `INGEST_BODIES` distinct status callbacks (one status each, the Cloud API shape with
//!    conversation and pricing, distinct message ids) with their signatures, and a `wrk` Lua
//!    script that sends them in order (each `wrk` thread its own share, so no body is sent twice
//!    unless a share runs out, which is reported) and counts the answers by status;
//! 4. runs `wrk -t2 -c64 -d<INGEST_SECS>s --latency`, a closed loop: each of the 64 connections
//!    sends its next callback when the previous one is answered, so the offered rate is what the
//!    router answers;
//! 5. waits for the processor to apply everything recorded, and checks that every acknowledged
//!    (`2xx`) callback was applied: as many distinct message ids applied as `2xx` answers, none
//!    unknown;
//! 6. appends the same bodies with a plain rusqlite connection (same pragmas, same table and
//!    indexes as the journal, same fsync setting) in transactions of several sizes, and prints
//!    the router's rate against the best raw rate and against the raw rate at the router's own
//!    rows per commit.
//!
//! Prints one JSON line (`{"ingest": ...}`) and a table. Exits non-zero when an acknowledged
//! callback was not applied. Settings (environment): `INGEST_SECS` (default 10),
//! `INGEST_CONNECTIONS` (64), `INGEST_THREADS` (wrk threads, 2), `INGEST_BODIES` (default:
//! enough for 35,000 a second), `INGEST_DIR` (where the database goes; default a temporary
//! directory under the target dir's disk, `std::env::temp_dir()`), `INGEST_CONCURRENCY`
//! (the router's [`process_concurrency`](WebhookRouter::process_concurrency), default 64).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use messaging::conversations::listener::{self, ListenerConfig};
use messaging::journal::WebhookJournal;
use messaging::router::WebhookRouter;
use messaging::sink::{EventSink, SinkError};
use messaging::store::SqliteStore;
use messaging::store::sqlite::Durability;
use messaging::waba::WabaWebhook;
use messaging::webhook::hmac_sha256_hex;
use messaging::{DeliveryStatus, Event};
use serde_json::json;

const SECRET: &str = "meta-app-secret-for-the-ingest-benchmark";
const PATH: &str = "/webhooks/waba";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wamid(i: usize) -> String {
    format!("wamid.HBgLNzk5OTAwMDExMjIVAgARGBI{i:010}QUFERjg0NDEzNDdF")
}

/// One status callback as Meta sends it (`meta_status_sent_pmp.json`'s shape), compact.
fn status_body(i: usize, ts: i64) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": "15550783881",
                        "phone_number_id": "106540352242922"
                    },
                    "statuses": [{
                        "id": wamid(i),
                        "status": "delivered",
                        "timestamp": ts.to_string(),
                        "recipient_id": format!("7999{:07}", i % 10_000_000),
                        "conversation": {
                            "id": format!("72b14d6bd5407799e66f64d1{i:08x}"),
                            "expiration_timestamp": (ts + 86_400).to_string(),
                            "origin": {"type": "utility"}
                        },
                        "pricing": {
                            "billable": true,
                            "pricing_model": "PMP",
                            "type": "regular",
                            "category": "utility"
                        }
                    }]
                },
                "field": "messages"
            }]
        }]
    })
    .to_string()
}

/// The sink: every applied report's message id, and how many applications in all.
#[derive(Debug, Default)]
struct Applied {
    ids: Mutex<HashSet<String>>,
    applications: AtomicUsize,
}

impl Applied {
    fn distinct(&self) -> usize {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[async_trait]
impl EventSink for Applied {
    async fn handle(&self, event: &Event) -> Result<(), SinkError> {
        if let Event::Delivery(d) = event
            && d.status == DeliveryStatus::Delivered
        {
            self.applications.fetch_add(1, Ordering::Relaxed);
            self.ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(d.provider_message_id.as_str().to_owned());
        }
        Ok(())
    }
}

/// The wrk script: loads its thread's share of `requests.tsv` (`signature TAB body` per line),
/// sends it in order, counts answers by status, and prints one `INGEST_WRK` line at the end.
const LUA: &str = r#"
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local n = tonumber(args[1])
  local file = args[2]
  reqs = {}
  local i = 0
  for line in io.lines(file) do
    if i % n == id then
      local tab = string.find(line, "\t", 1, true)
      local sig = string.sub(line, 1, tab - 1)
      local body = string.sub(line, tab + 1)
      reqs[#reqs + 1] = wrk.format("POST", args[3], {
        ["Content-Type"] = "application/json",
        ["X-Hub-Signature-256"] = sig,
      }, body)
    end
    i = i + 1
  end
  next_req = 0
  sent = 0
  ok = 0
  busy = 0
  other = 0
end

function request()
  local r = reqs[(next_req % #reqs) + 1]
  next_req = next_req + 1
  sent = sent + 1
  return r
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  elseif status == 503 then
    busy = busy + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local ok_n, busy_n, other_n, sent_n, wrapped = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    ok_n = ok_n + t:get("ok")
    busy_n = busy_n + t:get("busy")
    other_n = other_n + t:get("other")
    local s = t:get("sent")
    sent_n = sent_n + s
    local share = #t:get("reqs")
    if s > share then wrapped = wrapped + (s - share) end
  end
  io.write(string.format(
    "INGEST_WRK ok=%d busy=%d other=%d sent=%d wrapped=%d requests=%d duration_us=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d max_us=%d connect_err=%d read_err=%d write_err=%d timeout_err=%d\n",
    ok_n, busy_n, other_n, sent_n, wrapped, summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
"#;

#[derive(Debug, Default)]
struct WrkResult {
    ok: u64,
    busy: u64,
    other: u64,
    wrapped: u64,
    requests: u64,
    duration_us: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    errors: u64,
}

fn parse_wrk(out: &str) -> Option<WrkResult> {
    let line = out.lines().find(|l| l.starts_with("INGEST_WRK "))?;
    let mut r = WrkResult::default();
    for kv in line.split_whitespace().skip(1) {
        let (k, v) = kv.split_once('=')?;
        let v: u64 = v.parse().ok()?;
        match k {
            "ok" => r.ok = v,
            "busy" => r.busy = v,
            "other" => r.other = v,
            "wrapped" => r.wrapped = v,
            "requests" => r.requests = v,
            "duration_us" => r.duration_us = v,
            "p50_us" => r.p50_us = v,
            "p90_us" => r.p90_us = v,
            "p99_us" => r.p99_us = v,
            "max_us" => r.max_us = v,
            k if k.ends_with("_err") => r.errors += v,
            _ => {}
        }
    }
    Some(r)
}

fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
}

/// The raw baseline: the journal's table and indexes, the store's pragmas, `rows` inserted in
/// transactions of `batch`. Returns rows per second.
fn raw_append(dir: &Path, name: &str, rows: &[(String, String)], batch: usize) -> f64 {
    let path = dir.join(format!("raw-{name}.db"));
    let c = rusqlite::Connection::open(&path).expect("open raw sqlite");
    let mode: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .expect("wal");
    assert!(mode.eq_ignore_ascii_case("wal"));
    c.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA cache_size = -8192; PRAGMA temp_store = MEMORY;
         CREATE TABLE webhook_journal (
             id          INTEGER PRIMARY KEY AUTOINCREMENT,
             key         TEXT UNIQUE,
             event       TEXT,
             recorded_ns INTEGER NOT NULL,
             due_ns      INTEGER,
             attempts    INTEGER NOT NULL DEFAULT 0,
             ended_ns    INTEGER,
             error       TEXT
         );
         CREATE INDEX webhook_journal_due ON webhook_journal (due_ns, id) WHERE due_ns IS NOT NULL;
         CREATE INDEX webhook_journal_ended ON webhook_journal (ended_ns) WHERE ended_ns IS NOT NULL;",
    )
    .expect("raw schema");
    let started = Instant::now();
    let mut done = 0;
    // At most 3 s per batch size: enough for a steady rate, short enough for small batches.
    for chunk in rows.chunks(batch.max(1)) {
        c.execute_batch("BEGIN IMMEDIATE").expect("begin");
        {
            let mut ins = c
                .prepare_cached(
                    "INSERT INTO webhook_journal (key, event, recorded_ns, due_ns)
                     VALUES (?1, ?2, ?3, ?3) ON CONFLICT (key) DO NOTHING",
                )
                .expect("prepare");
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
            for (key, body) in chunk {
                ins.execute(rusqlite::params![key, body, now])
                    .expect("insert");
            }
        }
        c.execute_batch("COMMIT").expect("commit");
        done += chunk.len();
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let rate = done as f64 / started.elapsed().as_secs_f64();
    drop(c);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    rate
}

fn main() {
    if !wrk_available() {
        println!(
            "ingest benchmark: `wrk` is not installed (apt-get install wrk); nothing measured"
        );
        return;
    }
    let secs = env_usize("INGEST_SECS", 10).max(1);
    let connections = env_usize("INGEST_CONNECTIONS", 64).max(1);
    let threads = env_usize("INGEST_THREADS", 2).clamp(1, connections);
    let bodies = env_usize("INGEST_BODIES", 35_000 * secs + 10_000);
    let concurrency = env_usize("INGEST_CONCURRENCY", 64).max(1);
    let tmp = match std::env::var_os("INGEST_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    let dir = tmp.path().to_owned();

    // The callbacks, written once for wrk and kept for the raw baseline.
    let ts = chrono::Utc::now().timestamp();
    let mut rows = Vec::with_capacity(bodies);
    {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.join("requests.tsv")).expect("requests file"),
        );
        for i in 0..bodies {
            let body = status_body(i, ts);
            let sig = format!(
                "sha256={}",
                hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes())
            );
            writeln!(f, "{sig}\t{body}").expect("write requests");
            rows.push((format!("dlr|waba|{}|Delivered", wamid(i)), body));
        }
        f.flush().expect("flush requests");
    }
    std::fs::write(dir.join("ingest.lua"), LUA).expect("write lua");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let applied = Arc::new(Applied::default());
    let db = dir.join("store.db");
    let (wrk, drained, pending_left) = runtime.block_on(run_router(
        &db,
        &dir,
        applied.clone(),
        secs,
        connections,
        threads,
        concurrency,
    ));
    drop(runtime);

    let distinct = applied.distinct();
    let applications = applied.applications.load(Ordering::Relaxed);
    let elapsed = wrk.duration_us as f64 / 1e6;
    let answered = wrk.ok + wrk.busy + wrk.other;
    let ok_rate = wrk.ok as f64 / elapsed;
    let offered_rate = answered as f64 / elapsed;
    // A body sent again after its thread's share ran out is a repeat, acknowledged and dropped.
    let fresh_acked = wrk.ok.saturating_sub(wrk.wrapped);
    let all_applied = distinct as u64 >= fresh_acked && pending_left == 0;

    // Raw SQLite on the same disk, same bodies, same fsync setting.
    let raw_rows = &rows[..rows.len().min(60_000)];
    let mut raw = Vec::new();
    for batch in [1usize, 8, 16, 32, 64, 128, 256, 512] {
        raw.push((batch, raw_append(&dir, &batch.to_string(), raw_rows, batch)));
    }
    let (best_batch, best_raw) = raw
        .iter()
        .copied()
        .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    // The largest commit group the router can form from the callbacks: one record per
    // connection waiting for its commit.
    let at_ours = raw
        .iter()
        .copied()
        .rfind(|(b, _)| *b <= connections)
        .unwrap_or((1, 0.0));

    let line = json!({"ingest": {
        "secs": secs,
        "connections": connections,
        "wrk_threads": threads,
        "process_concurrency": concurrency,
        "durability": format!("{:?}", Durability::Full),
        "answered": answered,
        "offered_per_sec": offered_rate.round(),
        "acked_2xx": wrk.ok,
        "busy_503": wrk.busy,
        "other_status": wrk.other,
        "socket_errors": wrk.errors,
        "resent_after_wrap": wrk.wrapped,
        "acked_per_sec": ok_rate.round(),
        "p50_ms": wrk.p50_us as f64 / 1000.0,
        "p90_ms": wrk.p90_us as f64 / 1000.0,
        "p99_ms": wrk.p99_us as f64 / 1000.0,
        "max_ms": wrk.max_us as f64 / 1000.0,
        "applied_distinct": distinct,
        "applications": applications,
        "drain_after_load_secs": drained.as_secs_f64(),
        "pending_left": pending_left,
        "every_acked_applied": all_applied,
        "raw_sqlite_rows_per_sec": raw.iter().map(|(b, r)| json!({"batch": b, "rows_per_sec": r.round()})).collect::<Vec<_>>(),
        "raw_best": {"batch": best_batch, "rows_per_sec": best_raw.round()},
        "ratio_to_raw_best": ok_rate / best_raw,
        "ratio_to_raw_at_batch": {"batch": at_ours.0, "ratio": ok_rate / at_ours.1},
    }});
    println!("{line}");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| wrk | -t{threads} -c{connections} -d{secs}s, closed loop, loopback, one status per callback |"
    );
    println!("| answered / s (offered) | {offered_rate:.0} |");
    println!(
        "| 2xx / 503 / other / socket errors | {} / {} / {} / {} |",
        wrk.ok, wrk.busy, wrk.other, wrk.errors
    );
    println!("| verified + persisted callbacks / s (2xx) | {ok_rate:.0} |");
    println!(
        "| latency p50 / p90 / p99 / max | {:.1} / {:.1} / {:.1} / {:.1} ms |",
        wrk.p50_us as f64 / 1000.0,
        wrk.p90_us as f64 / 1000.0,
        wrk.p99_us as f64 / 1000.0,
        wrk.max_us as f64 / 1000.0
    );
    println!(
        "| applied (distinct ids / applications) | {distinct} / {applications}, drained {:.1} s after the load |",
        drained.as_secs_f64()
    );
    for (b, r) in &raw {
        println!("| raw SQLite, {b} rows per commit | {r:.0} rows/s |");
    }
    println!(
        "| router / raw best ({best_batch} per commit) | {:.2} |",
        ok_rate / best_raw
    );
    println!(
        "| router / raw at {} per commit | {:.2} |",
        at_ours.0,
        ok_rate / at_ours.1
    );
    if !all_applied {
        eprintln!(
            "ingest benchmark: {fresh_acked} callbacks acknowledged, {distinct} applied, {pending_left} still pending"
        );
        std::process::exit(1);
    }
}

async fn run_router(
    db: &Path,
    dir: &Path,
    applied: Arc<Applied>,
    secs: usize,
    connections: usize,
    threads: usize,
    concurrency: usize,
) -> (WrkResult, Duration, usize) {
    let store = SqliteStore::open(db).await.expect("open store");
    let (app, processing) = WebhookRouter::new()
        .mount(PATH, Arc::new(WabaWebhook::new().app_secret(SECRET)))
        .journal(Arc::new(store.clone()))
        .process_concurrency(concurrency)
        .sink(applied.clone())
        .spawn()
        .expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listener::serve(
        listener,
        app,
        ListenerConfig::default(),
        async {
            let _ = stop_rx.await;
        },
    ));

    let script: PathBuf = dir.join("ingest.lua");
    let requests = dir.join("requests.tsv");
    let url = format!("http://{addr}{PATH}");
    let args = vec![
        format!("-t{threads}"),
        format!("-c{connections}"),
        format!("-d{secs}s"),
        "--timeout".into(),
        "10s".into(),
        "--latency".into(),
        "-s".into(),
        script.display().to_string(),
        url,
        "--".into(),
        threads.to_string(),
        requests.display().to_string(),
        PATH.into(),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new("wrk").args(&args).output())
        .await
        .expect("join wrk")
        .expect("run wrk");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let wrk = parse_wrk(&stdout).unwrap_or_else(|| {
        panic!(
            "wrk printed no result: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("{stdout}");

    // Everything acknowledged is in the journal; wait for the processor to apply it.
    let load_end = Instant::now();
    let deadline = load_end + Duration::from_secs(600);
    let fresh = wrk.ok.saturating_sub(wrk.wrapped) as usize;
    let mut pending = usize::MAX;
    while Instant::now() < deadline {
        pending = store.pending().await.unwrap_or(usize::MAX);
        if pending == 0 && applied.distinct() >= fresh {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = load_end.elapsed();
    let _ = stop_tx.send(());
    let _ = server.await;
    processing.abort();
    (wrk, drained, pending)
}
