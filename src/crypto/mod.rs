//! Client-side encryption of the stored archive with age (X25519 recipients).
//!
//! Encryption sits between gzip and the sink, in the same stream: the stored object is an age
//! file whose plaintext is the gzip archive. age seals the payload in 64 KiB chunks, each
//! authenticated on its own, so memory stays bounded on both sides and a reader never hands
//! out a byte of a chunk that failed its check. The manifest records the recipients (public
//! keys) only; identities are read from a file at decryption time and never stored.

mod age_stream;
mod keys;

pub use age_stream::{decrypting, is_age, require_keys, Plain, AGE_MAGIC};
pub use keys::{Encrypt, Keys, IDENTITY_ENV};
