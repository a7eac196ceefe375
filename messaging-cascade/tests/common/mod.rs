//! The scripted run both observability tests watch: a delivery, a failure with reroute, a
//! window that expires, a skip, a late report, an unknown outcome resent as a possible duplicate
//! and a channel going down. The message text carries a marker, and the failing channel's error
//! quotes its token and the text (as a provider echoing a request would).

#![allow(dead_code)] // each test binary uses its part

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use messaging_cascade::*;
use messaging_core::testkit::StubChannel;
use messaging_core::*;

pub const TEXT_MARKER: &str = "TEXT-MARKER-7f3a";
pub const TOKEN_MARKER: &str = "SECRET-TOKEN-91c2";
pub const PHONE: &str = "+79123456789";

pub fn t0() -> DateTime<Utc> {
    // Monday 2026-03-02 12:00 Moscow time: no quiet hours.
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

pub struct World {
    pub clock: ManualClock,
    pub wa: Arc<StubChannel>,
    pub tg: Arc<StubChannel>,
    pub sms: Arc<StubChannel>,
    pub engine: Engine,
}

pub fn world() -> World {
    let clock = ManualClock::new(t0());
    let mk = |id: &str, kind| Arc::new(StubChannel::new(id, kind).with_clock(clock.clone()));
    let (wa, tg, sms) = (
        mk("wa", ChannelKind::WhatsApp),
        mk("tg", ChannelKind::Telegram),
        mk("sms", ChannelKind::Sms),
    );
    let engine = Engine::builder()
        .clock(clock.clone())
        .channel(wa.clone())
        .channel(tg.clone())
        .channel(sms.clone())
        .policy(CascadePolicy::new(
            "clinic",
            vec![
                Step::new("wa").on_unknown_outcome(UnknownOutcome::Resend),
                Step::new("tg"),
                Step::new("sms"),
            ],
        ))
        .build()
        .unwrap();
    World {
        clock,
        wa,
        tg,
        sms,
        engine,
    }
}

pub fn notice(id: &str, telegram: bool) -> Notification {
    let mut r = Recipient::with_phone(format!("patient-{id}"), PHONE)
        .unwrap()
        .name("Анна");
    if telegram {
        r = r.address(Address::Telegram(42));
    }
    Notification::new(
        id,
        r,
        Content::text(format!(
            "Анна, напоминаем о приёме завтра в 10:00. {TEXT_MARKER}"
        )),
    )
}

impl World {
    async fn message_id(&self, id: &str, attempt: usize) -> ProviderMessageId {
        self.engine
            .status(&id.into())
            .await
            .unwrap()
            .unwrap()
            .attempts[attempt]
            .provider_message_id
            .clone()
            .unwrap_or_else(|| panic!("{id}: attempt {attempt} has a message id"))
    }

    async fn delivered(&self, kind: ChannelKind, pmid: ProviderMessageId) {
        let report = DeliveryReport::new(kind, pmid, DeliveryStatus::Delivered, self.clock.now());
        self.engine
            .handle_event(&Event::Delivery(report))
            .await
            .unwrap();
    }

    async fn outcome(&self, id: &str) -> Option<Outcome> {
        self.engine
            .status(&id.into())
            .await
            .unwrap()
            .unwrap()
            .outcome
    }
}

/// The scripted run. Returns every cascade's outcome.
pub async fn run(w: &World) -> BTreeMap<&'static str, Option<Outcome>> {
    // n1: WhatsApp delivers 45 s after accepting.
    w.engine.submit(notice("n1", true)).await.unwrap();
    w.clock.advance(Duration::from_secs(45));
    w.delivered(ChannelKind::WhatsApp, w.message_id("n1", 0).await)
        .await;

    // n2: WhatsApp refuses (the provider quotes the token and the text); Telegram takes it.
    w.wa.push_error(ChannelError::unreachable(format!(
        "provider said: bad request with token {TOKEN_MARKER}: {TEXT_MARKER}"
    )));
    w.engine.submit(notice("n2", true)).await.unwrap();

    // n4: WhatsApp's answer is lost; the step resends (after its backoff, on the tick below),
    // marked possible duplicate.
    w.wa.push_error(ChannelError::outcome_unknown("answer lost"));
    w.engine.submit(notice("n4", false)).await.unwrap();

    // n3: WhatsApp accepts and stays silent: the window expires, Telegram is skipped (no
    // address), SMS delivers.
    w.engine.submit(notice("n3", false)).await.unwrap();
    w.clock.advance(Duration::from_secs(3601));
    w.engine.tick().await.unwrap();
    w.clock.advance(Duration::from_secs(30));
    w.delivered(ChannelKind::Sms, w.message_id("n3", 1).await)
        .await;
    let n4_resend = w
        .engine
        .status(&"n4".into())
        .await
        .unwrap()
        .unwrap()
        .attempts
        .len()
        - 1;
    w.delivered(ChannelKind::WhatsApp, w.message_id("n4", n4_resend).await)
        .await;
    // ...and WhatsApp's report for n3 comes after the end: a late report.
    w.delivered(ChannelKind::WhatsApp, w.message_id("n3", 0).await)
        .await;

    // n5: WhatsApp is down (the account is restricted); Telegram takes it. n6: WhatsApp is
    // skipped as down.
    w.wa.push_error(ChannelError::channel_down("account restricted"));
    w.engine.submit(notice("n5", true)).await.unwrap();
    w.engine.submit(notice("n6", true)).await.unwrap();

    // A later tick reads the gauges again: nothing runs.
    w.clock.advance(Duration::from_secs(60));
    w.engine.tick().await.unwrap();

    let mut out = BTreeMap::new();
    for id in ["n1", "n2", "n3", "n4", "n5", "n6"] {
        out.insert(id, w.outcome(id).await);
    }
    out
}

pub fn delivered_by(out: &BTreeMap<&str, Option<Outcome>>, id: &str) -> String {
    match &out[id] {
        Some(Outcome::Delivered { channel, .. }) => channel.to_string(),
        other => panic!("{id}: {other:?}"),
    }
}

pub fn check_outcomes(out: &BTreeMap<&str, Option<Outcome>>) {
    let by: Vec<String> = out.keys().map(|id| delivered_by(out, id)).collect();
    // n1..n6 in order.
    assert_eq!(by, ["wa", "tg", "sms", "wa", "tg", "tg"], "{out:?}");
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
