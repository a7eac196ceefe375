//! The store conformance suite (`messaging_cascade::store::conformance`) against every store:
//! in memory, SQLite on a temporary file, and PostgreSQL when `MESSAGING_TEST_DATABASE_URL` is set;
//! the report suite (`conformance::run_reports`) likewise.

mod common;

use messaging_cascade::store::{MemoryStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance::run_all(|| async { MemoryStore::new() }).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    use messaging_store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    conformance::run_all(|| {
        n += 1;
        let path = dir.path().join(format!("conformance-{n}.db"));
        async move { SqliteStore::open(path).await.expect("open sqlite") }
    })
    .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms_with_normal_durability_and_one_reader() {
    use messaging_store::{Durability, SqliteOptions, SqliteStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    conformance::run_all(|| {
        n += 1;
        let path = dir.path().join(format!("conformance-{n}.db"));
        let opts = SqliteOptions::default()
            .durability(Durability::Normal)
            .readers(1)
            .max_batch(2);
        async move {
            SqliteStore::open_with(path, opts)
                .await
                .expect("open sqlite")
        }
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    use std::sync::{Arc, Mutex};

    use messaging_store::{PostgresOptions, PostgresStore};

    let Some(config) = common::pg_config() else {
        return;
    };
    let created: Arc<Mutex<Vec<PostgresStore>>> = Arc::default();
    let made = Arc::clone(&created);
    // Run on a task so the schemas are dropped even when a check fails.
    let run = tokio::spawn(async move {
        conformance::run_all(move || {
            let config = config.clone();
            let made = Arc::clone(&made);
            async move {
                let opts = PostgresOptions::default()
                    .schema(common::unique_schema("conf"))
                    .pool_size(4);
                let store = PostgresStore::connect_with(&config, opts)
                    .await
                    .expect("connect to MESSAGING_TEST_DATABASE_URL");
                made.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(store.clone());
                store
            }
        })
        .await;
    })
    .await;
    let stores = std::mem::take(&mut *created.lock().unwrap_or_else(|e| e.into_inner()));
    for s in stores {
        s.drop_schema().await.expect("drop test schema");
    }
    if let Err(e) = run {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_reports_conform() {
    conformance::run_reports(|| async { MemoryStore::new() }).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_reports_conform() {
    let files = common::SqliteFiles::temp();
    conformance::run_reports(|| files.make()).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_reports_conform() {
    common::run_on_postgres("reports", |pg| async move {
        conformance::run_reports(|| pg.make()).await;
    })
    .await;
}
