//! A fake Max Bot API server: one axum server on `127.0.0.1:0` answering with Max's real bodies
//! (`{"message": Message}`, `{"success": true}`, `{"updates": [...], "marker": n}` and errors
//! `{"code": "...", "message": "..."}`).
//!
//! - `GET /me`, `POST /messages?user_id=|chat_id=`, `GET /updates`, `POST|GET|DELETE
//!   /subscriptions` are served; anything else answers 404 `{"code":"not.found",...}`;
//! - the `Authorization` header must be the raw token ([`FakeMax::TOKEN`], no `Bearer`); a token
//!   in the query (`access_token=`) or a wrong or missing header answers 401 `verify.token`;
//! - every request is recorded ([`FakeMax::requests`]) with its query, `Authorization` header,
//!   body and the status it got;
//! - failures can be scripted per endpoint ([`FakeMax::fail_next`]); users can be marked as having
//!   stopped the bot ([`FakeMax::block_user`]: 403 `chat.denied` / `error.dialog.suspended`);
//! - `POST /messages` checks what the real server checks: exactly one of `user_id` / `chat_id`,
//!   a JSON body, text of at most 4000 characters, `format` of `markdown`/`html`, known button
//!   types (400 `proto.payload` otherwise; the exact real wording is unconfirmed);
//! - `GET /updates` serves a queue ([`FakeMax::push_update`]) with marker semantics: a `marker`
//!   acknowledges every update before it, the answer's `marker` is the one to send next; with no
//!   marker it continues after the last acknowledged update; it waits up to `timeout` seconds
//!   for new updates;
//! - a rate limit is enforced (30 requests per second by default, as Max documents;
//!   [`FakeMax::set_rate_limit`]), answering 429 `too.many.requests` with the observed body, and
//!   a `Retry-After` header only when configured ([`FakeMax::set_retry_after`]).
//!
//! ```no_run
//! # async fn run() {
//! use messaging_tests::max::{FakeMax, Failure};
//! let fake = FakeMax::start().await;
//! // MaxBot::builder(FakeMax::TOKEN).base_url(fake.url()).build()
//! fake.fail_next("POST /messages", Failure::ChatDenied);
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

/// The bot's user id in `GET /me` and as the sender of sent messages.
pub const BOT_ID: i64 = 9_100_000_001;
/// The bot's nick.
pub const BOT_USERNAME: &str = "id7700000000_bot";
/// The first marker the fake hands out (markers are `MARKER_BASE + position`).
pub const MARKER_BASE: i64 = 25_493_970;

/// A scripted failure for the next call of an endpoint.
#[derive(Clone, Debug)]
pub enum Failure {
    /// 401 `verify.token` / `Invalid access_token`.
    InvalidToken,
    /// 403 `chat.denied` / `Key: error.dialog.suspended, args: [<id>,].`
    ChatDenied,
    /// 404 `chat.not.found`.
    ChatNotFound,
    /// 400 `attachment.not.ready`.
    AttachmentNotReady,
    /// 429 `too.many.requests`, with a `Retry-After` header when given.
    TooManyRequests(Option<u64>),
    /// A 5xx with a plain-text body.
    ServerError(u16),
    /// Any status and raw body.
    Raw(u16, String),
    /// Waits, then serves the request normally.
    Delay(Duration),
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `DELETE`.
    pub method: String,
    /// The path (`/messages`).
    pub path: String,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    /// The raw query string.
    pub raw_query: Option<String>,
    /// The body as JSON, when it was JSON.
    pub body: Option<Value>,
    /// The status the fake answered with.
    pub status: u16,
}

#[derive(Debug)]
struct Inner {
    token: String,
    requests: Vec<RecordedRequest>,
    failures: HashMap<String, VecDeque<Failure>>,
    blocked_users: HashSet<i64>,
    blocked_chats: HashSet<i64>,
    updates: Vec<Value>,
    acked: usize,
    subscriptions: Vec<Value>,
    rate_limit: Option<u32>,
    retry_after: Option<u64>,
    window: VecDeque<Instant>,
    next_seq: u64,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    new_update: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake Max server; stops when dropped.
#[derive(Debug)]
pub struct FakeMax {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeMax {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeMax {
    /// The token the fake accepts.
    pub const TOKEN: &'static str = "max-fake-token-5f2a9c";

    /// Starts a fake on a random loopback port.
    pub async fn start() -> FakeMax {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                token: Self::TOKEN.to_owned(),
                requests: Vec::new(),
                failures: HashMap::new(),
                blocked_users: HashSet::new(),
                blocked_chats: HashSet::new(),
                updates: Vec::new(),
                acked: 0,
                subscriptions: Vec::new(),
                rate_limit: Some(30),
                retry_after: None,
                window: VecDeque::new(),
                next_seq: 116_043_270_574_650_336,
            }),
            new_update: tokio::sync::Notify::new(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeMax { addr, shared, task }
    }

    /// The base URL to configure (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Requests to one endpoint (`"POST /messages"`).
    pub fn requests_to(&self, endpoint: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| format!("{} {}", r.method, r.path) == endpoint)
            .collect()
    }

    /// Bodies of the messages the fake accepted (status 200).
    pub fn sent_messages(&self) -> Vec<RecordedRequest> {
        self.requests_to("POST /messages")
            .into_iter()
            .filter(|r| r.status == 200)
            .collect()
    }

    /// Scripts a failure for the next call of `endpoint` (`"POST /messages"`, `"GET /updates"`).
    pub fn fail_next(&self, endpoint: &str, failure: Failure) {
        self.shared
            .lock()
            .failures
            .entry(endpoint.to_owned())
            .or_default()
            .push_back(failure);
    }

    /// Marks a user as having stopped the bot: sends to them answer 403 `chat.denied`.
    pub fn block_user(&self, user_id: i64) {
        self.shared.lock().blocked_users.insert(user_id);
    }

    /// Marks a chat the bot may not write to: sends answer 403 `chat.denied`.
    pub fn block_chat(&self, chat_id: i64) {
        self.shared.lock().blocked_chats.insert(chat_id);
    }

    /// Queues an update for `GET /updates` (wakes a waiting long poll).
    pub fn push_update(&self, update: Value) {
        self.shared.lock().updates.push(update);
        self.shared.new_update.notify_waiters();
    }

    /// How many updates have been acknowledged by a marker.
    pub fn acked(&self) -> usize {
        self.shared.lock().acked
    }

    /// The active webhook subscriptions (`{url, time, update_types, secret}`).
    pub fn subscriptions(&self) -> Vec<Value> {
        self.shared.lock().subscriptions.clone()
    }

    /// Sets the enforced rate limit in requests per second (`None`: no limit).
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        let mut s = self.shared.lock();
        s.rate_limit = per_second;
        s.window.clear();
    }

    /// Sets the `Retry-After` seconds sent with rate-limit answers (`None`: no header, the
    /// default, since whether Max sends it is unconfirmed).
    pub fn set_retry_after(&self, seconds: Option<u64>) {
        self.shared.lock().retry_after = seconds;
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn error(status: u16, code: &str, message: &str) -> Response {
    reply(status, json!({"code": code, "message": message}), None)
}

fn reply(status: u16, body: Value, retry_after: Option<u64>) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json; charset=utf-8");
    if let Some(s) = retry_after {
        b = b.header("retry-after", s.to_string());
    }
    b.body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn failure_response(f: &Failure) -> Option<Response> {
    Some(match f {
        Failure::InvalidToken => error(401, "verify.token", "Invalid access_token"),
        Failure::ChatDenied => error(
            403,
            "chat.denied",
            "Key: error.dialog.suspended, args: [0,].",
        ),
        Failure::ChatNotFound => error(404, "chat.not.found", "Chat not found"),
        Failure::AttachmentNotReady => error(
            400,
            "attachment.not.ready",
            "Key: errors.process.attachment.file.not.processed",
        ),
        Failure::TooManyRequests(after) => reply(
            429,
            json!({"code": "too.many.requests", "message": "Too many requests. Limit is: 30 calls per second."}),
            *after,
        ),
        Failure::ServerError(status) => Response::builder()
            .status(StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header("content-type", "text/plain")
            .body(Body::from("Internal Server Error"))
            .unwrap_or_else(|_| Response::new(Body::empty())),
        Failure::Raw(status, body) => Response::builder()
            .status(StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .body(Body::from(body.clone()))
            .unwrap_or_else(|_| Response::new(Body::empty())),
        Failure::Delay(_) => return None,
    })
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query: BTreeMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json_body: Option<Value> = serde_json::from_slice(&body).ok();
    let endpoint = format!("{method} {path}");

    let (response, status) = {
        let r = route(
            &shared,
            &method,
            &path,
            &endpoint,
            &query,
            &authorization,
            &body,
        )
        .await;
        let status = r.status().as_u16();
        (r, status)
    };
    shared.lock().requests.push(RecordedRequest {
        method: method.to_string(),
        path,
        query,
        authorization,
        raw_query: uri.query().map(str::to_owned),
        body: json_body,
        status,
    });
    response
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    endpoint: &str,
    query: &BTreeMap<String, String>,
    authorization: &Option<String>,
    body: &Bytes,
) -> Response {
    // Authorization first: the raw token in the header, never in the query.
    {
        let s = shared.lock();
        if query.contains_key("access_token") || authorization.as_deref() != Some(s.token.as_str())
        {
            return error(401, "verify.token", "Invalid access_token");
        }
    }
    // Rate limit over a one-second window of accepted requests.
    {
        let mut s = shared.lock();
        if let Some(limit) = s.rate_limit {
            let now = Instant::now();
            while s
                .window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                s.window.pop_front();
            }
            if s.window.len() >= limit as usize {
                let after = s.retry_after;
                return reply(
                    429,
                    json!({"code": "too.many.requests",
                           "message": format!("Too many requests. Limit is: {limit} calls per second.")}),
                    after,
                );
            }
            s.window.push_back(now);
        }
    }
    // Scripted failures.
    let scripted = shared
        .lock()
        .failures
        .get_mut(endpoint)
        .and_then(VecDeque::pop_front);
    if let Some(f) = scripted {
        if let Failure::Delay(d) = f {
            tokio::time::sleep(d).await;
        } else if let Some(r) = failure_response(&f) {
            return r;
        }
    }
    match (method.as_str(), path) {
        ("GET", "/me") => reply(
            200,
            json!({"user_id": BOT_ID, "first_name": "Clinic", "username": BOT_USERNAME,
                   "is_bot": true, "last_activity_time": now_ms(), "name": "Clinic"}),
            None,
        ),
        ("POST", "/messages") => send_message(shared, query, body),
        ("GET", "/updates") => get_updates(shared, query).await,
        ("POST", "/subscriptions") => subscribe(shared, body),
        ("GET", "/subscriptions") => {
            let subs: Vec<Value> = shared
                .lock()
                .subscriptions
                .iter()
                .map(|s| json!({"url": s["url"], "time": s["time"], "update_types": s["update_types"]}))
                .collect();
            reply(200, json!({"subscriptions": subs}), None)
        }
        ("DELETE", "/subscriptions") => {
            let Some(url) = query.get("url") else {
                return error(400, "proto.payload", "url is required");
            };
            shared.lock().subscriptions.retain(|s| s["url"] != *url);
            reply(200, json!({"success": true}), None)
        }
        _ => error(404, "not.found", "Path not found"),
    }
}

const BUTTON_TYPES: &[&str] = &[
    "callback",
    "link",
    "request_contact",
    "request_geo_location",
    "open_app",
    "message",
    "chat",
];

fn send_message(shared: &Arc<Shared>, query: &BTreeMap<String, String>, body: &Bytes) -> Response {
    let parse = |k: &str| query.get(k).map(|v| v.parse::<i64>());
    let (user_id, chat_id) = match (parse("user_id"), parse("chat_id")) {
        (Some(Ok(u)), None) => (Some(u), None),
        (None, Some(Ok(c))) => (None, Some(c)),
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            return error(400, "proto.payload", "user_id and chat_id must be integers");
        }
        _ => {
            return error(
                400,
                "proto.payload",
                "exactly one of user_id and chat_id is required",
            );
        }
    };
    let Ok(msg) = serde_json::from_slice::<Value>(body) else {
        return error(400, "proto.payload", "Cannot parse request body");
    };
    let text = msg.get("text").and_then(Value::as_str).unwrap_or("");
    if text.chars().count() > 4000 {
        return error(
            400,
            "proto.payload",
            "text: size must be between 0 and 4000",
        );
    }
    if let Some(f) = msg.get("format").filter(|f| !f.is_null())
        && !matches!(f.as_str(), Some("markdown" | "html"))
    {
        return error(400, "proto.payload", "format must be markdown or html");
    }
    let attachments = msg
        .get("attachments")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for a in &attachments {
        if a["type"] != "inline_keyboard" {
            continue;
        }
        let Some(rows) = a["payload"]["buttons"].as_array() else {
            return error(
                400,
                "proto.payload",
                "inline_keyboard needs payload.buttons",
            );
        };
        for b in rows
            .iter()
            .flat_map(|r| r.as_array().cloned().unwrap_or_default())
        {
            let kind = b["type"].as_str().unwrap_or("");
            if !BUTTON_TYPES.contains(&kind) || b["text"].as_str().is_none_or(str::is_empty) {
                return error(400, "proto.payload", "invalid button");
            }
        }
    }
    let mut s = shared.lock();
    let denied = user_id.is_some_and(|u| s.blocked_users.contains(&u))
        || chat_id.is_some_and(|c| s.blocked_chats.contains(&c));
    if denied {
        let id = user_id.or(chat_id).unwrap_or_default();
        return error(
            403,
            "chat.denied",
            &format!("Key: error.dialog.suspended, args: [{id},]."),
        );
    }
    s.next_seq += 1;
    let seq = s.next_seq;
    let recipient = match (user_id, chat_id) {
        (Some(u), _) => json!({"chat_id": 182_182_182, "chat_type": "dialog", "user_id": u}),
        (_, Some(c)) => json!({"chat_id": c, "chat_type": if c < 0 { "chat" } else { "dialog" }}),
        _ => json!({}),
    };
    let mut body = json!({"mid": format!("mid.{seq:032x}"), "seq": seq, "text": text});
    if !attachments.is_empty() {
        body["attachments"] = Value::Array(attachments);
    }
    reply(
        200,
        json!({"message": {
            "sender": {"user_id": BOT_ID, "first_name": "Clinic", "username": BOT_USERNAME,
                       "is_bot": true, "last_activity_time": now_ms(), "name": "Clinic"},
            "recipient": recipient,
            "timestamp": now_ms(),
            "body": body}}),
        None,
    )
}

async fn get_updates(shared: &Arc<Shared>, query: &BTreeMap<String, String>) -> Response {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let timeout = query
        .get("timeout")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(30)
        .min(90);
    if let Some(m) = query.get("marker") {
        let Ok(m) = m.parse::<i64>() else {
            return error(400, "proto.payload", "marker must be an integer");
        };
        let mut s = shared.lock();
        let pos = usize::try_from(m.saturating_sub(MARKER_BASE)).unwrap_or(0);
        s.acked = s.acked.max(pos.min(s.updates.len()));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = shared.new_update.notified();
        {
            let s = shared.lock();
            if s.updates.len() > s.acked || tokio::time::Instant::now() >= deadline {
                let end = (s.acked + limit).min(s.updates.len());
                let batch: Vec<Value> = s.updates[s.acked..end].to_vec();
                let marker = MARKER_BASE + end as i64;
                return reply(200, json!({"updates": batch, "marker": marker}), None);
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

fn is_valid_secret(s: &str) -> bool {
    (5..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn subscribe(shared: &Arc<Shared>, body: &Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return error(400, "proto.payload", "Cannot parse request body");
    };
    let Some(url) = req.get("url").and_then(Value::as_str) else {
        return error(400, "proto.payload", "url is required");
    };
    if !url.starts_with("https://") {
        return reply(
            200,
            json!({"success": false, "message": "Only HTTPS webhooks on port 443 are allowed"}),
            None,
        );
    }
    if let Some(secret) = req.get("secret").filter(|s| !s.is_null())
        && !secret.as_str().is_some_and(is_valid_secret)
    {
        return error(400, "proto.payload", "secret does not match pattern");
    }
    let mut s = shared.lock();
    s.subscriptions.retain(|x| x["url"] != url);
    s.subscriptions.push(json!({
        "url": url,
        "time": now_ms(),
        "update_types": req.get("update_types").cloned().unwrap_or(Value::Null),
        "secret": req.get("secret").cloned().unwrap_or(Value::Null),
    }));
    reply(200, json!({"success": true}), None)
}
