//! # messaging-waba
//!
//! WhatsApp Business Platform for the messaging cascade: a [`Channel`](messaging_core::Channel)
//! on Meta's Cloud API or 360dialog, and a [`WebhookHandler`](messaging_core::webhook::WebhookHandler)
//! for its webhooks. The crate translates WhatsApp to the core model and nothing else: no
//! cascade logic lives here.
//!
//! | piece | what it does |
//! |---|---|
//! | [`WabaChannel`] | sends text, templates (positional or named; header, body, quick-reply and URL buttons), reply buttons, images and documents; Cloud API (`Bearer`, phone number id in the path) or 360dialog (`D360-API-KEY`) |
//! | 24-hour window | free text inside the customer service window, the template outside it; 131047 closes the window and the template is sent instead ([`WabaChannel::observe`] feeds it from webhooks, through core's [`WindowStore`](messaging_core::window::WindowStore)) |
//! | [`error`] | the table from every Graph error code to [`ErrorKind`](messaging_core::ErrorKind), decided by `error.code` |
//! | [`WabaWebhook`] | the `hub.challenge` handshake, `X-Hub-Signature-256`, and messages, statuses, template, quality, tier, account and marketing-preference changes as core events |
//! | [`TemplateRegistry`] | the account's templates with status, quality and parameters; a paused, disabled, rejected or unknown template, or wrong parameters, fail before any request |
//! | [`throughput`] | per-number rate (80/s), pair rate (one per 6 s per person), messaging-limit tier and the unique people reached in 24 hours |
//! | [`PriceTable`] | a cost estimate per message by category and window, on receipts and reports |
//!
//! ## Sending
//!
//! ```no_run
//! use messaging_core::{Address, Channel, Content, OutboundMessage, Purpose, Template, TemplateComponent};
//! use messaging_waba::{PriceTable, PricingCategory, WabaChannel};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let wa = WabaChannel::dialog360("wa-360", std::env::var("D360_API_KEY")?)
//!     .price_table(PriceTable::new("USD").price(PricingCategory::Utility, 0.0085))
//!     .build()?;
//! let content = Content::text("Анна, результаты анализов готовы.")
//!     .with_template(Template::new("results_ready", "ru").component(TemplateComponent::body_text(["Анна"])));
//! let msg = OutboundMessage::new(Address::WhatsApp("79123456789".into()), content, Purpose::Service);
//! // Outside the window this sends the template; inside it, the text.
//! let receipt = wa.send(&msg).await?;
//! println!("{} cost {:?}", receipt.provider_message_id, receipt.cost);
//! # Ok(()) }
//! ```
//!
//! ## Webhooks
//!
//! ```no_run
//! use messaging_core::webhook::{WebhookHandler, WebhookRequest};
//! # async fn run(wa: messaging_waba::WabaChannel, headers: http::HeaderMap, body: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
//! let handler = wa.webhook().app_secret(std::env::var("META_APP_SECRET")?);
//! for event in handler.verify_and_parse(&WebhookRequest::post(&headers, &body))? {
//!     wa.observe(&event).await?; // window, templates, tier
//!     // ... and hand the event to the cascade engine.
//! }
//! # Ok(()) }
//! ```
//!
//! ## Design notes
//!
//! - Free text without a template is refused with `NeedsTemplate` (no request) when no open window
//!   is known; feed inbound events to [`WabaChannel::observe`] (or turn this off with
//!   [`WabaBuilder::enforce_window`]).
//! - A send sooner than the pair interval to one person fails with `RateLimited` and the wait,
//!   instead of sleeping inside the engine's send; the per-number rate waits (it is sub-second).
//! - The tier is exposed ([`WabaChannel::tier`], [`WabaChannel::unique_recipients_24h`],
//!   [`Signal::Tier`](messaging_core::Signal::Tier)), not enforced: a sender governor decides.
//! - Tokens and secrets are [`secrecy::SecretString`]s; `Debug` never prints them; the auth header
//!   is marked sensitive and transport errors are stripped of their URL.
//!
//! ## Idempotency
//!
//! The Cloud API's `POST /messages` (and 360dialog's proxy of it) has **no idempotency key**:
//! none is documented, and third-party notes confirm the absence. A retry after a timeout whose
//! request did reach Meta sends the message twice. What the send does carry is a client-side
//! correlation id: the notification id goes in `biz_opaque_callback_data` (up to 512
//! characters), which Meta echoes in every status webhook for that message. It lets reports be
//! matched and duplicates be counted; it does not stop Meta from delivering a second copy.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod channel;
pub mod cost;
pub mod error;
mod payload;
pub mod templates;
pub mod throughput;
pub mod webhook;

pub use channel::{
    CLOUD_API_BASE_URL, ConfigError, DEFAULT_API_VERSION, DEFAULT_PAIR_INTERVAL,
    DEFAULT_RATE_LIMIT, DEFAULT_TIMEOUT, DIALOG360_BASE_URL, Provider, WabaBuilder, WabaChannel,
};
pub use cost::{PriceTable, PricingCategory};
pub use error::GraphError;
pub use templates::{ComponentParams, TemplateDefinition, TemplateRegistry, TemplateStatus};
pub use throughput::{MessagingTier, TierTracker};
pub use webhook::WabaWebhook;
