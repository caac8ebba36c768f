//! Client-side encryption with age end to end: an encrypted backup verifies, restores and
//! cats with its identity, and with a wrong, missing or damaged key it fails before anything
//! is restored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use age::secrecy::ExposeSecret;
use mongo_test_server::{ServerConfig, ServerHandle};
use nightdump::backup;
use nightdump::catalog::Selector;
use nightdump::crypto::{Encrypt, Keys};
use nightdump::manifest::Manifest;
use nightdump::restore::{self, Input, RestoreOptions};
use nightdump::secret::ConnectionString;
use nightdump::store::Store;
use nightdump::Error;
use sha2::Digest;

use crate::harness::*;

struct Encrypted {
    source: Source,
    dir: tempfile::TempDir,
    store: Store,
    manifest: Manifest,
    keys: Keys,
    secret: String,
}

async fn encrypted_backup() -> Encrypted {
    let identity = age::x25519::Identity::generate();
    let secret = identity.to_string().expose_secret().to_string();
    let recipient = identity.to_public().to_string();
    let source = demo_source().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let mut opts = options(&source.uri);
    opts.encrypt = Encrypt::parse_all("--encrypt", &[format!("age:{recipient}")]).unwrap();
    let manifest = backup::run(&opts, &store, &progress())
        .await
        .unwrap()
        .manifest;
    Encrypted {
        source,
        dir,
        store,
        manifest,
        keys: Keys::from_identity(identity),
        secret,
    }
}

fn stored_path(e: &Encrypted) -> PathBuf {
    e.dir.path().join(&e.manifest.archive.key)
}

async fn fresh_target() -> ServerHandle {
    mongo_test_server::start(ServerConfig::default())
        .await
        .expect("test server starts")
}

fn restore_options(uri: &str, keys: Option<Keys>) -> RestoreOptions {
    let mut o = RestoreOptions::new(Some(ConnectionString::parse(uri).unwrap()));
    o.server_selection_timeout = Duration::from_secs(3);
    o.keys = keys;
    o
}

fn from_backup(store: &Store) -> Input<'_> {
    Input::Backup {
        store,
        selector: Selector::Latest,
        verify_first: true,
    }
}

/// The user namespaces a restore writes (not admin's, not the oplog).
fn user_namespaces(m: &Manifest) -> Vec<(String, String)> {
    m.namespaces
        .iter()
        .filter(|n| n.db != "admin" && n.kind != "oplog")
        .map(|n| (n.db.clone(), n.collection.clone()))
        .collect()
}

async fn sorted_documents(uri: &str, db: &str, coll: &str) -> Vec<Vec<u8>> {
    let mut docs: Vec<Vec<u8>> = source_documents(uri, db, coll)
        .await
        .into_iter()
        .map(|d| d.as_bytes().to_vec())
        .collect();
    docs.sort();
    docs
}

/// Databases holding anything, apart from the server's own.
/// Restores the latest backup with `keys` into a fresh server: every user collection comes
/// back with the source's documents. The server, for further restores.
async fn assert_restores_like_source(
    store: &Store,
    keys: Keys,
    source_uri: &str,
    m: &Manifest,
) -> ServerHandle {
    let target = fresh_target().await;
    let report = restore::run(
        &restore_options(&target.uri(), Some(keys)),
        from_backup(store),
        &progress(),
    )
    .await
    .unwrap();
    assert_eq!(report.totals.failed, 0);
    let namespaces = user_namespaces(m);
    assert!(namespaces.len() > 3);
    for (db, coll) in &namespaces {
        assert_eq!(
            sorted_documents(source_uri, db, coll).await,
            sorted_documents(&target.uri(), db, coll).await,
            "{db}.{coll}"
        );
    }
    target
}

async fn user_databases(uri: &str) -> Vec<String> {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    client
        .list_database_names()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| !["admin", "config", "local"].contains(&d.as_str()))
        .collect()
}

#[tokio::test]
async fn an_age_encrypted_backup_round_trips_with_its_identity() {
    let e = encrypted_backup().await;
    let m = &e.manifest;
    assert_eq!(m.archive.encryption.scheme, "age");
    assert_eq!(m.archive.encryption.recipients, e.keys.recipients());
    assert!(
        m.archive.key.ends_with("/dump.archive.gz.age"),
        "{}",
        m.archive.key
    );
    let manifest_text =
        std::fs::read_to_string(e.dir.path().join(format!("{}/manifest.json", m.backup_id)))
            .unwrap();
    assert!(!manifest_text.contains("AGE-SECRET-KEY"));
    assert!(!manifest_text.contains(&e.secret));

    // The stored object is ciphertext, and the manifest describes exactly its bytes.
    let stored = std::fs::read(stored_path(&e)).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n"));
    assert!(!stored.windows(8).any(|w| w == b"shop\0\0\0\0") && !stored.starts_with(&[0x1f, 0x8b]));
    assert_eq!(stored.len() as u64, m.archive.size);
    assert_eq!(hex::encode(sha2::Sha256::digest(&stored)), m.archive.sha256);

    let report = nightdump::verify::verify(&e.store, &Selector::Latest, Some(&e.keys))
        .await
        .unwrap();
    assert_eq!(report.documents, m.totals.documents);
    assert_eq!(report.sha256, m.archive.sha256);

    // cat decrypts to the gzip archive mongorestore reads; --raw gives the stored bytes.
    let mut plain = Vec::new();
    nightdump::cat::cat(
        &e.store,
        &Selector::Latest,
        Some(&e.keys),
        false,
        &mut plain,
    )
    .await
    .unwrap();
    let contents = read_archive(&plain);
    let docs: usize = contents.docs.values().map(Vec::len).sum();
    assert_eq!(docs as u64, m.totals.documents);
    let mut raw = Vec::new();
    nightdump::cat::cat(&e.store, &Selector::Latest, None, true, &mut raw)
        .await
        .unwrap();
    assert_eq!(raw, stored);

    assert_restores_like_source(&e.store, e.keys.clone(), &e.source.uri, m).await;
}

#[tokio::test]
async fn a_missing_or_wrong_identity_is_a_clear_error_and_restores_nothing() {
    let e = encrypted_backup().await;
    let other = Keys::from_identity(age::x25519::Identity::generate());
    let recipient = &e.keys.recipients()[0];

    let missing = nightdump::verify::verify(&e.store, &Selector::Latest, None)
        .await
        .unwrap_err();
    let text = missing.to_string();
    assert!(
        text.contains("--identity") && text.contains(recipient),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
    let wrong = nightdump::verify::verify(&e.store, &Selector::Latest, Some(&other))
        .await
        .unwrap_err();
    assert!(
        wrong.to_string().contains("none of the identities"),
        "{wrong}"
    );
    // A key error, as the README's table says: exit 4.
    assert_eq!(
        (wrong.exit_code(), wrong.error_type()),
        (4, "KeyRejected"),
        "{wrong}"
    );
    let mut out = Vec::new();
    let err = nightdump::cat::cat(&e.store, &Selector::Latest, None, false, &mut out)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--identity"), "{err}");
    assert!(out.is_empty());

    let target = fresh_target().await;
    for keys in [None, Some(other)] {
        let wrong_key = keys.is_some();
        let err = restore::run(
            &restore_options(&target.uri(), keys),
            from_backup(&e.store),
            &progress(),
        )
        .await
        .unwrap_err();
        assert!(!matches!(err, Error::RestoreFailed { .. }), "{err}");
        let expected = if wrong_key {
            "none of the identities"
        } else {
            "--identity"
        };
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert!(user_databases(&target.uri()).await.is_empty());
}

fn flip(path: &Path, at: impl Fn(usize) -> usize) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let i = at(bytes.len());
    bytes[i] ^= 0x01;
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// A damaged age header makes the stored bytes differ from the manifest's SHA-256: that is
/// what verify reports (exit 6), before any word about the identity; and no message names
/// the backup twice.
#[tokio::test]
async fn a_damaged_age_header_is_damage_not_a_wrong_identity() {
    let e = encrypted_backup().await;
    // Inside the recipient stanza, before the header's MAC.
    flip(&stored_path(&e), |_| 40);
    let err = nightdump::verify::verify(&e.store, &Selector::Latest, Some(&e.keys))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 6, "{err}");
    assert!(err.to_string().contains("SHA-256"), "{err}");
    assert!(!err.to_string().contains("none of the identities"), "{err}");
    let mut out = Vec::new();
    let err = nightdump::cat::cat(&e.store, &Selector::Latest, Some(&e.keys), false, &mut out)
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("backup backup"), "{err}");
}

#[tokio::test]
async fn a_flipped_byte_is_caught_before_anything_is_restored() {
    let e = encrypted_backup().await;
    let damaged = flip(&stored_path(&e), |len| len / 2);

    let err = nightdump::verify::verify(&e.store, &Selector::Latest, Some(&e.keys))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");

    let target = fresh_target().await;
    let err = restore::run(
        &restore_options(&target.uri(), Some(e.keys.clone())),
        from_backup(&e.store),
        &progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(user_databases(&target.uri()).await.is_empty());

    // Without the manifest (an archive file), the stream is checked chunk by chunk as it is
    // read. Damage in the first 64 KiB chunk stops it before the first write.
    let original = flip_back(damaged);
    let payload = original.windows(4).position(|w| w == b"--- ").unwrap();
    let payload = payload
        + original[payload..]
            .iter()
            .position(|b| *b == b'\n')
            .unwrap()
        + 1;
    let file = e.dir.path().join("copy.archive.gz.age");
    let mut early = original.clone();
    early[payload + 16 + 100] ^= 0x01;
    std::fs::write(&file, &early).unwrap();
    let err = restore::run(
        &restore_options(&target.uri(), Some(e.keys.clone())),
        Input::File(file.clone()),
        &progress(),
    )
    .await
    .unwrap_err();
    assert!(!matches!(err, Error::RestoreFailed { .. }), "{err}");
    assert!(err.to_string().contains("damaged"), "{err}");
    assert!(user_databases(&target.uri()).await.is_empty());

    // Damage further in stops the restore at that chunk: nothing of it is written, and the
    // report says what the chunks before it restored.
    assert!(
        original.len() > payload + 3 * 65_536,
        "the archive spans several chunks"
    );
    std::fs::write(&file, flip_back(original.clone())).unwrap();
    let later = fresh_target().await;
    let err = restore::run(
        &restore_options(&later.uri(), Some(e.keys.clone())),
        Input::File(file.clone()),
        &progress(),
    )
    .await
    .unwrap_err();
    let Some(report) = err.restore_report() else {
        panic!("expected a partial restore report: {err}");
    };
    assert!(err.to_string().contains("age decryption failed"), "{err}");
    assert!(report.totals.inserted < e.manifest.totals.documents);

    // The undamaged file restores through the same path.
    std::fs::write(&file, &original).unwrap();
    let report = restore::run(
        &restore_options(&target.uri(), Some(e.keys.clone())),
        Input::File(file),
        &progress(),
    )
    .await
    .unwrap();
    assert!(report.totals.inserted > 0);
}

fn flip_back(mut bytes: Vec<u8>) -> Vec<u8> {
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    bytes
}

/// Interoperability with the reference `age` command: set NIGHTDUMP_TEST_AGE_BIN to its path
/// (e.g. /usr/bin/age, with age-keygen next to it) to run.
#[tokio::test]
async fn the_reference_age_tool_decrypts_a_backup() {
    let Ok(age_bin) = std::env::var("NIGHTDUMP_TEST_AGE_BIN") else {
        eprintln!("NIGHTDUMP_TEST_AGE_BIN not set: skipping the age interoperability check");
        return;
    };
    let age_bin = PathBuf::from(age_bin);
    let keygen = age_bin.with_file_name("age-keygen");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.txt");
    let status = std::process::Command::new(&keygen)
        .arg("-o")
        .arg(&key_file)
        .status()
        .unwrap();
    assert!(status.success());
    // nightdump reads the identity file age-keygen wrote, and encrypts to its public key.
    let keys = Keys::from_file(&key_file).unwrap();
    let source = demo_source().await;
    let store_dir = tempfile::tempdir().unwrap();
    let store = local_store(store_dir.path()).await;
    let mut opts = options(&source.uri);
    opts.encrypt =
        Encrypt::parse_all("--encrypt", &[format!("age:{}", keys.recipients()[0])]).unwrap();
    let m = backup::run(&opts, &store, &progress())
        .await
        .unwrap()
        .manifest;
    let out = std::process::Command::new(&age_bin)
        .arg("-d")
        .arg("-i")
        .arg(&key_file)
        .arg(store_dir.path().join(&m.archive.key))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ours = Vec::new();
    nightdump::cat::cat(&store, &Selector::Latest, Some(&keys), false, &mut ours)
        .await
        .unwrap();
    assert_eq!(out.stdout, ours);
    let docs: usize = read_archive(&out.stdout).docs.values().map(Vec::len).sum();
    assert_eq!(docs as u64, m.totals.documents);
}

/// KMS envelope encryption on moto: a data key per backup from GenerateDataKey, the archive
/// sealed in 64 KiB chunks, the wrapped key in the manifest.
mod kms {
    use base64::Engine;
    use nightdump::crypto::{Kms, CONTEXT_KEY};
    use nightdump::store::{Destination, S3Options};

    use super::*;
    use crate::support::bucket;
    use crate::support::moto::Moto;

    struct KmsBackup {
        source: Source,
        moto: &'static Moto,
        bucket: String,
        store: Store,
        manifest: Manifest,
        kms: Kms,
        key_arn: String,
    }

    async fn kms_client(moto: &Moto) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&moto.sdk_config().await)
    }

    async fn create_key(moto: &Moto) -> String {
        let key = moto.create_kms_key().await;
        key.arn().unwrap().to_string()
    }

    /// A new key and an alias naming it (unique to this process and `label`): its ARN and
    /// the alias.
    async fn key_with_alias(moto: &Moto, label: &str) -> (String, String) {
        let key_arn = create_key(moto).await;
        let alias = format!("alias/nightdump-{label}-{}", std::process::id());
        kms_client(moto)
            .await
            .create_alias()
            .alias_name(&alias)
            .target_key_id(&key_arn)
            .send()
            .await
            .unwrap();
        (key_arn, alias)
    }

    async fn open_store(moto: &Moto, bucket: &str) -> Store {
        let sdk = moto.sdk_config().await;
        let dest: Destination = format!("s3://{bucket}/nightly").parse().unwrap();
        let s3 = S3Options {
            force_path_style: true,
            ..S3Options::default()
        };
        Store::open_with_sdk_config(&dest, &sdk, &s3).await.unwrap()
    }

    async fn kms_backup(label: &str) -> KmsBackup {
        let moto = Moto::shared();
        let (key_arn, alias) = key_with_alias(moto, label).await;
        let bucket = moto.create_bucket(label).await;
        let store = open_store(moto, &bucket).await;
        let kms = Kms::from_sdk_config(&moto.sdk_config().await);
        let source = demo_source().await;
        let mut opts = options(&source.uri);
        opts.encrypt = Encrypt::parse_all("--encrypt", &[format!("kms:{alias}")])
            .unwrap()
            .map(|e| e.with_kms(kms.clone()));
        let manifest = backup::run(&opts, &store, &progress())
            .await
            .unwrap()
            .manifest;
        KmsBackup {
            source,
            moto,
            bucket,
            store,
            manifest,
            kms,
            key_arn,
        }
    }

    impl KmsBackup {
        fn full_key(&self, key: &str) -> String {
            format!("nightly/{key}")
        }

        async fn get(&self, key: &str) -> Vec<u8> {
            let s3 = self.moto.s3_client().await;
            bucket::object(&s3, &self.bucket, &self.full_key(key)).await
        }

        async fn put(&self, key: &str, bytes: Vec<u8>) {
            self.moto
                .s3_client()
                .await
                .put_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .body(bytes.into())
                .send()
                .await
                .unwrap();
        }

        fn manifest_key(&self) -> String {
            format!("{}/manifest.json", self.manifest.backup_id)
        }

        async fn put_manifest(&self, m: &Manifest) {
            self.put(&self.manifest_key(), m.to_json()).await;
        }

        fn keys(&self) -> Keys {
            Keys::from_kms(self.kms.clone())
        }

        /// Verify, cat and a restore all fail; the restore writes nothing.
        /// By id: a truncated archive makes the backup incomplete, which `latest` never names.
        async fn all_fail(&self, needle: &str) {
            let keys = self.keys();
            let this = Selector::Id(self.manifest.backup_id.parse().unwrap());
            let err = nightdump::verify::verify(&self.store, &this, Some(&keys))
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(text.contains(needle), "verify: {text}");
            assert!(!text.contains('\n'), "{text}");
            let mut out = Vec::new();
            let err = nightdump::cat::cat(&self.store, &this, Some(&keys), false, &mut out)
                .await
                .unwrap_err();
            assert!(err.to_string().contains(needle), "cat: {err}");
            let target = fresh_target().await;
            let err = restore::run(
                &restore_options(&target.uri(), Some(keys)),
                Input::Backup {
                    store: &self.store,
                    selector: this.clone(),
                    verify_first: true,
                },
                &progress(),
            )
            .await
            .unwrap_err();
            assert!(!matches!(err, Error::RestoreFailed { .. }), "{err}");
            assert!(err.to_string().contains(needle), "restore: {err}");
            assert!(user_databases(&target.uri()).await.is_empty());
        }
    }

    #[tokio::test]
    async fn a_kms_encrypted_backup_round_trips_on_moto() {
        let b = kms_backup("kms-round-trip").await;
        let m = &b.manifest;
        let enc = &m.archive.encryption;
        assert_eq!(enc.scheme, "kms");
        // The alias is resolved to the key's ARN, which Decrypt is then held to.
        assert_eq!(enc.kms_key_id.as_deref(), Some(b.key_arn.as_str()));
        assert!(
            m.archive.key.ends_with("/dump.archive.gz.enc"),
            "{}",
            m.archive.key
        );

        // The data key is bound to the backup: KMS opens it under this backup's id only.
        let wrapped = base64::engine::general_purpose::STANDARD
            .decode(enc.wrapped_key.as_deref().unwrap())
            .unwrap();
        let kms = kms_client(b.moto).await;
        let unwrap = |backup: &str| {
            kms.decrypt()
                .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped.clone()))
                .encryption_context(CONTEXT_KEY, backup)
                .send()
        };
        let plaintext = unwrap(&m.backup_id)
            .await
            .unwrap()
            .plaintext()
            .unwrap()
            .as_ref()
            .to_vec();
        assert_eq!(plaintext.len(), 32);
        assert!(unwrap("20000101T000000Z").await.is_err());
        let manifest_text = String::from_utf8(b.get(&b.manifest_key()).await).unwrap();
        for form in [
            hex::encode(&plaintext),
            base64::engine::general_purpose::STANDARD.encode(&plaintext),
        ] {
            assert!(
                !manifest_text.contains(&form),
                "the manifest holds the plaintext data key"
            );
        }

        let stored = b.get(&m.archive.key).await;
        assert!(stored.starts_with(b"NDENC\0\x01\x01"));
        assert!(!stored.windows(8).any(|w| w == b"shop\0\0\0\0"));
        assert_eq!(stored.len() as u64, m.archive.size);
        assert_eq!(hex::encode(sha2::Sha256::digest(&stored)), m.archive.sha256);

        let keys = b.keys();
        let report = nightdump::verify::verify(&b.store, &Selector::Latest, Some(&keys))
            .await
            .unwrap();
        assert_eq!(report.documents, m.totals.documents);

        let mut plain = Vec::new();
        nightdump::cat::cat(&b.store, &Selector::Latest, Some(&keys), false, &mut plain)
            .await
            .unwrap();
        assert_eq!(&plain[..2], &[0x1f, 0x8b]);
        let contents = read_archive(&plain);
        let docs: usize = contents.docs.values().map(Vec::len).sum();
        assert_eq!(docs as u64, m.totals.documents);

        let target = assert_restores_like_source(&b.store, keys, &b.source.uri, m).await;

        // An archive file carries no wrapped key: restoring one says where to restore from.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dump.archive.gz.enc");
        std::fs::write(&file, &stored).unwrap();
        let err = restore::run(
            &restore_options(&target.uri(), Some(b.keys())),
            Input::File(file),
            &progress(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("--from"), "{err}");
    }

    /// The binary, with nothing but the AWS settings a machine would have: KMS is reached
    /// through the standard configuration chain, as S3 is.
    async fn cli(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_nightdump"))
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_command_line_backs_up_verifies_and_cats_with_kms_from_the_environment() {
        let moto = Moto::shared();
        let (_, alias) = key_with_alias(moto, "cli").await;
        let bucket = moto.create_bucket("kms-cli").await;
        let to = format!("s3://{bucket}/nightly");
        let source = demo_source().await;
        let env = aws_env(&moto.endpoint());
        let backup = cli(
            &[
                "backup",
                "--uri",
                &source.uri,
                "--to",
                &to,
                "--allow-inconsistent",
                "--encrypt",
                &format!("kms:{alias}"),
                "--quiet",
            ],
            &env,
        )
        .await;
        assert!(
            backup.status.success(),
            "{}",
            String::from_utf8_lossy(&backup.stderr)
        );
        let verify = cli(&["verify", "latest", "--from", &to], &env).await;
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stderr)
        );
        assert!(String::from_utf8_lossy(&verify.stdout).contains("is intact"));
        let cat = cli(&["cat", "latest", "--from", &to], &env).await;
        assert!(
            cat.status.success(),
            "{}",
            String::from_utf8_lossy(&cat.stderr)
        );
        let contents = read_archive(&cat.stdout);
        assert!(contents.docs.values().map(Vec::len).sum::<usize>() > 0);

        // The stored bytes as a file: without the manifest there is no wrapped key.
        let raw = cli(&["cat", "latest", "--from", &to, "--raw"], &env).await;
        assert!(raw.stdout.starts_with(b"NDENC\0"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dump.archive.gz.enc");
        std::fs::write(&file, &raw.stdout).unwrap();
        let target = fresh_target().await;
        let restore = cli(
            &[
                "restore",
                "--archive",
                file.to_str().unwrap(),
                "--uri",
                &target.uri(),
                "--quiet",
            ],
            &env,
        )
        .await;
        assert_eq!(restore.status.code(), Some(2));
        let text = String::from_utf8_lossy(&restore.stderr);
        assert!(text.contains("--from"), "{text}");
        assert!(user_databases(&target.uri()).await.is_empty());

        // S3 reachable but KMS not: the error names KMS and what to check, on one line.
        let kms_down = format!("http://127.0.0.1:{}", closed_port());
        let mut env = env.clone();
        env.push(("AWS_ENDPOINT_URL_KMS", kms_down));
        let down = cli(&["verify", "latest", "--from", &to], &env).await;
        assert_eq!(down.status.code(), Some(4));
        let text = String::from_utf8_lossy(&down.stderr);
        assert!(text.contains("KMS is unreachable"), "{text}");
        assert_eq!(text.trim().lines().count(), 1, "{text}");
    }

    #[tokio::test]
    async fn an_unknown_kms_key_fails_the_backup_before_anything_is_written() {
        let moto = Moto::shared();
        let bucket = moto.create_bucket("kms-unknown").await;
        let store = open_store(moto, &bucket).await;
        let source = demo_source().await;
        let mut opts = options(&source.uri);
        let kms = Kms::from_sdk_config(&moto.sdk_config().await);
        opts.encrypt = Encrypt::parse_all("--encrypt", &["kms:alias/no-such-key"])
            .unwrap()
            .map(|e| e.with_kms(kms));
        let err = backup::run(&opts, &store, &progress()).await.unwrap_err();
        assert!(matches!(err, Error::Kms(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("alias/no-such-key") && text.contains("not found"),
            "{text}"
        );
        assert!(store.list("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_decrypt_or_a_damaged_wrapped_key_restores_nothing() {
        let b = kms_backup("kms-refused").await;
        // The manifest pointing at another key: KMS refuses the Decrypt (moto answers
        // AccessDenied, as KMS does for a key the caller may not use).
        let other = create_key(b.moto).await;
        let mut m = b.manifest.clone();
        m.archive.encryption.kms_key_id = Some(other);
        b.put_manifest(&m).await;
        b.all_fail("KMS refused Decrypt").await;

        // A damaged wrapped key does not unwrap.
        let mut m = b.manifest.clone();
        let mut wrapped = base64::engine::general_purpose::STANDARD
            .decode(m.archive.encryption.wrapped_key.as_deref().unwrap())
            .unwrap();
        let last = wrapped.len() - 1;
        wrapped[last] ^= 0x01;
        m.archive.encryption.wrapped_key =
            Some(base64::engine::general_purpose::STANDARD.encode(&wrapped));
        b.put_manifest(&m).await;
        b.all_fail("wrapped_key is damaged").await;

        // The intact manifest back: the backup reads again.
        b.put_manifest(&b.manifest).await;
        nightdump::verify::verify(&b.store, &Selector::Latest, Some(&b.keys()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_flipped_or_truncated_object_is_caught_before_anything_is_restored() {
        let b = kms_backup("kms-damage").await;
        let key = b.manifest.archive.key.clone();
        let original = b.get(&key).await;
        assert!(original.len() > 27 + 2 * (65_536 + 16), "several chunks");
        for at in [10, 27 + 5, original.len() / 2, original.len() - 3] {
            let mut bad = original.clone();
            bad[at] ^= 0x01;
            b.put(&key, bad).await;
            b.all_fail("damaged").await;
        }
        // Cut at a chunk boundary: every chunk left authenticates, none is flagged last.
        let boundary = 27 + 65_536 + 16;
        for cut in [boundary, original.len() - 100] {
            b.put(&key, original[..cut].to_vec()).await;
            b.all_fail("truncated").await;
        }
        b.put(&key, original).await;
        nightdump::verify::verify(&b.store, &Selector::Latest, Some(&b.keys()))
            .await
            .unwrap();
    }
}
