//! Publishing a run's metrics records with `PutMetricData`. Explicit calls rather than
//! embedded metrics in the awslogs stream: a failed publication is seen by the run (and
//! logged), and the path is tested end to end against CloudWatch on moto. The records stay
//! the single description of what a run reports; this module only reads them back.

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use serde_json::Value;

use crate::error::one_line;

/// One namespace's data points from one Embedded Metric Format record.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub namespace: String,
    pub data: Vec<MetricDatum>,
}

/// The data points an EMF record declares: each metric of each directive, with the
/// directive's dimensions and the record's timestamp. A record that is not EMF gives none.
pub fn batches(line: &str) -> Vec<Batch> {
    let Ok(record) = serde_json::from_str::<Value>(line) else {
        return Vec::new();
    };
    let timestamp = record
        .pointer("/_aws/Timestamp")
        .and_then(Value::as_i64)
        .map(DateTime::from_millis);
    let Some(directives) = record
        .pointer("/_aws/CloudWatchMetrics")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    directives
        .iter()
        .filter_map(|directive| {
            let namespace = directive.get("Namespace")?.as_str()?.to_string();
            let dimensions: Vec<Dimension> = directive
                .pointer("/Dimensions/0")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|name| {
                    let value = record.get(name)?.as_str()?;
                    Some(Dimension::builder().name(name).value(value).build())
                })
                .collect();
            let data = directive
                .get("Metrics")?
                .as_array()?
                .iter()
                .filter_map(|metric| {
                    let name = metric.get("Name")?.as_str()?;
                    let value = record.get(name)?.as_f64()?;
                    let unit = metric
                        .get("Unit")
                        .and_then(Value::as_str)
                        .map(StandardUnit::from)
                        .unwrap_or(StandardUnit::None);
                    Some(
                        MetricDatum::builder()
                            .metric_name(name)
                            .value(value)
                            .unit(unit)
                            .set_dimensions(Some(dimensions.clone()))
                            .set_timestamp(timestamp)
                            .build(),
                    )
                })
                .collect();
            Some(Batch { namespace, data })
        })
        .collect()
}

/// Sends every data point of `lines`; the error names the namespace and CloudWatch's reason.
pub async fn publish(
    client: &aws_sdk_cloudwatch::Client,
    lines: &[String],
) -> Result<usize, String> {
    let mut sent = 0;
    for batch in lines.iter().flat_map(|l| batches(l)) {
        let count = batch.data.len();
        client
            .put_metric_data()
            .namespace(&batch.namespace)
            .set_metric_data(Some(batch.data))
            .send()
            .await
            .map_err(|e| {
                let detail = aws_sdk_cloudwatch::error::DisplayErrorContext(&e).to_string();
                one_line(
                    &format!(
                        "could not publish the run's metrics to CloudWatch namespace {}: {detail}; the task role needs cloudwatch:PutMetricData",
                        batch.namespace
                    ),
                    600,
                )
            })?;
        sent += count;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::metrics::RunMetrics;

    #[test]
    fn every_declared_metric_becomes_a_datum_with_the_records_dimension_and_time() {
        let record = RunMetrics {
            success: true,
            duration_seconds: 42.5,
            bytes: 1000,
            documents: 7,
            backup_id: Some("20261207T030000Z".into()),
            error_type: None,
            already_existed: false,
            prune: None,
            deadline_used_percent: Some(12.0),
            latest_update_failed: false,
        }
        .to_emf(
            "nightdump-prod",
            time::macros::datetime!(2026-12-07 03:00:00 UTC),
        );
        let batches = batches(&record);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].namespace, "Nightdump");
        let names: Vec<&str> = batches[0]
            .data
            .iter()
            .filter_map(|d| d.metric_name())
            .collect();
        assert_eq!(
            names,
            [
                "BackupSuccess",
                "BackupDurationSeconds",
                "BackupBytes",
                "BackupDocuments",
                "LatestUpdateFailure",
                "DeadlineUsedPercent"
            ]
        );
        let duration = &batches[0].data[1];
        assert_eq!(duration.value(), Some(42.5));
        assert_eq!(duration.unit(), Some(&StandardUnit::Seconds));
        assert_eq!(duration.timestamp().map(|t| t.secs()), Some(1_796_612_400));
        let dimension = &duration.dimensions()[0];
        assert_eq!(
            (dimension.name(), dimension.value()),
            (Some("FunctionName"), Some("nightdump-prod"))
        );
    }

    #[test]
    fn a_line_that_is_not_emf_gives_nothing() {
        assert!(batches("not json").is_empty());
        assert!(batches(r#"{"level":"INFO"}"#).is_empty());
    }
}
