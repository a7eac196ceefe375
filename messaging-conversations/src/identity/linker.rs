//! The linking flow: a small state machine per unknown Telegram or Max sender.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    ContactDirectory, DeepLinkSigner, IdentityStore, Link, Provenance, TokenError, UsedTokenStore,
};
use messaging_core::ChannelError;
use messaging_core::InboundMessage;
use messaging_core::StoreError;
use messaging_core::{Address, ChannelId, ChannelKind, Purpose};
use messaging_core::{Button, Content};
use messaging_core::{Clock, SystemClock, chrono_dur};
use messaging_core::{DynChannel, OutboundMessage};

/// Texts and timings of the linking flow. `Default` is in Russian, for a clinic.
#[derive(Clone, Debug)]
pub struct LinkerConfig {
    /// The prompt to share the phone.
    pub prompt_text: String,
    /// The title of the request-contact button.
    pub button_title: String,
    /// The answer to a shared contact that is not the sender's own.
    pub refusal_text: String,
    /// The answer to an own contact whose number could not be read.
    pub unreadable_phone_text: String,
    /// The thanks after linking; `{name}` is replaced with the contact's display name. `None`:
    /// say nothing.
    pub linked_text: Option<String>,
    /// Least time between two prompts to one pending sender.
    pub reprompt_interval: Duration,
    /// How many pending senders are remembered; the oldest is forgotten past it.
    pub max_pending: usize,
}

impl Default for LinkerConfig {
    fn default() -> Self {
        LinkerConfig {
            prompt_text: "Здравствуйте! Чтобы получать здесь напоминания о приёме, поделитесь, \
                          пожалуйста, своим номером телефона кнопкой ниже."
                .into(),
            button_title: "Поделиться номером".into(),
            refusal_text: "Это не ваш контакт. Пожалуйста, поделитесь своим номером кнопкой ниже."
                .into(),
            unreadable_phone_text:
                "Не удалось прочитать номер. Пожалуйста, попробуйте ещё раз кнопкой ниже.".into(),
            linked_text: Some("Спасибо, {name}! Теперь напоминания будут приходить сюда.".into()),
            reprompt_interval: Duration::from_secs(24 * 3600),
            max_pending: 100_000,
        }
    }
}

/// What the linking flow did with one inbound message.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LinkOutcome {
    /// The sender is linked already.
    Known(Link),
    /// Not a private dialogue with a bot: WhatsApp and SMS (the address is the phone), a
    /// Telegram group, a Max chat.
    NotLinkable,
    /// The share-phone prompt was sent.
    Prompted,
    /// The sender was prompted recently; nothing sent.
    Pending,
    /// The sender is now linked.
    Linked(Link),
    /// A contact that is not the sender's own was refused; nothing linked.
    RefusedForeignContact,
    /// The sender's own contact had no readable phone; nothing linked.
    UnreadablePhone,
    /// A deep-link token was refused; nothing linked. `prompted`: the share-phone prompt was
    /// sent instead.
    TokenRejected {
        /// Why.
        error: TokenError,
        /// Whether the prompt was sent.
        prompted: bool,
    },
}

/// A failure of the linking flow.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A store or the directory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No configured channel can answer this sender.
    #[error("no channel configured for {0} to answer on")]
    NoChannel(ChannelKind),
    /// The answer could not be sent.
    #[error("could not answer the sender: {0}")]
    Send(#[from] ChannelError),
}

/// Builds a [`Linker`].
pub struct LinkerBuilder {
    identity: Arc<dyn IdentityStore>,
    tokens: Arc<dyn UsedTokenStore>,
    directory: Arc<dyn ContactDirectory>,
    signer: Option<Arc<DeepLinkSigner>>,
    clock: Arc<dyn Clock>,
    channels: Vec<DynChannel>,
    config: LinkerConfig,
}

impl fmt::Debug for LinkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkerBuilder")
            .field(
                "channels",
                &self.channels.iter().map(|c| c.id()).collect::<Vec<_>>(),
            )
            .field("deep_links", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

impl LinkerBuilder {
    /// Verifies `/start <token>` deep links with this signer.
    pub fn signer(mut self, signer: Arc<DeepLinkSigner>) -> Self {
        self.signer = Some(signer);
        self
    }
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// A channel to answer on (the Telegram bot, the Max bot).
    pub fn channel(mut self, channel: DynChannel) -> Self {
        self.channels.push(channel);
        self
    }
    /// Texts and timings.
    pub fn config(mut self, config: LinkerConfig) -> Self {
        self.config = config;
        self
    }
    /// The linker.
    pub fn build(self) -> Linker {
        Linker {
            identity: self.identity,
            tokens: self.tokens,
            directory: self.directory,
            signer: self.signer,
            clock: self.clock,
            channels: self.channels,
            config: self.config,
            pending: Mutex::new(HashMap::new()),
        }
    }
}

/// The linking flow: a small state machine per unknown Telegram or Max sender.
///
/// | state | inbound | what happens | next state |
/// |---|---|---|---|
/// | unknown | anything | share-phone prompt (request-contact button) | pending |
/// | pending | plain message, within the re-prompt interval | nothing | pending |
/// | pending | plain message, after the interval | prompt again | pending |
/// | unknown / pending | own shared contact | contact found or created by phone, linked, thanked | linked |
/// | unknown / pending | someone else's contact | polite refusal (with the button again), nothing linked | pending |
/// | unknown / pending | `/start <token>`, valid and unused | linked to the token's contact, no phone asked | linked |
/// | unknown / pending | `/start <token>`, forged, expired or used | nothing linked; prompt (if due) | pending |
/// | linked | anything | nothing (an inactive link is re-activated: they are writing again) | linked |
///
/// WhatsApp and SMS senders, Telegram groups (negative chat ids) and Max group chats are not
/// linked by this flow ([`LinkOutcome::NotLinkable`]).
///
/// ```
/// use std::sync::Arc;
/// use messaging_conversations::identity::{LinkOutcome, Linker, MemoryDirectory, MemoryIdentityStore};
/// use messaging_core::testkit::StubChannel;
/// use messaging_core::*;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Arc::new(MemoryIdentityStore::new());
/// let directory = Arc::new(MemoryDirectory::new());
/// let phone = Phone::parse("+79123456789").unwrap();
/// directory.insert("patient-7", "Анна", phone.clone());
/// let tg = Arc::new(StubChannel::new("tg", ChannelKind::Telegram));
/// let linker = Linker::builder(store.clone(), store.clone(), directory).channel(tg.clone()).build();
///
/// let hello = InboundMessage::new(ChannelKind::Telegram, Address::Telegram(42), Some("hi".into()), chrono::Utc::now());
/// assert_eq!(linker.on_inbound(&hello).await.unwrap(), LinkOutcome::Prompted);
/// assert_eq!(tg.sent()[0].content.buttons[0].action, ButtonAction::RequestContact);
///
/// let shared = hello.clone().contact(phone, true);
/// let LinkOutcome::Linked(link) = linker.on_inbound(&shared).await.unwrap() else { panic!() };
/// assert_eq!(link.contact.as_str(), "patient-7");
/// # });
/// ```
pub struct Linker {
    identity: Arc<dyn IdentityStore>,
    tokens: Arc<dyn UsedTokenStore>,
    directory: Arc<dyn ContactDirectory>,
    signer: Option<Arc<DeepLinkSigner>>,
    clock: Arc<dyn Clock>,
    channels: Vec<DynChannel>,
    config: LinkerConfig,
    /// Address key -> when the sender was last prompted.
    pending: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl fmt::Debug for Linker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Linker")
            .field(
                "channels",
                &self.channels.iter().map(|c| c.id()).collect::<Vec<_>>(),
            )
            .field("deep_links", &self.signer.is_some())
            .field("pending", &self.pending_count())
            .finish_non_exhaustive()
    }
}

impl Linker {
    /// Starts building a linker over the identity store, the used-token store and the app's
    /// directory ([`MemoryIdentityStore`](super::MemoryIdentityStore) is both stores).
    pub fn builder(
        identity: Arc<dyn IdentityStore>,
        tokens: Arc<dyn UsedTokenStore>,
        directory: Arc<dyn ContactDirectory>,
    ) -> LinkerBuilder {
        LinkerBuilder {
            identity,
            tokens,
            directory,
            signer: None,
            clock: Arc::new(SystemClock),
            channels: Vec::new(),
            config: LinkerConfig::default(),
        }
    }

    /// The identity store.
    pub fn identity(&self) -> &Arc<dyn IdentityStore> {
        &self.identity
    }

    /// The directory.
    pub fn directory(&self) -> &Arc<dyn ContactDirectory> {
        &self.directory
    }

    /// How many senders are waiting to share their phone.
    pub fn pending_count(&self) -> usize {
        self.pending_lock().len()
    }

    /// Whether a sender was prompted and has not linked yet.
    pub fn is_pending(&self, address: &Address) -> bool {
        self.pending_lock().contains_key(&address.key())
    }

    /// Forgets a sender's pending state (erasure).
    pub fn forget(&self, address: &Address) {
        self.pending_lock().remove(&address.key());
    }

    fn pending_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DateTime<Utc>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the flow for one inbound message (see [`Linker`] for the states).
    pub async fn on_inbound(&self, msg: &InboundMessage) -> Result<LinkOutcome, LinkError> {
        // Only private dialogues: a contact button cannot be offered in a group, and a group
        // is not a person.
        let private = match &msg.address {
            Address::Telegram(id) => *id > 0,
            Address::MaxUser(_) => true,
            _ => false,
        };
        // Only kinds whose ids say nothing about the phone need linking.
        if msg.channel.facts().reached_by_phone || !private {
            return Ok(LinkOutcome::NotLinkable);
        }
        let now = self.clock.now();
        if let Some(link) = self.identity.by_address(&msg.address).await? {
            if !link.active {
                // They are writing to us, so they no longer block the bot.
                let updated = self.identity.set_active(&msg.address, true, now).await?;
                return Ok(LinkOutcome::Known(updated.unwrap_or(link)));
            }
            return Ok(LinkOutcome::Known(link));
        }
        if let (Some(payload), Some(signer)) = (msg.start_payload.as_deref(), &self.signer) {
            return match self.redeem(signer, payload, msg, now).await? {
                Ok(link) => {
                    self.after_link(msg, None).await;
                    Ok(LinkOutcome::Linked(link))
                }
                Err(error) => {
                    let prompted = self.prompt_if_due(msg, now).await?;
                    Ok(LinkOutcome::TokenRejected { error, prompted })
                }
            };
        }
        if msg.contact_phone.is_some() || msg.contact_is_own.is_some() {
            return self.shared_contact(msg, now).await;
        }
        Ok(if self.prompt_if_due(msg, now).await? {
            LinkOutcome::Prompted
        } else {
            LinkOutcome::Pending
        })
    }

    async fn shared_contact(
        &self,
        msg: &InboundMessage,
        now: DateTime<Utc>,
    ) -> Result<LinkOutcome, LinkError> {
        // Only the adapter's explicit "this is the sender's own contact" counts.
        if msg.contact_is_own != Some(true) {
            self.mark_prompted(msg, now);
            self.reply(msg, &self.config.refusal_text, true).await?;
            return Ok(LinkOutcome::RefusedForeignContact);
        }
        let Some(phone) = &msg.contact_phone else {
            self.mark_prompted(msg, now);
            self.reply(msg, &self.config.unreadable_phone_text, true)
                .await?;
            return Ok(LinkOutcome::UnreadablePhone);
        };
        let entry = self
            .directory
            .find_or_create_by_phone(phone, msg.sender_name.as_deref())
            .await?;
        let link = Link::new(
            msg.address.clone(),
            entry.contact,
            Provenance::SharedContact,
            now,
        )
        .with_phone(phone.clone());
        self.identity.link(&link).await?;
        self.after_link(msg, Some(&entry.display_name)).await;
        Ok(LinkOutcome::Linked(link))
    }

    async fn redeem(
        &self,
        signer: &DeepLinkSigner,
        payload: &str,
        msg: &InboundMessage,
        now: DateTime<Utc>,
    ) -> Result<Result<Link, TokenError>, LinkError> {
        let claims = match signer.verify(payload) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        if !self
            .tokens
            .mark_token_used(&claims.token_id, claims.expires_at, now)
            .await?
        {
            return Ok(Err(TokenError::AlreadyUsed));
        }
        let link = Link::new(
            msg.address.clone(),
            claims.contact,
            Provenance::DeepLink,
            now,
        )
        .with_token_id(claims.token_id);
        self.identity.link(&link).await?;
        Ok(Ok(link))
    }

    async fn after_link(&self, msg: &InboundMessage, name: Option<&str>) {
        self.forget(&msg.address);
        if let Some(text) = &self.config.linked_text {
            let name = name.or(msg.sender_name.as_deref()).unwrap_or("");
            let text = text
                .replace("{name}", name)
                .replace(" , ", ", ")
                .replace(", !", "!");
            // The link stands even if the thanks cannot be sent.
            if let Err(e) = self.reply(msg, &text, false).await {
                tracing::warn!(error = %e, "could not thank a newly linked sender");
            }
        }
    }

    fn mark_prompted(&self, msg: &InboundMessage, now: DateTime<Utc>) {
        let mut pending = self.pending_lock();
        if pending.len() >= self.config.max_pending && !pending.contains_key(&msg.address.key()) {
            // Bounded memory: forget the sender prompted longest ago (they get prompted again).
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(msg.address.key(), now);
    }

    /// Prompts unless the sender was prompted within the interval. Returns whether it did.
    async fn prompt_if_due(
        &self,
        msg: &InboundMessage,
        now: DateTime<Utc>,
    ) -> Result<bool, LinkError> {
        let key = msg.address.key();
        let previous = {
            let pending = self.pending_lock();
            let last = pending.get(&key).copied();
            if last.is_some_and(|t| now < t + chrono_dur(self.config.reprompt_interval)) {
                return Ok(false);
            }
            last
        };
        // Reserve before sending so two messages at once do not both prompt.
        self.mark_prompted(msg, now);
        if let Err(e) = self.reply(msg, &self.config.prompt_text, true).await {
            let mut pending = self.pending_lock();
            match previous {
                Some(t) => pending.insert(key, t),
                None => pending.remove(&key),
            };
            return Err(e);
        }
        Ok(true)
    }

    fn channel_for(&self, msg: &InboundMessage) -> Option<&DynChannel> {
        let by_id = |id: &ChannelId| self.channels.iter().find(|c| c.id() == id);
        msg.channel_id
            .as_ref()
            .and_then(by_id)
            .or_else(|| self.channels.iter().find(|c| c.kind() == msg.channel))
    }

    async fn reply(&self, msg: &InboundMessage, text: &str, button: bool) -> Result<(), LinkError> {
        let channel = self
            .channel_for(msg)
            .ok_or(LinkError::NoChannel(msg.channel))?;
        let mut content = Content::text(text);
        if button {
            content = content.with_button(Button::request_contact(&self.config.button_title));
        }
        channel
            .send(&OutboundMessage::new(
                msg.address.clone(),
                content,
                Purpose::Conversation,
            ))
            .await?;
        Ok(())
    }
}
