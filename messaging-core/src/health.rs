//! Channel health (being written).
