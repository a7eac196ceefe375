//! # messaging-hygiene
//!
//! Spam hygiene: a linter, templates and a sender governor.
//!
//! A sender that looks like a robot gets its WhatsApp number restricted or banned. These pieces
//! keep messages and sending patterns looking like a person's:
//!
//! | module | what it does |
//! |---|---|
//! | [`lint`] | rules over a rendered message in its context; stable rule ids, spans and fix hints |
//! | [`template`] | named placeholders (a missing value is an error) and spintax per recipient |
//! | [`links`] | link finding as a spam filter sees it; the URL shortener list (from `messaging-core`) |
//! | [`governor`] | warm-up, daily and frequency caps, reply ratio, opt-outs (read from the shared [`OptOutStore`](messaging_core::consent::OptOutStore)): a [`SendGate`](messaging_core::gate::SendGate); `governor::conformance` (feature `testkit`) checks `SenderCounters` implementations |
//!
//! ```
//! use messaging_core::{ChannelKind, Purpose};
//! use messaging_hygiene::{lint::{has_errors, LintContext, Linter}, template::TextTemplate};
//!
//! let template = TextTemplate::parse("{Здравствуйте|Добрый день}, {{name}}! Приём завтра в {{time}}. Придёте?").unwrap();
//! let text = template.render(&[("name", "Анна"), ("time", "10:00")], "patient-42").unwrap();
//! let ctx = LintContext::new(ChannelKind::WhatsApp).first_contact(true).recipient_name("Анна");
//! assert!(!has_errors(&Linter::new().lint(&text, &ctx)));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod governor;
pub mod lint;
pub mod template;

pub use messaging_core::text::links;

pub use governor::{Governor, GovernorConfig, MemoryCounters, SenderCounters};
pub use lint::{Diagnostic, LintContext, Linter, Rule, Severity};
pub use template::TextTemplate;
