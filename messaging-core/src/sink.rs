//! Where events go: the one trait every consumer of webhook and polling events implements (the
//! cascade engine, the inbox, the sender governor), and a list that hands one event to each.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::event::Event;
use crate::kind::ChannelKind;
use crate::model::ContactId;

/// The error a sink returns; the caller logs it (or answers the provider 5xx).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Something events are handed to: the cascade engine (delivery reports, replies, channel
/// signals), the inbox (inbound messages), the sender governor (replies and opt-outs), or your own.
#[async_trait]
pub trait EventSink: Send + Sync + fmt::Debug + 'static {
    /// Takes in one event.
    async fn handle(&self, event: &Event) -> Result<(), SinkError>;

    /// Told that a person the inbox resolved to `contact` wrote on a channel of `kind` at
    /// `written_at` (after the inbound event itself went through [`handle`](Self::handle) by
    /// address). The cascade engine ends that contact's running cascades as replied, those
    /// whose first send came before `written_at`. Default: nothing.
    async fn contact_replied(
        &self,
        contact: &ContactId,
        kind: ChannelKind,
        written_at: DateTime<Utc>,
    ) -> Result<(), SinkError> {
        let _ = (contact, kind, written_at);
        Ok(())
    }
}

#[async_trait]
impl<T: EventSink + ?Sized> EventSink for Arc<T> {
    async fn handle(&self, event: &Event) -> Result<(), SinkError> {
        (**self).handle(event).await
    }

    async fn contact_replied(
        &self,
        contact: &ContactId,
        kind: ChannelKind,
        written_at: DateTime<Utc>,
    ) -> Result<(), SinkError> {
        (**self).contact_replied(contact, kind, written_at).await
    }
}

/// Several sinks in order: each event goes to every one, even when an earlier one fails; the
/// first error is returned.
///
/// ```
/// # use std::sync::Arc;
/// use messaging_core::sink::{EventSink, Sinks};
/// let sinks = Sinks::new();
/// assert!(sinks.is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Sinks {
    sinks: Vec<Arc<dyn EventSink>>,
}

impl Sinks {
    /// No sinks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink at the end.
    pub fn push(&mut self, sink: Arc<dyn EventSink>) {
        self.sinks.push(sink);
    }

    /// Adds a sink at the end (builder style).
    pub fn with(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.push(sink);
        self
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }
}

#[async_trait]
impl EventSink for Sinks {
    async fn handle(&self, event: &Event) -> Result<(), SinkError> {
        let mut first = None;
        for sink in &self.sinks {
            if let Err(e) = sink.handle(event).await {
                tracing::warn!(error = %e, ?sink, "event sink failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    async fn contact_replied(
        &self,
        contact: &ContactId,
        kind: ChannelKind,
        written_at: DateTime<Utc>,
    ) -> Result<(), SinkError> {
        let mut first = None;
        for sink in &self.sinks {
            if let Err(e) = sink.contact_replied(contact, kind, written_at).await {
                tracing::warn!(error = %e, ?sink, "event sink failed on a reply by contact");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
