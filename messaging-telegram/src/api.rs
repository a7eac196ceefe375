//! The Bot API transport: one JSON POST per method, the token kept secret.

use std::fmt;
use std::time::Duration;

use messaging_core::ChannelError;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::error::ApiError;

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The server answered with an error body (or something that is not a Bot API answer).
    Api(ApiError),
    /// The request did not complete. The error carries no URL.
    Transport(reqwest::Error),
}

impl CallError {
    pub(crate) fn into_channel_error(self, method: &str) -> ChannelError {
        match self {
            CallError::Api(e) => e.into_channel_error(),
            CallError::Transport(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                ChannelError::temporary(format!("telegram {method}: {what}: {e}")).with_source(e)
            }
        }
    }
}

/// The Bot API endpoint of one bot.
pub(crate) struct BotApi {
    client: reqwest::Client,
    base: String,
    token: SecretString,
    test_env: bool,
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
    ) -> Self {
        BotApi {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
            test_env,
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

    /// Calls `method` with a JSON body; returns `result` on `ok: true`.
    pub(crate) async fn call(
        &self,
        method: &str,
        params: &Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let resp = self
            .client
            .post(self.url(method))
            .json(params)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| CallError::Transport(e.without_url()))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .bytes()
            .await
            .map_err(|e| CallError::Transport(e.without_url()))?;
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            if v.get("ok").and_then(Value::as_bool) == Some(true) {
                return Ok(v.get("result").cloned().unwrap_or(Value::Null));
            }
            return Err(CallError::Api(ApiError::from_body(
                Some(status),
                retry_after.as_deref(),
                &v,
            )));
        }
        Err(CallError::Api(ApiError::from_response(
            status,
            retry_after.as_deref(),
            &body,
        )))
    }
}
