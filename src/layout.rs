//! Where a backup's objects live under a destination, and how backups are named.
//!
//! ```text
//! <prefix>/<backup-id>/dump.archive.gz     the archive (gzip; `.age`/`.enc` when encrypted)
//! <prefix>/<backup-id>/manifest.json       written last: the only mark of success
//! <prefix>/latest.json                     the newest successful backup, for monitoring
//! ```
//! A backup id is the UTC time it stands for, `YYYYMMDDTHHMMSSZ`: ids sort by time as strings.
//! A scheduled run derives its id from the schedule's time alone, so a duplicate trigger maps
//! to the same id and cannot create a second backup. A run started by hand adds a random tag,
//! `YYYYMMDDTHHMMSSZ-1a2b3c`, so two runs in the same second never share an id (and one never
//! mistakes the other's backup for its own).

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

/// A backup's name: its UTC time to the second, and for an unscheduled run a random tag.
/// Ordered by time, then tag (untagged first), as the strings sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId {
    time: PrimitiveDateTime,
    tag: Option<u32>,
}

/// Tags are 24 bits, written as 6 lowercase hex digits.
const TAG_MASK: u32 = 0x00ff_ffff;

impl BackupId {
    /// The id a scheduled run of time `t` has: the same for every trigger of that time.
    pub fn from_time(t: OffsetDateTime) -> Self {
        let utc = t.to_offset(UtcOffset::UTC);
        let t = utc.replace_nanosecond(0).unwrap_or(utc);
        Self {
            time: PrimitiveDateTime::new(t.date(), t.time()),
            tag: None,
        }
    }

    /// A fresh id for a run started at `t` by hand: the time and a random tag, so that no
    /// other run, in the same second or not, has it.
    pub fn unscheduled(t: OffsetDateTime) -> Self {
        let mut bytes = [0u8; 4];
        // Without the system's randomness the nanoseconds still differ between runs.
        if getrandom::getrandom(&mut bytes).is_err() {
            bytes = t.nanosecond().to_le_bytes();
        }
        Self {
            tag: Some(u32::from_le_bytes(bytes) & TAG_MASK),
            ..Self::from_time(t)
        }
    }

    pub fn time(&self) -> OffsetDateTime {
        self.time.assume_utc()
    }

    /// Whether the id was derived from a schedule time (no tag).
    pub fn is_scheduled(&self) -> bool {
        self.tag.is_none()
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
        let time = self.time.format(ID_FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&time)?;
        match self.tag {
            Some(tag) => write!(f, "-{tag:06x}"),
            None => Ok(()),
        }
    }
}

impl FromStr for BackupId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("'{s}' is not a backup id: ids look like 20261125T030000Z or 20261125T030000Z-1a2b3c (run `nightdump list` to see them)")
        };
        let (time, tag) = match s.split_once('-') {
            Some((time, tag)) => {
                let well_formed = tag.len() == 6
                    && tag
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !well_formed {
                    return Err(bad());
                }
                (time, Some(u32::from_str_radix(tag, 16).map_err(|_| bad())?))
            }
            None => (s, None),
        };
        let time = PrimitiveDateTime::parse(time, ID_FORMAT).map_err(|_| bad())?;
        Ok(Self { time, tag })
    }
}

/// Parses an RFC 3339 time (`2026-11-25T03:00:00Z`) as given to `--scheduled-at` or in an
/// EventBridge event's `time`.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map_err(|_| format!("'{s}' is not an RFC 3339 time: use e.g. 2026-11-25T03:00:00Z"))
}

/// How far ahead of this machine's clock a schedule time may be: clocks disagree by seconds,
/// never by days. A later time would name a backup that sorts after every real one.
pub const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// Refuses a schedule time in the future (beyond [`MAX_CLOCK_SKEW`]), naming `setting` as the
/// user gave it.
pub fn check_not_future(
    setting: &str,
    t: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), String> {
    if t > now + MAX_CLOCK_SKEW {
        return Err(format!(
            "{setting} {} is in the future (this machine's clock says {}): give the time the backup stands for, at most {} minutes ahead, or leave it out to back up now",
            format_time(t),
            format_time(now.replace_nanosecond(0).unwrap_or(now)),
            MAX_CLOCK_SKEW.whole_minutes()
        ));
    }
    Ok(())
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
    fn unscheduled_ids_never_collide_and_sort_by_time() {
        let t = parse_time("2026-11-25T03:00:00Z").unwrap();
        let ids: std::collections::BTreeSet<String> = (0..200)
            .map(|_| BackupId::unscheduled(t).to_string())
            .collect();
        assert!(ids.len() > 190, "random tags: {}", ids.len());
        let a = BackupId::unscheduled(t);
        let s = a.to_string();
        assert!(s.starts_with("20261125T030000Z-") && s.len() == 23, "{s}");
        assert_eq!(s.parse::<BackupId>().unwrap(), a);
        assert!(!a.is_scheduled() && BackupId::from_time(t).is_scheduled());
        let later = BackupId::from_time(t + time::Duration::seconds(1));
        assert!(a < later && s < later.to_string());
        assert!(BackupId::from_time(t) < a && BackupId::from_time(t).to_string() < s);
        for bad in [
            "20261125T030000Z-",
            "20261125T030000Z-ABCDEF",
            "20261125T030000Z-1234567",
            "20261125T030000Z-12345g",
        ] {
            assert!(bad.parse::<BackupId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn schedule_times_in_the_future_are_refused_beyond_the_skew() {
        let now = parse_time("2026-12-03T03:00:00Z").unwrap();
        assert!(check_not_future("--scheduled-at", now + time::Duration::minutes(4), now).is_ok());
        assert!(check_not_future("--scheduled-at", now - time::Duration::days(400), now).is_ok());
        let err = check_not_future(
            "--scheduled-at",
            parse_time("2099-01-01T00:00:00Z").unwrap(),
            now,
        )
        .unwrap_err();
        assert!(
            err.starts_with("--scheduled-at 2099-01-01T00:00:00Z is in the future"),
            "{err}"
        );
        assert!(check_not_future("x", now + time::Duration::minutes(6), now).is_err());
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
