//! A fault-injecting HTTP proxy to put in front of a fake provider: it forwards each request,
//! lets the provider act on it, and then, by a script, loses or spoils the provider's answer.
//! The provider has accepted the message in every fault but [`Fault::RefuseConnection`]: what
//! an adapter sees is the ambiguous outcome a real network produces.
//!
//! One request per connection (the proxy answers `Connection: close`), which reqwest handles
//! transparently; requests must carry a `Content-Length` (reqwest's JSON and form bodies do).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded, and the answer returned as it is.
    None,
    /// Forwarded (the provider acts on it), then the connection is closed without an answer.
    DropAnswer,
    /// Forwarded, then only the status line and headers and half the body are returned before
    /// the connection closes (a reset while reading the answer).
    CutAnswer,
    /// Forwarded, then answered `200 OK` with a body that is not the provider's JSON.
    GarbageAnswer,
    /// Forwarded, then the answer is held longer than this (the client's timeout fires).
    HoldAnswer(Duration),
    /// Not forwarded: the connection is closed before reading the request (nothing sent).
    RefuseConnection,
}

impl Fault {
    /// Whether the provider saw the request.
    pub fn reaches_provider(self) -> bool {
        self != Fault::RefuseConnection
    }
}

#[derive(Debug, Default)]
struct Script {
    /// Faults for the next requests, in order; then `every`.
    next: VecDeque<Fault>,
    /// Faults applied in turn to every `n`th request (1-based) after the scripted ones.
    every: Option<(usize, Vec<Fault>)>,
    seen: usize,
    log: Vec<Fault>,
}

/// The running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultyProxy {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(s: &Mutex<Script>) -> std::sync::MutexGuard<'_, Script> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultyProxy {
    /// A proxy on a random loopback port in front of `upstream` (`127.0.0.1:port`).
    pub async fn start(upstream: SocketAddr) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let script = Arc::new(Mutex::new(Script::default()));
        let s = script.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let fault = {
                    let mut s = lock(&s);
                    s.seen += 1;
                    let n = s.seen;
                    let f = s.next.pop_front().unwrap_or(match &s.every {
                        Some((k, faults)) if n.is_multiple_of(*k) && !faults.is_empty() => {
                            faults[(n / k - 1) % faults.len()]
                        }
                        _ => Fault::None,
                    });
                    s.log.push(f);
                    f
                };
                tokio::spawn(serve(client, upstream, fault));
            }
        });
        FaultyProxy { addr, script, task }
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// `http://127.0.0.1:<port>`, without the trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A proxy in front of the server at `url` (`http://127.0.0.1:<port>`, with or without a
    /// trailing slash).
    pub async fn in_front_of(url: &str) -> FaultyProxy {
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("a loopback http://host:port");
        FaultyProxy::start(addr).await
    }

    /// Applies `fault` to the next request.
    pub fn next(&self, fault: Fault) {
        lock(&self.script).next.push_back(fault);
    }

    /// Applies `faults`, in turn, to every `n`th request from now on (counting every request
    /// so far): `every(3, &[DropAnswer, CutAnswer])` drops the 3rd answer, cuts the 6th, ...
    pub fn every(&self, n: usize, faults: &[Fault]) {
        lock(&self.script).every = Some((n.max(1), faults.to_vec()));
    }

    /// Stops injecting faults.
    pub fn heal(&self) {
        let mut s = lock(&self.script);
        s.every = None;
        s.next.clear();
    }

    /// The fault applied to each request so far, in arrival order.
    pub fn log(&self) -> Vec<Fault> {
        lock(&self.script).log.clone()
    }
}

/// Reads one HTTP/1.1 message head and its `Content-Length` body (or up to EOF without one).
async fn read_message(s: &mut TcpStream, to_eof: bool) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(len) => {
            while buf.len() < head_end + len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        None if to_eof => {
            s.read_to_end(&mut buf).await?;
        }
        None => {}
    }
    Ok(buf)
}

/// The message with `Connection: close` (after its first line): a request so that the
/// upstream closes after answering, an answer so that the client does not reuse the connection.
fn with_connection_close(request: &[u8]) -> Vec<u8> {
    let Some(i) = request.windows(2).position(|w| w == b"\r\n") else {
        return request.to_vec();
    };
    let mut out = request[..i + 2].to_vec();
    out.extend_from_slice(b"connection: close\r\n");
    for line in request[i + 2..].split_inclusive(|b| *b == b'\n') {
        if !line.to_ascii_lowercase().starts_with(b"connection:") {
            out.extend_from_slice(line);
        }
    }
    out
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, fault: Fault) {
    if fault == Fault::RefuseConnection {
        return; // dropped: the client sees a reset or an empty answer before anything was read
    }
    let Ok(request) = read_message(&mut client, false).await else {
        return;
    };
    let Ok(mut up) = TcpStream::connect(upstream).await else {
        return;
    };
    if up
        .write_all(&with_connection_close(&request))
        .await
        .is_err()
    {
        return;
    }
    let Ok(answer) = read_message(&mut up, true).await else {
        return;
    };
    // The client must not reuse a connection this proxy closes.
    let answer = with_connection_close(&answer);
    match fault {
        Fault::None | Fault::RefuseConnection => {
            let _ = client.write_all(&answer).await;
        }
        Fault::DropAnswer => {}
        Fault::CutAnswer => {
            let head_end = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(answer.len(), |i| i + 4);
            let half = head_end + (answer.len() - head_end) / 2;
            let _ = client.write_all(&answer[..half]).await;
        }
        Fault::GarbageAnswer => {
            let body = "<html>502 Bad Gateway</html>";
            let _ = client
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
        Fault::HoldAnswer(d) => {
            tokio::time::sleep(d).await;
            let _ = client.write_all(&answer).await;
        }
    }
    let _ = client.shutdown().await;
}
