//! SMS encoding: GSM 03.38 detection (with the extension table) and segment counting.
//!
//! Shared by the SMS adapters (cost, `parts` in receipts), the linter (`sms-unicode`, `too-long`)
//! and [`TextUnit::SmsSegments`](crate::TextUnit::SmsSegments).
//!
//! The rules follow the GSM 03.38 alphabet and the way carriers and Twilio's segment calculator
//! split concatenated messages:
//!
//! * GSM-7 if every character is in the basic table or the extension table; an extension
//!   character (`^ { } \ [ ] ~ | €` and form feed) costs two septets (ESC + code). One other
//!   character switches the **whole** text to UCS-2, where every UTF-16 unit costs one.
//! * One segment carries 160 septets or 70 UCS-2 units; a concatenated part carries 153 or 67
//!   (the rest holds the user data header).
//! * An escape pair, a surrogate pair and a whole grapheme cluster are never split across
//!   segments, so a part may carry fewer than 153 / 67 units.
//!
//! ```
//! use messaging_core::text::sms::{analyze, SmsEncoding};
//! let a = analyze("Привет! Ваша запись к врачу 12.03 в 10:00");
//! assert_eq!((a.encoding, a.units, a.segments), (SmsEncoding::Ucs2, 41, 1));
//! let b = analyze(&"€".repeat(81));
//! assert_eq!((b.encoding, b.units, b.segments), (SmsEncoding::Gsm7, 162, 2));
//! ```

use std::ops::Range;

use unicode_segmentation::UnicodeSegmentation;

/// Septets in a single GSM-7 message.
pub const GSM7_SINGLE: usize = 160;
/// Septets in one part of a concatenated GSM-7 message.
pub const GSM7_PART: usize = 153;
/// UTF-16 units in a single UCS-2 message.
pub const UCS2_SINGLE: usize = 70;
/// UTF-16 units in one part of a concatenated UCS-2 message.
pub const UCS2_PART: usize = 67;

/// The encoding an SMS text needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SmsEncoding {
    /// GSM 03.38 7-bit default alphabet (with the extension table).
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UCS-2 (UTF-16 units).
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl SmsEncoding {
    /// The name used in JSON and by providers: `"GSM-7"` or `"UCS-2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SmsEncoding::Gsm7 => "GSM-7",
            SmsEncoding::Ucs2 => "UCS-2",
        }
    }

    /// Units one un-split message carries: 160 or 70.
    pub fn single_capacity(self) -> usize {
        match self {
            SmsEncoding::Gsm7 => GSM7_SINGLE,
            SmsEncoding::Ucs2 => UCS2_SINGLE,
        }
    }

    /// Units one part of a concatenated message carries: 153 or 67.
    pub fn part_capacity(self) -> usize {
        match self {
            SmsEncoding::Gsm7 => GSM7_PART,
            SmsEncoding::Ucs2 => UCS2_PART,
        }
    }

    /// The cost of one character in this encoding: septets for GSM-7 (`None` when the character
    /// is not in the alphabet), UTF-16 units for UCS-2.
    pub fn char_units(self, c: char) -> Option<usize> {
        match self {
            SmsEncoding::Gsm7 => gsm7_septets(c),
            SmsEncoding::Ucs2 => Some(c.len_utf16()),
        }
    }
}

impl std::fmt::Display for SmsEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of [`analyze`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SmsAnalysis {
    /// The encoding.
    pub encoding: SmsEncoding,
    /// Septets (GSM-7) or UTF-16 units (UCS-2).
    pub units: usize,
    /// Segments (billed messages). An empty text is one segment.
    pub segments: usize,
}

/// Septet cost of ASCII characters: 0 = not in GSM 03.38, 1 = basic table, 2 = extension table.
const ASCII_SEPTETS: [u8; 128] = {
    let mut t = [1u8; 128];
    let mut i = 0;
    while i < 32 {
        t[i] = 0;
        i += 1;
    }
    t[b'\n' as usize] = 1;
    t[b'\r' as usize] = 1;
    t[0x0C] = 2; // form feed: ESC 0x0A
    t[b'`' as usize] = 0;
    t[127] = 0;
    let ext = b"^{}\\[]~|";
    let mut j = 0;
    while j < ext.len() {
        t[ext[j] as usize] = 2;
        j += 1;
    }
    t
};

/// Septets one character costs in GSM 03.38: `Some(1)` for the basic table, `Some(2)` for the
/// extension table, `None` when the text would need UCS-2.
///
/// ```
/// use messaging_core::text::sms::gsm7_septets;
/// assert_eq!(gsm7_septets('a'), Some(1));
/// assert_eq!(gsm7_septets('€'), Some(2));
/// assert_eq!(gsm7_septets('Ç'), Some(1));
/// assert_eq!(gsm7_septets('ç'), None); // only the capital is in the table
/// assert_eq!(gsm7_septets('я'), None);
/// ```
pub fn gsm7_septets(c: char) -> Option<usize> {
    if c.is_ascii() {
        return match ASCII_SEPTETS[c as usize] {
            0 => None,
            n => Some(n as usize),
        };
    }
    match c {
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        '€' => Some(2),
        _ => None,
    }
}

/// Whether the whole text fits the GSM 03.38 alphabet (with the extension table).
pub fn is_gsm7(text: &str) -> bool {
    // ASCII fast path: most texts are decided byte by byte.
    text.bytes()
        .all(|b| b >= 0x80 || ASCII_SEPTETS[b as usize] != 0)
        && (text.is_ascii() || text.chars().all(|c| gsm7_septets(c).is_some()))
}

/// The characters that force UCS-2, each once, in order of first appearance.
///
/// ```
/// use messaging_core::text::sms::non_gsm7_chars;
/// assert_eq!(non_gsm7_chars("más"), vec!['á']);
/// ```
pub fn non_gsm7_chars(text: &str) -> Vec<char> {
    let mut out = Vec::new();
    for c in text.chars() {
        if gsm7_septets(c).is_none() && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The encoding a text needs.
pub fn encoding_of(text: &str) -> SmsEncoding {
    if is_gsm7(text) {
        SmsEncoding::Gsm7
    } else {
        SmsEncoding::Ucs2
    }
}

/// The length of `text` in `encoding`'s units, or `None` if a character cannot be encoded in
/// GSM-7.
pub fn units_in(text: &str, encoding: SmsEncoding) -> Option<usize> {
    match encoding {
        SmsEncoding::Gsm7 => text.chars().map(gsm7_septets).sum(),
        SmsEncoding::Ucs2 => Some(text.encode_utf16().count()),
    }
}

/// Encoding, length and segment count of an SMS text.
///
/// ```
/// use messaging_core::text::sms::{analyze, SmsEncoding};
/// let a = analyze(&"1234567890".repeat(16));
/// assert_eq!((a.encoding, a.units, a.segments), (SmsEncoding::Gsm7, 160, 1));
/// assert_eq!(analyze(&"а".repeat(71)).segments, 2); // Cyrillic: 70 per message, 67 per part
/// ```
pub fn analyze(text: &str) -> SmsAnalysis {
    let mut septets = 0usize;
    let mut gsm = true;
    for c in text.chars() {
        match gsm7_septets(c) {
            Some(n) => septets += n,
            None => {
                gsm = false;
                break;
            }
        }
    }
    let (encoding, units) = if gsm {
        (SmsEncoding::Gsm7, septets)
    } else {
        (SmsEncoding::Ucs2, text.encode_utf16().count())
    };
    let segments = if units <= encoding.single_capacity() {
        1
    } else {
        let mut n = 0;
        pack(text, encoding, |_| n += 1);
        n
    };
    SmsAnalysis {
        encoding,
        units,
        segments,
    }
}

/// The byte ranges of `text` that go into each segment, as a phone network would split it.
///
/// ```
/// use messaging_core::text::sms::segment_ranges;
/// let text = "€".repeat(81);
/// let parts: Vec<usize> = segment_ranges(&text).iter().map(|r| text[r.clone()].chars().count()).collect();
/// assert_eq!(parts, vec![76, 5]); // an escape pair is never split
/// ```
pub fn segment_ranges(text: &str) -> Vec<Range<usize>> {
    let encoding = encoding_of(text);
    let units = units_in(text, encoding).unwrap_or(usize::MAX);
    if units <= encoding.single_capacity() {
        return std::iter::once(0..text.len()).collect();
    }
    let mut out = Vec::new();
    pack(text, encoding, |r| out.push(r));
    out
}

/// Packs whole graphemes greedily into concatenated parts and reports each part's byte range.
/// A grapheme larger than a part (a base with dozens of combining marks) is packed character
/// by character, so the loop always advances.
fn pack(text: &str, encoding: SmsEncoding, mut emit: impl FnMut(Range<usize>)) {
    let mut packer = Packer {
        cap: encoding.part_capacity(),
        start: 0,
        used: 0,
    };
    if each_char_is_a_grapheme(text) {
        for (at, c) in text.char_indices() {
            packer.add(at, encoding.char_units(c).unwrap_or(2), &mut emit);
        }
    } else {
        for (at, g) in text.grapheme_indices(true) {
            let n: usize = g.chars().map(|c| encoding.char_units(c).unwrap_or(2)).sum();
            if n <= packer.cap {
                packer.add(at, n, &mut emit);
            } else {
                for (off, c) in g.char_indices() {
                    packer.add(at + off, encoding.char_units(c).unwrap_or(2), &mut emit);
                }
            }
        }
    }
    emit(packer.start..text.len());
}

/// Whether every character of `text` is a grapheme cluster of its own, judged by ranges that
/// hold no combining marks, joiners, variation selectors, regional indicators or CR (ASCII,
/// Latin-1, Latin Extended, Greek, Cyrillic, general punctuation, currency and letter-like
/// symbols). Segmenting graphemes is slow; nearly every clinic text passes this test.
pub(crate) fn each_char_is_a_grapheme(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(c as u32,
            0x00..=0x0C | 0x0E..=0x02FF | 0x0370..=0x0482 | 0x048A..=0x052F
            | 0x2010..=0x2027 | 0x2030..=0x205F | 0x20A0..=0x20BF | 0x2100..=0x214F)
    })
}

/// The state of [`pack`]: where the open part starts and how full it is.
struct Packer {
    cap: usize,
    start: usize,
    used: usize,
}

impl Packer {
    fn add(&mut self, at: usize, n: usize, emit: &mut impl FnMut(Range<usize>)) {
        if self.used + n > self.cap && self.used > 0 {
            emit(self.start..at);
            self.start = at;
            self.used = 0;
        }
        self.used += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part_chars(text: &str) -> Vec<usize> {
        segment_ranges(text)
            .iter()
            .map(|r| text[r.clone()].chars().count())
            .collect()
    }

    #[test]
    fn reference_vectors_from_the_calculator() {
        let digits = |n: usize| "1234567890".repeat(n / 10 + 1)[..n].to_owned();
        assert_eq!(analyze(&digits(160)).segments, 1);
        assert_eq!(analyze(&digits(161)).segments, 2);
        assert_eq!(part_chars(&digits(306)), vec![153, 153]);
        assert_eq!(analyze(&digits(307)).segments, 3);
        assert_eq!(analyze(&digits(459)).segments, 3);
        assert_eq!(part_chars(&digits(460)), vec![153, 153, 153, 1]);
        assert_eq!(analyze(&"€".repeat(80)).segments, 1);
        assert_eq!(part_chars(&"€".repeat(81)), vec![76, 5]);
        let mixed = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        assert_eq!(part_chars(&mixed), vec![152, 11]);
        assert_eq!(part_chars(&"]".repeat(153)), vec![76, 76, 1]);
        assert_eq!(part_chars(&"а".repeat(71)), vec![67, 4]);
        assert_eq!(analyze(&"а".repeat(134)).segments, 2);
        assert_eq!(part_chars(&"а".repeat(135)), vec![67, 67, 1]);
        assert_eq!(analyze(&"а".repeat(201)).segments, 3);
        assert_eq!(analyze(&"а".repeat(202)).segments, 4);
        let surrogate = format!("{}😜{}", "a".repeat(66), "a".repeat(10));
        assert_eq!(part_chars(&surrogate), vec![66, 11]);
        let f = analyze("\u{c}");
        assert_eq!((f.encoding, f.units, f.segments), (SmsEncoding::Gsm7, 2, 1));
        assert_eq!(analyze("ç").encoding, SmsEncoding::Ucs2);
        assert_eq!(analyze("Ç").encoding, SmsEncoding::Gsm7);
        assert_eq!(analyze("`").encoding, SmsEncoding::Ucs2);
        assert_eq!(analyze("It’s ok").encoding, SmsEncoding::Ucs2);
        let crlf = analyze("\rabcde\r\n123");
        assert_eq!((crlf.encoding, crlf.units), (SmsEncoding::Gsm7, 11));
        assert_eq!(non_gsm7_chars("más"), vec!['á']);
    }

    #[test]
    fn the_fast_path_agrees_with_grapheme_segmentation() {
        for t in [
            "Привет, мир! 10:00 — «да» №5 €",
            "abc\u{a0}def",
            "Ελλάδα",
            "x\u{2116}",
        ] {
            assert!(each_char_is_a_grapheme(t), "{t}");
            assert_eq!(t.graphemes(true).count(), t.chars().count(), "{t}");
        }
        for t in ["e\u{301}", "a\r\nb", "👍🏽", "🇮🇹", "и\u{306}", "a\u{200d}b"] {
            assert!(!each_char_is_a_grapheme(t), "{t:?}");
        }
    }

    #[test]
    fn empty_text_is_one_segment() {
        let a = analyze("");
        assert_eq!((a.encoding, a.units, a.segments), (SmsEncoding::Gsm7, 0, 1));
        assert_eq!(segment_ranges(""), vec![0..0]);
    }

    #[test]
    fn oversized_grapheme_does_not_hang() {
        let text = format!("e{}", "\u{301}".repeat(200));
        let a = analyze(&text);
        assert_eq!(a.encoding, SmsEncoding::Ucs2);
        assert_eq!(a.units, 201);
        assert_eq!(a.segments, 3); // 201 units: three full parts
    }

    #[cfg(feature = "testkit")]
    #[test]
    fn agrees_with_the_conformance_vectors() {
        let Some(dir) = crate::testkit::conformance_dir(env!("CARGO_MANIFEST_DIR")) else {
            return;
        };
        let path = dir.join("sms/segments.tsv");
        let Ok(body) = std::fs::read_to_string(&path) else {
            println!("skipped: {} not found", path.display());
            return;
        };
        let mut rows = 0;
        for (i, line) in body.lines().enumerate().skip(1) {
            if line.is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 3, "line {}: {line:?}", i + 1);
            let text = unescape_tsv(cols[0]);
            let a = analyze(&text);
            assert_eq!(a.encoding.as_str(), cols[1], "line {}: {text:?}", i + 1);
            assert_eq!(a.segments.to_string(), cols[2], "line {}: {text:?}", i + 1);
            rows += 1;
        }
        assert!(rows >= 40, "only {rows} rows in {}", path.display());
    }

    #[cfg(feature = "testkit")]
    /// The corpus escapes backslash, TAB, LF and CR (see its README).
    fn unescape_tsv(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn fast_path_is_exact(s in "[\\x00-\\x{52F}\\x{2010}-\\x{214F}]{0,40}") {
            if each_char_is_a_grapheme(&s) {
                proptest::prop_assert_eq!(s.graphemes(true).count(), s.chars().count());
            }
        }

        #[test]
        fn never_panics_and_ranges_cover_text(s in "\\PC{0,400}") {
            let a = analyze(&s);
            let ranges = segment_ranges(&s);
            proptest::prop_assert_eq!(ranges.len(), a.segments);
            let mut at = 0;
            for r in &ranges {
                proptest::prop_assert_eq!(r.start, at);
                at = r.end;
                let part = &s[r.clone()];
                let units = units_in(part, a.encoding).unwrap_or(usize::MAX);
                let cap = if a.segments == 1 { a.encoding.single_capacity() } else { a.encoding.part_capacity() };
                // Only a single oversized grapheme may be split below the grapheme level.
                proptest::prop_assert!(units <= cap);
            }
            proptest::prop_assert_eq!(at, s.len());
        }
    }
}
