//! Where the backup's pipeline and the encryption layers meet: a byte sink that can be
//! closed, yielding what was stored, and the stage that wraps one sink in another. A leaf:
//! neither side depends on the other, both on this.

use std::io::{self, Write};

/// What was stored: size and SHA-256 of exactly the bytes handed to the destination.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// A byte sink that can be closed, yielding what was stored. Encryption layers implement it
/// by finishing their own stream and then their inner sink.
pub trait FinishWrite: Write + Send {
    fn finish_stream(self: Box<Self>) -> io::Result<Stored>;
}

/// Wraps the raw sink (e.g. in an encryptor) before compression is layered on top; fails
/// when the wrapping layer cannot be set up.
pub type SinkWrapper =
    Box<dyn FnOnce(Box<dyn FinishWrite>) -> io::Result<Box<dyn FinishWrite>> + Send>;
