//! The container task engine (`nightdump task`, as ECS Fargate runs it) as a process: the
//! function's settings from the environment, the connection string from Secrets Manager on
//! moto, the event from `NIGHTDUMP_EVENT`, metrics published to CloudWatch on moto, and the
//! run's exit code for the state machine: success, failure, and SIGTERM (how ECS stops a
//! task), each on a standalone and a replica-set source.

use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use serde_json::Value;

use crate::faults::*;
use crate::harness::*;
use crate::secrets::{assert_no_secret, PASSWORD};
use crate::support::fault_proxy::FaultProxy;
use crate::support::moto::Moto;

const RUN_LIMIT: Duration = Duration::from_secs(120);

fn scheduled_event(time: &str) -> String {
    serde_json::json!({
        "version": "0", "id": "5c0e6a8e-1f2b-4c4e-9f44-000000000002",
        "detail-type": "Scheduled Event", "source": "aws.scheduler",
        "account": "123456789012", "time": time, "region": "us-east-1",
        "resources": [], "detail": {}
    })
    .to_string()
}

/// The task definition's environment for `dest`, the connection string in a new secret.
async fn task_env(
    dest: &Dest,
    uri: &str,
    metrics_name: &str,
    topology: Topology,
) -> Vec<(&'static str, String)> {
    let secret = Moto::shared()
        .create_secret(&format!("task-{metrics_name}"), uri)
        .await;
    let mut env = dest.env();
    env.extend([
        ("NIGHTDUMP_TO", dest.location()),
        ("NIGHTDUMP_MONGODB_SECRET_ARN", secret),
        ("NIGHTDUMP_METRICS_NAME", metrics_name.to_string()),
        ("NIGHTDUMP_TASK_TIMEOUT", "10m".to_string()),
        ("NIGHTDUMP_EVENT", scheduled_event(FAILED_AT)),
        ("NIGHTDUMP_RUN_ID", format!("exec-{metrics_name}")),
        ("NIGHTDUMP_CONNECT_TIMEOUT", "3s".to_string()),
        ("NIGHTDUMP_PARALLEL", "1".to_string()),
        (
            "NIGHTDUMP_ALLOW_INCONSISTENT",
            (topology == Topology::Standalone).to_string(),
        ),
    ]);
    env
}

fn spawn_task(env: &[(&str, String)]) -> Running {
    spawn_nightdump(&["task", "--log", "info", "--log-format", "json"], env)
}

/// The largest value CloudWatch (moto) holds for `metric` under the task's dimension.
async fn metric_max(metrics_name: &str, metric: &str) -> Option<f64> {
    let client = aws_sdk_cloudwatch::Client::new(&Moto::shared().sdk_config().await);
    let now = std::time::SystemTime::now();
    let out = client
        .get_metric_statistics()
        .namespace("Nightdump")
        .metric_name(metric)
        .dimensions(
            Dimension::builder()
                .name("FunctionName")
                .value(metrics_name)
                .build(),
        )
        .start_time((now - Duration::from_secs(3600)).into())
        .end_time((now + Duration::from_secs(3600)).into())
        .period(3600)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .unwrap();
    out.datapoints()
        .iter()
        .filter_map(|d| d.maximum())
        .reduce(f64::max)
}

/// The failed run's exit code checked, and its one plain stderr line (the error; the rest
/// are JSON log records).
fn the_error_line(run: &Run, code: i32) -> String {
    assert_eq!(run.code, Some(code), "{}", run.stderr);
    let plain = run.plain_stderr_lines();
    assert_eq!(plain.len(), 1, "{}", run.stderr);
    assert!(plain[0].starts_with("error: "), "{}", plain[0]);
    plain[0].to_string()
}

/// The run's stdout: its metrics record(s), then (on success) the summary.
fn stdout_records(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("each stdout line is one JSON object"))
        .collect()
}

async fn a_task_backs_up_with_the_functions_settings_with(topology: Topology) {
    let server = bench_server("demo", topology).await;
    let uri = source_uri(&server);
    let dest = Dest::s3(&format!("task-ok-{topology:?}").to_lowercase()).await;
    let name = format!("task-ok-{topology:?}");
    let env = task_env(&dest, &uri, &name, topology).await;
    let run = spawn_task(&env).finish(RUN_LIMIT).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_no_secret("the task's output", run.all_output().as_bytes());
    assert!(!run.all_output().contains(PASSWORD));
    let records = stdout_records(&run);
    let summary = records.last().unwrap();
    assert_eq!(summary["backup_id"], FAILED_ID, "{summary}");
    assert_eq!(
        summary["point_in_time"].is_object(),
        topology == Topology::ReplicaSet,
        "{summary}"
    );
    let emf = &records[0];
    assert_eq!(emf["BackupSuccess"], 1, "{emf}");
    // Logged without the directive: CloudWatch Logs would otherwise extract the data points a
    // second time from the awslogs stream.
    assert!(emf.get("_aws").is_none(), "{emf}");
    assert_eq!(emf["FunctionName"], name.as_str());
    // The scheduled event names the backup, as the function's does, and the backup verifies.
    let verify = run_nightdump(
        &["verify", FAILED_ID, "--from", &dest.location()],
        &dest.env(),
    )
    .await;
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
    assert_eq!(metric_max(&name, "BackupSuccess").await, Some(1.0));
    assert!(metric_max(&name, "BackupDocuments").await.unwrap() > 0.0);
    assert!(metric_max(&name, "DeadlineUsedPercent").await.unwrap() < 70.0);
    // The same schedule again (Step Functions' retry after a lost reply) finds it done.
    let again = spawn_task(&env).finish(RUN_LIMIT).await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(
        stdout_records(&again).last().unwrap()["already_existed"],
        true
    );
}

#[tokio::test]
async fn a_task_backs_up_with_the_functions_settings_and_publishes_its_metrics() {
    a_task_backs_up_with_the_functions_settings_with(Topology::Standalone).await;
}

#[tokio::test]
async fn a_task_backs_up_with_the_functions_settings_and_publishes_its_metrics_on_a_replica_set() {
    a_task_backs_up_with_the_functions_settings_with(Topology::ReplicaSet).await;
}

/// A failed run: the CLI's exit code (Step Functions sees it), one error line, a failure
/// metric in CloudWatch, and the destination as it was.
async fn a_failed_task_exits_with_its_code_with(topology: Topology) {
    let server = bench_server("demo", topology).await;
    let uri = source_uri(&server);
    let dest = Dest::s3(&format!("task-fail-{topology:?}").to_lowercase()).await;
    let before = previous_backup(&uri, &dest).await;
    let name = format!("task-fail-{topology:?}");
    let unreachable = uri.replace(
        &server.addr().port().to_string(),
        &closed_port().to_string(),
    );
    let env = task_env(&dest, &unreachable, &name, topology).await;
    let run = spawn_task(&env).finish(RUN_LIMIT).await;
    let line = the_error_line(&run, 3);
    assert!(line.contains("MongoUnreachable"), "{}", line);
    assert_no_secret("the failed task's output", run.all_output().as_bytes());
    let records = stdout_records(&run);
    assert_eq!(records.len(), 1, "only the metrics record: {}", run.stdout);
    assert_eq!(records[0]["BackupSuccess"], 0);
    assert_eq!(records[0]["ErrorType"], "MongoUnreachable");
    assert_eq!(metric_max(&name, "BackupSuccess").await, Some(0.0));
    assert_destination_kept(&dest, &before, Leftover::Nothing).await;
}

#[tokio::test]
async fn a_failed_task_exits_with_the_failures_code_and_publishes_a_failure() {
    a_failed_task_exits_with_its_code_with(Topology::Standalone).await;
}

#[tokio::test]
async fn a_failed_task_exits_with_the_failures_code_and_publishes_a_failure_on_a_replica_set() {
    a_failed_task_exits_with_its_code_with(Topology::ReplicaSet).await;
}

/// ECS stops a task with SIGTERM (then SIGKILL after its stop timeout): the upload in flight
/// is aborted, nothing is marked successful, the failure is published, exit 8.
async fn sigterm_stops_a_task_with(topology: Topology) {
    let server = bench_server(MULTIPART_SEED, topology).await;
    let uri = source_uri(&server);
    let direct = Dest::s3(&format!("task-term-{topology:?}").to_lowercase()).await;
    let before = previous_backup(&uri, &direct).await;
    let proxy = FaultProxy::start(Moto::shared().addr()).await;
    let dest = direct.through(&proxy.endpoint());
    let name = format!("task-term-{topology:?}");
    let mut env = task_env(&dest, &uri, &name, topology).await;
    // The smallest part S3 takes, so the archive is a multipart upload whatever it compresses to.
    env.push(("NIGHTDUMP_PART_SIZE", "5MiB".into()));
    proxy.hold_part_uploads(true);
    let run = spawn_task(&env);
    tokio::time::timeout(RUN_LIMIT, proxy.wait_parts_held(1))
        .await
        .expect("the task started its multipart upload");
    run.signal("TERM");
    proxy.hold_part_uploads(false);
    let run = run.finish(RUN_LIMIT).await;
    let line = the_error_line(&run, 8);
    assert!(line.contains("stopped by SIGTERM"), "{}", line);
    assert!(line.contains("upload was aborted"), "{}", line);
    let records = stdout_records(&run);
    assert_eq!(records[0]["ErrorType"], "Interrupted", "{}", run.stdout);
    assert_eq!(metric_max(&name, "BackupSuccess").await, Some(0.0));
    assert_destination_kept(&direct, &before, Leftover::Nothing).await;
}

#[tokio::test]
async fn sigterm_stops_a_task_and_aborts_its_upload() {
    sigterm_stops_a_task_with(Topology::Standalone).await;
}

#[tokio::test]
async fn sigterm_stops_a_task_and_aborts_its_upload_on_a_replica_set() {
    sigterm_stops_a_task_with(Topology::ReplicaSet).await;
}

/// A deadline that cannot be a run's is refused before anything is contacted, with the
/// variable named, and still counted as a failed night.
#[tokio::test]
async fn a_task_timeout_that_is_not_a_duration_is_refused() {
    let dest = Dest::s3("task-bad-timeout").await;
    let mut env = task_env(
        &dest,
        "mongodb://127.0.0.1:1/",
        "task-bad",
        Topology::Standalone,
    )
    .await;
    env.retain(|(k, _)| *k != "NIGHTDUMP_TASK_TIMEOUT");
    env.push(("NIGHTDUMP_TASK_TIMEOUT", "soon".into()));
    let run = spawn_task(&env).finish(RUN_LIMIT).await;
    let line = the_error_line(&run, 2);
    assert!(
        line.contains("NIGHTDUMP_TASK_TIMEOUT 'soon' is not a duration"),
        "{}",
        line
    );
    assert_eq!(metric_max("task-bad", "BackupSuccess").await, Some(0.0));
    assert!(dest.snapshot().await.objects.is_empty());
    // An event that is not JSON is the Lambda's bad event: exit 2, InvalidEvent, named.
    env.retain(|(k, _)| *k != "NIGHTDUMP_TASK_TIMEOUT" && *k != "NIGHTDUMP_EVENT");
    env.push(("NIGHTDUMP_EVENT", "{not json".into()));
    let run = spawn_task(&env).finish(RUN_LIMIT).await;
    let line = the_error_line(&run, 2);
    assert!(
        line.contains("NIGHTDUMP_EVENT") && line.contains("InvalidEvent"),
        "{}",
        line
    );
    assert!(dest.snapshot().await.objects.is_empty());
}
