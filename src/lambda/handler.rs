//! One invocation: configuration and event checked first, then the secret, the store and
//! the backup; one metrics record whatever happens; an error returned (never swallowed) so
//! Lambda retries the run and finally reports it to the on-failure destination.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::backup::{self, BackupOptions, BackupOutcome};
use crate::error::Error;
use crate::namespace::NamespaceFilter;
use crate::progress::Progress;
use crate::secret::ConnectionString;
use crate::source::{ReadPreferenceChoice, SourceOptions};
use crate::store::Store;

use super::config::{LambdaConfig, UriSource, COMPRESSION_LEVEL};
pub use super::error::HandlerError;
use super::event::{Action, Invocation, Payload};
use super::metrics::{CaptureMetrics, DrillMetrics, MetricsSink, PruneMetrics, RunMetrics};
use super::secrets::{connection_string_from_secret, SecretSource};

/// Longest time kept back from Lambda's deadline to abort the upload and report.
const MAX_SAFETY_MARGIN: Duration = Duration::from_secs(20);
/// Lambda's longest timeout.
const MAX_LAMBDA_TIMEOUT: Duration = Duration::from_secs(900);
/// Upper bound on waiting for background clean-up (upload aborts) before returning.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// What the handler needs, built once per container.
pub struct Deps<S, M> {
    /// The function's environment (`std::env::vars()` in Lambda).
    pub env: HashMap<String, String>,
    /// Shared AWS configuration (HTTP client, credentials, region) for every client.
    pub sdk: aws_config::SdkConfig,
    pub secrets: S,
    pub metrics: M,
}

/// What a successful run returns to the caller (and what Lambda logs for it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The backup's report, the same as the CLI's `backup --json`.
    #[serde(flatten)]
    pub backup: crate::backup::BackupSummary,
    /// The prune after the backup, when `NIGHTDUMP_PRUNE` sets a policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneSummary>,
}

/// What an invocation returns: a backup's summary, or an oplog capture's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Response {
    Backup(Summary),
    Oplog(crate::pitr::CaptureSummary),
    Drill(Box<crate::drill::DrillReport>),
}

impl Response {
    /// The backup's summary, when the invocation was a backup.
    pub fn backup(self) -> Option<Summary> {
        match self {
            Response::Backup(s) => Some(s),
            _ => None,
        }
    }

    /// The capture's summary, when the invocation was an oplog capture.
    pub fn oplog(self) -> Option<crate::pitr::CaptureSummary> {
        match self {
            Response::Oplog(s) => Some(s),
            _ => None,
        }
    }

    /// The drill's report, when the invocation was a drill.
    pub fn drill(self) -> Option<crate::drill::DrillReport> {
        match self {
            Response::Drill(r) => Some(*r),
            _ => None,
        }
    }
}

impl std::ops::Deref for Summary {
    type Target = crate::backup::BackupSummary;

    fn deref(&self) -> &Self::Target {
        &self.backup
    }
}

/// The whole invocation of a JSON payload; see [`handle_payload`].
pub async fn handle<S, M>(
    event: LambdaEvent<Value>,
    deps: &Deps<S, M>,
) -> Result<Response, HandlerError>
where
    S: SecretSource,
    M: MetricsSink,
{
    let (payload, context) = event.into_parts();
    handle_payload(LambdaEvent::new(Payload::Json(payload), context), deps).await
}

/// The whole invocation, whatever the payload's bytes. Exactly one metrics record is
/// emitted per call.
pub async fn handle_payload<S, M>(
    event: LambdaEvent<Payload>,
    deps: &Deps<S, M>,
) -> Result<Response, HandlerError>
where
    S: SecretSource,
    M: MetricsSink,
{
    // Lambda freezes or kills its process instead of signalling it: nothing stops a run early.
    handle_until(event, deps, &CancellationToken::new()).await
}

/// [`handle_payload`] for a host that asks a run to stop (ECS sends SIGTERM before it kills
/// a task): once `stop` is cancelled the backup is dropped where it stands, its upload
/// aborted, and the run reported as interrupted.
pub async fn handle_until<S, M>(
    event: LambdaEvent<Payload>,
    deps: &Deps<S, M>,
    stop: &CancellationToken,
) -> Result<Response, HandlerError>
where
    S: SecretSource,
    M: MetricsSink,
{
    let clock = Instant::now();
    let now = SystemTime::now();
    let deadline = run_deadline(event.context.deadline(), now);
    if deadline == Deadline::None && event.context.deadline != 0 {
        tracing::warn!(
            deadline_ms = event.context.deadline,
            "the invocation's deadline is not a plausible time; running without one"
        );
    }
    tracing::info!(
        request_id = %event.context.request_id,
        deadline_ms = event.context.deadline,
        remaining_ms = event.context.deadline().duration_since(now).map(|d| d.as_millis()).unwrap_or(0),
        "invocation started"
    );
    // The whole time Lambda gave the invocation, when it gave a plausible deadline.
    let budget = match deadline {
        Deadline::None => None,
        _ => event
            .context
            .deadline()
            .duration_since(now)
            .ok()
            .filter(|b| !b.is_zero()),
    };
    let result = run(&event.payload, deadline, deps, stop).await;
    let elapsed = clock.elapsed().as_secs_f64();
    let deadline_used_percent = budget.map(|b| 100.0 * elapsed / b.as_secs_f64());
    let function_name = super::config::metrics_name(&deps.env);
    let action = payload_action(&event.payload);
    let record = match (&result, action == Action::Oplog) {
        _ if action == Action::Drill => DrillMetrics {
            success: result.is_ok(),
            duration_seconds: elapsed,
            restore_seconds: match &result {
                Ok(Response::Drill(r)) => Some(r.restore_seconds),
                _ => None,
            },
            error_type: result.as_ref().err().map(|e| e.error_type().to_string()),
        }
        .to_emf(function_name, OffsetDateTime::now_utc()),
        (Ok(Response::Oplog(c)), _) => CaptureMetrics {
            success: true,
            duration_seconds: elapsed,
            entries: c.entries,
            bytes: c.size,
            lag_seconds: c.window.as_ref().map(|w| w.lag_seconds),
            error_type: None,
        }
        .to_emf(function_name, OffsetDateTime::now_utc()),
        (Err(e), true) => CaptureMetrics {
            success: false,
            duration_seconds: elapsed,
            entries: 0,
            bytes: 0,
            lag_seconds: None,
            error_type: Some(e.error_type().to_string()),
        }
        .to_emf(function_name, OffsetDateTime::now_utc()),
        (Ok(Response::Backup(s)), _) => RunMetrics {
            success: true,
            duration_seconds: elapsed,
            bytes: s.size,
            documents: s.documents,
            backup_id: Some(s.backup_id.clone()),
            error_type: None,
            already_existed: s.already_existed,
            prune: s.prune.as_ref().map(|p| PruneMetrics {
                success: p.error.is_none(),
                removed: p.removed.len() as u64,
                locked: p.kept_locked.len() as u64,
            }),
            deadline_used_percent,
            latest_update_failed: s.latest_warning.is_some(),
        }
        .to_emf(function_name, OffsetDateTime::now_utc()),
        (Err(_), false) | (Ok(Response::Drill(_)), _) => {
            let error_type = result.as_ref().err().map_or("Internal", |e| e.error_type());
            RunMetrics::failed(error_type, elapsed, deadline_used_percent)
                .to_emf(function_name, OffsetDateTime::now_utc())
        }
    };
    deps.metrics.emit(&record);
    match &result {
        Ok(Response::Backup(s)) if s.already_existed => {
            tracing::info!(backup_id = %s.backup_id, "backup for this schedule already complete")
        }
        Ok(Response::Backup(s)) => {
            tracing::info!(backup_id = %s.backup_id, size = s.size, documents = s.documents, "backup complete")
        }
        Ok(Response::Oplog(c)) => {
            tracing::info!(status = ?c.status, entries = c.entries, "oplog capture complete")
        }
        Ok(Response::Drill(r)) => {
            tracing::info!(drill_id = %r.drill_id, backup_id = %r.backup_id, restore_seconds = r.restore_seconds, "restore drill passed")
        }
        Err(e) => tracing::error!(error_type = e.error_type(), error = %e, "run failed"),
    }
    result
}

/// What the payload asks for, as far as its `action` says (so a failure is reported as a
/// failure of that kind, even when the event itself is refused).
fn payload_action(payload: &Payload) -> Action {
    match payload {
        Payload::Json(Value::Object(m)) => match m.get("action").and_then(Value::as_str) {
            Some("oplog") => Action::Oplog,
            Some("drill") => Action::Drill,
            _ => Action::Backup,
        },
        _ => Action::Backup,
    }
}

async fn run<S, M>(
    payload: &Payload,
    deadline: Deadline,
    deps: &Deps<S, M>,
    stop: &CancellationToken,
) -> Result<Response, HandlerError>
where
    S: SecretSource,
    M: MetricsSink,
{
    // Everything that can be checked without a connection is checked first.
    let config = LambdaConfig::from_env(&deps.env)?;
    let invocation = Invocation::from_payload(payload)?;
    let deadline = match deadline {
        Deadline::None => None,
        Deadline::At(at) => Some(at),
        Deadline::TooLate { remaining } => {
            return Err(Error::Deadline(format!(
                "only {} ms were left when the run started",
                remaining.as_millis()
            ))
            .into())
        }
    };
    if invocation.action == Action::Drill {
        return drill(&config, &invocation, deadline, deps, stop).await;
    }
    let uri = connection_string(&config.uri, "reading the secret", deadline, deps).await?;
    if invocation.action == Action::Oplog {
        return capture(&config, uri, deadline, deps, stop)
            .await
            .map(Response::Oplog);
    }
    let mut options = backup_options(&config, &invocation, uri.clone(), deadline);
    // KMS calls go through the function's own AWS configuration, as S3's do, to the key's
    // own region, as the CLI's do.
    options.encrypt = options.encrypt.map(|e| e.with_sdk(&deps.sdk));
    options
        .validate()
        .map_err(|e| HandlerError::from_error(&e, Some(&uri)))?;
    let store = open_store(&config, deadline, deps, &uri).await?;
    let progress = Arc::new(Progress::default());
    let outcome = tokio::select! {
        outcome = backup::run(&options, &store, &progress) => outcome,
        () = stop.cancelled() => Err(Error::Interrupted(
            "stopped by SIGTERM: the backup's upload was aborted and nothing was marked successful".into(),
        )),
    };
    // An abandoned multipart upload is aborted in the background; a frozen container would
    // leave it half done.
    if tokio::time::timeout(SETTLE_LIMIT, store.settle())
        .await
        .is_err()
    {
        tracing::warn!("an unfinished upload could not be aborted in time; a bucket lifecycle rule that aborts incomplete multipart uploads will remove it");
    }
    let outcome = outcome.map_err(|e| HandlerError::from_error(&e, Some(&uri)))?;
    let mut summary = summary(&config, &outcome);
    if let Some(policy) = &config.prune {
        let ours = outcome.manifest.backup_id.parse().ok();
        summary.prune = Some(prune_after_backup(&store, policy, deadline, ours).await);
    }
    Ok(Response::Backup(summary))
}

/// The connection string `source` names: as given, or read from its secret within the
/// deadline.
async fn connection_string<S, M>(
    source: &UriSource,
    step: &str,
    deadline: Option<tokio::time::Instant>,
    deps: &Deps<S, M>,
) -> Result<ConnectionString, HandlerError>
where
    S: SecretSource,
    M: MetricsSink,
{
    match source {
        UriSource::Plain(uri) => Ok(uri.clone()),
        UriSource::Secret { arn } => {
            let value = within(deadline, step, deps.secrets.secret_string(arn)).await??;
            Ok(connection_string_from_secret(arn, &value)?)
        }
    }
}

/// The function's destination, opened within the deadline; errors scrubbed of `uri`.
async fn open_store<S, M>(
    config: &LambdaConfig,
    deadline: Option<tokio::time::Instant>,
    deps: &Deps<S, M>,
    uri: &ConnectionString,
) -> Result<Store, HandlerError> {
    within(
        deadline,
        "opening the destination",
        Store::open_with_sdk_config(&config.destination, &deps.sdk, &config.s3),
    )
    .await?
    .map_err(|e| HandlerError::from_error(&e.into(), Some(uri)))
}

/// Time kept back from a drill's deadline to drop what it restored and store its result.
const DRILL_CLEANUP: Duration = Duration::from_secs(60);

/// `{"action": "drill"}`: a restore drill of the destination's latest (or named) backup into
/// the scratch deployment; content that differs is an error naming the namespaces, so the
/// failure alert carries the drill's result.
async fn drill<S, M>(
    config: &LambdaConfig,
    invocation: &Invocation,
    deadline: Option<tokio::time::Instant>,
    deps: &Deps<S, M>,
    stop: &CancellationToken,
) -> Result<Response, HandlerError>
where
    S: SecretSource,
    M: MetricsSink,
{
    let scratch = match &config.drill {
        None => {
            return Err(Error::invalid(format!(
                "a drill needs a scratch deployment to restore into: set {} (the template's DrillSecretArn) to the secret holding its connection string",
                super::config::DRILL_SECRET_ARN
            ))
            .into())
        }
        Some(source) => {
            connection_string(source, "reading the scratch secret", deadline, deps).await?
        }
    };
    let store = open_store(config, deadline, deps, &scratch).await?;
    let mut options = crate::drill::DrillOptions::new(scratch.clone());
    options.server_selection_timeout = config.connect_timeout;
    options.parallel = config.parallel;
    options.cancel = stop.child_token();
    options.selector = match &invocation.backup_id {
        Some(id) => {
            crate::settings::backup_selector(id).map_err(|e| HandlerError::from_error(&e, None))?
        }
        None => crate::catalog::Selector::Latest,
    };
    options.budget = deadline.map(|at| {
        at.saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(DRILL_CLEANUP)
    });
    if options.budget.is_some_and(|b| b < Duration::from_secs(1)) {
        return Err(Error::Deadline(format!(
            "a drill keeps {} s of the invocation's time to drop what it restored, and less was left: give the function a longer timeout",
            DRILL_CLEANUP.as_secs()
        ))
        .into());
    }
    let report = crate::drill::run(&store, &options)
        .await
        .map_err(|e| HandlerError::from_error(&e, Some(&scratch)))?;
    match report.error() {
        Some(e) => Err(HandlerError::from_error(&e, Some(&scratch))),
        None => Ok(Response::Drill(Box::new(report))),
    }
}

/// `{"action": "oplog"}`: one capture with the function's source, destination and storage
/// settings.
async fn capture<S, M>(
    config: &LambdaConfig,
    uri: ConnectionString,
    deadline: Option<tokio::time::Instant>,
    deps: &Deps<S, M>,
    stop: &CancellationToken,
) -> Result<crate::pitr::CaptureSummary, HandlerError>
where
    S: SecretSource,
    M: MetricsSink,
{
    let options = crate::pitr::CaptureOptions {
        source: SourceOptions {
            uri: uri.clone(),
            read_preference: ReadPreferenceChoice::default(),
            server_selection_timeout: config.connect_timeout,
        },
        s3: config.s3.clone(),
        encrypt: config.encrypt.clone().map(|e| e.with_sdk(&deps.sdk)),
        compression_level: COMPRESSION_LEVEL,
        deadline,
        cancel: stop.clone(),
    };
    let store = open_store(config, deadline, deps, &uri).await?;
    let outcome = crate::pitr::capture::run(&options, &store).await;
    if tokio::time::timeout(SETTLE_LIMIT, store.settle())
        .await
        .is_err()
    {
        tracing::warn!("an unfinished upload could not be aborted in time; a bucket lifecycle rule that aborts incomplete multipart uploads will remove it");
    }
    outcome
        .map(|o| o.summary(&config.destination))
        .map_err(|e| HandlerError::from_error(&e, Some(&uri)))
}

/// What the prune after a backup did. A failure is reported here and in the metrics, never
/// as the invocation's failure: the backup itself succeeded, and a retry would not help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneSummary {
    pub removed: Vec<String>,
    /// Backups the policy removes but S3 Object Lock keeps (never sent a delete).
    pub kept_locked: Vec<String>,
    pub kept: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

async fn prune_after_backup(
    store: &Store,
    policy: &crate::prune::Policy,
    deadline: Option<tokio::time::Instant>,
    protect: Option<crate::layout::BackupId>,
) -> PruneSummary {
    use crate::prune::Outcome;
    let mut summary = PruneSummary {
        removed: Vec::new(),
        kept_locked: Vec::new(),
        kept: 0,
        error: None,
    };
    let result = match within(
        deadline,
        "pruning",
        crate::prune::run(store, policy, true, protect),
    )
    .await
    {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(mut report) => {
            summary.kept = report.keep.len();
            for r in &report.remove {
                match &r.outcome {
                    Outcome::Removed => summary.removed.push(r.id.to_string()),
                    Outcome::Locked { .. } => summary.kept_locked.push(r.id.to_string()),
                    Outcome::Planned | Outcome::Failed { .. } => {}
                }
            }
            summary.error = report.error.take().map(|e| e.to_string());
        }
        Err(e) => summary.error = Some(e),
    }
    match &summary.error {
        Some(e) => {
            tracing::error!(error = %e, removed = summary.removed.len(), "prune after the backup failed; the backup itself succeeded")
        }
        None => tracing::info!(
            removed = summary.removed.len(),
            kept = summary.kept,
            kept_locked = summary.kept_locked.len(),
            "pruned"
        ),
    }
    summary
}

/// Bounds a step before the backup (which has its own deadline) by the run's deadline.
async fn within<T>(
    deadline: Option<tokio::time::Instant>,
    step: &str,
    work: impl std::future::Future<Output = T>,
) -> Result<T, HandlerError> {
    match deadline {
        None => Ok(work.await),
        Some(at) => tokio::time::timeout_at(at, work)
            .await
            .map_err(|_| Error::Deadline(format!("{step} took until the deadline")).into()),
    }
}

fn backup_options(
    config: &LambdaConfig,
    invocation: &Invocation,
    uri: ConnectionString,
    deadline: Option<tokio::time::Instant>,
) -> BackupOptions {
    BackupOptions {
        source: SourceOptions {
            uri,
            read_preference: ReadPreferenceChoice::default(),
            server_selection_timeout: config.connect_timeout,
        },
        filter: NamespaceFilter {
            include: invocation
                .include
                .clone()
                .unwrap_or_else(|| config.include.clone()),
            exclude: invocation
                .exclude
                .clone()
                .unwrap_or_else(|| config.exclude.clone()),
        },
        parallel: invocation.parallel.unwrap_or(config.parallel),
        scheduled_at: invocation.scheduled_at,
        compression_level: COMPRESSION_LEVEL,
        compress_threads: config.compress_threads,
        deadline,
        s3: config.s3.clone(),
        encrypt: config.encrypt.clone(),
        oplog: true,
        allow_inconsistent: config.allow_inconsistent,
        stale_upload_age: config.stale_upload_age,
        allow_empty: invocation.allow_empty.unwrap_or(config.allow_empty),
    }
}

fn summary(config: &LambdaConfig, outcome: &BackupOutcome) -> Summary {
    Summary {
        backup: outcome.summary(&config.destination),
        prune: None,
    }
}

/// When the backup must give up, derived from Lambda's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// The context has no deadline (a direct call outside Lambda).
    None,
    At(tokio::time::Instant),
    /// Less time left than the safety margin: do not start.
    TooLate {
        remaining: Duration,
    },
}

/// Keeps back a tenth of the remaining time, at most 20 s, so the upload can be aborted and
/// the failure reported before Lambda kills the process.
pub fn safety_margin(remaining: Duration) -> Duration {
    (remaining / 10).min(MAX_SAFETY_MARGIN)
}

pub fn run_deadline(lambda_deadline: SystemTime, now: SystemTime) -> Deadline {
    // A real deadline is at most Lambda's 15-minute ceiling away; one further in the past than
    // that is not a point in time (cargo-lambda's emulator sends the timeout, 600000).
    if lambda_deadline
        .checked_add(MAX_LAMBDA_TIMEOUT)
        .is_some_and(|latest| latest < now)
    {
        return Deadline::None;
    }
    let remaining = lambda_deadline
        .duration_since(now)
        .unwrap_or(Duration::ZERO);
    let usable = remaining.saturating_sub(safety_margin(remaining));
    // Below one second nothing useful can be done; a retry with a fresh timeout will.
    if usable < Duration::from_secs(1) {
        return Deadline::TooLate { remaining };
    }
    Deadline::At(tokio::time::Instant::now() + usable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_a_tenth_capped_at_twenty_seconds() {
        assert_eq!(
            safety_margin(Duration::from_secs(900)),
            Duration::from_secs(20)
        );
        assert_eq!(
            safety_margin(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
    }

    #[tokio::test]
    async fn deadline_from_context() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(run_deadline(SystemTime::UNIX_EPOCH, now), Deadline::None);
        assert_eq!(
            run_deadline(SystemTime::UNIX_EPOCH + Duration::from_millis(600_000), now),
            Deadline::None
        );
        assert_eq!(
            run_deadline(now - Duration::from_secs(899), now),
            Deadline::TooLate {
                remaining: Duration::ZERO
            }
        );
        assert_eq!(
            run_deadline(now - Duration::from_secs(1), now),
            Deadline::TooLate {
                remaining: Duration::ZERO
            }
        );
        let before = tokio::time::Instant::now();
        let Deadline::At(at) = run_deadline(now + Duration::from_secs(100), now) else {
            panic!("a deadline 100 s away leaves time to work");
        };
        let after = tokio::time::Instant::now();
        assert!(at >= before + Duration::from_secs(90) && at <= after + Duration::from_secs(90));
    }

    struct FixedSecret(Option<&'static str>);

    impl SecretSource for FixedSecret {
        async fn secret_string(
            &self,
            _arn: &str,
        ) -> Result<crate::secret::Secret<String>, HandlerError> {
            match self.0 {
                Some(v) => Ok(crate::secret::Secret::new(v.to_string())),
                // Stands for a Secrets Manager that never answers.
                None => std::future::pending().await,
            }
        }
    }

    fn deps(secret: Option<&'static str>) -> Deps<FixedSecret, super::super::metrics::Captured> {
        let env = [
            ("NIGHTDUMP_TO", "s3://bkt/p"),
            (
                "NIGHTDUMP_MONGODB_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:m-AbCdEf",
            ),
            ("AWS_LAMBDA_FUNCTION_NAME", "fn"),
        ];
        Deps {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            sdk: aws_config::SdkConfig::builder().build(),
            secrets: FixedSecret(secret),
            metrics: Default::default(),
        }
    }

    fn event(remaining: Duration) -> LambdaEvent<Value> {
        let mut context = lambda_runtime::Context::default();
        let deadline = SystemTime::now() + remaining;
        context.deadline = deadline
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        LambdaEvent::new(serde_json::json!({}), context)
    }

    #[tokio::test]
    async fn a_stuck_step_before_the_backup_ends_at_the_deadline() {
        let deps = deps(None);
        let started = Instant::now();
        let e = handle(event(Duration::from_secs(2)), &deps)
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), "DeadlineReached");
        assert!(e.to_string().contains("reading the secret"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let lines = deps.metrics.lines();
        assert_eq!(lines.len(), 1);
        let record: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(record["BackupSuccess"], 0);
        assert_eq!(record["ErrorType"], "DeadlineReached");
        assert_eq!(record["FunctionName"], "fn");
    }

    #[tokio::test]
    async fn a_secret_that_is_not_a_uri_fails_without_echoing_it() {
        let deps = deps(Some("hunter2"));
        let e = handle(event(Duration::from_secs(60)), &deps)
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), "SecretUnavailable");
        assert!(!e.to_string().contains("hunter2"));
        assert_eq!(deps.metrics.lines().len(), 1);
    }

    #[test]
    fn diagnostic_keeps_the_stable_type_and_scrubs_the_password() {
        let uri = ConnectionString::parse("mongodb://u:pa55word@db:1/").unwrap();
        let e = Error::MongoUnreachable {
            target: "db:1".into(),
            detail: "auth with pa55word\nsecond line".into(),
        };
        let d: lambda_runtime::Diagnostic = HandlerError::from_error(&e, Some(&uri)).into();
        assert_eq!(d.error_type, "MongoUnreachable");
        assert!(!d.error_message.contains("pa55word"), "{}", d.error_message);
        assert!(!d.error_message.contains('\n'));
    }
}
