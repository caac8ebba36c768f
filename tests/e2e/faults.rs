//! The fault suite: one test per fault, each run through the real binary, each checking the
//! whole promise with [`assert_promise_kept`]: a non-zero exit code naming the kind of
//! failure, one line on stderr naming the cause, no manifest, `latest.json` unchanged byte for
//! byte, no multipart upload left, nothing that looks like a complete backup, and the previous
//! backup untouched and still verifiable with `nightdump verify`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mongo_test_server::{ServerConfig, ServerHandle, User};
use sha2::{Digest, Sha256};

use crate::harness::*;
use crate::secrets::{assert_no_secret, PASSWORD, PASSWORD_IN_URI};
use crate::support::bucket;
use crate::support::fault_proxy::{Fault, FaultProxy};
use crate::support::moto::Moto;
use crate::support::tmpfs::Tmpfs;

pub const PREVIOUS_AT: &str = "2026-11-24T03:00:00Z";
pub const PREVIOUS_ID: &str = "20261124T030000Z";
pub const FAILED_AT: &str = "2026-11-25T03:00:00Z";
pub const FAILED_ID: &str = "20261125T030000Z";
const PREFIX: &str = "nightly";
/// How long any one faulted run may take before it counts as a hang.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Where the backups go: a directory (possibly on a small tmpfs) or a bucket on moto, reached
/// by the backup through `endpoint` (moto itself or a fault proxy in front of it).
pub enum Dest {
    Dir {
        dir: tempfile::TempDir,
        _mount: Option<Tmpfs>,
    },
    S3 {
        bucket: String,
        endpoint: String,
    },
}

/// Everything stored at a destination: each object's SHA-256, and the unfinished uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub objects: BTreeMap<String, String>,
    pub uploads: Vec<String>,
}

impl Dest {
    pub fn dir() -> Dest {
        Dest::Dir {
            dir: tempfile::tempdir().unwrap(),
            _mount: None,
        }
    }

    pub async fn s3(label: &str) -> Dest {
        let moto = Moto::shared();
        Dest::S3 {
            bucket: moto.create_bucket(label).await,
            endpoint: moto.endpoint(),
        }
    }

    /// The same bucket, reached by later runs through `endpoint`.
    pub fn through(&self, endpoint: &str) -> Dest {
        match self {
            Dest::S3 { bucket, .. } => Dest::S3 {
                bucket: bucket.clone(),
                endpoint: endpoint.to_string(),
            },
            Dest::Dir { .. } => panic!("only an S3 destination has an endpoint"),
        }
    }

    /// The `--to` / `--from` argument.
    pub fn location(&self) -> String {
        match self {
            Dest::Dir { dir, .. } => dir.path().to_str().unwrap().to_string(),
            Dest::S3 { bucket, .. } => format!("s3://{bucket}/{PREFIX}"),
        }
    }

    /// The environment a run writing here needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Dest::Dir { .. } => Vec::new(),
            Dest::S3 { endpoint, .. } => aws_env(endpoint),
        }
    }

    /// The environment for inspecting the destination directly, past any fault proxy.
    fn direct_env(&self) -> Vec<(&'static str, String)> {
        match self {
            Dest::Dir { .. } => Vec::new(),
            Dest::S3 { .. } => aws_env(&Moto::shared().endpoint()),
        }
    }

    pub async fn snapshot(&self) -> Snapshot {
        let objects = self
            .contents()
            .await
            .into_iter()
            .map(|(key, bytes)| (key, hex::encode(Sha256::digest(&bytes))))
            .collect();
        let uploads = match self {
            Dest::Dir { .. } => Vec::new(),
            Dest::S3 { bucket, .. } => {
                bucket::unfinished_uploads(&Moto::shared().s3_client().await, bucket).await
            }
        };
        Snapshot { objects, uploads }
    }

    /// Every stored object's bytes, for leak checks.
    pub async fn contents(&self) -> Vec<(String, Vec<u8>)> {
        match self {
            Dest::Dir { dir, .. } => files(dir.path())
                .into_iter()
                .map(|f| {
                    let bytes = std::fs::read(dir.path().join(&f)).unwrap();
                    (f, bytes)
                })
                .collect(),
            Dest::S3 { bucket, .. } => {
                let s3 = Moto::shared().s3_client().await;
                let mut out = Vec::new();
                for key in bucket::keys(&s3, bucket).await {
                    let bytes = bucket::object(&s3, bucket, &key).await;
                    out.push((key, bytes));
                }
                out
            }
        }
    }
}

/// The arguments of a backup run at `at`: logs as JSON on stderr, so the one plain line
/// left there is the error.
pub fn backup_args(uri: &str, dest: &Dest, at: &str) -> Vec<String> {
    [
        "backup",
        "--uri",
        uri,
        "--to",
        &dest.location(),
        "--scheduled-at",
        at,
        "--parallel",
        "1",
        "--connect-timeout",
        "5s",
        "--compression-level",
        "1",
        // The test server is a standalone server: no oplog to make the dump consistent.
        "--allow-inconsistent",
        "--quiet",
        "--log",
        "info",
        "--log-format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Starts a backup of `uri` at the failing schedule time.
pub fn spawn_backup(uri: &str, dest: &Dest) -> Running {
    spawn_nightdump(&strs(&backup_args(uri, dest, FAILED_AT)), &dest.env())
}

/// The backup that must survive each fault, made before the fault is switched on.
pub async fn previous_backup(uri: &str, dest: &Dest) -> Snapshot {
    let run = run_nightdump(&strs(&backup_args(uri, dest, PREVIOUS_AT)), &dest.env()).await;
    assert_eq!(
        run.code,
        Some(0),
        "the previous backup failed: {}",
        run.stderr
    );
    dest.snapshot().await
}

/// What a failed run may leave behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    Nothing,
    /// The archive, fully uploaded but without a manifest: `nightdump list` must show the
    /// backup as incomplete, and `verify`, `restore` and `latest` never pick it.
    ArchiveListedIncomplete,
}

/// The promise a failed backup keeps; `cause` must appear in its one-line error.
pub async fn assert_promise_kept(
    dest: &Dest,
    before: &Snapshot,
    run: &Run,
    exit_code: i32,
    cause: &[&str],
    leftover: Leftover,
) {
    assert_eq!(
        run.code,
        Some(exit_code),
        "exit code; stderr:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let plain = run.plain_stderr_lines();
    assert_eq!(plain.len(), 1, "one error line expected:\n{}", run.stderr);
    let line = plain[0];
    assert!(line.starts_with("error: "), "{line}");
    for c in cause {
        assert!(line.contains(c), "the error does not name {c:?}: {line}");
    }
    assert!(run.stdout.trim().is_empty(), "stdout: {}", run.stdout);
    assert_no_secret("the failed run's output", run.all_output().as_bytes());
    assert_destination_kept(dest, before, leftover).await;
}

/// The destination half of the promise: nothing that was there changed, nothing new looks
/// complete, no upload is left open, no secret was stored, and the previous backup verifies.
pub async fn assert_destination_kept(dest: &Dest, before: &Snapshot, leftover: Leftover) {
    let after = dest.snapshot().await;
    assert!(
        after.uploads.is_empty(),
        "unfinished multipart upload left: {:?}",
        after.uploads
    );
    for (key, digest) in &before.objects {
        assert_eq!(
            after.objects.get(key),
            Some(digest),
            "{key} changed or vanished (latest.json must not move)"
        );
    }
    let new: Vec<&String> = after
        .objects
        .keys()
        .filter(|k| !before.objects.contains_key(*k))
        .collect();
    assert!(
        !new.iter().any(|k| k.ends_with("manifest.json")),
        "a failed backup wrote a manifest: {new:?}"
    );
    match leftover {
        Leftover::Nothing => assert!(new.is_empty(), "a failed backup left {new:?}"),
        Leftover::ArchiveListedIncomplete => {
            assert!(
                new.iter().all(|k| k.contains(FAILED_ID)),
                "objects outside the failed backup: {new:?}"
            );
            if !new.is_empty() {
                let list = run_nightdump(
                    &["list", "--from", &dest.location(), "--json"],
                    &dest.direct_env(),
                )
                .await;
                assert_eq!(list.code, Some(0), "{}", list.stderr);
                let listed: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
                let failed = listed
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| b["id"] == FAILED_ID)
                    .expect("the leftover archive is listed");
                assert_eq!(failed["status"], "incomplete", "{listed}");
            }
        }
    }
    for (key, bytes) in dest.contents().await {
        assert_no_secret(&key, &bytes);
    }
    assert_previous_verifies(dest).await;
}

/// `nightdump verify latest` still finds the previous backup, intact.
pub async fn assert_previous_verifies(dest: &Dest) {
    let verify = run_nightdump(
        &["verify", "latest", "--from", &dest.location()],
        &dest.direct_env(),
    )
    .await;
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
    assert!(
        verify
            .stdout
            .contains(&format!("backup {PREVIOUS_ID} is intact")),
        "{}",
        verify.stdout
    );
}

/// The source's kind: each fault runs against both, since a replica set's backup also tails
/// the oplog, a second reader that the fault can strike first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Standalone,
    ReplicaSet,
}

/// A test server holding `seed`, whose only user is `backup` with the known password, so
/// every fault also checks that the password is never shown.
pub async fn bench_server(seed: &str, topology: Topology) -> ServerHandle {
    mongo_test_server::start(ServerConfig {
        seed: seed.parse().unwrap(),
        users: vec![User::new("backup", PASSWORD)],
        replica_set: (topology == Topology::ReplicaSet).then(|| "rs0".to_string()),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// One test per topology for a fault: `name` on a standalone server (the README's name),
/// `name_on_a_replica_set` on a one-member replica set, its oplog captured.
macro_rules! on_both_topologies {
    ($standalone:ident, $replica_set:ident, $body:ident) => {
        #[tokio::test]
        async fn $standalone() {
            $body(Topology::Standalone).await;
        }

        #[tokio::test]
        async fn $replica_set() {
            $body(Topology::ReplicaSet).await;
        }
    };
}

/// The server's connection string with the credentials.
pub fn source_uri(server: &ServerHandle) -> String {
    server.uri().replacen(
        "mongodb://",
        &format!("mongodb://backup:{PASSWORD_IN_URI}@"),
        1,
    )
}

/// Waits until discovery is over and the dump has received `batches` cursor batches more.
/// A batch fault (e.g. a delay) must be set, or batches are not counted.
async fn wait_inside_the_dump(run: &mut Running, server: &ServerHandle, batches: u64) {
    run.wait_for_log(&["\"discovered\""]).await;
    let seen = server.faults().batches_sent();
    server.faults().wait_batches_sent(seen + batches).await;
}

/// Starts a backup of `server` with every cursor batch delayed by `delay`, and returns once
/// the dump has received `batches` batches.
async fn spawn_inside_the_dump(
    server: &ServerHandle,
    dest: &Dest,
    delay: Duration,
    batches: u64,
) -> Running {
    server.faults().delay_batches(delay);
    let mut run = spawn_backup(&source_uri(server), dest);
    wait_inside_the_dump(&mut run, server, batches).await;
    run
}

/// The manifest of backup `id` in a directory destination.
fn dir_manifest(dest: &Dest, id: &str) -> serde_json::Value {
    let Dest::Dir { dir, .. } = dest else {
        panic!("only a directory destination is read directly")
    };
    let path = dir.path().join(id).join("manifest.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

on_both_topologies!(
    mongodb_connection_dropped_mid_getmore,
    mongodb_connection_dropped_mid_getmore_on_a_replica_set,
    mongodb_connection_dropped_mid_getmore_with
);

async fn mongodb_connection_dropped_mid_getmore_with(topology: Topology) {
    // Several cursor batches per collection, so the cut lands in a getMore (a dropped `find`
    // is retried by the driver and succeeds, rightly).
    let server = bench_server("bench:8MiB", topology).await;
    let dest = Dest::dir();
    let before = previous_backup(&source_uri(&server), &dest).await;
    server.faults().close_after_documents(3000);
    let run = spawn_backup(&source_uri(&server), &dest)
        .finish(RUN_LIMIT)
        .await;
    assert_promise_kept(
        &dest,
        &before,
        &run,
        3,
        &["lost the connection to MongoDB", "getMore on bench_"],
        Leftover::Nothing,
    )
    .await;
    assert!(
        !run.stderr.contains("labels"),
        "driver debug text: {}",
        run.stderr
    );
}

on_both_topologies!(
    mongodb_connection_dropped_mid_collection,
    mongodb_connection_dropped_mid_collection_on_a_replica_set,
    mongodb_connection_dropped_mid_collection_with
);

async fn mongodb_connection_dropped_mid_collection_with(topology: Topology) {
    // The server stops inside a collection's read: every connection is dropped and no new one
    // is accepted, so the driver's retry cannot save it.
    let server = bench_server("bench:8MiB", topology).await;
    let uri = source_uri(&server);
    let dest = Dest::dir();
    let before = previous_backup(&uri, &dest).await;
    // Inside the first collection: its first batch and one getMore have been sent.
    let run = spawn_inside_the_dump(&server, &dest, Duration::from_millis(200), 2).await;
    server.shutdown().await;
    let run = run.finish(RUN_LIMIT).await;
    assert_promise_kept(
        &dest,
        &before,
        &run,
        3,
        &["MongoDB", "127.0.0.1"],
        Leftover::Nothing,
    )
    .await;
}

on_both_topologies!(
    mongodb_connection_dropped_during_list_collections,
    mongodb_connection_dropped_during_list_collections_on_a_replica_set,
    mongodb_connection_dropped_during_list_collections_with
);

async fn mongodb_connection_dropped_during_list_collections_with(topology: Topology) {
    let server = bench_server("bench:1MiB", topology).await;
    let dest = Dest::dir();
    let before = previous_backup(&source_uri(&server), &dest).await;
    // Every attempt, the driver's retry included.
    server.faults().close_on_command("listCollections", None);
    let run = spawn_backup(&source_uri(&server), &dest)
        .finish(RUN_LIMIT)
        .await;
    assert_promise_kept(
        &dest,
        &before,
        &run,
        3,
        &["lost the connection to MongoDB", "listCollections"],
        Leftover::Nothing,
    )
    .await;
}

on_both_topologies!(
    mongodb_authentication_revoked_between_commands,
    mongodb_authentication_revoked_between_commands_on_a_replica_set,
    mongodb_authentication_revoked_between_commands_with
);

async fn mongodb_authentication_revoked_between_commands_with(topology: Topology) {
    let server = bench_server("bench:8MiB", topology).await;
    let uri = source_uri(&server);
    let dest = Dest::dir();
    let before = previous_backup(&uri, &dest).await;
    let run = spawn_inside_the_dump(&server, &dest, Duration::from_millis(200), 1).await;
    assert!(server.revoke_user("backup"));
    let run = run.finish(RUN_LIMIT).await;
    assert_promise_kept(
        &dest,
        &before,
        &run,
        3,
        &[
            match topology {
                Topology::Standalone => {
                    "the user lacks the privilege to read collections on bench_"
                }
                // The oplog tail's next getMore may be the first read refused.
                Topology::ReplicaSet => "the user lacks the privilege to read collections on",
            },
            "grant it",
        ],
        Leftover::Nothing,
    )
    .await;
}

/// Bench data large enough, at gzip level 1, for a multipart upload (parts of 8 MiB).
pub const MULTIPART_SEED: &str = "bench:24MiB";

on_both_topologies!(
    s3_stopped_mid_upload,
    s3_stopped_mid_upload_on_a_replica_set,
    s3_stopped_mid_upload_with
);

async fn s3_stopped_mid_upload_with(topology: Topology) {
    let server = bench_server(MULTIPART_SEED, topology).await;
    let direct = Dest::s3("fault-mid-upload").await;
    let before = previous_backup(&source_uri(&server), &direct).await;
    let proxy = FaultProxy::start(Moto::shared().addr()).await;
    let dest = direct.through(&proxy.endpoint());
    // The first part is held in flight, then S3 goes away under it.
    proxy.hold_part_uploads(true);
    let mut run = spawn_backup(&source_uri(&server), &dest);
    proxy.wait_parts_held(1).await;
    proxy.stop();
    proxy.hold_part_uploads(false);
    // The parts' retries fail; so does the first round of aborting the upload. S3 comes
    // back before the next round, which then removes the upload.
    run.wait_for_log(&["abort of multipart upload failed; trying again"])
        .await;
    proxy.resume();
    let run = run.finish(RUN_LIMIT).await;
    assert_promise_kept(
        &dest,
        &before,
        &run,
        4,
        &["UploadPart", FAILED_ID],
        Leftover::Nothing,
    )
    .await;
}

on_both_topologies!(
    s3_stopped_during_the_manifest_write,
    s3_stopped_during_the_manifest_write_on_a_replica_set,
    s3_stopped_during_the_manifest_write_with
);

async fn s3_stopped_during_the_manifest_write_with(topology: Topology) {
    let server = bench_server("bench:1MiB", topology).await;
    let direct = Dest::s3("fault-manifest").await;
    let before = previous_backup(&source_uri(&server), &direct).await;
    let proxy = FaultProxy::start(Moto::shared().addr()).await;
    let dest = direct.through(&proxy.endpoint());
    proxy.stop_at_request("PUT", &format!("{FAILED_ID}/manifest.json"));
    let run = spawn_backup(&source_uri(&server), &dest)
        .finish(RUN_LIMIT)
        .await;
    assert!(proxy.stopped(), "the manifest write was never attempted");
    assert_promise_kept(
        &dest,
        &before,
        &run,
        4,
        &["manifest.json"],
        Leftover::ArchiveListedIncomplete,
    )
    .await;
}

/// A transient S3 answer is retried with backoff, the backup succeeds, and each retry is a
/// warning in the log with its attempt number and cause.
async fn transient_s3_error_is_retried(fault: Fault, status: &str, label: &str) {
    let server = bench_server("bench:1MiB", Topology::Standalone).await;
    let direct = Dest::s3(label).await;
    let proxy = FaultProxy::start(Moto::shared().addr()).await;
    let dest = direct.through(&proxy.endpoint());
    proxy.fail_next(2, fault);
    let run = spawn_backup(&source_uri(&server), &dest)
        .finish(RUN_LIMIT)
        .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(proxy.faults_served(), 2);
    let retries: Vec<serde_json::Value> = run
        .log_records()
        .into_iter()
        .filter(|r| r["fields"]["message"] == "retrying S3 request")
        .collect();
    let attempts: Vec<i64> = retries
        .iter()
        .map(|r| r["fields"]["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, vec![2, 3], "{}", run.stderr);
    for r in &retries {
        assert_eq!(r["level"], "WARN");
        assert_eq!(r["fields"]["cause"], status, "{r}");
    }
    let after = direct.snapshot().await;
    assert!(after
        .objects
        .contains_key(&format!("{PREFIX}/{FAILED_ID}/manifest.json")));
    assert!(after.uploads.is_empty());
    let verify = run_nightdump(
        &["verify", FAILED_ID, "--from", &direct.location()],
        &direct.env(),
    )
    .await;
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
    assert_no_secret("the retried run's output", run.all_output().as_bytes());
    for (key, bytes) in direct.contents().await {
        assert_no_secret(&key, &bytes);
    }
}

#[tokio::test]
async fn s3_500_is_retried_with_backoff_then_succeeds_with_the_retries_logged() {
    transient_s3_error_is_retried(Fault::InternalError, "HTTP 500", "fault-500").await;
}

#[tokio::test]
async fn s3_503_slowdown_is_retried_with_backoff_then_succeeds_with_the_retries_logged() {
    transient_s3_error_is_retried(Fault::SlowDown, "HTTP 503", "fault-503").await;
}

on_both_topologies!(
    disk_full_in_a_directory_destination,
    disk_full_in_a_directory_destination_on_a_replica_set,
    disk_full_in_a_directory_destination_with
);

async fn disk_full_in_a_directory_destination_with(topology: Topology) {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Tmpfs::mount(dir.path(), "size=4m") else {
        // Mounting needs root with CAP_SYS_ADMIN; say so loudly rather than pass silently.
        eprintln!("SKIPPED disk_full_in_a_directory_destination: cannot mount a tmpfs here");
        return;
    };
    let dest = Dest::Dir {
        dir,
        _mount: Some(mount),
    };
    let server = bench_server("bench:1MiB", topology).await;
    previous_backup(&source_uri(&server), &dest).await;
    // Fill what is left but a little, so the next archive cannot fit.
    let Dest::Dir { dir, .. } = &dest else {
        unreachable!()
    };
    let filler = dir.path().join(".filler");
    let mut left = fs_available(dir.path());
    let chunk = vec![0x5au8; 64 * 1024];
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while left > 96 * 1024 {
            if f.write_all(&chunk).is_err() {
                break;
            }
            left = left.saturating_sub(chunk.len() as u64);
        }
        f.sync_all().ok();
    }
    let before = dest.snapshot().await;
    let run = spawn_backup(&source_uri(&server), &dest)
        .finish(RUN_LIMIT)
        .await;
    assert_promise_kept(
        &dest,
        &before,
        &run,
        4,
        &["disk full", "free space"],
        Leftover::Nothing,
    )
    .await;
}

fn fs_available(path: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

// Not a failure: mongodump keeps a collection that vanishes between listCollections and its
// read (its metadata is already in the archive's prelude) with no documents, and a
// collection created after listCollections is simply not in this backup.
on_both_topologies!(a_collection_dropped_during_the_dump_succeeds_with_a_warning_and_one_created_is_absent, a_collection_dropped_during_the_dump_succeeds_with_a_warning_and_one_created_is_absent_on_a_replica_set, a_collection_dropped_during_the_dump_succeeds_with_a_warning_and_one_created_is_absent_with);

async fn a_collection_dropped_during_the_dump_succeeds_with_a_warning_and_one_created_is_absent_with(
    topology: Topology,
) {
    let server = bench_server("bench:32MiB", topology).await;
    let uri = source_uri(&server);
    let dest = Dest::dir();
    previous_backup(&uri, &dest).await;
    // With one collection read at a time, the last namespace of the plan is read last, many
    // delayed batches after the drop.
    let previous = dir_manifest(&dest, PREVIOUS_ID);
    let last = previous["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|n| n["type"] != "oplog")
        .unwrap();
    let (db, coll) = (
        last["db"].as_str().unwrap().to_string(),
        last["collection"].as_str().unwrap().to_string(),
    );
    assert!(last["documents"].as_u64().unwrap() > 0);

    let run = spawn_inside_the_dump(&server, &dest, Duration::from_millis(100), 2).await;
    server
        .run_command(&db, bson::doc! { "drop": &coll })
        .await
        .unwrap();
    server
        .run_command(
            &db,
            bson::doc! { "insert": "arrived_late", "documents": [{ "_id": 1 }] },
        )
        .await
        .unwrap();
    let run = run.finish(RUN_LIMIT).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let m = dir_manifest(&dest, FAILED_ID);
    let namespaces = m["namespaces"].as_array().unwrap();
    let dropped = namespaces
        .iter()
        .find(|n| n["db"] == db.as_str() && n["collection"] == coll.as_str())
        .expect("the dropped collection keeps its place");
    assert_eq!(dropped["documents"], 0);
    assert!(!namespaces.iter().any(|n| n["collection"] == "arrived_late"));
    let warnings: Vec<serde_json::Value> = run
        .log_records()
        .into_iter()
        .filter(|r| r["level"] == "WARN")
        .collect();
    assert!(
        warnings.iter().any(|w| {
            w["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("collection dropped during the backup")
                && w["fields"]["ns"] == format!("{db}.{coll}").as_str()
        }),
        "{}",
        run.stderr
    );
    let verify = run_nightdump(&["verify", FAILED_ID, "--from", &dest.location()], &[]).await;
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
    assert_no_secret("the run's output", run.all_output().as_bytes());
    for (key, bytes) in dest.contents().await {
        assert_no_secret(&key, &bytes);
    }
}

#[tokio::test]
async fn lambda_deadline_reached() {
    use lambda_runtime::{Context, Diagnostic, LambdaEvent};
    use nightdump::lambda::metrics::Captured;
    use nightdump::lambda::secrets::SecretsManager;
    use nightdump::lambda::{handle, Deps};

    // More than one 8 MiB part of gzip at the function's level 6.
    let server = bench_server("bench:48MiB", Topology::Standalone).await;
    let uri = source_uri(&server);
    let dest = Dest::s3("fault-deadline").await;
    let mut args = backup_args(&uri, &dest, PREVIOUS_AT);
    args.extend(["--include".to_string(), "bench_shop.customers".to_string()]);
    let previous = run_nightdump(&strs(&args), &dest.env()).await;
    assert_eq!(previous.code, Some(0), "{}", previous.stderr);
    let before = dest.snapshot().await;

    let proxy = FaultProxy::start(Moto::shared().addr()).await;
    let sdk = Moto::sdk_config_for(&proxy.endpoint()).await;
    let env = [
        ("NIGHTDUMP_TO", dest.location()),
        ("MONGODB_URI", uri.clone()),
        ("NIGHTDUMP_ALLOW_PLAIN_URI", "1".into()),
        ("NIGHTDUMP_ALLOW_INCONSISTENT", "true".into()),
        ("NIGHTDUMP_CONNECT_TIMEOUT", "2s".into()),
        ("AWS_LAMBDA_FUNCTION_NAME", "nightdump-test".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let deps = Deps {
        env,
        sdk: sdk.clone(),
        secrets: SecretsManager::new(&sdk),
        metrics: Captured::default(),
    };
    let deadline = std::time::SystemTime::now() + Duration::from_secs(30);
    let mut context = Context::default();
    context.request_id = "deadline-test".into();
    context.deadline = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let event = LambdaEvent::new(serde_json::json!({ "scheduled_at": FAILED_AT }), context);

    // Once the first part is on its way, the source stalls, so the deadline strikes with a
    // multipart upload open.
    proxy.hold_part_uploads(true);
    let run = handle(event, &deps);
    tokio::pin!(run);
    let result = tokio::select! {
        result = &mut run => panic!("the run ended before its first part: {result:?}"),
        _ = proxy.wait_parts_held(1) => {
            server.faults().delay_batches(Duration::from_secs(3600));
            proxy.hold_part_uploads(false);
            tokio::time::timeout(Duration::from_secs(120), run).await.expect("the deadline ends the run")
        }
    };
    assert!(
        std::time::SystemTime::now() < deadline,
        "the function ran past its deadline, where Lambda would have killed it"
    );
    let d: Diagnostic = result.unwrap_err().into();
    assert_eq!(d.error_type, "DeadlineReached", "{}", d.error_message);
    assert!(!d.error_message.contains('\n'), "{}", d.error_message);
    assert!(d.error_message.contains(FAILED_ID), "{}", d.error_message);
    assert_no_secret("the Lambda's error", d.error_message.as_bytes());
    let records: Vec<serde_json::Value> = deps
        .metrics
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["BackupSuccess"], 0);
    assert_eq!(records[0]["ErrorType"], "DeadlineReached");
    assert_destination_kept(&dest, &before, Leftover::Nothing).await;
}

on_both_topologies!(
    mongodb_unreachable_at_the_start,
    mongodb_unreachable_at_the_start_on_a_replica_set,
    mongodb_unreachable_at_the_start_with
);

async fn mongodb_unreachable_at_the_start_with(topology: Topology) {
    let server = bench_server("bench:1MiB", topology).await;
    let dest = Dest::dir();
    let before = previous_backup(&source_uri(&server), &dest).await;
    // A port nothing listens on any more.
    let port = closed_port();
    let uri = format!("mongodb://backup:{PASSWORD_IN_URI}@127.0.0.1:{port}/?directConnection=true");
    let run = spawn_backup(&uri, &dest).finish(RUN_LIMIT).await;
    // --connect-timeout 5s: it gives up then, not after the driver's 30 s default.
    assert!(run.elapsed < Duration::from_secs(15), "{:?}", run.elapsed);
    assert_promise_kept(
        &dest,
        &before,
        &run,
        3,
        &[
            &format!("cannot reach MongoDB at mongodb://backup:***@127.0.0.1:{port}/"),
            "Check host, port",
        ],
        Leftover::Nothing,
    )
    .await;
}

// Dropped while its cursor is open, a collection cannot be archived whole: the backup
// fails, naming the collection, rather than store part of it as if it were all.
on_both_topologies!(
    a_collection_dropped_while_it_is_read_fails_the_backup,
    a_collection_dropped_while_it_is_read_fails_the_backup_on_a_replica_set,
    a_collection_dropped_while_it_is_read_fails_the_backup_with
);

async fn a_collection_dropped_while_it_is_read_fails_the_backup_with(topology: Topology) {
    let server = bench_server("bench:32MiB", topology).await;
    let uri = source_uri(&server);
    let dest = Dest::dir();
    let before = previous_backup(&uri, &dest).await;
    let previous = dir_manifest(&dest, PREVIOUS_ID);
    // With one collection read at a time, the first namespace outside admin is read first; at
    // 32 MiB it takes several delayed batches, so the drop lands while its cursor is open.
    let first = previous["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["db"] != "admin")
        .unwrap();
    let (db, coll) = (
        first["db"].as_str().unwrap().to_string(),
        first["collection"].as_str().unwrap().to_string(),
    );

    // admin.system.users, then the first batch of the first collection.
    let run = spawn_inside_the_dump(&server, &dest, Duration::from_millis(200), 2).await;
    server
        .run_command(&db, bson::doc! { "drop": &coll })
        .await
        .unwrap();
    let run = run.finish(RUN_LIMIT).await;
    assert_promise_kept(
        &dest,
        &before,
        &run,
        3,
        &[&format!("{db}.{coll}"), "dropped"],
        Leftover::Nothing,
    )
    .await;
}

on_both_topologies!(
    sigterm_mid_dump_stops_the_backup_cleanly_in_a_directory,
    sigterm_mid_dump_stops_the_backup_cleanly_in_a_directory_on_a_replica_set,
    sigterm_mid_dump_in_a_directory_with
);

/// SIGTERM (systemd, Kubernetes, `timeout`, ECS) inside the dump: exit 8 with one line, the
/// temporary file gone, nothing that looks complete.
async fn sigterm_mid_dump_in_a_directory_with(topology: Topology) {
    let server = bench_server("bench:8MiB", topology).await;
    let uri = source_uri(&server);
    let dest = Dest::dir();
    let before = previous_backup(&uri, &dest).await;
    let run = spawn_inside_the_dump(&server, &dest, Duration::from_millis(200), 2).await;
    run.signal("TERM");
    let run = run.finish(RUN_LIMIT).await;
    assert_promise_kept(
        &dest,
        &before,
        &run,
        8,
        &["stopped by SIGTERM", "nothing was marked successful"],
        Leftover::Nothing,
    )
    .await;
    let Dest::Dir { dir, .. } = &dest else {
        unreachable!()
    };
    let temp: Vec<String> = files(dir.path())
        .into_iter()
        .filter(|f| f.contains(".tmp-"))
        .collect();
    assert!(temp.is_empty(), "temporary files left: {temp:?}");
}

on_both_topologies!(
    sigterm_mid_upload_stops_the_backup_and_aborts_its_upload_on_s3,
    sigterm_mid_upload_stops_the_backup_and_aborts_its_upload_on_s3_on_a_replica_set,
    sigterm_mid_upload_on_s3_with
);

/// SIGTERM with a multipart upload open: the upload is aborted before the process exits.
async fn sigterm_mid_upload_on_s3_with(topology: Topology) {
    let server = bench_server(MULTIPART_SEED, topology).await;
    let uri = source_uri(&server);
    let label = match topology {
        Topology::Standalone => "sigterm-upload",
        Topology::ReplicaSet => "sigterm-upload-rs",
    };
    let direct = Dest::s3(label).await;
    let before = previous_backup(&uri, &direct).await;
    let proxy = FaultProxy::start(Moto::shared().addr()).await;
    let dest = direct.through(&proxy.endpoint());
    proxy.hold_part_uploads(true);
    let run = spawn_backup(&uri, &dest);
    proxy.wait_parts_held(1).await;
    run.signal("TERM");
    proxy.hold_part_uploads(false);
    let run = run.finish(RUN_LIMIT).await;
    assert_promise_kept(
        &dest,
        &before,
        &run,
        8,
        &["stopped by SIGTERM", "upload was aborted"],
        Leftover::Nothing,
    )
    .await;
}

on_both_topologies!(
    sigterm_mid_restore_stops_at_a_batch_boundary_with_its_report,
    sigterm_mid_restore_stops_at_a_batch_boundary_with_its_report_on_a_replica_set,
    sigterm_mid_restore_with
);

/// SIGTERM during a restore (of an archive with an oplog, from a replica set, or without):
/// the batch in hand is finished, then the exit-9 report says what was written.
async fn sigterm_mid_restore_with(topology: Topology) {
    let server = bench_server("bench:8MiB", topology).await;
    let dest = Dest::dir();
    previous_backup(&source_uri(&server), &dest).await;
    let target = mongo_test_server::start(ServerConfig::default())
        .await
        .unwrap();
    target
        .faults()
        .delay_command("insert", Duration::from_millis(300));
    let location = dest.location();
    let run = spawn_nightdump(
        &[
            "restore",
            PREVIOUS_ID,
            "--from",
            &location,
            "--uri",
            &target.uri(),
            "--parallel",
            "1",
            "--json",
        ],
        &[],
    );
    target.faults().wait_commands_delayed(2).await;
    run.signal("TERM");
    let run = run.finish(RUN_LIMIT).await;
    assert_eq!(run.code, Some(9), "{}", run.stderr);
    let plain = run.plain_stderr_lines();
    assert!(
        plain
            .iter()
            .any(|l| l.starts_with("error: ") && l.contains("stopped by a signal")),
        "{}",
        run.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        report["error"].as_str().unwrap().contains("SIGTERM"),
        "{report}"
    );
    assert!(
        report["totals"]["inserted"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        report["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["status"] == "partial" || n["status"] == "not_started"),
        "{report}"
    );
    assert!(
        report.get("oplog").is_none(),
        "no replay after a stop: {report}"
    );
}
