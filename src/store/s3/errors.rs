//! Turns AWS SDK errors into [`StoreError`]s a caller can act on.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::error::StoreError;

/// What was being done when the error happened, for the message.
pub(crate) struct Context<'a> {
    pub op: &'static str,
    pub bucket: &'a str,
    /// Full S3 key, when the operation is about one object.
    pub key: Option<&'a str>,
    pub endpoint: &'a str,
}

/// The error and its sources on one line.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text.replace(['\n', '\r'], " ")
}

fn credentials_problem(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(match c {
                CredentialsError::CredentialsNotLoaded(_) => {
                    "no credential source is configured".into()
                }
                other => chain(other),
            });
        }
        current = e.source();
    }
    None
}

/// The most specific message in the chain (the innermost source), e.g. "Connection refused".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(s) = current.source() {
        current = s;
    }
    current.to_string().replace(['\n', '\r'], " ")
}

pub(crate) fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        SdkError::ResponseError(r) => Some(r.raw().status().as_u16()),
        _ => None,
    }
}

pub(crate) fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// A 404 on an object: the key (not the bucket) does not exist.
pub(crate) fn is_missing_object<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(404) && code(err) != Some("NoSuchBucket")
}

pub(crate) fn map<E>(ctx: &Context<'_>, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(detail) = credentials_problem(&err) {
        return StoreError::NoCredentials { detail };
    }
    let target = match ctx.key {
        Some(k) => format!("s3://{}/{k}", ctx.bucket),
        None => format!("s3://{}", ctx.bucket),
    };
    match &err {
        SdkError::TimeoutError(_) => StoreError::Timeout {
            op: ctx.op,
            endpoint: ctx.endpoint.to_string(),
        },
        SdkError::DispatchFailure(d) if d.is_timeout() => StoreError::Timeout {
            op: ctx.op,
            endpoint: ctx.endpoint.to_string(),
        },
        // Which request could not be sent tells what the failure cost (a part, the
        // manifest…), so it leads the detail.
        SdkError::DispatchFailure(_) => StoreError::Unreachable {
            endpoint: ctx.endpoint.to_string(),
            detail: format!("{} {target}: {}", ctx.op, root_cause(&err)),
        },
        SdkError::ConstructionFailure(_) => {
            let detail = chain(&err);
            if detail.contains("region") {
                StoreError::NoRegion
            } else {
                StoreError::S3 {
                    op: ctx.op,
                    code: "RequestNotBuilt".into(),
                    message: detail,
                    status: None,
                }
            }
        }
        SdkError::ResponseError(_) => StoreError::S3 {
            op: ctx.op,
            code: "InvalidResponse".into(),
            message: chain(&err),
            status: status(&err),
        },
        SdkError::ServiceError(s) => {
            let http = s.raw().status().as_u16();
            let message = s
                .err()
                .message()
                .unwrap_or_default()
                .replace(['\n', '\r'], " ");
            let code = s
                .err()
                .code()
                .map(str::to_string)
                .unwrap_or_else(|| match http {
                    301 => "PermanentRedirect".into(),
                    403 => "AccessDenied".into(),
                    404 => "NotFound".into(),
                    412 => "PreconditionFailed".into(),
                    503 => "SlowDown".into(),
                    _ => format!("Http{http}"),
                });
            match code.as_str() {
                "NoSuchBucket" => StoreError::NoSuchBucket {
                    bucket: ctx.bucket.to_string(),
                },
                "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException" => StoreError::WrongRegion {
                    bucket: ctx.bucket.to_string(),
                },
                "PreconditionFailed" => StoreError::AlreadyExists {
                    key: ctx.key.unwrap_or_default().to_string(),
                },
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "TokenRefreshRequired" => StoreError::AccessDenied {
                    target,
                    fix: format!(
                        "the AWS credentials were rejected ({code}); refresh or replace them"
                    ),
                },
                _ if code == "AccessDenied" || code == "AllAccessDisabled" || http == 403 => {
                    let fix = if message.to_ascii_lowercase().contains("kms") {
                        "grant kms:GenerateDataKey and kms:Decrypt on the KMS key to this role"
                            .to_string()
                    } else {
                        format!(
                            "grant s3:{} on {target} to the role or user in use",
                            iam_action(ctx.op)
                        )
                    };
                    StoreError::AccessDenied { target, fix }
                }
                _ => StoreError::S3 {
                    op: ctx.op,
                    code,
                    message,
                    status: Some(http),
                },
            }
        }
        _ => StoreError::S3 {
            op: ctx.op,
            code: "Unknown".into(),
            message: chain(&err),
            status: None,
        },
    }
}

/// The IAM action an S3 operation needs, for "grant …" hints.
fn iam_action(op: &str) -> &'static str {
    match op {
        "HeadBucket" | "ListObjectsV2" => "ListBucket",
        "GetObject" | "HeadObject" => "GetObject",
        "DeleteObjects" => "DeleteObject",
        "ListMultipartUploads" => "ListBucketMultipartUploads",
        "AbortMultipartUpload" => "AbortMultipartUpload",
        _ => "PutObject",
    }
}
