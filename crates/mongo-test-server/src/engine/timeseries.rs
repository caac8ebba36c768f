//! Time-series collections as mongod 7.0 stores them: measurements grouped by meta value
//! into bucket documents of `system.buckets.<name>`, and unpacked again when read.

use std::sync::Arc;

use bson::{doc, oid::ObjectId, Bson, Document, RawDocument, RawDocumentBuf};

use super::errors;
use super::oplog::{diff, OpEntry};
use super::reply::raw;
use super::value::{compare, to_document, values_equal};
use super::write_cmds::{with_id_first, WriteError};
use super::Engine;
use crate::error::CommandError;

/// A bucket closes at this many measurements, as in mongod.
const BUCKET_MAX_COUNT: usize = 1000;

struct TsOptions {
    time_field: String,
    meta_field: Option<String>,
    span_secs: i64,
    rounding_secs: i64,
}

fn ts_options(opts: &Document) -> TsOptions {
    let ts = opts.get_document("timeseries").cloned().unwrap_or_default();
    let span = ts
        .get("bucketMaxSpanSeconds")
        .and_then(super::value::as_f64)
        .unwrap_or(3600.0) as i64;
    let rounding = match ts
        .get("bucketRoundingSeconds")
        .and_then(super::value::as_f64)
    {
        Some(r) => r as i64,
        None => match ts.get_str("granularity").unwrap_or("seconds") {
            "minutes" => 3600,
            "hours" => 86400,
            _ => 60,
        },
    };
    TsOptions {
        time_field: ts.get_str("timeField").unwrap_or("t").to_string(),
        meta_field: ts.get_str("metaField").ok().map(String::from),
        span_secs: span,
        rounding_secs: rounding.max(1),
    }
}

fn bucket_id(min_secs: i64) -> ObjectId {
    let mut b = ObjectId::new().bytes();
    let secs = u32::try_from(min_secs.max(0)).unwrap_or(u32::MAX);
    b[..4].copy_from_slice(&secs.to_be_bytes());
    ObjectId::from_bytes(b)
}

fn fold_extreme(target: &mut Document, field: &str, v: &Bson, want_less: bool) {
    match target.get(field) {
        Some(cur) => {
            let o = compare(v, cur);
            if (want_less && o.is_lt()) || (!want_less && o.is_gt()) {
                target.insert(field, v.clone());
            }
        }
        None => {
            target.insert(field, v.clone());
        }
    }
}

impl Engine {
    pub(super) fn timeseries_insert(
        &self,
        db: &str,
        name: &str,
        items: &[&RawDocument],
        ordered: bool,
    ) -> Result<(usize, Vec<WriteError>), CommandError> {
        let logical = self.coll(db, name).ok_or_else(errors::ns_not_found)?;
        let opts = ts_options(
            &logical
                .read()
                .map(|c| c.options.clone())
                .unwrap_or_default(),
        );
        let bname = format!("system.buckets.{name}");
        let bns = format!("{db}.{bname}");
        let buckets = self.coll(db, &bname).ok_or_else(errors::ns_not_found)?;
        let mut c = buckets
            .write()
            .map_err(|_| errors::illegal_operation("collection lock poisoned"))?;
        let mut n = 0;
        let mut errs = Vec::new();
        let mut log = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let m = to_document(&with_id_first(item));
            let time = match m.get(&opts.time_field) {
                Some(Bson::DateTime(t)) => *t,
                _ => {
                    errs.push(WriteError {
                        index: i,
                        code: 2,
                        errmsg: format!(
                            "'{}' must be present and contain a valid BSON UTC datetime value",
                            opts.time_field
                        ),
                        extra: Document::new(),
                    });
                    if ordered {
                        break;
                    }
                    continue;
                }
            };
            let secs = time.timestamp_millis().div_euclid(1000);
            let meta = opts.meta_field.as_ref().and_then(|f| m.get(f)).cloned();
            // An open bucket: same meta, time inside its span, room left.
            let open = c.scan_backward(None).find_map(|(rid, b)| {
                let bd = to_document(b);
                let bmeta = bd.get("meta").cloned();
                let same_meta = match (&bmeta, &meta) {
                    (None, None) => true,
                    (Some(x), Some(y)) => values_equal(x, y),
                    _ => false,
                };
                let min = bd
                    .get_document("control")
                    .ok()
                    .and_then(|c| c.get_document("min").ok())
                    .and_then(|m| m.get_datetime(&opts.time_field).ok())
                    .map(|t| t.timestamp_millis().div_euclid(1000))?;
                let count = bd
                    .get_document("data")
                    .ok()
                    .and_then(|d| d.get_document(&opts.time_field).ok())
                    .map_or(0, |t| t.len());
                (same_meta
                    && secs >= min
                    && secs < min + opts.span_secs
                    && count < BUCKET_MAX_COUNT)
                    .then_some((*rid, bd, count))
            });
            let (rid, old, mut bucket, idx) = match open {
                Some((rid, bd, count)) => (Some(rid), Some(bd.clone()), bd, count),
                None => {
                    let min_secs = secs - secs.rem_euclid(opts.rounding_secs);
                    let mut b = doc! {"_id": bucket_id(min_secs), "control": {"version": 1, "min": {}, "max": {}}};
                    if let Some(mv) = &meta {
                        b.insert("meta", mv.clone());
                    }
                    b.insert("data", Document::new());
                    (None, None, b, 0)
                }
            };
            {
                let mut control = bucket.get_document("control").cloned().unwrap_or_default();
                let mut min = control.get_document("min").cloned().unwrap_or_default();
                let mut max = control.get_document("max").cloned().unwrap_or_default();
                let mut data = bucket.get_document("data").cloned().unwrap_or_default();
                for (f, v) in &m {
                    if Some(f) == opts.meta_field.as_ref() {
                        continue;
                    }
                    let mut minv = v.clone();
                    if f == &opts.time_field && rid.is_none() {
                        let rounded = (secs - secs.rem_euclid(opts.rounding_secs)) * 1000;
                        minv = Bson::DateTime(bson::DateTime::from_millis(rounded));
                    }
                    fold_extreme(&mut min, f, &minv, true);
                    fold_extreme(&mut max, f, v, false);
                    let mut col = data.get_document(f).cloned().unwrap_or_default();
                    col.insert(idx.to_string(), v.clone());
                    data.insert(f.clone(), col);
                }
                control.insert("min", min);
                control.insert("max", max);
                bucket.insert("control", control);
                bucket.insert("data", data);
            }
            let rawb = raw(&bucket);
            let id = bucket.get("_id").cloned().unwrap_or(Bson::Null);
            let result = match rid {
                Some(r) => c.replace(r, rawb).map(|_| ()),
                None => {
                    let entry = OpEntry::insert(bns.clone(), c.uuid, &rawb);
                    c.insert(rawb).map(|_| log.push(entry))
                }
            };
            match result {
                Ok(()) => {
                    if let Some(old) = old {
                        log.push(OpEntry::update(
                            bns.clone(),
                            c.uuid,
                            doc! {"$v": 2, "diff": diff(&old, &bucket)},
                            id,
                        ));
                    }
                    n += 1;
                }
                Err(d) => {
                    errs.push(WriteError::dup(i, &bns, d));
                    if ordered {
                        break;
                    }
                }
            }
        }
        drop(c);
        self.log_ops(log);
        Ok((n, errs))
    }

    /// The measurements of time-series `name`, unpacked from its buckets.
    pub(super) fn timeseries_measurements(&self, db: &str, name: &str) -> Vec<Arc<RawDocumentBuf>> {
        let Some(logical) = self.coll(db, name) else {
            return Vec::new();
        };
        let opts = ts_options(
            &logical
                .read()
                .map(|c| c.options.clone())
                .unwrap_or_default(),
        );
        let Some(buckets) = self.coll(db, &format!("system.buckets.{name}")) else {
            return Vec::new();
        };
        let Ok(c) = buckets.read() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (_, b) in c.scan_forward(None) {
            let bd = to_document(b);
            let data = bd.get_document("data").cloned().unwrap_or_default();
            let meta = bd.get("meta").cloned();
            let Ok(times) = data.get_document(&opts.time_field) else {
                continue;
            };
            for (idx, t) in times {
                let mut m = doc! {opts.time_field.as_str(): t.clone()};
                for (f, col) in &data {
                    if f == &opts.time_field {
                        continue;
                    }
                    if let Some(v) = col.as_document().and_then(|c| c.get(idx)) {
                        m.insert(f.clone(), v.clone());
                    }
                }
                if let (Some(mf), Some(mv)) = (&opts.meta_field, &meta) {
                    m.insert(mf.clone(), mv.clone());
                }
                out.push(Arc::new(raw(&m)));
            }
        }
        out
    }
}
