//! Placeholder: see the store issue.
#![forbid(unsafe_code)]
