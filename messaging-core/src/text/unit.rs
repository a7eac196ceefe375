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
            TextUnit::Utf16 => text.encode_utf16().count(),
            TextUnit::SmsSegments => super::sms::analyze(text).segments,
        }
    }
}
