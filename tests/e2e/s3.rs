//! Backups into S3 (moto on loopback): SSE-KMS, verify, a missing bucket. What a failing S3
//! does to a backup is in the fault suite (`faults.rs`).

use nightdump::backup;
use nightdump::catalog::Selector;
use nightdump::layout::parse_time;
use nightdump::store::{Destination, S3Options, Sse, Store};
use nightdump::Error;

use crate::harness::*;
use crate::support::bucket;
use crate::support::moto::Moto;

async fn s3_store(endpoint: &str, bucket: &str, sse: Sse, part_size: usize) -> (Store, S3Options) {
    s3_store_with(
        endpoint,
        bucket,
        S3Options {
            force_path_style: true,
            sse,
            part_size,
            ..S3Options::default()
        },
    )
    .await
}

async fn s3_store_with(endpoint: &str, bucket: &str, s3: S3Options) -> (Store, S3Options) {
    let sdk = Moto::sdk_config_for(endpoint).await;
    let dest: Destination = format!("s3://{bucket}/nightly").parse().unwrap();
    let store = Store::open_with_sdk_config(&dest, &sdk, &s3).await.unwrap();
    (store, s3)
}

#[tokio::test]
async fn backup_to_s3_with_sse_kms_is_complete_and_verifiable() {
    let moto = Moto::shared();
    let bucket = moto.create_bucket("backup-kms").await;
    let key_id = moto.create_kms_key().await.key_id().to_string();
    let (store, s3) = s3_store(
        &moto.endpoint(),
        &bucket,
        Sse::Kms {
            key_id: Some(key_id.clone()),
        },
        nightdump::store::DEFAULT_PART_SIZE,
    )
    .await;

    let source = demo_source().await;
    let mut opts = options(&source.uri);
    opts.s3 = s3;
    opts.scheduled_at = Some(parse_time("2026-11-25T03:00:00Z").unwrap());
    let m = backup::run(&opts, &store, &progress())
        .await
        .unwrap()
        .manifest;
    assert_eq!(
        bucket::keys(&moto.s3_client().await, &bucket).await,
        vec![
            "nightly/20261125T030000Z/dump.archive.gz".to_string(),
            "nightly/20261125T030000Z/manifest.json".to_string(),
            "nightly/latest.json".to_string(),
        ]
    );
    assert_eq!(m.storage.backend, "s3");
    assert_eq!(m.storage.sse, "aws:kms");
    let head = bucket::head(
        &moto.s3_client().await,
        &bucket,
        "nightly/20261125T030000Z/dump.archive.gz",
    )
    .await;
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert!(head.ssekms_key_id().unwrap_or_default().contains(&key_id));
    assert_eq!(head.content_length(), Some(m.archive.size as i64));

    let body = bucket::object(
        &moto.s3_client().await,
        &bucket,
        "nightly/20261125T030000Z/dump.archive.gz",
    )
    .await;
    let contents = read_archive(&body);
    let archived: u64 = contents.docs.values().map(|d| d.len() as u64).sum();
    assert_eq!(archived, m.totals.documents);
    let report = nightdump::verify::verify(&store, &Selector::Latest, None)
        .await
        .unwrap();
    assert_eq!(report.sha256, m.archive.sha256);
    assert_eq!(
        bucket::unfinished_uploads(&moto.s3_client().await, &bucket).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_missing_bucket_is_a_clear_destination_error() {
    let moto = Moto::shared();
    let sdk = Moto::sdk_config_for(&moto.endpoint()).await;
    let dest: Destination = "s3://no-such-bucket-here/x".parse().unwrap();
    let s3 = S3Options {
        force_path_style: true,
        ..S3Options::default()
    };
    let err = Error::from(
        Store::open_with_sdk_config(&dest, &sdk, &s3)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.exit_code(), 4);
    assert!(err.to_string().contains("no-such-bucket-here"), "{err}");
}
