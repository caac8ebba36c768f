//! The catalog: which databases and collections exist, and creating and dropping them the
//! way mongod does (options kept verbatim, views recorded in `system.views`, time-series
//! backed by `system.buckets.<name>`, every change logged in replica-set mode).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bson::{doc, spec::BinarySubtype, Binary, Bson, Document};

use super::collection::{CappedLimits, Collection, Index, Kind};
use super::errors;
use super::filter::Expr;
use super::oplog::OpEntry;
use super::value::{as_f64, truthy};
use super::{is_generic, Engine};
use crate::error::CommandError;

pub type CollRef = Arc<RwLock<Collection>>;

#[derive(Debug, Default)]
pub struct Catalog {
    pub dbs: BTreeMap<String, BTreeMap<String, CollRef>>,
}

/// What a `create` asks for, once separated from the command's own fields.
#[derive(Debug, Default, Clone)]
pub struct CreateSpec {
    pub options: Document,
    pub id_index: Option<Document>,
    pub uuid: Option<[u8; 16]>,
}

pub fn uuid_binary(uuid: &[u8; 16]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Uuid,
        bytes: uuid.to_vec(),
    })
}

pub fn uuid_from_bson(v: &Bson) -> Option<[u8; 16]> {
    match v {
        Bson::Binary(b) if b.bytes.len() == 16 => {
            let mut u = [0u8; 16];
            u.copy_from_slice(&b.bytes);
            Some(u)
        }
        _ => None,
    }
}

fn new_uuid() -> [u8; 16] {
    bson::Uuid::new().bytes()
}

pub fn validate_db_name(db: &str) -> Result<(), CommandError> {
    let bad = db.is_empty()
        || db.len() >= 64
        || db
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '$' | '\0'));
    if bad {
        return Err(errors::invalid_namespace(format!(
            "Invalid database name: '{db}'"
        )));
    }
    Ok(())
}

pub fn validate_coll_name(db: &str, name: &str) -> Result<(), CommandError> {
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.contains('\0')
        || (name.contains('$') && !name.contains("oplog.$"));
    if bad {
        return Err(errors::invalid_namespace(format!(
            "Invalid collection name: {db}.{name}"
        )));
    }
    Ok(())
}

/// A collation in the complete form mongod reports; `None` for the simple collation.
pub fn full_collation(c: &Document) -> Result<Option<Document>, CommandError> {
    let locale = match c.get("locale") {
        Some(Bson::String(l)) => l.clone(),
        _ => return Err(errors::failed_to_parse("missing required field 'locale'")),
    };
    if locale == "simple" {
        return Ok(None);
    }
    let mut out = doc! {
        "locale": locale.as_str(),
        "caseLevel": false,
        "caseFirst": "off",
        "strength": 3,
        "numericOrdering": false,
        "alternate": "non-ignorable",
        "maxVariable": "punct",
        "normalization": false,
        "backwards": false,
        "version": "57.1",
    };
    for (k, v) in c {
        if k != "locale" && out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Some(out))
}

/// A whole number as mongod's `appendNumber` writes it: int32 when it fits.
fn small_number(n: i64) -> Bson {
    i32::try_from(n).map_or(Bson::Int64(n), Bson::Int32)
}

/// Collection options in the order and form mongod stores and lists them
/// (`CollectionOptions::toBSON`): capped size rounded up to a multiple of 256, `max` only
/// on capped collections, `expireAfterSeconds` as a long, disabled pre-images left out.
/// Fields mongod does not know stay at the end, as given.
fn canonical_options(given: &Document) -> Document {
    const ORDER: [&str; 18] = [
        "capped",
        "size",
        "max",
        "autoIndexId",
        "temp",
        "recordPreImages",
        "changeStreamPreAndPostImages",
        "storageEngine",
        "indexOptionDefaults",
        "validator",
        "validationLevel",
        "validationAction",
        "collation",
        "clusteredIndex",
        "expireAfterSeconds",
        "viewOn",
        "pipeline",
        "timeseries",
    ];
    let capped = given.get("capped").is_some_and(truthy);
    let mut out = Document::new();
    for key in ORDER {
        let Some(v) = given.get(key) else { continue };
        let v = match key {
            "capped" if capped => Bson::Boolean(true),
            "capped" => continue,
            "size" | "max" if !capped => continue,
            "size" => match as_f64(v) {
                // Rounded up to 256 bytes, as mongod 7.0 does.
                Some(n) if n >= 0.0 => small_number(((n as i64) + 0xff) & !0xff),
                _ => v.clone(),
            },
            "max" => match as_f64(v) {
                Some(n) if n <= 0.0 || n >= i64::MAX as f64 => small_number(0x7fff_ffff),
                Some(n) => small_number(n as i64),
                None => v.clone(),
            },
            "clusteredIndex" => match v {
                Bson::Document(ci) => Bson::Document(doc! {
                    "v": 2,
                    "key": {"_id": 1},
                    "name": ci.get_str("name").unwrap_or("_id_"),
                    "unique": true,
                }),
                other => other.clone(),
            },
            "expireAfterSeconds" => as_f64(v).map_or_else(|| v.clone(), |n| Bson::Int64(n as i64)),
            "changeStreamPreAndPostImages" => match v {
                Bson::Document(d) if d.get("enabled").is_some_and(truthy) => {
                    Bson::Document(doc! {"enabled": true})
                }
                Bson::Document(_) => continue,
                other => other.clone(),
            },
            _ => v.clone(),
        };
        out.insert(key, v);
    }
    for (k, v) in given {
        if !ORDER.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn granularity_span(g: &str) -> Option<i32> {
    match g {
        "seconds" => Some(3600),
        "minutes" => Some(86400),
        "hours" => Some(2_592_000),
        _ => None,
    }
}

/// `timeseries` options as mongod 7.0 reports them.
fn normalise_timeseries(ts: &Document) -> Result<Document, CommandError> {
    let time_field = match ts.get("timeField") {
        Some(Bson::String(s)) => s.clone(),
        _ => {
            return Err(errors::location(
                40414,
                "BSON field 'timeseries.timeField' is missing but a required field",
            ))
        }
    };
    let mut out = doc! {"timeField": time_field};
    if let Some(Bson::String(m)) = ts.get("metaField") {
        out.insert("metaField", m.clone());
    }
    let rounding = ts.get("bucketRoundingSeconds").and_then(as_f64);
    let span = ts.get("bucketMaxSpanSeconds").and_then(as_f64);
    match (ts.get("granularity"), rounding, span) {
        (None, Some(r), Some(s)) => {
            out.insert("bucketRoundingSeconds", r as i32);
            out.insert("bucketMaxSpanSeconds", s as i32);
        }
        (g, _, _) => {
            let g = match g {
                Some(Bson::String(g)) => g.clone(),
                None => "seconds".to_string(),
                Some(_) => return Err(errors::bad_value("granularity must be a string")),
            };
            let Some(default_span) = granularity_span(&g) else {
                return Err(errors::bad_value(format!(
                    "Enumeration value '{g}' for field 'timeseries.granularity' is not a valid value."
                )));
            };
            out.insert("granularity", g);
            out.insert(
                "bucketMaxSpanSeconds",
                span.map_or(default_span, |s| s as i32),
            );
        }
    }
    Ok(out)
}

/// The validator mongod 7.0 puts on a `system.buckets` collection.
fn buckets_validator(time_field: &str) -> Document {
    doc! {"$jsonSchema": {
        "bsonType": "object",
        "required": ["_id", "control", "data"],
        "properties": {
            "_id": {"bsonType": "objectId"},
            "control": {
                "bsonType": "object",
                "required": ["version", "min", "max"],
                "properties": {
                    "version": {"bsonType": "number"},
                    "min": {"bsonType": "object", "required": [time_field], "properties": {time_field: {"bsonType": "date"}}},
                    "max": {"bsonType": "object", "required": [time_field], "properties": {time_field: {"bsonType": "date"}}},
                    "closed": {"bsonType": "bool"},
                    "count": {"bsonType": "number", "minimum": 1},
                },
                "additionalProperties": false,
            },
            "data": {"bsonType": "object"},
            "meta": {},
        },
        "additionalProperties": false,
    }}
}

pub fn id_index_spec(collation: Option<&Document>) -> Document {
    let mut d = doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"};
    if let Some(c) = collation {
        d.insert("collation", c.clone());
    }
    d
}

impl crate::auth::UserCatalog for Engine {
    fn user_document(&self, db: &str, user: &str) -> Option<bson::RawDocumentBuf> {
        let users = self.coll("admin", "system.users")?;
        let g = users.read().ok()?;
        let rid = g.find_id(&Bson::String(format!("{db}.{user}")))?;
        g.get(rid).map(|d| (**d).clone())
    }
}

impl Engine {
    pub(super) fn coll(&self, db: &str, name: &str) -> Option<CollRef> {
        let cat = self.catalog.read().ok()?;
        cat.dbs.get(db)?.get(name).cloned()
    }

    pub(super) fn coll_names(&self, db: &str) -> Vec<(String, CollRef)> {
        match self.catalog.read() {
            Ok(cat) => cat
                .dbs
                .get(db)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    pub(super) fn db_names(&self) -> Vec<String> {
        match self.catalog.read() {
            Ok(cat) => cat
                .dbs
                .iter()
                .filter(|(_, m)| !m.is_empty())
                .map(|(k, _)| k.clone())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The collection, created with default options when missing (implicit creation by a
    /// write). The bool says whether it was created here.
    pub(super) fn coll_or_create(
        &self,
        db: &str,
        name: &str,
    ) -> Result<(CollRef, bool), CommandError> {
        if let Some(c) = self.coll(db, name) {
            return Ok((c, false));
        }
        match self.create_collection(db, name, CreateSpec::default()) {
            Ok(c) => Ok((c, true)),
            // Lost a race with another creator: use theirs.
            Err(e) if e.code == 48 => self.coll(db, name).map(|c| (c, false)).ok_or(e),
            Err(e) => Err(e),
        }
    }

    fn insert_into_catalog(
        &self,
        db: &str,
        name: &str,
        coll: Collection,
    ) -> Result<CollRef, CommandError> {
        let mut cat = self
            .catalog
            .write()
            .map_err(|_| errors::illegal_operation("catalog lock poisoned; restart the server"))?;
        let m = cat.dbs.entry(db.to_string()).or_default();
        if m.contains_key(name) {
            return Err(errors::namespace_exists(&format!("{db}.{name}")));
        }
        let r = Arc::new(RwLock::new(coll));
        m.insert(name.to_string(), r.clone());
        Ok(r)
    }

    /// Creates a collection, view or time-series as `create` does and logs it.
    pub(super) fn create_collection(
        &self,
        db: &str,
        name: &str,
        spec: CreateSpec,
    ) -> Result<CollRef, CommandError> {
        validate_db_name(db)?;
        validate_coll_name(db, name)?;
        let ns = format!("{db}.{name}");
        let mut options = Document::new();
        for (k, v) in &spec.options {
            if is_generic(k) || k == "idIndex" || k == "create" {
                continue;
            }
            options.insert(k.clone(), v.clone());
        }
        if let Some(Bson::Document(c)) = options.get("collation").cloned() {
            match full_collation(&c)? {
                Some(full) => {
                    options.insert("collation", full);
                }
                None => {
                    options.remove("collation");
                }
            }
        }
        let mut options = canonical_options(&options);
        if let Some(existing) = self.coll(db, name) {
            let same = existing
                .read()
                .map(|c| c.options == options)
                .unwrap_or(false);
            if same {
                return Ok(existing);
            }
            return Err(errors::namespace_exists(&ns));
        }
        let collation = options.get_document("collation").ok().cloned();
        if let Some(view_on) = options.get("viewOn").cloned() {
            return self.create_view(db, name, view_on, options);
        }
        if let Ok(ts) = options.get_document("timeseries").cloned() {
            return self.create_timeseries(db, name, &ts, options, spec.uuid);
        }

        let uuid = spec.uuid.unwrap_or_else(new_uuid);
        let mut coll = Collection::new(uuid, Kind::Collection, Document::new());
        let clustered = options.get("clusteredIndex").cloned();
        match &clustered {
            Some(Bson::Boolean(true)) => coll.clustered = true,
            Some(Bson::Document(ci)) => {
                coll.clustered = true;
                let mut norm = doc! {"v": 2, "key": {"_id": 1}};
                norm.insert("name", ci.get_str("name").unwrap_or("_id_"));
                norm.insert("unique", true);
                options.insert("clusteredIndex", norm);
            }
            _ => {}
        }
        if options.get("capped").is_some_and(truthy) {
            let size = options.get("size").and_then(as_f64);
            if size.is_none() {
                return Err(errors::invalid_options(
                    "the 'size' field is required when 'capped' is true",
                ));
            }
            coll.capped = Some(CappedLimits {
                size: size.map(|s| s.max(0.0) as u64),
                max: options
                    .get("max")
                    .and_then(as_f64)
                    .map(|m| m.max(0.0) as u64),
            });
        }
        self.apply_validator(&mut coll, &options)?;
        let id_spec = if coll.clustered {
            let ix_name = options
                .get_document("clusteredIndex")
                .ok()
                .and_then(|ci| ci.get_str("name").ok())
                .unwrap_or("_id_");
            let mut s = doc! {"v": 2, "key": {"_id": 1}, "name": ix_name, "unique": true};
            if let Some(c) = &collation {
                s.insert("collation", c.clone());
            }
            s.insert("clustered", true);
            s
        } else {
            match &spec.id_index {
                Some(given) => {
                    let mut s = doc! {"v": given.get("v").cloned().unwrap_or(Bson::Int32(2)), "key": {"_id": 1}, "name": "_id_"};
                    for (k, v) in given {
                        if !matches!(k.as_str(), "v" | "key" | "name" | "ns") {
                            s.insert(k.clone(), v.clone());
                        }
                    }
                    if let Ok(c) = s.get_document("collation").cloned() {
                        match full_collation(&c)? {
                            Some(f) => {
                                s.insert("collation", f);
                            }
                            None => {
                                s.remove("collation");
                            }
                        }
                    } else if let Some(c) = &collation {
                        s.insert("collation", c.clone());
                    }
                    s
                }
                None => id_index_spec(collation.as_ref()),
            }
        };
        let mut id_ix = Index::new(id_spec.clone())?;
        id_ix.unique = false;
        coll.indexes.push(id_ix);
        coll.options = options.clone();
        let r = self.insert_into_catalog(db, name, coll)?;

        let mut o = doc! {"create": name};
        for (k, v) in &options {
            o.insert(k.clone(), v.clone());
        }
        if !r.read().map(|c| c.clustered).unwrap_or(false) {
            o.insert("idIndex", id_spec);
        }
        self.log_ops(vec![OpEntry::command(db, Some(uuid), o, None)]);
        Ok(r)
    }

    pub(super) fn apply_validator(
        &self,
        coll: &mut Collection,
        options: &Document,
    ) -> Result<(), CommandError> {
        coll.validator = match options.get_document("validator") {
            Ok(v) if !v.is_empty() => Some(Expr::parse(v)?),
            _ => None,
        };
        coll.validation_warn_only = options.get_str("validationAction") == Ok("warn");
        coll.validation_moderate = options.get_str("validationLevel") == Ok("moderate");
        if options.get_str("validationLevel") == Ok("off") {
            coll.validator = None;
        }
        Ok(())
    }

    fn create_view(
        &self,
        db: &str,
        name: &str,
        view_on: Bson,
        options: Document,
    ) -> Result<CollRef, CommandError> {
        let Bson::String(view_on) = view_on else {
            return Err(errors::type_mismatch("'viewOn' must be a string"));
        };
        let pipeline: Vec<Document> = match options.get("pipeline") {
            Some(Bson::Array(a)) => a
                .iter()
                .map(|s| match s {
                    Bson::Document(d) => Ok(d.clone()),
                    _ => Err(errors::type_mismatch(
                        "Each element of the 'pipeline' array must be an object",
                    )),
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
            Some(_) => return Err(errors::type_mismatch("'pipeline' must be an array")),
        };
        let mut opts = doc! {"viewOn": view_on.as_str(), "pipeline": pipeline.clone()};
        if let Ok(c) = options.get_document("collation") {
            opts.insert("collation", c.clone());
        }
        let coll = Collection::new(
            [0; 16],
            Kind::View {
                view_on: view_on.clone(),
                pipeline: pipeline.clone(),
            },
            opts.clone(),
        );
        let r = self.insert_into_catalog(db, name, coll)?;
        // mongod keeps view definitions as documents of `<db>.system.views`.
        let (views, _) = self.coll_or_create(db, "system.views")?;
        let mut vdoc =
            doc! {"_id": format!("{db}.{name}"), "viewOn": view_on.as_str(), "pipeline": pipeline};
        if let Ok(c) = opts.get_document("collation") {
            vdoc.insert("collation", c.clone());
        }
        if let Ok(mut v) = views.write() {
            let _ = v.insert(super::reply::raw(&vdoc));
        }
        let mut o = doc! {"create": name};
        for (k, v) in &opts {
            o.insert(k.clone(), v.clone());
        }
        self.log_ops(vec![OpEntry::command(db, None, o, None)]);
        Ok(r)
    }

    fn create_timeseries(
        &self,
        db: &str,
        name: &str,
        ts: &Document,
        options: Document,
        uuid: Option<[u8; 16]>,
    ) -> Result<CollRef, CommandError> {
        let norm = normalise_timeseries(ts)?;
        // mongod lists a time-series with its buckets' options in `CollectionOptions`
        // order: expireAfterSeconds comes before timeseries.
        let mut logical = Document::new();
        let mut buckets = doc! {
            "validator": buckets_validator(norm.get_str("timeField").unwrap_or("t")),
            "clusteredIndex": true,
        };
        if let Some(e) = options.get("expireAfterSeconds") {
            logical.insert("expireAfterSeconds", e.clone());
            buckets.insert("expireAfterSeconds", e.clone());
        }
        logical.insert("timeseries", norm.clone());
        buckets.insert("timeseries", norm.clone());
        let bname = format!("system.buckets.{name}");
        if self.coll(db, &bname).is_some() {
            return Err(errors::namespace_exists(&format!("{db}.{bname}")));
        }
        let uuid = uuid.unwrap_or_else(new_uuid);
        let mut bcoll = Collection::new(uuid, Kind::Collection, buckets.clone());
        bcoll.clustered = true;
        let mut id_ix = Index::new(
            doc! {"v": 2, "key": {"_id": 1}, "name": "_id_", "unique": true, "clustered": true},
        )?;
        id_ix.unique = false;
        bcoll.indexes.push(id_ix);
        self.insert_into_catalog(db, &bname, bcoll)?;
        let mut lcoll = Collection::new(uuid, Kind::Timeseries, logical.clone());
        if let Ok(meta) = norm.get_str("metaField") {
            // mongod 7.0 builds a default {meta, time} index when a metaField is given; the
            // logical collection lists it in user terms, the buckets in bucket terms.
            let time = norm.get_str("timeField").unwrap_or("t").to_string();
            let ixname = format!("{meta}_1_{time}_1");
            lcoll.indexes.push(Index::new(
                doc! {"v": 2, "key": {meta: 1, time.as_str(): 1}, "name": ixname.as_str()},
            )?);
            if let Some(b) = self.coll(db, &bname) {
                if let Ok(mut b) = b.write() {
                    let spec = doc! {"v": 2, "key": {"meta": 1, format!("control.min.{time}"): 1, format!("control.max.{time}"): 1}, "name": ixname};
                    let _ = b.add_index(Index::new(spec)?);
                }
            }
        }
        let r = self.insert_into_catalog(db, name, lcoll)?;
        let mut o = doc! {"create": name};
        for (k, v) in &logical {
            o.insert(k.clone(), v.clone());
        }
        self.log_ops(vec![OpEntry::command(db, Some(uuid), o, None)]);
        Ok(r)
    }

    /// Removes a namespace; open cursors on it fail on their next getMore. Returns the
    /// number of documents it held.
    pub(super) fn drop_collection(
        &self,
        db: &str,
        name: &str,
        log: bool,
    ) -> Result<usize, CommandError> {
        let removed = {
            let mut cat = self.catalog.write().map_err(|_| {
                errors::illegal_operation("catalog lock poisoned; restart the server")
            })?;
            let Some(m) = cat.dbs.get_mut(db) else {
                return Err(errors::ns_not_found());
            };
            let Some(c) = m.remove(name) else {
                return Err(errors::ns_not_found());
            };
            let buckets = m.remove(&format!("system.buckets.{name}"));
            if m.is_empty() {
                cat.dbs.remove(db);
            }
            (c, buckets)
        };
        let (coll, buckets) = removed;
        let mut n = 0;
        let mut uuid = None;
        let mut is_view = false;
        for c in std::iter::once(&coll).chain(buckets.iter()) {
            if let Ok(mut g) = c.write() {
                g.dropped = true;
                n += g.len();
                uuid = Some(g.uuid);
                is_view |= matches!(g.kind, Kind::View { .. });
                g.inserted.notify_waiters();
            }
        }
        if is_view {
            if let Some(v) = self.coll(db, "system.views") {
                if let Ok(mut v) = v.write() {
                    if let Some(rid) = v.find_id(&Bson::String(format!("{db}.{name}"))) {
                        v.remove(rid);
                    }
                }
            }
            uuid = None;
        }
        if log {
            self.log_ops(vec![OpEntry::command(
                db,
                uuid,
                doc! {"drop": name},
                Some(doc! {"numRecords": n as i64}),
            )]);
        }
        Ok(n)
    }

    /// Collections every fresh mongod has.
    pub(super) fn bootstrap(&self) {
        if let Ok((v, _)) = self.coll_or_create("admin", "system.version") {
            if let Ok(mut v) = v.write() {
                let _ = v.insert(super::reply::raw(
                    &doc! {"_id": "featureCompatibilityVersion", "version": "7.0"},
                ));
            }
        }
        if self.oplog.enabled() {
            let mut oplog = Collection::new(
                new_uuid(),
                Kind::Collection,
                doc! {"capped": true, "size": 1_073_741_824_i64, "autoIndexId": false},
            );
            oplog.capped = Some(CappedLimits::default());
            oplog.id_indexed = false;
            if let Ok(r) = self.insert_into_catalog("local", "oplog.rs", oplog) {
                self.oplog.attach(r);
            }
            if let Ok((r, _)) = self.coll_or_create("local", "system.replset") {
                if let Ok(mut c) = r.write() {
                    let name = self.config.replica_set.clone().unwrap_or_default();
                    let _ = c.insert(super::reply::raw(&doc! {"_id": name, "version": 1, "term": 1_i64, "members": [{"_id": 0, "host": "127.0.0.1:27017"}]}));
                }
            }
            self.log_ops(vec![OpEntry::noop(doc! {"msg": "initiating set"})]);
        }
    }
}
