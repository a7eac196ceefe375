//! The Bot API transport: one JSON POST per method, the token kept secret.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use messaging_core::{ChannelError, Clock};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::error::ApiError;

/// The Bot API endpoint of one bot.
pub(crate) struct BotApi {
    client: reqwest::Client,
    base: String,
    token: SecretString,
    test_env: bool,
    /// Dates a `Retry-After` given as an HTTP date.
    clock: Arc<dyn Clock>,
    /// The token, scrubbed from every error (the Bot API may quote the URL it was called at).
    redactor: messaging_http::Redactor,
}

impl fmt::Debug for BotApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotApi")
            .field("base", &self.base)
            .field("token", &"[redacted]")
            .field("test_env", &self.test_env)
            .finish()
    }
}

impl BotApi {
    pub(crate) fn new(
        client: reqwest::Client,
        base: String,
        token: SecretString,
        test_env: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        BotApi {
            redactor: messaging_http::Redactor::new().secret(token.expose_secret()),
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
            test_env,
            clock,
        }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn test_env(&self) -> bool {
        self.test_env
    }

    fn url(&self, method: &str) -> String {
        let env = if self.test_env { "test/" } else { "" };
        format!(
            "{}/bot{}/{env}{method}",
            self.base,
            self.token.expose_secret()
        )
    }

    /// Calls `method` with a JSON body; returns `result` on `ok: true`. Transport failures come
    /// from the kit, which strips the URL (it holds the token).
    pub(crate) async fn call(
        &self,
        method: &str,
        params: &Value,
        timeout: Duration,
    ) -> Result<Value, ChannelError> {
        self.call_unscrubbed(method, params, timeout)
            .await
            .map_err(|e| self.redactor.redact_error(e))
    }

    /// The token scrubbed from an error body's description, before it becomes the message and
    /// the typed source of a [`ChannelError`].
    fn scrubbed(&self, mut error: ApiError) -> ChannelError {
        error.description = self.redactor.redact(&error.description);
        error.into_channel_error()
    }

    async fn call_unscrubbed(
        &self,
        method: &str,
        params: &Value,
        timeout: Duration,
    ) -> Result<Value, ChannelError> {
        let request = self
            .client
            .post(self.url(method))
            .json(params)
            .timeout(timeout);
        let reply =
            messaging_http::execute(request, &format!("telegram {method}"), &*self.clock).await?;
        let status = reply.status.as_u16();
        if let Ok(v) = serde_json::from_slice::<Value>(&reply.body) {
            if v.get("ok").and_then(Value::as_bool) == Some(true) {
                return Ok(v.get("result").cloned().unwrap_or(Value::Null));
            }
            return Err(self.scrubbed(ApiError::from_parsed(Some(status), reply.retry_after, &v)));
        }
        if reply.status.is_success() {
            // Telegram answers every call with JSON; a 2xx that is not may still have sent it.
            return Err(messaging_http::unreadable_success(
                &format!("telegram {method}"),
                "not JSON",
            ));
        }
        Err(self.scrubbed(ApiError::from_answer(
            status,
            reply.retry_after,
            &reply.body,
        )))
    }
}
