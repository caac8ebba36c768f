//! Restore end to end: backups and real mongodump archives back into a fresh test server,
//! compared document by document (raw bytes), index by index and option by option.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bson::{Bson, Document, RawDocumentBuf};
use mongo_test_server::{ServerConfig, ServerHandle};
use nightdump::backup;
use nightdump::catalog::Selector;
use nightdump::restore::{self, Action, Input, RestoreOptions, RestoreReport, Status};
use nightdump::secret::ConnectionString;
use nightdump::store::Store;
use nightdump::Error;

use crate::harness::*;

fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

pub(crate) async fn fresh_target() -> ServerHandle {
    mongo_test_server::start(ServerConfig::default())
        .await
        .expect("test server starts")
}

pub(crate) fn restore_options(uri: &str) -> RestoreOptions {
    let mut o = RestoreOptions::new(Some(ConnectionString::parse(uri).unwrap()));
    o.server_selection_timeout = Duration::from_secs(3);
    o
}

pub(crate) fn from_backup(store: &Store) -> Input<'_> {
    Input::Backup {
        store,
        selector: Selector::Latest,
        verify_first: true,
    }
}

/// Documents by `_id` (as text), each as its raw bytes.
pub(crate) async fn by_id(uri: &str, db: &str, coll: &str) -> BTreeMap<String, Vec<u8>> {
    source_documents(uri, db, coll)
        .await
        .into_iter()
        .map(|d: RawDocumentBuf| {
            let id: Bson = d
                .get("_id")
                .unwrap()
                .map(|v| v.to_raw_bson().try_into().unwrap())
                .unwrap_or(Bson::Null);
            (format!("{id:?}"), d.as_bytes().to_vec())
        })
        .collect()
}

fn without(mut d: Document, keys: &[&str]) -> Document {
    for k in keys {
        d.remove(*k);
    }
    d
}

pub(crate) async fn collections(uri: &str, db: &str) -> BTreeMap<String, Document> {
    list_collections(uri, db)
        .await
        .into_iter()
        .map(|c| {
            let name = c.get_str("name").unwrap().to_string();
            (name, without(c, &["info", "idIndex"]))
        })
        .collect()
}

pub(crate) async fn indexes(uri: &str, db: &str, coll: &str) -> BTreeMap<String, Document> {
    list_indexes(uri, db, coll)
        .await
        .into_iter()
        .map(|i| (i.get_str("name").unwrap().to_string(), without(i, &["ns"])))
        .collect()
}

struct Backed {
    source: Source,
    _dir: tempfile::TempDir,
    store: Store,
    manifest: nightdump::manifest::Manifest,
}

async fn backed_up_demo() -> Backed {
    backed_up(demo_source().await).await
}

/// A backup of `source` into a new directory.
async fn backed_up(source: Source) -> Backed {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let outcome = backup::run(&options(&source.uri), &store, &progress())
        .await
        .unwrap();
    Backed {
        source,
        _dir: dir,
        store,
        manifest: outcome.manifest,
    }
}

fn user_namespaces(m: &nightdump::manifest::Manifest) -> Vec<(String, String, String)> {
    m.namespaces
        .iter()
        .filter(|n| n.db != "admin" && n.kind != "oplog")
        .map(|n| (n.db.clone(), n.collection.clone(), n.kind.to_string()))
        .collect()
}

fn row<'a>(report: &'a RestoreReport, target: &str) -> &'a restore::NamespaceReport {
    report
        .namespaces
        .iter()
        .find(|n| n.target == target)
        .unwrap_or_else(|| panic!("{target} not in the report"))
}

#[tokio::test]
async fn the_demo_data_set_round_trips_byte_for_byte() {
    let b = backed_up_demo().await;
    let target = fresh_target().await;
    let report = restore::run(
        &restore_options(&target.uri()),
        from_backup(&b.store),
        &progress(),
    )
    .await
    .unwrap();
    assert_eq!(report.totals.failed, 0);
    assert_eq!(report.totals.skipped, 0);
    let namespaces = user_namespaces(&b.manifest);
    assert!(namespaces.iter().any(|n| n.2 == "view"));
    assert!(namespaces.iter().any(|n| n.2 == "timeseries"));
    let dbs: std::collections::BTreeSet<&String> = namespaces.iter().map(|n| &n.0).collect();
    for db in dbs {
        assert_eq!(
            collections(&b.source.uri, db).await,
            collections(&target.uri(), db).await,
            "listCollections of {db}"
        );
    }
    for (db, coll, kind) in &namespaces {
        let ns = format!("{db}.{coll}");
        let r = row(&report, &ns);
        assert_eq!(r.status, Status::Complete, "{ns}");
        assert_eq!(r.action, Action::Create, "{ns}");
        let (src, dst) = (
            by_id(&b.source.uri, db, coll).await,
            by_id(&target.uri(), db, coll).await,
        );
        assert_eq!(src.len(), dst.len(), "{ns} document count");
        assert!(src == dst, "{ns}: documents differ");
        if kind != "view" {
            assert_eq!(
                indexes(&b.source.uri, db, coll).await,
                indexes(&target.uri(), db, coll).await,
                "indexes of {ns}"
            );
        }
    }
    let users = row(&report, "admin.system.users");
    assert_eq!(users.status, Status::Skipped);
    assert_eq!(users.inserted, 0);
}

#[tokio::test]
async fn restoring_twice_skips_everything_the_second_time() {
    let b = backed_up_demo().await;
    let target = fresh_target().await;
    let opts = restore_options(&target.uri());
    let first = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap();
    let second = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap();
    assert!(first.totals.inserted > 0);
    assert_eq!(second.totals.inserted, 0);
    assert_eq!(second.totals.skipped, first.totals.inserted);
    let orders = row(&second, "shop.orders");
    assert_eq!(orders.action, Action::UseExisting);
    assert_eq!(orders.skipped, 500);
    assert_eq!(by_id(&target.uri(), "shop", "orders").await.len(), 500);
}

#[tokio::test]
async fn include_rename_and_drop() {
    let b = backed_up_demo().await;
    let target = fresh_target().await;
    let mut opts = restore_options(&target.uri());
    opts.filter.include = vec![
        "shop.orders".parse().unwrap(),
        "shop.products".parse().unwrap(),
    ];
    opts.renames = vec!["shop.*=copy.*".parse().unwrap()];
    let report = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap();
    assert_eq!(report.totals.namespaces, 2);
    assert_eq!(row(&report, "copy.orders").inserted, 500);
    assert_eq!(row(&report, "shop.café").status, Status::Skipped);
    let names: Vec<String> = collections(&target.uri(), "copy")
        .await
        .into_keys()
        .collect();
    assert_eq!(names, vec!["orders".to_string(), "products".to_string()]);
    assert!(collections(&target.uri(), "shop").await.is_empty());
    assert_eq!(
        by_id(&b.source.uri, "shop", "products").await,
        by_id(&target.uri(), "copy", "products").await
    );
    let idx = indexes(&target.uri(), "copy", "orders").await;
    assert!(idx.contains_key("customerId_hashed"), "{idx:?}");

    // A document changed on the target: without --drop it stays, with --drop it is restored.
    let client = mongodb::Client::with_uri_str(target.uri()).await.unwrap();
    let orders = client.database("copy").collection::<Document>("orders");
    orders.delete_many(bson::doc! {}).await.unwrap();
    orders
        .insert_one(bson::doc! { "_id": "stranger" })
        .await
        .unwrap();
    opts.drop = true;
    let report = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap();
    assert_eq!(row(&report, "copy.orders").action, Action::DropAndCreate);
    assert_eq!(row(&report, "copy.orders").inserted, 500);
    assert_eq!(
        by_id(&b.source.uri, "shop", "orders").await,
        by_id(&target.uri(), "copy", "orders").await
    );
}

#[tokio::test]
async fn dry_run_writes_nothing_and_counts_documents() {
    let b = backed_up_demo().await;
    let target = fresh_target().await;
    let mut opts = restore_options(&target.uri());
    opts.dry_run = true;
    let report = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(row(&report, "shop.orders").status, Status::Planned);
    assert_eq!(row(&report, "shop.orders").archive_documents, Some(500));
    assert_eq!(report.totals.inserted, 0);
    for db in ["shop", "analytics", "app-users"] {
        assert!(collections(&target.uri(), db).await.is_empty(), "{db}");
    }
    // Without a target at all, too.
    let mut offline = RestoreOptions::new(None);
    offline.dry_run = true;
    let report = restore::run(&offline, from_backup(&b.store), &progress())
        .await
        .unwrap();
    assert_eq!(
        row(&report, "analytics.events").archive_documents,
        Some(1000)
    );
}

#[tokio::test]
async fn mongodump_fixtures_restore_from_files() {
    if !fixtures_present("mongodump_fixtures_restore_from_files") {
        return;
    }
    let target = fresh_target().await;
    let opts = restore_options(&target.uri());
    let report = restore::run(&opts, Input::File(fixture("test.bar.archive")), &progress())
        .await
        .unwrap();
    assert_eq!(row(&report, "test.bar").inserted, 1);
    assert_eq!(by_id(&target.uri(), "test", "bar").await.len(), 1);

    let report = restore::run(
        &opts,
        Input::File(fixture("dump-w-oplog.archive")),
        &progress(),
    )
    .await
    .unwrap();
    assert_eq!(row(&report, "test.foo").inserted, 25);
    assert_eq!(row(&report, "test.foo").status, Status::Complete);
    // The oplog is replayed by default; its inserts are of documents the data already has.
    assert_eq!(row(&report, ".oplog").status, Status::Complete);
    assert_eq!(row(&report, ".oplog").action, Action::Replay);
    assert_eq!(by_id(&target.uri(), "test", "foo").await.len(), 25);
}

#[tokio::test]
async fn bad_format_archive_fails_cleanly_and_restores_nothing() {
    if !fixtures_present("bad_format_archive_fails_cleanly_and_restores_nothing") {
        return;
    }
    let target = fresh_target().await;
    let opts = restore_options(&target.uri());
    let err = restore::run(
        &opts,
        Input::File(fixture("bad-format.archive")),
        &progress(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 6, "{err}");
    assert!(err.to_string().contains("test.ixtest"), "{err}");
    assert!(collections(&target.uri(), "test").await.is_empty());
}

fn gunzip(stored: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(stored)
        .read_to_end(&mut plain)
        .unwrap();
    plain
}

#[tokio::test]
async fn damaged_archives_stop_with_a_clear_error() {
    let b = backed_up_demo().await;
    let path = b._dir.path().join(&b.manifest.archive.key);
    let stored = std::fs::read(&path).unwrap();

    // With a manifest, damage is found before the first write.
    let mut flipped = stored.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    std::fs::write(&path, &flipped).unwrap();
    let target = fresh_target().await;
    let opts = restore_options(&target.uri());
    let err = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(collections(&target.uri(), "shop").await.is_empty());

    // Streaming a plain archive: a flipped byte inside a document fails at its namespace's CRC.
    let plain = gunzip(&stored);
    let mut damaged = plain.clone();
    let at = plain.len() * 3 / 4;
    damaged[at] ^= 0x01;
    let err = restore::run(&opts, from_bytes("flipped", damaged), &progress())
        .await
        .unwrap_err();
    let Some(report) = err.restore_report() else {
        panic!("expected a report, got {err}");
    };
    let text = err.to_string();
    assert!(text.contains("archive") || text.contains("CRC"), "{text}");
    assert!(report
        .namespaces
        .iter()
        .any(|n| n.status != Status::Complete && n.status != Status::Skipped));

    // A truncated stream names the offset.
    let target = fresh_target().await;
    let opts = restore_options(&target.uri());
    let cut = plain[..plain.len() / 2].to_vec();
    let err = restore::run(&opts, from_bytes("cut", cut), &progress())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unexpected end of input"), "{text}");
    assert_eq!(err.exit_code(), 9, "{text}");
}

#[tokio::test]
async fn target_dying_mid_restore_is_reported_exactly() {
    target_dying_mid_restore(backed_up_demo().await).await;
}

/// The same with an archive that carries an oplog: the replay, waiting for the data, is
/// never started and never waited for.
#[tokio::test]
async fn target_dying_mid_restore_is_reported_exactly_with_an_oplog() {
    let b = backed_up(demo_replica_set().await).await;
    assert!(b.manifest.point_in_time.is_some());
    target_dying_mid_restore(b).await;
}

async fn target_dying_mid_restore(b: Backed) {
    let target = fresh_target().await;
    let mut opts = restore_options(&target.uri());
    opts.parallel = 1;
    opts.server_selection_timeout = Duration::from_secs(1);
    target.faults().close_after_commands(30);
    let err = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap_err();
    let Some(report) = err.restore_report() else {
        panic!("expected a report, got {err}");
    };
    assert_eq!(err.exit_code(), 9);
    assert!(report.error.is_some());
    assert!(report
        .namespaces
        .iter()
        .any(|n| matches!(n.status, Status::Partial | Status::NotStarted)));
    target.faults().clear();
    // What the report calls inserted is exactly what the target holds.
    for n in report
        .namespaces
        .iter()
        .filter(|n| n.kind == restore::Kind::Collection)
    {
        if n.status == Status::Skipped {
            continue;
        }
        let (db, coll) = n.target.split_once('.').unwrap();
        let held = by_id(&target.uri(), db, coll).await.len() as u64;
        assert!(
            held >= n.inserted,
            "{}: report says {} inserted, target holds {held}",
            n.target,
            n.inserted
        );
    }
}

// --- users and roles (--with-users), and restore's own bad inputs -------------------------

/// A backup of the demo data on the test server, whose admin database holds a user and the
/// auth-schema document whatever server the other tests use.
async fn backed_up_demo_with_users() -> Backed {
    backed_up(demo_test_server().await).await
}

async fn admin_collection_names(uri: &str) -> Vec<String> {
    collections(uri, "admin").await.into_keys().collect()
}

#[tokio::test]
async fn with_users_merges_the_archived_users_into_the_target() {
    let b = backed_up_demo_with_users().await;
    let source_users = by_id(&b.source.uri, "admin", "system.users").await;
    assert_eq!(source_users.len(), 1, "the demo data has one user");

    // Without --with-users they are skipped, and said to be.
    let target = fresh_target().await;
    let report = restore::run(
        &restore_options(&target.uri()),
        from_backup(&b.store),
        &progress(),
    )
    .await
    .unwrap();
    let users = row(&report, "admin.system.users");
    assert_eq!(users.status, Status::Skipped);
    assert_eq!(users.skip_reason, Some(restore::SkipReason::UsersAndRoles));
    assert!(report.table().contains("only with --with-users"));
    assert!(by_id(&target.uri(), "admin", "system.users")
        .await
        .is_empty());

    // With it, the user arrives as it was, and the temporary collections are gone.
    let mut opts = restore_options(&target.uri());
    opts.with_users = true;
    let report = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap();
    let users = row(&report, "admin.system.users");
    assert_eq!(users.action, Action::Merge);
    assert_eq!(users.status, Status::Complete);
    assert_eq!((users.inserted, users.skipped), (1, 0));
    assert_eq!(users.archive_documents, Some(1));
    let version = row(&report, "admin.system.version");
    assert_eq!(version.status, Status::Skipped);
    assert_eq!(version.skip_reason, Some(restore::SkipReason::AuthSchema));
    assert_eq!(
        by_id(&target.uri(), "admin", "system.users").await,
        source_users
    );
    let admin = admin_collection_names(&target.uri()).await;
    assert!(
        !admin.iter().any(|n| n.starts_with("temp")),
        "temporary collections left: {admin:?}"
    );
    // The rest was restored alongside (already there from the first run: skipped).
    assert_eq!(row(&report, "shop.orders").skipped, 500);

    // A user changed on the target is kept without --drop, replaced with it.
    let client = mongodb::Client::with_uri_str(target.uri()).await.unwrap();
    let system_users = client
        .database("admin")
        .collection::<Document>("system.users");
    system_users
        .update_one(
            bson::doc! {},
            bson::doc! { "$set": { "customData": { "changed": true } } },
        )
        .await
        .unwrap();
    let changed = by_id(&target.uri(), "admin", "system.users").await;
    assert_ne!(changed, source_users);
    let report = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap();
    let users = row(&report, "admin.system.users");
    assert_eq!((users.inserted, users.skipped), (0, 1));
    assert_eq!(by_id(&target.uri(), "admin", "system.users").await, changed);
    opts.drop = true;
    let report = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap();
    let users = row(&report, "admin.system.users");
    assert_eq!((users.inserted, users.skipped), (1, 0));
    assert_eq!(
        by_id(&target.uri(), "admin", "system.users").await,
        source_users
    );
}

/// #13.3: `--with-users --drop` run by a user the archive does not hold would remove it half
/// way, lock the restore out and leave the staging collection (every restored user's SCRAM
/// keys) behind. It is refused before any write unless allowed; the dry run and the report
/// list every user added, replaced (with the role change) and removed; a staging collection
/// that cannot be dropped fails the run, naming the credential material.
#[tokio::test]
async fn with_users_drop_never_locks_out_the_connected_user_and_lists_every_change() {
    let b = backed_up_demo_with_users().await;
    let root = || {
        vec![bson::Bson::Document(
            bson::doc! { "role": "root", "db": "admin" },
        )]
    };
    let target = secured_with("opsadmin", "ops-pw", root()).await;
    target
        .run_command(
            "app-users",
            bson::doc! { "createUser": "reporter", "pwd": "x", "roles": [{ "role": "readWrite", "db": "app-users" }] },
        )
        .await
        .unwrap();
    let before = by_id(
        &as_user(&target, "root", "root-pw"),
        "admin",
        "system.users",
    )
    .await;
    let mut opts = restore_options(&as_user(&target, "opsadmin", "ops-pw"));
    opts.with_users = true;
    opts.drop = true;

    opts.dry_run = true;
    let plan = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap();
    let changes: Vec<String> = plan.users.iter().map(|c| c.describe()).collect();
    assert!(
        changes.contains(
            &"user reporter@app-users: replaced, roles readWrite@app-users -> read@app-users"
                .to_string()
        ),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("user opsadmin@admin: removed")),
        "{changes:?}"
    );
    assert!(
        plan.table().contains("user opsadmin@admin: removed"),
        "{}",
        plan.table()
    );

    opts.dry_run = false;
    let err = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(
        err.to_string()
            .contains("would remove opsadmin@admin, the user this restore is connected as"),
        "{err}"
    );
    assert_eq!(
        by_id(
            &as_user(&target, "root", "root-pw"),
            "admin",
            "system.users"
        )
        .await,
        before
    );
    assert!(
        !admin_collection_names(&as_user(&target, "root", "root-pw"))
            .await
            .iter()
            .any(|n| n.starts_with("temp"))
    );

    // Allowed: the user goes, the restore loses its access, and says what it left behind.
    opts.allow_dropping_connected_user = true;
    let err = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("holds the restored users' credential material"),
        "{text}"
    );
    assert!(text.contains("admin.tempusers"), "{text}");

    // Without --drop nothing is removed or replaced, and the report says what was kept.
    let target = secured_with("opsadmin", "ops-pw", root()).await;
    target
        .run_command(
            "app-users",
            bson::doc! { "createUser": "reporter", "pwd": "x", "roles": [{ "role": "readWrite", "db": "app-users" }] },
        )
        .await
        .unwrap();
    let mut opts = restore_options(&as_user(&target, "opsadmin", "ops-pw"));
    opts.with_users = true;
    let report = restore::run(&opts, from_backup(&b.store), &progress())
        .await
        .unwrap();
    let changes: Vec<String> = report.users.iter().map(|c| c.describe()).collect();
    assert_eq!(
        changes,
        ["user reporter@app-users: kept, roles readWrite@app-users"],
        "{changes:?}"
    );
    assert!(
        !admin_collection_names(&as_user(&target, "root", "root-pw"))
            .await
            .iter()
            .any(|n| n.starts_with("temp"))
    );
}

fn raw(d: Document) -> Vec<u8> {
    let mut out = Vec::new();
    d.to_writer(&mut out).unwrap();
    out
}

/// A plain archive: a user, the auth-schema document at `schema`, and two documents of
/// `test.c`, in mongodump's order.
fn archive_with_auth_schema(schema: i32) -> Vec<u8> {
    use nightdump_archive::{ArchiveWriter, Header, Namespace, PreludeEntry};
    let entry = |db: &str, coll: &str| PreludeEntry {
        db: db.into(),
        collection: coll.into(),
        metadata: String::new(),
        size: 0,
        kind: "collection".into(),
    };
    let prelude = [
        entry("admin", "system.users"),
        entry("admin", "system.version"),
        entry("test", "c"),
    ];
    let mut w =
        ArchiveWriter::new(Vec::new(), &Header::new("7.0.14", "100.10.0"), &prelude).unwrap();
    let user = bson::doc! {
        "_id": "test.alice", "user": "alice", "db": "test",
        "credentials": {}, "roles": [{ "role": "read", "db": "test" }],
    };
    let version = bson::doc! { "_id": "authSchema", "currentVersion": schema };
    for (ns, docs) in [
        (Namespace::new("admin", "system.users"), raw(user)),
        (Namespace::new("admin", "system.version"), raw(version)),
        (
            Namespace::new("test", "c"),
            [raw(bson::doc! { "_id": 1 }), raw(bson::doc! { "_id": 2 })].concat(),
        ),
    ] {
        w.write_documents(&ns, &docs).unwrap();
        w.finish_namespace(&ns).unwrap();
    }
    w.finish().unwrap()
}

fn from_bytes(name: &str, bytes: Vec<u8>) -> Input<'static> {
    Input::Reader {
        name: name.into(),
        reader: Box::new(std::io::Cursor::new(bytes)),
    }
}

#[tokio::test]
async fn an_auth_schema_mismatch_is_refused_before_any_write() {
    let target = fresh_target().await;
    let mut opts = restore_options(&target.uri());
    opts.with_users = true;
    let err = restore::run(
        &opts,
        from_bytes("schema-1", archive_with_auth_schema(1)),
        &progress(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    let text = err.to_string();
    assert!(text.contains("auth schema version 1"), "{text}");
    assert!(text.contains("auth schema version 5"), "{text}");
    assert!(collections(&target.uri(), "test").await.is_empty());
    assert!(by_id(&target.uri(), "admin", "system.users")
        .await
        .is_empty());
    let admin = admin_collection_names(&target.uri()).await;
    assert!(!admin.iter().any(|n| n.starts_with("temp")), "{admin:?}");

    // The same archive at the target's version restores.
    let report = restore::run(
        &opts,
        from_bytes("schema-5", archive_with_auth_schema(5)),
        &progress(),
    )
    .await
    .unwrap();
    assert_eq!(row(&report, "admin.system.users").inserted, 1);
    assert_eq!(row(&report, "test.c").inserted, 2);
    let users = by_id(&target.uri(), "admin", "system.users").await;
    assert_eq!(
        users.keys().collect::<Vec<_>>(),
        vec!["String(\"test.alice\")"]
    );
}

#[tokio::test]
async fn a_wrong_password_for_the_target_is_an_auth_error_without_the_password() {
    if !fixtures_present("a_wrong_password_for_the_target_is_an_auth_error_without_the_password") {
        return;
    }
    let target = mongo_test_server::start(ServerConfig {
        users: vec![mongo_test_server::User::new("u", "right")],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let uri = |password: &str| {
        format!(
            "mongodb://u:{password}@{}/?directConnection=true",
            target.addr()
        )
    };
    let err = restore::run(
        &restore_options(&uri("wrong-secret")),
        Input::File(fixture("test.bar.archive")),
        &progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::MongoAuth { .. }), "{err}");
    assert_eq!(err.exit_code(), 3);
    assert!(!err.to_string().contains("wrong-secret"), "{err}");

    // The right password restores, so the failure above was the password.
    let report = restore::run(
        &restore_options(&uri("right")),
        Input::File(fixture("test.bar.archive")),
        &progress(),
    )
    .await
    .unwrap();
    assert_eq!(row(&report, "test.bar").inserted, 1);
}

/// A server requiring authentication, with `root:root-pw` and one more user made by it.
async fn secured_with(name: &str, password: &str, roles: bson::Array) -> ServerHandle {
    let server = mongo_test_server::start(ServerConfig {
        users: vec![mongo_test_server::User::new("root", "root-pw")],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    server
        .run_command(
            "admin",
            bson::doc! {"createUser": name, "pwd": password, "roles": roles},
        )
        .await
        .unwrap();
    server
}

fn as_user(server: &ServerHandle, name: &str, password: &str) -> String {
    format!(
        "mongodb://{name}:{password}@{}/?directConnection=true",
        server.addr()
    )
}

/// Restores `test.bar.archive` into `target` as `user`.
async fn restore_fixture_as(
    target: &ServerHandle,
    user: &str,
    password: &str,
) -> nightdump::Result<RestoreReport> {
    restore::run(
        &restore_options(&as_user(target, user, password)),
        Input::File(fixture("test.bar.archive")),
        &progress(),
    )
    .await
}

#[tokio::test]
async fn a_read_only_user_is_refused_with_the_privilege_and_the_fix_before_any_write() {
    if !fixtures_present(
        "a_read_only_user_is_refused_with_the_privilege_and_the_fix_before_any_write",
    ) {
        return;
    }
    let target = secured_with(
        "reader",
        "reader-pw",
        vec![Bson::Document(bson::doc! {"role": "read", "db": "test"})],
    )
    .await;
    let err = restore_fixture_as(&target, "reader", "reader-pw")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the user lacks the privilege to create collections on test: grant it the restore or readWrite role"
    );
    assert!(matches!(err, Error::MongoPermission { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 3);
    assert!(!err.to_string().contains("reader-pw"));
    // Nothing was created.
    let names = target
        .run_command("test", bson::doc! {"listCollections": 1, "nameOnly": true})
        .await
        .unwrap();
    let batch = names
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    assert!(batch.is_empty(), "{batch:?}");

    // A user with no role on the target database at all fails on the first read, and is
    // also told what a restore needs.
    let target = secured_with(
        "stranger",
        "pw",
        vec![Bson::Document(
            bson::doc! {"role": "read", "db": "elsewhere"},
        )],
    )
    .await;
    let err = restore_fixture_as(&target, "stranger", "pw")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the user lacks the privilege to list collections on test: grant it the restore or readWrite role"
    );

    // The restore role is enough.
    let target = secured_with("loader", "pw", vec![Bson::String("restore".into())]).await;
    let report = restore_fixture_as(&target, "loader", "pw").await.unwrap();
    assert_eq!(row(&report, "test.bar").inserted, 1);
}

#[tokio::test]
async fn users_restored_with_users_log_in_with_their_original_password() {
    // Server A: a user with a password, and data it may read.
    let a = secured_with(
        "ann",
        "ann-Pa55",
        vec![Bson::Document(bson::doc! {"role": "read", "db": "app"})],
    )
    .await;
    a.run_command("app", bson::doc! {"insert": "c", "documents": [{"_id": 1}]})
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    backup::run(
        &options(&as_user(&a, "root", "root-pw")),
        &store,
        &progress(),
    )
    .await
    .unwrap();

    // Server B: fresh, with only its own administrator.
    let b = mongo_test_server::start(ServerConfig {
        users: vec![mongo_test_server::User::new("root", "root-pw")],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut opts = restore_options(&as_user(&b, "root", "root-pw"));
    opts.with_users = true;
    let report = restore::run(&opts, from_backup(&store), &progress())
        .await
        .unwrap();
    assert_eq!(row(&report, "admin.system.users").inserted, 1);

    let ann = |password: &str| {
        format!(
            "mongodb://ann:{password}@{}/?directConnection=true&authSource=admin",
            b.addr()
        )
    };
    let docs = source_documents(&ann("ann-Pa55"), "app", "c").await;
    assert_eq!(docs.len(), 1);
    let client = mongodb::Client::with_uri_str(ann("not-her-password"))
        .await
        .unwrap();
    let err = client
        .database("app")
        .run_command(bson::doc! {"find": "c"})
        .await
        .unwrap_err();
    assert!(
        matches!(*err.kind, mongodb::error::ErrorKind::Authentication { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_document_over_16_mib_stops_the_restore_at_its_namespace_and_offset() {
    use nightdump_archive::{ArchiveWriter, Header, Namespace, PreludeEntry, MAX_DOCUMENT_SIZE};
    let entry = |coll: &str| PreludeEntry {
        db: "test".into(),
        collection: coll.into(),
        metadata: String::new(),
        size: 0,
        kind: "collection".into(),
    };
    let mut w = ArchiveWriter::new(
        Vec::new(),
        &Header::new("7.0.14", "100.10.0"),
        &[entry("a"), entry("b"), entry("c")],
    )
    .unwrap();
    let marker = raw(bson::doc! { "_id": "the document whose length becomes 16 MiB + 1" });
    for (coll, docs) in [
        (
            "a",
            [raw(bson::doc! { "_id": 1 }), raw(bson::doc! { "_id": 2 })].concat(),
        ),
        ("b", [raw(bson::doc! { "_id": 1 }), marker.clone()].concat()),
        ("c", raw(bson::doc! { "_id": 1 })),
    ] {
        let ns = Namespace::new("test", coll);
        w.write_documents(&ns, &docs).unwrap();
        w.finish_namespace(&ns).unwrap();
    }
    let mut bytes = w.finish().unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|win| win == marker.as_slice())
        .unwrap();
    bytes[at..at + 4].copy_from_slice(&((MAX_DOCUMENT_SIZE + 1) as u32).to_le_bytes());

    let target = fresh_target().await;
    let err = restore::run(
        &restore_options(&target.uri()),
        from_bytes("oversized", bytes),
        &progress(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("while reading test.b"), "{text}");
    assert!(
        text.contains(&format!("{}", MAX_DOCUMENT_SIZE + 1)),
        "{text}"
    );
    assert!(text.contains(&format!("(offset {at})")), "{text}");
    let Some(report) = err.restore_report() else {
        panic!("expected a report, got {err}");
    };
    assert_ne!(row(report, "test.b").status, Status::Complete);
    assert_ne!(row(report, "test.c").status, Status::Complete);
    // Nothing at or after the oversized document reached the target.
    assert!(by_id(&target.uri(), "test", "c").await.is_empty());
    let b_ids: Vec<String> = by_id(&target.uri(), "test", "b")
        .await
        .into_keys()
        .collect();
    assert!(b_ids.iter().all(|id| id == "Int32(1)"), "{b_ids:?}");
}
