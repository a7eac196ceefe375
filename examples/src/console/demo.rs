//! `messaging-console --demo`: the console over simulated providers, with traffic flowing.
//!
//! Everything but the providers is real: the SQLite store in a file, the cascade engine on the
//! system clock, the inbox and its identity links, the linker, and the webhook router with its
//! journal, serving Telegram updates on `/webhooks/telegram` (so a test, or `curl`, can play a
//! patient writing to the bot). The simulated channels deliver after a second or two
//! (Telegram and Max too: in the demo they report delivery, which real bots never get), and
//! WhatsApp never delivers to one patient, so their reminder moves on to Telegram after the
//! demo's short window (60 s; 30 s for Telegram and Max).
//!
//! A small generator submits a reminder every 20 s and has a patient write every 15 s.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use chrono::Utc;
use messaging::identity::{IdentityStore, Link, Linker, MemoryDirectory, Provenance};
use messaging::inbox::{Inbox, InboxStore};
use messaging::router::WebhookRouter;
use messaging::sink::EventSink;
use messaging::store::{CascadeStore, SqliteStore};
use messaging::telegram::TelegramWebhook;
use messaging::testkit::{Latency, SimBehavior, SimulatedChannel};
use messaging::{
    Address, CascadePolicy, Channel, ChannelKind, ContactId, Content, Engine, Event, Evidence,
    InboundAction, InboundMessage, Notification, Phone, Recipient, Step, SystemClock,
};
use rand::{Rng, SeedableRng};

use super::{Console, ConsoleConfig, Parts, PatientCard, TemplateOffer, auth};

/// A patient of the demo: contact id, name, phone, Telegram chat id, Max user id.
type DemoPatient = (
    &'static str,
    &'static str,
    &'static str,
    Option<i64>,
    Option<i64>,
);

/// The demo's patients.
const PATIENTS: &[DemoPatient] = &[
    (
        "patient-1",
        "Анна Петрова",
        "+79120000001",
        Some(1001),
        None,
    ),
    (
        "patient-2",
        "Борис Смирнов",
        "+79120000002",
        Some(1002),
        Some(2002),
    ),
    (
        "patient-3",
        "Вера Кузнецова",
        "+79120000003",
        None,
        Some(2003),
    ),
    (
        "patient-4",
        "Григорий Орлов",
        "+79120000004",
        Some(1004),
        None,
    ),
    ("patient-5", "Дарья Волкова", "+79120000005", None, None),
    (
        "patient-6",
        "Евгений Соколов",
        "+79120000006",
        Some(1006),
        Some(2006),
    ),
];

/// What patients write in the demo.
const PHRASES: &[&str] = &[
    "Здравствуйте! Подтверждаю запись на завтра.",
    "Можно перенести приём на пятницу?",
    "Да, приду.",
    "Подскажите, нужно ли приходить натощак?",
    "Спасибо за напоминание!",
    "Опаздываю минут на 10, извините.",
];

/// A running demo.
#[derive(Debug)]
pub struct Demo {
    /// The console.
    pub console: Console,
    /// The console's pages and the webhook routes, to serve.
    pub app: Router,
    /// The secret Telegram webhook calls carry in `X-Telegram-Bot-Api-Secret-Token`.
    pub telegram_secret: String,
    /// The engine.
    pub engine: Engine,
}

/// Options of the demo.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DemoOptions {
    /// The SQLite file (created afresh).
    pub db: PathBuf,
    /// Whether the generator runs (tests turn it off for a quiet inbox).
    pub traffic: bool,
    /// Seed of the simulated randomness.
    pub seed: u64,
    /// Mark the session cookie `Secure` (served behind HTTPS).
    pub secure_cookie: bool,
}

impl DemoOptions {
    /// A demo on this SQLite file, with traffic.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        DemoOptions {
            db: db.into(),
            traffic: true,
            seed: 7,
            secure_cookie: false,
        }
    }
}

fn sim(id: &str, kind: ChannelKind, seed: u64, silent: &[&str]) -> Arc<SimulatedChannel> {
    let ch = SimulatedChannel::new(id, kind, SystemClock, seed).with_behavior(SimBehavior {
        latency: Latency::Uniform {
            min_secs: 1.0,
            max_secs: 3.0,
        },
        silent: silent.iter().map(|s| s.to_string()).collect(),
        ..SimBehavior::default()
    });
    // The demo shows delivery ticks on every channel; real Telegram and Max bots get none.
    let mut caps = ch.capabilities();
    caps.strongest_evidence = Evidence::Delivered;
    Arc::new(ch.with_capabilities(caps))
}

fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

fn phone(s: &str) -> Result<Phone, String> {
    Phone::parse(s).map_err(|e| format!("demo phone {s}: {e}"))
}

fn recipient(i: usize) -> Result<Recipient, String> {
    let (contact, name, ph, tg, max) = PATIENTS[i % PATIENTS.len()];
    let mut r = Recipient {
        contact_id: Some(ContactId::from(contact)),
        phone: Some(phone(ph)?),
        ..Recipient::default()
    }
    .name(name);
    if let Some(t) = tg {
        r = r.address(Address::Telegram(t));
    }
    if let Some(m) = max {
        r = r.address(Address::MaxUser(m));
    }
    Ok(r)
}

/// Starts the demo: store, simulated channels, engine, inbox, console, webhook router,
/// the delivery pump and (with `options.traffic`) the traffic generator.
pub async fn start(password: auth::Password, options: DemoOptions) -> Result<Demo, String> {
    remove_db(&options.db);
    let store = Arc::new(
        SqliteStore::open(&options.db)
            .await
            .map_err(|e| format!("cannot open {}: {e}", options.db.display()))?,
    );
    // Дарья (patient-5) never receives WhatsApp: her reminders move on to SMS.
    let wa = sim(
        "whatsapp",
        ChannelKind::WhatsApp,
        options.seed,
        &["phone:+79120000005"],
    );
    let tg = sim("telegram", ChannelKind::Telegram, options.seed + 1, &[]);
    let max = sim("max", ChannelKind::Max, options.seed + 2, &[]);
    let sms = sim("sms", ChannelKind::Sms, options.seed + 3, &[]);
    let sims = [wa.clone(), tg.clone(), max.clone(), sms.clone()];

    let policy = CascadePolicy::new(
        "clinic-demo",
        vec![
            Step::new("whatsapp").window(Duration::from_secs(60)),
            Step::new("telegram").window(Duration::from_secs(30)),
            Step::new("max").window(Duration::from_secs(30)),
            Step::new("sms").window(Duration::from_secs(600)),
        ],
    );
    let cascades: Arc<dyn CascadeStore> = store.clone();
    let mut engine = Engine::builder()
        .store(cascades.clone())
        .policy(policy)
        .default_policy("clinic-demo")
        .poll_interval(Duration::from_millis(500));
    for s in &sims {
        engine = engine.channel(s.clone());
    }
    let engine = engine.build().map_err(|e| e.to_string())?;

    let directory = Arc::new(MemoryDirectory::new());
    let mut patients = Vec::new();
    let identity: Arc<dyn IdentityStore> = store.clone();
    let now = Utc::now();
    for (contact, name, ph, tg_id, max_id) in PATIENTS {
        let p = phone(ph)?;
        directory.insert(*contact, *name, p.clone());
        patients.push(PatientCard {
            contact: ContactId::from(*contact),
            name: (*name).into(),
            phone: Some(p.clone()),
        });
        if let Some(id) = tg_id {
            let link = Link::new(
                Address::Telegram(*id),
                *contact,
                Provenance::SharedContact,
                now,
            )
            .with_phone(p.clone());
            identity.link(&link).await.map_err(|e| e.to_string())?;
        }
        if let Some(id) = max_id {
            let link = Link::new(Address::MaxUser(*id), *contact, Provenance::DeepLink, now)
                .with_token_id(format!("demo-{contact}"));
            identity.link(&link).await.map_err(|e| e.to_string())?;
        }
    }
    let linker = Arc::new(
        Linker::builder(identity.clone(), store.clone(), directory.clone())
            .channel(tg.clone())
            .channel(max.clone())
            .build(),
    );
    let inbox_store: Arc<dyn InboxStore> = store.clone();
    let mut inbox = Inbox::builder()
        .store(inbox_store.clone())
        .identity(identity.clone())
        .directory(directory.clone())
        .window_store(store.clone())
        .opt_out_store(store.clone())
        .linker(linker.clone())
        .sink(engine.clone());
    for s in &sims {
        inbox = inbox.channel(s.clone());
    }
    let inbox = inbox.build();

    let mut config = ConsoleConfig::new(password);
    config.secure_cookie = options.secure_cookie;
    config.patients = patients;
    config.channels = sims.iter().map(|s| (s.id().clone(), s.kind())).collect();
    config.templates = vec![
        TemplateOffer {
            name: "clinic_message".into(),
            language: "ru".into(),
            preview: "Клиника «Здоровье»: {{1}}".into(),
        },
        TemplateOffer {
            name: "appointment_followup".into(),
            language: "ru".into(),
            preview: "По вашей записи: {{1}}. Ответьте на это сообщение, если есть вопросы.".into(),
        },
    ];
    config.audit_file = Some(options.db.with_extension("audit.jsonl"));
    config.banner = Some(
        "Demo: simulated WhatsApp, Telegram, Max and SMS; reminders and patients' messages are generated."
            .into(),
    );
    let console = Console::new(
        Parts {
            inbox: inbox.clone(),
            inbox_store,
            identity,
            engine: engine.clone(),
            cascades,
            reports: store.clone(),
            linker: Some(linker),
        },
        config,
    );

    let telegram_secret = auth::token();
    let (webhooks, processor) = WebhookRouter::new()
        .journal(store.clone())
        .poll_interval(Duration::from_millis(200))
        .mount(
            "/webhooks/telegram",
            Arc::new(TelegramWebhook::new(Some(telegram_secret.clone())).channel_id("telegram")),
        )
        .sink(Arc::new(inbox.clone()))
        .sink(console.sink())
        .build()
        .map_err(|e| e.to_string())?;
    tokio::spawn(processor.run());
    let runner = engine.clone();
    tokio::spawn(async move { runner.run(std::future::pending::<()>()).await });

    // The simulated providers' delivery reports, as their webhooks would bring them.
    let ticks = console.sink();
    let pump_inbox = inbox.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(250));
        loop {
            every.tick().await;
            for s in &sims {
                for e in s.due_events(Utc::now()) {
                    if let Err(err) = pump_inbox.handle_event(&e).await {
                        tracing::warn!(error = %err, "demo: a delivery report was not taken in");
                    }
                    let _ = ticks.handle(&e).await;
                }
            }
        }
    });

    seed(&inbox, &engine, &console).await?;
    if options.traffic {
        tokio::spawn(traffic(inbox.clone(), engine.clone(), options.seed));
    }
    let app = console.router().merge(webhooks);
    Ok(Demo {
        console,
        app,
        telegram_secret,
        engine,
    })
}

fn inbound(
    kind: ChannelKind,
    address: Address,
    text: &str,
    at: chrono::DateTime<Utc>,
    id: &str,
) -> Event {
    let channel = match kind {
        ChannelKind::WhatsApp => "whatsapp",
        ChannelKind::Telegram => "telegram",
        ChannelKind::Max => "max",
        _ => "sms",
    };
    let mut m = InboundMessage::new(kind, address, Some(text.into()), at).provider_message_id(id);
    m.channel_id = Some(channel.into());
    Event::Inbound(m)
}

fn wa(phone: &str) -> Address {
    Address::WhatsApp(phone.trim_start_matches('+').into())
}

/// A morning's beginning: a few conversations and reminders already there.
async fn seed(inbox: &Inbox, engine: &Engine, console: &Console) -> Result<(), String> {
    let now = Utc::now();
    let h = |hours: i64| now - chrono::Duration::hours(hours);
    let m = |mins: i64| now - chrono::Duration::minutes(mins);
    let events = [
        // Анна wrote on WhatsApp yesterday morning: the 24-hour window has closed.
        inbound(
            ChannelKind::WhatsApp,
            wa("+79120000001"),
            "Можно перенести приём на следующую неделю?",
            h(30),
            "seed-wa-1",
        ),
        inbound(
            ChannelKind::Telegram,
            Address::Telegram(1002),
            "Да, приду",
            m(25),
            "seed-tg-2",
        ),
        inbound(
            ChannelKind::WhatsApp,
            wa("+79120000003"),
            "Перезвоните мне, пожалуйста",
            m(18),
            "seed-wa-3",
        ),
        inbound(
            ChannelKind::Telegram,
            Address::Telegram(5002),
            "\"><img src=x onerror=alert(1)> <script>alert('hi')</script> Здравствуйте, это Ольга",
            m(12),
            "seed-tg-5002",
        ),
    ];
    for e in &events {
        inbox.handle_event(e).await.map_err(|e| e.to_string())?;
    }
    // Борис corrects himself; Вера deletes her message.
    let mut edit = InboundMessage::new(
        ChannelKind::Telegram,
        Address::Telegram(1002),
        Some("Да, приду, но опоздаю минут на 10".into()),
        m(24),
    )
    .provider_message_id("seed-tg-2-edit");
    edit.channel_id = Some("telegram".into());
    edit.action = InboundAction::Edit {
        of: "seed-tg-2".into(),
    };
    inbox
        .handle_event(&Event::Inbound(edit))
        .await
        .map_err(|e| e.to_string())?;
    let mut del = InboundMessage::new(ChannelKind::WhatsApp, wa("+79120000003"), None, m(17))
        .provider_message_id("seed-wa-3-del");
    del.channel_id = Some("whatsapp".into());
    del.action = InboundAction::Deletion {
        of: "seed-wa-3".into(),
    };
    inbox
        .handle_event(&Event::Inbound(del))
        .await
        .map_err(|e| e.to_string())?;
    for i in [0usize, 4, 5] {
        submit(engine, console, i, 0).await;
    }
    Ok(())
}

async fn submit(engine: &Engine, console: &Console, i: usize, n: u64) {
    let Ok(r) = recipient(i) else { return };
    let name = r.name.clone().unwrap_or_default();
    let id = format!(
        "reminder-{}-{n}",
        r.contact_id.as_ref().map(|c| c.as_str()).unwrap_or("x")
    );
    let notice = Notification::new(
        id.as_str(),
        r,
        Content::text(format!(
            "{name}, напоминаем о приёме завтра в 10:00. Придёте? Ответьте ДА или НЕТ."
        )),
    );
    console.track_cascade(id.as_str().into());
    if let Err(e) = engine.submit(notice).await {
        tracing::warn!(error = %e, "demo: a reminder was not submitted");
    }
}

/// Reminders every 20 s, a patient's message every 15 s.
async fn traffic(inbox: Inbox, engine: Engine, seed: u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut n = 1u64;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tick.tick().await;
        n += 1;
        if n.is_multiple_of(4) {
            let i = rng.random_range(0..PATIENTS.len());
            let r = recipient(i);
            if let Ok(r) = r {
                let id = format!(
                    "reminder-{}-{n}",
                    r.contact_id.as_ref().map(|c| c.as_str()).unwrap_or("x")
                );
                let notice = Notification::new(
                    id.as_str(),
                    r,
                    Content::text("Напоминаем о приёме завтра в 10:00. Придёте?"),
                );
                if let Err(e) = engine.submit(notice).await {
                    tracing::warn!(error = %e, "demo: a reminder was not submitted");
                }
            }
        }
        if n.is_multiple_of(3) {
            // Дарья (patient-5) stays silent, so her reminders show the whole cascade.
            let (_, _, ph, tg, _) = PATIENTS[[0, 1, 2, 3, 5][rng.random_range(0..5)]];
            let text = PHRASES[rng.random_range(0..PHRASES.len())];
            let (kind, address) = match tg {
                Some(t) if rng.random_bool(0.5) => (ChannelKind::Telegram, Address::Telegram(t)),
                _ => (ChannelKind::WhatsApp, wa(ph)),
            };
            let e = inbound(kind, address, text, Utc::now(), &format!("demo-{n}"));
            if let Err(err) = inbox.handle_event(&e).await {
                tracing::warn!(error = %err, "demo: a patient's message was not taken in");
            }
        }
    }
}
