//! `local.oplog.rs` in replica-set mode: the entry shapes of mongod 7.0, a clock that hands
//! out strictly increasing timestamps, and the `$v: 2` update diffs.

use std::cell::RefCell;
use std::sync::{Mutex, OnceLock};

use bson::{doc, Bson, DateTime, Document, RawDocument, RawDocumentBuf, Timestamp};

use super::catalog::{uuid_binary, CollRef};
use super::Engine;

/// A size cap for the oplog, so tests can make it roll over. `None` means unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OplogLimits {
    pub max_entries: Option<u64>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug)]
pub struct Oplog {
    enabled: bool,
    coll: OnceLock<CollRef>,
    clock: Mutex<(u32, u32)>,
}

/// The `o` of an entry: stored bytes for inserts (no re-encoding), a document otherwise.
#[derive(Debug, Clone)]
pub enum Payload {
    Raw(RawDocumentBuf),
    Doc(Document),
}

/// One entry before it gets its timestamp.
#[derive(Debug, Clone)]
pub struct OpEntry {
    op: &'static str,
    ns: String,
    ui: Option<[u8; 16]>,
    o: Payload,
    o2: Option<Document>,
}

impl OpEntry {
    pub fn insert(ns: String, ui: [u8; 16], doc: &RawDocument) -> OpEntry {
        let id = doc
            .get("_id")
            .ok()
            .flatten()
            .map(super::value::to_bson)
            .unwrap_or(Bson::Null);
        OpEntry {
            op: "i",
            ns,
            ui: Some(ui),
            o: Payload::Raw(doc.to_raw_document_buf()),
            o2: Some(doc! {"_id": id}),
        }
    }

    pub fn update(ns: String, ui: [u8; 16], o: Document, id: Bson) -> OpEntry {
        OpEntry {
            op: "u",
            ns,
            ui: Some(ui),
            o: Payload::Doc(o),
            o2: Some(doc! {"_id": id}),
        }
    }

    pub fn delete(ns: String, ui: [u8; 16], id: Bson) -> OpEntry {
        OpEntry {
            op: "d",
            ns,
            ui: Some(ui),
            o: Payload::Doc(doc! {"_id": id}),
            o2: None,
        }
    }

    pub fn command(db: &str, ui: Option<[u8; 16]>, o: Document, o2: Option<Document>) -> OpEntry {
        OpEntry {
            op: "c",
            ns: format!("{db}.$cmd"),
            ui,
            o: Payload::Doc(o),
            o2,
        }
    }

    pub fn noop(o: Document) -> OpEntry {
        OpEntry {
            op: "n",
            ns: String::new(),
            ui: None,
            o: Payload::Doc(o),
            o2: None,
        }
    }

    /// The entry as one operation of an `applyOps` entry: no `ts`, `t`, `v` or `wall` of
    /// its own (the enclosing entry has them), as mongod writes a transaction's operations.
    fn into_operation(self) -> Document {
        let mut d = doc! { "op": self.op, "ns": self.ns };
        if let Some(ui) = self.ui {
            d.insert("ui", uuid_binary(&ui));
        }
        match self.o {
            Payload::Raw(r) => {
                d.insert("o", Document::try_from(r.as_ref()).unwrap_or_default());
            }
            Payload::Doc(o) => {
                d.insert("o", o);
            }
        }
        if let Some(o2) = self.o2 {
            d.insert("o2", o2);
        }
        d
    }

    /// Writes to `local` are never replicated.
    fn replicated(&self) -> bool {
        !(self.ns.starts_with("local.") || self.ns == "local.$cmd")
    }

    fn build(self, ts: Timestamp) -> RawDocumentBuf {
        let mut d = RawDocumentBuf::new();
        d.append("op", self.op);
        d.append("ns", self.ns);
        if let Some(ui) = self.ui {
            if let Ok(b) = bson::RawBson::try_from(uuid_binary(&ui)) {
                d.append("ui", b);
            }
        }
        match self.o {
            Payload::Raw(r) => d.append("o", r),
            Payload::Doc(o) => d.append("o", super::reply::raw(&o)),
        }
        if let Some(o2) = self.o2 {
            d.append("o2", super::reply::raw(&o2));
        }
        d.append("ts", ts);
        d.append("t", 1_i64);
        d.append("v", 2_i64);
        d.append("wall", DateTime::now());
        d
    }
}

impl Oplog {
    pub fn new(enabled: bool) -> Oplog {
        Oplog {
            enabled,
            coll: OnceLock::new(),
            clock: Mutex::new((0, 0)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn attach(&self, coll: CollRef) {
        let _ = self.coll.set(coll);
    }

    pub fn collection(&self) -> Option<CollRef> {
        self.coll.get().cloned()
    }

    fn tick(&self) -> Timestamp {
        let now = DateTime::now().timestamp_millis().max(0) / 1000;
        let now = u32::try_from(now).unwrap_or(u32::MAX);
        let mut c = match self.clock.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        *c = if now > c.0 { (now, 1) } else { (c.0, c.1 + 1) };
        Timestamp {
            time: c.0,
            increment: c.1,
        }
    }
}

thread_local! {
    /// The operations of an atomic `applyOps` being applied on this thread, gathered into
    /// one entry instead of being logged one by one.
    static GROUPED: RefCell<Option<Vec<OpEntry>>> = const { RefCell::new(None) };
}

impl Engine {
    /// Runs `apply` with its oplog entries gathered, then logs them as one `applyOps`
    /// entry on `admin.$cmd`: how mongod records an atomic applyOps of CRUD operations, and
    /// (with `lsid`/`txnNumber` added) a committed multi-document transaction.
    pub(super) fn log_as_one<T>(&self, apply: impl FnOnce() -> T) -> T {
        GROUPED.with(|g| *g.borrow_mut() = Some(Vec::new()));
        let result = apply();
        let gathered = GROUPED.with(|g| g.borrow_mut().take()).unwrap_or_default();
        let ops: Vec<Bson> = gathered
            .into_iter()
            .filter(OpEntry::replicated)
            .map(|e| Bson::Document(e.into_operation()))
            .collect();
        if !ops.is_empty() {
            self.log_ops(vec![OpEntry::command(
                "admin",
                None,
                doc! { "applyOps": ops },
                None,
            )]);
        }
        result
    }

    /// Appends entries to the oplog (replica-set mode only); timestamps are taken under the
    /// oplog's write lock so natural order and `ts` order agree.
    pub(super) fn log_ops(&self, mut entries: Vec<OpEntry>) {
        if !self.oplog.enabled() {
            return;
        }
        let entries = match GROUPED.with(|g| {
            g.borrow_mut()
                .as_mut()
                .map(|group| group.append(&mut entries))
        }) {
            Some(()) => return,
            None => entries,
        };
        let Some(coll) = self.oplog.collection() else {
            return;
        };
        let Ok(mut c) = coll.write() else { return };
        for e in entries.into_iter().filter(OpEntry::replicated) {
            let ts = self.oplog.tick();
            let _ = c.insert(e.build(ts));
        }
    }

    pub(super) fn oplog_enabled(&self) -> bool {
        self.oplog.enabled()
    }
}

/// The `$v: 2` diff that turns `old` into `new`: `d` removed fields, `u` changed ones,
/// `i` added ones, `s<field>` nested document diffs.
pub fn diff(old: &Document, new: &Document) -> Document {
    let mut d = Document::new();
    let mut u = Document::new();
    let mut i = Document::new();
    let mut subs = Document::new();
    for (k, _) in old {
        if !new.contains_key(k) {
            d.insert(k.clone(), false);
        }
    }
    for (k, nv) in new {
        match old.get(k) {
            None => {
                i.insert(k.clone(), nv.clone());
            }
            Some(ov) if ov == nv && super::value::type_rank(ov) == super::value::type_rank(nv) => {}
            Some(Bson::Document(od)) => match nv {
                Bson::Document(nd) => {
                    let sd = diff(od, nd);
                    if !sd.is_empty() {
                        subs.insert(format!("s{k}"), sd);
                    }
                }
                _ => {
                    u.insert(k.clone(), nv.clone());
                }
            },
            Some(_) => {
                u.insert(k.clone(), nv.clone());
            }
        }
    }
    let mut out = Document::new();
    if !d.is_empty() {
        out.insert("d", d);
    }
    if !u.is_empty() {
        out.insert("u", u);
    }
    if !i.is_empty() {
        out.insert("i", i);
    }
    out.extend(subs);
    out
}

/// Applies a `$v: 2` diff (as mongod's oplog application does).
pub fn apply_diff(doc: &mut Document, diff: &Document) {
    for (k, v) in diff {
        match k.as_str() {
            "d" => {
                if let Bson::Document(fields) = v {
                    for f in fields.keys() {
                        doc.remove(f);
                    }
                }
            }
            "u" | "i" => {
                if let Bson::Document(fields) = v {
                    for (f, val) in fields {
                        doc.insert(f.clone(), val.clone());
                    }
                }
            }
            _ if k.starts_with('s') => {
                let field = &k[1..];
                let Bson::Document(sub) = v else { continue };
                match doc.get_mut(field) {
                    Some(Bson::Document(inner)) => apply_diff(inner, sub),
                    Some(Bson::Array(arr)) => apply_array_diff(arr, sub),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

fn apply_array_diff(arr: &mut Vec<Bson>, diff: &Document) {
    if let Some(l) = diff.get("l").and_then(super::value::as_f64) {
        arr.resize(l as usize, Bson::Null);
    }
    for (k, v) in diff {
        if let Some(idx) = k.strip_prefix('u').and_then(|n| n.parse::<usize>().ok()) {
            if idx >= arr.len() {
                arr.resize(idx + 1, Bson::Null);
            }
            arr[idx] = v.clone();
        } else if let Some(idx) = k.strip_prefix('s').and_then(|n| n.parse::<usize>().ok()) {
            if let (Some(elem), Bson::Document(sub)) = (arr.get_mut(idx), v) {
                match elem {
                    Bson::Document(inner) => apply_diff(inner, sub),
                    Bson::Array(inner) => apply_array_diff(inner, sub),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_round_trips() {
        let old = doc! {"_id": 1, "a": 1, "b": {"x": 1, "y": 2}, "gone": true};
        let new = doc! {"_id": 1, "a": 2, "b": {"x": 1, "y": 3, "z": 0}, "c": "new"};
        let d = diff(&old, &new);
        assert_eq!(
            d,
            doc! {"d": {"gone": false}, "u": {"a": 2}, "i": {"c": "new"}, "sb": {"u": {"y": 3}, "i": {"z": 0}}}
        );
        let mut applied = old.clone();
        apply_diff(&mut applied, &d);
        assert_eq!(applied, new);
    }

    #[test]
    fn array_diff_applies() {
        let mut d = doc! {"arr": [1, {"k": 1}, 3]};
        apply_diff(
            &mut d,
            &doc! {"sarr": {"a": true, "l": 4, "u0": 10, "s1": {"u": {"k": 2}}, "u3": 4}},
        );
        assert_eq!(d, doc! {"arr": [10, {"k": 2}, 3, 4]});
    }
}
