//! Telling a gzip-compressed archive from a plain one by its first bytes.

use crate::MAGIC;

/// How an archive stream is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// One or more gzip members around the archive (`mongodump --gzip --archive`).
    Gzip,
    /// The archive bytes as they are.
    None,
}

/// Recognises gzip (`1F 8B`) or the archive magic; `None` when the bytes are neither, or too
/// few to tell.
pub fn sniff(first_bytes: &[u8]) -> Option<Compression> {
    if first_bytes.starts_with(&[0x1F, 0x8B]) {
        Some(Compression::Gzip)
    } else if first_bytes.starts_with(&MAGIC) {
        Some(Compression::None)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_both_encodings() {
        assert_eq!(sniff(&[0x1F, 0x8B, 8, 0]), Some(Compression::Gzip));
        assert_eq!(
            sniff(&[0x6D, 0xE2, 0x99, 0x81, 0x67]),
            Some(Compression::None)
        );
        assert_eq!(sniff(&[0x6D, 0xE2, 0x99]), None);
        assert_eq!(sniff(b"{\"a\""), None);
        assert_eq!(sniff(&[]), None);
    }
}
