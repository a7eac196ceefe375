//! Identity linking and the unified inbox end to end, over real HTTP on localhost: the real
//! Telegram and WhatsApp webhook handlers behind the core axum router, the real Telegram channel
//! talking to the fake Bot API server.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use messaging::identity::{
    DeepLinkKey, DeepLinkSigner, IdentityStore, Linker, MemoryDirectory, MemoryIdentityStore,
    Provenance, telegram_start_url,
};
use messaging::inbox::{Direction, Inbox, InboxMessage, ThreadId};
use messaging::router::WebhookRouter;
use messaging::store::MemoryStore;
use messaging::telegram::{TelegramChannel, TelegramWebhook};
use messaging::waba::WabaWebhook;
use messaging::webhook::hmac_sha256_hex;
use messaging::{Address, ChannelKind, Clock, ContactId, Content, ManualClock, Phone};
use messaging_tests::telegram::FakeTelegram;
use serde_json::{Value, json};
use tokio::sync::broadcast;

const TG_SECRET: &str = "tg-webhook-secret";
const WA_APP_SECRET: &str = "meta-app-secret";
const PATIENT_PHONE: &str = "+79123456789";
const PATIENT: &str = "patient-7";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

struct Clinic {
    fake: Arc<FakeTelegram>,
    base: String,
    http: reqwest::Client,
    clock: ManualClock,
    identity: Arc<MemoryIdentityStore>,
    signer: Arc<DeepLinkSigner>,
    inbox: Inbox,
    stream: broadcast::Receiver<InboxMessage>,
    update_id: i64,
}

impl Clinic {
    async fn start() -> Clinic {
        let fake = Arc::new(FakeTelegram::start().await);
        let clock = ManualClock::new(t0());
        let tg = Arc::new(
            TelegramChannel::builder("tg", FakeTelegram::TOKEN)
                .base_url(fake.url())
                .rate_limit(0)
                .chat_rate_limit(None)
                .build()
                .unwrap(),
        );
        let identity = Arc::new(MemoryIdentityStore::new());
        let directory = Arc::new(MemoryDirectory::new());
        directory.insert(
            PATIENT,
            "Анна Петровна",
            Phone::parse(PATIENT_PHONE).unwrap(),
        );
        let signer = Arc::new(
            DeepLinkSigner::new(
                DeepLinkKey::new(b"campaign-key-0123456789abcdef").unwrap(),
                Arc::new(clock.clone()),
            )
            .ttl(Duration::from_secs(7 * 24 * 3600)),
        );
        let linker = Linker::builder(identity.clone(), identity.clone(), directory)
            .clock(Arc::new(clock.clone()))
            .channel(tg.clone())
            .signer(signer.clone())
            .build();
        let inbox = Inbox::builder()
            .clock(Arc::new(clock.clone()))
            .linker(Arc::new(linker))
            .window_store(Arc::new(MemoryStore::new()))
            .channel(tg)
            .build();
        let stream = inbox.subscribe();

        let (app, _processing) = WebhookRouter::new()
            .mount(
                "/webhooks/telegram",
                Arc::new(TelegramWebhook::new(Some(TG_SECRET.into())).channel_id("tg")),
            )
            .mount(
                "/webhooks/waba",
                Arc::new(
                    WabaWebhook::new()
                        .app_secret(WA_APP_SECRET)
                        .verify_token("verify-me")
                        .channel_id("wa"),
                ),
            )
            .sink(Arc::new(inbox.clone()))
            .spawn()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Clinic {
            fake,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            clock,
            identity,
            signer,
            inbox,
            stream,
            update_id: 0,
        }
    }

    async fn post_telegram_raw(&self, body: Vec<u8>, secret: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/webhooks/telegram", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        req.send().await.unwrap()
    }

    /// Delivers a Telegram message update from `user` (a private chat) and returns its body.
    async fn telegram(&mut self, user: i64, message: Value) -> Vec<u8> {
        self.update_id += 1;
        // Provider time and our clock move together, as in production.
        self.clock.advance(Duration::from_secs(1));
        let mut m = json!({
            "message_id": self.update_id,
            "date": self.clock.now().timestamp(),
            "chat": {"id": user, "type": "private", "first_name": "Анна"},
            "from": {"id": user, "is_bot": false, "first_name": "Анна"},
        });
        if let (Some(obj), Some(extra)) = (m.as_object_mut(), message.as_object()) {
            obj.extend(extra.clone());
        }
        let body = serde_json::to_vec(&json!({"update_id": self.update_id, "message": m})).unwrap();
        let resp = self.post_telegram_raw(body.clone(), Some(TG_SECRET)).await;
        assert_eq!(resp.status(), 200);
        body
    }

    async fn whatsapp_text(&self, id: &str, text: &str) {
        let body = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "74950000000", "phone_number_id": "10"},
                "contacts": [{"profile": {"name": "Anna"}, "wa_id": &PATIENT_PHONE[1..]}],
                "messages": [{"from": &PATIENT_PHONE[1..], "id": id,
                    "timestamp": self.clock.now().timestamp().to_string(), "type": "text", "text": {"body": text}}]
            }}]}]
        }))
        .unwrap();
        let sig = format!(
            "sha256={}",
            hmac_sha256_hex(WA_APP_SECRET.as_bytes(), &body)
        );
        let resp = self
            .http
            .post(format!("{}/webhooks/waba", self.base))
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    async fn next(&mut self) -> InboxMessage {
        tokio::time::timeout(Duration::from_secs(5), self.stream.recv())
            .await
            .expect("an inbox message within 5 s")
            .expect("stream open")
    }

    async fn nothing_more(&mut self) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(self.stream.try_recv().is_err(), "no further inbox message");
    }

    fn sent_to(&self, chat: i64) -> Vec<messaging_tests::telegram::SentMessage> {
        self.fake
            .sent()
            .into_iter()
            .filter(|m| m.chat_id == chat)
            .collect()
    }
}

fn patient_thread() -> ThreadId {
    ThreadId::contact(&ContactId::new(PATIENT))
}

#[tokio::test]
async fn unknown_telegram_user_shares_their_contact_and_joins_the_patients_thread() {
    let mut c = Clinic::start().await;
    // Earlier, the patient wrote on WhatsApp: resolved by phone.
    c.whatsapp_text("wamid.A1", "Здравствуйте, это Анна").await;
    let wa = c.next().await;
    assert_eq!(wa.channel, ChannelKind::WhatsApp);
    assert_eq!(wa.thread, patient_thread());

    // An unknown Telegram user writes: the share-phone prompt goes out through the Bot API.
    c.telegram(555, json!({"text": "Добрый день"})).await;
    let first = c.next().await;
    assert_eq!(first.contact, None);
    let prompt = c.sent_to(555);
    assert_eq!(prompt.len(), 1, "{prompt:?}");
    let markup = prompt[0].reply_markup.clone().expect("a keyboard");
    assert_eq!(
        markup["keyboard"][0][0]["request_contact"], true,
        "{markup}"
    );

    // A second message soon after is not prompted again.
    c.telegram(555, json!({"text": "Алло?"})).await;
    c.next().await;
    assert_eq!(c.sent_to(555).len(), 1);

    // They share their own contact (user_id is the sender): linked to the existing patient.
    c.telegram(
        555,
        json!({"contact": {"phone_number": "79123456789", "first_name": "Анна", "user_id": 555}}),
    )
    .await;
    let shared = c.next().await;
    assert_eq!(shared.contact.as_ref().map(|c| c.as_str()), Some(PATIENT));
    let link = c
        .identity
        .by_address(&Address::Telegram(555))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.provenance, Provenance::SharedContact);
    assert!(
        c.sent_to(555)
            .last()
            .unwrap()
            .text
            .as_deref()
            .unwrap_or("")
            .contains("Анна Петровна")
    );

    // Their next message lands in the same thread as the WhatsApp messages.
    c.telegram(555, json!({"text": "Можно перенести приём на пятницу?"}))
        .await;
    let next = c.next().await;
    assert_eq!(next.thread, patient_thread());
    let thread = c.inbox.thread(&patient_thread()).await.unwrap();
    let channels: Vec<ChannelKind> = thread.iter().map(|m| m.channel).collect();
    assert_eq!(
        channels,
        [
            ChannelKind::WhatsApp,
            ChannelKind::Telegram,
            ChannelKind::Telegram,
            ChannelKind::Telegram,
            ChannelKind::Telegram
        ]
    );

    // The operator answers: it goes back through Telegram, to that chat.
    let before = c.sent_to(555).len();
    c.inbox
        .reply(&next, Content::text("Конечно, записали на пятницу, 10:00."))
        .await
        .unwrap();
    let sent = c.sent_to(555);
    assert_eq!(sent.len(), before + 1);
    assert_eq!(
        sent.last().unwrap().text.as_deref(),
        Some("Конечно, записали на пятницу, 10:00.")
    );
    let thread = c.inbox.thread(&patient_thread()).await.unwrap();
    assert_eq!(thread.last().unwrap().direction, Direction::Out);
}

#[tokio::test]
async fn a_spoofed_contact_is_refused_and_links_nothing() {
    let mut c = Clinic::start().await;
    // A forwarded card of the patient (user_id is someone else).
    c.telegram(
        777,
        json!({"contact": {"phone_number": "+79123456789", "first_name": "Анна", "user_id": 555}}),
    )
    .await;
    let m = c.next().await;
    assert_eq!(m.contact, None);
    assert_eq!(
        c.identity
            .by_address(&Address::Telegram(777))
            .await
            .unwrap(),
        None
    );
    let refusal = c.sent_to(777);
    assert_eq!(refusal.len(), 1);
    assert!(
        refusal[0]
            .text
            .as_deref()
            .unwrap_or("")
            .contains("не ваш контакт")
    );

    // A card without a user id cannot be vouched for either.
    c.telegram(
        778,
        json!({"contact": {"phone_number": "+79123456789", "first_name": "Анна"}}),
    )
    .await;
    assert_eq!(c.next().await.contact, None);
    assert_eq!(
        c.identity
            .by_address(&Address::Telegram(778))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn deep_link_tokens_valid_forged_expired_and_reused() {
    let mut c = Clinic::start().await;
    let token = c.signer.issue(&ContactId::new(PATIENT)).unwrap().token;
    let url = telegram_start_url(messaging_tests::telegram::BOT_USERNAME, &token);
    assert!(url.ends_with(&token));

    // Valid: linked without asking for the phone.
    c.telegram(901, json!({"text": format!("/start {token}")}))
        .await;
    let m = c.next().await;
    assert_eq!(m.contact.as_ref().map(|c| c.as_str()), Some(PATIENT));
    let link = c
        .identity
        .by_address(&Address::Telegram(901))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.provenance, Provenance::DeepLink);
    assert!(
        c.sent_to(901).iter().all(|s| s.reply_markup.is_none()),
        "no share-phone keyboard"
    );

    // Reused by someone else: nothing linked, asked for the phone instead.
    c.telegram(904, json!({"text": format!("/start {token}")}))
        .await;
    assert_eq!(c.next().await.contact, None);
    assert_eq!(
        c.identity
            .by_address(&Address::Telegram(904))
            .await
            .unwrap(),
        None
    );
    assert!(c.sent_to(904)[0].reply_markup.is_some());

    // Forged: a token of the right shape signed with another key.
    let other = DeepLinkSigner::new(
        DeepLinkKey::new(b"attacker-key-0123456789abcdef").unwrap(),
        Arc::new(c.clock.clone()),
    );
    let forged = other.issue(&ContactId::new(PATIENT)).unwrap().token;
    c.telegram(902, json!({"text": format!("/start {forged}")}))
        .await;
    assert_eq!(c.next().await.contact, None);
    assert_eq!(
        c.identity
            .by_address(&Address::Telegram(902))
            .await
            .unwrap(),
        None
    );

    // Expired: issued now, used after its week.
    let late = c.signer.issue(&ContactId::new(PATIENT)).unwrap();
    c.clock
        .set(late.claims.expires_at + chrono::Duration::seconds(1));
    assert!(c.clock.now() > late.claims.expires_at);
    c.telegram(903, json!({"text": format!("/start {}", late.token)}))
        .await;
    assert_eq!(c.next().await.contact, None);
    assert_eq!(
        c.identity
            .by_address(&Address::Telegram(903))
            .await
            .unwrap(),
        None
    );

    let links = c
        .identity
        .by_contact(&ContactId::new(PATIENT))
        .await
        .unwrap();
    assert_eq!(links.len(), 1, "only the valid token linked");
}

#[tokio::test]
async fn the_router_refuses_bad_calls_and_processes_a_retry_once() {
    let mut c = Clinic::start().await;
    let body = serde_json::to_vec(&json!({"update_id": 1, "message": {
        "message_id": 1, "date": t0().timestamp(),
        "chat": {"id": 321, "type": "private"}, "from": {"id": 321, "is_bot": false, "first_name": "X"},
        "text": "привет"}}))
    .unwrap();

    assert_eq!(c.post_telegram_raw(body.clone(), None).await.status(), 401);
    assert_eq!(
        c.post_telegram_raw(body.clone(), Some("wrong"))
            .await
            .status(),
        403
    );
    assert_eq!(
        c.post_telegram_raw(b"{not json".to_vec(), Some(TG_SECRET))
            .await
            .status(),
        400
    );
    let huge = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(
        c.post_telegram_raw(huge, Some(TG_SECRET)).await.status(),
        413
    );
    c.nothing_more().await;
    assert!(c.sent_to(321).is_empty());

    // Telegram retries a delivery it thinks failed: processed once.
    for _ in 0..3 {
        assert_eq!(
            c.post_telegram_raw(body.clone(), Some(TG_SECRET))
                .await
                .status(),
            200
        );
    }
    c.next().await;
    c.nothing_more().await;
    assert_eq!(c.sent_to(321).len(), 1, "prompted once");

    // Meta's GET handshake is answered with the challenge.
    let resp = c
        .http
        .get(format!(
            "{}/webhooks/waba?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=4242",
            c.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "4242");
}
