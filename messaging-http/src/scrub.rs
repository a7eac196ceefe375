//! Scrubbing configured secrets out of text a provider sent back.
//!
//! Providers echo requests: a Bot API `description` may quote the URL (which holds the token),
//! a Graph `error.message` the header, an SMS gateway's `status_text` the form it was given.
//! A [`Redactor`] knows an adapter's secrets and replaces every occurrence of them — as they
//! are, and in the encodings a provider could echo them in — with [`REDACTED`].

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use messaging_core::ChannelError;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Base64 forms of a secret found inside a longer base64 text (misaligned) are only looked for
/// when they are at least this long: shorter ones would match innocent text.
const MIN_INNER_BASE64: usize = 8;

/// The secrets of one adapter, and every form of them it scrubs from text.
///
/// Each secret given to [`secret`](Self::secret) is looked for as it is, percent-encoded (as in
/// a URL path or query, upper- and lowercase hex, and as a form value with `+` for spaces),
/// JSON-escaped, and base64-encoded (standard and URL-safe, with and without padding, also
/// inside a longer base64 text such as a `Basic` authorization header). Secrets of any length
/// are scrubbed, even short ones; an empty secret is ignored. [`basic_auth`](Self::basic_auth)
/// adds the exact `user:password` base64 of an HTTP Basic header.
///
/// `Debug` shows how many forms it knows, never the forms.
///
/// ```
/// use messaging_http::Redactor;
/// let r = Redactor::new().secret("s3cr3t+/=").basic_auth("AC1", "auth-9f2c");
/// assert_eq!(r.redact("token s3cr3t+/= in the URL"), "token [redacted] in the URL");
/// assert_eq!(r.redact("api_id=s3cr3t%2B%2F%3D"), "api_id=[redacted]");
/// assert_eq!(r.redact("Authorization: Basic QUMxOmF1dGgtOWYyYw=="), "Authorization: Basic [redacted]");
/// assert!(!format!("{r:?}").contains("s3cr3t"));
/// ```
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a longer form is replaced before a shorter one inside it.
    needles: Arc<Vec<String>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("forms", &self.needles.len())
            .finish()
    }
}

fn base64_forms(bytes: &[u8], out: &mut Vec<String>) {
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(bytes));
    }
    // Inside a longer base64 text the secret starts at one of three byte offsets; only the
    // characters made of the secret's bits alone are the same whatever surrounds it.
    for offset in 0..3usize {
        let mut padded = vec![0u8; offset];
        padded.extend_from_slice(bytes);
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let enc = engine.encode(&padded);
            let start = (offset * 8).div_ceil(6);
            let end = (padded.len() * 8) / 6;
            if end > start && end - start >= MIN_INNER_BASE64 {
                out.push(enc[start..end].to_owned());
            }
        }
    }
}

impl Redactor {
    /// A redactor without secrets (it changes nothing).
    pub fn new() -> Self {
        Self::default()
    }

    fn add(mut self, forms: Vec<String>) -> Self {
        let needles = Arc::make_mut(&mut self.needles);
        for f in forms {
            if !f.is_empty() && !needles.contains(&f) {
                needles.push(f);
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        self
    }

    /// Adds a secret (a token, an API key, a password); an empty one is ignored.
    pub fn secret(self, secret: impl AsRef<str>) -> Self {
        let s = secret.as_ref();
        if s.is_empty() {
            return self;
        }
        let mut forms = vec![s.to_owned()];
        let pct = utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        forms.push(lowercase_escapes(&pct));
        forms.push(pct);
        forms.push(form_urlencoded::byte_serialize(s.as_bytes()).collect());
        // Only the characters a URL path or query must encode.
        forms.push(
            utf8_percent_encode(s, percent_encoding::CONTROLS)
                .to_string()
                .replace(' ', "%20"),
        );
        if let Ok(json) = serde_json::to_string(s) {
            forms.push(json[1..json.len() - 1].to_owned());
        }
        base64_forms(s.as_bytes(), &mut forms);
        self.add(forms)
    }

    /// Adds every secret of `secrets`.
    pub fn secrets<I, S>(self, secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        secrets.into_iter().fold(self, Self::secret)
    }

    /// Adds the password and the `Authorization: Basic` credentials of `user:password` (the
    /// user name alone is not a secret).
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        let mut forms = Vec::new();
        base64_forms(format!("{user}:{password}").as_bytes(), &mut forms);
        self.secret(password).add(forms)
    }

    /// Adds the secrets of another redactor.
    pub fn merge(self, other: &Redactor) -> Self {
        self.add(other.needles.iter().cloned().collect())
    }

    /// Whether it knows no secret.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Whether `text` holds a secret in any form this redactor knows.
    pub fn finds_in(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }

    /// `text` with every form of every secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for n in self.needles.iter() {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), REDACTED);
            }
        }
        out
    }

    /// `error` with its message, provider code and source scrubbed
    /// ([`ChannelError::redact_with`]); an error without a secret comes back as it was, its
    /// typed source intact.
    ///
    /// ```
    /// use messaging_core::ChannelError;
    /// let r = messaging_http::Redactor::new().secret("TOKEN-1");
    /// let e = r.redact_error(ChannelError::channel_down("bad token TOKEN-1"));
    /// assert_eq!(e.message(), "bad token [redacted]");
    /// ```
    pub fn redact_error(&self, error: ChannelError) -> ChannelError {
        if self.is_empty() {
            return error;
        }
        error.redact_with(|s| self.redact(s))
    }
}

/// `%2F` as `%2f` (some servers echo lowercase escapes).
fn lowercase_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&esc.to_ascii_lowercase());
        rest = &rest[i + esc.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_is_scrubbed() {
        let secret = "p@ss w/rd+1";
        let r = Redactor::new().secret(secret);
        for form in [
            secret.to_owned(),
            "p%40ss%20w%2Frd%2B1".to_owned(),
            "p%40ss%20w%2frd%2b1".to_owned(),
            "p%40ss+w%2Frd%2B1".to_owned(),
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
        ] {
            let text = format!("before {form} after");
            assert_eq!(r.redact(&text), "before [redacted] after", "{form}");
        }
    }

    #[test]
    fn misaligned_base64_inside_a_longer_text_is_scrubbed() {
        let secret = "a-long-enough-secret";
        let r = Redactor::new().secret(secret);
        for prefix in ["", "x", "xy", "xyz:"] {
            let enc = STANDARD.encode(format!("{prefix}{secret}"));
            assert!(r.finds_in(&enc), "prefix {prefix:?}: {enc}");
            assert!(
                !r.redact(&enc)
                    .contains(&enc[enc.len() / 2..enc.len() / 2 + 4])
            );
        }
    }

    #[test]
    fn short_secrets_are_scrubbed_and_empty_ones_ignored() {
        let r = Redactor::new().secret("k1").secret("");
        assert_eq!(r.redact("key=k1"), "key=[redacted]");
        assert_eq!(Redactor::new().secret("").redact("abc"), "abc");
        assert!(Redactor::new().secret("").is_empty());
    }

    #[test]
    fn errors_keep_their_kind_and_lose_the_secret() {
        let r = Redactor::new().basic_auth("AC1", "tok-123456");
        let e = ChannelError::unexpected("echo: Basic QUMxOnRvay0xMjM0NTY= tok-123456")
            .with_provider_code("tok-123456");
        let e = r.redact_error(e);
        assert_eq!(e.kind(), messaging_core::ErrorKind::Unexpected);
        assert_eq!(e.message(), "echo: Basic [redacted] [redacted]");
        assert_eq!(e.provider_code(), Some("[redacted]"));
    }
}
