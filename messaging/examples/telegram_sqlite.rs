//! A Telegram + SQLite service built on nothing but
//! `messaging = { features = ["telegram", "sqlite"] }`: one reminder to a Telegram chat, with the
//! cascade's state in SQLite so that a restart neither loses nor repeats it.
//!
//! ```sh
//! TELEGRAM_BOT_TOKEN=… TELEGRAM_CHAT_ID=… cargo run -p messaging --features telegram,sqlite --example telegram_sqlite
//! ```
//! Without the variables it says what it needs and exits.
use std::sync::Arc;

use messaging::prelude::*;
use messaging::store::SqliteStore;
use messaging::telegram::TelegramChannel;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (Ok(token), Ok(chat)) = (
        std::env::var("TELEGRAM_BOT_TOKEN"),
        std::env::var("TELEGRAM_CHAT_ID"),
    ) else {
        eprintln!("set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID to send a reminder");
        return Ok(());
    };
    let store = Arc::new(SqliteStore::open("telegram-reminders.db").await?);
    let engine = Engine::builder()
        .store(store)
        .channel(Arc::new(TelegramChannel::builder("tg", token).build()?))
        .policy(CascadePolicy::new("telegram-only", vec![Step::new("tg")]))
        .build()?;
    let patient = Recipient::new("patient-7").address(Address::Telegram(chat.parse()?));
    engine
        .submit(Notification::new(
            "appointment-1042-reminder",
            patient,
            Content::text("Напоминаем о приёме завтра в 10:00."),
        ))
        .await?;
    println!(
        "{:?}",
        engine.status(&"appointment-1042-reminder".into()).await?
    );
    Ok(())
}
