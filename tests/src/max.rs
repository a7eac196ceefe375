//! Fake max provider server (being written).
