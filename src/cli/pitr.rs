//! The command line's side of continuous point-in-time recovery: `nightdump oplog`, the
//! window in `status`, `verify --oplog`, and `--to-time` for `restore` and `cat`.

use std::io::Write;

use nightdump::chain::{self, Window};
use nightdump::error::{Error, Result};
use nightdump::pitr::{self, CaptureStatus};
use nightdump::store::Store;

use super::{human_age, human_bytes, OplogArgs};

pub async fn run_oplog(args: OplogArgs) -> Result<()> {
    let (options, destination) = args.to_options()?;
    let store = Store::open(&destination, &options.s3).await?;
    // A signal stops the capture between two entries: its upload is aborted and waited for,
    // and no slice manifest is written, so the next capture covers the same range.
    let cancel = options.cancel.clone();
    let signalled = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = std::sync::Arc::clone(&signalled);
    let signals = tokio::spawn(async move {
        let name = nightdump::signal::stop_requested().await;
        if let Ok(mut s) = seen.lock() {
            *s = Some(name);
        }
        cancel.cancel();
    });
    let result = pitr::capture::run(&options, &store).await;
    signals.abort();
    let name = signalled.lock().ok().and_then(|s| *s);
    let outcome = match (result, name) {
        (Err(Error::Interrupted(why)), Some(name)) => {
            return Err(Error::Interrupted(format!("stopped by {name}: {why}")))
        }
        (result, _) => result?,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let summary = serde_json::to_string(&outcome.summary(&destination)).unwrap_or_default();
        writeln!(out, "{summary}").ok();
        return Ok(());
    }
    if args.quiet {
        return Ok(());
    }
    match (&outcome.status, &outcome.link) {
        (CaptureStatus::UpToDate, _) => {
            writeln!(
                out,
                "no oplog entry since {}; nothing to store",
                chain::describe(outcome.after)
            )
            .ok();
        }
        (status, Some(link)) => {
            let m = &link.manifest;
            let who = match status {
                CaptureStatus::StoredByAnotherRun => {
                    "stored by another capture that ran at the same time (this run's copy was discarded)"
                }
                _ => "stored",
            };
            writeln!(
                out,
                "oplog slice {} {who}: {} entries after {} up to {}, {} of BSON stored as {}",
                link.dir,
                m.entries,
                chain::describe(m.after()),
                chain::describe(m.last()),
                human_bytes(m.bytes),
                human_bytes(m.object.as_ref().map_or(0, |o| o.size)),
            )
            .ok();
        }
        (_, None) => {}
    }
    if let Some(w) = &outcome.window {
        print_window(&mut out, w);
    }
    if let Some(w) = &outcome.latest_warning {
        writeln!(out, "warning: latest.json not updated: {w}").ok();
    }
    Ok(())
}

pub fn print_window(out: &mut impl Write, w: &Window) {
    writeln!(
        out,
        "restorable to any instant from {} to {} ({} slices; newest entry {} ago)",
        w.earliest,
        w.latest,
        w.slices,
        human_age(w.lag_seconds)
    )
    .ok();
    if let Some(gap) = &w.gap {
        writeln!(out, "gap: {}", gap.sentence()).ok();
    }
}

/// `status --max-lag`: the newest stored oplog entry must be younger than `max_lag`.
pub fn check_lag(
    window: Option<&Window>,
    max_lag: Option<std::time::Duration>,
    destination: &str,
) -> Result<()> {
    let Some(max) = max_lag else { return Ok(()) };
    let allowed = humantime::format_duration(max).to_string();
    match window {
        None => Err(Error::PitrStale(format!(
            "no oplog slice at {destination}: nothing is restorable between backups (allowed lag {allowed}); run `nightdump oplog` on a schedule"
        ))),
        Some(w) if w.lag_seconds > i64::try_from(max.as_secs()).unwrap_or(i64::MAX) => {
            Err(Error::PitrStale(format!(
                "the newest oplog entry stored at {destination} is {} old, older than the allowed {allowed}: check that `nightdump oplog` runs (its schedule, its errors)",
                human_age(w.lag_seconds)
            )))
        }
        Some(w) if w.gap.is_some() => Err(Error::PitrStale(format!(
            "the point-in-time window at {destination} is broken: {}",
            w.gap.as_ref().map(|g| g.sentence()).unwrap_or_default()
        ))),
        Some(_) => Ok(()),
    }
}

/// What `verify --oplog` found.
#[derive(Debug, serde::Serialize)]
pub struct ChainReport {
    pub slices: usize,
    pub entries: u64,
    pub bytes: u64,
    pub size: u64,
    pub gaps: Vec<chain::GapReport>,
    /// Link directories without a complete manifest (a capture that failed or is running).
    pub incomplete: Vec<String>,
}

/// Reads every slice back and checks it against its manifest (SHA-256, size, entry count),
/// and that each link starts where the one before it ends.
pub async fn verify_chain(
    store: &Store,
    keys: Option<&nightdump::crypto::Keys>,
) -> Result<ChainReport> {
    let read = chain::read(store).await?;
    if read.links.is_empty() {
        return Err(Error::NoBackups {
            destination: format!("{} (no oplog slices)", store.destination()),
        });
    }
    for pair in read.links.windows(2) {
        let (a, b) = (&pair[0].manifest, &pair[1].manifest);
        if chain::key(b.after()) != chain::key(a.last()) {
            let what = if chain::key(b.after()) > chain::key(a.last()) {
                "a hole"
            } else {
                "an overlap"
            };
            return Err(Error::SliceIntegrity {
                slice: pair[1].dir.clone(),
                detail: format!(
                    "the chain has {what}: it starts after {} but the link before it ({}) ends at {}; restore to an instant before {} or after the next backup",
                    chain::describe(b.after()),
                    pair[0].dir,
                    chain::describe(a.last()),
                    chain::instant(a.last()),
                ),
            });
        }
    }
    let mut report = ChainReport {
        slices: 0,
        entries: 0,
        bytes: 0,
        size: 0,
        gaps: Vec::new(),
        incomplete: read.unfinished.iter().map(|u| u.dir.clone()).collect(),
    };
    for link in &read.links {
        if link.is_gap() {
            report.gaps.push(chain::GapReport::of(link));
            continue;
        }
        let encryption = link
            .manifest
            .object
            .as_ref()
            .map(|o| o.encryption.clone())
            .unwrap_or_else(nightdump::manifest::Encryption::none);
        let slice_keys = nightdump::crypto::ready_keys(&link.dir, &encryption, keys).await?;
        let counted = pitr::verify_slice(store, link, slice_keys.as_ref()).await?;
        report.slices += 1;
        report.entries += counted.entries;
        report.bytes += counted.bytes;
        report.size += link.manifest.object.as_ref().map_or(0, |o| o.size);
    }
    Ok(report)
}

pub fn print_chain_report(out: &mut impl Write, store: &Store, report: &ChainReport) {
    writeln!(
        out,
        "oplog chain at {} is intact: {} slices, {} entries, {} stored",
        store.destination(),
        report.slices,
        report.entries,
        human_bytes(report.size)
    )
    .ok();
    for gap in &report.gaps {
        writeln!(out, "gap: {}", gap.sentence()).ok();
    }
    for dir in &report.incomplete {
        writeln!(
            out,
            "incomplete: {dir} (a capture that failed or is still running; not part of the chain)"
        )
        .ok();
    }
}

/// `cat --to-time`: the combined archive on `out`.
pub async fn cat_to_time(
    store: Store,
    to: bson::Timestamp,
    keys: Option<&nightdump::crypto::Keys>,
    out: impl tokio::io::AsyncWrite + Unpin,
) -> Result<()> {
    let to_time = pitr::prepare(&store, to, keys, false).await?;
    pitr::to_time::cat(to_time, store, out).await
}
