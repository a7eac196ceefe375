//! The webhook router: statuses for every refusal, handshakes, provider answers, the full URL,
//! de-duplication and the bounded queue; with a journal: recorded before the answer, `503` when
//! it fails, replays after a restart dropped, left-over events processed, sink failures retried.
#![cfg(feature = "axum")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeZone, Utc};
use futures::FutureExt;
use messaging_conversations::router::{RouterError, WebhookRouter};
use messaging_core::journal::{
    JournalEntry, JournalId, JournalRecord, MemoryWebhookJournal, WebhookJournal,
};
use messaging_core::sink::EventSink;
use messaging_core::webhook::{
    WebhookError, WebhookHandler, WebhookReply, WebhookRequest, hmac_sha256_hex,
    verify_hmac_sha256_hex,
};
use messaging_core::*;
use tower::ServiceExt;

const KEY: &[u8] = b"provider-secret";
const SIG: &str = "x-test-signature";

/// A provider that signs bodies with a hex HMAC header, sends `{"events":[...]}` in the core
/// JSON shape, answers `100` and has a Meta-like GET handshake.
#[derive(Debug, Default)]
struct TestProvider {
    urls: Mutex<Vec<String>>,
    max_body: Option<usize>,
}

impl WebhookHandler for TestProvider {
    fn provider(&self) -> &'static str {
        "test"
    }
    fn channel_kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }
    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        if let Some(url) = request.url {
            self.urls.lock().unwrap().push(url.to_owned());
        }
        let sig = request
            .header(SIG)
            .ok_or(WebhookError::MissingSignature(SIG))?;
        if verify_hmac_sha256_hex(KEY, request.body, sig) {
            Ok(())
        } else {
            Err(WebhookError::BadSignature)
        }
    }
    fn parse(&self, request: &WebhookRequest<'_>) -> Result<Vec<Event>, WebhookError> {
        #[derive(serde::Deserialize)]
        struct Body {
            events: Vec<Event>,
        }
        serde_json::from_slice::<Body>(request.body)
            .map(|b| b.events)
            .map_err(|e| WebhookError::malformed("test", e))
    }
    fn handshake(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Option<Result<WebhookReply, WebhookError>> {
        if request.method != http::Method::GET {
            return None;
        }
        let url = url::Url::parse(request.url?).ok()?;
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        let challenge = q.get("hub.challenge")?;
        Some(
            if q.get("hub.verify_token").map(String::as_str) == Some("vt") {
                Ok(WebhookReply::text(challenge.clone()))
            } else {
                Err(WebhookError::BadVerifyToken)
            },
        )
    }
    fn reply(&self) -> WebhookReply {
        WebhookReply::text("100")
    }
    fn max_body(&self) -> usize {
        self.max_body.unwrap_or(4096)
    }
}

#[derive(Debug, Default)]
struct Collect {
    events: Mutex<Vec<Event>>,
}

#[async_trait]
impl EventSink for Collect {
    async fn handle(&self, event: &Event) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }
}

impl Collect {
    fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }
    async fn wait_for(&self, n: usize) {
        for _ in 0..200 {
            if self.len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("expected {n} events, got {}", self.len());
    }
    /// Lets the processor run, then checks nothing more arrived.
    async fn settle(&self, n: usize) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(self.len(), n);
    }
}

fn inbound(id: &str, text: &str) -> serde_json::Value {
    let m = InboundMessage::new(
        ChannelKind::Sms,
        Address::Phone(Phone::parse("+79123456789").unwrap()),
        Some(text.into()),
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
    )
    .provider_message_id(id);
    serde_json::to_value(Event::Inbound(m)).unwrap()
}

fn delivery(id: &str, status: DeliveryStatus) -> serde_json::Value {
    let d = DeliveryReport::new(
        ChannelKind::Sms,
        id,
        status,
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
    );
    serde_json::to_value(Event::Delivery(d)).unwrap()
}

fn body(events: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()
}

fn signed(body: Vec<u8>) -> Request<Body> {
    let sig = hmac_sha256_hex(KEY, &body);
    Request::post("/hooks/test?x=1")
        .header(SIG, sig)
        .header("host", "example.internal")
        .body(Body::from(body))
        .unwrap()
}

struct Setup {
    app: axum::Router,
    sink: Arc<Collect>,
    provider: Arc<TestProvider>,
}

fn setup(f: impl FnOnce(WebhookRouter) -> WebhookRouter) -> Setup {
    let sink = Arc::new(Collect::default());
    let provider = Arc::new(TestProvider::default());
    let (app, _task) = f(WebhookRouter::new()
        .mount("/hooks/test", provider.clone())
        .sink(sink.clone()))
    .spawn()
    .unwrap();
    Setup {
        app,
        sink,
        provider,
    }
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_verified_webhook_gets_the_providers_answer_and_is_processed() {
    let s = setup(|r| r);
    let (status, text) = send(&s.app, signed(body(&[inbound("m1", "Да")]))).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "100"));
    s.sink.wait_for(1).await;
    assert!(
        matches!(&s.sink.events.lock().unwrap()[0], Event::Inbound(m) if m.text.as_deref() == Some("Да"))
    );
    // Without a public base URL the Host header is used.
    assert_eq!(
        s.provider.urls.lock().unwrap()[0],
        "http://example.internal/hooks/test?x=1"
    );
}

#[tokio::test]
async fn the_public_base_url_makes_the_full_url_for_signatures() {
    let s = setup(|r| r.public_base_url("https://clinic.example/api/"));
    send(&s.app, signed(body(&[]))).await;
    assert_eq!(
        s.provider.urls.lock().unwrap()[0],
        "https://clinic.example/api/hooks/test?x=1"
    );
}

#[tokio::test]
async fn missing_and_bad_signatures_get_401_and_403_and_nothing_is_processed() {
    let s = setup(|r| r);
    let b = body(&[inbound("m1", "Да")]);
    let unsigned = Request::post("/hooks/test")
        .body(Body::from(b.clone()))
        .unwrap();
    assert_eq!(send(&s.app, unsigned).await.0, StatusCode::UNAUTHORIZED);
    let forged = Request::post("/hooks/test")
        .header(SIG, hmac_sha256_hex(b"wrong key", &b))
        .body(Body::from(b.clone()))
        .unwrap();
    assert_eq!(send(&s.app, forged).await.0, StatusCode::FORBIDDEN);
    s.sink.settle(0).await;
    // A refused call does not make the genuine one look like a repeat.
    assert_eq!(send(&s.app, signed(b)).await.0, StatusCode::OK);
    s.sink.wait_for(1).await;
}

#[tokio::test]
async fn a_malformed_body_gets_400_and_nothing_is_processed() {
    let s = setup(|r| r);
    let (status, _) = send(
        &s.app,
        signed(b"{\"events\": [{\"kind\":\"nonsense\"}]}".to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(&s.app, signed(b"not json".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.sink.settle(0).await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let s = setup(|r| r);
    let big = body(&[inbound("m1", &"x".repeat(5000))]);
    let (status, _) = send(&s.app, signed(big.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Streamed without Content-Length: refused while reading.
    let sig = hmac_sha256_hex(KEY, &big);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let streamed = Request::post("/hooks/test")
        .header(SIG, sig)
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    assert_eq!(
        send(&s.app, streamed).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    s.sink.settle(0).await;
}

#[tokio::test]
async fn a_handler_limit_above_axums_default_is_honoured() {
    let sink = Arc::new(Collect::default());
    let provider = Arc::new(TestProvider {
        max_body: Some(3 * 1024 * 1024),
        ..TestProvider::default()
    });
    let (app, _t) = WebhookRouter::new()
        .mount("/hooks/test", provider)
        .sink(sink.clone())
        .spawn()
        .unwrap();
    let big = body(&[inbound("m1", &"x".repeat(2_500_000))]);
    assert_eq!(send(&app, signed(big)).await.0, StatusCode::OK);
    sink.wait_for(1).await;
}

#[tokio::test]
async fn handshakes_are_answered_by_the_handler() {
    let s = setup(|r| r);
    let ok = Request::get("/hooks/test?hub.mode=subscribe&hub.verify_token=vt&hub.challenge=12345")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&s.app, ok).await, (StatusCode::OK, "12345".to_owned()));
    let bad = Request::get("/hooks/test?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&s.app, bad).await.0, StatusCode::FORBIDDEN);
    s.sink.settle(0).await;
}

#[tokio::test]
async fn repeated_deliveries_are_processed_once() {
    let s = setup(|r| r);
    let b = body(&[
        inbound("m1", "Да"),
        delivery("out-1", DeliveryStatus::Delivered),
    ]);
    for _ in 0..3 {
        assert_eq!(
            send(&s.app, signed(b.clone())).await,
            (StatusCode::OK, "100".to_owned())
        );
    }
    s.sink.wait_for(2).await;
    s.sink.settle(2).await;

    // Another body with the same inbound id and the same report: nothing new.
    let b2 = body(&[
        delivery("out-1", DeliveryStatus::Delivered),
        inbound("m1", "Да (retry with other JSON)"),
    ]);
    assert_eq!(send(&s.app, signed(b2)).await.0, StatusCode::OK);
    s.sink.settle(2).await;

    // A new status of the same message is news.
    let b3 = body(&[delivery("out-1", DeliveryStatus::Read)]);
    send(&s.app, signed(b3)).await;
    s.sink.wait_for(3).await;
}

#[tokio::test]
async fn a_full_queue_answers_503_and_the_retry_is_processed() {
    let sink = Arc::new(Collect::default());
    let (app, processor) = WebhookRouter::new()
        .mount("/hooks/test", Arc::new(TestProvider::default()))
        .sink(sink.clone())
        .queue_capacity(1)
        .build()
        .unwrap();
    let first = body(&[inbound("m1", "1")]);
    let second = body(&[inbound("m2", "2")]);
    assert_eq!(send(&app, signed(first)).await.0, StatusCode::OK);
    let resp = app.clone().oneshot(signed(second.clone())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));

    tokio::spawn(processor.run());
    sink.wait_for(1).await;
    assert_eq!(send(&app, signed(second)).await.0, StatusCode::OK);
    sink.wait_for(2).await;
}

#[tokio::test]
async fn the_answer_does_not_wait_for_processing() {
    #[derive(Debug)]
    struct Slow;
    #[async_trait]
    impl EventSink for Slow {
        async fn handle(&self, _: &Event) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
    }
    let (app, _t) = WebhookRouter::new()
        .mount("/hooks/test", Arc::new(TestProvider::default()))
        .sink(Arc::new(Slow))
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    for i in 0..3 {
        let b = body(&[inbound(&format!("m{i}"), "x")]);
        assert_eq!(send(&app, signed(b)).await.0, StatusCode::OK);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn unknown_paths_are_404_and_bad_mounts_are_refused() {
    let s = setup(|r| r);
    let req = Request::post("/hooks/other").body(Body::empty()).unwrap();
    assert_eq!(send(&s.app, req).await.0, StatusCode::NOT_FOUND);

    let h: Arc<dyn WebhookHandler> = Arc::new(TestProvider::default());
    assert_eq!(
        WebhookRouter::new().mount("hooks", h.clone()).build().err(),
        Some(RouterError::InvalidPath("hooks".into()))
    );
    assert_eq!(
        WebhookRouter::new()
            .mount("/a/{id}", h.clone())
            .build()
            .err(),
        Some(RouterError::InvalidPath("/a/{id}".into()))
    );
    assert_eq!(
        WebhookRouter::new()
            .mount("/a", h.clone())
            .mount("/a", h)
            .build()
            .err(),
        Some(RouterError::DuplicatePath("/a".into()))
    );
}

#[tokio::test]
async fn several_providers_share_one_router() {
    let sink = Arc::new(Collect::default());
    let (app, _t) = WebhookRouter::new()
        .mount("/a", Arc::new(TestProvider::default()))
        .mount("/b", Arc::new(TestProvider::default()))
        .sink(sink.clone())
        .spawn()
        .unwrap();
    for path in ["/a", "/b"] {
        let b = body(&[inbound(&format!("id{path}"), "x")]);
        let req = Request::post(path)
            .header(SIG, hmac_sha256_hex(KEY, &b))
            .body(Body::from(b))
            .unwrap();
        assert_eq!(send(&app, req).await.0, StatusCode::OK);
    }
    sink.wait_for(2).await;
}

// ---------------------------------------------------------------------------------------------
// With a journal: acknowledged means recorded.

/// A journal that can be switched to fail like a database that went away.
#[derive(Debug, Default)]
struct Switchable {
    inner: MemoryWebhookJournal,
    down: AtomicBool,
    records: AtomicUsize,
}

impl Switchable {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Backend("database unavailable".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl WebhookJournal for Switchable {
    async fn record(
        &self,
        records: &[JournalRecord],
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.check()?;
        self.records.fetch_add(1, Ordering::SeqCst);
        self.inner.record(records, now).await
    }
    async fn claim(
        &self,
        now: chrono::DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        self.check()?;
        self.inner.claim(now, limit, lease).await
    }
    async fn complete(
        &self,
        ids: &[JournalId],
        now: chrono::DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.complete(ids, now).await
    }
    async fn retry(
        &self,
        id: JournalId,
        at: chrono::DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.retry(id, at, error).await
    }
    async fn fail(
        &self,
        id: JournalId,
        now: chrono::DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.fail(id, now, error).await
    }
    async fn purge(
        &self,
        ended_before: chrono::DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.check()?;
        self.inner.purge(ended_before, limit).await
    }
    async fn pending(&self) -> Result<usize, StoreError> {
        self.check()?;
        self.inner.pending().await
    }
}

fn journaled(
    journal: Arc<dyn WebhookJournal>,
    f: impl FnOnce(WebhookRouter) -> WebhookRouter,
) -> (axum::Router, Arc<Collect>, tokio::task::JoinHandle<()>) {
    let sink = Arc::new(Collect::default());
    let (app, task) = f(WebhookRouter::new()
        .mount("/hooks/test", Arc::new(TestProvider::default()))
        .journal(journal)
        .poll_interval(Duration::from_millis(20))
        .sink(sink.clone()))
    .spawn()
    .unwrap();
    (app, sink, task)
}

fn signal(rating: &str) -> serde_json::Value {
    let s = ChannelSignal::new(
        ChannelKind::Sms,
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
        Signal::Quality {
            rating: rating.into(),
            phone_number: None,
        },
    );
    serde_json::to_value(Event::Signal(s)).unwrap()
}

#[tokio::test]
async fn with_a_journal_the_events_are_recorded_before_the_answer_and_processed() {
    let journal = Arc::new(Switchable::default());
    let (app, sink, _t) = journaled(journal.clone(), |r| r);
    let b = body(&[
        inbound("m1", "Да"),
        delivery("out-1", DeliveryStatus::Delivered),
    ]);
    assert_eq!(
        send(&app, signed(b)).await,
        (StatusCode::OK, "100".to_owned())
    );
    assert_eq!(journal.records.load(Ordering::SeqCst), 1);
    sink.wait_for(2).await;
    for _ in 0..100 {
        if journal.inner.pending().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        journal.inner.pending().await.unwrap(),
        0,
        "processed entries are marked"
    );
    // The same report in another body: dropped by its key.
    let again = body(&[delivery("out-1", DeliveryStatus::Delivered)]);
    assert_eq!(send(&app, signed(again)).await.0, StatusCode::OK);
    sink.settle(2).await;
}

#[tokio::test]
async fn when_the_journal_fails_the_answer_is_503_and_the_retry_is_processed() {
    let journal = Arc::new(Switchable::default());
    let (app, sink, _t) = journaled(journal.clone(), |r| r);
    journal.down.store(true, Ordering::SeqCst);
    let b = body(&[delivery("out-1", DeliveryStatus::Delivered)]);
    let resp = app.clone().oneshot(signed(b.clone())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    sink.settle(0).await;

    // The database is back; the provider's retry of the same body is not taken for a repeat.
    journal.down.store(false, Ordering::SeqCst);
    assert_eq!(send(&app, signed(b)).await.0, StatusCode::OK);
    sink.wait_for(1).await;
    sink.settle(1).await;
}

#[tokio::test]
async fn replays_after_a_restart_are_not_processed_twice() {
    let journal = Arc::new(MemoryWebhookJournal::new());
    let b = body(&[
        inbound("m1", "Да"),
        delivery("out-1", DeliveryStatus::Read),
        signal("RED"),
    ]);
    let (app, sink, task) = journaled(journal.clone(), |r| r);
    assert_eq!(send(&app, signed(b.clone())).await.0, StatusCode::OK);
    sink.wait_for(3).await;
    drop(app);
    task.await.unwrap();

    // A new process (fresh memory) on the same journal gets the provider's replay.
    let (app, sink, _t) = journaled(journal.clone(), |r| r);
    assert_eq!(
        send(&app, signed(b)).await,
        (StatusCode::OK, "100".to_owned())
    );
    let other_body = body(&[
        delivery("out-1", DeliveryStatus::Read),
        inbound("m1", "Да (другой JSON)"),
    ]);
    assert_eq!(send(&app, signed(other_body)).await.0, StatusCode::OK);
    sink.settle(0).await;
}

#[tokio::test]
async fn events_left_in_the_journal_are_processed_on_start() {
    let journal = Arc::new(MemoryWebhookJournal::new());
    // What a process killed after answering 200 left behind: recorded, claimed, never marked.
    let d = DeliveryReport::new(
        ChannelKind::Sms,
        "left-1",
        DeliveryStatus::Delivered,
        Utc::now(),
    );
    let rec = JournalRecord::new(Event::Delivery(d)).key("dlr|test|left-1|Delivered");
    journal.record(&[rec], Utc::now()).await.unwrap();
    let claimed = journal
        .claim(Utc::now(), 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    let (_app, sink, _t) = journaled(journal.clone(), |r| r);
    sink.wait_for(1).await;
    assert!(
        matches!(&sink.events.lock().unwrap()[0], Event::Delivery(d) if d.provider_message_id.as_str() == "left-1")
    );
}

#[derive(Debug, Default)]
struct Refusing {
    calls: AtomicUsize,
    refuse_first: usize,
}

#[async_trait]
impl EventSink for Refusing {
    async fn handle(&self, _: &Event) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.refuse_first {
            Err("engine store unavailable".into())
        } else {
            Ok(())
        }
    }
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn a_failing_sink_is_retried_with_backoff_and_then_marked_failed() {
    // Fails twice, then takes it: processed on the third attempt.
    let journal = Arc::new(MemoryWebhookJournal::new());
    let sink = Arc::new(Refusing {
        refuse_first: 2,
        ..Refusing::default()
    });
    let (app, _t) = WebhookRouter::new()
        .mount("/hooks/test", Arc::new(TestProvider::default()))
        .journal(journal.clone())
        .poll_interval(Duration::from_millis(10))
        .retry_delay(Duration::from_millis(30))
        .max_attempts(3)
        .sink(sink.clone())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let b = body(&[delivery("out-9", DeliveryStatus::Delivered)]);
    assert_eq!(send(&app, signed(b)).await.0, StatusCode::OK);
    wait_until(|| sink.calls.load(Ordering::SeqCst) == 3).await;
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "backoff of 30 ms then 60 ms"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sink.calls.load(Ordering::SeqCst),
        3,
        "not handed over again"
    );
    assert_eq!(journal.pending().await.unwrap(), 0);

    // Always refused: given up after the last attempt, not handed over again.
    let journal = Arc::new(MemoryWebhookJournal::new());
    let sink = Arc::new(Refusing {
        refuse_first: usize::MAX,
        ..Refusing::default()
    });
    let (app, _t) = WebhookRouter::new()
        .mount("/hooks/test", Arc::new(TestProvider::default()))
        .journal(journal.clone())
        .poll_interval(Duration::from_millis(10))
        .retry_delay(Duration::from_millis(5))
        .max_attempts(3)
        .sink(sink.clone())
        .spawn()
        .unwrap();
    let b = body(&[delivery("out-10", DeliveryStatus::Delivered)]);
    assert_eq!(send(&app, signed(b)).await.0, StatusCode::OK);
    wait_until(|| sink.calls.load(Ordering::SeqCst) >= 3).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(sink.calls.load(Ordering::SeqCst), 3, "at most 3 attempts");
    assert_eq!(journal.pending().await.unwrap(), 0, "failed, not pending");
    // Its key still drops the provider's retry.
    let b = body(&[delivery("out-10", DeliveryStatus::Delivered)]);
    assert_eq!(send(&app, signed(b)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sink.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn with_a_journal_a_full_backlog_answers_503_and_the_retry_is_processed() {
    let journal = Arc::new(MemoryWebhookJournal::new());
    let sink = Arc::new(Collect::default());
    let (app, processor) = WebhookRouter::new()
        .mount("/hooks/test", Arc::new(TestProvider::default()))
        .journal(journal.clone())
        .sink(sink.clone())
        .queue_capacity(1)
        .build()
        .unwrap();
    let second = body(&[inbound("m2", "2")]);
    assert_eq!(
        send(&app, signed(body(&[inbound("m1", "1")]))).await.0,
        StatusCode::OK
    );
    let resp = app.clone().oneshot(signed(second.clone())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        journal.pending().await.unwrap(),
        1,
        "the refused call is not recorded"
    );

    tokio::spawn(processor.run());
    sink.wait_for(1).await;
    wait_until(|| {
        // The backlog drains once the first event is marked.
        journal.pending().now_or_never().and_then(Result::ok) == Some(0)
    })
    .await;
    assert_eq!(send(&app, signed(second)).await.0, StatusCode::OK);
    sink.wait_for(2).await;
}

/// A provider that signs nothing (like SMS.ru, SMSC and SMS Aero): any body parses.
#[derive(Debug, Default)]
struct UnsignedProvider;

impl WebhookHandler for UnsignedProvider {
    fn provider(&self) -> &'static str {
        "unsigned"
    }
    fn channel_kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }
    fn verify(&self, _: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        Ok(())
    }
    fn authenticates(&self) -> bool {
        false
    }
    fn parse(&self, request: &WebhookRequest<'_>) -> Result<Vec<Event>, WebhookError> {
        TestProvider::default().parse(request)
    }
}

#[tokio::test]
async fn an_unsigned_handler_is_served_only_behind_a_guard() {
    use messaging_conversations::router::UnsignedGuard;
    let h: Arc<dyn WebhookHandler> = Arc::new(UnsignedProvider);
    // Mounted like a signed one: refused, so a forged "delivered" has nowhere to go.
    assert!(matches!(
        WebhookRouter::new()
            .mount("/hooks/sms", h.clone())
            .build()
            .err(),
        Some(RouterError::Unguarded {
            provider: "unsigned",
            ..
        })
    ));
    // A guessable secret is refused without being repeated.
    let weak = WebhookRouter::new()
        .mount_unsigned(
            "/hooks/sms",
            h.clone(),
            UnsignedGuard::SecretPath("1234".into()),
        )
        .build()
        .expect_err("refused");
    assert!(matches!(weak, RouterError::WeakSecret(_)));
    assert!(!weak.to_string().contains("1234"), "{weak}");

    const SECRET: &str = "Zq7-secret_path-0123456789";
    let router = WebhookRouter::new().mount_unsigned(
        "/hooks/sms",
        h.clone(),
        UnsignedGuard::SecretPath(SECRET.into()),
    );
    assert!(!format!("{router:?}").contains(SECRET), "{router:?}");
    // The processor is kept (not run): its queue takes the calls.
    let (app, _processor) = router.build().expect("router");
    let post = |path: String| {
        Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body(&[delivery(
                "m-1",
                DeliveryStatus::Delivered,
            )])))
            .unwrap()
    };
    assert_eq!(
        send(&app, post("/hooks/sms".into())).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, post("/hooks/sms/not-the-secret-0000".into()))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, post(format!("/hooks/sms/{SECRET}"))).await.0,
        StatusCode::OK
    );

    // Behind an allow-list the user enforces, it is served at its path.
    let (app, _processor) = WebhookRouter::new()
        .mount_unsigned("/hooks/sms", h, UnsignedGuard::AllowList)
        .build()
        .expect("router");
    assert_eq!(
        send(&app, post("/hooks/sms".into())).await.0,
        StatusCode::OK
    );
}

/// A sink that takes `cost` per event and notes how many events it held at once, and how many
/// journal entries were still pending when each event arrived.
#[derive(Debug)]
struct Slow {
    cost: Duration,
    journal: Arc<MemoryWebhookJournal>,
    now: AtomicUsize,
    most: AtomicUsize,
    done: AtomicUsize,
    pending_seen: Mutex<Vec<usize>>,
}

impl Slow {
    fn new(cost: Duration, journal: Arc<MemoryWebhookJournal>) -> Self {
        Slow {
            cost,
            journal,
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            pending_seen: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl EventSink for Slow {
    async fn handle(&self, _: &Event) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let pending = self.journal.pending().await.unwrap();
        self.pending_seen.lock().unwrap().push(pending);
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(self.cost).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Delivery reports `from..from + n` in one signed body.
fn reports(from: usize, n: usize) -> Vec<u8> {
    let events: Vec<_> = (from..from + n)
        .map(|i| delivery(&format!("out-{i}"), DeliveryStatus::Delivered))
        .collect();
    body(&events)
}

#[tokio::test]
async fn by_default_each_event_is_marked_before_the_next_is_handed_over() {
    let journal = Arc::new(MemoryWebhookJournal::new());
    let sink = Arc::new(Slow::new(Duration::from_millis(2), journal.clone()));
    let (app, _t) = WebhookRouter::new()
        .mount("/hooks/test", Arc::new(TestProvider::default()))
        .journal(journal.clone())
        .sink(sink.clone())
        .spawn()
        .unwrap();
    assert_eq!(send(&app, signed(reports(0, 20))).await.0, StatusCode::OK);
    wait_until(|| sink.done.load(Ordering::SeqCst) == 20).await;
    assert_eq!(sink.most.load(Ordering::SeqCst), 1, "one at a time");
    // A crash hands at most the event in the sinks over again: every earlier one is marked.
    let seen = sink.pending_seen.lock().unwrap().clone();
    assert_eq!(seen, (1..=20).rev().collect::<Vec<_>>());
    wait_until(|| journal.pending().now_or_never().and_then(Result::ok) == Some(0)).await;
}

#[tokio::test]
async fn with_concurrency_the_sinks_take_events_together_and_every_one_is_marked() {
    let journal = Arc::new(MemoryWebhookJournal::new());
    let sink = Arc::new(Slow::new(Duration::from_millis(20), journal.clone()));
    let (app, _t) = WebhookRouter::new()
        .mount("/hooks/test", Arc::new(TestProvider::default()))
        .journal(journal.clone())
        .process_concurrency(8)
        .sink(sink.clone())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    for from in [0, 10, 20, 30] {
        assert_eq!(
            send(&app, signed(reports(from, 10))).await.0,
            StatusCode::OK
        );
    }
    wait_until(|| sink.done.load(Ordering::SeqCst) == 40).await;
    let most = sink.most.load(Ordering::SeqCst);
    assert!((2..=8).contains(&most), "{most} at once, expected up to 8");
    assert!(
        started.elapsed() < Duration::from_millis(40 * 20),
        "not one after another: {:?}",
        started.elapsed()
    );
    // A crash could hand over again only what is in the sinks or not yet marked: at most 8.
    let seen = sink.pending_seen.lock().unwrap().clone();
    for (i, pending) in seen.iter().enumerate() {
        assert!(*pending + i <= 40 + 7, "{i}: {pending} pending");
    }
    wait_until(|| journal.pending().now_or_never().and_then(Result::ok) == Some(0)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sink.done.load(Ordering::SeqCst), 40, "each event once");
}

#[derive(Debug, Default)]
struct PanicsOnce {
    calls: AtomicUsize,
}

#[async_trait]
impl EventSink for PanicsOnce {
    async fn handle(&self, _: &Event) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("a bug in a sink");
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_panicking_sink_is_retried_and_the_processor_goes_on() {
    let journal = Arc::new(MemoryWebhookJournal::new());
    let sink = Arc::new(PanicsOnce::default());
    let (app, task) = WebhookRouter::new()
        .mount("/hooks/test", Arc::new(TestProvider::default()))
        .journal(journal.clone())
        .poll_interval(Duration::from_millis(10))
        .retry_delay(Duration::from_millis(10))
        .sink(sink.clone())
        .spawn()
        .unwrap();
    assert_eq!(send(&app, signed(reports(0, 1))).await.0, StatusCode::OK);
    wait_until(|| sink.calls.load(Ordering::SeqCst) == 2).await;
    wait_until(|| journal.pending().now_or_never().and_then(Result::ok) == Some(0)).await;
    assert!(!task.is_finished(), "the processor survived the panic");
}
