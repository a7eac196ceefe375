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
