//! A fake WhatsApp Graph API (and 360dialog) on `127.0.0.1:0`, answering with Meta's real success
//! and error bodies.
//!
//! | route | answers |
//! |---|---|
//! | `POST /{version}/{phone_number_id}/messages` | Cloud API send; `Authorization: Bearer` checked (190 on a bad token) |
//! | `POST /messages` | 360dialog send; `D360-API-KEY` checked (360dialog's own 401 body) |
//! | `GET /{version}/{waba_id}/message_templates` | the template list, in pages of [`FakeGraph::set_page_size`] with `paging.cursors.after` |
//! | `GET /v1/configs/templates` | 360dialog's template list (`waba_templates`) |
//!
//! Every request is recorded ([`FakeGraph::requests`]). Responses can be scripted
//! ([`FakeGraph::script`], [`FakeGraph::script_error`]); unscripted sends succeed with a fresh
//! `wamid.FAKE…`. A per-number rate limit ([`FakeGraph::set_rate_limit`]) answers with the real
//! 130429 body when exceeded. Malformed sends get the errors Meta gives (100, 131008).
//!
//! ```no_run
//! # async fn run() {
//! use messaging_tests::waba::{FakeGraph, TOKEN};
//! let fake = FakeGraph::start().await;
//! fake.script_error(131047);
//! println!("point the adapter at {} with token {TOKEN}", fake.base_url());
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The access token the fake accepts on Cloud API routes.
pub const TOKEN: &str = "test-token-EAAG";
/// The API key the fake accepts on 360dialog routes.
pub const API_KEY: &str = "test-d360-key";

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`.
    pub method: Method,
    /// The path (`/v24.0/1055/messages`).
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Headers as sent.
    pub headers: HeaderMap,
    /// The body parsed as JSON (`Null` when it was not JSON).
    pub json: Value,
}

impl RecordedRequest {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether this was a send.
    pub fn is_send(&self) -> bool {
        self.method == Method::POST && self.path.ends_with("/messages")
    }
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct Scripted {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
    /// A `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
}

impl Scripted {
    /// Meta's error body for `code`, with the HTTP status Meta's older table gave it (the adapter
    /// must not depend on it).
    pub fn error(code: i64) -> Scripted {
        let status = match code {
            0 | 190 => 401,
            10 | 200..=299 | 368 | 130497 | 131031 => 403,
            4 | 80007 | 130429 | 131048 | 131056 => 429,
            1 | 3 | 131000 => 500,
            2 | 131016 | 133004 => 503,
            _ => 400,
        };
        Scripted {
            status,
            body: error_body(code),
            retry_after: None,
        }
    }

    /// A success with a given wamid.
    pub fn accepted(wamid: &str) -> Scripted {
        Scripted {
            status: 200,
            body: json!({"messaging_product": "whatsapp", "contacts": [], "messages": [{"id": wamid}]}),
            retry_after: None,
        }
    }

    /// Any status and body.
    pub fn raw(status: u16, body: Value) -> Scripted {
        Scripted {
            status,
            body,
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, secs: u64) -> Scripted {
        self.retry_after = Some(secs);
        self
    }
}

/// Meta's title for a code, as in its error-code table.
fn title(code: i64) -> &'static str {
    match code {
        0 => "AuthException",
        4 => "Application request limit reached",
        100 => "Invalid parameter",
        190 => "Access token has expired",
        368 => "Temporarily blocked for policies violations",
        80007 => "Rate limit issues",
        130429 => "Rate limit hit",
        130472 => "User's number is part of an experiment",
        131000 => "Something went wrong",
        131005 => "Access denied",
        131008 => "Required parameter is missing",
        131009 => "Parameter value is not valid",
        131016 => "Service unavailable",
        131021 => "Recipient cannot be sender",
        131026 => "Message Undeliverable",
        131031 => "Account has been locked",
        131042 => "Business eligibility payment issue",
        131047 => "Re-engagement message",
        131048 => "Spam rate limit hit",
        131049 => "This message was not delivered to maintain healthy ecosystem engagement.",
        131050 => {
            "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business."
        }
        131051 => "Unsupported message type",
        131052 => "Media download error",
        131053 => "Media upload error",
        131056 => "(Business Account, Consumer Account) pair rate limit hit",
        132000 => "Number of parameters does not match the expected number of params",
        132001 => "Template name does not exist in the translation",
        132005 => "Template Hydrated Text Too Long",
        132007 => "Template Format Character Policy Violated",
        132012 => "Parameter format does not match format in the created template",
        132015 => "Template is Paused",
        132016 => "Template is Disabled",
        133010 => "Phone number Not Registered",
        _ => "Unknown error",
    }
}

/// Meta's synchronous error body for `code`, in the shape of the Graph API.
pub fn error_body(code: i64) -> Value {
    let mut e = json!({
        "message": format!("(#{code}) {}", title(code)),
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": title(code)},
        "fbtrace_id": "AZ1fakeTraceId"
    });
    if code == 130429 {
        e["error_data"]["details"] = json!("Cloud API message throughput has been reached.");
        e["error_subcode"] = json!(2494055);
    }
    json!({ "error": e })
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<RecordedRequest>,
    scripted: VecDeque<Scripted>,
    rate_limit: Option<u32>,
    recent: HashMap<String, VecDeque<Instant>>,
    templates: Vec<Value>,
    page_size: usize,
    counter: u64,
    accepted: Vec<(String, Value)>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeGraph {
    addr: SocketAddr,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGraph {
    /// Starts the fake on a random loopback port.
    pub async fn start() -> FakeGraph {
        let state: Shared = Arc::new(Mutex::new(Inner {
            page_size: 100,
            ..Inner::default()
        }));
        let s = state.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move { handle(&s, method, uri, headers, body) }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGraph { addr, state, task }
    }

    /// The messages the fake accepted (answered with a wamid), in order: the wamid and the
    /// request body. Unlike [`sends`](Self::sends), refused requests are not in it.
    pub fn accepted(&self) -> Vec<(String, Value)> {
        lock(&self.state).accepted.clone()
    }

    /// `http://127.0.0.1:<port>/`, for the adapter's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// The sends so far.
    pub fn sends(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_send())
            .collect()
    }

    /// Queues an answer for the next send or template request.
    pub fn script(&self, s: Scripted) {
        lock(&self.state).scripted.push_back(s);
    }

    /// Queues Meta's error body for `code`.
    pub fn script_error(&self, code: i64) {
        self.script(Scripted::error(code));
    }

    /// Limits sends per number to `per_second` (sliding one-second window); `None` removes it.
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        lock(&self.state).rate_limit = per_second;
    }

    /// Sets the templates the management API lists (elements of `data[]`).
    pub fn set_templates(&self, templates: Vec<Value>) {
        lock(&self.state).templates = templates;
    }

    /// Sets how many templates one page holds.
    pub fn set_page_size(&self, n: usize) {
        lock(&self.state).page_size = n.max(1);
    }
}

fn respond(status: u16, body: Value, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (code, axum::Json(body)).into_response();
    if let Some(secs) = retry_after
        && let Ok(v) = secs.to_string().parse()
    {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

fn handle(state: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_owned();
    let mut g = lock(state);
    g.requests.push(RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        headers: headers.clone(),
        json: json.clone(),
    });
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let bearer_ok = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {TOKEN}").as_str());
    let key_ok = headers.get("d360-api-key").and_then(|v| v.to_str().ok()) == Some(API_KEY);
    let d360_denied = || {
        respond(
            401,
            json!({"meta": {"success": false, "http_code": 401, "developer_message": "Invalid api key"}}),
            None,
        )
    };
    match (method.as_str(), segs.as_slice()) {
        ("POST", [_version, number, "messages"]) => {
            if !bearer_ok {
                return respond(401, error_body(190), None);
            }
            let number = (*number).to_owned();
            send(&mut g, &number, &json)
        }
        ("POST", ["messages"]) => {
            if !key_ok {
                return d360_denied();
            }
            send(&mut g, "360dialog", &json)
        }
        ("GET", [_version, _waba, "message_templates"]) => {
            if !bearer_ok {
                return respond(401, error_body(190), None);
            }
            if let Some(s) = g.scripted.pop_front() {
                return respond(s.status, s.body, s.retry_after);
            }
            let start: usize = uri
                .query()
                .and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("after=p"))
                        .and_then(|n| n.parse().ok())
                })
                .unwrap_or(0);
            let end = (start + g.page_size).min(g.templates.len());
            let data: Vec<Value> = g.templates.get(start..end).unwrap_or_default().to_vec();
            let mut page = json!({"data": data, "paging": {"cursors": {"before": format!("p{start}"), "after": format!("p{end}")}}});
            if end < g.templates.len() {
                page["paging"]["next"] = json!(format!(
                    "https://graph.facebook.com/v24.0/x/message_templates?after=p{end}"
                ));
            }
            respond(200, page, None)
        }
        ("GET", ["v1", "configs", "templates"]) => {
            if !key_ok {
                return d360_denied();
            }
            let list = g.templates.clone();
            respond(
                200,
                json!({"count": list.len(), "total": list.len(), "offset": 0, "limit": 1000, "waba_templates": list}),
                None,
            )
        }
        _ => respond(
            400,
            json!({"error": {"message": format!("Unsupported {method} request. Object with ID '{path}' does not exist"), "type": "GraphMethodException", "code": 100, "error_subcode": 33, "fbtrace_id": "AZ1fake"}}),
            None,
        ),
    }
}

fn send(g: &mut Inner, number: &str, json: &Value) -> Response {
    if json.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return respond(
            400,
            json!({"error": {"message": "(#100) The parameter messaging_product is required.", "type": "OAuthException", "code": 100, "fbtrace_id": "AZ1fake"}}),
            None,
        );
    }
    let Some(to) = json.get("to").and_then(Value::as_str) else {
        return respond(400, error_body(131008), None);
    };
    let Some(kind) = json.get("type").and_then(Value::as_str) else {
        return respond(400, error_body(100), None);
    };
    if json.get(kind).is_none() {
        return respond(400, error_body(131008), None);
    }
    if let Some(limit) = g.rate_limit {
        let now = Instant::now();
        let q = g.recent.entry(number.to_owned()).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            q.pop_front();
        }
        if q.len() >= limit as usize {
            return respond(429, error_body(130429), None);
        }
        q.push_back(now);
    }
    if let Some(s) = g.scripted.pop_front() {
        return respond(s.status, s.body, s.retry_after);
    }
    g.counter += 1;
    let wamid = format!("wamid.FAKE{:06}", g.counter);
    g.accepted.push((wamid.clone(), json.clone()));
    let digits: String = to.chars().filter(char::is_ascii_digit).collect();
    let mut message = json!({"id": wamid});
    if kind == "template" {
        message["message_status"] = json!("accepted");
    }
    respond(
        200,
        json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": digits}], "messages": [message]}),
        None,
    )
}
