//! mongod's built-in roles as privileges (actions on resource patterns), and the check
//! whether a set of roles grants one action on one resource. User-defined roles
//! (`admin.system.roles`) grant nothing here.

use bson::{RawBsonRef, RawDocument};

/// A role held by a user: `{role, db}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleRef {
    pub role: String,
    pub db: String,
}

impl RoleRef {
    pub fn new(role: impl Into<String>, db: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            db: db.into(),
        }
    }

    /// `role@db`, or `role` alone for one on admin.
    pub fn parse(text: &str) -> Option<Self> {
        let (role, db) = text.split_once('@').unwrap_or((text, "admin"));
        (!role.is_empty() && !db.is_empty()).then(|| Self::new(role, db))
    }
}

/// The `roles` array of a stored user document.
pub fn roles_of(doc: &RawDocument) -> Vec<RoleRef> {
    let Ok(roles) = doc.get_array("roles") else {
        return Vec::new();
    };
    roles
        .into_iter()
        .filter_map(|r| match r.ok()? {
            RawBsonRef::Document(d) => {
                Some(RoleRef::new(d.get_str("role").ok()?, d.get_str("db").ok()?))
            }
            _ => None,
        })
        .collect()
}

/// What a command needs a privilege on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Cluster,
    /// The database itself (`{db, collection: ""}`).
    Database(String),
    Collection(String, String),
    /// Every non-system collection of every database, as one resource (what
    /// `_mergeAuthzCollections` asks for).
    AnyNormal,
}

impl Resource {
    pub fn db(&self) -> Option<&str> {
        match self {
            Resource::Database(db) | Resource::Collection(db, _) => Some(db),
            Resource::Cluster | Resource::AnyNormal => None,
        }
    }
}

/// mongod's system collections: `<db>.system.*` and `local.replset.*`.
fn is_system(db: &str, coll: &str) -> bool {
    coll.starts_with("system.") || (db == "local" && coll.starts_with("replset."))
}

/// A resource pattern of a privilege.
#[derive(Debug, Clone, Copy)]
enum Pattern<'a> {
    Cluster,
    /// `{db, collection: ""}`: the database and its non-system collections.
    Db(&'a str),
    /// `{db: "", collection: ""}`: every database and non-system collection.
    AnyNormal,
    /// `{db, collection}` for one (system) collection.
    Exact(&'a str, &'a str),
    /// `{db: "", collection}`: a collection of that name in any database.
    InAnyDb(&'a str),
    /// `{db, system_buckets: ""}` (5.0+): a time-series collection's buckets, in that
    /// database or, with `None`, in any.
    Buckets(Option<&'a str>),
    /// `{anyResource: true}`.
    Any,
}

impl Pattern<'_> {
    fn covers(self, r: &Resource) -> bool {
        match (self, r) {
            (Pattern::Any, _) => true,
            (Pattern::Cluster, Resource::Cluster) => true,
            (Pattern::AnyNormal, Resource::AnyNormal | Resource::Database(_)) => true,
            (Pattern::AnyNormal, Resource::Collection(db, c)) => !is_system(db, c),
            (Pattern::Db(d), Resource::Database(db)) => d == db,
            (Pattern::Db(d), Resource::Collection(db, c)) => d == db && !is_system(db, c),
            (Pattern::Exact(d, n), Resource::Collection(db, c)) => d == db && n == c,
            (Pattern::InAnyDb(n), Resource::Collection(_, c)) => n == c,
            (Pattern::Buckets(d), Resource::Collection(db, c)) => {
                c.starts_with("system.buckets.") && d.is_none_or(|d| d == db)
            }
            _ => false,
        }
    }
}

const READ: &[&str] = &[
    "changeStream",
    "collStats",
    "dbHash",
    "dbStats",
    "find",
    "killCursors",
    "listCollections",
    "listIndexes",
    "listSearchIndexes",
    "planCacheRead",
];

const WRITE: &[&str] = &[
    "convertToCapped",
    "createCollection",
    "createIndex",
    "dropCollection",
    "dropIndex",
    "insert",
    "remove",
    "renameCollectionSameDB",
    "update",
];

const DB_ADMIN: &[&str] = &[
    "bypassDocumentValidation",
    "collMod",
    "collStats",
    "compact",
    "convertToCapped",
    "createCollection",
    "createIndex",
    "dbStats",
    "dropCollection",
    "dropDatabase",
    "dropIndex",
    "enableProfiler",
    "listCollections",
    "listIndexes",
    "planCacheIndexFilter",
    "planCacheRead",
    "planCacheWrite",
    "reIndex",
    "renameCollectionSameDB",
    "storageDetails",
    "validate",
];

/// dbAdmin's extra rights on `system.profile`.
const PROFILE: &[&str] = &[
    "changeStream",
    "collStats",
    "convertToCapped",
    "createCollection",
    "dbHash",
    "dbStats",
    "dropCollection",
    "find",
    "killCursors",
    "listCollections",
    "listIndexes",
    "planCacheRead",
];

const USER_ADMIN: &[&str] = &[
    "changeCustomData",
    "changePassword",
    "createRole",
    "createUser",
    "dropRole",
    "dropUser",
    "grantRole",
    "revokeRole",
    "setAuthenticationRestriction",
    "viewRole",
    "viewUser",
];

const AUTHZ_READ: &[&str] = &[
    "collStats",
    "dbHash",
    "dbStats",
    "find",
    "killCursors",
    "planCacheRead",
];

const CLUSTER_MONITOR: &[&str] = &[
    "checkFreeMonitoringStatus",
    "connPoolStats",
    "getCmdLineOpts",
    "getDefaultRWConcern",
    "getLog",
    "getParameter",
    "getShardMap",
    "hostInfo",
    "inprog",
    "listDatabases",
    "listSessions",
    "netstat",
    "replSetGetConfig",
    "replSetGetStatus",
    "serverStatus",
    "top",
];

const BACKUP_CLUSTER: &[&str] = &[
    "appendOplogNote",
    "bypassWriteBlockingMode",
    "getParameter",
    "listDatabases",
    "serverStatus",
    "setUserWriteBlockMode",
];

const BACKUP_DATA: &[&str] = &[
    "collStats",
    "dbStats",
    "find",
    "listCollections",
    "listIndexes",
    "listSearchIndexes",
];

const RESTORE_DATA: &[&str] = &[
    "bypassDocumentValidation",
    "changeCustomData",
    "changePassword",
    "collMod",
    "convertToCapped",
    "createCollection",
    "createIndex",
    "createRole",
    "createUser",
    "dropCollection",
    "dropRole",
    "dropUser",
    "grantRole",
    "insert",
    "listCollections",
    "revokeRole",
    "viewRole",
    "viewUser",
];

const RESTORE_AUTHZ: &[&str] = &[
    "collStats",
    "createCollection",
    "createIndex",
    "dropCollection",
    "dropIndex",
    "find",
    "insert",
    "remove",
    "update",
];

const ALL: &[&str] = &["*"];

type Grant<'a> = (Pattern<'a>, &'static [&'static str]);

/// The privileges of one built-in role held on `db` (`None`: not a built-in role, or one
/// that only exists on admin held elsewhere).
fn privileges<'a>(role: &str, db: &'a str) -> Option<Vec<Grant<'a>>> {
    let on_admin = db == "admin";
    let p = match (role, on_admin) {
        ("read", _) => return Some(read_write(db, false)),
        ("readWrite", _) => return Some(read_write(db, true)),
        ("dbAdmin", _) => return Some(db_admin(db)),
        ("userAdmin", _) => return Some(user_admin(db)),
        ("dbOwner", _) => {
            let mut v = read_write(db, true);
            v.extend(db_admin(db));
            v.extend(user_admin(db));
            return Some(v);
        }
        ("readAnyDatabase", true) => vec![
            (Pattern::AnyNormal, READ),
            (Pattern::InAnyDb("system.js"), READ),
            (Pattern::Buckets(None), READ),
            (Pattern::Cluster, &["listDatabases"][..]),
        ],
        ("readWriteAnyDatabase", true) => vec![
            (Pattern::AnyNormal, READ),
            (Pattern::AnyNormal, WRITE),
            (Pattern::InAnyDb("system.js"), READ),
            (Pattern::InAnyDb("system.js"), WRITE),
            (Pattern::Buckets(None), READ),
            (Pattern::Buckets(None), WRITE),
            (Pattern::Cluster, &["listDatabases"][..]),
        ],
        ("dbAdminAnyDatabase", true) => vec![
            (Pattern::AnyNormal, DB_ADMIN),
            (Pattern::InAnyDb("system.profile"), PROFILE),
            (Pattern::Cluster, &["listDatabases"][..]),
        ],
        ("userAdminAnyDatabase", true) => vec![
            (Pattern::AnyNormal, USER_ADMIN),
            (
                Pattern::Cluster,
                &["authSchemaUpgrade", "invalidateUserCache", "listDatabases"][..],
            ),
            (Pattern::Exact("admin", "system.users"), AUTHZ_READ),
            (
                Pattern::Exact("admin", "system.users"),
                &["createIndex", "dropIndex"][..],
            ),
            (Pattern::Exact("admin", "system.roles"), AUTHZ_READ),
            (
                Pattern::Exact("admin", "system.roles"),
                &["createIndex", "dropIndex"][..],
            ),
            (Pattern::Exact("admin", "system.version"), AUTHZ_READ),
        ],
        ("clusterMonitor", true) => vec![
            (Pattern::Cluster, CLUSTER_MONITOR),
            (
                Pattern::AnyNormal,
                &["collStats", "dbStats", "getShardVersion", "indexStats"][..],
            ),
            (Pattern::Exact("local", "system.replset"), &["find"][..]),
            (Pattern::InAnyDb("system.profile"), &["find"][..]),
        ],
        ("backup", true) => vec![
            (Pattern::Cluster, BACKUP_CLUSTER),
            (Pattern::AnyNormal, BACKUP_DATA),
            (
                Pattern::Any,
                &["listCollections", "listIndexes", "listSearchIndexes"][..],
            ),
            (Pattern::InAnyDb("system.js"), &["find"][..]),
            (Pattern::InAnyDb("system.profile"), &["find"][..]),
            // Time-series collections keep their documents in system.buckets.<name>.
            (Pattern::Buckets(None), &["find"][..]),
            (Pattern::Exact("admin", "system.users"), &["find"][..]),
            (Pattern::Exact("admin", "system.roles"), &["find"][..]),
            (Pattern::Exact("admin", "system.version"), &["find"][..]),
            (Pattern::Exact("local", "system.replset"), &["find"][..]),
            (
                Pattern::Exact("config", "settings"),
                &["find", "insert", "update"][..],
            ),
        ],
        ("restore", true) => vec![
            (Pattern::Cluster, &["getParameter"][..]),
            (Pattern::AnyNormal, RESTORE_DATA),
            (Pattern::Buckets(None), RESTORE_DATA),
            (Pattern::InAnyDb("system.js"), RESTORE_DATA),
            (
                Pattern::InAnyDb("system.js"),
                &["find", "remove", "update"][..],
            ),
            (Pattern::Exact("admin", "system.users"), RESTORE_AUTHZ),
            (Pattern::Exact("admin", "system.roles"), RESTORE_AUTHZ),
            (Pattern::Exact("admin", "system.version"), RESTORE_AUTHZ),
            (
                Pattern::Exact("config", "settings"),
                &["find", "insert", "update"][..],
            ),
        ],
        // root's roles together (readWriteAnyDatabase, dbAdminAnyDatabase,
        // userAdminAnyDatabase, clusterAdmin, backup, restore) leave out hardly anything a
        // client can send; treated as everything.
        ("root" | "__system", true) => vec![(Pattern::Any, ALL)],
        ("clusterAdmin", true) => vec![
            (Pattern::Cluster, ALL),
            (
                Pattern::AnyNormal,
                &["collStats", "dbStats", "dropDatabase", "indexStats"][..],
            ),
        ],
        _ => return None,
    };
    Some(p)
}

fn read_write(db: &str, write: bool) -> Vec<Grant<'_>> {
    let mut v = vec![
        (Pattern::Db(db), READ),
        (Pattern::Exact(db, "system.js"), READ),
        (Pattern::Buckets(Some(db)), READ),
    ];
    if write {
        v.push((Pattern::Db(db), WRITE));
        v.push((Pattern::Exact(db, "system.js"), WRITE));
        v.push((Pattern::Buckets(Some(db)), WRITE));
    }
    v
}

fn db_admin(db: &str) -> Vec<Grant<'_>> {
    vec![
        (Pattern::Db(db), DB_ADMIN),
        (Pattern::Exact(db, "system.profile"), PROFILE),
    ]
}

fn user_admin(db: &str) -> Vec<Grant<'_>> {
    vec![(Pattern::Db(db), USER_ADMIN)]
}

/// Whether `role` is one of the built-in roles modelled here.
pub fn is_builtin(role: &str) -> bool {
    privileges(role, "admin").is_some()
}

/// Whether `roles` grant `action` on `resource`.
pub fn allows(roles: &[RoleRef], action: &str, resource: &Resource) -> bool {
    roles.iter().any(|r| {
        privileges(&r.role, &r.db).is_some_and(|grants| {
            grants.iter().any(|(pattern, actions)| {
                (actions.contains(&action) || actions.contains(&"*")) && pattern.covers(resource)
            })
        })
    })
}

/// Whether `roles` grant anything at all on database `db` (what `listDatabases` without
/// the listDatabases action shows, as `authorizedDatabases` does on mongod).
pub fn has_any_on_db(roles: &[RoleRef], db: &str) -> bool {
    roles.iter().any(|r| {
        privileges(&r.role, &r.db).is_some_and(|grants| {
            grants.iter().any(|(pattern, _)| match pattern {
                Pattern::Any | Pattern::AnyNormal => true,
                Pattern::Db(d) | Pattern::Exact(d, _) | Pattern::Buckets(Some(d)) => *d == db,
                Pattern::InAnyDb(_) | Pattern::Cluster | Pattern::Buckets(None) => false,
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coll(db: &str, c: &str) -> Resource {
        Resource::Collection(db.into(), c.into())
    }

    #[test]
    fn per_db_roles_stop_at_their_database_and_at_system_collections() {
        let read = [RoleRef::new("read", "app")];
        assert!(allows(&read, "find", &coll("app", "c")));
        assert!(!allows(&read, "find", &coll("other", "c")));
        assert!(!allows(&read, "insert", &coll("app", "c")));
        assert!(!allows(&read, "find", &coll("app", "system.profile")));
        assert!(allows(
            &read,
            "listCollections",
            &Resource::Database("app".into())
        ));
        let rw = [RoleRef::new("readWrite", "app")];
        assert!(allows(&rw, "insert", &coll("app", "c")));
        assert!(!allows(
            &rw,
            "createUser",
            &Resource::Database("app".into())
        ));
    }

    #[test]
    fn any_database_roles_only_count_on_admin() {
        let backup = [RoleRef::new("backup", "admin")];
        assert!(allows(&backup, "find", &coll("x", "y")));
        assert!(allows(&backup, "find", &coll("admin", "system.users")));
        assert!(allows(
            &backup,
            "find",
            &coll("metrics", "system.buckets.cpu")
        ));
        assert!(allows(
            &[RoleRef::new("read", "metrics")],
            "find",
            &coll("metrics", "system.buckets.cpu")
        ));
        assert!(!allows(
            &[RoleRef::new("read", "metrics")],
            "find",
            &coll("other", "system.buckets.cpu")
        ));
        assert!(!allows(&backup, "insert", &coll("x", "y")));
        assert!(!allows(
            &[RoleRef::new("backup", "app")],
            "find",
            &coll("x", "y")
        ));
        let restore = [RoleRef::new("restore", "admin")];
        assert!(allows(&restore, "insert", &coll("admin", "system.users")));
        assert!(allows(&restore, "createUser", &Resource::AnyNormal));
        assert!(!allows(&restore, "find", &coll("x", "y")));
        let root = [RoleRef::new("root", "admin")];
        assert!(allows(&root, "anything", &Resource::Cluster));
    }

    #[test]
    fn role_names_parse_with_admin_as_default() {
        assert_eq!(
            RoleRef::parse("read@app"),
            Some(RoleRef::new("read", "app"))
        );
        assert_eq!(RoleRef::parse("root"), Some(RoleRef::new("root", "admin")));
        assert_eq!(RoleRef::parse("@app"), None);
    }
}
