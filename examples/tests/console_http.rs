//! The console over HTTP: no page without a session, CSRF on every form, the password checked,
//! a patient's markup shown as text, replies on the patient's channel (a template once
//! WhatsApp's window has closed), links made by hand with a reason, notices' timelines.

mod console_common;

use std::time::{Duration, Instant};

use console_common::{PASSWORD, Running, csrf_of, enc, start, telegram_update};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The `name=value` of a `Set-Cookie` header named `name`.
fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

/// Logs in; returns the session cookie pair and the CSRF token.
async fn login(c: &reqwest::Client, base: &str) -> (String, String) {
    let page = c.get(format!("{base}/login")).send().await.unwrap();
    let login_cookie = cookie_pair(&set_cookie(&page, "console_login").expect("login cookie"));
    let html = page.text().await.unwrap();
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("login form token")
        .to_owned();
    let res = c
        .post(format!("{base}/login"))
        .header(COOKIE, login_cookie)
        .form(&[("password", PASSWORD), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = set_cookie(&res, "console_session").expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attr), "{attr} missing: {session}");
    }
    let session = cookie_pair(&session);
    assert_eq!(
        session.len(),
        "console_session=".len() + 64,
        "256-bit token"
    );
    let home = c
        .get(format!("{base}/"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    let csrf = csrf_of(&home.text().await.unwrap());
    (session, csrf)
}

async fn get(c: &reqwest::Client, url: String, session: &str) -> (StatusCode, String) {
    let res = c.get(url).header(COOKIE, session).send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn refuses_to_start_without_a_password() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_messaging-console"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("MESSAGING_CONSOLE_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MESSAGING_CONSOLE_PASSWORD"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_messaging-console"))
        .args(["--demo", "--listen", "127.0.0.1:0"])
        .env("MESSAGING_CONSOLE_PASSWORD", "short")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a too-short password is refused"
    );

    // With the password and no configuration: simulated providers, no --demo needed.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("console.sqlite");
    let args = [
        "--quiet",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
    ];
    let running = console_common::start_with(dir, &args, true);
    assert!(
        running.base.starts_with("http://127.0.0.1:"),
        "{}",
        running.base
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_needs_a_session_and_every_post_a_csrf_token() {
    let Running { base, .. } = &start();
    let c = client();
    for path in [
        "/",
        "/cascades",
        "/patients",
        "/links",
        "/t/74673a35303032",
        "/cascades/00",
    ] {
        let res = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(res.headers()[LOCATION], "/login", "{path}");
    }
    for path in ["/events", "/fragment/threads", "/fragment/health"] {
        let res = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let res = c
        .post(format!("{base}/t/00/reply"))
        .form(&[("text", "hi")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let login_page = c.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(login_page.status(), StatusCode::OK);
    let csp = login_page.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let login_cookie = cookie_pair(&set_cookie(&login_page, "console_login").unwrap());
    let token = login_page
        .text()
        .await
        .unwrap()
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    // Wrong password: refused, no session.
    let res = c
        .post(format!("{base}/login"))
        .header(COOKIE, &login_cookie)
        .form(&[("password", "reception-desk-43"), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&res, "console_session").is_none());
    // The right password without the login form's token: refused.
    let res = c
        .post(format!("{base}/login"))
        .form(&[("password", PASSWORD), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&res, "console_session").is_none());

    let (session, csrf) = login(&c, base).await;
    let thread = enc("address:tg:5002");
    let (status, _) = get(&c, format!("{base}/t/{thread}"), &session).await;
    if status != StatusCode::OK {
        // The thread id format is the inbox's; find the unknown sender's thread on the list.
        let (_, list) = get(&c, format!("{base}/"), &session).await;
        panic!("thread {thread} not found; list: {list}");
    }
    for (form, header) in [
        (None, None),
        (Some("0".repeat(64)), None),
        (None, Some("x")),
    ] {
        let mut req = c
            .post(format!("{base}/t/{thread}/reply"))
            .header(COOKIE, &session)
            .header("x-console", "1");
        if let Some(h) = header {
            req = req.header("x-csrf-token", h);
        }
        let mut fields = vec![("text", "hello".to_owned())];
        if let Some(f) = form {
            fields.push(("csrf", f));
        }
        let res = req.form(&fields).send().await.unwrap();
        assert_eq!(
            res.status(),
            StatusCode::FORBIDDEN,
            "a POST without the session's token"
        );
    }
    for path in ["/link", "/unlink", "/logout"] {
        let res = c
            .post(format!("{base}{path}"))
            .header(COOKIE, &session)
            .form(&[("reason", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // Logging out ends the session.
    let res = c
        .post(format!("{base}/logout"))
        .header(COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = c
        .get(format!("{base}/"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_answers_on_the_right_channel_and_shows_markup_as_text() {
    let running = start();
    let base = &running.base;
    let c = client();
    let (session, csrf) = login(&c, base).await;

    // The seeded unknown sender's markup is text everywhere.
    let (_, list) = get(&c, format!("{base}/"), &session).await;
    assert!(list.contains("unknown Telegram user 5002"), "{list}");
    assert!(!list.contains("<img src=x"), "{list}");
    assert!(
        list.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{list}"
    );

    // A patient writes to the bot through the real webhook route.
    let xss = "<script>alert(1)</script>\"><img src=x onerror=alert(2)> Здравствуйте";
    let res = c
        .post(format!("{base}/webhooks/telegram"))
        .header("X-Telegram-Bot-Api-Secret-Token", &running.telegram_secret)
        .header("content-type", "application/json")
        .body(telegram_update(9001, 7777, xss))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    // A forged update without the secret is refused.
    let res = c
        .post(format!("{base}/webhooks/telegram"))
        .body(telegram_update(9002, 7778, "forged"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());

    let thread = enc("address:tg:7777");
    let mut page = String::new();
    wait_for("the webhook's message in its thread", async || {
        let (status, body) = get(&c, format!("{base}/t/{thread}"), &session).await;
        page = body;
        status == StatusCode::OK
    })
    .await;
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("id=\"reply-channel\">Telegram<"), "{page}");

    // The reply goes out on Telegram and is delivered.
    let res = c
        .post(format!("{base}/t/{thread}/reply"))
        .header(COOKIE, &session)
        .header("x-console", "1")
        .header("x-csrf-token", &csrf)
        .form(&[("text", "Здравствуйте! Чем помочь?")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NO_CONTENT,
        "{}",
        res.text().await.unwrap()
    );
    wait_for("the reply's delivered tick", async || {
        let (_, body) = get(&c, format!("{base}/t/{thread}/fragment"), &session).await;
        body.contains("Чем помочь?") && body.contains("data-tick=\"delivered\"")
    })
    .await;

    // Анна's thread shows the reminder the cascade sent her, among her messages.
    let anna = enc("contact:patient-1");
    wait_for("Анна's reminder in her thread", async || {
        let (_, body) = get(&c, format!("{base}/t/{anna}/fragment"), &session).await;
        body.contains("reminder reminder-patient-1-0") && body.contains("напоминаем о приёме")
    })
    .await;

    // Анна last wrote on WhatsApp 30 hours ago: the window is closed, templates are offered,
    // and a template goes through.
    let res = c
        .post(format!("{base}/t/{anna}/reply"))
        .header(COOKIE, &session)
        .header("x-console", "1")
        .header("x-csrf-token", &csrf)
        .form(&[("text", "Перенесли на вторник, 11:00")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let offer = res.text().await.unwrap();
    assert!(
        offer.contains("window") && offer.contains("clinic_message"),
        "{offer}"
    );
    let res = c
        .post(format!("{base}/t/{anna}/reply"))
        .header(COOKIE, &session)
        .header("x-console", "1")
        .header("x-csrf-token", &csrf)
        .form(&[
            ("text", "Перенесли на вторник, 11:00"),
            ("template", "clinic_message"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Without the script, the same form keeps the operator's text on the page it returns.
    let res = c
        .post(format!("{base}/t/{anna}/reply"))
        .header(COOKIE, &session)
        .form(&[("text", "черновик не теряется"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res.text().await.unwrap().contains("черновик не теряется"));

    // Linking by hand needs a reason and is recorded on the patient's card.
    let address = enc(r#"{"type":"telegram","value":7777}"#);
    let (_, links) = get(&c, format!("{base}/links"), &session).await;
    let address = links
        .split("name=\"address\" value=\"")
        .map(|s| s.split('"').next().unwrap_or_default())
        .find(|v| {
            v.len() % 2 == 0
                && String::from_utf8(
                    (0..v.len())
                        .step_by(2)
                        .filter_map(|i| u8::from_str_radix(&v[i..i + 2], 16).ok())
                        .collect(),
                )
                .is_ok_and(|s| s.contains("7777"))
        })
        .map(str::to_owned)
        .unwrap_or(address);
    let patient = enc("patient-5");
    let res = c
        .post(format!("{base}/link"))
        .header(COOKIE, &session)
        .form(&[
            ("csrf", csrf.as_str()),
            ("address", &address),
            ("contact", &patient),
            ("reason", " "),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = c
        .post(format!("{base}/link"))
        .header(COOKIE, &session)
        .form(&[
            ("csrf", csrf.as_str()),
            ("address", &address),
            ("contact", &patient),
            (
                "reason",
                "called her back, she confirmed the Telegram account",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (_, card) = get(&c, format!("{base}/patients/{patient}"), &session).await;
    assert!(card.contains("Telegram 7777"), "{card}");
    assert!(card.contains("linked by an operator"), "{card}");
    assert!(card.contains("called her back"), "{card}");
    // The unknown sender's messages moved into Дарья's conversation.
    let (_, list) = get(&c, format!("{base}/"), &session).await;
    assert!(!list.contains("unknown Telegram user 7777"), "{list}");

    // Notices: the seeded reminders, filterable, each with its timeline.
    let (_, notices) = get(&c, format!("{base}/cascades?channel=whatsapp"), &session).await;
    assert!(notices.contains("reminder-patient-1-0"), "{notices}");
    let (_, none) = get(&c, format!("{base}/cascades?state=cancelled"), &session).await;
    assert!(!none.contains("reminder-patient-1-0"), "{none}");
    let id = enc("reminder-patient-1-0");
    let (status, timeline) = get(&c, format!("{base}/cascades/{id}"), &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(timeline.contains("sent on whatsapp"), "{timeline}");
}

/// A service configuration on the SQLite file `db` with one Telegram channel by webhook, its API
/// unreachable: what is received works, what is sent fails.
fn write_config(config: &std::path::Path, db: &std::path::Path) {
    std::fs::write(
        config,
        format!(
            r#"
[store]
sqlite = {db:?}

[listener]
address = "127.0.0.1:0"

[channels.telegram]
provider = "telegram"
token = "123456:console-test"
webhook_secret = "console-test-secret"
base_url = "http://127.0.0.1:9"

[policies.reminders]
steps = [{{ channel = "telegram", window = "15m" }}]
"#
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_runs_on_the_librarys_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("messaging.toml");
    let patients = dir.path().join("patients.csv");
    let db = dir.path().join("service.sqlite");
    write_config(&config, &db);
    std::fs::write(
        &patients,
        "name,phone,telegram\nАнна Петрова,+79120000001,7777\n",
    )
    .unwrap();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--patients",
        patients.to_str().unwrap(),
        "--template",
        "clinic_message:ru:Клиника: {{1}}",
    ];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let running = console_common::start_with(dir, &args, false);
    let base = &running.base;
    let c = client();
    let res = c
        .post(format!("{base}/webhooks/telegram"))
        .header("X-Telegram-Bot-Api-Secret-Token", "console-test-secret")
        .header("content-type", "application/json")
        .body(telegram_update(31, 7777, "Добрый день, я опоздаю"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let (session, csrf) = login(&c, base).await;
    let thread = enc("contact:patient-79120000001");
    let mut page = String::new();
    wait_for("the patient's message in their thread", async || {
        let (status, body) = get(&c, format!("{base}/t/{thread}"), &session).await;
        page = body;
        status == StatusCode::OK && page.contains("я опоздаю")
    })
    .await;
    assert!(page.contains("Анна Петрова"), "{page}");
    assert!(page.contains("id=\"reply-channel\">Telegram<"), "{page}");
    // The reply goes to the service's Telegram adapter, whose API is unreachable here: the
    // operator is told, and the text is kept.
    let res = c
        .post(format!("{base}/t/{thread}/reply"))
        .header(COOKIE, &session)
        .form(&[("text", "Хорошо, ждём вас"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("Not sent") && body.contains("Хорошо, ждём вас"),
        "{body}"
    );
    let (_, card) = get(
        &c,
        format!("{base}/patients/{}", enc("patient-79120000001")),
        &session,
    )
    .await;
    assert!(card.contains("Telegram 7777"), "{card}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_hear_of_a_new_message_over_server_sent_events() {
    let running = start();
    let base = &running.base;
    let c = client();
    let (session, _) = login(&c, base).await;
    let mut events = c
        .get(format!("{base}/events"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let res = c
        .post(format!("{base}/webhooks/telegram"))
        .header("X-Telegram-Bot-Api-Secret-Token", &running.telegram_secret)
        .header("content-type", "application/json")
        .body(telegram_update(77, 6001, "Добрый вечер"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    // The thread's id, as the page's elements name it.
    let wanted = format!("event: thread\ndata: {}", enc("address:tg:6001"));
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen.contains(&wanted) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, events.chunk())
            .await
            .unwrap_or_else(|_| panic!("no thread event in 15 s; got {seen:?}"))
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// The notices page lists what the store holds, not what this process saw: a reminder from an
/// earlier run, on the same database, is listed and opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_of_an_earlier_run_are_listed_from_the_store() {
    let first = console_common::start();
    let c = client();
    let (session, _) = login(&c, &first.base).await;
    wait_for("the seeded reminder among the notices", async || {
        let (_, body) = get(&c, format!("{}/cascades", first.base), &session).await;
        body.contains("reminder-patient-1-0")
    })
    .await;
    let db = first._dir.path().join("console.sqlite");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("messaging.toml");
    write_config(&config, &db);
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let second = console_common::start_with(dir, &args, false);
    let (session, _) = login(&c, &second.base).await;
    let (status, notices) = get(&c, format!("{}/cascades", second.base), &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(notices.contains("reminder-patient-1-0"), "{notices}");
    let id = enc("reminder-patient-1-0");
    let (status, timeline) = get(&c, format!("{}/cascades/{id}", second.base), &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(timeline.contains("submitted"), "{timeline}");
    drop(first);
}
