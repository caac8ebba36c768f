//! `insert`, `update`, `delete` and `findAndModify`, with mongod's write-error shapes.

use std::sync::Arc;

use bson::{doc, oid::ObjectId, Bson, Document, RawBsonRef, RawDocument, RawDocumentBuf};

use super::catalog::CollRef;
use super::collection::{Collection, DuplicateKey, Kind};
use super::errors::{self, DOCUMENT_VALIDATION_FAILURE, DUPLICATE_KEY};
use super::filter::Expr;
use super::oplog::{diff, OpEntry};
use super::projection::Projection;
use super::read_cmds::{sort_docs, sort_spec};
use super::reply;
use super::update::{id_first, set_path, UpdateSpec};
use super::value::{to_bson, to_document};
use super::{get_bool, target_name, Engine};
use crate::error::CommandError;

const MAX_DOC_BYTES: usize = 16 * 1024 * 1024;

/// One failed document of a batch write.
#[derive(Debug, Clone)]
pub struct WriteError {
    pub index: usize,
    pub code: i32,
    pub errmsg: String,
    pub extra: Document,
}

impl WriteError {
    fn from_cmd(index: usize, e: CommandError) -> WriteError {
        WriteError {
            index,
            code: e.code,
            errmsg: e.errmsg,
            extra: Document::new(),
        }
    }

    pub fn dup(index: usize, ns: &str, d: DuplicateKey) -> WriteError {
        WriteError {
            index,
            code: DUPLICATE_KEY,
            errmsg: format!(
                "E11000 duplicate key error collection: {ns} index: {} dup key: {}",
                d.index,
                shell_form(&d.key_value)
            ),
            extra: doc! {"keyPattern": d.key_pattern, "keyValue": d.key_value},
        }
    }

    fn validation(index: usize, id: Bson, validator: &Document) -> WriteError {
        let op = validator
            .keys()
            .next()
            .cloned()
            .unwrap_or_else(|| "$and".into());
        WriteError {
            index,
            code: DOCUMENT_VALIDATION_FAILURE,
            errmsg: "Document failed validation".into(),
            extra: doc! {"errInfo": {"failingDocumentId": id, "details": {"operatorName": if op.starts_with('$') { op } else { "$and".into() }, "specifiedAs": validator.clone()}}},
        }
    }

    fn to_doc(&self) -> Document {
        let mut d = doc! {"index": self.index as i32, "code": self.code};
        d.extend(self.extra.clone());
        d.insert("errmsg", self.errmsg.clone());
        d
    }
}

/// `{ a: 1, b: "x" }` as mongod prints keys in duplicate-key messages.
fn shell_form(d: &Document) -> String {
    let parts: Vec<String> = d
        .iter()
        .map(|(k, v)| format!("{k}: {}", shell_value(v)))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

fn shell_value(v: &Bson) -> String {
    match v {
        Bson::String(s) => format!("\"{s}\""),
        Bson::ObjectId(o) => format!("ObjectId('{}')", o.to_hex()),
        Bson::Double(f) if f.fract() == 0.0 && f.is_finite() => format!("{f:.1}"),
        Bson::Int64(i) => i.to_string(),
        Bson::Int32(i) => i.to_string(),
        Bson::Document(d) => shell_form(d),
        Bson::Null => "null".into(),
        other => other.to_string(),
    }
}

fn write_reply(mut d: Document, errors: &[WriteError]) -> RawDocumentBuf {
    if !errors.is_empty() {
        d.insert(
            "writeErrors",
            errors
                .iter()
                .map(|e| Bson::Document(e.to_doc()))
                .collect::<Vec<_>>(),
        );
    }
    d.insert("ok", 1.0);
    reply::raw(&d)
}

/// The document with `_id` first: stored bytes untouched when it already leads, as mongod
/// moves or generates it otherwise.
pub fn with_id_first(doc: &RawDocument) -> RawDocumentBuf {
    let mut iter = doc.iter();
    if let Some(Ok(("_id", _))) = iter.next() {
        return doc.to_raw_document_buf();
    }
    let mut out = RawDocumentBuf::new();
    match doc.get("_id") {
        Ok(Some(id)) => out.append_ref("_id", id),
        _ => out.append("_id", ObjectId::new()),
    }
    for (k, v) in doc.iter().flatten() {
        if k != "_id" {
            out.append_ref(k, v);
        }
    }
    out
}

impl Engine {
    pub(super) fn writable(&self, db: &str, name: &str) -> Result<(CollRef, bool), CommandError> {
        let (coll, created) = self.coll_or_create(db, name)?;
        if let Ok(c) = coll.read() {
            if matches!(c.kind, Kind::View { .. }) {
                return Err(errors::not_supported_on_view(format!(
                    "Namespace {db}.{name} is a view, not a collection"
                )));
            }
        }
        Ok((coll, created))
    }

    fn check_valid(
        c: &Collection,
        doc: &RawDocument,
        bypass: bool,
        index: usize,
    ) -> Option<WriteError> {
        let v = c.validator.as_ref()?;
        if bypass || c.validation_warn_only || v.matches(doc) {
            return None;
        }
        let id = doc
            .get("_id")
            .ok()
            .flatten()
            .map(to_bson)
            .unwrap_or(Bson::Null);
        let spec = c
            .options
            .get_document("validator")
            .cloned()
            .unwrap_or_default();
        Some(WriteError::validation(index, id, &spec))
    }

    pub(super) fn cmd_insert(
        &self,
        db: &str,
        cmd: &RawDocument,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = match cmd.get("insert") {
            Ok(Some(RawBsonRef::String(s))) if !s.is_empty() => s.to_string(),
            _ => {
                return Err(errors::invalid_namespace(
                    "collection name has invalid type",
                ))
            }
        };
        let docs = match cmd.get("documents") {
            Ok(Some(RawBsonRef::Array(a))) => a,
            _ => {
                return Err(errors::location(
                    40414,
                    "BSON field 'insert.documents' is missing but a required field",
                ))
            }
        };
        let ordered = !matches!(cmd.get("ordered"), Ok(Some(RawBsonRef::Boolean(false))));
        let bypass = matches!(
            cmd.get("bypassDocumentValidation"),
            Ok(Some(RawBsonRef::Boolean(true)))
        );
        let mut items: Vec<&RawDocument> = Vec::new();
        for d in docs {
            match d {
                Ok(RawBsonRef::Document(d)) => items.push(d),
                _ => return Err(errors::type_mismatch("documents must be objects")),
            }
        }
        let (n, errs) = self.insert_docs(db, &name, &items, ordered, bypass)?;
        Ok(write_reply(doc! {"n": n as i32}, &errs))
    }

    /// Inserts documents as the `insert` command does; returns how many went in and the
    /// per-document errors.
    pub(super) fn insert_docs(
        &self,
        db: &str,
        name: &str,
        items: &[&RawDocument],
        ordered: bool,
        bypass: bool,
    ) -> Result<(usize, Vec<WriteError>), CommandError> {
        let (coll, _) = self.writable(db, name)?;
        if coll
            .read()
            .map(|c| matches!(c.kind, Kind::Timeseries))
            .unwrap_or(false)
        {
            return self.timeseries_insert(db, name, items, ordered);
        }
        let ns = format!("{db}.{name}");
        let mut errs = Vec::new();
        let mut n = 0;
        let mut c = coll.write().map_err(|_| {
            errors::illegal_operation("collection lock poisoned; restart the server")
        })?;
        let mut log = Vec::new();
        for (i, d) in items.iter().enumerate() {
            if d.as_bytes().len() > MAX_DOC_BYTES {
                errs.push(WriteError::from_cmd(
                    i,
                    CommandError::new(
                        10334,
                        "BSONObjectTooLarge",
                        format!("object to insert too large. size in bytes: {}, max size: {MAX_DOC_BYTES}", d.as_bytes().len()),
                    ),
                ));
                if ordered {
                    break;
                }
                continue;
            }
            let doc = with_id_first(d);
            if let Some(e) = Self::check_valid(&c, &doc, bypass, i) {
                errs.push(e);
                if ordered {
                    break;
                }
                continue;
            }
            let entry = self
                .oplog_enabled()
                .then(|| OpEntry::insert(ns.clone(), c.uuid, &doc));
            match c.insert(doc) {
                Ok(_) => {
                    n += 1;
                    log.extend(entry);
                }
                Err(dup) => {
                    errs.push(WriteError::dup(i, &ns, dup));
                    if ordered {
                        break;
                    }
                }
            }
        }
        self.log_ops(log);
        Ok((n, errs))
    }

    /// Record ids matching `q`, in natural order; only the first when `multi` is false.
    fn matching(c: &Collection, q: &Expr, multi: bool) -> Vec<u64> {
        if let Some(id) = q.id_equality() {
            return c.find_id(id).into_iter().collect();
        }
        let it = c
            .scan_forward(None)
            .filter(|(_, d)| q.matches(d))
            .map(|(r, _)| *r);
        if multi {
            it.collect()
        } else {
            it.take(1).collect()
        }
    }

    /// Applies one update statement. Returns (matched, modified, upserted _id).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_one_stmt(
        &self,
        db: &str,
        name: &str,
        q: &Document,
        u: &UpdateSpec,
        upsert: bool,
        multi: bool,
        bypass: bool,
        index: usize,
    ) -> Result<(usize, usize, Option<Bson>), WriteError> {
        let ns = format!("{db}.{name}");
        let filter = Expr::parse(q).map_err(|e| WriteError::from_cmd(index, e))?;
        if multi && u.is_replacement() {
            return Err(WriteError::from_cmd(
                index,
                errors::failed_to_parse(
                    "multi update is not supported for replacement-style update",
                ),
            ));
        }
        let (coll, _) = self
            .writable(db, name)
            .map_err(|e| WriteError::from_cmd(index, e))?;
        let mut c = coll.write().map_err(|_| {
            WriteError::from_cmd(index, errors::illegal_operation("collection lock poisoned"))
        })?;
        let rids = Self::matching(&c, &filter, multi);
        if rids.is_empty() {
            if !upsert {
                return Ok((0, 0, None));
            }
            let mut base = Document::new();
            let mut eqs = Vec::new();
            filter.equalities(&mut eqs);
            if !u.is_replacement() {
                for (p, v) in eqs.iter() {
                    set_path(&mut base, p, v.clone())
                        .map_err(|e| WriteError::from_cmd(index, e))?;
                }
            } else if let Some((_, id)) = eqs.iter().find(|(p, _)| p == "_id") {
                base.insert("_id", id.clone());
            }
            let mut new = u
                .apply(&base, true)
                .map_err(|e| WriteError::from_cmd(index, e))?;
            if !new.contains_key("_id") {
                new = id_first(new, Some(&Bson::ObjectId(ObjectId::new())));
            }
            let id = new.get("_id").cloned().unwrap_or(Bson::Null);
            let raw = reply::raw(&new);
            if let Some(e) = Self::check_valid(&c, &raw, bypass, index) {
                return Err(e);
            }
            let entry = self
                .oplog_enabled()
                .then(|| OpEntry::insert(ns.clone(), c.uuid, &raw));
            c.insert(raw).map_err(|d| WriteError::dup(index, &ns, d))?;
            self.log_ops(entry.into_iter().collect());
            return Ok((1, 0, Some(id)));
        }
        let mut modified = 0;
        let mut log = Vec::new();
        for rid in &rids {
            let Some(old_raw) = c.get(*rid).cloned() else {
                continue;
            };
            let old = to_document(&old_raw);
            let new = u
                .apply(&old, false)
                .map_err(|e| WriteError::from_cmd(index, e))?;
            if new == old {
                continue;
            }
            let raw = reply::raw(&new);
            if raw.as_bytes().len() > MAX_DOC_BYTES {
                return Err(WriteError::from_cmd(
                    index,
                    CommandError::new(
                        17419,
                        "Location17419",
                        "Resulting document after update is larger than 16777216",
                    ),
                ));
            }
            if let Some(e) = Self::check_valid(&c, &raw, bypass, index) {
                return Err(e);
            }
            c.replace(*rid, raw)
                .map_err(|d| WriteError::dup(index, &ns, d))?;
            modified += 1;
            if self.oplog_enabled() {
                let id = new.get("_id").cloned().unwrap_or(Bson::Null);
                let o = if u.is_replacement() {
                    new.clone()
                } else {
                    doc! {"$v": 2, "diff": diff(&old, &new)}
                };
                log.push(OpEntry::update(ns.clone(), c.uuid, o, id));
            }
        }
        self.log_ops(log);
        Ok((rids.len(), modified, None))
    }

    pub(super) fn cmd_update(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "update")?;
        let ordered = cmd.get_bool("ordered").unwrap_or(true);
        let bypass = get_bool(cmd, "bypassDocumentValidation");
        let updates = cmd.get_array("updates").map_err(|_| {
            errors::location(
                40414,
                "BSON field 'update.updates' is missing but a required field",
            )
        })?;
        let (mut n, mut n_mod) = (0usize, 0usize);
        let mut upserted = Vec::new();
        let mut errs = Vec::new();
        for (i, stmt) in updates.iter().enumerate() {
            let Bson::Document(stmt) = stmt else {
                return Err(errors::type_mismatch("updates must be objects"));
            };
            let q = stmt.get_document("q").cloned().unwrap_or_default();
            let u = stmt
                .get("u")
                .ok_or_else(|| {
                    errors::location(
                        40414,
                        "BSON field 'update.updates.u' is missing but a required field",
                    )
                })
                .and_then(UpdateSpec::parse);
            let res = u.map_err(|e| WriteError::from_cmd(i, e)).and_then(|u| {
                self.update_one_stmt(
                    db,
                    &name,
                    &q,
                    &u,
                    get_bool(stmt, "upsert"),
                    get_bool(stmt, "multi"),
                    bypass,
                    i,
                )
            });
            match res {
                Ok((m, md, up)) => {
                    n += m;
                    n_mod += md;
                    if let Some(id) = up {
                        upserted.push(Bson::Document(doc! {"index": i as i32, "_id": id}));
                    }
                }
                Err(e) => {
                    errs.push(e);
                    if ordered {
                        break;
                    }
                }
            }
        }
        let mut d = doc! {"n": n as i32, "nModified": n_mod as i32};
        if !upserted.is_empty() {
            d.insert("upserted", upserted);
        }
        Ok(write_reply(d, &errs))
    }

    pub(super) fn delete_matching(
        &self,
        db: &str,
        name: &str,
        q: &Document,
        multi: bool,
    ) -> Result<Vec<Arc<RawDocumentBuf>>, CommandError> {
        let filter = Expr::parse(q)?;
        let Some(coll) = self.coll(db, name) else {
            return Ok(Vec::new());
        };
        let ns = format!("{db}.{name}");
        let mut c = coll
            .write()
            .map_err(|_| errors::illegal_operation("collection lock poisoned"))?;
        if matches!(c.kind, Kind::View { .. }) {
            return Err(errors::not_supported_on_view(format!(
                "Namespace {ns} is a view, not a collection"
            )));
        }
        let rids = Self::matching(&c, &filter, multi);
        let mut out = Vec::new();
        let mut log = Vec::new();
        for rid in rids {
            if let Some(old) = c.remove(rid) {
                if self.oplog_enabled() {
                    let id = old
                        .get("_id")
                        .ok()
                        .flatten()
                        .map(to_bson)
                        .unwrap_or(Bson::Null);
                    log.push(OpEntry::delete(ns.clone(), c.uuid, id));
                }
                out.push(old);
            }
        }
        self.log_ops(log);
        Ok(out)
    }

    pub(super) fn cmd_delete(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "delete")?;
        let ordered = cmd.get_bool("ordered").unwrap_or(true);
        let deletes = cmd.get_array("deletes").map_err(|_| {
            errors::location(
                40414,
                "BSON field 'delete.deletes' is missing but a required field",
            )
        })?;
        let mut n = 0;
        let mut errs = Vec::new();
        for (i, stmt) in deletes.iter().enumerate() {
            let Bson::Document(stmt) = stmt else {
                return Err(errors::type_mismatch("deletes must be objects"));
            };
            let q = stmt.get_document("q").cloned().unwrap_or_default();
            let limit = stmt
                .get("limit")
                .and_then(super::value::as_f64)
                .unwrap_or(0.0);
            if limit != 0.0 && limit != 1.0 {
                errs.push(WriteError::from_cmd(
                    i,
                    errors::failed_to_parse(
                        "The limit field in delete objects must be 0 or 1. Got ".to_string()
                            + &limit.to_string(),
                    ),
                ));
                if ordered {
                    break;
                }
                continue;
            }
            match self.delete_matching(db, &name, &q, limit == 0.0) {
                Ok(v) => n += v.len(),
                Err(e) => {
                    errs.push(WriteError::from_cmd(i, e));
                    if ordered {
                        break;
                    }
                }
            }
        }
        Ok(write_reply(doc! {"n": n as i32}, &errs))
    }

    pub(super) fn cmd_find_and_modify(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = cmd
            .get_str("findAndModify")
            .or_else(|_| cmd.get_str("findandmodify"))
            .map_err(|_| errors::invalid_namespace("collection name has invalid type"))?
            .to_string();
        let query = cmd.get_document("query").cloned().unwrap_or_default();
        let remove = get_bool(cmd, "remove");
        let return_new = get_bool(cmd, "new");
        let upsert = get_bool(cmd, "upsert");
        let fields = match cmd.get_document("fields") {
            Ok(f) => Projection::parse(f)?,
            Err(_) => None,
        };
        if remove && cmd.contains_key("update") {
            return Err(errors::failed_to_parse(
                "Cannot specify both an update and remove=true",
            ));
        }
        // Pick the target by sort order first, then address it by _id.
        let filter = Expr::parse(&query)?;
        let target: Option<Document> = match self.coll(db, &name) {
            None => None,
            Some(coll) => {
                let c = coll
                    .read()
                    .map_err(|_| errors::illegal_operation("collection lock poisoned"))?;
                let mut docs: Vec<_> = c
                    .scan_forward(None)
                    .filter(|(_, d)| filter.matches(d))
                    .map(|(_, d)| d.clone())
                    .collect();
                drop(c);
                if let Ok(s) = cmd.get_document("sort") {
                    sort_docs(&mut docs, &sort_spec(s)?);
                }
                docs.first().map(|d| to_document(d))
            }
        };
        let project = |d: Document| -> Bson {
            match &fields {
                Some(p) => Bson::Document(p.apply(&d)),
                None => Bson::Document(d),
            }
        };
        if remove {
            let Some(t) = target else {
                return Ok(reply::raw(
                    &doc! {"lastErrorObject": {"n": 0}, "value": Bson::Null, "ok": 1.0},
                ));
            };
            let id = t.get("_id").cloned().unwrap_or(Bson::Null);
            self.delete_matching(db, &name, &doc! {"_id": id}, false)?;
            return Ok(reply::raw(
                &doc! {"lastErrorObject": {"n": 1}, "value": project(t), "ok": 1.0},
            ));
        }
        let u = UpdateSpec::parse(
            cmd.get("update")
                .unwrap_or(&Bson::Document(Document::new())),
        )?;
        let bypass = get_bool(cmd, "bypassDocumentValidation");
        let q = match &target {
            Some(t) => doc! {"_id": t.get("_id").cloned().unwrap_or(Bson::Null)},
            None => query.clone(),
        };
        let (n, _, up) = self
            .update_one_stmt(
                db,
                &name,
                &q,
                &u,
                upsert && target.is_none(),
                false,
                bypass,
                0,
            )
            .map_err(|e| CommandError::new(e.code, code_name(e.code), e.errmsg))?;
        let mut leo = doc! {"n": n as i32, "updatedExisting": target.is_some()};
        if let Some(id) = &up {
            leo.insert("upserted", id.clone());
        }
        let value = if return_new {
            let id = up.or_else(|| target.as_ref().and_then(|t| t.get("_id").cloned()));
            match id.and_then(|id| {
                self.coll(db, &name).and_then(|c| {
                    let g = c.read().ok()?;
                    g.find_id(&id).and_then(|r| g.get(r).cloned())
                })
            }) {
                Some(d) => project(to_document(&d)),
                None => Bson::Null,
            }
        } else {
            target.map(project).unwrap_or(Bson::Null)
        };
        Ok(reply::raw(
            &doc! {"lastErrorObject": leo, "value": value, "ok": 1.0},
        ))
    }
}

fn code_name(code: i32) -> &'static str {
    match code {
        11000 => "DuplicateKey",
        121 => "DocumentValidationFailure",
        66 => "ImmutableField",
        14 => "TypeMismatch",
        9 => "FailedToParse",
        40 => "ConflictingUpdateOperators",
        _ => "BadValue",
    }
}
