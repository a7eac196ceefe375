//! Test doubles (being written).
