//! Test doubles and suites for adapters and for your own tests: a stub channel with scripted
//! results, the shared conformance corpus of real provider payloads, and the behaviour suite every
//! [`Channel`](crate::Channel) implementation runs.

use std::path::PathBuf;

pub mod channel_suite;
mod stub;

pub use stub::{StubChannel, typical_capabilities};

/// The shared conformance corpus (`MESSAGING_CONFORMANCE_DIR`, else `../shared/conformance`
/// beside the workspace root), or `None` with a notice printed when it is absent.
///
/// `manifest_dir` is the calling crate's `CARGO_MANIFEST_DIR`; the workspace root is its parent.
pub fn conformance_dir(manifest_dir: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("MESSAGING_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(manifest_dir).join("../../shared/conformance"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "skipped: conformance corpus not found at {} (set MESSAGING_CONFORMANCE_DIR)",
            dir.display()
        );
        None
    }
}

/// Every file under `sub` of the conformance corpus with extension `ext`, sorted; empty (with a
/// notice) when the corpus is absent.
pub fn conformance_files(manifest_dir: &str, sub: &str, ext: &str) -> Vec<PathBuf> {
    let Some(root) = conformance_dir(manifest_dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![root.join(sub)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
