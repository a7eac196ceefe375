//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher};

/// The PostgreSQL test database from `MESSAGING_TEST_DATABASE_URL` (libpq `key=value` or a
/// `postgres://` URL), or `None` after printing that the test is skipped.
pub fn pg_config() -> Option<String> {
    match std::env::var("MESSAGING_TEST_DATABASE_URL") {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            println!("skipped: MESSAGING_TEST_DATABASE_URL not set");
            None
        }
    }
}

/// A fresh schema name for one test.
pub fn unique_schema(tag: &str) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("mstest_{tag}_{}_{:x}", std::process::id(), h.finish() >> 16)
}

/// Fresh SQLite stores, each on its own file in one temporary directory, for the conformance
/// suites' factories.
#[cfg(feature = "sqlite")]
pub struct SqliteFiles {
    dir: tempfile::TempDir,
    n: std::sync::atomic::AtomicUsize,
}

#[cfg(feature = "sqlite")]
impl SqliteFiles {
    /// A new temporary directory.
    pub fn temp() -> Self {
        SqliteFiles {
            dir: tempfile::tempdir().expect("tempdir"),
            n: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Opens a store on a new file.
    pub async fn make(&self) -> messaging_store::SqliteStore {
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.path().join(format!("suite-{n}.db"));
        messaging_store::SqliteStore::open(path)
            .await
            .expect("open sqlite")
    }
}

/// Fresh PostgreSQL stores, each in its own schema, all dropped by [`run_on_postgres`].
#[cfg(feature = "postgres")]
#[derive(Clone)]
pub struct PgSchemas {
    config: String,
    tag: &'static str,
    made: std::sync::Arc<std::sync::Mutex<Vec<messaging_store::PostgresStore>>>,
}

#[cfg(feature = "postgres")]
impl PgSchemas {
    /// Connects a store to a new schema.
    pub async fn make(&self) -> messaging_store::PostgresStore {
        let opts = messaging_store::PostgresOptions::default()
            .schema(unique_schema(self.tag))
            .pool_size(4);
        let store = messaging_store::PostgresStore::connect_with(&self.config, opts)
            .await
            .expect("connect to MESSAGING_TEST_DATABASE_URL");
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(store.clone());
        store
    }

    /// The connection string.
    pub fn config(&self) -> &str {
        &self.config
    }
}

/// Runs `suite` with a factory of fresh PostgreSQL schemas and drops every schema it made,
/// even when a check fails; skipped with a notice when `MESSAGING_TEST_DATABASE_URL` is unset.
#[cfg(feature = "postgres")]
pub async fn run_on_postgres<F, Fut>(tag: &'static str, suite: F)
where
    F: FnOnce(PgSchemas) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(config) = pg_config() else {
        return;
    };
    let schemas = PgSchemas {
        config,
        tag,
        made: Default::default(),
    };
    // On a task, so that the schemas are dropped when a check panics.
    let run = tokio::spawn(suite(schemas.clone())).await;
    let made = std::mem::take(&mut *schemas.made.lock().unwrap_or_else(|e| e.into_inner()));
    for s in made {
        s.drop_schema().await.expect("drop test schema");
    }
    if let Err(e) = run {
        std::panic::resume_unwind(e.into_panic());
    }
}
