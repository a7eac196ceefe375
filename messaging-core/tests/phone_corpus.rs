//! [`Phone::parse`] agrees with libphonenumber.
//!
//! `tests/data/phones/corpus.jsonl` holds about 8,800 inputs (Russian numbers in every common
//! form, CIS, Europe, Asia, the Americas, toll-free and landlines, pasted forms with Unicode
//! dashes, spaces, invisible marks and labels, extensions, letters and garbage), each labelled by
//! libphonenumber's Python port (`phonenumbers.parse(input, "RU")`, `is_valid_number`, E.164).
//! `tests/data/phones/generate.py` regenerates it.

use messaging_core::{Phone, PhoneError};

/// Where [`Phone::parse`] departs from libphonenumber on purpose, and why. Every row on which the
/// two disagree must be one of these; any other disagreement counts against the agreement rate.
const DELIBERATE: &[(&str, &str)] = &[
    (
        "extension",
        "libphonenumber keeps an extension (`доб. 123`, `ext. 5`, `x5`, `#12`) beside a valid number; \
         Phone has no room for one and a message cannot reach an extension, so it refuses the input \
         (PhoneError::Extension, which carries the same E.164 the oracle found) rather than text \
         the switchboard",
    ),
    (
        "letters",
        "libphonenumber reads letters after the number has started as keypad digits \
         (`1-800-FLOWERS`, `O` for 0 becomes 6); Phone refuses them (PhoneError::Letters) so that \
         a typo never becomes another number; letters before the number (`Тел:`, `tel:`) are fine",
    ),
];

#[derive(Default)]
struct Tally {
    rows: usize,
    verdict_agree: usize,
    oracle_valid: usize,
    e164_agree: usize,
    deliberate: [usize; 2],
    disagreements: Vec<String>,
    different_number: Vec<String>,
}

fn tally() -> (serde_json::Value, Tally) {
    let corpus = include_str!("data/phones/corpus.jsonl");
    let mut lines = corpus.lines();
    let header: serde_json::Value =
        serde_json::from_str(lines.next().expect("header")).expect("header is JSON");
    let mut t = Tally::default();
    for line in lines {
        let (input, want, tag): (String, String, String) =
            serde_json::from_str(line).expect("a corpus row is [input, e164, tag]");
        t.rows += 1;
        let got = Phone::parse(&input);
        let oracle_valid = !want.is_empty();
        t.oracle_valid += usize::from(oracle_valid);
        let deliberate = match &got {
            Err(PhoneError::Extension { e164, .. }) if oracle_valid => {
                assert_eq!(
                    e164, &want,
                    "{input:?}: the number before the extension differs"
                );
                Some(0)
            }
            Err(PhoneError::Letters(_)) if oracle_valid => Some(1),
            _ => None,
        };
        if let Some(i) = deliberate {
            t.deliberate[i] += 1;
            continue;
        }
        match (&got, oracle_valid) {
            (Ok(p), true) if p.as_str() == want => {
                t.verdict_agree += 1;
                t.e164_agree += 1;
            }
            (Ok(p), true) => {
                t.verdict_agree += 1;
                t.different_number
                    .push(format!("{tag} {input:?}: oracle {want}, ours {p}"));
            }
            (Err(_), false) => t.verdict_agree += 1,
            (Ok(p), false) => t
                .disagreements
                .push(format!("{tag} {input:?}: oracle invalid, ours {p}")),
            (Err(e), true) => t
                .disagreements
                .push(format!("{tag} {input:?}: oracle {want}, ours {e}")),
        }
    }
    (header, t)
}

#[test]
fn phone_parsing_agrees_with_libphonenumber() {
    let (header, t) = tally();
    let deliberate: usize = t.deliberate.iter().sum();
    let compared = t.rows - deliberate;
    let verdict = 100.0 * t.verdict_agree as f64 / compared as f64;
    let valid_compared = t.oracle_valid - deliberate;
    let e164 = 100.0 * t.e164_agree as f64 / valid_compared as f64;
    println!(
        "oracle: {} {} (default region {})",
        header["oracle"], header["version"], header["region"]
    );
    println!(
        "{} inputs, {} valid by the oracle; {} deliberate differences:",
        t.rows, t.oracle_valid, deliberate
    );
    for ((name, reason), n) in DELIBERATE.iter().zip(t.deliberate) {
        println!("  {name}: {n} ({reason})");
    }
    println!(
        "valid/invalid verdict: {verdict:.2} % of {compared}; E.164: {e164:.2} % of {valid_compared}"
    );
    for d in &t.disagreements {
        println!("  disagreement: {d}");
    }
    assert!(t.rows >= 5_000, "the corpus has {} rows", t.rows);
    assert!(
        t.different_number.is_empty(),
        "inputs read as a different valid number: {:#?}",
        t.different_number
    );
    assert!(verdict >= 99.5, "verdict agreement {verdict:.2} % < 99.5 %");
    assert!(e164 >= 99.5, "E.164 agreement {e164:.2} % < 99.5 %");
}
