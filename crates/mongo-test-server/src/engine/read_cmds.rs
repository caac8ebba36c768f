//! `find`, `getMore`, `killCursors`, `count` and `distinct`.

use std::cmp::Ordering as CmpOrdering;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Bson, Document, RawDocumentBuf};

use super::catalog::CollRef;
use super::collection::Kind;
use super::cursor::{Cursor, Source};
use super::errors;
use super::filter::Expr;
use super::projection::Projection;
use super::reply::{self, cursor_reply, Batch};
use super::value::{compare, lookup_raw, values_equal};
use super::{get_bool, get_i64, target_name, type_name, Engine};
use crate::error::CommandError;

/// How long an awaitData getMore waits for new documents when the client names no
/// `maxTimeMS` (mongod's default).
const DEFAULT_AWAIT_MS: u64 = 1000;

pub(super) fn sort_spec(sort: &Document) -> Result<Vec<(String, i32)>, CommandError> {
    let mut out = Vec::new();
    for (k, v) in sort {
        let dir = match v {
            Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => {
                let f = super::value::as_f64(v).unwrap_or(1.0);
                if f == 1.0 {
                    1
                } else if f == -1.0 {
                    -1
                } else {
                    return Err(errors::bad_value(
                        "$sort key ordering must be 1 (for ascending) or -1 (for descending)",
                    ));
                }
            }
            Bson::Document(_) => 1,
            _ => {
                return Err(errors::bad_value(
                    "$sort key ordering must be 1 (for ascending) or -1 (for descending)",
                ))
            }
        };
        out.push((k.clone(), dir));
    }
    Ok(out)
}

/// The value a document sorts by on `path`: arrays sort by their smallest element
/// ascending and their largest descending, as in mongod.
fn sort_key(doc: &RawDocumentBuf, path: &str, dir: i32) -> Bson {
    let vals = lookup_raw(doc, path);
    let mut cands: Vec<Bson> = Vec::new();
    for v in vals {
        match v {
            Bson::Array(a) if !a.is_empty() => cands.extend(a),
            other => cands.push(other),
        }
    }
    let pick = if dir > 0 {
        cands.into_iter().min_by(compare)
    } else {
        cands.into_iter().max_by(compare)
    };
    pick.unwrap_or(Bson::Null)
}

pub(super) fn sort_docs(docs: &mut [Arc<RawDocumentBuf>], spec: &[(String, i32)]) {
    let mut keyed: Vec<(Vec<Bson>, Arc<RawDocumentBuf>)> = docs
        .iter()
        .map(|d| {
            (
                spec.iter().map(|(p, dir)| sort_key(d, p, *dir)).collect(),
                d.clone(),
            )
        })
        .collect();
    keyed.sort_by(|a, b| {
        for (i, (_, dir)) in spec.iter().enumerate() {
            let o = compare(&a.0[i], &b.0[i]);
            let o = if *dir < 0 { o.reverse() } else { o };
            if o != CmpOrdering::Equal {
                return o;
            }
        }
        CmpOrdering::Equal
    });
    for (slot, (_, d)) in docs.iter_mut().zip(keyed) {
        *slot = d;
    }
}

fn non_negative(cmd: &Document, key: &str) -> Result<Option<i64>, CommandError> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(v) => match super::value::as_f64(v) {
            Some(n) if n < 0.0 => Err(errors::bad_value(format!(
                "{} value must be non-negative, but received: {}",
                if key == "batchSize" { "BatchSize" } else if key == "limit" { "LimitValue" } else { "SkipValue" },
                n as i64
            ))),
            Some(n) => Ok(Some(n as i64)),
            None => Err(errors::type_mismatch(format!(
                "BSON field 'FindCommandRequest.{key}' is the wrong type '{}', expected types '[long, int, decimal, double']",
                type_name(v)
            ))),
        },
    }
}

impl Engine {
    pub(super) fn register_cursor(&self, cursor: Cursor) -> i64 {
        let id = self.next_cursor_id();
        if let Ok(mut m) = self.cursors.lock() {
            m.insert(id, Arc::new(tokio::sync::Mutex::new(cursor)));
        }
        id
    }

    /// Sends the first batch of `cursor` and keeps it open if anything is left.
    pub(super) fn first_batch(
        &self,
        mut cursor: Cursor,
        single_batch: bool,
    ) -> Result<RawDocumentBuf, CommandError> {
        let (batch, exhausted) = cursor.fill(true, None)?;
        let ns = cursor.ns.clone();
        let tailable_dead = cursor.tailable
            && batch.is_empty()
            && cursor
                .watched()
                .is_some_and(|c| c.read().map(|g| g.is_empty()).unwrap_or(true));
        let id = if exhausted || single_batch || tailable_dead {
            0
        } else {
            self.register_cursor(cursor)
        };
        Ok(cursor_reply(batch, true, id, &ns))
    }

    /// A cursor over documents already computed (sorted finds, aggregation results,
    /// catalog listings).
    pub(super) fn docs_cursor_reply(
        &self,
        ns: &str,
        docs: Vec<Arc<RawDocumentBuf>>,
        batch_size: Option<usize>,
        coll: Option<CollRef>,
    ) -> Result<RawDocumentBuf, CommandError> {
        let mut c = Cursor::new(
            ns.to_string(),
            Source::Docs {
                docs: VecDeque::from(docs),
                coll,
            },
        );
        c.batch_size = batch_size;
        self.first_batch(c, false)
    }

    pub(super) fn cmd_find(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "find")?;
        let ns = format!("{db}.{name}");
        let filter_doc = match cmd.get("filter") {
            None | Some(Bson::Null) => Document::new(),
            Some(Bson::Document(d)) => d.clone(),
            Some(other) => {
                return Err(errors::type_mismatch(format!(
                    "BSON field 'FindCommandRequest.filter' is the wrong type '{}', expected type 'object'",
                    type_name(other)
                )))
            }
        };
        let filter = Expr::parse(&filter_doc)?;
        let sort = match cmd.get_document("sort") {
            Ok(s) => sort_spec(s)?,
            Err(_) => Vec::new(),
        };
        let projection = match cmd.get_document("projection") {
            Ok(p) => Projection::parse(p)?,
            Err(_) => None,
        };
        let skip = non_negative(cmd, "skip")?.unwrap_or(0) as usize;
        let limit = non_negative(cmd, "limit")?
            .filter(|l| *l > 0)
            .map(|l| l as usize);
        let batch_size = non_negative(cmd, "batchSize")?.map(|b| b as usize);
        let single_batch = get_bool(cmd, "singleBatch");
        let tailable = get_bool(cmd, "tailable");
        let await_data = get_bool(cmd, "awaitData");
        let natural_dir = sort
            .first()
            .filter(|(k, _)| k == "$natural")
            .map(|(_, d)| *d)
            .or_else(|| {
                cmd.get_document("hint")
                    .ok()
                    .and_then(|h| h.get("$natural"))
                    .and_then(super::value::as_f64)
                    .map(|d| if d < 0.0 { -1 } else { 1 })
            });
        let sort: Vec<(String, i32)> = sort.into_iter().filter(|(k, _)| k != "$natural").collect();

        let Some(coll) = self.coll(db, &name) else {
            if tailable {
                return Ok(cursor_reply(Batch::new(), true, 0, &ns));
            }
            return Ok(cursor_reply(Batch::new(), true, 0, &ns));
        };
        let kind = coll
            .read()
            .map(|c| c.kind.clone())
            .unwrap_or(Kind::Collection);
        if !matches!(kind, Kind::Collection) {
            // Views and time-series go through the aggregation path.
            let mut pipeline = Vec::new();
            if !filter_doc.is_empty() {
                pipeline.push(doc! {"$match": filter_doc});
            }
            if let Ok(s) = cmd.get_document("sort") {
                if !sort.is_empty() {
                    pipeline.push(doc! {"$sort": s.clone()});
                }
            }
            if skip > 0 {
                pipeline.push(doc! {"$skip": skip as i64});
            }
            if let Some(l) = limit {
                pipeline.push(doc! {"$limit": l as i64});
            }
            let docs = self.run_aggregate(db, &name, &pipeline)?;
            let mut c = Cursor::new(
                ns,
                Source::Docs {
                    docs: VecDeque::from(docs),
                    coll: None,
                },
            );
            c.batch_size = batch_size;
            c.projection = projection;
            return self.first_batch(c, single_batch);
        }
        if tailable && !coll.read().map(|c| c.is_capped()).unwrap_or(false) {
            return Err(errors::bad_value(format!(
                "error processing query: ns={ns} tailable cursor requested on non capped collection"
            )));
        }

        let source = if let Some(id) = filter.id_equality().filter(|_| !tailable) {
            let c = coll
                .read()
                .map_err(|_| errors::query_plan_killed("collection lock poisoned"))?;
            let docs: VecDeque<_> = c
                .find_id(id)
                .and_then(|rid| c.get(rid).cloned())
                .into_iter()
                .collect();
            Source::Docs {
                docs,
                coll: Some(coll.clone()),
            }
        } else if !sort.is_empty() {
            let c = coll
                .read()
                .map_err(|_| errors::query_plan_killed("collection lock poisoned"))?;
            let mut docs: Vec<_> = c
                .scan_forward(None)
                .filter(|(_, d)| filter.matches(d))
                .map(|(_, d)| d.clone())
                .collect();
            drop(c);
            sort_docs(&mut docs, &sort);
            let docs: VecDeque<_> = docs
                .into_iter()
                .skip(skip)
                .take(limit.unwrap_or(usize::MAX))
                .collect();
            Source::Docs {
                docs,
                coll: Some(coll.clone()),
            }
        } else {
            Source::Scan {
                coll: coll.clone(),
                pos: None,
                reverse: natural_dir == Some(-1),
            }
        };
        let scanning = matches!(source, Source::Scan { .. });
        let mut c = Cursor::new(ns, source);
        if scanning {
            c.filter = filter;
            c.skip = skip;
            c.remaining = limit;
        } else if let Source::Docs { docs, .. } = &mut c.source {
            // Sorted results were cut already; a point lookup still honours skip.
            if sort.is_empty() && skip > 0 {
                docs.clear();
            }
        }
        c.projection = projection;
        c.batch_size = batch_size;
        c.tailable = tailable;
        c.await_data = await_data;
        c.await_ms = get_i64(cmd, "maxTimeMS")
            .filter(|m| *m > 0)
            .map(|m| m as u64);
        self.first_batch(c, single_batch)
    }

    pub(super) async fn cmd_get_more(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let id = match cmd.get("getMore") {
            Some(Bson::Int64(i)) => *i,
            Some(Bson::Int32(i)) => i64::from(*i),
            Some(other) => {
                return Err(errors::type_mismatch(format!(
                    "BSON field 'getMore' is the wrong type '{}', expected type 'long'",
                    type_name(other)
                )))
            }
            None => return Err(errors::failed_to_parse("missing getMore")),
        };
        let coll_name = match cmd.get("collection") {
            Some(Bson::String(s)) => s.clone(),
            _ => {
                return Err(errors::location(
                    40414,
                    "BSON field 'getMore.collection' is missing but a required field",
                ))
            }
        };
        let batch_size = non_negative(cmd, "batchSize")?
            .filter(|b| *b > 0)
            .map(|b| b as usize);
        let cursor = {
            let m = self
                .cursors
                .lock()
                .map_err(|_| errors::cursor_not_found(id))?;
            m.get(&id)
                .cloned()
                .ok_or_else(|| errors::cursor_not_found(id))?
        };
        let mut cur = cursor.lock().await;
        let ns = format!("{db}.{coll_name}");
        if cur.ns != ns {
            return Err(CommandError::unauthorized(format!(
                "Requested getMore on namespace '{ns}', but cursor belongs to a different namespace {}",
                cur.ns
            )));
        }
        let wait_ms = get_i64(cmd, "maxTimeMS")
            .filter(|m| *m > 0)
            .map(|m| m as u64)
            .or(cur.await_ms)
            .unwrap_or(DEFAULT_AWAIT_MS);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        let result = loop {
            let notify = if cur.tailable && cur.await_data {
                cur.watched()
                    .and_then(|c| c.read().ok().map(|g| g.inserted.clone()))
            } else {
                None
            };
            let Some(notify) = notify else {
                break cur.fill(false, batch_size);
            };
            // Register interest before looking, so an insert in between is not missed.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match cur.fill(false, batch_size) {
                Ok((batch, done)) if batch.is_empty() && !done => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        break Ok((batch, done));
                    }
                }
                other => break other,
            }
        };
        match result {
            Ok((batch, exhausted)) => {
                let out_id = if exhausted { 0 } else { id };
                if exhausted {
                    self.forget_cursor(id);
                }
                Ok(cursor_reply(batch, false, out_id, &ns))
            }
            Err(e) => {
                self.forget_cursor(id);
                Err(e)
            }
        }
    }

    fn forget_cursor(&self, id: i64) {
        if let Ok(mut m) = self.cursors.lock() {
            m.remove(&id);
        }
    }

    pub(super) fn cmd_kill_cursors(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "killCursors")?;
        let ns = format!("{db}.{name}");
        let ids = match cmd.get("cursors") {
            Some(Bson::Array(a)) => a.clone(),
            _ => {
                return Err(errors::location(
                    40414,
                    "BSON field 'killCursors.cursors' is missing but a required field",
                ))
            }
        };
        let mut killed = Vec::new();
        let mut not_found = Vec::new();
        if let Ok(mut m) = self.cursors.lock() {
            for v in ids {
                let id = match v {
                    Bson::Int64(i) => i,
                    Bson::Int32(i) => i64::from(i),
                    _ => continue,
                };
                let belongs = m
                    .get(&id)
                    .map(|c| c.try_lock().map(|g| g.ns == ns).unwrap_or(true))
                    .unwrap_or(false);
                if belongs {
                    m.remove(&id);
                    killed.push(Bson::Int64(id));
                } else {
                    not_found.push(Bson::Int64(id));
                }
            }
        }
        Ok(reply::raw(&doc! {
            "cursorsKilled": killed,
            "cursorsNotFound": not_found,
            "cursorsAlive": [],
            "cursorsUnknown": [],
            "ok": 1.0,
        }))
    }

    pub(super) fn cmd_count(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "count")?;
        let query = cmd.get_document("query").cloned().unwrap_or_default();
        let filter = Expr::parse(&query)?;
        let skip = non_negative(cmd, "skip")?.unwrap_or(0) as usize;
        let limit = cmd
            .get("limit")
            .and_then(super::value::as_f64)
            .map(|l| l.abs() as usize)
            .filter(|l| *l > 0);
        let mut n = match self.coll(db, &name) {
            None => 0,
            Some(coll) => {
                let kind = coll
                    .read()
                    .map(|c| c.kind.clone())
                    .unwrap_or(Kind::Collection);
                if matches!(kind, Kind::Collection) {
                    let c = coll
                        .read()
                        .map_err(|_| errors::query_plan_killed("collection lock poisoned"))?;
                    if filter.is_empty() {
                        c.len()
                    } else {
                        c.scan_forward(None)
                            .filter(|(_, d)| filter.matches(d))
                            .count()
                    }
                } else {
                    let pipeline = if query.is_empty() {
                        vec![]
                    } else {
                        vec![doc! {"$match": query}]
                    };
                    self.run_aggregate(db, &name, &pipeline)?.len()
                }
            }
        };
        n = n.saturating_sub(skip);
        if let Some(l) = limit {
            n = n.min(l);
        }
        let n = i32::try_from(n)
            .map(Bson::Int32)
            .unwrap_or(Bson::Int64(n as i64));
        Ok(reply::raw(&doc! {"n": n, "ok": 1.0}))
    }

    pub(super) fn cmd_distinct(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "distinct")?;
        let key = cmd
            .get_str("key")
            .map_err(|_| errors::failed_to_parse("distinct needs a string key"))?
            .to_string();
        let query = cmd.get_document("query").cloned().unwrap_or_default();
        let pipeline = if query.is_empty() {
            vec![]
        } else {
            vec![doc! {"$match": query}]
        };
        let docs = self.run_aggregate(db, &name, &pipeline)?;
        let mut values: Vec<Bson> = Vec::new();
        for d in &docs {
            for v in lookup_raw(d, &key) {
                let items = match v {
                    Bson::Array(a) => a,
                    x => vec![x],
                };
                for x in items {
                    if !values.iter().any(|e| values_equal(e, &x)) {
                        values.push(x);
                    }
                }
            }
        }
        values.sort_by(compare);
        Ok(reply::raw(&doc! {"values": values, "ok": 1.0}))
    }
}
