//! The console in a real browser: headless Chromium driven over the W3C WebDriver protocol
//! (chromedriver). Logs in, watches a Telegram message arrive live, replies and sees the reply
//! delivered, opens a notice's timeline; writes a PNG screenshot of each page to
//! `$CARGO_TARGET_TMPDIR/console-screenshots/`.
//!
//! Without Debian's `chromium` and `chromium-driver` the test is skipped with a notice, unless
//! `CI` is set: then it fails (`.ci/run` installs them).
//!
//! The WebDriver client is the few JSON calls below over reqwest (already built for the
//! library), rather than a WebDriver crate and its own HTTP stack.

mod console_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use console_common::{PASSWORD, start, telegram_update};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Browser {
    http: reqwest::Client,
    session: String,
    shots: PathBuf,
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// A WebDriver call; the error names the URL, the status and WebDriver's answer.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("webdriver call");
        let status = res.status();
        let v: Value = res.json().await.expect("webdriver json");
        if status.is_success() {
            Ok(v["value"].clone())
        } else {
            Err(format!("{url}: {status} {v}"))
        }
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().expect("element id").to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks the element `css` finds. The console's lists are redrawn by live updates, so the
    /// element found may be replaced before the click lands ("stale element reference"): then
    /// it is found again.
    async fn click(&self, css: &str) {
        for _ in 0..10 {
            let id = self.find(css).await;
            match self
                .try_call(
                    reqwest::Method::POST,
                    &format!("/element/{id}/click"),
                    Some(json!({})),
                )
                .await
            {
                Ok(_) => return,
                Err(e) if e.contains("stale element reference") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{css} was redrawn under every click");
    }

    async fn js(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Waits until `script` (a function body) returns true.
    async fn wait(&self, what: &str, script: &str) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if self.js(script).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let body = self.js("return document.body.innerText").await;
        panic!("timed out waiting for {what}; page text: {body}");
    }

    async fn shot(&self, name: &str) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("png");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

fn tools_present() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_console_in_chromium() {
    if !tools_present() {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but {CHROMIUM} or {CHROMEDRIVER} is missing (.ci/run installs them)");
        }
        println!(
            "notice: skipping the browser test: install chromium and chromium-driver (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let started = Instant::now();
    let console = start();
    let base = console.base.clone();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot folder");

    let port = free_port();
    let driver = Driver {
        child: Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    };
    let http = reqwest::Client::new();
    let root = format!("http://127.0.0.1:{port}");
    let ready = Instant::now();
    loop {
        let up = http.get(format!("{root}/status")).send().await;
        if up.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            ready.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US"]
        }
    }}});
    let res = http
        .post(format!("{root}/session"))
        .json(&caps)
        .send()
        .await
        .expect("new session");
    let v: Value = res.json().await.expect("session json");
    let id = v["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no session: {v}"))
        .to_owned();
    let b = Browser {
        http: http.clone(),
        session: format!("{root}/session/{id}"),
        shots: shots.clone(),
    };

    // Log in.
    b.go(&format!("{base}/")).await;
    b.wait(
        "the login page",
        "return !!document.getElementById('password')",
    )
    .await;
    b.type_into("#password", PASSWORD).await;
    b.shot("01-login").await;
    b.click("#login").await;
    b.wait(
        "the conversations",
        "return !!document.querySelector('ol.threads') && document.getElementById('live-status').textContent === 'live'",
    )
    .await;
    b.shot("02-conversations").await;

    // A patient writes to the bot: the message arrives on the open page without a reload.
    b.js("window.__sameDocument = true; return true").await;
    let xss =
        "<script>alert(1)</script>\"><img src=x onerror=alert(2)> Здравствуйте, запишите меня";
    let res = http
        .post(format!("{base}/webhooks/telegram"))
        .header("X-Telegram-Bot-Api-Secret-Token", &console.telegram_secret)
        .header("content-type", "application/json")
        .body(telegram_update(4242, 7777, xss))
        .send()
        .await
        .expect("webhook");
    assert!(res.status().is_success());
    b.wait(
        "the Telegram message in the list, live",
        "return document.body.innerText.includes('unknown Telegram user 7777')",
    )
    .await;
    assert_eq!(
        b.js("return window.__sameDocument === true").await,
        json!(true),
        "no reload"
    );
    // Shown as text: the page has no element the patient wrote.
    assert_eq!(
        b.js("return document.querySelectorAll('img, script:not([src])').length")
            .await,
        json!(0)
    );
    assert_eq!(
        b.js("return document.body.innerText.includes('<script>alert(1)</script>')")
            .await,
        json!(true)
    );
    b.shot("03-message-arrived").await;

    // Open it and reply with Enter; the reply is delivered.
    b.click("ol.threads li a").await;
    b.wait("the thread", "return !!document.getElementById('text')")
        .await;
    assert_eq!(
        b.js("return document.getElementById('reply-channel').textContent")
            .await,
        json!("Telegram")
    );
    assert_eq!(
        b.js("return document.activeElement && document.activeElement.id")
            .await,
        json!("text"),
        "the reply box has the focus"
    );
    b.type_into(
        "#text",
        "Здравствуйте! Записали вас на завтра, 10:00.\u{E007}",
    )
    .await;
    b.wait(
        "the reply, delivered",
        "const m = [...document.querySelectorAll('.msg.out')].pop(); \
         return !!m && m.innerText.includes('Записали вас') && !!m.querySelector('[data-tick=delivered]')",
    )
    .await;
    assert_eq!(
        b.js("return document.getElementById('text').value").await,
        json!("")
    );
    b.shot("04-reply-delivered").await;

    // A draft survives a live update of the thread.
    b.type_into("#text", "черновик").await;
    let res = http
        .post(format!("{base}/webhooks/telegram"))
        .header("X-Telegram-Bot-Api-Secret-Token", &console.telegram_secret)
        .header("content-type", "application/json")
        .body(telegram_update(4243, 7777, "Спасибо!"))
        .send()
        .await
        .expect("webhook");
    assert!(res.status().is_success());
    b.wait(
        "the second message, live",
        "return document.getElementById('thread').innerText.includes('Спасибо!')",
    )
    .await;
    assert_eq!(
        b.js("return document.getElementById('text').value").await,
        json!("черновик")
    );

    // Notices and a timeline.
    b.go(&format!("{base}/cascades")).await;
    b.wait(
        "the notices",
        "return !!document.querySelector('table.cascades tbody tr a')",
    )
    .await;
    b.shot("05-notices").await;
    b.click("table.cascades tbody tr a").await;
    b.wait(
        "a timeline",
        "return !!document.querySelector('ol.timeline li') && document.body.innerText.includes('sent on')",
    )
    .await;
    b.shot("06-timeline").await;

    b.go(&format!("{base}/patients")).await;
    b.wait(
        "the patients",
        "return !!document.querySelector('table.grid')",
    )
    .await;
    b.click("table.grid tbody tr a").await;
    b.wait(
        "a patient card",
        "return !!document.querySelector('dl.card')",
    )
    .await;
    b.shot("07-patient").await;
    // The patient's conversation: her WhatsApp message, the reminders and their ticks.
    b.click("dl.card a").await;
    b.wait(
        "the patient's thread with a reminder",
        "return !!document.querySelector('#thread .notice-link')",
    )
    .await;
    b.shot("08-patient-thread").await;
    b.go(&format!("{base}/links")).await;
    b.wait(
        "the link requests",
        "return document.body.innerText.includes('Link requests')",
    )
    .await;
    b.shot("09-links").await;

    let _ = http.delete(b.session.clone()).send().await;
    drop(driver);
    println!(
        "screenshots: {} (browser test took {:.1} s)",
        shots.display(),
        started.elapsed().as_secs_f64()
    );
}
