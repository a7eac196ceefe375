//! WhatsApp webhooks over real HTTP: an axum endpoint built on `WabaWebhook`, called like Meta
//! calls it (GET handshake, signed POSTs), feeding the channel's window.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use chrono::{TimeZone, Utc};
use messaging::waba::{WabaChannel, WabaWebhook};
use messaging::webhook::{WebhookHandler, WebhookRequest, hmac_sha256_hex};
use messaging::{Address, Clock, Event, ManualClock};
use messaging_tests::waba::{FakeGraph, TOKEN};
use tokio::sync::Mutex;

const SECRET: &str = "meta-app-secret";
const VERIFY: &str = "verify-me";

struct App {
    handler: WabaWebhook,
    channel: WabaChannel,
    events: Mutex<Vec<Event>>,
}

async fn serve(app: Arc<App>) -> String {
    let router = Router::new().route(
        "/wa",
        axum::routing::any(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let app = app.clone();
                async move {
                    let url = uri.to_string();
                    let req = WebhookRequest {
                        method: &method,
                        url: Some(&url),
                        headers: &headers,
                        body: &body,
                    };
                    if let Some(h) = app.handler.handshake(&req) {
                        return match h {
                            Ok(reply) => (StatusCode::OK, reply.body).into_response(),
                            Err(e) => status(e.http_status()).into_response(),
                        };
                    }
                    match app.handler.verify_and_parse(&req) {
                        Ok(events) => {
                            for e in &events {
                                let _ = app.channel.observe(e).await;
                            }
                            app.events.lock().await.extend(events);
                            StatusCode::OK.into_response()
                        }
                        Err(e) => status(e.http_status()).into_response(),
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}/wa")
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn inbound_body(ts: i64) -> String {
    // Meta escapes non-ASCII as \uXXXX; the signature covers these exact bytes.
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"\u0410\u043d\u043d\u0430"}},"wa_id":"79990001122"}}],"messages":[{{"from":"79990001122","id":"wamid.in1","timestamp":"{ts}","type":"text","text":{{"body":"\u0414\u0430"}}}}]}}}}]}}]}}"#
    )
}

#[tokio::test]
async fn handshake_signatures_and_window_over_http() {
    let fake = FakeGraph::start().await;
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
            .single()
            .expect("t"),
    );
    let channel = WabaChannel::cloud_api("wa-main", "106540352242922", TOKEN)
        .base_url(fake.base_url())
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("channel");
    let handler = channel.webhook().app_secret(SECRET).verify_token(VERIFY);
    let app = Arc::new(App {
        handler,
        channel,
        events: Mutex::new(Vec::new()),
    });
    let url = serve(app.clone()).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // GET handshake.
    let ok = http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=1158201444"
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.expect("body"), "1158201444");
    let bad = http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 403);

    let body = inbound_body(clock.now().timestamp());
    let good_sig = format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes())
    );
    let post = |sig: Option<String>, body: String| {
        let mut r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = sig {
            r = r.header("X-Hub-Signature-256", s);
        }
        r.send()
    };
    // Missing, wrongly prefixed, tampered: refused, nothing processed.
    assert_eq!(post(None, body.clone()).await.expect("post").status(), 401);
    let sha1 = good_sig.replace("sha256=", "sha1=");
    assert_eq!(
        post(Some(sha1), body.clone()).await.expect("post").status(),
        403
    );
    let tampered = body.replace("wamid.in1", "wamid.in2");
    assert_eq!(
        post(Some(good_sig.clone()), tampered)
            .await
            .expect("post")
            .status(),
        403
    );
    assert!(app.events.lock().await.is_empty());
    assert!(
        !app.channel
            .is_window_open(&Address::WhatsApp("79990001122".into()))
            .await
    );

    // Valid: parsed, the window opens.
    assert_eq!(
        post(Some(good_sig), body).await.expect("post").status(),
        200
    );
    let events = app.events.lock().await.clone();
    assert_eq!(events.len(), 1);
    let Event::Inbound(m) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(m.text.as_deref(), Some("Да"));
    assert_eq!(m.sender_name.as_deref(), Some("Анна"));
    assert_eq!(m.channel_id.as_ref().map(|c| c.as_str()), Some("wa-main"));
    assert!(
        app.channel
            .is_window_open(&Address::WhatsApp("79990001122".into()))
            .await
    );

    // Not a WhatsApp webhook, correctly signed: 400.
    let page = r#"{"object":"page","entry":[]}"#.to_owned();
    let sig = format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), page.as_bytes())
    );
    assert_eq!(post(Some(sig), page).await.expect("post").status(), 400);
}
