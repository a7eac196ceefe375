//! Starting `messaging-console --demo` for the console's tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The password the tests log in with.
pub const PASSWORD: &str = "reception-desk-42";

/// A running console; killed on drop.
pub struct Running {
    pub child: Child,
    pub base: String,
    pub telegram_secret: String,
    pub _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the demo on a free port with a fresh SQLite file, without generated traffic.
pub fn start() -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("console.sqlite");
    let db = db.to_str().expect("utf-8 path").to_owned();
    start_with(
        dir,
        &["--demo", "--quiet", "--listen", "127.0.0.1:0", "--db", &db],
        true,
    )
}

/// Starts the console with these arguments; `demo`: wait for the Telegram secret line too.
pub fn start_with(dir: tempfile::TempDir, args: &[&str], demo: bool) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_messaging-console"))
        .args(args)
        .env("MESSAGING_CONSOLE_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start messaging-console");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut base, mut secret) = (None, (!demo).then(String::new));
    while base.is_none() || secret.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the console printed its address within 60 s");
        if let Some(rest) = line.strip_prefix("messaging-console: listening on ") {
            base = Some(rest.trim_end_matches('/').to_owned());
        }
        if let Some((_, s)) = line.split_once(" secret: ") {
            secret = Some(s.trim().to_owned());
        }
    }
    Running {
        child,
        base: base.unwrap_or_default(),
        telegram_secret: secret.unwrap_or_default(),
        _dir: dir,
    }
}

/// A Telegram update: a private message from `chat` with `text`.
pub fn telegram_update(update_id: i64, chat: i64, text: &str) -> String {
    serde_json::json!({
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": chrono::Utc::now().timestamp(),
            "chat": {"id": chat, "type": "private"},
            "from": {"id": chat, "is_bot": false, "first_name": "Test"},
            "text": text,
        }
    })
    .to_string()
}

/// The CSRF token of a console page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf-token\" content=\"";
    let start = html.find(marker).expect("a csrf meta tag") + marker.len();
    html[start..][..64].to_owned()
}

/// The hex form of an id in console URLs.
pub fn enc(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
