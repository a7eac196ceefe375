//! Identity linking: the stores, deep-link tokens and every transition of the linking flow.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use messaging_conversations::identity::*;
use messaging_core::testkit::StubChannel;
use messaging_core::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn phone(s: &str) -> Phone {
    Phone::parse(s).unwrap()
}

const KEY: &[u8] = b"clinic-deep-link-key-0123456789ab";

struct World {
    clock: ManualClock,
    store: Arc<MemoryIdentityStore>,
    directory: Arc<MemoryDirectory>,
    tg: Arc<StubChannel>,
    max: Arc<StubChannel>,
    signer: Arc<DeepLinkSigner>,
    linker: Linker,
}

impl World {
    fn new() -> Self {
        Self::with_config(LinkerConfig::default())
    }

    fn with_config(config: LinkerConfig) -> Self {
        let clock = ManualClock::new(t0());
        let store = Arc::new(MemoryIdentityStore::new());
        let directory = Arc::new(MemoryDirectory::new());
        directory.insert("patient-7", "Анна Петровна", phone("+79123456789"));
        let tg = Arc::new(StubChannel::new("tg", ChannelKind::Telegram).with_clock(clock.clone()));
        let max = Arc::new(StubChannel::new("max", ChannelKind::Max).with_clock(clock.clone()));
        let signer = Arc::new(
            DeepLinkSigner::new(DeepLinkKey::new(KEY).unwrap(), Arc::new(clock.clone()))
                .ttl(Duration::from_secs(7 * 24 * 3600)),
        );
        let linker = Linker::builder(store.clone(), store.clone(), directory.clone())
            .clock(Arc::new(clock.clone()))
            .channel(tg.clone())
            .channel(max.clone())
            .signer(signer.clone())
            .config(config)
            .build();
        World {
            clock,
            store,
            directory,
            tg,
            max,
            signer,
            linker,
        }
    }

    fn tg_msg(&self, user: i64, text: &str) -> InboundMessage {
        let mut m = InboundMessage::new(
            ChannelKind::Telegram,
            Address::Telegram(user),
            Some(text.to_owned()),
            self.clock.now(),
        );
        m.channel_id = Some(ChannelId::new("tg"));
        m
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

// ---- stores ----

#[tokio::test]
async fn memory_store_links_looks_up_and_unlinks() {
    let s = MemoryIdentityStore::new();
    let p = phone("+79123456789");
    let tg = Link::new(
        Address::Telegram(42),
        "p-1",
        Provenance::SharedContact,
        t0(),
    )
    .with_phone(p.clone());
    let wa = Link::new(
        Address::WhatsApp("79123456789".into()),
        "p-1",
        Provenance::WhatsAppPhone,
        t0() + chrono::Duration::seconds(1),
    );
    let other = Link::new(Address::MaxUser(7), "p-2", Provenance::Operator, t0());
    assert_eq!(s.link(&tg).await.unwrap(), None);
    s.link(&wa).await.unwrap();
    s.link(&other).await.unwrap();

    assert_eq!(
        s.by_address(&Address::Telegram(42)).await.unwrap(),
        Some(tg.clone())
    );
    assert_eq!(s.by_address(&Address::Telegram(43)).await.unwrap(), None);
    let by_phone = s.by_phone(&p).await.unwrap();
    assert_eq!(
        by_phone,
        vec![tg.clone(), wa.clone()],
        "verified phone and WhatsApp id both match"
    );
    assert!(s.by_phone(&phone("+79990001122")).await.unwrap().is_empty());
    assert_eq!(s.by_contact(&ContactId::new("p-1")).await.unwrap().len(), 2);

    // Re-linking an address replaces its link.
    let relinked = Link::new(Address::Telegram(42), "p-2", Provenance::Operator, t0());
    assert_eq!(s.link(&relinked).await.unwrap(), Some(tg));
    assert_eq!(s.by_contact(&ContactId::new("p-2")).await.unwrap().len(), 2);

    assert_eq!(
        s.unlink(&Address::Telegram(42)).await.unwrap(),
        Some(relinked)
    );
    assert_eq!(s.unlink(&Address::Telegram(42)).await.unwrap(), None);
    assert_eq!(s.by_address(&Address::Telegram(42)).await.unwrap(), None);
}

#[tokio::test]
async fn block_marks_the_link_inactive_and_unblock_reactivates() {
    let s = MemoryIdentityStore::new();
    s.link(&Link::new(
        Address::Telegram(42),
        "p-1",
        Provenance::SharedContact,
        t0(),
    ))
    .await
    .unwrap();
    let later = t0() + chrono::Duration::hours(1);
    let l = s
        .set_active(&Address::Telegram(42), false, later)
        .await
        .unwrap()
        .unwrap();
    assert!(!l.active);
    assert_eq!(l.updated_at, later);
    assert_eq!(l.linked_at, t0());
    let l = s
        .set_active(&Address::Telegram(42), true, later)
        .await
        .unwrap()
        .unwrap();
    assert!(l.active);
    assert_eq!(
        s.set_active(&Address::Telegram(1), false, later)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn erase_removes_every_link_of_the_contact_only() {
    let s = MemoryIdentityStore::new();
    for (a, c) in [
        (Address::Telegram(1), "p-1"),
        (Address::MaxUser(1), "p-1"),
        (Address::Telegram(2), "p-2"),
    ] {
        s.link(&Link::new(a, c, Provenance::Operator, t0()))
            .await
            .unwrap();
    }
    let erased = s.erase_contact(&ContactId::new("p-1")).await.unwrap();
    assert_eq!(erased.len(), 2);
    assert!(
        s.by_contact(&ContactId::new("p-1"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.by_contact(&ContactId::new("p-2")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn used_tokens_are_one_time_and_purged_after_expiry() {
    let s = MemoryIdentityStore::new();
    let exp = t0() + chrono::Duration::days(1);
    assert!(s.mark_token_used("abc", exp, t0()).await.unwrap());
    assert!(!s.mark_token_used("abc", exp, t0()).await.unwrap());
    assert_eq!(s.purge_expired_tokens(t0()).await.unwrap(), 0);
    assert_eq!(
        s.purge_expired_tokens(exp + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
}

#[test]
fn provenance_names_round_trip() {
    for p in [
        Provenance::SharedContact,
        Provenance::DeepLink,
        Provenance::Operator,
        Provenance::WhatsAppPhone,
    ] {
        assert_eq!(p.as_str().parse::<Provenance>().unwrap(), p);
        assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
    }
    assert!("telepathy".parse::<Provenance>().is_err());
}

#[tokio::test]
async fn memory_directory_finds_or_creates() {
    let d = MemoryDirectory::new();
    let p = phone("+79123456789");
    assert_eq!(d.find_by_phone(&p).await.unwrap(), None);
    let e = d
        .find_or_create_by_phone(&p, Some("  Иван "))
        .await
        .unwrap();
    assert!(e.created);
    assert_eq!(e.display_name, "Иван");
    let again = d.find_or_create_by_phone(&p, Some("other")).await.unwrap();
    assert_eq!((again.contact, again.created), (e.contact.clone(), false));
    let nameless = d
        .find_or_create_by_phone(&phone("+79990001122"), None)
        .await
        .unwrap();
    assert_eq!(nameless.display_name, "+79990001122");
    assert_ne!(nameless.contact, e.contact);
    assert_eq!(d.len(), 2);
}

// ---- tokens ----

#[test]
fn token_fits_telegram_and_max_start_payloads() {
    let w = World::new();
    for id in [
        "p",
        "patient-7",
        "x".repeat(30).as_str(),
        "6f1c2e0a-1b2c-4d5e-8f90-0123456789ab",
    ] {
        let t = w.signer.issue(&ContactId::new(id)).unwrap();
        assert!((1..=64).contains(&t.token.len()), "{id}: {}", t.token.len());
        assert!(
            t.token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{}",
            t.token
        );
        let claims = w.signer.verify(&t.token).unwrap();
        assert_eq!(claims, t.claims);
        assert_eq!(claims.contact.as_str(), id);
    }
    assert!(matches!(
        w.signer.issue(&ContactId::new("y".repeat(31))),
        Err(TokenError::ContactIdTooLong { len: 31, max: 30 })
    ));
    assert_eq!(
        w.signer.issue(&ContactId::new("")),
        Err(TokenError::EmptyContactId)
    );
}

#[test]
fn two_tokens_for_one_contact_differ() {
    let w = World::new();
    let a = w.signer.issue(&ContactId::new("p-1")).unwrap();
    let b = w.signer.issue(&ContactId::new("p-1")).unwrap();
    assert_ne!(a.token, b.token);
    assert_ne!(a.claims.token_id, b.claims.token_id);
}

#[test]
fn forged_and_altered_tokens_are_refused() {
    let w = World::new();
    let t = w.signer.issue(&ContactId::new("patient-7")).unwrap().token;

    // Flip one character anywhere: the MAC no longer matches.
    for i in 0..t.len() {
        let mut chars: Vec<char> = t.chars().collect();
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let forged: String = chars.into_iter().collect();
        let r = w.signer.verify(&forged);
        assert!(
            matches!(r, Err(TokenError::BadSignature | TokenError::Malformed(_))),
            "position {i}: {r:?}"
        );
    }

    // Another key signs nothing we accept.
    let other = DeepLinkSigner::new(
        DeepLinkKey::new(b"another-key-another-key-000").unwrap(),
        Arc::new(w.clock.clone()),
    );
    let foreign = other.issue(&ContactId::new("patient-7")).unwrap().token;
    assert_eq!(w.signer.verify(&foreign), Err(TokenError::BadSignature));

    for junk in ["", "a", "not base64!", &"A".repeat(65), "AAAA"] {
        assert!(
            matches!(w.signer.verify(junk), Err(TokenError::Malformed(_))),
            "{junk:?}"
        );
    }
}

#[test]
fn tokens_expire() {
    let w = World::new();
    let t = w.signer.issue(&ContactId::new("patient-7")).unwrap();
    assert_eq!(t.claims.expires_at, t0() + chrono::Duration::days(7));
    w.clock
        .set(t.claims.expires_at - chrono::Duration::seconds(1));
    assert!(w.signer.verify(&t.token).is_ok());
    w.clock.set(t.claims.expires_at);
    assert_eq!(
        w.signer.verify(&t.token),
        Err(TokenError::Expired {
            expired_at: t.claims.expires_at
        })
    );
}

#[test]
fn key_is_checked_and_never_shown() {
    assert_eq!(
        DeepLinkKey::new(b"short").unwrap_err(),
        TokenError::KeyTooShort { min: 16 }
    );
    let w = World::new();
    let dbg = format!("{:?} {:?}", w.signer, DeepLinkKey::new(KEY).unwrap());
    assert!(!dbg.contains("clinic-deep-link"), "{dbg}");
    assert!(dbg.contains("redacted"));
}

#[test]
fn start_urls() {
    assert_eq!(
        telegram_start_url("@clinic_bot", "tok"),
        "https://t.me/clinic_bot?start=tok"
    );
    assert_eq!(
        max_start_url("@clinic_bot", "tok"),
        "https://max.ru/clinic_bot?start=tok"
    );
}

// ---- the linking flow ----

#[tokio::test]
async fn unknown_sender_is_prompted_once_per_interval() {
    let w = World::with_config(LinkerConfig {
        reprompt_interval: Duration::from_secs(3600),
        ..LinkerConfig::default()
    });
    assert_eq!(
        w.linker
            .on_inbound(&w.tg_msg(42, "Здравствуйте"))
            .await
            .unwrap(),
        LinkOutcome::Prompted
    );
    let sent = w.tg.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, Address::Telegram(42));
    assert_eq!(
        sent[0].content.buttons,
        vec![Button::request_contact("Поделиться номером")]
    );
    assert!(w.linker.is_pending(&Address::Telegram(42)));

    w.advance(60);
    assert_eq!(
        w.linker.on_inbound(&w.tg_msg(42, "алло?")).await.unwrap(),
        LinkOutcome::Pending
    );
    assert_eq!(w.tg.sent().len(), 1, "no prompt on every message");

    w.advance(3600);
    assert_eq!(
        w.linker.on_inbound(&w.tg_msg(42, "ау")).await.unwrap(),
        LinkOutcome::Prompted
    );
    assert_eq!(w.tg.sent().len(), 2);

    // Another sender has their own state.
    assert_eq!(
        w.linker.on_inbound(&w.tg_msg(43, "hi")).await.unwrap(),
        LinkOutcome::Prompted
    );
    assert_eq!(w.linker.pending_count(), 2);
}

#[tokio::test]
async fn own_contact_links_to_the_existing_patient_by_phone() {
    let w = World::new();
    w.linker.on_inbound(&w.tg_msg(42, "hi")).await.unwrap();
    let shared = w.tg_msg(42, "").contact(phone("8 912 345-67-89"), true);
    let LinkOutcome::Linked(link) = w.linker.on_inbound(&shared).await.unwrap() else {
        panic!("not linked")
    };
    assert_eq!(link.contact.as_str(), "patient-7");
    assert_eq!(link.provenance, Provenance::SharedContact);
    assert_eq!(link.phone, Some(phone("+79123456789")));
    assert_eq!(link.linked_at, t0());
    assert_eq!(w.directory.len(), 1, "found, not created");
    assert!(!w.linker.is_pending(&Address::Telegram(42)));
    assert_eq!(
        w.store.by_address(&Address::Telegram(42)).await.unwrap(),
        Some(link.clone())
    );
    let thanks = w.tg.sent().last().unwrap().content.text.clone();
    assert!(thanks.contains("Анна Петровна"), "{thanks}");

    // Linked now: nothing more is asked.
    let before = w.tg.sent().len();
    assert_eq!(
        w.linker.on_inbound(&w.tg_msg(42, "Да")).await.unwrap(),
        LinkOutcome::Known(link)
    );
    assert_eq!(w.tg.sent().len(), before);
}

#[tokio::test]
async fn own_contact_with_an_unknown_phone_creates_a_contact() {
    let w = World::new();
    let shared = w
        .tg_msg(42, "")
        .sender_name("Иван")
        .contact(phone("+79990001122"), true);
    let LinkOutcome::Linked(link) = w.linker.on_inbound(&shared).await.unwrap() else {
        panic!("not linked")
    };
    assert_eq!(w.directory.len(), 2);
    let e = w
        .directory
        .find_by_phone(&phone("+79990001122"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.contact, link.contact);
    assert_eq!(e.display_name, "Иван");
}

#[tokio::test]
async fn someone_elses_contact_is_refused_politely() {
    let w = World::new();
    let spoofed = w.tg_msg(42, "").contact(phone("+79123456789"), false);
    assert_eq!(
        w.linker.on_inbound(&spoofed).await.unwrap(),
        LinkOutcome::RefusedForeignContact
    );
    assert_eq!(
        w.store.by_address(&Address::Telegram(42)).await.unwrap(),
        None
    );
    let sent = w.tg.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].content.text.contains("не ваш контакт"));
    assert_eq!(
        sent[0].content.buttons[0].action,
        ButtonAction::RequestContact
    );
    assert!(w.linker.is_pending(&Address::Telegram(42)));

    // A contact the adapter could not vouch for (no own flag) is refused too.
    let mut unverified = w.tg_msg(43, "");
    unverified.contact_phone = Some(phone("+79123456789"));
    assert_eq!(
        w.linker.on_inbound(&unverified).await.unwrap(),
        LinkOutcome::RefusedForeignContact
    );
    assert_eq!(
        w.store.by_address(&Address::Telegram(43)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn own_contact_without_a_readable_phone_links_nothing() {
    let w = World::new();
    let mut m = w.tg_msg(42, "");
    m.contact_is_own = Some(true);
    assert_eq!(
        w.linker.on_inbound(&m).await.unwrap(),
        LinkOutcome::UnreadablePhone
    );
    assert_eq!(
        w.store.by_address(&Address::Telegram(42)).await.unwrap(),
        None
    );
    assert_eq!(w.tg.sent().len(), 1);
}

#[tokio::test]
async fn valid_deep_link_links_without_asking_for_the_phone() {
    let w = World::new();
    let t = w.signer.issue(&ContactId::new("patient-7")).unwrap();
    let mut m = InboundMessage::new(ChannelKind::Max, Address::MaxUser(900), None, t0())
        .start_payload(&t.token);
    m.channel_id = Some(ChannelId::new("max"));
    let LinkOutcome::Linked(link) = w.linker.on_inbound(&m).await.unwrap() else {
        panic!("not linked")
    };
    assert_eq!(link.contact.as_str(), "patient-7");
    assert_eq!(link.provenance, Provenance::DeepLink);
    assert_eq!(link.token_id.as_deref(), Some(t.claims.token_id.as_str()));
    let sent = w.max.sent();
    assert_eq!(sent.len(), 1, "only the thanks");
    assert!(sent[0].content.buttons.is_empty());
    assert!(w.tg.sent().is_empty());
}

#[tokio::test]
async fn used_deep_link_links_nothing_the_second_time() {
    let w = World::new();
    let t = w.signer.issue(&ContactId::new("patient-7")).unwrap();
    let first = w
        .tg_msg(1, &format!("/start {}", t.token))
        .start_payload(&t.token);
    assert!(matches!(
        w.linker.on_inbound(&first).await.unwrap(),
        LinkOutcome::Linked(_)
    ));
    // Someone else got hold of the same link.
    let second = w
        .tg_msg(2, &format!("/start {}", t.token))
        .start_payload(&t.token);
    assert_eq!(
        w.linker.on_inbound(&second).await.unwrap(),
        LinkOutcome::TokenRejected {
            error: TokenError::AlreadyUsed,
            prompted: true
        }
    );
    assert_eq!(
        w.store.by_address(&Address::Telegram(2)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn forged_and_expired_deep_links_link_nothing() {
    let w = World::new();
    let forged = w
        .tg_msg(1, "/start x")
        .start_payload("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(
        w.linker.on_inbound(&forged).await.unwrap(),
        LinkOutcome::TokenRejected {
            error: TokenError::BadSignature,
            prompted: true
        }
    );
    let t = w.signer.issue(&ContactId::new("patient-7")).unwrap();
    w.clock
        .set(t.claims.expires_at + chrono::Duration::seconds(1));
    let expired = w.tg_msg(2, "/start").start_payload(&t.token);
    assert!(matches!(
        w.linker.on_inbound(&expired).await.unwrap(),
        LinkOutcome::TokenRejected {
            error: TokenError::Expired { .. },
            ..
        }
    ));
    assert!(
        w.store
            .by_contact(&ContactId::new("patient-7"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn whatsapp_sms_and_groups_are_not_linked_by_prompt() {
    let w = World::new();
    let m = InboundMessage::new(
        ChannelKind::WhatsApp,
        Address::WhatsApp("79123456789".into()),
        Some("hi".into()),
        t0(),
    );
    assert_eq!(
        w.linker.on_inbound(&m).await.unwrap(),
        LinkOutcome::NotLinkable
    );
    assert!(w.tg.sent().is_empty());
}

#[tokio::test]
async fn a_blocked_link_is_reactivated_when_the_person_writes() {
    let w = World::new();
    w.store
        .link(&Link::new(
            Address::Telegram(42),
            "patient-7",
            Provenance::Operator,
            t0(),
        ))
        .await
        .unwrap();
    w.store
        .set_active(&Address::Telegram(42), false, t0())
        .await
        .unwrap();
    let LinkOutcome::Known(link) = w.linker.on_inbound(&w.tg_msg(42, "hi")).await.unwrap() else {
        panic!()
    };
    assert!(link.active);
}

#[tokio::test]
async fn failed_prompt_is_an_error_and_is_retried_next_time() {
    let w = World::new();
    w.tg.push_error(ChannelError::temporary("network"));
    assert!(matches!(
        w.linker.on_inbound(&w.tg_msg(42, "hi")).await,
        Err(LinkError::Send(_))
    ));
    assert!(!w.linker.is_pending(&Address::Telegram(42)));
    assert_eq!(
        w.linker.on_inbound(&w.tg_msg(42, "hi")).await.unwrap(),
        LinkOutcome::Prompted
    );
}

#[tokio::test]
async fn no_channel_to_answer_is_a_typed_error() {
    let store = Arc::new(MemoryIdentityStore::new());
    let linker = Linker::builder(store.clone(), store, Arc::new(MemoryDirectory::new())).build();
    let m = InboundMessage::new(
        ChannelKind::Max,
        Address::MaxUser(1),
        Some("hi".into()),
        t0(),
    );
    assert!(matches!(
        linker.on_inbound(&m).await,
        Err(LinkError::NoChannel(ChannelKind::Max))
    ));
}

#[tokio::test]
async fn pending_senders_are_bounded() {
    let w = World::with_config(LinkerConfig {
        max_pending: 2,
        ..LinkerConfig::default()
    });
    for user in 1..=3 {
        w.linker.on_inbound(&w.tg_msg(user, "hi")).await.unwrap();
        w.advance(1);
    }
    assert_eq!(w.linker.pending_count(), 2);
    assert!(
        !w.linker.is_pending(&Address::Telegram(1)),
        "the oldest is forgotten"
    );
    assert!(w.linker.is_pending(&Address::Telegram(3)));
}
