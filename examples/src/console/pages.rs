//! The pages: handlers and their HTML (maud escapes every value it is given).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Form, Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use futures::Stream;
use maud::{DOCTYPE, Markup, html};
use messaging::engine::{AttemptState, CascadeRecord, HistoryKind, Outcome, Phase};
use messaging::identity::{Link, Provenance};
use messaging::inbox::{Direction, InboxMessage, ReplyError, ThreadId};
use messaging::store::ListQuery;
use messaging::{
    Address, ChannelKind, ContactId, Content, Evidence, NotificationId, Template, TemplateComponent,
};
use serde::Deserialize;
use tokio::sync::broadcast;

use super::auth::{self, LOGIN_COOKIE, Operator, SESSION_COOKIE};
use super::{AuditEntry, Live, MAX_CASCADES, State, Tick, kinds_of, lock, unknown_label};

type Shared = Arc<State>;

const JS: &str = include_str!("static/console.js");
const CSS: &str = include_str!("static/console.css");

pub(super) fn router(state: Shared) -> Router {
    let private = Router::new()
        .route("/", get(threads_page))
        .route("/fragment/threads", get(threads_fragment))
        .route("/fragment/health", get(health_fragment))
        .route("/t/{thread}", get(thread_page))
        .route("/t/{thread}/fragment", get(messages_fragment))
        .route("/t/{thread}/reply", post(reply))
        .route("/patients", get(patients_page))
        .route("/patients/{contact}", get(patient_page))
        .route("/links", get(links_page))
        .route("/link", post(link))
        .route("/unlink", post(unlink))
        .route("/cascades", get(cascades_page))
        .route("/fragment/cascades", get(cascades_fragment))
        .route("/cascades/{id}", get(cascade_page))
        .route("/cascades/{id}/fragment", get(cascade_fragment))
        .route("/events", get(events))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/static/console.js", get(js))
        .route("/static/console.css", get(css))
        .merge(private)
        .layer(middleware::from_fn(auth::security_headers))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Ids in URLs as hex: thread, contact and notification ids may hold any character.
pub(crate) fn enc(s: &str) -> String {
    hex::encode(s.as_bytes())
}

fn dec(s: &str) -> Option<String> {
    hex::decode(s).ok().and_then(|b| String::from_utf8(b).ok())
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

fn failed(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "console: a store call failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the store failed; try again",
    )
        .into_response()
}

fn time(state: &State, at: DateTime<Utc>) -> String {
    time_in(state.config.time_zone, at)
}

fn time_in(tz: chrono_tz::Tz, at: DateTime<Utc>) -> String {
    let local = at.with_timezone(&tz);
    let now = Utc::now().with_timezone(&tz);
    if local.date_naive() == now.date_naive() {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%d.%m %H:%M").to_string()
    }
}

fn kind_name(k: ChannelKind) -> &'static str {
    match k {
        ChannelKind::WhatsApp => "WhatsApp",
        ChannelKind::Telegram => "Telegram",
        ChannelKind::Max => "Max",
        ChannelKind::Sms => "SMS",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

fn badge(k: ChannelKind) -> Markup {
    html! { span class={"badge " (format!("{k}").to_lowercase())} { (kind_name(k)) } }
}

fn address_text(a: &Address) -> String {
    match a {
        Address::Telegram(id) => format!("Telegram {id}"),
        Address::MaxUser(id) => format!("Max user {id}"),
        Address::MaxChat(id) => format!("Max chat {id}"),
        Address::WhatsApp(w) => format!("WhatsApp +{}", w.trim_start_matches('+')),
        Address::Phone(p) => format!("phone {p}"),
        #[allow(unreachable_patterns)]
        other => other.key(),
    }
}

fn provenance_text(p: Provenance) -> &'static str {
    match p {
        Provenance::SharedContact => "shared their own phone in the messenger",
        Provenance::DeepLink => "opened a signed link sent to them",
        Provenance::Operator => "linked by an operator",
        Provenance::WhatsAppPhone => "WhatsApp number is their phone",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

fn layout(state: &State, op: &Operator, title: &str, active: &str, body: Markup) -> Html<String> {
    let nav = [
        ("/", "Conversations", "c"),
        ("/cascades", "Notices", "n"),
        ("/patients", "Patients", "p"),
        ("/links", "Link requests", "l"),
    ];
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="csrf-token" content=(op.csrf);
                    title { (title) " · clinic console" }
                    link rel="stylesheet" href="/static/console.css";
                    script src="/static/console.js" defer {}
                }
                body {
                    header {
                        strong { "Clinic console" }
                        nav {
                            @for (href, label, key) in nav {
                                a href=(href) accesskey=(key) class=[(active == href).then_some("active")] {
                                    (label) " " kbd { "Alt+" (key.to_uppercase()) }
                                }
                            }
                        }
                        form method="post" action="/logout" class="logout" {
                            input type="hidden" name="csrf" value=(op.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                    @if let Some(b) = &state.config.banner { p class="banner" { (b) } }
                    div class="main" {
                        main { (body) }
                        aside {
                            h2 { "Channels" }
                            div id="health" data-live="/fragment/health" data-on="health" {
                                (health_panel(state))
                            }
                        }
                    }
                    span id="live-status" class="live-status" { "connecting…" }
                }
            }
        }
        .into_string(),
    )
}

fn health_panel(state: &State) -> Markup {
    let map = lock(&state.health).clone();
    html! {
        ul class="health" {
            @for (id, kind) in &state.config.channels {
                @let (st, since, reason) = map.get(id).cloned()
                    .unwrap_or_else(|| ("unknown".into(), Utc::now(), String::new()));
                li class={"h-" (st)} title=(reason) {
                    (badge(*kind)) " " span class="ch" { (id) } " "
                    strong { (st) } " "
                    small { "since " (time(state, since)) }
                }
            }
        }
    }
}

async fn health_fragment(AxumState(state): AxumState<Shared>) -> Html<String> {
    Html(health_panel(&state).into_string())
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
}

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

fn login_html(token: &str, error: Option<&str>) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "Log in · clinic console" }
                    link rel="stylesheet" href="/static/console.css";
                }
                body class="login" {
                    form method="post" action="/login" {
                        h1 { "Clinic console" }
                        @if let Some(e) = error { p class="error" role="alert" { (e) } }
                        input type="hidden" name="csrf" value=(token);
                        label { "Operator password "
                            input type="password" name="password" id="password" autofocus required autocomplete="current-password";
                        }
                        button type="submit" id="login" { "Log in" }
                    }
                }
            }
        }
        .into_string(),
    )
}

fn login_response(state: &State, error: Option<&str>, status: StatusCode) -> Response {
    let t = auth::token();
    let mut res = (status, login_html(&t, error)).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        state.auth.cookie(LOGIN_COOKIE, &t, Some(3600)),
    );
    res
}

async fn login_page(AxumState(state): AxumState<Shared>) -> Response {
    login_response(&state, None, StatusCode::OK)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    AxumState(state): AxumState<Shared>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let token_ok = auth::cookie(&headers, LOGIN_COOKIE)
        .is_some_and(|c| !form.csrf.is_empty() && auth::same_token(c, &form.csrf));
    if !token_ok {
        return login_response(
            &state,
            Some("The form expired; please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    if !state.auth.may_try() {
        return login_response(
            &state,
            Some("Too many attempts; wait a minute."),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    match state.auth.login(&form.password) {
        Some(session) => {
            tracing::info!("console: an operator logged in");
            let mut res = Redirect::to("/").into_response();
            res.headers_mut().append(
                header::SET_COOKIE,
                state.auth.cookie(SESSION_COOKIE, &session, None),
            );
            res.headers_mut().append(
                header::SET_COOKIE,
                state.auth.cookie(LOGIN_COOKIE, "", Some(0)),
            );
            res
        }
        None => login_response(&state, Some("Wrong password."), StatusCode::UNAUTHORIZED),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    AxumState(state): AxumState<Shared>,
    Extension(op): Extension<Operator>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !op.csrf_ok(&headers, Some(&form.csrf)) {
        return (StatusCode::FORBIDDEN, "bad CSRF token").into_response();
    }
    state.auth.logout(&op.session);
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        state.auth.cookie(SESSION_COOKIE, "", Some(0)),
    );
    res
}

// ---------------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------------

struct ThreadRow {
    id: ThreadId,
    label: String,
    last: Option<InboxMessage>,
    unread: usize,
    kinds: Vec<ChannelKind>,
    linked: bool,
}

async fn thread_rows(state: &State) -> Result<Vec<ThreadRow>, Response> {
    let inbox = &state.parts.inbox;
    let ids = inbox.threads().await.map_err(failed)?;
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        let messages = inbox.thread(&id).await.map_err(failed)?;
        let read = lock(&state.read_at).get(&id).copied();
        let unread = messages
            .iter()
            .filter(|m| m.direction == Direction::In && read.is_none_or(|r| m.at > r))
            .count();
        let kinds: HashSet<ChannelKind> = messages.iter().map(|m| m.channel).collect();
        let last = messages.iter().max_by_key(|m| m.at).cloned();
        let contact = messages.iter().find_map(|m| m.contact.clone());
        let label = match (&contact, messages.first()) {
            (Some(c), _) => state.label(Some(c), &messages[0].address),
            (None, Some(m)) => unknown_label(&m.address),
            (None, None) => id.to_string(),
        };
        rows.push(ThreadRow {
            id,
            label,
            last,
            unread,
            kinds: kinds_of(&kinds),
            linked: contact.is_some(),
        });
    }
    rows.sort_by(|a, b| {
        b.last
            .as_ref()
            .map(|m| m.at)
            .cmp(&a.last.as_ref().map(|m| m.at))
    });
    Ok(rows)
}

fn threads_list(state: &State, rows: &[ThreadRow]) -> Markup {
    html! {
        @if rows.is_empty() { p class="empty" { "No conversations yet." } }
        ol class="threads" {
            @for r in rows {
                li class=[(r.unread > 0).then_some("unread")] {
                    a href={"/t/" (enc(r.id.as_str()))} {
                        div class="row1" {
                            span class="who" { (r.label) }
                            @if !r.linked { span class="tag" { "not linked" } }
                            @if r.unread > 0 { span class="count" title="unread messages" { (r.unread) } }
                            span class="kinds" { @for k in &r.kinds { (badge(*k)) " " } }
                            @if let Some(m) = &r.last { span class="when" { (time(state, m.at)) } }
                        }
                        @if let Some(m) = &r.last {
                            div class="preview" {
                                @if m.direction == Direction::Out { "You: " }
                                @if m.deleted_at.is_some() { "(deleted) " }
                                (m.text.as_deref().unwrap_or("(no text)").chars().take(120).collect::<String>())
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn threads_page(
    AxumState(state): AxumState<Shared>,
    Extension(op): Extension<Operator>,
) -> Response {
    let rows = match thread_rows(&state).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    layout(
        &state,
        &op,
        "Conversations",
        "/",
        html! {
            h1 { "Conversations" }
            div id="threads" data-live="/fragment/threads" data-on="thread" {
                (threads_list(&state, &rows))
            }
        },
    )
    .into_response()
}

async fn threads_fragment(AxumState(state): AxumState<Shared>) -> Response {
    match thread_rows(&state).await {
        Ok(rows) => Html(threads_list(&state, &rows).into_string()).into_response(),
        Err(e) => e,
    }
}

fn tick_of(state: &State, m: &InboxMessage) -> Option<Tick> {
    let pmid = m.provider_message_id.as_ref()?.to_string();
    Some(lock(&state.ticks).get(&pmid).copied().unwrap_or(Tick::Sent))
}

fn tick_marks(t: Tick) -> &'static str {
    match t {
        Tick::Sent => "✓",
        Tick::Delivered | Tick::Read => "✓✓",
        Tick::Failed => "✗",
    }
}

/// One message. Everything the patient wrote goes through maud's escaping.
fn message_html(
    tz: chrono_tz::Tz,
    m: &InboxMessage,
    tick: Option<Tick>,
    notice: Option<&NotificationId>,
) -> Markup {
    let dir = match m.direction {
        Direction::In => "in",
        Direction::Out => "out",
    };
    html! {
        li class={"msg " (dir) (if m.deleted_at.is_some() { " deleted" } else { "" })} data-id=(m.id) {
            div class="meta" {
                (badge(m.channel)) " "
                time datetime=(m.at.to_rfc3339()) { (time_in(tz, m.at)) }
                @if let Some(e) = m.edited_at { " " span class="edited" title={"edited " (time_in(tz, e))} { "edited" } }
                @if let Some(d) = m.deleted_at { " " span class="deleted-note" { "deleted by the patient at " (time_in(tz, d)) } }
                @if m.opt_out { " " span class="optout" { "opted out" } }
                @if let Some(n) = notice { " " a class="notice-link" href={"/cascades/" (enc(n.as_str()))} { "reminder " (n) } }
            }
            p class="text" { (m.text.as_deref().unwrap_or("(no text)")) }
            @if let Some(r) = &m.reaction { span class="reaction" title="reaction" { (r) } }
            @if m.direction == Direction::Out {
                @if let Some(t) = tick {
                    span class={"tick " (t.name())} title=(t.name()) data-tick=(t.name()) {
                        (tick_marks(t)) " " (t.name())
                    }
                }
            }
        }
    }
}

/// A line of a thread: a message of the inbox, or a reminder a cascade sent.
struct Entry {
    message: InboxMessage,
    tick: Option<Tick>,
    notice: Option<NotificationId>,
}

fn messages_html(state: &State, entries: &[Entry]) -> Markup {
    html! {
        ol class="messages" {
            @for e in entries {
                (message_html(state.config.time_zone, &e.message, e.tick, e.notice.as_ref()))
            }
        }
    }
}

/// The reminders the patient was sent (each accepted attempt of the cascades the console
/// knows), with their evidence as ticks: the thread shows them among the messages.
async fn reminders_for(state: &State, contact: &ContactId) -> Vec<Entry> {
    let ids: Vec<NotificationId> = lock(&state.cascades).iter().cloned().collect();
    let mut out = Vec::new();
    for id in ids {
        let Ok(Some(r)) = state.parts.cascades.get(&id).await else {
            continue;
        };
        if r.notification.recipient.contact_id.as_ref() != Some(contact) {
            continue;
        }
        for a in &r.attempts {
            let Some(sent) = a.sent_at else { continue };
            let Some(kind) = state
                .config
                .channels
                .iter()
                .find(|(c, _)| c == &a.channel)
                .map(|(_, k)| *k)
            else {
                continue;
            };
            let Some(address) = r.notification.recipient.address_for(kind) else {
                continue;
            };
            let tick = match (&a.state, a.evidence) {
                (AttemptState::Failed { .. }, _) => Tick::Failed,
                (_, Some(Evidence::Read | Evidence::Replied)) => Tick::Read,
                (_, Some(Evidence::Delivered)) => Tick::Delivered,
                _ => Tick::Sent,
            };
            out.push(Entry {
                message: InboxMessage {
                    id: format!("{id}#{}", a.number),
                    thread: ThreadId::contact(contact),
                    contact: Some(contact.clone()),
                    direction: Direction::Out,
                    channel: kind,
                    channel_id: Some(a.channel.clone()),
                    address,
                    text: Some(r.notification.content.text_for(kind).to_owned()),
                    at: sent,
                    provider_message_id: a.provider_message_id.clone(),
                    opt_out: false,
                    inbound: None,
                    edited_at: None,
                    deleted_at: None,
                    reaction: None,
                },
                tick: Some(tick),
                notice: Some(id.clone()),
            });
        }
    }
    out
}

/// The thread's messages and the patient's reminders, oldest first.
async fn entries(state: &State, id: &ThreadId, messages: &[InboxMessage]) -> Vec<Entry> {
    let mut all: Vec<Entry> = messages
        .iter()
        .map(|m| Entry {
            tick: tick_of(state, m),
            message: m.clone(),
            notice: None,
        })
        .collect();
    let contact = messages.iter().find_map(|m| m.contact.clone()).or_else(|| {
        id.as_str()
            .strip_prefix("contact:")
            .map(|c| ContactId::from(c.to_owned()))
    });
    if let Some(c) = contact {
        all.extend(reminders_for(state, &c).await);
    }
    all.sort_by_key(|e| e.message.at);
    all
}

/// The message a reply answers: the patient's last message (its channel and address).
fn reply_target(messages: &[InboxMessage]) -> Option<&InboxMessage> {
    messages
        .iter()
        .filter(|m| m.direction == Direction::In)
        .max_by_key(|m| m.at)
}

fn templates_offer(state: &State) -> Markup {
    html! {
        div class="window-closed" role="alert" {
            p { "WhatsApp's 24-hour window with this patient is closed: free text cannot be sent. Send an approved template; your text fills its {{1}}." }
            @if state.config.templates.is_empty() {
                p { "No approved templates are configured." }
            } @else {
                label { "Template "
                    select name="template" form="reply" id="template" {
                        @for t in &state.config.templates {
                            option value=(t.name) { (t.name) " (" (t.language) "): " (t.preview) }
                        }
                    }
                }
                " Press Send again."
            }
        }
    }
}

async fn load_thread(
    state: &State,
    hex_id: &str,
) -> Result<(ThreadId, Vec<InboxMessage>), Response> {
    let id = ThreadId::from_raw(dec(hex_id).ok_or_else(not_found)?);
    let mut messages = state.parts.inbox.thread(&id).await.map_err(failed)?;
    if messages.is_empty() {
        return Err(not_found());
    }
    messages.sort_by_key(|m| m.at);
    Ok((id, messages))
}

fn thread_html(
    state: &State,
    op: &Operator,
    id: &ThreadId,
    messages: &[InboxMessage],
    lines: &[Entry],
    draft: &str,
    notice: Option<Markup>,
) -> Html<String> {
    let contact = messages.iter().find_map(|m| m.contact.clone());
    let label = state.label(contact.as_ref(), &messages[0].address);
    let target = reply_target(messages);
    let hex = enc(id.as_str());
    layout(
        state,
        op,
        &label,
        "/",
        html! {
            h1 { (label) }
            p class="sub" {
                @if let Some(c) = &contact {
                    a href={"/patients/" (enc(c.as_str()))} { "Patient card" }
                } @else {
                    a href="/links" { "Not linked to a patient: link by hand" }
                }
            }
            div id="thread" class="thread" data-live={"/t/" (hex) "/fragment"} data-on={"thread:" (hex)} {
                (messages_html(state, lines))
            }
            form id="reply" class="reply" method="post" action={"/t/" (hex) "/reply"} data-thread=(hex) {
                input type="hidden" name="csrf" value=(op.csrf);
                @if let Some(t) = target {
                    label for="text" {
                        "Reply on " (badge(t.channel)) " "
                        span id="reply-channel" { (kind_name(t.channel)) }
                        " — the channel the patient last wrote from (" (time(state, t.at)) ", " (address_text(&t.address)) ")"
                    }
                    textarea id="text" name="text" rows="3" autofocus
                        placeholder="Type a reply. Enter sends, Shift+Enter starts a new line." { (draft) }
                    div id="reply-notice" aria-live="polite" { @if let Some(n) = notice { (n) } }
                    button type="submit" id="send" { "Send" }
                } @else {
                    p { "The patient has not written yet: there is no channel to reply on." }
                }
            }
        },
    )
}

async fn thread_page(
    AxumState(state): AxumState<Shared>,
    Extension(op): Extension<Operator>,
    Path(thread): Path<String>,
) -> Response {
    let (id, messages) = match load_thread(&state, &thread).await {
        Ok(x) => x,
        Err(e) => return e,
    };
    lock(&state.read_at).insert(id.clone(), Utc::now());
    // The list's unread count changed.
    let _ = state.live.send(Live::Thread(id.clone()));
    let lines = entries(&state, &id, &messages).await;
    thread_html(&state, &op, &id, &messages, &lines, "", None).into_response()
}

async fn messages_fragment(
    AxumState(state): AxumState<Shared>,
    Path(thread): Path<String>,
) -> Response {
    match load_thread(&state, &thread).await {
        Ok((id, messages)) => {
            let lines = entries(&state, &id, &messages).await;
            lock(&state.read_at).insert(id, Utc::now());
            Html(messages_html(&state, &lines).into_string()).into_response()
        }
        Err(e) => e,
    }
}

#[derive(Deserialize)]
struct ReplyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    template: Option<String>,
}

async fn reply(
    AxumState(state): AxumState<Shared>,
    Extension(op): Extension<Operator>,
    Path(thread): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ReplyForm>,
) -> Response {
    if !op.csrf_ok(&headers, Some(&form.csrf)) {
        return (StatusCode::FORBIDDEN, "bad CSRF token").into_response();
    }
    // The page's script asks for a short answer; a plain form gets the page again.
    let scripted = headers.contains_key("x-console");
    let (id, messages) = match load_thread(&state, &thread).await {
        Ok(x) => x,
        Err(e) => return e,
    };
    let text = form.text.trim();
    let lines = if scripted {
        Vec::new()
    } else {
        entries(&state, &id, &messages).await
    };
    let answer = |status: StatusCode, notice: Markup| -> Response {
        if scripted {
            (status, Html(notice.into_string())).into_response()
        } else {
            (
                status,
                thread_html(
                    &state,
                    &op,
                    &id,
                    &messages,
                    &lines,
                    &form.text,
                    Some(notice),
                ),
            )
                .into_response()
        }
    };
    if text.is_empty() {
        return answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            html! { p class="error" { "Type a message first." } },
        );
    }
    let Some(target) = reply_target(&messages) else {
        return answer(
            StatusCode::CONFLICT,
            html! { p class="error" { "The patient has not written yet." } },
        );
    };
    let mut content = Content::text(text);
    if let Some(name) = form.template.as_deref().filter(|n| !n.is_empty()) {
        let Some(t) = state.config.templates.iter().find(|t| t.name == name) else {
            return answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                html! { p class="error" { "Unknown template." } },
            );
        };
        content = content.with_template(
            Template::new(&t.name, &t.language).component(TemplateComponent::body_text([text])),
        );
    }
    match state.parts.inbox.reply(target, content).await {
        Ok(receipt) => {
            let pmid = receipt.provider_message_id.to_string();
            lock(&state.ticks).entry(pmid.clone()).or_insert(Tick::Sent);
            lock(&state.sent_in).insert(pmid, id.clone());
            lock(&state.read_at).insert(id.clone(), Utc::now());
            let _ = state.live.send(Live::Thread(id.clone()));
            if scripted {
                StatusCode::NO_CONTENT.into_response()
            } else {
                Redirect::to(&format!("/t/{}", enc(id.as_str()))).into_response()
            }
        }
        Err(ReplyError::WindowClosed { .. }) => {
            answer(StatusCode::CONFLICT, templates_offer(&state))
        }
        Err(e) => {
            tracing::warn!(error = %e, "console: a reply was not sent");
            answer(
                StatusCode::BAD_GATEWAY,
                html! { p class="error" { "Not sent: " (e.to_string()) ". Your text is kept; try again." } },
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Live updates
// ---------------------------------------------------------------------------------------------

async fn events(
    AxumState(state): AxumState<Shared>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.live.subscribe();
    let closing = state.closing.subscribe();
    let stream = futures::stream::unfold((rx, closing), |(mut rx, mut closing)| async move {
        let got = tokio::select! {
            got = rx.recv() => got,
            _ = closing.wait_for(|c| *c) => return None,
        };
        let ev = match got {
            Ok(Live::Thread(t)) => SseEvent::default().event("thread").data(enc(t.as_str())),
            Ok(Live::Cascade(id)) => SseEvent::default().event("cascade").data(enc(id.as_str())),
            Ok(Live::Health) => SseEvent::default().event("health").data("1"),
            // Missed events: refresh everything.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                SseEvent::default().event("thread").data("*")
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(ev), (rx, closing)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

// ---------------------------------------------------------------------------------------------
// Patients and links
// ---------------------------------------------------------------------------------------------

async fn patients_page(
    AxumState(state): AxumState<Shared>,
    Extension(op): Extension<Operator>,
) -> Response {
    let patients: Vec<_> = lock(&state.patients).values().cloned().collect();
    let mut rows = Vec::new();
    for p in patients {
        let links = match state.parts.identity.by_contact(&p.contact).await {
            Ok(l) => l,
            Err(e) => return failed(e),
        };
        rows.push((p, links));
    }
    layout(
        &state,
        &op,
        "Patients",
        "/patients",
        html! {
            h1 { "Patients" }
            table class="grid" {
                thead { tr { th { "Name" } th { "Phone" } th { "Linked messengers" } } }
                tbody {
                    @for (p, links) in &rows {
                        tr {
                            td { a href={"/patients/" (enc(p.contact.as_str()))} { (p.name) } }
                            td { @if let Some(ph) = &p.phone { (ph) } }
                            td { @for l in links { (address_text(&l.address)) @if !l.active { " (blocked)" } "; " } }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

fn link_row(state: &State, op: &Operator, l: &Link) -> Markup {
    html! {
        tr {
            td { (address_text(&l.address)) }
            td { (provenance_text(l.provenance))
                @if let Some(ph) = &l.phone { " (" (ph) ")" }
                @if let Some(t) = &l.token_id { " token " (t) } }
            td { (time(state, l.linked_at)) }
            td { @if l.active { "active" } @else { "blocked the bot" } }
            td {
                form method="post" action="/unlink" class="inline" {
                    input type="hidden" name="csrf" value=(op.csrf);
                    input type="hidden" name="address" value=(enc(&serde_json::to_string(&l.address).unwrap_or_default()));
                    input type="text" name="reason" required placeholder="reason" aria-label="reason to unlink";
                    button type="submit" { "Unlink" }
                }
            }
        }
    }
}

async fn patient_page(
    AxumState(state): AxumState<Shared>,
    Extension(op): Extension<Operator>,
    Path(contact): Path<String>,
) -> Response {
    let Some(contact) = dec(&contact).map(ContactId::from) else {
        return not_found();
    };
    let card = state.patient(&contact);
    let links = match state.parts.identity.by_contact(&contact).await {
        Ok(l) => l,
        Err(e) => return failed(e),
    };
    if card.is_none() && links.is_empty() {
        return not_found();
    }
    let name = card
        .as_ref()
        .map_or_else(|| contact.to_string(), |c| c.name.clone());
    let audit: Vec<AuditEntry> = lock(&state.audit)
        .iter()
        .filter(|a| a.contact == contact.as_str())
        .cloned()
        .collect();
    let thread = enc(ThreadId::contact(&contact).as_str());
    layout(
        &state,
        &op,
        &name,
        "/patients",
        html! {
            h1 { (name) }
            dl class="card" {
                dt { "Phone" } dd { @if let Some(p) = card.as_ref().and_then(|c| c.phone.as_ref()) { (p) } @else { "—" } }
                dt { "Contact id" } dd { code { (contact) } }
                dt { "Conversation" } dd { a href={"/t/" (thread)} { "open" } }
            }
            h2 { "Linked messengers" }
            @if links.is_empty() { p { "None." } } @else {
                table class="grid" {
                    thead { tr { th { "Address" } th { "How it was proven" } th { "Linked" } th { "State" } th { "" } } }
                    tbody { @for l in &links { (link_row(&state, &op, l)) } }
                }
            }
            h2 { "Changes by operators" }
            @if audit.is_empty() { p { "None." } } @else {
                ul { @for a in &audit { li { (time(&state, a.at)) ": " (a.action) " " (a.address) " — " q { (a.reason) } } } }
            }
        },
    )
    .into_response()
}

async fn links_page(
    AxumState(state): AxumState<Shared>,
    Extension(op): Extension<Operator>,
) -> Response {
    let rows = match thread_rows(&state).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let patients: Vec<_> = lock(&state.patients).values().cloned().collect();
    let waiting: Vec<_> = rows
        .into_iter()
        .filter(|r| !r.linked)
        .filter_map(|r| r.last.clone().map(|m| (r, m)))
        .collect();
    layout(
        &state,
        &op,
        "Link requests",
        "/links",
        html! {
            h1 { "Link requests" }
            p class="sub" { "People who wrote from a Telegram, Max or WhatsApp account no patient is linked to. The bot asks them to share their phone; link by hand when you know who they are." }
            @if waiting.is_empty() { p class="empty" { "Nobody is waiting." } }
            table class="grid" {
                @if !waiting.is_empty() {
                    thead { tr { th { "Sender" } th { "Last message" } th { "Asked to share phone" } th { "Link to patient" } } }
                }
                tbody {
                    @for (r, m) in &waiting {
                        tr {
                            td { a href={"/t/" (enc(r.id.as_str()))} { (r.label) } }
                            td { (time(&state, m.at)) ": " (m.text.as_deref().unwrap_or("")) }
                            td { @if state.parts.linker.as_ref().is_some_and(|l| l.is_pending(&m.address)) { "yes, waiting" } @else { "—" } }
                            td {
                                form method="post" action="/link" class="inline" {
                                    input type="hidden" name="csrf" value=(op.csrf);
                                    input type="hidden" name="address" value=(enc(&serde_json::to_string(&m.address).unwrap_or_default()));
                                    select name="contact" aria-label="patient" required {
                                        @for p in &patients { option value=(enc(p.contact.as_str())) { (p.name) @if let Some(ph) = &p.phone { " " (ph) } } }
                                    }
                                    input type="text" name="reason" required placeholder="reason (e.g. confirmed by phone call)" aria-label="reason";
                                    button type="submit" { "Link" }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    reason: String,
}

fn parse_address(hex_json: &str) -> Option<Address> {
    serde_json::from_str(&dec(hex_json)?).ok()
}

async fn link(
    AxumState(state): AxumState<Shared>,
    Extension(op): Extension<Operator>,
    headers: HeaderMap,
    Form(form): Form<LinkForm>,
) -> Response {
    if !op.csrf_ok(&headers, Some(&form.csrf)) {
        return (StatusCode::FORBIDDEN, "bad CSRF token").into_response();
    }
    let (Some(address), Some(contact)) = (
        parse_address(&form.address),
        dec(&form.contact).map(ContactId::from),
    ) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "bad address or patient").into_response();
    };
    let reason = form.reason.trim();
    if reason.is_empty() {
        return (StatusCode::UNPROCESSABLE_ENTITY, "a reason is required").into_response();
    }
    if state.patient(&contact).is_none() {
        return (StatusCode::UNPROCESSABLE_ENTITY, "unknown patient").into_response();
    }
    let now = Utc::now();
    let link = Link::new(address.clone(), contact.clone(), Provenance::Operator, now);
    if let Err(e) = state.parts.identity.link(&link).await {
        return failed(e);
    }
    // The address's messages join the patient's conversation.
    let to = ThreadId::contact(&contact);
    if let Err(e) = state
        .parts
        .inbox_store
        .rethread(&ThreadId::address(&address), &to, &contact)
        .await
    {
        return failed(e);
    }
    if let Some(l) = &state.parts.linker {
        l.forget(&address);
    }
    state.record_audit(AuditEntry {
        at: now,
        action: "link".into(),
        address: address.key(),
        contact: contact.to_string(),
        reason: reason.to_owned(),
    });
    let _ = state.live.send(Live::Thread(to));
    Redirect::to(&format!("/patients/{}", enc(contact.as_str()))).into_response()
}

async fn unlink(
    AxumState(state): AxumState<Shared>,
    Extension(op): Extension<Operator>,
    headers: HeaderMap,
    Form(form): Form<LinkForm>,
) -> Response {
    if !op.csrf_ok(&headers, Some(&form.csrf)) {
        return (StatusCode::FORBIDDEN, "bad CSRF token").into_response();
    }
    let Some(address) = parse_address(&form.address) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "bad address").into_response();
    };
    let reason = form.reason.trim();
    if reason.is_empty() {
        return (StatusCode::UNPROCESSABLE_ENTITY, "a reason is required").into_response();
    }
    let removed = match state.parts.identity.unlink(&address).await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let Some(link) = removed else {
        return not_found();
    };
    state.record_audit(AuditEntry {
        at: Utc::now(),
        action: "unlink".into(),
        address: address.key(),
        contact: link.contact.to_string(),
        reason: reason.to_owned(),
    });
    Redirect::to(&format!("/patients/{}", enc(link.contact.as_str()))).into_response()
}

// ---------------------------------------------------------------------------------------------
// Notices (cascades)
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default, Clone)]
struct CascadeFilter {
    #[serde(default)]
    state: String,
    #[serde(default)]
    channel: String,
}

/// "running", or the outcome's name.
fn cascade_state(r: &CascadeRecord) -> &'static str {
    match &r.phase {
        Phase::Finished(o) => o.name(),
        _ => "running",
    }
}

/// The states a notice can be filtered by: running, or how it ended.
fn states() -> impl Iterator<Item = &'static str> {
    std::iter::once("running").chain(Outcome::NAMES)
}

/// The store's list ([`CascadeReports::list`]): every cascade it holds, not only this run's.
/// "running" lists the running ones, the next due first; an outcome lists the finished ones
/// that ended so, the latest first; no state lists both. The channel is the current step's
/// while running and the one that ended it once finished.
async fn cascade_rows(state: &State, f: &CascadeFilter) -> Result<Vec<CascadeRecord>, Response> {
    let narrow = |q: ListQuery| {
        let q = if f.channel.is_empty() {
            q
        } else {
            q.channel(f.channel.as_str())
        };
        match f.state.as_str() {
            "" | "running" => q,
            outcome => q.state(outcome),
        }
    };
    let mut queries = Vec::new();
    if f.state.is_empty() || f.state == "running" {
        queries.push(narrow(ListQuery::running(MAX_CASCADES)));
    }
    if f.state != "running" {
        queries.push(narrow(ListQuery::finished(MAX_CASCADES)));
    }
    let mut out = Vec::new();
    for q in queries {
        for id in state.parts.reports.list(&q).await.map_err(failed)? {
            if let Some(r) = state.parts.cascades.get(&id).await.map_err(failed)? {
                out.push(r);
            }
        }
    }
    Ok(out)
}

fn recipient_label(state: &State, r: &CascadeRecord) -> String {
    let rec = &r.notification.recipient;
    match &rec.contact_id {
        Some(c) => state
            .patient(c)
            .map(|p| p.name)
            .or_else(|| rec.name.clone())
            .unwrap_or_else(|| c.to_string()),
        None => rec.name.clone().unwrap_or_else(|| "—".into()),
    }
}

fn cascades_table(state: &State, rows: &[CascadeRecord]) -> Markup {
    html! {
        @if rows.is_empty() { p class="empty" { "No notices match." } }
        table class="grid cascades" {
            @if !rows.is_empty() {
                thead { tr { th { "Notice" } th { "Patient" } th { "State" } th { "Channels tried" } th { "Submitted" } } }
            }
            tbody {
                @for r in rows {
                    tr {
                        td { a href={"/cascades/" (enc(r.id().as_str()))} { (r.id()) } }
                        td { (recipient_label(state, r)) }
                        td { span class={"state s-" (cascade_state(r))} { (cascade_state(r)) } }
                        td { (r.attempts.iter().map(|a| a.channel.to_string()).collect::<Vec<_>>().join(" → ")) }
                        td { (time(state, r.created_at)) }
                    }
                }
            }
        }
    }
}

fn query_string(f: &CascadeFilter) -> String {
    let mut s = form_urlencoded_pairs(&[("state", &f.state), ("channel", &f.channel)]);
    if !s.is_empty() {
        s.insert(0, '?');
    }
    s
}

fn form_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc_component(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn cascades_page(
    AxumState(state): AxumState<Shared>,
    Extension(op): Extension<Operator>,
    Query(f): Query<CascadeFilter>,
) -> Response {
    let rows = match cascade_rows(&state, &f).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    layout(
        &state,
        &op,
        "Notices",
        "/cascades",
        html! {
            h1 { "Notices" }
            form method="get" action="/cascades" class="filter" {
                label { "State "
                    select name="state" id="filter-state" {
                        option value="" { "any" }
                        @for s in states() { option value=(s) selected[f.state == s] { (s) } }
                    }
                }
                " "
                label { "Channel "
                    select name="channel" id="filter-channel" {
                        option value="" { "any" }
                        @for (id, _) in &state.config.channels { option value=(id) selected[f.channel == id.as_str()] { (id) } }
                    }
                }
                " " button type="submit" { "Filter" }
            }
            div id="cascades" data-live={"/fragment/cascades" (query_string(&f))} data-on="cascade" {
                (cascades_table(&state, &rows))
            }
        },
    )
    .into_response()
}

async fn cascades_fragment(
    AxumState(state): AxumState<Shared>,
    Query(f): Query<CascadeFilter>,
) -> Response {
    match cascade_rows(&state, &f).await {
        Ok(rows) => Html(cascades_table(&state, &rows).into_string()).into_response(),
        Err(e) => e,
    }
}

fn describe(state: &State, r: &CascadeRecord, at: DateTime<Utc>, k: &HistoryKind) -> String {
    match k {
        HistoryKind::Submitted { policy } => format!("submitted (policy {policy})"),
        HistoryKind::StepStarted { step, channel } => {
            format!("step {} started: {channel}", step + 1)
        }
        HistoryKind::Skipped {
            channel, reason, ..
        } => format!("{channel} skipped: {reason}"),
        HistoryKind::Deferred { channel, until, .. } => {
            format!("{channel} deferred until {}", time(state, *until))
        }
        HistoryKind::Sending {
            channel,
            attempt,
            possible_duplicate,
            ..
        } => format!(
            "sending on {channel} (attempt {attempt}{})",
            if *possible_duplicate {
                ", possible duplicate"
            } else {
                ""
            }
        ),
        HistoryKind::Sent {
            channel,
            provider_message_id,
            ..
        } => {
            // The window of the attempt being waited on is in the phase.
            let waiting = match &r.phase {
                Phase::Waiting {
                    attempt,
                    window_end,
                    ..
                } if r
                    .attempts
                    .get(*attempt)
                    .and_then(|a| a.provider_message_id.as_ref())
                    == Some(provider_message_id) =>
                {
                    Some(*window_end)
                }
                _ => None,
            };
            match waiting {
                Some(end) => format!(
                    "sent on {channel} ({provider_message_id}); waiting for evidence until {}",
                    time(state, end)
                ),
                _ => format!("sent on {channel} ({provider_message_id})"),
            }
        }
        HistoryKind::Failed {
            channel,
            kind,
            code,
            message,
            ..
        } => format!(
            "{channel} failed: {kind:?}{} {message}",
            code.as_deref()
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default()
        ),
        HistoryKind::OutcomeUnknown {
            channel, reason, ..
        } => format!(
            "{channel}: outcome unknown{}",
            reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        HistoryKind::Evidence {
            channel, evidence, ..
        } => format!("{channel}: {evidence}"),
        HistoryKind::WindowClosed {
            step,
            channel,
            early,
        } => {
            // How long it waited: from the step's last acceptance to now.
            let waited = r
                .attempts
                .iter()
                .filter(|a| a.step == *step)
                .filter_map(|a| a.sent_at)
                .max()
                .map(|sent| {
                    let secs = (at - sent).num_seconds().max(0);
                    if secs >= 120 {
                        format!(" in {} min", secs / 60)
                    } else {
                        format!(" in {secs} s")
                    }
                })
                .unwrap_or_default();
            if *early {
                format!("{channel}: no evidence{waited}; window closed early (channel unhealthy)")
            } else {
                format!("{channel}: no evidence{waited}; window closed")
            }
        }
        HistoryKind::Advanced { to: Some(to), .. } => format!("moved to step {}", to + 1),
        HistoryKind::Advanced { to: None, .. } => "no step left".into(),
        HistoryKind::Delivered {
            channel, evidence, ..
        } => format!("{evidence} on {channel}: done"),
        HistoryKind::LateDelivery {
            channel, evidence, ..
        } => {
            format!("late report: {evidence} on {channel}")
        }
        HistoryKind::Replied { channel } => format!("the patient replied on {channel}"),
        HistoryKind::Unconfirmed => "ended unconfirmed".into(),
        HistoryKind::Exhausted => "every channel tried: exhausted".into(),
        HistoryKind::Expired => "deadline passed: expired".into(),
        HistoryKind::Cancelled => "cancelled".into(),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "event".into()),
    }
}

fn timeline(state: &State, r: &CascadeRecord) -> Markup {
    html! {
        dl class="card" {
            dt { "Patient" } dd { (recipient_label(state, r)) }
            dt { "State" } dd { span class={"state s-" (cascade_state(r))} { (cascade_state(r)) } " (" (r.phase.name()) ")" }
            dt { "Policy" } dd { (r.policy) }
            dt { "Text" } dd { (r.notification.content.text) }
        }
        h2 { "Timeline" }
        ol class="timeline" {
            @for h in &r.history {
                li class=[h.kind.is_terminal().then_some("terminal")] {
                    time datetime=(h.at.to_rfc3339()) { (time(state, h.at)) }
                    " " (describe(state, r, h.at, &h.kind))
                }
            }
        }
        h2 { "Attempts" }
        table class="grid" {
            thead { tr { th { "Step" } th { "Channel" } th { "Started" } th { "Accepted" } th { "Evidence" } th { "State" } } }
            tbody {
                @for a in &r.attempts {
                    tr {
                        td { (a.step + 1) "." (a.number) }
                        td { (a.channel) }
                        td { (time(state, a.started_at)) }
                        td { @if let Some(t) = a.sent_at { (time(state, t)) } }
                        td { @if let (Some(e), Some(t)) = (a.evidence, a.evidence_at) { (e) " " (time(state, t)) } }
                        td { (format!("{:?}", a.state).to_lowercase()) @if a.possible_duplicate { " (possible duplicate)" } }
                    }
                }
            }
        }
    }
}

async fn load_cascade(state: &State, hex_id: &str) -> Result<CascadeRecord, Response> {
    let id = NotificationId::new(dec(hex_id).ok_or_else(not_found)?);
    state
        .parts
        .cascades
        .get(&id)
        .await
        .map_err(failed)?
        .ok_or_else(not_found)
}

async fn cascade_page(
    AxumState(state): AxumState<Shared>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
) -> Response {
    let r = match load_cascade(&state, &id).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    layout(
        &state,
        &op,
        r.id().as_str(),
        "/cascades",
        html! {
            h1 { "Notice " (r.id()) }
            div id="cascade" data-live={"/cascades/" (id) "/fragment"} data-on={"cascade:" (id)} {
                (timeline(&state, &r))
            }
        },
    )
    .into_response()
}

async fn cascade_fragment(AxumState(state): AxumState<Shared>, Path(id): Path<String>) -> Response {
    match load_cascade(&state, &id).await {
        Ok(r) => Html(timeline(&state, &r).into_string()).into_response(),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> InboxMessage {
        InboxMessage {
            id: "m1".into(),
            thread: ThreadId::from_raw("tg:5001"),
            contact: None,
            direction: Direction::In,
            channel: ChannelKind::Telegram,
            channel_id: None,
            address: Address::Telegram(5001),
            text: Some(text.into()),
            at: Utc::now(),
            provider_message_id: None,
            opt_out: false,
            inbound: None,
            edited_at: None,
            deleted_at: None,
            reaction: Some("<b>".into()),
        }
    }

    #[test]
    fn a_patients_markup_is_text() {
        let mut m = msg("<script>alert(1)</script>\"><img src=x onerror=alert(2)>");
        let html = message_html(chrono_tz::UTC, &m, None, None).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"),
            "{html}"
        );
        // An outbound message shows its tick; a deleted one says so and keeps its text.
        m.direction = Direction::Out;
        m.deleted_at = Some(Utc::now());
        let html = message_html(chrono_tz::UTC, &m, Some(Tick::Delivered), None).into_string();
        assert!(html.contains("data-tick=\"delivered\""), "{html}");
        assert!(html.contains("deleted by the patient"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn ids_round_trip_through_urls() {
        for s in ["tg:5001", "contact:patient-1", "a/b?c#d", "Анна"] {
            assert_eq!(dec(&enc(s)).as_deref(), Some(s));
        }
        assert_eq!(dec("zz"), None);
        assert_eq!(dec("ff"), None);
    }

    #[test]
    fn unknown_senders_are_named_by_channel() {
        assert_eq!(
            unknown_label(&Address::Telegram(5001)),
            "unknown Telegram user 5001"
        );
        assert_eq!(unknown_label(&Address::MaxUser(7)), "unknown Max user 7");
    }

    #[test]
    fn the_reply_goes_where_the_patient_last_wrote() {
        let mut a = msg("on telegram");
        a.at = Utc::now() - chrono::Duration::minutes(5);
        let mut b = msg("on whatsapp");
        b.channel = ChannelKind::WhatsApp;
        b.address = Address::WhatsApp("79120000001".into());
        let mut c = msg("our reply");
        c.direction = Direction::Out;
        c.at = Utc::now() + chrono::Duration::minutes(1);
        let all = [a, b.clone(), c];
        assert_eq!(
            reply_target(&all).map(|m| m.channel),
            Some(ChannelKind::WhatsApp)
        );
    }
}
