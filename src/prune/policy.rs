//! Which backups a retention policy keeps: restic's `forget` rules, over backup ids.
//!
//! Complete backups are walked newest first. Each counted rule (`last`, `hourly`, `daily`,
//! `weekly`, `monthly`, `yearly`) keeps a backup when its period (UTC; ISO weeks) differs from
//! the period of the last backup that rule kept, until its count is used up; like restic, a
//! rule with count left also keeps the oldest backup, so a young history is not cut short.
//! `within` keeps every backup newer than now less the duration (measured from the clock, so
//! a backup named for a future time cannot push every real one out of the window). A backup
//! kept by any rule is kept. Backups are grouped by selection, as restic groups snapshots by
//! host and paths: full backups and each set of include/exclude patterns are counted apart, so
//! a filtered backup never takes a full one's place. Incomplete backups are never counted: they
//! are removed once their newest object is older than the grace period (a younger one may be a
//! run in progress).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime};

use crate::layout::BackupId;

/// One backup as found at the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRef {
    pub id: BackupId,
    /// Has a manifest: the backup finished.
    pub complete: bool,
    /// When its newest object was written, if the destination says.
    pub newest_object: Option<OffsetDateTime>,
    /// The selection it was made with (`full`, or its patterns): rules count each apart.
    pub group: String,
}

/// A `--keep-within` span in restic's form: `1y2m3d4h` (calendar years, months, days; hours).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Within {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Within {
    /// `t` less this span, with calendar arithmetic that carries an overflowing day into the
    /// next month (31 March less one month is 3 March), as restic does.
    pub fn before(&self, t: OffsetDateTime) -> OffsetDateTime {
        self.try_before(t)
            .unwrap_or(PrimitiveDateTime::MIN.assume_utc())
    }

    fn try_before(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let months = i64::from(t.year()) * 12 + i64::from(u8::from(t.month()))
            - 1
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = i32::try_from(months.div_euclid(12)).ok()?;
        let month = Month::try_from(u8::try_from(months.rem_euclid(12) + 1).ok()?).ok()?;
        let first = Date::from_calendar_date(year, month, 1).ok()?;
        let date = first.checked_add(time::Duration::days(
            i64::from(t.day()) - 1 - i64::from(self.days),
        ))?;
        PrimitiveDateTime::new(date, t.time())
            .assume_utc()
            .checked_sub(time::Duration::hours(i64::from(self.hours)))
    }
}

impl FromStr for Within {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("'{s}' is not a retention span: use whole numbers with y, m, d or h, e.g. 30d, 1y6m or 36h")
        };
        let mut w = Within::default();
        let mut digits = String::new();
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: u32 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            let slot = match c {
                'y' => &mut w.years,
                'm' => &mut w.months,
                'd' => &mut w.days,
                'h' => &mut w.hours,
                _ => return Err(bad()),
            };
            *slot = slot.checked_add(n).ok_or_else(bad)?;
        }
        if !digits.is_empty() || w == Within::default() {
            return Err(
                if w == Within::default() && digits.is_empty() && !s.trim().is_empty() {
                    format!("'{s}' is an empty span: keep-within needs a span longer than zero, e.g. 30d")
                } else {
                    bad()
                },
            );
        }
        Ok(w)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// What to keep. Counts of 0 mean the rule is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<Within>,
    /// How old an incomplete backup's newest object must be before it is removed.
    pub grace: Duration,
}

pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

impl Default for Policy {
    fn default() -> Self {
        Policy {
            last: 0,
            hourly: 0,
            daily: 0,
            weekly: 0,
            monthly: 0,
            yearly: 0,
            within: None,
            grace: DEFAULT_GRACE,
        }
    }
}

impl Policy {
    /// Whether any keep rule is set: an empty policy would remove everything but the newest.
    pub fn has_rule(&self) -> bool {
        self.last > 0
            || self.hourly > 0
            || self.daily > 0
            || self.weekly > 0
            || self.monthly > 0
            || self.yearly > 0
            || self.within.is_some()
    }
}

/// A kept backup and every rule that keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    #[serde(serialize_with = "super::serialize_id")]
    pub id: BackupId,
    pub reasons: Vec<String>,
}

/// A backup to remove and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    #[serde(serialize_with = "super::serialize_id")]
    pub id: BackupId,
    pub reason: String,
}

/// Every backup given to [`plan`], each in exactly one list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub keep: Vec<Kept>,
    pub remove: Vec<Removal>,
}

#[derive(Clone, Copy)]
enum Period {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    /// The period a time falls in, named as it is shown in reasons; for `Last`, every backup
    /// is its own period.
    fn of(self, t: OffsetDateTime, nr: usize) -> String {
        let d = t.date();
        match self {
            Period::Last => format!("#{}", nr + 1),
            Period::Hourly => format!(
                "{:04}-{:02}-{:02}T{:02}",
                d.year(),
                u8::from(d.month()),
                d.day(),
                t.hour()
            ),
            Period::Daily => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
            Period::Weekly => {
                let (year, week, _) = d.to_iso_week_date();
                format!("{year:04}-W{week:02}")
            }
            Period::Monthly => format!("{:04}-{:02}", d.year(), u8::from(d.month())),
            Period::Yearly => format!("{:04}", d.year()),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Period::Last => "last",
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }
}

/// The rules applied to one group's complete backups, newest first: each backup's reasons.
fn group_reasons(
    complete: &[&BackupRef],
    policy: &Policy,
    now: OffsetDateTime,
) -> Vec<(BackupId, Vec<String>)> {
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); complete.len()];
    if let Some(within) = policy.within {
        let cutoff = within.before(now);
        for (nr, b) in complete.iter().enumerate() {
            if b.id.time() > cutoff {
                reasons[nr].push(format!("within {within}"));
            }
        }
    }

    let rules = [
        (Period::Last, policy.last),
        (Period::Hourly, policy.hourly),
        (Period::Daily, policy.daily),
        (Period::Weekly, policy.weekly),
        (Period::Monthly, policy.monthly),
        (Period::Yearly, policy.yearly),
    ];
    for (period, count) in rules {
        let mut left = count;
        let mut last: Option<String> = None;
        for (nr, b) in complete.iter().enumerate() {
            if left == 0 {
                break;
            }
            let key = period.of(b.id.time(), nr);
            let oldest = nr + 1 == complete.len();
            if last.as_deref() != Some(key.as_str()) {
                reasons[nr].push(match period {
                    Period::Last => "last".to_string(),
                    _ => format!("{} {key}", period.label()),
                });
            } else if oldest {
                reasons[nr].push(format!("{} {key} (oldest)", period.label()));
            } else {
                continue;
            }
            last = Some(key);
            left -= 1;
        }
    }

    // No rule set can drop a group's newest complete backup: a restore must always have one.
    if let Some(first) = reasons.first_mut() {
        if first.is_empty() {
            first.push("newest complete".to_string());
        }
    }
    complete.iter().map(|b| b.id).zip(reasons).collect()
}

/// Decides what to keep and what to remove. Pure: `now` measures `within` and ages
/// incomplete backups.
pub fn plan(backups: &[BackupRef], policy: &Policy, now: OffsetDateTime) -> Plan {
    let mut sorted: Vec<&BackupRef> = backups.iter().collect();
    sorted.sort_by_key(|b| std::cmp::Reverse(b.id));
    sorted.dedup_by(|a, b| a.id == b.id);

    let complete: Vec<&BackupRef> = sorted.iter().copied().filter(|b| b.complete).collect();
    let mut groups: std::collections::BTreeMap<&str, Vec<&BackupRef>> = Default::default();
    for b in &complete {
        groups.entry(b.group.as_str()).or_default().push(b);
    }
    let several = groups.len() > 1;
    let mut reasons: std::collections::BTreeMap<BackupId, Vec<String>> = Default::default();
    for (group, members) in groups {
        for (id, mut r) in group_reasons(&members, policy, now) {
            if several && !r.is_empty() && group != "full" {
                r = r.into_iter().map(|x| format!("{x} [{group}]")).collect();
            }
            reasons.insert(id, r);
        }
    }
    let mut by_id = reasons;
    let mut out = Plan::default();
    for b in sorted {
        if b.complete {
            let r = by_id.remove(&b.id).unwrap_or_default();
            if r.is_empty() {
                out.remove.push(Removal {
                    id: b.id,
                    reason: "not kept by any rule".into(),
                });
            } else {
                out.keep.push(Kept {
                    id: b.id,
                    reasons: r,
                });
            }
            continue;
        }
        let written = b.newest_object.unwrap_or_else(|| b.id.time());
        let age = now - written;
        let grace = humantime::format_duration(policy.grace);
        if age > policy.grace {
            out.remove.push(Removal {
                id: b.id,
                reason: format!("incomplete, last written more than {grace} ago"),
            });
        } else {
            out.keep.push(Kept {
                id: b.id,
                reasons: vec![format!(
                    "incomplete, last written within {grace}: may be running"
                )],
            });
        }
    }
    out
}
