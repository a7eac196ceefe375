//! The WhatsApp 24-hour customer service window: inside it free text may be sent, outside it only
//! an approved template.
//!
//! This module is the one owner of the window's rules: its length ([`WHATSAPP_WINDOW`]), the key a
//! person's window is kept under ([`whatsapp_window_key`]) and where it is kept
//! ([`WindowStore`]). The inbox records inbound messages here and the WhatsApp adapter reads them
//! back, both through these items, so the two can never disagree on a key.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::error::StoreError;
use crate::model::{Address, ChannelId};

/// How long a WhatsApp customer service window stays open after the person's last message.
pub const WHATSAPP_WINDOW: Duration = Duration::hours(24);

/// The key under which the WhatsApp window of an address is kept: `wa:<digits>` for a phone or a
/// WhatsApp id (both spellings of one person share it), `wa:<id>` for a business-scoped user id.
/// The inbox writes under this key and the WhatsApp adapter reads under it.
///
/// ```
/// use messaging_core::{window::whatsapp_window_key, Address, Phone};
/// let p = Address::Phone(Phone::parse("+79123456789").unwrap());
/// assert_eq!(whatsapp_window_key(&p).as_deref(), Some("wa:79123456789"));
/// assert_eq!(whatsapp_window_key(&Address::WhatsApp("79123456789".into())).as_deref(), Some("wa:79123456789"));
/// assert_eq!(whatsapp_window_key(&Address::Telegram(1)), None);
/// ```
pub fn whatsapp_window_key(address: &Address) -> Option<String> {
    match address {
        Address::Phone(p) => Some(format!("wa:{}", p.digits())),
        Address::WhatsApp(w) => {
            let w = w.trim();
            let digits = w.strip_prefix('+').unwrap_or(w);
            if digits.is_empty() {
                // "" or a bare "+": no person, so no window.
                None
            } else if digits.chars().all(|c| c.is_ascii_digit()) {
                // A phone number and its WhatsApp id are one person: one key.
                Some(format!("wa:{digits}"))
            } else {
                // A business-scoped user id.
                Some(format!("wa:{w}"))
            }
        }
        _ => None,
    }
}

/// When the window of a person whose last message came at `last_inbound` closes.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use messaging_core::window::closes_at;
/// let last = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
/// assert_eq!(closes_at(last), Utc.with_ymd_and_hms(2026, 3, 3, 9, 0, 0).unwrap());
/// ```
pub fn closes_at(last_inbound: DateTime<Utc>) -> DateTime<Utc> {
    last_inbound + WHATSAPP_WINDOW
}

/// The last inbound message per person and channel, for the WhatsApp 24-hour customer service
/// window: inside it free text may be sent, outside only a template.
#[async_trait]
pub trait WindowStore: Send + Sync + fmt::Debug + 'static {
    /// Records an inbound message from `address_key` on `channel` at `at` (keeps the latest).
    async fn record_inbound(
        &self,
        channel: &ChannelId,
        address_key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The last inbound time, if any.
    async fn last_inbound(
        &self,
        channel: &ChannelId,
        address_key: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Forgets the window (WhatsApp error 131047 says it is closed).
    async fn close(&self, channel: &ChannelId, address_key: &str) -> Result<(), StoreError>;
}

/// Windows in process memory: for tests, and for services that may forget open windows on
/// restart (a forgotten window only means a template is sent where free text was allowed).
#[derive(Debug, Default)]
pub struct MemoryWindowStore {
    windows: Mutex<HashMap<(ChannelId, String), DateTime<Utc>>>,
}

impl MemoryWindowStore {
    /// No windows open.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WindowStore for MemoryWindowStore {
    async fn record_inbound(
        &self,
        channel: &ChannelId,
        address_key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let e = w
            .entry((channel.clone(), address_key.to_owned()))
            .or_insert(at);
        if *e < at {
            *e = at;
        }
        Ok(())
    }

    async fn last_inbound(
        &self,
        channel: &ChannelId,
        address_key: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        Ok(w.get(&(channel.clone(), address_key.to_owned())).copied())
    }

    async fn close(&self, channel: &ChannelId, address_key: &str) -> Result<(), StoreError> {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        w.remove(&(channel.clone(), address_key.to_owned()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_plus_has_no_window_key() {
        // The inbox and the adapter once disagreed here (`wa:` against `wa:+`).
        assert_eq!(whatsapp_window_key(&Address::WhatsApp("+".into())), None);
        assert_eq!(whatsapp_window_key(&Address::WhatsApp(" ".into())), None);
        assert_eq!(
            whatsapp_window_key(&Address::WhatsApp("+79123456789".into())).as_deref(),
            Some("wa:79123456789")
        );
        assert_eq!(
            whatsapp_window_key(&Address::WhatsApp("US.1349".into())).as_deref(),
            Some("wa:US.1349")
        );
    }
}
