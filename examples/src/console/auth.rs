//! Operators' sessions: one configured password, a random 256-bit session cookie, a CSRF token
//! per session, a modest limit on failed logins. Neither the password nor a token is ever
//! logged or shown by `Debug`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::{State, lock};

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "console_session";
/// The login form's own CSRF cookie (a double-submitted token: there is no session yet).
pub(crate) const LOGIN_COOKIE: &str = "console_login";
/// The header the page's script sends the CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts without use.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per minute (all clients together: a reception desk logs in rarely).
const FAILURES_PER_MINUTE: usize = 10;

/// The operators' password. `Debug` never shows it.
///
/// ```
/// use messaging_examples::console::Password;
/// let p = Password::new("correct horse").unwrap();
/// assert!(p.matches("correct horse"));
/// assert!(!p.matches("correct horsf"));
/// assert!(!format!("{p:?}").contains("horse"));
/// assert!(Password::new("short").is_err());
/// ```
#[derive(Clone)]
pub struct Password(Arc<str>);

impl Password {
    /// The shortest password accepted.
    pub const MIN_LEN: usize = 8;

    /// A password of at least [`MIN_LEN`](Self::MIN_LEN) characters.
    pub fn new(p: impl Into<String>) -> Result<Password, String> {
        let p = p.into();
        if p.chars().count() < Self::MIN_LEN {
            return Err(format!(
                "the operator password must be at least {} characters",
                Self::MIN_LEN
            ));
        }
        Ok(Password(p.into()))
    }

    /// A random password for `--demo` (20 characters of a-z, 2-9, no look-alikes).
    pub fn generate() -> Password {
        const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
        let mut bytes = [0u8; 20];
        rand::rng().fill_bytes(&mut bytes);
        let s: String = bytes
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect();
        Password(s.into())
    }

    /// The password itself, to print once for `--demo`.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the password, compared in constant time.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        // Lengths differ: compare against itself anyway, so timing says nothing more.
        let same_len = a.len() == b.len();
        let eq: bool = if same_len {
            a.ct_eq(b).into()
        } else {
            a.ct_eq(a).into()
        };
        same_len && eq
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// A random 256-bit token, hex.
pub(crate) fn token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// One operator's session.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) csrf: String,
    last_used: Instant,
}

pub(crate) struct Auth {
    password: Password,
    secure: bool,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<VecDeque<Instant>>,
}

impl Auth {
    pub(crate) fn new(password: Password, secure: bool) -> Auth {
        Auth {
            password,
            secure,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether another login attempt may be checked now.
    pub(crate) fn may_try(&self) -> bool {
        let mut f = lock(&self.failures);
        while f
            .front()
            .is_some_and(|t| t.elapsed() > Duration::from_secs(60))
        {
            f.pop_front();
        }
        f.len() < FAILURES_PER_MINUTE
    }

    /// Checks the password; on success a new session (its cookie token).
    pub(crate) fn login(&self, given: &str) -> Option<String> {
        if !self.password.matches(given) {
            lock(&self.failures).push_back(Instant::now());
            return None;
        }
        let id = token();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.last_used.elapsed() < IDLE);
        sessions.insert(
            id.clone(),
            Session {
                csrf: token(),
                last_used: Instant::now(),
            },
        );
        Some(id)
    }

    pub(crate) fn logout(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    fn session(&self, id: &str) -> Option<Session> {
        let mut sessions = lock(&self.sessions);
        let s = sessions.get_mut(id)?;
        if s.last_used.elapsed() > IDLE {
            sessions.remove(id);
            return None;
        }
        s.last_used = Instant::now();
        Some(s.clone())
    }

    pub(crate) fn cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
        let mut c = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            c.push_str("; Secure");
        }
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Two tokens, compared in constant time.
pub(crate) fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The session of a request that passed [`require_session`].
#[derive(Clone)]
pub(crate) struct Operator {
    pub(crate) session: String,
    pub(crate) csrf: String,
}

impl Operator {
    /// Whether a form's (or the script's header's) CSRF token is this session's.
    pub(crate) fn csrf_ok(&self, headers: &HeaderMap, form: Option<&str>) -> bool {
        let given = form
            .filter(|f| !f.is_empty())
            .or_else(|| headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()));
        given.is_some_and(|g| same_token(g, &self.csrf))
    }
}

/// Every console route but the login page and static files: a session or the login page.
pub(crate) async fn require_session(
    AxumState(state): AxumState<Arc<State>>,
    mut req: Request,
    next: Next,
) -> Response {
    let session = cookie(req.headers(), SESSION_COOKIE)
        .and_then(|id| state.auth.session(id).map(|s| (id.to_owned(), s)));
    let Some((id, s)) = session else {
        let wants_page = req.method() == axum::http::Method::GET
            && !req.uri().path().starts_with("/events")
            && !req.uri().path().contains("/fragment");
        return if wants_page {
            Redirect::to("/login").into_response()
        } else {
            (StatusCode::UNAUTHORIZED, "log in first").into_response()
        };
    };
    req.extensions_mut().insert(Operator {
        session: id,
        csrf: s.csrf,
    });
    next.run(req).await
}

/// Security headers on every console response.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; \
             object-src 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
