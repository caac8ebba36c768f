//! A collection's content digest: independent of the order its documents were read in, so
//! any driver can recompute it from the live collection or a restored copy.
//!
//! digest = ( Σ over documents of the first 16 bytes of SHA-256(document's BSON bytes), read
//! as a little-endian unsigned 128-bit integer ) mod 2^128, written as 32 lowercase hex
//! digits, most significant first. A sum rather than a XOR: two equal documents (possible in
//! a collection without `_id` uniqueness, such as time-series buckets written twice) count
//! twice instead of cancelling out.

use bson::Document;
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

/// The digest of a collection's index specifications as listIndexes gives them: SHA-256 of
/// the specifications in order of index name, each the BSON bytes of the specification
/// without `v` and `ns` (a restore may rebuild an index at another version; `ns` is legacy),
/// its top-level fields in order of name (nested documents such as `key` keep their order,
/// which is part of the index). 64 lowercase hex digits.
pub fn indexes_digest(specs: &[Document]) -> String {
    let mut named: Vec<(String, Vec<u8>)> = specs
        .iter()
        .map(|spec| {
            let name = spec.get_str("name").unwrap_or_default().to_owned();
            (name, canonical_bytes(spec, &["v", "ns"]))
        })
        .collect();
    named.sort();
    let mut hash = Sha256::new();
    for (_, bytes) in named {
        hash.update(bytes);
    }
    hex::encode(hash.finalize())
}

/// The digest of a collection's listCollections `options`: SHA-256 of their BSON bytes with
/// the top-level fields in order of name. 64 lowercase hex digits.
pub fn options_digest(options: &Document) -> String {
    hex::encode(Sha256::digest(canonical_bytes(options, &[])))
}

/// `(indexes, options)` digests of a metadata.json text; `None` for no metadata.
pub fn metadata_digests(metadata_json: &str) -> Option<(String, String)> {
    if metadata_json.trim().is_empty() {
        return None;
    }
    let meta = nightdump_archive::CollectionMetadata::parse(metadata_json).ok()?;
    Some((indexes_digest(&meta.indexes), options_digest(&meta.options)))
}

fn canonical_bytes(doc: &Document, drop: &[&str]) -> Vec<u8> {
    let mut keys: Vec<&String> = doc.keys().filter(|k| !drop.contains(&k.as_str())).collect();
    keys.sort();
    let mut sorted = Document::new();
    for k in keys {
        if let Some(v) = doc.get(k) {
            sorted.insert(k.clone(), v.clone());
        }
    }
    // A document of BSON values always serialises; an empty vector would only mismatch.
    bson::to_vec(&sorted).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(d: bson::Document) -> Vec<u8> {
        bson::to_vec(&d).unwrap()
    }

    #[test]
    fn metadata_digests_ignore_field_and_index_order_but_not_key_order() {
        let a = bson::doc! {"v": 2, "key": {"a": 1, "b": -1}, "name": "a_1_b_-1", "unique": true};
        let id = bson::doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"};
        let reordered = bson::doc! {"name": "a_1_b_-1", "unique": true, "key": {"a": 1, "b": -1}, "v": 1, "ns": "x.y"};
        assert_eq!(
            indexes_digest(&[a.clone(), id.clone()]),
            indexes_digest(&[id.clone(), reordered])
        );
        let other_key_order =
            bson::doc! {"v": 2, "key": {"b": -1, "a": 1}, "name": "a_1_b_-1", "unique": true};
        assert_ne!(
            indexes_digest(&[a.clone(), id.clone()]),
            indexes_digest(&[other_key_order, id.clone()])
        );
        assert_ne!(indexes_digest(&[a, id.clone()]), indexes_digest(&[id]));
        assert_eq!(
            indexes_digest(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            options_digest(&bson::doc! {"capped": true, "size": 4096}),
            options_digest(&bson::doc! {"size": 4096, "capped": true})
        );
        assert_ne!(
            options_digest(&bson::doc! {"capped": true, "size": 4096}),
            options_digest(&bson::doc! {"capped": true, "size": 8192_i64})
        );
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
