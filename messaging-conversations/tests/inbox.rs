//! The unified inbox: resolution, threads across channels, replies on the same channel, the
//! WhatsApp window, replied evidence, stop words, de-duplication and erasure.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use messaging_cascade::engine::Outcome;
use messaging_cascade::store::MemoryStore;
use messaging_cascade::*;
use messaging_conversations::identity::*;
use messaging_conversations::inbox::*;
use messaging_core::StoreError;
use messaging_core::consent::{MemoryOptOutStore, OptOutStore, contact_key};
use messaging_core::gate::{GateDecision, SendContext, SendGate};
use messaging_core::sink::EventSink;
use messaging_core::testkit::StubChannel;
use messaging_core::window::{WindowStore, whatsapp_window_key};
use messaging_core::*;
use messaging_hygiene::governor::{Governor, GovernorConfig};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn phone(s: &str) -> Phone {
    Phone::parse(s).unwrap()
}

const PATIENT_PHONE: &str = "+79123456789";

struct World {
    clock: ManualClock,
    identity: Arc<MemoryIdentityStore>,
    windows: Arc<MemoryStore>,
    opt_outs: Arc<MemoryOptOutStore>,
    wa: Arc<StubChannel>,
    wa_bulk: Arc<StubChannel>,
    tg: Arc<StubChannel>,
    sms: Arc<StubChannel>,
    engine: Engine,
    inbox: Inbox,
}

impl World {
    fn new() -> Self {
        Self::build(|b| b)
    }

    fn build(f: impl FnOnce(InboxBuilder) -> InboxBuilder) -> Self {
        let clock = ManualClock::new(t0());
        let mk = |id: &str, kind| Arc::new(StubChannel::new(id, kind).with_clock(clock.clone()));
        let wa = mk("wa", ChannelKind::WhatsApp);
        let wa_bulk = mk("wa-bulk", ChannelKind::WhatsApp);
        let tg = mk("tg", ChannelKind::Telegram);
        let max = mk("max", ChannelKind::Max);
        let sms = mk("sms", ChannelKind::Sms);
        let identity = Arc::new(MemoryIdentityStore::new());
        let directory = Arc::new(MemoryDirectory::new());
        directory.insert("patient-7", "Анна", phone(PATIENT_PHONE));
        let windows = Arc::new(MemoryStore::new());
        let opt_outs = Arc::new(MemoryOptOutStore::new());
        let engine = Engine::builder()
            .clock(clock.clone())
            .channel(wa.clone())
            .channel(tg.clone())
            .channel(max.clone())
            .channel(sms.clone())
            .policy(CascadePolicy::classic_clinic("wa", "tg", "max", "sms"))
            .build()
            .unwrap();
        let linker = Linker::builder(identity.clone(), identity.clone(), directory)
            .clock(Arc::new(clock.clone()))
            .channel(tg.clone())
            .channel(max)
            .build();
        let builder = Inbox::builder()
            .clock(Arc::new(clock.clone()))
            .linker(Arc::new(linker))
            .window_store(windows.clone())
            .sink(engine.clone())
            .opt_out_store(opt_outs.clone())
            .channel(wa.clone())
            .channel(wa_bulk.clone())
            .channel(tg.clone())
            .channel(sms.clone());
        World {
            inbox: f(builder).build(),
            clock,
            identity,
            windows,
            opt_outs,
            wa,
            wa_bulk,
            tg,
            sms,
            engine,
        }
    }

    fn wa_msg(&self, channel: &str, text: &str, id: &str) -> InboundMessage {
        let mut m = InboundMessage::new(
            ChannelKind::WhatsApp,
            Address::WhatsApp(PATIENT_PHONE[1..].to_owned()),
            Some(text.to_owned()),
            self.clock.now(),
        )
        .provider_message_id(id);
        m.channel_id = Some(ChannelId::new(channel));
        m
    }

    fn tg_msg(&self, user: i64, text: &str, id: &str) -> InboundMessage {
        let mut m = InboundMessage::new(
            ChannelKind::Telegram,
            Address::Telegram(user),
            Some(text.to_owned()),
            self.clock.now(),
        )
        .provider_message_id(id);
        m.channel_id = Some(ChannelId::new("tg"));
        m
    }

    async fn take(&self, m: InboundMessage) -> InboxMessage {
        self.inbox
            .handle_event(&Event::Inbound(m))
            .await
            .unwrap()
            .expect("a new message")
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

fn patient_thread() -> ThreadId {
    ThreadId::contact(&ContactId::new("patient-7"))
}

#[tokio::test]
async fn whatsapp_sender_resolves_by_phone_and_is_remembered() {
    let w = World::new();
    let m = w.take(w.wa_msg("wa", "Здравствуйте", "wamid.1")).await;
    assert_eq!(m.contact, Some(ContactId::new("patient-7")));
    assert_eq!(m.thread, patient_thread());
    assert_eq!(m.direction, Direction::In);
    let link = w
        .identity
        .by_address(&Address::WhatsApp("79123456789".into()))
        .await
        .unwrap()
        .expect("linked by WhatsApp phone");
    assert_eq!(link.provenance, Provenance::WhatsAppPhone);
    assert_eq!(link.phone, Some(phone(PATIENT_PHONE)));
}

#[tokio::test]
async fn unknown_telegram_sender_is_prompted_then_joins_the_patients_thread() {
    let w = World::new();
    w.take(w.wa_msg("wa", "Здравствуйте", "wamid.1")).await;

    let first = w.take(w.tg_msg(42, "Привет", "42:1")).await;
    assert_eq!(first.contact, None);
    assert_eq!(first.thread, ThreadId::address(&Address::Telegram(42)));
    assert_eq!(w.tg.sent().len(), 1, "share-phone prompt");

    w.advance(10);
    let shared = w
        .take(w.tg_msg(42, "", "42:2").contact(phone(PATIENT_PHONE), true))
        .await;
    assert_eq!(shared.thread, patient_thread());

    let next = w.take(w.tg_msg(42, "Перенесите, пожалуйста", "42:3")).await;
    assert_eq!(next.contact, Some(ContactId::new("patient-7")));

    let thread = w.inbox.thread(&patient_thread()).await.unwrap();
    let ids: Vec<_> = thread
        .iter()
        .map(|m| {
            m.provider_message_id
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        ids,
        ["wamid.1", "42:1", "42:2", "42:3"],
        "one thread across channels, in time order"
    );
    assert!(
        thread
            .iter()
            .all(|m| m.contact.as_ref().map(|c| c.as_str()) == Some("patient-7"))
    );
    assert!(
        w.inbox
            .thread(&ThreadId::address(&Address::Telegram(42)))
            .await
            .unwrap()
            .is_empty(),
        "earlier messages moved into the contact's thread"
    );
}

#[tokio::test]
async fn spoofed_contact_keeps_the_sender_unknown() {
    let w = World::new();
    let m = w
        .take(
            w.tg_msg(42, "", "42:1")
                .contact(phone(PATIENT_PHONE), false),
        )
        .await;
    assert_eq!(m.contact, None);
    assert_eq!(
        w.identity.by_address(&Address::Telegram(42)).await.unwrap(),
        None
    );
    assert!(w.tg.sent()[0].content.text.contains("не ваш контакт"));
}

#[tokio::test]
async fn reply_goes_back_on_the_channel_the_message_came_from() {
    let w = World::new();
    let m = w.take(w.wa_msg("wa-bulk", "Да", "wamid.1")).await;
    let receipt = w.inbox.reply(&m, Content::text("Спасибо!")).await.unwrap();
    assert!(w.wa.sent().is_empty());
    let sent = w.wa_bulk.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, m.address);
    assert_eq!(sent[0].purpose, Purpose::Conversation);
    assert!(!sent[0].force_template);

    let thread = w.inbox.thread(&patient_thread()).await.unwrap();
    let out = thread.last().unwrap();
    assert_eq!(out.direction, Direction::Out);
    assert_eq!(out.channel_id, Some(ChannelId::new("wa-bulk")));
    assert_eq!(out.provider_message_id, Some(receipt.provider_message_id));
    assert_eq!(out.text.as_deref(), Some("Спасибо!"));

    // Telegram and SMS alike.
    let t = w.take(w.tg_msg(5, "hi", "5:1")).await;
    w.inbox
        .reply(&t, Content::text("Здравствуйте"))
        .await
        .unwrap();
    assert_eq!(w.tg.sent().last().unwrap().to, Address::Telegram(5));
    let mut s = InboundMessage::new(
        ChannelKind::Sms,
        Address::Phone(phone(PATIENT_PHONE)),
        Some("ok".into()),
        w.clock.now(),
    );
    s.channel_id = Some(ChannelId::new("sms"));
    let s = w.take(s).await;
    assert_eq!(
        s.thread,
        patient_thread(),
        "SMS senders resolve by phone too"
    );
    w.inbox.reply(&s, Content::text("Ждём")).await.unwrap();
    assert_eq!(w.sms.sent().len(), 1);
}

#[tokio::test]
async fn whatsapp_inbound_opens_the_window_and_a_closed_window_needs_a_template() {
    let w = World::new();
    let m = w.take(w.wa_msg("wa", "Да", "wamid.1")).await;
    assert_eq!(
        w.windows
            .last_inbound(&ChannelId::new("wa"), "wa:79123456789")
            .await
            .unwrap(),
        Some(t0())
    );

    w.advance(23 * 3600);
    w.inbox
        .reply(&m, Content::text("ещё открыто"))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 1);

    w.advance(3600);
    let err = w
        .inbox
        .reply(&m, Content::text("уже закрыто"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReplyError::WindowClosed { last_inbound: Some(t) } if t == t0()),
        "{err:?}"
    );
    assert_eq!(w.wa.sent().len(), 1, "nothing sent");

    let with_template = Content::text("Напоминание").with_template(Template::new("reminder", "ru"));
    w.inbox.reply(&m, with_template).await.unwrap();
    let sent = w.wa.sent();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].force_template);

    // A new message extends the window again.
    let again = w.take(w.wa_msg("wa", "Алло", "wamid.2")).await;
    w.inbox
        .reply(&again, Content::text("Слушаем"))
        .await
        .unwrap();
    assert!(!w.wa.sent()[2].force_template);
}

#[tokio::test]
async fn whatsapp_window_without_channel_id_opens_on_every_whatsapp_channel() {
    let w = World::new();
    let mut m = w.wa_msg("x", "Да", "wamid.1");
    m.channel_id = None;
    w.take(m).await;
    for id in ["wa", "wa-bulk"] {
        assert_eq!(
            w.windows
                .last_inbound(&ChannelId::new(id), "wa:79123456789")
                .await
                .unwrap(),
            Some(t0()),
            "{id}"
        );
    }
}

#[tokio::test]
async fn an_inbound_message_is_replied_evidence_for_the_engine() {
    let w = World::new();
    // Linked Telegram user; the notice goes out on WhatsApp first.
    w.identity
        .link(&Link::new(
            Address::Telegram(42),
            "patient-7",
            Provenance::SharedContact,
            t0(),
        ))
        .await
        .unwrap();
    let recipient = Recipient::with_phone("patient-7", PATIENT_PHONE).unwrap();
    w.engine
        .submit(Notification::new(
            "n-1",
            recipient,
            Content::text("Приём завтра в 10:00"),
        ))
        .await
        .unwrap();
    assert_eq!(w.wa.sent().len(), 1);

    // The reply comes on Telegram, by an address the cascade never used: resolved by contact.
    w.take(w.tg_msg(42, "Приду", "42:1")).await;
    let status = w
        .engine
        .status(&NotificationId::new("n-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.outcome,
        Some(Outcome::Replied {
            channel: ChannelKind::Telegram
        })
    );
}

#[tokio::test]
async fn a_repeated_delivery_is_processed_once() {
    let w = World::new();
    let mut stream = w.inbox.subscribe();
    let m = w.tg_msg(42, "hi", "42:1");
    assert!(
        w.inbox
            .handle_event(&Event::Inbound(m.clone()))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        w.inbox
            .handle_event(&Event::Inbound(m.clone()))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(w.tg.sent().len(), 1);
    assert_eq!(
        w.inbox
            .thread(&ThreadId::address(&Address::Telegram(42)))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(stream.try_recv().is_ok());
    assert!(stream.try_recv().is_err(), "published once");

    // The same id on another channel is another message.
    let mut other = m;
    other.channel_id = Some(ChannelId::new("tg-2"));
    assert!(
        w.inbox
            .handle_event(&Event::Inbound(other))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn stop_words_opt_the_person_out() {
    let w = World::new();
    for (i, text) in ["СТОП", "Stop.", "отписаться", "UNSUBSCRIBE please"]
        .iter()
        .enumerate()
    {
        let m = w
            .take(w.tg_msg(100 + i as i64, text, &format!("s{i}")))
            .await;
        assert!(m.opt_out, "{text}");
        assert!(
            w.opt_outs
                .is_opted_out(&[Address::Telegram(100 + i as i64).key()], Purpose::Service)
                .await
                .unwrap(),
            "{text}"
        );
    }
    let m = w.take(w.tg_msg(200, "стопка анализов готова?", "s9")).await;
    assert!(!m.opt_out);
    assert!(
        !w.opt_outs
            .is_opted_out(&[Address::Telegram(200).key()], Purpose::Service)
            .await
            .unwrap()
    );

    // A resolved person is opted out by contact too.
    let m = w.take(w.wa_msg("wa", "стоп", "wamid.9")).await;
    assert!(m.opt_out);
    assert!(
        w.opt_outs
            .is_opted_out(
                &[
                    "tg:999".to_owned(),
                    contact_key(&ContactId::new("patient-7"))
                ],
                Purpose::Service
            )
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_governor_as_a_sink_sees_inbound_messages_and_its_stop_words_count() {
    let governor = Arc::new(Governor::new(GovernorConfig::default()));
    let w = World::build(|b| b.stop_words(Vec::<String>::new()).sink(governor.clone()));
    let m = w.take(w.tg_msg(42, "STOP", "42:1")).await;
    // The inbox's flag follows the inbox's own words (none here); the governor keeps its own.
    assert!(!m.opt_out, "the inbox has no stop words here");
    assert!(
        governor
            .opt_outs()
            .is_opted_out(&[Address::Telegram(42).key()], Purpose::Service)
            .await
            .unwrap()
    );
    let m = w.take(w.tg_msg(43, "hello", "43:1")).await;
    assert!(!m.opt_out);
}

/// Whether the governor lets a service SMS to the patient go now.
async fn governor_says(governor: &Governor, w: &World) -> GateDecision {
    let patient = Recipient::with_phone("patient-7", PATIENT_PHONE).unwrap();
    let address = patient.address_for(ChannelKind::Sms).unwrap();
    let (id, channel) = (NotificationId::from("n-1"), ChannelId::new("sms"));
    let ctx = SendContext::new(
        w.clock.now(),
        &id,
        &channel,
        ChannelKind::Sms,
        &patient,
        &address,
    );
    governor.check(&ctx).await
}

#[tokio::test]
async fn an_opt_out_recorded_by_the_inbox_is_seen_by_the_governors_gate() {
    let shared = Arc::new(MemoryOptOutStore::new());
    // The governor is not a sink here: what it sees, it read from the inbox's record.
    let governor = Governor::new(GovernorConfig::default()).with_opt_outs(shared.clone());
    let w = World::build(|b| b.opt_out_store(shared.clone()));
    w.identity
        .link(&Link::new(
            Address::Telegram(42),
            "patient-7",
            Provenance::SharedContact,
            t0(),
        ))
        .await
        .unwrap();
    assert_eq!(governor_says(&governor, &w).await, GateDecision::Allow);

    // "СТОП" in Telegram from the linked patient stops an SMS to their phone: by contact.
    w.advance(60);
    assert!(w.take(w.tg_msg(42, "СТОП", "42:1")).await.opt_out);
    let d = governor_says(&governor, &w).await;
    assert!(
        matches!(&d, GateDecision::Deny { reason } if reason.contains("opted out")),
        "{d:?}"
    );

    // "Старт" lifts it on every channel.
    w.advance(60);
    assert!(!w.take(w.tg_msg(42, "Старт", "42:2")).await.opt_out);
    assert_eq!(governor_says(&governor, &w).await, GateDecision::Allow);
}

#[tokio::test]
async fn a_whatsapp_stop_from_an_unresolved_number_stops_sms_to_that_phone() {
    let shared = Arc::new(MemoryOptOutStore::new());
    let governor = Governor::new(GovernorConfig::default()).with_opt_outs(shared.clone());
    // No directory entry and no link: the sender stays unresolved, known by WhatsApp id only.
    let w = World::build(|b| b.opt_out_store(shared.clone()));
    let mut m = w.wa_msg("wa", "Отписаться", "wamid.s");
    m.address = Address::WhatsApp("79990001122".into());
    assert_eq!(w.take(m).await.contact, None);
    let other = Recipient::with_phone("p-2", "+79990001122").unwrap();
    let address = other.address_for(ChannelKind::Sms).unwrap();
    let (id, channel) = (NotificationId::from("n-2"), ChannelId::new("sms"));
    let ctx = SendContext::new(
        w.clock.now(),
        &id,
        &channel,
        ChannelKind::Sms,
        &other,
        &address,
    );
    assert!(matches!(
        governor.check(&ctx).await,
        GateDecision::Deny { .. }
    ));
}

#[tokio::test]
async fn a_provider_marketing_stop_recorded_by_the_inbox_stops_marketing_only() {
    let w = World::new();
    let signal = ChannelSignal::new(
        ChannelKind::WhatsApp,
        t0(),
        Signal::OptOut {
            from: "79123456789".into(),
            address: Address::WhatsApp("79123456789".into()),
            purpose: Some(Purpose::Marketing),
        },
    );
    w.inbox.handle_event(&Event::Signal(signal)).await.unwrap();
    let keys = [Address::Phone(phone(PATIENT_PHONE)).key()];
    assert!(
        w.opt_outs
            .is_opted_out(&keys, Purpose::Marketing)
            .await
            .unwrap()
    );
    assert!(
        !w.opt_outs
            .is_opted_out(&keys, Purpose::Service)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_engine_skips_a_person_the_inbox_opted_out_through_the_governor_gate() {
    let shared = Arc::new(MemoryOptOutStore::new());
    let governor = Arc::new(Governor::new(GovernorConfig::default()).with_opt_outs(shared.clone()));
    let w = World::build(|b| b.opt_out_store(shared.clone()));
    w.take(w.wa_msg("wa", "СТОП", "wamid.stop")).await;
    let sms = Arc::new(StubChannel::new("sms-2", ChannelKind::Sms).with_clock(w.clock.clone()));
    let engine = Engine::builder()
        .clock(w.clock.clone())
        .channel(sms.clone())
        .policy(CascadePolicy::new("sms-only", vec![Step::new("sms-2")]))
        .gate(governor)
        .build()
        .unwrap();
    engine
        .submit(
            Notification::new(
                "n-stop",
                Recipient::with_phone("patient-7", PATIENT_PHONE).unwrap(),
                Content::text("Приём завтра в 10:00"),
            )
            .policy("sms-only"),
        )
        .await
        .unwrap();
    engine.tick().await.unwrap();
    assert!(
        sms.sent().is_empty(),
        "nothing goes to a person who said СТОП"
    );
    let st = engine.status(&"n-stop".into()).await.unwrap().unwrap();
    assert!(
        st.history.iter().any(|h| matches!(
            &h.kind,
            engine::HistoryKind::Skipped { reason: engine::SkipReason::Refused(r), .. }
                if r.contains("opted out")
        )),
        "{:?}",
        st.history
    );
}

#[tokio::test]
async fn block_and_unblock_signals_toggle_the_link() {
    let w = World::new();
    w.identity
        .link(&Link::new(
            Address::Telegram(42),
            "patient-7",
            Provenance::SharedContact,
            t0(),
        ))
        .await
        .unwrap();
    let sig = |signal| Event::Signal(ChannelSignal::new(ChannelKind::Telegram, t0(), signal));
    w.inbox
        .handle_event(&sig(Signal::Blocked {
            from: "42".into(),
            address: Address::Telegram(42),
        }))
        .await
        .unwrap();
    assert!(
        !w.identity
            .by_address(&Address::Telegram(42))
            .await
            .unwrap()
            .unwrap()
            .active
    );
    w.inbox
        .handle_event(&sig(Signal::Unblocked {
            from: "42".into(),
            address: Address::Telegram(42),
        }))
        .await
        .unwrap();
    assert!(
        w.identity
            .by_address(&Address::Telegram(42))
            .await
            .unwrap()
            .unwrap()
            .active
    );
}

#[tokio::test]
async fn erase_removes_every_link_and_message_of_the_person() {
    let w = World::new();
    w.take(w.wa_msg("wa", "Здравствуйте", "wamid.1")).await;
    w.take(w.tg_msg(42, "Привет", "42:1")).await;
    w.take(w.tg_msg(42, "", "42:2").contact(phone(PATIENT_PHONE), true))
        .await;
    w.take(w.tg_msg(7, "someone else", "7:1")).await;
    let m = w.inbox.thread(&patient_thread()).await.unwrap();
    w.inbox
        .reply(&m[0], Content::text("Добрый день"))
        .await
        .unwrap();

    let erased = w
        .inbox
        .erase_contact(&ContactId::new("patient-7"))
        .await
        .unwrap();
    assert_eq!(
        erased,
        Erasure {
            links: 2,
            messages: 4
        }
    );
    assert!(w.inbox.thread(&patient_thread()).await.unwrap().is_empty());
    assert!(
        w.identity
            .by_contact(&ContactId::new("patient-7"))
            .await
            .unwrap()
            .is_empty()
    );
    // Someone else's thread stays.
    assert_eq!(
        w.inbox.threads().await.unwrap(),
        vec![ThreadId::address(&Address::Telegram(7))]
    );
    let gone = w.inbox.erase_address(&Address::Telegram(7)).await.unwrap();
    assert_eq!(
        gone,
        Erasure {
            links: 0,
            messages: 1
        }
    );
    assert!(w.inbox.threads().await.unwrap().is_empty());
}

#[derive(Debug, Default)]
struct FailingOnce {
    inner: MemoryInboxStore,
    failed: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl InboxStore for FailingOnce {
    async fn append(&self, m: &InboxMessage) -> Result<(), StoreError> {
        if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::backend("disk full"));
        }
        self.inner.append(m).await
    }
    async fn thread(&self, t: &ThreadId) -> Result<Vec<InboxMessage>, StoreError> {
        self.inner.thread(t).await
    }
    async fn threads(&self) -> Result<Vec<ThreadId>, StoreError> {
        self.inner.threads().await
    }
    async fn rethread(
        &self,
        f: &ThreadId,
        t: &ThreadId,
        c: &ContactId,
    ) -> Result<usize, StoreError> {
        self.inner.rethread(f, t, c).await
    }
    async fn erase_thread(&self, t: &ThreadId) -> Result<usize, StoreError> {
        self.inner.erase_thread(t).await
    }
}

#[tokio::test]
async fn a_store_failure_is_returned_and_the_redelivery_is_processed() {
    let w = World::build(|b| b.store(Arc::new(FailingOnce::default())));
    let m = w.wa_msg("wa", "Да", "wamid.1");
    assert!(matches!(
        w.inbox.handle_event(&Event::Inbound(m.clone())).await,
        Err(InboxError::Store(_))
    ));
    assert!(
        w.inbox
            .handle_event(&Event::Inbound(m))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(w.inbox.thread(&patient_thread()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_engine_alone_is_an_event_sink_too() {
    let w = World::new();
    let recipient = Recipient::with_phone("patient-7", PATIENT_PHONE).unwrap();
    w.engine
        .submit(Notification::new(
            "n-1",
            recipient,
            Content::text("Приём завтра"),
        ))
        .await
        .unwrap();
    let sink: Arc<dyn EventSink> = Arc::new(w.engine.clone());
    sink.handle(&Event::Inbound(w.wa_msg("wa", "Да", "wamid.1")))
        .await
        .unwrap();
    let status = w
        .engine
        .status(&NotificationId::new("n-1"))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(status.outcome, Some(Outcome::Replied { .. })));
}

#[tokio::test]
async fn reply_without_a_matching_channel_is_a_typed_error() {
    let w = World::new();
    let mut m = w.tg_msg(42, "hi", "42:1");
    m.channel_id = Some(ChannelId::new("tg-old"));
    let msg = w.take(m).await;
    assert!(matches!(
        w.inbox.reply(&msg, Content::text("x")).await,
        Err(ReplyError::NoChannel(id)) if id == "tg-old"
    ));
}

/// What people do to messages: an edit, a deletion, a reaction and an echo end no cascade;
/// the edit and the deletion amend the message in the thread; a reaction to the notice is
/// read evidence; none opens the WhatsApp window.
#[tokio::test]
async fn edits_deletions_and_reactions_amend_the_thread_and_end_no_cascade() {
    let w = World::new();
    // The person wrote before the notice: in the thread already.
    let before = w.take(w.wa_msg("wa", "Приду в 10", "wamid.P1")).await;
    let window_key = whatsapp_window_key(&Address::WhatsApp("79123456789".into())).unwrap();
    let window = w
        .windows
        .last_inbound(&ChannelId::new("wa"), &window_key)
        .await
        .unwrap();
    assert!(window.is_some());
    w.advance(60);
    let n = NotificationId::new("n-1");
    w.engine
        .submit(Notification::new(
            "n-1",
            Recipient::with_phone("patient-7", PATIENT_PHONE).unwrap(),
            Content::text("Напоминаем о приёме"),
        ))
        .await
        .unwrap();
    let sent = w.engine.status(&n).await.unwrap().unwrap().attempts[0]
        .provider_message_id
        .clone()
        .expect("the WhatsApp attempt was accepted");
    w.advance(60);

    // An edit of the earlier message.
    let edit = w
        .wa_msg("wa", "Приду в 11", "wamid.E1")
        .action(InboundAction::Edit {
            of: "wamid.P1".into(),
        });
    let amended = w.take(edit.clone()).await;
    assert_eq!(amended.id, before.id, "the same message, amended");
    assert_eq!(amended.text.as_deref(), Some("Приду в 11"));
    assert_eq!(amended.edited_at, Some(w.clock.now()));
    // The edit ended nothing.
    assert_eq!(w.engine.status(&n).await.unwrap().unwrap().outcome, None);
    // A repeat of the same edit is dropped.
    assert!(
        w.inbox
            .handle_event(&Event::Inbound(edit))
            .await
            .unwrap()
            .is_none()
    );
    // A reaction to the reminder (sent by the engine, not stored in the inbox).
    let mut reaction = InboundMessage::new(
        ChannelKind::WhatsApp,
        Address::WhatsApp(PATIENT_PHONE[1..].to_owned()),
        None,
        w.clock.now(),
    )
    .provider_message_id("wamid.R1")
    .action(InboundAction::Reaction {
        to: sent.clone(),
        emoji: Some("👍".into()),
    });
    reaction.channel_id = Some(ChannelId::new("wa"));
    let own_entry = w.take(reaction).await;
    assert_eq!(own_entry.text, None);
    // A reaction to the person's own message is recorded on it.
    let mut reaction = InboundMessage::new(
        ChannelKind::WhatsApp,
        Address::WhatsApp(PATIENT_PHONE[1..].to_owned()),
        None,
        w.clock.now(),
    )
    .provider_message_id("wamid.R2")
    .action(InboundAction::Reaction {
        to: "wamid.P1".into(),
        emoji: Some("❤".into()),
    });
    reaction.channel_id = Some(ChannelId::new("wa"));
    assert_eq!(w.take(reaction).await.reaction.as_deref(), Some("❤"));
    // A deletion of the earlier message.
    let deletion = w
        .wa_msg("wa", "", "wamid.D1")
        .action(InboundAction::Deletion {
            of: "wamid.P1".into(),
        });
    let deleted = w.take(deletion).await;
    assert_eq!(deleted.id, before.id);
    assert_eq!(deleted.deleted_at, Some(w.clock.now()));
    // An echo of what the business wrote in the Business app.
    let mut echo = w
        .wa_msg("wa", "Ждём вас", "wamid.ECHO")
        .action(InboundAction::Echo);
    echo.from = "15550001111".into();
    assert_eq!(w.take(echo).await.direction, Direction::Out);

    // None of them is a reply; the reaction is read evidence for the notice, which the
    // policy waited for: the cascade ends as delivered (read), not as replied.
    let st = w.engine.status(&n).await.unwrap().unwrap();
    assert!(
        matches!(
            st.outcome,
            Some(Outcome::Delivered {
                evidence: Evidence::Read,
                ..
            })
        ),
        "{:?}",
        st.history
    );
    assert_eq!(st.attempts[0].evidence, Some(Evidence::Read));
    // None of them opened the WhatsApp window further.
    assert_eq!(
        w.windows
            .last_inbound(&ChannelId::new("wa"), &window_key)
            .await
            .unwrap(),
        window
    );

    let thread = w.inbox.thread(&patient_thread()).await.unwrap();
    assert_eq!(thread.len(), 3, "{thread:?}");
    assert_eq!(thread[0].text.as_deref(), Some("Приду в 11"));
    assert!(thread[0].deleted_at.is_some() && thread[0].edited_at.is_some());
    assert_eq!(thread[0].reaction.as_deref(), Some("❤"));
    assert!(matches!(
        thread[1].inbound.as_ref().map(|m| &m.action),
        Some(InboundAction::Reaction { .. })
    ));
    assert_eq!(thread[2].direction, Direction::Out);
}

/// A Telegram edit keeps the message id: it is not dropped as a repeat of the message.
#[tokio::test]
async fn a_telegram_edit_is_not_a_repeat_of_its_message() {
    let w = World::new();
    let first = w.take(w.tg_msg(5, "hi", "5:1")).await;
    w.advance(5);
    let mut edit = w
        .tg_msg(5, "hello", "5:1")
        .action(InboundAction::Edit { of: "5:1".into() });
    edit.at = w.clock.now();
    let amended = w.take(edit).await;
    assert_eq!(amended.id, first.id);
    assert_eq!(amended.text.as_deref(), Some("hello"));
}
