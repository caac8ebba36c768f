//! The MongoDB side of a backup: connecting, discovering what to dump (as mongodump does),
//! and reading collections as raw BSON.

mod connect;
mod discover;
mod read;

pub use connect::{ReadPreferenceChoice, Source, SourceOptions, Topology};
pub use discover::{discover, CollectionPlan, Kind};
pub use read::{read_collection, Batch};
