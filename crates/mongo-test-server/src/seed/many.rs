//! `many:<n>`: a deployment of many small collections, the shape that makes per-collection
//! costs (catalog round trips, index listing, prelude and manifest size) show.
//!
//! Collections `c00000`, `c00001`, … spread over databases of at most 1000 collections each
//! (`many_000`, `many_001`, …), each with [`DOCS_PER_COLLECTION`] small documents and one
//! secondary index on `k`.

use bson::RawDocumentBuf;

use super::raw::RawWriter;

pub const DOCS_PER_COLLECTION: i32 = 3;
pub const COLLECTIONS_PER_DATABASE: u32 = 1000;

/// The `(database, collection)` of collection number `i`.
pub fn namespace(i: u32) -> (String, String) {
    (
        format!("many_{:03}", i / COLLECTIONS_PER_DATABASE),
        format!("c{i:05}"),
    )
}

/// Per collection: `create`, one `insert` and one `createIndexes`, in that order.
pub(crate) fn commands(collections: u32) -> impl Iterator<Item = (String, RawDocumentBuf)> + Send {
    (0..collections).flat_map(|i| {
        let (db, coll) = namespace(i);
        let mut create = RawWriter::new();
        create.str("create", &coll);
        let mut insert = RawWriter::new();
        insert.str("insert", &coll);
        insert.start_array("documents");
        for d in 0..DOCS_PER_COLLECTION {
            insert.start_doc("");
            insert.i32("_id", d);
            insert.i32("k", d * 7 % 5);
            insert.str("name", &format!("{coll}-{d}"));
            insert.end();
        }
        insert.end();
        let mut index = RawWriter::new();
        index.str("createIndexes", &coll);
        index.start_array("indexes");
        index.start_doc("");
        index.start_doc("key");
        index.i32("k", 1);
        index.end();
        index.str("name", "k_1");
        index.end();
        index.end();
        [
            (db.clone(), create.finish()),
            (db.clone(), insert.finish()),
            (db, index.finish()),
        ]
    })
}
