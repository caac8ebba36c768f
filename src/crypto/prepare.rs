//! The asynchronous half of encryption: KMS calls happen here, before the synchronous
//! stream starts, so a wrong key or a refused call fails before anything is written or
//! restored.

use std::io::{self, Write};
use std::sync::Arc;

use base64::Engine;

use super::envelope::EnvelopeWriter;
use super::keys::{Encrypt, Keys, Unwrapped};
use super::kms::Kms;
use crate::error::{Error, Result};
use crate::manifest::Encryption;
use crate::sink::{FinishWrite, SinkWrapper, Stored};

/// What a backup needs to encrypt its archive.
pub struct Prepared {
    /// The stored object's file name (`dump.archive.gz.age` / `.enc`).
    pub archive_name: String,
    pub wrap: SinkWrapper,
    /// The manifest's record: recipients or key id and wrapped key, never key material.
    pub encryption: Encryption,
}

struct KmsSink(EnvelopeWriter<Box<dyn FinishWrite>>);

impl Write for KmsSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl FinishWrite for KmsSink {
    fn finish_stream(self: Box<Self>) -> io::Result<Stored> {
        self.0.finish()?.finish_stream()
    }
}

impl Encrypt {
    /// Sets up encryption for backup `backup_id`: for KMS, a fresh data key from
    /// `GenerateDataKey` bound to the backup by the encryption context.
    pub async fn prepare(&self, backup_id: &str) -> Result<Prepared> {
        match self {
            Encrypt::Age { .. } => Ok(Prepared {
                archive_name: self.archive_name(),
                wrap: self.sink_wrapper()?,
                encryption: self.manifest_entry(),
            }),
            Encrypt::Kms { key_id, kms } => {
                let kms = match kms {
                    Some(k) => k.clone(),
                    None => Kms::for_key(Some(key_id)).await,
                };
                let generated = kms.generate(key_id, backup_id).await?;
                let encryption = Encryption {
                    scheme: "kms".into(),
                    recipients: Vec::new(),
                    kms_key_id: Some(generated.key_arn.clone()),
                    wrapped_key: Some(
                        base64::engine::general_purpose::STANDARD.encode(&generated.wrapped),
                    ),
                };
                let key = generated.key;
                let wrap: SinkWrapper = Box::new(move |sink: Box<dyn FinishWrite>| {
                    // The key is dropped (and wiped) as soon as the cipher holds its copy.
                    let writer = EnvelopeWriter::new(&key, sink)?;
                    Ok(Box::new(KmsSink(writer)) as Box<dyn FinishWrite>)
                });
                Ok(Prepared {
                    archive_name: self.archive_name(),
                    wrap,
                    encryption,
                })
            }
        }
    }
}

/// The keys to read backup `backup_id` with, ready for [`super::decrypting`]: for a KMS
/// backup, the data key is unwrapped here with KMS `Decrypt` (the client in `keys`, or one
/// from the standard AWS configuration chain). For age, as [`super::require_keys`].
pub async fn ready_keys(
    backup_id: &str,
    encryption: &Encryption,
    keys: Option<&Keys>,
) -> Result<Option<Keys>> {
    if encryption.scheme != "kms" {
        let name = format!("backup {backup_id}");
        return super::require_keys(&name, encryption, keys).map(|k| k.cloned());
    }
    let damaged = |detail: &str| Error::Integrity {
        id: backup_id.to_string(),
        detail: detail.to_string(),
    };
    let wrapped = encryption
        .wrapped_key
        .as_deref()
        .ok_or_else(|| damaged("the manifest says kms but holds no wrapped_key: it is damaged"))?;
    let wrapped = base64::engine::general_purpose::STANDARD
        .decode(wrapped.trim())
        .map_err(|_| damaged("the manifest's wrapped_key is not base64: it is damaged"))?;
    let key_id = encryption.kms_key_id.as_deref();
    let mut ready = keys.cloned().unwrap_or_default();
    if ready
        .data_key
        .as_ref()
        .is_some_and(|u| u.wrapped == wrapped)
    {
        return Ok(Some(ready));
    }
    let kms = match &ready.kms {
        Some(k) => k.clone(),
        None => {
            let k = Kms::for_key(key_id).await;
            ready.kms = Some(k.clone());
            k
        }
    };
    let key = kms.unwrap(key_id, &wrapped, backup_id).await?;
    ready.data_key = Some(Arc::new(Unwrapped { wrapped, key }));
    Ok(Some(ready))
}
