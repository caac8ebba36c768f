//! Runs that overlap: a duplicate trigger of the same schedule time, a prune during a backup,
//! many backups finishing in any order, a run killed outright; and the many-collections path.
//! Each on a directory and on S3 (moto).

use std::sync::Arc;
use std::time::Duration;

use mongo_test_server::{Seed, ServerConfig, ServerHandle};
use nightdump::backup;
use nightdump::catalog::{self, Selector};
use nightdump::layout::{parse_time, LATEST_KEY};
use nightdump::manifest::Latest;
use nightdump::prune::{self, Policy};
use nightdump::store::{Destination, S3Options, Store};
use nightdump::verify;
use tokio::sync::Barrier;

use crate::harness::*;
use crate::support::bucket;
use crate::support::listing;
use crate::support::moto::Moto;

/// One destination, opened afresh by every run as separate processes would.
enum Dest {
    Dir(tempfile::TempDir),
    S3 { bucket: String },
}

impl Dest {
    fn dir() -> Dest {
        Dest::Dir(tempfile::tempdir().unwrap())
    }

    async fn s3(label: &str) -> Dest {
        Dest::S3 {
            bucket: Moto::shared().create_bucket(label).await,
        }
    }

    /// The `--to` argument.
    fn url(&self) -> String {
        match self {
            Dest::Dir(d) => d.path().display().to_string(),
            Dest::S3 { bucket } => format!("s3://{bucket}/nightly"),
        }
    }

    async fn open(&self) -> Store {
        match self {
            Dest::Dir(d) => local_store(d.path()).await,
            Dest::S3 { .. } => {
                let sdk = Moto::sdk_config_for(&Moto::shared().endpoint()).await;
                let dest: Destination = self.url().parse().unwrap();
                Store::open_with_sdk_config(&dest, &sdk, &s3_options())
                    .await
                    .unwrap()
            }
        }
    }

    /// The environment a `nightdump` process needs for this destination.
    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Dest::Dir(_) => Vec::new(),
            Dest::S3 { .. } => aws_env(&Moto::shared().endpoint()),
        }
    }

    /// Unfinished uploads as the backend itself reports them: S3 multipart uploads in
    /// progress (asked of S3 directly, not through nightdump's store), or temp files.
    async fn unfinished_uploads(&self) -> Vec<String> {
        match self {
            Dest::Dir(d) => files(d.path())
                .into_iter()
                .filter(|f| f.rsplit('/').next().is_some_and(|n| n.starts_with('.')))
                .collect(),
            Dest::S3 { bucket } => {
                bucket::unfinished_uploads(&Moto::shared().s3_client().await, bucket).await
            }
        }
    }
}

fn s3_options() -> S3Options {
    S3Options {
        force_path_style: true,
        ..S3Options::default()
    }
}

async fn server(seed: Seed) -> ServerHandle {
    server_of(seed, false).await
}

/// A test server holding `seed`; with `replica_set`, a one-member replica set whose backups
/// also tail the oplog.
async fn server_of(seed: Seed, replica_set: bool) -> ServerHandle {
    mongo_test_server::start(ServerConfig {
        seed,
        replica_set: replica_set.then(|| "rs0".to_string()),
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

fn at(time: &str) -> Option<time::OffsetDateTime> {
    Some(parse_time(time).unwrap())
}

fn backup_args<'a>(uri: &'a str, to: &'a str, scheduled_at: &'a str) -> Vec<&'a str> {
    vec![
        "backup",
        "--uri",
        uri,
        "--to",
        to,
        "--scheduled-at",
        scheduled_at,
        "--allow-inconsistent",
        "--json",
    ]
}

async fn manifests(store: &Store) -> Vec<String> {
    let mut keys = listing::keys(store, "").await;
    keys.retain(|k| k.ends_with("/manifest.json"));
    keys
}

async fn latest_id(store: &Store) -> Option<String> {
    catalog::read_latest(store)
        .await
        .unwrap()
        .map(|l| l.backup_id)
}

// ---------------------------------------------------------------------------------------
// Duplicate delivery: two processes for the same schedule time, started together.

async fn duplicate_delivery_makes_one_backup(dest: Dest) {
    duplicate_delivery_makes_one_backup_from(dest, false).await;
}

async fn duplicate_delivery_makes_one_backup_from(dest: Dest, replica_set: bool) {
    let server = server_of(Seed::Demo, replica_set).await;
    // Slow enough that both runs are reading before either has written anything.
    server.faults().delay_batches(Duration::from_millis(20));
    let uri = server.uri();
    let to = dest.url();
    let env = dest.env();
    let args = backup_args(&uri, &to, "2026-11-20T03:00:00Z");
    let (a, b) = tokio::join!(run_nightdump(&args, &env), run_nightdump(&args, &env));

    // Duplicate delivery is not a failure: both exit 0, so no retry and no alert follows.
    for run in [&a, &b] {
        assert_eq!(run.code, Some(0), "{}", run.all_output());
    }
    let summaries: Vec<serde_json::Value> = [&a, &b]
        .iter()
        .map(|r| serde_json::from_str(r.stdout.trim()).unwrap())
        .collect();
    let fresh = summaries
        .iter()
        .filter(|s| s["already_existed"] == false)
        .count();
    assert_eq!(fresh, 1, "exactly one run made the backup: {summaries:?}");
    // Both report the same backup: the one that is stored.
    assert_eq!(summaries[0]["sha256"], summaries[1]["sha256"]);
    assert_eq!(summaries[0]["backup_id"], "20261120T030000Z");

    let store = dest.open().await;
    assert_eq!(manifests(&store).await, ["20261120T030000Z/manifest.json"]);
    let report = verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap();
    assert_eq!(report.sha256, summaries[0]["sha256"].as_str().unwrap());
    assert_eq!(latest_id(&store).await.as_deref(), Some("20261120T030000Z"));
    assert_eq!(dest.unfinished_uploads().await, Vec::<String>::new());
    server.shutdown().await;
}

#[tokio::test]
async fn duplicate_delivery_makes_one_backup_in_a_directory_on_a_replica_set() {
    duplicate_delivery_makes_one_backup_from(Dest::dir(), true).await;
}

#[tokio::test]
async fn duplicate_delivery_makes_one_backup_in_a_directory() {
    duplicate_delivery_makes_one_backup(Dest::dir()).await;
}

#[tokio::test]
async fn duplicate_delivery_makes_one_backup_on_s3() {
    duplicate_delivery_makes_one_backup(Dest::s3("dup").await).await;
}

// Many in-process duplicates at once, to exercise the archive and manifest races harder.
async fn many_duplicates_keep_one_consistent_backup(dest: Dest) {
    many_duplicates_keep_one_consistent_backup_from(dest, false).await;
}

async fn many_duplicates_keep_one_consistent_backup_from(dest: Dest, replica_set: bool) {
    let server = server_of(Seed::Demo, replica_set).await;
    let n = 4;
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let store = dest.open().await;
        let barrier = barrier.clone();
        let mut options = options(&server.uri());
        options.scheduled_at = at("2026-11-21T03:00:00Z");
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let outcome = backup::run(&options, &store, &progress()).await;
            store.settle().await;
            outcome
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| !o.already_existed).count(), 1);
    let sha = &outcomes[0].manifest.archive.sha256;
    assert!(outcomes.iter().all(|o| &o.manifest.archive.sha256 == sha));
    let store = dest.open().await;
    assert_eq!(manifests(&store).await, ["20261121T030000Z/manifest.json"]);
    let report = verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap();
    assert_eq!(&report.sha256, sha);
    assert_eq!(dest.unfinished_uploads().await, Vec::<String>::new());
    server.shutdown().await;
}

#[tokio::test]
async fn many_duplicates_keep_one_consistent_backup_in_a_directory_on_a_replica_set() {
    many_duplicates_keep_one_consistent_backup_from(Dest::dir(), true).await;
}

#[tokio::test]
async fn many_duplicates_keep_one_consistent_backup_in_a_directory() {
    many_duplicates_keep_one_consistent_backup(Dest::dir()).await;
}

#[tokio::test]
async fn many_duplicates_keep_one_consistent_backup_on_s3() {
    many_duplicates_keep_one_consistent_backup(Dest::s3("dups").await).await;
}

// ---------------------------------------------------------------------------------------
// latest.json: many runs of different schedule times finishing in whatever order.

async fn latest_only_moves_forward(dest: Dest) {
    latest_only_moves_forward_from(dest, false).await;
}

async fn latest_only_moves_forward_from(dest: Dest, replica_set: bool) {
    let server = server_of(Seed::Demo, replica_set).await;
    let times = [
        "2026-11-01T03:00:00Z",
        "2026-11-02T03:00:00Z",
        "2026-11-03T03:00:00Z",
        "2026-11-04T03:00:00Z",
        "2026-11-05T03:00:00Z",
        "2026-11-06T03:00:00Z",
    ];
    let barrier = Arc::new(Barrier::new(times.len()));
    let mut tasks = Vec::new();
    // Newest first, with fewer readers for the newer ones: the newest tend to finish first
    // and the older ones then race to overwrite latest.json.
    for (i, t) in times.iter().enumerate().rev() {
        let store = dest.open().await;
        let barrier = barrier.clone();
        let mut options = options(&server.uri());
        options.scheduled_at = at(t);
        options.parallel = i + 1;
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            backup::run(&options, &store, &progress()).await
        }));
    }

    // Watch latest.json while they run.
    let watcher_store = dest.open().await;
    let all_done = Arc::new(tokio::sync::Notify::new());
    let done = all_done.clone();
    let watcher = tokio::spawn(async move {
        let mut seen: Vec<(String, String)> = Vec::new();
        loop {
            let finished = tokio::select! {
                _ = done.notified() => true,
                _ = tokio::time::sleep(Duration::from_millis(2)) => false,
            };
            if let Some(bytes) = watcher_store.get(LATEST_KEY).await.unwrap() {
                let latest: Latest = serde_json::from_slice(&bytes).unwrap();
                let entry = (latest.finished_at, latest.backup_id);
                if seen.last() != Some(&entry) {
                    seen.push(entry);
                }
            }
            if finished {
                return seen;
            }
        }
    });
    let mut finished = Vec::new();
    for t in tasks {
        let outcome = t.await.unwrap().unwrap();
        assert!(!outcome.already_existed);
        assert_eq!(outcome.latest_warning, None);
        finished.push((outcome.manifest.finished_at, outcome.manifest.backup_id));
    }
    all_done.notify_one();
    let seen = watcher.await.unwrap();

    // Forward is by completion: the run that finished last is the latest, and the pointer
    // never went back to one that finished earlier.
    let last_finished = finished.iter().max().cloned();
    assert_eq!(seen.last(), last_finished.as_ref(), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "latest.json moved backwards: {seen:?}"
    );
    let store = dest.open().await;
    assert_eq!(manifests(&store).await.len(), times.len());
    server.shutdown().await;
}

#[tokio::test]
async fn latest_only_moves_forward_in_a_directory_on_a_replica_set() {
    latest_only_moves_forward_from(Dest::dir(), true).await;
}

#[tokio::test]
async fn latest_only_moves_forward_in_a_directory() {
    latest_only_moves_forward(Dest::dir()).await;
}

#[tokio::test]
async fn latest_only_moves_forward_on_s3() {
    latest_only_moves_forward(Dest::s3("latest").await).await;
}

// ---------------------------------------------------------------------------------------
// Prune while a backup is being written.

async fn prune_leaves_a_running_backup_alone(dest: Dest) {
    prune_leaves_a_running_backup_alone_from(dest, false).await;
}

async fn prune_leaves_a_running_backup_alone_from(dest: Dest, replica_set: bool) {
    let server = server_of(Seed::Demo, replica_set).await;
    let store = dest.open().await;
    // Two finished backups, so a keep-last-1 prune has something to remove.
    for t in ["2026-10-01T03:00:00Z", "2026-10-02T03:00:00Z"] {
        let mut o = options(&server.uri());
        o.scheduled_at = at(t);
        backup::run(&o, &store, &progress()).await.unwrap();
    }

    server.faults().delay_batches(Duration::from_millis(40));
    let mut running = options(&server.uri());
    running.scheduled_at = at("2026-10-03T03:00:00Z");
    let run_store = dest.open().await;
    let batches_before = server.faults().batches_sent();
    let backup_task =
        tokio::spawn(async move { backup::run(&running, &run_store, &progress()).await });
    // Under way: the server has started answering its reads.
    while server.faults().batches_sent() < batches_before + 2 {
        assert!(!backup_task.is_finished(), "the backup ended too soon");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let policy = Policy {
        last: 1,
        ..Policy::default()
    };
    let report = prune::run(&store, &policy, true, None).await.unwrap();
    assert!(report.error.is_none());
    let removed: Vec<String> = report.remove.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(removed, ["20261001T030000Z"], "{report:?}");
    assert!(
        !backup_task.is_finished(),
        "the prune must run while the backup is under way"
    );

    let outcome = backup_task.await.unwrap().unwrap();
    assert_eq!(outcome.manifest.backup_id, "20261003T030000Z");
    let report = verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap();
    assert_eq!(report.backup_id, "20261003T030000Z");
    server.shutdown().await;
}

#[tokio::test]
async fn prune_leaves_a_running_backup_alone_in_a_directory_on_a_replica_set() {
    prune_leaves_a_running_backup_alone_from(Dest::dir(), true).await;
}

#[tokio::test]
async fn prune_leaves_a_running_backup_alone_in_a_directory() {
    prune_leaves_a_running_backup_alone(Dest::dir()).await;
}

#[tokio::test]
async fn prune_leaves_a_running_backup_alone_on_s3() {
    prune_leaves_a_running_backup_alone(Dest::s3("prune-running").await).await;
}

/// With the default grace period an incomplete backup last written days ago is removed and
/// one written just now is kept (it may be a run in progress).
#[tokio::test]
async fn prune_removes_only_old_incomplete_backups() {
    let server = server(Seed::Demo).await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let mut o = options(&server.uri());
    o.scheduled_at = at("2026-10-05T03:00:00Z");
    backup::run(&o, &store, &progress()).await.unwrap();

    let old = dir.path().join("20261001T030000Z");
    std::fs::create_dir(&old).unwrap();
    let file = std::fs::File::create(old.join("dump.archive.gz")).unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3 * 24 * 3600))
        .unwrap();
    drop(file);
    let young = dir.path().join("20261002T030000Z");
    std::fs::create_dir(&young).unwrap();
    std::fs::write(young.join("dump.archive.gz"), b"partial").unwrap();

    let policy = Policy {
        last: 1,
        ..Policy::default()
    };
    let report = prune::run(&store, &policy, true, None).await.unwrap();
    let removed: Vec<String> = report.remove.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(removed, ["20261001T030000Z"], "{report:?}");
    assert!(!old.join("dump.archive.gz").exists());
    assert!(young.join("dump.archive.gz").exists());
    verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap();
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// SIGKILL mid-backup, then a new run.

async fn killed_run_leaves_nothing_complete(dest: Dest) {
    killed_run_leaves_nothing_complete_from(dest, false).await;
}

async fn killed_run_leaves_nothing_complete_from(dest: Dest, replica_set: bool) {
    // Enough data that S3 has a multipart upload under way (parts of 8 MiB) before the end.
    let server = server_of("bench:96MiB".parse().unwrap(), replica_set).await;
    let uri = server.uri();
    let to = dest.url();
    let env = dest.env();
    let first = run_nightdump(&backup_args(&uri, &to, "2026-09-01T03:00:00Z"), &env).await;
    assert_eq!(first.code, Some(0), "{}", first.all_output());
    let store = dest.open().await;
    let latest_before = store.get(LATEST_KEY).await.unwrap().unwrap();

    server.faults().delay_batches(Duration::from_millis(150));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_nightdump"))
        .args(backup_args(&uri, &to, "2026-09-02T03:00:00Z"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Kill once bytes of the archive are stored but not finished: a temp file with data, or
    // a multipart upload S3 knows of.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let uploads = dest.unfinished_uploads().await;
        let under_way = match &dest {
            Dest::Dir(d) => uploads
                .iter()
                .any(|f| std::fs::metadata(d.path().join(f)).is_ok_and(|m| m.len() > 0)),
            Dest::S3 { .. } => !uploads.is_empty(),
        };
        if under_way {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        assert!(tokio::time::Instant::now() < deadline, "no upload started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().await.unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    server.faults().clear();

    // Nothing that looks like a backup, latest.json as it was, the previous backup intact.
    let killed = "20260902T030000Z";
    let visible: Vec<String> = listing::keys(&store, &format!("{killed}/")).await;
    assert_eq!(visible, Vec::<String>::new());
    assert_eq!(store.get(LATEST_KEY).await.unwrap().unwrap(), latest_before);
    let listing = catalog::list(&store).await.unwrap();
    assert!(listing
        .iter()
        .all(|l| l.id != killed || l.status == "incomplete"));
    let report = verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap();
    assert_eq!(report.backup_id, "20260901T030000Z");
    assert!(!dest.unfinished_uploads().await.is_empty());

    // The next run succeeds and removes what the killed one left (the age is lowered here so
    // the leftover counts as stale at once).
    let mut env = dest.env();
    env.push(("NIGHTDUMP_STALE_UPLOAD_AGE", "0s".to_string()));
    let next = run_nightdump(&backup_args(&uri, &to, "2026-09-03T03:00:00Z"), &env).await;
    assert_eq!(next.code, Some(0), "{}", next.all_output());
    assert_eq!(dest.unfinished_uploads().await, Vec::<String>::new());
    assert_eq!(latest_id(&store).await.as_deref(), Some("20260903T030000Z"));
    verify::verify(
        &store,
        &Selector::Id("20260901T030000Z".parse().unwrap()),
        None,
    )
    .await
    .unwrap();
    verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn killed_run_leaves_nothing_complete_in_a_directory_on_a_replica_set() {
    killed_run_leaves_nothing_complete_from(Dest::dir(), true).await;
}

#[tokio::test]
async fn killed_run_leaves_nothing_complete_in_a_directory() {
    killed_run_leaves_nothing_complete(Dest::dir()).await;
}

#[tokio::test]
async fn killed_run_leaves_nothing_complete_on_s3() {
    killed_run_leaves_nothing_complete(Dest::s3("sigkill").await).await;
}

/// With the default age, a fresh unfinished upload (possibly a run in progress) is left alone.
#[tokio::test]
async fn a_young_unfinished_upload_is_left_alone() {
    let server = server(Seed::Demo).await;
    let dest = Dest::dir();
    let store = dest.open().await;
    let mut upload = store
        .start_upload(
            "20260801T030000Z/dump.archive.gz",
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
    upload
        .write(bytes::Bytes::from_static(b"in progress"))
        .await
        .unwrap();
    let mut o = options(&server.uri());
    o.scheduled_at = at("2026-08-02T03:00:00Z");
    backup::run(&o, &store, &progress()).await.unwrap();
    assert_eq!(dest.unfinished_uploads().await.len(), 1);
    upload.abort().await.unwrap();
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Many collections: the per-collection path stays quick and complete.

#[tokio::test]
async fn two_thousand_collections_back_up_and_verify() {
    let server = server(Seed::Many { collections: 2000 }).await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let started = std::time::Instant::now();
    let outcome = backup::run(&options(&server.uri()), &store, &progress())
        .await
        .unwrap();
    let took = started.elapsed();
    let m = &outcome.manifest;
    let many: Vec<_> = m
        .namespaces
        .iter()
        .filter(|n| n.db.starts_with("many_"))
        .collect();
    assert_eq!(many.len(), 2000);
    assert!(many.iter().all(|n| n.documents == 3));
    let report = verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap();
    assert_eq!(report.namespaces, m.totals.namespaces);
    assert!(
        took < Duration::from_secs(60),
        "2,000 collections took {took:?}"
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// The conditional update underneath latest.json, under contention.

async fn concurrent_updates_lose_nothing(dest: Dest) {
    let n = 16;
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let store = dest.open().await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            // Each writer appends its number to the list it reads: a lost update drops one.
            store
                .update("counter.json", move |current| {
                    let mut seen: Vec<usize> = current
                        .map(|b| serde_json::from_slice(b).unwrap())
                        .unwrap_or_default();
                    seen.push(i);
                    Some(bytes::Bytes::from(serde_json::to_vec(&seen).unwrap()))
                })
                .await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap());
    }
    let store = dest.open().await;
    let mut seen: Vec<usize> =
        serde_json::from_slice(&store.get("counter.json").await.unwrap().unwrap()).unwrap();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    // Deciding to leave the object alone writes nothing.
    assert!(!store.update("counter.json", |_| None).await.unwrap());
}

#[tokio::test]
async fn concurrent_updates_lose_nothing_in_a_directory() {
    concurrent_updates_lose_nothing(Dest::dir()).await;
}

#[tokio::test]
async fn concurrent_updates_lose_nothing_on_s3() {
    concurrent_updates_lose_nothing(Dest::s3("update").await).await;
}
