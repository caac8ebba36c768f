//! Reading the MongoDB connection string from Secrets Manager.

use std::future::Future;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::error::one_line;
use crate::secret::{ConnectionString, Secret};

use super::handler::HandlerError;

/// Where secret values come from; a seam so the handler can be tested without AWS.
pub trait SecretSource: Send + Sync {
    /// The secret's `SecretString`. Errors name the ARN and the fix, never the value.
    fn secret_string(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Secret<String>, HandlerError>> + Send;
}

/// Secrets Manager through one client built per container.
#[derive(Clone, Debug)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        SecretsManager {
            client: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

impl SecretSource for SecretsManager {
    async fn secret_string(&self, arn: &str) -> Result<Secret<String>, HandlerError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| read_error(arn, &e))?;
        match out.secret_string() {
            Some(s) => Ok(Secret::new(s.to_string())),
            None => Err(HandlerError::secret(format!(
                "secret {arn} has no SecretString (binary secrets are not read): store the connection string as text"
            ))),
        }
    }
}

fn read_error<E, R>(arn: &str, error: &SdkError<E, R>) -> HandlerError
where
    E: ProvideErrorMetadata,
{
    let (code, message) = match error {
        SdkError::ServiceError(e) => (
            e.err().code().unwrap_or("Unknown").to_string(),
            e.err().message().unwrap_or("").to_string(),
        ),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            return HandlerError::secret(format!(
                "cannot reach Secrets Manager to read {arn}: check the network (a function in a VPC needs a NAT gateway or a secretsmanager endpoint)"
            ))
        }
        other => ("RequestFailed".to_string(), one_line(&format!("{other}"), 200)),
    };
    let fix = match code.as_str() {
        "ResourceNotFoundException" => {
            "the secret does not exist in this region: check NIGHTDUMP_MONGODB_SECRET_ARN"
        }
        "AccessDeniedException" => {
            "grant the function's role secretsmanager:GetSecretValue on it (and kms:Decrypt on its key)"
        }
        "DecryptionFailure" => "grant the function's role kms:Decrypt on the secret's KMS key",
        "InvalidRequestException" => "the secret may be scheduled for deletion: restore it",
        _ => "check the secret and the function's permissions",
    };
    HandlerError::secret(format!(
        "cannot read secret {arn}: {code}{}: {fix}",
        if message.is_empty() {
            String::new()
        } else {
            format!(" ({})", one_line(&message, 200))
        }
    ))
}

/// A `SecretString` is the connection string itself or JSON `{"uri": "..."}`. Messages
/// describe the shape that was found, never its content.
pub fn connection_string_from_secret(
    arn: &str,
    value: &Secret<String>,
) -> Result<ConnectionString, HandlerError> {
    let text = value.expose().trim();
    const FORMS: &str = "store mongodb://USER:PASSWORD@HOST/ or JSON {\"uri\": \"mongodb://...\"}";
    let uri = if text.starts_with('{') {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text)
        else {
            return Err(HandlerError::secret(format!(
                "secret {arn} looks like JSON but is not a valid JSON object: {FORMS}"
            )));
        };
        match map.get("uri") {
            Some(serde_json::Value::String(uri)) => Secret::new(uri.clone()),
            _ => {
                return Err(HandlerError::secret(format!(
                    "secret {arn} is JSON without a string field \"uri\": {FORMS}"
                )))
            }
        }
    } else {
        Secret::new(text.to_string())
    };
    let uri = uri.expose().trim();
    if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
        return Err(HandlerError::secret(format!(
            "secret {arn} does not hold a MongoDB connection string: {FORMS}"
        )));
    }
    // Past the scheme check, the parser's reasons (no host, malformed) quote nothing.
    ConnectionString::parse(uri).map_err(|e| HandlerError::secret(format!("secret {arn}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:m-AbCdEf";

    fn parse(s: &str) -> Result<ConnectionString, HandlerError> {
        connection_string_from_secret(ARN, &Secret::new(s.to_string()))
    }

    #[test]
    fn plain_and_json_forms() {
        let plain = parse(" mongodb://u:pw1@h:27017/admin \n").unwrap();
        assert_eq!(plain.expose(), "mongodb://u:pw1@h:27017/admin");
        let json =
            parse(r#"{"uri": "mongodb+srv://u:pw2@cluster.example.net/", "note": "x"}"#).unwrap();
        assert_eq!(json.expose(), "mongodb+srv://u:pw2@cluster.example.net/");
    }

    #[test]
    fn bad_secrets_fail_without_echoing() {
        for bad in [
            "hunter2",
            "postgres://u:hunter2@h/",
            r#"{"url": "mongodb://u:hunter2@h/"}"#,
            r#"{"uri": 5, "p": "hunter2"}"#,
            r#"{"uri": "mongodb://u:hunter2@h/""#,
            r#"{"uri": "mongodb://u:hunter2@/"}"#,
            "",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.error_type(), "SecretUnavailable");
            let msg = e.to_string();
            assert!(!msg.contains("hunter2"), "{msg}");
            assert!(msg.contains(ARN), "{msg}");
            assert!(!msg.contains('\n'));
        }
    }
}
