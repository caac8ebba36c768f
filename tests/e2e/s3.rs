//! Backups into S3 (moto on loopback): SSE-KMS, verify, and the promises kept when S3 fails.

use std::time::Duration;

use nightdump::backup;
use nightdump::catalog::Selector;
use nightdump::layout::parse_time;
use nightdump::store::{Destination, S3Options, Sse, Store};
use nightdump::Error;

use crate::harness::*;
use crate::support::fault_proxy::FaultProxy;
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

async fn multipart_uploads(moto: &Moto, bucket: &str) -> usize {
    moto.s3_client()
        .await
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap()
        .uploads()
        .len()
}

async fn keys(moto: &Moto, bucket: &str) -> Vec<String> {
    let out = moto
        .s3_client()
        .await
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn backup_to_s3_with_sse_kms_is_complete_and_verifiable() {
    let moto = Moto::shared();
    let bucket = moto.create_bucket("backup-kms").await;
    let kms = aws_sdk_kms::Client::new(&moto.sdk_config().await);
    let key = kms
        .create_key()
        .description("backups")
        .send()
        .await
        .unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_string();
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
        keys(moto, &bucket).await,
        vec![
            "nightly/20261125T030000Z/dump.archive.gz".to_string(),
            "nightly/20261125T030000Z/manifest.json".to_string(),
            "nightly/latest.json".to_string(),
        ]
    );
    assert_eq!(m.storage.backend, "s3");
    assert_eq!(m.storage.sse, "aws:kms");
    let head = moto
        .s3_client()
        .await
        .head_object()
        .bucket(&bucket)
        .key("nightly/20261125T030000Z/dump.archive.gz")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert!(head.ssekms_key_id().unwrap_or_default().contains(&key_id));
    assert_eq!(head.content_length(), Some(m.archive.size as i64));

    let body = moto
        .s3_client()
        .await
        .get_object()
        .bucket(&bucket)
        .key("nightly/20261125T030000Z/dump.archive.gz")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let contents = read_archive(&body);
    let archived: u64 = contents.docs.values().map(|d| d.len() as u64).sum();
    assert_eq!(archived, m.totals.documents);
    let report = nightdump::verify::verify(&store, &Selector::Latest)
        .await
        .unwrap();
    assert_eq!(report.sha256, m.archive.sha256);
    assert_eq!(multipart_uploads(moto, &bucket).await, 0);
}

#[tokio::test]
async fn s3_stopping_mid_upload_fails_the_backup_and_leaves_no_upload_or_manifest() {
    let moto = Moto::shared();
    let bucket = moto.create_bucket("backup-cut").await;
    let proxy = FaultProxy::start(moto.addr()).await;
    // One attempt per request: the outage below must fail the part upload rather than be
    // ridden out by the SDK's retries (which the store tests cover).
    let (store, s3) = s3_store_with(
        &proxy.endpoint(),
        &bucket,
        S3Options {
            force_path_style: true,
            part_size: nightdump::store::MIN_PART_SIZE,
            max_attempts: 1,
            // A request caught by the cut may wait for an answer that never comes.
            attempt_timeout: Duration::from_secs(5),
            ..S3Options::default()
        },
    )
    .await;

    // Enough poorly compressible data for several 5 MiB parts, read slowly so the cut lands
    // mid-upload.
    let server = mongo_test_server::start(mongo_test_server::ServerConfig {
        seed: "bench:48MiB".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Cursor replies are ~2 MiB, so 48 MiB is a few dozen batches: slow enough with this delay
    // that S3 can be cut after the first part and well before the last.
    server.faults().delay_batches(Duration::from_millis(250));
    let mut opts = options(&server.uri());
    opts.s3 = s3;
    opts.compression_level = 1;
    let run = tokio::spawn({
        let store = store.clone();
        async move { backup::run(&opts, &store, &progress()).await }
    });
    // Wait until the multipart upload has started and at least one part went through.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while multipart_uploads(moto, &bucket).await == 0 || proxy.requests_forwarded() < 3 {
        assert!(std::time::Instant::now() < deadline, "upload never started");
        assert!(
            !run.is_finished(),
            "the backup finished before S3 could be stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // S3 goes away for a moment: the part uploads in flight fail, the backup fails, and the
    // abort, retried with backoff, gets through once S3 is back.
    proxy.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.resume();
    let err = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the backup gives up")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err}");
    assert_eq!(err.to_string().lines().count(), 1);
    assert_eq!(
        multipart_uploads(moto, &bucket).await,
        0,
        "unfinished multipart upload left"
    );
    assert!(
        keys(moto, &bucket).await.is_empty(),
        "a failed backup left objects"
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
