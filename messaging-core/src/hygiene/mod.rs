//! Spam hygiene: a linter, a splitter, templates, SMS encoding and a sender governor.
//!
//! A sender that looks like a robot gets its WhatsApp number restricted or banned. These pieces
//! keep messages and sending patterns looking like a person's:
//!
//! | module | what it does |
//! |---|---|
//! | [`lint`] | rules over a rendered message in its context; stable rule ids, spans and fix hints |
//! | [`split`](mod@split) | cuts long text into short parts at paragraph, sentence and word boundaries |
//! | [`template`] | named placeholders (a missing value is an error) and spintax per recipient |
//! | [`sms`] | GSM 03.38 detection and segment counting, shared with the SMS adapters |
//! | [`translit`] | Russian to Latin, to fit an SMS into GSM-7 |
//! | [`links`] | link finding as a spam filter sees it; the URL shortener list |
//! | [`governor`] | warm-up, daily and frequency caps, reply ratio, opt-outs: a [`SendGate`](crate::engine::SendGate) |
//!
//! ```
//! use messaging_core::{ChannelKind, Purpose};
//! use messaging_core::hygiene::{lint::{has_errors, LintContext, Linter}, template::TextTemplate};
//!
//! let template = TextTemplate::parse("{Здравствуйте|Добрый день}, {{name}}! Приём завтра в {{time}}. Придёте?").unwrap();
//! let text = template.render(&[("name", "Анна"), ("time", "10:00")], "patient-42").unwrap();
//! let ctx = LintContext::new(ChannelKind::WhatsApp).first_contact(true).recipient_name("Анна");
//! assert!(!has_errors(&Linter::new().lint(&text, &ctx)));
//! ```
pub mod governor;
mod limits;
pub mod links;
pub mod lint;
pub mod sms;
pub mod split;
pub mod template;
pub mod translit;

pub use governor::{Governor, GovernorConfig, MemoryCounters, SenderCounters};
pub use limits::TextLimits;
pub use lint::{Diagnostic, LintContext, Linter, Rule, Severity};
pub use sms::{SmsAnalysis, SmsEncoding, analyze};
pub use split::{Part, SplitConfig, SplitUnit, split};
pub use template::TextTemplate;
