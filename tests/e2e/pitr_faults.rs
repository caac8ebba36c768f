//! The oplog capture's rows of the promise table, each through the real binary: a roll-over
//! gap, two captures at once, a capture stopped by SIGTERM, S3 down mid-slice, MongoDB
//! unreachable, a standalone source. A failed capture exits non-zero with one line, leaves no
//! slice that looks complete (and no open upload), never moves what was stored, and the next
//! capture covers its range.

use std::time::Duration;

use bson::{doc, Document};
use mongo_test_server::engine::OplogLimits;
use mongo_test_server::{ServerConfig, ServerHandle, User};

use crate::faults::{Dest, Snapshot};
use crate::harness::*;
use crate::secrets::{assert_no_secret, PASSWORD, PASSWORD_IN_URI};
use crate::support::fault_proxy::FaultProxy;
use crate::support::moto::Moto;

const RUN_LIMIT: Duration = Duration::from_secs(120);

async fn server(replica_set: bool) -> ServerHandle {
    mongo_test_server::start(ServerConfig {
        users: vec![User::new("backup", PASSWORD)],
        replica_set: replica_set.then(|| "rs0".to_string()),
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

fn uri(server: &ServerHandle) -> String {
    server.uri().replacen(
        "mongodb://",
        &format!("mongodb://backup:{PASSWORD_IN_URI}@"),
        1,
    )
}

async fn write(server: &ServerHandle, from: i64, count: i64) {
    let coll = mongodb::Client::with_uri_str(uri(server))
        .await
        .unwrap()
        .database("app")
        .collection::<Document>("events");
    for i in from..from + count {
        coll.insert_one(doc! { "_id": i, "pad": "p".repeat(200) })
            .await
            .unwrap();
    }
}

fn capture_args(uri: &str, dest: &Dest) -> Vec<String> {
    [
        "oplog",
        "--uri",
        uri,
        "--to",
        &dest.location(),
        "--connect-timeout",
        "5s",
        "--log",
        "info",
        "--log-format",
        "json",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

async fn capture(uri: &str, dest: &Dest) -> Run {
    run_nightdump(&strs(&capture_args(uri, dest)), &dest.env()).await
}

fn spawn_capture(uri: &str, dest: &Dest) -> Running {
    spawn_nightdump(&strs(&capture_args(uri, dest)), &dest.env())
}

/// A backup (the chain's start), then one capture: the state every fault starts from, and
/// where that capture's slice ends (as the reports describe it).
async fn chain_started(server: &ServerHandle, dest: &Dest) -> (Snapshot, serde_json::Value) {
    write(server, 0, 20).await;
    let run = run_nightdump(
        &[
            "backup",
            "--uri",
            &uri(server),
            "--to",
            &dest.location(),
            "--quiet",
        ],
        &dest.env(),
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    write(server, 100, 20).await;
    let first = report(&capture(&uri(server), dest).await);
    assert_eq!(first["status"], "stored", "{first}");
    (dest.snapshot().await, first["last"].clone())
}

/// The capture's JSON report.
fn report(run: &Run) -> serde_json::Value {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// One error line naming every `cause`, the exit code, nothing on stdout, no secret.
fn assert_failed(run: &Run, code: i32, cause: &[&str]) {
    assert_eq!(run.code, Some(code), "stderr:\n{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let plain = run.plain_stderr_lines();
    assert_eq!(plain.len(), 1, "one error line expected:\n{}", run.stderr);
    for c in cause {
        assert!(
            plain[0].contains(c),
            "the error does not name {c:?}: {}",
            plain[0]
        );
    }
    assert!(run.stdout.trim().is_empty(), "stdout: {}", run.stdout);
    assert_no_secret("the failed capture's output", run.all_output().as_bytes());
}

/// Nothing stored before changed, no upload is open, and no new slice manifest exists
/// (beyond `allowed`, e.g. a recorded gap).
async fn assert_nothing_complete(dest: &Dest, before: &Snapshot, allowed: usize) {
    let after = dest.snapshot().await;
    assert!(
        after.uploads.is_empty(),
        "unfinished uploads: {:?}",
        after.uploads
    );
    for (key, digest) in &before.objects {
        assert_eq!(
            after.objects.get(key),
            Some(digest),
            "{key} changed or vanished"
        );
    }
    let new_links: Vec<&String> = after
        .objects
        .keys()
        .filter(|k| !before.objects.contains_key(*k) && k.ends_with("slice.json"))
        .collect();
    assert_eq!(
        new_links.len(),
        allowed,
        "new slice manifests: {new_links:?}"
    );
}

/// `nightdump verify --oplog`: every slice intact, the chain without a hole or an overlap.
async fn assert_chain_verifies(dest: &Dest) -> String {
    let run = run_nightdump(
        &["verify", "--oplog", "--from", &dest.location()],
        &dest.env(),
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    run.stdout
}

fn slice_manifests(snapshot: &Snapshot) -> usize {
    snapshot
        .objects
        .keys()
        .filter(|k| k.ends_with("slice.json"))
        .count()
}

#[tokio::test]
async fn a_capture_after_the_oplog_rolled_over_fails_and_records_the_gap() {
    let server = server(true).await;
    let dest = Dest::dir();
    let (before, _) = chain_started(&server, &dest).await;
    server.engine().set_oplog_limits(OplogLimits {
        max_entries: Some(15),
        max_bytes: None,
    });
    write(&server, 1000, 60).await;
    let run = capture(&uri(&server), &dest).await;
    assert_failed(
        &run,
        3,
        &[
            "oplog no longer holds the entries after",
            "is lost",
            "enlarge the oplog",
            "capture more often",
        ],
    );
    // The gap is recorded (one link of kind gap), nothing else.
    assert_nothing_complete(&dest, &before, 1).await;
    let status = run_nightdump(&["status", "--from", &dest.location(), "--json"], &[]).await;
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(status["pitr"]["gap"]["from"].is_string(), "{status}");
    let lag = run_nightdump(
        &["status", "--from", &dest.location(), "--max-lag", "1h"],
        &[],
    )
    .await;
    assert_eq!(
        lag.code,
        Some(7),
        "a broken window fails --max-lag: {}",
        lag.stderr
    );
    assert!(lag.stderr.contains("broken"), "{}", lag.stderr);
    // A restore past the gap is refused before anything is written, naming it.
    let target = server_without_users().await;
    let restore = run_nightdump(
        &[
            "restore",
            "--from",
            &dest.location(),
            "--to-time",
            &nightdump::layout::format_time(time::OffsetDateTime::now_utc()),
            "--uri",
            &target.uri(),
        ],
        &[],
    )
    .await;
    assert_eq!(restore.code, Some(6), "{}", restore.stderr);
    assert!(restore.stderr.contains("are lost"), "{}", restore.stderr);
    assert!(list_collections(&target.uri(), "app").await.is_empty());
    // The next backup starts a new chain: the window no longer has the gap.
    let run = run_nightdump(
        &[
            "backup",
            "--uri",
            &uri(&server),
            "--to",
            &dest.location(),
            "--quiet",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    write(&server, 5000, 5).await;
    let next = report(&capture(&uri(&server), &dest).await);
    assert_eq!(next["status"], "stored", "{next}");
    let status = run_nightdump(&["status", "--from", &dest.location(), "--json"], &[]).await;
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(status["pitr"]["gap"].is_null(), "{status}");
    let verified = assert_chain_verifies(&dest).await;
    assert!(
        verified.contains("gap:"),
        "verify reports the recorded gap: {verified}"
    );
}

async fn server_without_users() -> ServerHandle {
    mongo_test_server::start(ServerConfig::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_captures_started_at_once_store_one_slice_and_both_succeed() {
    let server = server(true).await;
    let dest = Dest::dir();
    let (before, _) = chain_started(&server, &dest).await;
    write(&server, 1000, 30).await;
    // Both read the chain before either has stored anything: they race for one range.
    server
        .faults()
        .delay_command("find", Duration::from_millis(400));
    let a = spawn_capture(&uri(&server), &dest);
    let b = spawn_capture(&uri(&server), &dest);
    let (a, b) = (a.finish(RUN_LIMIT).await, b.finish(RUN_LIMIT).await);
    server.faults().clear();
    let (a, b) = (report(&a), report(&b));
    let mut statuses = [a["status"].as_str().unwrap(), b["status"].as_str().unwrap()];
    statuses.sort();
    assert_eq!(statuses, ["stored", "stored-by-another-run"], "{a} {b}");
    // The loser reports the winner's slice, and left nothing of its own.
    assert_eq!(a["slice"], b["slice"]);
    assert_eq!(a["last"], b["last"]);
    let after = dest.snapshot().await;
    assert_eq!(slice_manifests(&after), slice_manifests(&before) + 1);
    let dir = a["slice"].as_str().unwrap();
    let in_dir: Vec<&String> = after
        .objects
        .keys()
        .filter(|k| k.starts_with(dir))
        .collect();
    assert_eq!(
        in_dir.len(),
        2,
        "one manifest and one entries object: {in_dir:?}"
    );
    assert_chain_verifies(&dest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_capture_leaves_nothing_complete_and_the_next_capture_covers_its_range() {
    let server = server(true).await;
    let dest = Dest::dir();
    let (before, previous_end) = chain_started(&server, &dest).await;
    write(&server, 1000, 400).await;
    server.faults().delay_batches(Duration::from_millis(300));
    let mut run = spawn_capture(&uri(&server), &dest);
    run.wait_for_log(&["capturing the oplog"]).await;
    let seen = server.faults().batches_sent();
    server.faults().wait_batches_sent(seen + 1).await;
    run.signal("TERM");
    let run = run.finish(RUN_LIMIT).await;
    server.faults().clear();
    assert_failed(
        &run,
        8,
        &["stopped by SIGTERM", "the next capture covers its range"],
    );
    assert_nothing_complete(&dest, &before, 0).await;
    let Dest::Dir { dir, .. } = &dest else {
        unreachable!()
    };
    let temp: Vec<String> = files(dir.path())
        .into_iter()
        .filter(|f| f.contains(".tmp-"))
        .collect();
    assert!(temp.is_empty(), "temporary files left: {temp:?}");
    let next = report(&capture(&uri(&server), &dest).await);
    assert_eq!(next["status"], "stored", "{next}");
    assert_eq!(
        next["after"], previous_end,
        "the next capture starts where the chain ended"
    );
    assert!(next["entries"].as_u64().unwrap() >= 400, "{next}");
    assert_chain_verifies(&dest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_mid_slice_leaves_nothing_complete_and_the_next_capture_covers_its_range() {
    let server = server(true).await;
    let direct = Dest::s3("pitr-s3-down").await;
    let (before, previous_end) = chain_started(&server, &direct).await;
    write(&server, 1000, 50).await;
    let proxy = FaultProxy::start(Moto::shared().addr()).await;
    let dest = direct.through(&proxy.endpoint());
    proxy.stop_at_request("PUT", ".bson.gz");
    let run = spawn_capture(&uri(&server), &dest).finish(RUN_LIMIT).await;
    assert!(proxy.stopped(), "the slice's upload was never attempted");
    proxy.resume();
    assert_failed(&run, 4, &["oplog/"]);
    assert_nothing_complete(&direct, &before, 0).await;
    let next = report(&capture(&uri(&server), &direct).await);
    assert_eq!(next["status"], "stored", "{next}");
    assert_eq!(
        next["after"], previous_end,
        "the next capture starts where the chain ended"
    );
    assert!(next["entries"].as_u64().unwrap() >= 50, "{next}");
    assert_chain_verifies(&direct).await;
}

#[tokio::test]
async fn mongodb_unreachable_for_a_capture_changes_nothing() {
    let server = server(true).await;
    let dest = Dest::dir();
    let (before, _) = chain_started(&server, &dest).await;
    let unreachable = format!(
        "mongodb://backup:{PASSWORD_IN_URI}@127.0.0.1:{}/?directConnection=true",
        closed_port()
    );
    let run = capture(&unreachable, &dest).await;
    assert_failed(&run, 3, &["cannot reach MongoDB"]);
    assert_nothing_complete(&dest, &before, 0).await;
}

#[tokio::test]
async fn a_capture_of_a_standalone_server_is_refused() {
    let standalone = server(false).await;
    let dest = Dest::dir();
    let rs = server(true).await;
    let (before, _) = chain_started(&rs, &dest).await;
    let run = capture(&uri(&standalone), &dest).await;
    assert_failed(&run, 2, &["standalone server", "has no oplog to capture"]);
    assert_nothing_complete(&dest, &before, 0).await;
}
