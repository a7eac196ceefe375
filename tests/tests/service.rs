//! `messaging::service`: a service built from configuration. The documented example file is
//! loaded and built against the fake providers; a cascade runs end to end through a service
//! built from a string (a signed WhatsApp status on its listener, SMS status polling, Telegram
//! long polling into a user's sink); invalid configurations list every problem with its path,
//! and no secret reaches `Debug` or an error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging::service::{
    ChannelConfig, ConfigError, ProviderConfig, SecretString, Service, ServiceConfig, StoreConfig,
    TelegramConfig,
};
use messaging::sink::{EventSink, SinkError};
use messaging::webhook::hmac_sha256_hex;
use messaging::{
    ChannelKind, Content, Event, Notification, NotificationId, Outcome, Purpose, Recipient,
    Template,
};
use messaging_tests::max::FakeMax;
use messaging_tests::sms::{FakeSms, Provider};
use messaging_tests::telegram::FakeTelegram;
use messaging_tests::waba::{self, FakeGraph, Scripted};
use serde_json::json;

const EXAMPLE: &str = include_str!("../../examples/messaging.example.toml");
const APP_SECRET: &str = "meta-app-secret-service-test";
const PHONE_NUMBER_ID: &str = "106540352242922";

fn env(vars: &[(&str, String)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn problems(e: &ConfigError) -> Vec<String> {
    e.problems.iter().map(|p| p.to_string()).collect()
}

async fn wait_for<F: Fn() -> bool>(what: &str, within: Duration, check: F) {
    let end = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outcome(service: &Service, id: &str, within: Duration) -> Option<Outcome> {
    let id = NotificationId::from(id);
    let end = tokio::time::Instant::now() + within;
    loop {
        let o = service
            .engine()
            .status(&id)
            .await
            .expect("status")
            .and_then(|s| s.outcome);
        if o.is_some() || tokio::time::Instant::now() >= end {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A time zone whose local hour is 12 now (the service runs on the system clock).
fn midday_now() -> chrono_tz::Tz {
    use chrono::Timelike;
    let hour = i32::try_from(chrono::Utc::now().hour()).expect("an hour");
    // East of Greenwich by `offset` hours; the `Etc` zones name it with the sign reversed.
    let offset = (12 - hour + 36) % 24 - 12;
    let name = match offset {
        0 => "Etc/GMT".to_string(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    name.parse().expect("an Etc zone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_file_builds_and_sends_through_the_fake_providers() {
    let graph = FakeGraph::start().await;
    let telegram = FakeTelegram::start().await;
    let max = FakeMax::start().await;
    let sms = FakeSms::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The secrets and the fakes' URLs come from the environment, as the file says.
    let vars = env(&[
        (
            "MESSAGING__STORE__SQLITE",
            dir.path().join("example.sqlite").display().to_string(),
        ),
        ("MESSAGING__LISTENER__ADDRESS", "127.0.0.1:0".into()),
        ("MESSAGING__CHANNELS__WHATSAPP__TOKEN", waba::TOKEN.into()),
        ("MESSAGING__CHANNELS__WHATSAPP__BASE_URL", graph.base_url()),
        (
            "MESSAGING__CHANNELS__TELEGRAM__TOKEN",
            FakeTelegram::TOKEN.into(),
        ),
        ("MESSAGING__CHANNELS__TELEGRAM__BASE_URL", telegram.url()),
        ("MESSAGING__CHANNELS__MAX__TOKEN", FakeMax::TOKEN.into()),
        ("MESSAGING__CHANNELS__MAX__BASE_URL", max.url()),
        (
            "MESSAGING__CHANNELS__SMS__API_ID",
            FakeSms::SMSRU_API_ID.into(),
        ),
        ("MESSAGING__CHANNELS__SMS__BASE_URL", sms.url()),
    ]);
    let config = ServiceConfig::from_toml_with_env(EXAMPLE, vars).expect("the example is valid");
    assert_eq!(config.channels.len(), 4);
    assert_eq!(config.policies.len(), 2);
    assert_eq!(
        config
            .purposes
            .get(&Purpose::Authentication)
            .map(|p| p.as_str()),
        Some("codes")
    );
    let mut service = Service::build(config).await.expect("service");
    assert_eq!(service.channels(), ["whatsapp", "telegram", "max", "sms"]);
    let paths: Vec<String> = service.webhooks().iter().map(|w| w.shown()).collect();
    assert_eq!(
        paths,
        [
            "/webhooks/waba",
            "/webhooks/telegram",
            "/webhooks/max",
            "/webhooks/sms/sms/[secret]"
        ]
    );
    let addr = service.listen().await.expect("listen");
    assert!(addr.port() != 0);

    // A reminder goes out on WhatsApp (a template: a conversation cannot start with free
    // text), with the policy's deadline set. The example's quiet hours (21:00-09:00) would
    // hold it back at night: the patient lives where it is midday now.
    let n = Notification::new(
        "example-1",
        Recipient::with_phone("patient-1", "+79120000001")
            .expect("phone")
            .time_zone(midday_now()),
        Content::text("Анна, напоминаем о приёме завтра в 10:00.")
            .with_template(Template::new("hello_world", "en_US")),
    );
    let s = service.submit(n).await.expect("submit");
    assert!(s.new);
    assert_eq!(graph.accepted().len(), 1);
    let status = service
        .engine()
        .status(&"example-1".into())
        .await
        .expect("status")
        .expect("stored");
    assert_eq!(status.policy.as_str(), "reminders");

    // The listener serves the mounted webhooks: a Telegram call without the secret is refused.
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/webhooks/telegram"))
        .body("{}")
        .send()
        .await
        .expect("call");
    assert!(
        matches!(answer.status().as_u16(), 401 | 403),
        "{}",
        answer.status()
    );
    service.shutdown().await;
}

/// A sink that records what it is handed.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Event>>);

#[async_trait::async_trait]
impl EventSink for Recorder {
    async fn handle(&self, event: &Event) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_runs_end_to_end_through_a_service_built_from_a_string() {
    let graph = FakeGraph::start().await;
    let telegram = FakeTelegram::start().await;
    let sms = FakeSms::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"
[store]
sqlite = "{db}"

[listener]
address = "127.0.0.1:0"
unsigned_secret = "sms-hook-0123456789abcdef"

[channels.wa]
provider = "waba"
phone_number_id = "{PHONE_NUMBER_ID}"
token = "{wa_token}"
app_secret = "{APP_SECRET}"
base_url = "{wa_url}"

[channels.tg]
provider = "telegram"
token = "{tg_token}"
base_url = "{tg_url}"
# no webhook_secret: long polling

[channels.sms]
provider = "smsru"
api_id = "{sms_id}"
base_url = "{sms_url}"
status_poll = "200ms"

[policies.reminders]
steps = [
    {{ channel = "wa", evidence = "delivered", window = "2s" }},
    {{ channel = "sms", evidence = "delivered", window = "1h" }},
]
"#,
        db = dir.path().join("e2e.sqlite").display(),
        wa_token = waba::TOKEN,
        wa_url = graph.base_url(),
        tg_token = FakeTelegram::TOKEN,
        tg_url = telegram.url(),
        sms_id = FakeSms::SMSRU_API_ID,
        sms_url = sms.url(),
    );
    let config = ServiceConfig::from_toml(&text).expect("valid");
    let recorder = Arc::new(Recorder::default());
    let mut service = Service::builder(config)
        .sink(recorder.clone())
        .build()
        .await
        .expect("service");
    assert!(
        service.notes().iter().any(|n| n.contains("long polling")),
        "{:?}",
        service.notes()
    );
    let addr = service.listen().await.expect("listen");
    graph.script(Scripted::accepted("wamid.ANNA"));
    graph.script(Scripted::accepted("wamid.BORIS"));
    let content = || {
        Content::text("Напоминаем о приёме завтра в 10:00.")
            .with_template(Template::new("hello_world", "en_US"))
    };
    for (id, phone) in [("anna", "+79120000001"), ("boris", "+79120000002")] {
        let n = Notification::new(
            id,
            Recipient::with_phone(id, phone).expect("phone"),
            content(),
        );
        service.submit(n).await.expect("submit");
    }

    // Анна: a signed "delivered" on the service's listener ends her cascade on WhatsApp.
    let body = waba_status_body("wamid.ANNA", "delivered", "79120000001");
    let signature = format!(
        "sha256={}",
        hmac_sha256_hex(APP_SECRET.as_bytes(), body.as_bytes())
    );
    let ok = reqwest::Client::new()
        .post(format!("http://{addr}/webhooks/wa"))
        .header("x-hub-signature-256", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(ok.status(), 200);
    let anna = outcome(&service, "anna", Duration::from_secs(10)).await;
    assert!(
        matches!(&anna, Some(Outcome::Delivered { step: 0, .. })),
        "{anna:?}"
    );

    // Борис: no status within the 2 s window, the engine's timer moves on to SMS; its status
    // comes by the service's polling.
    wait_for("an SMS to Борис", Duration::from_secs(10), || {
        !sms.sent().is_empty()
    })
    .await;
    let sent = sms.sent();
    assert_eq!(sent[0].to, "79120000002");
    sms.set_status(Provider::SmsRu, &sent[0].id, "103");
    let boris = outcome(&service, "boris", Duration::from_secs(10)).await;
    assert!(
        matches!(&boris, Some(Outcome::Delivered { step: 1, .. })),
        "{boris:?}"
    );

    // Telegram long polling hands a person's message to the user's sink.
    telegram.push_text(4242, "Здравствуйте");
    wait_for(
        "the polled Telegram message",
        Duration::from_secs(10),
        || {
            recorder
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, Event::Inbound(m) if m.channel == ChannelKind::Telegram))
        },
    )
    .await;

    let started = std::time::Instant::now();
    service.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "graceful shutdown is quick: {:?}",
        started.elapsed()
    );
}

#[test]
fn every_problem_is_listed_at_once_with_its_path() {
    let text = r#"
regulated = "maybe"
colour = "blue"

[store]
sqlite = "x.sqlite"
postgres = "postgres://user:pw-in-url@db/x"

[listener]
address = "localhost"

[channels.tg]
provider = "telegram"

[channels.twilio]
provider = "twilio"
account_sid = "AC1"
auth_token = "twilio-token"
from = "12345"

[channels.sms]
provider = "smsru"
api_id = "k"
status_poll = 30

[channels.fax]
provider = "fax"

[policies.reminders]
quiet_hours = "late"
steps = [
    { channel = "tg", window = "0s" },
    { channel = "viber", window = "15x" },
    { channel = "sms", evidence = "seen", retry = { attempts = 0, tries = 2 } },
]

[purposes]
service = "nothing"
gossip = "reminders"
"#;
    let e = ServiceConfig::from_toml(text).unwrap_err();
    let listed = problems(&e);
    println!("{e}");
    for path in [
        "regulated",
        "colour",
        "store",
        "listener.address",
        "channels.tg.token",
        "channels.twilio.from",
        "channels.sms.status_poll",
        "channels.fax.provider",
        "policies.reminders.quiet_hours",
        "policies.reminders.steps[1].window",
        "policies.reminders.steps[2].evidence",
        "policies.reminders.steps[2].retry.attempts",
        "policies.reminders.steps[2].retry.tries",
        "purposes.gossip",
    ] {
        assert!(e.has(path), "no problem at {path}: {listed:#?}");
    }
    assert!(
        listed.contains(&"channels.tg.token: missing".to_owned()),
        "{listed:#?}"
    );
    assert!(
        listed.contains(&"colour: unknown key".to_owned()),
        "{listed:#?}"
    );
    assert!(e.to_string().starts_with("invalid configuration ("));

    // References are checked once the values are readable.
    let text = r#"
default_policy = "nope"
[store]
sqlite = "x.sqlite"
[channels.tg]
provider = "telegram"
token = "1:abc"
[channels.sms]
provider = "smsru"
api_id = "k"
[policies.reminders]
deadline = "20h"
steps = [
    { channel = "tg", window = "0s" },
    { channel = "viber" },
]
[purposes]
service = "nothing"
"#;
    let e = ServiceConfig::from_toml(text).unwrap_err();
    let listed = problems(&e);
    for expected in [
        "default_policy: unknown policy \"nope\"",
        "policies.reminders.steps[0].window: must be longer than zero",
        "policies.reminders.steps[1].channel: unknown channel \"viber\" (configured: tg, sms)",
        "purposes.service: unknown policy \"nothing\"",
    ] {
        assert!(
            listed.contains(&expected.to_owned()),
            "{expected}: {listed:#?}"
        );
    }
    assert!(
        e.has("listener.unsigned_secret"),
        "SMS.ru signs nothing: {listed:#?}"
    );
}

#[test]
fn a_syntax_error_is_one_problem_with_its_line_and_no_secret() {
    let text = "[store]\nsqlite = \"x\"\n[channels.tg]\ntoken = \"123:very-secret-token\" oops\n";
    let e = ServiceConfig::from_toml(text).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    assert_eq!(e.problems[0].path, "line 4");
    assert!(!e.to_string().contains("very-secret-token"), "{e}");
}

#[test]
fn unknown_keys_are_errors_at_every_level() {
    let base = r#"
[store]
sqlite = "x.sqlite"
[channels.tg]
provider = "telegram"
token = "1:abc"
receive = "none"
[policies.p]
steps = [{ channel = "tg" }]
"#;
    assert!(ServiceConfig::from_toml(base).is_ok());
    for (extra, path) in [
        ("stores = 1\n", "stores"),
        ("[listener]\nadress = \"127.0.0.1:1\"\n", "listener.adress"),
        ("[limits]\nmax_bodies = 5\n", "limits.max_bodies"),
        ("[engine]\nhealthy = true\n", "engine.healthy"),
    ] {
        let text = format!("{extra}{base}");
        let text = if extra.starts_with('[') {
            format!("{base}{extra}")
        } else {
            text
        };
        let e = ServiceConfig::from_toml(&text).unwrap_err();
        assert!(e.has(path), "{path}: {e}");
        assert_eq!(e.problems[0].message, "unknown key", "{e}");
    }
}

#[test]
fn the_environment_sets_and_overrides_keys() {
    let text = r#"
[store]
sqlite = "x.sqlite"
[channels.tg]
provider = "telegram"
receive = "none"
[policies.p]
steps = [{ channel = "tg", window = "15m" }]
"#;
    // The token is missing from the file...
    let e = ServiceConfig::from_toml(text).unwrap_err();
    assert_eq!(problems(&e), ["channels.tg.token: missing"]);
    // ...the environment supplies it, overrides a step's window and sets a number and a flag.
    let vars = env(&[
        ("MESSAGING__CHANNELS__TG__TOKEN", "123:from-env".into()),
        ("MESSAGING__POLICIES__P__STEPS__0__WINDOW", "30m".into()),
        ("MESSAGING__LIMITS__CONCURRENCY", "8".into()),
        ("MESSAGING__REGULATED", "true".into()),
        ("UNRELATED", "x".into()),
    ]);
    let c = ServiceConfig::from_toml_with_env(text, vars).expect("valid");
    assert_eq!(
        c.policies[0].policy.steps[0].window,
        Duration::from_secs(1800)
    );
    assert_eq!(c.limits.concurrency, Some(8));
    assert!(c.regulated);
    assert!(!format!("{c:?}").contains("from-env"));

    // A variable naming no key, or a wrong value, is a problem with its path.
    let vars = env(&[
        ("MESSAGING__CHANNELS__TG__TOKEN", "123:from-env".into()),
        ("MESSAGING__CHANNELS__TG__TOKNE", "x".into()),
        ("MESSAGING__POLICIES__P__STEPS__3__WINDOW", "1m".into()),
        ("MESSAGING__LIMITS__CONCURRENCY", "many".into()),
    ]);
    let e = ServiceConfig::from_toml_with_env(text, vars).unwrap_err();
    for path in [
        "channels.tg.tokne",
        "policies.p.steps[3]",
        "limits.concurrency",
    ] {
        assert!(e.has(path), "{path}: {e}");
    }
}

#[test]
fn serde_reads_any_format_with_the_same_checks() {
    let c: ServiceConfig = serde_json::from_value(json!({
        "store": {"sqlite": "x.sqlite"},
        "channels": {"tg": {"provider": "telegram", "token": "1:abc", "receive": "none"}},
        "policies": {"p": {"steps": [{"channel": "tg", "window": "15m"}]}}
    }))
    .expect("valid");
    assert_eq!(c.channels[0].id.as_str(), "tg");
    let e = serde_json::from_value::<ServiceConfig>(json!({
        "store": {"sqlite": "x.sqlite"},
        "channels": {"tg": {"provider": "telegram"}},
        "policies": {"p": {"steps": [{"channel": "tg", "windw": "15m"}]}}
    }))
    .unwrap_err()
    .to_string();
    assert!(e.contains("channels.tg.token: missing"), "{e}");
    assert!(e.contains("policies.p.steps[0].windw: unknown key"), "{e}");
}

#[tokio::test]
async fn no_secret_reaches_debug_or_an_error() {
    let secrets = [
        "waba-token-SECRET1",
        "app-secret-SECRET2",
        "123:tg-token-SECRET3",
        "tg_hook_SECRET4",
        "max-token-SECRET5",
        "sms-key-SECRET6",
        "twilio-token-SECRET7",
        "postgres-pw-SECRET8",
        "unsigned-secret-SECRET9",
    ];
    let text = format!(
        r#"
[store]
postgres = "postgres://app:{pg}@127.0.0.1:1/x"
[listener]
unsigned_secret = "{unsigned}"
[channels.wa]
provider = "waba"
phone_number_id = "1"
token = "{wa}"
app_secret = "{app}"
[channels.tg]
provider = "telegram"
token = "{tg}"
webhook_secret = "{hook}"
[channels.max]
provider = "max"
token = "{max}"
[channels.sms]
provider = "smsru"
api_id = "{sms}"
[channels.twilio]
provider = "twilio"
account_sid = "AC1"
auth_token = "{twilio}"
from = "+15005550006"
[policies.p]
steps = [{{ channel = "wa" }}, {{ channel = "sms" }}]
"#,
        wa = secrets[0],
        app = secrets[1],
        tg = secrets[2],
        hook = secrets[3],
        max = secrets[4],
        sms = secrets[5],
        twilio = secrets[6],
        pg = secrets[7],
        unsigned = secrets[8],
    );
    let config = ServiceConfig::from_toml(&text).expect("valid");
    let shown = format!("{config:?}");
    for s in secrets {
        assert!(!shown.contains(s), "{s} in {shown}");
    }
    // A store that cannot be reached: the error names no password.
    let e = Service::build(config).await.unwrap_err().to_string();
    for s in secrets {
        assert!(!e.contains(s), "{s} in {e}");
    }

    // Secrets of the wrong shape or type: the problems name the key, never the value.
    let bad = text
        .replace(secrets[3], "tg hook SECRET4 with spaces")
        .replace(&format!("\"{}\"", secrets[5]), "[\"sms-key-SECRET6\"]")
        .replace(secrets[8], "short-SECRET9");
    let e = ServiceConfig::from_toml(&bad).unwrap_err();
    let listed = e.to_string();
    for path in [
        "channels.tg.webhook_secret",
        "channels.sms.api_id",
        "listener.unsigned_secret",
    ] {
        assert!(e.has(path), "{path}: {listed}");
    }
    assert!(!listed.contains("SECRET"), "{listed}");
}

#[tokio::test]
async fn a_configuration_built_in_code_is_checked_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServiceConfig::new(StoreConfig::Sqlite {
        path: dir.path().join("code.sqlite"),
    });
    let tg = || {
        ChannelConfig::new(
            "tg",
            ProviderConfig::Telegram(TelegramConfig::new(SecretString::from("1:abc"))),
        )
    };
    config.channels = vec![tg(), tg()];
    let e = Service::build(config).await.unwrap_err().to_string();
    assert!(
        e.contains("channels.tg: a second channel with this id"),
        "{e}"
    );
    assert!(e.contains("policies: no policy configured"), "{e}");
}
