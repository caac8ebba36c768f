//! AWS KMS for envelope encryption: a fresh data key per backup from `GenerateDataKey`, bound
//! to the backup by the encryption context, and unwrapped again with `Decrypt`.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use super::envelope::DataKey;
use crate::error::{Error, Result};

/// The encryption context key naming the backup a data key belongs to. KMS refuses to unwrap
/// the key under any other context, and CloudTrail shows it with every use.
pub const CONTEXT_KEY: &str = "nightdump:backup";

/// A KMS client. Clones share connections.
#[derive(Clone)]
pub struct Kms {
    client: aws_sdk_kms::Client,
}

impl fmt::Debug for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kms")
    }
}

/// A data key as KMS handed it out: the plaintext (wiped on drop) and its wrapped form.
pub struct NewDataKey {
    pub key: DataKey,
    pub wrapped: Vec<u8>,
    /// The key's ARN as KMS reports it (an alias resolved).
    pub key_arn: String,
}

fn context(backup_id: &str) -> HashMap<String, String> {
    HashMap::from([(CONTEXT_KEY.to_string(), backup_id.to_string())])
}

impl Kms {
    /// A client on an AWS configuration built by the caller (shared HTTP client, endpoint
    /// override, explicit credentials).
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            client: aws_sdk_kms::Client::new(sdk),
        }
    }

    /// A client from the standard AWS configuration chain, in `region` when given (the
    /// region of a key ARN), else the chain's. `AWS_ENDPOINT_URL_KMS` and `AWS_ENDPOINT_URL`
    /// are honoured.
    pub async fn from_env(region: Option<&str>) -> Self {
        let sdk = crate::store::load_sdk_config(&crate::store::S3Options::default()).await;
        let mut config = aws_sdk_kms::config::Builder::from(&sdk);
        if let Some(region) = region {
            config = config.region(aws_config::Region::new(region.to_string()));
        }
        Self {
            client: aws_sdk_kms::Client::from_conf(config.build()),
        }
    }

    /// As [`Kms::from_env`], in the region named by `key_id` when it is an ARN.
    pub async fn for_key(key_id: Option<&str>) -> Self {
        Self::from_env(key_id.and_then(arn_region)).await
    }

    /// A client on the caller's AWS configuration, in the region named by `key_id` when it is
    /// an ARN (a key lives in one region; the configuration's region may be another, e.g. a
    /// Lambda function's own). The one way both front ends reach a key.
    pub fn for_key_with(sdk: &aws_config::SdkConfig, key_id: Option<&str>) -> Self {
        let mut config = aws_sdk_kms::config::Builder::from(sdk);
        if let Some(region) = key_id.and_then(arn_region) {
            config = config.region(aws_config::Region::new(region.to_string()));
        }
        Self {
            client: aws_sdk_kms::Client::from_conf(config.build()),
        }
    }

    /// The region requests go to.
    pub fn region(&self) -> Option<String> {
        self.client.config().region().map(|r| r.to_string())
    }

    /// A new 256-bit data key under `key_id`, bound to `backup_id`.
    pub async fn generate(&self, key_id: &str, backup_id: &str) -> Result<NewDataKey> {
        let out = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context(backup_id)))
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", key_id, backup_id, e))?;
        let plaintext = out.plaintext().map(|b| b.as_ref()).unwrap_or_default();
        let mut key: DataKey = Zeroizing::new([0u8; 32]);
        if plaintext.len() != key.len() {
            return Err(Error::Kms(format!(
                "KMS GenerateDataKey on {key_id} returned a {}-byte key, not 32: is the key symmetric (SYMMETRIC_DEFAULT)?",
                plaintext.len()
            )));
        }
        key.copy_from_slice(plaintext);
        let wrapped = out
            .ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .filter(|w| !w.is_empty())
            .ok_or_else(|| {
                Error::Kms(format!(
                    "KMS GenerateDataKey on {key_id} returned no wrapped key"
                ))
            })?;
        Ok(NewDataKey {
            key,
            wrapped,
            key_arn: out.key_id().unwrap_or(key_id).to_string(),
        })
    }

    /// Unwraps the data key of `backup_id`; with `key_id`, KMS refuses a key wrapped by
    /// another KMS key.
    pub async fn unwrap(
        &self,
        key_id: Option<&str>,
        wrapped: &[u8],
        backup_id: &str,
    ) -> Result<DataKey> {
        let out = self
            .client
            .decrypt()
            .set_key_id(key_id.map(str::to_string))
            .ciphertext_blob(Blob::new(wrapped.to_vec()))
            .set_encryption_context(Some(context(backup_id)))
            .send()
            .await
            .map_err(|e| kms_error("Decrypt", key_id.unwrap_or("(any)"), backup_id, e))?;
        let plaintext = out.plaintext().map(|b| b.as_ref()).unwrap_or_default();
        let mut key: DataKey = Zeroizing::new([0u8; 32]);
        if plaintext.len() != key.len() {
            return Err(Error::Integrity {
                id: backup_id.to_string(),
                detail: format!(
                    "the wrapped data key unwraps to {} bytes, not 32: the manifest's wrapped_key is not a nightdump data key",
                    plaintext.len()
                ),
            });
        }
        key.copy_from_slice(plaintext);
        Ok(key)
    }
}

/// The region of a KMS key ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID`).
pub fn arn_region(key_id: &str) -> Option<&str> {
    let mut parts = key_id.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("kms"), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

fn kms_error<E, R>(op: &str, key_id: &str, backup_id: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let (code, message) = match &e {
        SdkError::ServiceError(se) => (
            se.err().code().unwrap_or("Unknown").to_string(),
            se.err().message().unwrap_or_default().to_string(),
        ),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            return Error::Kms(format!(
                "KMS {op} on {key_id} failed: KMS is unreachable ({}); check the network, the region and AWS_ENDPOINT_URL_KMS",
                crate::error::one_line(&aws_error_text(&e), 200)
            ))
        }
        _ => ("Unknown".to_string(), aws_error_text(&e)),
    };
    let message = crate::error::one_line(&message, 200);
    // KMS (and emulators) may send no message: then nothing is added, not an empty "()".
    let detail = if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    };
    let verb = if op == "Decrypt" {
        "kms:Decrypt"
    } else {
        "kms:GenerateDataKey"
    };
    match code.as_str() {
        "NotFoundException" => Error::Kms(format!(
            "KMS key {key_id} not found: pass kms:<key id, key ARN or alias/NAME> of an existing symmetric key in the right region{detail}"
        )),
        "AccessDeniedException" => Error::Kms(format!(
            "KMS refused {op} on {key_id} for backup {backup_id}: grant {verb} on that key to the role or user in use, or the data key was wrapped by another KMS key{detail}"
        )),
        "IncorrectKeyException" => Error::Kms(format!(
            "the data key of backup {backup_id} was wrapped by another KMS key than {key_id}: the manifest's kms_key_id is wrong{detail}"
        )),
        "InvalidCiphertextException" => Error::Integrity {
            id: backup_id.to_string(),
            detail: format!(
                "KMS cannot unwrap the data key: the manifest's wrapped_key is damaged or belongs to another backup{detail}"
            ),
        },
        "DisabledException" => Error::Kms(format!(
            "KMS key {key_id} is disabled: enable it to {}{detail}",
            if op == "Decrypt" { "decrypt this backup" } else { "encrypt backups" }
        )),
        "KMSInvalidStateException" => Error::Kms(format!(
            "KMS key {key_id} cannot be used now (pending deletion or import?): check its state{detail}"
        )),
        "InvalidKeyUsageException" => Error::Kms(format!(
            "KMS key {key_id} is not a symmetric ENCRYPT_DECRYPT key: use one{detail}"
        )),
        _ => Error::Kms(format!("KMS {op} on {key_id} failed: {code}{detail}")),
    }
}

fn aws_error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_arn_chooses_the_region_whatever_the_configuration_says() {
        let sdk = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let arn = "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(
            Kms::for_key_with(&sdk, Some(arn)).region().as_deref(),
            Some("us-east-2")
        );
        assert_eq!(
            Kms::for_key_with(&sdk, Some("alias/backups"))
                .region()
                .as_deref(),
            Some("eu-west-1")
        );
    }

    #[test]
    fn an_error_without_a_message_ends_without_empty_brackets() {
        let e = kms_error::<aws_sdk_kms::operation::decrypt::DecryptError, ()>(
            "Decrypt",
            "k",
            "20261125T030000Z",
            SdkError::service_error(
                aws_sdk_kms::operation::decrypt::DecryptError::generic(
                    aws_sdk_kms::error::ErrorMetadata::builder()
                        .code("AccessDeniedException")
                        .build(),
                ),
                (),
            ),
        );
        let text = e.to_string();
        assert!(!text.contains("()"), "{text}");
        assert!(text.ends_with("wrapped by another KMS key"), "{text}");
    }

    #[test]
    fn arn_regions() {
        assert_eq!(
            arn_region("arn:aws:kms:eu-west-1:123456789012:key/1234"),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws-us-gov:kms:us-gov-west-1:1:alias/x"),
            Some("us-gov-west-1")
        );
        assert_eq!(arn_region("alias/backups"), None);
        assert_eq!(arn_region("1234abcd-12ab-34cd-56ef-1234567890ab"), None);
    }
}
