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
}

impl HandlerError {
    /// The connection string could not be obtained from Secrets Manager.
    pub fn secret(message: String) -> Self {
        HandlerError {
            error_type: "SecretUnavailable",
            message,
        }
    }

    /// Wraps a library error, scrubbing what `uri` knows of its secrets as a last guard.
    pub fn from_error(error: &Error, uri: Option<&ConnectionString>) -> Self {
        let text = error.to_string();
        let text = uri.map(|u| u.scrub(&text)).unwrap_or(text);
        HandlerError {
            error_type: error.error_type(),
            message: crate::error::one_line(&text, 1000),
        }
    }

    pub fn error_type(&self) -> &'static str {
        self.error_type
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
