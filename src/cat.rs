//! `nightdump cat`: a stored archive to a writer (stdout), so any backup can be piped straight
//! into `mongorestore --gzip --archive`. An encrypted backup is decrypted on the way (each
//! 64 KiB age chunk is authenticated before any of it is written); `raw` writes the stored
//! bytes as they are. Either way the stored bytes' size and SHA-256 are checked against the
//! manifest as they stream, and a mismatch fails the command (exit 6) after the last byte, so
//! `set -o pipefail; nightdump cat … | mongorestore …` never reports success over damage.

use std::io::Read;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::catalog::{resolve, Selector};
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::verify::HashingReader;

/// Writes the chunks `rx` yields to `out` until they end or a write fails: the bytes
/// written, and the failure. The receiver is dropped before returning, so a producer blocked
/// on it stops.
pub(crate) async fn pump(
    mut rx: mpsc::Receiver<Bytes>,
    out: &mut (impl AsyncWrite + Unpin),
) -> (u64, Option<std::io::Error>) {
    let mut written = 0u64;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = out.write_all(&chunk).await {
            return (written, Some(e));
        }
        written += chunk.len() as u64;
    }
    (written, None)
}

/// Writes the archive of `selector` to `out`: decrypted with `keys` when it is encrypted,
/// unless `raw`.
pub async fn cat(
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
    let (copied, sha) = if raw || manifest.archive.encryption.scheme == "none" {
        let mut hasher = Sha256::new();
        let mut copied = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buf).await.map_err(|e| {
                Error::Store(crate::store::StoreError::Io {
                    path: manifest.archive.key.clone().into(),
                    source: e,
                })
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            copied += n as u64;
            out.write_all(&buf[..n])
                .await
                .map_err(|e| output_failed(&id.to_string(), copied, &e))?;
        }
        out.flush()
            .await
            .map_err(|e| output_failed(&id.to_string(), copied, &e))?;
        (copied, hex::encode(hasher.finalize()))
    } else {
        // Decryption is synchronous: it runs on a blocking thread and hands plaintext over
        // a small bounded channel, which keeps memory bounded.
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let name = format!("backup {id}");
        let id_text = id.to_string();
        let encryption = manifest.archive.encryption.clone();
        let handle = tokio::runtime::Handle::current();
        let decrypt = tokio::task::spawn_blocking(move || -> Result<(u64, String)> {
            let bridge = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle);
            let mut hashing = HashingReader::new(bridge);
            {
                let buffered = std::io::BufReader::with_capacity(256 * 1024, &mut hashing);
                let mut plain =
                    crate::crypto::decrypting(&name, &encryption, keys.as_ref(), buffered)?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = plain.read(&mut buf).map_err(|e| Error::Integrity {
                        id: id_text.clone(),
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
            let (size, sha) = hashing
                .finish()
                .map_err(|e| Error::Internal(format!("reading {name} failed: {e}")))?;
            Ok((size, hex::encode(sha)))
        });
        let (written, write_error) = pump(rx, &mut out).await;
        let decrypted = decrypt
            .await
            .map_err(|e| Error::Internal(format!("the decryptor crashed: {e}")))?;
        if let Some(e) = write_error {
            return Err(output_failed(&id.to_string(), written, &e));
        }
        let stored = decrypted?;
        out.flush()
            .await
            .map_err(|e| output_failed(&id.to_string(), written, &e))?;
        stored
    };
    if copied != manifest.archive.size || sha != manifest.archive.sha256 {
        return Err(Error::Integrity {
            id: id.to_string(),
            detail: format!(
                "the stored object is {copied} bytes with SHA-256 {sha}, the manifest says {} bytes with {}: what was written is not this backup; restore from another (`nightdump list`)",
                manifest.archive.size, manifest.archive.sha256
            ),
        });
    }
    Ok(())
}

/// The output could not take the archive: most often the reading end of a pipe stopped
/// (mongorestore failed or was stopped) and the pipe closed.
fn output_failed(id: &str, written: u64, e: &std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::Interrupted(format!(
            "the output pipe was closed by its reader after {written} bytes of backup {id}: the archive was not written whole; see why the reading command stopped"
        ))
    } else {
        Error::Interrupted(format!(
            "writing backup {id} to the output failed after {written} bytes: {e}"
        ))
    }
}
