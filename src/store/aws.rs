//! The one AWS configuration and HTTP client everything shares.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use super::options::S3Options;

/// Connecting should be quick on any network a backup runs on; a dead endpoint must not
/// hold a Lambda invocation for long.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTPS client on rustls with the ring provider (no aws-lc, no OpenSSL), for every AWS SDK
/// client the program builds.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Loads the standard AWS configuration chain (`AWS_*` variables, profiles, web identity,
/// container and instance roles) with our HTTP client; `region` and `endpoint_url` in `s3`
/// override the chain. `AWS_ENDPOINT_URL` is honoured when `endpoint_url` is `None`.
pub async fn load_sdk_config(s3: &S3Options) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(RetryConfig::standard().with_max_attempts(s3.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build(),
        );
    if let Some(region) = &s3.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &s3.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader.load().await
}
