//! In-process fake provider servers that speak each provider's real JSON, for wire-level tests
//! and the load example. Each module starts an axum server on a random loopback port.
#![forbid(unsafe_code)]

pub mod echo;
pub mod faults;
pub mod fuzz;
pub mod max;
pub mod sms;
pub mod telegram;
pub mod waba;

/// Every `.rs` file under `dir`, recursively (the structure tests read the sources as text).
pub fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("readable source dir")
        .flatten()
    {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}
