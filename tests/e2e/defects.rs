//! Regression tests for defects found by adversarial probes, one per defect and named after
//! it. Most run the real binary, so they can be pointed at an older build
//! (`NIGHTDUMP_BIN_UNDER_TEST`) to see them fail there.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Document};
use mongo_test_server::{ServerConfig, ServerHandle, User};
use nightdump::backup;
use nightdump::catalog::Selector;
use nightdump::restore::{self, Input, RestoreOptions};
use nightdump::secret::ConnectionString;

use crate::harness::*;

async fn server(replica_set: bool) -> ServerHandle {
    mongo_test_server::start(ServerConfig {
        replica_set: replica_set.then(|| "rs0".to_string()),
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

async fn insert(server: &ServerHandle, db: &str, coll: &str, docs: Vec<Document>) {
    for chunk in docs.chunks(500) {
        server
            .run_command(db, doc! { "insert": coll, "documents": chunk.to_vec() })
            .await
            .unwrap();
    }
}

fn numbered(n: i64, pad: usize) -> Vec<Document> {
    (0..n)
        .map(|i| doc! { "_id": i, "pad": "x".repeat(pad) })
        .collect()
}

async fn count(uri: &str, db: &str, coll: &str) -> u64 {
    mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database(db)
        .collection::<Document>(coll)
        .count_documents(doc! {})
        .await
        .unwrap()
}

async fn collection_names(uri: &str, db: &str) -> BTreeSet<String> {
    list_collections(uri, db)
        .await
        .iter()
        .map(|c| c.get_str("name").unwrap().to_string())
        .collect()
}

fn dir_arg(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

/// `backup` of a test server into a directory through the binary: `extra` after the
/// common arguments; the exit code is checked by the caller.
async fn cli_backup(uri: &str, dir: &Path, extra: &[&str]) -> Run {
    let dest = dir_arg(dir);
    let mut args = vec![
        "backup",
        "--uri",
        uri,
        "--to",
        &dest,
        "--allow-inconsistent",
        "--quiet",
        "--json",
        // Errors only: the standalone's "not consistent" warning is consented to above.
        "--log",
        "error",
    ];
    args.extend_from_slice(extra);
    run_nightdump(&args, &[]).await
}

fn backup_id(run: &Run) -> String {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    v["backup_id"].as_str().unwrap().to_string()
}

fn manifest(dir: &Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(id).join("manifest.json")).unwrap()).unwrap()
}

fn write_manifest(dir: &Path, id: &str, m: &serde_json::Value) {
    std::fs::write(
        dir.join(id).join("manifest.json"),
        serde_json::to_vec_pretty(m).unwrap(),
    )
    .unwrap();
}

fn error_line(run: &Run) -> String {
    let lines = run.plain_stderr_lines();
    assert_eq!(lines.len(), 1, "one line expected:\n{}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    lines[0].to_string()
}

/// #12.1: a filtered backup of a replica set keeps only its own namespaces' oplog entries,
/// and its restore leaves every other namespace of the target alone, while a client deletes
/// from another database during the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_restore_never_deletes_the_targets_own_data() {
    let source = server(true).await;
    let uri = source.uri();
    insert(&source, "shop", "orders", numbered(200, 100)).await;
    for i in 0..4 {
        insert(&source, "shop", &format!("c{i}"), numbered(50, 50)).await;
    }
    insert(&source, "other", "victim", numbered(200, 10)).await;
    // The writer deletes from other.victim and creates other.c, and adds orders, throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let deleted = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, deleted, uri) = (stop.clone(), deleted.clone(), uri.clone());
        tokio::spawn(async move {
            let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
            let mut i: i64 = 0;
            while !stop.load(Ordering::Relaxed) && i < 190 {
                let other = client.database("other");
                other
                    .collection::<Document>("victim")
                    .delete_one(doc! { "_id": i })
                    .await
                    .unwrap();
                other
                    .collection::<Document>("c")
                    .insert_one(doc! { "_id": i })
                    .await
                    .unwrap();
                client
                    .database("shop")
                    .collection::<Document>("orders")
                    .insert_one(doc! { "_id": 1000 + i })
                    .await
                    .unwrap();
                deleted.fetch_add(1, Ordering::Relaxed);
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    while deleted.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    source.faults().delay_batches(Duration::from_millis(40));
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let mut opts = options(&uri);
    opts.allow_inconsistent = false;
    opts.parallel = 1;
    opts.filter.include = vec!["shop.*".parse().unwrap()];
    let before = deleted.load(Ordering::Relaxed);
    let outcome = backup::run(&opts, &store, &progress()).await.unwrap();
    let during = deleted.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    source.faults().clear();
    assert!(during > 3, "the writer worked during the backup ({during})");
    let pit = outcome
        .manifest
        .point_in_time
        .clone()
        .expect("point in time");
    assert!(
        pit.oplog_entries > 0,
        "the orders written meanwhile are in the oplog"
    );
    assert_eq!(outcome.manifest.selection.include, ["shop.*"]);

    // The archive's oplog holds shop's entries only, transactions included.
    let archive = std::fs::read(dir.path().join(&outcome.manifest.archive.key)).unwrap();
    let contents = read_archive(&archive);
    let entries = &contents.docs[".oplog"];
    assert_eq!(entries.len() as u64, pit.oplog_entries);
    for raw in entries {
        let entry = Document::try_from(raw.as_ref()).unwrap();
        let ns = entry.get_str("ns").unwrap();
        assert!(
            ns.starts_with("shop."),
            "an entry of another namespace: {entry}"
        );
    }

    // A target owning other.victim keeps all of it, and gets no fragment of other.c.
    let target = server(false).await;
    insert(&target, "other", "victim", numbered(200, 10)).await;
    let mut ropts = RestoreOptions::new(Some(ConnectionString::parse(&target.uri()).unwrap()));
    ropts.dry_run = true;
    let dry = restore::run(&ropts, latest_input(&store), &progress())
        .await
        .unwrap();
    let touched: Vec<&String> = dry.oplog.as_ref().unwrap().namespaces.keys().collect();
    assert!(!touched.is_empty());
    assert!(
        touched.iter().all(|ns| ns.starts_with("shop.")),
        "{touched:?}"
    );
    assert!(
        dry.headline().contains("touches shop."),
        "{}",
        dry.headline()
    );
    ropts.dry_run = false;
    let report = restore::run(&ropts, latest_input(&store), &progress())
        .await
        .unwrap();
    assert!(report.oplog.as_ref().unwrap().applied > 0);
    assert_eq!(count(&target.uri(), "other", "victim").await, 200);
    assert!(!collection_names(&target.uri(), "other").await.contains("c"));
    // The orders as of the point in time: more than the seeded ones, no more than now.
    let restored = count(&target.uri(), "shop", "orders").await;
    assert!(restored > 200 && restored <= count(&uri, "shop", "orders").await);
}

fn latest_input(store: &nightdump::store::Store) -> Input<'_> {
    Input::Backup {
        store,
        selector: Selector::Latest,
        verify_first: true,
    }
}

/// #12.2: a backup whose manifest cannot be read is incomplete for every command, so
/// `prune --keep-last 1` keeps the older, complete one.
#[tokio::test]
async fn prune_never_removes_the_only_restorable_backup() {
    let source = demo_test_server().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    let older = backup_id(
        &cli_backup(
            &source.uri,
            dir.path(),
            &["--scheduled-at", "2026-11-24T03:00:00Z"],
        )
        .await,
    );
    let newer = backup_id(
        &cli_backup(
            &source.uri,
            dir.path(),
            &["--scheduled-at", "2026-11-25T03:00:00Z"],
        )
        .await,
    );
    std::fs::write(
        dir.path().join(&newer).join("manifest.json"),
        br#"{"schema_version": 1, "truncated"#,
    )
    .unwrap();
    let prune = run_nightdump(&["prune", "--from", &d, "--keep-last", "1", "--yes"], &[]).await;
    assert_eq!(prune.code, Some(0), "{}", prune.stderr);
    assert!(
        dir.path().join(&older).join("manifest.json").exists(),
        "{}",
        prune.stdout
    );
    let list = run_nightdump(&["list", "--from", &d, "--json"], &[]).await;
    let listed: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let status_of = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .map(|b| b["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status_of(&older).as_deref(), Some("complete"));
    // The newer one is young, so kept as possibly running; never counted as a backup.
    assert_eq!(status_of(&newer).as_deref(), Some("incomplete"), "{listed}");
    let verify = run_nightdump(&["verify", "latest", "--from", &d], &[]).await;
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
    assert!(verify.stdout.contains(&older), "{}", verify.stdout);
}

/// #12.3: two runs by hand in the same second each make their own backup of what they were
/// asked; a failing run never passes for the earlier success; a scheduled duplicate of
/// another selection or source is an error.
#[tokio::test]
async fn a_second_backup_in_the_same_second_backs_up_what_it_was_asked() {
    let source = server(false).await;
    insert(&source, "shop", "a", numbered(3, 1)).await;
    insert(&source, "crm", "b", numbered(3, 1)).await;
    let uri = source.uri();
    let dir = tempfile::tempdir().unwrap();
    let (shop, crm) = tokio::join!(
        cli_backup(&uri, dir.path(), &["--include", "shop.*"]),
        cli_backup(&uri, dir.path(), &["--include", "crm.*"]),
    );
    let (shop, crm) = (backup_id(&shop), backup_id(&crm));
    assert_ne!(shop, crm);
    let collections = |id: &str| -> Vec<String> {
        manifest(dir.path(), id)["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["db"] != "admin")
            .map(|n| {
                format!(
                    "{}.{}",
                    n["db"].as_str().unwrap(),
                    n["collection"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(collections(&shop), ["shop.a"]);
    assert_eq!(collections(&crm), ["crm.b"]);

    let unreachable = format!("mongodb://127.0.0.1:{}/", closed_port());
    let failed = cli_backup(&unreachable, dir.path(), &["--connect-timeout", "2s"]).await;
    assert_eq!(failed.code, Some(3), "{}", failed.stderr);

    let at = [
        "--scheduled-at",
        "2026-11-25T03:00:00Z",
        "--include",
        "shop.*",
    ];
    let first = backup_id(&cli_backup(&uri, dir.path(), &at).await);
    let again = cli_backup(&uri, dir.path(), &at).await;
    assert_eq!(backup_id(&again), first);
    let v: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(v["already_existed"], true);
    let other_selection = cli_backup(
        &uri,
        dir.path(),
        &[
            "--scheduled-at",
            "2026-11-25T03:00:00Z",
            "--include",
            "crm.*",
        ],
    )
    .await;
    assert_eq!(other_selection.code, Some(2), "{}", other_selection.stderr);
    assert!(error_line(&other_selection).contains("already exists with selection 'include shop.*'"));
    let elsewhere = server(false).await;
    let other_source = cli_backup(&elsewhere.uri(), dir.path(), &at).await;
    assert_eq!(other_source.code, Some(2), "{}", other_source.stderr);
    assert!(error_line(&other_source).contains("already exists of 127.0.0.1:"));
}

/// #12.4 and #13.1: a backup named for a time far ahead (planted, as an older version could
/// make one) neither stays `latest` nor pushes real backups out of `--keep-within`.
#[tokio::test]
async fn a_future_dated_backup_pins_neither_latest_nor_retention() {
    let source = demo_test_server().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    let refused = cli_backup(
        &source.uri,
        dir.path(),
        &["--scheduled-at", "2099-01-01T00:00:00Z"],
    )
    .await;
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(error_line(&refused).contains("is in the future"));

    let real = backup_id(&cli_backup(&source.uri, dir.path(), &[]).await);
    let future = "20990101T000000Z";
    let mut m = manifest(dir.path(), &real);
    let archive_name = m["archive"]["key"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    std::fs::create_dir(dir.path().join(future)).unwrap();
    std::fs::copy(
        dir.path().join(&real).join(&archive_name),
        dir.path().join(future).join(&archive_name),
    )
    .unwrap();
    m["backup_id"] = future.into();
    m["archive"]["key"] = format!("{future}/{archive_name}").into();
    m["finished_at"] = "2026-11-01T03:00:00Z".into();
    write_manifest(dir.path(), future, &m);
    let newest = backup_id(&cli_backup(&source.uri, dir.path(), &[]).await);

    let status = run_nightdump(&["status", "--from", &d, "--json"], &[]).await;
    let s: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(s["last_success"]["backup_id"], newest.as_str(), "{s}");
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("latest.json")).unwrap()).unwrap();
    assert_eq!(latest["backup_id"], newest.as_str());
    let prune = run_nightdump(
        &["prune", "--from", &d, "--keep-within", "30d", "--json"],
        &[],
    )
    .await;
    assert_eq!(prune.code, Some(0), "{}", prune.stderr);
    let p: serde_json::Value = serde_json::from_str(&prune.stdout).unwrap();
    let removed: Vec<&str> = p["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(removed.is_empty(), "{p}");
}

/// #12.5: a document altered in the archive is restored by `--no-verify-first` before the
/// namespace's checksum fails; the namespace is then reported damaged, and nothing advises a
/// rerun that would keep it as "already present".
#[tokio::test]
async fn a_namespace_whose_checksum_fails_is_reported_damaged() {
    let source = server(false).await;
    let docs: Vec<Document> = (0..1500)
        .map(|i| doc! { "_id": i as i64, "v": format!("MARK{i:05}") })
        .collect();
    insert(&source, "dmg", "c", docs).await;
    let dir = tempfile::tempdir().unwrap();
    let id = backup_id(&cli_backup(&source.uri(), dir.path(), &[]).await);
    let stored = std::fs::read(dir.path().join(&id).join("dump.archive.gz")).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&stored[..]),
        &mut plain,
    )
    .unwrap();
    let at = plain.windows(9).position(|w| w == b"MARK00010").unwrap();
    plain[at] = b'N';
    let file = dir.path().join("damaged.archive");
    std::fs::write(&file, &plain).unwrap();

    let target = server(false).await;
    let run = run_nightdump(
        &[
            "restore",
            "--archive",
            file.to_str().unwrap(),
            "--uri",
            &target.uri(),
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(9), "{}", run.stderr);
    let line = error_line(&run);
    assert!(line.contains("The archive is damaged"), "{line}");
    assert!(line.contains("drop dmg.c on the target"), "{line}");
    assert!(
        !line.contains("documents already restored are skipped"),
        "{line}"
    );
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let row = report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["target"] == "dmg.c")
        .unwrap();
    assert_eq!(row["status"], "damaged", "{row}");
}

/// #12.6: `cat` and `restore --dry-run` check the stored bytes' size and SHA-256 against
/// the manifest and exit 6.
#[tokio::test]
async fn cat_and_a_dry_run_refuse_an_archive_that_is_not_the_manifests() {
    let source = demo_test_server().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    let a = backup_id(
        &cli_backup(
            &source.uri,
            dir.path(),
            &["--scheduled-at", "2026-11-24T03:00:00Z"],
        )
        .await,
    );
    let b = backup_id(
        &cli_backup(
            &source.uri,
            dir.path(),
            &["--scheduled-at", "2026-11-25T03:00:00Z"],
        )
        .await,
    );
    let key = dir.path().join(&b).join("dump.archive.gz");
    let original = std::fs::read(&key).unwrap();
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    std::fs::write(&key, &flipped).unwrap();
    let cat = run_nightdump(&["cat", &b, "--from", &d], &[]).await;
    assert_eq!(cat.code, Some(6), "{}", cat.stderr);
    assert!(error_line(&cat).contains("SHA-256"));

    std::fs::copy(dir.path().join(&a).join("dump.archive.gz"), &key).unwrap();
    let dry = run_nightdump(&["restore", &b, "--from", &d, "--dry-run"], &[]).await;
    assert_eq!(dry.code, Some(6), "{}", dry.stderr);
    let dry = run_nightdump(
        &[
            "restore",
            &b,
            "--from",
            &d,
            "--dry-run",
            "--no-verify-first",
        ],
        &[],
    )
    .await;
    assert_eq!(dry.code, Some(6), "{}", dry.stderr);
    std::fs::write(&key, &original).unwrap();
    let cat = run_nightdump(&["cat", &b, "--from", &d], &[]).await;
    assert_eq!(cat.code, Some(0), "{}", cat.stderr);
}

/// #12.7: `verify` fails a manifest whose totals are not its namespaces' sums, one that is
/// another backup's, and one that describes another backup's archive.
#[tokio::test]
async fn verify_refuses_a_manifest_that_describes_something_else() {
    let source = demo_test_server().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    let a = backup_id(
        &cli_backup(
            &source.uri,
            dir.path(),
            &["--scheduled-at", "2026-11-24T03:00:00Z"],
        )
        .await,
    );
    let b = backup_id(
        &cli_backup(
            &source.uri,
            dir.path(),
            &["--scheduled-at", "2026-11-25T03:00:00Z"],
        )
        .await,
    );
    let original = manifest(dir.path(), &b);
    let mut totals = original.clone();
    totals["totals"]["documents"] = (totals["totals"]["documents"].as_u64().unwrap() + 1).into();
    let mut other_archive = original.clone();
    other_archive["archive"] = manifest(dir.path(), &a)["archive"].clone();
    for (m, needle) in [
        (totals, "not the sums of its namespaces"),
        (
            manifest(dir.path(), &a),
            &format!("is backup {a}'s") as &str,
        ),
        (other_archive, "not this backup's"),
    ] {
        write_manifest(dir.path(), &b, &m);
        let verify = run_nightdump(&["verify", &b, "--from", &d], &[]).await;
        assert_eq!(verify.code, Some(6), "{needle}: {}", verify.stderr);
        assert!(error_line(&verify).contains(needle), "{}", verify.stderr);
    }
    write_manifest(dir.path(), &b, &original);
    let verify = run_nightdump(&["verify", &b, "--from", &d], &[]).await;
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
}

/// #12.8: passwords of reserved characters, unencoded, in every command that takes a
/// connection string and in every output form: not one character of them is printed.
#[tokio::test]
async fn no_password_with_unencoded_reserved_characters_is_ever_printed() {
    const ALPHABET: &[u8] = b":/?#[]@%!$&'()*+,;= aZ09";
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut passwords = vec!["Zq7slash/pw".to_string(), "Zq7@x:y/w%v?é#t".to_string()];
    for _ in 0..6 {
        let mut p = String::from("Zq7");
        for _ in 0..10 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            p.push(ALPHABET[(state % ALPHABET.len() as u64) as usize] as char);
        }
        p.push('/');
        passwords.push(p);
    }
    let port = closed_port();
    for pass in &passwords {
        let uri = format!("mongodb://bk:{pass}@127.0.0.1:{port}/");
        let runs = [
            vec!["backup", "--uri", &uri, "--to", &d],
            vec!["backup", "--uri", &uri, "--to", &d, "--json"],
            vec![
                "backup",
                "--uri",
                &uri,
                "--to",
                &d,
                "--log",
                "trace",
                "--log-format",
                "json",
            ],
            vec!["restore", "--uri", &uri, "--from", &d, "--log", "trace"],
        ];
        for args in runs {
            let run = run_nightdump(&args, &[]).await;
            assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
            let out = run.all_output();
            assert!(!out.contains("Zq7"), "{args:?} printed the password: {out}");
        }
        let env = [("MONGODB_URI", uri.clone())];
        let run = run_nightdump(&["backup", "--to", &d], &env).await;
        assert!(!run.all_output().contains("Zq7"), "{}", run.all_output());
        let mut lambda = crate::bad_input::template_env();
        lambda.remove("NIGHTDUMP_MONGODB_SECRET_ARN");
        lambda.insert("MONGODB_URI".into(), uri.clone());
        lambda.insert("NIGHTDUMP_ALLOW_PLAIN_URI".into(), "1".into());
        let err = nightdump::lambda::config::LambdaConfig::from_env(&lambda).unwrap_err();
        assert!(!err.to_string().contains("Zq7"), "{err}");
    }
}

/// #12.9: a point-in-time restore whose inserts are refused ends with its report (exit 9),
/// as the same restore without an oplog does, instead of waiting forever.
#[tokio::test]
async fn a_point_in_time_restore_whose_inserts_fail_ends_with_its_report() {
    for replica_set in [true, false] {
        let source = server(replica_set).await;
        insert(&source, "shop", "orders", numbered(50, 10)).await;
        let dir = tempfile::tempdir().unwrap();
        let id = backup_id(&cli_backup(&source.uri(), dir.path(), &[]).await);
        assert_eq!(
            manifest(dir.path(), &id)["point_in_time"].is_object(),
            replica_set
        );
        let target = mongo_test_server::start(ServerConfig {
            users: vec![User::new("root", "root-pw")],
            ..ServerConfig::default()
        })
        .await
        .unwrap();
        target
            .run_command("shop", doc! { "create": "orders" })
            .await
            .unwrap();
        target
            .run_command(
                "admin",
                doc! { "createUser": "reader", "pwd": "reader-pw", "roles": [{ "role": "read", "db": "shop" }] },
            )
            .await
            .unwrap();
        let uri = format!(
            "mongodb://reader:reader-pw@{}/?directConnection=true",
            target.addr()
        );
        let run = spawn_nightdump(
            &[
                "restore",
                "--from",
                &dir_arg(dir.path()),
                "--uri",
                &uri,
                "--quiet",
            ],
            &[],
        )
        .finish(Duration::from_secs(60))
        .await;
        assert_eq!(
            run.code,
            Some(9),
            "replica set {replica_set}: {}",
            run.stderr
        );
        assert!(
            error_line(&run).contains("insert documents"),
            "{}",
            run.stderr
        );
    }
}

/// #12.10: an S3 endpoint that accepts connections and never answers fails `list` within a
/// minute, with a warning at the first retry.
#[tokio::test]
async fn a_silent_s3_endpoint_fails_within_a_minute_with_a_warning() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let run = spawn_nightdump(
        &["list", "--from", "s3://silent/prefix"],
        &aws_env(&endpoint),
    )
    .finish(Duration::from_secs(90))
    .await;
    silent.abort();
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(60), "{:?}", run.elapsed);
    assert!(run.stderr.contains("retrying S3 request"), "{}", run.stderr);
    assert!(
        run.stderr.lines().last().unwrap().starts_with("error: "),
        "{}",
        run.stderr
    );
}

/// #12.12: an unreadable directory in the destination that is not a backup (`lost+found`)
/// is skipped; an unreadable backup directory fails, naming its exact path.
#[tokio::test]
async fn an_unreadable_foreign_directory_does_not_break_list_or_prune() {
    let Some(runner) = unprivileged() else {
        eprintln!("SKIPPED an_unreadable_foreign_directory_does_not_break_list_or_prune: no way to run as another user here");
        return;
    };
    let source = demo_test_server().await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("dest");
    std::fs::create_dir(&dir).unwrap();
    let d = dir_arg(&dir);
    backup_id(
        &cli_backup(
            &source.uri,
            &dir,
            &["--scheduled-at", "2026-11-25T03:00:00Z"],
        )
        .await,
    );
    use std::os::unix::fs::PermissionsExt;
    // The other user may write the destination (opening it checks that) and read the rest.
    for p in [root.path(), dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let lost = dir.join("lost+found");
    std::fs::create_dir(&lost).unwrap();
    std::fs::set_permissions(&lost, std::fs::Permissions::from_mode(0o000)).unwrap();
    let as_other = |args: &[&str]| {
        let mut command: Vec<String> = runner.clone();
        command.push(nightdump_bin());
        command.extend(args.iter().map(|s| s.to_string()));
        std::process::Command::new(&command[0])
            .args(&command[1..])
            .output()
            .unwrap()
    };
    let list = as_other(&["list", "--from", &d]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("20261125T030000Z"));
    let prune = as_other(&["prune", "--from", &d, "--keep-last", "1"]);
    assert!(
        prune.status.success(),
        "{}",
        String::from_utf8_lossy(&prune.stderr)
    );
    let backup_dir = dir.join("20261125T030000Z");
    std::fs::set_permissions(&backup_dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    let list = as_other(&["list", "--from", &d]);
    assert_eq!(list.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&list.stderr);
    assert!(
        stderr.contains(&format!("access denied to {}", backup_dir.display())),
        "{stderr}"
    );
    assert!(stderr.contains("make it readable"), "{stderr}");
    std::fs::set_permissions(&backup_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&lost, std::fs::Permissions::from_mode(0o777)).unwrap();
}

/// A command prefix that runs a program as an unprivileged user: nothing when this is
/// not root (the test itself is unprivileged), `setpriv` as `nobody` when it is.
fn unprivileged() -> Option<Vec<String>> {
    let uid = std::process::Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some(Vec::new());
    }
    let probe = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status()
        .ok()?;
    probe.success().then(|| {
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    })
}

/// #12.13: `status` reports the last backup that is really there, not the one
/// `latest.json` names after it was deleted, and says so.
#[tokio::test]
async fn status_never_reports_a_deleted_backup_as_the_last_success() {
    let source = demo_test_server().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    let a = backup_id(
        &cli_backup(
            &source.uri,
            dir.path(),
            &["--scheduled-at", "2026-11-24T03:00:00Z"],
        )
        .await,
    );
    let b = backup_id(
        &cli_backup(
            &source.uri,
            dir.path(),
            &["--scheduled-at", "2026-11-25T03:00:00Z"],
        )
        .await,
    );
    std::fs::remove_dir_all(dir.path().join(&b)).unwrap();
    let status = run_nightdump(&["status", "--from", &d, "--json"], &[]).await;
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    let s: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(s["last_success"]["backup_id"], a.as_str(), "{s}");
    assert!(s["warning"].as_str().unwrap().contains(&b), "{s}");
    let text = run_nightdump(&["status", "--from", &d], &[]).await;
    assert!(
        text.stdout
            .contains(&format!("last successful backup: {a}")),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("warning: latest.json names backup"),
        "{}",
        text.stdout
    );
    let dry = run_nightdump(
        &["restore", "latest", "--from", &d, "--dry-run", "--quiet"],
        &[],
    )
    .await;
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    std::fs::remove_dir_all(dir.path().join(&a)).unwrap();
    let status = run_nightdump(&["status", "--from", &d], &[]).await;
    assert_eq!(status.code, Some(5), "{}", status.stderr);
}

/// #12.14 and #13.2: a selection that matches no collection is refused unless asked for.
#[tokio::test]
async fn a_selection_that_matches_no_collection_is_refused_unless_allowed() {
    let source = demo_test_server().await;
    let dir = tempfile::tempdir().unwrap();
    for filter in [["--include", "nosuchdb.*"], ["--exclude", "*.*"]] {
        let run = cli_backup(&source.uri, dir.path(), &filter).await;
        assert_eq!(run.code, Some(2), "{filter:?}: {}", run.stderr);
        assert!(
            error_line(&run).contains("select no collection"),
            "{}",
            run.stderr
        );
    }
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    let allowed = cli_backup(
        &source.uri,
        dir.path(),
        &["--include", "nosuchdb.*", "--allow-empty"],
    )
    .await;
    backup_id(&allowed);
}

/// #12.14: `cat` into a pipe whose reader went away says so and fails, instead of
/// reporting an internal error.
#[tokio::test]
async fn cat_into_a_closed_pipe_says_the_reader_stopped() {
    let source = server(false).await;
    // Incompressible, so the archive is far larger than a pipe's buffer.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let docs: Vec<Document> = (0..3000)
        .map(|i| {
            let bytes: Vec<u8> = (0..1000)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            doc! { "_id": i as i64, "noise": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes } }
        })
        .collect();
    insert(&source, "big", "c", docs).await;
    let dir = tempfile::tempdir().unwrap();
    let id = backup_id(&cli_backup(&source.uri(), dir.path(), &["--compression-level", "1"]).await);
    let mut child = std::process::Command::new(nightdump_bin())
        .args(["cat", &id, "--from", &dir_arg(dir.path())])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then close the pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut one).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(
        stderr.contains("the output pipe was closed by its reader"),
        "{stderr}"
    );
    assert!(!stderr.contains("internal"), "{stderr}");
}

/// #12.11: prune aborts the unfinished uploads of killed runs once past the grace period,
/// with the temporary files and the folders they leave empty.
#[tokio::test]
async fn prune_clears_abandoned_uploads_and_their_empty_folders() {
    let source = demo_test_server().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    backup_id(
        &cli_backup(
            &source.uri,
            dir.path(),
            &["--scheduled-at", "2026-11-24T03:00:00Z"],
        )
        .await,
    );
    let killed = dir.path().join("20261125T030000Z");
    std::fs::create_dir(&killed).unwrap();
    let tmp = killed.join(".dump.archive.gz.tmp-0123456789abcdef");
    std::fs::write(&tmp, b"half an archive").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let prune = run_nightdump(
        &[
            "prune",
            "--from",
            &d,
            "--keep-last",
            "1",
            "--grace",
            "2h",
            "--yes",
        ],
        &[],
    )
    .await;
    assert_eq!(prune.code, Some(0), "{}", prune.stderr);
    assert!(
        prune.stdout.contains("aborted 1 unfinished uploads"),
        "{}",
        prune.stdout
    );
    assert!(!killed.exists(), "{:?}", files(dir.path()));
}

/// #13.7: an age identity file that other users may read is accepted, with a warning that
/// says how to fix it.
#[tokio::test]
async fn an_identity_file_readable_by_others_is_warned_about() {
    use age::secrecy::ExposeSecret;
    use std::os::unix::fs::PermissionsExt;
    let source = demo_test_server().await;
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let recipient = format!("age:{}", identity.to_public());
    let key_file = dir.path().join("key.txt");
    std::fs::write(
        &key_file,
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .unwrap();
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    backup_id(&cli_backup(&source.uri, &dest, &["--encrypt", &recipient]).await);
    let verify = |mode: u32| {
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
        let (d, k) = (dir_arg(&dest), dir_arg(&key_file));
        async move { run_nightdump(&["verify", "--from", &d, "--identity", &k], &[]).await }
    };
    let shared = verify(0o644).await;
    assert_eq!(shared.code, Some(0), "{}", shared.stderr);
    assert!(
        shared.stderr.contains("can be read by other users"),
        "{}",
        shared.stderr
    );
    assert!(shared.stderr.contains("chmod 600"), "{}", shared.stderr);
    let private = verify(0o600).await;
    assert_eq!(private.code, Some(0), "{}", private.stderr);
    assert!(
        !private.stderr.contains("other users"),
        "{}",
        private.stderr
    );
}

/// #13.7: mongod's `backup` role reads time-series buckets (system.buckets.*); a user with
/// only that role backs up every collection of the demo data, the time-series one included.
#[tokio::test]
async fn the_backup_role_alone_backs_up_time_series_collections() {
    let source = mongo_test_server::start(ServerConfig {
        seed: mongo_test_server::Seed::Demo,
        users: vec![User::new("root", "root-pw")],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    source
        .run_command(
            "admin",
            doc! { "createUser": "bk", "pwd": "bk-pw", "roles": [{ "role": "backup", "db": "admin" }] },
        )
        .await
        .unwrap();
    let uri = format!(
        "mongodb://bk:bk-pw@{}/?directConnection=true",
        source.addr()
    );
    let dir = tempfile::tempdir().unwrap();
    let id = backup_id(&cli_backup(&uri, dir.path(), &[]).await);
    let m = manifest(dir.path(), &id);
    let timeseries: Vec<&serde_json::Value> = m["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "timeseries")
        .collect();
    assert!(!timeseries.is_empty(), "{m}");
    assert!(
        timeseries
            .iter()
            .all(|n| n["documents"].as_u64().unwrap() > 0),
        "{m}"
    );
}
