//! What backups a destination holds: listing, resolving `latest` or an id, and the status
//! the admin portal and monitoring read.
//!
//! One definition of a *complete* backup serves every command (list, status, `latest`,
//! `--at`, prune): its manifest parses, describes this backup (its own id, an archive in its
//! own directory, totals that add up), and the archive it names exists at the stated size.
//! Anything less is incomplete, whatever objects it has.

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::layout::{parse_time, BackupId, LATEST_KEY};
use crate::manifest::{Latest, Manifest};
use crate::store::{ObjectInfo, Store, StoreError};

/// Which backup a command means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Id(BackupId),
    /// The newest successful backup finished at or before this time.
    At(OffsetDateTime),
}

impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "latest" {
            Ok(Selector::Latest)
        } else {
            s.parse().map(Selector::Id)
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Listing {
    pub id: String,
    /// `complete` (see the module's definition) or `incomplete` (failed, running, or damaged).
    pub status: &'static str,
    pub time: String,
    /// Why an incomplete backup is not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// `full`, or the include/exclude patterns of a filtered backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The instants this backup and the oplog slices after it can restore to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::chain::BackupWindow>,
    pub size: Option<u64>,
    pub namespaces: Option<u64>,
    pub documents: Option<u64>,
    pub duration_seconds: Option<f64>,
    #[serde(skip)]
    pub backup_id: BackupId,
    #[serde(skip)]
    pub manifest: Option<Manifest>,
    /// Every object in the backup's directory.
    #[serde(skip)]
    pub objects: Vec<ObjectInfo>,
}

impl Listing {
    pub fn is_complete(&self) -> bool {
        self.manifest.is_some()
    }

    /// Complete and of the whole deployment.
    pub fn is_full(&self) -> bool {
        self.manifest
            .as_ref()
            .is_some_and(|m| m.selection.is_full())
    }

    fn finished(&self) -> Option<OffsetDateTime> {
        self.manifest
            .as_ref()
            .and_then(|m| parse_time(&m.finished_at).ok())
    }
}

/// Aborts the unfinished uploads inside backup directories (only those are nightdump's) that
/// were started more than `older_than` ago: a run killed outright (SIGKILL, out of memory, a
/// Lambda timeout) never aborts its own, and a younger one may be a run in progress. Tries
/// every one; returns how many were aborted, or the first failure.
pub async fn abort_abandoned_uploads(
    store: &Store,
    older_than: std::time::Duration,
) -> Result<usize, StoreError> {
    let mut aborted = 0;
    let mut failure = None;
    for key in store.list_incomplete_uploads("").await? {
        let in_backup = key.split_once('/').is_some_and(|(dir, _)| {
            dir.parse::<BackupId>().is_ok() || dir == crate::chain::CHAIN_DIR
        });
        if !in_backup {
            continue;
        }
        match store.abort_incomplete_uploads(&key, older_than).await {
            Ok(n) => aborted += n,
            Err(e) => {
                tracing::warn!(key, error = %e, "could not abort an abandoned unfinished upload");
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(aborted),
    }
}

/// Manifests read at once while listing an S3 prefix with many backups.
const MANIFEST_READS: usize = 16;

/// Every backup under the destination, newest first. Objects that nightdump did not write
/// (names that are not backup ids) are ignored.
pub async fn list(store: &Store) -> Result<Vec<Listing>> {
    let objects = store.list("").await?;
    let mut dirs: BTreeMap<BackupId, Vec<ObjectInfo>> = BTreeMap::new();
    for object in objects {
        let Some((dir, _)) = object.key.split_once('/') else {
            continue;
        };
        let Ok(id) = dir.parse::<BackupId>() else {
            continue;
        };
        dirs.entry(id).or_default().push(object);
    }
    futures_util::stream::iter(dirs.into_iter().rev())
        .map(|(id, objects)| examine(store, id, objects))
        .buffered(MANIFEST_READS)
        .try_collect()
        .await
}

/// [`list`], with each point-in-time backup's window through the oplog chain.
pub async fn list_with_windows(store: &Store) -> Result<Vec<Listing>> {
    let mut listings = list(store).await?;
    let chain = crate::chain::read(store).await?;
    let windows = chain.windows(&chain_bases(&listings));
    for l in &mut listings {
        l.window = windows.iter().find(|w| w.backup_id == l.id).cloned();
    }
    Ok(listings)
}

/// Applies the definition of complete to one backup directory.
async fn examine(store: &Store, id: BackupId, objects: Vec<ObjectInfo>) -> Result<Listing> {
    let manifest_key = id.manifest_key();
    let checked = if objects.iter().any(|o| o.key == manifest_key) {
        match store.get(&manifest_key).await? {
            Some(bytes) => check(&id, &bytes, &objects),
            None => Err("no manifest (the run failed, or is still running)".to_string()),
        }
    } else {
        Err("no manifest (the run failed, or is still running)".to_string())
    };
    let (manifest, problem) = match checked {
        Ok(m) => (Some(m), None),
        Err(p) => (None, Some(p)),
    };
    Ok(Listing {
        id: id.to_string(),
        status: if manifest.is_some() {
            "complete"
        } else {
            "incomplete"
        },
        time: crate::layout::format_time(id.time()),
        problem,
        selection: manifest.as_ref().map(|m| m.selection.describe()),
        finished_at: manifest.as_ref().map(|m| m.finished_at.clone()),
        window: None,
        size: manifest.as_ref().map(|m| m.archive.size),
        namespaces: manifest.as_ref().map(|m| m.totals.namespaces),
        documents: manifest.as_ref().map(|m| m.totals.documents),
        duration_seconds: manifest.as_ref().map(|m| m.duration_seconds),
        backup_id: id,
        manifest,
        objects,
    })
}

fn check(id: &BackupId, bytes: &[u8], objects: &[ObjectInfo]) -> Result<Manifest, String> {
    let manifest = Manifest::parse(bytes).map_err(|e| format!("unreadable manifest: {e}"))?;
    manifest.check_describes(&id.to_string())?;
    match objects.iter().find(|o| o.key == manifest.archive.key) {
        None => Err(format!("its archive {} is missing", manifest.archive.key)),
        Some(o) if o.size != manifest.archive.size => Err(format!(
            "its archive is {} bytes, the manifest says {}",
            o.size, manifest.archive.size
        )),
        Some(_) => Ok(manifest),
    }
}

/// The backup `latest` means among `listings`: the complete backup that finished last, of
/// the whole deployment when there is one (a filtered backup never stands in for a full one),
/// finished at or before `not_after` when given.
pub fn pick_latest(listings: &[Listing], not_after: Option<OffsetDateTime>) -> Option<&Listing> {
    let candidates = || {
        listings
            .iter()
            .filter(|l| l.is_complete())
            .filter(move |l| not_after.is_none_or(|t| l.finished().is_some_and(|f| f <= t)))
    };
    let newest = |full_only: bool| {
        candidates()
            .filter(|l| !full_only || l.is_full())
            .max_by_key(|l| (l.finished(), l.backup_id))
    };
    newest(true).or_else(|| newest(false))
}

/// Complete backups with a point in time: where oplog chains can start.
pub fn chain_bases(listings: &[Listing]) -> Vec<crate::chain::Base> {
    listings
        .iter()
        .filter_map(|l| {
            let m = l.manifest.as_ref()?;
            let pit = m.point_in_time.as_ref()?;
            Some(crate::chain::Base {
                id: l.backup_id,
                point_in_time: pit.ts.to_bson(),
                replica_set: m.source.replica_set.clone(),
            })
        })
        .collect()
}

/// Finds the backup a selector names and reads its manifest.
pub async fn resolve(store: &Store, selector: &Selector) -> Result<(BackupId, Manifest)> {
    let destination = store.destination().to_string();
    let found = |listings: Vec<Listing>, not_after| {
        pick_latest(&listings, not_after).and_then(|l| Some((l.backup_id, l.manifest.clone()?)))
    };
    match selector {
        Selector::Id(id) => {
            let bytes =
                store
                    .get(&id.manifest_key())
                    .await?
                    .ok_or_else(|| Error::BackupNotFound {
                        id: id.to_string(),
                        destination: destination.clone(),
                    })?;
            let manifest = Manifest::parse(&bytes).map_err(|detail| Error::Integrity {
                id: id.to_string(),
                detail,
            })?;
            manifest
                .check_describes(&id.to_string())
                .map_err(|detail| Error::Integrity {
                    id: id.to_string(),
                    detail,
                })?;
            Ok((*id, manifest))
        }
        Selector::Latest => found(list(store).await?, None).ok_or(Error::NoBackups {
            destination: destination.clone(),
        }),
        Selector::At(t) => {
            found(list(store).await?, Some(*t)).ok_or_else(|| Error::BackupNotFound {
                id: format!("finished at or before {}", crate::layout::format_time(*t)),
                destination: destination.clone(),
            })
        }
    }
}

pub async fn read_latest(store: &Store) -> Result<Option<Latest>> {
    match store.get(LATEST_KEY).await? {
        Some(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        None => Ok(None),
    }
}

/// A complete backup newer than the last success that is not of the whole deployment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewerPartial {
    pub backup_id: String,
    pub finished_at: String,
    pub selection: String,
}

/// The answer to "when did the last backup succeed?".
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub destination: String,
    pub last_success: Option<Latest>,
    pub age_seconds: Option<i64>,
    pub max_age_seconds: Option<u64>,
    pub healthy: bool,
    /// A filtered backup that finished after the last full one: not counted as a success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newer_partial: Option<NewerPartial>,
    /// Set when `latest.json` names a backup that is not complete here (deleted, damaged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The point-in-time window the oplog chain gives, when there is a backup with a point in
    /// time to start from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pitr: Option<crate::chain::Window>,
    /// The last restore drill, as `latest.json` records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<crate::manifest::LatestDrill>,
}

/// The last success as the listing proves it (not as `latest.json` claims it: that object
/// may name a backup deleted since).
pub async fn status(store: &Store, max_age: Option<std::time::Duration>) -> Result<Status> {
    let listings = list(store).await?;
    let chain = crate::chain::read(store).await?;
    let picked = pick_latest(&listings, None);
    let last = picked.and_then(|l| {
        l.manifest
            .as_ref()
            .map(|m| m.latest(l.backup_id.manifest_key()))
    });
    let claimed = read_latest(store).await?;
    let last_drill = claimed.as_ref().and_then(|c| c.drill.clone());
    let warning = match claimed {
        Some(claimed)
            if !listings
                .iter()
                .any(|l| l.id == claimed.backup_id && l.is_complete()) =>
        {
            Some(format!(
                "latest.json names backup {}, which is not a complete backup here (deleted or damaged); the next successful backup rewrites it",
                claimed.backup_id
            ))
        }
        _ => None,
    };
    let newer_partial = picked.filter(|l| l.is_full()).and_then(|full| {
        listings
            .iter()
            .filter(|l| l.is_complete() && !l.is_full() && l.finished() > full.finished())
            .max_by_key(|l| l.finished())
            .and_then(|l| {
                let m = l.manifest.as_ref()?;
                Some(NewerPartial {
                    backup_id: l.id.clone(),
                    finished_at: m.finished_at.clone(),
                    selection: m.selection.describe(),
                })
            })
    });
    let now = OffsetDateTime::now_utc();
    let age = last
        .as_ref()
        .and_then(|l| parse_time(&l.finished_at).ok())
        .map(|t| now - t);
    let age_seconds = age.map(|a| a.whole_seconds());
    let healthy = match (age, max_age) {
        (Some(age), Some(max)) => age <= max,
        (Some(_), None) => true,
        (None, _) => false,
    };
    // Without any slice the window is each backup's single instant: not worth a line.
    let pitr = match chain.links.is_empty() {
        true => None,
        false => chain.window(&chain_bases(&listings), now),
    };
    Ok(Status {
        destination: store.destination().to_string(),
        last_success: last,
        age_seconds,
        max_age_seconds: max_age.map(|d| d.as_secs()),
        healthy,
        newer_partial,
        warning,
        pitr,
        last_drill,
    })
}

pub fn parse_at(s: &str) -> Result<Selector, String> {
    parse_time(s).map(Selector::At)
}
