//! Storage destinations: one conformance suite run against a local directory and against S3
//! (moto on loopback), then the failures each backend must turn into clear errors.

// Test code: a panic with its message is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use nightdump::store::{
    Destination, ObjectReader, S3Options, Sse, Store, StoreError, MIN_PART_SIZE,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use support::bucket;
use support::fault_proxy::{Fault, FaultProxy};
use support::listing;
use support::log_buffer::LogBuffer;
use support::moto::Moto;
use support::tmpfs::Tmpfs;

const PART: usize = MIN_PART_SIZE;

/// Deterministic, incompressible test data.
struct Data(u64);

impl Data {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            // xorshift64
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0 >> 24) as u8;
        }
    }
}

/// Chunk sizes that straddle part boundaries in every way.
const ODD_CHUNKS: [usize; 8] = [1, 7, 4093, 65_537, 1_048_573, 3_333_333, 10, 5_242_881];

/// Streams `total` bytes in odd-sized chunks, adding them to `hash`.
async fn stream_hashed(
    upload: &mut nightdump::store::Upload,
    total: usize,
    seed: u64,
    hash: &mut Sha256,
) {
    let mut data = Data(seed);
    let mut sent = 0;
    let mut i = 0;
    while sent < total {
        let n = ODD_CHUNKS[i % ODD_CHUNKS.len()].min(total - sent);
        i += 1;
        let mut chunk = vec![0u8; n];
        data.fill(&mut chunk);
        hash.update(&chunk);
        upload.write(Bytes::from(chunk)).await.expect("write");
        sent += n;
    }
}

/// Streams `total` bytes in odd-sized chunks; returns the data's SHA-256.
async fn stream_into(upload: &mut nightdump::store::Upload, total: usize, seed: u64) -> Vec<u8> {
    let mut hash = Sha256::new();
    stream_hashed(upload, total, seed, &mut hash).await;
    hash.finalize().to_vec()
}

async fn read_all_hash(store: &Store, key: &str) -> (usize, Vec<u8>) {
    let mut reader = store.open_read(key).await.unwrap().expect("object exists");
    hash_to_end(&mut reader, 256 * 1024).await
}

/// Reads to the end in reads of at most `buf_len` bytes; how many bytes, and their SHA-256.
async fn hash_to_end(reader: &mut ObjectReader, buf_len: usize) -> (usize, Vec<u8>) {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; buf_len];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
        hash.update(&buf[..n]);
    }
    (total, hash.finalize().to_vec())
}

/// The behaviour every backend must have.
mod cases {
    use super::*;

    pub async fn streamed_roundtrip(store: &Store) {
        let total = 20 * 1024 * 1024 + 12_345;
        let mut up = store
            .start_upload(
                "2024/dump.archive.gz",
                nightdump::store::PutOptions::default(),
            )
            .await
            .unwrap();
        let sent = stream_into(&mut up, total, 7).await;
        assert_eq!(up.bytes_written(), total as u64);
        assert!(
            store.head("2024/dump.archive.gz").await.unwrap().is_none(),
            "nothing may be visible before finish"
        );
        assert!(store.list("").await.unwrap().is_empty());
        let receipt = up.finish().await.unwrap();
        assert_eq!(receipt.size, total as u64);
        assert_eq!(receipt.key, "2024/dump.archive.gz");
        let (read, got) = read_all_hash(store, "2024/dump.archive.gz").await;
        assert_eq!(read, total);
        assert_eq!(got, sent, "content read back differs");
        let info = store.head("2024/dump.archive.gz").await.unwrap().unwrap();
        assert_eq!(info.size, total as u64);
        assert!(info.last_modified.is_some());
        assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());
    }

    pub async fn small_put_get(store: &Store) {
        assert_eq!(store.get("manifest.json").await.unwrap(), None);
        store
            .put(
                "manifest.json",
                Bytes::from_static(b"{\"v\":1}"),
                nightdump::store::PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            store.get("manifest.json").await.unwrap().as_deref(),
            Some(&b"{\"v\":1}"[..])
        );
        // Replacing is allowed without if_absent.
        store
            .put(
                "manifest.json",
                Bytes::from_static(b"{\"v\":2}"),
                nightdump::store::PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            store.get("manifest.json").await.unwrap().as_deref(),
            Some(&b"{\"v\":2}"[..])
        );
        // An empty object is an object.
        store
            .put(
                "empty",
                Bytes::new(),
                nightdump::store::PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(store.get("empty").await.unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(store.head("empty").await.unwrap().unwrap().size, 0);
        // A small streamed upload (less than a part) behaves the same.
        let mut up = store
            .start_upload("small/latest.json", nightdump::store::PutOptions::default())
            .await
            .unwrap();
        up.write(Bytes::from_static(b"abc")).await.unwrap();
        up.write(Bytes::from_static(b"def")).await.unwrap();
        let r = up.finish().await.unwrap();
        assert_eq!((r.size, r.parts), (6, 0));
        assert_eq!(
            store.get("small/latest.json").await.unwrap().as_deref(),
            Some(&b"abcdef"[..])
        );
        assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());
    }

    pub async fn if_absent_refusal(store: &Store) {
        store
            .put(
                "once",
                Bytes::from_static(b"first"),
                nightdump::store::PutOptions::create(),
            )
            .await
            .unwrap();
        let err = store
            .put(
                "once",
                Bytes::from_static(b"second"),
                nightdump::store::PutOptions::create(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists { key } if key == "once"),
            "{err:?}"
        );
        assert!(err.to_string().contains("once"));
        assert!(!err.is_retryable());
        assert_eq!(
            store.get("once").await.unwrap().as_deref(),
            Some(&b"first"[..])
        );

        // A multipart upload refused at completion leaves the original and no upload behind.
        let mut up = store
            .start_upload("once", nightdump::store::PutOptions::create())
            .await
            .unwrap();
        stream_into(&mut up, PART + PART / 2, 3).await;
        let err = up.finish().await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
        assert_eq!(
            store.get("once").await.unwrap().as_deref(),
            Some(&b"first"[..])
        );
        assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());

        // A small streamed upload too.
        let mut up = store
            .start_upload("once", nightdump::store::PutOptions::create())
            .await
            .unwrap();
        up.write(Bytes::from_static(b"x")).await.unwrap();
        assert!(matches!(
            up.finish().await,
            Err(StoreError::AlreadyExists { .. })
        ));
        assert_eq!(
            store.get("once").await.unwrap().as_deref(),
            Some(&b"first"[..])
        );
        assert_eq!(store.list("").await.unwrap().len(), 1);
        assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());
    }

    pub async fn list_head_delete(store: &Store) {
        let keys = [
            "b/2/x.gz",
            "a/1/manifest.json",
            "a/1/dump.gz",
            "a/10/dump.gz",
            "top.json",
        ];
        for (i, k) in keys.iter().enumerate() {
            store
                .put(
                    k,
                    Bytes::from(vec![b'z'; i + 1]),
                    nightdump::store::PutOptions::default(),
                )
                .await
                .unwrap();
        }
        let all: Vec<_> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        assert_eq!(
            all,
            vec![
                ("a/1/dump.gz".to_string(), 3),
                ("a/1/manifest.json".to_string(), 2),
                ("a/10/dump.gz".to_string(), 4),
                ("b/2/x.gz".to_string(), 1),
                ("top.json".to_string(), 5),
            ]
        );
        let a1 = listing::keys(store, "a/1/").await;
        assert_eq!(a1, ["a/1/dump.gz", "a/1/manifest.json"]);
        // A plain string prefix, as S3 does it.
        let a1x = listing::keys(store, "a/1").await;
        assert_eq!(a1x, ["a/1/dump.gz", "a/1/manifest.json", "a/10/dump.gz"]);
        assert!(store.list("nothing/").await.unwrap().is_empty());

        let head = store.head("a/10/dump.gz").await.unwrap().unwrap();
        assert_eq!((head.key.as_str(), head.size), ("a/10/dump.gz", 4));
        assert!(
            store.head("a/10").await.unwrap().is_none(),
            "a directory is not an object"
        );
        assert!(store.head("a/missing").await.unwrap().is_none());
        assert!(store.open_read("a/missing").await.unwrap().is_none());

        store
            .delete(&[
                "a/1/dump.gz".into(),
                "a/1/manifest.json".into(),
                "never/existed".into(),
            ])
            .await
            .unwrap();
        let left = listing::keys(store, "").await;
        assert_eq!(left, ["a/10/dump.gz", "b/2/x.gz", "top.json"]);
        assert!(store.get("a/1/dump.gz").await.unwrap().is_none());
        store.delete(&[]).await.unwrap();

        for bad in ["", "/abs", "../escape", "a//b"] {
            assert!(
                matches!(
                    store
                        .put(bad, Bytes::new(), nightdump::store::PutOptions::default())
                        .await,
                    Err(StoreError::InvalidKey { .. })
                ),
                "{bad:?}"
            );
        }
    }

    pub async fn abort_leaves_nothing(store: &Store) {
        let mut up = store
            .start_upload(
                "run/dump.archive.gz",
                nightdump::store::PutOptions::default(),
            )
            .await
            .unwrap();
        stream_into(&mut up, 2 * PART + 17, 11).await;
        assert!(
            !store.list_incomplete_uploads("").await.unwrap().is_empty(),
            "an upload in progress shows as incomplete"
        );
        up.abort().await.unwrap();
        assert!(store.head("run/dump.archive.gz").await.unwrap().is_none());
        assert!(store.list("").await.unwrap().is_empty());
        assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());
        // Aborting before anything was written is fine too.
        let up = store
            .start_upload("run/other", nightdump::store::PutOptions::default())
            .await
            .unwrap();
        up.abort().await.unwrap();
        assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());
    }

    pub async fn drop_aborts(store: &Store) {
        let mut up = store
            .start_upload("run/dropped.gz", nightdump::store::PutOptions::default())
            .await
            .unwrap();
        stream_into(&mut up, PART + 1, 5).await;
        drop(up);
        store.settle().await;
        assert!(store.head("run/dropped.gz").await.unwrap().is_none());
        assert!(store.list("").await.unwrap().is_empty());
        assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());
    }
}

async fn local_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let dest: Destination = dir.path().to_str().unwrap().parse().unwrap();
    let store = Store::open(&dest, &S3Options::default()).await.unwrap();
    (store, dir)
}

fn s3_opts(endpoint: &str) -> S3Options {
    S3Options {
        endpoint_url: Some(endpoint.to_string()),
        part_size: PART,
        upload_concurrency: 2,
        ..S3Options::default()
    }
}

/// A fresh bucket on the shared moto server and a store on a prefix inside it.
async fn s3_store(label: &str, opts: S3Options) -> (Store, String) {
    let moto = Moto::shared();
    let bucket = moto.create_bucket(label).await;
    let endpoint = opts.endpoint_url.clone().unwrap_or_else(|| moto.endpoint());
    let sdk = Moto::sdk_config_for(&endpoint).await;
    let dest = Destination::S3 {
        bucket: bucket.clone(),
        prefix: "nightly/prod".into(),
    };
    let store = Store::open_with_sdk_config(&dest, &sdk, &opts)
        .await
        .unwrap();
    (store, bucket)
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod local_backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let (store, _dir) = super::local_store().await;
                    super::cases::$case(&store).await;
                }
            )*
        }
        mod s3_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let moto = super::Moto::shared();
                    let (store, _bucket) =
                        super::s3_store(stringify!($case), super::s3_opts(&moto.endpoint())).await;
                    super::cases::$case(&store).await;
                }
            )*
        }
    };
}

conformance!(
    streamed_roundtrip,
    small_put_get,
    if_absent_refusal,
    list_head_delete,
    abort_leaves_nothing,
    drop_aborts,
);

// ---------------------------------------------------------------- S3 specifics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keys_live_under_the_prefix() {
    let moto = Moto::shared();
    let (store, bucket) = s3_store("prefix", s3_opts(&moto.endpoint())).await;
    store
        .put(
            "a/b.json",
            Bytes::from_static(b"1"),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
    let client = moto.s3_client().await;
    assert_eq!(
        bucket::keys(&client, &bucket).await,
        ["nightly/prod/a/b.json"]
    );
    // Objects outside the prefix are not the store's.
    client
        .put_object()
        .bucket(&bucket)
        .key("nightly/prodx/other")
        .body(Bytes::from_static(b"x").into())
        .send()
        .await
        .unwrap();
    let mine = listing::keys(&store, "").await;
    assert_eq!(mine, ["a/b.json"]);
    assert_eq!(
        store.destination().to_string(),
        format!("s3://{bucket}/nightly/prod")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sse_kms_is_recorded_on_the_object() {
    let moto = Moto::shared();
    let key_id = moto.create_kms_key().await.key_id().to_string();
    let opts = S3Options {
        sse: Sse::Kms {
            key_id: Some(key_id.clone()),
        },
        ..s3_opts(&moto.endpoint())
    };
    let (store, _) = s3_store("kms", opts).await;
    let mut up = store
        .start_upload("dump.archive.gz", nightdump::store::PutOptions::default())
        .await
        .unwrap();
    stream_into(&mut up, PART + 100, 1).await;
    assert_eq!(up.finish().await.unwrap().parts, 2);
    store
        .put(
            "manifest.json",
            Bytes::from_static(b"{}"),
            nightdump::store::PutOptions::create(),
        )
        .await
        .unwrap();
    for k in ["dump.archive.gz", "manifest.json"] {
        let info = store.head(k).await.unwrap().unwrap();
        assert_eq!(info.sse.as_deref(), Some("aws:kms"), "{k}");
        let stored = info.kms_key_id.unwrap_or_default();
        assert!(
            stored.contains(&key_id),
            "{k}: key {stored:?} is not {key_id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sse_s3_and_storage_class() {
    let moto = Moto::shared();
    let opts = S3Options {
        sse: Sse::S3,
        storage_class: Some("STANDARD_IA".into()),
        ..s3_opts(&moto.endpoint())
    };
    let (store, _) = s3_store("class", opts).await;
    let mut up = store
        .start_upload("big", nightdump::store::PutOptions::default())
        .await
        .unwrap();
    stream_into(&mut up, PART * 2, 2).await;
    up.finish().await.unwrap();
    store
        .put(
            "small",
            Bytes::from_static(b"s"),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
    for k in ["big", "small"] {
        let info = store.head(k).await.unwrap().unwrap();
        assert_eq!(info.sse.as_deref(), Some("AES256"), "{k}");
        assert_eq!(info.storage_class.as_deref(), Some("STANDARD_IA"), "{k}");
    }
    let listed = store.list("").await.unwrap();
    assert!(listed
        .iter()
        .all(|o| o.storage_class.as_deref() == Some("STANDARD_IA")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_open_reports_missing_bucket_unreachable_endpoint_and_missing_credentials() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let opts = s3_opts(&moto.endpoint());
    let missing = Destination::S3 {
        bucket: "no-such-bucket-here".into(),
        prefix: String::new(),
    };
    let err = Store::open_with_sdk_config(&missing, &sdk, &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSuchBucket { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-bucket-here"), "{err}");

    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let bucket = moto.create_bucket("unreachable").await;
    let dest = Destination::S3 {
        bucket,
        prefix: String::new(),
    };
    let down = S3Options {
        max_attempts: 1,
        ..s3_opts(&format!("http://{closed}"))
    };
    let err = Store::open_with_sdk_config(&dest, &sdk, &down)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&closed.to_string()), "{err}");

    let no_creds = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(nightdump::store::https_client())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::credential_fn::provide_credentials_fn(|| async {
                    Err(
                        aws_credential_types::provider::error::CredentialsError::not_loaded(
                            "no source",
                        ),
                    )
                }),
            ),
        )
        .load()
        .await;
    let err = Store::open_with_sdk_config(&dest, &no_creds, &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoCredentials { .. }), "{err:?}");
    assert!(err.to_string().contains("AWS_PROFILE"), "{err}");
}

// ---------------------------------------------------------------- S3 faults

/// A store whose S3 traffic goes through a fault proxy in front of the shared moto.
async fn s3_behind_proxy(label: &str, max_attempts: u32) -> (Store, FaultProxy, String) {
    let moto = Moto::shared();
    let proxy = FaultProxy::start(moto.addr()).await;
    let opts = S3Options {
        max_attempts,
        ..s3_opts(&proxy.endpoint())
    };
    let (store, bucket) = s3_store(label, opts).await;
    (store, proxy, bucket)
}

/// Warnings of the whole test binary. A process-wide subscriber, because a thread-scoped one
/// misses events whose callsites other threads registered first without a subscriber.
fn warnings() -> &'static LogBuffer {
    static LOGS: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        logs
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_slowdown_and_500_are_retried_and_logged() {
    let logs = warnings();
    let (store, proxy, bucket) = s3_behind_proxy("slowdown", 3).await;
    proxy.fail_next(2, Fault::SlowDown);
    store
        .put(
            "manifest.json",
            Bytes::from_static(b"{}"),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(proxy.faults_served(), 2);
    assert_eq!(
        store.get("manifest.json").await.unwrap().as_deref(),
        Some(&b"{}"[..])
    );

    // Mid-stream: a part request fails once and is sent again.
    let mut up = store
        .start_upload("dump.archive.gz", nightdump::store::PutOptions::default())
        .await
        .unwrap();
    let mut expected = Sha256::new();
    stream_hashed(&mut up, PART + 10, 9, &mut expected).await;
    proxy.fail_next(1, Fault::InternalError);
    stream_hashed(&mut up, PART, 10, &mut expected).await;
    let receipt = up.finish().await.unwrap();
    assert_eq!(proxy.faults_served(), 3);
    assert_eq!(receipt.size, (2 * PART + 10) as u64);
    assert_eq!(receipt.parts, 3);
    let (_, got) = read_all_hash(&store, "dump.archive.gz").await;
    assert_eq!(got, expected.finalize().to_vec());

    let text = String::from_utf8(logs.bytes()).unwrap();
    let mine: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("retrying S3 request") && l.contains(&format!("bucket={bucket} ")))
        .collect();
    assert!(
        mine.iter()
            .any(|l| l.contains("PutObject") && l.contains("HTTP 503") && l.contains("attempt=3")),
        "no warning for the second SlowDown retry in: {text}"
    );
    assert!(
        mine.iter().any(|l| l.contains("HTTP 500")),
        "no warning for the part retried after a 500 in: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_persistent_slowdown_is_a_retryable_error() {
    let (store, proxy, _) = s3_behind_proxy("slowdown-forever", 2).await;
    proxy.fail_next(2, Fault::SlowDown);
    let err = store
        .put(
            "x",
            Bytes::from_static(b"x"),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::S3 { code, status: Some(503), .. } if code == "SlowDown"),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(store.get("x").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_mid_upload_fails_write_and_abort_cleans_up_once_back() {
    let (store, proxy, _) = s3_behind_proxy("stopped-write", 2).await;
    let mut up = store
        .start_upload("dump.archive.gz", nightdump::store::PutOptions::default())
        .await
        .unwrap();
    // Three parts with a window of two: the last write waited for a part to land.
    stream_into(&mut up, 3 * PART, 4).await;
    assert!(!store.list_incomplete_uploads("").await.unwrap().is_empty());
    proxy.stop();
    let mut data = Data(5);
    let mut err = None;
    for _ in 0..20 {
        let mut chunk = vec![0u8; 1024 * 1024];
        data.fill(&mut chunk);
        if let Err(e) = up.write(Bytes::from(chunk)).await {
            err = Some(e);
            break;
        }
    }
    let err = err.expect("writes must fail while S3 is unreachable");
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        matches!(
            err,
            StoreError::Unreachable { .. } | StoreError::Timeout { .. } | StoreError::S3 { .. }
        ),
        "{err:?}"
    );
    // Once failed, the upload stays failed.
    assert!(matches!(
        up.write(Bytes::from_static(b"more")).await,
        Err(StoreError::UploadFailed { .. })
    ));
    proxy.resume();
    up.abort().await.unwrap();
    assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());
    assert!(store.head("dump.archive.gz").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_at_finish_fails_and_leftover_is_aborted_once_back() {
    let (store, proxy, _) = s3_behind_proxy("stopped-finish", 2).await;
    let mut up = store
        .start_upload("dump.archive.gz", nightdump::store::PutOptions::default())
        .await
        .unwrap();
    stream_into(&mut up, PART + PART / 2, 6).await;
    proxy.stop();
    let err = up.finish().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    proxy.resume();
    assert!(store.head("dump.archive.gz").await.unwrap().is_none());
    // finish could not abort while S3 was away; the leftover is visible and removable.
    let left = store.list_incomplete_uploads("").await.unwrap();
    assert_eq!(left, ["dump.archive.gz"]);
    // (moto reports a fixed 2010 start time for every upload, so the age filter is shown on
    // the local backend only.)
    assert_eq!(
        store
            .abort_incomplete_uploads("", Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_cut_connections_are_retried() {
    let (store, proxy, _) = s3_behind_proxy("cut", 3).await;
    store
        .put(
            "a",
            Bytes::from_static(b"1"),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
    let before = proxy.connections();
    // Pooled connections die under the client; the next requests reconnect.
    proxy.cut_all();
    store
        .put(
            "b",
            Bytes::from_static(b"2"),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(store.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert!(proxy.connections() > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_upload_waits_when_its_window_of_parts_is_full() {
    // Window of 2: at most 2 parts in flight plus the one being filled are held in memory.
    let (store, proxy, _) = s3_behind_proxy("window", 3).await;
    let mut up = store
        .start_upload("dump.archive.gz", nightdump::store::PutOptions::default())
        .await
        .unwrap();
    let mut expected = Sha256::new();
    proxy.hold_part_uploads(true);
    stream_hashed(&mut up, 2 * PART, 12, &mut expected).await;
    proxy.wait_parts_held(2).await;
    // A third full part cannot be sent: the write must wait for the window.
    let mut third = vec![0u8; PART];
    Data(13).fill(&mut third);
    expected.update(&third);
    {
        let write = up.write(Bytes::from(third));
        tokio::pin!(write);
        assert!(
            futures_util::poll!(&mut write).is_pending(),
            "write must wait while two parts are in flight"
        );
        proxy.hold_part_uploads(false);
        write.await.unwrap();
    }
    let receipt = up.finish().await.unwrap();
    assert_eq!(receipt.parts, 3);
    let (_, got) = read_all_hash(&store, "dump.archive.gz").await;
    assert_eq!(got, expected.finalize().to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_download_broken_mid_body_resumes_where_it_stopped() {
    let (store, proxy, _) = s3_behind_proxy("resume", 3).await;
    let mut up = store
        .start_upload("dump.archive.gz", nightdump::store::PutOptions::default())
        .await
        .unwrap();
    let sent = stream_into(&mut up, 2 * PART + 333, 8).await;
    up.finish().await.unwrap();

    // The first mebibyte of the download passes, then its connection dies.
    proxy.cut_response_after(1024 * 1024);
    let forwarded = proxy.requests_forwarded();
    let mut reader = store.open_read("dump.archive.gz").await.unwrap().unwrap();
    assert_eq!(reader.size(), Some((2 * PART + 333) as u64));
    let (total, got) = hash_to_end(&mut reader, 64 * 1024).await;
    assert_eq!(total, 2 * PART + 333);
    assert_eq!(got, sent);
    assert_eq!(
        proxy.requests_forwarded(),
        forwarded + 2,
        "the rest must come from one resumed (ranged) request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_download_of_a_replaced_object_fails_instead_of_splicing() {
    let (store, proxy, _) = s3_behind_proxy("replaced", 3).await;
    let mut up = store
        .start_upload("obj", nightdump::store::PutOptions::default())
        .await
        .unwrap();
    stream_into(&mut up, PART + 1, 1).await;
    up.finish().await.unwrap();
    // Small enough to pass at once, whether or not the reader reads.
    proxy.cut_response_after(16 * 1024);
    let mut reader = store.open_read("obj").await.unwrap().unwrap();
    let mut buf = vec![0u8; 1024];
    assert!(reader.read(&mut buf).await.unwrap() > 0);
    // Replaced before the reader runs into the end of its broken response.
    let mut up = store
        .start_upload("obj", nightdump::store::PutOptions::default())
        .await
        .unwrap();
    stream_into(&mut up, PART + 1, 2).await;
    up.finish().await.unwrap();
    let mut sink = Vec::new();
    let err = reader.read_to_end(&mut sink).await.unwrap_err();
    assert!(err.to_string().contains("replaced"), "{err}");
}

// ---------------------------------------------------------------- local faults

async fn open_local(path: &Path) -> Result<Store, StoreError> {
    let dest: Destination = path.to_str().unwrap().parse().unwrap();
    Store::open(&dest, &S3Options::default()).await
}

#[tokio::test]
async fn local_missing_directory_and_file_in_the_way() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_local(&dir.path().join("missing")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains("missing") && err.to_string().contains("create"),
        "{err}"
    );

    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = open_local(&file).await.unwrap_err();
    assert!(matches!(err, StoreError::NotADirectory { .. }), "{err:?}");
    let err = open_local(&file.join("sub")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotADirectory { .. }), "{err:?}");

    // Inside a good store, a file where a key needs a directory.
    let store = open_local(dir.path()).await.unwrap();
    let err = store
        .put(
            "file/x.json",
            Bytes::from_static(b"1"),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotADirectory { .. }), "{err:?}");
    assert!(store.get("file/x.json").await.unwrap().is_none());
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test]
async fn local_read_only_directory_is_access_denied() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let writable_anyway = std::fs::write(ro.join("probe"), b"").is_ok();
    if !writable_anyway {
        let err = open_local(&ro).await.unwrap_err();
        assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
        assert!(err.to_string().contains("ro"), "{err}");
        return;
    }
    // root ignores permission bits: use a read-only mount if allowed…
    std::fs::remove_file(ro.join("probe")).unwrap();
    assert!(running_as_root());
    if let Some(_mount) = Tmpfs::mount(&ro, "ro,size=64k") {
        let err = open_local(&ro).await.unwrap_err();
        assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
        return;
    }
    // …else show the refusal through a path under a file.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = open_local(&file.join("dir")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotADirectory { .. }), "{err:?}");
    eprintln!("note: running as root without mount rights; read-only refusal shown via a path under a file");
}

#[tokio::test]
async fn local_disk_full_is_reported_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(dir.path(), "size=1m") else {
        eprintln!("note: cannot mount a tmpfs here (needs root); ENOSPC not exercised");
        return;
    };
    let store = open_local(dir.path()).await.unwrap();
    let mut up = store
        .start_upload(
            "run/dump.archive.gz",
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
    let mut err = None;
    for _ in 0..8 {
        if let Err(e) = up.write(Bytes::from(vec![7u8; 512 * 1024])).await {
            err = Some(e);
            break;
        }
    }
    let err = match err {
        Some(e) => e,
        // A file system may take the data and only fail at fsync.
        None => up.finish().await.unwrap_err(),
    };
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    assert!(
        err.to_string().contains("dump.archive.gz") && err.to_string().contains("free space"),
        "{err}"
    );
    assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());
    assert!(store.list("").await.unwrap().is_empty());

    let err = store
        .put(
            "manifest.json",
            Bytes::from(vec![1u8; 2 * 1024 * 1024]),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());
}

#[tokio::test]
async fn local_leftover_temp_files_are_listed_and_removable() {
    let (store, dir) = local_store().await;
    let up = store
        .start_upload("a/dump.gz", nightdump::store::PutOptions::default())
        .await
        .unwrap();
    // Simulate a crash: the process dies without dropping the upload.
    std::mem::forget(up);
    let left = store.list_incomplete_uploads("").await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].starts_with("a/.dump.gz.tmp-"), "{left:?}");
    assert!(store.list("").await.unwrap().is_empty());
    assert_eq!(
        store
            .abort_incomplete_uploads("", Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "a young upload may belong to a running backup"
    );
    assert_eq!(
        store
            .abort_incomplete_uploads("", Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert!(store.list_incomplete_uploads("").await.unwrap().is_empty());
    // The folder the killed upload left empty goes with it.
    assert!(!dir.path().join("a").exists());
    assert!(dir.path().is_dir());
}

/// Parts grow: with S3's part count lowered to 3, an object of 6 parts' worth at the first
/// part size cannot be stored at one size, and is when the size doubles after each part (5,
/// 10 and 20 MiB hold 35 MiB). An expected size given up front sizes the first parts instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_parts_grow_past_a_part_count_limit_that_one_size_cannot_fit() {
    use nightdump::store::PutOptions;
    let total = 6 * PART;
    let fixed = S3Options {
        max_parts: 3,
        part_growth_every: 0,
        ..s3_opts(&Moto::shared().endpoint())
    };
    let (store, bucket) = s3_store("parts-fixed", fixed.clone()).await;
    let mut upload = store
        .start_upload("big/dump.archive.gz", PutOptions::create())
        .await
        .unwrap();
    let mut data = Data(7);
    let mut failure = None;
    for _ in 0..total / PART {
        let mut chunk = vec![0u8; PART];
        data.fill(&mut chunk);
        if let Err(e) = upload.write(Bytes::from(chunk)).await {
            failure = Some(e);
            break;
        }
    }
    let failure = match failure {
        Some(e) => e,
        None => upload.finish().await.unwrap_err(),
    };
    assert!(
        matches!(failure, StoreError::TooManyParts { max_parts: 3, .. }),
        "{failure:?}"
    );
    assert!(failure.to_string().contains("--part-size"), "{failure}");

    let growing = S3Options {
        part_growth_every: 1,
        ..fixed.clone()
    };
    let (store, _) = s3_store("parts-grow", growing).await;
    let mut upload = store
        .start_upload("big/dump.archive.gz", PutOptions::create())
        .await
        .unwrap();
    let digest = stream_into(&mut upload, total, 7).await;
    let receipt = upload.finish().await.unwrap();
    assert_eq!(receipt.size, total as u64);
    assert_eq!(receipt.parts, 3, "5 + 10 + 20 MiB parts");
    assert_eq!(
        read_all_hash(&store, "big/dump.archive.gz").await,
        (total, digest)
    );

    // Without growth, an expected size makes the first parts large enough.
    let (store, _) = s3_store("parts-expected", fixed).await;
    let mut upload = store
        .start_upload(
            "big/dump.archive.gz",
            PutOptions::create().expecting(Some(total as u64)),
        )
        .await
        .unwrap();
    let digest = stream_into(&mut upload, total, 9).await;
    let receipt = upload.finish().await.unwrap();
    assert!(receipt.parts <= 3, "{}", receipt.parts);
    assert_eq!(
        read_all_hash(&store, "big/dump.archive.gz").await,
        (total, digest)
    );
    let _ = bucket;
}
