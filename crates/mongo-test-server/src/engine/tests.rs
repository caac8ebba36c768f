//! Engine behaviour through `execute`, command family by command family.

use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Bson, Document, RawDocumentBuf};

use super::{Engine, EngineConfig, OplogLimits};

fn standalone() -> Arc<Engine> {
    Engine::new(EngineConfig::default())
}

fn replica() -> Arc<Engine> {
    Engine::new(EngineConfig {
        replica_set: Some("rs0".into()),
    })
}

async fn run(e: &Engine, db: &str, cmd: Document) -> Document {
    let raw = RawDocumentBuf::from_document(&cmd).unwrap();
    match e.execute(db, &raw).await {
        Ok(r) => r.to_document().unwrap(),
        Err(err) => panic!("{cmd} failed: {err}"),
    }
}

async fn fail(e: &Engine, db: &str, cmd: Document) -> crate::CommandError {
    let raw = RawDocumentBuf::from_document(&cmd).unwrap();
    match e.execute(db, &raw).await {
        Ok(r) => panic!("{cmd} unexpectedly succeeded: {:?}", r.to_document()),
        Err(err) => err,
    }
}

fn batch(reply: &Document) -> Vec<Document> {
    let c = reply.get_document("cursor").unwrap();
    let b = c
        .get_array("firstBatch")
        .or_else(|_| c.get_array("nextBatch"))
        .unwrap();
    b.iter().map(|d| d.as_document().unwrap().clone()).collect()
}

fn cursor_id(reply: &Document) -> i64 {
    reply.get_document("cursor").unwrap().get_i64("id").unwrap()
}

/// Every document of a find, following getMores to the end.
async fn drain(
    e: &Engine,
    db: &str,
    coll: &str,
    find: Document,
    get_more_batch: Option<i32>,
) -> (Vec<Document>, usize) {
    let first = run(e, db, find).await;
    let mut docs = batch(&first);
    let mut id = cursor_id(&first);
    let mut rounds = 1;
    while id != 0 {
        let mut gm = doc! {"getMore": id, "collection": coll};
        if let Some(b) = get_more_batch {
            gm.insert("batchSize", b);
        }
        let r = run(e, db, gm).await;
        docs.extend(batch(&r));
        id = cursor_id(&r);
        rounds += 1;
    }
    (docs, rounds)
}

#[tokio::test]
async fn insert_generates_leading_id_and_reports_duplicates() {
    let e = standalone();
    let r = run(
        &e,
        "db",
        doc! {"insert": "c", "documents": [{"a": 1}, {"b": 2, "_id": 7}]},
    )
    .await;
    assert_eq!(r, doc! {"n": 2, "ok": 1.0});
    let (docs, _) = drain(&e, "db", "c", doc! {"find": "c"}, None).await;
    assert_eq!(docs.len(), 2);
    assert!(matches!(docs[0].iter().next(), Some((k, Bson::ObjectId(_))) if k == "_id"));
    assert_eq!(docs[1], doc! {"_id": 7, "b": 2});

    // Ordered stops at the first error; unordered goes on.
    let r = run(
        &e,
        "db",
        doc! {"insert": "c", "documents": [{"_id": 7}, {"_id": 8}]},
    )
    .await;
    assert_eq!(r.get_i32("n").unwrap(), 0);
    let we = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(we.get_i32("index").unwrap(), 0);
    assert_eq!(we.get_i32("code").unwrap(), 11000);
    assert_eq!(
        we.get_str("errmsg").unwrap(),
        "E11000 duplicate key error collection: db.c index: _id_ dup key: { _id: 7 }"
    );
    assert_eq!(we.get_document("keyValue").unwrap(), &doc! {"_id": 7});
    let r = run(
        &e,
        "db",
        doc! {"insert": "c", "documents": [{"_id": 7}, {"_id": 8}], "ordered": false},
    )
    .await;
    assert_eq!(r.get_i32("n").unwrap(), 1);
}

#[tokio::test]
async fn find_filters_sorts_projects_and_limits() {
    let e = standalone();
    let docs: Vec<Document> = (0..20)
        .map(|i| doc! {"_id": i, "v": (i * 7) % 20, "odd": i % 2 == 1, "sub": {"x": i}})
        .collect();
    run(&e, "db", doc! {"insert": "c", "documents": docs}).await;
    let (r, _) = drain(&e, "db", "c", doc! {"find": "c", "filter": {"v": {"$gte": 10_i64, "$lt": 15.0}, "odd": true}, "sort": {"v": -1}, "projection": {"v": 1, "_id": 0}}, None).await;
    assert_eq!(r, vec![doc! {"v": 13}, doc! {"v": 11}]);
    let (r, _) = drain(&e, "db", "c", doc! {"find": "c", "filter": {"$or": [{"sub.x": 3}, {"_id": {"$in": [5, 6]}}]}, "skip": 1, "limit": 1}, None).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get_i32("_id").unwrap(), 5);
    let (r, _) = drain(
        &e,
        "db",
        "c",
        doc! {"find": "c", "sort": {"$natural": -1}, "limit": 2},
        None,
    )
    .await;
    assert_eq!(
        r.iter()
            .map(|d| d.get_i32("_id").unwrap())
            .collect::<Vec<_>>(),
        [19, 18]
    );
    let (r, _) = drain(
        &e,
        "db",
        "c",
        doc! {"find": "c", "filter": {"_id": 4}},
        None,
    )
    .await;
    assert_eq!(r.len(), 1);
    let r = run(&e, "db", doc! {"count": "c", "query": {"odd": false}}).await;
    assert_eq!(r, doc! {"n": 10, "ok": 1.0});
    let r = run(&e, "db", doc! {"count": "c"}).await;
    assert_eq!(r.get_i32("n").unwrap(), 20);
    let r = run(&e, "db", doc! {"find": "missing"}).await;
    assert_eq!(cursor_id(&r), 0);
    assert_eq!(
        r.get_document("cursor").unwrap().get_str("ns").unwrap(),
        "db.missing"
    );
    let err = fail(&e, "db", doc! {"find": "c", "filter": {"a": {"$bogus": 1}}}).await;
    assert_eq!((err.code, err.code_name), (2, "BadValue"));
}

#[tokio::test]
async fn cursors_page_through_many_get_mores_without_repeats() {
    let e = standalone();
    let docs: Vec<Document> = (0..1000).map(|i| doc! {"_id": i}).collect();
    run(&e, "db", doc! {"insert": "c", "documents": docs}).await;
    let first = run(&e, "db", doc! {"find": "c"}).await;
    assert_eq!(batch(&first).len(), 101);
    let (all, rounds) = drain(&e, "db", "c", doc! {"find": "c", "batchSize": 7}, Some(7)).await;
    assert_eq!(all.len(), 1000);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, d)| d.get_i32("_id").unwrap() == i as i32));
    assert_eq!(rounds, 1000 / 7 + 1);

    // Documents inserted mid-scan are seen at most once.
    let r = run(&e, "db", doc! {"find": "c", "batchSize": 10}).await;
    let id = cursor_id(&r);
    run(&e, "db", doc! {"insert": "c", "documents": [{"_id": 5000}]}).await;
    let r = run(&e, "db", doc! {"getMore": id, "collection": "c"}).await;
    assert_eq!(cursor_id(&r), 0);
    assert_eq!(batch(&r).len(), 991);

    let err = fail(&e, "db", doc! {"getMore": id, "collection": "c"}).await;
    assert_eq!((err.code, err.code_name), (43, "CursorNotFound"));
    assert_eq!(err.errmsg, format!("cursor id {id} not found"));

    let r = run(&e, "db", doc! {"find": "c", "batchSize": 2}).await;
    let id = cursor_id(&r);
    let err = fail(&e, "db", doc! {"getMore": id, "collection": "other"}).await;
    assert_eq!(err.code, 13);
    let r = run(
        &e,
        "db",
        doc! {"killCursors": "c", "cursors": [id, 12345_i64]},
    )
    .await;
    assert_eq!(
        r,
        doc! {"cursorsKilled": [id], "cursorsNotFound": [12345_i64], "cursorsAlive": [], "cursorsUnknown": [], "ok": 1.0}
    );

    let r = run(&e, "db", doc! {"find": "c", "batchSize": 2}).await;
    let id = cursor_id(&r);
    run(&e, "db", doc! {"drop": "c"}).await;
    let err = fail(&e, "db", doc! {"getMore": id, "collection": "c"}).await;
    assert_eq!((err.code, err.code_name), (175, "QueryPlanKilled"));

    let r = run(&e, "db", doc! {"find": "none", "singleBatch": true}).await;
    assert_eq!(cursor_id(&r), 0);
}

#[tokio::test]
async fn near_16mib_document_goes_out_alone() {
    let e = standalone();
    let big = "x".repeat(16 * 1024 * 1024 - 40);
    run(&e, "db", doc! {"insert": "c", "documents": [{"_id": 0, "s": "small"}, {"_id": 1, "s": big.clone()}, {"_id": 2}]}).await;
    let r = run(&e, "db", doc! {"find": "c"}).await;
    let b = batch(&r);
    assert_eq!(
        b.len(),
        1,
        "the big document must not share the first batch"
    );
    let r = run(&e, "db", doc! {"getMore": cursor_id(&r), "collection": "c"}).await;
    let b = batch(&r);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].get_str("s").unwrap().len(), big.len());
    let r = run(&e, "db", doc! {"getMore": cursor_id(&r), "collection": "c"}).await;
    assert_eq!(batch(&r), vec![doc! {"_id": 2}]);
    assert_eq!(cursor_id(&r), 0);
}

#[tokio::test]
async fn create_keeps_options_verbatim_and_lists_them() {
    let e = standalone();
    run(&e, "db", doc! {"create": "capped", "capped": true, "size": 4096, "max": 10, "writeConcern": {"w": "majority"}, "lsid": {"id": 1}}).await;
    run(&e, "db", doc! {"create": "valid", "validator": {"a": {"$exists": true}}, "validationLevel": "strict", "validationAction": "error"}).await;
    run(
        &e,
        "db",
        doc! {"create": "fr", "collation": {"locale": "fr", "strength": 2}},
    )
    .await;
    run(
        &e,
        "db",
        doc! {"create": "clus", "clusteredIndex": {"key": {"_id": 1}, "unique": true}},
    )
    .await;
    run(
        &e,
        "db",
        doc! {"create": "view", "viewOn": "valid", "pipeline": [{"$match": {"a": 1}}]},
    )
    .await;
    run(
        &e,
        "db",
        doc! {"create": "pre", "changeStreamPreAndPostImages": {"enabled": true}},
    )
    .await;

    // Same options again is fine; different options are NamespaceExists.
    run(
        &e,
        "db",
        doc! {"create": "capped", "capped": true, "size": 4096, "max": 10},
    )
    .await;
    let err = fail(&e, "db", doc! {"create": "capped"}).await;
    assert_eq!(
        (err.code, err.code_name, err.errmsg.as_str()),
        (
            48,
            "NamespaceExists",
            "Collection db.capped already exists."
        )
    );

    let r = run(
        &e,
        "db",
        doc! {"listCollections": 1, "filter": {}, "cursor": {}},
    )
    .await;
    assert_eq!(
        r.get_document("cursor").unwrap().get_str("ns").unwrap(),
        "db.$cmd.listCollections"
    );
    let entries = batch(&r);
    let by = |n: &str| {
        entries
            .iter()
            .find(|d| d.get_str("name").unwrap() == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by("capped").get_document("options").unwrap(),
        &doc! {"capped": true, "size": 4096, "max": 10}
    );
    let capped = by("capped");
    assert_eq!(
        capped.keys().collect::<Vec<_>>(),
        ["name", "type", "options", "info", "idIndex"]
    );
    assert_eq!(
        capped.get_document("idIndex").unwrap(),
        &doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"}
    );
    let info = capped.get_document("info").unwrap();
    assert!(!info.get_bool("readOnly").unwrap());
    assert!(
        matches!(info.get("uuid"), Some(Bson::Binary(b)) if b.subtype == bson::spec::BinarySubtype::Uuid && b.bytes.len() == 16)
    );
    assert_eq!(
        by("valid").get_document("options").unwrap(),
        &doc! {"validator": {"a": {"$exists": true}}, "validationLevel": "strict", "validationAction": "error"}
    );
    let full = doc! {"locale": "fr", "caseLevel": false, "caseFirst": "off", "strength": 2, "numericOrdering": false, "alternate": "non-ignorable", "maxVariable": "punct", "normalization": false, "backwards": false, "version": "57.1"};
    assert_eq!(
        by("fr").get_document("options").unwrap(),
        &doc! {"collation": full.clone()}
    );
    assert_eq!(
        by("fr").get_document("idIndex").unwrap(),
        &doc! {"v": 2, "key": {"_id": 1}, "name": "_id_", "collation": full}
    );
    let clus = by("clus");
    assert_eq!(
        clus.get_document("options").unwrap(),
        &doc! {"clusteredIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_", "unique": true}}
    );
    assert!(!clus.contains_key("idIndex"));
    let view = by("view");
    assert_eq!(
        view,
        doc! {"name": "view", "type": "view", "options": {"viewOn": "valid", "pipeline": [{"$match": {"a": 1}}]}, "info": {"readOnly": true}}
    );
    assert_eq!(by("system.views").get_str("type").unwrap(), "collection");
    assert_eq!(
        by("pre").get_document("options").unwrap(),
        &doc! {"changeStreamPreAndPostImages": {"enabled": true}}
    );

    let r = run(&e, "db", doc! {"listCollections": 1, "filter": {"name": "view"}, "nameOnly": true, "authorizedCollections": true, "cursor": {}}).await;
    assert_eq!(batch(&r), vec![doc! {"name": "view", "type": "view"}]);
    let r = run(
        &e,
        "db",
        doc! {"listCollections": 1, "filter": {"type": "view"}, "cursor": {}},
    )
    .await;
    assert_eq!(batch(&r).len(), 1);

    let err = fail(&e, "db", doc! {"drop": "nope"}).await;
    assert_eq!((err.code, err.errmsg.as_str()), (26, "ns not found"));
    run(&e, "db", doc! {"drop": "view"}).await;
    let r = run(&e, "db", doc! {"find": "system.views"}).await;
    assert!(batch(&r).is_empty());
}

#[tokio::test]
async fn views_and_aggregation() {
    let e = standalone();
    let docs: Vec<Document> = (0..10)
        .map(|i| doc! {"_id": i, "g": i % 3, "n": i})
        .collect();
    run(&e, "db", doc! {"insert": "c", "documents": docs}).await;
    run(
        &e,
        "db",
        doc! {"create": "big", "viewOn": "c", "pipeline": [{"$match": {"n": {"$gte": 5}}}]},
    )
    .await;
    run(
        &e,
        "db",
        doc! {"create": "bigger", "viewOn": "big", "pipeline": [{"$match": {"n": {"$gte": 8}}}]},
    )
    .await;
    let (r, _) = drain(&e, "db", "bigger", doc! {"find": "bigger"}, None).await;
    assert_eq!(
        r.iter()
            .map(|d| d.get_i32("_id").unwrap())
            .collect::<Vec<_>>(),
        [8, 9]
    );
    let r = run(&e, "db", doc! {"count": "big"}).await;
    assert_eq!(r.get_i32("n").unwrap(), 5);
    let r = run(&e, "db", doc! {"aggregate": "c", "pipeline": [{"$match": {}}, {"$group": {"_id": 1, "n": {"$sum": 1}}}], "cursor": {}}).await;
    assert_eq!(batch(&r), vec![doc! {"_id": 1, "n": 10}]);
    let r = run(&e, "db", doc! {"aggregate": "c", "pipeline": [{"$group": {"_id": "$g", "total": {"$sum": "$n"}}}, {"$sort": {"_id": 1}}], "cursor": {}}).await;
    assert_eq!(
        batch(&r),
        vec![
            doc! {"_id": 0, "total": 18},
            doc! {"_id": 1, "total": 12},
            doc! {"_id": 2, "total": 15}
        ]
    );
    let r = run(&e, "db", doc! {"aggregate": "big", "pipeline": [{"$sort": {"n": -1}}, {"$skip": 1}, {"$limit": 2}, {"$project": {"n": 1, "_id": 0}}], "cursor": {}}).await;
    assert_eq!(batch(&r), vec![doc! {"n": 8}, doc! {"n": 7}]);
    let r = run(
        &e,
        "db",
        doc! {"aggregate": "c", "pipeline": [{"$count": "total"}], "cursor": {}},
    )
    .await;
    assert_eq!(batch(&r), vec![doc! {"total": 10}]);
    let r = run(&e, "db", doc! {"aggregate": "c", "pipeline": [{"$collStats": {"count": {}, "storageStats": {}}}], "cursor": {}}).await;
    let s = &batch(&r)[0];
    assert_eq!(s.get_i64("count").unwrap(), 10);
    assert_eq!(
        s.get_document("storageStats")
            .unwrap()
            .get_i64("count")
            .unwrap(),
        10
    );
    let err = fail(
        &e,
        "db",
        doc! {"aggregate": "c", "pipeline": [{"$nope": {}}], "cursor": {}},
    )
    .await;
    assert_eq!(err.code, 40324);
    let err = fail(&e, "db", doc! {"insert": "big", "documents": [{"a": 1}]}).await;
    assert_eq!(err.code, 166);
}

#[tokio::test]
async fn indexes_list_create_conflict_and_drop() {
    let e = standalone();
    let err = fail(&e, "db", doc! {"listIndexes": "c", "cursor": {}}).await;
    assert_eq!(
        (err.code, err.code_name, err.errmsg.as_str()),
        (26, "NamespaceNotFound", "ns does not exist: db.c")
    );
    let r = run(&e, "db", doc! {"createIndexes": "c", "indexes": [
        {"key": {"a": 1}, "name": "a_1", "unique": true, "partialFilterExpression": {"a": {"$exists": true}}},
        {"key": {"ts": 1}, "name": "ts_1", "expireAfterSeconds": 3600},
        {"key": {"content": "text"}, "name": "content_text"},
        {"key": {"loc": "2dsphere"}, "name": "loc_2dsphere"},
        {"key": {"h": "hashed"}, "name": "h_hashed", "hidden": true},
        {"key": {"$**": 1}, "name": "$**_1", "wildcardProjection": {"x": 1}},
        {"key": {"s": 1}, "name": "s_1", "sparse": true, "collation": {"locale": "en"}},
    ], "ignoreUnknownIndexOptions": true, "ns": "db.c"}).await;
    assert_eq!(
        r,
        doc! {"numIndexesBefore": 1, "numIndexesAfter": 8, "createdCollectionAutomatically": true, "ok": 1.0}
    );
    let r = run(&e, "db", doc! {"listIndexes": "c", "cursor": {}}).await;
    let ix = batch(&r);
    assert_eq!(ix[0], doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"});
    assert_eq!(
        ix[1],
        doc! {"v": 2, "key": {"a": 1}, "name": "a_1", "unique": true, "partialFilterExpression": {"a": {"$exists": true}}}
    );
    assert_eq!(
        ix[2],
        doc! {"v": 2, "key": {"ts": 1}, "name": "ts_1", "expireAfterSeconds": 3600}
    );
    assert_eq!(
        ix[3],
        doc! {"v": 2, "key": {"_fts": "text", "_ftsx": 1}, "name": "content_text", "weights": {"content": 1}, "default_language": "english", "language_override": "language", "textIndexVersion": 3}
    );
    assert_eq!(
        ix[4],
        doc! {"v": 2, "key": {"loc": "2dsphere"}, "name": "loc_2dsphere", "2dsphereIndexVersion": 3}
    );
    assert_eq!(
        ix[5],
        doc! {"v": 2, "key": {"h": "hashed"}, "name": "h_hashed", "hidden": true}
    );
    assert_eq!(
        ix[7]
            .get_document("collation")
            .unwrap()
            .get_str("locale")
            .unwrap(),
        "en"
    );

    // The unique partial index is enforced.
    run(
        &e,
        "db",
        doc! {"insert": "c", "documents": [{"_id": 1, "a": 5}]},
    )
    .await;
    let r = run(
        &e,
        "db",
        doc! {"insert": "c", "documents": [{"_id": 2, "a": 5}]},
    )
    .await;
    let we = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(
        we.get_str("errmsg").unwrap(),
        "E11000 duplicate key error collection: db.c index: a_1 dup key: { a: 5 }"
    );

    let r = run(&e, "db", doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1", "unique": true, "partialFilterExpression": {"a": {"$exists": true}}}]}).await;
    assert_eq!(r.get_str("note").unwrap(), "all indexes already exist");
    let err = fail(
        &e,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"b": 1}, "name": "a_1"}]},
    )
    .await;
    assert_eq!((err.code, err.code_name), (86, "IndexKeySpecsConflict"));
    let err = fail(
        &e,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1"}]},
    )
    .await;
    assert_eq!((err.code, err.code_name), (85, "IndexOptionsConflict"));
    let err = fail(&e, "db", doc! {"createIndexes": "c", "indexes": [{"key": {"ts": 1}, "name": "other", "expireAfterSeconds": 3600}]}).await;
    assert_eq!(
        (err.code, err.errmsg.as_str()),
        (85, "Index already exists with a different name: ts_1")
    );

    let r = run(
        &e,
        "db",
        doc! {"collMod": "c", "index": {"name": "ts_1", "hidden": true}},
    )
    .await;
    assert_eq!(r, doc! {"hidden_old": false, "hidden_new": true, "ok": 1.0});
    let r = run(&e, "db", doc! {"dropIndexes": "c", "index": "ts_1"}).await;
    assert_eq!(r, doc! {"nIndexesWas": 8, "ok": 1.0});
    let err = fail(&e, "db", doc! {"dropIndexes": "c", "index": "ts_1"}).await;
    assert_eq!(
        (err.code, err.errmsg.as_str()),
        (27, "index not found with name [ts_1]")
    );
    run(&e, "db", doc! {"dropIndexes": "c", "index": "*"}).await;
    let r = run(&e, "db", doc! {"listIndexes": "c", "cursor": {}}).await;
    assert_eq!(batch(&r).len(), 1);
}

#[tokio::test]
async fn updates_upserts_and_deletes() {
    let e = standalone();
    run(
        &e,
        "db",
        doc! {"insert": "c", "documents": [{"_id": 1, "n": 1, "tags": ["a"]}, {"_id": 2, "n": 2}]},
    )
    .await;
    let r = run(&e, "db", doc! {"update": "c", "updates": [
        {"q": {"_id": 1}, "u": {"$set": {"x.y": 1}, "$inc": {"n": 10}, "$push": {"tags": {"$each": ["b", "c"]}}}},
        {"q": {}, "u": {"$set": {"all": true}}, "multi": true},
        {"q": {"_id": 2}, "u": {"$set": {"n": 2}}},
        {"q": {"_id": 9}, "u": {"$set": {"n": 9}, "$setOnInsert": {"fresh": true}}, "upsert": true},
        {"q": {"_id": 2}, "u": {"replaced": 1}},
    ]}).await;
    assert_eq!(
        r,
        doc! {"n": 6, "nModified": 4, "upserted": [{"index": 3, "_id": 9}], "ok": 1.0}
    );
    let (docs, _) = drain(&e, "db", "c", doc! {"find": "c"}, None).await;
    assert_eq!(
        docs[0],
        doc! {"_id": 1, "n": 11, "tags": ["a", "b", "c"], "x": {"y": 1}, "all": true}
    );
    assert_eq!(docs[1], doc! {"_id": 2, "replaced": 1});
    assert_eq!(docs[2], doc! {"_id": 9, "n": 9, "fresh": true});

    let r = run(
        &e,
        "db",
        doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$inc": {"tags": 1}}}]},
    )
    .await;
    let we = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(we.get_i32("code").unwrap(), 14);
    let r = run(
        &e,
        "db",
        doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$set": {"_id": 5}}}]},
    )
    .await;
    assert_eq!(
        r.get_array("writeErrors").unwrap()[0]
            .as_document()
            .unwrap()
            .get_i32("code")
            .unwrap(),
        66
    );

    let r = run(
        &e,
        "db",
        doc! {"findAndModify": "c", "query": {"_id": 9}, "update": {"$inc": {"n": 1}}, "new": true},
    )
    .await;
    assert_eq!(r.get_document("value").unwrap().get_i32("n").unwrap(), 10);
    assert_eq!(
        r.get_document("lastErrorObject").unwrap(),
        &doc! {"n": 1, "updatedExisting": true}
    );

    let r = run(
        &e,
        "db",
        doc! {"delete": "c", "deletes": [{"q": {"all": true}, "limit": 1}]},
    )
    .await;
    assert_eq!(r, doc! {"n": 1, "ok": 1.0});
    let r = run(
        &e,
        "db",
        doc! {"delete": "c", "deletes": [{"q": {}, "limit": 0}]},
    )
    .await;
    assert_eq!(r, doc! {"n": 2, "ok": 1.0});
}

#[tokio::test]
async fn validators_reject_unless_bypassed() {
    let e = standalone();
    run(
        &e,
        "db",
        doc! {"create": "v", "validator": {"a": {"$exists": true}}},
    )
    .await;
    let r = run(
        &e,
        "db",
        doc! {"insert": "v", "documents": [{"_id": 1}, {"_id": 2, "a": 1}], "ordered": false},
    )
    .await;
    assert_eq!(r.get_i32("n").unwrap(), 1);
    let we = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(
        (we.get_i32("code").unwrap(), we.get_str("errmsg").unwrap()),
        (121, "Document failed validation")
    );
    assert_eq!(
        we.get_document("errInfo")
            .unwrap()
            .get_i32("failingDocumentId")
            .unwrap(),
        1
    );
    let r = run(
        &e,
        "db",
        doc! {"insert": "v", "documents": [{"_id": 1}], "bypassDocumentValidation": true},
    )
    .await;
    assert_eq!(r, doc! {"n": 1, "ok": 1.0});
}

#[tokio::test]
async fn databases_are_listed_and_dropped() {
    let e = standalone();
    run(&e, "app", doc! {"insert": "c", "documents": [{"a": 1}]}).await;
    let r = run(
        &e,
        "admin",
        doc! {"listDatabases": 1, "filter": {}, "nameOnly": true},
    )
    .await;
    let names: Vec<_> = r
        .get_array("databases")
        .unwrap()
        .iter()
        .map(|d| {
            d.as_document()
                .unwrap()
                .get_str("name")
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["admin", "app"]);
    let r = run(
        &e,
        "admin",
        doc! {"listDatabases": 1, "filter": {"name": "app"}},
    )
    .await;
    let d = r.get_array("databases").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert!(d.get_i64("sizeOnDisk").unwrap() > 0);
    assert!(!d.get_bool("empty").unwrap());
    assert!(r.get_i64("totalSize").unwrap() > 0);
    let err = fail(&e, "app", doc! {"listDatabases": 1}).await;
    assert_eq!(err.code, 13);
    run(&e, "app", doc! {"dropDatabase": 1}).await;
    let r = run(&e, "admin", doc! {"listDatabases": 1, "nameOnly": true}).await;
    assert_eq!(r.get_array("databases").unwrap().len(), 1);
    let err = fail(&e, "app", doc! {"frobnicate": 1}).await;
    assert_eq!(
        (err.code, err.errmsg.as_str()),
        (59, "no such command: 'frobnicate'")
    );
}

#[tokio::test]
async fn timeseries_buckets_and_unpacks() {
    let e = standalone();
    run(&e, "db", doc! {"create": "ts", "timeseries": {"timeField": "t", "metaField": "m"}, "expireAfterSeconds": 86400}).await;
    let t0 = bson::DateTime::from_millis(1_700_000_000_000);
    let t1 = bson::DateTime::from_millis(1_700_000_010_000);
    run(&e, "db", doc! {"insert": "ts", "documents": [{"t": t0, "m": "a", "v": 1}, {"t": t1, "m": "a", "v": 2}, {"t": t0, "m": "b", "v": 3}]}).await;
    let r = run(&e, "db", doc! {"listCollections": 1, "cursor": {}}).await;
    let entries = batch(&r);
    let ts = entries
        .iter()
        .find(|d| d.get_str("name").unwrap() == "ts")
        .unwrap();
    assert_eq!(ts.get_str("type").unwrap(), "timeseries");
    assert_eq!(
        ts.get_document("options").unwrap(),
        &doc! {"expireAfterSeconds": 86400_i64, "timeseries": {"timeField": "t", "metaField": "m", "granularity": "seconds", "bucketMaxSpanSeconds": 3600}}
    );
    let b = entries
        .iter()
        .find(|d| d.get_str("name").unwrap() == "system.buckets.ts")
        .unwrap();
    let bopts = b.get_document("options").unwrap();
    assert_eq!(
        bopts.keys().collect::<Vec<_>>(),
        [
            "validator",
            "clusteredIndex",
            "expireAfterSeconds",
            "timeseries"
        ]
    );
    let (buckets, _) = drain(
        &e,
        "db",
        "system.buckets.ts",
        doc! {"find": "system.buckets.ts"},
        None,
    )
    .await;
    assert_eq!(buckets.len(), 2);
    let b0 = &buckets[0];
    assert_eq!(
        b0.keys().collect::<Vec<_>>(),
        ["_id", "control", "meta", "data"]
    );
    assert_eq!(b0.get_str("meta").unwrap(), "a");
    assert_eq!(
        b0.get_document("data").unwrap().get_document("v").unwrap(),
        &doc! {"0": 1, "1": 2}
    );
    assert_eq!(
        b0.get_document("control")
            .unwrap()
            .get_document("max")
            .unwrap()
            .get_i32("v")
            .unwrap(),
        2
    );
    let (ms, _) = drain(
        &e,
        "db",
        "ts",
        doc! {"find": "ts", "filter": {"m": "a"}},
        None,
    )
    .await;
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[1].get_datetime("t").unwrap(), &t1);
    assert!(ms[0].get_object_id("_id").is_ok());
    let r = run(&e, "db", doc! {"listIndexes": "ts", "cursor": {}}).await;
    assert_eq!(
        batch(&r),
        vec![doc! {"v": 2, "key": {"m": 1, "t": 1}, "name": "m_1_t_1"}]
    );

    // Buckets inserted directly (as mongorestore does) read back as measurements.
    let e2 = standalone();
    run(
        &e2,
        "db",
        doc! {"create": "ts", "timeseries": {"timeField": "t", "metaField": "m"}},
    )
    .await;
    run(
        &e2,
        "db",
        doc! {"insert": "system.buckets.ts", "documents": buckets},
    )
    .await;
    let (ms2, _) = drain(&e2, "db", "ts", doc! {"find": "ts"}, None).await;
    assert_eq!(ms2.len(), 3);
}

#[tokio::test]
async fn oplog_records_every_write_in_mongod_shape() {
    let e = replica();
    run(&e, "db", doc! {"create": "c"}).await;
    run(
        &e,
        "db",
        doc! {"insert": "c", "documents": [{"_id": 1, "a": 1}]},
    )
    .await;
    run(
        &e,
        "db",
        doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$set": {"a": 2}}}]},
    )
    .await;
    run(
        &e,
        "db",
        doc! {"delete": "c", "deletes": [{"q": {"_id": 1}, "limit": 1}]},
    )
    .await;
    run(
        &e,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1"}]},
    )
    .await;
    run(&e, "db", doc! {"drop": "c"}).await;
    let (entries, _) = drain(
        &e,
        "local",
        "oplog.rs",
        doc! {"find": "oplog.rs", "filter": {}},
        None,
    )
    .await;
    let ops: Vec<&str> = entries.iter().map(|d| d.get_str("op").unwrap()).collect();
    assert_eq!(ops, ["n", "c", "i", "u", "d", "c", "c"]);
    let ins = &entries[2];
    assert_eq!(
        ins.keys().collect::<Vec<_>>(),
        ["op", "ns", "ui", "o", "o2", "ts", "t", "v", "wall"]
    );
    assert_eq!(ins.get_document("o").unwrap(), &doc! {"_id": 1, "a": 1});
    assert_eq!(ins.get_i64("t").unwrap(), 1);
    assert_eq!(ins.get_i64("v").unwrap(), 2);
    assert_eq!(
        entries[3].get_document("o").unwrap(),
        &doc! {"$v": 2, "diff": {"u": {"a": 2}}}
    );
    assert_eq!(entries[3].get_document("o2").unwrap(), &doc! {"_id": 1});
    assert_eq!(entries[4].get_document("o").unwrap(), &doc! {"_id": 1});
    assert_eq!(entries[1].get_str("ns").unwrap(), "db.$cmd");
    assert_eq!(
        entries[1].get_document("o").unwrap(),
        &doc! {"create": "c", "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}}
    );
    assert_eq!(entries[6].get_document("o").unwrap(), &doc! {"drop": "c"});
    let ts: Vec<_> = entries
        .iter()
        .map(|d| d.get_timestamp("ts").unwrap())
        .collect();
    assert!(ts
        .windows(2)
        .all(|w| (w[0].time, w[0].increment) < (w[1].time, w[1].increment)));

    // What mongodump asks: newest entry, and a ts range.
    let r = run(&e, "local", doc! {"find": "oplog.rs", "filter": {}, "sort": {"$natural": -1}, "limit": 1, "singleBatch": true}).await;
    assert_eq!(batch(&r)[0].get_timestamp("ts").unwrap(), ts[6]);
    assert_eq!(e.last_optime(), Some(ts[6]));
    assert_eq!(e.oplog_bounds(), Some((ts[0], ts[6])));
    let (range, _) = drain(&e, "local", "oplog.rs", doc! {"find": "oplog.rs", "filter": {"$and": [{"ts": {"$gte": ts[2]}}, {"ts": {"$lte": ts[4]}}]}, "oplogReplay": true}, None).await;
    assert_eq!(range.len(), 3);
    let (none, _) = drain(&e, "config", "transactions", doc! {"find": "transactions", "filter": {"state": {"$in": ["prepared", "inProgress"]}}, "sort": {"startOpTime": 1}, "limit": 1, "singleBatch": true}, None).await;
    assert!(none.is_empty());
    let r = run(&e, "admin", doc! {"listDatabases": 1, "nameOnly": true}).await;
    assert!(r.get_array("databases").unwrap().iter().any(|d| d
        .as_document()
        .unwrap()
        .get_str("name")
        .unwrap()
        == "local"));
}

#[tokio::test]
async fn tailable_await_data_cursor_wakes_on_new_entries() {
    let e = replica();
    let r = run(
        &e,
        "local",
        doc! {"find": "oplog.rs", "filter": {}, "tailable": true, "awaitData": true},
    )
    .await;
    let id = cursor_id(&r);
    assert_ne!(id, 0);
    assert_eq!(batch(&r).len(), 1);

    // Nothing new: the getMore waits out maxTimeMS and returns an empty batch, still open.
    let started = std::time::Instant::now();
    let r = run(
        &e,
        "local",
        doc! {"getMore": id, "collection": "oplog.rs", "maxTimeMS": 100},
    )
    .await;
    assert!(batch(&r).is_empty());
    assert_eq!(cursor_id(&r), id);
    assert!(started.elapsed() >= Duration::from_millis(90));

    let writer = {
        let e = e.clone();
        tokio::spawn(async move {
            for i in 0..5 {
                let raw =
                    RawDocumentBuf::from_document(&doc! {"insert": "c", "documents": [{"_id": i}]})
                        .unwrap();
                e.execute("db", &raw).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    for _ in 0..50 {
        if seen.len() >= 6 {
            break;
        }
        let r = run(
            &e,
            "local",
            doc! {"getMore": id, "collection": "oplog.rs", "maxTimeMS": 5000},
        )
        .await;
        seen.extend(batch(&r));
    }
    writer.await.unwrap();
    let ops: Vec<_> = seen
        .iter()
        .map(|d| d.get_str("op").unwrap().to_string())
        .collect();
    assert_eq!(ops, ["c", "i", "i", "i", "i", "i"]);

    // Roll the oplog over: the cursor's position is gone.
    e.set_oplog_limits(OplogLimits {
        max_entries: Some(2),
        max_bytes: None,
    });
    for i in 10..15 {
        run(&e, "db", doc! {"insert": "c", "documents": [{"_id": i}]}).await;
    }
    let err = fail(&e, "local", doc! {"getMore": id, "collection": "oplog.rs"}).await;
    assert_eq!((err.code, err.code_name), (136, "CappedPositionLost"));
    let err = fail(&e, "db", doc! {"find": "c", "tailable": true}).await;
    assert_eq!(err.code, 2);
}

#[tokio::test]
async fn apply_ops_replays_an_oplog_into_another_server() {
    let src = replica();
    run(
        &src,
        "db",
        doc! {"create": "c", "validator": {"a": {"$exists": true}}},
    )
    .await;
    run(
        &src,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1", "unique": true}]},
    )
    .await;
    run(
        &src,
        "db",
        doc! {"insert": "c", "documents": [{"_id": 1, "a": 1, "s": {"x": 1}}, {"_id": 2, "a": 2}]},
    )
    .await;
    run(&src, "db", doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$set": {"s.y": 2}, "$unset": {"s.x": ""}}}]}).await;
    run(
        &src,
        "db",
        doc! {"update": "c", "updates": [{"q": {"_id": 2}, "u": {"a": 3, "r": true}}]},
    )
    .await;
    run(
        &src,
        "db",
        doc! {"delete": "c", "deletes": [{"q": {"_id": 2}, "limit": 1}]},
    )
    .await;
    run(
        &src,
        "db",
        doc! {"insert": "gone", "documents": [{"_id": 1}]},
    )
    .await;
    run(&src, "db", doc! {"drop": "gone"}).await;
    let (entries, _) = drain(&src, "local", "oplog.rs", doc! {"find": "oplog.rs"}, None).await;

    let dst = standalone();
    for entry in &entries {
        let r = run(
            &dst,
            "admin",
            doc! {"applyOps": [entry.clone()], "bypassDocumentValidation": false},
        )
        .await;
        assert_eq!(r, doc! {"applied": 1, "results": [true], "ok": 1.0});
    }
    let (a, _) = drain(&src, "db", "c", doc! {"find": "c"}, None).await;
    let (b, _) = drain(&dst, "db", "c", doc! {"find": "c"}, None).await;
    assert_eq!(a, b);
    assert_eq!(b, vec![doc! {"_id": 1, "a": 1, "s": {"y": 2}}]);
    let r = run(&dst, "db", doc! {"listIndexes": "c", "cursor": {}}).await;
    assert_eq!(batch(&r).len(), 2);
    let r = run(&dst, "db", doc! {"listCollections": 1, "cursor": {}}).await;
    assert_eq!(batch(&r).len(), 1);

    // --preserveUUID creates through applyOps with the given ui.
    let uuid = bson::Binary {
        subtype: bson::spec::BinarySubtype::Uuid,
        bytes: vec![7; 16],
    };
    run(&dst, "admin", doc! {"applyOps": [{"ts": bson::Timestamp {time: 0, increment: 0}, "t": Bson::Null, "v": 0, "op": "c", "ns": "db.$cmd", "o": {"create": "kept", "idIndex": {"key": {"_id": 1}, "name": "_id_", "ns": "db.kept"}}, "ui": uuid.clone()}], "bypassDocumentValidation": false}).await;
    let r = run(
        &dst,
        "db",
        doc! {"listCollections": 1, "filter": {"name": "kept"}, "cursor": {}},
    )
    .await;
    assert_eq!(
        batch(&r)[0].get_document("info").unwrap().get("uuid"),
        Some(&Bson::Binary(uuid))
    );
}

#[tokio::test]
async fn users_merge_from_temp_collections() {
    let e = standalone();
    run(&e, "admin", doc! {"insert": "tempusers", "documents": [{"_id": "app.bob", "user": "bob", "db": "app", "credentials": {}, "roles": []}]}).await;
    run(&e, "admin", doc! {"_mergeAuthzCollections": 1, "tempUsersCollection": "admin.tempusers", "tempRolesCollection": "admin.temproles", "drop": false, "db": ""}).await;
    let (users, _) = drain(
        &e,
        "admin",
        "system.users",
        doc! {"find": "system.users"},
        None,
    )
    .await;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].get_str("user").unwrap(), "bob");
    let (v, _) = drain(
        &e,
        "admin",
        "system.version",
        doc! {"find": "system.version", "filter": {"_id": "authSchema"}},
        None,
    )
    .await;
    assert_eq!(v, vec![doc! {"_id": "authSchema", "currentVersion": 5}]);
}

fn user_doc(db: &str, user: &str, marker: i32) -> Document {
    doc! {"_id": format!("{db}.{user}"), "user": user, "db": db, "credentials": {}, "roles": [], "marker": marker}
}

async fn users_by_id(e: &Engine) -> Vec<(String, i32)> {
    let (users, _) = drain(
        e,
        "admin",
        "system.users",
        doc! {"find": "system.users", "sort": {"_id": 1}},
        None,
    )
    .await;
    users
        .iter()
        .map(|u| {
            (
                u.get_str("_id").unwrap().to_string(),
                u.get_i32("marker").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn merging_users_keeps_existing_ones_unless_drop_replaces_them() {
    let e = standalone();
    run(&e, "admin", doc! {"insert": "system.users", "documents": [user_doc("app", "old", 1), user_doc("app", "bob", 1), user_doc("other", "eve", 1)]}).await;
    run(&e, "admin", doc! {"insert": "tempusers", "documents": [user_doc("app", "bob", 2), user_doc("app", "new", 2)]}).await;
    let merge = |drop: bool, db: &str| doc! {"_mergeAuthzCollections": 1, "tempUsersCollection": "admin.tempusers", "drop": drop, "db": db};

    // Without drop an existing user is left as it is, and the merge still succeeds.
    run(&e, "admin", merge(false, "")).await;
    assert_eq!(
        users_by_id(&e).await,
        vec![
            ("app.bob".into(), 1),
            ("app.new".into(), 2),
            ("app.old".into(), 1),
            ("other.eve".into(), 1)
        ]
    );

    // With drop and a db, that db's users become exactly the temporary collection's.
    run(&e, "admin", merge(true, "app")).await;
    assert_eq!(
        users_by_id(&e).await,
        vec![
            ("app.bob".into(), 2),
            ("app.new".into(), 2),
            ("other.eve".into(), 1)
        ]
    );

    // With drop and no db, every user not in the temporary collection goes.
    run(&e, "admin", merge(true, "")).await;
    assert_eq!(
        users_by_id(&e).await,
        vec![("app.bob".into(), 2), ("app.new".into(), 2)]
    );

    let err = fail(
        &e,
        "admin",
        doc! {"_mergeAuthzCollections": 1, "drop": false, "db": ""},
    )
    .await;
    assert_eq!(err.code, 2, "{err}");
    let err = fail(&e, "app", merge(false, "")).await;
    assert_eq!(err.code, 13, "{err}");
}

#[tokio::test]
async fn an_atomic_apply_ops_is_one_oplog_entry_like_a_transaction() {
    let e = replica();
    run(
        &e,
        "db",
        doc! {"insert": "c", "documents": [{"_id": 1, "v": 1}]},
    )
    .await;
    run(
        &e,
        "admin",
        doc! {"applyOps": [
            {"op": "i", "ns": "db.c", "o": {"_id": 2, "v": 2}},
            {"op": "u", "ns": "db.c", "o": {"$v": 2, "diff": {"u": {"v": 10}}}, "o2": {"_id": 1}},
            {"op": "d", "ns": "db.c", "o": {"_id": 2}},
        ]},
    )
    .await;
    let r = run(
        &e,
        "local",
        doc! {"find": "oplog.rs", "filter": {"ns": "admin.$cmd"}},
    )
    .await;
    let entries = batch(&r);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let ops = entries[0]
        .get_document("o")
        .unwrap()
        .get_array("applyOps")
        .unwrap();
    let kinds: Vec<&str> = ops
        .iter()
        .map(|o| o.as_document().unwrap().get_str("op").unwrap())
        .collect();
    assert_eq!(kinds, ["i", "u", "d"]);
    assert!(ops
        .iter()
        .all(|o| !o.as_document().unwrap().contains_key("ts")));
    let left = batch(&run(&e, "db", doc! {"find": "c"}).await);
    assert_eq!(left, [doc! {"_id": 1, "v": 10}]);
    // A command among the operations: each is logged as itself.
    run(
        &e,
        "admin",
        doc! {"applyOps": [{"op": "c", "ns": "db.$cmd", "o": {"create": "d"}}]},
    )
    .await;
    let r = run(
        &e,
        "local",
        doc! {"find": "oplog.rs", "filter": {"ns": "db.$cmd"}},
    )
    .await;
    assert_eq!(batch(&r).len(), 2, "the first collection's create and d's");
}
