//! Consent: the stop words the inbox and the sender governor both recognise, and the one
//! opt-out record that the inbox, the governor and the cascade engine all read.
//!
//! ## One opt-out record
//!
//! A person says "СТОП" once; every part of the family must honour it. The record is an
//! [`OptOutStore`]: who opted out (or back in), of what, and when, by key.
//!
//! | who | writes | reads |
//! |---|---|---|
//! | the inbox (`messaging-conversations`) | stop and start words, provider opt-out signals, under the sender's address keys and, once resolved, their contact key | |
//! | the sender governor (`messaging-hygiene`) | stop and start words and opt-out signals it observes itself, and operator requests | before every send, in its [`SendGate`] check |
//! | the cascade engine | | through its gates: the governor, or [`OptOutGate`] when no governor runs |
//! | your application | an opt-out form, an operator's click (use [`contact_key`] for a contact) | |
//!
//! The engine has no reader of its own on purpose: it already asks its
//! [`SendGate`]s before every send, and a gate that denies is a skipped step with the reason in
//! the cascade's history. Giving the engine a second path would let the two disagree. So: give
//! the inbox and the governor the same store, and register the governor (or an [`OptOutGate`]
//! over that store) as a gate of the engine. [`Recipient::opt_outs`] stays what it was: refusals
//! your application already knows when it submits a notification, checked by the engine itself.
//!
//! Keys are [`Address::key`]s (`"tg:42"`, `"phone:+79123456789"`, `"wa:79123456789"`) and
//! contact keys (`"contact:patient-7"`, [`contact_key`]). A send is checked against every key of
//! the person ([`person_keys`]), so an opt-out said on WhatsApp holds for SMS to the same phone
//! and, once the inbox knows the contact, for every channel of that person.
//!
//! **The latest word wins.** Each key keeps its latest statement (opted out or back in, with
//! when it was said); a statement older than the stored one is ignored, so webhooks arriving out
//! of order cannot undo a newer "СТОП". A person is opted out when, among all their keys, the
//! most recent statement is an opt-out (at the same instant, an opt-out wins). "СТАРТ" on
//! Telegram therefore lifts a "СТОП" said earlier on WhatsApp.
//!
//! An opt-out covers every purpose, or one ([`Purpose::Marketing`] for WhatsApp's marketing stop
//! button): a marketing-only opt-out never stops a service reminder.
//!
//! ```
//! use std::sync::Arc;
//! use chrono::{TimeZone, Utc};
//! use messaging_core::consent::{MemoryOptOutStore, OptOutGate, OptOutStore, address_keys};
//! use messaging_core::gate::{GateDecision, SendContext, SendGate};
//! use messaging_core::*;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = Arc::new(MemoryOptOutStore::new());
//! let at = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
//! // "СТОП" arrived on WhatsApp (the inbox and the governor do this for you).
//! let from = Address::WhatsApp("79123456789".into());
//! store.opt_out(&address_keys(&from), None, at).await.unwrap();
//!
//! // The engine asks its gates before an SMS to the same phone.
//! let gate = OptOutGate::new(store.clone());
//! let anna = Recipient::with_phone("anna", "+79123456789").unwrap();
//! let sms = anna.address_for(ChannelKind::Sms).unwrap();
//! let (id, channel) = (NotificationId::from("n-1"), ChannelId::new("sms"));
//! let ctx = SendContext::new(at, &id, &channel, ChannelKind::Sms, &anna, &sms);
//! assert!(matches!(gate.check(&ctx).await, GateDecision::Deny { .. }));
//! # });
//! ```
//!
//! [`Recipient::opt_outs`]: crate::Recipient::opt_outs
//! [`Address::key`]: crate::Address::key

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::gate::{GateDecision, SendContext, SendGate};
use crate::model::{Address, ContactId, Purpose, Recipient};
use crate::phone::Phone;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod conformance;

/// The stop words recognised by default (compared case-insensitively, as the whole message or
/// its first word). "Отмена"/"cancel" are absent on purpose: to a clinic reminder they mean
/// "cancel my appointment".
pub const DEFAULT_STOP_WORDS: &[&str] = &[
    "стоп",
    "stop",
    "stopall",
    "отписаться",
    "отписка",
    "отпишите",
    "unsubscribe",
    "optout",
    "opt-out",
    "не писать",
    "хватит",
];

/// The words that undo an opt-out by default ("СТАРТ", "start"), matched like stop words.
pub const DEFAULT_START_WORDS: &[&str] = &["старт", "start", "unstop", "подписаться"];

/// Whether `text` is a stop word of `words`: the whole message or its first word(s), ignoring
/// case and punctuation ("Стоп!", "stop please"; not "стопка").
///
/// ```
/// use messaging_core::consent::{is_stop_word, DEFAULT_STOP_WORDS};
/// assert!(is_stop_word("СТОП", DEFAULT_STOP_WORDS));
/// assert!(is_stop_word("  Unsubscribe. ", DEFAULT_STOP_WORDS));
/// assert!(!is_stop_word("стопка книг", DEFAULT_STOP_WORDS));
/// ```
pub fn is_stop_word<S: AsRef<str>>(text: &str, words: &[S]) -> bool {
    let norm: String = text
        .trim()
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_alphanumeric() || c == '-' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let norm = norm.split_whitespace().collect::<Vec<_>>().join(" ");
    words.iter().any(|w| {
        let w = w.as_ref().to_lowercase();
        !w.is_empty()
            && (norm == w
                || norm
                    .strip_prefix(w.as_str())
                    .is_some_and(|rest| rest.starts_with(' ')))
    })
}

/// The key of a contact in the opt-out record (`"contact:patient-7"`), as
/// [`Recipient::address_keys`] lists it.
///
/// ```
/// use messaging_core::{ContactId, consent::contact_key};
/// assert_eq!(contact_key(&ContactId::new("patient-7")), "contact:patient-7");
/// ```
pub fn contact_key(contact: &ContactId) -> String {
    format!("contact:{contact}")
}

/// The keys a message from `address` is recorded under: its own key and, for a WhatsApp id that
/// is a phone number, that phone's key too (a person's phone reaches them on WhatsApp and SMS).
///
/// ```
/// use messaging_core::{Address, consent::address_keys};
/// let keys = address_keys(&Address::WhatsApp("79123456789".into()));
/// assert_eq!(keys, ["wa:79123456789", "phone:+79123456789"]);
/// assert_eq!(address_keys(&Address::Telegram(42)), ["tg:42"]);
/// ```
pub fn address_keys(address: &Address) -> Vec<String> {
    let mut keys = vec![address.key()];
    if let Address::WhatsApp(id) = address {
        let digits = id.trim().trim_start_matches('+');
        if let Ok(p) = Phone::parse(&format!("+{digits}")) {
            keys.push(Address::Phone(p).key());
        }
    }
    keys
}

/// Every key of the person a send goes to: the keys of the address it goes to
/// ([`address_keys`]) and every key of the recipient ([`Recipient::address_keys`], which
/// includes their contact key).
pub fn person_keys(recipient: &Recipient, address: &Address) -> Vec<String> {
    let mut keys = address_keys(address);
    for k in recipient.address_keys() {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// The one opt-out record of the family. See the [module docs](self) for who writes and reads
/// it and for the rule it keeps: per key the latest statement, per person the latest statement
/// among their keys.
///
/// `purpose` `None` covers every purpose; `Some(p)` only `p`. Implementations must give the same
/// answers as [`MemoryOptOutStore`]; `conformance` (feature `testkit`) checks that. Object
/// safe: use as `Arc<dyn OptOutStore>`.
#[async_trait]
pub trait OptOutStore: Send + Sync + fmt::Debug + 'static {
    /// Records that the person behind `keys` opted out (of `purpose`, or of everything) at `at`.
    /// A key whose stored statement is newer than `at` keeps it.
    async fn opt_out(
        &self,
        keys: &[String],
        purpose: Option<Purpose>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Records that the person behind `keys` opted back in (to `purpose`, or to everything) at
    /// `at`. A key whose stored statement is newer than `at` keeps it.
    async fn opt_in(
        &self,
        keys: &[String],
        purpose: Option<Purpose>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Whether the person behind `keys` is opted out of `purpose`: among the statements stored
    /// for any of `keys` that cover `purpose`, the latest is an opt-out (an opt-out wins a tie).
    async fn is_opted_out(&self, keys: &[String], purpose: Purpose) -> Result<bool, StoreError>;
}

#[async_trait]
impl<T: OptOutStore + ?Sized> OptOutStore for Arc<T> {
    async fn opt_out(
        &self,
        keys: &[String],
        purpose: Option<Purpose>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        (**self).opt_out(keys, purpose, at).await
    }

    async fn opt_in(
        &self,
        keys: &[String],
        purpose: Option<Purpose>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        (**self).opt_in(keys, purpose, at).await
    }

    async fn is_opted_out(&self, keys: &[String], purpose: Purpose) -> Result<bool, StoreError> {
        (**self).is_opted_out(keys, purpose).await
    }
}

/// One stored statement: opted out or back in, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Statement {
    opted_out: bool,
    at: DateTime<Utc>,
}

/// The opt-out record in process memory: fine for one process and for tests; lost on restart.
/// `messaging-store` keeps it in SQLite or PostgreSQL.
///
/// ```
/// use chrono::Utc;
/// use messaging_core::Purpose;
/// use messaging_core::consent::{MemoryOptOutStore, OptOutStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryOptOutStore::new();
/// let keys = ["tg:42".to_owned()];
/// store.opt_out(&keys, None, Utc::now()).await.unwrap();
/// assert!(store.is_opted_out(&keys, Purpose::Service).await.unwrap());
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryOptOutStore {
    statements: Mutex<HashMap<(String, Option<Purpose>), Statement>>,
}

impl MemoryOptOutStore {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    fn record(
        &self,
        keys: &[String],
        purpose: Option<Purpose>,
        opted_out: bool,
        at: DateTime<Utc>,
    ) {
        // Every update is one map insert: a poisoned lock still holds consistent data.
        let mut m = self.statements.lock().unwrap_or_else(|e| e.into_inner());
        let new = Statement { opted_out, at };
        for k in keys {
            let slot = m.entry((k.clone(), purpose)).or_insert(new);
            if at >= slot.at {
                *slot = new;
            }
        }
    }
}

/// The statement that decides: the latest, an opt-out winning a tie.
fn latest(a: Statement, b: Statement) -> Statement {
    if (b.at, b.opted_out) > (a.at, a.opted_out) {
        b
    } else {
        a
    }
}

#[async_trait]
impl OptOutStore for MemoryOptOutStore {
    async fn opt_out(
        &self,
        keys: &[String],
        purpose: Option<Purpose>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.record(keys, purpose, true, at);
        Ok(())
    }

    async fn opt_in(
        &self,
        keys: &[String],
        purpose: Option<Purpose>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.record(keys, purpose, false, at);
        Ok(())
    }

    async fn is_opted_out(&self, keys: &[String], purpose: Purpose) -> Result<bool, StoreError> {
        let m = self.statements.lock().unwrap_or_else(|e| e.into_inner());
        let decisive = keys
            .iter()
            .flat_map(|k| [(k.clone(), None), (k.clone(), Some(purpose))])
            .filter_map(|slot| m.get(&slot).copied())
            .reduce(latest);
        Ok(decisive.is_some_and(|s| s.opted_out))
    }
}

/// A [`SendGate`] that denies sends to people opted out in an [`OptOutStore`]: the engine's
/// reader of the opt-out record when no sender governor runs (the governor checks the same
/// record itself). When the store fails, the send is deferred, never let through.
///
/// ```
/// use std::sync::Arc;
/// use messaging_core::consent::{MemoryOptOutStore, OptOutGate};
/// let gate = OptOutGate::new(Arc::new(MemoryOptOutStore::new()));
/// // Engine::builder().gate(Arc::new(gate))
/// # let _ = gate;
/// ```
#[derive(Debug, Clone)]
pub struct OptOutGate {
    store: Arc<dyn OptOutStore>,
    retry_on_error: chrono::Duration,
}

impl OptOutGate {
    /// A gate over `store`; a store failure defers the send by one minute.
    pub fn new(store: Arc<dyn OptOutStore>) -> Self {
        OptOutGate {
            store,
            retry_on_error: chrono::Duration::minutes(1),
        }
    }

    /// How long to defer a send when the store cannot be read.
    pub fn retry_on_error(mut self, d: chrono::Duration) -> Self {
        self.retry_on_error = d;
        self
    }

    /// The store it reads.
    pub fn store(&self) -> &Arc<dyn OptOutStore> {
        &self.store
    }
}

#[async_trait]
impl SendGate for OptOutGate {
    async fn check(&self, ctx: &SendContext<'_>) -> GateDecision {
        let keys = person_keys(ctx.recipient, ctx.address);
        match self.store.is_opted_out(&keys, ctx.purpose).await {
            Ok(false) => GateDecision::Allow,
            Ok(true) => GateDecision::Deny {
                reason: "the person opted out".into(),
            },
            Err(e) => GateDecision::Defer {
                until: ctx.now + self.retry_on_error,
                reason: format!("the opt-out record cannot be read: {e}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::ChannelKind;
    use crate::model::{ChannelId, NotificationId};
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
    }

    #[derive(Debug)]
    struct Broken;

    #[async_trait]
    impl OptOutStore for Broken {
        async fn opt_out(
            &self,
            _: &[String],
            _: Option<Purpose>,
            _: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn opt_in(
            &self,
            _: &[String],
            _: Option<Purpose>,
            _: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn is_opted_out(&self, _: &[String], _: Purpose) -> Result<bool, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
    }

    async fn decide(gate: &OptOutGate, recipient: &Recipient, purpose: Purpose) -> GateDecision {
        let (id, channel) = (NotificationId::from("n"), ChannelId::new("sms"));
        let address = recipient.address_for(ChannelKind::Sms).unwrap();
        let ctx = SendContext::new(at(), &id, &channel, ChannelKind::Sms, recipient, &address)
            .purpose(purpose);
        gate.check(&ctx).await
    }

    #[tokio::test]
    async fn gate_reads_every_key_of_the_person_and_the_purpose() {
        let store = Arc::new(MemoryOptOutStore::new());
        let gate = OptOutGate::new(store.clone());
        let anna = Recipient::with_phone("anna", "+79123456789").unwrap();
        assert_eq!(
            decide(&gate, &anna, Purpose::Service).await,
            GateDecision::Allow
        );
        // Said on Telegram by the linked contact: holds for SMS.
        let keys = vec!["tg:42".to_owned(), contact_key(&ContactId::new("anna"))];
        store
            .opt_out(&keys, Some(Purpose::Marketing), at())
            .await
            .unwrap();
        assert_eq!(
            decide(&gate, &anna, Purpose::Service).await,
            GateDecision::Allow,
            "a marketing opt-out lets service through"
        );
        assert!(matches!(
            decide(&gate, &anna, Purpose::Marketing).await,
            GateDecision::Deny { .. }
        ));
    }

    #[tokio::test]
    async fn gate_defers_when_the_store_fails() {
        let gate = OptOutGate::new(Arc::new(Broken)).retry_on_error(chrono::Duration::minutes(5));
        let anna = Recipient::with_phone("anna", "+79123456789").unwrap();
        match decide(&gate, &anna, Purpose::Service).await {
            GateDecision::Defer { until, reason } => {
                assert_eq!(until, at() + chrono::Duration::minutes(5));
                assert!(reason.contains("down"), "{reason}");
            }
            d => panic!("a failing store must defer, got {d:?}"),
        }
    }

    #[test]
    fn person_keys_join_the_address_and_the_recipient() {
        let anna = Recipient::with_phone("anna", "+79123456789")
            .unwrap()
            .address(Address::Telegram(42));
        let keys = person_keys(&anna, &Address::WhatsApp("79123456789".into()));
        assert_eq!(keys[0], "wa:79123456789");
        for k in ["phone:+79123456789", "tg:42", "contact:anna"] {
            assert_eq!(
                keys.iter().filter(|x| *x == k).count(),
                1,
                "{k} once in {keys:?}"
            );
        }
        // A WhatsApp id that is not a number has no phone key.
        assert_eq!(
            address_keys(&Address::WhatsApp("US.1349".into())),
            ["wa:US.1349"]
        );
    }
}
