//! Settings of the S3 backend.

use crate::error::StoreError;

/// Smallest part S3 accepts for every part but the last.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 2;
/// S3's limit on parts per multipart upload.
pub const MAX_PARTS: u32 = 10_000;
/// The part size doubles after every this many parts, so any object up to S3's 5 TiB limit
/// fits in 10,000 parts whatever the first part's size (8 MiB doubling every 1,000 parts
/// reaches about 8 TB).
pub const PART_GROWTH_EVERY: u32 = 1_000;
/// Attempts per request (first try included) for transient failures.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Server-side encryption requested for new objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Sse {
    /// Whatever the bucket's default encryption does.
    #[default]
    None,
    /// SSE-S3 (`AES256`).
    S3,
    /// SSE-KMS (`aws:kms`); without a key id S3 uses the account's `aws/s3` key.
    Kms { key_id: Option<String> },
}

/// Long enough for an 8 MiB part over a slow uplink (about 28 KB/s), short enough that a
/// stalled connection is noticed well inside a Lambda timeout. Applies to requests that carry
/// or finish a large body (UploadPart, a large PutObject, CompleteMultipartUpload); the SDK's
/// stalled-stream protection fails an upload that stops moving long before.
pub const DEFAULT_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Every other request (list, head, get until its body starts, a small put, delete) answers
/// in well under a second on a live endpoint: an endpoint that accepts connections and stays
/// silent then fails within a minute ([`DEFAULT_MAX_ATTEMPTS`] attempts), with a warning at
/// the first retry, rather than holding `list` or `status` for 15 minutes.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(12);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Options {
    /// Custom endpoint; when `None` the standard `AWS_ENDPOINT_URL(_S3)` variables apply.
    pub endpoint_url: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`). Always used for IP-address and
    /// `localhost` endpoints, where virtual-hosted addressing cannot work.
    pub force_path_style: bool,
    /// Region; when `None` the standard chain (`AWS_REGION`, profile, IMDS) applies.
    pub region: Option<String>,
    pub sse: Sse,
    /// e.g. `STANDARD_IA`, `GLACIER_IR`; `None` for the bucket default (`STANDARD`).
    pub storage_class: Option<String>,
    /// Bytes of the first multipart parts (at least 5 MiB); an upload whose expected size
    /// needs more starts larger, and every upload doubles its part size after each
    /// `part_growth_every` parts. Memory use of an upload is at most
    /// `current part size × (upload_concurrency + 1)`.
    pub part_size: usize,
    /// Parts a multipart upload may have (S3's 10,000; lower only in tests).
    pub max_parts: u32,
    /// Parts between two doublings of the part size; 0 never grows it.
    pub part_growth_every: u32,
    /// Parts in flight at once (at least 1).
    pub upload_concurrency: usize,
    /// Attempts per request for transient failures (5xx, SlowDown, connection errors).
    pub max_attempts: u32,
    /// Longest one request attempt may take before it is abandoned (and retried): a stalled
    /// connection must fail, never hang the backup.
    pub attempt_timeout: std::time::Duration,
    /// Longest one attempt of any other request may take (see [`DEFAULT_REQUEST_TIMEOUT`]).
    pub request_timeout: std::time::Duration,
    /// S3 Object Lock on every object of a backup; the bucket must have Object Lock enabled.
    pub object_lock: Option<super::ObjectLock>,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint_url: None,
            force_path_style: false,
            region: None,
            sse: Sse::None,
            storage_class: None,
            part_size: DEFAULT_PART_SIZE,
            max_parts: MAX_PARTS,
            part_growth_every: PART_GROWTH_EVERY,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            object_lock: None,
        }
    }
}

/// The size of an upload's first parts: the configured size, or larger when the object is
/// expected to be so big that it would need more than nine tenths of the parts at that size
/// (rounded up to a whole MiB, at most S3's largest part).
pub fn first_part_size(part_size: usize, expected: Option<u64>, max_parts: u32) -> usize {
    const MIB: u64 = 1024 * 1024;
    let Some(expected) = expected else {
        return part_size;
    };
    let budget = (u64::from(max_parts) * 9 / 10).max(1);
    let needed = expected.div_ceil(budget).div_ceil(MIB) * MIB;
    usize::try_from(needed)
        .unwrap_or(MAX_PART_SIZE)
        .max(part_size)
        .min(MAX_PART_SIZE)
}

impl S3Options {
    /// Rejects settings S3 would refuse later, before any request is made.
    pub fn validate(&self) -> Result<(), StoreError> {
        let fail = |reason: String| Err(StoreError::InvalidOptions { reason });
        if self.part_size < MIN_PART_SIZE || self.part_size > MAX_PART_SIZE {
            return fail(format!(
                "part size {} is outside S3's limits: use {MIN_PART_SIZE} to {MAX_PART_SIZE} bytes",
                self.part_size
            ));
        }
        if self.max_parts == 0 || self.max_parts > MAX_PARTS {
            return fail(format!(
                "max parts {} must be between 1 and {MAX_PARTS}",
                self.max_parts
            ));
        }
        if self.upload_concurrency == 0 || self.upload_concurrency > 64 {
            return fail(format!(
                "upload concurrency {} must be between 1 and 64",
                self.upload_concurrency
            ));
        }
        if self.max_attempts == 0 || self.max_attempts > 10 {
            return fail(format!(
                "max attempts {} must be between 1 and 10",
                self.max_attempts
            ));
        }
        if let Sse::Kms { key_id: Some(k) } = &self.sse {
            if k.trim().is_empty() {
                return fail("the KMS key id is empty: give a key id, ARN or alias".into());
            }
        }
        if let Some(lock) = &self.object_lock {
            lock.validate().map_err(|e| StoreError::InvalidOptions {
                reason: format!("Object Lock: {e}"),
            })?;
        }
        if let Some(class) = &self.storage_class {
            if class.is_empty() || !class.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                return fail(format!(
                    "storage class {class:?} is not a valid S3 storage class name (e.g. STANDARD_IA)"
                ));
            }
        }
        if let Some(url) = &self.endpoint_url {
            let parsed = url::Url::parse(url).map_err(|_| StoreError::InvalidOptions {
                reason: "the endpoint URL is not a valid http(s) URL".into(),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return fail("the endpoint URL must be an http(s) URL with a host".into());
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return fail("credentials are not accepted in the endpoint URL".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_parts_fit_the_expected_size_in_nine_tenths_of_the_parts() {
        const MIB: usize = 1 << 20;
        assert_eq!(super::first_part_size(8 * MIB, None, 10_000), 8 * MIB);
        assert_eq!(
            super::first_part_size(8 * MIB, Some(1 << 30), 10_000),
            8 * MIB
        );
        // 200 GiB in 9,000 parts: 23 MiB each, rounded up to a whole MiB.
        let big = super::first_part_size(8 * MIB, Some(200 << 30), 10_000);
        assert_eq!(big, 23 * MIB);
        assert!(200u64 << 30 <= big as u64 * 9_000);
        assert_eq!(
            super::first_part_size(8 * MIB, Some(u64::MAX), 10_000),
            super::MAX_PART_SIZE
        );
    }

    use super::*;

    #[test]
    fn validation() {
        assert!(S3Options::default().validate().is_ok());
        let bad = [
            S3Options {
                part_size: MIN_PART_SIZE - 1,
                ..Default::default()
            },
            S3Options {
                upload_concurrency: 0,
                ..Default::default()
            },
            S3Options {
                storage_class: Some("standard ia".into()),
                ..Default::default()
            },
            S3Options {
                sse: Sse::Kms {
                    key_id: Some(" ".into()),
                },
                ..Default::default()
            },
            S3Options {
                endpoint_url: Some("ftp://x".into()),
                ..Default::default()
            },
            S3Options {
                endpoint_url: Some("http://user:secret@x".into()),
                ..Default::default()
            },
        ];
        for opts in bad {
            let err = opts.validate().unwrap_err();
            assert!(matches!(err, StoreError::InvalidOptions { .. }), "{opts:?}");
            assert!(!err.to_string().contains("secret"));
        }
    }
}
