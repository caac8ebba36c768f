//! BSON fidelity and the demo seed, seen through the official Rust driver: what goes in comes
//! back byte for byte, and the catalog holds exactly what the seed commands created.

// Helpers here are test code too; a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use bson::{doc, Bson, Document, RawDocumentBuf};
use futures_util::TryStreamExt;
use mongo_test_server::seed::{self, every_type_document, NamespaceKind, DEMO_NAMESPACES};
use mongo_test_server::{start, Seed, ServerConfig, ServerHandle};
use mongodb::Client;

async fn server(seed: Seed) -> (ServerHandle, Client) {
    let server = start(ServerConfig {
        seed,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let client = super::client(&server.uri()).await;
    (server, client)
}

/// Every document the demo seed inserts, by namespace, as sorted encoded bytes.
fn seeded_documents() -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (db, cmd) in seed::commands(&Seed::Demo) {
        let Ok(coll) = cmd.get_str("insert") else {
            continue;
        };
        let entry = out.entry(format!("{db}.{coll}")).or_default();
        for d in cmd.get_array("documents").unwrap() {
            entry.push(d.unwrap().as_document().unwrap().as_bytes().to_vec());
        }
    }
    for docs in out.values_mut() {
        docs.sort();
    }
    out
}

/// The create command the seed sent for a namespace, if any.
fn create_command(db: &str, coll: &str) -> Option<Document> {
    seed::commands(&Seed::Demo)
        .find(|(d, cmd)| d == db && cmd.get_str("create").ok() == Some(coll))
        .map(|(_, cmd)| Document::try_from(cmd.as_ref()).unwrap())
}

/// The index specs the seed sent for a namespace, by name.
fn index_specs(db: &str, coll: &str) -> BTreeMap<String, Document> {
    let mut out = BTreeMap::new();
    for (d, cmd) in seed::commands(&Seed::Demo) {
        if d != db || cmd.get_str("createIndexes").ok() != Some(coll) {
            continue;
        }
        for spec in cmd.get_array("indexes").unwrap() {
            let spec = Document::try_from(spec.unwrap().as_document().unwrap()).unwrap();
            out.insert(spec.get_str("name").unwrap().to_string(), spec);
        }
    }
    out
}

async fn first_batch(client: &Client, db: &str, command: Document) -> Vec<Document> {
    let reply = client.database(db).run_command(command).await.unwrap();
    let cursor = reply.get_document("cursor").unwrap();
    assert_eq!(cursor.get_i64("id").unwrap(), 0, "expected one batch");
    cursor
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .map(|d| d.as_document().unwrap().clone())
        .collect()
}

fn number(v: &Bson) -> f64 {
    match v {
        Bson::Int32(n) => f64::from(*n),
        Bson::Int64(n) => *n as f64,
        Bson::Double(n) => *n,
        other => panic!("not a number: {other:?}"),
    }
}

#[tokio::test]
async fn every_bson_type_round_trips_byte_for_byte() {
    let (server, client) = server(Seed::None).await;
    let coll = client
        .database("fidelity")
        .collection::<RawDocumentBuf>("types");
    let original = every_type_document();
    coll.insert_one(&original).await.unwrap();
    let back = coll
        .find_one(doc! {"_id": "every-type"})
        .await
        .unwrap()
        .expect("the document just inserted");
    assert_eq!(back.as_bytes(), original.as_bytes());
    server.shutdown().await;
}

#[tokio::test]
async fn demo_documents_read_back_as_seeded() {
    let (server, client) = server(Seed::Demo).await;
    let seeded = seeded_documents();
    for ns in DEMO_NAMESPACES {
        let coll = client
            .database(ns.db)
            .collection::<RawDocumentBuf>(ns.collection);
        let docs: Vec<RawDocumentBuf> = coll
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        if ns.db == "admin" {
            // The server may keep documents of its own there (featureCompatibilityVersion).
            assert!(
                docs.len() as u64 >= ns.documents,
                "{}: {} documents",
                ns.namespace(),
                docs.len()
            );
        } else {
            assert_eq!(docs.len() as u64, ns.documents, "{}", ns.namespace());
        }
        match ns.kind {
            NamespaceKind::Collection => {
                let mut bytes: Vec<Vec<u8>> = docs.iter().map(|d| d.as_bytes().to_vec()).collect();
                bytes.sort();
                let expected = seeded.get(&ns.namespace()).cloned().unwrap_or_default();
                if ns.db == "admin" {
                    for e in &expected {
                        assert!(
                            bytes.contains(e),
                            "{}: seeded document missing",
                            ns.namespace()
                        );
                    }
                } else {
                    assert!(
                        bytes == expected,
                        "{}: documents differ from the seed",
                        ns.namespace()
                    );
                }
            }
            NamespaceKind::View => {
                for d in &docs {
                    assert_eq!(d.get_str("status").ok(), None, "projected away");
                    assert!(d.get("total").unwrap().is_some());
                }
            }
            NamespaceKind::Timeseries => {
                let mut ids: Vec<String> = docs
                    .iter()
                    .map(|d| d.get_object_id("_id").unwrap().to_hex())
                    .collect();
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), docs.len(), "measurements keep their _id");
            }
        }
    }
    let big = client
        .database("shop")
        .collection::<RawDocumentBuf>("big_documents");
    let sizes: Vec<usize> = big
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|d| d.as_bytes().len())
        .collect();
    assert_eq!(sizes, seed::demo::BIG_SIZES);
    server.shutdown().await;
}

#[tokio::test]
async fn demo_catalog_matches_the_seed_commands() {
    let (server, client) = server(Seed::Demo).await;
    let mut by_db: BTreeMap<&str, Vec<&seed::DemoNamespace>> = BTreeMap::new();
    for ns in DEMO_NAMESPACES {
        by_db.entry(ns.db).or_default().push(ns);
    }
    for (db, expected) in by_db {
        let listed = first_batch(&client, db, doc! {"listCollections": 1}).await;
        let listed: BTreeMap<String, Document> = listed
            .into_iter()
            .map(|c| (c.get_str("name").unwrap().to_string(), c))
            .collect();
        for ns in expected {
            let info = listed.get(ns.collection).unwrap_or_else(|| {
                panic!("{} not listed; listed: {:?}", ns.namespace(), listed.keys())
            });
            assert_eq!(
                info.get_str("type").unwrap(),
                ns.kind.as_str(),
                "{}",
                ns.namespace()
            );
            let options = info.get_document("options").unwrap();
            for key in ns.options {
                assert!(
                    options.contains_key(key),
                    "{} lacks option {key}: {options}",
                    ns.namespace()
                );
            }
            if let Some(create) = create_command(db, ns.collection) {
                check_options(&ns.namespace(), &create, options);
            }
            if ns.kind == NamespaceKind::View {
                // listIndexes is not supported on views.
                continue;
            }
            let indexes = first_batch(&client, db, doc! {"listIndexes": ns.collection}).await;
            let names: Vec<&str> = indexes.iter().map(|i| i.get_str("name").unwrap()).collect();
            assert_eq!(names, ns.indexes, "{}", ns.namespace());
            let specs = index_specs(db, ns.collection);
            for index in &indexes {
                if let Some(spec) = specs.get(index.get_str("name").unwrap()) {
                    check_index(&ns.namespace(), spec, index);
                }
            }
        }
    }
    server.shutdown().await;
}

/// The options given to `create` come back from listCollections, allowing for mongod's own
/// additions (a full collation spec, bucketMaxSpanSeconds).
fn check_options(ns: &str, create: &Document, options: &Document) {
    for (key, sent) in create.iter().skip(1) {
        let got = options
            .get(key)
            .unwrap_or_else(|| panic!("{ns}: option {key} missing from {options}"));
        match key.as_str() {
            "size" | "max" => assert_eq!(number(got), number(sent), "{ns}: {key}"),
            "collation" | "timeseries" => {
                let got = got.as_document().unwrap();
                for (k, v) in sent.as_document().unwrap() {
                    let g = got
                        .get(k)
                        .unwrap_or_else(|| panic!("{ns}: {key}.{k} missing"));
                    if let Bson::String(s) = v {
                        assert_eq!(g.as_str(), Some(s.as_str()), "{ns}: {key}.{k}");
                    } else {
                        assert_eq!(number(g), number(v), "{ns}: {key}.{k}");
                    }
                }
            }
            _ => assert_eq!(got, sent, "{ns}: option {key}"),
        }
    }
}

/// An index spec sent to createIndexes comes back from listIndexes with its options, in
/// mongod's shape: `v: 2`, text indexes keyed `{_fts: "text", _ftsx: 1}`.
fn check_index(ns: &str, sent: &Document, listed: &Document) {
    assert_eq!(number(listed.get("v").unwrap()), 2.0, "{ns}: {listed}");
    let is_text = sent
        .get_document("key")
        .unwrap()
        .values()
        .any(|v| v.as_str() == Some("text"));
    for (key, value) in sent {
        let got = listed
            .get(key)
            .unwrap_or_else(|| panic!("{ns}: index option {key} missing from {listed}"));
        match (key.as_str(), is_text) {
            ("key", true) => {
                assert_eq!(
                    got,
                    &Bson::Document(doc! {"_fts": "text", "_ftsx": 1}),
                    "{ns}"
                )
            }
            ("weights", _) => {
                let got = got.as_document().unwrap();
                for (field, weight) in value.as_document().unwrap() {
                    assert_eq!(
                        number(got.get(field).unwrap()),
                        number(weight),
                        "{ns}: weight {field}"
                    );
                }
            }
            ("expireAfterSeconds", _) => assert_eq!(number(got), number(value), "{ns}"),
            ("collation", _) => {
                let got = got.as_document().unwrap();
                for (k, v) in value.as_document().unwrap() {
                    let g = got.get(k).unwrap();
                    match v {
                        Bson::String(s) => {
                            assert_eq!(g.as_str(), Some(s.as_str()), "{ns}: collation.{k}")
                        }
                        _ => assert_eq!(number(g), number(v), "{ns}: collation.{k}"),
                    }
                }
            }
            _ => assert_eq!(got, value, "{ns}: index option {key}"),
        }
    }
}

#[tokio::test]
async fn bench_seed_loads_its_share_of_documents() {
    let count = 2500;
    let (server, client) = server(Seed::Docs { count }).await;
    let mut total = 0;
    for (db, coll, share) in seed::bench::BENCH_COLLECTIONS {
        let n = client
            .database(db)
            .collection::<RawDocumentBuf>(coll)
            .count_documents(doc! {})
            .await
            .unwrap();
        if *coll != "events" {
            assert_eq!(n, count * share / 100, "{db}.{coll}");
        }
        total += n;
    }
    assert_eq!(total, count);
    let first = client
        .database("bench_shop")
        .collection::<RawDocumentBuf>("customers")
        .find_one(doc! {"_id": 1_i64})
        .await
        .unwrap()
        .expect("customer 1");
    let seeded = seed::bench::bench_documents(&Seed::Docs { count })
        .next()
        .map(|(_, d)| d)
        .unwrap();
    assert_eq!(first.as_bytes(), seeded.as_bytes());
    server.shutdown().await;
}
