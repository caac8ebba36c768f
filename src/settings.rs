//! The one place where a setting's value is checked, whichever front end it came from: a
//! command-line flag (`--sse`), the Lambda's environment (`NIGHTDUMP_SSE`), or a task's. Each
//! front end reads its raw values and calls these with the name the user gave, so a value
//! gets the same verdict everywhere and every error names the setting as it was given.
//!
//! `tests/e2e/settings_parity.rs` holds the list of shared settings with bad values and
//! checks that the CLI and the Lambda refuse each alike.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::namespace::NamespacePattern;
use crate::prune::{Policy, Within};
use crate::store::{Destination, Sse};

pub use crate::backup::MAX_PARALLEL;

/// The shortest grace period accepted. An incomplete backup younger than the grace period may
/// still be running (its archive is stored before its manifest), so a shorter one could delete
/// a backup while it is written; an hour is four times the longest Lambda run.
pub const MIN_GRACE: Duration = Duration::from_secs(3600);

/// How a setting reads with its value: `--sse s3` for a flag, `NIGHTDUMP_SSE=s3` for a
/// variable.
fn with_value(name: &str, value: &str) -> String {
    if name.starts_with("--") {
        format!("{name} {value}")
    } else {
        format!("{name}={value}")
    }
}

/// A span such as `30s`, `26h` or `7d`.
pub fn duration(name: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value.trim()).map_err(|_| {
        Error::invalid(format!(
            "{name} '{value}' is not a duration: use e.g. 30s, 26h or 7d"
        ))
    })
}

/// How long an unreachable server may stall the start. Zero is refused: it would fail every
/// run at once, looking like an unreachable server.
pub fn connect_timeout(name: &str, value: &str) -> Result<Duration> {
    let d = duration(name, value)?;
    if d.is_zero() {
        return Err(Error::invalid(format!(
            "{name} must be longer than 0s: use e.g. 30s"
        )));
    }
    Ok(d)
}

/// Collections read at once (or insert commands in flight).
pub fn parallel(name: &str, value: &str) -> Result<usize> {
    match value.trim().parse::<i64>() {
        Ok(n) if n >= 1 && n <= MAX_PARALLEL as i64 => Ok(n as usize),
        Ok(n) => Err(Error::invalid(format!(
            "{name} must be between 1 and {MAX_PARALLEL}, got {n}"
        ))),
        Err(_) => Err(Error::invalid(format!(
            "{name} '{value}' is not a whole number: give a count from 1 to {MAX_PARALLEL}, e.g. 4"
        ))),
    }
}

/// Threads compressing the archive: 1 to 64.
pub fn compress_threads(name: &str, value: &str) -> Result<usize> {
    use crate::backup::compress::MAX_COMPRESS_THREADS;
    match value.trim().parse::<i64>() {
        Ok(n) if n >= 1 && n <= MAX_COMPRESS_THREADS as i64 => Ok(n as usize),
        _ => Err(Error::invalid(format!(
            "{name} '{value}' is not a thread count: give a whole number from 1 to {MAX_COMPRESS_THREADS}, or leave it out to use every core this process may use"
        ))),
    }
}

/// Namespace patterns (`db.*`, `db.coll`, `*.coll`), each refused on its own.
pub fn patterns<'a>(
    name: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<NamespacePattern>> {
    values
        .into_iter()
        .map(|v| {
            v.parse()
                .map_err(|e: String| Error::invalid(format!("{name}: {e}")))
        })
        .collect()
}

/// A comma-separated list of patterns, as an environment variable holds them; empty items
/// are ignored.
pub fn pattern_list(name: &str, value: &str) -> Result<Vec<NamespacePattern>> {
    patterns(
        name,
        value.split(',').map(str::trim).filter(|p| !p.is_empty()),
    )
}

/// A directory, `file:///path` or `s3://bucket/prefix`.
pub fn destination(name: &str, value: &str) -> Result<Destination> {
    value
        .parse()
        .map_err(|e| Error::invalid(format!("{name}: {e}")))
}

/// Server-side encryption from its mode and KMS key settings (`sse` and `kms` are each a
/// setting's name and value, when given).
pub fn sse(sse: (&str, Option<&str>), kms: (&str, Option<&str>)) -> Result<Sse> {
    let (sse_name, mode) = sse;
    let (kms_name, key) = kms;
    let mode = mode.map(str::trim).filter(|s| !s.is_empty());
    let key = key.map(str::trim).filter(|k| !k.is_empty());
    match (mode, key) {
        (None | Some("none"), None) => Ok(Sse::None),
        (None | Some("kms") | Some("aws:kms"), Some(key)) => Ok(Sse::Kms {
            key_id: Some(key.to_string()),
        }),
        (Some("kms") | Some("aws:kms"), None) => Ok(Sse::Kms { key_id: None }),
        (Some("s3") | Some("AES256"), None) => Ok(Sse::S3),
        (Some(other @ ("none" | "s3" | "AES256")), Some(_)) => Err(Error::invalid(format!(
            "{kms_name} needs {}, not {}: set it to kms or leave out {kms_name}",
            with_value(sse_name, "kms"),
            with_value(sse_name, other)
        ))),
        (Some(other), _) => Err(Error::invalid(format!(
            "unknown {} '{other}': use none, s3 or kms",
            sse_name
        ))),
    }
}

/// An S3 storage class name (`STANDARD`, `STANDARD_IA`, `GLACIER_IR`…).
pub fn storage_class(name: &str, value: &str) -> Result<String> {
    let class = value.trim();
    if class.is_empty() || !class.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        return Err(Error::invalid(format!(
            "{name} '{value}' is not an S3 storage class: use e.g. STANDARD, STANDARD_IA or GLACIER_IR"
        )));
    }
    Ok(class.to_string())
}

/// A multipart part size: bytes, or a number with KiB, MiB or GiB (`16MiB`), within S3's
/// limits (5 MiB to 5 GiB).
pub fn part_size(name: &str, value: &str) -> Result<usize> {
    use crate::store::{MAX_PART_SIZE, MIN_PART_SIZE};
    let v = value.trim();
    let bad = || {
        Error::invalid(format!(
            "{name} '{value}' is not a part size: give bytes or a number with KiB, MiB or GiB, between 5MiB and 5GiB (e.g. 64MiB)"
        ))
    };
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = v.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = usize::try_from(number.checked_mul(scale).ok_or_else(bad)?).map_err(|_| bad())?;
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes)
}

/// A count of 1 or more (a retention rule's).
pub fn count(value: &str) -> Result<u32, String> {
    match value.trim().parse::<i64>() {
        Ok(n) if n >= 1 => u32::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!(
            "{n} keeps nothing: give a count of 1 or more, or leave the option out"
        )),
        Err(_) => Err(format!(
            "'{value}' is not a whole number: give a count such as 7"
        )),
    }
}

/// A `keep-within` span (`30d`, `1y6m`, `36h`).
pub fn span(value: &str) -> Result<Within, String> {
    value.parse()
}

/// The grace period of incomplete backups, at least [`MIN_GRACE`].
pub fn grace(name: &str, value: &str) -> Result<Duration> {
    let grace = duration(name, value)?;
    if grace < MIN_GRACE {
        return Err(Error::invalid(format!(
            "{name}: '{value}' is shorter than 1h and could delete a backup still being written: give 1h or more (the default is 24h)"
        )));
    }
    Ok(grace)
}

/// A retention policy written as the options' names without dashes, comma-separated:
/// `keep-daily=7,keep-weekly=4,keep-monthly=12,keep-within=30d` (and `keep-last`,
/// `keep-hourly`, `keep-yearly`, `grace`), as `NIGHTDUMP_PRUNE` holds it.
pub fn policy(name: &str, spec: &str) -> Result<Policy> {
    let fail = |detail: String| Error::invalid(format!("{name}: {detail}"));
    let mut policy = Policy::default();
    for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            fail(format!(
                "'{item}' is not RULE=VALUE: write e.g. keep-daily=7,keep-weekly=4"
            ))
        })?;
        let (key, value) = (key.trim(), value.trim());
        let n = || count(value).map_err(|e| fail(format!("{key}: {e}")));
        match key {
            "keep-last" => policy.last = n()?,
            "keep-hourly" => policy.hourly = n()?,
            "keep-daily" => policy.daily = n()?,
            "keep-weekly" => policy.weekly = n()?,
            "keep-monthly" => policy.monthly = n()?,
            "keep-yearly" => policy.yearly = n()?,
            "keep-within" => {
                policy.within = Some(span(value).map_err(|e| fail(format!("{key}: {e}")))?)
            }
            "grace" => policy.grace = grace(&format!("{name} grace"), value)?,
            other => {
                return Err(fail(format!(
                    "unknown rule '{other}': use keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly, keep-within or grace"
                )))
            }
        }
    }
    if !policy.has_rule() {
        return Err(fail(
            "no keep rule: give at least one, e.g. keep-daily=7,keep-weekly=4,keep-monthly=12"
                .into(),
        ));
    }
    Ok(policy)
}

/// `FROM=TO` namespace renames (`shop.*=shop_copy.*`), each refused on its own.
pub fn renames<'a>(
    name: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<crate::restore::Rename>> {
    values
        .into_iter()
        .map(|r| {
            r.parse()
                .map_err(|e: String| Error::invalid(format!("{name}: {e}")))
        })
        .collect()
}

/// An oplog time: `SECONDS[:INCREMENT]` (mongorestore's `--oplogLimit`) or RFC 3339.
pub fn oplog_time(name: &str, value: &str) -> Result<bson::Timestamp> {
    crate::restore::parse_oplog_limit(value).map_err(|e| Error::invalid(format!("{name}: {e}")))
}

/// An instant to restore to (inclusive): RFC 3339, or `T:I` as the oplog writes it.
pub fn to_time(name: &str, value: &str) -> Result<bson::Timestamp> {
    crate::chain::parse_to_time(value).map_err(|e| Error::invalid(format!("{name}: {e}")))
}

/// Which backup: an id or `latest`.
pub fn backup_selector(value: &str) -> Result<crate::catalog::Selector> {
    value.parse().map_err(Error::Invalid)
}

/// The newest backup finished at or before an RFC 3339 time.
pub fn backup_at(name: &str, value: &str) -> Result<crate::catalog::Selector> {
    crate::catalog::parse_at(value).map_err(|e| Error::invalid(format!("{name}: {e}")))
}

/// A schedule time (RFC 3339), refused when it is in the future beyond the clock skew.
pub fn schedule_time(name: &str, value: &str) -> Result<time::OffsetDateTime> {
    let t = crate::layout::parse_time(value).map_err(|e| Error::invalid(format!("{name}: {e}")))?;
    crate::layout::check_not_future(name, t, time::OffsetDateTime::now_utc())
        .map_err(Error::Invalid)?;
    Ok(t)
}

/// An on/off setting given as text (`1`/`true`, `0`/`false`, or empty for off).
pub fn switch(name: &str, value: Option<&str>) -> Result<bool> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None | Some("0") | Some("false") => Ok(false),
        Some("1") | Some("true") => Ok(true),
        Some(other) => Err(Error::invalid(format!(
            "{name}='{other}' is not a switch: set it to 1 or 0"
        ))),
    }
}

#[cfg(test)]
mod part_size_tests {
    #[test]
    fn part_sizes_take_units_and_s3_limits() {
        assert_eq!(super::part_size("p", "64MiB").unwrap(), 64 << 20);
        assert_eq!(super::part_size("p", "5242880").unwrap(), 5 << 20);
        assert_eq!(super::part_size("p", "5GiB").unwrap(), 5 << 30);
        for bad in [
            "4MiB",
            "6GiB",
            "ten",
            "16MB",
            "",
            "-8MiB",
            "99999999999999999999GiB",
        ] {
            let e = super::part_size("--part-size", bad)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("--part-size"), "{bad}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_setting_as_given() {
        let flag = connect_timeout("--connect-timeout", "0s").unwrap_err();
        let var = connect_timeout("NIGHTDUMP_CONNECT_TIMEOUT", "0s").unwrap_err();
        assert_eq!(
            flag.to_string(),
            "--connect-timeout must be longer than 0s: use e.g. 30s"
        );
        assert!(var
            .to_string()
            .starts_with("NIGHTDUMP_CONNECT_TIMEOUT must"));
        let e = sse(
            ("NIGHTDUMP_SSE", Some("s3")),
            ("NIGHTDUMP_KMS_KEY_ID", Some("k")),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "NIGHTDUMP_KMS_KEY_ID needs NIGHTDUMP_SSE=kms, not NIGHTDUMP_SSE=s3: set it to kms or leave out NIGHTDUMP_KMS_KEY_ID"
        );
        let e = sse(("--sse", Some("s3")), ("--kms-key-id", Some("k"))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--kms-key-id needs --sse kms, not --sse s3"),
            "{e}"
        );
        assert!(parallel("--parallel", "0").is_err());
        assert!(parallel("NIGHTDUMP_PARALLEL", "65").is_err());
        assert_eq!(parallel("x", " 8 ").unwrap(), 8);
        assert!(storage_class("--storage-class", "standard_ia").is_err());
        assert_eq!(pattern_list("X", " a.b, ,c.*").unwrap().len(), 2);
    }
}
