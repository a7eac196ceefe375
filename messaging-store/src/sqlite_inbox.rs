//! [`InboxStore`] on SQLite (table `inbox`, migration 4).

use async_trait::async_trait;
use messaging_conversations::inbox::{InboxMessage, InboxStore, ThreadId};
use messaging_core::ContactId;
use messaging_core::StoreError;
use rusqlite::{Connection, params};

use crate::common::{decode_inbox_message as decode, encode_inbox_message as encode, to_ns};
use crate::sqlite::{SqliteStore, sql_err};

fn insert(c: &Connection, thread: &str, at: i64, json: &str) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO inbox (thread, at_ns, message) VALUES (?1, ?2, ?3)")?
        .execute(params![thread, at, json])?;
    Ok(())
}

fn rows_of(c: &Connection, thread: &str) -> rusqlite::Result<Vec<String>> {
    c.prepare_cached("SELECT message FROM inbox WHERE thread = ?1 ORDER BY at_ns, seq")?
        .query_map([thread], |r| r.get::<_, String>(0))?
        .collect()
}

#[async_trait]
impl InboxStore for SqliteStore {
    async fn append(&self, message: &InboxMessage) -> Result<(), StoreError> {
        let thread = message.thread.as_str().to_owned();
        let at = to_ns(message.at, "message time")?;
        let json = encode(message)?;
        self.run(move |c| insert(c, &thread, at, &json).map(Ok))
            .await
    }

    async fn thread(&self, thread: &ThreadId) -> Result<Vec<InboxMessage>, StoreError> {
        let thread = thread.as_str().to_owned();
        let rows = self
            .read(move |c| rows_of(c, &thread).map_err(sql_err("reading a thread")))
            .await?;
        rows.iter().map(|j| decode(j)).collect()
    }

    async fn threads(&self) -> Result<Vec<ThreadId>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT thread FROM inbox GROUP BY thread ORDER BY max(at_ns) DESC, thread DESC",
            )
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0).map(ThreadId::from_raw))?
                    .collect()
            })
            .map_err(sql_err("listing threads"))
        })
        .await
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
        let (from, to, contact) = (from.clone(), to.clone(), contact.clone());
        self.run(move |c| {
            let rows = rows_of(c, from.as_str())?;
            let mut moved = Vec::with_capacity(rows.len());
            for j in &rows {
                let mut m = match decode(j) {
                    Ok(m) => m,
                    Err(e) => return Ok(Err(e)),
                };
                m.thread = to.clone();
                m.contact = Some(contact.clone());
                let at = match to_ns(m.at, "message time") {
                    Ok(at) => at,
                    Err(e) => return Ok(Err(e)),
                };
                match encode(&m) {
                    Ok(json) => moved.push((at, json)),
                    Err(e) => return Ok(Err(e)),
                }
            }
            c.prepare_cached("DELETE FROM inbox WHERE thread = ?1")?
                .execute([from.as_str()])?;
            // Re-inserted after the destination's messages, as the in-memory store orders ties.
            for (at, json) in &moved {
                insert(c, to.as_str(), *at, json)?;
            }
            Ok(Ok(moved.len()))
        })
        .await
    }

    async fn erase_thread(&self, thread: &ThreadId) -> Result<usize, StoreError> {
        let thread = thread.as_str().to_owned();
        self.run(move |c| {
            c.prepare_cached("DELETE FROM inbox WHERE thread = ?1")?
                .execute([&thread])
                .map(Ok)
        })
        .await
    }

    async fn replace(&self, message: &InboxMessage) -> Result<bool, StoreError> {
        let thread = message.thread.as_str().to_owned();
        let id = message.id.clone();
        let json = encode(message)?;
        self.run(move |c| {
            let rows: Vec<(i64, String)> = c
                .prepare_cached("SELECT seq, message FROM inbox WHERE thread = ?1")?
                .query_map([&thread], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (seq, j) in &rows {
                match decode(j) {
                    Ok(m) if m.id == id => {
                        c.prepare_cached("UPDATE inbox SET message = ?1 WHERE seq = ?2")?
                            .execute(params![json, seq])?;
                        return Ok(Ok(true));
                    }
                    Ok(_) => {}
                    Err(e) => return Ok(Err(e)),
                }
            }
            Ok(Ok(false))
        })
        .await
    }
}
