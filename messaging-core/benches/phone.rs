//! Parses per second of [`Phone::parse`] on two sets from the agreement corpus
//! (`tests/data/phones/corpus.jsonl`): `ru_mobile` (Russian mobiles in every common form) and
//! `mixed` (numbers of about 80 countries in international, E.164, RFC 3966 and national forms).
//! `tests/data/phones/bench.py` measures libphonenumber's Python port on the same sets.
//!
//! `cargo bench -p messaging-core --bench phone` runs criterion (the `thrpt` line is parses per
//! second). For instruction counts, `PHONE_BENCH_LOOP=<set>:<rounds>` parses the set that many
//! times and exits, to be run under `valgrind --tool=callgrind`; the difference between two round
//! counts, divided by the extra parses, is the cost of one parse without the one-off set-up.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use messaging_core::Phone;

fn set(name: &str) -> Vec<String> {
    let corpus = include_str!("../tests/data/phones/corpus.jsonl");
    corpus
        .lines()
        .skip(1)
        .map(|line| serde_json::from_str::<(String, String, String)>(line).expect("corpus row"))
        .filter(|(_, _, tag)| match name {
            "ru_mobile" => tag == "ru/mobile",
            "mixed" => tag.starts_with("intl/"),
            _ => panic!("unknown set {name}"),
        })
        .map(|(input, _, _)| input)
        .collect()
}

fn parse_all(inputs: &[String]) -> usize {
    inputs
        .iter()
        .filter(|s| Phone::parse(black_box(s)).is_ok())
        .count()
}

fn main() {
    if let Ok(spec) = std::env::var("PHONE_BENCH_LOOP") {
        let (name, rounds) = spec
            .split_once(':')
            .expect("PHONE_BENCH_LOOP=<set>:<rounds>");
        let inputs = set(name);
        let rounds: usize = rounds.parse().expect("rounds");
        let valid: usize = (0..rounds).map(|_| parse_all(&inputs)).sum();
        println!(
            "{name}: {} inputs x {rounds} rounds, {valid} valid",
            inputs.len()
        );
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    for name in ["ru_mobile", "mixed"] {
        let inputs = set(name);
        let mut group = c.benchmark_group("phone_parse");
        group.throughput(Throughput::Elements(inputs.len() as u64));
        group.bench_function(name, |b| b.iter(|| parse_all(&inputs)));
        group.finish();
    }
    c.final_summary();
}
