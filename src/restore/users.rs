//! `--with-users`: users and roles are never inserted into `admin.system.users` /
//! `admin.system.roles` directly. As mongorestore does, they go into temporary collections
//! that `_mergeAuthzCollections` merges, after the archive's auth-schema version was checked
//! against the target's.

use std::collections::BTreeMap;

use bson::{doc, Bson, Document, RawDocumentBuf};
use futures_util::TryStreamExt;
use nightdump_archive::{Header, Namespace};
use serde::Serialize;

use super::target::Target;
use crate::error::{Error, Result};

/// The auth-schema version of SCRAM-era servers (3.0 and later).
const SCRAM: i64 = 5;
const TEMP_USERS: &str = "tempusers";
const TEMP_ROLES: &str = "temproles";

/// The archive's auth-schema version: `currentVersion` of `admin.system.version`'s
/// `authSchema` document. Dumps of 8.1 and later no longer carry it and are always SCRAM;
/// an archive without `admin.system.version` is taken to come from a server of 2.4 or older,
/// as mongorestore does.
pub fn archive_version(header: &Header, version: Option<&[RawDocumentBuf]>) -> Result<i64> {
    if header
        .server_version_triple()
        .is_some_and(|v| (v.0, v.1) >= (8, 1))
    {
        return Ok(SCRAM);
    }
    let Some(docs) = version else {
        return Ok(1);
    };
    docs.iter()
        .filter(|d| d.get_str("_id").ok() == Some("authSchema"))
        .find_map(|d| number(d.get("currentVersion").ok().flatten()?.to_raw_bson().try_into().ok()?))
        .ok_or_else(|| {
            Error::invalid(
                "the archive's admin.system.version has no authSchema document with a currentVersion: restore without --with-users",
            )
        })
}

fn number(value: Bson) -> Option<i64> {
    match value {
        Bson::Int32(n) => Some(n.into()),
        Bson::Int64(n) => Some(n),
        Bson::Double(f) if f.fract() == 0.0 => Some(f as i64),
        _ => None,
    }
}

/// mongorestore's compatibility rules: versions 2 and 4 are upgrades in progress; users of
/// version 3 go to a server of 3 or 5; 5 only to 5; 1 nowhere current.
pub fn check_versions(archive: i64, server: i64) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::invalid(format!(
            "{why}: nothing was written; restore without --with-users and recreate the users and roles with createUser/createRole"
        )))
    };
    if matches!(archive, 2 | 4) {
        return refuse(format!(
            "the archive's users have auth schema version {archive}, an upgrade that was in progress on the source"
        ));
    }
    if matches!(server, 2 | 4) {
        return refuse(format!(
            "the target's auth schema version is {server}, an upgrade in progress: finish or roll it back first"
        ));
    }
    match (archive, server) {
        (5, 5) | (3, 3) | (3, 5) => Ok(()),
        _ => refuse(format!(
            "the archive's users have auth schema version {archive}, which a server of auth schema version {server} cannot take"
        )),
    }
}

/// `getParameter authSchemaVersion` on the target.
pub async fn server_version(target: &Target) -> Result<i64> {
    let reply = target
        .run(
            "admin",
            "getParameter authSchemaVersion",
            doc! { "getParameter": 1, "authSchemaVersion": 1 },
        )
        .await?;
    reply
        .get("authSchemaVersion")
        .cloned()
        .and_then(number)
        .ok_or_else(|| Error::Mongo {
            target: target.conn.target().to_string(),
            command: "getParameter authSchemaVersion".into(),
            detail: "the reply has no authSchemaVersion number".into(),
        })
}

/// What `--with-users` does (or, in a dry run, would do) to one user or role of the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthChange {
    /// `user` or `role`.
    pub kind: &'static str,
    /// `name@db`.
    pub name: String,
    /// `added`, `replaced` (`--drop`), `kept` (already there, no `--drop`) or `removed`
    /// (`--drop`, and not in the archive).
    pub change: &'static str,
    /// The roles it is granted on the target before, when it exists there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles_before: Option<Vec<String>>,
    /// The roles it is granted after the restore, when it exists then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles_after: Option<Vec<String>>,
}

impl AuthChange {
    /// `user bk@admin: replaced, roles read@admin -> root@admin`.
    pub fn describe(&self) -> String {
        let roles = |r: &Option<Vec<String>>| match r {
            Some(r) if r.is_empty() => "none".to_string(),
            Some(r) => r.join(","),
            None => "-".to_string(),
        };
        let detail = match self.change {
            "replaced" if self.roles_before != self.roles_after => format!(
                ", roles {} -> {}",
                roles(&self.roles_before),
                roles(&self.roles_after)
            ),
            "added" => format!(", roles {}", roles(&self.roles_after)),
            "removed" | "kept" => format!(", roles {}", roles(&self.roles_before)),
            _ => String::new(),
        };
        format!("{} {}: {}{detail}", self.kind, self.name, self.change)
    }
}

/// `_id` → (`name@db`, granted roles) of user or role documents.
fn identities(docs: &[Document], name_field: &str) -> BTreeMap<String, (String, Vec<String>)> {
    docs.iter()
        .filter_map(|d| {
            let id = d.get_str("_id").ok()?.to_string();
            let name = format!(
                "{}@{}",
                d.get_str(name_field).unwrap_or("?"),
                d.get_str("db").unwrap_or("?")
            );
            let mut roles: Vec<String> = d
                .get_array("roles")
                .map(|a| {
                    a.iter()
                        .filter_map(|r| {
                            let r = r.as_document()?;
                            Some(format!(
                                "{}@{}",
                                r.get_str("role").ok()?,
                                r.get_str("db").ok()?
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            roles.sort();
            Some((id, (name, roles)))
        })
        .collect()
}

fn documents(raw: &[RawDocumentBuf]) -> Vec<Document> {
    raw.iter()
        .filter_map(|d| Document::try_from(d.as_ref()).ok())
        .collect()
}

/// Reads `admin.<system>` of the target, without credentials.
async fn target_documents(target: &Target, system: &str) -> Result<Vec<Document>> {
    target
        .conn
        .client()
        .database("admin")
        .collection::<Document>(system)
        .find(doc! {})
        .projection(doc! { "credentials": 0, "privileges": 0, "authenticationRestrictions": 0 })
        .await
        .map_err(|e| target.conn.error(&format!("find on admin.{system}"), &e))?
        .try_collect()
        .await
        .map_err(|e| target.conn.error(&format!("find on admin.{system}"), &e))
}

/// Every user and role change `--with-users` makes: against the target's when there is one
/// (each archive entry `added` otherwise).
pub async fn plan(
    target: Option<&Target>,
    users: Option<&[RawDocumentBuf]>,
    roles: Option<&[RawDocumentBuf]>,
    drop: bool,
) -> Result<Vec<AuthChange>> {
    let mut changes = Vec::new();
    for (kind, docs, system, name_field) in [
        ("user", users, "system.users", "user"),
        ("role", roles, "system.roles", "role"),
    ] {
        let Some(docs) = docs else { continue };
        let archive = identities(&documents(docs), name_field);
        let present = match target {
            Some(t) => identities(&target_documents(t, system).await?, name_field),
            None => BTreeMap::new(),
        };
        for (id, (name, after)) in &archive {
            let (change, before) = match present.get(id) {
                None => ("added", None),
                Some((_, before)) if drop => ("replaced", Some(before.clone())),
                Some((_, before)) => ("kept", Some(before.clone())),
            };
            let after = match change {
                "kept" => before.clone(),
                _ => Some(after.clone()),
            };
            changes.push(AuthChange {
                kind,
                name: name.clone(),
                change,
                roles_before: before,
                roles_after: after,
            });
        }
        if drop {
            for (id, (name, before)) in &present {
                if !archive.contains_key(id) {
                    changes.push(AuthChange {
                        kind,
                        name: name.clone(),
                        change: "removed",
                        roles_before: Some(before.clone()),
                        roles_after: None,
                    });
                }
            }
        }
    }
    Ok(changes)
}

/// The users the restore is connected as (`connectionStatus`), as `name@db`.
pub async fn connected_users(target: &Target) -> Result<Vec<String>> {
    let reply = target
        .run("admin", "connectionStatus", doc! { "connectionStatus": 1 })
        .await?;
    Ok(reply
        .get_document("authInfo")
        .and_then(|a| a.get_array("authenticatedUsers"))
        .map(|users| {
            users
                .iter()
                .filter_map(|u| {
                    let u = u.as_document()?;
                    Some(format!(
                        "{}@{}",
                        u.get_str("user").ok()?,
                        u.get_str("db").ok()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Refuses a plan that removes the user the restore is connected as: the restore would lock
/// itself out half way (and could not even drop its staging collection).
pub fn check_connected(changes: &[AuthChange], connected: &[String], allowed: bool) -> Result<()> {
    let Some(me) = changes
        .iter()
        .find(|c| c.kind == "user" && c.change == "removed" && connected.contains(&c.name))
    else {
        return Ok(());
    };
    if allowed {
        tracing::warn!(user = %me.name, "--with-users --drop removes the user this restore is connected as, as allowed");
        return Ok(());
    }
    Err(Error::invalid(format!(
        "--with-users --drop would remove {}, the user this restore is connected as, which the archive does not have: nothing was written; connect as a user the archive holds, or pass --allow-dropping-connected-user to remove it anyway",
        me.name
    )))
}

/// How one of the two kinds fared.
#[derive(Debug, Default, Clone, Copy)]
pub struct Merged {
    /// Entries the target now holds from the archive.
    pub restored: u64,
    /// Entries that already existed and were kept as they were (no `--drop`).
    pub kept: u64,
}

/// Merges the archive's users and roles (each `None` when the archive has no such
/// namespace) into the target. `drop` replaces the target's users and roles with the
/// archive's. The temporary collections are dropped afterwards, also when the merge failed.
pub async fn merge(
    target: &Target,
    users: Option<&[RawDocumentBuf]>,
    roles: Option<&[RawDocumentBuf]>,
    drop: bool,
) -> Result<(Merged, Merged)> {
    let kinds = [
        (users, TEMP_USERS, "system.users", "tempUsersCollection"),
        (roles, TEMP_ROLES, "system.roles", "tempRolesCollection"),
    ];
    let present = target.collections("admin").await?;
    let mut command = doc! { "_mergeAuthzCollections": 1 };
    let mut counts = [Merged::default(); 2];
    let mut temps = Vec::new();
    for (i, (docs, temp, system, field)) in kinds.iter().enumerate() {
        let Some(docs) = docs else { continue };
        let temp_ns = Namespace::new("admin", *temp);
        if present.contains_key(*temp) {
            tracing::info!(ns = %temp_ns, "dropping a temporary collection left by an earlier restore");
            target.drop(&temp_ns).await?;
        }
        let kept = if drop {
            0
        } else {
            existing(target, system, docs).await?
        };
        counts[i] = Merged {
            restored: docs.len() as u64 - kept,
            kept,
        };
        command.insert(*field, temp_ns.to_string());
        temps.push(temp_ns);
    }
    command.insert("drop", drop);
    command.insert("writeConcern", doc! { "w": "majority" });
    command.insert("db", "");

    let outcome = fill_and_merge(target, &kinds, command).await;
    // The staging collections hold every restored user's SCRAM salts and keys: one left
    // behind is readable by anyone with `read` on admin, so failing to drop it fails the run.
    for temp in &temps {
        if let Err(e) = target.drop(temp).await {
            return Err(Error::Mongo {
                target: target.conn.target().to_string(),
                command: format!("drop {temp}"),
                detail: format!(
                    "the staging collection {temp} could not be dropped and holds the restored users' credential material (SCRAM salts and keys): drop it by hand now ({})",
                    crate::error::one_line(&e.to_string(), 200)
                ),
            });
        }
    }
    outcome?;
    Ok((counts[0], counts[1]))
}

async fn fill_and_merge(
    target: &Target,
    kinds: &[(Option<&[RawDocumentBuf]>, &str, &str, &str)],
    command: Document,
) -> Result<()> {
    for (docs, temp, _, _) in kinds {
        let Some(docs) = docs.filter(|d| !d.is_empty()) else {
            continue;
        };
        target
            .conn
            .client()
            .database("admin")
            .collection::<RawDocumentBuf>(temp)
            .insert_many(docs)
            .await
            .map_err(|e| target.conn.error(&format!("insert into admin.{temp}"), &e))?;
    }
    target
        .run("admin", "_mergeAuthzCollections", command)
        .await?;
    Ok(())
}

/// How many of `docs` (by `_id`) the target's `admin.<system>` already holds. mongod keeps
/// those as they are when merging without `drop`.
async fn existing(target: &Target, system: &str, docs: &[RawDocumentBuf]) -> Result<u64> {
    let ids: Vec<Bson> = docs
        .iter()
        .filter_map(|d| d.get("_id").ok().flatten()?.to_raw_bson().try_into().ok())
        .collect();
    let found: Vec<Document> = target
        .conn
        .client()
        .database("admin")
        .collection::<Document>(system)
        .find(doc! { "_id": { "$in": ids } })
        .projection(doc! { "_id": 1 })
        .await
        .map_err(|e| target.conn.error(&format!("find on admin.{system}"), &e))?
        .try_collect()
        .await
        .map_err(|e| target.conn.error(&format!("find on admin.{system}"), &e))?;
    Ok(found.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version_doc(v: Bson) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&doc! { "_id": "authSchema", "currentVersion": v }).unwrap()
    }

    #[test]
    fn archive_version_comes_from_the_auth_schema_document() {
        let old = Header::new("7.0.14", "100.10.0");
        let other = RawDocumentBuf::from_document(
            &doc! { "_id": "featureCompatibilityVersion", "version": "7.0" },
        )
        .unwrap();
        let docs = [other.clone(), version_doc(Bson::Int32(3))];
        assert_eq!(archive_version(&old, Some(&docs)).unwrap(), 3);
        assert_eq!(
            archive_version(&old, Some(&[version_doc(Bson::Int64(5))])).unwrap(),
            5
        );
        assert_eq!(archive_version(&old, None).unwrap(), 1);
        let err = archive_version(&old, Some(&[other])).unwrap_err();
        assert!(err.to_string().contains("no authSchema"), "{err}");
        let new = Header::new("8.1.0", "100.12.0");
        assert_eq!(archive_version(&new, None).unwrap(), 5);
    }

    #[test]
    fn version_pairs_follow_mongorestore() {
        for (a, s) in [(5, 5), (3, 3), (3, 5)] {
            assert!(check_versions(a, s).is_ok(), "{a} -> {s}");
        }
        for (a, s) in [(1, 5), (5, 3), (1, 3), (2, 5), (5, 4)] {
            let err = check_versions(a, s).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains("nothing was written"), "{err}");
        }
    }
}
