//! The `create`, `applyOps` and `createIndexes` commands mongorestore sends, built from a
//! collection's metadata (rows 10 and 15 of its command sequence).

use bson::{doc, spec::BinarySubtype, Binary, Bson, Document, Timestamp};
use nightdump_archive::{CollectionMetadata, Namespace};

/// `(major, minor, patch)` of the target server.
pub type Version = (u32, u32, u32);

fn id_index(meta: &CollectionMetadata) -> Option<&Document> {
    meta.indexes
        .iter()
        .find(|ix| ix.get_str("name") == Ok("_id_"))
}

fn is_simple_collation(value: Option<&Bson>) -> bool {
    match value {
        Some(Bson::Document(c)) => c.get_str("locale") == Ok("simple"),
        _ => false,
    }
}

fn index_version(spec: &Document) -> Option<i64> {
    match spec.get("v") {
        Some(Bson::Int32(v)) => Some(i64::from(*v)),
        Some(Bson::Int64(v)) => Some(*v),
        Some(Bson::Double(v)) => Some(*v as i64),
        _ => None,
    }
}

/// `{create: C, <options in order>, idIndex}` with mongorestore's rewrites: `idIndex` only for
/// an unclustered collection that has an `_id_` index (its `v` dropped unless `keep_version`,
/// its `ns` set); `recordIdsReplicated` removed; `autoIndexId` dropped with an `idIndex`, else
/// `false` becomes `true` from 4.0 and disappears from 8.2.
pub fn create_command(
    target: &Namespace,
    meta: Option<&CollectionMetadata>,
    version: Version,
    keep_version: bool,
) -> Document {
    let mut cmd = doc! { "create": target.collection.as_str() };
    let Some(meta) = meta else {
        return cmd;
    };
    let clustered = meta.options.contains_key("clusteredIndex");
    let id_spec = if clustered || meta.is_view() || meta.is_timeseries() {
        None
    } else {
        id_index(meta)
    };
    for (key, value) in &meta.options {
        match key.as_str() {
            "recordIdsReplicated" => {}
            "autoIndexId" if id_spec.is_some() => {}
            "autoIndexId" => {
                if version >= (8, 2, 0) {
                    continue;
                }
                let value = if value == &Bson::Boolean(false) && version >= (4, 0, 0) {
                    Bson::Boolean(true)
                } else {
                    value.clone()
                };
                cmd.insert(key, value);
            }
            _ => {
                cmd.insert(key, value.clone());
            }
        }
    }
    if let Some(spec) = id_spec {
        let mut spec = spec.clone();
        let v1 = index_version(&spec) == Some(1);
        if !keep_version {
            spec.remove("v");
        }
        if v1 && is_simple_collation(spec.get("collation")) {
            spec.remove("collation");
        }
        spec.insert("ns", target.to_string());
        cmd.insert("idIndex", spec);
    }
    cmd
}

/// Turns 32 hex digits into a UUID binary.
pub fn uuid_from_hex(hex_text: &str) -> Option<Binary> {
    let bytes = hex::decode(hex_text).ok()?;
    (bytes.len() == 16).then_some(Binary {
        subtype: BinarySubtype::Uuid,
        bytes,
    })
}

/// The `applyOps` on admin that creates a collection with a given UUID (`--preserve-uuid`).
pub fn apply_ops_create(target: &Namespace, create: Document, uuid: Binary) -> Document {
    doc! {
        "applyOps": [{
            "ts": Timestamp { time: 0, increment: 0 },
            "t": Bson::Null,
            "v": 0,
            "op": "c",
            "ns": format!("{}.$cmd", target.db),
            "o": create,
            "ui": uuid,
        }],
        "bypassDocumentValidation": false,
    }
}

/// The secondary index specs to send for a collection: never `_id_`; `v` dropped, `ns` set,
/// `key` then `partialFilterExpression` first; 2dsphere indexes get a version; when the
/// collection has a non-simple default collation, indexes without one get the simple
/// collation so that they do not inherit the collection's.
pub fn index_specs(target: &Namespace, meta: &CollectionMetadata) -> Vec<Document> {
    let collection_collation = meta.options.get("collation");
    let non_simple_default =
        collection_collation.is_some() && !is_simple_collation(collection_collation);
    let mut out = Vec::new();
    for spec in &meta.indexes {
        if spec.get_str("name") == Ok("_id_") {
            continue;
        }
        let v1 = index_version(spec) == Some(1);
        let mut built = Document::new();
        if let Some(key) = spec.get("key") {
            built.insert("key", key.clone());
        }
        if let Some(partial) = spec.get("partialFilterExpression") {
            built.insert("partialFilterExpression", partial.clone());
        }
        for (k, v) in spec {
            if matches!(k.as_str(), "key" | "partialFilterExpression" | "v" | "ns") {
                continue;
            }
            built.insert(k, v.clone());
        }
        let is_2dsphere = matches!(spec.get("key"), Some(Bson::Document(key))
            if key.values().any(|v| v == &Bson::String("2dsphere".into())));
        if is_2dsphere && !built.contains_key("2dsphereIndexVersion") {
            built.insert("2dsphereIndexVersion", 1);
        }
        if v1 && is_simple_collation(built.get("collation")) {
            built.remove("collation");
        }
        if non_simple_default && !built.contains_key("collation") {
            built.insert("collation", doc! { "locale": "simple" });
        }
        built.insert("ns", target.to_string());
        out.push(built);
    }
    out
}

/// `{createIndexes: C, indexes: [...]}`, plus `ignoreUnknownIndexOptions` from 4.1.9.
pub fn create_indexes_command(
    target: &Namespace,
    specs: Vec<Document>,
    version: Version,
) -> Document {
    let mut cmd = doc! {
        "createIndexes": target.collection.as_str(),
        "indexes": specs.into_iter().map(Bson::Document).collect::<Vec<_>>(),
    };
    if version >= (4, 1, 9) {
        cmd.insert("ignoreUnknownIndexOptions", true);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(options: Document, indexes: Vec<Document>) -> CollectionMetadata {
        CollectionMetadata {
            options,
            indexes,
            ..Default::default()
        }
    }

    #[test]
    fn create_keeps_options_in_order_and_adds_id_index() {
        let m = meta(
            doc! { "capped": true, "size": 4096, "recordIdsReplicated": true, "autoIndexId": true },
            vec![doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" }],
        );
        let ns = Namespace::new("db", "c");
        let cmd = create_command(&ns, Some(&m), (7, 0, 14), false);
        assert_eq!(
            cmd,
            doc! { "create": "c", "capped": true, "size": 4096,
            "idIndex": { "key": { "_id": 1 }, "name": "_id_", "ns": "db.c" } }
        );
        let kept = create_command(&ns, Some(&m), (7, 0, 14), true);
        assert_eq!(
            kept.get_document("idIndex").unwrap().get_i32("v").unwrap(),
            2
        );
    }

    #[test]
    fn clustered_and_auto_index_id_rules() {
        let ns = Namespace::new("db", "c");
        let clustered = meta(
            doc! { "clusteredIndex": { "key": { "_id": 1 }, "unique": true } },
            vec![doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_", "clustered": true }],
        );
        assert!(!create_command(&ns, Some(&clustered), (7, 0, 0), false).contains_key("idIndex"));
        let no_id = meta(doc! { "autoIndexId": false }, vec![]);
        assert_eq!(
            create_command(&ns, Some(&no_id), (7, 0, 0), false),
            doc! { "create": "c", "autoIndexId": true }
        );
        assert_eq!(
            create_command(&ns, Some(&no_id), (8, 2, 0), false),
            doc! { "create": "c" }
        );
        assert_eq!(
            create_command(&ns, None, (7, 0, 0), false),
            doc! { "create": "c" }
        );
    }

    #[test]
    fn index_specs_follow_mongorestore() {
        let ns = Namespace::new("db", "c");
        let m = meta(
            doc! { "collation": { "locale": "en", "strength": 2 } },
            vec![
                doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
                doc! { "v": 2, "unique": true, "key": { "a": 1 }, "name": "a_1",
                "partialFilterExpression": { "a": { "$gt": 1 } } },
                doc! { "v": 2, "key": { "loc": "2dsphere" }, "name": "loc",
                "collation": { "locale": "de" } },
            ],
        );
        let specs = index_specs(&ns, &m);
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs[0],
            doc! { "key": { "a": 1 }, "partialFilterExpression": { "a": { "$gt": 1 } },
            "unique": true, "name": "a_1", "collation": { "locale": "simple" }, "ns": "db.c" }
        );
        assert_eq!(
            specs[1],
            doc! { "key": { "loc": "2dsphere" }, "name": "loc", "collation": { "locale": "de" },
            "2dsphereIndexVersion": 1, "ns": "db.c" }
        );
    }

    #[test]
    fn uuid_hex_decodes() {
        let b = uuid_from_hex("0679db720f4944de90ae27472664e94a").unwrap();
        assert_eq!(b.bytes.len(), 16);
        assert!(uuid_from_hex("zz").is_none());
    }
}
