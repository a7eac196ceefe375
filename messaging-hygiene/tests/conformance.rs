//! The in-memory counters pass the sender counters conformance suite they are the reference for.

use messaging_hygiene::governor::{MemoryCounters, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_counters_conform() {
    conformance::run_all(|| async { MemoryCounters::new() }).await;
}
