//! Text templates: named placeholders and spintax, rendered per recipient.
//!
//! * `{{name}}` is a placeholder. A missing or blank value is an error naming every missing
//!   variable, never a literal `{{name}}` sent to a person.
//! * `{Здравствуйте|Добрый день}` is a spintax group: one variant is picked per recipient,
//!   deterministically (the same person always gets the same wording; different people get
//!   different ones). Groups nest and may hold placeholders.
//! * `\{`, `\}`, `\|` and `\\` write the character itself. A `|` outside a group is literal.
//!
//! ```
//! use messaging_hygiene::template::TextTemplate;
//! let t = TextTemplate::parse("{Здравствуйте|Добрый день}, {{name}}! Приём {{date}}. Придёте?").unwrap();
//! let text = t.render(&[("name", "Анна"), ("date", "12.03 в 10:00")], "patient-42").unwrap();
//! assert!(text.ends_with(", Анна! Приём 12.03 в 10:00. Придёте?"));
//! assert_eq!(text, t.render(&[("name", "Анна"), ("date", "12.03 в 10:00")], "patient-42").unwrap());
//! assert_eq!(t.variants(10).len(), 2);
//!
//! let err = t.render(&[("name", "Анна")], "patient-42").unwrap_err();
//! assert_eq!(err.to_string(), "no value for {{date}}");
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use super::lint::{Diagnostic, LintContext, Linter, Rule, Severity};
use messaging_core::text::split::fnv1a;

/// A source of placeholder values.
pub trait Values {
    /// The value of `name`, if any.
    fn value(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> Values for HashMap<String, String, S> {
    fn value(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Values for BTreeMap<String, String> {
    fn value(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Values for [(&str, &str)] {
    fn value(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl<const N: usize> Values for [(&str, &str); N] {
    fn value(&self, name: &str) -> Option<&str> {
        self.as_slice().value(name)
    }
}

/// Why a template could not be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template text is malformed.
    #[error("template syntax error at byte {at}: {message}")]
    Syntax {
        /// Byte offset in the template.
        at: usize,
        /// What is wrong.
        message: String,
    },
    /// Variables without a value (missing or blank), sorted.
    #[error("no value for {}", .0.iter().map(|n| format!("{{{{{n}}}}}")).collect::<Vec<_>>().join(", "))]
    MissingValues(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Text(String),
    Var { name: String, at: usize, end: usize },
    Spin(Vec<Vec<Node>>),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextTemplate {
    source: String,
    nodes: Vec<Node>,
}

impl fmt::Display for TextTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for TextTemplate {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TextTemplate::parse(s)
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn syntax(&self, at: usize, message: impl Into<String>) -> TemplateError {
        TemplateError::Syntax {
            at,
            message: message.into(),
        }
    }

    /// Parses a sequence until end of input, or (inside a group) a `|` or `}`.
    fn sequence(&mut self, in_group: bool) -> Result<Vec<Node>, TemplateError> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.src[self.pos..].chars().next() {
            match c {
                '\\' => {
                    let next = self.src[self.pos + 1..].chars().next();
                    match next {
                        Some(n @ ('{' | '}' | '|' | '\\')) => {
                            text.push(n);
                            self.pos += 2;
                        }
                        _ => {
                            text.push('\\');
                            self.pos += 1;
                        }
                    }
                }
                '{' if self.src[self.pos..].starts_with("{{") => {
                    let at = self.pos;
                    let close = self.src[at + 2..].find("}}").ok_or_else(|| {
                        self.syntax(at, "unclosed placeholder: `{{` without `}}`")
                    })?;
                    let name = self.src[at + 2..at + 2 + close].trim();
                    if name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
                    {
                        return Err(self.syntax(
                            at,
                            format!(
                                "bad placeholder name {name:?} (letters, digits, `_`, `.`, `-`)"
                            ),
                        ));
                    }
                    if !text.is_empty() {
                        nodes.push(Node::Text(std::mem::take(&mut text)));
                    }
                    self.pos = at + 2 + close + 2;
                    nodes.push(Node::Var {
                        name: name.to_owned(),
                        at,
                        end: self.pos,
                    });
                }
                '{' => {
                    let at = self.pos;
                    self.pos += 1;
                    let mut variants = vec![self.sequence(true)?];
                    loop {
                        match self.src[self.pos..].chars().next() {
                            Some('|') => {
                                self.pos += 1;
                                variants.push(self.sequence(true)?);
                            }
                            Some('}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(self.syntax(at, "unclosed group: `{` without `}`")),
                        }
                    }
                    if variants.len() < 2 {
                        return Err(self.syntax(
                            at,
                            "a group needs two or more variants separated by `|`; write `{{name}}` for a placeholder",
                        ));
                    }
                    if !text.is_empty() {
                        nodes.push(Node::Text(std::mem::take(&mut text)));
                    }
                    nodes.push(Node::Spin(variants));
                }
                '|' | '}' if in_group => break,
                '}' => return Err(self.syntax(self.pos, "`}` without `{` (write `\\}`)")),
                _ => {
                    text.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Ok(nodes)
    }
}

impl TextTemplate {
    /// Parses a template.
    pub fn parse(source: &str) -> Result<TextTemplate, TemplateError> {
        let mut p = Parser {
            src: source,
            pos: 0,
        };
        let nodes = p.sequence(false)?;
        Ok(TextTemplate {
            source: source.to_owned(),
            nodes,
        })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every variable name, sorted, each once.
    pub fn variables(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        visit_vars(&self.nodes, &mut |name, _, _| {
            names.insert(name.to_owned());
        });
        names.into_iter().collect()
    }

    /// Variables (in every variant) with no value or a blank one, sorted.
    pub fn missing(&self, values: &(impl Values + ?Sized)) -> Vec<String> {
        let mut missing = BTreeSet::new();
        visit_vars(&self.nodes, &mut |name, _, _| {
            if values.value(name).is_none_or(|v| v.trim().is_empty()) {
                missing.insert(name.to_owned());
            }
        });
        missing.into_iter().collect()
    }

    /// Renders for one recipient. `seed` identifies the recipient (a contact id, a phone) and
    /// picks the spintax variants. Every variable of every variant needs a value, so whether a
    /// template renders does not depend on who it is for.
    pub fn render(
        &self,
        values: &(impl Values + ?Sized),
        seed: &str,
    ) -> Result<String, TemplateError> {
        let missing = self.missing(values);
        if !missing.is_empty() {
            return Err(TemplateError::MissingValues(missing));
        }
        let mut out = String::with_capacity(self.source.len());
        let mut group = 0u64;
        render_nodes(
            &self.nodes,
            &|name| values.value(name),
            fnv1a(seed.as_bytes()),
            &mut group,
            &mut out,
        );
        Ok(out)
    }

    /// How many distinct texts the spintax can produce (saturating).
    pub fn variant_count(&self) -> u128 {
        count(&self.nodes)
    }

    /// Every spintax variant, placeholders left as `{{name}}`, at most `limit` of them (in a
    /// stable order: first variants first).
    pub fn variants(&self, limit: usize) -> Vec<String> {
        let mut acc = vec![String::new()];
        expand(&self.nodes, &mut acc, limit);
        acc.truncate(limit);
        acc
    }
}

fn visit_vars(nodes: &[Node], f: &mut impl FnMut(&str, usize, usize)) {
    for n in nodes {
        match n {
            Node::Text(_) => {}
            Node::Var { name, at, end } => f(name, *at, *end),
            Node::Spin(vs) => vs.iter().for_each(|v| visit_vars(v, f)),
        }
    }
}

fn render_nodes<'v>(
    nodes: &[Node],
    value: &dyn Fn(&str) -> Option<&'v str>,
    seed: u64,
    group: &mut u64,
    out: &mut String,
) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Var { name, .. } => out.push_str(value(name).unwrap_or_default()),
            Node::Spin(vs) => {
                *group += 1;
                let pick = mix(seed ^ group.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let i = usize::try_from(pick % vs.len() as u64).unwrap_or(0);
                if let Some(v) = vs.get(i) {
                    render_nodes(v, value, seed, group, out);
                }
                // Later groups keep their numbers whichever variant was taken.
                for (j, other) in vs.iter().enumerate() {
                    if j != i {
                        *group += count_groups(other);
                    }
                }
            }
        }
    }
}

fn count_groups(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .map(|n| match n {
            Node::Spin(vs) => 1 + vs.iter().map(|v| count_groups(v)).sum::<u64>(),
            _ => 0,
        })
        .sum()
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn count(nodes: &[Node]) -> u128 {
    nodes.iter().fold(1u128, |acc, n| match n {
        Node::Spin(vs) => acc.saturating_mul(
            vs.iter()
                .map(|v| count(v))
                .fold(0u128, u128::saturating_add),
        ),
        _ => acc,
    })
}

/// Appends every expansion of `nodes` to each prefix in `acc`, keeping at most `limit` prefixes.
fn expand(nodes: &[Node], acc: &mut Vec<String>, limit: usize) {
    for n in nodes {
        match n {
            Node::Text(t) => acc.iter_mut().for_each(|s| s.push_str(t)),
            Node::Var { name, .. } => acc.iter_mut().for_each(|s| {
                s.push_str("{{");
                s.push_str(name);
                s.push_str("}}");
            }),
            Node::Spin(vs) => {
                let mut next = Vec::new();
                for prefix in acc.iter() {
                    for v in vs {
                        if next.len() >= limit {
                            break;
                        }
                        let mut one = vec![prefix.clone()];
                        expand(v, &mut one, limit);
                        for s in one {
                            if next.len() < limit {
                                next.push(s);
                            }
                        }
                    }
                }
                *acc = next;
            }
        }
    }
}

impl Linter {
    /// Renders a template for one recipient and lints the result. A variable without a value
    /// is an `unresolved-placeholder` diagnostic whose span is in the **template** source; a
    /// syntax error is one too, at the offending byte.
    ///
    /// ```
    /// use messaging_core::ChannelKind;
    /// use messaging_hygiene::lint::{LintContext, Linter};
    /// use messaging_hygiene::template::TextTemplate;
    /// let t = TextTemplate::parse("{{name}}, приём {{date}}.").unwrap();
    /// let d = Linter::new().lint_template(&t, &[("name", "Анна")], "p-1", &LintContext::new(ChannelKind::Sms));
    /// assert_eq!(d[0].rule.as_str(), "unresolved-placeholder");
    /// assert_eq!(d[0].span, Some((21, 29))); // `{{date}}` in the template
    /// ```
    pub fn lint_template(
        &self,
        template: &TextTemplate,
        values: &(impl Values + ?Sized),
        seed: &str,
        ctx: &LintContext<'_>,
    ) -> Vec<Diagnostic> {
        match template.render(values, seed) {
            Ok(text) => self.lint(&text, ctx),
            Err(_) => {
                let mut out = Vec::new();
                let mut seen = BTreeSet::new();
                visit_vars(&template.nodes, &mut |name, at, end| {
                    let blank = values.value(name).is_none_or(|v| v.trim().is_empty());
                    if blank && seen.insert(name.to_owned()) {
                        out.push(Diagnostic {
                            rule: Rule::UnresolvedPlaceholder,
                            severity: Severity::Error,
                            message: format!("template variable {{{{{name}}}}} has no value"),
                            span: Some((at, end)),
                            hint: format!("give {name:?} a value before sending"),
                        });
                    }
                });
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::ChannelKind;

    #[test]
    fn placeholders_render_and_missing_ones_are_named() {
        let t = TextTemplate::parse("{{ name }}, приём {{date}} в {{time}}").unwrap();
        assert_eq!(t.variables(), ["date", "name", "time"]);
        let ok = t.render(
            &[("name", "Анна"), ("date", "12.03"), ("time", "10:00")],
            "x",
        );
        assert_eq!(ok.unwrap(), "Анна, приём 12.03 в 10:00");
        let err = t
            .render(&[("name", "Анна"), ("time", " ")], "x")
            .unwrap_err();
        assert_eq!(
            err,
            TemplateError::MissingValues(vec!["date".into(), "time".into()])
        );
        assert_eq!(err.to_string(), "no value for {{date}}, {{time}}");
        let mut map = HashMap::new();
        map.insert("name".to_owned(), "John".to_owned());
        map.insert("date".to_owned(), "March 12".to_owned());
        map.insert("time".to_owned(), "10 am".to_owned());
        assert_eq!(t.render(&map, "x").unwrap(), "John, приём March 12 в 10 am");
    }

    #[test]
    fn spintax_is_deterministic_per_recipient_and_varies_across_recipients() {
        let t = TextTemplate::parse("{Здравствуйте|Добрый день|Hello}, {{name}}!").unwrap();
        let v = [("name", "Анна")];
        let a = t.render(&v, "patient-1").unwrap();
        assert_eq!(a, t.render(&v, "patient-1").unwrap());
        let distinct: BTreeSet<String> = (0..50)
            .map(|i| t.render(&v, &format!("patient-{i}")).unwrap())
            .collect();
        assert_eq!(distinct.len(), 3, "{distinct:?}");
        assert_eq!(t.variant_count(), 3);
        assert_eq!(
            t.variants(10),
            [
                "Здравствуйте, {{name}}!",
                "Добрый день, {{name}}!",
                "Hello, {{name}}!"
            ]
        );
    }

    #[test]
    fn nested_groups_and_escapes() {
        let t = TextTemplate::parse("{a|b{c|d}} \\{x\\} \\| | {{n}}").unwrap();
        assert_eq!(t.variant_count(), 3);
        assert_eq!(
            t.variants(10),
            ["a {x} | | {{n}}", "bc {x} | | {{n}}", "bd {x} | | {{n}}"]
        );
        assert_eq!(t.variants(2).len(), 2);
        let big = TextTemplate::parse(&"{a|b}".repeat(20)).unwrap();
        assert_eq!(big.variant_count(), 1 << 20);
        assert_eq!(big.variants(5).len(), 5);
    }

    #[test]
    fn syntax_errors_are_typed() {
        for (src, at) in [
            ("{{name", 0),
            ("hi {a|b", 3),
            ("x}", 1),
            ("{solo}", 0),
            ("{{}}", 0),
            ("{{a b}}", 0),
        ] {
            match TextTemplate::parse(src) {
                Err(TemplateError::Syntax { at: got, .. }) => assert_eq!(got, at, "{src}"),
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    #[test]
    fn lint_template_reports_missing_variables_and_lints_the_rendering() {
        let t = TextTemplate::parse("{Hi|Hello} {{name}}, see bit.ly/x").unwrap();
        let ctx = LintContext::new(ChannelKind::Telegram);
        let d = Linter::new().lint_template(&t, &[("name", "")], "s", &ctx);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].rule, Rule::UnresolvedPlaceholder);
        assert_eq!(d[0].span, Some((11, 19)));
        let d = Linter::new().lint_template(&t, &[("name", "Ann")], "s", &ctx);
        assert_eq!(d[0].rule, Rule::ShortenedLink);
    }

    proptest::proptest! {
        #[test]
        fn parse_and_render_never_panic(s in "[{}|\\\\a-zа-я ]{0,60}", seed in "\\PC{0,10}") {
            if let Ok(t) = TextTemplate::parse(&s) {
                let _ = t.render(&[("a", "1")], &seed);
                let _ = t.variants(20);
            }
        }
    }
}
