//! `clinic-reminders --live --metrics` end to end, against the in-process fake providers: the
//! live mode serves the process's Prometheus page at `/metrics` on its webhook listener; after
//! a run, the page's counters agree with the run's table (sends, deliveries and failures per
//! channel, outcomes), and hold no secret.
//!
//! Alone in its test binary: the Prometheus recorder is the process's one global recorder.

use std::collections::HashMap;
use std::time::Duration;

use messaging::metrics as m;
use messaging::webhook::hmac_sha256_hex;
use messaging_examples::live::{self, Ended, LiveConfig, Providers};
use messaging_examples::observability;
use messaging_tests::max::FakeMax;
use messaging_tests::sms::FakeSms;
use messaging_tests::telegram::FakeTelegram;
use messaging_tests::waba::{self, FakeGraph, Scripted};
use serde_json::json;

const APP_SECRET: &str = "meta-app-secret-live-metrics";
const PHONE_NUMBER_ID: &str = "106540352242922";
const SMS_SECRET: &str = "sms-hook-0123456789abcdef";

/// One sample of the page: its name, its labels, its value.
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Reads Prometheus' text format (the subset the exporter writes).
fn parse(page: &str) -> Vec<Sample> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (head, value) = line.rsplit_once(' ').expect("name and value");
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (head, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").expect("label");
                    (k.to_owned(), v.trim_end_matches('"').to_owned())
                })
                .collect();
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// The sum of `name` over the samples whose labels include `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_page_agrees_with_the_run_table() {
    let handle = observability::install_prometheus().expect("the only recorder");
    let (graph, telegram, max, sms) = (
        FakeGraph::start().await,
        FakeTelegram::start().await,
        FakeMax::start().await,
        FakeSms::start().await,
    );
    let env: HashMap<&str, String> = [
        ("WABA_TOKEN", waba::TOKEN.to_owned()),
        ("WABA_PHONE_NUMBER_ID", PHONE_NUMBER_ID.to_owned()),
        ("WABA_BASE_URL", graph.base_url()),
        ("META_APP_SECRET", APP_SECRET.to_owned()),
        ("TELEGRAM_BOT_TOKEN", FakeTelegram::TOKEN.to_owned()),
        ("TELEGRAM_BASE_URL", telegram.url()),
        ("MAX_BOT_TOKEN", FakeMax::TOKEN.to_owned()),
        ("MAX_BASE_URL", max.url()),
        ("SMSRU_API_ID", FakeSms::SMSRU_API_ID.to_owned()),
        ("SMSRU_BASE_URL", sms.url()),
    ]
    .into_iter()
    .collect();
    let providers = Providers::from_lookup(|k| env.get(k).cloned()).expect("providers");
    // Анна: WhatsApp delivers. Борис: not on WhatsApp, Telegram takes it. Глеб: not on
    // WhatsApp, blocked both bots, SMS delivers (by status polling).
    graph.script(Scripted::accepted("wamid.ANNA"));
    graph.script_error(131026);
    graph.script_error(131026);
    telegram.block_chat(1004);
    max.block_user(4004);
    let csv = "Анна,+79120000001\nБорис,+79120000002,1002\nГлеб,+79120000004,1004,4004\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let patients = live::parse_recipients(csv, "patients.csv").expect("CSV");
    let mut config = LiveConfig::new(providers, patients, dir.path().join("live.sqlite"));
    config.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.window = Some(Duration::from_secs(10));
    config.wait = Duration::from_secs(20);
    config.poll_interval = Duration::from_millis(200);
    config.batch = "metrics".into();
    config.sms_webhook_secret = Some(SMS_SECRET.into());
    config.metrics = Some(handle);
    let run = live::start(config).await.expect("live run starts");
    let addr = run.local_addr().expect("listening");
    let http = reqwest::Client::new();

    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": PHONE_NUMBER_ID},
            "statuses": [{"id": "wamid.ANNA", "status": "delivered",
                          "timestamp": chrono::Utc::now().timestamp().to_string(),
                          "recipient_id": "79120000001"}]
        }}]}]
    })
    .to_string();
    let signature = format!(
        "sha256={}",
        hmac_sha256_hex(APP_SECRET.as_bytes(), body.as_bytes())
    );
    let answer = http
        .post(format!("http://{addr}/webhooks/waba"))
        .header("x-hub-signature-256", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("webhook call");
    assert_eq!(answer.status(), 200);
    // Глеб's SMS report comes by the SMS.ru callback (status polling runs only while the run
    // is being finished, and the page is read before).
    let gleb_sms = sms
        .sent()
        .into_iter()
        .find(|m| m.to == "79120000004")
        .expect("an SMS to Глеб")
        .id;
    let callback: String = form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "data[0]",
            &format!(
                "sms_status\n{gleb_sms}\n103\n{}",
                chrono::Utc::now().timestamp()
            ),
        )
        .finish();
    let answer = http
        .post(format!("http://{addr}/webhooks/sms/smsru/{SMS_SECRET}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(callback)
        .send()
        .await
        .expect("callback");
    assert_eq!(answer.status(), 200);

    // Every cascade ends; then the page is read, while the listener still serves.
    let ids: Vec<_> = run.notification_ids().into_iter().cloned().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut ended = 0;
        for id in &ids {
            let st = run.engine().status(id).await.expect("status");
            if st.is_some_and(|s| s.outcome.is_some()) {
                ended += 1;
            }
        }
        if ended == ids.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ended} of {} ended",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("page");
    let report = run.finish().await.expect("report");
    let table = report.render(true);
    println!("{table}\n{page}");
    assert_eq!(report.ended, Ended::AllEnded);
    let samples = parse(&page);

    // The counters, channel by channel, against the run's table.
    assert_eq!(report.by_channel.len(), 4);
    for (channel, figures) in &report.by_channel {
        let ch = [(m::CHANNEL_ID, channel.as_str())];
        assert_eq!(
            sum(&samples, m::SENDS, &ch),
            figures.sends as f64,
            "{channel}: sends"
        );
        let failures = sum(&samples, m::FAILURES, &ch)
            - sum(
                &samples,
                m::FAILURES,
                &[ch[0], (m::KIND, "outcome_unknown")],
            );
        assert_eq!(failures, figures.failed as f64, "{channel}: failures");
        assert_eq!(
            sum(&samples, m::OUTCOMES, &[ch[0], (m::OUTCOME, "delivered")]),
            figures.delivered as f64,
            "{channel}: delivered"
        );
    }
    for (outcome, n) in &report.outcomes {
        assert_eq!(
            sum(&samples, m::OUTCOMES, &[(m::OUTCOME, outcome.as_str())]),
            *n as f64,
            "outcome {outcome}"
        );
    }
    // The run as it was scripted.
    let figures = |ch: &str| {
        let f = &report.by_channel[ch];
        (f.sends, f.delivered, f.failed)
    };
    assert_eq!(figures("whatsapp"), (3, 1, 2));
    assert_eq!(figures("telegram"), (2, 1, 1));
    assert_eq!(figures("max"), (1, 0, 1));
    assert_eq!(figures("smsru"), (1, 1, 0));
    assert_eq!(
        sum(
            &samples,
            m::FAILURES,
            &[(m::CHANNEL_ID, "whatsapp"), (m::KIND, "unreachable")]
        ),
        2.0
    );
    assert_eq!(
        sum(
            &samples,
            m::DELIVERY_REPORTS,
            &[(m::CHANNEL_ID, "whatsapp"), (m::STATUS, "delivered")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &samples,
            m::DELIVERY_REPORTS,
            &[(m::CHANNEL_ID, "smsru"), (m::STATUS, "delivered")]
        ),
        1.0
    );
    // Histograms (summaries on this exporter): a time to delivery for the two reports, a
    // latency for every provider request.
    let count =
        |name: &str, labels: &[(&str, &str)]| sum(&samples, &format!("{name}_count"), labels);
    assert_eq!(
        count(m::TIME_TO_DELIVERY, &[(m::CHANNEL_ID, "whatsapp")]),
        1.0
    );
    assert_eq!(count(m::TIME_TO_DELIVERY, &[(m::CHANNEL_ID, "smsru")]), 1.0);
    assert_eq!(count(m::SEND_DURATION, &[(m::CHANNEL_ID, "whatsapp")]), 3.0);
    assert!(
        count(
            m::PROVIDER_REQUEST_DURATION,
            &[(m::REQUEST, "telegram sendMessage")]
        ) >= 2.0
    );
    // Gauges: every channel's health is published.
    for ch in ["whatsapp", "telegram", "max", "smsru"] {
        assert!(
            samples.iter().any(|s| s.name == m::CHANNEL_HEALTH
                && s.labels.get(m::CHANNEL_ID).map(String::as_str) == Some(ch)),
            "{ch}: no health gauge"
        );
    }
    // Every name on the page is documented, and no secret is on it.
    for s in &samples {
        let base = s
            .name
            .trim_end_matches("_count")
            .trim_end_matches("_sum")
            .trim_end_matches("_bucket");
        assert!(m::ALL.contains(&base), "undocumented metric {}", s.name);
    }
    for secret in [
        waba::TOKEN,
        APP_SECRET,
        FakeTelegram::TOKEN,
        FakeMax::TOKEN,
        FakeSms::SMSRU_API_ID,
        SMS_SECRET,
    ] {
        assert!(!page.contains(secret), "the page holds a secret");
    }
    assert!(
        !page.contains("79120000001"),
        "the page holds a phone number"
    );
}
