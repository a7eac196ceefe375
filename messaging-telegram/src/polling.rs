//! Long polling with `getUpdates`, a stored offset and backoff.
//!
//! Telegram keeps an update until a later `getUpdates` call passes an `offset` above its
//! `update_id`. The poller hands a batch's events to your handler first and only then stores the
//! next offset, so after a crash or restart nothing is lost; an update is handed over twice only
//! when the process dies between the handler's success and the offset being stored.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use messaging_core::task::catch_panic;
use messaging_core::{ChannelError, ErrorKind, Event};
use serde_json::json;

use crate::channel::TelegramChannel;
use crate::update::parse_updates_response_with_clock;

/// A storage failure of an [`OffsetStore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("offset store: {0}")]
pub struct OffsetStoreError(pub String);

/// Where the next `getUpdates` offset is kept between runs.
#[async_trait]
pub trait OffsetStore: Send + Sync + fmt::Debug {
    /// The offset to poll from, if one was stored.
    async fn load(&self) -> Result<Option<i64>, OffsetStoreError>;
    /// Stores the offset to poll from next (the last handed-over `update_id` plus one).
    async fn save(&self, offset: i64) -> Result<(), OffsetStoreError>;
}

#[async_trait]
impl<S: OffsetStore + ?Sized> OffsetStore for Arc<S> {
    async fn load(&self) -> Result<Option<i64>, OffsetStoreError> {
        (**self).load().await
    }
    async fn save(&self, offset: i64) -> Result<(), OffsetStoreError> {
        (**self).save(offset).await
    }
}

/// An in-memory [`OffsetStore`]. Clones share the value, so a test can "restart" a poller.
///
/// ```
/// # tokio_test_block_on(async {
/// use messaging_telegram::{MemoryOffsetStore, OffsetStore};
/// let store = MemoryOffsetStore::default();
/// assert_eq!(store.load().await.unwrap(), None);
/// store.clone().save(43).await.unwrap();
/// assert_eq!(store.load().await.unwrap(), Some(43));
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryOffsetStore(Arc<Mutex<Option<i64>>>);

#[async_trait]
impl OffsetStore for MemoryOffsetStore {
    async fn load(&self) -> Result<Option<i64>, OffsetStoreError> {
        self.0
            .lock()
            .map(|g| *g)
            .map_err(|_| OffsetStoreError("poisoned lock".into()))
    }
    async fn save(&self, offset: i64) -> Result<(), OffsetStoreError> {
        let mut g = self
            .0
            .lock()
            .map_err(|_| OffsetStoreError("poisoned lock".into()))?;
        *g = Some(offset);
        Ok(())
    }
}

/// How the poller asks for updates and backs off.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollConfig {
    /// Long-poll timeout (default 30 s; the server caps it at 50 s).
    pub timeout: Duration,
    /// Updates per call, 1-100 (default 100).
    pub limit: u8,
    /// Update types to receive (default: `message`, `edited_message`, `callback_query`,
    /// `my_chat_member`, `message_reaction`); empty for Telegram's default set (which leaves
    /// out reactions).
    pub allowed_updates: Vec<String>,
    /// First wait after a failure (default 1 s); doubles per failure.
    pub backoff_min: Duration,
    /// Longest wait after failures (default 60 s).
    pub backoff_max: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            timeout: Duration::from_secs(30),
            limit: 100,
            allowed_updates: [
                "message",
                "edited_message",
                "callback_query",
                "my_chat_member",
                "message_reaction",
            ]
            .map(String::from)
            .to_vec(),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

impl PollConfig {
    /// Sets the long-poll timeout (capped at 50 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t.min(Duration::from_secs(50));
        self
    }
    /// Sets the batch size (clamped to 1-100).
    pub fn limit(mut self, n: u8) -> Self {
        self.limit = n.clamp(1, 100);
        self
    }
    /// Sets the backoff bounds.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }
    /// Sets the update types to receive.
    pub fn allowed_updates<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.allowed_updates = types.into_iter().map(Into::into).collect();
        self
    }
}

/// Why a poll did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// `getUpdates` failed (network, 5xx, 409 conflict, bad token, ...).
    #[error("getUpdates failed: {0}")]
    Api(ChannelError),
    /// The answer was not a list of updates.
    #[error("getUpdates answer is malformed: {0}")]
    Malformed(String),
    /// Your handler refused the batch; it will be fetched again.
    #[error("the update handler failed: {0}")]
    Handler(String),
    /// The offset could not be loaded or stored.
    #[error(transparent)]
    Store(#[from] OffsetStoreError),
    /// Reading a batch or handing it over panicked (a bug, here or in the handler); the panic
    /// message. [`LongPoller::run`] logs it, backs off and polls again.
    #[error("polling panicked: {0}")]
    Panicked(String),
}

impl PollError {
    /// The wait Telegram asked for, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PollError::Api(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// What one `getUpdates` call brought.
struct Batch {
    events: Vec<Event>,
    next_offset: Option<i64>,
}

/// Receives updates with `getUpdates` and hands their events to a handler.
///
/// ```no_run
/// use messaging_telegram::{LongPoller, MemoryOffsetStore, TelegramChannel};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let tg = TelegramChannel::builder("tg", std::env::var("TELEGRAM_BOT_TOKEN")?).build()?;
/// let poller = LongPoller::new(tg, MemoryOffsetStore::default());
/// poller
///     .run(
///         |events| async move {
///             for e in events {
///                 println!("{}", serde_json::to_string(&e)?);
///             }
///             Ok::<_, serde_json::Error>(())
///         },
///         std::future::pending::<()>(), // or a shutdown signal
///     )
///     .await?;
/// # Ok(()) }
/// ```
pub struct LongPoller<S> {
    channel: TelegramChannel,
    store: S,
    config: PollConfig,
    offset: Option<i64>,
    loaded: bool,
}

impl<S: fmt::Debug> fmt::Debug for LongPoller<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LongPoller")
            .field("channel", &self.channel)
            .field("store", &self.store)
            .field("config", &self.config)
            .field("offset", &self.offset)
            .finish()
    }
}

impl<S: OffsetStore> LongPoller<S> {
    /// A poller for `channel`'s bot, keeping its offset in `store`.
    pub fn new(channel: TelegramChannel, store: S) -> Self {
        LongPoller {
            channel,
            store,
            config: PollConfig::default(),
            offset: None,
            loaded: false,
        }
    }

    /// Sets how to poll.
    pub fn with_config(mut self, config: PollConfig) -> Self {
        self.config = config;
        self
    }

    /// The offset the next call will use (after the first call or load).
    pub fn offset(&self) -> Option<i64> {
        self.offset
    }

    async fn fetch(&mut self) -> Result<Batch, PollError> {
        if !self.loaded {
            self.offset = self.store.load().await?;
            self.loaded = true;
        }
        let mut params = json!({
            "timeout": self.config.timeout.as_secs(),
            "limit": self.config.limit.clamp(1, 100),
        });
        if let Some(o) = self.offset {
            params["offset"] = json!(o);
        }
        if !self.config.allowed_updates.is_empty() {
            params["allowed_updates"] = json!(self.config.allowed_updates);
        }
        let timeout = self.config.timeout + Duration::from_secs(10);
        let result = self
            .channel
            .call("getUpdates", &params, timeout)
            .await
            .map_err(PollError::Api)?;
        let wrapped = json!({ "ok": true, "result": result });
        let (last, events) = parse_updates_response_with_clock(&wrapped, self.channel.clock())
            .map_err(|e| PollError::Malformed(e.to_string()))?;
        let events = events
            .into_iter()
            .map(|e| e.with_channel_id(messaging_core::Channel::id(&self.channel).clone()))
            .collect();
        Ok(Batch {
            events,
            next_offset: last.and_then(|l| l.checked_add(1)),
        })
    }

    async fn deliver<F, Fut, E>(
        &mut self,
        batch: Batch,
        handler: &mut F,
    ) -> Result<usize, PollError>
    where
        F: FnMut(Vec<Event>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        let n = batch.events.len();
        if n > 0 {
            handler(batch.events)
                .await
                .map_err(|e| PollError::Handler(e.to_string()))?;
        }
        if let Some(next) = batch.next_offset
            && self.offset.is_none_or(|o| next > o)
        {
            self.offset = Some(next);
            self.store.save(next).await?;
        }
        Ok(n)
    }

    /// One `getUpdates` call: hands the events (if any) to `handler`, then stores the next
    /// offset. Returns how many events were handed over. If the handler fails, the offset is
    /// not moved and the same updates come again.
    pub async fn poll_once<F, Fut, E>(&mut self, mut handler: F) -> Result<usize, PollError>
    where
        F: FnMut(Vec<Event>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        let batch = self.fetch().await?;
        self.deliver(batch, &mut handler).await
    }

    /// Polls until `shutdown` completes, recovering from failures with exponential backoff
    /// (Telegram's `retry_after` wins when given). Returns an error only when the channel cannot
    /// work at all (bad token: `ChannelDown`). Shutdown never interrupts a handler or a commit.
    pub async fn run<F, Fut, E>(
        mut self,
        mut handler: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), PollError>
    where
        F: FnMut(Vec<Event>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = self.config.backoff_min;
        loop {
            // A panic while reading or handing over a batch is logged and retried like any
            // failure, with backoff: it never ends the loop silently.
            let fetched = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = catch_panic(self.fetch()) => r.unwrap_or_else(|p| Err(PollError::Panicked(p.message))),
            };
            let outcome = match fetched {
                Ok(batch) => catch_panic(self.deliver(batch, &mut handler))
                    .await
                    .unwrap_or_else(|p| Err(PollError::Panicked(p.message)))
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            let err = match outcome {
                Ok(()) => {
                    backoff = self.config.backoff_min;
                    continue;
                }
                Err(PollError::Api(e)) if e.kind() == ErrorKind::ChannelDown => {
                    return Err(PollError::Api(e));
                }
                Err(e) => e,
            };
            let wait = err.retry_after().unwrap_or(backoff);
            if let PollError::Panicked(_) = err {
                tracing::error!(error = %err, wait_ms = wait.as_millis() as u64, "telegram polling panicked; backing off");
            } else {
                tracing::warn!(error = %err, wait_ms = wait.as_millis() as u64, "telegram polling failed; backing off");
            }
            backoff = (backoff * 2).min(self.config.backoff_max);
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
