//! Errors of the storage layer (kept here, with the crate's other errors, so that the error
//! module depends on no feature module).
//!
//! Rules: every variant is something a caller can act on (retry, tell the user a precise fix,
//! map to an exit code); messages are one line, name the path/bucket/key concerned and the fix,
//! and never contain credentials.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    InvalidDestination(#[from] DestinationError),
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("invalid S3 options: {reason}")]
    InvalidOptions { reason: String },
    /// A path the destination needs does not exist.
    #[error("{path} does not exist: create the directory or choose another destination")]
    NotFound { path: PathBuf },
    #[error("{path} is not a directory: choose a directory as the destination")]
    NotADirectory { path: PathBuf },
    /// Permission refused, on a local path or by S3/IAM. `target` names what was refused.
    #[error("access denied to {target}: {fix}")]
    AccessDenied { target: String, fix: String },
    #[error("S3 bucket {bucket:?} does not exist: create it or fix the destination URL")]
    NoSuchBucket { bucket: String },
    #[error("S3 bucket {bucket:?} is in another region: set AWS_REGION (or --region) to the bucket's region")]
    WrongRegion { bucket: String },
    #[error("no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with an IAM role ({detail})")]
    NoCredentials { detail: String },
    #[error("no AWS region configured: set AWS_REGION or pass --region")]
    NoRegion,
    #[error("disk full while writing {path}: free space on that file system or choose another destination")]
    DiskFull { path: PathBuf },
    #[error(
        "{key} already exists at the destination: choose another key or remove the existing object"
    )]
    AlreadyExists { key: String },
    #[error("cannot reach {endpoint} ({detail}): check the network, the endpoint URL and that the service is running")]
    Unreachable { endpoint: String, detail: String },
    #[error("S3 {op} timed out against {endpoint}: check the network or retry later")]
    Timeout { op: &'static str, endpoint: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("S3 {op} failed{}: {code}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    S3 {
        op: &'static str,
        code: String,
        message: String,
        status: Option<u16>,
    },
    #[error(
        "upload of {key} needs more than {max_parts} parts (the last ones of {part_size} bytes): set a larger --part-size (NIGHTDUMP_PART_SIZE for the Lambda)"
    )]
    TooManyParts {
        key: String,
        max_parts: u32,
        part_size: usize,
    },
    #[error("S3 bucket {bucket:?} does not have Object Lock enabled: create the bucket with Object Lock (it cannot be turned on for the backups already in it), or leave out --object-lock (for the Lambda: NIGHTDUMP_OBJECT_LOCK, the template's ObjectLock parameter)")]
    ObjectLockDisabled { bucket: String },
    #[error("Object Lock needs an S3 destination; {destination} is a directory: back up to s3://BUCKET/PREFIX or leave out --object-lock (for the Lambda: NIGHTDUMP_OBJECT_LOCK, the template's ObjectLock parameter)")]
    ObjectLockNeedsS3 { destination: String },
    /// A streaming upload already failed; only `abort` is possible now.
    #[error("upload of {key} already failed ({cause}): abort it and start again")]
    UploadFailed { key: String, cause: String },
}

impl StoreError {
    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } | StoreError::Timeout { .. } => true,
            StoreError::S3 { code, status, .. } => {
                status.is_some_and(|s| s >= 500 || s == 429)
                    || matches!(
                        code.as_str(),
                        "SlowDown"
                            | "RequestTimeout"
                            | "InternalError"
                            | "ServiceUnavailable"
                            | "ConditionalRequestConflict"
                            | "RequestTimeTooSkewed"
                    )
            }
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }

    /// Maps an I/O error on a local path to the variant a caller can act on.
    /// As [`StoreError::from_io`], for a failure to read (list) `path`: the fix is to make it
    /// readable, not writable.
    pub(crate) fn from_read_io(path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        let path = path.into();
        match source.kind() {
            io::ErrorKind::PermissionDenied => StoreError::AccessDenied {
                target: path.display().to_string(),
                fix: "make it readable by this user, or move it out of the destination".into(),
            },
            _ => StoreError::from_io(path, source),
        }
    }

    pub(crate) fn from_io(path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        let path = path.into();
        match source.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound { path },
            io::ErrorKind::NotADirectory => StoreError::NotADirectory { path },
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                StoreError::AccessDenied {
                    target: path.display().to_string(),
                    fix: "make it writable by this user or choose another destination".into(),
                }
            }
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                StoreError::DiskFull { path }
            }
            _ => StoreError::Io { path, source },
        }
    }
}

/// Why a destination string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("empty destination: give a directory path, file:///abs/path or s3://bucket/prefix")]
    Empty,
    #[error("destination {url:?} names no bucket: use s3://bucket or s3://bucket/prefix")]
    MissingBucket { url: String },
    #[error("invalid S3 bucket name {bucket:?}: {reason}")]
    InvalidBucket {
        bucket: String,
        reason: &'static str,
    },
    #[error("invalid S3 prefix in {url:?}: {reason}")]
    InvalidPrefix { url: String, reason: &'static str },
    #[error(
        "credentials are not accepted in destination URLs: use AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an IAM role"
    )]
    CredentialsInUrl,
    #[error("unsupported destination scheme {scheme:?}: use a directory path, file:///abs/path or s3://bucket/prefix")]
    UnsupportedScheme { scheme: String },
    #[error("invalid file URL {url:?}: {reason}")]
    InvalidFileUrl { url: String, reason: &'static str },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_actionable_variants() {
        let enospc = io::Error::from_raw_os_error(28);
        let e = StoreError::from_io("/b/x", enospc);
        assert!(matches!(e, StoreError::DiskFull { .. }), "{e:?}");
        assert!(e.to_string().contains("/b/x"));
        let e = StoreError::from_io("/b", io::Error::from_raw_os_error(13));
        assert!(matches!(e, StoreError::AccessDenied { .. }), "{e:?}");
        let e = StoreError::from_io("/b", io::Error::from_raw_os_error(20));
        assert!(matches!(e, StoreError::NotADirectory { .. }), "{e:?}");
        let e = StoreError::from_io("/b", io::Error::from_raw_os_error(2));
        assert!(matches!(e, StoreError::NotFound { .. }), "{e:?}");
        assert!(!e.is_retryable());
    }

    #[test]
    fn retryable_classification() {
        let s3 = |code: &str, status| StoreError::S3 {
            op: "PutObject",
            code: code.into(),
            message: String::new(),
            status,
        };
        assert!(s3("SlowDown", Some(503)).is_retryable());
        assert!(s3("InternalError", Some(500)).is_retryable());
        assert!(s3("Whatever", Some(502)).is_retryable());
        assert!(!s3("AccessDenied", Some(403)).is_retryable());
        assert!(!s3("InvalidStorageClass", Some(400)).is_retryable());
        assert_eq!(
            s3("SlowDown", Some(503)).to_string(),
            "S3 PutObject failed (HTTP 503): SlowDown: "
        );
        let down = StoreError::Unreachable {
            endpoint: "http://127.0.0.1:1".into(),
            detail: "connection refused".into(),
        };
        assert!(down.is_retryable());
        assert!(!StoreError::AlreadyExists { key: "k".into() }.is_retryable());
    }
}
