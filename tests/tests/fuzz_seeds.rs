//! Every fuzz target's body runs over its seeds here, in CI: the conformance corpus's real
//! payloads, the phone corpus, the hand-written seeds and every crash input the fuzzer ever
//! found (`fuzz/regressions/`). The timed fuzzing itself is `fuzz/run.sh`.

use messaging_tests::fuzz::{TARGETS, seeds};

#[test]
fn every_fuzz_target_survives_its_seeds() {
    for (target, body) in TARGETS {
        let inputs = seeds(target);
        // Each target has hand-written seeds, whatever the conformance corpus holds.
        assert!(!inputs.is_empty(), "{target}: no seeds");
        for input in &inputs {
            body(input);
        }
        println!("{target}: {} seeds", inputs.len());
    }
}

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/Cargo.toml"))
            .expect("fuzz/Cargo.toml");
    for (target, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "{target} has no [[bin]] in fuzz/Cargo.toml"
        );
        let source = std::fs::read_to_string(format!(
            "{}/../fuzz/fuzz_targets/{target}.rs",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("a fuzz target source");
        assert!(
            source.contains(&format!("messaging_tests::fuzz::{target}(")),
            "fuzz/fuzz_targets/{target}.rs does not call messaging_tests::fuzz::{target}"
        );
    }
}

/// Inputs near the real ones, without the fuzzer: each seed cut short and with bytes flipped or
/// turned into quotes.
#[test]
fn mutated_seeds_do_not_panic() {
    for (target, body) in TARGETS {
        for seed in seeds(target).iter().take(40) {
            for cut in [
                1,
                seed.len() / 3,
                seed.len() / 2,
                seed.len().saturating_sub(1),
            ] {
                body(&seed[..cut.min(seed.len())]);
            }
            for i in (0..seed.len()).step_by(seed.len() / 16 + 1) {
                let mut m = seed.clone();
                m[i] ^= 0x20;
                body(&m);
                m[i] = b'"';
                body(&m);
            }
        }
    }
}
