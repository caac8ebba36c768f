//! Catalog commands: create, drop, listDatabases, listCollections, listIndexes,
//! createIndexes, dropIndexes, collMod, stats, rename, and the user collections.

use std::sync::Arc;

use bson::{doc, Bson, Document, RawDocumentBuf};

use super::catalog::{full_collation, uuid_binary, CollRef, CreateSpec};
use super::collection::{Index, Kind};
use super::errors;
use super::filter::Expr;
use super::oplog::OpEntry;
use super::reply::{self, raw};
use super::write_cmds::WriteError;
use super::{get_bool, target_name, Engine};
use crate::error::CommandError;

/// mongod's default name for an index on `key`: `a_1_b_-1`.
pub fn default_index_name(key: &Document) -> String {
    key.iter()
        .map(|(k, v)| {
            let v = match v {
                Bson::String(s) => s.clone(),
                Bson::Int32(i) => i.to_string(),
                Bson::Int64(i) => i.to_string(),
                Bson::Double(f) if f.fract() == 0.0 => format!("{}", *f as i64),
                other => other.to_string(),
            };
            format!("{k}_{v}")
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// An index spec as mongod stores and lists it.
fn normalise_index(
    given: &Document,
    coll_collation: Option<&Document>,
) -> Result<Document, CommandError> {
    let key = match given.get("key") {
        Some(Bson::Document(k)) if !k.is_empty() => k.clone(),
        _ => {
            return Err(errors::failed_to_parse(
                "Index key pattern must be a non-empty object",
            ))
        }
    };
    let name = match given.get("name") {
        Some(Bson::String(n)) if !n.is_empty() => n.clone(),
        Some(Bson::String(_)) => return Err(errors::bad_value("index name cannot be empty")),
        Some(_) => return Err(errors::type_mismatch("The field 'name' must be a string")),
        None => default_index_name(&key),
    };
    let is_text = key.values().any(|v| v.as_str() == Some("text"));
    let already_fts = key.contains_key("_fts");
    let mut weights = Document::new();
    let mut out_key = Document::new();
    if is_text && !already_fts {
        let mut text_done = false;
        for (k, v) in &key {
            if v.as_str() == Some("text") {
                weights.insert(k.clone(), 1);
                if !text_done {
                    out_key.insert("_fts", "text");
                    out_key.insert("_ftsx", 1);
                    text_done = true;
                }
            } else {
                out_key.insert(k.clone(), v.clone());
            }
        }
        if let Ok(w) = given.get_document("weights") {
            for (k, v) in w {
                let n = super::value::as_f64(v).map_or(1, |f| f as i32);
                weights.insert(k.clone(), n);
            }
        }
        // mongod keeps the weights in a sorted map of int32.
        let mut sorted: Vec<(String, Bson)> = weights.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        weights = sorted.into_iter().collect();
    } else {
        out_key = key.clone();
    }
    let v = match given.get("v") {
        Some(v @ (Bson::Int32(1 | 2) | Bson::Int64(1 | 2))) => v.clone(),
        Some(Bson::Double(d)) if *d == 1.0 || *d == 2.0 => Bson::Int32(*d as i32),
        _ => Bson::Int32(2),
    };
    let mut spec = doc! {"v": v, "key": out_key.clone(), "name": name};
    for (k, val) in given {
        if matches!(k.as_str(), "v" | "key" | "name" | "ns") {
            continue;
        }
        if k == "collation" {
            if let Bson::Document(c) = val {
                if let Some(full) = full_collation(c)? {
                    spec.insert("collation", full);
                }
            }
            continue;
        }
        if is_text && !already_fts && k == "weights" {
            continue;
        }
        spec.insert(k.clone(), val.clone());
    }
    if !given.contains_key("collation") {
        if let Some(c) = coll_collation {
            spec.insert("collation", c.clone());
        }
    }
    if is_text && !already_fts {
        spec.insert("weights", weights);
        if !spec.contains_key("default_language") {
            spec.insert("default_language", "english");
        }
        if !spec.contains_key("language_override") {
            spec.insert("language_override", "language");
        }
        if !spec.contains_key("textIndexVersion") {
            spec.insert("textIndexVersion", 3);
        }
    }
    if out_key.values().any(|v| v.as_str() == Some("2dsphere"))
        && !spec.contains_key("2dsphereIndexVersion")
    {
        spec.insert("2dsphereIndexVersion", 3);
    }
    Ok(spec)
}

fn options_of(spec: &Document) -> Document {
    spec.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "v" | "key" | "name"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn same_options(a: &Document, b: &Document) -> bool {
    let mut x = options_of(a);
    let mut y = options_of(b);
    // Order of options does not make two indexes different.
    let mut xs: Vec<_> = x.iter_mut().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut ys: Vec<_> = y.iter_mut().map(|(k, v)| (k.clone(), v.clone())).collect();
    xs.sort_by(|p, q| p.0.cmp(&q.0));
    ys.sort_by(|p, q| p.0.cmp(&q.0));
    xs == ys
}

fn shell(d: &Document) -> String {
    d.to_string()
}

impl Engine {
    pub(super) fn cmd_create(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "create")?;
        let id_index = cmd.get_document("idIndex").ok().cloned();
        self.create_collection(
            db,
            &name,
            CreateSpec {
                options: cmd.clone(),
                id_index,
                uuid: None,
            },
        )?;
        Ok(reply::ok_empty())
    }

    pub(super) fn cmd_drop(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "drop")?;
        let nindexes = self
            .coll(db, &name)
            .and_then(|c| c.read().ok().map(|g| g.indexes.len() as i32));
        self.drop_collection(db, &name, true)?;
        Ok(raw(
            &doc! {"nIndexesWas": nindexes.unwrap_or(0), "ns": format!("{db}.{name}"), "ok": 1.0},
        ))
    }

    pub(super) fn cmd_drop_database(&self, db: &str) -> Result<RawDocumentBuf, CommandError> {
        let names: Vec<String> = self.coll_names(db).into_iter().map(|(n, _)| n).collect();
        let existed = !names.is_empty();
        for n in names {
            if n.starts_with("system.buckets.") {
                continue;
            }
            let _ = self.drop_collection(db, &n, false);
        }
        if let Ok(mut cat) = self.catalog.write() {
            cat.dbs.remove(db);
        }
        if existed {
            self.log_ops(vec![OpEntry::command(
                db,
                None,
                doc! {"dropDatabase": 1},
                None,
            )]);
        }
        Ok(raw(&doc! {"dropped": db, "ok": 1.0}))
    }

    fn db_size(&self, db: &str) -> i64 {
        let total: u64 = self
            .coll_names(db)
            .iter()
            .filter_map(|(_, c)| c.read().ok().map(|g| g.data_size()))
            .sum();
        // mongod never reports less than a page per database.
        (total as i64).max(8192)
    }

    pub(super) fn cmd_list_databases(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        if db != "admin" {
            return Err(CommandError::unauthorized(
                "listDatabases may only be run against the admin database.",
            ));
        }
        let name_only = get_bool(cmd, "nameOnly");
        let filter = Expr::parse(&cmd.get_document("filter").cloned().unwrap_or_default())?;
        let mut dbs = Vec::new();
        let mut total = 0i64;
        for name in self.db_names() {
            if name == "local" && !self.oplog_enabled() {
                continue;
            }
            let size = self.db_size(&name);
            let entry = if name_only {
                doc! {"name": name.as_str()}
            } else {
                doc! {"name": name.as_str(), "sizeOnDisk": size, "empty": false}
            };
            let full = doc! {"name": name.as_str(), "sizeOnDisk": size, "empty": false};
            if !filter.matches(&raw(&full)) {
                continue;
            }
            total += size;
            dbs.push(Bson::Document(entry));
        }
        let mut out = doc! {"databases": dbs};
        if !name_only {
            out.insert("totalSize", total);
            out.insert("totalSizeMb", total / (1024 * 1024));
        }
        out.insert("ok", 1.0);
        Ok(raw(&out))
    }

    fn list_entry(&self, name: &str, c: &super::collection::Collection) -> Document {
        match &c.kind {
            Kind::View { .. } => {
                doc! {"name": name, "type": "view", "options": c.options.clone(), "info": {"readOnly": true}}
            }
            Kind::Timeseries => {
                doc! {"name": name, "type": "timeseries", "options": c.options.clone(), "info": {"readOnly": false}}
            }
            Kind::Collection => {
                let mut d = doc! {"name": name, "type": "collection", "options": c.options.clone(), "info": {"readOnly": false, "uuid": uuid_binary(&c.uuid)}};
                if !c.clustered {
                    if let Some(ix) = c.indexes.iter().find(|i| i.name == "_id_") {
                        d.insert("idIndex", ix.spec.clone());
                    }
                }
                d
            }
        }
    }

    pub(super) fn cmd_list_collections(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name_only = get_bool(cmd, "nameOnly");
        let filter = Expr::parse(&cmd.get_document("filter").cloned().unwrap_or_default())?;
        let batch_size = cmd
            .get_document("cursor")
            .ok()
            .and_then(|c| c.get("batchSize"))
            .and_then(super::value::as_f64)
            .map(|b| b as usize);
        let mut docs = Vec::new();
        for (name, coll) in self.coll_names(db) {
            let Ok(c) = coll.read() else { continue };
            let full = self.list_entry(&name, &c);
            let raw_full = raw(&full);
            if !filter.matches(&raw_full) {
                continue;
            }
            let out = if name_only {
                raw(
                    &doc! {"name": name.as_str(), "type": full.get_str("type").unwrap_or("collection")},
                )
            } else {
                raw_full
            };
            docs.push(Arc::new(out));
        }
        self.docs_cursor_reply(
            &format!("{db}.$cmd.listCollections"),
            docs,
            batch_size,
            None,
        )
    }

    pub(super) fn cmd_list_indexes(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "listIndexes")?;
        let ns = format!("{db}.{name}");
        let coll = self
            .coll(db, &name)
            .ok_or_else(|| errors::ns_does_not_exist(&ns))?;
        let batch_size = cmd
            .get_document("cursor")
            .ok()
            .and_then(|c| c.get("batchSize"))
            .and_then(super::value::as_f64)
            .map(|b| b as usize);
        let c = coll
            .read()
            .map_err(|_| errors::illegal_operation("collection lock poisoned"))?;
        if matches!(c.kind, Kind::View { .. }) {
            return Err(errors::not_supported_on_view(format!(
                "Namespace {ns} is a view, not a collection"
            )));
        }
        let docs: Vec<_> = c.indexes.iter().map(|i| Arc::new(raw(&i.spec))).collect();
        drop(c);
        self.docs_cursor_reply(&ns, docs, batch_size, None)
    }

    pub(super) fn cmd_create_indexes(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "createIndexes")?;
        let ns = format!("{db}.{name}");
        let specs = match cmd.get("indexes") {
            Some(Bson::Array(a)) if !a.is_empty() => a.clone(),
            Some(Bson::Array(_)) => {
                return Err(errors::bad_value(
                    "Must specify at least one index to create",
                ))
            }
            _ => {
                return Err(errors::location(
                    40414,
                    "BSON field 'createIndexes.indexes' is missing but a required field",
                ))
            }
        };
        let (coll, created) = self.writable(db, &name)?;
        let mut c = coll
            .write()
            .map_err(|_| errors::illegal_operation("collection lock poisoned"))?;
        let before = c.indexes.len() as i32;
        let coll_collation = c.options.get_document("collation").ok().cloned();
        let mut log = Vec::new();
        for s in specs {
            let Bson::Document(given) = s else {
                return Err(errors::type_mismatch("indexes must be objects"));
            };
            let spec = normalise_index(&given, coll_collation.as_ref())?;
            let sname = spec.get_str("name").unwrap_or_default().to_string();
            let skey = spec.get_document("key").cloned().unwrap_or_default();
            if let Some(ex) = c.indexes.iter().find(|i| i.name == sname) {
                let ekey = ex.spec.get_document("key").cloned().unwrap_or_default();
                if ekey != skey {
                    return Err(errors::index_key_specs_conflict(format!(
                        "An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: {}, existing index: {}",
                        shell(&spec), shell(&ex.spec)
                    )));
                }
                if !same_options(&ex.spec, &spec) {
                    return Err(errors::index_options_conflict(format!(
                        "An equivalent index already exists with the same name but different options. Requested index: {}, existing index: {}",
                        shell(&spec), shell(&ex.spec)
                    )));
                }
                continue;
            }
            if let Some(ex) = c.indexes.iter().find(|i| {
                i.spec.get_document("key").ok() == Some(&skey) && same_options(&i.spec, &spec)
            }) {
                return Err(errors::index_options_conflict(format!(
                    "Index already exists with a different name: {}",
                    ex.name
                )));
            }
            if sname == "_id_" || skey == doc! {"_id": 1} {
                continue;
            }
            let ix = Index::new(spec.clone())?;
            if matches!(c.kind, Kind::Timeseries) {
                c.indexes.push(ix);
            } else if let Err(d) = c.add_index(ix) {
                let we = WriteError::dup(0, &ns, d);
                return Err(CommandError::new(
                    11000,
                    "DuplicateKey",
                    format!(
                        "Index build failed: {}: Collection {ns} ( {} ) :: caused by :: {}",
                        bson::Uuid::new(),
                        bson::Uuid::from_bytes(c.uuid),
                        we.errmsg
                    ),
                ));
            }
            let mut o = doc! {"createIndexes": name.as_str()};
            o.extend(spec);
            log.push(OpEntry::command(db, Some(c.uuid), o, None));
        }
        let after = c.indexes.len() as i32;
        drop(c);
        self.log_ops(log);
        let mut out = doc! {"numIndexesBefore": before, "numIndexesAfter": after};
        if before == after {
            out.insert("note", "all indexes already exist");
        } else {
            out.insert("createdCollectionAutomatically", created);
        }
        if self.oplog_enabled() {
            out.insert("commitQuorum", "votingMembers");
        }
        out.insert("ok", 1.0);
        Ok(raw(&out))
    }

    pub(super) fn cmd_drop_indexes(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = cmd
            .get_str("dropIndexes")
            .or_else(|_| cmd.get_str("deleteIndexes"))
            .map_err(|_| errors::invalid_namespace("collection name has invalid type"))?
            .to_string();
        let ns = format!("{db}.{name}");
        let coll = self
            .coll(db, &name)
            .ok_or_else(|| errors::namespace_not_found_ns(&ns))?;
        let mut c = coll
            .write()
            .map_err(|_| errors::illegal_operation("collection lock poisoned"))?;
        let was = c.indexes.len() as i32;
        let mut dropped = Vec::new();
        match cmd.get("index") {
            Some(Bson::String(s)) if s == "*" => {
                let keep: Vec<Index> = c
                    .indexes
                    .iter()
                    .filter(|i| i.name == "_id_")
                    .cloned()
                    .collect();
                dropped = c
                    .indexes
                    .iter()
                    .filter(|i| i.name != "_id_")
                    .map(|i| i.name.clone())
                    .collect();
                c.indexes = keep;
            }
            Some(Bson::String(s)) => {
                if s == "_id_" {
                    return Err(errors::invalid_options("cannot drop _id index"));
                }
                let pos = c.indexes.iter().position(|i| &i.name == s).ok_or_else(|| {
                    errors::index_not_found(format!("index not found with name [{s}]"))
                })?;
                dropped.push(c.indexes.remove(pos).name);
            }
            Some(Bson::Array(a)) => {
                for n in a {
                    let Bson::String(s) = n else { continue };
                    let pos = c.indexes.iter().position(|i| &i.name == s).ok_or_else(|| {
                        errors::index_not_found(format!("index not found with name [{s}]"))
                    })?;
                    dropped.push(c.indexes.remove(pos).name);
                }
            }
            Some(Bson::Document(k)) => {
                let pos = c
                    .indexes
                    .iter()
                    .position(|i| i.spec.get_document("key").ok() == Some(k))
                    .ok_or_else(|| {
                        errors::index_not_found(format!("can't find index with key: {k}"))
                    })?;
                if c.indexes[pos].name == "_id_" {
                    return Err(errors::invalid_options("cannot drop _id index"));
                }
                dropped.push(c.indexes.remove(pos).name);
            }
            _ => {
                return Err(errors::location(
                    40414,
                    "BSON field 'dropIndexes.index' is missing but a required field",
                ))
            }
        }
        let uuid = c.uuid;
        drop(c);
        self.log_ops(
            dropped
                .into_iter()
                .map(|n| {
                    OpEntry::command(
                        db,
                        Some(uuid),
                        doc! {"dropIndexes": name.as_str(), "index": n},
                        None,
                    )
                })
                .collect(),
        );
        Ok(raw(&doc! {"nIndexesWas": was, "ok": 1.0}))
    }

    pub(super) fn cmd_coll_mod(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "collMod")?;
        let ns = format!("{db}.{name}");
        let coll = self
            .coll(db, &name)
            .ok_or_else(|| errors::namespace_not_found_ns(&ns))?;
        let mut c = coll
            .write()
            .map_err(|_| errors::illegal_operation("collection lock poisoned"))?;
        let mut out = Document::new();
        let mut o = doc! {"collMod": name.as_str()};
        for (k, v) in cmd {
            if k == "collMod" || super::is_generic(k) {
                continue;
            }
            o.insert(k.clone(), v.clone());
            match k.as_str() {
                "index" => {
                    let Bson::Document(spec) = v else {
                        return Err(errors::type_mismatch("index must be an object"));
                    };
                    let pos = c.indexes.iter().position(|i| {
                        spec.get_str("name").ok() == Some(i.name.as_str())
                            || spec.get_document("keyPattern").ok()
                                == i.spec.get_document("key").ok()
                    });
                    let Some(pos) = pos else {
                        return Err(errors::index_not_found(format!(
                            "cannot find index {spec} for ns {ns}"
                        )));
                    };
                    for (opt, val) in spec {
                        if matches!(opt.as_str(), "name" | "keyPattern") {
                            continue;
                        }
                        let old = c.indexes[pos].spec.get(opt).cloned();
                        let ixspec = &mut c.indexes[pos].spec;
                        if opt == "hidden" && val.as_bool() == Some(false) {
                            ixspec.remove("hidden");
                        } else {
                            ixspec.insert(opt.clone(), val.clone());
                        }
                        out.insert(format!("{opt}_old"), old.unwrap_or(Bson::Boolean(false)));
                        out.insert(format!("{opt}_new"), val.clone());
                    }
                }
                "validator"
                | "validationLevel"
                | "validationAction"
                | "expireAfterSeconds"
                | "changeStreamPreAndPostImages" => {
                    c.options.insert(k.clone(), v.clone());
                }
                "timeseriesBucketsMayHaveMixedSchemaData" | "cappedSize" | "cappedMax" => {}
                other => {
                    return Err(errors::invalid_options(format!(
                        "unknown option to collMod: {other}"
                    )));
                }
            }
        }
        let opts = c.options.clone();
        self.apply_validator(&mut c, &opts)?;
        let uuid = c.uuid;
        drop(c);
        self.log_ops(vec![OpEntry::command(db, Some(uuid), o, None)]);
        out.insert("ok", 1.0);
        Ok(raw(&out))
    }

    pub(super) fn cmd_coll_stats(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = target_name(cmd, "collStats")?;
        let ns = format!("{db}.{name}");
        let coll = self
            .coll(db, &name)
            .ok_or_else(|| errors::namespace_not_found_ns(&ns))?;
        let mut d = coll_stats_doc(&ns, &coll);
        d.insert("ok", 1.0);
        Ok(raw(&d))
    }

    pub(super) fn cmd_db_stats(
        &self,
        db: &str,
        _cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let colls = self.coll_names(db);
        let (mut n_coll, mut n_view, mut objects, mut size, mut indexes) =
            (0i64, 0i64, 0i64, 0i64, 0i64);
        for (_, c) in &colls {
            let Ok(g) = c.read() else { continue };
            match g.kind {
                Kind::View { .. } => n_view += 1,
                _ => {
                    n_coll += 1;
                    objects += g.len() as i64;
                    size += g.data_size() as i64;
                    indexes += g.indexes.len() as i64;
                }
            }
        }
        let avg = if objects > 0 {
            size as f64 / objects as f64
        } else {
            0.0
        };
        let storage = if colls.is_empty() { 0 } else { size.max(4096) };
        Ok(raw(&doc! {
            "db": db, "collections": n_coll, "views": n_view, "objects": objects,
            "avgObjSize": avg, "dataSize": size as f64, "storageSize": storage as f64,
            "indexes": indexes, "indexSize": (indexes * 4096) as f64,
            "totalSize": (storage + indexes * 4096) as f64, "scaleFactor": 1_i64,
            "fsUsedSize": 0.0, "fsTotalSize": 0.0, "ok": 1.0,
        }))
    }

    pub(super) fn cmd_rename_collection(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        if db != "admin" {
            return Err(CommandError::unauthorized(
                "renameCollection may only be run against the admin database.",
            ));
        }
        let from = target_name(cmd, "renameCollection")?;
        let to = cmd
            .get_str("to")
            .map_err(|_| errors::failed_to_parse("missing 'to'"))?
            .to_string();
        let (fdb, fname) = from.split_once('.').ok_or_else(|| {
            errors::invalid_namespace(format!("Invalid source namespace: {from}"))
        })?;
        let (tdb, tname) = to
            .split_once('.')
            .ok_or_else(|| errors::invalid_namespace(format!("Invalid target namespace: {to}")))?;
        super::catalog::validate_coll_name(tdb, tname)?;
        if self.coll(tdb, tname).is_some() {
            if get_bool(cmd, "dropTarget") {
                self.drop_collection(tdb, tname, true)?;
            } else {
                return Err(errors::namespace_exists(&to));
            }
        }
        let mut cat = self
            .catalog
            .write()
            .map_err(|_| errors::illegal_operation("catalog lock poisoned"))?;
        let c = cat
            .dbs
            .get_mut(fdb)
            .and_then(|m| m.remove(fname))
            .ok_or_else(|| errors::namespace_not_found_ns("Source collection does not exist"))?;
        if cat.dbs.get(fdb).is_some_and(|m| m.is_empty()) {
            cat.dbs.remove(fdb);
        }
        let uuid = c.read().map(|g| g.uuid).unwrap_or([0; 16]);
        cat.dbs
            .entry(tdb.to_string())
            .or_default()
            .insert(tname.to_string(), c);
        drop(cat);
        self.log_ops(vec![OpEntry::command(
            fdb,
            Some(uuid),
            doc! {"renameCollection": from.as_str(), "to": to.as_str(), "stayTemp": false},
            None,
        )]);
        Ok(reply::ok_empty())
    }

    pub(super) fn cmd_create_user(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let user = target_name(cmd, "createUser")?;
        let roles = cmd.get_array("roles").cloned().unwrap_or_default();
        let roles: Vec<Bson> = roles
            .into_iter()
            .map(|r| match r {
                Bson::String(s) => Bson::Document(doc! {"role": s, "db": db}),
                other => other,
            })
            .collect();
        let id = format!("{db}.{user}");
        let (users, _) = self.coll_or_create("admin", "system.users")?;
        {
            let g = users
                .read()
                .map_err(|_| errors::illegal_operation("collection lock poisoned"))?;
            if g.find_id(&Bson::String(id.clone())).is_some() {
                return Err(CommandError::new(
                    51003,
                    "Location51003",
                    format!("User \"{user}@{db}\" already exists"),
                ));
            }
        }
        let credentials = crate::auth::stored_credentials(&user, cmd)?;
        let mut u = doc! {"_id": id.as_str(), "userId": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: bson::Uuid::new().bytes().to_vec() }, "user": user.as_str(), "db": db, "credentials": credentials};
        if let Ok(custom) = cmd.get_document("customData") {
            u.insert("customData", custom.clone());
        }
        u.insert("roles", roles);
        self.insert_docs("admin", "system.users", &[&raw(&u)], true, true)?;
        self.ensure_auth_schema()?;
        Ok(reply::ok_empty())
    }

    pub(super) fn cmd_drop_user(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let user = target_name(cmd, "dropUser")?;
        let gone = self.delete_matching(
            "admin",
            "system.users",
            &doc! {"_id": format!("{db}.{user}")},
            false,
        )?;
        if gone.is_empty() {
            return Err(CommandError::new(
                11,
                "UserNotFound",
                format!("User '{user}@{db}' not found"),
            ));
        }
        Ok(reply::ok_empty())
    }

    fn ensure_auth_schema(&self) -> Result<(), CommandError> {
        let (v, _) = self.coll_or_create("admin", "system.version")?;
        let exists = v
            .read()
            .map(|g| g.find_id(&Bson::String("authSchema".into())).is_some())
            .unwrap_or(true);
        if !exists {
            self.insert_docs(
                "admin",
                "system.version",
                &[&raw(&doc! {"_id": "authSchema", "currentVersion": 5})],
                true,
                true,
            )?;
        }
        Ok(())
    }

    /// What mongorestore sends to restore users and roles: merge the temporary collections
    /// into `admin.system.users` / `admin.system.roles`. As in mongod, without `drop` a user
    /// or role that already exists is kept as it is (the failed insert is ignored, so one
    /// conflict does not stop the rest); with `drop` the target ends up holding exactly the
    /// temporary collection's entries for the databases in scope (`db`, or all when empty).
    pub(super) fn cmd_merge_authz(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        if db != "admin" {
            return Err(CommandError::unauthorized(
                "_mergeAuthzCollections may only be run against the admin database.",
            ));
        }
        let temp_name = |key| cmd.get_str(key).ok().filter(|s| !s.is_empty());
        if temp_name("tempUsersCollection").is_none() && temp_name("tempRolesCollection").is_none()
        {
            return Err(errors::bad_value(
                "Must provide at least one of \"tempUsersCollection\" and \"tempRolesCollection\"",
            ));
        }
        let only_db = cmd.get_str("db").unwrap_or("").to_string();
        let drop = get_bool(cmd, "drop");
        for (key, target) in [
            ("tempUsersCollection", "system.users"),
            ("tempRolesCollection", "system.roles"),
        ] {
            let Some(temp) = temp_name(key) else { continue };
            let Some((tdb, tname)) = temp.split_once('.') else {
                return Err(errors::bad_value(format!(
                    "{key} must be a full namespace, got \"{temp}\""
                )));
            };
            let docs: Vec<Arc<RawDocumentBuf>> = match self.coll(tdb, tname) {
                Some(c) => c
                    .read()
                    .map(|g| g.scan_forward(None).map(|(_, d)| d.clone()).collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            if drop {
                let q = if only_db.is_empty() {
                    Document::new()
                } else {
                    doc! {"db": only_db.as_str()}
                };
                self.delete_matching("admin", target, &q, true)?;
            }
            for d in docs {
                if !only_db.is_empty() && d.get_str("db").ok() != Some(only_db.as_str()) {
                    continue;
                }
                let id = d
                    .get("_id")
                    .ok()
                    .flatten()
                    .map(super::value::to_bson)
                    .unwrap_or(Bson::Null);
                let exists = self
                    .coll("admin", target)
                    .and_then(|c| c.read().ok().map(|g| g.find_id(&id).is_some()))
                    .unwrap_or(false);
                if !exists {
                    self.insert_docs("admin", target, &[&d], true, true)?;
                }
            }
            if target == "system.users" {
                self.ensure_auth_schema()?;
            }
        }
        Ok(reply::ok_empty())
    }
}

/// collStats / `$collStats.storageStats` numbers for one collection.
pub fn coll_stats_doc(ns: &str, coll: &CollRef) -> Document {
    let Ok(c) = coll.read() else {
        return Document::new();
    };
    let count = c.len() as i64;
    let size = c.data_size() as i64;
    let nindexes = c.indexes.len() as i32;
    let mut index_sizes = Document::new();
    for i in &c.indexes {
        index_sizes.insert(i.name.clone(), 4096_i64);
    }
    let mut d = doc! {"ns": ns, "size": size, "count": count};
    if count > 0 {
        d.insert("avgObjSize", size / count);
    }
    let storage = size.max(4096);
    d.insert("numOrphanDocs", 0_i64);
    d.insert("storageSize", storage);
    d.insert("freeStorageSize", 0_i64);
    d.insert("capped", c.is_capped());
    if let Some(cap) = c.capped {
        if let Some(m) = cap.max {
            d.insert("max", m as i64);
        }
        if let Some(s) = cap.size {
            d.insert("maxSize", s as i64);
        }
    }
    d.insert("nindexes", nindexes);
    d.insert("indexBuilds", Vec::<Bson>::new());
    d.insert("totalIndexSize", 4096 * i64::from(nindexes));
    d.insert("totalSize", storage + 4096 * i64::from(nindexes));
    d.insert("indexSizes", index_sizes);
    d.insert("scaleFactor", 1);
    d
}
