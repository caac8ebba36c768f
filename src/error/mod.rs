//! nightdump's errors.
//!
//! Rules: every message is one line that names what went wrong and what to do about it; no
//! message ever holds a password, a secret value or key material (driver and SDK messages are
//! scrubbed before they are wrapped); each variant maps to a documented exit code and to a
//! stable Lambda `errorType`, so scripts and alarms can branch on them.

use nightdump_archive::ArchiveError;

pub mod store;

pub use store::{DestinationError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad option, URL, pattern or setting: nothing was touched.
    #[error("{0}")]
    Invalid(String),

    /// A Lambda invocation's payload that is not a backup request: nothing was touched.
    #[error("{0}")]
    InvalidEvent(String),

    #[error(
        "cannot reach MongoDB at {target}: {detail}. Check host, port, network and TLS settings"
    )]
    MongoUnreachable { target: String, detail: String },

    #[error("lost the connection to MongoDB at {target} during {detail}; nothing was marked successful: run it again")]
    MongoConnectionLost { target: String, detail: String },

    #[error("MongoDB authentication failed for {target}: {detail}. Check the user name, password and authSource")]
    MongoAuth { target: String, detail: String },

    /// The oplog moved past the capture's position during a point-in-time backup.
    #[error("the oplog rolled over during the backup ({0}), so it cannot be made consistent; nothing was marked successful: enlarge the oplog (replSetResizeOplog) or back up at a quieter time")]
    OplogRolledOver(String),

    /// An oplog capture cannot continue the chain: the entries after its end are gone.
    #[error("{0}")]
    OplogGap(String),

    /// Authenticated, but the user's roles do not allow a command (Unauthorized, 13).
    #[error("the user lacks the privilege to {privilege} on {db}: grant it the {grant} role")]
    MongoPermission {
        target: String,
        /// What was refused, in words: "create collections", "read collections"…
        privilege: String,
        db: String,
        /// The built-in roles that would allow it.
        grant: String,
    },

    #[error("MongoDB refused {command} on {target}: {detail}")]
    Mongo {
        target: String,
        command: String,
        detail: String,
    },

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("archive: {0}")]
    Archive(#[from] ArchiveError),

    /// The archive is damaged at a known place in the stream.
    #[error("archive damaged at byte {offset} of the decompressed stream (while reading {ns}): {source}")]
    ArchiveAt {
        ns: String,
        offset: u64,
        #[source]
        source: ArchiveError,
    },

    /// A restore wrote some data and then stopped, or the server refused some documents; the
    /// report says exactly what was and was not restored.
    #[error("{summary}")]
    RestoreFailed {
        summary: String,
        report: Box<dyn PartialReport>,
    },

    #[error("backup {id} not found at {destination}: run `nightdump list --from {destination}` to see the backups")]
    BackupNotFound { id: String, destination: String },

    /// No backup is old enough for the instant asked for.
    #[error("{0}")]
    NoBackupBefore(String),

    #[error("no successful backup at {destination} yet: run `nightdump backup --to {destination}` first")]
    NoBackups { destination: String },

    #[error("integrity check failed for backup {id}: {detail}")]
    Integrity { id: String, detail: String },

    /// Stored bytes that do not decrypt or decode as they must: `what` names the object
    /// ("backup 20261125T030000Z", "oplog slice …", a file).
    #[error("integrity check failed for {what}: {detail}")]
    Damaged { what: String, detail: String },

    /// A key that does not open what it is given (an age identity of another recipient).
    #[error("{0}")]
    KeyRejected(String),

    #[error("integrity check failed for oplog slice {slice}: {detail}")]
    SliceIntegrity { slice: String, detail: String },

    /// The backups and oplog slices do not reach the instant asked for.
    #[error("{0}")]
    NotRestorable(String),

    #[error("the last successful backup ({id}) is {age} old, older than the allowed {max_age}")]
    Stale {
        id: String,
        age: String,
        max_age: String,
    },

    /// `status --max-lag`: the oplog chain is behind or broken.
    #[error("{0}")]
    PitrStale(String),

    #[error("stopped before the deadline: {0}; nothing was marked successful")]
    Deadline(String),

    #[error("interrupted: {0}")]
    Interrupted(String),

    /// A restore drill read back something other than the backup's manifest records.
    #[error("{0}")]
    DrillMismatch(String),

    /// KMS refused or could not be reached (envelope encryption).
    #[error("{0}")]
    Kms(String),

    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a restore that stopped part way had written: the restore's report, carried by
/// [`Error::RestoreFailed`] without this module depending on the restore's (read it with
/// `Error::restore_report`).
pub trait PartialReport: std::fmt::Debug + Send + Sync + 'static {
    fn as_any(&self) -> &dyn std::any::Any;
}

impl Error {
    /// Exit codes, documented in the README.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::InvalidEvent(_) => 2,
            Error::MongoUnreachable { .. }
            | Error::MongoConnectionLost { .. }
            | Error::MongoAuth { .. }
            | Error::MongoPermission { .. }
            | Error::Mongo { .. }
            | Error::OplogRolledOver(_)
            | Error::OplogGap(_) => 3,
            Error::Store(_) | Error::Kms(_) | Error::KeyRejected(_) => 4,
            Error::BackupNotFound { .. } | Error::NoBackups { .. } | Error::NoBackupBefore(_) => 5,
            Error::Integrity { .. }
            | Error::Damaged { .. }
            | Error::SliceIntegrity { .. }
            | Error::NotRestorable(_)
            | Error::Archive(_)
            | Error::ArchiveAt { .. }
            | Error::DrillMismatch(_) => 6,
            Error::Stale { .. } | Error::PitrStale(_) => 7,
            Error::Deadline(_) | Error::Interrupted(_) => 8,
            Error::RestoreFailed { .. } => 9,
            Error::Internal(_) => 1,
        }
    }

    /// A stable name for Lambda's `errorType` and for JSON output.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "InvalidConfiguration",
            Error::InvalidEvent(_) => "InvalidEvent",
            Error::MongoUnreachable { .. } => "MongoUnreachable",
            Error::MongoConnectionLost { .. } => "MongoConnectionLost",
            Error::MongoAuth { .. } => "MongoAuthenticationFailed",
            Error::MongoPermission { .. } => "MongoPermissionDenied",
            Error::Mongo { .. } => "MongoCommandFailed",
            Error::OplogRolledOver(_) => "OplogRolledOver",
            Error::OplogGap(_) => "OplogGap",
            Error::Store(_) => "StorageFailed",
            Error::Archive(_) | Error::ArchiveAt { .. } => "ArchiveInvalid",
            Error::RestoreFailed { .. } => "RestoreFailed",
            Error::BackupNotFound { .. } | Error::NoBackupBefore(_) => "BackupNotFound",
            Error::NoBackups { .. } => "NoBackups",
            Error::Integrity { .. } | Error::SliceIntegrity { .. } | Error::Damaged { .. } => {
                "IntegrityCheckFailed"
            }
            Error::KeyRejected(_) => "KeyRejected",
            Error::NotRestorable(_) => "NotRestorable",
            Error::Stale { .. } => "BackupStale",
            Error::PitrStale(_) => "OplogStale",
            Error::Deadline(_) => "DeadlineReached",
            Error::Interrupted(_) => "Interrupted",
            Error::DrillMismatch(_) => "DrillMismatch",
            Error::Kms(_) => "KmsFailed",
            Error::Internal(_) => "InternalError",
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// A permission error met while restoring names the roles a restore needs, even for
    /// the reads (listCollections, the auth-schema version) a restore does first.
    pub fn in_restore(self) -> Self {
        match self {
            Error::MongoPermission {
                target,
                privilege,
                db,
                grant,
            } if !grant.starts_with("restore") => Error::MongoPermission {
                target,
                privilege,
                db,
                grant: "restore or readWrite".into(),
            },
            other => other,
        }
    }

    /// Unauthorized (13) from the server: what was refused, in words, and the roles that
    /// allow it. mongod's message is `not authorized on <db> to execute command { <name>: …`;
    /// `command` (ours) stands in when it is not.
    pub(crate) fn permission(target: String, command: &str, server_message: &str) -> Self {
        let parsed = server_message
            .strip_prefix("not authorized on ")
            .and_then(|rest| rest.split_once(" to execute command { "))
            .and_then(|(db, rest)| Some((db, rest.split_once(':')?.0)));
        let (db, name) = match parsed {
            Some((db, name)) => (db.to_string(), name.to_string()),
            None => {
                // Ours read "<command> on <db>[.<collection>][ after N documents]".
                let mut words = command.split_whitespace();
                let name = words.next().unwrap_or_default().to_string();
                let db = words
                    .skip_while(|w| *w != "on")
                    .nth(1)
                    .map(|ns| ns.split('.').next().unwrap_or(ns).to_string())
                    .unwrap_or_else(|| "the server".into());
                (db, name)
            }
        };
        let (privilege, grant) = match name.as_str() {
            "find" | "getMore" | "count" | "aggregate" | "distinct" => {
                ("read collections", "backup or read")
            }
            "listCollections" => ("list collections", "backup or read"),
            "listIndexes" => ("list indexes", "backup or read"),
            "collStats" => ("read collection statistics", "backup or read"),
            "listDatabases" => ("list databases", "backup or readAnyDatabase"),
            "create" => ("create collections", "restore or readWrite"),
            "insert" => ("insert documents", "restore or readWrite"),
            "createIndexes" => ("create indexes", "restore or readWrite"),
            "drop" => ("drop collections", "restore or readWrite"),
            "applyOps" => ("apply oplog entries (applyOps)", "restore"),
            "_mergeAuthzCollections" | "createUser" | "dropUser" | "createRole" | "dropRole" => {
                ("restore users and roles", "restore")
            }
            other => {
                return Error::MongoPermission {
                    target,
                    privilege: format!("run {other}"),
                    db,
                    grant: "backup (or restore, for restores)".into(),
                }
            }
        };
        Error::MongoPermission {
            target,
            privilege: privilege.into(),
            db,
            grant: grant.into(),
        }
    }
}

/// Keeps only the first line and at most `max` characters of third-party text.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.chars().count() > max {
        let mut s: String = line.chars().take(max).collect();
        s.push('…');
        s
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permission_error_names_the_database_of_our_command_when_the_server_does_not() {
        let e = Error::permission(
            "mongodb://u:***@h/".into(),
            "getMore on shop.orders after 4000 documents",
            "command getMore requires authentication",
        );
        assert_eq!(
            e.to_string(),
            "the user lacks the privilege to read collections on shop: grant it the backup or read role"
        );
        let e = Error::permission("t".into(), "listDatabases", "refused");
        assert!(e.to_string().contains("on the server"), "{e}");
        let e = Error::permission(
            "t".into(),
            "find on x.y",
            "not authorized on other to execute command { find: \"y\" }",
        );
        assert!(e.to_string().contains("read collections on other"), "{e}");
    }
}
