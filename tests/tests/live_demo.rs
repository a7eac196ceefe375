//! `clinic-reminders --live` end to end, against the in-process fake providers: the live mode
//! of `messaging-examples` builds the real adapters from environment variables (pointed at the
//! fakes through the `*_BASE_URL` overrides), sends, takes WhatsApp statuses and SMS callbacks
//! on its webhook listener, polls SMS.ru statuses, and reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging::webhook::hmac_sha256_hex;
use messaging_examples::live::{self, Ended, LiveConfig, Providers, Report};
use messaging_tests::max::FakeMax;
use messaging_tests::sms::{FakeSms, Provider};
use messaging_tests::telegram::FakeTelegram;
use messaging_tests::waba::{self, FakeGraph, Scripted};
use serde_json::json;

const APP_SECRET: &str = "meta-app-secret-live-demo";
const PHONE_NUMBER_ID: &str = "106540352242922";
/// The secret path segment of the unsigned SMS report endpoints.
const SMS_SECRET: &str = "sms-hook-0123456789abcdef";
/// Every step's window: long enough for the test to answer, short enough to keep it fast.
const WINDOW: Duration = Duration::from_secs(3);

struct Fakes {
    graph: FakeGraph,
    telegram: FakeTelegram,
    max: FakeMax,
    sms: FakeSms,
}

impl Fakes {
    async fn start() -> Fakes {
        Fakes {
            graph: FakeGraph::start().await,
            telegram: FakeTelegram::start().await,
            max: FakeMax::start().await,
            sms: FakeSms::start().await,
        }
    }

    /// The environment a clinic would set, pointed at the fakes.
    fn env(&self) -> HashMap<String, String> {
        [
            ("WABA_TOKEN", waba::TOKEN.to_owned()),
            ("WABA_PHONE_NUMBER_ID", PHONE_NUMBER_ID.to_owned()),
            ("WABA_BASE_URL", self.graph.base_url()),
            ("META_APP_SECRET", APP_SECRET.to_owned()),
            ("TELEGRAM_BOT_TOKEN", FakeTelegram::TOKEN.to_owned()),
            ("TELEGRAM_BASE_URL", self.telegram.url()),
            ("MAX_BOT_TOKEN", FakeMax::TOKEN.to_owned()),
            ("MAX_BASE_URL", self.max.url()),
            ("SMSRU_API_ID", FakeSms::SMSRU_API_ID.to_owned()),
            ("SMSRU_BASE_URL", self.sms.url()),
            ("SMS_SENDER", "Clinic".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

fn providers(env: &HashMap<String, String>) -> Providers {
    Providers::from_lookup(|k| env.get(k).cloned()).expect("complete provider variables")
}

/// A config on a fresh store in `dir`, listening on a free loopback port, printing progress.
fn config(
    providers: Providers,
    csv: &str,
    dir: &tempfile::TempDir,
    lines: &Arc<Mutex<Vec<String>>>,
) -> LiveConfig {
    let patients = live::parse_recipients(csv, "patients.csv").expect("valid CSV");
    let mut c = LiveConfig::new(providers, patients, dir.path().join("live.sqlite"));
    c.listen = Some("127.0.0.1:0".parse().expect("addr"));
    c.window = Some(WINDOW);
    c.wait = Duration::from_secs(20);
    c.poll_interval = Duration::from_millis(200);
    c.batch = "test".into();
    c.sms_webhook_secret = Some(SMS_SECRET.into());
    let lines = lines.clone();
    c.progress = Some(Arc::new(move |l: &str| {
        println!("  {l}");
        lines.lock().unwrap().push(l.to_owned());
    }));
    c
}

fn waba_status_body(wamid: &str, status: &str, recipient: &str) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": PHONE_NUMBER_ID},
            "statuses": [{"id": wamid, "status": status,
                          "timestamp": chrono::Utc::now().timestamp().to_string(),
                          "recipient_id": recipient}]
        }}]}]
    })
    .to_string()
}

fn row_summary(report: &Report, name: &str) -> (String, Option<String>, usize, Vec<String>) {
    let r = report
        .row(name)
        .unwrap_or_else(|| panic!("no row for {name}"));
    (
        r.outcome.clone(),
        r.delivered_by.clone(),
        r.attempts,
        r.sent_on.clone(),
    )
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_cascades_through_the_fake_providers() {
    let fakes = Fakes::start().await;
    let env = fakes.env();
    // The order of WhatsApp answers follows the order of the file: reminders are submitted one
    // after the other and each tries its first step before the next is submitted.
    fakes.graph.script(Scripted::accepted("wamid.ANNA"));
    fakes.graph.script_error(131026); // Борис: not on WhatsApp
    fakes.graph.script(Scripted::accepted("wamid.VERA"));
    fakes.graph.script_error(131026); // Глеб
    fakes.graph.script_error(131026); // Дарья
    fakes.telegram.block_chat(1004); // Глеб blocked the Telegram bot...
    fakes.max.block_user(4004); // ...and the Max bot.

    let csv = "\
# name, phone, telegram chat id, max user id
name,phone,telegram,max
Анна,+7 912 000-00-01
Борис,89120000002,1002
Вера,+79120000003,,3003
Глеб,+79120000004,1004,4004
Дарья,+79120000005
";
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let run = live::start(config(providers(&env), csv, &dir, &lines))
        .await
        .expect("live run starts");
    assert_eq!(
        run.channels(),
        ["whatsapp", "telegram", "max", "smsru"],
        "the classic order over the configured channels"
    );
    let addr = run.local_addr().expect("listening");
    let http = reqwest::Client::new();

    // WhatsApp: a status with a bad signature is refused and changes nothing...
    let body = waba_status_body("wamid.ANNA", "delivered", "79120000001");
    let refused = http
        .post(format!("http://{addr}/webhooks/waba"))
        .header("x-hub-signature-256", "sha256=00")
        .body(body.clone())
        .send()
        .await
        .expect("webhook call");
    assert_eq!(refused.status(), 403);
    // ...a signed "delivered" for Анна ends her cascade on WhatsApp.
    let signed = format!(
        "sha256={}",
        hmac_sha256_hex(APP_SECRET.as_bytes(), body.as_bytes())
    );
    let ok = http
        .post(format!("http://{addr}/webhooks/waba"))
        .header("x-hub-signature-256", signed)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("webhook call");
    assert_eq!(ok.status(), 200);

    // SMS: Глеб's report comes by status polling, Дарья's by the SMS.ru callback.
    let sms_id = |digits: &str| {
        fakes
            .sms
            .sent()
            .into_iter()
            .find(|m| m.to == digits)
            .unwrap_or_else(|| panic!("an SMS to {digits}"))
            .id
    };
    fakes
        .sms
        .set_status(Provider::SmsRu, &sms_id("79120000004"), "103");
    let callback: String = form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "data[0]",
            &format!(
                "sms_status\n{}\n103\n{}",
                sms_id("79120000005"),
                chrono::Utc::now().timestamp()
            ),
        )
        .finish();
    // SMS.ru signs nothing: at the guessable path a forged report finds nothing to talk to...
    let forged = http
        .post(format!("http://{addr}/webhooks/smsru"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(callback.clone())
        .send()
        .await
        .expect("callback");
    assert_eq!(forged.status(), 404);
    assert!(
        run.webhook_paths()
            .iter()
            .any(|p| p == &format!("/webhooks/sms/smsru/{SMS_SECRET}")),
        "{:?}",
        run.webhook_paths()
    );
    // ...the callback registered under the secret path is taken.
    let answer = http
        .post(format!("http://{addr}/webhooks/sms/smsru/{SMS_SECRET}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(callback)
        .send()
        .await
        .expect("callback");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.expect("body"), "100");

    // Вера's WhatsApp message is accepted but never delivered: the window closes, Max takes over.
    let started = std::time::Instant::now();
    let report = run.finish().await.expect("report");
    let rendered = report.render(true);
    println!("{rendered}");
    assert_eq!(report.ended, Ended::AllEnded, "{rendered}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "ends when every cascade ended"
    );

    assert_eq!(
        row_summary(&report, "Анна"),
        (
            "delivered".into(),
            Some("whatsapp".into()),
            1,
            s(&["whatsapp"])
        )
    );
    assert_eq!(
        row_summary(&report, "Борис"),
        (
            "delivered".into(),
            Some("telegram".into()),
            2,
            s(&["telegram"])
        )
    );
    assert_eq!(
        row_summary(&report, "Вера"),
        (
            "delivered".into(),
            Some("max".into()),
            2,
            s(&["whatsapp", "max"])
        )
    );
    let vera = report.row("Вера").expect("Вера");
    assert!(
        vera.time_to_delivery_s
            .is_some_and(|t| t >= WINDOW.as_secs_f64()),
        "Max only after the WhatsApp window closed: {vera:?}"
    );
    assert_eq!(
        row_summary(&report, "Глеб"),
        ("delivered".into(), Some("smsru".into()), 4, s(&["smsru"]))
    );
    assert_eq!(
        row_summary(&report, "Дарья"),
        ("delivered".into(), Some("smsru".into()), 2, s(&["smsru"]))
    );
    assert_eq!((report.delivered, report.running), (5, 0));

    let figures = |ch: &str| {
        let f = &report.by_channel[ch];
        (f.sends, f.delivered, f.failed)
    };
    assert_eq!(figures("whatsapp"), (5, 1, 3));
    assert_eq!(figures("telegram"), (2, 1, 1));
    assert_eq!(figures("max"), (2, 1, 1));
    assert_eq!(figures("smsru"), (2, 2, 0));

    // What the providers saw: WhatsApp templates to everyone (a first message must be one),
    // Telegram only to Борис, Max only to Вера, SMS to Глеб and Дарья, each with their name.
    let wa = fakes.graph.sends();
    assert_eq!(wa.len(), 5);
    assert!(wa.iter().all(|r| r.json["type"] == "template"));
    assert_eq!(wa[0].json["to"], "+79120000001");
    let tg: Vec<(i64, String)> = fakes
        .telegram
        .sent()
        .into_iter()
        .map(|m| (m.chat_id, m.text.unwrap_or_default()))
        .collect();
    assert_eq!(tg.len(), 1);
    assert_eq!(tg[0].0, 1002);
    assert!(tg[0].1.starts_with("Борис, напоминаем"), "{tg:?}");
    let max = fakes.max.sent_messages();
    assert_eq!(max.len(), 1);
    assert_eq!(
        max[0].query.get("user_id").map(String::as_str),
        Some("3003")
    );
    let sms: Vec<(String, String)> = fakes
        .sms
        .sent()
        .into_iter()
        .map(|m| (m.to, m.text))
        .collect();
    assert_eq!(sms.len(), 2);
    assert!(sms[0].0 == "79120000004" && sms[0].1.starts_with("Глеб, "));
    assert!(sms[1].0 == "79120000005" && sms[1].1.starts_with("Дарья, "));
    assert!(
        fakes
            .sms
            .sent()
            .iter()
            .all(|m| m.sender.as_deref() == Some("Clinic"))
    );

    // Progress told the story, and no secret appears anywhere.
    let lines = lines.lock().unwrap().join("\n");
    assert!(lines.contains("Вера: no proof of delivery from whatsapp within the window"));
    assert!(
        lines.contains("Глеб: telegram failed (unreachable)"),
        "{lines}"
    );
    assert!(
        lines.contains("Дарья: delivered by smsru (delivered)"),
        "{lines}"
    );
    for secret in [
        waba::TOKEN,
        APP_SECRET,
        FakeTelegram::TOKEN,
        FakeMax::TOKEN,
        FakeSms::SMSRU_API_ID,
    ] {
        assert!(!rendered.contains(secret) && !lines.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascades_still_running_are_reported_and_resumed_without_resending() {
    let fakes = Fakes::start().await;
    let mut env = fakes.env();
    env.retain(|k, _| k.starts_with("WABA_") || k.starts_with("SMSRU_"));
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let csv = "Анна,+79120000001\n";

    // WhatsApp accepts, no status comes, the window (30 s) outlasts the wait (1 s).
    let mut c = config(providers(&env), csv, &dir, &lines);
    c.window = Some(Duration::from_secs(30));
    c.wait = Duration::from_secs(1);
    let report = live::run(c).await.expect("first run");
    println!("{}", report.render(true));
    assert_eq!(report.ended, Ended::WaitOver);
    let anna = report.row("Анна").expect("row");
    assert_eq!(anna.outcome, "running");
    assert_eq!(anna.waiting_on.as_deref(), Some("whatsapp"));
    assert_eq!(anna.sent_on, s(&["whatsapp"]));
    assert_eq!(report.running, 1);
    assert!(report.render(true).contains("still running"));
    assert_eq!(fakes.graph.sends().len(), 1);

    // The same store and batch: the cascade is resumed, nothing is sent again.
    let mut c = config(providers(&env), csv, &dir, &lines);
    c.window = Some(Duration::from_secs(30));
    c.wait = Duration::ZERO;
    let report = live::run(c).await.expect("second run");
    let anna = report.row("Анна").expect("row");
    assert!(anna.resumed);
    assert_eq!(anna.outcome, "running");
    assert_eq!(fakes.graph.sends().len(), 1, "not sent twice");
    assert!(fakes.sms.sent().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_configured_channels_take_part() {
    let fakes = Fakes::start().await;
    let mut env = fakes.env();
    env.retain(|k, _| k.starts_with("TELEGRAM_"));
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let csv = "Анна,+79120000001,1001\nБорис,+79120000002\n";
    let mut c = config(providers(&env), csv, &dir, &lines);
    c.listen = None;
    c.text = "{name}, приём завтра в 10:00. Придёте?".into();
    let report = live::run(c).await.expect("run");
    println!("{}", report.render(true));
    assert_eq!(report.channels, s(&["telegram"]));
    assert_eq!(report.ended, Ended::AllEnded);
    assert_eq!(
        row_summary(&report, "Анна"),
        (
            "delivered".into(),
            Some("telegram".into()),
            1,
            s(&["telegram"])
        )
    );
    let boris = report.row("Борис").expect("row");
    assert_eq!(boris.outcome, "not sent");
    assert!(
        boris
            .note
            .as_deref()
            .is_some_and(|n| n.contains("no configured channel"))
    );
    assert!(fakes.graph.sends().is_empty() && fakes.sms.sent().is_empty());
    let sent = fakes.telegram.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].text.as_deref(),
        Some("Анна, приём завтра в 10:00. Придёте?")
    );
}
