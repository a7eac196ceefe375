//! How long a message may be on each channel: the short size a person reads without scrolling,
//! and the hard limit the provider refuses beyond.

use super::TextUnit;
use crate::kind::ChannelKind;

/// Length limits of one channel kind, used by the `too-long` lint rule.
///
/// The defaults:
///
/// | channel | unit | short (warning above) | hard (error above) |
/// |---|---|---|---|
/// | WhatsApp | characters | 500 | 4096 (Cloud API text body) |
/// | Telegram | UTF-16 units | 500 | 4096 (Bot API `sendMessage`) |
/// | Max | characters | 500 | 4000 (Max Bot API) |
/// | SMS | segments | 2 | 8 (SMS.ru refuses more, code 205) |
///
/// ```
/// use messaging_core::{ChannelKind, TextUnit};
/// use messaging_core::text::TextLimits;
/// let sms = TextLimits::for_kind(ChannelKind::Sms);
/// assert_eq!((sms.unit, sms.short, sms.hard), (TextUnit::SmsSegments, 2, 8));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TextLimits {
    /// How length is counted.
    pub unit: TextUnit,
    /// Longer than this draws a warning: split or shorten.
    pub short: usize,
    /// Longer than this cannot be sent as one message: an error.
    pub hard: usize,
}

impl TextLimits {
    /// The default limits of a channel kind (see the table above).
    pub fn for_kind(kind: ChannelKind) -> TextLimits {
        let f = kind.facts();
        TextLimits {
            unit: f.unit,
            short: f.short_length,
            hard: f.hard_length,
        }
    }

    /// The length of `text` in this limit's unit.
    pub fn measure(&self, text: &str) -> usize {
        self.unit.measure(text)
    }
}

/// The name of a unit in messages to people.
pub fn unit_name(unit: TextUnit) -> &'static str {
    match unit {
        TextUnit::Chars => "characters",
        TextUnit::Utf16 => "UTF-16 units",
        TextUnit::SmsSegments => "SMS segments",
    }
}
