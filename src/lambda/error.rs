//! The error a Lambda invocation returns: a stable `errorType` (alarms, the failure alert
//! and scripts branch on it) and a one-line message without secrets.

use lambda_runtime::Diagnostic;

use crate::error::Error;
use crate::secret::ConnectionString;

/// The error Lambda records: a stable `errorType` and a one-line message without secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    error_type: &'static str,
    message: String,
    /// The CLI's exit code for the same failure; the container task exits with it.
    exit_code: i32,
}

impl HandlerError {
    /// The connection string could not be obtained from Secrets Manager.
    pub fn secret(message: String) -> Self {
        HandlerError {
            error_type: "SecretUnavailable",
            message,
            // Like any other AWS service that refuses or cannot serve what the run needs.
            exit_code: 4,
        }
    }

    /// Wraps a library error, scrubbing what `uri` knows of its secrets as a last guard.
    pub fn from_error(error: &Error, uri: Option<&ConnectionString>) -> Self {
        let text = error.to_string();
        let text = uri.map(|u| u.scrub(&text)).unwrap_or(text);
        HandlerError {
            error_type: error.error_type(),
            message: crate::error::one_line(&text, 1000),
            exit_code: error.exit_code(),
        }
    }

    pub fn error_type(&self) -> &'static str {
        self.error_type
    }

    /// The exit code of the same failure on the command line (see the README's table).
    pub fn exit_code(&self) -> i32 {
        self.exit_code
    }
}

impl From<Error> for HandlerError {
    fn from(error: Error) -> Self {
        HandlerError::from_error(&error, None)
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Diagnostic {
        Diagnostic {
            error_type: error.error_type.to_string(),
            error_message: error.message,
        }
    }
}
