//! Oplog replay (`mongorestore --oplogReplay`): after every collection's documents are in,
//! the archive's oplog entries are applied in order through `applyOps`, bringing the
//! collections, read at slightly different times, to the state of the last entry (or stopping
//! before `--oplog-limit`).
//!
//! Which entries are applied follows mongorestore: no-ops and the internal op types are
//! skipped, as are index-build bookkeeping commands, `config` collections other than the
//! sharding catalog, `__mdb_internal*`, `local`, `system.profile` and admin's users, roles
//! and auth version (users and roles are restored from their own namespaces). `ui` is removed
//! unless `--preserve-uuid`, since the target's collections have UUIDs of their own.
//! Entries also obey `--include`/`--exclude`/`--rename` by the namespace they touch, so a
//! partial restore does not replay writes into collections it left out. A committed transaction (one `applyOps` entry) is applied as its operations;
//! transactions spread over several entries (`partialTxn`, prepared) are refused.
//!
//! mongorestore sends one `applyOps` per entry; here CRUD entries go in batches (up to
//! [`BATCH_ENTRIES`] per `applyOps`, in order) to spare round trips on a busy oplog, and each
//! command goes alone. Entries are idempotent, which is what makes replaying over documents
//! that may already reflect them correct.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bson::{doc, Bson, Document, RawDocumentBuf, Timestamp};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::rename::{rename, Rename};
use super::report::Counters;
use super::stream::Chunk;
use crate::error::{Error, Result};
use crate::manifest::OplogTimestamp;
use crate::namespace::NamespaceFilter;
use crate::progress::{NamespaceProgress, NamespaceState, Progress};
use crate::source::Source;

/// Entries per `applyOps`, and bytes: far below the 16 MiB command limit.
pub const BATCH_ENTRIES: usize = 500;
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// `config` collections mongorestore replays (the sharding catalog); the rest of `config`
/// (sessions, transactions, caches) belongs to the server that wrote it.
const CONFIG_KEPT: &[&str] = &[
    "chunks",
    "collections",
    "databases",
    "settings",
    "shards",
    "tags",
    "version",
];

/// Commands that only record an index build's progress on the source.
const SKIPPED_COMMANDS: &[&str] = &[
    "startIndexBuild",
    "abortIndexBuild",
    "setMultikeyMetadata",
    "dropIdent",
];

/// Commands naming a collection of their own database as their first value.
const COLLECTION_COMMANDS: &[&str] = &[
    "create",
    "drop",
    "collMod",
    "createIndexes",
    "commitIndexBuild",
    "dropIndexes",
    "deleteIndexes",
];

/// Parses `--oplog-limit`: `SECONDS[:INCREMENT]` as mongorestore's `--oplogLimit`, or an
/// RFC 3339 time (increment 0, so every entry of the seconds before it is applied).
pub fn parse_limit(s: &str) -> std::result::Result<Timestamp, String> {
    let s = s.trim();
    let bad = || {
        format!("'{s}' is not an oplog time: use SECONDS[:INCREMENT] (e.g. 1764039600:5) or an RFC 3339 time")
    };
    if s.chars().next().is_some_and(|c| c.is_ascii_digit()) && !s.contains('-') {
        return crate::chain::oplog_time(s).ok_or_else(bad);
    }
    let t = crate::layout::parse_time(s).map_err(|_| bad())?;
    let time = u32::try_from(t.unix_timestamp()).map_err(|_| bad())?;
    Ok(Timestamp { time, increment: 0 })
}

/// How entries are chosen and rewritten.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub limit: Option<Timestamp>,
    pub preserve_uuid: bool,
    pub filter: NamespaceFilter,
    pub renames: Vec<Rename>,
    /// The archive's namespaces this restore restores (`db.collection`, as the oplog names
    /// them, time-series buckets included). An entry for any other namespace is never
    /// replayed, whatever the archive's oplog holds: a filtered backup's or a real mongodump
    /// archive's oplog may cover namespaces the target owns. `None` only in unit tests of the
    /// other rules.
    pub restored: Option<std::collections::HashSet<String>>,
    /// Every namespace the archive holds, restored or not, by the oplog's names. With
    /// `replay_new`, entries of a namespace outside it (a collection created after the backup)
    /// are replayed too, when the filter selects it.
    pub archived: std::collections::HashSet<String>,
    /// A restore to an instant: the state then includes the collections created since the
    /// backup.
    pub replay_new: bool,
}

/// What to do with one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Apply these entries (one, or a transaction's operations).
    Apply(Vec<Document>),
    Skip,
    /// At or past `--oplog-limit`: this and every later entry are left.
    Stop,
}

fn key(ts: Timestamp) -> (u32, u32) {
    (ts.time, ts.increment)
}

fn skipped_namespace(db: &str, coll: &str) -> bool {
    match db {
        "local" => true,
        "config" => !CONFIG_KEPT.contains(&coll),
        "admin" => coll.starts_with("system."),
        _ => db.starts_with("__mdb_internal") || coll == "system.profile",
    }
}

impl Rules {
    /// Decides on one entry of the archive's oplog.
    pub fn decide(&self, entry: &Document) -> Result<Decision> {
        if let (Some(limit), Ok(ts)) = (self.limit, entry.get_timestamp("ts")) {
            if key(ts) >= key(limit) {
                return Ok(Decision::Stop);
            }
        }
        Ok(match self.rewrite(entry)? {
            Some(entries) if !entries.is_empty() => Decision::Apply(entries),
            _ => Decision::Skip,
        })
    }

    /// The entries to apply for `entry`, rewritten; `None` or empty when it is skipped.
    /// Whether entries for `db.coll` may be applied: not internal, selected, and restored.
    fn replays(&self, db: &str, coll: &str) -> bool {
        let ns = format!("{db}.{coll}");
        let new = self.replay_new && !self.archived.contains(&ns);
        !skipped_namespace(db, coll)
            && self.filter.selects(db, coll)
            && (new || self.restored.as_ref().is_none_or(|r| r.contains(&ns)))
    }

    /// The restored collections of `db`, sorted.
    fn restored_in(&self, db: &str) -> Option<Vec<String>> {
        let restored = self.restored.as_ref()?;
        let mut colls: Vec<String> = restored
            .iter()
            .filter_map(|ns| ns.split_once('.'))
            .filter(|(d, c)| *d == db && self.replays(d, c))
            .map(|(_, c)| c.to_string())
            .collect();
        colls.sort();
        Some(colls)
    }

    fn rewrite(&self, entry: &Document) -> Result<Option<Vec<Document>>> {
        let op = entry.get_str("op").unwrap_or("");
        let ns = entry.get_str("ns").unwrap_or("");
        match op {
            "i" | "u" | "d" => {
                let Some((db, coll)) = ns.split_once('.') else {
                    return Ok(None);
                };
                if !self.replays(db, coll) {
                    return Ok(None);
                }
                let mut out = self.strip(entry);
                if let Some(new) = rename(&self.renames, ns) {
                    out.insert("ns", new);
                }
                Ok(Some(vec![out]))
            }
            "c" => self.rewrite_command(entry, ns),
            // "n" (no-op) and the internal types (cd, ci, cu, km…).
            _ => Ok(None),
        }
    }

    fn rewrite_command(&self, entry: &Document, ns: &str) -> Result<Option<Vec<Document>>> {
        let db = ns.strip_suffix(".$cmd").unwrap_or(ns);
        let o = entry.get_document("o").cloned().unwrap_or_default();
        let Some((name, arg)) = o.iter().next().map(|(k, v)| (k.clone(), v.clone())) else {
            return Ok(None);
        };
        if SKIPPED_COMMANDS.contains(&name.as_str()) {
            return Ok(None);
        }
        if name == "applyOps" {
            if o.get_bool("partialTxn").unwrap_or(false) || o.get_bool("prepare").unwrap_or(false) {
                return Err(Error::invalid(format!(
                    "the oplog holds a transaction spread over several entries (at {}), which oplog replay does not support: restore with --no-oplog-replay",
                    entry.get_timestamp("ts").map(|t| t.to_string()).unwrap_or_default()
                )));
            }
            let Ok(inner) = o.get_array("applyOps") else {
                return Ok(None);
            };
            let mut out = Vec::new();
            for op in inner {
                if let Bson::Document(op) = op {
                    out.extend(self.rewrite(op)?.unwrap_or_default());
                }
            }
            return Ok(Some(out));
        }
        if COLLECTION_COMMANDS.contains(&name.as_str()) {
            let Bson::String(coll) = arg else {
                return Ok(None);
            };
            if !self.replays(db, &coll) {
                return Ok(None);
            }
            let mut out = self.strip(entry);
            if let Some(new) = rename(&self.renames, &format!("{db}.{coll}")) {
                let Some((new_db, new_coll)) = new.split_once('.') else {
                    return Ok(None);
                };
                let mut o = o.clone();
                o.insert(name.clone(), new_coll);
                out.insert("ns", format!("{new_db}.$cmd"));
                out.insert("o", o);
            }
            return Ok(Some(vec![out]));
        }
        if name == "dropDatabase" {
            if skipped_namespace(db, "") || !self.filter.may_select_db(db) {
                return Ok(None);
            }
            // Only what this restore restored is dropped: the database on the target may hold
            // collections of its own.
            let Some(colls) = self.restored_in(db) else {
                return Ok(Some(vec![self.strip(entry)]));
            };
            let drops = colls
                .into_iter()
                .map(|coll| {
                    let mut drop =
                        doc! { "op": "c", "ns": format!("{db}.$cmd"), "o": { "drop": coll } };
                    if let Ok(ts) = entry.get_timestamp("ts") {
                        drop.insert("ts", ts);
                    }
                    drop
                })
                .filter_map(|drop| {
                    self.rewrite_command(&drop, &format!("{db}.$cmd"))
                        .ok()
                        .flatten()
                })
                .flatten()
                .collect();
            return Ok(Some(drops));
        }
        if name == "renameCollection" {
            let from = arg.as_str().unwrap_or("");
            let to = o.get_str("to").unwrap_or("");
            let selected = [from, to]
                .iter()
                .all(|n| n.split_once('.').is_some_and(|(d, c)| self.replays(d, c)));
            return Ok(selected.then(|| vec![self.strip(entry)]));
        }
        // Anything else goes to the server as it is, when the restore restored something in
        // its database; one the server does not know fails the replay, as in mongorestore.
        let restores_db = self.restored_in(db).is_none_or(|c| !c.is_empty());
        Ok((!skipped_namespace(db, "") && restores_db).then(|| vec![self.strip(entry)]))
    }

    fn strip(&self, entry: &Document) -> Document {
        let mut out = entry.clone();
        if !self.preserve_uuid {
            out.remove("ui");
        }
        out
    }
}

/// What the replay did, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OplogReport {
    /// Entries sent to the server (a transaction counts its operations).
    pub applied: u64,
    /// Entries left out by the rules above.
    pub skipped: u64,
    /// Entries at or after `--oplog-limit`, not applied.
    pub after_limit: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<OplogTimestamp>,
    /// The `ts` of the last entry applied: the restored state's point in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<OplogTimestamp>,
    /// Entries applied (or, in a dry run, to be applied) per target namespace.
    pub namespaces: std::collections::BTreeMap<String, u64>,
}

impl OplogReport {
    /// `shop.orders (23), shop.users (2)`: what the replay writes to.
    pub fn touches(&self) -> String {
        if self.namespaces.is_empty() {
            return "touches no namespace".into();
        }
        let list: Vec<String> = self
            .namespaces
            .iter()
            .map(|(ns, n)| format!("{ns} ({n})"))
            .collect();
        format!("touches {}", list.join(", "))
    }
}

/// The namespace an entry to apply writes to, as the report names it.
fn touched(entry: &Document) -> String {
    let ns = entry.get_str("ns").unwrap_or("");
    match ns.strip_suffix(".$cmd") {
        Some(db) => match entry.get_document("o").ok().and_then(|o| o.iter().next()) {
            Some((_, Bson::String(coll))) => format!("{db}.{coll}"),
            _ => format!("{db}.*"),
        },
        None => ns.to_string(),
    }
}

/// The replaying task: waits for `go` (all documents inserted), then applies what arrives on
/// `rx`. It keeps reading to the end, past the limit too, so the archive reader can finish
/// and check the oplog's CRC.
pub struct Replayer {
    /// `None` in a dry run: entries are decided and counted, nothing is sent.
    pub target: Option<Arc<Source>>,
    /// Set when the restore is interrupted: the replay stops between batches.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    pub rules: Rules,
    pub counters: Arc<Counters>,
    pub progress: Arc<Progress>,
    /// The oplog's line on the progress display.
    pub tracked: Option<Arc<NamespaceProgress>>,
}

impl Replayer {
    pub async fn run(
        self,
        rx: mpsc::Receiver<Chunk>,
        go: oneshot::Receiver<()>,
    ) -> Result<OplogReport> {
        let tracked = self.tracked.clone();
        let result = self.replay(rx, go).await;
        if let Some(t) = &tracked {
            match &result {
                Ok(_) => t.finish(NamespaceState::Done),
                Err(_) => t.set_state(NamespaceState::Failed),
            }
        }
        result
    }

    async fn replay(
        self,
        mut rx: mpsc::Receiver<Chunk>,
        go: oneshot::Receiver<()>,
    ) -> Result<OplogReport> {
        let mut report = OplogReport {
            limit: self.rules.limit.map(Into::into),
            ..OplogReport::default()
        };
        if go.await.is_err() {
            return Err(Error::Interrupted(
                "the oplog was not replayed because the restore of the data stopped".into(),
            ));
        }
        let stopped_early =
            || Error::Interrupted("the oplog replay stopped between batches, as asked".into());
        if let Some(t) = &self.tracked {
            t.set_state(NamespaceState::Inserting);
        }
        let mut stopped = false;
        let mut batch = Batch::default();
        while let Some(chunk) = rx.recv().await {
            let docs = match chunk {
                Chunk::Documents { docs, .. } => docs,
                Chunk::End(summary) => {
                    self.counters
                        .archive_documents
                        .store(summary.documents, Ordering::Relaxed);
                    self.counters.ended.store(true, Ordering::Relaxed);
                    Progress::add(&self.progress.namespaces_done, 1);
                    continue;
                }
            };
            for raw in docs {
                if stopped {
                    report.after_limit += 1;
                    continue;
                }
                let entry = Document::try_from(raw.as_ref()).map_err(|e| {
                    Error::invalid(format!(
                        "an oplog entry of the archive is not valid BSON: {e}"
                    ))
                })?;
                match self.rules.decide(&entry)? {
                    Decision::Stop => {
                        stopped = true;
                        report.after_limit += 1;
                    }
                    Decision::Skip => {
                        report.skipped += 1;
                        self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    Decision::Apply(entries) => {
                        let ts = entry.get_timestamp("ts").ok();
                        if self.stop.load(Ordering::Relaxed) {
                            return Err(stopped_early());
                        }
                        for e in entries {
                            *report.namespaces.entry(touched(&e)).or_default() += 1;
                            let command = is_command(&e);
                            if command || batch.full_with(&e) {
                                self.flush(&mut batch, &mut report).await?;
                            }
                            batch.push(e, ts);
                            if command {
                                self.flush(&mut batch, &mut report).await?;
                            }
                        }
                    }
                }
            }
        }
        self.flush(&mut batch, &mut report).await?;
        Ok(report)
    }

    async fn flush(&self, batch: &mut Batch, report: &mut OplogReport) -> Result<()> {
        if batch.entries.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(batch);
        let n = batch.entries.len() as u64;
        let Some(target) = &self.target else {
            // A dry run: counted, never sent.
            report.applied += n;
            return Ok(());
        };
        let first = batch.first_ts.map(|t| t.to_string()).unwrap_or_default();
        let command =
            doc! { "applyOps": batch.entries.into_iter().map(Bson::Document).collect::<Vec<_>>() };
        let raw = RawDocumentBuf::from_document(&command)
            .map_err(|e| Error::Internal(format!("cannot encode applyOps: {e}")))?;
        if let Err(e) = target.client().database("admin").run_raw_command(raw).await {
            let err = target.error(&format!("applyOps of the oplog entries from {first}"), &e);
            self.counters.note_error(err.to_string());
            return Err(err);
        }
        report.applied += n;
        if let Some(ts) = batch.last_ts {
            report.last_applied = Some(ts.into());
        }
        self.counters.inserted.fetch_add(n, Ordering::Relaxed);
        if let Some(t) = &self.tracked {
            t.add(n, 0);
        }
        Progress::add(&self.progress.documents, n);
        Ok(())
    }
}

fn is_command(entry: &Document) -> bool {
    entry.get_str("op") == Ok("c")
}

#[derive(Default)]
struct Batch {
    entries: Vec<Document>,
    bytes: usize,
    first_ts: Option<Timestamp>,
    last_ts: Option<Timestamp>,
}

impl Batch {
    fn size_of(entry: &Document) -> usize {
        bson::to_vec(entry).map(|v| v.len()).unwrap_or(BATCH_BYTES)
    }

    fn full_with(&self, entry: &Document) -> bool {
        !self.entries.is_empty()
            && (self.entries.len() >= BATCH_ENTRIES
                || self.bytes + Self::size_of(entry) > BATCH_BYTES)
    }

    fn push(&mut self, entry: Document, ts: Option<Timestamp>) {
        self.bytes += Self::size_of(&entry);
        self.entries.push(entry);
        if self.first_ts.is_none() {
            self.first_ts = ts;
        }
        if ts.is_some() {
            self.last_ts = ts;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::NamespacePattern;

    fn ts(t: u32, i: u32) -> Timestamp {
        Timestamp {
            time: t,
            increment: i,
        }
    }

    fn uuid() -> Bson {
        Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Uuid,
            bytes: vec![7; 16],
        })
    }

    fn insert(ns: &str, at: Timestamp) -> Document {
        doc! { "op": "i", "ns": ns, "ui": uuid(), "o": { "_id": 1 }, "ts": at, "t": 1_i64, "v": 2_i64 }
    }

    #[test]
    fn limits_parse_like_mongorestore_or_as_rfc3339() {
        assert_eq!(parse_limit("1764039600:5"), Ok(ts(1_764_039_600, 5)));
        assert_eq!(parse_limit("1764039600"), Ok(ts(1_764_039_600, 0)));
        assert_eq!(
            parse_limit("2026-11-25T03:00:00Z"),
            Ok(ts(1_795_575_600, 0))
        );
        assert!(parse_limit("soon").is_err());
        assert!(parse_limit("12:x").is_err());
    }

    #[test]
    fn crud_entries_lose_their_uuid_and_follow_renames_and_filters() {
        let rules = Rules {
            renames: vec!["shop.*=copy.*".parse().unwrap()],
            filter: NamespaceFilter {
                include: vec![],
                exclude: vec!["shop.secret".parse::<NamespacePattern>().unwrap()],
            },
            ..Rules::default()
        };
        let Decision::Apply(out) = rules.decide(&insert("shop.orders", ts(10, 1))).unwrap() else {
            panic!("applied")
        };
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].get_str("ns").unwrap(), "copy.orders");
        assert!(!out[0].contains_key("ui"));
        assert_eq!(
            rules.decide(&insert("shop.secret", ts(10, 2))).unwrap(),
            Decision::Skip
        );
        let keep = Rules {
            preserve_uuid: true,
            ..Rules::default()
        };
        let Decision::Apply(out) = keep.decide(&insert("shop.orders", ts(10, 1))).unwrap() else {
            panic!("applied")
        };
        assert!(out[0].contains_key("ui"));
    }

    #[test]
    fn internal_namespaces_and_ops_are_skipped() {
        let rules = Rules::default();
        for ns in [
            "config.system.sessions",
            "config.transactions",
            "admin.system.users",
            "admin.system.version",
            "local.replset.minvalid",
            "__mdb_internal_x.c",
            "shop.system.profile",
        ] {
            assert_eq!(
                rules.decide(&insert(ns, ts(1, 1))).unwrap(),
                Decision::Skip,
                "{ns}"
            );
        }
        assert!(matches!(
            rules.decide(&insert("config.chunks", ts(1, 1))).unwrap(),
            Decision::Apply(_)
        ));
        let noop = doc! { "op": "n", "ns": "", "o": { "msg": "periodic noop" }, "ts": ts(1, 2) };
        assert_eq!(rules.decide(&noop).unwrap(), Decision::Skip);
        let build = doc! { "op": "c", "ns": "shop.$cmd", "o": { "startIndexBuild": "orders" }, "ts": ts(1, 3) };
        assert_eq!(rules.decide(&build).unwrap(), Decision::Skip);
    }

    #[test]
    fn commands_are_renamed_with_their_collection() {
        let rules = Rules {
            renames: vec!["shop.*=copy.*".parse().unwrap()],
            ..Rules::default()
        };
        let create = doc! { "op": "c", "ns": "shop.$cmd", "ui": uuid(), "o": { "create": "new", "capped": true }, "ts": ts(2, 1) };
        let Decision::Apply(out) = rules.decide(&create).unwrap() else {
            panic!("applied")
        };
        assert_eq!(out[0].get_str("ns").unwrap(), "copy.$cmd");
        assert_eq!(
            out[0].get_document("o").unwrap(),
            &doc! { "create": "new", "capped": true }
        );
    }

    #[test]
    fn the_limit_stops_at_the_first_entry_at_or_after_it() {
        let rules = Rules {
            limit: Some(ts(5, 3)),
            ..Rules::default()
        };
        assert!(matches!(
            rules.decide(&insert("a.b", ts(5, 2))).unwrap(),
            Decision::Apply(_)
        ));
        assert_eq!(
            rules.decide(&insert("a.b", ts(5, 3))).unwrap(),
            Decision::Stop
        );
        assert_eq!(
            rules.decide(&insert("a.b", ts(6, 0))).unwrap(),
            Decision::Stop
        );
    }

    /// An archive's oplog may hold entries for namespaces the archive does not (a filtered
    /// backup made by an older version, a real mongodump archive): they are never replayed.
    #[test]
    fn entries_for_namespaces_not_restored_are_never_replayed() {
        let rules = Rules {
            restored: Some(["shop.orders".to_string()].into_iter().collect()),
            ..Rules::default()
        };
        assert!(matches!(
            rules.decide(&insert("shop.orders", ts(1, 1))).unwrap(),
            Decision::Apply(_)
        ));
        let delete = doc! { "op": "d", "ns": "other.victim", "o": { "_id": 1 }, "ts": ts(1, 2) };
        assert_eq!(rules.decide(&delete).unwrap(), Decision::Skip);
        let create = doc! { "op": "c", "ns": "other.$cmd", "o": { "create": "c" }, "ts": ts(1, 3) };
        assert_eq!(rules.decide(&create).unwrap(), Decision::Skip);
        let txn = doc! { "op": "c", "ns": "admin.$cmd", "o": { "applyOps": [
            { "op": "i", "ns": "shop.orders", "o": { "_id": 2 } },
            { "op": "d", "ns": "other.victim", "o": { "_id": 3 } },
        ] }, "ts": ts(1, 4) };
        let Decision::Apply(out) = rules.decide(&txn).unwrap() else {
            panic!("applied")
        };
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].get_str("ns").unwrap(), "shop.orders");
        // dropDatabase drops only what was restored, never the target's own collections.
        let drop_db =
            doc! { "op": "c", "ns": "shop.$cmd", "o": { "dropDatabase": 1 }, "ts": ts(1, 5) };
        let Decision::Apply(out) = rules.decide(&drop_db).unwrap() else {
            panic!("applied")
        };
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].get_document("o").unwrap(),
            &doc! { "drop": "orders" }
        );
        let other_db =
            doc! { "op": "c", "ns": "other.$cmd", "o": { "dropDatabase": 1 }, "ts": ts(1, 6) };
        assert_eq!(rules.decide(&other_db).unwrap(), Decision::Skip);
    }

    #[test]
    fn transactions_are_applied_as_their_operations_and_partial_ones_refused() {
        let rules = Rules::default();
        let txn = doc! { "op": "c", "ns": "admin.$cmd", "o": { "applyOps": [
            { "op": "i", "ns": "a.b", "ui": uuid(), "o": { "_id": 1 } },
            { "op": "i", "ns": "config.transactions", "o": { "_id": 2 } },
            { "op": "d", "ns": "a.c", "o": { "_id": 3 } },
        ] }, "ts": ts(3, 1) };
        let Decision::Apply(out) = rules.decide(&txn).unwrap() else {
            panic!("applied")
        };
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].get_str("ns").unwrap(), "a.b");
        assert!(!out[0].contains_key("ui"));
        assert_eq!(out[1].get_str("ns").unwrap(), "a.c");
        let partial = doc! { "op": "c", "ns": "admin.$cmd", "o": { "applyOps": [], "partialTxn": true }, "ts": ts(3, 2) };
        let err = rules.decide(&partial).unwrap_err();
        assert!(err.to_string().contains("--no-oplog-replay"), "{err}");
    }
}
