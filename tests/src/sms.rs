//! A fake SMS provider server: SMS.ru, SMSC.ru, SMS Aero (v2) and Twilio on one axum server on
//! `127.0.0.1:0`, each on its real paths and answering with its real success and error bodies.
//!
//! - every request is recorded ([`FakeSms::requests`]) and every accepted message kept
//!   ([`FakeSms::sent`]);
//! - failures can be scripted per provider ([`FakeSms::fail_next`]: an HTTP status, the
//!   provider's own error for a code, a delay for timeouts, a connection dropped mid-answer), a
//!   provider can be taken down ([`FakeSms::outage`]), and new connections can be dropped on
//!   accept ([`FakeSms::drop_next_connections`]);
//! - status endpoints answer from statuses set with [`FakeSms::set_status`];
//! - a per-provider rate limit ([`FakeSms::rate_limit`]) answers with that provider's real
//!   rate-limit error (SMS.ru 231 (no dedicated code is documented), SMSC.ru `error_code` 9,
//!   SMS Aero HTTP 429, Twilio HTTP 429 with code 20429).
//!
//! ```no_run
//! # async fn run() {
//! use messaging_tests::sms::{FakeSms, Provider};
//! let fake = FakeSms::start().await;
//! let base = fake.url(); // point SmsRuChannel::base_url / SmscChannel / TwilioChannel here
//! let aero = fake.smsaero_url(); // SmsAeroChannel::base_url (ends in /v2)
//! fake.rate_limit(Provider::Twilio, 1, std::time::Duration::from_secs(1));
//! # let _ = (base, aero);
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

/// The providers the fake speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// SMS.ru: `POST /sms/send`, `POST /sms/status` (form, `json=1`).
    SmsRu,
    /// SMSC.ru: `POST /sys/send.php`, `POST /sys/status.php` (form, `fmt=3`).
    Smsc,
    /// SMS Aero v2: `POST /v2/sms/send|testsend|status|teststatus` (JSON, Basic auth).
    SmsAero,
    /// Twilio: `POST /2010-04-01/Accounts/{Sid}/Messages.json`, `GET …/Messages/{Sid}.json`.
    Twilio,
}

/// A scripted failure for the next request to a provider.
#[derive(Clone, Debug)]
pub enum Failure {
    /// Answer with this HTTP status and body.
    Http(u16, String),
    /// Answer with the provider's own error for this code (SMS.ru `status_code`, SMSC.ru
    /// `error_code`, Twilio `code`; for SMS Aero the code is the HTTP status). SMS.ru recipient
    /// codes (202, 207, 209, 214, 215, 550) come inside the per-recipient entry.
    Error(i64),
    /// Wait this long, then answer normally (to trigger client timeouts).
    Delay(Duration),
    /// Send the headers, then drop the connection instead of the body.
    DropConnection,
}

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Which provider's path it hit.
    pub provider: Provider,
    /// HTTP method.
    pub method: String,
    /// Path (no query).
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
}

impl Recorded {
    /// The body as form fields.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
    /// One form field.
    pub fn field(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
    /// The body as JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
    /// The Basic auth pair.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        basic_auth(&self.headers)
    }
}

/// A message the fake accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct SentMessage {
    /// The provider.
    pub provider: Provider,
    /// The id it was given.
    pub id: String,
    /// The recipient as sent.
    pub to: String,
    /// The text.
    pub text: String,
    /// The sender name / From, if any.
    pub sender: Option<String>,
    /// Whether it was a sandbox send (SMS.ru `test=1`, SMS Aero `testsend`).
    pub test: bool,
}

#[derive(Default)]
struct Limit {
    max: usize,
    per: Duration,
    hits: VecDeque<Instant>,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    sent: Vec<SentMessage>,
    failures: HashMap<Provider, VecDeque<Failure>>,
    outage: HashMap<Provider, bool>,
    limits: HashMap<Provider, Limit>,
    statuses: HashMap<(Provider, String), String>,
    counter: u64,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running fake server. Dropping it stops the server.
pub struct FakeSms {
    addr: SocketAddr,
    shared: Shared,
    drops: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSms").field("addr", &self.addr).finish()
    }
}

impl Drop for FakeSms {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct DroppingListener {
    inner: tokio::net::TcpListener,
    drops: Arc<AtomicUsize>,
}

impl axum::serve::Listener for DroppingListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let dropped = self
                        .drops
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if dropped {
                        drop(stream);
                        continue;
                    }
                    return (stream, addr);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl FakeSms {
    /// The SMS.ru `api_id` the fake accepts.
    pub const SMSRU_API_ID: &'static str = "fake-smsru-api-id";
    /// The SMSC.ru login the fake accepts.
    pub const SMSC_LOGIN: &'static str = "clinic";
    /// The SMSC.ru password the fake accepts.
    pub const SMSC_PASSWORD: &'static str = "fake-smsc-password";
    /// The SMS Aero account e-mail the fake accepts.
    pub const SMSAERO_EMAIL: &'static str = "clinic@example.com";
    /// The SMS Aero API key the fake accepts.
    pub const SMSAERO_API_KEY: &'static str = "fake-smsaero-api-key-0123456789ab";
    /// The Twilio Account SID the fake accepts.
    pub const TWILIO_ACCOUNT_SID: &'static str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    /// The Twilio auth token the fake accepts.
    pub const TWILIO_AUTH_TOKEN: &'static str = "fake-twilio-auth-token";

    /// Starts the server on a random loopback port.
    pub async fn start() -> FakeSms {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Shared::default();
        let drops = Arc::new(AtomicUsize::new(0));
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = DroppingListener {
            inner: listener,
            drops: drops.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSms {
            addr,
            shared,
            drops,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`: the base URL for SMS.ru, SMSC.ru and Twilio channels.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<port>/v2`: the base URL for SMS Aero channels.
    pub fn smsaero_url(&self) -> String {
        format!("http://{}/v2", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// The requests to one provider.
    pub fn requests_for(&self, provider: Provider) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.provider == provider)
            .collect()
    }

    /// The messages accepted so far.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.shared.lock().sent.clone()
    }

    /// Scripts a failure for the next request to `provider` (failures queue up).
    pub fn fail_next(&self, provider: Provider, failure: Failure) {
        self.shared
            .lock()
            .failures
            .entry(provider)
            .or_default()
            .push_back(failure);
    }

    /// Takes a provider down (`503` with an HTML body) or brings it back.
    pub fn outage(&self, provider: Provider, down: bool) {
        self.shared.lock().outage.insert(provider, down);
    }

    /// Allows at most `max` requests per `per` to `provider`; more get its rate-limit error.
    pub fn rate_limit(&self, provider: Provider, max: usize, per: Duration) {
        self.shared.lock().limits.insert(
            provider,
            Limit {
                max,
                per,
                hits: VecDeque::new(),
            },
        );
    }

    /// Sets what the status endpoint says about a message: the provider's status code or word,
    /// optionally followed by `:` and an error code (SMSC.ru `err`, Twilio `error_code`):
    /// `"103"` (SMS.ru), `"20:1"` (SMSC.ru), `"1"` (SMS Aero), `"undelivered:30003"` (Twilio).
    pub fn set_status(&self, provider: Provider, id: &str, status: &str) {
        self.shared
            .lock()
            .statuses
            .insert((provider, id.to_owned()), status.to_owned());
    }

    /// Drops the next `n` new connections right after accepting them.
    /// (Pooled keep-alive connections are not affected.)
    pub fn drop_next_connections(&self, n: usize) {
        self.drops.store(n, Ordering::SeqCst);
    }
}

fn provider_of(method: &Method, path: &str) -> Option<Provider> {
    match path {
        "/sms/send" | "/sms/status" => Some(Provider::SmsRu),
        "/sys/send.php" | "/sys/status.php" => Some(Provider::Smsc),
        "/v2/sms/send" | "/v2/sms/testsend" | "/v2/sms/status" | "/v2/sms/teststatus" => {
            Some(Provider::SmsAero)
        }
        p if p.starts_with("/2010-04-01/Accounts/")
            && p.ends_with(".json")
            && (method == Method::POST || method == Method::GET) =>
        {
            Some(Provider::Twilio)
        }
        _ => None,
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let Some(provider) = provider_of(&method, &path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let (failure, limited, down) = {
        let mut s = shared.lock();
        s.requests.push(Recorded {
            provider,
            method: method.to_string(),
            path: path.clone(),
            headers: headers.clone(),
            body: body.clone(),
        });
        let limited = match s.limits.get_mut(&provider) {
            Some(l) => {
                let now = Instant::now();
                while l
                    .hits
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= l.per)
                {
                    l.hits.pop_front();
                }
                if l.hits.len() >= l.max {
                    true
                } else {
                    l.hits.push_back(now);
                    false
                }
            }
            None => false,
        };
        let failure = if limited {
            None
        } else {
            s.failures.get_mut(&provider).and_then(VecDeque::pop_front)
        };
        let down = s.outage.get(&provider).copied().unwrap_or(false);
        (failure, limited, down)
    };
    if limited {
        return rate_limited(provider);
    }
    match failure {
        Some(Failure::Http(status, body)) => {
            return (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body,
            )
                .into_response();
        }
        Some(Failure::Error(code)) if !(provider == Provider::SmsRu && is_recipient_code(code)) => {
            return provider_error(provider, code);
        }
        Some(Failure::Delay(d)) => tokio::time::sleep(d).await,
        Some(Failure::DropConnection) => {
            let stream = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped"))
            });
            return Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        _ => {}
    }
    if down {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/html")],
            "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
        )
            .into_response();
    }
    let recipient_error = match failure {
        Some(Failure::Error(code)) => Some(code),
        _ => None,
    };
    match provider {
        Provider::SmsRu => smsru(&shared, &path, &body, recipient_error),
        Provider::Smsc => smsc(&shared, &path, &body),
        Provider::SmsAero => smsaero(&shared, &path, &headers, &body),
        Provider::Twilio => twilio(&shared, &method, &path, &headers, &body),
    }
}

fn is_recipient_code(code: i64) -> bool {
    matches!(code, 202 | 207 | 209 | 214 | 215 | 550)
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn rate_limited(provider: Provider) -> Response {
    match provider {
        Provider::SmsRu => json_response(
            StatusCode::OK,
            json!({"status": "ERROR", "status_code": 231,
                   "status_text": "Превышен лимит одинаковых сообщений на этот номер в минуту"}),
        ),
        Provider::Smsc => json_response(
            StatusCode::OK,
            json!({"error": "too many requests", "error_code": 9}),
        ),
        Provider::SmsAero => json_response(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"success": false, "data": null, "message": "Too Many Requests"}),
        ),
        Provider::Twilio => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            axum::Json(json!({"code": 20429, "message": "Too Many Requests",
                   "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429})),
        )
            .into_response(),
    }
}

fn provider_error(provider: Provider, code: i64) -> Response {
    match provider {
        Provider::SmsRu => json_response(
            StatusCode::OK,
            json!({"status": "ERROR", "status_code": code, "status_text": smsru_text(code)}),
        ),
        Provider::Smsc => json_response(
            StatusCode::OK,
            json!({"error": smsc_text(code), "error_code": code}),
        ),
        Provider::SmsAero => {
            let status = u16::try_from(code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_REQUEST);
            let message = match status.as_u16() {
                401 => "Your request was made with invalid credentials.",
                429 => "Too Many Requests",
                s if s >= 500 => "Internal Server Error",
                _ => "Validation error.",
            };
            json_response(
                status,
                json!({"success": false, "data": null, "message": message}),
            )
        }
        Provider::Twilio => {
            let status = match code {
                20003 => StatusCode::UNAUTHORIZED,
                20429 => StatusCode::TOO_MANY_REQUESTS,
                20500 => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            json_response(
                status,
                json!({"code": code, "message": twilio_text(code),
                       "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
                       "status": status.as_u16()}),
            )
        }
    }
}

fn smsru_text(code: i64) -> &'static str {
    match code {
        200 => "Неправильный api_id",
        201 => "Не хватает средств на лицевом счету",
        202 => "Неправильно указан номер телефона получателя, либо на него нет маршрута",
        203 => "Нет текста сообщения",
        204 => "Имя отправителя не согласовано с администрацией",
        205 => "Сообщение слишком длинное (превышает 8 СМС)",
        207 => "На этот номер (или один из номеров) нельзя отправлять сообщения",
        220 => "Сервис временно недоступен, попробуйте чуть позже",
        231 => "Превышен лимит одинаковых сообщений на этот номер в минуту",
        500 => "Ошибка на сервере. Повторите запрос.",
        _ => "Ошибка",
    }
}

fn smsc_text(code: i64) -> &'static str {
    match code {
        1 => "parameters error",
        2 => "authorise error",
        3 => "no money",
        4 => "IP is blocked",
        5 => "invalid date format",
        6 => "message is denied",
        7 => "invalid number",
        8 => "cannot deliver",
        9 => "duplicate request, wait a minute",
        _ => "error",
    }
}

fn twilio_text(code: i64) -> String {
    match code {
        20003 => "Authenticate".into(),
        20429 => "Too Many Requests".into(),
        21211 => "The 'To' number is not a valid phone number.".into(),
        21212 => "The 'From' number is not a valid phone number.".into(),
        21408 => "Permission to send an SMS has not been enabled for the region".into(),
        21602 => "Message body is required.".into(),
        21606 => "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination/account.".into(),
        21610 => "Attempt to send to unsubscribed recipient".into(),
        21611 => "This 'From' number has exceeded the maximum number of queued messages".into(),
        21612 => "The 'To' phone number is not currently reachable via SMS".into(),
        21614 => "'To' number is not a valid mobile number".into(),
        _ => format!("Error {code}"),
    }
}

fn next_id(shared: &Shared) -> u64 {
    let mut s = shared.lock();
    s.counter += 1;
    s.counter
}

fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn status_of(shared: &Shared, provider: Provider, id: &str) -> Option<(String, Option<String>)> {
    let s = shared.lock();
    let raw = s.statuses.get(&(provider, id.to_owned()))?.clone();
    Some(match raw.split_once(':') {
        Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
        None => (raw, None),
    })
}

fn known(shared: &Shared, provider: Provider, id: &str) -> bool {
    shared
        .lock()
        .sent
        .iter()
        .any(|m| m.provider == provider && m.id == id)
}

fn record_sent(shared: &Shared, m: SentMessage) {
    shared.lock().sent.push(m);
}

fn smsru(shared: &Shared, path: &str, body: &[u8], recipient_error: Option<i64>) -> Response {
    let f = form(body);
    let authed = f.get("api_id").map(String::as_str) == Some(FakeSms::SMSRU_API_ID);
    if !authed {
        return provider_error(Provider::SmsRu, 200);
    }
    if path == "/sms/status" {
        let mut sms = serde_json::Map::new();
        for id in f
            .get("sms_id")
            .map(String::as_str)
            .unwrap_or_default()
            .split(',')
        {
            let id = id.trim();
            if id.is_empty() {
                continue;
            }
            let entry = match status_of(shared, Provider::SmsRu, id) {
                Some((code, _)) => {
                    let code: i64 = code.parse().unwrap_or(100);
                    json!({"status": "OK", "status_code": code, "cost": "3.50", "status_text": "status"})
                }
                None if known(shared, Provider::SmsRu, id) => {
                    json!({"status": "OK", "status_code": 100, "cost": 3.5})
                }
                None => {
                    json!({"status": "ERROR", "status_code": -1, "status_text": "Message not found"})
                }
            };
            sms.insert(id.to_owned(), entry);
        }
        return json_response(
            StatusCode::OK,
            json!({"status": "OK", "status_code": 100, "balance": 4122.56, "sms": sms}),
        );
    }
    let text = f.get("msg").cloned().unwrap_or_default();
    if text.trim().is_empty() {
        return provider_error(Provider::SmsRu, 203);
    }
    let mut sms = serde_json::Map::new();
    for to in f
        .get("to")
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
    {
        let to = to.trim();
        if to.is_empty() {
            continue;
        }
        let entry = match recipient_error {
            Some(code) => {
                json!({"status": "ERROR", "status_code": code, "status_text": smsru_text(code)})
            }
            None => {
                let id = format!("000000-{:08}", 10_000_000 + next_id(shared));
                record_sent(
                    shared,
                    SentMessage {
                        provider: Provider::SmsRu,
                        id: id.clone(),
                        to: to.to_owned(),
                        text: text.clone(),
                        sender: f.get("from").cloned(),
                        test: f.get("test").map(String::as_str) == Some("1"),
                    },
                );
                json!({"status": "OK", "status_code": 100, "sms_id": id, "cost": "3.50", "sms": 1})
            }
        };
        sms.insert(to.to_owned(), entry);
    }
    json_response(
        StatusCode::OK,
        json!({"status": "OK", "status_code": 100, "sms": sms, "balance": 4122.56}),
    )
}

fn smsc(shared: &Shared, path: &str, body: &[u8]) -> Response {
    let f = form(body);
    let authed = (f.get("login").map(String::as_str) == Some(FakeSms::SMSC_LOGIN)
        && f.get("psw").map(String::as_str) == Some(FakeSms::SMSC_PASSWORD))
        || f.get("apikey").map(String::as_str) == Some(FakeSms::SMSC_PASSWORD);
    if !authed {
        return provider_error(Provider::Smsc, 2);
    }
    if path == "/sys/status.php" {
        let id = f.get("id").cloned().unwrap_or_default();
        let phone = f.get("phone").cloned().unwrap_or_default();
        let key = format!("{id}:{phone}");
        return match status_of(shared, Provider::Smsc, &key) {
            Some((code, err)) => json_response(
                StatusCode::OK,
                json!({"status": code.parse::<i64>().unwrap_or(0),
                       "last_date": "21.11.2026 10:00:00", "last_timestamp": 1_794_000_000,
                       "err": err.and_then(|e| e.parse::<i64>().ok()).unwrap_or(0)}),
            ),
            None if known(shared, Provider::Smsc, &key) => json_response(
                StatusCode::OK,
                json!({"status": -1, "last_date": "21.11.2026 10:00:00", "last_timestamp": 1_794_000_000, "err": 0}),
            ),
            None => json_response(StatusCode::OK, json!({"status": -3, "err": 0})),
        };
    }
    let text = f.get("mes").cloned().unwrap_or_default();
    let phones = f.get("phones").cloned().unwrap_or_default();
    if text.trim().is_empty() || phones.trim().is_empty() {
        return provider_error(Provider::Smsc, 1);
    }
    let digits: String = phones.chars().filter(char::is_ascii_digit).collect();
    let id = next_id(shared);
    let cnt = messaging::text::sms::analyze(&text).segments;
    record_sent(
        shared,
        SentMessage {
            provider: Provider::Smsc,
            id: format!("{id}:{digits}"),
            to: phones,
            text,
            sender: f.get("sender").cloned(),
            test: false,
        },
    );
    let mut answer = json!({"id": id, "cnt": cnt});
    if f.contains_key("cost")
        && let Some(o) = answer.as_object_mut()
    {
        o.insert("cost".into(), json!(format!("{:.2}", 2.5 * cnt as f64)));
        o.insert("balance".into(), json!("1000.00"));
    }
    json_response(StatusCode::OK, answer)
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    use base64_decode as b64;
    let v = headers.get("authorization")?.to_str().ok()?;
    let encoded = v.strip_prefix("Basic ")?;
    let decoded = b64(encoded.trim())?;
    let s = String::from_utf8(decoded).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// A small standard base64 decoder (the test package has no base64 dependency).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    let bytes: Vec<u8> = s.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let n = chunk.len();
        if n < 2 {
            return None;
        }
        out.push((acc >> 16) as u8);
        if n > 2 {
            out.push((acc >> 8) as u8);
        }
        if n > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

fn smsaero(shared: &Shared, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let authed = basic_auth(headers)
        == Some((
            FakeSms::SMSAERO_EMAIL.to_owned(),
            FakeSms::SMSAERO_API_KEY.to_owned(),
        ));
    if !authed {
        return provider_error(Provider::SmsAero, 401);
    }
    let req: Value = serde_json::from_slice(body).unwrap_or_else(|_| {
        Value::Object(
            form(body)
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    });
    let test = path.contains("/test");
    if path.ends_with("status") {
        let id = match req.get("id") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let sent = shared
            .lock()
            .sent
            .iter()
            .find(|m| m.provider == Provider::SmsAero && m.id == id)
            .cloned();
        let Some(m) = sent else {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"success": false, "data": null, "message": "Not found"}),
            );
        };
        let code: i64 = status_of(shared, Provider::SmsAero, &id)
            .and_then(|(c, _)| c.parse().ok())
            .unwrap_or(0);
        let word = match code {
            0 => "queue",
            1 => "delivery",
            2 => "undelivered",
            3 => "transmitted",
            4 => "wait status",
            6 => "reject",
            8 => "moderation",
            _ => "unknown",
        };
        return json_response(
            StatusCode::OK,
            json!({"success": true, "message": null, "data": {
                "id": id.parse::<i64>().unwrap_or(0), "from": m.sender, "number": m.to, "text": m.text,
                "status": code, "extendStatus": word, "channel": "DIRECT", "cost": "2.20",
                "dateCreate": 1_794_000_000, "dateSend": 1_794_000_000, "dateAnswer": 1_794_000_060}}),
        );
    }
    let number = match req.get("number") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    if number.len() < 10 || !number.chars().all(|c| c.is_ascii_digit()) {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"success": false, "data": {"number": ["incorrect"]}, "message": "Validation error."}),
        );
    }
    let text = req
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if text.is_empty() {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"success": false, "data": {"text": ["required"]}, "message": "Validation error."}),
        );
    }
    let sign = req.get("sign").and_then(Value::as_str).map(str::to_owned);
    let id = next_id(shared);
    record_sent(
        shared,
        SentMessage {
            provider: Provider::SmsAero,
            id: id.to_string(),
            to: number.clone(),
            text: text.clone(),
            sender: sign.clone(),
            test,
        },
    );
    json_response(
        StatusCode::OK,
        json!({"success": true, "message": null, "data": {
            "id": id, "from": sign, "number": number, "text": text, "status": 0,
            "extendStatus": "queue", "channel": "DIRECT", "cost": 2.2,
            "dateCreate": 1_794_000_000, "dateSend": 1_794_000_000}}),
    )
}

fn twilio_resource(
    sid: &str,
    to: &str,
    from: Option<&str>,
    body: &str,
    status: &str,
    error_code: Option<i64>,
) -> Value {
    let segments = messaging::text::sms::analyze(body).segments;
    json!({
        "account_sid": FakeSms::TWILIO_ACCOUNT_SID, "api_version": "2010-04-01", "body": body,
        "date_created": "Sat, 21 Nov 2026 10:00:00 +0000", "date_sent": null,
        "date_updated": "Sat, 21 Nov 2026 10:00:01 +0000", "direction": "outbound-api",
        "error_code": error_code, "error_message": null, "from": from,
        "messaging_service_sid": null, "num_media": "0", "num_segments": segments.to_string(),
        "price": null, "price_unit": "USD", "sid": sid, "status": status, "subresource_uris": {},
        "to": to,
        "uri": format!("/2010-04-01/Accounts/{}/Messages/{sid}.json", FakeSms::TWILIO_ACCOUNT_SID),
    })
}

fn twilio(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let account_path = format!(
        "/2010-04-01/Accounts/{}/Messages",
        FakeSms::TWILIO_ACCOUNT_SID
    );
    let authed = basic_auth(headers)
        == Some((
            FakeSms::TWILIO_ACCOUNT_SID.to_owned(),
            FakeSms::TWILIO_AUTH_TOKEN.to_owned(),
        ));
    if !authed || !path.starts_with(&account_path) {
        return provider_error(Provider::Twilio, 20003);
    }
    if method == Method::GET {
        let sid = path
            .strip_prefix(&format!("{account_path}/"))
            .and_then(|s| s.strip_suffix(".json"))
            .unwrap_or_default();
        let sent = shared
            .lock()
            .sent
            .iter()
            .find(|m| m.provider == Provider::Twilio && m.id == sid)
            .cloned();
        let Some(m) = sent else {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"code": 20404, "message": format!("The requested resource {path} was not found"),
                       "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}),
            );
        };
        let (status, err) =
            status_of(shared, Provider::Twilio, sid).unwrap_or_else(|| ("queued".to_owned(), None));
        let err = err.and_then(|e| e.parse().ok());
        return json_response(
            StatusCode::OK,
            twilio_resource(sid, &m.to, m.sender.as_deref(), &m.text, &status, err),
        );
    }
    if path != format!("{account_path}.json") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let f = form(body);
    let to = f.get("To").cloned().unwrap_or_default();
    let from = f
        .get("From")
        .or_else(|| f.get("MessagingServiceSid"))
        .cloned();
    let text = f.get("Body").cloned().unwrap_or_default();
    let magic = match (from.as_deref(), to.as_str()) {
        (Some("+15005550001"), _) => Some(21212),
        (Some("+15005550007"), _) => Some(21606),
        (Some("+15005550008"), _) => Some(21611),
        (_, "+15005550001") => Some(21211),
        (_, "+15005550002") => Some(21612),
        (_, "+15005550003") => Some(21408),
        (_, "+15005550004") => Some(21610),
        (_, "+15005550009") => Some(21614),
        _ => None,
    };
    if let Some(code) = magic {
        return provider_error(Provider::Twilio, code);
    }
    if !to.starts_with('+') {
        return provider_error(Provider::Twilio, 21211);
    }
    if text.is_empty() {
        return provider_error(Provider::Twilio, 21602);
    }
    let sid = format!("SM{:032x}", next_id(shared));
    record_sent(
        shared,
        SentMessage {
            provider: Provider::Twilio,
            id: sid.clone(),
            to: to.clone(),
            text: text.clone(),
            sender: from.clone(),
            test: false,
        },
    );
    json_response(
        StatusCode::CREATED,
        twilio_resource(&sid, &to, from.as_deref(), &text, "queued", None),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decoder() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("!!!!").is_none());
    }
}
