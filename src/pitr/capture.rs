//! `nightdump oplog`: stores, as one slice, every oplog entry written since the end of the
//! chain (or the newest backup's point in time, when there is no chain yet) up to the newest
//! majority-committed entry, then exits. A short run: meant for a schedule every few minutes.

use std::sync::Arc;
use std::time::Instant;

use bson::{doc, RawDocumentBuf, Timestamp};
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::StreamExt;
use mongodb::error::ErrorKind;
use mongodb::options::ReadConcern;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::backup::sink::ChunkSink;
use crate::chain::{self, key, Chain, Continues, EntriesObject, Link, LinkKind, LinkManifest};
use crate::error::{Error, Result};
use crate::layout::format_time;
use crate::manifest::{Encryption, OplogTimestamp};
use crate::progress::Progress;
use crate::sink::{FinishWrite, Stored};
use crate::source::{Source, SourceOptions, Topology};
use crate::store::{Destination, PutOptions, S3Options, Store, StoreError};

/// How a capture stopped by a signal ends.
pub const STOPPED: &str =
    "the capture's upload was aborted and no slice was marked complete; the next capture covers its range";

/// CappedPositionLost: the cursor's next entry was overwritten.
const CAPPED_POSITION_LOST: i32 = 136;
/// Entries handed to the compressor at once.
const BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub source: SourceOptions,
    /// The S3 settings the store was opened with (SSE, storage class, Object Lock).
    pub s3: S3Options,
    pub encrypt: Option<crate::crypto::Encrypt>,
    pub compression_level: u32,
    /// When the run must have given up (Lambda's deadline less a margin).
    pub deadline: Option<tokio::time::Instant>,
    /// Cancelled on SIGTERM/SIGINT: the capture stops between two entries, aborts its upload
    /// and stores nothing.
    pub cancel: tokio_util::sync::CancellationToken,
}

/// How a capture ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureStatus {
    /// This run stored the slice.
    Stored,
    /// Another run stored the slice for the same range first; this run's was discarded.
    StoredByAnotherRun,
    /// No entry was written since the end of the chain.
    UpToDate,
}

#[derive(Debug, Clone)]
pub struct CaptureOutcome {
    pub status: CaptureStatus,
    /// The link stored (by this run or the winner), when there is one.
    pub link: Option<Link>,
    /// Where the chain ended before this run.
    pub after: Timestamp,
    pub window: Option<chain::Window>,
    /// Set when the slice was stored but `latest.json` could not be updated.
    pub latest_warning: Option<String>,
}

/// What a capture reports, the same for every front end.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CaptureSummary {
    pub status: CaptureStatus,
    pub destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    pub after: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    pub entries: u64,
    pub bytes: u64,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<chain::Window>,
    pub latest_warning: Option<String>,
}

impl CaptureOutcome {
    pub fn summary(&self, destination: &Destination) -> CaptureSummary {
        let m = self.link.as_ref().map(|l| &l.manifest);
        CaptureSummary {
            status: self.status.clone(),
            destination: destination.to_string(),
            slice: self.link.as_ref().map(|l| l.dir.clone()),
            after: chain::describe(self.after),
            last: m.map(|m| chain::describe(m.last())),
            entries: m.map_or(0, |m| m.entries),
            bytes: m.map_or(0, |m| m.bytes),
            size: m.and_then(|m| m.object.as_ref()).map_or(0, |o| o.size),
            window: self.window.clone(),
            latest_warning: self.latest_warning.clone(),
        }
    }
}

impl CaptureOptions {
    pub fn validate(&self) -> Result<()> {
        if !(1..=9).contains(&self.compression_level) {
            return Err(Error::invalid(format!(
                "--compression-level must be between 1 and 9, got {}",
                self.compression_level
            )));
        }
        Ok(())
    }
}

pub async fn run(options: &CaptureOptions, store: &Store) -> Result<CaptureOutcome> {
    options.validate()?;
    let work = capture(options, store);
    let result = match options.deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::Deadline(
                "the oplog capture was not finished in time; its upload was aborted and the next capture covers the same range: capture more often, or raise the function's timeout".into(),
            )),
        },
        None => work.await,
    };
    if result.is_err() {
        store.settle().await;
    }
    result
}

async fn capture(options: &CaptureOptions, store: &Store) -> Result<CaptureOutcome> {
    let started = OffsetDateTime::now_utc();
    let clock = Instant::now();
    let chain = chain::read(store).await?;
    let listings = crate::catalog::list(store).await?;
    let bases = crate::catalog::chain_bases(&listings);
    let (after, continues, expected_set) = start_point(&chain, &bases, store)?;
    let (source, set) = connect(options, expected_set, store).await?;
    let end = newest_committed(&source).await?;
    let up_to_date = |after: Timestamp| {
        tracing::info!(after = %chain::describe(after), "no oplog entry since the end of the chain");
        CaptureOutcome {
            status: CaptureStatus::UpToDate,
            link: None,
            after,
            window: chain.window(&bases, OffsetDateTime::now_utc()),
            latest_warning: None,
        }
    };
    let gap = GapContext {
        store,
        set: &set,
        source: &source,
        started,
    };
    let Some((after, continues, cursor)) =
        continue_from(&gap, &bases, after, continues, end).await?
    else {
        return Ok(up_to_date(after));
    };
    if options.cancel.is_cancelled() {
        return Err(Error::Interrupted(STOPPED.into()));
    }
    let dir = chain::link_dir(after);
    let retention = options.s3.object_lock.map(|l| l.retention_from(started));
    let (suffix, wrap, encryption) = encryption(options, &dir).await?;
    let tag = crate::layout::BackupId::unscheduled(started).to_string();
    let object_key = format!("{dir}/{tag}.{}{suffix}", chain::ENTRIES_SUFFIX);
    tracing::info!(slice = dir, after = %chain::describe(after), to = %chain::describe(end), "capturing the oplog");
    let mut upload = store
        .start_upload(&object_key, PutOptions::create().retained(retention))
        .await?;
    let streamed = stream(
        &source,
        cursor,
        wrap,
        options.compression_level,
        &mut upload,
        &options.cancel,
    )
    .await;
    let streamed = match streamed {
        Ok(s) => s,
        Err(e) => {
            if let Err(abort) = upload.abort().await {
                tracing::error!(key = object_key, error = %abort, "could not abort the unfinished upload; a bucket lifecycle rule that aborts incomplete multipart uploads will remove it");
            }
            return Err(e);
        }
    };
    let receipt = upload.finish().await?;
    if receipt.size != streamed.stored.size {
        return Err(Error::Integrity {
            id: dir,
            detail: format!(
                "the destination stored {} bytes but {} were written",
                receipt.size, streamed.stored.size
            ),
        });
    }
    let Some(last) = streamed.last else {
        // Only the entry at `after` was there: nothing new after all.
        discard(store, &object_key).await;
        return Ok(up_to_date(after));
    };
    let manifest = LinkManifest {
        schema_version: chain::SCHEMA_VERSION,
        kind: LinkKind::Slice,
        after: after.into(),
        first: streamed.first.map(OplogTimestamp::from),
        last: OplogTimestamp::from(last.0),
        last_wall: last.1,
        continues,
        entries: streamed.entries,
        bytes: streamed.bytes,
        object: Some(EntriesObject {
            key: object_key.clone(),
            size: streamed.stored.size,
            sha256: hex::encode(streamed.stored.sha256),
            encryption,
        }),
        storage: Some(crate::backup::manifest_storage(
            store,
            &options.s3,
            retention.as_ref(),
        )),
        source: chain::LinkSource {
            replica_set: set.clone(),
            hosts: source.hosts.clone(),
        },
        started_at: format_time(started),
        finished_at: format_time(OffsetDateTime::now_utc()),
        duration_seconds: (clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    };
    let sealed = Sealing {
        store,
        dir: &dir,
        object_key: &object_key,
        retention,
        after,
    };
    sealed.seal(manifest, chain, &bases).await
}

/// Connects to the source, which must be a replica set, and the one the chain is of.
async fn connect(
    options: &CaptureOptions,
    expected_set: Option<String>,
    store: &Store,
) -> Result<(Source, String)> {
    let source = Source::connect(&options.source).await?;
    let set = match &source.topology {
        Topology::ReplicaSet(name) => name.clone(),
        other => {
            return Err(Error::invalid(format!(
                "{} is {}, which has no oplog to capture: point --uri at the replica set",
                source.target(),
                match other {
                    Topology::Sharded => "a sharded cluster (mongos)",
                    _ => "a standalone server",
                }
            )))
        }
    };
    if let Some(expected) = expected_set.filter(|e| *e != set) {
        return Err(Error::invalid(format!(
            "{} is replica set '{set}', but the chain at {} continues replica set '{expected}': capture from the deployment the backups are of, or use another destination",
            source.target(),
            store.destination()
        )));
    }
    Ok((source, set))
}

/// Opens the entries after the chain's end, up to `end`. When the oplog has rolled past the
/// chain's end, a backup taken since starts a new chain (as long as its own point is still
/// there), the entries in between recorded as a gap; without one the capture fails, the gap
/// recorded. `None` when nothing was written since.
async fn continue_from(
    gap: &GapContext<'_>,
    bases: &[chain::Base],
    mut after: Timestamp,
    mut continues: Continues,
    end: Timestamp,
) -> Result<Option<(Timestamp, Continues, mongodb::Cursor<RawDocumentBuf>)>> {
    let mut restarted = false;
    loop {
        if key(end) <= key(after) {
            return Ok(None);
        }
        let (cursor, first) = open_range(gap.source, after, end).await?;
        if key(first) == key(after) {
            return Ok(Some((after, continues, cursor)));
        }
        let newer = bases
            .iter()
            .filter(|b| key(b.point_in_time) > key(after))
            .max_by_key(|b| key(b.point_in_time));
        match newer {
            Some(base) if !restarted => {
                let recorded = gap
                    .record(after, base.point_in_time, continues.clone())
                    .await;
                tracing::warn!(
                    lost_after = %chain::describe(after),
                    lost_to = %chain::describe(base.point_in_time),
                    backup = %base.id,
                    recorded,
                    "the oplog rolled past the end of the chain; a new chain starts at the newest backup's point in time"
                );
                after = base.point_in_time;
                continues = Continues::Backup(base.id.to_string());
                restarted = true;
            }
            _ => {
                let recorded = gap.record(after, first, continues.clone()).await;
                return Err(gap_error(after, first, &recorded));
            }
        }
    }
}

/// The entries object's name suffix, its encryption stage and the manifest's record of it.
async fn encryption(
    options: &CaptureOptions,
    dir: &str,
) -> Result<(String, Option<crate::sink::SinkWrapper>, Encryption)> {
    let prepared = match &options.encrypt {
        Some(e) => e.prepare(dir).await?,
        None => return Ok((String::new(), None, Encryption::none())),
    };
    let suffix = prepared
        .archive_name
        .strip_prefix(crate::layout::ARCHIVE_NAME)
        .unwrap_or("")
        .to_string();
    Ok((suffix, Some(prepared.wrap), prepared.encryption))
}

/// Where the next slice starts: the end of the chain, or the newest backup's point in time
/// when there is no chain yet.
fn start_point(
    chain: &Chain,
    bases: &[chain::Base],
    store: &Store,
) -> Result<(Timestamp, Continues, Option<String>)> {
    if let Some(last) = chain.last() {
        return Ok((
            last.manifest.last(),
            Continues::Link(last.dir.clone()),
            Some(last.manifest.source.replica_set.clone()),
        ));
    }
    let base = bases
        .iter()
        .max_by_key(|b| key(b.point_in_time))
        .ok_or_else(|| {
            Error::invalid(format!(
                "no backup with a point in time at {} to continue from: run `nightdump backup` of the replica set to this destination first; captures continue from its point in time",
                store.destination()
            ))
        })?;
    Ok((
        base.point_in_time,
        Continues::Backup(base.id.to_string()),
        base.replica_set.clone(),
    ))
}

/// The newest entry every member that counts has: the end of this slice.
async fn newest_committed(source: &Source) -> Result<Timestamp> {
    crate::backup::newest_oplog_point(source, Some(ReadConcern::majority()))
        .await
        .map(|p| p.ts)
}

fn entry_ts(source: &Source, entry: &RawDocumentBuf) -> Result<Timestamp> {
    entry.get_timestamp("ts").map_err(|_| Error::Mongo {
        target: source.target().to_string(),
        command: "find on local.oplog.rs".into(),
        detail: "an oplog entry has no ts timestamp".into(),
    })
}

fn classify(source: &Source, e: &mongodb::error::Error) -> Error {
    match e.kind.as_ref() {
        ErrorKind::Command(c) if c.code == CAPPED_POSITION_LOST => Error::OplogGap(format!(
            "the oplog rolled over while this capture read it ({}); nothing was stored: capture more often or enlarge the oplog (replSetResizeOplog); the next capture records the gap if the entries are gone",
            crate::error::one_line(&c.message, 160)
        )),
        _ => source.error("find on local.oplog.rs", e),
    }
}

/// Opens a cursor over the entries from `after` (inclusive) to `end`, and reads the first:
/// when it is not the one at `after`, the oplog has rolled past it.
async fn open_range(
    source: &Source,
    after: Timestamp,
    end: Timestamp,
) -> Result<(mongodb::Cursor<RawDocumentBuf>, Timestamp)> {
    let mut cursor = source
        .client
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs")
        .find(doc! { "ts": { "$gte": after, "$lte": end } })
        .await
        .map_err(|e| classify(source, &e))?;
    let first = match cursor.next().await {
        Some(Ok(doc)) => entry_ts(source, &doc)?,
        Some(Err(e)) => return Err(classify(source, &e)),
        None => end,
    };
    Ok((cursor, first))
}

/// What recording a gap needs.
struct GapContext<'a> {
    store: &'a Store,
    set: &'a str,
    source: &'a Source,
    started: OffsetDateTime,
}

impl GapContext<'_> {
    /// Records that the entries after `after` up to `last` are lost, so that status and
    /// restore know the window is broken there; says whether it could.
    async fn record(&self, after: Timestamp, last: Timestamp, continues: Continues) -> String {
        let manifest = LinkManifest {
            schema_version: chain::SCHEMA_VERSION,
            kind: LinkKind::Gap,
            after: after.into(),
            first: None,
            last: last.into(),
            last_wall: None,
            continues,
            entries: 0,
            bytes: 0,
            object: None,
            storage: None,
            source: chain::LinkSource {
                replica_set: self.set.to_string(),
                hosts: self.source.hosts.clone(),
            },
            started_at: format_time(self.started),
            finished_at: format_time(OffsetDateTime::now_utc()),
            duration_seconds: 0.0,
        };
        let key = format!("{}/{}", chain::link_dir(after), chain::LINK_MANIFEST);
        match self
            .store
            .put(&key, Bytes::from(manifest.to_json()), PutOptions::create())
            .await
        {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => "the gap is recorded".to_string(),
            Err(e) => format!("the gap could not be recorded ({e})"),
        }
    }
}

/// The capture's failure when the chain cannot continue and no newer backup can start a new
/// one.
fn gap_error(after: Timestamp, oldest: Timestamp, recorded: &str) -> Error {
    Error::OplogGap(format!(
        "the oplog no longer holds the entries after {} (its oldest entry is {}): what was written in between is lost to point-in-time restore, and no instant after {} is restorable until the next backup starts a new chain; {recorded}: enlarge the oplog (replSetResizeOplog) or capture more often",
        chain::describe(after),
        chain::describe(oldest),
        chain::instant(after),
    ))
}

struct Streamed {
    stored: Stored,
    entries: u64,
    bytes: u64,
    /// The first entry's `ts`.
    first: Option<Timestamp>,
    /// The last entry's `ts` and wall clock.
    last: Option<(Timestamp, Option<String>)>,
}

/// Streams the cursor's entries (the one at `after` already taken) through gzip and the
/// encryption into the upload: the driver's batches, one compressed chunk and the upload's
/// parts in flight, whatever the range holds.
async fn stream(
    source: &Source,
    mut cursor: mongodb::Cursor<RawDocumentBuf>,
    wrap: Option<crate::sink::SinkWrapper>,
    level: u32,
    upload: &mut crate::store::Upload,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Streamed> {
    let (batch_tx, mut batch_rx) = mpsc::channel::<Vec<u8>>(2);
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(4);
    let progress = Arc::new(Progress::default());
    let writer = tokio::task::spawn_blocking(move || -> Result<Stored> {
        let sink: Box<dyn FinishWrite> = Box::new(ChunkSink::new(chunk_tx, progress));
        let sink = match wrap {
            Some(wrap) => wrap(sink).map_err(|e| {
                Error::Internal(format!("the encryption of the slice could not start: {e}"))
            })?,
            None => sink,
        };
        let mut gz = GzEncoder::new(sink, Compression::new(level));
        while let Some(batch) = batch_rx.blocking_recv() {
            std::io::Write::write_all(&mut gz, &batch).map_err(stream_error)?;
        }
        let sink = gz.finish().map_err(stream_error)?;
        sink.finish_stream().map_err(stream_error)
    });
    let reading = async {
        let batch_tx = batch_tx;
        let (mut entries, mut bytes, mut first, mut last) = (0u64, 0u64, None, None);
        let mut batch = Vec::with_capacity(BATCH_BYTES);
        loop {
            let next = tokio::select! {
                next = cursor.next() => next,
                () = cancel.cancelled() => return Err(Error::Interrupted(STOPPED.into())),
            };
            let Some(next) = next else { break };
            let entry = next.map_err(|e| classify(source, &e))?;
            let ts = entry_ts(source, &entry)?;
            let wall = match entry.get("wall") {
                Ok(Some(bson::RawBsonRef::DateTime(d))) => {
                    OffsetDateTime::from_unix_timestamp_nanos(
                        i128::from(d.timestamp_millis()) * 1_000_000,
                    )
                    .ok()
                    .map(format_time)
                }
                _ => None,
            };
            batch.extend_from_slice(entry.as_bytes());
            first.get_or_insert(ts);
            entries += 1;
            bytes += entry.as_bytes().len() as u64;
            last = Some((ts, wall));
            if batch.len() >= BATCH_BYTES {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_BYTES));
                batch_tx
                    .send(full)
                    .await
                    .map_err(|_| Error::Interrupted("the slice's compressor stopped".into()))?;
            }
        }
        if !batch.is_empty() {
            batch_tx
                .send(batch)
                .await
                .map_err(|_| Error::Interrupted("the slice's compressor stopped".into()))?;
        }
        Ok::<_, Error>((entries, bytes, first, last))
    };
    let uploading = async { upload.drain(chunk_rx).await.map_err(Error::from) };
    let writing = async {
        writer
            .await
            .map_err(|e| Error::Internal(format!("the slice's compressor crashed: {e}")))?
    };
    let (read, uploaded, written) = tokio::join!(reading, uploading, writing);
    // The first real cause wins over the "stopped" errors it causes in the other stages.
    match (read, uploaded, written) {
        (Ok((entries, bytes, first, last)), Ok(()), Ok(stored)) => Ok(Streamed {
            stored,
            entries,
            bytes,
            first,
            last,
        }),
        (Err(e), _, _) if !matches!(e, Error::Interrupted(_)) => Err(e),
        (_, Err(e), _) => Err(e),
        (_, _, Err(e)) => Err(e),
        (Err(e), _, _) => Err(e),
    }
}

fn stream_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::Interrupted("the upload stopped".into())
    } else {
        Error::Internal(format!("writing the slice failed: {e}"))
    }
}

async fn discard(store: &Store, key: &str) {
    if let Err(e) = store.delete(&[key.to_string()]).await {
        tracing::warn!(key, error = %e, "could not remove an unneeded entries object; prune removes it after its grace period");
    }
}

/// Where a capture's slice is being sealed.
struct Sealing<'a> {
    store: &'a Store,
    dir: &'a str,
    object_key: &'a str,
    retention: Option<crate::store::Retention>,
    after: Timestamp,
}

impl Sealing<'_> {
    /// Writes the link's manifest, the only mark of success; a run that loses the race for
    /// it removes its own entries and reports the winner's slice.
    async fn seal(
        &self,
        manifest: LinkManifest,
        mut chain: Chain,
        bases: &[chain::Base],
    ) -> Result<CaptureOutcome> {
        let (store, dir) = (self.store, self.dir);
        let manifest_key = format!("{dir}/{}", chain::LINK_MANIFEST);
        let written = store
            .put(
                &manifest_key,
                Bytes::from(manifest.to_json()),
                PutOptions::create().retained(self.retention),
            )
            .await;
        let (status, link) = match written {
            Ok(()) => (
                CaptureStatus::Stored,
                Link {
                    dir: dir.to_string(),
                    manifest,
                },
            ),
            Err(StoreError::AlreadyExists { .. }) => {
                discard(store, self.object_key).await;
                let winner = store.get(&manifest_key).await?.ok_or_else(|| {
                    Error::Internal(format!("{manifest_key} vanished after it was written"))
                })?;
                let winner =
                    LinkManifest::parse(&winner).map_err(|detail| Error::SliceIntegrity {
                        slice: dir.to_string(),
                        detail,
                    })?;
                tracing::info!(
                    slice = dir,
                    "another capture stored this range first; its slice is kept"
                );
                (
                    CaptureStatus::StoredByAnotherRun,
                    Link {
                        dir: dir.to_string(),
                        manifest: winner,
                    },
                )
            }
            Err(e) => {
                discard(store, self.object_key).await;
                return Err(e.into());
            }
        };
        tracing::info!(slice = dir, entries = link.manifest.entries, last = %chain::describe(link.manifest.last()), "oplog slice stored");
        if !chain.links.iter().any(|l| l.dir == link.dir) {
            chain.links.push(link.clone());
            chain.links.sort_by_key(|l| key(l.manifest.after()));
        }
        let window = chain.window(bases, OffsetDateTime::now_utc());
        let latest_warning = match &window {
            Some(w) => update_latest(store, w).await.err(),
            None => None,
        };
        if let Some(w) = &latest_warning {
            tracing::warn!(warning = %w, "latest.json was not updated");
        }
        Ok(CaptureOutcome {
            status,
            link: Some(link),
            after: self.after,
            window,
            latest_warning,
        })
    }
}

/// Records the window's end in `latest.json` for the admin portal, never moving it back.
async fn update_latest(store: &Store, window: &chain::Window) -> Result<(), String> {
    let pitr = crate::manifest::LatestPitr {
        earliest: window.earliest.clone(),
        latest: window.latest.clone(),
        latest_ts: window.latest_ts,
    };
    store
        .update(crate::layout::LATEST_KEY, move |current| {
            let mut current: crate::manifest::Latest = serde_json::from_slice(current?).ok()?;
            let newer = current
                .pitr
                .as_ref()
                .is_none_or(|p| key(p.latest_ts.to_bson()) < key(pitr.latest_ts.to_bson()));
            if !newer {
                return None;
            }
            current.pitr = Some(pitr.clone());
            serde_json::to_vec_pretty(&current).ok().map(Bytes::from)
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
