//! The container task engine: one scheduled run, as the Lambda function does it, in a
//! process that a host such as ECS Fargate starts, for databases that do not fit Lambda's
//! 15 minutes.
//!
//! The run is the function's own ([`crate::lambda::handle_until`]): the same `NIGHTDUMP_*`
//! settings, the connection string read from Secrets Manager, the same backup or capture and
//! the same metrics records. What differs is the host: the event comes from
//! `NIGHTDUMP_EVENT`, the deadline from `NIGHTDUMP_TASK_TIMEOUT`, a stop request is SIGTERM
//! (ECS sends it before it kills a task), the metrics are published with `PutMetricData` (and
//! logged without their directive, so CloudWatch Logs does not extract them a second time),
//! and the outcome is the process's exit code, which the state machine retries and reports.

pub mod cloudwatch;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use lambda_runtime::LambdaEvent;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::lambda::event::Payload;
use crate::lambda::metrics::{Captured, MetricsSink, RunMetrics, Stdout};
use crate::lambda::secrets::SecretsManager;
use crate::lambda::{handle_until, Deps, HandlerError, Response};
use crate::store::{load_sdk_config, S3Options};

/// The run's event, as the Lambda function would receive it (the scheduler's event, a
/// manual run's overrides, `{"action": "oplog"}`). Unset or empty: a backup now.
pub const EVENT: &str = "NIGHTDUMP_EVENT";
/// How long the run may take (`4h`, `90m`); unset: no deadline but the host's.
pub const TIMEOUT: &str = "NIGHTDUMP_TASK_TIMEOUT";
/// Names the run in its log lines (the state machine passes its execution's id).
pub const RUN_ID: &str = "NIGHTDUMP_RUN_ID";

/// Shortest deadline worth starting a backup with.
const MIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What a task run did: the run's own result, and whether its metrics reached CloudWatch.
#[derive(Debug)]
pub struct TaskRun {
    pub result: Result<Response, HandlerError>,
    /// Data points published, or why they were not.
    pub metrics: Result<usize, String>,
}

impl TaskRun {
    /// The process's exit code: the CLI's code for the run's failure, 0 for success.
    pub fn exit_code(&self) -> i32 {
        match &self.result {
            Ok(_) => 0,
            Err(e) => e.exit_code(),
        }
    }
}

/// Runs once with the process's environment; `stop` is cancelled when the host asks the run
/// to end early.
pub async fn run(env: HashMap<String, String>, stop: CancellationToken) -> TaskRun {
    let sdk = load_sdk_config(&S3Options::default()).await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    let deps = Deps {
        env,
        secrets: SecretsManager::new(&sdk),
        sdk,
        metrics: Captured::default(),
    };
    let result = match context(&deps.env, SystemTime::now()) {
        Ok(context) => {
            let payload = payload(&deps.env);
            handle_until(LambdaEvent::new(payload, context), &deps, &stop).await
        }
        Err(e) => {
            // Refused before the run: still one metrics record, so the night counts as failed.
            let e = HandlerError::from(e);
            deps.metrics.emit(&failure_record(&deps.env, &e));
            tracing::error!(error_type = e.error_type(), error = %e, "run failed");
            Err(e)
        }
    };
    let lines = deps.metrics.lines();
    for line in &lines {
        // The log keeps the record, without its metrics directive: CloudWatch Logs extracts
        // embedded metrics from awslogs streams too, and the data points are published below.
        Stdout.emit(&without_directive(line));
    }
    let metrics = cloudwatch::publish(&cloudwatch, &lines).await;
    if let Err(e) = &metrics {
        // The run's own outcome stands; the staleness alarm treats missing data as a breach.
        tracing::error!(error = %e, "metrics not published");
    }
    TaskRun { result, metrics }
}

/// The record with its `_aws` directive removed, so it is a plain log line.
fn without_directive(line: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(mut record)) => {
            record.remove("_aws");
            serde_json::Value::Object(record).to_string()
        }
        _ => line.to_string(),
    }
}

/// The event in `NIGHTDUMP_EVENT`, read as Lambda reads a payload.
fn payload(env: &HashMap<String, String>) -> Payload {
    match env.get(EVENT).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Payload::Json(serde_json::json!({})),
        Some(text) => match serde_json::from_str(text) {
            Ok(value) => Payload::Json(value),
            Err(e) => Payload::NotJson(format!("{EVENT}: {e}")),
        },
    }
}

/// The invocation context Lambda would give: an id and, with a timeout, a deadline.
fn context(
    env: &HashMap<String, String>,
    now: SystemTime,
) -> Result<lambda_runtime::Context, Error> {
    let mut context = lambda_runtime::Context::default();
    context.request_id = env
        .get(RUN_ID)
        .filter(|v| !v.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| "task".into());
    if let Some(value) = env.get(TIMEOUT).filter(|v| !v.trim().is_empty()) {
        let timeout = crate::settings::duration(TIMEOUT, value)?;
        if timeout < MIN_TIMEOUT {
            return Err(Error::invalid(format!(
                "{TIMEOUT}={value} leaves no time for a backup: give at least 1m, e.g. 4h"
            )));
        }
        let at = now + timeout;
        context.deadline = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
    }
    Ok(context)
}

fn failure_record(env: &HashMap<String, String>, e: &HandlerError) -> String {
    RunMetrics::failed(e.error_type(), 0.0, None).to_emf(
        crate::lambda::config::metrics_name(env),
        OffsetDateTime::now_utc(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_timeout_becomes_the_invocations_deadline() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let c = context(&env(&[(TIMEOUT, "4h"), (RUN_ID, "exec-1")]), now).unwrap();
        assert_eq!(c.deadline, (1_800_000_000 + 4 * 3600) * 1000);
        assert_eq!(c.request_id, "exec-1");
        let c = context(&env(&[]), now).unwrap();
        assert_eq!(c.deadline, 0, "no timeout, no deadline");
        for bad in ["soon", "30s"] {
            let e = context(&env(&[(TIMEOUT, bad)]), now).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
            assert!(e.to_string().contains(TIMEOUT), "{e}");
        }
    }

    #[test]
    fn the_event_is_read_as_lambda_reads_a_payload() {
        assert_eq!(payload(&env(&[])), Payload::Json(serde_json::json!({})));
        assert_eq!(
            payload(&env(&[(EVENT, r#"{"action":"oplog"}"#)])),
            Payload::Json(serde_json::json!({"action": "oplog"}))
        );
        assert!(matches!(
            payload(&env(&[(EVENT, "{not json")])),
            Payload::NotJson(e) if e.starts_with(EVENT)
        ));
    }
}
