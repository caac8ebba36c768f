//! The oplog chain: the *slices* `nightdump oplog` stores between backups, how they are named
//! at the destination, and which instants they make restorable.
//!
//! ```text
//! <prefix>/oplog/<after>/slice.json              the link's manifest, written last (create-only)
//! <prefix>/oplog/<after>/<tag>.bson.gz[.age|.enc] the entries, gzip-compressed BSON in oplog order
//! ```
//! `<after>` is the oplog time the link continues from, exclusive: the end of the link before
//! it, or the point in time of the backup that starts the chain, written
//! `YYYYMMDDTHHMMSSZ.IIIIIIIIII` (its seconds as a UTC time, its increment in ten digits), so
//! links sort by time as strings. A link covers the entries with `after < ts <= last`.
//!
//! Two captures that start together compute the same `<after>` and race for the same
//! `slice.json`; the create-only write lets exactly one win, so the chain never has two links
//! for one range. Each run writes its entries under a random tag of its own, so a loser or a
//! killed run leaves only an object no manifest names (prune removes it after its grace
//! period), never something that looks complete.
//!
//! A link is a `slice` (its entries are stored) or a `gap`: a capture found the oplog had
//! rolled past `after`, so the entries up to `last` (the oldest one still in the oplog) are
//! lost. Coverage stops at a gap: an instant past it can only be restored from a backup taken
//! after it.

use std::collections::BTreeMap;

use bson::Timestamp;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::layout::{format_time, BackupId};
use crate::manifest::{Encryption, OplogTimestamp, Storage};
use crate::store::{ObjectInfo, Store};

/// Where the chain lives under the destination.
pub const CHAIN_DIR: &str = "oplog";
pub const LINK_MANIFEST: &str = "slice.json";
/// The entries' object name before its random tag and encryption suffix.
pub const ENTRIES_SUFFIX: &str = "bson.gz";
pub const SCHEMA_VERSION: u32 = 1;

/// Total order of oplog times, as mongod compares them.
pub fn key(ts: Timestamp) -> (u32, u32) {
    (ts.time, ts.increment)
}

/// The directory name of the link continuing from `after`.
pub fn link_dir(after: Timestamp) -> String {
    let t = OffsetDateTime::from_unix_timestamp(i64::from(after.time))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{CHAIN_DIR}/{}.{:010}",
        BackupId::from_time(t),
        after.increment
    )
}

/// An oplog time as an instant (its seconds), for people.
pub fn instant(ts: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp(i64::from(ts.time))
        .map(format_time)
        .unwrap_or_else(|_| ts.time.to_string())
}

/// `RFC3339 (t:i)`: the instant and the exact oplog time.
pub fn describe(ts: Timestamp) -> String {
    format!("{} ({}:{})", instant(ts), ts.time, ts.increment)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    Slice,
    Gap,
}

/// What a link continues: a backup's point in time or the link before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Continues {
    Backup(String),
    Link(String),
}

/// The stored entries of a slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntriesObject {
    /// Relative to the destination.
    pub key: String,
    pub size: u64,
    pub sha256: String,
    pub encryption: Encryption,
}

/// Which deployment the entries are of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSource {
    pub replica_set: String,
    pub hosts: Vec<String>,
}

/// `oplog/<after>/slice.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkManifest {
    pub schema_version: u32,
    pub kind: LinkKind,
    /// Exclusive start: the entries are those after it.
    pub after: OplogTimestamp,
    /// The first entry stored (a slice with entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<OplogTimestamp>,
    /// Inclusive end: the newest entry stored (a slice), or the oldest entry the oplog still
    /// held when the gap was found (a gap; it is lost too).
    pub last: OplogTimestamp,
    /// The last entry's wall clock, when the server records one (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_wall: Option<String>,
    pub continues: Continues,
    /// Entries stored, and their uncompressed BSON bytes.
    pub entries: u64,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<EntriesObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    pub source: LinkSource,
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
}

impl LinkManifest {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let m: LinkManifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("slice manifest is not valid: {e}"))?;
        if m.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "slice manifest schema version {} is not supported by this nightdump (supports {SCHEMA_VERSION}): upgrade nightdump",
                m.schema_version
            ));
        }
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    pub fn after(&self) -> Timestamp {
        self.after.to_bson()
    }

    pub fn last(&self) -> Timestamp {
        self.last.to_bson()
    }

    /// The manifest agrees with where it is stored and with itself.
    fn check(&self, dir: &str) -> Result<(), String> {
        if link_dir(self.after()) != dir {
            return Err(format!(
                "its after time belongs in {}",
                link_dir(self.after())
            ));
        }
        if key(self.last()) <= key(self.after()) {
            return Err("it ends before it starts".into());
        }
        match (&self.kind, &self.object) {
            (LinkKind::Slice, None) => Err("a slice without an entries object".into()),
            (LinkKind::Slice, Some(o)) if !o.key.starts_with(&format!("{dir}/")) => {
                Err(format!("its entries object {} is outside {dir}/", o.key))
            }
            _ => Ok(()),
        }
    }
}

/// One complete link of the chain.
#[derive(Debug, Clone)]
pub struct Link {
    pub dir: String,
    pub manifest: LinkManifest,
}

impl Link {
    pub fn is_gap(&self) -> bool {
        self.manifest.kind == LinkKind::Gap
    }
}

/// A link directory that is not (or not yet) a complete link, with why.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub dir: String,
    pub problem: String,
    pub objects: Vec<ObjectInfo>,
}

/// Every link at a destination.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// Complete links, by `after`.
    pub links: Vec<Link>,
    /// Directories with no readable, matching manifest or whose entries object is missing or
    /// of the wrong size.
    pub unfinished: Vec<Unfinished>,
    /// Objects in link directories that no manifest names: a losing or killed capture's.
    pub orphans: Vec<ObjectInfo>,
}

/// Reads the chain's manifests (a destination with no `oplog/` has an empty chain).
pub async fn read(store: &Store) -> Result<Chain> {
    let objects = store.list(&format!("{CHAIN_DIR}/")).await?;
    let mut dirs: BTreeMap<String, Vec<ObjectInfo>> = BTreeMap::new();
    for o in objects {
        let Some((dir, _)) = o.key.rsplit_once('/') else {
            continue;
        };
        if dir.matches('/').count() == 1 && dir.starts_with(&format!("{CHAIN_DIR}/")) {
            dirs.entry(dir.to_string()).or_default().push(o);
        }
    }
    // Manifests are read several at once: a month of captures every 15 minutes is
    // thousands of links, and every capture and status reads them all.
    let examined: Vec<(String, Vec<ObjectInfo>, Result<LinkManifest, String>)> =
        futures_util::stream::iter(dirs)
            .map(|(dir, objects)| async move {
                let checked = examine(store, &dir, &objects).await?;
                Ok::<_, Error>((dir, objects, checked))
            })
            .buffered(MANIFEST_READS)
            .try_collect()
            .await?;
    let mut chain = Chain::default();
    for (dir, objects, checked) in examined {
        let manifest_key = format!("{dir}/{LINK_MANIFEST}");
        match checked {
            Ok(manifest) => {
                let named = manifest.object.as_ref().map(|o| o.key.clone());
                chain.orphans.extend(
                    objects
                        .into_iter()
                        .filter(|o| o.key != manifest_key && Some(&o.key) != named.as_ref()),
                );
                chain.links.push(Link { dir, manifest });
            }
            Err(problem) => chain.unfinished.push(Unfinished {
                dir,
                problem,
                objects,
            }),
        }
    }
    chain.links.sort_by_key(|l| key(l.manifest.after()));
    Ok(chain)
}

/// Manifests read at once.
const MANIFEST_READS: usize = 16;

/// Applies the definition of a complete link to one directory.
async fn examine(
    store: &Store,
    dir: &str,
    objects: &[ObjectInfo],
) -> Result<Result<LinkManifest, String>> {
    let manifest_key = format!("{dir}/{LINK_MANIFEST}");
    let missing = || Err("no slice.json (the capture failed, or is still running)".to_string());
    if !objects.iter().any(|o| o.key == manifest_key) {
        return Ok(missing());
    }
    let Some(bytes) = store.get(&manifest_key).await? else {
        return Ok(missing());
    };
    Ok(LinkManifest::parse(&bytes).and_then(|m| {
        m.check(dir)?;
        if let Some(o) = &m.object {
            match objects.iter().find(|s| s.key == o.key) {
                None => return Err(format!("its entries object {} is missing", o.key)),
                Some(s) if s.size != o.size => {
                    return Err(format!(
                        "its entries object is {} bytes, the manifest says {}",
                        s.size, o.size
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(m)
    }))
}

/// How far the slices reach from one instant, and what stops them.
#[derive(Debug, Clone)]
pub struct Reach<'a> {
    /// Every entry up to here (inclusive) is stored, in the backup or the slices used.
    pub end: Timestamp,
    /// The slices to replay, in order, each from where the one before it ended.
    pub slices: Vec<&'a Link>,
    /// The gap that stops the reach, when one does.
    pub gap: Option<&'a Link>,
}

impl Chain {
    /// The links that are slices.
    pub fn slices(&self) -> impl Iterator<Item = &Link> {
        self.links.iter().filter(|l| !l.is_gap())
    }

    /// The link with the newest end (where the next capture continues).
    pub fn last(&self) -> Option<&Link> {
        self.links.iter().max_by_key(|l| key(l.manifest.last()))
    }

    /// Follows slices from `from` (a backup's point in time): each step takes a slice that
    /// holds the entry after the current position, the one reaching furthest.
    pub fn reach(&self, from: Timestamp) -> Reach<'_> {
        let mut end = from;
        let mut slices = Vec::new();
        loop {
            let next = self
                .slices()
                .filter(|l| {
                    key(l.manifest.after()) <= key(end) && key(end) < key(l.manifest.last())
                })
                .max_by_key(|l| key(l.manifest.last()));
            match next {
                Some(l) => {
                    end = l.manifest.last();
                    slices.push(l);
                }
                None => break,
            }
        }
        let gap = self
            .links
            .iter()
            .filter(|l| l.is_gap())
            .find(|l| key(l.manifest.after()) <= key(end) && key(end) < key(l.manifest.last()));
        Reach { end, slices, gap }
    }
}

/// A backup a chain can start from: a complete backup with a point in time.
#[derive(Debug, Clone)]
pub struct Base {
    pub id: BackupId,
    pub point_in_time: Timestamp,
    pub replica_set: Option<String>,
}

/// The instants a backup and the slices after it make restorable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupWindow {
    pub backup_id: String,
    pub from: String,
    pub to: String,
    pub from_ts: OplogTimestamp,
    pub to_ts: OplogTimestamp,
}

/// The restorable window as `status` shows it: from the oldest backup whose chain reaches the
/// newest covered instant, to that instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub earliest: String,
    pub latest: String,
    pub earliest_ts: OplogTimestamp,
    pub latest_ts: OplogTimestamp,
    /// Seconds between the newest stored entry and now.
    pub lag_seconds: i64,
    /// The lag allowed by `--max-lag`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lag_seconds: Option<u64>,
    pub slices: usize,
    /// The newest slice's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_slice: Option<String>,
    /// A gap that stops the window: nothing after `latest` is restorable until a backup taken
    /// after the gap starts a new chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<GapReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapReport {
    /// Entries after this instant…
    pub from: String,
    /// …up to and including this one are lost.
    pub to: String,
    pub recorded_at: String,
}

impl GapReport {
    pub fn of(link: &Link) -> Self {
        Self {
            from: describe(link.manifest.after()),
            to: describe(link.manifest.last()),
            recorded_at: link.manifest.finished_at.clone(),
        }
    }

    pub fn sentence(&self) -> String {
        format!(
            "the oplog entries after {} up to {} are lost (gap recorded {}): no instant after {} is restorable until a backup taken after the gap starts a new chain",
            self.from, self.to, self.recorded_at, self.from
        )
    }
}

impl Chain {
    /// Each backup's window.
    pub fn windows(&self, bases: &[Base]) -> Vec<BackupWindow> {
        bases
            .iter()
            .map(|b| {
                let reach = self.reach(b.point_in_time);
                BackupWindow {
                    backup_id: b.id.to_string(),
                    from: instant(b.point_in_time),
                    to: instant(reach.end),
                    from_ts: b.point_in_time.into(),
                    to_ts: reach.end.into(),
                }
            })
            .collect()
    }

    /// The window that reaches furthest, or `None` without a backup with a point in time.
    pub fn window(&self, bases: &[Base], now: OffsetDateTime) -> Option<Window> {
        let reaches: Vec<(&Base, Reach<'_>)> = bases
            .iter()
            .map(|b| (b, self.reach(b.point_in_time)))
            .collect();
        let latest = reaches.iter().map(|(_, r)| key(r.end)).max()?;
        let (earliest, reach) = reaches
            .iter()
            .filter(|(_, r)| key(r.end) == latest)
            .min_by_key(|(b, _)| key(b.point_in_time))?;
        let newest_entry = self
            .slices()
            .map(|l| l.manifest.last())
            .chain(bases.iter().map(|b| b.point_in_time))
            .max_by_key(|t| key(*t))?;
        // A gap found after the window's end also stops it, whether or not it starts there.
        let gap = reach.gap.or_else(|| {
            self.links
                .iter()
                .filter(|l| l.is_gap() && key(l.manifest.after()) >= key(reach.end))
                .min_by_key(|l| key(l.manifest.after()))
        });
        Some(Window {
            earliest: instant(earliest.point_in_time),
            latest: instant(reach.end),
            earliest_ts: earliest.point_in_time.into(),
            latest_ts: reach.end.into(),
            lag_seconds: now.unix_timestamp() - i64::from(newest_entry.time),
            max_lag_seconds: None,
            slices: self.slices().count(),
            newest_slice: self
                .slices()
                .max_by_key(|l| key(l.manifest.last()))
                .map(|l| l.dir.clone()),
            gap: gap.map(GapReport::of),
        })
    }

    /// The backup to restore and the slices to replay for instant `to` (inclusive), checked
    /// before anything is written: the newest backup whose point in time is at or before
    /// `to`, and slices covering every entry from it to `to`.
    pub fn plan_to(&self, bases: &[Base], to: Timestamp, destination: &str) -> Result<Plan<'_>> {
        let base = bases
            .iter()
            .filter(|b| key(b.point_in_time) <= key(to))
            .max_by_key(|b| key(b.point_in_time))
            .ok_or_else(|| {
                let earliest = bases
                    .iter()
                    .map(|b| b.point_in_time)
                    .min_by_key(|t| key(*t))
                    .map(|t| format!("the earliest restorable instant is {}", describe(t)))
                    .unwrap_or_else(|| {
                        "it holds no backup with a point in time (a replica set's backup)".into()
                    });
                Error::NoBackupBefore(format!(
                    "no backup at {destination} has a point in time at or before {}: {earliest}; run `nightdump list --from {destination}` to see the backups",
                    describe_limit(to)
                ))
            })?;
        let reach = self.reach(base.point_in_time);
        if key(reach.end) < key(to) {
            let why = match reach.gap {
                Some(gap) => GapReport::of(gap).sentence(),
                None => format!(
                    "no slice holds the entries after {}: run `nightdump oplog` to capture them, or choose an instant up to {} (every write up to that entry) or {} (every write up to that second)",
                    describe(reach.end),
                    format_args!("{}:{}", reach.end.time, reach.end.increment),
                    instant(Timestamp {
                        time: reach.end.time.saturating_sub(1),
                        increment: 0
                    })
                ),
            };
            return Err(Error::NotRestorable(format!(
                "cannot restore to {}: the newest backup before it, {}, and the oplog slices after it reach only {}; {why}",
                describe_limit(to),
                base.id,
                describe(reach.end)
            )));
        }
        let slices = reach
            .slices
            .into_iter()
            .take_while(|l| key(l.manifest.after()) < key(to) && key(base.point_in_time) < key(to))
            .collect();
        Ok(Plan {
            base: base.clone(),
            slices,
            to,
        })
    }
}

/// `t:i` as given, for an instant that may stand for a whole second.
fn describe_limit(to: Timestamp) -> String {
    if to.increment == u32::MAX {
        instant(to)
    } else {
        describe(to)
    }
}

/// What a restore to an instant replays.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub base: Base,
    pub slices: Vec<&'a Link>,
    /// Inclusive.
    pub to: Timestamp,
}

/// Parses `--to-time`: an RFC 3339 time (every entry written in that second or before it),
/// or `SECONDS:INCREMENT` as the oplog writes it (that entry and every one before it).
pub fn parse_to_time(value: &str) -> std::result::Result<Timestamp, String> {
    let s = value.trim();
    let bad = || {
        format!("'{s}' is not an instant: use an RFC 3339 time (e.g. 2026-12-03T14:05:00Z) or SECONDS:INCREMENT as in the oplog (e.g. 1796306700:3)")
    };
    if s.contains(':') && !s.contains('T') {
        return oplog_time(s).ok_or_else(bad);
    }
    let t = crate::layout::parse_time(s).map_err(|_| bad())?;
    let time = u32::try_from(t.unix_timestamp()).map_err(|_| bad())?;
    Ok(Timestamp {
        time,
        increment: u32::MAX,
    })
}

/// `SECONDS[:INCREMENT]`, as the oplog's `ts` and mongorestore's `--oplogLimit` write it.
pub fn oplog_time(s: &str) -> Option<Timestamp> {
    let (secs, inc) = s.split_once(':').unwrap_or((s, "0"));
    Some(Timestamp {
        time: secs.parse().ok()?,
        increment: inc.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(t: u32, i: u32) -> Timestamp {
        Timestamp {
            time: t,
            increment: i,
        }
    }

    fn link(kind: LinkKind, after: Timestamp, last: Timestamp) -> Link {
        let dir = link_dir(after);
        Link {
            manifest: LinkManifest {
                schema_version: SCHEMA_VERSION,
                kind,
                after: after.into(),
                first: None,
                last: last.into(),
                last_wall: None,
                continues: Continues::Link(String::new()),
                entries: 1,
                bytes: 1,
                object: (kind == LinkKind::Slice).then(|| EntriesObject {
                    key: format!("{dir}/x.bson.gz"),
                    size: 1,
                    sha256: String::new(),
                    encryption: Encryption::none(),
                }),
                storage: None,
                source: LinkSource {
                    replica_set: "rs0".into(),
                    hosts: vec![],
                },
                started_at: String::new(),
                finished_at: "2026-12-03T00:00:00Z".into(),
                duration_seconds: 0.0,
            },
            dir,
        }
    }

    fn base(t: u32) -> Base {
        Base {
            id: BackupId::from_time(OffsetDateTime::from_unix_timestamp(i64::from(t)).unwrap()),
            point_in_time: ts(t, 1),
            replica_set: Some("rs0".into()),
        }
    }

    #[test]
    fn link_directories_sort_by_oplog_time() {
        let a = link_dir(ts(1_796_306_700, 9));
        let b = link_dir(ts(1_796_306_700, 10));
        let c = link_dir(ts(1_796_306_701, 1));
        assert_eq!(a, "oplog/20261203T140500Z.0000000009");
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn the_reach_follows_slices_and_stops_at_a_hole_or_a_gap() {
        let chain = Chain {
            links: vec![
                link(LinkKind::Slice, ts(100, 1), ts(200, 3)),
                link(LinkKind::Slice, ts(200, 3), ts(300, 1)),
                link(LinkKind::Gap, ts(300, 1), ts(400, 1)),
                link(LinkKind::Slice, ts(400, 1), ts(500, 1)),
            ],
            ..Chain::default()
        };
        // A backup inside the first slice continues through it.
        let r = chain.reach(ts(150, 2));
        assert_eq!(r.end, ts(300, 1));
        assert_eq!(r.slices.len(), 2);
        assert!(r.gap.is_some());
        // A backup taken after the gap starts a new chain.
        assert_eq!(chain.reach(ts(450, 1)).end, ts(500, 1));
        // Nothing covers the time after the last slice.
        let r = chain.reach(ts(500, 1));
        assert_eq!(r.end, ts(500, 1));
        assert!(r.slices.is_empty() && r.gap.is_none());

        let bases = [base(150), base(450)];
        let plan = chain.plan_to(&bases, ts(250, 0), "d").unwrap();
        assert_eq!(plan.base.point_in_time, ts(150, 1));
        assert_eq!(plan.slices.len(), 2);
        let err = chain.plan_to(&bases, ts(350, 0), "d").unwrap_err();
        assert_eq!(err.exit_code(), 6);
        assert!(err.to_string().contains("are lost"), "{err}");
        let err = chain.plan_to(&bases, ts(600, 0), "d").unwrap_err();
        assert!(err.to_string().contains("run `nightdump oplog`"), "{err}");
        let err = chain.plan_to(&bases, ts(100, 0), "d").unwrap_err();
        assert_eq!(err.exit_code(), 5);
        // Up to the base's own point in time, no slice is needed.
        assert!(chain
            .plan_to(&bases, ts(150, 1), "d")
            .unwrap()
            .slices
            .is_empty());

        let w = chain
            .window(&bases, OffsetDateTime::from_unix_timestamp(560).unwrap())
            .unwrap();
        assert_eq!((w.earliest_ts.t, w.latest_ts.t), (450, 500));
        assert_eq!(w.lag_seconds, 60);
        assert!(w.gap.is_none());
        let w = chain
            .window(
                &bases[..1],
                OffsetDateTime::from_unix_timestamp(560).unwrap(),
            )
            .unwrap();
        assert_eq!(w.latest_ts.t, 300);
        assert!(w.gap.unwrap().sentence().contains("lost"));
    }

    #[test]
    fn to_time_is_an_instant_or_an_oplog_time() {
        assert_eq!(parse_to_time("1796306700:3").unwrap(), ts(1_796_306_700, 3));
        assert_eq!(
            parse_to_time("2026-12-03T14:05:00Z").unwrap(),
            ts(1_796_306_700, u32::MAX)
        );
        for bad in ["yesterday", "12:x", "-1:2", ""] {
            assert!(
                parse_to_time(bad).unwrap_err().contains("RFC 3339"),
                "{bad}"
            );
        }
    }
}
