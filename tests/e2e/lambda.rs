//! The Lambda handler called in-process, as the runtime would call it: the test MongoDB
//! server as the source, moto on loopback as S3, Secrets Manager and KMS.

// Test code: a panic with its message is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Context, Diagnostic, LambdaEvent};

use nightdump::lambda::destination::failure_record;
use nightdump::lambda::metrics::Captured;
use nightdump::lambda::secrets::SecretsManager;
use nightdump::lambda::{handle, Deps, HandlerError, Summary};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::alert_topic::AlertTopic;
use crate::harness::closed_port;
use crate::support::bucket;
use crate::support::moto::Moto;

const PREFIX: &str = "nightdump";
const PASSWORD: &str = "Pa55-w0rd-never-shown";

struct Aws {
    sdk: aws_config::SdkConfig,
    s3: aws_sdk_s3::Client,
}

impl Aws {
    async fn new() -> Aws {
        let moto = Moto::shared();
        Aws {
            sdk: moto.sdk_config().await,
            s3: moto.s3_client().await,
        }
    }

    async fn secret(&self, name: &str, value: &str) -> String {
        Moto::shared().create_secret(name, value).await
    }

    /// The template's environment for `bucket` with a new SSE-KMS key and `mongo_secret` in
    /// the secret `{bucket}-mongo`; and the key's ARN.
    async fn function_env(
        &self,
        bucket: &str,
        mongo_secret: &str,
    ) -> (HashMap<String, String>, String) {
        let key = self.kms_key().await;
        let arn = self.secret(&format!("{bucket}-mongo"), mongo_secret).await;
        (template_env(bucket, &arn, &key), key)
    }

    async fn kms_key(&self) -> String {
        let key = Moto::shared().create_kms_key().await;
        key.arn().unwrap().to_string()
    }

    async fn keys(&self, bucket: &str) -> Vec<String> {
        bucket::keys(&self.s3, bucket).await
    }

    async fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        bucket::unfinished_uploads(&self.s3, bucket).await
    }

    async fn object(&self, bucket: &str, key: &str) -> Vec<u8> {
        bucket::object(&self.s3, bucket, key).await
    }
}

fn template_env(bucket: &str, secret_arn: &str, kms_key: &str) -> HashMap<String, String> {
    [
        ("NIGHTDUMP_TO", format!("s3://{bucket}/{PREFIX}")),
        ("NIGHTDUMP_MONGODB_SECRET_ARN", secret_arn.to_string()),
        ("NIGHTDUMP_SSE", "kms".into()),
        ("NIGHTDUMP_KMS_KEY_ID", kms_key.to_string()),
        ("NIGHTDUMP_PARALLEL", "4".into()),
        // The test source is a standalone server: no oplog, no point in time.
        ("NIGHTDUMP_ALLOW_INCONSISTENT", "true".into()),
        ("NIGHTDUMP_INCLUDE", String::new()),
        ("NIGHTDUMP_EXCLUDE", String::new()),
        ("NIGHTDUMP_MAX_AGE", "26h".into()),
        ("NIGHTDUMP_STORAGE_CLASS", "STANDARD".into()),
        ("NIGHTDUMP_ENCRYPT", String::new()),
        ("NIGHTDUMP_PRUNE", String::new()),
        ("NIGHTDUMP_OBJECT_LOCK", String::new()),
        ("NIGHTDUMP_RETAIN_FOR", String::new()),
        ("NIGHTDUMP_CONNECT_TIMEOUT", "2s".into()),
        ("AWS_LAMBDA_FUNCTION_NAME", "nightdump-test".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn deps(aws: &Aws, env: HashMap<String, String>) -> Deps<SecretsManager, Captured> {
    Deps {
        env,
        sdk: aws.sdk.clone(),
        secrets: SecretsManager::new(&aws.sdk),
        metrics: Captured::default(),
    }
}

fn scheduler_event(time: &str) -> Value {
    json!({
        "version": "0", "id": "5c0e6a8e-1f2b-4c4e-9f44-000000000001",
        "detail-type": "Scheduled Event", "source": "aws.scheduler",
        "account": "123456789012", "time": time, "region": "us-east-1",
        "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/nightdump"],
        "detail": {}
    })
}

/// A context whose deadline is `remaining` from now, as the Runtime API would give it.
fn event(payload: Value, remaining: Duration) -> LambdaEvent<Value> {
    let deadline = SystemTime::now() + remaining;
    let mut context = Context::default();
    context.request_id = "test-request".into();
    context.deadline = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    LambdaEvent::new(payload, context)
}

/// The single EMF record of each run, parsed.
fn emf(deps: &Deps<SecretsManager, Captured>) -> Vec<Value> {
    deps.metrics
        .lines()
        .iter()
        .map(|l| {
            assert!(!l.contains('\n'));
            serde_json::from_str(l).unwrap()
        })
        .collect()
}

fn uri_with_password(port: u16) -> String {
    format!("mongodb://backup:{PASSWORD}@127.0.0.1:{port}/?authSource=admin")
}

fn assert_clean_failure(error: &HandlerError, expected_type: &str) -> Diagnostic {
    let d: Diagnostic = error.clone().into();
    assert_eq!(d.error_type, expected_type, "{}", d.error_message);
    assert!(!d.error_message.contains(PASSWORD), "{}", d.error_message);
    assert!(!d.error_message.contains('\n'));
    assert!(!d.error_message.is_empty());
    d
}

#[tokio::test]
async fn scheduled_run_reads_the_secret_and_stores_an_sse_kms_backup() {
    let source = crate::harness::demo_source().await;
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-ok").await;
    let (env, key) = aws
        .function_env(
            &bucket,
            &json!({ "uri": source.uri, "engine": "mongo" }).to_string(),
        )
        .await;
    let deps = deps(&aws, env);

    let summary = run_at(&deps, &["2026-11-25T03:00:00Z"]).await.remove(0);
    assert_eq!(summary.backup_id, "20261125T030000Z");
    assert!(!summary.already_existed);
    assert_eq!(
        summary.scheduled_at.as_deref(),
        Some("2026-11-25T03:00:00Z")
    );
    assert!(summary.documents > 0 && summary.namespaces > 0 && summary.size > 0);
    assert_eq!(summary.latest_warning, None);

    let id = &summary.backup_id;
    assert_eq!(
        aws.keys(&bucket).await,
        vec![
            format!("{PREFIX}/{id}/dump.archive.gz"),
            format!("{PREFIX}/{id}/manifest.json"),
            format!("{PREFIX}/latest.json"),
        ]
    );
    let head = bucket::head(&aws.s3, &bucket, &format!("{PREFIX}/{id}/dump.archive.gz")).await;
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert_eq!(head.ssekms_key_id(), Some(key.as_str()));

    let manifest: Value = serde_json::from_slice(
        &aws.object(&bucket, &format!("{PREFIX}/{id}/manifest.json"))
            .await,
    )
    .unwrap();
    let archive = aws
        .object(&bucket, &format!("{PREFIX}/{id}/dump.archive.gz"))
        .await;
    assert_eq!(archive.len() as u64, summary.size);
    assert_eq!(
        manifest["archive"]["sha256"],
        hex::encode(Sha256::digest(&archive))
    );
    assert_eq!(manifest["storage"]["sse"], "aws:kms");
    assert_eq!(manifest["storage"]["kms_key_id"], key.as_str());
    assert_eq!(manifest["totals"]["documents"], summary.documents);
    let latest: Value =
        serde_json::from_slice(&aws.object(&bucket, &format!("{PREFIX}/latest.json")).await)
            .unwrap();
    assert_eq!(latest["backup_id"], id.as_str());

    let records = emf(&deps);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Nightdump");
    assert_eq!(r["FunctionName"], "nightdump-test");
    assert_eq!(r["BackupSuccess"], 1);
    assert_eq!(r["BackupBytes"], summary.size);
    assert_eq!(r["BackupDocuments"], summary.documents);
    assert!(r["BackupDurationSeconds"].as_f64().unwrap() > 0.0);
    assert_eq!(r["LatestUpdateFailure"], 0);
    // How much of the invocation's 600 s the run used: the 70% alarm's metric.
    let used = r["DeadlineUsedPercent"].as_f64().unwrap();
    let expected = 100.0 * r["BackupDurationSeconds"].as_f64().unwrap() / 600.0;
    assert!((used - expected).abs() < 0.01, "{used} vs {expected}");

    // The scheduler may deliver the same event again: it finds the finished backup.
    let again = run_at(&deps, &["2026-11-25T03:00:00Z"]).await.remove(0);
    assert!(again.already_existed);
    assert_eq!(again.backup_id, summary.backup_id);
    assert_eq!(aws.keys(&bucket).await.len(), 3);
    let records = emf(&deps);
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["BackupSuccess"], 1);
    assert_eq!(records[1]["AlreadyExisted"], true);
}

#[tokio::test]
async fn unreachable_database_fails_without_leaking_the_password_or_leaving_objects() {
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-unreachable").await;
    // A port that was free a moment ago: connections are refused.
    let port = closed_port();
    let (env, _) = aws.function_env(&bucket, &uri_with_password(port)).await;
    let deps = deps(&aws, env);

    let error = handle(event(json!({}), Duration::from_secs(120)), &deps)
        .await
        .unwrap_err();
    let d = assert_clean_failure(&error, "MongoUnreachable");
    assert!(d.error_message.contains("127.0.0.1"), "{}", d.error_message);
    assert!(aws.keys(&bucket).await.is_empty());
    assert!(aws.multipart_uploads(&bucket).await.is_empty());
    let records = emf(&deps);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["BackupSuccess"], 0);
    assert_eq!(records[0]["ErrorType"], "MongoUnreachable");
}

#[tokio::test]
async fn missing_bucket_and_missing_secret_fail_with_their_own_error_types() {
    let source = crate::harness::demo_source().await;
    let aws = Aws::new().await;
    let arn = aws.secret("lambda-missing-bucket-mongo", &source.uri).await;
    let mut env = template_env("nightdump-no-such-bucket", &arn, &aws.kms_key().await);
    let missing_bucket = deps(&aws, env.clone());
    let error = handle(event(json!({}), Duration::from_secs(120)), &missing_bucket)
        .await
        .unwrap_err();
    let d = assert_clean_failure(&error, "StorageFailed");
    assert!(
        d.error_message.contains("nightdump-no-such-bucket"),
        "{}",
        d.error_message
    );
    assert_eq!(emf(&missing_bucket)[0]["ErrorType"], "StorageFailed");

    env.insert(
        "NIGHTDUMP_MONGODB_SECRET_ARN".into(),
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:nightdump-absent-AbCdEf".into(),
    );
    let missing_secret = deps(&aws, env);
    let error = handle(event(json!({}), Duration::from_secs(120)), &missing_secret)
        .await
        .unwrap_err();
    let d = assert_clean_failure(&error, "SecretUnavailable");
    assert!(
        d.error_message.contains("nightdump-absent"),
        "{}",
        d.error_message
    );
}

#[tokio::test]
async fn bad_configuration_and_events_fail_before_any_connection() {
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-config").await;
    // Nothing listens behind these: a connection attempt would fail with another error type.
    let mut env = template_env(
        &bucket,
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:never-read-AbCdEf",
        "arn:aws:kms:us-east-1:123456789012:key/k",
    );
    env.insert("NIGHTDUMP_PRUNE".into(), "keep-daily=0".into());
    let d = deps(&aws, env.clone());
    let error = handle(event(json!({}), Duration::from_secs(60)), &d)
        .await
        .unwrap_err();
    let diag = assert_clean_failure(&error, "InvalidConfiguration");
    assert!(diag.error_message.contains("NIGHTDUMP_PRUNE"));
    assert_eq!(emf(&d)[0]["BackupSuccess"], 0);

    env.remove("NIGHTDUMP_PRUNE");
    let d = deps(&aws, env);
    let error = handle(event(json!({"paralell": 2}), Duration::from_secs(60)), &d)
        .await
        .unwrap_err();
    let diag = assert_clean_failure(&error, "InvalidEvent");
    assert!(diag.error_message.contains("paralell"));
    assert!(aws.keys(&bucket).await.is_empty());
}

#[tokio::test]
async fn failed_run_reaches_the_alert_topic_subscribers_with_the_cause_and_the_fix() {
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-alert").await;
    let port = closed_port();
    let (env, _) = aws.function_env(&bucket, &uri_with_password(port)).await;
    let deps = deps(&aws, env);
    let scheduled = scheduler_event("2026-11-25T03:00:00Z");
    let invocation = event(scheduled.clone(), Duration::from_secs(120));
    let request_id = invocation.context.request_id.clone();
    let error = handle(invocation, &deps).await.unwrap_err();
    let d = assert_clean_failure(&error, "MongoUnreachable");

    let alerts = AlertTopic::new(&aws.sdk, &bucket).await;

    let function_arn = "arn:aws:lambda:us-east-1:123456789012:function:nightdump-test";
    let record = failure_record(
        &request_id,
        function_arn,
        time::OffsetDateTime::now_utc(),
        &scheduled,
        &d,
    );
    alerts.publish(&record.to_string()).await;

    let messages = alerts.receive(1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let body = messages[0].as_str();
    assert!(!body.contains(PASSWORD), "{body}");

    let envelope: Value = serde_json::from_str(body).unwrap();
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["TopicArn"], alerts.topic_arn.as_str());
    let message: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(message["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(message["requestContext"]["requestId"], request_id.as_str());
    assert_eq!(message["responseContext"]["functionError"], "Unhandled");
    // What failed, where, and what to do about it.
    let response = &message["responsePayload"];
    assert_eq!(response["errorType"], "MongoUnreachable");
    let text = response["errorMessage"].as_str().unwrap();
    assert_eq!(text, d.error_message);
    assert!(
        text.contains(&format!("mongodb://backup:***@127.0.0.1:{port}/")),
        "{text}"
    );
    assert!(text.contains("Check host, port"), "{text}");
    // Which night's backup is missing.
    assert_eq!(message["requestPayload"]["time"], "2026-11-25T03:00:00Z");
    assert_eq!(message["requestPayload"]["source"], "aws.scheduler");
    assert!(aws.keys(&bucket).await.is_empty());
}

/// Runs the function for each schedule time with `env`; the summaries.
async fn run_at(deps: &Deps<SecretsManager, Captured>, times: &[&str]) -> Vec<Summary> {
    let mut out = Vec::new();
    for t in times {
        out.push(
            handle(event(scheduler_event(t), Duration::from_secs(600)), deps)
                .await
                .unwrap()
                .backup()
                .expect("a backup's summary"),
        );
    }
    out
}

#[tokio::test]
async fn a_configured_policy_prunes_after_a_successful_backup() {
    let source = crate::harness::demo_source().await;
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-prune").await;
    let (mut env, _) = aws
        .function_env(&bucket, &json!({ "uri": source.uri }).to_string())
        .await;
    // Two runs without a policy leave two backups.
    let plain = deps(&aws, env.clone());
    run_at(&plain, &["2026-11-23T03:00:00Z", "2026-11-24T03:00:00Z"]).await;
    assert_eq!(aws.keys(&bucket).await.len(), 5);

    env.insert("NIGHTDUMP_PRUNE".into(), "keep-last=2".into());
    let pruning = deps(&aws, env);
    let summaries = run_at(&pruning, &["2026-11-25T03:00:00Z"]).await;
    let prune = summaries[0].prune.as_ref().expect("the run pruned");
    assert_eq!(prune.removed, vec!["20261123T030000Z".to_string()]);
    assert!(prune.kept_locked.is_empty() && prune.error.is_none());
    assert_eq!(prune.kept, 2);
    let keys = aws.keys(&bucket).await;
    assert!(
        !keys.iter().any(|k| k.contains("20261123T030000Z")),
        "{keys:?}"
    );
    assert!(keys
        .iter()
        .any(|k| k.ends_with("20261124T030000Z/manifest.json")));
    assert!(keys
        .iter()
        .any(|k| k.ends_with("20261125T030000Z/manifest.json")));
    let r = &emf(&pruning)[0];
    assert_eq!(r["BackupSuccess"], 1);
    assert_eq!(r["PruneFailure"], 0);
    assert_eq!(r["BackupsPruned"], 1);
    let returned = serde_json::to_value(&summaries[0]).unwrap();
    assert_eq!(returned["prune"]["removed"], json!(["20261123T030000Z"]));
    // Without a policy the response and the metrics say nothing of pruning.
    assert!(emf(&plain)[0].get("PruneFailure").is_none());
}

#[tokio::test]
async fn a_failed_prune_is_reported_but_the_backup_succeeds() {
    let source = crate::harness::demo_source().await;
    let moto = Moto::shared();
    let proxy = crate::support::fault_proxy::FaultProxy::start(moto.addr()).await;
    let aws = Aws::new().await;
    let bucket = moto.create_bucket("lambda-prune-fails").await;
    let (mut env, _) = aws
        .function_env(&bucket, &json!({ "uri": source.uri }).to_string())
        .await;
    run_at(&deps(&aws, env.clone()), &["2026-11-23T03:00:00Z"]).await;

    env.insert("NIGHTDUMP_PRUNE".into(), "keep-last=1".into());
    // S3 goes away at the first delete, after the backup is complete.
    let through_proxy = Deps {
        env,
        sdk: Moto::sdk_config_for(&proxy.endpoint()).await,
        secrets: SecretsManager::new(&aws.sdk),
        metrics: Captured::default(),
    };
    proxy.stop_at_request("POST", "?delete");
    let summary = handle(
        event(
            scheduler_event("2026-11-24T03:00:00Z"),
            Duration::from_secs(600),
        ),
        &through_proxy,
    )
    .await
    .expect("the backup succeeds although its prune fails")
    .backup()
    .expect("a backup's summary");
    assert!(proxy.stopped());
    assert_eq!(summary.backup_id, "20261124T030000Z");
    let prune = summary.prune.as_ref().expect("the run pruned");
    let error = prune
        .error
        .as_deref()
        .expect("the prune failure is returned");
    assert!(!error.contains('\n'), "{error}");
    assert!(prune.removed.is_empty());
    let r = &emf(&through_proxy)[0];
    assert_eq!(r["BackupSuccess"], 1);
    assert_eq!(r["PruneFailure"], 1);
    assert_eq!(r["BackupsPruned"], 0);
    // Both backups are still there, the new one complete.
    let keys = aws.keys(&bucket).await;
    for id in ["20261123T030000Z", "20261124T030000Z"] {
        assert!(
            keys.contains(&format!("{PREFIX}/{id}/manifest.json")),
            "{keys:?}"
        );
    }
}

#[tokio::test]
async fn a_kms_envelope_key_encrypts_the_functions_backups() {
    let source = crate::harness::demo_source().await;
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-envelope").await;
    let (mut env, _) = aws
        .function_env(&bucket, &json!({ "uri": source.uri }).to_string())
        .await;
    let envelope_key = aws.kms_key().await;
    // As the template sets it from EncryptKmsKeyArn.
    env.insert("NIGHTDUMP_ENCRYPT".into(), format!("kms:{envelope_key}"));
    let d = deps(&aws, env);
    let summary = run_at(&d, &["2026-11-25T03:00:00Z"]).await.remove(0);
    assert!(
        summary.archive.ends_with("/dump.archive.gz.enc"),
        "{}",
        summary.archive
    );
    let id = &summary.backup_id;
    let manifest: Value = serde_json::from_slice(
        &aws.object(&bucket, &format!("{PREFIX}/{id}/manifest.json"))
            .await,
    )
    .unwrap();
    let enc = &manifest["archive"]["encryption"];
    assert_eq!(enc["scheme"], "kms");
    assert_eq!(enc["kms_key_id"], envelope_key.as_str());
    assert!(enc["wrapped_key"].as_str().is_some_and(|w| !w.is_empty()));
    let stored = aws
        .object(&bucket, &format!("{PREFIX}/{}", summary.archive))
        .await;
    assert!(stored.starts_with(b"NDENC\0"));

    let dest: nightdump::store::Destination = format!("s3://{bucket}/{PREFIX}").parse().unwrap();
    let s3 = nightdump::store::S3Options {
        force_path_style: true,
        ..Default::default()
    };
    let store = nightdump::store::Store::open_with_sdk_config(&dest, &aws.sdk, &s3)
        .await
        .unwrap();
    let keys = nightdump::crypto::Keys::from_kms(nightdump::crypto::Kms::from_sdk_config(&aws.sdk));
    let report =
        nightdump::verify::verify(&store, &nightdump::catalog::Selector::Latest, Some(&keys))
            .await
            .unwrap();
    assert_eq!(report.documents, summary.documents);
}

/// #13.1: a typo'd future schedule time is refused; a backup named for a far future time
/// (planted, as older versions could make one) pushes no later run out of `keep-within`, and
/// a run's own prune never removes the backup it just made, whatever the rules say.
#[tokio::test]
async fn a_future_dated_backup_never_makes_later_runs_delete_themselves() {
    let source = crate::harness::demo_source().await;
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-future").await;
    let (mut env, _) = aws
        .function_env(&bucket, &json!({ "uri": source.uri }).to_string())
        .await;
    env.insert("NIGHTDUMP_PRUNE".into(), "keep-within=30d".into());
    let d = deps(&aws, env.clone());
    let error = handle(
        event(
            json!({"scheduled_at": "2062-12-03T03:00:00Z"}),
            Duration::from_secs(600),
        ),
        &d,
    )
    .await
    .unwrap_err();
    let diag = assert_clean_failure(&error, "InvalidEvent");
    assert!(
        diag.error_message.contains("is in the future"),
        "{}",
        diag.error_message
    );
    assert!(aws.keys(&bucket).await.is_empty());

    // A future-dated complete backup, as an older version could have made.
    let first = handle(event(json!({}), Duration::from_secs(600)), &d)
        .await
        .unwrap()
        .backup()
        .expect("a backup's summary");
    let store = nightdump::store::Store::open_with_sdk_config(
        &format!("s3://{bucket}/{PREFIX}").parse().unwrap(),
        &aws.sdk,
        &nightdump::store::S3Options {
            force_path_style: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (_, template) = nightdump::catalog::resolve(
        &store,
        &nightdump::catalog::Selector::Id(first.backup_id.parse().unwrap()),
    )
    .await
    .unwrap();
    let future: nightdump::layout::BackupId = "20621203T030000Z".parse().unwrap();
    let mut planted = template.clone();
    planted.backup_id = future.to_string();
    planted.archive.key = future.archive_key("dump.archive.gz");
    let archive = aws
        .object(&bucket, &format!("{PREFIX}/{}", template.archive.key))
        .await;
    store
        .put(
            &planted.archive.key,
            bytes::Bytes::from(archive),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
    store
        .put(
            &future.manifest_key(),
            bytes::Bytes::from(planted.to_json()),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();

    for payload in [json!({}), scheduler_event("2026-12-03T03:00:00Z")] {
        let summary = handle(event(payload, Duration::from_secs(600)), &d)
            .await
            .unwrap()
            .backup()
            .expect("a backup's summary");
        let prune = summary.prune.clone().expect("the run pruned");
        assert!(prune.removed.is_empty(), "{prune:?}");
        assert!(aws
            .keys(&bucket)
            .await
            .iter()
            .any(|k| k.ends_with(&format!("{}/manifest.json", summary.backup_id))));
    }

    // keep-last=1 would keep the planted backup only; the run's own backup stays too.
    env.insert("NIGHTDUMP_PRUNE".into(), "keep-last=1".into());
    let d = deps(&aws, env);
    let summary = handle(event(json!({}), Duration::from_secs(600)), &d)
        .await
        .unwrap()
        .backup()
        .expect("a backup's summary");
    let prune = summary.prune.clone().expect("the run pruned");
    assert!(!prune.removed.contains(&summary.backup_id), "{prune:?}");
    assert!(aws
        .keys(&bucket)
        .await
        .iter()
        .any(|k| k.ends_with(&format!("{}/manifest.json", summary.backup_id))));
}

/// #13.2: an event whose selection matches no collection is refused, as the CLI refuses it,
/// unless it asks for it.
#[tokio::test]
async fn an_event_selecting_no_collection_is_refused_unless_asked_for() {
    let source = crate::harness::demo_test_server().await;
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-empty").await;
    let (env, _) = aws
        .function_env(&bucket, &json!({ "uri": source.uri }).to_string())
        .await;
    let d = deps(&aws, env);
    for payload in [
        json!({"include": ["admin.*"]}),
        json!({"exclude": ["*.*"]}),
        json!({"include": ["nosuchdb.*"]}),
    ] {
        let error = handle(event(payload.clone(), Duration::from_secs(600)), &d)
            .await
            .unwrap_err();
        let diag = assert_clean_failure(&error, "InvalidConfiguration");
        assert!(
            diag.error_message.contains("select no collection"),
            "{payload}: {}",
            diag.error_message
        );
    }
    assert!(aws.keys(&bucket).await.is_empty());
    let summary = handle(
        event(
            json!({"include": ["admin.*"], "allow_empty": true}),
            Duration::from_secs(600),
        ),
        &d,
    )
    .await
    .unwrap()
    .backup()
    .expect("a backup's summary");
    assert!(summary.namespaces > 0);
}

/// #13.7: a deadline reached while MongoDB never answers names the server, not the data's
/// size.
#[tokio::test]
async fn a_deadline_reached_waiting_for_mongodb_names_the_server() {
    // Accepts connections and never answers: the driver waits for its handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-silent-db").await;
    let (mut env, _) = aws.function_env(&bucket, &uri_with_password(port)).await;
    env.insert("NIGHTDUMP_CONNECT_TIMEOUT".into(), "60s".into());
    let d = deps(&aws, env);
    let error = handle(event(json!({}), Duration::from_secs(6)), &d)
        .await
        .unwrap_err();
    silent.abort();
    let diag = assert_clean_failure(&error, "DeadlineReached");
    assert!(
        diag.error_message
            .contains("waiting for MongoDB at mongodb://backup:***@127.0.0.1:"),
        "{}",
        diag.error_message
    );
    assert!(
        !diag.error_message.contains("--parallel"),
        "{}",
        diag.error_message
    );
}

/// `{"action": "oplog"}`: a backup of the replica set, then captures through the handler,
/// each with its own metrics record (never `BackupSuccess`), and a capture that fails (no
/// backup to continue) reported as a failed capture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oplog_event_captures_a_slice_with_its_own_metrics() {
    let source = crate::harness::demo_replica_set().await;
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-oplog").await;
    let (mut env, _) = aws
        .function_env(&bucket, &json!({ "uri": source.uri }).to_string())
        .await;
    env.insert("NIGHTDUMP_ALLOW_INCONSISTENT".into(), "false".into());
    let deps = deps(&aws, env);

    // No backup yet: nothing to continue from.
    let error = handle(
        event(json!({"action": "oplog"}), Duration::from_secs(60)),
        &deps,
    )
    .await
    .unwrap_err();
    assert_clean_failure(&error, "InvalidConfiguration");
    let failed = emf(&deps).remove(0);
    assert_eq!(failed["OplogCaptureSuccess"], 0);
    assert!(failed.get("BackupSuccess").is_none(), "{failed}");

    run_at(&deps, &["2026-11-25T03:00:00Z"]).await;
    let client = mongodb::Client::with_uri_str(&source.uri).await.unwrap();
    client
        .database("app")
        .collection::<bson::Document>("late")
        .insert_many((0..10).map(|i| bson::doc! { "_id": i }))
        .await
        .unwrap();
    let capture = handle(
        event(json!({"action": "oplog"}), Duration::from_secs(60)),
        &deps,
    )
    .await
    .unwrap()
    .oplog()
    .expect("a capture's summary");
    assert_eq!(capture.status, nightdump::pitr::CaptureStatus::Stored);
    assert!(capture.entries >= 10, "{capture:?}");
    let slice = capture.slice.clone().unwrap();
    let keys = aws.keys(&bucket).await;
    assert!(
        keys.contains(&format!("{PREFIX}/{slice}/slice.json")),
        "{keys:?}"
    );
    let record = emf(&deps).pop().unwrap();
    assert_eq!(record["OplogCaptureSuccess"], 1);
    assert_eq!(record["OplogEntries"], capture.entries);
    assert!(record["OplogLagSeconds"].as_i64().unwrap() >= 0, "{record}");
    assert!(record.get("BackupSuccess").is_none(), "{record}");
    // latest.json carries the window's end for the portal.
    let latest: Value =
        serde_json::from_slice(&aws.object(&bucket, &format!("{PREFIX}/latest.json")).await)
            .unwrap();
    assert_eq!(
        latest["pitr"]["latest"],
        capture.window.as_ref().unwrap().latest.as_str(),
        "{latest}"
    );
}

/// A backup that succeeds while `latest.json` cannot be written: the run succeeds, says so in
/// its response, and its metrics record `LatestUpdateFailure` 1, which the template alarms on.
#[tokio::test]
async fn a_latest_json_that_cannot_be_updated_is_a_metric_of_its_own() {
    let source = crate::harness::demo_source().await;
    let moto = Moto::shared();
    let proxy = crate::support::fault_proxy::FaultProxy::start(moto.addr()).await;
    let aws = Aws::new().await;
    let bucket = moto.create_bucket("lambda-latest-fails").await;
    let (env, _) = aws
        .function_env(&bucket, &json!({ "uri": source.uri }).to_string())
        .await;
    let through_proxy = Deps {
        env,
        sdk: Moto::sdk_config_for(&proxy.endpoint()).await,
        secrets: SecretsManager::new(&aws.sdk),
        metrics: Captured::default(),
    };
    proxy.stop_at_request("PUT", "latest.json");
    let summary = handle(
        event(
            scheduler_event("2026-11-24T03:00:00Z"),
            Duration::from_secs(600),
        ),
        &through_proxy,
    )
    .await
    .expect("the backup succeeds although latest.json is not updated")
    .backup()
    .expect("a backup's summary");
    assert!(proxy.stopped());
    assert!(summary.latest_warning.is_some());
    let r = &emf(&through_proxy)[0];
    assert_eq!(r["BackupSuccess"], 1);
    assert_eq!(r["LatestUpdateFailure"], 1);
}

#[tokio::test]
async fn a_drill_event_restores_into_the_scratch_deployment_with_its_metric_and_alert() {
    let source = crate::harness::demo_source().await;
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-drill").await;
    let (mut env, _) = aws
        .function_env(&bucket, &json!({ "uri": source.uri }).to_string())
        .await;
    let scratch = crate::drill::scratch().await;
    let scratch_secret = aws
        .secret(&format!("{bucket}-scratch"), &scratch.uri())
        .await;
    // Without a scratch deployment configured, a drill is refused before anything is read.
    let unconfigured = deps(&aws, env.clone());
    let error = handle(
        event(json!({"action": "drill"}), Duration::from_secs(600)),
        &unconfigured,
    )
    .await
    .unwrap_err();
    let d = assert_clean_failure(&error, "InvalidConfiguration");
    assert!(
        d.error_message.contains("NIGHTDUMP_DRILL_SECRET_ARN"),
        "{}",
        d.error_message
    );
    assert_eq!(emf(&unconfigured).last().unwrap()["DrillSuccess"], 0);

    env.insert("NIGHTDUMP_DRILL_SECRET_ARN".into(), scratch_secret);
    let deps = deps(&aws, env);
    run_at(&deps, &["2026-11-25T03:00:00Z"]).await;
    let report = handle(
        event(json!({"action": "drill"}), Duration::from_secs(600)),
        &deps,
    )
    .await
    .unwrap()
    .drill()
    .unwrap();
    assert!(report.passed, "{report:?}");
    assert_eq!(report.backup_id, "20261125T030000Z");
    let record = emf(&deps).last().unwrap().clone();
    assert_eq!(record["DrillSuccess"], 1, "{record}");
    assert!(
        record["DrillRestoreSeconds"].as_f64().unwrap() > 0.0,
        "{record}"
    );
    let keys = aws.keys(&bucket).await;
    assert!(
        keys.contains(&format!("{PREFIX}/drills/{}.json", report.drill_id)),
        "{keys:?}"
    );
    let latest: Value =
        serde_json::from_slice(&aws.object(&bucket, &format!("{PREFIX}/latest.json")).await)
            .unwrap();
    assert_eq!(latest["drill"]["drill_id"], report.drill_id.as_str());

    // A backup whose stored record says other content than it holds: the drill fails, its
    // metric is 0, and the error (what the failure alert carries) names the namespace.
    let manifest_key = format!("{PREFIX}/20261125T030000Z/manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&aws.object(&bucket, &manifest_key).await).unwrap();
    let orders = manifest["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .position(|n| n["db"] == "shop" && n["collection"] == "orders")
        .unwrap();
    manifest["namespaces"][orders]["digest"] = json!("2".repeat(32));
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key(&manifest_key)
        .body(serde_json::to_vec(&manifest).unwrap().into())
        .send()
        .await
        .unwrap();
    let error = handle(
        event(
            json!({"action": "drill", "backup_id": "20261125T030000Z"}),
            Duration::from_secs(600),
        ),
        &deps,
    )
    .await
    .unwrap_err();
    let d = assert_clean_failure(&error, "IntegrityCheckFailed");
    assert!(
        d.error_message.contains("shop.orders"),
        "{}",
        d.error_message
    );
    let record = emf(&deps).last().unwrap().clone();
    assert_eq!(record["DrillSuccess"], 0, "{record}");
    assert_eq!(record["ErrorType"], "IntegrityCheckFailed", "{record}");
    assert!(
        crate::drill::scratch_is_empty(&scratch).await,
        "the failed drill left databases behind"
    );
}

#[tokio::test]
async fn a_drill_that_cannot_finish_within_the_deadline_says_so_and_cleans_up() {
    let source = crate::harness::demo_source().await;
    let aws = Aws::new().await;
    let bucket = Moto::shared().create_bucket("lambda-drill-late").await;
    let (mut env, _) = aws
        .function_env(&bucket, &json!({ "uri": source.uri }).to_string())
        .await;
    let scratch = crate::drill::scratch().await;
    let scratch_secret = aws
        .secret(&format!("{bucket}-scratch"), &scratch.uri())
        .await;
    env.insert("NIGHTDUMP_DRILL_SECRET_ARN".into(), scratch_secret);
    let deps = deps(&aws, env);
    run_at(&deps, &["2026-11-25T03:00:00Z"]).await;
    // Each insert takes three seconds on the scratch deployment; of the invocation's 71 s, a
    // tenth is kept back as for any run and 60 s by the drill to clean up: the four left
    // cannot hold the restore.
    scratch
        .faults()
        .delay_command("insert", Duration::from_secs(3));
    let started = std::time::Instant::now();
    let error = handle(
        event(json!({"action": "drill"}), Duration::from_secs(71)),
        &deps,
    )
    .await
    .unwrap_err();
    let d = assert_clean_failure(&error, "DeadlineReached");
    assert!(
        d.error_message.contains("could not finish within its time"),
        "{}",
        d.error_message
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    scratch.faults().clear();
    assert!(crate::drill::scratch_is_empty(&scratch).await);
    assert_eq!(emf(&deps).last().unwrap()["DrillSuccess"], 0);
    assert!(!aws
        .keys(&bucket)
        .await
        .iter()
        .any(|k| k.contains("/drills/")));
}
