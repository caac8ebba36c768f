//! Makes the SDK's retries visible: a warning per retried attempt, with what went wrong.
//!
//! The SDK retries transient failures (5xx, SlowDown, throttling, connection errors) silently;
//! a backup that only succeeded on the third attempt is worth knowing about.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

#[derive(Debug)]
pub(crate) struct RetryLogger {
    /// Each store has its own client, so the bucket is known here; request URIs do not show
    /// it before endpoint resolution.
    pub(crate) bucket: String,
}

/// What the previous attempt of the current operation ended with.
#[derive(Debug, Clone)]
struct LastAttempt(String);

impl Storable for LastAttempt {
    type Storer = StoreReplace<Self>;
}

impl Intercept for RetryLogger {
    fn name(&self) -> &'static str {
        "nightdump::store::RetryLogger"
    }

    fn read_before_attempt(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        if attempt > 1 {
            let op = cfg.load::<Metadata>().map_or("request", |m| m.name());
            let cause = cfg
                .load::<LastAttempt>()
                .map_or("unknown failure", |l| l.0.as_str());
            // The path names the key; the query and headers are left out.
            let uri = context.request().uri();
            let path = uri.split('?').next().unwrap_or_default();
            tracing::warn!(
                operation = op,
                attempt,
                cause,
                bucket = %self.bucket,
                path,
                "retrying S3 request"
            );
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let cause = match (context.response(), context.output_or_error()) {
            (_, Some(Ok(_))) => return Ok(()),
            (Some(resp), _) if resp.status().is_success() => return Ok(()),
            (Some(resp), _) => format!("HTTP {}", resp.status().as_u16()),
            (None, Some(Err(e))) => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                text
            }
            (None, None) => "no response".to_string(),
        };
        cfg.interceptor_state().store_put(LastAttempt(cause));
        Ok(())
    }
}
