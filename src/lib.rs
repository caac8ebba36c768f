//! nightdump: nightly, mongodump-compatible MongoDB backups, streamed to a directory or S3.
//!
//! The library is the product; the `nightdump` binary (CLI and AWS Lambda handler) is a thin
//! client of it. The archive format itself lives in the pure `nightdump-archive` crate.

pub mod backup;
pub mod cat;
pub mod catalog;
pub mod cli;
pub mod crypto;
pub mod error;
pub mod lambda;
pub mod layout;
pub mod manifest;
pub mod namespace;
pub mod progress;
mod progress_bar;
pub mod prune;
pub mod restore;
pub mod secret;
pub mod signal;
pub mod sink;
pub mod source;
pub mod store;
pub mod verify;

pub use error::{Error, Result};
