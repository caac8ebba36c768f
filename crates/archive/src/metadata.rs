//! A collection's metadata.json, the `metadata` string of a prelude entry.

use bson::{Bson, Document};

use crate::error::ArchiveError;
use crate::extjson::{parse_extjson, to_canonical_extjson};

/// What mongodump records about a collection: its create options, its indexes, its UUID.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollectionMetadata {
    /// listCollections `options`, in the server's key order; empty when there are none.
    pub options: Document,
    /// listIndexes documents, in the server's key order.
    pub indexes: Vec<Document>,
    /// `info.uuid` as 32 lowercase hex digits.
    pub uuid: Option<String>,
    /// The logical collection name; empty in files from tools that did not write it.
    pub collection_name: String,
    /// listCollections `type`.
    pub kind: Option<String>,
}

impl CollectionMetadata {
    /// Parses metadata.json in any Extended JSON dialect mongodump has written. Unknown
    /// top-level keys are ignored, as mongorestore ignores them.
    pub fn parse(json: &str) -> Result<Self, ArchiveError> {
        let doc = parse_extjson(json).map_err(|e| match e {
            ArchiveError::InvalidExtJson { detail } => invalid(detail),
            other => invalid(other.to_string()),
        })?;
        let mut meta = CollectionMetadata::default();
        for (key, value) in doc {
            match (key.as_str(), value) {
                ("options", Bson::Document(options)) => meta.options = options,
                ("options", Bson::Null) => {}
                ("indexes", Bson::Array(items)) => {
                    for (i, item) in items.into_iter().enumerate() {
                        match item {
                            Bson::Document(index) => meta.indexes.push(index),
                            other => {
                                return Err(invalid(format!(
                                    "indexes[{i}] is {:?} instead of a document",
                                    other.element_type()
                                )))
                            }
                        }
                    }
                }
                ("indexes", Bson::Null) => {}
                ("uuid", Bson::String(uuid)) => meta.uuid = Some(uuid),
                ("collectionName", Bson::String(name)) => meta.collection_name = name,
                ("type", Bson::String(kind)) => meta.kind = Some(kind),
                (key @ ("options" | "indexes" | "uuid" | "collectionName" | "type"), other) => {
                    return Err(invalid(format!(
                        "{key} has the wrong type ({:?})",
                        other.element_type()
                    )))
                }
                _ => {}
            }
        }
        Ok(meta)
    }

    /// Serialises as current mongodump does: keys `options` (only when non-empty), `indexes`
    /// (always), `uuid`, `collectionName` (when known), `type` (when non-empty), all canonical
    /// Extended JSON, compact.
    pub fn to_extjson(&self) -> String {
        to_canonical_extjson(&self.to_document())
    }

    /// The metadata as the document [`to_extjson`](Self::to_extjson) serialises.
    pub fn to_document(&self) -> Document {
        let mut doc = Document::new();
        if !self.options.is_empty() {
            doc.insert("options", self.options.clone());
        }
        let indexes: Vec<Bson> = self.indexes.iter().cloned().map(Bson::Document).collect();
        doc.insert("indexes", indexes);
        if let Some(uuid) = &self.uuid {
            doc.insert("uuid", uuid.clone());
        }
        if !self.collection_name.is_empty() {
            doc.insert("collectionName", self.collection_name.clone());
        }
        if let Some(kind) = self.kind.as_deref().filter(|k| !k.is_empty()) {
            doc.insert("type", kind);
        }
        doc
    }

    /// Whether these options describe a time-series collection (mongorestore's test).
    pub fn is_timeseries(&self) -> bool {
        self.options.contains_key("timeseries")
    }

    /// Whether these options describe a view.
    pub fn is_view(&self) -> bool {
        self.options.contains_key("viewOn")
    }
}

fn invalid(detail: String) -> ArchiveError {
    ArchiveError::InvalidMetadata { detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    const WORKED_EXAMPLE: &str = r#"{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],"collectionName":"c","type":"collection"}"#;
    const DOC_EXAMPLE: &str = r#"{"options":{"capped":true,"size":{"$numberInt":"4096"}},"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},{"v":{"$numberInt":"2"},"key":{"ts":{"$numberInt":"1"}},"name":"ts_1","expireAfterSeconds":{"$numberInt":"3600"}}],"uuid":"0679db720f4944de90ae27472664e94a","collectionName":"foo","type":"collection"}"#;

    #[test]
    fn canonical_metadata_round_trips() {
        for json in [WORKED_EXAMPLE, DOC_EXAMPLE] {
            let meta = CollectionMetadata::parse(json).unwrap();
            assert_eq!(meta.to_extjson(), json);
        }
        let meta = CollectionMetadata::parse(DOC_EXAMPLE).unwrap();
        assert_eq!(meta.options, doc! { "capped": true, "size": 4096i32 });
        assert_eq!(meta.indexes.len(), 2);
        assert_eq!(
            meta.uuid.as_deref(),
            Some("0679db720f4944de90ae27472664e94a")
        );
        assert_eq!(meta.collection_name, "foo");
        assert_eq!(meta.kind.as_deref(), Some("collection"));
    }

    #[test]
    fn built_metadata_matches_the_worked_example() {
        let meta = CollectionMetadata {
            indexes: vec![doc! { "v": 2i32, "key": { "_id": 1i32 }, "name": "_id_" }],
            collection_name: "c".into(),
            kind: Some("collection".into()),
            ..Default::default()
        };
        assert_eq!(meta.to_extjson(), WORKED_EXAMPLE);
    }

    #[test]
    fn legacy_metadata_parses_and_modernises() {
        let legacy =
            r#"{"options":{},"indexes":[{"v":2,"key":{"_id":1},"name":"_id_","ns":"test.bar"}]}"#;
        let meta = CollectionMetadata::parse(legacy).unwrap();
        assert!(meta.options.is_empty());
        assert_eq!(meta.indexes[0].get_str("ns").unwrap(), "test.bar");
        assert_eq!(
            meta.to_extjson(),
            r#"{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_","ns":"test.bar"}]}"#
        );
    }

    #[test]
    fn views_and_timeseries_are_recognised() {
        let view = CollectionMetadata::parse(
            r#"{"options":{"viewOn":"c","pipeline":[]},"indexes":[],"collectionName":"v","type":"view"}"#,
        )
        .unwrap();
        assert!(view.is_view() && !view.is_timeseries());
        let ts = CollectionMetadata::parse(
            r#"{"options":{"timeseries":{"timeField":"t"}},"indexes":[],"collectionName":"w","type":"timeseries"}"#,
        )
        .unwrap();
        assert!(ts.is_timeseries());
    }

    #[test]
    fn wrong_shapes_are_errors() {
        assert!(CollectionMetadata::parse("").is_err());
        assert!(CollectionMetadata::parse(r#"{"indexes":{}}"#).is_err());
        assert!(CollectionMetadata::parse(r#"{"indexes":[1]}"#).is_err());
        assert!(CollectionMetadata::parse(r#"{"options":[]}"#).is_err());
        assert!(CollectionMetadata::parse(r#"{"uuid":5}"#).is_err());
        let err = CollectionMetadata::parse(r#"{"key":{"{"a":"b"}":1}}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("malformed collection metadata JSON"),
            "{err}"
        );
    }
}
