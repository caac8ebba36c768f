//! nightdump's errors.
//!
//! Rules: every message is one line that names what went wrong and what to do about it; no
//! message ever holds a password, a secret value or key material (driver and SDK messages are
//! scrubbed before they are wrapped); each variant maps to a documented exit code and to a
//! stable Lambda `errorType`, so scripts and alarms can branch on them.

use nightdump_archive::ArchiveError;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad option, URL, pattern or setting: nothing was touched.
    #[error("{0}")]
    Invalid(String),

    #[error(
        "cannot reach MongoDB at {target}: {detail}. Check host, port, network and TLS settings"
    )]
    MongoUnreachable { target: String, detail: String },

    #[error("lost the connection to MongoDB at {target} during {detail}; nothing was marked successful: run it again")]
    MongoConnectionLost { target: String, detail: String },

    #[error("MongoDB authentication failed for {target}: {detail}. Check the user name, password and authSource")]
    MongoAuth { target: String, detail: String },

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
        report: Box<crate::restore::RestoreReport>,
    },

    #[error("backup {id} not found at {destination}: run `nightdump list --from {destination}` to see the backups")]
    BackupNotFound { id: String, destination: String },

    #[error("no successful backup at {destination} yet: run `nightdump backup --to {destination}` first")]
    NoBackups { destination: String },

    #[error("integrity check failed for backup {id}: {detail}")]
    Integrity { id: String, detail: String },

    #[error("the last successful backup ({id}) is {age} old, older than the allowed {max_age}")]
    Stale {
        id: String,
        age: String,
        max_age: String,
    },

    #[error("stopped before the deadline: {0}. Nothing was marked successful; raise the timeout or reduce --parallel")]
    Deadline(String),

    #[error("interrupted: {0}")]
    Interrupted(String),

    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Exit codes, documented in the README.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) => 2,
            Error::MongoUnreachable { .. }
            | Error::MongoConnectionLost { .. }
            | Error::MongoAuth { .. }
            | Error::Mongo { .. } => 3,
            Error::Store(_) => 4,
            Error::BackupNotFound { .. } | Error::NoBackups { .. } => 5,
            Error::Integrity { .. } | Error::Archive(_) | Error::ArchiveAt { .. } => 6,
            Error::Stale { .. } => 7,
            Error::Deadline(_) | Error::Interrupted(_) => 8,
            Error::RestoreFailed { .. } => 9,
            Error::Internal(_) => 1,
        }
    }

    /// A stable name for Lambda's `errorType` and for JSON output.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "InvalidConfiguration",
            Error::MongoUnreachable { .. } => "MongoUnreachable",
            Error::MongoConnectionLost { .. } => "MongoConnectionLost",
            Error::MongoAuth { .. } => "MongoAuthenticationFailed",
            Error::Mongo { .. } => "MongoCommandFailed",
            Error::Store(_) => "StorageFailed",
            Error::Archive(_) | Error::ArchiveAt { .. } => "ArchiveInvalid",
            Error::RestoreFailed { .. } => "RestoreFailed",
            Error::BackupNotFound { .. } => "BackupNotFound",
            Error::NoBackups { .. } => "NoBackups",
            Error::Integrity { .. } => "IntegrityCheckFailed",
            Error::Stale { .. } => "BackupStale",
            Error::Deadline(_) => "DeadlineReached",
            Error::Interrupted(_) => "Interrupted",
            Error::Internal(_) => "InternalError",
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
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
