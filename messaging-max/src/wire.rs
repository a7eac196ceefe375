//! The Max JSON shapes this crate reads and writes. Incoming shapes are lenient: every field is
//! optional, ids and timestamps are read as 64-bit integers (never through `f64`, so ids above
//! 2^53 survive) and may also arrive as decimal strings.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Reads an optional 64-bit integer from a JSON number or a decimal string.
pub(crate) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a 64-bit integer"))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a 64-bit integer"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an integer, got {other}"
        ))),
    }
}

/// A Max user (`User` / `BotInfo`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct User {
    #[serde(default, deserialize_with = "opt_i64")]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_bot: Option<bool>,
}

impl User {
    /// The name to show: `first_name last_name`, else the deprecated `name`.
    pub fn display_name(&self) -> Option<String> {
        let full = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !full.is_empty() {
            return Some(full);
        }
        self.name
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Recipient {
    #[serde(default, deserialize_with = "opt_i64")]
    pub chat_id: Option<i64>,
    #[serde(default)]
    pub chat_type: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MessageBody {
    #[serde(default)]
    pub mid: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// Kept as raw values: unknown attachment types must not fail the update.
    #[serde(default)]
    pub attachments: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct LinkedMessage {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub message: Option<MessageBody>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Message {
    #[serde(default)]
    pub sender: Option<User>,
    #[serde(default)]
    pub recipient: Option<Recipient>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub body: Option<MessageBody>,
    #[serde(default)]
    pub link: Option<LinkedMessage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Callback {
    #[serde(default, deserialize_with = "opt_i64")]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
}

/// Every update type in one lenient shape; which fields matter depends on `update_type`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RawUpdate {
    #[serde(default, deserialize_with = "opt_i64")]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub callback: Option<Callback>,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub chat_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub payload: Option<String>,
    /// `message_removed`: the deleted message's id.
    #[serde(default)]
    pub message_id: Option<String>,
}

/// The `payload` of a `contact` attachment.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct ContactPayloadWire {
    #[serde(default)]
    pub vcf_info: Option<String>,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub max_info: Option<User>,
}

/// `NewMessageBody` of `POST /messages`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct NewMessageBody {
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Value>,
}

/// `SendMessageResult` = `{"message": Message}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SendMessageResult {
    #[serde(default)]
    pub message: Option<Message>,
}

/// `SimpleQueryResult` = `{"success": bool, "message": "..."}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SimpleQueryResult {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_ids_survive_and_strings_are_read() {
        let u: User =
            serde_json::from_str(r#"{"user_id": 9007199254740993, "first_name": "A"}"#).unwrap();
        assert_eq!(u.user_id, Some(9_007_199_254_740_993));
        let u: User = serde_json::from_str(r#"{"user_id": "-9007199254740993"}"#).unwrap();
        assert_eq!(u.user_id, Some(-9_007_199_254_740_993));
        assert!(serde_json::from_str::<User>(r#"{"user_id": 1.5}"#).is_err());
        assert!(serde_json::from_str::<User>(r#"{"user_id": 18446744073709551615}"#).is_err());
        let u: User = serde_json::from_str(r#"{"user_id": null}"#).unwrap();
        assert_eq!(u.user_id, None);
    }

    #[test]
    fn display_name_prefers_first_last() {
        let u = User {
            first_name: Some("Ivan".into()),
            last_name: Some("".into()),
            name: Some("Old".into()),
            ..User::default()
        };
        assert_eq!(u.display_name().as_deref(), Some("Ivan"));
        let u = User {
            name: Some("Old".into()),
            ..User::default()
        };
        assert_eq!(u.display_name().as_deref(), Some("Old"));
    }
}
