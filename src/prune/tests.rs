#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use time::macros::datetime;
use time::{Date, OffsetDateTime, Weekday};

use super::*;

fn id(s: &str) -> BackupId {
    BackupId::from_time(crate::layout::parse_time(s).unwrap())
}

fn done(s: &str) -> BackupRef {
    BackupRef {
        id: id(s),
        complete: true,
        newest_object: None,
        group: "full".into(),
    }
}

fn failed(s: &str, written: Option<OffsetDateTime>) -> BackupRef {
    BackupRef {
        id: id(s),
        complete: false,
        newest_object: written,
        group: String::new(),
    }
}

fn kept(plan: &Plan) -> Vec<String> {
    plan.keep.iter().map(|k| k.id.to_string()).collect()
}

fn removed(plan: &Plan) -> Vec<String> {
    plan.remove.iter().map(|r| r.id.to_string()).collect()
}

fn reasons(plan: &Plan, which: &str) -> Vec<String> {
    plan.keep
        .iter()
        .find(|k| k.id.to_string() == which)
        .map(|k| k.reasons.clone())
        .unwrap_or_default()
}

const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

#[test]
fn an_empty_history_plans_nothing() {
    let policy = Policy {
        daily: 7,
        ..Policy::default()
    };
    assert_eq!(plan(&[], &policy, NOW), Plan::default());
}

#[test]
fn a_single_backup_is_kept_by_each_rule() {
    let b = [done("2026-11-25T03:00:00Z")];
    let policy = Policy {
        daily: 7,
        weekly: 4,
        monthly: 12,
        yearly: 1,
        last: 1,
        hourly: 2,
        within: Some("30d".parse().unwrap()),
        ..Policy::default()
    };
    let p = plan(&b, &policy, NOW);
    assert!(p.remove.is_empty());
    assert_eq!(
        reasons(&p, "20261125T030000Z"),
        [
            "within 30d",
            "last",
            "hourly 2026-11-25T03",
            "daily 2026-11-25",
            "weekly 2026-W48",
            "monthly 2026-11",
            "yearly 2026"
        ]
    );
}

#[test]
fn daily_keeps_the_newest_of_each_day() {
    let b = [
        done("2026-11-23T03:00:00Z"),
        done("2026-11-24T03:00:00Z"),
        done("2026-11-24T20:00:00Z"),
        done("2026-11-25T03:00:00Z"),
        done("2026-11-25T15:00:00Z"),
        done("2026-11-22T03:00:00Z"),
    ];
    let policy = Policy {
        daily: 2,
        ..Policy::default()
    };
    let p = plan(&b, &policy, NOW);
    assert_eq!(kept(&p), ["20261125T150000Z", "20261124T200000Z"]);
    assert_eq!(
        removed(&p),
        [
            "20261125T030000Z",
            "20261124T030000Z",
            "20261123T030000Z",
            "20261122T030000Z"
        ]
    );
    assert_eq!(reasons(&p, "20261124T200000Z"), ["daily 2026-11-24"]);
    assert_eq!(p.remove[0].reason, "not kept by any rule");
}

#[test]
fn a_rule_with_count_left_also_keeps_the_oldest_backup() {
    let b = [
        done("2026-11-25T03:00:00Z"),
        done("2026-11-25T09:00:00Z"),
        done("2026-11-25T15:00:00Z"),
    ];
    let policy = Policy {
        daily: 5,
        ..Policy::default()
    };
    let p = plan(&b, &policy, NOW);
    assert_eq!(kept(&p), ["20261125T150000Z", "20261125T030000Z"]);
    assert_eq!(removed(&p), ["20261125T090000Z"]);
    assert_eq!(
        reasons(&p, "20261125T030000Z"),
        ["daily 2026-11-25 (oldest)"]
    );
    // With the count used up, the oldest goes like any other.
    let p = plan(
        &b,
        &Policy {
            daily: 1,
            ..Policy::default()
        },
        NOW,
    );
    assert_eq!(kept(&p), ["20261125T150000Z"]);
}

#[test]
fn keep_last_counts_complete_backups_only() {
    let written = Some(NOW - Duration::from_secs(2 * 86400));
    let b = [
        done("2026-11-20T03:00:00Z"),
        failed("2026-11-21T03:00:00Z", written),
        done("2026-11-22T03:00:00Z"),
        failed("2026-11-23T03:00:00Z", written),
        done("2026-11-24T03:00:00Z"),
        done("2026-11-24T04:00:00Z"),
    ];
    let policy = Policy {
        last: 3,
        ..Policy::default()
    };
    let p = plan(&b, &policy, NOW);
    assert_eq!(
        kept(&p),
        ["20261124T040000Z", "20261124T030000Z", "20261122T030000Z"]
    );
    assert_eq!(
        removed(&p),
        ["20261123T030000Z", "20261121T030000Z", "20261120T030000Z"]
    );
    assert_eq!(
        p.remove[0].reason,
        "incomplete, last written more than 1day ago"
    );
    assert_eq!(reasons(&p, "20261122T030000Z"), ["last"]);
}

#[test]
fn incomplete_backups_within_grace_are_kept_as_possibly_running() {
    let b = [
        done("2026-11-24T03:00:00Z"),
        // Started long ago, but wrote an object an hour ago: may still be running.
        failed(
            "2026-11-20T03:00:00Z",
            Some(NOW - Duration::from_secs(3600)),
        ),
        failed(
            "2026-11-21T03:00:00Z",
            Some(NOW - Duration::from_secs(25 * 3600)),
        ),
        // No object time known: the id's time stands in.
        failed("2026-11-25T11:00:00Z", None),
        failed("2026-11-22T03:00:00Z", None),
    ];
    let policy = Policy {
        last: 1,
        ..Policy::default()
    };
    let p = plan(&b, &policy, NOW);
    assert_eq!(
        kept(&p),
        ["20261125T110000Z", "20261124T030000Z", "20261120T030000Z"]
    );
    assert_eq!(removed(&p), ["20261122T030000Z", "20261121T030000Z"]);
    let shorter = Policy {
        last: 1,
        grace: Duration::from_secs(1800),
        ..Policy::default()
    };
    let p = plan(&b, &shorter, NOW);
    assert_eq!(kept(&p), ["20261124T030000Z"]);
    assert_eq!(
        removed(&p),
        [
            "20261125T110000Z",
            "20261122T030000Z",
            "20261121T030000Z",
            "20261120T030000Z"
        ]
    );
}

#[test]
fn keep_within_is_measured_from_the_clock() {
    let b = [
        done("2026-11-25T03:00:00Z"),
        done("2026-11-24T03:00:00Z"),
        done("2026-11-23T12:00:01Z"),
        done("2026-11-23T03:00:00Z"),
        done("2026-11-01T03:00:00Z"),
        // Newer, but incomplete: kept as possibly running, never counted.
        failed("2026-11-25T11:30:00Z", None),
    ];
    let policy = Policy {
        within: Some("2d".parse().unwrap()),
        ..Policy::default()
    };
    let p = plan(&b, &policy, NOW);
    assert_eq!(
        kept(&p),
        [
            "20261125T113000Z",
            "20261125T030000Z",
            "20261124T030000Z",
            "20261123T120001Z"
        ]
    );
    assert_eq!(removed(&p), ["20261123T030000Z", "20261101T030000Z"]);
    assert_eq!(reasons(&p, "20261124T030000Z"), ["within 2d"]);
}

/// A backup named for a time decades ahead (a typo) does not move the window: the real
/// backups of the last 30 days stay.
#[test]
fn a_future_dated_backup_does_not_push_the_real_ones_out_of_keep_within() {
    let b = [
        done("2062-12-03T03:00:00Z"),
        done("2026-11-25T03:00:00Z"),
        done("2026-11-24T03:00:00Z"),
        done("2026-09-01T03:00:00Z"),
    ];
    let policy = Policy {
        within: Some("30d".parse().unwrap()),
        ..Policy::default()
    };
    let p = plan(&b, &policy, NOW);
    assert_eq!(
        kept(&p),
        ["20621203T030000Z", "20261125T030000Z", "20261124T030000Z"]
    );
    assert_eq!(removed(&p), ["20260901T030000Z"]);
}

/// Filtered backups are counted apart from full ones: a newer one never takes a full
/// backup's place, whatever the rule.
#[test]
fn a_filtered_backup_never_takes_a_full_ones_place() {
    let mut partial = done("2026-11-25T04:00:00Z");
    partial.group = "include admin.*".into();
    let mut empty = done("2026-11-25T05:00:00Z");
    empty.group = "exclude *.*".into();
    let b = [
        empty,
        partial,
        done("2026-11-25T03:00:00Z"),
        done("2026-11-24T03:00:00Z"),
    ];
    for policy in [
        Policy {
            last: 1,
            ..Policy::default()
        },
        Policy {
            daily: 2,
            ..Policy::default()
        },
    ] {
        let p = plan(&b, &policy, NOW);
        let k = kept(&p);
        assert!(
            k.contains(&"20261125T030000Z".to_string()),
            "{policy:?}: {k:?}"
        );
        if policy.daily == 2 {
            assert!(k.contains(&"20261124T030000Z".to_string()), "{k:?}");
        }
        assert!(
            reasons(&p, "20261125T040000Z")[0].ends_with("[include admin.*]"),
            "{:?}",
            reasons(&p, "20261125T040000Z")
        );
    }
}

#[test]
fn weeks_are_iso_weeks_across_the_new_year() {
    // 2026 has 53 ISO weeks: Thursday 31 December and Friday 1 January share week 53.
    let b = [
        done("2026-12-27T03:00:00Z"),
        done("2026-12-28T03:00:00Z"),
        done("2026-12-31T03:00:00Z"),
        done("2027-01-01T03:00:00Z"),
        done("2027-01-04T03:00:00Z"),
    ];
    let policy = Policy {
        weekly: 3,
        ..Policy::default()
    };
    let p = plan(&b, &policy, NOW);
    assert_eq!(
        kept(&p),
        ["20270104T030000Z", "20270101T030000Z", "20261227T030000Z"]
    );
    assert_eq!(reasons(&p, "20270101T030000Z"), ["weekly 2026-W53"]);
    assert_eq!(reasons(&p, "20261227T030000Z"), ["weekly 2026-W52"]);
    assert_eq!(reasons(&p, "20270104T030000Z"), ["weekly 2027-W01"]);
}

#[test]
fn buckets_skip_periods_without_a_backup() {
    let b = [
        done("2026-11-25T03:00:00Z"),
        done("2026-09-14T03:00:00Z"),
        done("2026-09-01T03:00:00Z"),
        done("2026-06-30T03:00:00Z"),
        done("2026-01-02T03:00:00Z"),
    ];
    let policy = Policy {
        monthly: 3,
        ..Policy::default()
    };
    let p = plan(&b, &policy, NOW);
    assert_eq!(
        kept(&p),
        ["20261125T030000Z", "20260914T030000Z", "20260630T030000Z"]
    );
    assert_eq!(reasons(&p, "20260630T030000Z"), ["monthly 2026-06"]);
}

#[test]
fn the_newest_complete_backup_is_kept_by_every_policy() {
    let b = [
        done("2026-11-25T03:00:00Z"),
        done("2026-11-24T03:00:00Z"),
        failed(
            "2026-11-25T04:00:00Z",
            Some(NOW - Duration::from_secs(86400 * 3)),
        ),
    ];
    for policy in [
        Policy {
            last: 1,
            ..Policy::default()
        },
        Policy {
            hourly: 1,
            ..Policy::default()
        },
        Policy {
            yearly: 1,
            ..Policy::default()
        },
        Policy {
            within: Some("1h".parse().unwrap()),
            ..Policy::default()
        },
    ] {
        let p = plan(&b, &policy, NOW);
        assert_eq!(kept(&p), ["20261125T030000Z"], "{policy:?}");
        assert_eq!(
            removed(&p),
            ["20261125T040000Z", "20261124T030000Z"],
            "{policy:?}"
        );
    }
}

#[test]
fn within_spans_parse_like_restic() {
    let w: Within = "1y2m3d4h".parse().unwrap();
    assert_eq!(
        w,
        Within {
            years: 1,
            months: 2,
            days: 3,
            hours: 4
        }
    );
    assert_eq!(w.to_string(), "1y2m3d4h");
    assert_eq!("30d".parse::<Within>().unwrap().to_string(), "30d");
    for bad in ["", "0d", "-1d", "5w", "d", "3", "1.5d", "30 days"] {
        let e = bad.parse::<Within>().unwrap_err();
        assert!(e.contains("30d"), "{bad:?}: {e}");
    }
}

#[test]
fn within_uses_calendar_arithmetic() {
    let one_month: Within = "1m".parse().unwrap();
    // 31 March less a month is "31 February", which carries into 3 March.
    assert_eq!(
        one_month.before(datetime!(2026-03-31 10:00 UTC)),
        datetime!(2026-03-03 10:00 UTC)
    );
    let mixed: Within = "1y1d2h".parse().unwrap();
    assert_eq!(
        mixed.before(datetime!(2026-01-01 01:00 UTC)),
        datetime!(2024-12-30 23:00 UTC)
    );
    let huge: Within = "999999y".parse().unwrap();
    assert!(huge.before(datetime!(2026-01-01 01:00 UTC)) < datetime!(-9000-01-01 0:00 UTC));
}

// The 400-day history, checked against a second implementation that groups by period instead
// of walking: keep the newest backup of each of the N newest periods, plus the oldest backup
// when there are fewer than N periods.

fn iso_week(d: Date) -> (i32, u16) {
    let monday_based = i64::from(d.weekday().number_days_from_monday());
    let thursday = d + time::Duration::days(3 - monday_based);
    (thursday.year(), (thursday.ordinal() - 1) / 7 + 1)
}

type PeriodKey = fn(OffsetDateTime) -> (i32, u32, u32);

fn reference(history: &[BackupRef], counts: [u32; 4]) -> BTreeSet<BackupId> {
    let complete: Vec<BackupId> = history
        .iter()
        .filter(|b| b.complete)
        .map(|b| b.id)
        .collect();
    let keys: [PeriodKey; 4] = [
        |t| (t.year(), t.ordinal().into(), 0),
        |t| {
            let (y, w) = iso_week(t.date());
            (y, w.into(), 0)
        },
        |t| (t.year(), u8::from(t.month()).into(), 0),
        |t| (t.year(), 0, 0),
    ];
    let mut keep = BTreeSet::new();
    for (key, n) in keys.iter().zip(counts) {
        let mut newest: BTreeMap<(i32, u32, u32), BackupId> = BTreeMap::new();
        for id in &complete {
            let e = newest.entry(key(id.time())).or_insert(*id);
            *e = (*e).max(*id);
        }
        keep.extend(newest.values().rev().take(n as usize));
        if newest.len() < n as usize {
            keep.extend(complete.iter().min());
        }
    }
    keep
}

#[test]
fn four_hundred_days_match_the_reference() {
    let start = datetime!(2025-10-22 03:00 UTC);
    let mut history = Vec::new();
    for day in 0..400i64 {
        let t = start + time::Duration::days(day);
        // Two missing stretches of whole weeks (no backups, not even failed ones).
        let d = t.date();
        let missing = (d >= time::macros::date!(2026 - 02 - 02)
            && d < time::macros::date!(2026 - 02 - 23))
            || (d >= time::macros::date!(2026 - 10 - 05)
                && d < time::macros::date!(2026 - 10 - 19));
        if missing {
            continue;
        }
        let id = BackupId::from_time(t);
        if day % 11 == 5 {
            history.push(BackupRef {
                id,
                complete: false,
                newest_object: Some(t + time::Duration::minutes(20)),
                group: "full".into(),
            });
        } else {
            history.push(BackupRef {
                id,
                complete: true,
                newest_object: Some(t + time::Duration::minutes(20)),
                group: "full".into(),
            });
        }
        // Some days have a second, manual backup later on; some of those failed.
        if d.weekday() == Weekday::Wednesday {
            history.push(BackupRef {
                id: BackupId::from_time(t + time::Duration::hours(14)),
                complete: day % 3 != 0,
                newest_object: None,
                group: "full".into(),
            });
        }
    }
    let now = start + time::Duration::days(400);
    let policy = Policy {
        daily: 7,
        weekly: 5,
        monthly: 12,
        yearly: 2,
        ..Policy::default()
    };
    let p = plan(&history, &policy, now);

    let complete_kept: BTreeSet<BackupId> = p
        .keep
        .iter()
        .filter(|k| history.iter().any(|b| b.id == k.id && b.complete))
        .map(|k| k.id)
        .collect();
    assert_eq!(complete_kept, reference(&history, [7, 5, 12, 2]));
    // Incomplete ones here are all older than the grace period but the newest day's.
    let incomplete_kept: Vec<BackupId> = p
        .keep
        .iter()
        .filter(|k| !complete_kept.contains(&k.id))
        .map(|k| k.id)
        .collect();
    assert!(incomplete_kept
        .iter()
        .all(|id| now - id.time() < time::Duration::days(2)));
    assert_eq!(p.keep.len() + p.remove.len(), history.len());
    // 2 yearly + 12 monthly + 5 weekly + 7 daily, overlapping.
    assert!(complete_kept.len() >= 12 && complete_kept.len() <= 26);
    // Twelve months back from November 2026 is December 2025, which is also the newest of
    // 2025 for the yearly rule: nothing older survives.
    let oldest_kept = complete_kept.iter().min().unwrap();
    assert_eq!(oldest_kept.to_string()[..6], *"202512");
}
