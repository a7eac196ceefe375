//! Max webhooks: the `X-Max-Bot-Api-Secret` check and the body parser, as a
//! [`WebhookHandler`].

use std::fmt;

use messaging_core::ChannelKind;
use messaging_core::Event;
use messaging_core::webhook::{WebhookError, WebhookHandler, WebhookRequest, secrets_equal};
use secrecy::{ExposeSecret, SecretString};

use crate::parse::UpdateParser;

/// The header Max sends the subscription secret in.
pub const SECRET_HEADER: &str = "X-Max-Bot-Api-Secret";

/// Verifies and parses Max webhook POSTs.
///
/// Built from an optional secret alone (the `messaging parse-webhook --provider max [--secret S]`
/// case): with a secret, `verify` requires the `X-Max-Bot-Api-Secret` header to equal it
/// (constant-time compare); without one, `verify` passes.
///
/// ```
/// use http::HeaderMap;
/// use messaging_core::webhook::{WebhookError, WebhookHandler, WebhookRequest};
/// use messaging_max::MaxWebhookHandler;
///
/// let handler = MaxWebhookHandler::new(Some("s3cretValue_123".into()));
/// let body = br#"{"update_type":"bot_stopped","timestamp":1775025604499,"user":{"user_id":123456789}}"#;
/// let mut headers = HeaderMap::new();
/// headers.insert("X-Max-Bot-Api-Secret", "s3cretValue_123".parse().unwrap());
/// let events = handler.verify_and_parse(&WebhookRequest::post(&headers, body)).unwrap();
/// let json = serde_json::to_value(&events[0]).unwrap();
/// assert_eq!(json["signal"], "blocked");
///
/// let empty = HeaderMap::new();
/// assert!(matches!(
///     handler.verify(&WebhookRequest::post(&empty, body)),
///     Err(WebhookError::MissingSignature(_))
/// ));
/// ```
#[derive(Clone)]
pub struct MaxWebhookHandler {
    secret: Option<SecretString>,
    parser: UpdateParser,
}

impl fmt::Debug for MaxWebhookHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaxWebhookHandler")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("parser", &self.parser)
            .finish()
    }
}

impl MaxWebhookHandler {
    /// A handler checking `secret` (none: every request passes `verify`), with a parser that has
    /// no contact hash key (shared contacts are reported with `contact_is_own = false`).
    pub fn new(secret: Option<SecretString>) -> Self {
        MaxWebhookHandler {
            secret,
            parser: UpdateParser::new(),
        }
    }

    /// Uses this parser (channel id, contact hash key).
    pub fn with_parser(mut self, parser: UpdateParser) -> Self {
        self.parser = parser;
        self
    }
}

impl WebhookHandler for MaxWebhookHandler {
    fn provider(&self) -> &'static str {
        "max"
    }

    fn channel_kind(&self) -> ChannelKind {
        ChannelKind::Max
    }

    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let Some(got) = request.headers.get(SECRET_HEADER) else {
            return Err(WebhookError::MissingSignature(SECRET_HEADER));
        };
        if secrets_equal(got.as_bytes(), secret.expose_secret().as_bytes()) {
            Ok(())
        } else {
            Err(WebhookError::BadSignature)
        }
    }

    fn parse(&self, request: &WebhookRequest<'_>) -> Result<Vec<Event>, WebhookError> {
        self.parser.parse(request.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    const BODY: &[u8] =
        br#"{"update_type":"bot_started","timestamp":1,"user":{"user_id":5},"payload":"p"}"#;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn secret_checks() {
        let h = MaxWebhookHandler::new(Some(SecretString::from("s3cretValue_123")));
        let ok = headers(&[("x-max-bot-api-secret", "s3cretValue_123")]);
        assert_eq!(
            h.verify_and_parse(&WebhookRequest::post(&ok, BODY))
                .unwrap()
                .len(),
            1
        );
        for bad in ["s3cretValue_124", "s3cretValue_12", "s3cretValue_1234", ""] {
            let hd = headers(&[("X-Max-Bot-Api-Secret", bad)]);
            assert_eq!(
                h.verify(&WebhookRequest::post(&hd, BODY)),
                Err(WebhookError::BadSignature),
                "{bad}"
            );
        }
        // The Telegram header is not the Max header.
        let tg = headers(&[("X-Telegram-Bot-Api-Secret-Token", "s3cretValue_123")]);
        assert_eq!(
            h.verify(&WebhookRequest::post(&tg, BODY)),
            Err(WebhookError::MissingSignature(SECRET_HEADER))
        );
    }

    #[test]
    fn no_secret_passes_and_non_max_is_malformed() {
        let h = MaxWebhookHandler::new(None);
        let none = HeaderMap::new();
        assert!(h.verify(&WebhookRequest::post(&none, BODY)).is_ok());
        let waba = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        assert!(matches!(
            h.verify_and_parse(&WebhookRequest::post(&none, waba)),
            Err(WebhookError::Malformed {
                provider: "max",
                ..
            })
        ));
        assert!(
            !format!("{:?}", MaxWebhookHandler::new(Some("hidden-secret".into())))
                .contains("hidden-secret")
        );
    }

    #[test]
    fn body_limit() {
        let h = MaxWebhookHandler::new(None);
        let big = vec![b' '; h.max_body() + 1];
        let none = HeaderMap::new();
        assert!(matches!(
            h.verify_and_parse(&WebhookRequest::post(&none, &big)),
            Err(WebhookError::BodyTooLarge { .. })
        ));
    }
}
