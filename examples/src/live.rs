//! Sending for real: the `--live` mode of `clinic-reminders`.
//!
//! The same cascade as the sandbox (WhatsApp → Telegram → Max → SMS, from
//! [`CascadePolicy::classic_clinic`]), but over the real adapters with credentials from the
//! environment, the system clock, the SQLite store in a file and the engine running as a task:
//!
//! 1. [`Providers::from_env`] reads which providers are configured (variables in
//!    [`ENV_HELP`]) into the [service](messaging::service)'s channel configurations; only those
//!    take part, in the classic order. Nothing configured is [`LiveError::NoChannels`].
//! 2. [`read_recipients`] reads the patients from a CSV file (format below).
//! 3. [`start`] turns the run's options into a [`ServiceConfig`] and builds the
//!    [`Service`]: the store, the channels, the engine, every provider's webhook on the
//!    listener, SMS status polling and the timers. Then it submits one reminder per patient
//!    (idempotent: the notification id is `reminder-<batch>-<phone digits>`).
//! 4. [`LiveRun::finish`] waits until every cascade has ended or the maximum wait is over,
//!    shuts the service down gracefully, and returns a [`Report`]: cascades still running are reported as running (they stay in the store; a
//!    second run with the same store and batch resumes them and sends nothing twice).
//!
//! # Recipients file
//!
//! One patient per line: `name,phone[,telegram chat id[,max user id]]`.
//!
//! ```text
//! # name, phone, telegram chat id, max user id
//! name,phone,telegram,max
//! Анна Петрова,+7 912 345-67-89,123456789,
//! "Борис, старший",8 912 000-00-02,,987654
//! Вера,+79120000003
//! ```
//!
//! - UTF-8; fields separated by commas (or semicolons, as spreadsheets in Russian locales
//!   write them); a field may be double-quoted (`""` inside quotes is one quote);
//! - blank lines and lines starting with `#` are ignored; a first line whose second field is
//!   `phone` is a header;
//! - the phone is read by [`Phone::parse`] (national numbers as Russian); it reaches WhatsApp and
//!   SMS; the Telegram chat id (the chat the person opened with the bot) and the Max user id
//!   (a user who started the bot) are optional integers;
//! - a bad line is an error naming the line ([`LiveError::Recipients`]); so is a phone listed twice.
//!
//! # Evidence of delivery
//!
//! | channel | evidence | how it arrives |
//! |---|---|---|
//! | WhatsApp | delivered / read status | webhook `POST /webhooks/waba` (signature checked with `META_APP_SECRET`) |
//! | Telegram, Max | accepted (bots get no receipts) | the send itself; replies by webhook `/webhooks/telegram`, `/webhooks/max` |
//! | SMS | delivery report | status polling every [`LiveConfig::poll_interval`], and callbacks on `/webhooks/sms/<provider>/<secret>` (SMS.ru, SMSC, SMS Aero sign nothing: [`LiveConfig::sms_webhook_secret`]) or `/webhooks/twilio` (signed) |
//!
//! Webhooks reach the listener only if the provider can call it: put it behind a public HTTPS
//! URL and register `<url>/webhooks/<provider>` with the provider (Meta app dashboard,
//! Telegram `setWebhook`, Max `POST /subscriptions`, SMS provider settings).
//!
//! ```no_run
//! use messaging_examples::live::{self, LiveConfig, Providers};
//! # async fn demo() -> Result<(), live::LiveError> {
//! let mut config = LiveConfig::new(
//!     Providers::from_env()?,
//!     live::read_recipients("patients.csv".as_ref())?,
//!     "clinic-reminders-live.sqlite",
//! );
//! config.listen = Some("127.0.0.1:8080".parse().unwrap());
//! let report = live::run(config).await?;
//! print!("{}", report.render(true));
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use messaging::engine::{AttemptState, CascadeEvent, CascadeStatus, HistoryKind, SubmitError};
use messaging::service::{
    ChannelConfig, MaxConfig, PolicyConfig, ProviderConfig, Receive, Service, ServiceConfig,
    ServiceError, SmsAccount, SmsConfig, StoreConfig, TelegramConfig, WhatsAppAccount,
    WhatsAppConfig,
};
use messaging::{
    Address, CascadePolicy, ChannelId, ChannelKind, Content, Engine, NotificationId, Outcome,
    Phone, Recipient, Template, TemplateComponent,
};
use secrecy::SecretString;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::scenario::{ChannelFigures, PatientRow};
use crate::tables;

/// The environment variables `--live` reads, for error messages and `--help`.
pub const ENV_HELP: &str = "\
WhatsApp  WABA_TOKEN + WABA_PHONE_NUMBER_ID (Cloud API), or D360_API_KEY (360dialog);
          optional WABA_BASE_URL, WABA_API_VERSION, WABA_ID (loads the template list),
          WABA_TEMPLATE, WABA_TEMPLATE_LANGUAGE (default hello_world, en_US),
          WABA_TEMPLATE_PARAMS (body parameters separated by '|'; {name} is the patient's name),
          META_APP_SECRET (verifies webhook signatures), WABA_VERIFY_TOKEN (webhook handshake)
Telegram  TELEGRAM_BOT_TOKEN; optional TELEGRAM_BASE_URL, TELEGRAM_TEST_ENV=1,
          TELEGRAM_WEBHOOK_SECRET
Max       MAX_BOT_TOKEN; optional MAX_BASE_URL, MAX_ROOT_CA_PEM, MAX_WEBHOOK_SECRET
SMS       SMSRU_API_ID; SMSC_LOGIN + SMSC_PASSWORD; SMSAERO_EMAIL + SMSAERO_API_KEY;
          TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN + TWILIO_FROM (any number of them, in this order);
          optional SMSRU_BASE_URL, SMSC_BASE_URL, SMSAERO_BASE_URL, TWILIO_BASE_URL,
          SMS_SENDER (sender name), SMS_SANDBOX=1 (provider test mode)";

/// The reminder text when none is given; `{name}` becomes the patient's name.
pub const DEFAULT_TEXT: &str =
    "{name}, напоминаем о приёме завтра в 10:00. Придёте? Ответьте ДА или НЕТ.";

/// How long [`LiveRun::finish`] waits for cascades by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(600);

/// How often SMS delivery statuses are polled by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// How often the store is read for cascades whose end the event stream did not show.
const SCAN_EVERY: Duration = Duration::from_secs(10);

/// Why the live mode could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// No provider is configured.
    #[error(
        "--live needs at least one provider configured in the environment; set the variables of the ones you use:\n{ENV_HELP}"
    )]
    NoChannels,
    /// A provider's variables are incomplete or invalid, or an option is out of range.
    #[error("{0}")]
    Config(String),
    /// The recipients file has a bad line (`line` is 1-based), or no recipients.
    #[error("{source_name}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Recipients {
        /// The file (or other source) name.
        source_name: String,
        /// The line, when one is at fault.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error("store {}: {message}", path.display())]
    Store {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The webhook listener could not be started.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The engine or the webhook router refused the configuration.
    #[error("{0}")]
    Engine(String),
}

impl LiveError {
    /// The process exit status for this error: 2 for configuration and input errors (nothing
    /// was sent), 1 for failures while running.
    pub fn exit_code(&self) -> i32 {
        match self {
            LiveError::NoChannels
            | LiveError::Config(_)
            | LiveError::Recipients { .. }
            | LiveError::Read { .. } => 2,
            _ => 1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Providers from the environment
// ---------------------------------------------------------------------------------------------

/// The WhatsApp template a reminder starts with (a conversation cannot start with free text).
#[derive(Debug, Clone)]
struct WabaTemplate {
    name: String,
    language: String,
    params: Vec<String>,
}

/// The providers configured in the environment, as the [service](messaging::service)'s channel
/// configurations (secrets are held as [`SecretString`]s: `Debug` never shows them).
///
/// ```
/// use messaging_examples::live::Providers;
/// let env = [("TELEGRAM_BOT_TOKEN", "123:abc"), ("SMSRU_API_ID", "k")];
/// let p = Providers::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
///     .unwrap();
/// assert_eq!(p.channel_ids(), ["telegram", "smsru"]);
/// assert!(!format!("{p:?}").contains("123:abc"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Providers {
    /// In cascade order.
    channels: Vec<ChannelConfig>,
    template: Option<WabaTemplate>,
}

impl Providers {
    /// Reads the process environment (see [`ENV_HELP`]).
    pub fn from_env() -> Result<Providers, LiveError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads variables through `lookup` (a map in tests). Empty values count as unset.
    /// An incomplete provider (a token without its phone number id, a login without its
    /// password) is [`LiveError::Config`]; none at all is not an error here (see
    /// [`is_empty`](Self::is_empty)).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Providers, LiveError> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let secret = |name: &str| var(name).map(SecretString::from);
        let flag = |name: &str| var(name).is_some_and(|v| v == "1" || v == "true");
        let pair = |a: &str, b: &str| -> Result<Option<(String, String)>, LiveError> {
            match (var(a), var(b)) {
                (Some(x), Some(y)) => Ok(Some((x, y))),
                (None, None) => Ok(None),
                (Some(_), None) => Err(LiveError::Config(format!("{a} is set but {b} is not"))),
                (None, Some(_)) => Err(LiveError::Config(format!("{b} is set but {a} is not"))),
            }
        };
        let channel = |id: &str, provider: ProviderConfig, base: &str| {
            let mut c = ChannelConfig::new(id, provider);
            c.base_url = var(base);
            // The demo's listener serves every bot's webhook (the paths in the README).
            c.receive = Receive::Webhook;
            c
        };
        let mut p = Providers::default();

        let cloud = pair("WABA_TOKEN", "WABA_PHONE_NUMBER_ID")?;
        let account = match (cloud, secret("D360_API_KEY")) {
            (Some(_), Some(_)) => {
                return Err(LiveError::Config(
                    "set either WABA_TOKEN + WABA_PHONE_NUMBER_ID (Cloud API) or D360_API_KEY (360dialog), not both".into(),
                ));
            }
            (Some((token, phone_number_id)), None) => Some(WhatsAppAccount::CloudApi {
                phone_number_id,
                token: SecretString::from(token),
            }),
            (None, Some(api_key)) => Some(WhatsAppAccount::Dialog360 { api_key }),
            (None, None) => None,
        };
        if let Some(account) = account {
            let mut wa = WhatsAppConfig::new(account);
            wa.api_version = var("WABA_API_VERSION");
            wa.waba_id = var("WABA_ID");
            wa.app_secret = secret("META_APP_SECRET");
            wa.verify_token = secret("WABA_VERIFY_TOKEN");
            let mut c = channel("whatsapp", ProviderConfig::WhatsApp(wa), "WABA_BASE_URL");
            c.webhook_path = Some("/webhooks/waba".into());
            p.channels.push(c);
            p.template = Some(WabaTemplate {
                name: var("WABA_TEMPLATE").unwrap_or_else(|| "hello_world".into()),
                language: var("WABA_TEMPLATE_LANGUAGE").unwrap_or_else(|| "en_US".into()),
                params: var("WABA_TEMPLATE_PARAMS")
                    .map(|p| p.split('|').map(|s| s.trim().to_owned()).collect())
                    .unwrap_or_default(),
            });
        }
        if let Some(token) = secret("TELEGRAM_BOT_TOKEN") {
            let mut tg = TelegramConfig::new(token);
            tg.test_environment = flag("TELEGRAM_TEST_ENV");
            tg.webhook_secret = secret("TELEGRAM_WEBHOOK_SECRET");
            p.channels.push(channel(
                "telegram",
                ProviderConfig::Telegram(tg),
                "TELEGRAM_BASE_URL",
            ));
        }
        if let Some(token) = secret("MAX_BOT_TOKEN") {
            let mut mx = MaxConfig::new(token);
            mx.root_ca_pem = var("MAX_ROOT_CA_PEM").map(PathBuf::from);
            mx.webhook_secret = secret("MAX_WEBHOOK_SECRET");
            p.channels
                .push(channel("max", ProviderConfig::Max(mx), "MAX_BASE_URL"));
        }
        let mut sms = Vec::new();
        if let Some(api_id) = secret("SMSRU_API_ID") {
            sms.push(("SMSRU_BASE_URL", SmsAccount::SmsRu { api_id }));
        }
        if let Some((login, password)) = pair("SMSC_LOGIN", "SMSC_PASSWORD")? {
            let password = SecretString::from(password);
            sms.push(("SMSC_BASE_URL", SmsAccount::Smsc { login, password }));
        }
        if let Some((email, api_key)) = pair("SMSAERO_EMAIL", "SMSAERO_API_KEY")? {
            let api_key = SecretString::from(api_key);
            sms.push(("SMSAERO_BASE_URL", SmsAccount::SmsAero { email, api_key }));
        }
        if let Some((account_sid, auth_token)) = pair("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")? {
            let from = var("TWILIO_FROM").ok_or_else(|| {
                LiveError::Config(
                    "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are set but TWILIO_FROM (the sending number) is not".into(),
                )
            })?;
            let auth_token = SecretString::from(auth_token);
            sms.push((
                "TWILIO_BASE_URL",
                SmsAccount::Twilio {
                    account_sid,
                    auth_token,
                    from,
                },
            ));
        }
        for (base, account) in sms {
            let id = account.name();
            let mut s = SmsConfig::new(account);
            s.sender = var("SMS_SENDER");
            s.sandbox = flag("SMS_SANDBOX");
            p.channels.push(channel(id, ProviderConfig::Sms(s), base));
        }
        Ok(p)
    }

    /// Whether no provider is configured.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The channel ids that take part, in cascade order: `whatsapp`, `telegram`, `max`, then
    /// `smsru`, `smsc`, `smsaero`, `twilio`.
    pub fn channel_ids(&self) -> Vec<&str> {
        self.channels.iter().map(|c| c.id.as_str()).collect()
    }

    fn channels(&self) -> Vec<(ChannelId, ChannelKind)> {
        self.channels
            .iter()
            .map(|c| (c.id.clone(), c.kind()))
            .collect()
    }

    /// The cascade over these providers ([`clinic_policy`]).
    pub fn policy(&self, window: Option<Duration>) -> CascadePolicy {
        clinic_policy(&self.channels(), window)
    }
}

// ---------------------------------------------------------------------------------------------
// Recipients
// ---------------------------------------------------------------------------------------------

/// One patient from the recipients file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Patient {
    /// The 1-based line of the file.
    pub line: usize,
    /// How to address them.
    pub name: String,
    /// Their phone (WhatsApp and SMS).
    pub phone: Phone,
    /// Their Telegram chat id with the clinic's bot.
    pub telegram: Option<i64>,
    /// Their Max user id.
    pub max: Option<i64>,
}

impl Patient {
    /// The cascade recipient.
    pub fn recipient(&self) -> Recipient {
        let mut r = Recipient {
            contact_id: Some(format!("patient-{}", self.phone.digits()).into()),
            phone: Some(self.phone.clone()),
            ..Recipient::default()
        }
        .name(self.name.clone());
        if let Some(id) = self.telegram {
            r = r.address(Address::Telegram(id));
        }
        if let Some(id) = self.max {
            r = r.address(Address::MaxUser(id));
        }
        r
    }
}

/// The fields of one CSV line, trimmed, quotes resolved.
fn csv_fields(line: &str, delimiter: u8) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .delimiter(delimiter)
        .from_reader(line.as_bytes());
    match reader.records().next() {
        Some(Ok(record)) => Ok(record.iter().map(str::to_owned).collect()),
        Some(Err(e)) => Err(e.to_string()),
        None => Ok(Vec::new()),
    }
}

/// Reads the recipients file (format in the [module docs](self)).
pub fn read_recipients(path: &Path) -> Result<Vec<Patient>, LiveError> {
    let bytes = std::fs::read(path).map_err(|source| LiveError::Read {
        path: path.to_owned(),
        source,
    })?;
    let name = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        LiveError::Recipients {
            source_name: name.clone(),
            line: Some(line),
            message: "not UTF-8 text (save the file as UTF-8)".into(),
        }
    })?;
    parse_recipients(&text, &name)
}

/// Parses recipients from CSV text; `source_name` names it in errors.
///
/// ```
/// use messaging_examples::live::parse_recipients;
/// let p = parse_recipients("name,phone,telegram,max\nАнна,8 (912) 345-67-89,42\n", "x.csv").unwrap();
/// assert_eq!((p[0].line, p[0].phone.as_str(), p[0].telegram), (2, "+79123456789", Some(42)));
/// let e = parse_recipients("Анна,+79123456789\nБорис,12345\n", "x.csv").unwrap_err();
/// assert!(e.to_string().starts_with("x.csv line 2: "), "{e}");
/// ```
pub fn parse_recipients(text: &str, source_name: &str) -> Result<Vec<Patient>, LiveError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let err = |line: usize, message: String| LiveError::Recipients {
        source_name: source_name.to_owned(),
        line: Some(line),
        message,
    };
    // Spreadsheets in Russian locales save CSV with semicolons: take whichever the first line
    // of data uses more.
    let first_data = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let delimiter = if first_data.matches(';').count() > first_data.matches(',').count() {
        b';'
    } else {
        b','
    };
    let mut patients: Vec<Patient> = Vec::new();
    let mut seen: HashMap<Phone, usize> = HashMap::new();
    let mut first = true;
    // Line by line, so that errors name the line as an editor counts it (comments included).
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields = csv_fields(trimmed, delimiter).map_err(|e| err(line, e))?;
        if std::mem::take(&mut first)
            && fields
                .get(1)
                .is_some_and(|f| matches!(f.to_lowercase().as_str(), "phone" | "телефон"))
        {
            continue;
        }
        if !(2..=4).contains(&fields.len()) {
            return Err(err(
                line,
                format!(
                    "expected 2 to 4 fields (name, phone, telegram chat id, max user id), found {}",
                    fields.len()
                ),
            ));
        }
        let name = fields[0].clone();
        if name.is_empty() {
            return Err(err(line, "the name is empty".into()));
        }
        let phone = Phone::parse(&fields[1]).map_err(|e| err(line, format!("bad phone: {e}")))?;
        let id_field = |n: usize, what: &str| -> Result<Option<i64>, LiveError> {
            match fields.get(n).map(String::as_str) {
                None | Some("") => Ok(None),
                Some(v) => match v.parse::<i64>() {
                    Ok(id) if id != 0 => Ok(Some(id)),
                    _ => Err(err(line, format!("{what} {v:?} is not a non-zero integer"))),
                },
            }
        };
        let telegram = id_field(2, "telegram chat id")?;
        let max = id_field(3, "max user id")?;
        if let Some(earlier) = seen.insert(phone.clone(), line) {
            return Err(err(
                line,
                format!("{phone} is already on line {earlier} (one reminder per phone)"),
            ));
        }
        patients.push(Patient {
            line,
            name,
            phone,
            telegram,
            max,
        });
    }
    if patients.is_empty() {
        return Err(LiveError::Recipients {
            source_name: source_name.to_owned(),
            line: None,
            message:
                "no recipients (expected lines of name,phone[,telegram chat id[,max user id]])"
                    .into(),
        });
    }
    Ok(patients)
}

// ---------------------------------------------------------------------------------------------
// Configuration of a run
// ---------------------------------------------------------------------------------------------

/// A callback that gets one line of progress at a time (`[10:00:01] Анна: sent on whatsapp`).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// What a live run needs. Start from [`LiveConfig::new`] and set the fields you need.
#[derive(Clone)]
#[non_exhaustive]
pub struct LiveConfig {
    /// The configured providers.
    pub providers: Providers,
    /// Who gets a reminder.
    pub patients: Vec<Patient>,
    /// The SQLite file (kept between runs: a second run resumes and sends nothing twice).
    pub db: PathBuf,
    /// Where the webhook listener binds (`127.0.0.1:8080`; port 0 picks one); `None`: no
    /// listener, so no WhatsApp delivery statuses and no replies arrive.
    pub listen: Option<SocketAddr>,
    /// The public URL providers call (`https://clinic.example`), for Twilio's signature check
    /// and the SMS Aero / Twilio status callback URLs.
    pub public_url: Option<String>,
    /// Every step's window, instead of the policy's (60 min WhatsApp, 15 min Telegram and Max,
    /// 24 h SMS).
    pub window: Option<Duration>,
    /// How long to wait after the reminders went out before reporting (cascades still running
    /// then are reported as running).
    pub wait: Duration,
    /// How often SMS delivery statuses are polled.
    pub poll_interval: Duration,
    /// The reminder text; `{name}` becomes the patient's name.
    pub text: String,
    /// The batch, part of every notification id: the same batch and store never send twice.
    pub batch: String,
    /// Progress lines, if wanted.
    pub progress: Option<Progress>,
    /// The secret path segment the unsigned SMS delivery-report endpoints (SMS.ru, SMSC,
    /// SMS Aero) are mounted under: `/webhooks/sms/<secret>/<provider>`. Those providers sign
    /// nothing, so an unguessable path is what keeps a forged "delivered" out. `None`: one is
    /// generated for this run and printed with the URL to register
    /// (`SMS_WEBHOOK_SECRET` / `--sms-webhook-secret` keep it stable between runs).
    pub sms_webhook_secret: Option<String>,
    /// Serve this Prometheus recorder's page at `/metrics` on the listener (which must be
    /// configured): the engine's and the adapters' metrics
    /// ([`messaging::metrics`] lists them). Install the recorder with
    /// [`observability::install_prometheus`](crate::observability::install_prometheus).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveConfig")
            .field("providers", &self.providers)
            .field("patients", &self.patients.len())
            .field("db", &self.db)
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("window", &self.window)
            .field("wait", &self.wait)
            .field("poll_interval", &self.poll_interval)
            .field("batch", &self.batch)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl LiveConfig {
    /// A configuration with no listener, the policy's windows, a 10-minute wait, SMS status
    /// polling every 10 s, [`DEFAULT_TEXT`] and today's date (local time) as the batch.
    pub fn new(providers: Providers, patients: Vec<Patient>, db: impl Into<PathBuf>) -> Self {
        LiveConfig {
            providers,
            patients,
            db: db.into(),
            listen: None,
            public_url: None,
            window: None,
            wait: DEFAULT_WAIT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            text: DEFAULT_TEXT.into(),
            batch: chrono::Local::now().format("%Y-%m-%d").to_string(),
            progress: None,
            sms_webhook_secret: None,
            metrics: None,
        }
    }

    fn validate(&self) -> Result<(), LiveError> {
        if self.providers.is_empty() {
            return Err(LiveError::NoChannels);
        }
        if self.patients.is_empty() {
            return Err(LiveError::Config("no recipients".into()));
        }
        if self.window.is_some_and(|w| w.is_zero()) {
            return Err(LiveError::Config(
                "the window must be longer than zero".into(),
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(LiveError::Config(
                "the SMS polling interval must be longer than zero".into(),
            ));
        }
        if let Some(secret) = &self.sms_webhook_secret
            && (secret.len() < 16
                || !secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
        {
            return Err(LiveError::Config(
                "the SMS webhook secret must be at least 16 characters of A-Z a-z 0-9 - _".into(),
            ));
        }
        if self.batch.is_empty()
            || !self
                .batch
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(LiveError::Config(format!(
                "batch {:?} must be letters, digits, '-', '_' or '.'",
                self.batch
            )));
        }
        if self.text.trim().is_empty() {
            return Err(LiveError::Config("the reminder text is empty".into()));
        }
        if self.metrics.is_some() && self.listen.is_none() {
            return Err(LiveError::Config(
                "metrics are served on the webhook listener: set --listen too".into(),
            ));
        }
        Ok(())
    }

    fn content_for(&self, name: &str) -> Content {
        let content = Content::text(self.text.replace("{name}", name));
        match &self.providers.template {
            Some(wa) => {
                let mut t = Template::new(&wa.name, &wa.language);
                if !wa.params.is_empty() {
                    t = t.component(TemplateComponent::body_text(
                        wa.params.iter().map(|p| p.replace("{name}", name)),
                    ));
                }
                content.with_template(t)
            }
            None => content,
        }
    }
}

/// The notification id of a patient's reminder in a batch.
pub fn notification_id(batch: &str, phone: &Phone) -> NotificationId {
    NotificationId::new(format!("reminder-{batch}-{}", phone.digits()))
}

/// The classic clinic cascade over the configured channels: the steps of
/// [`CascadePolicy::classic_clinic`] for the kinds that are configured (several SMS providers
/// each get the SMS step, in order), every window replaced by `window` when given. The policy
/// id names the channels (`clinic-live/whatsapp+smsru`), so cascades stored under another
/// channel set are never driven with the wrong steps.
pub fn clinic_policy(
    channels: &[(ChannelId, ChannelKind)],
    window: Option<Duration>,
) -> CascadePolicy {
    let classic = CascadePolicy::classic_clinic("whatsapp", "telegram", "max", "sms");
    let kinds = [
        ChannelKind::WhatsApp,
        ChannelKind::Telegram,
        ChannelKind::Max,
        ChannelKind::Sms,
    ];
    let mut steps = Vec::new();
    for (step, kind) in classic.steps.iter().zip(kinds) {
        for (id, _) in channels.iter().filter(|(_, k)| *k == kind) {
            let mut s = step.clone();
            s.channel = id.clone();
            if let Some(w) = window {
                s.window = w;
            }
            steps.push(s);
        }
    }
    let name = steps
        .iter()
        .map(|s| s.channel.as_str())
        .collect::<Vec<_>>()
        .join("+");
    CascadePolicy { steps, ..classic }.with_id(format!("clinic-live/{name}"))
}

// ---------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------

/// A fresh secret path segment for the unsigned SMS report endpoints: 128 bits from `rand`'s
/// thread generator (a CSPRNG seeded from the operating system), in hex.
fn generate_sms_webhook_secret() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The [service configuration](ServiceConfig) of a run: the SQLite store in `db`, the
/// configured channels (SMS statuses polled every `poll_interval`), the clinic cascade over
/// them, the listener's public URL and the secret path of the unsigned SMS reports.
fn service_config(config: &LiveConfig, sms_secret: &str) -> ServiceConfig {
    let mut sc = ServiceConfig::new(StoreConfig::Sqlite {
        path: config.db.clone(),
    });
    sc.channels = config.providers.channels.clone();
    for c in &mut sc.channels {
        if let ProviderConfig::Sms(s) = &mut c.provider {
            s.status_poll = Some(config.poll_interval);
        }
    }
    sc.policies = vec![PolicyConfig::new(config.providers.policy(config.window))];
    sc.listener.address = config.listen;
    sc.listener.public_url = config
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned());
    sc.listener.unsigned_secret = Some(SecretString::from(sms_secret.to_owned()));
    sc
}

fn service_err(db: &Path) -> impl Fn(ServiceError) -> LiveError + '_ {
    move |e| match e {
        ServiceError::Config(e) => LiveError::Config(e.to_string()),
        ServiceError::Store(e) => LiveError::Store {
            path: db.to_owned(),
            message: e.to_string(),
        },
        ServiceError::Listen { addr, source } => LiveError::Listen { addr, source },
        other => LiveError::Engine(other.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// How a patient's reminder was taken in.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Taken {
    /// Submitted now.
    New,
    /// Submitted by an earlier run with the same store and batch: resumed, nothing sent again.
    Resumed,
    /// Refused at submit (no configured channel reaches the patient, ...).
    Refused(String),
}

#[derive(Debug)]
struct Submitted {
    patient: Patient,
    id: NotificationId,
    taken: Taken,
}

/// A live run in progress: the reminders went out; [`finish`](Self::finish) waits for the
/// cascades and reports. Dropping it without `finish` stops the service's tasks.
pub struct LiveRun {
    /// `None` once shut down.
    service: Option<Service>,
    engine: Engine,
    policy: CascadePolicy,
    order: Vec<(ChannelId, ChannelKind)>,
    submitted: Vec<Submitted>,
    names: HashMap<NotificationId, String>,
    events: broadcast::Receiver<CascadeEvent>,
    addr: Option<SocketAddr>,
    webhook_paths: Vec<String>,
    notes: Vec<String>,
    wait: Duration,
    progress: Option<Progress>,
    db: PathBuf,
}

impl fmt::Debug for LiveRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveRun")
            .field("policy", &self.policy.id)
            .field("submitted", &self.submitted.len())
            .field("listen", &self.addr)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// [`start`], then [`LiveRun::finish`].
pub async fn run(config: LiveConfig) -> Result<Report, LiveError> {
    start(config).await?.finish().await
}

/// Builds the [`Service`] (store, channels, engine, webhook router, background tasks) from the
/// configuration, starts the webhook listener, and submits one reminder per patient. Returns
/// once every reminder was submitted (each cascade's first step has been tried).
pub async fn start(config: LiveConfig) -> Result<LiveRun, LiveError> {
    config.validate()?;
    let (sms_secret, generated) = match &config.sms_webhook_secret {
        Some(s) => (s.clone(), false),
        None => (generate_sms_webhook_secret(), true),
    };
    let to_live = service_err(&config.db);
    let mut builder = Service::builder(service_config(&config, &sms_secret));
    if let Some(handle) = &config.metrics {
        let handle = handle.clone();
        builder = builder.routes(axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let page = crate::observability::render(&handle);
                async move { page }
            }),
        ));
    }
    let mut service = builder.build().await.map_err(&to_live)?;
    let engine = service.engine().clone();
    let events = engine.subscribe();
    let policy = config.providers.policy(config.window);
    let mut notes = service.notes().to_vec();
    let mut addr = None;
    let mut webhook_paths = Vec::new();
    if config.listen.is_some() {
        addr = Some(service.listen().await.map_err(&to_live)?);
        let base = config
            .public_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned());
        for hook in service.webhooks() {
            if hook.has_secret_path() {
                // Printed once: the URL is what the clinic registers at the provider.
                notes.push(format!(
                    "{} delivery reports: register {}{} at the provider (it signs nothing: \
                     the secret path is the only protection{})",
                    hook.provider(),
                    base.as_deref().unwrap_or("<public URL>"),
                    hook.path(),
                    if generated {
                        "; generated for this run, set SMS_WEBHOOK_SECRET to keep it"
                    } else {
                        ""
                    }
                ));
            }
            webhook_paths.push(hook.path().to_owned());
        }
    } else {
        notes.push(
            "no --listen: no webhooks, so no WhatsApp delivery statuses and no replies arrive"
                .into(),
        );
    }

    let mut run = LiveRun {
        service: Some(service),
        engine,
        policy,
        order: config.providers.channels(),
        submitted: Vec::with_capacity(config.patients.len()),
        names: HashMap::new(),
        events,
        addr,
        webhook_paths,
        notes,
        wait: config.wait,
        progress: config.progress.clone(),
        db: config.db.clone(),
    };
    for patient in &config.patients {
        let id = notification_id(&config.batch, &patient.phone);
        run.names.insert(id.clone(), patient.name.clone());
        let notification = messaging::Notification::new(
            id.clone(),
            patient.recipient(),
            config.content_for(&patient.name),
        )
        .meta("patient", patient.name.clone())
        .meta("line", patient.line.to_string());
        let service = run.service.as_ref().expect("running");
        let taken = match service.submit(notification).await {
            Ok(s) if s.new => Taken::New,
            Ok(_) => {
                // Sent by an earlier run: poll its SMS status too, should it wait on one.
                service.track(&id);
                Taken::Resumed
            }
            Err(SubmitError::Store(e)) => {
                run.shutdown().await;
                return Err(LiveError::Store {
                    path: config.db.clone(),
                    message: e.to_string(),
                });
            }
            Err(SubmitError::NoAddress(..)) => {
                Taken::Refused("no configured channel reaches this patient".into())
            }
            Err(e) => Taken::Refused(e.to_string()),
        };
        if let Taken::Refused(why) = &taken {
            run.say(&format!("{}: not sent: {why}", patient.name));
        }
        run.submitted.push(Submitted {
            patient: patient.clone(),
            id,
            taken,
        });
    }
    Ok(run)
}

/// What ended a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// Every cascade ended.
    AllEnded,
    /// The maximum wait was over.
    WaitOver,
    /// The caller stopped it (Ctrl-C).
    Stopped,
}

impl LiveRun {
    /// The address the webhook listener is bound to (with the port picked when asked for 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The webhook paths mounted on the listener (`/webhooks/waba`, ...).
    pub fn webhook_paths(&self) -> &[String] {
        &self.webhook_paths
    }

    /// The channel ids in cascade order.
    pub fn channels(&self) -> Vec<&str> {
        self.order.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The cascade policy in use.
    pub fn policy(&self) -> &CascadePolicy {
        &self.policy
    }

    /// Warnings about the configuration (unsigned webhooks, no listener, template list).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The engine (to inspect statuses while the run waits).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The notification id of each patient, in file order.
    pub fn notification_ids(&self) -> Vec<&NotificationId> {
        self.submitted.iter().map(|s| &s.id).collect()
    }

    fn say(&self, line: &str) {
        if let Some(p) = &self.progress {
            p(&format!(
                "[{}] {line}",
                chrono::Local::now().format("%H:%M:%S")
            ));
        }
    }

    /// Waits until every cascade has ended or the maximum wait is over, then stops and reports.
    pub async fn finish(self) -> Result<Report, LiveError> {
        self.finish_or(std::future::pending()).await
    }

    /// [`finish`](Self::finish), ending early when `stop` resolves (Ctrl-C).
    pub async fn finish_or(mut self, stop: impl Future<Output = ()>) -> Result<Report, LiveError> {
        tokio::pin!(stop);
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut finished: HashSet<NotificationId> = HashSet::new();
        self.scan(&mut finished).await;
        let mut next_scan = tokio::time::Instant::now() + SCAN_EVERY;
        let mut events_open = true;
        let ended = loop {
            if self.remaining(&finished) == 0 {
                break Ended::AllEnded;
            }
            tokio::select! {
                () = &mut stop => break Ended::Stopped,
                () = tokio::time::sleep_until(deadline) => break Ended::WaitOver,
                ev = self.events.recv(), if events_open => match ev {
                    Ok(ev) => self.on_event(&ev, &mut finished),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.scan(&mut finished).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => events_open = false,
                },
                () = tokio::time::sleep_until(next_scan) => {
                    self.scan(&mut finished).await;
                    next_scan = tokio::time::Instant::now() + SCAN_EVERY;
                }
            }
        };
        // Drain what is already queued, for the progress lines.
        while let Ok(ev) = self.events.try_recv() {
            self.on_event(&ev, &mut finished);
        }
        self.shutdown().await;
        self.report(ended).await
    }

    fn remaining(&self, finished: &HashSet<NotificationId>) -> usize {
        self.submitted
            .iter()
            .filter(|s| !matches!(s.taken, Taken::Refused(_)) && !finished.contains(&s.id))
            .count()
    }

    /// Reads the cascades not known to have ended (the event stream may have lagged) and
    /// marks the ended ones.
    async fn scan(&self, finished: &mut HashSet<NotificationId>) {
        for s in &self.submitted {
            if matches!(s.taken, Taken::Refused(_)) || finished.contains(&s.id) {
                continue;
            }
            match self.engine.status(&s.id).await {
                Ok(Some(st)) if st.outcome.is_some() => {
                    finished.insert(s.id.clone());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(notification = %s.id, error = %e, "status not read"),
            }
        }
    }

    fn on_event(&self, ev: &CascadeEvent, finished: &mut HashSet<NotificationId>) {
        let who = self
            .names
            .get(&ev.notification_id)
            .cloned()
            .unwrap_or_else(|| ev.notification_id.to_string());
        let line = match &ev.entry.kind {
            HistoryKind::Sent { channel, .. } => Some(format!("sent on {channel}")),
            HistoryKind::Failed {
                channel,
                kind,
                message,
                ..
            } => Some(format!("{channel} failed ({kind}): {message}")),
            HistoryKind::OutcomeUnknown {
                channel, reason, ..
            } => Some(format!(
                "{channel}: outcome unknown, may have been sent ({})",
                reason.as_deref().unwrap_or("no answer")
            )),
            HistoryKind::Sending {
                channel,
                possible_duplicate: true,
                ..
            } => Some(format!(
                "sending on {channel} again, marked possible duplicate"
            )),
            HistoryKind::Skipped {
                channel, reason, ..
            } => Some(format!("{channel} skipped: {reason}")),
            HistoryKind::Deferred { channel, until, .. } => Some(format!(
                "{channel} waits until {}",
                until.with_timezone(&chrono::Local).format("%H:%M:%S")
            )),
            HistoryKind::WindowClosed { channel, .. } => Some(format!(
                "no proof of delivery from {channel} within the window"
            )),
            HistoryKind::Evidence {
                channel, evidence, ..
            } => Some(format!("{channel}: {evidence}")),
            HistoryKind::Delivered {
                channel, evidence, ..
            } => Some(format!("delivered by {channel} ({evidence})")),
            HistoryKind::LateDelivery {
                channel, evidence, ..
            } => Some(format!("delivered late by {channel} ({evidence})")),
            HistoryKind::Replied { channel } => Some(format!("replied on {channel}")),
            HistoryKind::Unconfirmed => Some("ended unconfirmed".into()),
            HistoryKind::Exhausted => Some("ended: every channel failed or was skipped".into()),
            HistoryKind::Expired => Some("ended: the deadline passed".into()),
            HistoryKind::Cancelled => Some("cancelled".into()),
            _ => None,
        };
        if ev.entry.kind.is_terminal() {
            finished.insert(ev.notification_id.clone());
        }
        if let Some(line) = line {
            self.say(&format!("{who}: {line}"));
        }
    }

    /// Stops the listener, the polling, the event processing and the engine, gracefully.
    async fn shutdown(&mut self) {
        if let Some(service) = self.service.take() {
            service.shutdown().await;
        }
    }

    async fn report(&self, ended: Ended) -> Result<Report, LiveError> {
        let mut by_channel: BTreeMap<String, ChannelFigures> = self
            .order
            .iter()
            .map(|(id, _)| (id.to_string(), ChannelFigures::default()))
            .collect();
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        let mut rows = Vec::with_capacity(self.submitted.len());
        let mut times = Vec::new();
        for s in &self.submitted {
            let mut row = LiveRow {
                line: s.patient.line,
                name: s.patient.name.clone(),
                phone: s.patient.phone.to_string(),
                notification_id: s.id.to_string(),
                outcome: "not sent".into(),
                delivered_by: None,
                time_to_delivery_s: None,
                attempts: 0,
                sent_on: Vec::new(),
                waiting_on: None,
                resumed: s.taken == Taken::Resumed,
                note: None,
            };
            if let Taken::Refused(why) = &s.taken {
                row.note = Some(why.clone());
            } else {
                let st = self
                    .engine
                    .status(&s.id)
                    .await
                    .map_err(|e| LiveError::Store {
                        path: self.db.clone(),
                        message: e.to_string(),
                    })?;
                if let Some(st) = st {
                    self.fill_row(&mut row, &st, &mut by_channel);
                }
            }
            if let Some(t) = row.time_to_delivery_s {
                times.push(t);
            }
            *outcomes.entry(row.outcome.clone()).or_default() += 1;
            rows.push(row);
        }
        times.sort_by(f64::total_cmp);
        let pct = |p: usize| -> f64 {
            if times.is_empty() {
                0.0
            } else {
                times[(times.len() * p / 100).min(times.len() - 1)]
            }
        };
        Ok(Report {
            policy: self.policy.id.to_string(),
            channels: self.order.iter().map(|(id, _)| id.to_string()).collect(),
            delivered: rows.iter().filter(|r| r.delivered_by.is_some()).count(),
            running: rows.iter().filter(|r| r.outcome == "running").count(),
            p50_time_to_delivery_s: pct(50),
            p90_time_to_delivery_s: pct(90),
            cost_total: by_channel.values().map(|f| f.cost).sum(),
            by_channel,
            outcomes,
            rows,
            ended,
            db: self.db.clone(),
        })
    }

    fn fill_row(
        &self,
        row: &mut LiveRow,
        st: &CascadeStatus,
        by_channel: &mut BTreeMap<String, ChannelFigures>,
    ) {
        row.attempts = st.attempts.len();
        row.outcome = st
            .outcome
            .as_ref()
            .map(|o| o.name())
            .unwrap_or("running")
            .to_owned();
        for a in &st.attempts {
            let f = by_channel.entry(a.channel.to_string()).or_default();
            f.sends += 1;
            if matches!(a.state, AttemptState::Failed { .. }) {
                f.failed += 1;
            }
            f.cost += a.cost.as_ref().map(|c| c.amount).unwrap_or(0.0);
            if a.provider_message_id.is_some()
                && !row.sent_on.iter().any(|c| c == a.channel.as_str())
            {
                row.sent_on.push(a.channel.to_string());
            }
        }
        match &st.outcome {
            Some(Outcome::Delivered { channel, .. }) => {
                by_channel.entry(channel.to_string()).or_default().delivered += 1;
                row.delivered_by = Some(channel.to_string());
                if let Some(t) = st.history.iter().rev().find_map(|h| match h.kind {
                    HistoryKind::Delivered { .. } | HistoryKind::LateDelivery { .. } => Some(h.at),
                    _ => None,
                }) {
                    row.time_to_delivery_s =
                        Some((t - st.created_at).num_milliseconds() as f64 / 1000.0);
                }
            }
            Some(_) => {}
            None => {
                row.waiting_on = self
                    .policy
                    .steps
                    .get(st.step)
                    .map(|s| s.channel.to_string());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// One patient's line of a live run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveRow {
    /// The line of the recipients file.
    pub line: usize,
    /// The patient's name.
    pub name: String,
    /// Their phone (E.164).
    pub phone: String,
    /// The notification id.
    pub notification_id: String,
    /// How the cascade ended (`delivered`, `replied`, `unconfirmed`, `exhausted`, ...),
    /// `running` when it had not ended, `not sent` when it was refused at submit.
    pub outcome: String,
    /// The channel that delivered, if one did.
    pub delivered_by: Option<String>,
    /// Seconds from submit to delivery.
    pub time_to_delivery_s: Option<f64>,
    /// Sends made (failed ones included).
    pub attempts: usize,
    /// The channels that accepted a send, in order.
    pub sent_on: Vec<String>,
    /// For a running cascade, the channel of its current step.
    pub waiting_on: Option<String>,
    /// Submitted by an earlier run with the same store and batch (resumed, not sent again).
    pub resumed: bool,
    /// Why it was not sent.
    pub note: Option<String>,
}

impl LiveRow {
    /// The line in the sandbox's shape, for the shared table.
    pub fn patient_row(&self) -> PatientRow {
        PatientRow {
            notification_id: self.notification_id.clone(),
            outcome: self.outcome.clone(),
            delivered_by: self.delivered_by.clone(),
            time_to_delivery_s: self.time_to_delivery_s,
            attempts: self.attempts,
        }
    }
}

/// The result of a live run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The policy id (`clinic-live/whatsapp+telegram+smsru`).
    pub policy: String,
    /// The channels in cascade order.
    pub channels: Vec<String>,
    /// One line per patient, in file order.
    pub rows: Vec<LiveRow>,
    /// Figures per channel id.
    pub by_channel: BTreeMap<String, ChannelFigures>,
    /// How many cascades ended each way (`running`, `not sent` included).
    pub outcomes: BTreeMap<String, usize>,
    /// Reminders delivered (proof from a channel).
    pub delivered: usize,
    /// Cascades still running at the end.
    pub running: usize,
    /// Median time from submit to delivery, seconds.
    pub p50_time_to_delivery_s: f64,
    /// 90th percentile time to delivery, seconds.
    pub p90_time_to_delivery_s: f64,
    /// Total cost as the providers reported or estimated it (currencies added as numbers).
    pub cost_total: f64,
    /// What ended the run.
    pub ended: Ended,
    /// The store.
    pub db: PathBuf,
}

impl Report {
    /// The line of the patient called `name`.
    pub fn row(&self, name: &str) -> Option<&LiveRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// The per-patient and per-channel tables (the sandbox's), the still-running cascades and
    /// the refusals. Without `all`, the first 15 patients.
    pub fn render(&self, all: bool) -> String {
        let rows: Vec<PatientRow> = self.rows.iter().map(LiveRow::patient_row).collect();
        let names: Vec<&str> = self.rows.iter().map(|r| r.name.as_str()).collect();
        let shown = if all { rows.len() } else { 15 };
        let mut out = tables::patients(&rows, &names, shown);
        out.push('\n');
        out.push_str(&tables::channels(
            &self.by_channel,
            self.delivered,
            self.cost_total,
            "cost",
        ));
        let running: Vec<&LiveRow> = self
            .rows
            .iter()
            .filter(|r| r.outcome == "running")
            .collect();
        if !running.is_empty() {
            out.push_str(&format!(
                "\nstill running (kept in {}; run again with the same --db and --batch to follow them up):\n",
                self.db.display()
            ));
            for r in running {
                out.push_str(&format!(
                    "  {} ({}): waiting on {}, sent on {}\n",
                    r.name,
                    r.notification_id,
                    r.waiting_on.as_deref().unwrap_or("-"),
                    if r.sent_on.is_empty() {
                        "-".into()
                    } else {
                        r.sent_on.join(", ")
                    }
                ));
            }
        }
        let refused: Vec<&LiveRow> = self.rows.iter().filter(|r| r.note.is_some()).collect();
        if !refused.is_empty() {
            out.push_str("\nnot sent:\n");
            for r in refused {
                out.push_str(&format!(
                    "  {} (line {}): {}\n",
                    r.name,
                    r.line,
                    r.note.as_deref().unwrap_or("")
                ));
            }
        }
        let resumed = self.rows.iter().filter(|r| r.resumed).count();
        let time = |secs: f64| {
            if self.delivered == 0 {
                "-".to_owned()
            } else {
                tables::duration(secs)
            }
        };
        out.push_str(&format!(
            "\ndelivered {} of {} reminders; {} still running; time to delivery p50 {}, p90 {}; outcomes {:?}{}\n",
            self.delivered,
            self.rows.len(),
            self.running,
            time(self.p50_time_to_delivery_s),
            time(self.p90_time_to_delivery_s),
            self.outcomes,
            if resumed > 0 {
                format!("; {resumed} submitted by an earlier run (not sent again)")
            } else {
                String::new()
            }
        ));
        out.push_str(match self.ended {
            Ended::AllEnded => "every cascade ended\n",
            Ended::WaitOver => "the maximum wait is over\n",
            Ended::Stopped => "stopped\n",
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn nothing_configured_is_empty() {
        let p = Providers::from_lookup(lookup(&[])).unwrap();
        assert!(p.is_empty());
        let c = LiveConfig::new(p, Vec::new(), "x.sqlite");
        assert!(matches!(c.validate(), Err(LiveError::NoChannels)));
        let msg = LiveError::NoChannels.to_string();
        for v in [
            "WABA_TOKEN",
            "WABA_PHONE_NUMBER_ID",
            "META_APP_SECRET",
            "TELEGRAM_BOT_TOKEN",
            "MAX_BOT_TOKEN",
            "SMSRU_API_ID",
            "TWILIO_FROM",
        ] {
            assert!(msg.contains(v), "{v} missing from {msg}");
        }
        assert_eq!(LiveError::NoChannels.exit_code(), 2);
    }

    #[test]
    fn every_provider_in_cascade_order_and_secrets_hidden() {
        let p = Providers::from_lookup(lookup(&[
            ("SMSC_LOGIN", "clinic"),
            ("SMSC_PASSWORD", "pw-hidden-1"),
            ("SMSRU_API_ID", "smsru-hidden-2"),
            ("MAX_BOT_TOKEN", "max-hidden-3"),
            ("TELEGRAM_BOT_TOKEN", "1:tg-hidden-4"),
            ("WABA_TOKEN", "waba-hidden-5"),
            ("WABA_PHONE_NUMBER_ID", "1055"),
            ("META_APP_SECRET", "app-hidden-6"),
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("TWILIO_AUTH_TOKEN", "twilio-hidden-7"),
            ("TWILIO_FROM", "+15005550006"),
            ("SMSAERO_EMAIL", "a@b.c"),
            ("SMSAERO_API_KEY", "aero-hidden-8"),
        ]))
        .unwrap();
        assert_eq!(
            p.channel_ids(),
            [
                "whatsapp", "telegram", "max", "smsru", "smsc", "smsaero", "twilio"
            ]
        );
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("hidden"), "{dbg}");
    }

    #[test]
    fn incomplete_providers_are_config_errors() {
        for vars in [
            &[("WABA_TOKEN", "t")][..],
            &[("WABA_PHONE_NUMBER_ID", "1")],
            &[("SMSC_LOGIN", "l")],
            &[("SMSAERO_API_KEY", "k")],
            &[("TWILIO_ACCOUNT_SID", "AC"), ("TWILIO_AUTH_TOKEN", "t")],
            &[
                ("WABA_TOKEN", "t"),
                ("WABA_PHONE_NUMBER_ID", "1"),
                ("D360_API_KEY", "k"),
            ],
        ] {
            let e = Providers::from_lookup(lookup(vars)).unwrap_err();
            assert!(matches!(e, LiveError::Config(_)), "{vars:?}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
        // Blank values are unset.
        let p = Providers::from_lookup(lookup(&[("TELEGRAM_BOT_TOKEN", "  ")])).unwrap();
        assert!(p.is_empty());
    }

    #[test]
    fn policy_keeps_the_classic_order_over_configured_channels() {
        let order = [
            (ChannelId::new("whatsapp"), ChannelKind::WhatsApp),
            (ChannelId::new("max"), ChannelKind::Max),
            (ChannelId::new("smsru"), ChannelKind::Sms),
            (ChannelId::new("twilio"), ChannelKind::Sms),
        ];
        let p = clinic_policy(&order, None);
        let steps: Vec<(&str, u64)> = p
            .steps
            .iter()
            .map(|s| (s.channel.as_str(), s.window.as_secs()))
            .collect();
        assert_eq!(
            steps,
            [
                ("whatsapp", 3600),
                ("max", 900),
                ("smsru", 86400),
                ("twilio", 86400)
            ]
        );
        assert_eq!(p.id.as_str(), "clinic-live/whatsapp+max+smsru+twilio");
        let p = clinic_policy(&order[1..2], Some(Duration::from_secs(5)));
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].window, Duration::from_secs(5));
    }

    #[test]
    fn recipients_parse_with_header_quotes_semicolons_and_comments() {
        let text = "\u{feff}# clinic list\nname,phone,telegram,max\n\
                    Анна Петрова,+7 912 345-67-89,123456789,\n\
                    \"Борис, старший\",8 912 000-00-02,,987654\n\n\
                    Вера,+79120000003\n";
        let p = parse_recipients(text, "p.csv").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].name, "Анна Петрова");
        assert_eq!(p[0].line, 3);
        assert_eq!(p[0].telegram, Some(123_456_789));
        assert_eq!(p[0].max, None);
        assert_eq!(p[1].name, "Борис, старший");
        assert_eq!(p[1].phone.as_str(), "+79120000002");
        assert_eq!(p[1].max, Some(987_654));
        assert_eq!(p[2].line, 6);
        let r = p[0].recipient();
        assert!(r.has_address_for(ChannelKind::Telegram));
        assert!(!r.has_address_for(ChannelKind::Max));

        let p = parse_recipients("Имя;Телефон\nАнна;89123456789;42\n", "p.csv").unwrap();
        assert_eq!((p.len(), p[0].telegram), (1, Some(42)));
    }

    #[test]
    fn bad_recipient_lines_name_the_line() {
        let cases = [
            ("Анна,+79123456789\nБорис,12345\n", 2, "bad phone"),
            ("Анна\n", 1, "expected 2 to 4 fields"),
            ("Анна,+79123456789,1,2,3\n", 1, "found 5"),
            (",+79123456789\n", 1, "name is empty"),
            (
                "# c\nАнна,+79123456789,abc\n",
                2,
                "telegram chat id \"abc\"",
            ),
            ("Анна,+79123456789,,x\n", 1, "max user id"),
            (
                "Анна,+79123456789\nБорис,8 912 345-67-89\n",
                2,
                "already on line 1",
            ),
            // An unclosed quote swallows the rest of the line: one field.
            ("\"Анна,+79123456789\n", 1, "found 1"),
        ];
        for (text, line, what) in cases {
            let e = parse_recipients(text, "p.csv").unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("p.csv line {line}: ")) && msg.contains(what),
                "{text:?}: {msg}"
            );
            assert_eq!(e.exit_code(), 2);
        }
        let e = parse_recipients("# nobody\n\n", "p.csv").unwrap_err();
        assert!(e.to_string().starts_with("p.csv: no recipients"), "{e}");
    }

    #[test]
    fn content_carries_the_name_and_the_template() {
        let p = Providers::from_lookup(lookup(&[
            ("WABA_TOKEN", "t"),
            ("WABA_PHONE_NUMBER_ID", "1"),
            ("WABA_TEMPLATE", "appointment_reminder"),
            ("WABA_TEMPLATE_LANGUAGE", "ru"),
            ("WABA_TEMPLATE_PARAMS", "{name} | завтра в 10:00"),
        ]))
        .unwrap();
        let c = LiveConfig::new(p, Vec::new(), "x");
        let content = c.content_for("Анна");
        assert!(
            content
                .text_for(ChannelKind::Sms)
                .starts_with("Анна, напоминаем")
        );
        let json = serde_json::to_value(&content).unwrap();
        let s = json.to_string();
        assert!(
            s.contains("appointment_reminder") && s.contains("завтра в 10:00"),
            "{s}"
        );
        assert!(s.matches("Анна").count() >= 2, "{s}");
    }

    #[test]
    fn bad_options_are_refused() {
        let p = Providers::from_lookup(lookup(&[("SMSRU_API_ID", "k")])).unwrap();
        let patients = parse_recipients("Анна,+79123456789\n", "p").unwrap();
        let mut c = LiveConfig::new(p, patients, "x");
        c.window = Some(Duration::ZERO);
        assert!(matches!(c.validate(), Err(LiveError::Config(_))));
        c.window = None;
        c.batch = "a b".into();
        assert!(matches!(c.validate(), Err(LiveError::Config(_))));
        c.batch = "2026-03-02".into();
        assert!(c.validate().is_ok());
    }
}
