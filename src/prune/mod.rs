//! `nightdump prune`: removes backups a retention policy no longer keeps.
//!
//! Only what nightdump wrote is ever touched: directories whose name is a backup id, and in
//! them only the object names a backup writes. Anything else found there is left and reported.

mod policy;
mod slices;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::layout::{BackupId, ARCHIVE_NAME, MANIFEST_NAME};
use crate::store::{Store, StoreError};

pub use policy::{plan, BackupRef, Kept, Plan, Policy, Removal, Within, DEFAULT_GRACE};
pub use slices::SlicePrune;

fn serialize_id<S: serde::Serializer>(id: &BackupId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// The object names a backup writes in its directory; the manifest is deleted first.
fn known_names() -> [String; 4] {
    [
        MANIFEST_NAME.to_string(),
        ARCHIVE_NAME.to_string(),
        format!("{ARCHIVE_NAME}.age"),
        format!("{ARCHIVE_NAME}.enc"),
    ]
}

/// What a destination holds, as prune sees it.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub backups: Vec<BackupRef>,
    /// The keys nightdump wrote, per backup.
    pub objects: BTreeMap<BackupId, Vec<String>>,
    /// Keys inside backup directories that nightdump does not write: never deleted.
    pub foreign: Vec<String>,
    /// The point in time of each complete backup that has one.
    pub points: BTreeMap<BackupId, bson::Timestamp>,
}

/// What prune may touch, from the listing that every command shares: which backups are
/// complete is decided there, once (`catalog`'s definition).
pub async fn inventory(store: &Store) -> Result<Inventory> {
    let known = known_names();
    let mut inv = Inventory::default();
    for listing in crate::catalog::list(store).await? {
        let id = listing.backup_id;
        let newest_object = listing.objects.iter().filter_map(|o| o.last_modified).max();
        for object in &listing.objects {
            let name = object.key.split_once('/').map_or("", |(_, n)| n);
            if known.iter().any(|k| k == name) {
                inv.objects.entry(id).or_default().push(object.key.clone());
            } else {
                inv.foreign.push(object.key.clone());
            }
        }
        if let Some(pit) = listing
            .manifest
            .as_ref()
            .and_then(|m| m.point_in_time.as_ref())
        {
            inv.points.insert(id, pit.ts.to_bson());
        }
        inv.backups.push(BackupRef {
            id,
            complete: listing.is_complete(),
            newest_object,
            group: listing.selection.unwrap_or_default(),
        });
    }
    Ok(inv)
}

/// What happened to one backup the plan removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Dry run: nothing was deleted.
    Planned,
    Removed,
    /// The destination refused the delete (Object Lock, a deny policy): kept.
    Locked {
        detail: String,
    },
    Failed {
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovalResult {
    #[serde(serialize_with = "serialize_id")]
    pub id: BackupId,
    pub reason: String,
    pub objects: Vec<String>,
    pub outcome: Outcome,
}

#[derive(Debug, Serialize)]
pub struct PruneReport {
    pub destination: String,
    /// Whether deletes were made (`--yes`).
    pub applied: bool,
    pub keep: Vec<Kept>,
    pub remove: Vec<RemovalResult>,
    /// Objects in backup directories that prune does not own and left in place.
    pub foreign: Vec<String>,
    /// Unfinished uploads of killed runs (S3 multipart uploads, temporary files) older than
    /// the grace period, aborted (`--yes` only).
    pub aborted_uploads: usize,
    /// The oplog chain: slices no kept backup needs any more.
    #[serde(skip_serializing_if = "SlicePrune::is_empty")]
    pub slices: SlicePrune,
    /// The first delete that failed for a reason other than a lock: the run failed.
    #[serde(skip)]
    pub error: Option<StoreError>,
}

/// Plans against the destination and, with `apply`, deletes what the plan removes. The
/// backup `protect` names (the one the calling run just made) is kept whatever the rules say.
pub async fn run(
    store: &Store,
    policy: &Policy,
    apply: bool,
    protect: Option<BackupId>,
) -> Result<PruneReport> {
    if !policy.has_rule() {
        return Err(Error::invalid(
            "prune needs at least one keep rule: pass e.g. --keep-daily 7 --keep-weekly 5",
        ));
    }
    let inv = inventory(store).await?;
    let now = OffsetDateTime::now_utc();
    let mut plan = plan(&inv.backups, policy, now);
    protect_latest(store, &mut plan).await?;
    if let Some(id) = protect {
        keep_instead(&mut plan, id, "made by this run");
    }

    let mut report = PruneReport {
        destination: store.destination().to_string(),
        applied: apply,
        keep: plan.keep,
        remove: Vec::with_capacity(plan.remove.len()),
        foreign: inv.foreign,
        aborted_uploads: 0,
        slices: SlicePrune::default(),
        error: None,
    };
    for removal in plan.remove {
        let mut objects = inv.objects.get(&removal.id).cloned().unwrap_or_default();
        // Manifest first: a backup cut off halfway then reads as incomplete, never as a
        // complete backup whose archive is gone.
        objects.sort_by_key(|k| !k.ends_with(&format!("/{MANIFEST_NAME}")));
        // A locked backup is never sent a delete: S3 would refuse it for the locked versions
        // (or, without a version id, hide them behind delete markers).
        let locked = locked_by(store, removal.id, &objects, now).await?;
        let outcome = if let Some(detail) = locked.clone() {
            Outcome::Locked { detail }
        } else if apply {
            match delete_backup(store, &objects).await {
                Ok(()) => Outcome::Removed,
                Err(e) if is_locked(&e) => Outcome::Locked {
                    detail: e.to_string(),
                },
                Err(e) => {
                    let detail = e.to_string();
                    report.error.get_or_insert(e);
                    Outcome::Failed { detail }
                }
            }
        } else {
            Outcome::Planned
        };
        if let Outcome::Locked { detail } = &outcome {
            let reason = if locked.is_some() {
                detail.clone()
            } else {
                "locked".into()
            };
            report.keep.push(Kept {
                id: removal.id,
                reasons: vec![reason],
            });
        }
        report.remove.push(RemovalResult {
            id: removal.id,
            reason: removal.reason,
            objects,
            outcome,
        });
    }
    report.keep.sort_by_key(|b| std::cmp::Reverse(b.id));
    // Slices go only once every backup that needs them is gone; a backup whose delete
    // failed may still be whole, so it counts as kept.
    let staying = report.keep.iter().map(|k| k.id).chain(
        report
            .remove
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
            .map(|r| r.id),
    );
    let kept_points: Vec<bson::Timestamp> = staying
        .filter_map(|id| inv.points.get(&id).copied())
        .collect();
    let (slices, failure) = slices::prune(store, &kept_points, policy.grace, apply, now).await?;
    report.slices = slices;
    if let Some(e) = failure {
        report.error.get_or_insert(e);
    }
    if apply {
        match crate::catalog::abort_abandoned_uploads(store, policy.grace).await {
            Ok(n) => report.aborted_uploads = n,
            Err(e) => {
                report.error.get_or_insert(e);
            }
        }
    }
    Ok(report)
}

/// What keeps a backup's objects from being deleted, if anything does at `now`: a legal hold
/// on any of them (it has no end), or the latest Object Lock retention, from the manifest's
/// record and each object's own retention where the destination tells it (a backup cut off
/// before its manifest has only the latter).
async fn locked_by(
    store: &Store,
    id: BackupId,
    objects: &[String],
    now: OffsetDateTime,
) -> Result<Option<String>> {
    let mut until: Option<OffsetDateTime> = None;
    let mut later = |t: OffsetDateTime| {
        if t > now && until.is_none_or(|u| t > u) {
            until = Some(t);
        }
    };
    if let Some(bytes) = store.get(&id.manifest_key()).await? {
        if let Ok(m) = crate::manifest::Manifest::parse(&bytes) {
            if let Some(t) = m
                .storage
                .object_lock
                .and_then(|l| crate::layout::parse_time(&l.retain_until).ok())
            {
                later(t);
            }
        }
    }
    for key in objects {
        match store.lock_state(key).await {
            // A version under legal hold cannot be deleted until the hold is lifted; a
            // delete would only add a delete marker in front of it.
            Ok(state) if state.legal_hold => {
                return Ok(Some(format!("locked: {key} is under a legal hold")))
            }
            Ok(state) => {
                if let Some(r) = state.retention {
                    later(r.until);
                }
            }
            // A role without s3:GetObjectRetention still prunes by the manifest's record.
            Err(StoreError::AccessDenied { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(until.map(|t| format!("locked until {}", crate::layout::format_time(t))))
}

async fn delete_backup(store: &Store, objects: &[String]) -> Result<(), StoreError> {
    let (manifest, rest): (Vec<String>, Vec<String>) = objects
        .iter()
        .cloned()
        .partition(|k| k.ends_with(&format!("/{MANIFEST_NAME}")));
    if !manifest.is_empty() {
        store.delete(&manifest).await?;
    }
    if !rest.is_empty() {
        store.delete(&rest).await?;
    }
    Ok(())
}

/// `latest.json` names the newest successful backup, which every plan keeps; it can name an
/// older one when a newer run failed to update it, and then that backup is kept rather than
/// leave monitoring pointing at nothing.
async fn protect_latest(store: &Store, plan: &mut Plan) -> Result<()> {
    let Some(latest) = crate::catalog::read_latest(store).await? else {
        return Ok(());
    };
    let Ok(id) = latest.backup_id.parse::<BackupId>() else {
        return Ok(());
    };
    if keep_instead(plan, id, "named by latest.json") {
        tracing::warn!(backup_id = %id, "latest.json names a backup the plan removes; keeping it");
    }
    Ok(())
}

/// Moves `id` from the plan's removals to what it keeps; whether it was to be removed.
fn keep_instead(plan: &mut Plan, id: BackupId, reason: &str) -> bool {
    let Some(at) = plan.remove.iter().position(|r| r.id == id) else {
        return false;
    };
    plan.remove.remove(at);
    plan.keep.push(Kept {
        id,
        reasons: vec![reason.into()],
    });
    plan.keep.sort_by_key(|b| std::cmp::Reverse(b.id));
    true
}

/// A refusal that retention settings on the bucket explain (Object Lock, legal hold, a deny
/// policy): the backup stays, and the run goes on.
fn is_locked(e: &StoreError) -> bool {
    match e {
        StoreError::AccessDenied { .. } => true,
        StoreError::S3 { code, status, .. } => {
            code == "AccessDenied" || code.contains("Lock") || *status == Some(403)
        }
        _ => false,
    }
}
