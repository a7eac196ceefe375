//! The problem's vocabulary: channels, people, purposes and evidence of delivery.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::kind::ChannelKind;
use crate::phone::Phone;

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        // `eq` below is string equality, only faster: the derived hash stays consistent.
        #[allow(clippy::derived_hash_with_manual_eq)]
        #[derive(Clone, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl PartialEq for $name {
            /// Clones of one id share their string, and ids are compared on every lookup of
            /// a channel, policy or cascade: the pointers first (std's `Arc` does that only
            /// for sized types, not for `Arc<str>`).
            #[inline]
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
            }
        }

        impl $name {
            /// Wraps a string.
            pub fn new(s: impl AsRef<str>) -> Self {
                Self(Arc::from(s.as_ref()))
            }
            /// The string form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }
        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The name a user gives one configured channel: `"wa-main"`, `"wa-bulk"`, `"tg"`, `"sms-backup"`.
    /// Several channels of one kind are normal.
    ChannelId
);
string_id!(
    /// The idempotency key of a notification: submitting the same id twice sends nothing new.
    NotificationId
);
string_id!(
    /// The application's id of a person (the patient card).
    ContactId
);
string_id!(
    /// The id a provider gave a sent message; delivery reports refer to it.
    ProviderMessageId
);
string_id!(
    /// The name of a cascade policy.
    PolicyId
);

/// Why a message is sent. It drives WhatsApp template category, hygiene rules, caps and cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Utility notices: reminders, results ready, booking changes.
    Service,
    /// Promotions; needs consent and an opt-out.
    Marketing,
    /// One-time codes.
    Authentication,
    /// A reply inside an open dialogue.
    Conversation,
}

impl Purpose {
    /// The lowercase name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Service => "service",
            Purpose::Marketing => "marketing",
            Purpose::Authentication => "authentication",
            Purpose::Conversation => "conversation",
        }
    }
}

impl std::str::FromStr for Purpose {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "service" | "utility" => Ok(Purpose::Service),
            "marketing" => Ok(Purpose::Marketing),
            "authentication" | "auth" => Ok(Purpose::Authentication),
            "conversation" => Ok(Purpose::Conversation),
            other => Err(format!(
                "unknown purpose {other:?} (expected service, marketing, authentication or conversation)"
            )),
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one channel reaches a person.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Address {
    /// A phone number: SMS, and WhatsApp for a person whose WhatsApp id is their number.
    Phone(Phone),
    /// A WhatsApp id (`wa_id`, digits of the number as WhatsApp knows it).
    WhatsApp(String),
    /// A Telegram private chat id (equal to the user id for private chats).
    Telegram(i64),
    /// A Max user id (the `user_id` of `POST /messages`).
    MaxUser(i64),
    /// A Max chat id (the `chat_id` of `POST /messages`).
    MaxChat(i64),
}

impl Address {
    /// The channel kinds this address can be used on.
    pub fn serves(&self, kind: ChannelKind) -> bool {
        match self {
            Address::Phone(_) => kind.facts().reached_by_phone,
            Address::WhatsApp(_) => kind == ChannelKind::WhatsApp,
            Address::Telegram(_) => kind == ChannelKind::Telegram,
            Address::MaxUser(_) | Address::MaxChat(_) => kind == ChannelKind::Max,
        }
    }

    /// A stable string key (`"tg:42"`, `"phone:+7..."`), used by stores and indexes.
    pub fn key(&self) -> String {
        self.with_key(|k| k.to_string())
    }

    /// Hands the key to `f` unformatted, so hot paths can hash it without allocating.
    pub(crate) fn with_key<R>(&self, f: impl FnOnce(fmt::Arguments<'_>) -> R) -> R {
        self.with_key_parts(|prefix, value| f(format_args!("{prefix}{value}")))
    }

    /// Hands [`Address::key`] to `f` in two pieces, a prefix and a value (`"tg:"`, `"42"`),
    /// without the formatting machinery or an allocation: stores hash keys on every change of
    /// a cascade, and formatting cost more than the rest of the hashing.
    ///
    /// ```
    /// use messaging_core::Address;
    /// let key = Address::Telegram(-42).with_key_parts(|p, v| format!("{p}{v}"));
    /// assert_eq!(key, Address::Telegram(-42).key());
    /// assert_eq!(key, "tg:-42");
    /// ```
    pub fn with_key_parts<R>(&self, f: impl FnOnce(&'static str, &str) -> R) -> R {
        let mut digits = Digits::default();
        match self {
            Address::Phone(p) => f(PHONE_KEY, p.as_str()),
            Address::WhatsApp(w) => f("wa:", w),
            Address::Telegram(id) => f("tg:", digits.of(*id)),
            Address::MaxUser(id) => f("max:", digits.of(*id)),
            Address::MaxChat(id) => f("maxchat:", digits.of(*id)),
        }
    }
}

/// The prefix of a phone's key.
const PHONE_KEY: &str = "phone:";

/// Room for an `i64` in decimal, written without `fmt` (see [`Address::with_key_parts`]).
#[derive(Default)]
pub(crate) struct Digits(itoa::Buffer);

impl Digits {
    /// `n` in decimal, as `Display` writes it.
    pub(crate) fn of(&mut self, n: i64) -> &str {
        self.0.format(n)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Phone(p) => write!(f, "{p}"),
            Address::WhatsApp(w) => write!(f, "{w}"),
            Address::Telegram(id) | Address::MaxUser(id) | Address::MaxChat(id) => {
                write!(f, "{id}")
            }
        }
    }
}

/// A refusal recorded for a person: no messages of this purpose (or of any, when `None`)
/// on this channel kind (or on any, when `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOut {
    /// The channel kind, or every kind.
    pub kind: Option<ChannelKind>,
    /// The purpose, or every purpose.
    pub purpose: Option<Purpose>,
}

impl OptOut {
    /// Whether this opt-out forbids a message of `purpose` on `kind`.
    pub fn forbids(&self, kind: ChannelKind, purpose: Purpose) -> bool {
        self.kind.is_none_or(|k| k == kind) && self.purpose.is_none_or(|p| p == purpose)
    }
}

/// The person a notification is for.
///
/// ```
/// use messaging_core::{Address, ChannelKind, Recipient};
/// let r = Recipient::with_phone("p-1", "+79123456789")
///     .unwrap()
///     .name("Анна")
///     .address(Address::Telegram(42));
/// assert!(r.address_for(ChannelKind::Sms).is_some());
/// assert_eq!(r.address_for(ChannelKind::Telegram), Some(Address::Telegram(42)));
/// assert_eq!(r.address_for(ChannelKind::Max), None);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Recipient {
    /// The application's id of the person.
    pub contact_id: Option<ContactId>,
    /// How to address them ("Анна Петровна").
    pub name: Option<String>,
    /// Their phone, used for SMS and (unless a WhatsApp id is known) WhatsApp.
    pub phone: Option<Phone>,
    /// Known channel addresses (Telegram chat id, Max user id, WhatsApp id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// IANA time zone for quiet hours (`Europe/Moscow`); the engine's default applies when absent.
    pub time_zone: Option<chrono_tz::Tz>,
    /// Refusals: purposes or channels this person does not want.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opt_outs: Vec<OptOut>,
    /// Whether the person consented to marketing (`Purpose::Marketing` is skipped otherwise).
    #[serde(default)]
    pub marketing_consent: bool,
}

impl Recipient {
    /// A recipient known by contact id only, reached through the addresses you add (a Telegram
    /// chat, a Max user) rather than a phone.
    ///
    /// ```
    /// use messaging_core::{Address, ChannelKind, Recipient};
    /// let r = Recipient::new("patient-7").address(Address::Telegram(42));
    /// assert_eq!(r.address_for(ChannelKind::Telegram), Some(Address::Telegram(42)));
    /// assert_eq!(r.address_for(ChannelKind::Sms), None);
    /// ```
    pub fn new(contact_id: impl Into<ContactId>) -> Self {
        Recipient {
            contact_id: Some(contact_id.into()),
            ..Recipient::default()
        }
    }

    /// A recipient known by contact id and phone.
    pub fn with_phone(
        contact_id: impl Into<ContactId>,
        phone: &str,
    ) -> Result<Self, crate::PhoneError> {
        Ok(Recipient {
            contact_id: Some(contact_id.into()),
            phone: Some(Phone::parse(phone)?),
            ..Recipient::default()
        })
    }

    /// Sets the display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a channel address.
    pub fn address(mut self, address: Address) -> Self {
        if !self.addresses.contains(&address) {
            // Room for this one only: a recipient is kept with every pending cascade, and a
            // first push would make room for four.
            self.addresses.reserve_exact(1);
            self.addresses.push(address);
        }
        self
    }

    /// Sets the time zone used for quiet hours.
    pub fn time_zone(mut self, tz: chrono_tz::Tz) -> Self {
        self.time_zone = Some(tz);
        self
    }

    /// Adds an opt-out.
    pub fn opt_out(mut self, kind: Option<ChannelKind>, purpose: Option<Purpose>) -> Self {
        self.opt_outs.push(OptOut { kind, purpose });
        self
    }

    /// The address to use on a channel of `kind`: an explicit address first, else the phone
    /// for SMS and WhatsApp.
    pub fn address_for(&self, kind: ChannelKind) -> Option<Address> {
        self.addresses
            .iter()
            .find(|a| a.serves(kind))
            .cloned()
            .or_else(|| match kind {
                k if k.facts().reached_by_phone => self.phone.clone().map(Address::Phone),
                _ => None,
            })
    }

    /// Whether the person can be reached on a channel of `kind` (without building the address).
    pub fn has_address_for(&self, kind: ChannelKind) -> bool {
        self.addresses.iter().any(|a| a.serves(kind))
            || (self.phone.is_some() && kind.facts().reached_by_phone)
    }

    /// Whether an opt-out forbids `purpose` on `kind`.
    pub fn has_opted_out(&self, kind: ChannelKind, purpose: Purpose) -> bool {
        self.opt_outs.iter().any(|o| o.forbids(kind, purpose))
    }

    /// Every key under which an inbound message from this person may arrive.
    pub fn address_keys(&self) -> Vec<String> {
        let mut keys = Vec::with_capacity(self.addresses.len() + 2);
        self.each_address_key(|k| keys.push(k.to_string()));
        keys.sort();
        keys.dedup();
        keys
    }

    /// Calls `f` with every key of [`Recipient::address_keys`], unformatted and possibly
    /// repeated, so a store can hash them without allocating.
    pub fn each_address_key(&self, mut f: impl FnMut(fmt::Arguments<'_>)) {
        self.each_address_key_parts(|prefix, value| f(format_args!("{prefix}{value}")));
    }

    /// Calls `f` with every key of [`Recipient::address_keys`] in two pieces, a prefix and a
    /// value (see [`Address::with_key_parts`]), possibly repeated: the cheapest way to hash
    /// them.
    ///
    /// ```
    /// use messaging_core::{Address, Recipient};
    /// let r = Recipient::with_phone("p-1", "+79123456789").unwrap().address(Address::Telegram(42));
    /// let mut keys = Vec::new();
    /// r.each_address_key_parts(|p, v| keys.push(format!("{p}{v}")));
    /// keys.sort();
    /// assert_eq!(keys, r.address_keys());
    /// ```
    pub fn each_address_key_parts(&self, mut f: impl FnMut(&'static str, &str)) {
        for a in &self.addresses {
            a.with_key_parts(&mut f);
        }
        if let Some(p) = &self.phone {
            // A WhatsApp reply from this phone is looked up under the phone key too (the engine
            // adds it for WhatsApp senders), so no separate `wa:` key is needed.
            f(PHONE_KEY, p.as_str());
        }
        if let Some(c) = &self.contact_id {
            f("contact:", c.as_str());
        }
    }
}

/// Free-form key-value metadata carried with a notification (e.g. appointment id).
pub type Metadata = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for k in ChannelKind::ALL {
            assert_eq!(k.as_str().parse::<ChannelKind>().unwrap(), k);
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert!("pigeon".parse::<ChannelKind>().is_err());
    }

    #[test]
    fn opt_out_scopes() {
        let r = Recipient::default().opt_out(Some(ChannelKind::WhatsApp), Some(Purpose::Marketing));
        assert!(r.has_opted_out(ChannelKind::WhatsApp, Purpose::Marketing));
        assert!(!r.has_opted_out(ChannelKind::WhatsApp, Purpose::Service));
        assert!(!r.has_opted_out(ChannelKind::Sms, Purpose::Marketing));
        let all = Recipient::default().opt_out(None, None);
        assert!(all.has_opted_out(ChannelKind::Sms, Purpose::Service));
    }

    #[test]
    fn keys_in_parts_are_the_formatted_keys() {
        for n in [0, 7, -7, 42, -1_001_234_567_890, i64::MAX, i64::MIN] {
            for a in [
                Address::Telegram(n),
                Address::MaxUser(n),
                Address::MaxChat(n),
            ] {
                assert_eq!(a.with_key_parts(|p, v| format!("{p}{v}")), a.key());
            }
            assert_eq!(Address::Telegram(n).key(), format!("tg:{n}"));
        }
        let phone = Address::Phone(Phone::parse("+79123456789").unwrap());
        assert_eq!(phone.key(), "phone:+79123456789");
        assert_eq!(Address::WhatsApp("7999".into()).key(), "wa:7999");
    }

    #[test]
    fn explicit_whatsapp_id_wins_over_phone() {
        let r = Recipient::with_phone("c", "+79123456789")
            .unwrap()
            .address(Address::WhatsApp("79990001122".into()));
        assert_eq!(
            r.address_for(ChannelKind::WhatsApp),
            Some(Address::WhatsApp("79990001122".into()))
        );
        assert!(matches!(
            r.address_for(ChannelKind::Sms),
            Some(Address::Phone(_))
        ));
    }
}
