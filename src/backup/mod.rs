//! `nightdump backup`: one whole deployment, streamed as a mongodump-compatible gzip archive
//! into a destination, then sealed by its manifest.
//!
//! The order of effects is the contract: the archive is completed first, the manifest is
//! written only after it (and is the only mark of success), `latest.json` only after that.
//! Any failure before the manifest aborts the upload, so a failed run leaves nothing that
//! looks complete.

pub mod compress;
mod oplog;
mod pipeline;
pub(crate) mod sink;
pub mod spill;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nightdump_archive::Header;
use time::OffsetDateTime;

pub use crate::sink::{FinishWrite, SinkWrapper, Stored};
pub use oplog::OplogPoint;
pub(crate) use oplog::{newest_point as newest_oplog_point, selected as select_oplog_entry};
pub use pipeline::OplogOutcome;

use crate::error::{Error, Result};
use crate::layout::{format_time, BackupId, ARCHIVE_NAME, LATEST_KEY};
use crate::manifest::{self, crc_hex, Manifest, NamespaceEntry};
use crate::namespace::NamespaceFilter;
use crate::progress::Progress;
use crate::source::{Source, SourceOptions};
use crate::store::{Destination, PutOptions, S3Options, Sse, Store, StoreError};

/// Everything a backup needs, validated before any connection is made.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub source: SourceOptions,
    pub filter: NamespaceFilter,
    /// Collections read at once; also the archive's `concurrent_collections`.
    pub parallel: usize,
    /// The schedule time this run stands for: it names the backup, so a duplicate trigger
    /// finds the finished backup instead of making a second one.
    pub scheduled_at: Option<OffsetDateTime>,
    pub compression_level: u32,
    /// Threads compressing the archive (see [`compress`]); the cores this process may use by
    /// default.
    pub compress_threads: usize,
    /// When the run must have given up (Lambda's deadline less a margin).
    pub deadline: Option<tokio::time::Instant>,
    /// The S3 settings the store was opened with, recorded in the manifest (never secrets).
    pub s3: S3Options,
    /// Client-side encryption of the stored object, after compression.
    pub encrypt: Option<crate::crypto::Encrypt>,
    /// Capture the oplog during the dump on a replica set (the point-in-time backup).
    pub oplog: bool,
    /// Back up a source that cannot be made consistent to one point in time (a standalone
    /// server, a mongos, or `oplog` off) instead of refusing.
    pub allow_inconsistent: bool,
    /// Unfinished uploads under the destination older than this are a killed run's and are
    /// aborted before the backup starts; younger ones may belong to a run in progress.
    pub stale_upload_age: Duration,
    /// Make the backup even when `filter` selects no collection (only users and roles).
    pub allow_empty: bool,
}

pub const MAX_PARALLEL: usize = 64;

/// Where a run is, so that a deadline names what it was waiting for.
const PREPARING: u8 = 0;
const CONNECTING: u8 = 1;
const DUMPING: u8 = 2;

impl BackupOptions {
    pub fn validate(&self) -> Result<()> {
        if self.parallel == 0 || self.parallel > MAX_PARALLEL {
            return Err(Error::invalid(format!(
                "--parallel must be between 1 and {MAX_PARALLEL}, got {}",
                self.parallel
            )));
        }
        if self.compress_threads == 0 || self.compress_threads > compress::MAX_COMPRESS_THREADS {
            return Err(Error::invalid(format!(
                "--compress-threads must be between 1 and {}, got {}",
                compress::MAX_COMPRESS_THREADS,
                self.compress_threads
            )));
        }
        if !(1..=9).contains(&self.compression_level) {
            return Err(Error::invalid(format!(
                "--compression-level must be between 1 and 9, got {}",
                self.compression_level
            )));
        }
        if let Some(t) = self.scheduled_at {
            crate::layout::check_not_future("--scheduled-at", t, OffsetDateTime::now_utc())
                .map_err(Error::Invalid)?;
        }
        if !self.oplog && !self.allow_inconsistent {
            return Err(Error::invalid(
                "--no-oplog leaves the backup inconsistent (each collection read at its own time): add --allow-inconsistent to confirm",
            ));
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub manifest: Manifest,
    /// True when a backup with this id was already complete and nothing was written.
    pub already_existed: bool,
    /// Set when the backup succeeded but `latest.json` could not be updated.
    pub latest_warning: Option<String>,
}

/// What a backup run reports, the same for every front end: the CLI's `--json` and the
/// Lambda's response.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackupSummary {
    pub backup_id: String,
    pub already_existed: bool,
    pub destination: String,
    /// The archive's key, relative to the destination.
    pub archive: String,
    /// Stored bytes, and their SHA-256.
    pub size: u64,
    pub sha256: String,
    pub namespaces: u64,
    pub documents: u64,
    /// Uncompressed BSON bytes of the documents.
    pub bytes: u64,
    pub scheduled_at: Option<String>,
    pub duration_seconds: f64,
    pub latest_warning: Option<String>,
    /// The point in time a replica set's backup is consistent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<manifest::PointInTime>,
}

impl BackupOutcome {
    /// The run's report for `destination`.
    pub fn summary(&self, destination: &Destination) -> BackupSummary {
        let m = &self.manifest;
        BackupSummary {
            backup_id: m.backup_id.clone(),
            already_existed: self.already_existed,
            destination: destination.to_string(),
            archive: m.archive.key.clone(),
            size: m.archive.size,
            sha256: m.archive.sha256.clone(),
            namespaces: m.totals.namespaces,
            documents: m.totals.documents,
            bytes: m.totals.bytes,
            scheduled_at: m.scheduled_at.clone(),
            duration_seconds: m.duration_seconds,
            latest_warning: self.latest_warning.clone(),
            point_in_time: m.point_in_time.clone(),
        }
    }
}

pub async fn run(
    options: &BackupOptions,
    store: &Store,
    progress: &Arc<Progress>,
) -> Result<BackupOutcome> {
    options.validate()?;
    let started = OffsetDateTime::now_utc();
    // Only a scheduled run is deduplicated: every trigger of one schedule time names the same
    // backup. A run by hand gets an id of its own, so it always makes its own backup.
    let id = match options.scheduled_at {
        Some(t) => BackupId::from_time(t),
        None => BackupId::unscheduled(started),
    };
    let manifest_key = id.manifest_key();
    if id.is_scheduled() {
        if let Some(existing) = store.get(&manifest_key).await? {
            let manifest = Manifest::parse(&existing).map_err(|e| Error::Integrity {
                id: id.to_string(),
                detail: e,
            })?;
            same_request(&manifest, options)?;
            tracing::info!(backup_id = %id, "backup already complete; nothing to do");
            return Ok(BackupOutcome {
                manifest,
                already_existed: true,
                latest_warning: None,
            });
        }
    }
    abort_stale_uploads(store, options.stale_upload_age).await;
    let phase = std::sync::atomic::AtomicU8::new(PREPARING);
    let work = run_new(options, store, progress, id, started, &manifest_key, &phase);
    let result = match options.deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, work).await {
            Ok(result) => result,
            // Out of time before MongoDB answered: the server is the problem, not the size.
            Err(_) if phase.load(std::sync::atomic::Ordering::Relaxed) == CONNECTING => {
                Err(Error::Deadline(format!(
                    "backup {id} was still waiting for MongoDB at {} to answer: check the host, the network path to it (VPC, security groups, IP access list) and TLS",
                    options.source.uri.redacted()
                )))
            }
            Err(_) => Err(Error::Deadline(format!(
                "backup {id} was not finished in time: raise the function's timeout, or run it where there is more time (the CLI has no deadline)"
            ))),
        },
        None => work.await,
    };
    if result.is_err() {
        // A run cut short drops its upload, whose abort then runs in the background: wait
        // for it, so no multipart upload outlives the process or the Lambda invocation.
        store.settle().await;
    }
    result
}

async fn run_new(
    options: &BackupOptions,
    store: &Store,
    progress: &Arc<Progress>,
    id: BackupId,
    started: OffsetDateTime,
    manifest_key: &str,
    phase: &std::sync::atomic::AtomicU8,
) -> Result<BackupOutcome> {
    let clock = Instant::now();
    // The data key comes first: a wrong or refused KMS key fails before MongoDB is touched.
    let prepared = match &options.encrypt {
        Some(e) => Some(e.prepare(&id.to_string()).await?),
        None => None,
    };
    phase.store(CONNECTING, std::sync::atomic::Ordering::Relaxed);
    let source = Source::connect(&options.source).await?;
    phase.store(DUMPING, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(target_uri = source.target(), server_version = %source.server_version, topology = source.topology.name(), "connected");
    // The start position is taken before the first read, discovery included.
    let capture = point_in_time_capture(options, &source).await?;
    let plans = crate::source::discover(&source, &options.filter).await?;
    if !options.filter.is_empty() && !options.allow_empty && !plans.iter().any(|p| p.is_user_data())
    {
        return Err(Error::invalid(format!(
            "the --include/--exclude patterns select no collection of {}: check them against `nightdump list`'s namespaces or the server's, or pass --allow-empty to back up only users and roles",
            source.target()
        )));
    }
    progress.namespaces_total.store(
        plans.len() as u64 + u64::from(capture.is_some()),
        std::sync::atomic::Ordering::Relaxed,
    );
    tracing::info!(namespaces = plans.len(), backup_id = %id, "discovered");

    let (archive_name, wrap_sink, encryption) = match prepared {
        Some(p) => (p.archive_name, Some(p.wrap), p.encryption),
        None => (ARCHIVE_NAME.to_string(), None, manifest::Encryption::none()),
    };
    let archive_key = id.archive_key(&archive_name);
    // One retention for every object of the backup, counted from its start.
    let retention = options.s3.object_lock.map(|l| l.retention_from(started));
    // The sizes the server reports size the upload's parts; an estimate that turns out low
    // is covered by the parts growing as the upload goes.
    let expected = Some(reported_bytes(&plans));
    let mut upload = store
        .start_upload(
            &archive_key,
            PutOptions::create().retained(retention).expecting(expected),
        )
        .await?;
    let settings = pipeline::DumpSettings {
        parallel: options.parallel,
        compression_level: options.compression_level,
        compress_threads: options.compress_threads,
        header: Header {
            concurrent_collections: i32::try_from(options.parallel).unwrap_or(4),
            version: "0.1".into(),
            server_version: archive_server_version(&source.server_version),
            tool_version: format!("nightdump-{}", env!("CARGO_PKG_VERSION")),
        },
        wrap_sink,
    };
    // A guard owns the upload until it is finished, so every early return (error, deadline,
    // cancellation) aborts it.
    let dumped = pipeline::dump(&source, &plans, settings, capture, &mut upload, progress).await;
    let dumped = match dumped {
        Ok(d) => d,
        Err(e) => {
            abort_quietly(upload, &archive_key).await;
            return Err(e);
        }
    };
    // Two runs of the same schedule time (a duplicate trigger) both get this far; only the
    // first archive is kept, so a manifest always describes the bytes next to it.
    let receipt = match upload.finish().await {
        Ok(receipt) => receipt,
        Err(StoreError::AlreadyExists { .. }) => {
            return completed_elsewhere(store, &id, manifest_key, options).await;
        }
        Err(e) => return Err(e.into()),
    };
    if receipt.size != dumped.stored.size {
        return Err(Error::Integrity {
            id: id.to_string(),
            detail: format!(
                "the destination stored {} bytes but {} were written",
                receipt.size, dumped.stored.size
            ),
        });
    }

    let finished = OffsetDateTime::now_utc();
    let mut builder = manifest::ManifestBuilder::new(
        id.to_string(),
        manifest_source(&source, options),
        manifest::Archive {
            key: archive_key,
            format: "mongodump-archive".into(),
            compression: "gzip".into(),
            compression_level: options.compression_level,
            size: dumped.stored.size,
            sha256: hex::encode(dumped.stored.sha256),
            encryption,
            concurrent_collections: options.parallel as u32,
        },
        manifest_storage(store, &options.s3, retention.as_ref()),
    )
    .times(
        options.scheduled_at.map(format_time),
        format_time(started),
        format_time(finished),
        round_ms(clock.elapsed()),
    )
    .point_in_time(dumped.oplog.map(point_in_time))
    .selection(manifest::Selection::of(&options.filter));
    for entry in namespace_entries(&plans, &dumped) {
        builder = builder.namespace(entry);
    }
    seal(
        store,
        options,
        id,
        manifest_key,
        builder.build(),
        retention.as_ref(),
    )
    .await
}

/// The BSON bytes the server reports for `plans` (documents × average size).
pub fn reported_bytes(plans: &[crate::source::CollectionPlan]) -> u64 {
    plans
        .iter()
        .map(|p| {
            p.estimated_documents
                .saturating_mul(p.average_document_size.unwrap_or(0))
        })
        .sum()
}

/// Writes the manifest, the only mark of success, then moves `latest.json` forward.
async fn seal(
    store: &Store,
    options: &BackupOptions,
    id: BackupId,
    manifest_key: &str,
    manifest: Manifest,
    retention: Option<&crate::store::Retention>,
) -> Result<BackupOutcome> {
    let body = Bytes::from(manifest.to_json());
    match store
        .put(
            manifest_key,
            body,
            PutOptions::create().retained(retention.copied()),
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::AlreadyExists { .. }) => {
            return completed_elsewhere(store, &id, manifest_key, options).await;
        }
        Err(e) => {
            discard_unsealed_archive(store, &manifest, manifest_key).await;
            return Err(e.into());
        }
    }
    tracing::info!(backup_id = %id, size = manifest.archive.size, documents = manifest.totals.documents, "backup complete");
    let latest_warning = update_latest(store, &manifest, manifest_key).await.err();
    if let Some(w) = &latest_warning {
        tracing::warn!(warning = %w, "latest.json was not updated");
    }
    Ok(BackupOutcome {
        manifest,
        already_existed: false,
        latest_warning,
    })
}

/// What the manifest records of the source: never a credential, only what it is and where.
fn manifest_source(source: &Source, options: &BackupOptions) -> manifest::Source {
    manifest::Source {
        server_version: source.server_version.clone(),
        topology: source.topology.name().into(),
        replica_set: match &source.topology {
            crate::source::Topology::ReplicaSet(name) => Some(name.clone()),
            _ => None,
        },
        hosts: source.hosts.clone(),
        seeds: options.source.uri.seeds().to_vec(),
    }
}

/// How the archive is stored, as the manifest records it (server-side settings only mean
/// something on S3).
pub(crate) fn manifest_storage(
    store: &Store,
    s3: &S3Options,
    retention: Option<&crate::store::Retention>,
) -> manifest::Storage {
    let is_s3 = matches!(store.destination(), Destination::S3 { .. });
    let (sse, kms_key_id) = match &s3.sse {
        _ if !is_s3 => ("none".to_string(), None),
        Sse::None => ("none".to_string(), None),
        Sse::S3 => ("AES256".to_string(), None),
        Sse::Kms { key_id } => ("aws:kms".to_string(), key_id.clone()),
    };
    manifest::Storage {
        backend: if is_s3 { "s3" } else { "file" }.into(),
        sse,
        kms_key_id,
        storage_class: s3.storage_class.clone().filter(|_| is_s3),
        object_lock: retention.map(|r| manifest::ObjectLock {
            mode: r.mode.to_string(),
            retain_until: format_time(r.until),
        }),
    }
}

/// The point in time a captured oplog reaches.
fn point_in_time(o: OplogOutcome) -> manifest::PointInTime {
    manifest::PointInTime {
        ts: o.end.ts.into(),
        wall: o.end.wall.and_then(|w| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(w.timestamp_millis()) * 1_000_000)
                .ok()
                .map(format_time)
        }),
        oplog_start: o.start.into(),
        oplog_entries: o.entries,
    }
}

/// Starts the oplog capture on a replica set; elsewhere refuses, unless told to go on without
/// a point in time. A mongos has no oplog of its own to tail (each shard has its own), which
/// is also why mongodump refuses `--oplog` there.
async fn point_in_time_capture(
    options: &BackupOptions,
    source: &Source,
) -> Result<Option<oplog::OplogCapture>> {
    use crate::source::Topology;
    let what = match &source.topology {
        Topology::ReplicaSet(_) if options.oplog => {
            let spill = spill::SpillBuffer::new(spill::DEFAULT_MEMORY_CAP);
            return oplog::OplogCapture::start(source, spill, &options.filter)
                .await
                .map(Some);
        }
        Topology::ReplicaSet(_) => "--no-oplog was given",
        Topology::Standalone => "it is a standalone server, which has no oplog",
        Topology::Sharded => {
            "it is a sharded cluster (mongos), whose shards each have their own oplog"
        }
    };
    if !options.allow_inconsistent {
        return Err(Error::invalid(format!(
            "cannot guarantee a consistent backup of {}: {what}; pass --allow-inconsistent (NIGHTDUMP_ALLOW_INCONSISTENT=true for the Lambda) to back it up anyway, each collection as of its own read",
            source.target()
        )));
    }
    tracing::warn!(
        target_uri = source.target(),
        reason = what,
        "the backup is not consistent to one point in time: each collection is as of its own read"
    );
    Ok(None)
}

/// mongorestore since 100.16 refuses a prelude whose version is not x.y.z.
fn archive_server_version(version: &str) -> String {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        version.to_string()
    } else {
        "0.0.0".to_string()
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

async fn abort_quietly(upload: crate::store::Upload, key: &str) {
    if let Err(e) = upload.abort().await {
        tracing::error!(key, error = %e, "could not abort the unfinished upload; a bucket lifecycle rule that aborts incomplete multipart uploads will remove it");
    }
}

/// How long a run that stored this backup's archive first may take to write its manifest.
const MANIFEST_WAIT: Duration = Duration::from_secs(60);

/// The default of [`BackupOptions::stale_upload_age`]: far longer than any run.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(12 * 3600);

/// The outcome of a duplicate run that lost the race to another run of the same backup id:
/// that run's backup, once its manifest is there. A duplicate trigger is not a failure.
async fn completed_elsewhere(
    store: &Store,
    id: &BackupId,
    manifest_key: &str,
    options: &BackupOptions,
) -> Result<BackupOutcome> {
    let waited = Instant::now();
    let mut round = 0;
    loop {
        if let Some(bytes) = store.get(manifest_key).await? {
            let manifest = Manifest::parse(&bytes).map_err(|detail| Error::Integrity {
                id: id.to_string(),
                detail,
            })?;
            same_request(&manifest, options)?;
            tracing::info!(backup_id = %id, "another run completed this backup at the same time; its backup was kept");
            return Ok(BackupOutcome {
                manifest,
                already_existed: true,
                latest_warning: None,
            });
        }
        if waited.elapsed() >= MANIFEST_WAIT {
            return Err(Error::Integrity {
                id: id.to_string(),
                detail: format!(
                    "another run stored this backup's archive but wrote no manifest within {}s; run the backup again once `nightdump prune` has removed the incomplete backup",
                    MANIFEST_WAIT.as_secs()
                ),
            });
        }
        crate::backoff::OTHER_RUNS_MANIFEST.wait(round).await;
        round += 1;
    }
}

/// A duplicate trigger repeats the stored backup's request: the same source and the same
/// selection. Anything else under the same schedule time is a mistake that must not pass
/// for a success, since the backup asked for was never made.
fn same_request(stored: &Manifest, options: &BackupOptions) -> Result<()> {
    let selection = manifest::Selection::of(&options.filter);
    let seeds = options.source.uri.seeds();
    let other_source = !stored.source.seeds.is_empty() && stored.source.seeds != seeds;
    if stored.selection == selection && !other_source {
        return Ok(());
    }
    let what = if other_source {
        format!(
            "of {} (this run is for {})",
            stored.source.seeds.join(","),
            seeds.join(",")
        )
    } else {
        format!(
            "with selection '{}' (this run asks for '{}')",
            stored.selection.describe(),
            selection.describe()
        )
    };
    Err(Error::invalid(format!(
        "backup {} for this schedule time already exists {what}: a repeated trigger must ask for the same backup; give another --scheduled-at, or leave it out to make a new backup",
        stored.backup_id
    )))
}

/// After the manifest could not be written, removes the archive this run stored, so that a
/// retry of the same schedule time can store its own; kept when the manifest is there after
/// all (the write may have succeeded unseen) or when that cannot be told.
async fn discard_unsealed_archive(store: &Store, manifest: &Manifest, manifest_key: &str) {
    let sealed = match store.get(manifest_key).await {
        Ok(Some(_)) | Err(_) => true,
        Ok(None) => false,
    };
    if !sealed {
        if let Err(e) = store
            .delete(std::slice::from_ref(&manifest.archive.key))
            .await
        {
            tracing::warn!(key = manifest.archive.key, error = %e, "could not remove the archive of a backup without a manifest; prune removes it after its grace period");
        }
    }
}

/// Aborts unfinished uploads of backups under the destination that no run can still be
/// writing: a run killed outright (SIGKILL, out of memory, a Lambda timeout) never aborts its
/// own. Best effort: a bucket lifecycle rule that aborts incomplete multipart uploads is the
/// backstop.
async fn abort_stale_uploads(store: &Store, age: Duration) {
    match crate::catalog::abort_abandoned_uploads(store, age).await {
        Ok(0) => {}
        Ok(aborted) => tracing::info!(
            aborted,
            "aborted unfinished uploads of runs that were killed"
        ),
        Err(e) => tracing::warn!(error = %e, "could not abort every stale unfinished upload"),
    }
}

/// The manifest's namespaces: each collection's counts, CRC and digests, then the oplog's.
fn namespace_entries(
    plans: &[crate::source::CollectionPlan],
    dumped: &pipeline::DumpResult,
) -> Vec<NamespaceEntry> {
    let digest = |i: usize| dumped.digests.get(i).map(|d| d.hex());
    let mut entries = Vec::with_capacity(plans.len() + 1);
    for (i, (p, s)) in plans.iter().zip(&dumped.summaries).enumerate() {
        let (indexes_digest, options_digest) = crate::digest::metadata_digests(&p.metadata).unzip();
        entries.push(NamespaceEntry {
            db: p.db.clone(),
            collection: p.collection.clone(),
            kind: p.kind,
            documents: s.documents,
            bytes: s.bytes,
            crc64: crc_hex(s.crc),
            digest: digest(i),
            indexes_digest,
            options_digest,
        });
    }
    if let (Some(_), Some(s)) = (&dumped.oplog, dumped.summaries.get(plans.len())) {
        entries.push(NamespaceEntry {
            db: String::new(),
            collection: "oplog".into(),
            kind: crate::namespace::NamespaceKind::Oplog,
            documents: s.documents,
            bytes: s.bytes,
            crc64: crc_hex(s.crc),
            digest: digest(plans.len()),
            indexes_digest: None,
            options_digest: None,
        });
    }
    entries
}

/// Moves `latest.json` forward, never backwards: by completion time, so a backup finishing
/// before the one named there (or one named for a time long past or ahead) leaves it alone,
/// and a filtered backup never replaces a full one. The read and the write are one
/// conditional update, so two runs finishing together cannot leave the older one in place.
async fn update_latest(
    store: &Store,
    manifest: &Manifest,
    manifest_key: &str,
) -> Result<(), String> {
    let body = Bytes::from(
        serde_json::to_vec_pretty(&manifest.latest(manifest_key.to_string()))
            .map_err(|e| e.to_string())?,
    );
    let ours = manifest.latest(manifest_key.to_string());
    store
        .update(LATEST_KEY, move |current| {
            let current =
                current.and_then(|bytes| serde_json::from_slice::<manifest::Latest>(bytes).ok());
            if !ours.supersedes(current.as_ref()) {
                return None;
            }
            // The oplog chain's window is the captures' to move, the last drill the drills':
            // both are carried over.
            match current.map(|c| (c.pitr, c.drill)) {
                None | Some((None, None)) => Some(body.clone()),
                Some((pitr, drill)) => {
                    let mut merged = ours.clone();
                    merged.pitr = pitr;
                    merged.drill = drill;
                    serde_json::to_vec_pretty(&merged).ok().map(Bytes::from)
                }
            }
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_version_is_always_parseable_by_mongorestore() {
        assert_eq!(archive_server_version("7.0.14"), "7.0.14");
        assert_eq!(archive_server_version("7.0.14-rc0"), "7.0.14-rc0");
        assert_eq!(archive_server_version("unknown"), "0.0.0");
        assert_eq!(archive_server_version("7.0"), "0.0.0");
    }
}
