//! mongodump directory dumps: the real ones in `../shared/fixtures/mongodump/` (written by
//! mongodump 100.8.0 from the test server's demo data set) restored through the binary and
//! compared document for document, index for index, with the archive restore of the same
//! data; filters, renames, dry run and users on a dump; `verify --dir` on intact and damaged
//! dumps; and a dump under an S3 prefix.

use std::path::{Path, PathBuf};

use mongo_test_server::ServerHandle;

use crate::harness::*;
use crate::restore::{by_id, collections, fresh_target, from_backup, indexes, restore_options};
use crate::support::moto::Moto;

fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// The demo data set (as the fixtures were dumped from) backed up by nightdump and restored
/// from that archive: what a directory restore must equal.
async fn archive_restored_demo() -> ServerHandle {
    let source = demo_replica_set().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    nightdump::backup::run(&options(&source.uri), &store, &progress())
        .await
        .unwrap();
    let target = fresh_target().await;
    nightdump::restore::run(
        &restore_options(&target.uri()),
        from_backup(&store),
        &progress(),
    )
    .await
    .unwrap();
    target
}

async fn restore_dir(dir: &str, target: &ServerHandle, extra: &[&str]) -> Run {
    let uri = target.uri();
    let mut args = vec!["restore", "--dir", dir, "--uri", &uri, "--json", "--quiet"];
    args.extend_from_slice(extra);
    run_nightdump(&args, &[]).await
}

fn report(run: &Run) -> serde_json::Value {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    serde_json::from_str(&run.stdout).expect("the report is JSON")
}

/// Every collection of `db` (views, time-series and all) the same on both targets: options,
/// documents byte for byte, and indexes; `skip` names collections left out of the dump.
async fn assert_same_database(a: &ServerHandle, b: &ServerHandle, db: &str, skip: &[&str]) {
    let (a_colls, b_colls) = (
        collections(&a.uri(), db).await,
        collections(&b.uri(), db).await,
    );
    let names = |c: &std::collections::BTreeMap<String, bson::Document>| {
        c.keys()
            .filter(|n| !skip.contains(&n.as_str()))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a_colls), names(&b_colls), "{db}");
    for name in names(&a_colls) {
        assert_eq!(
            a_colls[&name], b_colls[&name],
            "{db}.{name}: collection options"
        );
        // Views hold no documents; a time-series collection's buckets are the server's own
        // grouping (their ids follow insertion time), compared through its measurements.
        if a_colls[&name].get_str("type") == Ok("view") || name.starts_with("system.buckets.") {
            continue;
        }
        let (da, db_) = (
            by_id(&a.uri(), db, &name).await,
            by_id(&b.uri(), db, &name).await,
        );
        assert_eq!(da.len(), db_.len(), "{db}.{name}: document count");
        assert!(da == db_, "{db}.{name}: documents differ");
        assert_eq!(
            indexes(&a.uri(), db, &name).await,
            indexes(&b.uri(), db, &name).await,
            "{db}.{name}: indexes"
        );
    }
}

#[tokio::test]
async fn a_gzip_directory_dump_with_its_oplog_restores_as_the_archive_does() {
    if !fixtures_present("a_gzip_directory_dump_with_its_oplog_restores_as_the_archive_does") {
        return;
    }
    let expected = archive_restored_demo().await;
    let target = fresh_target().await;
    let dir = fixture("dir-gzip-oplog");
    let run = restore_dir(dir.to_str().unwrap(), &target, &[]).await;
    let r = report(&run);
    assert_eq!(r["oplog"]["applied"], 1, "{r}");
    // The dump's one oplog entry (an index build on app-users.accounts while it ran) is
    // replayed over the metadata's copy of the same index.
    assert!(indexes(&target.uri(), "app-users", "accounts")
        .await
        .contains_key("username_de"));
    for db in ["analytics", "app-users", "shop"] {
        assert_same_database(&expected, &target, db, &[]).await;
    }
}

#[tokio::test]
async fn a_plain_directory_dump_restores_with_filters_renames_and_a_dry_run() {
    if !fixtures_present("a_plain_directory_dump_restores_with_filters_renames_and_a_dry_run") {
        return;
    }
    let expected = archive_restored_demo().await;
    let dir = fixture("dir-plain");
    let dir = dir.to_str().unwrap();
    let target = fresh_target().await;
    let r = report(&restore_dir(dir, &target, &[]).await);
    assert_eq!(r["totals"]["inserted"], 1095, "{r}");
    // Dumped with --excludeCollection=big_documents.
    assert_same_database(&expected, &target, "shop", &["big_documents"]).await;

    // A dry run reads every file and writes nothing.
    let empty = fresh_target().await;
    let dry = report(&restore_dir(dir, &empty, &["--dry-run"]).await);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert!(list_collections(&empty.uri(), "shop").await.is_empty());

    // Filters and renames apply as to an archive.
    let renamed = fresh_target().await;
    let run = restore_dir(
        dir,
        &renamed,
        &["--include", "shop.orders", "--rename", "shop.*=copy.*"],
    )
    .await;
    report(&run);
    let copied = collections(&renamed.uri(), "copy").await;
    assert_eq!(copied.keys().collect::<Vec<_>>(), ["orders"]);
    assert!(
        by_id(&renamed.uri(), "copy", "orders").await
            == by_id(&expected.uri(), "shop", "orders").await
    );
    assert!(list_collections(&renamed.uri(), "shop").await.is_empty());
}

#[tokio::test]
async fn users_of_a_directory_dump_are_restored_with_with_users() {
    if !fixtures_present("users_of_a_directory_dump_are_restored_with_with_users") {
        return;
    }
    let target = fresh_target().await;
    let dir = fixture("dir-gzip-oplog");
    let run = restore_dir(dir.to_str().unwrap(), &target, &["--with-users"]).await;
    report(&run);
    let users = source_documents(&target.uri(), "admin", "system.users").await;
    let ids: Vec<&str> = users.iter().map(|u| u.get_str("_id").unwrap()).collect();
    assert_eq!(ids, ["app-users.reporter"]);
}

/// A copy of a fixture that can be damaged.
fn copy_of(name: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&fixture(name), copy.path());
    copy
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let mut perms = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).unwrap();
        }
    }
}

#[tokio::test]
async fn verify_dir_passes_real_dumps_and_names_each_damaged_namespace() {
    if !fixtures_present("verify_dir_passes_real_dumps_and_names_each_damaged_namespace") {
        return;
    }
    for name in ["dir-gzip-oplog", "dir-plain"] {
        let dir = fixture(name);
        let run = run_nightdump(&["verify", "--dir", dir.to_str().unwrap(), "--json"], &[]).await;
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
        let r: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(r["ok"], true);
        let orders = r["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["namespace"] == "shop.orders")
            .unwrap();
        assert_eq!(orders["documents"], 500, "{orders}");
        assert_eq!(orders["indexes"], 4, "{orders}");
    }

    // A truncated data file, and metadata that names another collection.
    let damaged = copy_of("dir-plain");
    let orders = damaged.path().join("shop/orders.bson");
    let bytes = std::fs::read(&orders).unwrap();
    std::fs::write(&orders, &bytes[..bytes.len() - 100]).unwrap();
    let stores = damaged.path().join("shop/stores.metadata.json");
    let text = std::fs::read_to_string(&stores).unwrap();
    std::fs::write(
        &stores,
        text.replace(
            "\"collectionName\":\"stores\"",
            "\"collectionName\":\"shops\"",
        ),
    )
    .unwrap();
    let run = run_nightdump(&["verify", "--dir", damaged.path().to_str().unwrap()], &[]).await;
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    let error = run.plain_stderr_lines().join("\n");
    assert!(
        error.contains(
            "shop.orders: shop/orders.bson ends inside a document (truncated) at document 499"
        ),
        "{error}"
    );
    assert!(
        error.contains("shop.stores: the metadata names the collection \"shops\""),
        "{error}"
    );
    assert!(
        run.stdout.contains("shop.products") && run.stdout.contains("ok"),
        "{}",
        run.stdout
    );

    // The restore of the damaged dump stops at the damage and says where.
    let target = fresh_target().await;
    let run = restore_dir(
        damaged.path().to_str().unwrap(),
        &target,
        &["--include", "shop.orders"],
    )
    .await;
    assert_ne!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("shop/orders.bson ends inside a document"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_directory_dump_under_an_s3_prefix_verifies_and_restores() {
    if !fixtures_present("a_directory_dump_under_an_s3_prefix_verifies_and_restores") {
        return;
    }
    let moto = Moto::shared();
    let bucket = moto.create_bucket("dump-dir").await;
    let s3 = moto.s3_client().await;
    let root = fixture("dir-gzip-oplog");
    let mut files = Vec::new();
    collect_files(&root, &root, &mut files);
    for (key, path) in &files {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("old-dumps/2024-06-01/{key}"))
            .body(std::fs::read(path).unwrap().into())
            .send()
            .await
            .unwrap();
    }
    let location = format!("s3://{bucket}/old-dumps/2024-06-01");
    let env = aws_env(&moto.endpoint());
    let verify = run_nightdump(&["verify", "--dir", &location], &env).await;
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
    assert!(
        verify
            .stdout
            .contains("is intact: 17 namespaces, 2297 documents"),
        "{}",
        verify.stdout
    );

    let from_s3 = fresh_target().await;
    let uri = from_s3.uri();
    let run = run_nightdump(
        &[
            "restore", "--dir", &location, "--uri", &uri, "--json", "--quiet",
        ],
        &env,
    )
    .await;
    report(&run);
    let from_disk = fresh_target().await;
    report(&restore_dir(root.to_str().unwrap(), &from_disk, &[]).await);
    for db in ["analytics", "app-users", "shop"] {
        assert_same_database(&from_disk, &from_s3, db, &[]).await;
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            let key = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            out.push((key, path));
        }
    }
}
