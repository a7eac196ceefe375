//! The in-memory stores pass the conformance suites they are the reference for.

use messaging_conversations::identity::{MemoryIdentityStore, conformance as identity};
use messaging_conversations::inbox::{MemoryInboxStore, conformance as inbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_identity_store_conforms() {
    identity::run_all(|| async { MemoryIdentityStore::new() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_inbox_store_conforms() {
    inbox::run_all(|| async { MemoryInboxStore::new() }).await;
}
