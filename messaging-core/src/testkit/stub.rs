//! A stub channel: records what it was asked to send and returns scripted results.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::channel::{Capabilities, Channel, OutboundMessage, SendReceipt};
use crate::clock::Clock;
use crate::error::ChannelError;
use crate::kind::ChannelKind;
use crate::model::{ChannelId, ProviderMessageId};

/// A channel for tests: accepts everything (or what the script says), sends nothing anywhere.
///
/// ```
/// use messaging_core::*;
/// use messaging_core::testkit::StubChannel;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let tg = StubChannel::new("tg", ChannelKind::Telegram);
/// tg.push_error(ChannelError::unreachable("bot was blocked by the user"));
/// let to = Address::Telegram(42);
/// assert!(tg.send_text(to.clone(), "first").await.is_err());
/// assert!(tg.send_text(to, "second").await.is_ok());
/// assert_eq!(tg.sent().len(), 2);
/// # });
/// ```
pub struct StubChannel {
    id: ChannelId,
    kind: ChannelKind,
    capabilities: Capabilities,
    script: Mutex<VecDeque<Result<(), ChannelError>>>,
    default_error: Mutex<Option<ChannelError>>,
    sent: Mutex<Vec<OutboundMessage>>,
    record: bool,
    counter: AtomicU64,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for StubChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StubChannel")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Typical capabilities of a channel kind, for stubs and simulations.
pub fn typical_capabilities(kind: ChannelKind) -> Capabilities {
    let f = kind.facts();
    Capabilities::new(f.typical_length, f.unit, f.strongest_evidence)
        .max_parts(f.max_parts)
        .templates(f.templates)
        .buttons(f.buttons)
        .media(f.media)
        .can_start_conversation(f.can_start_conversation)
}

impl StubChannel {
    /// A stub with the typical capabilities of `kind` that accepts every message.
    pub fn new(id: impl Into<ChannelId>, kind: ChannelKind) -> Self {
        StubChannel {
            id: id.into(),
            kind,
            capabilities: typical_capabilities(kind),
            script: Mutex::new(VecDeque::new()),
            default_error: Mutex::new(None),
            sent: Mutex::new(Vec::new()),
            record: true,
            counter: AtomicU64::new(0),
            clock: None,
        }
    }

    /// Replaces the capabilities.
    pub fn with_capabilities(mut self, c: Capabilities) -> Self {
        self.capabilities = c;
        self
    }

    /// Stamps receipts with this clock (default: the Unix epoch).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Does not keep sent messages (for benchmarks).
    pub fn without_recording(mut self) -> Self {
        self.record = false;
        self
    }

    /// The next send succeeds (scripted results are used in order, before the default).
    pub fn push_ok(&self) {
        self.lock_script().push_back(Ok(()));
    }

    /// The next send fails with `e`.
    pub fn push_error(&self, e: ChannelError) {
        self.lock_script().push_back(Err(e));
    }

    /// Every send without a scripted result fails with `e` (`None`: succeeds).
    pub fn fail_by_default(&self, e: Option<ChannelError>) {
        *self.default_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// Every message the channel was asked to send, in order.
    pub fn sent(&self) -> Vec<OutboundMessage> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many sends were attempted.
    pub fn send_count(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    /// The provider message id the `n`-th accepted send (1-based) got.
    pub fn message_id(&self, n: u64) -> String {
        format!("{}-{n}", self.id)
    }

    /// [`StubChannel::message_id`] as a provider message id, built in one allocation: the stub
    /// stands in for an instant provider in the engine's benchmarks, so it should cost little
    /// next to the engine it measures.
    fn receipt_id(&self, n: u64) -> ProviderMessageId {
        let id = self.id.as_str().as_bytes();
        let mut digits = itoa::Buffer::new();
        let number = digits.format(n).as_bytes();
        let mut buf = [0u8; 64];
        let len = id.len() + 1 + number.len();
        if len > buf.len() {
            return self.message_id(n).into();
        }
        buf[..id.len()].copy_from_slice(id);
        buf[id.len()] = b'-';
        buf[id.len() + 1..len].copy_from_slice(number);
        // Always valid UTF-8 (a channel id, a dash and digits); the fallback is never taken.
        match std::str::from_utf8(&buf[..len]) {
            Ok(s) => ProviderMessageId::new(s),
            Err(_) => self.message_id(n).into(),
        }
    }

    fn lock_script(&self) -> std::sync::MutexGuard<'_, VecDeque<Result<(), ChannelError>>> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock
            .as_ref()
            .map(|c| c.now())
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }
}

#[async_trait]
impl Channel for StubChannel {
    fn id(&self) -> &ChannelId {
        &self.id
    }
    fn kind(&self) -> ChannelKind {
        self.kind
    }
    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        if self.record {
            self.sent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(message.clone());
        }
        let scripted = self.lock_script().pop_front();
        let result = match scripted {
            Some(r) => r,
            None => match &*self.default_error.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(e) => Err(clone_error(e)),
                None => Ok(()),
            },
        };
        result.map(|()| SendReceipt::new(self.receipt_id(n), self.now()))
    }
}

pub(crate) fn clone_error(e: &ChannelError) -> ChannelError {
    let mut c = ChannelError::new(e.kind(), e.message());
    if let Some(code) = e.provider_code() {
        c = c.with_provider_code(code);
    }
    if let Some(d) = e.retry_after() {
        c = c.with_retry_after(d);
    }
    if let Some(t) = e.down_until() {
        c = c.with_down_until(t);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_ids_are_the_documented_message_ids() {
        let long = "x".repeat(80);
        for id in ["sms", "wa-main", long.as_str()] {
            let stub = StubChannel::new(id, ChannelKind::Sms);
            for n in [1, 9, 10, 123_456, u64::MAX] {
                assert_eq!(stub.receipt_id(n).as_str(), stub.message_id(n));
            }
        }
    }
}
