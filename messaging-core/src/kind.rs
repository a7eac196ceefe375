//! Kinds of messenger and the facts about each, in one table.
//!
//! Everything the library knows about a kind of messenger, as opposed to one configured channel,
//! is a row of [`KIND_FACTS`]: its name, how it counts text and how much it takes, the strongest
//! evidence of delivery it can ever give, whether a phone number reaches a person on it, whether
//! regulated senders must avoid it, and what a typical provider of it supports. The linter, the
//! splitter, the model, the engine's regulated switch and the test doubles read this table
//! instead of matching on the kind, so adding a messenger adds a variant and a row here (and its
//! adapter crate); see `ARCHITECTURE.md`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::text::TextUnit;

/// The kind of messenger behind a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ChannelKind {
    /// WhatsApp Business Platform (Cloud API or 360dialog).
    #[serde(alias = "waba")]
    WhatsApp,
    /// A Telegram bot.
    Telegram,
    /// A Max (VK) bot.
    Max,
    /// An SMS provider.
    Sms,
}

impl ChannelKind {
    /// Every kind, in the order of the classic clinic cascade.
    pub const ALL: [ChannelKind; 4] = [
        ChannelKind::WhatsApp,
        ChannelKind::Telegram,
        ChannelKind::Max,
        ChannelKind::Sms,
    ];

    /// What this kind of messenger is and can do: one row of [`KIND_FACTS`].
    ///
    /// ```
    /// use messaging_core::{ChannelKind, Evidence};
    /// assert_eq!(ChannelKind::Telegram.facts().strongest_evidence, Evidence::Accepted);
    /// assert!(ChannelKind::Sms.facts().reached_by_phone);
    /// ```
    pub fn facts(self) -> &'static KindFacts {
        // The table is in declaration order; a test checks every row's `kind`.
        &KIND_FACTS[self as usize]
    }

    /// The lowercase name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        self.facts().name
    }

    /// Messengers operated from abroad, which regulated senders may be required not to use.
    pub fn is_foreign_messenger(self) -> bool {
        self.facts().foreign_messenger
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChannelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        KIND_FACTS
            .iter()
            .find(|f| f.name == lower || f.aliases.contains(&lower.as_str()))
            .map(|f| f.kind)
            .ok_or_else(|| {
                format!("unknown channel kind {lower:?} (expected whatsapp, telegram, max or sms)")
            })
    }
}

/// Proof that a notice reached the person, weakest first.
///
/// `Replied` (any inbound message from the person, on any channel) is the strongest.
///
/// ```
/// use messaging_core::Evidence;
/// assert!(Evidence::Accepted < Evidence::Delivered);
/// assert!(Evidence::Read < Evidence::Replied);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Evidence {
    /// The provider took the message. Telegram and Max bots can never say more.
    Accepted,
    /// The person's device has it.
    Delivered,
    /// The person opened it.
    Read,
    /// The person wrote back.
    Replied,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Evidence::Accepted => "accepted",
            Evidence::Delivered => "delivered",
            Evidence::Read => "read",
            Evidence::Replied => "replied",
        })
    }
}

/// What one kind of messenger is and can do. See [`KIND_FACTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KindFacts {
    /// The kind this row describes.
    pub kind: ChannelKind,
    /// The lowercase name used in JSON, configuration and on the command line.
    pub name: &'static str,
    /// Other names accepted when parsing (`wa`, `tg`).
    pub aliases: &'static [&'static str],
    /// How text length is counted.
    pub unit: TextUnit,
    /// A message longer than this (in `unit`) draws a `too-long` warning: people read short
    /// messages, and long ones look like bulk mail.
    pub short_length: usize,
    /// The most one message may hold (in `unit`) before the provider refuses it: a `too-long`
    /// error.
    pub hard_length: usize,
    /// The strongest evidence of delivery this kind can ever give: bots get no receipts, so a
    /// cascade step never waits on Telegram or Max for more than "accepted".
    pub strongest_evidence: Evidence,
    /// Whether a phone number reaches a person here without any other id (SMS, WhatsApp).
    pub reached_by_phone: bool,
    /// Operated from abroad: the engine's `regulated(true)` switch removes it from every cascade.
    pub foreign_messenger: bool,
    /// How many parts a long text may be split into by a typical provider (SMS: one part,
    /// counted in segments).
    pub max_parts: usize,
    /// The most one send may hold (in `unit`) on a typical provider of this kind.
    pub typical_length: usize,
    /// Approved templates (WhatsApp's way to start a conversation).
    pub templates: bool,
    /// Buttons under a message.
    pub buttons: bool,
    /// Pictures and documents.
    pub media: bool,
    /// Whether the business may write first (bots may only answer people who started them).
    pub can_start_conversation: bool,
}

/// The facts of every kind, in the order of [`ChannelKind`]'s variants.
///
/// | kind | unit | short | hard | strongest evidence | by phone | foreign |
/// |---|---|---|---|---|---|---|
/// | WhatsApp | characters | 500 | 4096 (Cloud API text body) | read | yes | yes |
/// | Telegram | UTF-16 units | 500 | 4096 (Bot API `sendMessage`) | accepted | no | yes |
/// | Max | characters | 500 | 4000 (Max Bot API) | accepted | no | no |
/// | SMS | segments | 2 | 8 (SMS.ru refuses more, code 205) | delivered | yes | no |
pub static KIND_FACTS: [KindFacts; 4] = [
    KindFacts {
        kind: ChannelKind::WhatsApp,
        name: "whatsapp",
        aliases: &["waba", "wa"],
        unit: TextUnit::Chars,
        short_length: 500,
        hard_length: 4096,
        strongest_evidence: Evidence::Read,
        reached_by_phone: true,
        foreign_messenger: true,
        max_parts: 1,
        typical_length: 4096,
        templates: true,
        buttons: true,
        media: true,
        can_start_conversation: true,
    },
    KindFacts {
        kind: ChannelKind::Telegram,
        name: "telegram",
        aliases: &["tg"],
        unit: TextUnit::Utf16,
        short_length: 500,
        hard_length: 4096,
        strongest_evidence: Evidence::Accepted,
        reached_by_phone: false,
        foreign_messenger: true,
        max_parts: 4,
        typical_length: 4096,
        templates: false,
        buttons: true,
        media: false,
        can_start_conversation: false,
    },
    KindFacts {
        kind: ChannelKind::Max,
        name: "max",
        aliases: &[],
        unit: TextUnit::Chars,
        short_length: 500,
        hard_length: 4000,
        strongest_evidence: Evidence::Accepted,
        reached_by_phone: false,
        foreign_messenger: false,
        max_parts: 4,
        typical_length: 4000,
        templates: false,
        buttons: true,
        media: false,
        can_start_conversation: false,
    },
    KindFacts {
        kind: ChannelKind::Sms,
        name: "sms",
        aliases: &[],
        unit: TextUnit::SmsSegments,
        short_length: 2,
        hard_length: 8,
        strongest_evidence: Evidence::Delivered,
        reached_by_phone: true,
        foreign_messenger: false,
        max_parts: 1,
        typical_length: 6,
        templates: false,
        buttons: false,
        media: false,
        can_start_conversation: true,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_row_and_round_trips_by_name() {
        for kind in ChannelKind::ALL {
            assert_eq!(kind.facts().kind, kind, "row order follows the enum");
            assert_eq!(kind.as_str().parse::<ChannelKind>(), Ok(kind));
            for alias in kind.facts().aliases {
                assert_eq!(alias.parse::<ChannelKind>(), Ok(kind));
            }
            let f = kind.facts();
            assert!(f.short_length <= f.hard_length);
            assert!(f.max_parts >= 1);
        }
        assert_eq!(KIND_FACTS.len(), ChannelKind::ALL.len());
        assert!("icq".parse::<ChannelKind>().is_err());
    }
}
