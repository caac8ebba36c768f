//! S3 Object Lock settings: the mode and how long each object of a backup is retained.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use time::OffsetDateTime;

/// The longest retention accepted: S3 allows more, but a typo (`35y` for `35d`) that locks
/// objects in compliance mode for decades cannot be undone by anyone.
pub const MAX_RETAIN_FOR: Duration = Duration::from_secs(10 * 366 * 86_400);

/// S3 Object Lock retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still delete.
    Governance,
    /// Nobody can delete or shorten the retention, not even the root user.
    Compliance,
}

impl LockMode {
    /// The name S3 uses.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_ascii_lowercase())
    }
}

impl FromStr for LockMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "governance" => Ok(LockMode::Governance),
            "compliance" => Ok(LockMode::Compliance),
            other => Err(format!(
                "'{other}' is not an Object Lock mode: use governance or compliance"
            )),
        }
    }
}

/// Object Lock for every object of a backup (archive and manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    /// Each object is retained this long after the backup starts.
    pub retain_for: Duration,
}

impl ObjectLock {
    /// Parses a mode and a retention (`35d`, `12w`, `1y`); `mode_flag` and `retain_flag` name
    /// the settings in errors. Both or neither must be given.
    pub fn parse(
        mode_flag: &str,
        mode: Option<&str>,
        retain_flag: &str,
        retain_for: Option<&str>,
    ) -> Result<Option<ObjectLock>, String> {
        // Each value is checked on its own first, so a misspelt mode is named as such even
        // when the other setting is missing too.
        let mode = mode
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|m| {
                m.parse::<LockMode>()
                    .map_err(|e| format!("{mode_flag}: {e}"))
            })
            .transpose()?;
        let retain_for = retain_for
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|span| {
                humantime::parse_duration(span).map_err(|_| {
                    format!("{retain_flag} '{span}' is not a duration: use e.g. 35d or 12w")
                })
            })
            .transpose()?;
        match (mode, retain_for) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(format!(
                "{mode_flag} needs {retain_flag}: say how long each object is retained, e.g. 35d"
            )),
            (None, Some(_)) => Err(format!(
                "{retain_flag} needs {mode_flag} governance or compliance"
            )),
            (Some(mode), Some(retain_for)) => {
                let lock = ObjectLock { mode, retain_for };
                lock.validate().map_err(|e| format!("{retain_flag}: {e}"))?;
                Ok(Some(lock))
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.retain_for < Duration::from_secs(86_400) {
            return Err(format!(
                "a retention of {} is shorter than the one day S3 Object Lock counts in: use 1d or more",
                humantime::format_duration(self.retain_for)
            ));
        }
        if self.retain_for > MAX_RETAIN_FOR {
            return Err(format!(
                "a retention of {} is longer than 10 years: check the unit (d for days)",
                humantime::format_duration(self.retain_for)
            ));
        }
        Ok(())
    }

    /// The retention of objects of a backup started at `start`, to the second.
    pub fn retention_from(&self, start: OffsetDateTime) -> Retention {
        let until = start + self.retain_for;
        Retention {
            mode: self.mode,
            until: until.replace_nanosecond(0).unwrap_or(until),
        }
    }
}

/// What keeps an object's current version from being deleted: a retention period, a legal
/// hold (which has no end date), both or neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockState {
    pub retention: Option<Retention>,
    pub legal_hold: bool,
}

/// The retention of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub mode: LockMode,
    pub until: OffsetDateTime,
}

impl Retention {
    /// Whether the object is still protected at `now`.
    pub fn active_at(&self, now: OffsetDateTime) -> bool {
        self.until > now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_explain() {
        let lock = ObjectLock::parse(
            "--object-lock",
            Some("Governance"),
            "--retain-for",
            Some("35d"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(lock.mode, LockMode::Governance);
        assert_eq!(lock.retain_for, Duration::from_secs(35 * 86_400));
        assert_eq!(
            ObjectLock::parse("--object-lock", None, "--retain-for", Some(" ")).unwrap(),
            None
        );
        for (mode, span, needle) in [
            (Some("compliance"), None, "needs --retain-for"),
            (None, Some("35d"), "needs --object-lock"),
            (Some("legal"), Some("35d"), "governance or compliance"),
            (Some("legal"), None, "governance or compliance"),
            (None, Some("soon"), "not a duration"),
            (Some("compliance"), Some("soon"), "not a duration"),
            (Some("compliance"), Some("2h"), "one day"),
            (Some("compliance"), Some("35y"), "10 years"),
        ] {
            let err = ObjectLock::parse("--object-lock", mode, "--retain-for", span).unwrap_err();
            assert!(err.contains(needle), "{mode:?} {span:?}: {err}");
        }
    }

    #[test]
    fn retention_counts_from_the_start_to_the_second() {
        let lock = ObjectLock {
            mode: LockMode::Compliance,
            retain_for: Duration::from_secs(2 * 86_400),
        };
        let start = time::macros::datetime!(2026-11-25 03:00:01.750 UTC);
        let r = lock.retention_from(start);
        assert_eq!(r.until, time::macros::datetime!(2026-11-27 03:00:01 UTC));
        assert!(r.active_at(start));
        assert!(!r.active_at(r.until));
        assert_eq!(LockMode::Compliance.to_string(), "compliance");
        assert_eq!(LockMode::Compliance.as_str(), "COMPLIANCE");
    }
}
