//! SMS status polling: the service follows the SMS messages its engine sends (from the engine's
//! event stream) and asks the provider for their status until the step's evidence arrives, the
//! window closes or the cascade ends.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use messaging_cascade::Engine;
use messaging_cascade::engine::{CascadeEvent, HistoryKind, Phase};
use messaging_core::sink::{EventSink, Sinks};
use messaging_core::{ChannelError, ChannelId, Event, NotificationId, ProviderMessageId};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

/// Asks a provider for the status of messages (an SMS channel's `StatusPoller`).
pub(crate) type PollFn = Arc<
    dyn Fn(
            Vec<ProviderMessageId>,
        ) -> Pin<Box<dyn Future<Output = Result<Vec<Event>, ChannelError>> + Send>>
        + Send
        + Sync,
>;

/// A message followed longer than this is dropped (its report will not come).
const MAX_AGE: Duration = Duration::from_secs(72 * 3600);
/// Ids per status request.
const CHUNK: usize = 100;

/// One polled channel.
pub(crate) struct Polled {
    pub(crate) poll: PollFn,
    pub(crate) every: Duration,
}

pub(crate) struct Watcher {
    pub(crate) engine: Engine,
    pub(crate) sinks: Sinks,
    pub(crate) channels: HashMap<ChannelId, Polled>,
}

struct Followed {
    notification: NotificationId,
    since: Instant,
}

impl Watcher {
    /// Follows sends until `stop` turns true. `track` brings notifications sent before this
    /// process started (read from the store).
    pub(crate) async fn run(
        self,
        mut events: broadcast::Receiver<CascadeEvent>,
        mut track: mpsc::UnboundedReceiver<NotificationId>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut followed: HashMap<ChannelId, HashMap<ProviderMessageId, Followed>> = self
            .channels
            .keys()
            .map(|c| (c.clone(), HashMap::new()))
            .collect();
        let mut next: HashMap<ChannelId, Instant> = self
            .channels
            .iter()
            .map(|(c, p)| (c.clone(), Instant::now() + p.every))
            .collect();
        let mut events_open = true;
        let mut track_open = true;
        let mut stopped = std::pin::pin!(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        loop {
            let due = next
                .iter()
                .filter(|(c, _)| followed.get(*c).is_some_and(|m| !m.is_empty()))
                .min_by_key(|(_, at)| **at)
                .map(|(c, at)| (c.clone(), *at));
            let sleep_until = due
                .as_ref()
                .map(|(_, at)| *at)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                () = &mut stopped => return,
                ev = events.recv(), if events_open => match ev {
                    Ok(ev) => self.on_event(&ev, &mut followed),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "SMS status polling missed engine events; some sends may not be polled");
                    }
                    Err(broadcast::error::RecvError::Closed) => events_open = false,
                },
                id = track.recv(), if track_open => match id {
                    Some(id) => self.track(&id, &mut followed).await,
                    None => track_open = false,
                },
                () = tokio::time::sleep_until(sleep_until) => {
                    if let Some((channel, _)) = due {
                        self.poll(&channel, &mut followed).await;
                        let every = self.channels.get(&channel).map_or(Duration::from_secs(30), |p| p.every);
                        next.insert(channel, Instant::now() + every);
                    }
                }
            }
        }
    }

    fn on_event(
        &self,
        ev: &CascadeEvent,
        followed: &mut HashMap<ChannelId, HashMap<ProviderMessageId, Followed>>,
    ) {
        let id = &ev.notification_id;
        let forget = |followed: &mut HashMap<ChannelId, HashMap<ProviderMessageId, Followed>>,
                      channel: Option<&ChannelId>| {
            for (c, m) in followed.iter_mut() {
                if channel.is_none_or(|ch| ch == c) {
                    m.retain(|_, f| &f.notification != id);
                }
            }
        };
        if ev.entry.kind.is_terminal() {
            forget(followed, None);
            return;
        }
        match &ev.entry.kind {
            HistoryKind::Sent {
                channel,
                provider_message_id,
                ..
            } => {
                if let Some(m) = followed.get_mut(channel) {
                    m.insert(
                        provider_message_id.clone(),
                        Followed {
                            notification: id.clone(),
                            since: Instant::now(),
                        },
                    );
                }
            }
            HistoryKind::WindowClosed { channel, .. }
            | HistoryKind::Delivered { channel, .. }
            | HistoryKind::Failed { channel, .. } => forget(followed, Some(channel)),
            HistoryKind::Evidence {
                channel, evidence, ..
            } if *evidence >= messaging_core::Evidence::Delivered => {
                forget(followed, Some(channel))
            }
            _ => {}
        }
    }

    async fn track(
        &self,
        id: &NotificationId,
        followed: &mut HashMap<ChannelId, HashMap<ProviderMessageId, Followed>>,
    ) {
        let status = match self.engine.status(id).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(notification = %id, error = %e, "SMS status polling: status not read");
                return;
            }
        };
        if status.outcome.is_some() {
            return;
        }
        if let Phase::Waiting { attempt, .. } = status.phase
            && let Some(a) = status.attempts.get(attempt)
            && let Some(pmid) = &a.provider_message_id
            && let Some(m) = followed.get_mut(&a.channel)
        {
            m.insert(
                pmid.clone(),
                Followed {
                    notification: id.clone(),
                    since: Instant::now(),
                },
            );
        }
    }

    async fn poll(
        &self,
        channel: &ChannelId,
        followed: &mut HashMap<ChannelId, HashMap<ProviderMessageId, Followed>>,
    ) {
        let (Some(polled), Some(messages)) =
            (self.channels.get(channel), followed.get_mut(channel))
        else {
            return;
        };
        messages.retain(|_, f| f.since.elapsed() < MAX_AGE);
        let ids: Vec<ProviderMessageId> = messages.keys().cloned().collect();
        for chunk in ids.chunks(CHUNK) {
            match (polled.poll)(chunk.to_vec()).await {
                Ok(events) => {
                    for ev in &events {
                        if let Err(e) = self.sinks.handle(ev).await {
                            tracing::warn!(channel = %channel, error = %e, "a polled SMS status was not processed");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(channel = %channel, error = %e, "SMS status polling failed");
                    return;
                }
            }
        }
    }
}
