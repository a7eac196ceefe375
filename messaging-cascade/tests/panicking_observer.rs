//! The application's tracing may panic while the engine tells of a new cascade or of what a
//! decision did. On the in-memory store a decision is made on the stored record under the
//! store's lock, and told there: the record and the store's indexes must be complete before
//! anything is told, so that such a panic loses nothing and leaves no cascade half-stored.
//!
//! Alone in its test binary: it installs a subscriber, and `tracing` caches per call site
//! whether anyone listens.

use std::sync::{Arc, Mutex};

use messaging_cascade::*;
use messaging_core::testkit::StubChannel;
use messaging_core::*;
use tracing::field::{Field, Visit};
use tracing::{Event as TracingEvent, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Panics on the next event whose message is the one it is armed with.
#[derive(Clone, Default)]
struct PanicOnce(Arc<Mutex<Option<&'static str>>>);

impl PanicOnce {
    fn arm(&self, message: &'static str) {
        *self.0.lock().unwrap() = Some(message);
    }
    fn fired(&self) -> bool {
        self.0.lock().unwrap().is_none()
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for PanicOnce {
    fn on_event(&self, event: &TracingEvent<'_>, _ctx: Context<'_, S>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        let fire = {
            let mut armed = self.0.lock().unwrap();
            let fire = *armed == Some(m.0.as_str());
            if fire {
                *armed = None;
            }
            fire
        };
        if fire {
            panic!("the application's subscriber panics");
        }
    }
}

fn notice(id: &str, chat: i64) -> Notification {
    Notification::new(
        id,
        Recipient::new(format!("patient-{chat}")).address(Address::Telegram(chat)),
        Content::text("Анна, напоминаем о приёме завтра в 10:00."),
    )
}

#[test]
fn a_panic_while_a_cascade_is_told_leaves_it_stored_whole() {
    let panics = PanicOnce::default();
    let subscriber = tracing_subscriber::registry().with(panics.clone());
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let tg = Arc::new(StubChannel::new("tg", ChannelKind::Telegram));
            let engine = Engine::builder()
                .clock(ManualClock::at_unix(1_767_250_800))
                .channel(tg.clone())
                .policy(CascadePolicy::new("p", vec![Step::new("tg")]))
                .build()
                .unwrap();
            let store = engine.store();

            // Telling a new cascade panics: it is stored all the same, and its first step goes.
            panics.arm("cascade submitted");
            let first = engine.submit(notice("appt-1", 42)).await.unwrap();
            assert!(panics.fired());
            assert!(first.new);
            assert!(
                matches!(first.outcome, Some(Outcome::Delivered { .. })),
                "{first:?}"
            );

            // Telegram's "accepted" is the proof: the send's outcome ends the cascade, and
            // telling that end panics.
            panics.arm("cascade ended: delivered");
            let second = engine.submit(notice("appt-2", 43)).await.unwrap();
            assert!(panics.fired());
            assert!(second.new);
            assert_eq!(second.outcome, None, "the panic cut the drive short");

            // The decision was stored whole: the record, its version, the count of running
            // cascades, the message index and the timers.
            let status = engine.status(&"appt-2".into()).await.unwrap().unwrap();
            assert!(
                matches!(status.outcome, Some(Outcome::Delivered { .. })),
                "{status:?}"
            );
            assert_eq!(store.count_active().await.unwrap(), 0);
            let found = store.find_message(&tg.message_id(2).into()).await.unwrap();
            assert_eq!(found.map(|m| m.notification_id), Some("appt-2".into()));
            assert_eq!(store.next_wake().await.unwrap(), None, "no timer left");
            let record = store.get(&"appt-2".into()).await.unwrap().unwrap();
            assert_eq!(record.version, 1, "inserted, then changed once");

            // Nothing is sent again, and the store still serves the next notice.
            assert_eq!(engine.tick().await.unwrap(), 0);
            let third = engine.submit(notice("appt-3", 44)).await.unwrap();
            assert!(matches!(third.outcome, Some(Outcome::Delivered { .. })));
            assert_eq!(tg.sent().len(), 3);
        });
    });
}
