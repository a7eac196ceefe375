//! The SQLite store: one file, WAL, one writer thread that commits concurrent writes in groups,
//! and a few reader connections used from `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_cascade::engine::CascadeRecord;
use messaging_cascade::store::{CascadeStore, Inserted, MessageRef, StoreError, WindowStore};
use messaging_core::{ChannelId, NotificationId, ProviderMessageId};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::common::{ReportRow, Row, decode, from_ns, lease_end_ns, to_ns, version_from_sql};

/// The schema version this build writes. Opening a database with a newer one fails.
pub const SQLITE_SCHEMA_VERSION: u32 = 9;

const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        "
CREATE TABLE cascades (
    id             TEXT PRIMARY KEY NOT NULL,
    version        INTEGER NOT NULL,
    finished       INTEGER NOT NULL,
    wake_at_ns     INTEGER,
    lease_until_ns INTEGER,
    due_ns         INTEGER,
    reply_keys     TEXT NOT NULL,
    record         TEXT NOT NULL
);
CREATE INDEX cascades_due ON cascades (due_ns, id) WHERE due_ns IS NOT NULL;
CREATE TABLE messages (
    provider_message_id TEXT PRIMARY KEY NOT NULL,
    notification_id     TEXT NOT NULL,
    attempt             INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE reply_keys (
    key             TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    PRIMARY KEY (key, notification_id)
) WITHOUT ROWID;
CREATE TABLE windows (
    channel         TEXT NOT NULL,
    address_key     TEXT NOT NULL,
    last_inbound_ns INTEGER NOT NULL,
    PRIMARY KEY (channel, address_key)
) WITHOUT ROWID;
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('active', 0);
",
    ),
    (
        2,
        "
CREATE TABLE links (
    address_key    TEXT PRIMARY KEY NOT NULL,
    contact        TEXT NOT NULL,
    phone_digits   TEXT,
    address_digits TEXT,
    linked_at_ns   INTEGER NOT NULL,
    link           TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX links_contact ON links (contact);
CREATE INDEX links_phone ON links (phone_digits) WHERE phone_digits IS NOT NULL;
CREATE INDEX links_address_digits ON links (address_digits) WHERE address_digits IS NOT NULL;
CREATE TABLE used_tokens (
    token_id      TEXT PRIMARY KEY NOT NULL,
    expires_at_ns INTEGER NOT NULL,
    used_at_ns    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX used_tokens_expiry ON used_tokens (expires_at_ns);
",
    ),
    (
        3,
        "
CREATE TABLE gov_sends (
    channel       TEXT NOT NULL,
    at_ns         INTEGER NOT NULL,
    address       TEXT NOT NULL,
    new_recipient INTEGER NOT NULL
);
CREATE INDEX gov_sends_at ON gov_sends (channel, at_ns);
CREATE TABLE gov_contacted (
    channel      TEXT NOT NULL,
    key          TEXT NOT NULL,
    last_sent_ns INTEGER NOT NULL,
    PRIMARY KEY (channel, key)
) WITHOUT ROWID;
CREATE TABLE gov_wrote_to_us (key TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;
CREATE TABLE gov_marketing (key TEXT NOT NULL, at_ns INTEGER NOT NULL);
CREATE INDEX gov_marketing_key ON gov_marketing (key, at_ns);
CREATE TABLE gov_replies (channel TEXT NOT NULL, at_ns INTEGER NOT NULL);
CREATE INDEX gov_replies_at ON gov_replies (channel, at_ns);
CREATE TABLE gov_opt_out (key TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;
CREATE TABLE gov_connected (
    channel TEXT PRIMARY KEY NOT NULL,
    at_ns   INTEGER NOT NULL
) WITHOUT ROWID;
",
    ),
    (
        4,
        "
CREATE TABLE inbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    thread  TEXT NOT NULL,
    at_ns   INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX inbox_thread ON inbox (thread, at_ns, seq);
",
    ),
    (
        5,
        // Cascades that ended before this version get the migration's time as their end, so
        // retention counts from the upgrade and nothing is purged early.
        "
ALTER TABLE cascades ADD COLUMN ended_ns INTEGER;
UPDATE cascades SET ended_ns = unixepoch() * 1000000000 WHERE finished = 1;
CREATE INDEX cascades_ended ON cascades (ended_ns) WHERE ended_ns IS NOT NULL;
",
    ),
    (
        6,
        // The one opt-out record (`OptOutStore`) replaces the governor's own list; its keys
        // become opt-outs of every purpose said at the Unix epoch, before anything said since.
        "
CREATE TABLE opt_outs (
    key       TEXT NOT NULL,
    purpose   TEXT NOT NULL,
    opted_out INTEGER NOT NULL,
    at_ns     INTEGER NOT NULL,
    PRIMARY KEY (key, purpose)
) WITHOUT ROWID;
INSERT INTO opt_outs (key, purpose, opted_out, at_ns) SELECT key, '', 1, 0 FROM gov_opt_out;
DROP TABLE gov_opt_out;
",
    ),
    (
        7,
        // The webhook journal (`WebhookJournal`): verified events until processed, their keys
        // until purged. `due_ns` is set while pending, `ended_ns` once processed or failed.
        "
CREATE TABLE IF NOT EXISTS webhook_journal (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT UNIQUE,
    event       TEXT,
    recorded_ns INTEGER NOT NULL,
    due_ns      INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    ended_ns    INTEGER,
    error       TEXT
);
CREATE INDEX IF NOT EXISTS webhook_journal_due ON webhook_journal (due_ns, id)
    WHERE due_ns IS NOT NULL;
CREATE INDEX IF NOT EXISTS webhook_journal_ended ON webhook_journal (ended_ns)
    WHERE ended_ns IS NOT NULL;
",
    ),
    (
        8,
        // The columns the operator's reports read (`CascadeReports`): the phase or outcome,
        // its channel and the deadline of a running cascade (`cascades.state`, `channel`,
        // `deadline_ns`, added first by `add_report_columns`), and every attempt's cost. Filled
        // for existing cascades from their records by `backfill_reports`, in this migration's
        // transaction. Every step may run again on a database that has some of it.
        "
CREATE INDEX IF NOT EXISTS cascades_running ON cascades (state, channel) WHERE finished = 0;
CREATE INDEX IF NOT EXISTS cascades_deadline ON cascades (deadline_ns)
    WHERE deadline_ns IS NOT NULL;
CREATE TABLE IF NOT EXISTS attempt_costs (
    notification_id TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    channel         TEXT NOT NULL,
    day             TEXT NOT NULL,
    currency        TEXT NOT NULL,
    amount          REAL NOT NULL,
    PRIMARY KEY (notification_id, attempt)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attempt_costs_day ON attempt_costs (day, channel, currency);
",
    ),
    (
        9,
        // Records are stored LZ4-compressed (`pack`, converted by `pack_records` in this
        // migration's transaction): a record of 1.5-2 KiB of JSON takes about 55 %, so more
        // share a page and a commit group rewrites fewer table pages (they were ~85 % of the
        // pages it wrote).
        // Running cascades counted by (state, channel) in a few rows kept by every write,
        // instead of the index `cascades_running`: a state change rewrote two entries of that
        // index, scattered over its pages (8 of the ~120 pages a commit group of 64 changes
        // wrote, each twice: WAL and checkpoint), where the counts are one page per group. Cascades without a
        // state (records that could not be decoded) are reported nowhere, as before. May run
        // again over its own result.
        "
CREATE TABLE IF NOT EXISTS running_counts (
    state   TEXT NOT NULL,
    channel TEXT,
    n       INTEGER NOT NULL
);
DELETE FROM running_counts;
INSERT INTO running_counts (state, channel, n)
    SELECT state, channel, count(*) FROM cascades
    WHERE finished = 0 AND state IS NOT NULL GROUP BY state, channel;
DROP INDEX IF EXISTS cascades_running;
",
    ),
];

/// The migration whose transaction also fills the report columns of existing cascades.
const REPORTS_MIGRATION: u32 = 8;

/// The migration whose transaction also compresses the stored records (`pack_records`).
const PACKED_MIGRATION: u32 = 9;

/// The first byte of a packed record: an LZ4 block with its length before it. Another byte
/// would be another encoding.
const PACKED_LZ4: u8 = 1;

/// The largest record a packed one may unpack to, so that a corrupt length cannot make a
/// reader allocate gigabytes.
const MAX_RECORD_BYTES: usize = 64 << 20;

/// A record's JSON as stored from migration 9 on: [`PACKED_LZ4`] then the LZ4 block. JSON
/// compresses to about 55 %, so fewer table pages are rewritten per state change; LZ4 costs
/// about 3 us per record to pack, 0.4 us to unpack.
pub(crate) fn pack(json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() / 2 + 8);
    out.push(PACKED_LZ4);
    out.extend_from_slice(&lz4_flex::compress_prepend_size(json.as_bytes()));
    out
}

/// The inverse of [`pack`].
fn unpack(blob: &[u8]) -> Result<String, String> {
    let Some((&PACKED_LZ4, block)) = blob.split_first() else {
        return Err(format!("unknown record encoding {:?}", blob.first()));
    };
    let len = block
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .ok_or("truncated record")?;
    if usize::try_from(len).map_or(true, |l| l > MAX_RECORD_BYTES) {
        return Err(format!("packed record claims {len} bytes"));
    }
    let bytes = lz4_flex::decompress_size_prepended(block).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// A `record` column read back: JSON text (written before migration 9, or by hand) or a
/// [`pack`]ed blob.
pub(crate) struct StoredJson(pub String);

impl rusqlite::types::FromSql for StoredJson {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::{FromSqlError, ValueRef};
        match v {
            ValueRef::Text(t) => String::from_utf8(t.to_vec())
                .map(StoredJson)
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            ValueRef::Blob(b) => unpack(b)
                .map(StoredJson)
                .map_err(|e| FromSqlError::Other(e.into())),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// How hard a commit is pushed to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous = FULL`: every commit group is fsynced before any of its writers hears
    /// back. Survives process crashes and power loss. The default.
    #[default]
    Full,
    /// `synchronous = NORMAL`: survives process crashes (SIGKILL, panics); a power loss may
    /// roll back the last commits (the database stays consistent). Faster on slow disks.
    Normal,
}

/// Options for [`SqliteStore::open_with`].
///
/// ```
/// use messaging_store::sqlite::{Durability, SqliteOptions};
/// let opts = SqliteOptions::default().durability(Durability::Normal).readers(2);
/// assert_eq!(opts.readers, 2);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// fsync policy.
    pub durability: Durability,
    /// Reader connections (reads run in parallel with the writer). Default 4.
    pub readers: usize,
    /// The most writes committed in one transaction. Default 512.
    pub max_batch: usize,
    /// Page cache per connection, in KiB. Default 8 MiB. The store keeps no records in memory
    /// beyond this cache.
    pub cache_kib: u32,
    /// How long a write waits for another process holding the database lock. Default 5 s.
    pub busy_timeout: Duration,
    /// The longest the writer holds a commit group open for writes it expects (as many as were
    /// in the last group or queued behind it) before committing what it has. Default 2 ms;
    /// zero commits whatever is queued at once.
    pub linger: Duration,
    /// The WAL size, in pages, past which a commit copies the WAL's pages into the database
    /// file (`PRAGMA wal_autocheckpoint`; 0 never does). Default 4096, 16 MiB of 4 KiB pages,
    /// SQLite's own being 1000: a page changed by many commits in between (index pages,
    /// counters) is copied once, so each state change writes fewer bytes, for a larger WAL
    /// file (it keeps its largest size) and a longer pause at each checkpoint.
    pub wal_autocheckpoint: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            readers: 4,
            max_batch: 512,
            cache_kib: 8 * 1024,
            busy_timeout: Duration::from_secs(5),
            linger: Duration::from_millis(2),
            wal_autocheckpoint: 4096,
        }
    }
}

impl SqliteOptions {
    /// Sets the fsync policy.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }
    /// Sets the number of reader connections (at least 1).
    pub fn readers(mut self, n: usize) -> Self {
        self.readers = n.max(1);
        self
    }
    /// Sets the largest commit group (at least 1).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }
    /// Sets the page cache per connection, in KiB.
    pub fn cache_kib(mut self, kib: u32) -> Self {
        self.cache_kib = kib;
        self
    }
    /// Sets the longest a commit group waits to fill ([`SqliteOptions::linger`]).
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }
    /// Sets the WAL size, in pages, that triggers a checkpoint
    /// ([`SqliteOptions::wal_autocheckpoint`]).
    pub fn wal_autocheckpoint(mut self, pages: u32) -> Self {
        self.wal_autocheckpoint = pages;
        self
    }
}

/// What the writer thread has done since the store was opened ([`SqliteStore::writer_stats`]).
///
/// `writes / commits` is the average commit group; `record_bytes / writes` the record bytes a
/// write stores (one state change rewrites the record's JSON).
///
/// ```
/// use messaging_store::SqliteStore;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("cascades.db")).await?;
/// let stats = store.writer_stats();
/// assert_eq!((stats.commits, stats.writes), (0, 0));
/// # Ok::<(), messaging_core::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Transactions committed (a group that failed and was retried one by one counts each).
    pub commits: u64,
    /// Writes committed.
    pub writes: u64,
    /// Bytes of records stored by inserts and updates (packed JSON, from migration 9 on).
    pub record_bytes: u64,
    /// Nanoseconds the writer spent on commit groups, from taking a group's first write to
    /// its commit, waits for the rest included.
    pub busy_nanos: u64,
    /// Nanoseconds of `busy_nanos` spent waiting for more writes ([`SqliteOptions::linger`]).
    pub linger_nanos: u64,
}

/// Counters shared by the store's handles and its writer thread.
#[derive(Default)]
struct WriterShared {
    /// Jobs sent and not yet taken by the writer: the writes it knows are coming.
    queued: AtomicUsize,
    commits: AtomicU64,
    writes: AtomicU64,
    record_bytes: AtomicU64,
    busy_nanos: AtomicU64,
    linger_nanos: AtomicU64,
}

/// The embedded store: a SQLite file in WAL mode.
///
/// Writes (`insert`, `update`, `claim_due`, window changes) go to one writer thread, which
/// commits whatever writes are waiting in one transaction (group commit): each write is still
/// all-or-nothing and is acknowledged only after its group is durable. Reads run on a small pool
/// of reader connections through `spawn_blocking`. Nothing is cached in memory but SQLite's
/// page cache, so a million pending cascades cost disk, not RAM.
///
/// Clones share the same connections. Dropping the last clone stops the writer thread after it
/// has finished the writes already queued.
///
/// ```
/// use messaging_cascade::store::CascadeStore;
/// use messaging_store::SqliteStore;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("cascades.db")).await?;
/// assert_eq!(store.count_active().await?, 0);
/// # Ok::<(), messaging_core::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    counters: Arc<WriterShared>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("readers", &self.inner.readers.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn sql_err(context: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("sqlite: {context}: {e}"))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default options, and applies any
    /// missing migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (creating if needed) the database at `path`, and applies any missing migrations.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let p = path.clone();
        let config = WriterConfig {
            max_batch: options.max_batch.max(1),
            linger: options.linger,
        };
        let (writer_conn, readers) = tokio::task::spawn_blocking(move || {
            let mut w = connect(&p, &options, false)?;
            migrate(&mut w)?;
            let readers = (0..options.readers.max(1))
                .map(|_| connect(&p, &options, true).map(Mutex::new))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>((w, readers))
        })
        .await
        .map_err(StoreError::backend)??;
        let (tx, rx) = mpsc::channel::<Job>();
        let counters = Arc::new(WriterShared::default());
        let c = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer_conn, rx, config, &c))
            .map_err(|e| StoreError::Backend(format!("sqlite: cannot start writer thread: {e}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Shared {
                path,
                writer: tx,
                readers,
                next_reader: AtomicUsize::new(0),
                counters,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version of the open database.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        self.read(|c| {
            c.query_row("SELECT max(version) FROM schema_version", [], |r| {
                r.get::<_, Option<u32>>(0)
            })
            .map(|v| v.unwrap_or(0))
            .map_err(sql_err("reading schema version"))
        })
        .await
    }

    /// What the writer thread has committed so far: commit groups, writes, record bytes.
    pub fn writer_stats(&self) -> WriterStats {
        let c = &self.inner.counters;
        WriterStats {
            commits: c.commits.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            record_bytes: c.record_bytes.load(Ordering::Relaxed),
            busy_nanos: c.busy_nanos.load(Ordering::Relaxed),
            linger_nanos: c.linger_nanos.load(Ordering::Relaxed),
        }
    }

    pub(crate) async fn write(&self, op: Op) -> Result<Done, StoreError> {
        let (reply, rx) = oneshot::channel();
        // Counted before it is sent, so the writer never sees more jobs than the count.
        self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
        if self.inner.writer.send(Job { op, reply }).is_err() {
            self.inner.counters.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Backend(
                "sqlite: the writer thread has stopped".into(),
            ));
        }
        let Answer { result, relay } = rx
            .await
            .map_err(|_| StoreError::Backend("sqlite: the writer thread has stopped".into()))?;
        // The rest of this commit group learn their results now (see `Relay`).
        drop(relay);
        result
    }

    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let n = shared.readers.len();
            let start = shared.next_reader.fetch_add(1, Ordering::Relaxed) % n;
            // Take the first free reader, else wait for the round-robin one.
            for i in 0..n {
                if let Ok(c) = shared.readers[(start + i) % n].try_lock() {
                    return f(&c);
                }
            }
            let c = shared.readers[start]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            f(&c)
        })
        .await
        .map_err(StoreError::backend)?
    }
}

fn connect(path: &Path, o: &SqliteOptions, reader: bool) -> Result<Connection, StoreError> {
    let ctx = format!("opening {}", path.display());
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let c = Connection::open_with_flags(path, flags).map_err(sql_err(&ctx))?;
    c.busy_timeout(o.busy_timeout).map_err(sql_err(&ctx))?;
    let mode: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sql_err(&ctx))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "sqlite: {}: cannot switch to WAL (journal_mode is {mode})",
            path.display()
        )));
    }
    let sync = match o.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    c.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA cache_size = -{}; PRAGMA temp_store = MEMORY;
         PRAGMA wal_autocheckpoint = {};{}",
        o.cache_kib,
        o.wal_autocheckpoint,
        if reader {
            " PRAGMA query_only = ON;"
        } else {
            ""
        }
    ))
    .map_err(sql_err(&ctx))?;
    // Room for the update's variants (one per set of changed indexed columns).
    c.set_prepared_statement_cache_capacity(64);
    Ok(c)
}

fn migrate(c: &mut Connection) -> Result<(), StoreError> {
    let e = sql_err("migrating");
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version    INTEGER PRIMARY KEY NOT NULL,
            applied_at INTEGER NOT NULL
        )",
    )
    .map_err(&e)?;
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&e)?;
    let current: u32 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(&e)?;
    if current > SQLITE_SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "sqlite: the database has schema version {current}, newer than this build's \
             {SQLITE_SCHEMA_VERSION}; upgrade messaging-store"
        )));
    }
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        if *v == REPORTS_MIGRATION {
            add_report_columns(&tx).map_err(&e)?;
        }
        tx.execute_batch(sql).map_err(&e)?;
        if *v == REPORTS_MIGRATION {
            backfill_reports(&tx).map_err(&e)?;
        }
        if *v == PACKED_MIGRATION {
            pack_records(&tx).map_err(&e)?;
        }
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, unixepoch())",
            [v],
        )
        .map_err(&e)?;
        tracing::info!(version = v, "messaging-store: applied SQLite migration");
    }
    tx.commit().map_err(&e)
}

/// Adds the report columns of `cascades` that are missing (SQLite has no `ADD COLUMN IF NOT
/// EXISTS`).
fn add_report_columns(c: &Connection) -> rusqlite::Result<()> {
    let have: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_info('cascades')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, ty) in [
        ("state", "TEXT"),
        ("channel", "TEXT"),
        ("deadline_ns", "INTEGER"),
    ] {
        if !have.iter().any(|h| h == name) {
            c.execute_batch(&format!("ALTER TABLE cascades ADD COLUMN {name} {ty}"))?;
        }
    }
    Ok(())
}

/// Fills the report columns and `attempt_costs` of every cascade from its record, in batches by
/// id. A record that cannot be decoded keeps empty columns (it is reported nowhere) and a warning
/// names it.
fn backfill_reports(c: &Connection) -> rusqlite::Result<()> {
    let mut after = String::new();
    let mut filled = 0usize;
    loop {
        let batch: Vec<(String, String)> = c
            .prepare_cached("SELECT id, record FROM cascades WHERE id > ?1 ORDER BY id LIMIT 500")?
            .query_map([&after], |r| Ok((r.get(0)?, r.get::<_, StoredJson>(1)?.0)))?
            .collect::<rusqlite::Result<_>>()?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = last.clone();
        for (id, json) in &batch {
            match decode(id, json, 0).and_then(|rec| ReportRow::of(&rec)) {
                Ok(report) => {
                    c.prepare_cached(
                        "UPDATE cascades SET state = ?2, channel = ?3, deadline_ns = ?4
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        report.state,
                        report.channel,
                        report.deadline_ns
                    ])?;
                    add_costs(c, id, &report)?;
                    filled += 1;
                }
                Err(err) => {
                    tracing::warn!(cascade = %id, error = %err, "messaging-store: a record that cannot be decoded is left out of the reports");
                }
            }
        }
    }
    tracing::info!(
        cascades = filled,
        "messaging-store: filled the report columns"
    );
    Ok(())
}

/// Compresses every record still stored as JSON text ([`pack`]), in batches by id. Only the
/// `record` column is set: no index changes.
fn pack_records(c: &Connection) -> rusqlite::Result<()> {
    let mut after = String::new();
    let mut packed = 0usize;
    loop {
        let batch: Vec<(String, String)> = c
            .prepare_cached(
                "SELECT id, record FROM cascades WHERE id > ?1 AND typeof(record) = 'text'
                 ORDER BY id LIMIT 500",
            )?
            .query_map([&after], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = last.clone();
        let mut upd = c.prepare_cached("UPDATE cascades SET record = ?2 WHERE id = ?1")?;
        for (id, json) in &batch {
            upd.execute(params![id, pack(json)])?;
        }
        packed += batch.len();
    }
    tracing::info!(
        cascades = packed,
        "messaging-store: compressed the stored records"
    );
    Ok(())
}

/// The `attempt_costs` rows of a record (an attempt's cost is set once, when it is accepted).
fn add_costs(c: &Connection, id: &str, report: &ReportRow) -> rusqlite::Result<()> {
    if report.costs.is_empty() {
        return Ok(());
    }
    let mut ins = c.prepare_cached(
        "INSERT OR IGNORE INTO attempt_costs
           (notification_id, attempt, channel, day, currency, amount)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for cost in &report.costs {
        ins.execute(params![
            id,
            cost.attempt,
            cost.channel,
            cost.day.to_string(),
            cost.currency,
            cost.amount
        ])?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The writer thread.

pub(crate) enum Op {
    Insert(Row),
    Update(Row),
    Claim {
        now: i64,
        limit: i64,
        lease_end: i64,
    },
    Inbound {
        channel: String,
        key: String,
        at: i64,
    },
    Close {
        channel: String,
        key: String,
    },
    Purge {
        ended_before: i64,
        limit: i64,
    },
    /// A write of another store (identities, tokens), run in the writer's transaction. It may
    /// run twice when its commit group fails, so it must only touch the database.
    Run(RunFn),
}

/// A custom write; see [`Op::Run`].
pub(crate) type RunFn = Box<dyn Fn(&Connection) -> rusqlite::Result<OpResult> + Send>;

pub(crate) enum Done {
    Inserted,
    Exists {
        json: String,
        version: i64,
    },
    Updated(u64),
    Claimed(Vec<String>),
    Purged(usize),
    Ok,
    /// The answer of an [`Op::Run`].
    Value(Box<dyn std::any::Any + Send>),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Answer>,
}

impl Job {
    /// Answers this job alone.
    fn answer(self, result: OpResult) {
        let _ = self.reply.send(Answer {
            result,
            relay: Relay(Vec::new()),
        });
    }
}

/// A write's result and, for the first write of a commit group, the results of the rest of the
/// group (see [`Relay`]).
struct Answer {
    result: OpResult,
    relay: Relay,
}

/// The results of a commit group's other writes, handed by the writer thread to the group's
/// first writer, whose task wakes the rest from a runtime worker, where a wake-up is cheap. The
/// writer thread, the store's bottleneck, then pays one wake-up per commit instead of one per
/// write (about 2 µs each on a 2-core machine, some 8 % of its time with 64 writers).
///
/// Dropping it answers the rest, on whatever thread drops it: also when the first writer's
/// caller has gone (its answer then comes back to the writer thread and is dropped there), so
/// a committed write is never reported lost. The rest wait for that task to run once, a
/// wake-up's delay on a runtime that is not blocked.
struct Relay(Vec<(oneshot::Sender<Answer>, OpResult)>);

impl Drop for Relay {
    fn drop(&mut self) {
        for (reply, result) in self.0.drain(..) {
            let _ = reply.send(Answer {
                result,
                relay: Relay(Vec::new()),
            });
        }
    }
}

#[derive(Clone, Copy)]
struct WriterConfig {
    max_batch: usize,
    linger: Duration,
}

/// Runs one commit group in one transaction: `batch`'s first job, then every job queued, and
/// while fewer than `expected` jobs are in it, those that arrive within `linger` of waiting
/// (giving up after a quarter of it passes with none). Each job's statements run as it
/// arrives, so the wait for the rest overlaps the work of those already there. Every job
/// taken is pushed to `batch`, also when a statement fails (the group is then rolled back).
///
/// With many writers each waiting for its last write before sending the next, the group just
/// committed comes back a moment later: without the wait the writers split into smaller
/// groups that alternate, each paying a whole commit.
fn run_group(
    conn: &mut Connection,
    rx: &mpsc::Receiver<Job>,
    batch: &mut Vec<Job>,
    expected: usize,
    config: WriterConfig,
    counters: &WriterShared,
) -> rusqlite::Result<Vec<OpResult>> {
    let target = expected.clamp(1, config.max_batch);
    let gap = (config.linger / 4).max(Duration::from_micros(100));
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(target);
    for job in batch.iter() {
        out.push(apply(&tx, &job.op)?);
    }
    let mut idle = Duration::ZERO;
    while batch.len() < config.max_batch {
        let job = match rx.try_recv() {
            Ok(j) => j,
            Err(_) => {
                if batch.len() >= target || idle >= config.linger {
                    break;
                }
                let t = Instant::now();
                let next = poll(rx, (config.linger - idle).min(gap));
                idle += t.elapsed();
                match next {
                    Some(j) => j,
                    None => break,
                }
            }
        };
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        batch.push(job);
        if let Some(job) = batch.last() {
            out.push(apply(&tx, &job.op)?);
        }
    }
    counters
        .linger_nanos
        .fetch_add(nanos(idle), Ordering::Relaxed);
    tx.commit()?;
    Ok(out)
}

/// The next job within `limit`, polling and yielding the CPU rather than sleeping: the wait is
/// short and bounded, and a sleeping writer woken by each job would pay the scheduler's wake-up
/// delay, milliseconds on a busy machine, once per write.
fn poll(rx: &mpsc::Receiver<Job>, limit: Duration) -> Option<Job> {
    let t = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(j) => return Some(j),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if t.elapsed() >= limit => return None,
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn record_bytes(batch: &[Job]) -> u64 {
    batch
        .iter()
        .map(|j| match &j.op {
            Op::Insert(row) | Op::Update(row) => row.packed.len() as u64,
            _ => 0,
        })
        .sum()
}

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Job>,
    config: WriterConfig,
    counters: &WriterShared,
) {
    let mut expected = 1;
    loop {
        // Writers just answered are expected back at once: poll briefly before sleeping.
        let first = match (expected > 1).then(|| poll(&rx, config.linger)).flatten() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => break,
            },
        };
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        let mut batch = vec![first];
        let started = Instant::now();
        let result = run_group(&mut conn, &rx, &mut batch, expected, config, counters);
        counters
            .busy_nanos
            .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
        let size = batch.len();
        let bytes = record_bytes(&batch);
        match result {
            Ok(results) => {
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters.writes.fetch_add(size as u64, Ordering::Relaxed);
                counters.record_bytes.fetch_add(bytes, Ordering::Relaxed);
                let mut answers = batch.into_iter().zip(results);
                if let Some((first, result)) = answers.next() {
                    let relay = Relay(answers.map(|(job, r)| (job.reply, r)).collect());
                    // Refused (its caller has gone): the answer is dropped here, and its relay
                    // answers the rest from this thread.
                    let _ = first.reply.send(Answer { result, relay });
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(job) = batch.into_iter().next() {
                    job.answer(Err(sql_err("writing")(e)));
                }
            }
            Err(e) => {
                // One write broke the group: run each on its own so only that one fails.
                tracing::warn!(error = %e, size = batch.len(), "messaging-store: SQLite commit group failed; retrying one by one");
                for job in batch {
                    let r = match run_batch(&mut conn, std::slice::from_ref(&job)) {
                        Ok(mut v) => {
                            counters.commits.fetch_add(1, Ordering::Relaxed);
                            counters.writes.fetch_add(1, Ordering::Relaxed);
                            counters.record_bytes.fetch_add(
                                record_bytes(std::slice::from_ref(&job)),
                                Ordering::Relaxed,
                            );
                            v.pop().unwrap_or_else(|| {
                                Err(StoreError::Backend("sqlite: empty result".into()))
                            })
                        }
                        Err(e) => Err(sql_err("writing")(e)),
                    };
                    job.answer(r);
                }
            }
        }
        // The writers just answered are likely to write again, and those queued meanwhile
        // are waiting: the next group expects them all.
        expected = size + counters.queued.load(Ordering::Relaxed);
    }
}

pub(crate) type OpResult = Result<Done, StoreError>;

fn run_batch(conn: &mut Connection, batch: &[Job]) -> rusqlite::Result<Vec<OpResult>> {
    run_ops(conn, batch.iter().map(|j| &j.op))
}

/// One transaction applying `ops` in order: the writer's commit group.
fn run_ops<'a>(
    conn: &mut Connection,
    ops: impl ExactSizeIterator<Item = &'a Op>,
) -> rusqlite::Result<Vec<OpResult>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        out.push(apply(&tx, op)?);
    }
    tx.commit()?;
    Ok(out)
}

/// Not part of the API: the store's own statements on one plain connection with the store's
/// schema and settings, without its writer thread, for the benchmark's raw-SQLite baseline
/// (`benches/store.rs`, mode `compare`).
#[doc(hidden)]
pub mod raw {
    use super::*;

    /// An `update` encoded as the store encodes it (in the caller, before the writer).
    pub struct EncodedUpdate(Op);

    impl std::fmt::Debug for EncodedUpdate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("EncodedUpdate").finish_non_exhaustive()
        }
    }

    impl EncodedUpdate {
        /// Encodes `record` (its `version` is the one the update expects).
        pub fn of(record: &CascadeRecord) -> Result<Self, StoreError> {
            Ok(EncodedUpdate(Op::Update(Row::packed(record)?)))
        }
        /// Bytes of record it stores (packed JSON).
        pub fn record_bytes(&self) -> usize {
            match &self.0 {
                Op::Update(row) => row.packed.len(),
                _ => 0,
            }
        }
    }

    /// The writer's connection, opened and migrated as [`SqliteStore::open_with`] does.
    pub struct RawWriter(Connection);

    impl std::fmt::Debug for RawWriter {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RawWriter").finish_non_exhaustive()
        }
    }

    impl RawWriter {
        /// Opens `path` with `options`' pragmas and applies the migrations.
        pub fn open(path: &Path, options: &SqliteOptions) -> Result<Self, StoreError> {
            let mut c = connect(path, options, false)?;
            migrate(&mut c)?;
            Ok(RawWriter(c))
        }
        /// Applies `updates` in one transaction with the store's statements; how many succeeded.
        pub fn commit(&mut self, updates: &[EncodedUpdate]) -> Result<usize, StoreError> {
            let results = run_ops(&mut self.0, updates.iter().map(|u| &u.0))
                .map_err(sql_err("raw commit"))?;
            Ok(results.iter().filter(|r| r.is_ok()).count())
        }
    }
}

impl Row {
    /// The columns for `rec`, its record [`pack`]ed by the caller's task, not the writer.
    fn packed(rec: &CascadeRecord) -> Result<Row, StoreError> {
        let mut row = Row::of(rec)?;
        row.packed = pack(&row.json);
        Ok(row)
    }
}

fn keys_json(keys: &[String]) -> String {
    serde_json::to_string(keys).unwrap_or_else(|_| "[]".into())
}

fn index(c: &Connection, row: &Row) -> rusqlite::Result<()> {
    let mut ins = c.prepare_cached(
        "INSERT OR IGNORE INTO messages (provider_message_id, notification_id, attempt)
         VALUES (?1, ?2, ?3)",
    )?;
    for (pmid, attempt) in &row.messages {
        ins.execute(params![pmid, row.id, attempt])?;
    }
    Ok(())
}

fn add_keys(c: &Connection, id: &str, keys: &[String]) -> rusqlite::Result<()> {
    let mut ins = c.prepare_cached(
        "INSERT OR IGNORE INTO reply_keys (key, notification_id) VALUES (?1, ?2)",
    )?;
    for k in keys {
        ins.execute(params![k, id])?;
    }
    Ok(())
}

fn bump_active(c: &Connection, delta: i64) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE counters SET value = value + ?1 WHERE name = 'active'")?
        .execute([delta])?;
    Ok(())
}

/// Adds `delta` to the running cascades counted under `state` and `channel` (migration 9). A
/// cascade without a state (its record could not be decoded) is counted nowhere.
fn bump_running(
    c: &Connection,
    state: Option<&str>,
    channel: Option<&str>,
    delta: i64,
) -> rusqlite::Result<()> {
    let Some(state) = state else {
        return Ok(());
    };
    // `channel IS ?2` matches a missing channel too; the table is a few rows, read in full.
    let n = c
        .prepare_cached("UPDATE running_counts SET n = n + ?3 WHERE state = ?1 AND channel IS ?2")?
        .execute(params![state, channel, delta])?;
    if n == 0 {
        c.prepare_cached("INSERT INTO running_counts (state, channel, n) VALUES (?1, ?2, ?3)")?
            .execute(params![state, channel, delta])?;
    }
    Ok(())
}

/// The stored columns an update compares the new ones with.
struct Current {
    version: i64,
    finished: bool,
    reply_keys: String,
    due_ns: Option<i64>,
    deadline_ns: Option<i64>,
    ended_ns: Option<i64>,
    state: Option<String>,
    channel: Option<String>,
}

impl Current {
    fn read(c: &Connection, id: &str) -> rusqlite::Result<Option<Current>> {
        c.prepare_cached(
            "SELECT version, finished, reply_keys, due_ns, deadline_ns, ended_ns, state, channel
             FROM cascades WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(Current {
                version: r.get(0)?,
                finished: r.get(1)?,
                reply_keys: r.get(2)?,
                due_ns: r.get(3)?,
                deadline_ns: r.get(4)?,
                ended_ns: r.get(5)?,
                state: r.get(6)?,
                channel: r.get(7)?,
            })
        })
        .optional()
    }
}

fn apply(c: &Connection, op: &Op) -> rusqlite::Result<OpResult> {
    match op {
        Op::Insert(row) => {
            let existing = c
                .prepare_cached("SELECT record, version FROM cascades WHERE id = ?1")?
                .query_row([&row.id], |r| {
                    Ok((r.get::<_, StoredJson>(0)?.0, r.get::<_, i64>(1)?))
                })
                .optional()?;
            if let Some((json, version)) = existing {
                return Ok(Ok(Done::Exists { json, version }));
            }
            c.prepare_cached(
                "INSERT INTO cascades
                   (id, version, finished, wake_at_ns, lease_until_ns, due_ns, reply_keys, record,
                    ended_ns, state, channel, deadline_ns)
                 VALUES (?1, 0, ?2, ?3, NULL, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                row.id,
                row.finished,
                row.wake_ns,
                keys_json(&row.reply_keys),
                row.packed,
                row.ended_ns,
                row.report.state,
                row.report.channel,
                row.report.deadline_ns
            ])?;
            add_keys(c, &row.id, &row.reply_keys)?;
            index(c, row)?;
            add_costs(c, &row.id, &row.report)?;
            if !row.finished {
                bump_active(c, 1)?;
                bump_running(c, Some(row.report.state), row.report.channel.as_deref(), 1)?;
            }
            Ok(Ok(Done::Inserted))
        }
        Op::Update(row) => {
            let Some(old) = Current::read(c, &row.id)? else {
                return Ok(Err(StoreError::NotFound(NotificationId::new(&row.id))));
            };
            if old.version != row.expected {
                return Ok(Err(StoreError::Conflict(NotificationId::new(&row.id))));
            }
            let new_version = row.expected + 1;
            let new_keys = keys_json(&row.reply_keys);
            let mut sql = String::from(
                "UPDATE cascades SET version = ?3, finished = ?4, wake_at_ns = ?5,
                    lease_until_ns = NULL, reply_keys = ?6, record = ?7, state = ?8, channel = ?9",
            );
            let mut args: Vec<&dyn rusqlite::ToSql> = vec![
                &row.id,
                &row.expected,
                &new_version,
                &row.finished,
                &row.wake_ns,
                &new_keys,
                &row.packed,
                &row.report.state,
                &row.report.channel,
            ];
            // An indexed column is set only when its value changes: SQLite rewrites an index's
            // entry whenever the UPDATE names one of its columns, and each entry rewritten
            // dirties a page of that index (written to the WAL, then at checkpoint).
            for (column, new, old) in [
                ("due_ns", &row.wake_ns, old.due_ns),
                ("deadline_ns", &row.report.deadline_ns, old.deadline_ns),
                ("ended_ns", &row.ended_ns, old.ended_ns),
            ] {
                if *new != old {
                    args.push(new);
                    sql.push_str(&format!(", {column} = ?{}", args.len()));
                }
            }
            sql.push_str(" WHERE id = ?1 AND version = ?2");
            c.prepare_cached(&sql)?.execute(&*args)?;
            add_costs(c, &row.id, &row.report)?;
            if new_keys != old.reply_keys {
                let old: Vec<String> = serde_json::from_str(&old.reply_keys).unwrap_or_default();
                let mut del = c.prepare_cached(
                    "DELETE FROM reply_keys WHERE key = ?1 AND notification_id = ?2",
                )?;
                for k in &old {
                    del.execute(params![k, row.id])?;
                }
                add_keys(c, &row.id, &row.reply_keys)?;
            }
            index(c, row)?;
            match (old.finished, row.finished) {
                (false, true) => bump_active(c, -1)?,
                (true, false) => bump_active(c, 1)?,
                _ => {}
            }
            let running = |finished: bool, state, channel| (!finished).then_some((state, channel));
            let was = running(old.finished, old.state.as_deref(), old.channel.as_deref());
            let now = running(
                row.finished,
                Some(row.report.state),
                row.report.channel.as_deref(),
            );
            if was != now {
                if let Some((state, channel)) = was {
                    bump_running(c, state, channel, -1)?;
                }
                if let Some((state, channel)) = now {
                    bump_running(c, state, channel, 1)?;
                }
            }
            Ok(version_from_sql(new_version, &row.id).map(Done::Updated))
        }
        Op::Claim {
            now,
            limit,
            lease_end,
        } => {
            let ids: Vec<String> = c
                .prepare_cached(
                    "SELECT id FROM cascades WHERE due_ns <= ?1 ORDER BY due_ns, id LIMIT ?2",
                )?
                .query_map(params![now, limit], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut upd = c.prepare_cached(
                "UPDATE cascades SET lease_until_ns = ?2, due_ns = ?2 WHERE id = ?1",
            )?;
            for id in &ids {
                upd.execute(params![id, lease_end])?;
            }
            Ok(Ok(Done::Claimed(ids)))
        }
        Op::Inbound { channel, key, at } => {
            c.prepare_cached(
                "INSERT INTO windows (channel, address_key, last_inbound_ns) VALUES (?1, ?2, ?3)
                 ON CONFLICT (channel, address_key)
                 DO UPDATE SET last_inbound_ns = max(last_inbound_ns, excluded.last_inbound_ns)",
            )?
            .execute(params![channel, key, at])?;
            Ok(Ok(Done::Ok))
        }
        Op::Close { channel, key } => {
            c.prepare_cached("DELETE FROM windows WHERE channel = ?1 AND address_key = ?2")?
                .execute(params![channel, key])?;
            Ok(Ok(Done::Ok))
        }
        Op::Purge {
            ended_before,
            limit,
        } => {
            let gone: Vec<(String, String)> = c
                .prepare_cached(
                    "SELECT id, record FROM cascades
                     WHERE finished = 1 AND ended_ns < ?1 ORDER BY ended_ns LIMIT ?2",
                )?
                .query_map(params![ended_before, limit], |r| {
                    Ok((r.get(0)?, r.get::<_, StoredJson>(1)?.0))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut del_msg = c.prepare_cached(
                "DELETE FROM messages WHERE provider_message_id = ?1 AND notification_id = ?2",
            )?;
            let mut del = c.prepare_cached("DELETE FROM cascades WHERE id = ?1")?;
            let mut del_costs =
                c.prepare_cached("DELETE FROM attempt_costs WHERE notification_id = ?1")?;
            for (id, json) in &gone {
                // The index entries are the record's own provider ids (no index by cascade,
                // which every send would pay for); an undecodable record keeps its entries.
                match decode(id, json, 0) {
                    Ok(rec) => {
                        for (pmid, _) in rec.provider_message_ids() {
                            del_msg.execute(params![pmid.as_str(), id])?;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(cascade = %id, error = %e, "messaging-store: purging a record that cannot be decoded; its message-index entries stay");
                    }
                }
                del.execute([id])?;
                del_costs.execute([id])?;
            }
            Ok(Ok(Done::Purged(gone.len())))
        }
        Op::Run(f) => f(c),
    }
}

pub(crate) fn unexpected() -> StoreError {
    StoreError::Backend("sqlite: the writer answered with the wrong kind of result".into())
}

#[async_trait]
impl CascadeStore for SqliteStore {
    async fn insert(&self, record: &CascadeRecord) -> Result<Inserted, StoreError> {
        let row = Row::packed(record)?;
        match self.write(Op::Insert(row)).await? {
            Done::Inserted => Ok(Inserted::New),
            Done::Exists { json, version } => Ok(Inserted::Exists(Box::new(decode(
                record.id().as_str(),
                &json,
                version,
            )?))),
            _ => Err(unexpected()),
        }
    }

    async fn get(&self, id: &NotificationId) -> Result<Option<CascadeRecord>, StoreError> {
        let key = id.as_str().to_owned();
        let row = self
            .read(move |c| {
                c.prepare_cached("SELECT record, version FROM cascades WHERE id = ?1")
                    .and_then(|mut s| {
                        s.query_row([&key], |r| {
                            Ok((r.get::<_, StoredJson>(0)?.0, r.get::<_, i64>(1)?))
                        })
                        .optional()
                    })
                    .map_err(sql_err("reading a cascade"))
            })
            .await?;
        row.map(|(json, version)| decode(id.as_str(), &json, version))
            .transpose()
    }

    async fn update(&self, record: &CascadeRecord) -> Result<u64, StoreError> {
        let row = Row::packed(record)?;
        match self.write(Op::Update(row)).await? {
            Done::Updated(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<NotificationId>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = to_ns(now, "now")?;
        let op = Op::Claim {
            now,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            lease_end: lease_end_ns(now, lease),
        };
        match self.write(op).await? {
            Done::Claimed(ids) => Ok(ids.into_iter().map(NotificationId::from).collect()),
            _ => Err(unexpected()),
        }
    }

    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ns = self
            .read(|c| {
                c.prepare_cached(
                    "SELECT due_ns FROM cascades WHERE due_ns IS NOT NULL ORDER BY due_ns LIMIT 1",
                )
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)).optional())
                .map_err(sql_err("reading the next timer"))
            })
            .await?;
        Ok(ns.map(from_ns))
    }

    async fn find_message(
        &self,
        provider_message_id: &ProviderMessageId,
    ) -> Result<Option<MessageRef>, StoreError> {
        let key = provider_message_id.as_str().to_owned();
        let row = self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT notification_id, attempt FROM messages WHERE provider_message_id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([&key], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()
                })
                .map_err(sql_err("reading the message index"))
            })
            .await?;
        row.map(|(id, attempt)| {
            Ok(MessageRef {
                attempt: usize::try_from(attempt).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "message {provider_message_id}: bad attempt index {attempt}"
                    ))
                })?,
                notification_id: NotificationId::from(id),
            })
        })
        .transpose()
    }

    async fn active_by_reply_key(&self, key: &str) -> Result<Vec<NotificationId>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT notification_id FROM reply_keys WHERE key = ?1 ORDER BY notification_id",
            )
            .and_then(|mut s| {
                s.query_map([&key], |r| r.get::<_, String>(0).map(NotificationId::from))?
                    .collect()
            })
            .map_err(sql_err("reading the reply index"))
        })
        .await
    }

    async fn count_active(&self) -> Result<usize, StoreError> {
        let n = self
            .read(|c| {
                c.prepare_cached("SELECT value FROM counters WHERE name = 'active'")
                    .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                    .map_err(sql_err("counting active cascades"))
            })
            .await?;
        usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("active count is {n}")))
    }

    async fn purge_finished(
        &self,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let op = Op::Purge {
            ended_before: to_ns(ended_before, "ended_before")?,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
        };
        match self.write(op).await? {
            Done::Purged(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }
}

#[async_trait]
impl WindowStore for SqliteStore {
    async fn record_inbound(
        &self,
        channel: &ChannelId,
        address_key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let op = Op::Inbound {
            channel: channel.as_str().to_owned(),
            key: address_key.to_owned(),
            at: to_ns(at, "inbound time")?,
        };
        self.write(op).await.map(|_| ())
    }

    async fn last_inbound(
        &self,
        channel: &ChannelId,
        address_key: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (channel, key) = (channel.as_str().to_owned(), address_key.to_owned());
        let ns = self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT last_inbound_ns FROM windows WHERE channel = ?1 AND address_key = ?2",
                )
                .and_then(|mut s| {
                    s.query_row([&channel, &key], |r| r.get::<_, i64>(0))
                        .optional()
                })
                .map_err(sql_err("reading a window"))
            })
            .await?;
        Ok(ns.map(from_ns))
    }

    async fn close(&self, channel: &ChannelId, address_key: &str) -> Result<(), StoreError> {
        let op = Op::Close {
            channel: channel.as_str().to_owned(),
            key: address_key.to_owned(),
        };
        self.write(op).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit group's first writer hands the rest their results (`Relay`). If that writer's
    /// caller has gone before the group commits, the rest are still answered, with their own
    /// results: no committed write is reported lost, and none waits forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_is_answered_when_its_first_writer_has_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("relay.db"))
            .await
            .expect("open");
        store
            .run(|c| c.execute_batch("CREATE TABLE marks (n INTEGER)").map(Ok))
            .await
            .expect("table");
        let mark = |n: i64| {
            move |c: &Connection| {
                c.execute("INSERT INTO marks (n) VALUES (?1)", [n])
                    .map(|_| Ok(n))
            }
        };
        // The first write of a group holds the writer while the rest queue up behind it (they
        // join its group); its caller gives up as soon as it is queued.
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let started_tx = std::sync::Mutex::new(started_tx);
        let first = store.run(move |c| {
            let _ = started_tx.lock().map(|t| t.send(()));
            // Ample for eight tasks to queue their writes, even on a loaded machine.
            std::thread::sleep(Duration::from_secs(1));
            mark(0)(c)
        });
        let gone = tokio::time::timeout(Duration::ZERO, first).await;
        assert!(gone.is_err(), "the first write was still waiting");
        started_rx.recv().expect("the first write is running");
        let rest: Vec<_> = (1..=8)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { store.run(mark(n)).await })
            })
            .collect();
        for (n, r) in (1..=8).zip(rest) {
            let got = tokio::time::timeout(Duration::from_secs(10), r)
                .await
                .expect("answered, not left waiting")
                .expect("task");
            assert_eq!(got.expect("its own result"), n);
        }
        let count: i64 = store
            .run(|c| {
                c.query_row("SELECT count(*) FROM marks", [], |r| r.get(0))
                    .map(Ok)
            })
            .await
            .expect("count");
        assert_eq!(count, 9, "the gone writer's write was committed too");
        // The table, then one group of all nine, then the count.
        assert_eq!(
            store.writer_stats().commits,
            3,
            "the nine writes were one group"
        );
    }
}
