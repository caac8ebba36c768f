//! A destination in an S3 bucket (or an S3-compatible store) under a key prefix.

mod errors;
mod lock;
mod read;
mod retry_log;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;
use time::OffsetDateTime;

use super::aws::CONNECT_TIMEOUT;
use super::background::Background;
use super::options::S3Options;
use super::{ObjectInfo, ObjectReader};
use crate::error::StoreError;

pub(crate) use upload::S3Upload;

/// DeleteObjects takes at most this many keys per request.
const DELETE_BATCH: usize = 1000;
/// Read-decide-write rounds before a conditional replace gives up on a contended object.
const UPDATE_ATTEMPTS: u32 = 20;

#[derive(Clone)]
pub(crate) struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    bucket: String,
    /// Without leading or trailing '/'; empty for the bucket root.
    prefix: String,
    opts: S3Options,
    /// For error messages only.
    endpoint: String,
    background: Background,
}

/// An unfinished multipart upload.
pub(crate) struct IncompleteUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<OffsetDateTime>,
}

fn to_time(dt: &DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(dt.as_nanos()).ok()
}

/// Virtual-hosted addressing needs DNS names under the endpoint; IPs and localhost have none.
fn needs_path_style(endpoint: &str) -> bool {
    url::Url::parse(endpoint).is_ok_and(|u| match u.host() {
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => true,
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        None => false,
    })
}

/// Applies the encryption and storage class settings to a request that creates an object.
macro_rules! object_settings {
    ($builder:expr, $opts:expr) => {{
        let mut b = $builder;
        match &$opts.sse {
            $crate::store::Sse::None => {}
            $crate::store::Sse::S3 => {
                b = b.server_side_encryption(::aws_sdk_s3::types::ServerSideEncryption::Aes256)
            }
            $crate::store::Sse::Kms { key_id } => {
                b = b.server_side_encryption(::aws_sdk_s3::types::ServerSideEncryption::AwsKms);
                if let Some(k) = key_id {
                    b = b.ssekms_key_id(k.clone());
                }
            }
        }
        if let Some(class) = &$opts.storage_class {
            b = b.storage_class(::aws_sdk_s3::types::StorageClass::from(class.as_str()));
        }
        b
    }};
}
pub(crate) use object_settings;

/// A body up to this size goes out within a request's ordinary time limit.
const SMALL_BODY: usize = 1024 * 1024;

impl S3Store {
    pub(crate) async fn open(
        sdk: &SdkConfig,
        bucket: &str,
        prefix: &str,
        opts: &S3Options,
        background: Background,
    ) -> Result<S3Store, StoreError> {
        let mut builder = aws_sdk_s3::config::Builder::from(sdk)
            .retry_config(RetryConfig::standard().with_max_attempts(opts.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    // A stalled or silent endpoint must fail (and be retried), never hang a
                    // command: requests with large bodies get the longer limit (`transfer`).
                    .operation_attempt_timeout(opts.request_timeout)
                    .build(),
            )
            // Only what S3 requires: S3-compatible stores and emulators often reject the
            // newer default (CRC32 on every upload, aws-chunked bodies).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .interceptor(retry_log::RetryLogger {
                bucket: bucket.to_string(),
            });
        if let Some(url) = &opts.endpoint_url {
            builder = builder.endpoint_url(url.clone());
        }
        let region = opts
            .region
            .clone()
            .map(Region::new)
            .or_else(|| sdk.region().cloned())
            .ok_or(StoreError::NoRegion)?;
        builder = builder.region(region.clone());
        let endpoint = opts
            .endpoint_url
            .clone()
            .or_else(|| sdk.endpoint_url().map(str::to_string))
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        builder = builder.force_path_style(opts.force_path_style || needs_path_style(&endpoint));
        let store = S3Store {
            inner: Arc::new(Inner {
                client: Client::from_conf(builder.build()),
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
                opts: opts.clone(),
                endpoint,
                background,
            }),
        };
        // The access check lists one key under the prefix rather than calling HeadBucket: a
        // least-privilege role (template.yml) may list only under its prefix, and HeadBucket
        // needs bucket-wide ListBucket.
        store
            .inner
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(store.full_prefix(""))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| {
                if errors::code(&e) == Some("NoSuchBucket") || errors::status(&e) == Some(404) {
                    StoreError::NoSuchBucket {
                        bucket: bucket.to_string(),
                    }
                } else {
                    store.err("ListObjectsV2", None, e)
                }
            })?;
        if opts.object_lock.is_some() {
            store.check_object_lock().await?;
        }
        Ok(store)
    }

    fn err<E>(
        &self,
        op: &'static str,
        key: Option<&str>,
        e: aws_sdk_s3::error::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    ) -> StoreError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        errors::map(
            &errors::Context {
                op,
                bucket: &self.inner.bucket,
                key,
                endpoint: &self.inner.endpoint,
            },
            e,
        )
    }

    fn full_key(&self, key: &str) -> String {
        if self.inner.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.inner.prefix)
        }
    }

    /// The listing prefix for a relative prefix; "" lists the whole destination.
    fn full_prefix(&self, prefix: &str) -> String {
        if self.inner.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{prefix}", self.inner.prefix)
        }
    }

    fn relative_key(&self, full: &str) -> Option<String> {
        if self.inner.prefix.is_empty() {
            return Some(full.to_string());
        }
        full.strip_prefix(self.inner.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .map(str::to_string)
    }

    pub(crate) fn start_upload(&self, key: &str, expected_size: Option<u64>) -> S3Upload {
        S3Upload::new(
            self.clone(),
            key.to_string(),
            self.full_key(key),
            expected_size,
        )
    }

    /// A single PutObject; `Ok((etag, version))`.
    pub(crate) async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        if_absent: bool,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let full = self.full_key(key);
        let req = self.put_request(&full, bytes);
        self.send_put(req, key, &full, if_absent).await
    }

    /// A PutObject of `bytes` at a full key, with the store's encryption and storage class,
    /// and Content-MD5: S3 then verifies what it stores, and a bucket with default Object
    /// Lock retention (which refuses a put without an integrity header) takes it.
    fn put_request(&self, full: &str, bytes: Bytes) -> PutObjectFluentBuilder {
        let req = self
            .inner
            .client
            .put_object()
            .bucket(&self.inner.bucket)
            .key(full)
            .content_md5(lock::content_md5(&bytes))
            .content_length(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
            .body(ByteStream::from(bytes));
        object_settings!(req, self.inner.opts)
    }

    /// The configuration of a request that carries or completes a large body: the longer
    /// attempt limit.
    pub(crate) fn transfer(&self) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::default().timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(self.inner.opts.attempt_timeout)
                .build(),
        )
    }

    /// Sends a PutObject of `key` (with `If-None-Match: *` when `if_absent`);
    /// `Ok((etag, version))`.
    async fn send_put(
        &self,
        req: PutObjectFluentBuilder,
        key: &str,
        full: &str,
        if_absent: bool,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let req = if if_absent {
            req.if_none_match("*")
        } else {
            req
        };
        let large = req
            .get_content_length()
            .is_some_and(|n| n > SMALL_BODY as i64);
        let out = if large {
            req.customize()
                .config_override(self.transfer())
                .send()
                .await
        } else {
            req.send().await
        };
        let out = out.map_err(|e| match self.err("PutObject", Some(full), e) {
            StoreError::AlreadyExists { .. } => StoreError::AlreadyExists { key: key.into() },
            other => other,
        })?;
        Ok((
            out.e_tag().map(str::to_string),
            out.version_id().map(str::to_string),
        ))
    }

    /// Read-decide-write of a small object with S3's conditional writes: the PUT carries
    /// `If-Match` with the ETag that was read (`If-None-Match: *` when there was none), so a
    /// writer that lost a race reads again and decides again instead of overwriting.
    pub(crate) async fn update<F>(&self, key: &str, decide: &F) -> Result<bool, StoreError>
    where
        F: Fn(Option<&[u8]>) -> Option<Bytes>,
    {
        let full = self.full_key(key);
        for attempt in 0..UPDATE_ATTEMPTS {
            if attempt > 0 {
                crate::backoff::CONDITIONAL_UPDATE.wait(attempt - 1).await;
            }
            let (current, etag) = match self.get_object(&full).await? {
                None => (None, None),
                Some(out) => {
                    let etag = out.e_tag().map(str::to_string);
                    (Some(self.read_body(&full, out).await?), etag)
                }
            };
            let Some(next) = decide(current.as_deref()) else {
                return Ok(false);
            };
            let req = self.put_request(&full, next);
            let req = match (&current, etag) {
                (None, _) => req.if_none_match("*"),
                (Some(_), Some(etag)) => req.if_match(etag),
                (Some(_), None) => {
                    return Err(StoreError::S3 {
                        op: "GetObject",
                        code: "MissingETag".into(),
                        message: format!(
                            "s3://{}/{full} came without an ETag, so it cannot be replaced safely",
                            self.inner.bucket
                        ),
                        status: None,
                    })
                }
            };
            match req.send().await {
                Ok(_) => return Ok(true),
                // Changed or deleted since it was read, or another conditional write is in
                // flight (409): read again.
                Err(e)
                    if errors::is_missing_object(&e)
                        || matches!(errors::status(&e), Some(409) | Some(412)) => {}
                Err(e) => return Err(self.err("PutObject", Some(&full), e)),
            }
        }
        Err(StoreError::S3 {
            op: "PutObject",
            code: "ConditionalRequestConflict".into(),
            message: format!(
                "s3://{}/{full} kept changing during {UPDATE_ATTEMPTS} attempts to replace it; retry later",
                self.inner.bucket
            ),
            status: Some(409),
        })
    }

    /// GetObject of a full key; a missing object is `None`, not an error.
    async fn get_object(&self, full: &str) -> Result<Option<GetObjectOutput>, StoreError> {
        match self
            .inner
            .client
            .get_object()
            .bucket(&self.inner.bucket)
            .key(full)
            .send()
            .await
        {
            Ok(o) => Ok(Some(o)),
            Err(e) if errors::is_missing_object(&e) => Ok(None),
            Err(e) => Err(self.err("GetObject", Some(full), e)),
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let full = self.full_key(key);
        let Some(out) = self.get_object(&full).await? else {
            return Ok(None);
        };
        Ok(Some(self.read_body(&full, out).await?))
    }

    /// The whole body of a GetObject of a full key.
    async fn read_body(&self, full: &str, out: GetObjectOutput) -> Result<Bytes, StoreError> {
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unreachable {
                endpoint: self.inner.endpoint.clone(),
                detail: format!("reading s3://{}/{full} failed: {e}", self.inner.bucket),
            })?;
        Ok(body.into_bytes())
    }

    pub(crate) async fn open_read(&self, key: &str) -> Result<Option<ObjectReader>, StoreError> {
        let full = self.full_key(key);
        let Some(out) = self.get_object(&full).await? else {
            return Ok(None);
        };
        let size = out.content_length().and_then(|l| u64::try_from(l).ok());
        let etag = out.e_tag().map(str::to_string);
        let body =
            read::ResumingReader::new(self.clone(), full, etag, size, out.body.into_async_read());
        Ok(Some(ObjectReader::new(body, size)))
    }

    /// HeadObject of `key`, `None` when the object is missing: what `head` and `retention`
    /// each read their part of.
    pub(crate) async fn head_object(
        &self,
        key: &str,
    ) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>, StoreError> {
        let full = self.full_key(key);
        match self
            .inner
            .client
            .head_object()
            .bucket(&self.inner.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(o) => Ok(Some(o)),
            Err(e) if errors::is_missing_object(&e) => Ok(None),
            Err(e) => Err(self.err("HeadObject", Some(&full), e)),
        }
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let Some(out) = self.head_object(key).await? else {
            return Ok(None);
        };
        let mut info = ObjectInfo::new(
            key.to_string(),
            out.content_length()
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
        );
        info.last_modified = out.last_modified().and_then(to_time);
        info.etag = out.e_tag().map(str::to_string);
        info.version_id = out.version_id().map(str::to_string);
        info.storage_class = out.storage_class().map(|c| c.as_str().to_string());
        info.sse = out.server_side_encryption().map(|s| s.as_str().to_string());
        info.kms_key_id = out.ssekms_key_id().map(str::to_string);
        Ok(Some(info))
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let full_prefix = self.full_prefix(prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .inner
                .client
                .list_objects_v2()
                .bucket(&self.inner.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.err("ListObjectsV2", None, e))?;
            for obj in page.contents() {
                let Some(key) = obj.key().and_then(|k| self.relative_key(k)) else {
                    continue;
                };
                let mut info = ObjectInfo::new(
                    key,
                    obj.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                );
                info.last_modified = obj.last_modified().and_then(to_time);
                info.etag = obj.e_tag().map(str::to_string);
                info.storage_class = obj.storage_class().map(|c| c.as_str().to_string());
                out.push(info);
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub(crate) async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for batch in keys.chunks(DELETE_BATCH) {
            let mut objects = Vec::with_capacity(batch.len());
            for k in batch {
                let id = ObjectIdentifier::builder()
                    .key(self.full_key(k))
                    .build()
                    .map_err(|e| StoreError::S3 {
                        op: "DeleteObjects",
                        code: "RequestNotBuilt".into(),
                        message: e.to_string(),
                        status: None,
                    })?;
                objects.push(id);
            }
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::S3 {
                    op: "DeleteObjects",
                    code: "RequestNotBuilt".into(),
                    message: e.to_string(),
                    status: None,
                })?;
            let out = self
                .inner
                .client
                .delete_objects()
                .bucket(&self.inner.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.err("DeleteObjects", None, e))?;
            if let Some(failure) = out.errors().first() {
                let key = failure.key().unwrap_or_default();
                let code = failure.code().unwrap_or("Unknown").to_string();
                let message = failure.message().unwrap_or_default().to_string();
                if code == "AccessDenied" {
                    return Err(StoreError::AccessDenied {
                        target: format!("s3://{}/{key}", self.inner.bucket),
                        fix: "grant s3:DeleteObject on the prefix to the role or user in use"
                            .into(),
                    });
                }
                return Err(StoreError::S3 {
                    op: "DeleteObjects",
                    code,
                    message: format!(
                        "{} of {} deletions failed, first {key}: {message}",
                        out.errors().len(),
                        batch.len()
                    ),
                    status: None,
                });
            }
        }
        Ok(())
    }

    pub(crate) async fn list_incomplete_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<IncompleteUpload>, StoreError> {
        let full_prefix = self.full_prefix(prefix);
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .inner
                .client
                .list_multipart_uploads()
                .bucket(&self.inner.bucket)
                .prefix(&full_prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.err("ListMultipartUploads", None, e))?;
            for u in page.uploads() {
                let (Some(key), Some(id)) =
                    (u.key().and_then(|k| self.relative_key(k)), u.upload_id())
                else {
                    continue;
                };
                out.push(IncompleteUpload {
                    key,
                    upload_id: id.to_string(),
                    initiated: u.initiated().and_then(to_time),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub(crate) async fn abort_incomplete_uploads(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<usize, StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut aborted = 0;
        for u in self.list_incomplete_uploads(prefix).await? {
            // An upload without a start time is treated as old: it cannot be shown young.
            let old_enough = u.initiated.is_none_or(|t| now - t >= older_than);
            if old_enough {
                self.abort_multipart(&self.full_key(&u.key), &u.upload_id)
                    .await?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }

    /// AbortMultipartUpload, tried again on transient failures on top of the SDK's own retries
    /// (an unaborted upload costs money until a lifecycle rule removes it). An upload that is
    /// already gone counts as aborted.
    pub(crate) async fn abort_multipart(
        &self,
        full_key: &str,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        let mut rounds = 0;
        loop {
            rounds += 1;
            let result = self
                .inner
                .client
                .abort_multipart_upload()
                .bucket(&self.inner.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e)
                    if errors::code(&e) == Some("NoSuchUpload")
                        || errors::status(&e) == Some(404) =>
                {
                    return Ok(())
                }
                Err(e) => {
                    let err = self.err("AbortMultipartUpload", Some(full_key), e);
                    if !err.is_retryable() || rounds >= 3 {
                        return Err(err);
                    }
                    tracing::warn!(key = full_key, error = %err, "abort of multipart upload failed; trying again");
                    crate::backoff::ABORT_UPLOAD.wait(rounds - 1).await;
                }
            }
        }
    }
}
