//! Finding links the way a spam filter sees them, and a list of URL shorteners.
//!
//! A link is anything a messenger would make clickable or a reader would type into a browser:
//! a URL with any scheme (also `HTTPS://`), a bare domain (`clinic.ru/prices`), an IP host, and
//! an internationalized domain (`клиника.рф`). [`linkify`] finds the ASCII ones; our own rules
//! add internationalized domains (which `linkify` does not see) and drop what only looks like a
//! domain: decimal numbers and times (`12.50`, `10.30`), abbreviations (`т.е.`, `и т.д.`, `e.g.`),
//! file names (`file.txt`) and sentences that lack a space after the full stop
//! (`приём.Завтра`, `Hello.World`).
//!
//! ```
//! use messaging_core::text::links::find_links;
//! let text = "Цены: clinic.ru/prices, т.е. 12.50 руб. Сайт: клиника.рф. Приём.Завтра";
//! let hosts: Vec<String> = find_links(text).into_iter().map(|l| l.host).collect();
//! assert_eq!(hosts, vec!["clinic.ru", "клиника.рф"]);
//! ```

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::LazyLock;

use linkify::{LinkFinder, LinkKind};
use regex::Regex;

/// One link found in a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Byte range in the text.
    pub span: Range<usize>,
    /// The link as written.
    pub text: String,
    /// The host, lower-cased, without `www.`, port or credentials.
    pub host: String,
    /// Whether the link carries a scheme (`https://`).
    pub has_scheme: bool,
}

static FINDER: LazyLock<LinkFinder> = LazyLock::new(|| {
    let mut f = LinkFinder::new();
    f.url_must_have_scheme(false);
    f.kinds(&[LinkKind::Url]);
    f
});

/// Internationalized domains, optionally with a scheme, port and path. Applied only around a
/// dot that touches a non-ASCII character (see [`may_hold_idn`]), because `linkify` finds the rest.
static IDN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:[a-z][a-z0-9+.\-]*://)?(?:[\p{L}\p{N}][\p{L}\p{N}\-]{0,62}\.)+[\p{L}\-]{2,63}(?::[0-9]{1,5})?(?:[/?#][^\s<>«»]*)?",
    )
    .unwrap_or_else(|e| panic!("IDN pattern is a constant and compiles: {e}"))
});

/// Top-level domains accepted for a link written without a scheme. Every two-letter ASCII
/// country code is accepted as well; longer ones must be listed, so that `file.txt` or
/// `Mr.Smith` are not links.
const KNOWN_TLDS: &[&str] = &[
    // Internationalized TLDs used in Russian-speaking countries and beyond.
    "рф",
    "рус",
    "москва",
    "онлайн",
    "сайт",
    "орг",
    "ком",
    "дети",
    "укр",
    "бел",
    "қаз",
    "срб",
    "мкд",
    "católica",
    "中国",
    "xn--p1ai",
    "xn--p1acf",
    "xn--80adxhks",
    // Generic TLDs common in notices and spam.
    "com",
    "net",
    "org",
    "info",
    "biz",
    "pro",
    "name",
    "mobi",
    "app",
    "dev",
    "online",
    "site",
    "shop",
    "store",
    "tech",
    "space",
    "website",
    "club",
    "life",
    "live",
    "health",
    "clinic",
    "dental",
    "doctor",
    "care",
    "medical",
    "hospital",
    "moscow",
    "spb",
    "tatar",
    "expert",
    "center",
    "company",
    "group",
    "agency",
    "xyz",
    "top",
    "art",
    "blog",
    "news",
    "link",
    "click",
    "one",
    "page",
    "world",
    "today",
    "help",
    "email",
    "services",
    "solutions",
    "academy",
    "school",
    "travel",
    "cloud",
    "host",
    "fun",
    "win",
    "bet",
    "vip",
    "ltd",
    "edu",
    "gov",
    "int",
];

/// Whether a text may hold an internationalized domain: a dot between two word characters,
/// one of them outside ASCII. A cheap test that keeps the regex off most texts.
fn may_hold_idn(text: &str) -> bool {
    let b = text.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'.' && i > 0 && i + 1 < b.len() && {
            let (l, r) = (b[i - 1], b[i + 1]);
            let word = |x: u8| x >= 0x80 || x.is_ascii_alphanumeric();
            word(l) && word(r) && (l >= 0x80 || r >= 0x80)
        }
    })
}

/// Every link in `text`, in order, not overlapping.
pub fn find_links(text: &str) -> Vec<Link> {
    let mut out: Vec<Link> = Vec::new();
    if !text.contains('.') {
        // Every link we recognize has a dot in its host (IPv6 literals are not worth a lookup).
        return out;
    }
    for l in FINDER.links(text) {
        if let Some(link) = accept(text, l.start()..l.end()) {
            out.push(link);
        }
    }
    if may_hold_idn(text) {
        for m in IDN.find_iter(text) {
            if out
                .iter()
                .any(|l| l.span.start < m.end() && m.start() < l.span.end)
            {
                continue;
            }
            let end = m.start() + trim_trailing(m.as_str()).len();
            if let Some(link) = accept(text, m.start()..end) {
                out.push(link);
            }
        }
        out.sort_by_key(|l| l.span.start);
    }
    out
}

/// Drops punctuation a sentence puts after a link.
fn trim_trailing(s: &str) -> &str {
    s.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '"', '\'', '»'])
}

/// Applies our rules to a candidate and extracts its host.
fn accept(text: &str, span: Range<usize>) -> Option<Link> {
    let raw = text.get(span.clone())?;
    // An e-mail address or a fragment of one is not a link.
    if text[..span.start].ends_with('@') || (raw.contains('@') && !raw.contains("://")) {
        return None;
    }
    let (has_scheme, rest) = match raw.find("://") {
        Some(i) => (true, &raw[i + 3..]),
        None => (false, raw),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = host_port.split(':').next().unwrap_or(host_port);
    let has_path = rest.len() > authority.len();
    if host.is_empty() {
        return None;
    }
    let is_ip = is_ipv4(host);
    if !has_scheme && !is_ip && !plausible_bare_host(host, has_path) {
        return None;
    }
    let lower = host.to_lowercase();
    let host = lower.strip_prefix("www.").unwrap_or(&lower).to_owned();
    Some(Link {
        span,
        text: raw.to_owned(),
        host,
        has_scheme,
    })
}

fn is_ipv4(host: &str) -> bool {
    let mut n = 0;
    for octet in host.split('.') {
        n += 1;
        if octet.is_empty() || octet.len() > 3 || octet.parse::<u8>().is_err() {
            return false;
        }
    }
    n == 4
}

/// Whether a host written without a scheme is a domain rather than words joined by a dot.
fn plausible_bare_host(host: &str, has_path: bool) -> bool {
    let Some((rest, tld)) = host.rsplit_once('.') else {
        return false;
    };
    let punycode = tld.len() > 4
        && tld.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
        && tld.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if rest.is_empty() || !(punycode || tld.chars().all(|c| c.is_alphabetic() || c == '-')) {
        return false;
    }
    if host.to_ascii_lowercase().starts_with("www.") {
        return true;
    }
    // "приём.Завтра", "Hello.World": a capital followed by lower-case letters after the dot
    // is the next sentence, not a TLD (domains are written in one case).
    let mut tld_chars = tld.chars();
    let title_case =
        tld_chars.next().is_some_and(char::is_uppercase) && tld_chars.any(char::is_lowercase);
    if title_case && !has_path {
        return false;
    }
    let tld_lower = tld.to_lowercase();
    let known = punycode
        || KNOWN_TLDS.contains(&tld_lower.as_str())
        || (tld.len() == 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    // Abbreviations ("т.е", "и т.д", "e.g") have one-letter labels.
    let labels_ok = rest
        .split('.')
        .all(|l| l.chars().count() >= 2 || l.chars().all(|c| c.is_ascii_alphanumeric()));
    known && labels_ok
}

/// URL shorteners: links through them hide the destination, and spam filters punish them.
///
/// The default list holds the common international and Russian shorteners; add or remove hosts
/// for your market. A host matches itself and its subdomains.
///
/// ```
/// use messaging_core::text::links::Shorteners;
/// let list = Shorteners::default().with("go.clinic.example").without("t.co");
/// assert!(list.contains("bit.ly"));
/// assert!(list.contains("go.clinic.example"));
/// assert!(!list.contains("t.co"));
/// assert!(!list.contains("clinic.ru"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shorteners {
    hosts: BTreeSet<String>,
}

/// The default shortener hosts.
pub const DEFAULT_SHORTENERS: &[&str] = &[
    "bit.ly",
    "bitly.com",
    "j.mp",
    "clck.ru",
    "vk.cc",
    "goo.su",
    "tinyurl.com",
    "t.co",
    "cutt.ly",
    "is.gd",
    "v.gd",
    "rebrand.ly",
    "u.to",
    "goo.gl",
    "ow.ly",
    "buff.ly",
    "bit.do",
    "tiny.cc",
    "shorturl.at",
    "rb.gy",
    "t.ly",
    "s.id",
    "lnkd.in",
    "qps.ru",
    "shorte.st",
    "adf.ly",
    "bc.vc",
    "x.co",
    "tr.im",
    "cli.gs",
    "soo.gd",
    "surl.li",
    "tiny.one",
    "short.gy",
    "kutt.it",
    "trib.al",
    "dlvr.it",
    "fb.me",
    "amzn.to",
    "gg.gg",
    "tg.pe",
    "to.click",
    "l.wl.co",
];

impl Default for Shorteners {
    fn default() -> Self {
        Shorteners {
            hosts: DEFAULT_SHORTENERS.iter().map(|h| (*h).to_owned()).collect(),
        }
    }
}

impl Shorteners {
    /// An empty list.
    pub fn none() -> Self {
        Shorteners {
            hosts: BTreeSet::new(),
        }
    }

    /// Adds a host (lower-cased).
    pub fn with(mut self, host: &str) -> Self {
        self.hosts.insert(host.trim().to_lowercase());
        self
    }

    /// Removes a host.
    pub fn without(mut self, host: &str) -> Self {
        self.hosts.remove(&host.trim().to_lowercase());
        self
    }

    /// Whether `host` (lower-case, without `www.`) is a shortener or a subdomain of one.
    pub fn contains(&self, host: &str) -> bool {
        let mut h = host;
        loop {
            if self.hosts.contains(h) {
                return true;
            }
            match h.split_once('.') {
                Some((_, parent)) if parent.contains('.') => h = parent,
                _ => return false,
            }
        }
    }

    /// The hosts, sorted.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(text: &str) -> Vec<String> {
        find_links(text).into_iter().map(|l| l.host).collect()
    }

    #[test]
    fn links_of_every_form() {
        assert_eq!(hosts("см. clinic.ru/prices"), ["clinic.ru"]);
        assert_eq!(hosts("see HTTPS://CLINIC.RU/X now"), ["clinic.ru"]);
        assert_eq!(hosts("http://192.168.0.1/x"), ["192.168.0.1"]);
        assert_eq!(hosts("зайдите на 10.0.0.1:8080"), ["10.0.0.1"]);
        assert_eq!(hosts("сайт клиника.рф"), ["клиника.рф"]);
        assert_eq!(hosts("сайт клиника.рф/цены."), ["клиника.рф"]);
        assert_eq!(hosts("https://клиника.рф/путь"), ["клиника.рф"]);
        assert_eq!(hosts("www.clinic.ru"), ["clinic.ru"]);
        assert_eq!(hosts("(clinic.ru)"), ["clinic.ru"]);
        assert_eq!(hosts("Запись:clinic.ru."), ["clinic.ru"]);
        assert_eq!(hosts("xn--80aswg.xn--p1ai"), ["xn--80aswg.xn--p1ai"]);
        assert_eq!(hosts("clinic.RU"), ["clinic.ru"]);
        assert_eq!(hosts("visit my.clinic/book"), ["my.clinic"]);
        let spans: Vec<_> = find_links("a clinic.ru b")
            .into_iter()
            .map(|l| l.span)
            .collect();
        assert_eq!(spans, vec![2..11]);
    }

    #[test]
    fn things_that_are_not_links() {
        for t in [
            "Цена 12.50 руб., приём в 10.30",
            "т.е. завтра, и т.д.",
            "приём.Завтра в 10:00",
            "Hello.World",
            "Mr.Smith, e.g. i.e. etc.",
            "file.txt",
            "12.03.2026",
            "г.Москва, ул.Ленина, стр.5",
            "ООО.Ромашка",
            "1.500 руб",
            "write to a@b.ru",
            "",
            "no dots at all",
        ] {
            assert!(hosts(t).is_empty(), "{t:?} -> {:?}", hosts(t));
        }
    }

    #[test]
    fn shorteners_match_hosts_and_subdomains() {
        let s = Shorteners::default();
        assert!(s.hosts().count() >= 30);
        for h in [
            "bit.ly",
            "clck.ru",
            "vk.cc",
            "goo.su",
            "tinyurl.com",
            "t.co",
            "cutt.ly",
            "is.gd",
            "rebrand.ly",
            "u.to",
        ] {
            assert!(s.contains(h), "{h}");
        }
        assert!(s.contains("on.bit.ly"));
        assert!(!s.contains("notbit.ly"));
        assert!(!s.contains("clinic.ru"));
        assert!(!s.contains("ly"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            for l in find_links(&s) {
                proptest::prop_assert_eq!(&s[l.span.clone()], l.text.as_str());
            }
        }
    }
}
