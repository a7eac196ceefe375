//! In-process fake provider servers speaking each provider real JSON, for wire-level tests.
#![forbid(unsafe_code)]
