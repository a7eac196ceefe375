//! A fake provider that echoes the whole request — method, URL, every header, the body — back in
//! its error text, as real providers sometimes do (a Bot API `description` quoting the URL, a
//! gateway's `status_text` quoting the form). Tests point an adapter at it and check that the
//! adapter's configured secrets appear in no error it returns.
//!
//! ```no_run
//! # async fn run() {
//! use messaging_tests::echo::EchoServer;
//! let echo = EchoServer::start(|request| {
//!     (400, serde_json::json!({"ok": false, "error_code": 400, "description": request}).to_string())
//! })
//! .await;
//! // TelegramChannel::builder("tg", token).base_url(echo.url())
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// Builds the answer (status, JSON body) from the request as text.
pub type Shape = dyn Fn(&str) -> (u16, String) + Send + Sync;

struct Inner {
    shape: Box<Shape>,
    seen: Mutex<Vec<String>>,
}

/// The echoing server on `127.0.0.1:0`; every request gets the shaped answer.
#[derive(Clone)]
pub struct EchoServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EchoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoServer")
            .field("addr", &self.addr)
            .finish()
    }
}

async fn echo(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut text = format!("{method} {uri}\n");
    for (name, value) in &headers {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&body));
    inner.seen.lock().unwrap().push(text.clone());
    let (status, body) = (inner.shape)(&text);
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "application/json")],
        body,
    )
        .into_response()
}

impl EchoServer {
    /// Starts a server answering every request with `shape(request as text)`.
    pub async fn start(shape: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) -> Self {
        let inner = Arc::new(Inner {
            shape: Box::new(shape),
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(echo).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EchoServer { addr, inner }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests seen so far, as text (what was echoed).
    pub fn requests(&self) -> Vec<String> {
        self.inner.seen.lock().unwrap().clone()
    }
}
