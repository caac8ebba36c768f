//! Object keys: "/"-separated, relative to the destination's root or prefix.
//!
//! The same rules hold for every backend so that a key that works locally works on S3 and
//! cannot escape the destination directory.

use crate::error::StoreError;

/// Checks that `key` names an object inside the destination.
pub(crate) fn validate(key: &str) -> Result<(), StoreError> {
    let fail = |reason| {
        Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return fail("empty key");
    }
    if key.starts_with('/') {
        return fail("keys are relative and must not start with '/'");
    }
    if key.len() > 900 {
        return fail("longer than 900 bytes");
    }
    for segment in key.split('/') {
        match segment {
            "" => return fail("empty path segment"),
            "." | ".." => return fail("\".\" and \"..\" segments are not allowed"),
            _ if segment.contains('\\') => return fail("backslashes are not allowed"),
            _ if segment.chars().any(char::is_control) => {
                return fail("control characters are not allowed")
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a listing prefix: like a key, but it may be empty or end in '/'.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return if prefix.is_empty() {
            Ok(())
        } else {
            Err(StoreError::InvalidKey {
                key: prefix.to_string(),
                reason: "a prefix must not start with '/'",
            })
        };
    }
    validate(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in [
            "a",
            "a/b/c.json",
            "2024-01-01T00:00:00Z/dump.archive.gz",
            "a b/c",
        ] {
            assert!(validate(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a//b", "a/", "../a", "a/./b", "a\\b", "a\nb"] {
            let err = validate(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidKey { .. }),
                "{bad}: {err:?}"
            );
        }
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("a/").is_ok());
        assert!(validate_prefix("a/b").is_ok());
        assert!(validate_prefix("/").is_err());
        assert!(validate_prefix("../").is_err());
    }
}
