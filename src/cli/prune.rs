//! `nightdump prune`'s options and output.

use std::io::Write;

use clap::Args;

use super::{open_store, FromArgs};
use nightdump::error::{Error, Result};
use nightdump::prune::{Outcome, Policy, PruneReport, Within};
use nightdump::settings::{count, grace, span};

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub from: FromArgs,
    /// Keep the N newest complete backups.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = count)]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the N newest hours (UTC) that have one.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = count)]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the N newest days (UTC) that have one.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = count)]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the N newest ISO weeks that have one.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = count)]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the N newest months that have one.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = count)]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the N newest years that have one.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = count)]
    pub keep_yearly: Option<u32>,
    /// Keep every backup newer than the newest one less this span (y, m, d, h: e.g. 30d, 1y6m).
    #[arg(long, value_name = "SPAN", allow_hyphen_values = true, value_parser = span)]
    pub keep_within: Option<Within>,
    /// Remove incomplete backups only when their newest object is older than this (a younger
    /// one may be a run in progress).
    #[arg(long, default_value = "24h")]
    pub grace: String,
    /// Delete what the plan removes; without it, only print the plan.
    #[arg(long)]
    pub yes: bool,
    /// Print the plan or result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl PruneArgs {
    pub fn policy(&self) -> Result<Policy> {
        let grace = grace("--grace", &self.grace)?;
        let policy = Policy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
            within: self.keep_within,
            grace,
        };
        if !policy.has_rule() {
            return Err(Error::invalid(
                "prune needs at least one keep rule: pass e.g. --keep-daily 7 --keep-weekly 5 --keep-monthly 12",
            ));
        }
        Ok(policy)
    }
}

pub async fn run(args: PruneArgs) -> Result<()> {
    let policy = args.policy()?;
    let store = open_store("--from", &args.from.from, &args.from.store).await?;
    let mut report = nightdump::prune::run(&store, &policy, args.yes, None).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        super::write_json(&mut out, &report);
    } else {
        write_text(&mut out, &report).ok();
    }
    match report.error.take() {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn write_text(out: &mut impl Write, report: &PruneReport) -> std::io::Result<()> {
    if report.keep.is_empty() && report.remove.is_empty() {
        return writeln!(out, "no backups at {}", report.destination);
    }
    let mut rows: Vec<(String, String)> = Vec::new();
    for k in &report.keep {
        let what = match k.reasons.as_slice() {
            [only] if only.starts_with("locked") => format!("kept: {only}"),
            reasons => format!("keep    {}", reasons.join(", ")),
        };
        rows.push((k.id.to_string(), what));
    }
    for r in &report.remove {
        let what = match &r.outcome {
            Outcome::Planned => format!("remove  {}", r.reason),
            Outcome::Removed => format!("removed {}", r.reason),
            Outcome::Locked { detail } => format!("kept: locked ({detail})"),
            Outcome::Failed { detail } => format!("FAILED  {detail}"),
        };
        if !matches!(r.outcome, Outcome::Locked { .. }) {
            rows.push((r.id.to_string(), what));
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    for (id, what) in rows {
        writeln!(out, "{id:<18} {what}")?;
    }
    for key in &report.foreign {
        writeln!(out, "left in place (not written by nightdump): {key}")?;
    }
    let verb = if report.applied {
        "removed"
    } else {
        "would remove"
    };
    if !report.slices.removed.is_empty() {
        writeln!(
            out,
            "oplog slices: {verb} {} that no kept backup needs (oldest {}); {} kept",
            report.slices.removed.len(),
            report.slices.removed[0],
            report.slices.kept
        )?;
    }
    for dir in &report.slices.kept_locked {
        writeln!(out, "oplog slice {dir} kept: locked")?;
    }
    if !report.slices.leftovers.is_empty() {
        writeln!(
            out,
            "oplog: {verb} {} objects of failed captures",
            report.slices.leftovers.len()
        )?;
    }
    if report.aborted_uploads > 0 {
        writeln!(
            out,
            "aborted {} unfinished uploads of killed runs",
            report.aborted_uploads
        )?;
    }
    // A locked backup is listed among the kept ones, not counted as a removal too.
    let removing = report
        .remove
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Locked { .. }))
        .count();
    if report.applied {
        let done = report
            .remove
            .iter()
            .filter(|r| r.outcome == Outcome::Removed)
            .count();
        writeln!(
            out,
            "removed {done} of {removing} backups; {} kept",
            report.keep.len()
        )
    } else {
        writeln!(
            out,
            "dry run: {removing} backups would be removed, {} kept; pass --yes to remove them",
            report.keep.len()
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<super::PruneArgs, String> {
        let mut argv = vec!["nightdump", "prune", "--from", "/tmp/b"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Prune(p),
                ..
            }) => Ok(p),
            Ok(other) => panic!("parsed as {other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn counts_and_spans_are_validated() {
        let p = parse(&["--keep-daily", "7", "--keep-within", "30d", "--yes"]).unwrap();
        let policy = p.policy().unwrap();
        assert_eq!(policy.daily, 7);
        assert_eq!(policy.within.unwrap().to_string(), "30d");
        assert_eq!(policy.grace, nightdump::prune::DEFAULT_GRACE);
        assert!(p.yes);
        for (args, needle) in [
            (["--keep-daily", "0"], "1 or more"),
            (["--keep-daily", "-3"], "1 or more"),
            (["--keep-weekly", "many"], "not a whole number"),
            (["--keep-within", "0d"], "longer than zero"),
            (["--keep-within", "soon"], "30d"),
        ] {
            let e = parse(&args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn a_locked_backup_prints_as_kept_with_its_date() {
        use nightdump::prune::{Kept, Outcome, PruneReport, RemovalResult};
        let id: nightdump::layout::BackupId = "20261101T030000Z".parse().unwrap();
        let report = PruneReport {
            destination: "s3://b/p".into(),
            applied: true,
            keep: vec![Kept {
                id,
                reasons: vec!["locked until 2026-12-06T03:00:00Z".into()],
            }],
            remove: vec![RemovalResult {
                id,
                reason: "not kept by any rule".into(),
                objects: vec![],
                outcome: Outcome::Locked {
                    detail: "locked until 2026-12-06T03:00:00Z".into(),
                },
            }],
            foreign: vec![],
            aborted_uploads: 0,
            slices: Default::default(),
            error: None,
        };
        let mut out = Vec::new();
        super::write_text(&mut out, &report).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("20261101T030000Z   kept: locked until 2026-12-06T03:00:00Z"),
            "{text}"
        );
        assert_eq!(text.matches("20261101T030000Z").count(), 1, "{text}");
        // The locked backup is counted once, among the kept.
        assert!(text.contains("removed 0 of 0 backups; 1 kept"), "{text}");
        let dry = PruneReport {
            applied: false,
            ..report
        };
        let mut out = Vec::new();
        super::write_text(&mut out, &dry).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("dry run: 0 backups would be removed, 1 kept"),
            "{text}"
        );
    }

    #[test]
    fn policy_strings_parse_like_the_options() {
        let p = nightdump::settings::policy(
            "NIGHTDUMP_PRUNE",
            " keep-daily=7, keep-weekly=4,keep-monthly=12,keep-within=30d,grace=2h ",
        )
        .unwrap();
        assert_eq!((p.daily, p.weekly, p.monthly), (7, 4, 12));
        assert_eq!(p.within.unwrap().to_string(), "30d");
        assert_eq!(p.grace.as_secs(), 7200);
        let p = nightdump::settings::policy("X", "keep-last=3").unwrap();
        assert_eq!(p.last, 3);
        assert_eq!(p.grace, nightdump::prune::DEFAULT_GRACE);
        for (spec, needle) in [
            ("", "no keep rule"),
            ("grace=1h", "no keep rule"),
            ("keep-daily", "RULE=VALUE"),
            ("keep-daily=0", "1 or more"),
            ("keep-daily=x", "not a whole number"),
            ("keep-forever=1", "unknown rule"),
            ("keep-within=soon", "keep-within"),
            ("keep-last=1,grace=later", "grace"),
        ] {
            let e = nightdump::settings::policy("NIGHTDUMP_PRUNE", spec).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("NIGHTDUMP_PRUNE") && text.contains(needle),
                "{spec}: {text}"
            );
        }
    }

    #[test]
    fn a_policy_needs_a_rule_and_a_valid_grace() {
        let e = parse(&[]).unwrap().policy().unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("at least one keep rule"), "{e}");
        let e = parse(&["--keep-last", "2", "--grace", "a while"])
            .unwrap()
            .policy()
            .unwrap_err();
        assert!(e.to_string().contains("--grace"), "{e}");
        let e = parse(&["--keep-last", "2", "--grace", "10m"])
            .unwrap()
            .policy()
            .unwrap_err();
        assert!(e.to_string().contains("shorter than 1h"), "{e}");
        let e =
            nightdump::settings::policy("NIGHTDUMP_PRUNE", "keep-last=1,grace=59m").unwrap_err();
        assert!(e.to_string().contains("NIGHTDUMP_PRUNE grace"), "{e}");
        let p = parse(&["--keep-last", "2", "--grace", "1h"]).unwrap();
        assert_eq!(p.policy().unwrap().grace.as_secs(), 3600);
        let p = parse(&["--keep-last", "2", "--grace", "2h"]).unwrap();
        assert_eq!(p.policy().unwrap().grace.as_secs(), 7200);
    }
}
