//! Which privileges each command needs (mongod's `checkAuthForCommand`), and the verdict for
//! an authenticated user's roles.

use bson::{RawBsonRef, RawDocument};

use super::authz::{allows, Resource, RoleRef};
use super::shell;
use crate::error::CommandError;

/// The verdict on one command.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Allowed,
    /// `listDatabases` by a user without the listDatabases action: run it, then show only
    /// the databases the user has privileges on (mongod's `authorizedDatabases`).
    OnlyAuthorizedDatabases,
    Denied(CommandError),
}

/// One privilege needed: any of `actions` on `resource`.
#[derive(Debug)]
struct Need {
    resource: Resource,
    any_of: &'static [&'static str],
}

fn need(resource: Resource, any_of: &'static [&'static str]) -> Need {
    Need { resource, any_of }
}

/// Commands any authenticated user may run (cursor and session housekeeping; mongod ties
/// cursors to their owner, which the cursor's creation already checked).
const FREE: &[&str] = &[
    "getMore",
    "killCursors",
    "startSession",
    "refreshSessions",
    "endSessions",
    "killSessions",
    "killAllSessions",
    "killAllSessionsByPattern",
    "abortTransaction",
    "commitTransaction",
    "features",
    "listCommands",
    "getDefaultRWConcern",
    "getClusterParameter",
    "lockInfo",
    "dataSize",
    "connPoolSync",
];

pub fn authorize(roles: &[RoleRef], db: &str, name: &str, cmd: &RawDocument) -> Decision {
    if FREE.contains(&name) {
        return Decision::Allowed;
    }
    if name == "listDatabases" {
        if allows(roles, "listDatabases", &Resource::Cluster) {
            return Decision::Allowed;
        }
        let asked_all = matches!(
            cmd.get("authorizedDatabases"),
            Ok(Some(RawBsonRef::Boolean(false)))
        );
        return if asked_all {
            Decision::Denied(denied(db, name, cmd))
        } else {
            Decision::OnlyAuthorizedDatabases
        };
    }
    let granted = needs(db, name, cmd)
        .iter()
        .all(|n| n.any_of.iter().any(|a| allows(roles, a, &n.resource)));
    if granted {
        Decision::Allowed
    } else {
        Decision::Denied(denied(db, name, cmd))
    }
}

fn denied(db: &str, name: &str, cmd: &RawDocument) -> CommandError {
    CommandError::unauthorized(format!(
        "not authorized on {db} to execute command {}",
        shell::command(name, cmd)
    ))
}

fn coll(db: &str, cmd: &RawDocument, name: &str) -> Resource {
    match cmd.get_str(name) {
        Ok(c) => Resource::Collection(db.to_owned(), c.to_owned()),
        Err(_) => Resource::Database(db.to_owned()),
    }
}

fn split_ns(ns: &str) -> Resource {
    match ns.split_once('.') {
        Some((db, c)) => Resource::Collection(db.to_owned(), c.to_owned()),
        None => Resource::Database(ns.to_owned()),
    }
}

fn any_true(items: Option<&bson::RawArray>, key: &str) -> bool {
    items.is_some_and(|a| {
        a.into_iter().flatten().any(|item| {
            matches!(item, RawBsonRef::Document(d) if matches!(d.get(key), Ok(Some(RawBsonRef::Boolean(true)))))
        })
    })
}

fn needs(db: &str, name: &str, cmd: &RawDocument) -> Vec<Need> {
    let here = || coll(db, cmd, name);
    let database = || Resource::Database(db.to_owned());
    let cluster = |action: &'static [&'static str]| vec![need(Resource::Cluster, action)];
    match name {
        "find" | "count" | "distinct" => vec![need(here(), &["find"])],
        "aggregate" => aggregate(db, cmd),
        "insert" => vec![need(here(), &["insert"])],
        "update" => {
            let mut v = vec![need(here(), &["update"])];
            if any_true(cmd.get_array("updates").ok(), "upsert") {
                v.push(need(here(), &["insert"]));
            }
            v
        }
        "delete" => vec![need(here(), &["remove"])],
        "findAndModify" | "findandmodify" => {
            let flag = |k| matches!(cmd.get(k), Ok(Some(RawBsonRef::Boolean(true))));
            let mut v = vec![need(here(), &["find"])];
            if flag("remove") {
                v.push(need(here(), &["remove"]));
            } else {
                v.push(need(here(), &["update"]));
                if flag("upsert") {
                    v.push(need(here(), &["insert"]));
                }
            }
            v
        }
        // mongod lets either right create a collection, since inserting creates one anyway.
        "create" => {
            let mut v = vec![need(here(), &["createCollection", "insert"])];
            if let Ok(source) = cmd.get_str("viewOn") {
                v.push(need(
                    Resource::Collection(db.to_owned(), source.to_owned()),
                    &["find"],
                ));
            }
            v
        }
        "createIndexes" => vec![need(here(), &["createIndex"])],
        "drop" => vec![need(here(), &["dropCollection"])],
        "dropIndexes" | "deleteIndexes" => vec![need(here(), &["dropIndex"])],
        "dropDatabase" => vec![need(database(), &["dropDatabase"])],
        "listCollections" => vec![need(database(), &["listCollections"])],
        "listIndexes" => vec![need(here(), &["listIndexes"])],
        "collStats" => vec![need(here(), &["collStats"])],
        "dbStats" => vec![need(database(), &["dbStats"])],
        "dbHash" => vec![need(database(), &["dbHash"])],
        "collMod" => vec![need(here(), &["collMod"])],
        "convertToCapped" | "cloneCollectionAsCapped" => vec![need(here(), &["convertToCapped"])],
        "validate" => vec![need(here(), &["validate"])],
        "reIndex" => vec![need(here(), &["reIndex"])],
        "compact" => vec![need(here(), &["compact"])],
        "profile" => vec![need(database(), &["enableProfiler"])],
        "renameCollection" => rename(cmd),
        "applyOps" => apply_ops(cmd),
        "explain" => match cmd.get_document("explain") {
            Ok(inner) => match inner.into_iter().next() {
                Some(Ok((inner_name, _))) => needs(db, inner_name, inner),
                _ => vec![need(database(), &["find"])],
            },
            Err(_) => vec![need(database(), &["find"])],
        },
        "_mergeAuthzCollections" => {
            let dropping = matches!(cmd.get("drop"), Ok(Some(RawBsonRef::Boolean(true))));
            let mut v = vec![need(
                Resource::AnyNormal,
                &["createUser", "createRole", "grantRole", "revokeRole"],
            )];
            if dropping {
                v.push(need(Resource::AnyNormal, &["dropUser", "dropRole"]));
            }
            v
        }
        "createUser" => vec![need(database(), &["createUser"])],
        "dropUser" | "dropAllUsersFromDatabase" => vec![need(database(), &["dropUser"])],
        "updateUser" => vec![need(database(), &["changePassword", "changeCustomData"])],
        "grantRolesToUser" | "grantRolesToRole" | "grantPrivilegesToRole" => {
            vec![need(database(), &["grantRole"])]
        }
        "revokeRolesFromUser" | "revokeRolesFromRole" | "revokePrivilegesFromRole" => {
            vec![need(database(), &["revokeRole"])]
        }
        "usersInfo" => vec![need(database(), &["viewUser"])],
        "createRole" => vec![need(database(), &["createRole"])],
        "updateRole" => vec![need(database(), &["createRole", "grantRole"])],
        "dropRole" | "dropAllRolesFromDatabase" => vec![need(database(), &["dropRole"])],
        "rolesInfo" => vec![need(database(), &["viewRole"])],
        "invalidateUserCache" => cluster(&["invalidateUserCache"]),
        "serverStatus" => cluster(&["serverStatus"]),
        "getParameter" => cluster(&["getParameter"]),
        "setParameter" => cluster(&["setParameter"]),
        "getCmdLineOpts" => cluster(&["getCmdLineOpts"]),
        "getLog" => cluster(&["getLog"]),
        "clearLog" => cluster(&["clearLog"]),
        "hostInfo" => cluster(&["hostInfo"]),
        "top" => cluster(&["top"]),
        "currentOp" => cluster(&["inprog"]),
        "killOp" => cluster(&["killop"]),
        "replSetGetStatus" => cluster(&["replSetGetStatus"]),
        "replSetGetConfig" => cluster(&["replSetGetConfig"]),
        "appendOplogNote" => cluster(&["appendOplogNote"]),
        "connPoolStats" => cluster(&["connPoolStats"]),
        "fsync" | "fsyncUnlock" => cluster(&["fsync"]),
        "logRotate" => cluster(&["logRotate"]),
        "shutdown" => cluster(&["shutdown"]),
        "setDefaultRWConcern" => cluster(&["setDefaultRWConcern"]),
        "setFeatureCompatibilityVersion" => cluster(&["setFeatureCompatibilityVersion"]),
        // Anything else: administrative commands only root-like roles may run.
        _ => cluster(&["anyAction"]),
    }
}

fn aggregate(db: &str, cmd: &RawDocument) -> Vec<Need> {
    let source = coll(db, cmd, "aggregate");
    let mut v = vec![need(source, &["find"])];
    let Ok(pipeline) = cmd.get_array("pipeline") else {
        return v;
    };
    for stage in pipeline.into_iter().flatten() {
        let RawBsonRef::Document(stage) = stage else {
            continue;
        };
        let Some(Ok((op, spec))) = stage.into_iter().next() else {
            continue;
        };
        let target = match (op, spec) {
            ("$out", RawBsonRef::String(c)) => Resource::Collection(db.to_owned(), c.to_owned()),
            ("$out" | "$merge", RawBsonRef::Document(d)) => {
                let into = d
                    .get("into")
                    .ok()
                    .flatten()
                    .or(d.get("coll").ok().flatten());
                match into {
                    Some(RawBsonRef::String(c)) => {
                        Resource::Collection(d.get_str("db").unwrap_or(db).to_owned(), c.to_owned())
                    }
                    Some(RawBsonRef::Document(i)) => Resource::Collection(
                        i.get_str("db").unwrap_or(db).to_owned(),
                        i.get_str("coll").unwrap_or_default().to_owned(),
                    ),
                    _ => continue,
                }
            }
            ("$merge", RawBsonRef::String(c)) => Resource::Collection(db.to_owned(), c.to_owned()),
            ("$lookup" | "$graphLookup", RawBsonRef::Document(d)) => {
                if let Ok(from) = d.get_str("from") {
                    v.push(need(
                        Resource::Collection(db.to_owned(), from.to_owned()),
                        &["find"],
                    ));
                }
                continue;
            }
            _ => continue,
        };
        v.push(need(target.clone(), &["insert"]));
        v.push(need(target, &["remove"]));
    }
    v
}

fn rename(cmd: &RawDocument) -> Vec<Need> {
    let (Ok(from), Ok(to)) = (cmd.get_str("renameCollection"), cmd.get_str("to")) else {
        return vec![need(Resource::Cluster, &["anyAction"])];
    };
    let (source, target) = (split_ns(from), split_ns(to));
    let mut v = if source.db() == target.db() {
        vec![
            need(source, &["renameCollectionSameDB"]),
            need(target.clone(), &["renameCollectionSameDB"]),
        ]
    } else {
        vec![
            need(source.clone(), &["find"]),
            need(source, &["dropCollection"]),
            need(target.clone(), &["insert"]),
            need(target.clone(), &["createIndex"]),
        ]
    };
    if matches!(cmd.get("dropTarget"), Ok(Some(RawBsonRef::Boolean(true)))) {
        v.push(need(target, &["dropCollection"]));
    }
    v
}

/// applyOps is authorized op by op, as mongod does since 3.4: each CRUD op needs its write
/// action on its namespace, each command op what that command needs.
fn apply_ops(cmd: &RawDocument) -> Vec<Need> {
    let mut v = Vec::new();
    let Ok(ops) = cmd.get_array("applyOps") else {
        return v;
    };
    for op in ops.into_iter().flatten() {
        let RawBsonRef::Document(op) = op else {
            continue;
        };
        let ns = op.get_str("ns").unwrap_or_default();
        match op.get_str("op").unwrap_or_default() {
            "i" => v.push(need(split_ns(ns), &["insert"])),
            "u" => v.push(need(split_ns(ns), &["update"])),
            "d" => v.push(need(split_ns(ns), &["remove"])),
            "n" => v.push(need(Resource::Cluster, &["appendOplogNote"])),
            "c" => {
                let db = ns.split_once('.').map_or(ns, |(db, _)| db);
                match op.get_document("o").ok() {
                    Some(o) => match o.into_iter().next() {
                        Some(Ok((inner, _))) => v.extend(needs(db, inner, o)),
                        _ => v.push(need(Resource::Cluster, &["anyAction"])),
                    },
                    None => v.push(need(Resource::Cluster, &["anyAction"])),
                }
            }
            _ => v.push(need(Resource::Cluster, &["anyAction"])),
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn roles(spec: &[(&str, &str)]) -> Vec<RoleRef> {
        spec.iter().map(|(r, d)| RoleRef::new(*r, *d)).collect()
    }

    #[test]
    fn read_only_users_may_read_but_not_write() {
        let r = roles(&[("read", "app")]);
        let find = rawdoc! {"find": "c", "filter": {}, "$db": "app"};
        assert_eq!(authorize(&r, "app", "find", &find), Decision::Allowed);
        for (name, cmd) in [
            (
                "insert",
                rawdoc! {"insert": "c", "documents": [{}], "$db": "app"},
            ),
            ("create", rawdoc! {"create": "c", "$db": "app"}),
            (
                "createIndexes",
                rawdoc! {"createIndexes": "c", "indexes": [], "$db": "app"},
            ),
        ] {
            let Decision::Denied(e) = authorize(&r, "app", name, &cmd) else {
                panic!("{name} allowed")
            };
            assert_eq!((e.code, e.code_name), (13, "Unauthorized"));
            assert!(
                e.errmsg.starts_with(&format!(
                    "not authorized on app to execute command {{ {name}: \"c\""
                )),
                "{}",
                e.errmsg
            );
        }
    }

    #[test]
    fn apply_ops_is_checked_op_by_op() {
        let rw = roles(&[("readWrite", "app")]);
        let ok = rawdoc! {"applyOps": [{"op": "i", "ns": "app.c", "o": {"_id": 1}}]};
        assert_eq!(authorize(&rw, "admin", "applyOps", &ok), Decision::Allowed);
        let other = rawdoc! {"applyOps": [{"op": "i", "ns": "other.c", "o": {"_id": 1}}]};
        assert!(matches!(
            authorize(&rw, "admin", "applyOps", &other),
            Decision::Denied(_)
        ));
        let create = rawdoc! {"applyOps": [{"op": "c", "ns": "app.$cmd", "o": {"create": "d"}}]};
        assert_eq!(
            authorize(&rw, "admin", "applyOps", &create),
            Decision::Allowed
        );
    }

    #[test]
    fn list_databases_without_the_action_is_narrowed() {
        let r = roles(&[("read", "app")]);
        let cmd = rawdoc! {"listDatabases": 1};
        assert_eq!(
            authorize(&r, "admin", "listDatabases", &cmd),
            Decision::OnlyAuthorizedDatabases
        );
        let backup = roles(&[("backup", "admin")]);
        assert_eq!(
            authorize(&backup, "admin", "listDatabases", &cmd),
            Decision::Allowed
        );
    }
}
