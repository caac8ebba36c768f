//! S3 Object Lock on moto: every object of a backup retained, deletes of locked versions
//! refused, prune keeping locked backups without sending a delete.

use std::time::Duration;

use bytes::Bytes;
use nightdump::backup;
use nightdump::layout::parse_time;
use nightdump::prune::{self, Outcome, Policy};
use nightdump::store::{
    Destination, LockMode, ObjectLock, S3Options, Store, StoreError, MIN_PART_SIZE,
};

use crate::harness::*;
use crate::support::bucket;
use crate::support::moto::Moto;

const LOCK: ObjectLock = ObjectLock {
    mode: LockMode::Governance,
    retain_for: Duration::from_secs(35 * 86_400),
};

async fn locked_bucket(moto: &Moto, label: &str) -> String {
    let bucket = format!("{}-{}", moto.create_bucket(label).await, "lock");
    moto.s3_client()
        .await
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    bucket
}

async fn open(moto: &Moto, bucket: &str, lock: Option<ObjectLock>) -> Result<Store, StoreError> {
    let sdk = moto.sdk_config().await;
    let dest: Destination = format!("s3://{bucket}/nightly").parse().unwrap();
    let s3 = S3Options {
        force_path_style: true,
        part_size: MIN_PART_SIZE,
        object_lock: lock,
        ..S3Options::default()
    };
    Store::open_with_sdk_config(&dest, &sdk, &s3).await
}

/// Mode and retain-until date of the current version of `key`, as S3 reports them on
/// HeadObject (moto does not implement GetObjectRetention).
async fn retention(moto: &Moto, bucket: &str, key: &str) -> Option<(String, i64)> {
    let out = bucket::head(&moto.s3_client().await, bucket, &format!("nightly/{key}")).await;
    Some((
        out.object_lock_mode()?.as_str().to_string(),
        out.object_lock_retain_until_date()?.secs(),
    ))
}

async fn versions(moto: &Moto, bucket: &str) -> Vec<(String, String)> {
    let out = moto
        .s3_client()
        .await
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut v: Vec<(String, String)> = out
        .versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap().to_string(),
                v.version_id().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_object_of_a_locked_backup_is_retained_and_prune_keeps_it() {
    let moto = Moto::shared();
    let bucket = locked_bucket(moto, "object-lock").await;
    let store = open(moto, &bucket, Some(LOCK)).await.unwrap();
    let source = demo_source().await;
    let mut opts = options(&source.uri);
    opts.s3.object_lock = Some(LOCK);
    let mut manifests = Vec::new();
    for at in ["2026-11-20T03:00:00Z", "2026-11-21T03:00:00Z"] {
        opts.scheduled_at = Some(parse_time(at).unwrap());
        manifests.push(
            backup::run(&opts, &store, &progress())
                .await
                .unwrap()
                .manifest,
        );
    }

    for m in &manifests {
        let lock = m
            .storage
            .object_lock
            .as_ref()
            .expect("the manifest records the lock");
        assert_eq!(lock.mode, "governance");
        let until = parse_time(&lock.retain_until).unwrap();
        let started = parse_time(&m.started_at).unwrap();
        assert!((until - started - time::Duration::days(35)).abs() < time::Duration::seconds(1));
        for key in [
            m.archive.key.clone(),
            format!("{}/manifest.json", m.backup_id),
        ] {
            assert_eq!(
                retention(moto, &bucket, &key).await,
                Some(("GOVERNANCE".to_string(), until.unix_timestamp())),
                "{key}"
            );
        }
    }
    // latest.json is overwritten by every backup: it is not locked.
    assert_eq!(retention(moto, &bucket, "latest.json").await, None);

    // Deleting a locked version is refused.
    let before = versions(moto, &bucket).await;
    let (key, version) = before
        .iter()
        .find(|(k, _)| k.ends_with("dump.archive.gz"))
        .unwrap();
    let refused = moto
        .s3_client()
        .await
        .delete_object()
        .bucket(&bucket)
        .key(key)
        .version_id(version)
        .send()
        .await;
    assert!(refused.is_err(), "a locked version was deleted");

    // The policy removes the older backup; prune keeps it, says why, and deletes nothing.
    let policy = Policy {
        last: 1,
        ..Policy::default()
    };
    let report = prune::run(&store, &policy, true, None).await.unwrap();
    assert!(report.error.is_none());
    let older = &manifests[0];
    let removal = report
        .remove
        .iter()
        .find(|r| r.id.to_string() == older.backup_id)
        .expect("the policy removes the older backup");
    let until = &older.storage.object_lock.as_ref().unwrap().retain_until;
    assert_eq!(
        removal.outcome,
        Outcome::Locked {
            detail: format!("locked until {until}")
        }
    );
    assert!(report
        .keep
        .iter()
        .any(|k| k.id.to_string() == older.backup_id && k.reasons[0].starts_with("locked until")));
    assert_eq!(versions(moto, &bucket).await, before);
    let listed = store.list("").await.unwrap();
    assert!(listed.iter().any(|o| o.key == older.archive.key));
}

#[tokio::test]
async fn a_large_locked_upload_goes_multipart_with_retention() {
    let moto = Moto::shared();
    let bucket = locked_bucket(moto, "object-lock-multipart").await;
    let store = open(moto, &bucket, Some(LOCK)).await.unwrap();
    let wanted = LOCK.retention_from(time::OffsetDateTime::now_utc());
    let mut upload = store
        .start_upload(
            "big/object",
            nightdump::store::PutOptions::create().retained(Some(wanted)),
        )
        .await
        .unwrap();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..11 {
        upload.write(Bytes::from(chunk.clone())).await.unwrap();
    }
    let receipt = upload.finish().await.unwrap();
    assert_eq!(receipt.parts, 3);
    assert_eq!(
        retention_of(&store, "big/object").await,
        Some(wanted),
        "the store reads back what it set"
    );
    assert_eq!(
        retention(moto, &bucket, "big/object").await,
        Some(("GOVERNANCE".into(), wanted.until.unix_timestamp()))
    );
}

async fn retention_of(store: &Store, key: &str) -> Option<nightdump::store::Retention> {
    store.retention(key).await.unwrap()
}

#[tokio::test]
async fn a_bucket_without_object_lock_or_a_directory_is_refused_before_the_dump() {
    let moto = Moto::shared();
    let plain = moto.create_bucket("no-object-lock").await;
    let err = open(moto, &plain, Some(LOCK)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::ObjectLockDisabled { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&plain), "{err}");
    // Without the setting the same bucket opens, and retention reads as none.
    let store = open(moto, &plain, None).await.unwrap();
    store
        .put(
            "x/manifest.json",
            Bytes::from_static(b"{}"),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(store.retention("x/manifest.json").await.unwrap(), None);

    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Options {
        object_lock: Some(LOCK),
        ..S3Options::default()
    };
    let err = Store::open(
        &Destination::Local {
            root: dir.path().to_path_buf(),
        },
        &s3,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::ObjectLockNeedsS3 { .. }), "{err}");
    assert!(err.to_string().contains("s3://"), "{err}");
}

/// #13.4: a bucket whose default retention locks every new object refuses a put without an
/// integrity header. Every object and part carries Content-MD5, so such a bucket takes a
/// whole backup (archive in several parts, manifest, latest.json) and it verifies.
#[tokio::test]
async fn a_bucket_with_default_retention_takes_every_backup() {
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
        ObjectLockRule,
    };
    let moto = Moto::shared();
    let bucket = locked_bucket(moto, "default-retention").await;
    moto.s3_client()
        .await
        .put_object_lock_configuration()
        .bucket(&bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder()
                                .mode(ObjectLockRetentionMode::Governance)
                                .days(1)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let source = mongo_test_server::start(mongo_test_server::ServerConfig {
        seed: "bench:24MiB".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let store = open(moto, &bucket, None).await.unwrap();
    let mut opts = options(&source.uri());
    opts.compression_level = 1;
    opts.s3 = S3Options {
        force_path_style: true,
        part_size: MIN_PART_SIZE,
        ..S3Options::default()
    };
    let outcome = backup::run(&opts, &store, &progress()).await.unwrap();
    assert!(
        outcome.manifest.archive.size > MIN_PART_SIZE as u64,
        "several parts"
    );
    assert_eq!(outcome.latest_warning, None);
    nightdump::verify::verify(&store, &nightdump::catalog::Selector::Latest, None)
        .await
        .unwrap();
    assert!(bucket::unfinished_uploads(&moto.s3_client().await, &bucket)
        .await
        .is_empty());
}

/// #13.7: on a versioned bucket a delete only adds a delete marker in front of a version
/// under legal hold; prune counts a legal hold as a lock and never reports such a backup
/// removed.
#[tokio::test]
async fn a_legal_hold_keeps_a_backup_from_prune() {
    use aws_sdk_s3::types::{ObjectLockLegalHold, ObjectLockLegalHoldStatus};
    let moto = Moto::shared();
    let bucket = locked_bucket(moto, "legal-hold").await;
    let source = mongo_test_server::start(mongo_test_server::ServerConfig {
        seed: mongo_test_server::Seed::Demo,
        ..Default::default()
    })
    .await
    .unwrap();
    let store = open(moto, &bucket, None).await.unwrap();
    let mut opts = options(&source.uri());
    opts.s3.force_path_style = true;
    let mut ids = Vec::new();
    for t in ["2026-11-24T03:00:00Z", "2026-11-25T03:00:00Z"] {
        opts.scheduled_at = Some(parse_time(t).unwrap());
        ids.push(
            backup::run(&opts, &store, &progress())
                .await
                .unwrap()
                .manifest,
        );
    }
    let held = &ids[0];
    moto.s3_client()
        .await
        .put_object_legal_hold()
        .bucket(&bucket)
        .key(format!("nightly/{}", held.archive.key))
        .legal_hold(
            ObjectLockLegalHold::builder()
                .status(ObjectLockLegalHoldStatus::On)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let policy = Policy {
        last: 1,
        ..Policy::default()
    };
    let report = prune::run(&store, &policy, true, None).await.unwrap();
    let removal = report
        .remove
        .iter()
        .find(|r| r.id.to_string() == held.backup_id)
        .expect("the policy removes the older backup");
    let Outcome::Locked { detail } = &removal.outcome else {
        panic!("a held backup is not removed: {:?}", removal.outcome)
    };
    assert!(detail.contains("legal hold"), "{detail}");
    assert!(bucket::keys(&moto.s3_client().await, &bucket)
        .await
        .contains(&format!("nightly/{}", held.archive.key)));
}
