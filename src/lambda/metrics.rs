//! One CloudWatch Embedded Metric Format record per run, success or failure: the staleness
//! alarm reads `BackupSuccess`, so a run that prints nothing counts as a failure.

use std::io::Write;
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

pub const NAMESPACE: &str = "Nightdump";

/// What one run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    pub success: bool,
    pub duration_seconds: f64,
    /// Archive bytes stored; 0 when the run failed.
    pub bytes: u64,
    pub documents: u64,
    pub backup_id: Option<String>,
    pub error_type: Option<String>,
    pub already_existed: bool,
    /// The prune after the backup, when a policy is configured and the backup succeeded.
    pub prune: Option<PruneMetrics>,
    /// How much of the invocation's time the run used, when Lambda gave a deadline: the
    /// warning before the wall (the template alarms over 70%).
    pub deadline_used_percent: Option<f64>,
    /// The backup succeeded but `latest.json` was not moved forward (alarmed: the portal's
    /// last success would freeze).
    pub latest_update_failed: bool,
}

/// What the prune after a backup did: `PruneFailure` is alarmed on apart from the backup's
/// own success, which a failed prune does not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneMetrics {
    pub success: bool,
    pub removed: u64,
    /// Backups the policy removes but Object Lock keeps.
    pub locked: u64,
}

impl RunMetrics {
    /// A run that failed with `error_type`: nothing stored, nothing counted.
    pub fn failed(
        error_type: &str,
        duration_seconds: f64,
        deadline_used_percent: Option<f64>,
    ) -> RunMetrics {
        RunMetrics {
            success: false,
            duration_seconds,
            bytes: 0,
            documents: 0,
            backup_id: None,
            error_type: Some(error_type.to_string()),
            already_existed: false,
            prune: None,
            deadline_used_percent,
            latest_update_failed: false,
        }
    }

    /// The EMF record as one JSON line.
    pub fn to_emf(&self, function_name: &str, at: OffsetDateTime) -> String {
        let timestamp_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let mut record = json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": [
                        {"Name": "BackupSuccess", "Unit": "Count"},
                        {"Name": "BackupDurationSeconds", "Unit": "Seconds"},
                        {"Name": "BackupBytes", "Unit": "Bytes"},
                        {"Name": "BackupDocuments", "Unit": "Count"},
                        {"Name": "LatestUpdateFailure", "Unit": "Count"},
                    ],
                }],
            },
            "FunctionName": function_name,
            "BackupSuccess": u8::from(self.success),
            "BackupDurationSeconds": self.duration_seconds,
            "BackupBytes": self.bytes,
            "BackupDocuments": self.documents,
            "AlreadyExisted": self.already_existed,
            "LatestUpdateFailure": u8::from(self.latest_update_failed),
        });
        if let Value::Object(map) = &mut record {
            if let Some(id) = &self.backup_id {
                map.insert("BackupId".into(), Value::String(id.clone()));
            }
            if let Some(t) = &self.error_type {
                map.insert("ErrorType".into(), Value::String(t.clone()));
            }
            if let Some(used) = self.deadline_used_percent {
                if let Some(list) = map
                    .get_mut("_aws")
                    .and_then(|a| a.pointer_mut("/CloudWatchMetrics/0/Metrics"))
                    .and_then(Value::as_array_mut)
                {
                    list.push(json!({"Name": "DeadlineUsedPercent", "Unit": "Percent"}));
                }
                map.insert(
                    "DeadlineUsedPercent".into(),
                    json!((used * 1000.0).round() / 1000.0),
                );
            }
            if let Some(p) = &self.prune {
                if let Some(list) = map
                    .get_mut("_aws")
                    .and_then(|a| a.pointer_mut("/CloudWatchMetrics/0/Metrics"))
                    .and_then(Value::as_array_mut)
                {
                    list.push(json!({"Name": "PruneFailure", "Unit": "Count"}));
                    list.push(json!({"Name": "BackupsPruned", "Unit": "Count"}));
                    list.push(json!({"Name": "BackupsKeptLocked", "Unit": "Count"}));
                }
                map.insert("PruneFailure".into(), json!(u8::from(!p.success)));
                map.insert("BackupsPruned".into(), json!(p.removed));
                map.insert("BackupsKeptLocked".into(), json!(p.locked));
            }
        }
        record.to_string()
    }
}

/// What one oplog capture reports: the oplog alarms read `OplogCaptureSuccess` (a capture
/// that never runs or always fails leaves it missing or 0) and `OplogLagSeconds` (how old
/// the newest stored entry is).
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureMetrics {
    pub success: bool,
    pub duration_seconds: f64,
    pub entries: u64,
    pub bytes: u64,
    /// Only after a capture that stored or found the chain up to date.
    pub lag_seconds: Option<i64>,
    pub error_type: Option<String>,
}

impl CaptureMetrics {
    pub fn to_emf(&self, function_name: &str, at: OffsetDateTime) -> String {
        let mut metrics = vec![
            json!({"Name": "OplogCaptureSuccess", "Unit": "Count"}),
            json!({"Name": "OplogCaptureDurationSeconds", "Unit": "Seconds"}),
            json!({"Name": "OplogEntries", "Unit": "Count"}),
            json!({"Name": "OplogBytes", "Unit": "Bytes"}),
        ];
        let mut values = Map::new();
        values.insert("OplogCaptureSuccess".into(), json!(u8::from(self.success)));
        values.insert(
            "OplogCaptureDurationSeconds".into(),
            json!(self.duration_seconds),
        );
        values.insert("OplogEntries".into(), json!(self.entries));
        values.insert("OplogBytes".into(), json!(self.bytes));
        if let Some(lag) = self.lag_seconds {
            metrics.push(json!({"Name": "OplogLagSeconds", "Unit": "Seconds"}));
            values.insert("OplogLagSeconds".into(), json!(lag.max(0)));
        }
        if let Some(t) = &self.error_type {
            values.insert("ErrorType".into(), Value::String(t.clone()));
        }
        emf_line(function_name, at, metrics, values)
    }
}

/// One restore drill's record: `DrillSuccess` (1 when everything read back matched, 0
/// otherwise; the drill alarms watch it, missing data included), `DrillRestoreSeconds`
/// (the recovery time to expect) and `DrillDurationSeconds`.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillMetrics {
    pub success: bool,
    pub duration_seconds: f64,
    /// Only for a drill that finished its restore.
    pub restore_seconds: Option<f64>,
    pub error_type: Option<String>,
}

impl DrillMetrics {
    pub fn to_emf(&self, function_name: &str, at: OffsetDateTime) -> String {
        let mut metrics = vec![
            json!({"Name": "DrillSuccess", "Unit": "Count"}),
            json!({"Name": "DrillDurationSeconds", "Unit": "Seconds"}),
        ];
        let mut values = Map::new();
        values.insert("DrillSuccess".into(), json!(u8::from(self.success)));
        values.insert("DrillDurationSeconds".into(), json!(self.duration_seconds));
        if let Some(r) = self.restore_seconds {
            metrics.push(json!({"Name": "DrillRestoreSeconds", "Unit": "Seconds"}));
            values.insert("DrillRestoreSeconds".into(), json!(r));
        }
        if let Some(t) = &self.error_type {
            values.insert("ErrorType".into(), Value::String(t.clone()));
        }
        emf_line(function_name, at, metrics, values)
    }
}

/// One EMF record as a JSON line: the envelope declaring `metrics` in the `Nightdump`
/// namespace under the `FunctionName` dimension, then `values`.
fn emf_line(
    function_name: &str,
    at: OffsetDateTime,
    metrics: Vec<Value>,
    values: Map<String, Value>,
) -> String {
    let timestamp_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut record = Map::new();
    record.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["FunctionName"]],
                "Metrics": metrics,
            }],
        }),
    );
    record.insert("FunctionName".into(), json!(function_name));
    record.extend(values);
    Value::Object(record).to_string()
}

/// Where EMF lines go: stdout in Lambda, a buffer in tests.
pub trait MetricsSink: Send + Sync {
    fn emit(&self, line: &str);
}

/// Prints each record as one line on stdout, where Lambda's log capture picks EMF up.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stdout;

impl MetricsSink for Stdout {
    fn emit(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            tracing::error!("could not write the metrics record to stdout");
        }
    }
}

/// Keeps the lines it is given (for tests and for callers that forward them elsewhere).
#[derive(Debug, Default)]
pub struct Captured(Mutex<Vec<String>>);

impl Captured {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl MetricsSink for Captured {
    fn emit(&self, line: &str) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_record_declares_every_metric_under_the_function_dimension() {
        let m = RunMetrics {
            success: false,
            duration_seconds: 12.5,
            bytes: 0,
            documents: 0,
            backup_id: Some("20261125T030000Z".into()),
            error_type: Some("MongoUnreachable".into()),
            already_existed: false,
            prune: None,
            deadline_used_percent: Some(71.25),
            latest_update_failed: false,
        };
        let at = time::macros::datetime!(2026-11-25 03:00:01.250 UTC);
        let line = m.to_emf("nightdump-prod", at);
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_795_575_601_250_i64);
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Nightdump");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(v[name].is_number(), "{name} has no value");
        }
        assert_eq!(v["FunctionName"], "nightdump-prod");
        assert_eq!(v["BackupSuccess"], 0);
        assert_eq!(v["BackupDurationSeconds"], 12.5);
        assert_eq!(v["ErrorType"], "MongoUnreachable");
        assert_eq!(v["DeadlineUsedPercent"], 71.25);
        assert!(v.get("PruneFailure").is_none());
    }

    #[test]
    fn a_capture_reports_its_own_metrics_and_never_backup_success() {
        let m = CaptureMetrics {
            success: true,
            duration_seconds: 0.5,
            entries: 12,
            bytes: 3400,
            lag_seconds: Some(4),
            error_type: None,
        };
        let v: Value = serde_json::from_str(&m.to_emf("f", OffsetDateTime::UNIX_EPOCH)).unwrap();
        for metric in v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            let name = metric["Name"].as_str().unwrap();
            assert!(v[name].is_number(), "{name} has no value");
        }
        assert_eq!(v["OplogLagSeconds"], 4);
        assert!(v.get("BackupSuccess").is_none());
        let failed = CaptureMetrics {
            success: false,
            lag_seconds: None,
            error_type: Some("OplogGap".into()),
            ..m
        };
        let v: Value =
            serde_json::from_str(&failed.to_emf("f", OffsetDateTime::UNIX_EPOCH)).unwrap();
        assert_eq!(v["OplogCaptureSuccess"], 0);
        assert!(v.get("OplogLagSeconds").is_none());
        assert_eq!(v["ErrorType"], "OplogGap");
    }

    #[test]
    fn a_prune_adds_its_own_metrics() {
        let m = RunMetrics {
            success: true,
            duration_seconds: 1.0,
            bytes: 10,
            documents: 1,
            backup_id: None,
            error_type: None,
            already_existed: false,
            prune: Some(PruneMetrics {
                success: false,
                removed: 2,
                locked: 1,
            }),
            deadline_used_percent: None,
            latest_update_failed: true,
        };
        let v: Value = serde_json::from_str(&m.to_emf("f", OffsetDateTime::UNIX_EPOCH)).unwrap();
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for name in ["PruneFailure", "BackupsPruned", "BackupsKeptLocked"] {
            assert!(names.contains(&name), "{names:?}");
        }
        assert_eq!(v["BackupSuccess"], 1);
        assert_eq!(v["PruneFailure"], 1);
        assert_eq!(v["BackupsPruned"], 2);
        assert_eq!(v["BackupsKeptLocked"], 1);
        assert_eq!(v["LatestUpdateFailure"], 1);
    }
}
