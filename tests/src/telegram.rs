//! Fake telegram provider server (being written).
