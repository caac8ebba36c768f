//! listCollections, listIndexes and the other catalog commands through the official driver,
//! compared field by field (and in field order) with what mongod 7.0 reports.

use bson::{doc, spec::BinarySubtype, Bson, Document};
use futures_util::TryStreamExt;
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

use crate::{client, command_error, server};

/// The complete form mongod gives a `{locale: "fr", strength: 2}` collation.
fn french_secondary() -> Document {
    doc! {
        "locale": "fr", "caseLevel": false, "caseFirst": "off", "strength": 2,
        "numericOrdering": false, "alternate": "non-ignorable", "maxVariable": "punct",
        "normalization": false, "backwards": false, "version": "57.1",
    }
}

/// Every document of a command's cursor, following getMore when the first batch is short.
async fn cursor_docs(db: &Database, cmd: Document) -> Vec<Document> {
    let reply = db.run_command(cmd).await.unwrap();
    let cursor = reply.get_document("cursor").unwrap();
    let mut docs: Vec<Document> = cursor
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .map(|d| d.as_document().unwrap().clone())
        .collect();
    let ns = cursor.get_str("ns").unwrap().to_string();
    let mut id = cursor.get_i64("id").unwrap();
    while id != 0 {
        let coll = ns.split_once('.').unwrap().1;
        let more = db
            .run_command(doc! {"getMore": id, "collection": coll})
            .await
            .unwrap();
        let c = more.get_document("cursor").unwrap();
        docs.extend(
            c.get_array("nextBatch")
                .unwrap()
                .iter()
                .map(|d| d.as_document().unwrap().clone()),
        );
        id = c.get_i64("id").unwrap();
    }
    docs
}

async fn list_collections(db: &Database, filter: Document) -> Vec<Document> {
    cursor_docs(db, doc! {"listCollections": 1, "filter": filter}).await
}

async fn list_indexes(db: &Database, coll: &str) -> Vec<Document> {
    cursor_docs(db, doc! {"listIndexes": coll}).await
}

/// The single listCollections entry named `name`.
async fn entry(db: &Database, name: &str) -> Document {
    let mut found = list_collections(db, doc! {"name": name}).await;
    assert_eq!(found.len(), 1, "one entry for {name}: {found:?}");
    found.remove(0)
}

fn uuid_of(entry: &Document) -> Vec<u8> {
    match entry.get_document("info").unwrap().get("uuid") {
        Some(Bson::Binary(b)) => {
            assert_eq!(b.subtype, BinarySubtype::Uuid, "info.uuid is subtype 4");
            assert_eq!(b.bytes.len(), 16);
            b.bytes.clone()
        }
        other => panic!("info.uuid should be a UUID, got {other:?}"),
    }
}

fn keys(d: &Document) -> Vec<&str> {
    d.keys().map(String::as_str).collect()
}

/// Equal values, types and field order at every depth (`Document`'s `==` ignores order).
#[track_caller]
fn assert_exact(got: &Document, want: &Document) {
    assert_eq!(got, want);
    assert_eq!(
        format!("{got:?}"),
        format!("{want:?}"),
        "same fields in a different order"
    );
}

#[track_caller]
fn assert_all_exact(got: &[Document], want: &[Document]) {
    assert_eq!(got, want);
    for (g, w) in got.iter().zip(want) {
        assert_exact(g, w);
    }
}

#[tokio::test]
async fn list_collections_reports_every_create_option_as_mongod_shapes_it() {
    let srv = server().await;
    let db = client(&srv.uri()).await.database("cat");
    // Options given out of mongod's order and with values mongod adjusts.
    db.run_command(doc! {"create": "capped", "max": 50, "size": 1000, "capped": true})
        .await
        .unwrap();
    db.run_command(doc! {
        "create": "validated",
        "validationAction": "warn",
        "validationLevel": "moderate",
        "validator": {"$jsonSchema": {"required": ["name"]}},
    })
    .await
    .unwrap();
    db.run_command(doc! {"create": "collated", "collation": {"locale": "fr", "strength": 2}})
        .await
        .unwrap();
    db.run_command(doc! {
        "create": "by_a",
        "viewOn": "collated",
        "pipeline": [{"$match": {"a": {"$gt": 1}}}],
        "collation": {"locale": "fr", "strength": 2},
    })
    .await
    .unwrap();
    db.run_command(doc! {
        "create": "weather",
        "timeseries": {"timeField": "ts", "metaField": "sensor", "granularity": "minutes"},
        "expireAfterSeconds": 86400,
    })
    .await
    .unwrap();
    db.run_command(doc! {
        "create": "clustered",
        "clusteredIndex": {"key": {"_id": 1}, "unique": true, "name": "by_id"},
        "expireAfterSeconds": 3600,
    })
    .await
    .unwrap();
    db.run_command(doc! {
        "create": "images",
        "collation": {"locale": "fr", "strength": 2},
        "changeStreamPreAndPostImages": {"enabled": true},
    })
    .await
    .unwrap();

    let capped = entry(&db, "capped").await;
    assert_eq!(
        keys(&capped),
        ["name", "type", "options", "info", "idIndex"]
    );
    assert_eq!(capped.get_str("type").unwrap(), "collection");
    // mongod rounds the size up to a multiple of 256 and lists capped/size/max in that order.
    assert_exact(
        capped.get_document("options").unwrap(),
        &doc! {"capped": true, "size": 1024, "max": 50},
    );
    assert_exact(
        capped.get_document("idIndex").unwrap(),
        &doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"},
    );
    let info = capped.get_document("info").unwrap();
    assert_eq!(keys(info), ["readOnly", "uuid"]);
    assert_eq!(info.get("readOnly"), Some(&Bson::Boolean(false)));

    let validated = entry(&db, "validated").await;
    assert_exact(
        validated.get_document("options").unwrap(),
        &doc! {
            "validator": {"$jsonSchema": {"required": ["name"]}},
            "validationLevel": "moderate",
            "validationAction": "warn",
        },
    );

    let collated = entry(&db, "collated").await;
    assert_exact(
        collated.get_document("options").unwrap(),
        &doc! {"collation": french_secondary()},
    );
    assert_exact(
        collated.get_document("idIndex").unwrap(),
        &doc! {"v": 2, "key": {"_id": 1}, "name": "_id_", "collation": french_secondary()},
    );

    let view = entry(&db, "by_a").await;
    assert_exact(
        &view,
        &doc! {
            "name": "by_a",
            "type": "view",
            "options": {
                "viewOn": "collated",
                "pipeline": [{"$match": {"a": {"$gt": 1}}}],
                "collation": french_secondary(),
            },
            "info": {"readOnly": true},
        },
    );

    let weather = entry(&db, "weather").await;
    assert_exact(
        &weather,
        &doc! {
            "name": "weather",
            "type": "timeseries",
            "options": {
                "expireAfterSeconds": 86400_i64,
                "timeseries": {
                    "timeField": "ts",
                    "metaField": "sensor",
                    "granularity": "minutes",
                    "bucketMaxSpanSeconds": 86400,
                },
            },
            "info": {"readOnly": false},
        },
    );

    let clustered = entry(&db, "clustered").await;
    assert_eq!(keys(&clustered), ["name", "type", "options", "info"]);
    assert_exact(
        clustered.get_document("options").unwrap(),
        &doc! {
            "clusteredIndex": {"v": 2, "key": {"_id": 1}, "name": "by_id", "unique": true},
            "expireAfterSeconds": 3600_i64,
        },
    );
    assert_all_exact(
        &list_indexes(&db, "clustered").await,
        &[doc! {"v": 2, "key": {"_id": 1}, "name": "by_id", "unique": true, "clustered": true}],
    );

    let images = entry(&db, "images").await;
    assert_exact(
        images.get_document("options").unwrap(),
        &doc! {"changeStreamPreAndPostImages": {"enabled": true}, "collation": french_secondary()},
    );

    // Each collection has its own UUID; views and time-series show none.
    let mut uuids: Vec<Vec<u8>> = [&capped, &validated, &collated, &clustered, &images]
        .iter()
        .map(|e| uuid_of(e))
        .collect();
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 5);

    let views = list_collections(&db, doc! {"type": "view"}).await;
    assert_eq!(
        views
            .iter()
            .map(|v| v.get_str("name").unwrap())
            .collect::<Vec<_>>(),
        ["by_a"]
    );
    let series = list_collections(&db, doc! {"type": "timeseries"}).await;
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].get_str("name").unwrap(), "weather");
    let buckets = entry(&db, "system.buckets.weather").await;
    assert_eq!(buckets.get_str("type").unwrap(), "collection");

    let names = cursor_docs(
        &db,
        doc! {"listCollections": 1, "nameOnly": true, "filter": {"name": {"$in": ["capped", "by_a", "weather"]}}},
    )
    .await;
    let mut names: Vec<Document> = names;
    names.sort_by(|a, b| a.get_str("name").unwrap().cmp(b.get_str("name").unwrap()));
    assert_all_exact(
        &names,
        &[
            doc! {"name": "by_a", "type": "view"},
            doc! {"name": "capped", "type": "collection"},
            doc! {"name": "weather", "type": "timeseries"},
        ],
    );

    // The driver's own helpers agree.
    let mut typed = db
        .list_collection_names()
        .filter(doc! {"type": "collection", "name": {"$regex": "^c"}})
        .await
        .unwrap();
    typed.sort();
    assert_eq!(typed, ["capped", "clustered", "collated"]);
    srv.shutdown().await;
}

#[tokio::test]
async fn list_indexes_returns_each_index_verbatim_in_field_order() {
    let srv = server().await;
    let db = client(&srv.uri()).await.database("ix");
    let people = db.collection::<Document>("people");
    people
        .insert_one(doc! {"email": "a@example.com", "score": 12})
        .await
        .unwrap();
    let created = db
        .run_command(doc! {
            "createIndexes": "people",
            "indexes": [
                {"key": {"email": 1}, "name": "email_1", "unique": true},
                {"key": {"last": 1, "first": -1}, "name": "last_1_first_-1"},
                {"key": {"createdAt": 1}, "name": "createdAt_1", "expireAfterSeconds": 3600},
                {"key": {"score": 1}, "name": "score_partial", "partialFilterExpression": {"score": {"$gt": 10}}},
                {"key": {"title": "text", "body": "text"}, "name": "search", "weights": {"title": 10}},
                {"key": {"loc": "2dsphere"}, "name": "loc_2dsphere"},
                {"key": {"tenant": "hashed"}, "name": "tenant_hashed"},
                {"key": {"legacy": 1}, "name": "legacy_1", "hidden": true},
                {"key": {"nick": 1}, "name": "nick_1", "collation": {"locale": "fr", "strength": 2}},
            ],
        })
        .await
        .unwrap();
    assert_eq!(created.get_i32("numIndexesBefore").unwrap(), 1);
    assert_eq!(created.get_i32("numIndexesAfter").unwrap(), 10);
    assert_eq!(
        created.get("createdCollectionAutomatically"),
        Some(&Bson::Boolean(false))
    );

    let listed = list_indexes(&db, "people").await;
    assert_all_exact(
        &listed,
        &[
            doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            doc! {"v": 2, "key": {"email": 1}, "name": "email_1", "unique": true},
            doc! {"v": 2, "key": {"last": 1, "first": -1}, "name": "last_1_first_-1"},
            doc! {"v": 2, "key": {"createdAt": 1}, "name": "createdAt_1", "expireAfterSeconds": 3600},
            doc! {"v": 2, "key": {"score": 1}, "name": "score_partial", "partialFilterExpression": {"score": {"$gt": 10}}},
            // mongod keeps text weights sorted by field, as int32.
            doc! {
                "v": 2, "key": {"_fts": "text", "_ftsx": 1}, "name": "search",
                "weights": {"body": 1, "title": 10},
                "default_language": "english", "language_override": "language",
                "textIndexVersion": 3,
            },
            doc! {"v": 2, "key": {"loc": "2dsphere"}, "name": "loc_2dsphere", "2dsphereIndexVersion": 3},
            doc! {"v": 2, "key": {"tenant": "hashed"}, "name": "tenant_hashed"},
            doc! {"v": 2, "key": {"legacy": 1}, "name": "legacy_1", "hidden": true},
            doc! {"v": 2, "key": {"nick": 1}, "name": "nick_1", "collation": french_secondary()},
        ],
    );

    // The driver's typed helper names indexes the way mongod does and sees them all.
    let name = people
        .create_index(
            IndexModel::builder()
                .keys(doc! {"a": 1, "b": -1})
                .options(IndexOptions::builder().sparse(true).build())
                .build(),
        )
        .await
        .unwrap()
        .index_name;
    assert_eq!(name, "a_1_b_-1");
    let names = people.list_index_names().await.unwrap();
    assert_eq!(names.len(), 11);
    assert_eq!(names.last().map(String::as_str), Some("a_1_b_-1"));
    let typed: Vec<IndexModel> = people
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let ttl = typed
        .iter()
        .find(|m| m.keys == doc! {"createdAt": 1})
        .unwrap();
    assert_eq!(
        ttl.options.as_ref().unwrap().expire_after,
        Some(std::time::Duration::from_secs(3600))
    );

    // A collection's default collation is inherited by its indexes.
    db.run_command(doc! {"create": "fr", "collation": {"locale": "fr", "strength": 2}})
        .await
        .unwrap();
    db.collection::<Document>("fr")
        .create_index(IndexModel::builder().keys(doc! {"k": 1}).build())
        .await
        .unwrap();
    assert_exact(
        &list_indexes(&db, "fr").await[1],
        &doc! {"v": 2, "key": {"k": 1}, "name": "k_1", "collation": french_secondary()},
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn catalog_errors_carry_mongods_codes() {
    let srv = server().await;
    let db = client(&srv.uri()).await.database("errs");

    let missing = db
        .run_command(doc! {"listIndexes": "nowhere"})
        .await
        .unwrap_err();
    assert_eq!(command_error(&missing).code, 26);
    assert_eq!(command_error(&missing).code_name, "NamespaceNotFound");

    db.run_command(doc! {"create": "c", "capped": true, "size": 4096})
        .await
        .unwrap();
    // The same options again is not an error (mongod 7.0); different ones are.
    db.run_command(doc! {"create": "c", "capped": true, "size": 4096})
        .await
        .unwrap();
    let exists = db.run_command(doc! {"create": "c"}).await.unwrap_err();
    assert_eq!(command_error(&exists).code, 48);
    assert_eq!(command_error(&exists).code_name, "NamespaceExists");

    let coll = db.collection::<Document>("c");
    coll.create_index(
        IndexModel::builder()
            .keys(doc! {"x": 1})
            .options(IndexOptions::builder().name("by_x".to_string()).build())
            .build(),
    )
    .await
    .unwrap();
    // Same key and options under another name.
    let other_name = db
        .run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"x": 1}, "name": "x_again"}]})
        .await
        .unwrap_err();
    assert_eq!(command_error(&other_name).code, 85);
    assert_eq!(command_error(&other_name).code_name, "IndexOptionsConflict");
    // Same name and key, different options.
    let other_options = db
        .run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"x": 1}, "name": "by_x", "unique": true}]})
        .await
        .unwrap_err();
    assert_eq!(command_error(&other_options).code, 85);
    // Same name, different key.
    let other_key = db
        .run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"y": 1}, "name": "by_x"}]})
        .await
        .unwrap_err();
    assert_eq!(command_error(&other_key).code, 86);
    assert_eq!(command_error(&other_key).code_name, "IndexKeySpecsConflict");
    // Asking for the existing index again changes nothing.
    let again = db
        .run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"x": 1}, "name": "by_x"}]})
        .await
        .unwrap();
    assert_eq!(again.get_i32("numIndexesBefore").unwrap(), 2);
    assert_eq!(again.get_i32("numIndexesAfter").unwrap(), 2);
    assert_eq!(again.get_str("note").unwrap(), "all indexes already exist");

    let no_index = coll.drop_index("nope").await.unwrap_err();
    assert_eq!(command_error(&no_index).code, 27);
    srv.shutdown().await;
}

#[tokio::test]
async fn drop_indexes_collections_and_databases() {
    let srv = server().await;
    let c = client(&srv.uri()).await;
    let db = c.database("gone");
    let coll = db.collection::<Document>("things");
    coll.insert_one(doc! {"a": 1, "b": 2}).await.unwrap();
    for k in ["a", "b", "c"] {
        coll.create_index(IndexModel::builder().keys(doc! {k: 1}).build())
            .await
            .unwrap();
    }
    coll.drop_index("a_1").await.unwrap();
    assert_eq!(
        coll.list_index_names().await.unwrap(),
        ["_id_", "b_1", "c_1"]
    );
    let by_key = db
        .run_command(doc! {"dropIndexes": "things", "index": {"b": 1}})
        .await
        .unwrap();
    assert_eq!(by_key.get_i32("nIndexesWas").unwrap(), 3);
    coll.drop_indexes().await.unwrap();
    assert_eq!(coll.list_index_names().await.unwrap(), ["_id_"]);

    db.collection::<Document>("other")
        .insert_one(doc! {})
        .await
        .unwrap();
    coll.drop().await.unwrap();
    assert_eq!(db.list_collection_names().await.unwrap(), ["other"]);
    let gone = db
        .run_command(doc! {"listIndexes": "things"})
        .await
        .unwrap_err();
    assert_eq!(command_error(&gone).code, 26);

    assert!(c
        .list_database_names()
        .await
        .unwrap()
        .contains(&"gone".to_string()));
    db.drop().await.unwrap();
    assert!(!c
        .list_database_names()
        .await
        .unwrap()
        .contains(&"gone".to_string()));
    assert!(db.list_collection_names().await.unwrap().is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn list_databases_filters_and_names_only() {
    let srv = server().await;
    let c = client(&srv.uri()).await;
    for name in ["alpha", "beta", "gamma"] {
        c.database(name)
            .collection::<Document>("c")
            .insert_one(doc! {"pad": "x".repeat(100)})
            .await
            .unwrap();
    }
    let admin = c.database("admin");
    let full = admin
        .run_command(doc! {"listDatabases": 1, "filter": {"name": {"$in": ["alpha", "beta"]}}})
        .await
        .unwrap();
    let dbs = full.get_array("databases").unwrap();
    assert_eq!(dbs.len(), 2);
    let mut total = 0;
    for d in dbs {
        let d = d.as_document().unwrap();
        assert_eq!(keys(d), ["name", "sizeOnDisk", "empty"]);
        assert_eq!(d.get("empty"), Some(&Bson::Boolean(false)));
        total += d.get_i64("sizeOnDisk").unwrap();
    }
    assert_eq!(full.get_i64("totalSize").unwrap(), total);

    let names = admin
        .run_command(doc! {"listDatabases": 1, "nameOnly": true, "filter": {"name": {"$in": ["beta", "gamma"]}}})
        .await
        .unwrap();
    assert!(!names.contains_key("totalSize"));
    let mut listed: Vec<Document> = names
        .get_array("databases")
        .unwrap()
        .iter()
        .map(|d| d.as_document().unwrap().clone())
        .collect();
    listed.sort_by(|a, b| a.get_str("name").unwrap().cmp(b.get_str("name").unwrap()));
    assert_eq!(listed, vec![doc! {"name": "beta"}, doc! {"name": "gamma"}]);

    let typed = c
        .list_database_names()
        .filter(doc! {"name": {"$ne": "beta"}})
        .await
        .unwrap();
    assert!(typed.contains(&"alpha".to_string()) && typed.contains(&"gamma".to_string()));
    assert!(!typed.contains(&"beta".to_string()));
    let specs = c
        .list_databases()
        .filter(doc! {"name": "gamma"})
        .await
        .unwrap();
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].name, "gamma");
    assert!(specs[0].size_on_disk > 0);
    srv.shutdown().await;
}

#[tokio::test]
async fn counts_and_aggregations_through_the_driver() {
    let srv = server().await;
    let c = client(&srv.uri()).await;
    let db = c.database("agg");
    let orders = db.collection::<Document>("orders");
    let docs: Vec<Document> = (0..30)
        .map(|i| {
            let shop = ["north", "south", "east"][i as usize % 3];
            doc! {"_id": i, "shop": shop, "total": i}
        })
        .collect();
    orders.insert_many(docs).await.unwrap();

    assert_eq!(
        orders
            .count_documents(doc! {"total": {"$gte": 10}})
            .await
            .unwrap(),
        20
    );
    assert_eq!(orders.estimated_document_count().await.unwrap(), 30);
    let counted = db
        .run_command(doc! {"count": "orders", "query": {"shop": "north"}})
        .await
        .unwrap();
    assert_eq!(counted.get_i32("n").unwrap(), 10);

    let n: Vec<Document> = orders
        .aggregate(vec![
            doc! {"$match": {"shop": "east"}},
            doc! {"$count": "n"},
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(n, vec![doc! {"n": 10}]);

    let sums: Vec<Document> = orders
        .aggregate(vec![
            doc! {"$group": {"_id": "$shop", "sum": {"$sum": "$total"}, "n": {"$sum": 1}}},
            doc! {"$sort": {"_id": 1}},
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    // north: 0,3,..,27 = 135; south: 1,4,..,28 = 145; east: 2,5,..,29 = 155.
    assert_eq!(
        sums,
        vec![
            doc! {"_id": "east", "sum": 155, "n": 10},
            doc! {"_id": "north", "sum": 135, "n": 10},
            doc! {"_id": "south", "sum": 145, "n": 10},
        ]
    );

    let stats: Vec<Document> = orders
        .aggregate(vec![doc! {"$collStats": {"storageStats": {}, "count": {}}}])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].get_str("ns").unwrap(), "agg.orders");
    let storage = stats[0].get_document("storageStats").unwrap();
    assert_eq!(storage.get_i64("count").unwrap(), 30);
    assert_eq!(storage.get_i32("nindexes").unwrap(), 1);
    assert!(storage.get_i64("size").unwrap() > 0);
    // `count: {}` puts the number at the top level.
    assert_eq!(
        stats[0]
            .get("count")
            .and_then(Bson::as_i64)
            .or_else(|| stats[0].get("count").and_then(Bson::as_i32).map(i64::from)),
        Some(30)
    );
    srv.shutdown().await;
}
