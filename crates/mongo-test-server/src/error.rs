//! Command errors shaped exactly as mongod reports them: `{ok: 0, errmsg, code, codeName}`.

use bson::{rawdoc, RawDocumentBuf};

/// One failed command. `code` and `code_name` must be mongod's own pair
/// (src/mongo/base/error_codes.yml), because drivers and the Database Tools branch on them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code_name} ({code}): {errmsg}")]
pub struct CommandError {
    pub code: i32,
    pub code_name: &'static str,
    pub errmsg: String,
}

impl CommandError {
    pub fn new(code: i32, code_name: &'static str, errmsg: impl Into<String>) -> Self {
        Self {
            code,
            code_name,
            errmsg: errmsg.into(),
        }
    }

    /// The reply document a client sees for this error.
    pub fn to_reply(&self) -> RawDocumentBuf {
        rawdoc! {
            "ok": 0.0,
            "errmsg": self.errmsg.as_str(),
            "code": self.code,
            "codeName": self.code_name,
        }
    }

    pub fn command_not_found(name: &str) -> Self {
        Self::new(59, "CommandNotFound", format!("no such command: '{name}'"))
    }

    pub fn namespace_not_found(errmsg: impl Into<String>) -> Self {
        Self::new(26, "NamespaceNotFound", errmsg)
    }

    pub fn bad_value(errmsg: impl Into<String>) -> Self {
        Self::new(2, "BadValue", errmsg)
    }

    pub fn type_mismatch(errmsg: impl Into<String>) -> Self {
        Self::new(14, "TypeMismatch", errmsg)
    }

    pub fn unauthorized(errmsg: impl Into<String>) -> Self {
        Self::new(13, "Unauthorized", errmsg)
    }
}
