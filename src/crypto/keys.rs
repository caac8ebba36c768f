//! What to encrypt to (`--encrypt age:<recipient>`) and what to decrypt with (`--identity`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use age::x25519;

use crate::error::{Error, Result};
use crate::manifest::Encryption;

/// The environment variable naming the identity file, as `--identity` does.
pub const IDENTITY_ENV: &str = "NIGHTDUMP_AGE_IDENTITY";

/// How a backup is encrypted before it is stored.
#[derive(Clone, PartialEq, Eq)]
pub enum Encrypt {
    /// age, to every one of these X25519 recipients (any one identity decrypts).
    Age { recipients: Vec<x25519::Recipient> },
}

impl fmt::Debug for Encrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encrypt::Age { recipients } => f
                .debug_struct("Age")
                .field(
                    "recipients",
                    &recipients.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

impl Encrypt {
    /// Parses the values of a repeatable `--encrypt` (or a comma-separated
    /// `NIGHTDUMP_ENCRYPT`): `age:age1…` each. `flag` names the setting in errors.
    pub fn parse_all<S: AsRef<str>>(flag: &str, values: &[S]) -> Result<Option<Encrypt>> {
        let mut recipients = Vec::new();
        for value in values {
            let value = value.as_ref().trim();
            if value.is_empty() {
                continue;
            }
            let (scheme, key) = value.split_once(':').unwrap_or(("", value));
            match scheme {
                "age" => {
                    let key = key.trim();
                    let recipient = x25519::Recipient::from_str(key).map_err(|_| {
                        Error::invalid(format!(
                            "{flag}: '{key}' is not an age X25519 recipient: use the public key age-keygen prints, age1…"
                        ))
                    })?;
                    if !recipients.contains(&recipient) {
                        recipients.push(recipient);
                    }
                }
                "kms" => {
                    return Err(Error::invalid(format!(
                        "{flag}: kms: envelope encryption is not supported by this version of nightdump: use age:<recipient>"
                    )))
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{flag}: '{value}' is not an encryption setting: use age:<recipient>, e.g. age:age1…"
                    )))
                }
            }
        }
        Ok((!recipients.is_empty()).then_some(Encrypt::Age { recipients }))
    }

    /// The stored object's file name.
    pub fn archive_name(&self) -> String {
        match self {
            Encrypt::Age { .. } => format!("{}.age", crate::layout::ARCHIVE_NAME),
        }
    }

    /// What the manifest records: public keys only.
    pub fn manifest_entry(&self) -> Encryption {
        match self {
            Encrypt::Age { recipients } => Encryption {
                scheme: "age".into(),
                recipients: recipients.iter().map(|r| r.to_string()).collect(),
                kms_key_id: None,
                wrapped_key: None,
            },
        }
    }
}

/// age identities to decrypt with, as `age-keygen` writes them (`AGE-SECRET-KEY-1…` lines;
/// `#` comments and blank lines ignored). Never printed: `Debug` shows only the count.
#[derive(Clone)]
pub struct Keys {
    pub(super) identities: Vec<x25519::Identity>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys({} age identities)", self.identities.len())
    }
}

impl Keys {
    pub fn from_identity(identity: x25519::Identity) -> Self {
        Self {
            identities: vec![identity],
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(format!(
                "--identity: cannot read the age identity file {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text)
            .map_err(|detail| Error::invalid(format!("--identity {}: {detail}", path.display())))
    }

    /// Parses an identity file's text. Errors never quote the text (it holds secrets).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut identities = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity = x25519::Identity::from_str(line).map_err(|_| {
                format!(
                    "line {} is not an age X25519 identity (AGE-SECRET-KEY-1…): pass a file written by age-keygen",
                    n + 1
                )
            })?;
            identities.push(identity);
        }
        if identities.is_empty() {
            return Err("the file holds no age identity: pass a file written by age-keygen".into());
        }
        Ok(Self { identities })
    }

    /// The public keys these identities open.
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn encrypt_settings_parse_and_explain() {
        let id = x25519::Identity::generate();
        let public = id.to_public().to_string();
        let e = Encrypt::parse_all(
            "--encrypt",
            &[format!("age:{public}"), format!("age:{public}")],
        )
        .unwrap()
        .unwrap();
        let entry = e.manifest_entry();
        assert_eq!(entry.scheme, "age");
        assert_eq!(entry.recipients, vec![public.clone()]);
        assert_eq!(e.archive_name(), "dump.archive.gz.age");
        assert!(Encrypt::parse_all::<&str>("--encrypt", &[])
            .unwrap()
            .is_none());
        assert!(Encrypt::parse_all("--encrypt", &[" "]).unwrap().is_none());
        let bad = Encrypt::parse_all("--encrypt", &["age:age1nope"]).unwrap_err();
        assert!(bad.to_string().contains("age1"), "{bad}");
        let other = Encrypt::parse_all("--encrypt", &[public.as_str()]).unwrap_err();
        assert!(other.to_string().contains("age:<recipient>"), "{other}");
        let kms = Encrypt::parse_all("--encrypt", &["kms:alias/x"]).unwrap_err();
        assert!(kms.to_string().contains("not supported"), "{kms}");
    }

    #[test]
    fn identity_files_parse_without_echoing_secrets() {
        let id = x25519::Identity::generate();
        let secret = id.to_string().expose_secret().to_string();
        let text = format!(
            "# created: now\n# public key: {}\n{secret}\n",
            id.to_public()
        );
        let keys = Keys::parse(&text).unwrap();
        assert_eq!(keys.recipients(), vec![id.to_public().to_string()]);
        assert!(!format!("{keys:?}").contains("AGE-SECRET"));
        let broken = secret.replace('Q', "R").replace('1', "x");
        let err = Keys::parse(&broken).unwrap_err();
        assert!(!err.contains(&broken) && err.contains("line 1"), "{err}");
        assert!(Keys::parse("# nothing\n")
            .unwrap_err()
            .contains("no age identity"));
    }
}
