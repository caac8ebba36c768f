//! `nightdump verify`: proves a stored backup is whole and restorable without touching
//! MongoDB. It re-reads the stored object and checks, in one streaming pass: the SHA-256 and
//! size against the manifest, gzip integrity, the archive's structure (as strictly as
//! mongorestore parses it), and every namespace's CRC-64 and document count.

use std::collections::HashMap;
use std::io::{self, Read};

use flate2::read::MultiGzDecoder;
use nightdump_archive::{ArchiveReader, Event};
use sha2::{Digest, Sha256};

use crate::catalog::{resolve, Selector};
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::manifest::{crc_hex, Manifest};
use crate::store::Store;

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub backup_id: String,
    pub size: u64,
    pub sha256: String,
    pub namespaces: u64,
    pub documents: u64,
    pub bytes: u64,
}

/// Verifies the backup `selector` names, decrypting with `keys` when the manifest says the
/// archive is encrypted (`None` for a plain one, or a KMS one read with the usual AWS
/// credentials).
pub async fn verify(
    store: &Store,
    selector: &Selector,
    keys: Option<&Keys>,
) -> Result<VerifyReport> {
    let (id, manifest) = resolve(store, selector).await?;
    let id = id.to_string();
    let keys = crate::crypto::ready_keys(&id, &manifest.archive.encryption, keys).await?;
    let reader = store
        .open_read(&manifest.archive.key)
        .await?
        .ok_or_else(|| Error::Integrity {
            id: id.clone(),
            detail: format!(
                "the manifest names {} but that object is missing",
                manifest.archive.key
            ),
        })?;
    let handle = tokio::runtime::Handle::current();
    let check = tokio::task::spawn_blocking(move || {
        let bridge = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle);
        check_stream(&id, &manifest, keys.as_ref(), bridge)
    });
    check
        .await
        .map_err(|e| Error::Internal(format!("the verifier crashed: {e}")))?
}

/// Counts and hashes every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Reads what is left (bytes after the last gzip member) so the digest covers the whole object.
    pub fn finish(mut self) -> io::Result<(u64, [u8; 32])> {
        io::copy(
            &mut self.inner,
            &mut HashSink(&mut self.hasher, &mut self.size),
        )?;
        Ok((self.size, self.hasher.finalize().into()))
    }
}

struct HashSink<'a>(&'a mut Sha256, &'a mut u64);

impl io::Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        *self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// The whole check, decrypting first when the manifest says the archive is encrypted: the
/// hash covers the stored (encrypted) bytes, the archive checks the plaintext.
pub fn check_stream(
    id: &str,
    manifest: &Manifest,
    keys: Option<&Keys>,
    stored: impl Read,
) -> Result<VerifyReport> {
    let integrity = |detail: String| Error::Integrity {
        id: id.to_string(),
        detail,
    };
    manifest.check_describes(id).map_err(integrity)?;
    let mut hashing = HashingReader::new(stored);
    let mut expected: HashMap<(String, String), (&crate::manifest::NamespaceEntry, bool)> =
        manifest
            .namespaces
            .iter()
            .map(|n| ((n.db.clone(), data_name(n)), (n, false)))
            .collect();
    let (mut documents, mut bytes) = (0u64, 0u64);
    {
        let opened = crate::crypto::decrypting(
            &format!("backup {id}"),
            &manifest.archive.encryption,
            keys,
            io::BufReader::with_capacity(256 * 1024, &mut hashing),
        );
        let mut plain = match opened {
            Ok(plain) => plain,
            // A header that does not open is damage when the stored bytes are not the
            // manifest's, whatever the key: the bytes are checked before the key is blamed.
            Err(e) => return Err(stored_mismatch(id, manifest, hashing).unwrap_or(e)),
        };
        let gz = MultiGzDecoder::new(&mut plain);
        let mut reader = ArchiveReader::new(io::BufReader::with_capacity(256 * 1024, gz))
            .map_err(|e| integrity(format!("{e}")))?;
        check_metadata(reader.prelude(), manifest).map_err(integrity)?;
        let mut digests: HashMap<(String, String), crate::digest::ContentDigest> = HashMap::new();
        loop {
            let event = reader.next_event().map_err(|e| integrity(format!("{e}")))?;
            match event {
                None => break,
                Some(Event::Document { ns, raw }) => digests
                    .entry((ns.db.clone(), ns.collection.clone()))
                    .or_default()
                    .add(raw),
                Some(Event::NamespaceEnd { ns, summary }) => {
                    let key = (ns.db.clone(), ns.collection.clone());
                    let Some((entry, seen)) = expected.get_mut(&key) else {
                        return Err(integrity(format!(
                            "the archive holds {ns}, which the manifest does not list"
                        )));
                    };
                    *seen = true;
                    if summary.documents != entry.documents || crc_hex(summary.crc) != entry.crc64 {
                        return Err(integrity(format!(
                            "{ns}: the archive has {} documents with CRC {}, the manifest says {} with CRC {}",
                            summary.documents,
                            crc_hex(summary.crc),
                            entry.documents,
                            entry.crc64
                        )));
                    }
                    // The content as written, recomputed: a backup whose bytes are intact but
                    // whose content differs from what the dump read is caught here.
                    let found = digests.remove(&key).unwrap_or_default().hex();
                    if let Some(expected) = entry.digest.as_ref().filter(|d| **d != found) {
                        return Err(integrity(format!(
                            "{ns}: the archive's documents have content digest {found}, the manifest says {expected}"
                        )));
                    }
                    documents += summary.documents;
                    bytes += summary.bytes;
                }
            }
        }
        drop(reader);
        // Reading the plaintext to its end makes age check the final chunk too.
        io::copy(&mut plain, &mut io::sink())
            .map_err(|e| integrity(format!("reading the stored object failed: {e}")))?;
    }
    if let Some(((db, coll), _)) = expected.iter().find(|(_, (_, seen))| !seen) {
        return Err(integrity(format!(
            "{db}.{coll} is in the manifest but not in the archive"
        )));
    }
    let (size, sha) = hashing
        .finish()
        .map_err(|e| integrity(format!("reading the stored object failed: {e}")))?;
    let sha = hex::encode(sha);
    if size != manifest.archive.size || sha != manifest.archive.sha256 {
        return Err(integrity(format!(
            "the stored object is {size} bytes with SHA-256 {sha}, the manifest says {} bytes with {}",
            manifest.archive.size, manifest.archive.sha256
        )));
    }
    Ok(VerifyReport {
        backup_id: id.to_string(),
        size,
        sha256: sha,
        namespaces: manifest.namespaces.len() as u64,
        documents,
        bytes,
    })
}

/// The index specifications and options the archive's prelude records, against the digests
/// the manifest took of them as read.
fn check_metadata(
    prelude: &[nightdump_archive::PreludeEntry],
    manifest: &Manifest,
) -> std::result::Result<(), String> {
    for entry in prelude {
        let Some(n) = manifest
            .namespaces
            .iter()
            .find(|n| n.db == entry.db && n.collection == entry.collection)
        else {
            continue;
        };
        let Some((indexes, options)) = crate::digest::metadata_digests(&entry.metadata) else {
            continue;
        };
        let ns = format!("{}.{}", entry.db, entry.collection);
        if let Some(expected) = n.indexes_digest.as_ref().filter(|d| **d != indexes) {
            return Err(format!(
                "{ns}: the archive's index specifications have digest {indexes}, the manifest says {expected}"
            ));
        }
        if let Some(expected) = n.options_digest.as_ref().filter(|d| **d != options) {
            return Err(format!(
                "{ns}: the archive's collection options have digest {options}, the manifest says {expected}"
            ));
        }
    }
    Ok(())
}

/// Reads the rest of the stored object through its hash: the integrity error when its size
/// or SHA-256 is not the manifest's, `None` when they are (or it cannot be read).
fn stored_mismatch(
    id: &str,
    manifest: &Manifest,
    hashing: HashingReader<impl Read>,
) -> Option<Error> {
    let (size, sha) = hashing.finish().ok()?;
    let sha = hex::encode(sha);
    (size != manifest.archive.size || sha != manifest.archive.sha256).then(|| Error::Integrity {
        id: id.to_string(),
        detail: format!(
            "the stored object is {size} bytes with SHA-256 {sha}, the manifest says {} bytes with {}: it is damaged",
            manifest.archive.size, manifest.archive.sha256
        ),
    })
}

/// The name under which a namespace's data blocks appear in the archive.
fn data_name(n: &crate::manifest::NamespaceEntry) -> String {
    if n.kind == "timeseries" {
        format!("system.buckets.{}", n.collection)
    } else if n.kind == "oplog" {
        "oplog".to_string()
    } else {
        n.collection.clone()
    }
}
