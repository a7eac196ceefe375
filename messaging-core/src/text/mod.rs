//! Text tools every channel needs: SMS encoding and segment counting, splitting long text into
//! parts, Russian-to-Latin transliteration, link finding, and the length limits of each channel.
//!
//! | module | what it does |
//! |---|---|
//! | [`sms`] | GSM 03.38 detection and segment counting, shared with the SMS adapters |
//! | [`split`](mod@split) | cuts long text into short parts at paragraph, sentence and word boundaries |
//! | [`translit`] | Russian to Latin, to fit an SMS into GSM-7 |
//! | [`links`] | link finding as a spam filter sees it; the URL shortener list |
//! | [`TextLimits`] | the short and hard length of each channel kind |
mod limits;
pub mod links;
pub mod sms;
pub mod split;
pub mod translit;
mod unit;

pub use limits::{TextLimits, unit_name};
pub use sms::{SmsAnalysis, SmsEncoding, analyze};
pub use split::{Part, SplitConfig, SplitUnit, split};
pub use unit::TextUnit;
