//! mongod's error codes and messages for the engine's commands (error_codes.yml names).

use crate::error::CommandError;

pub fn bad_value(msg: impl Into<String>) -> CommandError {
    CommandError::bad_value(msg)
}

pub fn type_mismatch(msg: impl Into<String>) -> CommandError {
    CommandError::type_mismatch(msg)
}

pub fn failed_to_parse(msg: impl Into<String>) -> CommandError {
    CommandError::new(9, "FailedToParse", msg)
}

pub fn invalid_namespace(msg: impl Into<String>) -> CommandError {
    CommandError::new(73, "InvalidNamespace", msg)
}

pub fn invalid_options(msg: impl Into<String>) -> CommandError {
    CommandError::new(72, "InvalidOptions", msg)
}

pub fn namespace_exists(ns: &str) -> CommandError {
    CommandError::new(
        48,
        "NamespaceExists",
        format!("Collection {ns} already exists."),
    )
}

pub fn ns_not_found() -> CommandError {
    CommandError::namespace_not_found("ns not found")
}

pub fn ns_does_not_exist(ns: &str) -> CommandError {
    CommandError::namespace_not_found(format!("ns does not exist: {ns}"))
}

pub fn cursor_not_found(id: i64) -> CommandError {
    CommandError::new(43, "CursorNotFound", format!("cursor id {id} not found"))
}

pub fn query_plan_killed(msg: impl Into<String>) -> CommandError {
    CommandError::new(175, "QueryPlanKilled", msg)
}

pub fn capped_position_lost(msg: impl Into<String>) -> CommandError {
    CommandError::new(136, "CappedPositionLost", msg)
}

pub fn index_not_found(msg: impl Into<String>) -> CommandError {
    CommandError::new(27, "IndexNotFound", msg)
}

pub fn index_options_conflict(msg: impl Into<String>) -> CommandError {
    CommandError::new(85, "IndexOptionsConflict", msg)
}

pub fn index_key_specs_conflict(msg: impl Into<String>) -> CommandError {
    CommandError::new(86, "IndexKeySpecsConflict", msg)
}

pub fn not_supported_on_view(msg: impl Into<String>) -> CommandError {
    CommandError::new(166, "CommandNotSupportedOnView", msg)
}

pub fn immutable_field(msg: impl Into<String>) -> CommandError {
    CommandError::new(66, "ImmutableField", msg)
}

pub fn conflicting_update(msg: impl Into<String>) -> CommandError {
    CommandError::new(40, "ConflictingUpdateOperators", msg)
}

pub fn illegal_operation(msg: impl Into<String>) -> CommandError {
    CommandError::new(20, "IllegalOperation", msg)
}

pub fn location(code: i32, msg: impl Into<String>) -> CommandError {
    CommandError::new(code, "Location", msg)
}

/// Codes that travel inside `writeErrors` rather than as a command failure.
pub const DUPLICATE_KEY: i32 = 11000;
pub const DOCUMENT_VALIDATION_FAILURE: i32 = 121;

pub fn namespace_not_found_ns(ns: &str) -> CommandError {
    CommandError::namespace_not_found(format!("ns not found {ns}"))
}
