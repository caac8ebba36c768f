//! Every failure a caller can act on gets its own variant. Messages are one line, name the
//! namespace and byte offset where there is one, and reuse mongorestore's wording where it has
//! one so that an operator can search for it.

use std::io;

/// Errors from reading or writing an archive, or from its metadata JSON.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The underlying reader or writer failed.
    #[error("I/O error at archive offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },

    /// The input ended before the first four bytes.
    #[error("I/O failure reading beginning of archive: only {got} of 4 magic bytes present")]
    TruncatedMagic { got: usize },

    /// The magic number is wrong.
    #[error("stream or file does not appear to be a mongodump archive{hint}")]
    NotAnArchive { hint: &'static str },

    /// The input ended in the middle of a length, a document or a block.
    #[error("corruption found in archive; unexpected end of input at offset {offset} {context}")]
    Truncated { offset: u64, context: &'static str },

    /// A length prefix that is neither a BSON length in range nor a terminator.
    #[error("corruption found in archive; {length} is neither a valid bson length nor a archive terminator (offset {offset})")]
    InvalidLength { length: u32, offset: u64 },

    /// A document whose last byte is not NUL.
    #[error("corruption found in archive; bson (size: {size}, byte: {byte}) doesn't end with a null byte (offset {offset})")]
    MissingNul { size: u32, byte: u8, offset: u64 },

    /// A terminator where a block header was expected.
    #[error("corruption found in archive; consecutive terminators / headerless blocks are not allowed (offset {offset})")]
    ConsecutiveTerminators { offset: u64 },

    /// The archive header document could not be decoded.
    #[error(
        "corruption found in archive; archive header does not decode: {detail} (offset {offset})"
    )]
    BadHeader { detail: String, offset: u64 },

    /// A prelude collection-metadata document could not be decoded.
    #[error(
        "corruption found in archive; prelude entry does not decode: {detail} (offset {offset})"
    )]
    BadPreludeEntry { detail: String, offset: u64 },

    /// A namespace header is not exactly `{db, collection, EOF, CRC}` with the right types.
    #[error("corruption found in archive; header bson doesn't unmarshal as a collection header: {detail} (offset {offset})")]
    BadNamespaceHeader { detail: String, offset: u64 },

    /// The prelude lists the same namespace twice.
    #[error("prelude lists namespace {ns} twice; each namespace needs exactly one entry")]
    DuplicatePreludeEntry { ns: String },

    /// A data block names a namespace that the prelude does not list.
    #[error("namespace {ns} is not in the archive prelude (offset {offset}); add it to the prelude or drop its data")]
    UnknownNamespace { ns: String, offset: u64 },

    /// A namespace header for a namespace that already reached its EOF block.
    #[error("error demultiplexing archive; namespace header for already opened namespace {ns} (offset {offset})")]
    NamespaceReopened { ns: String, offset: u64 },

    /// A document after an EOF block, before the next namespace header.
    #[error("error demultiplexing archive; collection data without a collection header (offset {offset})")]
    DataWithoutHeader { offset: u64 },

    /// The CRC recomputed over a namespace's documents differs from its EOF header.
    #[error("CRC mismatch for namespace {ns}, {computed}!={expected}")]
    CrcMismatch {
        ns: String,
        computed: i64,
        expected: i64,
    },

    /// The archive ended while namespaces still had open segments.
    #[error("archive finished but contained files were unfinished ({namespaces})")]
    UnfinishedNamespaces { namespaces: String },

    /// The archive ended before every prelude namespace reached its EOF block.
    #[error("archive finished before all collections were seen ({namespaces})")]
    MissingNamespaces { namespaces: String },

    /// A prelude entry carries metadata JSON that does not parse.
    #[error("malformed metadata JSON for {ns}: {detail}")]
    MalformedMetadata { ns: String, detail: String },

    /// Collection metadata JSON that does not parse (no namespace known yet).
    #[error("malformed collection metadata JSON: {detail}")]
    InvalidMetadata { detail: String },

    /// Extended JSON text that does not parse.
    #[error("invalid extended JSON: {detail}")]
    InvalidExtJson { detail: String },

    /// A document handed to the writer has a bad length or framing.
    #[error("document {index} for {ns} is malformed: {detail}; documents must be complete BSON of 5 to 16777216 bytes")]
    BadDocument {
        ns: String,
        index: usize,
        detail: String,
    },

    /// The writer was given data for a namespace after finishing it.
    #[error("namespace {ns} was already finished; its documents must all be written before finish_namespace")]
    NamespaceFinished { ns: String },

    /// Starting another namespace would exceed `concurrent_collections` open at once, which
    /// deadlocks mongorestore.
    #[error("cannot start {ns}: {open} namespaces are already open and concurrent_collections is {limit}; finish one first")]
    TooManyOpenNamespaces { ns: String, open: usize, limit: i32 },

    /// The oplog was started while other namespaces were not finished.
    #[error("the oplog must come last: finish {pending} before writing the oplog")]
    OplogNotLast { pending: String },

    /// `finish` was called while prelude namespaces were never finished.
    #[error("archive finished before all collections were seen ({namespaces}); call finish_namespace for each")]
    UnfinishedAtClose { namespaces: String },

    /// A header value that mongorestore would refuse.
    #[error("invalid archive header: {detail}")]
    InvalidHeader { detail: String },

    /// A prelude namespace that mongorestore would refuse.
    #[error("invalid namespace {ns:?}: {detail}")]
    InvalidNamespace { ns: String, detail: String },

    /// The writer or reader already failed; its output or position is no longer trustworthy.
    #[error("archive {what} already failed; start again from the beginning")]
    Poisoned { what: &'static str },
}
