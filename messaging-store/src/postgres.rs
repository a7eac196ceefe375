//! The PostgreSQL store, for services that run several engine instances on one database.
//!
//! Every write is one SQL statement (data-modifying CTEs), so it is one transaction and one
//! round trip: `update` changes the cascade row only if its version is still the one read, and
//! in the same statement replaces the reply keys and adds provider message ids. Due work is
//! claimed with `FOR UPDATE SKIP LOCKED` and a lease, so two instances never get the same
//! cascade at once.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use messaging_cascade::engine::CascadeRecord;
use messaging_cascade::store::{CascadeStore, Inserted, MessageRef, StoreError, WindowStore};
use messaging_core::{ChannelId, NotificationId, ProviderMessageId};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::common::{
    CostRow, ReportRow, Row, decode, from_ns, lease_end_ns, to_ns, version_from_sql,
};

/// The schema version this build writes. Opening a database with a newer one fails.
pub const POSTGRES_SCHEMA_VERSION: i32 = 8;

const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE {s}.cascades (
    id             TEXT COLLATE "C" PRIMARY KEY,
    version        BIGINT NOT NULL,
    finished       BOOLEAN NOT NULL,
    wake_at_ns     BIGINT,
    lease_until_ns BIGINT,
    due_ns         BIGINT,
    record         TEXT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX cascades_due ON {s}.cascades (due_ns, id) WHERE due_ns IS NOT NULL;
CREATE INDEX cascades_active ON {s}.cascades (id) WHERE NOT finished;
CREATE TABLE {s}.messages (
    provider_message_id TEXT PRIMARY KEY,
    notification_id     TEXT COLLATE "C" NOT NULL,
    attempt             BIGINT NOT NULL
);
CREATE TABLE {s}.reply_keys (
    key             TEXT NOT NULL,
    notification_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (key, notification_id)
);
CREATE INDEX reply_keys_by_cascade ON {s}.reply_keys (notification_id);
CREATE TABLE {s}.windows (
    channel         TEXT NOT NULL,
    address_key     TEXT NOT NULL,
    last_inbound_ns BIGINT NOT NULL,
    PRIMARY KEY (channel, address_key)
);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE {s}.links (
    address_key    TEXT COLLATE "C" PRIMARY KEY,
    contact        TEXT NOT NULL,
    phone_digits   TEXT,
    address_digits TEXT,
    linked_at_ns   BIGINT NOT NULL,
    link           TEXT NOT NULL
);
CREATE INDEX links_contact ON {s}.links (contact);
CREATE INDEX links_phone ON {s}.links (phone_digits) WHERE phone_digits IS NOT NULL;
CREATE INDEX links_address_digits ON {s}.links (address_digits) WHERE address_digits IS NOT NULL;
CREATE TABLE {s}.used_tokens (
    token_id      TEXT PRIMARY KEY,
    expires_at_ns BIGINT NOT NULL,
    used_at_ns    BIGINT NOT NULL
);
CREATE INDEX used_tokens_expiry ON {s}.used_tokens (expires_at_ns);
"#,
    ),
    (
        3,
        r#"
CREATE TABLE {s}.gov_sends (
    channel       TEXT NOT NULL,
    at_ns         BIGINT NOT NULL,
    address       TEXT NOT NULL,
    new_recipient BOOLEAN NOT NULL
);
CREATE INDEX gov_sends_at ON {s}.gov_sends (channel, at_ns);
CREATE TABLE {s}.gov_contacted (
    channel      TEXT NOT NULL,
    key          TEXT NOT NULL,
    last_sent_ns BIGINT NOT NULL,
    PRIMARY KEY (channel, key)
);
CREATE TABLE {s}.gov_wrote_to_us (key TEXT PRIMARY KEY);
CREATE TABLE {s}.gov_marketing (key TEXT NOT NULL, at_ns BIGINT NOT NULL);
CREATE INDEX gov_marketing_key ON {s}.gov_marketing (key, at_ns);
CREATE TABLE {s}.gov_replies (channel TEXT NOT NULL, at_ns BIGINT NOT NULL);
CREATE INDEX gov_replies_at ON {s}.gov_replies (channel, at_ns);
CREATE TABLE {s}.gov_opt_out (key TEXT PRIMARY KEY);
CREATE TABLE {s}.gov_connected (channel TEXT PRIMARY KEY, at_ns BIGINT NOT NULL);
"#,
    ),
    (
        4,
        // Cascades that ended before this version get the migration's time as their end, so
        // retention counts from the upgrade and nothing is purged early.
        r#"
ALTER TABLE {s}.cascades ADD COLUMN ended_ns BIGINT;
UPDATE {s}.cascades SET ended_ns = (extract(epoch FROM now()) * 1000000000)::bigint WHERE finished;
CREATE INDEX cascades_ended ON {s}.cascades (ended_ns) WHERE ended_ns IS NOT NULL;
CREATE TABLE {s}.inbox (
    seq     BIGSERIAL PRIMARY KEY,
    thread  TEXT COLLATE "C" NOT NULL,
    at_ns   BIGINT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX inbox_thread ON {s}.inbox (thread, at_ns, seq);
"#,
    ),
    (
        5,
        // The one opt-out record (`OptOutStore`) replaces the governor's own list; its keys
        // become opt-outs of every purpose said at the Unix epoch, before anything said since.
        r#"
CREATE TABLE {s}.opt_outs (
    key       TEXT NOT NULL,
    purpose   TEXT NOT NULL,
    opted_out BOOLEAN NOT NULL,
    at_ns     BIGINT NOT NULL,
    PRIMARY KEY (key, purpose)
);
INSERT INTO {s}.opt_outs (key, purpose, opted_out, at_ns)
    SELECT key, '', true, 0 FROM {s}.gov_opt_out;
DROP TABLE {s}.gov_opt_out;
"#,
    ),
    (
        6,
        // The webhook journal (`WebhookJournal`): verified events until processed, their keys
        // until purged. `due_ns` is set while pending, `ended_ns` once processed or failed.
        r#"
CREATE TABLE IF NOT EXISTS {s}.webhook_journal (
    id          BIGSERIAL PRIMARY KEY,
    key         TEXT COLLATE "C" UNIQUE,
    event       TEXT,
    recorded_ns BIGINT NOT NULL,
    due_ns      BIGINT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    ended_ns    BIGINT,
    error       TEXT
);
CREATE INDEX IF NOT EXISTS webhook_journal_due ON {s}.webhook_journal (due_ns, id)
    WHERE due_ns IS NOT NULL;
CREATE INDEX IF NOT EXISTS webhook_journal_ended ON {s}.webhook_journal (ended_ns)
    WHERE ended_ns IS NOT NULL;
"#,
    ),
    (
        7,
        // The columns the operator's reports read (`CascadeReports`): the phase or outcome,
        // its channel, the deadline of a running cascade, and every attempt's cost. Filled for
        // existing cascades from their records by `backfill_reports`, in this migration's
        // transaction. Every step may run again on a schema that has some of it.
        r#"
ALTER TABLE {s}.cascades ADD COLUMN IF NOT EXISTS state TEXT COLLATE "C";
ALTER TABLE {s}.cascades ADD COLUMN IF NOT EXISTS channel TEXT COLLATE "C";
ALTER TABLE {s}.cascades ADD COLUMN IF NOT EXISTS deadline_ns BIGINT;
CREATE INDEX IF NOT EXISTS cascades_running ON {s}.cascades (state, channel) WHERE NOT finished;
CREATE INDEX IF NOT EXISTS cascades_deadline ON {s}.cascades (deadline_ns)
    WHERE deadline_ns IS NOT NULL;
CREATE TABLE IF NOT EXISTS {s}.attempt_costs (
    notification_id TEXT COLLATE "C" NOT NULL,
    attempt         BIGINT NOT NULL,
    channel         TEXT COLLATE "C" NOT NULL,
    day             DATE NOT NULL,
    currency        TEXT COLLATE "C" NOT NULL,
    amount          DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (notification_id, attempt)
);
CREATE INDEX IF NOT EXISTS attempt_costs_day ON {s}.attempt_costs (day, channel, currency);
"#,
    ),
    (
        8,
        // Channel health shared by the instances (`HealthBoard`): the notices in the order
        // they were posted, and who holds each channel's probe until when.
        r#"
CREATE TABLE IF NOT EXISTS {s}.health_notices (
    position  BIGSERIAL PRIMARY KEY,
    channel   TEXT NOT NULL,
    notice    TEXT NOT NULL,
    posted_ns BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS health_notices_channel ON {s}.health_notices (channel, position);
CREATE TABLE IF NOT EXISTS {s}.probe_claims (
    channel       TEXT PRIMARY KEY,
    instance      TEXT NOT NULL,
    held_until_ns BIGINT NOT NULL
);
"#,
    ),
];

/// The migration whose transaction also fills the report columns of existing cascades.
const REPORTS_MIGRATION: i32 = 7;

/// Options for [`PostgresStore::connect_with`].
///
/// ```
/// use messaging_store::postgres::PostgresOptions;
/// let opts = PostgresOptions::default().schema("clinic_a").pool_size(8);
/// assert_eq!(opts.schema, "clinic_a");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The schema holding the tables (created if missing). Letters, digits and `_`, starting
    /// with a letter or `_`, at most 63 characters. Default `messaging`.
    pub schema: String,
    /// Connections in the pool. Default 16.
    pub pool_size: usize,
    /// How long a call waits for a free connection before failing. Default 30 s.
    pub wait_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "messaging".into(),
            pool_size: 16,
            wait_timeout: Duration::from_secs(30),
        }
    }
}

impl PostgresOptions {
    /// Sets the schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }
    /// Sets the pool size (at least 1).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }
}

struct Sql {
    insert: String,
    existing: String,
    update: String,
    version_of: String,
    get: String,
    claim: String,
    next_wake: String,
    find_message: String,
    by_reply_key: String,
    count_active: String,
    purge: String,
    record_inbound: String,
    last_inbound: String,
    close: String,
}

impl Sql {
    fn new(s: &str) -> Sql {
        let f = |q: &str| q.replace("{s}", s);
        Sql {
            insert: f(r#"
WITH ins AS (
    INSERT INTO {s}.cascades
        (id, version, finished, wake_at_ns, lease_until_ns, due_ns, record, ended_ns,
         state, channel, deadline_ns)
    VALUES ($1, 0, $2, $3, NULL, $3, $4, $8, $9, $10, $11)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), rk AS (
    INSERT INTO {s}.reply_keys (key, notification_id)
    SELECT k, ins.id FROM ins, unnest($5::text[]) AS k
    ON CONFLICT DO NOTHING
), msg AS (
    INSERT INTO {s}.messages (provider_message_id, notification_id, attempt)
    SELECT m.p, ins.id, m.a FROM ins, unnest($6::text[], $7::bigint[]) AS m(p, a)
    ON CONFLICT DO NOTHING
), cost AS (
    INSERT INTO {s}.attempt_costs (notification_id, attempt, channel, day, currency, amount)
    SELECT ins.id, c.a, c.ch, c.d, c.cur, c.amt
    FROM ins, unnest($12::bigint[], $13::text[], $14::date[], $15::text[], $16::float8[])
        AS c(a, ch, d, cur, amt)
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM ins"#),
            existing: f("SELECT record, version FROM {s}.cascades WHERE id = $1"),
            update: f(r#"
WITH up AS (
    UPDATE {s}.cascades
    SET version = version + 1, finished = $3, wake_at_ns = $4, lease_until_ns = NULL,
        due_ns = $4, record = $5, updated_at = now(), ended_ns = $9, state = $10,
        channel = $11, deadline_ns = $12
    WHERE id = $1 AND version = $2
    RETURNING id, version
), cost AS (
    INSERT INTO {s}.attempt_costs (notification_id, attempt, channel, day, currency, amount)
    SELECT up.id, c.a, c.ch, c.d, c.cur, c.amt
    FROM up, unnest($13::bigint[], $14::text[], $15::date[], $16::text[], $17::float8[])
        AS c(a, ch, d, cur, amt)
    ON CONFLICT DO NOTHING
), del AS (
    DELETE FROM {s}.reply_keys r USING up
    WHERE r.notification_id = up.id AND NOT (r.key = ANY($6::text[]))
), rk AS (
    INSERT INTO {s}.reply_keys (key, notification_id)
    SELECT k, up.id FROM up, unnest($6::text[]) AS k
    ON CONFLICT DO NOTHING
), msg AS (
    INSERT INTO {s}.messages (provider_message_id, notification_id, attempt)
    SELECT m.p, up.id, m.a FROM up, unnest($7::text[], $8::bigint[]) AS m(p, a)
    ON CONFLICT DO NOTHING
)
SELECT version FROM up"#),
            version_of: f("SELECT version FROM {s}.cascades WHERE id = $1"),
            get: f("SELECT record, version FROM {s}.cascades WHERE id = $1"),
            claim: f(r#"
WITH due AS (
    SELECT id, due_ns FROM {s}.cascades
    WHERE due_ns <= $1
    ORDER BY due_ns, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE {s}.cascades c SET lease_until_ns = $3, due_ns = $3
    FROM due WHERE c.id = due.id
    RETURNING c.id, due.due_ns AS was
)
SELECT id FROM claimed ORDER BY was, id"#),
            next_wake: f("SELECT min(due_ns) FROM {s}.cascades"),
            find_message: f(
                "SELECT notification_id, attempt FROM {s}.messages WHERE provider_message_id = $1",
            ),
            by_reply_key: f(
                "SELECT notification_id FROM {s}.reply_keys WHERE key = $1 ORDER BY notification_id",
            ),
            count_active: f("SELECT count(*) FROM {s}.cascades WHERE NOT finished"),
            // The index entries to drop are the purged records' own provider ids (no index by
            // cascade, which every send would pay for), and only where the entry is theirs.
            purge: f(r#"
WITH gone AS (
    DELETE FROM {s}.cascades c
    WHERE c.id IN (
        SELECT id FROM {s}.cascades
        WHERE finished AND ended_ns < $1
        ORDER BY ended_ns
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    RETURNING c.id, c.record
), ids AS (
    SELECT gone.id, a->>'provider_message_id' AS pmid
    FROM gone, jsonb_array_elements(gone.record::jsonb->'attempts') AS a
), msg AS (
    DELETE FROM {s}.messages m USING ids
    WHERE m.provider_message_id = ids.pmid AND m.notification_id = ids.id
), rk AS (
    DELETE FROM {s}.reply_keys r USING gone WHERE r.notification_id = gone.id
), cost AS (
    DELETE FROM {s}.attempt_costs c USING gone WHERE c.notification_id = gone.id
)
SELECT count(*) FROM gone"#),
            record_inbound: f(r#"
INSERT INTO {s}.windows (channel, address_key, last_inbound_ns) VALUES ($1, $2, $3)
ON CONFLICT (channel, address_key)
DO UPDATE SET last_inbound_ns = GREATEST({s}.windows.last_inbound_ns, EXCLUDED.last_inbound_ns)"#),
            last_inbound: f(
                "SELECT last_inbound_ns FROM {s}.windows WHERE channel = $1 AND address_key = $2",
            ),
            close: f("DELETE FROM {s}.windows WHERE channel = $1 AND address_key = $2"),
        }
    }
}

/// The store for many instances: PostgreSQL through a `deadpool-postgres` pool.
///
/// Clones share the pool. Tables live in one schema ([`PostgresOptions::schema`]), created and
/// migrated on connect (under an advisory lock, so instances starting together are safe).
///
/// `config` is a libpq-style string (`host=127.0.0.1 user=postgres dbname=app`) or a URL
/// (`postgres://postgres@127.0.0.1/app`). Connections are unencrypted: reach the database over a
/// private network or a local socket.
///
/// ```no_run
/// use messaging_cascade::store::CascadeStore;
/// use messaging_store::{PostgresOptions, PostgresStore};
/// # async fn demo() -> Result<(), messaging_core::StoreError> {
/// let store = PostgresStore::connect("postgres://app@db.internal/clinic").await?;
/// let tenant = PostgresStore::connect_with(
///     "host=db.internal user=app dbname=clinic",
///     PostgresOptions::default().schema("clinic_b"),
/// )
/// .await?;
/// assert_eq!(tenant.schema(), "clinic_b");
/// let _ = store.count_active().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    sql: Arc<Sql>,
    schema: Arc<str>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("pool", &self.pool.status())
            .finish()
    }
}

pub(crate) fn pg_err(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| {
        // The server's message says more than the client error's Display.
        match e.as_db_error() {
            Some(db) => StoreError::Backend(format!(
                "postgres: {context}: {} ({})",
                db.message(),
                db.code().code()
            )),
            None => StoreError::Backend(format!("postgres: {context}: {e}")),
        }
    }
}

fn valid_schema(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

impl PostgresStore {
    /// Connects with default options (schema `messaging`) and applies any missing migrations.
    pub async fn connect(config: &str) -> Result<Self, StoreError> {
        Self::connect_with(config, PostgresOptions::default()).await
    }

    /// Connects and applies any missing migrations.
    pub async fn connect_with(config: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let pg = tokio_postgres::Config::from_str(config)
            .map_err(|e| StoreError::Backend(format!("postgres: bad connection string: {e}")))?;
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Backend(format!("postgres: cannot build the pool: {e}")))?;
        Self::from_pool(pool, &options.schema).await
    }

    /// Uses an existing pool (for applications that configure TLS or pooling themselves); the
    /// tables go into `schema`, migrated now.
    pub async fn from_pool(pool: Pool, schema: &str) -> Result<Self, StoreError> {
        if !valid_schema(schema) {
            return Err(StoreError::Backend(format!(
                "postgres: schema name {schema:?} must be letters, digits and _ (at most 63), \
                 not starting with a digit"
            )));
        }
        let quoted = format!("\"{schema}\"");
        let store = PostgresStore {
            pool,
            sql: Arc::new(Sql::new(&quoted)),
            schema: Arc::from(schema),
        };
        store.migrate(&quoted).await?;
        Ok(store)
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The schema version of the database.
    pub async fn schema_version(&self) -> Result<i32, StoreError> {
        let c = self.client().await?;
        let q = format!(
            "SELECT coalesce(max(version), 0) FROM \"{}\".schema_version",
            self.schema
        );
        let row = c
            .query_one(&q, &[])
            .await
            .map_err(pg_err("reading the schema version"))?;
        row.try_get(0).map_err(pg_err("reading the schema version"))
    }

    /// Drops the schema and everything in it. For tests that create a schema per run.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ))
        .await
        .map_err(pg_err("dropping the schema"))
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Backend(format!("postgres: no connection: {e}")))
    }

    async fn migrate(&self, quoted: &str) -> Result<(), StoreError> {
        let e = pg_err("migrating");
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(&e)?;
        // One migrator per schema at a time, across instances.
        tx.execute(
            "SELECT pg_advisory_xact_lock(714651, hashtext($1))",
            &[&self.schema.as_ref()],
        )
        .await
        .map_err(&e)?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {quoted};
             CREATE TABLE IF NOT EXISTS {quoted}.schema_version (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );"
        ))
        .await
        .map_err(&e)?;
        let current: i32 = tx
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {quoted}.schema_version"),
                &[],
            )
            .await
            .map_err(&e)?
            .try_get(0)
            .map_err(&e)?;
        if current > POSTGRES_SCHEMA_VERSION {
            return Err(StoreError::Backend(format!(
                "postgres: schema {} has version {current}, newer than this build's \
                 {POSTGRES_SCHEMA_VERSION}; upgrade messaging-store",
                self.schema
            )));
        }
        for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(&sql.replace("{s}", quoted))
                .await
                .map_err(&e)?;
            if *v == REPORTS_MIGRATION {
                backfill_reports(&tx, quoted).await?;
            }
            tx.execute(
                &format!("INSERT INTO {quoted}.schema_version (version) VALUES ($1)"),
                &[v],
            )
            .await
            .map_err(&e)?;
            tracing::info!(version = v, schema = %self.schema, "messaging-store: applied PostgreSQL migration");
        }
        tx.commit().await.map_err(&e)
    }

    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await.map_err(pg_err(context))?;
        c.query(&st, params).await.map_err(pg_err(context))
    }
}

/// The `attempt_costs` rows of a record, as the arrays a statement unnests.
#[derive(Default)]
struct CostColumns {
    notification_id: Vec<String>,
    attempt: Vec<i64>,
    channel: Vec<String>,
    day: Vec<chrono::NaiveDate>,
    currency: Vec<String>,
    amount: Vec<f64>,
}

impl CostColumns {
    fn of(costs: &[CostRow]) -> CostColumns {
        let mut c = CostColumns::default();
        c.push("", costs);
        c
    }

    fn push(&mut self, id: &str, costs: &[CostRow]) {
        for cost in costs {
            self.notification_id.push(id.to_owned());
            self.attempt.push(cost.attempt);
            self.channel.push(cost.channel.clone());
            self.day.push(cost.day);
            self.currency.push(cost.currency.clone());
            self.amount.push(cost.amount);
        }
    }
}

/// Fills the report columns and `attempt_costs` of every cascade from its record, in batches by
/// id, inside the migration's transaction. A record that cannot be decoded keeps empty columns
/// (it is reported nowhere) and a warning names it.
async fn backfill_reports(
    tx: &deadpool_postgres::Transaction<'_>,
    quoted: &str,
) -> Result<(), StoreError> {
    let e = pg_err("filling the report columns");
    let select =
        format!("SELECT id, record FROM {quoted}.cascades WHERE id > $1 ORDER BY id LIMIT 500");
    let update = format!(
        "UPDATE {quoted}.cascades c
         SET state = u.state, channel = u.channel, deadline_ns = u.deadline_ns
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
             AS u(id, state, channel, deadline_ns)
         WHERE c.id = u.id"
    );
    let insert = format!(
        "INSERT INTO {quoted}.attempt_costs
             (notification_id, attempt, channel, day, currency, amount)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::date[], $5::text[],
                              $6::float8[])
         ON CONFLICT DO NOTHING"
    );
    let mut after = String::new();
    let mut filled = 0usize;
    loop {
        let rows = tx.query(&select, &[&after]).await.map_err(&e)?;
        let Some(last) = rows.last() else {
            break;
        };
        after = col(last, 0, "cascade id")?;
        let (mut ids, mut states, mut channels, mut deadlines) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut costs = CostColumns::default();
        for r in &rows {
            let id: String = col(r, 0, "cascade id")?;
            let json: String = col(r, 1, "record")?;
            match decode(&id, &json, 0).and_then(|rec| ReportRow::of(&rec)) {
                Ok(report) => {
                    costs.push(&id, &report.costs);
                    states.push(report.state);
                    channels.push(report.channel);
                    deadlines.push(report.deadline_ns);
                    ids.push(id);
                }
                Err(err) => {
                    tracing::warn!(cascade = %id, error = %err, "messaging-store: a record that cannot be decoded is left out of the reports");
                }
            }
        }
        filled += ids.len();
        tx.execute(&update, &[&ids, &states, &channels, &deadlines])
            .await
            .map_err(&e)?;
        tx.execute(
            &insert,
            &[
                &costs.notification_id,
                &costs.attempt,
                &costs.channel,
                &costs.day,
                &costs.currency,
                &costs.amount,
            ],
        )
        .await
        .map_err(&e)?;
    }
    tracing::info!(
        cascades = filled,
        "messaging-store: filled the report columns"
    );
    Ok(())
}

pub(crate) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
    context: &str,
) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| StoreError::Corrupt(format!("postgres: {context}: {e}")))
}

#[async_trait]
impl CascadeStore for PostgresStore {
    async fn insert(&self, record: &CascadeRecord) -> Result<Inserted, StoreError> {
        let row = Row::of(record)?;
        let (pmids, attempts): (Vec<String>, Vec<i64>) = row.messages.iter().cloned().unzip();
        let costs = CostColumns::of(&row.report.costs);
        let rows = self
            .query(
                &self.sql.insert,
                &[
                    &row.id,
                    &row.finished,
                    &row.wake_ns,
                    &row.json,
                    &row.reply_keys,
                    &pmids,
                    &attempts,
                    &row.ended_ns,
                    &row.report.state,
                    &row.report.channel,
                    &row.report.deadline_ns,
                    &costs.attempt,
                    &costs.channel,
                    &costs.day,
                    &costs.currency,
                    &costs.amount,
                ],
                "inserting a cascade",
            )
            .await?;
        let inserted: i64 = match rows.first() {
            Some(r) => col(r, 0, "insert count")?,
            None => 0,
        };
        if inserted > 0 {
            return Ok(Inserted::New);
        }
        let rows = self
            .query(
                &self.sql.existing,
                &[&row.id],
                "reading an existing cascade",
            )
            .await?;
        let r = rows.first().ok_or_else(|| {
            StoreError::Backend(format!(
                "postgres: cascade {} neither inserted nor found (deleted meanwhile?)",
                row.id
            ))
        })?;
        let json: String = col(r, 0, "record")?;
        let version: i64 = col(r, 1, "version")?;
        Ok(Inserted::Exists(Box::new(decode(&row.id, &json, version)?)))
    }

    async fn get(&self, id: &NotificationId) -> Result<Option<CascadeRecord>, StoreError> {
        let rows = self
            .query(&self.sql.get, &[&id.as_str()], "reading a cascade")
            .await?;
        rows.first()
            .map(|r| {
                let json: String = col(r, 0, "record")?;
                let version: i64 = col(r, 1, "version")?;
                decode(id.as_str(), &json, version)
            })
            .transpose()
    }

    async fn update(&self, record: &CascadeRecord) -> Result<u64, StoreError> {
        let row = Row::of(record)?;
        let (pmids, attempts): (Vec<String>, Vec<i64>) = row.messages.iter().cloned().unzip();
        let costs = CostColumns::of(&row.report.costs);
        let rows = self
            .query(
                &self.sql.update,
                &[
                    &row.id,
                    &row.expected,
                    &row.finished,
                    &row.wake_ns,
                    &row.json,
                    &row.reply_keys,
                    &pmids,
                    &attempts,
                    &row.ended_ns,
                    &row.report.state,
                    &row.report.channel,
                    &row.report.deadline_ns,
                    &costs.attempt,
                    &costs.channel,
                    &costs.day,
                    &costs.currency,
                    &costs.amount,
                ],
                "updating a cascade",
            )
            .await?;
        if let Some(r) = rows.first() {
            let v: i64 = col(r, 0, "version")?;
            return version_from_sql(v, &row.id);
        }
        let exists = self
            .query(&self.sql.version_of, &[&row.id], "reading a version")
            .await?;
        if exists.is_empty() {
            Err(StoreError::NotFound(record.id().clone()))
        } else {
            Err(StoreError::Conflict(record.id().clone()))
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let until = lease_end_ns(now, lease);
        let rows = self
            .query(
                &self.sql.claim,
                &[&now, &limit, &until],
                "claiming due cascades",
            )
            .await?;
        rows.iter()
            .map(|r| col::<String>(r, 0, "claimed id").map(NotificationId::from))
            .collect()
    }

    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rows = self
            .query(&self.sql.next_wake, &[], "reading the next timer")
            .await?;
        let ns: Option<i64> = match rows.first() {
            Some(r) => col(r, 0, "next timer")?,
            None => None,
        };
        Ok(ns.map(from_ns))
    }

    async fn find_message(
        &self,
        provider_message_id: &ProviderMessageId,
    ) -> Result<Option<MessageRef>, StoreError> {
        let rows = self
            .query(
                &self.sql.find_message,
                &[&provider_message_id.as_str()],
                "reading the message index",
            )
            .await?;
        rows.first()
            .map(|r| {
                let id: String = col(r, 0, "message cascade")?;
                let attempt: i64 = col(r, 1, "message attempt")?;
                Ok(MessageRef {
                    notification_id: NotificationId::from(id),
                    attempt: usize::try_from(attempt).map_err(|_| {
                        StoreError::Corrupt(format!(
                            "message {provider_message_id}: bad attempt index {attempt}"
                        ))
                    })?,
                })
            })
            .transpose()
    }

    async fn active_by_reply_key(&self, key: &str) -> Result<Vec<NotificationId>, StoreError> {
        let rows = self
            .query(&self.sql.by_reply_key, &[&key], "reading the reply index")
            .await?;
        rows.iter()
            .map(|r| col::<String>(r, 0, "reply key cascade").map(NotificationId::from))
            .collect()
    }

    async fn count_active(&self) -> Result<usize, StoreError> {
        let rows = self
            .query(&self.sql.count_active, &[], "counting active cascades")
            .await?;
        let n: i64 = match rows.first() {
            Some(r) => col(r, 0, "active count")?,
            None => 0,
        };
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
        let cutoff = to_ns(ended_before, "ended_before")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                &self.sql.purge,
                &[&cutoff, &limit],
                "purging finished cascades",
            )
            .await?;
        let n: i64 = match rows.first() {
            Some(r) => col(r, 0, "purged count")?,
            None => 0,
        };
        usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("purged count is {n}")))
    }
}

#[async_trait]
impl WindowStore for PostgresStore {
    async fn record_inbound(
        &self,
        channel: &ChannelId,
        address_key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let at = to_ns(at, "inbound time")?;
        self.query(
            &self.sql.record_inbound,
            &[&channel.as_str(), &address_key, &at],
            "recording an inbound message",
        )
        .await
        .map(|_| ())
    }

    async fn last_inbound(
        &self,
        channel: &ChannelId,
        address_key: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rows = self
            .query(
                &self.sql.last_inbound,
                &[&channel.as_str(), &address_key],
                "reading a window",
            )
            .await?;
        rows.first()
            .map(|r| col::<i64>(r, 0, "last inbound").map(from_ns))
            .transpose()
    }

    async fn close(&self, channel: &ChannelId, address_key: &str) -> Result<(), StoreError> {
        self.query(
            &self.sql.close,
            &[&channel.as_str(), &address_key],
            "closing a window",
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::valid_schema;

    #[test]
    fn schema_names() {
        assert!(valid_schema("messaging"));
        assert!(valid_schema("_t_123"));
        assert!(!valid_schema("1abc"));
        assert!(!valid_schema("a\"; DROP TABLE x; --"));
        assert!(!valid_schema(""));
        assert!(!valid_schema(&"a".repeat(64)));
    }
}
