//! No notice lost in a crash: child processes run cascades on a real store and are killed with
//! SIGKILL at random moments, several times. After the last run every notification has exactly
//! one terminal state, and every duplicate send is one of the attempts that were in flight at a
//! kill, marked `possible_duplicate` in the history.
//!
//! - `no_notice_lost_when_killed`: SQLite, 5,000 cascades; kills alternate between mid-run
//!   (after a random number of sends) and start-up (a random moment in the first 400 ms: opening
//!   and migrating the file, recovering the leases a previous kill left, the first submits).
//! - `no_notice_lost_when_killed_on_postgres`: the same on PostgreSQL (the service process is
//!   killed; the server keeps running), 2,000 cascades.
//! - `a_second_process_takes_over_when_one_is_killed`: two processes on one PostgreSQL schema,
//!   one killed mid-run; the other finishes every cascade, the dead one's leased attempts
//!   included.
//!
//! The PostgreSQL tests are skipped unless `MESSAGING_TEST_DATABASE_URL` is set.
//!
//! The child is this test executable again, started with `MESSAGING_CRASH_CHILD_DIR` set and
//! `--exact crash_child`; its channels append one line per send to `sends.log` before they
//! answer, so the parent counts the sends that really happened, including those whose receipts
//! were never stored. `MESSAGING_CRASH_SEED` replays the kill moments of an earlier run;
//! `MESSAGING_CRASH_TOTAL` and `MESSAGING_CRASH_KILLS` make a longer soak run by hand.
#![cfg(feature = "sqlite")]

mod common;

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

/// Cascades in the SQLite run (the figure the first crash test was built for).
const SQLITE_TOTAL: usize = 5_000;
/// Cascades in the PostgreSQL runs (a commit costs a round trip to the server).
const POSTGRES_TOTAL: usize = 2_000;
/// Tasks submitting (each drives its cascade's first step inline, so each may have one send in
/// flight).
const SUBMITTERS: usize = 16;
/// Cascades one tick drives at once.
const CONCURRENCY: usize = 16;
/// How long an attempt may be in flight before the engine counts its outcome as unknown.
const LEASE: Duration = Duration::from_secs(1);
/// Kills in the single-process runs (half mid-run, half at start-up).
const KILLS: usize = 6;
const CHILD_ENV: &str = "MESSAGING_CRASH_CHILD_DIR";
/// How many cascades the child runs.
const TOTAL_ENV: &str = "MESSAGING_CRASH_TOTAL";
/// `<libpq config>\n<schema>` when the child runs on PostgreSQL.
const PG_ENV: &str = "MESSAGING_CRASH_POSTGRES";

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Where the cascades are stored. (No `Debug`: the PostgreSQL config may hold a password.)
#[derive(Clone)]
enum Backend {
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres {
        config: String,
        schema: String,
    },
}

impl Backend {
    /// The backend the child was started for.
    fn from_env() -> Backend {
        #[cfg(feature = "postgres")]
        if let Ok(v) = std::env::var(PG_ENV)
            && let Some((config, schema)) = v.split_once('\n')
        {
            return Backend::Postgres {
                config: config.to_owned(),
                schema: schema.to_owned(),
            };
        }
        Backend::Sqlite
    }

    async fn open(&self, dir: &Path) -> Arc<dyn CascadeStore> {
        match self {
            Backend::Sqlite => Arc::new(
                SqliteStore::open(dir.join("store.db"))
                    .await
                    .expect("open SQLite store"),
            ),
            #[cfg(feature = "postgres")]
            Backend::Postgres { config, schema } => Arc::new(
                messaging_store::PostgresStore::connect_with(
                    config,
                    messaging_store::PostgresOptions::default()
                        .schema(schema.clone())
                        .pool_size(16),
                )
                .await
                .expect("connect to PostgreSQL"),
            ),
        }
    }

    fn child_env(&self, cmd: &mut Command) {
        match self {
            Backend::Sqlite => {
                cmd.env_remove(PG_ENV);
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres { config, schema } => {
                cmd.env(PG_ENV, format!("{config}\n{schema}"));
            }
        }
    }
}

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
    let total = env_usize(TOTAL_ENV).unwrap_or(SQLITE_TOTAL);
    let store = Backend::from_env().open(&dir).await;
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
        .store(store.clone())
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
            for i in (t..total).step_by(SUBMITTERS) {
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

fn spawn_child(dir: &Path, backend: &Backend, total: usize) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(TOTAL_ENV, total.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    backend.child_env(&mut cmd);
    cmd.spawn().expect("spawn child")
}

fn sends_logged(dir: &Path) -> usize {
    std::fs::read(dir.join("sends.log"))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// All records present in the store, by index.
async fn load(store: &dyn CascadeStore, total: usize) -> Vec<Option<CascadeRecord>> {
    let mut out = Vec::with_capacity(total);
    for i in 0..total {
        out.push(
            store
                .get(&NotificationId::new(id_of(i)))
                .await
                .expect("get"),
        );
    }
    out
}

/// Attempts in flight in the store now, as (notification, attempt index).
/// Waits until the attempts in flight stop changing. A statement the killed process sent may
/// still be finishing on a database server (PostgreSQL runs it to its end before it notices
/// the client is gone), and an attempt read as in flight could then settle after the read.
async fn settle(store: &dyn CascadeStore, total: usize) {
    let mut last = in_flight(&load(store, total).await);
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = in_flight(&load(store, total).await);
        if now == last {
            return;
        }
        last = now;
    }
}

fn in_flight(records: &[Option<CascadeRecord>]) -> Vec<(String, usize)> {
    records
        .iter()
        .flatten()
        .flat_map(|r| {
            r.attempts
                .iter()
                .enumerate()
                .filter(|(_, a)| matches!(a.state, AttemptState::InFlight))
                .map(|(i, _)| (r.id().as_str().to_owned(), i))
        })
        .collect()
}

/// Waits for `child` to exit by itself and checks it succeeded.
fn wait_for_success(mut child: Child, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{what} failed: {status}");
}

/// Starts a child and kills it with SIGKILL once `target` sends are logged in all.
fn kill_after_sends(dir: &Path, backend: &Backend, total: usize, target: usize, k: usize) {
    let mut child = spawn_child(dir, backend, total);
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

/// What the kills left, for the final check.
#[derive(Default)]
struct Kills {
    /// Attempts newly in flight at each kill.
    newly_in_flight: Vec<usize>,
    /// Every attempt in flight at some kill (in the two-process run, also the survivor's
    /// attempts that were in flight at that moment).
    caught: BTreeSet<(String, usize)>,
    /// Whether `caught` holds exactly the killed processes' attempts.
    exact: bool,
}

impl Kills {
    /// Reads the store after kill `k` and records what was in flight.
    async fn inspect(
        &mut self,
        store: &dyn CascadeStore,
        total: usize,
        k: usize,
        mid_run: bool,
        dir: &Path,
        bound: usize,
    ) {
        let active = store.count_active().await.expect("count");
        let records = load(store, total).await;
        let now = in_flight(&records);
        let in_flight = now.len();
        let new = now
            .into_iter()
            .filter(|a| self.caught.insert(a.clone()))
            .count();
        let stored = records.iter().flatten().count();
        println!(
            "kill {k} ({}): {} sends logged, {stored} cascades stored, {active} unfinished, \
             {in_flight} attempts in flight ({new} new)",
            if mid_run { "mid-run" } else { "start-up" },
            sends_logged(dir)
        );
        if mid_run {
            assert!(
                active > 0 || stored < total,
                "kill {k} came after the work was done"
            );
        }
        // Attempts still in flight from earlier kills wait for their lease; new ones are
        // bounded by what the engines run at once.
        assert!(
            new <= bound,
            "kill {k}: {new} new attempts in flight, more than the engines run at once"
        );
        self.newly_in_flight.push(new);
    }
}

/// The final check, once the last run has finished every cascade.
async fn verify(
    store: &dyn CascadeStore,
    total: usize,
    dir: &Path,
    kills: &Kills,
    per_kill_bound: usize,
) {
    assert_eq!(store.count_active().await.expect("count"), 0);
    // Sends that really happened, per (notification, step).
    let text = std::fs::read_to_string(dir.join("sends.log")).expect("read sends log");
    let mut sends: HashMap<(String, usize), usize> = HashMap::new();
    for line in text.lines() {
        let (id, step) = line.split_once(' ').expect("log line");
        let step: usize = step.parse().expect("step");
        *sends.entry((id.to_owned(), step)).or_default() += 1;
    }
    let records = load(store, total).await;
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
    let in_flight_total: usize = kills.newly_in_flight.iter().sum();
    if kills.exact {
        assert_eq!(
            unknown_attempts, kills.caught,
            "exactly the attempts in flight at the kills ended with an unknown outcome"
        );
    } else {
        assert!(
            unknown_attempts.is_subset(&kills.caught),
            "only attempts in flight at the kill ended with an unknown outcome: {:?}",
            unknown_attempts
                .difference(&kills.caught)
                .collect::<Vec<_>>()
        );
    }
    assert!(
        unknown <= in_flight_total,
        "{unknown} unknown outcomes, but only {in_flight_total} attempts were in flight at kills"
    );
    assert!(duplicates <= in_flight_total);
    assert!(duplicates <= kills.newly_in_flight.len() * per_kill_bound);
    assert!(
        in_flight_total > 0,
        "no kill caught an attempt in flight; the test proved nothing"
    );
    println!(
        "crash test: {total} cascades, {} kills, attempts newly in flight at each kill {:?}, \
         {unknown} outcomes unknown, {marked} resends marked possible duplicate, {duplicates} \
         duplicate sends observed, {} sends in all; all terminal",
        kills.newly_in_flight.len(),
        kills.newly_in_flight,
        text.lines().count(),
    );
}

fn seeded_rng() -> Rng {
    let seed = std::env::var("MESSAGING_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand_u64() | 1);
    println!("crash test seed {seed} (MESSAGING_CRASH_SEED to replay)");
    Rng(seed)
}

/// One process at a time, killed `kills` times (even kills mid-run, odd ones at start-up), then
/// a last run to the end.
async fn single_process_run(backend: Backend, dir: &Path, total: usize) {
    let started = Instant::now();
    let mut rng = seeded_rng();
    let kills_wanted = env_usize("MESSAGING_CRASH_KILLS").unwrap_or(KILLS);
    let bound = SUBMITTERS + CONCURRENCY;
    let mut kills = Kills {
        exact: true,
        ..Kills::default()
    };
    for k in 0..kills_wanted {
        let mid_run = k % 2 == 0;
        if mid_run {
            // Scaled to the run so that every mid-run kill comes before the end.
            let step = (total / (kills_wanted + 2)).max(10);
            let target = sends_logged(dir) + rng.below(step / 5, step);
            kill_after_sends(dir, &backend, total, target, k);
        } else {
            let mut child = spawn_child(dir, &backend, total);
            std::thread::sleep(Duration::from_millis(rng.below(5, 400) as u64));
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
        let store = backend.open(dir).await;
        settle(&*store, total).await;
        kills.inspect(&*store, total, k, mid_run, dir, bound).await;
    }
    wait_for_success(
        spawn_child(dir, &backend, total),
        Duration::from_secs(180),
        "the last run",
    );
    let store = backend.open(dir).await;
    verify(&*store, total, dir, &kills, bound).await;
    // Not the backend's Debug: a connection string may hold a password.
    let name = match backend {
        Backend::Sqlite => "SQLite",
        #[cfg(feature = "postgres")]
        Backend::Postgres { .. } => "PostgreSQL",
    };
    println!("{name}: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_notice_lost_when_killed() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let total = env_usize("MESSAGING_CRASH_TOTAL").unwrap_or(SQLITE_TOTAL);
    single_process_run(Backend::Sqlite, tmp.path(), total).await;
}

/// A fresh schema for a PostgreSQL run, or `None` (skipped) without a database.
#[cfg(feature = "postgres")]
fn postgres_backend(tag: &str) -> Option<Backend> {
    let config = common::pg_config()?;
    Some(Backend::Postgres {
        config,
        schema: common::unique_schema(tag),
    })
}

#[cfg(feature = "postgres")]
async fn drop_schema(backend: &Backend) {
    if let Backend::Postgres { config, schema } = backend {
        let store = messaging_store::PostgresStore::connect_with(
            config,
            messaging_store::PostgresOptions::default().schema(schema.clone()),
        )
        .await
        .expect("connect");
        store.drop_schema().await.expect("drop schema");
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_notice_lost_when_killed_on_postgres() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let Some(backend) = postgres_backend("crash") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let total = env_usize("MESSAGING_CRASH_TOTAL").unwrap_or(POSTGRES_TOTAL);
    let run = tokio::spawn({
        let backend = backend.clone();
        let dir = tmp.path().to_owned();
        async move { single_process_run(backend, &dir, total).await }
    })
    .await;
    drop_schema(&backend).await;
    if let Err(e) = run {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_takes_over_when_one_is_killed() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let Some(backend) = postgres_backend("takeover") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let total = env_usize("MESSAGING_CRASH_TOTAL").unwrap_or(POSTGRES_TOTAL);
    let run = tokio::spawn({
        let backend = backend.clone();
        let dir = tmp.path().to_owned();
        async move {
            let dir = dir.as_path();
            let mut rng = seeded_rng();
            // Both run every cascade (submits are idempotent); one is killed mid-run.
            let mut doomed = spawn_child(dir, &backend, total);
            let survivor = spawn_child(dir, &backend, total);
            let target = rng.below(total / 5, total / 2);
            let deadline = Instant::now() + Duration::from_secs(60);
            while sends_logged(dir) < target {
                assert!(
                    doomed.try_wait().expect("try_wait").is_none(),
                    "the first process ended before it could be killed"
                );
                assert!(Instant::now() < deadline, "no progress");
                std::thread::sleep(Duration::from_millis(2));
            }
            doomed.kill().expect("SIGKILL");
            doomed.wait().expect("reap");
            let store = backend.open(dir).await;
            // The survivor's attempts in flight at this moment are caught too: the check is
            // that every unknown outcome is among them.
            let mut kills = Kills::default();
            let bound = 2 * (SUBMITTERS + CONCURRENCY);
            kills.inspect(&*store, total, 0, true, dir, bound).await;
            // The survivor finishes everything, the dead process's leased attempts included.
            wait_for_success(survivor, Duration::from_secs(180), "the surviving process");
            verify(&*store, total, dir, &kills, bound).await;
        }
    })
    .await;
    drop_schema(&backend).await;
    if let Err(e) = run {
        std::panic::resume_unwind(e.into_panic());
    }
}
