//! The sender governor: keeps a number behaving like a person, not a robot.
//!
//! The engine asks it before every send (it implements [`SendGate`]) and tells it after every
//! accepted send ([`SendGate::record_sent`]). It holds back:
//!
//! * a **new number** during its warm-up: by default 12 messages on the day it was connected,
//!   rising to 100 on the seventh day ([`WarmUp::daily_sends`]), and at most 20 new recipients
//!   a day during the first 10 days;
//! * **new recipients** (people this channel never wrote to and who never wrote to us) beyond a
//!   daily cap per sender (default 250);
//! * **marketing** to one person beyond a weekly cap (default 3 in any 7 days);
//! * a WhatsApp number at its **messaging-limit tier** (unique people per 24 hours), fed by the
//!   adapter through [`Governor::set_daily_unique_limit`] or a [`Signal::Tier`] event.
//!
//! Held-back sends get [`GateDecision::Defer`] with the time the cap resets (the engine waits,
//! never drops). A person who opted out gets [`GateDecision::Deny`]. The governor also watches the
//! **reply ratio** (warns below 30 replies per 100 outbound over 7 days, see
//! [`Governor::reply_ratio`]) and records inbound stop and start words (`СТОП`, `STOP`,
//! `ОТПИСАТЬСЯ`, ..., `СТАРТ`) through [`Governor::observe_inbound`], which also counts replies.
//!
//! Opt-outs live in the family's one opt-out record, an [`OptOutStore`]
//! ([`Governor::with_opt_outs`]; in memory by default). Give the inbox the same store: a "СТОП"
//! the inbox recorded, under the person's contact as well as the address it came from, then
//! stops the governor's sends on every channel (see [`messaging_core::consent`]).
//!
//! Days are calendar days in [`GovernorConfig::day_zone`] (UTC by default); time always comes from
//! the caller ([`SendContext::now`], event times), never from the system clock.
//!
//! Counters live behind [`SenderCounters`] so that a durable store can keep them across restarts
//! and share them between instances; [`MemoryCounters`] is the in-memory implementation, and
//! `conformance` (feature `testkit`) checks that others answer alike.
//! The check and the record are two calls, so concurrent sends may overshoot a cap by the number
//! of sends in flight.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use messaging_hygiene::governor::{Governor, GovernorConfig, InboundEffect};
//! use messaging_core::{Address, ChannelId, ChannelKind, InboundMessage};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let governor = Governor::new(GovernorConfig::default());
//! let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
//! let wa = ChannelId::new("wa-main");
//! governor.connect(&wa, now).await.unwrap(); // a fresh number: warm-up starts today
//! governor.set_daily_unique_limit(&wa, Some(250)); // the WhatsApp tier, from the adapter
//!
//! // The engine holds the governor as a gate: `EngineBuilder::gate(Arc::new(governor))`.
//! let stop = InboundMessage::new(ChannelKind::WhatsApp, Address::WhatsApp("79123456789".into()), Some("СТОП".into()), now);
//! assert_eq!(governor.observe_inbound(&stop).await.unwrap(), InboundEffect::OptedOut);
//! # });
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use messaging_core::consent::{
    DEFAULT_START_WORDS, DEFAULT_STOP_WORDS, MemoryOptOutStore, OptOutStore, address_keys,
};
use messaging_core::gate::{GateDecision, SendContext, SendGate};
use messaging_core::{Address, ChannelId, Purpose, StoreError};
use messaging_core::{Event, InboundMessage, Signal};

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod conformance;

/// The warm-up ramp of a newly connected number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarmUp {
    /// Sends allowed on day 0, 1, 2, ... after connection (calendar days); no ramp cap after
    /// the last entry.
    pub daily_sends: Vec<u64>,
    /// New recipients allowed per day while the number is young.
    pub new_recipients_per_day: u64,
    /// How many days the number counts as young.
    pub young_days: u32,
}

impl Default for WarmUp {
    fn default() -> Self {
        WarmUp {
            daily_sends: vec![12, 20, 30, 45, 60, 80, 100],
            new_recipients_per_day: 20,
            young_days: 10,
        }
    }
}

/// Governor settings. The defaults are the conservative values the WhatsApp community advises.
#[derive(Clone, Debug, PartialEq)]
pub struct GovernorConfig {
    /// The warm-up of numbers registered with [`Governor::connect`].
    pub warm_up: WarmUp,
    /// New recipients per channel per day once warm (`None`: no cap). Default 250.
    pub new_recipients_per_day: Option<u64>,
    /// Marketing messages per person in any 7 days. Default 3.
    pub marketing_per_week: u32,
    /// Warn when replies per outbound message fall below this. Default 0.30.
    pub reply_ratio_warn: f64,
    /// ... once at least this many messages went out in the window. Default 50.
    pub reply_ratio_min_outbound: u64,
    /// Inbound messages whose first word (or whole text) is one of these opt the person out.
    /// Default: [`DEFAULT_STOP_WORDS`], the inbox's list.
    pub stop_words: Vec<String>,
    /// Inbound messages that undo an opt-out. Default: [`DEFAULT_START_WORDS`].
    pub start_words: Vec<String>,
    /// The time zone whose midnight resets daily caps.
    pub day_zone: chrono_tz::Tz,
    /// How long to defer when the counters cannot be read.
    pub retry_on_counter_error: Duration,
}

impl Default for GovernorConfig {
    fn default() -> Self {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect();
        GovernorConfig {
            warm_up: WarmUp::default(),
            new_recipients_per_day: Some(250),
            marketing_per_week: 3,
            reply_ratio_warn: 0.30,
            reply_ratio_min_outbound: 50,
            stop_words: words(DEFAULT_STOP_WORDS),
            start_words: words(DEFAULT_START_WORDS),
            day_zone: chrono_tz::UTC,
            retry_on_counter_error: Duration::minutes(1),
        }
    }
}

/// One accepted send, as the governor records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendRecord {
    /// The channel that sent.
    pub channel_id: ChannelId,
    /// The address key on that channel ([`Address::key`]).
    pub address: String,
    /// Every key of the person ([`messaging_core::Recipient::address_keys`] plus `address`).
    pub person: Vec<String>,
    /// Why it was sent.
    pub purpose: Purpose,
    /// When.
    pub at: DateTime<Utc>,
    /// Whether this was the channel's first message to the person.
    pub new_recipient: bool,
}

/// Sends of one channel in a time window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WindowCounts {
    /// Messages sent.
    pub sends: u64,
    /// Of them, first messages to a new recipient.
    pub new_recipients: u64,
    /// Distinct addresses written to.
    pub unique_recipients: u64,
    /// The earliest send in the window.
    pub earliest: Option<DateTime<Utc>>,
}

/// Where the governor keeps its counters. Implement it over a durable store so that caps hold
/// across restarts and instances; every method is one small query. Implementations must answer
/// like [`MemoryCounters`]; `conformance` (feature `testkit`) checks that.
///
/// Person lookups take every key of the person (`contact:..`, `phone:..`, `wa:..`, `tg:..`) and
/// match if any key matches, so a person is recognized whichever channel reached them.
#[async_trait]
pub trait SenderCounters: Send + Sync + fmt::Debug + 'static {
    /// Records an accepted send.
    async fn record_send(&self, send: &SendRecord) -> Result<(), StoreError>;
    /// Counts of `channel`'s sends at or after `since`.
    async fn window(
        &self,
        channel: &ChannelId,
        since: DateTime<Utc>,
    ) -> Result<WindowCounts, StoreError>;
    /// Whether `channel` ever wrote to the person, or the person ever wrote to us.
    async fn known(&self, channel: &ChannelId, person: &[String]) -> Result<bool, StoreError>;
    /// Whether `channel` wrote to the person at or after `since`.
    async fn sent_since(
        &self,
        channel: &ChannelId,
        person: &[String],
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Times of marketing sends to the person (any channel) at or after `since`.
    async fn marketing_since(
        &self,
        person: &[String],
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError>;
    /// Records a message from a person (`sender` is its address key) on `channel`.
    async fn record_inbound(
        &self,
        channel: &ChannelId,
        sender: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Inbound messages on `channel` at or after `since`.
    async fn replies_since(
        &self,
        channel: &ChannelId,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// When the channel's number was connected (start of its warm-up), if registered.
    async fn connected_at(&self, channel: &ChannelId) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Registers when the channel's number was connected.
    async fn set_connected_at(
        &self,
        channel: &ChannelId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

#[derive(Clone, Debug)]
struct Sent {
    at: DateTime<Utc>,
    address: String,
    new_recipient: bool,
}

#[derive(Debug, Default)]
struct Memory {
    sends: HashMap<ChannelId, Vec<Sent>>,
    contacted: HashMap<ChannelId, HashSet<String>>,
    last_sent: HashMap<(ChannelId, String), DateTime<Utc>>,
    wrote_to_us: HashSet<String>,
    marketing: HashMap<String, Vec<DateTime<Utc>>>,
    replies: HashMap<ChannelId, Vec<DateTime<Utc>>>,
    connected: HashMap<ChannelId, DateTime<Utc>>,
}

/// In-memory [`SenderCounters`]: fine for one process; counts are lost on restart. Sends older
/// than [`MemoryCounters::RETENTION`] are forgotten (the longest window the governor asks about
/// is 7 days); whom a channel ever contacted is kept.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    inner: Mutex<Memory>,
}

impl MemoryCounters {
    /// How long sends are kept.
    pub const RETENTION: Duration = Duration::days(8);

    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // The data stays consistent even if a holder panicked: every update is one insert.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Inserts keeping `v` sorted by time (sends nearly always arrive in order).
fn insert_sorted<T>(v: &mut Vec<T>, item: T, at: impl Fn(&T) -> DateTime<Utc>) {
    let t = at(&item);
    let pos = v.partition_point(|x| at(x) <= t);
    v.insert(pos, item);
}

#[async_trait]
impl SenderCounters for MemoryCounters {
    async fn record_send(&self, send: &SendRecord) -> Result<(), StoreError> {
        let mut m = self.lock();
        let horizon = send.at - Self::RETENTION;
        let list = m.sends.entry(send.channel_id.clone()).or_default();
        let old = list.partition_point(|s| s.at < horizon);
        list.drain(..old);
        insert_sorted(
            list,
            Sent {
                at: send.at,
                address: send.address.clone(),
                new_recipient: send.new_recipient,
            },
            |s| s.at,
        );
        let contacted = m.contacted.entry(send.channel_id.clone()).or_default();
        contacted.extend(send.person.iter().cloned());
        for key in &send.person {
            let last = m
                .last_sent
                .entry((send.channel_id.clone(), key.clone()))
                .or_insert(send.at);
            *last = (*last).max(send.at);
        }
        if send.purpose == Purpose::Marketing {
            // One entry under the first key; lookups scan every key of the person.
            if let Some(key) = send.person.first() {
                let times = m.marketing.entry(key.clone()).or_default();
                times.retain(|t| *t >= horizon);
                insert_sorted(times, send.at, |t| *t);
            }
        }
        Ok(())
    }

    async fn window(
        &self,
        channel: &ChannelId,
        since: DateTime<Utc>,
    ) -> Result<WindowCounts, StoreError> {
        let m = self.lock();
        let Some(list) = m.sends.get(channel) else {
            return Ok(WindowCounts::default());
        };
        let from = list.partition_point(|s| s.at < since);
        let recent = &list[from..];
        let unique: HashSet<&str> = recent.iter().map(|s| s.address.as_str()).collect();
        Ok(WindowCounts {
            sends: recent.len() as u64,
            new_recipients: recent.iter().filter(|s| s.new_recipient).count() as u64,
            unique_recipients: unique.len() as u64,
            earliest: recent.first().map(|s| s.at),
        })
    }

    async fn known(&self, channel: &ChannelId, person: &[String]) -> Result<bool, StoreError> {
        let m = self.lock();
        let contacted = m.contacted.get(channel);
        Ok(person
            .iter()
            .any(|k| m.wrote_to_us.contains(k) || contacted.is_some_and(|c| c.contains(k))))
    }

    async fn sent_since(
        &self,
        channel: &ChannelId,
        person: &[String],
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let m = self.lock();
        Ok(person.iter().any(|k| {
            m.last_sent
                .get(&(channel.clone(), k.clone()))
                .is_some_and(|t| *t >= since)
        }))
    }

    async fn marketing_since(
        &self,
        person: &[String],
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let m = self.lock();
        let mut out: Vec<DateTime<Utc>> = person
            .iter()
            .filter_map(|k| m.marketing.get(k))
            .flatten()
            .copied()
            .filter(|t| *t >= since)
            .collect();
        out.sort();
        Ok(out)
    }

    async fn record_inbound(
        &self,
        channel: &ChannelId,
        sender: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut m = self.lock();
        m.wrote_to_us.insert(sender.to_owned());
        let list = m.replies.entry(channel.clone()).or_default();
        let old = list.partition_point(|t| *t < at - Self::RETENTION);
        list.drain(..old);
        insert_sorted(list, at, |t| *t);
        Ok(())
    }

    async fn replies_since(
        &self,
        channel: &ChannelId,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let m = self.lock();
        Ok(m.replies
            .get(channel)
            .map_or(0, |l| (l.len() - l.partition_point(|t| *t < since)) as u64))
    }

    async fn connected_at(&self, channel: &ChannelId) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.lock().connected.get(channel).copied())
    }

    async fn set_connected_at(
        &self,
        channel: &ChannelId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.lock().connected.insert(channel.clone(), at);
        Ok(())
    }
}

/// What an inbound message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundEffect {
    /// Counted as a reply.
    Reply,
    /// A stop word: the person is now opted out (also counted as a reply when it is a new
    /// message, not an edit).
    OptedOut,
    /// A start word: the person opted back in (also counted as a reply when it is a new
    /// message, not an edit).
    OptedIn,
    /// Not a reply and no stop or start word: an edit, a deletion, a reaction, an echo.
    NotAReply,
}

/// Replies against outbound messages of one channel over the last 7 days.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplyRatio {
    /// Messages sent.
    pub outbound: u64,
    /// Messages received.
    pub replies: u64,
    /// `replies / outbound` (0 when nothing went out).
    pub ratio: f64,
    /// Below the configured threshold with enough messages to judge: people are not answering,
    /// which is how a number gets reported as spam.
    pub low: bool,
}

/// The sender governor. See the [module docs](self).
#[derive(Debug)]
pub struct Governor<C: SenderCounters = MemoryCounters> {
    config: GovernorConfig,
    counters: C,
    opt_outs: Arc<dyn OptOutStore>,
    unique_limits: Mutex<HashMap<ChannelId, u64>>,
}

impl Governor<MemoryCounters> {
    /// A governor with in-memory counters.
    pub fn new(config: GovernorConfig) -> Self {
        Governor::with_counters(config, MemoryCounters::new())
    }
}

/// The channel an inbound message counts for: its configured id, else its kind's name.
fn inbound_channel(msg: &InboundMessage) -> ChannelId {
    msg.channel_id
        .clone()
        .unwrap_or_else(|| ChannelId::new(msg.channel.as_str()))
}

impl<C: SenderCounters> Governor<C> {
    /// A governor over the given counters, with an in-memory opt-out record of its own (share
    /// one with the inbox through [`with_opt_outs`](Self::with_opt_outs)).
    pub fn with_counters(config: GovernorConfig, counters: C) -> Self {
        Governor {
            config,
            counters,
            opt_outs: Arc::new(MemoryOptOutStore::new()),
            unique_limits: Mutex::new(HashMap::new()),
        }
    }

    /// Reads and records opt-outs in `store`: the record the inbox writes too.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use messaging_core::consent::MemoryOptOutStore;
    /// use messaging_hygiene::governor::{Governor, GovernorConfig};
    /// let opt_outs = Arc::new(MemoryOptOutStore::new()); // or a SqliteStore / PostgresStore
    /// let governor = Governor::new(GovernorConfig::default()).with_opt_outs(opt_outs.clone());
    /// // Inbox::builder().opt_out_store(opt_outs)
    /// # let _ = governor;
    /// ```
    pub fn with_opt_outs(mut self, store: Arc<dyn OptOutStore>) -> Self {
        self.opt_outs = store;
        self
    }

    /// The opt-out record it reads and writes.
    pub fn opt_outs(&self) -> &Arc<dyn OptOutStore> {
        &self.opt_outs
    }

    /// The settings.
    pub fn config(&self) -> &GovernorConfig {
        &self.config
    }

    /// The counters.
    pub fn counters(&self) -> &C {
        &self.counters
    }

    /// Registers a newly connected number: its warm-up starts on the calendar day of `at`.
    /// Channels never registered are treated as warm.
    pub async fn connect(&self, channel: &ChannelId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.counters.set_connected_at(channel, at).await
    }

    /// Sets the messaging-limit tier of a channel: at most `limit` unique people per rolling 24
    /// hours (`None`: unlimited). The WhatsApp adapter feeds it from the account's tier.
    pub fn set_daily_unique_limit(&self, channel: &ChannelId, limit: Option<u64>) {
        let mut limits = self
            .unique_limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match limit {
            Some(l) => limits.insert(channel.clone(), l),
            None => limits.remove(channel),
        };
    }

    /// The tier set for a channel.
    pub fn daily_unique_limit(&self, channel: &ChannelId) -> Option<u64> {
        self.unique_limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel)
            .copied()
    }

    /// Records that the person at `address` opted out of everything at `at` (an operator's
    /// request, a form). For a contact, use [`opt_outs`](Self::opt_outs) with
    /// [`contact_key`](messaging_core::consent::contact_key).
    pub async fn opt_out(&self, address: &Address, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.opt_outs
            .opt_out(&address_keys(address), None, at)
            .await
    }

    /// Records that the person at `address` opted back in at `at`.
    pub async fn opt_in(&self, address: &Address, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.opt_outs.opt_in(&address_keys(address), None, at).await
    }

    /// Counts an inbound message as a reply, and acts on stop and start words.
    ///
    /// Replies count for the message's `channel_id` (webhook handlers set it), else for a
    /// channel named after its kind (`"whatsapp"`).
    ///
    /// Only a new message counts as a reply ([`InboundMessage::counts_as_reply`]); an edit
    /// still acts on a stop or start word written into it (the person's words), while a
    /// deletion, a reaction or an echo of the business's own message does nothing:
    /// [`InboundEffect::NotAReply`].
    pub async fn observe_inbound(&self, msg: &InboundMessage) -> Result<InboundEffect, StoreError> {
        if msg.counts_as_reply() {
            let key = msg.address.key();
            self.counters
                .record_inbound(&inbound_channel(msg), &key, msg.at)
                .await?;
        }
        let text = if msg.carries_words() {
            msg.text.as_deref().or(msg.button_payload.as_deref())
        } else {
            None
        };
        let Some(text) = text else {
            return Ok(if msg.counts_as_reply() {
                InboundEffect::Reply
            } else {
                InboundEffect::NotAReply
            });
        };
        if matches_word(text, &self.config.stop_words) {
            self.opt_out(&msg.address, msg.at).await?;
            Ok(InboundEffect::OptedOut)
        } else if matches_word(text, &self.config.start_words) {
            self.opt_in(&msg.address, msg.at).await?;
            Ok(InboundEffect::OptedIn)
        } else if msg.counts_as_reply() {
            Ok(InboundEffect::Reply)
        } else {
            Ok(InboundEffect::NotAReply)
        }
    }

    /// Feeds any event: inbound messages ([`Governor::observe_inbound`]), opt-out and opt-in
    /// signals (of the purpose they name: WhatsApp's marketing stop only stops marketing, its
    /// resume only resumes marketing) and messaging-limit tier changes. Other events are
    /// ignored.
    pub async fn observe_event(&self, event: &Event) -> Result<(), StoreError> {
        match event {
            Event::Inbound(m) => self.observe_inbound(m).await.map(|_| ()),
            Event::Signal(s) => match &s.signal {
                Signal::OptOut {
                    address, purpose, ..
                } => {
                    self.opt_outs
                        .opt_out(&address_keys(address), *purpose, s.at)
                        .await
                }
                Signal::OptIn {
                    address, purpose, ..
                } => {
                    self.opt_outs
                        .opt_in(&address_keys(address), *purpose, s.at)
                        .await
                }
                Signal::Tier { limit, .. } => {
                    if let Some(id) = &s.channel_id {
                        self.set_daily_unique_limit(id, *limit);
                    }
                    Ok(())
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// The reply ratio of a channel over the 7 days before `now`.
    pub async fn reply_ratio(
        &self,
        channel: &ChannelId,
        now: DateTime<Utc>,
    ) -> Result<ReplyRatio, StoreError> {
        let since = now - Duration::days(7);
        let outbound = self.counters.window(channel, since).await?.sends;
        let replies = self.counters.replies_since(channel, since).await?;
        let ratio = if outbound == 0 {
            0.0
        } else {
            replies as f64 / outbound as f64
        };
        Ok(ReplyRatio {
            outbound,
            replies,
            ratio,
            low: outbound >= self.config.reply_ratio_min_outbound
                && ratio < self.config.reply_ratio_warn,
        })
    }

    /// The start of the calendar day holding `now` and of the next one, in the day zone.
    fn day_bounds(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let tz = self.config.day_zone;
        let today = now.with_timezone(&tz).date_naive();
        let start = local_midnight(tz, today).unwrap_or(now - Duration::days(1));
        let next = today
            .succ_opt()
            .and_then(|d| local_midnight(tz, d))
            .unwrap_or(now + Duration::days(1));
        (start, next)
    }

    fn days_since(&self, connected: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
        let tz = self.config.day_zone;
        (now.with_timezone(&tz).date_naive() - connected.with_timezone(&tz).date_naive()).num_days()
    }

    async fn decide(&self, ctx: &SendContext<'_>) -> Result<GateDecision, StoreError> {
        // The opt-out record matches every key of the person (a WhatsApp id's phone too).
        let everyone = messaging_core::consent::person_keys(ctx.recipient, ctx.address);
        if self.opt_outs.is_opted_out(&everyone, ctx.purpose).await? {
            return Ok(GateDecision::Deny {
                reason: "the person opted out".into(),
            });
        }
        let person = person_keys(ctx);
        let now = ctx.now;
        if ctx.purpose == Purpose::Marketing {
            let week = self
                .counters
                .marketing_since(&person, window_start(now, Duration::days(7)))
                .await?;
            let cap = self.config.marketing_per_week as usize;
            if week.len() >= cap {
                let oldest = week.get(week.len() - cap).copied().unwrap_or(now);
                return Ok(GateDecision::Defer {
                    until: oldest + Duration::days(7),
                    reason: format!(
                        "marketing frequency cap: {} messages to this person in 7 days (cap {cap})",
                        week.len()
                    ),
                });
            }
        }
        if ctx.purpose == Purpose::Conversation {
            // A reply inside an open dialogue is what a person does; no caps.
            return Ok(GateDecision::Allow);
        }
        let channel = ctx.channel_id;
        let new_recipient = !self.counters.known(channel, &person).await?;
        let (day_start, next_day) = self.day_bounds(now);
        let today = self.counters.window(channel, day_start).await?;
        if let Some(connected) = self.counters.connected_at(channel).await? {
            let day = self.days_since(connected, now).max(0);
            let warm = &self.config.warm_up;
            let cap = usize::try_from(day)
                .ok()
                .and_then(|d| warm.daily_sends.get(d).copied());
            if let Some(cap) = cap
                && today.sends >= cap
            {
                return Ok(GateDecision::Defer {
                    until: next_day,
                    reason: format!(
                        "warm-up day {} of {}: {} of {cap} messages sent today",
                        day + 1,
                        warm.daily_sends.len(),
                        today.sends
                    ),
                });
            }
            if new_recipient
                && day < i64::from(warm.young_days)
                && today.new_recipients >= warm.new_recipients_per_day
            {
                return Ok(GateDecision::Defer {
                    until: next_day,
                    reason: format!(
                        "young number (day {} of {}): {} of {} new recipients today",
                        day + 1,
                        warm.young_days,
                        today.new_recipients,
                        warm.new_recipients_per_day
                    ),
                });
            }
        }
        if new_recipient
            && let Some(cap) = self.config.new_recipients_per_day
            && today.new_recipients >= cap
        {
            return Ok(GateDecision::Defer {
                until: next_day,
                reason: format!(
                    "daily cap of new recipients: {} of {cap}",
                    today.new_recipients
                ),
            });
        }
        if let Some(limit) = self.daily_unique_limit(channel) {
            let since = window_start(now, Duration::hours(24));
            if !self.counters.sent_since(channel, &person, since).await? {
                let day = self.counters.window(channel, since).await?;
                if day.unique_recipients >= limit {
                    // The count may only drop when the earliest send leaves the window; if it does
                    // not, the engine asks again then.
                    let until = day.earliest.map_or(now + Duration::hours(1), |t| {
                        (t + Duration::hours(24)).max(now + Duration::minutes(1))
                    });
                    return Ok(GateDecision::Defer {
                        until,
                        reason: format!(
                            "messaging limit tier: {} of {limit} unique people in 24 hours",
                            day.unique_recipients
                        ),
                    });
                }
            }
        }
        Ok(GateDecision::Allow)
    }
}

/// Every key under which the person of a send is known.
fn person_keys(ctx: &SendContext<'_>) -> Vec<String> {
    let mut keys = ctx.recipient.address_keys();
    let own = ctx.address.key();
    if !keys.contains(&own) {
        keys.insert(0, own);
    } else if let Some(i) = keys.iter().position(|k| *k == own) {
        // The send's own address first: the in-memory store files marketing under it.
        keys.swap(0, i);
    }
    keys
}

/// The start of a rolling window of length `len` ending at `now`: a send exactly `len` ago has
/// left it, so a cap that resets at `oldest + len` really has room then.
fn window_start(now: DateTime<Utc>, len: Duration) -> DateTime<Utc> {
    now - len + Duration::nanoseconds(1)
}

fn local_midnight(tz: chrono_tz::Tz, day: NaiveDate) -> Option<DateTime<Utc>> {
    // Where a DST change skips midnight, the day starts at 01:00.
    [0, 1].into_iter().find_map(|h| {
        tz.from_local_datetime(&day.and_hms_opt(h, 0, 0)?)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// Whether the text is one of `words` or starts with one (case-insensitive, punctuation ignored).
fn matches_word(text: &str, words: &[String]) -> bool {
    // One matcher for stop words everywhere: the inbox's.
    messaging_core::consent::is_stop_word(text, words)
}

#[async_trait]
impl<C: SenderCounters> SendGate for Governor<C> {
    async fn check(&self, ctx: &SendContext<'_>) -> GateDecision {
        match self.decide(ctx).await {
            Ok(d) => d,
            Err(e) => GateDecision::Defer {
                until: ctx.now + self.config.retry_on_counter_error,
                reason: e.to_string(),
            },
        }
    }

    async fn record_sent(&self, ctx: &SendContext<'_>) {
        let person = person_keys(ctx);
        let new_recipient = match self.counters.known(ctx.channel_id, &person).await {
            Ok(known) => !known,
            Err(e) => {
                tracing::warn!(channel = %ctx.channel_id, error = %e, "governor could not read counters");
                true
            }
        };
        let record = SendRecord {
            channel_id: ctx.channel_id.clone(),
            address: ctx.address.key(),
            person,
            purpose: ctx.purpose,
            at: ctx.now,
            new_recipient,
        };
        if let Err(e) = self.counters.record_send(&record).await {
            tracing::warn!(channel = %ctx.channel_id, error = %e, "governor could not record a send");
            return;
        }
        if let Ok(r) = self.reply_ratio(ctx.channel_id, ctx.now).await
            && r.low
        {
            tracing::warn!(
                channel = %ctx.channel_id,
                outbound = r.outbound,
                replies = r.replies,
                "low reply ratio: people are not answering this sender"
            );
        }
    }
}

/// The governor as one of the inbox's sinks: every event goes to [`Governor::observe_event`].
#[async_trait]
impl<C: SenderCounters> messaging_core::sink::EventSink for Governor<C> {
    async fn handle(&self, event: &Event) -> Result<(), messaging_core::sink::SinkError> {
        self.observe_event(event).await.map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::{ChannelKind, NotificationId, Recipient};

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
    }

    struct Case {
        id: NotificationId,
        channel: ChannelId,
        recipient: Recipient,
        address: Address,
    }

    fn send(channel: &str, person: u32) -> Case {
        let recipient =
            Recipient::with_phone(format!("p{person}"), &format!("+7912{person:07}")).unwrap();
        let address = recipient.address_for(ChannelKind::WhatsApp).unwrap();
        Case {
            id: NotificationId::new("n"),
            channel: ChannelId::new(channel),
            recipient,
            address,
        }
    }

    impl Case {
        fn ctx(&self, now: DateTime<Utc>, purpose: Purpose) -> SendContext<'_> {
            SendContext::new(
                now,
                &self.id,
                &self.channel,
                ChannelKind::WhatsApp,
                &self.recipient,
                &self.address,
            )
            .purpose(purpose)
            .text("text")
        }
    }

    async fn try_send<C: SenderCounters>(
        g: &Governor<C>,
        s: &Case,
        now: DateTime<Utc>,
        purpose: Purpose,
    ) -> GateDecision {
        let ctx = s.ctx(now, purpose);
        let d = g.check(&ctx).await;
        if d == GateDecision::Allow {
            g.record_sent(&ctx).await;
        }
        d
    }

    fn no_new_cap() -> GovernorConfig {
        GovernorConfig {
            new_recipients_per_day: None,
            ..GovernorConfig::default()
        }
    }

    #[tokio::test]
    async fn warm_up_ramp_defers_until_next_day() {
        let g = Governor::new(GovernorConfig {
            warm_up: WarmUp {
                new_recipients_per_day: 1000,
                ..WarmUp::default()
            },
            ..no_new_cap()
        });
        let wa = ChannelId::new("wa");
        g.connect(&wa, t(2, 8)).await.unwrap();
        let mut allowed = 0;
        for p in 0..20 {
            match try_send(&g, &send("wa", p), t(2, 10), Purpose::Service).await {
                GateDecision::Allow => allowed += 1,
                GateDecision::Defer { until, reason } => {
                    assert_eq!(until, t(3, 0));
                    assert!(reason.contains("warm-up day 1 of 7"), "{reason}");
                }
                d => panic!("{d:?}"),
            }
        }
        assert_eq!(allowed, 12);
        // Day 2 allows 20; day 8 has no ramp cap.
        let mut allowed = 0;
        for p in 100..130 {
            if try_send(&g, &send("wa", p), t(3, 10), Purpose::Service).await == GateDecision::Allow
            {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 20);
        for p in 200..320 {
            assert_eq!(
                try_send(&g, &send("wa", p), t(10, 10), Purpose::Service).await,
                GateDecision::Allow
            );
        }
    }

    #[tokio::test]
    async fn young_number_new_recipient_cap_spares_known_people() {
        let g = Governor::new(GovernorConfig {
            warm_up: WarmUp {
                daily_sends: vec![],
                ..WarmUp::default()
            },
            ..no_new_cap()
        });
        let wa = ChannelId::new("wa");
        g.connect(&wa, t(2, 8)).await.unwrap();
        for p in 0..20 {
            assert_eq!(
                try_send(&g, &send("wa", p), t(4, 10), Purpose::Service).await,
                GateDecision::Allow
            );
        }
        let d = try_send(&g, &send("wa", 20), t(4, 10), Purpose::Service).await;
        assert!(
            matches!(d, GateDecision::Defer { until, .. } if until == t(5, 0)),
            "{d:?}"
        );
        // Someone already written to is not new.
        assert_eq!(
            try_send(&g, &send("wa", 3), t(4, 11), Purpose::Service).await,
            GateDecision::Allow
        );
        // Someone who wrote to us is not new either.
        let inbound = InboundMessage::new(
            ChannelKind::WhatsApp,
            send("wa", 77).address,
            Some("Здравствуйте".into()),
            t(4, 9),
        );
        g.observe_inbound(&inbound).await.unwrap();
        assert_eq!(
            try_send(&g, &send("wa", 77), t(4, 12), Purpose::Service).await,
            GateDecision::Allow
        );
        // After 10 days the young cap is gone.
        for p in 300..330 {
            assert_eq!(
                try_send(&g, &send("wa", p), t(12, 10), Purpose::Service).await,
                GateDecision::Allow
            );
        }
    }

    #[tokio::test]
    async fn daily_new_recipient_cap_for_warm_numbers() {
        let g = Governor::new(GovernorConfig {
            new_recipients_per_day: Some(2),
            ..GovernorConfig::default()
        });
        assert_eq!(
            try_send(&g, &send("wa", 1), t(2, 10), Purpose::Service).await,
            GateDecision::Allow
        );
        assert_eq!(
            try_send(&g, &send("wa", 2), t(2, 10), Purpose::Service).await,
            GateDecision::Allow
        );
        let d = try_send(&g, &send("wa", 3), t(2, 23), Purpose::Service).await;
        assert!(
            matches!(&d, GateDecision::Defer { until, reason } if *until == t(3, 0) && reason.contains("new recipients")),
            "{d:?}"
        );
        // Another channel has its own cap.
        assert_eq!(
            try_send(&g, &send("wa2", 3), t(2, 23), Purpose::Service).await,
            GateDecision::Allow
        );
        assert_eq!(
            try_send(&g, &send("wa", 3), t(3, 0), Purpose::Service).await,
            GateDecision::Allow
        );
    }

    #[tokio::test]
    async fn day_zone_moves_the_reset() {
        let g = Governor::new(GovernorConfig {
            new_recipients_per_day: Some(1),
            day_zone: chrono_tz::Europe::Moscow,
            ..GovernorConfig::default()
        });
        try_send(&g, &send("wa", 1), t(2, 10), Purpose::Service).await;
        let d = try_send(&g, &send("wa", 2), t(2, 11), Purpose::Service).await;
        // Midnight in Moscow is 21:00 UTC.
        assert!(
            matches!(d, GateDecision::Defer { until, .. } if until == t(2, 21)),
            "{d:?}"
        );
    }

    #[tokio::test]
    async fn marketing_frequency_cap_per_person() {
        let g = Governor::new(no_new_cap());
        let s = send("wa", 1);
        for day in [2, 3, 4] {
            assert_eq!(
                try_send(&g, &s, t(day, 10), Purpose::Marketing).await,
                GateDecision::Allow
            );
        }
        let d = try_send(&g, &s, t(5, 10), Purpose::Marketing).await;
        assert!(
            matches!(&d, GateDecision::Defer { until, .. } if *until == t(9, 10)),
            "{d:?}"
        );
        // Service messages are not capped; the fourth marketing one goes a week after the first.
        assert_eq!(
            try_send(&g, &s, t(5, 10), Purpose::Service).await,
            GateDecision::Allow
        );
        assert_eq!(
            try_send(&g, &s, t(9, 10), Purpose::Marketing).await,
            GateDecision::Allow
        );
        // The cap follows the person across channels.
        let other = send("sms", 1);
        let d = try_send(&g, &other, t(9, 11), Purpose::Marketing).await;
        assert!(matches!(d, GateDecision::Defer { .. }), "{d:?}");
    }

    #[tokio::test]
    async fn stop_words_opt_out_and_start_words_opt_in() {
        let g = Governor::new(no_new_cap());
        let s = send("wa", 1);
        for (text, effect) in [
            ("Спасибо, приду", InboundEffect::Reply),
            ("СТОП", InboundEffect::OptedOut),
            ("старт", InboundEffect::OptedIn),
            ("Stop please!", InboundEffect::OptedOut),
        ] {
            let m = InboundMessage::new(
                ChannelKind::WhatsApp,
                s.address.clone(),
                Some(text.into()),
                t(2, 9),
            );
            assert_eq!(g.observe_inbound(&m).await.unwrap(), effect, "{text}");
        }
        let d = try_send(&g, &s, t(2, 10), Purpose::Service).await;
        assert!(matches!(d, GateDecision::Deny { .. }), "{d:?}");
        // Words that merely contain a stop word do not opt out.
        assert!(!matches_word(
            "стопка книг",
            &GovernorConfig::default().stop_words
        ));
        assert!(matches_word(
            "  Отписаться. ",
            &GovernorConfig::default().stop_words
        ));
        assert!(!matches_word(
            "отмена",
            &GovernorConfig::default().stop_words
        ));
        // An opt-out signal from a provider works the same.
        let other = send("wa", 2);
        let ev = Event::Signal(messaging_core::ChannelSignal::new(
            ChannelKind::WhatsApp,
            t(2, 9),
            Signal::OptOut {
                from: other.address.to_string(),
                address: other.address.clone(),
                purpose: None,
            },
        ));
        g.observe_event(&ev).await.unwrap();
        assert!(matches!(
            try_send(&g, &other, t(2, 10), Purpose::Service).await,
            GateDecision::Deny { .. }
        ));
        g.opt_in(&other.address, t(2, 10)).await.unwrap();
        assert_eq!(
            try_send(&g, &other, t(2, 10), Purpose::Service).await,
            GateDecision::Allow
        );
    }

    #[tokio::test]
    async fn a_marketing_stop_stops_marketing_only() {
        let g = Governor::new(no_new_cap());
        let s = send("wa", 1);
        let ev = Event::Signal(messaging_core::ChannelSignal::new(
            ChannelKind::WhatsApp,
            t(2, 9),
            Signal::OptOut {
                from: s.address.to_string(),
                address: s.address.clone(),
                purpose: Some(Purpose::Marketing),
            },
        ));
        g.observe_event(&ev).await.unwrap();
        assert!(matches!(
            try_send(&g, &s, t(2, 10), Purpose::Marketing).await,
            GateDecision::Deny { .. }
        ));
        assert_eq!(
            try_send(&g, &s, t(2, 10), Purpose::Service).await,
            GateDecision::Allow
        );
        // WhatsApp's marketing resume lifts it.
        let ev = Event::Signal(messaging_core::ChannelSignal::new(
            ChannelKind::WhatsApp,
            t(2, 11),
            Signal::OptIn {
                from: s.address.to_string(),
                address: s.address.clone(),
                purpose: Some(Purpose::Marketing),
            },
        ));
        g.observe_event(&ev).await.unwrap();
        assert_eq!(
            try_send(&g, &s, t(2, 12), Purpose::Marketing).await,
            GateDecision::Allow
        );
    }

    #[tokio::test]
    async fn edits_deletions_and_reactions_are_not_replies() {
        use messaging_core::InboundAction;
        let g = Governor::new(no_new_cap());
        let s = send("wa", 1);
        let wa = ChannelId::new("whatsapp");
        let m = |text: Option<&str>, action: InboundAction| {
            InboundMessage::new(
                ChannelKind::WhatsApp,
                s.address.clone(),
                text.map(str::to_owned),
                t(2, 9),
            )
            .action(action)
        };
        for action in [
            InboundAction::Deletion { of: "w1".into() },
            InboundAction::Reaction {
                to: "w1".into(),
                emoji: Some("👍".into()),
            },
            InboundAction::Echo,
            InboundAction::Edit { of: "w1".into() },
        ] {
            assert_eq!(
                g.observe_inbound(&m(Some("ok"), action.clone()))
                    .await
                    .unwrap(),
                InboundEffect::NotAReply,
                "{action:?}"
            );
        }
        assert_eq!(g.counters().replies_since(&wa, t(1, 0)).await.unwrap(), 0);
        // A stop word in a deletion or an echo is not the person's; in an edit it is.
        assert_eq!(
            g.observe_inbound(&m(Some("СТОП"), InboundAction::Echo))
                .await
                .unwrap(),
            InboundEffect::NotAReply
        );
        assert_eq!(
            try_send(&g, &s, t(2, 10), Purpose::Service).await,
            GateDecision::Allow
        );
        assert_eq!(
            g.observe_inbound(&m(Some("СТОП"), InboundAction::Edit { of: "w1".into() }))
                .await
                .unwrap(),
            InboundEffect::OptedOut
        );
        assert_eq!(g.counters().replies_since(&wa, t(1, 0)).await.unwrap(), 0);
        // A new message is a reply.
        assert_eq!(
            g.observe_inbound(&m(Some("Спасибо"), InboundAction::Message))
                .await
                .unwrap(),
            InboundEffect::Reply
        );
        assert_eq!(g.counters().replies_since(&wa, t(1, 0)).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn reads_opt_outs_recorded_by_others_in_the_shared_record() {
        use messaging_core::consent::{MemoryOptOutStore, OptOutStore, contact_key};
        let shared = Arc::new(MemoryOptOutStore::new());
        let g = Governor::new(no_new_cap()).with_opt_outs(shared.clone());
        let s = send("wa", 1);
        assert_eq!(
            try_send(&g, &s, t(2, 10), Purpose::Service).await,
            GateDecision::Allow
        );
        // The inbox heard "СТОП" from the person's Telegram chat and knew the contact.
        let contact = s.recipient.contact_id.clone().unwrap();
        shared
            .opt_out(&["tg:77".to_owned(), contact_key(&contact)], None, t(2, 11))
            .await
            .unwrap();
        assert!(matches!(
            try_send(&g, &s, t(2, 12), Purpose::Service).await,
            GateDecision::Deny { .. }
        ));
        // A "СТАРТ" heard by the governor itself on WhatsApp lifts it.
        let start = InboundMessage::new(
            ChannelKind::WhatsApp,
            s.address.clone(),
            Some("Старт".into()),
            t(2, 13),
        );
        assert_eq!(
            g.observe_inbound(&start).await.unwrap(),
            InboundEffect::OptedIn
        );
        assert_eq!(
            try_send(&g, &s, t(2, 14), Purpose::Service).await,
            GateDecision::Allow
        );
    }

    #[tokio::test]
    async fn reply_ratio_watch() {
        let g = Governor::new(no_new_cap());
        let wa = ChannelId::new("wa");
        for p in 0..60 {
            try_send(&g, &send("wa", p), t(2, 10), Purpose::Service).await;
        }
        let r = g.reply_ratio(&wa, t(2, 12)).await.unwrap();
        assert_eq!((r.outbound, r.replies, r.low), (60, 0, true));
        for p in 0..20 {
            let mut m = InboundMessage::new(
                ChannelKind::WhatsApp,
                send("wa", p).address,
                Some("Да".into()),
                t(2, 11),
            );
            m.channel_id = Some(wa.clone());
            g.observe_inbound(&m).await.unwrap();
        }
        let r = g.reply_ratio(&wa, t(2, 12)).await.unwrap();
        assert_eq!(r.replies, 20);
        assert!(!r.low && (r.ratio - 20.0 / 60.0).abs() < 1e-9);
        // Too few messages to judge.
        let quiet = g
            .reply_ratio(&ChannelId::new("other"), t(2, 12))
            .await
            .unwrap();
        assert!(!quiet.low);
    }

    #[tokio::test]
    async fn tier_limit_counts_unique_people_per_24_hours() {
        let g = Governor::new(no_new_cap());
        let wa = ChannelId::new("wa");
        g.set_daily_unique_limit(&wa, Some(2));
        assert_eq!(g.daily_unique_limit(&wa), Some(2));
        assert_eq!(
            try_send(&g, &send("wa", 1), t(2, 10), Purpose::Service).await,
            GateDecision::Allow
        );
        assert_eq!(
            try_send(&g, &send("wa", 2), t(2, 11), Purpose::Service).await,
            GateDecision::Allow
        );
        let d = try_send(&g, &send("wa", 3), t(2, 12), Purpose::Service).await;
        assert!(
            matches!(d, GateDecision::Defer { until, .. } if until == t(3, 10)),
            "{d:?}"
        );
        // People already reached in the window do not count again.
        assert_eq!(
            try_send(&g, &send("wa", 1), t(2, 13), Purpose::Service).await,
            GateDecision::Allow
        );
        let mut signal = messaging_core::ChannelSignal::new(
            ChannelKind::WhatsApp,
            t(2, 13),
            Signal::Tier {
                limit: None,
                name: None,
            },
        );
        signal.channel_id = Some(wa.clone());
        let tier = Event::Signal(signal);
        g.observe_event(&tier).await.unwrap();
        assert_eq!(g.daily_unique_limit(&wa), None);
        assert_eq!(
            try_send(&g, &send("wa", 3), t(2, 14), Purpose::Service).await,
            GateDecision::Allow
        );
    }

    #[tokio::test]
    async fn conversation_replies_are_not_capped() {
        let g = Governor::new(GovernorConfig {
            new_recipients_per_day: Some(0),
            ..GovernorConfig::default()
        });
        assert_eq!(
            try_send(&g, &send("wa", 1), t(2, 10), Purpose::Conversation).await,
            GateDecision::Allow
        );
        assert!(matches!(
            try_send(&g, &send("wa", 2), t(2, 10), Purpose::Service).await,
            GateDecision::Defer { .. }
        ));
    }

    #[derive(Debug)]
    struct Broken;

    #[async_trait]
    impl SenderCounters for Broken {
        async fn record_send(&self, _: &SendRecord) -> Result<(), StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn window(
            &self,
            _: &ChannelId,
            _: DateTime<Utc>,
        ) -> Result<WindowCounts, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn known(&self, _: &ChannelId, _: &[String]) -> Result<bool, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn sent_since(
            &self,
            _: &ChannelId,
            _: &[String],
            _: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn marketing_since(
            &self,
            _: &[String],
            _: DateTime<Utc>,
        ) -> Result<Vec<DateTime<Utc>>, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn record_inbound(
            &self,
            _: &ChannelId,
            _: &str,
            _: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn replies_since(&self, _: &ChannelId, _: DateTime<Utc>) -> Result<u64, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn connected_at(&self, _: &ChannelId) -> Result<Option<DateTime<Utc>>, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn set_connected_at(
            &self,
            _: &ChannelId,
            _: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            Err(StoreError::Backend("down".into()))
        }
    }

    #[tokio::test]
    async fn counter_failure_defers_never_allows() {
        let g = Governor::with_counters(GovernorConfig::default(), Broken);
        let d = try_send(&g, &send("wa", 1), t(2, 10), Purpose::Service).await;
        assert!(
            matches!(&d, GateDecision::Defer { until, reason } if *until == t(2, 10) + Duration::minutes(1) && reason.contains("down")),
            "{d:?}"
        );
    }
}
