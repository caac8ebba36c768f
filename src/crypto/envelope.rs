//! The stream format of a KMS-encrypted archive (`dump.archive.gz.enc`), both ways.
//!
//! ```text
//! header   "NDENC\0" | version 0x01 | algorithm 0x01 | nonce prefix (19 random bytes)
//! chunks   XChaCha20-Poly1305(key, nonce = prefix | counter u32 BE | last flag, aad = header)
//! ```
//!
//! Every chunk holds 64 KiB of plaintext and its 16-byte tag, except the last, which holds
//! 0 to 64 KiB and is sealed with the last flag set (aead's STREAM construction, BE32). A
//! reader therefore detects reordering (the counter), truncation at any point (no chunk
//! flagged last where the data ends) and a changed header (the header is every chunk's
//! associated data). docs/encryption.md describes the format for readers without nightdump.

use std::io::{self, BufRead, Read, Write};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, OsRng};
use chacha20poly1305::XChaCha20Poly1305;
use zeroize::Zeroizing;

pub const MAGIC: &[u8; 6] = b"NDENC\0";
pub const VERSION: u8 = 1;
/// XChaCha20-Poly1305 in STREAM-BE32 with 64 KiB chunks.
pub const ALGORITHM: u8 = 1;
pub const CHUNK: usize = 64 * 1024;
pub const TAG: usize = 16;
pub const NONCE_PREFIX: usize = 19;
pub const HEADER_LEN: usize = MAGIC.len() + 2 + NONCE_PREFIX;

/// A 256-bit data key, wiped from memory when dropped.
pub type DataKey = Zeroizing<[u8; 32]>;

/// True when `first` (the start of a stream) is this format's header.
pub fn is_envelope(first: &[u8]) -> bool {
    first.starts_with(MAGIC)
}

fn cipher(key: &DataKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.as_ref().into())
}

/// Encrypts everything written to it into `inner`; [`EnvelopeWriter::finish`] seals the last
/// chunk and must be called, or the stream reads as truncated.
pub struct EnvelopeWriter<W: Write> {
    inner: W,
    stream: Option<EncryptorBE32<XChaCha20Poly1305>>,
    header: [u8; HEADER_LEN],
    /// Plaintext of the chunk being filled; sealed in place (the tag is appended).
    buf: Vec<u8>,
}

impl<W: Write> EnvelopeWriter<W> {
    /// Writes the header with a fresh random nonce prefix.
    pub fn new(key: &DataKey, mut inner: W) -> io::Result<Self> {
        let mut prefix = [0u8; NONCE_PREFIX];
        OsRng.fill_bytes(&mut prefix);
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[MAGIC.len()] = VERSION;
        header[MAGIC.len() + 1] = ALGORITHM;
        header[MAGIC.len() + 2..].copy_from_slice(&prefix);
        inner.write_all(&header)?;
        Ok(Self {
            inner,
            stream: Some(EncryptorBE32::from_aead(cipher(key), (&prefix).into())),
            header,
            buf: Vec::with_capacity(CHUNK + TAG),
        })
    }

    fn seal_full_chunk(&mut self) -> io::Result<()> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::other("the encrypted stream is already finished"))?;
        stream
            .encrypt_next_in_place(&self.header, &mut self.buf)
            .map_err(|_| {
                io::Error::other("the archive is too large for one encrypted stream (2^32 chunks)")
            })?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Seals the last chunk and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let stream = self
            .stream
            .take()
            .ok_or_else(|| io::Error::other("the encrypted stream is already finished"))?;
        stream
            .encrypt_last_in_place(&self.header, &mut self.buf)
            .map_err(|_| io::Error::other("sealing the last encrypted chunk failed"))?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(self.inner)
    }
}

impl<W: Write> Write for EnvelopeWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            // A full chunk is sealed only once more data follows: the last chunk must carry
            // the last flag, and only `finish` knows which one that is.
            if self.buf.len() == CHUNK {
                self.seal_full_chunk()?;
            }
            let take = (CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts a stream written by [`EnvelopeWriter`]; no byte of a chunk is returned before
/// the whole chunk is authenticated.
pub struct EnvelopeReader<R: BufRead> {
    inner: R,
    stream: Option<DecryptorBE32<XChaCha20Poly1305>>,
    header: [u8; HEADER_LEN],
    /// The current chunk's plaintext, and how much of it was handed out.
    plain: Zeroizing<Vec<u8>>,
    pos: usize,
    chunk: u64,
    /// Set once a chunk failed: every later read fails too, never reads as the end.
    broken: bool,
}

fn damaged(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

impl<R: BufRead> EnvelopeReader<R> {
    /// Reads and checks the header.
    pub fn new(key: &DataKey, mut inner: R) -> io::Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        let got = read_full(&mut inner, &mut header)?;
        if got < MAGIC.len() || !is_envelope(&header) {
            return Err(damaged(
                "the object does not start with the nightdump encryption header: it is not a KMS-encrypted archive or its first bytes are damaged".into(),
            ));
        }
        if got < HEADER_LEN {
            return Err(damaged(
                "the encrypted object is truncated inside its header".into(),
            ));
        }
        if header[MAGIC.len()] != VERSION || header[MAGIC.len() + 1] != ALGORITHM {
            return Err(damaged(format!(
                "the encryption header has version {} algorithm {}, this nightdump reads version {VERSION} algorithm {ALGORITHM}: upgrade nightdump (or the header is damaged)",
                header[MAGIC.len()],
                header[MAGIC.len() + 1]
            )));
        }
        let mut prefix = [0u8; NONCE_PREFIX];
        prefix.copy_from_slice(&header[MAGIC.len() + 2..]);
        Ok(Self {
            inner,
            stream: Some(DecryptorBE32::from_aead(cipher(key), (&prefix).into())),
            header,
            plain: Zeroizing::new(Vec::with_capacity(CHUNK + TAG)),
            pos: 0,
            chunk: 0,
            broken: false,
        })
    }

    /// Reads, authenticates and decrypts the next chunk; `false` at the end of the stream.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.stream.is_none() {
            return Ok(false);
        }
        self.plain.clear();
        self.plain.resize(CHUNK + TAG, 0);
        let got = read_full(&mut self.inner, &mut self.plain)?;
        self.plain.truncate(got);
        self.pos = 0;
        let n = self.chunk;
        self.chunk += 1;
        if got < TAG {
            self.stream = None;
            return Err(damaged(format!(
                "the encrypted object is truncated: chunk {n} is {got} bytes, shorter than its tag"
            )));
        }
        let last = got < CHUNK + TAG || self.inner.fill_buf()?.is_empty();
        let failed = || {
            damaged(format!(
                "decryption failed: chunk {n} does not authenticate, the encrypted object is damaged, truncated or reordered"
            ))
        };
        if last {
            let stream = self.stream.take().ok_or_else(failed)?;
            stream
                .decrypt_last_in_place(&self.header, &mut *self.plain)
                .map_err(|_| failed())?;
        } else {
            let stream = self.stream.as_mut().ok_or_else(failed)?;
            if stream
                .decrypt_next_in_place(&self.header, &mut *self.plain)
                .is_err()
            {
                self.stream = None;
                return Err(failed());
            }
        }
        Ok(true)
    }
}

impl<R: BufRead> Read for EnvelopeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.broken {
            return Err(damaged(
                "decryption already failed: the encrypted object is damaged".into(),
            ));
        }
        while self.pos == self.plain.len() {
            match self.next_chunk() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => {
                    self.broken = true;
                    self.plain.clear();
                    self.pos = 0;
                    return Err(e);
                }
            }
        }
        let n = (self.plain.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends; the count read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::{Aead, Payload};

    fn key(b: u8) -> DataKey {
        Zeroizing::new([b; 32])
    }

    fn seal(key: &DataKey, plain: &[u8], write_size: usize) -> Vec<u8> {
        let mut w = EnvelopeWriter::new(key, Vec::new()).unwrap();
        for part in plain.chunks(write_size.max(1)) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    fn open(key: &DataKey, stored: &[u8]) -> io::Result<Vec<u8>> {
        let mut r = EnvelopeReader::new(key, stored)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn sizes_at_chunk_boundaries_round_trip_with_the_expected_layout() {
        let k = key(7);
        for (n, chunks) in [
            (0, 1),
            (1, 1),
            (CHUNK - 1, 1),
            (CHUNK, 1),
            (CHUNK + 1, 2),
            (3 * CHUNK, 3),
            (3 * CHUNK + 5, 4),
        ] {
            let plain = data(n);
            for write_size in [1000, CHUNK, 3 * CHUNK + 7] {
                let stored = seal(&k, &plain, write_size);
                assert_eq!(stored.len(), HEADER_LEN + n + chunks * TAG, "{n} bytes");
                assert!(is_envelope(&stored));
                assert_eq!(open(&k, &stored).unwrap(), plain, "{n} bytes");
            }
        }
    }

    /// The format is what docs/encryption.md says: decrypted here chunk by chunk with the
    /// plain AEAD and hand-built nonces, without the stream types.
    #[test]
    fn chunks_follow_the_documented_nonce_and_aad() {
        let k = key(3);
        let plain = data(CHUNK + 10);
        let stored = seal(&k, &plain, CHUNK);
        let header = &stored[..HEADER_LEN];
        assert_eq!(&header[..6], b"NDENC\0");
        assert_eq!(header[6..8], [1, 1]);
        let aead = XChaCha20Poly1305::new(k.as_ref().into());
        let nonce = |counter: u32, last: u8| {
            let mut n = header[8..].to_vec();
            n.extend_from_slice(&counter.to_be_bytes());
            n.push(last);
            n
        };
        let first = &stored[HEADER_LEN..HEADER_LEN + CHUNK + TAG];
        let second = &stored[HEADER_LEN + CHUNK + TAG..];
        let open_chunk =
            |n: &[u8], msg: &[u8]| aead.decrypt(n.into(), Payload { msg, aad: header });
        let mut out = open_chunk(&nonce(0, 0), first).unwrap();
        out.extend(open_chunk(&nonce(1, 1), second).unwrap());
        assert_eq!(out, plain);
        assert!(open_chunk(&nonce(0, 1), first).is_err());
        assert!(open_chunk(&nonce(1, 0), second).is_err());
    }

    #[test]
    fn any_flipped_byte_fails_authentication() {
        let k = key(9);
        let plain = data(2 * CHUNK + 100);
        let stored = seal(&k, &plain, 4096);
        for at in [
            8,
            HEADER_LEN - 1,
            HEADER_LEN,
            HEADER_LEN + CHUNK + TAG - 1,
            HEADER_LEN + CHUNK + TAG + 3,
            stored.len() - 1,
        ] {
            let mut bad = stored.clone();
            bad[at] ^= 0x20;
            let err = open(&k, &bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "byte {at}");
            assert!(err.to_string().contains("damaged"), "byte {at}: {err}");
        }
        let mut bad = stored.clone();
        bad[0] ^= 1;
        let err = open(&k, &bad).unwrap_err();
        assert!(err.to_string().contains("header"), "{err}");
        let mut bad = stored.clone();
        bad[6] = 2;
        let err = open(&k, &bad).unwrap_err();
        assert!(err.to_string().contains("upgrade nightdump"), "{err}");
    }

    #[test]
    fn a_wrong_key_fails_on_the_first_chunk_before_any_plaintext() {
        let stored = seal(&key(1), &data(3 * CHUNK), CHUNK);
        let mut r = EnvelopeReader::new(&key(2), &stored[..]).unwrap();
        let mut buf = [0u8; 16];
        let err = r.read(&mut buf).unwrap_err();
        assert!(err.to_string().contains("chunk 0"), "{err}");
    }

    #[test]
    fn truncation_is_detected_at_boundaries_and_inside_chunks() {
        let k = key(4);
        let plain = data(3 * CHUNK);
        let stored = seal(&k, &plain, CHUNK);
        let boundary = |i: usize| HEADER_LEN + i * (CHUNK + TAG);
        for cut in [
            0,
            5,
            HEADER_LEN,
            HEADER_LEN + 10,
            boundary(1),
            boundary(2),
            boundary(2) + 1,
            stored.len() - 1,
        ] {
            let err = open(&k, &stored[..cut]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "cut at {cut}");
        }
        // Appending after the last chunk is damage too.
        let mut longer = stored.clone();
        longer.extend_from_slice(&[0u8; 40]);
        assert!(open(&k, &longer).is_err());
    }

    #[test]
    fn reordered_or_repeated_chunks_are_detected() {
        let k = key(5);
        let plain = data(3 * CHUNK + 1);
        let stored = seal(&k, &plain, CHUNK);
        let c = |i: usize| {
            let start = HEADER_LEN + i * (CHUNK + TAG);
            stored[start..(start + CHUNK + TAG).min(stored.len())].to_vec()
        };
        let header = stored[..HEADER_LEN].to_vec();
        for order in [[1, 0, 2, 3], [0, 2, 1, 3], [0, 0, 2, 3]] {
            let mut bad = header.clone();
            for i in order {
                bad.extend(c(i));
            }
            assert!(open(&k, &bad).is_err(), "{order:?}");
        }
        // Dropping the last chunk leaves a full chunk not flagged last.
        let mut short = header.clone();
        for i in 0..3 {
            short.extend(c(i));
        }
        assert!(open(&k, &short).is_err());
        // The same chunks under another header (another nonce prefix) do not open.
        let other = seal(&k, &plain, CHUNK);
        let mut mixed = other[..HEADER_LEN].to_vec();
        mixed.extend_from_slice(&stored[HEADER_LEN..]);
        assert!(open(&k, &mixed).is_err());
    }
}
