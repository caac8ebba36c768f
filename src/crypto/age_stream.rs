//! The age layer of the archive stream, both ways.

use std::io::{self, BufRead, Read, Write};

use age::stream::{StreamReader, StreamWriter};
use age::DecryptError;

use super::envelope::EnvelopeReader;
use super::keys::{Encrypt, Keys};
use crate::error::{Error, Result};
use crate::manifest::Encryption;
use crate::sink::{FinishWrite, SinkWrapper, Stored};

/// Every age file (binary, not armored) starts with this line.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// True when `first` (the start of a stream) is an age file's header.
pub fn is_age(first: &[u8]) -> bool {
    first.starts_with(AGE_MAGIC)
}

struct AgeSink(StreamWriter<Box<dyn FinishWrite>>);

impl Write for AgeSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl FinishWrite for AgeSink {
    fn finish_stream(self: Box<Self>) -> io::Result<Stored> {
        // The final (short, specially flagged) chunk is written here: without it the object
        // would read as truncated.
        self.0.finish()?.finish_stream()
    }
}

impl Encrypt {
    /// The pipeline stage that encrypts everything gzip writes before it reaches the sink.
    pub fn sink_wrapper(&self) -> Result<SinkWrapper> {
        let recipients = match self {
            Encrypt::Age { recipients } => recipients.clone(),
            Encrypt::Kms { .. } => {
                return Err(Error::Internal(
                    "a KMS-encrypted stream needs its data key: use Encrypt::prepare".into(),
                ))
            }
        };
        // Checked now so a bad setting fails before any connection is made; the encryptor
        // itself needs the sink, which exists only once the dump starts.
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| Error::invalid(format!("--encrypt: {e}")))?;
        Ok(Box::new(move |sink: Box<dyn FinishWrite>| {
            let writer = age::Encryptor::with_recipients(
                recipients.iter().map(|r| r as &dyn age::Recipient),
            )
            .map_err(|e| io::Error::other(e.to_string()))?
            .wrap_output(sink)?;
            Ok(Box::new(AgeSink(writer)) as Box<dyn FinishWrite>)
        }))
    }
}

/// The plaintext of a stored object: the object itself, or what age or the KMS envelope
/// decrypts from it.
pub enum Plain<R: BufRead> {
    Clear(R),
    Age(Box<StreamReader<R>>),
    Kms(Box<EnvelopeReader<R>>),
}

impl<R: BufRead> Read for Plain<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Plain::Clear(r) => r.read(buf),
            Plain::Age(r) => r.read(buf).map_err(chunk_error),
            Plain::Kms(r) => r.read(buf),
        }
    }
}

/// age reports a chunk that fails authentication as bare `InvalidData`: say what it means.
fn chunk_error(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(
            e.kind(),
            format!("age decryption failed: the encrypted object is damaged or truncated ({e})"),
        )
    } else {
        e
    }
}

/// Opens `stored` for reading as `encryption` says. `name` names the backup or file in
/// errors. The header is read and the file key unwrapped here, so a missing or wrong
/// identity fails before a single byte of plaintext is produced.
pub fn decrypting<R: BufRead>(
    name: &str,
    encryption: &Encryption,
    keys: Option<&Keys>,
    stored: R,
) -> Result<Plain<R>> {
    match encryption.scheme.as_str() {
        "none" => Ok(Plain::Clear(stored)),
        "age" => {
            let Some(keys) = require_keys(name, encryption, keys)? else {
                return Ok(Plain::Clear(stored));
            };
            let damaged = |detail: String| Error::Damaged {
                what: name.to_string(),
                detail,
            };
            let decryptor = age::Decryptor::new_buffered(stored)
                .map_err(|e| damaged(format!("the age header is damaged or this is not an age file: {e}")))?;
            let reader = decryptor
                .decrypt(keys.identities.iter().map(|i| i as &dyn age::Identity))
                .map_err(|e| match e {
                    DecryptError::NoMatchingKeys => Error::KeyRejected(format!(
                        "none of the identities in --identity opens {name}: it is encrypted to {}; pass the identity file of one of those (if it is the right file, the age header is damaged)",
                        recipients_hint(&encryption.recipients)
                    )),
                    other => damaged(format!(
                        "the age header does not check out ({other}): the stored object is damaged"
                    )),
                })?;
            Ok(Plain::Age(Box::new(reader)))
        }
        "kms" => {
            let Some(keys) = require_keys(name, encryption, keys)? else {
                return Ok(Plain::Clear(stored));
            };
            let Some(unwrapped) = &keys.data_key else {
                return Err(Error::Internal(format!(
                    "{name}: the data key was not unwrapped before reading (crypto::ready_keys)"
                )));
            };
            let reader = EnvelopeReader::new(&unwrapped.key, stored).map_err(|e| {
                Error::Damaged {
                    what: name.to_string(),
                    detail: e.to_string(),
                }
            })?;
            Ok(Plain::Kms(Box::new(reader)))
        }
        other => Err(Error::invalid(format!(
            "{name} is encrypted with '{other}', which this version of nightdump cannot decrypt: upgrade nightdump"
        ))),
    }
}

/// The keys to decrypt `encryption` with, or the error naming `--identity` when there are
/// none: checked before anything is read or written.
pub fn require_keys<'k>(
    name: &str,
    encryption: &Encryption,
    keys: Option<&'k Keys>,
) -> Result<Option<&'k Keys>> {
    match (encryption.scheme.as_str(), keys) {
        ("none", _) => Ok(None),
        ("age", Some(keys)) => Ok(Some(keys)),
        ("kms", Some(keys)) if keys.data_key.is_some() => Ok(Some(keys)),
        ("kms", _) => Err(Error::invalid(format!(
            "{name} is encrypted with KMS key {}: its data key must be unwrapped with KMS Decrypt first (read it through verify, cat or restore --from, which do)",
            encryption.kms_key_id.as_deref().unwrap_or("(not recorded)")
        ))),
        ("age", None) => Err(Error::invalid(format!(
            "{name} is encrypted with age: pass --identity FILE (or set {}) naming the age identity file of one of its recipients {}",
            super::IDENTITY_ENV,
            recipients_hint(&encryption.recipients)
        ))),
        (other, _) => Err(Error::invalid(format!(
            "{name} is encrypted with '{other}', which this version of nightdump cannot decrypt: upgrade nightdump"
        ))),
    }
}

fn recipients_hint(recipients: &[String]) -> String {
    if recipients.is_empty() {
        "(recipients not recorded)".into()
    } else {
        recipients.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink collecting what it is given, as the store would.
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl FinishWrite for Collect {
        fn finish_stream(self: Box<Self>) -> io::Result<Stored> {
            let n = self.0.lock().unwrap().len() as u64;
            Ok(Stored {
                size: n,
                sha256: [0; 32],
            })
        }
    }

    fn encrypt(plain: &[u8], keys: &Keys) -> Vec<u8> {
        let e = Encrypt::Age {
            recipients: keys.identities.iter().map(|i| i.to_public()).collect(),
        };
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut sink = (e.sink_wrapper().unwrap())(Box::new(Collect(Arc::clone(&out)))).unwrap();
        for part in plain.chunks(10_000) {
            sink.write_all(part).unwrap();
        }
        let stored = sink.finish_stream().unwrap();
        let bytes = out.lock().unwrap().clone();
        assert_eq!(stored.size, bytes.len() as u64);
        bytes
    }

    fn entry(keys: &Keys) -> Encryption {
        Encryption {
            scheme: "age".into(),
            recipients: keys.recipients(),
            kms_key_id: None,
            wrapped_key: None,
        }
    }

    fn read_all(
        name: &str,
        enc: &Encryption,
        keys: Option<&Keys>,
        stored: &[u8],
    ) -> Result<Vec<u8>, String> {
        let mut plain = decrypting(name, enc, keys, stored).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        plain.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn round_trips_across_many_chunks() {
        let keys = Keys::from_identity(age::x25519::Identity::generate());
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let stored = encrypt(&plain, &keys);
        assert!(is_age(&stored));
        assert!(!is_age(&plain));
        assert_ne!(
            &stored[stored.len() - plain.len().min(1000)..],
            &plain[..1000]
        );
        assert_eq!(
            read_all("b", &entry(&keys), Some(&keys), &stored).unwrap(),
            plain
        );
    }

    #[test]
    fn wrong_missing_key_and_damage_are_clear() {
        let keys = Keys::from_identity(age::x25519::Identity::generate());
        let other = Keys::from_identity(age::x25519::Identity::generate());
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
        let stored = encrypt(&plain, &keys);
        let enc = entry(&keys);
        let missing = read_all("b1", &enc, None, &stored).unwrap_err();
        assert!(
            missing.contains("--identity") && missing.contains(&keys.recipients()[0]),
            "{missing}"
        );
        let wrong = read_all("b1", &enc, Some(&other), &stored).unwrap_err();
        assert!(wrong.contains("none of the identities"), "{wrong}");
        // One flipped byte in the header, in the first chunk and in the last chunk.
        let mac = stored.windows(4).position(|w| w == b"--- ").unwrap() + 6;
        for at in [mac, stored.len() / 3, stored.len() - 5] {
            let mut bad = stored.clone();
            bad[at] ^= 0x01;
            let err = read_all("b1", &enc, Some(&keys), &bad).unwrap_err();
            assert!(err.contains("damaged"), "byte {at}: {err}");
        }
        let truncated = &stored[..stored.len() - 100];
        let err = read_all("b1", &enc, Some(&keys), truncated).unwrap_err();
        assert!(err.contains("damaged or truncated"), "{err}");
    }
}
