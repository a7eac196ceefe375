//! Identity linking: which person (the app's contact, the patient card) is behind an opaque
//! Telegram or Max user id.
//!
//! | piece | what it is |
//! |---|---|
//! | [`Link`] / [`Provenance`] | one address linked to a contact: how it was verified, when, active or not |
//! | [`IdentityStore`] | links by address, by phone and by contact; unlink; erase a person |
//! | [`UsedTokenStore`] | deep-link token ids already used (each token links once) |
//! | [`MemoryIdentityStore`] | both, in process memory |
//! | [`ContactDirectory`] / [`MemoryDirectory`] | the app's own contacts, found or created by phone |
//! | [`DeepLinkSigner`] | signed, expiring deep-link tokens for "write to our bot in Max" campaigns |
//! | [`Linker`] | the linking flow per unknown sender: prompt for the phone, check the shared contact, link |
//! | `conformance` (feature `testkit`) | the behaviour suite every `IdentityStore` and `UsedTokenStore` runs |
//!
//! Linking is verified: a shared contact counts only when it is the sender's own (the adapter
//! checks and sets `contact_is_own`), a deep-link token only when its HMAC matches, it has not
//! expired and it was never used. The stores take and return plain data so a SQL backend can
//! implement them (`messaging-store`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use messaging_core::Phone;
use messaging_core::StoreError;
use messaging_core::{Address, ContactId};

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod conformance;
mod directory;
mod linker;
mod token;

pub use directory::{ContactDirectory, DirectoryEntry, MemoryDirectory};
pub use linker::{LinkError, LinkOutcome, Linker, LinkerBuilder, LinkerConfig};
pub use token::{
    DeepLinkKey, DeepLinkSigner, DeepLinkToken, MAX_TOKEN_LEN, TokenClaims, TokenError,
    max_start_url, telegram_start_url,
};

/// How a link between an address and a contact was verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Provenance {
    /// The person shared their own contact (phone) in Telegram or Max.
    SharedContact,
    /// The person opened a signed deep link issued for this contact.
    DeepLink,
    /// An operator linked it by hand.
    Operator,
    /// WhatsApp itself vouches for the phone: the sender's WhatsApp id is their number.
    #[serde(rename = "whatsapp_phone")]
    WhatsAppPhone,
}

impl Provenance {
    /// The snake-case name stored by SQL backends.
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::SharedContact => "shared_contact",
            Provenance::DeepLink => "deep_link",
            Provenance::Operator => "operator",
            Provenance::WhatsAppPhone => "whatsapp_phone",
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Provenance {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "shared_contact" => Ok(Provenance::SharedContact),
            "deep_link" => Ok(Provenance::DeepLink),
            "operator" => Ok(Provenance::Operator),
            "whatsapp_phone" => Ok(Provenance::WhatsAppPhone),
            other => Err(StoreError::Corrupt(format!("unknown provenance {other:?}"))),
        }
    }
}

/// One channel address linked to a contact. Plain data, so a store can build it from a row.
///
/// ```
/// use chrono::Utc;
/// use messaging_conversations::identity::{Link, Provenance};
/// use messaging_core::{Address, Phone};
/// let link = Link::new(Address::Telegram(42), "patient-7", Provenance::SharedContact, Utc::now())
///     .with_phone(Phone::parse("+79123456789").unwrap());
/// assert!(link.active);
/// assert_eq!(link.contact.as_str(), "patient-7");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// The address (Telegram chat id, Max user id, WhatsApp id, phone).
    pub address: Address,
    /// The contact it belongs to.
    pub contact: ContactId,
    /// How the link was verified.
    pub provenance: Provenance,
    /// The phone the link was verified with (a shared contact's, a WhatsApp sender's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
    /// The deep-link token id that made the link, for audits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// When it was linked.
    pub linked_at: DateTime<Utc>,
    /// When `active` last changed (or `linked_at`).
    pub updated_at: DateTime<Utc>,
    /// False while the person has blocked the bot on this address.
    pub active: bool,
}

impl Link {
    /// An active link made now.
    pub fn new(
        address: Address,
        contact: impl Into<ContactId>,
        provenance: Provenance,
        at: DateTime<Utc>,
    ) -> Self {
        Link {
            address,
            contact: contact.into(),
            provenance,
            phone: None,
            token_id: None,
            linked_at: at,
            updated_at: at,
            active: true,
        }
    }

    /// Sets the phone the link was verified with.
    pub fn with_phone(mut self, phone: Phone) -> Self {
        self.phone = Some(phone);
        self
    }

    /// Sets the deep-link token id.
    pub fn with_token_id(mut self, id: impl Into<String>) -> Self {
        self.token_id = Some(id.into());
        self
    }

    /// Whether this link reaches `phone`: verified with it, or the address is that number.
    pub fn matches_phone(&self, phone: &Phone) -> bool {
        self.phone.as_ref() == Some(phone)
            || match &self.address {
                Address::Phone(p) => p == phone,
                Address::WhatsApp(w) => w.trim().trim_start_matches('+') == phone.digits(),
                _ => false,
            }
    }
}

/// Links between addresses and contacts. One address belongs to at most one contact.
///
/// Object safe; use as `Arc<dyn IdentityStore>`. Implementations must behave like
/// [`MemoryIdentityStore`]; `conformance` (feature `testkit`) checks that.
#[async_trait]
pub trait IdentityStore: Send + Sync + fmt::Debug + 'static {
    /// Stores a link, replacing any link of the same address (a person re-linking to another
    /// card). Returns the link it replaced.
    async fn link(&self, link: &Link) -> Result<Option<Link>, StoreError>;

    /// The link of an address, active or not.
    async fn by_address(&self, address: &Address) -> Result<Option<Link>, StoreError>;

    /// Links that reach a phone (see [`Link::matches_phone`]), oldest first (equal times by
    /// address key).
    async fn by_phone(&self, phone: &Phone) -> Result<Vec<Link>, StoreError>;

    /// Every link of a contact, oldest first (equal times by address key).
    async fn by_contact(&self, contact: &ContactId) -> Result<Vec<Link>, StoreError>;

    /// Marks a link active or inactive (the person blocked or unblocked the bot). Returns the
    /// updated link, or `None` when the address is not linked.
    async fn set_active(
        &self,
        address: &Address,
        active: bool,
        at: DateTime<Utc>,
    ) -> Result<Option<Link>, StoreError>;

    /// Removes the link of an address. Returns it, if there was one.
    async fn unlink(&self, address: &Address) -> Result<Option<Link>, StoreError>;

    /// Removes every link of a contact (erasure on request). Returns the removed links.
    async fn erase_contact(&self, contact: &ContactId) -> Result<Vec<Link>, StoreError>;
}

/// Deep-link token ids already used, so that each token links once. Checked by
/// `conformance` (feature `testkit`) like [`IdentityStore`].
#[async_trait]
pub trait UsedTokenStore: Send + Sync + fmt::Debug + 'static {
    /// Marks a token id used at `at`. Returns `true` the first time, `false` if it was used
    /// already. Must be atomic: two concurrent calls with one id get one `true`.
    async fn mark_token_used(
        &self,
        token_id: &str,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Forgets ids of tokens that expired before `now` (they fail the expiry check anyway).
    /// Returns how many were forgotten.
    async fn purge_expired_tokens(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;
}

/// Links and used token ids in process memory.
///
/// ```
/// use chrono::Utc;
/// use messaging_conversations::identity::{IdentityStore, Link, MemoryIdentityStore, Provenance};
/// use messaging_core::Address;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryIdentityStore::new();
/// store.link(&Link::new(Address::Telegram(42), "p-1", Provenance::Operator, Utc::now())).await.unwrap();
/// let link = store.by_address(&Address::Telegram(42)).await.unwrap().unwrap();
/// assert_eq!(link.contact.as_str(), "p-1");
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryIdentityStore {
    links: Mutex<HashMap<String, Link>>,
    used_tokens: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl MemoryIdentityStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<String, Link>> {
        // The maps stay consistent between statements; a poisoned lock is still usable.
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn oldest_first(mut v: Vec<Link>) -> Vec<Link> {
    v.sort_by(|a, b| {
        a.linked_at
            .cmp(&b.linked_at)
            .then_with(|| a.address.key().cmp(&b.address.key()))
    });
    v
}

#[async_trait]
impl IdentityStore for MemoryIdentityStore {
    async fn link(&self, link: &Link) -> Result<Option<Link>, StoreError> {
        Ok(self.links().insert(link.address.key(), link.clone()))
    }

    async fn by_address(&self, address: &Address) -> Result<Option<Link>, StoreError> {
        Ok(self.links().get(&address.key()).cloned())
    }

    async fn by_phone(&self, phone: &Phone) -> Result<Vec<Link>, StoreError> {
        Ok(oldest_first(
            self.links()
                .values()
                .filter(|l| l.matches_phone(phone))
                .cloned()
                .collect(),
        ))
    }

    async fn by_contact(&self, contact: &ContactId) -> Result<Vec<Link>, StoreError> {
        Ok(oldest_first(
            self.links()
                .values()
                .filter(|l| &l.contact == contact)
                .cloned()
                .collect(),
        ))
    }

    async fn set_active(
        &self,
        address: &Address,
        active: bool,
        at: DateTime<Utc>,
    ) -> Result<Option<Link>, StoreError> {
        let mut links = self.links();
        Ok(links.get_mut(&address.key()).map(|l| {
            if l.active != active {
                l.active = active;
                l.updated_at = at;
            }
            l.clone()
        }))
    }

    async fn unlink(&self, address: &Address) -> Result<Option<Link>, StoreError> {
        Ok(self.links().remove(&address.key()))
    }

    async fn erase_contact(&self, contact: &ContactId) -> Result<Vec<Link>, StoreError> {
        let mut links = self.links();
        let keys: Vec<String> = links
            .iter()
            .filter(|(_, l)| &l.contact == contact)
            .map(|(k, _)| k.clone())
            .collect();
        Ok(oldest_first(
            keys.iter().filter_map(|k| links.remove(k)).collect(),
        ))
    }
}

#[async_trait]
impl UsedTokenStore for MemoryIdentityStore {
    async fn mark_token_used(
        &self,
        token_id: &str,
        expires_at: DateTime<Utc>,
        _at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut used = self.used_tokens.lock().unwrap_or_else(|e| e.into_inner());
        if used.contains_key(token_id) {
            return Ok(false);
        }
        used.insert(token_id.to_owned(), expires_at);
        Ok(true)
    }

    async fn purge_expired_tokens(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut used = self.used_tokens.lock().unwrap_or_else(|e| e.into_inner());
        let before = used.len();
        used.retain(|_, exp| *exp >= now);
        Ok(before - used.len())
    }
}
