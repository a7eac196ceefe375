//! `messaging report` on a SQLite database written by the engine: the built binary, run as a
//! child process, prints the numbers of the cascades the test drove (a public contract).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use messaging::store::SqliteStore;
use messaging::testkit::StubChannel;
use messaging::{
    Capabilities, CascadePolicy, Channel, ChannelError, ChannelId, ChannelKind, Clock, Content,
    Cost, DeliveryReport, DeliveryStatus, Engine, Event, Evidence, ManualClock, Notification,
    OutboundMessage, Recipient, SendReceipt, Step,
};
use serde_json::{Value, json};

/// Runs `messaging` with `args`; returns stdout, stderr and the exit code.
fn run(args: &[&str]) -> (String, String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_messaging"))
        .args(args)
        .env_remove("MESSAGING_DATABASE_URL")
        .output()
        .expect("the messaging binary runs");
    (
        String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().expect("exited normally"),
    )
}

/// Runs `messaging` with `args`; returns the parsed stdout, all output and the exit code.
fn messaging(args: &[&str]) -> (Value, String, i32) {
    let (stdout, stderr, code) = run(args);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("stdout is one JSON object ({e}): {stdout:?}; stderr: {stderr}")
    });
    (json, format!("{stdout}{stderr}"), code)
}

/// A stub channel whose accepted sends carry a cost estimate.
#[derive(Debug)]
struct Priced {
    inner: StubChannel,
    cost: Cost,
}

#[async_trait]
impl Channel for Priced {
    fn id(&self) -> &ChannelId {
        self.inner.id()
    }
    fn kind(&self) -> ChannelKind {
        self.inner.kind()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let receipt = self.inner.send(message).await?;
        Ok(receipt.cost(self.cost.clone()))
    }
}

fn reminder(id: &str, policy: &str) -> Notification {
    Notification::new(
        id,
        Recipient::with_phone(format!("patient-{id}"), "+79123456789").expect("phone"),
        Content::text("Анна, напоминаем: приём завтра в 10:00. Придёте?"),
    )
    .policy(policy)
}

/// Drives four cascades, starting 50 minutes ago: one delivered on WhatsApp, one delivered by
/// SMS after WhatsApp refused it, one whose 10-minute window closed 40 minutes ago with no
/// engine running (stuck), one still in its 5-hour window. Returns when it started.
async fn clinic_day(path: &std::path::Path) -> DateTime<Utc> {
    let t0 = (Utc::now() - chrono::Duration::minutes(50)).trunc_subsecs(0);
    let clock = ManualClock::new(t0);
    let wa = Arc::new(Priced {
        inner: StubChannel::new("wa", ChannelKind::WhatsApp).with_clock(clock.clone()),
        cost: Cost::new(0.5, "EUR"),
    });
    let sms = Arc::new(Priced {
        inner: StubChannel::new("sms", ChannelKind::Sms).with_clock(clock.clone()),
        cost: Cost::new(2.5, "RUB"),
    });
    let store = SqliteStore::open(path).await.expect("open sqlite");
    let engine = Engine::builder()
        .clock(clock.clone())
        .store(Arc::new(store))
        .channel(wa.clone())
        .channel(sms.clone())
        .without_health()
        .policy(CascadePolicy::new(
            "short",
            vec![
                Step::new("wa").window(Duration::from_secs(600)),
                Step::new("sms").wait_for(Evidence::Accepted),
            ],
        ))
        .policy(CascadePolicy::new(
            "long",
            vec![Step::new("wa").window(Duration::from_secs(5 * 3600))],
        ))
        .default_policy("short")
        .build()
        .expect("engine");

    wa.inner.push_ok();
    wa.inner
        .push_error(ChannelError::unreachable("not on WhatsApp"));
    for (id, policy) in [
        ("n-delivered", "short"),
        ("n-fallback", "short"),
        ("n-stuck", "short"),
        ("n-running", "long"),
    ] {
        engine.submit(reminder(id, policy)).await.expect("submit");
    }
    clock.advance(Duration::from_secs(60));
    engine
        .handle_event(&Event::Delivery(DeliveryReport::new(
            ChannelKind::WhatsApp,
            "wa-1",
            DeliveryStatus::Delivered,
            clock.now(),
        )))
        .await
        .expect("delivery report");
    let outcome = |id: &str| {
        let engine = &engine;
        let id = id.to_owned();
        async move {
            engine
                .status(&id.as_str().into())
                .await
                .expect("status")
                .expect("known")
                .outcome
                .map(|o| o.name())
        }
    };
    assert_eq!(outcome("n-delivered").await, Some("delivered"));
    assert_eq!(outcome("n-fallback").await, Some("delivered"));
    assert_eq!(outcome("n-stuck").await, None);
    assert_eq!(outcome("n-running").await, None);
    assert_eq!(wa.inner.send_count(), 4);
    assert_eq!(sms.inner.send_count(), 1);
    t0
}

#[test]
fn report_prints_running_stuck_ended_and_cost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("clinic.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let t0 = rt.block_on(clinic_day(&path));
    drop(rt);
    let db = path.to_str().expect("UTF-8 path");

    let (v, _, code) = messaging(&["report", "--database", db]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["database"], json!({ "kind": "sqlite", "path": db }));
    assert_eq!(v["running"]["total"], 2);
    assert_eq!(
        v["running"]["by_phase_and_channel"],
        json!([{ "phase": "waiting", "channel": "wa", "count": 2 }])
    );
    assert_eq!(v["stuck"]["grace_secs"], 300);
    assert_eq!(v["stuck"]["total"], 1);
    let stuck = &v["stuck"]["oldest"][0];
    assert_eq!(stuck["notification_id"], "n-stuck");
    assert_eq!(stuck["policy"], "short");
    assert_eq!(stuck["phase"], "waiting");
    assert_eq!(stuck["channel"], "wa");
    let window_end = t0 + chrono::Duration::minutes(10);
    for key in ["due_at", "deadline", "overdue_since"] {
        let at: DateTime<Utc> = stuck[key]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{key} is a time: {stuck}"));
        assert_eq!(at, window_end, "{key}");
    }
    assert_eq!(v["ended"]["total"], 2);
    assert_eq!(
        v["ended"]["by_outcome_and_channel"],
        json!([
            { "outcome": "delivered", "channel": "sms", "count": 1 },
            { "outcome": "delivered", "channel": "wa", "count": 1 },
        ])
    );
    let day = t0.date_naive().to_string();
    assert_eq!(
        v["cost"]["by_channel_and_day"],
        json!([
            { "channel": "sms", "day": day, "currency": "RUB", "amount": 2.5, "sends": 1 },
            { "channel": "wa", "day": day, "currency": "EUR", "amount": 1.5, "sends": 3 },
        ])
    );
    assert_eq!(
        v["cost"]["total_by_currency"],
        json!([
            { "currency": "EUR", "amount": 1.5, "sends": 3 },
            { "currency": "RUB", "amount": 2.5, "sends": 1 },
        ])
    );

    // Both ended 49 and 50 minutes ago: not in the last 30 minutes.
    let (v, _, code) = messaging(&["report", "--database", db, "--since", "30m"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ended"]["total"], 0);
    assert_eq!(v["ended"]["by_outcome_and_channel"], json!([]));

    // As of two minutes after the start, with days of cost that have none.
    let at = (t0 + chrono::Duration::minutes(2)).to_rfc3339();
    let (v, _, code) = messaging(&[
        "report",
        "--database",
        db,
        "--at",
        &at,
        "--stuck-grace",
        "0s",
        "--day-from",
        "2001-01-01",
        "--day-to",
        "2001-01-02",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["stuck"]["total"], 0, "nothing is overdue yet at {at}");
    assert_eq!(v["ended"]["total"], 2, "both ended in the hour before {at}");
    assert_eq!(v["cost"]["first_day"], "2001-01-01");
    assert_eq!(v["cost"]["by_channel_and_day"], json!([]));
}

#[test]
fn report_errors_are_json_and_never_show_a_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nowhere.db");
    let (v, _, code) = messaging(&["report", "--database", missing.to_str().expect("path")]);
    assert_eq!(code, 1);
    assert_eq!(v["error"]["kind"], "database");
    assert!(
        !missing.exists(),
        "a mistyped path does not create a database"
    );

    // Nothing listens on port 1.
    let (v, raw, code) = messaging(&[
        "report",
        "--database",
        "postgres://clinic:hunter2-Pa55@127.0.0.1:1/clinic",
    ]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "database");
    assert!(!raw.contains("hunter2"), "{raw}");

    let (stdout, stderr, code) = run(&[
        "report",
        "--database",
        "host=127.0.0.1 port=1 user=clinic password=hunter2-Pa55 dbname=clinic",
        "--since",
        "soon",
    ]);
    assert_eq!(code, 2, "a usage error");
    assert!(stderr.contains("soon"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("hunter2"));
    // A usage error that quotes the connection string itself.
    let (stdout, stderr, code) = run(&[
        "report",
        "--database",
        "postgres://clinic:hunter2-Pa55@127.0.0.1:1/clinic",
        "postgres://clinic:hunter2-Pa55@127.0.0.1:1/clinic",
    ]);
    assert_eq!(code, 2, "a usage error");
    assert!(!format!("{stdout}{stderr}").contains("hunter2"), "{stderr}");
}
