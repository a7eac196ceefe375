//! From channel configurations to adapters, webhook handlers, polling loops and status pollers.

use std::sync::Arc;
use std::time::Duration;

use messaging_conversations::router::UnsignedGuard;
use messaging_core::sink::{EventSink, Sinks};
use messaging_core::task::Supervised;
use messaging_core::webhook::{WebhookError, WebhookHandler, WebhookReply, WebhookRequest};
use messaging_core::window::WindowStore;
use messaging_core::{ChannelId, ChannelKind, DynChannel, Event};
#[allow(unused_imports)]
use secrecy::ExposeSecret;
use tokio::sync::watch;

#[allow(unused_imports)]
use super::config::Receive;
use super::config::{ChannelConfig, ConfigError, ConfigProblem, ProviderConfig, ServiceConfig};
use super::watch::Polled;

/// The pacing options every adapter's builder (and `SmsOptions`) takes by the same names, from
/// the channel's entry: a macro, because the builders share the words, not a trait. Unused when
/// no channel feature is on.
#[allow(unused_macros)]
macro_rules! pacing {
    ($builder:ident, $channel:expr) => {
        if let Some(n) = $channel.rate_limit {
            $builder = $builder.rate_limit(n);
        }
        if let Some(t) = $channel.timeout {
            $builder = $builder.timeout(t);
        }
    };
}

/// A polling loop, started once the engine exists.
pub(crate) type StartPolling =
    Box<dyn FnOnce(Sinks, watch::Receiver<bool>) -> Supervised<()> + Send>;

/// One webhook to mount.
pub(crate) struct Mount {
    pub(crate) channel: ChannelId,
    pub(crate) path: String,
    pub(crate) handler: Arc<dyn WebhookHandler>,
    pub(crate) guard: Option<UnsignedGuard>,
}

/// What the channels of a configuration became.
#[derive(Default)]
pub(crate) struct Built {
    pub(crate) channels: Vec<DynChannel>,
    pub(crate) order: Vec<(ChannelId, ChannelKind)>,
    /// Sinks that must see events before the engine (WhatsApp numbers: inbound messages open
    /// the 24-hour window).
    pub(crate) window_sinks: Vec<Arc<dyn EventSink>>,
    pub(crate) mounts: Vec<Mount>,
    pub(crate) polling: Vec<(String, StartPolling)>,
    pub(crate) status: Vec<(ChannelId, Polled)>,
    pub(crate) notes: Vec<String>,
}

/// A handler with another body limit (`limits.max_body`).
#[derive(Debug)]
struct BodyLimit {
    inner: Arc<dyn WebhookHandler>,
    limit: usize,
}

impl WebhookHandler for BodyLimit {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }
    fn channel_kind(&self) -> ChannelKind {
        self.inner.channel_kind()
    }
    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        self.inner.verify(request)
    }
    fn authenticates(&self) -> bool {
        self.inner.authenticates()
    }
    fn parse(&self, request: &WebhookRequest<'_>) -> Result<Vec<Event>, WebhookError> {
        self.inner.parse(request)
    }
    fn handshake(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Option<Result<WebhookReply, WebhookError>> {
        self.inner.handshake(request)
    }
    fn reply(&self) -> WebhookReply {
        self.inner.reply()
    }
    fn max_body(&self) -> usize {
        self.limit
    }
}

/// Builds every channel; an adapter that refuses a setting is a problem at the channel's path.
pub(crate) async fn build_channels(
    config: &ServiceConfig,
    windows: Arc<dyn WindowStore>,
) -> Result<Built, ConfigError> {
    let mut b = Built::default();
    let mut problems = Vec::new();
    for c in &config.channels {
        let before = b.mounts.len();
        if let Err(message) = build_one(config, c, &windows, &mut b).await {
            problems.push(ConfigProblem::new(format!("channels.{}", c.id), message));
            continue;
        }
        if let Some(limit) = config.limits.max_body {
            for m in &mut b.mounts[before..] {
                m.handler = Arc::new(BodyLimit {
                    inner: m.handler.clone(),
                    limit,
                });
            }
        }
        b.order.push((c.id.clone(), c.kind()));
    }
    if problems.is_empty() {
        Ok(b)
    } else {
        Err(ConfigError { problems })
    }
}

/// Stops when `stop` turns true.
#[allow(dead_code)]
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[allow(unused_variables, unused_mut)]
async fn build_one(
    config: &ServiceConfig,
    c: &ChannelConfig,
    windows: &Arc<dyn WindowStore>,
    b: &mut Built,
) -> Result<(), String> {
    let id = c.id.clone();
    let path = c.webhook_path();
    let hooks = c.receives_webhooks();
    match &c.provider {
        #[cfg(feature = "waba")]
        ProviderConfig::WhatsApp(wa) => {
            use super::config::WhatsAppAccount;
            use messaging_waba::WabaChannel;
            let mut builder = match &wa.account {
                WhatsAppAccount::CloudApi {
                    phone_number_id,
                    token,
                } => WabaChannel::cloud_api(id.clone(), phone_number_id, token.expose_secret()),
                WhatsAppAccount::Dialog360 { api_key } => {
                    WabaChannel::dialog360(id.clone(), api_key.expose_secret())
                }
            }
            .window_store(windows.clone());
            if let Some(u) = &c.base_url {
                builder = builder.base_url(u);
            }
            if let Some(v) = &wa.api_version {
                builder = builder.api_version(v);
            }
            if let Some(w) = &wa.waba_id {
                builder = builder.waba_id(w);
            }
            pacing!(builder, c);
            let channel = Arc::new(builder.build().map_err(|e| e.to_string())?);
            if wa.waba_id.is_some() {
                match channel.sync_templates().await {
                    Ok(n) => b
                        .notes
                        .push(format!("{id}: {n} WhatsApp templates loaded from the account")),
                    Err(e) => b.notes.push(format!(
                        "{id}: the WhatsApp template list could not be loaded ({e}); templates are checked by Meta only"
                    )),
                }
            }
            if hooks {
                let mut hook = channel.webhook();
                match &wa.app_secret {
                    Some(s) => hook = hook.app_secret(s.expose_secret()),
                    None => b.notes.push(format!(
                        "{id}: WhatsApp webhooks are accepted without a signature check (set app_secret)"
                    )),
                }
                if let Some(t) = &wa.verify_token {
                    hook = hook.verify_token(t.expose_secret());
                }
                b.mounts.push(Mount {
                    channel: id.clone(),
                    path,
                    handler: Arc::new(hook),
                    guard: None,
                });
            }
            b.window_sinks.push(channel.clone());
            b.channels.push(channel);
            Ok(())
        }
        #[cfg(feature = "telegram")]
        ProviderConfig::Telegram(tg) => {
            use messaging_telegram::{
                LongPoller, MemoryOffsetStore, TelegramChannel, TelegramWebhook,
            };
            let mut builder = TelegramChannel::builder(id.clone(), tg.token.expose_secret())
                .test_environment(tg.test_environment);
            if let Some(u) = &c.base_url {
                builder = builder.base_url(u);
            }
            pacing!(builder, c);
            let channel = builder.build().map_err(|e| e.to_string())?;
            match c.receive {
                Receive::Webhook => {
                    let hook = match &tg.webhook_secret {
                        Some(s) => TelegramWebhook::with_secret(s.clone()),
                        None => {
                            b.notes.push(format!(
                                "{id}: Telegram webhooks are accepted without a secret (set webhook_secret)"
                            ));
                            TelegramWebhook::new(None)
                        }
                    }
                    .channel_id(id.clone());
                    b.mounts.push(Mount {
                        channel: id.clone(),
                        path,
                        handler: Arc::new(hook),
                        guard: None,
                    });
                }
                Receive::Polling => {
                    b.notes.push(format!(
                        "{id}: Telegram updates by long polling (getUpdates fails while a webhook is set)"
                    ));
                    let ch = channel.clone();
                    let offsets = MemoryOffsetStore::default();
                    let name = format!("telegram polling {id}");
                    let task_name = name.clone();
                    b.polling.push((
                        name,
                        Box::new(move |sinks: Sinks, stop: watch::Receiver<bool>| {
                            messaging_core::task::supervise(task_name, move || {
                                let poller = LongPoller::new(ch.clone(), offsets.clone());
                                let (sinks, stop) = (sinks.clone(), stop.clone());
                                async move {
                                    let handler = |events: Vec<Event>| {
                                        let sinks = sinks.clone();
                                        async move {
                                            for e in &events {
                                                sinks.handle(e).await?;
                                            }
                                            Ok::<(), messaging_core::sink::SinkError>(())
                                        }
                                    };
                                    if let Err(e) = poller.run(handler, stopped(stop)).await {
                                        tracing::error!(error = %e, "telegram polling stopped");
                                    }
                                }
                            })
                        }),
                    ));
                }
                Receive::Off => {}
            }
            b.channels.push(Arc::new(channel));
            Ok(())
        }
        #[cfg(feature = "max")]
        ProviderConfig::Max(mx) => {
            use messaging_max::{InMemoryMarkerStore, MaxBot};
            let mut builder = MaxBot::builder(mx.token.expose_secret()).channel_id(id.clone());
            if let Some(u) = &c.base_url {
                builder = builder.base_url(u);
            }
            pacing!(builder, c);
            if let Some(pem_path) = &mx.root_ca_pem {
                let pem = std::fs::read(pem_path)
                    .map_err(|e| format!("cannot read root_ca_pem {}: {e}", pem_path.display()))?;
                builder = builder
                    .add_root_certificate_pem(&pem)
                    .map_err(|e| e.to_string())?;
            }
            let bot = builder.build().map_err(|e| e.to_string())?;
            match c.receive {
                Receive::Webhook => {
                    if mx.webhook_secret.is_none() {
                        b.notes.push(format!(
                            "{id}: Max webhooks are accepted without a secret (set webhook_secret)"
                        ));
                    }
                    b.mounts.push(Mount {
                        channel: id.clone(),
                        path,
                        handler: Arc::new(bot.webhook_handler(mx.webhook_secret.clone())),
                        guard: None,
                    });
                }
                Receive::Polling => {
                    b.notes.push(format!(
                        "{id}: Max updates by long polling (Max stops polling while a webhook subscription exists)"
                    ));
                    let poller = bot.poller(Arc::new(InMemoryMarkerStore::new()));
                    let name = format!("max polling {id}");
                    let task_name = name.clone();
                    b.polling.push((
                        name,
                        Box::new(move |sinks: Sinks, stop: watch::Receiver<bool>| {
                            messaging_core::task::supervise(task_name, move || {
                                let (poller, sinks, stop) =
                                    (poller.clone(), sinks.clone(), stop.clone());
                                async move {
                                    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(256);
                                    let run = async move {
                                        if let Err(e) = poller.run(tx).await {
                                            tracing::error!(error = %e, "max polling stopped");
                                        }
                                    };
                                    let consume = async move {
                                        let mut stop = std::pin::pin!(stopped(stop));
                                        loop {
                                            tokio::select! {
                                                () = &mut stop => break,
                                                ev = rx.recv() => match ev {
                                                    Some(e) => {
                                                        if let Err(err) = sinks.handle(&e).await {
                                                            tracing::warn!(error = %err, "a Max update was not processed");
                                                        }
                                                    }
                                                    None => break,
                                                },
                                            }
                                        }
                                        drop(rx);
                                    };
                                    tokio::join!(run, consume);
                                }
                            })
                        }),
                    ));
                }
                Receive::Off => {}
            }
            b.channels.push(Arc::new(bot));
            Ok(())
        }
        #[cfg(any(
            feature = "sms-smsru",
            feature = "sms-smsc",
            feature = "sms-smsaero",
            feature = "sms-twilio"
        ))]
        ProviderConfig::Sms(sms) => {
            use super::config::SmsAccount;
            use messaging_sms::{SmsOptions, StatusPoller};
            let mut opts = SmsOptions::new(id.clone()).sandbox(sms.sandbox);
            if let Some(s) = &sms.sender {
                opts = opts.sender(s);
            }
            pacing!(opts, c);
            let guard = if c.needs_secret_path() {
                config
                    .listener
                    .unsigned_secret
                    .as_ref()
                    .map(|s| UnsignedGuard::SecretPath(s.expose_secret().to_owned()))
            } else if c.is_unsigned() {
                Some(UnsignedGuard::AllowList)
            } else {
                None
            };
            // SMS Aero and Twilio take the report URL with each message.
            if hooks
                && let Some(base) = &config.listener.public_url
                && matches!(
                    sms.account,
                    SmsAccount::SmsAero { .. } | SmsAccount::Twilio { .. }
                )
            {
                let served = match &guard {
                    Some(UnsignedGuard::SecretPath(s)) => format!("{path}/{s}"),
                    _ => path.clone(),
                };
                opts = opts.callback_url(format!("{}{served}", base.trim_end_matches('/')));
            }
            if hooks
                && config.listener.public_url.is_none()
                && matches!(sms.account, SmsAccount::Twilio { .. })
            {
                b.notes.push(format!(
                    "{id}: no listener.public_url: Twilio gets no status callback URL, and its signatures are checked against the Host header"
                ));
            }
            let base_url = c.base_url.clone();
            macro_rules! finish {
                ($c:expr) => {{
                    let mut ch = $c;
                    if let Some(u) = &base_url {
                        ch = ch.base_url(u);
                    }
                    let hook: Arc<dyn WebhookHandler> = Arc::new(ch.webhook());
                    let ch = Arc::new(ch);
                    let poller: Arc<dyn StatusPoller> = ch.clone();
                    (ch as DynChannel, poller, hook)
                }};
            }
            let (channel, poller, hook): (
                DynChannel,
                Arc<dyn StatusPoller>,
                Arc<dyn WebhookHandler>,
            ) = match &sms.account {
                #[cfg(feature = "sms-smsru")]
                SmsAccount::SmsRu { api_id } => finish!(messaging_sms::smsru::SmsRuChannel::new(
                    opts,
                    api_id.expose_secret()
                )),
                #[cfg(feature = "sms-smsc")]
                SmsAccount::Smsc { login, password } => {
                    finish!(messaging_sms::smsc::SmscChannel::new(
                        opts,
                        messaging_sms::smsc::SmscAuth::login(
                            login.as_str(),
                            password.expose_secret()
                        )
                    ))
                }
                #[cfg(feature = "sms-smsaero")]
                SmsAccount::SmsAero { email, api_key } => {
                    finish!(messaging_sms::smsaero::SmsAeroChannel::new(
                        opts,
                        email.as_str(),
                        api_key.expose_secret()
                    ))
                }
                #[cfg(feature = "sms-twilio")]
                SmsAccount::Twilio {
                    account_sid,
                    auth_token,
                    from,
                } => finish!(messaging_sms::twilio::TwilioChannel::new(
                    opts.sender(from.as_str()),
                    account_sid.as_str(),
                    auth_token.expose_secret()
                )),
                #[allow(unreachable_patterns)]
                _ => return Err(feature_off(&c.provider)),
            };
            if hooks {
                b.mounts.push(Mount {
                    channel: id.clone(),
                    path,
                    handler: hook,
                    guard,
                });
            }
            if let Some(every) = sms.status_poll {
                let poll: super::watch::PollFn = Arc::new(move |ids| {
                    let poller = poller.clone();
                    Box::pin(async move { poller.poll_statuses(&ids).await })
                });
                b.status.push((id.clone(), Polled { poll, every }));
            }
            b.channels.push(channel);
            Ok(())
        }
        #[allow(unreachable_patterns)]
        other => Err(feature_off(other)),
    }
}

/// `validate` reports this first; kept for configurations that skipped it.
#[allow(dead_code)]
fn feature_off(p: &ProviderConfig) -> String {
    format!(
        "provider {:?}: its cargo feature of the messaging crate is off",
        p.name()
    )
}

/// How long polling loops and the engine get to finish on shutdown, by default.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(10);
