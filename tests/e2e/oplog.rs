//! Point-in-time backups: the oplog captured during the dump on a replica set, and replayed on
//! restore, give exactly the source's state at the time the manifest records, while a writer
//! keeps changing the source throughout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Bson, Document, RawDocumentBuf, Timestamp};
use futures_util::TryStreamExt;
use mongo_test_server::engine::OplogLimits;
use mongo_test_server::{ServerConfig, ServerHandle};
use nightdump::backup;
use nightdump::catalog::Selector;
use nightdump::restore::{self, Input, RestoreOptions};
use nightdump::secret::ConnectionString;
use nightdump::Error;
use nightdump_archive::{ArchiveReader, Event};

use crate::harness::*;

const DB: &str = "pit";
const ITEMS: &str = "items";
const SEEDED: i64 = 300;
/// Other collections, each read in its own delayed batch, so the dump lasts while the
/// writer works.
const OTHERS: usize = 8;

async fn replica_set() -> ServerHandle {
    mongo_test_server::start(ServerConfig {
        replica_set: Some("rs0".into()),
        ..ServerConfig::default()
    })
    .await
    .expect("server starts")
}

async fn standalone() -> ServerHandle {
    mongo_test_server::start(ServerConfig::default())
        .await
        .expect("server starts")
}

async fn client(uri: &str) -> mongodb::Client {
    mongodb::Client::with_uri_str(uri).await.expect("client")
}

/// `pit.items` with `SEEDED` documents (the biggest collection, so dumped first) and a few
/// smaller ones.
async fn seed(uri: &str) -> BTreeMap<i64, Document> {
    let c = client(uri).await;
    let initial: BTreeMap<i64, Document> = (0..SEEDED)
        .map(|i| (i, doc! { "_id": i, "v": -1_i64, "pad": "x".repeat(40) }))
        .collect();
    c.database(DB)
        .collection::<Document>(ITEMS)
        .insert_many(initial.values().cloned().collect::<Vec<_>>())
        .await
        .unwrap();
    for k in 0..OTHERS {
        c.database(DB)
            .collection::<Document>(&format!("other{k}"))
            .insert_many((0..5).map(|i| doc! { "_id": i, "k": k as i64 }))
            .await
            .unwrap();
    }
    initial
}

/// One write of the writer, as it meant it.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Insert(i64, i64),
    Update(i64, i64),
    Delete(i64),
}

impl Op {
    fn id(&self) -> i64 {
        match self {
            Op::Insert(id, _) | Op::Update(id, _) | Op::Delete(id) => *id,
        }
    }

    fn letter(&self) -> &'static str {
        match self {
            Op::Insert(..) => "i",
            Op::Update(..) => "u",
            Op::Delete(_) => "d",
        }
    }

    fn apply(&self, state: &mut BTreeMap<i64, Document>) {
        match self {
            Op::Insert(id, v) => {
                state.insert(*id, doc! { "_id": *id, "v": *v, "pad": "y" });
            }
            Op::Update(id, v) => {
                if let Some(d) = state.get_mut(id) {
                    d.insert("v", *v);
                }
            }
            Op::Delete(id) => {
                state.remove(id);
            }
        }
    }
}

/// Inserts, updates and deletes on `pit.items`, one at a time, until told to stop; returns
/// what it did, in order. Every write changes a document, so each is exactly one oplog entry.
struct Writer {
    stop: Arc<AtomicBool>,
    done: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<Vec<Op>>,
}

fn start_writer(uri: &str, initial: &BTreeMap<i64, Document>) -> Writer {
    let uri = uri.to_string();
    let mut live: Vec<i64> = initial.keys().copied().collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (count, done) = tokio::sync::watch::channel(0usize);
    let stopping = Arc::clone(&stop);
    let task = tokio::spawn(async move {
        let coll = client(&uri)
            .await
            .database(DB)
            .collection::<Document>(ITEMS);
        let mut ops = Vec::new();
        let mut next_id = 10_000_i64;
        let mut n = 0_i64;
        while !stopping.load(Ordering::Relaxed) {
            n += 1;
            let pick = live[(n as usize * 7919) % live.len()];
            let op = match n % 4 {
                0 | 1 => Op::Update(pick, n),
                2 => {
                    next_id += 1;
                    Op::Insert(next_id, n)
                }
                _ if live.len() > 50 => Op::Delete(pick),
                _ => Op::Update(pick, n),
            };
            match &op {
                Op::Insert(id, v) => {
                    coll.insert_one(doc! { "_id": *id, "v": *v, "pad": "y" })
                        .await
                        .unwrap();
                    live.push(*id);
                }
                Op::Update(id, v) => {
                    let r = coll
                        .update_one(doc! { "_id": *id }, doc! { "$set": { "v": *v } })
                        .await
                        .unwrap();
                    assert_eq!(r.modified_count, 1);
                }
                Op::Delete(id) => {
                    let r = coll.delete_one(doc! { "_id": *id }).await.unwrap();
                    assert_eq!(r.deleted_count, 1);
                    live.retain(|l| l != id);
                }
            }
            ops.push(op);
            count.send_replace(ops.len());
        }
        ops
    });
    Writer { stop, done, task }
}

impl Writer {
    async fn wait_for(&mut self, ops: usize) {
        self.done.wait_for(|n| *n >= ops).await.unwrap();
    }

    async fn stop(self) -> Vec<Op> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

fn ts_key(ts: Timestamp) -> (u32, u32) {
    (ts.time, ts.increment)
}

/// The `ts` of each of the writer's operations, from the source's oplog: its entries on
/// `pit.items` after `after`, matched one to one with the writer's log (kind and `_id`
/// checked), so the state at any time is the writer's own operations up to it.
async fn timestamps(uri: &str, after: Timestamp, ops: &[Op]) -> Vec<Timestamp> {
    let entries: Vec<Document> = client(uri)
        .await
        .database("local")
        .collection::<Document>("oplog.rs")
        .find(doc! { "ts": { "$gt": after }, "ns": format!("{DB}.{ITEMS}") })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(entries.len(), ops.len(), "one oplog entry per write");
    entries
        .iter()
        .zip(ops)
        .map(|(e, op)| {
            assert_eq!(e.get_str("op").unwrap(), op.letter(), "{e}");
            let id = match op {
                Op::Update(..) => e.get_document("o2").unwrap().get_i64("_id"),
                _ => e.get_document("o").unwrap().get_i64("_id"),
            };
            assert_eq!(id.unwrap(), op.id(), "{e}");
            e.get_timestamp("ts").unwrap()
        })
        .collect()
}

async fn newest_ts(uri: &str) -> Timestamp {
    client(uri)
        .await
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {})
        .sort(doc! { "$natural": -1 })
        .await
        .unwrap()
        .unwrap()
        .get_timestamp("ts")
        .unwrap()
}

async fn items(uri: &str) -> BTreeMap<i64, Document> {
    client(uri)
        .await
        .database(DB)
        .collection::<Document>(ITEMS)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<Document>>()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.get_i64("_id").unwrap(), d))
        .collect()
}

fn restore_options(uri: &str) -> RestoreOptions {
    let mut o = RestoreOptions::new(Some(ConnectionString::parse(uri).unwrap()));
    o.server_selection_timeout = Duration::from_secs(5);
    o
}

fn latest(store: &nightdump::store::Store) -> Input<'_> {
    Input::Backup {
        store,
        selector: Selector::Latest,
        verify_first: true,
    }
}

fn rs_options(uri: &str) -> backup::BackupOptions {
    let mut o = options(uri);
    o.allow_inconsistent = false;
    o.parallel = 2;
    o
}

/// A backup of a replica set under a writer: the source's oplog position before and the
/// writer's operations with their timestamps.
struct Scenario {
    _server: ServerHandle,
    uri: String,
    initial: BTreeMap<i64, Document>,
    ops: Vec<Op>,
    op_ts: Vec<Timestamp>,
    manifest: nightdump::manifest::Manifest,
    _dir: tempfile::TempDir,
    store: nightdump::store::Store,
}

async fn backup_under_writes() -> Scenario {
    let server = replica_set().await;
    let uri = server.uri();
    let initial = seed(&uri).await;
    let before_writer = newest_ts(&uri).await;
    let mut writer = start_writer(&uri, &initial);
    writer.wait_for(30).await;
    // Every cursor batch (collections and the oplog tail alike) waits, so the dump spans
    // many writes.
    server.faults().delay_batches(Duration::from_millis(60));
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let outcome = backup::run(&rs_options(&uri), &store, &progress())
        .await
        .unwrap();
    server.faults().clear();
    let at_backup_end = writer.done.borrow().to_owned();
    writer.wait_for(at_backup_end + 30).await;
    let ops = writer.stop().await;
    let op_ts = timestamps(&uri, before_writer, &ops).await;
    Scenario {
        _server: server,
        uri,
        initial,
        ops,
        op_ts,
        manifest: outcome.manifest,
        _dir: dir,
        store,
    }
}

impl Scenario {
    fn pit(&self) -> Timestamp {
        self.manifest
            .point_in_time
            .as_ref()
            .expect("a replica set's backup records its point in time")
            .ts
            .to_bson()
    }

    /// The writer's operations applied before `until` (exclusive: `ts < until`) or up to it.
    fn state(&self, applied: impl Fn(Timestamp) -> bool) -> BTreeMap<i64, Document> {
        let mut state = self.initial.clone();
        for (op, ts) in self.ops.iter().zip(&self.op_ts) {
            if applied(*ts) {
                op.apply(&mut state);
            }
        }
        state
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_backup_under_writes_restores_to_its_recorded_point_in_time() {
    let s = backup_under_writes().await;
    let m = &s.manifest;
    let pit = s.pit();
    let pit_record = m.point_in_time.clone().unwrap();
    assert!(pit_record.wall.is_some());

    // The writer ran before, during and after the dump.
    let start = pit_record.oplog_start.to_bson();
    let during = s
        .op_ts
        .iter()
        .filter(|t| ts_key(**t) > ts_key(start) && ts_key(**t) <= ts_key(pit))
        .count();
    let after = s.op_ts.iter().filter(|t| ts_key(**t) > ts_key(pit)).count();
    assert!(during >= 20, "only {during} writes during the dump");
    assert!(after > 0, "no write after the point in time");
    assert!(s.op_ts.iter().any(|t| ts_key(*t) <= ts_key(start)));

    // The oplog namespace is last in the archive, in mongodump's layout.
    let stored = std::fs::read(s._dir.path().join(&m.archive.key)).unwrap();
    let contents = read_archive(&stored);
    let last = contents.prelude.last().unwrap();
    assert_eq!((last.db.as_str(), last.collection.as_str()), ("", "oplog"));
    assert_eq!(last.kind, "");
    assert_eq!(last.metadata, "");
    let oplog_entry = m.namespaces.last().unwrap();
    assert_eq!(oplog_entry.kind, "oplog");
    let archived_oplog = &contents.docs[".oplog"];
    assert_eq!(archived_oplog.len() as u64, pit_record.oplog_entries);
    assert_eq!(oplog_entry.documents, pit_record.oplog_entries);
    let archived_ts: Vec<Timestamp> = archived_oplog
        .iter()
        .map(|d| d.get_timestamp("ts").unwrap())
        .collect();
    assert_eq!(archived_ts.first(), Some(&start));
    assert_eq!(archived_ts.last(), Some(&pit));
    assert!(archived_ts.windows(2).all(|w| ts_key(w[0]) < ts_key(w[1])));
    assert_eq!(
        ordered_last_namespace(&stored),
        Some(nightdump_archive::Namespace::oplog())
    );

    let expected = s.state(|t| ts_key(t) <= ts_key(pit));
    assert_ne!(
        expected,
        items(&s.uri).await,
        "the source moved on after the point in time"
    );

    // Restore with the oplog replayed: exactly the state at the point in time.
    let target = standalone().await;
    let report = restore::run(
        &restore_options(&target.uri()),
        latest(&s.store),
        &progress(),
    )
    .await
    .unwrap();
    let replay = report.oplog.as_ref().expect("the oplog was replayed");
    assert_eq!(replay.applied, pit_record.oplog_entries - replay.skipped);
    assert_eq!(replay.last_applied.map(|t| t.to_bson()), Some(pit));
    assert_eq!(items(&target.uri()).await, expected);
    for k in 0..OTHERS {
        let name = format!("other{k}");
        assert_eq!(
            source_documents(&target.uri(), DB, &name).await.len(),
            5,
            "{name}"
        );
    }

    // Without the replay, the documents are as each was read: not that state.
    let plain = standalone().await;
    let mut no_replay = restore_options(&plain.uri());
    no_replay.oplog_replay = false;
    let report = restore::run(&no_replay, latest(&s.store), &progress())
        .await
        .unwrap();
    assert!(report.oplog.is_none());
    assert_ne!(items(&plain.uri()).await, expected);

    // The archive's oplog applied as mongorestore --oplogReplay applies it, one entry per
    // applyOps without `ui`, over those documents, gives the same state.
    let admin = client(&plain.uri()).await.database("admin");
    for entry in archived_oplog {
        let mut entry = Document::try_from(entry.as_ref()).unwrap();
        entry.remove("ui");
        admin
            .run_command(doc! { "applyOps": [entry] })
            .await
            .unwrap();
    }
    assert_eq!(items(&plain.uri()).await, expected);
}

/// The data namespace of the last block in an archive (gzip).
fn ordered_last_namespace(gz: &[u8]) -> Option<nightdump_archive::Namespace> {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut plain)
        .unwrap();
    let mut reader = ArchiveReader::new(plain.as_slice()).unwrap();
    let mut last = None;
    while let Some(event) = reader.next_event().unwrap() {
        match event {
            Event::Document { ns, .. } => last = Some(ns.clone()),
            Event::NamespaceEnd { ns, .. } => last = Some(ns),
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oplog_limit_stops_the_replay_before_it() {
    let s = backup_under_writes().await;
    let pit = s.pit();
    let stored = std::fs::read(s._dir.path().join(&s.manifest.archive.key)).unwrap();
    let contents = read_archive(&stored);
    let oplog: Vec<Document> = contents.docs[".oplog"]
        .iter()
        .map(|d| Document::try_from(d.as_ref()).unwrap())
        .collect();
    let limit = oplog[oplog.len() / 2].get_timestamp("ts").unwrap();
    assert!(ts_key(limit) < ts_key(pit));
    let before = oplog
        .iter()
        .filter(|e| ts_key(e.get_timestamp("ts").unwrap()) < ts_key(limit))
        .count() as u64;

    let target = standalone().await;
    let mut opts = restore_options(&target.uri());
    opts.oplog_limit = Some(limit);
    let report = restore::run(&opts, latest(&s.store), &progress())
        .await
        .unwrap();
    let replay = report.oplog.unwrap();
    assert_eq!(replay.applied + replay.skipped, before);
    assert_eq!(replay.after_limit, oplog.len() as u64 - before);
    assert!(ts_key(replay.last_applied.unwrap().to_bson()) < ts_key(limit));

    // The archived documents with the entries before the limit on top.
    let mut expected: BTreeMap<i64, Document> = contents.docs[&format!("{DB}.{ITEMS}")]
        .iter()
        .map(|d| {
            let d = Document::try_from(d.as_ref()).unwrap();
            (d.get_i64("_id").unwrap(), d)
        })
        .collect();
    for (op, ts) in s.ops.iter().zip(&s.op_ts) {
        let in_oplog = ts_key(*ts) >= ts_key(oplog[0].get_timestamp("ts").unwrap());
        if in_oplog && ts_key(*ts) < ts_key(limit) {
            op.apply(&mut expected);
        }
    }
    let restored = items(&target.uri()).await;
    assert_eq!(restored, expected);
    assert_ne!(restored, s.state(|t| ts_key(t) <= ts_key(pit)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oplog_that_rolls_over_during_the_backup_fails_it_with_the_fix() {
    let server = replica_set().await;
    let uri = server.uri();
    let initial = seed(&uri).await;
    server.engine().set_oplog_limits(OplogLimits {
        max_entries: Some(10),
        max_bytes: None,
    });
    let mut writer = start_writer(&uri, &initial);
    writer.wait_for(10).await;
    server.faults().delay_batches(Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let counts = progress();
    let err = backup::run(&rs_options(&uri), &store, &counts)
        .await
        .unwrap_err();
    server.faults().clear();
    writer.stop().await;
    assert!(matches!(err, Error::OplogRolledOver(_)), "{err:?}");
    // It stopped when the tail failed, without reading every collection first.
    let done = counts.namespaces_done.load(Ordering::Relaxed);
    assert!(
        done < (OTHERS + 1) as u64,
        "{done} namespaces were dumped before the failure"
    );
    let text = err.to_string();
    assert!(text.contains("rolled over"), "{text}");
    assert!(text.contains("replSetResizeOplog"), "{text}");
    assert_eq!(err.exit_code(), 3);
    assert!(!text.contains('\n'));
    let written = files(dir.path());
    assert!(
        written
            .iter()
            .all(|f| !f.ends_with("manifest.json") && f != "latest.json"),
        "{written:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_during_the_backup_fails_it_as_mongodump_does() {
    let server = replica_set().await;
    let uri = server.uri();
    seed(&uri).await;
    server.faults().delay_batches(Duration::from_millis(80));
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let options = rs_options(&uri);
    let running = tokio::spawn(async move { backup::run(&options, &store, &progress()).await });
    // The start position and the tail's first batch are out: the capture is running.
    server.faults().wait_batches_sent(3).await;
    client(&uri)
        .await
        .database("admin")
        .run_command(
            doc! { "renameCollection": format!("{DB}.other0"), "to": format!("{DB}.renamed") },
        )
        .await
        .unwrap();
    let err = running.await.unwrap().unwrap_err();
    server.faults().clear();
    let text = err.to_string();
    assert!(text.contains("renamed"), "{text}");
    assert!(text.contains("run the backup again"), "{text}");
    assert!(!text.contains('\n'));
    let written = files(dir.path());
    assert!(
        written
            .iter()
            .all(|f| !f.ends_with("manifest.json") && f != "latest.json"),
        "{written:?}"
    );
}

#[tokio::test]
async fn a_standalone_is_refused_unless_inconsistency_is_allowed() {
    let server = standalone().await;
    let uri = server.uri();
    seed(&uri).await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let mut strict = options(&uri);
    strict.allow_inconsistent = false;
    let err = backup::run(&strict, &store, &progress()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(text.contains("standalone"), "{text}");
    assert!(text.contains("--allow-inconsistent"), "{text}");
    assert!(!text.contains('\n'));
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));

    let outcome = backup::run(&options(&uri), &store, &progress())
        .await
        .unwrap();
    assert_without_oplog(&outcome.manifest);
    assert!(outcome
        .manifest
        .namespaces
        .iter()
        .any(|n| n.db == DB && n.collection == ITEMS && n.documents == SEEDED as u64));
}

#[tokio::test]
async fn no_oplog_on_a_replica_set_needs_the_same_consent() {
    let server = replica_set().await;
    let uri = server.uri();
    seed(&uri).await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let mut o = rs_options(&uri);
    o.oplog = false;
    let err = backup::run(&o, &store, &progress()).await.unwrap_err();
    assert!(err.to_string().contains("--allow-inconsistent"), "{err}");
    o.allow_inconsistent = true;
    let outcome = backup::run(&o, &store, &progress()).await.unwrap();
    assert_without_oplog(&outcome.manifest);
}

/// A backup made without the oplog: no point in time and no oplog in the archive.
fn assert_without_oplog(m: &nightdump::manifest::Manifest) {
    assert!(m.point_in_time.is_none());
    assert!(m.namespaces.iter().all(|n| n.kind != "oplog"));
}

fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// `test.foo`'s documents and the oplog entries of the real mongodump archive.
fn fixture_contents() -> (Vec<Document>, Vec<Document>) {
    let bytes = std::fs::read(fixture("dump-w-oplog.archive")).unwrap();
    let mut reader = ArchiveReader::new(bytes.as_slice()).unwrap();
    let (mut archived, mut oplog) = (Vec::new(), Vec::new());
    while let Some(event) = reader.next_event().unwrap() {
        if let Event::Document { ns, raw } = event {
            let d = Document::try_from(RawDocumentBuf::from_bytes(raw.to_vec()).unwrap().as_ref())
                .unwrap();
            if ns.is_oplog() {
                oplog.push(d);
            } else if ns.to_string() == "test.foo" {
                archived.push(d);
            }
        }
    }
    (archived, oplog)
}

/// `test.foo` on the target: each `_id` (as text) with its `a`.
async fn foo_values(uri: &str) -> BTreeMap<String, Bson> {
    client(uri)
        .await
        .database("test")
        .collection::<Document>("foo")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<Document>>()
        .await
        .unwrap()
        .iter()
        .map(|d| {
            (
                d.get("_id").unwrap().to_string(),
                d.get("a").cloned().unwrap_or(Bson::Null),
            )
        })
        .collect()
}

/// A target already holding every `_id` of the archive's `test.foo` with `a: -1`: the
/// archive's documents are then skipped as present, and only the replayed entries (inserts,
/// which replace on `_id`) change documents, which makes the replay's effect visible.
async fn primed_target(archived: &[Document]) -> ServerHandle {
    let server = standalone().await;
    let primed: Vec<Document> = archived
        .iter()
        .map(|d| doc! { "_id": d.get("_id").unwrap().clone(), "a": -1 })
        .collect();
    client(&server.uri())
        .await
        .database("test")
        .collection::<Document>("foo")
        .insert_many(primed)
        .await
        .unwrap();
    server
}

/// What `test.foo` holds after the archive's inserts are applied over the primed target.
fn after_entries(archived: &[Document], entries: &[&Document]) -> BTreeMap<String, Bson> {
    let mut state: BTreeMap<String, Bson> = archived
        .iter()
        .map(|d| (d.get("_id").unwrap().to_string(), Bson::Int32(-1)))
        .collect();
    for e in entries {
        let o = e.get_document("o").unwrap();
        state.insert(
            o.get("_id").unwrap().to_string(),
            o.get("a").unwrap().clone(),
        );
    }
    state
}

#[tokio::test]
async fn a_real_mongodump_oplog_is_replayed() {
    if !fixtures_present("a_real_mongodump_oplog_is_replayed") {
        return;
    }
    let (archived, oplog) = fixture_contents();
    let foo_entries: Vec<&Document> = oplog
        .iter()
        .filter(|e| e.get_str("ns") == Ok("test.foo") && e.get_str("op") == Ok("i"))
        .collect();
    assert!(!foo_entries.is_empty());
    let sessions = oplog
        .iter()
        .filter(|e| e.get_str("ns") == Ok("config.system.sessions"))
        .count() as u64;
    assert!(sessions > 0);
    assert_eq!(foo_entries.len() as u64 + sessions, oplog.len() as u64);
    let untouched = after_entries(&archived, &[]);
    let replayed = after_entries(&archived, &foo_entries);
    assert_ne!(replayed, untouched, "the oplog changes documents");

    let target = primed_target(&archived).await;
    let report = restore::run(
        &restore_options(&target.uri()),
        Input::File(fixture("dump-w-oplog.archive")),
        &progress(),
    )
    .await
    .unwrap();
    let replay = report.oplog.clone().unwrap();
    assert_eq!(replay.applied, foo_entries.len() as u64);
    assert_eq!(replay.skipped, sessions);
    assert_eq!(
        replay.last_applied.map(|t| t.to_bson()),
        foo_entries.last().map(|e| e.get_timestamp("ts").unwrap())
    );
    assert_eq!(foo_values(&target.uri()).await, replayed);
    let oplog_row = report
        .namespaces
        .iter()
        .find(|n| n.kind == restore::Kind::Oplog)
        .unwrap();
    assert_eq!(oplog_row.action, restore::Action::Replay);
    assert_eq!(oplog_row.status, restore::Status::Complete);
    // Session records belong to the server that wrote them.
    let configs = list_collections(&target.uri(), "config").await;
    assert!(configs
        .iter()
        .all(|c| c.get_str("name") != Ok("system.sessions")));

    // Not replayed: the primed documents stay as they were.
    let plain = primed_target(&archived).await;
    let mut o = restore_options(&plain.uri());
    o.oplog_replay = false;
    let report = restore::run(
        &o,
        Input::File(fixture("dump-w-oplog.archive")),
        &progress(),
    )
    .await
    .unwrap();
    assert!(report.oplog.is_none());
    assert_eq!(foo_values(&plain.uri()).await, untouched);

    // A limit in the middle: only the entries before it.
    let limit = foo_entries[foo_entries.len() / 2]
        .get_timestamp("ts")
        .unwrap();
    let partial = primed_target(&archived).await;
    let mut o = restore_options(&partial.uri());
    o.oplog_limit = Some(limit);
    let report = restore::run(
        &o,
        Input::File(fixture("dump-w-oplog.archive")),
        &progress(),
    )
    .await
    .unwrap();
    let before: Vec<&Document> = foo_entries
        .iter()
        .copied()
        .filter(|e| ts_key(e.get_timestamp("ts").unwrap()) < ts_key(limit))
        .collect();
    let replay = report.oplog.unwrap();
    assert_eq!(replay.applied, before.len() as u64);
    assert_eq!(
        replay.after_limit,
        oplog
            .iter()
            .filter(|e| ts_key(e.get_timestamp("ts").unwrap()) >= ts_key(limit))
            .count() as u64
    );
    let state = foo_values(&partial.uri()).await;
    assert_eq!(state, after_entries(&archived, &before));
    assert_ne!(state, replayed);
}

fn nightdump_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_nightdump"))
        .args(args)
        .env_clear()
        .output()
        .expect("nightdump runs")
}

#[tokio::test]
async fn the_cli_refuses_a_standalone_with_exit_2_and_names_the_flag() {
    let server = standalone().await;
    let uri = server.uri();
    seed(&uri).await;
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap().to_string();
    let (u, t) = (uri.clone(), to.clone());
    let out = tokio::task::spawn_blocking(move || {
        nightdump_cli(&["backup", "--uri", &u, "--to", &t, "--quiet"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("--allow-inconsistent"), "{stderr}");
    assert!(errors[0].contains("standalone"), "{stderr}");
    assert!(files(dir.path()).is_empty());

    let (u, t) = (uri.clone(), to.clone());
    let out = tokio::task::spawn_blocking(move || {
        nightdump_cli(&[
            "backup",
            "--uri",
            &u,
            "--to",
            &t,
            "--quiet",
            "--allow-inconsistent",
        ])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(files(dir.path())
        .iter()
        .any(|f| f.ends_with("manifest.json")));

    // Restore options that contradict each other, or a limit that is not a time, are refused
    // before anything is contacted.
    let out = tokio::task::spawn_blocking(move || {
        nightdump_cli(&[
            "restore",
            "--from",
            &to,
            "--uri",
            &uri,
            "--oplog-limit",
            "yesterday",
        ])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--oplog-limit"));
}

#[test]
fn the_lambda_is_strict_unless_told_otherwise() {
    use nightdump::lambda::config::{LambdaConfig, ALLOW_INCONSISTENT};
    let mut env: std::collections::HashMap<String, String> = [
        ("NIGHTDUMP_TO", "s3://bucket/prefix"),
        (
            "NIGHTDUMP_MONGODB_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:s-AbCdEf",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert!(!LambdaConfig::from_env(&env).unwrap().allow_inconsistent);
    env.insert(ALLOW_INCONSISTENT.into(), "false".into());
    assert!(!LambdaConfig::from_env(&env).unwrap().allow_inconsistent);
    env.insert(ALLOW_INCONSISTENT.into(), "true".into());
    assert!(LambdaConfig::from_env(&env).unwrap().allow_inconsistent);
    env.insert(ALLOW_INCONSISTENT.into(), "yes please".into());
    let err = LambdaConfig::from_env(&env).unwrap_err().to_string();
    assert!(err.contains(ALLOW_INCONSISTENT), "{err}");
}
