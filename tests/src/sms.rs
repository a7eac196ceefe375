//! Fake sms provider server (being written).
