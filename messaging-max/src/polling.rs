//! Long polling (`GET /updates`) with a durable marker.
//!
//! The marker is **committed only after a whole batch was handed over** (every event sent into
//! the channel the caller reads), so a crash between fetching and handing over repeats that batch
//! rather than losing it, and a restart with the same [`MarkerStore`] does not repeat batches
//! that were handed over. Errors are retried with exponential backoff (Max's `Retry-After` wins
//! when sent); a bad token ([`ErrorKind::ChannelDown`]) stops the poller.
//!
//! Max documents long polling as a development tool (rate-limited, events kept for a limited
//! time); production bots should use webhooks. An active webhook disables polling.

use messaging_core::task::{Supervised, catch_panic, supervise};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use messaging_core::{ErrorKind, Event};
use tokio::sync::mpsc;

use crate::client::{MaxBot, UpdatesBatch};
use crate::error::MaxError;
use crate::parse::HANDLED_UPDATE_TYPES;

/// Where the poller keeps the `GET /updates` marker between batches and restarts.
#[async_trait]
pub trait MarkerStore: Send + Sync + fmt::Debug {
    /// The last committed marker, if any.
    async fn load(&self) -> Result<Option<i64>, MaxError>;
    /// Commits a marker (everything before it was handed over).
    async fn save(&self, marker: i64) -> Result<(), MaxError>;
}

/// A [`MarkerStore`] in memory; clones share the marker (useful to simulate a restart in tests).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use messaging_max::{InMemoryMarkerStore, MarkerStore};
/// let store = InMemoryMarkerStore::new();
/// assert_eq!(store.load().await.unwrap(), None);
/// store.save(42).await.unwrap();
/// assert_eq!(store.clone().load().await.unwrap(), Some(42));
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct InMemoryMarkerStore {
    marker: Arc<Mutex<Option<i64>>>,
}

impl MaxBot {
    /// A long-poll [`Poller`] for this bot, keeping its marker in `store`. (Defined here, beside
    /// the poller, so the client does not depend on polling.)
    pub fn poller(&self, store: Arc<dyn MarkerStore>) -> Poller {
        Poller::new(self.clone(), store)
    }
}

impl InMemoryMarkerStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl MarkerStore for InMemoryMarkerStore {
    async fn load(&self) -> Result<Option<i64>, MaxError> {
        self.marker
            .lock()
            .map(|m| *m)
            .map_err(|_| MaxError::MarkerStore("lock poisoned".into()))
    }

    async fn save(&self, marker: i64) -> Result<(), MaxError> {
        let mut m = self
            .marker
            .lock()
            .map_err(|_| MaxError::MarkerStore("lock poisoned".into()))?;
        *m = Some(marker);
        Ok(())
    }
}

/// Polls `GET /updates` and hands events over through a channel.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use messaging_max::{InMemoryMarkerStore, MaxBot, Poller};
/// let bot = MaxBot::builder(std::env::var("MAX_BOT_TOKEN")?).build()?;
/// let (tx, mut rx) = tokio::sync::mpsc::channel(100);
/// let poller = Poller::new(bot, Arc::new(InMemoryMarkerStore::new()));
/// tokio::spawn(async move { poller.run(tx).await });
/// while let Some(event) = rx.recv().await {
///     println!("{}", serde_json::to_string(&event)?);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Poller {
    bot: MaxBot,
    store: Arc<dyn MarkerStore>,
    timeout: Duration,
    limit: u32,
    types: Vec<String>,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Poller {
    /// A poller for `bot` keeping its marker in `store`; 30 s long polls of up to 100 updates of
    /// the [handled types](crate::HANDLED_UPDATE_TYPES), backoff 1 s doubling to 60 s.
    pub fn new(bot: MaxBot, store: Arc<dyn MarkerStore>) -> Self {
        Poller {
            bot,
            store,
            timeout: Duration::from_secs(30),
            limit: 100,
            types: HANDLED_UPDATE_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }

    /// How long Max may hold one poll (0..=90 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t.min(Duration::from_secs(90));
        self
    }

    /// Most updates per poll (1..=1000).
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = n.clamp(1, 1000);
        self
    }

    /// Which update types to ask for (empty: all).
    pub fn types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Backoff after an error: starts at `initial`, doubles up to `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// One poll from the committed marker. Does **not** commit: call [`Poller::commit`] after the
    /// batch's events were handled.
    pub async fn poll_once(&self) -> Result<UpdatesBatch, MaxError> {
        let marker = self.store.load().await?;
        let types: Vec<&str> = self.types.iter().map(String::as_str).collect();
        Ok(self
            .bot
            .get_updates(marker, self.timeout, self.limit, &types)
            .await?)
    }

    /// Commits a handled batch's marker.
    pub async fn commit(&self, batch: &UpdatesBatch) -> Result<(), MaxError> {
        match batch.marker {
            Some(m) => self.store.save(m).await,
            None => Ok(()),
        }
    }

    /// Polls until `tx`'s receiver is dropped (then `Ok`), or the token is refused, or the marker
    /// store keeps failing (then `Err`). Every other error is retried with backoff.
    pub async fn run(&self, tx: mpsc::Sender<Event>) -> Result<(), MaxError> {
        let mut backoff = self.initial_backoff;
        loop {
            // A panic while polling or reading a batch is logged and retried like any failure,
            // with backoff: it never ends the loop silently.
            let polled = tokio::select! {
                r = catch_panic(self.poll_once()) => {
                    r.unwrap_or_else(|p| Err(MaxError::Panicked(p.message)))
                }
                () = tx.closed() => return Ok(()),
            };
            let batch = match polled {
                Ok(b) => b,
                Err(MaxError::Api(e)) if e.kind() == ErrorKind::ChannelDown => {
                    return Err(MaxError::Api(e));
                }
                Err(e) => {
                    let wait = match &e {
                        MaxError::Api(api) => api.retry_after().unwrap_or(backoff),
                        _ => backoff,
                    };
                    if let MaxError::Panicked(_) = e {
                        tracing::error!(error = %e, wait_ms = wait.as_millis() as u64, "Max poll panicked; backing off");
                    } else {
                        tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "Max poll failed; backing off");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = tx.closed() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(self.max_backoff);
                    continue;
                }
            };
            for event in batch.events.iter().cloned() {
                if tx.send(event).await.is_err() {
                    // Not handed over: leave the marker so the batch comes again.
                    return Ok(());
                }
            }
            self.commit_with_retry(&batch).await?;
            backoff = self.initial_backoff;
        }
    }

    /// [`run`](Self::run) in its own task under [`supervise`]: a panic that escapes the loop is
    /// logged and the poller started again (from the stored marker) after a short backoff.
    /// Ends as `run` does.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use messaging_max::{InMemoryMarkerStore, MaxBot, Poller};
    /// let bot = MaxBot::builder(std::env::var("MAX_BOT_TOKEN")?).build()?;
    /// let (tx, mut rx) = tokio::sync::mpsc::channel(100);
    /// let task = Poller::new(bot, Arc::new(InMemoryMarkerStore::new())).spawn(tx);
    /// while let Some(event) = rx.recv().await {
    ///     println!("{}", serde_json::to_string(&event)?);
    /// }
    /// task.abort();
    /// # Ok(()) }
    /// ```
    pub fn spawn(self, tx: mpsc::Sender<Event>) -> Supervised<Result<(), MaxError>> {
        supervise("max poller", move || {
            let (poller, tx) = (self.clone(), tx.clone());
            async move { poller.run(tx).await }
        })
    }

    async fn commit_with_retry(&self, batch: &UpdatesBatch) -> Result<(), MaxError> {
        let mut wait = self.initial_backoff;
        let mut attempt = 0;
        loop {
            match self.commit(batch).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= 4 => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "Max marker commit failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.max_backoff);
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_memory_store_is_shared_by_clones() {
        let a = InMemoryMarkerStore::new();
        let b = a.clone();
        assert_eq!(b.load().await.unwrap(), None);
        a.save(7).await.unwrap();
        assert_eq!(b.load().await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn a_closed_receiver_stops_the_poller() {
        let bot = MaxBot::builder("t")
            .base_url("http://127.0.0.1:9")
            .build()
            .unwrap();
        let poller = Poller::new(bot, Arc::new(InMemoryMarkerStore::new()))
            .backoff(Duration::from_millis(10), Duration::from_millis(20));
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let r = tokio::time::timeout(Duration::from_secs(5), poller.run(tx)).await;
        assert!(matches!(r, Ok(Ok(()))));
    }
}
