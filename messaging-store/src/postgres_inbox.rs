//! [`InboxStore`] on PostgreSQL (table `inbox`, migration 4): every instance behind a load
//! balancer sees the same threads.

use async_trait::async_trait;
use messaging_conversations::inbox::{InboxMessage, InboxStore, ThreadId};
use messaging_core::ContactId;
use messaging_core::StoreError;

use crate::common::{decode_inbox_message, encode_inbox_message, to_ns};
use crate::postgres::{PostgresStore, col, pg_err};

#[async_trait]
impl InboxStore for PostgresStore {
    async fn append(&self, message: &InboxMessage) -> Result<(), StoreError> {
        let at = to_ns(message.at, "message time")?;
        let json = encode_inbox_message(message)?;
        let sql = format!(
            "INSERT INTO {} (thread, at_ns, message) VALUES ($1, $2, $3)",
            self.t("inbox")
        );
        self.query(
            &sql,
            &[&message.thread.as_str(), &at, &json],
            "appending to the inbox",
        )
        .await
        .map(|_| ())
    }

    async fn thread(&self, thread: &ThreadId) -> Result<Vec<InboxMessage>, StoreError> {
        let sql = format!(
            "SELECT message FROM {} WHERE thread = $1 ORDER BY at_ns, seq",
            self.t("inbox")
        );
        self.query(&sql, &[&thread.as_str()], "reading a thread")
            .await?
            .iter()
            .map(|r| decode_inbox_message(&col::<String>(r, 0, "inbox message")?))
            .collect()
    }

    async fn threads(&self) -> Result<Vec<ThreadId>, StoreError> {
        let sql = format!(
            "SELECT thread FROM {} GROUP BY thread ORDER BY max(at_ns) DESC, thread DESC",
            self.t("inbox")
        );
        self.query(&sql, &[], "listing threads")
            .await?
            .iter()
            .map(|r| col::<String>(r, 0, "thread").map(ThreadId::from_raw))
            .collect()
    }

    async fn rethread(
        &self,
        from: &ThreadId,
        to: &ThreadId,
        contact: &ContactId,
    ) -> Result<usize, StoreError> {
        if from == to {
            return Ok(0);
        }
        let t = self.t("inbox");
        let e = pg_err("moving a thread");
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(&e)?;
        // Deleting returns the rows, so a second instance moving the same thread at once
        // finds them gone and moves nothing: each message moves exactly once.
        let rows = tx
            .query(
                &format!(
                    "WITH gone AS (DELETE FROM {t} WHERE thread = $1 RETURNING seq, at_ns, message)
                     SELECT at_ns, message FROM gone ORDER BY at_ns, seq"
                ),
                &[&from.as_str()],
            )
            .await
            .map_err(&e)?;
        let insert = tx
            .prepare(&format!(
                "INSERT INTO {t} (thread, at_ns, message) VALUES ($1, $2, $3)"
            ))
            .await
            .map_err(&e)?;
        // Re-inserted after the destination's messages, as the in-memory store orders ties.
        for r in &rows {
            let at: i64 = col(r, 0, "inbox time")?;
            let mut m = decode_inbox_message(&col::<String>(r, 1, "inbox message")?)?;
            m.thread = to.clone();
            m.contact = Some(contact.clone());
            let json = encode_inbox_message(&m)?;
            tx.execute(&insert, &[&to.as_str(), &at, &json])
                .await
                .map_err(&e)?;
        }
        tx.commit().await.map_err(&e)?;
        Ok(rows.len())
    }

    async fn erase_thread(&self, thread: &ThreadId) -> Result<usize, StoreError> {
        let sql = format!(
            "WITH gone AS (DELETE FROM {} WHERE thread = $1 RETURNING 1) SELECT count(*) FROM gone",
            self.t("inbox")
        );
        let rows = self
            .query(&sql, &[&thread.as_str()], "erasing a thread")
            .await?;
        let n: i64 = match rows.first() {
            Some(r) => col(r, 0, "erased count")?,
            None => 0,
        };
        usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("erased count is {n}")))
    }

    async fn replace(&self, message: &InboxMessage) -> Result<bool, StoreError> {
        let t = self.t("inbox");
        let rows = self
            .query(
                &format!("SELECT seq, message FROM {t} WHERE thread = $1"),
                &[&message.thread.as_str()],
                "reading a thread to replace a message",
            )
            .await?;
        for r in &rows {
            let seq: i64 = col(r, 0, "inbox seq")?;
            let m = decode_inbox_message(&col::<String>(r, 1, "inbox message")?)?;
            if m.id == message.id {
                let json = encode_inbox_message(message)?;
                self.query(
                    &format!("UPDATE {t} SET message = $1 WHERE seq = $2"),
                    &[&json, &seq],
                    "replacing an inbox message",
                )
                .await?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}
