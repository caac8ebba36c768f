//! What a restore will do with each namespace of an archive, decided from the prelude alone,
//! before anything is written.

use std::collections::HashMap;

use nightdump_archive::{CollectionMetadata, Header, Namespace, PreludeEntry};
use serde::Serialize;

use super::rename::{rename, Rename};
use crate::error::{Error, Result};
use crate::namespace::NamespaceFilter;

pub use crate::namespace::NamespaceKind as Kind;

/// Why a namespace of the archive is not restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Left out by `--include` / `--exclude`.
    Filtered,
    /// Oplog entries are not replayed (`--no-oplog-replay`).
    Oplog,
    /// `admin.system.users` / `admin.system.roles` / `admin.system.version` without
    /// `--with-users`.
    UsersAndRoles,
    /// `admin.system.version` with `--with-users`: only its auth-schema version is used.
    AuthSchema,
    /// `system.profile` is never restored.
    Profile,
}

impl SkipReason {
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Filtered => "excluded by --include/--exclude",
            SkipReason::Oplog => "the oplog is not replayed (--no-oplog-replay)",
            SkipReason::UsersAndRoles => "users and roles are restored only with --with-users",
            SkipReason::AuthSchema => "read for the auth-schema check, never inserted",
            SkipReason::Profile => "system.profile is never restored",
        }
    }
}

/// The admin collections that hold users and roles, which are never inserted directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCollection {
    Users,
    Roles,
    Version,
}

impl AuthCollection {
    fn of(ns: &Namespace) -> Option<Self> {
        if ns.db != "admin" {
            return None;
        }
        match ns.collection.as_str() {
            "system.users" => Some(Self::Users),
            "system.roles" => Some(Self::Roles),
            "system.version" => Some(Self::Version),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NamespacePlan {
    /// The namespace as the archive's prelude names it.
    pub source: Namespace,
    /// The namespace its data blocks carry (`system.buckets.X` for older time-series).
    pub data: Namespace,
    /// Where it goes, after `--rename`.
    pub target: Namespace,
    /// Where its documents are inserted (`system.buckets.X` of the target for time-series).
    pub insert_into: Namespace,
    pub kind: Kind,
    pub metadata: Option<CollectionMetadata>,
    pub skip: Option<SkipReason>,
    /// Set for users, roles and the auth-schema version, which go through
    /// `_mergeAuthzCollections` (or the version check) rather than inserts.
    pub auth: Option<AuthCollection>,
}

impl NamespacePlan {
    pub fn restored(&self) -> bool {
        self.skip.is_none()
    }
}

fn kind_of(entry: &PreludeEntry, meta: Option<&CollectionMetadata>) -> Kind {
    if entry.namespace().is_oplog() {
        return Kind::Oplog;
    }
    match (entry.kind.as_str(), meta) {
        ("view", _) => Kind::View,
        ("timeseries", _) => Kind::Timeseries,
        (_, Some(m)) if m.is_view() => Kind::View,
        (_, Some(m)) if m.is_timeseries() => Kind::Timeseries,
        _ => Kind::Collection,
    }
}

fn special_skip(ns: &Namespace, kind: Kind, with_users: bool) -> Option<SkipReason> {
    if kind == Kind::Oplog {
        return Some(SkipReason::Oplog);
    }
    match AuthCollection::of(ns) {
        Some(_) if !with_users => return Some(SkipReason::UsersAndRoles),
        Some(AuthCollection::Version) => return Some(SkipReason::AuthSchema),
        _ => {}
    }
    if ns.collection == "system.profile" {
        return Some(SkipReason::Profile);
    }
    None
}

/// One plan entry per prelude entry, in prelude order. Fails when a rename sends two
/// namespaces to one target or produces an invalid name. Users and roles are restored
/// (`with_users`) where they were, whatever `--rename` says.
pub fn build(
    header: &Header,
    entries: &[PreludeEntry],
    metadata: &[Option<CollectionMetadata>],
    filter: &NamespaceFilter,
    renames: &[Rename],
    with_users: bool,
) -> Result<Vec<NamespacePlan>> {
    let mut plans = Vec::with_capacity(entries.len());
    let mut targets: HashMap<Namespace, Namespace> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let meta = metadata.get(i).cloned().flatten();
        let source = entry.namespace();
        let kind = kind_of(entry, meta.as_ref());
        let auth = AuthCollection::of(&source).filter(|_| kind == Kind::Collection);
        let skip = special_skip(&source, kind, with_users).or_else(|| {
            (!filter.selects(&source.db, &source.collection)).then_some(SkipReason::Filtered)
        });
        let target = match rename(renames, &source.to_string()) {
            Some(new) if skip.is_none() && auth.is_none() => {
                Namespace::parse(&new).ok_or_else(|| {
                    Error::invalid(format!(
                        "--rename turns {source} into '{new}', which is not DB.COLLECTION"
                    ))
                })?
            }
            _ => source.clone(),
        };
        if skip.is_none() {
            if target.db.is_empty() || target.db.contains(['/', '\\', ' ', '"', '$']) {
                return Err(Error::invalid(format!(
                    "--rename turns {source} into {target}, whose database name is invalid"
                )));
            }
            if let Some(other) = targets.insert(target.clone(), source.clone()) {
                return Err(Error::invalid(format!(
                    "both {other} and {source} would be restored into {target}: change --rename or --include"
                )));
            }
        }
        let insert_into = if kind == Kind::Timeseries {
            target.buckets()
        } else {
            target.clone()
        };
        plans.push(NamespacePlan {
            data: entry.data_namespace(header),
            source,
            target,
            insert_into,
            kind,
            metadata: meta,
            skip,
            auth,
        });
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::NamespacePattern;

    fn entry(db: &str, coll: &str, kind: &str) -> PreludeEntry {
        PreludeEntry {
            db: db.into(),
            collection: coll.into(),
            metadata: String::new(),
            size: 0,
            kind: kind.into(),
        }
    }

    #[test]
    fn skips_specials_filters_and_renames() {
        let header = Header::new("7.0.14", "100.10.0");
        let entries = vec![
            entry("admin", "system.users", "collection"),
            entry("shop", "orders", "collection"),
            entry("shop", "m", "timeseries"),
            entry("other", "x", "collection"),
            entry("", "oplog", ""),
        ];
        let filter = NamespaceFilter {
            include: vec!["shop.*".parse::<NamespacePattern>().unwrap()],
            exclude: vec![],
        };
        let renames = vec!["shop.*=copy.*".parse().unwrap()];
        let plans = build(&header, &entries, &[], &filter, &renames, false).unwrap();
        assert_eq!(plans[0].skip, Some(SkipReason::UsersAndRoles));
        assert_eq!(plans[1].target, Namespace::new("copy", "orders"));
        assert_eq!(plans[2].kind, Kind::Timeseries);
        assert_eq!(plans[2].data, Namespace::new("shop", "system.buckets.m"));
        assert_eq!(
            plans[2].insert_into,
            Namespace::new("copy", "system.buckets.m")
        );
        assert_eq!(plans[3].skip, Some(SkipReason::Filtered));
        assert_eq!(plans[3].target, Namespace::new("other", "x"));
        assert_eq!(plans[4].skip, Some(SkipReason::Oplog));
    }

    #[test]
    fn two_sources_into_one_target_is_refused() {
        let header = Header::new("7.0.14", "100.10.0");
        let entries = vec![entry("a", "x", "collection"), entry("b", "x", "collection")];
        let renames = vec!["a.*=c.*".parse().unwrap(), "b.*=c.*".parse().unwrap()];
        let err = build(
            &header,
            &entries,
            &[],
            &NamespaceFilter::default(),
            &renames,
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("both a.x and b.x"), "{err}");
    }

    #[test]
    fn with_users_merges_users_and_roles_and_reads_the_version() {
        let header = Header::new("7.0.14", "100.10.0");
        let entries = vec![
            entry("admin", "system.users", "collection"),
            entry("admin", "system.roles", "collection"),
            entry("admin", "system.version", "collection"),
            entry("admin", "other", "collection"),
            entry("shop", "orders", "collection"),
        ];
        let renames = vec!["admin.*=copy.*".parse().unwrap()];
        let plans = build(
            &header,
            &entries,
            &[],
            &NamespaceFilter::default(),
            &renames,
            true,
        )
        .unwrap();
        assert_eq!(plans[0].skip, None);
        assert_eq!(plans[0].auth, Some(AuthCollection::Users));
        assert_eq!(plans[0].target, Namespace::new("admin", "system.users"));
        assert_eq!(plans[1].auth, Some(AuthCollection::Roles));
        assert_eq!(plans[1].skip, None);
        assert_eq!(plans[2].auth, Some(AuthCollection::Version));
        assert_eq!(plans[2].skip, Some(SkipReason::AuthSchema));
        assert_eq!(plans[3].auth, None);
        assert_eq!(plans[3].target, Namespace::new("copy", "other"));

        let filter = NamespaceFilter {
            include: vec!["shop.*".parse::<NamespacePattern>().unwrap()],
            exclude: vec![],
        };
        let plans = build(&header, &entries, &[], &filter, &[], true).unwrap();
        assert_eq!(plans[0].skip, Some(SkipReason::Filtered));
    }
}
