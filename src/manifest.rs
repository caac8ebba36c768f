//! The manifest: a backup's record of itself, written last, as the only mark of success.
//! Its schema is versioned (`schema_version`) and documented in docs/manifest.md. It never
//! holds a secret: no connection string, no credentials, no key material.

use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    pub backup_id: String,
    pub tool: Tool,
    pub source: Source,
    /// The schedule time this backup stands for, when it was started by a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    pub archive: Archive,
    pub storage: Storage,
    /// The consistent point in time of a replica-set backup with its oplog; absent for a
    /// backup that is not consistent to one point (a standalone with `--allow-inconsistent`,
    /// `--no-oplog`) and in manifests of versions before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<PointInTime>,
    /// The namespaces the backup was asked for; absent for a backup of the whole deployment
    /// (and in manifests of versions before it existed).
    #[serde(default, skip_serializing_if = "Selection::is_full")]
    pub selection: Selection,
    pub namespaces: Vec<NamespaceEntry>,
    pub totals: Totals,
}

/// The `--include`/`--exclude` patterns a backup was made with, as given. Retention and
/// `latest` tell full backups from filtered ones by it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl Selection {
    pub fn of(filter: &crate::namespace::NamespaceFilter) -> Self {
        Self {
            include: filter.include.iter().map(ToString::to_string).collect(),
            exclude: filter.exclude.iter().map(ToString::to_string).collect(),
        }
    }

    /// The whole deployment (all but `local` and `config`, as mongodump).
    pub fn is_full(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// How the selection reads in a listing: `full`, or `include a.*; exclude a.tmp`.
    pub fn describe(&self) -> String {
        if self.is_full() {
            return "full".into();
        }
        let mut parts = Vec::new();
        if !self.include.is_empty() {
            parts.push(format!("include {}", self.include.join(",")));
        }
        if !self.exclude.is_empty() {
            parts.push(format!("exclude {}", self.exclude.join(",")));
        }
        parts.join("; ")
    }
}

/// An oplog timestamp: seconds and increment, as mongod's `Timestamp(t, i)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OplogTimestamp {
    pub t: u32,
    pub i: u32,
}

impl OplogTimestamp {
    pub fn to_bson(self) -> bson::Timestamp {
        bson::Timestamp {
            time: self.t,
            increment: self.i,
        }
    }
}

impl From<bson::Timestamp> for OplogTimestamp {
    fn from(ts: bson::Timestamp) -> Self {
        Self {
            t: ts.time,
            i: ts.increment,
        }
    }
}

/// Restoring the archive with its oplog replayed gives the source's state at `ts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointInTime {
    /// The last oplog entry in the archive: the cluster time of the state restored.
    pub ts: OplogTimestamp,
    /// That entry's wall clock (RFC 3339, UTC), when the server records one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall: Option<String>,
    /// The newest entry before the first collection was read: the first entry archived.
    pub oplog_start: OplogTimestamp,
    /// Entries in the archive's oplog namespace.
    pub oplog_entries: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `buildInfo.version` of the server read, also written in the archive's prelude.
    pub server_version: String,
    /// `standalone`, `replica_set` or `sharded`.
    pub topology: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_set: Option<String>,
    /// Host names only (no user, no password, no options).
    pub hosts: Vec<String>,
    /// The hosts as the connection string names them (before any SRV lookup), so that a
    /// duplicate trigger can tell, without connecting, whether it is for the same source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    /// Object key relative to the destination.
    pub key: String,
    /// Always `mongodump-archive`: restorable with `mongorestore --archive`.
    pub format: String,
    pub compression: String,
    pub compression_level: u32,
    /// Stored size in bytes, and the SHA-256 of exactly those bytes.
    pub size: u64,
    pub sha256: String,
    pub encryption: Encryption,
    /// `concurrent_collections` written in the archive header.
    pub concurrent_collections: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// `none`, `age` or `kms`.
    pub scheme: String,
    /// age recipients (public keys) when scheme is `age`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// KMS key id when scheme is `kms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// The data key wrapped by KMS (base64), useless without KMS access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_key: Option<String>,
}

impl Encryption {
    pub fn none() -> Self {
        Self {
            scheme: "none".into(),
            recipients: Vec::new(),
            kms_key_id: None,
            wrapped_key: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// `file` or `s3`.
    pub backend: String,
    /// Server-side encryption: `none`, `AES256` or `aws:kms`.
    pub sse: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// S3 Object Lock retention of the archive and this manifest, when the backup is locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLock {
    /// `governance` or `compliance`.
    pub mode: String,
    /// RFC 3339, UTC: no version of the backup's objects can be deleted before then.
    pub retain_until: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceEntry {
    pub db: String,
    /// The logical collection name (a time-series collection's own name, not its buckets').
    pub collection: String,
    /// `collection`, `view`, `timeseries` or `oplog`.
    #[serde(rename = "type")]
    pub kind: crate::namespace::NamespaceKind,
    pub documents: u64,
    /// Uncompressed BSON bytes of the documents.
    pub bytes: u64,
    /// CRC-64/XZ of the documents as written in the archive's EOF block, as 16 hex digits
    /// (JSON numbers cannot carry 64 bits safely).
    pub crc64: String,
    /// The content digest of the documents ([`crate::digest`]); absent in manifests written
    /// before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Digest of the index specifications as read ([`crate::digest::indexes_digest`]);
    /// absent for the oplog and in manifests written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexes_digest: Option<String>,
    /// Digest of the collection options as read ([`crate::digest::options_digest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub namespaces: u64,
    pub documents: u64,
    pub bytes: u64,
}

/// The status object at `<prefix>/latest.json`: the newest successful backup, for monitoring
/// and the admin portal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    pub schema_version: u32,
    pub backup_id: String,
    pub finished_at: String,
    pub manifest: String,
    pub archive: String,
    pub size: u64,
    pub documents: u64,
    pub namespaces: u64,
    pub duration_seconds: f64,
    /// Set when the backup was filtered; such a backup never replaces a full one here.
    #[serde(default, skip_serializing_if = "Selection::is_full")]
    pub selection: Selection,
    /// The restorable window of the oplog chain, kept up to date by `nightdump oplog`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<LatestPitr>,
    /// The last restore drill (`nightdump drill`), kept up to date by the drills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<LatestDrill>,
}

/// The last restore drill as `latest.json` and `status` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestDrill {
    pub drill_id: String,
    /// The backup it restored.
    pub backup_id: String,
    pub finished_at: String,
    /// Whether everything read back matched the backup's manifest.
    pub passed: bool,
    /// How long the restore took: the recovery time to expect.
    pub restore_seconds: f64,
    /// The stored report, relative to the destination.
    pub report: String,
}

/// The point-in-time window as `latest.json` carries it for the admin portal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestPitr {
    /// The earliest and latest instant a restore can reach (RFC 3339).
    pub earliest: String,
    pub latest: String,
    /// The latest instant as an oplog time.
    pub latest_ts: OplogTimestamp,
}

impl Latest {
    /// Whether this backup should replace `current` in `latest.json`: a full backup beats a
    /// filtered one; otherwise the later completion wins (ids break ties). An unreadable
    /// `current` is replaced.
    pub fn supersedes(&self, current: Option<&Latest>) -> bool {
        let Some(current) = current else {
            return true;
        };
        match (self.selection.is_full(), current.selection.is_full()) {
            (false, true) => return false,
            (true, false) => return true,
            _ => {}
        }
        let finished = |l: &Latest| crate::layout::parse_time(&l.finished_at).ok();
        match (finished(self), finished(current)) {
            (Some(ours), Some(theirs)) if ours != theirs => ours > theirs,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            _ => self.backup_id > current.backup_id,
        }
    }
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid: {e}"))?;
        if m.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "manifest schema version {} is not supported by this nightdump (supports {SCHEMA_VERSION}): upgrade nightdump",
                m.schema_version
            ));
        }
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    pub fn latest(&self, manifest_key: String) -> Latest {
        Latest {
            schema_version: SCHEMA_VERSION,
            backup_id: self.backup_id.clone(),
            finished_at: self.finished_at.clone(),
            manifest: manifest_key,
            archive: self.archive.key.clone(),
            size: self.archive.size,
            documents: self.totals.documents,
            namespaces: self.totals.namespaces,
            duration_seconds: self.duration_seconds,
            selection: self.selection.clone(),
            pitr: None,
            drill: None,
        }
    }

    /// Checks that the manifest describes backup `id` and agrees with itself: its id, an
    /// archive inside the backup's own directory under one of the names nightdump writes,
    /// and totals that are the sums of its namespaces. A manifest copied from another backup
    /// or edited by hand fails here.
    pub fn check_describes(&self, id: &str) -> Result<(), String> {
        if self.backup_id != id {
            return Err(format!(
                "the manifest in {id}/ is backup {}'s",
                truncated(&self.backup_id)
            ));
        }
        let expected_name = match self.archive.encryption.scheme.as_str() {
            "none" => crate::layout::ARCHIVE_NAME.to_string(),
            "age" => format!("{}.age", crate::layout::ARCHIVE_NAME),
            "kms" => format!("{}.enc", crate::layout::ARCHIVE_NAME),
            other => {
                return Err(format!(
                    "the manifest names an unknown encryption scheme '{}'",
                    truncated(other)
                ))
            }
        };
        let expected_key = format!("{id}/{expected_name}");
        if self.archive.key != expected_key {
            return Err(format!(
                "the manifest's archive is {}, not this backup's {expected_key}",
                truncated(&self.archive.key)
            ));
        }
        let sum = |f: fn(&NamespaceEntry) -> u64| self.namespaces.iter().map(f).sum::<u64>();
        let (documents, bytes) = (sum(|n| n.documents), sum(|n| n.bytes));
        if self.totals.namespaces != self.namespaces.len() as u64
            || self.totals.documents != documents
            || self.totals.bytes != bytes
        {
            return Err(format!(
                "the manifest's totals ({} namespaces, {} documents, {} bytes) are not the sums of its namespaces ({}, {documents}, {bytes})",
                self.totals.namespaces,
                self.totals.documents,
                self.totals.bytes,
                self.namespaces.len()
            ));
        }
        Ok(())
    }
}

fn truncated(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Assembles a backup's manifest from what the run knows, part by part; the totals are
/// always the sums of the namespaces added, never counted apart.
#[derive(Debug, Clone)]
pub struct ManifestBuilder {
    manifest: Manifest,
}

impl ManifestBuilder {
    /// A manifest of backup `backup_id`, read from `source`, stored as `archive` in `storage`.
    pub fn new(backup_id: String, source: Source, archive: Archive, storage: Storage) -> Self {
        Self {
            manifest: Manifest {
                schema_version: SCHEMA_VERSION,
                backup_id,
                tool: Tool {
                    name: "nightdump".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                },
                source,
                scheduled_at: None,
                started_at: String::new(),
                finished_at: String::new(),
                duration_seconds: 0.0,
                archive,
                storage,
                point_in_time: None,
                selection: Selection::default(),
                namespaces: Vec::new(),
                totals: Totals {
                    namespaces: 0,
                    documents: 0,
                    bytes: 0,
                },
            },
        }
    }

    /// When it ran (RFC 3339) and for which schedule time, if any.
    pub fn times(
        mut self,
        scheduled_at: Option<String>,
        started_at: String,
        finished_at: String,
        duration_seconds: f64,
    ) -> Self {
        let m = &mut self.manifest;
        m.scheduled_at = scheduled_at;
        m.started_at = started_at;
        m.finished_at = finished_at;
        m.duration_seconds = duration_seconds;
        self
    }

    pub fn point_in_time(mut self, point_in_time: Option<PointInTime>) -> Self {
        self.manifest.point_in_time = point_in_time;
        self
    }

    pub fn selection(mut self, selection: Selection) -> Self {
        self.manifest.selection = selection;
        self
    }

    /// Adds a namespace, in archive order.
    pub fn namespace(mut self, entry: NamespaceEntry) -> Self {
        self.manifest.namespaces.push(entry);
        self
    }

    pub fn build(mut self) -> Manifest {
        let n = &self.manifest.namespaces;
        self.manifest.totals = Totals {
            namespaces: n.len() as u64,
            documents: n.iter().map(|n| n.documents).sum(),
            bytes: n.iter().map(|n| n.bytes).sum(),
        };
        self.manifest
    }
}

pub fn crc_hex(crc: u64) -> String {
    format!("{crc:016x}")
}

pub fn parse_crc_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            backup_id: "20261125T030000Z".into(),
            tool: Tool {
                name: "nightdump".into(),
                version: "0.1.0".into(),
            },
            source: Source {
                server_version: "7.0.14".into(),
                topology: "standalone".into(),
                replica_set: None,
                hosts: vec!["127.0.0.1:27017".into()],
                seeds: Vec::new(),
            },
            scheduled_at: Some("2026-11-25T03:00:00Z".into()),
            started_at: "2026-11-25T03:00:01Z".into(),
            finished_at: "2026-11-25T03:00:09Z".into(),
            duration_seconds: 8.0,
            archive: Archive {
                key: "20261125T030000Z/dump.archive.gz".into(),
                format: "mongodump-archive".into(),
                compression: "gzip".into(),
                compression_level: 6,
                size: 1234,
                sha256: "00".repeat(32),
                encryption: Encryption::none(),
                concurrent_collections: 4,
            },
            storage: Storage {
                backend: "s3".into(),
                sse: "aws:kms".into(),
                kms_key_id: Some("k".into()),
                storage_class: None,
                object_lock: None,
            },
            point_in_time: None,
            selection: Selection::default(),
            namespaces: vec![NamespaceEntry {
                db: "test".into(),
                collection: "c".into(),
                kind: crate::namespace::NamespaceKind::Collection,
                documents: 1,
                bytes: 14,
                crc64: crc_hex(0xF3EA_6143_6A44_59FE),
                digest: None,
                indexes_digest: None,
                options_digest: None,
            }],
            totals: Totals {
                namespaces: 1,
                documents: 1,
                bytes: 14,
            },
        }
    }

    #[test]
    fn round_trips_and_rejects_other_versions() {
        let m = sample();
        let back = Manifest::parse(&m.to_json()).unwrap();
        assert_eq!(back, m);
        let mut v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        v["schema_version"] = 2.into();
        let err = Manifest::parse(v.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("upgrade nightdump"), "{err}");
        assert!(Manifest::parse(b"{").is_err());
    }

    #[test]
    fn point_in_time_is_optional_and_round_trips() {
        let mut m = sample();
        let json = String::from_utf8(m.to_json()).unwrap();
        assert!(!json.contains("point_in_time"), "{json}");
        m.point_in_time = Some(PointInTime {
            ts: OplogTimestamp {
                t: 1_764_039_600,
                i: 7,
            },
            wall: Some("2026-11-25T03:00:00.123Z".into()),
            oplog_start: OplogTimestamp {
                t: 1_764_039_590,
                i: 1,
            },
            oplog_entries: 42,
        });
        let json = m.to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v["point_in_time"]["ts"],
            serde_json::json!({"t": 1_764_039_600u32, "i": 7})
        );
        assert_eq!(Manifest::parse(&json).unwrap(), m);
    }

    #[test]
    fn a_manifest_that_describes_something_else_is_caught() {
        let m = sample();
        assert_eq!(m.check_describes("20261125T030000Z"), Ok(()));
        let err = m.check_describes("20261126T030000Z").unwrap_err();
        assert!(err.contains("backup 20261125T030000Z's"), "{err}");
        let mut other_archive = sample();
        other_archive.archive.key = "20261124T030000Z/dump.archive.gz".into();
        assert!(other_archive
            .check_describes("20261125T030000Z")
            .unwrap_err()
            .contains("not this backup's"));
        let mut totals = sample();
        totals.totals.documents = 2;
        assert!(totals
            .check_describes("20261125T030000Z")
            .unwrap_err()
            .contains("not the sums"));
        let mut count = sample();
        count.totals.namespaces = 3;
        assert!(count.check_describes("20261125T030000Z").is_err());
    }

    #[test]
    fn a_selection_is_recorded_only_when_filtered() {
        let mut m = sample();
        assert!(!String::from_utf8(m.to_json())
            .unwrap()
            .contains("selection"));
        m.selection.include.push("shop.*".into());
        let back = Manifest::parse(&m.to_json()).unwrap();
        assert_eq!(back.selection.describe(), "include shop.*");
        assert!(!back.selection.is_full());
    }

    #[test]
    fn crc_is_hex_and_reversible() {
        assert_eq!(crc_hex(0xF3EA_6143_6A44_59FE), "f3ea61436a4459fe");
        assert_eq!(
            parse_crc_hex("f3ea61436a4459fe"),
            Some(0xF3EA_6143_6A44_59FE)
        );
    }
}
