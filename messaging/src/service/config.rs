//! The configuration of a [`Service`](super::Service): types, the TOML reader that reports
//! every problem at once with its path, and the environment overlay.
//!
//! See the [module docs](super) for the format and `examples/messaging.example.toml` for a
//! commented file.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveTime;
use messaging_cascade::engine::{HealthAction, QuietHours};
use messaging_cascade::{CascadePolicy, RetryPolicy, Step, UnknownOutcome};
use messaging_core::{ChannelId, ChannelKind, Evidence, Phone, PolicyId, Purpose};
use secrecy::{ExposeSecret, SecretString};
use toml::{Table, Value};

/// The prefix of the environment variables that set configuration keys:
/// `MESSAGING__CHANNELS__TG__TOKEN` sets `channels.tg.token`.
pub const ENV_PREFIX: &str = "MESSAGING__";

// ---------------------------------------------------------------------------------------------
// Problems
// ---------------------------------------------------------------------------------------------

/// One thing wrong with a configuration: where (`channels.tg.token`) and what (`missing`).
/// Never contains a secret's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key's path, dotted, with array indexes in brackets (`policies.reminders.steps[1].window`);
    /// `line N` for a TOML syntax error.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigProblem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration, in the order of the file.
///
/// ```
/// use messaging::service::ServiceConfig;
/// let e = ServiceConfig::from_toml(r#"
/// [store]
/// sqlite = "x.sqlite"
/// [channels.tg]
/// provider = "telegram"
/// tokn = "123:abc"
/// "#).unwrap_err();
/// let text = e.to_string();
/// assert!(text.contains("channels.tg.token: missing"), "{text}");
/// assert!(text.contains("channels.tg.tokn: unknown key"), "{text}");
/// assert!(!text.contains("123:abc"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, at least one.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// Whether a problem at exactly `path` is listed.
    pub fn has(&self, path: &str) -> bool {
        self.problems.iter().any(|p| p.path == path)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// The configuration types
// ---------------------------------------------------------------------------------------------

/// Everything a [`Service`](super::Service) is built from. Read it with
/// [`from_toml`](Self::from_toml), [`load`](Self::load) (a file and the environment) or serde
/// (any format: the same checks run, and the error lists every problem), or build it in code.
///
/// `Debug` never shows a secret (tokens, passwords, the PostgreSQL URL, webhook secrets are
/// [`SecretString`]s).
///
/// ```
/// use messaging::service::ServiceConfig;
/// let config = ServiceConfig::from_toml(r#"
/// default_policy = "reminders"
///
/// [store]
/// sqlite = "messaging.sqlite"
///
/// [channels.tg]
/// provider = "telegram"
/// token = "123456:ABC"
///
/// [policies.reminders]
/// steps = [{ channel = "tg", evidence = "accepted", window = "15m" }]
/// "#).unwrap();
/// assert_eq!(config.channels[0].id.as_str(), "tg");
/// assert!(!format!("{config:?}").contains("123456:ABC"));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// Where cascades, the webhook journal and WhatsApp windows are kept.
    pub store: StoreConfig,
    /// The webhook listener.
    pub listener: ListenerSettings,
    /// The channels, in the order of the file.
    pub channels: Vec<ChannelConfig>,
    /// The cascade policies, in the order of the file.
    pub policies: Vec<PolicyConfig>,
    /// Which policy each purpose uses.
    pub purposes: BTreeMap<Purpose, PolicyId>,
    /// The policy for purposes without a route (default: the first policy).
    pub default_policy: Option<PolicyId>,
    /// Regulated sender: WhatsApp and Telegram steps are skipped in every cascade.
    pub regulated: bool,
    /// The time zone for quiet hours when a recipient has none (default Europe/Moscow).
    pub time_zone: Option<chrono_tz::Tz>,
    /// Engine settings.
    pub engine: EngineSettings,
    /// Limits.
    pub limits: Limits,
}

impl ServiceConfig {
    /// A configuration with this store and nothing else: add channels and policies.
    pub fn new(store: StoreConfig) -> Self {
        ServiceConfig {
            store,
            listener: ListenerSettings::default(),
            channels: Vec::new(),
            policies: Vec::new(),
            purposes: BTreeMap::new(),
            default_policy: None,
            regulated: false,
            time_zone: None,
            engine: EngineSettings::default(),
            limits: Limits::default(),
        }
    }

    /// Reads TOML text. Unknown keys are errors; every problem is listed.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, std::iter::empty())
    }

    /// Reads TOML text, then sets or overrides keys from `vars` whose names start with
    /// [`ENV_PREFIX`] (see [environment variables](super#environment-variables)).
    ///
    /// ```
    /// use messaging::service::ServiceConfig;
    /// let text = r#"
    /// [store]
    /// sqlite = "x.sqlite"
    /// [channels.tg]
    /// provider = "telegram"
    /// [policies.p]
    /// steps = [{ channel = "tg" }]
    /// "#;
    /// let env = [("MESSAGING__CHANNELS__TG__TOKEN".to_string(), "123:abc".to_string())];
    /// let config = ServiceConfig::from_toml_with_env(text, env).unwrap();
    /// assert_eq!(config.channels.len(), 1);
    /// ```
    pub fn from_toml_with_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = parse_toml(text)?;
        let mut problems = Vec::new();
        overlay_env(&mut table, vars, &mut problems);
        Self::read(&table, problems)
    }

    /// Reads the TOML file at `path` (if given) and the process environment's
    /// `MESSAGING__…` variables over it.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| ConfigError {
                problems: vec![ConfigProblem::new(
                    "",
                    format!("cannot read {}: {e}", p.display()),
                )],
            })?,
            None => String::new(),
        };
        Self::from_toml_with_env(&text, std::env::vars())
    }

    /// Reads an already parsed table (built in code, or from another format).
    pub fn from_table(table: &Table) -> Result<Self, ConfigError> {
        Self::read(table, Vec::new())
    }

    fn read(table: &Table, problems: Vec<ConfigProblem>) -> Result<Self, ConfigError> {
        let sink = Problems(RefCell::new(problems));
        let config = read_config(&Node::root(table, &sink));
        let mut problems = sink.0.into_inner();
        match config {
            Some(c) if problems.is_empty() => c.validate().map(|()| c),
            Some(c) => {
                if let Err(e) = c.validate() {
                    for p in e.problems {
                        if !problems.contains(&p) {
                            problems.push(p);
                        }
                    }
                }
                Err(ConfigError { problems })
            }
            None => Err(ConfigError { problems }),
        }
    }

    /// Checks what a reader of the text cannot see alone: references (a step's channel, a
    /// purpose's policy), duplicate ids, zero windows, channels whose cargo feature is off, the
    /// secret the unsigned SMS report paths need. [`Service::build`](super::Service::build)
    /// calls it too, for configurations built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        let mut ids = HashSet::new();
        for c in &self.channels {
            let at = format!("channels.{}", c.id);
            if !ids.insert(c.id.clone()) {
                p.push(ConfigProblem::new(&at, "a second channel with this id"));
            }
            if let Some(feature) = c.provider.missing_feature() {
                p.push(ConfigProblem::new(
                    format!("{at}.provider"),
                    format!(
                        "{:?} needs the cargo feature {feature:?} of the messaging crate, which is off",
                        c.provider.name()
                    ),
                ));
            }
            if let Some(path) = &c.webhook_path
                && (!path.starts_with('/') || path.contains(['{', '}', '*', '?', '#']))
            {
                p.push(ConfigProblem::new(
                    format!("{at}.webhook_path"),
                    "must start with / and have no {, }, *, ? or #",
                ));
            }
        }
        let mut paths = HashSet::new();
        for c in &self.channels {
            if c.receives_webhooks() && !paths.insert(c.webhook_path()) {
                p.push(ConfigProblem::new(
                    format!("channels.{}.webhook_path", c.id),
                    format!("{} is served for another channel too", c.webhook_path()),
                ));
            }
        }
        if matches!(self.store, StoreConfig::Postgres { .. }) && !cfg!(feature = "postgres") {
            p.push(ConfigProblem::new(
                "store.postgres",
                "needs the cargo feature \"postgres\" of the messaging crate, which is off",
            ));
        }
        let unsigned: Vec<&str> = self
            .channels
            .iter()
            .filter(|c| c.needs_secret_path())
            .map(|c| c.id.as_str())
            .collect();
        match &self.listener.unsigned_secret {
            None if !unsigned.is_empty() => p.push(ConfigProblem::new(
                "listener.unsigned_secret",
                format!(
                    "missing: {} sign nothing, so their delivery reports are served only under a secret path (or set allow_list = true on the channel)",
                    unsigned.join(", ")
                ),
            )),
            Some(s) if !secret_path_ok(s.expose_secret()) => p.push(ConfigProblem::new(
                "listener.unsigned_secret",
                UNSIGNED_SECRET_RULE,
            )),
            _ => {}
        }
        if self.policies.is_empty() {
            p.push(ConfigProblem::new("policies", "no policy configured"));
        }
        if self.channels.is_empty() {
            p.push(ConfigProblem::new("channels", "no channel configured"));
        }
        let mut policy_ids = HashSet::new();
        for policy in &self.policies {
            let at = format!("policies.{}", policy.policy.id);
            if !policy_ids.insert(policy.policy.id.clone()) {
                p.push(ConfigProblem::new(&at, "a second policy with this id"));
            }
            if policy.policy.steps.is_empty() {
                p.push(ConfigProblem::new(format!("{at}.steps"), "no steps"));
            }
            for (i, step) in policy.policy.steps.iter().enumerate() {
                let at = format!("{at}.steps[{i}]");
                if !ids.contains(&step.channel) {
                    p.push(ConfigProblem::new(
                        format!("{at}.channel"),
                        format!(
                            "unknown channel {:?} (configured: {})",
                            step.channel.as_str(),
                            self.channel_list()
                        ),
                    ));
                }
                if step.window.is_zero() {
                    p.push(ConfigProblem::new(
                        format!("{at}.window"),
                        "must be longer than zero",
                    ));
                }
            }
            if policy.deadline.is_some_and(|d| d.is_zero()) {
                p.push(ConfigProblem::new(
                    format!("{at}.deadline"),
                    "must be longer than zero",
                ));
            }
        }
        for (purpose, policy) in &self.purposes {
            if !policy_ids.contains(policy) {
                p.push(ConfigProblem::new(
                    format!("purposes.{}", purpose.as_str()),
                    format!("unknown policy {:?}", policy.as_str()),
                ));
            }
        }
        if let Some(d) = &self.default_policy
            && !policy_ids.contains(d)
        {
            p.push(ConfigProblem::new(
                "default_policy",
                format!("unknown policy {:?}", d.as_str()),
            ));
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: p })
        }
    }

    fn channel_list(&self) -> String {
        let ids: Vec<&str> = self.channels.iter().map(|c| c.id.as_str()).collect();
        if ids.is_empty() {
            "none".into()
        } else {
            ids.join(", ")
        }
    }

    /// The policy purposes without a route use: [`default_policy`](Self::default_policy), else
    /// the first policy.
    pub fn default_policy_id(&self) -> Option<&PolicyId> {
        self.default_policy
            .as_ref()
            .or_else(|| self.policies.first().map(|p| &p.policy.id))
    }
}

/// Reads a whole configuration from any serde format (TOML, JSON, YAML, ...): the value is
/// read as a table, then checked like [`ServiceConfig::from_table`]; the error lists every
/// problem.
impl<'de> serde::Deserialize<'de> for ServiceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = Table::deserialize(d)?;
        ServiceConfig::from_table(&table).map_err(serde::de::Error::custom)
    }
}

/// Where the service keeps its state.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StoreConfig {
    /// The embedded SQLite store in this file (`store.sqlite`).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// PostgreSQL (`store.postgres`, feature `postgres`): several instances share it, and
    /// their channel health.
    Postgres {
        /// A libpq string or URL; it holds the password, so it is a secret.
        url: SecretString,
        /// The schema (`store.postgres_schema`, default `messaging`).
        schema: Option<String>,
    },
}

/// The webhook listener (`[listener]`).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ListenerSettings {
    /// Where [`Service::serve`](super::Service::serve) binds (`0.0.0.0:8080`); `None`: mount
    /// [`Service::router`](super::Service::router) in your own server.
    pub address: Option<SocketAddr>,
    /// The public URL providers call (`https://clinic.example`): Twilio's signature covers it,
    /// and the SMS Aero and Twilio status callback URLs are built from it.
    pub public_url: Option<String>,
    /// The secret path segment under which SMS.ru, SMSC and SMS Aero reports are taken
    /// (`/webhooks/sms/<channel>/<secret>`): they sign nothing. At least 16 of `A-Z a-z 0-9 - _`.
    pub unsigned_secret: Option<SecretString>,
}

/// Engine settings (`[engine]`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EngineSettings {
    /// This instance's name on the shared health board (PostgreSQL); default random.
    pub instance: Option<String>,
    /// Channel health on (default) or off: off means fixed windows, no routing around slow
    /// channels.
    pub health: bool,
    /// How often the timer loop looks for due work when nothing wakes it (default 1 s).
    pub poll_interval: Option<Duration>,
    /// How long a send may be in flight before its outcome counts as unknown (default 2 min).
    pub in_flight_lease: Option<Duration>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            instance: None,
            health: true,
            poll_interval: None,
            in_flight_lease: None,
        }
    }
}

/// Limits (`[limits]`); `None` keeps the library's default.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Limits {
    /// The largest webhook body, in bytes, for every provider (default: each handler's own, 1 MiB).
    pub max_body: Option<usize>,
    /// Open connections on the listener (default 512).
    pub max_connections: Option<usize>,
    /// How long a client may take to send its headers (default 10 s).
    pub header_read_timeout: Option<Duration>,
    /// How long one request may take (default 30 s).
    pub request_timeout: Option<Duration>,
    /// How long a graceful shutdown waits for requests and tasks (default 10 s).
    pub shutdown_grace: Option<Duration>,
    /// Cascades processed at once by one timer tick (default 32).
    pub concurrency: Option<usize>,
    /// Webhook events waiting for processing before providers get 503 (default 100,000: they
    /// wait in the journal, on disk).
    pub webhook_queue: Option<usize>,
    /// Webhook events handed to the engine and the inbox at once (default
    /// [`DEFAULT_WEBHOOK_CONCURRENCY`](super::DEFAULT_WEBHOOK_CONCURRENCY)). A crash re-applies
    /// at most this many, which both take as repeats; 1 keeps events strictly one at a time.
    pub webhook_concurrency: Option<usize>,
}

/// How a channel hears from its provider (`receive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Receive {
    /// A webhook on the router.
    Webhook,
    /// Long polling (Telegram `getUpdates`, Max `GET /updates`).
    Polling,
    /// Nothing (`"none"`): no replies, no reports (sends still work).
    Off,
}

/// One channel (`[channels.<id>]`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// The channel id: steps name it, events carry it.
    pub id: ChannelId,
    /// The provider and its credentials.
    pub provider: ProviderConfig,
    /// Overrides the provider's API URL (a sandbox, a fake server in tests).
    pub base_url: Option<String>,
    /// Requests per second (0: no pacing); default: the adapter's.
    pub rate_limit: Option<u32>,
    /// The timeout of one request; default: the adapter's.
    pub timeout: Option<Duration>,
    /// Where the webhook is served; default `/webhooks/<id>`, and `/webhooks/sms/<id>` for
    /// SMS.ru, SMSC and SMS Aero (then `/<listener.unsigned_secret>`).
    pub webhook_path: Option<String>,
    /// How replies and reports arrive; default: a webhook, except Telegram and Max without a
    /// `webhook_secret`, which poll.
    pub receive: Receive,
}

impl ChannelConfig {
    /// A channel with the provider's defaults (webhook, or polling for a Telegram or Max bot
    /// without a webhook secret).
    pub fn new(id: impl Into<ChannelId>, provider: ProviderConfig) -> Self {
        let receive = provider.default_receive();
        ChannelConfig {
            id: id.into(),
            provider,
            base_url: None,
            rate_limit: None,
            timeout: None,
            webhook_path: None,
            receive,
        }
    }

    /// The channel's kind.
    pub fn kind(&self) -> ChannelKind {
        match &self.provider {
            ProviderConfig::WhatsApp(_) => ChannelKind::WhatsApp,
            ProviderConfig::Telegram(_) => ChannelKind::Telegram,
            ProviderConfig::Max(_) => ChannelKind::Max,
            ProviderConfig::Sms(_) => ChannelKind::Sms,
        }
    }

    /// Whether its webhook is mounted on the router.
    pub fn receives_webhooks(&self) -> bool {
        self.receive == Receive::Webhook
    }

    /// The path its webhook is mounted at (before any secret segment).
    pub fn webhook_path(&self) -> String {
        match &self.webhook_path {
            Some(p) => p.clone(),
            None if self.is_unsigned() => format!("/webhooks/sms/{}", self.id),
            None => format!("/webhooks/{}", self.id),
        }
    }

    /// Whether its provider signs nothing (SMS.ru, SMSC, SMS Aero).
    pub fn is_unsigned(&self) -> bool {
        matches!(
            &self.provider,
            ProviderConfig::Sms(SmsConfig {
                account: SmsAccount::SmsRu { .. }
                    | SmsAccount::Smsc { .. }
                    | SmsAccount::SmsAero { .. },
                ..
            })
        )
    }

    /// Whether its webhook is served under the secret path segment.
    pub(crate) fn needs_secret_path(&self) -> bool {
        self.receives_webhooks()
            && self.is_unsigned()
            && !matches!(&self.provider, ProviderConfig::Sms(s) if s.allow_list)
    }
}

/// A provider and its credentials.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ProviderConfig {
    /// WhatsApp Business: `provider = "waba"` (Cloud API) or `"360dialog"`.
    WhatsApp(WhatsAppConfig),
    /// A Telegram bot: `provider = "telegram"`.
    Telegram(TelegramConfig),
    /// A Max bot: `provider = "max"`.
    Max(MaxConfig),
    /// An SMS provider: `provider = "smsru" | "smsc" | "smsaero" | "twilio"`.
    Sms(SmsConfig),
}

impl ProviderConfig {
    /// The `provider` value.
    pub fn name(&self) -> &'static str {
        match self {
            ProviderConfig::WhatsApp(w) => match w.account {
                WhatsAppAccount::CloudApi { .. } => "waba",
                WhatsAppAccount::Dialog360 { .. } => "360dialog",
            },
            ProviderConfig::Telegram(_) => "telegram",
            ProviderConfig::Max(_) => "max",
            ProviderConfig::Sms(s) => s.account.name(),
        }
    }

    /// The facade feature this provider needs, when it is off.
    fn missing_feature(&self) -> Option<&'static str> {
        let (feature, on) = match self {
            ProviderConfig::WhatsApp(_) => ("waba", cfg!(feature = "waba")),
            ProviderConfig::Telegram(_) => ("telegram", cfg!(feature = "telegram")),
            ProviderConfig::Max(_) => ("max", cfg!(feature = "max")),
            ProviderConfig::Sms(s) => match s.account {
                SmsAccount::SmsRu { .. } => ("sms-smsru", cfg!(feature = "sms-smsru")),
                SmsAccount::Smsc { .. } => ("sms-smsc", cfg!(feature = "sms-smsc")),
                SmsAccount::SmsAero { .. } => ("sms-smsaero", cfg!(feature = "sms-smsaero")),
                SmsAccount::Twilio { .. } => ("sms-twilio", cfg!(feature = "sms-twilio")),
            },
        };
        (!on).then_some(feature)
    }

    fn default_receive(&self) -> Receive {
        match self {
            ProviderConfig::Telegram(t) if t.webhook_secret.is_none() => Receive::Polling,
            ProviderConfig::Max(m) if m.webhook_secret.is_none() => Receive::Polling,
            _ => Receive::Webhook,
        }
    }
}

/// A WhatsApp Business number.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WhatsAppConfig {
    /// The account.
    pub account: WhatsAppAccount,
    /// Meta's app secret: webhook signatures are checked with it (without it they are not).
    pub app_secret: Option<SecretString>,
    /// The token of Meta's `GET` handshake.
    pub verify_token: Option<SecretString>,
    /// The Graph API version.
    pub api_version: Option<String>,
    /// The WhatsApp Business Account id: the template list is loaded at start.
    pub waba_id: Option<String>,
}

impl WhatsAppConfig {
    /// A number with no webhook secrets.
    pub fn new(account: WhatsAppAccount) -> Self {
        WhatsAppConfig {
            account,
            app_secret: None,
            verify_token: None,
            api_version: None,
            waba_id: None,
        }
    }
}

/// How a WhatsApp number is reached.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum WhatsAppAccount {
    /// Meta's Cloud API (`phone_number_id`, `token`).
    CloudApi {
        /// The phone number id.
        phone_number_id: String,
        /// A system-user access token.
        token: SecretString,
    },
    /// 360dialog (`api_key`).
    Dialog360 {
        /// The `D360-API-KEY`.
        api_key: SecretString,
    },
}

/// A Telegram bot.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TelegramConfig {
    /// The bot token.
    pub token: SecretString,
    /// The `secret_token` given to `setWebhook`: webhooks without it are refused.
    pub webhook_secret: Option<SecretString>,
    /// Telegram's test environment.
    pub test_environment: bool,
}

impl TelegramConfig {
    /// A bot with this token.
    pub fn new(token: SecretString) -> Self {
        TelegramConfig {
            token,
            webhook_secret: None,
            test_environment: false,
        }
    }
}

/// A Max bot.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MaxConfig {
    /// The bot token.
    pub token: SecretString,
    /// The secret given to `POST /subscriptions`: webhooks without it are refused.
    pub webhook_secret: Option<SecretString>,
    /// A PEM file of extra root certificates (Max's API is served under a Russian CA).
    pub root_ca_pem: Option<PathBuf>,
}

impl MaxConfig {
    /// A bot with this token.
    pub fn new(token: SecretString) -> Self {
        MaxConfig {
            token,
            webhook_secret: None,
            root_ca_pem: None,
        }
    }
}

/// An SMS provider account.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SmsConfig {
    /// The account.
    pub account: SmsAccount,
    /// The sender name approved by the provider.
    pub sender: Option<String>,
    /// The provider's test mode.
    pub sandbox: bool,
    /// How often delivery statuses of waiting messages are asked for; `None`: never (reports by
    /// webhook only). Default 30 s.
    pub status_poll: Option<Duration>,
    /// For SMS.ru, SMSC and SMS Aero: serve reports at the plain path, trusting your
    /// allow-list of the provider's addresses, instead of under the secret path.
    pub allow_list: bool,
}

impl SmsConfig {
    /// An account with no sender name, status polling every 30 s.
    pub fn new(account: SmsAccount) -> Self {
        SmsConfig {
            account,
            sender: None,
            sandbox: false,
            status_poll: Some(Duration::from_secs(30)),
            allow_list: false,
        }
    }
}

/// The SMS provider and its credentials.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SmsAccount {
    /// SMS.ru (`api_id`).
    SmsRu {
        /// The `api_id`.
        api_id: SecretString,
    },
    /// SMSC.ru (`login`, `password`).
    Smsc {
        /// The login.
        login: String,
        /// The password.
        password: SecretString,
    },
    /// SMS Aero (`email`, `api_key`).
    SmsAero {
        /// The account e-mail.
        email: String,
        /// The API key.
        api_key: SecretString,
    },
    /// Twilio (`account_sid`, `auth_token`, `from`).
    Twilio {
        /// The account SID.
        account_sid: String,
        /// The auth token (also verifies webhook signatures).
        auth_token: SecretString,
        /// The sending number (E.164) or messaging service SID (`MG…`).
        from: String,
    },
}

impl SmsAccount {
    /// The `provider` value.
    pub fn name(&self) -> &'static str {
        match self {
            SmsAccount::SmsRu { .. } => "smsru",
            SmsAccount::Smsc { .. } => "smsc",
            SmsAccount::SmsAero { .. } => "smsaero",
            SmsAccount::Twilio { .. } => "twilio",
        }
    }
}

/// A cascade policy (`[policies.<id>]`) and what the service adds to it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// The engine's policy: steps, quiet hours, what to do on degraded and down channels.
    pub policy: CascadePolicy,
    /// How long after submit no more steps start ([`Service::submit`](super::Service::submit)
    /// sets the notification's deadline when it has none).
    pub deadline: Option<Duration>,
}

impl PolicyConfig {
    /// A policy without a deadline.
    pub fn new(policy: CascadePolicy) -> Self {
        PolicyConfig {
            policy,
            deadline: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing and the environment overlay
// ---------------------------------------------------------------------------------------------

fn parse_toml(text: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| {
        // The message only: the error's Display quotes the offending line, which may hold a
        // secret.
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        ConfigError {
            problems: vec![ConfigProblem::new(
                line.map(|l| format!("line {l}")).unwrap_or_default(),
                format!("TOML syntax: {}", e.message().trim()),
            )],
        }
    })
}

/// Sets or overrides the keys named by `MESSAGING__A__B__C` variables (`a.b.c`, lowercase;
/// a number indexes an array). Values are strings; the reader parses them where a number, a
/// flag or a duration is expected.
fn overlay_env(
    table: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<ConfigProblem>,
) {
    let mut root = Value::Table(std::mem::take(table));
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    'vars: for (name, value) in vars {
        let segments: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            problems.push(ConfigProblem::new(
                name.clone(),
                "not a configuration path (segments are separated by __)",
            ));
            continue;
        }
        let mut path = String::new();
        let mut current: &mut Value = &mut root;
        let last = segments.len() - 1;
        for (i, seg) in segments.iter().enumerate() {
            let shown = path.clone();
            let index = seg.parse::<usize>().ok().filter(|_| current.is_array());
            let next: Result<&mut Value, (String, String)> = match (current, index) {
                (Value::Array(items), Some(n)) => {
                    path.push_str(&format!("[{n}]"));
                    let len = items.len();
                    items.get_mut(n).ok_or_else(|| {
                        (
                            path.clone(),
                            format!("from {name}: the array has {len} items"),
                        )
                    })
                }
                (Value::Table(t), _) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(seg);
                    Ok(t.entry(seg.clone()).or_insert_with(|| {
                        if i == last {
                            Value::String(String::new())
                        } else {
                            Value::Table(Table::new())
                        }
                    }))
                }
                _ => Err((
                    shown,
                    format!("from {name}: not a table, cannot set a key in it"),
                )),
            };
            match next {
                Ok(v) => current = v,
                Err((at, message)) => {
                    problems.push(ConfigProblem::new(at, message));
                    continue 'vars;
                }
            }
        }
        match current {
            Value::Table(_) | Value::Array(_) => problems.push(ConfigProblem::new(
                path,
                format!("from {name}: a table or array cannot be set from a variable"),
            )),
            v => *v = Value::String(value),
        }
    }
    if let Value::Table(t) = root {
        *table = t;
    }
}

const UNSIGNED_SECRET_RULE: &str = "must be at least 16 of A-Z a-z 0-9 - _";

fn is_secret_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
}

/// Whether `s` may be a secret path segment: at least 16 of `A-Z a-z 0-9 - _`.
pub(crate) fn secret_path_ok(s: &str) -> bool {
    s.len() >= 16 && s.chars().all(is_secret_path_char)
}

// ---------------------------------------------------------------------------------------------
// The reader: every problem, with its path
// ---------------------------------------------------------------------------------------------

/// Where the reader writes the problems it finds.
struct Problems(RefCell<Vec<ConfigProblem>>);

impl Problems {
    fn push(&self, path: String, message: impl Into<String>) {
        self.0.borrow_mut().push(ConfigProblem::new(path, message));
    }
}

/// A table being read: the keys looked at are remembered, so that the rest can be reported as
/// unknown by [`Node::finish`].
struct Node<'a> {
    table: &'a Table,
    path: String,
    used: RefCell<HashSet<&'a str>>,
    problems: &'a Problems,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl<'a> Node<'a> {
    fn root(table: &'a Table, problems: &'a Problems) -> Self {
        Node {
            table,
            path: String::new(),
            used: RefCell::new(HashSet::new()),
            problems,
        }
    }

    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn problem(&self, key: &str, message: impl Into<String>) {
        self.problems.push(self.at(key), message);
    }

    fn get(&self, key: &'a str) -> Option<&'a Value> {
        self.used.borrow_mut().insert(key);
        self.table.get(key)
    }

    fn wrong(&self, key: &str, expected: &str, found: &Value) {
        self.problem(
            key,
            format!("expected {expected}, found {}", type_name(found)),
        );
    }

    /// An optional string; empty is a problem.
    fn string(&self, key: &'a str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) if s.trim().is_empty() => {
                self.problem(key, "empty");
                None
            }
            Value::String(s) => Some(s.trim().to_owned()),
            v => {
                self.wrong(key, "a string", v);
                None
            }
        }
    }

    fn required_string(&self, key: &'a str) -> Option<String> {
        if !self.table.contains_key(key) {
            self.problem(key, "missing");
        }
        self.string(key)
    }

    /// An optional secret: type errors never show the value.
    fn secret(&self, key: &'a str) -> Option<SecretString> {
        match self.get(key)? {
            Value::String(s) if s.trim().is_empty() => {
                self.problem(key, "empty");
                None
            }
            Value::String(s) => Some(SecretString::from(s.trim().to_owned())),
            v => {
                self.wrong(key, "a string", v);
                None
            }
        }
    }

    fn required_secret(&self, key: &'a str) -> Option<SecretString> {
        if !self.table.contains_key(key) {
            self.problem(key, "missing");
        }
        self.secret(key)
    }

    /// An optional value parsed from a string (`"Europe/Moscow"`, `"0.0.0.0:8080"`).
    fn parsed<T>(
        &self,
        key: &'a str,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.string(key)?;
        match parse(&s) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(key, format!("{s:?} is not {what}: {e}"));
                None
            }
        }
    }

    fn bool(&self, key: &'a str) -> Option<bool> {
        match self.get(key)? {
            Value::Boolean(b) => Some(*b),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => {
                    self.problem(key, format!("{s:?} is not true or false"));
                    None
                }
            },
            v => {
                self.wrong(key, "true or false", v);
                None
            }
        }
    }

    /// An optional integer in `min..=max`.
    fn int(&self, key: &'a str, min: u64, max: u64) -> Option<u64> {
        let n = match self.get(key)? {
            Value::Integer(n) => u64::try_from(*n).ok(),
            Value::String(s) => match s.trim().parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    self.problem(key, format!("{s:?} is not a whole number"));
                    return None;
                }
            },
            v => {
                self.wrong(key, "a whole number", v);
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.problem(key, format!("must be from {min} to {max}"));
                None
            }
        }
    }

    /// An optional duration written as `"15m"`, `"1h 30m"`, `"90s"`, `"500ms"`.
    fn duration(&self, key: &'a str) -> Option<Duration> {
        match self.get(key)? {
            Value::String(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.problem(
                        key,
                        format!("{s:?} is not a duration such as \"15m\", \"1h\" or \"90s\": {e}"),
                    );
                    None
                }
            },
            v => {
                self.wrong(key, "a duration such as \"15m\"", v);
                None
            }
        }
    }

    /// A duration that must be longer than zero.
    fn positive_duration(&self, key: &'a str) -> Option<Duration> {
        let d = self.duration(key)?;
        if d.is_zero() {
            self.problem(key, "must be longer than zero");
            return None;
        }
        Some(d)
    }

    fn table(&self, key: &'a str) -> Option<Node<'a>> {
        match self.get(key)? {
            Value::Table(t) => Some(self.child(t, self.at(key))),
            v => {
                self.wrong(key, "a table", v);
                None
            }
        }
    }

    fn child(&self, table: &'a Table, path: String) -> Node<'a> {
        Node {
            table,
            path,
            used: RefCell::new(HashSet::new()),
            problems: self.problems,
        }
    }

    /// The entries of a table of tables (`[channels.<id>]`), in file order.
    fn entries(&self, key: &'a str) -> Vec<(&'a str, Node<'a>)> {
        let Some(node) = self.table(key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in node.table {
            node.used.borrow_mut().insert(k.as_str());
            match v {
                Value::Table(t) => out.push((k.as_str(), node.child(t, node.at(k)))),
                v => node.wrong(k, "a table", v),
            }
        }
        out
    }

    /// Reports the keys nobody asked for.
    fn finish(self) {
        self.check_unknown();
    }

    fn check_unknown(&self) {
        let used = self.used.borrow();
        for k in self.table.keys() {
            if !used.contains(k.as_str()) {
                self.problem(k, "unknown key");
            }
        }
    }
}

fn read_config(root: &Node<'_>) -> Option<ServiceConfig> {
    let store = read_store(root);
    let listener = root
        .table("listener")
        .map(read_listener)
        .unwrap_or_default();
    let channels: Vec<Option<ChannelConfig>> = root
        .entries("channels")
        .into_iter()
        .map(|(id, node)| read_channel(id, node))
        .collect();
    if !root.table.contains_key("channels") {
        root.problem("channels", "missing: configure at least one channel");
    }
    let policies: Vec<Option<PolicyConfig>> = root
        .entries("policies")
        .into_iter()
        .map(|(id, node)| read_policy(id, node))
        .collect();
    if !root.table.contains_key("policies") {
        root.problem("policies", "missing: configure at least one policy");
    }
    let mut purposes = BTreeMap::new();
    if let Some(node) = root.table("purposes") {
        for (k, v) in node.table {
            node.used.borrow_mut().insert(k.as_str());
            let Ok(purpose) = Purpose::from_str(k) else {
                node.problem(
                    k,
                    "unknown purpose (service, marketing, authentication or conversation)",
                );
                continue;
            };
            match v {
                Value::String(s) => {
                    purposes.insert(purpose, PolicyId::new(s.trim()));
                }
                v => node.wrong(k, "a policy id", v),
            }
        }
        node.finish();
    }
    let default_policy = root.string("default_policy").map(PolicyId::new);
    let regulated = root.bool("regulated").unwrap_or(false);
    let time_zone = root.parsed("time_zone", "a time zone such as \"Europe/Moscow\"", |s| {
        s.parse::<chrono_tz::Tz>().map_err(|e| e.to_string())
    });
    let engine = root.table("engine").map(read_engine).unwrap_or_default();
    let limits = root.table("limits").map(read_limits).unwrap_or_default();
    root.check_unknown();
    let store = store?;
    let channels: Option<Vec<ChannelConfig>> = channels.into_iter().collect();
    let policies: Option<Vec<PolicyConfig>> = policies.into_iter().collect();
    Some(ServiceConfig {
        store,
        listener,
        channels: channels?,
        policies: policies?,
        purposes,
        default_policy,
        regulated,
        time_zone,
        engine,
        limits,
    })
}

fn read_store(root: &Node<'_>) -> Option<StoreConfig> {
    let Some(node) = root.table("store") else {
        if !root.table.contains_key("store") {
            root.problem(
                "store",
                "missing: set store.sqlite (a file) or store.postgres (a URL)",
            );
        }
        return None;
    };
    let sqlite = node.string("sqlite");
    let postgres = node.secret("postgres");
    let schema = node.string("postgres_schema");
    let both = node.table.contains_key("sqlite") && node.table.contains_key("postgres");
    let neither = !node.table.contains_key("sqlite") && !node.table.contains_key("postgres");
    if schema.is_some() && postgres.is_none() && !node.table.contains_key("postgres") {
        node.problem("postgres_schema", "only with store.postgres");
    }
    let path = node.path.clone();
    node.finish();
    if both {
        root.problems.push(path, "set sqlite or postgres, not both");
        return None;
    }
    if neither {
        root.problems
            .push(path, "set sqlite (a file) or postgres (a connection URL)");
        return None;
    }
    match (sqlite, postgres) {
        (Some(p), _) => Some(StoreConfig::Sqlite { path: p.into() }),
        (_, Some(url)) => Some(StoreConfig::Postgres { url, schema }),
        _ => None,
    }
}

fn read_listener(node: Node<'_>) -> ListenerSettings {
    let address = node.parsed("address", "an address such as \"0.0.0.0:8080\"", |s| {
        s.parse::<SocketAddr>().map_err(|e| e.to_string())
    });
    let public_url = node.parsed("public_url", "an http(s) URL", check_url);
    let unsigned_secret = node.secret("unsigned_secret");
    if unsigned_secret
        .as_ref()
        .is_some_and(|s| !secret_path_ok(s.expose_secret()))
    {
        node.problem("unsigned_secret", UNSIGNED_SECRET_RULE);
    }
    node.finish();
    ListenerSettings {
        address,
        public_url,
        unsigned_secret,
    }
}

fn check_url(s: &str) -> Result<String, String> {
    let uri: axum::http::Uri = s
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(s.trim_end_matches('/').to_owned()),
        _ => Err("expected http:// or https:// and a host".into()),
    }
}

fn read_engine(node: Node<'_>) -> EngineSettings {
    let settings = EngineSettings {
        instance: node.string("instance"),
        health: node.bool("health").unwrap_or(true),
        poll_interval: node.positive_duration("poll_interval"),
        in_flight_lease: node.positive_duration("in_flight_lease"),
    };
    node.finish();
    settings
}

fn read_limits(node: Node<'_>) -> Limits {
    let size = |k, min, max| node.int(k, min, max).map(|n| n as usize);
    let limits = Limits {
        max_body: size("max_body", 1024, 64 * 1024 * 1024),
        max_connections: size("max_connections", 1, 1_000_000),
        header_read_timeout: node.positive_duration("header_read_timeout"),
        request_timeout: node.positive_duration("request_timeout"),
        shutdown_grace: node.duration("shutdown_grace"),
        concurrency: size("concurrency", 1, 100_000),
        webhook_queue: size("webhook_queue", 1, 10_000_000),
        webhook_concurrency: size("webhook_concurrency", 1, 4_096),
    };
    node.finish();
    limits
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn read_channel(id: &str, node: Node<'_>) -> Option<ChannelConfig> {
    let path = node.path.clone();
    let id_ok = valid_id(id);
    if !id_ok {
        node.problems.push(
            path.clone(),
            "a channel id is letters, digits, '-', '_' or '.'",
        );
    }
    let provider_name = node.required_string("provider");
    let base_url = node.parsed("base_url", "an http(s) URL", check_url);
    let rate_limit = node.int("rate_limit", 0, 100_000).map(|n| n as u32);
    let timeout = node.positive_duration("timeout");
    let webhook_path = node.string("webhook_path");
    let receive = node.parsed(
        "receive",
        "\"webhook\", \"polling\" or \"none\"",
        |s| match s {
            "webhook" => Ok(Receive::Webhook),
            "polling" => Ok(Receive::Polling),
            "none" | "off" => Ok(Receive::Off),
            _ => Err("unknown mode".into()),
        },
    );
    let provider = match provider_name.as_deref() {
        None => None,
        Some("waba" | "whatsapp" | "cloud_api") => {
            let phone_number_id = node.required_string("phone_number_id");
            let token = node.required_secret("token");
            whatsapp(
                &node,
                phone_number_id.zip(token).map(|(phone_number_id, token)| {
                    WhatsAppAccount::CloudApi {
                        phone_number_id,
                        token,
                    }
                }),
            )
        }
        Some("360dialog" | "dialog360") => {
            let api_key = node.required_secret("api_key");
            whatsapp(
                &node,
                api_key.map(|api_key| WhatsAppAccount::Dialog360 { api_key }),
            )
        }
        Some("telegram") => {
            let token = node.required_secret("token");
            let webhook_secret = node.secret("webhook_secret");
            if let Some(s) = &webhook_secret {
                let s = s.expose_secret();
                if s.len() > 256 || !s.chars().all(is_secret_path_char) {
                    node.problem("webhook_secret", "must be 1 to 256 of A-Z a-z 0-9 - _");
                }
            }
            let test_environment = node.bool("test_environment").unwrap_or(false);
            token.map(|token| {
                ProviderConfig::Telegram(TelegramConfig {
                    token,
                    webhook_secret,
                    test_environment,
                })
            })
        }
        Some("max") => {
            let token = node.required_secret("token");
            let webhook_secret = node.secret("webhook_secret");
            if let Some(s) = &webhook_secret {
                let s = s.expose_secret();
                if !(5..=256).contains(&s.len()) || !s.chars().all(is_secret_path_char) {
                    node.problem("webhook_secret", "must be 5 to 256 of A-Z a-z 0-9 - _");
                }
            }
            let root_ca_pem = node.string("root_ca_pem").map(PathBuf::from);
            token.map(|token| {
                ProviderConfig::Max(MaxConfig {
                    token,
                    webhook_secret,
                    root_ca_pem,
                })
            })
        }
        Some("smsru") => {
            let api_id = node.required_secret("api_id");
            sms(&node, api_id.map(|api_id| SmsAccount::SmsRu { api_id }))
        }
        Some("smsc") => {
            let login = node.required_string("login");
            let password = node.required_secret("password");
            sms(
                &node,
                login
                    .zip(password)
                    .map(|(login, password)| SmsAccount::Smsc { login, password }),
            )
        }
        Some("smsaero") => {
            let email = node.required_string("email");
            let api_key = node.required_secret("api_key");
            sms(
                &node,
                email
                    .zip(api_key)
                    .map(|(email, api_key)| SmsAccount::SmsAero { email, api_key }),
            )
        }
        Some("twilio") => {
            let account_sid = node.required_string("account_sid");
            let auth_token = node.required_secret("auth_token");
            let from = node.required_string("from").and_then(|f| {
                if f.starts_with("MG") {
                    return Some(f);
                }
                match Phone::parse(&f) {
                    Ok(p) => Some(p.as_str().to_owned()),
                    Err(e) => {
                        node.problem("from", format!("{f:?} is not a phone number: {e}"));
                        None
                    }
                }
            });
            sms(
                &node,
                account_sid
                    .zip(auth_token)
                    .zip(from)
                    .map(|((account_sid, auth_token), from)| SmsAccount::Twilio {
                        account_sid,
                        auth_token,
                        from,
                    }),
            )
        }
        Some(other) => {
            node.problem(
                "provider",
                format!(
                    "unknown provider {other:?} (waba, 360dialog, telegram, max, smsru, smsc, smsaero or twilio)"
                ),
            );
            None
        }
    };
    // What this provider can receive.
    if let (Some(p), Some(r)) = (&provider, receive)
        && r == Receive::Polling
        && !matches!(p, ProviderConfig::Telegram(_) | ProviderConfig::Max(_))
    {
        node.problem(
            "receive",
            "only Telegram and Max bots poll (SMS statuses: status_poll)",
        );
    }
    // With an unknown provider the other keys cannot be judged: only report its problem.
    let known = matches!(
        provider_name.as_deref(),
        None | Some(
            "waba"
                | "whatsapp"
                | "cloud_api"
                | "360dialog"
                | "dialog360"
                | "telegram"
                | "max"
                | "smsru"
                | "smsc"
                | "smsaero"
                | "twilio"
        )
    );
    if known {
        node.finish();
    }
    let provider = provider?;
    if !id_ok {
        return None;
    }
    let mut c = ChannelConfig::new(id, provider);
    c.base_url = base_url;
    c.rate_limit = rate_limit;
    c.timeout = timeout;
    c.webhook_path = webhook_path;
    if let Some(r) = receive {
        c.receive = r;
    }
    Some(c)
}

fn whatsapp(node: &Node<'_>, account: Option<WhatsAppAccount>) -> Option<ProviderConfig> {
    let app_secret = node.secret("app_secret");
    let verify_token = node.secret("verify_token");
    let api_version = node.string("api_version");
    let waba_id = node.string("waba_id");
    account.map(|account| {
        ProviderConfig::WhatsApp(WhatsAppConfig {
            account,
            app_secret,
            verify_token,
            api_version,
            waba_id,
        })
    })
}

fn sms(node: &Node<'_>, account: Option<SmsAccount>) -> Option<ProviderConfig> {
    let sender = node.string("sender");
    let sandbox = node.bool("sandbox").unwrap_or(false);
    let status_poll = match node.table.get("status_poll") {
        Some(Value::String(s)) if s.trim() == "off" => {
            node.get("status_poll");
            None
        }
        Some(_) => node.positive_duration("status_poll"),
        None => Some(Duration::from_secs(30)),
    };
    let allow_list = node.bool("allow_list").unwrap_or(false);
    account.map(|account| {
        ProviderConfig::Sms(SmsConfig {
            account,
            sender,
            sandbox,
            status_poll,
            allow_list,
        })
    })
}

fn read_policy(id: &str, node: Node<'_>) -> Option<PolicyConfig> {
    if !valid_id(id) {
        node.problems.push(
            node.path.clone(),
            "a policy id is letters, digits, '-', '_' or '.'",
        );
    }
    let mut steps = Vec::new();
    let mut steps_ok = true;
    match node.get("steps") {
        None => {
            node.problem("steps", "missing");
            steps_ok = false;
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("{}[{i}]", node.at("steps"));
                match item {
                    Value::Table(t) => match read_step(node.child(t, at)) {
                        Some(s) => steps.push(s),
                        None => steps_ok = false,
                    },
                    v => {
                        node.problems
                            .push(at, format!("expected a table, found {}", type_name(v)));
                        steps_ok = false;
                    }
                }
            }
        }
        Some(v) => {
            node.wrong("steps", "an array of steps", v);
            steps_ok = false;
        }
    }
    let quiet_hours = node.parsed("quiet_hours", "hours such as \"21:00-09:00\"", |s| {
        let (a, b) = s.split_once('-').ok_or("expected start-end")?;
        let t = |x: &str| NaiveTime::parse_from_str(x.trim(), "%H:%M").map_err(|e| e.to_string());
        Ok(QuietHours {
            start: t(a)?,
            end: t(b)?,
        })
    });
    let health = |key| {
        node.parsed(
            key,
            "\"proceed\", \"skip\" or a window such as \"10m\"",
            |s| match s {
                "proceed" => Ok(HealthAction::Proceed),
                "skip" => Ok(HealthAction::Skip),
                d => humantime::parse_duration(d)
                    .map(HealthAction::ShortenWindow)
                    .map_err(|e| e.to_string()),
            },
        )
    };
    let on_degraded = health("on_degraded");
    let on_down = health("on_down");
    let deadline = node.positive_duration("deadline");
    node.finish();
    if !steps_ok || !valid_id(id) {
        return None;
    }
    let mut policy = CascadePolicy::new(id, steps);
    policy.quiet_hours = quiet_hours;
    if let Some(a) = on_degraded {
        policy.on_degraded = a;
    }
    if let Some(a) = on_down {
        policy.on_down = a;
    }
    Some(PolicyConfig { policy, deadline })
}

fn read_step(node: Node<'_>) -> Option<Step> {
    let channel = node.required_string("channel");
    let evidence = node.parsed(
        "evidence",
        "\"accepted\", \"delivered\", \"read\" or \"replied\"",
        |s| match s {
            "accepted" => Ok(Evidence::Accepted),
            "delivered" => Ok(Evidence::Delivered),
            "read" => Ok(Evidence::Read),
            "replied" => Ok(Evidence::Replied),
            _ => Err("unknown evidence".into()),
        },
    );
    // Zero is judged by `validate`, with the other cross-checks.
    let window = node.duration("window");
    let on_unknown = node.parsed(
        "on_unknown_outcome",
        "\"await_evidence\" or \"resend\"",
        |s| match s {
            "await_evidence" => Ok(UnknownOutcome::AwaitEvidence),
            "resend" => Ok(UnknownOutcome::Resend),
            _ => Err("unknown choice".into()),
        },
    );
    let mut retry = RetryPolicy::default();
    if let Some(r) = node.table("retry") {
        if let Some(n) = r.int("attempts", 1, 100) {
            retry.max_attempts = n as u32;
        }
        if let Some(d) = r.positive_duration("backoff") {
            retry.initial_backoff = d;
        }
        if let Some(d) = r.positive_duration("max_backoff") {
            retry.max_backoff = d;
        }
        if let Some(n) = r.int("rate_limit_waits", 0, 1000) {
            retry.max_rate_limit_waits = n as u32;
        }
        r.finish();
    }
    node.finish();
    let mut step = Step::new(channel?).retry(retry);
    if let Some(e) = evidence {
        step = step.wait_for(e);
    }
    if let Some(w) = window {
        step = step.window(w);
    }
    if let Some(o) = on_unknown {
        step = step.on_unknown_outcome(o);
    }
    Some(step)
}
