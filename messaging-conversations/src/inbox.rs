//! The unified inbox: every inbound message from every channel in one stream, resolved to a
//! contact where known, threaded per contact across channels, answered on the channel it came
//! from.
//!
//! For each inbound message, [`Inbox::handle_event`]:
//! 1. drops a repeat of a message already seen (same channel and provider message id);
//! 2. records it in the [`WindowStore`] when it came over WhatsApp, which opens or extends the
//!    24-hour window the WhatsApp adapter reads to choose free text;
//! 3. hands it to its [sinks](InboxBuilder::sink) (the cascade engine takes it as "replied"
//!    evidence by address, and again by contact id once resolved);
//! 4. runs the [`Linker`] for Telegram and Max senders (prompt, shared contact, deep link);
//! 5. resolves the sender: by the identity link of its address, else (WhatsApp, SMS) by phone
//!    through the identity store and the [`ContactDirectory`];
//! 6. acts on stop and start words (`СТОП`, `STOP`, `ОТПИСАТЬСЯ`, `UNSUBSCRIBE`, ...; `СТАРТ`):
//!    records the opt-out or opt-in in the [`OptOutStore`] under the sender's address keys and,
//!    once resolved, their contact key, so that it holds for every channel of the person. Give
//!    the sender governor the same store: its gate then stops sends the inbox's record forbids
//!    (see [`messaging_core::consent`]);
//! 7. stores it in its thread and publishes it to [`Inbox::subscribe`]rs.
//!
//! What the person did decides the rest ([`InboundAction`]): only a new message opens the
//! WhatsApp window, runs the linker and tells the sinks a contact replied. An edit replaces the
//! text of the message it names in the thread (and sets `edited_at`), a deletion sets
//! `deleted_at`, a reaction sets `reaction` on the message reacted to (ours or theirs), each
//! published again to subscribers; when that message is not in the thread, the change is stored
//! as its own entry so that no word is lost. An echo of the business's own message (WhatsApp
//! Business app) is stored as an outbound message. Stop and start words are read in new
//! messages and edits only.
//!
//! Channel signals update identity links (a block marks the link inactive, an unblock
//! re-activates it), provider opt-out signals are recorded in the [`OptOutStore`], and all go to
//! the sinks, like delivery reports.
//! Sink, linker and opt-out failures are logged and do not stop the message from
//! reaching the inbox; store failures are returned.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::identity::{ContactDirectory, IdentityStore, Link, LinkOutcome, Linker, Provenance};

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod conformance;
use messaging_core::ChannelError;
use messaging_core::Content;
use messaging_core::Phone;
use messaging_core::StoreError;
use messaging_core::consent::{
    DEFAULT_START_WORDS, DEFAULT_STOP_WORDS, OptOutStore, address_keys, contact_key, is_stop_word,
};
use messaging_core::sink::{EventSink, SinkError, Sinks};
use messaging_core::window::{WHATSAPP_WINDOW, WindowStore, whatsapp_window_key};
use messaging_core::{Address, ChannelId, ChannelKind, ContactId, ProviderMessageId, Purpose};
use messaging_core::{Clock, SystemClock};
use messaging_core::{DynChannel, OutboundMessage, SendReceipt};
use messaging_core::{Event, InboundAction, InboundMessage, Signal};

/// The phone behind a WhatsApp or phone address.
fn phone_of(address: &Address) -> Option<Phone> {
    match address {
        Address::Phone(p) => Some(p.clone()),
        Address::WhatsApp(w) => {
            let w = w.trim();
            Phone::parse(&format!("+{}", w.strip_prefix('+').unwrap_or(w))).ok()
        }
        _ => None,
    }
}

/// A conversation: every message of one contact across channels, or of one unknown address.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ThreadId(Arc<str>);

impl ThreadId {
    /// The thread of a contact (`contact:<id>`).
    pub fn contact(contact: &ContactId) -> Self {
        ThreadId(Arc::from(format!("contact:{contact}")))
    }
    /// The thread of a sender not (yet) resolved to a contact (`address:<key>`).
    pub fn address(address: &Address) -> Self {
        ThreadId(Arc::from(format!("address:{}", address.key())))
    }
    /// A thread id read back from a store.
    pub fn from_raw(s: impl AsRef<str>) -> Self {
        ThreadId(Arc::from(s.as_ref()))
    }
    /// The string form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThreadId({:?})", &*self.0)
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the person.
    In,
    /// To the person (an operator's reply).
    Out,
}

/// One message of a thread. Plain data, so a store can build it from a row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxMessage {
    /// A unique id given by the inbox.
    pub id: String,
    /// The thread it belongs to.
    pub thread: ThreadId,
    /// The contact, when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<ContactId>,
    /// In or out.
    pub direction: Direction,
    /// The channel kind.
    pub channel: ChannelKind,
    /// The configured channel, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<ChannelId>,
    /// The person's address on that channel (where a reply goes).
    pub address: Address,
    /// The text, if any.
    pub text: Option<String>,
    /// When it was written (inbound) or sent (outbound).
    pub at: DateTime<Utc>,
    /// The provider's id of the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<ProviderMessageId>,
    /// Whether this inbound message was a stop word that opted the person out.
    #[serde(default)]
    pub opt_out: bool,
    /// The inbound message as the adapter gave it (shared contact, start payload, button).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<InboundMessage>,
    /// When the person last edited it (the `text` is the edited one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    /// When the person deleted it ("delete for everyone"). The text is kept for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// The person's current reaction to it (an emoji), ours or theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<String>,
}

/// Messages per thread.
///
/// Object safe; plain data in and out so a SQL backend can implement it. Implementations must
/// behave like [`MemoryInboxStore`]; `conformance` (feature `testkit`) checks that.
#[async_trait]
pub trait InboxStore: Send + Sync + fmt::Debug + 'static {
    /// Appends a message to its thread.
    async fn append(&self, message: &InboxMessage) -> Result<(), StoreError>;

    /// The messages of a thread, oldest first (equal times in the order they were appended).
    async fn thread(&self, thread: &ThreadId) -> Result<Vec<InboxMessage>, StoreError>;

    /// Every thread, most recently active first (equal times by thread id, descending).
    async fn threads(&self) -> Result<Vec<ThreadId>, StoreError>;

    /// Moves every message of `from` into `to`, setting their thread and contact (a sender was
    /// just linked: their earlier messages join the contact's thread), after `to`'s messages of
    /// equal time. Returns how many moved; concurrent calls move each message once.
    async fn rethread(
        &self,
        from: &ThreadId,
        to: &ThreadId,
        contact: &ContactId,
    ) -> Result<usize, StoreError>;

    /// Deletes a thread and its messages (erasure). Returns how many messages were deleted.
    async fn erase_thread(&self, thread: &ThreadId) -> Result<usize, StoreError>;

    /// Replaces the stored message of `message.thread` with the same `id` (an edit, a
    /// deletion or a reaction changed it), keeping its place. Returns whether it was found.
    ///
    /// The default finds nothing: the inbox then appends the change as its own entry, so no
    /// word is lost. The stores of this workspace implement it.
    async fn replace(&self, message: &InboxMessage) -> Result<bool, StoreError> {
        let _ = message;
        Ok(false)
    }
}

/// Threads in process memory.
#[derive(Debug, Default)]
pub struct MemoryInboxStore {
    threads: Mutex<HashMap<ThreadId, Vec<InboxMessage>>>,
}

impl MemoryInboxStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThreadId, Vec<InboxMessage>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl InboxStore for MemoryInboxStore {
    async fn append(&self, message: &InboxMessage) -> Result<(), StoreError> {
        let mut threads = self.lock();
        let v = threads.entry(message.thread.clone()).or_default();
        // Keep time order even when a late webhook brings an older message.
        let pos = v.partition_point(|m| m.at <= message.at);
        v.insert(pos, message.clone());
        Ok(())
    }

    async fn thread(&self, thread: &ThreadId) -> Result<Vec<InboxMessage>, StoreError> {
        Ok(self.lock().get(thread).cloned().unwrap_or_default())
    }

    async fn threads(&self) -> Result<Vec<ThreadId>, StoreError> {
        let threads = self.lock();
        let mut v: Vec<(DateTime<Utc>, ThreadId)> = threads
            .iter()
            .filter_map(|(t, m)| m.last().map(|last| (last.at, t.clone())))
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        Ok(v.into_iter().map(|(_, t)| t).collect())
    }

    async fn rethread(
        &self,
        from: &ThreadId,
        to: &ThreadId,
        contact: &ContactId,
    ) -> Result<usize, StoreError> {
        if from == to {
            return Ok(0);
        }
        let mut threads = self.lock();
        let Some(moved) = threads.remove(from) else {
            return Ok(0);
        };
        let n = moved.len();
        let dest = threads.entry(to.clone()).or_default();
        for mut m in moved {
            m.thread = to.clone();
            m.contact = Some(contact.clone());
            let pos = dest.partition_point(|x| x.at <= m.at);
            dest.insert(pos, m);
        }
        Ok(n)
    }

    async fn erase_thread(&self, thread: &ThreadId) -> Result<usize, StoreError> {
        Ok(self.lock().remove(thread).map_or(0, |v| v.len()))
    }

    async fn replace(&self, message: &InboxMessage) -> Result<bool, StoreError> {
        let mut threads = self.lock();
        let Some(m) = threads
            .get_mut(&message.thread)
            .and_then(|v| v.iter_mut().find(|m| m.id == message.id))
        else {
            return Ok(false);
        };
        *m = message.clone();
        Ok(true)
    }
}

/// The keys a statement of `address` (and its resolved `contact`) is recorded under.
fn consent_keys(address: &Address, contact: Option<&ContactId>) -> Vec<String> {
    let mut keys = address_keys(address);
    keys.extend(contact.map(contact_key));
    keys
}

/// A bounded set of recently seen keys: the oldest is forgotten past the capacity.
#[derive(Debug)]
pub(crate) struct RecentSet {
    order: VecDeque<String>,
    set: HashSet<String>,
    capacity: usize,
}

impl RecentSet {
    pub(crate) fn new(capacity: usize) -> Self {
        RecentSet {
            order: VecDeque::new(),
            set: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Inserts a key; `false` if it was there already.
    pub(crate) fn insert(&mut self, key: String) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(key.clone());
        self.set.insert(key);
        true
    }

    /// Whether a key is remembered.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    /// Forgets a key (its processing failed; a retry must not be dropped).
    pub(crate) fn remove(&mut self, key: &str) {
        if self.set.remove(key) {
            self.order.retain(|k| k != key);
        }
    }
}

/// Why a reply was not sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// No configured channel matches the message's channel.
    #[error("no channel {0} configured to reply on")]
    NoChannel(String),
    /// The WhatsApp 24-hour window is closed and the content has no template.
    #[error(
        "the WhatsApp window with this person is closed (last message {last_inbound:?}); send a template"
    )]
    WindowClosed {
        /// The person's last message on this channel, if any.
        last_inbound: Option<DateTime<Utc>>,
    },
    /// The channel refused or failed.
    #[error(transparent)]
    Send(#[from] ChannelError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A failure while taking in an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// A store failed; the event was not taken in (a retry will be processed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`Inbox::erase_contact`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erasure {
    /// Identity links removed.
    pub links: usize,
    /// Stored messages removed.
    pub messages: usize,
}

/// Builds an [`Inbox`].
pub struct InboxBuilder {
    clock: Arc<dyn Clock>,
    identity: Option<Arc<dyn IdentityStore>>,
    directory: Option<Arc<dyn ContactDirectory>>,
    store: Arc<dyn InboxStore>,
    windows: Option<Arc<dyn WindowStore>>,
    sinks: Sinks,
    linker: Option<Arc<Linker>>,
    channels: Vec<DynChannel>,
    opt_outs: Option<Arc<dyn OptOutStore>>,
    stop_words: Vec<String>,
    start_words: Vec<String>,
    dedupe_capacity: usize,
    stream_capacity: usize,
}

impl fmt::Debug for InboxBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxBuilder")
            .field(
                "channels",
                &self.channels.iter().map(|c| c.id()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl InboxBuilder {
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Resolves senders through these links (default: the linker's store, else none).
    pub fn identity(mut self, store: Arc<dyn IdentityStore>) -> Self {
        self.identity = Some(store);
        self
    }
    /// Resolves WhatsApp and SMS senders by phone (default: the linker's directory, else none).
    pub fn directory(mut self, directory: Arc<dyn ContactDirectory>) -> Self {
        self.directory = Some(directory);
        self
    }
    /// Keeps threads here (default: a [`MemoryInboxStore`]).
    pub fn store(mut self, store: Arc<dyn InboxStore>) -> Self {
        self.store = store;
        self
    }
    /// Records WhatsApp inbound messages here; give the WhatsApp adapter the same store.
    pub fn window_store(mut self, windows: Arc<dyn WindowStore>) -> Self {
        self.windows = Some(windows);
        self
    }
    /// Hands every event on to `sink` too, after the inbox has recorded the WhatsApp window:
    /// the cascade engine (replies end cascades; once a sender is resolved, it is also told
    /// through [`EventSink::contact_replied`]), the sender governor (replies and opt-outs count),
    /// or your own. Sinks are called in the order they were added; a failing sink is logged and
    /// does not stop the message from reaching the inbox.
    pub fn sink(mut self, sink: impl EventSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }
    /// Runs the linking flow for Telegram and Max senders.
    pub fn linker(mut self, linker: Arc<Linker>) -> Self {
        self.linker = Some(linker);
        self
    }
    /// A channel replies can go out on.
    pub fn channel(mut self, channel: DynChannel) -> Self {
        self.channels.push(channel);
        self
    }
    /// Records stop-word opt-outs, start-word opt-ins and provider opt-out signals here: the
    /// family's one opt-out record, which the sender governor and the engine's gates read
    /// (default: none, the words are only flagged on the message).
    pub fn opt_out_store(mut self, store: Arc<dyn OptOutStore>) -> Self {
        self.opt_outs = Some(store);
        self
    }
    /// Replaces the stop words (default [`DEFAULT_STOP_WORDS`]).
    pub fn stop_words<I, S>(mut self, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.stop_words = words.into_iter().map(Into::into).collect();
        self
    }
    /// Replaces the words that undo an opt-out (default [`DEFAULT_START_WORDS`]).
    pub fn start_words<I, S>(mut self, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.start_words = words.into_iter().map(Into::into).collect();
        self
    }
    /// How many (channel, provider message id) pairs are remembered to drop repeats
    /// (default 100 000).
    pub fn dedupe_capacity(mut self, n: usize) -> Self {
        self.dedupe_capacity = n;
        self
    }
    /// How far a subscriber may fall behind before it misses messages (default 1024).
    pub fn stream_capacity(mut self, n: usize) -> Self {
        self.stream_capacity = n.max(1);
        self
    }

    /// The inbox.
    pub fn build(self) -> Inbox {
        let identity = self
            .identity
            .or_else(|| self.linker.as_ref().map(|l| l.identity().clone()));
        let directory = self
            .directory
            .or_else(|| self.linker.as_ref().map(|l| l.directory().clone()));
        let (stream, _) = broadcast::channel(self.stream_capacity);
        Inbox {
            inner: Arc::new(Inner {
                clock: self.clock,
                identity,
                directory,
                store: self.store,
                windows: self.windows,
                sinks: self.sinks,
                linker: self.linker,
                channels: self.channels,
                opt_outs: self.opt_outs,
                stop_words: self.stop_words,
                start_words: self.start_words,
                seen: Mutex::new(RecentSet::new(self.dedupe_capacity)),
                stream,
                seq: AtomicU64::new(0),
            }),
        }
    }
}

/// The unified inbox. Cheap to clone; clones share everything. See the [module docs](crate::inbox).
///
/// ```
/// use std::sync::Arc;
/// use messaging_conversations::inbox::{Inbox, ThreadId};
/// use messaging_conversations::identity::{MemoryDirectory, MemoryIdentityStore};
/// use messaging_core::testkit::StubChannel;
/// use messaging_core::*;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let directory = Arc::new(MemoryDirectory::new());
/// directory.insert("patient-7", "Анна", Phone::parse("+79123456789").unwrap());
/// let sms = Arc::new(StubChannel::new("sms", ChannelKind::Sms));
/// let inbox = Inbox::builder()
///     .identity(Arc::new(MemoryIdentityStore::new()))
///     .directory(directory)
///     .channel(sms.clone())
///     .build();
/// let mut stream = inbox.subscribe();
///
/// let from = Address::Phone(Phone::parse("+79123456789").unwrap());
/// let msg = InboundMessage::new(ChannelKind::Sms, from, Some("Да, приду".into()), chrono::Utc::now());
/// inbox.handle_event(&Event::Inbound(msg)).await.unwrap();
///
/// let got = stream.recv().await.unwrap();
/// assert_eq!(got.thread, ThreadId::contact(&ContactId::new("patient-7")));
/// inbox.reply(&got, Content::text("Ждём вас!")).await.unwrap();
/// assert_eq!(sms.sent().len(), 1);
/// # });
/// ```
#[derive(Clone)]
pub struct Inbox {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    identity: Option<Arc<dyn IdentityStore>>,
    directory: Option<Arc<dyn ContactDirectory>>,
    store: Arc<dyn InboxStore>,
    windows: Option<Arc<dyn WindowStore>>,
    sinks: Sinks,
    linker: Option<Arc<Linker>>,
    channels: Vec<DynChannel>,
    opt_outs: Option<Arc<dyn OptOutStore>>,
    stop_words: Vec<String>,
    start_words: Vec<String>,
    seen: Mutex<RecentSet>,
    stream: broadcast::Sender<InboxMessage>,
    seq: AtomicU64,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Inbox")
            .field(
                "channels",
                &i.channels.iter().map(|c| c.id()).collect::<Vec<_>>(),
            )
            .field("sinks", &i.sinks.len())
            .field("linker", &i.linker.is_some())
            .finish_non_exhaustive()
    }
}

impl Inbox {
    /// Starts building an inbox.
    pub fn builder() -> InboxBuilder {
        InboxBuilder {
            clock: Arc::new(SystemClock),
            identity: None,
            directory: None,
            store: Arc::new(MemoryInboxStore::new()),
            windows: None,
            sinks: Sinks::new(),
            linker: None,
            channels: Vec::new(),
            opt_outs: None,
            stop_words: DEFAULT_STOP_WORDS.iter().map(|s| (*s).to_owned()).collect(),
            start_words: DEFAULT_START_WORDS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            dedupe_capacity: 100_000,
            stream_capacity: 1024,
        }
    }

    /// The stream of inbound messages from every channel. A subscriber that falls behind by
    /// more than the stream capacity misses messages (`Lagged`); the store keeps them all.
    pub fn subscribe(&self) -> broadcast::Receiver<InboxMessage> {
        self.inner.stream.subscribe()
    }

    /// The messages of a thread, oldest first.
    pub async fn thread(&self, thread: &ThreadId) -> Result<Vec<InboxMessage>, StoreError> {
        self.inner.store.thread(thread).await
    }

    /// Every thread, most recently active first.
    pub async fn threads(&self) -> Result<Vec<ThreadId>, StoreError> {
        self.inner.store.threads().await
    }

    /// The linker, if configured.
    pub fn linker(&self) -> Option<&Arc<Linker>> {
        self.inner.linker.as_ref()
    }

    /// Takes in one event. Returns the inbox message an inbound event became, or `None` for a
    /// repeat or another kind of event.
    pub async fn handle_event(&self, event: &Event) -> Result<Option<InboxMessage>, InboxError> {
        match event {
            Event::Inbound(m) => self.handle_inbound(event, m).await,
            Event::Signal(s) => {
                self.to_sinks(event).await;
                if let Some(identity) = &self.inner.identity {
                    let now = self.inner.clock.now();
                    match &s.signal {
                        Signal::Blocked { address, .. } => {
                            identity.set_active(address, false, now).await?;
                        }
                        Signal::Unblocked { address, .. } => {
                            identity.set_active(address, true, now).await?;
                        }
                        _ => {}
                    }
                }
                if let (
                    Signal::OptOut {
                        address, purpose, ..
                    },
                    Some(store),
                ) = (&s.signal, &self.inner.opt_outs)
                {
                    let contact = self.resolve_quietly(address).await;
                    store
                        .opt_out(&consent_keys(address, contact.as_ref()), *purpose, s.at)
                        .await?;
                }
                if let (
                    Signal::OptIn {
                        address, purpose, ..
                    },
                    Some(store),
                ) = (&s.signal, &self.inner.opt_outs)
                {
                    let contact = self.resolve_quietly(address).await;
                    store
                        .opt_in(&consent_keys(address, contact.as_ref()), *purpose, s.at)
                        .await?;
                }
                Ok(None)
            }
            _ => {
                self.to_sinks(event).await;
                Ok(None)
            }
        }
    }

    async fn to_sinks(&self, event: &Event) {
        // `Sinks` logs each failure itself.
        let _ = self.inner.sinks.handle(event).await;
    }

    fn dedupe_key(m: &InboundMessage) -> Option<String> {
        let channel = m
            .channel_id
            .as_ref()
            .map_or_else(|| m.channel.as_str().to_owned(), |c| c.to_string());
        if m.action.is_message() {
            let pmid = m.provider_message_id.as_ref()?;
            return Some(format!("{channel}|{pmid}"));
        }
        // An edit keeps the message's id on Telegram and Max, and a message may be edited or
        // reacted to many times: the action, its target and its time tell repeats apart.
        let target = m.action.target().or(m.provider_message_id.as_ref())?;
        Some(format!(
            "{channel}|{}:{target}|{}",
            m.action.name(),
            m.at.timestamp_micros()
        ))
    }

    async fn handle_inbound(
        &self,
        event: &Event,
        m: &InboundMessage,
    ) -> Result<Option<InboxMessage>, InboxError> {
        let key = Self::dedupe_key(m);
        if let Some(k) = &key
            && !self.seen().insert(k.clone())
        {
            return Ok(None);
        }
        match self.take_in(event, m).await {
            Ok(msg) => Ok(Some(msg)),
            Err(e) => {
                // Not taken in: a redelivery must be processed.
                if let Some(k) = &key {
                    self.seen().remove(k);
                }
                Err(e)
            }
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, RecentSet> {
        self.inner.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn take_in(&self, event: &Event, m: &InboundMessage) -> Result<InboxMessage, InboxError> {
        let inner = &self.inner;
        // Only the person writing opens the WhatsApp window: not an edit, a reaction or an
        // echo of the business's own message.
        if m.channel == ChannelKind::WhatsApp && m.counts_as_reply() {
            self.record_window(m).await?;
        }
        self.to_sinks(event).await;

        let mut newly_linked = false;
        let mut contact = None;
        if let Some(linker) = inner.linker.as_ref().filter(|_| m.action.is_message()) {
            match linker.on_inbound(m).await {
                Ok(LinkOutcome::Known(link)) => contact = Some(link.contact),
                Ok(LinkOutcome::Linked(link)) => {
                    contact = Some(link.contact);
                    newly_linked = true;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, address = %m.address.key(), "linking flow failed")
                }
            }
        }
        if contact.is_none() {
            contact = self.resolve(m).await?;
        }
        let thread = match &contact {
            Some(c) => ThreadId::contact(c),
            None => ThreadId::address(&m.address),
        };
        if let Some(c) = &contact {
            if newly_linked {
                inner
                    .store
                    .rethread(&ThreadId::address(&m.address), &thread, c)
                    .await?;
            }
            if m.counts_as_reply() {
                let _ = inner.sinks.contact_replied(c, m.channel, m.at).await;
            }
        }

        let opt_out = if m.carries_words() {
            self.opt_out(m, contact.as_ref()).await
        } else {
            false
        };
        if let Some(amended) = self.amend(&thread, m, opt_out).await? {
            let _ = inner.stream.send(amended.clone());
            return Ok(amended);
        }
        let direction = match m.action {
            InboundAction::Echo => Direction::Out,
            _ => Direction::In,
        };
        let msg = InboxMessage {
            id: self.next_id(m.at),
            thread,
            contact,
            direction,
            channel: m.channel,
            channel_id: m.channel_id.clone(),
            address: m.address.clone(),
            text: m.text.clone(),
            at: m.at,
            provider_message_id: m.provider_message_id.clone(),
            opt_out,
            inbound: Some(m.clone()),
            edited_at: None,
            deleted_at: None,
            reaction: None,
        };
        inner.store.append(&msg).await?;
        // No subscriber is not an error: the store has the message.
        let _ = inner.stream.send(msg.clone());
        Ok(msg)
    }

    /// Applies an edit, a deletion or a reaction to the message of `thread` it is about (same
    /// channel kind and provider message id): the edited text, the time of deletion, the
    /// reaction. Returns the changed message; `None` when there is nothing to apply or the
    /// message is not in the thread (the change is then stored as its own entry).
    async fn amend(
        &self,
        thread: &ThreadId,
        m: &InboundMessage,
        opt_out: bool,
    ) -> Result<Option<InboxMessage>, StoreError> {
        let Some(target) = m.action.target() else {
            return Ok(None);
        };
        let store = &self.inner.store;
        let found = store
            .thread(thread)
            .await?
            .into_iter()
            .rev()
            .find(|x| x.channel == m.channel && x.provider_message_id.as_ref() == Some(target));
        let Some(mut msg) = found else {
            tracing::debug!(
                action = m.action.name(),
                "the message an inbound change is about is not in its thread"
            );
            return Ok(None);
        };
        match &m.action {
            InboundAction::Edit { .. } => {
                msg.text = m.text.clone();
                msg.edited_at = Some(m.at);
                msg.opt_out |= opt_out;
                if let Some(inbound) = msg.inbound.as_mut() {
                    inbound.text = m.text.clone();
                }
            }
            InboundAction::Deletion { .. } => msg.deleted_at = Some(m.at),
            InboundAction::Reaction { emoji, .. } => msg.reaction = emoji.clone(),
            _ => return Ok(None),
        }
        Ok(store.replace(&msg).await?.then_some(msg))
    }

    /// Records a stop or start word; returns whether it was a stop word.
    async fn opt_out(&self, m: &InboundMessage, contact: Option<&ContactId>) -> bool {
        let inner = &self.inner;
        let Some(text) = m.text.as_deref().or(m.button_payload.as_deref()) else {
            return false;
        };
        let stop = is_stop_word(text, &inner.stop_words);
        let start = !stop && is_stop_word(text, &inner.start_words);
        if let Some(store) = &inner.opt_outs
            && (stop || start)
        {
            let keys = consent_keys(&m.address, contact);
            let recorded = if stop {
                store.opt_out(&keys, None, m.at).await
            } else {
                store.opt_in(&keys, None, m.at).await
            };
            if let Err(e) = recorded {
                tracing::warn!(error = %e, stop, "could not record an opt-out or opt-in");
            }
        }
        stop
    }

    async fn record_window(&self, m: &InboundMessage) -> Result<(), StoreError> {
        let (Some(windows), Some(key)) = (&self.inner.windows, whatsapp_window_key(&m.address))
        else {
            return Ok(());
        };
        let ids: Vec<ChannelId> = match &m.channel_id {
            Some(id) => vec![id.clone()],
            None => {
                // The handler did not say which number: the window is open on each we have.
                let ids: Vec<ChannelId> = self
                    .inner
                    .channels
                    .iter()
                    .filter(|c| c.kind() == ChannelKind::WhatsApp)
                    .map(|c| c.id().clone())
                    .collect();
                if ids.is_empty() {
                    vec![ChannelId::new(ChannelKind::WhatsApp.as_str())]
                } else {
                    ids
                }
            }
        };
        for id in ids {
            windows.record_inbound(&id, &key, m.at).await?;
        }
        Ok(())
    }

    /// The contact of a sender by its identity link, else (WhatsApp, SMS) by phone.
    async fn resolve(&self, m: &InboundMessage) -> Result<Option<ContactId>, StoreError> {
        let inner = &self.inner;
        if let Some(identity) = &inner.identity
            && let Some(link) = identity.by_address(&m.address).await?
        {
            return Ok(Some(link.contact));
        }
        if !m.channel.facts().reached_by_phone {
            return Ok(None);
        }
        let Some(phone) = phone_of(&m.address) else {
            return Ok(None);
        };
        let mut found = None;
        if let Some(identity) = &inner.identity {
            let links = identity.by_phone(&phone).await?;
            found = links
                .iter()
                .find(|l| l.active)
                .or(links.first())
                .map(|l| l.contact.clone());
        }
        if found.is_none()
            && let Some(directory) = &inner.directory
        {
            found = directory.find_by_phone(&phone).await?.map(|e| e.contact);
        }
        if let (Some(contact), Some(identity), ChannelKind::WhatsApp) =
            (&found, &inner.identity, m.channel)
        {
            // WhatsApp vouches for the number: remember the link so the next lookup is direct.
            let link = Link::new(
                m.address.clone(),
                contact.clone(),
                Provenance::WhatsAppPhone,
                inner.clock.now(),
            )
            .with_phone(phone);
            identity.link(&link).await?;
        }
        Ok(found)
    }

    async fn resolve_quietly(&self, address: &Address) -> Option<ContactId> {
        let identity = self.inner.identity.as_ref()?;
        identity
            .by_address(address)
            .await
            .ok()
            .flatten()
            .map(|l| l.contact)
    }

    fn next_id(&self, at: DateTime<Utc>) -> String {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{n:x}", at.timestamp_micros())
    }

    fn channel_for(&self, id: Option<&ChannelId>, kind: ChannelKind) -> Option<&DynChannel> {
        let channels = &self.inner.channels;
        match id {
            Some(id) => channels.iter().find(|c| c.id() == id),
            None => channels.iter().find(|c| c.kind() == kind),
        }
    }

    /// Answers a message on the channel it came from (the same channel id, to its address).
    ///
    /// On WhatsApp the 24-hour window is checked first: when it is closed, content without a
    /// template is refused with [`ReplyError::WindowClosed`] (nothing is sent), and content with
    /// one is sent with `force_template`. The reply is stored in the message's thread.
    pub async fn reply(
        &self,
        message: &InboxMessage,
        content: Content,
    ) -> Result<SendReceipt, ReplyError> {
        let inner = &self.inner;
        let channel = self
            .channel_for(message.channel_id.as_ref(), message.channel)
            .ok_or_else(|| {
                ReplyError::NoChannel(
                    message
                        .channel_id
                        .as_ref()
                        .map_or_else(|| message.channel.to_string(), ToString::to_string),
                )
            })?
            .clone();
        let mut out = OutboundMessage::new(message.address.clone(), content, Purpose::Conversation);
        if channel.kind() == ChannelKind::WhatsApp {
            let last = match (&inner.windows, whatsapp_window_key(&message.address)) {
                (Some(w), Some(key)) => w.last_inbound(channel.id(), &key).await?,
                _ => None,
            };
            let now = inner.clock.now();
            let open = last.is_some_and(|t| now < t + WHATSAPP_WINDOW);
            if !open {
                if out.content.template.is_none() {
                    return Err(ReplyError::WindowClosed { last_inbound: last });
                }
                out = out.force_template(true);
            }
        }
        let receipt = channel.send(&out).await?;
        let sent = InboxMessage {
            id: self.next_id(receipt.accepted_at),
            thread: message.thread.clone(),
            contact: message.contact.clone(),
            direction: Direction::Out,
            channel: channel.kind(),
            channel_id: Some(channel.id().clone()),
            address: message.address.clone(),
            text: Some(out.content.text_for(channel.kind()).to_owned()),
            at: inner.clock.now(),
            provider_message_id: Some(receipt.provider_message_id.clone()),
            opt_out: false,
            inbound: None,
            edited_at: None,
            deleted_at: None,
            reaction: None,
        };
        inner.store.append(&sent).await?;
        Ok(receipt)
    }

    /// Erases a person on request: every identity link of the contact and every stored message
    /// of theirs (their contact thread and the threads of their linked addresses).
    pub async fn erase_contact(&self, contact: &ContactId) -> Result<Erasure, StoreError> {
        let inner = &self.inner;
        let links = match &inner.identity {
            Some(identity) => identity.erase_contact(contact).await?,
            None => Vec::new(),
        };
        let mut messages = inner
            .store
            .erase_thread(&ThreadId::contact(contact))
            .await?;
        for link in &links {
            messages += inner
                .store
                .erase_thread(&ThreadId::address(&link.address))
                .await?;
            if let Some(linker) = &inner.linker {
                linker.forget(&link.address);
            }
        }
        Ok(Erasure {
            links: links.len(),
            messages,
        })
    }

    /// Erases an unresolved sender: their link, if any, and their address thread.
    pub async fn erase_address(&self, address: &Address) -> Result<Erasure, StoreError> {
        let inner = &self.inner;
        let link = match &inner.identity {
            Some(identity) => identity.unlink(address).await?,
            None => None,
        };
        if let Some(linker) = &inner.linker {
            linker.forget(address);
        }
        let messages = inner
            .store
            .erase_thread(&ThreadId::address(address))
            .await?;
        Ok(Erasure {
            links: usize::from(link.is_some()),
            messages,
        })
    }
}

#[async_trait]
impl EventSink for Inbox {
    async fn handle(&self, event: &Event) -> Result<(), SinkError> {
        self.handle_event(event)
            .await
            .map(|_| ())
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_set_is_bounded_and_forgets_oldest() {
        let mut s = RecentSet::new(2);
        assert!(s.insert("a".into()));
        assert!(!s.insert("a".into()));
        assert!(s.insert("b".into()));
        assert!(s.insert("c".into()));
        // "a" fell out.
        assert!(s.insert("a".into()));
        assert_eq!(s.order.len(), 2);
        s.remove("a");
        assert!(s.insert("a".into()));
    }
}
