//! Spam hygiene: a linter, a splitter, templates, SMS encoding and a sender governor.
pub mod sms;
