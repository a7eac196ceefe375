//! Channel health shared by every instance of a service: what one engine learns about a channel
//! (down, degraded, recovering, healthy again) reaches the others within a sync interval, and
//! only one of them sends the probe that tests a channel that is down.
//!
//! Each engine still judges health from its own sends ([`HealthTracker`](crate::HealthTracker)).
//! When its verdict on a channel changes, it posts a [`HealthNotice`] on the [`HealthBoard`];
//! every [`sync`](crate::Engine::sync_health) (once per `health_sync_interval`, from
//! [`Engine::run`](crate::Engine::run)) posts its own notices and applies the others' in order:
//!
//! | notice | what an instance that reads it does |
//! |---|---|
//! | `down { until }` | stops sending on the channel from the notice's time, as if it had seen the outage itself |
//! | `recovering { since }` | takes the same share of traffic as the instance whose probe got through (the ramp is one schedule) |
//! | `degraded` | treats the channel as degraded until a `healthy` notice |
//! | `healthy` | forgets a degraded or down verdict it only had from others |
//!
//! Probes: a channel that is down is probed after `probe_interval`. Every instance reaches that
//! moment at once (they share the `down` time), so the probe is claimed on the board
//! ([`HealthBoard::claim_probe`]): one instance sends it, the others keep the channel down until
//! that instance posts `recovering` or `down` again.
//!
//! | board | kept | for |
//! |---|---|---|
//! | [`MemoryHealthBoard`] | in memory, shared by clones | engines in one process, tests |
//! | `PostgresStore` (`messaging-store`) | tables `health_notices`, `probe_claims` | instances on one PostgreSQL |
//!
//! ```
//! use std::time::Duration;
//! use chrono::{TimeZone, Utc};
//! use messaging_cascade::shared_health::{HealthBoard, HealthChange, HealthNotice, MemoryHealthBoard};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let board = MemoryHealthBoard::new();
//! let t0 = Utc.with_ymd_and_hms(2026, 12, 6, 9, 0, 0).unwrap();
//! let notice = HealthNotice::new("wa", HealthChange::Down { until: None }, t0, "a", "60% of sends overdue");
//! let position = board.post(&notice).await.unwrap();
//! let seen = board.read_after(0, 10).await.unwrap();
//! assert_eq!(seen, vec![(position, notice)]);
//! // One probe per channel at a time, whoever asks.
//! assert!(board.claim_probe(&"wa".into(), "a", t0, Duration::from_secs(300)).await.unwrap());
//! assert!(!board.claim_probe(&"wa".into(), "b", t0, Duration::from_secs(300)).await.unwrap());
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::health::HealthChange;
use messaging_core::{ChannelId, StoreError, chrono_dur};

/// One instance's new verdict on a channel, posted for the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthNotice {
    /// The channel.
    pub channel: ChannelId,
    /// Its health now.
    pub change: HealthChange,
    /// When the instance concluded it (by its clock).
    pub at: DateTime<Utc>,
    /// The instance that posted it ([`EngineBuilder::instance`](crate::EngineBuilder::instance)).
    pub instance: String,
    /// Why, in words (`"60% of sends overdue"`, `"account restricted"`).
    pub reason: String,
}

impl HealthNotice {
    /// A notice.
    pub fn new(
        channel: impl Into<ChannelId>,
        change: HealthChange,
        at: DateTime<Utc>,
        instance: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        HealthNotice {
            channel: channel.into(),
            change,
            at,
            instance: instance.into(),
            reason: reason.into(),
        }
    }
}

/// Where instances post and read channel health, and claim probes. Positions are increasing
/// and, read in order, never skip a notice posted before the ones already read.
#[async_trait]
pub trait HealthBoard: Send + Sync + fmt::Debug + 'static {
    /// Posts a notice; returns its position.
    async fn post(&self, notice: &HealthNotice) -> Result<u64, StoreError>;

    /// Notices after `position`, oldest first, at most `limit`.
    async fn read_after(
        &self,
        position: u64,
        limit: usize,
    ) -> Result<Vec<(u64, HealthNotice)>, StoreError>;

    /// The newest notice of every channel (what an instance that starts now must know), with
    /// the position to read after from then on.
    async fn latest(&self) -> Result<(Vec<HealthNotice>, u64), StoreError>;

    /// Takes the right to send the next probe of `channel` for `hold` from `now`: `true` for one
    /// caller, `false` for every other until the hold ends.
    async fn claim_probe(
        &self,
        channel: &ChannelId,
        instance: &str,
        now: DateTime<Utc>,
        hold: Duration,
    ) -> Result<bool, StoreError>;
}

#[derive(Debug, Default)]
struct Board {
    notices: Vec<HealthNotice>,
    probes: HashMap<ChannelId, DateTime<Utc>>,
}

/// A [`HealthBoard`] in memory; clones share it (engines in one process, tests).
#[derive(Clone, Debug, Default)]
pub struct MemoryHealthBoard {
    board: Arc<Mutex<Board>>,
}

impl MemoryHealthBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl HealthBoard for MemoryHealthBoard {
    async fn post(&self, notice: &HealthNotice) -> Result<u64, StoreError> {
        let mut b = self.lock();
        b.notices.push(notice.clone());
        Ok(b.notices.len() as u64)
    }

    async fn read_after(
        &self,
        position: u64,
        limit: usize,
    ) -> Result<Vec<(u64, HealthNotice)>, StoreError> {
        let b = self.lock();
        let start = usize::try_from(position).unwrap_or(usize::MAX);
        Ok(b.notices
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, n)| (i as u64 + 1, n.clone()))
            .collect())
    }

    async fn latest(&self) -> Result<(Vec<HealthNotice>, u64), StoreError> {
        let b = self.lock();
        let mut newest: Vec<HealthNotice> = Vec::new();
        for n in b.notices.iter().rev() {
            if !newest.iter().any(|m| m.channel == n.channel) {
                newest.push(n.clone());
            }
        }
        newest.reverse();
        Ok((newest, b.notices.len() as u64))
    }

    async fn claim_probe(
        &self,
        channel: &ChannelId,
        _instance: &str,
        now: DateTime<Utc>,
        hold: Duration,
    ) -> Result<bool, StoreError> {
        let mut b = self.lock();
        match b.probes.get(channel) {
            Some(until) if *until > now => Ok(false),
            _ => {
                b.probes.insert(channel.clone(), now + chrono_dur(hold));
                Ok(true)
            }
        }
    }
}

/// The [`HealthBoard`] conformance suite: [`run_all`](conformance::run_all) for any board, and
/// [`two_engines`](conformance::two_engines), the behaviour of two engines sharing one.
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod conformance {
    use super::*;

    /// Checks any [`HealthBoard`]: order, the newest notice per channel, and that one probe claim
    /// wins until its hold ends. `board` must be empty.
    pub async fn run_all(board: &dyn HealthBoard) {
        use chrono::TimeZone;
        let t0 = Utc
            .with_ymd_and_hms(2026, 12, 6, 9, 0, 0)
            .single()
            .expect("a valid time");
        let (empty, start) = board.latest().await.expect("latest");
        assert!(empty.is_empty(), "the board must start empty");
        let notices = [
            HealthNotice::new("wa", HealthChange::Degraded, t0, "a", "slow"),
            HealthNotice::new(
                "tg",
                HealthChange::Down { until: Some(t0) },
                t0,
                "b",
                "bad token",
            ),
            HealthNotice::new(
                "wa",
                HealthChange::Down { until: None },
                t0,
                "a",
                "60% overdue",
            ),
            HealthNotice::new(
                "wa",
                HealthChange::Recovering { since: t0 },
                t0,
                "b",
                "probe delivered",
            ),
        ];
        let mut positions = Vec::new();
        for n in &notices {
            positions.push(board.post(n).await.expect("post"));
        }
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "positions increase: {positions:?}"
        );
        let all = board.read_after(start, 100).await.expect("read");
        assert_eq!(
            all.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>(),
            notices.to_vec(),
            "every notice, in order"
        );
        assert_eq!(
            all.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            positions,
            "read positions are the posted ones"
        );
        let tail = board.read_after(positions[1], 1).await.expect("read");
        assert_eq!(
            tail,
            vec![(positions[2], notices[2].clone())],
            "limit and cursor"
        );
        let (newest, last) = board.latest().await.expect("latest");
        assert_eq!(last, positions[3]);
        assert_eq!(newest.len(), 2, "one notice per channel: {newest:?}");
        assert!(newest.contains(&notices[1]) && newest.contains(&notices[3]));

        let hold = Duration::from_secs(300);
        let wa = ChannelId::from("wa");
        assert!(board.claim_probe(&wa, "a", t0, hold).await.expect("claim"));
        assert!(!board.claim_probe(&wa, "b", t0, hold).await.expect("claim"));
        assert!(
            !board
                .claim_probe(&wa, "a", t0 + chrono_dur(hold / 2), hold)
                .await
                .expect("claim"),
            "held for its hold, even for the holder"
        );
        assert!(
            board
                .claim_probe(&"tg".into(), "b", t0, hold)
                .await
                .expect("claim"),
            "per channel"
        );
        assert!(
            board
                .claim_probe(&wa, "b", t0 + chrono_dur(hold), hold)
                .await
                .expect("claim"),
            "free again when the hold ends"
        );
    }

    /// Two engines, `a` on `board_a` and `b` on `board_b` (two handles on one shared board), on
    /// one manual clock, each with its own stub channels and in-memory cascades:
    ///
    /// 1. WhatsApp refuses `a`'s send (bad token): `a` marks it down and posts it; after one sync
    ///    each, `b` sends its next reminder on Telegram without one WhatsApp attempt of its own.
    /// 2. When the probe falls due, both instances submit reminders at the same moment: exactly
    ///    one WhatsApp probe goes out between them.
    /// 3. The probe is delivered: the prober posts `recovering`, and after a sync the other takes
    ///    the same share of traffic at the same moment.
    ///
    /// Boards must start empty. Returns the number of notices `b` applied (at least 2).
    pub async fn two_engines(
        board_a: Arc<dyn HealthBoard>,
        board_b: Arc<dyn HealthBoard>,
    ) -> usize {
        use crate::{CascadePolicy, Engine, Notification, Step};
        use messaging_core::testkit::StubChannel;
        use messaging_core::{
            ChannelError, ChannelKind, Clock, Content, DeliveryReport, DeliveryStatus, Event,
            ManualClock, Recipient,
        };

        let clock = ManualClock::at_unix(1_767_250_800);
        let engine = |board: Arc<dyn HealthBoard>, name: &str| {
            let wa =
                Arc::new(StubChannel::new("wa", ChannelKind::WhatsApp).with_clock(clock.clone()));
            let tg =
                Arc::new(StubChannel::new("tg", ChannelKind::Telegram).with_clock(clock.clone()));
            let engine = Engine::builder()
                .clock(clock.clone())
                .channel(wa.clone())
                .channel(tg.clone())
                .policy(CascadePolicy::new(
                    "reminder",
                    vec![Step::new("wa"), Step::new("tg")],
                ))
                .default_policy("reminder")
                .health_board(board)
                .instance(name)
                .build()
                .expect("a valid engine");
            (engine, wa, tg)
        };
        let (a, a_wa, a_tg) = engine(board_a, "a");
        let (b, b_wa, b_tg) = engine(board_b, "b");
        let reminder = |id: &str| {
            Notification::new(
                id,
                Recipient::with_phone(format!("p-{id}"), "+79123456789")
                    .expect("a valid phone")
                    .address(messaging_core::Address::Telegram(42)),
                Content::text("Напоминаем о приёме завтра в 10:00"),
            )
        };
        a.sync_health().await.expect("sync a");
        b.sync_health().await.expect("sync b");

        // 1. The outage, seen by a alone.
        a_wa.push_error(
            ChannelError::channel_down("invalid OAuth token").with_provider_code("190"),
        );
        a.submit(reminder("a-1")).await.expect("submit");
        assert_eq!(a_tg.send_count(), 1, "a went on to Telegram");
        a.sync_health().await.expect("sync a");
        let mut applied = b.sync_health().await.expect("sync b");
        assert!(applied >= 1, "b read a's notice");
        let wa = ChannelId::from("wa");
        let seen = b.health(&wa).expect("b has wa");
        assert_eq!(seen.state, crate::health::HealthState::Down, "{seen:?}");
        assert!(seen.reason.contains("seen by a"), "{}", seen.reason);
        b.submit(reminder("b-1")).await.expect("submit");
        assert_eq!(b_wa.send_count(), 0, "b never tried WhatsApp");
        assert_eq!(b_tg.send_count(), 1, "b sent on Telegram at once");

        // 2. The probe falls due for both at once; one of them sends it.
        clock.advance(
            crate::health::HealthConfig::default().probe_interval + Duration::from_secs(1),
        );
        a.sync_health().await.expect("sync a");
        b.sync_health().await.expect("sync b");
        let (ra, rb) = tokio::join!(a.submit(reminder("a-2")), b.submit(reminder("b-2")));
        ra.expect("submit");
        rb.expect("submit");
        let probes = (a_wa.send_count() - 1) + b_wa.send_count();
        assert_eq!(probes, 1, "one WhatsApp probe between the two instances");

        // 3. The probe is delivered: both ramp on one schedule.
        let (prober, other, id) = if b_wa.send_count() == 1 {
            (&b, &a, "b-2")
        } else {
            (&a, &b, "a-2")
        };
        let status = prober
            .status(&id.into())
            .await
            .expect("status")
            .expect("known");
        let pmid = status
            .attempts
            .iter()
            .find(|t| t.channel == wa)
            .and_then(|t| t.provider_message_id.clone())
            .expect("the probe was accepted");
        clock.advance(Duration::from_secs(20));
        let report = DeliveryReport::new(
            ChannelKind::WhatsApp,
            pmid,
            DeliveryStatus::Delivered,
            clock.now(),
        );
        prober
            .handle_event(&Event::Delivery(report))
            .await
            .expect("report");
        prober.sync_health().await.expect("sync prober");
        applied += b.sync_health().await.expect("sync b") + a.sync_health().await.expect("sync a");
        clock.advance(Duration::from_secs(60));
        let (p, o) = (
            prober.health(&wa).expect("wa"),
            other.health(&wa).expect("wa"),
        );
        assert!(
            p.traffic_share > 0.0 && p.traffic_share < 1.0,
            "the prober ramps: {p:?}"
        );
        assert_eq!(p.traffic_share, o.traffic_share, "one ramp for both");
        applied
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use std::sync::Arc;

    #[tokio::test]
    async fn memory_board_conforms() {
        super::conformance::run_all(&super::MemoryHealthBoard::new()).await;
    }

    #[tokio::test]
    async fn two_engines_share_health_on_a_memory_board() {
        let board = Arc::new(super::MemoryHealthBoard::new());
        let applied = super::conformance::two_engines(board.clone(), board).await;
        assert!(applied >= 2, "{applied}");
    }
}
