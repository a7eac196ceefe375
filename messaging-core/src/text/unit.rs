//! How a channel measures text length.

use serde::{Deserialize, Serialize};

/// How a channel measures text length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextUnit {
    /// Unicode scalar values (WhatsApp, Max).
    Chars,
    /// UTF-16 code units (Telegram).
    Utf16,
    /// SMS segments (GSM-7 septets or UCS-2 units, 160/153 or 70/67 per segment).
    SmsSegments,
}

impl TextUnit {
    /// The length of `text` in this unit.
    ///
    /// ```
    /// use messaging_core::TextUnit;
    /// assert_eq!(TextUnit::Chars.measure("привет"), 6);
    /// assert_eq!(TextUnit::Utf16.measure("👍"), 2);
    /// assert_eq!(TextUnit::SmsSegments.measure("hello"), 1);
    /// ```
    pub fn measure(self, text: &str) -> usize {
        match self {
            TextUnit::Chars => text.chars().count(),
            // A scalar value is one UTF-16 unit, or two when it takes four bytes in UTF-8 (lead
            // byte 0xF0 or above). Counting bytes runs several times faster than re-encoding.
            TextUnit::Utf16 => text.chars().count() + text.bytes().filter(|b| *b >= 0xF0).count(),
            TextUnit::SmsSegments => super::sms::analyze(text).segments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Capabilities;
    use crate::kind::Evidence;

    const TEXTS: [&str; 7] = [
        "",
        "hello",
        "Анна Петровна, напоминаем о приёме",
        "👍👍 ok",
        "日本語のテキスト",
        "mixed: ё, €, 𝄞, \u{10FFFF}, \u{7F}\u{80}",
        "\u{FFFF}\u{10000}",
    ];

    #[test]
    fn utf16_count_matches_encoding() {
        for t in TEXTS {
            assert_eq!(
                TextUnit::Utf16.measure(t),
                t.encode_utf16().count(),
                "{t:?}"
            );
        }
    }

    #[test]
    fn fits_agrees_with_measuring_at_every_limit() {
        for unit in [TextUnit::Chars, TextUnit::Utf16, TextUnit::SmsSegments] {
            for t in TEXTS {
                for limit in 0..60 {
                    for parts in 1..3 {
                        let c = Capabilities::new(limit, unit, Evidence::Accepted).max_parts(parts);
                        let len = unit.measure(t);
                        let want = match unit {
                            TextUnit::SmsSegments => len <= limit,
                            _ => len <= limit * parts,
                        };
                        assert_eq!(c.fits(t), want, "{unit:?} {t:?} {limit} {parts}");
                    }
                }
            }
        }
    }
}
