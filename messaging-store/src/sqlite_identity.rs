//! [`IdentityStore`] and [`UsedTokenStore`] on SQLite (tables `links` and `used_tokens`,
//! migration 2).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_conversations::identity::{IdentityStore, Link, UsedTokenStore};
use messaging_core::StoreError;
use messaging_core::{Address, ContactId, Phone};
use rusqlite::{Connection, OptionalExtension, params};

use crate::common::{LinkRow, decode_link, oldest_first, to_ns};
use crate::sqlite::{Done, Op, SqliteStore, sql_err, unexpected};

impl SqliteStore {
    /// Runs `f` in the writer's transaction and returns its value.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> rusqlite::Result<Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let op = Op::Run(Box::new(move |c: &Connection| {
            Ok(f(c)?.map(|v| Done::Value(Box::new(v))))
        }));
        match self.write(op).await? {
            Done::Value(v) => v.downcast::<T>().map(|b| *b).map_err(|_| unexpected()),
            _ => Err(unexpected()),
        }
    }
}

fn link_by_key(c: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    c.prepare_cached("SELECT link FROM links WHERE address_key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

fn put_link(c: &Connection, row: &LinkRow) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO links (address_key, contact, phone_digits, address_digits, linked_at_ns, link)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (address_key) DO UPDATE SET contact = excluded.contact,
            phone_digits = excluded.phone_digits, address_digits = excluded.address_digits,
            linked_at_ns = excluded.linked_at_ns, link = excluded.link",
    )?
    .execute(params![
        row.key,
        row.contact,
        row.phone_digits,
        row.address_digits,
        row.linked_at_ns,
        row.json
    ])?;
    Ok(())
}

fn decode_opt(json: Option<String>) -> Result<Option<Link>, StoreError> {
    json.map(|j| decode_link(&j)).transpose()
}

fn decode_all(rows: Vec<String>) -> Result<Vec<Link>, StoreError> {
    rows.iter()
        .map(|j| decode_link(j))
        .collect::<Result<Vec<_>, _>>()
        .map(oldest_first)
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn link(&self, link: &Link) -> Result<Option<Link>, StoreError> {
        let row = LinkRow::of(link)?;
        let old = self
            .run(move |c| {
                let old = link_by_key(c, &row.key)?;
                put_link(c, &row)?;
                Ok(Ok(old))
            })
            .await?;
        decode_opt(old)
    }

    async fn by_address(&self, address: &Address) -> Result<Option<Link>, StoreError> {
        let key = address.key();
        let json = self
            .read(move |c| link_by_key(c, &key).map_err(sql_err("reading a link")))
            .await?;
        decode_opt(json)
    }

    async fn by_phone(&self, phone: &Phone) -> Result<Vec<Link>, StoreError> {
        let digits = phone.digits().to_owned();
        let rows = self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT link FROM links WHERE phone_digits = ?1 OR address_digits = ?1",
                )
                .and_then(|mut s| s.query_map([&digits], |r| r.get::<_, String>(0))?.collect())
                .map_err(sql_err("reading links by phone"))
            })
            .await?;
        let links = decode_all(rows)?;
        Ok(links
            .into_iter()
            .filter(|l| l.matches_phone(phone))
            .collect())
    }

    async fn by_contact(&self, contact: &ContactId) -> Result<Vec<Link>, StoreError> {
        let contact = contact.as_str().to_owned();
        let rows = self
            .read(move |c| {
                c.prepare_cached("SELECT link FROM links WHERE contact = ?1")
                    .and_then(|mut s| {
                        s.query_map([&contact], |r| r.get::<_, String>(0))?
                            .collect()
                    })
                    .map_err(sql_err("reading links by contact"))
            })
            .await?;
        decode_all(rows)
    }

    async fn set_active(
        &self,
        address: &Address,
        active: bool,
        at: DateTime<Utc>,
    ) -> Result<Option<Link>, StoreError> {
        let key = address.key();
        self.run(move |c| {
            let Some(json) = link_by_key(c, &key)? else {
                return Ok(Ok(None));
            };
            let mut link = match decode_link(&json) {
                Ok(l) => l,
                Err(e) => return Ok(Err(e)),
            };
            if link.active != active {
                link.active = active;
                link.updated_at = at;
                match LinkRow::of(&link) {
                    Ok(row) => put_link(c, &row)?,
                    Err(e) => return Ok(Err(e)),
                }
            }
            Ok(Ok(Some(link)))
        })
        .await
    }

    async fn unlink(&self, address: &Address) -> Result<Option<Link>, StoreError> {
        let key = address.key();
        let old = self
            .run(move |c| {
                let old = link_by_key(c, &key)?;
                c.prepare_cached("DELETE FROM links WHERE address_key = ?1")?
                    .execute([&key])?;
                Ok(Ok(old))
            })
            .await?;
        decode_opt(old)
    }

    async fn erase_contact(&self, contact: &ContactId) -> Result<Vec<Link>, StoreError> {
        let contact = contact.as_str().to_owned();
        let rows: Vec<String> = self
            .run(move |c| {
                let rows = c
                    .prepare_cached("SELECT link FROM links WHERE contact = ?1")?
                    .query_map([&contact], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                c.prepare_cached("DELETE FROM links WHERE contact = ?1")?
                    .execute([&contact])?;
                Ok(Ok(rows))
            })
            .await?;
        decode_all(rows)
    }
}

#[async_trait]
impl UsedTokenStore for SqliteStore {
    async fn mark_token_used(
        &self,
        token_id: &str,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = token_id.to_owned();
        let (exp, at) = (to_ns(expires_at, "token expiry")?, to_ns(at, "token use")?);
        self.run(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO used_tokens (token_id, expires_at_ns, used_at_ns)
                     VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id, exp, at])?;
            Ok(Ok(n == 1))
        })
        .await
    }

    async fn purge_expired_tokens(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let now = to_ns(now, "now")?;
        self.run(move |c| {
            let n = c
                .prepare_cached("DELETE FROM used_tokens WHERE expires_at_ns < ?1")?
                .execute([now])?;
            Ok(Ok(n))
        })
        .await
    }
}
