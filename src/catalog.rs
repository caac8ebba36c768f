//! What backups a destination holds: listing, resolving `latest` or an id, and the status
//! the admin portal and monitoring read.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::layout::{parse_time, BackupId, LATEST_KEY, MANIFEST_NAME};
use crate::manifest::{Latest, Manifest};
use crate::store::Store;

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
    /// `complete` (has a manifest) or `incomplete` (failed, or still running).
    pub status: &'static str,
    pub time: String,
    pub size: Option<u64>,
    pub namespaces: Option<u64>,
    pub documents: Option<u64>,
    pub duration_seconds: Option<f64>,
    #[serde(skip)]
    pub manifest: Option<Manifest>,
}

/// Every backup under the destination, newest first. Objects that nightdump did not write
/// (names that are not backup ids) are ignored.
pub async fn list(store: &Store) -> Result<Vec<Listing>> {
    let objects = store.list("").await?;
    let mut ids: BTreeMap<BackupId, bool> = BTreeMap::new();
    for object in &objects {
        let Some((dir, name)) = object.key.split_once('/') else {
            continue;
        };
        let Ok(id) = dir.parse::<BackupId>() else {
            continue;
        };
        let complete = ids.entry(id).or_insert(false);
        if name == MANIFEST_NAME {
            *complete = true;
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for (id, complete) in ids.into_iter().rev() {
        let manifest = if complete {
            match store.get(&id.manifest_key()).await? {
                Some(bytes) => Manifest::parse(&bytes).ok(),
                None => None,
            }
        } else {
            None
        };
        out.push(Listing {
            id: id.to_string(),
            status: if manifest.is_some() {
                "complete"
            } else {
                "incomplete"
            },
            time: crate::layout::format_time(id.time()),
            size: manifest.as_ref().map(|m| m.archive.size),
            namespaces: manifest.as_ref().map(|m| m.totals.namespaces),
            documents: manifest.as_ref().map(|m| m.totals.documents),
            duration_seconds: manifest.as_ref().map(|m| m.duration_seconds),
            manifest,
        });
    }
    Ok(out)
}

/// Finds the backup a selector names and reads its manifest.
pub async fn resolve(store: &Store, selector: &Selector) -> Result<(BackupId, Manifest)> {
    let destination = store.destination().to_string();
    let id = match selector {
        Selector::Id(id) => *id,
        Selector::Latest => match read_latest(store).await? {
            Some(latest) => latest
                .backup_id
                .parse()
                .map_err(|e: String| Error::Integrity {
                    id: latest.backup_id.clone(),
                    detail: e,
                })?,
            None => newest_complete(store, None)
                .await?
                .ok_or(Error::NoBackups {
                    destination: destination.clone(),
                })?,
        },
        Selector::At(t) => {
            newest_complete(store, Some(*t))
                .await?
                .ok_or_else(|| Error::BackupNotFound {
                    id: format!("at or before {}", crate::layout::format_time(*t)),
                    destination: destination.clone(),
                })?
        }
    };
    let bytes = store
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
    Ok((id, manifest))
}

async fn newest_complete(
    store: &Store,
    not_after: Option<OffsetDateTime>,
) -> Result<Option<BackupId>> {
    Ok(list(store)
        .await?
        .into_iter()
        .filter(|l| l.status == "complete")
        .filter_map(|l| l.id.parse::<BackupId>().ok())
        .find(|id| not_after.is_none_or(|t| id.time() <= t)))
}

pub async fn read_latest(store: &Store) -> Result<Option<Latest>> {
    match store.get(LATEST_KEY).await? {
        Some(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        None => Ok(None),
    }
}

/// The answer to "when did the last backup succeed?".
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub destination: String,
    pub last_success: Option<Latest>,
    pub age_seconds: Option<i64>,
    pub max_age_seconds: Option<u64>,
    pub healthy: bool,
}

pub async fn status(store: &Store, max_age: Option<std::time::Duration>) -> Result<Status> {
    let last = match read_latest(store).await? {
        Some(l) => Some(l),
        None => match newest_complete(store, None).await? {
            Some(id) => {
                let (_, m) = resolve(store, &Selector::Id(id)).await?;
                Some(m.latest(id.manifest_key()))
            }
            None => None,
        },
    };
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
    Ok(Status {
        destination: store.destination().to_string(),
        last_success: last,
        age_seconds,
        max_age_seconds: max_age.map(|d| d.as_secs()),
        healthy,
    })
}

pub fn parse_at(s: &str) -> Result<Selector, String> {
    parse_time(s).map(Selector::At)
}
