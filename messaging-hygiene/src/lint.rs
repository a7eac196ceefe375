//! The message linter: what makes a sender look like a robot, found before the message goes out.
//!
//! Each [`Diagnostic`] names a stable [`Rule`] (the ids are a public API), a [`Severity`], a
//! message, the byte span in the text where there is one, and a fix hint. As with clippy, a rule's
//! level can be changed: [`Level::Allow`] silences it, [`Level::Warn`] reports it as a warning,
//! [`Level::Deny`] as an error.
//!
//! ```
//! use messaging_core::{ChannelKind, Purpose};
//! use messaging_hygiene::lint::{LintContext, Linter, Rule, Severity};
//!
//! let linter = Linter::new();
//! let ctx = LintContext::new(ChannelKind::WhatsApp).first_contact(true).recipient_name("Анна");
//! let found = linter.lint("Анна, запись на приём: bit.ly/abc", &ctx);
//! let rules: Vec<&str> = found.iter().map(|d| d.rule.as_str()).collect();
//! assert_eq!(rules, ["link-in-first-message", "shortened-link", "no-question"]);
//! assert_eq!(found[0].severity, Severity::Error);
//! assert_eq!(found[0].span, Some((40, 50))); // byte offsets
//!
//! let ok = linter.lint("Анна, напоминаем о приёме завтра в 10:00. Придёте?", &ctx);
//! assert!(ok.is_empty());
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use messaging_core::TextUnit;
use messaging_core::text::links::{Link, Shorteners, find_links};
use messaging_core::text::sms::{self, SmsEncoding};
use messaging_core::text::translit::transliterate;
use messaging_core::text::{TextLimits, unit_name};
use messaging_core::{ChannelKind, Purpose};

/// A lint rule. The ids ([`Rule::as_str`]) are a stable public API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// `link-in-first-message`: a link in a message to a person who has not written to us.
    LinkInFirstMessage,
    /// `shortened-link`: a link through a URL shortener, in any message.
    ShortenedLink,
    /// `missing-personalization`: a first-contact or bulk message that does not use the name.
    MissingPersonalization,
    /// `unresolved-placeholder`: placeholder syntax left in the text, or a variable without a value.
    UnresolvedPlaceholder,
    /// `marketing-without-opt-out`: a marketing message without a way to opt out.
    MarketingWithoutOptOut,
    /// `no-question`: a first-contact message that invites no reply.
    NoQuestion,
    /// `too-long`: longer than the channel's short size (warning) or hard limit (error).
    TooLong,
    /// `sms-unicode`: an SMS that needs UCS-2 (70 characters per segment instead of 160).
    SmsUnicode,
    /// `shouting`: mostly capital letters, or `!!!`.
    Shouting,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 9] = [
        Rule::LinkInFirstMessage,
        Rule::ShortenedLink,
        Rule::MissingPersonalization,
        Rule::UnresolvedPlaceholder,
        Rule::MarketingWithoutOptOut,
        Rule::NoQuestion,
        Rule::TooLong,
        Rule::SmsUnicode,
        Rule::Shouting,
    ];

    /// The stable id (`"link-in-first-message"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::LinkInFirstMessage => "link-in-first-message",
            Rule::ShortenedLink => "shortened-link",
            Rule::MissingPersonalization => "missing-personalization",
            Rule::UnresolvedPlaceholder => "unresolved-placeholder",
            Rule::MarketingWithoutOptOut => "marketing-without-opt-out",
            Rule::NoQuestion => "no-question",
            Rule::TooLong => "too-long",
            Rule::SmsUnicode => "sms-unicode",
            Rule::Shouting => "shouting",
        }
    }

    /// The severity when no level is set. `too-long` is a warning above the short size and an
    /// error above the hard limit; this returns its warning.
    pub fn default_severity(self) -> Severity {
        match self {
            Rule::LinkInFirstMessage
            | Rule::ShortenedLink
            | Rule::UnresolvedPlaceholder
            | Rule::MarketingWithoutOptOut => Severity::Error,
            Rule::MissingPersonalization | Rule::TooLong | Rule::Shouting => Severity::Warning,
            Rule::NoQuestion | Rule::SmsUnicode => Severity::Info,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown rule id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lint rule {0:?}")]
pub struct UnknownRule(pub String);

impl FromStr for Rule {
    type Err = UnknownRule;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRule(s.to_owned()))
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Likely to hurt the sender's reputation.
    Warning,
    /// Do not send this.
    Error,
}

impl Severity {
    /// `"info"`, `"warning"` or `"error"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A level set for a rule, as with clippy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Do not report.
    Allow,
    /// Report as a warning.
    Warn,
    /// Report as an error.
    Deny,
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "allow" => Ok(Level::Allow),
            "warn" => Ok(Level::Warn),
            "deny" => Ok(Level::Deny),
            other => Err(format!(
                "unknown level {other:?} (expected allow, warn or deny)"
            )),
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// The rule.
    pub rule: Rule,
    /// How bad.
    pub severity: Severity,
    /// What is wrong, in words.
    pub message: String,
    /// Byte range `[start, end)` in the text, where there is one.
    pub span: Option<(usize, usize)>,
    /// How to fix it.
    pub hint: String,
}

/// Whether any diagnostic is an error.
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(|d| d.severity == Severity::Error)
}

/// What the linter knows about a message besides its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LintContext<'a> {
    /// The channel kind it goes out on.
    pub channel: ChannelKind,
    /// The person has not written to us (no open dialogue).
    pub first_contact: bool,
    /// The same text goes to many people.
    pub bulk: bool,
    /// Why it is sent.
    pub purpose: Purpose,
    /// The person's name, as the message should address them.
    pub recipient_name: Option<&'a str>,
    /// The message carries an opt-out button (so the text needs no opt-out words).
    pub opt_out_button: bool,
}

impl<'a> LintContext<'a> {
    /// A service message in an open dialogue on `channel`, to a person of unknown name.
    pub fn new(channel: ChannelKind) -> Self {
        LintContext {
            channel,
            first_contact: false,
            bulk: false,
            purpose: Purpose::Service,
            recipient_name: None,
            opt_out_button: false,
        }
    }
    /// Sets whether this is a first contact.
    pub fn first_contact(mut self, yes: bool) -> Self {
        self.first_contact = yes;
        self
    }
    /// Sets whether this is a bulk send.
    pub fn bulk(mut self, yes: bool) -> Self {
        self.bulk = yes;
        self
    }
    /// Sets the purpose.
    pub fn purpose(mut self, purpose: Purpose) -> Self {
        self.purpose = purpose;
        self
    }
    /// Sets the person's name.
    pub fn recipient_name(mut self, name: &'a str) -> Self {
        self.recipient_name = Some(name);
        self
    }
    /// Sets whether an opt-out button goes with the message.
    pub fn opt_out_button(mut self, yes: bool) -> Self {
        self.opt_out_button = yes;
        self
    }
}

/// The linter: rule levels, the shortener list and per-channel length limits.
#[derive(Clone, Debug)]
pub struct Linter {
    levels: [Option<Level>; Rule::ALL.len()],
    shorteners: Shorteners,
    limits: [Option<TextLimits>; 4],
}

impl Default for Linter {
    fn default() -> Self {
        Linter::new()
    }
}

/// Placeholder syntax of common template engines: `{{name}}`, `${name}`, `{name}` (also an
/// unexpanded spintax group `{a|b}`), `%name%`, `[[name]]`.
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{\{[^{}\n]{0,64}\}\}|\$\{[^{}\n]{0,64}\}|\{[^{}\n]{1,64}\}|%[A-Za-z_][A-Za-z0-9_]{0,31}%|\[\[[^\[\]\n]{1,64}\]\]")
        .unwrap_or_else(|e| panic!("placeholder pattern is a constant and compiles: {e}"))
});

/// Capitalized words that start a message but are not a name (greetings, "we remind", ...).
const NOT_NAMES: &[&str] = &[
    "здравствуйте",
    "здравствуй",
    "привет",
    "добрый",
    "доброе",
    "доброй",
    "день",
    "вечер",
    "утро",
    "уважаемый",
    "уважаемая",
    "уважаемые",
    "дорогой",
    "дорогая",
    "напоминаем",
    "сообщаем",
    "внимание",
    "спасибо",
    "извините",
    "пожалуйста",
    "сегодня",
    "завтра",
    "клиника",
    "акция",
    "скидка",
    "вы",
    "вас",
    "вам",
    "ваш",
    "ваша",
    "hello",
    "hi",
    "hey",
    "dear",
    "good",
    "morning",
    "afternoon",
    "evening",
    "reminder",
    "please",
    "thanks",
    "thank",
    "attention",
    "today",
    "tomorrow",
    "sale",
    "you",
    "your",
    "note",
];

impl Linter {
    /// A linter with default levels, the default shortener list and default limits.
    pub fn new() -> Self {
        Linter {
            levels: [None; Rule::ALL.len()],
            shorteners: Shorteners::default(),
            limits: [None; 4],
        }
    }

    /// Sets a rule's level.
    pub fn level(mut self, rule: Rule, level: Level) -> Self {
        self.levels[rule.index()] = Some(level);
        self
    }

    /// Replaces the shortener list.
    pub fn shorteners(mut self, shorteners: Shorteners) -> Self {
        self.shorteners = shorteners;
        self
    }

    /// Replaces the length limits of a channel kind.
    pub fn limits(mut self, kind: ChannelKind, limits: TextLimits) -> Self {
        if let Some(slot) = kind_slot(kind) {
            self.limits[slot] = Some(limits);
        }
        self
    }

    /// The length limits used for a channel kind.
    pub fn limits_for(&self, kind: ChannelKind) -> TextLimits {
        kind_slot(kind)
            .and_then(|i| self.limits[i])
            .unwrap_or_else(|| TextLimits::for_kind(kind))
    }

    /// Lints a rendered message. Diagnostics come in rule order, then by position.
    pub fn lint(&self, text: &str, ctx: &LintContext<'_>) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let links = find_links(text);
        let mut emit = |rule: Rule,
                        severity: Severity,
                        message: String,
                        span: Option<(usize, usize)>,
                        hint: &str| {
            let severity = match self.levels[rule.index()] {
                None => severity,
                Some(Level::Allow) => return,
                Some(Level::Warn) => Severity::Warning,
                Some(Level::Deny) => Severity::Error,
            };
            out.push(Diagnostic {
                rule,
                severity,
                message,
                span,
                hint: hint.to_owned(),
            });
        };
        let on = |rule: Rule| self.levels[rule.index()] != Some(Level::Allow);
        // Counted once: both `too-long` and `sms-unicode` need it.
        let sms_analysis =
            (ctx.channel.facts().unit == TextUnit::SmsSegments).then(|| sms::analyze(text));

        if ctx.first_contact && on(Rule::LinkInFirstMessage) {
            for l in &links {
                emit(
                    Rule::LinkInFirstMessage,
                    Severity::Error,
                    format!(
                        "link {:?} in a first message to a person who has not written to us",
                        l.text
                    ),
                    Some(span(l)),
                    "send the link after the person replies, or name the page in words",
                );
            }
        }
        if on(Rule::ShortenedLink) {
            for l in links.iter().filter(|l| self.shorteners.contains(&l.host)) {
                emit(
                    Rule::ShortenedLink,
                    Severity::Error,
                    format!("link through the URL shortener {}", l.host),
                    Some(span(l)),
                    "use the full link on your own domain",
                );
            }
        }
        if (ctx.first_contact || ctx.bulk)
            && on(Rule::MissingPersonalization)
            && !addresses_by_name(text, ctx.recipient_name)
        {
            let (message, hint) = match ctx.recipient_name {
                Some(name) => (
                    format!("the message does not address the person by name ({name:?})"),
                    format!("start with the name: \"{name}, ...\""),
                ),
                None => (
                    "the message does not address the person by name".to_owned(),
                    "start with the person's name: \"Анна, ...\"".to_owned(),
                ),
            };
            emit(
                Rule::MissingPersonalization,
                Severity::Warning,
                message,
                None,
                &hint,
            );
        }
        if on(Rule::UnresolvedPlaceholder) && text.contains(['{', '%', '[']) {
            for m in PLACEHOLDER.find_iter(text) {
                emit(
                    Rule::UnresolvedPlaceholder,
                    Severity::Error,
                    format!("unresolved placeholder {:?}", m.as_str()),
                    Some((m.start(), m.end())),
                    "render the template with a value for every variable",
                );
            }
        }
        if ctx.purpose == Purpose::Marketing
            && !ctx.opt_out_button
            && on(Rule::MarketingWithoutOptOut)
            && !has_opt_out_instruction(text)
        {
            emit(
                Rule::MarketingWithoutOptOut,
                Severity::Error,
                "a marketing message without a way to opt out".to_owned(),
                None,
                "add \"Ответьте СТОП, чтобы отписаться\" / \"Reply STOP to opt out\", or an opt-out button",
            );
        }
        if ctx.first_contact
            && on(Rule::NoQuestion)
            && !(text.contains('?') || text.contains('¿') || text.contains('？'))
        {
            emit(
                Rule::NoQuestion,
                Severity::Info,
                "a first message with no question to invite a reply".to_owned(),
                None,
                "end with a question (\"Придёте?\", \"Shall we book you in?\"): replies keep a number healthy",
            );
        }
        if on(Rule::TooLong) {
            let limits = self.limits_for(ctx.channel);
            let len = match (limits.unit, sms_analysis) {
                (TextUnit::SmsSegments, Some(a)) => a.segments,
                _ => limits.measure(text),
            };
            let unit = unit_name(limits.unit);
            if len > limits.hard {
                emit(
                    Rule::TooLong,
                    Severity::Error,
                    format!(
                        "{len} {unit}: beyond the channel's limit of {}",
                        limits.hard
                    ),
                    None,
                    "split the text into parts (messaging split) or shorten it",
                );
            } else if len > limits.short {
                emit(
                    Rule::TooLong,
                    Severity::Warning,
                    format!(
                        "{len} {unit}: longer than a short message ({})",
                        limits.short
                    ),
                    None,
                    "shorten it, or split it into parts (messaging split)",
                );
            }
        }
        if on(Rule::SmsUnicode)
            && let Some(a) = sms_analysis.filter(|a| a.encoding == SmsEncoding::Ucs2)
        {
            let first = text
                .char_indices()
                .find(|&(_, c)| sms::gsm7_septets(c).is_none())
                .map(|(i, c)| (i, i + c.len_utf8()));
            let latin = sms::analyze(&transliterate(text));
            let saved = a.segments.saturating_sub(latin.segments);
            let saving = match (latin.encoding, saved) {
                (SmsEncoding::Gsm7, 0) => format!(
                    "; transliterated: {} GSM-7 segment(s), no saving",
                    latin.segments
                ),
                (SmsEncoding::Gsm7, n) => format!(
                    "; transliterated: {} GSM-7 segment(s), saving {n}",
                    latin.segments
                ),
                _ => String::new(),
            };
            emit(
                Rule::SmsUnicode,
                Severity::Info,
                format!(
                    "needs UCS-2: {} segment(s) of 70/67 characters ({} units){saving}",
                    a.segments, a.units
                ),
                first,
                "transliterate to Latin or replace the characters outside GSM-7 to pay for fewer segments",
            );
        }
        if on(Rule::Shouting) {
            if is_mostly_capitals(text, &links) {
                emit(
                    Rule::Shouting,
                    Severity::Warning,
                    "mostly capital letters".to_owned(),
                    None,
                    "write in sentence case",
                );
            }
            for (start, end) in exclamation_runs(text) {
                emit(
                    Rule::Shouting,
                    Severity::Warning,
                    format!("{} exclamation marks in a row", end - start),
                    Some((start, end)),
                    "one exclamation mark is enough",
                );
            }
        }
        out
    }
}

fn kind_slot(kind: ChannelKind) -> Option<usize> {
    ChannelKind::ALL.iter().position(|k| *k == kind)
}

fn span(l: &Link) -> (usize, usize) {
    (l.span.start, l.span.end)
}

/// Whether a character is a letter, and if so whether it is a capital. ASCII and Cyrillic are
/// decided by range (the Unicode tables are slow and these are nearly all our texts).
#[inline]
fn letter_case(c: char) -> Option<bool> {
    match c {
        'A'..='Z' | 'А'..='Я' | 'Ё' => Some(true),
        'a'..='z' | 'а'..='я' | 'ё' => Some(false),
        c if c.is_ascii() => None,
        c if c.is_alphabetic() => Some(c.is_uppercase()),
        _ => None,
    }
}

/// Lower case with ё read as е, for comparing words; fast for ASCII and Cyrillic.
#[inline]
fn fold_char(c: char) -> char {
    match c {
        'A'..='Z' => c.to_ascii_lowercase(),
        'А'..='Я' => char::from_u32(c as u32 + 0x20).unwrap_or(c),
        'Ё' | 'ё' => 'е',
        c if c.is_ascii() || ('а'..='я').contains(&c) => c,
        c => c.to_lowercase().next().unwrap_or(c),
    }
}

/// Folds a whole word.
fn fold(s: &str) -> String {
    s.chars().map(fold_char).collect()
}

/// The words of a text (runs of letters, a hyphen inside a word kept), with their byte offsets.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = 0;
    std::iter::from_fn(move || {
        let tail = &text[rest..];
        let start = rest
            + tail
                .char_indices()
                .find(|&(_, c)| letter_case(c).is_some())?
                .0;
        let body = &text[start..];
        let len = body
            .char_indices()
            .find(|&(_, c)| letter_case(c).is_none() && c != '-')
            .map_or(body.len(), |(i, _)| i);
        rest = start + len;
        Some((start, &text[start..start + len]))
    })
}

/// Whether `word` starts with `stem` (already folded), compared folded.
fn starts_folded(word: &str, stem: &[char]) -> bool {
    let mut w = word.chars().map(fold_char);
    stem.iter().all(|s| w.next() == Some(*s))
}

/// Whether the text uses the person's name (any part of it of two letters or more, allowing
/// for Russian case endings), or, when the name is unknown, starts by addressing someone by a
/// capitalized word followed by a comma or an exclamation mark ("Анна, ...", "Hello John!").
fn addresses_by_name(text: &str, name: Option<&str>) -> bool {
    match name {
        Some(name) => {
            let stems: Vec<Vec<char>> = words(name)
                .map(|(_, token)| {
                    let folded: Vec<char> = token.chars().map(fold_char).collect();
                    // "Анна" is "Анне", "Анну" in other cases: match without the last letter.
                    let keep = if folded.len() >= 4 {
                        folded.len() - 1
                    } else {
                        folded.len()
                    };
                    folded[..keep].to_vec()
                })
                .filter(|stem| stem.len() >= 2)
                .collect();
            words(text).any(|(_, w)| stems.iter().any(|stem| starts_folded(w, stem)))
        }
        None => words(text).take(6).any(|(start, word)| {
            let after = text[start + word.len()..].chars().next();
            matches!(after, Some(',' | '!'))
                && word.chars().next().and_then(letter_case) == Some(true)
                && word.chars().count() >= 2
                && !NOT_NAMES.contains(&fold(word).as_str())
        }),
    }
}

/// Whether a marketing text tells how to opt out: "СТОП", "отписаться", "отказаться от
/// рассылки", "не получать", "STOP", "unsubscribe", "opt out".
fn has_opt_out_instruction(text: &str) -> bool {
    let folded: Vec<String> = words(text).map(|(_, w)| fold(w)).collect();
    folded.iter().enumerate().any(|(i, w)| {
        let next = folded.get(i + 1).map(String::as_str);
        let after = folded.get(i + 2).map(String::as_str);
        matches!(w.as_str(), "стоп" | "stop" | "optout" | "opt-out")
            || w.starts_with("отпис")
            || w.starts_with("unsubscrib")
            || (w == "opt" && next == Some("out"))
            || (w == "не" && next.is_some_and(|n| n.starts_with("получ")))
            || (w.starts_with("отказ")
                && next == Some("от")
                && after.is_some_and(|a| {
                    a.starts_with("рассыл")
                        || a.starts_with("сообщен")
                        || a.starts_with("уведомлен")
                }))
    })
}

/// Mostly capitals: at least 8 letters outside links, and 70 % of them upper-case.
fn is_mostly_capitals(text: &str, links: &[Link]) -> bool {
    let (mut letters, mut upper) = (0usize, 0usize);
    let mut count = |s: &str| {
        for c in s.chars() {
            if let Some(is_upper) = letter_case(c) {
                letters += 1;
                upper += usize::from(is_upper);
            }
        }
    };
    let mut at = 0;
    for l in links {
        count(text.get(at..l.span.start).unwrap_or(""));
        at = l.span.end.max(at);
    }
    count(text.get(at..).unwrap_or(""));
    letters >= 8 && upper * 10 >= letters * 7
}

/// Byte spans of three or more exclamation marks in a row.
fn exclamation_runs(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if !text.contains("!!!") {
        // A substring search is much faster than the byte loop below; most texts stop here.
        return out;
    }
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'!' {
            let start = i;
            while i < b.len() && b[i] == b'!' {
                i += 1;
            }
            if i - start >= 3 {
                out.push((start, i));
            }
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str, ctx: &LintContext<'_>) -> Vec<&'static str> {
        Linter::new()
            .lint(text, ctx)
            .iter()
            .map(|d| d.rule.as_str())
            .collect()
    }

    fn has(text: &str, ctx: &LintContext<'_>, rule: Rule) -> bool {
        Linter::new().lint(text, ctx).iter().any(|d| d.rule == rule)
    }

    fn first(name: &'static str) -> LintContext<'static> {
        LintContext::new(ChannelKind::WhatsApp)
            .first_contact(true)
            .recipient_name(name)
    }

    #[test]
    fn rule_ids_round_trip() {
        for r in Rule::ALL {
            assert_eq!(r.as_str().parse::<Rule>().unwrap(), r);
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert!("no-such-rule".parse::<Rule>().is_err());
        assert_eq!(Rule::ALL.len(), 9);
    }

    #[test]
    fn link_in_first_message_positive() {
        let ctx = first("Анна");
        for t in [
            "Анна, цены: clinic.ru/prices. Придёте?",
            "Анна, see HTTPS://CLINIC.RU/X. Ok?",
            "Анна, http://192.168.0.1/book. Придёте?",
            "Анна, сайт клиника.рф. Придёте?",
            "Anna, book at www.clinic.com? ",
        ] {
            assert!(has(t, &ctx, Rule::LinkInFirstMessage), "{t}");
        }
        let d = Linter::new().lint("Анна, clinic.ru. Придёте?", &ctx);
        let link = d
            .iter()
            .find(|d| d.rule == Rule::LinkInFirstMessage)
            .unwrap();
        assert_eq!(link.span, Some((10, 19)));
        assert_eq!(link.severity, Severity::Error);
    }

    #[test]
    fn link_in_first_message_negative() {
        let ctx = first("Анна");
        for t in [
            "Анна, приём в 10.30, цена 1500.50 руб. Придёте?",
            "Анна, т.е. завтра, и т.д. Придёте?",
            "Анна, ждём на приём.Завтра в 10:00. Придёте?",
            "Anna, the price is 12.50, i.e. cheap. Coming?",
            "Anna, see you at 10.30.Tomorrow then?",
        ] {
            assert!(!has(t, &ctx, Rule::LinkInFirstMessage), "{t}");
        }
        // Not a first contact: links are fine.
        let open = LintContext::new(ChannelKind::WhatsApp);
        assert!(!has(
            "Цены: clinic.ru/prices",
            &open,
            Rule::LinkInFirstMessage
        ));
    }

    #[test]
    fn shortened_link_in_any_message() {
        let open = LintContext::new(ChannelKind::Telegram);
        assert!(has("Запись: bit.ly/abc", &open, Rule::ShortenedLink));
        assert!(has(
            "Book: https://clck.ru/3AbC",
            &open,
            Rule::ShortenedLink
        ));
        assert!(has("Book: HTTPS://VK.CC/x", &open, Rule::ShortenedLink));
        assert!(!has("Запись: clinic.ru/abc", &open, Rule::ShortenedLink));
        assert!(!has(
            "Book: https://example.com/bit.ly",
            &open,
            Rule::ShortenedLink
        ));
        let custom = Linter::new().shorteners(Shorteners::none().with("go.example"));
        assert!(
            custom
                .lint("https://go.example/x", &open)
                .iter()
                .any(|d| d.rule == Rule::ShortenedLink)
        );
        assert!(custom.lint("bit.ly/x", &open).is_empty());
    }

    #[test]
    fn missing_personalization() {
        let ctx = first("Анна Петровна");
        assert!(has(
            "Здравствуйте! Напоминаем о приёме. Придёте?",
            &ctx,
            Rule::MissingPersonalization
        ));
        assert!(!has(
            "Анна Петровна, напоминаем о приёме. Придёте?",
            &ctx,
            Rule::MissingPersonalization
        ));
        assert!(!has(
            "Напоминаем Анне о приёме. Придёте?",
            &ctx,
            Rule::MissingPersonalization
        ));
        assert!(!has(
            "Здравствуйте, анна! Придёте?",
            &ctx,
            Rule::MissingPersonalization
        ));
        let en = first("John Smith");
        assert!(has(
            "Hello! Your appointment is tomorrow. Coming?",
            &en,
            Rule::MissingPersonalization
        ));
        assert!(!has(
            "Hello John, your appointment is tomorrow. Coming?",
            &en,
            Rule::MissingPersonalization
        ));
        // Not "Johnny" for "Jo": a short name must match a whole word start.
        assert!(has(
            "Hello Bob, ok?",
            &first("Jo"),
            Rule::MissingPersonalization
        ));
        // Unknown name: a greeting alone is not enough, an addressed word is.
        let anon = LintContext::new(ChannelKind::Max).bulk(true);
        assert!(has(
            "Здравствуйте! Напоминаем, приём завтра.",
            &anon,
            Rule::MissingPersonalization
        ));
        assert!(!has(
            "Здравствуйте, Анна! Приём завтра.",
            &anon,
            Rule::MissingPersonalization
        ));
        assert!(!has(
            "Dear John, see you tomorrow.",
            &anon,
            Rule::MissingPersonalization
        ));
        assert!(has(
            "Dear customer, see you tomorrow.",
            &anon,
            Rule::MissingPersonalization
        ));
        // Neither first contact nor bulk: no rule.
        assert!(!has(
            "Напоминаем о приёме.",
            &LintContext::new(ChannelKind::Max),
            Rule::MissingPersonalization
        ));
    }

    #[test]
    fn unresolved_placeholders() {
        let ctx = LintContext::new(ChannelKind::Sms);
        for t in [
            "{{name}}, приём завтра",
            "Hello ${name}",
            "{Здравствуйте|Добрый день}, Анна",
            "Dear %FIRSTNAME%, hi",
            "Привет, [[имя]]",
            "Hi {name}",
        ] {
            assert!(has(t, &ctx, Rule::UnresolvedPlaceholder), "{t}");
        }
        for t in [
            "Скидка 10% на всё",
            "Анна, [приём] завтра",
            "50% off, 20% more",
            "a { b",
        ] {
            assert!(!has(t, &ctx, Rule::UnresolvedPlaceholder), "{t}");
        }
        let d = Linter::new().lint("Hi {{name}}!", &ctx);
        assert_eq!(d[0].span, Some((3, 11)));
    }

    #[test]
    fn marketing_without_opt_out() {
        let ctx = LintContext::new(ChannelKind::WhatsApp).purpose(Purpose::Marketing);
        assert!(has(
            "Скидка 20% на чистку зубов!",
            &ctx,
            Rule::MarketingWithoutOptOut
        ));
        assert!(has(
            "20% off teeth cleaning",
            &ctx,
            Rule::MarketingWithoutOptOut
        ));
        assert!(has(
            "Скидка на стопы и ноги",
            &ctx,
            Rule::MarketingWithoutOptOut
        ));
        assert!(!has(
            "Скидка 20%. Ответьте СТОП, чтобы отписаться",
            &ctx,
            Rule::MarketingWithoutOptOut
        ));
        assert!(!has(
            "Скидка 20%. Отписка: ответьте 0",
            &ctx,
            Rule::MarketingWithoutOptOut
        ));
        assert!(!has(
            "20% off. Reply STOP to opt out",
            &ctx,
            Rule::MarketingWithoutOptOut
        ));
        assert!(!has(
            "20% off. Unsubscribe any time.",
            &ctx,
            Rule::MarketingWithoutOptOut
        ));
        assert!(!has(
            "20% off",
            &ctx.opt_out_button(true),
            Rule::MarketingWithoutOptOut
        ));
        let service = LintContext::new(ChannelKind::WhatsApp);
        assert!(!has("Приём завтра", &service, Rule::MarketingWithoutOptOut));
    }

    #[test]
    fn no_question() {
        let ctx = first("Анна");
        let d = Linter::new().lint("Анна, приём завтра в 10:00.", &ctx);
        assert_eq!(
            d.iter()
                .find(|d| d.rule == Rule::NoQuestion)
                .unwrap()
                .severity,
            Severity::Info
        );
        assert!(!has(
            "Анна, приём завтра в 10:00. Придёте?",
            &ctx,
            Rule::NoQuestion
        ));
        assert!(has(
            "Anna, see you at 10:00.",
            &first("Anna"),
            Rule::NoQuestion
        ));
        assert!(!has(
            "Anna, see you at 10:00?",
            &first("Anna"),
            Rule::NoQuestion
        ));
        assert!(!has(
            "Анна, приём завтра.",
            &LintContext::new(ChannelKind::WhatsApp),
            Rule::NoQuestion
        ));
    }

    #[test]
    fn too_long_per_channel() {
        let ctx = LintContext::new(ChannelKind::WhatsApp);
        let sev = |t: &str, ctx: &LintContext<'_>| {
            Linter::new()
                .lint(t, ctx)
                .into_iter()
                .find(|d| d.rule == Rule::TooLong)
                .map(|d| d.severity)
        };
        assert_eq!(sev(&"а".repeat(500), &ctx), None);
        assert_eq!(sev(&"а".repeat(501), &ctx), Some(Severity::Warning));
        assert_eq!(sev(&"a".repeat(4097), &ctx), Some(Severity::Error));
        // Telegram counts UTF-16: 300 emoji are 600 units.
        let tg = LintContext::new(ChannelKind::Telegram);
        assert_eq!(sev(&"😀".repeat(300), &tg), Some(Severity::Warning));
        assert_eq!(sev(&"😀".repeat(300), &ctx), None);
        // SMS counts segments: 3 Cyrillic segments warn, 9 are an error.
        let sms = LintContext::new(ChannelKind::Sms);
        assert_eq!(sev(&"я".repeat(134), &sms), None);
        assert_eq!(sev(&"я".repeat(135), &sms), Some(Severity::Warning));
        assert_eq!(sev(&"я".repeat(67 * 8 + 1), &sms), Some(Severity::Error));
        let custom = Linter::new().limits(
            ChannelKind::WhatsApp,
            TextLimits {
                unit: TextUnit::Chars,
                short: 10,
                hard: 20,
            },
        );
        assert!(
            custom
                .lint("hello world", &ctx)
                .iter()
                .any(|d| d.rule == Rule::TooLong)
        );
    }

    #[test]
    fn sms_unicode() {
        let ctx = LintContext::new(ChannelKind::Sms);
        let d = Linter::new().lint("Анна, приём завтра в 10:00", &ctx);
        let u = d.iter().find(|d| d.rule == Rule::SmsUnicode).unwrap();
        assert_eq!(u.severity, Severity::Info);
        assert_eq!(u.span, Some((0, 2)));
        assert!(u.message.contains("1 segment"), "{}", u.message);
        let long =
            "Анна Петровна, напоминаем: приём у терапевта завтра, 12.03, в 10:00, каб. 5. Придёте?";
        let d = Linter::new().lint(long, &ctx);
        let u = d.iter().find(|d| d.rule == Rule::SmsUnicode).unwrap();
        assert!(
            u.message.contains("2 segment(s)") && u.message.contains("saving 1"),
            "{}",
            u.message
        );
        assert!(!has("Anna, priem zavtra v 10:00", &ctx, Rule::SmsUnicode));
        assert!(!has(
            "Анна, приём завтра",
            &LintContext::new(ChannelKind::Telegram),
            Rule::SmsUnicode
        ));
    }

    #[test]
    fn shouting() {
        let ctx = LintContext::new(ChannelKind::WhatsApp);
        assert!(has("СКИДКА НА ВСЁ ТОЛЬКО СЕГОДНЯ", &ctx, Rule::Shouting));
        assert!(has("HUGE SALE TODAY ONLY", &ctx, Rule::Shouting));
        assert!(has("Скидка!!!", &ctx, Rule::Shouting));
        assert!(has("Sale!!!!", &ctx, Rule::Shouting));
        assert!(!has("Скидка! Только сегодня!", &ctx, Rule::Shouting));
        assert!(!has("Приём в МРТ-центре ООО «МЕД»", &ctx, Rule::Shouting));
        assert!(!has(
            "OK, see you at https://CLINIC.RU/BOOKING/NOW",
            &ctx,
            Rule::Shouting
        ));
        assert!(!has("SMS OK", &ctx, Rule::Shouting));
        let d = Linter::new().lint("Ура!!! Да", &ctx);
        assert_eq!(d[0].span, Some((6, 9)));
    }

    #[test]
    fn levels_change_severity_or_silence() {
        let ctx = LintContext::new(ChannelKind::WhatsApp);
        let text = "Sale!!!";
        let deny = Linter::new()
            .level(Rule::Shouting, Level::Deny)
            .lint(text, &ctx);
        assert_eq!(deny[0].severity, Severity::Error);
        assert!(has_errors(&deny));
        assert!(
            Linter::new()
                .level(Rule::Shouting, Level::Allow)
                .lint(text, &ctx)
                .is_empty()
        );
        let warn = Linter::new()
            .level(Rule::ShortenedLink, Level::Warn)
            .lint("bit.ly/x", &ctx);
        assert_eq!(warn[0].severity, Severity::Warning);
        assert!(!has_errors(&warn));
        assert_eq!("deny".parse::<Level>(), Ok(Level::Deny));
        assert!("loud".parse::<Level>().is_err());
    }

    #[test]
    fn clean_messages_pass() {
        let ctx = first("Анна");
        assert_eq!(
            rules("Анна, напоминаем: приём завтра в 10:00. Придёте?", &ctx),
            Vec::<&str>::new()
        );
        let en = first("Anna");
        assert_eq!(
            rules(
                "Anna, your appointment is tomorrow at 10:00. Will you come?",
                &en
            ),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn diagnostics_serialize_as_the_cli_contract() {
        let d = Linter::new().lint("bit.ly/x", &LintContext::new(ChannelKind::Sms));
        let v = serde_json::to_value(&d[0]).unwrap();
        assert_eq!(v["rule"], "shortened-link");
        assert_eq!(v["severity"], "error");
        assert_eq!(v["span"], serde_json::json!([0, 8]));
        let none = Linter::new().lint(
            "Sale!",
            &LintContext::new(ChannelKind::Sms).purpose(Purpose::Marketing),
        );
        assert_eq!(
            serde_json::to_value(&none[0]).unwrap()["span"],
            serde_json::Value::Null
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,400}", first in proptest::bool::ANY, kind in 0usize..4) {
            let ctx = LintContext::new(ChannelKind::ALL[kind])
                .first_contact(first)
                .bulk(true)
                .purpose(Purpose::Marketing)
                .recipient_name("Анна");
            for d in Linter::new().lint(&s, &ctx) {
                if let Some((a, b)) = d.span {
                    proptest::prop_assert!(a <= b && s.get(a..b).is_some());
                }
            }
        }
    }
}
