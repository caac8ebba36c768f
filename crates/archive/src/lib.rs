//! mongodump's archive format: a pure reader and writer over `std::io`.
//!
//! The format is a magic number, a prelude block (archive header and one metadata document
//! per namespace), then namespace blocks: data segments of raw BSON documents, interleaved
//! across at most `concurrent_collections` namespaces, each namespace closed by an EOF block
//! carrying the CRC-64/XZ of its documents. Gzip, if any, wraps the whole stream outside this
//! crate; [`sniff`] tells the two apart.

mod bsonbuf;
mod checksum;
mod compression;
mod error;
mod extjson;
mod metadata;
mod namespace;
mod prelude;
mod reader;
mod writer;

pub use checksum::{crc64, Crc};
pub use compression::{sniff, Compression};
pub use error::ArchiveError;
pub use extjson::{parse_extjson, to_canonical_extjson};
pub use metadata::CollectionMetadata;
pub use namespace::{Namespace, BUCKETS_PREFIX};
pub use prelude::{Header, PreludeEntry, FORMAT_VERSION};
pub use reader::{ArchiveReader, Event};
pub use writer::{ArchiveWriter, NamespaceSummary};

/// The largest document an archive can carry (and mongorestore accepts).
pub const MAX_DOCUMENT_SIZE: usize = 16 * 1024 * 1024;

/// The smallest BSON document: a length and the final NUL.
pub const MIN_DOCUMENT_SIZE: usize = 5;

/// `0x8199E26D` little-endian: the first four bytes of every archive.
pub const MAGIC: [u8; 4] = [0x6D, 0xE2, 0x99, 0x81];

/// Ends the prelude, every data segment and every EOF block.
pub const TERMINATOR: [u8; 4] = [0xFF; 4];
