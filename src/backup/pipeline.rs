//! The streaming dump: collection readers (async, `parallel` at once) → one archive writer
//! thread (archive framing, CRCs, gzip, hashing) → the uploader. Every stage is joined by a
//! bounded channel, so memory is bounded by the queues, not by the database.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use nightdump_archive::{ArchiveWriter, Header, Namespace, NamespaceSummary, PreludeEntry};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::oplog::{CapturedOplog, OplogCapture, OplogPoint};
use super::sink::ChunkSink;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sink::{FinishWrite, SinkWrapper, Stored};
use crate::source::{read_collection, Batch, CollectionPlan, Kind, Source};
use crate::store::Upload;

pub struct DumpSettings {
    pub parallel: usize,
    pub compression_level: u32,
    /// Threads compressing the stream (1: on the writer thread itself).
    pub compress_threads: usize,
    pub header: Header,
    pub wrap_sink: Option<SinkWrapper>,
}

pub struct DumpResult {
    /// One per plan, in plan order, then the oplog's when it was captured.
    pub summaries: Vec<NamespaceSummary>,
    /// The content digest of each namespace, in the same order.
    pub digests: Vec<crate::digest::ContentDigest>,
    pub stored: Stored,
    pub oplog: Option<OplogOutcome>,
}

/// The oplog namespace written last: where it started and the point in time it reaches.
#[derive(Debug, Clone, Copy)]
pub struct OplogOutcome {
    pub start: bson::Timestamp,
    pub end: OplogPoint,
    pub entries: u64,
}

enum Message {
    Batch(Batch),
    End(usize),
}

/// Queue depth between readers and the writer, per reader: two batches in flight lets a
/// reader fetch while the writer compresses.
const QUEUE_PER_READER: usize = 2;
/// Oplog entries per batch handed to the writer, as a collection reader's batches.
const OPLOG_BATCH_BYTES: usize = 1 << 20;
/// Chunks of compressed output waiting for the uploader.
const UPLOAD_QUEUE: usize = 4;

/// Dumps `plans`, then, with a running `oplog` capture, the oplog up to the point reached
/// after the last collection, as the last namespace (mongodump's `--oplog` layout).
pub async fn dump(
    source: &Source,
    plans: &[CollectionPlan],
    settings: DumpSettings,
    oplog: Option<OplogCapture>,
    upload: &mut Upload,
    progress: &Arc<Progress>,
) -> Result<DumpResult> {
    let parallel = settings.parallel.max(1);
    let (batch_tx, batch_rx) = mpsc::channel::<Message>(parallel * QUEUE_PER_READER);
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(UPLOAD_QUEUE);

    let mut namespaces: Vec<Namespace> = plans
        .iter()
        .map(|p| Namespace {
            db: p.db.clone(),
            collection: p.data_collection.clone(),
        })
        .collect();
    let mut prelude: Vec<PreludeEntry> = plans.iter().map(CollectionPlan::prelude_entry).collect();
    let oplog_index = oplog.as_ref().map(|_| {
        namespaces.push(Namespace::oplog());
        prelude.push(PreludeEntry {
            db: String::new(),
            collection: "oplog".into(),
            metadata: String::new(),
            size: 0,
            kind: String::new(),
        });
        namespaces.len() - 1
    });
    let writer_progress = Arc::clone(progress);
    let writer = tokio::task::spawn_blocking(move || {
        write_archive(
            batch_rx,
            chunk_tx,
            settings,
            &namespaces,
            &prelude,
            writer_progress,
        )
    });

    let readers = async {
        // Owned here: when this ends, for any reason, the writer sees its input close.
        let batch_tx = batch_tx;
        let mut oplog = oplog;
        let reading = read_all(source, plans, parallel, batch_tx.clone(), progress);
        match oplog.as_mut() {
            // A tail that fails (the oplog rolled over) fails the backup now, not after the
            // last collection.
            Some(capture) => tokio::select! {
                read = reading => read?,
                () = capture.failed() => {
                    if let Some(capture) = oplog.take() {
                        return Err(capture.error().await);
                    }
                }
            },
            None => reading.await?,
        }
        match (oplog, oplog_index) {
            (Some(capture), Some(index)) => {
                let captured = capture.finish().await?;
                Ok(Some(write_oplog(captured, index, batch_tx).await?))
            }
            _ => Ok(None),
        }
    };
    // The receiver moves into the upload: when an upload error ends it, the receiver is
    // dropped, which is what unblocks the writer thread (its next send fails) instead of
    // leaving it waiting on a full channel forever.
    let uploading = async { upload.drain(chunk_rx).await.map_err(Error::from) };
    let writing = async {
        writer
            .await
            .map_err(|e| Error::Internal(format!("the archive writer crashed: {e}")))?
    };
    let (read_result, upload_result, write_result) = tokio::join!(readers, uploading, writing);
    // The first real cause wins: a reader's or uploader's failure makes the other stages fail
    // with "stopped" errors that say nothing useful.
    match (read_result, upload_result, write_result) {
        (Ok(oplog), Ok(()), Ok(mut result)) => {
            result.oplog = oplog;
            Ok(result)
        }
        (Err(e), _, _) if !is_teardown(&e) => Err(e),
        (_, Err(e), _) => Err(e),
        (_, _, Err(e)) if !is_teardown(&e) => Err(e),
        (Err(e), _, _) => Err(e),
        (_, _, Err(e)) => Err(e),
    }
}

/// Hands the captured entries to the writer, in oplog order, in batches like a collection's.
async fn write_oplog(
    captured: CapturedOplog,
    index: usize,
    tx: mpsc::Sender<Message>,
) -> Result<OplogOutcome> {
    let outcome = OplogOutcome {
        start: captured.start,
        end: captured.end,
        entries: captured.buffer.documents(),
    };
    let buffer = captured.buffer;
    let sent = tokio::task::spawn_blocking(move || {
        let stopped = || Error::Interrupted("the archive writer stopped".into());
        let unreadable =
            |e: io::Error| Error::Internal(format!("cannot read back the captured oplog: {e}"));
        let mut reader = buffer.into_reader().map_err(unreadable)?;
        let mut batch = Batch {
            index,
            bytes: Vec::with_capacity(OPLOG_BATCH_BYTES),
            documents: 0,
        };
        while let Some(doc) = reader.next_document().map_err(unreadable)? {
            if !batch.bytes.is_empty() && batch.bytes.len() + doc.len() > OPLOG_BATCH_BYTES {
                let full = std::mem::replace(
                    &mut batch,
                    Batch {
                        index,
                        bytes: Vec::with_capacity(OPLOG_BATCH_BYTES),
                        documents: 0,
                    },
                );
                tx.blocking_send(Message::Batch(full))
                    .map_err(|_| stopped())?;
            }
            batch.bytes.extend_from_slice(&doc);
            batch.documents += 1;
        }
        if batch.documents > 0 {
            tx.blocking_send(Message::Batch(batch))
                .map_err(|_| stopped())?;
        }
        tx.blocking_send(Message::End(index)).map_err(|_| stopped())
    })
    .await;
    match sent {
        Ok(r) => r.map(|()| outcome),
        Err(e) => Err(Error::Internal(format!("writing the oplog crashed: {e}"))),
    }
}

fn is_teardown(e: &Error) -> bool {
    matches!(e, Error::Interrupted(_))
}

/// Special collections first and one by one (restore expects them complete before any
/// other namespace starts), then everything else on `parallel` workers.
async fn read_all(
    source: &Source,
    plans: &[CollectionPlan],
    parallel: usize,
    tx: mpsc::Sender<Message>,
    progress: &Arc<Progress>,
) -> Result<()> {
    let special: Vec<usize> = (0..plans.len()).filter(|&i| plans[i].special).collect();
    for i in special {
        read_one(source, &plans[i], i, &tx, progress).await?;
    }
    let queue: Arc<Mutex<VecDeque<usize>>> = Arc::new(Mutex::new(
        (0..plans.len()).filter(|&i| !plans[i].special).collect(),
    ));
    let mut workers = JoinSet::new();
    for _ in 0..parallel {
        let queue = Arc::clone(&queue);
        let source = source.clone();
        let plans: Arc<[CollectionPlan]> = plans.to_vec().into();
        let tx = tx.clone();
        let progress = Arc::clone(progress);
        workers.spawn(async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(i) = next else { return Ok(()) };
                read_one(&source, &plans[i], i, &tx, &progress).await?;
            }
        });
    }
    drop(tx);
    let mut first_error: Option<Error> = None;
    while let Some(joined) = workers.join_next().await {
        let result = match joined {
            Ok(r) => r,
            // Cancelled by `abort_all` below, after another reader failed: not a cause.
            Err(e) if e.is_cancelled() => continue,
            Err(e) => Err(Error::Internal(format!("a reader crashed: {e}"))),
        };
        if let Err(e) = result {
            if first_error.as_ref().is_none_or(is_teardown) {
                first_error = Some(e);
            }
            workers.abort_all();
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn read_one(
    source: &Source,
    plan: &CollectionPlan,
    index: usize,
    tx: &mpsc::Sender<Message>,
    progress: &Arc<Progress>,
) -> Result<()> {
    if plan.kind != Kind::View {
        let (btx, brx) = mpsc::channel::<Batch>(QUEUE_PER_READER);
        let forward = async {
            // Owned here so that a failed forward drops it, unblocking the reader's send.
            let mut brx = brx;
            while let Some(batch) = brx.recv().await {
                Progress::add(&progress.documents, batch.documents);
                Progress::add(&progress.bytes, batch.bytes.len() as u64);
                tx.send(Message::Batch(batch))
                    .await
                    .map_err(|_| Error::Interrupted("the archive writer stopped".into()))?;
            }
            Ok::<(), Error>(())
        };
        let read = async {
            let r = read_collection(
                source,
                &plan.db,
                &plan.data_collection,
                plan.average_document_size,
                index,
                &btx,
            )
            .await;
            drop(btx);
            r
        };
        let (read, forward) = tokio::join!(read, forward);
        read?;
        forward?;
    }
    tx.send(Message::End(index))
        .await
        .map_err(|_| Error::Interrupted("the archive writer stopped".into()))?;
    Ok(())
}

fn write_archive(
    mut rx: mpsc::Receiver<Message>,
    chunk_tx: mpsc::Sender<Bytes>,
    settings: DumpSettings,
    namespaces: &[Namespace],
    prelude: &[PreludeEntry],
    progress: Arc<Progress>,
) -> Result<DumpResult> {
    let sink: Box<dyn FinishWrite> = Box::new(ChunkSink::new(chunk_tx, Arc::clone(&progress)));
    let sink = match settings.wrap_sink {
        Some(wrap) => wrap(sink).map_err(|e| {
            Error::Internal(format!(
                "the encryption of the archive could not start: {e}"
            ))
        })?,
        None => sink,
    };
    let gz = super::compress::Compressor::new(
        sink,
        settings.compression_level,
        settings.compress_threads,
    )
    .map_err(stream_error)?;
    let mut writer = ArchiveWriter::new(
        io::BufWriter::with_capacity(256 * 1024, gz),
        &settings.header,
        prelude,
    )
    .map_err(map_archive_error)?;
    let mut summaries: Vec<Option<NamespaceSummary>> = vec![None; namespaces.len()];
    let mut digests = vec![crate::digest::ContentDigest::default(); namespaces.len()];
    while let Some(message) = rx.blocking_recv() {
        match message {
            Message::Batch(batch) => {
                digests[batch.index].add_documents(&batch.bytes);
                writer
                    .write_documents(&namespaces[batch.index], &batch.bytes)
                    .map_err(map_archive_error)?
            }
            Message::End(i) => {
                summaries[i] = Some(
                    writer
                        .finish_namespace(&namespaces[i])
                        .map_err(map_archive_error)?,
                );
                Progress::add(&progress.namespaces_done, 1);
            }
        }
    }
    let missing: Vec<String> = summaries
        .iter()
        .zip(namespaces)
        .filter(|(s, _)| s.is_none())
        .map(|(_, ns)| ns.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Interrupted(format!(
            "the dump stopped before {} namespace(s) finished (first: {})",
            missing.len(),
            missing[0]
        )));
    }
    let buffered = writer.finish().map_err(map_archive_error)?;
    let gz = buffered
        .into_inner()
        .map_err(|e| stream_error(e.into_error()))?;
    let sink = gz.finish().map_err(stream_error)?;
    let stored = sink.finish_stream().map_err(stream_error)?;
    Ok(DumpResult {
        summaries: summaries.into_iter().flatten().collect(),
        digests,
        stored,
        oplog: None,
    })
}

fn map_archive_error(e: nightdump_archive::ArchiveError) -> Error {
    match e {
        nightdump_archive::ArchiveError::Io { source, .. } => stream_error(source),
        other => Error::Archive(other),
    }
}

fn stream_error(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Error::Interrupted("the upload stopped".into())
    } else {
        Error::Internal(format!("writing the archive stream failed: {e}"))
    }
}
