//! One collection's storage: documents in natural (insertion) order keyed by a record id
//! that never changes, the `_id` index, and the unique secondary indexes mongod enforces.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bson::{Bson, Document, RawDocument, RawDocumentBuf};
use tokio::sync::Notify;

use super::filter::Expr;
use super::value::{key_bytes, lookup_raw, to_bson, truthy};

/// What a namespace in the catalog is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Collection,
    View {
        view_on: String,
        pipeline: Vec<Document>,
    },
    /// The logical collection of a time-series; its data lives in `system.buckets.<name>`.
    Timeseries,
}

#[derive(Debug, Clone)]
pub struct Index {
    pub name: String,
    /// The listIndexes document, fields in mongod's order.
    pub spec: Document,
    pub key: Vec<String>,
    pub unique: bool,
    sparse: bool,
    partial: Option<Expr>,
    entries: HashMap<Vec<u8>, u64>,
}

impl Index {
    pub fn new(spec: Document) -> Result<Index, crate::error::CommandError> {
        let name = spec.get_str("name").unwrap_or_default().to_string();
        let key = spec
            .get_document("key")
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default();
        let unique = spec.get("unique").is_some_and(truthy);
        let sparse = spec.get("sparse").is_some_and(truthy);
        let partial = match spec.get_document("partialFilterExpression") {
            Ok(f) => Some(Expr::parse(f)?),
            Err(_) => None,
        };
        Ok(Index {
            name,
            spec,
            key,
            unique,
            sparse,
            partial,
            entries: HashMap::new(),
        })
    }

    /// The index key of a document, or `None` when the index does not cover it.
    fn key_of(&self, doc: &RawDocument) -> Option<(Vec<u8>, Document)> {
        if let Some(p) = &self.partial {
            if !p.matches(doc) {
                return None;
            }
        }
        let mut bytes = Vec::new();
        let mut shown = Document::new();
        let mut any = false;
        for f in &self.key {
            let v = lookup_raw(doc, f).into_iter().next();
            any |= v.is_some();
            let v = v.unwrap_or(Bson::Null);
            key_bytes(&v, &mut bytes);
            shown.insert(f.clone(), v);
        }
        if self.sparse && !any {
            return None;
        }
        Some((bytes, shown))
    }
}

/// A rejected document: which index it collided on and with what key.
#[derive(Debug, Clone)]
pub struct DuplicateKey {
    pub index: String,
    pub key_pattern: Document,
    pub key_value: Document,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CappedLimits {
    pub size: Option<u64>,
    pub max: Option<u64>,
}

#[derive(Debug)]
pub struct Collection {
    pub uuid: [u8; 16],
    pub kind: Kind,
    /// The creation options as listCollections reports them, in their original order.
    pub options: Document,
    pub indexes: Vec<Index>,
    pub validator: Option<Expr>,
    pub validation_warn_only: bool,
    pub validation_moderate: bool,
    pub capped: Option<CappedLimits>,
    pub clustered: bool,
    records: BTreeMap<u64, Arc<RawDocumentBuf>>,
    id_index: HashMap<Vec<u8>, u64>,
    next_record: u64,
    data_size: u64,
    /// Set once the collection leaves the catalog; open cursors then die.
    pub dropped: bool,
    /// Woken on every insert, for tailable awaitData cursors.
    pub inserted: Arc<Notify>,
    /// False for the oplog, which like mongod's has no `_id` index.
    pub id_indexed: bool,
}

impl Collection {
    pub fn new(uuid: [u8; 16], kind: Kind, options: Document) -> Collection {
        Collection {
            uuid,
            kind,
            options,
            indexes: Vec::new(),
            validator: None,
            validation_warn_only: false,
            validation_moderate: false,
            capped: None,
            clustered: false,
            records: BTreeMap::new(),
            id_index: HashMap::new(),
            next_record: 1,
            data_size: 0,
            dropped: false,
            inserted: Arc::new(Notify::new()),
            id_indexed: true,
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    pub fn first_record(&self) -> Option<u64> {
        self.records.keys().next().copied()
    }

    pub fn last_record(&self) -> Option<u64> {
        self.records.keys().next_back().copied()
    }

    pub fn get(&self, rid: u64) -> Option<&Arc<RawDocumentBuf>> {
        self.records.get(&rid)
    }

    /// Records after `after` (all when `None`) in natural order.
    pub fn scan_forward(
        &self,
        after: Option<u64>,
    ) -> impl Iterator<Item = (&u64, &Arc<RawDocumentBuf>)> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        self.records.range(start..)
    }

    /// Records before `before` (all when `None`) in reverse natural order.
    pub fn scan_backward(
        &self,
        before: Option<u64>,
    ) -> impl Iterator<Item = (&u64, &Arc<RawDocumentBuf>)> {
        let end = before.unwrap_or(u64::MAX);
        self.records.range(..end).rev()
    }

    pub fn find_id(&self, id: &Bson) -> Option<u64> {
        let mut k = Vec::new();
        key_bytes(id, &mut k);
        self.id_index.get(&k).copied()
    }

    fn id_key(doc: &RawDocument) -> Vec<u8> {
        let mut k = Vec::new();
        let id = doc
            .get("_id")
            .ok()
            .flatten()
            .map(to_bson)
            .unwrap_or(Bson::Null);
        key_bytes(&id, &mut k);
        k
    }

    fn id_dup(doc: &RawDocument) -> DuplicateKey {
        let id = doc
            .get("_id")
            .ok()
            .flatten()
            .map(to_bson)
            .unwrap_or(Bson::Null);
        DuplicateKey {
            index: "_id_".into(),
            key_pattern: bson::doc! {"_id": 1},
            key_value: bson::doc! {"_id": id},
        }
    }

    /// Checks the unique secondary indexes for `doc`, ignoring the entry of `own` (the
    /// record being replaced).
    fn check_unique(&self, doc: &RawDocument, own: Option<u64>) -> Result<(), DuplicateKey> {
        for ix in self.indexes.iter().filter(|i| i.unique) {
            if let Some((k, shown)) = ix.key_of(doc) {
                if let Some(r) = ix.entries.get(&k) {
                    if Some(*r) != own {
                        return Err(DuplicateKey {
                            index: ix.name.clone(),
                            key_pattern: ix.spec.get_document("key").cloned().unwrap_or_default(),
                            key_value: shown,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn index_add(&mut self, rid: u64, doc: &RawDocument) {
        for ix in self.indexes.iter_mut().filter(|i| i.unique) {
            if let Some((k, _)) = ix.key_of(doc) {
                ix.entries.insert(k, rid);
            }
        }
    }

    fn index_remove(&mut self, doc: &RawDocument) {
        for ix in self.indexes.iter_mut().filter(|i| i.unique) {
            if let Some((k, _)) = ix.key_of(doc) {
                ix.entries.remove(&k);
            }
        }
    }

    /// Stores a document that already carries its `_id` first. Returns its record id.
    pub fn insert(&mut self, doc: RawDocumentBuf) -> Result<u64, DuplicateKey> {
        let rid = self.next_record;
        if self.id_indexed {
            let idk = Self::id_key(&doc);
            if self.id_index.contains_key(&idk) {
                return Err(Self::id_dup(&doc));
            }
            self.check_unique(&doc, None)?;
            self.id_index.insert(idk, rid);
        }
        self.next_record += 1;
        self.index_add(rid, &doc);
        self.data_size += doc.as_bytes().len() as u64;
        self.records.insert(rid, Arc::new(doc));
        self.evict_capped();
        self.inserted.notify_waiters();
        Ok(rid)
    }

    /// Replaces the document of `rid` in place (its natural position is kept).
    pub fn replace(&mut self, rid: u64, doc: RawDocumentBuf) -> Result<(), DuplicateKey> {
        let Some(old) = self.records.get(&rid).cloned() else {
            return Ok(());
        };
        let new_idk = Self::id_key(&doc);
        let old_idk = Self::id_key(&old);
        if new_idk != old_idk && self.id_index.contains_key(&new_idk) {
            return Err(Self::id_dup(&doc));
        }
        self.check_unique(&doc, Some(rid))?;
        self.index_remove(&old);
        self.index_add(rid, &doc);
        self.id_index.remove(&old_idk);
        self.id_index.insert(new_idk, rid);
        self.data_size = self.data_size - old.as_bytes().len() as u64 + doc.as_bytes().len() as u64;
        self.records.insert(rid, Arc::new(doc));
        Ok(())
    }

    pub fn remove(&mut self, rid: u64) -> Option<Arc<RawDocumentBuf>> {
        let old = self.records.remove(&rid)?;
        self.index_remove(&old);
        if self.id_indexed {
            self.id_index.remove(&Self::id_key(&old));
        }
        self.data_size -= old.as_bytes().len() as u64;
        Some(old)
    }

    fn evict_capped(&mut self) {
        let Some(c) = self.capped else { return };
        loop {
            let over_max = c
                .max
                .is_some_and(|m| m > 0 && self.records.len() as u64 > m);
            let over_size = c.size.is_some_and(|s| self.data_size > s);
            if !(over_max || over_size) || self.records.len() <= 1 {
                return;
            }
            if let Some(rid) = self.first_record() {
                self.remove(rid);
            }
        }
    }

    pub fn set_capped(&mut self, limits: CappedLimits) {
        self.capped = Some(limits);
        self.evict_capped();
    }

    /// Adds a secondary index, building it over the existing documents.
    pub fn add_index(&mut self, mut ix: Index) -> Result<(), DuplicateKey> {
        if ix.unique {
            for (rid, doc) in &self.records {
                if let Some((k, shown)) = ix.key_of(doc) {
                    if ix.entries.insert(k, *rid).is_some() {
                        return Err(DuplicateKey {
                            index: ix.name.clone(),
                            key_pattern: ix.spec.get_document("key").cloned().unwrap_or_default(),
                            key_value: shown,
                        });
                    }
                }
            }
        }
        self.indexes.push(ix);
        Ok(())
    }

    pub fn is_capped(&self) -> bool {
        self.capped.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, rawdoc};

    #[test]
    fn id_is_unique_across_numeric_types() {
        let mut c = Collection::new([0; 16], Kind::Collection, Document::new());
        c.insert(rawdoc! {"_id": 1, "a": 1}).unwrap();
        let e = c.insert(rawdoc! {"_id": 1.0, "a": 2}).unwrap_err();
        assert_eq!(e.index, "_id_");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn unique_index_blocks_duplicates_and_replacement_keeps_position() {
        let mut c = Collection::new([0; 16], Kind::Collection, Document::new());
        c.add_index(
            Index::new(doc! {"v": 2, "key": {"e": 1}, "name": "e_1", "unique": true}).unwrap(),
        )
        .unwrap();
        let r1 = c.insert(rawdoc! {"_id": 1, "e": "x"}).unwrap();
        c.insert(rawdoc! {"_id": 2, "e": "y"}).unwrap();
        let e = c.insert(rawdoc! {"_id": 3, "e": "x"}).unwrap_err();
        assert_eq!(e.index, "e_1");
        assert_eq!(e.key_value, doc! {"e": "x"});
        assert!(c.replace(r1, rawdoc! {"_id": 1, "e": "y"}).is_err());
        c.replace(r1, rawdoc! {"_id": 1, "e": "z"}).unwrap();
        let first = c.scan_forward(None).next().unwrap().1.clone();
        assert_eq!(first.get_str("e").unwrap(), "z");
        c.insert(rawdoc! {"_id": 3, "e": "x"}).unwrap();
    }

    #[test]
    fn capped_evicts_oldest() {
        let mut c = Collection::new([0; 16], Kind::Collection, Document::new());
        c.set_capped(CappedLimits {
            size: None,
            max: Some(2),
        });
        for i in 0..5 {
            c.insert(rawdoc! {"_id": i}).unwrap();
        }
        let ids: Vec<i32> = c
            .scan_forward(None)
            .map(|(_, d)| d.get_i32("_id").unwrap())
            .collect();
        assert_eq!(ids, [3, 4]);
    }
}
