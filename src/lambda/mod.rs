//! The AWS Lambda function: the same binary as the CLI, serving Lambda's Runtime API when
//! `AWS_LAMBDA_RUNTIME_API` is set.
//!
//! Configuration comes from the environment the template sets ([`config`]), the payload is a
//! scheduled event or a manual run's overrides ([`event`]), the connection string is read
//! from Secrets Manager on every run ([`secrets`]), and every run prints one CloudWatch
//! Embedded Metric Format record ([`metrics`]). [`handler::handle`] is a plain function over
//! small seams, so tests call it directly.

pub mod config;
pub mod destination;
pub mod error;
pub mod event;
pub mod handler;
pub mod metrics;
pub mod secrets;

pub use handler::{handle, handle_payload, handle_until, Deps, HandlerError, Response, Summary};

use lambda_runtime::{service_fn, LambdaEvent};

use crate::store::{load_sdk_config, S3Options};

/// Serves invocations until the runtime stops. The AWS configuration and the Secrets
/// Manager client are built once here and shared by every invocation of this container.
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    let sdk = load_sdk_config(&S3Options::default()).await;
    let deps = Deps {
        // `vars()` would panic on a non-UTF-8 variable; such a variable is none of ours.
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
        secrets: secrets::SecretsManager::new(&sdk),
        sdk,
        metrics: metrics::Stdout,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<event::Payload>| async move { handle_payload(event, deps).await },
    ))
    .await
}
