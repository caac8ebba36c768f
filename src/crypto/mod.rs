//! Client-side encryption of the stored archive: age (X25519 recipients) or KMS envelope
//! encryption (a data key per backup from KMS, the archive sealed with XChaCha20-Poly1305).
//!
//! Encryption sits between gzip and the sink, in the same stream: the stored object's
//! plaintext is the gzip archive. Both schemes seal the payload in 64 KiB chunks, each
//! authenticated on its own, so memory stays bounded on both sides and a reader never hands
//! out a byte of a chunk that failed its check. The manifest records recipients (public
//! keys) or the KMS key id and the wrapped data key; never key material.

mod age_stream;
pub mod envelope;
mod keys;
mod kms;
mod prepare;

pub use age_stream::{decrypting, is_age, require_keys, Plain, AGE_MAGIC};
pub use envelope::is_envelope;
pub use keys::{Encrypt, Keys, IDENTITY_ENV};
pub use kms::{arn_region, Kms, CONTEXT_KEY};
pub use prepare::{ready_keys, Prepared};
