//! A fake Telegram Bot API server: one axum server on `127.0.0.1:0` serving
//! `/bot<TOKEN>/<method>` and the test environment's `/bot<TOKEN>/test/<method>`, answering with
//! the real envelope (`{"ok":true,"result":...}` / `{"ok":false,"error_code":..,"description":..}`).
//!
//! - every request is recorded ([`FakeTelegram::requests`], [`FakeTelegram::calls`]) with its
//!   parameters merged from the query string and a JSON or form body;
//! - `sendMessage`, `sendPhoto`, `sendDocument`, `getMe`, `getUpdates`, `setWebhook`,
//!   `deleteWebhook` and `answerCallbackQuery` are served; other methods answer 404 as the real
//!   server does; a wrong token answers 401;
//! - failures can be scripted per method ([`FakeTelegram::fail_next`]): 403 blocked, 403
//!   deactivated, 403 cannot initiate, 400 chat not found, 400 group migrated, 429 with
//!   `retry_after` (body and `Retry-After` header), 401, any 5xx, a raw answer, or a delay;
//!   chats can be marked blocked ([`FakeTelegram::block_chat`]) or unknown
//!   ([`FakeTelegram::forget_chat`]);
//! - `getUpdates` serves a queue ([`FakeTelegram::push_update`]) with Telegram's offset
//!   semantics (an offset confirms every update below it) and long-poll waiting, one queue per
//!   environment;
//! - rate limits can be enforced ([`FakeTelegram::rate_limit`]): messages per second per bot and
//!   a minimum interval per chat, answering the real 429 body.
//!
//! ```no_run
//! # async fn run() {
//! use messaging_tests::telegram::{FakeTelegram, Failure};
//! let fake = FakeTelegram::start().await;
//! // TelegramChannel::builder("tg", FakeTelegram::TOKEN).base_url(fake.url())
//! fake.fail_next("sendMessage", Failure::Blocked);
//! # }
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

/// The bot id the fake reports in `getMe` and as the sender of messages.
pub const BOT_ID: i64 = 7_000_000_001;
/// The bot username the fake reports.
pub const BOT_USERNAME: &str = "fake_clinic_bot";

/// A scripted failure for the next call of a method.
#[derive(Clone, Debug)]
pub enum Failure {
    /// 403 `Forbidden: bot was blocked by the user`.
    Blocked,
    /// 403 `Forbidden: user is deactivated`.
    Deactivated,
    /// 403 `Forbidden: bot can't initiate conversation with a user`.
    CantInitiate,
    /// 400 `Bad Request: chat not found`.
    ChatNotFound,
    /// 400 `Bad Request: group chat was upgraded to a supergroup chat` with `migrate_to_chat_id`.
    Migrated(i64),
    /// 429 `Too Many Requests: retry after N` with `parameters.retry_after` and `Retry-After`.
    TooManyRequests(u64),
    /// 401 `Unauthorized`.
    Unauthorized,
    /// A 5xx with the server's JSON body (`Internal Server Error` for 500).
    ServerError(u16),
    /// Any status with any body (for proxies answering HTML, bodies without `error_code`, ...).
    Raw {
        /// HTTP status.
        status: u16,
        /// Body, sent as is.
        body: String,
        /// A `Retry-After` header, if any.
        retry_after_header: Option<String>,
    },
    /// Wait this long, then answer normally (to trigger client timeouts).
    Delay(Duration),
}

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The Bot API method as called (case kept).
    pub method: String,
    /// The token in the path.
    pub token: String,
    /// Whether the call used the test environment (`/bot<token>/test/<method>`).
    pub test_env: bool,
    /// HTTP method.
    pub http_method: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
    /// Parameters merged from the query string and the body.
    pub params: Value,
}

/// A message the fake accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct SentMessage {
    /// The method (`sendMessage`, `sendPhoto`, `sendDocument`).
    pub method: String,
    /// The chat.
    pub chat_id: i64,
    /// The id it was given.
    pub message_id: i64,
    /// The text or caption.
    pub text: Option<String>,
    /// The `reply_markup`, if any.
    pub reply_markup: Option<Value>,
    /// Whether it was sent in the test environment.
    pub test_env: bool,
    /// When it was accepted.
    pub at: Instant,
}

/// Rate limits the fake enforces on send methods, answering the real 429 body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeRateLimits {
    /// Messages per second across all chats (0: no limit).
    pub per_bot_per_second: usize,
    /// Shortest interval between two messages to one chat (zero: no limit).
    pub per_chat_interval: Duration,
}

impl Default for FakeRateLimits {
    /// Telegram's published figures: 30 messages per second, one per second per chat.
    fn default() -> Self {
        FakeRateLimits {
            per_bot_per_second: 30,
            per_chat_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Default)]
struct Inner {
    token: String,
    requests: Vec<Recorded>,
    sent: Vec<SentMessage>,
    failures: HashMap<String, VecDeque<Failure>>,
    blocked: HashSet<i64>,
    unknown: HashSet<i64>,
    message_ids: HashMap<i64, i64>,
    updates: HashMap<bool, VecDeque<Value>>,
    next_update_id: i64,
    long_poll_cap: Option<Duration>,
    limits: Option<FakeRateLimits>,
    bot_hits: VecDeque<Instant>,
    chat_last: HashMap<i64, Instant>,
    rate_limited: usize,
    webhook: Option<String>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<tokio::sync::Notify>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not wedge the other tests' server.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running fake server. Dropping it stops the server.
pub struct FakeTelegram {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTelegram")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTelegram {
    /// The token the fake accepts when started with [`FakeTelegram::start`].
    pub const TOKEN: &'static str = "123456789:AAFakeTokenForTests_do-not-leak";

    /// Starts the server on a random loopback port, accepting [`FakeTelegram::TOKEN`].
    pub async fn start() -> FakeTelegram {
        Self::start_with_token(Self::TOKEN).await
    }

    /// Starts the server accepting `token`.
    pub async fn start_with_token(token: &str) -> FakeTelegram {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                token: token.to_owned(),
                next_update_id: 100_000,
                ..Inner::default()
            })),
            notify: Arc::new(tokio::sync::Notify::new()),
        };
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTelegram { addr, shared, task }
    }

    /// The base URL to configure the client with (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// The requests to one method (case-insensitive).
    pub fn calls(&self, method: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method))
            .collect()
    }

    /// Every message accepted so far.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.shared.lock().sent.clone()
    }

    /// Scripts a failure for the next call of `method` (`"*"`: of any method). Failures queue up.
    pub fn fail_next(&self, method: &str, failure: Failure) {
        self.shared
            .lock()
            .failures
            .entry(method.to_ascii_lowercase())
            .or_default()
            .push_back(failure);
    }

    /// Every send to `chat_id` answers 403 `bot was blocked by the user` until unblocked.
    pub fn block_chat(&self, chat_id: i64) {
        self.shared.lock().blocked.insert(chat_id);
    }

    /// Lifts [`FakeTelegram::block_chat`].
    pub fn unblock_chat(&self, chat_id: i64) {
        self.shared.lock().blocked.remove(&chat_id);
    }

    /// Every send to `chat_id` answers 400 `chat not found`.
    pub fn forget_chat(&self, chat_id: i64) {
        self.shared.lock().unknown.insert(chat_id);
    }

    /// Enforces rate limits on send methods (`None`: off, the default).
    pub fn rate_limit(&self, limits: Option<FakeRateLimits>) {
        let mut g = self.shared.lock();
        g.limits = limits;
        g.bot_hits.clear();
        g.chat_last.clear();
    }

    /// How many 429s the rate limiter has answered.
    pub fn rate_limited_count(&self) -> usize {
        self.shared.lock().rate_limited
    }

    /// Caps how long `getUpdates` waits for updates, whatever `timeout` asks (default: no cap
    /// beyond Telegram's 50 s).
    pub fn long_poll_cap(&self, cap: Duration) {
        self.shared.lock().long_poll_cap = Some(cap);
    }

    /// Queues an update for `getUpdates` in the production environment; an `update_id` is
    /// assigned when the update has none. Returns the update id.
    pub fn push_update(&self, update: Value) -> i64 {
        self.push_update_in(false, update)
    }

    /// Queues an update for `getUpdates` in the given environment (`true`: test environment).
    pub fn push_update_in(&self, test_env: bool, mut update: Value) -> i64 {
        let id = {
            let mut g = self.shared.lock();
            let id = match update.get("update_id").and_then(Value::as_i64) {
                Some(id) => id,
                None => {
                    let id = g.next_update_id;
                    update["update_id"] = json!(id);
                    id
                }
            };
            g.next_update_id = g.next_update_id.max(id + 1);
            g.updates.entry(test_env).or_default().push_back(update);
            id
        };
        self.shared.notify.notify_waiters();
        id
    }

    /// Queues a private text message from `chat_id` (a person) and returns its update id.
    pub fn push_text(&self, chat_id: i64, text: &str) -> i64 {
        self.push_update(json!({
            "message": {
                "message_id": 1,
                "from": {"id": chat_id, "is_bot": false, "first_name": "Ivan"},
                "chat": {"id": chat_id, "first_name": "Ivan", "type": "private"},
                "date": 1767225600,
                "text": text,
            }
        }))
    }

    /// Updates still queued (not yet confirmed by an offset) in the production environment.
    pub fn pending_updates(&self) -> usize {
        self.shared
            .lock()
            .updates
            .get(&false)
            .map_or(0, VecDeque::len)
    }

    /// The URL set with `setWebhook`, if any.
    pub fn webhook(&self) -> Option<String> {
        self.shared.lock().webhook.clone()
    }
}

fn ok(result: Value) -> Response {
    json_response(StatusCode::OK, &json!({"ok": true, "result": result}), None)
}

fn err(status: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    let mut retry = None;
    if let Some(p) = parameters {
        retry = p
            .get("retry_after")
            .and_then(Value::as_u64)
            .map(|r| r.to_string());
        body["parameters"] = p;
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &body, retry)
}

fn json_response(status: StatusCode, body: &Value, retry_after: Option<String>) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(r) = retry_after {
        b = b.header("retry-after", r);
    }
    b.body(Body::from(body.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn too_many(retry_after: u64) -> Response {
    err(
        429,
        &format!("Too Many Requests: retry after {retry_after}"),
        Some(json!({"retry_after": retry_after})),
    )
}

fn failure_response(f: &Failure) -> Response {
    match f {
        Failure::Blocked => err(403, "Forbidden: bot was blocked by the user", None),
        Failure::Deactivated => err(403, "Forbidden: user is deactivated", None),
        Failure::CantInitiate => err(
            403,
            "Forbidden: bot can't initiate conversation with a user",
            None,
        ),
        Failure::ChatNotFound => err(400, "Bad Request: chat not found", None),
        Failure::Migrated(id) => err(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            Some(json!({"migrate_to_chat_id": id})),
        ),
        Failure::TooManyRequests(n) => too_many(*n),
        Failure::Unauthorized => err(401, "Unauthorized", None),
        Failure::ServerError(s) => {
            let desc = match s {
                500 => "Internal Server Error",
                502 => "Bad Gateway",
                503 => "Service Unavailable",
                504 => "Gateway Timeout",
                _ => "Server Error",
            };
            err(*s, desc, None)
        }
        Failure::Raw {
            status,
            body,
            retry_after_header,
        } => {
            let mut b = Response::builder()
                .status(StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
            if let Some(r) = retry_after_header {
                b = b.header("retry-after", r.as_str());
            }
            b.body(Body::from(body.clone()))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Failure::Delay(_) => err(500, "Internal Server Error", None),
    }
}

/// Splits `/bot<token>/[test/]<method>`.
fn route(path: &str) -> Option<(String, bool, String)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let token = segs.first()?.strip_prefix("bot")?.to_owned();
    match segs.as_slice() {
        [_, method] if !method.is_empty() => Some((token, false, (*method).to_owned())),
        [_, "test", method] if !method.is_empty() => Some((token, true, (*method).to_owned())),
        _ => None,
    }
}

fn params(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(q) = uri.query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            out.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json {
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
            out.extend(m);
        }
    } else {
        for (k, v) in form_urlencoded::parse(body) {
            // Form fields holding JSON (reply_markup) are decoded as the server does.
            let value = serde_json::from_str::<Value>(&v)
                .ok()
                .filter(|j| j.is_object() || j.is_array())
                .unwrap_or_else(|| Value::String(v.into_owned()));
            out.insert(k.into_owned(), value);
        }
    }
    Value::Object(out)
}

fn int_param(p: &Value, name: &str) -> Option<i64> {
    match p.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((token, test_env, api_method)) = route(uri.path()) else {
        return err(404, "Not Found", None);
    };
    let p = params(&uri, &headers, &body);
    let failure = {
        let mut g = shared.lock();
        g.requests.push(Recorded {
            method: api_method.clone(),
            token: token.clone(),
            test_env,
            http_method: method.to_string(),
            headers: headers.clone(),
            body: body.clone(),
            params: p.clone(),
        });
        if token != g.token {
            return err(401, "Unauthorized", None);
        }
        let key = api_method.to_ascii_lowercase();
        let mut f = g.failures.get_mut(&key).and_then(VecDeque::pop_front);
        if f.is_none() {
            f = g.failures.get_mut("*").and_then(VecDeque::pop_front);
        }
        f
    };
    match failure {
        Some(Failure::Delay(d)) => tokio::time::sleep(d).await,
        Some(f) => return failure_response(&f),
        None => {}
    }
    match api_method.to_ascii_lowercase().as_str() {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Fake Clinic Bot",
            "username": BOT_USERNAME, "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false
        })),
        "sendmessage" => send(&shared, "sendMessage", test_env, &p),
        "sendphoto" => send(&shared, "sendPhoto", test_env, &p),
        "senddocument" => send(&shared, "sendDocument", test_env, &p),
        "getupdates" => get_updates(&shared, test_env, &p).await,
        "setwebhook" => {
            let url = p
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            shared.lock().webhook = (!url.is_empty()).then_some(url);
            json_response(
                StatusCode::OK,
                &json!({"ok": true, "result": true, "description": "Webhook was set"}),
                None,
            )
        }
        "deletewebhook" => {
            shared.lock().webhook = None;
            json_response(
                StatusCode::OK,
                &json!({"ok": true, "result": true, "description": "Webhook was deleted"}),
                None,
            )
        }
        "answercallbackquery" => {
            if p.get("callback_query_id").is_none() {
                return err(400, "Bad Request: query_id is empty", None);
            }
            ok(json!(true))
        }
        _ => err(404, "Not Found", None),
    }
}

fn send(shared: &Shared, method: &str, test_env: bool, p: &Value) -> Response {
    let Some(chat_id) = int_param(p, "chat_id") else {
        return err(400, "Bad Request: chat_id is empty", None);
    };
    let (text, media_field) = match method {
        "sendMessage" => (p.get("text").and_then(Value::as_str), None),
        "sendPhoto" => (p.get("caption").and_then(Value::as_str), Some("photo")),
        _ => (p.get("caption").and_then(Value::as_str), Some("document")),
    };
    match media_field {
        None => {
            let Some(t) = text.filter(|t| !t.trim().is_empty()) else {
                return err(400, "Bad Request: message text is empty", None);
            };
            if t.encode_utf16().count() > 4096 {
                return err(400, "Bad Request: message is too long", None);
            }
        }
        Some(field) => {
            if p.get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return err(
                    400,
                    &format!("Bad Request: there is no {field} in the request"),
                    None,
                );
            }
            if text.is_some_and(|t| t.encode_utf16().count() > 1024) {
                return err(400, "Bad Request: message caption is too long", None);
            }
        }
    }
    let mut g = shared.lock();
    if g.blocked.contains(&chat_id) {
        return err(403, "Forbidden: bot was blocked by the user", None);
    }
    if g.unknown.contains(&chat_id) {
        return err(400, "Bad Request: chat not found", None);
    }
    if let Some(limits) = g.limits {
        let now = Instant::now();
        if !limits.per_chat_interval.is_zero()
            && let Some(last) = g.chat_last.get(&chat_id).copied()
        {
            let since = now.duration_since(last);
            if since < limits.per_chat_interval {
                let wait = (limits.per_chat_interval - since)
                    .as_secs_f64()
                    .ceil()
                    .max(1.0);
                g.rate_limited += 1;
                return too_many(wait as u64);
            }
        }
        if limits.per_bot_per_second > 0 {
            while g
                .bot_hits
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                g.bot_hits.pop_front();
            }
            if g.bot_hits.len() >= limits.per_bot_per_second {
                g.rate_limited += 1;
                return too_many(1);
            }
            g.bot_hits.push_back(now);
        }
        g.chat_last.insert(chat_id, now);
    }
    let next = g.message_ids.entry(chat_id).or_insert(0);
    *next += 1;
    let message_id = *next;
    let reply_markup = p.get("reply_markup").cloned().and_then(|m| match m {
        Value::String(s) => serde_json::from_str(&s).ok(),
        other => Some(other),
    });
    g.sent.push(SentMessage {
        method: method.to_owned(),
        chat_id,
        message_id,
        text: text.map(str::to_owned),
        reply_markup: reply_markup.clone(),
        test_env,
        at: Instant::now(),
    });
    drop(g);
    let chat_type = if chat_id < 0 { "supergroup" } else { "private" };
    let mut result = json!({
        "message_id": message_id,
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "Fake Clinic Bot", "username": BOT_USERNAME},
        "chat": {"id": chat_id, "first_name": "Ivan", "type": chat_type},
        "date": now_secs(),
    });
    match method {
        "sendMessage" => result["text"] = json!(text),
        "sendPhoto" => {
            result["photo"] = json!([{"file_id": "AgACAgIAAx0", "file_unique_id": "AQAD", "width": 90, "height": 90, "file_size": 1000}]);
            if let Some(t) = text {
                result["caption"] = json!(t);
            }
        }
        _ => {
            result["document"] = json!({"file_id": "BQACAgIAAx0", "file_unique_id": "AgAD", "file_name": "file.pdf"});
            if let Some(t) = text {
                result["caption"] = json!(t);
            }
        }
    }
    if let Some(m) = reply_markup.filter(|m| m.get("inline_keyboard").is_some()) {
        result["reply_markup"] = m;
    }
    ok(result)
}

async fn get_updates(shared: &Shared, test_env: bool, p: &Value) -> Response {
    let offset = int_param(p, "offset");
    let limit = int_param(p, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(int_param(p, "timeout").unwrap_or(0).clamp(0, 50) as u64);
    let deadline = {
        let g = shared.lock();
        if g.webhook.is_some() {
            return err(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                None,
            );
        }
        tokio::time::Instant::now() + g.long_poll_cap.map_or(timeout, |c| c.min(timeout))
    };
    loop {
        let notified = shared.notify.notified();
        {
            let mut g = shared.lock();
            let queue = g.updates.entry(test_env).or_default();
            if let Some(o) = offset {
                // An offset confirms every update below it: they are gone for good.
                queue.retain(|u| {
                    u.get("update_id")
                        .and_then(Value::as_i64)
                        .is_some_and(|id| id >= o)
                });
            }
            if !queue.is_empty() {
                let batch: Vec<Value> = queue.iter().take(limit).cloned().collect();
                return ok(Value::Array(batch));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return ok(json!([]));
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/bot1:A/sendMessage"),
            Some(("1:A".into(), false, "sendMessage".into()))
        );
        assert_eq!(
            route("/bot1:A/test/getMe"),
            Some(("1:A".into(), true, "getMe".into()))
        );
        assert_eq!(route("/1:A/getMe"), None);
        assert_eq!(route("/bot1:A/"), None);
        assert_eq!(route("/bot1:A/a/b/c"), None);
    }
}
