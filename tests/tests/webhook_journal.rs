//! Acknowledged means durable: WhatsApp delivery reports, signed like Meta signs them, are sent
//! over real HTTP to a child process that serves the webhook router with the SQLite store as its
//! journal. The child is killed with SIGKILL right after it acknowledged the last call, then
//! restarted on the same file: every acknowledged report is applied, none that was not sent.
//!
//! The child is this test executable again, started with `MESSAGING_WEBHOOK_CHILD_DIR` set and
//! `--exact webhook_child`; its sink appends one line per applied report to `applied.log`
//! (one `write(2)` on an `O_APPEND` file, so a line is there or not, whatever the kill).
//! `without_a_journal_acknowledged_reports_are_lost` (ignored) runs the same scenario on the
//! in-memory queue, to show what the journal prevents.
//!
//! Also: a provider's replay after a restart (new router, same SQLite file) is not processed
//! twice.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use messaging::journal::WebhookJournal;
use messaging::router::WebhookRouter;
use messaging::sink::{EventSink, SinkError};
use messaging::store::SqliteStore;
use messaging::waba::WabaWebhook;
use messaging::webhook::hmac_sha256_hex;
use messaging::{DeliveryStatus, Event};
use serde_json::json;

const SECRET: &str = "meta-app-secret";
const CHILD_ENV: &str = "MESSAGING_WEBHOOK_CHILD_DIR";
const MODE_ENV: &str = "MESSAGING_WEBHOOK_CHILD_JOURNAL";
/// Reports in all, as in the issue.
const REPORTS: usize = 300;
/// Reports per webhook call (Meta batches statuses).
const PER_CALL: usize = 10;
/// Calls in flight at once.
const CONCURRENT_CALLS: usize = 8;
/// The lease of a claimed entry: a dead process's claims come back this long after.
const LEASE: Duration = Duration::from_secs(1);
/// What applying one report costs the sink (a store write in the engine).
const APPLY_COST: Duration = Duration::from_millis(5);

fn wamid(i: usize) -> String {
    format!("wamid.crash-{i:04}")
}

/// Meta's status webhook with `ids`, all delivered.
fn status_body(ids: &[String]) -> String {
    let ts = chrono::Utc::now().timestamp().to_string();
    let statuses: Vec<_> = ids
        .iter()
        .map(|id| json!({"id": id, "status": "delivered", "timestamp": ts, "recipient_id": "79990001122"}))
        .collect();
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": "106540352242922"},
            "statuses": statuses
        }}]}]
    })
    .to_string()
}

fn signature(body: &str) -> String {
    format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes())
    )
}

/// The sink: appends `<wamid> <status>` per applied report.
#[derive(Debug)]
struct Applying {
    log: Mutex<File>,
}

#[async_trait]
impl EventSink for Applying {
    async fn handle(&self, event: &Event) -> Result<(), SinkError> {
        tokio::time::sleep(APPLY_COST).await;
        if let Event::Delivery(d) = event {
            let line = format!("{} {:?}\n", d.provider_message_id, d.status);
            let mut f = self.log.lock().unwrap_or_else(|e| e.into_inner());
            f.write_all(line.as_bytes())?;
        }
        Ok(())
    }
}

/// The child: serves the router until killed.
#[test]
fn webhook_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful when started by the crash tests.
    };
    let journal = std::env::var(MODE_ENV).is_ok_and(|v| v == "1");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(child(PathBuf::from(dir), journal));
}

async fn child(dir: PathBuf, journal: bool) {
    let store = SqliteStore::open(dir.join("store.db"))
        .await
        .expect("open store");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("applied.log"))
        .expect("open applied log");
    let mut router = WebhookRouter::new()
        .mount("/wa", Arc::new(WabaWebhook::new().app_secret(SECRET)))
        .sink(Arc::new(Applying {
            log: Mutex::new(log),
        }))
        .queue_capacity(100_000)
        .poll_interval(Duration::from_millis(50))
        .claim_lease(LEASE);
    if journal {
        router = router.journal(Arc::new(store.clone()));
    }
    let (app, _processing) = router.spawn().expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Written then renamed: the parent never reads half a port.
    std::fs::write(dir.join("port.tmp"), port.to_string()).expect("write port");
    std::fs::rename(dir.join("port.tmp"), dir.join("port")).expect("publish port");
    axum::serve(listener, app).await.expect("serve");
}

fn spawn_child(dir: &Path, journal: bool) -> (Child, String) {
    let _ = std::fs::remove_file(dir.join("port"));
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--exact",
            "webhook_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(MODE_ENV, if journal { "1" } else { "0" })
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(port) = std::fs::read_to_string(dir.join("port")) {
            return (child, format!("http://127.0.0.1:{}/wa", port.trim()));
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the child exited before serving"
        );
        assert!(Instant::now() < deadline, "the child does not serve");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Applied reports by wamid, with how many times each was applied.
fn applied(dir: &Path) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(dir.join("applied.log")).unwrap_or_default();
    let mut out = HashMap::new();
    for line in text.lines() {
        let (id, status) = line.split_once(' ').expect("log line");
        assert_eq!(status, format!("{:?}", DeliveryStatus::Delivered));
        *out.entry(id.to_owned()).or_default() += 1;
    }
    out
}

/// Sends every report, retrying a call on `503` (as Meta does) until it is acknowledged.
/// Returns the acknowledged wamids.
async fn send_all(url: &str) -> BTreeSet<String> {
    let http = reqwest::Client::new();
    let calls: Vec<Vec<String>> = (0..REPORTS)
        .map(wamid)
        .collect::<Vec<_>>()
        .chunks(PER_CALL)
        .map(<[String]>::to_vec)
        .collect();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let next = Arc::new(Mutex::new(calls.into_iter()));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENT_CALLS {
        let (http, url, acked, next) = (http.clone(), url.to_owned(), acked.clone(), next.clone());
        senders.spawn(async move {
            loop {
                let Some(ids) = next.lock().unwrap_or_else(|e| e.into_inner()).next() else {
                    return;
                };
                let body = status_body(&ids);
                let mut tries = 0;
                loop {
                    tries += 1;
                    assert!(tries < 100, "a call is never acknowledged");
                    let resp = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("X-Hub-Signature-256", signature(&body))
                        .body(body.clone())
                        .send()
                        .await
                        .expect("post");
                    match resp.status().as_u16() {
                        200..=299 => break,
                        503 => tokio::time::sleep(Duration::from_millis(20)).await,
                        s => panic!("unexpected status {s}"),
                    }
                }
                acked.lock().unwrap_or_else(|e| e.into_inner()).extend(ids);
            }
        });
    }
    while let Some(r) = senders.join_next().await {
        r.expect("sender");
    }
    acked.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

struct CrashRun {
    acked: BTreeSet<String>,
    applied_at_kill: usize,
    applied: HashMap<String, usize>,
    elapsed: Duration,
}

/// Sends every report, kills the child right after the last acknowledgement, restarts it on
/// the same file and waits (up to `settle`) until every acknowledged report is applied.
async fn crash_run(journal: bool, settle: Duration) -> CrashRun {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (mut child, url) = spawn_child(dir, journal);
    let acked = send_all(&url).await;
    child.kill().expect("SIGKILL"); // SIGKILL on Unix, right after the last 2xx.
    child.wait().expect("reap");
    let applied_at_kill = applied(dir).len();

    let (mut child, _url) = spawn_child(dir, journal);
    let deadline = Instant::now() + settle;
    while Instant::now() < deadline && !acked.iter().all(|id| applied(dir).contains_key(id)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let anything processed twice show.
    tokio::time::sleep(LEASE + Duration::from_millis(300)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    CrashRun {
        acked,
        applied_at_kill,
        applied: applied(dir),
        elapsed: started.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_report_survives_a_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let run = crash_run(true, Duration::from_secs(20)).await;
    assert_eq!(
        run.acked.len(),
        REPORTS,
        "every call is acknowledged in the end"
    );
    assert!(
        run.applied_at_kill < REPORTS,
        "the kill came after everything was applied; the test proved nothing"
    );
    let missing: Vec<_> = run
        .acked
        .iter()
        .filter(|id| !run.applied.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged reports lost: {missing:?}",
        missing.len()
    );
    let unknown: Vec<_> = run
        .applied
        .keys()
        .filter(|id| !run.acked.contains(*id))
        .collect();
    assert!(unknown.is_empty(), "applied but never sent: {unknown:?}");
    // Each entry is marked as soon as its sinks return: only the one in the sink at the kill
    // can be applied again.
    let twice: Vec<_> = run.applied.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.len() <= 1 && twice.iter().all(|(_, n)| **n == 2),
        "applied more than once: {twice:?}"
    );
    println!(
        "webhook crash test (journal): {} reports acknowledged, {} applied at the SIGKILL, {} \
         applied after the restart, {} applied twice; {:?}",
        run.acked.len(),
        run.applied_at_kill,
        run.applied.len(),
        twice.len(),
        run.elapsed
    );
}

/// The behaviour before the journal: the in-memory queue loses what it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "demonstrates the loss the journal prevents; run with --ignored"]
async fn without_a_journal_acknowledged_reports_are_lost() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let run = crash_run(false, Duration::from_secs(2)).await;
    let lost = run
        .acked
        .iter()
        .filter(|id| !run.applied.contains_key(*id))
        .count();
    println!(
        "webhook crash test (no journal): {} reports acknowledged, {} applied at the SIGKILL, \
         {lost} lost; {:?}",
        run.acked.len(),
        run.applied_at_kill,
        run.elapsed
    );
    assert!(lost > 0, "nothing was lost this time");
}

/// A sink that records what it was handed.
#[derive(Debug, Default)]
struct Collect(Mutex<Vec<Event>>);

#[async_trait]
impl EventSink for Collect {
    async fn handle(&self, event: &Event) -> Result<(), SinkError> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
        Ok(())
    }
}

impl Collect {
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

async fn serve_once(
    store: &SqliteStore,
) -> (
    String,
    Arc<Collect>,
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let sink = Arc::new(Collect::default());
    let (app, processing) = WebhookRouter::new()
        .mount("/wa", Arc::new(WabaWebhook::new().app_secret(SECRET)))
        .journal(Arc::new(store.clone()))
        .poll_interval(Duration::from_millis(20))
        .sink(sink.clone())
        .spawn()
        .expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/wa", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    (url, sink, processing, stop)
}

async fn post(url: &str, body: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("X-Hub-Signature-256", signature(body))
        .body(body.to_owned())
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_restart_is_not_processed_twice() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("store.db");
    let ids: Vec<String> = (0..5).map(wamid).collect();
    let body = status_body(&ids);

    let store = SqliteStore::open(&path).await.expect("open");
    let (url, sink, processing, stop) = serve_once(&store).await;
    assert_eq!(post(&url, &body).await, 200);
    for _ in 0..200 {
        if sink.len() == 5 && store.pending().await.expect("pending") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.len(), 5);
    assert_eq!(store.pending().await.expect("pending"), 0);
    let _ = stop.send(());
    processing.await.expect("processor");
    drop(store);

    // A new process on the same file; Meta replays the call, and resends two of the reports
    // in a new body (another timestamp, so other bytes).
    let store = SqliteStore::open(&path).await.expect("reopen");
    let (url, sink, _processing, _stop) = serve_once(&store).await;
    assert_eq!(post(&url, &body).await, 200, "a replay is acknowledged");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resent = status_body(&ids[..2]);
    assert_ne!(resent, body);
    assert_eq!(post(&url, &resent).await, 200);
    // Something new still goes through.
    assert_eq!(post(&url, &status_body(&[wamid(99)])).await, 200);
    for _ in 0..200 {
        if sink.len() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = sink.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        matches!(&got[..], [Event::Delivery(d)] if d.provider_message_id.as_str() == wamid(99)),
        "only the new report is processed after the restart: {got:?}"
    );
}
