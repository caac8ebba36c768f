//! Retention end to end: a history of backups at a directory and on S3 (moto), a dry run that
//! deletes nothing, then `--yes` deleting exactly the plan and leaving the newest verifiable.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use nightdump::backup;
use nightdump::catalog::Selector;
use nightdump::layout::{parse_time, BackupId};
use nightdump::prune::{self, Outcome, Policy};
use nightdump::store::{Destination, S3Options, Store};

use crate::harness::*;
use crate::support::listing;
use crate::support::moto::Moto;

const NEWEST: &str = "2026-11-25T03:00:00Z";
/// Stands for a run that died long ago: an archive and no manifest.
const OLD_INCOMPLETE: &str = "20261001T150000Z";
/// Stands for a run that may still be going: written just now.
const YOUNG_INCOMPLETE: &str = "20261124T150000Z";
const FOREIGN_IN_REMOVED: &str = "20261010T030000Z/notes.txt";
const FOREIGN_ELSEWHERE: &str = "operators/readme.txt";

/// `--keep-daily 7 --keep-weekly 4` over daily backups from 1 October to 25 November 2026:
/// the seven newest days, then the newest of ISO weeks 46 (Sunday 15th) and 45 (Sunday 8th);
/// weeks 48 and 47 are already kept by days.
const KEPT: [&str; 9] = [
    "20261125T030000Z",
    "20261124T030000Z",
    "20261123T030000Z",
    "20261122T030000Z",
    "20261121T030000Z",
    "20261120T030000Z",
    "20261119T030000Z",
    "20261115T030000Z",
    "20261108T030000Z",
];

fn policy() -> Policy {
    Policy {
        daily: 7,
        weekly: 4,
        ..Policy::default()
    }
}

/// One real backup (the newest), and minimal complete backups for the days before it: a
/// two-byte archive and a manifest that describes it (its own id, key and size), which is
/// all that `complete` asks of a backup that is never restored.
async fn seed(store: &Store, uri: &str) -> Vec<String> {
    let mut opts = options(uri);
    opts.scheduled_at = Some(parse_time(NEWEST).unwrap());
    let outcome = backup::run(&opts, store, &progress()).await.unwrap();
    assert!(!outcome.already_existed);

    let first = parse_time("2026-10-01T03:00:00Z").unwrap();
    let mut ids = Vec::new();
    for day in 0..55 {
        let id = BackupId::from_time(first + time::Duration::days(day));
        put_minimal_backup(store, &outcome.manifest, id).await;
        ids.push(id.to_string());
    }
    for key in [
        format!("{OLD_INCOMPLETE}/dump.archive.gz"),
        format!("{YOUNG_INCOMPLETE}/dump.archive.gz"),
        FOREIGN_IN_REMOVED.to_string(),
        FOREIGN_ELSEWHERE.to_string(),
    ] {
        store
            .put(
                &key,
                Bytes::from_static(b"x"),
                nightdump::store::PutOptions::default(),
            )
            .await
            .unwrap();
    }
    ids
}

/// A complete backup `id` that costs two bytes: `template`'s manifest, made to describe it.
pub async fn put_minimal_backup(
    store: &Store,
    template: &nightdump::manifest::Manifest,
    id: BackupId,
) {
    let mut m = template.clone();
    m.backup_id = id.to_string();
    m.archive.key = id.archive_key("dump.archive.gz");
    m.archive.size = 2;
    store
        .put(
            &m.archive.key,
            Bytes::from_static(b"gz"),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
    store
        .put(
            &id.manifest_key(),
            Bytes::from(m.to_json()),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
}

async fn keys(store: &Store) -> BTreeSet<String> {
    listing::keys(store, "").await.into_iter().collect()
}

/// Runs the dry run and the real prune, and checks what both did; `old_incomplete_removed`
/// says whether the old incomplete backup is past the grace period at this destination.
async fn prune_and_check(store: &Store, seeded: &[String], old_incomplete_removed: bool) {
    let before = keys(store).await;

    let dry = prune::run(store, &policy(), false, None).await.unwrap();
    assert_eq!(keys(store).await, before, "a dry run deletes nothing");
    assert!(!dry.applied);
    assert!(dry.remove.iter().all(|r| r.outcome == Outcome::Planned));

    let mut expected_removed: BTreeSet<String> = seeded
        .iter()
        .filter(|id| !KEPT.contains(&id.as_str()))
        .cloned()
        .collect();
    if old_incomplete_removed {
        expected_removed.insert(OLD_INCOMPLETE.to_string());
    }
    let planned: BTreeSet<String> = dry.remove.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(planned, expected_removed);
    let mut expected_kept: BTreeSet<String> = KEPT.iter().map(|s| s.to_string()).collect();
    expected_kept.insert(YOUNG_INCOMPLETE.to_string());
    if !old_incomplete_removed {
        expected_kept.insert(OLD_INCOMPLETE.to_string());
    }
    let kept: BTreeSet<String> = dry.keep.iter().map(|k| k.id.to_string()).collect();
    assert_eq!(kept, expected_kept);
    let newest = dry
        .keep
        .iter()
        .find(|k| k.id.to_string() == KEPT[0])
        .unwrap();
    assert_eq!(newest.reasons, ["daily 2026-11-25", "weekly 2026-W48"]);
    assert_eq!(dry.foreign, [FOREIGN_IN_REMOVED]);

    let done = prune::run(store, &policy(), true, None).await.unwrap();
    assert!(done.applied);
    assert!(done.error.is_none());
    assert!(done.remove.iter().all(|r| r.outcome == Outcome::Removed));
    let deleted: BTreeSet<String> = done
        .remove
        .iter()
        .flat_map(|r| r.objects.iter().cloned())
        .collect();
    let after = keys(store).await;
    assert_eq!(
        after,
        before
            .difference(&deleted)
            .cloned()
            .collect::<BTreeSet<_>>(),
        "exactly the planned objects are gone"
    );
    for id in &expected_removed {
        assert!(
            after
                .iter()
                .all(|k| !k.starts_with(&format!("{id}/")) || k.as_str() == FOREIGN_IN_REMOVED),
            "{id} left objects behind"
        );
    }
    assert!(after.contains(FOREIGN_IN_REMOVED));
    assert!(after.contains(FOREIGN_ELSEWHERE));
    assert!(after.contains("latest.json"));

    let report = nightdump::verify::verify(store, &Selector::Latest, None)
        .await
        .unwrap();
    assert_eq!(report.backup_id, KEPT[0]);

    // Once applied, the same policy has nothing more to remove.
    let again = prune::run(store, &policy(), false, None).await.unwrap();
    assert!(again.remove.is_empty(), "{:?}", again.remove);
}

#[tokio::test]
async fn prune_a_directory() {
    let source = demo_source().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let seeded = seed(&store, &source.uri).await;
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86400);
    std::fs::File::options()
        .write(true)
        .open(dir.path().join(OLD_INCOMPLETE).join("dump.archive.gz"))
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    prune_and_check(&store, &seeded, true).await;
}

#[tokio::test]
async fn prune_an_s3_prefix() {
    let source = demo_source().await;
    let moto = Moto::shared();
    let bucket = moto.create_bucket("prune").await;
    let sdk = Moto::sdk_config_for(&moto.endpoint()).await;
    let s3 = S3Options {
        force_path_style: true,
        ..S3Options::default()
    };
    let dest: Destination = format!("s3://{bucket}/nightly").parse().unwrap();
    let store = Store::open_with_sdk_config(&dest, &sdk, &s3).await.unwrap();
    let seeded = seed(&store, &source.uri).await;
    // Every object was written just now: the incomplete backups are within the grace period.
    prune_and_check(&store, &seeded, false).await;
}

#[tokio::test]
async fn a_policy_without_rules_is_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    store
        .put(
            "20261125T030000Z/manifest.json",
            Bytes::from_static(b"{}"),
            nightdump::store::PutOptions::default(),
        )
        .await
        .unwrap();
    let err = prune::run(&store, &Policy::default(), true, None)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains("--keep-daily"), "{err}");
    assert_eq!(keys(&store).await.len(), 1);
}
