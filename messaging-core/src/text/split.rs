//! The splitter: a long text becomes short parts, sent one after another with a pause, the way
//! a person writes several short messages instead of one wall of text.
//!
//! A part ends at the best boundary that fits: a paragraph break, else a line break, else the end
//! of a sentence, else a space between words; only a text with no space in reach is cut between
//! two graphemes. A boundary that would leave a part shorter than a quarter of the window is passed
//! over for a lower-level one further on, so a short first paragraph does not become a lone part.
//! A part is never cut inside a grapheme, a link, or a GSM-7 escape pair (an escape pair is one
//! character of two septets).
//!
//! The whitespace at a cut is the separator: it is dropped, and every part is trimmed. So the parts
//! are exactly the slices [`Part::span`] of the original text, and what lies between them is only
//! whitespace.
//!
//! Units: characters for WhatsApp and Max, UTF-16 units for Telegram, and for SMS the units of the
//! encoding the whole text needs (GSM-7 septets, an extension character counting two, or UCS-2
//! units).
//!
//! ```
//! use messaging_core::ChannelKind;
//! use messaging_core::text::split::{split, SplitConfig};
//! let text = "Анна, напоминаем о приёме завтра в 10:00.\n\nАдрес: ул. Ленина, 5. Придёте?";
//! let parts = split(text, &SplitConfig::for_kind(ChannelKind::WhatsApp).max(50)).unwrap();
//! let texts: Vec<&str> = parts.iter().map(|p| p.text.as_str()).collect();
//! assert_eq!(texts, ["Анна, напоминаем о приёме завтра в 10:00.", "Адрес: ул. Ленина, 5. Придёте?"]);
//! assert!(parts[1].delay > std::time::Duration::ZERO);
//! ```

use std::ops::Range;
use std::time::Duration;

use unicode_segmentation::UnicodeSegmentation;

use super::TextUnit;
use super::links::find_links;
use super::sms::{self, SmsEncoding};
use crate::kind::ChannelKind;

/// How the splitter measures a part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitUnit {
    /// Unicode scalar values (WhatsApp, Max).
    Chars,
    /// UTF-16 code units (Telegram).
    Utf16,
    /// GSM-7 septets, or UCS-2 units when the whole text needs UCS-2 (SMS).
    Sms,
}

/// Splitter settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitConfig {
    /// The unit.
    pub unit: SplitUnit,
    /// The longest part, in `unit`. `None`: the default of the unit (500 for messengers; one
    /// segment for SMS, 160 septets or 70 UCS-2 units).
    pub max: Option<usize>,
    /// The pause before each part after the first.
    pub pause: Duration,
    /// Each pause is moved by up to this much either way, so the rhythm is not mechanical.
    /// The jitter is derived from the text, so one text always gets the same delays.
    pub jitter: Duration,
}

/// Default part size for messengers, in their unit.
pub const DEFAULT_MESSENGER_PART: usize = 500;

impl SplitConfig {
    /// The defaults for a channel kind: its unit, the default size, a 3 s pause with 1 s jitter.
    pub fn for_kind(kind: ChannelKind) -> Self {
        let unit = match kind.facts().unit {
            TextUnit::Chars => SplitUnit::Chars,
            TextUnit::Utf16 => SplitUnit::Utf16,
            TextUnit::SmsSegments => SplitUnit::Sms,
        };
        SplitConfig {
            unit,
            max: None,
            pause: Duration::from_secs(3),
            jitter: Duration::from_secs(1),
        }
    }

    /// Sets the longest part.
    pub fn max(mut self, max: usize) -> Self {
        self.max = Some(max);
        self
    }

    /// Sets the pause and its jitter.
    pub fn pause(mut self, pause: Duration, jitter: Duration) -> Self {
        self.pause = pause;
        self.jitter = jitter;
        self
    }
}

/// One part of a split text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Part {
    /// The text of the part.
    pub text: String,
    /// Where it is in the original text (bytes).
    pub span: Range<usize>,
    /// How long to wait after the previous part before sending this one (zero for the first).
    #[serde(with = "millis")]
    pub delay: Duration,
}

mod millis {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Why a text cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// The limit is zero.
    #[error("the part size must be at least 1")]
    ZeroLimit,
    /// A piece that may not be cut is longer than a part.
    #[error("{what} at bytes {}..{} is {units} units long, more than a part holds ({max})", span.start, span.end)]
    Unbreakable {
        /// `"link"` or `"grapheme"`.
        what: &'static str,
        /// Where it is.
        span: Range<usize>,
        /// Its length in the unit.
        units: usize,
        /// The part size.
        max: usize,
    },
}

/// How strong a boundary is; a higher level is preferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Word,
    Sentence,
    Line,
    Paragraph,
}

/// A whitespace run between two parts: the part ends at `cut`, the next begins at `resume`.
#[derive(Clone, Copy, Debug)]
struct Boundary {
    cut: usize,
    resume: usize,
    level: Level,
}

/// Measures text in a split unit.
#[derive(Clone, Copy, Debug)]
enum Meter {
    Chars,
    Utf16,
    Sms(SmsEncoding),
}

impl Meter {
    fn cost(self, s: &str) -> usize {
        match self {
            Meter::Chars => s.chars().count(),
            Meter::Utf16 => s.encode_utf16().count(),
            Meter::Sms(e) => s.chars().map(|c| e.char_units(c).unwrap_or(2)).sum(),
        }
    }
}

/// Splits `text` into parts that each fit `config`. An empty or blank text gives no parts.
pub fn split(text: &str, config: &SplitConfig) -> Result<Vec<Part>, SplitError> {
    let (meter, default_max) = match config.unit {
        SplitUnit::Chars => (Meter::Chars, DEFAULT_MESSENGER_PART),
        SplitUnit::Utf16 => (Meter::Utf16, DEFAULT_MESSENGER_PART),
        SplitUnit::Sms => {
            let e = sms::encoding_of(text);
            (Meter::Sms(e), e.single_capacity())
        }
    };
    let max = config.max.unwrap_or(default_max);
    if max == 0 {
        return Err(SplitError::ZeroLimit);
    }
    let end = text.trim_end().len();
    let mut start = text.len() - text.trim_start().len();
    let mut spans: Vec<Range<usize>> = Vec::new();
    if start >= end {
        return Ok(Vec::new());
    }
    if meter.cost(&text[start..end]) <= max {
        spans.push(start..end);
    } else {
        let links = whole_grapheme_links(text);
        let boundaries = boundaries(text, start, end);
        let simple = sms::each_char_is_a_grapheme(text);
        let mut next_boundary = 0;
        while start < end {
            // The longest prefix of whole graphemes that fits.
            let mut used = 0;
            let mut fit = start;
            let window = &text[start..end];
            let pieces: Box<dyn Iterator<Item = (usize, &str)>> = if simple {
                Box::new(
                    window
                        .char_indices()
                        .map(|(i, c)| (i, &window[i..i + c.len_utf8()])),
                )
            } else {
                Box::new(window.grapheme_indices(true))
            };
            for (off, g) in pieces {
                let c = meter.cost(g);
                if used + c > max {
                    break;
                }
                used += c;
                fit = start + off + g.len();
            }
            if fit == end {
                spans.push(start..end);
                break;
            }
            while next_boundary < boundaries.len() && boundaries[next_boundary].cut <= start {
                next_boundary += 1;
            }
            let reach = boundaries[next_boundary..]
                .iter()
                .take_while(|b| b.cut <= fit)
                .copied()
                .collect::<Vec<_>>();
            if let Some(b) = best(&reach, start, fit) {
                spans.push(start..b.cut);
                start = b.resume;
                continue;
            }
            if fit == start {
                let g = text[start..].graphemes(true).next().unwrap_or("");
                return Err(SplitError::Unbreakable {
                    what: "grapheme",
                    span: start..start + g.len(),
                    units: meter.cost(g),
                    max,
                });
            }
            match links.iter().find(|l| l.start < fit && fit < l.end) {
                Some(l) if l.start > start => {
                    spans.push(start..l.start);
                    start = l.start;
                }
                Some(l) => {
                    return Err(SplitError::Unbreakable {
                        what: "link",
                        span: l.clone(),
                        units: meter.cost(&text[l.clone()]),
                        max,
                    });
                }
                None => {
                    spans.push(start..fit);
                    start = fit;
                }
            }
        }
    }
    let seed = fnv1a(text.as_bytes());
    Ok(spans
        .into_iter()
        .enumerate()
        .map(|(i, span)| Part {
            text: text[span.clone()].to_owned(),
            span,
            delay: if i == 0 {
                Duration::ZERO
            } else {
                jittered(config.pause, config.jitter, seed ^ (i as u64))
            },
        })
        .collect())
}

/// Splits and returns only the texts (what `messaging split` prints).
pub fn split_texts(text: &str, config: &SplitConfig) -> Result<Vec<String>, SplitError> {
    Ok(split(text, config)?.into_iter().map(|p| p.text).collect())
}

/// The whitespace runs strictly inside `[start, end)`, classified.
/// The links of `text`, each widened to whole graphemes: a link found by its characters may end
/// inside a grapheme (a combining mark after its last letter), and a part can only end between
/// graphemes, so an unwidened link could be refused as unbreakable while it fits.
fn whole_grapheme_links(text: &str) -> Vec<Range<usize>> {
    let links = find_links(text);
    if links.is_empty() {
        return Vec::new();
    }
    let bounds: Vec<usize> = text
        .grapheme_indices(true)
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    links
        .into_iter()
        .map(|l| {
            let start = match bounds.binary_search(&l.span.start) {
                Ok(i) => bounds[i],
                Err(i) => bounds[i.saturating_sub(1)],
            };
            let end = match bounds.binary_search(&l.span.end) {
                Ok(i) => bounds[i],
                Err(i) => bounds.get(i).copied().unwrap_or(text.len()),
            };
            start..end
        })
        .collect()
}

fn boundaries(text: &str, start: usize, end: usize) -> Vec<Boundary> {
    let mut out = Vec::new();
    let mut run: Option<(usize, usize)> = None; // (start, newlines)
    for (i, c) in text[start..end].char_indices() {
        let i = start + i;
        if c.is_whitespace() {
            let nl = usize::from(c == '\n');
            run = Some(match run {
                Some((s, n)) => (s, n + nl),
                None => (i, nl),
            });
        } else if let Some((s, newlines)) = run.take() {
            let level = match newlines {
                0 if ends_sentence(&text[..s]) => Level::Sentence,
                0 => Level::Word,
                1 => Level::Line,
                _ => Level::Paragraph,
            };
            out.push(Boundary {
                cut: s,
                resume: i,
                level,
            });
        }
    }
    out
}

/// Whether `before` ends a sentence: `.`, `!`, `?` or `…`, maybe followed by closing quotes or
/// brackets.
fn ends_sentence(before: &str) -> bool {
    let trimmed = before.trim_end_matches([')', '»', '"', '\'', '”', ']']);
    trimmed.ends_with(['.', '!', '?', '…'])
}

/// The boundary to cut at: the strongest level that leaves a part of at least a quarter of the
/// window, the last one of that level; else the last boundary of any level.
fn best(reach: &[Boundary], start: usize, fit: usize) -> Option<Boundary> {
    let floor = start + (fit - start) / 4;
    for level in [Level::Paragraph, Level::Line, Level::Sentence, Level::Word] {
        if let Some(b) = reach
            .iter()
            .rev()
            .find(|b| b.level == level && b.cut > floor)
        {
            return Some(*b);
        }
    }
    reach.iter().rev().find(|b| b.cut > start).copied()
}

/// A stable 64-bit FNV-1a hash: the same bytes give the same number on every machine and
/// release, so a per-recipient choice (spintax variant, pause jitter) never changes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn jittered(pause: Duration, jitter: Duration, seed: u64) -> Duration {
    let j = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX / 4);
    if j == 0 {
        return pause;
    }
    // splitmix64 spreads a small seed change over all bits.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let offset = z % (2 * j + 1);
    let base = pause.saturating_add(Duration::from_millis(offset));
    base.saturating_sub(Duration::from_millis(j))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str, config: &SplitConfig) -> Vec<String> {
        split_texts(text, config).unwrap()
    }

    fn chars(max: usize) -> SplitConfig {
        SplitConfig::for_kind(ChannelKind::WhatsApp).max(max)
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(texts("  Привет  ", &chars(10)), ["Привет"]);
        assert!(texts("   ", &chars(10)).is_empty());
        assert!(texts("", &chars(10)).is_empty());
    }

    #[test]
    fn prefers_paragraph_then_sentence_then_word() {
        let t = "First sentence here. Second one is here.\n\nNew paragraph starts.";
        assert_eq!(
            texts(t, &chars(45)),
            [
                "First sentence here. Second one is here.",
                "New paragraph starts."
            ]
        );
        let t = "One two three. Four five six seven.";
        assert_eq!(
            texts(t, &chars(25)),
            ["One two three.", "Four five six seven."]
        );
        let t = "one two three four five six";
        assert_eq!(texts(t, &chars(10)), ["one two", "three four", "five six"]);
        let t = "Строка один\nстрока два и ещё слова";
        assert_eq!(
            texts(t, &chars(20)),
            ["Строка один", "строка два и ещё", "слова"]
        );
    }

    #[test]
    fn a_tiny_first_paragraph_does_not_stand_alone() {
        let t = "Hi!\n\nYour appointment is tomorrow at ten. Please come early.";
        let parts = texts(t, &chars(41));
        assert_eq!(parts[0], "Hi!\n\nYour appointment is tomorrow at ten.");
    }

    #[test]
    fn never_cuts_a_grapheme_or_a_link() {
        let family = "👨‍👩‍👧";
        let t = family.repeat(4);
        let parts = split(&t, &SplitConfig::for_kind(ChannelKind::Telegram).max(10)).unwrap();
        assert!(
            parts
                .iter()
                .all(|p| p.text.graphemes(true).all(|g| g == family))
        );
        let t = "Запись:https://clinic.ru/booking/1234567890 скорее";
        let parts = texts(t, &chars(40));
        assert_eq!(
            parts,
            ["Запись:", "https://clinic.ru/booking/1234567890", "скорее"]
        );
    }

    #[test]
    fn a_link_longer_than_a_part_is_an_error() {
        let t = "https://clinic.ru/a/very/long/path/to/somewhere";
        assert!(matches!(
            split(t, &chars(20)),
            Err(SplitError::Unbreakable { what: "link", span, .. }) if span == (0..t.len())
        ));
        assert_eq!(split("abc", &chars(0)), Err(SplitError::ZeroLimit));
        assert!(matches!(
            split("😀😀", &SplitConfig::for_kind(ChannelKind::Telegram).max(1)),
            Err(SplitError::Unbreakable {
                what: "grapheme",
                ..
            })
        ));
    }

    #[test]
    fn sms_counts_septets_and_keeps_escape_pairs() {
        let t = "€".repeat(100);
        let parts = split(&t, &SplitConfig::for_kind(ChannelKind::Sms)).unwrap();
        // 160 septets per part: 80 euro signs (2 septets each).
        assert_eq!(
            parts
                .iter()
                .map(|p| p.text.chars().count())
                .collect::<Vec<_>>(),
            [80, 20]
        );
        let cyr = "я".repeat(100);
        let parts = split(&cyr, &SplitConfig::for_kind(ChannelKind::Sms)).unwrap();
        assert_eq!(
            parts
                .iter()
                .map(|p| p.text.chars().count())
                .collect::<Vec<_>>(),
            [70, 30]
        );
        assert!(parts.iter().all(|p| sms::analyze(&p.text).segments == 1));
    }

    #[test]
    fn delays_are_deterministic_and_within_jitter() {
        let t = "a b c d e f g h i j k l m n o p";
        let c = chars(3).pause(Duration::from_secs(3), Duration::from_secs(1));
        let a = split(t, &c).unwrap();
        let b = split(t, &c).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].delay, Duration::ZERO);
        for p in &a[1..] {
            assert!(p.delay >= Duration::from_secs(2) && p.delay <= Duration::from_secs(4));
        }
        assert!(
            a[1..].windows(2).any(|w| w[0].delay != w[1].delay),
            "jitter varies"
        );
        let flat = split(t, &chars(3).pause(Duration::from_secs(2), Duration::ZERO)).unwrap();
        assert!(flat[1..].iter().all(|p| p.delay == Duration::from_secs(2)));
    }

    fn check_parts(
        s: &str,
        config: &SplitConfig,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let meter = match config.unit {
            SplitUnit::Chars => Meter::Chars,
            SplitUnit::Utf16 => Meter::Utf16,
            SplitUnit::Sms => Meter::Sms(sms::encoding_of(s)),
        };
        let max = config.max.unwrap_or(DEFAULT_MESSENGER_PART);
        match split(s, config) {
            Ok(parts) => {
                let mut at = 0;
                for p in &parts {
                    proptest::prop_assert!(
                        s[at..p.span.start].trim().is_empty(),
                        "gap is whitespace"
                    );
                    proptest::prop_assert_eq!(&s[p.span.clone()], p.text.as_str());
                    proptest::prop_assert!(!p.text.is_empty());
                    proptest::prop_assert!(meter.cost(&p.text) <= max, "part fits");
                    at = p.span.end;
                }
                proptest::prop_assert!(s[at..].trim().is_empty());
            }
            Err(SplitError::Unbreakable {
                units,
                max: m,
                span,
                ..
            }) => {
                proptest::prop_assert!(units > m);
                proptest::prop_assert_eq!(meter.cost(&s[span]), units);
            }
            Err(e) => proptest::prop_assert!(false, "{e}"),
        }
        Ok(())
    }

    #[test]
    fn a_link_ending_inside_a_grapheme_is_measured_whole() {
        // "ఎ𓀀.AA" reads as a link, but its last "A" carries a combining mark: the link is
        // the whole "Aꫫ" grapheme too, 6 characters, more than a 5-character part.
        let s = "ఎ𓀀.AAꫫ ";
        match split(s, &chars(5)) {
            Err(SplitError::Unbreakable {
                what: "link",
                units,
                max,
                span,
            }) => {
                assert_eq!((units, max, span), (6, 5, 0..13));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(split(s, &chars(6)).unwrap().len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn parts_rejoin_and_fit(
            s in "([a-zа-яё😀€\\[]{1,12}[ .!?\\n]{0,3}){0,40}",
            max in 4usize..80,
            kind in 0usize..4,
        ) {
            check_parts(&s, &SplitConfig::for_kind(ChannelKind::ALL[kind]).max(max))?;
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,300}", max in 1usize..50) {
            check_parts(&s, &chars(max))?;
            check_parts(&s, &SplitConfig::for_kind(ChannelKind::Telegram).max(max))?;
        }
    }
}
