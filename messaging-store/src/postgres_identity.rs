//! [`IdentityStore`] and [`UsedTokenStore`] on PostgreSQL (tables `links` and `used_tokens`,
//! migration 2).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use messaging_conversations::identity::{IdentityStore, Link, UsedTokenStore};
use messaging_core::StoreError;
use messaging_core::{Address, ContactId, Phone};

use crate::common::{LinkRow, decode_link, oldest_first, to_ns};
use crate::postgres::{PostgresStore, col, pg_err};

impl PostgresStore {
    pub(crate) fn t(&self, table: &str) -> String {
        format!("\"{}\".{table}", self.schema())
    }

    async fn links(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        context: &'static str,
    ) -> Result<Vec<Link>, StoreError> {
        self.query(sql, params, context)
            .await?
            .iter()
            .map(|r| decode_link(&col::<String>(r, 0, context)?))
            .collect::<Result<Vec<_>, _>>()
            .map(oldest_first)
    }
}

const UPSERT: &str =
    "INSERT INTO {t} (address_key, contact, phone_digits, address_digits, linked_at_ns, link)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (address_key) DO UPDATE SET contact = excluded.contact,
        phone_digits = excluded.phone_digits, address_digits = excluded.address_digits,
        linked_at_ns = excluded.linked_at_ns, link = excluded.link";

#[async_trait]
impl IdentityStore for PostgresStore {
    async fn link(&self, link: &Link) -> Result<Option<Link>, StoreError> {
        let row = LinkRow::of(link)?;
        let t = self.t("links");
        let e = pg_err("storing a link");
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(&e)?;
        let old = tx
            .query_opt(
                &format!("SELECT link FROM {t} WHERE address_key = $1 FOR UPDATE"),
                &[&row.key],
            )
            .await
            .map_err(&e)?
            .map(|r| col::<String>(&r, 0, "reading a link"))
            .transpose()?;
        tx.execute(
            &UPSERT.replace("{t}", &t),
            &[
                &row.key,
                &row.contact,
                &row.phone_digits,
                &row.address_digits,
                &row.linked_at_ns,
                &row.json,
            ],
        )
        .await
        .map_err(&e)?;
        tx.commit().await.map_err(&e)?;
        old.map(|j| decode_link(&j)).transpose()
    }

    async fn by_address(&self, address: &Address) -> Result<Option<Link>, StoreError> {
        let sql = format!(
            "SELECT link FROM {} WHERE address_key = $1",
            self.t("links")
        );
        Ok(self
            .links(&sql, &[&address.key()], "reading a link")
            .await?
            .pop())
    }

    async fn by_phone(&self, phone: &Phone) -> Result<Vec<Link>, StoreError> {
        let sql = format!(
            "SELECT link FROM {} WHERE phone_digits = $1 OR address_digits = $1",
            self.t("links")
        );
        let links = self
            .links(&sql, &[&phone.digits()], "reading links by phone")
            .await?;
        Ok(links
            .into_iter()
            .filter(|l| l.matches_phone(phone))
            .collect())
    }

    async fn by_contact(&self, contact: &ContactId) -> Result<Vec<Link>, StoreError> {
        let sql = format!("SELECT link FROM {} WHERE contact = $1", self.t("links"));
        self.links(&sql, &[&contact.as_str()], "reading links by contact")
            .await
    }

    async fn set_active(
        &self,
        address: &Address,
        active: bool,
        at: DateTime<Utc>,
    ) -> Result<Option<Link>, StoreError> {
        let t = self.t("links");
        let e = pg_err("updating a link");
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(&e)?;
        let Some(r) = tx
            .query_opt(
                &format!("SELECT link FROM {t} WHERE address_key = $1 FOR UPDATE"),
                &[&address.key()],
            )
            .await
            .map_err(&e)?
        else {
            return Ok(None);
        };
        let mut link = decode_link(&col::<String>(&r, 0, "reading a link")?)?;
        if link.active != active {
            link.active = active;
            link.updated_at = at;
            let row = LinkRow::of(&link)?;
            tx.execute(
                &format!("UPDATE {t} SET link = $2 WHERE address_key = $1"),
                &[&row.key, &row.json],
            )
            .await
            .map_err(&e)?;
        }
        tx.commit().await.map_err(&e)?;
        Ok(Some(link))
    }

    async fn unlink(&self, address: &Address) -> Result<Option<Link>, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE address_key = $1 RETURNING link",
            self.t("links")
        );
        Ok(self
            .links(&sql, &[&address.key()], "removing a link")
            .await?
            .pop())
    }

    async fn erase_contact(&self, contact: &ContactId) -> Result<Vec<Link>, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE contact = $1 RETURNING link",
            self.t("links")
        );
        self.links(&sql, &[&contact.as_str()], "erasing a contact")
            .await
    }
}

#[async_trait]
impl UsedTokenStore for PostgresStore {
    async fn mark_token_used(
        &self,
        token_id: &str,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (exp, at) = (to_ns(expires_at, "token expiry")?, to_ns(at, "token use")?);
        let sql = format!(
            "INSERT INTO {} (token_id, expires_at_ns, used_at_ns) VALUES ($1, $2, $3)
             ON CONFLICT (token_id) DO NOTHING RETURNING token_id",
            self.t("used_tokens")
        );
        let rows = self
            .query(&sql, &[&token_id, &exp, &at], "marking a token used")
            .await?;
        Ok(rows.len() == 1)
    }

    async fn purge_expired_tokens(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE expires_at_ns < $1 RETURNING token_id",
            self.t("used_tokens")
        );
        let rows = self
            .query(&sql, &[&to_ns(now, "now")?], "purging used tokens")
            .await?;
        Ok(rows.len())
    }
}
