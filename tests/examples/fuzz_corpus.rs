//! Writes each fuzz target's seeds (`messaging_tests::fuzz::seeds`) into `<dir>/<target>/`, the
//! starting corpus `fuzz/run.sh` hands to cargo-fuzz.
//!
//! `cargo run -p messaging-tests --example fuzz_corpus -- fuzz/corpus`

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".to_owned());
    for (target, _) in messaging_tests::fuzz::TARGETS {
        let target_dir = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&target_dir)?;
        let seeds = messaging_tests::fuzz::seeds(target);
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(target_dir.join(format!("seed-{i:05}")), seed)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}
