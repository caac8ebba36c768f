//! What the alert topic's subscribers receive when a scheduled run has failed for good.
//!
//! nightdump never sends this itself: the template's `AWS::Lambda::EventInvokeConfig` makes
//! Lambda publish an invocation record to the alert topic once an asynchronous run has
//! failed its last attempt. The record carries the scheduled event as `requestPayload` and
//! the handler's error (`errorType`, `errorMessage`, see [`super::HandlerError`]) as
//! `responsePayload`, so the error message is what tells the reader the cause and the fix.
//! [`failure_record`] builds the same document, so tests can push it through SNS and the
//! documentation can show it.

use lambda_runtime::Diagnostic;
use serde_json::{json, Value};
use time::{OffsetDateTime, UtcOffset};

/// The template invokes and configures the unpublished version.
pub const EXECUTED_VERSION: &str = "$LATEST";

/// The first attempt plus the template's `MaximumRetryAttempts: 2`.
pub const ATTEMPTS: u32 = 3;

/// The invocation record Lambda sends to an on-failure destination after the retries of an
/// asynchronous invocation are exhausted.
///
/// `request_id` is the invocation's request id (the same for every attempt), `function_arn`
/// the unqualified ARN of the function, `at` when the record was sent, `request_payload` the
/// event the schedule delivered and `error` what the handler returned on the last attempt.
/// A function error reported through the Runtime API is `"Unhandled"` in `functionError`,
/// and `statusCode` is that of Lambda's internal invoke, 200, even though the run failed.
pub fn failure_record(
    request_id: &str,
    function_arn: &str,
    at: OffsetDateTime,
    request_payload: &Value,
    error: &Diagnostic,
) -> Value {
    json!({
        "version": "1.0",
        "timestamp": millisecond_timestamp(at),
        "requestContext": {
            "requestId": request_id,
            "functionArn": format!("{function_arn}:{EXECUTED_VERSION}"),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": ATTEMPTS,
        },
        "requestPayload": request_payload,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": EXECUTED_VERSION,
            "functionError": "Unhandled",
        },
        "responsePayload": {
            "errorType": error.error_type,
            "errorMessage": error.error_message,
        },
    })
}

/// `2026-11-25T03:07:41.512Z`: UTC with milliseconds, as Lambda writes it.
fn millisecond_timestamp(at: OffsetDateTime) -> String {
    let t = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn record_carries_the_event_and_the_error() {
        let event = json!({"detail-type": "Scheduled Event", "time": "2026-11-25T03:00:00Z"});
        let error = Diagnostic {
            error_type: "MongoUnreachable".into(),
            error_message: "cannot reach MongoDB at mongodb://db:27017/".into(),
        };
        let record = failure_record(
            "8c1f0a52-0b7e-4d8a-9a43-2f4e5c6d7e8f",
            "arn:aws:lambda:eu-west-1:123456789012:function:nightdump",
            datetime!(2026-11-25 04:07:41.512_999 +01:00),
            &event,
            &error,
        );
        assert_eq!(record["timestamp"], "2026-11-25T03:07:41.512Z");
        assert_eq!(
            record["requestContext"]["functionArn"],
            "arn:aws:lambda:eu-west-1:123456789012:function:nightdump:$LATEST"
        );
        assert_eq!(
            record["requestContext"]["requestId"],
            "8c1f0a52-0b7e-4d8a-9a43-2f4e5c6d7e8f"
        );
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(record["requestPayload"], event);
        assert_eq!(record["responsePayload"]["errorType"], "MongoUnreachable");
        assert_eq!(
            record["responsePayload"]["errorMessage"],
            error.error_message.as_str()
        );
    }

    #[test]
    fn timestamp_keeps_leading_zeros() {
        assert_eq!(
            millisecond_timestamp(datetime!(0999-01-02 03:04:05.006 UTC)),
            "0999-01-02T03:04:05.006Z"
        );
    }
}
