//! Point-in-time capture on a replica set, as `mongodump --oplog` does it, but tailing.
//!
//! Before the first collection is read, the newest oplog entry's `ts` is the start. A
//! tailable awaitData cursor from `ts >= start` then follows the oplog for the whole dump,
//! into a [`SpillBuffer`]. After the last collection, the newest `ts` is read again (the end)
//! and the tail is drained up to it. Every document read lies between start and end in some
//! state, and replaying every entry from start to end (the entries are idempotent) brings all
//! of them to the state at end: that is the backup's point in time.
//!
//! Tailing rather than reading the range at the end (mongodump's way) means the oplog need
//! only hold the entries between where the tail is and now, not the whole dump's window. A
//! roll-over past the tail's position (the server's CappedPositionLost) or a start entry that
//! is already gone fails the backup: a missing entry would make it silently inconsistent.

use std::time::Duration;

use bson::{doc, Bson, DateTime, Document, RawDocumentBuf, Timestamp};
use mongodb::error::ErrorKind;
use mongodb::options::CursorType;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::spill::SpillBuffer;
use crate::error::{Error, Result};
use crate::namespace::NamespaceFilter;
use crate::source::Source;

/// CappedPositionLost: the cursor's next entry was overwritten.
const CAPPED_POSITION_LOST: i32 = 136;

/// How long one getMore waits for new entries; also how soon a finished dump is noticed by
/// a tail that is waiting.
const AWAIT: Duration = Duration::from_millis(500);

/// Where the capture ended: the backup's point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OplogPoint {
    pub ts: Timestamp,
    /// The entry's `wall` (the primary's wall clock when it was written), when it has one.
    pub wall: Option<DateTime>,
}

/// The entries from start to the point in time, inclusive, in oplog order.
pub struct CapturedOplog {
    pub buffer: SpillBuffer,
    pub start: Timestamp,
    pub end: OplogPoint,
}

/// A running tail. Dropping it stops the tail.
pub struct OplogCapture {
    start: Timestamp,
    stop: watch::Sender<Option<Timestamp>>,
    /// Set when the tail has failed, so the dump can stop at once rather than read on for
    /// a backup that can no longer succeed.
    failed: watch::Receiver<bool>,
    task: Option<JoinHandle<Result<(SpillBuffer, OplogPoint)>>>,
    source: Source,
}

impl Drop for OplogCapture {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn oplog(source: &Source) -> mongodb::Collection<RawDocumentBuf> {
    source
        .client
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs")
}

/// The newest entry's position, read as mongodump reads it (`$natural: -1`, limit 1).
async fn newest(source: &Source) -> Result<OplogPoint> {
    newest_point(source, None).await
}

/// The newest entry's position, with `read_concern` (majority: the newest entry every member
/// that counts has).
pub(crate) async fn newest_point(
    source: &Source,
    read_concern: Option<mongodb::options::ReadConcern>,
) -> Result<OplogPoint> {
    let entry = source
        .client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {})
        // One options value: a later `with_options` would replace an earlier `sort`.
        .with_options(
            mongodb::options::FindOneOptions::builder()
                .sort(doc! { "$natural": -1 })
                .read_concern(read_concern)
                .build(),
        )
        .await
        .map_err(|e| source.error("find on local.oplog.rs", &e))?
        .ok_or_else(|| Error::Mongo {
            target: source.target().to_string(),
            command: "find on local.oplog.rs".into(),
            detail: "the oplog is empty, so no point in time can be recorded: is this member initialised (rs.initiate())?".into(),
        })?;
    point_of(&entry).ok_or_else(|| Error::Mongo {
        target: source.target().to_string(),
        command: "find on local.oplog.rs".into(),
        detail: "the newest oplog entry has no ts timestamp".into(),
    })
}

fn point_of(entry: &Document) -> Option<OplogPoint> {
    let ts = entry.get_timestamp("ts").ok()?;
    let wall = match entry.get("wall") {
        Some(Bson::DateTime(d)) => Some(*d),
        _ => None,
    };
    Some(OplogPoint { ts, wall })
}

fn key(ts: Timestamp) -> (u32, u32) {
    (ts.time, ts.increment)
}

fn rolled_over(detail: impl Into<String>) -> Error {
    Error::OplogRolledOver(detail.into())
}

impl OplogCapture {
    /// Records the start and starts tailing. Call before the first collection is read. With
    /// a `filter` that selects part of the deployment, only the entries of the namespaces it
    /// selects are kept (a transaction's operations one by one): the archive's oplog never
    /// writes to a namespace the archive does not hold.
    pub async fn start(
        source: &Source,
        spill: SpillBuffer,
        filter: &NamespaceFilter,
    ) -> Result<Self> {
        let start = newest(source).await?.ts;
        let cursor = oplog(source)
            .find(doc! { "ts": { "$gte": start } })
            .cursor_type(CursorType::TailableAwait)
            .max_await_time(AWAIT)
            .await
            .map_err(|e| classify(source, &e))?;
        let (stop, stopped) = watch::channel(None);
        let (failing, failed) = watch::channel(false);
        let tailing = source.clone();
        let filter = (!filter.is_empty()).then(|| filter.clone());
        let task = tokio::spawn(async move {
            let result = tail(tailing, cursor, start, spill, stopped, filter).await;
            if result.is_err() {
                failing.send_replace(true);
            }
            result
        });
        tracing::info!(start = %start, "oplog capture started");
        Ok(Self {
            start,
            stop,
            failed,
            task: Some(task),
            source: source.clone(),
        })
    }

    /// Resolves once the tail has failed (never, while it is well).
    pub async fn failed(&mut self) {
        if self.failed.wait_for(|f| *f).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Why the tail failed (after [`OplogCapture::failed`]).
    pub async fn error(mut self) -> Error {
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => Error::Internal("the oplog tail ended early".into()),
                Err(e) => Error::Internal(format!("the oplog tail crashed: {e}")),
            },
            None => Error::Internal("the oplog tail was already finished".into()),
        }
    }

    /// Reads the end (call after the last collection), drains the tail up to it and returns
    /// what was captured.
    pub async fn finish(mut self) -> Result<CapturedOplog> {
        let end = newest(&self.source).await?;
        self.stop.send_replace(Some(end.ts));
        let Some(task) = self.task.take() else {
            return Err(Error::Internal(
                "the oplog tail was already finished".into(),
            ));
        };
        let (buffer, point) = task
            .await
            .map_err(|e| Error::Internal(format!("the oplog tail crashed: {e}")))??;
        tracing::info!(start = %self.start, end = %point.ts, entries = buffer.documents(), spilled = buffer.spilled(), "oplog captured");
        Ok(CapturedOplog {
            buffer,
            start: self.start,
            end: point,
        })
    }
}

fn classify(source: &Source, e: &mongodb::error::Error) -> Error {
    match e.kind.as_ref() {
        ErrorKind::Command(c) if c.code == CAPPED_POSITION_LOST => rolled_over(format!(
            "the oplog tail's position was overwritten ({})",
            crate::error::one_line(&c.message, 160)
        )),
        _ => source.error("getMore on local.oplog.rs (the oplog tail)", e),
    }
}

/// Follows the oplog into `spill` until the end is known and reached. The point in time is
/// the last entry taken: at or after the end read (an entry once taken is never dropped),
/// so after every collection was read.
async fn tail(
    source: Source,
    mut cursor: mongodb::Cursor<RawDocumentBuf>,
    start: Timestamp,
    mut spill: SpillBuffer,
    mut stop: watch::Receiver<Option<Timestamp>>,
    filter: Option<NamespaceFilter>,
) -> Result<(SpillBuffer, OplogPoint)> {
    let mut last: Option<OplogPoint> = None;
    loop {
        let end = *stop.borrow_and_update();
        if let (Some(end), Some(last)) = (end, last) {
            if key(last.ts) >= key(end) {
                return Ok((spill, last));
            }
        }
        // The cursor keeps an interrupted getMore's future, so leaving `advance` for the
        // stop signal and coming back loses nothing.
        let more = tokio::select! {
            more = cursor.advance() => more.map_err(|e| classify(&source, &e))?,
            changed = stop.changed() => {
                if changed.is_err() {
                    return Err(Error::Interrupted("the oplog tail was abandoned".into()));
                }
                continue;
            }
        };
        if !more {
            return Err(rolled_over(
                "the server closed the oplog tail, as it does when the tail's position is overwritten",
            ));
        }
        let raw = cursor.current();
        let ts = raw.get_timestamp("ts").map_err(|_| Error::Mongo {
            target: source.target().to_string(),
            command: "getMore on local.oplog.rs (the oplog tail)".into(),
            detail: "an oplog entry has no ts timestamp".into(),
        })?;
        if last.is_none() && key(ts) != key(start) {
            return Err(rolled_over(format!(
                "the first entry still in the oplog is {ts}, after the start {start}"
            )));
        }
        // Past the end: the entries up to here are all taken (the end was read after every
        // collection, so a tail already past it had taken everything before it).
        if let (Some(end), Some(l)) = (*stop.borrow(), last) {
            if key(ts) > key(end) {
                return Ok((spill, l));
            }
        }
        if let Some(what) = unreplayable(raw) {
            return Err(Error::Interrupted(format!(
                "{what} during the backup (oplog entry {ts}), which a replay cannot reproduce on the restored collections, so mongodump --oplog refuses it too; nothing was marked successful: run the backup again"
            )));
        }
        let wall = match raw.get("wall") {
            Ok(Some(bson::RawBsonRef::DateTime(d))) => Some(d),
            _ => None,
        };
        let kept = match &filter {
            None => Some(std::borrow::Cow::Borrowed(raw.as_bytes())),
            Some(filter) => selected(raw, filter)?,
        };
        if let Some(bytes) = kept {
            spill.push(&bytes).map_err(|e| {
                Error::Internal(format!(
                    "cannot keep the captured oplog in a temporary file: {e}; free space in the temporary directory (TMPDIR)"
                ))
            })?;
        }
        // The point in time is the last entry seen, kept or not: the state of every selected
        // namespace at it is what the kept entries replay to.
        last = Some(OplogPoint { ts, wall });
    }
}

/// Commands whose first value names a collection of the entry's database.
const COLLECTION_COMMANDS: &[&str] = &[
    "create",
    "drop",
    "collMod",
    "createIndexes",
    "commitIndexBuild",
    "startIndexBuild",
    "abortIndexBuild",
    "dropIndexes",
    "deleteIndexes",
    "emptycapped",
];

/// The entry as a filtered backup keeps it: whole when it writes only to selected
/// namespaces, a transaction (`applyOps`) with only its selected operations, `None` when
/// nothing of it is selected.
pub(crate) fn selected<'a>(
    entry: &'a bson::RawDocument,
    filter: &NamespaceFilter,
) -> Result<Option<std::borrow::Cow<'a, [u8]>>> {
    use std::borrow::Cow;
    let whole = |keep: bool| Ok(keep.then_some(Cow::Borrowed(entry.as_bytes())));
    let ns = entry.get_str("ns").unwrap_or("");
    let selects_ns = |ns: &str| {
        ns.split_once('.')
            .is_some_and(|(db, coll)| filter.selects(db, coll))
    };
    match entry.get_str("op").unwrap_or("") {
        "i" | "u" | "d" => whole(selects_ns(ns)),
        "c" => {
            let db = ns.strip_suffix(".$cmd").unwrap_or(ns);
            let Ok(o) = entry.get_document("o") else {
                return whole(false);
            };
            let Some(Ok((name, value))) = o.into_iter().next() else {
                return whole(false);
            };
            if name == "applyOps" {
                return filter_transaction(entry, filter);
            }
            if COLLECTION_COMMANDS.contains(&name) {
                let coll = value.as_str().unwrap_or("");
                return whole(filter.selects(db, coll));
            }
            // dropDatabase and the rest act on a whole database.
            whole(filter.may_select_db(db))
        }
        // No-ops and internal entries write nothing.
        _ => whole(false),
    }
}

fn filter_transaction<'a>(
    entry: &'a bson::RawDocument,
    filter: &NamespaceFilter,
) -> Result<Option<std::borrow::Cow<'a, [u8]>>> {
    let invalid = |e: String| {
        Error::Internal(format!(
            "an oplog transaction entry could not be read or rewritten: {e}"
        ))
    };
    let mut doc = Document::try_from(entry).map_err(|e| invalid(e.to_string()))?;
    let Ok(o) = doc.get_document_mut("o") else {
        return Ok(None);
    };
    let Ok(ops) = o.get_array("applyOps") else {
        return Ok(None);
    };
    let total = ops.len();
    let kept: Vec<Bson> = ops
        .iter()
        .filter(|op| {
            let Bson::Document(op) = op else {
                return false;
            };
            let raw = match RawDocumentBuf::from_document(op) {
                Ok(raw) => raw,
                Err(_) => return false,
            };
            matches!(selected(&raw, filter), Ok(Some(_)))
        })
        .cloned()
        .collect();
    if kept.is_empty() {
        return Ok(None);
    }
    if kept.len() == total {
        return Ok(Some(std::borrow::Cow::Borrowed(entry.as_bytes())));
    }
    o.insert("applyOps", kept);
    let raw = RawDocumentBuf::from_document(&doc).map_err(|e| invalid(e.to_string()))?;
    Ok(Some(std::borrow::Cow::Owned(raw.into_bytes())))
}

/// What makes an entry one that mongodump's `--oplog` refuses: a rename (or import, or a
/// time-series layout change) moves data between names the dump may have read either side
/// of, and `admin.system.version` holds the server's own versions.
fn unreplayable(entry: &bson::RawDocument) -> Option<String> {
    let ns = entry.get_str("ns").unwrap_or("");
    if ns == "admin.system.version" {
        return Some("admin.system.version (the server's version settings) changed".into());
    }
    if entry.get_str("op").ok() != Some("c") {
        return None;
    }
    let o = entry.get_document("o").ok()?;
    let (name, _) = o.into_iter().next()?.ok()?;
    match name {
        "renameCollection" => Some(format!(
            "a collection was renamed ({})",
            o.get_str("renameCollection").unwrap_or("?")
        )),
        "importCollection" => Some("a collection was imported".into()),
        "upgradeDowngradeViewlessTimeseries" => {
            Some("a time-series collection changed layout".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(d: Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&d).unwrap()
    }

    #[test]
    fn a_filtered_backup_keeps_only_the_entries_of_its_namespaces() {
        let filter = NamespaceFilter {
            include: vec!["shop.*".parse().unwrap()],
            exclude: vec![],
        };
        let kept = |d: Document| {
            let r = raw(d);
            selected(&r, &filter).unwrap().map(|b| {
                Document::try_from(RawDocumentBuf::from_bytes(b.into_owned()).unwrap().as_ref())
                    .unwrap()
            })
        };
        assert!(kept(doc! { "op": "i", "ns": "shop.orders", "o": { "_id": 1 } }).is_some());
        assert!(kept(doc! { "op": "d", "ns": "other.victim", "o": { "_id": 1 } }).is_none());
        assert!(kept(doc! { "op": "c", "ns": "other.$cmd", "o": { "create": "c" } }).is_none());
        assert!(kept(doc! { "op": "c", "ns": "other.$cmd", "o": { "dropDatabase": 1 } }).is_none());
        assert!(kept(doc! { "op": "c", "ns": "shop.$cmd", "o": { "drop": "orders" } }).is_some());
        assert!(kept(doc! { "op": "n", "ns": "", "o": { "msg": "periodic noop" } }).is_none());
        let txn = doc! { "op": "c", "ns": "admin.$cmd", "o": { "applyOps": [
            { "op": "i", "ns": "shop.orders", "o": { "_id": 2 } },
            { "op": "d", "ns": "other.victim", "o": { "_id": 3 } },
        ] } };
        let out = kept(txn).unwrap();
        let ops = out
            .get_document("o")
            .unwrap()
            .get_array("applyOps")
            .unwrap();
        assert_eq!(ops.len(), 1);
        assert_eq!(
            ops[0].as_document().unwrap().get_str("ns").unwrap(),
            "shop.orders"
        );
        let foreign = doc! { "op": "c", "ns": "admin.$cmd", "o": { "applyOps": [
            { "op": "d", "ns": "other.victim", "o": { "_id": 3 } },
        ] } };
        assert!(kept(foreign).is_none());
    }

    #[test]
    fn renames_and_version_changes_are_refused_like_mongodump() {
        let rename = raw(
            doc! { "op": "c", "ns": "admin.$cmd", "o": { "renameCollection": "a.b", "to": "a.c" } },
        );
        assert!(unreplayable(&rename).unwrap().contains("a.b"));
        let version = raw(doc! { "op": "u", "ns": "admin.system.version", "o": {} });
        assert!(unreplayable(&version).is_some());
        for fine in [
            doc! { "op": "c", "ns": "a.$cmd", "o": { "create": "b" } },
            doc! { "op": "i", "ns": "a.b", "o": { "_id": 1 } },
            doc! { "op": "n", "ns": "", "o": { "msg": "periodic noop" } },
        ] {
            assert_eq!(unreplayable(&raw(fine)), None);
        }
    }
}
