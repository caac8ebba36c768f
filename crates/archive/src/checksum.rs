//! The archive's per-namespace checksum: Go's `hash/crc64` with the ECMA table, which is the
//! catalogue's CRC-64/XZ.

use crc::{Table, CRC_64_XZ};

// Sixteen lanes: the writer checksums every byte of every document, so throughput matters more
// than the 32 KiB table.
static CRC64_XZ: crc::Crc<u64, Table<16>> = crc::Crc::<u64, Table<16>>::new(&CRC_64_XZ);

/// CRC-64/XZ of `bytes` in one call.
pub fn crc64(bytes: &[u8]) -> u64 {
    CRC64_XZ.checksum(bytes)
}

/// Incremental CRC-64/XZ: feeding the bytes in any number of pieces gives the same value as
/// [`crc64`] over their concatenation.
#[derive(Clone)]
pub struct Crc {
    digest: crc::Digest<'static, u64, Table<16>>,
}

impl Crc {
    pub fn new() -> Self {
        Self {
            digest: CRC64_XZ.digest(),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    /// The checksum of everything fed so far; feeding may continue afterwards.
    pub fn value(&self) -> u64 {
        self.digest.clone().finalize()
    }
}

impl Default for Crc {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Crc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc({:#018x})", self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_matches_the_catalogue() {
        assert_eq!(crc64(b"123456789"), 0x995D_C9BB_DF19_39FA);
    }

    #[test]
    fn empty_input_is_zero() {
        assert_eq!(crc64(b""), 0);
        assert_eq!(Crc::new().value(), 0);
    }

    #[test]
    fn incremental_equals_one_shot_for_every_split() {
        let data: Vec<u8> = (0u16..300).map(|i| (i * 7 + 3) as u8).collect();
        let whole = crc64(&data);
        for split in 0..data.len() {
            let mut crc = Crc::new();
            crc.update(&data[..split]);
            let _ = crc.value();
            crc.update(&data[split..]);
            assert_eq!(crc.value(), whole, "split at {split}");
        }
    }

    #[test]
    fn worked_example_document() {
        let doc = [0x0E, 0, 0, 0, 0x10, b'_', b'i', b'd', 0, 1, 0, 0, 0, 0];
        assert_eq!(crc64(&doc), 0xF3EA_6143_6A44_59FE);
        assert_eq!(crc64(&doc) as i64, -870_776_635_769_202_178);
    }
}
