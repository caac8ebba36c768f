//! nightdump: nightly, mongodump-compatible MongoDB backups, streamed to a directory or S3.
//!
//! The library is the product; the `nightdump` binary (the command line, in the binary's own
//! `cli` module, and the AWS Lambda function in [`lambda`]) is a thin client of it, and both read their settings
//! through [`settings`]. The archive format itself lives in the pure `nightdump-archive`
//! crate.
//!
//! Backing up from code (see also `examples/backup_from_code.rs`):
//!
//! ```no_run
//! # async fn example(options: nightdump::BackupOptions) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! let destination = nightdump::settings::destination("destination", "s3://my-backups/prod")?;
//! let store = nightdump::Store::open(&destination, &options.s3).await?;
//! let outcome = nightdump::backup::run(&options, &store, &Arc::default()).await?;
//! nightdump::verify::verify(&store, &nightdump::Selector::Id(outcome.manifest.backup_id.parse()?), None)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! The modules, leaves first: [`error`] (every error and its exit code), [`secret`],
//! [`layout`] (ids and keys), [`namespace`], [`progress`], [`sink`], [`signal`]; then
//! [`store`] (directory and S3), [`manifest`], [`source`] (reading MongoDB), [`crypto`],
//! [`settings`]; then the commands: [`backup`], [`catalog`] (list, status, `latest`),
//! [`verify`], [`cat`], [`restore`], [`prune`]; and the Lambda front end, [`lambda`]. The
//! command line (clap, tables, JSON on stdout, progress bars) lives with the binary.
//! `scripts/check-module-cycles` keeps the graph free of cycles.

mod backoff;
pub mod backup;
pub mod cat;
pub mod catalog;
pub mod chain;
pub mod crypto;
pub mod digest;
pub mod drill;
pub mod dumpdir;
pub mod error;
pub mod estimate;
pub mod lambda;
pub mod layout;
pub mod manifest;
pub mod namespace;
pub mod pitr;
pub mod progress;
pub mod prune;
pub mod restore;
pub mod secret;
pub mod settings;
pub mod signal;
mod sink;
pub mod source;
pub mod store;
pub mod task;
pub mod verify;

pub use backup::{BackupOptions, BackupOutcome};
pub use catalog::Selector;
pub use error::{Error, Result};
pub use manifest::Manifest;
pub use restore::{RestoreOptions, RestoreReport};
pub use secret::ConnectionString;
pub use store::{Destination, S3Options, Store};
