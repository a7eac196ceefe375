//! No notice lost in a crash: a child process runs 5,000 cascades on the SQLite store and is
//! killed with SIGKILL at random moments, several times. After the last restart every
//! notification has exactly one terminal state, and every duplicate send is one of the attempts
//! that were in flight at a kill, marked `possible_duplicate` in the history.
//!
//! The child is this test executable again, started with `MESSAGING_CRASH_CHILD_DIR` set and
//! `--exact crash_child`; its channels append one line per send to `sends.log` before they
//! answer, so the parent counts the sends that really happened, including those whose receipts
//! were never stored. `MESSAGING_CRASH_SEED` replays the kill moments of an earlier run.
#![cfg(feature = "sqlite")]

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use messaging_cascade::engine::{AttemptState, CascadeRecord, HistoryKind};
use messaging_cascade::store::CascadeStore;
use messaging_cascade::{CascadePolicy, Engine, Notification, Step};
use messaging_core::{
    Capabilities, Channel, ChannelError, ChannelId, ChannelKind, Content, ErrorKind, Evidence,
    NotificationId, OutboundMessage, Recipient, SendReceipt, SystemClock, TextUnit,
};
use messaging_store::SqliteStore;

/// The figure.
const TOTAL: usize = 5_000;
/// Tasks submitting (each drives its cascade's first step inline, so each may have one send in
/// flight).
const SUBMITTERS: usize = 16;
/// Cascades one tick drives at once.
const CONCURRENCY: usize = 16;
/// How long an attempt may be in flight before the engine counts its outcome as unknown.
const LEASE: Duration = Duration::from_secs(1);
const KILLS: usize = 4;
const CHILD_ENV: &str = "MESSAGING_CRASH_CHILD_DIR";

fn id_of(i: usize) -> String {
    format!("crash-{i:05}")
}

/// Every fourth recipient has no WhatsApp: step 0 fails as unreachable and step 1 (SMS) sends.
fn wa_unreachable(id: &str) -> bool {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n % 4 == 0)
}

/// A channel that appends `<notification id> <step>` to the sends log before it answers.
#[derive(Debug)]
struct LoggingChannel {
    id: ChannelId,
    kind: ChannelKind,
    step: usize,
    log: Arc<Mutex<File>>,
}

#[async_trait]
impl Channel for LoggingChannel {
    fn id(&self) -> &ChannelId {
        &self.id
    }
    fn kind(&self) -> ChannelKind {
        self.kind
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(4096, TextUnit::Chars, Evidence::Delivered)
    }
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let id = message
            .notification_id
            .as_ref()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        {
            // One write(2) on an O_APPEND file: a line is either in the log or not.
            let mut f = self.log.lock().unwrap_or_else(|e| e.into_inner());
            f.write_all(format!("{id} {}\n", self.step).as_bytes())
                .expect("append to the sends log");
        }
        // The provider's answer takes a moment: a kill here loses the receipt of a real send.
        tokio::time::sleep(Duration::from_millis(1)).await;
        if self.step == 0 && wa_unreachable(&id) {
            return Err(ChannelError::new(
                ErrorKind::Unreachable,
                "no WhatsApp account",
            ));
        }
        Ok(SendReceipt::new(
            format!("{}-{id}-{}", self.id, rand_u64()),
            chrono::Utc::now(),
        ))
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A small deterministic generator for the kill moments (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, lo: usize, hi: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        lo + (x % (hi - lo) as u64) as usize
    }
}

/// The child: runs (or resumes) all cascades to the end, then exits 0.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful when started by `no_notice_lost_when_killed`.
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(child(PathBuf::from(dir)));
}

async fn child(dir: PathBuf) {
    let store = SqliteStore::open(dir.join("store.db"))
        .await
        .expect("open store");
    let log = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("sends.log"))
            .expect("open sends log"),
    ));
    let channel = |id: &str, kind, step| {
        Arc::new(LoggingChannel {
            id: ChannelId::from(id),
            kind,
            step,
            log: Arc::clone(&log),
        })
    };
    let policy = CascadePolicy::new(
        "crash",
        vec![
            Step::new("wa")
                .wait_for(Evidence::Accepted)
                .window(Duration::from_secs(600)),
            Step::new("sms")
                .wait_for(Evidence::Accepted)
                .window(Duration::from_secs(600)),
        ],
    );
    let engine = Engine::builder()
        .clock(SystemClock)
        .store(Arc::new(store.clone()))
        .channel(channel("wa", ChannelKind::WhatsApp, 0))
        .channel(channel("sms", ChannelKind::Sms, 1))
        .policy(policy)
        .without_health()
        .in_flight_lease(LEASE)
        .concurrency(CONCURRENCY)
        .claim_batch(256)
        .build()
        .expect("engine");

    // Idempotent: after a restart the ones already stored answer "exists".
    let mut submits = tokio::task::JoinSet::new();
    for t in 0..SUBMITTERS {
        let engine = engine.clone();
        submits.spawn(async move {
            for i in (t..TOTAL).step_by(SUBMITTERS) {
                let n = Notification::new(
                    id_of(i),
                    Recipient::with_phone(format!("p-{i}"), &format!("+7912{i:07}"))
                        .expect("phone"),
                    Content::text("Напоминаем: приём завтра в 10:00."),
                );
                engine.submit(n).await.expect("submit");
            }
        });
    }
    while let Some(j) = submits.join_next().await {
        j.expect("submit task");
    }
    // Then fire timers (leases of attempts in flight at the last kill) until all have ended.
    loop {
        let n = engine.tick().await.expect("tick");
        if store.count_active().await.expect("count") == 0 {
            break;
        }
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn spawn_child(dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

fn sends_logged(dir: &Path) -> usize {
    std::fs::read(dir.join("sends.log"))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// All records present in the store, by index.
async fn load(store: &SqliteStore) -> Vec<Option<CascadeRecord>> {
    let mut out = Vec::with_capacity(TOTAL);
    for i in 0..TOTAL {
        out.push(
            store
                .get(&NotificationId::new(id_of(i)))
                .await
                .expect("get"),
        );
    }
    out
}

fn is_terminal(k: &HistoryKind) -> bool {
    matches!(
        k,
        HistoryKind::Delivered { .. }
            | HistoryKind::LateDelivery { .. }
            | HistoryKind::Replied { .. }
            | HistoryKind::Unconfirmed
            | HistoryKind::Exhausted
            | HistoryKind::Expired
            | HistoryKind::Cancelled
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_notice_lost_when_killed() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let started = Instant::now();
    let seed = std::env::var("MESSAGING_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand_u64() | 1);
    println!("crash test seed {seed} (MESSAGING_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();

    let mut in_flight_at_kills = Vec::new();
    // (notification, attempt index) of every attempt in flight at some kill.
    let mut caught: BTreeSet<(String, usize)> = BTreeSet::new();
    for k in 0..KILLS {
        let before = sends_logged(dir);
        let target = before + rng.below(200, 1_500);
        let mut child = spawn_child(dir);
        let deadline = Instant::now() + Duration::from_secs(60);
        while sends_logged(dir) < target {
            assert!(
                child.try_wait().expect("try_wait").is_none(),
                "kill {k}: the child ended before it could be killed mid-run"
            );
            assert!(
                Instant::now() < deadline,
                "kill {k}: the child makes no progress"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "kill {k}: the child ended before the kill"
        );
        child.kill().expect("SIGKILL"); // SIGKILL on Unix
        child.wait().expect("reap");

        let store = SqliteStore::open(dir.join("store.db"))
            .await
            .expect("reopen after kill");
        let active = store.count_active().await.expect("count");
        let records = load(&store).await;
        let in_flight_now: Vec<(String, usize)> = records
            .iter()
            .flatten()
            .flat_map(|r| {
                r.attempts
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| matches!(a.state, AttemptState::InFlight))
                    .map(|(i, _)| (r.id().as_str().to_owned(), i))
            })
            .collect();
        let in_flight = in_flight_now.len();
        let new_in_flight = in_flight_now
            .into_iter()
            .filter(|k| caught.insert(k.clone()))
            .count();
        let stored = records.iter().flatten().count();
        println!(
            "kill {k}: {} sends logged, {stored} cascades stored, {active} unfinished, \
             {in_flight} attempts in flight ({new_in_flight} new)",
            sends_logged(dir)
        );
        assert!(
            active > 0 || stored < TOTAL,
            "kill {k} came after the work was done"
        );
        // Attempts still in flight from earlier kills wait for their lease; new ones are
        // bounded by what the engine runs at once.
        assert!(
            new_in_flight <= SUBMITTERS + CONCURRENCY,
            "kill {k}: {new_in_flight} new attempts in flight, more than the engine runs at once"
        );
        in_flight_at_kills.push(new_in_flight);
    }

    // The last run finishes.
    let mut child = spawn_child(dir);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the last run did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the last run failed: {status}");

    // Sends that really happened, per (notification, step).
    let text = std::fs::read_to_string(dir.join("sends.log")).expect("read sends log");
    let mut sends: HashMap<(String, usize), usize> = HashMap::new();
    for line in text.lines() {
        let (id, step) = line.split_once(' ').expect("log line");
        let step: usize = step.parse().expect("step");
        *sends.entry((id.to_owned(), step)).or_default() += 1;
    }

    let store = SqliteStore::open(dir.join("store.db"))
        .await
        .expect("reopen");
    assert_eq!(store.count_active().await.expect("count"), 0);
    let records = load(&store).await;
    let (mut duplicates, mut unknown, mut marked) = (0, 0, 0);
    let mut unknown_attempts: BTreeSet<(String, usize)> = BTreeSet::new();
    let mut logged_steps = 0;
    for (i, rec) in records.iter().enumerate() {
        let id = id_of(i);
        let rec = rec.as_ref().unwrap_or_else(|| panic!("{id} was lost"));
        let outcome = rec
            .outcome()
            .unwrap_or_else(|| panic!("{id} has no outcome"));
        assert_eq!(outcome.name(), "delivered", "{id}: {outcome:?}");
        let terminal: Vec<_> = rec
            .history
            .iter()
            .filter(|h| is_terminal(&h.kind))
            .collect();
        assert_eq!(terminal.len(), 1, "{id}: terminal entries {terminal:?}");
        assert!(
            rec.history.last().is_some_and(|h| is_terminal(&h.kind)),
            "{id}: the terminal entry is not the last"
        );
        for (k, a) in rec.attempts.iter().enumerate() {
            if matches!(a.state, AttemptState::Unknown) {
                unknown_attempts.insert((id.clone(), k));
            }
        }
        let last_step = usize::from(wa_unreachable(&id));
        for step in 0..2 {
            let sent = sends.get(&(id.clone(), step)).copied().unwrap_or(0);
            logged_steps += usize::from(sent > 0);
            let attempts: Vec<_> = rec.attempts.iter().filter(|a| a.step == step).collect();
            if step > last_step {
                assert!(attempts.is_empty() && sent == 0, "{id}: step {step} ran");
                continue;
            }
            let unknowns = attempts
                .iter()
                .filter(|a| matches!(a.state, AttemptState::Unknown))
                .count();
            let dup_marked = attempts.iter().filter(|a| a.possible_duplicate).count();
            let unknown_entries = rec
                .history
                .iter()
                .filter(
                    |h| matches!(h.kind, HistoryKind::OutcomeUnknown { step: s, .. } if s == step),
                )
                .count();
            assert!(sent >= 1, "{id}: step {step} never sent");
            assert!(
                sent <= attempts.len(),
                "{id}: step {step} sent {sent} times with {} attempts recorded",
                attempts.len()
            );
            assert_eq!(
                attempts.len(),
                1 + unknowns,
                "{id}: step {step}: every extra attempt follows an unknown outcome"
            );
            assert_eq!(unknown_entries, unknowns, "{id}: step {step}: history");
            assert_eq!(
                dup_marked, unknowns,
                "{id}: step {step}: each resend after an unknown outcome is marked"
            );
            assert!(
                sent - 1 <= dup_marked,
                "{id}: step {step}: {sent} sends but {dup_marked} marked possible duplicates"
            );
            assert!(
                attempts.last().is_some_and(|a| !matches!(
                    a.state,
                    AttemptState::Unknown | AttemptState::InFlight
                )),
                "{id}: step {step}: the last attempt is settled"
            );
            duplicates += sent - 1;
            unknown += unknowns;
            marked += dup_marked;
        }
    }
    assert_eq!(sends.len(), logged_steps, "sends logged for unknown ids");
    let in_flight_total: usize = in_flight_at_kills.iter().sum();
    assert_eq!(
        unknown_attempts, caught,
        "exactly the attempts in flight at the kills ended with an unknown outcome"
    );
    assert!(
        unknown <= in_flight_total,
        "{unknown} unknown outcomes, but only {in_flight_total} attempts were in flight at kills"
    );
    assert!(duplicates <= in_flight_total);
    assert!(duplicates <= KILLS * (SUBMITTERS + CONCURRENCY));
    assert!(
        in_flight_total > 0,
        "no kill caught an attempt in flight; the test proved nothing"
    );
    println!(
        "crash test: {TOTAL} cascades, {KILLS} kills, attempts newly in flight at each kill {in_flight_at_kills:?}, \
         {unknown} outcomes unknown, {marked} resends marked possible duplicate, {duplicates} \
         duplicate sends observed, {} sends in all; all terminal; {:?}",
        text.lines().count(),
        started.elapsed()
    );
}
