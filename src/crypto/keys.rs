//! What to encrypt to (`--encrypt age:<recipient>` or `kms:<key-id>`) and what to decrypt
//! with (`--identity`, KMS access).

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use age::x25519;

use super::envelope::DataKey;
use super::kms::Kms;
use crate::error::{Error, Result};
use crate::manifest::Encryption;

/// The environment variable naming the identity file, as `--identity` does.
pub const IDENTITY_ENV: &str = "NIGHTDUMP_AGE_IDENTITY";

/// How a backup is encrypted before it is stored.
#[derive(Clone)]
pub enum Encrypt {
    /// age, to every one of these X25519 recipients (any one identity decrypts).
    Age { recipients: Vec<x25519::Recipient> },
    /// Envelope encryption: a data key from KMS `GenerateDataKey` under `key_id` (key id, ARN
    /// or alias), the archive sealed with it in 64 KiB chunks. `kms` is the client to use;
    /// without one, a client is built from the standard AWS configuration chain.
    Kms { key_id: String, kms: Option<Kms> },
}

impl PartialEq for Encrypt {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Encrypt::Age { recipients: a }, Encrypt::Age { recipients: b }) => a == b,
            (Encrypt::Kms { key_id: a, .. }, Encrypt::Kms { key_id: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for Encrypt {}

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
            Encrypt::Kms { key_id, .. } => f.debug_struct("Kms").field("key_id", key_id).finish(),
        }
    }
}

impl Encrypt {
    /// Parses the values of a repeatable `--encrypt` (or a comma-separated
    /// `NIGHTDUMP_ENCRYPT`): `age:age1…` each, or a single `kms:<key-id>`. `flag` names the
    /// setting in errors.
    pub fn parse_all<S: AsRef<str>>(flag: &str, values: &[S]) -> Result<Option<Encrypt>> {
        let mut recipients = Vec::new();
        let mut kms_key: Option<String> = None;
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
                    let key = key.trim();
                    if !valid_kms_key_id(key) {
                        return Err(Error::invalid(format!(
                            "{flag}: '{key}' is not a KMS key: use kms:<key id>, kms:arn:aws:kms:REGION:ACCOUNT:key/ID or kms:alias/NAME"
                        )));
                    }
                    match &kms_key {
                        Some(k) if k != key => {
                            return Err(Error::invalid(format!(
                                "{flag}: more than one KMS key ({k}, {key}): give one kms:<key-id>"
                            )))
                        }
                        _ => kms_key = Some(key.to_string()),
                    }
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{flag}: '{value}' is not an encryption setting: use age:<recipient> (e.g. age:age1…) or kms:<key-id>"
                    )))
                }
            }
        }
        match (kms_key, recipients.is_empty()) {
            (Some(_), false) => Err(Error::invalid(format!(
                "{flag}: age recipients and a KMS key cannot be combined: use either age:<recipient> or kms:<key-id>"
            ))),
            (Some(key_id), true) => Ok(Some(Encrypt::Kms { key_id, kms: None })),
            (None, false) => Ok(Some(Encrypt::Age { recipients })),
            (None, true) => Ok(None),
        }
    }

    /// The KMS client for `kms:` on the caller's AWS configuration (the Lambda's), in the
    /// key ARN's own region; no effect on age.
    pub fn with_sdk(self, sdk: &aws_config::SdkConfig) -> Self {
        match self {
            Encrypt::Kms { key_id, .. } => {
                let kms = Kms::for_key_with(sdk, Some(&key_id));
                Encrypt::Kms {
                    key_id,
                    kms: Some(kms),
                }
            }
            age => age,
        }
    }

    /// The KMS client to use for `kms:` (the tests' own configuration); no effect on age.
    pub fn with_kms(self, client: Kms) -> Self {
        match self {
            Encrypt::Kms { key_id, .. } => Encrypt::Kms {
                key_id,
                kms: Some(client),
            },
            age => age,
        }
    }

    /// The stored object's file name.
    pub fn archive_name(&self) -> String {
        match self {
            Encrypt::Age { .. } => format!("{}.age", crate::layout::ARCHIVE_NAME),
            Encrypt::Kms { .. } => format!("{}.enc", crate::layout::ARCHIVE_NAME),
        }
    }

    /// What the manifest records for age: public keys only. A KMS backup's entry (with its
    /// wrapped key) comes from [`Encrypt::prepare`].
    pub fn manifest_entry(&self) -> Encryption {
        match self {
            Encrypt::Age { recipients } => Encryption {
                scheme: "age".into(),
                recipients: recipients.iter().map(|r| r.to_string()).collect(),
                kms_key_id: None,
                wrapped_key: None,
            },
            Encrypt::Kms { key_id, .. } => Encryption {
                scheme: "kms".into(),
                recipients: Vec::new(),
                kms_key_id: Some(key_id.clone()),
                wrapped_key: None,
            },
        }
    }
}

/// A key id, key ARN, alias name or alias ARN, as KMS accepts them.
fn valid_kms_key_id(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 2048
        && !key.chars().any(|c| c.is_whitespace() || c.is_control())
        && (!key.starts_with("alias/") || key.len() > "alias/".len())
}

/// A data key unwrapped by KMS, with the wrapped form it came from.
pub(super) struct Unwrapped {
    pub(super) wrapped: Vec<u8>,
    pub(super) key: DataKey,
}

/// age identities to decrypt with, as `age-keygen` writes them (`AGE-SECRET-KEY-1…` lines;
/// `#` comments and blank lines ignored). Never printed: `Debug` shows only the count.
///
/// For KMS backups it also carries the KMS client to unwrap data keys with and, once
/// [`super::ready_keys`] ran, the unwrapped data key (wiped when the last clone is dropped).
#[derive(Clone, Default)]
pub struct Keys {
    pub(super) identities: Vec<x25519::Identity>,
    pub(super) kms: Option<Kms>,
    pub(super) data_key: Option<Arc<Unwrapped>>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Keys({} age identities{}{})",
            self.identities.len(),
            if self.kms.is_some() {
                ", KMS access"
            } else {
                ""
            },
            if self.data_key.is_some() {
                ", a data key"
            } else {
                ""
            }
        )
    }
}

impl Keys {
    pub fn from_identity(identity: x25519::Identity) -> Self {
        Self {
            identities: vec![identity],
            ..Self::default()
        }
    }

    /// KMS access only, for KMS-encrypted backups.
    pub fn from_kms(kms: Kms) -> Self {
        Self {
            kms: Some(kms),
            ..Self::default()
        }
    }

    /// These keys, unwrapping KMS data keys with `kms`.
    pub fn with_kms(mut self, kms: Kms) -> Self {
        self.kms = Some(kms);
        self
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(format!(
                "--identity: cannot read the age identity file {}: {e}",
                path.display()
            ))
        })?;
        let keys = Self::parse(&text)
            .map_err(|detail| Error::invalid(format!("--identity {}: {detail}", path.display())))?;
        warn_if_shared(path);
        Ok(keys)
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
        Ok(Self {
            identities,
            ..Self::default()
        })
    }

    /// The public keys these identities open.
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }
}

/// An identity file others may read is a key anyone on the machine may copy: said loudly,
/// though the file still works (age itself does not refuse it either).
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the age identity file can be read by other users of this machine: chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    /// #13.5: the Lambda's KMS client goes to the key ARN's region, as the CLI's does, not to
    /// the function's own.
    #[test]
    fn the_lambdas_kms_client_follows_the_key_arns_region() {
        let sdk = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let arn = "kms:arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let encrypt = Encrypt::parse_all("NIGHTDUMP_ENCRYPT", &[arn])
            .unwrap()
            .unwrap()
            .with_sdk(&sdk);
        let Encrypt::Kms { kms: Some(kms), .. } = encrypt else {
            panic!("a KMS setting with its client")
        };
        assert_eq!(kms.region().as_deref(), Some("us-east-2"));
    }

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
        let kms = Encrypt::parse_all("--encrypt", &["kms:alias/x"])
            .unwrap()
            .unwrap();
        assert_eq!(kms.archive_name(), "dump.archive.gz.enc");
        assert_eq!(kms.manifest_entry().scheme, "kms");
        assert_eq!(kms.manifest_entry().kms_key_id.as_deref(), Some("alias/x"));
        for (values, needle) in [
            (vec!["kms:".to_string()], "not a KMS key"),
            (vec!["kms:alias/".to_string()], "not a KMS key"),
            (vec!["kms:a b".to_string()], "not a KMS key"),
            (
                vec!["kms:alias/a".to_string(), "kms:alias/b".to_string()],
                "more than one KMS key",
            ),
            (
                vec!["kms:alias/a".to_string(), format!("age:{public}")],
                "cannot be combined",
            ),
        ] {
            let err = Encrypt::parse_all("--encrypt", &values).unwrap_err();
            assert!(err.to_string().contains(needle), "{values:?}: {err}");
        }
        let arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let same = Encrypt::parse_all("--encrypt", &[format!("kms:{arn}"), format!("kms:{arn}")])
            .unwrap()
            .unwrap();
        assert!(matches!(same, Encrypt::Kms { ref key_id, .. } if key_id == arn));
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
