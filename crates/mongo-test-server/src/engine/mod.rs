//! The data side of the server: catalog, documents, cursors, oplog. It knows nothing of
//! sockets; the connection layer hands it one merged command at a time.
//!
//! Locking: the catalog (names → collections) sits behind one short-lived lock; each
//! collection has its own `RwLock`, so readers of different (or the same) collections run
//! concurrently and a writer blocks only its own collection. No lock is held across an
//! `.await`.

mod aggregate;
mod apply_ops;
mod catalog;
mod catalog_cmds;
// Write failures are rare and consumed at once; boxing them would only add noise.
#[allow(clippy::result_large_err)]
mod collection;
mod cursor;
mod errors;
mod filter;
mod oplog;
mod projection;
mod read_cmds;
mod reply;
mod timeseries;
mod update;
mod value;
#[allow(clippy::result_large_err)]
mod write_cmds;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bson::{Bson, Document, RawDocument, RawDocumentBuf, Timestamp};

use crate::error::CommandError;

pub use oplog::OplogLimits;

use catalog::Catalog;
use cursor::Cursor;

/// How the engine is set up at start.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// `Some(name)` records every write in `local.oplog.rs` (replica-set mode).
    pub replica_set: Option<String>,
}

/// All databases of one server instance. Shared by every connection of that instance.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    catalog: RwLock<Catalog>,
    cursors: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Cursor>>>>,
    cursor_seq: AtomicU64,
    oplog: oplog::Oplog,
}

/// Fields any command may carry that say nothing about the command itself.
const GENERIC_FIELDS: &[&str] = &[
    "$db",
    "lsid",
    "txnNumber",
    "$clusterTime",
    "$readPreference",
    "readConcern",
    "writeConcern",
    "maxTimeMS",
    "comment",
    "apiVersion",
    "apiStrict",
    "apiDeprecationErrors",
    "autocommit",
    "startTransaction",
    "stmtId",
    "$audit",
    "$client",
    "mayBypassWriteBlocking",
];

fn is_generic(k: &str) -> bool {
    GENERIC_FIELDS.contains(&k)
}

impl Engine {
    pub fn new(config: EngineConfig) -> Arc<Self> {
        let engine = Self {
            catalog: RwLock::new(Catalog::default()),
            cursors: Mutex::new(HashMap::new()),
            cursor_seq: AtomicU64::new(0),
            oplog: oplog::Oplog::new(config.replica_set.is_some()),
            config,
        };
        engine.bootstrap();
        Arc::new(engine)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Runs one data command against database `db`. `cmd` is the OP_MSG body with any
    /// document sequences already merged in (`$db` and the generic fields such as `lsid`
    /// may still be present and are ignored). `Ok` is the whole reply, `ok: 1.0` included.
    pub async fn execute(
        &self,
        db: &str,
        cmd: &RawDocument,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name = match cmd.into_iter().next() {
            Some(Ok((k, _))) => k.to_string(),
            _ => return Err(errors::failed_to_parse("empty command document")),
        };
        match name.as_str() {
            "insert" => self.cmd_insert(db, cmd),
            "getMore" => self.cmd_get_more(db, &doc(cmd)).await,
            "find" => self.cmd_find(db, &doc(cmd)),
            other => {
                let c = doc(cmd);
                match other {
                    "update" => self.cmd_update(db, &c),
                    "delete" => self.cmd_delete(db, &c),
                    "findAndModify" | "findandmodify" => self.cmd_find_and_modify(db, &c),
                    "killCursors" => self.cmd_kill_cursors(db, &c),
                    "aggregate" => self.cmd_aggregate(db, &c),
                    "count" => self.cmd_count(db, &c),
                    "distinct" => self.cmd_distinct(db, &c),
                    "create" => self.cmd_create(db, &c),
                    "drop" => self.cmd_drop(db, &c),
                    "dropDatabase" => self.cmd_drop_database(db),
                    "listDatabases" => self.cmd_list_databases(db, &c),
                    "listCollections" => self.cmd_list_collections(db, &c),
                    "listIndexes" => self.cmd_list_indexes(db, &c),
                    "createIndexes" => self.cmd_create_indexes(db, &c),
                    "dropIndexes" | "deleteIndexes" => self.cmd_drop_indexes(db, &c),
                    "collMod" => self.cmd_coll_mod(db, &c),
                    "collStats" => self.cmd_coll_stats(db, &c),
                    "dbStats" => self.cmd_db_stats(db, &c),
                    "renameCollection" => self.cmd_rename_collection(db, &c),
                    "applyOps" => self.cmd_apply_ops(db, &c),
                    "_mergeAuthzCollections" => self.cmd_merge_authz(db, &c),
                    "createUser" => self.cmd_create_user(db, &c),
                    "dropUser" => self.cmd_drop_user(db, &c),
                    _ => Err(CommandError::command_not_found(other)),
                }
            }
        }
    }

    /// The newest oplog optime's timestamp (replica-set mode), for `$clusterTime` and
    /// `operationTime`. `None` on a standalone.
    pub fn last_optime(&self) -> Option<Timestamp> {
        self.oplog_bounds().map(|(_, last)| last)
    }

    /// Timestamps of the oldest and newest entries of `local.oplog.rs` (replica-set mode),
    /// for replSetGetStatus and for oplog-window checks.
    pub fn oplog_bounds(&self) -> Option<(Timestamp, Timestamp)> {
        let coll = self.oplog.collection()?;
        let c = coll.read().ok()?;
        let ts = |rid: Option<u64>| {
            rid.and_then(|r| c.get(r))
                .and_then(|d| d.get_timestamp("ts").ok())
        };
        Some((ts(c.first_record())?, ts(c.last_record())?))
    }

    /// Caps `local.oplog.rs` (replica-set mode) so that the oldest entries roll off, as
    /// `replSetResizeOplog` does on mongod. Tailable cursors that fall behind then fail
    /// with CappedPositionLost.
    pub fn set_oplog_limits(&self, limits: OplogLimits) {
        if let Some(coll) = self.oplog.collection() {
            if let Ok(mut c) = coll.write() {
                c.set_capped(collection::CappedLimits {
                    size: limits.max_bytes,
                    max: limits.max_entries,
                });
            }
        }
    }

    fn next_cursor_id(&self) -> i64 {
        // Spread ids over the positive int64 range, as mongod's random ids are.
        let n = self.cursor_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0x3FFF_FFFF_FFFF_FFFF;
        (mixed.max(1)) as i64
    }
}

/// The command as an owned document, for the commands whose bodies are small.
fn doc(cmd: &RawDocument) -> Document {
    value::to_document(cmd)
}

/// The collection name a command names in its first field.
fn target_name(cmd: &Document, cmd_name: &str) -> Result<String, CommandError> {
    match cmd.get(cmd_name) {
        Some(Bson::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Bson::String(_)) => Err(errors::invalid_namespace(format!(
            "Invalid namespace specified '{cmd_name}'"
        ))),
        Some(other) => Err(errors::invalid_namespace(format!(
            "collection name has invalid type {}",
            type_name(other)
        ))),
        None => Err(errors::failed_to_parse(format!("missing {cmd_name}"))),
    }
}

/// mongod's name for a BSON type, as it appears in error messages.
pub(crate) fn type_name(v: &Bson) -> &'static str {
    match v {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        Bson::Binary(_) => "binData",
        Bson::Undefined => "undefined",
        Bson::ObjectId(_) => "objectId",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::Null => "null",
        Bson::RegularExpression(_) => "regex",
        Bson::DbPointer(_) => "dbPointer",
        Bson::JavaScriptCode(_) => "javascript",
        Bson::Symbol(_) => "symbol",
        Bson::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        Bson::Int32(_) => "int",
        Bson::Timestamp(_) => "timestamp",
        Bson::Int64(_) => "long",
        Bson::Decimal128(_) => "decimal",
        Bson::MinKey => "minKey",
        Bson::MaxKey => "maxKey",
    }
}

fn get_bool(cmd: &Document, key: &str) -> bool {
    cmd.get(key).is_some_and(value::truthy)
}

fn get_i64(cmd: &Document, key: &str) -> Option<i64> {
    cmd.get(key).and_then(value::as_f64).map(|f| f as i64)
}

#[cfg(test)]
mod tests;
