//! Where a backup's objects live under a destination, and how backups are named.
//!
//! ```text
//! <prefix>/<backup-id>/dump.archive.gz     the archive (gzip; `.age`/`.enc` when encrypted)
//! <prefix>/<backup-id>/manifest.json       written last: the only mark of success
//! <prefix>/latest.json                     the newest successful backup, for monitoring
//! ```
//! A backup id is the UTC time it stands for, `YYYYMMDDTHHMMSSZ`: ids sort by time as strings,
//! and a scheduled run derives its id from the schedule's time, so a duplicate trigger maps to
//! the same id and cannot create a second backup.

use std::fmt;
use std::str::FromStr;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

pub const ARCHIVE_NAME: &str = "dump.archive.gz";
pub const MANIFEST_NAME: &str = "manifest.json";
pub const LATEST_KEY: &str = "latest.json";

const ID_FORMAT: &[time::format_description::FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// A backup's name: its UTC time to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(PrimitiveDateTime);

impl BackupId {
    pub fn from_time(t: OffsetDateTime) -> Self {
        let utc = t.to_offset(UtcOffset::UTC);
        let t = utc.replace_nanosecond(0).unwrap_or(utc);
        Self(PrimitiveDateTime::new(t.date(), t.time()))
    }

    pub fn time(&self) -> OffsetDateTime {
        self.0.assume_utc()
    }

    pub fn archive_key(&self, archive_name: &str) -> String {
        format!("{self}/{archive_name}")
    }

    pub fn manifest_key(&self) -> String {
        format!("{self}/{MANIFEST_NAME}")
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(ID_FORMAT) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for BackupId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PrimitiveDateTime::parse(s, ID_FORMAT)
            .map(Self)
            .map_err(|_| format!("'{s}' is not a backup id: ids look like 20261125T030000Z (run `nightdump list` to see them)"))
    }
}

/// Parses an RFC 3339 time (`2026-11-25T03:00:00Z`) as given to `--scheduled-at` or in an
/// EventBridge event's `time`.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map_err(|_| format!("'{s}' is not an RFC 3339 time: use e.g. 2026-11-25T03:00:00Z"))
}

pub fn format_time(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_sortable() {
        let a = BackupId::from_time(parse_time("2026-11-25T03:00:00.750+01:00").unwrap());
        assert_eq!(a.to_string(), "20261125T020000Z");
        assert_eq!(a.to_string().parse::<BackupId>().unwrap(), a);
        let b = BackupId::from_time(parse_time("2026-12-01T00:00:00Z").unwrap());
        assert!(a < b && a.to_string() < b.to_string());
        assert_eq!(a.manifest_key(), "20261125T020000Z/manifest.json");
    }

    #[test]
    fn bad_ids_and_times_explain_the_form() {
        assert!("latest"
            .parse::<BackupId>()
            .unwrap_err()
            .contains("20261125T030000Z"));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
