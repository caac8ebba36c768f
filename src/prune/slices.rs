//! Pruning the oplog chain. A slice is needed while a kept backup's window runs through it:
//! every link that ends after the oldest kept point in time stays, so no kept backup's chain
//! ever gets a hole (links go from the old end only). The chain's newest link stays too:
//! the next capture continues from it. Object Lock is honoured as for backups: a locked link
//! is never sent a delete.

use serde::Serialize;
use time::OffsetDateTime;

use crate::chain::{self, key, Chain};
use crate::error::Result;
use crate::store::{Store, StoreError};

/// What prune did (or, in a dry run, would do) to the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SlicePrune {
    /// Links removed (or to remove), by directory.
    pub removed: Vec<String>,
    /// Links the plan removes but Object Lock keeps.
    pub kept_locked: Vec<String>,
    /// Links kept because a kept backup's window needs them (or the next capture does).
    pub kept: usize,
    /// Objects of failed or losing captures (no manifest names them) older than the grace
    /// period, removed (or to remove).
    pub leftovers: Vec<String>,
}

impl SlicePrune {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.kept_locked.is_empty()
            && self.kept == 0
            && self.leftovers.is_empty()
    }
}

/// Plans and, with `apply`, removes the links no kept backup needs. `kept_points` are the
/// points in time of every backup that stays (locked ones included).
pub async fn prune(
    store: &Store,
    kept_points: &[bson::Timestamp],
    grace: std::time::Duration,
    apply: bool,
    now: OffsetDateTime,
) -> Result<(SlicePrune, Option<StoreError>)> {
    let chain = chain::read(store).await?;
    let mut out = SlicePrune::default();
    let mut failure = None;
    let oldest_needed = kept_points.iter().min_by_key(|t| key(**t)).copied();
    let tip = chain.last().map(|l| l.dir.clone());
    for link in &chain.links {
        let needed = match oldest_needed {
            Some(p) => key(link.manifest.last()) > key(p),
            // No kept backup has a point in time: no window needs any slice.
            None => false,
        };
        if needed || Some(&link.dir) == tip.as_ref() {
            out.kept += 1;
            continue;
        }
        let mut objects = vec![format!("{}/{}", link.dir, chain::LINK_MANIFEST)];
        if let Some(o) = &link.manifest.object {
            objects.push(o.key.clone());
        }
        if let Some(lock) = locked(store, &objects, now).await? {
            tracing::info!(slice = link.dir, lock, "oplog slice kept by Object Lock");
            out.kept_locked.push(link.dir.clone());
            continue;
        }
        if apply {
            // The manifest first: a link cut off halfway reads as incomplete, never as a
            // slice whose entries are gone.
            for key in &objects {
                if let Err(e) = store.delete(std::slice::from_ref(key)).await {
                    failure.get_or_insert(e);
                    break;
                }
            }
        }
        out.removed.push(link.dir.clone());
    }
    for key in leftovers(&chain, grace, now) {
        if apply {
            if let Err(e) = store.delete(std::slice::from_ref(&key)).await {
                if !matches!(e, StoreError::AccessDenied { .. }) {
                    failure.get_or_insert(e);
                }
                continue;
            }
        }
        out.leftovers.push(key);
    }
    Ok((out, failure))
}

/// Objects no link's manifest names, older than the grace period (a capture still running
/// is younger).
fn leftovers(chain: &Chain, grace: std::time::Duration, now: OffsetDateTime) -> Vec<String> {
    let old = |o: &crate::store::ObjectInfo| {
        o.last_modified.is_some_and(|t| {
            now - t > time::Duration::try_from(grace).unwrap_or(time::Duration::MAX)
        })
    };
    chain
        .orphans
        .iter()
        .chain(chain.unfinished.iter().flat_map(|u| u.objects.iter()))
        .filter(|o| old(o))
        .map(|o| o.key.clone())
        .collect()
}

/// A lock on any of the objects, as prune reads locks on backups.
async fn locked(store: &Store, objects: &[String], now: OffsetDateTime) -> Result<Option<String>> {
    for key in objects {
        match store.lock_state(key).await {
            Ok(state) if state.legal_hold => {
                return Ok(Some(format!("{key} is under a legal hold")))
            }
            Ok(state) => {
                if let Some(r) = state.retention.filter(|r| r.until > now) {
                    return Ok(Some(format!(
                        "{key} is locked until {}",
                        crate::layout::format_time(r.until)
                    )));
                }
            }
            Err(StoreError::AccessDenied { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}
