//! Continuous point-in-time recovery, end to end: a writer keeps inserting, updating and
//! deleting (a collection created after the backup and an atomic multi-document write among
//! them) while a backup and several oplog captures run; for instants chosen across the backup
//! and the slices, `restore --to-time` into an empty server gives exactly the source's state
//! then, and so does the restore of the archive `cat --to-time` writes. The writer records
//! the cluster time each write's reply carried (`operationTime`), so the state at any instant
//! is known without reading the oplog.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Document, Timestamp};
use futures_util::TryStreamExt;
use mongo_test_server::{ServerConfig, ServerHandle};
use nightdump::backup;
use nightdump::pitr::{self, CaptureOptions, CaptureStatus};
use nightdump::restore::{self, Input, RestoreOptions};
use nightdump::secret::ConnectionString;
use nightdump::store::{Destination, S3Options, Store};

use crate::harness::*;
use crate::support::moto::Moto;

const DB: &str = "pit";
const ITEMS: &str = "items";
/// Created by the writer after the backup: only a replay that creates it restores it.
const FRESH: &str = "fresh";
const SEEDED: i64 = 120;

/// One write, as the writer meant it.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Insert(&'static str, i64, i64),
    Update(i64, i64),
    Delete(i64),
    /// Several writes applied at once: one oplog entry, as a committed transaction is.
    Atomic(Vec<Op>),
}

type State = BTreeMap<(String, i64), Document>;

impl Op {
    fn apply(&self, state: &mut State) {
        match self {
            Op::Insert(coll, id, v) => {
                state.insert(
                    (coll.to_string(), *id),
                    doc! { "_id": *id, "v": *v, "pad": "y" },
                );
            }
            Op::Update(id, v) => {
                if let Some(d) = state.get_mut(&(ITEMS.to_string(), *id)) {
                    d.insert("v", *v);
                }
            }
            Op::Delete(id) => {
                state.remove(&(ITEMS.to_string(), *id));
            }
            Op::Atomic(ops) => ops.iter().for_each(|o| o.apply(state)),
        }
    }

    /// The operation as an `applyOps` entry.
    fn entry(&self) -> Document {
        match self {
            Op::Insert(coll, id, v) => {
                doc! { "op": "i", "ns": format!("{DB}.{coll}"), "o": { "_id": *id, "v": *v, "pad": "y" } }
            }
            Op::Update(id, v) => {
                doc! { "op": "u", "ns": format!("{DB}.{ITEMS}"), "o": { "$v": 2, "diff": { "u": { "v": *v } } }, "o2": { "_id": *id } }
            }
            Op::Delete(id) => {
                doc! { "op": "d", "ns": format!("{DB}.{ITEMS}"), "o": { "_id": *id } }
            }
            Op::Atomic(_) => doc! {},
        }
    }
}

async fn client(uri: &str) -> mongodb::Client {
    mongodb::Client::with_uri_str(uri).await.expect("client")
}

fn initial() -> State {
    (0..SEEDED)
        .map(|i| {
            (
                (ITEMS.to_string(), i),
                doc! { "_id": i, "v": -1_i64, "pad": "x".repeat(30) },
            )
        })
        .collect()
}

async fn seed(uri: &str) {
    client(uri)
        .await
        .database(DB)
        .collection::<Document>(ITEMS)
        .insert_many(initial().into_values().collect::<Vec<_>>())
        .await
        .unwrap();
}

/// Writes until stopped, each write through one session so its reply's `operationTime` (the
/// cluster time of the write) is recorded with it.
struct Writer {
    stop: Arc<AtomicBool>,
    /// Once set, the writer creates the new collection at its next write and makes the
    /// atomic write fifteen writes later.
    specials: Arc<AtomicBool>,
    done: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<Vec<(Op, Timestamp)>>,
}

fn start_writer(uri: &str) -> Writer {
    let uri = uri.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let specials = Arc::new(AtomicBool::new(false));
    let (count, done) = tokio::sync::watch::channel(0usize);
    let stopping = Arc::clone(&stop);
    let special = Arc::clone(&specials);
    let task = tokio::spawn(async move {
        let client = client(&uri).await;
        let mut session = client.start_session().await.unwrap();
        let db = client.database(DB);
        let items = db.collection::<Document>(ITEMS);
        let mut live: Vec<i64> = (0..SEEDED).collect();
        let mut log = Vec::new();
        let mut n = 0_i64;
        let mut fresh_at = None;
        while !stopping.load(Ordering::Relaxed) {
            n += 1;
            let pick = live[(n as usize * 7919) % live.len()];
            if fresh_at.is_none() && special.load(Ordering::Relaxed) {
                fresh_at = Some(n);
            }
            let op = match fresh_at.map(|f| n - f) {
                // After the backup: a collection the backup does not hold.
                Some(0) => Op::Insert(FRESH, n, n),
                // One atomic write of several documents.
                Some(15) => Op::Atomic(vec![
                    Op::Insert(ITEMS, 90_000 + n, n),
                    Op::Update(pick, n),
                    Op::Insert(FRESH, 90_000 + n, n),
                ]),
                _ => match n % 4 {
                    0 | 1 => Op::Update(pick, n),
                    2 => Op::Insert(ITEMS, 10_000 + n, n),
                    _ if live.len() > 40 => Op::Delete(pick),
                    _ => Op::Update(pick, n),
                },
            };
            match &op {
                Op::Insert(coll, id, v) => {
                    db.collection::<Document>(coll)
                        .insert_one(doc! { "_id": *id, "v": *v, "pad": "y" })
                        .session(&mut session)
                        .await
                        .unwrap();
                    if *coll == ITEMS {
                        live.push(*id);
                    }
                }
                Op::Update(id, v) => {
                    let r = items
                        .update_one(doc! { "_id": *id }, doc! { "$set": { "v": *v } })
                        .session(&mut session)
                        .await
                        .unwrap();
                    assert_eq!(r.modified_count, 1);
                }
                Op::Delete(id) => {
                    items
                        .delete_one(doc! { "_id": *id })
                        .session(&mut session)
                        .await
                        .unwrap();
                    live.retain(|l| l != id);
                }
                Op::Atomic(ops) => {
                    let entries: Vec<Document> = ops.iter().map(Op::entry).collect();
                    client
                        .database("admin")
                        .run_command(doc! { "applyOps": entries })
                        .session(&mut session)
                        .await
                        .unwrap();
                    live.push(90_000 + n);
                }
            }
            let ts = session
                .operation_time()
                .expect("a replica set's reply carries operationTime");
            log.push((op, ts));
            count.send_replace(log.len());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        log
    });
    Writer {
        stop,
        specials,
        done,
        task,
    }
}

impl Writer {
    async fn wait_for(&mut self, ops: usize) {
        self.done.wait_for(|n| *n >= ops).await.unwrap();
    }

    async fn stop(self) -> Vec<(Op, Timestamp)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

fn key(ts: Timestamp) -> (u32, u32) {
    (ts.time, ts.increment)
}

fn state_at(log: &[(Op, Timestamp)], t: Timestamp) -> State {
    let mut state = initial();
    for (op, ts) in log {
        if key(*ts) <= key(t) {
            op.apply(&mut state);
        }
    }
    state
}

async fn target_state(uri: &str) -> State {
    let db = client(uri).await.database(DB);
    let mut state = State::new();
    for coll in [ITEMS, FRESH] {
        let docs: Vec<Document> = db
            .collection::<Document>(coll)
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        for d in docs {
            let id = d.get_i64("_id").unwrap();
            state.insert((coll.to_string(), id), d);
        }
    }
    state
}

/// The replica set captured: the real one `NIGHTDUMP_TEST_MONGODB_URI` names (its `pit`
/// database dropped first, one test at a time), or the test server run as a replica set.
/// Restore targets are always empty test servers.
struct Deployment {
    uri: String,
    server: Option<ServerHandle>,
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

static REAL_SERVER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Deployment {
    fn uri(&self) -> String {
        self.uri.clone()
    }

    /// Slows every cursor batch, so the dump lasts while the writer works (test server only;
    /// a real server's dump is slow enough on its own).
    fn slow_batches(&self, delay: Duration) {
        if let Some(s) = &self.server {
            s.faults().delay_batches(delay);
        }
    }

    fn clear_faults(&self) {
        if let Some(s) = &self.server {
            s.faults().clear();
        }
    }
}

async fn replica_set() -> Deployment {
    if let Ok(uri) = std::env::var("NIGHTDUMP_TEST_MONGODB_URI") {
        let turn = REAL_SERVER_TURN.lock().await;
        client(&uri).await.database(DB).drop().await.unwrap();
        return Deployment {
            uri,
            server: None,
            _turn: Some(turn),
        };
    }
    let server = mongo_test_server::start(ServerConfig {
        replica_set: Some("rs0".into()),
        ..ServerConfig::default()
    })
    .await
    .expect("server starts");
    Deployment {
        uri: server.uri(),
        server: Some(server),
        _turn: None,
    }
}

async fn empty_target() -> ServerHandle {
    mongo_test_server::start(ServerConfig::default())
        .await
        .expect("server starts")
}

fn capture_options(uri: &str, s3: &S3Options) -> CaptureOptions {
    CaptureOptions {
        source: options(uri).source,
        s3: s3.clone(),
        encrypt: None,
        compression_level: 1,
        deadline: None,
        cancel: Default::default(),
    }
}

fn to_time_options(uri: &str) -> RestoreOptions {
    let mut o = RestoreOptions::new(Some(ConnectionString::parse(uri).unwrap()));
    o.server_selection_timeout = Duration::from_secs(5);
    o.require_oplog = true;
    o.replay_new_namespaces = true;
    o
}

/// The scenario on `store`: returns the writer's log and the backup's point in time.
async fn backup_and_captures(
    uri: &str,
    server: &Deployment,
    store: &Store,
    s3: &S3Options,
) -> (Vec<(Op, Timestamp)>, Timestamp, Vec<Timestamp>) {
    seed(uri).await;
    let mut writer = start_writer(uri);
    writer.wait_for(20).await;
    server.slow_batches(Duration::from_millis(20));
    let mut opts = options(uri);
    opts.allow_inconsistent = false;
    let outcome = backup::run(&opts, store, &progress()).await.unwrap();
    server.clear_faults();
    writer.specials.store(true, Ordering::Relaxed);
    let pit = outcome.manifest.point_in_time.clone().unwrap().ts.to_bson();
    let mut ends = Vec::new();
    for round in 1..=3 {
        let seen = *writer.done.borrow();
        writer.wait_for(seen + 20).await;
        let captured = pitr::capture::run(&capture_options(uri, s3), store)
            .await
            .unwrap();
        assert_eq!(captured.status, CaptureStatus::Stored, "round {round}");
        ends.push(captured.link.unwrap().manifest.last());
    }
    let log = writer.stop().await;
    let last = pitr::capture::run(&capture_options(uri, s3), store)
        .await
        .unwrap();
    if let Some(link) = last.link {
        ends.push(link.manifest.last());
    }
    (log, pit, ends)
}

/// Five instants or more across the backup and the slices: the point in time itself, writes
/// inside each slice, either side of the atomic write, and the last write.
fn instants(log: &[(Op, Timestamp)], pit: Timestamp, ends: &[Timestamp]) -> Vec<Timestamp> {
    let after: Vec<Timestamp> = log
        .iter()
        .map(|(_, t)| *t)
        .filter(|t| key(*t) > key(pit))
        .collect();
    let atomic = log
        .iter()
        .position(|(op, _)| matches!(op, Op::Atomic(_)))
        .expect("the atomic write ran");
    let mut chosen = vec![
        pit,
        after[after.len() / 5],
        log[atomic - 1].1,
        log[atomic].1,
        after[after.len() * 3 / 4],
        *after.last().unwrap(),
    ];
    chosen.extend(ends.first());
    chosen.sort_by_key(|t| key(*t));
    chosen.dedup();
    chosen
}

async fn restore_to(store: &Store, t: Timestamp) -> State {
    let target = empty_target().await;
    let prepared = pitr::prepare(store, t, None, true).await.unwrap();
    let reader = Input::Reader {
        name: prepared.name(),
        reader: pitr::to_time::open(prepared, store.clone()),
    };
    restore::run(&to_time_options(&target.uri()), reader, &progress())
        .await
        .unwrap();
    target_state(&target.uri()).await
}

/// The archive `cat --to-time` writes, restored by the project's own restore as
/// mongorestore --oplogReplay would.
async fn restore_cat(store: &Store, t: Timestamp) -> State {
    let prepared = pitr::prepare(store, t, None, false).await.unwrap();
    let mut archive: Vec<u8> = Vec::new();
    pitr::to_time::cat(prepared, store.clone(), &mut archive)
        .await
        .unwrap();
    let target = empty_target().await;
    let reader = Input::Reader {
        name: "cat --to-time".into(),
        reader: Box::new(std::io::Cursor::new(archive)),
    };
    restore::run(&to_time_options(&target.uri()), reader, &progress())
        .await
        .unwrap();
    target_state(&target.uri()).await
}

async fn restores_to_any_instant(store: &Store, s3: &S3Options, server: &Deployment) {
    let uri = server.uri();
    let (log, pit, ends) = backup_and_captures(&uri, server, store, s3).await;
    assert!(ends.len() >= 3, "several slices: {ends:?}");
    assert!(
        log.iter().filter(|(_, t)| key(*t) > key(pit)).count() > 40,
        "the writer worked across the slices"
    );
    let chosen = instants(&log, pit, &ends);
    assert!(chosen.len() >= 5, "{chosen:?}");
    for t in chosen {
        let expected = state_at(&log, t);
        assert_eq!(
            restore_to(store, t).await,
            expected,
            "restore --to-time {t}"
        );
        assert_eq!(restore_cat(store, t).await, expected, "cat --to-time {t}");
    }
    // Before the backup's point in time nothing is restorable from it.
    let before = Timestamp {
        time: pit.time - 1,
        increment: 0,
    };
    let err = pitr::prepare(store, before, None, true)
        .await
        .err()
        .unwrap();
    assert_eq!(err.exit_code(), 5, "{err}");
    // Past the newest capture: refused before any write, naming where the slices end.
    let past = Timestamp {
        time: ends.last().unwrap().time + 60,
        increment: 0,
    };
    let err = pitr::prepare(store, past, None, true).await.err().unwrap();
    assert_eq!(err.exit_code(), 6, "{err}");
    assert!(err.to_string().contains("run `nightdump oplog`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_to_any_instant_across_a_backup_and_its_slices_in_a_directory() {
    let server = replica_set().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    restores_to_any_instant(&store, &S3Options::default(), &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_to_any_instant_across_a_backup_and_its_slices_on_s3() {
    let server = replica_set().await;
    let moto = Moto::shared();
    let bucket = moto.create_bucket("pitr").await;
    let s3 = S3Options {
        force_path_style: true,
        ..S3Options::default()
    };
    let sdk = Moto::sdk_config_for(&moto.endpoint()).await;
    let dest: Destination = format!("s3://{bucket}/nightly").parse().unwrap();
    let store = Store::open_with_sdk_config(&dest, &sdk, &s3).await.unwrap();
    restores_to_any_instant(&store, &s3, &server).await;
}

async fn capture_now(uri: &str, store: &Store, s3: &S3Options) -> nightdump::chain::Link {
    let outcome = pitr::capture::run(&capture_options(uri, s3), store)
        .await
        .unwrap();
    assert_eq!(outcome.status, CaptureStatus::Stored);
    outcome.link.unwrap()
}

async fn write_some(uri: &str, from: i64) {
    client(uri)
        .await
        .database(DB)
        .collection::<Document>(ITEMS)
        .insert_many((from..from + 5).map(|i| doc! { "_id": i }))
        .await
        .unwrap();
}

async fn backup_now(uri: &str, store: &Store) -> Timestamp {
    let mut opts = options(uri);
    opts.allow_inconsistent = false;
    let outcome = backup::run(&opts, store, &progress()).await.unwrap();
    outcome.manifest.point_in_time.unwrap().ts.to_bson()
}

/// Prune removes the slices that end before the oldest kept backup's point in time, and no
/// other: the kept backup's chain stays whole, and the chain's newest link stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_only_the_slices_no_kept_backup_needs() {
    let server = replica_set().await;
    let uri = server.uri();
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let s3 = S3Options::default();
    write_some(&uri, 0).await;
    backup_now(&uri, &store).await;
    write_some(&uri, 10).await;
    let s1 = capture_now(&uri, &store, &s3).await;
    let first = s1
        .manifest
        .first
        .expect("a slice records its first entry")
        .to_bson();
    assert!(key(s1.manifest.after()) < key(first) && key(first) <= key(s1.manifest.last()));
    write_some(&uri, 20).await;
    let s2 = capture_now(&uri, &store, &s3).await;
    // The second backup starts after the first slices, so only the slices after it matter.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write_some(&uri, 30).await;
    let pit2 = backup_now(&uri, &store).await;
    write_some(&uri, 40).await;
    let s3_link = capture_now(&uri, &store, &s3).await;
    assert!(
        key(s3_link.manifest.after()) < key(pit2),
        "the third slice holds the second backup's point in time"
    );
    write_some(&uri, 50).await;
    let s4 = capture_now(&uri, &store, &s3).await;

    let policy = nightdump::prune::Policy {
        last: 1,
        grace: Duration::from_secs(3600),
        ..Default::default()
    };
    let dry = nightdump::prune::run(&store, &policy, false, None)
        .await
        .unwrap();
    assert_eq!(dry.slices.removed, [s1.dir.clone(), s2.dir.clone()]);
    assert_eq!(
        nightdump::chain::read(&store).await.unwrap().links.len(),
        4,
        "a dry run deletes nothing"
    );
    let report = nightdump::prune::run(&store, &policy, true, None)
        .await
        .unwrap();
    assert!(report.error.is_none());
    assert_eq!(report.slices.removed, [s1.dir.clone(), s2.dir.clone()]);
    assert_eq!(report.slices.kept, 2);
    let chain = nightdump::chain::read(&store).await.unwrap();
    let left: Vec<&str> = chain.links.iter().map(|l| l.dir.as_str()).collect();
    assert_eq!(left, [s3_link.dir.as_str(), s4.dir.as_str()]);
    assert!(chain.orphans.is_empty() && chain.unfinished.is_empty());
    // The kept backup still restores to the end of the chain.
    let end = s4.manifest.last();
    let expected_items = target_state(&uri).await;
    assert_eq!(restore_to(&store, end).await, expected_items);
    // With every backup removed but the newest link kept, the next capture continues.
    write_some(&uri, 60).await;
    let s5 = capture_now(&uri, &store, &s3).await;
    assert_eq!(s5.manifest.after(), end);
}

/// Slices stored with S3 Object Lock are never sent a delete while locked: prune reports them
/// kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_locked_slices() {
    let server = replica_set().await;
    let uri = server.uri();
    let moto = Moto::shared();
    let bucket = format!("{}-lock", moto.create_bucket("pitr-lock").await);
    moto.s3_client()
        .await
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let sdk = Moto::sdk_config_for(&moto.endpoint()).await;
    let dest: Destination = format!("s3://{bucket}/nightly").parse().unwrap();
    let plain = S3Options {
        force_path_style: true,
        ..S3Options::default()
    };
    let locked = S3Options {
        object_lock: Some(nightdump::store::ObjectLock {
            mode: nightdump::store::LockMode::Governance,
            retain_for: Duration::from_secs(7 * 86_400),
        }),
        ..plain.clone()
    };
    let store = Store::open_with_sdk_config(&dest, &sdk, &plain)
        .await
        .unwrap();
    let locking = Store::open_with_sdk_config(&dest, &sdk, &locked)
        .await
        .unwrap();
    write_some(&uri, 0).await;
    backup_now(&uri, &store).await;
    write_some(&uri, 10).await;
    let s1 = capture_now(&uri, &locking, &locked).await;
    assert!(s1.manifest.storage.as_ref().unwrap().object_lock.is_some());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write_some(&uri, 20).await;
    backup_now(&uri, &store).await;
    write_some(&uri, 30).await;
    capture_now(&uri, &locking, &locked).await;
    let policy = nightdump::prune::Policy {
        last: 1,
        ..Default::default()
    };
    let report = nightdump::prune::run(&store, &policy, true, None)
        .await
        .unwrap();
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(report.slices.kept_locked, std::slice::from_ref(&s1.dir));
    assert!(report.slices.removed.is_empty());
    let chain = nightdump::chain::read(&store).await.unwrap();
    assert!(chain.links.iter().any(|l| l.dir == s1.dir));
}

/// A capture with `--encrypt age:…` stores its slice encrypted (the backup's format); a
/// restore to an instant decrypts backup and slices with the identity, `verify --oplog` checks
/// the stored bytes, and without the identity the restore is refused before any write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_slices_restore_with_the_identity_only() {
    use age::secrecy::ExposeSecret;
    let server = replica_set().await;
    let uri = server.uri();
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let secret = identity.to_string().expose_secret().to_string();
    let encrypt =
        nightdump::crypto::Encrypt::parse_all("--encrypt", &[format!("age:{recipient}")]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    write_some(&uri, 0).await;
    let mut opts = options(&uri);
    opts.allow_inconsistent = false;
    opts.encrypt = encrypt.clone();
    backup::run(&opts, &store, &progress()).await.unwrap();
    write_some(&uri, 10).await;
    let mut capture = capture_options(&uri, &S3Options::default());
    capture.encrypt = encrypt;
    let link = pitr::capture::run(&capture, &store)
        .await
        .unwrap()
        .link
        .unwrap();
    let object = link.manifest.object.clone().unwrap();
    assert!(object.key.ends_with(".bson.gz.age"), "{}", object.key);
    assert_eq!(object.encryption.scheme, "age");
    let stored = std::fs::read(dir.path().join(&object.key)).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1"));
    for (key, bytes) in files(dir.path())
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(dir.path().join(f)).unwrap()))
    {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "{key} holds the identity"
        );
    }
    let keys = nightdump::crypto::Keys::from_identity(identity);
    let end = link.manifest.last();
    let refused = pitr::prepare(&store, end, None, true).await.err().unwrap();
    assert_eq!(refused.exit_code(), 2, "{refused}");
    let prepared = pitr::prepare(&store, end, Some(&keys), true).await.unwrap();
    let target = empty_target().await;
    let reader = Input::Reader {
        name: prepared.name(),
        reader: pitr::to_time::open(prepared, store.clone()),
    };
    restore::run(&to_time_options(&target.uri()), reader, &progress())
        .await
        .unwrap();
    assert_eq!(target_state(&target.uri()).await, target_state(&uri).await);
    // The CLI's list shows the backup's window through the slice.
    let list = run_nightdump(
        &["list", "--from", dir.path().to_str().unwrap(), "--json"],
        &[],
    )
    .await;
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    let listed: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(
        listed[0]["window"]["to_ts"],
        serde_json::json!({ "t": end.time, "i": end.increment }),
        "{listed}"
    );
}
