//! Streaming multipart upload with a bounded window of parts in flight.
//!
//! Memory: the part being filled plus at most `upload_concurrency` parts being sent, i.e.
//! `part_size × (upload_concurrency + 1)` at the current part size. The multipart upload is
//! only created once a full part exists, so a small object costs a single PutObject and
//! leaves nothing to abort.
//!
//! No size ceiling: the first parts are sized for the expected object (so that it fits in
//! nine tenths of S3's 10,000 parts), and the part size doubles after every
//! `part_growth_every` parts (S3 allows parts of different sizes), so an object larger than
//! expected still fits, up to S3's 5 TiB object limit.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;

use super::{lock, object_settings, S3Store};
use crate::error::StoreError;
use crate::store::{Retention, UploadReceipt};

pub(crate) struct S3Upload {
    store: S3Store,
    key: String,
    full_key: String,
    part_size: usize,
    max_parts: u32,
    growth_every: u32,
    window: usize,
    buf: BytesMut,
    upload_id: Option<String>,
    next_part: i32,
    in_flight: JoinSet<Result<CompletedPart, StoreError>>,
    completed: Vec<CompletedPart>,
    size: u64,
    failed: Option<String>,
    done: bool,
    /// Object Lock retention of the object created.
    retention: Option<Retention>,
}

impl S3Upload {
    pub(crate) fn new(
        store: S3Store,
        key: String,
        full_key: String,
        expected_size: Option<u64>,
    ) -> S3Upload {
        let opts = &store.inner.opts;
        let part_size =
            crate::store::options::first_part_size(opts.part_size, expected_size, opts.max_parts);
        let (max_parts, growth_every) = (opts.max_parts, opts.part_growth_every);
        let window = opts.upload_concurrency;
        S3Upload {
            store,
            key,
            full_key,
            part_size,
            max_parts,
            growth_every,
            window,
            buf: BytesMut::new(),
            upload_id: None,
            next_part: 1,
            in_flight: JoinSet::new(),
            completed: Vec::new(),
            size: 0,
            failed: None,
            done: false,
            retention: None,
        }
    }

    pub(crate) fn retained(mut self, retention: Retention) -> S3Upload {
        self.retention = Some(retention);
        self
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn bytes_written(&self) -> u64 {
        self.size
    }

    fn fail(&mut self, err: StoreError) -> StoreError {
        if self.failed.is_none() {
            self.failed = Some(err.to_string());
        }
        err
    }

    fn failed_error(&self) -> Option<StoreError> {
        self.failed.as_ref().map(|cause| StoreError::UploadFailed {
            key: self.key.clone(),
            cause: cause.clone(),
        })
    }

    pub(crate) async fn write(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        // Report a failed part as early as possible rather than at the next full window.
        while let Some(joined) = self.in_flight.try_join_next() {
            self.collect(joined)?;
        }
        while !chunk.is_empty() {
            if self.buf.is_empty() && chunk.len() >= self.part_size {
                // A whole part straight from the caller's buffer: no copy.
                let part = chunk.split_to(self.part_size);
                self.size += part.len() as u64;
                self.send_part(part).await?;
                continue;
            }
            if self.buf.capacity() == 0 {
                self.buf.reserve(self.part_size);
            }
            let take = (self.part_size - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk.split_to(take));
            self.size += take as u64;
            if self.buf.len() == self.part_size {
                let part = std::mem::take(&mut self.buf).freeze();
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    fn collect(
        &mut self,
        joined: Result<Result<CompletedPart, StoreError>, tokio::task::JoinError>,
    ) -> Result<(), StoreError> {
        match joined {
            Ok(Ok(part)) => {
                self.completed.push(part);
                Ok(())
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(join) => Err(self.fail(StoreError::S3 {
                op: "UploadPart",
                code: "TaskFailed".into(),
                message: join.to_string(),
                status: None,
            })),
        }
    }

    async fn create_multipart(&mut self) -> Result<String, StoreError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let inner = &self.store.inner;
        let mut req = inner
            .client
            .create_multipart_upload()
            .bucket(&inner.bucket)
            .key(&self.full_key);
        if let Some(r) = &self.retention {
            req = req
                .object_lock_mode(lock::lock_mode(r.mode))
                .object_lock_retain_until_date(lock::date(r.until));
        }
        let out = object_settings!(req, inner.opts)
            .send()
            .await
            .map_err(|e| {
                self.store
                    .err("CreateMultipartUpload", Some(&self.full_key), e)
            })?;
        let id = out
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| StoreError::S3 {
                op: "CreateMultipartUpload",
                code: "InvalidResponse".into(),
                message: "the response carries no upload id".into(),
                status: None,
            })?;
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Waits for room in the window, then starts uploading `part`.
    async fn send_part(&mut self, part: Bytes) -> Result<(), StoreError> {
        let upload_id = match self.create_multipart().await {
            Ok(id) => id,
            Err(e) => return Err(self.fail(e)),
        };
        while self.in_flight.len() >= self.window {
            if let Some(joined) = self.in_flight.join_next().await {
                self.collect(joined)?;
            }
        }
        if u32::try_from(self.next_part).unwrap_or(u32::MAX) > self.max_parts {
            let e = StoreError::TooManyParts {
                key: self.key.clone(),
                max_parts: self.max_parts,
                part_size: self.part_size,
            };
            return Err(self.fail(e));
        }
        let number = self.next_part;
        self.next_part += 1;
        if self.growth_every > 0 && u32::try_from(number).unwrap_or(0) % self.growth_every == 0 {
            let grown = (self.part_size * 2).min(crate::store::MAX_PART_SIZE);
            if grown != self.part_size {
                tracing::info!(
                    key = self.key,
                    part = number,
                    part_size = grown,
                    "larger parts from here on"
                );
            }
            self.part_size = grown;
        }
        let store = self.store.clone();
        let full_key = self.full_key.clone();
        self.in_flight.spawn(async move {
            let inner = &store.inner;
            let len = part.len();
            // Every part carries its digest: S3 verifies it, and refuses a part of a locked
            // object (default bucket retention included) without one.
            let md5 = Some(lock::content_md5(&part));
            let out = inner
                .client
                .upload_part()
                .bucket(&inner.bucket)
                .key(&full_key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(i64::try_from(len).unwrap_or(i64::MAX))
                .set_content_md5(md5)
                .body(ByteStream::from(part))
                .customize()
                .config_override(store.transfer())
                .send()
                .await
                .map_err(|e| store.err("UploadPart", Some(&full_key), e))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build())
        });
        Ok(())
    }

    pub(crate) async fn finish(mut self, if_absent: bool) -> Result<UploadReceipt, StoreError> {
        let result = self.try_finish(if_absent).await;
        if let Err(e) = &result {
            if let Err(abort_err) = self.cleanup().await {
                tracing::warn!(
                    key = %self.full_key,
                    upload_id = self.upload_id.as_deref().unwrap_or(""),
                    error = %abort_err,
                    "could not abort the multipart upload after a failed finish; remove it with abort_incomplete_uploads or a lifecycle rule"
                );
            }
            tracing::debug!(key = %self.key, error = %e, "upload failed at finish");
        }
        self.done = true;
        result
    }

    async fn try_finish(&mut self, if_absent: bool) -> Result<UploadReceipt, StoreError> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        if self.upload_id.is_none() {
            let body = std::mem::take(&mut self.buf).freeze();
            let (etag, version_id) = match &self.retention {
                Some(r) => {
                    self.store
                        .put_retained(&self.key, body, if_absent, r)
                        .await?
                }
                None => self.store.put(&self.key, body, if_absent).await?,
            };
            return Ok(UploadReceipt {
                key: self.key.clone(),
                size: self.size,
                etag,
                version_id,
                parts: 0,
            });
        }
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf).freeze();
            self.send_part(last).await?;
        }
        while let Some(joined) = self.in_flight.join_next().await {
            self.collect(joined)?;
        }
        let upload_id = self.upload_id.clone().unwrap_or_default();
        let mut parts = std::mem::take(&mut self.completed);
        parts.sort_by_key(|p| p.part_number());
        let count = parts.len();
        let inner = &self.store.inner;
        let mut req = inner
            .client
            .complete_multipart_upload()
            .bucket(&inner.bucket)
            .key(&self.full_key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if if_absent {
            req = req.if_none_match("*");
        }
        // S3 may take minutes to assemble a large object before it answers.
        let out = req
            .customize()
            .config_override(self.store.transfer())
            .send()
            .await
            .map_err(|e| {
                match self
                    .store
                    .err("CompleteMultipartUpload", Some(&self.full_key), e)
                {
                    StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
                        key: self.key.clone(),
                    },
                    other => other,
                }
            });
        let out = match out {
            Ok(o) => o,
            Err(e) => return Err(self.fail(e)),
        };
        // The upload is complete: there is nothing left to abort.
        self.upload_id = None;
        if let Some(r) = &self.retention {
            self.store
                .put_retention(&self.full_key, out.version_id(), r)
                .await?;
        }
        Ok(UploadReceipt {
            key: self.key.clone(),
            size: self.size,
            etag: out.e_tag().map(str::to_string),
            version_id: out.version_id().map(str::to_string),
            parts: count,
        })
    }

    /// Stops parts in flight, then aborts the multipart upload, if one was created.
    async fn cleanup(&mut self) -> Result<(), StoreError> {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        self.buf = BytesMut::new();
        match self.upload_id.take() {
            Some(id) => {
                let r = self.store.abort_multipart(&self.full_key, &id).await;
                if r.is_err() {
                    self.upload_id = Some(id);
                }
                r
            }
            None => Ok(()),
        }
    }

    pub(crate) async fn abort(mut self) -> Result<(), StoreError> {
        let r = self.cleanup().await;
        self.done = true;
        r
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(upload_id) = self.upload_id.take() else {
            // Nothing was sent to S3 yet; parts in flight are cancelled with the JoinSet.
            return;
        };
        let store = self.store.clone();
        let full_key = self.full_key.clone();
        let mut in_flight = std::mem::take(&mut self.in_flight);
        tracing::warn!(
            key = %self.full_key,
            upload_id = %upload_id,
            "upload dropped before finish; aborting its multipart upload"
        );
        let background = store.inner.background.clone();
        let (key_for_log, id_for_log) = (full_key.clone(), upload_id.clone());
        let spawned = background.spawn(async move {
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
            if let Err(e) = store.abort_multipart(&full_key, &upload_id).await {
                tracing::warn!(
                    key = %full_key,
                    upload_id = %upload_id,
                    error = %e,
                    "could not abort a dropped multipart upload; remove it with abort_incomplete_uploads or a lifecycle rule"
                );
            }
        });
        if !spawned {
            tracing::warn!(
                key = %key_for_log,
                upload_id = %id_for_log,
                "no async runtime to abort a dropped multipart upload; remove it with abort_incomplete_uploads or a lifecycle rule"
            );
        }
    }
}
