//! Telegram webhooks: the secret header and the update body.

use std::fmt;
use std::sync::Arc;

use messaging_core::webhook::{WebhookError, WebhookHandler, WebhookRequest, secrets_equal};
use messaging_core::{ChannelId, ChannelKind, Clock, Event, SystemClock};
use secrecy::{ExposeSecret, SecretString};

use crate::PROVIDER;
use crate::update::parse_update_with_clock;

/// The header Telegram puts the `secret_token` of `setWebhook` in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// Verifies and parses Telegram webhook calls.
///
/// With a secret, a call must carry it in [`SECRET_HEADER`] (compared in constant time);
/// without one, every call passes verification (use that only behind another check).
///
/// ```
/// use http::HeaderMap;
/// use messaging_core::webhook::{WebhookHandler, WebhookRequest};
/// use messaging_telegram::TelegramWebhook;
///
/// let hook = TelegramWebhook::new(Some("s3cret".into()));
/// let mut headers = HeaderMap::new();
/// headers.insert("x-telegram-bot-api-secret-token", "s3cret".parse().unwrap());
/// let body = br#"{"update_id":1,"message":{"message_id":1,"date":1,"chat":{"id":42,"type":"private"},"text":"Da"}}"#;
/// let events = hook.verify_and_parse(&WebhookRequest::post(&headers, body)).unwrap();
/// assert_eq!(events.len(), 1);
/// assert!(hook.verify(&WebhookRequest::post(&HeaderMap::new(), body)).is_err());
/// ```
pub struct TelegramWebhook {
    secret: Option<SecretString>,
    channel_id: Option<ChannelId>,
    /// Dates button presses, which carry no time.
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for TelegramWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramWebhook")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("channel_id", &self.channel_id)
            .finish()
    }
}

impl TelegramWebhook {
    /// A handler checking `secret` (the `secret_token` given to `setWebhook`), or nothing
    /// (`None` or an empty string: Telegram sends no header without a secret).
    pub fn new(secret: Option<String>) -> Self {
        TelegramWebhook {
            secret: secret.filter(|s| !s.is_empty()).map(SecretString::from),
            channel_id: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// A handler checking a secret already held as a [`SecretString`].
    pub fn with_secret(secret: SecretString) -> Self {
        TelegramWebhook {
            secret: Some(secret),
            channel_id: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Tags every event with the configured channel id.
    pub fn channel_id(mut self, id: impl Into<ChannelId>) -> Self {
        self.channel_id = Some(id.into());
        self
    }

    /// Dates button presses (`callback_query`, which carries no time) by `clock` (default: the
    /// system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

impl WebhookHandler for TelegramWebhook {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn channel_kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let Some(given) = request.headers.get(SECRET_HEADER) else {
            return Err(WebhookError::MissingSignature(SECRET_HEADER));
        };
        if secrets_equal(given.as_bytes(), secret.expose_secret().as_bytes()) {
            Ok(())
        } else {
            Err(WebhookError::BadSignature)
        }
    }

    fn parse(&self, request: &WebhookRequest<'_>) -> Result<Vec<Event>, WebhookError> {
        parse_update_with_clock(request.body, self.channel_id.as_ref(), &*self.clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    const BODY: &[u8] =
        br#"{"update_id":1,"message":{"message_id":1,"date":1,"chat":{"id":42,"type":"private"},"text":"hi"}}"#;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SECRET_HEADER, v.parse().expect("header value"));
        h
    }

    #[test]
    fn secret_checks() {
        let hook = TelegramWebhook::new(Some("abc_DEF-1".into()));
        assert!(
            hook.verify(&WebhookRequest::post(&headers("abc_DEF-1"), BODY))
                .is_ok()
        );
        assert_eq!(
            hook.verify(&WebhookRequest::post(&headers("abc_DEF-2"), BODY)),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            hook.verify(&WebhookRequest::post(&headers("abc_DEF-1x"), BODY)),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            hook.verify(&WebhookRequest::post(&HeaderMap::new(), BODY)),
            Err(WebhookError::MissingSignature(SECRET_HEADER))
        );
        assert!(!format!("{hook:?}").contains("abc_DEF"));
    }

    #[test]
    fn no_secret_passes_and_non_telegram_is_malformed() {
        let h = HeaderMap::new();
        let empty = TelegramWebhook::new(Some(String::new()));
        assert!(empty.verify(&WebhookRequest::post(&h, BODY)).is_ok());
        let hook = TelegramWebhook::new(None).channel_id("tg");
        let ev = hook
            .verify_and_parse(&WebhookRequest::post(&h, BODY))
            .expect("ok");
        assert_eq!(ev[0].channel_id().map(|c| c.as_str()), Some("tg"));
        let err = hook
            .verify_and_parse(&WebhookRequest::post(
                &h,
                br#"{"object":"whatsapp_business_account","entry":[]}"#,
            ))
            .expect_err("malformed");
        assert!(matches!(
            err,
            WebhookError::Malformed {
                provider: "telegram",
                ..
            }
        ));
        assert_eq!(err.http_status(), 400);
    }

    #[test]
    fn button_presses_are_dated_by_the_clock() {
        use messaging_core::ManualClock;
        let clock = ManualClock::at_unix(1_700_000_000);
        let hook = TelegramWebhook::new(None)
            .channel_id("tg")
            .clock(Arc::new(clock.clone()));
        let body =
            br#"{"update_id":4,"callback_query":{"id":"cb1","from":{"id":9,"first_name":"A"},
            "chat_instance":"x","data":"confirm:42"}}"#;
        let ev = hook
            .verify_and_parse(&WebhookRequest::post(&HeaderMap::new(), body))
            .expect("parses");
        assert_eq!(ev[0].at(), clock.now());
        // A message keeps its own date.
        let ev = hook
            .verify_and_parse(&WebhookRequest::post(&HeaderMap::new(), BODY))
            .expect("parses");
        assert_eq!(ev[0].at().timestamp(), 1);
    }
}
