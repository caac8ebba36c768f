//! Storage destinations: a local directory or an S3 bucket/prefix, behind one small API.
//!
//! Large objects are streamed in bounded memory through [`Upload`]; only [`Upload::finish`]
//! makes an object visible, so a failed or abandoned backup never looks like a finished one.
//! Small objects (manifests) are written atomically with [`Store::put`].

mod aws;
mod background;
mod destination;
mod key;
mod local;
mod lock;
mod options;
mod reader;
mod s3;

use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;

pub use crate::error::StoreError;
pub use aws::{https_client, load_sdk_config};
pub use destination::{Destination, DestinationError};
pub use lock::{LockMode, LockState, ObjectLock, Retention, MAX_RETAIN_FOR};
pub use options::{
    first_part_size, S3Options, Sse, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PART_SIZE, DEFAULT_REQUEST_TIMEOUT, DEFAULT_UPLOAD_CONCURRENCY, MAX_PARTS,
    MAX_PART_SIZE, MIN_PART_SIZE, PART_GROWTH_EVERY,
};
pub use reader::ObjectReader;

use background::Background;
use local::{LocalStore, LocalUpload};
use s3::{S3Store, S3Upload};

/// Whether a write may replace an object that is already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is at the key.
    #[default]
    Overwrite,
    /// Fail with [`StoreError::AlreadyExists`] rather than replace an object (S3's
    /// `If-None-Match: *`, a hard link locally): the first of two writers wins.
    Create,
}

/// How an object is written (by [`Store::put`] or an [`Upload`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub mode: PutMode,
    /// S3 Object Lock retention the object is created with (S3 only).
    pub retention: Option<Retention>,
    /// How big the object is expected to be (an estimate): an S3 upload that would need
    /// more parts than S3 allows at the configured part size starts with larger parts.
    pub expected_size: Option<u64>,
}

impl PutOptions {
    /// Create only: never replace an existing object.
    pub fn create() -> Self {
        Self {
            mode: PutMode::Create,
            retention: None,
            expected_size: None,
        }
    }

    /// With Object Lock retention, when there is one.
    pub fn retained(self, retention: Option<Retention>) -> Self {
        Self { retention, ..self }
    }

    /// With an estimate of the object's size.
    pub fn expecting(self, expected_size: Option<u64>) -> Self {
        Self {
            expected_size,
            ..self
        }
    }

    fn if_absent(&self) -> bool {
        self.mode == PutMode::Create
    }
}

/// What a destination knows about one stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the destination's root or prefix.
    pub key: String,
    pub size: u64,
    pub last_modified: Option<OffsetDateTime>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// S3 storage class when it is not `STANDARD` (S3 omits it for `STANDARD` on HEAD).
    pub storage_class: Option<String>,
    /// Server-side encryption as stored: `AES256`, `aws:kms`, ….
    pub sse: Option<String>,
    /// The KMS key (usually its ARN) that encrypts the object, for SSE-KMS.
    pub kms_key_id: Option<String>,
}

impl ObjectInfo {
    fn new(key: String, size: u64) -> ObjectInfo {
        ObjectInfo {
            key,
            size,
            last_modified: None,
            etag: None,
            version_id: None,
            storage_class: None,
            sse: None,
            kms_key_id: None,
        }
    }
}

/// Proof that a streamed upload completed and the object now exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadReceipt {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// Multipart parts used; 0 for a single PUT or a local file.
    pub parts: usize,
}

/// An open destination. Cheap to clone; clones share connections and background clean-up.
#[derive(Clone)]
pub struct Store {
    dest: Destination,
    backend: Backend,
    background: Background,
}

#[derive(Clone)]
enum Backend {
    Local(LocalStore),
    S3(S3Store),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dest", &self.dest).finish()
    }
}

impl Store {
    /// Opens and checks access fast (HeadBucket / directory exists and is writable), with errors
    /// that name the fix: missing bucket, access denied, missing directory, not a directory, no
    /// credentials. AWS settings come from `s3` and the standard `AWS_*` configuration chain.
    pub async fn open(dest: &Destination, s3: &S3Options) -> Result<Store, StoreError> {
        match dest {
            Destination::Local { .. } => {
                refuse_lock(dest, s3)?;
                Self::open_local(dest).await
            }
            Destination::S3 { .. } => {
                s3.validate()?;
                let sdk = load_sdk_config(s3).await;
                Self::open_with_sdk_config(dest, &sdk, s3).await
            }
        }
    }

    /// Like [`Store::open`], with an AWS configuration built by the caller (shared clients,
    /// explicit credentials). Settings in `s3` take precedence over those in `sdk`.
    pub async fn open_with_sdk_config(
        dest: &Destination,
        sdk: &aws_config::SdkConfig,
        s3: &S3Options,
    ) -> Result<Store, StoreError> {
        match dest {
            Destination::Local { .. } => {
                refuse_lock(dest, s3)?;
                Self::open_local(dest).await
            }
            Destination::S3 { bucket, prefix } => {
                s3.validate()?;
                let background = Background::default();
                let store = S3Store::open(sdk, bucket, prefix, s3, background.clone()).await?;
                Ok(Store {
                    dest: dest.clone(),
                    backend: Backend::S3(store),
                    background,
                })
            }
        }
    }

    async fn open_local(dest: &Destination) -> Result<Store, StoreError> {
        let Destination::Local { root } = dest else {
            return Err(StoreError::InvalidOptions {
                reason: "not a local destination".into(),
            });
        };
        let store = LocalStore::open(root.clone()).await?;
        Ok(Store {
            dest: dest.clone(),
            backend: Backend::Local(store),
            background: Background::default(),
        })
    }

    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    /// Key-relative streaming upload (keys are relative to the destination's root/prefix,
    /// "/"-separated), written as `options` say. Nothing is visible at `key` until
    /// [`Upload::finish`] succeeds.
    pub async fn start_upload(&self, key: &str, options: PutOptions) -> Result<Upload, StoreError> {
        key::validate(key)?;
        let inner = match (&self.backend, options.retention) {
            (Backend::Local(_), Some(_)) => return Err(self.lock_needs_s3()),
            (Backend::Local(l), None) => UploadInner::Local(l.start_upload(key).await?),
            (Backend::S3(s), None) => UploadInner::S3(s.start_upload(key, options.expected_size)),
            (Backend::S3(s), Some(r)) => {
                UploadInner::S3(s.start_upload(key, options.expected_size).retained(r))
            }
        };
        Ok(Upload {
            inner,
            mode: options.mode,
        })
    }

    /// The Object Lock retention of an object's current version; `None` when it has none,
    /// does not exist, or the destination is a directory.
    pub async fn retention(&self, key: &str) -> Result<Option<Retention>, StoreError> {
        Ok(self.lock_state(key).await?.retention)
    }

    /// The Object Lock retention and legal hold of an object's current version (nothing for
    /// a missing object or a directory).
    pub async fn lock_state(&self, key: &str) -> Result<LockState, StoreError> {
        key::validate(key)?;
        match &self.backend {
            Backend::Local(_) => Ok(LockState::default()),
            Backend::S3(s) => s.lock_state(key).await,
        }
    }

    fn lock_needs_s3(&self) -> StoreError {
        StoreError::ObjectLockNeedsS3 {
            destination: self.dest.to_string(),
        }
    }

    /// Small object written atomically (single PUT / temp file + rename), as `options` say:
    /// [`PutMode::Create`] fails with [`StoreError::AlreadyExists`] instead of replacing.
    pub async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        options: PutOptions,
    ) -> Result<(), StoreError> {
        key::validate(key)?;
        let if_absent = options.if_absent();
        match (&self.backend, options.retention) {
            (Backend::Local(_), Some(_)) => Err(self.lock_needs_s3()),
            (Backend::Local(l), None) => l.put(key, bytes, if_absent).await,
            (Backend::S3(s), None) => s.put(key, bytes, if_absent).await.map(|_| ()),
            (Backend::S3(s), Some(r)) => {
                s.put_retained(key, bytes, if_absent, &r).await.map(|_| ())
            }
        }
    }

    /// Replaces a small object by what `decide` makes of its current content (`None`: the
    /// object is absent), atomically against concurrent updates of the same key: S3 writes are
    /// conditional on the ETag read (retried with a fresh read when another writer got there
    /// first), a directory is locked for the read and the write. `decide` returning `None`
    /// leaves the object alone. Returns whether it was written.
    pub async fn update<F>(&self, key: &str, decide: F) -> Result<bool, StoreError>
    where
        F: Fn(Option<&[u8]>) -> Option<Bytes> + Send + Sync + 'static,
    {
        key::validate(key)?;
        match &self.backend {
            Backend::Local(l) => l.update(key, decide).await,
            Backend::S3(s) => s.update(key, &decide).await,
        }
    }

    /// Reads a small object whole; `None` if it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        key::validate(key)?;
        match &self.backend {
            Backend::Local(l) => l.get(key).await,
            Backend::S3(s) => s.get(key).await,
        }
    }

    /// Streaming read of a (large) object in bounded memory; `None` if it does not exist.
    pub async fn open_read(&self, key: &str) -> Result<Option<ObjectReader>, StoreError> {
        key::validate(key)?;
        match &self.backend {
            Backend::Local(l) => l.open_read(key).await,
            Backend::S3(s) => s.open_read(key).await,
        }
    }

    /// Size, date, and encryption/storage class as stored; `None` if it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        key::validate(key)?;
        match &self.backend {
            Backend::Local(l) => l.head(key).await,
            Backend::S3(s) => s.head(key).await,
        }
    }

    /// Every object whose key starts with `prefix` (a plain string prefix, recursive), sorted
    /// by key, keys relative to the destination. Unfinished uploads are not listed.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        key::validate_prefix(prefix)?;
        match &self.backend {
            Backend::Local(l) => l.list(prefix).await,
            Backend::S3(s) => s.list(prefix).await,
        }
    }

    /// Deletes the objects; keys that do not exist are ignored.
    pub async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for k in keys {
            key::validate(k)?;
        }
        match &self.backend {
            Backend::Local(l) => l.delete(keys).await,
            Backend::S3(s) => s.delete(keys).await,
        }
    }

    /// Keys of uploads that were started and neither finished nor aborted: S3 multipart
    /// uploads in progress; locally, leftover temp files (as their own relative paths).
    pub async fn list_incomplete_uploads(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        key::validate_prefix(prefix)?;
        match &self.backend {
            Backend::Local(l) => l.list_incomplete_uploads(prefix).await,
            Backend::S3(s) => s
                .list_incomplete_uploads(prefix)
                .await
                .map(|v| v.into_iter().map(|u| u.key).collect()),
        }
    }

    /// Removes incomplete uploads under `prefix` started more than `older_than` ago (so that a
    /// concurrent backup's upload is left alone). Returns how many were removed.
    pub async fn abort_incomplete_uploads(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<usize, StoreError> {
        key::validate_prefix(prefix)?;
        match &self.backend {
            Backend::Local(l) => l.abort_incomplete_uploads(prefix, older_than).await,
            Backend::S3(s) => s.abort_incomplete_uploads(prefix, older_than).await,
        }
    }

    /// Waits until clean-up started in the background (aborts of dropped uploads) is done.
    /// Call before a process or Lambda invocation ends so no multipart upload is left behind.
    pub async fn settle(&self) {
        self.background.settle().await;
    }
}

fn refuse_lock(dest: &Destination, s3: &S3Options) -> Result<(), StoreError> {
    match s3.object_lock {
        Some(_) => Err(StoreError::ObjectLockNeedsS3 {
            destination: dest.to_string(),
        }),
        None => Ok(()),
    }
}

/// A streaming upload in progress. Only [`Upload::finish`] makes the object exist; dropping an
/// upload that was neither finished nor aborted aborts it in the background (see
/// [`Store::settle`]) and logs a warning.
pub struct Upload {
    inner: UploadInner,
    mode: PutMode,
}

enum UploadInner {
    Local(LocalUpload),
    S3(S3Upload),
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("key", &self.key())
            .field("bytes_written", &self.bytes_written())
            .finish()
    }
}

impl Upload {
    /// The key this upload will create.
    pub fn key(&self) -> &str {
        match &self.inner {
            UploadInner::Local(u) => u.key(),
            UploadInner::S3(u) => u.key(),
        }
    }

    /// Bytes accepted by `write` so far.
    pub fn bytes_written(&self) -> u64 {
        match &self.inner {
            UploadInner::Local(u) => u.bytes_written(),
            UploadInner::S3(u) => u.bytes_written(),
        }
    }

    /// Buffers into parts of `part_size` and uploads with at most `upload_concurrency` parts in
    /// flight, waiting when the window is full. Locally, appends to a hidden temp file in the
    /// key's directory. After an error the upload can only be aborted.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        match &mut self.inner {
            UploadInner::Local(u) => u.write(chunk).await,
            UploadInner::S3(u) => u.write(chunk).await,
        }
    }

    /// Writes every chunk `chunks` yields until its senders are gone. On an error the
    /// receiver is dropped with it, which is what stops a producer blocked on a full channel.
    pub async fn drain(
        &mut self,
        mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> Result<(), StoreError> {
        while let Some(chunk) = chunks.recv().await {
            self.write(chunk).await?;
        }
        Ok(())
    }

    /// Completes the upload: CompleteMultipartUpload (a single PutObject if smaller than one
    /// part); locally fsync, rename into place, fsync the directory. Started with
    /// [`PutMode::Create`], fails with [`StoreError::AlreadyExists`] rather than replace an
    /// existing object. On error nothing is visible at the key and the partial upload is
    /// aborted (best effort).
    pub async fn finish(self) -> Result<UploadReceipt, StoreError> {
        let if_absent = self.mode == PutMode::Create;
        match self.inner {
            UploadInner::Local(u) => u.finish(if_absent).await,
            UploadInner::S3(u) => u.finish(if_absent).await,
        }
    }

    /// Discards the upload: AbortMultipartUpload (retried) / removes the temp file.
    pub async fn abort(self) -> Result<(), StoreError> {
        match self.inner {
            UploadInner::Local(u) => u.abort().await,
            UploadInner::S3(u) => u.abort().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uploads and stores move between tasks; readers feed blocking decoders on other threads.
    #[test]
    fn handles_are_thread_safe() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        fn unpin<T: Unpin>() {}
        send_sync::<Store>();
        send_sync::<StoreError>();
        send::<Upload>();
        send::<ObjectReader>();
        unpin::<ObjectReader>();
    }
}
