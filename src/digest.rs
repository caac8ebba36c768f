//! A collection's content digest: independent of the order its documents were read in, so
//! any driver can recompute it from the live collection or a restored copy.
//!
//! digest = ( Σ over documents of the first 16 bytes of SHA-256(document's BSON bytes), read
//! as a little-endian unsigned 128-bit integer ) mod 2^128, written as 32 lowercase hex
//! digits, most significant first. A sum rather than a XOR: two equal documents (possible in
//! a collection without `_id` uniqueness, such as time-series buckets written twice) count
//! twice instead of cancelling out.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentDigest(u128);

impl ContentDigest {
    /// Adds one document's bytes (length prefix and final NUL included).
    pub fn add(&mut self, document: &[u8]) {
        let hash = Sha256::digest(document);
        let mut low = [0u8; 16];
        low.copy_from_slice(&hash[..16]);
        self.0 = self.0.wrapping_add(u128::from_le_bytes(low));
    }

    /// Adds every document of a run of concatenated BSON documents; a run that does not
    /// split into whole documents is added as far as it does.
    pub fn add_documents(&mut self, mut run: &[u8]) {
        while run.len() >= 5 {
            let len = i32::from_le_bytes([run[0], run[1], run[2], run[3]]);
            let Ok(len) = usize::try_from(len) else {
                return;
            };
            if len < 5 || len > run.len() {
                return;
            }
            self.add(&run[..len]);
            run = &run[len..];
        }
    }

    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(d: bson::Document) -> Vec<u8> {
        bson::to_vec(&d).unwrap()
    }

    #[test]
    fn the_digest_ignores_order_and_counts_duplicates() {
        let (a, b) = (doc(bson::doc! {"_id": 1}), doc(bson::doc! {"_id": 2}));
        let mut one = ContentDigest::default();
        one.add(&a);
        one.add(&b);
        let mut other = ContentDigest::default();
        other.add_documents(&[b.clone(), a.clone()].concat());
        assert_eq!(one, other);
        let mut twice = ContentDigest::default();
        twice.add(&a);
        twice.add(&a);
        assert_ne!(twice, ContentDigest::default());
        assert_eq!(ContentDigest::default().hex(), "0".repeat(32));
        // {"_id": 1} (BSON 0e000000105f6964000100000000): SHA-256's first 16 bytes, as a
        // little-endian integer.
        let mut single = ContentDigest::default();
        single.add(&a);
        let sha = Sha256::digest(&a);
        let mut expected: Vec<u8> = sha[..16].to_vec();
        expected.reverse();
        assert_eq!(single.hex(), hex::encode(expected));
    }
}
