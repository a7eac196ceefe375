//! The clinic demo's live mode against fake providers behind fault-injecting proxies: 5xx,
//! 429 storms with `Retry-After`, connections dropped before a request is read, answers lost,
//! cut short or spoiled after the provider accepted the message. Every reminder must end (none
//! lost), and every message a provider received twice for one patient must be a resend the
//! history marks `possible_duplicate`.
//!
//! A longer soak by hand: `MESSAGING_DEMO_FAULT_PATIENTS=500 cargo test -p messaging-tests
//! --test live_demo_faults -- --nocapture`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging::Phone;
use messaging::engine::CascadeRecord;
use messaging::store::{CascadeStore, SqliteStore};
use messaging_examples::live::{self, Ended, LiveConfig, Providers};
use messaging_tests::faults::{Fault, FaultyProxy};
use messaging_tests::max::FakeMax;
use messaging_tests::sms::{self as fake_sms, FakeSms, Provider};
use messaging_tests::telegram::{self as fake_tg, FakeTelegram};
use messaging_tests::waba::{self, FakeGraph, Scripted};

const PHONE_NUMBER_ID: &str = "106540352242922";
/// Longer than the first retry backoff (5 s), so that steps do resend after an unknown outcome.
const WINDOW: Duration = Duration::from_secs(6);

fn patients() -> usize {
    std::env::var("MESSAGING_DEMO_FAULT_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

/// Every third request on each proxy meets one of these, in turn.
const FAULTS: [Fault; 4] = [
    Fault::DropAnswer,
    Fault::RefuseConnection,
    Fault::CutAnswer,
    Fault::GarbageAnswer,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_loses_nothing_and_marks_every_duplicate_under_faults() {
    let n = patients();
    let graph = FakeGraph::start().await;
    let telegram = FakeTelegram::start().await;
    let max = FakeMax::start().await;
    let sms = FakeSms::start().await;
    let proxies = [
        FaultyProxy::in_front_of(&graph.base_url()).await,
        FaultyProxy::in_front_of(&telegram.url()).await,
        FaultyProxy::in_front_of(&max.url()).await,
        FaultyProxy::in_front_of(&sms.url()).await,
    ];
    for p in &proxies {
        p.every(3, &FAULTS);
    }
    // Provider-side storms on top: WhatsApp 5xx and 429 with Retry-After, Telegram 429 and 502,
    // SMS.ru 503.
    for _ in 0..3 {
        graph.script(Scripted::error(131000));
        graph.script(Scripted::error(130429).retry_after(1));
    }
    for _ in 0..3 {
        telegram.fail_next("sendMessage", fake_tg::Failure::TooManyRequests(1));
        telegram.fail_next("sendMessage", fake_tg::Failure::ServerError(502));
    }
    sms.fail_next(
        Provider::SmsRu,
        fake_sms::Failure::Http(503, "Service Unavailable".into()),
    );
    // Every fifth patient blocked the Telegram bot and every seventh the Max bot: their
    // cascades go further down.
    let mut csv = String::from("name,phone,telegram,max\n");
    let mut phones = Vec::with_capacity(n);
    for i in 0..n {
        let phone = format!("+7912{:07}", 100 + i);
        let (chat, user) = (10_000 + i as i64, 40_000 + i as i64);
        if i % 5 == 0 {
            telegram.block_chat(chat);
        }
        if i % 7 == 0 {
            max.block_user(user);
        }
        csv.push_str(&format!("P{i},{phone},{chat},{user}\n"));
        phones.push((phone, chat, user));
    }

    let env: HashMap<&str, String> = [
        ("WABA_TOKEN", waba::TOKEN.to_owned()),
        ("WABA_PHONE_NUMBER_ID", PHONE_NUMBER_ID.to_owned()),
        ("WABA_BASE_URL", proxies[0].base_url()),
        ("META_APP_SECRET", "meta-app-secret-faults".to_owned()),
        ("TELEGRAM_BOT_TOKEN", FakeTelegram::TOKEN.to_owned()),
        ("TELEGRAM_BASE_URL", proxies[1].url()),
        ("MAX_BOT_TOKEN", FakeMax::TOKEN.to_owned()),
        ("MAX_BASE_URL", proxies[2].url()),
        ("SMSRU_API_ID", FakeSms::SMSRU_API_ID.to_owned()),
        ("SMSRU_BASE_URL", proxies[3].url()),
        ("SMS_SENDER", "Clinic".to_owned()),
    ]
    .into_iter()
    .collect();
    let providers =
        Providers::from_lookup(|k| env.get(k).cloned()).expect("complete provider variables");
    let dir = tempfile::tempdir().expect("tempdir");
    let recipients = live::parse_recipients(&csv, "patients.csv").expect("valid CSV");
    let mut config = LiveConfig::new(providers, recipients, dir.path().join("live.sqlite"));
    config.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.window = Some(WINDOW);
    config.wait = Duration::from_secs(120);
    config.poll_interval = Duration::from_millis(200);
    config.batch = "faults".into();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    config.progress = Some(Arc::new(move |l: &str| {
        sink.lock().unwrap().push(l.to_owned())
    }));

    let run = live::start(config).await.expect("live run starts");
    let report = run.finish().await.expect("report");
    let rendered = report.render(true);
    println!("{rendered}");

    // Nothing lost: every reminder ended, none still running.
    assert_eq!(report.ended, Ended::AllEnded, "{rendered}");
    assert_eq!(report.running, 0, "{rendered}");
    assert_eq!(report.rows.len(), n);

    // What each provider received, per patient.
    let mut received: HashMap<(&str, String), usize> = HashMap::new();
    for (_, body) in graph.accepted() {
        let to = body["to"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('+')
            .to_owned();
        *received.entry(("whatsapp", to)).or_default() += 1;
    }
    for m in telegram.sent() {
        *received
            .entry(("telegram", m.chat_id.to_string()))
            .or_default() += 1;
    }
    for m in max.sent_messages() {
        let user = m.query.get("user_id").cloned().unwrap_or_default();
        *received.entry(("max", user)).or_default() += 1;
    }
    for m in sms.sent() {
        *received
            .entry(("smsru", m.to.trim_start_matches('+').to_owned()))
            .or_default() += 1;
    }

    let store = SqliteStore::open(&report.db)
        .await
        .expect("open the demo's store");
    let (mut repeats, mut marked_total) = (0, 0);
    for (phone, chat, user) in &phones {
        let id = live::notification_id("faults", &Phone::parse(phone).expect("phone"));
        let rec: CascadeRecord = store.get(&id).await.expect("get").expect("stored");
        assert!(
            rec.outcome().is_some(),
            "{id}: not ended: {:?}",
            rec.history
        );
        let digits = phone.trim_start_matches('+').to_owned();
        for (channel, key) in [
            ("whatsapp", digits.clone()),
            ("telegram", chat.to_string()),
            ("max", user.to_string()),
            ("smsru", digits.clone()),
        ] {
            let got = received.get(&(channel, key)).copied().unwrap_or(0);
            let marked = rec
                .attempts
                .iter()
                .filter(|a| a.channel.as_str() == channel && a.possible_duplicate)
                .count();
            assert!(
                got <= 1 + marked,
                "{id}: {channel} received it {got} times, {marked} resends marked: {:?}",
                rec.history
            );
            repeats += got.saturating_sub(1);
            marked_total += marked;
        }
    }
    let faulted: usize = proxies
        .iter()
        .map(|p| p.log().iter().filter(|f| **f != Fault::None).count())
        .sum();
    assert!(faulted >= 4, "the proxies injected {faulted} faults");
    println!(
        "{n} reminders, {faulted} requests faulted by the proxies, {repeats} repeated deliveries \
         to one patient on one channel, {marked_total} resends marked possible_duplicate; \
         outcomes {:?}",
        report.outcomes
    );
}
