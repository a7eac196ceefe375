//! The app's own contacts (patient cards), found or created by phone.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use messaging_core::ContactId;
use messaging_core::Phone;
use messaging_core::StoreError;

/// A contact as the directory knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The app's id of the person.
    pub contact: ContactId,
    /// How to address them.
    pub display_name: String,
    /// Whether the directory created the contact just now.
    pub created: bool,
}

/// The app's contacts, implemented by the app (its CRM, its patient database).
///
/// The linking flow calls [`ContactDirectory::find_or_create_by_phone`] when a person shares
/// their own phone; the inbox calls [`ContactDirectory::find_by_phone`] to resolve WhatsApp and
/// SMS senders, whose phone is their address.
#[async_trait]
pub trait ContactDirectory: Send + Sync + fmt::Debug + 'static {
    /// The contact with this phone, if any.
    async fn find_by_phone(&self, phone: &Phone) -> Result<Option<DirectoryEntry>, StoreError>;

    /// The contact with this phone, created (named `display_name` when given) if there is none.
    async fn find_or_create_by_phone(
        &self,
        phone: &Phone,
        display_name: Option<&str>,
    ) -> Result<DirectoryEntry, StoreError>;
}

/// A directory in process memory, for tests and demos. Created contacts get ids `contact-1`, ...
///
/// ```
/// use messaging_conversations::identity::{ContactDirectory, MemoryDirectory};
/// use messaging_core::Phone;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dir = MemoryDirectory::new();
/// let phone = Phone::parse("+79123456789").unwrap();
/// dir.insert("patient-7", "Анна Петровна", phone.clone());
/// let e = dir.find_or_create_by_phone(&phone, Some("Anya")).await.unwrap();
/// assert_eq!((e.contact.as_str(), e.created), ("patient-7", false));
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    by_phone: Mutex<HashMap<Phone, (ContactId, String)>>,
    next: AtomicU64,
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a contact.
    pub fn insert(
        &self,
        contact: impl Into<ContactId>,
        display_name: impl Into<String>,
        phone: Phone,
    ) {
        self.lock()
            .insert(phone, (contact.into(), display_name.into()));
    }

    /// How many contacts it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds no contact.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Phone, (ContactId, String)>> {
        self.by_phone.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ContactDirectory for MemoryDirectory {
    async fn find_by_phone(&self, phone: &Phone) -> Result<Option<DirectoryEntry>, StoreError> {
        Ok(self.lock().get(phone).map(|(c, n)| DirectoryEntry {
            contact: c.clone(),
            display_name: n.clone(),
            created: false,
        }))
    }

    async fn find_or_create_by_phone(
        &self,
        phone: &Phone,
        display_name: Option<&str>,
    ) -> Result<DirectoryEntry, StoreError> {
        let mut map = self.lock();
        if let Some((c, n)) = map.get(phone) {
            return Ok(DirectoryEntry {
                contact: c.clone(),
                display_name: n.clone(),
                created: false,
            });
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let contact = ContactId::new(format!("contact-{n}"));
        let name = display_name
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map_or_else(|| phone.to_string(), str::to_owned);
        map.insert(phone.clone(), (contact.clone(), name.clone()));
        Ok(DirectoryEntry {
            contact,
            display_name: name,
            created: true,
        })
    }
}
