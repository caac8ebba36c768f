//! What a full dump contains, decided as mongodump decides it: every database but `local`
//! and `config`; admin's users, roles and auth version first; internal `system.*` collections
//! skipped; views as metadata only; time-series as their logical entry plus bucket data.

use bson::{doc, Bson, Document};
use futures_util::{StreamExt, TryStreamExt};
use nightdump_archive::{to_canonical_extjson, PreludeEntry};

use super::Source;
use crate::error::Result;
use crate::namespace::NamespaceFilter;

pub use crate::namespace::NamespaceKind as Kind;

/// One namespace to dump.
#[derive(Debug, Clone)]
pub struct CollectionPlan {
    pub db: String,
    /// The logical name (what listCollections shows, and what the prelude records).
    pub collection: String,
    /// Where the documents are read from: `system.buckets.<name>` for time-series.
    pub data_collection: String,
    pub kind: Kind,
    /// metadata.json text: canonical Extended JSON, exactly as mongodump writes it.
    pub metadata: String,
    pub estimated_documents: u64,
    /// From collStats, when the server tells: sizes the cursor batches.
    pub average_document_size: Option<u64>,
    /// admin's users, roles and auth version: dumped first and serially.
    pub special: bool,
}

impl CollectionPlan {
    pub fn namespace(&self) -> String {
        format!("{}.{}", self.db, self.collection)
    }

    /// A collection or view of the user's, not admin's users, roles and auth version.
    pub fn is_user_data(&self) -> bool {
        !self.special
    }

    pub fn prelude_entry(&self) -> PreludeEntry {
        PreludeEntry {
            db: self.db.clone(),
            collection: self.collection.clone(),
            metadata: self.metadata.clone(),
            size: 0,
            kind: self.kind.as_str().to_string(),
        }
    }
}

/// Catalog requests (listIndexes, collStats) in flight at once during discovery: with
/// thousands of collections, one at a time would cost a round trip each in sequence.
const DISCOVERY_CONCURRENCY: usize = 8;

/// The order mongodump's archive mode gives admin's special collections.
const SPECIAL: &[&str] = &["system.users", "system.roles", "system.version"];

/// Lists everything to dump, in write order: special admin collections, then views, then
/// the rest by descending size (longest task first, so parallel workers finish together).
pub async fn discover(source: &Source, filter: &NamespaceFilter) -> Result<Vec<CollectionPlan>> {
    let admin = source.client.database("admin");
    let reply = admin
        .run_command(doc! { "listDatabases": 1, "nameOnly": true })
        .await
        .map_err(|e| source.error("listDatabases", &e))?;
    let mut dbs: Vec<String> = reply
        .get_array("databases")
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_document()?.get_str("name").ok().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    dbs.sort();
    let mut plans = Vec::new();
    for db in dbs {
        if skip_database(&db) || !filter.may_select_db(&db) {
            continue;
        }
        plans.extend(discover_db(source, &db, filter).await?);
    }
    plans.sort_by(|a, b| {
        let rank = |p: &CollectionPlan| {
            if p.special {
                (
                    0,
                    SPECIAL.iter().position(|s| *s == p.collection).unwrap_or(0),
                )
            } else if p.kind == Kind::View {
                (1, 0)
            } else {
                (2, 0)
            }
        };
        rank(a)
            .cmp(&rank(b))
            .then(b.estimated_documents.cmp(&a.estimated_documents))
            .then_with(|| a.namespace().cmp(&b.namespace()))
    });
    Ok(plans)
}

fn skip_database(db: &str) -> bool {
    db == "local" || db == "config" || db.starts_with("__mdb_internal")
}

/// mongodump's `shouldSkipSystemNamespace`, plus `system.profile` which restore skips anyway.
fn skip_collection(db: &str, name: &str) -> bool {
    if name.contains('$') && !name.contains(".oplog.$") {
        return true;
    }
    if db == "admin" {
        return name == "system.keys" || name == "system.profile";
    }
    name.starts_with("system.") && name != "system.js"
}

async fn discover_db(
    source: &Source,
    db: &str,
    filter: &NamespaceFilter,
) -> Result<Vec<CollectionPlan>> {
    let database = source.client.database(db);
    let cursor = database
        .run_cursor_command(doc! { "listCollections": 1, "filter": {}, "cursor": {} })
        .await
        .map_err(|e| source.error("listCollections", &e))?;
    let specs: Vec<Document> = cursor
        .try_collect()
        .await
        .map_err(|e| source.error("listCollections", &e))?;
    let mut selected = Vec::new();
    for spec in specs {
        let Ok(name) = spec.get_str("name") else {
            continue;
        };
        let kind = match spec.get_str("type").unwrap_or("collection") {
            "view" => Kind::View,
            "timeseries" => Kind::Timeseries,
            "collection" => Kind::Collection,
            _ => continue,
        };
        if skip_collection(db, name) || !filter.selects(db, name) {
            continue;
        }
        selected.push((name.to_string(), kind, spec));
    }
    // Order is kept (`buffered`), so plans come out as the catalog listed them.
    futures_util::stream::iter(selected)
        .map(|(name, kind, spec)| plan_collection(source, db, name, kind, spec))
        .buffered(DISCOVERY_CONCURRENCY)
        .try_collect()
        .await
}

async fn plan_collection(
    source: &Source,
    db: &str,
    name: String,
    kind: Kind,
    spec: Document,
) -> Result<CollectionPlan> {
    let name = name.as_str();
    let data_collection = match kind {
        Kind::Timeseries => format!("system.buckets.{name}"),
        _ => name.to_string(),
    };
    let indexes = match kind {
        Kind::View => Vec::new(),
        _ => list_indexes(source, db, name).await?,
    };
    let (estimated_documents, average_document_size) = match kind {
        Kind::View => (0, None),
        _ => stats(source, db, &data_collection).await?,
    };
    Ok(CollectionPlan {
        db: db.to_string(),
        collection: name.to_string(),
        data_collection,
        kind,
        metadata: metadata_json(&spec, name, kind, indexes),
        estimated_documents,
        average_document_size,
        special: db == "admin" && SPECIAL.contains(&name),
    })
}

async fn list_indexes(source: &Source, db: &str, name: &str) -> Result<Vec<Document>> {
    let database = source.client.database(db);
    match database
        .run_cursor_command(doc! { "listIndexes": name, "cursor": {} })
        .await
    {
        Ok(cursor) => cursor
            .try_collect()
            .await
            .map_err(|e| source.error("listIndexes", &e)),
        // Dropped between listCollections and now: mongodump treats it as "no indexes".
        Err(e) if e.sometimes_namespace_not_found() => Ok(Vec::new()),
        Err(e) => Err(source.error("listIndexes", &e)),
    }
}

/// Document count and average size. `collStats` gives both; where it is refused (views of
/// permissions, newer servers without it) the plain `count` mongodump uses is enough.
async fn stats(source: &Source, db: &str, name: &str) -> Result<(u64, Option<u64>)> {
    let reply = source
        .client
        .database(db)
        .run_command(doc! { "collStats": name })
        .await;
    if let Ok(r) = reply {
        let number = |key: &str| match r.get(key) {
            Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
            Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
            Some(Bson::Double(n)) if *n >= 0.0 => Some(*n as u64),
            _ => None,
        };
        if let Some(count) = number("count") {
            return Ok((count, number("avgObjSize").filter(|s| *s > 0)));
        }
    }
    Ok((count(source, db, name).await?, None))
}

async fn count(source: &Source, db: &str, name: &str) -> Result<u64> {
    let reply = source
        .client
        .database(db)
        .run_command(doc! { "count": name })
        .await;
    match reply {
        Ok(r) => Ok(match r.get("n") {
            Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Bson::Double(n)) if *n >= 0.0 => *n as u64,
            _ => 0,
        }),
        Err(e) if e.sometimes_namespace_not_found() => Ok(0),
        Err(e) => Err(source.error("count", &e)),
    }
}

/// The metadata.json document: `options` (omitted when empty), `indexes`, `uuid` (32 hex),
/// `collectionName`, `type`, in that order, as canonical Extended JSON.
fn metadata_json(spec: &Document, name: &str, kind: Kind, indexes: Vec<Document>) -> String {
    let mut meta = Document::new();
    if let Ok(options) = spec.get_document("options") {
        if !options.is_empty() {
            meta.insert("options", options.clone());
        }
    }
    meta.insert(
        "indexes",
        indexes.into_iter().map(Bson::Document).collect::<Vec<_>>(),
    );
    if let Some(Bson::Binary(uuid)) = spec.get_document("info").ok().and_then(|i| i.get("uuid")) {
        meta.insert("uuid", hex::encode(&uuid.bytes));
    }
    meta.insert("collectionName", name);
    meta.insert("type", kind.as_str());
    to_canonical_extjson(&meta)
}

trait NamespaceNotFound {
    fn sometimes_namespace_not_found(&self) -> bool;
}

impl NamespaceNotFound for mongodb::error::Error {
    fn sometimes_namespace_not_found(&self) -> bool {
        matches!(self.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_namespaces_are_skipped_like_mongodump() {
        assert!(skip_collection("shop", "system.profile"));
        assert!(skip_collection("shop", "system.views"));
        assert!(skip_collection("shop", "system.buckets.weather"));
        assert!(!skip_collection("shop", "system.js"));
        assert!(!skip_collection("admin", "system.users"));
        assert!(!skip_collection("admin", "system.version"));
        assert!(skip_collection("admin", "system.keys"));
        assert!(skip_collection("shop", "a$b"));
        assert!(!skip_collection("shop", "orders"));
        assert!(skip_database("local") && skip_database("config"));
        assert!(skip_database("__mdb_internal_x"));
        assert!(!skip_database("admin"));
    }

    #[test]
    fn metadata_has_mongodumps_key_order() {
        let spec = doc! {
            "name": "c", "type": "collection",
            "options": { "capped": true, "size": 4096 },
            "info": { "readOnly": false, "uuid": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![0x06; 16] } },
        };
        let json = metadata_json(
            &spec,
            "c",
            Kind::Collection,
            vec![doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" }],
        );
        assert_eq!(
            json,
            r#"{"options":{"capped":true,"size":{"$numberInt":"4096"}},"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],"uuid":"06060606060606060606060606060606","collectionName":"c","type":"collection"}"#
        );
        let view = doc! { "name": "v", "type": "view", "options": { "viewOn": "c", "pipeline": [] }, "info": { "readOnly": true } };
        assert_eq!(
            metadata_json(&view, "v", Kind::View, vec![]),
            r#"{"options":{"viewOn":"c","pipeline":[]},"indexes":[],"collectionName":"v","type":"view"}"#
        );
    }
}
