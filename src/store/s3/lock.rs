//! S3 Object Lock: the bucket check, retention on new objects, and reading it back (from
//! HeadObject).
//!
//! S3 requires an integrity header on every request that creates a locked object (PutObject,
//! UploadPart): Content-MD5 is computed here, as every S3-compatible store accepts it.

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::ObjectLockLegalHoldStatus;
use aws_sdk_s3::types::{
    ObjectLockEnabled, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode,
};
use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};
use time::OffsetDateTime;

use super::{errors, S3Store};
use crate::error::StoreError;
use crate::store::lock::LockState;
use crate::store::lock::{LockMode, Retention};

/// The `Content-MD5` header value of `body`.
pub(super) fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
}

pub(super) fn lock_mode(mode: LockMode) -> ObjectLockMode {
    match mode {
        LockMode::Governance => ObjectLockMode::Governance,
        LockMode::Compliance => ObjectLockMode::Compliance,
    }
}

pub(super) fn date(t: OffsetDateTime) -> DateTime {
    DateTime::from_secs(t.unix_timestamp())
}

impl S3Store {
    /// Fails when the bucket does not have Object Lock enabled, so a backup meant to be
    /// locked is refused before it starts. A role that may not read the bucket's lock
    /// configuration is let through: the first locked put then fails on its own.
    pub(crate) async fn check_object_lock(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let result = inner
            .client
            .get_object_lock_configuration()
            .bucket(&inner.bucket)
            .send()
            .await;
        match result {
            Ok(out) => {
                let enabled = out
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled);
                if enabled {
                    Ok(())
                } else {
                    Err(StoreError::ObjectLockDisabled {
                        bucket: inner.bucket.clone(),
                    })
                }
            }
            Err(e) if errors::code(&e) == Some("ObjectLockConfigurationNotFoundError") => {
                Err(StoreError::ObjectLockDisabled {
                    bucket: inner.bucket.clone(),
                })
            }
            Err(e) if errors::status(&e) == Some(403) => {
                tracing::warn!(
                    bucket = %inner.bucket,
                    "cannot read the bucket's Object Lock configuration (s3:GetBucketObjectLockConfiguration denied); the first locked upload will tell"
                );
                Ok(())
            }
            Err(e) => Err(self.err("GetObjectLockConfiguration", None, e)),
        }
    }

    /// A single PutObject, retained as `retention` says; `Ok((etag, version))`.
    pub(crate) async fn put_retained(
        &self,
        key: &str,
        bytes: Bytes,
        if_absent: bool,
        retention: &Retention,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let full = self.full_key(key);
        let req = self
            .put_request(&full, bytes)
            .object_lock_mode(lock_mode(retention.mode))
            .object_lock_retain_until_date(date(retention.until));
        self.send_put(req, key, &full, if_absent).await
    }

    /// Sets `retention` on a version of a full key. Used after CompleteMultipartUpload as
    /// well as the lock headers on CreateMultipartUpload: some S3-compatible stores ignore
    /// those, and an archive believed locked must be.
    pub(crate) async fn put_retention(
        &self,
        full_key: &str,
        version_id: Option<&str>,
        retention: &Retention,
    ) -> Result<(), StoreError> {
        let body = ObjectLockRetention::builder()
            .mode(match retention.mode {
                LockMode::Governance => ObjectLockRetentionMode::Governance,
                LockMode::Compliance => ObjectLockRetentionMode::Compliance,
            })
            .retain_until_date(date(retention.until))
            .build();
        self.inner
            .client
            .put_object_retention()
            .bucket(&self.inner.bucket)
            .key(full_key)
            .set_version_id(version_id.map(str::to_string))
            .retention(body)
            .send()
            .await
            .map_err(|e| self.err("PutObjectRetention", Some(full_key), e))?;
        Ok(())
    }

    /// The retention of the current version of `key`, from HeadObject (which needs only
    /// s3:GetObject, and S3 fills in for callers allowed s3:GetObjectRetention); `None` when
    /// it has none, is missing, or the caller may not see it.
    pub(crate) async fn lock_state(&self, key: &str) -> Result<LockState, StoreError> {
        let Some(out) = self.head_object(key).await? else {
            return Ok(LockState::default());
        };
        let legal_hold =
            out.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On);
        let mode = match out.object_lock_mode() {
            Some(ObjectLockMode::Compliance) => Some(LockMode::Compliance),
            Some(ObjectLockMode::Governance) => Some(LockMode::Governance),
            _ => None,
        };
        let until = out
            .object_lock_retain_until_date()
            .and_then(|d| OffsetDateTime::from_unix_timestamp(d.secs()).ok());
        let retention = match (mode, until) {
            (Some(mode), Some(until)) => Some(Retention { mode, until }),
            _ => None,
        };
        Ok(LockState {
            retention,
            legal_hold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_is_base64_of_the_digest() {
        // RFC 1321's test vector for "abc".
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
    }
}
