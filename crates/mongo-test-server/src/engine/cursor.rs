//! Server-side cursors. A collection scan remembers the record id it stopped at and resumes
//! on the live collection, as a WiredTiger cursor does: later inserts may be seen, no
//! document is seen twice, and a dropped collection kills the cursor.

use std::collections::VecDeque;
use std::sync::Arc;

use bson::RawDocumentBuf;

use super::catalog::CollRef;
use super::errors;
use super::filter::Expr;
use super::projection::Projection;
use super::reply::Batch;
use super::value::to_document;
use crate::error::CommandError;

/// A batch stops growing once it holds this many bytes (mongod's 16 MiB user limit); a
/// larger single document still goes out alone.
pub const BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Documents in a first batch when the client names no batchSize.
pub const DEFAULT_FIRST_BATCH: usize = 101;

#[derive(Debug)]
pub enum Source {
    Scan {
        coll: CollRef,
        /// Last record returned (or skipped); the next batch starts after it.
        pos: Option<u64>,
        reverse: bool,
    },
    Docs {
        docs: VecDeque<Arc<RawDocumentBuf>>,
        /// Kept so that dropping the collection kills the cursor.
        coll: Option<CollRef>,
    },
}

#[derive(Debug)]
pub struct Cursor {
    pub ns: String,
    pub source: Source,
    pub filter: Expr,
    pub projection: Option<Projection>,
    pub skip: usize,
    /// Documents still allowed by `limit`.
    pub remaining: Option<usize>,
    pub batch_size: Option<usize>,
    pub tailable: bool,
    pub await_data: bool,
    /// getMore's wait for awaitData cursors, from the find's `maxTimeMS` or getMore's own.
    pub await_ms: Option<u64>,
}

impl Cursor {
    pub fn new(ns: String, source: Source) -> Cursor {
        Cursor {
            ns,
            source,
            filter: Expr::True,
            projection: None,
            skip: 0,
            remaining: None,
            batch_size: None,
            tailable: false,
            await_data: false,
            await_ms: None,
        }
    }

    fn push(&self, batch: &mut Batch, doc: &RawDocumentBuf) {
        match &self.projection {
            None => batch.push(doc),
            Some(p) => {
                let projected = p.apply(&to_document(doc));
                batch.push(&super::reply::raw(&projected));
            }
        }
    }

    /// Fills the next batch. The bool is true when the cursor has nothing more to give
    /// (its id becomes 0).
    pub fn fill(
        &mut self,
        first: bool,
        batch_size: Option<usize>,
    ) -> Result<(Batch, bool), CommandError> {
        let mut batch = Batch::new();
        // The find's batchSize shapes the first batch only; each getMore names its own.
        let asked = if first { self.batch_size } else { batch_size };
        let mut max_docs = match asked {
            Some(0) | None if first => DEFAULT_FIRST_BATCH,
            Some(0) | None => usize::MAX,
            Some(n) => n,
        };
        if first && asked == Some(0) {
            // batchSize 0 opens the cursor without returning anything.
            max_docs = 0;
        }
        if let Some(r) = self.remaining {
            max_docs = max_docs.min(r);
        }
        let taken;
        let exhausted;
        match &mut self.source {
            Source::Docs { docs, coll } => {
                if let Some(c) = coll {
                    if c.read().map(|g| g.dropped).unwrap_or(true) {
                        return Err(errors::query_plan_killed("collection dropped"));
                    }
                }
                let mut out = Vec::new();
                let mut bytes = 0usize;
                while let Some(d) = docs.front() {
                    let len = d.as_bytes().len();
                    if out.len() >= max_docs || (!out.is_empty() && bytes + len + 8 > BATCH_BYTES) {
                        break;
                    }
                    bytes += len + 8;
                    if let Some(d) = docs.pop_front() {
                        out.push(d);
                    }
                }
                taken = out.len();
                exhausted = docs.is_empty();
                for d in out {
                    self.push(&mut batch, &d);
                }
            }
            Source::Scan { coll, pos, reverse } => {
                let coll = coll.clone();
                let c = coll
                    .read()
                    .map_err(|_| errors::query_plan_killed("collection lock poisoned"))?;
                if c.dropped {
                    return Err(errors::query_plan_killed(format!(
                        "collection dropped. UUID {}",
                        bson::Uuid::from_bytes(c.uuid)
                    )));
                }
                if let Some(p) = *pos {
                    if self.tailable
                        && c.get(p).is_none()
                        && c.first_record().is_some_and(|f| f > p)
                    {
                        return Err(errors::capped_position_lost(format!(
                            "CollectionScan died due to position in capped collection being deleted. Last seen record id: RecordId({p})"
                        )));
                    }
                }
                let mut n = 0usize;
                let mut more = false;
                let iter: Box<dyn Iterator<Item = (&u64, &Arc<RawDocumentBuf>)>> = if *reverse {
                    Box::new(c.scan_backward(*pos))
                } else {
                    Box::new(c.scan_forward(*pos))
                };
                // Projection needs `self`, so gather the documents first (cheap Arc clones).
                let mut out: Vec<Arc<RawDocumentBuf>> = Vec::new();
                let mut bytes = 0usize;
                for (rid, d) in iter {
                    if !self.filter.matches(d) {
                        *pos = Some(*rid);
                        continue;
                    }
                    if self.skip > 0 {
                        self.skip -= 1;
                        *pos = Some(*rid);
                        continue;
                    }
                    let len = d.as_bytes().len();
                    if n >= max_docs || (n > 0 && bytes + len + 8 > BATCH_BYTES) {
                        more = true;
                        break;
                    }
                    bytes += len + 8;
                    out.push(d.clone());
                    *pos = Some(*rid);
                    n += 1;
                }
                drop(c);
                taken = n;
                exhausted = !more && !self.tailable;
                for d in out {
                    self.push(&mut batch, &d);
                }
            }
        }
        if let Some(r) = &mut self.remaining {
            *r = r.saturating_sub(taken);
            if *r == 0 {
                return Ok((batch, true));
            }
        }
        Ok((batch, exhausted))
    }

    /// The collection whose inserts wake an awaitData getMore.
    pub fn watched(&self) -> Option<CollRef> {
        match &self.source {
            Source::Scan { coll, .. } => Some(coll.clone()),
            Source::Docs { .. } => None,
        }
    }
}
