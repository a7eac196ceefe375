//! `messaging-console --config messaging.toml`: the console on the library's configuration.
//!
//! The [`Service`] is built from the configuration file (the real adapters, the store, the
//! engine, every provider's webhook, polling and timers); the console adds an
//! [`Inbox`] that answers on the service's own channel adapters
//! ([`Service::channel_adapters`]), keeps its threads and identity links in the same database,
//! and serves its pages beside the webhooks on the configured listener address.
//!
//! The inbox is handed the service's events through a [`LateSink`]: the service must be built
//! before the inbox can use its adapters, and the sink must be given before it is built. Until
//! the inbox is attached the sink refuses events, so the journaled webhook router retries them
//! rather than losing them.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use axum::Router;
use chrono::Utc;
use messaging::identity::{IdentityStore, Linker, MemoryDirectory, UsedTokenStore};
use messaging::identity::{Link, Provenance};
use messaging::inbox::{Inbox, InboxStore};
use messaging::service::{Service, ServiceConfig, StoreConfig};
use messaging::sink::{EventSink, SinkError, Sinks};
use messaging::store::CascadeReports;
use messaging::window::WindowStore;
use messaging::{Address, ChannelKind, ContactId, Event};

use super::{Console, ConsoleConfig, Parts, PatientCard, TemplateOffer, auth};
use crate::live;

/// An event sink attached after the service is built; refuses events until then.
#[derive(Clone, Default)]
pub struct LateSink {
    inner: Arc<OnceLock<Arc<dyn EventSink>>>,
}

impl std::fmt::Debug for LateSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateSink")
            .field("attached", &self.inner.get().is_some())
            .finish()
    }
}

impl LateSink {
    /// Attaches the sink; a second call is ignored.
    pub fn attach(&self, sink: Arc<dyn EventSink>) {
        let _ = self.inner.set(sink);
    }
}

#[async_trait]
impl EventSink for LateSink {
    async fn handle(&self, event: &Event) -> Result<(), SinkError> {
        match self.inner.get() {
            Some(s) => s.handle(event).await,
            None => Err("the console's inbox is not attached yet".into()),
        }
    }
}

/// What the configured console needs besides the password.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConfiguredOptions {
    /// The service's configuration file (TOML, `MESSAGING__…` variables override it).
    pub config: PathBuf,
    /// The clinic's patients, in the recipients format of `clinic-reminders --live`
    /// (`name,phone[,telegram chat id[,max user id]]`).
    pub patients: Option<PathBuf>,
    /// Approved WhatsApp templates offered when the window is closed.
    pub templates: Vec<TemplateOffer>,
    /// Mark the session cookie `Secure`.
    pub secure_cookie: bool,
    /// Overrides `listener.address`.
    pub listen: Option<std::net::SocketAddr>,
}

impl ConfiguredOptions {
    /// Options reading this configuration file.
    pub fn new(config: impl Into<PathBuf>) -> Self {
        ConfiguredOptions {
            config: config.into(),
            patients: None,
            templates: Vec::new(),
            secure_cookie: false,
            listen: None,
        }
    }
}

/// A console on a configured service.
#[derive(Debug)]
pub struct Configured {
    /// The service (shut it down at exit).
    pub service: Service,
    /// The console.
    pub console: Console,
    /// The console's pages and the service's routes (webhooks), to serve.
    pub app: Router,
    /// Where to listen (the configuration's `listener.address`, or the override).
    pub listen: Option<std::net::SocketAddr>,
}

struct Stores {
    inbox: Arc<dyn InboxStore>,
    identity: Arc<dyn IdentityStore>,
    tokens: Arc<dyn UsedTokenStore>,
    windows: Arc<dyn WindowStore>,
    reports: Arc<dyn CascadeReports>,
}

impl Stores {
    /// Every store from one database.
    fn all_in<S>(s: Arc<S>) -> Stores
    where
        S: InboxStore + IdentityStore + UsedTokenStore + WindowStore + CascadeReports,
    {
        Stores {
            inbox: s.clone(),
            identity: s.clone(),
            tokens: s.clone(),
            windows: s.clone(),
            reports: s,
        }
    }
}

/// The inbox's and identity links' store: the service's database, opened again.
async fn stores(config: &StoreConfig) -> Result<Stores, String> {
    match config {
        StoreConfig::Sqlite { path } => {
            let s = Arc::new(
                messaging::store::SqliteStore::open(path)
                    .await
                    .map_err(|e| format!("store {}: {e}", path.display()))?,
            );
            Ok(Stores::all_in(s))
        }
        StoreConfig::Postgres { url, schema } => {
            let mut options = messaging::store::PostgresOptions::default();
            if let Some(sc) = schema {
                options = options.schema(sc.as_str());
            }
            let s = Arc::new(
                messaging::store::PostgresStore::connect_with(
                    secrecy::ExposeSecret::expose_secret(url),
                    options,
                )
                .await
                .map_err(|e| format!("store: {e}"))?,
            );
            Ok(Stores::all_in(s))
        }
        #[allow(unreachable_patterns)]
        _ => Err("this store is not supported by the console".into()),
    }
}

/// Builds the service from the configuration and the console on it.
pub async fn start(
    password: auth::Password,
    options: ConfiguredOptions,
) -> Result<Configured, String> {
    let config = ServiceConfig::load(Some(&options.config)).map_err(|e| e.to_string())?;
    let listen = options.listen.or(config.listener.address);
    let patients = match &options.patients {
        Some(p) => live::read_recipients(p).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let store_config = config.store.clone();
    let late = LateSink::default();
    let service = Service::builder(config)
        .sink(Arc::new(late.clone()))
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let st = stores(&store_config).await?;

    let directory = Arc::new(MemoryDirectory::new());
    let mut cards = Vec::new();
    for p in &patients {
        let contact = ContactId::from(format!("patient-{}", p.phone.digits()));
        directory.insert(contact.clone(), p.name.clone(), p.phone.clone());
        // The clinic's own file vouches for the messenger ids it lists: linked as by an
        // operator, unless already linked (a link the person proved stays as it is).
        let ids = p
            .telegram
            .map(Address::Telegram)
            .into_iter()
            .chain(p.max.map(Address::MaxUser));
        for address in ids {
            let known = st
                .identity
                .by_address(&address)
                .await
                .map_err(|e| e.to_string())?;
            if known.is_none() {
                let link = Link::new(address, contact.clone(), Provenance::Operator, Utc::now())
                    .with_phone(p.phone.clone());
                st.identity.link(&link).await.map_err(|e| e.to_string())?;
            }
        }
        cards.push(PatientCard {
            contact,
            name: p.name.clone(),
            phone: Some(p.phone.clone()),
        });
    }
    let mut linker = Linker::builder(st.identity.clone(), st.tokens.clone(), directory.clone());
    for c in service.channel_adapters() {
        if matches!(c.kind(), ChannelKind::Telegram | ChannelKind::Max) {
            linker = linker.channel(c.clone());
        }
    }
    let linker = Arc::new(linker.build());
    // No engine among the inbox's sinks: the service already hands every event to its engine.
    let inbox = service
        .channel_adapters()
        .iter()
        .fold(Inbox::builder(), |b, c| b.channel(c.clone()))
        .store(st.inbox.clone())
        .identity(st.identity.clone())
        .directory(directory)
        .window_store(st.windows.clone())
        .linker(linker.clone())
        .build();

    let mut cc = ConsoleConfig::new(password);
    cc.secure_cookie = options.secure_cookie;
    cc.templates = options.templates.clone();
    cc.patients = cards;
    cc.channels = service.channel_kinds().to_vec();
    cc.audit_file = match &store_config {
        StoreConfig::Sqlite { path } => Some(path.with_extension("console-audit.jsonl")),
        _ => None,
    };
    let console = Console::new(
        Parts {
            inbox: inbox.clone(),
            inbox_store: st.inbox,
            identity: st.identity,
            engine: service.engine().clone(),
            cascades: service.engine().store().clone(),
            reports: st.reports,
            linker: Some(linker),
        },
        cc,
    );
    let mut sinks = Sinks::new();
    sinks.push(Arc::new(inbox));
    sinks.push(console.sink());
    late.attach(Arc::new(sinks));
    let app = console.router().merge(service.router());
    Ok(Configured {
        service,
        console,
        app,
        listen,
    })
}
