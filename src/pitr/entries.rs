//! Reading a slice's stored entries back: the stored bytes hashed as they stream, decrypted,
//! decompressed and split into BSON documents, then checked against the link's manifest.

use std::io::{self, BufReader, Read};

use flate2::read::MultiGzDecoder;

use crate::chain::Link;
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::verify::HashingReader;

/// The largest oplog entry mongod writes is 16 MiB plus a little; anything claiming more is
/// damage, not data.
const MAX_ENTRY: usize = 17 * 1024 * 1024;

/// What a slice held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub entries: u64,
    pub bytes: u64,
}

fn damaged(link: &Link, detail: impl Into<String>) -> Error {
    Error::SliceIntegrity {
        slice: link.dir.clone(),
        detail: detail.into(),
    }
}

/// Streams the entries of `link` from `stored` (its stored bytes) to `visit`, in order, then
/// checks the size and SHA-256 of the stored bytes and the entry count against the manifest.
pub fn read(
    link: &Link,
    keys: Option<&Keys>,
    stored: impl Read,
    mut visit: impl FnMut(&[u8]) -> Result<()>,
) -> Result<Counted> {
    let Some(object) = &link.manifest.object else {
        return Ok(Counted {
            entries: 0,
            bytes: 0,
        });
    };
    let mut hashing = HashingReader::new(stored);
    let mut counted = Counted {
        entries: 0,
        bytes: 0,
    };
    {
        let name = format!("oplog slice {}", link.dir);
        let buffered = BufReader::with_capacity(256 * 1024, &mut hashing);
        let plain = crate::crypto::decrypting(&name, &object.encryption, keys, buffered)?;
        let mut gz = BufReader::with_capacity(256 * 1024, MultiGzDecoder::new(plain));
        let mut entry = Vec::new();
        loop {
            let mut len = [0u8; 4];
            match read_full(&mut gz, &mut len) {
                Ok(0) => break,
                Ok(4) => {}
                Ok(_) => return Err(damaged(link, "the entries end inside an entry")),
                Err(e) => return Err(damaged(link, format!("reading the entries failed: {e}"))),
            }
            let size = u32::from_le_bytes(len) as usize;
            if !(5..=MAX_ENTRY).contains(&size) {
                return Err(damaged(
                    link,
                    format!(
                        "entry {} claims {size} bytes, which no oplog entry has",
                        counted.entries + 1
                    ),
                ));
            }
            entry.clear();
            entry.extend_from_slice(&len);
            entry.resize(size, 0);
            gz.read_exact(&mut entry[4..])
                .map_err(|e| damaged(link, format!("reading the entries failed: {e}")))?;
            bson::RawDocument::from_bytes(&entry).map_err(|e| {
                damaged(
                    link,
                    format!("entry {} is not BSON: {e}", counted.entries + 1),
                )
            })?;
            counted.entries += 1;
            counted.bytes += size as u64;
            visit(&entry)?;
        }
    }
    let (size, sha) = hashing
        .finish()
        .map_err(|e| damaged(link, format!("reading the stored object failed: {e}")))?;
    let sha = hex::encode(sha);
    if size != object.size || sha != object.sha256 {
        return Err(damaged(
            link,
            format!(
                "the stored object is {size} bytes with SHA-256 {sha}, the manifest says {} bytes with {}",
                object.size, object.sha256
            ),
        ));
    }
    if counted.entries != link.manifest.entries || counted.bytes != link.manifest.bytes {
        return Err(damaged(
            link,
            format!(
                "it holds {} entries ({} bytes), the manifest says {} ({} bytes)",
                counted.entries, counted.bytes, link.manifest.entries, link.manifest.bytes
            ),
        ));
    }
    Ok(counted)
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
