//! Namespaces as the archive names them: a database and a collection, with the oplog spelled
//! as database `""`, collection `"oplog"`.

use std::fmt;

/// A `(db, collection)` pair. Displays as `db.collection`; the oplog displays as `.oplog`,
/// which is how mongo-tools name it internally.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace {
    pub db: String,
    pub collection: String,
}

/// Prefix of the collection that carries a time-series collection's buckets.
pub const BUCKETS_PREFIX: &str = "system.buckets.";

impl Namespace {
    pub fn new(db: impl Into<String>, collection: impl Into<String>) -> Self {
        Self {
            db: db.into(),
            collection: collection.into(),
        }
    }

    /// The namespace mongodump uses for oplog entries taken with `--oplog`.
    pub fn oplog() -> Self {
        Self::new("", "oplog")
    }

    pub fn is_oplog(&self) -> bool {
        self.db.is_empty() && self.collection == "oplog"
    }

    /// Splits `db.collection` at the first dot, as MongoDB does (database names hold no dots).
    pub fn parse(full: &str) -> Option<Self> {
        let (db, collection) = full.split_once('.')?;
        if collection.is_empty() {
            return None;
        }
        Some(Self::new(db, collection))
    }

    /// The buckets namespace that holds this time-series collection's data (server < 8.3).
    pub fn buckets(&self) -> Self {
        Self::new(
            self.db.clone(),
            format!("{BUCKETS_PREFIX}{}", self.collection),
        )
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.collection)
    }
}

/// Checks the names mongorestore accepts, so a bad name fails the backup rather than the
/// restore.
pub(crate) fn validate(ns: &Namespace) -> Result<(), String> {
    if ns.collection.is_empty() {
        return Err("collection name is empty".into());
    }
    if ns.db.is_empty() {
        if ns.is_oplog() {
            return Ok(());
        }
        return Err(
            "database name is empty (only the oplog, collection \"oplog\", has no database)".into(),
        );
    }
    if ns.db.len() >= 64 {
        return Err("database name must be shorter than 64 bytes".into());
    }
    if let Some(c) = ns
        .db
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '\0' | '$'))
    {
        return Err(format!("database name contains {c:?}"));
    }
    if ns.collection.contains('\0') {
        return Err("collection name contains NUL".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse() {
        let ns = Namespace::new("test", "a.b.c");
        assert_eq!(ns.to_string(), "test.a.b.c");
        assert_eq!(Namespace::parse("test.a.b.c"), Some(ns));
        assert_eq!(Namespace::oplog().to_string(), ".oplog");
        assert_eq!(Namespace::parse("nodot"), None);
        assert_eq!(Namespace::parse("db."), None);
    }

    #[test]
    fn buckets_name() {
        assert_eq!(
            Namespace::new("m", "weather").buckets(),
            Namespace::new("m", "system.buckets.weather")
        );
    }

    #[test]
    fn validation_follows_restore_rules() {
        assert!(validate(&Namespace::new("test", "c")).is_ok());
        assert!(validate(&Namespace::oplog()).is_ok());
        assert!(validate(&Namespace::new("", "c")).is_err());
        assert!(validate(&Namespace::new("a.b", "c")).is_err());
        assert!(validate(&Namespace::new("a$b", "c")).is_err());
        assert!(validate(&Namespace::new("test", "")).is_err());
        assert!(validate(&Namespace::new("x".repeat(64), "c")).is_err());
        assert!(validate(&Namespace::new("x".repeat(63), "c")).is_ok());
    }
}
