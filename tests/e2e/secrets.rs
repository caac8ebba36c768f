//! Secrets never leak: a known password in every connection string, a known Secrets Manager
//! secret value and a KMS key id go through the failure paths, and neither the password nor
//! the secret value is found in anything nightdump printed, logged, stored or sent: raw,
//! percent-encoded or base64-encoded.
//!
//! The fault suite (`faults.rs`) checks its own runs the same way: every fault there runs
//! with this password and [`assert_no_secret`] looks at its stdout, stderr, JSON logs and
//! every file left at the destination. The bad-input table does the same for each row.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use mongo_test_server::{ServerConfig, User};
use nightdump::lambda::destination::failure_record;
use nightdump::lambda::metrics::Captured;
use nightdump::lambda::secrets::SecretsManager;
use nightdump::lambda::{handle, Deps};
use nightdump::secret::{ConnectionString, Secret};
use serde_json::{json, Value};

use crate::alert_topic::AlertTopic;
use crate::bad_input;
use crate::support::log_buffer::LogBuffer;
use crate::support::moto::Moto;

/// The password, as the server knows it.
pub const PASSWORD: &str = "correct-horse/battery:9f2c";
/// The same password as it must be written in a connection string.
pub const PASSWORD_IN_URI: &str = "correct-horse%2Fbattery%3A9f2c";
/// A value stored beside the connection string in the Secrets Manager secret.
pub const SECRET_TOKEN: &str = "sv-51b7-never-printed-e0a4";

// The type system is the first line: a secret has no Display and no Serialize.
static_assertions::assert_not_impl_any!(Secret<String>: std::fmt::Display, serde::Serialize);
static_assertions::assert_not_impl_any!(ConnectionString: serde::Serialize);

/// The forms a secret could leak in: as is, percent-encoded, and base64-encoded at each of
/// the three alignments it could have inside a longer base64 text.
fn leak_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string(), percent_encode(secret)];
    for offset in 0..3 {
        let mut bytes = vec![0u8; offset];
        bytes.extend_from_slice(secret.as_bytes());
        let encoded = base64(&bytes);
        // Characters touched by the padding bytes before, or by the end, differ by context.
        let skip = (offset * 4).div_ceil(3);
        let stable = &encoded[skip..encoded.len().saturating_sub(4)];
        if stable.len() >= 8 {
            forms.push(stable.to_string());
        }
    }
    forms
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        for _ in chunk.len()..3 {
            out.push('=');
        }
    }
    out
}

/// Panics if the password or the secret value is in `bytes` (gzip members are looked into).
pub fn assert_no_secret(what: &str, bytes: &[u8]) {
    let mut texts = vec![String::from_utf8_lossy(bytes).into_owned()];
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        // A truncated or encrypted-then-gzipped file still yields what it holds up to there.
        let _ = flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut plain);
        texts.push(String::from_utf8_lossy(&plain).into_owned());
    }
    for secret in [PASSWORD, PASSWORD_IN_URI, SECRET_TOKEN] {
        for form in leak_forms(secret) {
            for text in &texts {
                assert!(
                    !text.contains(&form),
                    "{what} holds a secret ({form:?}):\n{}",
                    text.chars().take(4000).collect::<String>()
                );
            }
        }
    }
}

#[test]
fn leak_forms_find_what_they_should() {
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE=");
    let embedded = base64(format!("xx{PASSWORD}yy").as_bytes());
    assert!(leak_forms(PASSWORD).iter().any(|f| embedded.contains(f)));
    let result = std::panic::catch_unwind(|| {
        assert_no_secret(
            "probe",
            format!("uri=mongodb://u:{PASSWORD_IN_URI}@h/").as_bytes(),
        )
    });
    assert!(result.is_err(), "an encoded password must be caught");
}

#[test]
fn a_secret_prints_as_a_placeholder() {
    let s = Secret::new(PASSWORD.to_string());
    assert_eq!(format!("{s:?}"), "Secret(***)");
    let uri = format!("mongodb://backup:{PASSWORD_IN_URI}@db:27017/?authSource=admin");
    let cs = ConnectionString::parse(&uri).unwrap();
    assert_no_secret("Display", cs.to_string().as_bytes());
    assert_no_secret("Debug", format!("{cs:?}").as_bytes());
}

#[tokio::test]
async fn no_secret_in_what_the_bad_input_table_prints_even_at_debug_level() {
    let f = bad_input::Fixture::new();
    for row in bad_input::cli_rows(&f) {
        let (args, mut env) = match &row.input {
            bad_input::Input::Cli(args) => (args, Vec::new()),
            bad_input::Input::CliEnv(args, env) => (args, env.clone()),
            bad_input::Input::Env(_) => unreachable!("CLI rows only"),
        };
        if !env.iter().any(|(k, _)| *k == "NIGHTDUMP_LOG") {
            env.push(("NIGHTDUMP_LOG", "debug".into()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = crate::harness::run_nightdump(&args, &env).await;
        assert_no_secret(&format!("{args:?}"), run.all_output().as_bytes());
    }
    for row in bad_input::env_rows() {
        let run = bad_input::run_row(&row).await;
        assert_no_secret(&format!("{:?}", row.input), run.all_output().as_bytes());
    }
}

// ---------------------------------------------------------------- the Lambda

/// Every log record of this test binary as JSON, the format the function logs in.
/// Process-wide: a thread-scoped subscriber misses events whose callsites other threads
/// registered first.
fn json_logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(logs.clone())
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,nightdump=debug"))
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        logs
    })
}

fn lambda_event(time: &str) -> LambdaEvent<Value> {
    let payload = json!({
        "version": "0", "id": "5c0e6a8e-1f2b-4c4e-9f44-0000000000aa",
        "detail-type": "Scheduled Event", "source": "aws.scheduler",
        "account": "123456789012", "time": time, "region": "us-east-1",
        "resources": [], "detail": {}
    });
    let deadline = SystemTime::now() + Duration::from_secs(300);
    let mut context = Context::default();
    context.request_id = "secret-leak-test".into();
    context.deadline = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    LambdaEvent::new(payload, context)
}

struct LambdaCase {
    name: &'static str,
    env: HashMap<String, String>,
    expected_type: &'static str,
}

#[tokio::test]
async fn no_secret_in_a_failed_lambda_run_its_logs_metrics_alert_or_bucket() {
    let logs = json_logs();
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let bucket = moto.create_bucket("secret-leak").await;
    let kms_key = moto.create_kms_key().await.key_id().to_string();
    let mut secret_number = 0;
    let mut secret = |value: String| {
        secret_number += 1;
        let name = format!("{bucket}-mongo-{secret_number}");
        async move { moto.create_secret(&name, &value).await }
    };
    let secret_value =
        |uri: &str| json!({ "uri": uri, "engine": "mongo", "note": SECRET_TOKEN }).to_string();

    // A server that knows the password, one that knows another, and a port nobody serves.
    let server = mongo_test_server::start(ServerConfig {
        seed: "bench:8MiB".parse().unwrap(),
        users: vec![User::new("backup", PASSWORD)],
        ..Default::default()
    })
    .await
    .unwrap();
    let other = mongo_test_server::start(ServerConfig {
        users: vec![User::new("backup", "a-different-one")],
        ..Default::default()
    })
    .await
    .unwrap();
    let closed_port = crate::harness::closed_port();
    let with_password = |uri: String| {
        uri.replacen(
            "mongodb://",
            &format!("mongodb://backup:{PASSWORD_IN_URI}@"),
            1,
        )
    };
    let base = |arn: String| -> HashMap<String, String> {
        [
            ("NIGHTDUMP_TO", format!("s3://{bucket}/nightly")),
            ("NIGHTDUMP_MONGODB_SECRET_ARN", arn),
            ("NIGHTDUMP_SSE", "kms".into()),
            ("NIGHTDUMP_KMS_KEY_ID", kms_key.clone()),
            ("NIGHTDUMP_PARALLEL", "1".into()),
            ("NIGHTDUMP_CONNECT_TIMEOUT", "2s".into()),
            ("NIGHTDUMP_ALLOW_INCONSISTENT", "true".into()),
            ("AWS_LAMBDA_FUNCTION_NAME", "nightdump-secret-test".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };

    let mut cases = vec![
        LambdaCase {
            name: "wrong password",
            env: base(secret(secret_value(&with_password(other.uri()))).await),
            expected_type: "MongoAuthenticationFailed",
        },
        LambdaCase {
            name: "unreachable server",
            env: base(
                secret(secret_value(&format!(
                    "mongodb://backup:{PASSWORD_IN_URI}@127.0.0.1:{closed_port}/?authSource=admin"
                )))
                .await,
            ),
            expected_type: "MongoUnreachable",
        },
        LambdaCase {
            name: "secret that is no connection string",
            env: base(secret(format!("{SECRET_TOKEN} {PASSWORD}")).await),
            expected_type: "SecretUnavailable",
        },
        LambdaCase {
            name: "connection lost mid-getMore",
            env: base(secret(secret_value(&with_password(server.uri()))).await),
            expected_type: "MongoConnectionLost",
        },
    ];
    let mut plain = base(String::new());
    plain.remove("NIGHTDUMP_MONGODB_SECRET_ARN");
    plain.insert("MONGODB_URI".into(), with_password(server.uri()));
    cases.push(LambdaCase {
        name: "plain connection string not allowed",
        env: plain,
        expected_type: "InvalidConfiguration",
    });

    let alerts = AlertTopic::new(&sdk, &bucket).await;
    for case in cases {
        if case.name == "connection lost mid-getMore" {
            server.faults().close_after_documents(3000);
        }
        let deps = Deps {
            env: case.env,
            sdk: sdk.clone(),
            secrets: SecretsManager::new(&sdk),
            metrics: Captured::default(),
        };
        let event = lambda_event("2026-11-25T03:00:00Z");
        let scheduled = event.payload.clone();
        let error = tokio::time::timeout(Duration::from_secs(120), handle(event, &deps))
            .await
            .unwrap_or_else(|_| panic!("{}: the run hung", case.name))
            .expect_err(case.name);
        server.faults().clear();
        let d: Diagnostic = error.into();
        assert_eq!(
            d.error_type, case.expected_type,
            "{}: {}",
            case.name, d.error_message
        );
        assert!(!d.error_message.contains('\n'), "{}", d.error_message);
        let payload = serde_json::to_string(&json!({
            "errorType": d.error_type, "errorMessage": d.error_message
        }))
        .unwrap();
        assert_no_secret(&format!("{}: error payload", case.name), payload.as_bytes());
        for line in deps.metrics.lines() {
            assert_no_secret(&format!("{}: metrics", case.name), line.as_bytes());
        }
        let record = failure_record(
            "secret-leak-test",
            "arn:aws:lambda:us-east-1:123456789012:function:nightdump-secret-test",
            time::OffsetDateTime::now_utc(),
            &scheduled,
            &d,
        );
        alerts.publish(&record.to_string()).await;
    }

    let bodies = alerts.receive(5).await;
    assert_eq!(
        bodies.len(),
        5,
        "every failure reached the alert subscriber"
    );
    for body in &bodies {
        assert_no_secret("alert notification", body.as_bytes());
        let envelope: Value = serde_json::from_str(body).unwrap();
        let message: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
        assert!(message["responsePayload"]["errorType"].is_string());
    }
    let logged = logs.bytes();
    assert!(
        String::from_utf8_lossy(&logged).contains("invocation started"),
        "the function's logs were captured"
    );
    assert_no_secret("JSON logs", &logged);
    let dest = crate::faults::Dest::S3 {
        bucket: bucket.clone(),
        endpoint: moto.endpoint(),
    };
    for (key, bytes) in dest.contents().await {
        assert_no_secret(&key, &bytes);
    }
}
