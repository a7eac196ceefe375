//! The in-memory store's compact form of a cascade that waits.
//!
//! A cascade that waits for its evidence or its timer may wait for days, and a campaign keeps
//! hundreds of thousands of them. As Rust values one takes about 1.9 KB, mostly the inline
//! room of what it does not use (an empty template, no cost, history entries sized for their
//! largest kind). Parked, it takes a few hundred bytes: its common shape in a hand-written
//! encoding (varints, strings, times relative to the cascade's start), anything rarer (a
//! template, metadata, the history of a skip or a failure) as JSON, the form every durable
//! store keeps; every record reads back exactly. Hand-written because the records' serde form
//! is made for JSON: its internally tagged enums and skipped fields cannot be read back from
//! the compact serde formats (postcard, bincode).
//!
//! The bytes never leave the process: a record that does not read back is a bug here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::{Attempt, AttemptState, CascadeRecord, HistoryEntry, HistoryKind, Phase};
use crate::engine::{Notification, Outcome};
use messaging_core::{
    Address, ChannelId, ContactId, Content, Cost, Evidence, NotificationId, PolicyId,
    ProviderMessageId, Purpose, Recipient,
};

/// A parked record: its bytes, without its id (the store keys it by the id).
#[derive(Debug)]
pub(super) struct Parked(Box<[u8]>);

/// A parked record that did not read back (a bug in this module).
#[derive(Debug)]
pub(super) struct Corrupt;

impl Parked {
    /// The compact form of `rec`.
    pub(super) fn park(rec: &CascadeRecord) -> Parked {
        let CascadeRecord {
            notification,
            policy,
            version,
            step,
            phase,
            wake_at,
            rate_limit_waits,
            attempts,
            history,
            created_at,
        } = rec;
        let mut w = W {
            b: Vec::with_capacity(384),
            base: *created_at,
        };
        w.i(created_at.timestamp());
        w.u(created_at.timestamp_subsec_nanos().into());
        w.u(*version);
        w.u(*step as u64);
        w.phase(phase);
        w.opt_time(*wake_at);
        w.u((*rate_limit_waits).into());
        w.s(policy.as_str());
        w.notification(notification);
        w.u(attempts.len() as u64);
        for a in attempts {
            w.attempt(a);
        }
        w.u(history.len() as u64);
        for h in history {
            w.entry(h);
        }
        let parked = Parked(w.b.into_boxed_slice());
        debug_assert_eq!(
            parked.unpark(rec.id()).as_ref().ok(),
            Some(rec),
            "a parked record reads back"
        );
        parked
    }

    /// The record parked as `self` under `id`.
    pub(super) fn unpark(&self, id: &NotificationId) -> Result<CascadeRecord, Corrupt> {
        let mut r = R {
            b: &self.0,
            base: DateTime::<Utc>::MIN_UTC,
            channel: None,
        };
        let secs = r.i()?;
        let nanos = r.u32()?;
        let created_at = DateTime::from_timestamp(secs, nanos).ok_or(Corrupt)?;
        r.base = created_at;
        let version = r.u()?;
        let step = r.usize()?;
        let phase = r.phase()?;
        let wake_at = r.opt_time()?;
        let rate_limit_waits = r.u32()?;
        let policy = PolicyId::from(r.s()?);
        let notification = Arc::new(r.notification(id)?);
        let n = r.usize()?;
        let mut attempts = Vec::with_capacity(n.min(r.b.len()));
        for _ in 0..n {
            attempts.push(r.attempt()?);
        }
        let n = r.usize()?;
        let mut history = Vec::with_capacity(n.min(r.b.len()));
        for _ in 0..n {
            history.push(r.entry()?);
        }
        if !r.b.is_empty() {
            return Err(Corrupt);
        }
        Ok(CascadeRecord {
            notification,
            policy,
            version,
            step,
            phase,
            wake_at,
            rate_limit_waits,
            attempts,
            history,
            created_at,
        })
    }

    /// The bytes it takes.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// How a part is kept: in the compact form, or as JSON.
const COMPACT: u8 = 0;
const JSON: u8 = 0xfe;

/// The writer: times relative to `base` (the cascade's start).
struct W {
    b: Vec<u8>,
    base: DateTime<Utc>,
}

impl W {
    /// LEB128.
    fn u(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.b.push(n as u8 | 0x80);
            n >>= 7;
        }
        self.b.push(n as u8);
    }

    /// Zigzag, then LEB128.
    fn i(&mut self, n: i64) {
        self.u(((n << 1) ^ (n >> 63)) as u64);
    }

    fn bool(&mut self, b: bool) {
        self.b.push(b.into());
    }

    fn s(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u(b.len() as u64);
        self.b.extend_from_slice(b);
    }

    fn opt_s(&mut self, s: Option<&str>) {
        match s {
            None => self.b.push(0),
            Some(s) => {
                self.b.push(1);
                self.s(s);
            }
        }
    }

    fn json(&mut self, v: &impl Serialize) {
        // Serializing these types to a vector cannot fail: no map has non-string keys.
        let bytes = serde_json::to_vec(v).unwrap_or_default();
        self.bytes(&bytes);
    }

    fn time(&mut self, t: DateTime<Utc>) {
        self.i(t.timestamp() - self.base.timestamp());
        self.u(t.timestamp_subsec_nanos().into());
    }

    fn opt_time(&mut self, t: Option<DateTime<Utc>>) {
        match t {
            None => self.b.push(0),
            Some(t) => {
                self.b.push(1);
                self.time(t);
            }
        }
    }

    fn evidence(&mut self, e: Evidence) {
        self.b.push(match e {
            Evidence::Accepted => 0,
            Evidence::Delivered => 1,
            Evidence::Read => 2,
            Evidence::Replied => 3,
        });
    }

    fn opt_evidence(&mut self, e: Option<Evidence>) {
        match e {
            None => self.b.push(0xff),
            Some(e) => self.evidence(e),
        }
    }

    fn phase(&mut self, p: &Phase) {
        match p {
            Phase::Ready => self.b.push(0),
            Phase::Sending { attempt } => {
                self.b.push(1);
                self.u(*attempt as u64);
            }
            Phase::Waiting {
                attempt,
                wait_for,
                window_end,
            } => {
                self.b.push(2);
                self.u(*attempt as u64);
                self.evidence(*wait_for);
                self.time(*window_end);
            }
            Phase::Finished(o) => {
                self.b.push(3);
                self.json(o);
            }
        }
    }

    fn notification(&mut self, n: &Notification) {
        let Notification {
            id: _,
            recipient,
            content,
            purpose,
            deadline,
            policy,
            metadata,
        } = n;
        let Recipient {
            contact_id,
            name,
            phone,
            addresses,
            time_zone,
            opt_outs,
            marketing_consent,
        } = recipient;
        let Content {
            text,
            overrides,
            template,
            buttons,
            attachments,
            link_preview,
        } = content;
        let compact = metadata.is_empty()
            && time_zone.is_none()
            && opt_outs.is_empty()
            && overrides.is_empty()
            && template.is_none()
            && buttons.is_empty()
            && attachments.is_empty()
            && addresses.iter().all(|a| address_tag(a).is_some());
        if !compact {
            self.b.push(JSON);
            self.json(n);
            return;
        }
        self.b.push(COMPACT);
        self.opt_s(contact_id.as_ref().map(|c| c.as_str()));
        self.opt_s(name.as_deref());
        self.opt_s(phone.as_ref().map(|p| p.as_str()));
        self.u(addresses.len() as u64);
        for a in addresses {
            match a {
                Address::Phone(p) => self.address(1, p.as_str()),
                Address::WhatsApp(s) => self.address(2, s),
                Address::Telegram(n) => self.address_number(3, *n),
                Address::MaxUser(n) => self.address_number(4, *n),
                Address::MaxChat(n) => self.address_number(5, *n),
                // Not compact (see `address_tag`): the whole notification went as JSON.
                _ => {}
            }
        }
        self.bool(*marketing_consent);
        self.s(text);
        self.bool(*link_preview);
        self.b.push(match purpose {
            Purpose::Service => 0,
            Purpose::Marketing => 1,
            Purpose::Authentication => 2,
            Purpose::Conversation => 3,
        });
        self.opt_time(*deadline);
        self.opt_s(policy.as_ref().map(|p| p.as_str()));
    }

    fn address(&mut self, tag: u8, s: &str) {
        self.b.push(tag);
        self.s(s);
    }

    fn address_number(&mut self, tag: u8, n: i64) {
        self.b.push(tag);
        self.i(n);
    }

    fn attempt(&mut self, a: &Attempt) {
        let Attempt {
            step,
            channel,
            number,
            started_at,
            sent_at,
            provider_message_id,
            evidence,
            evidence_at,
            state,
            possible_duplicate,
            forced_template,
            cost,
            shortened_window,
            probe,
        } = a;
        self.u(*step as u64);
        self.s(channel.as_str());
        self.u((*number).into());
        self.time(*started_at);
        self.opt_time(*sent_at);
        self.opt_s(provider_message_id.as_ref().map(|p| p.as_str()));
        self.opt_evidence(*evidence);
        self.opt_time(*evidence_at);
        match state {
            AttemptState::InFlight => self.b.push(0),
            AttemptState::Sent => self.b.push(1),
            AttemptState::Unknown => self.b.push(2),
            AttemptState::Failed {
                kind,
                code,
                message,
            } => {
                self.b.push(3);
                self.s(kind.as_str());
                self.opt_s(code.as_deref());
                self.s(message);
            }
        }
        let flags = u8::from(*possible_duplicate)
            | u8::from(*forced_template) << 1
            | u8::from(*probe) << 2
            | u8::from(cost.is_some()) << 3
            | u8::from(shortened_window.is_some()) << 4;
        self.b.push(flags);
        if let Some(c) = cost {
            self.b.extend_from_slice(&c.amount.to_bits().to_le_bytes());
            self.s(&c.currency);
        }
        if let Some(d) = shortened_window {
            self.u(d.as_secs());
            self.u(d.subsec_nanos().into());
        }
    }

    fn entry(&mut self, e: &HistoryEntry) {
        let tag = match &e.kind {
            HistoryKind::Submitted { .. } => 1,
            HistoryKind::StepStarted { .. } => 2,
            HistoryKind::Sending { .. } => 3,
            HistoryKind::Sent { .. } => 4,
            HistoryKind::Evidence { .. } => 5,
            HistoryKind::WindowClosed { .. } => 6,
            HistoryKind::Advanced { .. } => 7,
            _ => {
                self.b.push(JSON);
                self.json(e);
                return;
            }
        };
        self.b.push(tag);
        self.time(e.at);
        match &e.kind {
            HistoryKind::Submitted { policy } => self.s(policy.as_str()),
            HistoryKind::StepStarted { step, channel } => {
                self.u(*step as u64);
                self.s(channel.as_str());
            }
            HistoryKind::Sending {
                step,
                channel,
                attempt,
                possible_duplicate,
            } => {
                self.u(*step as u64);
                self.s(channel.as_str());
                self.u((*attempt).into());
                self.bool(*possible_duplicate);
            }
            HistoryKind::Sent {
                step,
                channel,
                attempt,
                provider_message_id,
            } => {
                self.u(*step as u64);
                self.s(channel.as_str());
                self.u((*attempt).into());
                self.s(provider_message_id.as_str());
            }
            HistoryKind::Evidence {
                step,
                channel,
                evidence,
            } => {
                self.u(*step as u64);
                self.s(channel.as_str());
                self.evidence(*evidence);
            }
            HistoryKind::WindowClosed {
                step,
                channel,
                early,
            } => {
                self.u(*step as u64);
                self.s(channel.as_str());
                self.bool(*early);
            }
            HistoryKind::Advanced { from, to } => {
                self.u(*from as u64);
                // `to + 1`, 0 for none.
                self.u(to.map_or(0, |t| t as u64 + 1));
            }
            _ => {}
        }
    }
}

/// The tag of an address kept in the compact form.
fn address_tag(a: &Address) -> Option<u8> {
    match a {
        Address::Phone(_) => Some(1),
        Address::WhatsApp(_) => Some(2),
        Address::Telegram(_) => Some(3),
        Address::MaxUser(_) => Some(4),
        Address::MaxChat(_) => Some(5),
        _ => None,
    }
}

/// A value serde reads from a string: a phone in its normal form, an error kind by name.
fn from_str<T: DeserializeOwned>(s: &str) -> Result<T, Corrupt> {
    use serde::de::IntoDeserializer;
    let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = s.into_deserializer();
    T::deserialize(d).map_err(|_| Corrupt)
}

/// The reader.
struct R<'a> {
    b: &'a [u8],
    base: DateTime<Utc>,
    /// The last channel id read: a record names the same channels again and again, which then
    /// share one string.
    channel: Option<ChannelId>,
}

impl<'a> R<'a> {
    fn byte(&mut self) -> Result<u8, Corrupt> {
        let (&first, rest) = self.b.split_first().ok_or(Corrupt)?;
        self.b = rest;
        Ok(first)
    }

    fn u(&mut self) -> Result<u64, Corrupt> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(Corrupt)
    }

    fn usize(&mut self) -> Result<usize, Corrupt> {
        usize::try_from(self.u()?).map_err(|_| Corrupt)
    }

    fn u32(&mut self) -> Result<u32, Corrupt> {
        u32::try_from(self.u()?).map_err(|_| Corrupt)
    }

    fn i(&mut self) -> Result<i64, Corrupt> {
        let n = self.u()?;
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
    }

    fn bool(&mut self) -> Result<bool, Corrupt> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Corrupt),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.usize()?;
        if n > self.b.len() {
            return Err(Corrupt);
        }
        let (bytes, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(bytes)
    }

    fn s(&mut self) -> Result<&'a str, Corrupt> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Corrupt)
    }

    fn opt_s(&mut self) -> Result<Option<&'a str>, Corrupt> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.s().map(Some),
            _ => Err(Corrupt),
        }
    }

    fn json<T: DeserializeOwned>(&mut self) -> Result<T, Corrupt> {
        serde_json::from_slice(self.bytes()?).map_err(|_| Corrupt)
    }

    fn channel(&mut self) -> Result<ChannelId, Corrupt> {
        let s = self.s()?;
        if let Some(c) = &self.channel
            && c.as_str() == s
        {
            return Ok(c.clone());
        }
        let c = ChannelId::from(s);
        self.channel = Some(c.clone());
        Ok(c)
    }

    fn time(&mut self) -> Result<DateTime<Utc>, Corrupt> {
        let secs = self
            .i()?
            .checked_add(self.base.timestamp())
            .ok_or(Corrupt)?;
        let nanos = self.u32()?;
        DateTime::from_timestamp(secs, nanos).ok_or(Corrupt)
    }

    fn opt_time(&mut self) -> Result<Option<DateTime<Utc>>, Corrupt> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.time().map(Some),
            _ => Err(Corrupt),
        }
    }

    fn evidence(&mut self) -> Result<Evidence, Corrupt> {
        Ok(match self.byte()? {
            0 => Evidence::Accepted,
            1 => Evidence::Delivered,
            2 => Evidence::Read,
            3 => Evidence::Replied,
            _ => return Err(Corrupt),
        })
    }

    fn opt_evidence(&mut self) -> Result<Option<Evidence>, Corrupt> {
        if self.b.first() == Some(&0xff) {
            self.byte()?;
            return Ok(None);
        }
        self.evidence().map(Some)
    }

    fn phase(&mut self) -> Result<Phase, Corrupt> {
        Ok(match self.byte()? {
            0 => Phase::Ready,
            1 => Phase::Sending {
                attempt: self.usize()?,
            },
            2 => Phase::Waiting {
                attempt: self.usize()?,
                wait_for: self.evidence()?,
                window_end: self.time()?,
            },
            3 => Phase::Finished(self.json::<Outcome>()?),
            _ => return Err(Corrupt),
        })
    }

    fn notification(&mut self, id: &NotificationId) -> Result<Notification, Corrupt> {
        if self.byte()? == JSON {
            let n: Notification = self.json()?;
            return if n.id == *id { Ok(n) } else { Err(Corrupt) };
        }
        // A phone is kept in its normal form: read as serde reads it, not parsed again.
        let phone = from_str;
        let mut recipient = Recipient {
            contact_id: self.opt_s()?.map(ContactId::from),
            name: self.opt_s()?.map(str::to_owned),
            phone: self.opt_s()?.map(phone).transpose()?,
            ..Recipient::default()
        };
        let n = self.usize()?;
        recipient.addresses.reserve_exact(n.min(self.b.len()));
        for _ in 0..n {
            recipient.addresses.push(match self.byte()? {
                1 => Address::Phone(phone(self.s()?)?),
                2 => Address::WhatsApp(self.s()?.to_owned()),
                3 => Address::Telegram(self.i()?),
                4 => Address::MaxUser(self.i()?),
                5 => Address::MaxChat(self.i()?),
                _ => return Err(Corrupt),
            });
        }
        recipient.marketing_consent = self.bool()?;
        let mut content = Content::text(self.s()?);
        content.link_preview = self.bool()?;
        let purpose = match self.byte()? {
            0 => Purpose::Service,
            1 => Purpose::Marketing,
            2 => Purpose::Authentication,
            3 => Purpose::Conversation,
            _ => return Err(Corrupt),
        };
        let mut n = Notification::new(id.clone(), recipient, content).purpose(purpose);
        n.deadline = self.opt_time()?;
        n.policy = self.opt_s()?.map(PolicyId::from);
        Ok(n)
    }

    fn attempt(&mut self) -> Result<Attempt, Corrupt> {
        let step = self.usize()?;
        let channel = self.channel()?;
        let number = self.u32()?;
        let started_at = self.time()?;
        let sent_at = self.opt_time()?;
        let provider_message_id = self.opt_s()?.map(ProviderMessageId::from);
        let evidence = self.opt_evidence()?;
        let evidence_at = self.opt_time()?;
        let state = match self.byte()? {
            0 => AttemptState::InFlight,
            1 => AttemptState::Sent,
            2 => AttemptState::Unknown,
            3 => AttemptState::Failed {
                kind: from_str(self.s()?)?,
                code: self.opt_s()?.map(Box::from),
                message: self.s()?.into(),
            },
            _ => return Err(Corrupt),
        };
        let flags = self.byte()?;
        let cost = if flags & 8 != 0 {
            let bits: [u8; 8] = self
                .b
                .get(..8)
                .ok_or(Corrupt)?
                .try_into()
                .map_err(|_| Corrupt)?;
            self.b = &self.b[8..];
            Some(Cost::new(
                f64::from_bits(u64::from_le_bytes(bits)),
                self.s()?,
            ))
        } else {
            None
        };
        let shortened_window = if flags & 16 != 0 {
            let secs = self.u()?;
            Some(std::time::Duration::new(secs, self.u32()?))
        } else {
            None
        };
        Ok(Attempt {
            step,
            channel,
            number,
            started_at,
            sent_at,
            provider_message_id,
            evidence,
            evidence_at,
            state,
            possible_duplicate: flags & 1 != 0,
            forced_template: flags & 2 != 0,
            cost,
            shortened_window,
            probe: flags & 4 != 0,
        })
    }

    fn entry(&mut self) -> Result<HistoryEntry, Corrupt> {
        let tag = self.byte()?;
        if tag == JSON {
            return self.json();
        }
        let at = self.time()?;
        let kind = match tag {
            1 => HistoryKind::Submitted {
                policy: PolicyId::from(self.s()?),
            },
            2 => HistoryKind::StepStarted {
                step: self.usize()?,
                channel: self.channel()?,
            },
            3 => HistoryKind::Sending {
                step: self.usize()?,
                channel: self.channel()?,
                attempt: self.u32()?,
                possible_duplicate: self.bool()?,
            },
            4 => HistoryKind::Sent {
                step: self.usize()?,
                channel: self.channel()?,
                attempt: self.u32()?,
                provider_message_id: ProviderMessageId::from(self.s()?),
            },
            5 => HistoryKind::Evidence {
                step: self.usize()?,
                channel: self.channel()?,
                evidence: self.evidence()?,
            },
            6 => HistoryKind::WindowClosed {
                step: self.usize()?,
                channel: self.channel()?,
                early: self.bool()?,
            },
            7 => HistoryKind::Advanced {
                from: self.usize()?,
                to: match self.u()? {
                    0 => None,
                    t => Some(usize::try_from(t - 1).map_err(|_| Corrupt)?),
                },
            },
            _ => return Err(Corrupt),
        };
        Ok(HistoryEntry { at, kind })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;
    use messaging_core::Template;
    use messaging_core::{ChannelKind, ErrorKind, Phone};

    use super::*;
    use crate::engine::{DeferReason, SkipReason};

    fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_250_800 + secs, nanos).unwrap()
    }

    fn notification() -> Notification {
        let r = Recipient::with_phone("patient-7", "+79123456789")
            .unwrap()
            .name("Анна Петровна")
            .address(Address::Telegram(-42))
            .address(Address::MaxUser(7))
            .address(Address::WhatsApp("79123456789".into()));
        Notification::new(
            "appt-1042-reminder",
            r,
            Content::text("Анна Петровна, напоминаем о приёме завтра в 10:00. Придёте?"),
        )
        .deadline(at(86_400, 0))
        .policy("reminders")
    }

    fn attempt(state: AttemptState) -> Attempt {
        Attempt {
            step: 1,
            channel: "wa".into(),
            number: 2,
            started_at: at(5, 123_456_789),
            sent_at: Some(at(6, 1)),
            provider_message_id: Some("wamid.HBgL".into()),
            evidence: Some(Evidence::Delivered),
            evidence_at: Some(at(-3, 999_999_999)),
            state,
            possible_duplicate: true,
            forced_template: false,
            cost: Some(Cost::new(0.1 + 0.2, "RUB")),
            shortened_window: Some(Duration::new(90, 5)),
            probe: true,
        }
    }

    fn every_history_kind() -> Vec<HistoryEntry> {
        let ch = ChannelId::from("wa");
        let kinds = vec![
            HistoryKind::Submitted {
                policy: "reminders".into(),
            },
            HistoryKind::StepStarted {
                step: 0,
                channel: ch.clone(),
            },
            HistoryKind::Skipped {
                step: 0,
                channel: ch.clone(),
                reason: SkipReason::Refused("daily cap".into()),
            },
            HistoryKind::Deferred {
                step: 0,
                channel: ch.clone(),
                until: at(600, 0),
                reason: DeferReason::Governor("warm-up".into()),
            },
            HistoryKind::Sending {
                step: 1,
                channel: ch.clone(),
                attempt: 3,
                possible_duplicate: true,
            },
            HistoryKind::Sent {
                step: 1,
                channel: ch.clone(),
                attempt: 3,
                provider_message_id: "wamid.1".into(),
            },
            HistoryKind::Failed {
                step: 1,
                channel: ch.clone(),
                attempt: 1,
                kind: ErrorKind::Unreachable,
                code: Some("131026".into()),
                message: "not a WhatsApp user".into(),
            },
            HistoryKind::OutcomeUnknown {
                step: 1,
                channel: ch.clone(),
                attempt: 2,
                reason: None,
            },
            HistoryKind::Evidence {
                step: 1,
                channel: ch.clone(),
                evidence: Evidence::Read,
            },
            HistoryKind::WindowClosed {
                step: 1,
                channel: ch.clone(),
                early: true,
            },
            HistoryKind::Advanced {
                from: 1,
                to: Some(2),
            },
            HistoryKind::Advanced { from: 2, to: None },
            HistoryKind::Replied {
                channel: ChannelKind::Telegram,
            },
            HistoryKind::Exhausted,
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| HistoryEntry {
                at: at(i as i64 * 7 - 20, i as u32),
                kind,
            })
            .collect()
    }

    fn record(phase: Phase) -> CascadeRecord {
        CascadeRecord {
            notification: Arc::new(notification()),
            policy: "reminders".into(),
            version: 300,
            step: 1,
            phase,
            wake_at: Some(at(3_600, 0)),
            rate_limit_waits: 2,
            attempts: vec![
                attempt(AttemptState::Failed {
                    kind: ErrorKind::Unreachable,
                    code: None,
                    message: "blocked".into(),
                }),
                attempt(AttemptState::Unknown),
                attempt(AttemptState::Sent),
                Attempt {
                    sent_at: None,
                    provider_message_id: None,
                    evidence: None,
                    evidence_at: None,
                    cost: None,
                    shortened_window: None,
                    ..attempt(AttemptState::InFlight)
                },
            ],
            history: every_history_kind(),
            created_at: at(0, 42),
        }
    }

    fn round_trip(rec: &CascadeRecord) -> Parked {
        let parked = Parked::park(rec);
        let back = parked.unpark(rec.id()).expect("reads back");
        assert_eq!(&back, rec);
        parked
    }

    #[test]
    fn every_phase_attempt_state_and_history_kind_reads_back_exactly() {
        let waiting = Phase::Waiting {
            attempt: 2,
            wait_for: Evidence::Replied,
            window_end: at(7_200, 7),
        };
        for phase in [
            Phase::Ready,
            Phase::Sending { attempt: 3 },
            waiting,
            Phase::Finished(Outcome::Unconfirmed {
                step: 1,
                channel: "wa".into(),
            }),
        ] {
            round_trip(&record(phase));
        }
        let mut rec = record(Phase::Ready);
        rec.wake_at = None;
        rec.created_at = DateTime::<Utc>::MIN_UTC;
        rec.attempts.clear();
        rec.history.clear();
        round_trip(&rec);
    }

    #[test]
    fn a_notification_beyond_the_common_shape_reads_back_exactly() {
        let mut n = notification().meta("appointment", "1042");
        n.content = n
            .content
            .with_override(ChannelKind::Sms, "Приём завтра в 10:00")
            .with_template(Template::new("reminder", "ru"));
        n.recipient = n
            .recipient
            .time_zone(chrono_tz::Europe::Moscow)
            .opt_out(Some(ChannelKind::Max), None);
        n.recipient.contact_id = None;
        n.recipient.marketing_consent = true;
        n.purpose = Purpose::Marketing;
        let mut rec = record(Phase::Ready);
        rec.notification = Arc::new(n);
        round_trip(&rec);
    }

    #[test]
    fn a_waiting_reminder_parks_in_a_few_hundred_bytes() {
        let mut rec = record(Phase::Waiting {
            attempt: 0,
            wait_for: Evidence::Delivered,
            window_end: at(3_600, 0),
        });
        rec.attempts = vec![attempt(AttemptState::Sent)];
        rec.history = every_history_kind()
            .into_iter()
            .filter(|h| {
                matches!(
                    h.kind,
                    HistoryKind::Submitted { .. }
                        | HistoryKind::StepStarted { .. }
                        | HistoryKind::Sending { .. }
                        | HistoryKind::Sent { .. }
                )
            })
            .collect();
        let parked = round_trip(&rec);
        // The text alone is 104 bytes; the record as JSON, as the durable stores keep it, 1 KB.
        let json = serde_json::to_vec(&rec).unwrap().len();
        assert!(parked.len() < 350, "{} bytes", parked.len());
        assert!(
            parked.len() * 3 < json,
            "{} bytes, JSON {json}",
            parked.len()
        );
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let rec = record(Phase::Ready);
        let whole = Parked::park(&rec).0;
        for cut in 0..whole.len() {
            let part = Parked(whole[..cut].into());
            assert!(part.unpark(rec.id()).is_err(), "cut at {cut}");
        }
        let mut longer = whole.to_vec();
        longer.push(0);
        assert!(Parked(longer.into()).unpark(rec.id()).is_err());
        // Every byte flipped: an error or some record, never a panic.
        for i in 0..whole.len() {
            let mut bad = whole.to_vec();
            bad[i] ^= 0xff;
            let _ = Parked(bad.into()).unpark(rec.id());
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn time() -> impl Strategy<Value = DateTime<Utc>> {
            (-200_000_000_000i64..200_000_000_000, 0u32..1_000_000_000)
                .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
        }

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![Just(String::new()), any::<String>(), "[a-z0-9:+-]{1,12}"]
        }

        fn evidence() -> impl Strategy<Value = Evidence> {
            prop_oneof![
                Just(Evidence::Accepted),
                Just(Evidence::Delivered),
                Just(Evidence::Read),
                Just(Evidence::Replied),
            ]
        }

        fn notification() -> impl Strategy<Value = Notification> {
            let phone =
                (0u64..10_000_000).prop_map(|n| Phone::parse(&format!("+7912{n:07}")).unwrap());
            let address = prop_oneof![
                phone.clone().prop_map(Address::Phone),
                text().prop_map(Address::WhatsApp),
                any::<i64>().prop_map(Address::Telegram),
                any::<i64>().prop_map(Address::MaxUser),
                any::<i64>().prop_map(Address::MaxChat),
            ];
            (
                (
                    text(),
                    proptest::option::of(text()),
                    proptest::option::of(text()),
                ),
                proptest::option::of(phone),
                proptest::collection::vec(address, 0..4),
                (any::<bool>(), any::<bool>(), text()),
                (proptest::option::of(time()), proptest::option::of(text())),
                proptest::option::of((text(), text())),
            )
                .prop_map(
                    |(
                        (id, contact, name),
                        phone,
                        addresses,
                        (consent, preview, body),
                        (deadline, policy),
                        meta,
                    )| {
                        let recipient = Recipient {
                            contact_id: contact.map(ContactId::from),
                            name,
                            phone,
                            addresses,
                            marketing_consent: consent,
                            ..Recipient::default()
                        };
                        let mut content = Content::text(body);
                        content.link_preview = preview;
                        let mut n = Notification::new(id, recipient, content)
                            .purpose(Purpose::Authentication);
                        n.deadline = deadline;
                        n.policy = policy.map(PolicyId::from);
                        if let Some((k, v)) = meta {
                            n.metadata.insert(k, v);
                        }
                        n
                    },
                )
        }

        fn attempt() -> impl Strategy<Value = Attempt> {
            let state = prop_oneof![
                Just(AttemptState::InFlight),
                Just(AttemptState::Sent),
                Just(AttemptState::Unknown),
                text().prop_map(|m| AttemptState::Failed {
                    kind: ErrorKind::Temporary,
                    code: None,
                    message: m.into(),
                }),
            ];
            (
                (
                    any::<u16>(),
                    text(),
                    any::<u32>(),
                    time(),
                    proptest::option::of(time()),
                ),
                (
                    proptest::option::of(text()),
                    proptest::option::of(evidence()),
                ),
                (proptest::option::of(time()), state, any::<[bool; 3]>()),
                proptest::option::of((any::<f64>(), text())),
                proptest::option::of((any::<u64>(), 0u32..1_000_000_000)),
            )
                .prop_map(
                    |(
                        (step, channel, number, started_at, sent_at),
                        (pmid, evidence),
                        (evidence_at, state, flags),
                        cost,
                        window,
                    )| Attempt {
                        step: step.into(),
                        channel: channel.into(),
                        number,
                        started_at,
                        sent_at,
                        provider_message_id: pmid.map(ProviderMessageId::from),
                        evidence,
                        evidence_at,
                        state,
                        possible_duplicate: flags[0],
                        forced_template: flags[1],
                        cost: cost.map(|(a, c)| Cost::new(a, c)),
                        shortened_window: window.map(|(s, n)| Duration::new(s, n)),
                        probe: flags[2],
                    },
                )
        }

        fn entry() -> impl Strategy<Value = HistoryEntry> {
            let kind = prop_oneof![
                text().prop_map(|p| HistoryKind::Submitted { policy: p.into() }),
                (any::<u16>(), text()).prop_map(|(s, c)| HistoryKind::StepStarted {
                    step: s.into(),
                    channel: c.into(),
                }),
                (any::<u16>(), text(), any::<u32>(), any::<bool>()).prop_map(|(s, c, a, d)| {
                    HistoryKind::Sending {
                        step: s.into(),
                        channel: c.into(),
                        attempt: a,
                        possible_duplicate: d,
                    }
                }),
                (any::<u16>(), text(), any::<u32>(), text()).prop_map(|(s, c, a, p)| {
                    HistoryKind::Sent {
                        step: s.into(),
                        channel: c.into(),
                        attempt: a,
                        provider_message_id: p.into(),
                    }
                }),
                (any::<u16>(), text(), evidence()).prop_map(|(s, c, e)| HistoryKind::Evidence {
                    step: s.into(),
                    channel: c.into(),
                    evidence: e,
                }),
                (any::<u16>(), text(), any::<bool>()).prop_map(|(s, c, e)| {
                    HistoryKind::WindowClosed {
                        step: s.into(),
                        channel: c.into(),
                        early: e,
                    }
                }),
                (any::<u16>(), proptest::option::of(any::<u16>())).prop_map(|(f, t)| {
                    HistoryKind::Advanced {
                        from: f.into(),
                        to: t.map(usize::from),
                    }
                }),
                (any::<u16>(), text(), text()).prop_map(|(s, c, r)| HistoryKind::Skipped {
                    step: s.into(),
                    channel: c.into(),
                    reason: SkipReason::Refused(r),
                }),
                Just(HistoryKind::Cancelled),
            ];
            (time(), kind).prop_map(|(at, kind)| HistoryEntry { at, kind })
        }

        fn phase() -> impl Strategy<Value = Phase> {
            prop_oneof![
                Just(Phase::Ready),
                any::<u16>().prop_map(|a| Phase::Sending { attempt: a.into() }),
                (any::<u16>(), evidence(), time()).prop_map(|(a, e, t)| Phase::Waiting {
                    attempt: a.into(),
                    wait_for: e,
                    window_end: t,
                }),
                Just(Phase::Finished(Outcome::Expired)),
            ]
        }

        proptest! {
            #[test]
            fn every_record_reads_back_exactly(
                notification in notification(),
                (policy, version, step, rate_limit_waits) in (text(), any::<u64>(), any::<u16>(), any::<u32>()),
                phase in phase(),
                (wake_at, created_at) in (proptest::option::of(time()), time()),
                attempts in proptest::collection::vec(attempt(), 0..4),
                history in proptest::collection::vec(entry(), 0..8),
            ) {
                let rec = CascadeRecord {
                    notification: Arc::new(notification),
                    policy: policy.into(),
                    version,
                    step: step.into(),
                    phase,
                    wake_at,
                    rate_limit_waits,
                    attempts,
                    history,
                    created_at,
                };
                let parked = Parked::park(&rec);
                let back = parked.unpark(rec.id());
                prop_assert_eq!(back.as_ref().ok(), Some(&rec));
            }

            #[test]
            fn any_bytes_are_a_record_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                let _ = Parked(bytes.into()).unpark(&"x".into());
            }
        }
    }
}
