//! `applyOps`: replays oplog entries the way mongod's applyOps command does (inserts
//! upsert, updates take `$v: 2` diffs or replacements, commands run as themselves).

use bson::{doc, Bson, Document, RawDocumentBuf};

use super::catalog::{uuid_from_bson, CreateSpec};
use super::errors;
use super::oplog::{apply_diff, OpEntry};
use super::reply::raw;
use super::update::id_first;
use super::value::{to_document, values_equal};
use super::{get_bool, Engine};
use crate::error::CommandError;

fn split_ns(ns: &str) -> Result<(&str, &str), CommandError> {
    ns.split_once('.')
        .filter(|(d, c)| !d.is_empty() && !c.is_empty())
        .ok_or_else(|| errors::invalid_namespace(format!("invalid ns: {ns}")))
}

impl Engine {
    pub(super) fn cmd_apply_ops(
        &self,
        _db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let ops = match cmd.get("applyOps") {
            Some(Bson::Array(a)) => a.clone(),
            _ => return Err(errors::failed_to_parse("ApplyOps command must be an array")),
        };
        let bypass = get_bool(cmd, "bypassDocumentValidation");
        let mut results = Vec::new();
        let mut apply = || {
            for op in &ops {
                let Bson::Document(op) = op else {
                    return Err(errors::failed_to_parse("applyOps entries must be objects"));
                };
                self.apply_one(op, bypass)?;
                results.push(Bson::Boolean(true));
            }
            Ok(())
        };
        // Only CRUD operations: mongod applies them atomically and logs one applyOps entry,
        // the shape a committed transaction has in the oplog. With a command among them each
        // operation is logged as itself.
        let crud = ops.iter().all(|op| {
            op.as_document()
                .and_then(|d| d.get_str("op").ok())
                .is_some_and(|k| matches!(k, "i" | "u" | "d"))
        });
        if crud && !ops.is_empty() {
            self.log_as_one(apply)?;
        } else {
            apply()?;
        }
        Ok(raw(
            &doc! {"applied": results.len() as i32, "results": results, "ok": 1.0},
        ))
    }

    fn apply_one(&self, op: &Document, bypass: bool) -> Result<(), CommandError> {
        let kind = op.get_str("op").map_err(|_| {
            errors::failed_to_parse("BSON field 'applyOps.op' is missing but a required field")
        })?;
        let ns = op.get_str("ns").unwrap_or("");
        let o = op.get_document("o").cloned().unwrap_or_default();
        match kind {
            "n" => Ok(()),
            "i" => {
                let (db, coll) = split_ns(ns)?;
                let o = id_first(o, None);
                let id = o.get("_id").cloned().unwrap_or(Bson::Null);
                let existing = self
                    .coll(db, coll)
                    .and_then(|c| c.read().ok().and_then(|g| g.find_id(&id)));
                if existing.is_some() {
                    self.replace_by_id(db, coll, &id, o)
                } else {
                    let d = raw(&o);
                    let (_, errs) = self.insert_docs(db, coll, &[&d], true, bypass)?;
                    match errs.into_iter().next() {
                        Some(e) => Err(CommandError::new(e.code, "DuplicateKey", e.errmsg)),
                        None => Ok(()),
                    }
                }
            }
            "u" => {
                let (db, coll) = split_ns(ns)?;
                let o2 = op.get_document("o2").cloned().unwrap_or_default();
                let id = o2.get("_id").cloned().unwrap_or(Bson::Null);
                let current = self.coll(db, coll).and_then(|c| {
                    c.read()
                        .ok()
                        .and_then(|g| g.find_id(&id).and_then(|r| g.get(r).cloned()))
                });
                if let Ok(d) = o.get_document("diff") {
                    let Some(cur) = current else { return Ok(()) };
                    let mut doc = to_document(&cur);
                    apply_diff(&mut doc, d);
                    self.replace_by_id(db, coll, &id, doc)
                } else if o.keys().next().is_some_and(|k| k.starts_with('$')) {
                    let u = super::update::UpdateSpec::parse(&Bson::Document(o.clone()))?;
                    self.update_one_stmt(db, coll, &doc! {"_id": id}, &u, true, false, bypass, 0)
                        .map(|_| ())
                        .map_err(|e| CommandError::new(e.code, "BadValue", e.errmsg))
                } else {
                    let new = id_first(o, Some(&id));
                    match current {
                        Some(_) => self.replace_by_id(db, coll, &id, new),
                        None => {
                            let d = raw(&new);
                            self.insert_docs(db, coll, &[&d], true, bypass).map(|_| ())
                        }
                    }
                }
            }
            "d" => {
                let (db, coll) = split_ns(ns)?;
                let id = o.get("_id").cloned().unwrap_or(Bson::Null);
                self.delete_matching(db, coll, &doc! {"_id": id}, false)
                    .map(|_| ())
            }
            "c" => {
                let db = ns.strip_suffix(".$cmd").unwrap_or(ns);
                let Some((name, arg)) = o.iter().next() else {
                    return Err(errors::failed_to_parse("empty command in applyOps entry"));
                };
                let target = arg.as_str().unwrap_or("").to_string();
                match name.as_str() {
                    "create" => {
                        let uuid = op.get("ui").and_then(uuid_from_bson);
                        let id_index = o.get_document("idIndex").ok().cloned();
                        self.create_collection(
                            db,
                            &target,
                            CreateSpec {
                                options: o.clone(),
                                id_index,
                                uuid,
                            },
                        )
                        .map(|_| ())
                    }
                    "drop" => match self.drop_collection(db, &target, true) {
                        Err(e) if e.code == 26 => Ok(()),
                        other => other.map(|_| ()),
                    },
                    "dropDatabase" => self.cmd_drop_database(db).map(|_| ()),
                    "createIndexes" => {
                        let spec: Document = o
                            .iter()
                            .filter(|(k, _)| k.as_str() != "createIndexes")
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        self.cmd_create_indexes(
                            db,
                            &doc! {"createIndexes": target.as_str(), "indexes": [spec]},
                        )
                        .map(|_| ())
                    }
                    "commitIndexBuild" => {
                        let indexes = o.get_array("indexes").cloned().unwrap_or_default();
                        self.cmd_create_indexes(
                            db,
                            &doc! {"createIndexes": target.as_str(), "indexes": indexes},
                        )
                        .map(|_| ())
                    }
                    "startIndexBuild" | "abortIndexBuild" => Ok(()),
                    "dropIndexes" | "deleteIndexes" => {
                        let mut c = o.clone();
                        c.remove(name);
                        let mut cmd = doc! {"dropIndexes": target.as_str()};
                        cmd.extend(c);
                        self.cmd_drop_indexes(db, &cmd).map(|_| ())
                    }
                    "collMod" => self.cmd_coll_mod(db, &o).map(|_| ()),
                    "renameCollection" => self.cmd_rename_collection("admin", &o).map(|_| ()),
                    other => Err(errors::bad_value(format!(
                        "Invalid command in applyOps entry: {other}"
                    ))),
                }
            }
            other => Err(errors::bad_value(format!("invalid op type: {other}"))),
        }
    }

    fn replace_by_id(
        &self,
        db: &str,
        coll: &str,
        id: &Bson,
        doc: Document,
    ) -> Result<(), CommandError> {
        let c = self.coll(db, coll).ok_or_else(errors::ns_not_found)?;
        let ns = format!("{db}.{coll}");
        let mut g = c
            .write()
            .map_err(|_| errors::illegal_operation("collection lock poisoned"))?;
        let Some(rid) = g.find_id(id) else {
            return Ok(());
        };
        let old = g.get(rid).map(|d| to_document(d));
        if old.as_ref().is_some_and(|o| {
            o == &doc
                && o.iter()
                    .zip(doc.iter())
                    .all(|(a, b)| values_equal(a.1, b.1))
        }) {
            return Ok(());
        }
        let rawd = raw(&doc);
        g.replace(rid, rawd).map_err(|d| {
            CommandError::new(
                11000,
                "DuplicateKey",
                super::write_cmds::WriteError::dup(0, &ns, d).errmsg,
            )
        })?;
        let uuid = g.uuid;
        drop(g);
        let o = match old {
            Some(old) => doc! {"$v": 2, "diff": super::oplog::diff(&old, &doc)},
            None => doc.clone(),
        };
        self.log_ops(vec![OpEntry::update(ns, uuid, o, id.clone())]);
        Ok(())
    }
}
