//! The `event` column of `webhook_journal`, as both SQL stores write and read it: the event's
//! public JSON form (the `messaging parse-webhook` output).

use messaging_core::{Event, StoreError};

/// The JSON stored for `event`.
pub(crate) fn journal_json(event: &Event) -> Result<String, StoreError> {
    serde_json::to_string(event)
        .map_err(|e| StoreError::Backend(format!("cannot encode a webhook event: {e}")))
}

/// The event of entry `id` read back; a missing or unreadable one is corrupt.
pub(crate) fn journal_event(id: i64, json: Option<&str>) -> Result<Event, StoreError> {
    let json = json.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "webhook journal entry {id}: pending without an event"
        ))
    })?;
    serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("webhook journal entry {id}: {e}")))
}
