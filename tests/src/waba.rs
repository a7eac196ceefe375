//! Fake waba provider server (being written).
