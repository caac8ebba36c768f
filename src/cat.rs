//! `nightdump cat`: a stored archive to a writer (stdout), so any backup can be piped straight
//! into `mongorestore --gzip --archive`. An encrypted backup is decrypted on the way (each
//! 64 KiB age chunk is authenticated before any of it is written); `raw` writes the stored
//! bytes as they are.

use std::io::Read;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::catalog::{resolve, Selector};
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::verify::HashingReader;

pub async fn cat(store: &Store, selector: &Selector, out: impl AsyncWrite + Unpin) -> Result<()> {
    cat_with_keys(store, selector, None, false, out).await
}

/// Writes the archive of `selector` to `out`: decrypted with `keys` when it is encrypted,
/// unless `raw`.
pub async fn cat_with_keys(
    store: &Store,
    selector: &Selector,
    keys: Option<&Keys>,
    raw: bool,
    mut out: impl AsyncWrite + Unpin,
) -> Result<()> {
    let (id, manifest) = resolve(store, selector).await?;
    let keys = if raw {
        None
    } else {
        crate::crypto::ready_keys(&id.to_string(), &manifest.archive.encryption, keys).await?
    };
    let mut reader = store
        .open_read(&manifest.archive.key)
        .await?
        .ok_or_else(|| Error::Integrity {
            id: id.to_string(),
            detail: format!(
                "the manifest names {} but that object is missing",
                manifest.archive.key
            ),
        })?;
    let copied = if raw || manifest.archive.encryption.scheme == "none" {
        let copied = tokio::io::copy(&mut reader, &mut out)
            .await
            .map_err(|e| Error::Internal(format!("copying backup {id} failed: {e}")))?;
        out.flush()
            .await
            .map_err(|e| Error::Internal(format!("flushing backup {id} failed: {e}")))?;
        copied
    } else {
        // Decryption is synchronous: it runs on a blocking thread and hands plaintext over
        // a small bounded channel, which keeps memory bounded.
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let name = format!("backup {id}");
        let encryption = manifest.archive.encryption.clone();
        let handle = tokio::runtime::Handle::current();
        let decrypt = tokio::task::spawn_blocking(move || -> Result<u64> {
            let bridge = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle);
            let mut hashing = HashingReader::new(bridge);
            {
                let buffered = std::io::BufReader::with_capacity(256 * 1024, &mut hashing);
                let mut plain =
                    crate::crypto::decrypting(&name, &encryption, keys.as_ref(), buffered)?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = plain.read(&mut buf).map_err(|e| Error::Integrity {
                        id: name.clone(),
                        detail: e.to_string(),
                    })?;
                    if n == 0 {
                        break;
                    }
                    if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        return Err(Error::Interrupted("the output was closed".into()));
                    }
                }
            }
            let (size, _) = hashing
                .finish()
                .map_err(|e| Error::Internal(format!("reading {name} failed: {e}")))?;
            Ok(size)
        });
        let mut write_error = None;
        while let Some(chunk) = rx.recv().await {
            if let Err(e) = out.write_all(&chunk).await {
                write_error = Some(e);
                break;
            }
        }
        drop(rx);
        let decrypted = decrypt
            .await
            .map_err(|e| Error::Internal(format!("the decryptor crashed: {e}")))?;
        if let Some(e) = write_error {
            return Err(Error::Internal(format!("writing backup {id} failed: {e}")));
        }
        let size = decrypted?;
        out.flush()
            .await
            .map_err(|e| Error::Internal(format!("flushing backup {id} failed: {e}")))?;
        size
    };
    if copied != manifest.archive.size {
        return Err(Error::Integrity {
            id: id.to_string(),
            detail: format!(
                "read {copied} bytes, the manifest says {}",
                manifest.archive.size
            ),
        });
    }
    Ok(())
}
