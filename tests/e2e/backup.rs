//! The backup engine end to end: seeded source → destination → read back and compared.

use bson::Document;
use nightdump::backup;
use nightdump::catalog::Selector;
use nightdump::layout::{parse_time, LATEST_KEY};
use nightdump::manifest::crc_hex;
use nightdump::Error;
use nightdump_archive::CollectionMetadata;

use crate::harness::*;

#[tokio::test]
async fn backup_to_a_directory_holds_every_document_index_and_option() {
    let source = demo_source().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let outcome = backup::run(&options(&source.uri), &store, &progress())
        .await
        .unwrap();
    let m = &outcome.manifest;
    assert!(!outcome.already_existed);
    assert_eq!(
        files(dir.path()),
        vec![
            m.archive.key.clone(),
            format!("{}/manifest.json", m.backup_id),
            LATEST_KEY.to_string()
        ]
    );

    let stored = std::fs::read(dir.path().join(&m.archive.key)).unwrap();
    assert_eq!(stored.len() as u64, m.archive.size);
    let contents = read_archive(&stored);
    // mongorestore refuses a prelude version that is not x.y.z.
    let version: Vec<&str> = contents.header.server_version.split('.').collect();
    assert_eq!(version.len(), 3, "{}", contents.header.server_version);
    assert!(version.iter().all(|p| p.parse::<u32>().is_ok()));
    assert_eq!(contents.header.server_version, m.source.server_version);
    assert_eq!(contents.header.concurrent_collections, 4);
    assert_eq!(contents.prelude.len(), m.namespaces.len());
    assert!(m
        .namespaces
        .iter()
        .all(|n| n.db != "local" && n.db != "config"));

    let mut kinds = std::collections::BTreeSet::new();
    for entry in &contents.prelude {
        kinds.insert(entry.kind.clone());
        let data_coll = if entry.kind == "timeseries" {
            format!("system.buckets.{}", entry.collection)
        } else {
            entry.collection.clone()
        };
        let archived = &contents.docs[&format!("{}.{}", entry.db, data_coll)];
        let manifest_entry = m
            .namespaces
            .iter()
            .find(|n| n.db == entry.db && n.collection == entry.collection)
            .unwrap();
        assert_eq!(
            manifest_entry.documents,
            archived.len() as u64,
            "{}",
            entry.collection
        );
        if entry.kind == "view" {
            assert!(archived.is_empty());
        } else {
            let original = source_documents(&source.uri, &entry.db, &data_coll).await;
            assert_eq!(original.len(), archived.len(), "{}.{}", entry.db, data_coll);
            for (a, b) in original.iter().zip(archived) {
                assert_eq!(a.as_bytes(), b.as_bytes(), "{}.{}", entry.db, data_coll);
            }
            let crc = nightdump_archive::crc64(
                &archived
                    .iter()
                    .flat_map(|d| d.as_bytes().to_vec())
                    .collect::<Vec<u8>>(),
            );
            assert_eq!(manifest_entry.crc64, crc_hex(crc));
        }
        // Metadata carries the source's options and indexes verbatim.
        let meta = CollectionMetadata::parse(&entry.metadata).unwrap();
        assert_eq!(meta.collection_name, entry.collection);
        let specs = list_collections(&source.uri, &entry.db).await;
        let spec = specs
            .iter()
            .find(|s| s.get_str("name") == Ok(entry.collection.as_str()))
            .unwrap();
        let options = spec.get_document("options").cloned().unwrap_or_default();
        assert_eq!(meta.options, options, "{}.{}", entry.db, entry.collection);
        if entry.kind != "view" {
            let indexes: Vec<Document> =
                list_indexes(&source.uri, &entry.db, &entry.collection).await;
            assert_eq!(meta.indexes, indexes, "{}.{}", entry.db, entry.collection);
        }
    }
    assert!(kinds.contains("view") && kinds.contains("timeseries") && kinds.contains("collection"));

    let report = nightdump::verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap();
    assert_eq!(report.backup_id, m.backup_id);
    assert_eq!(report.documents, m.totals.documents);
}

#[tokio::test]
async fn verify_catches_a_single_flipped_byte() {
    let source = demo_source().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let m = backup::run(&options(&source.uri), &store, &progress())
        .await
        .unwrap()
        .manifest;
    let path = dir.path().join(&m.archive.key);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = nightdump::verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert_eq!(err.exit_code(), 6);
}

/// Every namespace's content digest is in the manifest, and verify recomputes it from the
/// archive: a backup whose bytes are intact but whose content is not what was read (here the
/// manifest's record of it, changed) fails, naming the namespace.
#[tokio::test]
async fn verify_recomputes_each_namespaces_content_digest() {
    let source = demo_source().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let m = backup::run(&options(&source.uri), &store, &progress())
        .await
        .unwrap()
        .manifest;
    assert!(m
        .namespaces
        .iter()
        .all(|n| n.digest.as_ref().is_some_and(|d| d.len() == 32)));
    nightdump::verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap();
    let manifest_path = dir.path().join(m.backup_id.as_str()).join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let victim = manifest["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .position(|n| n["documents"].as_u64().unwrap() > 0)
        .unwrap();
    let name = format!(
        "{}.{}",
        manifest["namespaces"][victim]["db"].as_str().unwrap(),
        manifest["namespaces"][victim]["collection"]
            .as_str()
            .unwrap()
    );
    manifest["namespaces"][victim]["digest"] = serde_json::json!("0".repeat(32));
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let err = nightdump::verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 6, "{err}");
    assert!(err.to_string().contains("content digest"), "{err}");
    assert!(err.to_string().contains(&name), "{name}: {err}");

    // The index specifications and options the archive records are checked the same way.
    for (field, what) in [
        ("indexes_digest", "index specifications"),
        ("options_digest", "collection options"),
    ] {
        let mut tampered = manifest.clone();
        tampered["namespaces"][victim]["digest"] = original_digest(&m, victim);
        assert_eq!(
            tampered["namespaces"][victim][field].as_str().map(str::len),
            Some(64),
            "{field}"
        );
        tampered["namespaces"][victim][field] = serde_json::json!("0".repeat(64));
        std::fs::write(
            &manifest_path,
            serde_json::to_vec_pretty(&tampered).unwrap(),
        )
        .unwrap();
        let err = nightdump::verify::verify(&store, &Selector::Latest, None)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 6, "{err}");
        assert!(err.to_string().contains(what), "{field}: {err}");
        assert!(err.to_string().contains(&name), "{name}: {err}");
    }
}

fn original_digest(m: &nightdump::manifest::Manifest, i: usize) -> serde_json::Value {
    serde_json::json!(m.namespaces[i].digest)
}

#[tokio::test]
async fn a_duplicate_trigger_for_the_same_schedule_time_makes_one_backup() {
    let source = demo_source().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let mut opts = options(&source.uri);
    opts.scheduled_at = Some(parse_time("2026-11-25T03:00:00Z").unwrap());
    let first = backup::run(&opts, &store, &progress()).await.unwrap();
    assert_eq!(first.manifest.backup_id, "20261125T030000Z");
    let before = files(dir.path());
    let manifest_bytes = std::fs::read(dir.path().join("20261125T030000Z/manifest.json")).unwrap();
    let second = backup::run(&opts, &store, &progress()).await.unwrap();
    assert!(second.already_existed);
    assert_eq!(second.manifest, first.manifest);
    assert_eq!(files(dir.path()), before);
    assert_eq!(
        std::fs::read(dir.path().join("20261125T030000Z/manifest.json")).unwrap(),
        manifest_bytes
    );
}

#[tokio::test]
async fn include_and_exclude_select_namespaces() {
    let source = demo_source().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let all = backup::run(&options(&source.uri), &store, &progress())
        .await
        .unwrap()
        .manifest;
    let first_db = all
        .namespaces
        .iter()
        .find(|n| n.db != "admin")
        .unwrap()
        .db
        .clone();
    let mut opts = options(&source.uri);
    opts.filter.include = vec![format!("{first_db}.*").parse().unwrap()];
    opts.scheduled_at = Some(parse_time("2026-01-01T00:00:00Z").unwrap());
    let only = backup::run(&opts, &store, &progress())
        .await
        .unwrap()
        .manifest;
    assert!(!only.namespaces.is_empty());
    assert!(only.namespaces.iter().all(|n| n.db == first_db));
    let expected = all.namespaces.iter().filter(|n| n.db == first_db).count();
    assert_eq!(only.namespaces.len(), expected);

    let excluded = only.namespaces[0].clone();
    opts.filter.exclude = vec![format!("{}.{}", excluded.db, excluded.collection)
        .parse()
        .unwrap()];
    opts.scheduled_at = Some(parse_time("2026-01-02T00:00:00Z").unwrap());
    let fewer = backup::run(&opts, &store, &progress())
        .await
        .unwrap()
        .manifest;
    assert_eq!(fewer.namespaces.len(), expected - 1);
    assert!(!fewer
        .namespaces
        .iter()
        .any(|n| n.collection == excluded.collection && n.db == excluded.db));
}

/// `latest.json` follows completion: a backup for an earlier schedule time that finishes later
/// holds newer data and becomes the latest; a filtered backup never replaces a full one.
#[tokio::test]
async fn latest_follows_completion_and_never_moves_backwards() {
    let source = demo_source().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let mut opts = options(&source.uri);
    opts.scheduled_at = Some(parse_time("2026-11-25T03:00:00Z").unwrap());
    backup::run(&opts, &store, &progress()).await.unwrap();
    opts.scheduled_at = Some(parse_time("2026-11-20T03:00:00Z").unwrap());
    let later = backup::run(&opts, &store, &progress()).await.unwrap();
    let latest = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(LATEST_KEY)).unwrap()).unwrap()
    };
    assert_eq!(latest()["backup_id"], "20261120T030000Z");
    assert_eq!(latest()["finished_at"], later.manifest.finished_at.as_str());

    let first_db = later
        .manifest
        .namespaces
        .iter()
        .find(|n| n.db != "admin")
        .unwrap()
        .db
        .clone();
    opts.filter.include = vec![format!("{first_db}.*").parse().unwrap()];
    opts.scheduled_at = Some(parse_time("2026-11-26T03:00:00Z").unwrap());
    let partial = backup::run(&opts, &store, &progress()).await.unwrap();
    assert_eq!(partial.latest_warning, None);
    assert_eq!(
        latest()["backup_id"],
        "20261120T030000Z",
        "a filtered backup does not replace a full one"
    );
    let listed = nightdump::catalog::list(&store).await.unwrap();
    assert_eq!(
        listed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        vec!["20261126T030000Z", "20261125T030000Z", "20261120T030000Z"]
    );
    assert_eq!(
        listed[0].selection.as_deref(),
        Some(format!("include {first_db}.*").as_str())
    );
    let (id, _) = nightdump::catalog::resolve(&store, &Selector::Latest)
        .await
        .unwrap();
    assert_eq!(id.to_string(), "20261120T030000Z");
    // status: the full backup is the last success; the newer filtered one is named as such.
    let status = nightdump::catalog::status(&store, None).await.unwrap();
    assert_eq!(status.last_success.unwrap().backup_id, "20261120T030000Z");
    let newer = status.newer_partial.expect("the filtered backup is named");
    assert_eq!(newer.backup_id, "20261126T030000Z");
    assert_eq!(newer.selection, format!("include {first_db}.*"));
}

#[tokio::test]
async fn authentication_is_required_and_a_wrong_password_is_a_clear_error() {
    let server = mongo_test_server::start(mongo_test_server::ServerConfig {
        seed: mongo_test_server::Seed::Demo,
        users: vec![mongo_test_server::User::new("backup", "right-Pa55word")],
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let with_credentials = |password: &str| {
        server
            .uri()
            .replacen("mongodb://", &format!("mongodb://backup:{password}@"), 1)
    };

    let err = backup::run(
        &options(&with_credentials("wrong-Pa55word")),
        &store,
        &progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::MongoAuth { .. }), "{err}");
    assert_eq!(err.exit_code(), 3);
    let text = err.to_string();
    assert!(
        !text.contains("wrong-Pa55word") && !text.contains("right-Pa55word"),
        "{text}"
    );
    assert!(text.contains("backup:***@"), "{text}");
    assert!(files(dir.path()).is_empty());

    let m = backup::run(
        &options(&with_credentials("right-Pa55word")),
        &store,
        &progress(),
    )
    .await
    .unwrap()
    .manifest;
    let manifest_text =
        std::fs::read_to_string(dir.path().join(m.backup_id.clone() + "/manifest.json")).unwrap();
    assert!(!manifest_text.contains("right-Pa55word"));
    assert!(m.totals.documents > 0);
}

#[tokio::test]
async fn a_user_who_may_not_read_a_database_is_refused_with_the_privilege_and_the_fix() {
    let server = mongo_test_server::start(mongo_test_server::ServerConfig {
        users: vec![mongo_test_server::User::new("root", "root-pw")],
        ..Default::default()
    })
    .await
    .unwrap();
    for db in ["app", "other"] {
        server
            .run_command(db, bson::doc! {"insert": "c", "documents": [{"_id": 1}]})
            .await
            .unwrap();
    }
    // It may administer `other` (list it, its collections and their statistics) but not read it.
    server
        .run_command(
            "admin",
            bson::doc! {"createUser": "partial", "pwd": "pw", "roles": [
                {"role": "read", "db": "app"}, {"role": "dbAdmin", "db": "other"},
            ]},
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let uri = |user: &str, password: &str| {
        server
            .uri()
            .replacen("mongodb://", &format!("mongodb://{user}:{password}@"), 1)
    };
    let err = backup::run(&options(&uri("partial", "pw")), &store, &progress())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the user lacks the privilege to read collections on other: grant it the backup or read role"
    );
    assert_eq!(err.exit_code(), 3);
    assert_eq!(err.error_type(), "MongoPermissionDenied");
    assert!(nightdump::catalog::list(&store).await.unwrap().is_empty());

    // The backup role reads everything.
    server
        .run_command(
            "admin",
            bson::doc! {"createUser": "dumper", "pwd": "pw", "roles": ["backup"]},
        )
        .await
        .unwrap();
    let m = backup::run(&options(&uri("dumper", "pw")), &store, &progress())
        .await
        .unwrap()
        .manifest;
    assert!(m
        .namespaces
        .iter()
        .any(|n| n.db == "other" && n.collection == "c"));
}
